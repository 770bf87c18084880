"""Groups "robust sparse rescue" (the Huber loss) and "lad sparse rescue" (the absolute error): a robust loss on TF-IDF
rows where ``solver="auto"`` runs SGD (Newton's ``d^3`` factorisations, or the absolute error's smoothing stages,
cost more than a few SGD fits by its model) and SGD stops above the minimum, warned, so that Newton's method from
SGD's coefficients finishes the fit: 5,000 documents of 40 Zipf-distributed terms (exponent 1.1) from 1,000 (Huber)
or 300 (the absolute error: Newton's trial needs ``_solvers.RESCUE_MIN_PASSES_LAD`` passes within the budget),
``TfidfTransformer``'s rows (CSR, float64, seeded), a target of unit spread from every term plus 3 and Gaussian noise
of 0.5; epsilon 1.35, no ridge.

Rows (the report treats a name containing "limit" as the limit row, "fastopt" as fastopt's):

- ``limit_csr_products``: SciPy's ``X @ w`` and ``X^T v``, the products of one pass over the rows;
- ``fastopt``: ``LinearRegressor(loss=..., random_state=0)``: "auto"'s SGD fit, which warns here, finished by
  Newton's method from its coefficients (``solver_`` in extra_info, and the objective relative to Newton's from
  least squares);
- ``fastopt_sgd``: ``solver="sgd"`` (what "auto" returned before), its objective relative to Newton's;
- ``fastopt_newton``: ``solver="newton"`` from least squares;
- ``sklearn_huber_regressor`` (Huber only): ``HuberRegressor(epsilon=1.35, alpha=0)`` on the CSR rows, defaults
  otherwise; it also fits a scale, so its objective is reported at its own scale's threshold beside fastopt's fit at
  that threshold (``LinearRegressor(epsilon=1.35 * scale_)``), untimed.

Run alone: ``cd bench && python -m pytest test_robust_sparse_rescue.py -q -p no:randomly --benchmark-json=OUT &&
python report.py OUT``.
"""
import warnings

import numpy as np
import pytest
from conftest import tfidf_rows
from sklearn.linear_model import HuberRegressor

from fastopt import LinearRegressor
from fastopt.exceptions import ConvergenceWarning

N, TERMS, EPSILON = 5_000, 40, 1.35
CASES = {"huber": ("robust sparse rescue", 1_000), "absolute_error": ("lad sparse rescue", 300)}


@pytest.fixture(scope="module", params=list(CASES))
def case(request):
    """``(loss, X, y, newton)``: the rows, and Newton's fit from least squares (the minimiser)."""
    loss = request.param
    rng = np.random.default_rng(0)
    X = tfidf_rows(rng, N, CASES[loss][1], TERMS)
    signal = X @ rng.standard_normal(X.shape[1])
    y = signal / signal.std() + 3.0 + 0.5 * rng.standard_normal(N)
    return loss, X, y, LinearRegressor(loss=loss, solver="newton").fit(X, y)


def objective(loss, X, y, est, eps=EPSILON) -> float:
    r = X @ est.coef_ + est.intercept_ - y
    a = np.abs(r)
    if loss == "absolute_error":
        return float(np.mean(a))
    return float(np.mean(np.where(a <= eps, 0.5 * r * r, eps * (a - 0.5 * eps))))


def test_limit_csr_products(benchmark, record, case):
    loss, X, y, _ = case
    benchmark.group = CASES[loss][0]
    w = np.ones(X.shape[1])
    record(lambda X, y: X.T @ (X @ w - y), X, y)


def test_fastopt(benchmark, record, case):
    loss, X, y, newton = case
    benchmark.group = CASES[loss][0]
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)  # finished: no warning
        est = LinearRegressor(loss=loss, random_state=0).fit(X, y)
    best = objective(loss, X, y, newton)
    benchmark.extra_info["solver_"] = est.solver_
    benchmark.extra_info["objective_vs_newton"] = f"{(objective(loss, X, y, est) - best) / best:.2e}"
    record(lambda X, y: LinearRegressor(loss=loss, random_state=0).fit(X, y), X, y)


def test_fastopt_sgd(benchmark, case):
    loss, X, y, newton = case
    benchmark.group = CASES[loss][0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # its plateau warning: reported as the excess
        est = benchmark.pedantic(lambda: LinearRegressor(loss=loss, solver="sgd", random_state=0).fit(X, y),
                                 rounds=3, iterations=1)
    best = objective(loss, X, y, newton)
    benchmark.extra_info["objective_vs_newton"] = f"{(objective(loss, X, y, est) - best) / best:.2e}"
    benchmark.extra_info["n_iter"] = est.n_iter_


def test_fastopt_newton(benchmark, case):
    loss, X, y, _ = case
    benchmark.group = CASES[loss][0]
    est = benchmark.pedantic(lambda: LinearRegressor(loss=loss, solver="newton").fit(X, y), rounds=3, iterations=1)
    benchmark.extra_info["n_iter"] = est.n_iter_


def test_sklearn_huber_regressor(benchmark, case):
    loss, X, y, _ = case
    if loss != "huber":
        pytest.skip("HuberRegressor fits the Huber loss only")
    benchmark.group = CASES[loss][0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # lbfgs's iteration limit: its objective is reported as it is
        est = benchmark.pedantic(lambda: HuberRegressor(epsilon=EPSILON, alpha=0.0).fit(X, y), rounds=1,
                                 iterations=1)
    eps = EPSILON * est.scale_
    ours = LinearRegressor(loss="huber", epsilon=eps, solver="newton").fit(X, y)
    theirs, best = objective(loss, X, y, est, eps), objective(loss, X, y, ours, eps)
    benchmark.extra_info["objective_vs_fastopt_at_its_scale"] = f"{(theirs - best) / best:.2e}"
