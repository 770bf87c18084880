"""The sparse closed form: the CSR Gram kernel against its NumPy twin and the dense statistics, the centring-loss
fallback, determinism over thread counts, bounded memory, and the kernel's own argument checks."""
import tracemalloc
import warnings

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given
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
    np.testing.assert_allclose(ms, md, rtol=4 * n * EPS, atol=4 * n * EPS * (np.abs(md).max() + 1e-300))
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


def test_centring_loss_falls_back_to_qr_and_matches_dense(rng):
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
    assert est.solver_ == ref.solver_ == "svd"
    np.testing.assert_allclose(est.coef_, ref.coef_, rtol=1e-8, atol=1e-12)


def test_partial_fit_and_stream_carry_the_centring_estimate(rng):
    X, y = offset_problem(rng)
    ref = LinearRegressor(solver="qr").fit(X.toarray(), y)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", IllConditionedWarning)  # the first call solves too
        est = LinearRegressor().partial_fit(X[:150], y[:150])
    with warnings.catch_warnings():
        warnings.simplefilter("error", IllConditionedWarning)  # the switch to QR is reported in solver_ only
        est.partial_fit(X[150:], y[150:])
        streamed = LinearRegressor().fit_stream([(X[:150], y[:150]), (X[150:].toarray(), y[150:])])
    assert est.solver_ == "qr"
    np.testing.assert_allclose(est.coef_, ref.coef_, rtol=1e-8)
    assert streamed.solver_ == "qr"
    np.testing.assert_allclose(streamed.coef_, ref.coef_, rtol=1e-8)


# ---------------------------------------------------------------- determinism and memory


def test_bit_identical_for_any_thread_count(rng, monkeypatch):
    monkeypatch.setattr(_sparse, "segment_rows", lambda indptr, p: 700)  # 8 segments, merged in a tree
    X = random_csr(rng, 5000, 30, 0.1)
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
