"""Group "convergence: small data": default iterative fits on small tables, where an epoch is one to five steps.

A suite of 21 problems: 20 synthetic ones (20, 50, 100, 200 and 300 rows, 3-20 columns with means and scales
spread 0.5..3, an intercept, noise of half the unit signal scale; seeds 0-3) and scikit-learn's diabetes data
(442 rows, 10 columns, as shipped). Each row fits the whole suite once with one estimator's defaults and
records in extra_info, over the 21 fits, the median and largest relative excess training loss
(``(L - L*) / max(L*, 1e-6 L0)``, ``L*`` from a float64 QR solve), how many fits emitted a ConvergenceWarning and
the most epochs any took; the time is that of the 21 fits together. Rows: every fastopt rule (the plateau rule
in rounds of 32 steps; ``max_epochs="auto"``), ``SGDRegressor()`` and ``MLPRegressor(hidden_layer_sizes=(),
solver="adam")`` (a linear model trained by Adam, scikit-learn's defaults), and the closed form.

Run on its own::

    cd bench && python -m pytest test_small_data.py -q -p no:randomly --benchmark-json=OUT && python report.py OUT
"""
import itertools
import warnings

import numpy as np
import pytest
from sklearn.datasets import load_diabetes
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import SGDRegressor
from sklearn.neural_network import MLPRegressor

from fastopt import LinearRegressor
from fastopt._convergence import optimum, relative_excess, small_problem

RULES = ["sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adam", "adamw"]
SIZES = [(20, 3), (50, 5), (100, 10), (200, 5), (300, 20)]


@pytest.fixture(scope="module")
def suite():
    problems = [small_problem(n, d, seed) for seed, (n, d) in itertools.product(range(4), SIZES)]
    problems.append(load_diabetes(return_X_y=True))
    return [(X, y, optimum(X, y, True)) for X, y in problems]


class _Linear:
    """MLPRegressor without hidden layers as the attributes relative_excess reads."""

    def __init__(self, mlp):
        self.coef_, self.intercept_ = mlp.coefs_[0].ravel(), float(mlp.intercepts_[0][0])
        self.n_iter_ = mlp.n_iter_


def _run(benchmark, suite, make):
    benchmark.group = "convergence: small data"
    out = {}

    def fit_all():
        excess, warned, epochs = [], 0, 0
        for X, y, L_star in suite:
            with warnings.catch_warnings(record=True) as record:
                warnings.simplefilter("always")
                model = make().fit(X, y)
            warned += any(issubclass(w.category, ConvergenceWarning) for w in record)
            model = _Linear(model) if isinstance(model, MLPRegressor) else model
            excess.append(relative_excess(model, X, y, L_star))
            epochs = max(epochs, int(np.max(getattr(model, "n_iter_", 1))))
        out.update(excess=excess, warned=warned, epochs=epochs)

    benchmark.pedantic(fit_all, rounds=1, iterations=1, warmup_rounds=0)
    benchmark.extra_info["excess_median"] = float(f"{np.median(out['excess']):.3g}")
    benchmark.extra_info["excess_max"] = float(f"{np.max(out['excess']):.3g}")
    benchmark.extra_info["warned"] = out["warned"]
    benchmark.extra_info["max_epochs_run"] = out["epochs"]
    return out


def test_limit_closed_form(benchmark, suite):
    assert max(_run(benchmark, suite, LinearRegressor)["excess"]) <= 1e-9


@pytest.mark.parametrize("rule", RULES)
def test_fastopt(benchmark, suite, rule):
    _run(benchmark, suite, lambda: LinearRegressor(rule, random_state=0))


def test_sklearn_sgd_regressor(benchmark, suite):
    _run(benchmark, suite, lambda: SGDRegressor(random_state=0))


def test_sklearn_mlp_adam(benchmark, suite):
    _run(benchmark, suite, lambda: MLPRegressor(hidden_layer_sizes=(), solver="adam", random_state=0))
