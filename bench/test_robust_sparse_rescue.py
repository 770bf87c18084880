"""Group "robust sparse rescue": the Huber loss on TF-IDF rows where ``solver="auto"`` runs SGD (Newton's ``d^3``
factorisations cost more than a few SGD fits by its model) and SGD stops above the minimum, warned: 5,000 documents
of 40 Zipf-distributed terms (exponent 1.1) from 1,000, ``TfidfTransformer``'s rows (CSR, float64, seeded), a target
of unit spread from every term plus 3 and Gaussian noise of 0.5; epsilon 1.35, no ridge.

Rows (the report treats a name containing "limit" as the limit row, "fastopt" as fastopt's):

- ``limit_csr_products``: SciPy's ``X @ w`` and ``X^T v``, the products of one pass over the rows;
- ``fastopt``: ``LinearRegressor(loss="huber", random_state=0)``: "auto"'s SGD fit, which warns here, finished by
  Newton's method from its coefficients (``solver_`` in extra_info, and the objective relative to Newton's from
  least squares);
- ``fastopt_sgd``: ``solver="sgd"`` (what "auto" returned before), its objective relative to Newton's;
- ``fastopt_newton``: ``solver="newton"`` from least squares;
- ``sklearn_huber_regressor``: ``HuberRegressor(epsilon=1.35, alpha=0)`` on the CSR rows, defaults otherwise; it
  also fits a scale, so its objective is reported at its own scale's threshold beside fastopt's fit at that
  threshold (``LinearRegressor(epsilon=1.35 * scale_)``), untimed.

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

pytestmark = pytest.mark.benchmark(group="robust sparse rescue")
N, D, TERMS, EPSILON = 5_000, 1_000, 40, 1.35


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    X = tfidf_rows(rng, N, D, TERMS)
    signal = X @ rng.standard_normal(D)
    y = signal / signal.std() + 3.0 + 0.5 * rng.standard_normal(N)
    return X, y


def huber_objective(X, y, est, eps=EPSILON) -> float:
    r = X @ est.coef_ + est.intercept_ - y
    a = np.abs(r)
    return float(np.mean(np.where(a <= eps, 0.5 * r * r, eps * (a - 0.5 * eps))))


@pytest.fixture(scope="module")
def newton(data):
    return LinearRegressor(loss="huber", solver="newton").fit(*data)


def test_limit_csr_products(record, data):
    X, y = data
    w = np.ones(X.shape[1])
    record(lambda X, y: X.T @ (X @ w - y), X, y)


def test_fastopt(benchmark, record, data, newton):
    X, y = data
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)  # finished: no warning
        est = LinearRegressor(loss="huber", random_state=0).fit(X, y)
    best = huber_objective(X, y, newton)
    benchmark.extra_info["solver_"] = est.solver_
    benchmark.extra_info["objective_vs_newton"] = f"{(huber_objective(X, y, est) - best) / best:.2e}"
    record(lambda X, y: LinearRegressor(loss="huber", random_state=0).fit(X, y), X, y)


def test_fastopt_sgd(benchmark, data, newton):
    X, y = data
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # its plateau warning: reported as the excess
        est = benchmark.pedantic(lambda: LinearRegressor(loss="huber", solver="sgd", random_state=0).fit(X, y),
                                 rounds=3, iterations=1)
    best = huber_objective(X, y, newton)
    benchmark.extra_info["objective_vs_newton"] = f"{(huber_objective(X, y, est) - best) / best:.2e}"
    benchmark.extra_info["n_iter"] = est.n_iter_


def test_fastopt_newton(benchmark, data):
    X, y = data
    est = benchmark.pedantic(lambda: LinearRegressor(loss="huber", solver="newton").fit(X, y), rounds=3,
                             iterations=1)
    benchmark.extra_info["n_iter"] = est.n_iter_


def test_sklearn_huber_regressor(benchmark, data):
    X, y = data
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # lbfgs's iteration limit: its objective is reported as it is
        est = benchmark.pedantic(lambda: HuberRegressor(epsilon=EPSILON, alpha=0.0).fit(X, y), rounds=1,
                                 iterations=1)
    eps = EPSILON * est.scale_
    ours = LinearRegressor(loss="huber", epsilon=eps, solver="newton").fit(X, y)
    theirs, best = huber_objective(X, y, est, eps), huber_objective(X, y, ours, eps)
    benchmark.extra_info["objective_vs_fastopt_at_its_scale"] = f"{(theirs - best) / best:.2e}"
