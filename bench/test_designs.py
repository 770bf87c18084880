"""Group "designs <name>": one least-squares fit of the designs real pipelines produce, against the limit of one
BLAS pass computing X^T X of the same matrix. Each design is generated from a fixed seed:

* ``poly``: ``PolynomialFeatures(3, include_bias=False)`` of 8 uniform features, n = 200,000 (d = 164);
* ``onehot``: one-hot columns of 4 categorical features with 50 levels each plus 20 Gaussian columns, n = 200,000,
  fitted with an intercept (d = 220, rank 216: the dummy-variable trap);
* ``gauss_qr``: Gaussian, n = 1,000,000, d = 100, ``solver="qr"``;
* ``wide``: Gaussian, n = 50,000, d = 2,000.

Run on its own: ``cd bench && python -m pytest test_designs.py -q -p no:randomly --benchmark-json=OUT &&
python report.py OUT``. Each design is made once (a module-scoped fixture, so pytest runs a design's rows
together and frees it before the next).
"""
import warnings

import numpy as np
import pytest
from sklearn.linear_model import LinearRegression, Ridge
from sklearn.preprocessing import OneHotEncoder, PolynomialFeatures

from fastopt import LinearRegressor
from fastopt.exceptions import RankDeficientWarning

DESIGNS = ["poly", "onehot", "gauss_qr", "wide"]


def make_design(name: str, seed: int = 0):
    """``(X, y, fastopt_params)`` of one design, C-contiguous float64."""
    rng = np.random.default_rng(seed)
    if name == "poly":
        X = PolynomialFeatures(3, include_bias=False).fit_transform(rng.uniform(size=(200_000, 8)))
        params = {}
    elif name == "onehot":
        levels = rng.integers(0, 50, size=(200_000, 4))
        dummies = OneHotEncoder(sparse_output=False).fit_transform(levels)
        X = np.hstack([dummies, rng.standard_normal((200_000, 20))])
        params = {}
    elif name == "gauss_qr":
        X = rng.standard_normal((1_000_000, 100))
        params = {"solver": "qr"}
    elif name == "wide":
        X = rng.standard_normal((50_000, 2_000))
        params = {}
    else:
        raise ValueError(name)
    X = np.ascontiguousarray(X)
    y = X @ rng.standard_normal(X.shape[1]) + rng.standard_normal(X.shape[0])
    return X, y, params


@pytest.fixture(scope="module", params=DESIGNS)
def design(request):
    return request.param, *make_design(request.param)


@pytest.fixture
def grouped(benchmark, design):
    benchmark.group = f"designs {design[0]}"
    return design[1:]


def test_limit_xtx(record, grouped):
    X, y, _ = grouped
    record(lambda X, y: X.T @ X, X, y)


def test_fastopt(record, grouped, benchmark):
    X, y, params = grouped

    def fit(X, y):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RankDeficientWarning)  # the one-hot design is rank-deficient
            est = LinearRegressor(**params).fit(X, y)
        benchmark.extra_info["solver_"] = est.solver_
        return est

    record(fit, X, y)


def test_sklearn_linear_regression(record, grouped):
    X, y, _ = grouped
    record(lambda X, y: LinearRegression().fit(X, y), X, y, rounds=2)


def test_sklearn_ridge_cholesky(record, grouped):
    X, y, _ = grouped
    record(lambda X, y: Ridge(alpha=1e-8, solver="cholesky").fit(X, y), X, y)
