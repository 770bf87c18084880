"""Non-negative least squares, ``positive=True``, by the closed form (block principal pivoting on its factor, then
Lawson-Hanson only where that fails), against scikit-learn's positive fits. Dense Gaussian rows, ``n = 5 d``,
``y = X beta + noise`` with ``beta`` Gaussian (about half the coefficients end at their bound), seeded.

Group "positive_ridge" (d = 2,000, ``alpha=1``; scikit-learn's ``Ridge(alpha=alpha * n, positive=True)``, which
runs L-BFGS-B under the bounds, minimises the same objective): the limit row is the Gram ``X^T X`` alone, which the
closed form must form; ``extra_info`` holds each fit's objective relative to the other's.

Group "positive" (d = 1,000, no ridge; ``LinearRegression(positive=True)`` runs SciPy's NNLS on ``X`` itself): the
limit row is again ``X^T X``.

Run alone: ``cd bench && python -m pytest test_positive.py -q -p no:randomly --benchmark-json=OUT && python
report.py OUT``.
"""
import numpy as np
import pytest
from sklearn.linear_model import LinearRegression, Ridge

from fastopt import LinearRegressor


def _data(d: int):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((5 * d, d))
    return X, X @ rng.standard_normal(d) + rng.standard_normal(5 * d)


@pytest.fixture(scope="module")
def wide():
    return _data(2000)


@pytest.fixture(scope="module")
def narrow():
    return _data(1000)


def _objective(X, y, est, alpha):
    r = X @ est.coef_ + est.intercept_ - y
    return 0.5 * float(np.mean(r * r)) + 0.5 * alpha * float(est.coef_ @ est.coef_)


def _ridge(X):
    """scikit-learn's positive ridge on the same objective as fastopt's ``alpha=1`` (its alpha scales with n)."""
    return Ridge(alpha=float(X.shape[0]), positive=True, solver="lbfgs", tol=1e-10, max_iter=100_000)


def _gram_limit(benchmark, X):
    benchmark.pedantic(lambda: X.T @ X, rounds=3, iterations=1, warmup_rounds=1)


def _fastopt_row(benchmark, X, y, alpha, ref, name):
    """fastopt's timed fit, with its objective relative to the reference estimator ``ref`` (fitted untimed)."""
    est = benchmark.pedantic(lambda: LinearRegressor(positive=True, alpha=alpha).fit(X, y), rounds=3, iterations=1)
    ours, theirs = _objective(X, y, est, alpha), _objective(X, y, ref.fit(X, y), alpha)
    benchmark.extra_info[f"objective_vs_{name}"] = f"{(ours - theirs) / theirs:.2e}"
    benchmark.extra_info["free_coefficients"] = int(np.count_nonzero(est.coef_))
    benchmark.extra_info["solver"] = est.solver_


@pytest.mark.benchmark(group="positive_ridge")
def test_limit_gram_ridge(benchmark, wide):
    _gram_limit(benchmark, wide[0])


@pytest.mark.benchmark(group="positive_ridge")
def test_fastopt_positive_ridge(benchmark, wide):
    _fastopt_row(benchmark, *wide, 1.0, _ridge(wide[0]), "ridge")


@pytest.mark.benchmark(group="positive_ridge")
def test_sklearn_ridge_positive(benchmark, wide):
    benchmark.pedantic(lambda: _ridge(wide[0]).fit(*wide), rounds=3, iterations=1)


@pytest.mark.benchmark(group="positive")
def test_limit_gram(benchmark, narrow):
    _gram_limit(benchmark, narrow[0])


@pytest.mark.benchmark(group="positive")
def test_fastopt_positive(benchmark, narrow):
    _fastopt_row(benchmark, *narrow, 0.0, LinearRegression(positive=True), "linear_regression")


@pytest.mark.benchmark(group="positive")
def test_sklearn_linear_regression_positive(benchmark, narrow):
    benchmark.pedantic(lambda: LinearRegression(positive=True).fit(*narrow), rounds=1, iterations=1)
