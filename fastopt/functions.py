"""Test functions for optimizers, each with its gradient, its Hessian and its known critical points.

Every function here is an :class:`Objective`: a small frozen record holding the value, gradient and Hessian as
vectorised NumPy callables, the plotting domain of the figures of Zhang et al., *Dive into Deep Learning*, sec. 12.1, a
default start and the complete list of critical points inside that domain (found by multi-start root finding of the
gradient and refined to 40 digits with mpmath; ``tests/test_functions.py`` re-checks each one).

Vectorised convention: the coordinates are on the *first* axis. ``fun(x)`` takes ``x`` of shape
``(ndim, *batch)`` and returns shape ``batch``; ``grad`` returns ``(ndim, *batch)`` and ``hess``
``(ndim, ndim, *batch)``. A single point is ``x`` of shape ``(ndim,)``, which is what
:func:`fastopt.minimize` passes, so ``minimize(obj.fun, obj.x0, jac=obj.grad)`` works as is, and
``obj.fun(np.stack([X, Y]))`` evaluates a whole contour grid at once.

Examples
--------
>>> from fastopt import functions
>>> rb = functions.get("rosenbrock")
>>> float(rb.fun(rb.global_minimum.x))
0.0
>>> [p.kind for p in functions.get("himmelblau").critical_points].count("saddle")
4
"""
from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

KINDS = ("minimum", "maximum", "saddle")


@dataclass(frozen=True)
class KnownPoint:
    """A known critical point of an :class:`Objective`.

    A frozen record; its fields are stored as given (no check), each as the read-only attribute of the same name.

    Parameters
    ----------
    x : tuple of float
        Location, accurate to double precision.
    kind : {"minimum", "maximum", "saddle"}
        What the point is. ``x**3`` at 0 is a "saddle" in the sense of Zhang et al. (*Dive into Deep Learning*, sec.
        12.1) (the gradient vanishes and it is neither a minimum nor a maximum) although its Hessian is singular.
    value : float
        The function value at ``x``.

    Attributes
    ----------
    x : tuple of float
        Location, accurate to double precision.
    kind : str
        One of "minimum", "maximum", "saddle".
    value : float
        The function value at ``x``.
    """

    x: tuple[float, ...]
    kind: str
    value: float


@dataclass(frozen=True, eq=False)
class Objective:
    """A test function with derivatives, a domain and its known critical points.

    A frozen record; its fields are stored as given (no check), each as the read-only attribute of the same name.
    Calling the objective, ``obj(x)``, is ``obj.fun(np.asarray(x))``.

    Parameters
    ----------
    name : str
        Registry key, e.g. ``"rosenbrock"``.
    formula : str
        The definition in plain text (used as a plot title).
    fun, grad, hess : callable
        Value, gradient and Hessian, vectorised over trailing axes (see the module docstring).
    bounds : tuple of (float, float)
        The domain, one ``(low, high)`` pair per coordinate; plots and critical-point searches use it.
    x0 : tuple of float
        A default start, chosen so that the optimizers have something to show.
    critical_points : tuple of KnownPoint
        Every critical point inside ``bounds``, sorted by value.
    description : str, default ""
        One sentence on why the function is interesting.

    Attributes
    ----------
    name, formula, fun, grad, hess, bounds, x0, critical_points, description
        The parameters, as given.
    ndim : int
        Number of coordinates, ``len(bounds)``.
    minima : tuple of KnownPoint
        The known local (and global) minima, sorted by value.
    global_minimum : KnownPoint or None
        The lowest known minimum inside the domain, or None when there is none.
    """

    name: str
    formula: str
    fun: Callable[[np.ndarray], np.ndarray]
    grad: Callable[[np.ndarray], np.ndarray]
    hess: Callable[[np.ndarray], np.ndarray]
    bounds: tuple[tuple[float, float], ...]
    x0: tuple[float, ...]
    critical_points: tuple[KnownPoint, ...]
    description: str = ""

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.fun(np.asarray(x))

    @property
    def ndim(self) -> int:
        """Number of coordinates."""
        return len(self.bounds)

    @property
    def minima(self) -> tuple[KnownPoint, ...]:
        """The known local (and global) minima, sorted by value."""
        return tuple(p for p in self.critical_points if p.kind == "minimum")

    @property
    def global_minimum(self) -> KnownPoint | None:
        """The lowest known minimum inside the domain, or None when there is none (``tanh``, ``x**2 - y**2``)."""
        return min(self.minima, key=lambda p: p.value, default=None)

    def distance_to_minimum(self, x: npt.ArrayLike) -> float:
        """Euclidean distance from ``x`` to the nearest known minimum (``nan`` when none is known).

        Parameters
        ----------
        x : array_like of size ndim
            The point, converted to float64 and reshaped to ``(ndim,)``.

        Returns
        -------
        float
            ``min ||x - m||_2`` over the known minima ``m``; NaN when the objective has no known minimum
            (``x`` is then not read).

        Raises
        ------
        ValueError
            If ``x`` cannot be converted to float64 or does not hold ``ndim`` values (when a minimum is known).
        """
        if not self.minima:
            return float("nan")
        x = np.asarray(x, dtype=np.float64).reshape(self.ndim)
        return float(min(np.linalg.norm(x - np.asarray(p.x)) for p in self.minima))

    def minibatch_gradient(
        self, *, noise: float = 1.0, batch_size: int = 8, n_samples: int = 1024, seed: int = 0
    ) -> Callable[..., np.ndarray]:
        """A stochastic gradient ``grad(x, *, rng)`` with genuine minibatch noise around this function.

        The function is read as the empirical risk of ``n_samples`` per-sample losses
        ``l_i(x) = f(x) + xi_i . x`` with ``xi_i ~ N(0, noise**2 I)`` centred so that ``sum_i xi_i = 0``: the
        full-batch risk is exactly ``f`` (so full-batch gradient descent sees the deterministic function), while
        a minibatch of ``batch_size`` samples drawn without replacement gives ``grad f(x) + mean(xi_batch)``,
        whose noise has standard deviation ``noise * sqrt((n - b) / (b (n - 1)))`` per coordinate.

        Parameters
        ----------
        noise : float, default 1.0
            Standard deviation of a single sample's gradient perturbation.
        batch_size : int, default 8
            Minibatch size ``b`` (``b = n_samples`` is full-batch: no noise at all).
        n_samples : int, default 1024
            Size of the (virtual) training set.
        seed : int, default 0
            Seeds the draw of the per-sample perturbations (the training set), not the minibatches: those come
            from the ``rng`` that :func:`fastopt.minimize` passes in.

        Returns
        -------
        callable
            ``grad(x, *, rng) -> ndarray of shape (ndim,)``, usable as ``jac`` in :func:`fastopt.minimize`.

        Raises
        ------
        ValueError
            If ``noise`` is not a finite number >= 0, ``batch_size`` or ``n_samples`` is not an integer (a bool
            is not), or ``1 <= batch_size <= n_samples`` fails.
        """
        if not (isinstance(noise, numbers.Real) and math.isfinite(noise) and noise >= 0):  # (NaN: NaN gradients)
            raise ValueError(f"noise must be a finite number >= 0, got {noise!r}.")
        for name, value in (("batch_size", batch_size), ("n_samples", n_samples)):
            if isinstance(value, bool) or not isinstance(value, numbers.Integral):  # (1.5 failed at the first step)
                raise ValueError(f"{name} must be an integer, got {value!r}.")
        if not 1 <= batch_size <= n_samples:
            raise ValueError(f"need 1 <= batch_size <= n_samples, got batch_size={batch_size}, n_samples={n_samples}")
        xi = np.random.default_rng(seed).normal(0.0, noise, size=(n_samples, self.ndim))
        xi -= xi.mean(axis=0)
        grad = self.grad

        def minibatch_grad(x: np.ndarray, *, rng: np.random.Generator) -> np.ndarray:
            batch = rng.choice(n_samples, size=batch_size, replace=False)
            return grad(x) + xi[batch].mean(axis=0).astype(np.asarray(x).dtype)

        return minibatch_grad


def _hess2(hxx, hxy, hyy) -> np.ndarray:
    """A symmetric 2x2 Hessian from its three entries, broadcast to a common batch shape."""
    hxx, hxy, hyy = np.broadcast_arrays(hxx, hxy, hyy)
    return np.array([[hxx, hxy], [hxy, hyy]])


def _risk(x):
    return x[0] * np.cos(np.pi * x[0])


def _risk_grad(x):
    return np.stack([np.cos(np.pi * x[0]) - np.pi * x[0] * np.sin(np.pi * x[0])])


def _risk_hess(x):
    return np.stack([[-2 * np.pi * np.sin(np.pi * x[0]) - np.pi**2 * x[0] * np.cos(np.pi * x[0])]])


RISK = Objective(
    "risk",
    "f(x) = x cos(pi x)",
    _risk,
    _risk_grad,
    _risk_hess,
    bounds=((-1.0, 2.0),),
    x0=(-0.8,),
    critical_points=(
        KnownPoint((1.0904082219467212,), "minimum", -1.0467211246605712),
        KnownPoint((-0.27385268680085091,), "minimum", -0.17860251154773327),
        KnownPoint((0.27385268680085091,), "maximum", 0.17860251154773327),
    ),
    description="The risk of Dive into Deep Learning, sec. 12.1: a local minimum near -0.27 and the global minimum "
    "near 1.09 on [-1, 2].",
)

EMPIRICAL_RISK = Objective(
    "empirical_risk",
    "g(x) = x cos(pi x) + 0.2 cos(5 pi x)",
    lambda x: _risk(x) + 0.2 * np.cos(5 * np.pi * x[0]),
    lambda x: _risk_grad(x) - np.pi * np.sin(5 * np.pi * x[:1]),
    lambda x: _risk_hess(x) - 5 * np.pi**2 * np.cos(5 * np.pi * x[:1])[None],
    bounds=((0.5, 1.5),),
    x0=(0.55,),
    critical_points=(
        KnownPoint((1.0169834031079085,), "minimum", -1.2084614338727625),
        KnownPoint((1.3208019867362605,), "minimum", -0.76910374664679489),
        KnownPoint((1.2435211908037006,), "maximum", -0.74195891535844967),
        KnownPoint((0.65163665206175661,), "minimum", -0.43655755559717902),
        KnownPoint((0.74538693399045903,), "maximum", -0.38856305927727007),
    ),
    description="The empirical risk of Dive into Deep Learning, sec. 12.1: a finite sample moves the minimum from "
    "1.09 (risk) to 1.02.",
)

CUBIC = Objective(
    "cubic",
    "f(x) = x^3",
    lambda x: x[0] ** 3,
    lambda x: 3 * x[:1] ** 2,
    lambda x: (6 * x[:1])[None],
    bounds=((-2.0, 2.0),),
    x0=(1.5,),
    critical_points=(KnownPoint((0.0,), "saddle", 0.0),),
    description="First and second derivatives vanish at 0, which is no minimum: gradient descent stalls there.",
)

SADDLE = Objective(
    "saddle",
    "f(x, y) = x^2 - y^2",
    lambda x: x[0] ** 2 - x[1] ** 2,
    lambda x: np.stack([2 * x[0], -2 * x[1]]),
    lambda x: _hess2(2.0, np.zeros_like(x[0], dtype=float), -2.0),
    bounds=((-1.0, 1.0), (-1.0, 1.0)),
    x0=(0.9, 0.01),
    critical_points=(KnownPoint((0.0, 0.0), "saddle", 0.0),),
    description="A minimum along x and a maximum along y; unbounded below, so there is no minimum to reach.",
)

TANH = Objective(
    "tanh",
    "f(x) = tanh(x)",
    lambda x: np.tanh(x[0]),
    lambda x: 1 - np.tanh(x[:1]) ** 2,
    lambda x: (-2 * np.tanh(x[:1]) * (1 - np.tanh(x[:1]) ** 2))[None],
    bounds=((-2.0, 5.0),),
    x0=(4.0,),
    critical_points=(),
    description="Saturates: f'(4) = 0.0013, so gradient descent started at 4 barely moves (vanishing gradient).",
)


def _rosenbrock_grad(x):
    return np.stack([-2 * (1 - x[0]) - 400 * x[0] * (x[1] - x[0] ** 2), 200 * (x[1] - x[0] ** 2)])


def _rosenbrock_hess(x):
    return _hess2(1200 * x[0] ** 2 - 400 * x[1] + 2, -400 * x[0], 200.0)


ROSENBROCK = Objective(
    "rosenbrock",
    "f(x, y) = (1 - x)^2 + 100 (y - x^2)^2",
    lambda x: (1 - x[0]) ** 2 + 100 * (x[1] - x[0] ** 2) ** 2,
    _rosenbrock_grad,
    _rosenbrock_hess,
    bounds=((-2.0, 2.0), (-1.0, 3.0)),
    x0=(-1.2, 1.0),
    critical_points=(KnownPoint((1.0, 1.0), "minimum", 0.0),),
    description="A curved, badly conditioned valley: easy to enter, slow to follow to the minimum at (1, 1).",
)

# Beale's three residuals r_k = c_k - x + x y^k, k = 1, 2, 3; f = sum r_k^2.
_BEALE_C = (1.5, 2.25, 2.625)


def _beale(x):
    return sum((c - x[0] + x[0] * x[1] ** k) ** 2 for k, c in enumerate(_BEALE_C, 1))


def _beale_grad(x):
    gx = gy = 0.0
    for k, c in enumerate(_BEALE_C, 1):
        r = c - x[0] + x[0] * x[1] ** k
        gx = gx + 2 * r * (x[1] ** k - 1)
        gy = gy + 2 * r * k * x[0] * x[1] ** (k - 1)
    return np.stack([gx, gy])


def _beale_hess(x):
    hxx = hxy = hyy = 0.0
    for k, c in enumerate(_BEALE_C, 1):
        r = c - x[0] + x[0] * x[1] ** k
        dx, dy = x[1] ** k - 1, k * x[0] * x[1] ** (k - 1)
        hxx = hxx + 2 * dx * dx
        hxy = hxy + 2 * (dx * dy + r * k * x[1] ** (k - 1))
        hyy = hyy + 2 * (dy * dy + r * k * (k - 1) * x[0] * x[1] ** max(k - 2, 0))
    return _hess2(hxx, hxy, hyy)


BEALE = Objective(
    "beale",
    "f(x, y) = (1.5 - x + xy)^2 + (2.25 - x + xy^2)^2 + (2.625 - x + xy^3)^2",
    _beale,
    _beale_grad,
    _beale_hess,
    bounds=((-4.5, 4.5), (-4.5, 4.5)),
    x0=(1.0, 1.5),
    critical_points=(
        KnownPoint((3.0, 0.5), "minimum", 0.0),
        KnownPoint((0.10053793732415836, -2.644513585023125), "saddle", 9.8645122847555602),
        KnownPoint((0.0, 1.0), "saddle", 14.203125),
    ),
    description="Flat plateaus and steep walls spanning five decades; the minimum at (3, 0.5) sits in a thin valley.",
)


def _himmelblau_grad(x):
    a, b = x[0] ** 2 + x[1] - 11, x[0] + x[1] ** 2 - 7
    return np.stack([4 * x[0] * a + 2 * b, 2 * a + 4 * x[1] * b])


def _himmelblau_hess(x):
    return _hess2(12 * x[0] ** 2 + 4 * x[1] - 42, 4 * (x[0] + x[1]), 4 * x[0] + 12 * x[1] ** 2 - 26)


HIMMELBLAU = Objective(
    "himmelblau",
    "f(x, y) = (x^2 + y - 11)^2 + (x + y^2 - 7)^2",
    lambda x: (x[0] ** 2 + x[1] - 11) ** 2 + (x[0] + x[1] ** 2 - 7) ** 2,
    _himmelblau_grad,
    _himmelblau_hess,
    bounds=((-5.0, 5.0), (-5.0, 5.0)),
    x0=(0.0, 0.0),
    critical_points=(
        KnownPoint((3.0, 2.0), "minimum", 0.0),
        KnownPoint((-2.8051180869527449, 3.131312518250573), "minimum", 0.0),
        KnownPoint((-3.7793102533777469, -3.2831859912861694), "minimum", 0.0),
        KnownPoint((3.5844283403304917, -1.8481265269644036), "minimum", 0.0),
        KnownPoint((3.3851541836070209, 0.073851879837749288), "saddle", 13.31192627040559),
        KnownPoint((0.086677504555396352, 2.8842547011747761), "saddle", 67.71915008752614),
        KnownPoint((-3.0730257507643896, -0.081353044287967512), "saddle", 104.01516291755811),
        KnownPoint((-0.12796134673068007, -1.9537149802445764), "saddle", 178.33723920192746),
        KnownPoint((-0.27084459066734761, -0.92303855647998146), "maximum", 181.6165215225827),
    ),
    description="Four global minima of value 0, four saddles and one maximum: where you start decides where you end.",
)


def quadratic(A: npt.ArrayLike, *, name: str = "quadratic", bound: float = 2.0,
              x0: tuple[float, ...] | None = None) -> Objective:
    """The quadratic ``f(x) = 1/2 x^T A x`` for a symmetric positive definite ``A``.

    Its Hessian is ``A`` everywhere, so gradient descent with learning rate ``lr`` converges exactly when
    ``lr < 2 / lambda_max(A)`` (each eigen-component is multiplied by ``1 - lr * lambda_i`` per step), and
    Newton's method lands on the minimum at the origin in one step.

    Parameters
    ----------
    A : array_like of shape (n, n)
        Symmetric positive definite matrix, finite; symmetric to ``numpy.allclose``'s tolerance, and
        symmetrised as ``(A + A.T) / 2``.
    name : str, default "quadratic"
        Name of the returned objective.
    bound : float, default 2.0
        The domain is ``[-bound, bound]`` in every coordinate; a finite number > 0.
    x0 : tuple of float, optional
        Default start, ``n`` values; ``(-0.9 bound, 0.6 bound, 0.6 bound, ...)`` when omitted.

    Returns
    -------
    Objective
        ``f(x) = 1/2 x^T A x`` with its gradient ``A x`` and Hessian ``A``, its one critical point the minimum
        at the origin.

    Raises
    ------
    ValueError
        If ``A`` is not a finite, non-empty, square, symmetric, positive definite matrix, ``bound`` is not a
        finite number > 0, or ``x0`` does not hold ``n`` values.
    """
    A = np.array(A, dtype=np.float64)
    if A.ndim != 2 or A.shape[0] != A.shape[1]:
        raise ValueError(f"A must be a symmetric square matrix, got shape {A.shape}")
    if A.shape[0] == 0:  # (its eigenvalues' [0] raised IndexError)
        raise ValueError("A must be at least 1 x 1, got shape (0, 0)")
    if not np.isfinite(A).all():  # (NaN failed the symmetry test below, blamed on the shape; inf passed)
        raise ValueError("A must be finite.")
    if not np.allclose(A, A.T):
        raise ValueError("A must be symmetric.")
    # fun is x^T A x / 2 whatever A's antisymmetric part, its gradient (A + A^T) x / 2: an A symmetric to
    # allclose's tolerance gave grad and hess off fun's (100% on one component of a 1e4-scaled A)
    A = (A + A.T) / 2
    if np.linalg.eigvalsh(A)[0] <= 0:
        raise ValueError("A must be positive definite (its smallest eigenvalue is <= 0)")
    if not (isinstance(bound, numbers.Real) and math.isfinite(bound) and bound > 0):
        raise ValueError(f"bound must be a finite number > 0, got {bound!r}.")
    n = A.shape[0]
    if x0 is not None and np.shape(x0) != (n,):
        raise ValueError(f"x0 must have {n} values, one per dimension of A; got shape {np.shape(x0)}.")
    lam = np.linalg.eigvalsh(A)
    return Objective(
        name,
        "f(x) = 1/2 x^T A x",
        lambda x: 0.5 * np.einsum("i...,ij,j...->...", x, A, x),
        lambda x: np.tensordot(A, x, axes=1),
        lambda x: np.multiply.outer(A, np.ones(np.shape(x)[1:])),
        bounds=((-bound, bound),) * n,
        x0=x0 if x0 is not None else (-0.9 * bound,) + (0.6 * bound,) * (n - 1),
        critical_points=(KnownPoint((0.0,) * n, "minimum", 0.0),),
        description=f"Hessian eigenvalues {lam[0]:g} .. {lam[-1]:g} (condition number {lam[-1] / lam[0]:g}).",
    )


# The largest condition_number of ill_conditioned_quadratic: rounding the rotated A, whose entries are about
# condition_number in size, moves its eigenvalue 1 by up to about eps * condition_number (Weyl's inequality;
# measured over 2001 angles: at most 0.7 eps condition_number). 0.01 / eps (4.5e13) keeps that within 1%; near
# 1 / eps (4.5e15) the eigenvalue 1 is lost to rounding, and from about 1e16 A is indefinite at some angles.
MAX_CONDITION_NUMBER = 0.01 / np.finfo(np.float64).eps


def ill_conditioned_quadratic(condition_number: float = 25.0, angle: float = np.pi / 6,
                              **kwargs: Any) -> Objective:
    """A 2-D quadratic whose Hessian has eigenvalues ``1`` and ``condition_number``, rotated by ``angle``.

    The rotation makes the valley oblique to the axes, so per-coordinate adaptive methods (AdaGrad, RMSProp,
    Adam) get no free ride from a diagonal Hessian. ``kwargs`` go to :func:`quadratic`.

    Parameters
    ----------
    condition_number : float, default 25.0
        In ``[1, MAX_CONDITION_NUMBER]``, ``MAX_CONDITION_NUMBER = 0.01 / eps`` (4.5e13): rounding the rotated
        matrix, whose entries are about ``condition_number`` in size, moves its eigenvalue 1 by up to about
        ``eps * condition_number``, so the Hessian's spectrum stays within 1% of the one asked for and
        positive definite (near ``1 / eps`` the eigenvalue 1 is lost to rounding and the matrix can be
        indefinite).
    angle : float, default pi / 6
        Rotation of the eigenvectors, in radians; a finite number.
    **kwargs
        ``name`` (default ``"ill_conditioned"``), ``bound`` and ``x0``, passed to :func:`quadratic`.

    Returns
    -------
    Objective
        The quadratic of :func:`quadratic` with ``A = R diag(1, condition_number) R^T``, ``R`` the rotation by
        ``angle``.

    Raises
    ------
    ValueError
        If ``condition_number`` or ``angle`` is not a finite real number, ``condition_number`` is outside
        ``[1, MAX_CONDITION_NUMBER]``, or :func:`quadratic` refuses ``bound`` or ``x0``.
    TypeError
        If ``kwargs`` holds a name other than ``name``, ``bound`` and ``x0``.
    """
    for name, value in (("condition_number", condition_number), ("angle", angle)):
        # (a NaN failed quadratic's symmetry check, whose message blamed the 2 x 2 matrix's shape)
        if isinstance(value, bool) or not (isinstance(value, numbers.Real) and math.isfinite(value)):
            raise ValueError(f"{name} must be a finite real number, got {value!r}.")
    if not 1 <= condition_number <= MAX_CONDITION_NUMBER:
        # (0, -5 and 1e20 were blamed on "A must be positive definite", an A the caller never passed; a number
        # in (0, 1) gave a condition number of 1 / condition_number)
        raise ValueError(f"condition_number must be a finite real number in [1, {MAX_CONDITION_NUMBER:.3g}] "
                         f"(0.01 / eps: beyond it rounding moves the Hessian's eigenvalue 1 by over 1%, and near "
                         f"1 / eps its matrix stops being positive definite), got {condition_number!r}.")
    c, s = np.cos(angle), np.sin(angle)
    R = np.array([[c, -s], [s, c]])
    A = R @ np.diag([1.0, float(condition_number)]) @ R.T
    return quadratic((A + A.T) / 2, **{"name": "ill_conditioned", **kwargs})


ILL_CONDITIONED = ill_conditioned_quadratic()

DOUBLE_WELL = Objective(
    "double_well",
    "f(x, y) = x^4/4 - x^3/3 - x^2 + (y - x/2)^2 / 2",
    lambda x: x[0] ** 4 / 4 - x[0] ** 3 / 3 - x[0] ** 2 + 0.5 * (x[1] - x[0] / 2) ** 2,
    # d/dx = x (x + 1) (x - 2) - (y - x/2) / 2, so with y = x/2 the critical x are exactly -1, 0 and 2.
    lambda x: np.stack([x[0] * (x[0] + 1) * (x[0] - 2) - 0.5 * (x[1] - x[0] / 2), x[1] - x[0] / 2]),
    lambda x: _hess2(3 * x[0] ** 2 - 2 * x[0] - 1.75, -0.5, 1.0),
    bounds=((-2.0, 3.0), (-2.0, 2.5)),
    x0=(-1.8, 1.0),
    critical_points=(
        KnownPoint((2.0, 1.0), "minimum", -8 / 3),
        KnownPoint((-1.0, -0.5), "minimum", -5 / 12),
        KnownPoint((0.0, 0.0), "saddle", 0.0),
    ),
    description="A tilted double well: a shallow local minimum at (-1, -1/2) (barrier 5/12 high), the global "
    "minimum at (2, 1) and a saddle at the origin between them; all critical points exact rationals.",
)

FUNCTIONS: dict[str, Objective] = {
    f.name: f
    for f in (RISK, EMPIRICAL_RISK, CUBIC, SADDLE, TANH, ROSENBROCK, BEALE, HIMMELBLAU, ILL_CONDITIONED, DOUBLE_WELL)
}


def get(name: str) -> Objective:
    """The registered test function called ``name`` (see :data:`FUNCTIONS`).

    Parameters
    ----------
    name : str
        A key of :data:`FUNCTIONS`: "risk", "empirical_risk", "cubic", "saddle", "tanh", "rosenbrock", "beale",
        "himmelblau", "ill_conditioned" or "double_well".

    Returns
    -------
    Objective
        The registered objective itself (not a copy; it is frozen).

    Raises
    ------
    TypeError
        If ``name`` is not a str.
    ValueError
        If no test function is registered under ``name``.
    """
    if not isinstance(name, str):  # (a list raised "unhashable type: 'list'" from the dict look-up)
        raise TypeError(f"name must be a str, one of {', '.join(FUNCTIONS)}; got {type(name).__name__}.")
    try:
        return FUNCTIONS[name]
    except KeyError:
        raise ValueError(f"unknown test function {name!r}; choose from {', '.join(FUNCTIONS)}") from None


__all__ = ["FUNCTIONS", "MAX_CONDITION_NUMBER", "KnownPoint", "Objective", "get", "ill_conditioned_quadratic",
           "quadratic"]
