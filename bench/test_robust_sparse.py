"""Group "robust sparse": exact robust fits of a ``ColumnTransformer``'s CSR output, the design
``onehot_sparse_narrow`` of ``test_designs.py`` (200,000 rows, one-hot columns of 300, 150 and 40 levels beside 3
Gaussian columns, d = 493), with Student-t noise (2 degrees of freedom) and 5% of the rows shifted by +50 (seeded).

Rows (the report treats a name containing "limit" as the limit row, "fastopt" as fastopt's):

- ``limit_csr_products``: SciPy's ``X @ w`` and ``X^T v``, the products of one Newton pass;
- ``fastopt``: ``LinearRegressor(loss="huber")``, which ``solver="auto"`` fits by Newton's method on the CSR rows
  (before, by SGD), with epsilon = 1.35 * the scale HuberRegressor fits, so both minimise the same objective at
  that scale; extra_info has the objective relative to HuberRegressor's and ``n_iter``;
- ``fastopt_sgd``: ``LinearRegressor(loss="huber", solver="sgd")`` (what "auto" ran on sparse X before), its
  objective relative to fastopt's Newton fit;
- ``fastopt_newton_densified``: the Newton fit of ``X.toarray()`` (one round), its predictions against the CSR
  fit's (the coefficients of one-hot columns beside an intercept are not unique);
- ``fastopt_absolute_error``: ``LinearRegressor(loss="absolute_error", solver="newton")`` on the CSR rows (one
  round; "auto" fits the absolute error on sparse X by SGD, whose cost its smoothing stages exceed);
- ``sklearn_huber_regressor``: ``HuberRegressor(epsilon=1.35, alpha=0)`` on the CSR rows, defaults otherwise
  (one round).

Run alone: ``cd bench && python -m pytest test_robust_sparse.py -q -p no:randomly --benchmark-json=OUT && python
report.py OUT``.
"""
import warnings

import numpy as np
import pytest
from sklearn.linear_model import HuberRegressor
from test_designs import make_design

from fastopt import LinearRegressor

pytestmark = pytest.mark.benchmark(group="robust sparse")


@pytest.fixture(scope="module")
def data():
    X, _, _ = make_design("onehot_sparse_narrow")
    rng = np.random.default_rng(1)
    y = X @ rng.normal(size=X.shape[1]) + rng.standard_t(2, size=X.shape[0])
    y[rng.random(X.shape[0]) < 0.05] += 50.0
    return X, y


@pytest.fixture(scope="module")
def huber_scale(data):
    """HuberRegressor's fit (once, untimed): its scale fixes fastopt's threshold."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # lbfgs's iteration limit: its objective is reported as it is
        return HuberRegressor(epsilon=1.35, alpha=0.0).fit(*data)


def huber_objective(X, y, coef, intercept, eps):
    r = X @ coef + intercept - y
    a = np.abs(r)
    return float(np.mean(np.where(a <= eps, 0.5 * r * r, eps * (a - 0.5 * eps))))


def test_limit_csr_products(record, data):
    X, y = data
    w = np.ones(X.shape[1])
    record(lambda X, y: X.T @ (X @ w - y), X, y)


@pytest.fixture(scope="module")
def newton(data, huber_scale):
    return LinearRegressor(loss="huber", epsilon=1.35 * huber_scale.scale_).fit(*data)


def test_fastopt(benchmark, record, data, huber_scale, newton):
    X, y = data
    eps = 1.35 * huber_scale.scale_
    assert newton.solver_ == "newton"
    ours = huber_objective(X, y, newton.coef_, newton.intercept_, eps)
    theirs = huber_objective(X, y, huber_scale.coef_, huber_scale.intercept_, eps)
    benchmark.extra_info["objective_vs_huberregressor"] = f"{(ours - theirs) / theirs:.2e}"
    benchmark.extra_info["n_iter"] = newton.n_iter_
    record(lambda X, y: LinearRegressor(loss="huber", epsilon=eps).fit(X, y), X, y)


def test_fastopt_sgd(benchmark, data, huber_scale, newton):
    X, y = data
    eps = 1.35 * huber_scale.scale_
    est = benchmark.pedantic(lambda: LinearRegressor(loss="huber", epsilon=eps, solver="sgd", random_state=0)
                             .fit(X, y), rounds=3, iterations=1)
    best = huber_objective(X, y, newton.coef_, newton.intercept_, eps)
    excess = (huber_objective(X, y, est.coef_, est.intercept_, eps) - best) / best
    benchmark.extra_info["objective_vs_newton"] = f"{excess:.2e}"
    benchmark.extra_info["n_iter"] = est.n_iter_


def test_fastopt_newton_densified(benchmark, data, huber_scale, newton):
    X, y = data
    dense = X.toarray()
    eps = 1.35 * huber_scale.scale_
    est = benchmark.pedantic(lambda: LinearRegressor(loss="huber", epsilon=eps).fit(dense, y), rounds=1,
                             iterations=1)
    # (one-hot columns beside an intercept: the minimiser's coefficients are not unique, its predictions are)
    diff = np.max(np.abs(est.predict(dense) - newton.predict(X))) / np.std(y)
    benchmark.extra_info["max_prediction_diff_vs_csr_over_std_y"] = f"{diff:.1e}"


def test_fastopt_absolute_error(benchmark, data):
    X, y = data
    est = benchmark.pedantic(lambda: LinearRegressor(loss="absolute_error", solver="newton").fit(X, y), rounds=1,
                             iterations=1)
    benchmark.extra_info["objective"] = float(np.mean(np.abs(X @ est.coef_ + est.intercept_ - y)))
    benchmark.extra_info["n_iter"] = est.n_iter_


def test_sklearn_huber_regressor(benchmark, data):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        benchmark.pedantic(lambda: HuberRegressor(epsilon=1.35, alpha=0.0).fit(*data), rounds=1, iterations=1)
