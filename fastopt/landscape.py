"""The landscape of a function: numerical derivatives, critical points and their kinds, conditioning.

Goodfellow, Bengio & Courville, *Deep Learning*, 2016 (sec. 4.3, 8.2) and Zhang et al., *Dive into Deep Learning*, sec.
12.1, explain optimization's troubles through the Hessian: at a point where the gradient vanishes, all-positive
eigenvalues make a minimum, all-negative a maximum, mixed signs a saddle; the ratio of the extreme eigenvalues (the
condition number) decides how fast gradient descent can go, and ``2 / lambda_max`` is the largest learning rate at which
it converges at all. This module computes those quantities for any function
``fun(x, *args) -> float`` of a 1-D array, from analytic derivatives when given and finite differences otherwise.

Examples
--------
>>> import numpy as np
>>> from fastopt import landscape
>>> f = lambda p: p[0] ** 2 - p[1] ** 2
>>> landscape.classify_critical_point(f, np.zeros(2)).kind
'saddle'
>>> round(landscape.max_stable_learning_rate(lambda p: 5 * p[0] ** 2 + p[1] ** 2, np.zeros(2)), 6)
0.2
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from numbers import Integral, Real

import numpy as np
import numpy.typing as npt

__all__ = [
    "CriticalPoint",
    "NonFiniteError",
    "classify_critical_point",
    "condition_number",
    "find_critical_points",
    "gradient",
    "gradient_norms",
    "hessian",
    "max_stable_learning_rate",
]

# Default tolerances of classify_critical_point, in units of the dtype's machine epsilon (see its docstring).
# A central-difference gradient's truncation is about eps**(2/3) at unit scale: critical means 1000 times that,
# plus _ROUNDING_MARGIN times the differences' own error measured at the point (f's own evaluation may err by a
# few ulps beyond the rounding bound eps max|f| / h).
_GTOL_FACTOR = 1e3
_ROUNDING_MARGIN = 10.0
# A difference whose values move by at most _NOISE_MARGIN times their rounding is retaken with _STEP_GROWTH
# times its step (_differences, _second_differences): its rounding then errs by at most 1 / _NOISE_MARGIN of it.
_NOISE_MARGIN = 1e2
_STEP_GROWTH = 4.0
MAX_STARTS = 2**20  # find_critical_points' starts: each a root finding (2**40 asked 16 TiB of Sobol points)
# Eigenvalues within these of zero count as zero (classify_critical_point's eig_tol). Differences of an exact
# gradient err by about eps**(2/3) of the Hessian's scale: 100 times that. Second differences of f: 4 times
# their truncation plus their rounding, estimated at the point (_second_difference_error), twice the curvature
# a point's distance from a critical point may make (_EIG_POSITION_MARGIN), and never less than the former. An exact
# Hessian is off only by rounding and by how far x is from the exact critical point (root finding leaves
# about sqrt(eps)), hence 0.01 sqrt(eps).
_EIG_RTOL_JAC = 1e2
_EIG_SAFETY = 4.0
_EIG_RTOL_POSITION = 1e2
_EIG_RTOL_EXACT = 1e-2
_EIG_POSITION_MARGIN = 2.0


def _point(x: np.ndarray | Sequence[float] | float) -> np.ndarray:
    """``x`` as a finite, 1-D float32/float64 array (other real dtypes become float64)."""
    x = np.atleast_1d(np.asarray(x))
    if np.iscomplexobj(x) or x.dtype.kind not in "biuf":
        raise TypeError(f"x must be real-valued, got dtype {x.dtype}")
    if x.ndim != 1:
        raise ValueError(f"x must be 1-D (one point), got shape {x.shape}")
    if x.size == 0:
        raise ValueError("x must have at least one coordinate, got an empty array")
    if x.dtype not in (np.float32, np.float64):
        x = x.astype(np.float64)
    if not np.all(np.isfinite(x)):
        raise ValueError("x contains NaN or inf")
    return x


class NonFiniteError(ValueError):
    """Raised when ``fun``, ``jac`` or ``hess`` returns NaN or inf (or a given ``f0`` is not finite).

    The diagnostics need finite values: a NaN made the condition number inf and classified points as
    "degenerate". A subclass of ``ValueError``, so ``except ValueError`` catches it too.
    """


def real_scalar(value: object, what: str = "fun") -> float:
    """``value``, which ``what`` returned, as a float if it is one real number, else a clear error.

    The one check of a function value, shared by this module and :func:`fastopt.minimize`: a Python or NumPy
    real, a ``Fraction``, or a real array of one element is taken; no number at all (None, a string such as
    ``"1.0"``) is a TypeError, an array of several values or a complex number a ValueError, each naming
    ``what``. An integer beyond float's range (``10**400``) is infinite, as a float's overflow is.

    Parameters
    ----------
    value : object
        The value to check, as returned by a user's function.
    what : str, default "fun"
        The name of the function that returned ``value``, used in the error messages.

    Returns
    -------
    float
        ``value`` as a Python float; NaN and inf pass (the caller decides whether they are allowed).

    Raises
    ------
    TypeError
        If ``value`` is not a number (None, a string, an object array of non-numbers).
    ValueError
        If ``value`` is a numeric array of other than one element, or complex.
    """
    f = np.asarray(value)
    real = f.dtype.kind in "biuf" or (f.size == 1 and isinstance(f.item(), Real))  # (a Fraction: "O")
    if not (real or np.iscomplexobj(f)):  # (None raised float()'s own error, naming no function; "1.0" passed)
        raise TypeError(f"{what} must return a real scalar, got {type(f.item() if f.size == 1 else f).__name__}.")
    if f.size != 1:
        raise ValueError(f"{what} must return a real scalar, got an array of shape {f.shape}, dtype {f.dtype}.")
    if np.iscomplexobj(f):
        raise ValueError(f"{what} must return a real scalar, got a complex value ({f.dtype}).")
    f = f.reshape(())
    try:
        return float(f)
    except OverflowError:
        return math.inf if f.item() > 0 else -math.inf


def real_array(value: npt.ArrayLike, shape: tuple[int, ...], what: str) -> np.ndarray:
    """``value``, which ``what`` returned, as a real array of ``shape`` (a 0-d value passes for ``(1,)``).

    The one check of a gradient or Hessian, shared by this module and :func:`fastopt.minimize`: a complex or
    non-numeric dtype is a TypeError (a cast to float dropped the imaginary part with only a ComplexWarning),
    a wrong shape a ValueError, each naming ``what``. The dtype is the caller's to choose.

    Parameters
    ----------
    value : array_like
        The value to check, as returned by a user's ``jac`` or ``hess``.
    shape : tuple of int
        The expected shape, e.g. ``(n,)`` for a gradient or ``(n, n)`` for a Hessian.
    what : str
        The name of the function that returned ``value``, used in the error messages.

    Returns
    -------
    ndarray of shape ``shape``
        ``value`` as an array, reshaped to ``shape``, in its own (real) dtype; NaN and inf pass.

    Raises
    ------
    TypeError
        If ``value``'s dtype is complex or not numeric (booleans and integers are taken).
    ValueError
        If ``value``'s shape is not ``shape`` (nor 0-d for ``shape == (1,)``).
    """
    a = np.asarray(value)
    if np.iscomplexobj(a) or a.dtype.kind not in "biuf":
        raise TypeError(f"{what} must return a real array, got dtype {a.dtype}.")
    if a.shape != shape and not (a.ndim == 0 and shape == (1,)):
        raise ValueError(f"{what} returned shape {a.shape}, expected {shape}.")
    return a.reshape(shape)


def _callables(fun, jac=None, hess=None, args=()) -> tuple:
    """Check that ``fun`` (and ``jac``, ``hess`` where given) can be called; ``args`` as a tuple (a lone value is
    wrapped, as :func:`fastopt.minimize` and SciPy's ``minimize`` take it)."""
    for name, f in (("fun", fun), ("jac", jac), ("hess", hess)):
        if (f is not None or name == "fun") and not callable(f):
            raise TypeError(f"{name} must be callable{'' if name == 'fun' else ' or None'}, got {type(f).__name__}.")
    return args if isinstance(args, tuple) else (args,)


def _value(fun: Callable, x: np.ndarray, args: tuple) -> float:
    value = real_scalar(fun(x, *args), "fun")
    if not np.isfinite(value):
        raise NonFiniteError(f"fun returned {value} at x = {x.tolist()}; the diagnostics need finite values")
    return value


def _given_value(f0) -> float:
    """A caller's ``f0 = fun(x)`` as a finite float, else a clear error naming it."""
    zero_d = isinstance(f0, np.ndarray) and f0.ndim == 0 and f0.dtype.kind in "iuf"
    if isinstance(f0, (bool, np.bool_)) or not (isinstance(f0, Real) or zero_d):
        raise TypeError(f"f0 must be a real number (the value fun(x)), got {type(f0).__name__}: {f0!r:.40}")
    value = real_scalar(f0, "f0")  # (an integer beyond float's range is inf, as real_scalar takes it)
    if not np.isfinite(value):
        raise NonFiniteError(f"f0 = {value} is not finite; the differences need a finite fun(x)")
    return value


def _jacobian(jac: Callable, x: np.ndarray, args: tuple) -> np.ndarray:
    """``jac(x)`` as a finite float64 vector of ``x``'s length, else a clear error."""
    g = real_array(jac(x, *args), x.shape, "jac").astype(np.float64)
    if not np.all(np.isfinite(g)):
        raise NonFiniteError(f"jac returned NaN or inf at x = {x.tolist()}; the diagnostics need finite values")
    return g


def _tolerance(name: str, value: float | None) -> float | None:
    """``gtol``/``eig_tol``: None, or a finite number >= 0."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, Real) or not (np.isfinite(value) and value >= 0):
        raise ValueError(f"{name} must be a finite number >= 0 or None, got {value!r}")
    return float(value)


def _steps(x: np.ndarray, power: float) -> np.ndarray:
    """Per-coordinate steps ``eps**power * max(1, |x_i|)``, rounded so that ``x + h`` is exactly ``x`` plus ``h``."""
    h = np.finfo(x.dtype).eps ** power * np.maximum(1.0, np.abs(x))
    return ((x + h) - x).astype(x.dtype)


def _grown(x: np.ndarray, i: int, h: float) -> float:
    """``h`` times ``_STEP_GROWTH``, rounded as :func:`_steps` rounds (``x[i] + h`` exact)."""
    return float(((x[i] + _STEP_GROWTH * h) - x[i]).astype(x.dtype))


def _noise_bound(x: np.ndarray, i: int) -> float:
    """The largest step a difference along ``x[i]`` grows to while its values' rounding swamps it:
    ``eps**(1/8) max(1, |x_i|)`` (1.1e-2 in float64), the radius :func:`_probe_null_directions` keeps local."""
    return float(np.finfo(x.dtype).eps ** (1 / 8) * max(1.0, abs(float(x[i]))))


def _differences(fun, x: np.ndarray, args: tuple, central: bool, f0: float | None, h: np.ndarray | None = None):
    """First differences of ``fun`` at ``x``: the gradient, the steps taken and the largest ``|f|`` read.

    The steps start at :func:`_steps`'. A central difference whose values hardly move, ``max |f(x +- h e_i) -
    f(x)|`` at most ``_NOISE_MARGIN`` times their rounding (``eps max |f|``), is retaken with ``_STEP_GROWTH``
    times the step, up to :func:`_noise_bound`: a constant added to ``f`` adds rounding, not variation (see
    :func:`gradient`). A forward difference keeps its step: balanced at ``sqrt(eps)``, its values move by about their
    rounding at a critical point by design. Given steps ``h`` are kept as they are.
    """
    eps = float(np.finfo(x.dtype).eps)
    adapt = central and h is None
    h = _steps(x, 1 / 3 if central else 1 / 2) if h is None else np.array(h, dtype=x.dtype)
    if f0 is None:  # (the central scheme's too: it measures how far its values move)
        f0 = _value(fun, x, args)
    f_max = abs(f0)
    g = np.empty(x.shape, dtype=np.float64)
    for i in range(x.size):
        while True:
            e = np.zeros_like(x)
            e[i] = h[i]
            fp = _value(fun, x + e, args)
            if not central:
                f_max = max(f_max, abs(fp))
                g[i] = (fp - f0) / h[i]
                break
            fm = _value(fun, x - e, args)
            f_max = max(f_max, abs(fp), abs(fm))
            g[i] = (fp - fm) / (2 * h[i])
            noise = eps * max(abs(f0), abs(fp), abs(fm))
            wider = _grown(x, i, h[i])
            swamped = noise > 0 and max(abs(fp - f0), abs(fm - f0)) <= _NOISE_MARGIN * noise
            if not (adapt and swamped) or wider > _noise_bound(x, i):
                break
            h[i] = wider
    return g, h, f_max


def gradient(
    fun: Callable[..., float], x: npt.ArrayLike, *, args: tuple = (), scheme: str = "3-point", f0: float | None = None
) -> np.ndarray:
    """Finite-difference gradient of ``fun`` at ``x``.

    Parameters
    ----------
    fun : callable
        ``fun(x, *args) -> float``.
    x : array_like of shape (n,)
        The point; float32 input is differenced with float32's machine epsilon (other real dtypes as float64).
    args : tuple, default ()
        Extra arguments for ``fun``.
    scheme : {"3-point", "2-point"}, default "3-point"
        Central differences (``2n + 1`` evaluations, or more where steps grow: see Notes; error O(h**2)) or
        forward differences (``n + 1``, error O(h)).
    f0 : float, optional
        ``fun(x)``, if already known (saves one evaluation): a finite real number (a ``TypeError`` otherwise, or
        a :class:`NonFiniteError` for NaN or inf, as ``fun`` returning it would be).

    Returns
    -------
    ndarray of shape (n,), the dtype of ``x``
        The estimated gradient.

    Raises
    ------
    TypeError
        If ``x`` is not real-valued, ``f0`` is not a real number, or ``fun`` returns no number.
    ValueError
        If ``x`` is not a non-empty, finite 1-D array, ``scheme`` is not one of the two names, or ``fun`` returns
        an array of several values or a complex number.
    NonFiniteError
        If ``fun`` returns NaN or inf at a point it is evaluated at, or ``f0`` is not finite.

    Notes
    -----
    The steps balance truncation against rounding. A forward difference errs by ``h |f''| / 2`` plus
    ``2 eps |f| / h``, smallest at ``h ~ sqrt(eps)``; a central one by ``h**2 |f'''| / 6`` plus ``eps |f| / h``,
    smallest at ``h ~ eps**(1/3)``. Both are scaled by ``max(1, |x_i|)`` so that the step is relative for large
    coordinates and absolute near zero. Those balances take ``|f|`` to be about the size of its derivatives; a
    large constant in ``f`` adds rounding but no variation. So a central difference whose values
    ``f(x +- h e_i)`` differ from ``f(x)`` by at most 100 times their rounding (``eps max |f|``) is retaken with
    4 times the step, up to ``eps**(1/8) max(1, |x_i|)`` (1.1e-2 in float64): at ``1e9 + (x - 3)**2`` the slope
    0.002 at 3.001 came out 0.0033 with the step ``eps**(1/3) max(1, |x|)``, 0.001999 with the grown one. A
    forward difference keeps its step (balanced at ``sqrt(eps)``, its values move by about their rounding at a
    critical point by design).
    """
    args = _callables(fun, args=args)
    x = _point(x)
    if scheme not in ("2-point", "3-point"):
        raise ValueError(f"scheme must be '2-point' or '3-point', got {scheme!r}")
    if f0 is not None:  # (NaN gave a NaN gradient silently, a string a raw TypeError from the subtraction)
        f0 = _given_value(f0)
    return _differences(fun, x, args, scheme == "3-point", f0)[0].astype(x.dtype)


def hessian(fun: Callable[..., float], x: npt.ArrayLike, *, jac: Callable | None = None,
            args: tuple = ()) -> np.ndarray:
    """Finite-difference Hessian of ``fun`` at ``x``, symmetric.

    Parameters
    ----------
    fun : callable
        ``fun(x, *args) -> float``.
    x : array_like of shape (n,)
        The point, checked as :func:`gradient` checks it.
    jac : callable, optional
        ``jac(x, *args) -> ndarray (n,)``. When given, the Hessian is the central difference of the gradient
        (``2n`` gradient calls, step ``eps**(1/3)``, error about ``eps**(2/3)``), symmetrised. Otherwise it is
        the second difference of ``fun`` (``2n**2 + 1`` calls).
    args : tuple, default ()
        Extra arguments for ``fun`` and ``jac``.

    Returns
    -------
    ndarray of shape (n, n), float64
        The estimated Hessian.

    Raises
    ------
    TypeError
        If ``x`` is not real-valued, ``fun`` returns no number, or ``jac`` returns a complex or non-numeric array.
    ValueError
        If ``x`` is not a non-empty, finite 1-D array, ``fun`` returns an array of several values or a complex
        number, or ``jac`` returns an array of the wrong shape.
    NonFiniteError
        If ``fun`` or ``jac`` returns NaN or inf at a point it is evaluated at.

    Notes
    -----
    A second difference errs by ``h**2 |f''''| / 12`` plus ``4 eps |f| / h**2``, smallest at ``h ~ eps**(1/4)``
    (about 1.2e-4 in float64), which leaves an error near ``sqrt(eps)`` relative to the scale of ``f``. Mixed
    partials use the four-point formula ``(f(++) - f(+-) - f(-+) + f(--)) / (4 h_i h_j)``. As in
    :func:`gradient`, a diagonal difference that moves by at most 100 times its values' rounding
    (``4 eps max |f|``, a large constant in ``f``) is retaken with 4 times the step, up to
    ``eps**(1/8) max(1, |x_i|)``: the curvature 2 of ``1e9 + (x - 3)**2`` came out 1.78, now 2.
    """
    args = _callables(fun, jac, args=args)
    x = _point(x)
    n = x.size
    H = np.empty((n, n))
    if jac is not None:
        h = _steps(x, 1 / 3)
        for i in range(n):
            e = np.zeros_like(x)
            e[i] = h[i]
            # (checked as the gradient is: a NaN gave a NaN Hessian silently, a scalar a zero one by broadcasting)
            H[:, i] = (_jacobian(jac, x + e, args) - _jacobian(jac, x - e, args)) / (2 * h[i])
        return (H + H.T) / 2
    return _second_differences(fun, x, args, _steps(x, 1 / 4))[0]


def _second_differences(fun, x: np.ndarray, args: tuple, h: np.ndarray,
                        adapt: bool = True) -> tuple[np.ndarray, float, np.ndarray]:
    """The second-difference Hessian of ``fun`` at ``x`` from steps ``h``, the largest ``|f|`` it read (the
    scale of its rounding error) and the steps it took.

    With ``adapt``, a diagonal difference ``f(x + h e_i) - 2 f(x) + f(x - h e_i)`` of at most ``_NOISE_MARGIN``
    times its values' rounding (``4 eps max |f|``) is retaken with ``_STEP_GROWTH`` times the step, up to
    :func:`_noise_bound`, as :func:`_differences` does (``1e9 + (x - 3)**2``: 1.78 for the curvature 2 at the
    step ``eps**(1/4)``); the mixed partials use the steps so found.
    """
    n = x.size
    H = np.empty((n, n))
    f_max = 0.0
    eps = float(np.finfo(x.dtype).eps)

    def value(p):
        nonlocal f_max
        v = _value(fun, p, args)
        f_max = max(f_max, abs(v))
        return v

    f0 = value(x)
    h = np.array(h, dtype=x.dtype)
    for i in range(n):
        while True:
            e = np.zeros_like(x)
            e[i] = h[i]
            fp, fm = value(x + e), value(x - e)
            d = fp - 2 * f0 + fm
            noise = 4 * eps * max(abs(f0), abs(fp), abs(fm))
            wider = _grown(x, i, h[i]) if adapt else np.inf
            if not (noise > 0 and abs(d) <= _NOISE_MARGIN * noise) or wider > _noise_bound(x, i):
                break
            h[i] = wider
        H[i, i] = d / h[i] / h[i]  # (not d / h**2: h**2 overflowed beyond |x| of 1e154, H was 0)
        for j in range(i):
            ei, ej = np.zeros_like(x), np.zeros_like(x)
            ei[i], ej[j] = h[i], h[j]
            pp = value(x + ei + ej)
            pm = value(x + ei - ej)
            mp = value(x - ei + ej)
            mm = value(x - ei - ej)
            H[i, j] = H[j, i] = (pp - pm - mp + mm) / (4 * h[i]) / h[j]
    return H, f_max, h


def _finite(H: np.ndarray, x: np.ndarray) -> np.ndarray:
    if not np.all(np.isfinite(H)):
        raise NonFiniteError(f"the Hessian at x = {x.tolist()} holds NaN or inf; the diagnostics need finite values")
    return H


def _hessian_at(fun, x, jac, hess, args) -> tuple[np.ndarray, bool]:
    """The symmetric Hessian at ``x`` and whether it is exact (from ``hess``) rather than differenced."""
    if hess is not None:
        H = _finite(real_array(hess(x, *args), (x.size, x.size), "hess").astype(np.float64), x)
        return (H + H.T) / 2, True
    return _finite(hessian(fun, x, jac=jac, args=args), x), False


def _second_difference_error(fun, x: np.ndarray, args: tuple, H: np.ndarray, h: np.ndarray,
                             f_max: float) -> tuple[float, float]:
    """Estimates of how far the eigenvalues of ``H``, second differences of ``fun`` with steps ``h`` that read
    values up to ``f_max`` in size, may be from the exact Hessian's: its truncation and its rounding.

    By Weyl's inequality no eigenvalue moves by more than the spectral norm of the error, which has two parts.
    Truncation, ``c h**2`` per entry (``h**2 f'''' / 12`` on the diagonal) with ``c`` unknown, is measured: the
    differences with steps ``2 h`` err by ``4 c h**2``, so ``(H(2h) - H(h)) / 3`` is ``H(h)``'s truncation
    (``x[1]**4`` at 0 has ``H(h)[1, 1] = 2 h**2``, all truncation, and this gives exactly that). Steps ``h / 2``
    measured it as well, but their rounding, four times ``H(h)``'s, swamped it beside a large constant in ``f``
    (Rosenbrock's minimum plus 1e6 was "degenerate": 0.12 for its eigenvalue 0.4, which ``H(h)`` gets to 6e-7).
    Rounding, a bound: each value carries about ``eps |f|``, so an entry errs by up to ``4 eps f_max / h**2``
    and the matrix by ``n`` times that; beside a curvature ``lambda`` the values read are about
    ``lambda h**2``, so this is ``eps lambda``, not ``sqrt(eps) lambda``.
    """
    double = ((x + 2 * h) - x).astype(x.dtype)
    H_double, f_max_double, _ = _second_differences(fun, x, args, double, adapt=False)
    truncation = float(np.linalg.norm(_finite(H_double, x) - H, 2)) / 3
    eps = np.finfo(x.dtype).eps
    rounding = 4 * x.size * float(eps) * max(f_max, f_max_double) / float(np.min(h)) / float(np.min(h))
    return truncation, rounding


@dataclass(frozen=True, eq=False)
class CriticalPoint:
    """What :func:`classify_critical_point` found at a point.

    A frozen record, made by :func:`classify_critical_point` and :func:`find_critical_points`; its fields are
    stored as given (no check), each as the read-only attribute of the same name.

    Parameters
    ----------
    x : ndarray of shape (n,)
        The point classified.
    kind : {"minimum", "maximum", "saddle", "degenerate", "noncritical"}
        "noncritical" when the gradient norm exceeds ``gtol``; "degenerate" when the Hessian is singular and the
        higher-order probe (see :func:`classify_critical_point`) does not settle the question.
    value : float
        ``fun(x)``.
    gradient_norm : float
        Euclidean norm of the gradient at ``x``.
    eigenvalues : ndarray of shape (n,)
        Hessian eigenvalues, ascending.
    eigenvectors : ndarray of shape (n, n)
        Matching unit eigenvectors, as columns.
    reason : str
        One sentence on how the kind was decided.

    Attributes
    ----------
    x : ndarray of shape (n,)
        The point classified.
    kind : str
        One of "minimum", "maximum", "saddle", "degenerate", "noncritical".
    value : float
        ``fun(x)``.
    gradient_norm : float
        Euclidean norm of the gradient at ``x``.
    eigenvalues : ndarray of shape (n,)
        Hessian eigenvalues, ascending.
    eigenvectors : ndarray of shape (n, n)
        Matching unit eigenvectors, as columns.
    reason : str
        One sentence on how the kind was decided.
    """

    x: np.ndarray
    kind: str
    value: float
    gradient_norm: float
    eigenvalues: np.ndarray
    eigenvectors: np.ndarray
    reason: str


def _probe_null_directions(fun, x, f0, directions, args) -> tuple[bool, bool]:
    """Whether ``fun`` rises and whether it falls along ``directions``, a step of ``eps**(1/6)`` and ``eps**(1/8)``
    times ``sqrt(max(1, |x|))``.

    The radii (2.5e-3 and 1.1e-2 at unit scale in float64) are small enough to stay local and large enough that a
    cubic or quartic change (``r**3``, ``r**4``) stands clear of rounding (``100 eps |f|``). They grow with
    ``sqrt(|x|)``: a critical point is known to its gradient's tolerance, which grows with ``|x|``
    (:func:`classify_critical_point`'s ``gtol``), and along a null direction whose leading term is cubic its
    position so to the root of that; the radii must exceed it, or a minimum found a little off looked a saddle.
    They grew with ``|x|`` itself: ``t**4 - t**5`` (``t = x - 1000``) was probed at ``|t| = 2.5`` and 11, outside the
    minimum's neighbourhood (``|t| < 1``), and called a saddle; 0.08 and 0.35 keep within it.
    """
    eps = np.finfo(x.dtype).eps
    noise = 100 * eps * max(1.0, abs(f0))
    scale = np.sqrt(max(1.0, float(np.max(np.abs(x)))))
    rises = falls = False
    for v in directions.T:
        for r in (eps ** (1 / 6) * scale, eps ** (1 / 8) * scale):
            for sign in (1.0, -1.0):
                d = _value(fun, (x + sign * r * v).astype(x.dtype), args) - f0
                rises |= d > noise
                falls |= d < -noise
    return rises, falls


def classify_critical_point(
    fun: Callable[..., float],
    x: npt.ArrayLike,
    *,
    jac: Callable | None = None,
    hess: Callable | None = None,
    args: tuple = (),
    gtol: float | None = None,
    eig_tol: float | None = None,
) -> CriticalPoint:
    """Name the critical point at ``x`` from the Hessian's eigenvalues (the second-derivative test).

    The test of Goodfellow, Bengio & Courville, *Deep Learning*, 2016, sec. 4.3, with a higher-order probe where
    the Hessian is singular (see Notes).

    Parameters
    ----------
    fun : callable
        ``fun(x, *args) -> float``.
    x : array_like of shape (n,)
        The point, checked as :func:`gradient` checks it (a copy is kept in the result).
    jac, hess : callable, optional
        Analytic gradient and Hessian; finite differences (:func:`gradient`, :func:`hessian`) otherwise.
    args : tuple, default ()
        Extra arguments for ``fun``, ``jac`` and ``hess``.
    gtol : float, optional
        ``x`` counts as critical when the gradient norm is at most ``gtol``. Default, for a finite-difference
        gradient, ``1000 eps**(2/3) max(1, |x|_inf)**2`` (3.7e-8 in float64, 2.4e-2 in float32 at unit scale,
        ``eps`` of ``x``'s dtype; a central difference with step ``eps**(1/3) max(1, |x|_inf)`` errs by about
        ``|x|**2`` times the third derivative times ``eps**(2/3)``: without the factor, Rosenbrock's minimum moved
        to ``(11, 11)`` was "noncritical"), plus 10 times the differences' own error at ``x``: their truncation,
        measured by repeating them with half the steps (``2n`` more calls of ``fun``), and their rounding,
        ``eps max|f| / min(h)`` for the steps ``h`` taken (:func:`gradient` grows them where a constant in ``f``
        swamps the differences). With ``jac``, whose values carry no error from ``|f|``,
        ``1000 eps**(2/3) max(1, |lambda|_max) max(1, |x|_inf)``: the gradient a point within the root's precision
        of a critical point has (``lambda`` the Hessian's eigenvalues).
    eig_tol : float, optional
        Eigenvalues with ``|lambda| <= eig_tol`` count as zero. Default ``0.01 sqrt(eps) max(1, |lambda|_max)``
        for an exact ``hess``; ``100 eps**(2/3) max(1, |lambda|_max)`` for differences of ``jac`` (their error
        is about ``eps**(2/3)`` of the gradient's scale). For second differences of ``fun`` (steps ``h``, grown
        as the gradient's are), the largest of that; ``100 sqrt(eps)`` (1.5e-6 in float64); ``2 sqrt(2 c g)``,
        ``c`` the third derivatives' size measured from the gradient's truncation and ``g`` a bound on the
        gradient (extrapolated from the two steps): a point of gradient ``g`` lies near a critical point of the
        same curvature sign only if ``lambda**2 > 2 c g``, else perhaps near an inflection; and 4 times the
        differences' truncation plus their rounding, estimated at ``x`` (``2n**2 + 1`` more calls of ``fun``): the
        truncation measured by repeating them with steps ``2 h``, ``||H(2h) - H(h)||_2 / 3``, the rounding
        bounded by ``4 n eps max|f| / min(h)**2`` over the values read. Beside a curvature ``lambda`` those values
        are about ``lambda h**2``, so rounding costs about ``eps lambda``: ``1e6 x**2 + y**2`` at 0 is a minimum,
        as with ``jac``, while the ``y`` curvature of ``x**2 + y**4``, ``2 h**2`` and all truncation, stays zero.
        A constant added to ``f`` enters only through the rounding terms, which the grown steps keep small:
        ``1e9 + (x - 3)**2`` has its minimum at 3, as without the constant.

    Returns
    -------
    CriticalPoint
        The point's kind, value, gradient norm, Hessian eigenvalues and eigenvectors, and the reason.

    Raises
    ------
    TypeError
        If ``x`` is not real-valued, or ``fun``, ``jac`` or ``hess`` returns a value of no real number type.
    ValueError
        If ``x`` is not a non-empty, finite 1-D array, ``gtol`` or ``eig_tol`` is not None nor a finite number
        >= 0, or ``fun``, ``jac`` or ``hess`` returns a value of the wrong shape or a complex one.
    NonFiniteError
        If ``fun``, ``jac`` or ``hess`` returns NaN or inf at a point it is evaluated at.

    Notes
    -----
    All eigenvalues above ``eig_tol``: minimum; all below ``-eig_tol``: maximum; one of each sign: saddle,
    whatever the others are. When some eigenvalues are zero and the rest share a sign, the second-order test is
    inconclusive; ``fun`` is then probed along the null eigenvectors at small radii. If ``fun`` both rises
    and falls near ``x`` (counting the directions of non-zero curvature), ``x`` is no extremum, so a saddle in
    the sense of Zhang et al., *Dive into Deep Learning*, sec. 12.1: this is how ``x**3`` at 0 is named a saddle.
    Otherwise it is reported "degenerate" (``x**4`` at 0 is a minimum, but finitely many probes cannot prove it).
    """
    args = _callables(fun, jac, hess, args)
    x = _point(x).copy()  # (the result's x was the caller's array, changed with it)
    gtol, eig_tol = _tolerance("gtol", gtol), _tolerance("eig_tol", eig_tol)
    f0 = _value(fun, x, args)
    eps = float(np.finfo(x.dtype).eps)
    if jac is not None:
        g = _jacobian(jac, x, args)
    else:  # (its steps and the values read set the rounding gtol allows)
        g, h_g, f_max_g = _differences(fun, x, args, True, f0)
        g = g.astype(x.dtype)
        # the gradient's rounding error, eps max|f| / h; eps**(2/3) at unit scale
        g_rounding = eps * max(1.0, f_max_g) / float(np.min(h_g))
        # its truncation, c h**2 (the differences with steps h / 2 err by a quarter of it), and so the third
        # derivatives' size, c ~ f''' / 6
        g_half = _differences(fun, x, args, True, f0, ((x + h_g / 2) - x).astype(x.dtype))[0]
        t = 4 / 3 * (g.astype(np.float64) - g_half)
        g_truncation = float(np.linalg.norm(t))
        third = 6 * float(np.linalg.norm(t / h_g.astype(np.float64) / h_g.astype(np.float64)))
        # the gradient's bound after Richardson's extrapolation (g - t, whose rounding is 3 times g's)
        g_bound = float(np.linalg.norm(g.astype(np.float64) - t)) + 3 * g_rounding
    gnorm = float(np.linalg.norm(g))
    if jac is None and hess is None:  # second differences: their steps and the values read set eig_tol
        h = _steps(x, 1 / 4)
        H, f_max, h = _second_differences(fun, x, args, h)
        H, exact = _finite(H, x), False
    else:
        H, exact = _hessian_at(fun, x, jac, hess, args)
    lam, vecs = np.linalg.eigh(H)
    size = max(1.0, float(np.max(np.abs(x))))
    curvature = max(1.0, float(np.max(np.abs(lam))))
    if gtol is None:
        if jac is None:
            # The differences' own error at x, measured: truncation, h**2 |f'''| / 6, estimated from steps h / 2,
            # and rounding, eps max|f| / h (a bound: a margin of a few ulps of f's own evaluation), for the steps h
            # taken (grown where a constant in f swamps the differences: :func:`gradient`); never below the
            # unit-scale truncation, 1000 eps**(2/3) max(1, |x|)**2. The former 1000 eps**(2/3) max(1, |f|) |x|**2
            # took f's size for its derivatives': 3.7e4 at 1e9 + (x - 3)**2, where every point was "critical".
            gtol = _GTOL_FACTOR * eps ** (2 / 3) * size**2 + _ROUNDING_MARGIN * (g_truncation + g_rounding)
        else:
            # An exact gradient carries no error from f's size: a constant added to f made a point of gradient
            # norm 2.2 "critical" (gtol 3.7 at f = 1e8). Near a critical point |g| ~ |H| |dx|, dx the roots' own
            # precision relative to |x|.
            gtol = _GTOL_FACTOR * eps ** (2 / 3) * curvature * size
    if eig_tol is None:
        if exact:
            eig_tol = _EIG_RTOL_EXACT * np.sqrt(eps) * curvature
        elif jac is not None:
            # differences of an exact gradient err by about eps**(2/3) of its scale (:func:`hessian`), not by f's:
            # a constant added to f, or a condition number of 1e6, made eigenvalues of 1 and 2 "zero"
            eig_tol = _EIG_RTOL_JAC * eps ** (2 / 3) * curvature
        else:
            # 4 times the differences' own error, estimated at x (exact for a pure h^2 truncation, as y^4's; the
            # margin is for higher-order terms), but never finer than differences of an exact gradient resolve.
            # 100 sqrt(eps) max(1, |lambda|_max, |f|) took their error beside a large curvature for sqrt(eps)
            # |lambda|_max: 1e6 x^2 + y^2 at 0 was "degenerate" (eig_tol 3 beside the eigenvalue 2, which the
            # differences get to 1e-9), though condition_number gave 1e6. And never below 100 sqrt(eps) (the
            # former tolerance at unit scale, it grew with |f|): x comes from a root finder, and along a degenerate
            # direction a third derivative moves the curvature with x's distance from the critical point, which no
            # difference at x measures (the cubic's inflection, found at x = -6.7e-10, had the eigenvalue -4e-9
            # and was called a maximum on 6 of 40 seeds of find_critical_points). Nor below what that distance
            # makes of it: along a direction of curvature lambda and third derivative c, a point of gradient g has
            # a critical point of the same curvature's sign nearby only if lambda**2 > 2 c g (the model
            # g + lambda t + c t**2 / 2 has a root there); else its nearest may be an inflection. So eigenvalues
            # up to 2 sqrt(2 c g) count as zero, with c measured (the gradient's truncation) and g bounded by
            # the extrapolated gradient. Beside a large constant in f the differences' steps grow, and with them
            # what counts as critical: at 1e6 + x**3 points up to 0.01 from the inflection pass gtol, and their
            # curvatures of +-0.01 made "minima" and "maxima" of them.
            truncation, rounding = _second_difference_error(fun, x, args, H, h, f_max)
            eig_tol = max(_EIG_RTOL_JAC * eps ** (2 / 3) * curvature,
                          _EIG_RTOL_POSITION * np.sqrt(eps),
                          _EIG_POSITION_MARGIN * math.sqrt(2 * third * g_bound),
                          _EIG_SAFETY * truncation + rounding)
    pos, neg = lam > eig_tol, lam < -eig_tol

    def result(kind: str, reason: str) -> CriticalPoint:
        return CriticalPoint(x, kind, f0, gnorm, lam, vecs, reason)

    if gnorm > gtol:
        return result("noncritical", f"gradient norm {gnorm:.3g} > gtol = {gtol:.3g}")
    if pos.all():
        return result("minimum", "all Hessian eigenvalues are positive")
    if neg.all():
        return result("maximum", "all Hessian eigenvalues are negative")
    if pos.any() and neg.any():
        return result("saddle", "the Hessian has eigenvalues of both signs")
    rises, falls = _probe_null_directions(fun, x, f0, vecs[:, ~(pos | neg)], args)
    if (rises or pos.any()) and (falls or neg.any()):
        return result("saddle", "singular Hessian, but f both rises and falls next to x (higher-order test)")
    return result("degenerate", "singular Hessian and no descent (or ascent) direction found: test inconclusive")


def find_critical_points(
    fun: Callable[..., float],
    bounds: Sequence[tuple[float, float]],
    *,
    jac: Callable | None = None,
    hess: Callable | None = None,
    args: tuple = (),
    n_starts: int = 64,
    seed: int | None = 0,
    gtol: float | None = None,
    eig_tol: float | None = None,
) -> list[CriticalPoint]:
    """Search a box for the critical points of ``fun`` and classify each.

    Multi-start root finding of the gradient: ``scipy.optimize.root`` (MINPACK's hybrid Powell method, with
    ``hess`` as the Jacobian when given) from a scrambled Sobol sequence of starts, which covers the box
    evenly. Roots outside the box or with a gradient norm above ``gtol`` are dropped; roots closer than 1e-4
    of the box width in every coordinate are merged (keeping the one with the smallest gradient).

    Parameters
    ----------
    fun : callable
        ``fun(x, *args) -> float``.
    bounds : sequence of (low, high)
        One pair per coordinate; finite, with ``low < high``.
    jac, hess : callable, optional
        Analytic gradient and Hessian; finite differences otherwise.
    args : tuple, default ()
        Extra arguments for ``fun``, ``jac`` and ``hess``.
    n_starts : int, default 64
        Number of starts, rounded up to a power of two (Sobol points balance only in powers of two); at most
        ``MAX_STARTS`` (2**20). A start from which the root finder reaches a point where ``fun`` or ``jac`` is
        not finite is skipped, and so is a root whose classification needs values where they are not.
    seed : int >= 0 or None, default 0
        Seeds the Sobol scrambling (None: fresh entropy, a different set of starts on each call).
    gtol, eig_tol : float, optional
        Passed to :func:`classify_critical_point`.

    Returns
    -------
    list of CriticalPoint
        Sorted by function value. Critical points whose basin of attraction (for the root finder) misses
        every start are not found: raise ``n_starts`` for intricate functions.

    Raises
    ------
    ValueError
        If ``bounds`` is not a sequence of finite ``(low, high)`` pairs with ``low < high``, ``n_starts`` is not
        an integer in ``[1, MAX_STARTS]``, ``seed`` is neither None nor an integer >= 0, ``gtol`` or ``eig_tol``
        is not None nor a finite number >= 0, or ``fun``, ``jac`` or ``hess`` returns a value of the wrong shape
        or a complex one. (A :class:`NonFiniteError` met from a start or at a root is not raised: that start or
        root is skipped.)
    TypeError
        If ``fun``, ``jac`` or ``hess`` returns a value of no real number type.
    """
    args = _callables(fun, jac, hess, args)
    from scipy.optimize import root
    from scipy.stats import qmc

    box = np.asarray(bounds, dtype=np.float64)
    if box.ndim != 2 or box.shape[1] != 2 or not np.all(np.isfinite(box)) or np.any(box[:, 0] >= box[:, 1]):
        raise ValueError(f"bounds must be finite (low, high) pairs with low < high, got {bounds!r}")
    with np.errstate(over="ignore"):
        if not np.all(np.isfinite(box[:, 1] - box[:, 0])):
            raise ValueError(f"bounds must have widths high - low within float64's range, got {bounds!r}")
    if isinstance(n_starts, bool) or not isinstance(n_starts, Integral) or not 1 <= n_starts <= MAX_STARTS:
        raise ValueError(f"n_starts must be an integer in [1, {MAX_STARTS}], got {n_starts!r}")
    if not (seed is None or (isinstance(seed, Integral) and not isinstance(seed, bool) and seed >= 0)):
        raise ValueError(f"seed must be None or an integer >= 0, got {seed!r}")  # (NumPy's message did not name it)
    gtol, eig_tol = _tolerance("gtol", gtol), _tolerance("eig_tol", eig_tol)
    lo, width = box[:, 0], box[:, 1] - box[:, 0]
    starts = lo + width * qmc.Sobol(len(box), seed=seed).random_base2(int(np.ceil(np.log2(n_starts))))

    def grad(x):  # (checked as everywhere else: a complex jac was cast with only a ComplexWarning)
        return _jacobian(jac, x, args) if jac is not None else gradient(fun, x, args=args)

    def root_jac(x):
        return real_array(hess(x, *args), (x.size, x.size), "hess").astype(np.float64)

    found: list[CriticalPoint] = []
    for x0 in starts:
        try:
            with np.errstate(all="ignore"):
                x = root(grad, x0, jac=root_jac if hess is not None else None, method="hybr").x
        except NonFiniteError:  # the root finder left the function's finite region from this start
            continue
        if not np.all(np.isfinite(x)) or np.any(np.abs(x - lo - width / 2) > width / 2 * (1 + 1e-9)):
            continue
        try:
            point = classify_critical_point(fun, x, jac=jac, hess=hess, args=args, gtol=gtol, eig_tol=eig_tol)
        except NonFiniteError:  # its differences or probes reach outside f's finite region: skipped as a start is
            continue
        if point.kind == "noncritical":
            continue
        twin = next((i for i, p in enumerate(found) if np.all(np.abs(p.x - x) <= 1e-4 * width)), None)
        if twin is None:
            found.append(point)
        elif point.gradient_norm < found[twin].gradient_norm:
            found[twin] = point
    return sorted(found, key=lambda p: p.value)


def _hessian_eigenvalues(fun, x, jac, hess, args) -> np.ndarray:
    """Ascending eigenvalues of the (analytic or finite-difference) Hessian at ``x``."""
    return np.linalg.eigvalsh(_hessian_at(fun, _point(x), jac, hess, args)[0])


def condition_number(
    fun: Callable[..., float],
    x: npt.ArrayLike,
    *,
    jac: Callable | None = None,
    hess: Callable | None = None,
    args: tuple = (),
) -> float:
    """Condition number ``max |lambda| / min |lambda|`` of the Hessian at ``x`` (``inf`` if singular).

    Gradient descent needs about ``condition_number`` steps per e-fold of error on a quadratic: the learning rate
    is capped by the steepest direction (``lr < 2 / lambda_max``) and the flattest one then moves by
    ``lr * lambda_min`` of its error per step.

    Singular means singular in float64: ``min |lambda| <= n eps max |lambda|``, the tolerance of
    ``numpy.linalg.matrix_rank``. (The eigenvalues of an exactly singular Hessian come out as rounding, about
    ``eps max |lambda|``, not 0: ``[[0.1, 0.3], [0.3, 0.9]]`` gave 7.2e16.)

    Parameters
    ----------
    fun : callable
        ``fun(x, *args) -> float``.
    x : array_like of shape (n,)
        The point, checked as :func:`gradient` checks it.
    jac : callable, optional
        ``jac(x, *args) -> ndarray (n,)``, the analytic gradient. Without ``hess``, the Hessian is then the
        central difference of ``jac`` (:func:`hessian`); without either, the second difference of ``fun``.
    hess : callable, optional
        ``hess(x, *args) -> ndarray (n, n)``, the analytic Hessian (symmetrised); takes precedence over ``jac``.
    args : tuple, default ()
        Extra arguments for ``fun``, ``jac`` and ``hess``.

    Returns
    -------
    float
        ``max |lambda| / min |lambda|`` over the Hessian's eigenvalues ``lambda``, at least 1; ``inf`` when the
        Hessian is singular in float64 (a zero Hessian included).

    Raises
    ------
    TypeError
        If ``x`` is not real-valued, or ``fun``, ``jac`` or ``hess`` returns a value of no real number type.
    ValueError
        If ``x`` is not a non-empty, finite 1-D array, or ``fun``, ``jac`` or ``hess`` returns a value of the
        wrong shape or a complex one.
    NonFiniteError
        If ``fun``, ``jac`` or ``hess`` returns NaN or inf, or the Hessian holds NaN or inf.
    """
    args = _callables(fun, jac, hess, args)
    lam = np.abs(_hessian_eigenvalues(fun, x, jac, hess, args))
    singular = lam.min() <= lam.size * np.finfo(np.float64).eps * lam.max()
    return float("inf") if singular else float(lam.max() / lam.min())


def max_stable_learning_rate(
    fun: Callable[..., float],
    x: npt.ArrayLike,
    *,
    jac: Callable | None = None,
    hess: Callable | None = None,
    args: tuple = (),
) -> float:
    """The largest learning rate ``2 / lambda_max`` at which gradient descent is stable near ``x``.

    On a quadratic with Hessian ``H`` the error evolves as ``e <- (I - lr H) e``, whose eigen-components are
    multiplied by ``1 - lr lambda_i``: all shrink exactly when ``0 < lr < 2 / lambda_max``, and the steepest
    one grows geometrically for any larger ``lr``. For other functions this is the local answer for the
    quadratic model at ``x``. Returns ``inf`` when no eigenvalue is positive (no curvature limits the step).

    Parameters
    ----------
    fun : callable
        ``fun(x, *args) -> float``.
    x : array_like of shape (n,)
        The point, checked as :func:`gradient` checks it.
    jac : callable, optional
        ``jac(x, *args) -> ndarray (n,)``, the analytic gradient. Without ``hess``, the Hessian is then the
        central difference of ``jac`` (:func:`hessian`); without either, the second difference of ``fun``.
    hess : callable, optional
        ``hess(x, *args) -> ndarray (n, n)``, the analytic Hessian (symmetrised); takes precedence over ``jac``.
    args : tuple, default ()
        Extra arguments for ``fun``, ``jac`` and ``hess``.

    Returns
    -------
    float
        ``2 / lambda_max`` for the Hessian's largest eigenvalue ``lambda_max``, or ``inf`` when
        ``lambda_max <= 0``.

    Raises
    ------
    TypeError
        If ``x`` is not real-valued, or ``fun``, ``jac`` or ``hess`` returns a value of no real number type.
    ValueError
        If ``x`` is not a non-empty, finite 1-D array, or ``fun``, ``jac`` or ``hess`` returns a value of the
        wrong shape or a complex one.
    NonFiniteError
        If ``fun``, ``jac`` or ``hess`` returns NaN or inf, or the Hessian holds NaN or inf.
    """
    args = _callables(fun, jac, hess, args)
    lam_max = float(_hessian_eigenvalues(fun, x, jac, hess, args)[-1])
    return 2.0 / lam_max if lam_max > 0 else float("inf")


def gradient_norms(
    fun: Callable[..., float], path: npt.ArrayLike, *, jac: Callable | None = None, args: tuple = ()
) -> np.ndarray:
    """Gradient norm at each point of ``path`` (shape ``(n_points, n)``): the vanishing-gradient diagnostic.

    Along an optimizer's trajectory (``minimize(..., options={"return_path": True}).xs``) a norm that is tiny
    while the loss is still high shows a plateau or saturation (``tanh`` at 4: ``1 - tanh(4)**2 = 0.0013``)
    rather than a minimum.

    Parameters
    ----------
    fun : callable
        ``fun(x, *args) -> float``; differenced by :func:`gradient` (central differences) when ``jac`` is None.
    path : array_like of shape (n_points, n)
        The points, one a row; converted to float64.
    jac : callable, optional
        ``jac(x, *args) -> ndarray (n,)``, the analytic gradient, used instead of differences of ``fun``.
    args : tuple, default ()
        Extra arguments for ``fun`` and ``jac``.

    Returns
    -------
    ndarray of shape (n_points,), float64
        The Euclidean norm of the gradient at each point (empty for an empty path).

    Raises
    ------
    ValueError
        If ``path`` is not 2-D; without ``jac``, if a point is not finite or has no coordinate (as in
        :func:`gradient`), or ``fun`` returns an array of several values or a complex number; with ``jac``, if
        it returns an array of the wrong shape.
    TypeError
        If ``fun`` returns no number, or ``jac`` a complex or non-numeric array.
    NonFiniteError
        If ``fun`` or ``jac`` returns NaN or inf.
    """
    args = _callables(fun, jac, args=args)
    path = np.asarray(path, dtype=np.float64)
    if path.ndim != 2:
        raise ValueError(f"path must have shape (n_points, n), got {path.shape}")
    grad = (lambda p: _jacobian(jac, p, args)) if jac is not None else (  # (a wrong length or NaN passed)
        lambda p: gradient(fun, p, args=args)
    )
    return np.array([np.linalg.norm(grad(p)) for p in path])
