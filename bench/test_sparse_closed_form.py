"""Group "sparse", closed-form rows: one least-squares fit on CSR X of n = 1,000,000 rows, d = 1,000 columns,
density 1% (10^7 nonzeros, float64, seeded), against ``Ridge(solver="cholesky")`` on the same CSR matrix.

Limit row: one CSR ``X @ w``, the single pass over the nonzeros that any method must make (the same limit as the
sparse epoch rows of this group). ``X.T @ X`` is not a limit but a competitor: SciPy's sparse-sparse product
(densified) is how ``Ridge(solver="cholesky")`` forms the Gram, so it has its own row, next to fastopt's CSR Gram
kernel alone. Ridge's cholesky solver cannot fit an intercept on sparse X, so the comparison rows fit none
(``alpha`` tiny in both: ``LinearRegressor(alpha=a)`` equals ``Ridge(alpha=a * n)``); a fastopt row with the
intercept (centring on the d x d Gram) shows its cost. Memory: peak bytes beyond X, also in units of one d x d
float64 matrix (the contract is O(d^2), never O(n d)).

Run on its own::

    cd bench && python -m pytest test_sparse_closed_form.py -q -p no:randomly --benchmark-json=OUT && \
        python report.py OUT
"""
import numpy as np
import pytest
import scipy.sparse as sp
from conftest import peak_memory, peak_rss, timing, x_nbytes
from sklearn.linear_model import Ridge
from threadpoolctl import threadpool_info

from fastopt import LinearRegressor, _kernels

pytestmark = pytest.mark.benchmark(group="sparse")

N, D, DENSITY = 1_000_000, 1_000, 0.01
RIDGE_ALPHA = 1e-6


@pytest.fixture(scope="module")
def sparse_closed_form_data():
    """CSR X (n, d) with 1% uniform nonzeros drawn from a seeded generator, and a noisy linear target."""
    rng = np.random.default_rng(0)
    X = sp.random(N, D, density=DENSITY, format="csr", random_state=rng, dtype=np.float64)
    X.sort_indices()
    y = X @ rng.standard_normal(D) + rng.standard_normal(N)
    return X, y


@pytest.fixture
def record_sparse(benchmark):
    """Peak memory beyond X and y (two untimed runs, which also warm up), then ``rounds`` timed rounds (under
    ``--benchmark-disable``: one untimed run, no probes)."""

    def run(fn, X, y, rounds=3):
        if timing(benchmark):  # (the probes are measurements: a run that only checks the code skips them)
            x_bytes = x_nbytes(X)
            traced, rss = peak_memory(fn, X, y), peak_rss(fn, X, y)
            d2 = 8 * X.shape[1] ** 2
            benchmark.extra_info["traced_peak_MB"] = round(traced / 2**20, 1)
            benchmark.extra_info["traced_peak_vs_dxd"] = round(traced / d2, 2)
            benchmark.extra_info["rss_peak_vs_X"] = round(rss / x_bytes, 3)
            benchmark.extra_info["blas_threads"] = max(lib["num_threads"] for lib in threadpool_info())
        benchmark.pedantic(fn, args=(X, y), rounds=rounds, iterations=1)

    return run


def test_limit_csr_matvec(record_sparse, sparse_closed_form_data):
    w = np.ones(D)
    record_sparse(lambda X, y: X @ w, *sparse_closed_form_data, rounds=5)


def test_fastopt_closed_form_estimator(record_sparse, sparse_closed_form_data):
    record_sparse(lambda X, y: LinearRegressor(alpha=RIDGE_ALPHA / N, fit_intercept=False).fit(X, y),
                  *sparse_closed_form_data)


def test_fastopt_closed_form_intercept(record_sparse, sparse_closed_form_data):
    record_sparse(lambda X, y: LinearRegressor(alpha=RIDGE_ALPHA / N).fit(X, y), *sparse_closed_form_data)


def test_fastopt_csr_gram_kernel(record_sparse, sparse_closed_form_data):
    """The compiled kernel alone, one thread, all rows in one call: the Gram of [X, y] with centring."""
    mean, gram = np.empty(D + 1), np.empty((D + 1, D + 1))

    def kernel(X, y):
        _kernels.csr_gram_stats(X.data, X.indices, X.indptr, D, y.reshape(-1, 1), None, mean, gram)

    record_sparse(kernel, *sparse_closed_form_data)


def test_scipy_xtx_densified(record_sparse, sparse_closed_form_data):
    record_sparse(lambda X, y: (X.T @ X).toarray(), *sparse_closed_form_data, rounds=2)


def test_sklearn_ridge_cholesky(record_sparse, sparse_closed_form_data):
    record_sparse(lambda X, y: Ridge(solver="cholesky", alpha=RIDGE_ALPHA, fit_intercept=False).fit(X, y),
                  *sparse_closed_form_data, rounds=2)
