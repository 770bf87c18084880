"""Iterative least squares: minibatch epochs over the fused compiled kernels.

Each solver of :data:`SOLVERS` owns the training loop of one rule of :mod:`fastopt.optim`: allocation, the
random row order and validation split (drawn here, in Python, from ``random_state``), learning-rate schedules,
divergence checks, stopping and the fitted attributes. One epoch is one call of ``_kernels.epoch``.

Definitions the docstrings and tests rely on
--------------------------------------------
Parameters
    One vector: the weights ``W`` (k, d) row-major, then the k intercepts when fitted. Weight decay applies to
    the first ``k * d`` entries only, so the intercept is never penalised.
Objective
    ``sum_i sw_i sum_j loss(x_i . w_j + b_j - y_ij) / sum_i sw_i + alpha / 2 ||W||^2`` over the training rows:
    outputs are summed, so fitting k targets at once gives each the gradient it would have alone.
Minibatch gradient
    ``sum_{i in B} sw_i loss'(r_i) x_i / |B|`` with weights normalised to mean 1 over the training rows: an
    unbiased estimate of the objective's gradient, invariant to rescaling the weights, and with unit weights
    exactly the gradient of torch's ``0.5 * ((pred - y) ** 2).sum(1).mean()``.
Epoch loss (``loss_curve_``)
    The weighted mean training loss of the epoch, each row's loss taken with the parameters of its minibatch
    before that minibatch's step (free to compute in the fused pass, as scikit-learn's MLP does), plus
    ``alpha / 2 ||W||^2`` at the end of the epoch for the rules with coupled L2 (not AdamW).
Divergence
    A non-finite loss, gradient or parameter, or a minibatch mean loss above ``DIVERGENCE_FACTOR`` times the
    loss of the all-zero model (or of the initial model, if larger), raises :class:`DivergenceError`.
"""
from __future__ import annotations

import copy
import dataclasses
import functools
import hashlib
import itertools
import numbers
import os
import threading
import time
from collections.abc import Callable
from typing import NamedTuple

import numpy as np
import scipy.linalg
import scipy.sparse as sp
from sklearn.metrics import r2_score
from sklearn.utils import check_random_state

from fastopt import _kernels, optim
from fastopt._iterative_lr import (
    CHUNK_ROWS,
    Affine,
    _per_sample_loss,
    _weighted_quantile,
    auto_learning_rate,
    choose_affine,
    choose_scaling,
    csr_shiftable,
    curvature_spread,
    decay_capped,
    floors_rare_columns,
    mean_loss,
    null_loss,
    own_decay_cheap,
    rate_penalty,
    residual_blocks,
    residual_scale,
    ridge_per_column,
    row_curvatures,
    rows_times,
    sample_learning_rate,
    target_centre,
    zero_image,
)
from fastopt._result import FitResult, Solver
from fastopt._validation import _check_sparse_structure, refuse_nonfinite_data
from fastopt.exceptions import ConvergenceWarning, DivergenceError, _warn
from fastopt.optim import DIVERGENCE_FACTOR

LOSSES = {"squared_error": optim.Loss.SQUARED_ERROR, "absolute_error": optim.Loss.ABSOLUTE_ERROR,
          "huber": optim.Loss.HUBER}

# Standard deviation of the "random" initialisation of the weights (the intercepts start as with init="zeros").
RANDOM_INIT_SCALE = 0.01


class EpochCtl(NamedTuple):
    """Per-fit training controls that the fused epoch reads (the Python mirror of part of ``fo_epoch_ctl``).

    Attributes
    ----------
    batch_size : int
    loss : fastopt.optim.Loss
    epsilon : float
        Huber threshold.
    clip_norm : float or None
        Clip each minibatch gradient to this global L2 norm; None disables clipping.
    loss_limit : float
        A minibatch mean loss above this is divergence.
    n_threads : int or None
        Threads per epoch as the user asked (None: :func:`epoch_threads` or :func:`csr_epoch_threads` decides);
        not read by the kernel.
    lazy : bool
        SparseAdam steps for Adam and AdamW (``sparse_mode="lazy"``); read by the CSR kernel only.
    positive : bool
        Clamp the weights at 0 after every step (projected steps).
    average : int
        Polyak-Ruppert averaging of the iterates of steps ``t >= average``; 0 disables it.
    decay : ndarray of shape (k * d,) or None
        Each weight's own L2 coefficient (the ridge under a per-column scaling, :func:`_penalised`), in the
        weights' dtype; read by the dense and CSR kernels (the hyperparameters' weight decay is then 0).
    pad_rows : int
        A minibatch of fewer rows divides its summed gradient by ``pad_rows`` instead of its row count, as if
        padded with rows of zero gradient; 0 (``fit``, ``partial_fit``) takes every minibatch's mean. A streamed
        or Dask fit pads each chunk's last minibatch to ``batch_size`` (see :class:`Sweep`).
    """

    batch_size: int
    loss: int
    epsilon: float
    clip_norm: float | None
    loss_limit: float
    n_threads: int | None = None
    lazy: bool = False
    positive: bool = False
    average: int = 0
    decay: np.ndarray | None = None
    pad_rows: int = 0


# A second thread pays off when each half-minibatch holds at least this much of X (the exchange per step costs
# about a microsecond; measured with bench/scaling_epoch.py --threads) and the epoch has enough steps to repay
# handing it to the helper thread (a few microseconds; at 16 steps of d = 100 the two are even).
TEAM_MIN_HALF_BYTES = 8192
TEAM_MIN_STEPS = 16


# An epoch runs in slices of whole minibatches of bounded work, so that Ctrl-C (KeyboardInterrupt, raised between
# two slices) is handled within tens of milliseconds whatever the epoch's length: at most SLICE_WORK elements of X
# and SLICE_STEPS steps per slice (the per-step overhead dominates at batch_size=1), some 5-80 ms of work on one
# core. The slices carry the loss sum, so the result is bit for bit that of one call. Each slice costs a call with
# its checks (and, with two threads, a hand-off to the helper): at 2**23 elements the estimator's epoch on the
# benchmark shape (200,000 x 100) ran in 2-3 slices, 0.5-2% slower than one call (medians of alternating runs,
# float32 the most); at 2**24 in 1-2.
SLICE_WORK = 2**24
SLICE_STEPS = 2**15


# While the helper thread still draws a two-thread epoch's order (a job of _kernels.shuffle_start), the calling
# thread trains alone on the leading rows already drawn, slices of about PENDING_WORK elements of X, instead of
# waiting (on the dense benchmark it waited about 0.2 ms of a 4 ms float32 fit); one thread and two give the same
# bits, and so does any split into slices of whole minibatches.
PENDING_WORK = 2**18


def run_epoch(rule, hyper, train, X, Y, sw, order, params, state, work, t, lr, threads, pending=None, acc=None,
              **extra):
    """``_kernels.epoch`` over ``order``, in slices (see ``SLICE_WORK``, per thread); same arguments and result
    (``extra``, e.g. the running average ``avg``, is passed to every slice). ``pending``: the job drawing
    ``order`` (see ``PENDING_WORK``); its ``result()`` is awaited before the epoch goes on to two threads.
    ``acc``: the kernel's loss accumulator, shared with an earlier call of the same pass (None: a new one)."""
    m, batch = order.shape[0], train.batch_size
    shared = acc is not None
    acc, start, status = (acc if shared else np.zeros(2)), 0, _kernels.Status.OK
    if pending is not None:
        alone = max(1, PENDING_WORK // (max(1, X.shape[1] * Y.shape[1]) * batch)) * batch
        while start < m and status == _kernels.Status.OK:
            ready = pending.ready()
            if ready >= m:  # drawn: on to two threads
                break
            stop = min(ready, start + alone) // batch * batch
            if stop <= start:
                break
            status, t, loss, bad = _kernels.epoch(rule, hyper, train, X, Y, sw, order[start:stop], params, state,
                                                  work, t, lr, 1, loss_acc=acc, **extra)
            start = stop
        pending.result()
        if start > 0 and (start >= m or status != _kernels.Status.OK):
            return status, t, loss, bad
    # Two threads each read half of a slice's rows: the same wait for Ctrl-C with slices twice as large.
    budget = SLICE_WORK * max(1, threads)
    steps = max(1, min(budget // (max(1, X.shape[1] * Y.shape[1]) * batch), SLICE_STEPS))
    per = steps * batch
    if start == 0 and m <= per and not shared:
        return _kernels.epoch(rule, hyper, train, X, Y, sw, order, params, state, work, t, lr, threads, **extra)
    for lo in range(start, m, per):
        status, t, loss, bad = _kernels.epoch(rule, hyper, train, X, Y, sw, order[lo : lo + per], params,
                                              state, work, t, lr, threads, loss_acc=acc, **extra)
        if status != _kernels.Status.OK:
            break
    return status, t, loss, bad


def csr_period(X, k: int, batch_size: int, every_coordinate: bool = False) -> int:
    """The steps of one slice of a CSR epoch (:func:`run_epoch_csr`): about ``SLICE_WORK`` stored values, at least
    ``d``, at most ``SLICE_STEPS`` steps; a step on every coordinate (:func:`csr_steps_every_coordinate`) counts
    its ``d k`` values too. Sized by the stored values alone, exact Adam's slice on 2^20 hashed columns held 8,400
    steps, more than an epoch, and Ctrl-C waited 4-14 s for it."""
    d = X.shape[1]
    per_step = max(1, batch_size * k * (-(-X.nnz // max(1, X.shape[0])) + 1) + (d * k if every_coordinate else 0))
    return max(1, min(max(SLICE_WORK, d * k) // per_step, SLICE_STEPS))


def csr_steps_every_coordinate(rule: int, hyper, train, lr: float, decay) -> bool:
    """Whether the CSR kernel steps every coordinate at every step (O(d) a step): the mirror of ``fo_csr_catch``
    returning ``FO_CATCH_DENSE`` (csrc/epoch_csr.c), which has no closed form for the untouched coordinates.
    Each weight's own decay (``decay``) stepped every step when ``d`` is small (the kernel's choice) counts as
    deferred here: a small ``d`` costs little."""
    positive = bool(train.positive)
    if decay is not None:
        if rule == _kernels.Rule.SGD:
            return False
        return positive or rule not in (_kernels.Rule.MOMENTUM, _kernels.Rule.NESTEROV)
    wd = hyper.weight_decay != 0
    if rule == _kernels.Rule.SGD:
        return positive and wd and not (1.0 - lr * hyper.weight_decay > 0)
    if rule in (_kernels.Rule.MOMENTUM, _kernels.Rule.NESTEROV):
        return positive and wd
    if rule in (_kernels.Rule.ADAGRAD, _kernels.Rule.RMSPROP):
        return wd
    return not train.lazy  # Adam and AdamW


def run_epoch_csr(rule, hyper, train, X, Y, sw, order, params, state, t, lr, lazy, avg=None, threads=1, decay=None,
                  acc=None):
    """``_kernels.epoch_csr`` over ``order``, in slices of whole minibatches (as :func:`run_epoch`) that end at
    the steps that are multiples of one ``period``, which every slice passes to the kernel: it splits its
    deferred updates there, so the slices together give bit for bit one call with that period. A slice does
    about ``SLICE_WORK`` stored values (at least ``d``, to repay the O(d) stamps and catch-up that each call
    costs) and at most ``SLICE_STEPS`` steps. ``threads`` (1 or 2, :func:`csr_epoch_threads`) is passed on as the
    kernel's ``n_threads``: the same bits either way; ``decay``, each weight's L2 coefficient (or None), too;
    ``acc``, the loss accumulator, as :func:`run_epoch`'s."""
    m, batch = order.shape[0], train.batch_size
    period = csr_period(X, Y.shape[1], batch, csr_steps_every_coordinate(rule, hyper, train, lr, decay))
    acc = np.zeros(2) if acc is None else acc
    args = (rule, hyper, train, X, Y, sw)
    first = (period - t % period) * batch  # rows up to the next multiple of period
    if m <= first:
        return _kernels.epoch_csr(*args, order, params, state, t, lr, lazy, None, avg, acc, period, threads, decay)
    bounds = [0, *range(first, m, period * batch), m]
    for a, b in itertools.pairwise(bounds):
        status, t, loss, bad = _kernels.epoch_csr(*args, order[a:b], params, state, t, lr, lazy, None, avg, acc,
                                                  period, threads, decay)
        if status != _kernels.Status.OK:
            break
    return status, t, loss, bad


def _usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on every platform
        return os.cpu_count() or 1


def epoch_threads(n_threads: int | None, n_rows: int, batch_size: int, d: int, k: int, itemsize: int) -> int:
    """Threads for one epoch (1 or 2): 1 unless ``n_threads >= 2``, the process may use two CPUs, and the
    minibatches and the epoch are large enough for the second thread to pay off (the result is the same
    either way)."""
    if n_threads is None or n_threads < 2 or _usable_cpus() < 2 or n_rows == 0:
        return 1
    half_bytes = -(-min(batch_size, n_rows) // 2) * d * k * itemsize
    steps = -(-n_rows // batch_size)
    return 2 if half_bytes >= TEAM_MIN_HALF_BYTES and steps >= TEAM_MIN_STEPS else 1


def csr_epoch_threads(n_threads: int | None, n_rows: int, batch_size: int) -> int:
    """Threads for one CSR epoch (1 or 2): 2 when ``n_threads >= 2``, the process may use two CPUs and the epoch
    has at least ``TEAM_MIN_STEPS`` minibatches (the second thread stages the rows and finds each minibatch's
    columns a block ahead; handing it the epoch costs some microseconds). The result is the same either way."""
    if n_threads is None or n_threads < 2 or _usable_cpus() < 2:
        return 1
    return 2 if -(-n_rows // max(1, batch_size)) >= TEAM_MIN_STEPS else 1


@dataclasses.dataclass
class IterState:
    """What an iterative fit keeps for ``partial_fit`` and ``warm_start``.

    Attributes
    ----------
    weights : ndarray of shape (n_params,)
        The flat parameter vector: the coefficients (k, d) row-major, then the intercepts if fitted (named
        apart from ``params``, which is always the estimator's ``get_params()`` dict here).
    opt_state : ndarray of shape (n_slots, n_params)
    t : int
        Optimizer steps taken.
    epochs : int
        Epochs (or ``partial_fit`` passes) taken; indexes the schedule.
    rng : numpy.random.Generator
        Draws the row orders; kept so a sequence of ``partial_fit`` calls is deterministic.
    lr0 : float
        The base learning rate (resolved once when ``learning_rate="auto"``).
    loss_limit : float
    loss_curve : list of float
        Epoch losses of the current fit (of every pass, for ``partial_fit``).
    dims : tuple of (n_features, n_targets)
    avg : ndarray of shape (n_params,) or None
        The Polyak-Ruppert average of the parameters (``average``); ``params`` keeps the last iterate.
    lr : float or None
        The current rate of ``schedule="plateau"`` (None: ``lr0``); ``partial_fit`` continues at it.
    null_loss : float
        The training loss of the best constant model (intercept only, or zero without intercept), which
        scales the plateau rule's relative thresholds when the optimal loss is near 0 (0.0 under the other
        schedules, which do not read it).
    learning_rates : list of float
        The rate of each epoch of the current fit (of every pass, for ``partial_fit``).
    affine : Affine or None
        The preconditioning map the parameters live under (``precondition="auto"``); later warm starts and
        ``partial_fit`` passes apply the same map to their rows.
    interleaved : bool
        Whether ``opt_state`` holds Adam's two moments side by side, as SparseAdam mode's kernel keeps them
        (``m_i``, ``v_i`` at flat positions ``2 i``, ``2 i + 1`` of its first two rows; see
        :func:`moments_layout`), rather than one moment a row.
    watch : PassWatch or None
        The plateau rule across ``partial_fit`` calls (``schedule="plateau"``); None after ``fit`` and in a
        streamed fit's passes, whose epochs the in-memory rule judges.
    basis : dict or None
        What a first ``partial_fit`` call's ``learning_rate="auto"`` was taken from, for SGD and the momentum
        rules (``L``, ``ridge``, the ``first`` inverse SGD rate and the largest so far, ``inverse``: see
        :func:`rate_guard`); None otherwise.
    ridge_term : tuple
        ``(vector, key, term)``: the ridge term :func:`penalty_term` last took in a pass (of ``weights``, under
        the penalty ``key``, see :func:`ridge_key`), for the next call's watch; ``()`` before any.
    rate_ridge : float
        The largest ridge coefficient (in the run's units) that ``lr0`` was resolved or last lowered under, for
        :func:`_ridge_capped`.
    """

    weights: np.ndarray
    opt_state: np.ndarray
    t: int
    epochs: int
    rng: np.random.Generator
    lr0: float
    loss_limit: float
    loss_curve: list
    dims: tuple
    lr: float | None = None
    null_loss: float = 0.0
    learning_rates: list = dataclasses.field(default_factory=list)
    affine: Affine | None = None
    avg: np.ndarray | None = None
    avg_from: int = 0  # the steps taken before ``avg`` began (averaging switched on by a warm start or call)
    avg_positive: bool = False  # whether every iterate ``avg`` holds was projected (``positive``)
    interleaved: bool = False
    watch: PassWatch | None = None
    basis: dict | None = None
    ridge_term: tuple = ()
    rate_ridge: float = 0.0  # the penalty learning_rate="auto" was resolved under (rate_penalty, _ridge_capped)
    # the estimator's parameters (exact_key's) whose minimiser Newton's method put in ``weights``
    # (with_coefficients), else None: a warm start with the same ones goes on from it by Newton first
    exact_params: dict | None = None
    # a warm fit's own divergence limit where its targets raise loss_limit (for that fit only), else None
    fit_limit: float | None = None
    # the all-zero model's mean loss on the targets of the fit or partial_fit call that left this state (0 if
    # not finite), which a later call's divergence limit may rise with (see IterativeSolver.partial_fit)
    targets_loss: float = 0.0
    # the loss where the last partial_fit call let in above its limit started, while the calls after it come down
    # from there (0: none; see IterativeSolver.partial_fit)
    descent_from: float = 0.0
    # a warm-started streamed or Dask fit's prior: its first chunk's pass moves the intercepts as a warm start in
    # memory does (_recentre_intercepts, on that chunk's rows), then clears it
    recentre: bool = False

    @property
    def rate_factor(self) -> float:
        """The factor :func:`rate_guard` has lowered the rate of later ``partial_fit`` calls by (1: none)."""
        return 1.0 if self.basis is None or "first" not in self.basis else self.basis["first"] / self.basis["inverse"]

    def continued(self, interleaved: bool, **changes) -> IterState:
        """A copy to continue from (weights, optimizer state and average copied, ``changes`` applied), its
        optimizer state in the layout ``interleaved`` asks for (a warm start may switch ``sparse_mode``); its
        weights are SGD's from then on (no ``exact_params``)."""
        return dataclasses.replace(
            self, weights=self.weights.copy(),
            opt_state=moments_layout(self.opt_state, self.interleaved, interleaved), interleaved=interleaved,
            avg=None if self.avg is None else self.avg.copy(), **{"exact_params": None, "fit_limit": None, **changes})

    def rewinder(self):
        """A function that undoes what a fitting call may change in this state in place, and returns it: only
        ``rng`` is advanced in place (a call continues from a new state holding copies of the arrays), so its
        bit-generator state is all that is saved (``LinearRegressor``'s all-or-nothing calls)."""
        saved = self.rng.bit_generator.state

        def rewind() -> IterState:
            self.rng.bit_generator.state = saved
            return self

        return rewind


def moments_layout(opt_state: np.ndarray, interleaved: bool, to: bool) -> np.ndarray:
    """A copy of Adam's ``opt_state`` (rows m, v, then AMSGrad's maximum) in the layout ``to``: with ``to`` true,
    each parameter's m and v side by side (``m_i``, ``v_i`` at flat positions ``2 i``, ``2 i + 1`` of the first two
    rows' memory), the layout SparseAdam mode steps in place, so that one random access finds both (its epoch on
    the sparse benchmark 11% faster on one thread, 13-16% on two); with ``to`` false, one moment a row."""
    out = opt_state.copy()
    if interleaved == to or opt_state.shape[0] < 2:
        return out
    pairs = out[:2].reshape(-1)  # a view: out is C-contiguous
    if to:
        pairs[0::2], pairs[1::2] = opt_state[0], opt_state[1]
    else:
        source = opt_state[:2].reshape(-1)
        out[0], out[1] = source[0::2], source[1::2]
    return out


def average_start(params: dict) -> int:
    """The first step averaged by ``average`` (True: 1, an int n: n, as ``SGDRegressor``), 0 for none."""
    average = params.get("average", False)
    return 0 if average is False or average is None else (1 if average is True else int(average))


class Sweep(NamedTuple):
    """One chunk's pass within an epoch of a streamed or Dask fit (:mod:`fastopt._streaming`).

    Attributes
    ----------
    epoch : int
        The 0-based epoch, i.e. sweep over all chunks: the pass takes the schedule's rate for this epoch of
        ``max_epochs``, exactly as ``fit`` does, and the state's epoch count becomes ``epoch + 1``.
    rows : ndarray of int64 or None
        The chunk's training rows, sorted (the others are held out for validation); None for all rows.
    lr0 : float or None
        The base rate ``learning_rate="auto"`` resolved for the whole stream (used when the fit starts on
        this chunk); None resolves it on this chunk's rows, as ``partial_fit`` does.
    weight_mean : float or None
        The mean sample weight over the training rows of the whole stream. Every chunk's weights are divided
        by it, so the chunks keep their relative weight and the sweep minimises the objective of ``fit`` on
        the concatenated rows (a chunk of zero weight contributes no gradient). None divides by this chunk's
        own mean, as ``partial_fit`` does.
    affine : Affine or None
        The stream's preconditioning (:func:`fastopt._iterative_lr.stream_scaling`), under which the fit runs
        when it starts on this chunk (later passes continue under the state's).

    The pass pads the chunk's last minibatch to ``batch_size`` (:attr:`EpochCtl.pad_rows`): a minibatch never
    spans chunks, and the padding keeps every row's weight in its step at ``1 / batch_size`` in chunks of any size.
    """

    epoch: int
    rows: np.ndarray | None = None
    lr0: float | None = None
    weight_mean: float | None = None
    affine: Affine | None = None


class Stopping:
    """The stopping rule of ``fit``, shared with streamed fits.

    Each epoch reports the monitored loss (the training loss, or minus the validation score). Training stops
    once the loss has failed to improve on the best so far by ``tol`` for ``n_iter_no_change`` epochs in a
    row; ``tol=None`` never stops. When monitoring a validation score (``keep_best``) the parameters of the
    best epoch are kept, to be restored at the end, as scikit-learn's MLP does.

    The unit of both rules is a round of ``epochs_per_round`` whole epochs, judged by their mean monitored loss:
    one epoch, or, where an epoch takes fewer than ``ROUND_STEPS`` minibatch steps, enough epochs for
    that many (:func:`epochs_per_round`); "epoch" in the rules means round.
    """

    def __init__(self, tol: float | None, patience: int, keep_best: bool, epochs_per_round: int = 1):
        self.tol, self.patience, self.keep_best = tol, patience, keep_best
        self.best, self.no_improvement, self.best_params, self.stopped = np.inf, 0, None, False
        self.per_round, self.round_sum, self.round_epochs = max(1, int(epochs_per_round)), 0.0, 0
        self.best_epoch = np.inf  # the best epoch's monitored loss (keep_best)

    def _keep(self, current: float, params: np.ndarray | None) -> None:
        """Keep one epoch's parameters if it is the best epoch (``keep_best``)."""
        if self.keep_best and current < self.best_epoch:
            self.best_epoch, self.best_params = current, params.copy()

    def _round(self, current: float, params: np.ndarray | None) -> float | None:
        """Take one epoch's loss: keep its parameters if it is the best epoch (``keep_best``), and return the
        mean of its round once that is complete (None within a round)."""
        self._keep(current, params)
        if self.per_round == 1:
            return current
        self.round_sum, self.round_epochs = self.round_sum + current, self.round_epochs + 1
        if self.round_epochs < self.per_round:
            return None
        mean, self.round_sum, self.round_epochs = self.round_sum / self.per_round, 0.0, 0
        return mean

    def update(self, current: float, params: np.ndarray | None) -> bool:
        """Record one epoch's monitored loss (and its parameters); True when training should stop."""
        if self.tol is None:
            # never stops, but keeps the best epoch's parameters all the same (the last epoch's were returned,
            # while best_validation_score_ reported the best)
            self._keep(current, params)
            return False
        current = self._round(current, params)
        if current is None:
            return False
        self.no_improvement = self.no_improvement + 1 if current > self.best - self.tol else 0
        self.best = min(self.best, current)
        self.stopped = self.no_improvement >= self.patience
        return self.stopped

    def warn_unless_stopped(self, method: str, max_epochs: str, note: Callable[[], str] = str) -> None:
        if self.tol is not None and not self.stopped:
            _warn(
                f"solver={method!r} reached max_epochs={max_epochs} without the monitored loss settling within "
                f"tol={self.tol}; increase max_epochs or adjust the learning rate.{note()}",
                ConvergenceWarning,
            )


# schedule="plateau" (RatePlateau). Chosen on the convergence suite (tests/test_convergence.py and
# bench/test_convergence.py): at n = 200,000, d = 100 and unit noise each tenfold cut lowers the noise ball's
# excess about tenfold (SGD: 0.57, 0.031, 0.0033, 5e-4, 7e-5 of the optimal loss), so four cuts in about 15
# epochs pass 1e-3; a patience of 2 epochs doubled the epochs for the same accuracy, a factor of 0.2 gained
# nothing.
PLATEAU_FACTOR = 0.1  # the rate is multiplied by this at each plateau
PLATEAU_PATIENCE = 1  # epochs in a row without a fall of PLATEAU_RTOL from the previous one make a plateau
PLATEAU_RTOL = 1e-4  # a fall is a drop from the previous epoch by this fraction of the loss scale
PLATEAU_STOP_RTOL = 5e-4  # stop when the last cut changed the best loss by less than this fraction
PLATEAU_FLOOR = 1e-6  # the loss scale is at least this fraction of the null model's loss (zero-noise problems)
PLATEAU_SLOW_RATIO = 0.95  # a slow series of falls is projected with a ratio of at most this per epoch
PLATEAU_MIN_FACTOR = 1e-8  # and stop anyway once the rate has fallen below this fraction of learning_rate_
# The stopping rules (this one and Stopping's) judge rounds of whole epochs of at least this many steps (one
# epoch from 2,048 rows at batch_size=64; larger data is judged epoch by epoch, as before). On small data an epoch
# is one to a few steps, whose loss follows a momentum rule's oscillation more than its progress: judged epoch by
# epoch, the first upturn cut the rate, and the next cuts came within a few steps. Measured on 20 small
# problems (20-300 rows, 3-20 shifted columns of spread scales, an intercept), the default fit of every
# first-order rule, against the exact fit: epoch by epoch (and max_epochs=100), excess loss medians 0.2%-57% and
# up to 47 times the optimal loss; with rounds of 16 steps, medians 0.009%-0.02%, at most 0.3%, in at most 288
# epochs; 32 steps, medians 0.004%-0.01%, at most 0.16%, in at most 384 epochs (and at 500-1,500 rows a fourth of
# the excess, for twice the epochs).
ROUND_STEPS = 32
MAX_EPOCHS_AUTO = 100  # max_epochs="auto": this many rounds


# A plateau stop of a squared-error fit is checked (_check_plateau_stop): a lower bound on the distance from the
# optimum (plateau_gap) above this fraction of the loss scale warns: the fit is then demonstrably more than 1% of
# its loss above the optimum. (At 1e-3, the level the convergence suite's default fits reach, scikit-learn's
# estimator checks warned on a third of the default fits of their 20-200-row problems, at 0.1-1%.)
PLATEAU_CHECK_RTOL = 1e-2
# Steps of the bound's preconditioned conjugate gradients (one read of X each, after the gradient's). Measured on
# 600 default fits of an accuracy fuzz (every first-order rule on squared error, and Huber on CSR, where
# solver="auto" runs SGD), the silent stops more than 10% above the optimum: 14 with 2 steps, 10 with 3, 9 with
# 4, 6 with 6 (one-hot beside offset numeric columns in CSR needs 4 to 8: 0.1%, 32%, 84% of an excess of 99%
# at 2, 4, 8 steps). 3 steps, four reads of X: 22-31 ms, 8-14% of a default fit at 200,000 x 100.
PLATEAU_CHECK_STEPS = 3
PLATEAU_CHECK_ROWS = 4096  # rows (evenly spaced) that estimate the Hessian's diagonal, the preconditioner
# Small data (in memory, streamed or on Dask): more steps, up to one per dimension of the basis (d + 1 with the
# intercept, where conjugate gradients end in exact arithmetic) and PLATEAU_CHECK_MAX_STEPS, while all the steps'
# reads together stay within PLATEAU_CHECK_SMALL_WORK stored values of X (a few milliseconds in memory). Nearly
# collinear designs (rank 3 of 8 columns plus 1e-3 noise, 80-600 rows) stopped silently 1.5-49% above the
# optimum: three steps found a fraction of that, the full count finds it.
PLATEAU_CHECK_SMALL_WORK = 2**22
PLATEAU_CHECK_MAX_STEPS = 32
PLATEAU_CHECK_NULL = 1e3 * np.finfo(np.float64).eps  # curvature (relative to H's trace) below round-off: stop
# A bound that ends at this fraction of the alarm level or above, but below it, takes as many steps again: those
# fits are the ones more steps can still turn into a warning, and the rest pay nothing. A wide fuzz's default SGD
# and momentum fits of 8,000 hashed rows over 8,192 columns (alpha 0.01) stopped silently 1.27% and 1.34% above
# the optimum, their bounds at 0.83% and 0.91% after 26 steps (its budget of stored values), 1.13% and 1.20% after
# 52. Raising the step count for every fit instead (64 steps, 2^23 values) made a default fit on 2,000 x 64 dense
# rows 15 -> 22 ms.
PLATEAU_CHECK_BORDER = 0.5
# A fit that reaches max_epochs is checked too (warn_if_far's ``reached``), where it ran at least this many epochs:
# the check's reads of X cost 1-3 ms on small data and 100 ms at 200,000 x 100, 28% of a 3-epoch fit there (and
# 17% of the test suite's iterative files, whose fits run a few epochs), where a short fit that the user cut
# off is known to be unfinished; at 20 epochs it is at most a few percent.
REACHED_CHECK_MIN_EPOCHS = 20


def check_steps(values: int, d: int, k: int) -> int:
    """Steps of the plateau check (:func:`plateau_gap`) on ``X`` of ``values`` stored values (``n d`` dense),
    ``d`` columns and ``k`` targets: ``PLATEAU_CHECK_STEPS``, or more on small data (see
    ``PLATEAU_CHECK_SMALL_WORK``)."""
    affordable = PLATEAU_CHECK_SMALL_WORK // max(1, values * k)
    return max(PLATEAU_CHECK_STEPS, min(d + 1, PLATEAU_CHECK_MAX_STEPS, affordable))


def plateau_gap(fused, diag: np.ndarray, W: float, p: np.ndarray, k: int, alpha: float | np.ndarray,
                fit_intercept: bool, centre: np.ndarray | None = None,
                steps: int = PLATEAU_CHECK_STEPS, scale: float | None = None, parts: list | None = None
                ) -> tuple[float, float]:
    """``(f, gain)``: the squared error's objective at the parameters ``p`` and a lower bound on ``f - f*``.

    ``f(w, b) = sum_j [(1 / W) sum_i w_i (x_i . w_j + b_j - y_ij)^2 / 2 + (1 / 2) sum_c alpha_c w_jc^2]`` over the
    training rows and their weights ``w_i`` (``W = sum_i w_i``; ``alpha`` one coefficient or each column's). Its
    quadratic model ``m(delta) = f + g . delta + delta^T H delta / 2`` is ``f`` itself, and ``gain`` is what
    ``steps`` steps of conjugate gradients on ``H delta = -g`` from ``delta = 0``, preconditioned by ``H``'s
    diagonal, lower it by (each step's exact decrease, ``step (r . z) / 2``; Nocedal & Wright, *Numerical
    Optimization*, 2006, sec. 5.1): ``f* <= f(p + delta) = f - gain``, so ``gain <= f - f*`` in exact arithmetic.
    After an iterative fit stalls in its slowest directions, those directions hold most of the error, and a few
    steps find most of it. (The robust losses: :func:`robust_gap`.)

    ``fused(target, v, c, shift)`` is one read of the rows (:func:`fastopt._krylov.chunk_pass` with
    ``sqrt(w)``, summed over every row), one per step; it also gives the objective and its gradient. ``diag``: the
    columns' ``sum_i w_i x_ij^2 / W``, or, with ``centre`` (an estimate of the columns' weighted means) and an
    intercept, their variances about it (any positive estimate keeps the bound a bound; these only need to be
    good).

    With an intercept and ``centre`` ``c``, the steps run in the basis ``(delta, t)`` with intercept step
    ``t - c . delta``: a direction moves the intercept with the columns' means, so columns far from centred no
    longer couple to it (sparse ``X`` was scaled, never centred, and is centred now only in its columns that
    store most rows: default Huber fits of one-hot columns beside numeric ones of means near -70 stopped 120 to
    29,000 times the optimal loss above it, and three steps in the plain basis found under 1% of that; in this
    one, 36-99%). A change of basis keeps every step's decrease exact.

    With ``scale`` (the loss scale :func:`warn_if_far` will be given), a ``gain`` that ends within
    ``PLATEAU_CHECK_BORDER`` of the level at which it warns (:func:`alarm_level`) takes as many steps again.
    ``parts``, a list, receives each target's ``(f_j, gain_j)`` (the targets are independent problems, summed).
    """
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):  # overflow: a non-finite gain, unused
        return _plateau_gap(fused, diag, W, p, k, alpha, fit_intercept, centre, steps, scale, parts)


def _plateau_gap(fused, diag, W, p, k, alpha, fit_intercept, centre, steps, scale, parts=None):
    d = diag.shape[0]
    coef, intercept = split_params(p.astype(np.float64), d, k)
    model = QuadraticModel(fused, diag, W, alpha, fit_intercept, centre)
    fs, runs = [], []
    for j in range(k):
        # a = s (X w + b - y): the loss and, from the same read, X^T W r (the gradient)
        fit = fused(j, coef[j], -1.0, -float(intercept[j]))
        fs.append(fit.ss / 2 / W + 0.5 * float(coef[j] @ (alpha * coef[j])))
        runs.append(Descent(model, fit.z, fit.se, coef[j]))
        runs[-1].advance(steps)
    f = sum(fs)
    gain = sum(run.gain for run in runs)
    alarm = alarm_level(f, scale) if scale is not None else None
    if alarm is not None and PLATEAU_CHECK_BORDER * alarm <= gain < alarm:
        for run in runs:  # near the alarm: the steps were still finding more (see PLATEAU_CHECK_BORDER)
            run.advance(steps)
        gain = sum(run.gain for run in runs)
    if parts is not None:
        parts.extend((f_j, run.gain) for f_j, run in zip(fs, runs))
    return f, gain


class QuadraticModel:
    """The model ``m(delta) = f + g . delta + delta^T H delta / 2`` of :func:`plateau_gap`, with ``H = X^T S X /
    W + alpha I`` (and the intercept's row and column) read through ``fused`` (one fused pass per product, ``S``
    the pass's row weights), preconditioned by ``diag`` (+ ``alpha``), in the basis that moves the intercept with
    the columns' ``centre`` when there is one."""

    def __init__(self, fused, diag: np.ndarray, W: float, alpha: float | np.ndarray, fit_intercept: bool,
                 centre: np.ndarray | None, intercept_curvature: float = 1.0):
        self.fused, self.W, self.alpha, self.fit_intercept = fused, W, alpha, fit_intercept
        self.centre = centre if fit_intercept and centre is not None else None
        diag = diag + alpha
        self.diag = diag
        self.inv = np.where(diag > 0, 1.0 / np.where(diag > 0, diag, 1.0), 0.0)
        # the intercept's diagonal entry, S's total over W: 1 for the squared error's weights of mean 1
        self.intercept_curvature = intercept_curvature if intercept_curvature > 0 else 1.0
        # A direction whose curvature is below round-off of H's trace is numerically null: once the steps have
        # exhausted H's range (a rank-deficient design, e.g. one-hot columns beside the intercept) the residual is
        # round-off with null components, and a step along one divided by nothing (an exact fit reported 6% away).
        # Measured in the preconditioner's units (the trace of D^-1/2 H D^-1/2 is the count of live coordinates),
        # a test of no unit: against H's own trace, the directions of columns of scale 1e-10 beside the intercept
        # were all null, and precondition="none" fits that never moved them passed the check (R^2 0, silent).
        self.null_curvature = PLATEAU_CHECK_NULL * (int(np.count_nonzero(diag > 0)) + (1 if fit_intercept else 0))

    def metric(self, v: np.ndarray, v_b: float) -> float:
        """``[v; v_b]^T D [v; v_b]``: the direction's curvature by the preconditioner's diagonal ``D`` (the
        intercept's entry 1; in the basis of :meth:`intercept_step`, the diagonal of that basis is not exact, but
        the test only needs the direction's scale)."""
        return float(v @ (self.diag * v)) + (self.intercept_curvature * v_b * v_b if self.fit_intercept else 0.0)

    def intercept_step(self, v: np.ndarray, v_b: float) -> float:
        """The intercept's change along the basis direction ``[v; v_b]``."""
        return v_b - float(self.centre @ v) if self.centre is not None else v_b

    def _hessian(self, v, v_b):  # (H [v; v_b]) and [v; v_b]^T H [v; v_b] in the basis above, one fused read of X
        q = self.fused(0, v, 0.0, -self.intercept_step(v, v_b))
        h, h_b = q.z / self.W + self.alpha * v, (q.se / self.W if self.fit_intercept else 0.0)
        h = h - h_b * self.centre if self.centre is not None else h
        return h, h_b, q.ss / self.W + float(v @ (self.alpha * v))

    def descend(self, grad: np.ndarray, grad_b: float, coef: np.ndarray, steps: int):
        """``(gain, delta, delta_b)``: ``steps`` steps of preconditioned conjugate gradients on ``H delta = -g``
        from 0, ``g = grad / W + alpha coef`` and ``grad_b / W``; ``gain = m(0) - m(delta)`` (each step's exact
        decrease), ``delta`` the columns' change and ``delta_b`` the intercept's."""
        run = Descent(self, grad, grad_b, coef)
        run.advance(steps)
        return run.gain, run.x, self.intercept_step(run.x, run.x_b)


class Descent:
    """:meth:`QuadraticModel.descend`'s conjugate gradients, resumable: :meth:`advance` takes more steps from
    where the last call left them (``gain``, ``x``, ``x_b`` so far, in the model's basis)."""

    def __init__(self, model: QuadraticModel, grad: np.ndarray, grad_b: float, coef: np.ndarray):
        self.model = model
        W = model.W
        r, r_b = -(grad / W + model.alpha * coef), (-grad_b / W if model.fit_intercept else 0.0)  # minus g
        if model.centre is not None:
            r = r - r_b * model.centre  # (in the basis above)
        self.r, self.r_b = r, r_b
        z, z_b = model.inv * r, r_b / model.intercept_curvature
        self.rz = float(r @ z) + r_b * z_b
        self.p_w, self.p_b = z.copy(), z_b
        self.x, self.x_b, self.gain = np.zeros_like(z), 0.0, 0.0
        self.ended = False  # no step left: the residual vanished or the direction's curvature is null

    def advance(self, steps: int) -> None:
        """Up to ``steps`` more steps."""
        model = self.model
        for _ in range(steps):
            if self.ended or not self.rz > 0:
                self.ended = True
                return
            p_w, p_b, rz = self.p_w, self.p_b, self.rz
            Hp, Hp_b, pHp = model._hessian(p_w, p_b)
            if not pHp > model.null_curvature * model.metric(p_w, p_b):
                self.ended = True
                return
            step = rz / pHp
            self.gain += 0.5 * step * rz
            self.x += step * p_w
            self.x_b += step * p_b
            self.r -= step * Hp
            self.r_b -= step * Hp_b
            z, z_b = model.inv * self.r, self.r_b / model.intercept_curvature
            rz_new = float(self.r @ z) + self.r_b * z_b
            self.p_w, self.p_b = z + (rz_new / rz) * p_w, z_b + (rz_new / rz) * p_b
            self.rz = rz_new


def jacobi(sums: np.ndarray, squares: np.ndarray, total: float, fit_intercept: bool):
    """``(centre, diag)`` for :func:`plateau_gap` from the columns' weighted sums and sums of squares over the
    weights' ``total``: with an intercept the means and the variances about them, else None and the mean
    squares."""
    if not fit_intercept:
        return None, squares / total
    centre = sums / total
    return centre, np.maximum(squares / total - centre * centre, 0.0)


def memory_gap(data, sw, p: np.ndarray, alpha: float | np.ndarray, fit_intercept: bool, scale: float | None = None,
               parts: list | None = None):
    """:func:`plateau_gap` of the squared error over an in-memory ``data`` (dense, or CSR with int32 indices;
    float32 or float64) with weights ``sw`` of mean 1 (or None): ``W = n``, and the diagonal from at most
    ``PLATEAU_CHECK_ROWS`` evenly spaced rows, or every row of small data (:func:`_sampled_jacobi`); ``scale``
    as there. The robust losses: :func:`robust_gap`."""
    from fastopt import _krylov  # (its fused pass: f32 or f64 X, f64 vectors, one read)

    X = data.X
    n, d = X.shape
    sqrt_w = None if sw is None else np.sqrt(sw.astype(np.float64))
    centre, diag = _sampled_jacobi(X, None if sw is None else sw.astype(np.float64), fit_intercept)

    def fused(target, v, c, shift):
        return _krylov.chunk_pass(data, sqrt_w, target, v, c, shift)

    k = data.Y.shape[1]
    return plateau_gap(fused, diag, float(n), p, k, alpha, fit_intercept, centre,
                       check_steps(X.nnz if sp.issparse(X) else n * d, d, k), scale, parts)


def _sampled_jacobi(X, row_weights: np.ndarray | None, fit_intercept: bool):
    """:func:`jacobi` from at most ``PLATEAU_CHECK_ROWS`` evenly spaced rows of ``X`` with weights
    ``row_weights`` (None: ones), or from every row where ``X`` holds at most ``PLATEAU_CHECK_SMALL_WORK``
    values (a few milliseconds, as the small data's extra steps).

    A sample misses the columns that few rows store (rare one-hot levels) or counts them twice, and the
    preconditioner then hides the distance left along them: Zipf categories of 2,000 levels over 5,000 rows,
    default momentum stopped 1.21% above the optimum, and every other row's diagonal bounded that at 0.48% of
    the loss (silent); every row's at 1.20% (warned)."""
    n, d = X.shape
    values = X.nnz if sp.issparse(X) else n * d
    every = 1 if values <= PLATEAU_CHECK_SMALL_WORK else -(-n // PLATEAU_CHECK_ROWS)
    Xs = X if every == 1 else X[::every]  # (a CSR slice copies X, even with a step of 1)
    ws = np.ones(Xs.shape[0]) if row_weights is None else row_weights[::every]
    if sp.issparse(Xs):
        values = np.asarray(Xs.data, dtype=np.float64)
        row_w = np.repeat(ws, np.diff(Xs.indptr))
        sums = np.bincount(Xs.indices, weights=row_w * values, minlength=d)
        diag = np.bincount(Xs.indices, weights=row_w * values * values, minlength=d)
    else:
        sums = np.einsum("i,ij->j", ws, Xs, dtype=np.float64)
        diag = np.einsum("i,ij,ij->j", ws, Xs, Xs, dtype=np.float64)
    return jacobi(sums, diag, max(float(ws.sum()), np.finfo(float).tiny), fit_intercept)


# The absolute error's reweighting (robust_gap): weights 1 / max(|r|, mu), mu this fraction of the median |r|. On
# default fits that stopped silently 2-40% (and 7-55 times) above the optimum, the step found 71%, 60% and 58% of a
# 39% excess at 0.1, 0.01 and 0.001 (a larger mu keeps the weights' spread, and so the steps' conditioning, mild),
# 17-50% of the smaller ones.
LAD_REWEIGHT_MU = 0.1
# With the further rounds (robust_gap's scale), a first step at LAD_REWEIGHT_MU that finds no decrease is taken
# again at this factor. Default SGD, momentum and Adam absolute-error fits on 80 rows of 14 columns with weights
# 10^U(-3, 3), twelve draws: 35 ended more than 1% above the optimum, 21 silently (17 with the rounds); on the
# silent ones the step at 0.1 found no decrease, at 0.01 bounds of 1.0-8.1% of the objective; with the retry 2
# stay silent (both 2.6-2.8%). tools/robust_fit_fuzz.py seeds 1-5: 11 -> 9 silent; the checks of seeds 2701 and 1
# took 805 rounds in 466 (655 without the retry).
LAD_RETRY_MU = 0.01


def robust_gap(data, sw, p: np.ndarray, alpha: float | np.ndarray, fit_intercept: bool, loss: str,
               epsilon: float = 1.35, scale: float | None = None, points: list | None = None):
    """``(f, gain)`` for Huber's loss (threshold ``epsilon``) or the absolute error over an in-memory ``data`` (as
    :func:`memory_gap`): the objective at ``p`` and a lower bound on ``f - f*``, exhibited.

    A reweighted least-squares step: for each target, conjugate gradients (:class:`QuadraticModel`, the steps of
    :func:`check_steps`) on ``(X^T S Omega X / W + alpha I) delta = -g`` with ``Omega = diag(psi(r_i) / r_i)``,
    the weights of iteratively reweighted least squares (Holland & Welsch, "Robust regression using iteratively
    reweighted least-squares", *Communications in Statistics* 6, 1977): Huber's ``min(1, epsilon / |r_i|)``; for
    the absolute error ``1 / max(|r_i|, mu)`` and the gradient ``r_i / max(|r_i|, mu)``, ``mu`` the median
    ``|r|`` times ``LAD_REWEIGHT_MU``. Huber's loss is concave in ``r^2``, so this model lies above it; the
    squared error's Hessian (:func:`plateau_gap`'s model, which bounded Huber's loss before) overstates its
    curvature in the linear part and the steps fall short there. Then the objective itself at ``p + tau delta``
    for ``tau`` 1, 1/2 and 1/4 (one more read of ``X``): ``gain = f - min(f, min_tau f(p + tau delta))``
    (:func:`best_step`), the decrease to a point found, so ``gain <= f - f*`` up to rounding whatever the
    model (with ``mu`` it does not lie above the absolute error).

    With ``scale`` (the loss scale :func:`warn_if_far` will be given), further rounds of reweighting, each from
    the best point of the last, as iteratively reweighted least squares goes on (see ``ROBUST_MAX_ROUNDS``):
    ``gain`` is then the decrease to the last point, still one found.

    ``points``, a list, receives per target the residuals and coefficients at ``p`` and the coefficients,
    residuals and intercept of the last point the rounds reached (for :func:`_far_rows_capped`).
    """
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):  # overflow: a non-finite gain, unused
        return _robust_gap(data, sw, p, alpha, fit_intercept, loss, epsilon, scale, points)


def _robust_terms(r: np.ndarray, loss: str, epsilon: float, s: np.ndarray, factor: float = LAD_REWEIGHT_MU):
    """``(psi, omega)``, the gradient and reweighting of :func:`robust_gap` at the residuals ``r`` (the absolute
    error's ``mu`` ``factor`` times their median); None when the absolute error's residuals are all zero on the
    weighted rows (an exact fit: nothing to find)."""
    mu = 0.0
    if loss != "huber":
        weighted = np.abs(r[s > 0])
        mu = factor * float(np.median(weighted)) if weighted.size else 0.0
        if not mu > 0:  # more than half of the residuals are 0
            mu = factor * float(np.mean(weighted)) if weighted.size else 0.0
        if not mu > 0:
            return None
    return reweight(r, loss, epsilon, mu)


def reweight(r: np.ndarray, loss: str, epsilon: float, mu: float):
    """``(psi, omega)`` at the residuals ``r``: Huber's ``clip(r, -epsilon, epsilon)`` and ``min(1, epsilon /
    |r|)``; the absolute error's ``r / max(|r|, mu)`` and ``1 / max(|r|, mu)`` (:func:`robust_gap`)."""
    a = np.abs(r)
    if loss == "huber":
        return np.clip(r, -epsilon, epsilon), np.where(a <= epsilon, 1.0, epsilon / np.where(a > epsilon, a, 1.0))
    m = np.maximum(a, mu)
    return r / m, 1.0 / m


def robust_rho(r: np.ndarray, loss: str, epsilon: float) -> np.ndarray:
    """Huber's loss (threshold ``epsilon``) or the absolute error at ``r``: ``_per_sample_loss``'s values, in three
    passes over ``r`` instead of its masks' seven."""
    a = np.abs(r)
    if loss != "huber":
        return a
    m = np.minimum(a, epsilon)
    return m * (a - 0.5 * m)


# The fractions of the reweighted step at which robust_gap evaluates the objective.
ROBUST_STEP_FRACTIONS = (1.0, 0.5, 0.25)


def best_step(f: float, changes, W: float, coef: np.ndarray, delta: np.ndarray, alpha) -> tuple[float, float | None]:
    """``(min(f, f(p + tau delta)), tau)`` over ``ROBUST_STEP_FRACTIONS``: ``changes`` the weighted sums of the
    loss's change at those points (:func:`rho_change`; divided by the weights' total ``W``) plus the ridge's
    change at ``coef + tau delta``, the best point of the step from ``p`` (objective ``f``) and the fraction that
    reached it (None when none went below ``f``), for :func:`robust_gap` and, over chunks,
    ``_sweeps.stream_robust_gap``. Judged by the changes, not by the objectives: beside rows of 1e25 the
    objective (1e23) rounds away the other rows' whole decrease, and the step was never taken."""
    here = 0.5 * float(coef @ (alpha * coef))
    best, taken = 0.0, None
    for tau, change in zip(ROBUST_STEP_FRACTIONS, changes, strict=True):
        moved = coef + tau * delta
        value = change / W + (0.5 * float(moved @ (alpha * moved)) - here)
        if value < best:
            best, taken = value, tau
    return f + best, taken


def rho_change(r: np.ndarray, dr: np.ndarray, loss: str, epsilon: float) -> np.ndarray:
    """``robust_rho(r + dr) - robust_rho(r)``, exact where both lie on one linear branch (``epsilon sign(r) dr``
    for Huber beyond ``epsilon``, ``sign(r) dr`` for the absolute error), where the difference of two values of
    ``|r|`` rounds the change away (``r`` of 1e25 moved by 1)."""
    new = r + dr
    knee = 0.0 if loss != "huber" else epsilon
    linear = (np.abs(r) > knee) & (np.abs(new) > knee) & (np.sign(r) == np.sign(new))
    slope = 1.0 if loss != "huber" else epsilon
    return np.where(linear, slope * np.sign(r) * dr, robust_rho(new, loss, epsilon) - robust_rho(r, loss, epsilon))


def _gap_setup(data, sw, p):
    """``(coef, intercept, s, W, values, steps)`` of :func:`robust_gap` and :func:`positive_gap`: the parameters
    ``p`` split in float64, the row weights (ones without ``sw``) and their total ``W = n``, ``X``'s stored values
    and the steps of conjugate gradients a round takes (:func:`check_steps`)."""
    X = data.X
    n, d = X.shape
    coef, intercept = split_params(p.astype(np.float64), d, data.Y.shape[1])
    s = np.ones(n) if sw is None else sw.astype(np.float64)
    values = X.nnz if sp.issparse(X) else n * d
    return coef, intercept, s, float(n), values, check_steps(values, d, data.Y.shape[1])


def _robust_gap(data, sw, p, alpha, fit_intercept, loss, epsilon, scale, points):
    X = data.X
    k = data.Y.shape[1]
    coef, intercept, s, W, values, steps = _gap_setup(data, sw, p)
    rounds = robust_rounds(scale, steps + 2, values, k)  # a round: the steps, the gradient, the step's residuals
    residuals, objectives = [], []
    for j in range(k):
        r = _linear(X, coef[j], float(intercept[j])) - data.Y[:, j].astype(np.float64)
        residuals.append(r)
        objectives.append(_robust_objective(s, W, r, coef[j], alpha, loss, epsilon))
    f = sum(objectives)
    nulls = _row_space_objectives(data, s, W, coef, intercept, alpha, loss, epsilon)
    alarm = None if scale is None else alarm_level(f, scale)
    gain = 0.0
    for j in range(k):
        point = [coef[j], residuals[j], float(intercept[j])]  # the coefficients, the residuals and the intercept

        def take_round(factor: float, here: float, point=point):
            coef_j, r, b = point
            terms = _robust_terms(r, loss, epsilon, s, factor)
            if terms is None:
                return None
            moved = _reweighted_step(data, s, W, coef_j, r, here, terms, alpha, fit_intercept, loss, epsilon, steps)
            if moved is None:
                return None
            value, tau, delta, q, delta_b = moved
            if tau is not None:
                point[:] = coef_j + tau * delta, r + tau * q, b + tau * delta_b
            return value, tau

        reached = min(reweighting_rounds(objectives[j], gain, rounds, alarm, loss, take_round), nulls[j])
        if loss != "huber" and alarm is not None and gain + objectives[j] - reached <= alarm:
            wide = _interpolant_step(data, s, W, coef[j], residuals[j], objectives[j], j, alpha, fit_intercept,
                                     epsilon, steps)
            reached = min(reached, wide)
        if (alarm is not None and ROBUST_POINT_FROM * alarm <= gain + objectives[j] - reached <= alarm
                and X.shape[1] <= steps and X.shape[0] * X.shape[1] <= PLATEAU_CHECK_SMALL_WORK):
            reached = min(reached, _robust_point(data, s, W, j, point, alpha, fit_intercept, loss, epsilon))
        gain += objectives[j] - reached
        if points is not None:
            points.append((residuals[j], coef[j], *point))
    return f, gain


# _interpolant_step: a fit whose median |r| is below this fraction of the targets' median absolute deviation
# interpolates its rows (to the check's eyes).
INTERPOLANT_RATIO = 1e-3


def _interpolant_step(data, s, W: float, coef: np.ndarray, r: np.ndarray, here: float, j: int, alpha,
                      fit_intercept: bool, epsilon: float, steps: int) -> float:
    """The absolute error's objective after one reweighted step with ``mu`` a tenth of the targets' median
    absolute deviation instead of the residuals' (inf where not tried: a fit whose median ``|r|`` is at least
    ``INTERPOLANT_RATIO`` of that deviation). A fit that interpolates its rows under a ridge (wide data) has
    residuals near 0, so ``mu`` a tenth of them gave its steps a curvature of ``1 / mu`` (1e7) along the rows, and
    the trade of residual for norm that the ridge asks went unseen: SGD, momentum and Nesterov on 300 x 1,000 rows
    with ``alpha=1e-2`` stopped 50% above the optimum, silently. The objective is evaluated along the step (a
    point found)."""
    weighted = s > 0
    y = data.Y[weighted, j].astype(np.float64)
    spread = float(np.median(np.abs(y - np.median(y)))) if y.size else 0.0
    if not (spread > 0 and float(np.median(np.abs(r[weighted]))) < INTERPOLANT_RATIO * spread):
        return np.inf
    terms = reweight(r, "absolute_error", epsilon, LAD_REWEIGHT_MU * spread)
    moved = _reweighted_step(data, s, W, coef, r, here, terms, alpha, fit_intercept, "absolute_error", epsilon,
                             steps)
    return np.inf if moved is None else float(moved[0])


# Wide fits of at most this many rows also try the coefficients' part in X's row space (_row_space_objectives):
# an n x n solve.
ROW_SPACE_MAX_ROWS = 4096


def _robust_objective(s: np.ndarray, W: float, r: np.ndarray, coef: np.ndarray, alpha, loss: str,
                      epsilon: float) -> float:
    """One target's objective at residuals ``r`` and coefficients ``coef``: the weighted loss over ``W`` plus the
    ridge ``alpha / 2 ||coef||^2`` (``alpha`` one coefficient, or each column's)."""
    return float(s @ robust_rho(r, loss, epsilon)) / W + 0.5 * float(coef @ (alpha * coef))


def _row_space_objectives(data, s, W: float, coef: np.ndarray, intercept: np.ndarray, alpha, loss: str,
                          epsilon: float) -> np.ndarray:
    """Per target, the objective at the coefficients with the least ridge that give the same predictions,
    ``D^-1 X^T (X D^-1 X^T)^+ X coef`` (``D`` the ridge's diagonal; one ``n x n`` solve for every target), or inf
    where not tried: wide data (``n < d``, at most ``ROW_SPACE_MAX_ROWS`` rows) under a ridge on every column.
    Along ``X``'s null space a robust fit's steps see only the ridge, which the reweighted steps (curvature
    ``1 / mu`` along the rows, ``mu`` a tenth of residuals near 0 when the fit interpolates) barely resolve: the
    absolute error with ``alpha=1e-2`` on 300 x 1,000 rows, AdaGrad, RMSProp and Adam (whose per-coordinate steps
    leave the row space) stopped 73-96% above the optimum, silently. The objective is evaluated at the point (its
    residuals recomputed), so the decrease is one found, whatever the solve's rounding. (SGD and the momentum rules
    stay in the row space: their excess there is :func:`_interpolant_step`'s.)"""
    X = data.X
    n, d = X.shape
    k = coef.shape[0]
    D = np.broadcast_to(np.asarray(alpha, dtype=np.float64), (d,))
    out = np.full(k, np.inf)
    if not (n < d <= n * 64 and n <= ROW_SPACE_MAX_ROWS and np.all(D > 0) and np.all(np.isfinite(D))):
        return out
    scaled = X.multiply(1.0 / D).tocsr() if sp.issparse(X) else X / D
    G = scaled @ X.T
    G = G.toarray() if sp.issparse(G) else np.asarray(G)
    preds = np.column_stack([_linear(X, coef[j], 0.0) for j in range(k)])
    Z = scipy.linalg.lstsq(G, preds, check_finite=False)[0]
    for j in range(k):
        row = np.asarray(scaled.T @ Z[:, j], dtype=np.float64).ravel()
        if np.all(np.isfinite(row)):
            r = _linear(X, row, float(intercept[j])) - data.Y[:, j].astype(np.float64)
            out[j] = _robust_objective(s, W, r, row, D, loss, epsilon)
    return out


def robust_rounds(scale: float | None, reads: int, values: int, k: int) -> int:
    """The rounds :func:`robust_gap` (or over chunks ``_sweeps.stream_robust_gap``) may take, each ``reads`` reads
    of ``values`` stored values for each of ``k`` targets: one without ``scale``; with it, as many as
    ``PLATEAU_CHECK_SMALL_WORK`` allows, as the steps on small data, at least one and at most
    ``ROBUST_MAX_ROUNDS``."""
    if scale is None:
        return 1
    return max(1, min(ROBUST_MAX_ROUNDS, PLATEAU_CHECK_SMALL_WORK // max(1, reads * values * k)))


def reweighting_rounds(start: float, found: float, rounds: int, alarm: float | None, loss: str, take_round) -> float:
    """The objective at the last point that :func:`robust_gap`'s rounds reach for one target from its point of
    objective ``start`` (``found`` the decrease the targets before it found; ``alarm`` the level that warns, None
    for one round). ``take_round(factor, here)`` takes a reweighted step from the current point, of objective
    ``here``, with the absolute error's ``mu`` ``factor`` times its scale, and returns None when it cannot (no
    reweighting, a non-finite step), ``(value, None)`` when no point of the step went below ``here``, or
    ``(value, tau)`` having moved to the best point, of objective ``value``. The rounds end as
    ``ROBUST_MAX_ROUNDS`` says (:func:`_rounds_done`); an absolute-error first step that found no decrease is taken
    again at ``LAD_RETRY_MU`` (:func:`_retry_mu`)."""
    here, falls, factor, taken = start, [], LAD_REWEIGHT_MU, 0
    while (taken < rounds or _border_round(taken - rounds, found + start - here, alarm)) \
            and not _rounds_done(falls, found + start - here, alarm):
        taken += 1
        moved = take_round(factor, here)
        if moved is None:
            break
        value, tau = moved
        if tau is None:  # no point of the step went below this one
            if _retry_mu(loss, falls, factor, alarm):
                factor = LAD_RETRY_MU
                continue
            break
        falls.append(here - value)
        here = value
    return here


# Further reweighted rounds of the robust check (robust_gap with the loss scale), each from the best point of the
# last, at most this many, within PLATEAU_CHECK_SMALL_WORK, and only while they can still reach the alarm: a
# second when the first found at least ROBUST_ROUND_FLOOR of the alarm level, more while the found decrease plus
# the series of falls projected geometrically (last ratio r < 1: fall r / (1 - r)) reaches ROBUST_PROJECTION of
# it. tools/robust_fit_fuzz.py's absolute-error fits, seeds 1-5 (1,200 fits): the silent stops more than 1% above
# the optimum went from 28 (up to 22%) to 11 (one 30 x 28 design whose optimum interpolates, and weighted designs
# of 30-80 rows, where a step from the fit finds little or no decrease); Huber's results did not change. Seeds 2701
# and 1: the fits caught had first rounds of 0.10-0.54 of the alarm level; 655 rounds in 466 checks, one each
# before; default fits of 200 x 11 to 20,000 x 50 rows took no more time.
ROBUST_MAX_ROUNDS = 20
ROBUST_ROUND_FLOOR = 0.05
ROBUST_PROJECTION = 0.5


def _retry_mu(loss: str, falls: list, factor: float, alarm: float | None) -> bool:
    """Whether the absolute error's first round, having found no decrease at ``mu`` ``factor`` times the median
    ``|r|``, is taken again at ``LAD_RETRY_MU`` (only with the rounds, ``alarm`` not None)."""
    return loss == "absolute_error" and alarm is not None and not falls and factor != LAD_RETRY_MU


# Rounds beyond the budget while the decrease found lies between PLATEAU_CHECK_BORDER of the alarm level and it
# (as the squared error's check takes its steps again there): on sparse rows of 1,500 x 1,000 (10% stored, column
# scales 1e-2 to 1e2, 20% of the targets shifted by 1e3) the budget allowed one round, whose bound stopped at
# 0.71-0.88 of the alarm where SGD was 2.4-6% above the optimum, silently; a second found 1.2-1.6 times it.
ROBUST_BORDER_ROUNDS = 2


def _border_round(beyond: int, found: float, alarm: float | None) -> bool:
    """Whether :func:`reweighting_rounds` takes a round ``beyond`` its budget (0: the first beyond it)."""
    return (alarm is not None and beyond < ROBUST_BORDER_ROUNDS
            and PLATEAU_CHECK_BORDER * alarm <= found < alarm)


def _rounds_done(falls: list, found: float, alarm: float | None) -> bool:
    """Whether the robust check's rounds end before another (see ``ROBUST_MAX_ROUNDS``): ``falls`` the decreases
    of this target's rounds so far, ``found`` the whole decrease so far (every target's), ``alarm`` the level
    that warns (None: one round)."""
    if not falls:
        return False
    if alarm is None or found > alarm or falls[0] < ROBUST_ROUND_FLOOR * alarm:
        return True
    if len(falls) < 2:
        return False
    ratio = falls[-1] / falls[-2] if falls[-2] > 0 else 0.0
    return ratio < 1.0 and found + falls[-1] * ratio / (1.0 - ratio) < ROBUST_PROJECTION * alarm


def _reweighted_step(data, s, W, coef, r, here, terms, alpha, fit_intercept, loss, epsilon, steps):
    """One round of :func:`robust_gap` from the coefficients ``coef`` (residuals ``r``, objective ``here``;
    ``terms`` the residuals' :func:`_robust_terms`): ``(value, tau, delta, q, delta_b)``, the best objective along
    the step and its fraction (:func:`best_step`), the columns' step, the residuals' change ``q = X delta +
    delta_b`` and the intercept's step; None for a non-finite step."""
    X = data.X
    psi, omega = terms
    spsi = s * psi
    grad, model = _reweighted_model(data, spsi, s * omega, W, alpha, fit_intercept)
    _, delta, delta_b = model.descend(grad, float(spsi.sum()), coef, steps)
    delta = delta.astype(X.dtype).astype(np.float64)  # the step X's products take
    if not (np.all(np.isfinite(delta)) and np.isfinite(delta_b)):
        return None
    q = _linear(X, delta, delta_b)  # the residuals' change along the step
    changes = [float(s @ rho_change(r, tau * q, loss, epsilon)) for tau in ROBUST_STEP_FRACTIONS]
    value, tau = best_step(here, changes, W, coef, delta, alpha)
    return value, tau, delta, q, float(delta_b)


def _reweighted_model(data, spsi: np.ndarray, row_w: np.ndarray, W: float, alpha, fit_intercept: bool):
    """``(grad, model)``: ``X^T spsi`` (the loss's gradient, the rows' weights times their ``psi``) and the
    :class:`QuadraticModel` of the rows weighted ``row_w``, for a step of :func:`robust_gap` or
    :func:`positive_gap`."""
    from fastopt import _krylov

    X = data.X
    n, d = X.shape
    grad = np.zeros(d)
    for start in range(0, n, CHUNK_ROWS):  # X^T (s psi) in X's dtype, by row blocks (no float64 copy of X)
        block = X[start : start + CHUNK_ROWS]
        grad += np.asarray(block.T @ spsi[start : start + CHUNK_ROWS].astype(X.dtype), dtype=np.float64)
    sqrt_row = np.sqrt(row_w)
    centre, diag = _sampled_jacobi(X, row_w, fit_intercept)
    # The Jacobi diagonal is of the rows' weighted means; the Hessian's is of their sums over W. The squared
    # error's weights total W; the reweighted rows' do not (the absolute error's 1 / max(|r|, mu) carries the
    # inverse unit of y), and positive_gap's hold test, coef <= g / diag, then depended on y's unit: a fit 56%
    # above the optimum warned with y as given and was silent with y / 100 (every coefficient held).
    total = float(row_w.sum()) / W
    diag = diag * total

    def fused(target, v, c, shift):
        return _krylov.chunk_pass(data, sqrt_row, target, v, c, shift)

    return grad, QuadraticModel(fused, diag, W, alpha, fit_intercept, centre, total)


def _linear(X, coef: np.ndarray, intercept: float) -> np.ndarray:
    """``X coef + intercept`` in float64, the products in ``X``'s dtype (no float64 copy of ``X``)."""
    return np.asarray(X @ coef.astype(X.dtype), dtype=np.float64) + intercept


def positive_gap(data, sw, p: np.ndarray, alpha: float | np.ndarray, fit_intercept: bool, loss: str,
                 epsilon: float = 1.35, scale: float | None = None, parts: list | None = None):
    """``(f, gain)`` of a fit under ``positive=True`` over an in-memory ``data`` (as :func:`memory_gap` and
    :func:`robust_gap`, every loss): the objective at ``p`` and a lower bound on ``f - f*``, ``f*`` the minimum
    over coefficients ``w >= 0`` (the intercept free), exhibited by a feasible point.

    The constrained minimum's gradient is not zero, so :func:`plateau_gap`'s unconstrained steps would find
    decreases that no feasible point has. Instead, each round takes the steps of conjugate gradients (the squared
    error's model, or :func:`robust_gap`'s reweighted one) on the coordinates that may move, those with ``w_c > 0``
    or whose gradient ``g_c < 0`` points into the feasible set (the others held at their bound 0), then evaluates
    the objective at the projections ``max(w + tau delta, 0)`` for ``tau`` in ``ROBUST_STEP_FRACTIONS`` (one read
    of ``X`` each): feasible points, so ``gain = f - min(f, f(point))`` is at most ``f - f*`` up to rounding
    (Bertsekas, "Projected Newton methods for optimization problems with simple constraints", *SIAM J. Control
    Optim.* 20, 1982, for the split of the coordinates). With ``scale``, further rounds from the best point, as
    :func:`robust_gap`'s. ``parts``, a list, receives each target's ``(f_j, gain_j)``.
    """
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):  # overflow: a non-finite gain, unused
        return _positive_gap(data, sw, p, alpha, fit_intercept, loss, epsilon, scale, parts)


def _positive_gap(data, sw, p, alpha, fit_intercept, loss, epsilon, scale, parts):
    X = data.X
    k = data.Y.shape[1]
    coef, intercept, s, W, values, steps = _gap_setup(data, sw, p)
    # a round: the steps, the gradient, and a read for each fraction of the step
    rounds = robust_rounds(scale, steps + 1 + len(ROBUST_STEP_FRACTIONS), values, k)
    objectives, points = [], []
    for j in range(k):
        r = _linear(X, coef[j], float(intercept[j])) - data.Y[:, j].astype(np.float64)
        objectives.append(_any_objective(s, W, r, coef[j], alpha, loss, epsilon))
        points.append([coef[j], r, float(intercept[j])])
    f = sum(objectives)
    alarm = None if scale is None else alarm_level(f, scale)
    gain = 0.0
    for j in range(k):
        point = points[j]

        def take_round(factor: float, here: float, point=point):
            moved = _projected_step(data, s, W, *point, here, alpha, fit_intercept, loss, epsilon, steps, factor)
            if moved is None:
                return None
            value, taken = moved
            if taken is None:
                return value, None
            point[:] = taken
            return value, 1.0

        reached = reweighting_rounds(objectives[j], gain, rounds, alarm, loss, take_round)
        small = X.shape[1] <= steps and X.shape[0] * X.shape[1] <= PLATEAU_CHECK_SMALL_WORK
        # a robust loss's point only where a coefficient is at or near its bound (see _robust_point)
        near = loss != "squared_error" and np.any(point[0] <= POSITIVE_NEAR_BOUND * np.abs(point[0]).max())
        if small and loss == "squared_error":
            reached = min(reached, _positive_exact(data, s, W, j, alpha, fit_intercept))
        elif small and near:
            reached = min(reached, _robust_point(data, s, W, j, point, alpha, fit_intercept, loss, epsilon,
                                                 positive=True))
        elif (not small and near and alarm is not None and gain + objectives[j] - reached <= alarm
              and (evals := positive_point_evals(values, X.shape[0], k)) >= POSITIVE_POINT_MIN_EVALS):
            # wider rows: the point within a budget of evaluations (see POSITIVE_POINT_WORK)
            reached = min(reached, _robust_point(data, s, W, j, point, alpha, fit_intercept, loss, epsilon,
                                                 positive=True, evals=evals))
        gain += objectives[j] - reached
        if parts is not None:
            parts.append((objectives[j], objectives[j] - reached))
    return f, gain


def _positive_exact(data, s: np.ndarray, W: float, j: int, alpha, fit_intercept: bool) -> float:
    """The squared error's objective for target ``j`` at the constrained least-squares point: NNLS (the closed
    form's checked one) on the Cholesky factor of the weighted, centred, column-scaled design with the ridge's rows
    where its rcond allows, else on its QR factor; the objective is evaluated exactly from the point's residuals,
    so it is a feasible point's (a bound on ``f - f*`` whatever NNLS's accuracy on an ill-conditioned design). For
    :func:`positive_gap` on small data, where the conjugate gradients already take one step per dimension and the
    factorisation costs about as much (``n d^2``). The projected steps
    hold a coefficient at 0 while its gradient points out of the feasible set, but on nearly low-rank columns the
    optimum leaves it there (rank 3 of 7 columns plus 1e-3 noise: coefficients of 154 where the fit had 0.06 and
    the gradient was positive): default SGD and Adam fits stopped 1-11% above the optimum with rounds that found
    1e-4 of the alarm, silently."""
    import scipy.linalg

    from fastopt._closed_form import RCOND_CHOLESKY, _nnls

    X = data.X
    d = X.shape[1]
    Xd = X.toarray() if sp.issparse(X) else X
    Xd = np.asarray(Xd, dtype=np.float64)
    y = data.Y[:, j].astype(np.float64)
    total = float(s.sum())
    xm = (s @ Xd) / total if fit_intercept and total > 0 else np.zeros(d)
    ym = float(s @ y) / total if fit_intercept and total > 0 else 0.0
    root = np.sqrt(s / W)
    A, b = root[:, None] * (Xd - xm), root * (y - ym)
    ridge = np.broadcast_to(np.asarray(alpha, dtype=np.float64), (d,))
    if np.any(ridge > 0):  # (alpha / 2 ||c||^2 as rows sqrt(alpha) I)
        A, b = np.vstack([A, np.diag(np.sqrt(ridge))]), np.concatenate([b, np.zeros(d)])
    scale = np.linalg.norm(A, axis=0)
    scale[~(scale > 0)] = 1.0
    if not (np.all(np.isfinite(A)) and np.all(np.isfinite(b))):
        return np.inf
    A /= scale
    # The Cholesky factor of the Gram where it keeps the closed form's accuracy (RCOND_CHOLESKY), else the QR
    # factor: NumPy's QR of 2,000 x 30 took 5 ms, the Gram 0.1 ms (the check's whole cost for a 7 ms fit).
    G = A.T @ A
    U, info = scipy.linalg.lapack.dpotrf(G, lower=0, clean=1)
    if info == 0 and scipy.linalg.lapack.dpocon(U, float(np.abs(G).sum(axis=0).max()))[0] >= RCOND_CHOLESKY:
        M, c = U, scipy.linalg.solve_triangular(U, A.T @ b, trans="T", check_finite=False)
    else:
        Q, M = np.linalg.qr(A)
        c = Q.T @ b
    coef = (_nnls(M, c, 50 * max(d, 1)) / scale).astype(X.dtype).astype(np.float64)
    intercept = ym - float(xm @ coef) if fit_intercept else 0.0
    r = _linear(X, coef, intercept) - y
    value = _any_objective(s, W, r, coef, alpha, "squared_error", 0.0)
    return value if np.isfinite(value) else np.inf


# _robust_point: the absolute error's smoothing threshold, relative to the mean absolute residual (its minimiser
# within half of it of the minimum: 5e-4 of the objective at most).
ROBUST_POINT_LAD_MU = 1e-3
# positive_gap takes _robust_point only where a coefficient is at or near its bound (within this of the
# largest): what the projected steps miss is coefficients they hold there (SGD leaves them at 1e-6), and on other
# fits the point cost up to 2.8x the fit (absolute error, 2,000 x 30 well-conditioned rows: 6.5 -> 18 ms).
POSITIVE_NEAR_BOUND = 1e-2
# _robust_point: L-BFGS-B's runs at most, each from where the last stopped.
ROBUST_POINT_RUNS = 5
# positive_gap on rows wider than its steps (where the point above is not taken): a robust loss's point from at most
# POSITIVE_POINT_EVALS evaluations of the objective and gradient (two reads of X each), and only where
# POSITIVE_POINT_WORK stored values read allow POSITIVE_POINT_MIN_EVALS of them. The reweighted rounds there found no
# decrease at all from an absolute-error SGD fit 13% above the minimum (TF-IDF rows 600 x 150, weights spread 1e6,
# Cauchy outliers; helper-142), where L-BFGS-B found 1% within 60-128 evaluations (four seeds; 400 took 45 ms,
# the fit 31 ms).
POSITIVE_POINT_EVALS = 200
POSITIVE_POINT_WORK = 2**22
POSITIVE_POINT_MIN_EVALS = 50
# An evaluation's cost in stored values read: two reads of X, about four of the rows' length in NumPy's passes
# over the residuals, and the call's own overhead (about 40 us, the reads of 20,000 values). At 2**22 the budget
# reaches 50 evaluations up to about 30,000 stored values (a sparse 600 x 150 at 5%: 133 evaluations, 15-40 ms);
# it cost 0.7 s on a 0.1 s fit of 20,000 x 500 sparse rows at 2**24.
POSITIVE_POINT_OVERHEAD = 20_000


def positive_point_evals(values: int, n: int, k: int) -> int:
    """The evaluations :func:`positive_gap`'s point may take for each of ``k`` targets on ``n`` rows of ``values``
    stored values: ``POSITIVE_POINT_WORK`` over an evaluation's cost, at most ``POSITIVE_POINT_EVALS``."""
    return min(POSITIVE_POINT_EVALS, POSITIVE_POINT_WORK // (k * (2 * values + 4 * n + POSITIVE_POINT_OVERHEAD)))


# robust_gap takes _robust_point on small data where the rounds' bound ends between this fraction of the alarm
# level and it: a bound of a fifth of the alarm was a 4.3% excess (weights spread 1e6, a ridge, polynomial
# columns), while on fits at their minimum the bound is far below (the point cost 3.6 -> 48 ms on a default SGD
# Huber fit of 300 x 10, 4 -> 550 ms for the absolute error's smoothing, taken on every fit).
ROBUST_POINT_FROM = 0.05


def _robust_point(data, s: np.ndarray, W: float, j: int, point: list, alpha, fit_intercept: bool, loss: str,
                  epsilon: float, positive: bool = False, evals: int | None = None) -> float:
    """A robust loss's objective for target ``j`` at a point nearer its minimum (under ``positive``, a feasible one),
    for :func:`robust_gap` and :func:`positive_gap` on small data (as :func:`_positive_exact` for the squared error):
    Huber's loss from L-BFGS-B (Byrd, Lu, Nocedal & Zhu 1995, SciPy's; with the bounds ``w >= 0`` under
    ``positive``), started at the best point the rounds reached (``point``: ``[coef, r, intercept]``); the absolute
    error's through Huber's with a threshold ``ROBUST_POINT_LAD_MU`` times the mean absolute residual (whose minimiser
    is within half the threshold of the absolute error's minimum; HiGHS's linear program took 0.4 s at 2,000 x 30).
    The objective is evaluated exactly from the point's residuals, so the decrease to it is one found, a bound on
    ``f - f*`` whatever the solver's accuracy (inf when not finite). The reweighted rounds' steps fall short where
    the model is poor: under ``positive`` they hold at 0 coefficients that the optimum takes far from it (nearly
    low-rank columns, rank 2-4 plus 1e-3 noise: default SGD, momentum and Adam fits of both losses stopped 1-10%
    above the optimum, silently, 122 of 480); without it, under weights spread 1e6 (polynomial features, a ridge,
    Cauchy noise) momentum, Nesterov, AdaGrad, RMSProp and Adam stopped 3.7-4.8% above Huber's minimum with a bound
    of a fifth of the alarm, silently."""
    import scipy.optimize

    X = data.X
    d = X.shape[1]
    y = data.Y[:, j].astype(np.float64)
    ridge = np.broadcast_to(np.asarray(alpha, dtype=np.float64), (d,))
    # The absolute error's minimum is approached through Huber's with a threshold mu far below the residuals:
    # |r| - mu / 2 <= huber_mu(r) / mu <= |r|, so its minimiser is within mu / 2 of the absolute error's minimum.
    eps = epsilon if loss == "huber" else ROBUST_POINT_LAD_MU * float(s @ np.abs(point[1])) / W
    if not (eps > 0 and np.isfinite(eps)):  # (the absolute error fitted exactly: nothing to find)
        return np.inf
    scale = 1.0 if loss == "huber" else 1.0 / eps  # (huber_mu / mu: the absolute error's scale, for ftol)

    def f(z):
        c, b = z[:d], z[d]
        r = _linear(X, c, b) - y
        psi = s * np.clip(r, -eps, eps) * (scale / W)
        g = np.asarray(X.T @ psi, dtype=np.float64) + ridge * c
        return (_robust_objective(s, W, r, c, 0.0, "huber", eps) * scale + 0.5 * float(c @ (ridge * c)),
                np.append(g, psi.sum() if fit_intercept else 0.0))

    z = np.append(np.maximum(point[0], 0.0) if positive else point[0], point[2] if fit_intercept else 0.0)
    bounds = [(0.0, None) if positive else (None, None)] * d + [(None, None) if fit_intercept else (0.0, 0.0)]
    # L-BFGS-B's line search stalls on these ill-conditioned kinked objectives (a run from the fit's point ended
    # after 10 iterations 2.5% above the minimum, "relative reduction <= factr * eps"); a restart from where it
    # stopped, with its memory cleared, goes on. Its own convergence is not the question, the point's value is
    # (L-BFGS-B reports, it does not warn).
    value = f(z)[0]
    left = evals  # (None: no budget of evaluations)
    for _ in range(ROBUST_POINT_RUNS):
        options = {"maxiter": 20 * (d + 1), "ftol": 1e-15, "gtol": 1e-12}
        if left is not None:
            options["maxfun"] = left
        found = scipy.optimize.minimize(f, z, jac=True, method="L-BFGS-B", bounds=bounds, options=options)
        if not found.fun < value - 1e-12 * abs(value):
            break
        z, value = found.x, float(found.fun)
        if left is not None:
            left -= int(found.nfev)
            if left <= 0:
                break
    coef, intercept = (np.maximum(z[:d], 0.0) if positive else z[:d]), (float(z[d]) if fit_intercept else 0.0)
    coef = coef.astype(X.dtype).astype(np.float64)
    if not (np.all(np.isfinite(coef)) and np.isfinite(intercept)):
        return np.inf
    value = _any_objective(s, W, _linear(X, coef, intercept) - y, coef, alpha, loss, epsilon)
    return value if np.isfinite(value) else np.inf


def _any_objective(s: np.ndarray, W: float, r: np.ndarray, coef: np.ndarray, alpha, loss: str,
                   epsilon: float) -> float:
    """:func:`_robust_objective`, or the squared error's ``sum_i s_i r_i^2 / (2 W)`` plus the ridge."""
    if loss != "squared_error":
        return _robust_objective(s, W, r, coef, alpha, loss, epsilon)
    return 0.5 * float(s @ (r * r)) / W + 0.5 * float(coef @ (alpha * coef))


def _projected_step(data, s, W, coef, r, b, here, alpha, fit_intercept, loss, epsilon, steps, factor):
    """One round of :func:`positive_gap` from the coefficients ``coef`` (``>= 0``; residuals ``r``, intercept
    ``b``, objective ``here``): ``(value, point)``, the best objective at the projected points and that point
    ``[coef, r, b]`` (None where none went below ``here``); None when no step can be taken (an absolute error
    fit exact on every weighted row, a non-finite step). ``factor``: the absolute error's ``mu`` as
    :func:`_robust_terms` takes it."""
    X = data.X
    if loss == "squared_error":
        psi, omega = r, np.ones(X.shape[0])
    else:
        terms = _robust_terms(r, loss, epsilon, s, factor)
        if terms is None:
            return None
        psi, omega = terms
    spsi = s * psi
    grad, model = _reweighted_model(data, spsi, s * omega, W, alpha, fit_intercept)
    g = grad / W + alpha * coef
    # Held at 0: a coefficient whose gradient points out of the feasible set and which the diagonal's step would
    # take past 0 (Bertsekas's epsilon-active set): SGD leaves such coefficients at 1e-6 rather than 0, and a
    # step taking them as free drove one to -0.98, so that every projected point was worse than the fit (35%
    # above the optimum, silent). The candidate points set them to 0 (a feasible point, evaluated exactly).
    held = (g > 0) & (coef <= g * model.inv)
    free = ~held & ((coef > 0) | (g < 0))
    # conjugate gradients on the free coordinates only: a zero preconditioner elsewhere keeps every direction,
    # and so the step, zero there (CG on the free block of the system)
    model.inv = np.where(free, model.inv, 0.0)
    _, delta, delta_b = model.descend(grad, float(spsi.sum()), coef, steps)
    if not (np.all(np.isfinite(delta)) and np.isfinite(delta_b)):
        return None
    base = np.where(held, 0.0, coef)
    # the step's fractions, and the largest that keeps every positive coefficient feasible: on ill-conditioned
    # rows the step crossed 0 at every fraction and the projections were all worse than the fit (10 of 140 fuzz
    # fits 5.5-79% above the optimum, silent), while along the step up to that fraction the model decreases
    crossing = (base > 0) & (delta < 0)
    fractions = list(ROBUST_STEP_FRACTIONS)
    if crossing.any() and (limit := float(np.min(base[crossing] / -delta[crossing]))) < fractions[0]:
        fractions.append(limit)
    here_ridge = 0.5 * float(coef @ (alpha * coef))
    best, taken = 0.0, None
    for tau in fractions:
        moved = np.maximum(base + tau * delta, 0.0).astype(X.dtype).astype(np.float64)  # (the products' step)
        q = _linear(X, moved - coef, tau * float(delta_b))  # the residuals' change to the projected point
        if loss == "squared_error":
            change = float(s @ (q * (r + 0.5 * q)))  # (r + q)^2 / 2 - r^2 / 2, without the cancellation
        else:
            change = float(s @ rho_change(r, q, loss, epsilon))
        value = change / W + (0.5 * float(moved @ (alpha * moved)) - here_ridge)
        if value < best:
            best, taken = value, [moved, r + q, b + tau * float(delta_b)]
    return here + best, taken


def _check_plateau_stop(method: str, params: dict, spec, data, sw, p: np.ndarray, scale: float,
                        reached: bool = False) -> str:
    """Warn when an in-memory fit the plateau rule stopped is demonstrably far from the optimum; with ``reached``
    (the fit reached ``max_epochs`` first, and warns of that), return the bound's sentence for that warning
    instead (:func:`warn_if_far`), ``""`` where it is not far or not checked.

    The rule sees epoch losses only. On a badly conditioned problem (columns far from centred without an
    intercept, or whose scales spread widely under ``alpha > 0`` where one common scale is all the preconditioner
    may use: SparseAdam steps, projected momentum on wide sparse ``X``; nearly collinear columns) a first-order
    rule's loss creeps down so slowly that a
    tenfold cut of the rate changes it by less than the rule's tolerance, and it stops far from the optimum: up to
    1e5 times the optimal loss, found by comparing default fits with an independent optimum. For the squared
    error :func:`memory_gap` bounds that distance from below, for Huber's loss and the absolute error
    :func:`robust_gap`, with ``positive=True`` (where the constrained optimum's gradient is not zero)
    :func:`positive_gap`, and :func:`warn_if_far` warns. Not for AdamW with ``alpha > 0`` (its decoupled decay
    has another fixed point) or CSR with int64 indices. Checked in the space the fit ran in (``precondition``),
    where the objective is the same.
    """
    X = data.X
    if not plateau_checked(params, spec, in_memory=True) or (sp.issparse(X) and (X.indices.dtype != np.int32
                                                                                  or X.indptr.dtype != np.int32)):
        return ""
    # the ridge in the fit's units: one coefficient, or each column's (a per-column scaling, _penalised)
    alpha = params["decay"] if params.get("decay") is not None else (
        0.0 if spec.decoupled_decay else float(spec.weight_decay))
    fit_intercept = bool(params["fit_intercept"])
    target = far = kept = None
    if params.get("positive"):
        parts = [] if data.Y.shape[1] > 1 else None
        f, gain = positive_gap(data, sw, p, alpha, fit_intercept, params["loss"], float(params["epsilon"]), scale,
                               parts)
        if parts:
            f, gain, scale, target = _worst_target(parts, data, sw, fit_intercept, f, gain, scale, params["loss"],
                                                   float(params["epsilon"]))
    elif params["loss"] == "squared_error":
        parts = [] if data.Y.shape[1] > 1 else None
        f, gain = memory_gap(data, sw, p, alpha, fit_intercept, scale, parts)
        if parts:
            f, gain, scale, target = _worst_target(parts, data, sw, fit_intercept, f, gain, scale)
    else:
        points = []
        f, gain = robust_gap(data, sw, p, alpha, fit_intercept, params["loss"], float(params["epsilon"]), scale,
                             points)
        if data.Y.shape[1] > 1:
            f, gain, scale, target = _worst_robust_target(data, sw, p, alpha, fit_intercept, params, f, gain, scale)
        elif params["loss"] == "huber" and not (np.isfinite(gain) and gain > alarm_level(f, scale)):
            f, gain, scale, far, kept = _far_rows_capped(data.X, data.Y[:, 0], sw, alpha, float(params["epsilon"]),
                                                         points[0], f, gain, scale, fit_intercept)
    unit = None
    if np.isfinite(gain) and gain > alarm_level(f, scale):
        rounding = rounding_loss(data.Y, sw, params["loss"], float(params["epsilon"]), kept)
        if gain <= (rounding.sum() if target is None else rounding[target]):
            if data.Y.dtype == np.float64:
                # Within the float64 targets' own rounding: no evidence of an unfinished fit. A constant target's
                # scale is 0, and Huber fits of y = 5 that SGD ended within 2 units of its last place (an objective
                # of 4e-31) warned "at least 1 of its value above its minimum" (helper-139).
                return ""
            unit = float(np.max(np.spacing(np.abs(data.Y if kept is None else data.Y[kept]))))  # (the wording)
    return warn_if_far(method, f, gain, scale, loss=params["loss"], reweighted=params["loss"] != "squared_error",
                       target=target, far=far, unit=unit, positive=bool(params.get("positive")), reached=reached)


def rounding_loss(Y: np.ndarray, w, loss: str, epsilon: float, rows: np.ndarray | None = None) -> np.ndarray:
    """Per target, the loss of residuals of 1.5 units in the last place of the targets in their dtype (float32:
    the fit's precision), averaged with the weights ``w`` (None: ones) over the rows, on ``rows`` only (a mask)
    when given: how far a fit's loss can be above its minimum for rounding alone, half a unit the targets' own
    and a unit the intercept's (of the targets' size, it loses steps under half its unit). Beside targets of 1e7
    (units of 1) the plateau check, in float64, found decreases of half its objective that fitted the rounding,
    and warned at fits whose loss on the float64 targets was below its value at their minimiser; beside targets
    of 1e9 a fit stopped a whole unit (64) off, its intercept stuck."""
    u = 1.5 * np.spacing(np.abs(Y)).astype(np.float64)
    per = u * u / 2.0 if loss == "squared_error" else robust_rho(u, loss, epsilon)
    weights = np.ones(Y.shape[0]) if w is None else np.asarray(w, dtype=np.float64)
    if rows is not None:
        weights = np.where(rows, weights, 0.0)
    return weights @ per / Y.shape[0]


def _far_rows_capped(X, y: np.ndarray, sw, alpha, epsilon: float, point: tuple, f: float, gain: float,
                     scale: float, fit_intercept: bool = True) -> tuple[float, float, float, int | None,
                                                                        np.ndarray | None]:
    """``(f, gain, scale, far, kept)`` for :func:`warn_if_far` of a one-target Huber fit (targets ``y``) judged
    without its ``far`` rows far out (``kept`` the others, a mask), those whose residual at the fit is beyond
    ``FAR_ROW_CAP`` times the smaller of the residuals' clipped mean (:func:`residual_scale`) and their
    ``FAR_ROW_QUANTILE`` quantile: the objective of the other rows at the fit, its decrease to the last point
    :func:`robust_gap`'s rounds reached (``point``: the residuals and coefficients at the fit and at that point)
    or to the best constant model (their median; 0 without an intercept) where that lowers the whole objective,
    whichever is larger, and the rule's loss scale shrunk by the ratio of that objective to the whole, at least
    ``PLATEAU_FLOOR`` times the other rows' loss about their median. Unchanged (``far`` and ``kept`` None) where
    no row is that far.

    A far row's term, ``epsilon |r| / n``, dominates the objective and the rule's scale, and the alarm, relative
    to them, let default fits stop with the other rows' loss 10-1e6 times its value at the minimiser, silently
    (targets offset by 1e4 beside an outlier of 1e12; five rows of 1e8 among 300, too many for the clipped mean
    to leave out). Its decrease, that term moving, is left out too: measured on the whole objective it warned at
    fits whose other rows' loss was below its value at the minimiser. Judged only where the whole objective's
    check does not warn: rows far out at a fit may be rows it has not yet followed (a column on 3% of the rows
    with an effect of 1e3), which that check sees. The point is taken in the fit's precision (``X``'s dtype):
    float32 weights beside targets of 1e7 hold the intercept to the nearest unit, and the check, in float64,
    found decreases no float32 fit can reach and warned at fits whose other rows were below their minimiser's
    loss. Newton's stop test caps far residuals alike. Huber's loss only: the absolute error's fits whose other
    rows fit exactly (residuals of 1e-6 beside a row off by 20) were measured against an objective of their own
    rounding's size, and warned at the optimum."""
    r, coef, coef_moved, r_moved, b_moved = point
    if X.dtype != np.float64:
        coef_moved = coef_moved.astype(X.dtype).astype(np.float64)
        r_moved = _linear(X, coef_moved, float(np.asarray(b_moved, dtype=X.dtype))) - y.astype(np.float64)
    a = np.abs(r)
    w = np.ones(r.shape[0]) if sw is None else sw.astype(np.float64)
    with np.errstate(over="ignore", invalid="ignore"):
        cap = FAR_ROW_CAP * min(residual_scale(a[:, None], w), _weighted_quantile(a, w, FAR_ROW_QUANTILE))
        if not (np.isfinite(cap) and cap > 0) or not np.any(a > cap):
            return f, gain, scale, None, None
        n = float(r.shape[0])
        kept = np.where(a <= cap, w, 0.0)
        near = _robust_objective(kept, n, r, coef, alpha, "huber", epsilon)
        reached = _robust_objective(kept, n, r_moved, coef_moved, alpha, "huber", epsilon)
        median = _weighted_quantile(y, kept, 0.5)
        null = float(kept @ robust_rho(y - median, "huber", epsilon)) / n
        constant = median if fit_intercept else 0.0
        origin = float(kept @ robust_rho(y - constant, "huber", epsilon)) / n
        whole = float(w @ robust_rho(y - constant, "huber", epsilon)) / n
    if not (np.isfinite(near) and 0 < near < f):
        return f, gain, scale, None, None
    # Beside rows of 1e25 the reweighted step came back 0, and fits whose other rows' loss was 1e16 times its
    # minimum (coefficients of 4e13) found no decrease: the constant model's is one where it lowers the whole
    # objective too, as the reweighted point does (the minimiser itself may fit the other rows worse than a
    # constant: 3 far rows among 20 beside one-hot columns, no intercept, 8.6 times).
    found = max(near - reached if np.isfinite(reached) else 0.0, near - origin if whole < f else 0.0, 0.0)
    return (near, found, max(scale * near / f, PLATEAU_FLOOR * null), int(np.count_nonzero((a > cap) & (w > 0))),
            a <= cap)


# _far_rows_capped: residuals beyond this many times the smaller of their clipped mean and this quantile count
# as far out (the clipped mean keeps rows that hold more than 1 / FAR_ROW_CAP of the weight, the quantile leaves
# out no more than 1 - FAR_ROW_QUANTILE of it; a heavy-tailed noise's rows are rarely that far: 2.6e-3 of a
# Cauchy sample's are beyond 100 times its 75th percentile). The 90th percentile left fits beside far rows on
# 10-25% of the rows silent, 4e3-1e5 times their other rows' minimal loss; the median warned at a fit 0.08%
# above the whole minimum (a column on 1.2% of the rows, its rows left out as far, an effect of 16).
FAR_ROW_CAP = 100.0
FAR_ROW_QUANTILE = 0.75


def _worst_robust_target(data, sw, p: np.ndarray, alpha, fit_intercept: bool, params: dict, f: float, gain: float,
                         scale: float):
    """:func:`_worst_target` for Huber's loss and the absolute error: each target's :func:`robust_gap` (one more
    reweighted check a target), at its own scale, ``PLATEAU_FLOOR`` times its best constant model's loss. Judged
    on the sum alone, a target 1e5 times smaller than the others was left 7 times its optimal Huber loss above it
    by RMSProp's default fit (absolute error: 1.8 times), silently."""
    d, k = data.X.shape[1], data.Y.shape[1]
    coef, intercept = split_params(p, d, k)
    loss, epsilon = params["loss"], float(params["epsilon"])
    null = _target_null_losses(data, sw, fit_intercept, loss, epsilon)
    parts = []
    for j in range(k):
        one = dataclasses.replace(data, Y=np.ascontiguousarray(data.Y[:, j : j + 1]))
        p_j = np.concatenate([coef[j], intercept[j : j + 1]]) if fit_intercept else np.array(coef[j])
        parts.append(robust_gap(one, sw, p_j, alpha, fit_intercept, loss, epsilon, target_scale(null[j])))
    return worst_target(parts, null, f, gain, scale)


def _worst_target(parts: list, data, sw, fit_intercept: bool, f: float, gain: float, scale: float,
                  loss: str = "squared_error", epsilon: float = 0.0):
    """``(f, gain, scale, target)`` for :func:`warn_if_far` of a multi-target fit whose ``parts`` are each
    target's ``(f_j, gain_j)`` (the squared error's, or :func:`positive_gap`'s for ``loss``): the sum's, or
    target ``j``'s own when its bound is further beyond its alarm level, its scale ``PLATEAU_FLOOR`` times its
    best constant model's loss (:func:`fastopt._iterative_lr.null_loss`, the rule's floor). The rule judges the
    summed loss, which a target of small scale does not move: beside a target 1e4 times larger, RMSProp's default
    fit left it 7.8 times its optimal loss above it, silently."""
    return worst_target(parts, _target_null_losses(data, sw, fit_intercept, loss, epsilon), f, gain, scale)


def _target_null_losses(data, sw, fit_intercept: bool, loss: str, epsilon: float) -> list:
    """Each target's best constant model's loss (:func:`fastopt._iterative_lr.null_loss`), in memory."""
    rows = all_rows(data.Y.shape[0])
    return [null_loss(dataclasses.replace(data, Y=data.Y[:, j : j + 1]), rows, sw, LOSSES[loss], epsilon,
                      fit_intercept) for j in range(data.Y.shape[1])]


def target_scale(null: float) -> float:
    """A target's loss scale for its own plateau check: ``PLATEAU_FLOOR`` times its best constant model's loss."""
    return max(PLATEAU_FLOOR * float(null), np.finfo(np.float64).tiny)


def worst_target(parts: list, null, f: float, gain: float, scale: float):
    """:func:`_worst_target`'s choice from each target's ``(f_j, gain_j)`` and best constant model's loss
    ``null[j]`` (in memory, or over a stream's passes)."""
    def beyond(f_j, gain_j, scale_j):  # the bound over the alarm level (0: nothing left, an exact fit)
        level = alarm_level(f_j, scale_j)
        return gain_j / level if level > 0 else 0.0

    worst, ratio = (f, gain, scale, None), beyond(f, gain, scale)
    for j, (f_j, gain_j) in enumerate(parts):
        scale_j = target_scale(null[j])
        if beyond(f_j, gain_j, scale_j) > ratio:
            worst, ratio = (f_j, gain_j, scale_j, j), beyond(f_j, gain_j, scale_j)
    return worst


def plateau_checked(params: dict, spec, in_memory: bool = False) -> bool:
    """Whether a plateau stop of this fit is checked, in memory (:func:`_check_plateau_stop`) or over a stream's
    or Dask fit's passes: not AdamW with ``alpha > 0``, nor ``positive=True`` over passes (in memory:
    :func:`positive_gap`)."""
    return (in_memory or not params.get("positive")) and not (spec.decoupled_decay and spec.weight_decay)


# The exact solver a plateau stop's warning names, by loss (warn_if_far).
EXACT_SOLVER = {
    "squared_error": "For the exact least-squares fit use solver='normal' (or 'cg' for large sparse X)",
    "huber": "For the exact Huber fit use solver='newton' in fit (dense or sparse X, or Dask arrays)",
    "absolute_error": "For the exact absolute-error fit use solver='newton' in fit (dense or sparse X in memory)",
}


# ... and under positive=True.
EXACT_POSITIVE = {
    "squared_error": "For the exact non-negative least-squares fit use solver='normal'",
    "huber": "No exact solver takes positive=True with Huber's loss: raise max_epochs, or fit an intercept",
    "absolute_error": "No exact solver takes positive=True with the absolute error: raise max_epochs, or fit an "
                      "intercept",
}


def alarm_level(f: float, scale: float) -> float:
    """The lower bound on the distance from the optimum above which :func:`warn_if_far` warns:
    ``PLATEAU_CHECK_RTOL`` times the loss scale or the objective ``f``, the larger."""
    return PLATEAU_CHECK_RTOL * max(scale, f)


def warn_if_far(method: str, f: float, gain: float, scale: float, loss: str = "squared_error",
                reweighted: bool = False, target: int | None = None, far: int | None = None,
                unit: float | None = None, positive: bool = False, reached: bool = False) -> str:
    """The warning of a plateau stop whose lower bound ``gain`` on the distance from the optimum is above
    ``PLATEAU_CHECK_RTOL`` times the loss scale (the rule's ``max(best loss, PLATEAU_FLOOR * null loss)``, or
    the objective ``f`` itself): only an unfinished fit can be that far. It names the exact solver of ``loss``
    and how the bound was found (``reweighted``: :func:`robust_gap`'s step, else :func:`plateau_gap`'s), and the
    ``far`` rows left out of the objective judged (:func:`_far_rows_capped`). ``unit``: the bound is within the
    loss of the targets' rounding to float32 (:func:`rounding_loss`), a unit in the last place of the largest
    being ``unit``, and the warning names the precision, not the conditioning.

    ``reached``: the fit did not stop but reached ``max_epochs``, which its own warning says; the bound's
    sentence for that warning is returned instead of warned (``""`` where the fit is not that far), so that the
    user sees how far the fit is, not only that it did not settle. Its ``scale`` is then the rule's floor only:
    the best epoch's loss, averaged over the steps of an epoch that may have begun far off, can be far above the
    fit's objective (41 against 0.6 after one epoch of SGD), and the bound is judged against the objective."""
    scale = max(scale, f)
    how = ("a point found from the fit by reweighted least-squares steps or, on small data, L-BFGS-B" if reweighted
           else "a lower bound from a few conjugate-gradient steps on it")
    cause = ("the problem is too ill-conditioned for a first-order rule to finish (e.g. columns far from centred "
             "without an intercept, column scales spread widely under alpha > 0, nearly collinear columns)")
    if method == "rmsprop":
        # its steps, normalised by a decaying average of the squared gradient, stay about the rate's size on a
        # column few rows store: one-hot levels of at most ~15 rows in 15,000 left it 9-66% above the optimum,
        # where the other rules finished within 0.2% (README, "Defaults that converge")
        cause = ("RMSProp's normalised steps keep it off the minimum on columns that few rows store (such as rare "
                 "one-hot levels; solver='adam', 'adagrad' or 'sgd' finish there), or " + cause)
    # (under positive=True only the closed form is exact, and for the squared error only: Newton and the Krylov
    # solvers refuse the constraint)
    advice = f"{(EXACT_POSITIVE if positive else EXACT_SOLVER)[loss]}; or standardise X."
    if unit is not None:
        cause = (f"the targets, rounded to float32 as X is, are held to units of about {unit:.2g} (in the last "
                 "place of the largest), and so is the fit: a decrease this small may be that rounding's")
        advice = "Pass X as float64 to fit these targets to their own precision."
    if not (np.isfinite(gain) and gain > alarm_level(f, scale)):
        return ""
    bound = (f"training objective{'' if target is None else f' of target {target}'}"
             f"{'' if far is None else f' without the {far} rows far out'} is still at least {gain / scale:.2g} of its "
             f"value above its minimum ({how})")
    if reached:
        # (how the fit ended, and that more epochs may help, is the max_epochs warning's; the cause is not known)
        return f" The {bound}{'' if unit is None else f'; {cause}'}. {advice}"
    _warn(
        f"solver={method!r} stopped at a loss plateau, but the {bound}: {cause}"
        f"{'' if target is None else '; the rule judges the targets summed, so scale them alike'}. {advice}",
        ConvergenceWarning,
    )
    return ""


class RatePlateau(Stopping):
    """``schedule="plateau"``: a rate cut on every plateau of the monitored loss, and a stop once a cut no longer
    helps (the closed-loop counterpart of ``torch.optim.lr_scheduler.ReduceLROnPlateau`` and of scikit-learn
    MLP's ``learning_rate="adaptive"``).

    A constant rate leaves the iterates of a minibatch method in a noise ball around the optimum whose excess
    loss grows with the rate (Goodfellow, Bengio & Courville, *Deep Learning*, 2016, sec. 8.3.1; Bottou, Curtis
    & Nocedal, *SIAM Review* 60, 2018, sec. 4), so the loss levels off above the optimum. With the scale
    ``S = max(best, PLATEAU_FLOOR * null_loss)``, an epoch falls when its loss is below the previous epoch's by
    more than ``PLATEAU_RTOL * S``, or by less after a fall of its own when the series of shrinking falls,
    projected geometrically with their last ratio ``r <= PLATEAU_SLOW_RATIO`` as ``fall * r / (1 - r)``, is worth
    more than ``PLATEAU_STOP_RTOL * S`` (the bias phase of badly conditioned directions, where gradient methods
    on a quadratic reduce each mode by a constant factor per epoch: Nocedal & Wright, *Numerical Optimization*,
    2006, sec. 3.3; a noise floor rises about every other epoch and breaks the series); the first such small fall
    after a large one or after a cut is given one epoch to measure the ratio. ``PLATEAU_PATIENCE`` epochs in a
    row that do not fall make a plateau (the first epoch after a cut is a cooldown and always falls). At a
    plateau:

    - if a previous cut exists, the best loss since it differs from the best before it by less than
      ``PLATEAU_STOP_RTOL * S`` (either way) and the last epoch is within that of it too (or the rate is below
      ``PLATEAU_MIN_FACTOR`` times the base rate), training stops: a rate ten times smaller did not pass this
      floor, so it is not the minibatch noise ball of the larger rate;
    - otherwise the rate is multiplied by ``PLATEAU_FACTOR`` and training goes on.

    The first plateau therefore always cuts the rate, and a stop certifies that the last cut bought less than
    ``PLATEAU_STOP_RTOL`` of the loss: when the noise ball's excess is proportional to the rate, the excess left
    at the stop is about a tenth of that. Slow progress whose projected rest is below ``PLATEAU_STOP_RTOL * S``
    is cut like a noise floor: it is within what a stop tolerates.
    ``tol=None`` never stops: once the rule would stop, the rate stays where it is until ``max_epochs``.

    In rounds of epochs as :class:`Stopping` ('epoch' above means round); the rate changes only between rounds.
    """

    def __init__(self, lr0: float, floor: float, stop: bool, keep_best: bool, epochs_per_round: int = 1):
        super().__init__(0.0 if stop else None, PLATEAU_PATIENCE, keep_best, epochs_per_round)
        self.lr0 = self.lr = float(lr0)
        self.floor = float(floor)
        self.previous, self.last_fall = np.inf, np.nan
        self.cut_best, self.best_since_cut, self.cuts, self.settled = np.inf, np.inf, 0, False

    def update(self, current: float, params: np.ndarray | None) -> bool:
        """Record one epoch's monitored loss; sets :attr:`lr` for the next epoch; True when training should stop.
        Within a round (``epochs_per_round > 1``) the epoch is only added to the round's mean, which is judged
        when the round is complete. ``keep_best`` keeps the parameters of the best epoch (not round)."""
        current = self._round(current, params)
        if current is None:
            return False
        scale = max(abs(current if np.isinf(self.best) else self.best), self.floor)
        # Progress is judged against the previous epoch: while the bias of the start dominates, the epoch loss
        # falls monotonically; on the noise ball it goes up about every other epoch.
        fall = self.previous - current
        falling = fall > PLATEAU_RTOL * scale or (fall > 0 and self._slow_progress(fall, scale))
        self.last_fall = fall if fall > 0 else np.nan
        self.no_improvement = 0 if falling else self.no_improvement + 1
        self.previous = current
        self.best_since_cut = min(self.best_since_cut, current)
        self.best = min(self.best, current)
        if self.no_improvement < self.patience:
            return False
        self.no_improvement = 0
        # A cut that moved the loss's level by less than PLATEAU_STOP_RTOL * S, either way, found no noise floor
        # to pass (a level worse than the best before the cut means the earlier rate was still oscillating), and
        # the last epoch must be that level too (not an oscillation away from a lucky best).
        if self.settled:
            return False
        flat = abs(self.cut_best - self.best_since_cut) < PLATEAU_STOP_RTOL * scale \
            and current - self.best_since_cut < PLATEAU_STOP_RTOL * scale
        if flat or self.lr < PLATEAU_MIN_FACTOR * self.lr0:
            # tol=None trains on to max_epochs at this rate: further cuts would only freeze the iterates.
            self.settled = self.tol is None
            self.stopped = not self.settled
            return self.stopped
        self.cut_best, self.best_since_cut = self.best, np.inf
        self.cuts, self.lr = self.cuts + 1, self.lr * PLATEAU_FACTOR
        self.previous = np.inf  # a cooldown epoch: the first epoch at the new rate is not judged
        return False

    def _slow_progress(self, fall: float, scale: float) -> bool:
        return slow_series(fall, self.last_fall, scale)

    def warn_unless_stopped(self, method: str, max_epochs: str, note: Callable[[], str] = str) -> None:
        if self.tol is not None and not self.stopped:
            # (with no cut yet, "the last cut still lowered the loss" spoke of a cut that never happened)
            why = (f"the rate was cut {self.cuts} times, to {self.lr:.3g}, and the last cut still lowered the loss"
                   if self.cuts else f"the loss was still falling at the first rate, {self.lr:.3g}, never cut")
            _warn(
                f"solver={method!r} reached max_epochs={max_epochs} before the plateau rule stopped ({why}); "
                f"increase max_epochs.{note()}",
                ConvergenceWarning,
            )


# The adaptive rules divide each step by the root of a second-moment estimate plus eps (AdaGrad: of the summed
# squared gradients). Where eps exceeds that root on most coordinates (targets of scale 1e-12 give gradients of
# that scale), their steps shrink by as much, which learning_rate="auto", set from the coefficients' scale, does
# not see: default Adam then ended 4,100 times above the optimum, still 281 times after 1,000 epochs, and the
# warning advised more epochs. The slot of the estimate in the optimizer state, per rule.
SECOND_MOMENT_SLOT = {"adagrad": 0, "rmsprop": 0, "adam": 1, "adamw": 1}


def eps_note(method: str, params: dict, state) -> str:
    """A sentence for the warning of an adaptive rule's fit that did not settle, where ``eps`` exceeds the root of
    the second-moment estimate (bias-corrected for Adam) on most coordinates; else ``""``."""
    slot = SECOND_MOMENT_SLOT.get(method)
    if slot is None or state is None or state.opt_state is None or state.opt_state.shape[0] <= slot:
        return ""
    eps = float(params["eps"])
    second = state.opt_state[slot].astype(np.float64)
    if slot == 1 and state.t > 0:
        second = second / -np.expm1(state.t * np.log1p(-float(params["beta2"])))  # 1 - beta2^t
    with np.errstate(invalid="ignore"):
        root = float(np.median(np.sqrt(np.maximum(second, 0.0)))) if second.size else np.nan
    if not root < eps:
        return ""
    shrink = f"up to {eps / root:.2g} times" if root > 0 else "to nothing but eps's own scale"
    return (f" eps={eps:g} exceeds the root of most coordinates' second-moment estimate (median {root:.2g}), "
            f"which shrinks their steps {shrink}: lower eps (below {root / 10:.2g}), or fit a rescaled y (y / s, "
            "then multiply coef_ and intercept_ by s).")


def slow_series(fall: float, last_fall: float, scale: float) -> bool:
    """Whether a fall of less than ``PLATEAU_RTOL * scale`` after a fall ``last_fall`` (NaN: none) still counts.

    It is the bias phase of badly conditioned directions when the falls shrink geometrically (a quadratic's
    slowest mode decays by a constant ratio r per epoch) and the rest of the series, fall * r / (1 - r), is
    worth more than a cut may buy before the rule stops. A noise floor rises about every other epoch, so it
    breaks the series. The first small fall after a large one (or after the cooldown) has no ratio yet: it is
    given one more epoch to measure it."""
    if not np.isfinite(last_fall) or last_fall > PLATEAU_RTOL * scale:
        return True
    ratio = min(fall / last_fall, PLATEAU_SLOW_RATIO)
    return fall * ratio / (1.0 - ratio) > PLATEAU_STOP_RTOL * scale


def schedule_name(params: dict) -> str:
    """The schedule a fit runs: ``schedule="auto"`` is ``"plateau"`` with ``learning_rate="auto"`` and
    ``"constant"`` with a numeric rate (so an explicit rate keeps the meaning it had before the plateau rule)."""
    if params["schedule"] == "auto":
        return "plateau" if params["learning_rate"] == "auto" else "constant"
    return params["schedule"]


def make_stopping(params: dict, st: IterState, validation: bool, steps_per_epoch: int = 0) -> Stopping:
    """The stopping rule of ``fit`` (and of streamed fits) for ``params``: a :class:`RatePlateau` for
    ``schedule="plateau"``, else a :class:`Stopping` on ``tol`` and ``n_iter_no_change``, either in rounds of
    :func:`epochs_per_round` epochs of ``steps_per_epoch`` steps. The monitored loss is the training loss, or
    ``1 - R^2`` on the validation rows (whose null model scores 1) when ``validation``."""
    per = epochs_per_round(steps_per_epoch)
    if schedule_name(params) == "plateau":
        floor = PLATEAU_FLOOR * (1.0 if validation else st.null_loss)
        return RatePlateau(st.lr0, floor, params["tol"] is not None, keep_best=validation, epochs_per_round=per)
    return Stopping(params["tol"], params["n_iter_no_change"], keep_best=validation, epochs_per_round=per)


def epochs_per_round(steps_per_epoch: int) -> int:
    """Whole epochs in a round of the stopping rules (:class:`Stopping`): enough for ``ROUND_STEPS``
    minibatch steps at ``steps_per_epoch`` steps an epoch (1 when that is unknown, 0)."""
    if steps_per_epoch < 1:
        return 1
    return -(-ROUND_STEPS // int(steps_per_epoch))


# partial_fit under schedule="plateau" (PassWatch): a call compares models on at most this many of its rows
# (evenly spaced), before it trains on them; one product of those rows with three coefficient sets.
PASS_WATCH_ROWS = 2048
# A difference of two models' mean loss over a call's rows counts only beyond this many of its standard errors.
PASS_WATCH_Z = 2.0
# Once settled, this many rounds in a row measurably worse than the settled point cut again (Adam's steps grow
# as its second moments shrink: at a settled rate its loss crept up from 4e-4 to 6e-3 above the optimum over 100
# calls). One round beyond two standard errors happens by chance one round in 44.
PASS_WATCH_RISES = 3
# Chunks a watch remembers (by a digest of their rows) to tell a repeated chunk from a new one, and the most an
# epoch holds (a stream of new chunks would otherwise grow one without end).
PASS_WATCH_KEYS = 1024


@dataclasses.dataclass
class PassWatch:
    """``schedule="plateau"`` across ``partial_fit`` calls.

    A call sees one chunk, so the loss the in-memory rule judges, an epoch's loss over the same rows every
    epoch, is there only when the calls go over the same chunks again; and two chunks' losses differ by their
    own spread (4.5% of the loss between chunks of 1,000 rows of one distribution), far above the falls the rule
    judges (``PLATEAU_RTOL``, 1e-4 of it). Each call therefore evaluates, on its own rows (``PASS_WATCH_ROWS`` of
    them at most) before it trains on them, the objective at the current parameters, and knows its chunk again
    by a digest of those rows (:func:`chunk_key`):

    - **Repeated chunks** (once a chunk comes again; ``plateau`` is then set): an epoch is a run of distinct
      chunks, its loss the rows-weighted mean of their objectives at their calls, and :class:`RatePlateau` judges
      the epochs as in memory (its stop settles the rate: later calls keep it). Each chunk is compared with
      itself a whole epoch apart, between models equally long past their last step on it: a model compared with
      the previous call's on the next chunk is fresher on it the more recent its own step there (on the hashed
      design, that comparison found every call worse than the one before while the training objective fell).
    - **New chunks** (a stream of new rows): the objective is evaluated at two more parameter vectors, before
      the previous call (``before``) and at the last cut (``ref``); their differences over the same rows are
      paired (the chunk's spread cancels) and come with a standard error from the rows' spread. In rounds of
      calls of at least ``ROUND_STEPS`` steps: the previous round *falls* when now is below before by more than
      ``PASS_WATCH_Z`` standard errors and by ``PLATEAU_RTOL`` of the loss, or less in a geometric series of
      falls worth ``PLATEAU_STOP_RTOL`` (as :class:`RatePlateau`), the first round after a cut a cooldown; a round
      that does not fall cuts the rate by ``PLATEAU_FACTOR``, unless a cut was made and the gain since it is
      within ``PLATEAU_STOP_RTOL`` of the loss or ``PASS_WATCH_Z`` standard errors of 0: then the rate settles;
      ``PASS_WATCH_RISES`` rounds in a row measurably worse than the settled point cut again. Differences the
      rows cannot resolve count neither as falls nor as gains, so the rule settles rather than cut the rate
      towards 0.
    """

    lr0: float
    lr: float
    floor: float
    per_round: int
    before: np.ndarray
    ref: np.ndarray | None = None
    cuts: int = 0
    settled: bool = False
    cooldown: bool = False
    last_fall: float = np.nan
    calls: int = 0
    sums: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(5))
    rises: int = 0
    seen: dict = dataclasses.field(default_factory=dict)  # chunk keys, oldest first (values unused)
    epoch: tuple = (frozenset(), 0.0, 0.0, 0)  # the current epoch's keys, loss sum, rows and steps
    plateau: RatePlateau | None = None
    # (vector, penalty key, penalty) for before and ref: their ridge terms, O(d) apiece, taken once (never
    # written again, the vectors keep their terms while the penalty's hyperparameters stay; see _watched)
    penalties: tuple = ()

    def copied(self) -> PassWatch:
        """A copy to record a call in (the parameter vectors shared: they are rebound, never written), so that a
        call that fails leaves the state's watch as it was."""
        return dataclasses.replace(self, seen=dict(self.seen), plateau=copy.copy(self.plateau))

    def record(self, key: bytes, stats: np.ndarray, n_rows: int, n_steps: int, now: np.ndarray) -> float:
        """Record a call's chunk ``key``, ``n_rows`` and ``n_steps``, and its comparison ``stats``
        (:func:`pass_comparison`); the rate of this call. ``now`` is the current parameter vector."""
        keys, loss, rows, steps = self.epoch
        if self.plateau is None and key in self.seen:  # a chunk again: from now on calls go over chunks in epochs
            self.plateau = RatePlateau(self.lr0, self.floor, stop=False, keep_best=False,
                                       epochs_per_round=epochs_per_round(steps))
            self.plateau.lr, self.plateau.cuts = self.lr, self.cuts
        if self.plateau is not None:
            if key in keys and rows > 0:  # the epoch is complete
                self.plateau.update(loss / rows, None)
                self.lr, self.cuts, self.settled = self.plateau.lr, self.plateau.cuts, self.plateau.settled
                keys, loss, rows, steps = frozenset(), 0.0, 0.0, 0
        else:
            self.lr = self.judge(stats, now)
        self.epoch = (keys, loss, rows, steps)
        self.remember(key, stats[0], n_rows, n_steps)
        return self.lr

    def remember(self, key: bytes, f: float, n_rows: int, n_steps: int) -> None:
        """Add a call's chunk ``key`` (its objective ``f``, ``n_rows`` and ``n_steps``) to the current epoch and to
        the chunks seen (the most recent ``PASS_WATCH_KEYS`` of them)."""
        keys, loss, rows, steps = self.epoch
        if len(keys) >= PASS_WATCH_KEYS:  # a stream of new chunks (or a longer cycle): an epoch of this many
            keys, loss, rows, steps = frozenset(), 0.0, 0.0, 0
        if np.isfinite(f):
            self.epoch = (keys | {key}, loss + n_rows * f, rows + n_rows, steps + n_steps)
        self.seen.pop(key, None)
        self.seen[key] = None
        if len(self.seen) > PASS_WATCH_KEYS:
            del self.seen[next(iter(self.seen))]

    def judge(self, stats: np.ndarray, now: np.ndarray) -> float:
        """Record one call's comparison of new rows, ``stats`` (:func:`pass_comparison`: the objective now, the
        fall since ``before`` and the gain since ``ref`` with their variances); the rate of this call. ``now`` is
        the current parameter vector (a cut's ``ref``). A non-finite comparison is not judged (the call's pass
        names bad input, or diverges)."""
        if not np.all(np.isfinite(stats)):
            return self.lr
        self.sums, self.calls = self.sums + stats, self.calls + 1
        if self.calls < self.per_round:
            return self.lr
        level, fall, var_fall, gain, var_gain = self.sums / self.per_round
        n = self.per_round  # the round's means: variances of a mean over n calls
        self.sums, self.calls = np.zeros(5), 0
        scale = max(abs(level), self.floor)
        within = max(PLATEAU_STOP_RTOL * scale, PASS_WATCH_Z * np.sqrt(var_gain / n))
        if self.settled:
            self.rises = self.rises + 1 if gain < -within else 0
            if self.rises < PASS_WATCH_RISES or self.lr < PLATEAU_MIN_FACTOR * self.lr0:
                return self.lr
            self.settled, self.rises = False, 0  # measurably worse than where it settled, round after round: cut
        elif self.cooldown:
            self.cooldown, self.last_fall = False, np.nan
            return self.lr
        else:
            resolved = fall > PASS_WATCH_Z * np.sqrt(var_fall / n)
            falling = resolved and (fall > PLATEAU_RTOL * scale or slow_series(fall, self.last_fall, scale))
            self.last_fall = fall if resolved else np.nan
            if falling:
                return self.lr
            if self.ref is not None and (abs(gain) <= within or self.lr < PLATEAU_MIN_FACTOR * self.lr0):
                self.settled, self.ref = True, now
                return self.lr
        self.lr, self.cuts, self.cooldown, self.ref = self.lr * PLATEAU_FACTOR, self.cuts + 1, True, now
        return self.lr


def chunk_key(X, Y: np.ndarray, shape: tuple) -> bytes:
    """A digest of a call's chunk of ``shape`` by its compared rows ``X``, ``Y``: the targets and, of the
    features, the first column (dense) or the first stored values (sparse). Exact bytes, so the same rows give
    the same key however they are laid out in memory."""
    h = hashlib.sha1(usedforsecurity=False)  # a digest, not a secret: the fastest in hashlib (hardware SHA)
    h.update(np.asarray(shape, dtype=np.int64).tobytes())
    h.update(np.ascontiguousarray(Y).tobytes())
    if sp.issparse(X):
        h.update(np.ascontiguousarray(X.indptr).tobytes())
        h.update(np.ascontiguousarray(X.indices[:1024]).tobytes())
        h.update(np.ascontiguousarray(X.data[:1024]).tobytes())
    elif X.shape[1]:  # one column: each strided read of one costs a cache miss a row
        h.update(np.ascontiguousarray(X[:, 0]).tobytes())
    return h.digest()


def rate_guard(st: IterState, data, sw, params: dict) -> None:
    """Lower the rate of a later ``partial_fit`` call of SGD or a momentum rule whose rows are heavier than those
    the rate was taken from (``st.basis``, the first call's): a weight or a row norm beyond the first chunk's
    made a minibatch holding it step by its multiple of the typical step, and the sequence diverged (weights
    ``10^U(-4, 4)`` over four chunks, whose first set the map's column scales; rows 30-100 times the others' size
    in a later chunk; rows of a table sorted by a column the first chunk centred).

    On the rows :class:`PassWatch` compares on (:func:`watch_rows`; mapped, their weights of mean 1), with ``c_i``
    their weighted curvatures: ``L`` is the first call's, or a lower bound of these rows' Hessian's largest
    eigenvalue when larger, ``max_i c_i / m`` over ``m`` rows, ``|mu|^2`` (``mu`` their mean with the intercept's
    1; the Hessian is their covariance plus ``mu mu^T``) or, for a call of more than one minibatch (several steps
    on these rows alone), its largest diagonal entry, a column's mean square (a one-hot level that a small first
    chunk held a few times: its scale, from those few, made the level's rows of later chunks several times its
    curvature there, and default SGD diverged in the second call on dense rows of a numeric column beside 50
    levels, chunks of 400, 3,000, 100 and 2,048 rows; on chunks of at most a minibatch, one step a call, the
    bound only slowed the fuzz's fits). The critical rate's inverse,
    ``(R^2 + ridge + (b - 1) L) / b`` (:func:`fastopt._iterative_lr.curvature_spread`), or ``L`` for a full batch (a
    call of at most ``batch_size`` rows), is compared with the largest so far; beyond twice it (the critical
    rate's own margin to divergence, so that chunks of one distribution do not move the rate), it becomes the
    largest, and the rate drops by the ratio of the first to it (``IterState.rate_factor``), for this call and
    the later ones."""
    n, b = data.X.shape[0], int(params["batch_size"])
    rows = watch_rows(n)
    w = None
    if sw is not None:
        w = np.asarray(sw[rows], dtype=np.float64)
        if not w.mean() > 0:
            return
        w = w / w.mean()
    basis = st.basis
    with np.errstate(over="ignore", invalid="ignore"):  # non-finite X: the epoch names it
        c = row_curvatures(data.X, w, params["fit_intercept"], rows)
        L = max(basis["L"], float(c.max()) / c.shape[0])  # a call has rows: validation refuses none
        mu2, largest_square = _row_moment_bounds(data.X, rows, w)
        L = max(L, mu2 + (1.0 if params["fit_intercept"] else 0.0))
        if b >= n:
            inverse = L
        else:  # several steps on these rows alone: their largest diagonal entry too
            L = max(L, largest_square)
            inverse = (curvature_spread(c) + basis["ridge"] + (b - 1) * L) / b
    if np.isfinite(inverse) and inverse > 2.0 * basis["inverse"]:
        basis["inverse"] = inverse


# _row_moment_bounds sums a CSR call's rows by column into a zeroed scratch of 2 d entries that each thread keeps
# (_kernels.csr_moment_bounds leaves it zero), where d <= MOMENT_SCRATCH_COLS; beyond, it renumbers the stored
# columns when there are fewer values than d / ROW_MOMENTS_SORT (np.unique, about 50 ns a value) and otherwise
# takes a fresh scratch. Fresh O(d) arrays cost a partial_fit call of 1,000 hashed rows (2^18 columns, 30 values
# a row) 1.7 of its 6 ms, mostly page faults. Alone, medians of 29 chunks, before / after: 100 rows 0.19 / 0.05-0.07
# ms, 1,000 rows 8.7 / 0.25 ms, 10,000 rows 10.0 / 0.9 ms.
ROW_MOMENTS_SORT = 16
MOMENT_SCRATCH_COLS = 2**21  # 32 MiB of float64 a thread at most, only the pages the columns touch resident
_moment_scratch = threading.local()


def _scratch_for(n_cols: int) -> np.ndarray:
    """This thread's zeroed scratch of ``2 * n_cols`` entries (grown as needed; :func:`_kernels.csr_moment_bounds`
    leaves it zero)."""
    have = getattr(_moment_scratch, "array", None)
    if have is None or have.shape[0] < 2 * n_cols:
        have = np.zeros(2 * n_cols)
        _moment_scratch.array = have
    return have[: 2 * n_cols]


def _row_moment_bounds(X, rows: slice, w: np.ndarray | None) -> tuple[float, float]:
    """``(sum_j mu_j^2, max_j s_j)`` (0 for no column) of the ``w``-weighted column means ``mu`` and mean squares
    ``s`` of ``X``'s ``rows`` (a slice; ``w`` for those rows, of mean 1, or None), dense or CSR. CSR rows are read
    in place (a strided slice of CSR X copies its rows) by :func:`fastopt._kernels.csr_moment_bounds`, each
    column's terms added in the stored order (a repeated index counting twice in the mean, as CSR's product does;
    validation hands the solvers CSR without one), the ``mu_j^2`` in the order the columns first appear."""
    if not sp.issparse(X):
        block = X[rows]
        if w is None:
            squares = np.einsum("ij,ij->j", block, block, dtype=np.float64) / block.shape[0]
        else:
            squares = np.einsum("i,ij,ij->j", w, block, block, dtype=np.float64) / float(w.sum())
        mu = np.average(block, axis=0, weights=w).astype(np.float64)
        return float(np.einsum("i,i->", mu, mu)), float(squares.max()) if squares.size else 0.0
    X = sp.csr_array(X)
    start, stop, step = rows.indices(X.shape[0])
    count = len(range(start, stop, step))
    weight = np.ones(count) if w is None else np.ascontiguousarray(w, dtype=np.float64)
    data, indices, indptr, n_cols = X.data, X.indices, X.indptr, X.shape[1]
    if indices.dtype != indptr.dtype:
        index = np.promote_types(indices.dtype, indptr.dtype)
        indices, indptr = indices.astype(index), indptr.astype(index)
    if n_cols <= MOMENT_SCRATCH_COLS:
        scratch = _scratch_for(n_cols)
    else:
        lengths = np.diff(indptr)[start:stop:step].astype(np.int64)
        if int(lengths.sum()) * ROW_MOMENTS_SORT < n_cols:  # renumbered: sorting them costs less than O(d) arrays
            ends = np.cumsum(lengths)
            at = np.repeat(indptr[start:stop:step].astype(np.int64) - (ends - lengths), lengths) + np.arange(
                int(ends[-1]) if ends.size else 0)
            stored, column = np.unique(indices[at], return_inverse=True)
            data, indices, indptr = np.ascontiguousarray(data[at]), column.astype(indptr.dtype), np.r_[0, ends]
            indptr, start, step, n_cols = indptr.astype(indices.dtype), 0, 1, stored.shape[0]
        scratch = np.zeros(2 * n_cols)  # fresh: above MOMENT_SCRATCH_COLS none is kept
    return _kernels.csr_moment_bounds(data, indices, indptr, start, step, count, weight, scratch)


def watch_rows(n: int) -> slice:
    """The rows of an ``n``-row call that :class:`PassWatch` compares on: all, or every ``ceil(n /
    PASS_WATCH_ROWS)``-th (a strided view of dense ``X``, no gather)."""
    return slice(None, None, -(-n // PASS_WATCH_ROWS))


def penalty_term(spec, train: EpochCtl, p: np.ndarray, k_d: int) -> float:
    """The ridge part of the objective at the parameters ``p`` (weights first, ``k_d`` of them): ``alpha / 2
    ||W||^2`` for the rules with coupled L2, each column's own decay under a per-column map (``train.decay``),
    0 for AdamW's decoupled decay. The sums are NumPy's own loops (``einsum``) or, for the per-column decay,
    :func:`fastopt._kernels.weighted_square_sum`, not BLAS: above 10,000 entries
    OpenBLAS's dot wakes its worker threads, which then spin on the other core for a while, where a two-thread
    epoch's helper runs next (TF-IDF-like rows, 20,000 columns, a ridge: a 6-epoch fit on two threads took 1.21-1.29
    times one thread's time, and 0.75-0.79 times with BLAS limited to one thread)."""
    if not spec.decoupled_decay and spec.weight_decay > 0:
        return 0.5 * spec.weight_decay * float(np.einsum("i,i->", p[:k_d], p[:k_d]))
    if train.decay is not None:  # no copies (2 MB each at 2^18 columns): the decay has the weights' dtype
        decay = np.asarray(train.decay)
        return 0.5 * _kernels.weighted_square_sum(decay, np.ascontiguousarray(p[:k_d], dtype=decay.dtype))
    return 0.0


def ridge_key(spec, train: EpochCtl) -> tuple:
    """What :func:`penalty_term` depends on besides the parameters: the coupled coefficient, whether it is
    decoupled, and the per-column coefficients' array (compared by identity: a map keeps one per ``alpha``)."""
    return spec.weight_decay, spec.decoupled_decay, train.decay


def same_ridge(a: tuple, b: tuple) -> bool:
    """Whether two :func:`ridge_key` keys name the same penalty."""
    return a[:2] == b[:2] and a[2] is b[2]


def pass_comparison(X, Y: np.ndarray, sw: np.ndarray | None, now: np.ndarray, before: np.ndarray | None,
                    ref: np.ndarray | None, loss, epsilon: float, penalty) -> np.ndarray:
    """:class:`PassWatch`'s comparison over the rows ``X``, ``Y`` of a call (weights ``sw``, mean 1 over all
    its rows): ``[f(now), f(before) - f(now), its variance, f(ref) - f(now), its variance]``, ``f`` the weighted
    mean loss over the rows (summed over targets) plus ``penalty(p)``, the variances those of the rows' mean (0
    for a model not given; ``ref`` only with ``before``). The products in ``X``'s dtype, as the epochs take
    them."""
    d, k = X.shape[1], Y.shape[1]
    models = (now,) if before is None else (now, before) if ref is None else (now, before, ref)
    with np.errstate(over="ignore", invalid="ignore"):  # an overflow is a non-finite comparison, not judged
        if sp.issparse(X):
            # a product a model: the same sums as one product with the models side by side (each column's, over
            # a row's stored values in order), without that (d, models) copy, O(d) a call where the chunk's rows
            # are few (hashed 2^18 columns, 2,000-row chunks: 2 of the call's 14 ms)
            R = np.stack([rows_times(X, p[: k * d].reshape(k, d).astype(X.dtype, copy=False)) for p in models],
                         axis=1).astype(np.float64)
            m = R.shape[0]
        else:
            coefs = np.concatenate([p[: k * d].reshape(k, d) for p in models])  # (k * models, d)
            R = np.asarray(rows_times(X, coefs.astype(X.dtype, copy=False)), dtype=np.float64)
            m = R.shape[0]
            R = R.reshape(m, len(models), k)
        if now.shape[0] > k * d:
            R += np.stack([p[k * d :] for p in models]).astype(np.float64)
        R -= Y.astype(np.float64)[:, None, :]
        per_row = _per_sample_loss(R, loss, epsilon).sum(axis=2)  # (m, models)
        if sw is not None:
            per_row *= sw.astype(np.float64)[:, None]
        out = np.zeros(5)
        pen = [penalty(p) for p in models]  # each once: O(d) apiece
        out[0] = per_row[:, 0].mean() + pen[0]
        for j, slot in ((1, 1), (2, 3)):
            if j < len(models):
                diff = per_row[:, j] - per_row[:, 0]
                out[slot] = diff.mean() + pen[j] - pen[0]
                out[slot + 1] = diff.var() / m
    return out


def max_epochs(params: dict, steps_per_epoch: int = 0) -> int:
    """``max_epochs`` as a number: ``"auto"`` is ``MAX_EPOCHS_AUTO`` rounds of the stopping rules
    (:func:`epochs_per_round` at ``steps_per_epoch`` steps an epoch; while that is unknown, 0, as many epochs)."""
    value = params["max_epochs"]
    if value != "auto":
        return int(value)
    return MAX_EPOCHS_AUTO * epochs_per_round(steps_per_epoch)


def max_epochs_label(params: dict, value: int) -> str:
    """How warnings name the epoch limit ``value`` that ``params`` resolved to."""
    return f"'auto' ({value})" if params["max_epochs"] == "auto" else str(value)


_SPEC_KEYS = ("alpha", "momentum", "dampening", "rho", "beta1", "beta2", "eps", "centered", "amsgrad")


def make_spec(method: str, params: dict) -> optim.Optimizer:
    """The optimizer spec for ``method`` from the estimator's hyperparameters (``alpha`` is the weight decay).

    Specs are frozen, so one is built per distinct set of hyperparameters and reused: building one checks every
    field (about 0.05 ms a fit on cold caches after an epoch, twice per fit)."""
    # each value with its type: 1, 1.0 and True hash alike but may build specs whose fields differ in type
    key = (method, *((params[name], type(params[name])) for name in _SPEC_KEYS))
    try:
        return _cached_spec(key)
    except TypeError:  # an unhashable value (an array alpha, which the iterative solvers refuse anyway)
        return _build_spec(method, params)


@functools.lru_cache(maxsize=64)
def _cached_spec(key: tuple) -> optim.Optimizer:
    return _build_spec(key[0], {name: value for name, (value, _) in zip(_SPEC_KEYS, key[1:])})


def _build_spec(method: str, params: dict) -> optim.Optimizer:
    cls = optim.OPTIMIZERS[method]
    if method == "nesterov" and params["dampening"] != 0:
        # (it was dropped silently; torch.optim.SGD refuses the pair too)
        raise ValueError(f"solver='nesterov' takes no dampening (got dampening={params['dampening']!r}): Nesterov "
                         "momentum requires zero dampening, as in torch.optim.SGD. Use solver='momentum' to dampen.")
    momentum = params["momentum"]
    if momentum is None:  # the rule's own default (its dataclass field): heavy ball 0.9, RMSProp no buffer (0)
        momentum = next((f.default for f in dataclasses.fields(cls) if f.name == "momentum"), None)
    alpha = params["alpha"]
    available = {
        # (a 0-d array alpha, a number to the estimator, failed the rule's check of a float weight_decay)
        "weight_decay": float(alpha) if np.ndim(alpha) == 0 else alpha,
        "momentum": momentum, "dampening": params["dampening"],
        "rho": params["rho"], "beta1": params["beta1"], "beta2": params["beta2"], "eps": params["eps"],
        "centered": params["centered"], "amsgrad": params["amsgrad"],
    }
    names = {f.name for f in dataclasses.fields(cls)}
    return cls(**{key: value for key, value in available.items() if key in names})


# ---------------------------------------------------------------- seeds and held-out rows, defined once
# The solver's row-order generator (_seed) and a streamed fit's own draws (fastopt._chunks.stream_seed) both
# take one draw_seed from a RandomState; held-out counts are n_held_out's, whatever the edge rule of the caller.


def draw_seed(random_state) -> int:
    """One draw from ``random_state`` (an int, or a ``RandomState`` instance, advanced) in ``[0, 2^31 - 1)``, as
    scikit-learn's estimators seed their own generators; for None, from fresh OS entropy (``default_rng()``):
    scikit-learn would draw from NumPy's global ``RandomState`` and advance it, a process-wide side effect."""
    if random_state is None:
        return int(np.random.default_rng().integers(0, 2**31 - 1))
    return int(check_random_state(random_state).randint(0, 2**31 - 1))


@functools.lru_cache(maxsize=256)
def _int_seed(random_state: int) -> int:
    # Seeding a legacy RandomState (MT19937) costs about 0.1-0.2 ms, 1-2% of an epoch: do it once per integer.
    return draw_seed(random_state)


@functools.lru_cache(maxsize=256)
def _int_seed_sequence(random_state: int) -> np.random.SeedSequence:
    # default_rng(seed) is Generator(PCG64(SeedSequence(seed))); the SeedSequence (only read by PCG64) is kept,
    # which takes a third off creating the generator (0.07 ms on cold caches after an epoch).
    return np.random.SeedSequence(_int_seed(random_state))


def _draw_key(rng: np.random.Generator) -> int:
    """The next 64-bit row-order key of ``rng`` (:func:`draw_order`)."""
    return int(rng.integers(0, 2**64, dtype=np.uint64))


@functools.lru_cache(maxsize=256)
def _int_first_key(random_state: int) -> int:
    # The first key of an int random_state's generator, known before the generator is made (0.05 ms on cold
    # caches): a two-thread fit's helper then starts drawing the first order that much sooner.
    return _draw_key(_seed(random_state))


def _is_int_seed(random_state) -> bool:
    return type(random_state) is int or (isinstance(random_state, numbers.Integral)
                                         and not isinstance(random_state, bool))


def _seed(random_state) -> np.random.Generator:
    # An int random_state gives the same Generator every fit; a RandomState instance advances as scikit-learn's.
    if _is_int_seed(random_state):
        return np.random.Generator(np.random.PCG64(_int_seed_sequence(int(random_state))))
    return np.random.default_rng(draw_seed(random_state))


def n_held_out(n_rows: int, validation_fraction: float) -> int:
    """How many of ``n_rows`` rows ``early_stopping`` holds out for validation (may be all of them: the
    caller decides whether that is an error, as for a fit, or means no split, as for one chunk of a stream)."""
    return int(np.ceil(validation_fraction * n_rows))


def check_validation_targets(low: np.ndarray, high: np.ndarray, rows: str, advice: str) -> None:
    """Refuse ``early_stopping`` whose held-out rows of nonzero weight (``rows``, described) have every target
    constant (``low``, ``high``: each target's least and greatest value there): R^2 is then 0 at every epoch
    (:func:`sklearn.metrics.r2_score` of a constant target not predicted exactly), so the first epoch would be the
    best and its coefficients would come back, unwarned."""
    if low.size and np.all(low == high):
        value = f" ({low[0]:.6g})" if low.size == 1 else ""
        raise ValueError(
            f"early_stopping=True scores R^2 on the held-out rows ({rows}), whose targets are all equal{value}: "
            "R^2 is then 0 at every epoch, and the first epoch's coefficients would be kept. "
            f"{advice[0].upper() + advice[1:]}, or set early_stopping=False."
        )


def _split(n: int, params: dict, rng: np.random.Generator):
    """Training and validation row indices (int64); the validation set is empty without early stopping, and the
    training rows are then :func:`all_rows` (read-only)."""
    if not params["early_stopping"]:
        return all_rows(n), np.empty(0, dtype=np.int64)
    n_val = n_held_out(n, params["validation_fraction"])
    if n_val >= n:
        raise ValueError(
            f"validation_fraction={params['validation_fraction']} leaves no training rows out of {n}; "
            "lower it or set early_stopping=False."
        )
    if n_val < 2:  # r2_score is NaN on one row: every epoch would score NaN and warn, and never stop early
        raise ValueError(
            f"early_stopping=True scores R^2 on validation_fraction={params['validation_fraction']} of the {n} "
            f"rows, {n_val} row; R^2 needs at least two. Raise validation_fraction, or set early_stopping=False."
        )
    perm = rng.permutation(n).astype(np.int64)
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])


def _normalised_weights(sample_weight, train_idx, mean: float | None = None):
    """``sample_weight`` divided by ``mean``, by default its mean over ``train_idx`` (which must be positive).

    A streamed fit passes one stream-wide ``mean`` (:class:`Sweep`), and gives the chunks without weights of
    a weighted stream explicit ones; None (unit weights) is returned unchanged.
    """
    if sample_weight is None:
        return None
    if mean is None:
        mean = weight_mean(sample_weight[train_idx])
        if mean == 0:
            raise ValueError("sample_weight is zero on every training row (every row, or with early_stopping "
                             "those it does not hold out for validation).")
    return np.ascontiguousarray(sample_weight / sample_weight.dtype.type(mean))


def weight_mean(sample_weight: np.ndarray) -> float:
    """The mean of ``sample_weight`` in float64 without overflow or underflow, for any finite weights: the
    weights are divided by a power of two near their maximum (exact) before summing, and the mean scaled back
    (it lies between the smallest and the largest weight, so it is representable)."""
    if sample_weight.shape[0] == 0:
        return 0.0
    e = int(np.frexp(float(np.max(sample_weight)))[1])
    scaled = np.ldexp(sample_weight.astype(np.float64), -e)
    return float(np.ldexp(np.mean(scaled), e))


def _initial_params(params: dict, d: int, k: int, dtype, rng) -> np.ndarray:
    p = np.zeros(k * d + (k if params["fit_intercept"] else 0), dtype=dtype)
    if params["init"] == "random":
        p[: k * d] = RANDOM_INIT_SCALE * rng.standard_normal(k * d)
    return p


def _auto_centre(params: dict, Y: np.ndarray, w) -> np.ndarray | None:
    """The intercepts a fresh ``learning_rate="auto"`` squared-error fit starts from (:func:`target_centre` of the
    training targets ``Y``, weights ``w``: their weighted mean), or None (zeros: a numeric rate starts where
    scikit-learn and PyTorch do; so do the robust losses, whose weighted median as a start left AdaGrad on
    degree-5 polynomial features under Huber's loss at max_epochs, 28% above the optimum, where it had stopped
    at 25%, warned either way).

    Started at zero, the weights take up the targets' offset with the intercept, and where columns sum to the
    intercept's column of ones (one-hot levels of a categorical column beside an intercept, which a CSR map does
    not centre), only the ridge moves the offset back: on one-hot CSR rows (8,000 x 1,112, ``alpha = 1e-4``),
    default SGD stopped 1.8 times the optimal objective above it (warned); started at the targets' mean, 2.4e-3."""
    return target_centre(Y, w) if _centred(params) else None


def _centred(params: dict) -> bool:
    """Whether a fit starts its intercepts at the targets' mean (:func:`_auto_centre`)."""
    return params["fit_intercept"] and params["learning_rate"] == "auto" and params["loss"] == "squared_error"


def _recentre_intercepts(data, rows, sw, st: IterState) -> None:
    """A warm start's intercepts, in place in ``st`` (and its average), moved by the weighted mean of the residuals
    on the training ``rows`` for each target where that at least halves the mean squared residual: where the
    targets' offset has moved by more than the residuals' spread. Under squared error the move is the exact
    minimiser of the loss over the intercept; a fresh fit starts there (:func:`_auto_centre`).

    The adaptive rules move a coordinate by about the rate a step, so an intercept that started 100 standard
    deviations of ``y`` off (the same X, ``y + 100 sd``) stayed there: AdaGrad, RMSProp and Adam ended 3e5-4e5
    times the optimal objective above it after 1,100 epochs (a cold fit: 2e-4); at 30 sd, Adam 0.46 and AdaGrad 52
    times. A warm start on targets near the earlier fit's moves nothing (its bits are kept)."""
    d, k = st.dims
    s1, s2, total = np.zeros(k), np.zeros(k), 0.0
    with np.errstate(over="ignore", invalid="ignore", under="ignore"):  # (an overflow moves nothing: below)
        for r, R in residual_blocks(data, rows, st.weights):  # (R = prediction - y: s1 sums y - prediction)
            w = np.ones(R.shape[0]) if sw is None else sw[r].astype(np.float64)
            s1 -= np.einsum("i,ij->j", w, R)
            s2 += np.einsum("i,ij,ij->j", w, R, R)
            total += float(w.sum())
        if not total > 0:
            return
        mean = s1 / total
        # mean^2 > (s2 / total) / 2, without the cancellation of the variance s2 / total - mean^2
        move = np.isfinite(mean) & np.isfinite(s2) & (mean * mean > 0.5 * (s2 / total))
    if not move.any():
        return
    shift = np.where(move, mean, 0.0).astype(st.weights.dtype)
    st.weights[k * d :] += shift
    if st.avg is not None:
        st.avg[k * d :] += shift


def split_params(p: np.ndarray, d: int, k: int):
    """``coef`` (k, d) and ``intercept`` (k,), views of the parameter vector ``p`` (zero intercepts when not
    fitted); every caller only reads them, or keeps them from a vector that is never stepped again."""
    coef = p[: k * d].reshape(k, d)
    intercept = p[k * d :] if p.shape[0] > k * d else np.zeros(k, dtype=p.dtype)
    return coef, intercept


def epoch_pass(spec, train: EpochCtl, data, sw, order, st: IterState, lr: float, pending=None):
    """One compiled epoch over ``data.X``, dense (:func:`run_epoch`: :func:`fastopt._kernels.epoch` in slices, one
    or two threads) or CSR (:func:`run_epoch_csr`: :func:`fastopt._kernels.epoch_csr` in slices, one or two;
    ``train.lazy`` selects SparseAdam semantics); in place on ``st.weights`` and ``st.opt_state``. ``pending``:
    the job still drawing ``order`` (its ``buffer()``), if any. Returns the kernel's (status, t, loss,
    bad_step).

    A padded short minibatch (``train.pad_rows``: a stream's or a Dask block's last) weighs its rows ``1 /
    pad_rows`` each, so its ridge (``weight_decay``, each weight's ``decay``) is scaled by its rows over
    ``pad_rows`` too: it is taken in a call of its own. With the full ridge on every padded step, chunks that are
    not multiples of ``batch_size`` minimised the ridge of ``alpha`` times the steps per chunk times
    ``batch_size`` over the rows per chunk (16-row chunks: 4 alpha, 23% above the optimum; silent under a named
    schedule)."""
    if train.average and st.avg is None:
        st.avg = np.zeros_like(st.weights)  # (its avg_from: _train_controls, which made train.average)
    m = order.shape[0]
    tail = m % train.batch_size if train.pad_rows else 0
    if tail and (spec.hyper.weight_decay != 0 or train.decay is not None):
        if pending is not None:  # (the order is split below)
            pending.result()
            pending = None
        acc = np.zeros(2)
        t = st.t
        if m > tail:
            status, t, loss, bad = _epoch_call(spec, spec.hyper, train, data, sw, order[: m - tail], st, t, lr, acc)
            if status != _kernels.Status.OK:
                return status, t, loss, bad
        share = tail / train.pad_rows
        hyper = spec.hyper._replace(weight_decay=spec.hyper.weight_decay * share)
        short = train._replace(decay=None if train.decay is None else train.decay * share)
        return _epoch_call(spec, hyper, short, data, sw, order[m - tail :], st, t, lr, acc)
    return _epoch_call(spec, spec.hyper, train, data, sw, order, st, st.t, lr, None, pending)


def _epoch_call(spec, hyper, train: EpochCtl, data, sw, order, st: IterState, t: int, lr: float, acc,
                pending=None):
    """:func:`epoch_pass`'s call of :func:`run_epoch` or :func:`run_epoch_csr` under ``hyper`` from step ``t``;
    ``acc`` (or None), the loss accumulator that the calls of one pass share."""
    if sp.issparse(data.X):
        if pending is not None:  # a CSR epoch's slices end at fixed steps (run_epoch_csr): wait for the order
            pending.result()
        return run_epoch_csr(int(spec.rule), hyper, train, data.X, data.Y, sw, order, st.weights, st.opt_state, t,
                             lr, train.lazy, st.avg if train.average else None,
                             csr_epoch_threads(train.n_threads, order.shape[0], train.batch_size), train.decay, acc)
    d, k = data.X.shape[1], data.Y.shape[1]
    work = np.empty(6 * st.weights.shape[0] + 2 * k, dtype=st.weights.dtype)
    threads = epoch_threads(train.n_threads, order.shape[0], train.batch_size, d, k, data.X.dtype.itemsize)
    if pending is not None and threads < 2:  # nothing to overlap: wait for the order
        pending.result()
        pending = None
    extra = {"avg": st.avg} if train.average else {}
    if train.decay is not None:
        extra["decay"] = train.decay
    return run_epoch(int(spec.rule), hyper, train, data.X, data.Y, sw, order, st.weights, st.opt_state, work, t,
                     lr, threads, pending, acc, **extra)


# A partial_fit call above its limit is let in while it starts coming down, at most this many times the earlier
# targets' zero-model loss (|a - b|^2 <= 2 |a|^2 + 2 |b|^2 bounds a model of them); a descent is over once a call's
# mean loss is within it of its own targets' (IterativeSolver.partial_fit).
COMING_DOWN = 4.0


class _LimitStands(Exception):
    """A ``partial_fit`` call's loss where it starts does not raise its divergence limit (see
    :meth:`IterativeSolver.partial_fit`): its DivergenceError stands."""


class _Drawn(NamedTuple):
    """A first epoch's order drawn at once (:func:`_early_first_order` when the helper thread was busy), with
    the interface of a job of :func:`fastopt._kernels.shuffle_start`."""

    order: np.ndarray

    def ready(self) -> int:
        return self.order.shape[0]

    def buffer(self) -> np.ndarray:
        return self.order

    def result(self) -> np.ndarray:
        return self.order


def _first_order_early(params: dict) -> bool:
    """Whether the first epoch's key is the fit's first draw from its generator (it shuffles, with no validation
    split and no random initialisation drawn before), so that the first order may be drawn before the set-up."""
    return params["shuffle"] and not params["early_stopping"] and params["init"] != "random"


def _early_first_order(params: dict, shape: tuple, sparse: bool, itemsize: int, rng: np.random.Generator | None,
                       key: int | None = None):
    """The first epoch's row order, into the kept order buffer (:func:`order_buffer`); for a two-thread fit (dense
    or CSR) drawn on the epoch helper thread (:func:`fastopt._kernels.shuffle_start`) while this thread
    validates and sets up the fit. ``shape`` is ``(n, d, k)``. Its ``result()`` is the order. None unless the fit
    shuffles and the first epoch's key is the generator's next draw anyway (no validation split and no random
    initialisation draw before it), so the permutation is the one :func:`draw_order` would have drawn at the
    first epoch, bit for bit. With ``key`` (``rng``'s next key, known already) ``rng`` is not drawn from.

    Drawing it costs 0.3-0.5 ms at 200,000 rows, more than the set-up it overlaps (validation, the starting
    loss, the parameters), on a core that two-thread fits have claimed anyway.
    """
    if not _first_order_early(params):
        return None
    n, d, k = shape  # without early stopping every row trains: rows 0 .. n-1
    batch = int(params["batch_size"])
    threads = (csr_epoch_threads(params.get("n_threads"), n, batch) if sparse
               else epoch_threads(params.get("n_threads"), n, batch, d, k, itemsize))
    key = _draw_key(rng) if key is None else key
    out = order_buffer(n)
    # the helper writes the rows 0 .. n-1 itself; one thread (or a busy helper: another fit's epoch, which must
    # not change the order, so the key is drawn here either way) draws it now, into the kept buffer
    job = _kernels.shuffle_start(n, key, out) if threads >= 2 else None
    return job if job is not None else _Drawn(_kernels.shuffle(n, key, out))


class FirstOrder:
    """The generator of a fit and its first epoch's order, started before the input is validated
    (:meth:`IterativeSolver.prepare`), so that a two-thread fit's helper draws the order during validation too.
    :meth:`release` frees the helper (waiting for it) and keeps the buffer; it may be called more than once."""

    def __init__(self, n: int, rng: np.random.Generator, job):
        self.n, self.rng, self.job = n, rng, job

    def release(self) -> None:
        if self.job is not None:
            job, self.job = self.job, None
            keep_order_buffer(job.result())


# The order buffer of the last fit, for the next fit of as many rows (at most ORDER_BUFFER_ROWS), and the training
# rows of a fit without a validation split (read-only, shared). A fit held two n-row arrays at once; freed at its
# end, they left glibc's heap with enough free memory at its top to be returned to the system, so the next fit
# faulted both in again and the release interrupted the helper's core (TLB shootdowns): 0.5 ms in np.arange and
# 0.5 ms on leaving the fit, measured at 200,000 rows (float32, two threads: a fifth of the epoch). Keeping them
# (16 bytes a row) avoids both.
ORDER_BUFFER_ROWS = 2**21
_ORDER_BUFFERS: dict[int, np.ndarray] = {}
_ALL_ROWS: dict[int, np.ndarray] = {}


def order_buffer(n: int) -> np.ndarray:
    """An n-row int64 array to draw an order into: the kept one (:func:`keep_order_buffer`) or a new one."""
    out = _ORDER_BUFFERS.pop(n, None)  # atomic under the GIL: two concurrent fits never share one
    return np.empty(n, dtype=np.int64) if out is None else out


def keep_order_buffer(order: np.ndarray) -> None:
    """Keep ``order`` (which nothing reads any more) for the next :func:`order_buffer` of its size."""
    if order.shape[0] <= ORDER_BUFFER_ROWS:
        _ORDER_BUFFERS.clear()  # one buffer, the last size (dict operations are atomic under the GIL)
        _ORDER_BUFFERS[order.shape[0]] = order


def all_rows(n: int) -> np.ndarray:
    """``np.arange(n)`` (int64), read-only: kept for the last size up to ``ORDER_BUFFER_ROWS``."""
    rows = _ALL_ROWS.get(n)
    if rows is None:
        rows = np.arange(n, dtype=np.int64)
        rows.flags.writeable = False
        if n <= ORDER_BUFFER_ROWS:
            _ALL_ROWS.clear()
            _ALL_ROWS[n] = rows
    return rows


def draw_order(rng: np.random.Generator, rows: np.ndarray | int, out: np.ndarray | None = None) -> np.ndarray:
    """A uniform random permutation of ``rows`` (int64; an int ``n`` stands for ``0 .. n-1``) for one epoch: a
    64-bit key drawn from ``rng`` (so from ``random_state``) and :func:`fastopt._kernels.shuffle`, 4-6x faster
    than ``rng.permutation``; written into ``out`` (which may be ``rows``) when given, which saves the page
    faults of a new n-row array (as many milliseconds as the shuffle itself on a large epoch)."""
    return _kernels.shuffle(rows, _draw_key(rng), out)


def _under(affine, data):
    """``data`` with X mapped by the preconditioning ``affine`` (None: unchanged). On sparse X only columns that
    store most rows may be shifted (:func:`fastopt._iterative_lr.csr_shiftable`; elsewhere a shift would densify
    X), or those a map chosen from sparse rows shifts (they stored most of its rows), so continuing a fit
    preconditioned with other shifts (dense X's) on sparse X is refused."""
    if affine is None:
        return data
    if sp.issparse(data.X) and not affine.from_sparse and not csr_shiftable(data.X, affine):
        raise ValueError(
            "This model was fitted on dense X with its columns standardised (precondition='auto'); continuing it "
            "on sparse X would densify X. Continue with dense X, or fit with precondition='none'."
        )
    return dataclasses.replace(data, X=affine.transform(data.X))


def lazy_rule(method: str, params: dict) -> bool:
    """Whether the fit takes SparseAdam steps (``sparse_mode="lazy"`` with Adam or AdamW)."""
    return params.get("sparse_mode", "exact") == "lazy" and method in LAZY_RULES


# The rules with a lazy mode (optim.Optimizer.lazy_mode).
LAZY_RULES = frozenset(name for name, rule in optim.OPTIMIZERS.items() if rule.lazy_mode)


def _mapped_init(affine: Affine | None, init):
    """A start ``(coef, intercept)`` in the user's units as the same model in ``affine``'s mapped units:
    ``x.w + b = x'.(w * scale) + b + w.shift`` (unchanged without a map)."""
    if affine is None:
        return init
    return init[0] * affine.scale, init[1] + init[0] @ affine.shift


def refuse_underflowing_targets(method: str, params: dict, Y: np.ndarray, sw) -> None:
    """Targets whose squares underflow the working precision (a target whose largest magnitude over the rows of
    positive weight is below ``2**-500`` in float64, ``2**-60`` in float32) are a ValueError for the adaptive rules
    under the squared error and Huber's loss: their losses round to 0, their first gradient's scale sets their
    rate, and Adam on targets of 1e-170 returned zero coefficients, silently. SGD and the momentum rules, whose
    rate carries no unit of y, fit them; the closed form and Newton's method rescale such targets. ``Y`` and
    ``sw``: the rows of a fit or a first ``partial_fit`` call, or a stream's rate sample (a chunk alone is a
    part: judged by itself, a tiny one among unit ones was refused)."""
    if method not in ("adagrad", "rmsprop", "adam", "adamw") or params["loss"] == "absolute_error":
        return
    if sw is not None:
        Y = Y[np.asarray(sw) > 0]
    if not Y.size:
        return
    top = np.max(np.abs(Y), axis=0)
    tiny = 2.0**-60 if Y.dtype == np.float32 else 2.0**-500
    low = (top > 0) & (top < tiny)
    if low.any():
        j = int(np.argmax(low))
        which = "y's" if Y.shape[1] == 1 else f"target {j}'s"
        raise ValueError(
            f"{which} largest magnitude is {float(top[j]):.3g}: squared, it underflows {Y.dtype.name}, so the "
            f"training loss of loss={params['loss']!r} rounds to 0 and solver={method!r} cannot follow it. "
            "Multiply y by a power of ten, or use solver='sgd' (the closed form and solver='newton' rescale such "
            "targets by themselves)."
        )


def _cast_data(data, dtype):
    """``data`` with ``X``, ``Y`` and the weights in ``dtype`` (copies; a CSR ``X`` keeps its indices). Values
    beyond ``dtype``'s range are a ValueError naming them (validated in the chunk's own dtype, a weight of 1e39
    became inf in float32 and the call ended in a DivergenceError blaming the learning rate)."""
    sw = data.sample_weight
    with np.errstate(over="ignore"):  # (NumPy's cast warning: refused below instead)
        cast = dataclasses.replace(data, X=data.X.astype(dtype), Y=np.ascontiguousarray(data.Y, dtype=dtype),
                                   sample_weight=None if sw is None else np.ascontiguousarray(sw, dtype=dtype))
    def values(X):
        return X.data if sp.issparse(X) else X

    for name, a, was in (("X", values(cast.X), values(data.X)), ("y", cast.Y, data.Y),
                         ("sample_weight", cast.sample_weight, sw)):
        # (only values the cast made infinite: non-finite input is named where it is checked)
        if a is not None and not np.isfinite(a).all() and (np.isinf(a) & np.isfinite(was)).any():
            raise ValueError(
                f"{name} has values beyond the range of {np.dtype(dtype).name}, the dtype of the earlier calls that "
                "this fit continues (its state's). Rescale them, or call fit to start over in this dtype."
            )
    return cast


def as_lazy_X(method: str, params: dict, X):
    """SparseAdam steps are defined by the gradient's nonzeros, whatever the storage of X: a dense X is
    converted once to CSR (int32 indices when they fit) so that the same kernel takes them, and the
    preconditioning and the rate are chosen from the same CSR rows (in memory and, from its sample, in a stream)."""
    if not lazy_rule(method, params) or sp.issparse(X):
        return X
    X = sp.csr_array(X)
    if X.nnz < 2**31 and X.shape[1] < 2**31:
        X.indices, X.indptr = X.indices.astype(np.int32, copy=False), X.indptr.astype(np.int32, copy=False)
    else:
        raise ValueError(f"sparse_mode='lazy' needs fewer than 2**31 nonzeros in X, got {X.nnz}.")
    return X


def _map_runs_on(affine: Affine | None, X) -> bool:
    """Whether ``affine`` may map ``X`` (:func:`_under`'s test). Dense rows that SparseAdam mode steps as CSR
    (``sparse_mode="lazy"`` after an exact fit or call) may not take the exact rule's map of dense rows, which
    centres columns: such a warm start or call goes on from its coefficients under a map of these rows, as a first
    call does. It was refused with "continuing it on sparse X would densify X" to a caller who passed dense X."""
    return affine is None or not sp.issparse(X) or affine.from_sparse or csr_shiftable(X, affine)


def _as_lazy_data(method: str, params: dict, data):
    """``data`` with X as :func:`as_lazy_X` takes it."""
    X = as_lazy_X(method, params, data.X)
    return data if X is data.X else dataclasses.replace(data, X=X)


# _penalty_fits' allowance for a map's rounded scales: s_j = sqrt(m_j + alpha) is rounded, so alpha / s_j^2 may
# exceed 1 by a few ulps where m_j is 0 (at alpha = 1.5 it read 1 + 2e-16, and every later call started afresh).
DECAY_ROUNDING = 8 * np.finfo(np.float64).eps


def _penalty_fits(affine, params: dict, X, method: str) -> bool:
    """Whether ``params``' ridge penalty can run under ``affine`` on ``X``: none, one scale, no penalty, or a
    per-column scaling, whose epochs take a per-weight decay (:func:`_penalised`): on CSR ``X`` not with SparseAdam
    steps, and only where it costs what one decay does (``_iterative_lr.own_decay_cheap``); and each column's decay
    ``alpha / s_j^2`` at most 1 for the rules that step along the gradient itself, as the map of a ridge fit makes
    it (``s_j^2 = m_j + alpha``). A map made without the ridge (``s_j^2 = m_j``) gives a column of small scale a
    decay up to ``alpha / m_j``, that many times stiffer than its data, which the rate the fit left cannot take:
    a warm start adding ``alpha`` 1e-3 after a fit on columns of scales 1e-3..1e3 diverged under SGD, momentum
    and Nesterov in its first epoch. Such fits start afresh. The adaptive rules, whose steps each coordinate's
    gradient scale bounds, went on to the ridge optimum under that map (from 1.4e-5 to 7e-5 of the objective
    above it); started afresh from the coefficients, AdaGrad, RMSProp and Adam stopped 5-50% above it."""
    if affine is None or affine.uniform or params["alpha"] == 0:
        return True
    if sp.issparse(X) and (lazy_rule(method, params) or not own_decay_cheap(method, params, X)):
        return False
    rule = optim.OPTIMIZERS[method]
    return not rule.follows_gradient or float(np.max(affine.decay(params["alpha"]))) <= 1.0 + DECAY_ROUNDING


def _penalised(params: dict, affine, method: str) -> dict:
    """``params`` with the ridge ``alpha`` in ``affine``'s units: one scale ``c``, ``alpha / c^2``
    (:meth:`Affine.penalty`); a per-column scaling, ``alpha`` 0 and each column's coefficient as ``"decay"``
    (:meth:`Affine.decay`, taken by the dense and CSR epochs as a per-weight decay). AdamW's decoupled decay
    ``w <- (1 - lr alpha) w`` is a factor, the same in any units: it keeps ``alpha`` (divided by ``c^2`` for
    hashed columns of root mean square 0.2, the factor became ``1 - 0.18 * 25 < -1`` and the fit diverged)."""
    if affine is None or params["alpha"] == 0 or optim.OPTIMIZERS[method].decoupled_decay:
        return params
    if affine.uniform:
        return {**params, "alpha": affine.penalty(params["alpha"])}
    return {**params, "alpha": 0.0, "decay": affine.decay(params["alpha"])}


def _raw_params(state: IterState):
    """``state``'s ``coef`` (k, d) and ``intercept`` (k,) in the user's units (its preconditioning undone)."""
    coef, intercept = split_params(state.weights, *state.dims)
    return (coef, intercept) if state.affine is None else state.affine.to_raw(coef, intercept)


def with_coefficients(state: IterState, coef: np.ndarray, intercept: np.ndarray, params: dict) -> IterState:
    """``state`` with its parameters set to ``coef`` (k, d) and ``intercept`` (k,) in the user's units (mapped by
    its preconditioning), its optimizer state, rates and schedule kept: a later ``partial_fit`` goes on from that
    fit at the rate this one had reached (``solver="auto"`` finishing SGD's fit by Newton's method,
    ``LinearRegressor._fit_rescued``), and records ``params`` (the fit's ``get_params()``) as ``exact_params``.
    Its epochs' losses and rates are not the reported fit's and go: a ``partial_fit`` call's are the first after
    it, as after any Newton fit."""
    coef, intercept = _mapped_init(state.affine, (np.asarray(coef, dtype=np.float64),
                                                  np.asarray(intercept, dtype=np.float64)))
    weights = state.weights.copy()
    weights[: coef.size] = coef.ravel()
    if weights.shape[0] > coef.size:
        weights[coef.size :] = intercept
    return dataclasses.replace(state, weights=weights, loss_curve=[], learning_rates=[],
                               exact_params=exact_key(params))


# Parameters that change neither the objective nor SGD's state: not part of exact_key (results are the same
# whatever n_threads; a change of n_threads or verbose had sent a warm start back to SGD's fresh rate).
_NOT_EXACT_KEY = frozenset({"warm_start", "verbose", "n_threads"})


def exact_key(params: dict) -> dict:
    """``params`` as :attr:`IterState.exact_params` records them: all but ``warm_start``, ``verbose`` and
    ``n_threads``."""
    return {key: value for key, value in params.items() if key not in _NOT_EXACT_KEY}


def raw_weights(state: IterState) -> np.ndarray:
    """``state``'s parameter vector in the user's units (its preconditioning undone)."""
    if state.affine is None:
        return state.weights
    coef, intercept = _raw_params(state)
    if state.weights.shape[0] == coef.size:
        return coef.ravel()
    return np.concatenate([coef.ravel(), intercept]).astype(state.weights.dtype)


def _ridge_capped(spec, params: dict, state: IterState, lr0: float) -> float:
    """The rate ``lr0`` a warm start or a later ``partial_fit`` call of SGD or a momentum rule continues at
    (``learning_rate="auto"``), lowered where its ridge is stiffer than the one the rate was resolved under
    (``state.rate_ridge``): the critical rate's inverse, ``(R^2 + ridge + (b - 1) L) / b`` with ``L`` counting
    the ridge too, grows by at most the added ridge, so the inverse of SGD's rate grows by it. A warm start
    raising ``alpha`` from 0 to 3 on unit-scale columns continued at the rate of the unpenalised fit (0.79, where
    a fresh fit takes 0.24) and diverged in its fourth epoch."""
    added = rate_penalty(spec, params) - state.rate_ridge
    if not (spec.follows_gradient and added > 0 and lr0 > 0):
        return lr0
    keep = 1.0 - getattr(spec, "momentum", 0.0)  # (the momentum rules' rate is SGD's times 1 - mu)
    return keep / (keep / lr0 + added)


# A warm start whose rows' critical rate under the kept map is below the kept rate by more than this starts afresh
# from its coefficients under a map of its own rows (IterativeSolver._stale_map): rows of one distribution differ by
# sampling (tens of percent); a column three times wider, a factor of 9.
STALE_MAP_RATIO = 16.0


def _continues(state: IterState | None, params: dict, data) -> bool:
    """Whether a warm start continues from ``state`` (same shapes, intercept and dtype)."""
    d, k = data.X.shape[1], data.Y.shape[1]
    n_params = k * d + (k if params["fit_intercept"] else 0)
    return state is not None and state.dims == (d, k) and state.weights.shape == (n_params,) \
        and state.weights.dtype == data.X.dtype


class IterativeSolver(Solver):
    """One minibatch optimizer behind ``LinearRegressor(solver=method)``.

    On sparse ``X`` (CSR, validated to int32 indices without duplicates) each epoch is
    :func:`fastopt._kernels.epoch_csr`: the same objective and steps as on ``X.toarray()``, at a cost that
    follows the nonzeros (see ``csrc/epoch_csr.c`` and the README's table).
    """

    losses = frozenset(LOSSES)
    positive = True  # projected steps (EpochCtl.positive)
    averages = True  # Polyak-Ruppert averaging (EpochCtl.average)
    accepts_init = True
    supports_sparse = True
    chunked = "epochs"  # an epoch is one partial_fit pass per chunk

    def __init__(self, method: str):
        self.method = self.name = method

    @staticmethod
    def checks_finite_X(params: dict) -> bool:
        """Whether the first epoch sees every row of X (so validation may skip its own pass over X).

        Not with ``early_stopping``: held-out rows are only predicted, not passed through the kernel.
        """
        return not params["early_stopping"]

    @staticmethod
    def checks_finite_y(params: dict) -> bool:
        """Whether ``fit`` reads every target before using any, and names a non-finite one itself: the starting
        loss of a fresh fit reads every training target (:func:`fastopt._kernels.mean_loss_zero`), and so does the
        first epoch of a warm start. Not with ``early_stopping``: held-out targets are only scored."""
        return not params["early_stopping"]

    @staticmethod
    def checks_indices(params: dict) -> bool:
        """Whether nothing reads a CSR X through its column indices before the first epoch, which reads every
        row's and stops, before reading through it, at an index out of range (``_epoch`` then names it): not with
        ``early_stopping`` (held-out rows are only predicted), ``learning_rate="auto"`` (the rate is taken from
        products with sampled rows) or ``init="random"`` (the starting loss is a product with X). A fit with
        ``coef_init``/``intercept_init`` has validation check them (``LinearRegressor.fit``).

        The pass it saves is a third of the work around a two-thread SGD epoch on the sparse benchmark
        (0.45 ms of 6,000,000 indices).
        """
        return not params["early_stopping"] and params["learning_rate"] != "auto" and params["init"] != "random"

    # ------------------------------------------------------------ set-up shared by fit and partial_fit
    def _start(self, params, data, state, train_idx, sw, rng, lr0: float | None = None, init=None,
               basis: dict | None = None, zero: np.ndarray | None = None,
               rows_lr: float | None = None) -> IterState:
        d, k = data.X.shape[1], data.Y.shape[1]
        spec = make_spec(self.method, params)
        fresh = _initial_params(params, d, k, data.X.dtype, rng)
        if init is not None:  # coef_init / intercept_init: start there, with fresh optimizer state
            state = None
            fresh[: k * d] = np.asarray(init[0]).ravel()
            if params["fit_intercept"]:
                fresh[k * d :] = init[1]
            if params.get("positive"):
                # where the projected steps start: the adaptive rules' rate is the first gradient's size there (at
                # an unconstrained optimum it was 1e-17, and Adam stayed at the clipped start, R^2 -0.38 for 0.79)
                np.maximum(fresh[: k * d], 0, out=fresh[: k * d])
        loss = LOSSES[params["loss"]]
        # Only the plateau rule reads it (make_stopping); it costs a pass over y and an n-row temporary. A
        # non-finite or overflowing y is named below, by the zero model's loss.
        null = 0.0
        if schedule_name(params) == "plateau":
            with np.errstate(over="ignore", invalid="ignore"):
                null = null_loss(data, train_idx, sw, loss, params["epsilon"], params["fit_intercept"])
        all_rows = train_idx.shape[0] == data.Y.shape[0]
        if _continues(state, params, data):
            # Continue from the previous coefficients and moments, under this fit's learning rate.
            lr0 = _ridge_capped(spec, params, state, decay_capped(spec, state.lr0)) \
                if params["learning_rate"] == "auto" else float(params["learning_rate"])
            if params["learning_rate"] == "auto" and state.basis and state.basis.get("pending"):
                # the rate's rows left no gradient (a partial_fit of one row, constant targets): these rows' rate
                pending: dict = {}
                lr0 = auto_learning_rate(spec, data, train_idx, sw, params, state.weights, rng, basis=pending,
                                         zero=zero)
                state = dataclasses.replace(state, basis=pending or None)
            if params["learning_rate"] == "auto" and spec.follows_gradient:
                # SGD's and the momentum rules' rate is critical for the rows it was taken from: these rows,
                # under the kept map, may be stiffer (a column three times wider, a mean moved by 5 that the map
                # does not centre), and the warm start diverged where a fresh fit converges. The rate of these
                # rows, when lower (on the same rows it is the same rate: the bits are kept).
                lr0 = min(lr0, rows_lr if rows_lr is not None else
                          auto_learning_rate(spec, data, train_idx, sw, params, state.weights, rng, zero=zero))
            # The divergence limit is raised, for this fit only, to these targets' and to the loss where the fit
            # starts, as a fresh fit from coef_init takes both: targets of another scale (y x 1e10, or back from it)
            # had raised DivergenceError at the first minibatch where a fresh fit converges, and a raise kept would
            # leave a later fit's divergence unseen. A first fit of all-zero targets set none (inf): these targets'
            # then sets it, as partial_fit's first call with a loss does. (A non-finite y is named by the first
            # epoch, which reads every target.)
            here = _kernels.mean_loss_zero(data.Y, None if all_rows else train_idx, sw, loss, params["epsilon"])
            with np.errstate(over="ignore", invalid="ignore"):
                at = mean_loss(data, train_idx, sw, state.weights, loss, params["epsilon"])
            kept, fit_limit = state.loss_limit, None
            if np.isfinite(here) and here > 0 and not np.isfinite(kept):
                kept = DIVERGENCE_FACTOR * here
            start = max(here if np.isfinite(here) else 0.0, at if np.isfinite(at) else 0.0)
            if np.isfinite(kept) and DIVERGENCE_FACTOR * start > kept:
                fit_limit = DIVERGENCE_FACTOR * start
            st = state.continued(lazy_rule(self.method, params), rng=rng, loss_curve=[], lr0=lr0, lr=None,
                                 null_loss=null, learning_rates=[], watch=None, loss_limit=kept,
                                 fit_limit=fit_limit, rate_ridge=max(state.rate_ridge, rate_penalty(spec, params)),
                                 targets_loss=here if np.isfinite(here) else 0.0, descent_from=0.0)
            if _centred(params):  # (where a fresh fit starts at the targets' mean)
                _recentre_intercepts(data, train_idx, sw, st)
            return st
        w = None if sw is None else sw if all_rows else sw[train_idx]
        centre = None if init is not None else _auto_centre(params, data.Y if all_rows else data.Y[train_idx], w)
        if centre is not None:
            fresh[k * d :] = centre
        if params["learning_rate"] != "auto":
            lr0 = params["learning_rate"]
        elif lr0 is None:
            # the adaptive rules' first gradient is taken where the fit starts, the intercepts at the targets' mean:
            # their rate is the distance left, not the offset the start already covers (taken at zero intercepts,
            # it left 30 passes of partial_fit on an offset table 12 (Adam) and 222 (RMSProp) times the optimal
            # objective above it, where they had come within 5%)
            lr0 = auto_learning_rate(spec, data, train_idx, sw, params, fresh, rng, basis=basis, zero=zero)
        # The all-zero model's loss reads every training target once (a compiled pass, no temporaries): it is
        # non-finite when one is, and then names y as validation would have (fit skips that pass).
        start_loss = zero_loss = _kernels.mean_loss_zero(data.Y, None if all_rows else train_idx, sw, loss,
                                                         params["epsilon"])
        # (asked only when the start may be nonzero: reading a fresh zeroed array faults its pages in twice, once
        # to read and again when the epoch writes them, 0.05 ms at 2^18 parameters)
        if (params["init"] == "random" or init is not None) and fresh.any() and np.isfinite(start_loss):
            with np.errstate(over="ignore", invalid="ignore"):  # an overflow is reported below
                at_start = mean_loss(data, train_idx, sw, fresh, loss, params["epsilon"])
            if not np.isfinite(at_start) and np.isfinite(fresh).all():  # (non-finite X: named below)
                if np.all(np.isfinite(data.X.data if sp.issparse(data.X) else data.X)):
                    raise ValueError(
                        f"the {params['loss']} loss at the starting coefficients (coef_init/intercept_init, or the "
                        "earlier fit's) overflows float64; start nearer the data's scale."
                    )
            start_loss = max(start_loss, at_start)
        if not np.isfinite(start_loss):  # X is checked by the first epoch; the zero model's loss reads y only
            refuse_nonfinite_data(data)
            raise ValueError(
                f"y has values too large for float64 arithmetic: the {params['loss']} loss of the all-zero model "
                f"overflows (max |y| = {float(np.max(np.abs(data.Y))):.3g}); rescale y."
            )
        limit = DIVERGENCE_FACTOR * start_loss if start_loss > 0 else np.inf
        return IterState(weights=fresh, opt_state=spec.init_state(fresh.shape[0], fresh.dtype), t=0, epochs=0,
                         rng=rng, lr0=float(lr0), loss_limit=limit, loss_curve=[], dims=(d, k), null_loss=null,
                         interleaved=lazy_rule(self.method, params), rate_ridge=rate_penalty(spec, params),
                         targets_loss=zero_loss if np.isfinite(zero_loss) else 0.0)

    def _epoch(self, spec, train, data, sw, order, st: IterState, lr: float, epoch_no: int, pending=None,
               first_pass: bool = False) -> float:
        status, t, loss, bad = epoch_pass(spec, train, data, sw, order, st, lr, pending)
        if status != _kernels.Status.OK and not data.indices_checked:
            _check_sparse_structure("X", data.X)  # validation left them to this pass (checks_indices): name a fault
        if status == _kernels.Status.BAD_ARGUMENT:
            raise RuntimeError(f"internal error: the epoch kernel rejected its arguments (step {bad}).")
        if status == _kernels.Status.NONFINITE_LOSS:
            # fit leaves X's finiteness to this pass (every training row is read in the first epoch, and a NaN
            # or inf there makes the loss non-finite even at zero weight): name bad input before blaming the
            # learning rate.
            refuse_nonfinite_data(data)  # (a warm start reads y here)
        if status != _kernels.Status.OK:
            if status != _kernels.Status.NONFINITE_LOSS and first_pass and bad == st.t + 1:
                # the first minibatch, before any step of this fit or call: the rate is not the cause (a
                # partial_fit chunk of rows 1e6 times the earlier calls' was told to try a smaller one, at any rate)
                raise DivergenceError(
                    f"solver={self.method!r} stopped in epoch {epoch_no} before its first step: the loss of the "
                    f"first minibatch at the coefficients it starts from exceeds {DIVERGENCE_FACTOR:.0e} times the "
                    "starting loss (the fit's, or the first partial_fit call's or chunk's). These rows or targets "
                    "(or their sample weights) are on a far larger scale than the others, or than the earlier "
                    "calls' (rescale them, or start a new fit), or the earlier calls were diverging (use a smaller "
                    "learning_rate)."
                )
            what = ("the loss or gradient became NaN or infinite" if status == _kernels.Status.NONFINITE_LOSS
                    else f"a minibatch loss exceeded {DIVERGENCE_FACTOR:.0e} times the starting loss")
            raise DivergenceError(
                f"solver={self.method!r} diverged in epoch {epoch_no}, step {bad}: {what} "
                f"(learning rate {lr:.4g}). Try a smaller learning_rate, learning_rate='auto', a decaying "
                "schedule, or clip_norm."
            )
        if st.weights.dtype == np.float32 and not spec.follows_gradient and not np.isfinite(st.opt_state).all():
            # AdaGrad, RMSProp and Adam square the gradients in the data's dtype: beyond 1.8e19 the squares are inf
            # in float32, every step m / sqrt(v) is 0 and the fit stood still (coefficients 0 for targets of 1e30,
            # with ConvergenceWarning's advice on conditioning)
            raise ValueError(
                f"solver={self.method!r} squares the gradients, and on this float32 data they exceed float32's "
                f"range (beyond about 1.8e19) in epoch {epoch_no}, so its steps stopped. Pass X as float64, rescale "
                "y (and X), or use solver='sgd' or 'momentum', which do not square them."
            )
        st.t = t
        term = penalty_term(spec, train, st.weights, data.X.shape[1] * data.Y.shape[1])
        st.ridge_term = (st.weights, ridge_key(spec, train), term)
        return float(loss + term)

    def _rows_rate(self, params: dict, data, state: IterState, train_idx, sw, rng) -> tuple[float, dict] | None:
        """A warm start's rows' own rate for SGD or a momentum rule (``learning_rate="auto"``) under the kept map
        (``data`` and ``params`` already under it) and what it was taken from (``basis``), else None. The warm
        start continues at the lower of it and the kept rate (:meth:`_start`), or starts afresh from its
        coefficients when the kept map is stale for these rows (:meth:`_stale`)."""
        if params["learning_rate"] != "auto":
            return None
        spec = make_spec(self.method, params)
        if not spec.follows_gradient:
            return None
        basis: dict = {}
        lr = auto_learning_rate(spec, data, train_idx, sw, params, state.weights, rng, basis=basis,
                                zero=zero_image(state.affine, data.X))
        return lr, basis

    @staticmethod
    def _stale(state: IterState, rows_rate: tuple[float, dict] | None) -> bool:
        """Whether a warm start of SGD or a momentum rule starts afresh from its coefficients, under a map of
        these rows: their critical rate under the kept map is below ``1 / STALE_MAP_RATIO`` of the kept rate. The
        kept map scales a column the earlier rows stored a few times, with small values, by their inverse; rows
        holding it at its usual size then set a rate so small that the fit stood still (R^2 0.04 on its own rows
        where a fresh fit reaches 0.998, with advice to raise max_epochs). Rows of the kept map's kind keep it, bit
        for bit (their rate is the kept one, or near). The critical rates' inverses from the curvatures alone
        (``basis["first"]``): the rates themselves carry a robust loss's residual scale, which a fit has shrunk,
        and a warm start of Huber's loss on its own rows was taken for stale (its state dropped, t_ 700 -> 630)."""
        if rows_rate is None or state.affine is None or not state.basis or "first" not in state.basis:
            return False
        return rows_rate[1]["first"] > STALE_MAP_RATIO * state.basis["first"]

    def _train_controls(self, params, st: IterState) -> EpochCtl:
        decay = params.get("decay")
        if decay is not None:  # every target's weights take their column's coefficient (one: the map's own array)
            if st.dims[1] == 1 and st.affine is not None:
                decay = st.affine.decay_as(np.ascontiguousarray(decay), st.weights.dtype)
            else:
                decay = np.ascontiguousarray(np.tile(decay, st.dims[1]), dtype=st.weights.dtype)
        start = average_start(params)
        positive = bool(params.get("positive", False))
        if not start or (positive and not st.avg_positive):
            # averaging off: switched on again later, it starts afresh; positive switched on: the average held
            # unconstrained iterates (its coefficients stayed negative), so it starts afresh with projected ones
            st.avg = None
        if start and st.avg is None:
            st.avg_from = st.t  # the average counts the steps from now (epoch_pass makes it)
            st.avg_positive = positive
        elif start and not positive:
            st.avg_positive = False  # unconstrained iterates join it (switched on again, positive restarts it)
        return EpochCtl(batch_size=int(params["batch_size"]), loss=LOSSES[params["loss"]],
                     epsilon=float(params["epsilon"]), clip_norm=params["clip_norm"],
                     loss_limit=st.loss_limit if st.fit_limit is None else st.fit_limit,
                     n_threads=params.get("n_threads"), lazy=lazy_rule(self.method, params),
                     positive=positive, average=start + st.avg_from if start else 0, decay=decay)

    @staticmethod
    def current_params(params: dict, st: IterState) -> np.ndarray:
        """The parameters the model reports: the average once ``average`` has started (counting from the step at
        which averaging was switched on: a warm start or ``partial_fit`` call that turned it on averaged the earlier
        steps as zeros, halving the coefficients), else the iterate."""
        start = average_start(params)
        return st.avg if start and st.avg is not None and st.t >= start + st.avg_from else st.weights

    def epoch_lr(self, params, st: IterState, epoch: int) -> float:
        """The learning rate of the 0-based ``epoch``: the named schedule's, or the plateau rule's current rate."""
        schedule = schedule_name(params)
        if schedule == "plateau":
            return st.lr0 if st.lr is None else st.lr
        return optim.scheduled(schedule, st.lr0, epoch, max_epochs(params), params["end_factor"], params["power_t"],
                               params["gamma"])

    def stream_learning_rate(self, params, X, Y, w, n_train, rng, curvatures=None, zero=None) -> float:
        """``learning_rate="auto"`` for a streamed fit, from a sample of its training rows
        (:func:`fastopt._iterative_lr.sample_learning_rate`, ``curvatures`` its rows' weighted curvatures where
        not those of ``X``, ``zero`` where the map sends 0 in dense ``X``), with the first gradient taken at zero
        weights and the intercepts at the sample's :func:`_auto_centre` (the first chunk's starts the fit: close
        to it)."""
        spec = make_spec(self.method, params)
        d, k = X.shape[1], Y.shape[1]
        p0 = np.zeros(k * d + (k if params["fit_intercept"] else 0))
        centre = _auto_centre(params, Y, w)
        if centre is not None:
            p0[k * d :] = centre
        return sample_learning_rate(spec, X, Y, w, params, p0, n_train, rng, curvatures=curvatures, zero=zero)

    # ------------------------------------------------------------ the solver protocol
    def fit(self, params: dict, data, state: IterState | None = None, init=None,
            prepared: FirstOrder | None = None) -> FitResult:
        """Train for up to ``max_epochs`` epochs, stopping early as the parameters ask; ``init`` is
        ``(coef (k, d), intercept (k,))`` to start from (``coef_init``/``intercept_init``); ``prepared`` is
        what :meth:`prepare` started for this fit.

        The BLAS thread count is left alone (it is process-wide: limiting it here would change it for every
        other thread of the process, and restoring it races with other fits): to give a two-thread epoch's
        helper an idle core, limit the BLAS yourself, e.g. with ``threadpoolctl.threadpool_limits(1)``.
        """
        return self._fit(params, data, state, init, prepared)

    def prepare(self, params: dict, X, y) -> FirstOrder | None:
        """Before validation, on the caller's ``X`` and ``y`` (anything with a 2-d ``shape``, such as an ndarray, a
        ``scipy.sparse`` matrix or a DataFrame, and a 1-d or 2-d one of as many rows): the fit's generator and
        first epoch's order (:func:`_early_first_order`), to pass to :meth:`fit` as ``prepared`` (which releases
        it); None for other input or when there is nothing to start. A caller that does not reach :meth:`fit`
        calls its ``release()``. Validation keeps the rows, so the order is the one a fit drawing it afterwards
        gets; the shapes and dtype here only choose where it is drawn."""
        if not _first_order_early(params):  # (before the generator is made, which is not needed then)
            return None
        try:
            (n, d), y_shape = getattr(X, "shape", ()), tuple(getattr(y, "shape", ()))
            n, d, k = int(n), int(d), 1 if len(y_shape) == 1 else int(y_shape[1])
        except (TypeError, ValueError, IndexError):
            return None
        if len(y_shape) not in (1, 2) or y_shape[0] != n:
            return None
        # the validated dtype, float32 kept and the rest float64, decides the threads (not the order)
        itemsize = 4 if getattr(X, "dtype", None) == np.float32 else 8
        shape, sparse, random_state = (n, d, k), sp.issparse(X), params["random_state"]
        if _is_int_seed(random_state):  # the order starts before the generator is made, which then skips its key
            job = _early_first_order(params, shape, sparse, itemsize, None, _int_first_key(int(random_state)))
            rng = _seed(random_state)
            if job is not None:
                _draw_key(rng)
        else:
            rng = _seed(random_state)
            job = _early_first_order(params, shape, sparse, itemsize, rng)
        return FirstOrder(n, rng, job)

    def _fit(self, params: dict, data, state: IterState | None, init=None,
             prepared: FirstOrder | None = None) -> FitResult:
        try:
            refuse_underflowing_targets(self.method, params, data.Y, data.sample_weight)
        except ValueError:
            if prepared is not None:
                prepared.release()
            raise
        was_dense = not sp.issparse(data.X)
        data = _as_lazy_data(self.method, params, data)
        if was_dense and init is None and _continues(state, params, data) and not _map_runs_on(state.affine, data.X):
            init, state = _raw_params(state), None  # (see _map_runs_on)
        (n, d), k = data.X.shape, data.Y.shape[1]
        if prepared is None or prepared.n != n:  # (validation keeps the rows: a prepared order always fits)
            if prepared is not None:
                prepared.release()
            rng = _seed(params["random_state"])
            # before the split: the helper works meanwhile
            prepared = FirstOrder(n, rng, _early_first_order(params, (n, d, k), sp.issparse(data.X),
                                                             data.X.dtype.itemsize, rng))
        try:
            train_idx, val_idx = _split(n, params, prepared.rng)
            return self._train(params, data, state, init, prepared.rng, train_idx, val_idx, prepared.job)
        finally:
            prepared.release()  # the helper thread is free again, also when the set-up raised

    def _train(self, params, data, state, init, rng, train_idx, val_idx, first) -> FitResult:
        """``fit`` after the seed and the split; ``first`` holds the first epoch's order if drawn already."""
        sw = _normalised_weights(data.sample_weight, train_idx)
        kept = val_idx if sw is None else val_idx[sw[val_idx] > 0]  # the held-out rows that count
        weighted = kept.size
        if val_idx.size and weighted < 2:
            # (as _split's check: with one weighted row every score was 0, the "best" epoch the first, whose
            # coefficients came back unwarned)
            raise ValueError(
                f"early_stopping=True scores R^2 on validation_fraction={params['validation_fraction']} of the "
                f"{data.X.shape[0]} rows, {weighted} of them of nonzero sample_weight; "
                "R^2 needs at least two. Raise validation_fraction, weight those rows, or set early_stopping=False."
            )
        if val_idx.size:
            held = data.Y[kept]
            check_validation_targets(held.min(axis=0), held.max(axis=0),
                                     f"validation_fraction={params['validation_fraction']} of the {data.X.shape[0]} "
                                     "rows", "raise validation_fraction, draw another split (random_state)")
        if init is not None:
            state = None  # coef_init / intercept_init override a warm start
        if _continues(state, params, data) and not _penalty_fits(state.affine, params, data.X, self.method):
            # a warm start that adds a ridge penalty to a fit run under a per-column scaling (where the penalty
            # would not be uniform): from its coefficients in the user's units, with fresh optimizer state
            init, state = _raw_params(state), None
        # The whole fit, the rate and the monitored losses live in the rescaled space: a warm start's the kept
        # map's, unless it is stale for these rows (their rate under it, taken once, is also the one it runs at)
        rows_rate, kept = None, False
        if _continues(state, params, data):
            mapped, mapped_params = _under(state.affine, data), _penalised(params, state.affine, self.method)
            rows_rate = self._rows_rate(mapped_params, mapped, state, train_idx, sw, rng)
            if self._stale(state, rows_rate):
                init, state, rows_rate = _raw_params(state), None, None
            else:
                affine, data, params, kept = state.affine, mapped, mapped_params, True
        if not kept:
            per_column = ridge_per_column(self.method, params, data.X, lazy_rule(self.method, params))
            affine = choose_affine(params, data.X, schedule_name(params), train_idx, sw, per_column=per_column,
                                   floor=floors_rare_columns(self.method, params, train_idx.shape[0], per_column))
            data, params = _under(affine, data), _penalised(params, affine, self.method)
        if init is not None:
            init = _mapped_init(affine, init)
        # A fresh fit keeps what SGD's and the momentum rules' rate was taken from, as a first partial_fit call
        # does: a later partial_fit on other rows is then guarded (rate_guard) under this fit's map, in which a
        # column stored a few times with small values is scaled by their inverse (new rows holding it took steps
        # of that multiple: R^2 0.972 -> -195 on the new rows in one silent call, or a DivergenceError).
        basis = {} if not _continues(state, params, data) else None
        st = self._start(params, data, state, train_idx, sw, rng, init=init, zero=zero_image(affine, data.X),
                         basis=basis, rows_lr=None if rows_rate is None else rows_rate[0])
        st.affine = affine
        if basis is not None:
            st.basis = basis or None
        spec, train = make_spec(self.method, params), self._train_controls(params, st)
        early = params["early_stopping"]
        steps = -(-train_idx.shape[0] // train.batch_size)
        stopping, val_scores = make_stopping(params, st, validation=early, steps_per_epoch=steps), []
        epochs = max_epochs(params, steps)
        label, params = max_epochs_label(params, epochs), {**params, "max_epochs": epochs}  # the schedules' horizon
        st.lr = None  # a fit (also a warm start) begins at the base rate
        # every epoch's order goes into one buffer, kept for the next fit (the first order's is kept by _fit)
        spare = None if first is None else first.buffer()
        for epoch in range(epochs):
            t0 = time.perf_counter()
            order, pending = train_idx, None
            if params["shuffle"]:
                if epoch == 0 and first is not None:  # drawn already, or being drawn (_early_first_order)
                    order, pending = spare, first
                else:
                    if spare is None:
                        spare = order_buffer(train_idx.shape[0])
                    # without a split the shuffle writes the rows 0 .. n-1 itself
                    order = draw_order(rng, train_idx if early else train_idx.shape[0], out=spare)
            lr = self.epoch_lr(params, st, epoch)
            st.loss_curve.append(self._epoch(spec, train, data, sw, order, st, lr, epoch + 1, pending,
                                             first_pass=epoch == 0))
            st.learning_rates.append(lr)
            st.epochs += 1
            if early:
                val_scores.append(self._validation_score(data, val_idx, self.current_params(params, st)))
                current = 1.0 - val_scores[-1]  # higher scores are better; track as a loss (1 for the null model)
            else:
                current = st.loss_curve[-1]
            if params["verbose"]:
                extra = f", validation R^2 {val_scores[-1]:.6f}" if early else ""
                print(f"{self.method} epoch {epoch + 1}: loss {st.loss_curve[-1]:.6g}, lr {lr:.4g}, "
                      f"steps {st.t}{extra}, {1e3 * (time.perf_counter() - t0):.1f} ms")
            stop = stopping.update(current, self.current_params(params, st))
            if isinstance(stopping, RatePlateau):
                st.lr = stopping.lr
            if stop:
                break
        if first is None and spare is not None:
            keep_order_buffer(spare)
        checked = isinstance(stopping, RatePlateau) and not early
        reached = checked and st.epochs >= REACHED_CHECK_MIN_EPOCHS
        stopping.warn_unless_stopped(self.method, label, lambda: eps_note(self.method, params, st) + (
            _check_plateau_stop(self.method, params, spec, data, sw, self.current_params(params, st),
                                stopping.floor, reached=True) if reached else ""))
        if checked and stopping.stopped:
            _check_plateau_stop(self.method, params, spec, data, sw, self.current_params(params, st),
                                max(stopping.best, stopping.floor))
        return self.result(st, stopping, val_scores if early else None, params=params)

    def partial_fit(self, params: dict, data, state: IterState | None = None, *,
                    sweep: Sweep | None = None, init=None) -> FitResult:
        """One pass over the given rows, continuing the optimizer state, step count and row-order RNG.

        As ``LinearRegressor.partial_fit`` (``sweep=None``): the schedule advances one epoch per call;
        ``tol`` and ``early_stopping`` do not apply (as in scikit-learn); ``learning_rate="auto"`` is resolved
        on the first call's rows, while a numeric ``learning_rate`` is read at every call (as a warm start
        does), so a caller may set each pass's rate; the weights are divided by their mean over this call's
        rows, so they are relative within a call only. As one chunk's pass of a streamed epoch: see
        :class:`Sweep`, whose ``weight_mean`` divides every chunk by one constant instead. ``init``
        (``(coef (k, d), intercept (k,))`` in the user's units) starts a first call there, with fresh optimizer
        state (after another solver's fit).
        """
        if state is None or sweep is not None:
            return self._partial_fit(params, data, state, sweep, init)
        rewind = state.rewinder()
        try:
            return self._partial_fit(params, data, state, sweep, init)
        except DivergenceError as diverged:
            # The call's limit takes the loss where it starts only now, as a fresh fit from coef_init does: a call
            # back from targets of a larger scale (y x 1e6, then y) starts far above the kept limit and raised
            # DivergenceError where a first call converges. Only where the call starts coming down (below the
            # earlier targets' scale, the earlier call's mean loss, or where such a descent began), so that a fit
            # diverging slowly over calls is still caught; not for a stream's chunks, parts of one fit. Asked only
            # here, as it costs a pass over X (a third of a call). The call runs again from the same state (the row
            # order's RNG rewound), or the error stands.
            rewind()
            try:
                return self._partial_fit(params, data, state, sweep, init, from_start=True)
            except _LimitStands:
                raise diverged from None

    def _partial_fit(self, params: dict, data, state: IterState | None, sweep: Sweep | None,
                     init=None, from_start: bool = False) -> FitResult:
        if state is None and sweep is None:  # (a first call's rows set the scale; a stream's chunks are parts)
            refuse_underflowing_targets(self.method, params, data.Y, data.sample_weight)
        was_dense = not sp.issparse(data.X)
        data = _as_lazy_data(self.method, params, data)
        if was_dense and state is not None and not _map_runs_on(state.affine, data.X):
            init, state = _raw_params(state), None  # (see _map_runs_on)
        if state is not None and data.X.dtype != state.weights.dtype:
            # later rows in another precision (a float64 chunk after float32 ones): the state's, as the closed
            # form's statistics take them; the kernels are typed by it
            data = _cast_data(data, state.weights.dtype)
        n = data.X.shape[0]
        own_rows = sweep is None or sweep.rows is None  # all rows: the shuffle writes them into a kept buffer
        rows = all_rows(n) if own_rows else sweep.rows
        sw = _normalised_weights(data.sample_weight, rows, None if sweep is None else sweep.weight_mean)
        call_limit = None  # this call's own divergence limit, where it raises the state's (below)
        if state is not None and not _penalty_fits(state.affine, params, data.X, self.method):
            # a ridge penalty added after a fit run under a per-column scaling (where it would not be uniform):
            # on from its coefficients in the user's units, as a first call (rate and optimizer state afresh)
            init, state = _raw_params(state), None
        if state is not None:
            affine = state.affine
        else:  # a first call scales badly scaled columns, for this and later calls (a stream: as its sample said)
            affine = sweep.affine if sweep is not None else choose_scaling(
                params, data.X, rows, sw, ridge_per_column(self.method, params, data.X, lazy_rule(self.method, params)))
        data, params = _under(affine, data), _penalised(params, affine, self.method)
        if state is None and init is not None:
            init = _mapped_init(affine, init)
        if state is None:
            # (a one-shot stream's sweep has no rate of its own: its first chunk's, as a first partial_fit call's)
            basis = {} if sweep is None or sweep.lr0 is None else None
            st = self._start(params, data, None, rows, sw, _seed(params["random_state"]),
                             lr0=None if sweep is None else sweep.lr0, init=init, basis=basis,
                             zero=zero_image(affine, data.X))
            st.affine, st.basis = affine, basis or None
        else:
            spec = make_spec(self.method, params)
            basis = None if state.basis is None else dict(state.basis)
            if basis is not None and basis.get("pending") and (sweep is None or sweep.lr0 is None) \
                    and params["learning_rate"] == "auto":
                # The rate's first call left no gradient (one row, constant targets: every residual zero, so its
                # steps moved nothing) and the adaptive rules' rate, a distance, fell back to 1e-3 whatever the
                # targets' scale (R^2 -0.39 to -1.7 after 245 calls of 100 rows): taken from this call's rows.
                basis = {}
                lr0 = _ridge_capped(spec, params, state, auto_learning_rate(
                    spec, data, rows, sw, params, state.weights, basis=basis, zero=zero_image(affine, data.X)))
            else:
                lr0 = _ridge_capped(spec, params, state, decay_capped(spec, state.lr0)) \
                    if params["learning_rate"] == "auto" else float(params["learning_rate"])
            st = state.continued(lazy_rule(self.method, params), loss_curve=list(state.loss_curve), lr0=lr0,
                                 lr=state.lr if lr0 == state.lr0 else None,
                                 rate_ridge=max(state.rate_ridge, rate_penalty(spec, params)),
                                 learning_rates=list(state.learning_rates), watch=None, basis=basis or None)
            if st.basis is not None and "L" in st.basis and sweep is None and params["learning_rate"] == "auto":
                rate_guard(st, data, sw, params)
            # The divergence limit, from the first call's or chunk's all-zero loss, is raised to this call's: a
            # stream's later chunk holding a row of weight 1e12 (its chunks divided by the stream's mean weight,
            # the first chunk's rows weigh 1e-9) exceeded 1e10 times the first chunk's loss at any rate, and the
            # DivergenceError advised a smaller rate (fit on the same rows succeeds).
            # (for this call only: kept, one call's large target left later calls' divergence unseen)
            here = _kernels.mean_loss_zero(data.Y, None if own_rows else rows, sw, LOSSES[params["loss"]],
                                           params["epsilon"])
            st.targets_loss = here if np.isfinite(here) else 0.0
            if np.isfinite(here) and here > 0:
                if not np.isfinite(st.loss_limit):
                    # a first call of all-zero targets set no limit (its loss is 0): the first call with a loss
                    # sets it, for later calls too (else no divergence after it was ever caught: 1e91)
                    st.loss_limit = DIVERGENCE_FACTOR * here
                else:
                    call_limit = max(st.loss_limit, DIVERGENCE_FACTOR * here)
            if from_start:  # (see partial_fit)
                with np.errstate(over="ignore", invalid="ignore"):
                    at = mean_loss(data, rows, sw, st.weights, LOSSES[params["loss"]], params["epsilon"])
                # coming down only: from the earlier targets' scale (COMING_DOWN), from the earlier call's mean
                # loss, or from where the descent that an earlier call was let in for started (momentum overshoots
                # on the way down: a later call started above the earlier one's mean, and raised)
                down = max(COMING_DOWN * state.targets_loss, state.loss_curve[-1] if state.loss_curve else 0.0,
                           state.descent_from)
                used = st.loss_limit if call_limit is None else call_limit
                if not (np.isfinite(at) and at <= down and DIVERGENCE_FACTOR * at > used):
                    raise _LimitStands
                call_limit, st.descent_from = DIVERGENCE_FACTOR * at, max(state.descent_from, at)
        if st.recentre:  # (the first chunk of a warm-started stream: Epochs.run)
            st.recentre = False
            if _centred(params):
                _recentre_intercepts(data, rows, sw, st)
        spec, train = make_spec(self.method, params), self._train_controls(params, st)
        if sweep is not None:
            # A minibatch never spans chunks, so a chunk ends on a short one. Its mean took a full step: rows of
            # small chunks weighed up to batch_size times more than the others, a biased fixed point (chunks of 2-7
            # rows between 150-row ones: 0.8-1% above the optimum, silently). Padded, every row weighs 1 / batch_size.
            train = train._replace(pad_rows=train.batch_size)
        if call_limit is not None:
            train = train._replace(loss_limit=call_limit)
        if sweep is None and schedule_name(params) == "plateau":
            st.watch = self._watched(params, spec, train, data, sw, st, state)
        order = rows
        if params["shuffle"]:
            order = draw_order(st.rng, n, out=order_buffer(n)) if own_rows else draw_order(st.rng, rows)
        epoch = st.epochs if sweep is None else sweep.epoch
        lr = self.epoch_lr(params, st, epoch)
        if sweep is None and params["learning_rate"] == "auto":  # a numeric rate is taken as given
            lr *= st.rate_factor
        st.loss_curve.append(self._epoch(spec, train, data, sw, order, st, lr, epoch + 1, first_pass=sweep is None))
        if order is not rows:
            keep_order_buffer(order)
        st.learning_rates.append(lr)
        st.epochs = epoch + 1
        if st.descent_from and st.loss_curve[-1] <= COMING_DOWN * st.targets_loss:
            st.descent_from = 0.0  # down at these targets' scale: the descent is over
        if params["verbose"] and sweep is None:
            print(f"{self.method} partial_fit pass {st.epochs}: loss {st.loss_curve[-1]:.6g}, lr {lr:.4g}")
        return self.result(st, n_iter=st.epochs, params=params)

    def _watched(self, params, spec, train: EpochCtl, data, sw, st: IterState, state: IterState | None) -> PassWatch:
        """The :class:`PassWatch` of a ``partial_fit`` call under the plateau rule, having recorded this call's
        chunk (which sets ``st.lr``, this call's rate): a new one on a first call, after ``fit`` or a change of
        the base rate. The parameters it keeps are a previous state's arrays, which no pass writes again (see
        :meth:`IterState.continued`), or a copy of a first call's."""
        n_rows, k_d = data.X.shape[0], data.X.shape[1] * data.Y.shape[1]
        n_steps = -(-n_rows // train.batch_size)
        rows = watch_rows(n_rows)
        fresh = state is None or state.watch is None or st.lr is None
        if fresh:
            st.lr = st.lr0 if st.lr is None else st.lr
            now = self.current_params(params, st).copy() if state is None else self.current_params(params, state)
            watch = PassWatch(st.lr0, st.lr, PLATEAU_FLOOR * st.null_loss, epochs_per_round(n_steps), now)
        else:
            watch, now = state.watch.copied(), self.current_params(params, state)
        # a strided view of dense X; CSR's slice copies, so all rows (2,048 or fewer) are read in place (100-row
        # calls of hashed rows: the copy cost 0.1 ms of 2)
        X, Y = (data.X, data.Y) if rows.step == 1 else (data.X[rows], data.Y[rows])
        key = chunk_key(X, Y, data.X.shape)
        new_rows = not fresh and watch.plateau is None and key not in watch.seen
        # The ridge term of each vector compared, O(d) apiece (2^18 columns: 0.2 ms each, most of a 100-row call's
        # time outside the kernel): before's and ref's as the calls that had them as now took them, unless the
        # penalty changed since (ridge_key: a new alpha gives the map a new array); now's as the last pass took it
        # under a map, whose coef_ is a copy (to_raw), else afresh: coef_ is then a view of now, which the user
        # may have set.
        pen_key = ridge_key(spec, train)
        known = {id(v): term for v, k, term in watch.penalties if same_ridge(k, pen_key) and v is not now}
        if state is not None and state.affine is not None and state.ridge_term:
            v, k, term = state.ridge_term
            if v is now and same_ridge(k, pen_key):
                known[id(now)] = term
        taken = {}

        def penalty(p: np.ndarray) -> float:
            term = known.get(id(p))
            if term is None:
                term = penalty_term(spec, train, p, k_d)
            taken[id(p)] = term
            return term

        stats = pass_comparison(X, Y, None if sw is None else sw[rows], now, watch.before if new_rows else None,
                                watch.ref, LOSSES[params["loss"]], params["epsilon"], penalty)
        if not fresh:
            st.lr = watch.record(key, stats, n_rows, n_steps, now)
            watch.before = now
        else:  # the first call's chunk begins the first epoch; there is no previous call to judge
            watch.remember(key, stats[0], n_rows, n_steps)
        watch.penalties = tuple((v, pen_key, taken[id(v)]) for v in (watch.before, watch.ref)
                                if v is not None and id(v) in taken)
        return watch

    @staticmethod
    def _validation_score(data, val_idx, p) -> float:
        d, k = data.X.shape[1], data.Y.shape[1]
        coef, intercept = split_params(p, d, k)
        pred = rows_times(data.X[val_idx], coef) + intercept
        sw = None if data.sample_weight is None else data.sample_weight[val_idx]
        if sw is not None and sw.any():  # relative weights: scaled so that r2_score's sums cannot overflow
            sw = sw / weight_mean(sw)
        return float(r2_score(data.Y[val_idx], pred, sample_weight=sw))

    def result(self, st: IterState, stopping: Stopping | None = None, val_scores: list | None = None, *,
               n_iter: int | None = None, params: dict | None = None) -> FitResult:
        """The fitted model of ``st`` and its attributes; a validation ``stopping`` rule's best parameters,
        when it kept some, replace the last ones (in ``st`` too). ``n_iter`` defaults to the epoch count.
        With ``average`` (in ``params``) the averaged parameters are reported once averaging has started."""
        reported = st.weights if params is None else self.current_params(params, st)
        if stopping is not None and stopping.best_params is not None:
            st.weights = reported = stopping.best_params  # as scikit-learn's MLP: keep the best validation score's
        d, k = st.dims
        # Views of the state's vector (a fit's, or a pass's, last word on it: every later fit or pass steps a copy,
        # see _start and _partial_fit), as SGDRegressor's coef_ is the weights it continues from; the copy took
        # 0.1 ms of the work around a sparse epoch (2^18 coefficients).
        coef, intercept = split_params(reported, d, k)
        if st.affine is not None:
            coef, intercept = st.affine.to_raw(coef, intercept)
        attrs = {
            "n_iter_": len(st.loss_curve) if n_iter is None else n_iter,
            "t_": st.t,
            "loss_curve_": list(st.loss_curve),
            "best_loss_": float(min(st.loss_curve)),
            "solver_": self.method,
            "learning_rate_": st.lr0,
            "learning_rates_": list(st.learning_rates),
            "validation_scores_": val_scores,
        }
        if val_scores is not None:
            attrs["best_validation_score_"] = max(val_scores)
        return FitResult(coef=coef, intercept=intercept, state=st, attrs=attrs)


SOLVERS: dict[str, IterativeSolver] = {name: IterativeSolver(name) for name in optim.OPTIMIZERS}
