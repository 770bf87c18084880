"""scikit-learn conformance: the estimator checks over one configuration per registered solver, plus the
closed form without intercept and with ridge; and the usual meta-estimator round trips."""
import pickle

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

from fastopt import LinearRegressor
from fastopt._solvers import SOLVERS


def configurations():
    """One estimator per registered solver (iterative solvers are checked as soon as they register)."""
    ests = [LinearRegressor(solver=name, random_state=0) for name in sorted(SOLVERS)]
    return ests + [LinearRegressor(fit_intercept=False), LinearRegressor(alpha=0.1)]


def expected_failed_checks(estimator):
    """No check is expected to fail; a reason must be written here before one may.

    (scikit-learn itself skips its array-API input check unless SCIPY_ARRAY_API=1 is set; fastopt converts
    every input to NumPy, so that check has nothing to exercise here.)
    """
    return {}


@parametrize_with_checks(configurations(), expected_failed_checks=expected_failed_checks)
def test_sklearn_compatible_estimator(estimator, check):
    check(estimator)


@pytest.fixture
def regression(rng):
    X = rng.normal(size=(120, 4))
    return X, X @ [1.0, -2.0, 0.5, 3.0] + 0.1 * rng.normal(size=120)


def test_clone_keeps_parameters_and_drops_fit(regression):
    est = LinearRegressor(solver="qr", alpha=0.01).fit(*regression)
    twin = clone(est)
    assert twin.get_params() == est.get_params()
    assert not hasattr(twin, "coef_")


def test_pipeline_grid_search_and_cross_validation(regression):
    X, y = regression
    pipe = make_pipeline(StandardScaler(), LinearRegressor())
    grid = GridSearchCV(pipe, {"linearregressor__alpha": [0.0, 0.1, 10.0]}, cv=3).fit(X, y)
    assert grid.best_params_["linearregressor__alpha"] == 0.0  # noise is small: no shrinkage wanted
    scores = cross_val_score(LinearRegressor(), X, y, cv=5)
    assert scores.min() > 0.99


def test_pickle_round_trip_predicts_identically(regression):
    X, y = regression
    est = LinearRegressor().partial_fit(X[:60], y[:60])
    again = pickle.loads(pickle.dumps(est))
    np.testing.assert_array_equal(again.predict(X), est.predict(X))
    # the partial_fit state travels too: continuing on either gives the same model
    np.testing.assert_array_equal(again.partial_fit(X[60:], y[60:]).coef_, est.partial_fit(X[60:], y[60:]).coef_)


def test_dataframe_sets_feature_names(regression):
    pd = pytest.importorskip("pandas")
    X, y = regression
    frame = pd.DataFrame(X, columns=["a", "b", "c", "d"])
    est = LinearRegressor().fit(frame, y)
    assert list(est.feature_names_in_) == ["a", "b", "c", "d"]
    np.testing.assert_allclose(est.predict(frame), est.predict(X))


def test_float32_is_preserved(regression):
    X, y = regression
    est = LinearRegressor().fit(X.astype(np.float32), y.astype(np.float32))
    assert est.coef_.dtype == np.float32
    assert est.predict(X.astype(np.float32)).dtype == np.float32
