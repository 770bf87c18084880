"""scikit-learn's own test cases for ``positive=True`` (sklearn/linear_model/tests/test_base.py and test_ridge.py,
scikit-learn 1.9), run against ``LinearRegressor`` with their assertions and tolerances kept; only the estimator
construction is adapted:

- ``LinearRegression(positive=True)`` -> ``LinearRegressor(positive=True)``;
- ``Ridge(alpha=a)`` -> ``LinearRegressor(alpha=a / W)``: Ridge penalises the *sum* of squared errors and fastopt
  the weighted *mean*, so ``LinearRegressor(alpha=a / W)`` equals ``Ridge(alpha=a)`` (``W`` = total weight);
- Ridge's solvers: ``"auto"`` -> ``"auto"`` (the closed form, Lawson-Hanson NNLS), ``"lbfgs"`` -> ``"qr"`` (the
  stable closed form's NNLS on ``R``) where the exact solution is tested, or an iterative solver with projected
  steps (``"sgd"``) where the test is about the iterative solver's stopping; the solvers Ridge refuses
  ``positive`` for -> fastopt's that refuse it (Krylov ``lsqr`` and ``cg``), the error message's wording adapted;
- ``global_random_seed`` is scikit-learn's fixture; its default value, 42, is used.

Not applicable as written (5 of the 40 cases; each checks fastopt's behaviour instead, as commented there):
``test_raises_value_error_if_positive_and_sparse`` (fastopt fits sparse ``X`` with ``positive=True``: there is no
error to raise) and the four solvers of ``test_ridge_positive_error_test`` for which fastopt supports ``positive``
(``svd``, ``cholesky``, ``sag``, ``saga`` map to ``qr``, ``normal`` and the iterative rules). That test's second
half (``ridge_regression``, a function fastopt does not have) is dropped from its two applicable cases.
"""
import warnings

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_almost_equal
from sklearn.datasets import make_regression, make_sparse_uncorrelated

from fastopt import LinearRegressor
from fastopt.exceptions import ConvergenceWarning

SEED = 42  # scikit-learn's global_random_seed default
SOLVER = {"auto": "auto", "lbfgs": "qr"}


def ridge(n_samples, alpha=1.0, solver="auto", **kw):
    """``Ridge(alpha=alpha, solver=solver, **kw)`` on ``n_samples`` unweighted rows."""
    kw.pop("tol", None)  # the closed form is exact: no tolerance
    return LinearRegressor(alpha=alpha / n_samples, solver=SOLVER[solver], **kw)


# ---------------------------------------------------------------- test_base.py


def test_raises_value_error_if_positive_and_sparse():
    # Not applicable as written: scikit-learn raises TypeError, fastopt fits sparse X with positive=True (NNLS on
    # the sparse Gram). Checked instead: the sparse fit is the dense one.
    import scipy.sparse

    X = scipy.sparse.diags(np.arange(1.0, 11.0), format="csr")
    y = np.linspace(-1.0, 3.0, 10)
    sparse = LinearRegressor(positive=True).fit(X, y)
    dense = LinearRegressor(positive=True).fit(X.toarray(), y)
    assert np.all(sparse.coef_ >= 0)
    assert_allclose(sparse.coef_, dense.coef_, rtol=1e-10, atol=1e-12)
    assert_allclose(sparse.intercept_, dense.intercept_, rtol=1e-10)


def test_linear_regression_positive():
    X = [[1], [2]]
    y = [1, 2]
    reg = LinearRegressor(positive=True)
    reg.fit(X, y)
    assert_array_almost_equal(reg.coef_, [1])
    assert_array_almost_equal(reg.intercept_, [0])
    assert_array_almost_equal(reg.predict(X), [1, 2])
    X = [[1]]
    y = [0]
    reg = LinearRegressor(positive=True)
    reg.fit(X, y)
    assert_allclose(reg.coef_, [0])
    assert_allclose(reg.intercept_, [0])
    assert_allclose(reg.predict(X), [0])


def test_linear_regression_positive_multiple_outcome():
    rng = np.random.RandomState(SEED)
    X, y = make_sparse_uncorrelated(random_state=rng)
    Y = np.vstack((y, y)).T
    n_features = X.shape[1]
    ols = LinearRegressor(positive=True)
    ols.fit(X, Y)
    assert ols.coef_.shape == (2, n_features)
    assert np.all(ols.coef_ >= 0.0)
    Y_pred = ols.predict(X)
    ols.fit(X, y.ravel())
    y_pred = ols.predict(X)
    assert_allclose(np.vstack((y_pred, y_pred)).T, Y_pred)


def test_linear_regression_positive_vs_nonpositive():
    rng = np.random.RandomState(SEED)
    X, y = make_sparse_uncorrelated(random_state=rng)
    reg = LinearRegressor(positive=True)
    reg.fit(X, y)
    regn = LinearRegressor(positive=False)
    regn.fit(X, y)
    assert np.mean((reg.coef_ - regn.coef_) ** 2) > 1e-3


def test_linear_regression_positive_vs_nonpositive_when_positive():
    rng = np.random.RandomState(SEED)
    n_samples = 200
    n_features = 4
    X = rng.rand(n_samples, n_features)
    y = X[:, 0] + 2 * X[:, 1] + 3 * X[:, 2] + 1.5 * X[:, 3]
    reg = LinearRegressor(positive=True)
    reg.fit(X, y)
    regn = LinearRegressor(positive=False)
    regn.fit(X, y)
    assert np.mean((reg.coef_ - regn.coef_) ** 2) < 1e-6


# ---------------------------------------------------------------- test_ridge.py


@pytest.mark.parametrize("solver", ["auto", "lbfgs"])
@pytest.mark.parametrize("fit_intercept", [True, False])
@pytest.mark.parametrize("alpha", [1e-3, 1e-2, 0.1, 1.0])
def test_ridge_positive_regression_test(solver, fit_intercept, alpha):
    X = np.array([[1, 2], [3, 4], [5, 6], [7, 8]])
    coef = np.array([1, -10])
    if fit_intercept:
        intercept = 20
        y = X.dot(coef) + intercept
    else:
        y = X.dot(coef)
    model = ridge(X.shape[0], alpha=alpha, positive=True, solver=solver, fit_intercept=fit_intercept)
    model.fit(X, y)
    assert np.all(model.coef_ >= 0)


@pytest.mark.parametrize("fit_intercept", [True, False])
@pytest.mark.parametrize("alpha", [1e-3, 1e-2, 0.1, 1.0])
def test_ridge_ground_truth_positive_test(fit_intercept, alpha):
    rng = np.random.RandomState(42)
    X = rng.randn(300, 100)
    coef = rng.uniform(0.1, 1.0, size=X.shape[1])
    if fit_intercept:
        intercept = 1
        y = X @ coef + intercept
    else:
        y = X @ coef
    y += rng.normal(size=X.shape[0]) * 0.01
    results = []
    for positive in [True, False]:
        model = ridge(X.shape[0], alpha=alpha, positive=positive, fit_intercept=fit_intercept, tol=1e-10)
        results.append(model.fit(X, y).coef_)
    assert_allclose(*results, atol=1e-6, rtol=0)


@pytest.mark.parametrize("solver", ["svd", "cholesky", "lsqr", "sparse_cg", "sag", "saga"])
def test_ridge_positive_error_test(solver):
    alpha = 0.1
    X = np.array([[1, 2], [3, 4]])
    coef = np.array([1, -1])
    y = X @ coef
    if solver not in ("lsqr", "sparse_cg"):
        # Not applicable as written: fastopt's counterpart of this solver supports positive=True. Checked
        # instead: it fits, with non-negative coefficients.
        name = {"svd": "qr", "cholesky": "normal", "sag": "sgd", "saga": "adam"}[solver]
        model = LinearRegressor(alpha=alpha / 2, positive=True, solver=name, fit_intercept=False, max_epochs=50)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)  # 50 epochs of an iterative rule
            assert np.all(model.fit(X, y).coef_ >= 0)
        return
    model = LinearRegressor(alpha=alpha / 2, positive=True, solver={"lsqr": "lsqr", "sparse_cg": "cg"}[solver],
                            fit_intercept=False)
    with pytest.raises(ValueError, match="positive=True is not supported"):
        model.fit(X, y)


@pytest.mark.parametrize("alpha", [1e-3, 1e-2, 0.1, 1.0])
def test_positive_ridge_loss(alpha):
    X, y = make_regression(n_samples=300, n_features=300, random_state=42)
    alpha = 0.10
    n_checks = 100

    def ridge_loss(model, random_state=None, noise_scale=1e-8):
        intercept = model.intercept_
        if random_state is not None:
            rng = np.random.RandomState(random_state)
            coef = model.coef_ + rng.uniform(0, noise_scale, size=model.coef_.shape)
        else:
            coef = model.coef_
        return 0.5 * np.sum((y - X @ coef - intercept) ** 2) + 0.5 * alpha * np.sum(coef**2)

    model = ridge(X.shape[0], alpha=alpha).fit(X, y)
    model_positive = ridge(X.shape[0], alpha=alpha, positive=True).fit(X, y)
    loss = ridge_loss(model)
    loss_positive = ridge_loss(model_positive)
    assert loss <= loss_positive
    for random_state in range(n_checks):
        loss_perturbed = ridge_loss(model_positive, random_state=random_state)
        assert loss_positive <= loss_perturbed


def test_lbfgs_solver_error():
    X = np.array([[1, -1], [1, 1]])
    y = np.array([-1e10, 1e10])
    # Ridge(solver="lbfgs", max_iter=1): an iterative solver with projected steps and one epoch.
    model = LinearRegressor(alpha=0.01 / 2, solver="sgd", fit_intercept=False, tol=1e-12, positive=True,
                            max_epochs=1)
    with pytest.warns(ConvergenceWarning, match="reached max_epochs=1"):
        model.fit(X, y)
    assert np.all(model.coef_ >= 0)

