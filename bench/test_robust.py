"""Group "robust": exact robust fits of n = 1,000,000, d = 100, float64, with 5% gross outliers (seeded), against
the limit of one BLAS pass computing X^T X.

Rows (the report treats a name containing "limit" as the limit row, "fastopt" as fastopt's):

- ``fastopt``: ``LinearRegressor(loss="huber")`` (solver="auto" is Newton), epsilon = 1.35 * the scale
  HuberRegressor fits, so both minimise the same objective at that scale; extra_info has the objective relative
  to HuberRegressor's and a bound on the gap to the minimum (the Newton decrement at the fit, relative).
- ``sklearn_huber_regressor``: ``HuberRegressor(epsilon=1.35, alpha=0)``, defaults otherwise (one round).
- ``fastopt_absolute_error``: ``LinearRegressor(loss="absolute_error")`` on all rows.
- ``*_subsample``: fastopt and ``QuantileRegressor(quantile=0.5, alpha=0, solver="highs")`` on the first
  ``SUB`` rows (HiGHS needs minutes beyond that: 26 s at 5,000 rows and 490 s at 20,000 on a loaded machine),
  with their objectives (equal to 1e-10 when both are exact). extra_info ``linear_scaled_to_n_s`` multiplies the
  QuantileRegressor time by n / SUB, a lower bound of its time on all rows (it grows faster than linearly),
  to set against ``fastopt_absolute_error``.

Group "robust_ridge": the absolute error on 2,000 x 5 Gaussian rows with Cauchy noise, ``alpha=1e-4``
(``fastopt_absolute_error_ridge_small``) against the same fit without the ridge (the limit row).

Run alone: ``cd bench && python -m pytest test_robust.py -q -p no:randomly --benchmark-json=OUT && python report.py
OUT``.
"""
import numpy as np
import pytest
from conftest import median_seconds
from sklearn.linear_model import HuberRegressor, QuantileRegressor

from fastopt import LinearRegressor

pytestmark = pytest.mark.benchmark(group="robust")
N, D, SUB = 1_000_000, 100, 5_000


@pytest.fixture(scope="session")
def robust_data():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((N, D))
    y = X @ rng.standard_normal(D) + rng.standard_normal(N)
    bad = rng.random(N) < 0.05
    y[bad] += 100.0 * rng.standard_normal(int(bad.sum()))
    return X, y


@pytest.fixture(scope="session")
def huber_scale(robust_data):
    """HuberRegressor's fit (once, untimed): its scale fixes fastopt's threshold."""
    return HuberRegressor(epsilon=1.35, alpha=0.0).fit(*robust_data)


def huber_objective(X, y, coef, intercept, eps):
    r = X @ coef + intercept - y
    a = np.abs(r)
    return float(np.mean(np.where(a <= eps, 0.5 * r * r, eps * (a - 0.5 * eps))))


def decrement_bound(X, y, coef, intercept, eps):
    """The Newton decrement g^T H^-1 g / 2 at the fit relative to the objective: the objective decrease a
    Newton step predicts, i.e. (once the inlier set is right, as it is here) the gap to the minimum."""
    r = X @ coef + intercept - y
    inl = np.abs(r) <= eps
    A = np.hstack([X[inl], np.ones((int(inl.sum()), 1))])
    g = np.append(X.T @ np.clip(r, -eps, eps), np.clip(r, -eps, eps).sum()) / len(y)
    H = A.T @ A / len(y)
    return float(g @ np.linalg.solve(H, g)) / 2 / huber_objective(X, y, coef, intercept, eps)


def test_limit_xtx(record, robust_data):
    record(lambda X, y: X.T @ X, *robust_data)


def test_fastopt(benchmark, record, robust_data, huber_scale):
    X, y = robust_data
    eps = 1.35 * huber_scale.scale_
    est = LinearRegressor(loss="huber", epsilon=eps).fit(X, y)
    ours = huber_objective(X, y, est.coef_, est.intercept_, eps)
    theirs = huber_objective(X, y, huber_scale.coef_, huber_scale.intercept_, eps)
    benchmark.extra_info["objective_vs_huberregressor"] = f"{(ours - theirs) / theirs:.2e}"
    benchmark.extra_info["gap_bound"] = f"{decrement_bound(X, y, est.coef_, est.intercept_, eps):.1e}"
    benchmark.extra_info["n_iter"] = est.n_iter_
    record(lambda X, y: LinearRegressor(loss="huber", epsilon=eps).fit(X, y), X, y)


def test_sklearn_huber_regressor(benchmark, robust_data):
    benchmark.pedantic(lambda: HuberRegressor(epsilon=1.35, alpha=0.0).fit(*robust_data), rounds=1, iterations=1)


def test_fastopt_absolute_error(benchmark, robust_data):
    X, y = robust_data
    est = benchmark.pedantic(lambda: LinearRegressor(loss="absolute_error").fit(X, y), rounds=1, iterations=1)
    benchmark.extra_info["objective"] = float(np.mean(np.abs(X @ est.coef_ + est.intercept_ - y)))
    benchmark.extra_info["n_iter"] = est.n_iter_


def test_fastopt_absolute_error_subsample(benchmark, robust_data):
    X, y = robust_data[0][:SUB], robust_data[1][:SUB]
    est = benchmark.pedantic(lambda: LinearRegressor(loss="absolute_error").fit(X, y), rounds=3, iterations=1)
    benchmark.extra_info["objective"] = float(np.mean(np.abs(X @ est.coef_ + est.intercept_ - y)))


def test_sklearn_quantile_regressor_subsample(benchmark, robust_data):
    X, y = robust_data[0][:SUB], robust_data[1][:SUB]
    est = benchmark.pedantic(lambda: QuantileRegressor(quantile=0.5, alpha=0.0, solver="highs").fit(X, y),
                             rounds=1, iterations=1)
    benchmark.extra_info["objective"] = float(np.mean(np.abs(X @ est.coef_ + est.intercept_ - y)))
    if (seconds := median_seconds(benchmark)) is not None:  # (None under --benchmark-disable: untimed)
        benchmark.extra_info["linear_scaled_to_n_s"] = round(seconds * N / SUB, 1)


@pytest.fixture(scope="module")
def cauchy_small():
    """2,000 rows of 5 Gaussian columns, Cauchy noise (seeded): the absolute error's stages under a small ridge."""
    rng = np.random.default_rng(0)
    X = rng.standard_normal((2000, 5))
    return X, X @ np.arange(1.0, 6.0) + rng.standard_cauchy(2000)


@pytest.mark.benchmark(group="robust_ridge")
def test_limit_absolute_error_without_ridge_small(benchmark, cauchy_small):
    """The same fit without the ridge: the stages' limits are square (no degenerate-limit solves)."""
    benchmark(lambda: LinearRegressor(loss="absolute_error").fit(*cauchy_small))


@pytest.mark.benchmark(group="robust_ridge")
def test_fastopt_absolute_error_ridge_small(benchmark, cauchy_small):
    """``alpha=1e-4``: each stage with more rows inside than parameters first asks least squares over those rows
    whether they can be fitted at all (the (p + m)-square solve it had taken to find out cost 10-30x the fit)."""
    est = benchmark(lambda: LinearRegressor(loss="absolute_error", alpha=1e-4).fit(*cauchy_small))
    benchmark.extra_info["n_iter"] = int(est.n_iter_)
