"""Fewer rows than columns, dense: the closed form's kernel form (the ``m x m`` system of the rows,
``solver_="kernel_cholesky"``) against scikit-learn on the same problem. Seeded.

Group "wide_ridge": 1,000 rows of ``PolynomialFeatures(2)`` of 50 standardised uniform inputs (1,326 columns, the
bias column included), ``alpha=1e-3``; scikit-learn's ``Ridge(alpha=alpha * n, solver="cholesky")`` solves the
same system of the rows there. The limit row is that system's product ``X X^T`` alone.

Group "wide_lstsq": 500 x 3,000 Gaussian rows, no ridge; ``LinearRegression`` (LAPACK ``gelsd`` on the centred
rows) gives the same minimum-norm solution. The limit row is again ``X X^T``.

``extra_info`` holds the largest difference of the predictions on the training rows relative to ``std(y)``.

Run alone: ``cd bench && python -m pytest test_wide.py -q -p no:randomly --benchmark-json=OUT && python report.py
OUT``.
"""
import warnings

import numpy as np
import pytest
from sklearn.linear_model import LinearRegression, Ridge
from sklearn.preprocessing import PolynomialFeatures, StandardScaler

from fastopt import LinearRegressor
from fastopt.exceptions import RankDeficientWarning

ALPHA = 1e-3


@pytest.fixture(scope="module")
def quadratic():
    rng = np.random.default_rng(0)
    Z = StandardScaler().fit_transform(rng.uniform(0, 100, size=(1000, 50)))
    return PolynomialFeatures(2).fit_transform(Z), np.sin(Z[:, 0]) + Z[:, 1] ** 2 + 0.3 * rng.normal(size=1000)


@pytest.fixture(scope="module")
def gaussian():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((500, 3000))
    return X, X[:, :10].sum(axis=1) + rng.standard_normal(500)


def _fastopt(benchmark, X, y, alpha, ref):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RankDeficientWarning)  # (alpha=0 on fewer rows than columns: qualified)
        est = benchmark.pedantic(lambda: LinearRegressor(alpha=alpha).fit(X, y), rounds=5, iterations=1,
                                 warmup_rounds=1)
    gap = np.abs(est.predict(X) - ref.fit(X, y).predict(X)).max() / y.std()
    benchmark.extra_info["max_prediction_gap_over_std_y"] = f"{gap:.1e}"
    benchmark.extra_info["solver"] = est.solver_


def _limit(benchmark, X):
    benchmark.pedantic(lambda: X @ X.T, rounds=5, iterations=1, warmup_rounds=1)


@pytest.mark.benchmark(group="wide_ridge")
def test_limit_rows_product_ridge(benchmark, quadratic):
    _limit(benchmark, quadratic[0])


@pytest.mark.benchmark(group="wide_ridge")
def test_fastopt_wide_ridge(benchmark, quadratic):
    X, y = quadratic
    _fastopt(benchmark, X, y, ALPHA, Ridge(alpha=ALPHA * X.shape[0], solver="cholesky"))


@pytest.mark.benchmark(group="wide_ridge")
def test_sklearn_ridge_cholesky(benchmark, quadratic):
    X, y = quadratic
    benchmark.pedantic(lambda: Ridge(alpha=ALPHA * X.shape[0], solver="cholesky").fit(X, y), rounds=5,
                       iterations=1, warmup_rounds=1)


@pytest.mark.benchmark(group="wide_lstsq")
def test_limit_rows_product_lstsq(benchmark, gaussian):
    _limit(benchmark, gaussian[0])


@pytest.mark.benchmark(group="wide_lstsq")
def test_fastopt_wide_lstsq(benchmark, gaussian):
    _fastopt(benchmark, *gaussian, 0.0, LinearRegression())


@pytest.mark.benchmark(group="wide_lstsq")
def test_sklearn_linear_regression(benchmark, gaussian):
    benchmark.pedantic(lambda: LinearRegression().fit(*gaussian), rounds=5, iterations=1, warmup_rounds=1)
