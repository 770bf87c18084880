"""Out-of-core fitting: stream chunks of rows through the solvers, one chunk in memory at a time.

This module serves :meth:`fastopt.LinearRegressor.fit_stream` and the Dask inputs of :mod:`fastopt._dask`.

- The closed form merges each chunk's sufficient statistics exactly (any chunking gives one fit's answer).
- An iterative solver runs epochs as ``fit`` does, an *epoch* being one sweep over all chunks: one pass over
  each chunk's rows (shuffled inside the chunk by the solver's own random stream). When the chunks can be
  indexed (a list, or the blocks of a Dask array), each epoch visits them in a fresh permutation drawn from
  ``random_state`` (in order when ``shuffle=False``), as ``dask_ml.wrappers.Incremental`` does. Every pass of
  epoch ``e`` runs at the schedule's rate for epoch ``e`` of ``max_epochs``, so a streamed fit is, bit for
  bit, the in-memory sequence of ``partial_fit`` calls in the same chunk order with each epoch's rate set.
- ``learning_rate="auto"`` is estimated before the first epoch from a seeded uniform sample of at most
  ``AUTO_ROWS`` training rows across all chunks (:class:`Sample`; one extra read of the stream, or on Dask a
  reduction on the workers that brings back only the sampled rows). A one-shot iterator cannot be read twice:
  there, as in ``partial_fit``, the first chunk's rows set it.
- ``early_stopping=True`` holds out a seeded ``validation_fraction`` of every chunk's rows
  (:func:`chunk_split`), scores them as the in-memory fit does and stops by the same rule (see
  :class:`_Epochs`), with memory bounded by one chunk.
- Sample weights are divided by one constant, their mean over all the stream's training rows (:class:`Weight`),
  so the sweeps minimise the in-memory objective of the concatenated rows: the learning-rate sampling pass
  totals it, or on Dask a reduction of the weight blocks; otherwise the first chunk read decides (see
  :meth:`_Epochs._weights`: one read of every chunk's weights, none for an unweighted stream). A one-shot
  iterator divides by its first chunk's mean.

Nothing here imports Dask.
"""
from __future__ import annotations

import copy
import math
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, replace
from numbers import Integral
from typing import Any

import numpy as np
from sklearn.utils.validation import _check_sample_weight, _num_samples

from fastopt import _closed_form, _iterative, _iterative_lr, _solvers
from fastopt._validation import check_fit_data

# Spawn keys separating the stream's own draws (chunk orders, validation rows, the learning-rate sample)
# from each other and from the solver's draws under the same integer seed.
_ORDER_STREAM = 0xC4A2
_SPLIT_STREAM = 0x5B17
_SAMPLE_STREAM = 0x5A3B
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


def stream_seed(random_state) -> int:
    """The integer seed of a streamed fit's own draws, derived once per fit from ``random_state``.

    An integer is used as it is; a ``RandomState`` instance is advanced by one draw; ``None`` gives fresh
    entropy. Each kind of draw then takes its own spawn key, independent of the solver's stream.
    """
    if isinstance(random_state, np.random.RandomState):
        return int(random_state.randint(np.iinfo(np.int32).max))
    if isinstance(random_state, Integral):
        return int(random_state)
    return int(np.random.SeedSequence().entropy)


def _rng(seed: int, *key: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=key))


def chunk_orders(random_state, n_chunks: int, shuffle: bool = True) -> Iterator[np.ndarray]:
    """The chunk order of each epoch, in turn, that a fit with these settings uses.

    Lets users (and tests) replay a distributed or streamed fit as an explicit in-memory ``partial_fit``
    sequence: ``itertools.islice(chunk_orders(est.random_state, n_chunks, est.shuffle), est.n_iter_)``.
    """
    rng = _rng(stream_seed(random_state), _ORDER_STREAM)
    while True:
        yield rng.permutation(n_chunks) if shuffle else np.arange(n_chunks)


def n_held_out(n_rows: int, validation_fraction: float) -> int:
    """How many of a chunk's ``n_rows`` rows :func:`chunk_split` holds out."""
    n_val = int(np.ceil(validation_fraction * n_rows))
    return 0 if n_val >= n_rows else n_val


def validation_fraction(params: dict) -> float:
    """The fraction of each chunk's rows a fit with ``params`` holds out (none without early stopping)."""
    return params["validation_fraction"] if params["early_stopping"] else 0.0


def chunk_split(random_state, index: int, n_rows: int, validation_fraction: float):
    """The training and validation rows (sorted int64 arrays) of chunk ``index`` under ``early_stopping``.

    Every chunk holds out ``ceil(validation_fraction * n_rows)`` rows, as the in-memory split does for the
    whole data, drawn from a stream seeded by ``random_state`` and the chunk's index, so a chunk loses the
    same rows in every epoch and in every process. A chunk too small to keep a training row (one row, for a
    fraction below one half) is used for training only. ``validation_fraction=0`` holds out nothing.
    """
    n_val = n_held_out(n_rows, validation_fraction)
    if n_val == 0:
        return np.arange(n_rows, dtype=np.int64), np.empty(0, dtype=np.int64)
    perm = _rng(stream_seed(random_state), _SPLIT_STREAM, index).permutation(n_rows)
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])


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


def read(source: ChunkSource, order: np.ndarray | None = None) -> Iterator[tuple[int, str, Any, Any, Any]]:
    """``(index, where, X, y, sample_weight)`` of every chunk of one pass, the next one read meanwhile."""
    dtype = None
    for index, item in prefetched(source.epoch(order)):
        where = source.where(index)
        X, y, sample_weight = unpack(item, where)
        dtype = check_dtype(X, dtype, where)
        yield index, where, X, y, sample_weight


def fold(source: ChunkSource, leaf: Callable, merge: Callable, n_targets: Callable):
    """``merge`` of ``leaf(X, y, sample_weight, where, index, reset)`` over every chunk, in stream order, and
    whether ``y`` is 1-D.

    The first chunk fixes the feature count and names (``reset``); later chunks are checked against them
    inside ``leaf``, and against its number of targets (``n_targets(value)``) here.
    """
    merged, y_was_1d = None, None
    for position, (index, where, X, y, sample_weight) in enumerate(read(source)):
        value = leaf(X, y, sample_weight, where, index, position == 0)
        if merged is not None and n_targets(value) != n_targets(merged):
            raise ValueError(f"{where}: y has {n_targets(value)} targets; earlier chunks had {n_targets(merged)}.")
        y_was_1d = np.ndim(y) == 1 if y_was_1d is None else y_was_1d
        merged = value if merged is None else merge(merged, value)
    if merged is None:
        raise ValueError("the stream of chunks is empty; at least one chunk of rows is required.")
    return merged, y_was_1d


# ---------------------------------------------------------------- closed form: merge statistics, solve once


# Which statistics a pass over the chunks computes: the Gram pass of ``fit`` (``R`` for solver="qr"), its
# second, QR pass when Cholesky is rejected, and the statistics ``partial_fit`` keeps.
STATISTICS = {
    "gram": _closed_form.chunk_state, "qr": _closed_form.chunk_qr_state, "partial": _closed_form.partial_state,
}


def _all_zero(sample_weight) -> bool:
    return sample_weight is not None and not np.any(np.asarray(sample_weight))


def check_chunk(template, X, y, sample_weight, where: str, reset: bool = False):
    """:func:`fastopt._validation.check_fit_data` on one chunk, its errors prefixed with ``where``.

    Runs on Dask workers too. With ``reset`` the chunk sets ``template``'s feature count and names instead of
    being checked against them. A chunk whose weights are all zero is valid (it adds rows, no weight): only an
    all-zero total over the stream is an error.
    """
    zero = _all_zero(sample_weight)
    with naming(where):
        data = check_fit_data(template, X, y, np.ones(np.shape(sample_weight)) if zero else sample_weight,
                              reset=reset)
    if zero:
        data = replace(data, sample_weight=np.zeros(data.X.shape[0], dtype=data.X.dtype))
    return data


def chunk_state(template, params: dict, X, y, sample_weight, where: str, kind: str = "gram", reset: bool = False):
    """Validate one chunk (:func:`check_chunk`) and return ``(statistics, n_targets)``; :func:`finish` rejects
    an all-zero total weight."""
    data = check_chunk(template, X, y, sample_weight, where, reset=reset)
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
    def leaf(X, y, sample_weight, where, index, reset):
        return chunk_state(estimator, params, X, y, sample_weight, where, kind, reset=reset)[0]

    return fold(source, leaf, _closed_form.merge_states, lambda state: state.n_targets)


def _closed_form_fit(estimator, name: str, source: ChunkSource):
    params = estimator.get_params()
    state, y_was_1d = _closed_form_pass(estimator, params, source, "gram")
    second_pass = None if source.one_shot else lambda: _closed_form_pass(estimator, params, source, "qr")[0]
    return finish(estimator, name, state, y_was_1d, second_pass)


# ---------------------------------------------------------------- iterative solvers: epochs of chunk passes


def sweep(estimator, source: ChunkSource) -> None:
    """One ``estimator.partial_fit`` call per chunk, in order (``partial_fit`` on Dask blocks)."""
    empty = True
    for _, where, X, y, sample_weight in read(source):
        with naming(where):
            estimator.partial_fit(X, y, sample_weight=sample_weight)
        empty = False
    if empty:
        raise ValueError("the stream of chunks is empty; at least one chunk of rows is required.")


@dataclass
class Weight:
    """The training weight of some chunks of a stream (rows held out for validation excluded).

    Each chunk's weights are summed in float64 and the sums kept apart, so the total, their exactly rounded
    sum (:func:`math.fsum`), does not depend on the order in which chunks were merged, nor on which worker.
    A chunk without weights counts its training rows.
    """

    sums: np.ndarray
    n_train: int

    def mean(self) -> float:
        """The mean weight of a training row: the constant every chunk's weights are divided by."""
        return math.fsum(self.sums) / self.n_train if self.n_train else 0.0


def merge_weights(a: Weight, b: Weight) -> Weight:
    """The training weight of the union of two disjoint sets of chunks."""
    return Weight(np.concatenate([a.sums, b.sums]), a.n_train + b.n_train)


def _weight(sample_weight: np.ndarray | None, rows: np.ndarray) -> Weight:
    total = rows.shape[0] if sample_weight is None else np.sum(sample_weight[rows], dtype=np.float64)
    return Weight(np.array([total], dtype=np.float64), rows.shape[0])


def chunk_weight(seed: int, fraction: float, dtype, sample_weight, n_rows: int | None, where: str,
                 index: int) -> Weight:
    """The training weight of chunk ``index`` from its ``sample_weight`` alone (runs on Dask workers too).

    The weights are validated and cast to ``dtype`` as ``fit`` does; ``n_rows`` (the chunk's rows, checked
    against the weights' length) defaults to that length.
    """
    if sample_weight is not None:
        n_rows = _num_samples(sample_weight) if n_rows is None else n_rows
        zero = _all_zero(sample_weight)
        with naming(where):
            checked = _check_sample_weight(np.ones(np.shape(sample_weight)) if zero else sample_weight,
                                           np.empty((n_rows, 0)), dtype=dtype, ensure_non_negative=True)
        sample_weight = np.zeros_like(checked) if zero else checked
    rows = chunk_split(seed, index, n_rows, fraction)[0]
    return _weight(sample_weight, rows)


@dataclass
class Sample:
    """A uniform sample, without replacement, of at most ``AUTO_ROWS`` training rows of a stream.

    Every training row draws a key uniform in [0, 1) from a stream seeded by the fit's seed and its chunk's
    index; the sample is the rows with the smallest keys. Samples of disjoint chunks therefore merge exactly
    (:func:`merge_samples`), in any order and on any worker, and the merged rows are kept sorted by key, so
    the learning rate estimated from them does not depend on how the chunks were reduced. The pass that
    draws it reads every chunk, so it also totals their training weight.
    """

    keys: np.ndarray
    X: np.ndarray
    Y: np.ndarray
    w: np.ndarray | None
    weight: Weight  # of the training rows the sample was drawn from

    @property
    def n_train(self) -> int:
        return self.weight.n_train


def _smallest(keys: np.ndarray) -> np.ndarray:
    """Indices of the ``AUTO_ROWS`` smallest ``keys`` (all of them if fewer), in increasing key order."""
    m = _iterative_lr.AUTO_ROWS
    idx = np.argpartition(keys, m - 1)[:m] if keys.shape[0] > m else np.arange(keys.shape[0])
    return idx[np.argsort(keys[idx], kind="stable")]


def chunk_sample(template, params: dict, seed: int, X, y, sample_weight, where: str, index: int,
                 reset: bool = False, below: float = 1.0) -> Sample:
    """Validate chunk ``index`` and draw its part of the learning-rate sample (runs on Dask workers too).

    ``below`` drops the rows whose keys are not below it: when the number of training rows ``n`` is known
    beforehand, ``below = 2 AUTO_ROWS / n`` leaves each chunk a small share to send while the merged sample,
    the ``AUTO_ROWS`` smallest keys of all, stays the same (unless fewer than ``AUTO_ROWS`` keys in all fall
    below it, a deviation of about 100 standard deviations).
    """
    data = check_chunk(template, X, y, sample_weight, where, reset=reset)
    rows, _ = chunk_split(seed, index, data.X.shape[0], validation_fraction(params))
    keys = _rng(seed, _SAMPLE_STREAM, index).random(rows.shape[0])
    keep = _smallest(keys)
    keep = keep[keys[keep] < below]
    chosen = rows[keep]
    w = None if data.sample_weight is None else data.sample_weight[chosen]
    return Sample(keys[keep], data.X[chosen], data.Y[chosen], w, _weight(data.sample_weight, rows))


def merge_samples(a: Sample, b: Sample) -> Sample:
    """The sample of the union of two disjoint sets of chunks."""
    keys = np.concatenate([a.keys, b.keys])
    keep = _smallest(keys)
    w = None
    if a.w is not None or b.w is not None:
        w = np.concatenate([np.ones(s.keys.shape[0], s.X.dtype) if s.w is None else s.w for s in (a, b)])[keep]
    X, Y = np.concatenate([a.X, b.X])[keep], np.concatenate([a.Y, b.Y])[keep]
    return Sample(keys[keep], X, Y, w, merge_weights(a.weight, b.weight))


class _Validation:
    """The validation score of the held-out rows of every chunk, accumulated chunk by chunk.

    The score is the in-memory fit's: :func:`sklearn.metrics.r2_score` with the sample weights, averaged
    uniformly over targets, ``1 - SS_res / SS_tot`` with ``SS_tot = sum_i w_i (y_i - mean_w(y))^2`` (a
    constant target scores 1 when predicted exactly, else 0). The first sweep accumulates the weighted mean of
    ``y``; ``SS_tot`` is summed around it in the first scoring pass (the exact two-pass formula) and kept.
    """

    def __init__(self):
        self.rows, self.weight, self.sum_y = 0, 0.0, 0.0
        self.ss_tot = None
        self._res = self._tot = None

    @staticmethod
    def _weights(Y, w):
        return np.ones(Y.shape[0]) if w is None else w.astype(np.float64)

    def observe(self, Y, w) -> None:
        """Add held-out rows to the weighted mean of ``y`` (first sweep)."""
        w = self._weights(Y, w)
        self.rows += Y.shape[0]
        self.weight += float(w.sum())
        self.sum_y = self.sum_y + w @ Y.astype(np.float64)

    def begin(self) -> None:
        """Start scoring one parameter vector."""
        self._res = 0.0
        self._tot = 0.0 if self.ss_tot is None else None

    def add(self, X, Y, w, params: np.ndarray, dims: tuple) -> None:
        """Add one chunk's held-out rows, predicted with ``params`` (as ``IterState.params``)."""
        coef, intercept = _iterative.split_params(params, *dims)
        w = self._weights(Y, w)
        self._res = self._res + w @ (Y.astype(np.float64) - (X @ coef.T + intercept)) ** 2
        if self._tot is not None:
            mean = self.sum_y / self.weight if self.weight > 0 else 0.0
            self._tot = self._tot + w @ (Y.astype(np.float64) - mean) ** 2

    def end(self) -> float:
        """The score of the parameters scored since :meth:`begin`."""
        if self._tot is not None:
            self.ss_tot = self._tot
        res, tot = np.atleast_1d(self._res), np.atleast_1d(self.ss_tot)
        scores = np.ones(res.shape[0])
        valid = (res != 0) & (tot != 0)
        scores[valid] = 1.0 - res[valid] / tot[valid]
        scores[(res != 0) & (tot == 0)] = 0.0
        return float(np.mean(scores))


class _Epochs:
    """An iterative fit over a stream: ``max_epochs`` sweeps of per-chunk passes, as ``fit`` runs epochs.

    Every pass of sweep ``e`` takes the schedule's rate for epoch ``e`` (:class:`fastopt._iterative.Sweep`),
    so a streamed fit is the in-memory sequence of ``partial_fit`` calls with each epoch's rate. With
    ``early_stopping`` every chunk holds out seeded rows (:func:`chunk_split`); the parameters at the end
    of sweep ``e`` are scored on them while sweep ``e + 1`` reads the chunks (a last pass scores the last
    sweep), and when that score stops the fit, sweep ``e + 1`` is undone: the result is that of ``fit``'s
    rule stopping after epoch ``e``, with the best epoch's parameters restored.

    Every pass divides its chunk's weights by one constant, the mean weight of all the stream's training rows
    (:class:`fastopt._iterative.Sweep`), so the sweeps minimise ``fit``'s objective on the concatenated rows.
    It is totalled by the pass that samples the learning rate or on the Dask workers, or else decided by the
    first chunk read (:meth:`_weights`).
    """

    def __init__(self, estimator, source: ChunkSource, name: str):
        self.estimator, self.source, self.name = estimator, source, name
        self.solver = _solvers.SOLVERS[name]
        self.params = params = estimator.get_params()
        self.seed = stream_seed(params["random_state"])
        self.early = bool(params["early_stopping"])
        self.fraction = validation_fraction(params)
        self.validation = _Validation() if self.early else None
        self.lr0 = None
        self.weight_mean = None  # the stream-wide mean training weight (Sweep.weight_mean)
        self.unweighted = None  # where the stream was taken as unweighted, for errors (see _weights)
        self.y_was_1d = None

    def learning_rate(self, sampler: Callable[[int], Sample] | None) -> tuple[float | None, Weight]:
        """``learning_rate="auto"`` from a seeded sample of the training rows of every chunk, and the training
        weight of every chunk, which the same pass totals.

        ``sampler(seed)`` draws it where the chunks live (on the Dask workers); otherwise one pass over the
        stream, before training, draws it here. A rate of None leaves it to the first chunk's pass.
        """
        if sampler is not None:
            sample = sampler(self.seed)
        else:
            def leaf(X, y, sample_weight, where, index, reset):
                return chunk_sample(self.estimator, self.params, self.seed, X, y, sample_weight, where, index, reset)

            sample = fold(self.source, leaf, merge_samples, lambda part: part.Y.shape[1])[0]
        if sample.n_train == 0:
            return None, sample.weight  # nothing to estimate from: the first pass says what is wrong
        # Sampled rows that all weigh zero (the stream's weight lies elsewhere) still measure the curvature.
        w = sample.w if sample.w is not None and np.any(sample.w) else None
        rng = _rng(self.seed, _SAMPLE_STREAM)
        return self.solver.stream_learning_rate(self.params, sample.X, sample.Y, w, sample.n_train, rng), sample.weight

    def stream_weight(self) -> Weight:
        """The training weight of every chunk, from one read of the chunks' weights."""
        total = None
        for index, item in self.source.epoch():
            where = self.source.where(index)
            X, _, sample_weight = unpack(item, where)
            dtype = check_dtype(X, None, where) or np.dtype(np.float64)
            part = chunk_weight(self.seed, self.fraction, dtype, sample_weight, _num_samples(X), where, index)
            total = part if total is None else merge_weights(total, part)
        return total

    @staticmethod
    def _mean(weight: Weight, rows: str = "all chunks") -> float:
        mean = weight.mean()
        if mean == 0:
            raise ValueError(
                f"sample_weight sums to zero over the training rows of {rows}; at least one training row must "
                "have positive weight."
            )
        return mean

    def _weights(self, data, train: np.ndarray, where: str):
        """``data`` ready for the stream's constant, which the first chunk read decides when no earlier pass
        totalled the weights: without weights, the stream is taken as unweighted (no extra read: a later chunk
        with weights is an error); with weights, one read of every chunk's weights totals them, except in a
        one-shot stream, which cannot be read twice and takes this chunk's mean. A chunk without weights in a
        weighted stream gets explicit ones."""
        sw = data.sample_weight
        if self.weight_mean is None:
            if self.source.one_shot:
                rows = f"{where} (a one-shot stream is normalised by its first chunk's mean weight)"
                self.weight_mean = self._mean(_weight(sw, train), rows)
            elif sw is None:
                self.weight_mean, self.unweighted = 1.0, where
            else:
                self.weight_mean = self._mean(self.stream_weight())
        elif self.unweighted is not None and sw is not None:
            raise ValueError(
                f"{where} has sample_weight but {self.unweighted}, the first chunk read, has none, so the stream "
                "was taken as unweighted; give every chunk weights (ones for unit weight) or none."
            )
        if sw is None and self.weight_mean != 1.0:
            data = replace(data, sample_weight=np.ones(data.X.shape[0], dtype=data.X.dtype))
        return data

    def run(self, sampler: Callable[[int], Sample] | None = None,
            weigher: Callable[[int], Weight | None] | None = None):
        params, source, estimator = self.params, self.source, self.estimator
        max_epochs = params["max_epochs"]
        if self.early and source.one_shot:
            raise TypeError(
                "early_stopping=True scores each epoch on held-out rows during the next pass over the chunks, "
                "but chunks is a one-shot iterator. Pass a list, a re-iterable object, or a callable returning "
                "a fresh iterator."
            )
        source.check_epochs(max_epochs)
        orders = chunk_orders(self.seed, len(source) if source.indexable else 0, params["shuffle"])
        if params["learning_rate"] == "auto" and not hasattr(estimator, "_solver_state") and not source.one_shot:
            self.lr0, weight = self.learning_rate(sampler)
            self.weight_mean = self._mean(weight)
        elif weigher is not None:
            weight = weigher(self.seed)
            self.weight_mean = 1.0 if weight is None else self._mean(weight)
        stopping = _iterative.Stopping(params["tol"], params["n_iter_no_change"], keep_best=self.early)
        losses, scores, scored = [], [], None
        for epoch in range(max_epochs + self.early):
            training = epoch < max_epochs
            order = next(orders) if training and source.indexable else None
            loss, score = self._pass(order, epoch if training else None, scored)
            if scored is not None:
                scores.append(score)
                if params["verbose"]:
                    print(f"-- Epoch {epoch}: validation R^2 {score:.6f}")
                if stopping.update(-score, scored.params):
                    break
            if not training:
                break
            losses.append(loss)
            state = estimator._solver_state
            if params["verbose"]:
                lr = self.solver.epoch_lr(params, state, epoch)
                print(f"-- Epoch {epoch + 1}: loss {loss:.6g}, lr {lr:.4g}, steps {state.t}, chunk order {order}")
            if self.early:
                scored = replace(state, rng=copy.deepcopy(state.rng))  # its arrays are never written again
            elif stopping.update(loss, None):
                break
        stopping.warn_unless_stopped(self.name, max_epochs)
        final = replace(scored if self.early else estimator._solver_state, loss_curve=losses)
        result = self.solver.result(final, stopping, scores if self.early else None)
        return estimator._apply(self.name, _Targets(self.y_was_1d), result)

    def _pass(self, order, epoch: int | None, scored):
        """One pass over the chunks: a training pass over each chunk's training rows (unless ``epoch`` is None)
        and, when ``scored`` is an earlier state, the held-out rows scored with its parameters.

        Returns the pass's training loss (the chunks' pass losses weighted by their training weight) and the
        validation score (None when not scoring).
        """
        estimator, validation = self.estimator, self.validation
        total, weight, empty = 0.0, 0.0, True
        if scored is not None:
            validation.begin()
        for index, where, X, y, sample_weight in read(self.source, order):
            data = check_chunk(estimator, X, y, sample_weight, where, reset=not hasattr(estimator, "_solver_state"))
            train, val = chunk_split(self.seed, index, data.X.shape[0], self.fraction)
            data = self._weights(data, train, where)
            if epoch is not None:
                with naming(where):
                    estimator._partial_fit(data, _iterative.Sweep(epoch, train if val.size else None, self.lr0,
                                                                  self.weight_mean))
            empty = False
            self.y_was_1d = data.y_was_1d if self.y_was_1d is None else self.y_was_1d
            sw = data.sample_weight
            if epoch is not None:
                # The pass loss is the chunk's mean of (weight / weight_mean) * loss over its training rows.
                total += self.weight_mean * train.shape[0] * estimator._solver_state.loss_curve[-1]
                weight += float(train.shape[0] if sw is None else np.sum(sw[train], dtype=np.float64))
            if val.size:
                X_val, Y_val, w_val = data.X[val], data.Y[val], None if sw is None else sw[val]
                if epoch == 0:
                    validation.observe(Y_val, w_val)
                if scored is not None:
                    validation.add(X_val, Y_val, w_val, scored.params, scored.dims)
        if empty:
            raise ValueError("the stream of chunks is empty; at least one chunk of rows is required.")
        if epoch == 0 and validation is not None and validation.rows == 0:
            raise ValueError(
                f"early_stopping=True holds out validation_fraction={self.fraction} of each chunk's rows, but no "
                "chunk has enough rows to spare one; use larger chunks or early_stopping=False."
            )
        return (total / weight if weight > 0 else np.nan), (validation.end() if scored is not None else None)


def fit(estimator, chunks, sampler: Callable[[int], Sample] | None = None,
        weigher: Callable[[int], Weight | None] | None = None):
    """Fit ``estimator`` (hyperparameters already validated) on a stream of chunks.

    See :meth:`fastopt.LinearRegressor.fit_stream`. ``sampler(seed)``, when given, returns the merged
    :class:`Sample` of every chunk (:func:`chunk_sample` with that seed) computed where the chunks live;
    ``weigher(seed)`` likewise their merged :class:`Weight` (:func:`chunk_weight`), or None without weights.
    """
    source = chunks if isinstance(chunks, ChunkSource) else ChunkSource(chunks)
    name = _solvers.resolve(estimator.solver, estimator.loss)
    if name in _closed_form.SOLVERS:
        return _closed_form_fit(estimator, name, source)
    restart(estimator, name)
    return _Epochs(estimator, source, name).run(sampler, weigher)
