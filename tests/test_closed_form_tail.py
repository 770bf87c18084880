"""The closed form's tail (R merges, the d x d Cholesky) through the private single-threaded LAPACK: the kernels
against SciPy and their twins, fits equal to the process-BLAS tail to rounding, the process's BLAS untouched,
and the FASTOPT_PRIVATE_BLAS=0 fallback."""
import os
import subprocess
import sys
import warnings

import numpy as np
import pytest
import scipy.linalg
from threadpoolctl import threadpool_info

from fastopt import LinearRegressor, _closed_form, _kernels, _reference, _serial_blas
from fastopt.exceptions import RankDeficientWarning

SERIAL = [False, True] if _serial_blas.tables() is not None else [False]


@pytest.mark.parametrize("serial", SERIAL)
@pytest.mark.parametrize("m, n", [(1, 1), (1, 4), (5, 8), (40, 7), (331, 165)])
def test_geqrf_inplace_matches_scipy_and_its_twin(serial, m, n, rng):
    A = rng.normal(size=(m, n))
    k = min(m, n)
    a, twin = np.asfortranarray(A.copy()), A.copy()
    assert _kernels.geqrf_inplace(a, serial=serial) == 0
    assert _reference.geqrf_inplace(twin, serial=serial) == 0
    expected = scipy.linalg.qr(A, mode="r")[0][:k]
    scale = np.abs(expected).max()
    np.testing.assert_allclose(np.triu(a[:k]), expected, rtol=0, atol=1e-13 * scale)
    np.testing.assert_allclose(np.triu(twin[:k]), expected, rtol=0, atol=1e-13 * scale)


@pytest.mark.parametrize("serial", SERIAL)
@pytest.mark.parametrize("d, block", [(1, -1), (3, -1), (100, -1), (100, 16), (100, 37), (3, 1)])
def test_potrf_upper_matches_scipy_and_its_twin(serial, d, block, rng):
    # block > 0: the blocked algorithm (diagonal blocks, dtrsm, dsyrk), the path above POTRF_BLOCKED_MIN columns:
    # the same factor to rounding (Cholesky is backward stable in any order; G is well conditioned)
    G = rng.normal(size=(2 * d + 3, d))
    S = G.T @ G
    a, twin = np.asfortranarray(S.copy()), S.copy()
    assert _kernels.potrf_upper(a, serial=serial, block=block) == 0
    assert _reference.potrf_upper(twin, serial=serial, block=block) == 0
    expected = scipy.linalg.lapack.dpotrf(S, lower=0, clean=1)[0]
    np.testing.assert_allclose(np.triu(a), expected, rtol=0, atol=1e-13 * np.abs(expected).max())
    np.testing.assert_allclose(np.triu(twin), expected, rtol=0, atol=1e-13 * np.abs(expected).max())
    lower = np.tril_indices(d, -1)
    np.testing.assert_array_equal(a[lower], S[lower])  # the strictly lower triangle is left as it was
    np.testing.assert_array_equal(twin[lower], S[lower])


@pytest.mark.parametrize("serial", SERIAL)
def test_potrf_upper_reports_a_matrix_that_is_not_positive_definite(serial, rng):
    S = np.array([[1.0, 2.0], [2.0, 1.0]])
    assert _kernels.potrf_upper(np.asfortranarray(S), serial=serial) > 0
    assert _reference.potrf_upper(S.copy(), serial=serial) > 0
    # the blocked algorithm reports LAPACK's order of the failing minor, in a later block too
    G = rng.normal(size=(60, 50))
    S = G.T @ G
    S[29, 29] = -1.0
    expected = scipy.linalg.lapack.dpotrf(S, lower=0)[1]
    assert expected == 30
    for block in (0, 7, 16, 29, 30):
        assert _kernels.potrf_upper(np.asfortranarray(S), serial=serial, block=block) == expected


def test_the_cholesky_of_many_columns_runs_in_blocks(monkeypatch):
    # SciPy's bundled OpenBLAS dpotrf crashed the process (SIGSEGV) on 16,384 columns with two threads, where a
    # hashed design's solver="normal" took it; above POTRF_BLOCKED_MIN the default is the blocked algorithm,
    # whose dpotrf calls see POTRF_BLOCK columns at most.
    assert _kernels.POTRF_BLOCKED_MIN <= 8192 and _kernels.POTRF_BLOCK <= 2048
    d = _kernels.POTRF_BLOCKED_MIN + 5
    S = np.asfortranarray(np.eye(d) * 4.0 + 1.0)  # positive definite: 4 I + 1 1^T
    assert _kernels.potrf_upper(S) == 0
    U = np.triu(S[:300, :300])  # the leading block of the factor is the factor of the leading block
    expected = scipy.linalg.cholesky(np.eye(300) * 4.0 + 1.0)
    np.testing.assert_allclose(U, expected, rtol=0, atol=1e-14 * 2.0)
    assert np.isclose(S[-1, -1], np.sqrt(4.0 + 1.0 - (d - 1) / (4.0 + d - 1) * 1.0), rtol=1e-12)


@pytest.mark.parametrize("solver, fit_intercept, alpha", [("qr", True, 0.0), ("qr", False, 0.5),
                                                          ("normal", True, 0.0), ("normal", False, 0.0)])
def test_the_private_tail_equals_the_process_blas_tail_to_rounding(solver, fit_intercept, alpha, monkeypatch,
                                                                   rng):
    if _serial_blas.tables() is None:
        pytest.skip("no private BLAS instance on this platform")
    from sklearn.preprocessing import PolynomialFeatures

    X = np.ascontiguousarray(PolynomialFeatures(3, include_bias=False).fit_transform(rng.uniform(size=(6000, 8))))
    y = X @ rng.normal(size=X.shape[1]) + rng.normal(size=X.shape[0])
    monkeypatch.setattr(_closed_form, "SEGMENT_ROWS", 1000)  # several segments: R merges on the tail
    calls = []
    geqrf, potrf = _kernels.geqrf_inplace, _kernels.potrf_upper
    monkeypatch.setattr(_kernels, "geqrf_inplace", lambda a, serial=False: calls.append(serial) or geqrf(a, serial))
    monkeypatch.setattr(_kernels, "potrf_upper", lambda a, serial=False: calls.append(serial) or potrf(a, serial))
    before = [(lib["filepath"], lib["num_threads"]) for lib in threadpool_info()]
    private = LinearRegressor(solver=solver, fit_intercept=fit_intercept, alpha=alpha).fit(X, y)
    assert [(lib["filepath"], lib["num_threads"]) for lib in threadpool_info()] == before
    assert calls and all(calls)  # every tail factorisation went to the private instance
    monkeypatch.setattr(_closed_form, "_tail_serial", lambda p: False)
    shared = LinearRegressor(solver=solver, fit_intercept=fit_intercept, alpha=alpha).fit(X, y)
    assert private.solver_ == shared.solver_
    np.testing.assert_allclose(private.coef_, shared.coef_, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(private.intercept_, shared.intercept_, rtol=1e-8, atol=1e-8)


def test_without_the_private_blas_the_tail_uses_scipys(tmp_path):
    code = """
import numpy as np
from fastopt import LinearRegressor, _closed_form, _kernels, _serial_blas
assert _serial_blas.tables() is None and not _closed_form._tail_serial(1)
rng = np.random.default_rng(0)
X = rng.normal(size=(3000, 6)); y = X @ np.arange(6.0) + 1.0
for solver in ("qr", "normal"):
    est = LinearRegressor(solver=solver).fit(X, y)
    np.testing.assert_allclose(est.coef_, np.arange(6.0), atol=1e-10)
try:
    _kernels.potrf_upper(np.eye(2, order="F"), serial=True)
except ValueError:
    print("ok")
"""
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path,
                         env={**os.environ, "FASTOPT_PRIVATE_BLAS": "0"})
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "ok"


def test_the_probe_before_the_pass_calls_the_private_blas(monkeypatch, rng):
    # The Gram of the probe's sample ran on the process's BLAS, whose spinning thread slowed the QR pass after it.
    if _serial_blas.tables() is None:
        pytest.skip("no private BLAS instance on this platform")
    X = rng.normal(size=(32 * _closed_form.PROBE_MIN_ROWS, 4))
    X[:, 3] = X[:, 2] + 1e-3 * rng.normal(size=X.shape[0])  # nearly dependent: the probe sends the fit to QR
    y = X @ np.ones(4) + rng.normal(size=X.shape[0])
    flags = []
    gram_stats = _kernels.gram_stats
    monkeypatch.setattr(_kernels, "gram_stats",
                        lambda *a, serial=False, **kw: flags.append(serial) or gram_stats(*a, serial, **kw))
    monkeypatch.setattr(_closed_form, "_n_threads", lambda: 1)  # no parallel pass: only the probe's calls
    assert LinearRegressor().fit(X, y).solver_ == "qr"
    assert flags and all(flags)


def test_wide_problems_keep_the_two_thread_tail():
    # Above TAIL_SERIAL_MAX_D the d x d work gains more from the process's threads than its spinning worker costs.
    limit = _closed_form.TAIL_SERIAL_MAX_D
    assert not _closed_form._tail_serial(limit + 1)
    assert _closed_form._tail_serial(limit) == (_serial_blas.tables() is not None)


@pytest.mark.parametrize("solver", ["normal", "qr"])
def test_a_one_segment_fit_factorises_its_blocks_on_the_private_blas(solver, monkeypatch, rng):
    # With no segment threads the blocks' small factorisations went to the process's two-thread OpenBLAS: with the
    # cores busy, its threads' hand-offs made a 6,553 x 9 QR fit 280x slower.
    if _serial_blas.tables() is None:
        pytest.skip("no private BLAS instance on this platform")
    X = rng.normal(size=(5000, 9))
    y = X @ np.arange(9.0) + rng.normal(size=5000)
    assert len(_closed_form.segment_bounds(X.shape[0])) == 1
    name = "tsqr_stats" if solver == "qr" else "gram_stats"
    kernel, flags = getattr(_kernels, name), []
    monkeypatch.setattr(_kernels, name, lambda *a, serial=False, **kw: flags.append(serial) or kernel(*a, serial, **kw))
    private = LinearRegressor(solver=solver).fit(X, y)
    assert flags and all(flags)
    monkeypatch.setattr(_closed_form, "_tail_serial", lambda p: False)
    shared = LinearRegressor(solver=solver).fit(X, y)
    assert not flags[-1]
    np.testing.assert_allclose(private.coef_, shared.coef_, rtol=1e-12)


def _semidefinite(rng, d, rank):
    G = rng.normal(size=(2 * d + 3, rank)) @ rng.normal(size=(rank, d))  # columns of rank `rank`
    return G.T @ G


@pytest.mark.parametrize("serial", SERIAL)
@pytest.mark.parametrize("d, rank", [(1, 1), (4, 4), (9, 6), (61, 58), (120, 119)])
def test_pstrf_upper_matches_scipy_and_its_twin(serial, d, rank, rng):
    S = _semidefinite(rng, d, rank)
    scale = np.max(np.diag(S))
    tol = np.sqrt(np.finfo(np.float64).eps) * scale  # the pivoted path's cutoff, relative to the diagonal
    a, twin = np.asfortranarray(S.copy()), S.copy()
    piv, r, info = _kernels.pstrf_upper(a, tol, serial=serial)
    tpiv, tr, tinfo = _reference.pstrf_upper(twin, tol, serial=serial)
    expected, epiv, er, einfo = scipy.linalg.lapack.dpstrf(S, tol=tol, lower=0)
    assert (r, info) == (er, einfo) == (tr, tinfo) == (rank, int(rank < d))
    np.testing.assert_array_equal(piv, epiv)  # the same LAPACK code: the same pivots and bits
    np.testing.assert_array_equal(np.triu(a[:r]), np.triu(expected[:r]))
    np.testing.assert_array_equal(tpiv[:r], piv[:r])
    # dpstrf is left-looking, the twin right-looking: the factors differ by rounding, which the kept block's
    # condition amplifies; both reproduce P^T S P on the kept columns to eps * ||S|| * d
    np.testing.assert_allclose(np.triu(twin[:r]), np.triu(a[:r]), rtol=0, atol=1e-9 * np.sqrt(scale))
    for U, p in ((np.triu(a[:r]), piv), (np.triu(twin[:r]), tpiv)):
        kept = p[:r] - 1
        np.testing.assert_allclose(U[:, :r].T @ U[:, :r], S[np.ix_(kept, kept)], rtol=0, atol=64 * d * 2.2e-16 * scale)
    lower = np.tril_indices(d, -1)
    np.testing.assert_array_equal(a[lower], S[lower])  # the strictly lower triangle is left as it was
    np.testing.assert_array_equal(twin[lower], S[lower])


@pytest.mark.parametrize("serial", SERIAL)
@pytest.mark.parametrize("trans", [False, True])
@pytest.mark.parametrize("m, r, k", [(1, 1, 1), (6, 6, 2), (61, 58, 3), (30, 12, 1), (5, 0, 2)])
def test_trtrs_upper_matches_scipy_and_its_twin(serial, trans, m, r, k, rng):
    a = np.asfortranarray(rng.normal(size=(m, m)) + 4 * np.eye(m))
    B = rng.normal(size=(r, k))
    x, twin = np.asfortranarray(B.copy()), B.copy()
    assert _kernels.trtrs_upper(a, r, x, trans, serial) == 0
    assert _reference.trtrs_upper(a, r, twin, trans, serial) == 0
    if r:
        expected = scipy.linalg.solve_triangular(np.triu(a[:r, :r]), B, trans="T" if trans else "N")
        np.testing.assert_allclose(x, expected, rtol=1e-12, atol=1e-12 * np.abs(expected).max())
        np.testing.assert_allclose(twin, expected, rtol=1e-12, atol=1e-12 * np.abs(expected).max())
    else:
        np.testing.assert_array_equal(x, B)


@pytest.mark.parametrize("serial", SERIAL)
@pytest.mark.parametrize("beta", [0.0, 1.0, 0.5])
@pytest.mark.parametrize("m, k", [(1, 1), (7, 3), (90, 40), (300, 5), (4, 0)])
def test_syrk_rows_matches_its_twin_on_the_upper_triangle(serial, beta, m, k, rng):
    a = np.asfortranarray(rng.normal(size=(m, k)))
    c0 = rng.normal(size=(m, m))
    c, twin = np.asfortranarray(c0.copy()), c0.copy()
    if beta == 0.0:
        c[np.triu_indices(m)] = np.nan  # beta 0: the previous upper triangle is not read
    _kernels.syrk_rows(a, c, beta, serial)
    _reference.syrk_rows(a, twin, beta, serial)
    upper, lower = np.triu_indices(m), np.tril_indices(m, -1)
    # each entry a dot product of k terms plus beta c: within (k + 1) eps of the sum of magnitudes
    magnitude = (np.abs(a) @ np.abs(a).T + abs(beta) * np.abs(c0))[upper]
    np.testing.assert_allclose(c[upper], twin[upper], rtol=0, atol=(k + 2) * 2.2e-16 * max(magnitude.max(), 1e-300))
    np.testing.assert_array_equal(c[lower], c0[lower])  # the strict lower triangle untouched
    with pytest.raises(ValueError, match="square"):
        _kernels.syrk_rows(a, np.asfortranarray(np.zeros((m + 1, m + 1))), beta, serial)


@pytest.mark.parametrize("serial", SERIAL)
@pytest.mark.parametrize("trans", [False, True])
@pytest.mark.parametrize("m, r, k", [(1, 1, 1), (6, 6, 2), (61, 58, 3), (30, 12, 1), (5, 0, 2)])
def test_trmm_upper_matches_its_twin_and_reads_only_the_triangle(serial, trans, m, r, k, rng):
    a = np.asfortranarray(rng.normal(size=(m, m)))
    B = rng.normal(size=(r, k))
    x, twin = np.asfortranarray(B.copy()), B.copy()
    _kernels.trmm_upper(a, r, x, trans, serial)
    _reference.trmm_upper(a, r, twin, trans, serial)
    # each entry a dot product of at most r terms: within r eps of the sum of magnitudes
    magnitude = np.abs(np.triu(a[:r, :r]).T if trans else np.triu(a[:r, :r])) @ np.abs(B)
    np.testing.assert_allclose(x, twin, rtol=0, atol=max(r, 1) * 2.2e-16 * max(magnitude.max(initial=0), 1e-300))
    a[np.tril_indices(m, -1)] = np.nan  # never read
    y = np.asfortranarray(B.copy())
    _kernels.trmm_upper(a, r, y, trans, serial)
    np.testing.assert_array_equal(y, x)
    with pytest.raises(ValueError, match="b must have r rows"):
        _kernels.trmm_upper(a, r, np.asfortranarray(np.ones((r + 1, 1))), trans, serial)


@pytest.mark.parametrize("serial", SERIAL)
def test_trtrs_upper_reports_a_zero_pivot_and_refuses_bad_shapes(serial):
    a = np.asfortranarray(np.triu(np.ones((3, 3))))
    a[1, 1] = 0.0
    b = np.asfortranarray(np.ones((3, 1)))
    assert _kernels.trtrs_upper(a, 3, b, False, serial) == 2
    assert _reference.trtrs_upper(a, 3, np.ones((3, 1)), False, serial) == 2
    with pytest.raises(ValueError, match="b must have r rows"):
        _kernels.trtrs_upper(a, 2, b, False, serial)
    with pytest.raises(ValueError, match="order at least r"):
        _kernels.trtrs_upper(a, 4, np.asfortranarray(np.ones((4, 1))), False, serial)
    with pytest.raises(ValueError, match="must be square"):
        _kernels.pstrf_upper(np.asfortranarray(np.ones((3, 2))), 0.0, serial)


@pytest.mark.parametrize("sparse", [False, True])
def test_the_pivoted_path_factorises_and_solves_on_the_private_blas(sparse, monkeypatch, rng):
    # Through SciPy, dpstrf and the triangular solves woke the process's OpenBLAS threads beside the fit's own:
    # a 100,000-row one-hot CSR fit of 61 columns took 12 ms, 3 of them in one 58 x 3 triangular solve.
    if _serial_blas.tables() is None:
        pytest.skip("no private BLAS instance on this platform")
    import scipy.sparse

    n = 4000
    codes = rng.integers(0, 6, size=(n, 2))
    X = np.zeros((n, 13))
    X[np.arange(n), codes[:, 0]] = 1.0
    X[np.arange(n), 6 + codes[:, 1]] = 1.0  # two full one-hot groups with an intercept: rank 11 of 13
    X[:, 12] = rng.normal(size=n)
    y = X @ rng.normal(size=13) + rng.normal(size=n)
    data = scipy.sparse.csr_matrix(X) if sparse else X
    flags = []
    for name in ("pstrf_upper", "trtrs_upper"):
        kernel = getattr(_kernels, name)
        monkeypatch.setattr(_kernels, name, lambda *a, serial=False, kernel=kernel, **kw: flags.append(serial)
                            or kernel(*a, serial=serial, **kw))
    fits = []
    for tail_serial in (True, False):
        if not tail_serial:
            monkeypatch.setattr(_closed_form, "_tail_serial", lambda p: False)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            fits.append(LinearRegressor().fit(data, y))
        assert fits[-1].solver_ == "pivoted_cholesky" and fits[-1].rank_ == 11
        assert [w.category for w in caught] == [RankDeficientWarning]
        assert len(flags) >= 3 and all(flag == tail_serial for flag in flags)  # dpstrf and three solves
        flags.clear()
    # the same LAPACK code on one thread or two: the same bits
    np.testing.assert_array_equal(fits[0].coef_, fits[1].coef_)
    np.testing.assert_array_equal(fits[0].intercept_, fits[1].intercept_)


def test_the_blas_tables_dsyrk_in_panels_gives_the_same_gram(rng):
    # The C kernels' dsyrk (the dense Gram, the Huber Hessian) goes through the process's BLAS in panels of
    # columns above _SYRK_PANEL_MIN: SciPy's bundled OpenBLAS crashed (SIGSEGV) in its threaded dsyrk on outputs
    # of about 15,500 columns. Small panels here (a diagonal block by dsyrk, the block above it by dgemm): the
    # same Gram to rounding, both triangles, any panel width, the last panel narrower.
    X, Y = rng.normal(size=(300, 40)), rng.normal(size=(300, 2))
    w = rng.uniform(0.5, 2.0, size=300)

    def stats():
        mean, gram = np.empty(42), np.empty((42, 42))
        weight = _kernels.gram_stats(X, Y, w, mean, gram, 64, serial=False)
        return weight, mean, gram

    whole = stats()
    old = _kernels._syrk_panels(8, 7)
    try:
        panels = stats()
        _kernels._syrk_panels(8, 1000)  # one panel: the plain call's arithmetic
        one = stats()
    finally:
        _kernels._syrk_panels(*old)
    assert old == (8192, 2048)
    assert panels[0] == whole[0]
    np.testing.assert_array_equal(panels[1], whole[1])
    np.testing.assert_allclose(panels[2], whole[2], rtol=0, atol=1e-12 * np.abs(whole[2]).max())
    np.testing.assert_array_equal(panels[2], panels[2].T)
    np.testing.assert_array_equal(one[2], whole[2])
    with pytest.raises(ValueError, match="positive"):
        _kernels._syrk_panels(8, 0)


def test_nonnegative_cholesky_and_wide_pivoted_factorisations_avoid_the_threaded_lapack(monkeypatch, rng):
    # SciPy's threaded OpenBLAS crashed the process (SIGSEGV) in dpotrf on 16,384 columns, where the nonnegative
    # fit's Cholesky called it directly; the pivoted path's dpstrf, threaded above TAIL_SERIAL_MAX_D, calls the
    # threaded dsyrk that crashes from about 15,500 columns. Now the first goes through potrf_upper (blocked when
    # wide), the second, wider than PSTRF_THREADED_MAX_D, through the private one-thread LAPACK.
    from fastopt import LinearRegressor, _closed_form, _serial_blas

    if _serial_blas.tables() is not None:
        assert _closed_form._pstrf_serial(_closed_form.PSTRF_THREADED_MAX_D + 1)
        assert _closed_form._pstrf_serial(500) and not _closed_form._pstrf_serial(2000)
    calls, potrf = [], _kernels.potrf_upper
    monkeypatch.setattr(_kernels, "potrf_upper", lambda a, *args, **kw: calls.append(a.shape) or potrf(a, *args, **kw))
    monkeypatch.setattr(scipy.linalg.lapack, "dpotrf", None)  # not called any more
    X = rng.normal(size=(200, 8))
    y = X @ np.array([1.0, -2.0, 0.5, 0.0, 3.0, -1.0, 0.2, 1.5]) + 0.1 * rng.normal(size=200)
    est = LinearRegressor(solver="normal", positive=True).fit(X, y)
    assert calls and np.all(est.coef_ >= 0)
    monkeypatch.undo()
    ref = scipy.optimize.nnls(np.column_stack([X - X.mean(axis=0)]), y - y.mean())[0]
    np.testing.assert_allclose(est.coef_, ref, rtol=1e-8, atol=1e-10)
