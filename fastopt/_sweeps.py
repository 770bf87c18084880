"""Fits over chunks of rows, wherever the chunks live: the epochs of an iterative solver and the closed form's
final solve, shared by :meth:`fastopt.LinearRegressor.fit_stream` (:mod:`fastopt._streaming`, chunks read in
this process) and by Dask inputs (:mod:`fastopt._dask`, each chunk's pass a task on the worker that holds it).

The epoch loop (:class:`Epochs`: schedule, stopping rule, early stopping) runs in the caller's process and
sees only small values: the model and optimizer state (:class:`fastopt._iterative.IterState`) and, per chunk,
a :class:`ChunkRecord` of sums. The pass over one chunk (:func:`chunk_pass`, :func:`block_pass`) takes the
state and returns the updated one, so a runner may carry the state to the chunk rather than the chunk to the
state. Nothing here reads or writes an estimator's fitted state: a fit returns an :class:`Outcome`, which
the estimator takes once the fit has succeeded; and nothing here imports Dask.
"""
from __future__ import annotations

import copy
import functools
import itertools
import pickle
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, Protocol

import numpy as np
from sklearn.base import clone
from sklearn.utils.validation import _num_samples

from fastopt import _closed_form, _iterative, _solvers
from fastopt._chunks import (
    SAMPLE_STREAM,
    ChunkSource,
    Sample,
    Weight,
    check_chunk,
    check_dtype,
    chunk_orders,
    chunk_split,
    chunk_weight,
    merge_weights,
    naming,
    read,
    rows_weight,
    seeded_rng,
    stream_seed,
    unpack,
    validation_fraction,
)
from fastopt._iterative_lr import (
    RESIDUAL_CLIP,
    clipped_mean_rounds,
    clipped_mean_step,
    floors_rare_columns,
    held_out_curvatures,
    ridge_per_column,
    rows_times,
    stream_scaling,
    zero_image,
)
from fastopt._result import FitResult, Outcome
from fastopt._validation import check_features

# ---------------------------------------------------------------- the estimator's features, checked on a copy


def template(estimator):
    """An unfitted copy of ``estimator`` carrying its feature count and names, which chunks are checked
    against (and, when a chunk sets them, the copy takes them, not the estimator)."""
    copy_ = clone(estimator)
    for attr in ("n_features_in_", "feature_names_in_"):
        if hasattr(estimator, attr):
            setattr(copy_, attr, getattr(estimator, attr))
    return copy_


def detach_random_state(params: dict, fresh: bool, advance: bool = True) -> dict:
    """``params`` whose ``random_state`` a chunk's pass may use in another process.

    A fresh fit's first pass draws its solver seed from ``random_state``; a ``RandomState`` instance must
    advance once, here, whichever process that pass runs in: the pass gets a copy as it was. ``advance=False``
    where the fit has advanced it already (:func:`fastopt._chunks.stream_seed`): one draw a fit, as in memory.
    """
    random_state = params["random_state"]
    if not (fresh and isinstance(random_state, np.random.RandomState)):
        return params
    detached = copy.deepcopy(random_state)
    if advance:
        _iterative.draw_seed(random_state)  # the draw the solver's seed makes from it
    return {**params, "random_state": detached}


# ---------------------------------------------------------------- closed form


def solve(params: dict, state, second_pass: Callable[[], Any] | None = None,
          krylov_instead: Callable[[], Any] | None = None,
          null_pass: Callable[[np.ndarray], float] | None = None) -> FitResult:
    """Solve merged closed-form statistics exactly as the in-memory ``fit`` does.

    When the Gram is too ill-conditioned for Cholesky, ``second_pass()`` returns the merged ``R`` factors
    of the same rows (:func:`fastopt._closed_form.chunk_qr_state`); the solve then switches to QR with the
    in-memory fit's warning and ``solver_``. Before it, ``null_pass(Q)`` (:func:`fastopt._closed_form.null_squares`
    summed over the same rows) lets exactly dependent columns take the pivoted path
    (:func:`fastopt._closed_form.pivoted`); then ``krylov_instead()`` (``solver="auto"`` on sparse chunks, as
    :func:`fastopt._closed_form.krylov_instead` in memory) may return a Krylov solver's
    :class:`fastopt._result.Outcome` within the QR pass's cost, which is the answer, with these statistics kept
    as its state. Without a second pass (a one-shot stream) the closed form falls back to its warned
    minimum-norm eigensolve.
    """
    if state.weight == 0:
        raise ValueError("sample_weight sums to zero over all chunks; at least one sample must have positive weight.")
    if second_pass is not None and _closed_form.needs_qr(params, state):
        if null_pass is not None and (result := _closed_form.pivoted_any(params, state, null_pass)) is not None:
            return result
        if krylov_instead is not None and (outcome := krylov_instead()) is not None:
            return FitResult(outcome.result.coef, outcome.result.intercept, state, outcome.result.attrs)
        state = replace(second_pass(), gram=state.gram, raw_diag=state.raw_diag)
    return _closed_form.finish(params, state)


# ---------------------------------------------------------------- one chunk's pass


@dataclass(frozen=True)
class PassSpec:
    """What every chunk's pass of one sweep needs besides the state and the chunk (small: it travels).

    Attributes
    ----------
    name : str
        The iterative solver.
    params : dict
        The estimator's hyperparameters.
    seed : int
        The stream's seed (:func:`fastopt._chunks.stream_seed`): held-out rows.
    fraction : float
        Held-out fraction of every chunk's rows (0 without early stopping).
    epoch : int or None
        The 0-based epoch whose rate the passes take; None scores held-out rows without training.
    stream : bool
        A streamed fit's pass (:class:`fastopt._iterative.Sweep`); False is ``partial_fit``'s (each chunk's
        weights divided by their own mean, the schedule advanced per chunk, no held-out rows).
    lr0 : float or None
        The base rate resolved for the whole stream; None resolves it on the first chunk's rows.
    affine : Affine or None
        The stream's preconditioning, resolved with ``lr0`` (:func:`fastopt._iterative_lr.stream_scaling`).
    weight_mean : float or None
        The stream-wide mean training weight every chunk's weights are divided by (None: decided later).
    unweighted : str or None
        The chunk whose lack of weights made the stream unweighted (a chunk with weights is then an error).
    observe : bool
        Total the held-out rows' weight and weighted target sum (the first epoch).
    scored : ndarray or None
        Parameters to score on the held-out rows, with their ``dims``.
    dims : tuple or None
    y_mean : float, ndarray or None
        When given, also sum the held-out rows' squares around it (``SS_tot``, the first scoring pass).
    """

    name: str
    params: dict
    seed: int = 0
    fraction: float = 0.0
    epoch: int | None = 0
    stream: bool = True
    lr0: float | None = None
    affine: Any = None
    weight_mean: float | None = None
    unweighted: str | None = None
    observe: bool = False
    scored: np.ndarray | None = None
    dims: tuple | None = None
    y_mean: Any = None


@dataclass
class ChunkRecord:
    """One chunk's sums from one pass, all a sweep's caller needs from it (a few floats or k-vectors).

    ``loss`` is the chunk's pass loss times its training rows and the stream's mean weight, ``weight`` its
    training weight: an epoch's loss is ``sum(loss) / sum(weight)``. The held-out rows give their count,
    weight and weighted target sum (``observe``), their weighted squared residuals under ``scored`` (``res``)
    and their weighted squares around ``y_mean`` (``tot``).
    """

    index: int
    y_was_1d: bool
    loss: float = 0.0
    weight: float = 0.0
    n_val: int = 0
    val_weight: float = 0.0
    val_sum_y: Any = 0.0
    val_low: Any = None  # each target's least and greatest held-out value of nonzero weight (None: no such row)
    val_high: Any = None
    res: Any = None
    tot: Any = None


@dataclass
class Carry:
    """What a chunk's pass hands to the next one (the state) and to the sweep's caller (the record)."""

    state: _iterative.IterState | None
    record: ChunkRecord

    def __sizeof__(self) -> int:
        # Dask's memory and transfer accounting reads this (through sys.getsizeof): the pickled size counts the
        # state's arrays, which the default, shallow size of an object would miss.
        return len(pickle.dumps(self, protocol=pickle.HIGHEST_PROTOCOL))


def chunk_pass(state, data, train: np.ndarray, val: np.ndarray, spec: PassSpec, where: str, index: int) -> Carry:
    """One pass of ``spec``'s solver over the validated chunk ``data`` (its training rows ``train``), from
    ``state`` (None: start the fit), and the chunk's :class:`ChunkRecord`.

    ``state`` is not modified: a pass run twice (as Dask reruns the work of a lost worker) gives the same
    result. Errors are prefixed with ``where``.
    """
    record = ChunkRecord(index=index, y_was_1d=data.y_was_1d)
    sw = data.sample_weight
    if spec.epoch is not None:
        if state is not None:
            if data.Y.shape[1] != state.dims[1]:
                raise ValueError(f"{where}: y has {data.Y.shape[1]} targets; earlier chunks had {state.dims[1]}.")
            # The pass draws its row order from the state's generator: draw from a copy. A streamed fit keeps
            # the pass losses in the records, so the state stays small as it travels.
            state = replace(state, rng=copy.deepcopy(state.rng), loss_curve=list(state.loss_curve) if not spec.stream
                            else [])
        sweep = _iterative.Sweep(spec.epoch, train if val.size else None, spec.lr0, spec.weight_mean, spec.affine) \
            if spec.stream else None
        with naming(where):
            _solvers.check_options(spec.name, spec.params, data.Y.shape[1])
            state = _solvers.SOLVERS[spec.name].partial_fit(spec.params, data, state=state, sweep=sweep).state
        if spec.stream:
            # The pass loss is the chunk's mean of (weight / weight_mean) * loss over its training rows;
            # weights are summed relative to weight_mean, so that the sum cannot overflow.
            record.loss = train.shape[0] * state.loss_curve[-1]
            record.weight = float(train.shape[0] if sw is None
                                  else np.sum(sw[train] / spec.weight_mean, dtype=np.float64))
    if val.size:  # NumPy's loops, not BLAS, whose threads would spin on the next pass's helper core (rows_times)
        Y_val = data.Y[val].astype(np.float64)
        w_val = np.ones(val.shape[0]) if sw is None else (sw[val] / sw.dtype.type(spec.weight_mean)).astype(np.float64)
        if spec.observe:
            # (rows of weight 0 do not count: with fewer than two others R^2 is undefined)
            counted = w_val > 0
            record.n_val, record.val_weight = int(np.count_nonzero(counted)), float(w_val.sum())
            record.val_sum_y = np.einsum("i,ik->k", w_val, Y_val)
            if record.n_val:
                held = Y_val[counted]
                record.val_low, record.val_high = held.min(axis=0), held.max(axis=0)
        if spec.scored is not None:
            coef, intercept = _iterative.split_params(spec.scored, *spec.dims)
            record.res = np.einsum("i,ik->k", w_val, (Y_val - (rows_times(data.X[val], coef) + intercept)) ** 2)
            if spec.y_mean is not None:
                record.tot = np.einsum("i,ik->k", w_val, (Y_val - spec.y_mean) ** 2)
    return Carry(state, record)


def block_pass(carry: Carry | None, block: tuple, checker, spec: PassSpec, where: str, index: int) -> Carry:
    """Validate chunk ``index``, ``block = (X, y, sample_weight)``, against ``checker`` (a :func:`template`),
    hold out its rows and make its :func:`chunk_pass` from ``carry``'s state: one task of a sweep on the Dask
    worker that holds the chunk."""
    X, y, sample_weight = block
    data = check_chunk(checker, X, y, sample_weight, where)
    train, val = chunk_split(spec.seed, index, data.X.shape[0], spec.fraction)
    if spec.unweighted is not None and data.sample_weight is not None:
        raise ValueError(
            f"{where} has sample_weight but {spec.unweighted}, the stream's first chunk, has none, so the "
            "stream was taken as unweighted; give every chunk weights (ones for unit weight) or none."
        )
    if data.sample_weight is None and spec.weight_mean is not None and spec.weight_mean != 1.0:
        data = replace(data, sample_weight=np.ones(data.X.shape[0], dtype=data.X.dtype))
    return chunk_pass(None if carry is None else carry.state, data, train, val, spec, where, index)


# ---------------------------------------------------------------- epochs


class Passes(Protocol):
    """Runs one sweep: every chunk's pass, in a given order, the state carried from each to the next."""

    indexable: bool  # chunks can be visited in any order (each epoch draws a permutation)
    one_shot: bool  # a single pass is possible
    weight_mean: float | None  # the stream's mean training weight, once decided
    unweighted: str | None

    def __len__(self) -> int: ...

    def check_epochs(self, n_epochs: int, label: str | None = None) -> None: ...

    def run(self, order, spec: PassSpec, state) -> tuple[Any, list[ChunkRecord]]: ...


def sample_rate(name: str, params: dict, seed: int, sample: Sample) -> tuple[float | None, Weight, Any]:
    """``learning_rate="auto"`` from a seeded sample of the training rows of every chunk (None when there are
    none: the first pass then says what is wrong), the training weight of every chunk, which the pass that
    drew the sample totalled, and the stream's preconditioning from the same sample
    (:func:`fastopt._iterative_lr.stream_scaling`; the rate is that of the scaled rows). Small in, small out: on
    Dask it runs where the sample was merged."""
    if sample.n_train == 0:
        return None, sample.weight, None
    _iterative.refuse_underflowing_targets(name, params, sample.Y, sample.w)
    # Sampled rows that all weigh zero (the stream's weight lies elsewhere) still measure the curvature.
    w = sample.w if sample.w is not None and np.any(sample.w) else None
    if w is not None:  # relative weights, brought near 1 so that no sum over them overflows
        w = w / _iterative.weight_mean(w)
    rng = seeded_rng(seed, SAMPLE_STREAM)
    solver = _solvers.SOLVERS[name]
    # SparseAdam mode steps dense chunks as CSR: its map is made from CSR rows, as fit makes it (a map from
    # dense rows centred mostly-zero columns, which the chunks as CSR then refused)
    X0 = _iterative.as_lazy_X(name, params, sample.X)
    per_column = ridge_per_column(name, params, X0, _iterative.lazy_rule(name, params))
    fraction = X0.shape[0] / sample.n_train
    # a stream its sample holds whole takes fit's map (floored for FLOORED_RULES, as in memory)
    affine = stream_scaling(params, X0, w, per_column=per_column, fraction=fraction,
                            floor=floors_rare_columns(name, params, sample.n_train, per_column))
    X = X0 if affine is None else affine.transform(X0)
    # the rate for the rows the map was not made from (most of a large stream's)
    held_out = held_out_curvatures(params, X0, X, w, affine, fraction, per_column)
    rate = solver.stream_learning_rate(_iterative._penalised(_stepped(name, params, sample), affine, name), X, sample.Y,
                                       w, sample.n_train, rng, curvatures=held_out, zero=zero_image(affine, X))
    return rate, sample.weight, affine


def _stepped(name: str, params: dict, sample: Sample) -> dict:
    """``params`` with the minibatch the rate is taken for. A minibatch never spans chunks, and a chunk's last one
    is padded to ``batch_size`` (:class:`fastopt._iterative.Sweep`), so SGD's and the momentum rules' steps are at
    most those of ``batch_size`` rows, whose rate they take. The adaptive rules' steps do not shrink with the
    gradient's scale: where chunks hold fewer training rows than ``batch_size`` on average, their rate is that of
    minibatches of that many rows."""
    rows = sample.n_train / max(sample.weight.sums.shape[0], 1)
    b = int(params["batch_size"])
    if rows >= b or _iterative.make_spec(name, params).follows_gradient:
        return params
    return {**params, "batch_size": max(1, int(rows))}


def mean_weight(weight: Weight, rows: str = "all chunks") -> float:
    """The mean training weight every chunk is divided by; zero is an error."""
    mean = weight.mean()
    if mean == 0:
        raise ValueError(
            f"sample_weight sums to zero over the training rows of {rows}; at least one training row must "
            "have positive weight."
        )
    return mean


class Validation:
    """The validation score of the held-out rows of every chunk, from the chunks' sums (:class:`ChunkRecord`).

    The score is the in-memory fit's: :func:`sklearn.metrics.r2_score` with the sample weights, averaged
    uniformly over targets, ``1 - SS_res / SS_tot`` with ``SS_tot = sum_i w_i (y_i - mean_w(y))^2`` (a
    constant target scores 1 when predicted exactly, else 0). The first sweep totals the weighted mean of
    ``y``; ``SS_tot`` is summed around it in the first scoring pass (the exact two-pass formula) and kept.
    The chunks' sums are added in sweep order.
    """

    def __init__(self):
        self.rows, self.weight, self.sum_y = 0, 0.0, 0.0
        self.low = self.high = None
        self.ss_tot = None

    def observe(self, records: list[ChunkRecord]) -> None:
        for r in records:
            if r.n_val:
                self.rows += r.n_val
                self.weight += r.val_weight
                self.sum_y = self.sum_y + r.val_sum_y
                self.low = r.val_low if self.low is None else np.minimum(self.low, r.val_low)
                self.high = r.val_high if self.high is None else np.maximum(self.high, r.val_high)

    def y_mean(self):
        """The weighted mean of the held-out targets while ``SS_tot`` is still to be summed, else None."""
        if self.ss_tot is not None:
            return None
        return self.sum_y / self.weight if self.weight > 0 else 0.0

    def score(self, records: list[ChunkRecord]) -> float:
        res, tot = 0.0, 0.0
        for r in records:
            if r.res is not None:
                res = res + r.res
                if r.tot is not None:
                    tot = tot + r.tot
        if self.ss_tot is None:
            self.ss_tot = tot
        res, tot = np.atleast_1d(res), np.atleast_1d(self.ss_tot)
        scores = np.ones(res.shape[0])
        valid = (res != 0) & (tot != 0)
        scores[valid] = 1.0 - res[valid] / tot[valid]
        scores[(res != 0) & (tot == 0)] = 0.0
        return float(np.mean(scores))


class Epochs:
    """An iterative fit over chunks: ``max_epochs`` sweeps of per-chunk passes, as ``fit`` runs epochs.

    Every pass of sweep ``e`` takes the schedule's rate for epoch ``e`` (:class:`fastopt._iterative.Sweep`),
    so a streamed fit is the in-memory sequence of ``partial_fit`` calls with each epoch's rate. With
    ``early_stopping`` every chunk holds out seeded rows (:func:`fastopt._chunks.chunk_split`); the parameters
    at the end of sweep ``e`` are scored on them during sweep ``e + 1`` (a last pass scores the last sweep),
    and when that score stops the fit, sweep ``e + 1`` is undone: the result is that of ``fit``'s rule
    stopping after epoch ``e``, with the best epoch's parameters restored.

    Every pass divides its chunk's weights by one constant, the mean weight of all the stream's training rows
    (:class:`fastopt._iterative.Sweep`), so the sweeps minimise ``fit``'s objective on the concatenated rows.
    It is totalled by the pass that samples the learning rate or by ``weigher``, or else decided by the
    runner when it reads the first chunk.
    """

    def __init__(self, params: dict, name: str, passes: Passes):
        self.params, self.name, self.passes = params, name, passes
        self.solver = _solvers.SOLVERS[name]
        self.seed = stream_seed(params["random_state"])
        self.early = bool(params["early_stopping"])
        self.fraction = validation_fraction(params)

    def run(self, prior, sampler: Callable[[int], tuple[float | None, Weight]] | None,
            weigher: Callable[[int], Weight | None] | None = None) -> Outcome:
        """Fit from ``prior`` (a warm start's state, or None). ``sampler(seed)`` returns :func:`sample_rate` of
        the merged learning-rate :class:`fastopt._chunks.Sample` of every chunk; ``weigher(seed)`` their merged
        training weight (None without weights); None leaves the weight to the runner."""
        params, passes = self.params, self.passes
        # max_epochs="auto" counts the stopping rules' rounds, whose length in epochs the first pass tells
        max_epochs = _iterative.max_epochs(params)
        label = _iterative.max_epochs_label(params, max_epochs)
        if self.early and passes.one_shot:
            raise TypeError(
                "early_stopping=True scores each epoch on held-out rows during the next pass over the chunks, "
                "but chunks is a one-shot iterator. Pass a list, a re-iterable object, or a callable returning "
                "a fresh iterator."
            )
        passes.check_epochs(max_epochs, label)
        orders = chunk_orders(self.seed, len(passes) if passes.indexable else 0, params["shuffle"])
        lr0, affine = None, None
        if params["learning_rate"] == "auto" and prior is None and not passes.one_shot:
            lr0, weight, affine = sampler(self.seed)
            passes.weight_mean = mean_weight(weight)
        elif weigher is not None:
            weight = weigher(self.seed)
            passes.weight_mean = 1.0 if weight is None else mean_weight(weight)
        if prior is not None:  # the first chunk moves its intercepts where the targets' offset moved (as _start)
            prior = replace(prior, recentre=True)
        # (the RandomState was advanced once by stream_seed, in __init__)
        spec = PassSpec(self.name, detach_random_state(params, prior is None, advance=False), self.seed,
                        self.fraction, lr0=lr0, affine=affine)
        validation = Validation() if self.early else None
        stopping, rates = None, []
        state, losses, scores, scored, y_was_1d = prior, [], [], None, None
        for epoch in itertools.count():
            if epoch >= max_epochs + self.early:  # (max_epochs="auto" is resolved after the first sweep)
                break
            training = epoch < max_epochs
            order = next(orders) if training and passes.indexable else None
            spec = replace(spec, epoch=epoch if training else None, weight_mean=passes.weight_mean,
                           unweighted=passes.unweighted, observe=self.early and epoch == 0,
                           scored=None if scored is None else _iterative.raw_weights(scored),
                           dims=None if scored is None else scored.dims,
                           y_mean=None if scored is None else validation.y_mean())
            after, records = passes.run(order, spec, state if training else None)
            if not records:
                raise ValueError("the stream of chunks is empty; at least one chunk of rows is required.")
            y_was_1d = records[0].y_was_1d if y_was_1d is None else y_was_1d
            if spec.observe:
                validation.observe(records)
                if validation.rows < 2:  # R^2 needs two rows, as in memory (_iterative._split)
                    # (a chunk holds out nothing where the fraction would leave it no training row: with blocks
                    # of 3 rows a fraction of 0.9 held out none, and the advice was a larger one)
                    raise ValueError(
                        f"early_stopping=True holds out validation_fraction={self.fraction} of each chunk's rows, "
                        f"{validation.rows} held-out row(s) of nonzero weight in all (sample_weight; 1 without), but "
                        "R^2 needs at least two. A chunk of n rows holds out ceil(validation_fraction * n) of them, "
                        "and none where that would leave it no training row: use larger chunks, a "
                        "validation_fraction that these chunks can spare, or early_stopping=False."
                    )
                _iterative.check_validation_targets(
                    validation.low, validation.high, f"validation_fraction={self.fraction} of each chunk's rows",
                    "raise validation_fraction, or order the rows so that each chunk holds varied targets")
            current = after if training else state
            if stopping is None:  # made once the first pass has set up the state (the base rate, the null loss)
                steps = current.t - (prior.t if prior is not None else 0)  # the first epoch's steps
                stopping = _iterative.make_stopping(params, current, self.early, steps_per_epoch=steps)
                max_epochs = _iterative.max_epochs(params, steps)
                label = _iterative.max_epochs_label(params, max_epochs)
                # the schedules' horizon from the second sweep on (every schedule gives the first its base rate)
                params = {**params, "max_epochs": max_epochs}
                spec = replace(spec, params={**spec.params, "max_epochs": max_epochs})
            if scored is not None:
                scores.append(validation.score(records))
                if params["verbose"]:
                    print(f"-- Epoch {epoch}: validation R^2 {scores[-1]:.6f}")
                stop = stopping.update(1.0 - scores[-1], scored.weights)
                _follow_rate(stopping, current)
                if stop:
                    break
            if not training:
                break
            total, weight = 0.0, 0.0
            for r in records:
                total += r.loss
                weight += r.weight
            losses.append(total / weight if weight > 0 else np.nan)
            state = after
            rates.append(self.solver.epoch_lr(params, state, epoch))
            if params["verbose"]:
                lr = self.solver.epoch_lr(params, state, epoch)
                print(f"-- Epoch {epoch + 1}: loss {losses[-1]:.6g}, lr {lr:.4g}, steps {state.t}, "
                      f"chunk order {order}")
            if self.early:
                scored = replace(state, rng=copy.deepcopy(state.rng))  # its arrays are never written again
            elif stopping.update(losses[-1], None):
                break
            else:
                _follow_rate(stopping, state)
        checked = isinstance(stopping, _iterative.RatePlateau) and not self.early
        reached = checked and len(losses) >= _iterative.REACHED_CHECK_MIN_EPOCHS
        stopping.warn_unless_stopped(self.name, label, lambda: _iterative.eps_note(self.name, params, state) + (
            self._check_plateau_stop(state, stopping.floor, reached=True) if reached else ""))
        if checked and stopping.stopped:
            self._check_plateau_stop(state, max(stopping.best, stopping.floor))
        final = replace(scored if self.early else state, loss_curve=losses, learning_rates=rates)
        result = self.solver.result(final, stopping, scores if self.early else None, params=params)
        return Outcome(self.name, result, y_was_1d)

    def _check_plateau_stop(self, state, scale: float, reached: bool = False) -> str:
        """The in-memory fit's check of a plateau stop (:func:`fastopt._iterative._check_plateau_stop`, as is
        ``reached``), over the stream when its passes can read it again (``plateau_gap``; not a one-shot stream,
        not Dask blocks), in the user's units, where the objective is the same."""
        params = self.params
        rule = _iterative.make_spec(self.name, params)
        robust = params["loss"] != "squared_error"
        gap = getattr(self.passes, "robust_gap" if robust else "plateau_gap", None)
        if gap is None or not _iterative.plateau_checked(params, rule):
            return ""
        reported = replace(state, weights=self.solver.current_params(params, state))
        alpha = 0.0 if rule.decoupled_decay else float(params["alpha"])
        p, k, fit_intercept = _iterative.raw_weights(reported), state.dims[1], bool(params["fit_intercept"])
        if robust:
            result = gap(p, k, alpha, fit_intercept, params["loss"], float(params["epsilon"]), scale)
        else:
            result = gap(p, k, alpha, fit_intercept, scale)
        if result is not None:
            # (a multi-target squared error: the target furthest beyond its level; Huber: the rows far out)
            f, gain, *worst = result
            at, target, far = (scale, None, None) if not worst else (worst[0], None, worst[1]) if robust else (
                *worst, None)
            return _iterative.warn_if_far(self.name, f, gain, at, loss=params["loss"], reweighted=robust,
                                          target=target, far=far, reached=reached)
        return ""


def _follow_rate(stopping, state) -> None:
    """Give the next epoch the rate that ``schedule="plateau"``'s rule chose."""
    if isinstance(stopping, _iterative.RatePlateau):
        state.lr = stopping.lr


class LocalPasses:
    """A sweep in this process: each chunk read in turn (the next one read meanwhile in a background thread),
    checked against ``checker`` (the first chunk read sets its features when ``reset``) and given its pass.

    When nothing totalled the stream's weight beforehand, the first chunk read decides (:meth:`_weights`).
    """

    def __init__(self, source: ChunkSource, checker, reset: bool):
        self.source, self.checker, self.reset = source, checker, reset
        self.indexable, self.one_shot = source.indexable, source.one_shot
        self.weight_mean = None  # the stream-wide mean training weight (Sweep.weight_mean)
        self.unweighted = None  # where the stream was taken as unweighted, for errors (see _weights)

    def __len__(self) -> int:
        return len(self.source)

    def check_epochs(self, n_epochs: int, label: str | None = None) -> None:
        self.source.check_epochs(n_epochs, label)

    def stream_weight(self, seed: int, fraction: float) -> Weight:
        """The training weight of every chunk, from one read of the chunks' weights."""
        total = None
        for index, where, X, _, sample_weight in self.source.unpacked(self.source.epoch()):
            dtype = check_dtype(X, None, where) or np.dtype(np.float64)
            part = chunk_weight(seed, fraction, dtype, sample_weight, _num_samples(X), where, index)
            total = part if total is None else merge_weights(total, part)
        return total

    def _weights(self, data, train: np.ndarray, spec: PassSpec, where: str, index: int):
        """``data`` ready for the stream's constant, which the stream's first chunk decides when no earlier pass
        totalled the weights: without weights, the stream is taken as unweighted (no extra read: a later chunk
        with weights is an error); with weights, one read of every chunk's weights totals them, except in a
        one-shot stream, which cannot be read twice and takes this chunk's mean. A chunk without weights in a
        weighted stream gets explicit ones. A sequence's first chunk is its chunk 0, read for its weights when
        the pass starts elsewhere (the shuffled order's first chunk decided: the same chunks were refused or
        taken depending on random_state)."""
        sw = data.sample_weight
        if self.weight_mean is None:
            first_sw = sw
            if self.indexable and index != 0:
                first_sw = unpack(self.source.item(0), self.source.where(0))[2]
            if self.source.one_shot:
                rows = f"{where} (a one-shot stream is normalised by its first chunk's mean weight)"
                self.weight_mean = mean_weight(rows_weight(sw, train), rows)
            elif first_sw is None:
                self.weight_mean = 1.0
                self.unweighted = self.source.where(0) if self.indexable else where
            else:
                if not self.indexable:  # the read below may refill the buffers of this chunk (a callable's
                    # generators sharing them): sgd ended 3e-3 off in 10 of 10 such fits, silently
                    data = replace(data, X=data.X.copy(), Y=data.Y.copy(), sample_weight=sw.copy())
                self.weight_mean = mean_weight(self.stream_weight(spec.seed, spec.fraction))
        if self.unweighted is not None and sw is not None:
            raise ValueError(
                f"{where} has sample_weight but {self.unweighted}, the stream's first chunk, has none, so the "
                "stream was taken as unweighted; give every chunk weights (ones for unit weight) or none."
            )
        if sw is None and self.weight_mean != 1.0:
            data = replace(data, sample_weight=np.ones(data.X.shape[0], dtype=data.X.dtype))
        return data

    def run(self, order, spec: PassSpec, state):
        records = []
        if self.reset and self.indexable:
            # The stream's chunk 0 sets the features, whichever chunk the epoch's order reads first (the shuffled
            # order's first did: a stream mixing frames and arrays kept its feature names or lost them depending
            # on random_state), from its metadata; every chunk is then checked against them.
            check_features(self.checker, unpack(self.source.item(0), self.source.where(0))[0], reset=True)
            self.reset = False
        for index, where, X, y, sample_weight in read(self.source, order):
            data = check_chunk(self.checker, X, y, sample_weight, where, reset=self.reset)
            self.reset = False
            train, val = chunk_split(spec.seed, index, data.X.shape[0], spec.fraction)
            if spec.stream:
                data = self._weights(data, train, spec, where, index)
                spec = replace(spec, weight_mean=self.weight_mean)
            carry = chunk_pass(state, data, train, val, spec, where, index)
            if spec.epoch is not None:
                state = carry.state
            records.append(carry.record)
        return state, records

    def plateau_gap(self, p: np.ndarray, k: int, alpha: float, fit_intercept: bool, scale: float | None = None):
        """:func:`stream_gap` over the stream, each pass one read of every chunk; None for a one-shot stream."""
        if self.one_shot:
            return None
        mean = self.weight_mean or 1.0

        def fused(target, v, c, shift, squares=False):
            total = None
            for _, where, X, y, sample_weight in read(self.source):
                part = gap_pass(self.checker, X, y, sample_weight, where, target, v, c, shift, squares, mean)
                total = part if total is None else total + part
            return total

        return stream_gap(fused, p, k, alpha, fit_intercept, scale)

    def robust_gap(self, p: np.ndarray, k: int, alpha: float, fit_intercept: bool, loss: str, epsilon: float,
                   scale: float | None = None):
        """:func:`stream_robust_gap` over the stream, each pass one read of every chunk; None for a one-shot
        stream."""
        if self.one_shot:
            return None
        mean = self.weight_mean or 1.0

        def fused(mode, target, coef, intercept, mu, *args):
            total = None
            for _, where, X, y, sample_weight in read(self.source):
                part = robust_part(self.checker, X, y, sample_weight, where, mean, loss, epsilon, target, coef,
                                   intercept, mu, mode, *args)
                total = part if total is None else total + part
            return total

        return stream_robust_gap(fused, p, k, alpha, fit_intercept, loss, epsilon, scale)


def robust_part(checker, X, y, sample_weight, where: str, mean: float, loss: str, epsilon: float, target: int,
                coef: np.ndarray, intercept: float, mu: float, mode: str, *args):
    """One chunk's (or Dask block's) part of a pass of :func:`stream_robust_gap`, at the residuals
    ``r = X coef + intercept - y`` of target ``target`` (weights as :func:`gap_pass`), as a
    :class:`fastopt._krylov.Pass`. ``mode``: ``"loss"`` ``(0, sum w rho(r), sum w)``; ``"first"``
    ``(sum w psi(r) x, sum w rho(r), sum w psi(r))``; ``"moments"`` the reweighted columns' sums
    ``(sum w omega x, ., sum w omega, sum w omega x^2)``; ``"hessian"`` (``args``: ``v``, ``shift``) the fused
    pass with row weights ``w omega``; ``"eval"`` (``args``: ``delta``, ``delta_b``) the losses' changes
    ``sum w (rho(r + tau q) - rho(r))``, ``q = X delta + delta_b`` (:func:`fastopt._iterative.rho_change`), for
    the step fractions ``tau``, as ``z``; ``"spread"`` the
    weighted histogram of ``|r|`` (:func:`_spread`, ``., sum w |r|``); ``"near"`` (``args``: ``cap``, ``coef2``,
    ``intercept2``) over the rows with ``|r| <= cap``, the losses at the point and at ``(coef2, intercept2)``,
    the number of the other rows of positive weight and the weighted sum of their targets, as ``z`` (``., sum of
    their weights``); ``"origin"`` (``args``: ``cap``, ``c``) the loss of the constant prediction ``c`` over the
    same rows and over all, as ``z``."""
    from fastopt import _krylov

    data = check_chunk(checker, X, y, sample_weight, where)
    Xc = data.X
    w = (np.ones(Xc.shape[0]) if data.sample_weight is None else data.sample_weight.astype(np.float64)) / mean
    r = _iterative._linear(Xc, coef, intercept) - data.Y[:, target].astype(np.float64)
    if mode == "loss":
        return _krylov.Pass(np.zeros(1), float(w @ _iterative.robust_rho(r, loss, epsilon)), float(w.sum()))
    if mode == "spread":
        a = np.abs(r)
        return _krylov.Pass(_spread(a, w), 0.0, float(w @ a))
    if mode in ("near", "origin"):  # args: the limit, then the other point's coefficients and intercept, or a
        cap, *point = args  # constant prediction
        kept = np.where(np.abs(r) <= cap, w, 0.0)
        y_t = data.Y[:, target].astype(np.float64)
        if mode == "origin":
            losses = _iterative.robust_rho(y_t - point[0], loss, epsilon)
            return _krylov.Pass(np.array([float(kept @ losses), float(w @ losses)]), 0.0, 0.0)
        there = _iterative._linear(Xc, *point) - y_t
        far = float(np.count_nonzero((kept == 0) & (w > 0)))
        return _krylov.Pass(np.array([float(kept @ _iterative.robust_rho(r, loss, epsilon)),
                                      float(kept @ _iterative.robust_rho(there, loss, epsilon)), far,
                                      float(kept @ y_t)]), 0.0, float(kept.sum()))
    if mode == "eval":
        delta, delta_b = args
        q = _iterative._linear(Xc, delta, delta_b)
        return _krylov.Pass(np.array([float(w @ _iterative.rho_change(r, tau * q, loss, epsilon))
                                      for tau in _iterative.ROBUST_STEP_FRACTIONS]), 0.0, 0.0)
    psi, omega = _iterative.reweight(r, loss, epsilon, mu)
    if mode == "first":
        wpsi = w * psi
        grad = np.asarray(Xc.T @ wpsi.astype(Xc.dtype), dtype=np.float64)
        return _krylov.Pass(grad, float(w @ _iterative.robust_rho(r, loss, epsilon)), float(wpsi.sum()))
    sqrt_row = np.sqrt(w * omega)
    if mode == "moments":  # a = s: z = sum s^2 x, zz = sum s^2 x^2, se = sum s^2
        return _krylov.chunk_pass(data, sqrt_row, target, np.zeros(Xc.shape[1]), 0.0, -1.0, squares=True,
                                  threads=1)
    v, shift = args
    return _krylov.chunk_pass(data, sqrt_row, target, v, 0.0, shift, threads=1)


def stream_robust_gap(fused, p: np.ndarray, k: int, alpha, fit_intercept: bool, loss: str, epsilon: float,
                      scale: float | None = None):
    """:func:`fastopt._iterative.robust_gap` over chunks: ``fused(mode, target, coef, intercept, mu, *args)`` sums
    :func:`robust_part` over every chunk. Per target: the loss (whose weights' total is ``W``, and whose mean
    ``|r|`` sets the absolute error's ``mu``: a median needs every residual), the gradient, the reweighted
    columns' moments (the exact Jacobi preconditioner), the conjugate-gradient steps of
    :class:`fastopt._iterative.QuadraticModel`, and the objective at the step's fractions: ``4 + steps`` reads
    of the chunks. With ``scale``, further rounds from the best point found, as in memory (``3 + steps`` reads
    each; the objective at the step's fractions gives the next ``mu``). None when a chunk is one the compiled pass
    does not take or the weights total zero."""
    d = (p.shape[0] - (k if fit_intercept else 0)) // k
    coef, intercept = _iterative.split_params(p.astype(np.float64), d, k)
    try:
        totals = [fused("loss", j, coef[j], float(intercept[j]), 0.0) for j in range(k)]
        if not all(total.se > 0 for total in totals):
            return None
        objectives = [t.ss / t.se + 0.5 * float(coef[j] @ (alpha * coef[j])) for j, t in enumerate(totals)]
        f = sum(objectives)
        alarm = None if scale is None else _iterative.alarm_level(f, scale)
        values = int(min(totals[0].se, 2.0**62)) * max(d, 1)  # (the weights have mean 1: their total, the rows)
        steps = _iterative.check_steps(values, d, k)
        rounds = _iterative.robust_rounds(scale, steps + 3, values, k)  # first, moments, the steps, eval
        gain = 0.0
        for j in range(k):
            point = [coef[j], float(intercept[j]), totals[j].ss]  # coefficients, intercept, weighted loss sum

            def take_round(factor: float, here: float, j=j, W=totals[j].se, point=point):
                c, b, loss_sum = point
                mu = 0.0 if loss == "huber" else factor * loss_sum / W
                if loss != "huber" and not mu > 0:
                    return None
                first = fused("first", j, c, b, mu)
                moments = fused("moments", j, c, b, mu)
                centre, diag = _iterative.jacobi(moments.z, moments.zz, moments.se, fit_intercept)

                def hessian(target, v, _, shift):
                    return fused("hessian", j, c, b, mu, v, shift)

                model = _iterative.QuadraticModel(hessian, diag, W, alpha, fit_intercept, centre)
                _, delta, delta_b = model.descend(first.z, first.se, c, steps)
                if not (np.all(np.isfinite(delta)) and np.isfinite(delta_b)):
                    return None
                changes = fused("eval", j, c, b, mu, delta, delta_b).z
                value, tau = _iterative.best_step(here, changes, W, c, delta, alpha)
                if tau is not None:  # moved; the next mu from the loss there
                    at = _iterative.ROBUST_STEP_FRACTIONS.index(tau)
                    point[:] = c + tau * delta, b + tau * delta_b, loss_sum + float(changes[at])
                return value, tau

            gain += objectives[j] - _iterative.reweighting_rounds(objectives[j], gain, rounds, alarm, loss, take_round)
        if k == 1 and loss == "huber" and alarm is not None and not (np.isfinite(gain) and gain > alarm):
            # (the point in the fit's precision: p's dtype)
            moved = [point[0].astype(p.dtype).astype(np.float64), float(np.asarray(point[1], dtype=p.dtype))]
            return _far_rows_judged(fused, coef[0], float(intercept[0]), moved, alpha, totals[0].se, f, gain, scale,
                                    fit_intercept)
    except ValueError:
        return None
    return f, gain


def _far_rows_judged(fused, coef: np.ndarray, intercept: float, point: list, alpha, W: float, f: float, gain: float,
                     scale: float, fit_intercept: bool = True):
    """:func:`fastopt._iterative._far_rows_capped` over chunks, for :func:`stream_robust_gap` of one Huber target
    at ``(coef, intercept)`` (objective ``f``, decrease ``gain``, loss scale ``scale``; ``point`` the reweighted
    rounds' last coefficients and intercept; ``W`` the weights' total): ``(f, gain, scale, far)`` judged without
    the rows far out, or ``(f, gain)`` where none is. Up to three more reads of the chunks: the residuals'
    weighted histogram (``SPREAD_STEPS`` bins an octave, each with its weights' total and its weighted ``|r|``
    sum), from which the clipped mean (exact but for the one bin the clip falls in) and the 75th percentile (its
    bin's upper edge) give the limit; the loss of the other rows at the fit and at the point; and their loss at
    their weighted mean (0 without an intercept), the constant model that in memory is their median (counted
    where it lowers the whole objective). The scale's floor (the other rows' loss about their median) is not
    taken."""
    cap = _iterative.FAR_ROW_CAP * min(spread_scales(fused("spread", 0, coef, intercept, 0.0)))
    if not (np.isfinite(cap) and cap > 0):
        return f, gain
    moved, b_moved = point[0], point[1]
    near = fused("near", 0, coef, intercept, 0.0, cap, moved, b_moved)
    far = round(float(near.z[2]))
    if far == 0:
        return f, gain
    here = float(near.z[0]) / W + 0.5 * float(coef @ (alpha * coef))
    reached = float(near.z[1]) / W + 0.5 * float(moved @ (alpha * moved))
    if not (np.isfinite(here) and 0 < here < f):
        return f, gain
    constant = float(near.z[3]) / float(near.se) if fit_intercept and near.se > 0 else 0.0
    origin, whole = (float(v) / W for v in fused("origin", 0, coef, intercept, 0.0, cap, constant).z)
    # (where it lowers the whole objective too, as in memory)
    found = max(here - reached if np.isfinite(reached) else 0.0, here - origin if whole < f else 0.0, 0.0)
    return here, found, scale * here / f, far


def spread_scales(spread) -> tuple[float, float]:
    """The residuals' clipped mean (the largest fixed point of ``s = spread_mean(C s)``, ``C = RESIDUAL_CLIP``,
    in :func:`fastopt._iterative_lr.residual_scale`'s rounds) and their ``FAR_ROW_QUANTILE`` quantile (its bin's
    upper edge: from it to ``1 + 1 / SPREAD_STEPS`` times it) from robust_part's ``"spread"`` summed over the
    chunks."""
    weights, sums = np.split(spread.z, 2)
    W = float(np.sum(weights))
    lower = _spread_edges()[0]

    def step(s: float) -> float:
        t = RESIDUAL_CLIP * s
        above = lower >= t  # (bins wholly above the clip; the rest's sums lie above their clipped part, so the
        # line through them lies above the map, as residual_scale's)
        return min(spread_mean(weights, sums, t) / W,
                   clipped_mean_step(float(np.sum(sums[~above])), float(np.sum(weights[above])), W, t))

    s = clipped_mean_rounds(float(spread.se) / W, step)  # (se: the weighted |r| sum)
    at = min(int(np.searchsorted(np.cumsum(weights), _iterative.FAR_ROW_QUANTILE * W)), weights.shape[0] - 1)
    return s, float(_spread_edges()[1][at])


def spread_mean(weights: np.ndarray, sums: np.ndarray, t: float) -> float:
    """``sum_i w_i min(|r_i|, t)`` from the histogram (:func:`_spread`): each bin's sum below ``t``, its weight
    times ``t`` above, and ``min(sum, weight t)`` for the bin holding ``t``, at least the exact value and at most
    the exact value at ``(1 + 1 / SPREAD_STEPS) t`` (every row of that bin lies below its upper edge), so at most
    ``1 + 1 / SPREAD_STEPS`` times the exact value."""
    lower, upper = _spread_edges()
    return float(np.sum(np.where(upper <= t, sums, np.where(lower >= t, weights * t, np.minimum(sums, weights * t)))))


# robust_part's "spread": bins an octave of the residuals' histogram (_far_rows_judged)
SPREAD_STEPS = 8
# the binary exponents of |r| the bins cover (np.frexp's, of the smallest subnormal to the largest double)
_SPREAD_EXPONENTS = (-1073, 1024)


def _spread_bins() -> int:
    return 1 + (_SPREAD_EXPONENTS[1] - _SPREAD_EXPONENTS[0] + 1) * SPREAD_STEPS


@functools.cache
def _spread_edges() -> tuple[np.ndarray, np.ndarray]:
    """The lower and upper edges of the histogram's bins: bin 0 holds the zeros, bin ``1 + SPREAD_STEPS e' + j``
    the mantissas ``[0.5 + j / (2 SPREAD_STEPS), 0.5 + (j + 1) / (2 SPREAD_STEPS))`` of exponent
    ``e' + _SPREAD_EXPONENTS[0]`` (the top bin's upper edge is inf). Read-only."""
    i = np.arange(_spread_bins() - 1)
    e = i // SPREAD_STEPS + _SPREAD_EXPONENTS[0]
    j = i % SPREAD_STEPS
    # (the edges reach the subnormals and float64's top by design: a caller's np.seterr(under="raise") made the
    # first robust stream fit of a process raise FloatingPointError here)
    with np.errstate(over="ignore", under="ignore"):
        lower = np.r_[0.0, np.ldexp(0.5 + j / (2.0 * SPREAD_STEPS), e)]
        upper = np.r_[0.0, np.ldexp(0.5 + (j + 1) / (2.0 * SPREAD_STEPS), e)]
    lower.flags.writeable = upper.flags.writeable = False
    return lower, upper


def _spread(a: np.ndarray, w: np.ndarray) -> np.ndarray:
    """The weighted histogram of ``a = |r|`` (finite, nonnegative) in :func:`_spread_edges`' bins: the weights'
    totals, then the weighted sums of ``a``."""
    m, e = np.frexp(a)
    index = np.where(a > 0, 1 + (e - _SPREAD_EXPONENTS[0]) * SPREAD_STEPS
                     + np.floor((m - 0.5) * (2 * SPREAD_STEPS)).astype(np.int64), 0)
    bins = _spread_bins()
    index = np.clip(index, 0, bins - 1)
    return np.r_[np.bincount(index, weights=w, minlength=bins), np.bincount(index, weights=w * a, minlength=bins)]


def gap_pass(checker, X, y, sample_weight, where: str, target: int, v, c: float, shift: float, squares: bool,
             mean: float):
    """One chunk's (or Dask block's) part of a fused pass of the plateau check (:func:`stream_gap`): the chunk
    validated as the sweeps do, its weights divided by the stream-wide ``mean`` (a chunk without weights in a
    weighted stream weighs one before the division); :func:`fastopt._krylov.chunk_pass` on one thread."""
    from fastopt import _krylov

    data = check_chunk(checker, X, y, sample_weight, where)
    w = data.sample_weight
    if w is None and mean != 1.0:
        w = np.ones(data.X.shape[0])
    s = None if w is None else np.sqrt(w.astype(np.float64) / mean)
    return _krylov.chunk_pass(data, s, target, v, c, shift, squares=squares, threads=1)


def stream_gap(fused, p: np.ndarray, k: int, alpha: float, fit_intercept: bool, scale: float | None = None):
    """:func:`fastopt._iterative.plateau_gap` of the squared error over chunks: ``fused(target, v, c, shift,
    squares)`` sums :func:`gap_pass` over every chunk (the sweeps' training rows and weights); a first pass
    (``a = s``) gives the weights' total and the columns' weighted means and squares exactly. None when a chunk is
    one the compiled pass does not take (CSR with int64 indices) or the weights total zero; ``scale`` as there.
    The robust losses: :func:`stream_robust_gap`."""
    d = (p.shape[0] - (k if fit_intercept else 0)) // k
    try:
        first = fused(0, np.zeros(d), 0.0, -1.0, True)  # a = s: sum w (se), sum w x (z) and sum w x^2 (zz)
        if not first.se > 0:
            return None
        centre, diag = _iterative.jacobi(first.z, first.zz, first.se, fit_intercept)
        # the weights have mean 1 over the training rows, so their total is the row count: small streams take
        # the in-memory check's extra steps (n d bounds the stored values of CSR chunks)
        steps = _iterative.check_steps(int(min(first.se, 2.0**62)) * max(d, 1), d, k)
        parts = [] if k > 1 and scale is not None else None
        f, gain = _iterative.plateau_gap(fused, diag, first.se, p, k, alpha, fit_intercept, centre, steps, scale,
                                         parts)
        if not parts:
            return f, gain
        # each target at its own scale, as in memory (fastopt._iterative._worst_target): its best constant
        # model's loss from one more pass a target (a = -s y: sum w y^2 and -sum w y)
        W, null = first.se, []
        for j in range(k):
            q = fused(j, np.zeros(d), -1.0, 0.0, False)
            null.append(0.5 * (q.ss / W - ((q.se / W) ** 2 if fit_intercept else 0.0)))
        return _iterative.worst_target(parts, null, f, gain, scale)
    except ValueError:
        return None


def partial_sweep(passes: Passes, name: str, params: dict, prior, checked) -> Outcome:
    """``partial_fit`` over chunks: one ``partial_fit`` pass per chunk, in order, from ``prior``."""
    spec = PassSpec(name, detach_random_state(params, prior is None), stream=False)
    state, records = passes.run(None, spec, prior)
    if not records:
        raise ValueError("the stream of chunks is empty; at least one chunk of rows is required.")
    solver = _solvers.SOLVERS[name]
    # (with params: the average, as in memory, where averaging is on; Dask's partial_fit reported the iterate)
    return Outcome(name, solver.result(state, n_iter=state.epochs, params=params), records[0].y_was_1d, checked)
