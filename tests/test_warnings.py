"""Warnings name the caller's line: the ``fit`` (or ``pipeline.fit``, ``search.fit``) that the user wrote, not a
line inside fastopt or scikit-learn, whatever the depth of the path that warned (``fastopt.exceptions._warn``)."""
import warnings

import numpy as np
import pytest
import scipy.sparse
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from fastopt import LinearRegressor
from fastopt.exceptions import ConvergenceWarning, IllConditionedWarning, RankDeficientWarning


def _dependent(rng, n=300):
    X = rng.normal(size=(n, 5))
    X[:, 4] = X[:, 3] - X[:, 2]
    return X, X @ np.arange(1.0, 6.0) + 0.1 * rng.normal(size=n)


def _caught(call, category):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        call()
    found = [w for w in caught if issubclass(w.category, category)]
    assert found, f"no {category.__name__}"
    return found


CASES = {
    # (what the user calls, the warning it raises)
    "closed form fit": (lambda X, y: LinearRegressor().fit(X, y), RankDeficientWarning),
    "closed form fit on CSR": (lambda X, y: LinearRegressor().fit(scipy.sparse.csr_matrix(X), y),
                               RankDeficientWarning),
    "qr fit": (lambda X, y: LinearRegressor(solver="qr").fit(X, y), RankDeficientWarning),
    "partial_fit": (lambda X, y: LinearRegressor().partial_fit(X, y), RankDeficientWarning),
    "fit_stream": (lambda X, y: LinearRegressor().fit_stream([(X[:150], y[:150]), (X[150:], y[150:])]),
                   RankDeficientWarning),
    "one-shot stream, ill-conditioned": (lambda X, y: LinearRegressor().fit_stream(
        iter([(np.column_stack([X[:, :4], X[:, 3] + 1e-6 * np.sin(np.arange(len(y)))]), y)])),
        IllConditionedWarning),
    "pipeline": (lambda X, y: make_pipeline(StandardScaler(), LinearRegressor()).fit(X, y), RankDeficientWarning),
    "grid search": (lambda X, y: GridSearchCV(LinearRegressor(), {"fit_intercept": [True]}, cv=2).fit(X, y),
                    RankDeficientWarning),
    "sgd at max_epochs": (lambda X, y: LinearRegressor(solver="sgd", max_epochs=2, random_state=0).fit(X, y),
                          ConvergenceWarning),
    "sgd stream at max_epochs": (lambda X, y: LinearRegressor(solver="sgd", max_epochs=2, random_state=0)
                                 .fit_stream([(X[:150], y[:150]), (X[150:], y[150:])]), ConvergenceWarning),
    "lsqr at max_iter": (lambda X, y: LinearRegressor(solver="lsqr", max_iter=1).fit(X, y), ConvergenceWarning),
    "newton at max_epochs": (lambda X, y: LinearRegressor(loss="huber", solver="newton", max_epochs=1)
                             .fit(X, y + 10 * np.sign(np.sin(np.arange(y.size))) ** 9), ConvergenceWarning),
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_warning_names_the_line_that_called_fastopt(case, rng):
    call, category = CASES[case]
    X, y = _dependent(rng)
    for w in _caught(lambda: call(X, y), category):
        assert w.filename == __file__, (w.filename, w.lineno)


def test_plateau_warning_before_any_cut_names_no_cut():
    # ("the rate was cut 0 times, to 0.842, and the last cut still lowered the loss": a cut that never happened)
    rng = np.random.default_rng(0)
    X = rng.normal(size=(500, 5))
    y = X @ rng.normal(size=5) + rng.normal(size=500)
    with pytest.warns(ConvergenceWarning) as caught:
        est = LinearRegressor(solver="sgd", max_epochs=1, random_state=0).fit(X, y)
    message = " ".join(str(w.message) for w in caught)
    assert f"the loss was still falling at the first rate, {est.learning_rate_:.3g}, never cut" in message
    assert "last cut" not in message


@pytest.mark.parametrize("solver", ["adam", "adamw", "rmsprop", "adagrad"])
def test_a_stalled_adaptive_fit_names_eps_above_the_gradients_scale(solver):
    # Targets of scale 1e-12 give gradients of that scale, below eps=1e-8 in the rule's denominator: the steps
    # shrank by about 1e4, default Adam ended 4,100 times above the optimum (281 times after 1,000 epochs), and
    # the warning advised more epochs only. It now names eps; with eps below the gradients' scale the fit
    # reaches the optimum as on targets of unit scale.
    rng = np.random.default_rng(0)
    X = rng.normal(size=(2000, 5))
    y = (X @ rng.normal(size=5) + 0.1 * rng.normal(size=2000)) * 1e-12
    with pytest.warns(ConvergenceWarning, match=r"eps=1e-08 exceeds the root of most coordinates' second-moment "
                                                r"estimate \(median [0-9.e-]+\).*lower eps \(below"):
        LinearRegressor(solver=solver, random_state=0).fit(X, y)
    with pytest.warns(ConvergenceWarning, match="eps=1e-08 exceeds"):  # streams: the same sentence
        LinearRegressor(solver=solver, random_state=0).fit_stream([(X[i : i + 500], y[i : i + 500])
                                                                   for i in range(0, 2000, 500)])
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        lowered = LinearRegressor(solver=solver, eps=1e-22, random_state=0).fit(X, y)
    best = LinearRegressor(solver="normal").fit(X, y)
    excess = np.mean((lowered.predict(X) - y) ** 2) / np.mean((best.predict(X) - y) ** 2) - 1
    assert excess < 1e-3  # as at unit scale (3.5e-5 to 8.5e-5 measured)
    with pytest.warns(ConvergenceWarning) as caught:  # a fit cut short at unit scale: no word of eps
        LinearRegressor(solver=solver, max_epochs=2, random_state=0).fit(X, y * 1e12)
    assert not any("eps=" in str(w.message) for w in caught)


def test_the_rank_warning_names_the_everyday_dependencies():
    # helper-143, helper-145: PolynomialFeatures' bias column and SplineTransformer's bases (which sum to 1) beside
    # the intercept warn on every fit, where the message named one-hot columns only
    from sklearn.preprocessing import SplineTransformer

    rng = np.random.default_rng(0)
    X = SplineTransformer(n_knots=5).fit_transform(rng.uniform(0, 10, size=(500, 2)))
    y = X @ rng.normal(size=X.shape[1]) + rng.normal(size=500)
    with pytest.warns(RankDeficientWarning, match=r"one-hot or spline columns, which sum to a constant, or a "
                                                  r"constant column, beside the intercept"):
        LinearRegressor().fit(X, y)
