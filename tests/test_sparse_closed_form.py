"""The sparse closed form: the CSR Gram kernel against its NumPy twin and the dense statistics, the centring-loss
fallback, determinism over thread counts, bounded memory, and the kernel's own argument checks."""
import tracemalloc
import warnings

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import example, given
from hypothesis import strategies as st
from threadpoolctl import threadpool_limits

from fastopt import LinearRegressor, _kernels, _reference, _sparse
from fastopt.exceptions import IllConditionedWarning, RankDeficientWarning

EPS = np.finfo(np.float64).eps


def random_csr(rng, n, d, density, dtype=np.float64, offset=0.0, explicit_zeros=True):
    X = sp.random(n, d, density=density, format="csr", random_state=rng, dtype=np.float64)
    X.data += offset
    if explicit_zeros and X.nnz:
        X.data[rng.random(X.nnz) < 0.1] = 0.0  # stored zeros stay stored
    return X.astype(dtype)


def stats(impl, X, Y, w, start=0, stop=None):
    stop = X.shape[0] if stop is None else stop
    p = X.shape[1] + Y.shape[1]
    mean, gram = np.full(p, np.nan), np.full((p, p), np.nan)
    weight = impl.csr_gram_stats(X.data, X.indices, X.indptr[start : stop + 1], X.shape[1], Y[start:stop],
                                 None if w is None else w[start:stop], mean, gram)
    return weight, mean, gram


def gram_bound(n, weight, mean, gram):
    """|dG_ab| <= c n eps sqrt(R_a R_b), R = diag(G) + W m^2 the uncentred sums of squares: both sides add the same
    products (|sum| <= sqrt(R_a R_b) by Cauchy-Schwarz) in different orders, and subtract W m_a m_b
    (|W m_a m_b| <= sqrt(R_a R_b) likewise), each with relative rounding at most n eps; c = 4 covers the two
    terms and the rounding of the means."""
    raw = np.maximum(np.diag(gram), 0.0) + weight * mean**2
    return 4 * max(n, 1) * EPS * np.sqrt(np.outer(raw, raw)) + 1e-300


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("n, d, k, density, offset", [
    (1, 1, 1, 1.0, 0.0), (40, 6, 1, 0.3, 0.0), (200, 25, 3, 0.1, 10.0), (150, 9, 2, 0.0, 0.0), (120, 8, 1, 0.9, 1e3),
    (60, 1500, 2, 0.01, 0.0),  # a triangle beyond one 4 MB panel: three sweeps of the rows (csr_gram.c)
])
def test_csr_gram_stats_matches_its_twin(dtype, weighted, n, d, k, density, offset, rng):
    X = random_csr(rng, n, d, density, dtype, offset)
    Y = (rng.normal(size=(n, k)) + 50).astype(dtype)
    w = (rng.random(n) * (rng.random(n) > 0.2)).astype(dtype) if weighted else None
    if weighted:
        w[0] = 1.0
    for start, stop in ((0, n), (n // 3, n)):  # a slice of indptr: absolute offsets, no copy
        wk, mk, gk = stats(_kernels, X, Y, w, start, stop)
        wr, mr, gr = stats(_reference, X, Y, w, start, stop)
        m = stop - start
        assert wk == pytest.approx(wr, rel=m * EPS)
        np.testing.assert_allclose(mk, mr, rtol=m * EPS, atol=m * EPS * np.abs(mr).max())
        assert np.all(np.abs(gk - gr) <= gram_bound(m, wr, mr, gr))
        np.testing.assert_array_equal(gk, gk.T)


def test_csr_gram_stats_zero_weight_and_empty():
    X = sp.csr_matrix(np.array([[1.0, 0.0], [0.0, 2.0]]))
    Y = np.ones((2, 1))
    for impl in (_kernels, _reference):
        weight, mean, gram = stats(impl, X, Y, np.zeros(2))
        assert weight == 0.0 and not mean.any() and not gram.any()
        weight, mean, gram = stats(impl, X, Y, None, 1, 1)
        assert weight == 0.0 and not gram.any()


@given(
    n=st.integers(1, 60), d=st.integers(1, 12), k=st.integers(1, 3),
    density=st.floats(0.0, 1.0), seed=st.integers(0, 2**32 - 1),
    dtype=st.sampled_from([np.float32, np.float64]), weighted=st.booleans(), offset=st.sampled_from([0.0, 3.0]),
)
@example(n=20, d=1, k=1, density=0.0, seed=1, dtype=np.float32, weighted=True, offset=0.0)  # a mean near 0
def test_sparse_statistics_equal_the_dense_ones(n, d, k, density, seed, dtype, weighted, offset):
    """Random sparsity patterns, shapes and dtypes: the CSR kernel's statistics are the dense kernel's of
    ``X.toarray()`` (the dense one centres blocks before multiplying, so the bound is the sparse one's)."""
    rng = np.random.default_rng(seed)
    X = random_csr(rng, n, d, density, dtype, offset)
    Y = rng.normal(size=(n, k)).astype(dtype)
    w = rng.uniform(0.0, 2.0, size=n).astype(dtype) if weighted else None
    ws, ms, gs = stats(_kernels, X, Y, w)
    md, gd = np.empty(d + k), np.empty((d + k, d + k))
    wd = _kernels.gram_stats(np.ascontiguousarray(X.toarray()), Y, w, md, gd, 16)
    assert ws == pytest.approx(wd, rel=4 * n * EPS)
    # A weighted mean is a sum of n terms over the total: each kernel's rounding is at most n eps sum_i w_i |z_i|
    # / W, relative to the mean of |z|, not to the mean itself (a mean near zero cancels: a fixed-seed example).
    wz = np.ones(n) if w is None else w.astype(np.float64)
    scale = (wz @ np.abs(np.hstack([X.toarray(), Y]).astype(np.float64))) / max(wd, np.finfo(float).tiny)
    assert np.all(np.abs(ms - md) <= 4 * n * EPS * scale)
    assert np.all(np.abs(gs - gd) <= 2 * gram_bound(n, wd, md, gd))


@given(
    n=st.integers(30, 120), d=st.integers(1, 10), density=st.floats(0.2, 1.0), seed=st.integers(0, 2**32 - 1),
    fit_intercept=st.booleans(), weighted=st.booleans(),
)
def test_sparse_fit_equals_dense_fit(n, d, density, seed, fit_intercept, weighted):
    """The estimator on sparse X against the dense path on X.toarray(): same solver path, same coefficients.

    alpha = 0.1 bounds the condition number of the scaled normal equations by about 1 + max_a G_aa / (0.1 W)
    (< 1e2 here), so coefficients agree to about 1e2 * n * eps relative to their scale; 1e-9 leaves margin.
    """
    rng = np.random.default_rng(seed)
    X = random_csr(rng, n, d, density)
    y = X @ rng.normal(size=d) + rng.normal(size=n)
    w = rng.uniform(0.1, 2.0, size=n) if weighted else None
    est = LinearRegressor(alpha=0.1, fit_intercept=fit_intercept).fit(X, y, sample_weight=w)
    ref = LinearRegressor(alpha=0.1, fit_intercept=fit_intercept).fit(X.toarray(), y, sample_weight=w)
    assert est.solver_ == ref.solver_ == "cholesky"
    scale = np.abs(ref.coef_).max() + abs(ref.intercept_) + 1.0
    np.testing.assert_allclose(est.coef_, ref.coef_, rtol=0, atol=1e-9 * scale)
    assert abs(est.intercept_ - ref.intercept_) <= 1e-9 * scale


def test_kernel_refuses_non_canonical_or_out_of_range_indices():
    Y, mean, gram = np.ones((2, 1)), np.empty(4), np.empty((4, 4))
    data = np.array([1.0, 2.0, 3.0])
    indptr = np.array([0, 2, 3], dtype=np.int32)
    for indices in ([1, 0, 2], [1, 1, 2], [0, 1, 3], [0, 1, -1]):  # unsorted, repeated, too large, negative
        with pytest.raises(ValueError, match="unsorted, repeated or out of range"):
            _kernels.csr_gram_stats(data, np.array(indices, dtype=np.int32), indptr, 3, Y, None, mean, gram)
    with pytest.raises(ValueError, match="indptr points outside"):
        _kernels.csr_gram_stats(data, np.array([0, 1, 2], np.int32), np.array([0, 2, 4], np.int32), 3, Y, None,
                                mean, gram)
    with pytest.raises(ValueError, match="not non-decreasing"):
        _kernels.csr_gram_stats(data, np.array([0, 1, 2], np.int32), np.array([0, 2, 1], np.int32), 3, Y, None,
                                mean, gram)
    with pytest.raises(ValueError, match="inconsistent shapes"):
        _kernels.csr_gram_stats(data, np.array([0, 1, 2], np.int32), indptr, 3, Y, None, np.empty(3), gram)


# ---------------------------------------------------------------- centring loss and the accurate fallback


def offset_problem(rng, n=400, d=6, offset=1e6):
    """Column 0 is dense with a mean 1e6 times its spread: centring after accumulation cancels ~12 digits."""
    X = random_csr(rng, n, d, 0.3, explicit_zeros=False).toarray()
    X[:, 0] = offset + rng.normal(size=n)
    y = X[:, 1:] @ rng.normal(size=d - 1) + 0.01 * (X[:, 0] - offset) + 0.1 * rng.normal(size=n)
    return sp.csr_matrix(X), y


def test_offset_column_is_centred_first_and_stays_on_cholesky(rng):
    X, y = offset_problem(rng)
    with warnings.catch_warnings():
        warnings.simplefilter("error", IllConditionedWarning)
        est = LinearRegressor().fit(X, y)
    assert est.solver_ == "cholesky"
    ref = LinearRegressor(solver="qr").fit(X.toarray(), y)
    # The offset column's rows of G are computed as accurately as the dense kernel's: the remaining difference
    # is Cholesky's (rcond near 1e-1 here) against QR's rounding.
    np.testing.assert_allclose(est.coef_, ref.coef_, rtol=1e-8)
    # intercept = mean_y - coef . mean_x: coefficient errors reach it multiplied by the 1e6 column mean.
    mean_x = np.asarray(X.mean(axis=0)).ravel()
    assert abs(est.intercept_ - ref.intercept_) <= 1e-8 * np.abs(ref.coef_ * mean_x).sum()
    state = _sparse_state(X, y)
    assert _sparse.cancellation({"fit_intercept": True, "alpha": 0.0}, state.weight, state.gram,
                                state.raw_diag) < 2


def test_centring_loss_falls_back_to_qr_and_matches_dense(rng, monkeypatch):
    monkeypatch.setattr(_sparse, "CENTRE_FIRST_MAX", 0)  # as with more offset columns than are centred first
    X, y = offset_problem(rng)
    with warnings.catch_warnings():
        warnings.simplefilter("error", IllConditionedWarning)  # leaving Cholesky is reported in solver_ only
        est = LinearRegressor().fit(X, y)
    assert est.solver_ == "qr"
    ref = LinearRegressor(solver="qr").fit(X.toarray(), y)
    np.testing.assert_allclose(est.coef_, ref.coef_, rtol=1e-8)
    np.testing.assert_allclose(est.intercept_, ref.intercept_, rtol=1e-12)
    # Cholesky on the cancelled Gram would have been far off: the fallback was needed.
    state = _sparse_state(X, y)
    assert _sparse.cancellation({"fit_intercept": True, "alpha": 0.0}, state.weight, state.gram,
                                state.raw_diag) > 1e10


def _sparse_state(X, y):
    from fastopt._closed_form import chunk_state
    from fastopt._validation import check_fit_data

    est = LinearRegressor()
    return chunk_state(est.get_params(), check_fit_data(est, X, y))


def test_no_intercept_needs_no_fallback(rng):
    X, y = offset_problem(rng, offset=1e3)
    with warnings.catch_warnings():
        warnings.simplefilter("error", IllConditionedWarning)
        est = LinearRegressor(fit_intercept=False).fit(X, y)
    assert est.solver_ == "cholesky"
    ref = LinearRegressor(fit_intercept=False).fit(X.toarray(), y)
    np.testing.assert_allclose(est.coef_, ref.coef_, rtol=1e-8)


def test_constant_column_gives_the_dense_minimum_norm_solution(rng):
    X = random_csr(rng, 300, 5, 0.4, explicit_zeros=False).toarray()
    X[:, 2] = 7.0  # constant: its centred column is zero
    y = X @ rng.normal(size=5) + rng.normal(size=300)
    with pytest.warns(RankDeficientWarning):
        est = LinearRegressor().fit(sp.csr_matrix(X), y)
    with pytest.warns(RankDeficientWarning):
        ref = LinearRegressor().fit(X, y)
    assert est.solver_ == ref.solver_ == "pivoted_cholesky"  # the zero centred column confirmed by a pass
    assert est.coef_[2] == ref.coef_[2] == 0.0  # the minimum-norm coefficient of a zero column
    np.testing.assert_allclose(est.coef_, ref.coef_, rtol=1e-8, atol=1e-12)


def test_partial_fit_and_stream_carry_the_centring_estimate(rng, monkeypatch):
    monkeypatch.setattr(_sparse, "CENTRE_FIRST_MAX", 0)
    X, y = offset_problem(rng)
    ref = LinearRegressor(solver="qr").fit(X.toarray(), y)
    # A re-readable stream makes the QR pass over the chunks, as fit does (reported in solver_ only).
    with warnings.catch_warnings():
        warnings.simplefilter("error", IllConditionedWarning)
        streamed = LinearRegressor().fit_stream([(X[:150], y[:150]), (X[150:].toarray(), y[150:])])
    assert streamed.solver_ == "qr"
    np.testing.assert_allclose(streamed.coef_, ref.coef_, rtol=1e-8)
    # Sparse partial_fit keeps the Gram only (R from densified rows would cost O(n d^2)): the estimate still
    # refuses Cholesky, and the fit says it fell back to the eigensolve.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", IllConditionedWarning)  # the first call solves (and warns) too
        est = LinearRegressor().partial_fit(X[:150], y[:150])
    assert est._solver_state.r is None
    with pytest.warns(IllConditionedWarning, match="eigensolve"):
        est.partial_fit(X[150:], y[150:])
    assert est.solver_ == "eigh"
    # solver="qr" carries R and stays exact.
    exact = LinearRegressor(solver="qr").partial_fit(X[:150], y[:150]).partial_fit(X[150:], y[150:])
    np.testing.assert_allclose(exact.coef_, ref.coef_, rtol=1e-8)


# ---------------------------------------------------------------- determinism and memory


def test_bit_identical_for_any_thread_count(rng, monkeypatch):
    monkeypatch.setattr(_sparse, "segment_rows", lambda indptr, p: 700)  # 8 segments, merged in a tree
    X = random_csr(rng, 5000, 30, 0.1).tolil()
    X[:, 3] = 50.0 + rng.normal(size=(5000, 1))  # centred first in every segment
    X = X.tocsr()
    y = X @ rng.normal(size=30) + rng.normal(size=5000)
    coefs = []
    for threads in (1, 2):
        with threadpool_limits(limits=threads, user_api="blas"):
            coefs.append(LinearRegressor(alpha=1e-3).fit(X, y).coef_)
    np.testing.assert_array_equal(coefs[0], coefs[1])
    ref = LinearRegressor(alpha=1e-3).fit(X.toarray(), y).coef_
    np.testing.assert_allclose(coefs[0], ref, rtol=1e-9)


def test_memory_beyond_X_is_of_the_order_of_d_squared(rng):
    n, d = 100_000, 200
    X = random_csr(rng, n, d, 0.01)
    X.sort_indices()
    y = rng.normal(size=n)
    LinearRegressor().fit(X[:2000], y[:2000])  # warm up imports and caches
    tracemalloc.start()
    try:
        LinearRegressor().fit(X, y)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    p = d + 1
    # A few p x p states (segments in flight, tree merges, the solve) and O(n) for the target; the densified X
    # would be n * d * 8 = 160 MB.
    assert peak < 16 * p * p * 8 + 4 * n * 8, peak


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("weighted", [False, True])
def test_offset_columns_are_as_accurate_as_dense(rng, dtype, weighted):
    """Columns centred first carry no cancellation beyond the dense kernel's own: each centred value ``x - m``
    rounds by ``eps |m|``, so both are within ``n eps (sqrt(C_a C_b) + 2 M sqrt(W) (sqrt(G_aa) + sqrt(G_bb)))`` of
    the exact Gram (the bound of tests/test_parity.py, ``M`` the largest such mean), with ``C`` the centred sums of
    squares for those columns and ``Y``, and the uncentred ones (:func:`gram_bound`) for the sparse columns."""
    from fastopt._validation import Data

    n, d, first = 500, 8, [1, 5]
    X = random_csr(rng, n, d, 0.3, explicit_zeros=False).toarray()
    X[:, first] = np.array([1e5, -3e4]) + rng.normal(size=(n, 2))
    X = X.astype(dtype)
    Y = rng.normal(size=(n, 2)).astype(dtype)
    w = rng.uniform(0.0, 2.0, size=n).astype(dtype) if weighted else None
    _, _, gram, raw_diag = _sparse.segment_stats(Data(sp.csr_matrix(X), Y, w, False), 0, n)
    md, gd = np.empty(d + 2), np.empty((d + 2, d + 2))
    wd = _kernels.gram_stats(X, Y, w, md, gd, 64)
    centred = np.diag(gd).copy()
    scale = np.maximum(centred, 0.0) + wd * md**2
    scale[[*first, d, d + 1]] = centred[[*first, d, d + 1]]
    np.testing.assert_allclose(raw_diag[first], centred[first], rtol=1e-6)  # no cancellation left to estimate
    root = np.sqrt(centred)
    bound = 4 * n * EPS * (np.sqrt(np.outer(scale, scale))
                           + 2 * np.abs(md[first]).max() * np.sqrt(wd) * (root[:, None] + root[None, :]))
    assert np.all(np.abs(gram - gd) <= bound)
    np.testing.assert_array_equal(gram, gram.T)


def test_a_gram_too_large_for_memory_is_a_clear_error(monkeypatch):
    # Hashed text: 2^18 columns would need 512 GiB per Gram; say so instead of being killed for memory.
    X = sp.csr_matrix((np.ones(3), np.array([0, 7, 2**18 - 1]), np.array([0, 1, 2, 3])), shape=(3, 2**18))
    monkeypatch.setattr(_sparse, "available_memory", lambda: 8 * 2**30)
    with pytest.raises(MemoryError, match=r"262144 columns: the closed form needs dense .* GiB"):
        LinearRegressor(solver="normal").fit(X, np.arange(3.0))


def test_concurrent_sparse_fits_are_bit_identical(rng, monkeypatch):
    from concurrent.futures import ThreadPoolExecutor

    monkeypatch.setattr(_sparse, "segment_rows", lambda indptr, p: 500)  # several segments per fit
    X = random_csr(rng, 3000, 20, 0.2)
    y = X @ rng.normal(size=20) + rng.normal(size=3000)
    serial = LinearRegressor(alpha=1e-3).fit(X, y).coef_
    with ThreadPoolExecutor(4) as pool:
        coefs = list(pool.map(lambda _: LinearRegressor(alpha=1e-3).fit(X, y).coef_, range(4)))
    for coef in coefs:
        np.testing.assert_array_equal(coef, serial)


@pytest.mark.parametrize("solver", ["normal", "qr"])
@pytest.mark.parametrize("fx, fy", [(1e-310, 1e-300), (1e-305, 1.0), (1.0, 1e300), (1e200, 1e300), (1e300, 1.0)])
def test_sparse_fit_is_right_at_any_data_scale(rng, solver, fx, fy):
    # Values whose squares under- or overflow used to be an error for sparse X: the fit now rescales X's stored
    # values (and y) by powers of two as the dense fit does, so the answer is that of the unscaled problem.
    X = random_csr(rng, 300, 6, 0.5, explicit_zeros=False)
    y = X @ rng.normal(size=6) + 0.5 + 0.1 * rng.normal(size=300)
    w = rng.uniform(0.5, 2.0, size=300)
    ref = LinearRegressor(solver=solver).fit(X, y, sample_weight=w)
    Xs = (X * fx).tocsr()
    before = Xs.data.copy()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # neither the overflow of the first attempt nor anything else leaks out
        got = LinearRegressor(solver=solver).fit(Xs, y * fy, sample_weight=w * 1e300)
    np.testing.assert_array_equal(Xs.data, before)  # the caller's matrix is not scaled in place
    # Denormal values (1e-310) carry only ~44 bits: the scaled problem is the unscaled one to ~1e-13, and its
    # conditioning (< 10 here) passes that on; 1e-12 leaves margin.
    np.testing.assert_allclose(got.coef_ * (fx / fy), ref.coef_, rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(got.intercept_ / fy, ref.intercept_, rtol=1e-12)


@pytest.mark.parametrize("solver", ["normal", "qr"])
def test_sparse_fit_says_why_when_it_cannot(rng, solver):
    X = random_csr(rng, 300, 4, 0.5, explicit_zeros=False)
    y = X @ rng.normal(size=4) + 0.5
    with pytest.raises(ValueError, match="coefficients exceed float64's range.*multiply X"):
        LinearRegressor(solver=solver).fit((X * 1e-310).tocsr(), y)
    with pytest.raises(ValueError, match="X column 0 has values too large or too small"):
        LinearRegressor(solver=solver).partial_fit((X * 1e-310).tocsr(), y)


def test_constant_column_whose_centred_square_rounds_negative():
    # Centred from the nonzeros, a constant column's Gram entry is a difference of equal sums, here -2.8e-45: its
    # scale took a square root of it (NaN, with NumPy's warning) before giving it scale 1 as for a zero column.
    rng = np.random.default_rng(1)
    X = rng.normal(size=(88, 4))
    X[:, 0] = 3.0
    sw = rng.random(88) * 3
    y = rng.normal(size=88)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        warnings.simplefilter("ignore", UserWarning)  # (a rank or conditioning note is not the point here)
        sparse_fit = LinearRegressor(solver="normal", alpha=1.0).fit(sp.csr_array(X), y, sample_weight=sw)
    dense_fit = LinearRegressor(solver="normal", alpha=1.0).fit(X, y, sample_weight=sw)
    np.testing.assert_allclose(sparse_fit.coef_, dense_fit.coef_, rtol=1e-10, atol=1e-12)
