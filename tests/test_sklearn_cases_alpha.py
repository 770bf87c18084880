"""scikit-learn's own test cases for a per-target ``alpha`` array (sklearn/linear_model/tests/test_ridge.py,
scikit-learn 1.9), run against ``LinearRegressor`` with their assertions and tolerances kept; only the estimator
construction is adapted:

- ``Ridge(alpha=a)`` -> ``LinearRegressor(alpha=a / W)`` (Ridge penalises the sum of squared errors, fastopt the
  weighted mean; ``W`` = total weight), elementwise for an array;
- Ridge's solvers -> fastopt's that take an alpha array: ``"svd"`` -> ``"qr"``, ``"cholesky"`` -> ``"normal"``,
  ``"lsqr"`` -> ``"lsqr"``, ``"sparse_cg"`` -> ``"cg"``. ``"sag"`` and ``"saga"`` have no counterpart: fastopt's
  iterative rules take a scalar alpha and say so (checked below in their place);
- the error message for a wrong number of penalties is fastopt's wording.

``test_ridge_per_target_alpha_array_api`` is parametrised over 15 array namespaces and devices; its NumPy case
runs here (fastopt computes in NumPy; the dispatch context is not needed for NumPy inputs). The other 14
(array_api_strict, CuPy, PyTorch and dpnp on their devices) are not applicable: those libraries are not
installed and fastopt has no array-API dispatch; scikit-learn's own run skips them likewise.
"""
import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_almost_equal, assert_array_almost_equal
from sklearn.datasets import make_regression
from sklearn.utils._array_api import _atol_for_type, yield_namespace_device_dtype_combinations

from fastopt import LinearRegressor

SOLVER = {"svd": "qr", "cholesky": "normal", "lsqr": "lsqr", "sparse_cg": "cg"}


def ridge(n_samples, alpha=1.0, solver="auto", **kw):
    """``Ridge(alpha=alpha, solver=solver, **kw)`` on ``n_samples`` unweighted rows."""
    return LinearRegressor(alpha=np.asarray(alpha, dtype=np.float64) / n_samples,
                           solver=SOLVER.get(solver, solver), **kw)


def test_ridge_individual_penalties():
    rng = np.random.RandomState(42)
    n_samples, n_features, n_targets = 20, 10, 5
    X = rng.randn(n_samples, n_features)
    y = rng.randn(n_samples, n_targets)
    penalties = np.arange(n_targets)
    coef_cholesky = np.array(
        [ridge(n_samples, alpha=alpha, solver="cholesky").fit(X, target).coef_ for alpha, target in zip(penalties, y.T)]
    )
    coefs_indiv_pen = [
        ridge(n_samples, alpha=penalties, solver=solver, tol=1e-12).fit(X, y).coef_
        for solver in ["svd", "sparse_cg", "lsqr", "cholesky"]
    ]
    for coef_indiv_pen in coefs_indiv_pen:
        assert_array_almost_equal(coef_cholesky, coef_indiv_pen)
    for solver in ("sgd", "adam"):  # the counterparts of "sag" and "saga": a scalar alpha only, said clearly
        with pytest.raises(ValueError, match="takes a scalar alpha"):
            ridge(n_samples, alpha=penalties, solver=solver).fit(X, y)
    ridge_ = ridge(n_samples, alpha=penalties[:-1])
    err_msg = r"alpha has shape \(4,\); an array alpha needs one value per target, shape \(5,\)"
    with pytest.raises(ValueError, match=err_msg):
        ridge_.fit(X, y)


def test_dtype_match_cholesky():
    rng = np.random.RandomState(0)
    alpha = np.array([1.0, 0.5])
    n_samples, n_features, n_target = 6, 7, 2
    X_64 = rng.randn(n_samples, n_features)
    y_64 = rng.randn(n_samples, n_target)
    X_32 = X_64.astype(np.float32)
    y_32 = y_64.astype(np.float32)
    ridge_32 = ridge(n_samples, alpha=alpha, solver="cholesky")
    ridge_32.fit(X_32, y_32)
    coef_32 = ridge_32.coef_
    ridge_64 = ridge(n_samples, alpha=alpha, solver="cholesky")
    ridge_64.fit(X_64, y_64)
    coef_64 = ridge_64.coef_
    assert coef_32.dtype == X_32.dtype
    assert coef_64.dtype == X_64.dtype
    assert ridge_32.predict(X_32).dtype == X_32.dtype
    assert ridge_64.predict(X_64).dtype == X_64.dtype
    assert_almost_equal(ridge_32.coef_, ridge_64.coef_, decimal=5)


@pytest.mark.parametrize("array_namespace, device_name, dtype_name", list(yield_namespace_device_dtype_combinations()))
def test_ridge_per_target_alpha_array_api(array_namespace, device_name, dtype_name):
    if array_namespace != "numpy":
        pytest.skip(f"not applicable: {array_namespace} is not installed and fastopt has no array-API dispatch")
    X, y = make_regression(n_targets=3, n_features=10, random_state=0)
    X_np = X.astype(dtype_name)
    y_np = y.astype(dtype_name)
    alphas = np.asarray([1e-2, 0.1, 1.0], dtype=dtype_name)
    ridge_np = ridge(X.shape[0], alpha=alphas, solver="svd").fit(X_np, y_np)
    pred_np = ridge_np.predict(X_np)
    # alpha can be a numpy array or an array on the same device (here: a list, another array-like)
    for alpha in (alphas, list(alphas)):
        ridge_xp = ridge(X.shape[0], alpha=alpha, solver="svd").fit(X_np, y_np)
        pred_xp = ridge_xp.predict(X_np)
        assert pred_xp.shape == pred_np.shape == y.shape
        assert_allclose(pred_xp, pred_np, atol=_atol_for_type(dtype_name))
