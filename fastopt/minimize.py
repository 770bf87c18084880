"""``fastopt.minimize``: SciPy's ``minimize`` contract over fastopt's compiled step rules, plus Newton's method.

The first-order methods run the very step functions the estimator's fused epoch runs (``fastopt.optim``,
compiled from ``csrc/rules.h``), so a trajectory here shows exactly what ``LinearRegressor`` does with the same
optimizer. Newton's method comes in two forms (Goodfellow, Bengio & Courville, *Deep Learning*, 2016, sec. 8.6.1):
regularised, ``x <- x - lr (H + alpha I)^-1 g``, which jumps to *any* critical point, saddles included; and saddle-free,
which replaces ``H`` by ``|H|`` (eigenvalues by their absolute values) so that negative curvature pushes away from a
saddle instead of towards it (Dauphin et al., 2014).

Examples
--------
>>> import numpy as np
>>> from fastopt import minimize
>>> from fastopt.functions import ROSENBROCK as rb
>>> res = minimize(rb.fun, rb.x0, jac=rb.grad, method="adam", options={"lr": 0.05, "maxiter": 3000})
>>> bool(np.allclose(res.x, [1.0, 1.0], atol=1e-2))
True
"""
from __future__ import annotations

import inspect
import math
import warnings
from collections.abc import Callable, Sequence
from enum import IntEnum
from numbers import Integral, Real
from typing import Any, ClassVar

import numpy as np
from scipy.optimize import OptimizeResult

from fastopt import landscape, optim

__all__ = ["CONJUGATE", "FIRST_ORDER", "METHODS", "NEWTON", "Status", "minimize"]


class Status(IntEnum):
    """``OptimizeResult.status`` codes (``success`` is True for GTOL and FTOL only)."""

    GTOL = 0  #: the gradient norm fell to ``gtol``
    MAXITER = 1  #: ``maxiter`` iterations done without meeting a tolerance
    FTOL = 2  #: the relative change of ``f`` fell to ``ftol``
    DIVERGED = 3  #: ``f``, the gradient or ``x`` became non-finite, or ``f`` grew past ``divergence``
    #: Newton: ``H + alpha I`` (or ``|H| + alpha I``) is singular to rounding: one of its eigenvalues is at most
    #: ``n eps max(|lambda|_max, alpha)`` in size (a relative test: scaling ``f`` changes nothing)
    SINGULAR = 4
    LINE_SEARCH = 5  #: CG: no step along the steepest-descent direction satisfies the strong Wolfe conditions
    CALLBACK = 99  #: ``callback`` raised ``StopIteration`` (SciPy's code)


_MESSAGES = {
    Status.GTOL: "Optimization terminated successfully: the gradient norm is at most gtol.",
    Status.FTOL: "Optimization terminated successfully: the relative change of f is at most ftol.",
    Status.MAXITER: "Maximum number of iterations (maxiter) reached before gtol or ftol.",
    Status.CALLBACK: "`callback` raised `StopIteration`.",
}

# Options every method understands, with their defaults (lr: 0.01 for the step rules, as the estimator's
# learning_rate; 1.0, the full step, for Newton). See minimize's docstring.
_COMMON = {
    "maxiter": 1000,
    "gtol": 1e-5,
    "ftol": 0.0,
    "norm": math.inf,
    "lr": None,
    "return_path": False,
    "seed": None,
    "divergence": optim.DIVERGENCE_FACTOR,
}


def _takes(func: Callable, name: str) -> bool:
    """Whether ``func`` has a parameter called ``name`` (False for callables without a signature)."""
    try:
        return name in inspect.signature(func).parameters
    except (TypeError, ValueError):
        return False


def _check_x0(x0) -> np.ndarray:
    x = np.asarray(x0)
    if np.iscomplexobj(x) or x.dtype.kind not in "biuf":
        raise TypeError(f"x0 must be real-valued, got dtype {x.dtype}.")
    if x.ndim > 1:
        raise ValueError(f"x0 must be 1-D (or a scalar), got shape {x.shape}.")
    x = np.array(np.atleast_1d(x), dtype=x.dtype if x.dtype in (np.float32, np.float64) else np.float64)
    if x.size == 0:
        raise ValueError("x0 is empty.")
    if not np.all(np.isfinite(x)):
        raise ValueError("x0 contains NaN or inf.")
    return x


def _positive(name: str, value, *, allow_zero: bool = False, allow_inf: bool = False) -> float:
    v = math.nan
    if isinstance(value, Real) and not isinstance(value, bool):
        try:
            v = float(value)
        except OverflowError:  # an integer beyond float's range, such as 10**400
            v = math.inf if value > 0 else -math.inf
    ok = not math.isnan(v) and (v >= 0 if allow_zero else v > 0) and (allow_inf or math.isfinite(v))
    if not ok:
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"options['{name}'] must be a {'' if allow_inf else 'finite '}number {bound}, got {value!r}.")
    return v


def _parse_options(method: str, options: dict | None) -> tuple[dict, dict]:
    """Split ``options`` into the driver's settings (defaults filled in, validated) and the step rule's."""
    if options is None:
        options = {}
    if not isinstance(options, dict):
        raise TypeError(f"options must be a dict, got {type(options).__name__}.")
    bad = [k for k in options if not isinstance(k, str)]
    if bad:  # (options={1: 2} reached the step rule as **kwargs: Python's bare "keywords must be strings")
        raise TypeError(f"options keys must be option names (strings), got {bad[0]!r}.")
    kind = METHOD_CLASSES[method]
    own = {**_COMMON, **kind.options}
    opts = {**own, **{k: v for k, v in options.items() if k in own}}
    hyper = {k: v for k, v in options.items() if k not in own}
    if not kind.rule_options and hyper:
        raise ValueError(f"unknown option(s) {sorted(hyper)} for method {method!r}; it accepts {sorted(own)}.")
    maxiter = opts["maxiter"]
    if not isinstance(maxiter, Integral) or isinstance(maxiter, bool) or not 0 <= maxiter <= 2**62:
        # (beyond 2**62 the schedule's step count, an int64, refused it as "max_epochs")
        raise ValueError(f"options['maxiter'] must be an integer in [0, 2**62], got {maxiter!r}.")
    seed = opts["seed"]
    if not (seed is None or isinstance(seed, np.random.Generator)
            or (isinstance(seed, Integral) and not isinstance(seed, bool) and seed >= 0)):
        # (NumPy's own messages, "expected non-negative integer", did not name the option)
        raise ValueError(f"options['seed'] must be None, an integer >= 0 or a numpy.random.Generator, got {seed!r}.")
    for name in ("gtol", "ftol"):
        opts[name] = _positive(name, opts[name], allow_zero=True)
    opts["norm"] = _positive("norm", opts["norm"], allow_inf=True)
    opts["divergence"] = _positive("divergence", opts["divergence"], allow_inf=True)
    opts["lr"] = _positive("lr", opts["lr"]) if opts["lr"] is not None else kind.default_lr
    if not isinstance(opts["return_path"], (bool, np.bool_)):
        raise ValueError(f"options['return_path'] must be True or False, got {opts['return_path']!r}.")
    kind.check_options(opts)
    return opts, hyper


def _schedule(opts: dict, t: int) -> float:
    return optim.schedule_lr(
        opts["schedule"], opts["lr"], t - 1, opts["maxiter"],
        end_factor=opts["end_factor"], power_t=opts["power_t"], gamma=opts["gamma"],
    )


class _Problem:
    """``fun``, ``jac`` and ``hess`` behind one interface that passes ``args`` and ``rng``, counts calls and
    checks what comes back."""

    def __init__(self, fun, jac, hess, args: tuple, rng: np.random.Generator, x0: np.ndarray):
        if not callable(fun):
            raise TypeError(f"fun must be callable, got {type(fun).__name__}.")
        if hess is not None and not callable(hess):
            raise TypeError(f"hess must be callable or None, got {type(hess).__name__}.")
        # Identity and type tests: `jac in (None, False, ...)` compared an array elementwise ("truth value of an
        # array is ambiguous" for jac=np.array([1., 2.])) and took jac=0 for False.
        if not (callable(jac) or jac is None or jac is True or jac is False
                or (isinstance(jac, str) and jac in ("2-point", "3-point"))):
            raise ValueError(f"jac must be a callable, True, '2-point', '3-point' or None, got {jac!r}.")
        self.fun, self.jac, self.hess, self.args, self.rng = fun, jac, hess, args, rng
        self.n, self.dtype = x0.size, x0.dtype
        self.nfev = self.njev = self.nhev = 0
        # Signatures are read once here: inspect is slow next to a step of a small problem.
        self._wants_rng = {id(f): _takes(f, "rng") for f in (fun, jac, hess) if callable(f)}
        self.scheme = None if (callable(jac) or jac is True) else (jac or "2-point")
        #: whether the analytic gradient (jac, or fun with jac=True) draws from rng
        self.stochastic_gradient = self.scheme is None and self._wants_rng[id(fun if jac is True else jac)]
        if self.scheme and self._wants_rng[id(fun)]:
            raise ValueError("fun takes an rng (a stochastic objective), but finite differences need a "
                             "deterministic one: pass its gradient as jac (a callable, or jac=True).")

    def _call(self, func: Callable, x: np.ndarray):
        x = x.copy()  # as SciPy's: a function that writes into its argument must not move the iterate
        if self._wants_rng[id(func)]:
            return func(x, *self.args, rng=self.rng)
        return func(x, *self.args)

    # The checks of what fun, jac and hess return are landscape's, so that both modules take and refuse the same
    # values (landscape took the string "1.0" as 1.0 and cast a complex jac with only a ComplexWarning).
    def _scalar(self, f) -> float:
        return landscape.real_scalar(f, "fun")

    def _vector(self, g, what: str) -> np.ndarray:
        return np.array(landscape.real_array(g, (self.n,), what), dtype=self.dtype)

    def value(self, x: np.ndarray) -> float:
        self.nfev += 1
        return self._scalar(self._call(self.fun, x))

    def _grad(self, x: np.ndarray) -> np.ndarray:
        """The analytic gradient (``jac`` callable or ``jac=True``)."""
        self.njev += 1
        if self.jac is True:
            self.nfev += 1
            return self._vector(self._pair(x)[1], "fun (with jac=True)")
        return self._vector(self._call(self.jac, x), "jac")

    def _pair(self, x: np.ndarray):
        """``fun(x)`` with ``jac=True``: any sequence of two, ``out[0]`` the value and ``out[1]`` the gradient, as
        SciPy takes it (a list ``[value, grad]``, or ``np.array([f, g])`` in 1-D, was refused as no pair)."""
        out = self._call(self.fun, x)
        is_sequence = isinstance(out, Sequence) and not isinstance(out, (str, bytes))
        if (is_sequence or (isinstance(out, np.ndarray) and out.ndim >= 1)) and len(out) == 2:
            return out[0], out[1]
        got = (f"{type(out).__name__} of length {len(out)}" if is_sequence else
               f"an array of shape {out.shape}" if isinstance(out, np.ndarray) else type(out).__name__)
        raise ValueError(f"with jac=True, fun must return a pair (value, gradient), got {got}.")

    def value_and_grad(self, x: np.ndarray) -> tuple[float, np.ndarray]:
        # njev counts gradients however they are made, as SciPy's: with jac=True or differences it stayed 0
        # (SciPy's CG on x @ x: njev 3), and fun's calls for them count in nfev as well.
        if self.jac is True:
            self.nfev += 1
            self.njev += 1
            f, g = self._pair(x)
            return self._scalar(f), self._vector(g, "fun (with jac=True)")
        f = self.value(x)
        if self.scheme is None:
            return f, self._grad(x)
        if not math.isfinite(f):
            return f, np.full(self.n, np.nan, dtype=self.dtype)
        self.njev += 1
        try:
            return f, landscape.gradient(self.value, x, scheme=self.scheme, f0=f)
        except landscape.NonFiniteError:  # a probe left f's domain: the run stops on a non-finite gradient
            return f, np.full(self.n, np.nan, dtype=self.dtype)

    def hessian(self, x: np.ndarray) -> np.ndarray:
        """``hess(x)``, or central differences of the analytic gradient, or second differences of ``fun``."""
        if self.hess is not None:
            self.nhev += 1
            H = landscape.real_array(self._call(self.hess, x), (self.n, self.n), "hess").astype(np.float64)
            return (H + H.T) / 2
        try:
            return landscape.hessian(self.value, x, jac=self._grad if self.scheme is None else None)
        except landscape.NonFiniteError:  # as a non-finite hess: the Newton step stops on it
            return np.full((self.n, self.n), np.nan)


_X0_GRADIENT = "the gradient at x0 is not finite"


class _Method:
    """A family of ``minimize`` methods; its class attributes answer for it (no caller tests method names).

    ``options``: its own options with their defaults (beside :data:`_COMMON`); ``rule_options``: whether other
    options go to the step rule (:func:`fastopt.optim.make`) instead of being refused; ``default_lr``;
    ``uses_hessian``; ``stochastic``: whether it takes noisy minibatch gradients; ``lr_free``: whether ``lr`` is
    no step size to tune (Newton's full step, a line search); ``divergence_hint``: what to try on divergence.
    An instance is one step: ``step(x, g, t, problem)`` updates ``x`` in place and returns a stop
    :class:`Status` or None.
    """

    options: ClassVar[dict] = {}
    rule_options: ClassVar[bool] = False
    default_lr: ClassVar[float] = 0.01  # as the estimator's learning_rate
    uses_hessian: ClassVar[bool] = False
    stochastic: ClassVar[bool] = False
    lr_free: ClassVar[bool] = False
    divergence_hint: ClassVar[str] = "lower lr (fastopt.landscape.max_stable_learning_rate gives 2 / lambda_max)"

    @staticmethod
    def check_options(opts: dict) -> None:
        """Validate the method's own options (``opts`` has every default filled in)."""


class _FirstOrder(_Method):
    """One step of a compiled rule: clip a copy of the gradient, schedule the rate, update ``x`` in place."""

    options: ClassVar[dict] = {"schedule": "constant", **optim.SCHEDULE_DEFAULTS, "clip_norm": None}
    rule_options = True
    stochastic = True

    @staticmethod
    def check_options(opts: dict) -> None:
        if opts["clip_norm"] is not None:
            _positive("clip_norm", opts["clip_norm"])
        # One call validates the schedule's name and parameters.
        _schedule(opts, 1)

    def __init__(self, method: str, hyper: dict, opts: dict, x: np.ndarray):
        try:
            self.spec = optim.make(method, **hyper)
        except ValueError as exc:
            raise ValueError(f"{exc} (minimize's own options: {sorted({**_COMMON, **self.options})})") from None
        self.state = self.spec.init_state(x.size, x.dtype)
        self.opts = opts

    def __call__(self, x: np.ndarray, g: np.ndarray, t: int, problem: _Problem) -> Status | None:
        if self.opts["clip_norm"] is not None:
            g = g.copy()
            optim.clip_grad_norm(g, self.opts["clip_norm"])
        self.spec.step(x, g, self.state, t, _schedule(self.opts, t))
        return None


class _Newton(_Method):
    """One (regularised or saddle-free) Newton step through the eigendecomposition of the Hessian."""

    options: ClassVar[dict] = {"alpha": 0.0}
    default_lr = 1.0  # the full step
    uses_hessian = True
    lr_free = True
    divergence_hint = "the function may be unbounded below, or raise options['alpha']"

    @staticmethod
    def check_options(opts: dict) -> None:
        _positive("alpha", opts["alpha"], allow_zero=True)

    def __init__(self, method: str, hyper: dict, opts: dict, x: np.ndarray):
        self.saddle_free, self.lr, self.alpha = method == "saddle_free_newton", opts["lr"], opts["alpha"]

    def __call__(self, x: np.ndarray, g: np.ndarray, t: int, problem: _Problem) -> Status | None:
        H = problem.hessian(x)
        if not np.all(np.isfinite(H)):
            return Status.DIVERGED
        lam, V = np.linalg.eigh(H)
        # (H + alpha I)^-1 g, or with |H| = V |Lambda| V^T in place of H: negative curvature then repels.
        d = (np.abs(lam) if self.saddle_free else lam) + self.alpha
        # A divisor at the rounding level of the largest eigenvalue (eigh's error is about n eps |H|, and
        # adding alpha rounds at eps alpha) gives a step of pure rounding noise. Relative to that scale alone:
        # an absolute floor, max(1, |lambda|_max), called 2e-16 I singular (f scaled by 1e-16). H = 0 with
        # alpha = 0 has scale 0 and d = 0, which the <= still catches.
        scale = max(float(np.abs(lam).max()), self.alpha)
        if np.any(np.abs(d) <= x.size * np.finfo(float).eps * scale):
            return Status.SINGULAR
        x -= (self.lr * (V @ ((V.T @ g.astype(np.float64)) / d))).astype(x.dtype)
        return None


# Beyond these the squares of a vector's entries leave float64's normal range (1e-308 to 1e308).
_SQUARE_SAFE = (1e-150, 1e150)


def _scale(*vectors: np.ndarray) -> float:
    """The largest ``|entry|`` of ``vectors`` if squares of it would overflow or underflow, else 1.0 (no scaling,
    the same bits), and 0.0 when every entry is 0."""
    a = max(float(np.max(np.abs(v))) if v.size else 0.0 for v in vectors)
    if a == 0.0:
        return 0.0
    return a if math.isfinite(a) and not _SQUARE_SAFE[0] < a < _SQUARE_SAFE[1] else 1.0


def _norm(v: np.ndarray, ord=None) -> float:
    """``np.linalg.norm(v, ord)`` without overflow: gradients near 1e200 had the 2-norm inf, with NumPy's warning
    (the stopping test read it as not converged, which was right by luck)."""
    a = _scale(v)
    return float(np.linalg.norm(v, ord=ord)) if a in (0.0, 1.0) else a * float(np.linalg.norm(v / a, ord=ord))


def _unit_scaled(p: np.ndarray) -> np.ndarray:
    """``p``, divided by its largest ``|entry|`` where squares of that leave float64's range: a line search
    along ``p`` for a gradient near 1e200 had ``phi'(0) = g . p`` overflow to -inf, and no step met its
    sufficient decrease (CG stopped at ``x0``). Unchanged otherwise (the same bits)."""
    a = _scale(p)
    return p if a in (0.0, 1.0) else p / a


def _dot(u: np.ndarray, v: np.ndarray) -> float:
    """``u @ v`` without overflow in its terms: inf only where the value itself is beyond float64."""
    a, b = _scale(u), _scale(v)
    if a == 0.0 or b == 0.0:
        return 0.0
    if a == 1.0 and b == 1.0:
        return float(u @ v)
    return a * b * float((u / a) @ (v / b))  # (Python floats: a product beyond range is inf, without a warning)


def _cubic_min(a, fa, da, b, fb, db) -> float:
    """Minimiser of the cubic interpolating ``f`` and ``f'`` at ``a`` and ``b`` (Nocedal & Wright eq. 3.59),
    or NaN when it does not exist (Python floats: a zero denominator, as along a linear or concave stretch, raised
    ZeroDivisionError where NumPy's would have given NaN)."""
    try:
        with np.errstate(all="ignore"):  # (NumPy scalars: NaN or inf, judged by the caller)
            d1 = da + db - 3.0 * (fa - fb) / (a - b)
            disc = d1 * d1 - da * db
            if not disc >= 0:
                return math.nan
            d2 = math.copysign(math.sqrt(disc), b - a)
            return b - (b - a) * (db + d2 - d1) / (db - da + 2.0 * d2)
    except (ZeroDivisionError, OverflowError):
        return math.nan


class _NonlinearCG(_Method):
    """Nonlinear conjugate gradients, Polak-Ribiere+ (Nocedal & Wright, *Numerical Optimization*, 2006, sec. 5.2).

    ``p = -g + beta p`` with ``beta = max(0, g_new . (g_new - g) / (g . g))`` (PR+, N&W eq. 5.45: a negative
    ``beta`` restarts along ``-g``), a restart whenever ``p`` is not a descent direction (strong-Wolfe steps with
    ``c2 < 1/2`` guarantee descent for Fletcher-Reeves, N&W Thm. 5.7, but not quite for PR+), and, if asked for, a
    restart every ``restart`` iterations (by default none, as SciPy's ``CG``: see ``__init__``). The step
    length comes from the strong-Wolfe line search of N&W Algorithms
    3.5 (bracketing, extrapolating the trial step by cubic interpolation within ten times the last) and 3.6 (zoom by
    safeguarded cubic interpolation), with SciPy's ``CG`` constants ``c1 = 1e-4``, ``c2 = 0.4`` and its first trial
    step, ``min(1, 2.02 (f - f_prev) / phi'(0))``. A search whose ``MAX_TRIES`` trials meet the sufficient decrease
    but never the curvature condition (``f`` still falling at its longest step, as where it is unbounded below)
    takes the lowest of them, as SciPy's ``CG`` goes on down. Where no trial decreases ``f`` enough (near the
    minimum, its decrease drowns in the rounding of ``f``), the first trial that meets the approximate Wolfe
    conditions of Hager & Zhang (*SIAM J. Optim.* 16(1), 2005, sec. 4; CG_DESCENT's ``epsilon``): the curvature
    condition, and ``f`` at most ``APPROX_WOLFE_EPS |f|`` above its value, the gradient's slope being what
    still resolves there. If no step along ``p`` is found, CG restarts along ``-g``; if that fails too, it stops
    with ``Status.LINE_SEARCH`` (SciPy's "precision loss").
    """

    MAX_TRIES = 30  # trial steps per line search (bracketing and zoom together)
    APPROX_WOLFE_EPS = 1e-6  # Hager & Zhang's default: f may rise by this much of |f| on an approximate-Wolfe step
    options: ClassVar[dict] = {"c1": 1e-4, "c2": 0.4, "restart": None}
    lr_free = True  # the line search chooses the step

    @staticmethod
    def check_options(opts: dict) -> None:
        c1, c2 = _positive("c1", opts["c1"]), _positive("c2", opts["c2"])
        if not 0 < c1 < c2 < 1:
            raise ValueError(f"options c1 and c2 must satisfy 0 < c1 < c2 < 1 (strong Wolfe), got {c1}, {c2}.")
        restart = opts["restart"]
        if restart is not None and (not isinstance(restart, Integral) or isinstance(restart, bool) or restart < 1):
            raise ValueError(f"options['restart'] must be an integer >= 1 or None, got {restart!r}.")

    def __init__(self, method: str, hyper: dict, opts: dict, x: np.ndarray):
        self.c1, self.c2 = opts["c1"], opts["c2"]
        # None: no periodic restart. A restart every n iterations (the former default) discarded the conjugacy
        # that ill-conditioned problems of few variables need: 40 quadratics of 5 variables, condition number 1e6,
        # reached SciPy's gtol on 1 against SciPy's CG's 22 (now 24, with the approximate Wolfe steps below);
        # 20 variables at 1e4: 33 before, 29 now, SciPy 33 (their misses end within 4x of gtol, SciPy's too).
        self.restart = opts["restart"]
        self.p: np.ndarray | None = None
        self.f = self.f_prev = math.nan  # set by minimize: f(x) before each step
        self.since_restart = 0
        self.evaluated: tuple[float, np.ndarray] | None = None

    def _search(self, x, f, g, p, problem):
        """A strong-Wolfe step along ``p``: ``(x_new, f_new, g_new)``, or None."""
        d0 = _dot(g, p)
        def f_limit_of(a):
            return f + self.c1 * a * d0

        # SciPy's first trial: the minimiser of the quadratic with slope phi'(0) whose decrease equals the last
        # step's (before the first step, as if it had decreased f by ||g|| / 2), at most 1.
        f_prev = self.f_prev if math.isfinite(self.f_prev) else f + 0.5 * _norm(g)
        a1 = min(1.0, 1.01 * 2.0 * (f - f_prev) / d0) if d0 < 0 else 1.0
        a1 = a1 if a1 > 0 else 1.0

        # The lowest trial with sufficient decrease, taken when no trial meets the curvature condition within
        # MAX_TRIES: f still falling at the longest step (unbounded below, -x - y; x**3 from 1) left x where it was.
        best: list = [None, f]
        # Where sufficient decrease fails at every trial: the first one that meets the approximate Wolfe
        # conditions (the class's docstring). On those quadratics, with f's decrease below its rounding, CG
        # stopped at gradients 5e-4 where SciPy's line search (MINPACK's) went on to 5e-6.
        approx: list = [None]
        f_ceiling = f + self.APPROX_WOLFE_EPS * abs(f)

        def phi(a):
            xa = x + (a * p).astype(x.dtype)
            fa, ga = problem.value_and_grad(xa)
            ok = math.isfinite(fa) and bool(np.all(np.isfinite(ga)))
            da = _dot(ga.astype(np.float64), p) if ok else math.nan
            if ok and fa <= f_limit_of(a) and fa < best[1]:
                best[:] = [(xa, fa, ga), fa]
            if ok and approx[0] is None and fa <= f_ceiling and abs(da) <= -self.c2 * d0:
                approx[0] = (xa, fa, ga)
            return xa, (fa if ok else math.inf), ga, da

        def fallback():
            return best[0] if best[0] is not None else approx[0]

        tries = 0

        def zoom(lo, flo, dlo, hi, fhi, dhi):
            nonlocal tries
            while tries < self.MAX_TRIES:
                width = abs(hi - lo)
                a = _cubic_min(lo, flo, dlo, hi, fhi, dhi) if math.isfinite(fhi) else math.nan
                # Safeguard: stay 10% inside the bracket, else bisect.
                if not (math.isfinite(a) and min(lo, hi) + 0.1 * width <= a <= max(lo, hi) - 0.1 * width):
                    a = lo + 0.5 * (hi - lo)
                if a == lo or a == hi:
                    return fallback()  # the bracket has shrunk to rounding
                tries += 1
                xa, fa, ga, da = phi(a)
                if fa > f_limit_of(a) or fa >= flo:
                    hi, fhi, dhi = a, fa, da
                else:
                    if abs(da) <= -self.c2 * d0:
                        return xa, fa, ga
                    if da * (hi - lo) >= 0:
                        hi, fhi, dhi = lo, flo, dlo
                    lo, flo, dlo = a, fa, da
            return fallback()

        a_prev, f_prev_a, d_prev = 0.0, f, d0
        a = a1
        while tries < self.MAX_TRIES:
            tries += 1
            xa, fa, ga, da = phi(a)
            if fa > f_limit_of(a) or (a_prev > 0 and fa >= f_prev_a):
                return zoom(a_prev, f_prev_a, d_prev, a, fa, da)
            if abs(da) <= -self.c2 * d0:
                return xa, fa, ga
            if da >= 0:
                return zoom(a, fa, da, a_prev, f_prev_a, d_prev)
            # Still descending: extrapolate by the cubic through the last two trials (exact on a quadratic),
            # kept within [1.1 a, 10 a]; doubling when it has no minimiser.
            nxt = _cubic_min(a_prev, f_prev_a, d_prev, a, fa, da)
            a_prev, f_prev_a, d_prev = a, fa, da
            a = min(max(nxt, 1.1 * a), 10.0 * a) if math.isfinite(nxt) else 2.0 * a
        return fallback()

    def __call__(self, x: np.ndarray, g: np.ndarray, t: int, problem: _Problem) -> Status | None:
        g64 = g.astype(np.float64)
        p = self.p
        periodic = self.restart is not None and self.since_restart >= self.restart
        if p is None or periodic or not _dot(g64, p) < 0:
            p, self.since_restart = -g64, 0
        found = self._search(x, self.f, g64, _unit_scaled(p), problem)
        if found is None and self.since_restart > 0:  # restart along steepest descent
            p, self.since_restart = -g64, 0
            found = self._search(x, self.f, g64, _unit_scaled(p), problem)
        if found is None:
            return Status.LINE_SEARCH
        x_new, f_new, g_new = found
        g_new64 = g_new.astype(np.float64)
        a = _scale(g64, g_new64)  # (scaled alike: g_new - g overflowed where both neared 1e308)
        u, v = (g64, g_new64) if a in (0.0, 1.0) else (g64 / a, g_new64 / a)
        beta = max(0.0, float(v @ (v - u)) / float(u @ u))
        self.p = -g_new64 + beta * p
        self.since_restart += 1
        self.f_prev = self.f
        x[:] = x_new
        self.evaluated = (f_new, g_new)
        return None


def _wants_result(callback: Callable) -> bool:
    """SciPy's rule (``scipy.optimize._optimize._wrap_callback``): a callback whose only parameter is
    ``intermediate_result`` is called as ``callback(intermediate_result=res)``, by keyword."""
    try:
        return set(inspect.signature(callback).parameters) == {"intermediate_result"}
    except (TypeError, ValueError):
        return False


# The registry: every method= name and the family that runs it, in the order of METHODS.
METHOD_CLASSES: dict[str, type[_Method]] = {
    **{name: _FirstOrder for name in optim.OPTIMIZERS},
    "newton": _Newton,
    "saddle_free_newton": _Newton,
    "cg": _NonlinearCG,
}
METHODS: tuple[str, ...] = tuple(METHOD_CLASSES)
# The public groups, read off the registry.
FIRST_ORDER: tuple[str, ...] = tuple(m for m, kind in METHOD_CLASSES.items() if kind is _FirstOrder)
NEWTON: tuple[str, ...] = tuple(m for m, kind in METHOD_CLASSES.items() if kind is _Newton)
CONJUGATE: tuple[str, ...] = tuple(m for m, kind in METHOD_CLASSES.items() if kind is _NonlinearCG)


def minimize(
    fun: Callable[..., Any],
    x0,
    args: tuple = (),
    *,
    method: str = "adam",
    jac: Callable | bool | str | None = None,
    hess: Callable | None = None,
    callback: Callable | None = None,
    options: dict | None = None,
) -> OptimizeResult:
    """Minimize a scalar function of one or more variables with a deep-learning optimizer or Newton's method.

    Parameters
    ----------
    fun : callable
        ``fun(x, *args) -> float`` with ``x`` of shape ``(n,)``; with ``jac=True``, ``fun`` returns
        ``(value, gradient)``: a tuple, a list or any sequence of two, read as SciPy reads it (``out[0]``,
        ``out[1]``).
    x0 : array_like of shape (n,)
        Start. float32 is kept (the steps then run in float32); other real dtypes become float64.
    args : tuple
        Extra arguments for ``fun``, ``jac`` and ``hess``.
    method : str
        A step rule, ``"sgd"``, ``"momentum"``, ``"nesterov"``, ``"adagrad"``, ``"rmsprop"``, ``"adam"``,
        ``"adamw"`` (the compiled rules of :mod:`fastopt.optim`), ``"newton"`` / ``"saddle_free_newton"``, or
        ``"cg"``: nonlinear conjugate gradients, Polak-Ribiere+ with a strong-Wolfe line search (Nocedal &
        Wright, *Numerical Optimization*, 2006, sec. 5.2 and Alg. 3.5-3.6; Goodfellow, Bengio & Courville, *Deep
        Learning*, 2016, sec. 8.6.2), as ``scipy.optimize.minimize(method="CG")``; where ``f``'s decrease is below
        its rounding, a step meeting the approximate Wolfe conditions (Hager & Zhang, *SIAM J. Optim.* 16, 2005).
    jac : callable, True, {"2-point", "3-point"} or None
        The gradient: ``jac(x, *args) -> ndarray (n,)``; ``True`` if ``fun`` returns it; or finite differences
        (``None`` means ``"2-point"``, as in SciPy). Finite-difference steps follow
        :func:`fastopt.landscape.gradient`; with a float32 ``x0`` they are float32-sized (about 3e-4 for
        2-point), so expect only three or four correct digits where the curvature is large.
    hess : callable, optional
        ``hess(x, *args) -> ndarray (n, n)`` for the Newton methods; by default central differences of the
        analytic gradient, or second differences of ``fun`` when the gradient is itself differenced.
    callback : callable, optional
        Called after each iteration as ``callback(intermediate_result=res)`` (an ``OptimizeResult`` with ``x``
        and ``fun``, passed by keyword, so the parameter may be keyword-only) if that is its only parameter's
        name, else as ``callback(xk)``, as SciPy calls it. Raise ``StopIteration`` to stop (status 99).
    options : dict, optional
        maxiter : int, default 1000
        gtol : float, default 1e-5
            Stop (success) when ``norm(g, ord=norm) <= gtol``.
        norm : float, default inf
            Order of the gradient norm for ``gtol`` (SciPy's BFGS default: the largest component).
        ftol : float, default 0 (off)
            Stop (success) when ``|f_prev - f| <= ftol * max(|f_prev|, |f|, 1)``. Off by default: first-order
            steps, and noisy ones above all, can change ``f`` very little far from a minimum.
        lr : float
            Learning rate (initial, under a schedule); default 0.01 for the step rules, 1.0 for Newton. Unused by
            CG, whose line search chooses every step.
        schedule, end_factor, power_t, gamma
            First-order only: :func:`fastopt.optim.schedule_lr` with one epoch per iteration over ``maxiter``.
        clip_norm : float, optional
            First-order only: clip the gradient to this global L2 norm before each step.
        alpha : float, default 0
            Newton only: the regularisation ``a`` of ``(H + a I)^-1 g`` (``(|H| + a I)^-1 g`` saddle-free).
        c1, c2 : float, default 1e-4, 0.4
            CG only: the strong Wolfe constants, ``0 < c1 < c2 < 1`` (sufficient decrease, curvature).
        restart : int or None, default None
            CG only: restart along the steepest descent every this many iterations (None: only where PR+ restarts
            by itself, as SciPy's ``CG``).
        return_path : bool, default False
            Add the trajectory: ``xs`` (shape ``(nit + 1, n)``, ``x0`` first) and ``fs`` to the result.
        seed : None, int or numpy.random.Generator
            Seeds the ``rng`` passed to stochastic objectives (below).
        divergence : float, default 1e10
            Stop (status 3) when ``f > f(x0) + divergence * max(1, |f(x0)|)``.
        Any other key is a hyperparameter of the step rule (``momentum``, ``beta1``, ``beta2``, ``rho``,
        ``eps``, ``weight_decay``, ... as in :func:`fastopt.optim.make`).

    Returns
    -------
    OptimizeResult
        ``x``, ``fun``, ``jac`` (gradient at ``x``), ``nit``, ``nfev``, ``njev``, ``nhev`` (Newton),
        ``status`` (:class:`Status`), ``success``, ``message``, and ``xs``, ``fs`` with ``return_path``. On
        divergence, ``x``, ``fun`` and ``jac`` are those of the last iterate before it. As in SciPy, ``nfev``
        counts every call of ``fun`` (those made for a gradient with ``jac=True`` or by finite differences
        included) and ``njev`` every gradient, however it is obtained: a differenced gradient counts once in
        ``njev`` and its ``n`` (2-point, ``fun(x)`` known) or ``2n`` (3-point) calls in ``nfev``.

    Raises
    ------
    ValueError, TypeError
        For an unknown method or option, a bad option value, a non-finite or non-real ``x0``, a non-finite
        ``fun(x0)``, a gradient or Hessian of the wrong shape.

    Notes
    -----
    **Stochastic objectives.** If ``fun``, ``jac`` or ``hess`` has a parameter named ``rng``, it is called as
    ``func(x, *args, rng=rng)`` with one ``numpy.random.Generator`` seeded by ``options["seed"]``, shared by
    all calls, so a gradient can draw a minibatch (see
    :meth:`fastopt.functions.Objective.minibatch_gradient`) and a run is reproducible. Finite differences of
    a stochastic ``fun`` are refused, and so is a Newton method without ``hess`` whose gradient (``jac``, or
    ``fun`` with ``jac=True``) is stochastic: its Hessian would be differences of that gradient.
    """
    if not isinstance(method, str) or method.lower() not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}.")
    method = method.lower()
    opts, hyper = _parse_options(method, options)
    kind = METHOD_CLASSES[method]
    if hess is not None and not kind.uses_hessian:
        warnings.warn(f"Method {method} does not use Hessian information (hess).", RuntimeWarning, stacklevel=2)
    x = _check_x0(x0)
    if callback is not None and not callable(callback):  # (fun ran twice before Python's "not callable")
        raise TypeError(f"callback must be callable or None, got {type(callback).__name__}.")
    args = args if isinstance(args, tuple) else (args,)
    problem = _Problem(fun, jac, hess, args, np.random.default_rng(opts["seed"]), x)
    if kind.uses_hessian and hess is None and problem.scheme is None and problem.stochastic_gradient:
        # Differences of a minibatch gradient divide its noise by the step (~1e-5): a Hessian of pure noise.
        raise ValueError(f"{'fun (with jac=True)' if jac is True else 'jac'} takes an rng (a stochastic gradient), "
                         f"but method {method!r} without hess differences the gradient for the Hessian, which "
                         "needs a deterministic one: pass hess, or a deterministic jac.")
    step = kind(method, hyper, opts, x)

    f, g = problem.value_and_grad(x)
    if not math.isfinite(f):
        raise ValueError(f"fun(x0) is not finite ({f}).")
    f_limit = f + opts["divergence"] * max(1.0, abs(f))
    # (the path only with return_path: kept always, it held every iterate, nit * n values, and was then dropped)
    path = opts["return_path"]
    xs, fs = ([x.copy()], [f]) if path else ([], [])
    nit, status, why = 0, None, ""
    pass_result = callback is not None and _wants_result(callback)
    if not np.all(np.isfinite(g)):
        status, why = Status.DIVERGED, _X0_GRADIENT
    elif _norm(g, ord=opts["norm"]) <= opts["gtol"]:
        status = Status.GTOL
    while status is None:
        if nit >= opts["maxiter"]:
            status = Status.MAXITER
            break
        x_new = x.copy()
        step.f = f  # read by the line search of CG; harmless for the other steps
        status = step(x_new, g, nit + 1, problem)
        if status is not None:
            why = "the Hessian is not finite" if status == Status.DIVERGED else ""
            break
        if not np.all(np.isfinite(x_new)):
            status, why = Status.DIVERGED, "x is not finite"
            break
        if getattr(step, "evaluated", None) is not None:  # CG's line search evaluated f and g at x_new already
            (f_new, g_new), step.evaluated = step.evaluated, None
        else:
            f_new, g_new = problem.value_and_grad(x_new)
        if not (math.isfinite(f_new) and np.all(np.isfinite(g_new))) or f_new > f_limit:
            status = Status.DIVERGED
            why = f"f = {f_new:.3g}" if math.isfinite(f_new) else "f or its gradient is not finite"
            break
        nit += 1
        f_prev, x, f, g = f, x_new, f_new, g_new
        if path:
            xs.append(x.copy())
            fs.append(f)
        if callback is not None:
            try:
                # By keyword, as SciPy: a keyword-only `def cb(*, intermediate_result)` raised TypeError here
                if pass_result:
                    callback(intermediate_result=OptimizeResult(x=x.copy(), fun=f))
                else:
                    callback(x.copy())
            except StopIteration:
                status = Status.CALLBACK
                break
        if _norm(g, ord=opts["norm"]) <= opts["gtol"]:
            status = Status.GTOL
        elif opts["ftol"] > 0 and abs(f_prev - f) <= opts["ftol"] * max(abs(f_prev), abs(f), 1.0):
            status = Status.FTOL

    if status == Status.DIVERGED and why == _X0_GRADIENT:  # no step taken: no step size to blame
        message = f"Stopped before the first step: {why}; check jac, or start inside fun's domain."
    elif status == Status.DIVERGED:
        message = f"Diverged at iteration {nit + 1}: {why}; {kind.divergence_hint}."
    elif status == Status.SINGULAR:
        message = f"The Newton system is singular at iteration {nit + 1}; set options['alpha'] > 0."
    elif status == Status.LINE_SEARCH:
        message = ("Desired error not necessarily achieved: no step along the steepest-descent direction satisfies "
                   f"the strong Wolfe conditions at iteration {nit + 1} (precision loss).")
    else:
        message = _MESSAGES[status]
    result = OptimizeResult(
        x=x, fun=f, jac=g, nit=nit, nfev=problem.nfev, njev=problem.njev, status=int(status),
        success=status in (Status.GTOL, Status.FTOL), message=message,
    )
    if kind.uses_hessian:
        result.nhev = problem.nhev
    if opts["return_path"]:
        result.xs, result.fs = np.array(xs), np.array(fs)
    return result
