"""scikit-learn conformance: the estimator checks over one configuration per registered solver, plus the
closed form without intercept and with ridge; and the usual meta-estimator round trips."""
import os
import pathlib
import pickle
import subprocess
import sys
import warnings

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

import fastopt
from fastopt import LinearRegressor
from fastopt._solvers import SOLVERS


def configurations():
    """One estimator per registered solver (iterative solvers are checked as soon as they register), and the
    robust losses under "auto" (Newton's fit, then partial_fit by Adam from its coefficients)."""
    ests = [LinearRegressor(solver=name, random_state=0) for name in sorted(SOLVERS)]
    robust = [LinearRegressor(loss=loss, random_state=0) for loss in ("huber", "absolute_error")]
    return [*ests, LinearRegressor(fit_intercept=False), LinearRegressor(alpha=0.1), *robust]


# Minibatch training ends at a random point near the optimum: giving a row weight 2 instead of repeating it, or
# weight 0 instead of dropping it, changes the minibatches and the row order drawn from random_state, so the two
# fits agree only to within that noise. The check's 15 rows (at most 60 repeated) fit in one default minibatch
# of 64, though, and learning_rate="auto" gives full batches the rate 1 / L whatever the row count, so every
# rule takes the same full-batch steps on the weighted and the repeated data and passes. The reason below is
# kept for configurations (smaller batches) that do not.
SAMPLE_WEIGHT_REASON = (
    "stochastic minibatch training: weights and repeated rows give different minibatches and row orders, so the "
    "fits agree only to within the SGD noise (see the comment above)"
)
STOCHASTIC_SW_FAILURES: set = set()


# Both variants' data have 15 rows and 30 columns: the least-squares fits interpolate (weighted loss about 1e-10
# at the default plateau stop) and the check compares predictions at the rows of weight 0, which depend on which
# interpolant the rule reaches. RMSProp divides each coordinate's gradient by its running RMS, so
# rounding-level differences between a weighted row and its repetitions steer it to another interpolant
# (predictions 1.6e-2 apart there on the dense variant); the other rules agree to 1e-13. (With max_epochs=100
# epochs of one step each, before the plateau rule judged rounds of 32 steps, no rule got near interpolating:
# both fits stopped at the same weighted loss of 0.09 and the dense check passed.)
RMSPROP_REASON = (
    "underdetermined data (15 rows, 30 columns): RMSProp's per-coordinate normalisation turns rounding-level "
    "differences between weighted and repeated rows into another interpolant, which differs at the rows of "
    "weight 0"
)


def expected_failed_checks(estimator):
    """Checks expected to fail for a configuration, each with its reason.

    (scikit-learn itself skips its array-API input check in this process unless SCIPY_ARRAY_API=1 is set, a
    process-wide switch of SciPy's behaviour; test_array_api_check_with_numpy_namespace runs that check for
    every registered solver in a child process with the switch on.)
    """
    if estimator.solver in STOCHASTIC_SW_FAILURES:
        # The sparse variant runs once the solver declares supports_sparse (its tags then say sparse).
        return {"check_sample_weight_equivalence_on_dense_data": SAMPLE_WEIGHT_REASON,
                "check_sample_weight_equivalence_on_sparse_data": SAMPLE_WEIGHT_REASON}
    if estimator.solver == "rmsprop":
        return {"check_sample_weight_equivalence_on_dense_data": RMSPROP_REASON,
                "check_sample_weight_equivalence_on_sparse_data": RMSPROP_REASON}
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


@pytest.mark.parametrize("solver", ["sgd", "normal"])
def test_unnamed_input_after_named_fit_warns_as_scikit_learn(regression, solver):
    """A model fitted on a DataFrame warns when later given an ndarray or CSR (partial_fit, predict), with
    scikit-learn's message; fitted on unnamed input it does not warn, and a refit on unnamed input drops the names."""
    pd = pytest.importorskip("pandas")
    X, y = regression
    frame = pd.DataFrame(X, columns=["a", "b", "c", "d"])
    est = LinearRegressor(solver=solver).partial_fit(frame, y) if solver == "sgd" else \
        LinearRegressor(solver=solver).fit(frame, y)
    for unnamed in (X, sp.csr_array(X)):
        with pytest.warns(UserWarning, match="X does not have valid feature names"):
            est.predict(unnamed)
        if solver == "sgd":
            with pytest.warns(UserWarning, match="X does not have valid feature names"):
                est.partial_fit(unnamed, y)
    est.fit(X, y)
    assert not hasattr(est, "feature_names_in_")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        est.predict(X)
        if solver == "sgd":
            est.partial_fit(X, y)
            est.partial_fit(sp.csr_array(X), y)


def test_float32_is_preserved(regression):
    X, y = regression
    est = LinearRegressor().fit(X.astype(np.float32), y.astype(np.float32))
    assert est.coef_.dtype == np.float32
    assert est.predict(X.astype(np.float32)).dtype == np.float32


def test_array_api_check_with_numpy_namespace(tmp_path):
    # The check scikit-learn skips above, in a child process where SciPy's array-API mode can be switched on
    # without changing SciPy for the rest of the suite. The child imports the fastopt under test.
    package_root = str(pathlib.Path(fastopt.__file__).resolve().parent.parent)
    code = (
        "import warnings; warnings.simplefilter('ignore')\n"
        "from sklearn.utils.estimator_checks import check_array_api_input\n"
        "from fastopt import LinearRegressor\n"
        "from fastopt._solvers import SOLVERS\n"
        "for name in SOLVERS:\n"
        "    check_array_api_input(name, LinearRegressor(solver=name, random_state=0), array_namespace='numpy',\n"
        "                          expect_only_array_outputs=False)\n"
        "print('checked', len(SOLVERS))\n"
    )
    env = {**os.environ, "SCIPY_ARRAY_API": "1",
           "PYTHONPATH": os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")]))}
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"checked {len(SOLVERS)}"



@pytest.mark.parametrize("fit_intercept", [True, False])
@pytest.mark.parametrize("shape", [(40,), (40, 1), (40, 3)], ids=["1d", "n1", "n3"])
def test_coef_and_intercept_have_linear_regressions_shapes(shape, fit_intercept):
    # Without an intercept LinearRegression and Ridge set intercept_ = 0.0 whatever y's shape; fastopt set
    # array([0.]) (float32 for float32 X) for 2-D y.
    from sklearn.linear_model import LinearRegression

    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 4))
    y = rng.normal(size=shape)
    ref = LinearRegression(fit_intercept=fit_intercept).fit(X, y)
    for solver in ["normal", "sgd"]:
        est = LinearRegressor(solver=solver, fit_intercept=fit_intercept, random_state=0).fit(X, y)
        assert np.shape(est.coef_) == np.shape(ref.coef_)
        assert np.shape(est.intercept_) == np.shape(ref.intercept_)
        assert est.predict(X).shape == ref.predict(X).shape
