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

import contextlib
import dataclasses
import os
import time
import warnings
from typing import NamedTuple

import numpy as np
from sklearn.metrics import r2_score
from sklearn.utils import check_random_state
from sklearn.utils.validation import _assert_all_finite
from threadpoolctl import threadpool_limits

from fastopt import _kernels, optim
from fastopt._iterative_lr import auto_learning_rate, mean_loss, sample_learning_rate
from fastopt._result import FitResult
from fastopt.exceptions import ConvergenceWarning, DivergenceError

# A minibatch whose mean loss exceeds this multiple of the starting loss has diverged: gradient descent that is
# unstable grows the loss geometrically, so it crosses this bound within a few steps, long before overflow,
# while a stable run never comes near it (its minibatch losses stay within outlier noise of the start).
DIVERGENCE_FACTOR = 1e10

LOSSES = {"squared_error": optim.Loss.SQUARED_ERROR, "absolute_error": optim.Loss.ABSOLUTE_ERROR,
          "huber": optim.Loss.HUBER}

# Standard deviation of the "random" initialisation of the weights (intercepts start at zero).
RANDOM_INIT_SCALE = 0.01


class Train(NamedTuple):
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
        Threads per epoch as the user asked (None: :func:`epoch_threads` decides); not read by the kernel.
    """

    batch_size: int
    loss: int
    epsilon: float
    clip_norm: float | None
    loss_limit: float
    n_threads: int | None = None


# A second thread pays off when each half-minibatch holds at least this much of X (the exchange per step costs
# about a microsecond; measured with bench/scaling_epoch.py --threads) and the epoch has enough steps to repay
# handing it to the helper thread (a few microseconds; at 16 steps of d = 100 the two are even).
TEAM_MIN_HALF_BYTES = 8192
TEAM_MIN_STEPS = 16


def _blas_guard(params: dict):
    """One BLAS thread while a fit may run two-thread epochs: a multi-threaded BLAS call leaves worker threads
    spinning on the other cores for a while after it returns (OpenBLAS: about 0.1 s), and an epoch's helper
    thread competing with one for a core is slower than no helper at all (measured 6x on two cores)."""
    n_threads = params.get("n_threads")
    if n_threads is None or n_threads < 2:
        return contextlib.nullcontext()
    return threadpool_limits(limits=1, user_api="blas")


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


@dataclasses.dataclass
class IterState:
    """What an iterative fit keeps for ``partial_fit`` and ``warm_start``.

    Attributes
    ----------
    params : ndarray of shape (n_params,)
        Weights (k, d) row-major, then the intercepts if fitted.
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
    """

    params: np.ndarray
    opt_state: np.ndarray
    t: int
    epochs: int
    rng: np.random.Generator
    lr0: float
    loss_limit: float
    loss_curve: list
    dims: tuple


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
    """

    epoch: int
    rows: np.ndarray | None = None
    lr0: float | None = None
    weight_mean: float | None = None


class Stopping:
    """The stopping rule of ``fit``, shared with streamed fits.

    Each epoch reports the monitored loss (the training loss, or minus the validation score). Training stops
    once the loss has failed to improve on the best so far by ``tol`` for ``n_iter_no_change`` epochs in a
    row; ``tol=None`` never stops. When monitoring a validation score (``keep_best``) the parameters of the
    best epoch are kept, to be restored at the end, as scikit-learn's MLP does.
    """

    def __init__(self, tol: float | None, patience: int, keep_best: bool):
        self.tol, self.patience, self.keep_best = tol, patience, keep_best
        self.best, self.no_improvement, self.best_params, self.stopped = np.inf, 0, None, False

    def update(self, current: float, params: np.ndarray | None) -> bool:
        """Record one epoch's monitored loss (and its parameters); True when training should stop."""
        if self.tol is None:
            return False
        self.no_improvement = self.no_improvement + 1 if current > self.best - self.tol else 0
        if current < self.best:
            self.best = current
            if self.keep_best:
                self.best_params = params.copy()
        self.stopped = self.no_improvement >= self.patience
        return self.stopped

    def warn_unless_stopped(self, method: str, max_epochs: int) -> None:
        if self.tol is not None and not self.stopped:
            warnings.warn(
                f"solver={method!r} reached max_epochs={max_epochs} without the monitored loss settling within "
                f"tol={self.tol}; increase max_epochs or adjust the learning rate.",
                ConvergenceWarning,
            )


def make_spec(method: str, params: dict) -> optim.Optimizer:
    """The optimizer spec for ``method`` from the estimator's hyperparameters (``alpha`` is the weight decay)."""
    cls = optim.OPTIMIZERS[method]
    momentum = params["momentum"]
    if momentum is None:  # the rule's conventional default: heavy ball 0.9, RMSProp without a buffer
        momentum = 0.0 if cls is optim.RMSProp else 0.9
    available = {
        "weight_decay": params["alpha"], "momentum": momentum, "dampening": params["dampening"],
        "rho": params["rho"], "beta1": params["beta1"], "beta2": params["beta2"], "eps": params["eps"],
        "centered": params["centered"], "amsgrad": params["amsgrad"],
    }
    names = {f.name for f in dataclasses.fields(cls)}
    return cls(**{key: value for key, value in available.items() if key in names})


def _seed(random_state) -> np.random.Generator:
    # An int random_state gives the same Generator every fit; a RandomState instance advances as scikit-learn's.
    return np.random.default_rng(check_random_state(random_state).randint(0, 2**31 - 1))


def _split(n: int, params: dict, rng: np.random.Generator):
    """Training and validation row indices (int64); the validation set is empty without early stopping."""
    if not params["early_stopping"]:
        return np.arange(n, dtype=np.int64), np.empty(0, dtype=np.int64)
    n_val = int(np.ceil(params["validation_fraction"] * n))
    if n_val >= n:
        raise ValueError(
            f"validation_fraction={params['validation_fraction']} leaves no training rows out of {n}; "
            "lower it or set early_stopping=False."
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
        mean = float(np.mean(sample_weight[train_idx], dtype=np.float64))
        if mean == 0:
            raise ValueError("sample_weight is zero on every training row (after the validation split).")
    return np.ascontiguousarray(sample_weight / sample_weight.dtype.type(mean))


def _initial_params(params: dict, d: int, k: int, dtype, rng) -> np.ndarray:
    p = np.zeros(k * d + (k if params["fit_intercept"] else 0), dtype=dtype)
    if params["init"] == "random":
        p[: k * d] = RANDOM_INIT_SCALE * rng.standard_normal(k * d)
    return p


def split_params(p: np.ndarray, d: int, k: int):
    """``coef`` (k, d) and ``intercept`` (k,) from a parameter vector (zero intercepts when not fitted)."""
    coef = p[: k * d].reshape(k, d).copy()
    intercept = p[k * d :].copy() if p.shape[0] > k * d else np.zeros(k, dtype=p.dtype)
    return coef, intercept


class IterativeSolver:
    """One minibatch optimizer behind ``LinearRegressor(solver=method)``."""

    losses = frozenset(LOSSES)
    # Dense epochs only for now: validation refuses sparse X for these with a clear TypeError.
    supports_sparse = False

    def __init__(self, method: str):
        self.method = method

    @staticmethod
    def checks_finite_X(params: dict) -> bool:
        """Whether the first epoch sees every row of X (so validation may skip its own pass over X).

        Not with ``early_stopping``: held-out rows are only predicted, not passed through the kernel.
        """
        return not params["early_stopping"]

    # ------------------------------------------------------------ set-up shared by fit and partial_fit
    def _start(self, params, data, state, train_idx, sw, rng, lr0: float | None = None) -> IterState:
        d, k = data.X.shape[1], data.Y.shape[1]
        spec = make_spec(self.method, params)
        fresh = _initial_params(params, d, k, data.X.dtype, rng)
        if state is not None and state.dims == (d, k) and state.params.shape == fresh.shape \
                and state.params.dtype == fresh.dtype:
            # Continue from the previous coefficients and moments, under this fit's learning rate.
            lr0 = state.lr0 if params["learning_rate"] == "auto" else float(params["learning_rate"])
            return dataclasses.replace(state, params=state.params.copy(), opt_state=state.opt_state.copy(),
                                       rng=rng, loss_curve=[], lr0=lr0)
        loss = LOSSES[params["loss"]]
        if params["learning_rate"] != "auto":
            lr0 = params["learning_rate"]
        elif lr0 is None:
            lr0 = auto_learning_rate(spec, data, train_idx, sw, params, fresh, rng)
        start_loss = max(mean_loss(data, train_idx, sw, None, loss, params["epsilon"]),
                         mean_loss(data, train_idx, sw, fresh, loss, params["epsilon"]) if fresh.any() else 0.0)
        limit = DIVERGENCE_FACTOR * start_loss if start_loss > 0 else np.inf
        return IterState(params=fresh, opt_state=spec.init_state(fresh.shape[0], fresh.dtype), t=0, epochs=0,
                         rng=rng, lr0=float(lr0), loss_limit=limit, loss_curve=[], dims=(d, k))

    def _epoch(self, spec, train, data, sw, order, st: IterState, lr: float, epoch_no: int) -> float:
        d, k = data.X.shape[1], data.Y.shape[1]
        work = np.empty(6 * st.params.shape[0] + 2 * k, dtype=st.params.dtype)
        threads = epoch_threads(train.n_threads, order.shape[0], train.batch_size, d, k, data.X.dtype.itemsize)
        status, t, loss, bad = _kernels.epoch(int(spec.rule), spec.hyper, train, data.X, data.Y, sw, order,
                                              st.params, st.opt_state, work, st.t, lr, threads)
        if status == _kernels.Status.BAD_ARGUMENT:
            raise RuntimeError(f"internal error: the epoch kernel rejected its arguments (step {bad}).")
        if status == _kernels.Status.NONFINITE_LOSS:
            # fit leaves X's finiteness to this pass (every training row is read in the first epoch, and a NaN
            # or inf there makes the loss non-finite even at zero weight): name bad input before blaming the
            # learning rate.
            _assert_all_finite(data.X, input_name="X", estimator_name="LinearRegressor")
        if status != _kernels.Status.OK:
            what = ("the loss or gradient became NaN or infinite" if status == _kernels.Status.NONFINITE_LOSS
                    else f"a minibatch loss exceeded {DIVERGENCE_FACTOR:.0e} times the starting loss")
            raise DivergenceError(
                f"solver={self.method!r} diverged in epoch {epoch_no}, step {bad}: {what} "
                f"(learning rate {lr:.4g}). Try a smaller learning_rate, learning_rate='auto', a decaying "
                "schedule, or clip_norm."
            )
        st.t = t
        if spec.rule != optim.Rule.ADAMW and spec.weight_decay > 0:
            k_d = data.X.shape[1] * k
            loss += 0.5 * spec.weight_decay * float(np.dot(st.params[:k_d], st.params[:k_d]))
        return float(loss)

    def _train_controls(self, params, st: IterState) -> Train:
        return Train(batch_size=int(params["batch_size"]), loss=LOSSES[params["loss"]],
                     epsilon=float(params["epsilon"]), clip_norm=params["clip_norm"], loss_limit=st.loss_limit,
                     n_threads=params.get("n_threads"))

    def epoch_lr(self, params, st: IterState, epoch: int) -> float:
        """The scheduled learning rate of the 0-based ``epoch``."""
        return optim.schedule_lr(params["schedule"], st.lr0, epoch, params["max_epochs"],
                                 end_factor=params["end_factor"], power_t=params["power_t"], gamma=params["gamma"])

    def stream_learning_rate(self, params, X, Y, w, n_train, rng) -> float:
        """``learning_rate="auto"`` for a streamed fit, from a sample of its training rows
        (:func:`fastopt._iterative_lr.sample_learning_rate`), with the first gradient taken at the zero model."""
        spec = make_spec(self.method, params)
        d, k = X.shape[1], Y.shape[1]
        p0 = np.zeros(k * d + (k if params["fit_intercept"] else 0))
        return sample_learning_rate(spec, X, Y, w, params, p0, n_train, rng)

    # ------------------------------------------------------------ the solver protocol
    def fit(self, params: dict, data, state: IterState | None = None) -> FitResult:
        """Train for up to ``max_epochs`` epochs, stopping early as the parameters ask."""
        with _blas_guard(params):
            return self._fit(params, data, state)

    def _fit(self, params: dict, data, state: IterState | None) -> FitResult:
        rng = _seed(params["random_state"])
        train_idx, val_idx = _split(data.X.shape[0], params, rng)
        sw = _normalised_weights(data.sample_weight, train_idx)
        st = self._start(params, data, state, train_idx, sw, rng)
        spec, train = make_spec(self.method, params), self._train_controls(params, st)
        early = params["early_stopping"]
        stopping, val_scores = Stopping(params["tol"], params["n_iter_no_change"], keep_best=early), []
        for epoch in range(params["max_epochs"]):
            t0 = time.perf_counter()
            order = rng.permutation(train_idx) if params["shuffle"] else train_idx
            lr = self.epoch_lr(params, st, epoch)
            st.loss_curve.append(self._epoch(spec, train, data, sw, order, st, lr, epoch + 1))
            st.epochs += 1
            if early:
                val_scores.append(self._validation_score(data, val_idx, st.params))
                current = -val_scores[-1]  # higher scores are better; track as a loss
            else:
                current = st.loss_curve[-1]
            if params["verbose"]:
                extra = f", validation R^2 {val_scores[-1]:.6f}" if early else ""
                print(f"{self.method} epoch {epoch + 1}: loss {st.loss_curve[-1]:.6g}, lr {lr:.4g}, "
                      f"steps {st.t}{extra}, {1e3 * (time.perf_counter() - t0):.1f} ms")
            if stopping.update(current, st.params):
                break
        stopping.warn_unless_stopped(self.method, params["max_epochs"])
        return self.result(st, stopping, val_scores if early else None)

    def partial_fit(self, params: dict, data, state: IterState | None = None, *,
                    sweep: Sweep | None = None) -> FitResult:
        """One pass over the given rows, continuing the optimizer state, step count and row-order RNG.

        As ``LinearRegressor.partial_fit`` (``sweep=None``): the schedule advances one epoch per call;
        ``tol`` and ``early_stopping`` do not apply (as in scikit-learn); ``learning_rate="auto"`` is resolved
        on the first call's rows, while a numeric ``learning_rate`` is read at every call (as a warm start
        does), so a caller may set each pass's rate; the weights are divided by their mean over this call's
        rows, so they are relative within a call only. As one chunk's pass of a streamed epoch: see
        :class:`Sweep`, whose ``weight_mean`` divides every chunk by one constant instead.
        """
        with _blas_guard(params):
            return self._partial_fit(params, data, state, sweep)

    def _partial_fit(self, params: dict, data, state: IterState | None, sweep: Sweep | None) -> FitResult:
        n = data.X.shape[0]
        rows = np.arange(n, dtype=np.int64) if sweep is None or sweep.rows is None else sweep.rows
        sw = _normalised_weights(data.sample_weight, rows, None if sweep is None else sweep.weight_mean)
        if state is None:
            st = self._start(params, data, None, rows, sw, _seed(params["random_state"]),
                             lr0=None if sweep is None else sweep.lr0)
        else:
            lr0 = state.lr0 if params["learning_rate"] == "auto" else float(params["learning_rate"])
            st = dataclasses.replace(state, params=state.params.copy(), opt_state=state.opt_state.copy(),
                                     loss_curve=list(state.loss_curve), lr0=lr0)
        spec, train = make_spec(self.method, params), self._train_controls(params, st)
        order = st.rng.permutation(rows) if params["shuffle"] else rows
        epoch = st.epochs if sweep is None else sweep.epoch
        lr = self.epoch_lr(params, st, epoch)
        st.loss_curve.append(self._epoch(spec, train, data, sw, order, st, lr, epoch + 1))
        st.epochs = epoch + 1
        if params["verbose"] and sweep is None:
            print(f"{self.method} partial_fit pass {st.epochs}: loss {st.loss_curve[-1]:.6g}, lr {lr:.4g}")
        return self.result(st, n_iter=st.epochs)

    @staticmethod
    def _validation_score(data, val_idx, p) -> float:
        d, k = data.X.shape[1], data.Y.shape[1]
        coef, intercept = split_params(p, d, k)
        pred = data.X[val_idx] @ coef.T + intercept
        sw = None if data.sample_weight is None else data.sample_weight[val_idx]
        return float(r2_score(data.Y[val_idx], pred, sample_weight=sw))

    def result(self, st: IterState, stopping: Stopping | None = None, val_scores: list | None = None, *,
               n_iter: int | None = None) -> FitResult:
        """The fitted model of ``st`` and its attributes; a validation ``stopping`` rule's best parameters,
        when it kept some, replace the last ones (in ``st`` too). ``n_iter`` defaults to the epoch count."""
        if stopping is not None and stopping.best_params is not None:
            st.params = stopping.best_params  # as scikit-learn's MLP: keep the best validation score's parameters
        d, k = st.dims
        coef, intercept = split_params(st.params, d, k)
        attrs = {
            "n_iter_": len(st.loss_curve) if n_iter is None else n_iter,
            "t_": st.t,
            "loss_curve_": list(st.loss_curve),
            "best_loss_": float(min(st.loss_curve)),
            "solver_": self.method,
            "learning_rate_": st.lr0,
            "validation_scores_": val_scores,
        }
        if val_scores is not None:
            attrs["best_validation_score_"] = max(val_scores)
        return FitResult(coef=coef, intercept=intercept, state=st, attrs=attrs)


SOLVERS: dict[str, IterativeSolver] = {name: IterativeSolver(name) for name in optim.OPTIMIZERS}
