"""Out-of-core fitting: stream chunks of rows through the solvers, one chunk in memory at a time.

This module drives the fits of :meth:`fastopt.LinearRegressor.fit_stream` and of the Dask inputs of
:mod:`fastopt._dask`; what each chunk contributes, and how chunks are ordered and split, is in
:mod:`fastopt._chunks`.

- The closed form merges each chunk's sufficient statistics exactly (any chunking gives one fit's answer).
- An iterative solver runs epochs as ``fit`` does, an *epoch* being one sweep over all chunks: one pass over
  each chunk's rows (shuffled inside the chunk by the solver's own random stream). When the chunks can be
  indexed (a list, or the blocks of a Dask array), each epoch visits them in a fresh permutation drawn from
  ``random_state`` (in order when ``shuffle=False``), as ``dask_ml.wrappers.Incremental`` does. Every pass of
  epoch ``e`` runs at the schedule's rate for epoch ``e`` of ``max_epochs``, so a streamed fit is, bit for
  bit, the in-memory sequence of ``partial_fit`` calls in the same chunk order with each epoch's rate set.
- ``learning_rate="auto"`` is estimated before the first epoch from a seeded uniform sample of at most
  ``AUTO_ROWS`` training rows across all chunks (:class:`fastopt._chunks.Sample`; one extra read of the stream, or on Dask a
  reduction on the workers that brings back only the sampled rows). A one-shot iterator cannot be read twice:
  there, as in ``partial_fit``, the first chunk's rows set it.
- ``early_stopping=True`` holds out a seeded ``validation_fraction`` of every chunk's rows
  (:func:`fastopt._chunks.chunk_split`), scores them as the in-memory fit does and stops by the same rule (see
  :class:`_Epochs`), with memory bounded by one chunk.
- Sample weights are divided by one constant, their mean over all the stream's training rows (:class:`fastopt._chunks.Weight`),
  so the sweeps minimise the in-memory objective of the concatenated rows: the learning-rate sampling pass
  totals it, or on Dask a reduction of the weight blocks; otherwise the first chunk read decides (see
  :meth:`_Epochs._weights`: one read of every chunk's weights, none for an unweighted stream). A one-shot
  iterator divides by its first chunk's mean.

Nothing here imports Dask.
"""
from __future__ import annotations

import copy
import functools
import sys
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import numpy as np
from sklearn.utils.validation import _num_samples

from fastopt import _closed_form, _iterative, _krylov, _solvers
from fastopt._chunks import (
    SAMPLE_STREAM,
    ChunkSource,
    Sample,
    Weight,
    check_chunk,
    check_dtype,
    chunk_orders,
    chunk_sample,
    chunk_split,
    chunk_state,
    chunk_weight,
    merge_samples,
    merge_weights,
    naming,
    read,
    rows_weight,
    seeded_rng,
    stream_seed,
    unpack,
    validation_fraction,
)


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


def restart(estimator, name: str) -> None:
    """Forget earlier ``partial_fit`` state so the next one starts a fresh fit (kept under ``warm_start``)."""
    if not (estimator.warm_start and getattr(estimator, "_solver_name", None) == name):
        estimator.__dict__.pop("_solver_state", None)


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


def finish(estimator, name: str, state, y_was_1d: bool, second_pass: Callable[[], Any] | None = None):
    """Solve merged statistics and set the fitted attributes, exactly as the in-memory ``fit`` does.

    When the Gram is too ill-conditioned for Cholesky, ``second_pass()`` returns the merged ``R`` factors
    of the same rows (:func:`fastopt._closed_form.chunk_qr_state`); the solve then switches to QR with the
    in-memory fit's ``solver_``. Without a second pass (a one-shot stream) the closed form falls back to its
    warned minimum-norm eigensolve.
    """
    if state.weight == 0:
        raise ValueError("sample_weight sums to zero over all chunks; at least one sample must have positive weight.")
    params = estimator.get_params()
    if second_pass is not None and _closed_form.needs_qr(params, state):
        state = replace(second_pass(), gram=state.gram, raw_diag=state.raw_diag)
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
        if w is not None:  # relative weights, brought near 1 so that no sum over them overflows
            w = w / _iterative.weight_mean(w)
        rng = seeded_rng(self.seed, SAMPLE_STREAM)
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
                self.weight_mean = self._mean(rows_weight(sw, train), rows)
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
        stopping, losses, rates, scores, scored = None, [], [], [], None
        for epoch in range(max_epochs + self.early):
            training = epoch < max_epochs
            order = next(orders) if training and source.indexable else None
            loss, score = self._pass(order, epoch if training else None, scored)
            # Made once the first pass has set up the state (the base rate, the null loss of its chunk).
            stopping = stopping or _iterative.make_stopping(params, estimator._solver_state, self.early)
            if scored is not None:
                scores.append(score)
                if params["verbose"]:
                    print(f"-- Epoch {epoch}: validation R^2 {score:.6f}")
                stop = stopping.update(1.0 - score, scored.params)
                self._follow_rate(stopping)
                if stop:
                    break
            if not training:
                break
            losses.append(loss)
            state = estimator._solver_state
            rates.append(self.solver.epoch_lr(params, state, epoch))
            if params["verbose"]:
                lr = self.solver.epoch_lr(params, state, epoch)
                print(f"-- Epoch {epoch + 1}: loss {loss:.6g}, lr {lr:.4g}, steps {state.t}, chunk order {order}")
            if self.early:
                scored = replace(state, rng=copy.deepcopy(state.rng))  # its arrays are never written again
            elif stopping.update(loss, None):
                break
            else:
                self._follow_rate(stopping)
        stopping.warn_unless_stopped(self.name, max_epochs)
        final = replace(scored if self.early else estimator._solver_state, loss_curve=losses, learning_rates=rates)
        result = self.solver.result(final, stopping, scores if self.early else None, params=params)
        return estimator._apply(self.name, _Targets(self.y_was_1d), result)

    def _follow_rate(self, stopping) -> None:
        """Give the next epoch the rate that ``schedule="plateau"``'s rule chose."""
        if isinstance(stopping, _iterative.RatePlateau):
            self.estimator._solver_state.lr = stopping.lr

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
                # The pass loss is the chunk's mean of (weight / weight_mean) * loss over its training rows;
                # weights are summed relative to weight_mean, so that the sum cannot overflow.
                total += train.shape[0] * estimator._solver_state.loss_curve[-1]
                weight += float(train.shape[0] if sw is None
                                else np.sum(sw[train] / self.weight_mean, dtype=np.float64))
            if val.size:
                X_val, Y_val = data.X[val], data.Y[val]
                w_val = None if sw is None else sw[val] / sw.dtype.type(self.weight_mean)
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
    name = _solvers.resolve(estimator.solver, estimator.loss, incremental=True)
    if name in _closed_form.SOLVERS:
        return _closed_form_fit(estimator, name, source)
    if name in _krylov.SOLVERS:
        return _krylov.fit_stream(estimator, name, source, functools.partial(check_chunk, estimator))
    if not getattr(_solvers.SOLVERS[name], "streams", True):  # e.g. Newton: every iteration reads all rows
        _solvers.SOLVERS[name].partial_fit(estimator.get_params(), None)
    restart(estimator, name)
    return _Epochs(estimator, source, name).run(sampler, weigher)
