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
    of two (exact), Cholesky (LAPACK ``potrf``) and its reciprocal condition estimate. Accepted only when
    ``rcond >= RCOND_CHOLESKY = 1e-4``: the normal equations square the design's condition number, so this bound
    keeps their error below about ``1e4 * eps``, i.e. 12 or more correct digits in float64. The estimate is
    LAPACK's 1-norm one (``pocon``); where that fails the test but is within the factor ``d`` by which the 1-norm
    condition number can exceed the 2-norm one (which bounds the error), a 2-norm estimate by block Lanczos
    (:func:`_two_norm_rcond`), halved for its margin, decides instead.
``"qr"``
    Householder QR of the centred, weighted, augmented matrix ``[X, Y]``, computed blockwise as a tall-skinny QR
    (Demmel, Grigori, Hoemmen & Langou, *Communication-optimal parallel and sequential QR and LU factorizations*,
    SIAM J. Sci. Comput. 34, 2012) by the compiled kernel :func:`fastopt._kernels.tsqr_stats`: each block of
    rows is centred on its own mean and folded into the running ``R`` with LAPACK ``dtpqrt`` together with the
    row ``sqrt(W_a W_b / (W_a + W_b)) (mean_b - mean_a)``, the square-root form of the pairwise moment update;
    segments' ``R`` merge the same way. ``R = [[R11, R12], [0, R22]]`` and ``R11 coef^T = R12``: the condition
    number is not squared.
``"svd"``
    When the column-scaled ``R11`` is rank-deficient to working precision (reciprocal condition below
    ``eps * max(n, d)``): the SVD of the ``d x d`` column-scaled ``R11`` (never of ``X``: ``R`` has the singular
    values and right singular vectors of the centred design) gives the numerical range, with the cutoff of
    ``numpy.linalg.lstsq`` (singular values below ``eps * max(n, d)`` times the largest are dropped) applied to
    the scaled singular values, so that the columns' units do not decide the rank; on that range, the
    minimum-norm solution in the caller's units (as ``numpy.linalg.lstsq``'s, which equals it wherever the
    unscaled cutoff finds the same range). For float32 input the cutoff is at least that input's own rounding,
    ``eps32 (1 + sqrt(d / n))`` (:func:`_rank_cutoff`; the pivoted and eigen paths judge by the same). The answer
    is qualified, so this path warns :class:`~fastopt.exceptions.RankDeficientWarning`.
``"pivoted_cholesky"``
    When Cholesky is rejected because columns are exactly dependent once centred (one-hot columns with an
    intercept, a constant column such as ``PolynomialFeatures``' bias) while the rest is well-conditioned: a
    pivoted Cholesky factorisation of the same scaled normal equations (LAPACK ``pstrf``) proposes the kept
    columns and a null space, and one pass over ``X`` costing ``O(n d)`` per null direction confirms that the
    design's singular values in that null space lie below the cutoff of ``numpy.linalg.lstsq``
    (:func:`pivoted`); the basic solution on the kept columns less its null-space component is the minimum-norm
    solution. The kept columns' normal equations must pass the ``"cholesky"`` test, so the accuracy is that
    path's; where they fail it (which columns ``pstrf`` keeps decides their condition: the centred one-hot columns
    of a category without a frequent level are nearly dependent), the normal equations with the confirmed null
    space lifted (below) take their place, whose condition is the design's nonzero spectrum's, under the same
    test. Columns that are zero in every row are null without a pass. A small ridge on such columns (whose own
    normal equations Cholesky rejects: their condition number grows as ``1 / alpha`` along the null space) takes
    the same path with the null space lifted, since the exact ridge solution has no component in it. One alpha
    per target takes it target by target (:func:`_pivoted_per_target`; ``fit`` and ``partial_fit`` in memory).
    Anything else (a null space the pass refutes, constraints) goes on to QR. ``fit``,
    ``fit_stream`` of a stream that can be read again, and Dask fits (the pass on the workers) take it; without a
    ridge it warns :class:`~fastopt.exceptions.RankDeficientWarning` as ``"svd"`` does.
``"kernel_cholesky"``
    Dense ``X`` in memory (``fit``) with fewer rows of positive weight than columns, without constraints: the
    ``m x m`` system of the centred, weighted rows (the kernel or dual form, as scikit-learn's ``Ridge`` solves it
    there; :func:`kernel_fit`), under the ``"cholesky"`` test. Without a ridge it gives the minimum-norm solution and
    warns :class:`~fastopt.exceptions.RankDeficientWarning` as ``"svd"`` does; where its Cholesky is rejected, the
    paths above run.
``"eigh"``
    Only for a caller that holds a Gram-only state whose Cholesky was rejected and that cannot make a second pass:
    the minimum-norm solution (in the caller's units, as ``numpy.linalg.lstsq``) from the eigendecomposition of
    the scaled normal equations (accuracy limited by the squared condition number;
    :class:`~fastopt.exceptions.IllConditionedWarning` says so).

Leaving Cholesky for QR loses no accuracy and is not warned about (``solver_``, ``rcond_`` and ``rank_`` report
it); at most one warning is raised per solve, and only when the answer itself is qualified (``"svd"``,
``"pivoted_cholesky"``, ``"eigh"``).

A fit from memory of at most :data:`REFINE_MAX_ENTRIES` float64 entries then takes one step of iterative
refinement with its residual computed in twice the working precision (:func:`_refined`): on such sizes the extra
read of ``X`` costs little, and it brings the coefficients to within a few ulps of the exact least-squares answer
whenever the problem's conditioning allows it.

A fit from memory first probes the conditioning (:func:`probe_needs_qr`): the Gram of a few thousand rows spread
evenly through ``X``. If Cholesky already rejects that sample, and the pivoted path too (its pass then reads the
sample's rows only), the fit goes straight to QR instead of paying for a Gram pass it would discard; otherwise the
full Gram decides as before. The probe reads at most 1/32 of the rows.

Chunked and distributed data (the contract other modules code against)
-----------------------------------------------------------------------
::

    state = reduce(merge_states, (chunk_state(params, chunk) for chunk in chunks))
    result = None
    if needs_qr(params, state):           # Cholesky would lose too many digits: one more pass over the rows
        m, e = state.mean[:state.n_features], state.weight_exp
        result = pivoted(params, state, lambda Q: sum(null_squares(params, m, e, chunk, Q) for chunk in chunks))
        if result is None:                # not exactly dependent columns: the QR pass
            state = reduce(merge_states, (chunk_qr_state(params, chunk) for chunk in chunks))
    result = result or finish(params, state)

``chunk`` is a :class:`fastopt._validation.Data`; ``params`` is ``estimator.get_params()``. A
:class:`ClosedFormState` holds plain NumPy arrays and numbers, so it pickles between processes. ``merge_states`` is
exact (up to round-off) and associative, so any split and any merge order gives the coefficients of one fit.

An incremental fit (``partial_fit``, on one machine or on Dask blocks) reads each chunk once, so it merges
``partial_state(params, chunk)`` instead::

    state = reduce(merge_states, (partial_state(params, chunk) for chunk in chunks))
    result = finish(params, state)      # Cholesky, or QR from the carried R factors: no second pass needed

For ``solver="normal"`` that state holds both the Gram statistics and the ``R`` factor of every chunk seen
(about three times the work of the Gram alone): the rows are gone by the time an ill-conditioned stream is
noticed, and carrying ``R`` lets it fall back to QR exactly as ``fit`` would. A ``partial_fit`` that continues a
state without ``R`` (a fit's Gram: :func:`gram_only`) computes a chunk's Gram alone, since its ``R`` could not
be merged.
"""
from __future__ import annotations

import collections
import contextvars
import itertools
import math
import os
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from functools import lru_cache, partial

import numpy as np
from scipy.linalg import lapack

from fastopt import _kernels, _serial_blas, _sparse
from fastopt._interrupts import WAIT_POLL, uninterrupted, wait_get
from fastopt._result import FitResult, Solver
from fastopt._validation import Data, is_sparse, refuse_nonfinite, refuse_nonfinite_data
from fastopt.exceptions import IllConditionedWarning, RankDeficientWarning, _warn

__all__ = [
    "SOLVERS", "ClosedFormState", "chunk_qr_state", "chunk_state", "finish", "merge_states", "needs_qr",
    "null_squares", "partial_state", "pivoted", "pivoted_after", "pivoted_any", "probe_needs_qr",
]

RCOND_CHOLESKY = 1e-4
# Rows per call of the compiled kernel, at most: segments depend on n alone (not on the thread count), so results do
# not depend on the number of threads, and they are merged in a fixed balanced tree.
SEGMENT_ROWS = 65536
# More than one segment: a multiple of this many, of equal length, so 1, 2 or 4 threads get equal shares. (Fixed
# 65,536-row segments left 200,000 rows as 3 full segments and a 3,392-row one: one of two threads did two full
# segments, 31% more than half the rows.)
SEGMENT_MULTIPLE = 4
# Values of a sparse X's row block densified at a time for its QR (_sparse_qr_state; at least 2 p rows): 32 MiB.
# Blocks of 2 MiB (787 rows at p = 334) made the R merges, one per block, a third of a 50,000-row fit's 5.8 s,
# and ran on one thread.
SPARSE_QR_VALUES = 2**22
EPS = np.finfo(np.float64).eps
# The conditioning probe of a fit from memory: at least this many rows, in this many evenly spaced slices.
PROBE_MIN_ROWS = 2048
PROBE_PARTS = 8
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
    weight_exp : int
        The weights were divided by ``2 ** weight_exp`` (even, so ``R`` scales by an exact power of two too):
        ``weight``, ``gram`` and ``R^T R`` are those of the scaled weights. Weights are relative, so the solve
        ignores this; merging aligns two states on the larger exponent. It keeps the sums finite and normal for
        any finite weights (all 1e306, or all 1e-300).
    null : tuple or None
        Set by the pivoted path (:func:`pivoted`) on the state it solved: ``(Q, squares)``, an orthonormal basis
        ``Q`` (d, d - rank) of the null space it confirmed and the bound ``squares >= ||W^1/2 X_c Q||_F^2`` over
        the rows seen, in this state's weight units, so that ``partial_fit`` can confirm the next null space
        without those rows (:func:`pivoted_after`). None otherwise; a merge drops it.
    rows : ndarray of shape (m, p) or None
        Set by the kernel form (:func:`kernel_fit`, which forms neither ``gram`` nor ``r``): the centred rows of
        ``[X, Y]`` of positive weight, each scaled by the square root of its weight, so ``rows^T rows = gram``.
        ``partial_fit`` and merges first triangularise them into ``r`` (:func:`with_r`).
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
    weight_exp: int = 0
    null: tuple | None = None
    rows: np.ndarray | None = None


def with_r(state):
    """``state`` with the rows a kernel-form fit kept (:attr:`ClosedFormState.rows`) triangularised into ``r``
    (Householder QR, :func:`_triangle`), so that it merges like any ``R`` state; other states as they are."""
    if not isinstance(state, ClosedFormState) or state.rows is None:
        return state
    return replace(state, r=_triangle(state.rows, state.mean.shape[0]), rows=None)


# ---------------------------------------------------------------- statistics and merges


def _block_rows(p: int) -> int:
    # 1024 rows per block measured best on the benchmark shape (d = 100) against 256-4096. Wide rows keep long
    # syrk panels instead of fitting a block into L2: at d = 2,000 a block of 65 rows (1 MiB) ran the Gram pass
    # at 2.3x one BLAS X^T X with two threads, blocks of 1024 rows at 1.2x (syrk's cost grows as p^2 per row,
    # the traffic of a block that misses L2 only as p). Above p = 1024, blocks of min(p, 2048) rows: each syrk
    # call reads and writes the whole p x p result (3.2 GB a pass at 50,000 x 2,000 in 1024-row blocks), so
    # halving the calls took that fit from 2.48 to 2.32 s (X^T X 2.05 s; 20,000 x 4,000 3.98 -> 3.76 s). The
    # workspace is then at most the size of the Gram itself, below the solve's peak (the Gram and its scaled copy).
    return 1024 if p <= 1024 else min(p, 2048)


def _qr_block_rows(p: int) -> int:
    # Rows per dtpqrt call: 1024 measured best against 512-4096 for p = 100-220 (single-threaded OpenBLAS, where
    # the fold costs about 2.6x a syrk of the same rows); at least 256 rows so wide blocks still amortise T.
    return int(np.clip(2**18 // p, 256, 1024))


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

    def extend(self, values: Iterable) -> None:
        """:meth:`push` each of ``values``, none held once pushed (a merged-away input is freed at once)."""
        for value in values:
            self.push(value)
            del value  # (the loop variable would hold it while the next value is computed)

    def result(self):
        """The merge of every value pushed, or None when none was."""
        if not self._stack:
            return None
        value = self._stack.pop()[1]
        while self._stack:
            value = self._merge(self._stack.pop()[1], value)
        return value


# Work (rows times columns squared, or its sparse counterpart) from which a closed-form pass called on the main
# thread runs on a worker thread (_stoppable): there Ctrl-C, which Python delivers to the main thread only, is
# seen while the compiled kernels run. Below it a pass takes tens of milliseconds at most, and a thread's start
# and join (about 0.3 ms with the waits) would be a visible share of it (5-8% of a 20,000 x 60 fit at 2^26).
STOPPABLE_WORK = 2**28


def _stoppable(run: Callable[[np.ndarray], object], work: float):
    """``run(halt)``, whose compiled kernels read the stop flag ``halt`` (made here), made interruptible by Ctrl-C.

    A kernel runs without the GIL, and Python only handles a signal on the main thread between bytecodes: a
    segment of a wide QR on the main thread held Ctrl-C for a minute (60,000 x 1,500). So on the main thread,
    for ``work`` of at least :data:`STOPPABLE_WORK`, ``run`` goes to a worker thread while the main thread waits
    for it; ``KeyboardInterrupt`` there sets ``halt``, which every kernel of the pass reads between blocks of
    bounded work (a block of rows), waits for the worker to stop and is raised again. The same calls in the same
    order: the same results either way. The worker runs in a copy of the caller's context (NumPy's error state).
    """
    halt = np.zeros(1, dtype=np.int32)
    if work < STOPPABLE_WORK or threading.current_thread() is not threading.main_thread():
        return run(halt)
    outcome: queue.SimpleQueue = queue.SimpleQueue()
    context = contextvars.copy_context()

    def target():
        try:
            result = (context.run(run, halt), None)
        except BaseException as exc:  # (re-raised on the calling thread)
            result = (None, exc)
        outcome.put(result)

    worker = threading.Thread(target=target, name="fastopt-closed-form", daemon=True)
    # Started inside the try: a Ctrl-C in start() (which waits for the thread to run) must set halt too, or the
    # pass ran on to its end beside the caller. Its outcome waited for as _interrupts says (join() and Event
    # waits interrupted by Ctrl-C broke; found by raising KeyboardInterrupt at random instants of hundreds of fits).
    try:
        worker.start()
        value, exc = wait_get(outcome)
    except BaseException:
        uninterrupted(lambda: _stop_worker(halt, worker, outcome))
        raise
    worker.join()
    if exc is not None:
        raise exc
    return value


def _stop_worker(halt: np.ndarray, worker: threading.Thread, outcome: queue.SimpleQueue) -> None:
    """Set ``halt`` and wait for :func:`_stoppable`'s worker, whose kernels stop at their next block. A Ctrl-C
    inside ``start()`` may have come before the thread was launched: then nothing comes, and it is not alive a
    second later."""
    halt[0] = 1
    deadline = time.monotonic() + 1.0
    while True:
        try:
            outcome.get(timeout=WAIT_POLL)
            return
        except queue.Empty:
            if not worker.is_alive() and time.monotonic() > deadline:
                return


def _ordered_map(fn: Callable, items: Iterable, threads: int, halt: np.ndarray | None = None) -> Iterator:
    """``fn(item)`` for each item, yielded in order, computed on up to ``threads`` threads.

    At most ``threads`` calls are submitted and not yet yielded, so the results that wait for the caller stay
    few: with segment Grams merged as they arrive (:class:`TreeMerger`), a fit holds O(threads + log m) Grams for
    m segments instead of all m. The next call is submitted before a result is yielded, so the threads stay busy
    while the caller merges it. With ``halt`` (the compiled kernels' stop flag, which ``fn`` passes them), a caller
    that stops early also stops the calls already running, at their next block, instead of waiting for them.
    """
    items = list(items)
    if threads <= 1 or len(items) <= 1:
        for item in items:
            yield fn(item)
        return
    with ThreadPoolExecutor(min(threads, len(items))) as pool:
        pending = collections.deque(pool.submit(fn, item) for item in items[:threads])
        following = iter(items[threads:])
        try:
            while pending:
                result = pending.popleft().result()
                for item in itertools.islice(following, 1):
                    pending.append(pool.submit(fn, item))
                yield result
                result = None  # not held while the next one is computed
        finally:  # the caller stopped early (an error, Ctrl-C): start nothing more, stop the calls running
            for future in pending:
                future.cancel()
            if pending and halt is not None:
                halt[0] = 1


def _merged_or_empty(merger: TreeMerger, data: Data, field: str) -> ClosedFormState:
    """The merged state; for a chunk without rows, a zero-weight state carrying ``field`` ("gram"/"r")."""
    state = merger.result()
    if state is None:
        d, k = data.X.shape[1], data.Y.shape[1]
        zero = np.zeros((d + k, d + k))
        state = ClosedFormState(d, k, data.X.dtype.name, 0, 0.0, np.zeros(d + k), **{field: zero})
    return state


def _weight_exponent(sample_weight: np.ndarray | None) -> int:
    """The even exponent ``e`` with ``max(sample_weight) / 2**e`` in [1/4, 1) (0 without weights)."""
    if sample_weight is None or sample_weight.shape[0] == 0:
        return 0
    top = float(np.max(sample_weight))
    if top == 0.0:
        return 0
    e = int(np.frexp(top)[1])
    return e + (e & 1)


def _normalised(data: Data) -> tuple[Data, int]:
    """``data`` with its weights divided by ``2**e`` (exact) and ``e`` (:attr:`ClosedFormState.weight_exp`),
    after checking that the arrays agree in length (a public entry: a short ``sample_weight`` must not be
    read past its end)."""
    X, Y, sw = data.X, data.Y, data.sample_weight
    if X.ndim != 2 or Y.ndim != 2 or Y.shape[0] != X.shape[0] or (sw is not None and sw.shape != (X.shape[0],)):
        raise ValueError(
            f"inconsistent chunk: X has shape {X.shape}, Y {Y.shape}, sample_weight "
            f"{None if sw is None else sw.shape}; expected (n, d), (n, k) and (n,)."
        )
    e = _weight_exponent(sw)
    if e == 0:
        return data, 0
    return replace(data, sample_weight=np.ldexp(sw, -e).astype(sw.dtype, copy=False)), e


def segment_bounds(n: int) -> list[tuple[int, int]]:
    """Row ranges ``[start, stop)`` of the segments of ``n`` rows: at most ``SEGMENT_ROWS`` rows each, of equal
    length (to a row), their count 1 or a multiple of ``SEGMENT_MULTIPLE``; they depend on ``n`` alone."""
    count = -(-n // SEGMENT_ROWS)
    if count > 1:
        count = min(-(-count // SEGMENT_MULTIPLE) * SEGMENT_MULTIPLE, n)
    count = max(count, 1)
    edges = [n * i // count for i in range(count + 1)]
    return list(itertools.pairwise(edges))


def _segment(kernel, field: str, block_rows: Callable[[int], int], data: Data, start: int,
             stop: int | None = None, serial: bool = False, halt: np.ndarray | None = None) -> ClosedFormState:
    """The statistics ``field`` ("gram" or "r") of rows ``[start, stop)`` (default: to the end) by a compiled
    kernel; ``serial``: through the private single-threaded BLAS (:mod:`fastopt._serial_blas`); ``halt``: the
    kernel's stop flag (:func:`_stoppable`)."""
    X, Y, sw = data.X, data.Y, data.sample_weight
    stop = X.shape[0] if stop is None else stop
    d, k = X.shape[1], Y.shape[1]
    mean, out = np.empty(d + k), np.empty((d + k, d + k))
    # (a block of at most the segment's rows: the same single block, in a workspace no larger than it needs)
    rows = max(1, min(block_rows(d + k), stop - start))
    weight = kernel(X[start:stop], Y[start:stop], None if sw is None else sw[start:stop], mean, out, rows,
                    serial=serial, stop=halt)
    return ClosedFormState(d, k, X.dtype.name, stop - start, weight, mean, **{field: out})


def normalised_weights(data: Data) -> Data:
    """``data`` with its (relative) weights divided by a power of two near their maximum: sums stay finite."""
    return _normalised(data)[0]


def _gram_segment(data: Data, start: int = 0, stop: int | None = None, serial: bool = False,
                  halt: np.ndarray | None = None) -> ClosedFormState:
    return _segment(_kernels.gram_stats, "gram", _block_rows, data, start, stop, serial, halt)


def _qr_segment(data: Data, start: int = 0, stop: int | None = None, serial: bool = False,
                halt: np.ndarray | None = None) -> ClosedFormState:
    return _segment(_kernels.tsqr_stats, "r", _qr_block_rows, data, start, stop, serial, halt)


def _over_segments(data: Data, segment: Callable[..., ClosedFormState], field: str,
                   bounds: list[tuple[int, int]] | None = None) -> ClosedFormState:
    """``segment`` of every segment (``bounds``, by default :func:`segment_bounds`), on parallel threads, merged
    in a fixed balanced tree.

    The kernels release the GIL; each thread calls single-threaded BLAS/LAPACK: a private instance of it
    (:mod:`fastopt._serial_blas`), so the process's BLAS settings are never touched; where that cannot be
    loaded, the process-wide BLAS limited to one thread for the duration of the section. Segments and merge
    order do not depend on the thread count, so neither do the results. Ctrl-C stops the kernels at their next
    block (:func:`_stoppable`).
    """
    bounds = segment_bounds(data.X.shape[0]) if bounds is None else bounds
    work = float(data.X.shape[0]) * (data.X.shape[1] + data.Y.shape[1]) ** 2
    return _stoppable(lambda halt: _merged_segments(data, partial(segment, halt=halt), field, bounds, halt), work)


def _merged_segments(data: Data, segment: Callable[..., ClosedFormState], field: str,
                     bounds: list[tuple[int, int]], halt: np.ndarray) -> ClosedFormState:
    """:func:`_over_segments`' work, ``segment`` passing the kernels ``halt``."""
    threads = min(_n_threads(), len(bounds))
    merger = TreeMerger(_merge_owned)
    if threads > 1 and _serial_blas.tables() is not None:
        # Merged as the segments arrive (O(threads + log m) states held, not m), unless the merges are R merges
        # through the process's multi-threaded BLAS (p beyond _tail_serial's), whose threads, started beside the
        # segment threads, made the 10^6 x 100 QR pass 2-6x slower: those wait for the segments. A Gram merge is
        # NumPy's, and a narrower R merge calls the private one-thread LAPACK, as the segments do.
        if field == "gram" or _tail_serial(data.X.shape[1] + data.Y.shape[1]):
            merger.extend(_ordered_map(lambda bound: segment(data, *bound, serial=True), bounds, threads, halt))
        else:
            with ThreadPoolExecutor(threads) as pool:
                states = list(pool.map(lambda bound: segment(data, *bound, serial=True), bounds))
            states.reverse()
            while states:  # (each freed once merged)
                merger.push(states.pop())
        return _merged_or_empty(merger, data, field)
    # Fallback: the BLAS thread limit is process-wide state, so only one call at a time may change and restore
    # it. A call that finds another one in its parallel section runs its segments serially instead, on the
    # process's BLAS at whatever thread count it has then: the same bits only when that is one (README,
    # "Bits and the process's BLAS threads").
    if threads > 1 and _PARALLEL.acquire(blocking=False):
        try:
            with _blas_controller().limit(limits=1, user_api="blas"):
                merger.extend(_ordered_map(lambda bound: segment(data, *bound), bounds, threads, halt))
        finally:
            _PARALLEL.release()
    else:
        # One segment, or one thread allowed: the private one-thread LAPACK up to the tail's width. The process's
        # two-thread OpenBLAS on each block's small factorisation gained nothing, and with the cores busy its
        # threads' hand-offs made a 6,553 x 9 QR fit take 140 ms instead of 0.5 ms (measured).
        serial = _tail_serial(data.X.shape[1] + data.Y.shape[1])
        merger.extend(segment(data, *bound, serial=serial) for bound in bounds)
    return _merged_or_empty(merger, data, field)


def _stable(params: dict) -> bool:
    """Whether ``params`` name the registry entry that always factorises by QR (``solver="qr"``)."""
    return getattr(SOLVERS.get(params.get("solver")), "stable", False)


def chunk_state(params: dict, data: Data) -> ClosedFormState:
    """Statistics of one chunk of rows: the Gram (compiled kernel), or ``R`` factors for ``solver="qr"``.

    Large chunks are cut into segments processed by parallel threads (the kernel releases the GIL), each calling
    single-threaded BLAS, then merged exactly.
    """
    if _stable(params):
        return chunk_qr_state(params, data)
    data, weight_exp = _normalised(data)
    if is_sparse(data.X):
        return replace(_sparse_chunk_state(data), weight_exp=weight_exp)
    return replace(_checked_finite(_over_segments(data, _gram_segment, "gram"), data), weight_exp=weight_exp)


def _sparse_chunk_state(data: Data) -> ClosedFormState:
    """:func:`chunk_state` of sparse ``X``: the compiled CSR kernel over row segments (see :mod:`fastopt._sparse`)."""
    d, k = data.X.shape[1], data.Y.shape[1]
    threads, bounds = _n_threads(), _sparse.segments(data)
    _sparse.check_gram_fits(d, k, min(threads, len(bounds)), len(bounds))

    def segment(start, stop, halt):
        weight, mean, gram, raw_diag = _sparse.segment_stats(data, start, stop, halt)
        return ClosedFormState(d, k, data.X.dtype.name, stop - start, weight, mean, gram, raw_diag=raw_diag)

    def merged(halt):
        merger = TreeMerger(_merge_owned)
        merger.extend(_ordered_map(lambda bound: segment(*bound, halt), bounds, threads, halt))
        return _merged_or_empty(merger, data, "gram")

    n, nnz = data.X.shape[0], data.X.nnz
    work = float(nnz) * max(1.0, nnz / max(n, 1)) + float(d + k) ** 2 * len(bounds)  # row products, merges
    return _checked_finite(_stoppable(merged, work), data)


def _checked_finite(state: ClosedFormState, data: Data) -> ClosedFormState:
    # The estimator leaves the finiteness of X to this kernel (one pass over X fewer): a NaN or inf anywhere in
    # a weighted row makes the means or the Gram non-finite. (Finite values too large to square are left to
    # scale_trouble: fit rescales them, the incremental paths name the argument.)
    if not (np.isfinite(state.gram).all() and np.isfinite(state.mean).all()):
        refuse_nonfinite("X", data.X)  # validation's words: which of NaN or infinity
    return state


# Widest problem whose d x d work runs on the private one-thread LAPACK. Above it that work (d^3 flops) gains more
# from the process's two threads than the spinning worker costs (50,000 x 2,000: 2.37 s one-thread tail against
# 2.28 s, measured).
TAIL_SERIAL_MAX_D = 1024


def _tail_serial(p: int) -> bool:
    """Whether the fit's tail (R merges, the d x d Cholesky, the probe's sample Gram) for ``p`` columns calls the
    private single-threaded LAPACK.

    The process's multi-threaded OpenBLAS would leave its worker threads spinning (about 0.1 s) beside the next
    fit's segment threads: back-to-back fits were 25% slower than isolated ones. Same code, same results.
    """
    return p <= TAIL_SERIAL_MAX_D and _serial_blas.tables() is not None


# Widest pivoted factorisation (LAPACK dpstrf) left to the process's threaded LAPACK: its blocked update calls the
# threaded dsyrk on the trailing columns, which in SciPy's bundled OpenBLAS (0.3.30, two threads) crashed the
# process (SIGSEGV) from about 15,500 output columns at inner dimensions of 256-2,048 (fastopt/_kernels_tail.pxi;
# dpstrf itself, inner 64, ran at 16,384 columns: 79 s). Wider, the private one-thread LAPACK, whose dsyrk is not
# the threaded one (where it cannot load, the threaded call remains).
PSTRF_THREADED_MAX_D = 8192


def _pstrf_serial(m: int) -> bool:
    """Whether the pivoted path's ``dpstrf`` on ``m`` columns calls the private single-threaded LAPACK."""
    return _tail_serial(m) or (m > PSTRF_THREADED_MAX_D and _serial_blas.tables() is not None)


def _triangle(rows: np.ndarray | list, p: int) -> np.ndarray:
    """The (p, p) upper-triangular R of Householder QR (LAPACK geqrf) of ``rows``, zero-padded when short.

    ``rows`` may be a list of row blocks (a 1-D block is one row), copied straight into the Fortran-ordered array
    that LAPACK factorises in place: stacking them first and then copying to Fortran order held both copies.
    """
    if isinstance(rows, np.ndarray):
        a = np.asfortranarray(rows, dtype=np.float64)
        if a is rows:
            a = a.copy(order="F")
    else:
        blocks = [np.atleast_2d(block) for block in rows]
        a = np.empty((sum(block.shape[0] for block in blocks), blocks[0].shape[1]), order="F")
        top = 0
        for block in blocks:
            a[top : top + block.shape[0]] = block
            top += block.shape[0]
    info = _kernels.geqrf_inplace(a, serial=_tail_serial(p))
    if info != 0:
        raise ValueError(f"LAPACK dgeqrf rejected its arguments (info {info})")
    k = min(a.shape[0], p)
    if k == p:
        return np.triu(a[:p, :p])  # a new C-ordered array
    out = np.zeros((p, p))
    out[:k] = np.triu(a[:k, :p])
    return out


def chunk_qr_state(params: dict, data: Data) -> ClosedFormState:
    """``R`` factors of one chunk of rows: the compiled tall-skinny QR (:func:`fastopt._kernels.tsqr_stats`).

    Fixed segments of rows run on parallel threads, each folding blocks of rows (centred on their own weighted
    mean and scaled by ``sqrt(w)`` in cache, with one mean-correction row) into its ``R`` with LAPACK
    ``dtpqrt``; segment ``R`` factors merge as in :func:`merge_states`. Nothing of the size of ``X`` is allocated.
    """
    data, weight_exp = _normalised(data)
    if is_sparse(data.X):
        return replace(_sparse_qr_state(data), weight_exp=weight_exp)
    return replace(_over_segments(data, _qr_segment, "r"), weight_exp=weight_exp)


def _sparse_qr_state(data: Data) -> ClosedFormState:
    """:func:`chunk_qr_state` of sparse ``X``: row blocks of at most ``SPARSE_QR_VALUES`` values (at least ``2 p``
    rows) densified, each through the compiled QR, on parallel threads as :func:`_over_segments`' segments (up to
    the tail's width, whose R merges call the private one-thread LAPACK; wider, one block at a time, so that the
    blocks' R factors are merged as they come)."""
    X, Y, sw = data.X, data.Y, data.sample_weight
    n, p = X.shape[0], X.shape[1] + Y.shape[1]
    rows = min(SEGMENT_ROWS, max(2 * p, SPARSE_QR_VALUES // p))
    bounds = [(start, min(start + rows, n)) for start in range(0, n, rows)]
    threads = min(_n_threads(), len(bounds)) if _tail_serial(p) else 1
    _sparse.check_qr_fits(X.shape[1], Y.shape[1], min(rows, n), threads, len(bounds))

    def segment(data: Data, start: int, stop: int, serial: bool = False,
                halt: np.ndarray | None = None) -> ClosedFormState:
        block = Data(X=np.ascontiguousarray(X[start:stop].toarray()), Y=Y[start:stop],
                     sample_weight=None if sw is None else sw[start:stop], y_was_1d=data.y_was_1d)
        return _qr_segment(block, 0, None, serial, halt)

    if _tail_serial(p):
        return _over_segments(data, segment, "r", bounds)
    def merged(halt):
        merger = TreeMerger(_merge_owned)
        merger.extend(segment(data, *bound, halt=halt) for bound in bounds)
        return _merged_or_empty(merger, data, "r")

    return _stoppable(merged, float(n) * p * p)


def partial_state(params: dict, data: Data) -> ClosedFormState:
    """Statistics an incremental fit keeps for one chunk: ``R`` factors, plus the Gram unless ``solver="qr"``.

    Rows seen by an incremental fit cannot be read again, so ``R`` is carried in case the merged Gram later
    proves too ill-conditioned for Cholesky (see the module docstring). Not for sparse ``X`` with
    ``solver="normal"``: ``R`` comes from densified rows, O(n p^2) work against the Gram's O(sum_i nnz_i^2)
    (20,000 times more for d = 1,000 and 10 nonzeros a row), so the Gram alone is kept and an ill-conditioned
    sparse stream ends in the warned eigensolve; ``solver="qr"`` keeps ``R`` when full accuracy is needed.
    """
    if is_sparse(data.X) and not _stable(params):
        return chunk_state(params, data)
    state = chunk_qr_state(params, data)
    if _stable(params):
        return state
    # The mean computed with the Gram: the pairwise merges of the Gram are then exactly those of a fit.
    return replace(chunk_state(params, data), r=state.r)


def gram_only(state) -> bool:
    """Whether ``state`` (or None) holds a Gram and no ``R``: merged with it, a chunk's ``R`` would be dropped."""
    return isinstance(state, ClosedFormState) and state.gram is not None and state.r is None


def merge_states(a: ClosedFormState, b: ClosedFormState) -> ClosedFormState:
    """Exact pairwise merge of two chunks' statistics (Chan, Golub & LeVeque 1979).

    ``gram = gram_a + gram_b + f delta delta^T`` and ``R`` = triangle of ``[R_a; R_b; sqrt(f) delta]``, with
    ``delta = mean_b - mean_a`` and ``f = W_a W_b / (W_a + W_b)``. The result carries the Gram if both inputs
    do, and ``R`` if both do. The inputs are left as they are.
    """
    return _merge(a, b, owned=False)


def _merge_owned(a: ClosedFormState, b: ClosedFormState) -> ClosedFormState:
    """:func:`merge_states` writing the merged Gram into ``a``'s: for states nobody else holds (a fit's segments and
    their merges, in its :class:`TreeMerger`), so that a merge allocates no p x p array."""
    return _merge(a, b, owned=True)


def _merge(a: ClosedFormState, b: ClosedFormState, owned: bool) -> ClosedFormState:
    a, b = with_r(a), with_r(b)
    if (a.n_features, a.n_targets) != (b.n_features, b.n_targets):
        raise ValueError(
            f"cannot merge statistics of {a.n_features} features x {a.n_targets} targets with "
            f"{b.n_features} x {b.n_targets}."
        )
    if (a.gram is None or b.gram is None) and (a.r is None or b.r is None):
        raise ValueError("cannot merge a Gram-only state with an R-only state: compute both chunks the same way.")
    if a.weight_exp != b.weight_exp:  # bring the smaller weights to the larger ones' exponent (exact, or negligible)
        a, b = (rescale_weights(s, max(a.weight_exp, b.weight_exp)) for s in (a, b))
    weight = a.weight + b.weight
    dtype = np.result_type(a.dtype, b.dtype).name
    n_samples = a.n_samples + b.n_samples
    if a.weight == 0.0 or b.weight == 0.0:  # an empty or weightless chunk adds nothing: skip the arithmetic
        keep, other = (b, a) if a.weight == 0.0 else (a, b)
        gram = keep.gram if other.gram is not None else None
        r = keep.r if other.r is not None else None
        return replace(keep, dtype=dtype, n_samples=n_samples, gram=gram, r=r, raw_diag=_merged_raw_diag(a, b))
    delta = b.mean - a.mean
    f = a.weight * (b.weight / weight)  # not W_a W_b / W: that product under- or overflows for extreme weights
    gram = r = None
    if a.gram is not None and b.gram is not None:
        gram = _gram_sum(a.gram, b.gram, f, delta, out=a.gram if owned else None)
    if a.r is not None and b.r is not None:
        r = _triangle([a.r, b.r, np.sqrt(f) * delta], delta.shape[0])
    mean = a.mean + (b.weight / weight) * delta
    return ClosedFormState(a.n_features, a.n_targets, dtype, n_samples, weight, mean, gram, r,
                           raw_diag=_merged_raw_diag(a, b), weight_exp=a.weight_exp)


def _gram_sum(ga: np.ndarray, gb: np.ndarray, f: float, delta: np.ndarray, out: np.ndarray | None = None):
    """``ga + gb + f delta delta^T``, added in that order (the bits of that one NumPy expression), a slice of rows at
    a time: the temporaries take O(_ROW_SLICE p) memory where the expression took three p x p arrays. Into ``out``
    (which may be ``ga``) when given."""
    out = np.empty_like(ga) if out is None else out
    for i in range(0, ga.shape[0], _ROW_SLICE):
        rows = slice(i, i + _ROW_SLICE)
        np.add(ga[rows], gb[rows], out=out[rows])
        out[rows] += f * np.outer(delta[rows], delta)
    return out


def rescale_weights(state: ClosedFormState, weight_exp: int) -> ClosedFormState:
    """``state`` with its weights expressed in units of ``2**weight_exp`` (even; below the state's own exponent,
    the statistics are scaled up and may overflow for huge weights)."""
    shift = state.weight_exp - weight_exp
    if shift == 0:
        return state
    return replace(state, weight=float(np.ldexp(state.weight, shift)), weight_exp=weight_exp,
                   gram=None if state.gram is None else np.ldexp(state.gram, shift),
                   r=None if state.r is None else np.ldexp(state.r, shift // 2),
                   raw_diag=None if state.raw_diag is None else np.ldexp(state.raw_diag, shift))


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


# Rows per slice when the solve updates a d x d matrix in place: temporaries stay O(256 d), not O(d^2), so a
# wide fit's peak memory is the Gram and one scaled copy of it.
_ROW_SLICE = 256


def _scaled_normal_equations(params: dict, state: ClosedFormState):
    """``A v = B`` with ``A = S^-1 (G + W alpha I) S^-1``, ``B = S^-1 C``, ``coef^T = S^-1 v``; ``S`` the square
    roots of the diagonal of ``G + W alpha I`` (Jacobi scaling, rounded to powers of two).

    ``A`` is a new C-contiguous array (the state's Gram is left as is); ``G`` and ``C`` are the uncentred moments
    when ``fit_intercept=False``.
    """
    d = state.n_features
    A, C = state.gram[:d, :d].copy(), state.gram[:d, d:]
    if not params["fit_intercept"]:  # uncentred moments: add back W m m^T
        m = state.mean[:d]
        for i in range(0, d, _ROW_SLICE):
            A[i : i + _ROW_SLICE] += state.weight * np.outer(m[i : i + _ROW_SLICE], m)
        C = C + state.weight * np.outer(m, state.mean[d:])
    elif (constant := np.flatnonzero(constant_columns(state))).size:
        # a column constant to round-off is exactly constant: zero rows and columns, a null direction e_j of the
        # pivoted path (coefficient 0), or, with a ridge, a coefficient of 0
        C = C.copy()
        A[constant], A[:, constant], C[constant] = 0.0, 0.0, 0.0
    # (a constant column's centred entry may round below zero: scale 1, as for a zero column). The ridge counts in
    # the scale: scaled by G's diagonal alone, a column of tiny norm got a diagonal entry W alpha / s^2 far above
    # the others', and the condition estimate of a well-conditioned ridge fell below RCOND_CHOLESKY (a larger
    # alpha gave a smaller rcond: 3e-4 at alpha 1e-3, 3e-5 at 0.1), sending it to QR, or, where no second pass
    # is possible (one-shot streams, one alpha per target), to a warned eigensolve.
    ridge = state.weight * float(params["alpha"])
    scale = _pow2(np.sqrt(np.maximum(np.diag(A), 0.0) + ridge))
    A /= scale[:, None]  # powers of two: exact, so the scaled matrix is as symmetric as G
    A /= scale
    A[np.diag_indices(d)] += ridge / scale**2
    return A, C / scale[:, None], scale


# A column whose weighted spread about its mean is below this fraction of the mean is constant to round-off:
# the mean itself is computed within a few ulps, so a constant column's centred sum of squares is rounding noise,
# about (eps m)^2 W, where any spread the data can hold is at least an ulp of m. Left in, the Jacobi scaling made
# that noise a unit column that passed Cholesky's and QR's condition tests: 0.1 in every row beside an intercept
# got a coefficient of 3e10 (its rounding), and with non-uniform weights on CSR X the fit's error was 4e59.
CONSTANT_RTOL = 2.0**10 * EPS


def constant_columns(state: ClosedFormState) -> np.ndarray:
    """The columns of ``X`` that are constant to round-off over the rows of positive weight (a centred sum of
    squares at most ``(CONSTANT_RTOL m)^2 W``, ``m`` the column's mean; not a zero column): with an intercept they
    are exactly dependent on it, and the solve takes them as exactly constant (coefficient 0, minimum norm)."""
    d = state.n_features
    if state.gram is not None:
        spread = np.diag(state.gram)[:d]
    else:
        spread = np.einsum("ij,ij->j", state.r[:, :d], state.r[:, :d])  # R^T R = G: its columns' squares
    level = state.weight * np.square(state.mean[:d])
    return (level > 0) & (spread <= CONSTANT_RTOL**2 * level)


def _block_one_norm(params: dict, state: ClosedFormState, scale: np.ndarray, idx: np.ndarray) -> float:
    """The 1-norm of the block on columns ``idx`` of :func:`_scaled_normal_equations`' ``A`` (no ridge), from the
    state's Gram in row slices (no ``d x d`` copy)."""
    d = state.n_features
    m = state.mean[:d]
    colsum = np.zeros(idx.size)
    for a in range(0, idx.size, _ROW_SLICE):
        rows = idx[a : a + _ROW_SLICE]
        block = state.gram[np.ix_(rows, idx)]
        if not params["fit_intercept"]:  # uncentred moments, as _scaled_normal_equations adds them
            block += state.weight * np.outer(m[rows], m[idx])
        colsum += np.abs(block / scale[rows, None] / scale[idx]).sum(axis=0)
    return float(colsum.max()) if colsum.size else 0.0


def _sym_one_norm(A: np.ndarray) -> float:
    """The 1-norm of symmetric ``A`` (its largest column sum of magnitudes), summed in row slices."""
    colsum = np.zeros(A.shape[1])
    for i in range(0, A.shape[0], _ROW_SLICE):
        colsum += np.abs(A[i : i + _ROW_SLICE]).sum(axis=0)
    return float(colsum.max()) if colsum.size else 0.0


def _result(params, state, coef_t, path, rcond, rank, singular=None) -> FitResult:
    d = state.n_features
    coef = np.ascontiguousarray(coef_t.T)
    if params["fit_intercept"]:
        intercept = state.mean[d:] - coef @ state.mean[:d]
    else:
        intercept = np.zeros(state.n_targets)
    if singular is not None and state.weight_exp:  # in the caller's weight units (R scales by sqrt of them)
        singular = np.ldexp(singular, state.weight_exp // 2)
    attrs = {"solver_": path, "n_iter_": 1, "rcond_": float(rcond), "rank_": int(rank), "singular_": singular}
    return FitResult(coef.astype(state.dtype), intercept.astype(state.dtype), state, attrs)


def _cholesky(params: dict, state: ClosedFormState):
    """The Cholesky solve, or ``(None, rcond)`` when the normal equations are too ill-conditioned."""
    A, B, scale = _scaled_normal_equations(params, state)
    V, rcond = _definite_solve(params, state, A, B)
    if V is None:
        return None, rcond
    return _result(params, state, V / scale[:, None], "cholesky", rcond, state.n_features), rcond


def _definite_solve(params: dict, state: ClosedFormState, A: np.ndarray, B: np.ndarray):
    """``(V, rcond)`` with ``A V = B`` solved by Cholesky (``A``, scaled normal equations of ``state``, is
    overwritten), or ``(None, rcond)`` when ``A`` is not definite or its reciprocal condition estimate is below
    ``RCOND_CHOLESKY``."""
    anorm = _sym_one_norm(A)
    if not (np.isfinite(anorm) and np.all(np.isfinite(B))):
        raise ValueError("the sufficient statistics overflowed float64; rescale X and y.")
    # A is symmetric and C-contiguous: A.T is the same matrix in Fortran order, factorised in place.
    U = A.T  # the tail's LAPACK (see _tail_serial), as scipy's dpotrf with clean=1
    if _kernels.potrf_upper(U, serial=_tail_serial(U.shape[0])) != 0:
        return None, 0.0
    rcond = _factor_rcond(params, state, U, U.shape[0], anorm)
    if rcond < RCOND_CHOLESKY:
        return None, rcond
    return _cho_solve(U, B), rcond


def _factor_rcond(params: dict, state: ClosedFormState, U: np.ndarray, r: int, anorm: float) -> float:
    """The reciprocal condition estimate of ``U11^T U11``, ``U11 = U[:r, :r]`` an upper Cholesky factor of the
    scaled normal equations of ``state`` (whose block has 1-norm ``anorm``); ``U11``'s strict lower triangle,
    which LAPACK left as it was, is cleared in place first (``np.triu`` would copy it through a mask: 312 ms for
    a Fortran-ordered factor at d = 2,000, the loop 3.6 ms)."""
    for j in range(r - 1):
        U[j + 1 : r, j] = 0.0
    rcond, _ = lapack.dpocon(U[:r, :r], anorm)
    loss = 1.0
    if state.raw_diag is not None:  # a Gram centred after accumulation (sparse X): fold in the digits it lost
        loss = _sparse.cancellation(params, state.weight, state.gram, state.raw_diag)
    # The normal equations' error follows the 2-norm condition number, which the 1-norm one exceeds by up to a factor
    # r (both norms of a symmetric matrix and of its inverse differ by at most sqrt(r)): 1,500 rows of 1,325
    # standardised quadratic features with a ridge read 4.8e-5 from pocon, 1.2e-3 in the 2-norm, and took QR at 3.9x
    # Ridge's time. Below RCOND_CHOLESKY / r the 2-norm test fails too, so the estimate is only made between.
    if RCOND_CHOLESKY / r <= rcond / loss < RCOND_CHOLESKY:
        # (one thread: on blocks of a few columns, threaded triangular products and solves ran 6x slower)
        rcond = max(rcond, _two_norm_rcond(U, r, _serial_blas.tables() is not None) / TWO_NORM_MARGIN)
    return rcond / loss


# The 2-norm estimate (_two_norm_rcond): Rayleigh-Ritz on a block Krylov space of TWO_NORM_STEPS blocks of
# TWO_NORM_BLOCK vectors. Ritz values lie inside the spectrum, so the estimate is never below the true reciprocal
# condition; on uniform, log-uniform, square-root, clustered and few-level spectra of 300 and 1,500 columns (five
# starts each) it was at most 1.13 times it, so the acceptance divides it by TWO_NORM_MARGIN. Each step reads the
# factor about twice (two triangular products, or solves, of a block); a wider block costs little more per read.
TWO_NORM_BLOCK = 8
TWO_NORM_STEPS = 4
TWO_NORM_MARGIN = 2.0


def _two_norm_rcond(U: np.ndarray, r: int, serial: bool) -> float:
    """An estimate of the reciprocal 2-norm condition number ``lambda_min / lambda_max`` of ``A = U11^T U11``,
    ``U11 = U[:r, :r]`` a nonsingular upper Cholesky factor (strict lower triangle zero, Fortran order): the largest
    Ritz values of ``A`` and of ``A^-1`` on block Krylov spaces (block Lanczos with full reorthogonalisation; Musco &
    Musco, *Randomized block Krylov methods for stronger and faster approximate singular value decomposition*,
    NeurIPS 2015, for its accuracy without a spectral gap) from a fixed random start, so the same ``U`` gives the
    same estimate. It is at least the true value."""
    rng = np.random.default_rng(r)  # a local generator: the process's RNG state is left as it was

    def product(V: np.ndarray, inverse: bool) -> np.ndarray:
        if inverse:
            return _upper_solve(U, r, _upper_solve(U, r, V, trans=True, serial=serial), serial=serial)
        V = np.array(V, order="F")
        _kernels.trmm_upper(U, r, V, serial=serial)
        _kernels.trmm_upper(U, r, V, trans=True, serial=serial)
        return V

    def orthogonal(W: np.ndarray, blocks: list) -> np.ndarray:
        for _ in range(2):  # twice is enough (Parlett): the new block stays orthogonal to rounding
            for Q in blocks:
                W = W - Q @ (Q.T @ W)
        return np.linalg.qr(W)[0]

    top = []
    for inverse in (False, True):
        blocks = [np.linalg.qr(rng.standard_normal((r, TWO_NORM_BLOCK)))[0]]
        images = []
        for step in range(TWO_NORM_STEPS):
            images.append(product(blocks[-1], inverse))
            if step < TWO_NORM_STEPS - 1:
                blocks.append(orthogonal(images[-1], blocks))
        # Rayleigh-Ritz on the numerical span of the blocks, from the products already made: where the space is
        # exhausted (r below 32, or an invariant subspace), later blocks are normalised rounding noise, not
        # orthogonal to the earlier ones, and basis^T A basis read the extremes up to 4 times too wide (an
        # estimate 16 times below the truth at r = 4). With G = basis^T basis = W diag(lam) W^T, the columns of
        # basis W lam^-1/2 (lam resolved) are orthonormal, and their Rayleigh quotient matrix is C^T H C.
        basis = np.hstack(blocks)
        G, H = basis.T @ basis, basis.T @ np.hstack(images)
        lam, W = np.linalg.eigh(0.5 * (G + G.T))
        resolved = lam > 1e-12 * lam[-1]
        C = W[:, resolved] / np.sqrt(lam[resolved])
        T = C.T @ (0.5 * (H + H.T)) @ C
        top.append(float(np.linalg.eigvalsh(0.5 * (T + T.T))[-1]))
    return 1.0 / (top[0] * top[1])


def _r_system(params: dict, state: ClosedFormState):
    """``R11`` (d, d) and ``R12`` (d, k) of the least-squares problem, with intercept and ridge folded in."""
    d, p = state.n_features, state.mean.shape[0]
    R = state.r
    if not params["fit_intercept"]:  # uncentred: R^T R + W m m^T
        R = _triangle([R, np.sqrt(state.weight) * state.mean], p)
    elif (constant := np.flatnonzero(constant_columns(state))).size:
        # exactly constant (see constant_columns): zero columns of R give the Gram with zero rows and columns, and
        # R11 their exact rank deficiency (the SVD path, minimum norm)
        R = R.copy()
        R[:, constant] = 0.0
    if params["alpha"] > 0:  # ridge as extra rows sqrt(W alpha) [I, 0]
        ridge = np.zeros((d, p))
        ridge[np.diag_indices(d)] = np.sqrt(state.weight * params["alpha"])
        R = _triangle([R, ridge], p)
    return R[:d, :d], R[:d, d:]


def _solve_r(params: dict, state: ClosedFormState, warn: bool = True) -> FitResult:
    """The least-squares (ridge) solution from the ``R`` factor: triangular solve, or the minimum-norm SVD path
    (warned with ``warn``) below the rank cutoff. Zero columns of ``R11`` (zero columns of ``X``, or columns
    taken as constant: :func:`_r_system`) are exact null directions ``e_j``: coefficient 0 (minimum norm), the
    rest solved without them, and one warning."""
    R11, R12 = _r_system(params, state)
    d = state.n_features
    live, R11, R12 = _live_triangle(R11, R12)
    r = live.size
    scale = _pow2(np.linalg.norm(R11, axis=0))
    Rs = R11 / scale
    rcond = lapack.dtrcon(Rs, norm="1", uplo="U", diag="N")[0] if r else 0.0
    cutoff = _rank_cutoff(state)
    coef_t = np.zeros((d, R12.shape[1]))
    if r and rcond >= cutoff:
        coef_t[live] = _upper_solve(np.asfortranarray(Rs), r, R12, serial=_tail_serial(r)) / scale[:, None]
        if r < d and warn:
            _warn_rank(r, d, "qr")
        return _result(params, state, coef_t, "qr", rcond, r)
    if not r:  # every column zero or constant
        if warn:
            _warn_rank(0, d, "svd")
        return _result(params, state, coef_t, "svd", 0.0, 0, singular=np.zeros(d))
    # The numerical range from the SVD of the column-scaled R11, as the rcond test above judges it: the cutoff
    # relative to the unscaled singular values (numpy.linalg.lstsq's) dropped every direction that columns of
    # small scale carry beside large ones (one-hot levels beside an intercept and a cubic in a year of 8e9: rank 55
    # of 58, the objective 51% above the minimum; a degree-6 polynomial of a year, full rank at a scaled
    # condition of 8e13: rank 8 of 27, twice the minimum). Then minimum norm in the caller's units (as
    # numpy.linalg.lstsq) on that range: the component along its null space in those units removed.
    U, s, Vt = np.linalg.svd(Rs)
    keep = s > max(cutoff * s[0], _centring_floor(params, state, live, scale))
    # n rows centred on their mean span at most n - 1 directions: on 30 rows of 60 columns offset by 5 or 100, the
    # centring's rounding was kept as a 30th singular value, and the coefficients were 8-36% off the minimum norm
    keep[max(state.n_samples - (1 if params["fit_intercept"] else 0), 0):] = False
    rank = int(keep.sum())
    if warn and rank < d:  # (the 1-norm rcond, up to r times below the 2-norm one, can send a full rank here)
        _warn_rank(rank, d, "svd")
    V = Vt[keep].T @ ((U[:, keep].T @ R12) / s[keep, None]) / scale[:, None]
    if not keep.all():
        null = np.linalg.qr(Vt[~keep].T / scale[:, None])[0]
        V -= null @ (null.T @ V)
    coef_t[live] = V
    singular = np.linalg.svd(R11, compute_uv=False)  # the design's own, in the caller's units (singular_)
    return _result(params, state, coef_t, "svd", rcond, rank, singular=np.concatenate([singular, np.zeros(d - r)]))


def _live_triangle(R11: np.ndarray, R12: np.ndarray):
    """``(live, R, Q^T R12)``: the columns ``live`` of ``R11`` that are not zero, and the triangular factor ``R``
    of ``R11[:, live] = Q R`` (``R11`` itself when no column is zero). A zero column left in made ``R11``
    singular, and the SVD path's cutoff, relative to unscaled singular values, then also dropped directions the
    column scaling resolves: PolynomialFeatures' constant column beside an intercept took a cubic design of
    columns scaled 1e-3 to 1e3 from rank 19 of 19 to 15 of 20, its predictions 1.6 away."""
    null = ~R11.any(axis=0)
    if not null.any():
        return np.arange(R11.shape[1]), R11, R12
    live = np.flatnonzero(~null)
    # R and Q^T R12 at once, the triangle of [R11[:, live], R12] (the tail's LAPACK, as every R merge: the same
    # bits whatever the BLAS thread count, which NumPy's qr on the threaded OpenBLAS did not give)
    r = live.size
    T = _triangle(np.hstack([R11[:, live], R12]), r + R12.shape[1])
    return live, np.ascontiguousarray(T[:r, :r]), T[:r, r:]


# _centring_floor: the rounding that centring columns on means far from zero leaves in R, as a singular value, is
# about eps |mean| (sqrt(W) + sqrt(d W / n)) (each value off by eps |mean|, weighted); singular values within
# this factor of it are taken for rounding.
CENTRING_FLOOR_FACTOR = 8.0


def _centring_floor(params: dict, state: ClosedFormState, live: np.ndarray, scale: np.ndarray) -> float:
    """Singular values of the column-scaled ``R11`` (its columns ``live``, divided by ``scale``) at or below this are
    the rounding of centring (0 without an intercept): the relative cutoff alone kept them where column means
    dwarf the spread (offsets of 100 on unit columns: 4e-13 against a cutoff of 1e-14), and the Dask merge's
    mean-difference rows add the same. Each column's rounding, ``eps |mean_j|`` a value, in its own scale."""
    if not params["fit_intercept"] or state.n_samples == 0:
        return 0.0
    d = state.n_features
    W = float(state.weight)
    top = float(np.max(np.abs(state.mean[:d])[live] / scale, initial=0.0))
    return CENTRING_FLOOR_FACTOR * EPS * top * (math.sqrt(W) + math.sqrt(d * W / state.n_samples))


def _rank_cutoff(state: ClosedFormState) -> float:
    """Singular values of the column-scaled design at or below this times the largest are not resolved: the cutoff
    of ``numpy.linalg.lstsq`` in float64 arithmetic (``eps max(n, d)``), or, for float32 input, that input's own
    rounding if larger, ``eps32 (1 + sqrt(d / n))``. Rounding each entry of the column-scaled ``n x d`` design
    (columns of norm about 1, entries about ``n^-1/2``) adds independent errors of standard deviation about
    ``eps32 / sqrt(12 n)``, a matrix of 2-norm about ``eps32 / sqrt(12) (1 + sqrt(d / n))`` (Bai & Yin, 1993):
    the cutoff is that with a factor 3.5 to spare. float32 spline bases beside an intercept, whose sum to one
    float32 rounding breaks at 1.8e-8, were resolved at float64's cutoff: the fit took those directions as data
    (coefficients of 2e5, their cancellation lost when returned in float32, predictions 4e-2 of std(y) off the fit
    that drops them). The worst case, ``eps32 sqrt(d)`` (every error aligned), dropped real signal: columns
    sharing one component, apart by 3e-5 (stored to 1e-3 in float32), at 1.6e-6 of the largest, a training RMSE
    17 times the float64 fit's."""
    d, n = state.n_features, max(state.n_samples, 1)
    cutoff = EPS * max(state.n_samples, d)
    eps_in = float(np.finfo(np.dtype(state.dtype)).eps) if np.dtype(state.dtype).kind == "f" else EPS
    return max(cutoff, eps_in * (1.0 + math.sqrt(d / n))) if eps_in > EPS else cutoff


def _eigen_cutoff(state: ClosedFormState) -> float:
    """Eigenvalues of the scaled normal equations at or below this times the largest are not resolved: the Gram's
    own rounding (``eps max(n, d)`` relative, not squared), or the square of :func:`_rank_cutoff` where the input's
    precision (float32) leaves more unresolved."""
    return max(EPS * max(state.n_samples, state.n_features), _rank_cutoff(state) ** 2)


def _warn_rank(rank: int, d: int, path: str, why: str | None = None) -> None:
    why = why or ("e.g. one-hot or spline columns, which sum to a constant, or a constant column, beside the "
                  "intercept")
    _warn(
        f"The centred design is rank-deficient to working precision (rank {rank} of {d} columns; {why}): returning the "
        f"minimum-norm least-squares solution (solver_={path!r}); its predictions are those of any "
        "least-squares solution. "
        "Filter with warnings.simplefilter('ignore', fastopt.exceptions.RankDeficientWarning).",
        RankDeficientWarning,
    )


# The pivoted path (pivoted_cholesky): pivots of the scaled normal equations at or below this are candidates for
# the null space, which a pass over X then confirms or rejects (the Gram alone cannot tell a singular value below
# sqrt(eps) times the largest from rounding).
PIVOT_TOL = float(np.sqrt(EPS))
# At most this fraction of the columns in the null space (and at least one): the confirming pass costs
# 2 n d (d - rank) flops, so that a pass that refutes the null space costs at most half the QR pass (2 n d^2)
# that follows it.
PIVOT_MAX_NULL = 1 / 2
# Rows of the confirming pass at a time (float32 X is converted a block at a time, never as a whole).
_NULL_BLOCK_VALUES = 2**19
# Null directions up to which the confirming pass reads CSR rows with the compiled product (null_squares).
_NULL_COMPILED_MAX = 16


def null_squares(params: dict, mean_x: np.ndarray, weight_exp: int, data: Data, Q: np.ndarray) -> float:
    """``||W^1/2 (X - 1 m^T) Q||_F^2`` over the rows of ``data`` (uncentred without intercept): ``m = mean_x``,
    the means of the state being solved, and ``W`` the chunk's weights divided by ``2**weight_exp``, as in that
    state. One pass over ``X`` in row blocks; sums over chunks add (the pivoted path's confirming pass over
    chunked or distributed rows, :func:`pivoted`)."""
    X, sw = data.X, data.sample_weight
    shift = mean_x @ Q if params["fit_intercept"] else None
    total = 0.0
    # A few null directions of sparse rows: read in place, in blocks of about _NULL_BLOCK_VALUES stored values or
    # products. SciPy's row slices, in blocks of _NULL_BLOCK_VALUES / d rows, cost about 80 us apiece: 200,000
    # one-hot rows of 493 columns, 1, 3 and 10 directions, 15, 20 and 26 -> 5, 10 and 17 ms. With more, SciPy's
    # product, which reads each column's directions side by side, is faster (50: 30 against 34 ms).
    csr = is_sparse(X) and Q.shape[1] <= _NULL_COMPILED_MAX and _sparse.compiled_csr(X)
    QT = np.ascontiguousarray(Q.T, dtype=np.float64) if csr else None
    width = max(Q.shape[1], X.nnz // max(1, X.shape[0])) if csr else X.shape[1]
    step = max(1, _NULL_BLOCK_VALUES // max(1, width))
    for lo in range(0, X.shape[0], step):
        if csr:
            Z = _sparse.csr_block_times(X, lo, lo + step, QT)
        else:
            Z = np.asarray(X[lo : lo + step] @ Q, dtype=np.float64)
        if shift is not None:
            Z -= shift
        if sw is not None:
            Z *= np.sqrt(np.ldexp(np.asarray(sw[lo : lo + step], dtype=np.float64), -weight_exp))[:, None]
        total += float(np.einsum("ij,ij->", Z, Z))  # no BLAS: ddot would wake its threads for these few flops
    return total


def _null_pass_of(params: dict, state: ClosedFormState, data: Data, Q: np.ndarray) -> float:
    """:func:`null_squares` of the rows of ``data``, whose statistics ``state`` holds (or a sample of them)."""
    return null_squares(params, state.mean[: state.n_features], state.weight_exp, data, Q)


def pivoted(params: dict, state: ClosedFormState, null_pass: Callable[[np.ndarray], float], warn: bool = True
            ) -> FitResult | None:
    """The minimum-norm least-squares (or ridge) solution of an exactly rank-deficient design from its Gram, or None.

    For designs whose centred columns are exactly dependent (one-hot columns with an intercept, a constant column
    such as ``PolynomialFeatures``' bias) while the rest is well-conditioned: the pivoted Cholesky factorisation
    ``P^T A P = U^T U`` of the scaled normal equations (LAPACK ``pstrf``, stopped at pivots below
    :data:`PIVOT_TOL`) splits the columns into ``r`` kept ones, whose normal equations must pass the Cholesky
    path's test (reciprocal condition at least ``RCOND_CHOLESKY``; else the lifted equations below, without a
    ridge too, where they pass it), and a candidate null space spanned by the
    columns of ``N = S^-1 P [-U11^-1 U12; I]``. One pass over the rows, ``null_pass(Q)``, returns
    ``||W^1/2 X_c Q||_F^2`` for an orthonormal basis ``Q`` of ``N`` (:func:`null_squares`, summed over the
    chunks): its square root at most ``eps max(n, d)`` times a lower bound of the design's largest singular
    value, it bounds the ``d - r`` smallest singular values below the cutoff of ``numpy.linalg.lstsq``
    (Courant-Fischer), while interlacing with the kept columns keeps the other ``r`` above it. The basic
    solution on the kept columns minus its component in ``span(Q)`` is then the minimum-norm solution that
    ``lstsq`` returns on the centred data, to the accuracy of the normal equations (about ``eps kappa_r^2``, as
    on the ``"cholesky"`` path). Columns that are zero in every row (:func:`_zero_columns`: a category's levels
    absent from these rows, with the encoder fitted on others) are null directions ``e_j`` exactly: they are set
    aside before the factorisation, need no pass, and do not count against :data:`PIVOT_MAX_NULL`.

    With a ridge (``alpha > 0``) the same null space, found and confirmed on the design's own normal equations,
    is lifted: the exact ridge solution of an exactly rank-deficient design has no component in it (``G Q = 0``
    and ``Q^T C = 0`` there), so it solves ``(G + W alpha I + Q D Q^T) w = (I - Q Q^T) C``, whose Cholesky
    factorisation must pass the same test, instead of the ridge's own normal equations, whose condition number
    grows as ``1 / alpha`` along ``Q``; ``D`` lifts each direction to about the unit diagonal of the scaled
    equations. No warning (the ridge problem has one solution), ``rank_`` is ``d``. None (the caller goes to QR)
    for any other outcome: one alpha per target, constraints, full rank, too many null directions, or a candidate
    null space that the rows refute.
    """
    if state.gram is None or np.ndim(params["alpha"]) or params.get("positive"):
        return None
    ridge = float(params["alpha"]) != 0.0
    plain = {**params, "alpha": 0.0}
    d = state.n_features
    A, B, scale = _scaled_normal_equations(plain, state)
    zero = np.flatnonzero(_zero_columns(state))  # exactly null already: e_j needs no pass
    live = np.setdiff1d(np.arange(d), zero)
    if zero.size:
        A = np.ascontiguousarray(A[np.ix_(live, live)])
    m = live.size
    sigma_top = float(np.sqrt(np.max(np.diag(A) * scale[live] ** 2))) if m else 0.0  # <= the largest singular value
    if not sigma_top > 0:
        return None
    # A is symmetric and C-contiguous: A.T is the same matrix in Fortran order, factorised in place
    U, serial = A.T, _pstrf_serial(m)
    piv, rank, info = _kernels.pstrf_upper(U, PIVOT_TOL, serial=serial)
    if info not in (0, 1) or rank == 0 or (rank == m and not zero.size) or m - rank > max(1, int(PIVOT_MAX_NULL * m)):
        return None
    perm = live[piv - 1]  # LAPACK's pivots count from 1
    # the kept block's own norm: the whole matrix's, which the dependent columns swell, made the rcond estimate
    # too small (7.9e-5 against 1.7e-4 for PolynomialFeatures(2) of one-hot columns, which then took the SVD)
    rcond = _factor_rcond(plain, state, U, rank, _block_one_norm(plain, state, scale, perm[:rank]))
    U12 = U[:rank, rank:m]
    # Where the kept block fails the test, the lifted equations (below) take its place: which columns pstrf keeps
    # decides the block's condition (the centred one-hot columns of a category without a frequent level are
    # nearly dependent: 20,000 rows of 10, 100 and 1,000 levels, rcond 5e-5, and the fit densified X for QR and
    # SVD, 2.8 s), while the lifted system's is the design's own nonzero spectrum's (2.8e-2 there)
    lift = ridge or rcond < RCOND_CHOLESKY
    Q = np.zeros((d, d - rank))  # the null space in the coefficients' units: the zero columns', then the rest
    Q[zero, np.arange(zero.size)] = 1.0
    squares = 0.0
    if rank < m:
        N = np.zeros((d, m - rank))
        N[perm[:rank]] = -_upper_solve(U, rank, U12, serial=serial)
        N[perm[rank:]] = np.eye(m - rank)
        Q[:, zero.size :] = np.linalg.qr(N / scale[:, None])[0]
    lifted = None
    if lift:  # solved before the pass, which it spares where the lifted equations fail the test too
        lifted = _lifted_ridge(params, replace(state, null=(Q, 0.0)), None if ridge else rank)
        if lifted is None:
            return None
    if rank < m:
        squares = null_pass(Q[:, zero.size :])
        if not np.sqrt(squares) <= _rank_cutoff(state) * sigma_top:
            return None
    if lifted is not None:
        lifted.state = replace(lifted.state, null=(Q, squares))  # (the certificate partial_fit carries)
        if not ridge and warn:
            _warn_rank(rank, d, "pivoted_cholesky")
        return lifted
    V = np.zeros((d, B.shape[1]))
    V[perm[:rank]] = _upper_solve(U, rank, _upper_solve(U, rank, B[perm[:rank]], trans=True, serial=serial),
                                  serial=serial)
    coef_t = V / scale[:, None]
    coef_t -= Q @ (Q.T @ coef_t)  # the basic solution's component in the null space: minimum norm
    if warn:
        _warn_rank(rank, d, "pivoted_cholesky")
    return _result(params, replace(state, null=(Q, squares)), coef_t, "pivoted_cholesky", rcond, rank)


def _upper_solve(U: np.ndarray, r: int, B: np.ndarray, trans: bool = False, serial: bool = False) -> np.ndarray:
    """``U11^-1 B`` (``U11^-T B`` with ``trans``) for ``U11 = U[:r, :r]``, upper triangular and nonsingular, ``U``
    Fortran-ordered; ``serial``: through the tail's private LAPACK (:func:`_tail_serial`)."""
    X = np.array(B, dtype=np.float64, order="F")
    if _kernels.trtrs_upper(U, r, X, trans=trans, serial=serial) != 0:
        raise np.linalg.LinAlgError("a triangular factor has an exactly zero diagonal entry")
    return X


def _cho_solve(U: np.ndarray, B: np.ndarray) -> np.ndarray:
    """``(U^T U)^-1 B`` for the upper triangular, nonsingular, Fortran-ordered ``U`` (a Cholesky factor, or
    ``R11``): LAPACK ``dpotrs``'s two ``dtrsm`` calls, on the tail's LAPACK (:func:`_tail_serial`)."""
    d = U.shape[0]
    serial = _tail_serial(d)
    return _upper_solve(U, d, _upper_solve(U, d, B, trans=True, serial=serial), serial=serial)


def _zero_columns(state: ClosedFormState) -> np.ndarray:
    """Columns that are zero in every row of positive weight (to underflow): a mean of 0 and a centred (and, for
    sparse X, uncentred) sum of squares of 0. ``X_c e_j = 0`` exactly: a null direction no pass need confirm."""
    d = state.n_features
    zero = (state.mean[:d] == 0) & (np.diag(state.gram)[:d] == 0)
    if state.raw_diag is not None:
        zero &= state.raw_diag[:d] == 0
    return zero


def _lifted_ridge(params: dict, state: ClosedFormState, rank: int | None = None) -> FitResult | None:
    """:func:`pivoted`'s ridge solve, with the null space ``Q`` (orthonormal, in the coefficients' units) that
    ``state.null`` certifies, or None when the lifted equations fail the Cholesky test. Without a ridge
    (``rank``: the design's) the same equations give the minimum-norm least-squares solution: ``G w = (I - Q
    Q^T) C`` with ``Q^T w = 0``."""
    Q = state.null[0]
    A, B, scale = _scaled_normal_equations(params, state)
    Qs = Q / scale[:, None]  # S^-1 Q: the lift Q D Q^T in the scaled units is Qs D Qs^T
    A += (Qs / np.einsum("ij,ij->j", Qs, Qs)) @ Qs.T  # D_j = 1 / ||S^-1 Q_j||^2
    B -= Qs @ (Q.T @ (B * scale[:, None]))  # S^-1 (I - Q Q^T) C, with C = S B
    V, rcond = _definite_solve(params, state, A, B)
    if V is None:
        return None
    coef_t = V / scale[:, None]
    coef_t -= Q @ (Q.T @ coef_t)  # the rounding the lift left in span(Q)
    return _result(params, state, coef_t, "pivoted_cholesky", rcond, state.n_features if rank is None else rank)


def pivoted_after(params: dict, old, merged: ClosedFormState, new_squares: Callable[[np.ndarray], float]
                  ) -> FitResult | None:
    """:func:`pivoted` for ``merged``, ``old`` merged with new rows (``partial_fit``, in memory or on Dask), when
    ``old`` was solved on the pivoted path and ``merged`` needs more than Cholesky: no ``R`` to fall back on, but
    ``old``'s certificate bounds its rows (:func:`_carried_null_squares`) and ``new_squares(Q)`` (a pass,
    :func:`null_squares`) the new rows. None otherwise, or when they refute the null space."""
    if getattr(old, "null", None) is None or not needs_qr(params, merged):
        return None
    return pivoted_any(params, merged, lambda Q: _carried_null_squares(params, old, merged, Q) + new_squares(Q))


def pivoted_any(params: dict, state: ClosedFormState, null_pass: Callable[[np.ndarray], float]
                ) -> FitResult | None:
    """:func:`pivoted`, or with one alpha per target :func:`_pivoted_per_target` (``fit_stream`` and Dask fits
    too: with ``alpha=[0, 0]`` they took QR and the SVD, with a warning per target)."""
    if np.ndim(params["alpha"]):
        return _pivoted_per_target(params, state, null_pass)
    return pivoted(params, state, null_pass)


def _carried_null_squares(params: dict, old: ClosedFormState, merged: ClosedFormState, Q: np.ndarray) -> float:
    """A bound on ``||W^1/2 X_c Q||_F^2`` over the rows of ``old`` (a state the pivoted path solved, its rows no
    longer at hand) within ``merged`` (``old`` merged with new rows), from its certificate ``old.null`` =
    ``(Q_o, t^2)``. With ``X_o`` the old rows centred
    on ``merged``'s mean ``m_new`` (their own mean ``m_o`` plus a shift),
    ``||X_o Q|| <= t + sigma_o ||(I - Q_o Q_o^T) Q||_F + sqrt(W_o) ||(m_o - m_new)^T Q||``, where
    ``sigma_o = sqrt(trace(G_o)) >= ||X_o - 1 m_o^T||_2`` (uncentred without intercept, no shift), scaled into
    ``merged``'s weight units."""
    d = merged.n_features
    Q_old, squares_old = old.null
    outside = float(np.linalg.norm(Q - Q_old @ (Q_old.T @ Q)))  # span(Q) beyond the confirmed span(Q_old)
    trace = float(np.trace(old.gram[:d, :d]))
    shift = 0.0
    if params["fit_intercept"]:
        shift = np.sqrt(old.weight) * float(np.linalg.norm((old.mean[:d] - merged.mean[:d]) @ Q))
    else:
        trace += old.weight * float(old.mean[:d] @ old.mean[:d])
    bound = np.sqrt(squares_old) + np.sqrt(max(trace, 0.0)) * outside + shift
    units = 2.0 ** (old.weight_exp - merged.weight_exp)  # old weights in the merged state's units (at most 1)
    return units * bound**2


def _solve_eigh(params: dict, state: ClosedFormState) -> FitResult:
    A, B, scale = _scaled_normal_equations(params, state)
    lam, Q = np.linalg.eigh(A)
    # The Gram carries absolute errors of about eps * ||A||: smaller eigenvalues are not resolved.
    keep = lam > _eigen_cutoff(state) * lam[-1]
    V = Q[:, keep] @ ((Q[:, keep].T @ B) / lam[keep, None])
    coef_t = V / scale[:, None]
    if not keep.all():
        # V has minimum norm in the scaled units; the caller's (those of numpy.linalg.lstsq, and of the "svd"
        # path) differ wherever the scales do: remove the component in the null space in the caller's units
        null = np.linalg.qr(Q[:, ~keep] / scale[:, None])[0]
        coef_t -= null @ (null.T @ coef_t)
    rcond = max(lam[0], 0.0) / lam[-1] if lam[-1] > 0 else 0.0
    return _result(params, state, coef_t, "eigh", rcond, int(keep.sum()))


def _warn_eigh(rcond: float, what: str = "a minimum-norm eigensolve") -> None:
    _warn(
        f"The normal equations are ill-conditioned (reciprocal condition {rcond:.1e} < {RCOND_CHOLESKY:.0e}, "
        "so Cholesky would lose more than 4 of float64's 16 digits) and the rows cannot be read again for QR: "
        f"returning {what} (solver_='eigh') whose accuracy is limited by the squared condition "
        "number; fit on all the rows (or fit_stream on a re-readable stream, which reads them again for QR) "
        "keeps full accuracy.",
        IllConditionedWarning,
    )


# Column scales (square roots of the Gram's diagonal) outside [2**-500, 2**500] put the squares the statistics are
# made of near float64's underflow (2**-1022, where digits are lost to denormals) or overflow (2**1024).
SCALE_LIMIT = 2.0**500


def scale_trouble(state: ClosedFormState, constant_ok: bool = False) -> int | None:
    """The first column of ``[X, Y]`` whose squares under- or overflow float64 in ``state``, else None.

    A column is in trouble when its statistics are not finite, when its centred scale (``sqrt`` of the Gram's
    diagonal, or the largest entry of ``R``'s column) is nonzero but outside ``[2**-500, 2**500]``, or, unless
    ``constant_ok``, when it is zero while the column's mean is nonzero and below ``2**-500`` (squares of
    denormal deviations vanish; after rescaling, such a column is taken as constant).
    """
    with np.errstate(all="ignore"):
        if state.gram is not None:
            scale = np.sqrt(np.abs(np.diag(state.gram)))
            # a column's own squares: its cross terms overflow only with another column's (Cauchy-Schwarz), and
            # y's overflowing squares had named X column 0 through X^T y
            finite = np.isfinite(np.diag(state.gram))
        else:  # R's columns, or the kernel form's centred weighted rows (kernel_fit): the same per-column test
            R = state.r if state.r is not None else state.rows
            scale = np.max(np.abs(R), axis=0)
            finite = np.isfinite(R).all(axis=0)
        mean = np.abs(state.mean)
        bad = ~finite | ~np.isfinite(mean) | (scale > SCALE_LIMIT) | ((scale > 0) & (scale < 1 / SCALE_LIMIT)) \
            | ((scale == 0) & (mean > 0) & (mean < 1 / SCALE_LIMIT) & (not constant_ok))
    return int(np.argmax(bad)) if bad.any() else None


# Positive weights further apart than this: the lighter rows' weighted squares leave float64's range beside the
# heaviest's (after the weights' common power of two), whatever the scale of X and y.
WEIGHT_SPREAD = 2.0**900


def _scale_error(state: ClosedFormState, column: int, sample_weight=None, rescaled: bool = False) -> ValueError:
    """The error for a column whose squares leave float64 (:func:`scale_trouble`); ``sample_weight``, where the
    caller has the rows' weights, names them when they span more than ``WEIGHT_SPREAD`` (one weight of 1e306
    among ones had the message blame X column 0 and advise rescaling X); ``rescaled``: the in-memory fit's retry
    on exactly rescaled data failed too."""
    if sample_weight is not None:
        positive = np.asarray(sample_weight, dtype=np.float64)
        positive = positive[positive > 0]
        if positive.size and positive.max() > WEIGHT_SPREAD * positive.min():
            return ValueError(
                f"sample_weight spans too wide a range for the closed form's float64 statistics (from "
                f"{positive.min():.3g} to {positive.max():.3g}): the lighter rows' weighted squares underflow beside "
                "the heaviest's. Drop rows whose weight is negligible, or bring the weights nearer each other."
            )
    d = state.n_features
    name, index = ("X", column) if column < d else ("y", column - d)
    return ValueError(
        f"{name} column {index} has values too large or too small to square in float64 (the closed form's "
        f"statistics would over- or underflow), or sample_weight spans too wide a range; multiply {name} by a power "
        "of ten to bring its values nearer 1"
        + ("." if rescaled else " (the fit with all of X and y in memory does this itself).")
    )


def _pow2_exponent(a: np.ndarray, axis=None) -> np.ndarray:
    """``e`` with ``max|a| / 2**e`` in [1/2, 1) (0 where ``a`` is all zero)."""
    top = np.max(np.abs(a), axis=axis, initial=0.0)
    return np.frexp(top)[1]


@dataclass
class _Rescaled:
    """The state of a fit that had to rescale its data: its statistics are not in the caller's units."""

    state: ClosedFormState


def _scaled_X(X, ex):
    """``X / 2**ex`` (exact), ``ex`` one exponent or one per column: for sparse ``X`` only its stored values are
    scaled (a copy of ``X.data``, sharing the index arrays), so it stays sparse."""
    ex = np.asarray(ex)
    if not is_sparse(X):
        return np.ldexp(X, -ex).astype(X.dtype, copy=False)
    values = np.ldexp(X.data, -(ex[X.indices] if ex.ndim else ex)).astype(X.data.dtype, copy=False)
    return type(X)((values, X.indices, X.indptr), shape=X.shape, copy=False)


# Columns whose largest values are more than 2**COLUMN_SPREAD_BITS apart cannot share one scale factor: with the
# largest near 1, the smallest's squares leave float64's normal range (2**-1022).
COLUMN_SPREAD_BITS = 400


def column_max_abs(X) -> np.ndarray:
    """``max_i |x_ij|`` per column of dense or CSR ``X`` (CSR: over the stored values; 0 for an empty column)."""
    if not is_sparse(X):
        return np.max(np.abs(X), axis=0, initial=0.0)
    top = np.zeros(X.shape[1])
    np.maximum.at(top, X.indices, np.abs(X.data).astype(np.float64, copy=False))
    return top


def _column_exponents(X) -> tuple[np.ndarray, np.ndarray]:
    """Per column, ``e`` with ``max_i |x_ij| / 2**e`` in [1/2, 1) (0 for an all-zero column), and whether the
    column has a nonzero value."""
    top = column_max_abs(X)
    return np.frexp(top)[1].astype(int), top > 0


def scaled_alpha(given, alpha: np.ndarray, ex: int) -> np.ndarray:
    """``alpha`` for ``X`` divided by ``2**ex`` (the ridge in the scaled units: ``alpha 2**(-2 ex)``), or a
    ``ValueError`` naming ``given`` where that overflows (X of about 1e-160 beside alpha = 0.1), rather than
    NumPy's overflow warning and a later "alpha must be finite"."""
    with np.errstate(over="ignore"):
        scaled = np.ldexp(alpha, -2 * ex)
    if not np.isfinite(scaled).all():
        raise ValueError(f"alpha={given} is too large for X's scale (max |X| about 2**{ex}): the ridge term "
                         f"outweighs the data term by more than float64's range (alpha * 2**{-2 * ex}); rescale X "
                         "(e.g. StandardScaler) or give a smaller alpha.")
    return scaled


def _rescaled_fit(solver: _ClosedForm, params: dict, data: Data) -> FitResult:
    """The fit of ``data`` through ``X / 2**ex`` and ``Y[:, t] / 2**ey_t`` (exact scalings): with
    ``coef = v 2**ey / 2**ex``, ``intercept = b 2**ey`` and ``alpha' = alpha / 4**ex`` the scaled problem's
    objective is the original one divided by ``4**ey`` per target, so the solution is the same. One factor for
    all of ``X`` keeps the ridge ``alpha ||coef||^2`` a ridge on the scaled coefficients; without a ridge, and
    with columns more than ``2**COLUMN_SPREAD_BITS`` apart, one factor per column (``ex`` a vector)."""
    values = data.X.data if is_sparse(data.X) else data.X
    refuse_nonfinite("X", values)
    ex = int(_pow2_exponent(values))
    columns, nonzero = _column_exponents(data.X)
    stored = columns[nonzero]
    if not np.any(params["alpha"]) and stored.size and int(stored.max() - stored.min()) > COLUMN_SPREAD_BITS:
        # Columns too far apart for one factor (1e-160 beside 1: the small one's squares underflow whatever the
        # factor; 1e-150, 1 and 1e150: it was taken for constant, silently). Without a ridge, one factor per
        # column is as exact (coef_j = v_j 2**ey / 2**ex_j), and the minimum-norm answer of a rank-deficient
        # design is then taken in those units.
        ex = columns
    ey = _pow2_exponent(data.Y, axis=0).astype(int)
    scaled = replace(data, X=_scaled_X(data.X, ex),
                     Y=np.ascontiguousarray(np.ldexp(data.Y, -ey).astype(data.Y.dtype, copy=False)))
    alpha = np.asarray(params["alpha"], dtype=np.float64)  # scalar, or one per target
    if np.ndim(ex) == 0:
        alpha = scaled_alpha(params["alpha"], alpha, ex)
    alpha = float(alpha) if alpha.ndim == 0 else alpha
    result = solver.fit({**params, "alpha": alpha}, scaled, rescale=False)
    with np.errstate(over="ignore"):  # reported below
        coef = np.ldexp(result.coef, (ey[:, None] - np.asarray(ex))).astype(result.coef.dtype, copy=False)
        intercept = np.ldexp(result.intercept, ey).astype(result.intercept.dtype, copy=False)
    if not (np.isfinite(coef).all() and np.isfinite(intercept).all()):
        raise ValueError(
            f"the least-squares coefficients exceed float64's range: X's values (up to about 2**{np.max(ex)}) are "
            f"too small for y's (up to about 2**{int(ey.max())}); multiply X by a power of ten."
        )
    return replace(result, coef=coef, intercept=intercept, state=_Rescaled(result.state))


def _probe_slices(n: int, p: int) -> list[slice] | None:
    """``PROBE_PARTS`` evenly spaced row slices of ``max(PROBE_MIN_ROWS, 8 p)`` rows in all, or None when they
    would be more than 1/32 of the ``n`` rows (the probe would then cost more than it can save)."""
    rows = max(PROBE_MIN_ROWS, 8 * p)
    if 32 * rows > n:
        return None
    part = -(-rows // PROBE_PARTS)
    return [slice(start, start + part) for start in np.linspace(0, n - part, PROBE_PARTS).astype(int)]


def probe_needs_qr(params: dict, data: Data) -> bool:
    """Whether Cholesky already rejects the Gram of a sample of rows spread evenly through ``data``.

    A design that is ill-conditioned or rank-deficient (polynomial features, one-hot columns with an intercept) is
    so in any sizeable sample of its rows, so the fit can go straight to QR instead of discarding a full Gram
    pass. A sample can be worse conditioned than the whole (sorted rows, rare levels): the fit then takes the QR
    path, which is never less accurate, only slower. Deterministic: the sample depends on the shape alone.
    """
    slices = _probe_slices(data.X.shape[0], data.X.shape[1] + data.Y.shape[1])
    if slices is None or is_sparse(data.X):  # sparse X: the full Gram (CSR kernel) decides
        return False
    params = {**params, "alpha": float(np.min(params["alpha"]))}  # per-target alpha: the least ridge decides
    sw = data.sample_weight
    parts = [Data(X=data.X[s], Y=data.Y[s], sample_weight=None if sw is None else sw[s], y_was_1d=data.y_was_1d)
             for s in slices]
    merger = TreeMerger()
    for part in parts:  # one-thread BLAS when loaded: the process's would spin beside the pass that follows
        merger.push(_gram_segment(part, 0, serial=_tail_serial(data.X.shape[1])))
    sample = merger.result()
    if sample.weight <= 0 or not (np.isfinite(sample.gram).all() and np.isfinite(sample.mean).all()):
        return False  # nothing to judge by (or non-finite X): the full pass decides and reports
    # exactly dependent columns with a well-conditioned rest (one-hot with an intercept) solve from the Gram too
    return _cholesky(params, sample)[0] is None and pivoted(
        params, sample, lambda Q: sum(_null_pass_of(params, sample, part, Q) for part in parts), warn=False) is None


def needs_qr(params: dict, state: ClosedFormState) -> bool:
    """Whether ``state`` needs a second pass (:func:`chunk_qr_state`) for an accurate solve."""
    params = {**params, "alpha": float(np.min(params["alpha"]))}  # per-target alpha: the least ridge decides
    if state.r is not None:
        return False
    if params.get("positive") and state.gram is not None:  # (the constrained solve's own test: _positive_cholesky)
        _, _, _, live, _, info, rcond = _positive_cholesky(params, state, keep=True)
        return bool(live.size) and not (info == 0 and rcond >= RCOND_CHOLESKY)
    return _cholesky(params, state)[0] is None


# ---------------------------------------------------------------- constrained and per-target solves


def _target_state(state: ClosedFormState, j: int) -> ClosedFormState:
    """The statistics of ``[X, y_j]`` alone (target ``j``) from those of ``[X, Y]``."""
    d = state.n_features
    idx = np.r_[0:d, d + j]
    gram = None if state.gram is None else state.gram[np.ix_(idx, idx)]
    r = None if state.r is None else _triangle(state.r[:, idx], d + 1)
    return replace(state, n_targets=1, mean=state.mean[idx], gram=gram, r=r)


def _per_target(params: dict, state: ClosedFormState, alpha: np.ndarray) -> FitResult:
    """Ridge with one ``alpha`` per target (as ``Ridge(alpha=array)``, which broadcasts a length-1 array): one
    solve per target, stacked."""
    if alpha.shape == (1,):
        alpha = np.repeat(alpha, state.n_targets)
    if alpha.shape != (state.n_targets,):
        raise ValueError(f"alpha has shape {alpha.shape}; an array alpha needs one value per target, "
                         f"shape ({state.n_targets},).")
    return _stacked([finish({**params, "alpha": float(a)}, _target_state(state, j)) for j, a in enumerate(alpha)],
                    state)


def _stacked(parts: list, state: ClosedFormState) -> FitResult:
    """One fit of every target from ``parts``, one target's fit each (:func:`_per_target`)."""
    paths = [part.attrs["solver_"] for part in parts]
    attrs = {"solver_": max(set(paths), key=paths.index) if len(set(paths)) == 1 else "+".join(paths),
             "n_iter_": 1, "rcond_": min(part.attrs["rcond_"] for part in parts),
             "rank_": min(part.attrs["rank_"] for part in parts), "singular_": None}
    return FitResult(np.vstack([part.coef for part in parts]), np.concatenate([part.intercept for part in parts]),
                     state, attrs)


def _pivoted_per_target(params: dict, state: ClosedFormState, null_pass: Callable[[np.ndarray], float]
                        ) -> FitResult | None:
    """One ``alpha`` per target (no constraints) where the least one's normal equations need more than Cholesky:
    each target by Cholesky or the pivoted path, the null space confirmed once per candidate by ``null_pass`` (as
    :func:`pivoted` takes it; its passes shared), else None (the caller goes to QR). The fit's state keeps the
    null space, so that ``partial_fit`` goes on by :func:`pivoted_after`. A target of ``alpha=0`` beside ridge
    ones had sent every target to QR and the SVD (one-hot CSR of 50,000 x 710, ``alpha=[0, 1e-3]``: 2.2 s, where
    each alone takes 0.01-0.05 s)."""
    alpha = np.asarray(params["alpha"], dtype=np.float64)
    k = state.n_targets
    if params.get("positive") or alpha.shape not in ((1,), (k,)):
        return None  # (the per-target solve names a wrong shape)
    passes = {}

    def shared(Q):
        key = (Q.shape, Q.tobytes())
        if key not in passes:
            passes[key] = null_pass(Q)
        return passes[key]

    parts = []
    for j, a in enumerate(np.broadcast_to(alpha, (k,))):
        sub, one = {**params, "alpha": float(a)}, _target_state(state, j)
        part = _cholesky(sub, one)[0]
        if part is None:
            part = pivoted(sub, one, shared, warn=False)
        if part is None:
            return None
        parts.append(part)
    nulls = [part.state.null for part in parts if getattr(part.state, "null", None) is not None]
    result = _stacked(parts, replace(state, null=nulls[0]) if nulls else state)  # (one null space: X's)
    if result.attrs["rank_"] < state.n_features:
        _warn_rank(result.attrs["rank_"], state.n_features, result.attrs["solver_"])
    return result


def _split_bound(split: tuple, j: int, v: np.ndarray, top: float) -> float:
    """:func:`_solve_positive`'s measure of ``v`` for target ``j`` on the SVD's ``split`` (kept rows, their
    right-hand sides, dropped rows): the residual with the dropped directions' share, plus the rounding of that
    product, ``eps d s_max ||v||`` (a huge ``v``, 6e14 where the minimiser's norm is 4e2, computes it wrongly)."""
    kept, rhs, dropped = split
    residual = math.hypot(float(np.linalg.norm(kept @ v - rhs[:, j])), float(np.linalg.norm(dropped @ v)))
    return residual + EPS * v.shape[0] * top * float(np.linalg.norm(v))


# Margin on the rounding bound of the NNLS gradient (see _nnls_kkt): over the 165 solves of the positive=True
# tests, SciPy's optimal results came within 0.65 of the bound's units; the one suboptimal result was 5.9e10
# units off (the reported one: a gradient of 0.69 on its free set).
NNLS_KKT_MARGIN = 64.0


def _nnls_kkt(M: np.ndarray, c: np.ndarray, v: np.ndarray) -> bool:
    """Whether ``v >= 0`` meets the optimality conditions of ``min ||M v - c||`` over ``v >= 0`` to rounding:
    the gradient ``g = M^T (M v - c)`` is zero where ``v > 0`` and non-negative where ``v = 0``, each entry within
    ``NNLS_KKT_MARGIN`` times its rounding bound ``m eps (|M|^T (|M| |v| + |c|))_j`` (Higham 2002, sec. 3.5)."""
    g = M.T @ (M @ v - c)
    bound = NNLS_KKT_MARGIN * M.shape[0] * EPS * (np.abs(M).T @ (np.abs(M) @ np.abs(v) + np.abs(c)))
    bound = np.maximum(bound, np.finfo(np.float64).tiny)
    return bool(np.all(np.where(v > 0, np.abs(g), -g) <= bound))


def _nnls(M: np.ndarray, c: np.ndarray, maxiter: int) -> np.ndarray:
    """``argmin ||M v - c||`` over ``v >= 0``: SciPy's Lawson-Hanson NNLS, checked by its optimality conditions
    (:func:`_nnls_kkt`); where they fail, or it raises, bounded-variable least squares (``lsq_linear``'s BVLS,
    Stark & Parker 1995) from scratch, the lower of the two kept. SciPy's reimplementation (1.12 on) returns
    suboptimal points silently on some inputs (scipy/scipy#25389): on a ridge's QR system beside all-zero
    columns it stopped with a gradient of 0.69 on its free set, the fit 1% above the constrained minimum."""
    import scipy.optimize

    try:
        v = scipy.optimize.nnls(M, c, maxiter=maxiter)[0]
    except RuntimeError:  # ("Maximum number of iterations reached")
        v = None
    if v is not None and _nnls_kkt(M, c, v):
        return v
    w = np.maximum(scipy.optimize.lsq_linear(M, c, bounds=(0.0, np.inf), method="bvls", tol=EPS).x, 0.0)
    if v is None or np.linalg.norm(M @ w - c) <= np.linalg.norm(M @ v - c):
        return w
    return v


# _nnls_pivoting's exchanges at most (each a solve of the free block), past which Lawson-Hanson runs from scratch:
# from the unconstrained solution's signs, Gaussian designs of 200-2,000 columns (about half the coefficients at
# their bound) took 3-5 solves, and the QR path's exchanges on M one from the free set found on M^T M.
NNLS_PIVOTING_MAX_ITER = 40


def _nnls_pivoting(A: np.ndarray, b: np.ndarray, start: np.ndarray, M: np.ndarray | None = None,
                   c: np.ndarray | None = None) -> np.ndarray | None:
    """``argmin v^T A v / 2 - b^T v`` over ``v >= 0`` for symmetric positive definite ``A`` (the scaled normal
    equations, ``min ||M v - c||`` with ``A = M^T M``, ``b = M^T c``) by block principal pivoting (Kim & Park,
    "Fast nonnegative matrix factorization: an active-set-like method and comparisons", *SIAM J. Sci. Comput.* 33,
    2011, Algorithm 1, with Judice & Pires' backup rule), from the free set ``start > 0`` (the unconstrained
    solution's positive entries); None where it does not settle within ``NNLS_PIVOTING_MAX_ITER`` exchanges or a
    free block's factorisation fails.

    Each exchange solves the free block exactly and moves every infeasible variable at once (a free one below 0,
    a held one whose gradient is below minus its rounding), where Lawson-Hanson frees one variable per step: on
    10,000 x 2,000 Gaussian rows with ``alpha=1`` (965 coefficients free) SciPy's NNLS took 3.5 s of the fit's 4.4,
    these exchanges 0.3 s. The free block is solved by the Cholesky factor of ``A``'s block, or, given ``M`` and
    ``c`` (the QR path, whose ``R11`` the normal equations would square: near-interpolating fits on columns 1e-7
    apart ended 1e4-1e13 times Lawson-Hanson's objective, helper-144), by least squares on ``M``'s free columns,
    the gradient then ``M^T (M v - c)``. The caller checks the result's optimality conditions
    (:func:`_nnls_kkt`)."""
    import scipy.linalg

    d = A.shape[0]
    free = start > 0
    if M is None:
        absA, absb = np.abs(A), np.abs(b)

        def gradient(v):
            return A @ v - b, d * EPS * (absA @ np.abs(v) + absb)
    else:
        absM, absc = np.abs(M), np.abs(c)

        def gradient(v):
            return M.T @ (M @ v - c), d * EPS * (absM.T @ (absM @ np.abs(v) + absc))

    fewest, tries = d + 1, 3
    for _ in range(NNLS_PIVOTING_MAX_ITER):
        v = np.zeros(d)
        idx = np.flatnonzero(free)
        if idx.size and M is None:
            U = np.array(A[np.ix_(idx, idx)], order="F")
            if _kernels.potrf_upper(U, serial=_tail_serial(idx.size)) != 0:
                return None
            v[idx] = scipy.linalg.cho_solve((U, False), b[idx], check_finite=False)
        elif idx.size:
            qc, R = scipy.linalg.qr_multiply(M[:, idx], c[None, :], mode="right")  # (c^T Q and R)
            if not np.all(np.diagonal(R)):
                return None
            v[idx] = scipy.linalg.solve_triangular(R[: idx.size, : idx.size], qc[0, : idx.size], check_finite=False)
        g, tol = gradient(v)
        infeasible = np.where(free, v < 0, g < -tol)
        count = int(np.count_nonzero(infeasible))
        if count == 0:
            return v
        if count < fewest:  # progress: exchange them all (and allow three more full exchanges without it)
            fewest, tries = count, 3
        elif tries > 0:
            tries -= 1
        else:  # the backup rule: only the last infeasible variable, which ends any cycle (Judice & Pires 1994)
            last = np.flatnonzero(infeasible)[-1]
            infeasible[:] = False
            infeasible[last] = True
        free ^= infeasible
    return None


def _positive_cholesky(params: dict, state: ClosedFormState, keep: bool = False):
    """:func:`_solve_positive`'s Cholesky attempt on a Gram state: ``(A, B, scale, live, U, info, rcond)``, the
    column-scaled normal equations of the columns with data (``live``), their factor and LAPACK's ``info``, and
    the reciprocal condition estimate (0 where the factorisation failed or no column has data).

    Columns without data (zero, or constant beside the intercept: zero rows and columns but for a ridge's
    diagonal, and no right-hand side) are decoupled, coefficient 0; left in, the ridge's unit columns made SciPy's
    NNLS stop short (769 empty hashed columns of 1,024, alpha 1e-8: 1.3e-7 of the objective above the optimum,
    gradient 2e-7). :func:`needs_qr` asks the same question for ``positive=True``: with those columns in, the
    estimate of all columns' factor read 0.41 where the live columns' is 3e-8, so an in-memory fit took no second
    pass, and the solve, rejecting Cholesky, fell back to the eigendecomposition, warned that "the rows cannot be
    read again"."""
    memo = _POSITIVE_ATTEMPTS.get()
    key = (bool(params["fit_intercept"]), float(np.min(params["alpha"])))
    if memo:  # (one entry, taken once; the Gram it holds cannot be freed, so its identity is its own)
        gram, was, result = memo.pop()
        if gram is state.gram and was == key:
            return result
    result = _positive_factor(params, state)
    if keep and memo is not None:
        memo.append((state.gram, key, result))
    return result


# The in-memory fit's Cholesky attempt under positive=True (a list set for the fit's length, ClosedForm.fit):
# needs_qr's attempt (keep) is the solve's that follows it (_solve_positive), where each had factored the Gram (a
# second 1.3 s of a 13 s fit at 4,096 columns).
_POSITIVE_ATTEMPTS: contextvars.ContextVar[list | None] = contextvars.ContextVar("fastopt_positive_attempts",
                                                                                 default=None)


def _positive_factor(params: dict, state: ClosedFormState):
    """:func:`_positive_cholesky`'s work, not memoised."""
    A, B, scale = _scaled_normal_equations(params, state)
    live = np.arange(A.shape[0])
    decoupled = (np.count_nonzero(A, axis=0) <= 1) & ~B.any(axis=1)
    if decoupled.any():
        live = np.flatnonzero(~decoupled)
        if not live.size:
            return A, B, scale, live, None, 1, 0.0
        A, B = np.ascontiguousarray(A[np.ix_(live, live)]), B[live]
    # (by the closed form's call, blocked above POTRF_BLOCKED_MIN columns: SciPy's threaded dpotrf crashed the
    # process on 16,384 columns, fastopt/_kernels_tail.pxi; A stays as it is, the caller reads it)
    U = np.array(A, order="F")
    info = _kernels.potrf_upper(U, serial=_tail_serial(U.shape[0]))
    # (U is read only where info is 0: _factor_rcond then clears its strict lower triangle, as _cholesky's)
    rcond = _factor_rcond(params, state, U, U.shape[0], np.abs(A).sum(axis=0).max()) if info == 0 else 0.0
    return A, B, scale, live, U, info, rcond


def _solve_positive(params: dict, state: ClosedFormState) -> FitResult:
    """Non-negative coefficients (``positive=True``): Lawson-Hanson NNLS (``scipy.optimize.nnls``) on the
    ``d x d`` triangular system ``M v = c`` equivalent to the least-squares problem, one target at a time (its
    result checked: :func:`_nnls`).

    ``M`` is the Cholesky factor of the column-scaled normal equations (``c = M^-T B``) when Cholesky is
    accepted, else the column-scaled ``R11`` of the QR path (``c = R12``), or, where that is rank-deficient to
    working precision (the cutoff of :func:`_solve_r`), its singular values and vectors above the cutoff,
    ``M = S_k V_k^T``, ``c = U_k^T R12`` (``solver_="svd"``; the other directions' equations belong to the
    residual; solved beside the full ``R11``, the lower in that residual plus the dropped directions' share kept),
    else (a Gram-only state that Cholesky rejects) the square root of the eigendecomposition. Column scales are
    positive, so ``v >= 0`` exactly when the coefficients are. On exactly dependent columns the minimiser is
    not unique; this returns the one NNLS reaches.
    """

    d = state.n_features
    M = None
    rcond = 0.0
    live = np.arange(d)
    rank = d
    if state.gram is not None:
        A, B, scale, live, U, info, rcond = _positive_cholesky(params, state)
        if not live.size:  # no column has data (a single row): every coefficient is 0
            return _result(params, state, np.zeros((d, B.shape[1])), "cholesky", 0.0, 0)
        m = live.size
        if info == 0 and rcond >= RCOND_CHOLESKY:
            M, c, path = U, _upper_solve(np.asfortranarray(U), m, B, trans=True, serial=_tail_serial(m)), "cholesky"
        elif state.r is None:
            lam, Q = np.linalg.eigh(A)
            keep = lam > _eigen_cutoff(state) * lam[-1]
            # Only the kept spectrum limits the accuracy. Exactly dependent columns (one-hot beside an intercept)
            # leave eigenvalues at their rounding, which are dropped, as the QR path's SVD drops its singular values
            # without a warning: partial_fit there warned of a reciprocal condition of 0 and reported full rank,
            # where fit gave rank 16 of 18, no warning, and the same predictions to 2e-14.
            if not lam[keep][0] >= RCOND_CHOLESKY * lam[-1]:
                _warn_eigh(rcond, "a non-negative solve on the eigendecomposition")
            rank = int(keep.sum())
            root = np.sqrt(lam[keep])
            M, c, path = root[:, None] * Q[:, keep].T, (Q[:, keep].T @ B) / root[:, None], "eigh"
    split = None
    if M is None:
        live = np.arange(d)
        R11, R12 = _r_system(params, state)
        scale = _pow2(np.linalg.norm(R11, axis=0))
        scale[scale == 0] = 1.0
        M, c, path = R11 / scale, R12, "qr"
        rcond, _ = lapack.dtrcon(M, norm="1", uplo="U", diag="N")
        cutoff = _rank_cutoff(state)
        if rcond < cutoff:
            # Rank-deficient: R11's rounding-sized pivots make equations of R12's entries there, which belong to
            # the residual, and NNLS can fit them with huge coefficients along the null directions (one-hot
            # 200/100/30 beside an intercept, 10,000 rows: 2 seeds of 8 stopped short, gradients 1e-4 of the
            # scale). The SVD's kept part (the cutoff of _solve_r) is the least-squares problem up to a constant,
            # but NNLS there leaves the null directions free and can move far along them (a cubic's bias column
            # beside the intercept: 3e18, the fit's rounding 60 times the minimum). Both are solved; each target
            # keeps the one lower in the kept part's residual with the dropped singular values' share of it,
            # ||S_k V_k^T v - U_k^T c||^2 + ||S_d V_d^T v||^2 (the null directions' cost without the residual's
            # equations), plus the rounding of that product, eps d ||R11|| ||v||.
            U, sv, Vt = np.linalg.svd(M)
            keep = sv > cutoff * sv[0]
            rank = int(keep.sum())
            split = (sv[keep, None] * Vt[keep], U[:, keep].T @ R12, sv[~keep, None] * Vt[~keep])
    V = np.zeros((d, c.shape[1]))
    solved, maxiter = [], 50 * max(live.size, 1)
    # Where M is triangular and nonsingular (the Cholesky and QR paths): the unconstrained solution where it is
    # feasible, else block principal pivoting from it, kept where it meets the optimality conditions
    # (:func:`_nnls_kkt`). On the QR path the free set it finds on M^T M is the start of exchanges whose free blocks
    # are least-squares solves on M's columns (the normal equations square R11's condition; from that set one or
    # two such solves). A block that fails, or a point the conditions refuse, goes to Lawson-Hanson on M itself.
    start = None
    if path in ("cholesky", "qr") and split is None:
        start = _upper_solve(np.asfortranarray(M), M.shape[0], c, serial=_tail_serial(M.shape[0]))
        if path == "qr":
            A, B = M.T @ M, M.T @ c
    for j in range(c.shape[1]):
        v = None
        if start is not None and np.all(np.isfinite(start[:, j])):
            if np.all(start[:, j] >= 0):  # the unconstrained minimum is feasible: it is the constrained one
                v = start[:, j]
            else:
                v = _nnls_pivoting(A, B[:, j], start[:, j])
                if path == "qr":  # the free set found on M^T M, then exchanges on M itself (_nnls_pivoting)
                    v = _nnls_pivoting(A, B[:, j], start[:, j] if v is None else v, M, c[:, j])
                if v is not None and not _nnls_kkt(M, c[:, j], v):
                    v = None
        if v is None:
            v = _nnls(M, c[:, j], maxiter)
        if split is not None:
            v_svd = _nnls(split[0], split[1][:, j], maxiter)
            if _split_bound(split, j, v_svd, sv[0]) < _split_bound(split, j, v, sv[0]):
                v, path = v_svd, "svd"
        solved.append(v)
    V[live] = np.column_stack(solved)
    return _result(params, state, V / scale[:, None], path, rcond, rank)


def finish(params: dict, state: ClosedFormState, *, rescaled: bool = False,
           null_pass: Callable[[np.ndarray], float] | None = None) -> FitResult:
    """Solve from merged statistics: Cholesky when well-conditioned, else the ``R`` factor (QR or SVD path).

    Parameters
    ----------
    params : dict
        ``estimator.get_params()``; uses ``fit_intercept`` and ``alpha``.
    state : ClosedFormState
    rescaled : bool, default=False
        The statistics are of data the caller rescaled (the in-memory fit's retry): a column with no spread and a
        tiny mean is then taken as constant rather than as underflow.
    null_pass : callable, optional
        A pass over the rows (:func:`pivoted`'s): where Cholesky is rejected and there is no ``R``, the pivoted path
        is tried with it before the eigensolve.

    Returns
    -------
    FitResult
        ``coef`` (k, d) and ``intercept`` (k,) in the input dtype; ``attrs``: ``solver_``, ``n_iter_`` (1),
        ``rcond_`` (LAPACK estimate for the column-scaled matrix factorised), ``rank_``, ``singular_`` (singular
        values of the centred weighted design on the SVD path, else None).

    Raises
    ------
    ValueError
        When a column's squares under- or overflow float64 (:func:`scale_trouble`), naming ``X`` or ``y``.
    """
    if (column := scale_trouble(state, constant_ok=rescaled)) is not None:
        raise _scale_error(state, column)
    alpha = np.asarray(params["alpha"], dtype=np.float64)
    if alpha.ndim:
        return _per_target(params, state, alpha)
    if params.get("positive"):
        return _solve_positive(params, state)
    if state.gram is not None:
        result, rcond = _cholesky(params, state)
        if result is not None:
            return result
        if state.r is None:
            if null_pass is not None and (result := pivoted(params, state, null_pass)) is not None:
                return result
            _warn_eigh(rcond)
            return _solve_eigh(params, state)
    return _solve_r(params, state)


# ---------------------------------------------------------------- refinement of small fits

# A fit from memory with at most this many entries in [X, Y] gets one step of extra-precise refinement. The
# compensated pass costs about 3.5 ns an entry here (0.23 ms at 65,536 entries, when the whole fit of 6,553 x 9
# took 0.3-0.6 ms): at this limit it adds about 0.06 ms plus 0.03 ms of Python to fits of 0.2-0.3 ms. On large
# problems a second read of X would add about a quarter to the QR fit.
REFINE_MAX_ENTRIES = 16384
# Refinement of a QR solution converges when cond(R11) * eps is small; below this reciprocal condition of the
# column-scaled R11 the correction is left out (Filip: rcond 1.6e-10, one step lost 0.1 digit).
REFINE_MIN_RCOND = float(np.sqrt(EPS))


def _correction(params: dict, state: ClosedFormState, G: np.ndarray) -> np.ndarray:
    """``(Xc^T W Xc + W alpha I)^-1 G`` (uncentred without intercept) from ``R11``, or else the scaled
    normal equations' Cholesky factor."""
    if state.r is not None:  # a zero column of R11 (see _live_triangle) has no correction
        R11 = _r_system(params, state)[0]
        live, R, _ = _live_triangle(R11, np.zeros((R11.shape[0], 0)))
        delta = np.zeros_like(G, dtype=np.float64)
        delta[live] = _cho_solve(np.asfortranarray(R), G[live])
        return delta
    A, _, scale = _scaled_normal_equations(params, state)
    U = A.T
    _kernels.potrf_upper(U, serial=_tail_serial(U.shape[0]))  # accepted by _cholesky, so positive definite
    return _cho_solve(U, G / scale[:, None]) / scale[:, None]


def _refined(params: dict, data: Data, result: FitResult) -> FitResult:
    """``result`` after one step of iterative refinement with residuals computed in twice the working precision
    (compensated dot products, :func:`fastopt._kernels.refine_residual`), when the fit is small enough that the
    extra pass costs little (:data:`REFINE_MAX_ENTRIES` entries of ``[X, Y]``).

    The residual ``r = y - intercept - X coef`` of a good solution cancels most of ``y``'s digits; evaluated in
    float64 its rounding limits the solution's accuracy, evaluated in about twice the precision it does not
    (Demmel, Hida, Kahan, Li, Mukherjee & Riedy, *Error bounds from extra-precise iterative refinement*, ACM TOMS
    32, 2006; Bjorck, *Numerical Methods for Least Squares Problems*, 1996, 2.9). The correction is solved with
    the factor the fit already has. Only float64 ``X`` on the ``"cholesky"`` and ``"qr"`` paths (and
    ``"qr"`` only when ``R11`` is well enough conditioned for the step to converge); coefficients returned in
    float32 would not show it.
    """
    state, attrs, X, Y = result.state, result.attrs, data.X, data.Y
    if (attrs["solver_"] not in ("cholesky", "qr") or params.get("positive") or np.ndim(params["alpha"])
            or X.dtype != np.float64 or Y.dtype != np.float64
            or X.shape[0] * (X.shape[1] + Y.shape[1]) > REFINE_MAX_ENTRIES
            or (attrs["solver_"] == "qr" and attrs["rcond_"] < REFINE_MIN_RCOND)):
        return result
    d, k = state.n_features, state.n_targets
    sw = normalised_weights(data).sample_weight  # the weights the factor was built from
    grad, rsum = np.empty((k, d)), np.empty(k)
    coef, intercept = result.coef.astype(np.float64), result.intercept.astype(np.float64)
    # Sparse X is densified: at most REFINE_MAX_ENTRIES values (128 KiB), below the 2 MiB blocks of its QR path.
    X = X.toarray() if is_sparse(X) else np.ascontiguousarray(X)
    _kernels.refine_residual(X, np.ascontiguousarray(Y),
                             None if sw is None else np.ascontiguousarray(sw, dtype=np.float64),
                             coef, intercept, grad, rsum)
    G = grad.T - state.weight * params["alpha"] * coef.T
    m = state.mean[:d]
    if params["fit_intercept"]:
        G -= np.outer(m, rsum)  # centred: sum_i w_i r_i (x_i - m)
        # the factor took a column constant to round-off as exactly constant (zero row and column; with a ridge
        # only W alpha on its diagonal): its gradient here is the spread the solve set aside, and the correction
        # G_j / (W alpha) turned it into a coefficient of 1 / alpha (1e12 + 0.01 z: 9e5 at alpha 1e-8)
        G[constant_columns(state)] = 0.0
    delta = _correction(params, state, G)
    if not np.all(np.isfinite(delta)):
        return result
    coef = coef + delta.T
    if params["fit_intercept"]:
        intercept = intercept + (rsum / state.weight - delta.T @ m)
    return replace(result, coef=coef, intercept=intercept)


# ---------------------------------------------------------------- fewer rows than columns: the kernel form


def kernel_fit(params: dict, data: Data, constant_ok: bool = False) -> FitResult | None:
    """The fit of dense ``X`` in memory with fewer rows (of positive weight) than columns by the ``m x m`` system
    of its rows (the kernel, or dual, form of ridge regression; ``solver_="kernel_cholesky"``), or None where it
    does not apply or its Cholesky is rejected.

    With ``Xw`` the centred rows scaled by ``sqrt(w_i)`` and ``Yw`` the targets alike, the ridge solution is
    ``coef^T = Xw^T a``, ``(Xw Xw^T + W alpha I) a = Yw``: ``m^2 d + m^3 / 3`` flops where the ``d x d`` normal
    equations cost ``m d^2 + d^3 / 3`` (scikit-learn's ``Ridge`` solves the same system there). With an intercept,
    centring leaves ``u = sqrt(w)`` in the null space of ``Xw^T`` (``sum_i w_i (x_i - mean) = 0``), an eigenvalue
    of only ``W alpha``; the solve lifts it (adds ``tau u u^T / ||u||^2``), which changes neither ``Xw^T a`` nor,
    since ``u^T Yw = 0``, ``a`` off ``u``: the system's condition is then the design's own spectrum's. Without a
    ridge the same equations give the minimum-norm least-squares solution (``numpy.linalg.lstsq``'s), where the
    centred rows are independent. The Cholesky test is the normal equations' (``RCOND_CHOLESKY``); where it fails,
    or with ``positive=True``, the caller goes on to the ``d x d`` paths. The state keeps the centred, weighted
    rows (:attr:`ClosedFormState.rows`, no larger than ``X``): ``partial_fit`` triangularises them to add rows.
    ``constant_ok``: as :func:`scale_trouble`'s (a refit of rescaled data).
    """
    X = data.X
    if is_sparse(X) or not isinstance(X, np.ndarray) or params.get("positive"):
        return None
    n, d = X.shape
    data, weight_exp = _normalised(data)
    sw = data.sample_weight
    rows = slice(None) if sw is None else np.flatnonzero(sw > 0)
    m = n if sw is None else rows.size
    if not 1 < m < d:
        return None
    alpha = np.broadcast_to(np.asarray(params["alpha"], dtype=np.float64), (data.Y.shape[1],))
    k = data.Y.shape[1]
    with np.errstate(all="ignore"):
        # the state's rows: centred, scaled by sqrt(w) (the caller's arrays only read); Fortran order, so that the
        # X block is contiguous for dsyrk (a copy of it cost a fifth of the fit)
        centred = np.empty((m, d + k), order="F")
        centred[:, :d], centred[:, d:] = X[rows], data.Y[rows]
        w = np.ones(m) if sw is None else np.asarray(sw[rows], dtype=np.float64)
        weight = float(w.sum())
        mean = (w @ centred) / weight
        centred -= mean
        root = np.sqrt(w)
        if sw is not None:
            centred *= root[:, None]
    state = ClosedFormState(d, k, X.dtype.name, n, weight, mean, weight_exp=weight_exp, rows=centred)
    # a column (of X or y) whose squares under- or overflow: the d x d paths rescale; a non-finite value, their
    # error. (One range for X and y together let y * 1e-318 through: its denormal digits, 9e-5 off lstsq.)
    if scale_trouble(state, constant_ok=constant_ok) is not None:
        return None
    Xw, Yw = centred[:, :d], centred[:, d:]
    if params["fit_intercept"]:
        # a column constant to round-off is exactly constant (constant_columns' rule): coefficient 0 (its rounding
        # noise zeroed in the state's rows too, where the solve would take the column as constant anyway)
        spread = np.einsum("ij,ij->j", Xw, Xw)
        level = weight * np.square(mean[:d])
        Xw[:, (level > 0) & (spread <= CONSTANT_RTOL**2 * level)] = 0.0
    else:  # uncentred rows, scaled by sqrt(w)
        Xw = np.add(Xw, root[:, None] * mean[:d], order="F")  # (Fortran order, as dsyrk reads it)
        Yw = Yw + root[:, None] * mean[d:]
    K = _stoppable(partial(_rows_product, Xw), float(m) * m * d)  # Xw Xw^T, upper triangle; the lower one zero
    diagonal = np.diag(K).copy()
    # squares out of float64's range (a row's overflow, or X tiny beside y: the dual vector a ~ y / |x|^2 then
    # overflowed where coef ~ y / |x| did not): the d x d paths, which rescale, take over
    if not (np.all(np.isfinite(diagonal)) and np.max(diagonal) < SCALE_LIMIT and np.max(diagonal) > 1 / SCALE_LIMIT):
        return None
    # In place, in column slices (K is Fortran-ordered): fresh m x m temporaries (K + K.T, the lift's outer
    # product, the scaled copy) cost 1.3-1.9 s of a 5,791 x 5,792 fit, 1.2-1.4x Ridge's time
    u = root / np.sqrt(weight) if params["fit_intercept"] else None
    tau = float(np.sum(diagonal)) / m
    for j in range(0, m, _ROW_SLICE):
        J = slice(j, min(j + _ROW_SLICE, m))
        K[J.stop :, J] = K[J, J.stop :].T  # the lower triangle from the upper (exact)
        block = K[J, J]
        lower = np.tril_indices(J.stop - j, -1)
        block[lower] = block.T[lower]
        if u is not None:
            K[:, J] += tau * u[:, None] * u[None, J]
    if u is not None:
        diagonal += tau * np.square(u)
    coef_t = np.empty((d, Yw.shape[1]))
    rcond = 1.0
    alphas = np.unique(alpha)
    for i, a in enumerate(alphas):
        targets = np.flatnonzero(alpha == a)
        scale = _pow2(np.sqrt(diagonal + weight * a))
        A = K if i == alphas.size - 1 else K.copy(order="F")  # (the last alpha's solve takes K itself)
        for j in range(0, m, _ROW_SLICE):  # powers of two: exact, and symmetric
            J = slice(j, min(j + _ROW_SLICE, m))
            A[:, J] /= scale[:, None]
            A[:, J] /= scale[J]
        A.flat[:: m + 1] = (diagonal + weight * a) / scale**2
        try:  # (A.T: the same symmetric matrix, C-ordered, as _definite_solve takes it)
            V, rc = _definite_solve(params, state, A.T, Yw[:, targets] / scale[:, None])
        except ValueError:  # non-finite statistics: the d x d paths report or rescale
            return None
        if V is None:
            return None
        # coef^T = Xw^T S^-1 V: the dual vector S^-1 V itself may overflow where the coefficients do not
        coef_t[:, targets] = (Xw / scale[:, None]).T @ V
        rcond = min(rcond, rc)
    if not np.all(np.isfinite(coef_t)):
        return None
    # (rank_: with a ridge on every target, the ridge system's, as the other paths report it)
    rank = d if np.all(alpha > 0) else m - bool(params["fit_intercept"])
    if rank < d:  # the answer is qualified, as the SVD path's (which warned on these designs)
        _warn_rank(rank, d, "kernel_cholesky", f"{m} rows of positive weight"
                   + (", centred on their mean" if params["fit_intercept"] else ""))
    return _result(params, state, coef_t, "kernel_cholesky", rcond, rank)


# Columns of the rows' product per dsyrk call: the kernel form's product stops between calls on Ctrl-C (a call on
# the widest rows' system, 5,792 rows, is then at most 8.6e9 flops, about 0.2 s here).
KERNEL_BLOCK_COLUMNS = 256


def _rows_product(Xw: np.ndarray, halt: np.ndarray) -> np.ndarray:
    """``Xw Xw^T`` (upper triangle; Fortran order, its strict lower triangle zero) by dsyrk over blocks of
    ``KERNEL_BLOCK_COLUMNS`` columns, summed in that fixed order, stopping early where ``halt`` is set
    (:func:`_stoppable`); ``Xw`` Fortran-ordered."""
    m, d = Xw.shape
    K = np.zeros((m, m), order="F")
    for j in range(0, d, KERNEL_BLOCK_COLUMNS):
        if halt[0]:
            break
        _kernels.syrk_rows(Xw[:, j : j + KERNEL_BLOCK_COLUMNS], K, 1.0 if j else 0.0)
    return K


# The params key that lets the closed form try kernel_fit where solver="auto" chose QR (fewer rows than columns and
# no ridge: fastopt._solvers.fit_params); an explicit solver="qr" never takes it.
KERNEL_KEY = "_closed_form_kernel"


# ---------------------------------------------------------------- registry entries


class _ClosedForm(Solver):
    """A registry entry: ``stable=False`` is ``solver="normal"``, ``stable=True`` is ``solver="qr"``."""

    losses = frozenset({"squared_error"})
    chunked = "statistics"  # chunks' sufficient statistics merge exactly
    per_target_alpha = True
    forms_ridge = True
    positive = True
    # Sparse X: the Gram from the compiled CSR kernel (fastopt._sparse), QR from densified row blocks.
    supports_sparse = True

    def __init__(self, stable: bool):
        self.stable = stable
        self.name = "qr" if stable else "normal"

    def checks_finite_X(self, params: dict) -> bool:
        """The Gram kernel reports non-finite X itself (see chunk_state); the QR path relies on validation."""
        return not self.stable

    def fit(self, params: dict, data: Data, state=None, *, rescale: bool = True) -> FitResult:
        """One pass for the statistics: QR directly when ``solver="qr"`` or the probe rejects Cholesky, else the
        Gram; a second (QR) pass over ``data.X`` only if the full Gram's Cholesky is rejected; a refit of exactly
        rescaled data if the statistics under- or overflow (:func:`scale_trouble`). Small fits are refined
        (:func:`_refined`). Fewer rows than columns: the kernel form first (:func:`kernel_fit`)."""
        if (not self.stable or params.get(KERNEL_KEY)) \
                and (result := kernel_fit(params, data, constant_ok=not rescale)) is not None:
            return result
        if self.stable or probe_needs_qr(params, data):
            stats = chunk_qr_state(params, data)
            if scale_trouble(stats, constant_ok=not rescale) is not None:
                return self._rescale(params, data, stats, rescale)
            return _refined(params, data, finish(params, stats, rescaled=not rescale))
        stats = chunk_state(params, data)
        if scale_trouble(stats, constant_ok=not rescale) is not None:
            return self._rescale(params, data, stats, rescale)
        if params.get("positive") or np.ndim(params["alpha"]):  # constrained or per-target solves
            token = _POSITIVE_ATTEMPTS.set([])  # (needs_qr's Cholesky attempt is the solve's)
            try:
                if needs_qr(params, stats):  # (a Cholesky of the least ridge's equations: asked once)
                    result = pivoted_any(params, stats, lambda Q: _null_pass_of(params, stats, data, Q))
                    if result is not None:
                        return result
                    # R with the means it was centred on
                    stats = replace(chunk_qr_state(params, data), gram=stats.gram, raw_diag=stats.raw_diag)
                return finish(params, stats, rescaled=not rescale)
            finally:
                _POSITIVE_ATTEMPTS.reset(token)
        result = None if cholesky_futile(params, data) else _cholesky(params, stats)[0]
        if result is None:
            # exactly dependent columns, confirmed by a pass over X (O(n d) per null direction); not refined (the
            # refinement solves with the full Cholesky factor or R11)
            attempts = [lambda: pivoted(params, stats, lambda Q: _null_pass_of(params, stats, data, Q))]
            if params.get(AUTO_KEY):  # the cheaper of the two first (fastopt._krylov.pivoted_first)
                from fastopt import _krylov  # (it imports this module)

                n, d = data.X.shape
                first = _krylov.pivoted_first(n, d, data.X.nnz, data.Y.shape[1])
                attempts.insert(1 if first else 0, lambda: krylov_instead(params, data, stats))
            for attempt in attempts:
                if (result := attempt()) is not None:
                    return result
            # R with the means it was centred on (the intercept is computed from them)
            result = _solve_r(params, replace(chunk_qr_state(params, data), gram=stats.gram))
        return _refined(params, data, result)

    def _rescale(self, params: dict, data: Data, stats: ClosedFormState, rescale: bool) -> FitResult:
        """The fit of exactly rescaled data when ``stats`` under- or overflow (first attempt; sparse X scales its
        stored values only), else the error naming the column at fault."""
        # validation's error for NaN or infinity (which assume_finite=True skips) before blaming a column's scale
        refuse_nonfinite_data(data)
        if rescale:
            return _rescaled_fit(self, params, data)
        raise _scale_error(stats, scale_trouble(stats, constant_ok=not rescale), data.sample_weight, rescaled=True)

    def partial_fit(self, params: dict, data: Data, state=None) -> FitResult:
        """Merge this chunk's statistics (with ``R`` factors, see the module docstring) and solve."""
        state = with_r(state)  # (after the kernel form: its rows, triangularised)
        if isinstance(state, _Rescaled):
            raise ValueError(
                "the previous fit had to rescale X and y (values too large or too small to square in float64), "
                "so its statistics cannot take more rows: rescale X and y, then call fit or partial_fit again."
            )
        # R factors merge only with R factors: after a state without them (a fit's Gram) the chunk's would be
        # dropped, so only its Gram is computed (partial_state's R costs about twice the Gram)
        chunk = chunk_state(params, data) if gram_only(state) else partial_state(params, data)
        if state is None:
            # The pivoted path as fit takes it, its null space confirmed on this call's rows (all the rows so far),
            # so later calls go on from its certificate (pivoted_after). One-hot CSR rows with an intercept took
            # the eigensolve, an IllConditionedWarning of a reciprocal condition of 1e-18, where fit names the rank.
            def null_pass(Q):
                return _null_pass_of(params, chunk, data, Q)

            if np.ndim(params["alpha"]) and needs_qr(params, chunk):  # (one alpha per target: passes shared)
                result = pivoted_any(params, chunk, null_pass)
                if result is not None:
                    return result
            return finish(params, chunk, null_pass=null_pass)  # (its one Cholesky decides)
        merged = merge_states(state, chunk)
        result = pivoted_after(params, state, merged, lambda Q: _null_pass_of(params, merged, data, Q))
        return finish(params, merged) if result is None else result


def cholesky_futile(params: dict, data: Data) -> bool:
    """Whether the Cholesky of sparse ``data``'s centred normal equations is sure to be rejected, so is not tried:
    an intercept without a ridge, beside indicator columns that sum to a constant in every row, all of them or one
    feature's adjacent levels (:func:`fastopt._sparse.dummy_trap`: one-hot columns of every categorical feature, or
    of one whose levels were not dropped). The
    centred design then has an exact null vector, so the computed equations' reciprocal condition is of the
    order of the rounding (1e-16 relative), not ``RCOND_CHOLESKY``. Tested where the test costs less than the
    factorisation it spares (:func:`fastopt._krylov.trap_test_first`)."""
    from fastopt import _krylov  # (it imports this module)

    X = data.X
    return (is_sparse(X) and params["fit_intercept"] and not np.any(params["alpha"])
            and _krylov.trap_test_first(X.shape[1], X.nnz) and _sparse.dummy_trap(X))


# The params key that tells the closed form it runs for solver="auto" on sparse X (fastopt._solvers.fit_params).
AUTO_KEY = "_closed_form_auto"


def krylov_instead(params: dict, data: Data, stats: ClosedFormState) -> FitResult | None:
    """``solver="auto"`` on sparse ``X`` whose Gram's Cholesky was rejected, before or after the pivoted path
    (:func:`fastopt._krylov.pivoted_first`; that path takes exactly dependent columns such as one-hot columns with
    an intercept): LSQR (CGLS under a ridge) to round-off (``fastopt._krylov.auto_params``) within
    the iterations that the QR fallback would cost (it densifies ``X``: ``O(n d^2)``;
    :func:`fastopt._krylov.qr_fallback_iterations`), or None. The state kept is the Gram's, so that
    ``partial_fit`` and warm starts go on with the statistics. The answer is the Krylov solvers' (see
    ``fastopt._krylov``): on a rank-deficient design the least-squares solution of least norm in units where each
    centred column has norm 1, without ``RankDeficientWarning``. Measured: one-hot CSR of three categorical
    columns (300, 150 and 40 levels) beside three numeric ones, 200,000 rows, an intercept: 9.2 s (SVD of the
    densified rows) -> 0.05 s (LSQR), the same predictions; the pivoted path, cheaper there, now runs first."""
    from fastopt import _krylov, _solvers  # (both import this module)

    n, d = data.X.shape
    k = data.Y.shape[1]
    budget = _krylov.qr_fallback_iterations(n, d, data.X.nnz, k)
    solver = _krylov.SOLVERS[_solvers.krylov_for(params["alpha"])]
    result = solver._solve(_krylov.auto_params(params, budget), data, None, quiet=True)
    if result is None:
        return None
    return FitResult(result.coef, result.intercept, stats, result.attrs)


SOLVERS = {"normal": _ClosedForm(stable=False), "qr": _ClosedForm(stable=True)}
