"""Closed-form least squares: blockwise sufficient statistics, Cholesky, and a stable QR/SVD fallback.

The problem
-----------
With ``W = sum_i w_i`` (``w_i = 1`` without ``sample_weight``), the solvers minimise the estimator's mean loss::

    (1 / (2 W)) sum_i w_i (y_i - x_i . coef - intercept)^2  +  (alpha / 2) ||coef||^2

The intercept is eliminated exactly by centring on the weighted means, so it is never penalised. Multiplying by
``2 W`` shows the mapping to scikit-learn's ``Ridge``, which penalises the *sum* of squared errors:
``LinearRegressor(alpha=a)`` equals ``Ridge(alpha=a * W)``. The mean-loss convention is the one the iterative
solvers' weight decay optimises, so every solver of the estimator converges to the same coefficients.

Paths (reported as the fitted ``solver_``)
------------------------------------------
``"cholesky"``
    Normal equations from the compiled statistics (:func:`fastopt._kernels.gram_stats`), columns scaled by powers
    of two (exact), Cholesky (LAPACK ``potrf``) and its reciprocal condition estimate (``pocon``). Accepted only
    when ``rcond >= RCOND_CHOLESKY = 1e-4``: the normal equations square the design's condition number, so this
    bound keeps their error below about ``1e4 * eps``, i.e. 12 or more correct digits in float64.
``"qr"``
    Householder QR of the centred, weighted, augmented matrix ``[X, Y]``, computed blockwise as a tall-skinny QR:
    each block of rows is centred on its own mean and its ``R`` merged with the running one by stacking
    ``[R_a; R_b; sqrt(W_a W_b / (W_a + W_b)) (mean_b - mean_a)]``, the square-root form of the pairwise moment
    update. ``R = [[R11, R12], [0, R22]]`` and ``R11 coef^T = R12``: the condition number is not squared.
``"svd"``
    When the column-scaled ``R11`` is rank-deficient to working precision (reciprocal condition below
    ``eps * max(n, d)``): the minimum-norm solution from the SVD of ``R11``, with the cutoff of
    ``numpy.linalg.lstsq`` (singular values below ``eps * max(n, d)`` times the largest are dropped).
``"eigh"``
    Only for a caller that holds a Gram-only state whose Cholesky was rejected and that cannot make a second pass:
    the minimum-norm solution from the eigendecomposition of the scaled normal equations (accuracy limited by the
    squared condition number; a warning says so).

Chunked and distributed data (the contract other modules code against)
-----------------------------------------------------------------------
::

    state = reduce(merge_states, (chunk_state(params, chunk) for chunk in chunks))
    if needs_qr(params, state):           # Cholesky would lose too many digits: one more pass over the rows
        state = reduce(merge_states, (chunk_qr_state(params, chunk) for chunk in chunks))
    result = finish(params, state)

``chunk`` is a :class:`fastopt._validation.Data`; ``params`` is ``estimator.get_params()``. A
:class:`ClosedFormState` holds plain NumPy arrays and numbers, so it pickles between processes. ``merge_states`` is
exact (up to round-off) and associative, so any split and any merge order gives the coefficients of one fit.

An incremental fit (``partial_fit``, on one machine or on Dask blocks) reads each chunk once, so it merges
``partial_state(params, chunk)`` instead::

    state = reduce(merge_states, (partial_state(params, chunk) for chunk in chunks))
    result = finish(params, state)      # Cholesky, or QR from the carried R factors: no second pass needed

For ``solver="normal"`` that state holds both the Gram statistics and the ``R`` factor of every chunk seen
(about three times the work of the Gram alone): the rows are gone by the time an ill-conditioned stream is
noticed, and carrying ``R`` lets it fall back to QR exactly as ``fit`` would.
"""
from __future__ import annotations

import os
import threading
import warnings
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from functools import lru_cache

import numpy as np
import scipy.linalg
from scipy.linalg import lapack

from fastopt import _kernels, _sparse
from fastopt._result import FitResult
from fastopt._validation import Data, is_sparse
from fastopt.exceptions import IllConditionedWarning

__all__ = [
    "SOLVERS", "ClosedFormState", "chunk_qr_state", "chunk_state", "finish", "merge_states", "needs_qr", "partial_state",
]

RCOND_CHOLESKY = 1e-4
# Rows per call of the compiled kernel; segments are fixed (not per thread) so results do not depend on the
# number of threads, and they are merged in a fixed balanced tree.
SEGMENT_ROWS = 65536
EPS = np.finfo(np.float64).eps
_PARALLEL = threading.Lock()


@dataclass
class ClosedFormState:
    """Sufficient statistics of the rows seen so far, in float64 whatever the input dtype.

    Attributes
    ----------
    n_features, n_targets : int
        ``d`` and ``k``; ``p = d + k`` below.
    dtype : str
        The input's dtype name; coefficients are returned in it.
    n_samples : int
        Rows seen (zero-weight rows included).
    weight : float
        ``W = sum_i w_i``.
    mean : ndarray of shape (p,)
        Weighted column means of ``[X, Y]``.
    gram : ndarray of shape (p, p) or None
        Centred weighted cross-products of ``[X, Y]``.
    r : ndarray of shape (p, p) or None
        Upper-triangular ``R`` with ``R^T R = gram``, from Householder QR of the centred weighted rows.
    raw_diag : ndarray of shape (d,) or None
        Uncentred weighted sums of squares of the columns of ``X`` when ``gram`` was centred after accumulation
        (sparse ``X``, see :mod:`fastopt._sparse`), for the estimate of the digits that centring cancelled;
        None when every chunk was centred before its products (dense ``X``).
    """

    n_features: int
    n_targets: int
    dtype: str
    n_samples: int
    weight: float
    mean: np.ndarray
    gram: np.ndarray | None = None
    r: np.ndarray | None = None
    raw_diag: np.ndarray | None = None


# ---------------------------------------------------------------- statistics and merges


def _block_rows(p: int) -> int:
    # About 1 MiB of centred doubles per block: resident in L2 while syrk reads it; 1024 rows measured best
    # on the benchmark shape (d = 100) against 256-4096.
    return int(np.clip(2**17 // p, 32, 1024))


@lru_cache(maxsize=1)
def _blas_controller():
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


def _n_threads() -> int:
    """Threads for the segment loop: what the BLAS is allowed (so ``threadpool_limits`` applies to us too)."""
    libs = _blas_controller().select(user_api="blas").lib_controllers
    allowed = max((lib.num_threads for lib in libs), default=1)
    return max(1, min(allowed, os.cpu_count() or 1))


class TreeMerger:
    """Merges a stream of values in a balanced binary tree, holding O(log m) values for m parts.

    A balanced tree keeps round-off growth logarithmic in the number of parts instead of linear. ``merge``
    must be associative (up to round-off): :func:`merge_states` by default.
    """

    def __init__(self, merge: Callable | None = None):
        self._merge = merge_states if merge is None else merge
        self._stack: list = []

    def push(self, value) -> None:
        level = 0
        while self._stack and self._stack[-1][0] == level:
            value = self._merge(self._stack.pop()[1], value)
            level += 1
        self._stack.append((level, value))

    def result(self):
        """The merge of every value pushed, or None when none was."""
        if not self._stack:
            return None
        value = self._stack.pop()[1]
        while self._stack:
            value = self._merge(self._stack.pop()[1], value)
        return value


def _merged_or_empty(merger: TreeMerger, data: Data, field: str) -> ClosedFormState:
    """The merged state; for a chunk without rows, a zero-weight state carrying ``field`` ("gram"/"r")."""
    state = merger.result()
    if state is None:
        d, k = data.X.shape[1], data.Y.shape[1]
        zero = np.zeros((d + k, d + k))
        state = ClosedFormState(d, k, data.X.dtype.name, 0, 0.0, np.zeros(d + k), **{field: zero})
    return state


def _gram_segment(data: Data, start: int) -> ClosedFormState:
    X, Y, sw = data.X, data.Y, data.sample_weight
    stop = min(start + SEGMENT_ROWS, X.shape[0])
    d, k = X.shape[1], Y.shape[1]
    mean, gram = np.empty(d + k), np.empty((d + k, d + k))
    weight = _kernels.gram_stats(
        X[start:stop], Y[start:stop], None if sw is None else sw[start:stop], mean, gram, _block_rows(d + k)
    )
    return ClosedFormState(d, k, X.dtype.name, stop - start, weight, mean, gram)


def chunk_state(params: dict, data: Data) -> ClosedFormState:
    """Statistics of one chunk of rows: the Gram (compiled kernel), or ``R`` factors for ``solver="qr"``.

    Large chunks are cut into segments processed by parallel threads (the kernel releases the GIL), each calling
    single-threaded BLAS, then merged exactly.
    """
    if params.get("solver") == "qr":
        return chunk_qr_state(params, data)
    if is_sparse(data.X):
        return _sparse_chunk_state(data)
    starts = range(0, data.X.shape[0], SEGMENT_ROWS)
    threads = min(_n_threads(), len(starts))
    merger = TreeMerger()
    # The BLAS thread limit is process-wide state: only one call at a time may change and restore it. A call
    # that finds another one in its parallel section runs its segments serially instead (same result).
    if threads > 1 and _PARALLEL.acquire(blocking=False):
        try:
            with _blas_controller().limit(limits=1, user_api="blas"), ThreadPoolExecutor(threads) as pool:
                for state in pool.map(lambda start: _gram_segment(data, start), starts):
                    merger.push(state)
        finally:
            _PARALLEL.release()
    else:
        for start in starts:
            merger.push(_gram_segment(data, start))
    return _checked_finite(_merged_or_empty(merger, data, "gram"))


def _sparse_chunk_state(data: Data) -> ClosedFormState:
    """:func:`chunk_state` of sparse ``X``: the compiled CSR kernel over row segments (see :mod:`fastopt._sparse`)."""
    d, k = data.X.shape[1], data.Y.shape[1]

    def segment(start, stop):
        weight, mean, gram, raw_diag = _sparse.segment_stats(data, start, stop)
        return ClosedFormState(d, k, data.X.dtype.name, stop - start, weight, mean, gram, raw_diag=raw_diag)

    merger = TreeMerger()
    for state in _sparse.map_segments(data, segment, _n_threads()):
        merger.push(state)
    return _checked_finite(_merged_or_empty(merger, data, "gram"))


def _checked_finite(state: ClosedFormState) -> ClosedFormState:
    # The estimator leaves the finiteness of X to this kernel (one pass over X fewer): a NaN or inf anywhere in
    # a weighted row, or a value whose square overflows, makes the means or the Gram non-finite.
    if not (np.isfinite(state.gram).all() and np.isfinite(state.mean).all()):
        raise ValueError(
            "Input X contains NaN or infinity, or values too large to square in float64 "
            "(the centred Gram matrix is not finite)."
        )
    return state


def _triangle(rows: np.ndarray, p: int) -> np.ndarray:
    """The (p, p) upper-triangular R of Householder QR (LAPACK geqrf) of ``rows``, zero-padded when short."""
    r = scipy.linalg.qr(rows, mode="r", overwrite_a=True, check_finite=False)[0]
    out = np.zeros((p, p))
    out[: r.shape[0]] = r[:p]
    return out


def chunk_qr_state(params: dict, data: Data) -> ClosedFormState:
    """``R`` factors of one chunk of rows: the second pass when :func:`needs_qr` rejects the Gram.

    Blocks of about 2 MiB are centred on their own weighted mean, scaled by ``sqrt(w)``, factorised, and merged
    as in :func:`merge_states`; nothing of the size of ``X`` is allocated.
    """
    X, Y, sw = data.X, data.Y, data.sample_weight
    d, k = X.shape[1], Y.shape[1]
    p = d + k
    rows = max(2 * p, 2**18 // p)
    merger = TreeMerger()
    for start in range(0, X.shape[0], rows):
        Xb = X[start : start + rows]
        Z = np.hstack([Xb.toarray() if is_sparse(Xb) else Xb, Y[start : start + rows]], dtype=np.float64)
        w = np.ones(Z.shape[0]) if sw is None else sw[start : start + rows].astype(np.float64)
        weight = float(w.sum())
        mean = (w @ Z) / weight if weight > 0 else np.zeros(p)
        Z -= mean
        Z *= np.sqrt(w)[:, None]
        merger.push(ClosedFormState(d, k, X.dtype.name, Z.shape[0], weight, mean, r=_triangle(Z, p)))
    return _merged_or_empty(merger, data, "r")


def partial_state(params: dict, data: Data) -> ClosedFormState:
    """Statistics an incremental fit keeps for one chunk: ``R`` factors, plus the Gram unless ``solver="qr"``.

    Rows seen by an incremental fit cannot be read again, so ``R`` is carried in case the merged Gram later
    proves too ill-conditioned for Cholesky (see the module docstring).
    """
    state = chunk_qr_state(params, data)
    if params.get("solver") == "qr":
        return state
    stats = chunk_state(params, data)
    return replace(state, gram=stats.gram, raw_diag=stats.raw_diag)


def merge_states(a: ClosedFormState, b: ClosedFormState) -> ClosedFormState:
    """Exact pairwise merge of two chunks' statistics (Chan, Golub & LeVeque 1979).

    ``gram = gram_a + gram_b + f delta delta^T`` and ``R`` = triangle of ``[R_a; R_b; sqrt(f) delta]``, with
    ``delta = mean_b - mean_a`` and ``f = W_a W_b / (W_a + W_b)``. The result carries the Gram if both inputs
    do, and ``R`` if both do.
    """
    if (a.n_features, a.n_targets) != (b.n_features, b.n_targets):
        raise ValueError(
            f"cannot merge statistics of {a.n_features} features x {a.n_targets} targets with "
            f"{b.n_features} x {b.n_targets}."
        )
    if (a.gram is None or b.gram is None) and (a.r is None or b.r is None):
        raise ValueError("cannot merge a Gram-only state with an R-only state: compute both chunks the same way.")
    weight = a.weight + b.weight
    dtype = np.result_type(a.dtype, b.dtype).name
    n_samples = a.n_samples + b.n_samples
    if a.weight == 0.0 or b.weight == 0.0:  # an empty or weightless chunk adds nothing: skip the arithmetic
        keep, other = (b, a) if a.weight == 0.0 else (a, b)
        gram = keep.gram if other.gram is not None else None
        r = keep.r if other.r is not None else None
        return replace(keep, dtype=dtype, n_samples=n_samples, gram=gram, r=r, raw_diag=_merged_raw_diag(a, b))
    delta = b.mean - a.mean
    f = a.weight * b.weight / weight
    gram = r = None
    if a.gram is not None and b.gram is not None:
        gram = a.gram + b.gram + f * np.outer(delta, delta)
    if a.r is not None and b.r is not None:
        r = _triangle(np.vstack([a.r, b.r, np.sqrt(f) * delta]), delta.shape[0])
    mean = a.mean + (b.weight / weight) * delta
    return ClosedFormState(a.n_features, a.n_targets, dtype, n_samples, weight, mean, gram, r, _merged_raw_diag(a, b))


def _merged_raw_diag(a: ClosedFormState, b: ClosedFormState) -> np.ndarray | None:
    """Sum of the chunks' uncentred diagonals, when either chunk was centred after accumulation (sparse)."""
    if a.raw_diag is None and b.raw_diag is None:
        return None

    def raw(s):  # a chunk centred first: its centred Gram plus W m m^T is accurate
        if s.raw_diag is not None:
            return s.raw_diag
        if s.gram is None or s.weight == 0.0:
            return np.zeros(s.n_features)
        return np.diagonal(s.gram)[: s.n_features] + s.weight * s.mean[: s.n_features] ** 2

    return raw(a) + raw(b)


# ---------------------------------------------------------------- solves


def _pow2(s: np.ndarray) -> np.ndarray:
    # Column scales rounded to powers of two: scaling is then exact, and a zero column keeps scale 1.
    return np.ldexp(1.0, np.frexp(s)[1])


def _scaled_normal_equations(params: dict, state: ClosedFormState):
    """``A v = B`` with ``A = S^-1 (G + W alpha I) S^-1``, ``B = S^-1 C``, ``coef^T = S^-1 v``."""
    d = state.n_features
    G, C = state.gram[:d, :d], state.gram[:d, d:]
    if not params["fit_intercept"]:  # uncentred moments: add back W m m^T
        G = G + state.weight * np.outer(state.mean[:d], state.mean[:d])
        C = C + state.weight * np.outer(state.mean[:d], state.mean[d:])
    scale = _pow2(np.sqrt(np.diag(G)))
    A = G / np.outer(scale, scale)
    A[np.diag_indices(d)] += state.weight * params["alpha"] / scale**2
    return A, C / scale[:, None], scale


def _result(params, state, coef_t, path, rcond, rank, singular=None) -> FitResult:
    d = state.n_features
    coef = np.ascontiguousarray(coef_t.T)
    if params["fit_intercept"]:
        intercept = state.mean[d:] - coef @ state.mean[:d]
    else:
        intercept = np.zeros(state.n_targets)
    attrs = {"solver_": path, "n_iter_": 1, "rcond_": float(rcond), "rank_": int(rank), "singular_": singular}
    return FitResult(coef.astype(state.dtype), intercept.astype(state.dtype), state, attrs)


def _cholesky(params: dict, state: ClosedFormState):
    """The Cholesky solve, or ``(None, rcond)`` when the normal equations are too ill-conditioned."""
    A, B, scale = _scaled_normal_equations(params, state)
    if not (np.all(np.isfinite(A)) and np.all(np.isfinite(B))):
        raise ValueError("the sufficient statistics overflowed float64; rescale X and y.")
    U, info = lapack.dpotrf(A, lower=0, clean=1)
    if info != 0:
        return None, 0.0
    rcond, _ = lapack.dpocon(U, np.abs(A).sum(axis=0).max())  # A is symmetric: 1-norm = max column sum
    if state.raw_diag is not None:  # a Gram centred after accumulation (sparse X): fold in the digits it lost
        rcond /= _sparse.cancellation(params, state.weight, state.gram, state.raw_diag)
    if rcond < RCOND_CHOLESKY:
        return None, rcond
    V, _ = lapack.dpotrs(U, B, lower=0)
    return _result(params, state, V / scale[:, None], "cholesky", rcond, state.n_features), rcond


def _r_system(params: dict, state: ClosedFormState):
    """``R11`` (d, d) and ``R12`` (d, k) of the least-squares problem, with intercept and ridge folded in."""
    d, p = state.n_features, state.mean.shape[0]
    R = state.r
    if not params["fit_intercept"]:  # uncentred: R^T R + W m m^T
        R = _triangle(np.vstack([R, np.sqrt(state.weight) * state.mean]), p)
    if params["alpha"] > 0:  # ridge as extra rows sqrt(W alpha) [I, 0]
        ridge = np.hstack([np.sqrt(state.weight * params["alpha"]) * np.eye(d), np.zeros((d, p - d))])
        R = _triangle(np.vstack([R, ridge]), p)
    return R[:d, :d], R[:d, d:]


def _solve_r(params: dict, state: ClosedFormState) -> FitResult:
    R11, R12 = _r_system(params, state)
    d = state.n_features
    scale = _pow2(np.linalg.norm(R11, axis=0))
    Rs = R11 / scale
    rcond, _ = lapack.dtrcon(Rs, norm="1", uplo="U", diag="N")
    cutoff = EPS * max(state.n_samples, d)
    if rcond >= cutoff:
        V = scipy.linalg.solve_triangular(Rs, R12, check_finite=False)
        return _result(params, state, V / scale[:, None], "qr", rcond, d)
    # Minimum norm in the caller's units (as numpy.linalg.lstsq), so the SVD is of the unscaled R11.
    U, s, Vt = np.linalg.svd(R11)
    keep = s > cutoff * s[0]
    rank = int(keep.sum())
    warnings.warn(
        f"The design is rank-deficient to working precision (rank {rank} of {d}): "
        "returning the minimum-norm least-squares solution (solver_='svd').",
        IllConditionedWarning,
        stacklevel=4,
    )
    coef_t = Vt[keep].T @ ((U[:, keep].T @ R12) / s[keep, None])
    return _result(params, state, coef_t, "svd", rcond, rank, singular=s)


def _solve_eigh(params: dict, state: ClosedFormState) -> FitResult:
    A, B, scale = _scaled_normal_equations(params, state)
    lam, Q = np.linalg.eigh(A)
    # The Gram carries absolute errors of about eps * ||A||: smaller eigenvalues are not resolved.
    keep = lam > EPS * max(state.n_samples, state.n_features) * lam[-1]
    V = Q[:, keep] @ ((Q[:, keep].T @ B) / lam[keep, None])
    rcond = max(lam[0], 0.0) / lam[-1] if lam[-1] > 0 else 0.0
    return _result(params, state, V / scale[:, None], "eigh", rcond, int(keep.sum()))


def _warn_switch(rcond: float, to: str) -> None:
    warnings.warn(
        f"The normal equations are ill-conditioned (reciprocal condition {rcond:.1e} < {RCOND_CHOLESKY:.0e}, "
        f"so Cholesky would lose more than 4 of float64's 16 digits): switching to {to}.",
        IllConditionedWarning,
        stacklevel=4,
    )


def needs_qr(params: dict, state: ClosedFormState) -> bool:
    """Whether ``state`` needs a second pass (:func:`chunk_qr_state`) for an accurate solve."""
    return state.r is None and _cholesky(params, state)[0] is None


def finish(params: dict, state: ClosedFormState) -> FitResult:
    """Solve from merged statistics: Cholesky when well-conditioned, else the ``R`` factor (QR or SVD path).

    Parameters
    ----------
    params : dict
        ``estimator.get_params()``; uses ``fit_intercept`` and ``alpha``.
    state : ClosedFormState

    Returns
    -------
    FitResult
        ``coef`` (k, d) and ``intercept`` (k,) in the input dtype; ``attrs``: ``solver_``, ``n_iter_`` (1),
        ``rcond_`` (LAPACK estimate for the column-scaled matrix factorised), ``rank_``, ``singular_`` (singular
        values of the centred weighted design on the SVD path, else None).
    """
    if state.gram is not None:
        result, rcond = _cholesky(params, state)
        if result is not None:
            return result
        if state.r is None:
            how = "a minimum-norm eigensolve (solver_='eigh'); a chunk_qr_state pass would keep full accuracy"
            _warn_switch(rcond, how)
            return _solve_eigh(params, state)
        _warn_switch(rcond, "QR of the centred data (solver_='qr')")
    return _solve_r(params, state)


# ---------------------------------------------------------------- registry entries


class _ClosedForm:
    """A registry entry: ``stable=False`` is ``solver="normal"``, ``stable=True`` is ``solver="qr"``."""

    losses = frozenset({"squared_error"})
    # Sparse X: the Gram from the compiled CSR kernel (fastopt._sparse), QR from densified row blocks.
    supports_sparse = True

    def __init__(self, stable: bool):
        self.stable = stable

    def checks_finite_X(self, params: dict) -> bool:
        """The Gram kernel reports non-finite X itself (see chunk_state); the QR path relies on validation."""
        return not self.stable

    def fit(self, params: dict, data: Data, state=None) -> FitResult:
        """One pass for the statistics; a second (QR) pass over ``data.X`` only if Cholesky is rejected."""
        if self.stable:
            return finish(params, chunk_qr_state(params, data))
        stats = chunk_state(params, data)
        result, rcond = _cholesky(params, stats)
        if result is None:
            _warn_switch(rcond, "QR of the centred data (solver_='qr')")
            result = _solve_r(params, replace(stats, r=chunk_qr_state(params, data).r))
        return result

    def partial_fit(self, params: dict, data: Data, state=None) -> FitResult:
        """Merge this chunk's statistics (with ``R`` factors, see the module docstring) and solve."""
        chunk = partial_state(params, data)
        return finish(params, chunk if state is None else merge_states(state, chunk))


SOLVERS = {"normal": _ClosedForm(stable=False), "qr": _ClosedForm(stable=True)}
