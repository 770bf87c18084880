"""Least-squares problems with a known optimum, and the excess loss of a fit over it.

The convergence suite of the README ("Defaults that converge") draws its problems here, so that the tests and the
benchmark measure the same thing:

- ``X = Z diag(s) + 1 m^T``: ``Z`` Gaussian with covariance ``Q diag(lambda) Q^T`` (``Q`` a random rotation,
  ``lambda`` log-spaced from 1 down to ``1 / condition``, so ``condition`` is the condition number of the
  Hessian ``Z^T Z / n`` of the standardised problem, the number that sets a first-order method's speed);
  column scales ``s`` all 1 (standardised) or log-uniform on ``[1e-2, 1e2]`` (unstandardised), and column
  means ``m`` zero or, unstandardised with an intercept, ``s`` times a standard normal draw.
- ``y = X w + b + noise * sigma * e``: ``w`` standard normal in the units of ``X`` (a raw feature and its
  coefficient, as a user's data come), ``b = 3`` with an intercept, ``e`` standard normal, ``sigma`` the standard
  deviation of ``X w`` over the rows, so ``noise`` is the noise-to-signal ratio (0 makes the optimum exact).

The excess is relative: ``(L(w) - L*) / max(L*, NULL_FRACTION * L0)`` with ``L`` half the mean squared
residual on the training rows, ``L*`` its minimum (the closed form, in float64 by QR), and ``L0`` that of the
best constant model (``y``'s variance / 2 with an intercept, ``mean(y^2) / 2`` without). The floor
``NULL_FRACTION * L0`` makes a zero-noise problem's target ``L(w) <= 1e-3 * 1e-6 * L0``, that is
``R^2 >= 1 - 1e-9``: as close to an exact fit as a problem with noise of one thousandth of the signal's standard
deviation (whose ``L* = 1e-6 L0``) is asked to come to its optimum.
"""
from __future__ import annotations

import numpy as np

NULL_FRACTION = 1e-6
INTERCEPT = 3.0


def make_problem(n: int, d: int, *, condition: float = 1.0, scaled: bool = False, noise: float = 1.0,
                 intercept: bool = True, dtype=np.float64, seed: int = 0, scale_range: tuple | None = None,
                 noise_std: float | None = None):
    """``(X, y)`` as described in the module docstring.

    ``scale_range=(lo, hi)`` draws the column scales log-uniformly from it instead (without column means), and
    ``noise_std`` sets the noise's standard deviation directly instead of as a ratio to the signal's.
    """
    rng = np.random.default_rng(seed)
    lam = np.logspace(0.0, -np.log10(condition), d) if d > 1 else np.ones(1)
    Q, _ = np.linalg.qr(rng.standard_normal((d, d)))
    root = Q * np.sqrt(lam)  # Z = G root^T has covariance Q diag(lam) Q^T
    X = np.empty((n, d), dtype=dtype)
    s = 10.0 ** rng.uniform(-2.0, 2.0, d) if scaled else np.ones(d)
    if scale_range is not None:
        s = np.exp(rng.uniform(np.log(scale_range[0]), np.log(scale_range[1]), d))
    m = s * rng.standard_normal(d) if scaled and intercept else np.zeros(d)
    for start in range(0, n, 65_536):  # bounded temporaries for n = 1e6
        stop = min(start + 65_536, n)
        X[start:stop] = (rng.standard_normal((stop - start, d)) @ root.T) * s + m
    w = rng.standard_normal(d)
    signal = X @ w.astype(dtype)
    sigma = float(np.std(signal, dtype=np.float64)) if noise_std is None else 1.0
    noise = noise if noise_std is None else noise_std
    y = signal + (INTERCEPT if intercept else 0.0) + noise * sigma * rng.standard_normal(n)
    return X, y.astype(dtype)


def small_problem(n: int, d: int, seed: int):
    """``(X, y)`` of a small table of measurements: ``d`` columns with means and scales spread 0.5..3, a linear
    target with intercept ``INTERCEPT`` and noise of standard deviation 0.5 (the small-data suite of
    ``tests/test_convergence.py`` and ``bench/test_small_data.py``)."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d)) * rng.uniform(0.5, 3.0, size=d) + rng.normal(size=d)
    y = X @ rng.normal(size=d) + 0.5 * rng.normal(size=n) + INTERCEPT
    return X, y


def two_scale_targets(n: int = 5000, d: int = 10, seed: int = 0):
    """``(X, Y)`` with two targets 1e4 apart in scale: ``d`` columns of scales ``10^U(-1, 1)``, a unit-scale
    linear target with normal noise and one ``1e4`` times larger with Student-t noise (2 degrees of freedom), on
    which the plateau rule, judging their summed loss, leaves RMSProp's small target far from its optimum."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d)) * 10 ** rng.uniform(-1, 1, d)
    Y = np.column_stack([X @ rng.normal(size=d) + rng.normal(size=n),
                         1e4 * (X @ rng.normal(size=d) + rng.standard_t(2, size=n))])
    return X, Y


def scaled_stream(seed: int):
    """A stream of new rows from one distribution, for ``partial_fit`` on chunks never seen twice: a function of
    ``m`` drawing ``(X, y)``, ``m`` rows of six columns of scales ``10^U(-3, 3)`` (drawn once, with the
    coefficients ``w``), ``y = X w + 0.3 e + 2``."""
    rng = np.random.default_rng(seed)
    scales, w = 10.0 ** rng.uniform(-3, 3, size=6), rng.normal(size=6)

    def draw(m: int):
        X = rng.normal(size=(m, 6)) * scales
        return X, X @ w + 0.3 * rng.normal(size=m) + 2

    return draw


def half_mse(X, y, coef, intercept) -> float:
    """Half the mean squared residual, in float64."""
    r = X.astype(np.float64) @ np.asarray(coef, dtype=np.float64) + float(intercept) - y.astype(np.float64)
    return 0.5 * float(np.mean(r * r))


def optimum(X, y, fit_intercept: bool) -> float:
    """``L*``: half the smallest mean squared residual, from a float64 QR least-squares solve."""
    A = X.astype(np.float64)
    if fit_intercept:
        A = np.hstack([A, np.ones((A.shape[0], 1))])
    sol, *_ = np.linalg.lstsq(A, y.astype(np.float64), rcond=None)
    return half_mse(X, y, sol[: X.shape[1]], sol[X.shape[1]] if fit_intercept else 0.0)


def null_loss(y, fit_intercept: bool) -> float:
    y = y.astype(np.float64)
    return 0.5 * float(np.var(y) if fit_intercept else np.mean(y * y))


def relative_excess(estimator, X, y, L_star: float | None = None) -> float:
    """``(L(w) - L*) / max(L*, NULL_FRACTION * L0)`` of a fitted estimator on its training rows."""
    fit_intercept = bool(getattr(estimator, "fit_intercept", True))
    if L_star is None:
        L_star = optimum(X, y, fit_intercept)
    L = half_mse(X, y, np.ravel(estimator.coef_), np.ravel(estimator.intercept_)[0]
                 if np.ndim(estimator.intercept_) else estimator.intercept_)
    return (L - L_star) / max(L_star, NULL_FRACTION * null_loss(y, fit_intercept))
