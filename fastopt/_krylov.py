"""Krylov least squares: CGLS and LSQR, matrix-free, one fused pass over ``X`` per iteration.

The problem
-----------
The objective is the closed form's (see :mod:`fastopt._closed_form`): with ``W = sum_i w_i``,
``(1 / (2 W)) sum_i w_i (y_i - x_i . coef - intercept)^2 + (alpha / 2) ||coef||^2``. Eliminating the intercept
by the weighted means ``m`` (of ``X``'s columns) and ``m_y`` leaves, times ``2 W``, the damped least-squares
problem ``min ||A coef - b||^2 + lam^2 ||coef||^2`` with ``A = S (X - 1 m^T)``, ``b = S (y - m_y)``,
``S = diag(sqrt(w))`` and ``lam^2 = W alpha``; ``intercept = m_y - m . coef`` (without an intercept,
``m = 0`` and ``m_y = 0``). ``A`` is never formed: ``A v = S (X v - (m . v) 1)`` and
``A^T u = X^T (S u) - m sum_i s_i u_i``.

Preconditioning (``precondition="auto"``, the default; ``"none"`` turns it off) solves for ``z = D^-1 coef``
with the operator ``A D``, where ``D = diag(1 / sqrt(||A e_j||^2 + lam^2))`` is the inverse square root of the diagonal
of the
normal matrix ``A^T A + lam^2 I``: columns of very different scales (counts beside ratios, hashed features of
any frequency) then converge together. The ridge term becomes ``lam^2 ||D z||^2``, so both methods run on the
augmented operator ``[A D; lam D]`` and right-hand side ``[b; 0]`` (its lower block is diagonal: O(d) work).

Stopping (``tol``)
------------------
``tol`` bounds the relative residual of the (column-scaled) normal equations,
``||D (A^T (b - A coef) - lam^2 coef)|| <= tol ||D A^T b||``: the gradient of the objective at ``coef``
relative to its value at zero, in the scaled variables (``D = I`` without the preconditioner). When the
iteration's own estimate reaches it, one more pass computes the true residual; if recurrence round-off left that
above ``tol``, the method restarts from the current coefficients (the restart's iterations count in ``n_iter_``).
``tol=None`` runs ``max_iter`` iterations (stopping only on an exact solution). Not reaching ``tol`` within
``max_iter`` warns :class:`~sklearn.exceptions.ConvergenceWarning`. For a condition number ``kappa`` of the
scaled operator, both methods need about ``(kappa / 2) log(2 / tol)`` iterations (the conjugate-gradient bound,
Nocedal & Wright, *Numerical Optimization*, 2006, eq. 5.36, applied to ``A^T A`` whose condition is
``kappa^2``).

One pass over X per iteration
-----------------------------
The compiled kernel (:func:`fastopt._kernels.krylov_dense`/``krylov_csr``, csrc/krylov.c) returns, in one
read of ``X``, ``a = A v + c b`` together with ``||a||^2`` and ``A^T a`` for any ``d``-vector ``v`` and scalar
``c``, without storing ``a``. Both recurrences are arranged to need exactly that once per iteration:

* **CGLS** (Hestenes & Stiefel 1952; Paige & Saunders 1982, section 7.1) needs ``q = A p`` for the step length
  ``gamma / ||q||^2`` and then ``A^T r`` for the new residual ``r = r - step q``. Since
  ``A^T r_new = A^T r - step A^T q``, the kernel's ``A^T A p`` from the same pass updates the normal-equation
  residual directly; the ``n``-vector ``r`` is never needed.
* **LSQR** (Paige & Saunders 1982) runs Golub-Kahan bidiagonalisation,
  ``beta u_{k+1} = A v_k - alpha u_k`` then ``alpha v_{k+1} = A^T u_{k+1} - beta v_k``. Every ``u_k`` is a
  combination ``A g_k + gamma_k b`` (``u_1`` is ``b - A x_0``, and the recurrence keeps the form), so ``u`` is
  carried as the ``d``-vector ``g`` and the scalar ``gamma``: ``g' = v - alpha g``, ``gamma' = -alpha gamma``,
  and one pass with ``(v, c) = (g', gamma')`` gives ``||u'||`` (so ``beta``) and ``A^T u'`` together. The
  rotations and updates of ``x`` are SciPy's ``lsqr`` (``scipy.sparse.linalg``) without its ``damp`` branch
  (the damping is in the augmented operator). Carrying ``u`` implicitly costs LSQR some of its stability on
  very ill-conditioned problems (``g`` grows like ``1 / sigma_min``), which the true-residual check catches.

Memory: ``O(n + d)`` (a few ``d``-vectors per thread; no ``n``-vector besides ``sqrt(w)``).

Data
----
Dense arrays (memory-mapped ones too) and CSR matrices in memory are split into fixed segments of rows run by
parallel threads (the kernel releases the GIL) and summed in segment order, so the result does not depend on
the thread count; :meth:`fastopt.LinearRegressor.fit_stream` makes one read of the stream per iteration (chunks
merged in a balanced tree); Dask arrays make one distributed pass per iteration (:mod:`fastopt._krylov_dask`).
"""
from __future__ import annotations

import math
import os
import threading
import warnings
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import scipy.sparse

from fastopt import _closed_form, _kernels
from fastopt._result import FitResult, Outcome, Solver
from fastopt._validation import Data
from fastopt.exceptions import ConvergenceWarning

__all__ = ["SOLVERS", "KrylovState", "Moments", "Passes", "default_max_iter", "solve"]

# Segments of rows: fixed by the data's shape alone (never by the thread count), so the sums, made in segment
# order, are the same for any number of threads. Each segment fills and returns a d-vector of its own, so a
# segment holds at least SEGMENT_WORK * d stored entries (that overhead then stays below a few percent of the
# pass: at d = 2^18 with 30 nonzeros a row, 200,000 rows make two segments), at least SEGMENT_ROWS rows, and
# there are at most MAX_SEGMENTS.
SEGMENT_ROWS = 16384
SEGMENT_WORK = 8
MAX_SEGMENTS = 32
MAX_ITER_DEFAULT = 10_000


def default_max_iter(d: int) -> int:
    """``max_iter=None``: ``2 d`` (SciPy's ``lsqr`` default; exact arithmetic needs at most ``d``), within
    ``[100, 10000]``."""
    return int(min(max(2 * d, 100), MAX_ITER_DEFAULT))


@dataclass
class Moments:
    """Weighted first and second moments of the rows, float64: what centring and the preconditioner need."""

    weight: float            # W = sum_i w_i
    n_samples: int
    sx: np.ndarray           # (d,) sum_i w_i x_i
    sxx: np.ndarray          # (d,) sum_i w_i x_i^2
    sy: np.ndarray           # (k,) sum_i w_i y_i
    sxy: np.ndarray          # (d, k) sum_i w_i x_i y_i

    def __add__(self, other: Moments) -> Moments:
        return Moments(self.weight + other.weight, self.n_samples + other.n_samples, self.sx + other.sx,
                       self.sxx + other.sxx, self.sy + other.sy, self.sxy + other.sxy)


@dataclass
class Pass:
    """One fused pass's sums: ``z = X^T (s a)``, ``ss = ||a||^2``, ``se = sum_i s_i a_i`` (and, when asked,
    ``zz = (X * X)^T (s a)``)."""

    z: np.ndarray
    ss: float
    se: float
    zz: np.ndarray | None = None

    def __add__(self, other: Pass) -> Pass:
        zz = None if self.zz is None else self.zz + other.zz
        return Pass(self.z + other.z, self.ss + other.ss, self.se + other.se, zz)


def _dot(a: np.ndarray, b: np.ndarray) -> float:
    """``a . b`` by NumPy's own loop: a multi-threaded BLAS may split a long dot product by its thread count,
    which would make the result depend on it."""
    return float(np.einsum("i,i->", a, b))


def add(a, b):
    """Sum of two :class:`Moments` or :class:`Pass` values (the merge of tree reductions)."""
    return a + b


@dataclass
class KrylovState:
    """What a Krylov fit keeps for ``warm_start``: the coefficients (k, d), float64."""

    coef: np.ndarray


# ---------------------------------------------------------------- passes over data in memory

_POOL: ThreadPoolExecutor | None = None
_POOL_LOCK = threading.Lock()


def _pool() -> ThreadPoolExecutor:
    global _POOL
    with _POOL_LOCK:
        if _POOL is None:
            _POOL = ThreadPoolExecutor(max(1, os.cpu_count() or 1), thread_name_prefix="fastopt-krylov")
        return _POOL


def _forget_pool() -> None:
    """In a forked child: the parent's pool threads do not exist there, and submitting to it would wait forever."""
    global _POOL, _POOL_LOCK
    _POOL, _POOL_LOCK = None, threading.Lock()


if hasattr(os, "register_at_fork"):  # not on Windows, which does not fork
    os.register_at_fork(after_in_child=_forget_pool)


def _segments(n: int, d: int, stored: int) -> list[tuple[int, int]]:
    """Row ranges of the segments of ``n`` rows holding ``stored`` entries (``n d`` when dense)."""
    count = min(MAX_SEGMENTS, -(-n // SEGMENT_ROWS), max(1, stored // max(SEGMENT_WORK * d, 1)))
    rows = -(-n // max(count, 1))
    return [(start, min(start + rows, n)) for start in range(0, n, rows)] or [(0, 0)]


def _sqrt_weight(sample_weight) -> np.ndarray | None:
    return None if sample_weight is None else np.sqrt(np.asarray(sample_weight, dtype=np.float64))


def chunk_moments(data: Data) -> Moments:
    """:class:`Moments` of one chunk of validated rows (dense or CSR), by the compiled pass: ``1 + k`` reads.

    With ``v = 0``, ``c = 0`` and ``shift = -1`` the pass gives ``sum_i w_i x_i`` and, from the same read,
    ``sum_i w_i x_i^2``; with ``c = 1`` and ``shift = 0``, ``sum_i w_i y_ij x_i`` for target ``j`` (``w_i`` as the
    square of ``sqrt(w_i)``, exactly the weights the operator applies). Nothing of the size of ``X`` is allocated.
    """
    X, Y, sw = data.X, data.Y, data.sample_weight
    d, k = X.shape[1], Y.shape[1]
    sqrt_w, zero = _sqrt_weight(sw), np.zeros(d)
    first = chunk_pass(data, sqrt_w, 0, zero, 0.0, -1.0, squares=True)
    sxy = np.empty((d, k))
    for j in range(k):
        sxy[:, j] = chunk_pass(data, sqrt_w, j, zero, 1.0, 0.0).z
    w = np.ones(X.shape[0]) if sw is None else np.asarray(sw, dtype=np.float64)
    sy = np.einsum("i,ik->k", w, np.asarray(Y, dtype=np.float64))
    return Moments(float(np.einsum("i->", w)), X.shape[0], first.z, first.zz, sy, sxy)


def _segment_pass(data: Data, sqrt_w, start: int, stop: int, target: int, v, c: float, shift: float,
                  squares: bool) -> Pass:
    X, Y = data.X, data.Y
    z = np.empty(v.shape[0])
    zz = np.empty(v.shape[0]) if squares else None
    s = None if sqrt_w is None else sqrt_w[start:stop]
    if scipy.sparse.issparse(X):
        ss, se = _kernels.krylov_csr(X.data, X.indices, X.indptr[start : stop + 1], Y[start:stop], target, s, v,
                                     c, shift, z, zz)
    else:
        ss, se = _kernels.krylov_dense(X[start:stop], Y[start:stop], target, s, v, c, shift, z, zz)
    return Pass(z, ss, se, zz)


def chunk_pass(data: Data, sqrt_w, target: int, v: np.ndarray, c: float, shift: float,
               squares: bool = False) -> Pass:
    """The fused pass over one chunk: fixed segments in parallel threads, summed in segment order."""
    X = data.X
    n, d = X.shape
    segs = _segments(n, d, X.nnz if scipy.sparse.issparse(X) else n * d)
    threads = min(_closed_form._n_threads(), len(segs))
    def run(seg):
        return _segment_pass(data, sqrt_w, *seg, target, v, c, shift, squares)

    parts = _pool().map(run, segs) if threads > 1 else map(run, segs)
    total = None
    for part in parts:  # in segment order, whichever thread finished first
        if total is None:
            total = part
        else:
            total.z += part.z
            total.ss += part.ss
            total.se += part.se
            if squares:
                total.zz += part.zz
    return total


def _check_csr(X) -> None:
    if X.indices.dtype != np.int32 or X.indptr.dtype != np.int32:
        raise ValueError("the Krylov kernels take CSR matrices with int32 indices and indptr.")


class Passes:
    """Passes over data held in memory (dense, memory-mapped or CSR): the interface :func:`solve` uses.

    Other sources (a stream of chunks, Dask blocks) provide the same three members.
    """

    def __init__(self, data: Data):
        if scipy.sparse.issparse(data.X):
            _check_csr(data.X)
        self.data = data
        self.sqrt_w = _sqrt_weight(data.sample_weight)
        self.n_targets = data.Y.shape[1]

    def moments(self) -> Moments:
        return chunk_moments(self.data)

    def fused(self, target: int, v: np.ndarray, c: float, shift: float) -> Pass:
        return chunk_pass(self.data, self.sqrt_w, target, v, c, shift)


# ---------------------------------------------------------------- the operator and the two methods


class _Operator:
    """The scaled augmented operator ``[A D; lam D]`` of one target, over a :class:`Passes`-like source."""

    def __init__(self, passes, mom: Moments, target: int, params: dict):
        W = mom.weight
        self.passes, self.target = passes, target
        if params["fit_intercept"]:
            self.m, self.my = mom.sx / W, mom.sy[target] / W
        else:
            self.m, self.my = np.zeros_like(mom.sx), 0.0
        alpha = np.asarray(params["alpha"], dtype=np.float64)  # one alpha, or one per target
        self.lam2 = W * float(alpha[target] if alpha.ndim else alpha)
        # Column norms of A (centred, weighted): sum w x^2 - W m^2, clamped at zero against cancellation (the
        # preconditioner only needs them roughly).
        colsq = np.maximum(mom.sxx - W * self.m**2, 0.0)
        if params.get("precondition", "auto") != "none":
            diag = colsq + self.lam2
            self.D = np.where(diag > 0, 1.0 / np.sqrt(np.where(diag > 0, diag, 1.0)), 1.0)
        else:
            self.D = np.ones_like(colsq)
        self.L = np.sqrt(self.lam2) * self.D  # the diagonal lower block
        # D A^T b, from the moments: sum w (x - m)(y - m_y) = sxy - W m m_y (its norm is the reference of tol).
        self.Atb = self.D * (mom.sxy[:, target] - W * self.m * self.my)
        self.passes_made = 0

    def apply(self, g: np.ndarray, c: float):
        """One fused pass: ``(||A D g + c b||^2, D A^T (A D g + c b))``."""
        v = self.D * g
        shift = _dot(self.m, v) + c * self.my
        p = self.passes.fused(self.target, v, c, shift)
        self.passes_made += 1
        out = p.z  # the pass's own vector: updated in place (d-vector operations cost at d = 2^18)
        if p.se != 0.0:
            out -= p.se * self.m
        out *= self.D
        return p.ss, out

    def normal_residual(self, x: np.ndarray) -> np.ndarray:
        """``D (A^T (b - A D x)) - lam^2 D^2 x``: the scaled normal-equation residual, by one true pass."""
        _, Atr = self.apply(-x, 1.0)
        return Atr - self.L * (self.L * x)


def _cgls(op: _Operator, x: np.ndarray, tol: float | None, max_iter: int, ref: float, log=None):
    """CGLS on the augmented operator from ``x``; returns ``(x, iterations, converged)``."""
    L2 = op.L * op.L
    _, Atr = op.apply(-x, 1.0)
    s = Atr - L2 * x
    gamma = _dot(s, s)
    if tol is not None and math.sqrt(gamma) <= tol * ref:  # a warm start may already be converged
        return x, 0, True
    p = s.copy()
    ridge = op.lam2 > 0
    it = 0
    # Vectors are updated in place: at d = 2^18 each temporary is 2 MiB of traffic.
    while it < max_iter:
        if gamma == 0.0:
            return x, it, True
        qq, AtAp = op.apply(p, 0.0)
        if ridge:
            Lp = op.L * p
            qq += _dot(Lp, Lp)
            AtAp += L2 * p
        if qq == 0.0:
            return x, it, True
        step = gamma / qq
        x = x + step * p  # a new array: the caller's starting x is not modified
        s -= step * AtAp  # A^T r_new = A^T r - step A^T A p: no second pass (module docstring)
        gamma_new = _dot(s, s)
        it += 1
        if log is not None:
            log(it, math.sqrt(gamma_new))
        if tol is not None and math.sqrt(gamma_new) <= tol * ref:
            return x, it, True
        p *= gamma_new / gamma
        p += s
        gamma = gamma_new
    return x, it, False


def _lsqr(op: _Operator, x0: np.ndarray, tol: float | None, max_iter: int, ref: float, log=None):
    """LSQR (Paige & Saunders 1982) on the augmented operator from ``x0``; returns ``(x, iterations, converged)``.

    ``u`` is carried as ``(g, gamma, ub)`` with ``u = [A D g + gamma b; ub]`` (module docstring).
    """
    ridge = op.lam2 > 0  # without it the lower block of u is zero throughout
    g, gam, ub = -x0, 1.0, -op.L * x0
    ss, Atu = op.apply(g, gam)
    beta = math.sqrt(ss + _dot(ub, ub))
    x = x0.copy()
    if beta == 0.0:
        return x, 0, True
    g, gam, ub, Atu = g / beta, gam / beta, ub / beta, Atu / beta
    v = Atu + op.L * ub
    alpha = math.sqrt(_dot(v, v))
    if alpha == 0.0 or (tol is not None and alpha * beta <= tol * ref):  # ||A^T r_0|| = alpha beta
        return x, 0, True
    v /= alpha
    w = v.copy()
    phibar, rhobar = beta, alpha
    it = 0
    # Vectors are updated in place: at d = 2^18 each temporary is 2 MiB of traffic.
    while it < max_iter:
        # Bidiagonalisation: beta u = A v - alpha u (one pass), alpha v = A^T u - beta v.
        g *= -alpha
        g += v
        gam *= -alpha
        if ridge:
            ub *= -alpha
            ub += op.L * v
        ss, Atu = op.apply(g, gam)
        beta = math.sqrt(ss + (_dot(ub, ub) if ridge else 0.0))
        if beta > 0.0:
            g /= beta
            gam /= beta
            Atu /= beta
            if ridge:
                ub /= beta
        v *= -beta
        v += Atu
        if ridge:
            v += op.L * ub
        alpha = math.sqrt(_dot(v, v))
        if alpha > 0.0:
            v /= alpha
        # Plane rotation eliminating the subdiagonal beta (as scipy.sparse.linalg.lsqr with damp = 0).
        rho = math.hypot(rhobar, beta)
        cs, sn = rhobar / rho, beta / rho
        theta, rhobar = sn * alpha, -cs * alpha
        phi, phibar = cs * phibar, sn * phibar
        x += (phi / rho) * w
        w *= -(theta / rho)
        w += v
        it += 1
        arnorm = alpha * abs(cs) * phibar  # ||A^T r_k||, LSQR's estimate of the normal-equation residual
        if log is not None:
            log(it, arnorm)
        if alpha == 0.0 or beta == 0.0 or (tol is not None and arnorm <= tol * ref):
            return x, it, True
    return x, it, False


METHODS = {"cg": _cgls, "lsqr": _lsqr}
MAX_RESTARTS = 3


def solve(method: str, params: dict, passes, state: KrylovState | None = None,
          moments: Moments | None = None) -> FitResult:
    """Fit every target with ``method`` ("cg" or "lsqr") over ``passes`` (see :class:`Passes`).

    Returns
    -------
    FitResult
        ``coef`` (k, d) and ``intercept`` (k,) in float64 (the caller casts); ``attrs``: ``solver_``,
        ``n_iter_`` (the most iterations any target took).
    """
    mom = passes.moments() if moments is None else moments
    if not mom.weight > 0:
        raise ValueError("sample_weight sums to zero; at least one sample must have positive weight.")
    if not all(np.isfinite(a).all() for a in (mom.sx, mom.sxx, mom.sy, mom.sxy)):
        raise ValueError("the weighted column sums of squares of X or y overflow float64; rescale X and y.")
    d, k = mom.sx.shape[0], mom.sy.shape[0]
    tol = params["tol"]
    max_iter = params.get("max_iter")
    max_iter = default_max_iter(d) if max_iter is None else int(max_iter)
    coef, intercept, n_iter, failed = np.zeros((k, d)), np.zeros(k), 0, []
    for j in range(k):
        op = _Operator(passes, mom, j, params)
        ref = math.sqrt(_dot(op.Atb, op.Atb))
        x = np.zeros(d)
        if state is not None and state.coef.shape == (k, d):
            x = state.coef[j] / op.D
        used, converged = 0, ref == 0.0 and not x.any()
        for _ in range(MAX_RESTARTS + 1):
            if converged or used >= max_iter:
                break
            log = None
            if params.get("verbose"):
                def log(it, norm, j=j, base=used, ref=ref):
                    print(f"{method} target {j} iteration {base + it}: relative normal-equation residual "
                          f"{norm / ref if ref > 0 else 0.0:.3e}")
            x, it, converged = METHODS[method](op, x, tol, max_iter - used, ref, log)
            used += it
            if converged and tol is not None:
                # Recurrences drift from the true residual: confirm with one true pass, else restart from x.
                res = op.normal_residual(x)
                true = math.sqrt(_dot(res, res))
                converged = true <= tol * ref
        if not converged and tol is not None:
            failed.append(j)
        coef[j] = op.D * x
        intercept[j] = op.my - _dot(op.m, coef[j])
        n_iter = max(n_iter, used)
    if not (np.isfinite(coef).all() and np.isfinite(intercept).all()):
        raise ValueError(f"solver={method!r} produced non-finite coefficients (overflow in float64); rescale X and y.")
    if failed:
        warnings.warn(
            f"solver={method!r} did not reach tol={tol} (relative residual of the normal equations) within "
            f"max_iter={max_iter} iterations for target(s) {failed}; increase max_iter, or use solver='lsqr' or "
            "the closed form for an ill-conditioned problem.",
            ConvergenceWarning,
            stacklevel=4,
        )
    if not params["fit_intercept"]:
        intercept[:] = 0.0
    return FitResult(coef, intercept, KrylovState(coef.copy()), {"solver_": method, "n_iter_": n_iter})


def cast(result: FitResult, dtype) -> FitResult:
    """The coefficients in the input's dtype (float32 input gives float32 coefficients, as the closed form)."""
    result.coef = result.coef.astype(dtype)
    result.intercept = result.intercept.astype(dtype)
    return result


class KrylovSolver(Solver):
    """A registry entry: ``solver="cg"`` (CGLS) or ``solver="lsqr"`` (LSQR); see the module docstring."""

    losses = frozenset({"squared_error"})
    supports_sparse = True
    per_target_alpha = True  # each target is its own Krylov run with its own damping
    accepts_init = True  # coef_init starts the iteration, as a warm start does
    chunked = "passes"  # one read of every chunk per iteration

    def __init__(self, method: str):
        self.method = self.name = method

    @staticmethod
    def checks_finite_X(params: dict) -> bool:
        """Validation checks X: a non-finite value would only surface as a non-finite residual much later."""
        return False

    def fit(self, params: dict, data: Data, state: KrylovState | None = None, init=None) -> FitResult:
        """Solve on ``data``, starting from ``state``'s coefficients under ``warm_start``, or from ``init``
        (``(coef_init, intercept_init)``; the intercept is eliminated exactly, so only ``coef_init`` matters)."""
        if init is not None:
            state = KrylovState(np.asarray(init[0], dtype=np.float64))
        # Relative weights, divided by a power of two near their maximum (exact) so that no sum overflows.
        data = _closed_form.normalised_weights(data)
        return cast(solve(self.method, params, Passes(data), state), data.X.dtype)

    def partial_fit(self, params: dict, data: Data, state: KrylovState | None = None, **_) -> FitResult:
        """Refit on this call's rows only, starting from the previous call's coefficients.

        A Krylov method needs many passes over the same rows, so it cannot accumulate rows seen once; for the
        exact solution over rows that arrive in chunks use ``fit_stream`` (one read of the stream per iteration)
        or the closed form's ``partial_fit``.
        """
        return self.fit(params, data, state)


SOLVERS = {"cg": KrylovSolver("cg"), "lsqr": KrylovSolver("lsqr")}


def fit_stream(params: dict, name: str, source, check: Callable, state: KrylovState | None) -> Outcome:
    """``fit_stream`` with a Krylov solver: one read of the stream for the moments, one per iteration, from
    ``state`` under ``warm_start``.

    ``check(X, y, sample_weight, where, reset)`` validates a chunk into :class:`Data`. Chunks are visited in
    stream order and their sums merged in a balanced tree (round-off grows with the log of the chunk count), so
    the same stream gives the same coefficients every time.
    """
    from fastopt._chunks import read

    source.check_epochs(2)
    info = {}

    def fold(leaf):
        merger = _closed_form.TreeMerger(add)
        targets = None
        for position, (_, where, X, y, sw) in enumerate(read(source)):
            data = check(X, y, sw, where, position == 0 and "y_was_1d" not in info)
            if targets is not None and data.Y.shape[1] != targets:
                raise ValueError(f"{where}: y has {data.Y.shape[1]} targets; earlier chunks had {targets}.")
            targets = data.Y.shape[1]
            info.setdefault("y_was_1d", data.y_was_1d)
            info.setdefault("dtype", data.X.dtype)
            merger.push(leaf(data))
        total = merger.result()
        if total is None:
            raise ValueError("the stream of chunks is empty; at least one chunk of rows is required.")
        return total

    class StreamPasses:
        def moments(self):
            return fold(chunk_moments)

        def fused(self, target, v, c, shift):
            return fold(lambda data: chunk_pass(data, _sqrt_weight(data.sample_weight), target, v, c, shift))

    result = cast(solve(name, params, StreamPasses(), state), info["dtype"])
    return Outcome(name, result, info["y_was_1d"])
