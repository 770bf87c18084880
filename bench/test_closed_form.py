"""Group "closed-form": one least-squares fit of n = 1e6, d = 100, float64, against the limit of one BLAS
pass computing X^T X. Row names: the report treats a name containing "limit" as the limit row and one
containing "fastopt" as fastopt's."""
import numpy as np
import pytest
from sklearn.linear_model import LinearRegression, Ridge

from fastopt import LinearRegressor

pytestmark = pytest.mark.benchmark(group="closed-form")


def test_limit_xtx(record, closed_form_data):
    record(lambda X, y: X.T @ X, *closed_form_data)


def test_fastopt(record, closed_form_data):
    record(lambda X, y: LinearRegressor().fit(X, y), *closed_form_data)


def test_sklearn_linear_regression(record, closed_form_data):
    record(lambda X, y: LinearRegression().fit(X, y), *closed_form_data, rounds=2)


def test_sklearn_ridge_cholesky(record, closed_form_data):
    record(lambda X, y: Ridge(solver="cholesky", alpha=1e-6).fit(X, y), *closed_form_data)


def test_numpy_lstsq(record, closed_form_data):
    record(lambda X, y: np.linalg.lstsq(X, y, rcond=None), *closed_form_data, rounds=2)
