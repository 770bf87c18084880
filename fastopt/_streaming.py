"""Out-of-core fitting: stream chunks of rows through the solvers, one chunk in memory at a time.

This module drives :meth:`fastopt.LinearRegressor.fit_stream`, every chunk read in this process; the epoch
loop and each chunk's pass are in :mod:`fastopt._sweeps` (shared with the Dask inputs of :mod:`fastopt._dask`,
whose passes run on the workers), and what each chunk contributes, and how chunks are ordered and split, is in
:mod:`fastopt._chunks`.

- The closed form merges each chunk's sufficient statistics exactly (any chunking gives one fit's answer).
- An iterative solver runs epochs as ``fit`` does, an *epoch* being one sweep over all chunks: one pass over
  each chunk's rows (shuffled inside the chunk by the solver's own random stream). When the chunks can be
  indexed (a list, or the blocks of a Dask array), each epoch visits them in a fresh permutation drawn from
  ``random_state`` (in order when ``shuffle=False``), as ``dask_ml.wrappers.Incremental`` does. Every pass of
  epoch ``e`` runs at the schedule's rate for epoch ``e`` of ``max_epochs``, so a streamed fit is, bit for
  bit, the in-memory sequence of ``partial_fit`` calls in the same chunk order with each epoch's rate set.
- ``learning_rate="auto"`` is estimated before the first epoch from a seeded uniform sample of at most
  ``AUTO_ROWS`` training rows across all chunks (:class:`fastopt._chunks.Sample`; one extra read of the stream, or on
  Dask a
  reduction on the workers that brings back only the sampled rows). A one-shot iterator cannot be read twice:
  there, as in ``partial_fit``, the first chunk's rows set it.
- ``early_stopping=True`` holds out a seeded ``validation_fraction`` of every chunk's rows
  (:func:`fastopt._chunks.chunk_split`), scores them as the in-memory fit does and stops by the same rule (see
  :class:`fastopt._sweeps.Epochs`), with memory bounded by one chunk.
- Sample weights are normalised by one stream-wide mean (see "Sample weights" in ARCHITECTURE.md): the
  learning-rate sampling pass totals it, otherwise the first chunk read decides (see
  :meth:`fastopt._sweeps.LocalPasses._weights`); a one-shot iterator divides by its first chunk's mean.

Nothing here imports Dask.
"""
from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any

import numpy as np
import scipy.sparse
from sklearn.base import clone

from fastopt import _closed_form, _iterative, _krylov, _solvers, _sparse
from fastopt._chunks import (
    ChunkSource,
    check_chunk,
    checked_statistics,
    chunk_rows,
    chunk_sample,
    merge_samples,
    read,
)
from fastopt._result import Outcome
from fastopt._sweeps import Epochs, LocalPasses, sample_rate, solve, template
from fastopt._validation import solver_view


def fold(source: ChunkSource, leaf: Callable, merge: Callable, n_targets: Callable):
    """``merge`` of ``leaf(X, y, sample_weight, where, index, reset)`` over every chunk, in a balanced tree
    (as in-memory segments and Dask blocks merge), and whether ``y`` is 1-D.

    The first chunk fixes the feature count and names (``reset``); later chunks are checked against them
    inside ``leaf``, and against its number of targets (``n_targets(value)``) here.
    """
    merger, targets, y_was_1d = _closed_form.TreeMerger(merge), None, None
    for position, (index, where, X, y, sample_weight) in enumerate(read(source)):
        value = leaf(X, y, sample_weight, where, index, position == 0)
        if targets is not None and n_targets(value) != targets:
            raise ValueError(f"{where}: y has {n_targets(value)} targets; earlier chunks had {targets}.")
        targets = n_targets(value)
        y_was_1d = np.ndim(y) == 1 if y_was_1d is None else y_was_1d
        merger.push(value)
    merged = merger.result()
    if merged is None:
        raise ValueError("the stream of chunks is empty; at least one chunk of rows is required.")
    return merged, y_was_1d


# ---------------------------------------------------------------- closed form: merge statistics, solve once


def _closed_form_pass(checker, params: dict, source: ChunkSource, kind: str, sizes: list | None = None):
    """Merged statistics of every chunk, in stream order, and whether ``y`` is 1-D; ``sizes`` (a list) receives
    each chunk's ``(sparse, rows, stored values)``."""
    def leaf(X, y, sample_weight, where, index, reset):
        if sizes is not None:
            sparse = scipy.sparse.issparse(X)
            sizes.append((sparse, chunk_rows(X), X.nnz if sparse else 0))
        return checked_statistics(checker, params, X, y, sample_weight, where, kind, reset=reset)[0]

    return fold(source, leaf, _closed_form.merge_states, lambda state: state.n_targets)


def _null_pass(checker, params: dict, source: ChunkSource, state, Q: np.ndarray) -> float:
    """:func:`fastopt._closed_form.null_squares` over every chunk of another read of the stream (the pivoted
    path's confirming pass: O(n d) per null direction, where the QR pass costs O(n d^2))."""
    mean_x, total = state.mean[: state.n_features], 0.0
    for _, where, X, y, sample_weight in read(source):
        data = check_chunk(checker, X, y, sample_weight, where)
        total += _closed_form.null_squares(params, mean_x, state.weight_exp, data, Q)
    return total


def _statistics_fit(params: dict, checker, name: str, source: ChunkSource, prior) -> Outcome:
    """The closed form: merged statistics solved once (a fit of all rows: no warm start, ``prior`` unused)."""
    params = checker.get_params()
    sizes = []
    try:
        state, y_was_1d = _closed_form_pass(checker, params, source, "fit", sizes)
    except _sparse.GramMemoryError as error:  # (a chunk source's own MemoryError is its own: not advised on)
        if not source.one_shot:
            raise
        # the solvers whose cost follows the nonzeros read the rows again (Krylov) or run epochs (SGD)
        raise MemoryError(
            f"{error} chunks is a one-shot iterator, which the Krylov solvers (one read of the stream per "
            "iteration) cannot take: pass a list or a callable returning a fresh iterator (e.g. lambda: "
            "read_chunks(path)), where solver='auto' runs LSQR or CG, or fit one pass with solver='sgd' and "
            "max_epochs=1."
        ) from error
    second_pass = None if source.one_shot else lambda: _closed_form_pass(checker, params, source, "qr")[0]
    krylov = None
    if (params["solver"] == "auto" and not source.one_shot and not params["positive"]
            and all(size[0] for size in sizes) and _krylov.qr_fallback_iterations(
                sum(size[1] for size in sizes), state.n_features, sum(size[2] for size in sizes),
                state.n_targets, chunks=len(sizes)) >= _krylov.AUTO_MIN_ITERS):
        # LSQR/CGLS over the stream before the QR pass, which densifies the sparse chunks (each iteration a read
        # of the stream: only where the QR pass costs at least AUTO_MIN_ITERS of them)
        auto = {**params, _krylov.AUTO_KEY: True, _krylov.QR_FALLBACK_KEY: True}
        krylov = lambda: _krylov.fit_stream(auto, _solvers.krylov_for(params["alpha"]), source,  # noqa: E731
                                            functools.partial(check_chunk, checker), None)
    null_pass = None if source.one_shot else functools.partial(_null_pass, checker, params, source, state)
    return Outcome(name, solve(params, state, second_pass, krylov, null_pass), y_was_1d)


# ---------------------------------------------------------------- iterative solvers


def sampler(checker, name: str, params: dict, source: ChunkSource) -> Callable[[int], tuple]:
    """``learning_rate="auto"`` and the stream's training weight (:func:`fastopt._sweeps.sample_rate`) from the
    learning-rate sample of every chunk (:func:`fastopt._chunks.chunk_sample`), drawn by one read of the
    stream; the first chunk read sets ``checker``'s features."""
    def draw(seed: int) -> tuple:
        def leaf(X, y, sample_weight, where, index, reset):
            return chunk_sample(checker, params, seed, X, y, sample_weight, where, index, reset)

        return sample_rate(name, params, seed, fold(source, leaf, merge_samples, lambda part: part.Y.shape[1])[0])

    return draw


def _epochs_fit(params: dict, checker, name: str, source: ChunkSource, prior) -> Outcome:
    """An iterative solver: epochs of one pass over each chunk (:class:`fastopt._sweeps.Epochs`).

    A warm start continues ``prior`` where a re-readable stream's first chunk (read once more) has its features,
    targets and precision, and the stream sets the feature names afresh, as ``fit`` does in memory; otherwise
    the fit starts cold (the earlier fit's features and targets were binding: another feature count or target
    count was refused, and a DataFrame stream after an array fit kept no names). A one-shot stream cannot be
    looked at first: its chunks are checked against the earlier fit's features."""
    reset = prior is None
    if prior is not None and not source.one_shot:
        first = _first_chunk(source)
        if first is not None:
            where, (X, y, sample_weight) = first
            data = check_chunk(clone(checker), X, y, sample_weight, where, reset=True)
            prior = prior if _iterative._continues(prior, params, data) else None
            reset = True
    passes = LocalPasses(source, checker, reset=reset)
    return Epochs(params, name, passes).run(prior, sampler(checker, name, params, source))


def _passes_fit(params: dict, checker, name: str, source: ChunkSource, prior) -> Outcome:
    """A Krylov solver: one read of the stream per iteration (:func:`fastopt._krylov.fit_stream`)."""
    return _krylov.fit_stream(params, name, source, functools.partial(check_chunk, checker), prior)


# How each kind of solver (fastopt._result.Solver.chunked) fits a stream of chunks.
FITS = {"statistics": _statistics_fit, "epochs": _epochs_fit, "passes": _passes_fit}


def fit(estimator, chunks, warm_state: Callable[[str], Any]) -> Outcome:
    """``LinearRegressor.fit_stream``: fit a stream of chunks with ``estimator``'s hyperparameters (already
    validated), continuing ``warm_state(name)`` under ``warm_start``; the
    :class:`fastopt._result.Outcome` for the estimator to take. Nothing here writes to the estimator."""
    source = chunks if isinstance(chunks, ChunkSource) else ChunkSource(chunks)
    # "auto" on a re-readable stream is judged by its first chunk, as fit judges X: SGD for a robust loss on sparse
    # rows, a Krylov solver where the Gram would not fit (a one-shot stream cannot be looked at twice)
    X = _first_chunk_x(source) if estimator.solver == "auto" and not source.one_shot else None
    X = solver_view(X)  # (a chunk that is a DataFrame of sparse columns: as the CSR its validation makes)
    name = _solvers.resolve(estimator.solver, estimator.loss, X, estimator.alpha, incremental=True,
                            sparse=scipy.sparse.issparse(X), rereadable=True, average=estimator.average)
    solver = _solvers.SOLVERS[name]
    solver.check_incremental()  # e.g. Newton: every iteration reads all rows
    _solvers.check_options(name, estimator.get_params(), None, where="stream")  # before any pass reads the options
    checker = template(estimator)
    if (krylov := _krylov_first(estimator, name, source, X)) is not None:
        outcome = _krylov.fit_stream({**checker.get_params(), _krylov.AUTO_KEY: True}, krylov, source,
                                     functools.partial(check_chunk, checker), warm_state(krylov))
        if outcome is not None:
            return dataclasses.replace(outcome, checked=checker)
    # The estimator's own params: a RandomState given as random_state is advanced as in-memory fits advance it.
    outcome = FITS[solver.chunked](estimator.get_params(), checker, name, source, warm_state(name))
    return dataclasses.replace(outcome, checked=checker)


def _krylov_first(estimator, name: str, source: ChunkSource, X) -> str | None:
    """The Krylov solver ``solver="auto"`` runs first on a re-readable stream of sparse chunks whose Gram fits
    (as :func:`fastopt._solvers.krylov_first` in memory: ``"cg"`` with a ridge, else ``"lsqr"``), judged by the
    first chunk's ``X`` (:func:`_first_chunk_x`, already read for the choice of solver); None for the closed form
    directly. :func:`fastopt._krylov.fit_stream` then judges the cost on the whole stream after its first read
    (the moments)."""
    if estimator.solver != "auto" or name != "normal" or source.one_shot:
        return None
    if not (scipy.sparse.issparse(X) and X.ndim == 2 and _solvers.krylov_first_shape(X.shape, estimator.positive)):
        return None
    return _solvers.krylov_for(estimator.alpha)


def _first_chunk(source: ChunkSource):
    """``(where, (X, y, sample_weight))`` of a re-readable stream's first chunk (None for an empty stream), read
    once more."""
    first = next(source.unpacked(source.epoch()), None)
    if first is None:
        return None
    _, where, X, y, sample_weight = first
    return where, (X, y, sample_weight)


def _first_chunk_x(source: ChunkSource):
    """The ``X`` of a re-readable stream's first chunk (None for an empty stream), read once more."""
    first = _first_chunk(source)
    return first[1][0] if first is not None else None
