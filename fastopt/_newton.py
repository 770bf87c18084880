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
1977, taken as a Newton method: Qi & Sun 1993). Every iteration

1. reads ``X`` once, by the compiled fused pass (:func:`fastopt._kernels.huber_pass`, csrc/huber.c) at the full
   Newton step: residuals, objective and gradient ``X^T (s psi(r))`` there, and the change of the inlier Hessian:
   only the rows that crossed the threshold, gathered while in cache and added or subtracted by BLAS ``syrk``
   (a rank-k update or downdate) instead of rebuilding it. The pass runs on fixed row segments in parallel threads,
   summed in segment order, so results do not depend on the thread count;
2. solves the ``(d + 1) x (d + 1)`` Newton system (Cholesky; the intercept in coordinates centred on the data
   mean, so a large column mean does not spoil the conditioning; Levenberg-Marquardt damping when fewer
   inliers than parameters make it singular; where the system's condition passes ``1 / QR_RCOND``, or steps
   crawl, from the inlier rows' Householder ``R`` instead, whose condition is the rows', not its square: see
   :func:`_newton`); the step is taken if it decreases ``F`` enough (Armijo), else
   the objective is minimised along the segment, which needs no pass over ``X`` because the residuals are affine
   in the step and the trial pass gave them at its end (one more pass then evaluates the point found).

A downdate loses the digits that the subtracted rows held beyond the remaining ones (cancellation: after taking
out rows a thousand times heavier than what is left, the error is about 1e3 eps of the entry). The updates' total
weight per diagonal entry is tracked, and the Hessian is rebuilt from its rows (one pass that adds the inliers
only) when it exceeds ``DRIFT = 1e3`` times what is left, so its relative error stays below about ``1e3 eps``.

The start: for large ``X`` (``n >= 65,536`` with at least 50 subsample rows per parameter) the Huber fit of every
16th row, found the same way; its inlier set is nearly the final one, so the first pass builds the Hessian from the
inliers and two or three more passes end the fit. Otherwise, and when ``init`` is given, the (ridge) least-squares
fit from one compiled Gram pass of ``[X, y]``, which also gives the all-rows Hessian that the first pass
downdates (where Cholesky is rejected and the design is not exactly singular, the closed form's QR pass gives the
fit: one more read of ``X``). When gross outliers have pulled that fit off most rows (no curvature left to answer
the gradient), the fit follows a continuation in the threshold down to ``epsilon`` (:func:`huber_newton`).

The inlier set settles after finitely many steps, after which one full step lands on the exact minimiser.
The iteration stops when the Newton decrement ``lambda^2 = g^T H^-1 g`` (twice the objective decrease the
model predicts) is at round-off level, ``lambda^2 <= 8 eps F_c``, or when no step along the Newton direction
decreases ``F`` (``tol`` is not used: Newton converges finitely, so the last iterations cost one pass over ``X``
each). ``F_c <= F`` is the objective with every outlier counted at the threshold, ``sum s rho(min(|r|, epsilon))
+ alpha/2 ||w||^2``: a far outlier's loss changes with the fit by exactly epsilon times its fitted value's change,
but its size would set a stop that no longer sees the inliers. The coefficients are then within
``sqrt(16 eps F_c)`` of the minimiser in the Hessian's norm; usually the inlier set has settled and the last step
landed on the minimiser exactly. ``n_iter_`` counts the iterations on
all rows (not the subsample's).

Absolute error: finite smoothing
--------------------------------
``|r|`` is the limit of the smoothed loss ``h_gamma(r) / gamma`` (Huber with threshold ``gamma``, divided by
``gamma``) as ``gamma -> 0``, and ``0 <= |r| - h_gamma(r) / gamma <= gamma / 2``, so the minimiser of the
smoothed objective is within ``gamma / 2`` of the least absolute deviation objective. Following Madsen &
Nielsen, "A finite smoothing algorithm for linear l1 estimation", SIAM J. Optim. 3 (1993), the smoothed
problems are solved by the Newton method above (``max_epochs`` iterations at most per problem) for ``gamma``
decreasing tenfold from the median absolute residual of the least-squares fit (each stage's first pass rebuilds
the Hessian from the rows inside the new threshold, about ten times fewer), and after each stage the limit
``gamma -> 0`` is taken exactly: the rows inside the threshold are fitted exactly, the others keep their sign, an
equality-constrained quadratic program (``(d + 1 + m) x (d + 1 + m)``, m rows inside) whose multipliers certify
optimality when they lie in ``[-s_i, s_i]`` (the subgradient condition). Without ridge and with fewer than
``d + 1`` rows inside (a rank-deficient design, or a minimiser that is not unique) the system's two halves
decouple and are solved by least squares, the fit nearest the current one (:func:`_underdetermined_limit`),
under the same certificate. The fit ends with a certified exact minimiser, or when ``gamma`` is below
``4 eps F`` (objective within that, relative), or below the rounding of the residuals it separates.
An exact linear program (``scipy.optimize.linprog(method="highs")``, as scikit-learn's ``QuantileRegressor``)
was measured as the method and not taken: it builds ``2n`` slack variables and took minutes where this takes
seconds (see the README, "Robust regression"). It is the rescue of small problems without ridge whose smoothing
ends without converging (:func:`_lad_linprog`, ``n (d + 1) <= LAD_LP_MAX_SIZE``, ``n <= LAD_LP_MAX_ROWS``),
certified by its dual.

Sparse (CSR) ``X``: every pass is SciPy's ``X @ w`` and ``X^T v``, and the Hessian's change (the rows that
crossed the threshold, :func:`_crossed_hessian`) or rebuild (:func:`_inlier_hessian`) comes from those rows'
weighted Gram by the closed form's CSR kernel (O(stored values per row squared) a row); the rest (the updates and
their drift, the starts, the line search, the continuation, the absolute error's exact limit, which densifies only
its ``p`` rows) is the dense path's. ``solver="auto"`` takes it for the Huber loss where it costs at most a few SGD fits
(:func:`fastopt._solvers._newton_pays`), and elsewhere to finish an SGD fit that has not converged, within a budget
of modelled time (:func:`fastopt._solvers.newton_rescue`, ``TRIAL_KEY``).

Dask arrays: :mod:`fastopt._newton_dask` (Huber and squared error, dense or CSR blocks; one distributed pass per
evaluation, only ``d x d`` statistics travel). Not supported: ``partial_fit`` and ``fit_stream`` (Newton reads all
rows at every iteration; a clear error says so) and the absolute error on Dask arrays.
"""
from __future__ import annotations

import contextvars
import dataclasses
import math
from dataclasses import dataclass

import numpy as np
import scipy.linalg
import scipy.linalg.lapack
import scipy.sparse as sp

from fastopt import _closed_form, _kernels, _krylov, _serial_blas
from fastopt._iterative import max_epochs, max_epochs_label, weight_mean
from fastopt._iterative_lr import _per_sample_loss
from fastopt._result import FitResult, Solver
from fastopt._validation import Data, beyond_range, is_sparse, refuse_nonfinite
from fastopt.exceptions import ConvergenceWarning, _warn
from fastopt.optim import Loss

__all__ = ["SOLVERS", "TRIAL_KEY", "NewtonSolver", "huber_newton", "lad_smoothing"]

EPS = np.finfo(np.float64).eps
# Rows per call of the fused pass (csrc/huber.c): fixed, not per thread, and the segments' sums are added in
# segment order, so results do not depend on the number of threads.
SEGMENT_ROWS = 65536
# Rows per block of ``X^T v`` in NumPy (the exact limit of the absolute error only): 1 MiB of float64 at d = 100.
PASS_BYTES = 2**20
# Rebuild the inlier Hessian from its rows when the updates since the last rebuild moved more than DRIFT times
# what is left on some diagonal entry: an update rounds like the matrices it adds and subtracts, so the error of
# entry (j, j) is about eps * (rows added + rows removed)_jj; DRIFT = 1e3 keeps the Hessian's relative error
# below about 1e3 eps (2e-13), far below what would slow Newton down, at the cost of a rebuild only when large
# (e.g. high-leverage) rows leave the inlier set.
DRIFT = 1e3
ARMIJO = 1e-4
# To round-off: Newton converges finitely, so this costs an iteration or two.
RTOL = 4 * EPS
# The intermediate thresholds of a Huber continuation (huber_newton) only give the next one its start.
STAGE_RTOL = 1e-6
# The Huber fit of n >= SAMPLE_MIN_ROWS rows, at least SAMPLE_ROWS_PER_PARAMETER per parameter in the subsample,
# starts from the fit on every SUBSAMPLE-th row (see huber_sampled). At n = 10^6, d = 100 (5% gross outliers):
# 1 rebuild pass + 2 passes instead of 1 Gram pass + 4 passes (one with a fifth of the rows taken out).
SUBSAMPLE = 16
SAMPLE_MIN_ROWS = 2**16
SAMPLE_ROWS_PER_PARAMETER = 50
# Smoothing stages of the absolute error, gamma decreasing tenfold from the median residual: enough to reach
# 4 eps of the objective from any start.
MAX_STAGES = 40
# Absolute error fits whose smoothing ends without converging are solved as a linear program (HiGHS, through
# scipy.optimize.linprog: the formulation of scikit-learn's QuantileRegressor) when n * (d + 1) and n are at most
# these. HiGHS's time grows faster than n (d + 1): at the caps 1-4 s (5,000 x 9, 1,000 x 49, 200 x 249; 2 cores
# under load), but 44 s at 30,000 x 9 and 318 s at 100,000 x 2, so larger problems keep the smoothing's best point
# and its warning. Rank-deficient designs nearly interpolated by their rows of weight (hashed counts, 125 weighted
# rows for 151 parameters, gross outliers) left stages crawling up to 172% above the minimum.
LAD_LP_MAX_SIZE = 50_000
LAD_LP_MAX_ROWS = 5_000
LAD_LP_RTOL = 1e-6  # (the fit counts as converged within this of the dual's bound: 8e-7 at most over 24 such fits)
# Huber thresholds below this (after tiny targets' scaling: target_exponents) are refused (see _fits): the stop's
# reference, sum s min(|r|, epsilon)^2 / 2, and the curvature test underflow as epsilon^2 nears 1e-308 (at 1e-170
# the fit stopped at its least-squares start, silently; 1e-160 ended 2e-8 off; y of 1e100 beside 1e-140 fits).
HUBER_MIN_EPSILON = 1e-150
# The R factor's steps where Cholesky's cannot be trusted (see _newton); False: Cholesky's alone (A/B measurement).
QR_FALLBACK = True
# A stop whose Cholesky factor's reciprocal condition estimate is below this is confirmed by the R factor's steps
# (see _newton): columns like 2e9 + t without intercept (condition 1e12 and more) stopped 3% above the minimum on
# decrements that the inaccurate direction had made small.
QR_RCOND = 1e-8
# The R-factor step (_Hessian._qr_direction) leaves the directions where R is singular to working precision; where
# the gradient has more than this part of its norm there, they are not exact dependencies of the columns (whose
# gradient part is round-off) but a lack of inliers...
NULL_GRADIENT = 1e-6
# ... and then the step is not the damped one: the outliers get a share of their secant curvature, OUTLIER_CURVATURE
# * eps / |r_i| (the IRLS weight's; see _Hessian._qr_direction). Four designs of tests/test_robust.py's few_inliers
# reach the minimum alike at 0.01, 0.1, 0.3 and 1 (IRLS's majoriser), 0.1 in the fewest iterations (26 to 58
# against 29 to 59 at 0.01 and 30 to 57 at 1).
OUTLIER_CURVATURE = 0.1
# Newton's steps crawl where only the ridge answers the gradient and its steps cross rows by the hundred: after
# CRAWL_STEPS steps in a row that the line search cut below CRAWL_T without the decrement falling tenfold, the
# Huber fit takes the threshold continuation from there (see _newton's crawl_exit). The fits it concerns cut
# their steps to 1e-2 .. 1e-4 at every iteration, to max_epochs.
CRAWL_T = 0.1
CRAWL_STEPS = 3
# The fit's part in the null space the least-squares start confirmed is dropped at the end (_minimum_norm) when no
# prediction moves by more than this many times max(n, d + 1) sqrt(n) eps of the terms it sums: the confirmation's
# own bound (the rows' weighted null squares, summed, within eps max(n, d) of the largest singular value, so one
# row's term within about sqrt(n) times that; a null basis from a CSR Gram moved one-hot predictions by 3e-12 of
# their terms at n = 60,000, one from a subsample's by 6e-10 at 2 x 10^5, a dense one by 4e-16). That certificate is
# relative to the largest column: one-hot columns beside -4.9e6 + t without intercept (413 rows) had a confirmed
# direction along which the fit's part was 6e8, and dropping it would move predictions by up to 16 (8e-9 of their
# terms): kept.
NULL_MOVE = 4.0
# solver="auto"'s trial of Newton (fastopt._solvers.newton_rescue): params[TRIAL_KEY] is ``(budget, pass)``, the
# modelled seconds it may spend and a pass's (a factorisation and a read of the rows; every iteration makes at
# least one pass). Each pass is charged that, and the R factor's path its own modelled flops before it runs (the
# weighted rows' QR, TRIAL_QR_FLOPS n p^2, and the SVD, TRIAL_SVD_FLOPS p^3: measured 0.22 and 0.44 s at n = 3,000,
# p = 1,025, where a pass costs 6 ms, a factorisation 11-38 ms); a fit that has not converged within the budget
# returns None (NewtonSolver.fit). What is left is this context's (one per thread): concurrent fits keep their own.
TRIAL_KEY = "_newton_trial"
TRIAL_QR_FLOPS, TRIAL_SVD_FLOPS = 2.0, 8.0
TRIAL_LU_FLOPS = 2.0 / 3.0  # the absolute error's exact limits (_exact_limit): LU of (p + m) x (p + m), a flop each
_TRIAL = contextvars.ContextVar("fastopt_newton_trial", default=None)


class _TrialSpent(Exception):
    """A trial's budget (TRIAL_KEY) is used up."""


def _charge(flops: float | None = None) -> None:
    """Spend a trial's modelled seconds on ``flops`` (fastopt._krylov.CLOSED_FORM_S_PER_FLOP each) or, without,
    on a pass; raise _TrialSpent, before the work, where they are not left. Nothing outside a trial."""
    if (trial := _TRIAL.get()) is None:
        return
    cost = trial[1] if flops is None else flops * _krylov.CLOSED_FORM_S_PER_FLOP
    if trial[0] < cost:
        raise _TrialSpent
    trial[0] -= cost


def _penalty(alpha: float, w: np.ndarray) -> float:
    """``alpha / 2 ||w||^2``; 0 without ridge, also for coefficients whose squares overflow (tiny columns: alpha = 0
    times inf was NaN)."""
    if not alpha:
        return 0.0
    with np.errstate(over="ignore"):
        return 0.5 * alpha * float(w @ w)


def _dot(a: np.ndarray, b: np.ndarray) -> float:
    """``a . b`` over the rows by NumPy's own loop: BLAS ``ddot`` splits long sums among its threads, so its
    rounding would depend on the BLAS thread count (which a concurrent closed-form fit may be limiting)."""
    return float(np.einsum("i,i->", a, b))


@dataclass
class _Pass:
    """One fused pass at a point: residuals, inlier mask, loss and gradient sums (weights ``s``, unscaled), and
    the Hessian change of the rows whose mask changed (or the inliers' Hessian after a rebuild pass)."""

    r: np.ndarray
    mask: np.ndarray  # uint8, 1 for |r| <= eps
    g: np.ndarray  # X^T (s psi)
    gb: float  # sum s psi
    loss: float  # sum s huber(r)
    dH: np.ndarray | None
    moved: np.ndarray | None
    changed: int
    rebuilt: bool


class _Problem:
    """One target's data: X, y, normalised weights s, and the fixed quantities."""

    def __init__(self, X: np.ndarray, y: np.ndarray, s: np.ndarray, alpha: float, fit_intercept: bool,
                 centre: np.ndarray):
        self.X, self.y, self.s = X, y, s
        self.alpha, self.fit_intercept = alpha, fit_intercept
        self.n, self.d = X.shape
        self.rows = self.n  # that the fit is over (Dask's problem has no rows of its own: every block's)
        self.p = self.d + 1 if fit_intercept else self.d
        self.centre = centre
        self.block = max(64, PASS_BYTES // (8 * max(self.d, 1)))
        self._floor_sums = None  # floor_sums(), computed when first asked
        self._exact = None  # exact_tol(), computed when first asked
        self._abs_colsum = None  # abs_colsum(), computed when first asked
        self._offset = None  # offset_columns(), computed when first asked
        self.constant = None  # with an intercept, the columns constant to round-off (set by lad_smoothing)
        # The columns are exactly dependent (one-hot beside an intercept), as the least-squares start's pivoted
        # solve confirmed: the Newton systems are singular, their damped steps right (see _newton's qr).
        self.singular = False
        # The null space that confirmation found (orthonormal, (d, k), the columns left out beside the intercept
        # too), or None: _minimum_norm's.
        self.null = None

    def exact_tol(self) -> np.ndarray:
        """Per row, the residual below which the absolute error counts it fitted exactly: ``1e-9 (c + |y_i|)``,
        ``c`` the median ``|y|`` of the rows with weight (their mean where that is 0, else 1), so that the test
        scales with ``y`` (with ``c = 1`` it was absolute below ``|y|`` of 1e-9: every row there counted as
        fitted, and the stop's scale came from an outlier alone, 0.03 off)."""
        if self._exact is None:
            a = np.abs(self.y[self.s > 0])
            c = float(np.median(a)) if a.size else 0.0
            if not c > 0:
                c = float(np.mean(a)) if a.size else 0.0
            self._exact = 1e-9 * ((c if c > 0 else 1.0) + np.abs(self.y))
        return self._exact

    def offset_columns(self) -> np.ndarray:
        """The columns of CSR ``X`` whose squared distance from the centre is mostly the centre's: ``c_j^2 > 16
        (q_j - c_j^2)`` with ``q_j = sum_i s_i x_ij^2 / sum_i s_i`` (a column like ``5e6 + t``, or constant), where
        expanding ``(x - c)^2`` into ``x^2 - 2 c x + c^2`` loses ``log2(c^2 / spread)`` bits
        (:func:`_crossed_hessian` centres them exactly). Computed when first asked (one read of ``X``)."""
        if self._offset is None:
            c = self.centre
            if not c.any():
                self._offset = np.zeros(0, np.intp)
            else:
                q = np.asarray(self.X.multiply(self.X).T @ self.s, dtype=np.float64).ravel() / float(np.sum(self.s))
                self._offset = np.flatnonzero(c * c > 16.0 * (q - c * c))
        return self._offset

    def rounding_bound(self, w: np.ndarray, b: float) -> np.ndarray:
        """Per row, the rounding a computed residual may carry, ``gamma_{d+2} (|x_i| . |w| + |b| + |y_i|)``
        (Higham, *Accuracy and Stability of Numerical Algorithms*, 2002, sec. 3.1), in one read of ``X``."""
        aw = np.abs(np.asarray(w, dtype=np.float64))
        if is_sparse(self.X):
            xw = np.asarray(abs(self.X) @ aw, dtype=np.float64).ravel()
        else:
            xw = np.empty(self.n)
            for i0 in range(0, self.n, self.block):
                xw[i0 : i0 + self.block] = np.abs(self.X[i0 : i0 + self.block].astype(np.float64, copy=False)) @ aw
        u = (self.d + 2) * EPS
        return u / (1 - u) * (xw + abs(b) + np.abs(self.y))

    def abs_colsum(self) -> np.ndarray:
        """``sum_i s_i |x_ij|`` per column (float64), computed when first asked (one read of ``X``, blockwise:
        no ``n x d`` temporary)."""
        if self._abs_colsum is None:
            if is_sparse(self.X):
                self._abs_colsum = np.asarray(abs(self.X).T @ self.s, dtype=np.float64).ravel()
            else:
                col = np.zeros(self.d)
                for i0 in range(0, self.n, self.block):
                    Xb = self.X[i0 : i0 + self.block]
                    col += np.einsum("ij,i->j", np.abs(Xb.astype(np.float64, copy=False)), self.s[i0 : i0 + self.block])
                self._abs_colsum = col
        return self._abs_colsum

    def run(self, w: np.ndarray, b: float, eps: float, prev: np.ndarray | None = None,
            hessian: bool = True) -> _Pass:
        """The fused pass (:func:`fastopt._kernels.huber_pass`) at ``(w, b)``: fixed segments of rows on parallel
        threads, summed in segment order. With ``hessian``, the Hessian change relative to the mask ``prev``
        (None: the Hessian of the inliers, rebuilt)."""
        _charge()
        n, d, p = self.n, self.d, self.p
        w = np.ascontiguousarray(w, dtype=np.float64)
        if is_sparse(self.X):
            return self._run_csr(w, b, eps, prev, hessian)
        r, mask = np.empty(n), np.empty(n, np.uint8)
        centre = self.centre if hessian else None

        serial = False

        def segment(start):
            stop = min(start + SEGMENT_ROWS, n)
            g = np.empty(d)
            dH, moved = (np.empty((p, p)), np.empty(p)) if hessian else (None, None)
            out = _kernels.huber_pass(self.X[start:stop], self.y[start:stop], self.s[start:stop], w, float(b),
                                      float(eps), centre, None if prev is None else prev[start:stop],
                                      mask[start:stop], r[start:stop], g, dH, moved, serial=serial)
            return g, dH, moved, out

        starts = list(range(0, n, SEGMENT_ROWS))
        threads = min(_closed_form._n_threads(), len(starts))
        g, loss, gb, changed = np.zeros(d), 0.0, 0.0, 0
        dH, moved = (np.zeros((p, p)), np.zeros(p)) if hessian else (None, None)

        def run_all(threads):
            nonlocal loss, gb, changed
            # In waves of `threads` segments, so that at most that many p x p changes are alive at once.
            for i in range(0, len(starts), threads):
                wave = starts[i : i + threads]
                parts = _krylov._pool().map(segment, wave) if threads > 1 else map(segment, wave)
                for gs, dHs, moved_s, out in parts:  # in segment order, whichever thread finished first
                    g[:] += gs
                    loss += out[0]
                    gb += out[1]
                    if hessian and out[2]:
                        changed += int(out[2])
                        dH[:] += dHs
                        moved[:] += moved_s

        # The kernel calls BLAS syrk on the gathered rows: the parallel segments run it single-threaded (nested BLAS
        # threads measured up to 50 times slower on a loaded machine), through the closed form's private
        # single-threaded BLAS; without it, under the closed form's one-at-a-time process-wide limit, and a call
        # that finds another in its parallel section runs serially (same result either way).
        if threads > 1 and hessian and _serial_blas.tables() is not None:
            serial = True
            run_all(threads)
        elif threads > 1 and hessian and _closed_form._PARALLEL.acquire(blocking=False):
            try:
                with _closed_form._blas_controller().limit(limits=1, user_api="blas"):
                    run_all(threads)
            finally:
                _closed_form._PARALLEL.release()
        else:
            run_all(threads if not hessian else 1)
        return _Pass(r, mask, g, gb, loss, dH, moved, changed, prev is None)

    def _run_csr(self, w: np.ndarray, b: float, eps: float, prev: np.ndarray | None, hessian: bool) -> _Pass:
        """:meth:`run` on CSR ``X``: SciPy's products for the residuals and the gradient, and with ``hessian``
        the Hessian change of the rows that crossed the threshold since ``prev`` (:func:`_crossed_hessian`), as
        the dense pass's, or the inlier Hessian rebuilt from the inliers' weighted Gram (``prev`` None, or more
        rows crossed than half the inliers: :func:`_inlier_hessian`), both by the compiled CSR kernel of the
        closed form, whose rows' products cost O(stored values per row squared) each, not O(d^2)."""
        X, y, s = self.X, self.y, self.s
        r = np.asarray(X @ w, dtype=np.float64).ravel()
        r += b
        r -= y
        with np.errstate(over="ignore", invalid="ignore"):  # an overflowing residual gives an infinite loss
            inside = np.abs(r) <= eps
            psi = np.clip(r, -eps, eps)
            rho = np.where(inside, 0.5 * r * r, eps * (np.abs(r) - 0.5 * eps) if eps < np.inf else 0.0)
        sp = s * psi
        g = np.asarray(X.T @ sp, dtype=np.float64).ravel()
        loss, gb = _dot(s, rho), float(np.sum(sp))
        mask = inside.view(np.uint8)
        if not hessian:
            return _Pass(r, mask, g, gb, loss, None, None, 0, False)
        inliers = int(inside.sum())
        if prev is not None:
            crossed = np.flatnonzero(inside != prev.view(bool))
            if 2 * crossed.size <= inliers:
                dH, moved = _crossed_hessian(self, crossed, inside)
                return _Pass(r, mask, g, gb, loss, dH, moved, int(crossed.size), False)
        return _Pass(r, mask, g, gb, loss, _inlier_hessian(self, inside), None, inliers, True)

    def floor_sums(self) -> tuple:
        """``(sum s y^2, sum s, sum s r^2, sum s |y|, sum s |y| r, sum s r)`` with ``r_i = ||x_i||_1`` (computed
        once): :func:`_at_round_off`'s bound."""
        if self._floor_sums is None:
            if is_sparse(self.X):
                r = np.asarray(abs(self.X).sum(axis=1), dtype=np.float64).ravel()
            else:
                r = np.concatenate([np.abs(self.X[i : i + self.block]).sum(axis=1, dtype=np.float64)
                                    for i in range(0, self.n, self.block)] or [np.zeros(0)])
            s = self.s
            # rows of no weight count nothing: their y or X of 1e200 squared had overflowed (0 * inf: NaN sums)
            y = np.where(s > 0, np.abs(self.y.astype(np.float64)), 0.0)
            r = np.where(s > 0, r, 0.0)
            with np.errstate(over="ignore"):  # rows' 1-norms of 1e155 square to inf: a bound of inf, no stop by it
                self._floor_sums = (_dot(s, y * y), float(np.sum(s)), _dot(s, r * r), _dot(s, y), _dot(s * y, r),
                                    _dot(s, r))
        return self._floor_sums

    def xt(self, v: np.ndarray, centred: bool = False) -> np.ndarray:
        """``X^T v`` in float64, blockwise; with ``centred``, ``(X - centre)^T v``: on dense ``X`` from the centred
        rows (``X^T v - centre sum v`` cancels in a column like ``5e6 + t``: errors of 1e-9 against values of
        1e-2), on CSR by that difference (centring would densify ``X``)."""
        if is_sparse(self.X):
            g = np.asarray(self.X.T @ v, dtype=np.float64).ravel()
            return g - self.centre * float(np.sum(v)) if centred else g
        g = np.zeros(self.d)
        for i0 in range(0, self.n, self.block):
            i1 = min(i0 + self.block, self.n)
            Xb = self.X[i0:i1]
            Xb = Xb if Xb.dtype == np.float64 else Xb.astype(np.float64)
            g += np.einsum("ij,i->j", Xb - self.centre if centred else Xb, v[i0:i1])
        return g


def _inlier_hessian(prob: _Problem, inside: np.ndarray) -> np.ndarray:
    """``sum_inliers s_i z_i z_i^T`` (see :class:`_Hessian`) of CSR ``prob.X``, from the inliers' weighted
    statistics (:func:`_hessian_of`)."""
    s = np.where(inside, prob.s, 0.0)  # the outliers by weight 0, not a copy of the inliers' rows
    if not np.any(s > 0):
        return np.zeros((prob.p, prob.p))
    return _hessian_of(prob, _full_state(prob.X, np.zeros((prob.n, 1)), s))


def _crossed_hessian(prob: _Problem, crossed: np.ndarray, inside: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The Hessian change of CSR ``prob.X``'s rows ``crossed`` (sorted), which entered the inliers where
    ``inside`` or left them elsewhere: ``sum_i v_i z_i z_i^T`` with ``v_i = s_i`` for a row that entered and
    ``-s_i`` for one that left (see :class:`_Hessian`), and the diagonal mass it moved, ``sum_i s_i diag(z_i
    z_i^T)``, which :class:`_Hessian` tracks against DRIFT, as the dense pass's change.

    From the rows' nonzeros: with ``a = sum v_i x_i`` and ``V = sum v_i``, the block of ``X``'s columns is
    ``sum v_i x_i x_i^T - a c^T - c a^T + V c c^T`` (``c`` the problem's centre), the intercept's column
    ``a - V c`` and its corner ``V``: one sparse product (O(stored values per row squared) a row) and a rank-two
    update. That expansion loses the bits of ``c_j^2`` over column ``j``'s spread, so the columns whose centre
    dominates (:meth:`_Problem.offset_columns`) are centred exactly instead, ``x_ij - c_j`` for the crossed rows
    (``k x |J|`` values), and their rows and columns of the change recomputed from those. (The crossed rows' own
    centred statistics by the closed form's kernel, moved to ``c``, cost about ten ``p x p`` passes and a thread
    hand-off a call: 5.7 ms at ``p = 801`` with 8 rows crossing, against about 1 ms.)"""
    p, d, c = prob.p, prob.d, prob.centre
    dH, moved = np.zeros((p, p)), np.zeros(p)
    crossed = crossed[prob.s[crossed] > 0]  # rows of weight 0 change nothing
    if not crossed.size:
        return dH, moved
    rows = prob.X[crossed]
    data = rows.data if rows.dtype == np.float64 else rows.data.astype(np.float64)
    cols, per_row = rows.indices, np.diff(rows.indptr)
    rows64 = sp.csr_array((data, cols, rows.indptr), shape=rows.shape)
    s = prob.s[crossed]
    s_max = float(np.max(s))
    # Where the rows' weighted squares near the subnormal range (X of 1e-160: x^2 s of 1e-323, two bits), the weights
    # are taken to [0.5, 1) by a power of two and the change scaled back at the end, as the closed form's
    # statistics keep theirs (the products of 1e-320 keep their 11 bits): Newton's system factorises.
    top = float(np.max(np.abs(data), initial=0.0))
    shift = int(np.frexp(s_max)[1]) if top * top * s_max < 2.0**-900 else 0
    if shift:
        s = np.ldexp(s, -shift)
    v = np.where(inside[crossed], s, -s)
    vx = data * np.repeat(v, per_row)
    a = np.bincount(cols, weights=vx, minlength=d)
    V = float(np.sum(v))
    block = dH[:d, :d]
    if c.any():  # (no intercept: c = 0)
        # -(a c^T + c a^T) + V c c^T = -(u c^T) - c u^T, u = a - V c / 2, written into the block and subtracted:
        # symmetric to the bit (entry (i, j) is -(u_i c_j) - c_i u_j, (j, i) the same two products), and no BLAS
        # (a product of inner dimension 2 woke the process's two-thread BLAS: 0.15 to 16 ms as the other core was
        # idle or busy, against 1 ms)
        u = a - 0.5 * V * c
        np.multiply(-u[:, None], c, out=block)
        block -= np.multiply(c[:, None], u)
    # SciPy's CSR product stores each entry once (its rows' columns gathered by a linked list), so a plain scatter
    # (COO's sum_duplicates sorted them: most of the call at 400 rows crossing)
    gram = sp.csr_array(rows64.T @ sp.csr_array((vx, cols, rows.indptr), shape=rows.shape))
    block[np.repeat(np.arange(d), np.diff(gram.indptr)), gram.indices] += gram.data
    # moved: sum s_i (x_ij - c_j)^2 = sum s_i x_ij (x_ij - 2 c_j) over the stored values, + (sum s_i) c_j^2
    sx = data * (data - 2 * c[cols]) * np.repeat(s, per_row)
    total = float(np.sum(s))
    moved[:d] = np.bincount(cols, weights=sx, minlength=d) + total * c * c
    lost = _underflowed(rows, moved[:d], s_max)
    if lost is not None:  # X of 1e-165: its squares are 0 in every Hessian (the closed form's pass had named it)
        raise _overflow_error("X", lost, "small")
    side = a - V * c  # the intercept's column: sum v_i (x_i - c)
    J = prob.offset_columns()
    if J.size:
        Z = rows64[:, J].toarray() - c[J]  # z_iJ = x_iJ - c_J, each rounded once
        vZ = v[:, None] * Z
        E = np.asarray(rows64.T @ vZ) - np.outer(c, v @ Z)  # sum v (x - c) z_J^T by the expansion: rows not in J
        E[J] = Z.T @ vZ  # rows in J: exactly
        block[:, J] = E
        block[J, :] = E.T
        moved[J] = s @ (Z * Z)
        side[J] = v @ Z
    if prob.fit_intercept:
        dH[:d, d] = dH[d, :d] = side
        dH[d, d] = V
        moved[d] = total
    if shift:
        np.ldexp(dH, shift, out=dH)
        np.ldexp(moved, shift, out=moved)
    return dH, moved


def _hessian_of(prob: _Problem, state: _closed_form.ClosedFormState) -> np.ndarray:
    """``sum s_i z_i z_i^T`` (see :class:`_Hessian`) over the rows whose statistics ``state`` holds: their
    weighted centred Gram ``G`` about their mean ``m`` (total weight ``W``), moved to the problem's centre ``c``,
    ``G + W (m - c)(m - c)^T``, with ``W (m - c)`` and ``W`` in the intercept's row and column."""
    d = prob.d
    dm = state.mean[:d] - prob.centre
    H = np.zeros((prob.p, prob.p))
    H[:d, :d] = state.gram[:d, :d] + state.weight * np.outer(dm, dm)
    if prob.fit_intercept:
        H[:d, d] = H[d, :d] = state.weight * dm
        H[d, d] = state.weight
    return H


def _rows(X, rows):
    """Rows ``rows`` (a slice or indices) of dense or CSR ``X``, dense ones C-contiguous."""
    return X[rows] if is_sparse(X) else np.ascontiguousarray(X[rows])


def _damping(H: np.ndarray, centre: np.ndarray, weight: float, constant: np.ndarray) -> np.ndarray:
    """The Levenberg-Marquardt damping reference: the all-rows Hessian's diagonal (Marquardt's scaling), or, for a
    column ``constant`` to round-off (:func:`fastopt._closed_form.constant_columns`, as :func:`_least_squares`
    leaves out), its weighted mean square (its scale, which it keeps while its centred entry is rounding); 1 for a
    zero column and for the intercept."""
    d = centre.shape[0]
    centred = np.diag(H)[:d]
    # (The mean square for every column made the smallest damping of a column like ``5e6 + t``, raw / centred
    # 2.5e13, 2,500 times its curvature: on a one-hot design, singular and so always damped, its coefficient
    # crawled to max_iter.)
    ref = np.where(constant, centred + weight * centre**2, centred)
    return np.append(np.where(ref > 0, ref, 1.0), 1.0)[: H.shape[0]]


class _Hessian:
    """The inlier Hessian ``H = sum_inliers s_i z_i z_i^T``, ``z_i = [x_i - m0, 1]`` (``x_i`` without intercept),
    in coordinates centred on the all-rows mean ``m0`` (so a large column mean does not spoil the conditioning),
    kept up to date by the passes' changes, and the Newton solve."""

    def __init__(self, prob: _Problem, full: _closed_form.ClosedFormState | None, damp: np.ndarray | None = None):
        """From the all-rows statistics ``full`` (every row an inlier, as at a least-squares start); or, with
        ``full`` None, empty until the first pass rebuilds it, with the damping reference ``damp``."""
        self.prob = prob
        p = prob.p
        self.rebuilds = 0
        self.damped_share = 0.0  # of the last direction
        self.mu = 0.0  # the damping of the last direction (0: none)
        self.rcond = 1.0  # of the last direction's (scaled) Cholesky factor
        # Directions from the inliers' R factor (_inlier_r) instead of the Cholesky factor of H: set by _newton
        # where the Cholesky steps cannot be trusted (see _newton); the factor and the mask it is of.
        self.qr, self._qr = False, None
        self.switched = False  # whether the last _newton call switched to them
        self.residuals = None  # (r, eps) of the current point (_take): the secant step's outlier curvatures
        # Whether _qr_direction takes the secant step (Huber); the absolute error's smoothing stages keep the damped
        # step, which its limits were tuned with (with the secant step a cubic of x near 1454 beside an intercept
        # ended its last stage with no row inside the threshold and ran it to max_epochs, warned; 85 -> 186
        # iterations for the same objective).
        self.secant = True
        self.crawled = False  # whether the last _newton call returned on its crawl_exit
        if full is None:
            self.H, self.damp, self.mask, self.mass = np.zeros((p, p)), damp, None, np.zeros(p)
            self.stale = True  # the next pass must rebuild (prev=None)
            return
        self.H = _hessian_of(prob, full)
        # Damping reference (_damping): the all-rows Hessian's diagonal, a constant column's mean square, 1 for a zero
        # column and for the intercept.
        self.damp = _damping(self.H, prob.centre, full.weight, _closed_form.constant_columns(full))
        self.mask = np.ones(prob.n, np.uint8)
        self.mass = np.abs(np.diag(self.H)).copy()
        self.stale = False

    def prev(self) -> np.ndarray | None:
        """The mask the next pass's change is relative to (None: rebuild)."""
        return None if self.stale else self.mask

    def apply(self, res: _Pass) -> None:
        """Take the pass's Hessian change (or rebuilt Hessian) and mask."""
        if res.rebuilt:
            self.H = res.dH
            self.mass = np.abs(np.diag(res.dH)).copy()
            self.stale = False
            self.rebuilds += 1
        elif res.changed:
            self.H += res.dH
            self.mass += res.moved
        self.mask = res.mask

    def drifted(self) -> bool:
        """Whether the updates since the last rebuild may have cost more than DRIFT * eps of some diagonal entry
        (see DRIFT): then the next pass rebuilds."""
        diag = np.diag(self.H)
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.where(self.mass > 0, self.mass / np.abs(diag), 0.0)
        return bool(np.max(ratio, initial=0.0) > DRIFT)

    def direction(self, g: np.ndarray, gb: float, scale: float, ridge: bool = True):
        """The (damped) Newton direction for gradient ``(g, gb)`` (the Hessian times ``scale``, plus the ridge
        unless ``ridge`` is False)."""
        if self.qr:
            return self._qr_direction(g, gb, scale)
        prob, d = self.prob, self.prob.d
        H = self.H * scale
        if ridge:
            H[np.arange(d), np.arange(d)] += prob.alpha
        if prob.fit_intercept:
            rhs = np.append(g - prob.centre * gb, gb)
        else:
            rhs = g
        # The damping reference is a Hessian diagonal too, so it takes the objective's scale (the absolute error's
        # smoothing stages have scale 1 / gamma: unscaled, a large gamma's real curvature passed for round-off).
        if not (np.isfinite(H).all() and np.isfinite(rhs).all()):  # a large fit's subsample missed the largest rows
            raise _overflow_error("X or y")
        damp = self.damp * scale
        sc = np.sqrt(np.maximum(np.diag(H), damp * EPS))
        Hs = H / np.outer(sc, sc)
        # A coordinate whose Hessian entry is below eps of its scale (a column constant on the inliers, which
        # the intercept already spans, or no inliers at all) is round-off: damp from the start, so that the step
        # leaves it (nearly) alone instead of following the noise (Cholesky may well succeed on it). So are exactly
        # dependent columns (:attr:`_Problem.singular`): the system is singular at every point, and a Cholesky
        # factor that passes does so by rounding (reciprocal condition 1e-17), its step running along the null
        # space (one-hot columns beside an intercept, 60,000 rows: coefficients of 1e5 that the intercept
        # cancelled, where the minimum-norm ones are of 7).
        mu = 1e-10 if prob.singular or np.any(np.diag(Hs) < 0.5) else 0.0
        for _ in range(30):
            Hm = Hs + np.diag(mu * damp / sc**2) if mu else Hs
            try:
                c = _cholesky_upper(Hm)
                u = scipy.linalg.cho_solve(c, rhs / sc, check_finite=False)
                v = -u / sc
                if np.all(np.isfinite(v)):
                    break
            except np.linalg.LinAlgError:
                pass
            mu = 1e-10 if mu == 0 else mu * 100
        else:  # pragma: no cover - damping of 1e50 always factorises
            raise RuntimeError("internal error: the damped Newton system did not factorise")
        # The factor's reciprocal condition estimate (O(p^2)): the direction's relative error is about eps over it.
        self.rcond = float(scipy.linalg.lapack.dpocon(c[0], float(np.abs(Hm).sum(axis=0).max()))[0])
        # How much of the (scaled) gradient the damping answered rather than the curvature: about 1 where the
        # objective is (nearly) linear along the gradient, no row an inlier there (see huber_newton).
        norm = float(np.linalg.norm(rhs / sc))
        self.damped_share = float(np.linalg.norm(mu * damp / sc**2 * u)) / norm if mu and norm > 0 else 0.0
        self.mu = mu
        return self._from_centred(v)

    def untrusted(self) -> bool:
        """Whether the last direction may be far from Newton's: damped, or its factor's condition beyond
        ``1 / QR_RCOND`` (its relative error ``eps / rcond`` then above about 2e-8)."""
        return bool(self.mu) or self.rcond < QR_RCOND

    def _from_centred(self, v: np.ndarray):
        """``(dw, db)`` of a step ``v`` in the Hessian's coordinates (intercept last, centred on ``centre``)."""
        prob, d = self.prob, self.prob.d
        if prob.fit_intercept:
            dw, dc = v[:d], v[d]
            return dw, dc - float(prob.centre @ dw)
        return v, 0.0

    def _inlier_factor(self) -> np.ndarray:
        """:func:`_inlier_r` of the current inliers, kept until they change."""
        if self._qr is None or not np.array_equal(self._qr[0], self.mask):
            self._qr = (self.mask.copy(), _inlier_r(self.prob, self.mask.view(bool)))
        return self._qr[1]

    def _qr_direction(self, g: np.ndarray, gb: float, scale: float):
        """:meth:`direction` from ``H = R^T R``, ``R`` of Householder QR of the inliers' weighted rows
        (:func:`_inlier_r`, one read of ``X`` whenever the inliers changed), by two triangular solves; the
        minimum-norm step where ``R`` is singular to working precision (:func:`fastopt._closed_form._solve_r`'s
        rank cutoff). ``R`` has the condition of ``X``'s inlier rows where ``H`` has its square: where that
        exceeds ``1 / eps``, Cholesky of ``H`` fails, its damped steps stop short of the minimiser, and these
        (each from the exact gradient: iterative refinement with the factor of a nearby matrix) still converge.

        Where the inliers leave the gradient a part without curvature (fewer inliers than parameters, or not
        spanning them: the objective is piecewise linear along some directions), the outliers' rows give it, each
        ``OUTLIER_CURVATURE`` times its secant curvature ``eps / |r_i|`` (that of the quadratic through the origin
        that touches its loss at ``r_i``, as in IRLS): the same solve with ``R`` of every row
        (:meth:`_secant_factor`, one read of ``X`` a step; Huber fits only, see ``secant``). The damped step's
        scale, the columns' all-rows Hessian diagonal, is no guide along directions that columns like ``3e9 + t``
        nearly cancel: on such a design (no intercept, four one-hot columns, 61 rows, 36 inliers for 40 independent
        columns) its line search found no decrease 1.8% above the minimum, which these steps reach, with the
        minimum's 40 inliers. Where even every row leaves such a part (no row of weight along it), the damped step."""
        v = self._r_solve(self._inlier_factor(), g, gb, scale)
        if v is None and self.secant:
            v = self._r_solve(self._secant_factor(), g, gb, scale)
        if v is None:
            self.qr = False
            try:
                return self.direction(g, gb, scale)
            finally:
                self.qr = True
        return self._from_centred(v)

    def _secant_factor(self) -> np.ndarray:
        """:meth:`_qr_direction`'s ``R`` of every row at the current point, the outliers' weights scaled by
        ``OUTLIER_CURVATURE eps / |r_i|`` (:func:`_secant_qr_state`)."""
        r, eps = self.residuals
        return _r_of_state(self.prob, _secant_qr_state(self.prob, r, eps))

    def _r_solve(self, R: np.ndarray, g: np.ndarray, gb: float, scale: float) -> np.ndarray | None:
        """The step ``-(scale R^T R + alpha I)^{-1} (g, gb)`` in the Hessian's coordinates, by two triangular solves
        where ``R`` (with the ridge) is well conditioned, else the minimum-norm step over the part that is not
        singular to working precision; None where the gradient has more than ``NULL_GRADIENT`` of its norm in the
        singular part (no curvature there: not exact dependencies of the columns, whose part is round-off)."""
        prob, d, p = self.prob, self.prob.d, self.prob.p
        R = R * math.sqrt(scale)
        if prob.alpha:
            R = _closed_form._triangle([R, math.sqrt(prob.alpha) * np.eye(d, p)], p)
        rhs = np.append(g - prob.centre * gb, gb) if prob.fit_intercept else g
        if not (np.isfinite(R).all() and np.isfinite(rhs).all()):
            raise _overflow_error("X or y")
        self.damped_share, self.mu, self.rcond = 0.0, 0.0, 1.0
        dead = ~R.any(axis=0)
        if not dead.any():
            return self._triangle_step(R, rhs, 0.0)
        # Zero columns of R (columns no row with curvature stores: hashed columns no term falls in, levels seen
        # only among outliers) are exact null directions e_j of the Hessian: the step there is 0 (minimum norm),
        # the rest is solved on the triangle of R's live columns, which is often well conditioned. Left in, they
        # sent every step to the SVD of all of R: 20 of 27.7 s of a Huber fit on 4,000 rows of 4,096 hashed columns.
        live = np.flatnonzero(~dead)
        step = np.zeros(p)
        null_sq = float(np.dot(rhs[dead], rhs[dead]))  # (their scale is 1, as the SVD path's zero columns had)
        if live.size:
            part = self._triangle_step(_closed_form._triangle(R[:, live], live.size), rhs[live], null_sq)
            if part is None:
                return None
            step[live] = part
        elif null_sq > 0.0:
            return None
        return step

    def _triangle_step(self, R: np.ndarray, rhs: np.ndarray, null_sq: float) -> np.ndarray | None:
        """``-(R^T R)^{-1} rhs`` by two triangular solves where ``R`` (upper triangular, columns scaled by powers of
        two) is well conditioned, else the minimum-norm step over its part that is not singular to working
        precision; None where the scaled gradient has more than ``NULL_GRADIENT`` of its norm in the singular part
        (``null_sq``: the squared part already set aside, in zero columns)."""
        prob, p = self.prob, R.shape[0]
        col = _closed_form._pow2(np.linalg.norm(R, axis=0))
        Rs = R / col
        rcond, _ = scipy.linalg.lapack.dtrcon(Rs, norm="1", uplo="U", diag="N")
        total_sq = float(np.dot(rhs / col, rhs / col)) + null_sq
        if rcond >= EPS * max(prob.rows, prob.p):
            if null_sq > NULL_GRADIENT**2 * total_sq:
                return None
            u = scipy.linalg.solve_triangular(Rs, rhs / col, trans="T", check_finite=False)
            return -scipy.linalg.solve_triangular(Rs, u, check_finite=False) / col
        _charge(TRIAL_SVD_FLOPS * float(p) ** 3)
        _, sv, Vt = np.linalg.svd(Rs)
        keep = sv > EPS * max(prob.rows, prob.p) * sv[0]
        u = Vt @ (rhs / col)
        if float(np.dot(u[~keep], u[~keep])) + null_sq > NULL_GRADIENT**2 * total_sq:
            return None
        return -(Vt[keep].T @ (u[keep] / sv[keep] ** 2)) / col


def _inlier_r(prob: _Problem, inside: np.ndarray) -> np.ndarray:
    """Upper-triangular ``R`` (p, p) with ``R^T R = sum_inliers s_i z_i z_i^T`` (:class:`_Hessian`'s matrix, no
    ridge) by the closed form's tall-skinny Householder QR of the rows ``inside`` (weight 0 for the others;
    :func:`fastopt._closed_form.chunk_qr_state`: one read of ``X``, CSR rows densified a block at a time, no copy
    of ``X``), centred on the inliers' mean and moved to the problem's centre by one more row."""
    return _r_of_state(prob, _inlier_qr_state(prob, inside))


def _inlier_qr_state(prob: _Problem, inside: np.ndarray) -> _closed_form.ClosedFormState | None:
    """The closed form's ``R`` statistics of ``prob``'s rows ``inside`` (None without any of weight): those of row
    blocks merge exactly (:func:`fastopt._closed_form.merge_states`, as Dask's blocks do)."""
    return _weighted_qr_state(prob, np.where(inside, prob.s, 0.0))


def _secant_qr_state(prob: _Problem, r: np.ndarray, eps: float) -> _closed_form.ClosedFormState | None:
    """:func:`_weighted_qr_state` of the rows at residuals ``r`` with :meth:`_Hessian._secant_factor`'s weights:
    ``s_i`` inside the threshold ``eps``, ``OUTLIER_CURVATURE eps / |r_i| s_i`` outside."""
    a = np.abs(r)
    with np.errstate(divide="ignore"):
        share = np.where(a <= eps, 1.0, OUTLIER_CURVATURE * eps / a)
    return _weighted_qr_state(prob, prob.s * share)


def _weighted_qr_state(prob: _Problem, s: np.ndarray) -> _closed_form.ClosedFormState | None:
    """The closed form's ``R`` statistics of ``prob``'s rows with the weights ``s`` (None without any)."""
    if not np.any(s > 0):
        return None
    _charge(TRIAL_QR_FLOPS * float(prob.n) * float(prob.p) ** 2)
    X = prob.X
    data = Data(X=X, Y=np.zeros((prob.n, 1), X.dtype), sample_weight=s.astype(X.dtype), y_was_1d=True)
    return _closed_form.chunk_qr_state({"fit_intercept": prob.fit_intercept}, data)


def _r_of_state(prob: _Problem, state: _closed_form.ClosedFormState | None) -> np.ndarray:
    """:func:`_inlier_r` from the inliers' ``R`` statistics (:func:`_inlier_qr_state`, or their merge)."""
    d, p = prob.d, prob.p
    if state is None:
        return np.zeros((p, p))
    # the weights were divided by 2**weight_exp (even): R by its square root, exactly
    Rc = np.ldexp(state.r[:d, :d], state.weight_exp // 2)
    root = math.sqrt(math.ldexp(state.weight, state.weight_exp))
    dm = state.mean[:d] - prob.centre
    if prob.fit_intercept:
        top = np.zeros((d, p))
        top[:, :d] = Rc
        R = _closed_form._triangle([top, root * np.append(dm, 1.0)], p)
        # A column constant to round-off on the inliers is the intercept's: its step is 0, as the damped solve
        # leaves it (its centred R column is rounding, which would give it a huge coefficient that cancels the
        # intercept's).
        R[:, np.flatnonzero(_closed_form.constant_columns(state))] = 0.0
        return R
    return _closed_form._triangle([Rc, root * dm], p)


def _cholesky_upper(H: np.ndarray) -> tuple[np.ndarray, bool]:
    """``scipy.linalg.cho_factor(H)`` (upper), by the closed form's LAPACK call: the private single-threaded one up
    to ``TAIL_SERIAL_MAX_D`` columns (:func:`fastopt._closed_form._tail_serial`). The process's two-thread BLAS
    took 3.6-7 ms a factorisation of 310 columns inside a sparse Huber fit, where the others' spinning threads
    compete with it (0.5-0.7 ms alone); raises ``LinAlgError`` when ``H`` is not positive definite."""
    U = np.array(H, dtype=np.float64, order="F")
    if _kernels.potrf_upper(U, serial=_closed_form._tail_serial(U.shape[0])) != 0:
        raise np.linalg.LinAlgError("not positive definite")
    return U, False


@dataclass
class _Fit:
    w: np.ndarray
    b: float
    objective: float
    n_iter: int
    converged: bool
    curve: list


class _Slope:
    """d/dt of the objective at ``w + t dw`` (residuals ``r + t q``) for ``t`` in ``[0, 1]``. A row whose
    residual stays within ``[-eps, eps]`` over the whole segment adds ``s (r + t q) q``, one that stays beyond it
    ``+-s eps q``: both are summed once, so that each evaluation reads only the rows that cross a threshold on
    the way (a line search evaluated every row about 20 times: a quarter of an absolute-error fit of 200,000
    rows)."""

    def __init__(self, prob: _Problem, r, q, w, dw, eps: float, scale: float):
        r1 = r + q
        lo, hi = np.minimum(r, r1), np.maximum(r, r1)
        inside = (lo >= -eps) & (hi <= eps)
        cross = ~inside & (lo < eps) & (hi > -eps)  # neither inside nor beyond one threshold throughout
        sq = prob.s * q
        psi0 = np.clip(r, -eps, eps)  # the rows that do not cross: psi(t) = psi0 + t q inside, psi0 beyond
        psi0[cross] = 0.0
        self.a0 = _dot(sq, psi0)
        self.a1 = _dot(sq, q * inside)
        self.r, self.q, self.sq = r[cross], q[cross], sq[cross]
        self.eps, self.scale, self.alpha, self.w, self.dw = eps, scale, prob.alpha, w, dw

    def __call__(self, t: float) -> float:
        psi = np.clip(self.r + t * self.q, -self.eps, self.eps)
        ridge = self.alpha * float((self.w + t * self.dw) @ self.dw) if self.alpha else 0.0
        return self.scale * (self.a0 + t * self.a1 + _dot(self.sq, psi)) + ridge


def _line_search(prob: _Problem, r, q, w, dw, eps: float, scale: float) -> float:
    """The minimiser over ``t in [0, 1]`` of the convex, piecewise-quadratic objective along the step (its slope
    is non-decreasing): bracketed geometrically, then bisected to 0.1% (0 when the slope is not negative at 0).
    Residuals along the step are ``r + t q`` with ``q = X dw + db`` from the trial pass: no pass over X."""
    slope = _Slope(prob, r, q, w, dw, eps, scale)
    if slope(0.0) >= 0.0:
        return 0.0
    hi = 1.0
    if slope(hi) <= 0.0:
        return hi
    lo = hi
    while lo > 1e-30:
        lo *= 0.125
        if slope(lo) < 0.0:
            break
        hi = lo
    else:
        return 0.0
    while hi - lo > 1e-3 * hi:
        mid = 0.5 * (lo + hi)
        if slope(mid) < 0.0:
            lo = mid
        else:
            hi = mid
    return lo


def _visit(prob: _Problem, hess: _Hessian, w, b, eps: float) -> _Pass:
    """The pass at ``(w, b)`` relative to the Hessian's mask, taken into the Hessian; a rebuild pass follows when
    the updates have drifted (see DRIFT)."""
    return _take(prob, hess, prob.run(w, b, eps, hess.prev()), w, b, eps)


def _take(prob: _Problem, hess: _Hessian, res: _Pass, w, b, eps: float) -> _Pass:
    """Take the pass ``res`` at ``(w, b)`` into the Hessian; when the updates have drifted (see DRIFT), rebuild it
    by another pass there, and return that one."""
    hess.apply(res)
    if hess.drifted():
        hess.stale = True
        res = prob.run(w, b, eps, None)
        hess.apply(res)
    hess.residuals = (res.r, eps)
    return res


def _newton(prob: _Problem, w, b, cur: _Pass, hess: _Hessian, eps: float, scale: float, rtol: float,
            max_iter: int, curve: list, probe=None, reference=None, floor: bool = False, qr: bool = False,
            damped: bool = False, crawl_exit: bool = False):
    """Semismooth Newton on ``scale * sum s huber_eps(r) + alpha/2 ||w||^2`` from (w, b), where ``cur`` is the
    pass at (w, b), already taken into ``hess``. Returns (w, b, r, F, iterations, converged).
    ``probe(w, b, r, mask)``, if given, is asked at every iterate whether to stop (it has found the answer).

    Each iteration is one pass over X, at the full Newton step: residuals, objective and gradient there, and the
    Hessian change of the rows that crossed the threshold, used if the step is taken. When the step does not
    decrease the objective enough (Armijo), the objective is minimised along the segment from the residuals
    alone (the trial pass gave ``X dw``), and one more pass is made at the point found.

    The stop compares the decrement with ``|F|``, or with ``reference(r, w, F)`` (:func:`_huber_reference`,
    :func:`_lad_reference`): far outliers add to ``F`` a part whose round-off no step can see (their loss changes
    with the fit by exactly ``eps`` times the change of their fitted value), and relative to it the stop came
    before the inlier set had settled (1e-2 off with one outlier at 1e16 or five at 1e12). With ``floor``, a
    decrement within ``2 rtol`` of :func:`round_off_floor` (at the current inliers) stops too: an objective at
    round-off of zero (an exact fit) has no relative digits left, and steps whose decrements were round-off of it
    went on to ``max_iter``.

    With ``qr``, steps that crawl, and with ``damped`` too a stop whose direction may be far from Newton's (its
    Cholesky factor's condition beyond ``1 / QR_RCOND``, or damped: Cholesky of ``H`` failed, its condition, the
    square of the inlier rows', beyond ``1 / eps``, and the damped step leaves the ill-determined directions,
    along which the minimiser can lie far away), are not taken: the iteration goes on with directions from the
    inliers' ``R`` factor (:meth:`_Hessian._qr_direction`) and stops by the same tests. (The callers pass
    ``damped`` unless the least-squares start confirmed exact dependencies, :attr:`_Problem.singular`: one-hot
    columns beside an intercept are singular, so always damped, and their damped steps right; the QR pass at
    every stop made such a Huber fit 26% slower.)

    With ``crawl_exit``, the iteration returns (``hess.crawled`` set) after ``CRAWL_STEPS`` steps in a row that
    the line search cut below ``CRAWL_T`` and that did not bring the decrement down tenfold, where the inliers'
    curvature does not answer the gradient (:func:`_crawling`): the ridge does, and its curvature, ``alpha`` in
    every direction, is no guide when its steps cross rows by the hundred (the caller goes on with the threshold
    continuation from there). Cut steps whose decrements fall fast are converging (a cubic of ``x`` near 15 beside
    a target offset by -4e6 ends in 5 iterations that way; its continuation took 200)."""
    hess.crawled = False
    try:
        return _newton_loop(prob, w, b, cur, hess, eps, scale, rtol, max_iter, curve, probe, reference, floor, qr,
                            damped, crawl_exit)
    finally:
        hess.switched, hess.qr = hess.qr, False


def _newton_loop(prob, w, b, cur, hess, eps, scale, rtol, max_iter, curve, probe, reference, floor, qr, damped,
                 crawl_exit):
    """:func:`_newton`'s iteration."""
    alpha = prob.alpha
    crawl, last_dec, landed, cuts = 0, np.inf, False, []

    def value(res, w):
        return scale * res.loss + _penalty(alpha, w)

    F = value(cur, w)
    it = 0
    while it < max_iter:  # (a switch to the R factor's steps redoes the direction: not an iteration)
        r = cur.r
        if probe is not None and probe(w, b, r, cur.mask.view(bool)):
            return w, b, r, F, it, True
        g, gb = cur.g * scale + alpha * w, cur.gb * scale
        dw, db = hess.direction(g, gb, scale)
        dec = -(float(g @ dw) + gb * db)
        tol = 2.0 * rtol
        # (the reference is at most |F|: computed only when the plain test passes; the floor only when they fail)
        if dec <= 0.0 or (dec <= tol * abs(F) and (reference is None or dec <= tol * reference(r, w, F))) \
                or (floor and _at_round_off(prob, cur.mask, w, b, float(dec) / float(tol))):  # (inf: no warning)
            if qr and not hess.qr and damped and hess.untrusted():
                hess.qr = True
                continue
            return w, b, r, F, it, True
        if crawl_exit and _crawling(hess, cuts, dec, g, gb, scale):
            hess.crawled = True
            return w, b, r, F, it, False
        if qr and not hess.qr:
            # A full step on which no row crossed the threshold lands on the minimiser of the (quadratic) piece,
            # so the next decrement is round-off; twice running not a tenth of the last one, the solve is off.
            crawl = crawl + 1 if landed and dec > 0.1 * last_dec else 0
            if crawl >= 2:
                hess.qr = True
                continue
        last_dec, landed = dec, False
        w1, b1 = w + dw, b + db
        trial = prob.run(w1, b1, eps, hess.prev())
        F1 = value(trial, w1)
        if F1 <= F - ARMIJO * dec:
            landed = qr and np.array_equal(trial.mask, cur.mask)  # (read only by the crawl test)
            w, b, F = w1, b1, F1
            cur = _take(prob, hess, trial, w, b, eps)
            cuts.clear()
        else:
            t = _line_search(prob, r, trial.r - r, w, dw, eps, scale)
            if t == 0.0:  # no decrease at round-off level: the iterate is optimal to working precision
                if qr and not hess.qr and damped and hess.untrusted():
                    hess.qr = True
                    continue
                return w, b, r, F, it + 1, True
            w, b = w + t * dw, b + t * db
            cur = _visit(prob, hess, w, b, eps)
            F = value(cur, w)
            if t < CRAWL_T:
                cuts.append(dec)
            else:
                cuts.clear()
        curve.append(F)
        it += 1
    return w, b, cur.r, F, max_iter, False


def _least_squares(prob: _Problem, full: _closed_form.ClosedFormState, rows: _Rows | None = None):
    """The (ridge) least-squares fit from the all-rows statistics. With an intercept, a column constant to round-off
    (:func:`fastopt._closed_form.constant_columns`) is spanned by the intercept, so its coefficient is 0 (the
    minimum-norm choice) and it is left out of the solve, where its round-off Gram entries could pass Cholesky's
    scaled condition test and give it a huge coefficient that cancels the intercept's; so is a zero column. (A
    rule of eps of the mean square took a column ``1e8 + t`` for constant, which the closed form fits.) Without an
    intercept every column is solved for. The passes over the rows (the pivoted path's confirmation, the QR
    fallback) are ``rows``' (default: :class:`_Rows` of ``prob``; Dask: its blocks')."""
    rows = _Rows(prob) if rows is None else rows
    d = full.n_features
    keep = np.ones(d, bool)
    if prob.fit_intercept:
        keep = (np.diag(full.gram)[:d] > 0) & ~_closed_form.constant_columns(full)
    w = np.zeros(d)
    if not keep.any():
        b = float(full.mean[d]) if prob.fit_intercept else 0.0
        return w, b
    state = full
    if not keep.all():
        idx = np.append(np.flatnonzero(keep), np.arange(d, d + full.n_targets))
        state = _closed_form.ClosedFormState(int(keep.sum()), full.n_targets, full.dtype, full.n_samples,
                                             full.weight, full.mean[idx], full.gram[np.ix_(idx, idx)])
    params = {"fit_intercept": prob.fit_intercept, "alpha": prob.alpha}
    result, _ = _closed_form._cholesky(params, state)
    if result is None:  # exactly dependent columns (one-hot beside the intercept): the pivoted path, one pass
        result = _closed_form.pivoted(params, state, lambda Q: rows.null_squares(full, _kept_rows(keep, Q)),
                                      warn=False)
        prob.singular = result is not None  # (a null space the pass confirmed: exact dependencies)
        if result is not None:
            prob.null = _null_basis(keep, result.state.null[0])
    if result is None:
        # Ill-conditioned: the closed form's QR path, one more read of X. (The Gram's eigendecomposition squared the
        # condition: one-hot columns beside 1e10 + t and 7e9 + 0.3 without an intercept started 11% above the
        # ridge minimum, and the fit stopped there.) Its constant rule is the one above; zero columns get 0.
        result = _closed_form._solve_r(params, rows.qr_state(params), warn=False)
        keep = np.ones(d, bool)  # (of every column)
    w[keep] = result.coef[0].astype(np.float64)
    b = float(result.intercept[0]) if prob.fit_intercept else 0.0
    return w, b


def _null_basis(keep: np.ndarray, Q: np.ndarray) -> np.ndarray:
    """:attr:`_Problem.null`: ``e_j`` for each column left out beside the intercept (constant or zero), then the
    kept columns' null directions ``Q`` as directions of every column."""
    dropped = np.flatnonzero(~keep)
    E = np.zeros((keep.size, dropped.size))
    E[dropped, np.arange(dropped.size)] = 1.0
    return np.hstack([E, _kept_rows(keep, Q)])


def _minimum_norm(prob: _Problem, fit: _Fit, moved=None) -> _Fit:
    """``fit`` without its part ``v`` in the null space the least-squares start confirmed (:attr:`_Problem.null`),
    the intercept taking ``m . v`` (the null space is the centred design's, ``m`` its means), where ``moved(v)``
    (default :func:`_null_moved` of ``prob``'s rows, one read of ``X``; Dask: the blocks') finds no prediction
    moved beyond the confirmation's bound
    (``NULL_MOVE``): the minimum-norm coefficients, as the closed form returns, the predictions and the loss the
    same.
    The damped steps leave the coefficients a part along exactly dependent columns that follows the damping's
    column scales: 0.35% to 0.43% of their norm on one-hot columns beside an intercept (Huber and absolute error,
    dense and CSR; Dask 0.1%)."""
    if prob.null is None or not prob.null.shape[1]:
        return fit
    part = prob.null @ (prob.null.T @ fit.w)
    moved = moved or (lambda v: _null_moved(prob, v))
    if not np.any(part) or not moved(part) <= NULL_MOVE * max(prob.rows, prob.d + 1) * math.sqrt(prob.rows) * EPS:
        return fit
    w = fit.w - part
    b = fit.b + (float(prob.centre @ part) if prob.fit_intercept else 0.0)
    F = fit.objective - _penalty(prob.alpha, fit.w) + _penalty(prob.alpha, w)  # (the loss is the same)
    return _Fit(w, b, F, fit.n_iter, fit.converged, fit.curve)


def _null_moved(prob: _Problem, v: np.ndarray) -> float:
    """The largest ``|x_i . v - m . v| / (|x_i| . |v| + |m| . |v|)`` over ``prob``'s rows of positive weight (``m``
    the centre, 0 without intercept; rows where the denominator is 0 count 0): how far dropping ``v`` moves a
    prediction, relative to the terms its product sums (dense rows in blocks of about ``PASS_BYTES``). Rows of
    weight 0 do not count, as in the closed form, whose minimum-norm coefficient of a column stored only in them
    is 0."""
    X = prob.X
    m = prob.centre if prob.fit_intercept else np.zeros_like(v)
    c, ca = float(m @ v), float(np.abs(m) @ np.abs(v))
    if is_sparse(X):
        num = np.abs(np.asarray(X @ v, dtype=np.float64).ravel() - c)
        den = np.asarray(abs(X) @ np.abs(v), dtype=np.float64).ravel() + ca
    else:
        num, den = np.empty(prob.n), np.empty(prob.n)
        for i0 in range(0, prob.n, prob.block):
            Xb = X[i0 : i0 + prob.block].astype(np.float64, copy=False)
            num[i0 : i0 + prob.block] = np.abs(Xb @ v - c)
            den[i0 : i0 + prob.block] = np.abs(Xb) @ np.abs(v) + ca
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where((den > 0) & (prob.s > 0), num / den, 0.0)
    return float(np.max(ratio, initial=0.0))


def _kept_rows(keep: np.ndarray, Q: np.ndarray) -> np.ndarray:
    """The null directions ``Q`` of the kept columns' state as directions of every column (the others' 0)."""
    Qd = np.zeros((keep.size, Q.shape[1]))
    Qd[keep] = Q
    return Qd


class _Rows:
    """:func:`_least_squares`' passes over ``prob``'s rows (in memory)."""

    def __init__(self, prob: _Problem):
        self.prob = prob

    def null_squares(self, full: _closed_form.ClosedFormState, Q: np.ndarray) -> float:
        """:func:`fastopt._closed_form.null_squares` of the rows for the directions ``Q`` (d, k): the pivoted path's
        confirming pass, one read of ``X`` where the eigendecomposition of a one-hot design's normal equations cost
        O(d^3) on the process's two-thread BLAS (494 columns: 17 ms on a quiet machine, 200-300 ms beside other
        work)."""
        prob = self.prob
        data = Data(X=prob.X, Y=np.zeros((0, 1)), sample_weight=prob.s, y_was_1d=True)
        return _closed_form._null_pass_of({"fit_intercept": prob.fit_intercept}, full, data, Q)

    def qr_state(self, params: dict) -> _closed_form.ClosedFormState:
        """The closed form's ``R`` statistics of ``[X, y]`` with the weights ``s``: one more read of ``X``."""
        prob = self.prob
        data = Data(X=prob.X, Y=np.ascontiguousarray(prob.y[:, None], dtype=prob.X.dtype),
                    sample_weight=prob.s.astype(prob.X.dtype), y_was_1d=True)
        return _closed_form.chunk_qr_state(params, data)


def _start(prob: _Problem, full: _closed_form.ClosedFormState, init, epsilon: float | None = None):
    """The starting point: ``init`` (w, b), else the (ridge) least-squares fit; also that fit where ``init``'s
    objective (Huber at ``epsilon``, the absolute error where None) is not below the all-zero model's (from ``y``
    alone): the problem is convex, so a start only saves work, and from ``coef_init`` of 1e200 the absolute
    error's smoothing stayed there to max_iter (warned) and Huber's steps overflowed on the way."""
    if init is None:
        return _least_squares(prob, full)
    w, b = np.asarray(init[0], dtype=np.float64).copy(), float(init[1]) if prob.fit_intercept else 0.0
    with np.errstate(over="ignore", invalid="ignore"):  # an overflowing start is judged just below
        if epsilon is None:
            at, zero = _lad_objective(prob, prob.run(w, b, np.inf, hessian=False).r, w), _dot(prob.s, np.abs(prob.y))
        else:
            at = prob.run(w, b, epsilon, hessian=False).loss + _penalty(prob.alpha, w)
            zero = _dot(prob.s, _per_sample_loss(prob.y, Loss.HUBER, epsilon))
    return (w, b) if at < zero else _least_squares(prob, full)


def _median_abs_residual(prob: _Problem, r: np.ndarray) -> float:
    """The median absolute residual of the rows with weight (0 without any)."""
    a = np.abs(r[prob.s > 0])
    return float(np.median(a)) if a.size else 0.0


def _median_unfitted(prob: _Problem, r: np.ndarray, rounding: np.ndarray | None = None) -> float:
    """The median absolute residual of the rows with weight that are not fitted exactly (``|r_i|`` above
    :meth:`_Problem.exact_tol`), 0 without any: the absolute error's scales. With ties
    (one-hot columns whose rows share targets, rows of zeros with target 0) most rows are fitted exactly and the
    median of all of them was rounding: the first smoothing threshold (5e-15) left the other rows outside it with
    no curvature, and the stop's reference (:func:`_lad_cap`, 3e-39) no decrement could meet; fits ended at
    ``max_epochs`` up to 50% above the minimum. ``rounding``: per row, a larger bound to count within (the
    residuals' own rounding, :meth:`_Problem.rounding_bound`)."""
    a = np.abs(r)
    tol = prob.exact_tol() if rounding is None else np.maximum(prob.exact_tol(), rounding)
    a = a[(prob.s > 0) & (a > tol)]
    return float(np.median(a)) if a.size else 0.0


def _stage_threshold(median: float, epsilon: float, previous: float = np.inf) -> float:
    """The next threshold of the continuation (see :func:`huber_newton`): the median absolute residual at the
    fit for the previous one, at most a tenth of it, at least ``epsilon``."""
    return max(epsilon, min(previous / 10.0, median))


def _curvature_missing(hess: _Hessian, g: np.ndarray, gb: float) -> bool:
    """Whether the damping, not the curvature (inliers or ridge), answers most of the gradient ``(g, gb)`` at the
    start: where a continuation in the threshold is needed (see :func:`huber_newton`)."""
    hess.direction(g, gb, 1.0)
    return hess.damped_share >= 0.5


def _crawling(hess: _Hessian, cuts: list, dec: float, g: np.ndarray, gb: float, scale: float) -> bool:
    """Whether Newton's steps crawl (see :func:`_newton`'s ``crawl_exit``): the last ``CRAWL_STEPS`` were cut below
    ``CRAWL_T`` by the line search (``cuts``: their decrements), the decrement ``dec`` has not fallen
    tenfold over them, and the inliers' curvature, the ridge left out, answers less than half the gradient
    ``(g, gb)`` (the Hessian's record of its last direction is kept)."""
    if len(cuts) < CRAWL_STEPS or dec <= 0.1 * cuts[-CRAWL_STEPS]:
        return False
    kept = hess.mu, hess.rcond, hess.damped_share
    try:
        hess.direction(g, gb, scale, ridge=False)
        return hess.damped_share >= 0.5
    finally:
        hess.mu, hess.rcond, hess.damped_share = kept


def huber_newton(prob: _Problem, full: _closed_form.ClosedFormState, epsilon: float, rtol: float, max_iter: int,
                 init=None) -> tuple[_Fit, _Hessian]:
    """The Huber fit of one target from the least-squares fit (or ``init``); ``full`` holds its all-rows
    statistics. Returns the fit and its Hessian.

    When most of the rows are outliers at the start (the median absolute residual exceeds ``epsilon``: gross
    outliers have pulled the least-squares fit away from every row), the inlier Hessian there is (nearly)
    singular, and Newton's damped steps would crawl across a piecewise-linear objective. The fit then follows a
    continuation in the threshold: the Huber fits for thresholds ``E_1 > E_2 > ... > epsilon``, each started at the
    previous one, with ``E_1`` the median absolute residual (half the rows are inliers) and ``E_{k+1}`` the median
    at the fit for ``E_k``, at most ``E_k / 10``. For a threshold at which the clean rows are inliers, the outliers
    pull the fit by about the threshold times their weight, so the rows' residuals shrink with it. Each stage has
    ``max_iter`` iterations, solved to ``STAGE_RTOL`` except the last (the problem asked for)."""
    w, b = _start(prob, full, init, epsilon)
    hess = _Hessian(prob, full)
    cur = _visit(prob, hess, w, b, epsilon)
    curve: list = []
    threshold, iters = _stage_threshold(_median_abs_residual(prob, cur.r), epsilon), 0
    # Newton's own steps do where the curvature (inliers or ridge) answers the gradient; where the ridge answers
    # it but its steps crawl, the continuation starts where they stopped (crawl_exit)
    if threshold > epsilon and not _curvature_missing(hess, cur.g + prob.alpha * w, cur.gb):
        threshold = epsilon
    crawl_exit = epsilon < np.inf
    while True:
        while threshold > epsilon:
            crawl_exit = False
            cur = _visit(prob, hess, w, b, threshold)
            w, b, r, _, it, _ = _newton(prob, w, b, cur, hess, threshold, 1.0, STAGE_RTOL, max_iter, curve,
                                        qr=QR_FALLBACK, damped=not prob.singular)
            iters += max(it, 1)
            threshold = _stage_threshold(_median_abs_residual(prob, r), epsilon, threshold)
            if threshold == epsilon:
                cur = _visit(prob, hess, w, b, epsilon)
        w, b, r, F, it, ok = _newton(prob, w, b, cur, hess, epsilon, 1.0, rtol, max_iter, curve,
                                     reference=_huber_reference(prob, epsilon) if epsilon < np.inf else None,
                                     floor=True, qr=QR_FALLBACK, damped=not prob.singular, crawl_exit=crawl_exit)
        iters += it
        if not hess.crawled:
            return _minimum_norm(prob, _Fit(w, b, F, iters, ok, curve or [F])), hess
        crawl_exit = False
        threshold = _stage_threshold(_median_abs_residual(prob, r), epsilon)
        if threshold == epsilon:
            cur = _visit(prob, hess, w, b, epsilon)


def round_off_floor(prob: _Problem, mask: np.ndarray, w: np.ndarray | None = None, b: float = 0.0) -> float:
    """``EPS`` times half the weighted sum of ``m_i^2`` over the inliers of ``mask``, ``m_i = |y_i|`` (or, given
    the point ``(w, b)``, ``|x_i| . |w| + |b| + |y_i|``, the magnitude of the terms residual ``i`` sums). The
    residuals are computed with errors of about ``EPS m_i``, so an objective at round-off of an exact fit is about
    ``EPS`` times this, and its decrements are as large as itself (no relative digits are left); a decrement
    within ``2 RTOL`` times this floor (``4 EPS^2`` times the inliers' weighted sum of ``m_i^2``) is below any
    change the residuals can show. With ``|y|`` alone an exact fit whose coefficients are large next to ``y``
    (a square system of condition 100: terms 100 times ``|y|``) was not recognised, and Newton ran to
    ``max_iter`` and warned. Rows beyond the threshold (far outliers) are left out: their round-off is what the
    reference already discounts."""
    inliers = mask.view(bool) & (prob.s > 0)  # rows of no weight count nothing (a y of 1e250 overflowed)
    m = np.abs(prob.y[inliers]) if w is None else _residual_terms(prob, inliers, w, b)
    return EPS * 0.5 * _dot(prob.s[inliers], np.square(m))  # (not BLAS: see _dot)


def _at_round_off(prob: _Problem, mask: np.ndarray, w: np.ndarray, b: float, level: float) -> bool:
    """Whether ``level`` is within :func:`round_off_floor` at ``(w, b)``: first against an upper bound of it over
    every row from the rows' 1-norms (``|x_i| . |w| <= ||x_i||_1 max|w|``, O(1) from sums kept by the problem),
    then against ``|y|`` alone, and only then against the floor itself (a read of ``X``: at every iteration of a
    sparse Huber fit it cost a quarter of the fit)."""
    # over every row, sum_i s_i (|y_i| + B + c ||x_i||_1)^2 from six sums kept by the problem: O(1)
    yy, ss, rr, sy, yr, sr = prob.floor_sums()
    B, c = abs(b), float(np.max(np.abs(w), initial=0.0))
    bound = yy + B * B * ss + c * c * rr + 2.0 * B * sy + 2.0 * c * yr + 2.0 * B * c * sr
    if level > EPS * 0.5 * bound:
        return False
    return level <= round_off_floor(prob, mask) or level <= round_off_floor(prob, mask, w, b)


def _abs_times(X, rows: np.ndarray, v: np.ndarray) -> np.ndarray:
    """``|X[rows]| @ v`` for dense or CSR ``X``, dense rows in blocks of about ``PASS_BYTES``."""
    if is_sparse(X):
        Xr = X[rows]
        return np.asarray(abs(Xr) @ v, dtype=np.float64).ravel()
    index = np.flatnonzero(rows)
    out = np.empty(index.shape[0])
    block = max(64, PASS_BYTES // (8 * max(X.shape[1], 1)))
    for i0 in range(0, index.shape[0], block):
        out[i0 : i0 + block] = np.abs(X[index[i0 : i0 + block]]).astype(np.float64) @ v
    return out


def _sampled(n: int, d: int) -> bool:
    """Whether a Huber fit starts from the fit on every SUBSAMPLE-th row."""
    return n >= SAMPLE_MIN_ROWS and n // SUBSAMPLE >= SAMPLE_ROWS_PER_PARAMETER * (d + 1)


def huber_sampled(X: np.ndarray, y: np.ndarray, s: np.ndarray, alpha: float, fit_intercept: bool, epsilon: float,
                  rtol: float, max_iter: int) -> tuple[_Fit, _Hessian] | None:
    """The Huber fit of one target started from the Huber fit of every SUBSAMPLE-th row (itself started the
    same way while large enough, else from least squares); None when those rows carry no weight.

    The subsample's minimiser is within its sampling error of the full one, so its inlier set is nearly the final
    one: the first pass over all rows builds the inlier Hessian from scratch (no all-rows Gram pass, no downdate),
    and Newton ends in about two more passes, where the least-squares start (pulled by the outliers) needs
    three or four, the first of which takes out every outlier's rows from the Hessian."""
    rows = slice(0, X.shape[0], SUBSAMPLE)
    s_sub = s[rows]
    total = float(np.sum(s_sub))
    if not total > 0.0:
        return None
    sub = huber_fit(_rows(X, rows), np.ascontiguousarray(y[rows]), s_sub / total, alpha,
                    fit_intercept, epsilon, rtol, max_iter)
    if sub is None:
        return None
    fit, sub_hess = sub
    # The subsample's centre and damping reference stand in for the all rows' (any fixed centre near the data's
    # mean conditions the system; the damping only matters for singular systems).
    prob = _Problem(X, y, s, alpha, fit_intercept, sub_hess.prob.centre)
    # (the subsample's null space too: _minimum_norm's pass over every row confirms it is theirs)
    prob.singular, prob.null = sub_hess.prob.singular, sub_hess.prob.null
    hess = _Hessian(prob, None, sub_hess.damp)
    w, b = fit.w, fit.b
    cur = _visit(prob, hess, w, b, epsilon)
    if not (np.isfinite(cur.loss) and np.all(np.isfinite(cur.g))):
        refuse_nonfinite("X", X)  # validation's words: which of NaN or infinity
    curve: list = []
    w, b, _, F, it, ok = _newton(prob, w, b, cur, hess, epsilon, 1.0, rtol, max_iter, curve,
                                 reference=_huber_reference(prob, epsilon), qr=QR_FALLBACK,
                                 damped=not prob.singular)
    return _minimum_norm(prob, _Fit(w, b, F, it, ok, curve or [F])), hess


def huber_fit(X: np.ndarray, y: np.ndarray, s: np.ndarray, alpha: float, fit_intercept: bool, epsilon: float,
              rtol: float, max_iter: int, init=None, full=None) -> tuple[_Fit, _Hessian] | None:
    """The Huber fit of one target (y float64, s float64 normalised weights): from a subsample's fit when X is
    large and no ``init`` is given, else from least squares (``full``: the all-rows statistics of ``[X, y]``,
    computed when None)."""
    n, d = X.shape
    if init is None and epsilon < np.inf and _sampled(n, d):
        out = huber_sampled(X, y, s, alpha, fit_intercept, epsilon, rtol, max_iter)
        if out is not None:
            return out
    if full is None:
        full = _full_state(X, y[:, None], s)
    centre = full.mean[:d].copy() if fit_intercept else np.zeros(d)
    return huber_newton(_Problem(X, y, s, alpha, fit_intercept, centre), full, epsilon, rtol, max_iter, init)


# Targets whose largest magnitude (rows with weight) is below 2^-TARGET_RANGE are fitted scaled to unit size
# (NewtonSolver.fit); the others as they are, bit for bit as before. (Large ones need no scaling until their
# squares overflow, which the first Gram pass reports as a clear error; their objective would overflow too.)
TARGET_RANGE = 64


def target_top(Y: np.ndarray, s: np.ndarray) -> np.ndarray:
    """Per target, the largest ``|y|`` over the rows of positive weight ``s`` (0 if none)."""
    return np.max(np.abs(np.asarray(Y, dtype=np.float64)[s > 0]), axis=0, initial=0.0)


def target_exponents(top: np.ndarray) -> np.ndarray:
    """Per target of largest ``|y|`` ``top``, the power of two ``e`` (negative) to divide it by, 0 at or above the
    range or for zeros (``max |y| < 2^-TARGET_RANGE`` exactly when its exponent is at most ``-TARGET_RANGE``)."""
    exps = np.frexp(top)[1].astype(np.int64)
    return np.where(exps <= -TARGET_RANGE, exps, 0)


def scaled_targets(X, Y: np.ndarray, s: np.ndarray, exps: np.ndarray):
    """``X`` and the targets ``Y`` divided by ``2^exps`` (exact; float64), rows of no weight zeroed (their ``y``,
    scaled, may overflow); float32 ``X`` as a float64 copy: ``X`` as tiny as ``y`` (1e-40) scaled up alone took the
    least-squares start's ``y / X`` beyond float32's range, and the fit was refused as overflowing where float64
    fitted (the coefficients return in float32)."""
    with np.errstate(over="ignore"):
        Y = np.ldexp(np.asarray(Y, dtype=np.float64), -exps)
    Y[s == 0] = 0.0
    return (X.astype(np.float64) if X.dtype == np.float32 else X), Y


def check_scaled_epsilon(epsilon: float, scaled: float) -> None:
    """Refuse a Huber threshold ``epsilon`` whose value for the scaled target (``scaled``) is so small that its
    square underflows."""
    if scaled < HUBER_MIN_EPSILON:
        raise ValueError(
            f"epsilon={epsilon!r} is too small for solver='newton': below {HUBER_MIN_EPSILON:g} (in y's "
            "units; relative to y's size where y is tinier), where its square underflows. At such a threshold "
            "the Huber loss is epsilon times the absolute error (less a constant), whose minimiser "
            "loss='absolute_error' fits directly; use that, or a larger epsilon."
        )


def scaled_fit(fit: _Fit, e: int, lad: bool) -> _Fit:
    """A fit of the targets divided by ``2^e`` back in their units (``e < 0``: nothing overflows): the coefficients
    by ``2^e``, the objective by ``2^e`` (absolute error) or ``2^2e``."""
    if not e:
        return fit
    f = e if lad else 2 * e
    return _Fit(np.ldexp(fit.w, e), math.ldexp(fit.b, e), math.ldexp(fit.objective, f), fit.n_iter, fit.converged,
                [math.ldexp(v, f) for v in fit.curve])


def _full_state(X: np.ndarray, Y: np.ndarray, s: np.ndarray) -> _closed_form.ClosedFormState:
    """The all-rows statistics of ``[X, Y]`` with weights ``s`` (one Gram pass), in the weights' own units."""
    data = Data(X=X, Y=np.ascontiguousarray(Y, dtype=X.dtype), sample_weight=s.astype(X.dtype), y_was_1d=True)
    # weight_exp 0: the Hessian updates add quantities in the same units (s is about 1 / n per row, so nothing
    # overflows).
    with np.errstate(over="ignore", invalid="ignore"):  # judged below
        state = _closed_form.rescale_weights(_closed_form.chunk_state({"solver": "normal"}, data), 0)
    bad = ~(np.isfinite(np.diag(state.gram)) & np.isfinite(state.mean))  # (a column's own squares: scale_trouble)
    if bad.any():  # their squares overflowed, unless validation was skipped (assume_finite=True): then named
        refuse_nonfinite("y", Y)
        refuse_nonfinite("X", X)
        column = int(np.argmax(bad))
        raise _overflow_error(*(("X", column) if column < X.shape[1] else ("y", column - X.shape[1])))
    s_max = float(np.max(s, initial=0.0))
    # rows of no weight train nothing, so none can underflow (a Dask block of zero weight had been read as underflow)
    lost = _underflowed(X, np.diag(state.gram)[: X.shape[1]], s_max) if s_max > 0 else None
    if lost is not None:  # X of 1e-200: the columns read as constant, and the fit returned zeros, silently
        raise _overflow_error("X", lost, "small")
    return state


def _underflowed(X, diag: np.ndarray, s_max: float) -> int | None:
    """The first column of ``X`` whose values vary but whose weighted squares all underflow (its centred sum
    ``diag`` is 0, and so is its largest square times the largest weight ``s_max``: every Hessian the fit forms
    is then 0 there), or None. Only columns of zero spread are read (constant ones: in the crossed rows'
    Hessians, whose rows are a few, most columns)."""
    cand = np.flatnonzero(diag == 0)
    if cand.size == 0:
        return None
    if is_sparse(X):
        if X.format == "csr":
            # only a column whose largest |x| is nonzero and squares to 0 can be one; the crossed rows' columns
            # of zero spread are mostly empty or constant (a level whose few rows are all 1)
            top = _closed_form.column_max_abs(X)
            with np.errstate(over="ignore"):
                cand = cand[(top[cand] > 0) & (top[cand] * top[cand] * s_max == 0.0)]
        if cand.size == 0:
            return None
        # one pass over the stored values for all of them (a column at a time, each read them all: 0.5 s of a
        # 0.8 s Huber fit on the robust sparse benchmark); min and max count the implicit zeros
        sub = X[:, cand]
        low = np.asarray(sub.min(axis=0).toarray(), dtype=np.float64).ravel()
        high = np.asarray(sub.max(axis=0).toarray(), dtype=np.float64).ravel()
    else:
        low, high = np.full(cand.size, np.inf), np.full(cand.size, -np.inf)
        for r0 in range(0, X.shape[0], _UNDERFLOW_ROWS):  # bounded copies of the candidate columns
            block = X[r0:r0 + _UNDERFLOW_ROWS][:, cand]
            np.minimum(low, block.min(axis=0), out=low)
            np.maximum(high, block.max(axis=0), out=high)
    top = np.maximum(np.abs(low), np.abs(high))
    with np.errstate(over="ignore"):  # 1e200 in a row of no weight squares to inf: not an underflow
        lost = (high > low) & (top * top * s_max == 0.0)
    return int(cand[np.argmax(lost)]) if lost.any() else None


# Rows of the candidate columns copied at a time by _underflowed (dense X).
_UNDERFLOW_ROWS = 8192


def _overflow_error(name: str, column: int | None = None, size: str = "large") -> ValueError:
    where = f"{name} column {column} has values" if column is not None else f"{name} has values"
    return ValueError(
        f"{where} too {size} to square in float64 (solver='newton' forms their weighted squares); multiply "
        f"{name} by a power of ten to bring its values nearer 1."
    )


def _lad_objective(prob: _Problem, r: np.ndarray, w: np.ndarray) -> float:
    return _dot(prob.s, np.abs(r)) + _penalty(prob.alpha, w)


def _huber_reference(prob: _Problem, epsilon: float):
    """The scale that a Huber fit's stop compares the decrement with (see :func:`_newton`): the objective with
    every outlier counted at the threshold, ``sum s rho(min(|r|, epsilon)) + alpha/2 ||w||^2``."""
    def reference(r: np.ndarray, w: np.ndarray, F: float) -> float:
        a = np.minimum(np.abs(r), epsilon)
        return 0.5 * _dot(prob.s, a * a) + _penalty(prob.alpha, w)
    return reference


def _fitted_to_round_off(prob: _Problem, r: np.ndarray, w: np.ndarray, b: float, F: float) -> bool:
    """Whether the absolute error objective ``F`` at ``(w, b)`` (residuals ``r``) is within the rounding of the
    residuals themselves, ``|fl(r_i) - r_i| <= gamma_{d+2} (|x_i| . |w| + |b| + |y_i|)``: the data fitted exactly
    (noise-free, or y = 0), where the smoothing's thresholds would shrink towards round-off for ever."""
    if F == 0.0:
        return True
    if not F <= 1e-8 * (_dot(prob.s, np.abs(prob.y)) + abs(b) + float(np.abs(w).sum())):  # not nearly exact
        return False
    # sum_i s_i |x_i| . |w| from the weighted column sums of |X|
    data = abs(b) * float(np.sum(prob.s)) + _dot(prob.s, np.abs(prob.y))
    terms = float(prob.abs_colsum() @ np.abs(w)) + data
    # A start whose terms cancel far beyond the targets' size has the rounding of its own large coefficients,
    # which says nothing of other points': a least-squares start on one-hot columns beside a cubic of an offset
    # column (terms 562 times the targets') passed this test 3.6 times the minimum above it, and the fit ended
    # there, silently. The smoothing decides such starts (its own round-off rule ends noise-free fits).
    if terms > ROUND_OFF_CANCELLATION * data:
        return False
    return F - _penalty(prob.alpha, w) <= 2.0 * (prob.d + 2) * EPS * terms


# The most the start's terms |x_i| . |w| may exceed the targets' |b| + |y_i| (weighted sums) for the round-off
# test above to take it as fitted.
ROUND_OFF_CANCELLATION = 100.0


class _StageReference:
    """:func:`_lad_reference` for one smoothing stage, its cap from the stage's first residuals, found when first
    asked for (a median: O(n), and most stages' iterations never ask)."""

    def __init__(self, prob: _Problem, r: np.ndarray):
        self.prob, self.r, self.cap = prob, r, None

    def __call__(self, r: np.ndarray, w: np.ndarray, F: float) -> float:
        if self.cap is None:
            self.cap = _lad_cap(self.prob, self.r)
        return _lad_reference(self.prob, r, w, F, self.cap)


def _lad_cap(prob: _Problem, r: np.ndarray) -> float:
    """Ten times the median absolute residual of the rows with weight not fitted exactly (see
    :func:`_lad_reference`, :func:`_median_unfitted`)."""
    return 10.0 * _median_unfitted(prob, r)


def _lad_reference(prob: _Problem, r: np.ndarray, w: np.ndarray, F: float, cap: float) -> float:
    """The scale of the absolute error objective that the smoothing's stops compare with: the objective with each
    residual capped at ``cap`` (:func:`_lad_cap`, once per stage). A far outlier's term changes with the fit by
    exactly its fitted value's change, but its size set the stops: one outlier at 1e16 ended the fit 0.02 off.
    ``F`` when ``cap`` is 0 (most rows fitted exactly: the cap would leave no scale)."""
    if not cap > 0.0:
        return F
    return _dot(prob.s, np.minimum(np.abs(r), cap)) + _penalty(prob.alpha, w)


def _exact_limit(prob: _Problem, r: np.ndarray, gamma: float, w: np.ndarray, b: float,
                 rows: np.ndarray | None = None):
    """The gamma -> 0 limit for the current sign pattern at ``(w, b)`` (residuals ``r``; see the module
    docstring), or None when it is singular. Returns (w, b, lam, rows): multipliers ``lam`` of the exactly fitted
    ``rows``. Without ridge and with fewer than ``p`` rows inside, the limit nearest ``(w, b)``
    (:func:`_underdetermined_limit`). Given ``rows`` (sorted indices), the limit that fits those rows exactly
    and keeps the others' signs, whatever ``gamma``."""
    d = prob.d
    rows = np.flatnonzero(np.abs(r) <= gamma) if rows is None else rows
    # A row of weight 0 is in no term of the objective: fitting it exactly is no condition of the minimiser (its
    # multiplier's bound |mu_i| <= 0 made BVLS refuse the degenerate limit's bounds, and counted it among p).
    rows = rows[prob.s[rows] > 0]
    p = d + (1 if prob.fit_intercept else 0)
    if prob.alpha == 0 and 0 < rows.size < p:
        return _underdetermined_limit(prob, r, gamma, rows, w, b)
    m = rows.size
    # with ridge, a singular system (tied rows fitted together) may still have a limit (_degenerate_limit)
    degenerate = prob.alpha != 0 and m <= DEGENERATE_MAX_ROWS
    # Generically at most p residuals vanish at the minimiser (exactly p without ridge): else gamma is still
    # too large for the limit to be the minimiser.
    if (m > p and not degenerate) or (prob.alpha == 0 and m != p):
        return None
    # (a trial of "auto" is charged the LU factorisation's flops first: 37 limits of up to 514 x 514 had been
    # free, and a three-target trial modelled at well under its second ran 5.8-9.5 s: helper-139)
    _charge(TRIAL_LU_FLOPS * (p + m) ** 3)
    Xz, c = _limit_terms(prob, r, gamma, rows)
    K = np.zeros((p + m, p + m))
    K[:d, :d][np.diag_indices(d)] = prob.alpha
    K[:p, p:] = Xz.T
    K[p:, :p] = Xz
    rhs = np.concatenate([-c, prob.y[rows]])
    if m > p:
        return _degenerate_limit(prob, Xz, c, K, rhs, rows)
    # LAPACK's getrf/getrs, which lu_factor and lu_solve call, directly: lu_factor's LinAlgWarning on a singular
    # factor had been silenced with warnings.catch_warnings, which saves and restores the process's one filter
    # list, so that concurrent fits in threads lost or gained filters (a user's "error" filter undone, an "ignore"
    # left behind). A singular K is judged by the residual check below, as before.
    lu, piv, info = scipy.linalg.lapack.dgetrf(K)
    if info < 0:
        sol = np.full(p + m, np.nan)
    else:
        def solve(b):
            return scipy.linalg.lapack.dgetrs(lu, piv, b)[0]

        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):  # (a singular factor: judged below)
            sol = solve(rhs)
            # Two steps of iterative refinement: on polynomial features of an offset column (condition 1e8 and
            # more) the rows the limit fits came out up to 1e3 times their rounding off zero, the objective up
            # to 3 times its rounding above the minimum.
            for _ in range(2):
                if not np.all(np.isfinite(sol)):
                    break
                sol = sol + solve(rhs - K @ sol)
    # an inconsistent system (more rows inside than parameters, with alpha = 0) has no exact limit here; with
    # ridge, a singular one (tied rows among the p inside) may still have one (_degenerate_limit)
    if not (np.all(np.isfinite(sol)) and _consistent(K, sol, rhs, backward=True)
            and _stationary(prob, Xz, sol[p:], c, np.diagonal(K)[:p] * sol[:p])):
        return _degenerate_limit(prob, Xz, c, K, rhs, rows) if degenerate else None
    w, b = _from_centred(prob, sol[:p])
    # stationarity: c + alpha P theta + Xz^T mu = 0 with mu = sol[p:]; the subgradient of s_i|r_i| is mu_i
    return w, b, -sol[p:], rows


def _stationary(prob: _Problem, Xz: np.ndarray, mu: np.ndarray, c: np.ndarray, ridge: np.ndarray | float = 0.0
                ) -> bool:
    """Whether the limit's stationarity ``ridge + Xz^T mu = -c`` (``ridge`` the penalty's gradient
    ``alpha P theta``) holds column by column to ``1e-9`` of that column's terms: ``|ridge|``, ``|Xz|^T |mu|`` and
    the weighted sum of ``|z_ij|`` that ``c_j`` adds up (bounded from :meth:`_Problem.abs_colsum`).
    :func:`_consistent`'s one norm let a cubic of an offset column (terms of 1e10) answer for one-hot columns
    whose equations were unmet, and underdetermined limits 1.1 to 5.8 times the minimum were certified; the
    column's own result ``|c_j|`` is no scale either (a level whose rows' signs balance sums to its rounding)."""
    added = prob.abs_colsum()  # what c_j adds up: sum_i s_i |z_ij|, at most this plus |m0_j| sum s when centred
    if prob.fit_intercept:
        weight = float(np.sum(prob.s))
        added = np.append(added + np.abs(prob.centre) * weight, weight)
    terms = np.abs(ridge) + np.abs(Xz.T) @ np.abs(mu) + added[: c.shape[0]]
    with np.errstate(over="ignore", invalid="ignore"):  # an overflowing check fails it
        return bool(np.all(np.abs(ridge + Xz.T @ mu + c) <= 1e-9 * terms))


def _residual_terms(prob: _Problem, rows: np.ndarray, w: np.ndarray, b: float) -> np.ndarray:
    """``|y_i| + |x_i| . |w| + |b|`` for the rows of the mask ``rows``: the magnitude of the terms residual ``i``
    sums, its rounding about ``EPS`` times this."""
    return np.abs(prob.y[rows]) + _abs_times(prob.X, rows, np.abs(w)) + abs(b)


def _signs_kept(prob: _Problem, r: np.ndarray, rl: np.ndarray, others: np.ndarray, rows: np.ndarray, wl: np.ndarray,
                bl: float) -> bool:
    """The exact limit's sign test: whether every row with weight outside ``rows`` (the mask ``others``) keeps
    its sign from ``r`` at the limit's residuals ``rl``, or is zero within the limit's own accuracy (its residual
    terms, :func:`_residual_terms`, times the largest relative residual of the rows the limit fits exactly, at
    least ``gamma_{d+2}``): at zero any sign is a subgradient. A tolerance of ``1e-9 |y_i|`` passed residuals of
    3 beside ``y`` of 3e9 (a cubic of an offset column) whose signs had flipped, and a limit 1.5% above the
    minimum was taken as certified."""
    flipped = others & (prob.s > 0) & (np.sign(rl) != np.sign(r))
    if not flipped.any():
        return True
    fitted = np.zeros(prob.n, bool)
    fitted[rows] = True
    with np.errstate(divide="ignore", invalid="ignore"):
        accuracy = np.abs(rl[fitted]) / _residual_terms(prob, fitted, wl, bl)
    accuracy = max(2.0 * (prob.d + 2) * EPS, float(np.max(np.nan_to_num(accuracy, nan=0.0), initial=0.0)))
    return bool(np.all(np.abs(rl[flipped]) <= accuracy * _residual_terms(prob, flipped, wl, bl)))


def _fits_rows(prob: _Problem, rl: np.ndarray, rows: np.ndarray, wl: np.ndarray, bl: float) -> bool:
    """Whether the limit's residuals ``rl`` vanish on its ``rows`` to their rounding: at most ``2 (d + 2) eps``
    times their terms (:func:`_residual_terms`; the certified limits of the test suite are within 2 eps). The
    systems' consistency test, ``1e-9`` of the targets' norm, passed residuals of 1.6e-3 beside targets offset by
    7e7 (17 rows of a rank-14 one-hot design, 8,000 times their rounding), and a limit 8.6e-4 above the minimum
    was certified: those rows' subgradients are their signs, not free multipliers."""
    fitted = np.zeros(prob.n, bool)
    fitted[rows] = True
    fitted &= prob.s > 0
    return bool(np.all(np.abs(rl[fitted]) <= 2.0 * (prob.d + 2) * EPS * _residual_terms(prob, fitted, wl, bl)))


def _consistent(A: np.ndarray, x: np.ndarray, b: np.ndarray, backward: bool = False, tol: float = 1e-9) -> bool:
    """Whether ``A x = b`` holds to ``tol`` of ``||b||``, or with ``backward`` of ``||b|| + ||A||_F ||x||`` (a
    backward error: the square systems of the exact limit, whose solution's residual is that of a stable solve,
    ``||A|| ||x||`` times eps, however ill-conditioned; two rows of columns like ``4e7 + t``, condition 2e8, left
    6.6e-9 of ``||b||`` and their limit, the minimiser, was refused at every stage, the fit 170 times its
    rounding above it)."""
    # scaled norms (BLAS nrm2, LAPACK lange): NumPy's square the entries, and x of 1e160 (X of 1e-160) overflowed
    # to an infinite scale, which passed any check (and warned)
    def norm(v):
        return float(scipy.linalg.norm(v, check_finite=False))

    with np.errstate(over="ignore", invalid="ignore"):  # an overflowing check fails it
        scale = norm(b) + (norm(A) * norm(x) if backward else 0.0)
        return bool(math.isfinite(scale) and norm(A @ x - b) <= tol * (scale + 1e-300))


def _limit_terms(prob: _Problem, r: np.ndarray, gamma: float, rows: np.ndarray):
    """The exact limit's rows ``Xz`` and its sign term ``c = sum_out s_i sign(r_i) z_i`` (one product with
    ``X``), in the Hessian's coordinates (see :class:`_Hessian`): ``z_i = [x_i - m0, 1]`` with an intercept, for
    the parameters ``[w, b + m0 . w]`` (:func:`_from_centred`), else ``z_i = x_i``. Uncentred, a column like
    ``5e6 + t`` beside the intercept made terms of 1e7 that cancel to residuals of order 1, the limits' rounding
    (6e-8) read as inconsistent at every stage, and the absolute error ran to max_epochs."""
    outside = np.ones(prob.n, bool)
    outside[rows] = False  # (the rows beyond gamma, or all but the given rows)
    sign = np.sign(r) * prob.s * outside
    Xz = prob.X[rows].toarray() if is_sparse(prob.X) else prob.X[rows]
    Xz = Xz.astype(np.float64)
    c = prob.xt(sign, centred=prob.fit_intercept)
    if prob.fit_intercept:
        Xz = np.hstack([Xz - prob.centre, np.ones((rows.size, 1))])
        c = np.append(c, sign.sum())
        if prob.constant is not None:  # exactly 0 centred, not their mean's rounding (1e-6 at 7e9), as lstsq's
            Xz[:, :-1][:, prob.constant] = 0.0  # dependent columns: else it followed that noise (coefficients of
            c[:-1][prob.constant] = 0.0  # 1e-9 that moved the intercept by 6, and 98 iterations on CSR)
    return Xz, c


def _from_centred(prob: _Problem, theta: np.ndarray) -> tuple[np.ndarray, float]:
    """``(w, b)`` from parameters in :func:`_limit_terms`' coordinates."""
    w = theta[: prob.d]
    return w, (float(theta[prob.d]) - float(prob.centre @ w) if prob.fit_intercept else 0.0)


# At most this many rows inside for _degenerate_limit (its multipliers are a bounded least-squares problem in
# as many variables).
DEGENERATE_MAX_ROWS = 2048
# _degenerate_limit's test that its rows can be fitted exactly at all, by least squares over them alone: refused
# above this relative (backward) residual, a thousand times the square system's own check.
DEGENERATE_PRECHECK = 1e-6


def _degenerate_limit(prob: _Problem, Xz: np.ndarray, c: np.ndarray, K: np.ndarray, rhs: np.ndarray,
                      rows: np.ndarray):
    """:func:`_exact_limit` with ridge and more rows inside than parameters, or as many with a singular system: a
    degenerate vertex, where tied rows (equal ``x`` and ``y``, or collinear ones) are fitted exactly together, so
    that the limit's square system is singular although the limit exists. Its primal part, the ridge's minimiser
    over ``Xz theta = y_rows``, is unique (the ridge is definite on the coefficients, the rows fix the intercept);
    its multipliers are not, so they are taken as any that certify, ``Xz^T mu = -(c + alpha P theta)`` with
    ``|mu_i| <= s_i`` (bounded least squares, scipy's BVLS), and kept only when that holds (:func:`_stationary`).
    Refused as singular, such fits (integer ``x`` and ``y`` with a ridge: 11% of small tied designs) ran every
    stage to ``max_epochs`` and warned, at the minimiser to 1e-11. ``Xz, c`` are the limit's terms
    (:func:`_limit_terms`), ``K, rhs`` its square system, as :func:`_exact_limit` built them."""
    import scipy.optimize

    p = Xz.shape[1]
    # The rows must be fitted exactly: least squares over them alone (m x p, O(m p^2)) tells whether they can be,
    # before the (p + m)-square solve (O(m^3)). At early stages many more rows than parameters lie inside and cannot
    # be (a relative residual of 1e-3 to 1e-1, where tied rows leave 1e-15): the square solve, refused there, had
    # taken 0.2-0.3 s of a 0.01-0.03 s fit (1,000-2,100 rows of 5 Gaussian columns, alpha=1e-4), and 6-13 s beside
    # another busy process (a threaded LAPACK on a shared core). Refused here only far above the square system's
    # own check (1e-9 of its backward scale): DEGENERATE_PRECHECK.
    try:
        fitted = scipy.linalg.lstsq(Xz, rhs[p:], check_finite=False)[0]
    except (np.linalg.LinAlgError, ValueError):
        return None
    if not _consistent(Xz, fitted, rhs[p:], backward=True, tol=DEGENERATE_PRECHECK):
        return None
    try:
        sol = scipy.linalg.lstsq(K, rhs, check_finite=False)[0]  # theta unique; mu the least-norm one
    except (np.linalg.LinAlgError, ValueError):
        return None
    if not (np.all(np.isfinite(sol)) and _consistent(K, sol, rhs, backward=True)):
        return None  # the rows inside cannot all be fitted: gamma is still too large
    theta = sol[:p]
    ridge = np.diagonal(K)[:p] * theta
    bound = prob.s[rows].astype(np.float64)
    fit = scipy.optimize.lsq_linear(Xz.T, -(c + ridge), bounds=(-bound, bound), method="bvls")
    mu = np.clip(fit.x, -bound, bound)
    if not (np.all(np.isfinite(mu)) and _stationary(prob, Xz, mu, c, ridge)):
        return None
    return *_from_centred(prob, theta), -mu, rows


def _underdetermined_limit(prob: _Problem, r: np.ndarray, gamma: float, rows: np.ndarray, w: np.ndarray,
                           b: float):
    """:func:`_exact_limit` without ridge with fewer than ``p`` rows inside: a rank-deficient design (one-hot
    columns beside an intercept, whose basic solutions fit only ``rank`` rows exactly) or a minimiser that is not
    unique (the smoothed fits then tend to a point inside the optimal face, fitting fewer rows still). The two
    halves of the limit's system decouple: ``Xz theta = y_rows`` (``theta = [w, b]``), taken as the solution
    nearest the current ``(w, b)`` (least squares of the correction), and ``Xz^T mu = -c``; each is kept only
    when consistent, so that :func:`lad_smoothing`'s certificate (the other rows' signs kept, ``|mu_i| <= s_i``)
    still proves optimality."""
    Xz, c = _limit_terms(prob, r, gamma, rows)
    yr = prob.y[rows]
    at = np.append(w, b + float(prob.centre @ w)) if prob.fit_intercept else np.asarray(w, dtype=np.float64)
    try:
        theta = at + scipy.linalg.lstsq(Xz, yr - Xz @ at, check_finite=False)[0]
        mu = scipy.linalg.lstsq(Xz.T, -c, check_finite=False)[0]
    except (np.linalg.LinAlgError, ValueError):
        return None
    if not (np.all(np.isfinite(theta)) and np.all(np.isfinite(mu)) and _consistent(Xz, theta, yr)
            and _consistent(Xz.T, mu, -c) and _stationary(prob, Xz, mu, c)):
        return None
    return *_from_centred(prob, theta), -mu, rows  # (the sign of _exact_limit's)


def lad_smoothing(prob: _Problem, full: _closed_form.ClosedFormState, rtol: float, max_iter: int, init=None,
                  rescue: bool = False) -> _Fit:
    """The least-absolute-deviation fit of one target by finite smoothing (see the module docstring); ``full``
    holds its all-rows statistics. ``rescue``: where the smoothing ends without converging, a small problem without
    ridge is solved as a linear program (:func:`_lad_linprog`)."""
    w, b = _start(prob, full, init)
    if prob.fit_intercept:
        prob.constant = _closed_form.constant_columns(full)
    r = prob.run(w, b, np.inf, hessian=False).r
    if not np.isfinite(r).all():  # a start beyond the data's range (float32 X of 1e-36): its thresholds were NaN
        raise ValueError(beyond_range("newton", prob.X.dtype))
    F0 = _lad_objective(prob, r, w)
    if _fitted_to_round_off(prob, r, w, b, F0):  # F >= 0: the start is a minimiser to working precision
        return _Fit(w, b, F0, 0, True, [F0])
    # The first threshold: the median absolute residual of the rows the start does not fit exactly. With ties
    # (one-hot columns whose rows share targets) the least-squares start fits many rows exactly, the median of
    # all rows was rounding (5e-15), every other row lay outside it with no curvature to move the coefficients
    # that only they determine, and the fit stopped at max_epochs 33% above the minimum.
    gamma = _median_unfitted(prob, r, 2 * prob.rounding_bound(w, b))
    scale_ref = max(_dot(prob.s, np.abs(r)), np.finfo(float).tiny)
    if gamma <= 0:
        gamma = scale_ref
    hess = _Hessian(prob, full)
    hess.secant = False  # (see _Hessian.secant)
    curve: list = []
    iters, converged = 0, False
    best = [_lad_objective(prob, r, w), w, b]
    p = prob.d + (1 if prob.fit_intercept else 0)
    last = {}  # the latest exact limit tried: (wl, bl, rl), and whether it was certified

    def attempt(w, b, r, gamma, rows=None) -> bool:
        """Try the exact limit of the current sign pattern, or that fitting ``rows`` (a guess; one pass over X);
        True when certified optimal."""
        nonlocal iters
        guess = rows is not None
        limit = _exact_limit(prob, r, gamma, w, b, rows)
        if limit is None:
            last.clear()
            return False
        wl, bl, lam, rows = limit
        dual_ok = np.all(np.abs(lam) <= prob.s[rows] * (1 + 1e-9))
        if guess and not dual_ok:  # (refused without its pass over X: a guess is rarely the minimiser)
            last.clear()
            return False
        rl = prob.run(wl, bl, np.inf, hessian=False).r
        iters += 1
        F_l = _lad_objective(prob, rl, wl)
        others = np.ones(prob.n, bool)
        others[rows] = False
        signs_kept = _signs_kept(prob, r, rl, others, rows, wl, bl) and _fits_rows(prob, rl, rows, wl, bl)
        if F_l < best[0]:
            best[:] = [F_l, wl, bl]
        last.update(limit=(wl, bl, rl), certified=bool(signs_kept and dual_ok), objective=F_l)
        return last["certified"]

    def vertex(w, b, r, gamma) -> bool:
        """Without ridge, when the rows inside ``gamma`` are not ``p``: the limit that fits the ``p`` rows of
        weight nearest to zero (a basic solution, as the simplex method's), certified as any. On two nearly
        collinear columns without intercept (``-4e7 + t``, ``5e5 + t``) a stage ended with 4 rows inside and the
        next ones with none, whose curvature-free steps stayed 2.6e-6 of the objective above the minimum, silently."""
        weighted = np.flatnonzero(prob.s > 0)
        inside = int(np.count_nonzero(np.abs(r) <= gamma))
        # (tried where the stage's steps were no guide: too few rows inside, or too many with a system whose
        # condition they could not resolve; elsewhere it cost a read of X at every stage, 8% of a 10^6-row fit.
        # Not on exactly dependent columns, whose basic solutions fit fewer than p rows: _underdetermined_limit.)
        if prob.alpha != 0 or prob.singular or weighted.size <= p or inside == p or (
                inside > p and not (hess.switched or hess.untrusted())):
            return False
        rows = np.sort(weighted[np.argsort(np.abs(r[weighted]), kind="stable")[:p]])
        kept = dict(last)
        if attempt(w, b, r, gamma, rows):
            return True
        last.clear()
        last.update(kept)  # (the predictor follows the limit of the stage's own sign pattern)
        return False

    def probe(w, b, r, mask) -> bool:
        # Inside a stage, as soon as the rows inside could be the minimiser's zero residuals.
        count = int(mask.sum())
        if count == p or (prob.alpha > 0 and 0 < count < p):
            return attempt(w, b, r, gamma)
        return False

    def capped_round_off(r, w) -> bool:
        """gamma at round-off of the objective with far residuals capped (_lad_reference)."""
        return gamma <= max(rtol, EPS) * _lad_reference(prob, r, w, best[0], _lad_cap(prob, r))

    def below_residual_rounding(r, w, b) -> bool:
        """The threshold is below the rounding of the residuals it separates: the median over the rows inside
        it (the rows that fix the minimiser) of their residuals' own rounding, gamma_{d+2} (|x_i| . |w| + |b| +
        |y_i|) (:meth:`_Problem.rounding_bound`, a read of X: asked only once gamma is below 1e-6 of the
        objective), is at least gamma / 2, so no further stage can resolve them. Gross outliers beside
        coefficients of 1e6 leave residuals rounded by 1e-7: stages below that went nowhere, and at the minimum
        the fit warned. (Not the objective's own rounding: an outlier's |y| of 1e16 would stop every fit at 0.07.)"""
        if not gamma <= 1e-6 * best[0]:
            return False
        inside = (prob.s > 0) & (np.abs(r) <= gamma)
        return bool(inside.any()) and gamma <= 2 * float(np.median(prob.rounding_bound(w, b)[inside]))

    for _stage in range(MAX_STAGES):
        # A new threshold: most inliers leave, so the stage's first pass rebuilds the Hessian from the (about
        # ten times fewer) rows inside, which costs less than taking the others out.
        hess.stale = True
        cur = prob.run(w, b, gamma, None)
        hess.apply(cur)
        w, b, r, F, it, ok = _newton(prob, w, b, cur, hess, gamma, 1.0 / gamma, rtol, max_iter, curve, probe,
                                     reference=_StageReference(prob, cur.r), qr=QR_FALLBACK,
                                     damped=not prob.singular)
        iters += max(it, 1)
        if not ok:
            # A stage used up max_epochs: non-convergence, unless gamma is already at round-off of the capped
            # objective (say with tied rows, more than p fitted exactly, so no limit is ever certified): the
            # stage before it is then within about 10 gamma / 2 of the minimum, and kept.
            F_lad = _lad_objective(prob, r, w)
            # (only after a stage that ended: a first threshold at round-off had "converged" at the start, 33%
            # above the minimum, with no warning)
            converged = ((_stage > 0 and (capped_round_off(r, w) or below_residual_rounding(r, w, b)))
                         or _fitted_to_round_off(prob, r, w, b, F_lad))
            if F_lad < best[0]:  # (converged or not: the best point seen is returned, warned if not converged)
                best[:] = [F_lad, w, b]
            break
        F_lad = _lad_objective(prob, r, w)
        if F_lad < best[0]:
            best[:] = [F_lad, w, b]
        if _fitted_to_round_off(prob, r, w, b, F_lad):
            # an exact fit reached (the start was within the rounding of the least-squares solve, not of the
            # residuals: y constant, its mean off by hundreds of ulps): thresholds would shrink for ever
            converged = True
            curve.append(best[0])
            break
        if last.get("certified") or attempt(w, b, r, gamma) or vertex(w, b, r, gamma):
            # the certified limit is the minimiser: taken as is, not by comparing objectives that far
            # outliers may round alike
            converged = True
            wl, bl, rl = last["limit"]
            best[:] = [_lad_objective(prob, rl, wl), wl, bl]
            curve.append(best[0])
            break
        curve.append(best[0])
        # The objective is within gamma / 2 of the minimum: done when that is at round-off of the objective with
        # far residuals capped (_lad_reference, at most F: far outliers do not inflate it).
        if (gamma <= max(rtol, EPS) * best[0] and capped_round_off(r, w)) or below_residual_rounding(r, w, b):
            converged = True
            break
        if "limit" in last and last["objective"] <= F_lad:
            # Predictor for the next stage: on the segment to the limit, the smoothed minimiser of a fixed
            # sign pattern is affine in gamma, so gamma / 10 is 9/10 of the way there. (Not towards a limit
            # above the stage's point: the sign pattern is not the minimiser's, and a start 9/10 of the way to
            # one 0.1% above it left no row inside the next threshold, whose steps then went nowhere.)
            wl, bl, _ = last["limit"]
            w, b = w + 0.9 * (wl - w), b + 0.9 * (bl - b)
        gamma *= 0.1
    if (rescue and not converged and prob.alpha == 0 and prob.n * (prob.d + 1) <= LAD_LP_MAX_SIZE
            and prob.n <= LAD_LP_MAX_ROWS):
        exact = _lad_linprog(prob)
        if exact is not None:
            w_lp, b_lp, bound = exact
            F_lp = _lad_objective(prob, prob.run(w_lp, b_lp, np.inf, hessian=False).r, w_lp)
            if F_lp < best[0]:
                best[:] = [F_lp, w_lp, b_lp]
            # the dual's bound certifies the best point within LAD_LP_RTOL of the minimum
            converged = best[0] <= bound + LAD_LP_RTOL * bound
            curve.append(best[0])
    F, w, b = best
    return _minimum_norm(prob, _Fit(np.asarray(w, dtype=np.float64), float(b), F, iters, converged, curve or [F]))


def _lad_linprog(prob: _Problem):
    """The absolute error's minimiser ``(w, b)`` by linear programming (HiGHS, through ``scipy.optimize.linprog``),
    with a lower bound on the minimum from the program's dual; None where HiGHS reports no optimum.

    The program is posed on the rows of weight (the others cost nothing, and left ``z`` free along them) and their
    fitted values ``U z``, ``U`` an orthonormal basis of the span of ``[X, 1]`` (of ``X`` without intercept), the
    left singular vectors of the column-scaled design above ``1e-13`` of its largest singular value: ``min sum s_i
    (u_i + v_i)`` subject to ``U z + u - v = y``, ``u, v >= 0`` (Koenker & Bassett, 1978). (On ``X`` itself HiGHS's
    tolerances, relative to columns like ``x**3`` of 1e10, let its optimum stand 0.16 above the minimum.) HiGHS
    meets the equations only to its tolerance, relative to ``y``'s scale (2e-5 of fitted values beside outliers of
    1e7, 1.3e-4 of the objective), so the coefficients ``U z`` maps to are moved, least change, to fit exactly the
    rows its solution fits (``u_i = v_i = 0``), twice (2.5e-10 of the objective above the dual's bound on hashed
    counts). Its duals ``lambda``, made orthogonal to ``U`` and scaled into ``|lambda_i| <= s_i``, are feasible for
    the dual program, ``max y . lambda``, whose value bounds the minimum from below. The coefficients solve ``[X, 1]
    (w, b) = U z`` through the same singular vectors (minimum norm along exactly dependent columns). ``U`` is dense:
    the caller keeps ``n (d + 1)`` small (``LAD_LP_MAX_SIZE``)."""
    from scipy.optimize import linprog

    rows = np.flatnonzero(prob.s > 0)  # (rows of no weight cost nothing: left out, they left z free along them)
    n = rows.size
    X = prob.X[rows].toarray() if is_sparse(prob.X) else np.asarray(prob.X)[rows]
    A = np.column_stack([X.astype(np.float64), np.ones(n)]) if prob.fit_intercept else X.astype(np.float64)
    y, s = prob.y[rows], prob.s[rows]
    scale = np.linalg.norm(A, axis=0)
    scale[scale == 0] = 1.0
    U, sv, Vt = np.linalg.svd(A / scale, full_matrices=False)
    k = int(np.count_nonzero(sv > 1e-13 * sv[0])) if sv.size else 0
    U = U[:, :k]
    eye = sp.eye_array(n, format="csc")  # (dense, n x n: 180 GB at the size cap's 150,000 rows)
    res = linprog(np.concatenate([np.zeros(k), s, s]), A_eq=sp.hstack([U, eye, -eye], format="csc"), b_eq=y,
                  bounds=[(None, None)] * k + [(0, None)] * (2 * n), method="highs")
    if res.status != 0 or res.x is None:
        return None
    z, u, v = res.x[:k], res.x[k:k + n], res.x[k + n:]
    coef = (Vt[:k].T @ (z / sv[:k])) / scale  # (the kept directions' pseudo-inverse: A coef = U z)
    fitted = (u <= 1e-12 * (1 + np.abs(y))) & (v <= 1e-12 * (1 + np.abs(y)))
    for _ in range(2 if fitted.any() else 0):  # (least change, on A's own rows: through U it kept 1.4e-5)
        coef = coef + np.linalg.lstsq(A[fitted], y[fitted] - A[fitted] @ coef, rcond=None)[0]
    # dual feasible: U^T lambda = 0 (lambda less its projection on U's span), |lambda_i| <= s_i (scaled into the box)
    lam = np.asarray(res.eqlin.marginals, dtype=np.float64)
    lam = lam - U @ (U.T @ lam)
    ratio = float(np.max(np.abs(lam) / s)) if lam.size else 0.0
    bound = abs(float(y @ lam)) / max(1.0, ratio)
    w, b = (coef[:-1], float(coef[-1])) if prob.fit_intercept else (coef, 0.0)
    return w, b, bound


def _target_state(every: _closed_form.ClosedFormState, j: int) -> _closed_form.ClosedFormState:
    """The statistics of ``[X, Y[:, j]]`` from those of ``[X, Y]``."""
    d = every.n_features
    idx = np.append(np.arange(d), d + j)
    return _closed_form.ClosedFormState(d, 1, every.dtype, every.n_samples, every.weight, every.mean[idx],
                                        every.gram[np.ix_(idx, idx)])


def result(params: dict, dtype, fits: list[_Fit], init) -> FitResult:
    """The estimator's result from every target's fit; warns when one did not converge."""
    if not all(f.converged for f in fits):
        _warn(
            f"solver='newton' reached max_epochs={max_epochs_label(params, max_epochs(params))} iterations before "
            f"converging (loss={params['loss']!r}); increase max_epochs.",
            ConvergenceWarning,
        )
    curves = [f.curve for f in fits]
    length = max(len(c) for c in curves)
    curve = [float(sum(c[min(i, len(c) - 1)] for c in curves)) for i in range(length)]
    n_iter = max(f.n_iter for f in fits)
    if init is None:
        # The least-squares start is itself a Newton step: the one that solves a quadratic from zero, and Huber's
        # where every residual is an inlier (where it is the minimiser, no iteration follows: n_iter_ was 0).
        # Counting it keeps n_iter_ >= 1, as scikit-learn expects of an estimator with max_iter.
        n_iter = max(n_iter, 1)
    objective = float(sum(f.objective for f in fits))
    attrs = {"solver_": "newton", "n_iter_": n_iter, "loss_curve_": curve, "best_loss_": objective,
             "objective_": objective}
    coef = np.array([f.w for f in fits], dtype=np.float64)
    intercept = np.array([f.b for f in fits], dtype=np.float64)
    saved = np.hstack([coef, intercept[:, None]])
    return FitResult(coef.astype(dtype), intercept.astype(dtype), saved, attrs)


class NewtonSolver(Solver):
    """``solver="newton"``: exact fits of the robust losses (see the module docstring)."""

    name = "newton"
    losses = frozenset({"huber", "absolute_error", "squared_error"})  # squared error: Huber with epsilon = inf
    chunked = None  # every Newton iteration reads all rows: no partial_fit or fit_stream
    # CSR X: SciPy's products and the closed form's CSR Gram kernel for the inlier Hessian (_Problem._run_csr)
    supports_sparse = True
    dask_losses = frozenset({"huber", "squared_error"})  # fit_dask's; "auto" takes Newton on Dask for these
    accepts_init = True
    per_target_alpha = True
    forms_ridge = True

    def check_incremental(self) -> None:
        raise ValueError(
            "solver='newton' cannot fit incrementally (partial_fit, fit_stream, or the absolute error on Dask "
            "arrays): each Newton iteration reads every row. Use fit (on in-memory arrays, or on Dask arrays with "
            "loss='huber'), or an iterative solver (e.g. solver='adam')."
        )

    @staticmethod
    def checks_finite_X(params: dict) -> bool:
        """The first Gram pass reports non-finite X (see :func:`fastopt._closed_form.chunk_state`)."""
        return True

    def fit(self, params: dict, data: Data, state=None, init=None) -> FitResult | None:
        """Fit every target; ``init`` is ``(coef (k, d), intercept (k,))`` to start from, else ``state``'s
        coefficients under ``warm_start``, else the least-squares fit. With ``params[TRIAL_KEY]`` (``"auto"``'s
        trial): None, without a warning, when the fit has not converged within that budget."""
        d, k = data.X.shape[1], data.Y.shape[1]
        if init is None and state is not None and state.shape == (k, d + 1):
            init = (state[:, :d], state[:, d])
        trial = params.get(TRIAL_KEY)
        if trial is None:
            return result(params, data.X.dtype, self._live_fits(params, data, init), init)
        token = _TRIAL.set([float(trial[0]), float(trial[1])])
        try:
            fits = self._live_fits(params, data, init)
        except _TrialSpent:
            return None
        finally:
            _TRIAL.reset(token)
        return result(params, data.X.dtype, fits, init) if all(f.converged for f in fits) else None

    def _live_fits(self, params: dict, data: Data, init) -> list:
        """:meth:`_fits` on the columns of sparse ``X`` that store a nonzero value, the others' coefficients 0:
        each such column is an exact null direction of every Hessian and gradient (the minimum-norm coefficient,
        as the closed form's), which the d x d factorisations carried along. Hashed text leaves many: 2,499 of
        4,096 FeatureHasher columns on 4,000 short documents, whose Huber fit took 33 s."""
        X, d = data.X, data.X.shape[1]
        if not is_sparse(X) or X.shape[0] == 0:
            return self._fits(params, data, init)
        used = np.zeros(d, dtype=bool)
        used[X.indices[X.data != 0]] = True
        if used.all() or not used.any():
            return self._fits(params, data, init)
        live = np.flatnonzero(used)
        narrow = dataclasses.replace(data, X=X[:, live])
        fits = self._fits(params, narrow, None if init is None else (np.asarray(init[0])[:, live], init[1]))
        for fit in fits:
            w = np.zeros(d)
            w[live] = fit.w
            fit.w = w
        return fits

    def _fits(self, params: dict, data: Data, init) -> list:
        """Every target's :class:`_Fit` (:meth:`fit`), from ``init`` if given."""
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
        alpha = np.broadcast_to(np.asarray(params["alpha"], dtype=np.float64), (k,))
        rtol = RTOL
        lad = params["loss"] == "absolute_error"
        epsilon = float(params["epsilon"]) if params["loss"] == "huber" else np.inf
        # Tiny targets are fitted multiplied by a power of two (exact), epsilon with them, and the fit divided
        # back: the fits' thresholds are partly absolute (an exact fit's 1e-9 (1 + |y|)), and at y of 1e-200 a
        # Huber fit stopped after one step at the least-squares fit, silently.
        exps = target_exponents(target_top(Y, s))
        if exps.any():
            X, Y = scaled_targets(X, Y, s, exps)
        fits, every = [], None
        for j in range(k):
            y = np.ascontiguousarray(Y[:, j], dtype=np.float64)
            e = int(exps[j])
            with np.errstate(over="ignore"):  # (e <= 0: an epsilon or a start beyond the range is inf, as it was)
                eps_j, alpha_j = float(np.ldexp(epsilon, -e)), float(alpha[j])
                if lad:  # sum s |y - X w| scales by 2^-e, the ridge by 2^-2e: alpha takes 2^e, the same minimiser
                    alpha_j = math.ldexp(alpha_j, e)
                start = None if init is None else (np.ldexp(init[0][j], -e), float(np.ldexp(init[1][j], -e)))
            if params["loss"] == "huber":
                check_scaled_epsilon(epsilon, eps_j)
            if params["loss"] == "huber" and start is None and _sampled(n, d):
                fit = huber_fit(X, y, s, alpha_j, params["fit_intercept"], eps_j, rtol, max_epochs(params))[0]
            else:
                if every is None:  # one Gram pass for every target: the least-squares starts, all-rows Hessians
                    every = _full_state(X, Y, s)
                full = _target_state(every, j)
                centre = every.mean[:d].copy() if params["fit_intercept"] else np.zeros(d)
                prob = _Problem(X, y, s, alpha_j, params["fit_intercept"], centre)
                if not lad:
                    fit = huber_newton(prob, full, eps_j, rtol, max_epochs(params), start)[0]
                else:
                    # (the linear program's rescue within the solver's own budget, not under a smaller max_epochs)
                    rescue = max_epochs(params) >= max_epochs({"max_epochs": "auto"})
                    fit = lad_smoothing(prob, full, rtol, max_epochs(params), start, rescue)
            fits.append(scaled_fit(fit, e, lad))
        return fits

    def fit_dask(self, params: dict, checker, chunks, state=None) -> FitResult:
        """Huber and squared error on Dask blocks (:mod:`fastopt._newton_dask`): one distributed pass per
        evaluation, only ``d x d`` statistics travel."""
        from fastopt import _newton_dask

        return _newton_dask.fit(params, checker, chunks, state)

    def partial_fit(self, params: dict, data: Data, state=None, **_) -> FitResult:
        """Not supported: each Newton iteration reads every row."""
        self.check_incremental()


SOLVERS = {"newton": NewtonSolver()}
