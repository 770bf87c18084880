"""Exact robust regression: semismooth Newton for the Huber loss, finite smoothing for the absolute error.

The problem
-----------
With weights ``s_i = sw_i / sum_j sw_j`` (unit weights without ``sample_weight``) and residuals
``r_i = x_i . w + b - y_i``, each target is fitted independently by minimising the estimator's objective (the
one the iterative solvers descend; targets are summed)::

    F(w, b) = sum_i s_i rho(r_i) + (alpha / 2) ||w||^2

with ``rho`` the Huber loss ``r^2 / 2`` for ``|r| <= epsilon`` and ``epsilon (|r| - epsilon / 2)`` beyond, or the
absolute error ``|r|``. The intercept is not penalised.

Huber: semismooth Newton
------------------------
``F`` is convex with a piecewise-constant generalised Hessian: the weighted Gram matrix of the *inlier* rows
(``|r_i| <= epsilon``) plus ``alpha I`` (Nocedal & Wright, *Numerical Optimization*, 2006, ch. 3 and 6; Goodfellow,
Bengio & Courville, *Deep Learning*, 2016, ch. 8.6; the method is IRLS with Huber's weights, Holland & Welsch
1977, taken as a Newton method: Qi & Sun 1993). Starting from the least-squares fit (all rows inliers), every
iteration

1. reads ``X`` once (blocks kept in cache): residuals, objective and gradient ``X^T (s psi(r))``;
2. updates the inlier statistics for the rows that crossed the threshold only -- their weighted, centred Gram
   from the compiled kernel (:func:`fastopt._kernels.gram_stats` through :func:`fastopt._closed_form.chunk_state`)
   merged in or taken out exactly (Chan, Golub & LeVeque 1979) -- instead of rebuilding it;
3. solves the ``(d + 1) x (d + 1)`` Newton system (Cholesky; the intercept in coordinates centred on the data
   mean, so a large column mean does not spoil the conditioning; Levenberg-Marquardt damping when fewer
   inliers than parameters make it singular) and takes the step if it decreases ``F`` enough (Armijo), else
   backtracks along the segment, which needs no pass over ``X`` because the residuals are affine in the step.

The inlier set settles after finitely many steps, after which one full step lands on the exact minimiser.
The iteration stops when the Newton decrement ``lambda^2 = g^T H^-1 g`` (twice the objective decrease the
model predicts) is at round-off level, ``lambda^2 <= 8 eps F``, or when no step along the Newton direction
decreases ``F`` (``tol`` is not used: the last iterations are what makes the coefficients, not just the
objective, accurate, and they cost one pass over ``X`` each).

Absolute error: finite smoothing
--------------------------------
``|r|`` is the limit of the smoothed loss ``h_gamma(r) / gamma`` (Huber with threshold ``gamma``, divided by
``gamma``) as ``gamma -> 0``, and ``0 <= |r| - h_gamma(r) / gamma <= gamma / 2``, so the minimiser of the
smoothed objective is within ``gamma / 2`` of the least absolute deviation objective. Following Madsen &
Nielsen, "A finite smoothing algorithm for linear l1 estimation", SIAM J. Optim. 3 (1993), the smoothed
problems are solved by the Newton method above (``max_epochs`` iterations at most per problem) for ``gamma``
decreasing tenfold from the median absolute residual of the least-squares fit, and after each stage the limit
``gamma -> 0`` is taken exactly: the rows inside the threshold are fitted exactly, the others keep their sign, an
equality-constrained quadratic
program (``(d + 1 + m) x (d + 1 + m)``, m rows inside) whose multipliers certify optimality when they lie in
``[-s_i, s_i]`` (the subgradient condition). The fit ends with a certified exact minimiser, or when ``gamma``
is below ``4 eps F`` (objective within that, relative).
An exact linear program (``scipy.optimize.linprog(method="highs")``, as scikit-learn's ``QuantileRegressor``)
was measured and not taken: it builds ``2n`` slack variables and took minutes where this takes seconds (see the
README, "Robust regression").

Not supported: ``partial_fit``, ``fit_stream`` and Dask inputs (Newton reads all rows at every iteration;
a clear error says so), and sparse ``X``.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import scipy.linalg

from fastopt import _closed_form
from fastopt._iterative import weight_mean
from fastopt._result import FitResult, Solver
from fastopt._validation import Data
from fastopt.exceptions import ConvergenceWarning

__all__ = ["SOLVERS", "NewtonSolver", "huber_newton", "lad_smoothing"]

EPS = np.finfo(np.float64).eps
# Rows per block of the fused residual/gradient pass: 1 MiB of float64 at d = 100, resident in L2 while the
# second product reads it again (measured 10% faster than two whole-array passes at n = 10^6, d = 100). The
# products are NumPy's einsum loops, not BLAS: as fast here (measured), and their summation order does not depend
# on the number of BLAS threads, so fits are bit-identical even while another fit limits the BLAS threads.
PASS_BYTES = 2**20
# Rebuild the inlier Gram instead of updating it when more rows than this fraction cross the threshold: an
# update gathers the crossing rows (a copy) and costs as much as a rebuild at about half of them.
REBUILD_FRACTION = 0.3
ARMIJO = 1e-4
# Smoothing stages of the absolute error, gamma decreasing tenfold from the median residual: enough to reach
# 4 eps of the objective from any start.
MAX_STAGES = 40


def _dot(a: np.ndarray, b: np.ndarray) -> float:
    """``a . b`` over the rows by NumPy's own loop: BLAS ``ddot`` splits long sums among its threads, so its
    rounding would depend on the BLAS thread count (which a concurrent closed-form fit may be limiting)."""
    return float(np.einsum("i,i->", a, b))


def _huber(r: np.ndarray, eps: float) -> np.ndarray:
    if eps == np.inf:  # squared error
        return 0.5 * r * r
    a = np.abs(r)
    return np.where(a <= eps, 0.5 * r * r, eps * (a - 0.5 * eps))


class _Problem:
    """One target's data: X (read in blocks), y, normalised weights s, and the fixed quantities."""

    def __init__(self, X: np.ndarray, y: np.ndarray, s: np.ndarray, s_native: np.ndarray | None, alpha: float,
                 fit_intercept: bool):
        self.X, self.y, self.s, self.s_native = X, y, s, s_native
        self.alpha, self.fit_intercept = alpha, fit_intercept
        self.n, self.d = X.shape
        self.block = max(64, PASS_BYTES // (8 * max(self.d, 1)))
        self.y_native = np.ascontiguousarray(y.reshape(-1, 1), dtype=X.dtype)

    def residuals_and_gradient(self, w: np.ndarray, b: float, eps: float, scale: float):
        """One pass over X: ``r``, and the loss gradient ``X^T (s psi(r))``, ``sum s psi(r)`` (times ``scale``)."""
        r = np.empty(self.n)
        g = np.zeros(self.d)
        for i0 in range(0, self.n, self.block):
            i1 = min(i0 + self.block, self.n)
            Xb = self.X[i0:i1]
            if Xb.dtype != np.float64:
                Xb = Xb.astype(np.float64)
            rb = np.einsum("ij,j->i", Xb, w)
            rb += b
            rb -= self.y[i0:i1]
            r[i0:i1] = rb
            psi = np.clip(rb, -eps, eps)
            psi *= self.s[i0:i1]
            g += np.einsum("ij,i->j", Xb, psi)
        gb = _dot(self.s, np.clip(r, -eps, eps))
        return r, g * scale, gb * scale

    def xt(self, v: np.ndarray) -> np.ndarray:
        """``X^T v`` in float64, blockwise."""
        g = np.zeros(self.d)
        for i0 in range(0, self.n, self.block):
            i1 = min(i0 + self.block, self.n)
            Xb = self.X[i0:i1]
            g += np.einsum("ij,i->j", Xb if Xb.dtype == np.float64 else Xb.astype(np.float64), v[i0:i1])
        return g

    def gradient(self, r: np.ndarray, eps: float, scale: float):
        """The loss gradient at residuals ``r`` (one pass over X), times ``scale``."""
        psi = np.clip(r, -eps, eps) * self.s
        return self.xt(psi) * scale, float(psi.sum()) * scale

    def stats(self, rows: np.ndarray | None, weights: np.ndarray | None = None) -> _closed_form.ClosedFormState:
        """Weighted centred Gram of ``[X, y]`` over ``rows`` (a boolean mask, an index array or None for all)."""
        if rows is None:
            X, Y, w = self.X, self.y_native, self.s_native
        else:
            X, Y, w = self.X[rows], self.y_native[rows], self.s_native[rows]
        if weights is not None:
            w = weights
        data = Data(X=X, Y=Y, sample_weight=np.ascontiguousarray(w), y_was_1d=True)
        # In the weights' own units (weight_exp 0): the updates below add and subtract states and combine their
        # weights with other quantities (the IRLS weights are bounded, so nothing overflows).
        return _closed_form.rescale_weights(_closed_form.chunk_state({"solver": "normal"}, data), 0)


def _remove(a: _closed_form.ClosedFormState, b: _closed_form.ClosedFormState) -> _closed_form.ClosedFormState:
    """The statistics of a's rows without b's (b's rows a subset of a's): the inverse of ``merge_states``."""
    weight = a.weight - b.weight
    if b.weight == 0.0:
        return a
    if weight <= 1e-12 * a.weight:  # nothing left (to round-off)
        p = a.mean.shape[0]
        return _closed_form.ClosedFormState(a.n_features, a.n_targets, a.dtype, 0, 0.0, np.zeros(p),
                                            np.zeros((p, p)))
    mean = (a.weight * a.mean - b.weight * b.mean) / weight
    delta = b.mean - mean
    gram = a.gram - b.gram - (weight * b.weight / a.weight) * np.outer(delta, delta)
    return _closed_form.ClosedFormState(a.n_features, a.n_targets, a.dtype, a.n_samples - b.n_samples, weight, mean,
                                        gram)


class _Hessian:
    """The inlier statistics and the Newton solve, in coordinates centred on the all-rows mean ``m0``."""

    def __init__(self, prob: _Problem, full: _closed_form.ClosedFormState):
        self.prob = prob
        d = prob.d
        self.m0 = full.mean[:d].copy() if prob.fit_intercept else np.zeros(d)
        # Damping reference: the all-rows Hessian's diagonal (1 for a constant column and for the intercept).
        diag = np.diag(full.gram)[:d].copy() if prob.fit_intercept else \
            np.diag(full.gram)[:d] + full.weight * full.mean[:d] ** 2
        self.damp = np.append(np.where(diag > 0, diag, 1.0), 1.0)
        self.state = full
        self.mask = None
        self.scale = 1.0

    def update(self, mask: np.ndarray, scale: float) -> None:
        """Make the statistics those of the rows in ``mask`` (weights ``s * scale``, scale applied at solve)."""
        self.scale = scale
        if self.mask is None:
            self.state = self.prob.stats(None, self.prob.s_native * mask) if not mask.all() else self.state
            self.mask = mask
            return
        enter = mask & ~self.mask
        leave = self.mask & ~mask
        changed = int(enter.sum()) + int(leave.sum())
        if changed == 0:
            return
        if changed > REBUILD_FRACTION * self.prob.n:
            self.state = self.prob.stats(None, self.prob.s_native * mask)
        else:
            if leave.any():
                self.state = _remove(self.state, self.prob.stats(np.flatnonzero(leave)))
            if enter.any():
                self.state = _closed_form.merge_states(self.state, self.prob.stats(np.flatnonzero(enter)))
        self.mask = mask

    def direction(self, g: np.ndarray, gb: float):
        """The (damped) Newton direction for gradient ``(g, gb)``."""
        prob, st, d = self.prob, self.state, self.prob.d
        A, C = st.weight * self.scale, st.gram[:d, :d] * self.scale
        dm = st.mean[:d] - self.m0
        H = np.empty((d + 1, d + 1))
        H[:d, :d] = C + A * np.outer(dm, dm)
        H[:d, :d][np.diag_indices(d)] += prob.alpha
        H[:d, d] = H[d, :d] = A * dm
        H[d, d] = A
        rhs = np.append(g - self.m0 * gb, gb)
        if not prob.fit_intercept:
            H, rhs = H[:d, :d], rhs[:d]
        damp = self.damp[: H.shape[0]]
        sc = np.sqrt(np.maximum(np.diag(H), damp * EPS))
        Hs = H / np.outer(sc, sc)
        mu = 0.0
        for _ in range(30):
            Hm = Hs + np.diag(mu * damp / sc**2) if mu else Hs
            try:
                c = scipy.linalg.cho_factor(Hm, check_finite=False)
                v = -scipy.linalg.cho_solve(c, rhs / sc, check_finite=False) / sc
                if np.all(np.isfinite(v)):
                    break
            except np.linalg.LinAlgError:
                pass
            mu = 1e-10 if mu == 0 else mu * 100
        else:  # pragma: no cover - damping of 1e50 always factorises
            raise RuntimeError("internal error: the damped Newton system did not factorise")
        if prob.fit_intercept:
            dw, dc = v[:d], v[d]
            return dw, dc - float(self.m0 @ dw)
        return v, 0.0


@dataclass
class _Fit:
    w: np.ndarray
    b: float
    objective: float
    n_iter: int
    converged: bool
    curve: list


def _objective(prob: _Problem, r: np.ndarray, w: np.ndarray, eps: float, scale: float) -> float:
    return _dot(prob.s, _huber(r, eps)) * scale + 0.5 * prob.alpha * float(w @ w)


def _slope(prob: _Problem, r, q, w, dw, eps: float, scale: float, t: float) -> float:
    """d/dt of the objective at ``w + t dw`` (residuals ``r + t q``)."""
    psi = np.clip(r + t * q, -eps, eps)
    return scale * _dot(prob.s * psi, q) + prob.alpha * float((w + t * dw) @ dw)


def _line_search(prob: _Problem, r, q, w, dw, eps: float, scale: float) -> float:
    """The minimiser over ``t in [0, 1]`` of the convex, piecewise-quadratic objective along the step (its slope
    is non-decreasing): bracketed geometrically, then bisected to 0.1% (0 when the slope is not negative at 0)."""
    if _slope(prob, r, q, w, dw, eps, scale, 0.0) >= 0.0:
        return 0.0
    hi = 1.0
    if _slope(prob, r, q, w, dw, eps, scale, hi) <= 0.0:
        return hi
    lo = hi
    while lo > 1e-30:
        lo *= 0.125
        if _slope(prob, r, q, w, dw, eps, scale, lo) < 0.0:
            break
        hi = lo
    else:
        return 0.0
    while hi - lo > 1e-3 * hi:
        mid = 0.5 * (lo + hi)
        if _slope(prob, r, q, w, dw, eps, scale, mid) < 0.0:
            lo = mid
        else:
            hi = mid
    return lo


def _newton(prob: _Problem, w, b, r, g, gb, hess: _Hessian, eps: float, scale: float, rtol: float,
            max_iter: int, curve: list, probe=None):
    """Semismooth Newton on ``scale * sum s huber_eps(r) + alpha/2 ||w||^2`` from (w, b) with residuals r and
    gradient (g, gb) (including the ridge term). Returns (w, b, r, g, gb, F, iterations, converged).
    ``probe(w, b, r, mask)``, if given, is asked at every iterate whether to stop (it has found the answer)."""
    F = _objective(prob, r, w, eps, scale)
    for it in range(max_iter):
        mask = np.abs(r) <= eps
        if probe is not None and probe(w, b, r, mask):
            return w, b, r, g, gb, F, it, True
        hess.update(mask, scale)
        dw, db = hess.direction(g, gb)
        dec = -(float(g @ dw) + gb * db)
        if dec <= 2.0 * rtol * abs(F) or dec <= 0.0:
            return w, b, r, g, gb, F, it, True
        w1, b1 = w + dw, b + db
        r1, g1, gb1 = prob.residuals_and_gradient(w1, b1, eps, scale)
        F1 = _objective(prob, r1, w1, eps, scale)
        if F1 <= F - ARMIJO * dec:
            w, b, r, F = w1, b1, r1, F1
            g, gb = g1 + prob.alpha * w1, gb1
        else:  # minimise along the segment: r(t) = r + t (r1 - r), no pass over X
            q = r1 - r
            t = _line_search(prob, r, q, w, dw, eps, scale)
            if t == 0.0:  # no decrease at round-off level: the iterate is optimal to working precision
                return w, b, r, g, gb, F, it + 1, True
            w, b, r = w + t * dw, b + t * db, r + t * q
            F = _objective(prob, r, w, eps, scale)
            g, gb = prob.gradient(r, eps, scale)
            g = g + prob.alpha * w
        curve.append(F)
    return w, b, r, g, gb, F, max_iter, False


def _start(prob: _Problem, init):
    """The all-rows statistics and the starting point: ``init`` (w, b), else the (ridge) least-squares fit."""
    full = prob.stats(None)
    if init is not None:
        return full, np.asarray(init[0], dtype=np.float64).copy(), float(init[1]) if prob.fit_intercept else 0.0
    params = {"fit_intercept": prob.fit_intercept, "alpha": prob.alpha}
    result, _ = _closed_form._cholesky(params, full)
    if result is None:  # ill-conditioned or singular: the minimum-norm least-squares fit
        result = _closed_form._solve_eigh(params, full)
    w = result.coef[0].astype(np.float64)
    b = float(result.intercept[0]) if prob.fit_intercept else 0.0
    return full, w, b


def huber_newton(prob: _Problem, epsilon: float, rtol: float, max_iter: int, init=None) -> _Fit:
    """The Huber fit of one target (see the module docstring)."""
    full, w, b = _start(prob, init)
    hess = _Hessian(prob, full)
    r, g, gb = prob.residuals_and_gradient(w, b, epsilon, 1.0)
    g = g + prob.alpha * w
    curve: list = []
    w, b, r, g, gb, F, it, ok = _newton(prob, w, b, r, g, gb, hess, epsilon, 1.0, rtol, max_iter, curve)
    return _Fit(w, b, F, it, ok, curve or [F])


def _lad_objective(prob: _Problem, r: np.ndarray, w: np.ndarray) -> float:
    return _dot(prob.s, np.abs(r)) + 0.5 * prob.alpha * float(w @ w)


def _exact_limit(prob: _Problem, r: np.ndarray, gamma: float):
    """The gamma -> 0 limit for the current sign pattern (see the module docstring), or None when it is
    singular. Returns (w, b, lam, rows): multipliers ``lam`` of the exactly fitted ``rows``."""
    d = prob.d
    rows = np.flatnonzero(np.abs(r) <= gamma)
    p = d + (1 if prob.fit_intercept else 0)
    # Generically at most p residuals vanish at the minimiser (exactly p without ridge): else gamma is still
    # too large for the limit to be the minimiser.
    if rows.size > p or (prob.alpha == 0 and rows.size != p):
        return None
    out = np.abs(r) > gamma
    sign = np.sign(r) * prob.s * out
    Xz = prob.X[rows].astype(np.float64)
    if prob.fit_intercept:
        Xz = np.hstack([Xz, np.ones((rows.size, 1))])
    # the sign term sum_out s_i sign_i [x_i, 1]: one product with X
    c = np.empty(p)
    c[:d] = prob.xt(sign)
    if prob.fit_intercept:
        c[d] = sign.sum()
    m = rows.size
    K = np.zeros((p + m, p + m))
    K[:d, :d][np.diag_indices(d)] = prob.alpha
    K[:p, p:] = Xz.T
    K[p:, :p] = Xz
    rhs = np.concatenate([-c, prob.y[rows]])
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", scipy.linalg.LinAlgWarning)  # judged by the residual check below
            sol = scipy.linalg.solve(K, rhs, check_finite=False, assume_a="sym")
    except (np.linalg.LinAlgError, ValueError):
        return None
    # an inconsistent system (more rows inside than parameters, with alpha = 0) has no exact limit here
    if not np.all(np.isfinite(sol)) or np.linalg.norm(K @ sol - rhs) > 1e-9 * (np.linalg.norm(rhs) + 1e-300):
        return None
    w, b = sol[:d], (sol[d] if prob.fit_intercept else 0.0)
    # stationarity: c + alpha P theta + Xz^T mu = 0 with mu = sol[p:]; the subgradient of s_i|r_i| is mu_i
    return w, b, -sol[p:], rows


def lad_smoothing(prob: _Problem, rtol: float, max_iter: int, init=None) -> _Fit:
    """The least-absolute-deviation fit of one target by finite smoothing (see the module docstring)."""
    full, w, b = _start(prob, init)
    r, _, _ = prob.residuals_and_gradient(w, b, np.inf, 1.0)
    gamma = float(np.median(np.abs(r)))
    scale_ref = max(_dot(prob.s, np.abs(r)), np.finfo(float).tiny)
    if gamma <= 0:
        gamma = scale_ref
    hess = _Hessian(prob, full)
    curve: list = []
    iters, converged = 0, False
    best = [_lad_objective(prob, r, w), w, b]
    p = prob.d + (1 if prob.fit_intercept else 0)
    last = {}  # the latest exact limit tried: (wl, bl, rl), and whether it was certified

    def attempt(w, b, r, gamma) -> bool:
        """Try the exact limit of the current sign pattern (one pass over X); True when certified optimal."""
        nonlocal iters
        limit = _exact_limit(prob, r, gamma)
        if limit is None:
            last.clear()
            return False
        wl, bl, lam, rows = limit
        rl, _, _ = prob.residuals_and_gradient(wl, bl, np.inf, 1.0)
        iters += 1
        F_l = _lad_objective(prob, rl, wl)
        others = np.ones(prob.n, bool)
        others[rows] = False
        tiny = 1e-9 * (1.0 + np.abs(prob.y)[others])
        signs_kept = np.all((np.sign(rl[others]) == np.sign(r[others])) | (np.abs(rl[others]) <= tiny))
        dual_ok = np.all(np.abs(lam) <= prob.s[rows] * (1 + 1e-9))
        if F_l < best[0]:
            best[:] = [F_l, wl, bl]
        last.update(limit=(wl, bl, rl), certified=bool(signs_kept and dual_ok))
        return last["certified"]

    def probe(w, b, r, mask) -> bool:
        # Inside a stage, as soon as the rows inside could be the minimiser's zero residuals.
        count = int(mask.sum())
        if count == p or (prob.alpha > 0 and 0 < count < p):
            return attempt(w, b, r, gamma)
        return False

    for _stage in range(MAX_STAGES):
        g, gb = prob.gradient(r, gamma, 1.0 / gamma)
        g = g + prob.alpha * w
        w, b, r, g, gb, F, it, ok = _newton(prob, w, b, r, g, gb, hess, gamma, 1.0 / gamma, rtol, max_iter, curve,
                                            probe)
        iters += max(it, 1)
        if not ok:  # a stage used up max_epochs: report non-convergence
            break
        F_lad = _lad_objective(prob, r, w)
        if F_lad < best[0]:
            best[:] = [F_lad, w, b]
        if last.get("certified") or attempt(w, b, r, gamma):
            converged = True
            curve.append(best[0])
            break
        if "limit" in last:
            # Predictor for the next stage: on the segment to the limit, the smoothed minimiser of a fixed
            # sign pattern is affine in gamma, so gamma / 10 is 9/10 of the way there.
            wl, bl, rl = last["limit"]
            w, b, r = w + 0.9 * (wl - w), b + 0.9 * (bl - b), r + 0.9 * (rl - r)
        curve.append(best[0])
        if gamma <= max(rtol, EPS) * best[0]:
            converged = True
            break
        gamma *= 0.1
    F, w, b = best
    return _Fit(np.asarray(w, dtype=np.float64), float(b), F, iters, converged, curve or [F])


class NewtonSolver(Solver):
    """``solver="newton"``: exact fits of the robust losses (see the module docstring)."""

    name = "newton"
    losses = frozenset({"huber", "absolute_error", "squared_error"})  # squared error: Huber with epsilon = inf
    chunked = None  # every Newton iteration reads all rows
    accepts_init = True
    per_target_alpha = True

    def check_incremental(self) -> None:
        raise ValueError(
            "solver='newton' cannot fit incrementally (partial_fit, fit_stream or Dask arrays): each Newton "
            "iteration reads every row. Use fit on in-memory arrays, or an iterative solver (e.g. solver='adam')."
        )

    @staticmethod
    def checks_finite_X(params: dict) -> bool:
        """The first Gram pass reports non-finite X (see :func:`fastopt._closed_form.chunk_state`)."""
        return True

    def fit(self, params: dict, data: Data, state=None, init=None) -> FitResult:
        """Fit every target; ``init`` is ``(coef (k, d), intercept (k,))`` to start from, else ``state``'s
        coefficients under ``warm_start``, else the least-squares fit."""
        X, Y, sw = data.X, data.Y, data.sample_weight
        n, d = X.shape
        k = Y.shape[1]
        if n == 0:
            raise ValueError("solver='newton' needs at least one row.")
        if sw is None:
            s = np.full(n, 1.0 / n)
        else:
            mean = weight_mean(sw)  # without overflow or underflow, for weights of any finite scale
            if mean <= 0:
                raise ValueError("sample_weight is zero on every row.")
            s = (sw.astype(np.float64) / mean) / n
        s_native = s.astype(X.dtype)
        alpha = np.broadcast_to(np.asarray(params["alpha"], dtype=np.float64), (k,))
        rtol = 4 * EPS  # to round-off: Newton converges finitely, so this costs an iteration or two
        if init is None and state is not None and state.shape == (k, d + 1):
            init = (state[:, :d], state[:, d])
        coef = np.empty((k, d))
        intercept = np.zeros(k)
        n_iter, ok, curves, objective = 0, True, [], 0.0
        for j in range(k):
            prob = _Problem(X, np.ascontiguousarray(Y[:, j], dtype=np.float64), s, s_native, float(alpha[j]),
                            params["fit_intercept"])
            start = None if init is None else (init[0][j], init[1][j])
            if params["loss"] != "absolute_error":
                epsilon = float(params["epsilon"]) if params["loss"] == "huber" else np.inf
                fit = huber_newton(prob, epsilon, rtol, params["max_epochs"], start)
            else:
                fit = lad_smoothing(prob, rtol, params["max_epochs"], start)
            coef[j], intercept[j] = fit.w, fit.b
            n_iter = max(n_iter, fit.n_iter)
            ok &= fit.converged
            curves.append(fit.curve)
            objective += fit.objective
        if not ok:
            warnings.warn(
                f"solver='newton' reached max_epochs={params['max_epochs']} iterations before converging "
                f"(loss={params['loss']!r}); increase max_epochs.",
                ConvergenceWarning,
                stacklevel=3,
            )
        length = max(len(c) for c in curves)
        curve = [float(sum(c[min(i, len(c) - 1)] for c in curves)) for i in range(length)]
        if params["loss"] == "squared_error" and init is None:
            # The least-squares start is itself the one Newton step that solves a quadratic from zero; counting
            # it keeps n_iter_ >= 1, as scikit-learn expects of an estimator with max_iter.
            n_iter = max(n_iter, 1)
        attrs = {"solver_": "newton", "n_iter_": n_iter, "loss_curve_": curve, "best_loss_": float(objective),
                 "objective_": float(objective)}
        saved = np.hstack([coef, intercept[:, None]])
        return FitResult(coef.astype(X.dtype), intercept.astype(X.dtype), saved, attrs)

    def partial_fit(self, params: dict, data: Data, state=None, **_) -> FitResult:
        """Not supported: each Newton iteration reads every row."""
        self.check_incremental()


SOLVERS = {"newton": NewtonSolver()}
