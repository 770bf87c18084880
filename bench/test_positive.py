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


@pytest.mark.benchmark(group="positive_ridge")
def test_limit_gram_ridge(benchmark, wide):
    X, _ = wide
    benchmark.pedantic(lambda: X.T @ X, rounds=3, iterations=1, warmup_rounds=1)


@pytest.mark.benchmark(group="positive_ridge")
def test_fastopt_positive_ridge(benchmark, wide):
    X, y = wide
    est = benchmark.pedantic(lambda: LinearRegressor(positive=True, alpha=1.0).fit(X, y), rounds=3, iterations=1)
    ref = Ridge(alpha=float(X.shape[0]), positive=True, solver="lbfgs", tol=1e-10, max_iter=100_000).fit(X, y)
    ours, theirs = _objective(X, y, est, 1.0), _objective(X, y, ref, 1.0)
    benchmark.extra_info["objective_vs_ridge"] = f"{(ours - theirs) / theirs:.2e}"
    benchmark.extra_info["free_coefficients"] = int(np.count_nonzero(est.coef_))
    benchmark.extra_info["solver"] = est.solver_


@pytest.mark.benchmark(group="positive_ridge")
def test_sklearn_ridge_positive(benchmark, wide):
    X, y = wide
    benchmark.pedantic(lambda: Ridge(alpha=float(X.shape[0]), positive=True, solver="lbfgs", tol=1e-10,
                                     max_iter=100_000).fit(X, y), rounds=3, iterations=1)


@pytest.mark.benchmark(group="positive")
def test_limit_gram(benchmark, narrow):
    X, _ = narrow
    benchmark.pedantic(lambda: X.T @ X, rounds=3, iterations=1, warmup_rounds=1)


@pytest.mark.benchmark(group="positive")
def test_fastopt_positive(benchmark, narrow):
    X, y = narrow
    est = benchmark.pedantic(lambda: LinearRegressor(positive=True).fit(X, y), rounds=3, iterations=1)
    ref = LinearRegression(positive=True).fit(X, y)
    ours, theirs = _objective(X, y, est, 0.0), _objective(X, y, ref, 0.0)
    benchmark.extra_info["objective_vs_linear_regression"] = f"{(ours - theirs) / theirs:.2e}"
    benchmark.extra_info["solver"] = est.solver_


@pytest.mark.benchmark(group="positive")
def test_sklearn_linear_regression_positive(benchmark, narrow):
    benchmark.pedantic(lambda: LinearRegression(positive=True).fit(*narrow), rounds=1, iterations=1)
