"""The closed form's tail (R merges, the d x d Cholesky) through the private single-threaded LAPACK: the kernels
against SciPy and their twins, fits equal to the process-BLAS tail to rounding, the process's BLAS untouched,
and the FASTOPT_PRIVATE_BLAS=0 fallback."""
import os
import subprocess
import sys

import numpy as np
import pytest
import scipy.linalg
from threadpoolctl import threadpool_info

from fastopt import LinearRegressor, _closed_form, _kernels, _reference, _serial_blas

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
@pytest.mark.parametrize("d", [1, 3, 100])
def test_potrf_upper_matches_scipy_and_its_twin(serial, d, rng):
    G = rng.normal(size=(2 * d + 3, d))
    S = G.T @ G
    a, twin = np.asfortranarray(S.copy()), S.copy()
    assert _kernels.potrf_upper(a, serial=serial) == 0
    assert _reference.potrf_upper(twin, serial=serial) == 0
    expected = scipy.linalg.lapack.dpotrf(S, lower=0, clean=1)[0]
    np.testing.assert_allclose(np.triu(a), expected, rtol=0, atol=1e-13 * np.abs(expected).max())
    np.testing.assert_allclose(np.triu(twin), expected, rtol=0, atol=1e-13 * np.abs(expected).max())
    lower = np.tril_indices(d, -1)
    np.testing.assert_array_equal(a[lower], S[lower])  # the strictly lower triangle is left as it was
    np.testing.assert_array_equal(twin[lower], S[lower])


@pytest.mark.parametrize("serial", SERIAL)
def test_potrf_upper_reports_a_matrix_that_is_not_positive_definite(serial):
    S = np.array([[1.0, 2.0], [2.0, 1.0]])
    assert _kernels.potrf_upper(np.asfortranarray(S), serial=serial) > 0
    assert _reference.potrf_upper(S.copy(), serial=serial) > 0


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
    monkeypatch.setattr(_kernels, "gram_stats", lambda *a, serial=False: flags.append(serial) or gram_stats(*a, serial))
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
    monkeypatch.setattr(_kernels, name, lambda *a, serial=False: flags.append(serial) or kernel(*a, serial))
    private = LinearRegressor(solver=solver).fit(X, y)
    assert flags and all(flags)
    monkeypatch.setattr(_closed_form, "_tail_serial", lambda p: False)
    shared = LinearRegressor(solver=solver).fit(X, y)
    assert not flags[-1]
    np.testing.assert_allclose(private.coef_, shared.coef_, rtol=1e-12)
