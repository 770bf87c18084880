"""LinearRegressor: least squares, exactly or with the optimizers of deep learning."""
from __future__ import annotations

import copy
import functools
import math
import operator
import sys
from collections.abc import Callable, Iterable
from numbers import Integral, Real
from typing import TYPE_CHECKING, ClassVar

import numpy as np
from numpy.typing import ArrayLike
from sklearn import get_config
from sklearn.base import BaseEstimator, RegressorMixin, _fit_context
from sklearn.utils._param_validation import Interval, InvalidParameterError, StrOptions
from sklearn.utils.metaestimators import available_if
from sklearn.utils.validation import check_is_fitted

from fastopt import _iterative, _newton, _solvers, _streaming, optim
from fastopt._chunks import _all_zero, check_chunk
from fastopt._interrupts import uninterrupted
from fastopt._result import FitResult, Outcome
from fastopt._validation import beyond_range, check_fit_data, check_predict_data, is_sparse, solver_view
from fastopt.exceptions import ConvergenceWarning, _held, _warn

if TYPE_CHECKING:  # only for annotations: dask is an optional extra
    import dask.array

__all__ = ["LinearRegressor"]


def _warn_if_refit_alone(name: str, prior) -> None:
    """Warn that a later ``partial_fit`` call of a Krylov solver fits its own rows alone (from ``prior``'s
    coefficients): the earlier calls' rows no longer count, which a user of ``partial_fit`` (dask-ml's
    ``Incremental`` calls it once per block) would not expect."""
    if prior is not None and _solvers.SOLVERS[name].chunked == "passes":
        _warn(f"solver={name!r} cannot add this partial_fit call's rows to the earlier calls': it refits them "
              "alone, from the current coefficients, and the earlier rows no longer count (a Krylov solver reads "
              "its rows many times). For the least-squares fit of every chunk use solver='normal' (its "
              "partial_fit merges the chunks exactly) or fit_stream.", UserWarning)


def _dask_backend(*objs):
    """:mod:`fastopt._dask` when any of ``objs`` is a Dask collection, else None.

    A Dask collection can only exist once Dask has been imported, so an absent ``dask`` module answers
    "no" for free: ``import fastopt`` never pulls Dask in, and ``fastopt._dask`` is imported only here.
    """
    dask = sys.modules.get("dask")
    if dask is None or not any(dask.is_dask_collection(o) for o in objs):
        return None
    from fastopt import _dask

    return _dask


def _transactional(method):
    """Make a fitting method all-or-nothing: if it raises (bad input found late, divergence, a failing chunk
    source, KeyboardInterrupt), the estimator is restored exactly as it was before the call: unfitted, or the
    previous fit with its metadata, optimizer state and row-order generator, and a ``RandomState`` passed as
    ``random_state`` rewound. Solvers build new state objects and only the generators are advanced in place,
    so a shallow copy of the attributes plus a copy of the solver state is the whole snapshot."""

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        saved = dict(self.__dict__)
        state = saved.get("_solver_state")
        # A state that can say what a call changes in it in place saves only that (IterState: its generator; a
        # deep copy of its arrays cost 3 ms a fit at 2^18 parameters); any other is copied whole.
        if hasattr(state, "rewinder"):
            rewind = state.rewinder()
        else:
            copied = copy.deepcopy(state)

            def rewind():
                return copied
        random_state = self.random_state
        rs_state = random_state.get_state() if isinstance(random_state, np.random.RandomState) else None
        try:
            return method(self, *args, **kwargs)
        except BaseException:
            # The attributes put back in one assignment, and the restore repeated if a second Ctrl-C interrupts it
            # (the rewind and set_state can be): one between clearing the attributes and putting them back left
            # an estimator without its parameters (every later call an AttributeError).
            def restore():
                restored = dict(saved)
                if "_solver_state" in saved:
                    restored["_solver_state"] = rewind()
                self.__dict__ = restored
                if rs_state is not None:
                    random_state.set_state(rs_state)

            uninterrupted(restore)
            raise

    return wrapper


def _interval(name: str) -> Interval:
    """The range of optimizer hyperparameter ``name``, from the one table of bounds (:data:`fastopt.optim.BOUNDS`)."""
    low, high, low_closed, high_closed = optim.BOUNDS[name]
    closed = {(True, True): "both", (True, False): "left", (False, True): "right", (False, False): "neither"}
    return Interval(Real, low, None if math.isinf(high) else high, closed=closed[low_closed, high_closed])


# Parameter types compared by value in LinearRegressor._validate_params's key.
_PLAIN = frozenset({int, float, bool, str, np.float64})


@functools.cache
def _param_names(cls) -> tuple[str, ...]:
    return tuple(super(LinearRegressor, cls)._get_param_names())


@functools.cache
def _param_getter(cls) -> operator.attrgetter:
    names = _param_names(cls)
    getter = operator.attrgetter(*names)
    return getter if len(names) > 1 else (lambda obj: (getter(obj),))


class LinearRegressor(RegressorMixin, BaseEstimator):
    """Linear least-squares regression, solved in closed form, by Krylov methods or by minibatch optimizers.

    The closed form (``solver="normal"``) accumulates centred sufficient statistics blockwise and solves
    them by Cholesky, switching to a compiled tall-skinny QR that does not square the condition number when the
    problem is ill-conditioned (reported by ``solver_``, ``rcond_`` and ``rank_``, not by a warning); a
    rank-deficient design gets the minimum-norm solution and one :class:`~fastopt.exceptions.RankDeficientWarning`:
    from a pivoted Cholesky factorisation of the same normal equations when columns are exactly dependent (one-hot
    columns with an intercept, a constant column) and a pass over ``X`` confirms it, else from ``R`` with its zero
    columns (zero and constant columns of ``X``: coefficient 0) set aside, by a triangular solve or, below the
    rank cutoff, its SVD.
    A small ridge on such columns, whose normal equations Cholesky rejects, is solved by the same factorisation,
    with their null space lifted (the exact ridge solution has no component in it), without a warning.
    The Krylov solvers (``"cg"``: conjugate gradients on the normal equations, CGLS; ``"lsqr"``: Paige & Saunders,
    *ACM TOMS* 8(1), 1982) reach the same exact solution matrix-free, with memory O(n + d) and one compiled pass
    over ``X`` per iteration, for problems too wide for a ``d x d`` Gram (Goodfellow, Bengio & Courville, *Deep
    Learning*, 2016, sec. 8.6; see :mod:`fastopt._krylov`). The iterative solvers run a fused, compiled minibatch
    loop with the update rules of :mod:`torch.optim` (see :mod:`fastopt.optim` for each rule's formula).

    Sparse ``X`` (any ``scipy.sparse`` format) is fitted by the solvers that accept it, the closed form among
    them: its Gram matrix is accumulated from the nonzeros, never densifying ``X``; ``predict`` and ``score``
    accept sparse ``X`` whatever the solver and return dense arrays.

    Parameters
    ----------
    solver : {"auto", "normal", "qr", "cg", "lsqr", "newton", "sgd", "momentum", "nesterov", "adagrad", "rmsprop", \
            "adam", "adamw"}, default="auto"
        ``"auto"`` is the exact minimiser, chosen by the loss and, in ``fit``, by the kind and size of ``X``
        (``d`` features, ``n`` rows; the Gram fits when ``8 d^2 <= 256 MiB``, i.e. ``d <= 5792``):

        ==============================  =======================  =========================================
        loss, data                      solver                   why
        ==============================  =======================  =========================================
        robust loss                     ``"newton"``             exact minimiser (below)
        robust loss, incremental fit    ``"adam"`` (stochastic)  ``partial_fit``, ``fit_stream``, Dask (L1);
        or ``positive=True``            ``"sgd"`` on sparse rows an SGD step costs O(nonzeros); Newton
                                                                 takes no constraints (projected steps)
        robust loss, sparse ``X``       ``"sgd"`` (stochastic)   the absolute error (but on tiny data:
                                                                 Newton where 100 passes cost 5 ms by a cost
                                                                 model), and the Huber loss where
                                                                 Newton costs over 4 SGD fits (its ``O(d^3)``
                                                                 factorisations) or its Hessian would not
                                                                 fit; an SGD step costs O(nonzeros). Where
                                                                 that SGD fit warns that it has not
                                                                 converged, ``"newton"`` from its fit, kept
                                                                 if it converges within 1 s by a cost model
                                                                 (where at least 10 passes fit in that)
        Gram fits, ``n >= d`` or ridge  ``"normal"``             one pass, exact (QR fallback when needed);
                                                                 dense ``n < d``: the ``n x n`` system of
                                                                 the rows first (``"kernel_cholesky"``)
        Gram fits, ``n < d``, no ridge  ``"qr"``                 rank-deficient: minimum-norm; dense: the
                                                                 rows' system first, else QR/SVD
        sparse, Gram fits but costs     ``"lsqr"`` (``"cg"``     to round-off (``tol=1e-12``) within what
        30+ Krylov iterations (15+)     with a ridge), else      the closed form costs (``O(d^3)``, and
                                        the closed form          ``O(n d^2)`` densified if ill-posed)
        Gram too large, ``alpha > 0``   ``"cg"``                 the ridge bounds the condition number, so
                                                                 CGLS's cheaper iteration is as accurate
        Gram too large, ``alpha = 0``   ``"lsqr"``               the more stable Krylov method
        Gram too large, ``positive``    ``"sgd"`` (stochastic)   no Krylov solver takes the constraint:
        (sparse: or its densified                                projected steps, O(nonzeros) on sparse rows
        QR over 50 SGD fits)
        rows not seen yet               ``"normal"``             ``partial_fit``, ``fit_stream``
        rows not seen yet, Gram too     ``"sgd"``; ``"lsqr"``    a Krylov iteration reads every row: only a
        large                           (``"cg"``) on a stream   stream read again per iteration has them
        ``average`` set                 ``"sgd"``                averaging is the iterative solvers' (as
                                                                 ``SGDRegressor(average=...)``)
        ==============================  =======================  =========================================

        ``partial_fit`` judges by its first call's rows and ``fit_stream`` by a re-readable stream's first
        chunk (a one-shot stream cannot be looked at first: the table's choice without data). Under "auto"
        ``partial_fit`` goes on with the solver that the earlier ``fit`` or call ran where it takes more rows
        and the loss (the closed form, ``"qr"`` included, or SGD). After Newton's method on a robust loss, in
        memory, the iterative solver "auto" runs in ``partial_fit`` (Adam; SGD on sparse rows) starts from its
        coefficients (with fresh optimizer state, as from ``coef_init``); after
        another fit whose state cannot take more rows (a Krylov solver on sparse ``X``; Newton's method before a
        ``partial_fit`` on Dask arrays) it raises ``ValueError`` naming both.

        Otherwise dense, sparse and Dask ``X`` follow the same table. On sparse ``X`` "auto" estimates the
        closed form's cost in Krylov iterations from ``n``, ``d`` and the stored values; where it is at least 30
        (one-hot, text and hashed designs of a few thousand columns; 15 on 1.5 million stored values or more
        without a ridge or weights, where that estimate is closer and LSQR's 10-16 iterations gain) LSQR or
        CGLS runs first, ignoring ``tol``
        and ``max_iter``, and if it has not reached round-off within that many iterations the closed form fits
        after all (``solver_`` names what ran; no warning either way). Round-off is ``tol=1e-12``, and machine
        precision (within the same iterations) where the run's bound on its predictions' error exceeds 1e-10 of
        ``y``'s spread (nearly collinear columns); so do ``fit_stream`` on a re-readable
        stream whose first chunk is sparse and ``fit`` on Dask arrays of sparse blocks. Without a ridge on a
        rank-deficient design (one-hot columns with an intercept) LSQR's answer is the least-squares solution of
        least norm in units where each centred column has norm 1 (its Jacobi preconditioning, see
        ``precondition``: independent of the columns' units), with the closed form's predictions but not its
        coefficients, which are of least norm in the columns' own units; ``precondition="none"`` gives those
        (LSQR then needs more iterations: with this machine's cost model, 20-60x on one-hot designs, often
        more than the closed form's cost, which then runs). Where the closed form runs on sparse ``X`` and its
        Cholesky is rejected, the pivoted path for exactly dependent columns comes before the QR/SVD fallback,
        which densifies ``X`` by row blocks (``O(n d^2)``), as on dense ``X`` (the same coefficients and warning);
        under "auto" so does LSQR (CGLS with a ridge) to round-off within the iterations that fallback costs, the
        cheaper by the cost model first (in ``fit_stream`` and on Dask, where each iteration reads every chunk
        again, the pivoted path). An explicit ``"normal"`` keeps the closed form's answer (on a rank-deficient
        design the least-norm coefficients in the columns' own units) and so goes to QR/SVD: where that is slow,
        "auto" or ``"lsqr"`` give the same predictions. ``"cg"``
        (CGLS) and ``"lsqr"`` solve the squared error matrix-free (see ``max_iter``, ``tol`` and
        ``precondition``).
        ``"newton"`` fits ``"huber"`` by semismooth Newton and ``"absolute_error"`` by finite smoothing to the exact
        minimiser (:mod:`fastopt._newton`; Nocedal & Wright, *Numerical Optimization*, 2006; Madsen & Nielsen,
        SIAM J. Optim. 3, 1993); every iteration reads all rows, so it has no ``partial_fit`` or ``fit_stream``; on Dask
        arrays ``solver="newton"`` fits ``"huber"`` with one distributed pass per iteration
        (:mod:`fastopt._newton_dask`, also for ``"auto"``), and ``max_epochs`` bounds its iterations.
    fit_intercept : bool, default=True
        Fit an intercept (never penalised).
    alpha : float or array-like of shape (n_targets,), default=0.0
        L2 penalty ``alpha * ||w||^2 / 2`` added to the mean loss (ridge). Decoupled weight decay for AdamW.
        An array gives each target its own penalty (as ``Ridge(alpha=array)``; closed form, Krylov and Newton
        only); one of length 1 is every target's, as ``Ridge`` broadcasts it.
    loss : {"squared_error", "absolute_error", "huber"}, default="squared_error"
        Per-sample loss: ``(y_hat - y)^2 / 2``, ``|y_hat - y|``, or Huber with threshold ``epsilon``.
        Robust losses need ``solver="newton"`` or an iterative solver.
    epsilon : float, default=1.35
        Huber threshold, in ``y``'s units. ``solver="newton"`` refuses one below 1e-150 (relative to ``y``'s size
        where ``y`` is tinier), whose square underflows: there Huber is ``epsilon`` times the absolute error, less a
        constant, and ``loss="absolute_error"`` fits its minimiser.
    learning_rate : float or "auto", default="auto"
        Base step size. ``"auto"`` derives it from ``L``, the largest eigenvalue of the loss Hessian found by
        power iteration on the data: ``b / (R^2 + (b - 1) L)`` for SGD (``1 / L`` for full batches), with
        ``R^2 = E[c^2] / E[c]`` over the rows' weighted curvatures ``c = w ||x||^2`` (``E[c]`` when all rows
        have the same) plus the ridge's largest coefficient, times ``1 - momentum`` for the momentum rules, and
        for the adaptive rules a distance, a tenth (AdaGrad: three times) of the largest coordinate of the first
        gradient times that SGD rate with ``R^2 = E[c]`` plus the ridge's largest coefficient (see
        ``fastopt._iterative_lr``). For a robust loss, SGD's and the momentum rules' rate is multiplied by the
        start's residual scale ``s`` (the largest over the targets of the weighted mean of ``|y - y_hat_0|``
        clipped at 100 times itself, so that rows holding less than 1% of the weight cannot set it) for the
        absolute error, whose gradient carries no unit of ``y``, and by
        ``max(1, s / epsilon)`` for Huber's, so that targets of any scale fit alike, and the adaptive rules' first
        gradient is the squared error's with residuals clipped at ``4 s``: a far outlier sets no rate. Where the
        start fits every row exactly (a first ``partial_fit`` call of one row, or of constant targets: no
        gradient, no step moves), the adaptive rules' rate is taken from the next call's rows (or a one-shot
        stream's next chunk, or a warm-started in-memory fit's rows); a re-readable stream's or a Dask fit's
        sampled rate of such targets stays the fallback, 1e-3. Deterministic: it depends neither on
        ``random_state`` nor on the BLAS thread count. The value used is stored in ``learning_rate_``.
    schedule : {"auto", "plateau", "constant", "linear", "invscaling", "exponential", "cosine"}, default="auto"
        Learning-rate schedule over epochs, the rate constant within an epoch. ``"auto"`` is ``"plateau"`` with
        ``learning_rate="auto"`` and ``"constant"`` with a numeric rate. ``"plateau"`` cuts the rate tenfold
        whenever the monitored loss stops falling (as ``torch.optim.lr_scheduler.ReduceLROnPlateau``) and stops
        once a cut no longer changes the loss (see "Stopping" below); across ``partial_fit`` calls it judges the
        objective on each call's rows, in epochs over repeated chunks (see :meth:`partial_fit`). The named
        schedules (:func:`fastopt.optim.schedule_lr`): ``linear`` decays to ``end_factor * learning_rate`` at the last
        epoch (Goodfellow, Bengio & Courville, *Deep Learning*, 2016, sec. 8.3.1), ``invscaling`` divides by ``(epoch +
        1) ** power_t``, ``exponential`` multiplies by
        ``gamma ** epoch``, ``cosine`` anneals to ``end_factor * learning_rate``.
    end_factor : float, default=0.01
        Floor of the ``linear`` and ``cosine`` schedules, as a fraction of ``learning_rate``.
    power_t : float, default=0.5
        Exponent of the ``invscaling`` schedule.
    gamma : float, default=0.95
        Per-epoch factor of the ``exponential`` schedule.
    batch_size : int, default=64
        Minibatch size; the last batch of an epoch may be smaller.
    max_epochs : int or "auto", default="auto"
        Maximum number of passes over the data (``solver="newton"``: of Newton iterations; for the absolute
        error, of each smoothing stage's, and for Huber's loss where gross outliers start a continuation in the
        threshold, of each stage's; ``n_iter_`` counts them all). ``"auto"`` is 100 rounds of the stopping rules
        (see ``tol``): 100 epochs from 2,048 rows at ``batch_size=64``, 3,200 epochs of a 20-row problem (100 for
        Newton). The named schedules span the resolved number (``partial_fit``, whose calls are the epochs: 100).
    tol : float or None, default=1e-6
        Named schedules: stop when the monitored loss has not improved by ``tol`` for ``n_iter_no_change``
        epochs, which guarantees only that it stopped improving at that rate (with a constant rate, on its
        minibatch noise floor). ``"plateau"``: stop at a plateau whose preceding tenfold cut of the rate changed
        the best loss by less than ``5e-4`` of its scale (``max(loss, 1e-6 * loss of the best constant
        model)``), so the floor is not the noise of the larger rate, then bound the distance from the optimum
        from below (the squared error: four compiled reads of ``X``, the gradient and three preconditioned
        conjugate-gradient steps, on small data up to ``d + 2``; Huber's loss and the absolute error: the same
        steps reweighted as iteratively reweighted least squares, and one more read for the objective at the
        point they reach, in memory, on streams and on Dask; with ``positive=True``, in memory only, the steps on
        the coefficients that may move and the objective at their projections onto ``w >= 0``) and warn
        :class:`~sklearn.exceptions.ConvergenceWarning` when it exceeds 1% of the loss; ``tol`` only switches this
        on. Both rules judge rounds: an epoch, or on small data as many whole epochs as make 32 minibatch steps,
        by their mean monitored loss (the rate changes only between rounds). ``None``
        disables stopping (the plateau rule then keeps its last rate once it would have stopped). Not used by
        ``solver="newton"``, which iterates to round-off. Krylov solvers: LSQR's stopping rules with
        ``atol = btol = tol`` (as ``scipy.sparse.linalg.lsqr`` and ``Ridge(solver="lsqr")``), on the weighted,
        centred, column-scaled problem ``min ||A z - b||`` with the ridge as extra rows: stop when
        ``||A^T r|| <= tol ||A|| ||r||`` or (without ridge) ``||r|| <= tol (||b|| + ||A|| ||z||)``, ``||A||``
        LSQR's running estimate of the Frobenius norm, checked by a final exact pass. Either rule bounds the
        backward error (``z`` solves a problem whose data differ by about ``tol`` relative); at a stop by the
        first, the objective's relative excess is at most ``t^2 / (1 - t^2)``, ``t = tol ||A||_F / sigma_min(A)``,
        when ``t < 1``. On a worse-conditioned problem (weights spanning 1e28, say) neither bounds the excess:
        lower ``tol``, or use the closed form. ``None`` (or a ``tol`` below machine precision) runs up to
        ``max_iter`` iterations, stopping where the rules hold at machine precision (SciPy's ``istop`` 4 and 5).
    n_iter_no_change : int, default=5
        Patience, in rounds (see ``tol``), of the named schedules' rule.
    early_stopping : bool, default=False
        Monitor the R^2 score on a held-out ``validation_fraction`` instead of the training loss, and keep
        the coefficients of the best epoch.
    validation_fraction : float, default=0.1
        Fraction of rows held out when ``early_stopping`` (``ceil(validation_fraction * n_samples)``, at least
        two, since R^2 is undefined on one row: fewer is a ``ValueError``); a streamed or Dask fit holds out this
        fraction of every chunk's rows.
    momentum : float or None, default=None
        Momentum factor of ``"momentum"`` and ``"nesterov"`` and of RMSProp's optional momentum buffer.
        None means 0.9 for the first two and no buffer (0) for RMSProp.
    dampening : float, default=0.0
        Dampening of ``"momentum"`` (PyTorch's SGD ``dampening``); ``"nesterov"`` refuses a nonzero one, as
        ``torch.optim.SGD`` does.
    beta1, beta2 : float, default=0.9, 0.999
        Adam's decay rates for the first and second moment estimates.
    rho : float, default=0.9
        RMSProp's decay rate for the squared-gradient average (PyTorch's ``alpha``).
    eps : float, default=1e-8
        Added to the denominator of the adaptive rules, outside the square root (PyTorch's placement).
    centered : bool, default=False
        Centred RMSProp (normalise by the gradient's estimated variance instead of its second moment).
    amsgrad : bool, default=False
        AMSGrad variant of ``"adam"`` and ``"adamw"``.
    sparse_mode : {"exact", "lazy"}, default="exact"
        Steps of ``"adam"`` and ``"adamw"``. ``"exact"``: Adam's rule on every coordinate at every step, which
        on sparse ``X`` costs O(n_features) a step (every moment decays, every weight moves). ``"lazy"``: the
        semantics of ``torch.optim.SparseAdam`` (Kingma & Ba, 2015, applied to the nonzeros only): the moments
        and weights change only where the minibatch gradient is nonzero, at a cost that follows the
        minibatch's nonzeros; the bias corrections use the global step count, the denominator is
        ``sqrt(v) + eps`` with step size ``lr sqrt(1 - beta2^t) / (1 - beta1^t)`` as in SparseAdam; ``alpha``
        (coupled for Adam, decoupled for AdamW) and ``amsgrad`` act on the same coordinates. A different
        optimizer, not an approximation of ``"exact"``: the gradient's nonzeros define it whatever the storage
        of ``X`` (a dense ``X`` is converted once to CSR). With ``alpha > 0`` it does not minimise the
        objective: a coordinate is penalised only on the steps whose minibatch stores its column, so its ridge
        is in effect roughly ``alpha`` times that chance, and rare columns (one-hot levels, hashed features) are
        barely penalised; use ``"exact"`` or ``"sgd"`` for the ridge's minimiser. The other solvers ignore it: their
        exact steps already cost O(nonzeros) on sparse ``X`` (see the README's table).
    init : {"zeros", "random"}, default="zeros"
        Initial weights: zeros, or normal with standard deviation 0.01 drawn from ``random_state`` (one
        ``(n_targets, n_features)`` draw, so a target's start differs from its single-target fit's). Intercepts
        start at the targets' weighted mean with ``learning_rate="auto"`` and squared error (the best constant
        model), else at zero, either way.
    clip_norm : float or None, default=None
        Clip each minibatch gradient to this global L2 norm, taken over every coefficient and intercept of every
        target together (as ``torch.nn.utils.clip_grad_norm_`` over all parameters), so it couples the targets
        of a multi-output fit.
    shuffle : bool, default=True
        Reshuffle rows every epoch.
    random_state : int, RandomState instance or None, default=None
        Seeds the row order, the validation split and random initialisation. An int gives the same fit every
        time; a ``RandomState`` instance is advanced by one draw a fit; None draws fresh OS entropy and, unlike
        scikit-learn's estimators, neither reads nor advances NumPy's global ``RandomState``
        (``np.random.seed`` does not make such fits repeatable: pass an int).
    warm_start : bool, default=False
        Continue from the previous fit's coefficients and optimizer state (SGD and the momentum rules on rows
        the previous fit's preconditioning map serves badly: from its coefficients alone, under a map of these
        rows; see the README's "Preconditioning"). A fit by another solver starts from the previous
        coefficients with fresh optimizer state, where it takes a start (the closed form needs none), in memory;
        on Dask and in ``fit_stream``, which take no ``coef_init``, it starts afresh. ``fit`` then needs ``X``
        with the previous fit's features (and ``y`` with its number of targets), else ``ValueError``, as in
        ``SGDRegressor``; ``coef_init`` overrides it.
    verbose : int, default=0
        Print one line per epoch (Krylov solvers: per iteration, with its residual) when positive.
    n_threads : int or None, default=None
        Threads per epoch of the iterative solvers (data-parallel minibatches). None or 1: one. 2 or more: two
        (the most the fixed split uses) when the process may run on two CPUs and the minibatches are large
        enough for the split to pay (the thresholds are in the README's "Two threads per epoch"). Every
        minibatch gradient is summed in the same two halves whatever the count, so the fitted coefficients are
        bit-identical for any ``n_threads``. The second thread needs an idle core: with a multi-threaded BLAS,
        run such fits under ``threadpoolctl.threadpool_limits(1)``; a fit never changes the BLAS thread count
        itself, as that setting is process-wide. Opt-in, as ``n_jobs`` in scikit-learn. Sparse ``X``: the second
        thread stages the shuffled rows and finds each minibatch's columns (plain ``"sgd"`` with one output needs
        none found: it only stages them) while the first takes the steps, for every rule and setting, again with
        coefficients bit-identical to one thread's.
    precondition : {"auto", "none"}, default="auto"
        ``"auto"``: a fit with ``learning_rate="auto"`` and the plateau schedule on columns whose standard
        deviations span more than a factor 4, the intercept's 1 among them (or, with an intercept, whose means
        exceed their standard deviations) runs on a standardised copy of ``X`` and maps the coefficients back
        (diagonal preconditioning; LeCun, Bottou, Orr & Mueller, *Efficient BackProp*, 1998). Sparse ``X`` is
        scaled by its columns' root mean squares; with an intercept, its columns that store at least half the rows
        and sit far from centred are centred too (a shift elsewhere would densify ``X``). With ``alpha > 0``,
        ``X`` scales each column by ``sqrt(variance + alpha)`` (unit curvature, data and ridge; the mean square
        in place of the variance where a column is not centred) and the penalty becomes each column's own weight
        decay, ``alpha / scale^2`` (on sparse ``X`` SGD, momentum and Nesterov defer it for the columns a step
        does not touch); AdamW, ``sparse_mode="lazy"`` and, on sparse ``X`` wider than 4 times a minibatch's
        stored values, ``positive=True`` momentum and Nesterov take one scale for every column, which keeps the
        penalty uniform. A first ``partial_fit`` maps its chunk's rows, and ``fit_stream`` and Dask fits the
        sample that sets their rate, as in memory (later sparse rows take the shift whatever their density),
        under a named schedule too, where ``fit`` runs the schedule unmapped.
        Warm starts and ``partial_fit`` continue under the same map. Krylov solvers (``"cg"``, ``"lsqr"``):
        ``"auto"`` iterates on the columns of the centred, weighted ``X`` scaled to unit norm (with the ridge: by
        ``1 / sqrt(||column||^2 + W alpha)``, the Jacobi preconditioner) so that columns of different scales
        converge together, when the norms of its non-empty columns span more than a factor 4 (on evenly scaled
        columns the scaling costs iterations); the solution is the same either way where it is unique (a ridge,
        or ``X`` of full column rank); without one the iterates reach the least-norm solution in the scaled
        units, which differs from the unscaled least-norm solution on a rank-deficient ``X``. ``"none"``: never.
    positive : bool, default=False
        Constrain the coefficients (not the intercepts) to be non-negative, as ``LinearRegression(positive=True)``.
        The closed form solves the non-negative least-squares problem exactly (Lawson & Hanson, *Solving Least
        Squares Problems*, 1974, ch. 23, on the ``d x d`` factor of the merged statistics); the iterative rules
        take projected steps (the weights clamped at 0 after every step), on sparse ``X`` too. Not with
        ``solver="newton"``.
    average : bool or int, default=False
        Iterative solvers: Polyak-Ruppert averaging (Polyak & Juditsky, SIAM J. Control Optim. 30, 1992), as
        ``SGDRegressor(average=...)``: ``coef_`` and ``intercept_`` are the mean of the iterates after every step
        ``t >= average`` (``True``: from the first step; steps are minibatches, so with ``batch_size=1`` the
        count is of samples, as in scikit-learn). The last iterate is kept to continue training. On sparse ``X``
        the average of resting coordinates is kept lazily in closed form, as ``SGDRegressor`` does (Bottou,
        "Stochastic gradient descent tricks", 2012), with the same result as on ``X.toarray()``.
    max_iter : int or None, default=None
        Krylov solvers: the most iterations per target (each one pass over ``X``). None means ``2 d`` within
        ``[100, 10000]`` (exact arithmetic needs at most ``d``). Not reaching ``tol`` warns
        :class:`~sklearn.exceptions.ConvergenceWarning`.

    A call of ``fit``, ``partial_fit`` or ``fit_stream`` that raises (invalid input found late, divergence, a
    failing chunk source, ``KeyboardInterrupt``) leaves the estimator exactly as it was before the call.

    Attributes
    ----------
    coef_ : ndarray of shape (n_features,) or (n_targets, n_features)
    intercept_ : float or ndarray of shape (n_targets,)
        A float for 1-D ``y``, else one per target; ``0.0`` without ``fit_intercept``, whatever ``y``'s shape.
    solver_ : str
        The path that actually ran (e.g. ``"cholesky"``, ``"pivoted_cholesky"``, ``"kernel_cholesky"`` (the
        ``n x n`` system of the rows, for dense ``X`` with fewer rows than columns), ``"qr"``, ``"svd"``,
        ``"adam"``). ``"newton"`` where ``solver="auto"`` finished an unconverged SGD fit of the Huber loss on
        sparse ``X`` by Newton's method (the table above); ``n_iter_`` and ``loss_curve_`` are then Newton's.
    rcond_ : float
        Closed form: LAPACK's reciprocal condition estimate of the column-scaled matrix factorised (the normal
        equations for ``"cholesky"``, those of the kept columns for ``"pivoted_cholesky"`` (with a ridge, the
        lifted equations), the rows' system for ``"kernel_cholesky"`` (the least over one alpha per target),
        ``R`` for ``"qr"``/``"svd"`` (without its zero columns: zero columns of ``X`` and,
        with an intercept, constant ones, whose coefficient is 0)). For the normal equations it is the 1-norm
        estimate, or, where that falls below ``1e-4`` but within a factor ``n_features_in_`` of it, half a
        2-norm estimate (the 2-norm condition number bounds their error; the 1-norm one can exceed it by that
        factor).
    rank_ : int
        Closed form: the numerical rank of the centred, weighted design, judged at float64's precision, or at
        the input's where that is float32 (``n_features_in_`` unless ``"svd"``,
        ``"pivoted_cholesky"`` without a ridge or ``"qr"`` with such zero columns; with a ridge, the rank of the
        ridge's system, ``n_features_in_``).
    singular_ : ndarray or None
        Closed form, ``"svd"`` path: singular values of the centred, weighted design (from ``R``), else None.
    n_iter_ : int
        Epochs run (closed form: 1; Newton: iterations, the most over targets, its least-squares start counted
        as one where it is not warm-started; Krylov solvers: iterations, the
        most over the targets, 0 when a warm start was already converged). A ``fit``, warm-started or not,
        counts its own epochs; after ``partial_fit``, the iterative solvers count every epoch of the optimizer
        state the call continues (the earlier calls', and those of the fits it continues), the position its
        named schedules run at.
    objective_ : float
        ``solver="newton"``: the minimised objective (summed over targets).
    loss_curve_ : list of float
        Iterative solvers: the weighted mean training loss of each epoch, each row's loss taken before its
        minibatch's step, plus ``alpha / 2 ||coef||^2`` (not for AdamW); ``partial_fit`` appends one per call.
    best_loss_ : float
        Iterative solvers: the smallest entry of ``loss_curve_``.
    validation_scores_ : list of float or None
        Iterative solvers with ``early_stopping``: the weighted R^2 on the validation rows after each epoch.
    best_validation_score_ : float
        Iterative solvers with ``early_stopping``: the largest validation score, whose coefficients are kept.
    t_ : int
        Iterative solvers: optimizer steps (minibatches) taken.
    learning_rate_ : float
        Iterative solvers: the base learning rate used (resolved when ``learning_rate="auto"``).
    learning_rates_ : list of float
        Iterative solvers: the rate of each epoch (of each call, for ``partial_fit``), showing the schedule's
        or the plateau rule's cuts.
    n_features_in_ : int
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Defined only when ``X`` has string column names (e.g. a pandas DataFrame).

    Notes
    -----
    The rules' options (``momentum`` to ``amsgrad``, ``clip_norm``, ``learning_rate`` and the schedule's) are read
    by the solvers they name and ignored by the others, as scikit-learn's estimators ignore the parameters of
    solvers not in use (so that a grid search may set them across solvers): ``momentum`` with ``solver="sgd"``
    is plain SGD (use ``solver="momentum"``), and the exact solvers ignore all of them.

    Examples
    --------
    >>> from sklearn.datasets import load_diabetes
    >>> from fastopt import LinearRegressor
    >>> X, y = load_diabetes(return_X_y=True)
    >>> round(LinearRegressor().fit(X, y).score(X, y), 3)
    0.518
    """

    _parameter_constraints: ClassVar[dict] = {
        "solver": [StrOptions({"auto", *_solvers.SOLVERS})],
        "fit_intercept": ["boolean"],
        "alpha": [Interval(Real, 0, None, closed="left"), "array-like"],
        "loss": [StrOptions(set(_solvers.LOSSES))],
        "epsilon": [Interval(Real, 0, None, closed="neither")],
        "learning_rate": [Interval(Real, 0, None, closed="neither"), StrOptions({"auto"})],
        "schedule": [StrOptions({"auto", "plateau", *optim.SCHEDULES})],
        "batch_size": [Interval(Integral, 1, 2**62, closed="both")],  # row arithmetic stays within int64
        "max_epochs": [Interval(Integral, 1, None, closed="left"), StrOptions({"auto"})],
        "tol": [Interval(Real, 0, None, closed="left"), None],
        "n_iter_no_change": [Interval(Integral, 1, None, closed="left")],
        "early_stopping": ["boolean"],
        "validation_fraction": [Interval(Real, 0, 1, closed="neither")],
        "momentum": [_interval("momentum"), None],
        "dampening": [_interval("dampening")],
        "beta1": [_interval("beta1")],
        "beta2": [_interval("beta2")],
        "rho": [_interval("rho")],
        "eps": [_interval("eps")],
        "centered": ["boolean"],
        "amsgrad": ["boolean"],
        "sparse_mode": [StrOptions({"exact", "lazy"})],
        "init": [StrOptions({"zeros", "random"})],
        "end_factor": [Interval(Real, 0, 1, closed="right")],
        "power_t": [Interval(Real, 0, None, closed="left")],
        "gamma": [Interval(Real, 0, 1, closed="right")],
        "clip_norm": [Interval(Real, 0, None, closed="neither"), None],
        "shuffle": ["boolean"],
        "random_state": ["random_state"],
        "warm_start": ["boolean"],
        "verbose": ["verbose"],
        "n_threads": [Interval(Integral, 1, None, closed="left"), None],
        "precondition": [StrOptions({"auto", "none"})],
        "positive": ["boolean"],
        "average": ["boolean", Interval(Integral, 1, 2**62, closed="both")],  # (the kernels count in int64)
        "max_iter": [Interval(Integral, 1, None, closed="left"), None],
    }

    def __init__(
        self,
        solver="auto",
        *,
        fit_intercept=True,
        alpha=0.0,
        loss="squared_error",
        epsilon=1.35,
        learning_rate="auto",
        schedule="auto",
        end_factor=optim.SCHEDULE_DEFAULTS["end_factor"],
        power_t=optim.SCHEDULE_DEFAULTS["power_t"],
        gamma=optim.SCHEDULE_DEFAULTS["gamma"],
        batch_size=64,
        max_epochs="auto",
        tol=1e-6,
        n_iter_no_change=5,
        early_stopping=False,
        validation_fraction=0.1,
        momentum=None,
        dampening=0.0,
        beta1=0.9,
        beta2=0.999,
        rho=0.9,
        eps=1e-8,
        centered=False,
        amsgrad=False,
        sparse_mode="exact",
        init="zeros",
        clip_norm=None,
        shuffle=True,
        random_state=None,
        warm_start=False,
        verbose=0,
        n_threads=None,
        precondition="auto",
        positive=False,
        average=False,
        max_iter=None,
    ):
        self.solver = solver
        self.fit_intercept = fit_intercept
        self.alpha = alpha
        self.loss = loss
        self.epsilon = epsilon
        self.learning_rate = learning_rate
        self.schedule = schedule
        self.end_factor = end_factor
        self.power_t = power_t
        self.gamma = gamma
        self.batch_size = batch_size
        self.max_epochs = max_epochs
        self.tol = tol
        self.n_iter_no_change = n_iter_no_change
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.momentum = momentum
        self.dampening = dampening
        self.beta1 = beta1
        self.beta2 = beta2
        self.rho = rho
        self.eps = eps
        self.centered = centered
        self.amsgrad = amsgrad
        self.sparse_mode = sparse_mode
        self.init = init
        self.clip_norm = clip_norm
        self.shuffle = shuffle
        self.random_state = random_state
        self.warm_start = warm_start
        self.verbose = verbose
        self.n_threads = n_threads
        self.precondition = precondition
        self.positive = positive
        self.average = average
        self.max_iter = max_iter

    @classmethod
    def _get_param_names(cls) -> list[str]:
        # scikit-learn reads the names from the signature of __init__ at every get_params and parameter
        # validation (two per fit, about 0.1 ms each); the signature is fixed per class, so read it once.
        return list(_param_names(cls))

    def get_params(self, deep: bool = True) -> dict:
        """Get parameters for this estimator (scikit-learn's ``BaseEstimator.get_params``).

        No parameter of ``LinearRegressor`` holds an estimator, so ``deep`` changes nothing: the parameters are read
        once, without looking for nested ones (a ``hasattr`` per parameter, read twice per fit).
        """
        return {name: getattr(self, name) for name in _param_names(type(self))}

    def _validate_params(self) -> None:
        # scikit-learn checks every parameter against its constraints at every fit (0.2-0.3 ms, 2% of an epoch on
        # the benchmark shape): a call with the parameters of the last validated one skips it. Numbers, strings and
        # None compare by type and value, other objects (a RandomState) by identity. The key holds the values it
        # was made from, so none of them can be freed and its id reused: the very same objects as last time (the
        # usual refit) are recognised by their ids alone (one C-level pass instead of a Python loop over the
        # parameters, tens of microseconds on cold caches after an epoch).
        values = _param_getter(type(self))(self)
        ids = tuple(map(id, values))
        last = self.__dict__.get("_validated_params")
        if last is not None and last[0] == ids:
            return
        key = tuple((type(v), v if type(v) in _PLAIN or v is None or isinstance(v, (Real, str)) else id(v))
                    for v in values)
        if last is None or last[2] != key:
            super()._validate_params()
            self._check_float_range()
        self._validated_params = (ids, values, key)

    def _check_float_range(self) -> None:
        """scikit-learn's error for an int beyond float64's range where a float is asked for: its ``Interval(Real,
        ...)`` takes ``10**400`` (Python compares the int exactly), which then ended in ``float()``'s
        OverflowError inside the fit."""
        for name, constraints in self._parameter_constraints.items():
            value = getattr(self, name)
            if isinstance(value, Integral) and not isinstance(value, bool) and any(
                    isinstance(c, Interval) and c.type is Real for c in constraints):
                try:
                    float(value)
                except OverflowError:
                    raise InvalidParameterError(
                        f"The {name!r} parameter of {type(self).__name__} must be a float; got an int too large "
                        f"for float64 ({len(str(abs(value)))} digits) instead.") from None

    @_transactional
    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X: ArrayLike, y: ArrayLike, sample_weight: ArrayLike | None = None, *,
            coef_init: ArrayLike | None = None, intercept_init: ArrayLike | None = None) -> LinearRegressor:
        """Fit the model.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            Training data; float32 input is fitted in float32 (accumulated safely), anything else in float64.
            Any ``scipy.sparse`` format (converted once to CSR, never modified), for every solver.
            A ``numpy.memmap`` is read in place (closed form and Krylov solvers make no copy of ``X``).
        y : array-like of shape (n_samples,) or (n_samples, n_targets)
            Targets.
        sample_weight : array-like of shape (n_samples,), default=None
            Non-negative per-sample weights.
        coef_init : array-like of shape (n_features,) or (n_targets, n_features), default=None
            Starting coefficients of the iterative and Newton solvers (as ``SGDRegressor.fit``); they override
            ``warm_start``. The closed form needs no start and ignores them.
        intercept_init : float or array-like of shape (n_targets,), default=None
            Starting intercepts, likewise.

        Returns
        -------
        self : LinearRegressor
            The fitted estimator.
        """
        # A warm start continues the previous fit, so X must have its features (as SGDRegressor's: "X has 12
        # features, but ... is expecting 10"); it had started afresh, silently. coef_init overrides it.
        warm = self.warm_start and hasattr(self, "coef_") and coef_init is None and intercept_init is None
        if (dask_backend := _dask_backend(X, y, sample_weight)) is not None:
            if coef_init is not None or intercept_init is not None:
                raise ValueError("coef_init and intercept_init are not supported with Dask arrays.")
            if warm:
                dask_backend._check_features(self, X, reset=False)
            return self._take(dask_backend.fit(self, X, y, sample_weight, self._warm_state))
        view = solver_view(X) if self.solver == "auto" else X  # (a named solver: validation's conversion alone)
        name = _solvers.resolve(self.solver, self.loss, view, self.alpha, sparse=is_sparse(view),
                                positive=self.positive, average=self.average)
        # (a scalar-only solver keeps refusing an array, as partial_fit does)
        alpha = _solvers.uniform_alpha(self.alpha, y) if _solvers.SOLVERS[name].per_target_alpha else self.alpha
        if alpha is not self.alpha:
            name = _solvers.resolve(self.solver, self.loss, view, alpha, sparse=is_sparse(view),
                                    positive=self.positive, average=self.average)
        params = _solvers.fit_params(self.solver, name, view, {**self.get_params(), "alpha": alpha})
        solver = _solvers.SOLVERS[name]
        # e.g. the first epoch's row order, drawn on a two-thread fit's helper while this thread validates
        prepared = solver.prepare(params, X, y)
        try:
            given_init = coef_init is not None or intercept_init is not None  # the starting loss reads X through it
            data = check_fit_data(self, X, y, sample_weight, reset=not warm,
                                  finite_X=_solvers.needs_finite_check(name, params),
                                  finite_y=_solvers.needs_finite_y_check(name, params),
                                  check_indices=given_init or _solvers.needs_index_check(name, params))
            if warm and data.Y.shape[1] != self._n_targets:
                raise ValueError(f"y has {data.Y.shape[1]} target(s), but warm_start=True continues a fit of "
                                 f"{self._n_targets}; set warm_start=False to fit afresh.")
            _solvers.check_options(name, params, data.Y.shape[1])
            _solvers.check_ridge_range(name, params, data.sample_weight, data.Y.shape[0])
            extra = {} if prepared is None else {"prepared": prepared}
            if given_init and solver.accepts_init:
                extra["init"] = _solvers.check_init(coef_init, intercept_init, data)
            elif solver.accepts_init and (switched := self._switched_start(name, data)) is not None:
                extra["init"] = switched
            rescue = _solvers.newton_rescue(self.solver, name, view, params)
            if rescue is None:
                result = solver.fit(params, data, state=self._warm_state(name), **extra)
            else:
                name, result = self._fit_rescued(name, params, data, extra, rescue)
        finally:
            if prepared is not None:
                prepared.release()
        return self._apply(name, data.y_was_1d, result)

    def _fit_rescued(self, name: str, params: dict, data, extra: dict, budget: tuple[float, float]):
        """``solver="auto"``'s SGD fit of the Huber loss on sparse X, and where it warns that it has not converged,
        Newton's method from its coefficients within ``budget`` (:func:`fastopt._solvers.newton_rescue`):
        ``(name, result)`` of the fit kept. Newton's fit keeps SGD's state with Newton's coefficients, so that
        ``partial_fit`` goes on by SGD from them at the rate SGD had reached (from Newton's own state, a fresh
        rate took a call on the same rows 72% above the minimum). SGD's warnings are held until then: dropped
        with its fit, or raised once the fit is done; not if it fails or is interrupted (a warning filtered to an
        error would replace the KeyboardInterrupt). A warm start after a fit that Newton finished, with the same
        parameters, tries Newton from it first."""
        state = self._warm_state(name)
        if state is not None and state.exact_params is not None and "init" not in extra \
                and state.exact_params == _iterative.exact_key(params) and _iterative._continues(state, params, data):
            # a warm start after such a fit, with the same parameters: Newton from its minimiser first (SGD's
            # schedule starts again at a fresh rate, which took a refit on the same rows 0.72% above the minimum,
            # below the warning's level). Not with others: the state's rate and map are those parameters' (a
            # partial_fit after a changed alpha took that state from its minimiser to 5.5 times above it).
            # Within a few passes (WARM_PASSES): from the minimiser of these rows it takes one or two; rows that
            # changed so much that it would need the whole budget (a third of them moved by 1e6) had made the
            # refit 30 times a cold fit's time, where SGD alone finished.
            warm = (min(budget[0], _solvers.WARM_PASSES * budget[1]), budget[1])
            exact = self._newton_trial(params, data, *_iterative._raw_params(state), state, warm)
            if exact is not None:
                return name, exact
        held: list = []
        with _held(held):
            result = _solvers.SOLVERS[name].fit(params, data, state=state, **extra)
        if any(issubclass(category, ConvergenceWarning) for _, category in held):
            exact = self._newton_trial(params, data, result.coef, result.intercept, result.state, budget)
            if exact is not None:
                held = [(message, category) for message, category in held
                        if not issubclass(category, ConvergenceWarning)]
                result = exact
        for message, category in held:
            _warn(message, category)
        return name, result

    def _newton_trial(self, params: dict, data, coef, intercept, state,
                      budget: tuple[float, float]) -> FitResult | None:
        """Newton's fit from SGD's ``coef`` and ``intercept`` within ``budget``, with SGD's ``state`` (those
        coefficients') for what follows (:meth:`_fit_rescued`); None where it does not converge within it."""
        try:
            _solvers.check_ridge_range("newton", params, data.sample_weight, data.Y.shape[0])
        except ValueError:
            return None  # a ridge beyond float64's range in Newton's units: SGD's fit, warned
        try:
            # (SGD's coefficients beyond the data's dtype: _apply names that, not the start's finiteness)
            init = _solvers.check_init(coef, intercept if self.fit_intercept else None, data)
            exact = _solvers.SOLVERS["newton"].fit({**params, _newton.TRIAL_KEY: budget}, data, init=init)
        except (ValueError, ArithmeticError, np.linalg.LinAlgError, MemoryError):
            # data Newton refuses (columns too small to square in float64, sums that overflow) that SGD fitted
            return None
        if exact is None:
            return None
        return FitResult(exact.coef, exact.intercept,
                         _iterative.with_coefficients(state, exact.coef, exact.intercept, params), exact.attrs)

    # e.g. not with solver="newton": each Newton iteration reads every row
    @available_if(lambda self: getattr(_solvers.SOLVERS.get(self.solver), "incremental", True))
    @_transactional
    def partial_fit(self, X: ArrayLike, y: ArrayLike, sample_weight: ArrayLike | None = None) -> LinearRegressor:
        """Update the model with one more chunk of rows.

        The closed form merges the chunk's sufficient statistics exactly, so any split of the rows gives the
        coefficients of one ``fit``. Iterative solvers make one pass over the chunk, keeping optimizer state;
        each call is one epoch of the schedule, ``learning_rate="auto"`` is resolved on the first call's rows
        (for SGD and the momentum rules, a later call whose rows are heavier, by weight or size, than twice
        what that rate allows for lowers it for itself and the calls after it), and a numeric
        ``learning_rate`` set between calls takes effect at the next call. Under the plateau rule
        (``schedule="auto"`` with ``learning_rate="auto"``) each call evaluates the objective on its own rows
        before it trains on them and knows its chunk again by them: calls that go over the same chunks again are
        judged in epochs (each chunk compared with itself an epoch apart) as ``fit`` judges epochs; new rows by
        paired comparisons with the models before the previous call and at the last cut, a difference counting
        only beyond two standard errors. Where ``fit`` would stop, the rate settles (see the README, "Across
        partial_fit calls"). The other schedules advance one epoch per call.
        ``tol`` does not apply, and ``early_stopping=True`` is an error, as in ``SGDRegressor`` (``fit_stream``
        and ``fit`` on Dask arrays run whole epochs over chunks with them). ``solver="newton"`` cannot fit
        incrementally. ``solver="lsqr"`` and ``"cg"`` cannot add rows either: a later call refits its own rows
        alone, from the current coefficients (the earlier rows no longer count), and warns so.

        The closed form's calls add their weighted statistics, so weights count across calls as in one ``fit`` (a
        later call whose weights are all zero adds nothing; the first one is an error, as in ``fit``). An
        iterative solver's call divides its ``sample_weight`` by their mean over the call's rows (on a Dask array: over
        each block's rows), as ``fit`` does over all rows: weights are relative within a call only, every call's rows
        count as much as any other call's (a chunk weighted 10 everywhere trains as one weighted 1), and a call whose
        weights are all zero is an error. For weights that count across chunks, pass the chunks to ``fit_stream`` (or
        the Dask arrays to ``fit``), which divides every chunk by one stream-wide mean.

        Precision: the closed form accumulates every call's statistics in float64, and its coefficients are
        float64 once a call's ``X`` is. An iterative solver's weights and state keep the first call's dtype (float32
        ``X`` trains float32 weights), and it casts a later call's rows to that dtype; ``fit_stream`` refuses a
        chunk of another floating type than the first.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
        y : array-like of shape (n_samples,) or (n_samples, n_targets)
        sample_weight : array-like of shape (n_samples,), default=None

        Returns
        -------
        self : LinearRegressor
        """
        if self.early_stopping:  # as SGDRegressor: held-out scoring needs whole epochs (fit, fit_stream)
            raise ValueError("early_stopping should be False with partial_fit")
        first = not hasattr(self, "_solver_state")
        # every call, not only the first (as scikit-learn's partial_fit): parameters set between calls are checked
        # too (batch_size=0 raised ZeroDivisionError); unchanged ones are recognised at once (_validate_params).
        # Not under scikit-learn's skip_parameter_validation, as fit (its _fit_context) and SGDRegressor.partial_fit.
        if not get_config()["skip_parameter_validation"]:
            self._validate_params()
        if not first:
            self._check_target_layout(y)
        if (dask_backend := _dask_backend(X, y, sample_weight)) is not None:
            # (as in memory: "auto" for rows in chunks)
            name = self._incremental_name(_solvers.resolve(self.solver, self.loss, incremental=True,
                                                           sparse=dask_backend.sparse_blocks(X),
                                                           average=self.average))
            # (y's target count from its metadata, before any block: a Krylov call had refitted on one target
            # after calls on two, silently)
            prior = self._continued_state(name, dask_backend.known_targets(y))
            _warn_if_refit_alone(name, prior)
            return self._take(dask_backend.partial_fit(self, X, y, sample_weight, name, first, prior))
        _solvers.resolve(self.solver, self.loss, incremental=True)
        if _all_zero(sample_weight) and not first and self._adds_statistics(X):
            # The closed form's calls add weighted statistics, so a call of weight 0 adds nothing, as a chunk of
            # fit_stream or a Dask block does (check_chunk); any other call of weight 0 is refused below.
            return self._partial_fit(check_chunk(self, X, y, sample_weight, "partial_fit's chunk"))
        return self._partial_fit(check_fit_data(self, X, y, sample_weight, reset=first))

    def _check_target_layout(self, y) -> None:
        """One target as ``(n,)`` after calls that gave it as ``(n, 1)``, or the reverse, is refused, as
        ``fit_stream`` refuses a stream mixing them: ``coef_`` and ``predict`` had silently switched shapes with
        each call."""
        coef = getattr(self, "coef_", None)
        if coef is None or (np.ndim(coef) == 2 and np.shape(coef)[0] != 1):
            return  # (several targets: a call of another count is refused as such)
        ndim = np.ndim(y)
        was_1d = np.ndim(coef) == 1
        if (was_1d and ndim == 2 and np.shape(y)[1] == 1) or (not was_1d and ndim == 1):
            raise ValueError(
                f"partial_fit's y is {'2-D' if was_1d else '1-D'} but the earlier calls' y was "
                f"{'1-D' if was_1d else '2-D (one column)'}: every call's y must be 1-D, or every call's 2-D (coef_ "
                "and predict take their shape from it)."
            )

    def _partial_name(self, X) -> str:
        """The registry key of the solver a ``partial_fit`` call on ``X`` runs."""
        view = solver_view(X) if self.solver == "auto" else X
        return self._incremental_name(_solvers.resolve(self.solver, self.loss, view, self.alpha, incremental=True,
                                                       sparse=is_sparse(view), average=self.average))

    def _adds_statistics(self, X) -> bool:
        """Whether ``partial_fit`` on ``X`` runs a solver whose calls merge sufficient statistics."""
        try:
            name = self._partial_name(X)
        except (TypeError, ValueError):
            return False  # validation names the problem
        return _solvers.SOLVERS[name].chunked == "statistics"

    def _partial_fit(self, data, sweep=None):
        """``partial_fit`` on validated data; ``sweep`` (:class:`fastopt._iterative.Sweep`) places an
        iterative solver's pass in an epoch of a streamed fit (as :mod:`fastopt._sweeps` does)."""
        name = self._partial_name(data.X)
        prior = self._continued_state(name, data.Y.shape[1], restart=True)
        _solvers.check_options(name, self.get_params(), data.Y.shape[1], where="partial_fit")
        extra = {} if sweep is None else {"sweep": sweep}
        if prior is None and hasattr(self, "_solver_state"):  # after Newton's fit: on from its coefficients
            k, d = data.Y.shape[1], data.X.shape[1]
            extra["init"] = (np.reshape(self.coef_, (k, d)).astype(np.float64),
                             np.reshape(self.intercept_, (-1,)).astype(np.float64) * np.ones(k))
        if sweep is None:
            _warn_if_refit_alone(name, prior)
        result = _solvers.SOLVERS[name].partial_fit(self.get_params(), data, state=prior, **extra)
        return self._apply(name, data.y_was_1d, result)

    @_transactional
    @_fit_context(prefer_skip_nested_validation=True)
    def fit_stream(self, chunks: Iterable | Callable[[], Iterable]) -> LinearRegressor:
        """Fit on a stream of row chunks, holding one chunk (and the next, being read) in memory at a time.

        The closed form merges each chunk's sufficient statistics exactly and solves once, so the result is that of
        ``fit`` on all rows. An iterative solver runs epochs as ``fit`` does, an epoch being one sweep over the chunks
        with one pass over each: the schedule advances once per epoch, ``learning_rate="auto"`` is estimated from a
        seeded sample of every chunk's rows, and ``early_stopping`` holds out a seeded ``validation_fraction`` of every
        chunk (see "Scaling out" in the README). A minibatch never spans chunks; a chunk's last minibatch, when it has
        ``b < batch_size`` rows, steps on its summed gradient divided by ``batch_size`` (as if padded with rows of zero
        gradient), so every row weighs ``1 / batch_size`` in its step however the rows are chunked (``fit`` and
        ``partial_fit`` take the mean over the ``b`` rows). Sample weights are divided by their mean over all the
        stream's training rows, as ``fit`` divides them over all rows, so every chunk keeps its weight (an all-zero
        chunk adds no loss gradient, but, as rows of zero weight in ``fit``, it counts in that mean and its minibatches
        are steps);
        the learning-rate sampling pass totals them, or else, when the stream's first chunk has weights, one read of
        the chunks' weights before training; a chunk without weights has unit weights. Without the sampling pass (a
        numeric ``learning_rate``, or a warm start), a stream whose first chunk (a sequence's chunk 0, whatever the
        shuffled order) has no weights is taken as unweighted without that read (a chunk with weights is then an
        error); a one-shot iterator divides by its first chunk's mean weight (1 when it has none), so its later
        chunks' weights count at that scale. The closed form adds the chunks'
        weighted statistics exactly. Under ``warm_start`` an iterative solver continues the earlier fit where a
        re-readable stream's first chunk (read once more) has its features, targets and precision, and starts cold
        otherwise; a one-shot stream's chunks are checked against the earlier fit's features.

        Parameters
        ----------
        chunks : sequence, iterable, or callable returning an iterable
            Items ``(X, y)`` or ``(X, y, sample_weight)``, all with the same features and targets.
            A sequence (``len`` and indexing, e.g. a list) is visited in a fresh permutation of its chunks
            every epoch (``random_state``, ``shuffle``); a callable is called once per epoch for a fresh
            iterator; a one-shot iterator or generator allows a single pass (the closed form, or
            ``max_epochs=1`` without early stopping). A chunk without weights has unit weights. Every read
            must yield the same chunks: one whose rows, columns or targets' shape differ from an earlier
            read's, or a read with another number of chunks, raises ``ValueError`` (values are not compared).
            From the second chunk on, the next chunk is read, in a background thread, while the current one
            is fitted: a generator's chunks are copied as they are read (it may refill or change what it
            yielded once resumed), a sequence's are not (its items must not change when it is indexed).
            An epoch is one whole pass, so every read must end: an endless generator never returns (for
            an open-ended stream, call ``partial_fit`` on its chunks as they come).

        Returns
        -------
        self : LinearRegressor
            The fitted estimator.
        """
        return self._take(_streaming.fit(self, chunks, self._warm_state))

    # ------------------------------------------------------------ the fitted state: read and written only here

    def _warm_state(self, name: str):
        """The solver state a fit continues from: the previous fit's under ``warm_start`` with the same solver
        ``name``, else None."""
        if self.warm_start and getattr(self, "_solver_name", None) == name:
            return getattr(self, "_solver_state", None)
        return None

    def _switched_start(self, name: str, data):
        """Under ``warm_start``, the previous fit's ``(coef, intercept)`` as the start of a fit by another solver
        ``name`` (one that takes a start) on as many features and targets, else None. Its optimizer state is the
        other solver's and is not kept: the fit had started from scratch, silently (the exact fit's coefficients
        thrown away for SGD's from zero)."""
        if not self.warm_start or not hasattr(self, "coef_") or getattr(self, "_solver_name", name) == name:
            return None
        coef = np.asarray(self.coef_, dtype=np.float64).reshape(-1, np.shape(self.coef_)[-1])
        if coef.shape != (data.Y.shape[1], data.X.shape[1]):
            return None  # other shapes: a fresh fit, as a warm start of the same solver on them
        return _solvers.check_init(coef, self.intercept_ if self.fit_intercept else None, data)

    def _incremental_name(self, name: str) -> str:
        """The solver a ``partial_fit`` call runs: ``name``, what ``solver`` resolves to for it, except under
        ``solver="auto"`` after a fit or ``partial_fit`` that ran another solver which takes more rows and this
        loss: the closed form's ``"qr"`` (where ``n < d``; its statistics merge as the Gram's do), or an
        iterative one (SGD, which "auto" runs on sparse rows for a robust loss or where the Gram would not fit):
        that one goes on, so that the first call's rows decide."""
        prev = getattr(self, "_solver_name", None)
        if (self.solver == "auto" and hasattr(self, "_solver_state") and prev in _solvers.SOLVERS
                and _solvers.SOLVERS[prev].chunked in ("statistics", "epochs")
                and self.loss in _solvers.SOLVERS[prev].losses):
            return prev
        return name

    def _continued_state(self, name: str, n_targets: int | None = None, restart: bool = False):
        """The state a ``partial_fit`` call continues (None on the first call), after checking that it uses the
        same solver ``name`` (and, when known, the same number of targets, and for an iterative state the same
        ``fit_intercept``) as the earlier calls. With
        ``restart`` (in memory), None also where ``solver="auto"`` ran a solver whose state cannot take more rows
        (Newton's method) and ``name`` is iterative: the caller starts it from the fitted coefficients."""
        if not hasattr(self, "_solver_state"):
            return None
        if (restart and name != self._solver_name and self.solver == "auto" and n_targets == self._n_targets
                and _solvers.SOLVERS[self._solver_name].chunked is None
                and _solvers.SOLVERS[name].chunked == "epochs"):
            return None
        if name != self._solver_name and self.solver == "auto":
            ran = getattr(self, "solver_", self._solver_name)
            # (a Krylov attempt that handed over to the closed form keeps its own state, for warm_start)
            how = f", which handed over to the closed form (solver_={ran!r})" \
                if self._solver_name in ("cg", "lsqr") and ran != self._solver_name else ""
            prev = _solvers.SOLVERS[self._solver_name]
            why = "" if self.loss in prev.losses else f" (loss is now {self.loss!r}, which {self._solver_name!r} " \
                "does not fit)"
            raise ValueError(
                f"the earlier fit or partial_fit ran solver {self._solver_name!r}{how}, whose state cannot take more "
                f"rows by {name!r}, the solver that 'auto' runs in partial_fit{why}. Call fit on all the rows to "
                f"start over, or set solver={name!r} before the first fit to add rows later."
            )
        if name != self._solver_name:
            raise ValueError(
                f"the earlier fit or partial_fit was started with solver {self._solver_name!r}; solver is now "
                f"{name!r}. Call fit to start over."
            )
        if n_targets is not None and n_targets != self._n_targets:
            raise ValueError(f"y has {n_targets} target{'s' * (n_targets != 1)}; the earlier fit or partial_fit calls "
                             f"had {self._n_targets}.")
        state = self._solver_state
        dims, weights = getattr(state, "dims", None), getattr(state, "weights", None)
        if dims is not None and weights is not None and (weights.shape[0] > dims[0] * dims[1]) != self.fit_intercept:
            # an iterative state holds intercepts or not: the calls trained without (with) them while intercept_
            # followed the new setting (R^2 0.9993 -> -0.80). The closed form's statistics take either.
            raise ValueError(
                f"the earlier fit or partial_fit ran with fit_intercept={not self.fit_intercept}; fit_intercept is "
                f"now {self.fit_intercept}, which solver {self._solver_name!r} cannot continue. Call fit to start over."
            )
        return state

    def _take(self, outcome: Outcome):
        """Take a fit over chunks: the feature count and names of the template the chunks were checked
        against (``outcome.checked``), then the fitted attributes. Called once the fit has succeeded."""
        for attr in ("n_features_in_", "feature_names_in_"):
            if hasattr(outcome.checked, attr):
                setattr(self, attr, getattr(outcome.checked, attr))
            else:
                self.__dict__.pop(attr, None)
        return self._apply(outcome.name, outcome.y_was_1d, outcome.result)

    def _apply(self, name: str, y_was_1d: bool, result: FitResult):
        """Set the fitted attributes of solver ``name``'s ``result`` (``coef_`` 1-D when ``y_was_1d``)."""
        coef, intercept = result.coef, result.intercept
        if not (np.isfinite(coef).all() and np.isfinite(intercept).all()):
            # every solver's coefficients in the data's dtype (X of 1e-310, or float32 coefficients beyond 3.4e38:
            # the Krylov and iterative solvers returned inf and NaN, with NumPy's overflow warning alone)
            raise ValueError(beyond_range(name, coef.dtype))
        if y_was_1d:
            self.coef_, self.intercept_ = coef[0], (intercept[0] if self.fit_intercept else 0.0)
        else:
            self.coef_ = coef
            # without an intercept, 0.0 whatever y's shape, as LinearRegression and Ridge set it
            self.intercept_ = intercept if self.fit_intercept else 0.0
        for attr in getattr(self, "_fitted_attrs", ()):  # the earlier fit's own (a closed form's rcond_ stayed
            if attr not in result.attrs:                    # after an SGD fit, SGD's t_ after a closed form's)
                self.__dict__.pop(attr, None)
        for attr, value in result.attrs.items():
            setattr(self, attr, value)
        self._fitted_attrs = tuple(result.attrs)
        self._solver_name = name
        self._solver_state = result.state
        self._n_targets = coef.shape[0]
        return self

    def predict(self, X: ArrayLike) -> np.ndarray | dask.array.Array:
        """Predict with the fitted linear model.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)

        Returns
        -------
        y_pred : ndarray of shape (n_samples,) or (n_samples, n_targets)
            Dense also for sparse ``X``; a lazy ``dask.array.Array`` when ``X`` is a Dask collection.
        """
        if (dask_backend := _dask_backend(X)) is not None:
            return dask_backend.predict(self, X)
        check_is_fitted(self)
        X = check_predict_data(self, X)
        pred = X @ self.coef_.T
        if is_sparse(X):  # SciPy's one-row coo_array times a vector gives a scalar, not shape (1,)
            pred = np.asarray(pred).reshape(X.shape[:1] + self.coef_.T.shape[1:])
        return pred + self.intercept_

    def score(self, X: ArrayLike, y: ArrayLike, sample_weight: ArrayLike | None = None) -> float:
        """The coefficient of determination R^2 of the prediction, as ``RegressorMixin.score``.

        ``1 - sum w (y - y_hat)^2 / sum w (y - mean_w(y))^2``, averaged uniformly over the targets (scikit-learn's
        ``r2_score``); a constant target scores 1 when predicted exactly, else 0.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features), or a Dask collection
        y : array-like of shape (n_samples,) or (n_samples, n_targets), or a Dask collection
        sample_weight : array-like of shape (n_samples,), default=None

        Returns
        -------
        score : float
            On Dask collections computed block by block where the blocks live, also where their row counts are
            unknown (a Dask DataFrame's).
        """
        if (dask_backend := _dask_backend(X, y, sample_weight)) is not None:
            return dask_backend.score(self, X, y, sample_weight)
        return super().score(X, y, sample_weight=sample_weight)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        # Sparse X is fitted by the solvers that declare it (fastopt._solvers.supports_sparse); predict and score
        # accept it whatever the solver.
        try:
            tags.input_tags.sparse = _solvers.supports_sparse(_solvers.resolve(self.solver, self.loss))
        except (KeyError, ValueError):  # an invalid solver/loss pair: fit will say so
            tags.input_tags.sparse = False
        return tags
