"""Out-of-core fitting: stream chunks of rows through ``partial_fit``, one chunk in memory at a time.

This module serves :meth:`fastopt.LinearRegressor.fit_stream` and the iterative solvers on Dask arrays
(:mod:`fastopt._dask`). Every chunk goes through the estimator's own ``partial_fit``, so a streamed fit is,
by construction, the in-memory chunked ``partial_fit`` sequence with the same chunk order:

- the closed form merges each chunk's sufficient statistics exactly (any chunking gives one fit's answer);
- an iterative solver makes one pass over each chunk (rows shuffled inside the chunk by the solver's own
  random stream), and an *epoch* is one sweep over all chunks. When the chunks can be indexed (a list, or
  the blocks of a Dask array), each epoch visits them in a fresh permutation drawn from ``random_state``
  (in order when ``shuffle=False``), as ``dask_ml.wrappers.Incremental`` does.

Nothing here imports Dask.
"""
from __future__ import annotations

import sys
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import replace
from numbers import Integral
from typing import Any

import numpy as np

from fastopt import _closed_form, _solvers
from fastopt._validation import check_fit_data
from fastopt.exceptions import ConvergenceWarning

# Spawn key separating the chunk-order stream from the solver's own draws under the same integer seed.
_ORDER_STREAM = 0xC4A2
_END = object()


def dask_backend(*objs: Any):
    """:mod:`fastopt._dask` when any of ``objs`` is a Dask collection, else None.

    A Dask collection can only exist once Dask has been imported, so an absent ``dask`` module answers
    "no" for free: ``import fastopt`` never pulls Dask in, and ``fastopt._dask`` is imported only here.
    """
    dask = sys.modules.get("dask")
    if dask is None or not any(dask.is_dask_collection(o) for o in objs):
        return None
    from fastopt import _dask

    return _dask


@contextmanager
def naming(where: str):
    """Prefix plain ``ValueError``/``TypeError`` messages raised inside with ``where`` (e.g. "chunk 3").

    Subclasses (such as :class:`fastopt.exceptions.DivergenceError`) pass through unchanged: they carry
    their own context and callers may catch them by type.
    """
    try:
        yield
    except (ValueError, TypeError) as exc:
        if type(exc) in (ValueError, TypeError):
            raise type(exc)(f"{where}: {exc}") from exc
        raise


def order_rng(random_state) -> np.random.Generator:
    """The generator that draws chunk orders, derived from the estimator's ``random_state``.

    An integer seed gives a stream independent of the one the solver derives from the same seed; a
    ``RandomState`` instance is advanced by one draw; ``None`` gives fresh entropy.
    """
    if isinstance(random_state, np.random.RandomState):
        seed = int(random_state.randint(np.iinfo(np.int32).max))
    elif isinstance(random_state, Integral):
        seed = int(random_state)
    else:
        seed = None
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(_ORDER_STREAM,)))


def chunk_orders(random_state, n_chunks: int, shuffle: bool = True) -> Iterator[np.ndarray]:
    """The chunk order of each epoch, in turn, that a fit with these settings uses.

    Lets users (and tests) replay a distributed or streamed fit as an explicit in-memory ``partial_fit``
    sequence: ``itertools.islice(chunk_orders(est.random_state, n_chunks, est.shuffle), est.n_iter_)``.
    """
    rng = order_rng(random_state)
    while True:
        yield rng.permutation(n_chunks) if shuffle else np.arange(n_chunks)


def unpack(item: Any, where: str) -> tuple[Any, Any, Any]:
    """``(X, y)`` or ``(X, y, sample_weight)`` from one streamed item, with a clear error otherwise."""
    if isinstance(item, (tuple, list)) and len(item) in (2, 3):
        return (*item, None) if len(item) == 2 else tuple(item)
    raise TypeError(
        f"{where} is a {type(item).__name__}; each chunk must be a tuple (X, y) or (X, y, sample_weight). "
        "To fit one in-memory array pair, call fit(X, y)."
    )


def prefetched(items: Iterator) -> Iterator:
    """Yield from ``items`` while the next item is read in a background thread.

    Reading a chunk (from disk, or computing it on a Dask cluster) overlaps with fitting the previous
    one, whose compiled kernels release the GIL. At most two chunks are alive at once.
    """
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="fastopt-prefetch") as pool:
        pending = pool.submit(next, items, _END)
        while True:
            item = pending.result()
            if item is _END:
                return
            pending = pool.submit(next, items, _END)
            yield item


class ChunkSource:
    """Where a streamed fit gets its chunks, epoch after epoch.

    Parameters
    ----------
    chunks : Sequence, callable, or iterable
        - a ``Sequence`` (``len`` and integer indexing, e.g. a list): can be visited in any order, so every
          epoch draws a permutation;
        - a callable taking no arguments and returning a fresh iterable of chunks: called once per epoch;
        - any other re-iterable (``iter(chunks) is not chunks``): iterated once per epoch, in its order;
        - a one-shot iterator or generator: only one pass is possible.
    """

    def __init__(self, chunks: Sequence | Callable[[], Iterable] | Iterable):
        if isinstance(chunks, (str, bytes)) or not (callable(chunks) or isinstance(chunks, Iterable)):
            raise TypeError(
                f"chunks must be a sequence, an iterable or a callable returning one; got {type(chunks).__name__}."
            )
        self.chunks = chunks
        self.indexable = hasattr(chunks, "__len__") and hasattr(chunks, "__getitem__") and not callable(chunks)
        self.one_shot = not callable(chunks) and iter(chunks) is chunks

    def __len__(self) -> int:
        return len(self.chunks)

    def epoch(self, order: np.ndarray | None = None) -> Iterator[tuple[int, Any]]:
        """Yield ``(chunk_index, item)`` for one pass, in ``order`` when the chunks are indexable."""
        if self.indexable:
            order = range(len(self.chunks)) if order is None else order
            return ((int(i), self.chunks[int(i)]) for i in order)
        return enumerate(self.chunks() if callable(self.chunks) else self.chunks)

    def where(self, index: int) -> str:
        """How errors name chunk ``index``: the chunks' own ``labels`` when they have them (Dask blocks)."""
        labels = getattr(self.chunks, "labels", None)
        return f"chunk {index}" if labels is None else labels[index]

    def check_epochs(self, n_epochs: int) -> None:
        """Refuse several epochs over a stream that can be read only once."""
        if self.one_shot and n_epochs > 1:
            raise TypeError(
                f"max_epochs={n_epochs} needs several passes, but chunks is a one-shot iterator. Pass a list, "
                "a re-iterable object, or a callable returning a fresh iterator (e.g. lambda: read_chunks(path))."
            )


def restart(estimator, name: str) -> None:
    """Forget earlier ``partial_fit`` state so the next one starts a fresh fit (kept under ``warm_start``)."""
    if not (estimator.warm_start and getattr(estimator, "_solver_name", None) == name):
        estimator.__dict__.pop("_solver_state", None)


def check_dtype(X: Any, first: np.dtype | None, where: str) -> np.dtype | None:
    """The stream fits in the first chunk's precision: a float32 chunk among float64 ones is an error."""
    dtype = getattr(X, "dtype", None)
    if not isinstance(dtype, np.dtype):  # DataFrames: validation decides per chunk
        return first
    dtype = np.dtype(np.float32) if dtype == np.float32 else np.dtype(np.float64)
    if first is not None and dtype != first:
        raise TypeError(
            f"{where} is {dtype} but the stream started with {first}; cast all chunks to one floating type."
        )
    return dtype


# ---------------------------------------------------------------- closed form: merge statistics, solve once


# Which statistics a pass over the chunks computes: the Gram pass of ``fit`` (``R`` for solver="qr"), its
# second, QR pass when Cholesky is rejected, and the statistics ``partial_fit`` keeps.
STATISTICS = {"gram": _closed_form.chunk_state, "qr": _closed_form.chunk_qr_state, "partial": _closed_form.partial_state}


def chunk_state(template, params: dict, X, y, sample_weight, where: str, kind: str = "gram", reset: bool = False):
    """Validate one chunk against ``template``'s features and return ``(statistics, n_targets)``.

    Runs on Dask workers too. With ``reset`` the chunk sets ``template``'s feature count and names instead.
    A chunk whose weights are all zero is valid (it adds rows, no weight); only an all-zero total is an
    error, raised by :func:`finish`.
    """
    with naming(where):
        zero = sample_weight is not None and not np.any(np.asarray(sample_weight))
        data = check_fit_data(template, X, y, None if zero else sample_weight, reset=reset)
    if zero:
        data = replace(data, sample_weight=np.zeros(data.X.shape[0], dtype=data.X.dtype))
    return STATISTICS[kind](params, data), data.Y.shape[1]


def finish(estimator, name: str, state, y_was_1d: bool, second_pass: Callable[[], Any] | None = None):
    """Solve merged statistics and set the fitted attributes, exactly as the in-memory ``fit`` does.

    When the Gram is too ill-conditioned for Cholesky, ``second_pass()`` returns the merged ``R`` factors
    of the same rows (:func:`fastopt._closed_form.chunk_qr_state`); the solve then switches to QR with the
    in-memory fit's warning and ``solver_``. Without a second pass (a one-shot stream) the closed form falls
    back to its warned minimum-norm eigensolve.
    """
    if state.weight == 0:
        raise ValueError("sample_weight sums to zero over all chunks; at least one sample must have positive weight.")
    params = estimator.get_params()
    if second_pass is not None and _closed_form.needs_qr(params, state):
        state = replace(second_pass(), gram=state.gram)
    return estimator._apply(name, _Targets(y_was_1d), _closed_form.finish(params, state))


class _Targets:
    """The one fact about the target that ``LinearRegressor._apply`` needs from the validated data."""

    def __init__(self, y_was_1d: bool):
        self.y_was_1d = y_was_1d


def _closed_form_pass(estimator, params: dict, source: ChunkSource, kind: str):
    """Merged statistics of every chunk, in stream order, and whether ``y`` is 1-D."""
    state, y_was_1d, dtype = None, None, None
    for index, item in prefetched(source.epoch()):
        where = source.where(index)
        X, y, sample_weight = unpack(item, where)
        dtype = check_dtype(X, dtype, where)
        # The first chunk fixes the feature count and names; later chunks are checked against them.
        chunk, n_targets = chunk_state(estimator, params, X, y, sample_weight, where, kind, reset=index == 0)
        if state is not None and n_targets != state.n_targets:
            raise ValueError(f"{where}: y has {n_targets} targets; earlier chunks had {state.n_targets}.")
        y_was_1d = np.ndim(y) == 1 if y_was_1d is None else y_was_1d
        state = chunk if state is None else _closed_form.merge_states(state, chunk)
    if state is None:
        raise ValueError("the stream of chunks is empty; at least one chunk of rows is required.")
    return state, y_was_1d


def _closed_form_fit(estimator, name: str, source: ChunkSource):
    params = estimator.get_params()
    state, y_was_1d = _closed_form_pass(estimator, params, source, "gram")
    second_pass = None if source.one_shot else lambda: _closed_form_pass(estimator, params, source, "qr")[0]
    return finish(estimator, name, state, y_was_1d, second_pass)


# ---------------------------------------------------------------- iterative solvers: epochs of partial_fit


def sweep(estimator, source: ChunkSource, order: np.ndarray | None = None) -> float:
    """One pass of ``estimator.partial_fit`` over every chunk of ``source``.

    Returns
    -------
    loss : float
        The pass's training loss: each chunk's pass loss (the last ``loss_curve_`` entry ``partial_fit``
        records) weighted by its row count.
    """
    total, rows, dtype = 0.0, 0, None
    for index, item in prefetched(source.epoch(order)):
        where = source.where(index)
        X, y, sample_weight = unpack(item, where)
        dtype = check_dtype(X, dtype, where)
        with naming(where):
            estimator.partial_fit(X, y, sample_weight=sample_weight)
        # partial_fit's loss is a weighted mean over the chunk: weight it by the chunk's total weight.
        weight = len(X) if sample_weight is None else float(np.sum(sample_weight))
        total += weight * estimator.loss_curve_[-1]
        rows += weight
    if rows == 0:
        raise ValueError("the stream of chunks is empty; at least one chunk of rows is required.")
    return total / rows


def _epochs(estimator, source: ChunkSource):
    """Up to ``max_epochs`` sweeps with the training-loss stopping rule; sets ``n_iter_`` and ``loss_curve_``."""
    source.check_epochs(estimator.max_epochs)
    if estimator.early_stopping:
        raise ValueError(
            "early_stopping=True holds out validation rows, which a streamed or Dask fit does not do; stop on the "
            "training loss instead (early_stopping=False with tol and n_iter_no_change)."
        )
    n_chunks = len(source) if source.indexable else 0
    orders = chunk_orders(estimator.random_state, n_chunks, estimator.shuffle)
    losses: list[float] = []
    best, stalled = np.inf, 0
    for epoch in range(1, estimator.max_epochs + 1):
        order = next(orders) if source.indexable else None
        losses.append(sweep(estimator, source, order))
        if estimator.verbose:
            print(f"-- Epoch {epoch}: loss {losses[-1]:.6g}, chunk order {order}")
        if estimator.tol is None:
            continue
        stalled = stalled + 1 if losses[-1] > best - estimator.tol else 0
        best = min(best, losses[-1])
        if stalled >= estimator.n_iter_no_change:
            break
    else:
        if estimator.tol is not None:
            warnings.warn(
                f"solver={estimator.solver_!r} reached max_epochs={estimator.max_epochs} without the epoch loss "
                f"settling within tol={estimator.tol}; increase max_epochs or adjust the learning rate.",
                ConvergenceWarning,
            )
    estimator.n_iter_ = len(losses)
    estimator.loss_curve_ = losses
    return estimator


def fit(estimator, chunks):
    """Fit ``estimator`` (hyperparameters already validated) on a stream of chunks.

    See :meth:`fastopt.LinearRegressor.fit_stream`.
    """
    source = chunks if isinstance(chunks, ChunkSource) else ChunkSource(chunks)
    name = _solvers.resolve(estimator.solver, estimator.loss)
    if name in _closed_form.SOLVERS:
        return _closed_form_fit(estimator, name, source)
    restart(estimator, name)
    return _epochs(estimator, source)
