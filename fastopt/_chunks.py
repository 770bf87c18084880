"""Chunks of a stream: where they come from, in which order, which rows are held out, and what each one
contributes (statistics, training weight, learning-rate sample).

The per-chunk functions here (:func:`check_chunk`, :func:`checked_statistics`, :func:`chunk_weight`,
:func:`chunk_sample`) run wherever a chunk lives, Dask workers included, and their results merge exactly in any
order (:func:`merge_weights`, :func:`merge_samples`, :func:`fastopt._closed_form.merge_states`). The fit drivers
that sweep over chunks are in :mod:`fastopt._streaming`. Nothing here imports Dask.
"""
from __future__ import annotations

import math
import queue
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from numbers import Integral
from typing import Any

import numpy as np
import scipy.sparse
from sklearn.utils.validation import _num_samples

from fastopt import _closed_form, _iterative, _iterative_lr
from fastopt._interrupts import uninterrupted, wait_get
from fastopt._validation import check_fit_data, check_weights, expanded_weights

# Spawn keys separating the stream's own draws (chunk orders, validation rows, the learning-rate sample)
# from each other and from the solver's draws under the same integer seed.
_ORDER_STREAM = 0xC4A2
_SPLIT_STREAM = 0x5B17
SAMPLE_STREAM = 0x5A3B
_END = object()


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
        return _iterative.draw_seed(random_state)
    if isinstance(random_state, Integral):
        return int(random_state)
    return int(np.random.SeedSequence().entropy)


def seeded_rng(seed: int, *key: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=key))


def chunk_orders(random_state, n_chunks: int, shuffle: bool = True) -> Iterator[np.ndarray]:
    """The chunk order of each epoch, in turn, that a fit with these settings uses.

    Lets users (and tests) replay a distributed or streamed fit as an explicit in-memory ``partial_fit``
    sequence: ``itertools.islice(chunk_orders(est.random_state, n_chunks, est.shuffle), est.n_iter_)``.
    """
    rng = seeded_rng(stream_seed(random_state), _ORDER_STREAM)
    while True:
        yield rng.permutation(n_chunks) if shuffle else np.arange(n_chunks)


def n_held_out(n_rows: int, validation_fraction: float) -> int:
    """How many of a chunk's ``n_rows`` rows :func:`chunk_split` holds out: none when the fraction would take
    them all (a chunk too small to split trains on every row)."""
    n_val = _iterative.n_held_out(n_rows, validation_fraction)
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
    perm = seeded_rng(stream_seed(random_state), _SPLIT_STREAM, index).permutation(n_rows)
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])


def unpack(item: Any, where: str) -> tuple[Any, Any, Any]:
    """``(X, y)`` or ``(X, y, sample_weight)`` from one streamed item, with a clear error otherwise."""
    if isinstance(item, (tuple, list)) and len(item) in (2, 3):
        for name, value in zip(("X", "y"), item):
            if value is None:
                raise TypeError(f"{where} has {name} = None; each chunk must be a tuple (X, y) or (X, y, "
                                "sample_weight) of arrays.")
        return (*item, None) if len(item) == 2 else tuple(item)
    what = f"a {type(item).__name__} of {len(item)} items" if isinstance(item, (tuple, list)) else \
        f"a {type(item).__name__}"
    raise TypeError(
        f"{where} is {what}; each chunk must be a tuple (X, y) or (X, y, sample_weight). "
        "To fit one in-memory array pair, call fit(X, y)."
    )


def _copied(part: Any) -> Any:
    if callable(getattr(part, "copy", None)):
        return part.copy()
    # (array-likes without copy(), a torch tensor: validation's np.asarray would share their memory)
    # (np.asarray(...).copy(): np.array(part) trusts an __array__ that ignores its copy argument)
    return np.asarray(part).copy() if hasattr(part, "__array__") else part


def owned_items(items: Iterable) -> Iterator:
    """``items`` (one pass of a generator, a callable's iterable or a re-iterable), each chunk from the second on
    a copy (each part that has a ``copy`` method: NumPy, SciPy sparse, pandas, lists; other array-likes, such as
    torch tensors, as NumPy arrays), made by the reader thread as it reads it.

    From the second chunk on, the next chunk is read while the current one is fitted (:func:`prefetched`), so
    the source resumes, and may change what it yielded, while the kernels read it. A generator that refilled one
    buffer for every chunk (``buf[:] = ...; yield buf, y``), or restored a view it had standardised in place
    (``v -= mu; yield v, y; v += mu``), gave every solver wrong coefficients, different on each run, silently
    (the closed form 0.003-0.08 off). The copy keeps an iterator's contract: what it yielded is the consumer's
    until it is asked for the next item. Tests of what a source changes (overlapping memory, sampled elements)
    missed changes that kept to other memory or other rows. A streamed closed-form fit over 20 views of one
    in-memory array takes 1.10-1.14 times as long (a list of those chunks is not copied); beside reading a
    chunk from disk or computing it the copy is small.
    """
    for index, item in enumerate(items):
        if index >= 1 and isinstance(item, (tuple, list)):
            parts = [_copied(part) for part in item]
            item = tuple(parts) if isinstance(item, tuple) else parts
        yield index, item


def prefetched(items: Iterator) -> Iterator:
    """Yield from ``items`` while the next item is read in a background thread.

    Reading a chunk (from disk, or computing it on a Dask cluster) overlaps with fitting the previous
    one, whose compiled kernels release the GIL, from the second chunk on. At most two chunks are alive at once.

    The consumer never waits for the reader except for the item it asks for: when it stops (an error in
    fitting, ``KeyboardInterrupt``, the fit ending), the reader is told to stop and is not joined, so an error or
    an interrupt surfaces at once even while the source is blocked in ``next()``; the reader thread then ends
    as soon as that call returns, without reading further. Waiting for an item is interruptible by Ctrl-C.
    """
    requests, results = queue.SimpleQueue(), queue.SimpleQueue()

    def reader():
        while requests.get():  # True: read one item; False: stop
            try:
                results.put((next(items, _END), None))
            except BaseException as exc:
                results.put((None, exc))

    thread = threading.Thread(target=reader, name="fastopt-prefetch", daemon=True)
    try:
        # Started inside the try: Ctrl-C landing in start() (which waits for the thread to run) must still tell
        # the reader to stop, or it waits for a request for ever (seen once in CI, on a loaded machine).
        thread.start()
        requests.put(True)
        first = True
        while True:
            # (bounded waits: the reader may never return, a blocked source; an unbounded wait was seen as a hung
            # test on a heavily loaded machine)
            item, exc = wait_get(results)
            if exc is not None:
                raise exc
            if item is _END:
                return
            if first:
                # The second item is read only once the first is done with: a fit may read the stream again while
                # it takes its first chunk (the stream's weights, LocalPasses._weights), and that read, beside
                # the reader's, refilled the buffers of a callable whose generators share them (sgd 3e-3 off in
                # 10 of 10 fits, silently); and the first chunk needs no copy (owned_items).
                first = False
                yield item
                requests.put(True)
                continue
            requests.put(True)
            yield item
    finally:
        uninterrupted(lambda: requests.put(False))  # (a second Ctrl-C here left the reader waiting for ever)


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
        if isinstance(chunks, Mapping):  # (indexed by position it raised a bare KeyError: 0)
            raise TypeError(
                f"chunks is a {type(chunks).__name__}, a mapping; pass its chunks as a sequence, e.g. "
                "list(chunks.values())."
            )
        self.chunks = chunks
        self.indexable = hasattr(chunks, "__len__") and hasattr(chunks, "__getitem__") and not callable(chunks)
        # a pandas Series of chunks is indexed by position (its [] reads labels: a sliced one raised KeyError: 0)
        self._at = chunks.iloc if self.indexable and hasattr(chunks, "iloc") else chunks
        self.one_shot = not callable(chunks) and iter(chunks) is chunks
        self.layouts: dict[int, tuple] = {}  # each chunk's (rows, columns, targets' shape) when first read
        # the first chunk read with one target as (n,), and as (n, 1): kept as they come (rebuilt from layouts at
        # every chunk, a read of 20,000 one-row chunks spent most of its 106 s there)
        self.single: dict[tuple, int] = {}
        self.count: int | None = None  # chunks in a whole pass, once one ended

    def check_layout(self, index: int, where: str, X, y) -> None:
        """A chunk read again must have the rows, columns and targets it had when first read: a stream whose
        later reads differ (a callable over files being rewritten) gave the Krylov solvers the moments of one
        read and the iterations of another, a least-squares fit of neither, silently."""
        here = (_known(chunk_rows(X)), _known(X.shape[1]) if len(getattr(X, "shape", ())) > 1 else None,
                None if y is None else tuple(_known(n) for n in np.shape(y)[1:]))
        first = self.layouts.setdefault(index, here)
        if first is here and here[2] in ((), (1,)):
            self.single.setdefault(here[2], index)
        # Every chunk's targets 1-D, or every chunk's 2-D: a stream mixing them gave coef_ the shape of the first
        # chunk visited, which the shuffled order (random_state) chose
        # (one target as (n,) and as (n, 1); other counts are refused as a wrong number of targets)
        if here[2] in ((), (1,)) and len(self.single) > 1:
            other = next(i for targets, i in self.single.items() if targets != here[2])
            raise ValueError(
                f"{where} has targets of shape {(here[0], *here[2])} but {self.where(other)} had targets of shape "
                f"{(self.layouts[other][0], *self.layouts[other][2])}: every chunk's y must be 1-D, or every "
                "chunk's 2-D."
            )
        if any(a is not None and b is not None and a != b for a, b in zip(here, first)):
            raise ValueError(
                f"{where} has {_layout_text(here)} on this read of the stream but had {_layout_text(first)} on an "
                "earlier one: a stream read more than once (a callable, or a re-iterable object) must yield the "
                "same chunks on every read."
            )

    def check_count(self, count: int) -> None:
        """A whole pass over a callable or a re-iterable has as many chunks as the first whole pass."""
        if self.indexable:
            return  # (passes in a given order; the sequence's length is fixed)
        if self.count is None:
            self.count = count
        elif count != self.count:
            raise ValueError(
                f"a read of the stream yielded {count} chunks where an earlier one yielded {self.count}: a stream "
                "read more than once (a callable, or a re-iterable object) must yield the same chunks on every read."
            )

    def unpacked(self, items: Iterator) -> Iterator[tuple[int, str, Any, Any, Any]]:
        """``(index, where, X, y, sample_weight)`` of one pass's ``(index, item)`` pairs, each chunk's layout
        checked against its first read's (:meth:`check_layout`), and, once the pass ends, its chunk count."""
        count = 0
        for index, item in items:
            where = self.where(index)
            X, y, sample_weight = unpack(item, where)
            self.check_layout(index, where, X, y)
            count += 1
            yield index, where, X, y, sample_weight
        self.check_count(count)

    def __len__(self) -> int:
        return len(self.chunks)

    def epoch(self, order: np.ndarray | None = None, ahead: bool = False) -> Iterator[tuple[int, Any]]:
        """Yield ``(chunk_index, item)`` for one pass, in ``order`` when the chunks are indexable; ``ahead``: for a
        pass read ahead (:func:`prefetched`), a generator's chunks from the second on copied (:func:`owned_items`)."""
        if self.indexable:
            order = range(len(self.chunks)) if order is None else order
            return ((int(i), self._at[int(i)]) for i in order)
        chunks = self.chunks() if callable(self.chunks) else self.chunks
        if isinstance(chunks, (str, bytes, Mapping)) or not isinstance(chunks, Iterable):
            # (a bare "'int' object is not iterable" from enumerate named neither chunks nor the callable)
            raise TypeError(
                f"chunks is a callable, which must return an iterable of chunks; it returned "
                f"{type(chunks).__name__}."
            )
        return owned_items(chunks) if ahead else enumerate(chunks)

    def item(self, index: int) -> Any:
        """Chunk ``index`` of an indexable stream, as stored."""
        return self._at[index]

    def where(self, index: int) -> str:
        """How errors name chunk ``index``: the chunks' own ``labels`` when they have them (Dask blocks)."""
        labels = getattr(self.chunks, "labels", None)
        return f"chunk {index}" if labels is None else labels[index]

    def check_epochs(self, n_epochs: int, label: str | None = None, what: str | None = None) -> None:
        """Refuse several epochs over a stream that can be read only once (``label``: how to name the limit,
        by default ``n_epochs``; ``what``: what needs the passes, by default ``max_epochs``)."""
        if self.one_shot and n_epochs > 1:
            what = what or f"max_epochs={label or n_epochs}"
            raise TypeError(
                f"{what} needs several passes, but chunks is a one-shot iterator. Pass a "
                "list, a re-iterable object, or a callable returning a fresh iterator (e.g. lambda: "
                "read_chunks(path))."
            )


def check_dtype(X: Any, first: np.dtype | None, where: str) -> np.dtype | None:
    """The stream fits in the first chunk's precision: a float32 chunk among float64 ones is an error."""
    dtype = getattr(X, "dtype", None)
    if not isinstance(dtype, np.dtype):  # DataFrames: validation casts to their columns' common type
        # pandas' nullable types ("Float32", "Float64", "Int64") are fitted in float64, as validation (and
        # scikit-learn's check_array) converts them: "Float64" chunks after float32 ones were fitted in float32,
        # silently
        dtypes = getattr(X, "dtypes", None)
        dtypes = [t if isinstance(t, np.dtype) else np.dtype(np.float64) if hasattr(t, "numpy_dtype") else None
                  for t in (() if dtypes is None else dtypes)]
        if not dtypes or not all(isinstance(t, np.dtype) for t in dtypes):
            return first  # other extension types: validation decides
        dtype = np.result_type(*dtypes)
    dtype = np.dtype(np.float32) if dtype == np.float32 else np.dtype(np.float64)
    if first is not None and dtype != first:
        raise TypeError(
            f"{where} is {dtype} but the stream started with {first}; cast all chunks to one floating type."
        )
    return dtype


def read(source: ChunkSource, order: np.ndarray | None = None) -> Iterator[tuple[int, str, Any, Any, Any]]:
    """``(index, where, X, y, sample_weight)`` of every chunk of one pass, the next one read meanwhile."""
    dtype = None
    for index, where, X, y, sample_weight in source.unpacked(prefetched(source.epoch(order, ahead=True))):
        dtype = check_dtype(X, dtype, where)
        yield index, where, X, y, sample_weight


def _known(n):
    """A size, or None where it is unknown (a Dask chunk's NaN rows: NaN != NaN refused a filtered chunk for
    differing from itself)."""
    return None if isinstance(n, float) and math.isnan(n) else n


def _layout_text(layout: tuple) -> str:
    rows, columns, targets = layout
    text = f"{'?' if rows is None else rows} rows" + ("" if columns is None else f" of {columns} columns")
    return text + ("" if targets is None else f" and targets of shape {(rows, *targets)}")


# Which statistics a pass over the chunks computes: "fit", the first pass of a fit (the Gram, or R factors for
# solver="qr"); "qr", its second pass when Cholesky is rejected; "partial", the statistics partial_fit keeps.
STATISTICS = {
    "fit": _closed_form.chunk_state, "qr": _closed_form.chunk_qr_state, "partial": _closed_form.partial_state,
}


def _all_zero(sample_weight) -> bool:
    # (sparse weights: validation's TypeError names them; np.asarray of one was NumPy's "setting an array element")
    if sample_weight is None or scipy.sparse.issparse(sample_weight):
        return False
    return not np.any(np.asarray(sample_weight))


def chunk_rows(X) -> int:
    """The rows of a chunk's ``X`` before validation (an array, a sparse matrix, a DataFrame or a list of rows)."""
    return X.shape[0] if hasattr(X, "shape") else len(X)


def check_chunk(template, X, y, sample_weight, where: str, reset: bool = False):
    """:func:`fastopt._validation.check_fit_data` on one chunk, its errors prefixed with ``where``.

    Runs on Dask workers too. With ``reset`` the chunk sets ``template``'s feature count and names instead of
    being checked against them. A chunk whose weights are all zero is valid (it adds rows, no weight): only an
    all-zero total over the stream is an error.
    """
    if chunk_rows(X) == 0:
        raise ValueError(
            f"{where} has no rows. Leave empty chunks out of a stream; of Dask collections, blocks known to be "
            "empty are skipped, so give the row counts where a filter left them unknown (X.compute_chunk_sizes(), "
            "or a Dask DataFrame's to_dask_array(lengths=True), for X and y alike)."
        )
    sample_weight = expanded_weights(sample_weight, chunk_rows(X))
    zero = _all_zero(sample_weight)
    with naming(where):
        data = check_fit_data(template, X, y, np.ones(np.shape(sample_weight)) if zero else sample_weight,
                              reset=reset)
    if zero:
        data = replace(data, sample_weight=np.zeros(data.X.shape[0], dtype=data.X.dtype))
    return data


def checked_statistics(template, params: dict, X, y, sample_weight, where: str, kind: str = "fit",
                       reset: bool = False):
    """Validate one chunk (:func:`check_chunk`) and return ``(statistics, n_targets)``; :func:`finish` rejects
    an all-zero total weight."""
    data = check_chunk(template, X, y, sample_weight, where, reset=reset)
    return STATISTICS[kind](params, data), data.Y.shape[1]


@dataclass
class Weight:
    """The training weight of some chunks of a stream (rows held out for validation excluded).

    Each chunk's weights are summed in float64 and the sums kept apart, so the total, their exactly rounded
    sum (:func:`math.fsum`), does not depend on the order in which chunks were merged, nor on which worker.
    A chunk without weights counts its training rows. Chunk ``i``'s sum is ``sums[i] * 2**exps[i]``, its weights
    divided by a power of two near their maximum before summing, so that no sum over- or underflows whatever
    the weights' scale (1e306 or 1e-300).
    """

    sums: np.ndarray
    n_train: int
    exps: np.ndarray | None = None  # None: all zero

    def mean(self) -> float:
        """The mean weight of a training row: the constant every chunk's weights are divided by."""
        if not self.n_train:
            return 0.0
        exps = np.zeros(self.sums.shape[0], dtype=np.int64) if self.exps is None else self.exps
        top = int(exps.max(initial=0)) if exps.size else 0
        # Each term is at most (rows of its chunk) * 2**0 after aligning on the largest exponent: fsum is safe,
        # and the mean, between the smallest and largest weight, is representable when scaled back.
        total = math.fsum(np.ldexp(self.sums, exps - top))
        return float(np.ldexp(total / self.n_train, top))


def merge_weights(a: Weight, b: Weight) -> Weight:
    """The training weight of the union of two disjoint sets of chunks."""
    exps = [np.zeros(w.sums.shape[0], dtype=np.int64) if w.exps is None else w.exps for w in (a, b)]
    return Weight(np.concatenate([a.sums, b.sums]), a.n_train + b.n_train, np.concatenate(exps))


def rows_weight(sample_weight: np.ndarray | None, rows: np.ndarray) -> Weight:
    if sample_weight is None or rows.shape[0] == 0:
        return Weight(np.array([float(rows.shape[0] if sample_weight is None else 0.0)]), rows.shape[0],
                      np.zeros(1, dtype=np.int64))
    w = sample_weight[rows]
    e = int(np.frexp(float(np.max(w)))[1])
    total = np.sum(np.ldexp(w.astype(np.float64), -e))
    return Weight(np.array([total], dtype=np.float64), rows.shape[0], np.array([e], dtype=np.int64))


def chunk_weight(seed: int, fraction: float, dtype, sample_weight, n_rows: int | None, where: str,
                 index: int) -> Weight:
    """The training weight of chunk ``index`` from its ``sample_weight`` alone (runs on Dask workers too).

    The weights are validated and cast to ``dtype`` as ``fit`` does; ``n_rows`` (the chunk's rows, checked
    against the weights' length) defaults to that length.
    """
    if sample_weight is not None:
        n_rows = _num_samples(sample_weight) if n_rows is None else n_rows
        sample_weight = expanded_weights(sample_weight, n_rows)
        zero = _all_zero(sample_weight)
        with naming(where):
            checked = check_weights(np.ones(np.shape(sample_weight)) if zero else sample_weight,
                                    np.empty((n_rows, 0)), dtype)
        sample_weight = np.zeros_like(checked) if zero else checked
    rows = chunk_split(seed, index, n_rows, fraction)[0]
    return rows_weight(sample_weight, rows)


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
    keys = seeded_rng(seed, SAMPLE_STREAM, index).random(rows.shape[0])
    keep = _smallest(keys)
    keep = keep[keys[keep] < below]
    chosen = rows[keep]
    w = None if data.sample_weight is None else data.sample_weight[chosen]
    return Sample(keys[keep], data.X[chosen], data.Y[chosen], w, rows_weight(data.sample_weight, rows))


def merge_samples(a: Sample, b: Sample) -> Sample:
    """The sample of the union of two disjoint sets of chunks."""
    keys = np.concatenate([a.keys, b.keys])
    keep = _smallest(keys)
    w = None
    if a.w is not None or b.w is not None:
        w = np.concatenate([np.ones(s.keys.shape[0], s.X.dtype) if s.w is None else s.w for s in (a, b)])[keep]
    sparse = scipy.sparse.issparse(a.X) or scipy.sparse.issparse(b.X)  # a stream may mix sparse and dense chunks
    X = (scipy.sparse.vstack([a.X, b.X], format="csr") if sparse else np.concatenate([a.X, b.X]))[keep]
    Y = np.concatenate([a.Y, b.Y])[keep]
    return Sample(keys[keep], X, Y, w, merge_weights(a.weight, b.weight))
