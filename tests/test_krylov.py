"""Krylov solvers (solver="cg" / "lsqr"): the fused kernel against its twin, agreement with the closed form,
the conjugate-gradient iteration bound, streamed and Dask fits, determinism, and solver="auto"."""
import functools
import itertools
import math
import re
import warnings

import numpy as np
import pytest
import scipy.sparse
import scipy.sparse.linalg
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from threadpoolctl import threadpool_limits

from fastopt import LinearRegressor, _closed_form, _kernels, _krylov, _reference, _solvers
from fastopt._validation import Data
from fastopt.exceptions import ConvergenceWarning, RankDeficientWarning

KRYLOV = ["cg", "lsqr"]
# Well-conditioned problems solved to tol = 1e-13 (relative normal-equation residual): the coefficient error is
# at most cond(A)^2 * tol relative, about 1e-11 for the condition numbers below (under 10 after scaling).
TOL = 1e-13
AGREE = 1e-10


def _problem(rng, n=600, d=12, k=1, offset=3.0):
    scales = rng.uniform(0.2, 5.0, size=d)
    X = rng.normal(size=(n, d)) * scales + offset * rng.normal(size=d)
    Y = X @ rng.normal(size=(d, k)) + 0.5 * rng.normal(size=(n, k)) + 2.0
    return X, (Y[:, 0] if k == 1 else Y)


def _csr(rng, n=800, d=40, density=0.15, dtype=np.float64):
    X = scipy.sparse.random(n, d, density=density, random_state=rng, format="csr", dtype=dtype)
    X.indices, X.indptr = X.indices.astype(np.int32), X.indptr.astype(np.int32)
    return X


def _rel(a, b):
    return np.abs(np.asarray(a) - np.asarray(b)).max() / max(np.abs(np.asarray(b)).max(), 1e-300)


# ---------------------------------------------------------------- the fused kernel and its twin


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("with_y", [False, True])
@pytest.mark.parametrize("n, d", [(0, 3), (1, 1), (7, 5), (103, 17), (64, 1)])
def test_krylov_dense_matches_its_twin(dtype, weighted, with_y, n, d, rng):
    X = rng.normal(size=(n, d)).astype(dtype)
    X.flags.writeable = False
    Y = rng.normal(size=(n, 3)).astype(dtype) if with_y else None
    sw = rng.random(n) if weighted else None
    v = rng.normal(size=d)
    outs = []
    for impl in (_kernels, _reference):
        z = np.full(d, np.nan)
        outs.append((impl.krylov_dense(X, Y, 2, sw, v, 0.7, 0.3, z), z))
    (sums_k, zk), (sums_r, zr) = outs
    # Same products in float64, summed in a different order (four lanes vs BLAS): each sum of m terms agrees
    # to m * eps relative to the sum of absolute values.
    eps = np.finfo(np.float64).eps
    Xd = X.astype(np.float64)
    absdot = np.abs(Xd) @ np.abs(v) + 0.7 * (np.abs(Y[:, 2]) if with_y else 0) + 0.3
    s = np.ones(n) if sw is None else sw
    bound_z = 4 * (d + n) * eps * (np.abs(Xd).T @ (s * s * absdot))
    assert np.all(np.abs(zk - zr) <= bound_z + 1e-300)
    assert sums_k[0] == pytest.approx(sums_r[0], rel=4 * (d + n) * eps, abs=1e-300)
    assert abs(sums_k[1] - sums_r[1]) <= 4 * (d + n) * eps * float(s * s @ absdot) + 1e-300


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("n, d, density, start, stop",
                         [(300, 25, 0.15, 40, 160), (300, 25, 0.15, 40, 211), (1400, 60, 0.9, 3, 1390)],
                         ids=["one-block", "blocks-of-128-rows", "blocks-cut-by-entries"])
def test_krylov_csr_matches_its_twin_on_a_row_segment(dtype, weighted, n, d, density, start, stop, rng):
    # The third case has 54 entries a row over 1387 rows: blocks of 75 rows, cut by their 4096-entry budget.
    X = _csr(rng, n, d, density=density, dtype=dtype)
    Y = rng.normal(size=(n, 2)).astype(dtype)
    sw = rng.random(n) if weighted else None
    v = rng.normal(size=d)
    outs = []
    for impl in (_kernels, _reference):
        z = np.full(d, np.nan)
        sums = impl.krylov_csr(X.data, X.indices, X.indptr[start : stop + 1], Y[start:stop], 1,
                               None if sw is None else sw[start:stop], v, -1.5, 0.25, z)
        outs.append((sums, z))
    (sums_k, zk), (sums_r, zr) = outs
    np.testing.assert_allclose(zk, zr, rtol=1e-12, atol=1e-12 * np.abs(zr).max())
    np.testing.assert_allclose(sums_k, sums_r, rtol=1e-12)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_column_sums_of_squares_match_the_twin(dtype, rng):
    """With v = 0, c = 0 and shift = -1 both kernels give sum w x, sum w x^2 and W in one pass."""
    X = rng.normal(size=(61, 9)).astype(dtype)
    Xs = _csr(rng, 61, 9, density=0.4, dtype=dtype)
    w = rng.random(61)
    for Xk, call in ((X, lambda impl, z, zz: impl.krylov_dense(X, None, 0, np.sqrt(w), np.zeros(9), 0.0, -1.0, z, zz)),
                     (Xs.toarray(), lambda impl, z, zz: impl.krylov_csr(Xs.data, Xs.indices, Xs.indptr, None, 0,
                                                                        np.sqrt(w), np.zeros(9), 0.0, -1.0, z, zz))):
        Xd = Xk.astype(np.float64)
        for impl in (_kernels, _reference):
            z, zz = np.empty(9), np.empty(9)
            ss, se = call(impl, z, zz)
            np.testing.assert_allclose(z, w @ Xd, rtol=1e-12, atol=1e-12)
            np.testing.assert_allclose(zz, w @ (Xd * Xd), rtol=1e-12)
            assert ss == pytest.approx(w.sum(), rel=1e-13) and se == pytest.approx(w.sum(), rel=1e-13)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("k", [0, 1, 3])
def test_krylov_moments_csr_is_the_separate_passes_bit_for_bit(dtype, weighted, k, rng):
    """One read gives exactly what the fused pass gave with v = 0 in 1 + k passes (c = 0, shift = -1 with squares;
    then c = 1, shift_j per target), and agrees with its twin to rounding."""
    n, d, start, stop = 700, 40, 13, 650
    X = _csr(rng, n, d, density=0.3, dtype=dtype)
    Y = rng.normal(size=(n, k)).astype(dtype) + 2.0
    sw = rng.random(n) if weighted else None
    shift = rng.normal(size=k)
    rows = (X.data, X.indices, X.indptr[start : stop + 1])
    s = None if sw is None else sw[start:stop]
    Zk, Zr = np.full((d, 2 + k), np.nan), np.full((d, 2 + k), np.nan)
    ss, se = _kernels.krylov_moments_csr(*rows, Y[start:stop], s, shift, Zk)
    ss_r, se_r = _reference.krylov_moments_csr(*rows, Y[start:stop], s, shift, Zr)
    zero, z, zz = np.zeros(d), np.empty(d), np.empty(d)
    _kernels.krylov_csr(*rows, Y[start:stop] if k else None, 0, s, zero, 0.0, -1.0, z, zz)
    np.testing.assert_array_equal(Zk[:, 0], z)
    np.testing.assert_array_equal(Zk[:, 1], zz)
    for j in range(k):
        assert (ss[j], se[j]) == _kernels.krylov_csr(*rows, Y[start:stop], j, s, zero, 1.0, shift[j], z)
        np.testing.assert_array_equal(Zk[:, 2 + j], z)
    np.testing.assert_allclose(Zk, Zr, rtol=1e-12, atol=1e-12 * np.abs(Zr).max())
    np.testing.assert_allclose(ss, ss_r, rtol=1e-12)
    np.testing.assert_allclose(se, se_r, rtol=1e-12, atol=1e-12 * np.abs(ss_r).max(initial=1.0))
    for impl in (_kernels, _reference):
        with pytest.raises(ValueError, match="inconsistent shapes"):
            impl.krylov_moments_csr(*rows, Y[start:stop], s, shift, np.empty((d, 3 + k)))
        with pytest.raises(ValueError, match="inconsistent shapes"):
            impl.krylov_moments_csr(*rows, Y[start:stop], s, np.zeros(k + 1), Zk)
    with pytest.raises(ValueError, match="column index"):
        _kernels.krylov_moments_csr(*rows, Y[start:stop], s, shift, np.empty((d - 1, 2 + k)))


@pytest.mark.parametrize("centred", [False, True])
@pytest.mark.parametrize("weighted", [False, True])
def test_csr_moments_in_one_read_equal_the_dense_passes(centred, weighted, rng):
    """chunk_moments on CSR rows (one read, several segments in threads) against the dense rows' 1 + k passes."""
    n, d = 3 * _krylov.SEGMENT_ROWS + 5, 6
    X = scipy.sparse.csr_array(rng.normal(size=(n, d)) * (rng.random((n, d)) < 0.5))
    Y = X @ rng.normal(size=(d, 2)) + rng.normal(size=(n, 2)) + 3.0
    w = rng.random(n) if weighted else None
    assert _krylov.segment_count(Data(X, Y, w, False)) > 1
    with threadpool_limits(2):
        sparse = _krylov.chunk_moments(Data(X, Y, w, False), centred)
    with threadpool_limits(1):
        again = _krylov.chunk_moments(Data(X, Y, w, False), centred)
    dense = _krylov.chunk_moments(Data(X.toarray(), Y, w, False), centred)
    for name in ("sx", "sxx", "sy", "cxy", "cyy"):
        a, b = getattr(sparse, name), getattr(dense, name)
        np.testing.assert_array_equal(a, getattr(again, name))  # any thread count: the same bits
        np.testing.assert_allclose(a, b, rtol=1e-11, atol=1e-11 * np.abs(b).max())
    assert sparse.weight == dense.weight and sparse.n_samples == n


def test_krylov_csr_rejects_bad_structure():
    data, v, z = np.ones(2), np.zeros(3), np.zeros(3)
    ok_ptr = np.array([0, 1, 2], dtype=np.int32)
    with pytest.raises(ValueError, match="column index 3"):
        _kernels.krylov_csr(data, np.array([0, 3], dtype=np.int32), ok_ptr, None, 0, None, v, 0.0, 0.0, z)
    with pytest.raises(ValueError, match="non-decreasing"):
        _kernels.krylov_csr(data, np.array([0, 1], dtype=np.int32), np.array([0, 2, 1], dtype=np.int32), None, 0,
                            None, v, 0.0, 0.0, z)
    with pytest.raises(ValueError, match="outside data"):
        _kernels.krylov_csr(data, np.array([0, 1], dtype=np.int32), np.array([0, 1, 5], dtype=np.int32), None, 0,
                            None, v, 0.0, 0.0, z)
    with pytest.raises(ValueError, match="inconsistent shapes"):
        _kernels.krylov_dense(np.ones((2, 3)), None, 0, None, np.zeros(2), 0.0, 0.0, np.zeros(3))


def test_one_pass_returns_both_products(rng):
    """a = s (X v + c y - shift) and z = X^T (s a): the two products of an iteration from one kernel call."""
    X, y = rng.normal(size=(50, 4)), rng.normal(size=(50, 1))
    s, v = np.sqrt(rng.random(50)), rng.normal(size=4)
    z = np.empty(4)
    ss, se = _kernels.krylov_dense(X, y, 0, s, v, 2.0, 0.5, z)
    a = s * (X @ v + 2.0 * y[:, 0] - 0.5)
    np.testing.assert_allclose(z, X.T @ (s * a), rtol=1e-13)
    assert ss == pytest.approx(a @ a, rel=1e-13)
    assert se == pytest.approx((s * a).sum(), rel=1e-12)


# ---------------------------------------------------------------- agreement with the closed form


@pytest.mark.parametrize("solver", KRYLOV)
@pytest.mark.parametrize(
    "kw", [{}, {"alpha": 0.3}, {"fit_intercept": False}, {"precondition": "none"}, {"alpha": 1e-3, "k": 3}],
    ids=["plain", "ridge", "no-intercept", "no-preconditioner", "multi-output"],
)
@pytest.mark.parametrize("weighted", [False, True])
def test_dense_agrees_with_closed_form(solver, kw, weighted, rng):
    kw = dict(kw)
    X, y = _problem(rng, k=kw.pop("k", 1))
    w = rng.uniform(0.1, 3.0, size=X.shape[0]) if weighted else None
    closed = {key: val for key, val in kw.items() if key != "precondition"}
    ref = LinearRegressor(solver="qr", **closed).fit(X, y, sample_weight=w)
    est = LinearRegressor(solver=solver, tol=TOL, **kw).fit(X, y, sample_weight=w)
    assert est.solver_ == solver and 1 <= est.n_iter_ <= _krylov.default_max_iter(X.shape[1])
    assert _rel(est.coef_, ref.coef_) < AGREE
    assert np.abs(np.asarray(est.intercept_) - ref.intercept_).max() < AGREE * max(1.0, np.abs(y).max())
    assert np.shape(est.coef_) == np.shape(ref.coef_)


@pytest.mark.parametrize("solver", KRYLOV)
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("alpha", [0.0, 0.05])
def test_sparse_agrees_with_closed_form_at_solver_level(solver, weighted, alpha, rng):
    X = _csr(rng)
    y = X @ rng.normal(size=X.shape[1]) + 0.1 * rng.normal(size=X.shape[0]) + 1.0
    w = rng.uniform(0.1, 3.0, size=X.shape[0]) if weighted else None
    ref = LinearRegressor(solver="qr", alpha=alpha).fit(X.toarray(), y, sample_weight=w)
    params = LinearRegressor(solver=solver, alpha=alpha, tol=TOL).get_params()
    result = _solvers.SOLVERS[solver].fit(params, Data(X, y.reshape(-1, 1), w, True))
    assert _rel(result.coef[0], ref.coef_) < AGREE
    assert abs(result.intercept[0] - ref.intercept_) < AGREE * np.abs(y).max()


@pytest.mark.skipif(not LinearRegressor().__sklearn_tags__().input_tags.sparse,
                    reason="sparse input to the estimator arrives with the sparse validation")
@pytest.mark.parametrize("solver", KRYLOV)
def test_sparse_estimator_agrees_with_dense(solver, rng):
    X = _csr(rng)
    y = X @ rng.normal(size=X.shape[1]) + 1.0
    w = rng.uniform(0.1, 3.0, size=X.shape[0])
    dense = LinearRegressor(solver="qr", alpha=0.01).fit(X.toarray(), y, sample_weight=w)
    for fmt in ("csr", "csc", "coo"):
        est = LinearRegressor(solver=solver, alpha=0.01, tol=TOL).fit(X.asformat(fmt), y, sample_weight=w)
        assert _rel(est.coef_, dense.coef_) < AGREE
        np.testing.assert_allclose(est.predict(X), dense.predict(X.toarray()), rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("solver", KRYLOV)
def test_float32_data_float64_vectors(solver, rng):
    X, y = _problem(rng)
    X32, y32 = X.astype(np.float32), y.astype(np.float32)
    ref = LinearRegressor(solver="qr").fit(X32.astype(np.float64), y32.astype(np.float64))
    est = LinearRegressor(solver=solver, tol=TOL).fit(X32, y32)
    assert est.coef_.dtype == np.float32
    # The data are exactly representable in both; only the final cast to float32 rounds.
    assert _rel(est.coef_, ref.coef_) < 2 * np.finfo(np.float32).eps


@pytest.mark.parametrize("solver", KRYLOV)
def test_memory_mapped_X(solver, rng, tmp_path):
    X, y = _problem(rng, n=2000)
    mm = np.lib.format.open_memmap(tmp_path / "X.npy", mode="w+", dtype=np.float64, shape=X.shape)
    mm[:] = X
    mm.flush()
    X_map = np.load(tmp_path / "X.npy", mmap_mode="r")
    est = LinearRegressor(solver=solver, tol=TOL).fit(X_map, y)
    ref = LinearRegressor(solver=solver, tol=TOL).fit(X, y)
    np.testing.assert_array_equal(est.coef_, ref.coef_)


# ---------------------------------------------------------------- iterations, stopping, warm start


@functools.lru_cache(maxsize=1)
def _orthonormal_factors(n=600, d=300):
    rng = np.random.default_rng(7)
    with threadpool_limits(1):  # small factorisations: BLAS threads only contend on a busy machine
        return np.linalg.qr(rng.normal(size=(n, d)))[0], np.linalg.qr(rng.normal(size=(d, d)))[0], rng.normal(size=n)


@pytest.mark.parametrize("solver", KRYLOV)
@pytest.mark.parametrize("kappa, tol", [(10.0, 1e-4), (10.0, 1e-8), (30.0, 1e-6)])
def test_iterations_follow_the_conjugate_gradient_bound(solver, kappa, tol):
    """With cond(A) = kappa, ||A^T r_k|| / ||A^T r_0|| <= 2 kappa ((kappa - 1) / (kappa + 1))^k (the energy-norm
    bound of CG on A^T A, Nocedal & Wright eq. 5.36, converted to the residual norm). The rule stops at
    ||A^T r_k|| <= tol ||B_k||_F ||r_k||, where ||B_k||_F >= ||B_k||_2, the largest Ritz value, which reaches
    ||A||_2 = kappa within a few iterations, and ||r_k|| >= ||r*||: so after at most
    log(2 kappa c / tol) / log((kappa + 1) / (kappa - 1)) iterations, c = ||A^T b|| / (||A||_2 ||r*||); singular
    values spread over [1, kappa] make the bound nearly sharp (here within a factor of two). At the stop, S2 holds
    with ||A||_F >= ||B_k||_F."""
    U, V, y = _orthonormal_factors()
    d = V.shape[0]
    s = 1 + (kappa - 1) * (1 - np.cos(np.pi * np.arange(d) / (d - 1))) / 2
    A = (U * s) @ V.T
    est = LinearRegressor(solver=solver, fit_intercept=False, precondition="none", tol=tol).fit(A, y)
    a_norm = np.linalg.norm(A)  # Frobenius
    best = np.linalg.norm(y - A @ np.linalg.lstsq(A, y, rcond=None)[0])
    c = np.linalg.norm(A.T @ y) / (kappa * best)
    bound = math.log(2 * kappa * c / tol) / math.log((kappa + 1) / (kappa - 1))
    assert bound / 2 <= est.n_iter_ <= bound
    r = y - A @ est.coef_
    assert np.linalg.norm(A.T @ r) <= tol * a_norm * np.linalg.norm(r)


@pytest.mark.parametrize("tol", [1e-3, 1e-6, 1e-10])
@pytest.mark.parametrize("solver", KRYLOV)
def test_stops_where_scipy_lsqr_stops(solver, tol):
    """``tol`` means what it means to ``scipy.sparse.linalg.lsqr(atol=tol, btol=tol)`` (and so to
    ``Ridge(solver="lsqr", tol=tol)``): without centring, weights, ridge or scaling LSQR runs the same iteration
    with the same rules, and CGLS the same iterates in exact arithmetic with the same rules. The recurrences are
    arranged differently (module docstring), so their estimates differ in rounding, and where the test's ratio
    lands within rounding of ``tol`` one may take one step more; at the stop the true S2 ratio, with
    ``||A||_F >= ||B_k||_F``, is at most ``tol`` (or the residual meets S1)."""
    rng = np.random.default_rng(3)
    A = rng.normal(size=(500, 100)) * rng.uniform(1, 5, size=100)
    y = A @ rng.normal(size=100) + rng.normal(size=500)
    ours = LinearRegressor(solver=solver, fit_intercept=False, precondition="none", tol=tol).fit(A, y)
    istop, itn = scipy.sparse.linalg.lsqr(A, y, atol=tol, btol=tol, iter_lim=1000)[1:3]
    assert istop in (1, 2) and abs(ours.n_iter_ - itn) <= 1 and ours.n_iter_ < 100
    r = y - A @ ours.coef_
    assert np.linalg.norm(A.T @ r) <= tol * np.linalg.norm(A) * np.linalg.norm(r)


def test_the_compatible_system_rule_applies_only_without_ridge(rng):
    """S1 (``||r|| <= tol (||b|| + ||A|| ||z||)``) is the rule of a compatible system, whose residual reaches 0; with a
    ridge the augmented residual [b - A z; -lam z] never does, and S1 stopped CGLS before the ridge had chosen among
    near-interpolants (a 3 x 16 fuzz problem: two fits 57% apart). A residual far inside S1 with the normal
    residual far outside S2 stops a fit without ridge, and not one with."""
    X = rng.normal(size=(50, 5))
    data = Data(X, rng.normal(size=(50, 1)), None, True)
    passes = _krylov.Passes(data)
    x = np.ones(5)
    for alpha, stops in ((0.0, True), (0.1, False)):
        params = {"alpha": alpha, "fit_intercept": True, "tol": 1e-6, "precondition": "none"}
        op = _krylov._Operator(passes, passes.moments(True), 0, params)
        stop = _krylov._Stopping(op, 1e-6, "lsqr")
        tiny = 1e-9 * stop.bnorm
        assert stop.may_meet(1.0, tiny, x) is stops and stop.met(1.0, tiny, x) is stops
        assert stop.met(1e-9 * stop.anorm * tiny, tiny, x)  # S2 stops both
        # CGLS's recurred ||r|| resolves no such value: the true pass decides, by the same rules
        stop = _krylov._Stopping(op, 1e-6, "cg")
        stop.begin(stop.bnorm)
        assert stop.may_meet(1.0, tiny, x) and stop.met(1.0, tiny, x)
        assert stop.met(1.0, tiny, x, exact=True) is stops


def test_cgls_estimates_the_operator_norm_as_lsqr_does(rng):
    """CGLS accumulates ||B_k||_F^2 as the trace of the Lanczos tridiagonal matrix B_k^T B_k, LSQR as the sum of
    its bidiagonal entries squared: the same number, for every option, and at most ||A_bar||_F."""
    X = rng.normal(size=(300, 20)) * rng.uniform(0.1, 10, size=20) + rng.normal(size=20)
    data = Data(X, rng.normal(size=(300, 1)), rng.random(300) + 0.5, True)
    passes = _krylov.Passes(data)
    for alpha, centred, precondition in itertools.product([0.0, 0.5], [False, True], ["none", "auto"]):
        params = {"alpha": alpha, "fit_intercept": centred, "tol": None, "precondition": precondition}
        mom = passes.moments(centred)
        norms = []
        for name, method in (("cg", _krylov._cgls), ("lsqr", _krylov._lsqr)):
            op = _krylov._Operator(passes, mom, 0, params)
            stop = _krylov._Stopping(op, None, name)
            method(op, np.zeros(20), stop, 7)
            norms.append(stop.anorm)
        assert norms[0] == pytest.approx(norms[1], rel=1e-12)
        assert norms[0] <= op.frobenius


@pytest.mark.parametrize("sparse", [False, True], ids=["dense", "csr"])
@pytest.mark.parametrize("precondition", ["none", "auto"])
@pytest.mark.parametrize("solver", KRYLOV)
def test_columns_far_from_centred_reach_the_optimum_at_the_default_tol(solver, precondition, sparse):
    """Columns whose means are hundreds of times their spread, no intercept: A^T b lies almost along one direction,
    so a stop at ||A^T r|| <= tol ||A^T b|| came after two iterations at 4,000 times the optimal objective. The
    rule S2, ||A_bar^T r|| <= tol ||B_k||_F ||r|| with ||B_k||_F <= ||A_bar||_F, bounds the relative excess
    instead: with
    ||A_bar^T r|| >= sigma_min ||A_bar e|| and ||r||^2 = ||r*||^2 + ||A_bar e||^2, the excess
    q = ||A_bar e||^2 / ||r*||^2 satisfies q <= t^2 (1 + q), t = tol ||A_bar||_F / sigma_min (of the scaled
    augmented operator the method runs on)."""
    rng = np.random.default_rng(37)
    n, d, alpha = 185, 16, 1e-4
    X = rng.normal(size=(n, d)) + rng.uniform(-1e3, 1e3, size=d)
    y = X @ rng.normal(size=d) + 3.0 + 0.3 * rng.normal(size=n)
    est = LinearRegressor(solver=solver, alpha=alpha, fit_intercept=False, precondition=precondition)
    est.fit(scipy.sparse.csr_array(X) if sparse else X, y)
    best = LinearRegressor(solver="qr", alpha=alpha, fit_intercept=False).fit(X, y)

    def objective(coef):
        return 0.5 * np.mean((y - X @ coef) ** 2) + 0.5 * alpha * coef @ coef

    f, f_best = objective(est.coef_), objective(best.coef_)
    col = np.sqrt(np.sum(X * X, axis=0) + n * alpha)
    D = 1 / col if precondition == "auto" else np.ones(d)  # the columns' norms span more than 4 here
    assert col.max() > 4 * col.min()  # so "auto" scales (jacobi_pays)
    A_bar = np.vstack([X * D, np.sqrt(n * alpha) * np.diag(D)])
    sv = np.linalg.svd(A_bar, compute_uv=False)
    t2 = (1e-6 * np.linalg.norm(A_bar) / sv[-1]) ** 2  # the default tol
    assert t2 < 1e-3  # a bound that says something
    assert (f - f_best) / f_best <= t2 / (1 - t2) * (1 + 1e-6)
    assert f_best <= f * (1 + 1e-12)  # (the exact solver's objective: the reference is the minimum)


@pytest.mark.parametrize("solver", KRYLOV)
def test_preconditioner_helps_badly_scaled_columns(solver, rng):
    X, y = _problem(rng, offset=0.0)
    X = X * np.geomspace(1e-3, 1e3, X.shape[1])
    plain = LinearRegressor(solver=solver, precondition="none", tol=1e-8, max_iter=5000).fit(X, y)
    jacobi = LinearRegressor(solver=solver, tol=1e-8).fit(X, y)
    assert jacobi.n_iter_ < plain.n_iter_ / 3


@pytest.mark.parametrize("solver", KRYLOV)
def test_convergence_warning_and_tol_none(solver, rng):
    X, y = _problem(rng)
    with pytest.warns(ConvergenceWarning, match="max_iter=2"):
        est = LinearRegressor(solver=solver, max_iter=2, tol=1e-12).fit(X, y)
    assert est.n_iter_ == 2
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        est = LinearRegressor(solver=solver, max_iter=3, tol=None).fit(X, y)
    assert est.n_iter_ == 3
    # only CGLS is pointed to LSQR
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        LinearRegressor(solver=solver, max_iter=2, tol=1e-12).fit(X, y)
    assert ("use solver='lsqr'" in str(caught[0].message)) == (solver == "cg")


def test_a_stop_the_data_cannot_confirm_is_not_blamed_on_max_iter():
    # y of 1e10 rounds at 1e-6, above what tol asks of the confirming pass: LSQR stopped after 6 iterations (with
    # the closed form's coefficients to 2e-7) and warned of max_iter=100, suggesting solver='lsqr'
    rng = np.random.default_rng(7)
    X = rng.standard_normal((50, 3))
    y = X @ np.array([1.0, 2.0, 3.0]) + 0.1 * rng.standard_normal(50) + 1e10
    with pytest.warns(ConvergenceWarning, match="not in the confirming pass") as caught:
        est = LinearRegressor(solver="lsqr").fit(X, y)
    assert est.n_iter_ < 100 and not any("max_iter" in str(w.message) for w in caught)
    exact = LinearRegressor(solver="normal").fit(X, y)
    np.testing.assert_allclose(est.coef_, exact.coef_, rtol=1e-5)


@pytest.mark.parametrize("solver", KRYLOV)
@pytest.mark.parametrize("tol", [None, 0.0])
def test_iterating_past_an_exact_solution_stops_there(solver, tol):
    # A consistent system (y = X w, or a wide ridge problem) solved to round-off: with no tol to stop on, CGLS's
    # gamma^2 / ||A p||^2 underflowed to 0 and the next diagonal of the Lanczos estimate divided by it
    # (ZeroDivisionError); the iteration now stops at the solution it cannot move from.
    rng = np.random.RandomState(6)
    X = rng.randn(10, 30)
    y = X @ rng.randn(30)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # tol=0 may be unreachable: warned, not an error
        est = LinearRegressor(solver=solver, alpha=1.0, tol=tol, max_iter=500).fit(X, y)
    ref = LinearRegressor(alpha=1.0).fit(X, y)
    assert _rel(est.coef_, ref.coef_) < 1e-12  # a ridge of 1 on unit-variance columns: condition number ~ 10


@pytest.mark.parametrize("solver", KRYLOV)
def test_warm_start_continues_from_coef(solver, rng):
    X, y = _problem(rng)
    est = LinearRegressor(solver=solver, tol=1e-10, warm_start=True)
    with pytest.warns(ConvergenceWarning):
        est.set_params(max_iter=3).fit(X, y)
    first = est.coef_.copy()
    est.set_params(max_iter=None).fit(X, y)
    cold = LinearRegressor(solver=solver, tol=1e-10).fit(X, y)
    assert est.n_iter_ < cold.n_iter_
    assert not np.array_equal(first, est.coef_)
    assert _rel(est.coef_, cold.coef_) < 1e-7
    est.fit(X, y)  # already converged: no iteration needed
    assert est.n_iter_ == 0


@pytest.mark.parametrize("solver", KRYLOV)
def test_partial_fit_refits_the_call_rows_from_the_previous_coefficients(solver, rng):
    X, y = _problem(rng)
    est = LinearRegressor(solver=solver, tol=TOL)
    est.partial_fit(X[:300], y[:300])
    est.partial_fit(X, y)
    ref = LinearRegressor(solver="qr").fit(X, y)
    assert _rel(est.coef_, ref.coef_) < AGREE


def test_zero_total_weight_is_an_error(rng):
    X, y = _problem(rng, n=20)
    params = LinearRegressor(solver="cg").get_params()
    with pytest.raises(ValueError, match="sums to zero"):
        _krylov.SOLVERS["cg"].fit(params, Data(X, y.reshape(-1, 1), np.zeros(20), True))


@pytest.mark.parametrize("solver", KRYLOV)
@pytest.mark.parametrize("sparse", [False, True])
@pytest.mark.parametrize("where", ["y", "X"])
def test_a_huge_value_in_a_zero_weight_row_is_not_seen(solver, sparse, where, rng):
    # A weight of 0 deletes its row from the objective. The rescaling read y over every row: y = 1e200 there
    # divided the other targets to zero (zero coefficients, n_iter_ 0, silent); x = 1e200 made the moments'
    # weighted squares 0 * inf, a false overflow error.
    X, y = _problem(rng, n=200)
    w = np.ones(200)
    w[7] = 0.0
    X2, y2 = X.copy(), y.copy()
    if where == "y":
        y2[7] = 1e200
    else:
        X2[7, 0] = 1e200
    as_x = scipy.sparse.csr_array if sparse else np.asarray
    ref = LinearRegressor(solver=solver, tol=1e-10).fit(as_x(np.delete(X, 7, axis=0)), np.delete(y, 7))
    est = LinearRegressor(solver=solver, tol=1e-10).fit(as_x(X2), y2, sample_weight=w)
    # the same rows, weights and iterations: the same arithmetic
    np.testing.assert_array_equal(est.coef_, ref.coef_)
    assert est.intercept_ == ref.intercept_ and est.n_iter_ == ref.n_iter_


@pytest.mark.parametrize("solver", KRYLOV)
@pytest.mark.parametrize("sparse", [False, True])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_X_is_named_by_the_solver(solver, sparse, bad, rng):
    """Validation leaves X's finiteness to the solver (checks_finite_X), whose moments pass sees every value: a
    NaN or inf is reported as such, also in a row of zero weight, and the input is not modified."""
    X = rng.normal(size=(50, 4))
    X[7, 2] = bad
    w = np.ones(50)
    w[7] = 0.0
    X = scipy.sparse.csr_array(X) if sparse else X
    before = X.copy()
    for sample_weight in (None, w):
        with pytest.raises(ValueError, match="Input X contains (NaN|infinity)"):
            LinearRegressor(solver=solver).fit(X, rng.normal(size=50), sample_weight=sample_weight)
    np.testing.assert_array_equal(X.toarray() if sparse else X, before.toarray() if sparse else before)


# ---------------------------------------------------------------- determinism


@pytest.mark.parametrize("solver", KRYLOV)
@pytest.mark.parametrize("sparse", [False, True])
def test_bit_identical_for_any_thread_count(solver, sparse, rng):
    n = 3 * _krylov.SEGMENT_ROWS + 5  # several segments
    X = rng.normal(size=(n, 6))
    if sparse:
        X = scipy.sparse.csr_array(X * (rng.random(X.shape) < 0.5))
        assert len(_krylov._segments(n, 6, X.nnz)) > 1
    y = X @ rng.normal(size=6) + rng.normal(size=n)
    w = rng.random(n)
    with threadpool_limits(1):
        one = LinearRegressor(solver=solver, tol=TOL).fit(X, y, sample_weight=w)
    with threadpool_limits(2):
        two = LinearRegressor(solver=solver, tol=TOL).fit(X, y, sample_weight=w)
    again = LinearRegressor(solver=solver, tol=TOL).fit(X, y, sample_weight=w)
    np.testing.assert_array_equal(one.coef_, two.coef_)
    np.testing.assert_array_equal(one.coef_, again.coef_)
    assert one.intercept_ == two.intercept_ == again.intercept_


@pytest.mark.parametrize("sparse", [False, True])
def test_pass_parts_sum_to_the_summed_pass(sparse, rng):
    """``chunk_pass(parts=...)`` leaves each segment's vector in its row; summed in row order (as the sweeps
    that consume them do) they are the summed pass bit for bit, and a wrong buffer is refused."""
    n = 3 * _krylov.SEGMENT_ROWS + 5
    X = rng.normal(size=(n, 6))
    if sparse:
        X = scipy.sparse.csr_array(X * (rng.random(X.shape) < 0.5))
    data = Data(X, rng.normal(size=(n, 1)), None, True)
    S = _krylov.segment_count(data)
    assert S > 1
    v, sw = rng.normal(size=6), rng.random(n)
    with threadpool_limits(2):
        summed = _krylov.chunk_pass(data, sw, 0, v, 0.7, 0.2)
        parts = np.full((S, 6), np.nan)
        split = _krylov.chunk_pass(data, sw, 0, v, 0.7, 0.2, parts=parts)
    assert split.z is parts and (split.ss, split.se) == (summed.ss, summed.se)
    np.testing.assert_array_equal(_reference._sum_parts(parts), summed.z)
    with pytest.raises(ValueError, match="one row per segment"):
        _krylov.chunk_pass(data, sw, 0, v, 0.7, 0.2, parts=np.empty((S + 1, 6)))


class _SummedPasses:
    """The in-memory passes without ``fused_parts``: the path a stream or Dask source takes."""

    def __init__(self, passes):
        self.inner = passes

    def moments(self, centred):
        return self.inner.moments(centred)

    def fused(self, target, v, c, shift):
        return self.inner.fused(target, v, c, shift)


@pytest.mark.parametrize("sparse", [False, True])
@pytest.mark.parametrize("centred", [False, True])
@pytest.mark.parametrize("scaled", [False, True])
@pytest.mark.parametrize("rows", [3 * _krylov.SEGMENT_ROWS + 5, 300])  # several segments, and one
def test_final_check_in_place_equals_the_summed_pass(sparse, centred, scaled, rows, rng):
    """The final check's residual formed in place in the parts buffer is, bit for bit, the one formed from a
    summed pass with fresh vectors (the path of other sources), with and without scaling (D a vector or the
    number 1), centring and several segments."""
    d = 6
    X = rng.normal(size=(rows, d)) * (np.array([1.0, 30.0, 1.0, 1.0, 0.1, 1.0]) if scaled else 1.0)
    if sparse:
        X = scipy.sparse.csr_array(X * (rng.random(X.shape) < 0.5))
    data = Data(X, rng.normal(size=(rows, 1)) + 2.0, rng.random(rows), True)
    params = {"alpha": 0.3, "fit_intercept": centred, "tol": 1e-6}
    passes = _krylov.Passes(data)
    mom = passes.moments(centred)
    ops = [_krylov._Operator(p, mom, 0, params) for p in (passes, _SummedPasses(passes))]
    assert ops[0].scaled == ops[1].scaled == scaled
    x = rng.normal(size=d)
    (in_place, r_in_place), (summed, r_summed) = (op.normal_residual(x.copy()) for op in ops)
    np.testing.assert_array_equal(in_place, summed)
    assert r_in_place == r_summed
    # and against the residual's definition, in NumPy
    Xd = X.toarray() if sparse else X
    w, y = data.sample_weight, data.Y[:, 0]
    m = w @ Xd / w.sum() if centred else np.zeros(d)
    my = w @ y / w.sum() if centred else 0.0
    D = ops[0].D * np.ones(d)
    A = np.sqrt(w)[:, None] * (Xd - m) * D
    b = np.sqrt(w) * (y - my)
    expected = A.T @ (b - A @ x) - 0.3 * w.sum() * D * D * x
    np.testing.assert_allclose(in_place, expected, rtol=1e-9, atol=1e-9 * np.abs(A.T @ b).max())
    # the augmented residual's norm, ||[b - A x; -lam D x]||
    expected_r = math.sqrt(np.sum((b - A @ x) ** 2) + 0.3 * w.sum() * np.sum((D * x) ** 2))
    assert r_in_place == pytest.approx(expected_r, rel=1e-12)


def test_jacobi_pays_reads_the_extremes_of_the_used_columns(rng):
    """The test compares the largest and smallest ``diag`` over columns with ``colsq > 0`` (as gathering them would)."""
    for _ in range(20):
        colsq = rng.random(50) * (rng.random(50) < 0.7) * rng.choice([1.0, 10.0, 100.0])
        diag = colsq + rng.random()
        used = diag[colsq > 0]
        expected = used.size > 0 and float(used.max()) > 16.0 * float(used.min())
        assert _krylov.jacobi_pays("auto", colsq, diag) == expected


# ---------------------------------------------------------------- streams and Dask


class _CountingChunks:
    """A callable stream that counts its reads."""

    def __init__(self, X, y, w, size):
        self.items = [(X[i : i + size], y[i : i + size], w[i : i + size]) for i in range(0, len(X), size)]
        self.reads = 0

    def __call__(self):
        self.reads += 1
        return iter(self.items)


@pytest.mark.parametrize("solver", KRYLOV)
def test_fit_stream_reads_the_stream_once_per_iteration(solver, rng):
    X, y = _problem(rng, n=1000)
    w = rng.uniform(0.5, 2.0, size=1000)
    chunks = _CountingChunks(X, y, w, 230)
    est = LinearRegressor(solver=solver, alpha=0.01, tol=TOL).fit_stream(chunks)
    ref = LinearRegressor(solver=solver, alpha=0.01, tol=TOL).fit(X, y, sample_weight=w)
    assert _rel(est.coef_, ref.coef_) < AGREE
    assert abs(est.intercept_ - ref.intercept_) < AGREE * np.abs(y).max()
    # The moments, one per iteration, the final check: a cold start's residual comes from the moments.
    assert chunks.reads == est.n_iter_ + 2
    warm = LinearRegressor(solver=solver, alpha=0.01, tol=TOL, warm_start=True).fit(X, y, sample_weight=w)
    chunks.reads = 0
    warm.fit_stream(chunks)  # from the in-memory fit's coefficients
    assert chunks.reads == warm.n_iter_ + 3  # a warm start computes its first residual by a pass


@pytest.mark.parametrize("solver", KRYLOV)
@pytest.mark.parametrize("tol", [None, 0.0])
@pytest.mark.parametrize("sparse", [False, True])
def test_tol_none_stops_at_machine_precision(solver, tol, sparse, rng):
    # Run on past convergence, CGLS's recurrences turned rounding noise into steps: on a 3 x 5 exact system the
    # coefficients reached 1e16 (MSE 0.1, where tol=1e-6 had 2e-33); LSQR drifted off the least-norm solution.
    X = scipy.sparse.random(3, 5, density=0.6, random_state=1, format="csr")
    X = X if sparse else X.toarray()
    y = rng.standard_normal(3)
    ref = LinearRegressor(solver=solver, tol=1e-6).fit(X, y)
    est = LinearRegressor(solver=solver, tol=tol).fit(X, y)
    assert est.n_iter_ < 100
    np.testing.assert_allclose(est.coef_, ref.coef_, rtol=1e-10, atol=1e-12)
    assert np.mean((est.predict(X) - y) ** 2) < 1e-28


@pytest.mark.parametrize("solver", KRYLOV)
def test_tol_none_on_an_ill_conditioned_problem_reaches_the_closed_form(solver, rng):
    # A first machine-precision stop (A^T r at its rounding, scaled by ||A|| ||z||) ended at a relative coefficient
    # error of 0.74 where tol=1e-15 reached 4e-10 (condition number 1e7, 300 x 30).
    U, _ = np.linalg.qr(rng.standard_normal((300, 30)))
    V, _ = np.linalg.qr(rng.standard_normal((30, 30)))
    X = U @ np.diag(np.logspace(0, -7, 30)) @ V.T
    y = X @ rng.standard_normal(30) + 1e-3 * rng.standard_normal(300)
    ref = LinearRegressor(solver="qr").fit(X, y)
    est = LinearRegressor(solver=solver, tol=None, max_iter=5000).fit(X, y)
    # kappa 1e7 times eps: about 1e-9 of the coefficients is what the data determine (CGLS squares kappa: 1e-7)
    assert np.linalg.norm(est.coef_ - ref.coef_) <= 1e-6 * np.linalg.norm(ref.coef_)


def test_tol_none_cgls_on_a_nearly_compatible_weighted_problem(rng):
    # CGLS's recurred ||r|| cancelled to 0, S1 stopped it unconfirmed (19 iterations, coefficients 1.3e-2 off);
    # then a confirmation at sqrt(eps) of ||b|| failed three times and the run ended (0.13 off). A restart now
    # resolves ||r|| relative to its own exact start.
    X = scipy.sparse.random(2000, 80, density=0.05, format="csr", random_state=2)
    X.data = rng.standard_normal(X.nnz)
    X = scipy.sparse.csr_array(X @ scipy.sparse.diags(np.logspace(0, 7, 80)))
    y = X @ rng.standard_normal(80) + 0.1 * rng.standard_normal(2000) + 3.0
    w = 10 ** rng.uniform(-2, 2, 2000)
    ref = LinearRegressor(solver="qr").fit(X, y, sample_weight=w)
    est = LinearRegressor(solver="cg", tol=None, max_iter=3000).fit(X, y, sample_weight=w)
    assert np.linalg.norm(est.coef_ - ref.coef_) <= 1e-8 * np.linalg.norm(ref.coef_)


def test_fit_stream_refuses_a_one_shot_iterator(rng):
    X, y = _problem(rng, n=50)
    # (it named a max_epochs=2 the user had not set: the passes are the iterations)
    with pytest.raises(TypeError, match="solver='cg' \\(one read of the stream per iteration\\) needs several "
                                        "passes, but chunks is a one-shot"):
        LinearRegressor(solver="cg").fit_stream(iter([(X, y)]))


@pytest.mark.parametrize("solver", KRYLOV)
def test_dask_fit_equals_in_memory_with_one_pass_per_iteration(solver, rng, monkeypatch):
    da = pytest.importorskip("dask.array")
    from fastopt import _krylov_dask

    X, y = _problem(rng, n=1500, k=2)
    w = rng.uniform(0.5, 2.0, size=1500)
    passes = []
    original = _krylov_dask.DaskPasses.fused
    monkeypatch.setattr(_krylov_dask.DaskPasses, "fused",
                        lambda self, *a: passes.append(1) or original(self, *a))
    est = LinearRegressor(solver=solver, alpha=0.01, tol=TOL).fit(
        da.from_array(X, chunks=(400, 12)), da.from_array(y, chunks=(400, 2)), sample_weight=da.from_array(w, 400)
    )
    ref = LinearRegressor(solver=solver, alpha=0.01, tol=TOL).fit(X, y, sample_weight=w)
    assert _rel(est.coef_, ref.coef_) < AGREE
    assert np.abs(est.intercept_ - ref.intercept_).max() < AGREE * np.abs(y).max()
    # Two targets, each: its iterations and the final check (a cold start needs no pass); one distributed pass each.
    assert len(passes) <= 2 * (est.n_iter_ + 1)


# ---------------------------------------------------------------- solver="auto"


@pytest.mark.parametrize(
    "shape, sparse, alpha, expected",
    [
        ((1000, 50), False, 0.0, "normal"),
        ((6000, 5792), False, 0.0, "normal"),
        ((10, 50), False, 0.0, "qr"),
        ((10, 50), False, 0.1, "normal"),
        ((1000, 5793), False, 0.0, "lsqr"),
        ((1000, 5793), False, 1.0, "cg"),
        ((1000, 50), True, 0.0, "normal"),
        ((1000, 2**18), True, 0.0, "lsqr"),
        ((1000, 2**18), True, 1.0, "cg"),
        ((20_000, 3000), True, 0.0, "lsqr"),  # the Gram fits, but costs more than AUTO_MIN_ITERS iterations
        ((20_000, 3000), True, 1.0, "cg"),
    ],
)
def test_auto_table(shape, sparse, alpha, expected):
    X = scipy.sparse.csr_array(shape) if sparse else np.broadcast_to(np.float64(0), shape)
    assert _solvers.resolve("auto", "squared_error", X, alpha) == expected
    assert _solvers.resolve("auto", "huber", X, alpha) == "newton"
    assert _solvers.resolve("auto", "huber", X, alpha, incremental=True) == "adam"
    assert _solvers.resolve("auto", "squared_error") == "normal"  # rows not known yet (partial_fit, streams)


def test_auto_fits_a_wide_problem_with_a_krylov_solver(rng, monkeypatch):
    monkeypatch.setattr(_solvers, "GRAM_MAX_BYTES", 8 * 30 * 30)  # so that d = 31 counts as wide
    X, y = rng.normal(size=(200, 31)), rng.normal(size=200)
    est = LinearRegressor(alpha=0.1, tol=TOL).fit(X, y)
    assert est.solver_ == "cg"
    ref = LinearRegressor(solver="normal", alpha=0.1).fit(X, y)
    assert _rel(est.coef_, ref.coef_) < AGREE
    assert LinearRegressor(solver="auto").fit(X[:20], y[:20]).solver_ in ("lsqr",)


def test_auto_picks_lsqr_for_wide_sparse_input(rng):
    X = scipy.sparse.random(300, 6000, density=0.003, random_state=rng, format="csr")
    y = rng.normal(size=300)
    est = LinearRegressor(tol=1e-8).fit(X, y)
    assert est.solver_ == "lsqr"
    residual = X.T @ (y - est.predict(X))
    assert np.linalg.norm(residual) <= 1e-6 * np.linalg.norm(X.T @ (y - y.mean()))


def _one_hot(rng, n, levels):
    """One-hot columns of Zipf-distributed categorical columns (as OneHotEncoder(sparse_output=True) makes):
    with an intercept the design is rank-deficient, and the rarest levels never occur (empty columns)."""
    blocks = []
    for c in levels:
        p = 1.0 / np.arange(1, c + 1) ** 1.1
        cat = rng.choice(c, size=n, p=p / p.sum())
        blocks.append(scipy.sparse.csr_array((np.ones(n), cat, np.arange(n + 1)), shape=(n, c)))
    return scipy.sparse.hstack(blocks, format="csr")


@pytest.mark.filterwarnings("ignore::fastopt.exceptions.RankDeficientWarning")  # the reference
@pytest.mark.parametrize("alpha", [0.0, 1e-3])
def test_auto_fits_sparse_one_hot_by_krylov_to_the_closed_forms_answer(rng, alpha):
    """Sparse X whose Gram fits but costs many Krylov iterations: "auto" runs LSQR (CGLS with a ridge) to
    round-off first. On 20,000 one-hot rows of 3,000 columns the closed form took 1.4-3 s (Cholesky) and, without
    a ridge, over a minute (rank-deficient: its SVD fallback densifies X); LSQR 10-60 ms. The answer is the closed
    form's (3,000 rows of 1,440 columns here): the same predictions to 1e-9 of their scale and the same objective
    to 1e-12, without a warning."""
    X = _one_hot(rng, 3000, (1200, 200, 40))
    y = X @ rng.normal(size=X.shape[1]) + 0.5 * rng.normal(size=X.shape[0]) + 3.0
    assert _solvers.krylov_first(X)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        est = LinearRegressor(alpha=alpha).fit(X, y)
    assert est.solver_ == ("cg" if alpha else "lsqr")
    assert est.n_iter_ < 100
    ref = LinearRegressor(solver="qr", alpha=alpha).fit(X.toarray(), y)

    def objective(e):
        r = e.predict(X) - y
        return 0.5 * np.mean(r * r) + 0.5 * alpha * e.coef_ @ e.coef_

    # LSQR's S2 rule at tol 1e-12 bounds the objective's relative excess by (1e-12 kappa)^2; kappa < 1e3 here.
    assert objective(est) <= objective(ref) * (1 + 1e-12)
    assert np.max(np.abs(est.predict(X) - ref.predict(X))) <= 1e-9 * np.std(y)
    if alpha:
        return
    # Rank-deficient without a ridge: the solution of least norm in units where each centred column has norm 1
    # (LSQR's Jacobi preconditioning), so rescaling the columns rescales the coefficients and nothing else ...
    s = rng.uniform(0.1, 10.0, size=X.shape[1])
    scaled = LinearRegressor().fit(X @ scipy.sparse.diags_array(s), y)
    assert _rel(scaled.coef_ * s, est.coef_) < 1e-8
    # ... and precondition="none" gives the closed form's minimum-norm coefficients (by LSQR or the closed form)
    plain = LinearRegressor(precondition="none").fit(X, y)
    assert _rel(plain.coef_, ref.coef_) < 1e-8
    assert _rel(est.coef_, ref.coef_) > 1e-3  # (which the preconditioned answer is not)


def test_auto_falls_back_on_the_closed_form_when_krylov_would_cost_more(rng):
    """Pairs of columns equal to 1e-6 (condition number about 1e7): LSQR does not reach round-off within the
    iterations the closed form costs, so "auto" fits by the closed form after all, silently (no
    ConvergenceWarning: the fit is exact), with the closed form's own coefficients and attributes; a warm start
    continues from them."""
    S = scipy.sparse.random(3000, 500, density=0.02, random_state=rng, format="csc")
    T = S.copy()
    T.data = T.data + 1e-6 * rng.standard_normal(T.data.shape)
    X = scipy.sparse.hstack([S, T], format="csr")
    y = X @ rng.normal(size=1000) + rng.normal(size=3000)
    assert _solvers.krylov_first(X)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        est = LinearRegressor(warm_start=True).fit(X, y)
    ref = LinearRegressor(solver="normal").fit(X, y)
    assert est.solver_ == ref.solver_ == "qr"
    np.testing.assert_array_equal(est.coef_, ref.coef_)
    assert est.rcond_ == ref.rcond_
    with pytest.warns(ConvergenceWarning):  # so LSQR does stop short there
        LinearRegressor(solver="lsqr", tol=_krylov.AUTO_TOL, max_iter=_krylov.closed_form_iterations(3000, 1000,
                                                                                                      X.nnz)).fit(X, y)
    est.fit(X, y)  # a warm start from the closed form's coefficients (a Krylov state): the same answer
    assert _rel(est.coef_, ref.coef_) < 1e-6


@pytest.mark.filterwarnings("ignore::fastopt.exceptions.RankDeficientWarning")  # the reference
@pytest.mark.parametrize("alpha", [0.0, 1e-3])
def test_auto_fit_stream_of_sparse_one_hot_chunks_by_krylov(rng, alpha):
    """fit_stream of a re-readable stream of sparse chunks whose Gram fits: "auto" runs LSQR (CGLS with a
    ridge) over the stream first, as fit does in memory (20,000 one-hot rows of 2,350 columns in four chunks:
    21.7 s by the closed form's densified SVD pass, 1.3 s by its Cholesky with a ridge; 0.15 s now), with the
    in-memory closed form's answer."""
    X = _one_hot(rng, 3000, (1200, 200, 40))
    y = X @ rng.normal(size=X.shape[1]) + 0.5 * rng.normal(size=X.shape[0]) + 3.0
    chunks = [(X[i : i + 800], y[i : i + 800]) for i in range(0, 3000, 800)]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        est = LinearRegressor(alpha=alpha).fit_stream(chunks)
    assert est.solver_ == ("cg" if alpha else "lsqr")
    ref = LinearRegressor(solver="qr", alpha=alpha).fit(X.toarray(), y)
    assert np.max(np.abs(est.predict(X) - ref.predict(X))) <= 1e-9 * np.std(y)
    # a one-shot iterator cannot be read once per iteration, and dense chunks keep the closed form
    assert LinearRegressor(alpha=1e-3).fit_stream(iter(chunks)).solver_ not in KRYLOV
    dense = [(Xc.toarray(), yc) for Xc, yc in chunks]
    assert LinearRegressor(alpha=1e-3).fit_stream(dense).solver_ not in KRYLOV


def test_auto_fit_stream_falls_back_on_the_closed_form(rng):
    """Nearly collinear sparse chunks (as test_auto_falls_back_on_the_closed_form_when_krylov_would_cost_more):
    LSQR stops short of round-off within the closed form's cost, so the stream is fitted by the closed form,
    silently, with the coefficients of fit_stream(solver="normal") bit for bit."""
    S = scipy.sparse.random(3000, 500, density=0.02, random_state=rng, format="csc")
    T = S.copy()
    T.data = T.data + 1e-6 * rng.standard_normal(T.data.shape)
    X = scipy.sparse.hstack([S, T], format="csr")
    y = X @ rng.normal(size=1000) + rng.normal(size=3000)
    chunks = [(X[i : i + 1000], y[i : i + 1000]) for i in range(0, 3000, 1000)]
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        est = LinearRegressor().fit_stream(chunks)
    ref = LinearRegressor(solver="normal").fit_stream(chunks)
    assert est.solver_ == ref.solver_ and est.solver_ not in KRYLOV
    np.testing.assert_array_equal(est.coef_, ref.coef_)


@pytest.mark.parametrize("alpha", [0.0, 1e-3])
def test_auto_on_dask_arrays_of_sparse_blocks_runs_krylov_first(rng, alpha):
    """solver="auto" on a Dask array of sparse one-hot blocks whose Gram fits: LSQR (CGLS with a ridge) over the
    blocks first, judged once they are validated, as fit in memory (20,000 rows of 2,350 one-hot columns in four
    blocks: 34.5 s by the closed form's densified SVD, 0.17 s now), with the in-memory fit's answer; nearly
    collinear blocks fall back on the closed form, silently."""
    da = pytest.importorskip("dask.array")
    dask = pytest.importorskip("dask")
    X = _one_hot(rng, 3000, (2600, 300, 100))  # wide enough that two blocks' scheduling is worth it
    y = X @ rng.normal(size=X.shape[1]) + 0.5 * rng.normal(size=X.shape[0]) + 3.0
    dX, dy = da.from_array(X, chunks=(1500, X.shape[1]), asarray=False), da.from_array(y, chunks=1500)
    with dask.config.set(scheduler="synchronous"), warnings.catch_warnings():
        warnings.simplefilter("error")
        est = LinearRegressor(alpha=alpha).fit(dX, dy)
    assert est.solver_ == ("cg" if alpha else "lsqr")
    ref = LinearRegressor(alpha=alpha).fit(X, y)  # in memory: to round-off, the closed form's answer (above)
    assert ref.solver_ == est.solver_
    assert np.max(np.abs(est.predict(X) - ref.predict(X))) <= 1e-9 * np.std(y)
    if alpha:
        return
    S = scipy.sparse.random(3000, 1000, density=0.01, random_state=rng, format="csc")
    T = S.copy()
    T.data = T.data + 1e-6 * rng.standard_normal(T.data.shape)
    C = scipy.sparse.hstack([S, T], format="csr")
    yc = C @ rng.normal(size=2000) + rng.normal(size=3000)
    dC, dyc = da.from_array(C, chunks=(1500, 2000), asarray=False), da.from_array(yc, chunks=1500)
    assert _krylov.closed_form_iterations(3000, 2000, C.nnz, blocks=2) >= _krylov.AUTO_MIN_ITERS  # LSQR tried
    with dask.config.set(scheduler="synchronous"), warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        est = LinearRegressor().fit(dC, dyc)
        ref = LinearRegressor(solver="normal").fit(dC, dyc)
    assert est.solver_ == ref.solver_ and est.solver_ not in KRYLOV
    np.testing.assert_array_equal(est.coef_, ref.coef_)


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(300, 1200), d=st.integers(600, 900),
       density=st.floats(0.002, 0.02), k=st.sampled_from([1, 2]), weighted=st.booleans(),
       fit_intercept=st.booleans(), alpha=st.sampled_from([0.0, 1e-3, 0.1, "per-target"]))
def test_auto_krylov_first_reaches_the_closed_forms_objective(seed, n, d, density, k, weighted, fit_intercept,
                                                               alpha):
    """Random sparse designs in the band where "auto" runs LSQR/CGLS first (shapes, sparsity, targets,
    weights, intercept, ridge or none, one alpha per target): whichever ran, the objective is the closed
    form's to 1e-9 of the targets' scale (LSQR/CGLS stop at tol 1e-12; rank-deficient and underdetermined
    designs included), and no warning is raised but the closed form's own RankDeficientWarning."""
    from fastopt.exceptions import RankDeficientWarning

    r = np.random.default_rng(seed)
    X = scipy.sparse.random(n, d, density=density, random_state=r, format="csr")
    X.data *= 10.0 ** r.uniform(-1, 1, size=d)[X.indices]  # columns of different scales
    assume(_solvers.krylov_first(X))
    Y = X @ r.normal(size=(d, k)) + 0.3 * r.normal(size=(n, k)) + 1.0
    w = r.uniform(0.2, 3.0, size=n) if weighted else None
    a = np.array([1e-3, 0.1])[:k] if alpha == "per-target" else alpha
    y = Y[:, 0] if k == 1 else Y
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warnings.simplefilter("ignore", RankDeficientWarning)
        est = LinearRegressor(alpha=a, fit_intercept=fit_intercept).fit(X, y, sample_weight=w)
        ref = LinearRegressor(solver="qr", alpha=a, fit_intercept=fit_intercept).fit(X.toarray(), y,
                                                                                     sample_weight=w)
    ww = np.ones(n) if w is None else w
    a_k = np.broadcast_to(np.asarray(a, dtype=float), (k,))

    def objective(e):
        R = (e.predict(X) - y).reshape(n, -1)
        C = np.asarray(e.coef_).reshape(k, d)
        return sum(0.5 * ww @ R[:, j] ** 2 / ww.sum() + 0.5 * a_k[j] * C[j] @ C[j] for j in range(k))

    scale = 0.5 * float(np.sum(ww @ Y**2) / ww.sum())
    assert objective(est) <= objective(ref) + 1e-9 * scale


@pytest.mark.filterwarnings("ignore::fastopt.exceptions.RankDeficientWarning")  # one-hot with an intercept
def test_auto_keeps_the_closed_form_where_it_is_cheap_or_needed(rng):
    """Narrow sparse X (the closed form costs fewer than AUTO_MIN_ITERS iterations), positive=True (NNLS: no
    Krylov solver has it), and dense X stay on the closed form; so does a partial_fit."""
    X = _one_hot(rng, 2000, (40, 10))
    y = X @ rng.normal(size=50) + 1.0
    assert not _solvers.krylov_first(X)
    assert LinearRegressor().fit(X, y).solver_ in ("cholesky", "pivoted_cholesky", "qr", "svd", "eigh")
    W = _one_hot(rng, 1000, (1000,))
    yw = W @ rng.uniform(size=1000) + 1.0
    assert _solvers.krylov_first(W) and not _solvers.krylov_first(W, positive=True)
    assert LinearRegressor(positive=True).fit(W, yw).solver_ not in KRYLOV
    assert not _solvers.krylov_first(W.toarray())
    assert _solvers.resolve("auto", "squared_error", W, 0.0, sparse=True, positive=True) not in KRYLOV


def _nearly_dependent(rng, n, levels=(300, 150, 40)):
    """One-hot columns of three categorical columns (``levels``) beside three numeric ones, the third
    the sum of the others plus 1e-3 noise, and their response: with an intercept the one-hot columns are exactly
    dependent and the numeric ones nearly, so Cholesky rejects the Gram and the pivoted path does not apply (the
    numeric columns' small singular value is far above lstsq's cutoff, too small for the kept columns' test)."""
    G = rng.normal(size=(n, 3))
    G[:, 2] = G[:, 0] + G[:, 1] + 1e-3 * rng.normal(size=n)
    X = scipy.sparse.hstack([_one_hot(rng, n, levels), scipy.sparse.csr_array(G)], format="csr")
    return X, X @ rng.normal(size=X.shape[1]) + 0.5 * rng.normal(size=n) + 3.0


@pytest.mark.filterwarnings("ignore::fastopt.exceptions.RankDeficientWarning")  # the references
def test_auto_tries_krylov_before_the_closed_forms_densifying_fallback(rng, monkeypatch):
    """Narrow sparse X keeps the closed form, whose Cholesky is cheap. Where Cholesky is rejected and the pivoted
    path does not apply (exactly dependent one-hot columns take it: tests/test_pivoted.py), the QR/SVD fallback
    densifies X: O(n d^2), 9.2 s on 200,000 rows of 493 columns where LSQR takes 0.03 s. "auto" runs LSQR there
    first, within the iterations that fallback would cost (fastopt._krylov.qr_fallback_iterations), to the closed
    form's accuracy: the same predictions and objective, no warning. It keeps the Gram's statistics, so
    partial_fit goes on with them; solver="normal" named is the closed form, fallback and all. (On these 15,000
    rows the model prices the closed form above AUTO_MIN_ITERS iterations, so LSQR would run first anyway; the
    closed form runs first as on longer X, where an iteration costs more.)"""
    X, y = _nearly_dependent(rng, 20_000)
    assert _solvers.krylov_first(X[:15_000])
    monkeypatch.setattr(_solvers, "krylov_first", lambda X, positive=False, alpha=0.0: False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        est = LinearRegressor().fit(X[:15_000], y[:15_000])
    assert est.solver_ == "lsqr" and est.n_iter_ < 100
    named = LinearRegressor(solver="normal").fit(X[:15_000], y[:15_000])
    assert named.solver_ == "svd"  # the pivoted path does not apply: the densifying fallback
    ref = LinearRegressor(solver="qr").fit(X[:15_000].toarray(), y[:15_000])

    def objective(e, rows=slice(0, 15_000)):
        r = e.predict(X[rows]) - y[rows]
        return 0.5 * np.mean(r * r)

    # LSQR's S2 rule at tol 1e-12 bounds the objective's relative excess by (1e-12 kappa)^2.
    assert objective(est) <= objective(ref) * (1 + 1e-12)
    assert np.max(np.abs(est.predict(X) - ref.predict(X))) <= 1e-9 * np.std(y)
    assert isinstance(est._solver_state, _closed_form.ClosedFormState)
    est.partial_fit(X[15_000:], y[15_000:])  # the statistics merged: the fit of all rows
    whole = LinearRegressor(solver="qr").fit(X.toarray(), y)
    assert np.max(np.abs(est.predict(X) - whole.predict(X))) <= 1e-6 * np.std(y)


@pytest.mark.filterwarnings("ignore::fastopt.exceptions.RankDeficientWarning")  # the references
def test_auto_on_sparse_chunks_tries_krylov_before_the_densifying_qr_pass(rng, monkeypatch):
    """fit_stream of a re-readable stream of sparse chunks and fit on Dask sparse blocks, as in memory: when the
    merged Gram's Cholesky is rejected and the pivoted path does not apply, LSQR over the chunks (within what the
    QR pass would cost) before that pass, which densifies every chunk. 200,000 one-hot rows of 493 columns in four
    chunks: the stream 9.1 s -> 0.19 s, the Dask blocks 12 s -> 0.23-0.33 s. A one-shot stream, which cannot be
    read again, keeps its warned eigensolve."""
    from fastopt.exceptions import IllConditionedWarning, RankDeficientWarning

    da = pytest.importorskip("dask.array")
    dask = pytest.importorskip("dask")
    X, y = _nearly_dependent(rng, 16_000)
    # On these 16,000 rows the model prices the closed form above AUTO_MIN_ITERS iterations, so the stream would run
    # LSQR first anyway; the closed form runs first here, as on longer chunks, where an iteration costs more. (The
    # QR pass over four Dask blocks is priced at 38 iterations of 1.5 ms a block: on 8,000 rows 19, below
    # AUTO_MIN_ITERS, where the QR pass runs directly.)
    monkeypatch.setattr(_krylov, "auto_budget", lambda *args, **kwargs: 0)
    chunks = [(X[i : i + 4000], y[i : i + 4000]) for i in range(0, 16_000, 4000)]
    ref = LinearRegressor(solver="qr").fit(X.toarray(), y)
    dX, dy = da.from_array(X, chunks=(4000, X.shape[1]), asarray=False), da.from_array(y, chunks=4000)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        streamed = LinearRegressor().fit_stream(chunks)
        with dask.config.set(scheduler="synchronous"):
            blocked = LinearRegressor().fit(dX, dy)
    for est in (streamed, blocked):
        assert est.solver_ == "lsqr"
        assert np.max(np.abs(est.predict(X) - ref.predict(X))) <= 1e-9 * np.std(y)
        assert isinstance(est._solver_state, _closed_form.ClosedFormState)
    with pytest.warns(IllConditionedWarning):
        assert LinearRegressor().fit_stream(iter(chunks)).solver_ == "eigh"
    # Each iteration reads the stream again: where the QR pass costs fewer than AUTO_MIN_ITERS (narrow
    # rows, few of them) the closed form reads it once more instead (its pivoted path's confirming pass).
    small = scipy.sparse.hstack([_one_hot(rng, 2000, (30, 15)), scipy.sparse.csr_array(rng.normal(size=(2000, 2)))],
                                format="csr")
    ys = small @ rng.normal(size=small.shape[1]) + 1.0
    assert _krylov.qr_fallback_iterations(2000, small.shape[1], small.nnz) < _krylov.AUTO_MIN_ITERS
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RankDeficientWarning)
        assert LinearRegressor().fit_stream([(small[i : i + 500], ys[i : i + 500])
                                             for i in range(0, 2000, 500)]).solver_ == "pivoted_cholesky"


def test_qr_fallback_iterations_follow_the_cost_model():
    """The QR fallback's 2 n p^2 against an iteration's cost: more rows or columns afford more iterations, at most
    the Krylov solvers' default cap."""
    base = _krylov.qr_fallback_iterations(2000, 200, 6000)
    assert _krylov.qr_fallback_iterations(2000, 400, 6000) > 3 * base
    assert _krylov.qr_fallback_iterations(10**6, 1000, 10**7) == _krylov.default_max_iter(1000)
    assert _krylov.qr_fallback_iterations(2000, 50, 4000) < 20


def test_closed_form_iterations_follow_the_cost_model():
    """The closed form's d^3 / 3 and d^2 terms against an iteration's stored values: wider X affords more
    iterations (twice the columns, between 4 and 8 times the closed form), more stored values (or targets) fewer."""
    base = _krylov.closed_form_iterations(20_000, 3000, 60_000)
    assert 4 * base < _krylov.closed_form_iterations(20_000, 6000, 60_000) < 8 * base
    assert _krylov.closed_form_iterations(20_000, 3000, 600_000) < base / 3
    assert _krylov.closed_form_iterations(20_000, 3000, 60_000, k=2) == pytest.approx(base / 2, abs=1)
    assert _krylov.closed_form_iterations(1000, 50, 5000) < _krylov.AUTO_MIN_ITERS


def test_the_sparse_grams_row_products_are_priced_at_their_cache_misses():
    """500,000 CSR rows of 20 stored values over 3,000 columns: the Gram's 2e8 row products took 0.7 s (scattered
    updates of a triangle beyond the cache), which the flop rate priced at 0.01 s, so "auto" ran the closed form
    (4.1 s with its factorisation) where LSQR took 0.26 s (12 iterations). Now the Krylov attempt is made there,
    and not where the triangle stays in cache (1,000 columns: the closed form 0.10-0.14 s, LSQR 0.13 s)."""
    assert _krylov.closed_form_iterations(500_000, 3000, 10_000_000) >= _krylov.AUTO_MIN_ITERS
    assert _krylov.closed_form_iterations(500_000, 1000, 10_000_000) < _krylov.AUTO_MIN_ITERS
    assert _krylov.gram_update_seconds(4000) > _krylov.gram_update_seconds(3000) > _krylov.gram_update_seconds(1500)
    assert _krylov.gram_update_seconds(1500) == _krylov.gram_update_seconds(500) == _krylov.GRAM_S_PER_UPDATE


def test_dense_rows_and_wide_grams_are_priced_at_their_measured_cost():
    """Measured after the Gram's panels, two threads: 100,000 CSR rows of 100 stored values over 1,000 columns,
    the closed form 0.31 s (its Gram 0.27-0.32 s) where LSQR took 0.14 s (13 iterations) and LinearRegression
    0.135 s; the model had priced an iteration at 24 ms (measured 6-10 ms), so "auto" ran the closed form. 500,000
    rows of 60 stored values over 1,000 columns: 0.61 s against LSQR's 0.29 s. Now the Krylov attempt is made on
    both; and, on these many stored values without a ridge or weights (attempt_floor: 15 iterations, not 30), on
    rows of 20 values over 1,500 columns (the closed form 0.21-0.29 s, 16 of LSQR's iterations by the model,
    where LSQR takes 0.15 s, 11 iterations) and over 2,000 (23 by the model); over 1,000 columns (12 by the
    model) the closed form runs, as on every design where LSQR's set-up and iterations would tie it."""
    floor = _krylov.attempt_floor(10_000_000, 0.0, weighted=False)
    assert floor == _krylov.AUTO_MIN_ITERS_LARGE < _krylov.AUTO_MIN_ITERS
    assert _krylov.closed_form_iterations(100_000, 1000, 10_000_000) >= _krylov.AUTO_MIN_ITERS
    assert _krylov.closed_form_iterations(500_000, 1000, 30_000_000) >= _krylov.AUTO_MIN_ITERS
    for d in (1500, 2000):
        assert floor <= _krylov.closed_form_iterations(500_000, d, 10_000_000) < _krylov.AUTO_MIN_ITERS
    assert _krylov.closed_form_iterations(500_000, 1000, 10_000_000) < floor
    # with a ridge, weights or fewer stored values, the floor is AUTO_MIN_ITERS (measured: CGLS and weighted LSQR
    # needed 23-28 iterations where the model gave 20-24, and the model prices small designs' closed form high)
    assert _krylov.attempt_floor(10_000_000, 1e-3, weighted=False) == _krylov.AUTO_MIN_ITERS
    assert _krylov.attempt_floor(10_000_000, [0.0, 1.0], weighted=False) == _krylov.AUTO_MIN_ITERS
    assert _krylov.attempt_floor(10_000_000, 0.0, weighted=True) == _krylov.AUTO_MIN_ITERS
    assert _krylov.attempt_floor(1_000_000, 0.0, weighted=False) == _krylov.AUTO_MIN_ITERS


@pytest.mark.parametrize("case", ["targets", "weights"])
def test_auto_makes_no_krylov_attempt_that_its_share_of_the_budget_cannot_finish(monkeypatch, case):
    """The route is chosen before the targets and weights are known, by one unweighted target's budget. k targets
    share it: where each one's share fell below the floor, LSQR could not finish in it (three targets of 20,000 x
    400: 5-10 iterations each, LSQR needing 14-16), and "auto" spent the attempt, then ran the closed form, 35 ms
    where the closed form alone takes 14.5 (helper-140). Now the attempt is not made there, nor on weighted rows
    below their floor; the closed form's answer is the same."""
    rng = np.random.default_rng(5)
    X = scipy.sparse.random(20_000, 800, density=0.01, format="csr", random_state=5)
    model = _krylov.closed_form_iterations(*X.shape, X.nnz)
    k, w = (3, None) if case == "targets" else (1, np.exp(rng.normal(size=X.shape[0])))
    Y = X @ rng.normal(size=(800, k)) + rng.normal(size=(X.shape[0], k))
    assert _krylov.AUTO_MIN_ITERS <= model and _solvers.krylov_first(X)
    if case == "targets":
        assert _krylov.closed_form_iterations(*X.shape, X.nnz, k=k) < _krylov.AUTO_MIN_ITERS
    attempts, solve = [], _krylov.KrylovSolver._solve
    monkeypatch.setattr(_krylov.KrylovSolver, "_solve", lambda *a, **kw: attempts.append(1) or solve(*a, **kw))
    if case == "weights":  # (one target's budget: the unweighted rows' floor is met, the weighted rows' is not)
        monkeypatch.setattr(_krylov, "attempt_floor", lambda nnz, alpha, weighted: model + 1 if weighted else 1)
    est = LinearRegressor().fit(X, Y if k > 1 else Y[:, 0], sample_weight=w)
    assert attempts == [] and est.solver_ not in KRYLOV
    ref = LinearRegressor(solver="normal").fit(X, Y if k > 1 else Y[:, 0], sample_weight=w)
    np.testing.assert_array_equal(est.coef_, ref.coef_)
    # the entries' part: rows of 5 values over 3,000 and 6,000 columns, Gram 84 and 199 ms measured
    assert 0.05 < _krylov.gram_seconds(200_000, 3001, 1_000_000) < 0.15
    assert 0.15 < _krylov.gram_seconds(200_000, 6001, 1_000_000) < 0.35


@pytest.mark.parametrize("solver", KRYLOV)
def test_fit_stream_of_sparse_chunks_equals_fit(solver, rng):
    X = _csr(rng, 900, 30)
    y = X @ rng.normal(size=30) + 0.5
    w = rng.uniform(0.5, 2.0, size=900)
    chunks = [(X[i : i + 250], y[i : i + 250], w[i : i + 250]) for i in range(0, 900, 250)]
    est = LinearRegressor(solver=solver, alpha=0.01, tol=TOL).fit_stream(chunks)
    ref = LinearRegressor(solver="qr", alpha=0.01).fit(X.toarray(), y, sample_weight=w)
    assert _rel(est.coef_, ref.coef_) < AGREE


@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="needs fork")
def test_fits_in_a_forked_child_after_the_parent_used_the_pool(rng):
    import multiprocessing

    n = 3 * _krylov.SEGMENT_ROWS  # several segments, so the thread pool is used
    X = rng.normal(size=(n, 3))
    y = X @ np.ones(3)
    with threadpool_limits(2):
        parent = LinearRegressor(solver="cg", tol=TOL).fit(X, y).coef_
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(1) as pool:
        child = pool.apply_async(_fit_coef, (X, y)).get(timeout=30)
    np.testing.assert_array_equal(parent, child)


def _fit_coef(X, y):
    with threadpool_limits(2):
        return LinearRegressor(solver="cg", tol=TOL).fit(X, y).coef_


@pytest.mark.parametrize("solver", KRYLOV)
def test_verbose_prints_the_residual_of_every_iteration(solver, rng, capsys):
    X, y = _problem(rng, n=100, d=4)
    est = LinearRegressor(solver=solver, tol=1e-8, verbose=1).fit(X, y)
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == est.n_iter_ and lines[-1].startswith(f"{solver} target 0 iteration {est.n_iter_}:")
    ratio, relative_r = (float(v) for v in re.findall(r"= (\S+?),?(?:\s|$)", lines[-1]))
    assert ratio <= 1e-8 or relative_r <= 1e-8  # the stopping rules S2 or S1 (before the final check)


@pytest.mark.parametrize("solver", KRYLOV)
def test_overflowing_data_is_a_clear_error(solver, rng):
    X, y = _problem(rng, n=50, d=3)
    X[0, 0] = 1e200  # finite, but its square is not
    with pytest.raises(ValueError, match="overflow"):
        LinearRegressor(solver=solver).fit(X, y)


@given(
    n=st.integers(5, 60), d=st.integers(1, 8), k=st.integers(1, 2), seed=st.integers(0, 2**32 - 1),
    alpha=st.sampled_from([0.0, 0.1]), intercept=st.booleans(), weighted=st.booleans(),
)
@settings(max_examples=25, deadline=None)
def test_property_krylov_solves_the_closed_form_problem(n, d, k, seed, alpha, intercept, weighted):
    """Any small problem with more rows than features: both methods reach the closed form's coefficients to the
    accuracy their residual bound allows (cond(A)^2 tol relative; tol = 1e-13 and cond(A) <= 1e2 here)."""
    rng = np.random.default_rng(seed)
    n = max(n, 2 * d + 2)
    X = rng.normal(size=(n, d)) * rng.uniform(0.5, 2.0, size=d) + rng.normal(size=d)
    Y = rng.normal(size=(n, k))
    w = rng.uniform(0.2, 2.0, size=n) if weighted else None
    Xc = X - (np.average(X, axis=0, weights=w) if intercept else 0.0)
    s = np.linalg.svd(Xc * np.sqrt(np.ones(n) if w is None else w)[:, None], compute_uv=False)
    assume(s[-1] > 1e-2 * s[0])
    ref = LinearRegressor(solver="qr", alpha=alpha, fit_intercept=intercept).fit(X, Y, sample_weight=w)
    for solver in KRYLOV:
        est = LinearRegressor(solver=solver, alpha=alpha, fit_intercept=intercept, tol=TOL).fit(X, Y, sample_weight=w)
        scale = max(np.abs(ref.coef_).max(), 1.0)
        assert np.abs(est.coef_ - ref.coef_).max() <= 1e-8 * scale


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_krylov_dense_baseline_copy_matches_its_twin(dtype, rng):
    """The instruction set chosen for the epoch kernels (``_kernels.simd``) selects the dense Krylov loop too."""
    X = rng.normal(size=(103, 37)).astype(dtype)
    Y, sw, v = rng.normal(size=(103, 1)).astype(dtype), rng.random(103), rng.normal(size=37)
    best = _kernels.simd()
    results = {}
    try:
        for isa in ("baseline", best):
            _kernels.simd(isa)
            z = np.empty(37)
            results[isa] = (_kernels.krylov_dense(X, Y, 0, sw, v, 0.5, 0.1, z), z)
    finally:
        _kernels.simd("best")
    zr = np.empty(37)
    sums_r = _reference.krylov_dense(X, Y, 0, sw, v, 0.5, 0.1, zr)
    for sums, z in results.values():
        np.testing.assert_allclose(z, zr, rtol=1e-12, atol=1e-12 * np.abs(zr).max())
        np.testing.assert_allclose(sums, sums_r, rtol=1e-12)


@pytest.mark.parametrize("solver", KRYLOV)
def test_per_target_alpha_coef_init_and_unsupported_options(solver, rng):
    X, Y = _problem(rng, k=2)
    alpha = np.array([0.0, 0.5])
    ref = LinearRegressor(solver="qr", alpha=alpha).fit(X, Y)
    est = LinearRegressor(solver=solver, alpha=alpha, tol=TOL).fit(X, Y)
    assert _rel(est.coef_, ref.coef_) < AGREE
    # coef_init starts the iteration: from the answer itself, no iteration is needed.
    again = LinearRegressor(solver=solver, alpha=alpha, tol=1e-8).fit(X, Y, coef_init=est.coef_)
    assert again.n_iter_ == 0 and _rel(again.coef_, ref.coef_) < 1e-8
    with pytest.raises(ValueError, match="positive=True is not supported"):
        LinearRegressor(solver=solver, positive=True).fit(X, Y)
    with pytest.raises(ValueError, match="average"):
        LinearRegressor(solver=solver, average=True).fit(X, Y)


# ---------------------------------------------------------------- structure check, preconditioner rule, moments


@pytest.mark.parametrize("impl", [_kernels, _reference], ids=["kernel", "twin"])
def test_csr_check_names_the_fault_and_an_unchecked_pass_agrees(impl, rng):
    ok_ptr = np.array([0, 1, 2], dtype=np.int32)
    with pytest.raises(ValueError, match="column index 3"):
        impl.csr_check(np.array([0, 3], dtype=np.int32), ok_ptr, 3)
    with pytest.raises(ValueError, match="non-decreasing"):
        impl.csr_check(np.array([0, 1], dtype=np.int32), np.array([0, 2, 1], dtype=np.int32), 3)
    with pytest.raises(ValueError, match="outside data"):
        impl.csr_check(np.array([0, 1], dtype=np.int32), np.array([0, 1, 5], dtype=np.int32), 3)
    with pytest.raises(ValueError, match="outside data"):  # the O(1) bounds are checked even unchecked
        impl.krylov_csr(np.ones(2), np.array([0, 1], dtype=np.int32), np.array([0, 1, 5], dtype=np.int32), None,
                        0, None, np.zeros(3), 0.0, 0.0, np.zeros(3), None, False)
    X = _csr(rng, n=300, d=25)
    impl.csr_check(X.indices, X.indptr, 25)
    v, y = rng.normal(size=25), rng.normal(size=(300, 1))
    z1, z2 = np.empty(25), np.empty(25)
    r1 = impl.krylov_csr(X.data, X.indices, X.indptr, y, 0, None, v, 0.5, 0.1, z1)
    r2 = impl.krylov_csr(X.data, X.indices, X.indptr, y, 0, None, v, 0.5, 0.1, z2, None, False)
    assert r1 == r2 and np.array_equal(z1, z2)


def test_jacobi_auto_rule():
    # Squared norms spanning 16 = SCALE_SPREAD^2 or less: no scaling; more: scaling. Empty columns do not count.
    colsq = np.array([0.0, 1.0, 4.0, 15.0])
    assert not _krylov.jacobi_pays("auto", colsq, colsq + 1.0)  # 16 / 2 = 8 (the empty column's 1 ignored)
    assert not _krylov.jacobi_pays("auto", np.array([1.0, 16.0]), np.array([1.0, 16.0]))
    assert _krylov.jacobi_pays("auto", np.array([1.0, 17.0]), np.array([1.0, 17.0]))
    assert not _krylov.jacobi_pays("none", np.array([1.0, 1e6]), np.array([1.0, 1e6]))
    assert not _krylov.jacobi_pays("auto", np.zeros(3), np.ones(3))


@pytest.mark.parametrize("solver", KRYLOV)
def test_auto_skips_the_scaling_on_evenly_scaled_columns(solver, rng):
    X = rng.normal(size=(500, 30)) * rng.uniform(0.8, 1.2, size=30)  # norms within a factor 1.5
    y = X @ rng.normal(size=30) + rng.normal(size=500)
    auto = LinearRegressor(solver=solver, alpha=0.1, tol=TOL).fit(X, y)
    none = LinearRegressor(solver=solver, alpha=0.1, tol=TOL, precondition="none").fit(X, y)
    assert np.array_equal(auto.coef_, none.coef_) and auto.n_iter_ == none.n_iter_


@pytest.mark.parametrize("weighted", [False, True])
def test_moments_merged_across_chunks_are_centred_exactly(weighted, rng):
    # Means far above the spread: sum w x y - W m m_y would lose about 10 digits; the centred merge does not.
    n, d = 900, 6
    X = rng.normal(size=(n, d)) + 1e5
    Y = (X - 1e5) @ rng.normal(size=(d, 2)) + rng.normal(size=(n, 2)) + 1e5
    w = rng.uniform(0.5, 2.0, size=n) if weighted else None
    whole = _krylov.chunk_moments(Data(X, Y, w, False), True)
    parts = [_krylov.chunk_moments(Data(X[a:b], Y[a:b], None if w is None else w[a:b], False), True)
             for a, b in [(0, 100), (100, 500), (500, 900)]]
    merged = functools.reduce(_krylov.add, parts)
    ww = np.ones(n) if w is None else w
    m, my = ww @ X / ww.sum(), ww @ Y / ww.sum()
    exact_xy = ((X - m) * ww[:, None]).T @ (Y - my)
    exact_yy = ww @ (Y - my) ** 2
    for mom in (whole, merged):
        np.testing.assert_allclose(mom.cxy, exact_xy, rtol=1e-9, atol=1e-9 * np.abs(exact_xy).max())
        np.testing.assert_allclose(mom.cyy, exact_yy, rtol=1e-11)


@pytest.mark.parametrize("solver", KRYLOV)
def test_dask_arrays_of_sparse_blocks_equal_in_memory(solver, rng, monkeypatch):
    """Sparse row blocks go through the CSR kernel on the workers: one distributed pass per iteration, each
    block validated once and kept as CSR (never densified), only d-vectors in each pass's graph."""
    da = pytest.importorskip("dask.array")
    dask = pytest.importorskip("dask")
    from fastopt import _krylov_dask

    n, d = 1200, 30
    X = scipy.sparse.random(n, d, density=0.2, random_state=rng, format="csr").multiply(rng.uniform(0.5, 20, d))
    X = scipy.sparse.csr_matrix(X)
    X.indices, X.indptr = X.indices.astype(np.int64), X.indptr.astype(np.int64)  # validation makes them int32
    Y = X @ rng.normal(size=(d, 2)) + rng.normal(size=(n, 2)) + 3.0
    w = rng.uniform(0.5, 2.0, size=n)
    passes, blocks = [], []
    original_fused, original_init = _krylov_dask.DaskPasses.fused, _krylov_dask.DaskPasses.__init__

    def init(self, *args):
        original_init(self, *args)
        blocks.extend(dask.compute(*self.blocks))

    def fused(self, target, v, c, shift):
        passes.append(v.shape)
        return original_fused(self, target, v, c, shift)

    monkeypatch.setattr(_krylov_dask.DaskPasses, "__init__", init)
    monkeypatch.setattr(_krylov_dask.DaskPasses, "fused", fused)
    ref = LinearRegressor(solver=solver, alpha=0.01, tol=TOL).fit(X, Y, sample_weight=w)
    for dX in (da.from_array(X, chunks=(300, d), asarray=False),
               da.from_array(X.toarray(), chunks=(300, 10)).map_blocks(scipy.sparse.csr_matrix)):
        passes.clear()
        blocks.clear()
        with dask.config.set(scheduler="synchronous"):
            est = LinearRegressor(solver=solver, alpha=0.01, tol=TOL).fit(
                dX, da.from_array(Y, chunks=(300, 2)), sample_weight=da.from_array(w, 300))
        assert _rel(est.coef_, ref.coef_) < AGREE
        assert np.abs(est.intercept_ - ref.intercept_).max() < AGREE * np.abs(Y).max()
        assert len(blocks) == 4 and all(scipy.sparse.issparse(b.X) for b in blocks)
        assert len(passes) <= 2 * (est.n_iter_ + 1) and set(passes) == {(d,)}


@pytest.mark.parametrize("with_m", [False, True])
@pytest.mark.parametrize("ridge", [None, "array", "constant"])
@pytest.mark.parametrize("d", [1, 7, 64, 1031])  # 1031: more than two tiles of the C sweeps, and a ragged end
@pytest.mark.parametrize("S", [1, 3])
def test_cgls_updates_match_their_twins_exactly(with_m, ridge, d, S, rng):
    p, x, s, m, L2 = (rng.normal(size=d) for _ in range(5))
    Z = rng.normal(size=(S, d))
    with_ridge = ridge is not None
    L2 = np.abs(L2) if ridge == "array" else np.full(d, 0.37) if ridge == "constant" else None
    # a constant diagonal goes as one number: the same bits as the array of it
    args = (L2, 0.0) if ridge != "constant" else (None, 0.37)
    m = m if with_m else None
    results = []
    for impl, (L2i, lam2) in ((_kernels, args), (_reference, args), (_kernels, (L2, 0.0))):
        xi, si, pi = x.copy(), s.copy(), p.copy()
        out = (impl.cgls_step(0.7, Z, 0.3, m, L2i, pi, xi, si, lam2), impl.cgls_direction(1.3, si, pi, m, L2i, lam2))
        results.append((out, xi, si, pi))
    assert results[0][0] == results[2][0]
    for a, b in zip(results[0][1:], results[2][1:]):
        assert np.array_equal(a, b)
    results = results[:2]
    (k_out, *k_vecs), (t_out, *t_vecs) = results
    assert k_out == t_out
    for a, b in zip(k_vecs, t_vecs):
        assert np.array_equal(a, b)
    # and the arithmetic they stand for
    q1 = Z.sum(axis=0) - (0.3 * m if with_m else 0.0) + (L2 * p if with_ridge else 0.0)
    np.testing.assert_allclose(k_vecs[0], x + 0.7 * p, rtol=1e-14, atol=1e-14)
    np.testing.assert_allclose(k_vecs[1], s - 0.7 * q1, rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(k_vecs[2], k_vecs[1] + 1.3 * p, rtol=1e-14, atol=1e-14)
    assert k_out[0] == pytest.approx(float(k_vecs[1] @ k_vecs[1]), rel=1e-13)
    p1 = k_vecs[2]
    assert k_out[1][0] == pytest.approx(float(m @ p1) if with_m else 0.0, rel=1e-12, abs=1e-12)
    assert k_out[1][1] == pytest.approx(float(L2 @ (p1 * p1)) if with_ridge else 0.0, rel=1e-13)
    with pytest.raises(ValueError, match="inconsistent shapes"):
        _kernels.cgls_step(0.1, np.zeros((S, d + 1)), 0.0, None, None, p, x, s)
    with pytest.raises(ValueError, match="inconsistent shapes"):
        _kernels.cgls_step(0.1, Z[:0], 0.0, None, None, p, x, s)
    with pytest.raises(ValueError, match="must not overlap"):  # the C loops take restrict pointers
        _kernels.cgls_step(0.1, Z, 0.0, None, None, p, x, x)


@pytest.mark.parametrize("with_m", [False, True])
@pytest.mark.parametrize("ridge", [None, "array", "constant"])
@pytest.mark.parametrize("d", [1, 7, 64, 1031])  # 1031: more than two tiles of the C sweeps, and a ragged end
@pytest.mark.parametrize("S", [1, 3])
def test_lsqr_updates_match_their_twins_exactly(with_m, ridge, d, S, rng):
    v, g, ub, m, L, x, w = (rng.normal(size=d) for _ in range(7))
    Z = rng.normal(size=(S, d))
    with_ridge = ridge is not None
    L = np.abs(L) if ridge == "array" else np.full(d, 0.61) if ridge == "constant" else None
    args = (L, 0.0) if ridge != "constant" else (None, 0.61)  # a constant diagonal as one number: the same bits
    ub = ub if with_ridge else None
    m = m if with_m else None
    results = []
    for impl, (Li, lam) in ((_kernels, args), (_reference, args), (_kernels, (L, 0.0))):
        vi, gi, ui, xi, wi = (None if a is None else a.copy() for a in (v, g, ub, x, w))
        out = (impl.lsqr_before(0.6, vi, Li, gi, ui, m, lam), impl.lsqr_after(1.7, 1.7, 0.3, m, Z, gi, ui, Li, vi, lam),
               impl.lsqr_update(2.1, 0.4, -0.8, vi, xi, wi),
               impl.lsqr_next(1.1, 0.2, 0.5, vi, xi, wi, 0.9, Li, gi, ui, m, lam))
        results.append((out, [a for a in (vi, gi, ui, xi, wi) if a is not None]))
    assert results[0][0] == results[2][0]
    for a, b in zip(results[0][1], results[2][1]):
        assert np.array_equal(a, b)
    (k_out, k_vecs), (t_out, t_vecs) = results[:2]
    assert k_out == t_out
    for a, b in zip(k_vecs, t_vecs):
        assert np.array_equal(a, b)
    # and the arithmetic they stand for (lsqr_next is checked against lsqr_update + lsqr_before below)
    g1 = v - 0.6 * g
    u1 = L * v - 0.6 * ub if with_ridge else None
    assert k_out[0][0] == pytest.approx(float(m @ g1) if with_m else 0.0, rel=1e-12, abs=1e-12)
    a = (Z.sum(axis=0) - (0.3 * m if with_m else 0.0)) / 1.7
    v1 = -1.7 * v + a + (L * u1 / 1.7 if with_ridge else 0.0)  # multiplications by 1 / 1.7: equal to rounding
    assert k_out[1] == pytest.approx(float(v1 @ v1), rel=1e-12)
    # lsqr_next is lsqr_update followed by lsqr_before, bit for bit
    vi, gi, ui, xi, wi = (None if a is None else a.copy() for a in (v, g, ub, x, w))
    fused = _kernels.lsqr_next(1.1, 0.2, 0.5, vi, xi, wi, 0.9, L, gi, ui, m)
    vs, gs, us, xs, ws = (None if a is None else a.copy() for a in (v, g, ub, x, w))
    _kernels.lsqr_update(1.1, 0.2, 0.5, vs, xs, ws)
    assert fused == _kernels.lsqr_before(0.9, vs, L, gs, us, m)
    for a, b in zip((vi, gi, ui, xi, wi), (vs, gs, us, xs, ws)):
        assert a is None or np.array_equal(a, b)
    np.testing.assert_allclose(xs, x + 0.2 * w, rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(ws, 0.5 * w + v / 1.1, rtol=1e-13, atol=1e-13)
    with pytest.raises(ValueError, match="must not overlap"):
        _kernels.lsqr_update(1.0, 0.1, 0.1, v, v, w)
    with pytest.raises(ValueError, match="must not overlap"):
        _kernels.lsqr_next(1.0, 0.1, 0.1, v, x, w, 1.0, L, v, ub, m)
    with pytest.raises(ValueError, match="inconsistent shapes"):
        _kernels.lsqr_after(1.0, 1.0, 0.0, m, np.zeros((S, d + 1)), g.copy(), ub, L, v.copy())


@pytest.mark.parametrize("solver", KRYLOV)
@pytest.mark.parametrize("sparse", [False, True])
@pytest.mark.parametrize("weighted", [False, True])
def test_a_column_constant_to_round_off_is_left_out(solver, sparse, weighted):
    # With an intercept, a constant column's centred norm from the moments is their cancellation: scaled to unit
    # norm, that noise fitted the residual's (LSQR gave 0.1 in every row a coefficient of -0.29). Left out (D = 0)
    # its coefficient is 0 and the others are the fit's without it, as the closed form has them; a warm start from
    # such a fit divides by no zero.
    rng = np.random.default_rng(1)
    n = 1000
    X = rng.standard_normal((n, 3))
    X[:, 1], X[:, 2] = 0.1, 5.0
    y = X[:, 0] + 0.1 * rng.standard_normal(n)
    w = rng.uniform(0.1, 2.0, n) if weighted else None
    alpha = 1e-6 if solver == "cg" else 0.0
    A = scipy.sparse.csr_array(X) if sparse else X
    est = LinearRegressor(solver=solver, alpha=alpha, tol=1e-12, warm_start=True).fit(A, y, sample_weight=w)
    ref = LinearRegressor(alpha=alpha).fit(X[:, :1], y, sample_weight=w)
    assert est.coef_[1] == est.coef_[2] == 0.0
    assert _rel(est.coef_[:1], ref.coef_) < 1e-10
    assert est.fit(A, y, sample_weight=w).coef_[1] == 0.0


@pytest.mark.parametrize("solver", KRYLOV)
@pytest.mark.parametrize("sparse", [False, True])
@pytest.mark.parametrize("offset", [1e6, 1e7, 1e8])
def test_a_column_far_from_centred_is_not_taken_for_constant(solver, sparse, offset):
    # A column of offset + t, t of spread 1: its centred norm from the moments cancels below what they resolve,
    # and they had called it constant (coefficient 0, R^2 0, no warning). A pass over the data tells it apart;
    # beside it a truly constant column and a one-hot block are still left out as the closed form has them.
    rng = np.random.default_rng(5)
    n = 2000
    t = rng.standard_normal(n)
    X = np.column_stack([offset + t, np.full(n, 3.0), rng.standard_normal(n)])
    y = 2.0 * t - X[:, 2] + 0.1 * rng.standard_normal(n)
    A = scipy.sparse.csr_array(X) if sparse else X
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # tol 1e-6 is above the centring's round-off, eps * offset <= 2.2e-8
        est = LinearRegressor(solver=solver, tol=1e-6).fit(A, y)
    with pytest.warns(RankDeficientWarning):  # the constant column, beside the intercept
        ref = LinearRegressor(solver="qr").fit(X, y)
    assert est.coef_[1] == 0.0 and ref.coef_[1] == 0.0
    # S2 at tol 1e-6 on a well-conditioned problem (the scaled columns near orthogonal): the objective's excess is
    # about tol^2, the coefficients' relative error about tol
    assert _rel(est.coef_, ref.coef_) < 1e-5
    assert est.score(A, y) == pytest.approx(ref.score(X, y), rel=1e-9)


@pytest.mark.parametrize("solver", KRYLOV)
@pytest.mark.parametrize("design", ["cancelling pair", "beside a huge constant", "duplicate beside constants"])
def test_columns_the_moments_cannot_resolve_are_judged_one_by_one(solver, design):
    # Each column the moments cannot tell from constant is judged by its own centred norm: a verdict on their
    # signed sum (an earlier design of the check) took 1e7 + t and 2e7 - t, whose sum is constant, for two
    # constants, and a constant of 1e13 hid the spread of 1e7 + t (R^2 0.205 against 0.998, no warning).
    rng = np.random.default_rng(5)
    n = 2000
    t, z = rng.standard_normal(n), rng.standard_normal(n)
    y = 2 * t - z + 0.1 * rng.standard_normal(n)
    X = {"cancelling pair": np.column_stack([1e7 + t, 2e7 - t, z]),
         "beside a huge constant": np.column_stack([1e7 + t, np.full(n, 1e13), z]),
         "duplicate beside constants": np.column_stack([1e7 + t, np.full(n, 3.0), np.full(n, 7.0), 1e7 + t, z])}[design]
    est = LinearRegressor(solver=solver, tol=1e-6).fit(X, y)
    with warnings.catch_warnings():  # the reference's (rank-deficient designs, which QR may or may not detect)
        warnings.simplefilter("ignore", RankDeficientWarning)
        ref = LinearRegressor(solver="qr").fit(X, y)
    # at least the closed form's fit, and that of the design without the offsets: t and z. On the cancelling pair
    # QR also fits the pair's rounding (coefficients of -1.5e4 along it): one more direction, a random one, which
    # moves R^2 by about (1 - R^2) / n either way (its expected gain), 1e-6 here: by 2e-8 less with one LAPACK
    # build, 1.6e-8 more with another. Four times that bound.
    r2 = ref.score(X, y)
    assert est.score(X, y) >= r2 - 4 * (1 - r2) / n
    assert est.score(X, y) == pytest.approx(LinearRegressor().fit(np.column_stack([t, z]), y).score(
        np.column_stack([t, z]), y), rel=1e-7)
    constant = np.ptp(X, axis=0) == 0
    assert np.all(est.coef_[constant] == 0.0)


def test_chunk_spread_reads_only_its_columns():
    # the deviations of the candidate columns from given means, implicit zeros and weights included; on CSR from
    # those columns' stored values (slabs of whole rows had copied the matrix: 62 MB for a 61 MB X)
    import tracemalloc

    rng = np.random.default_rng(0)
    X = scipy.sparse.random(200_000, 100, density=0.25, format="csr", random_state=0)
    w = rng.uniform(0, 2, X.shape[0])
    cols, m = np.array([3, 50]), np.array([0.1, -0.2])
    data = Data(X, np.zeros((X.shape[0], 1)), w, True)
    tracemalloc.start()
    spread = _krylov.chunk_spread(data, cols, m)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    dense = X[:, cols].toarray() - m
    np.testing.assert_allclose(spread.s1, w @ dense, rtol=1e-10)
    np.testing.assert_allclose(spread.s2, w @ dense**2, rtol=1e-10)
    assert peak < X.data.nbytes / 2  # (a slab of the two columns' rows dense, three times: 11 MB of X's 40)
    dense_data = Data(X[:1000].toarray(), np.zeros((1000, 1)), None, True)
    spread = _krylov.chunk_spread(dense_data, cols, m)
    np.testing.assert_allclose(spread.s2, np.sum((X[:1000][:, cols].toarray() - m) ** 2, axis=0), rtol=1e-12)


def test_a_constant_column_of_millions_of_rows_stays_out():
    # At 3e6 rows the moments' mean of a column of 0.1 carries a rounding above the constant rule's tolerance:
    # judged by deviations from that mean alone, the column looked spread and LSQR fitted it 6e6. The spread about
    # the exact mean (s2 - s1^2 / W) is its rounding only.
    n = 3_000_000
    rng = np.random.default_rng(0)
    X = np.empty((n, 2))
    X[:, 0] = rng.standard_normal(n)
    X[:, 1] = 0.1
    y = X[:, 0] + 0.1 * rng.standard_normal(n)
    for solver in KRYLOV:
        est = LinearRegressor(solver=solver).fit(X, y)
        assert est.coef_[1] == 0.0 and abs(est.coef_[0] - 1.0) < 1e-3


@pytest.mark.parametrize("sparse", [False, True])
@pytest.mark.parametrize("tol", [1e-8, 1e-10, 1e-12])
def test_cgls_on_exactly_fittable_systems_stops_before_rounding_noise(sparse, tol):
    # Wide systems that fit y exactly: CGLS's recurred ||r|| (a difference of squares) stops resolving near
    # sqrt(eps) of its start, and run on below it a tol of 1e-10 turned rounding into coefficients of 1e13 that
    # the compatible-system rule then accepted (||z|| had grown). It goes to a true pass there, as at tol=None.
    fails = []
    for seed in range(40):
        rng = np.random.default_rng(seed)
        n, d = int(rng.integers(2, 12)), int(rng.integers(12, 40))
        X = rng.standard_normal((n, d)) * 10.0 ** rng.uniform(-2, 2, size=d)
        y = X @ rng.standard_normal(d)
        A = scipy.sparse.csr_array(X) if sparse else X
        est = LinearRegressor(solver="cg", tol=tol).fit(A, y)
        lsqr = LinearRegressor(solver="lsqr", tol=tol).fit(A, y)
        rss = float(np.sum((y - est.predict(A)) ** 2))
        if not (rss <= 1e-12 * float(np.sum((y - y.mean()) ** 2))
                and np.linalg.norm(est.coef_) <= 10 * np.linalg.norm(lsqr.coef_)):
            fails.append((seed, rss, np.linalg.norm(est.coef_)))
    assert not fails
    # The fuzz's case: 20 x 1486 sparse, coefficients of 2e13 and RSS 5e-3 at tol 1e-10
    rng = np.random.default_rng(27)
    X = scipy.sparse.random(20, 1486, density=0.05, random_state=27, format="csr")
    y = rng.normal(size=20)
    est = LinearRegressor(solver="cg", tol=tol).fit(X, y)
    assert float(np.sum((y - est.predict(X)) ** 2)) < 1e-12 and np.linalg.norm(est.coef_) < 100


@pytest.mark.parametrize("solver", KRYLOV)
@pytest.mark.parametrize("x_scale, y_scale", [(1.0, 1e-200), (1.0, 1e200), (1e-200, 1.0), (1e-100, 1.0),
                                              (1e100, 1.0), (1e-150, 1e150)])
@pytest.mark.parametrize("sparse", [False, True])
def test_extreme_scales_are_solved_at_scale_one(solver, x_scale, y_scale, sparse):
    # Squares of 1e-200 underflow: the moments and norms were zero and LSQR and CGLS returned zero coefficients,
    # silently (CGLS already at X of 1e+-100, warned). X and y are divided by powers of two (exact) first and the
    # coefficients multiplied back, so the answer is the closed form's (which rescales its own way) to the
    # Krylov tolerance; a warm start continues in the same units.
    rng = np.random.default_rng(0)
    X = rng.standard_normal((500, 4))
    y = X @ np.array([1.0, -2.0, 3.0, 0.5]) + 0.1 * rng.standard_normal(500) + 2.0
    A = X * x_scale
    A = scipy.sparse.csr_array(A) if sparse else A
    est = LinearRegressor(solver=solver, tol=1e-12, warm_start=True).fit(A, y * y_scale)
    ref = LinearRegressor().fit(X * x_scale, y * y_scale)
    assert _rel(est.coef_, ref.coef_) < 1e-9
    assert est.intercept_ == pytest.approx(ref.intercept_, rel=1e-9)
    assert est.fit(A, y * y_scale).n_iter_ <= 1  # already there


@pytest.mark.parametrize("solver", KRYLOV)
@pytest.mark.parametrize("scales", [(1e-200, 1.0), (1e-100, 1e100), (1.0, 1e-300)])
@pytest.mark.parametrize("sparse", [False, True])
def test_each_target_is_solved_at_its_own_scale(solver, scales, sparse):
    # helper-139: one factor for all targets (from the largest) left a target of 1e-200 beside one of 1 unscaled;
    # its run's sums of squares underflowed and it returned zero coefficients, silently. Each target is now
    # divided by its own power of two: the coefficients are each target's fitted alone and the closed form's, to
    # the Krylov tolerance (the multi-target moments sum in another order); a warm start continues in those units.
    rng = np.random.default_rng(1)
    X = rng.standard_normal((400, 4))
    t = X @ np.array([1.0, -2.0, 3.0, 0.5]) + 0.1 * rng.standard_normal(400) + 2.0
    Y = np.c_[t * scales[0], (X @ rng.normal(size=4) + 1.0) * scales[1]]
    A = scipy.sparse.csr_array(X) if sparse else X
    est = LinearRegressor(solver=solver, tol=1e-12, warm_start=True).fit(A, Y)
    for j in range(2):
        alone = LinearRegressor(solver=solver, tol=1e-12).fit(A, Y[:, j])
        ref = LinearRegressor(solver="qr").fit(X, Y[:, j])
        for fit in (alone, ref):
            assert _rel(est.coef_[j], fit.coef_) < 1e-9
            assert est.intercept_[j] == pytest.approx(fit.intercept_, rel=1e-9)
    assert est.fit(A, Y).n_iter_ <= 1  # already there


@pytest.mark.parametrize("solver", KRYLOV)
def test_a_target_out_of_range_over_chunks_is_a_clear_error(solver):
    # helper-139: over a stream's chunks (and Dask's blocks) y is not rescaled, and a target of 1e-200 gave zero
    # coefficients, silently; now, as the closed form over chunks, a ValueError naming the target and the remedy.
    rng = np.random.default_rng(2)
    X = rng.standard_normal((400, 4))
    Y = np.c_[X @ np.array([1.0, 2.0, 3.0, 4.0]) + 1.0, (X @ np.array([1.0, 2.0, 3.0, 4.0])) * 1e-200]
    chunks = [(X[i : i + 100], Y[i : i + 100]) for i in range(0, 400, 100)]
    with pytest.raises(ValueError, match=r"y column 1 has values too large or too small .* multiply y by a power"):
        LinearRegressor(solver=solver).fit_stream(chunks)
    # in range: the stream's fit is the in-memory one's to the tolerance
    est = LinearRegressor(solver=solver, tol=1e-12).fit_stream([(A, B[:, 0]) for A, B in chunks])
    assert _rel(est.coef_, LinearRegressor(solver=solver, tol=1e-12).fit(X, Y[:, 0]).coef_) < 1e-9


def test_auto_krylov_attempt_that_runs_out_hands_over_to_the_closed_forms_own_attempt(monkeypatch):
    # "auto" on sparse X runs LSQR first within what the closed form costs; where that ran out, the closed form
    # ran without its own "auto" key, so where its Cholesky was rejected it skipped its Krylov attempt (a budget of
    # the densified QR's cost) and densified X: weighted quadratic features of a sparse 6,000 x 60 matrix took
    # 283 s by the QR where LSQR takes under a second. Here: quadratic features of a sparse 2,500 x 36 matrix.
    from sklearn.preprocessing import PolynomialFeatures

    rng = np.random.default_rng(4)
    n = 2500
    X0 = scipy.sparse.random(n, 36, density=0.08, format="csr", random_state=4, data_rvs=lambda k: rng.normal(size=k))
    X = scipy.sparse.csr_array(PolynomialFeatures(2, include_bias=False).fit_transform(X0))
    y = X @ (0.3 * rng.normal(size=X.shape[1])) + 0.5 * rng.normal(size=n)
    draw = np.random.default_rng(0)
    sw = np.where(draw.random(n) < 0.2, 0.0, draw.lognormal(0.0, 2.0, n))  # (Cholesky rejects these equations)
    tight = LinearRegressor(solver="lsqr", tol=1e-12).fit(X, y, sample_weight=sw)
    d, nnz = X.shape[1], X.nnz
    assert _solvers.krylov_first(X, False)
    # the case: more iterations than the first attempt may take, fewer than the closed form's attempt
    assert max(_krylov.auto_budget(n, d, nnz, 1), _krylov.AUTO_MIN_ITERS) < tight.n_iter_
    assert tight.n_iter_ < _krylov.qr_fallback_iterations(n, d, nnz, 1)

    def densified(*args, **kwargs):
        raise AssertionError("the densified QR ran")

    monkeypatch.setattr(_closed_form, "chunk_qr_state", densified)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        est = LinearRegressor().fit(X, y, sample_weight=sw)
    assert est.solver_ == "lsqr"

    def objective(m):
        r = X @ m.coef_ + m.intercept_ - y
        return float(sw @ (r * r))

    assert objective(est) <= objective(tight) * (1 + 1e-12)


@pytest.mark.parametrize("solver", ["cg", "lsqr", "normal"])
@pytest.mark.parametrize("sparse", [False, True])
@pytest.mark.parametrize("alpha", [0.1, [0.1, 0.2]])
def test_a_ridge_beyond_range_beside_a_tiny_x_is_said_so(solver, sparse, alpha):
    # X of about 1e-160 is solved at unit scale, the ridge becoming alpha * 2**1066: it overflowed, NumPy warned of
    # an overflow in ldexp and the Krylov solvers then refused "alpha must be finite and non-negative"
    rng = np.random.default_rng(0)
    X = scipy.sparse.random(400, 20, density=0.3, format="csr", random_state=0) * 1e-160
    Y = rng.standard_normal((400, 2))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ValueError, match=r"alpha=.* is too large for X's scale .*rescale X"):
            LinearRegressor(solver=solver, alpha=alpha).fit(X if sparse else X.toarray(), Y)


@pytest.mark.parametrize("solver", ["lsqr", "cg"])
def test_a_later_krylov_partial_fit_call_says_it_refits_its_rows_alone(solver):
    # Each call refits its own rows from the current coefficients: after two calls on halves of the rows the model
    # was the second half's (0.20 from fit on all rows, 2e-6 from fit on the second half), silently
    rng = np.random.default_rng(0)
    X = scipy.sparse.random(4000, 50, density=0.1, format="csr", random_state=0)
    y = X @ rng.standard_normal(50) + rng.standard_normal(4000)
    est = LinearRegressor(solver=solver)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        est.partial_fit(X[:2000], y[:2000])  # the first call: nothing lost
    with pytest.warns(UserWarning, match="refits them alone.*earlier rows no longer count.*solver='normal'"):
        est.partial_fit(X[2000:], y[2000:])


@pytest.mark.parametrize("tol", [None, 0.0])
@pytest.mark.parametrize("sparse", [False, True])
def test_cgls_past_its_accuracy_on_dependent_columns_keeps_the_optimum(tol, sparse):
    # One-hot columns beside an intercept (an exactly dependent direction): at machine precision S2's ratio rests
    # at 3 eps, so CGLS ran on, its steps along the numerically null direction growing the coefficients to 1e16,
    # and S1 accepted them: objectives 80 to 3,500 times the optimum, silently. Steps along directions the operator
    # maps to its rounding now stop the run. The fitted values (the objective) are unique; the coefficients are not.
    from sklearn.preprocessing import OneHotEncoder
    rng = np.random.default_rng(2)
    n = 2000
    X = np.hstack([OneHotEncoder(sparse_output=False).fit_transform(rng.integers(0, 4, size=(n, 1))),
                   rng.normal(size=(n, 3))])
    y = X @ rng.normal(size=X.shape[1]) + 3.0 + 0.1 * rng.normal(size=n)
    Xc, yc = X - X.mean(0), y - y.mean()
    optimum = 0.5 * np.mean((yc - Xc @ np.linalg.lstsq(Xc, yc, rcond=None)[0]) ** 2)
    est = LinearRegressor(solver="cg", tol=tol).fit(scipy.sparse.csr_array(X) if sparse else X, y)
    # the optimum's rounding: a few eps of the objective (measured 1e-13 of it on CSR)
    assert 0.5 * np.mean((y - X @ est.coef_ - est.intercept_) ** 2) <= optimum * (1 + 1e-10)


def test_cgls_at_tol_1e_12_under_spread_weights_keeps_the_optimum():
    # The same run on noise at tol=1e-12 where weights spread 1e8 keep S2's ratio above it: coefficients of 3e13,
    # the objective 2.5e6 times the optimum, silently. Now the optimum to rounding (and a warning that tol was not
    # confirmed: the data's round-off exceeds it).
    rng = np.random.default_rng(6)
    n = 40
    X = np.hstack([np.eye(6)[rng.integers(0, 6, n)], rng.normal(size=(n, 3))])
    y = X @ rng.normal(size=9) + 0.1 * rng.normal(size=n)
    w = np.where(rng.random(n) < 0.1, 1e8, 1.0)
    W = w.sum()
    xm, ym = w @ X / W, w @ y / W
    root = np.sqrt(w)
    c = np.linalg.lstsq(root[:, None] * (X - xm), root * (y - ym), rcond=None)[0]

    def objective(coef, b):
        return 0.5 * np.sum(w * (y - X @ coef - b) ** 2) / W

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est = LinearRegressor(solver="cg", tol=1e-12).fit(X, y, sample_weight=w)
    assert objective(est.coef_, est.intercept_) <= objective(c, ym - xm @ c) * (1 + 1e-10)


@pytest.mark.parametrize(("seed", "fit_intercept", "sparse"), [(8, True, True), (404, True, True),
                                                              (844, False, True), (860, False, False)])
def test_lsqr_at_tol_none_on_a_dependent_column_keeps_the_optimum(seed, fit_intercept, sparse):
    # A column that is the sum of two others: at tol=None S2's ratio rests at one to a few eps, LSQR ran on, its v
    # vectors lost their orthogonality after the dependent alpha fell to its rounding, and a step along the null
    # direction took the coefficients to 1e13 (objective 1e-3 to 1e-2 above the optimum, silently; 22 of 6,400 such
    # fits). Below 4 eps the recurrence now hands over to the confirming pass.
    rng = np.random.default_rng(seed)
    n = int(rng.choice([50, 500, 3000]))
    A = rng.normal(size=(n, 5))
    X = np.column_stack([A, A[:, 0] + A[:, 1]])
    y = X @ rng.normal(size=6) + 0.1 * rng.normal(size=n)
    Xc, yc = (X - X.mean(0), y - y.mean()) if fit_intercept else (X, y)
    minimum = np.linalg.lstsq(Xc, yc, rcond=None)[0]
    est = LinearRegressor(solver="lsqr", tol=None, fit_intercept=fit_intercept)
    est.fit(scipy.sparse.csr_array(X) if sparse else X, y)
    # The fitted values are unique. S2 at its rounding bounds their distance from the optimum's by a few eps times
    # the condition of the live columns (about 3 here) times ||r|| (0.1 sqrt(n)): 1e-12 of y's scale is ample.
    np.testing.assert_allclose(est.predict(X), Xc @ minimum + (y.mean() if fit_intercept else 0.0), rtol=0,
                               atol=1e-12 * np.abs(y).max())
    # and the coefficients stay near the minimum-norm ones (they had grown along the null direction to 1e13)
    assert np.linalg.norm(est.coef_ - minimum) <= 1e-10 * np.linalg.norm(minimum)


def _near_duplicates(seed, n=8000, d=240, pairs=30, gap=1e-6):
    """Random sparse rows (40 values a row) where ``pairs`` columns are copies of others, each stored value
    perturbed by ``gap`` relative: columns nearly collinear, the scaled design's condition near ``1 / gap``."""
    r = np.random.default_rng(seed)
    X = scipy.sparse.csr_array((r.normal(size=n * 40), (np.repeat(np.arange(n), 40), r.integers(0, d, n * 40))),
                               shape=(n, d)).tocsc()
    src = r.choice(d, pairs, replace=False)
    dst = np.setdiff1d(np.arange(d), src)[:pairs]
    cols = [X[:, [j]] for j in range(d)]
    for s, t in zip(src, dst):
        c = cols[s].copy()
        c.data = c.data * (1 + gap * r.normal(size=c.nnz))
        cols[t] = c
    X = scipy.sparse.hstack(cols, format="csr")
    return X, X @ r.normal(size=d) + 0.1 * r.normal(size=n) + 3.0


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("shape", [(20_000, 400, 50), (10_000, 300, 40)])
def test_auto_runs_on_to_machine_precision_where_the_columns_are_nearly_collinear(seed, shape):
    # helper-140: with near-duplicate columns (pairs 1e-6 apart), "auto" ran LSQR to tol 1e-12, whose S2 stop
    # bounds the predictions' error by about tol * cond * ||r||: 3e-8 to 2e-7 of std(y) off lstsq's (rms), where
    # QR is 2e-12 off. Its bound ||A^T r|| / sigma_min (the Lanczos process's least Ritz value) now sends such a run
    # on to machine precision within the same iterations: 2e-11 to 5e-11 on 20,000 x 400. On 10,000 x 300 those run
    # out first (the QR they stand for costs less there) and the run keeps its last iterate, closer than tol's.
    X, y = _near_duplicates(seed, *shape)
    A = np.hstack([X.toarray(), np.ones((X.shape[0], 1))])
    ref = A @ np.linalg.lstsq(A, y, rcond=None)[0]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        est = LinearRegressor().fit(X, y)
        at_tol = LinearRegressor(solver="lsqr", tol=_krylov.AUTO_TOL).fit(X, y)
    assert est.solver_ == "lsqr" and est.n_iter_ > at_tol.n_iter_

    def rms(e):
        return np.sqrt(np.mean((e.predict(X) - ref) ** 2)) / np.std(y)

    assert rms(at_tol) > 1e-8  # the case: tol's stop alone leaves this much
    assert rms(est) <= (1e-10 if shape[0] == 20_000 else rms(at_tol) / 5)


def test_auto_keeps_tol_where_its_bound_holds(rng):
    # the check adds no iteration on a well-conditioned design (one-hot columns with an intercept: the bound read
    # 2e-14 to 8e-12 on one-hot, TF-IDF, hashed and random designs)
    X = _one_hot(rng, 20_000, (300, 150, 40))
    y = X @ rng.normal(size=X.shape[1]) + 0.5 * rng.normal(size=X.shape[0]) + 3.0
    assert _solvers.krylov_first(X)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        est = LinearRegressor().fit(X, y)
        at_tol = LinearRegressor(solver="lsqr", tol=_krylov.AUTO_TOL).fit(X, y)
    assert est.solver_ == "lsqr"
    np.testing.assert_array_equal(est.coef_, at_tol.coef_)


@pytest.mark.parametrize("method", ["lsqr", "cg"])
def test_the_ritz_estimate_of_sigma_min_bounds_it_from_above_and_converges(method, monkeypatch):
    # _inaccurate's sigma_min: the least eigenvalue of the Lanczos tridiagonal T_k = B_k^T B_k (LSQR's
    # bidiagonal; CGLS's from its step lengths) is a Ritz value of A^T A, so at least sigma_min^2 (up to the
    # rounding of T_k's squares, eps ||A||^2), and equal to it once the Krylov space spans R^d (d = 12).
    r = np.random.default_rng(3)
    X = r.normal(size=(60, 12)) @ np.diag(np.logspace(0, -3, 12))
    y = r.normal(size=60)
    sigma = np.linalg.svd(X, compute_uv=False)[-1]
    seen = []
    real = _krylov._inaccurate
    monkeypatch.setattr(_krylov, "_inaccurate", lambda stop, arnorm, acc: seen.append(stop.sigma_min()) or
                        real(stop, arnorm, acc))
    params = {**LinearRegressor(solver=method, fit_intercept=False, precondition="none").get_params(),
              "tol": 1e-14, "max_iter": 200, _krylov.ACCURACY_KEY: _krylov.AUTO_PREDICTION_TOL}
    data = Data(X, y.reshape(-1, 1), None, True)
    _krylov.solve(method, params, _krylov.Passes(data, checked=True))
    assert seen
    assert seen[0] >= sigma * (1 - 1e-6)
    assert seen[0] == pytest.approx(sigma, rel=1e-6)
