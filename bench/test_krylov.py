"""Group "krylov": Krylov least squares on a hashed sparse problem and on a wide dense one.

Hashed: n = 200,000 rows, d = 2^18 hashed features, 30 nonzeros a row (values +-1, seeded), ridge alpha = 1 in
scikit-learn's sum-of-squares convention (``LinearRegressor(alpha=1 / n)``), intercept fitted, every solver at
tol = 1e-4 (scikit-learn's default). The limit row is one CSR ``X @ w``. Each row's ``extra_info`` records the
relative normal-equation residual its answer reaches, ``||X_c^T (y_c - X_c w) - alpha w|| / ||X_c^T y_c||``, so
"the same tolerance" can be checked rather than assumed (the solvers define ``tol`` differently); fastopt's rows
also record their iterations, the time of one fused pass over X (best of three) as a ratio to the limit's, and
the fit time per iteration.

Dense: n = 100,000, d = 5,000 float64 (4 GB; set FASTOPT_BENCH_KRYLOV_DENSE="n,d" to change it), fastopt's
Krylov solvers against its closed form, time and peak memory (``traced_peak_vs_X``).

Run on its own: ``cd bench && python -m pytest test_krylov.py -q -p no:randomly --benchmark-json=OUT`` and
``python report.py OUT``.
"""
import os
import time

import numpy as np
import pytest
import scipy.sparse
from conftest import peak_memory, peak_rss
from sklearn.linear_model import Ridge
from threadpoolctl import threadpool_info

from fastopt import LinearRegressor, _krylov
from fastopt._validation import Data

pytestmark = pytest.mark.benchmark(group="krylov")

TOL = 1e-4
N, D, NNZ = 200_000, 2**18, 30


@pytest.fixture(scope="module")
def hashed():
    rng = np.random.default_rng(0)
    indices = rng.integers(0, D, size=N * NNZ).astype(np.int32)
    data = rng.choice([-1.0, 1.0], size=N * NNZ)
    indptr = np.arange(0, N * NNZ + 1, NNZ, dtype=np.int32)
    X = scipy.sparse.csr_array((data, indices, indptr), shape=(N, D))
    X.sum_duplicates()  # canonical CSR, as validation hands it to solvers
    X.indices, X.indptr = X.indices.astype(np.int32), X.indptr.astype(np.int32)
    y = X @ (rng.standard_normal(D) / np.sqrt(NNZ)) + 0.1 * rng.standard_normal(N) + 1.0
    return X, y


@pytest.fixture(scope="module")
def dense():
    n, d = (int(s) for s in os.environ.get("FASTOPT_BENCH_KRYLOV_DENSE", "100000,5000").split(","))
    rng = np.random.default_rng(1)
    X = rng.standard_normal((n, d))
    y = X @ rng.standard_normal(d) + rng.standard_normal(n)
    return X, y


@pytest.fixture
def record_sparse(benchmark):
    """conftest's ``record`` for a CSR ``X``, whose size is that of its three arrays."""

    def run(fn, X, y, rounds=3):
        nbytes = X.data.nbytes + X.indices.nbytes + X.indptr.nbytes
        benchmark.extra_info["traced_peak_vs_X"] = round(peak_memory(fn, X, y) / nbytes, 4)
        benchmark.extra_info["rss_peak_vs_X"] = round(peak_rss(fn, X, y) / nbytes, 4)
        benchmark.extra_info["blas_threads"] = max(lib["num_threads"] for lib in threadpool_info())
        benchmark.pedantic(fn, args=(X, y), rounds=rounds, iterations=1)

    return run


def _normal_residual(X, y, coef, alpha_sum):
    """Relative residual of the centred normal equations at ``coef`` (ridge ``alpha_sum`` on the sum of squares)."""
    m, my = np.asarray(X.mean(axis=0)).ravel(), y.mean()
    r = (y - my) - (X @ coef - m @ coef)
    g = X.T @ r - m * r.sum() - alpha_sum * coef
    b = X.T @ (y - my) - m * (y - my).sum()
    return float(np.linalg.norm(g) / np.linalg.norm(b))


def _best(fn, rounds=3):
    best = np.inf
    for _ in range(rounds):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def test_limit_csr_matvec(record_sparse, hashed):
    X, y = hashed
    w = np.random.default_rng(2).standard_normal(D)
    record_sparse(lambda X, y: X @ w, X, y, rounds=10)


@pytest.mark.parametrize("solver", ["lsqr", "cg"])
def test_fastopt_hashed(record_sparse, benchmark, hashed, solver):
    X, y = hashed
    est = LinearRegressor(solver=solver, alpha=1.0 / N, tol=TOL)
    record_sparse(lambda X, y: est.fit(X, y), X, y)
    coef = np.asarray(est.coef_)
    w = np.random.default_rng(2).standard_normal(D)
    data = Data(X, y.reshape(-1, 1), None, True)
    limit = _best(lambda: X @ w)
    one_pass = _best(lambda: _krylov.chunk_pass(data, None, 0, w, 1.0, 0.0))
    benchmark.extra_info.update(
        n_iter=int(est.n_iter_), normal_residual=_normal_residual(X, y, coef, 1.0),
        pass_vs_limit=round(one_pass / limit, 3),
        seconds_per_iteration=round(benchmark.stats.stats.median / (est.n_iter_ + 3), 5),
    )


@pytest.mark.parametrize("solver", ["lsqr", "sparse_cg"])
def test_sklearn_ridge_hashed(record_sparse, benchmark, hashed, solver):
    X, y = hashed
    est = Ridge(alpha=1.0, solver=solver, tol=TOL)
    record_sparse(lambda X, y: est.fit(X, y), X, y)
    n_iter = None if est.n_iter_ is None else int(np.max(est.n_iter_))  # sparse_cg does not report it
    benchmark.extra_info.update(n_iter=n_iter, normal_residual=_normal_residual(X, y, est.coef_, 1.0))


@pytest.mark.parametrize("solver", ["normal", "lsqr", "cg"])
def test_fastopt_dense(record, benchmark, dense, solver):
    X, y = dense
    est = LinearRegressor(solver=solver, tol=1e-6)
    record(lambda X, y: est.fit(X, y), X, y, rounds=1)
    benchmark.extra_info.update(n_iter=int(est.n_iter_), normal_residual=_normal_residual(X, y, est.coef_, 0.0))
