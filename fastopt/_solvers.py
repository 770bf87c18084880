"""The solver registry: one entry per ``solver=`` name, no if-chain.

A solver takes the estimator's hyperparameters and validated data, and returns a
:class:`fastopt._result.FitResult`; it owns allocation, randomness, epochs, schedules, stopping and convergence.
The estimator owns only the sklearn API.

Every entry is a :class:`fastopt._result.Solver`, which declares what it supports (``losses``,
``supports_sparse``, ``per_target_alpha``, ``positive``, ``averages``, ``accepts_init``, ``chunked``: how it
fits chunks for ``fit_stream`` and Dask arrays, or None when it cannot fit incrementally),
``checks_finite_X(params)``, ``checks_finite_y(params)`` and ``checks_indices(params)``; callers read these
declarations, never a solver's name or module. It implements::

    solver.fit(params, data, state=None) -> FitResult
        A full fit. ``state`` is the previous fit's state when ``warm_start`` applies, else None.
    solver.partial_fit(params, data, state=None) -> FitResult
        One incremental update: a closed-form solver merges sufficient statistics, an iterative one makes one
        pass over the given rows (placed in an epoch of a streamed fit by an optional ``sweep``), a Krylov one
        (``_krylov``) refits the given rows from the previous coefficients. ``state`` is None on the first call.

A fit over chunks runs the path that ``chunked`` names: :mod:`fastopt._streaming` and :mod:`fastopt._dask`
each hold one function per kind (a table, not a branch on names).

``params`` is ``estimator.get_params()``; ``data`` is a :class:`fastopt._validation.Data`.
"""
from __future__ import annotations

import math
from numbers import Number

import numpy as np
import scipy.sparse

from fastopt import _closed_form, _iterative, _krylov, _newton
from fastopt._result import Solver

SOLVERS: dict[str, Solver] = {**_closed_form.SOLVERS, **_iterative.SOLVERS, **_newton.SOLVERS, **_krylov.SOLVERS}

# Every loss= value some solver fits (the estimator's parameter constraint).
LOSSES = frozenset().union(*(entry.losses for entry in SOLVERS.values()))

# "auto": the exact minimiser: the closed form for squared error, Newton's method for the robust losses.
AUTO = {"squared_error": "normal", "absolute_error": "newton", "huber": "newton"}

# "auto" for incremental fits (partial_fit, fit_stream, Dask arrays), which Newton's method cannot make.
AUTO_INCREMENTAL = {**AUTO, "absolute_error": "adam", "huber": "adam"}

# "auto" on sparse X for the robust losses where Newton does not pay (_newton_pays: the absolute error, costly
# factorisations, a Hessian that would not fit), and for rows in chunks: plain SGD, whose sparse step costs
# O(nonzeros) (exact Adam costs O(d) a step) and whose default schedule converges.
AUTO_SPARSE = {**AUTO, "absolute_error": "sgd", "huber": "sgd"}

# "auto" for squared error in partial_fit (and on a stream read only once) when the Gram would not fit: SGD, as
# scikit-learn's SGDRegressor (a Krylov solver needs every row at every iteration).
AUTO_WIDE_INCREMENTAL = "sgd"

# "auto" for squared error, once the data is known (the table in LinearRegressor's docstring): the closed form
# while its d x d Gram fits in GRAM_MAX_BYTES, else a Krylov solver.
GRAM_MAX_BYTES = 2**28  # 256 MiB of float64: d <= 5792


def auto_least_squares(X, alpha: float, positive: bool = False) -> str:
    """``solver="auto"`` for squared error by the kind and size of ``X`` (an array, sparse matrix or Dask array;
    ``positive``: the closed form's NNLS, which no Krylov solver has)."""
    try:
        shape = getattr(X, "shape", None) or np.shape(X)
        n, d = shape
    except (TypeError, ValueError):
        return "normal"  # not a 2-D table: validation gives the precise error
    # Only plain numbers: a Dask DataFrame's row count is a lazy scalar, and converting it would compute it.
    n = float(n) if isinstance(n, Number) else math.nan
    d = float(d) if isinstance(d, Number) else 0.0
    ridge = _ridged(alpha)
    if 8.0 * d * d > GRAM_MAX_BYTES or krylov_first(X, positive, alpha):  # too wide for the Gram, or Krylov first
        return krylov_for(alpha)
    # Fewer rows than features: rank-deficient, so Cholesky would be rejected anyway; QR/SVD directly.
    return "qr" if n < d and not ridge.any() else "normal"


def _hessian_fits(X) -> bool:
    """Whether the ``d x d`` matrices of Newton's method on ``X`` fit in ``GRAM_MAX_BYTES``, as the closed form's
    Gram must (a shape not known yet, as a Dask DataFrame's, is taken to fit)."""
    d = (getattr(X, "shape", None) or (0, 0))[-1]
    return not isinstance(d, Number) or math.isnan(d) or 8.0 * d * d <= GRAM_MAX_BYTES


# "auto" fits the Huber loss on sparse X by Newton's method (the exact minimiser) where its cost, about
# NEWTON_ITERS iterations of a factorisation (d^3 / 3 flops, fastopt._krylov.CLOSED_FORM_S_PER_FLOP each) and a
# pass (as an SGD epoch), is at most NEWTON_PREMIUM times an SGD fit (about SGD_EPOCHS epochs of
# SGD_S_PER_STORED a stored value), else by SGD. Measured (CountVectorizer counts, Student-t noise): 5,000 x 3,000
# (84,598 stored values) Newton 8.6 s against SGD's 43 ms; 20,000 x 800 (336,417) 257-300 ms against 67 ms;
# 50,000 x 300 (824,847) 74-132 ms against 148 ms; the design onehot_sparse_narrow (200,000 x 493, 1.2 million)
# 452 ms against 278 ms. The absolute error's smoothing stages took 160-700 iterations there (2.1 s, 7.1 s and
# 5.3 s): more than the premium allows anywhere, so "auto" fits it on sparse X by SGD (solver="newton" gives the
# exact minimiser), except on tiny data: where LAD_SMALL_PASSES passes cost at most LAD_SMALL_SECONDS by the model,
# Newton. There SGD's fits that the plateau check missed stopped silently (an optimum that interpolates most rows:
# 50 x 40 at 10% stored, 1-18% above), and Newton's whole fit took 30-40 ms (22-38 iterations) against SGD's 9-30.
NEWTON_ITERS, NEWTON_PREMIUM = 10, 4.0
SGD_EPOCHS, SGD_S_PER_STORED = 25, 1e-8
LAD_SMALL_PASSES, LAD_SMALL_SECONDS = 100, 5e-3


def _newton_pays(X, loss: str) -> bool:
    """Whether "auto" fits ``loss`` on sparse ``X`` by Newton's method: the Huber loss, where its ``d x d``
    matrices fit (:func:`_hessian_fits`) and its cost is at most ``NEWTON_PREMIUM`` SGD fits (the model above;
    without the stored values' count, as on Dask arrays, one a row); the absolute error on tiny data only
    (``LAD_SMALL_PASSES`` passes within ``LAD_SMALL_SECONDS``)."""
    if not _hessian_fits(X):
        return False
    size = _known_size(X)
    if loss == "absolute_error":
        return size is not None and LAD_SMALL_PASSES * _newton_pass_seconds(*size[1:]) <= LAD_SMALL_SECONDS
    if size is None:
        return True
    _, d, stored = size
    return NEWTON_ITERS * _newton_pass_seconds(d, stored) <= NEWTON_PREMIUM * SGD_EPOCHS * SGD_S_PER_STORED * stored


def _newton_pass_seconds(d: float, stored: float) -> float:
    """One Newton iteration's modelled seconds on ``d`` columns and ``stored`` values: a factorisation (``d^3 / 3``
    flops, fastopt._krylov.CLOSED_FORM_S_PER_FLOP each) and a pass over the rows (as an SGD epoch)."""
    return _krylov.CLOSED_FORM_S_PER_FLOP * d**3 / 3.0 + SGD_S_PER_STORED * stored


# "auto" on sparse X in memory where Newton does not pay by the model above (the Huber loss, and the absolute error,
# whose smoothing stages are too many to start with on text-like designs): SGD, and where SGD's
# fit warns that it has not converged (the plateau check's bound, or max_epochs), Newton from SGD's coefficients
# within RESCUE_SECONDS by the model (each pass a factorisation and a read of the rows; the R factor's path its own
# flops: fastopt._newton.TRIAL_KEY), taken if it converges within them; else SGD's fit and its warning stand. Only
# where at least RESCUE_MIN_PASSES passes fit in that. Measured from SGD's fit (TF-IDF 5,000 x 1,000 and sp.random
# 2,000 x 1,000, Gaussian, Student-t and 3% Cauchy noise; SGD 0.08-9.1% above the minimum, warned): 3-5 passes,
# 0.09-0.23 s; hashed 3,000 x 1,024 (a singular inlier Hessian: the R factor's path), 6 passes, its QR and SVD, 1.0 s;
# 30% of targets at +1e6 (2,000 x 1,000, 1% stored): 793-839 passes from least squares, 18-21 s, which the trial
# stops after 60 (1.4 s) to keep SGD's fit, 4-7% above, warned.
RESCUE_SECONDS, RESCUE_MIN_PASSES = 1.0, 10
# The absolute error's smoothing stages take more passes: 32-54 from SGD's fit on 1,000 x 40 CSR rows (SGD 1.5-5%
# above the minimum, and 11.6 times it with targets offset 1,000 under weights 10^U(-3, 3), warned: now exact in
# 0.06-0.14 s; TF-IDF 5,000 x 100 and x 300, SGD 2-5% above, warned: exact in 0.2-0.9 s), 160-825 on TF-IDF,
# hashed and sp.random rows of about 1,000 columns, where some 55 passes fit in the budget: every trial there gave
# up after it (+1.1-1.3 s on a 0.02-0.07 s fit, the same warned result). So only where this many passes fit.
RESCUE_MIN_PASSES_LAD = 100
# A warm start after such a fit, with the same parameters, tries Newton from its minimiser first within this many
# passes' worth of the budget (LinearRegressor._fit_rescued).
WARM_PASSES = 5


def newton_rescue(solver: str, name: str, X, params: dict) -> tuple[float, float] | None:
    """``(budget, pass)`` in modelled seconds (``fastopt._newton.TRIAL_KEY``) that ``solver="auto"``, having
    resolved to SGD (``name``) for a robust loss on sparse ``X`` in memory, gives Newton's method after an
    unconverged SGD fit (the model above); None where it does not try it."""
    loss = params["loss"]
    if not (solver == "auto" and loss in ("huber", "absolute_error") and name == AUTO_SPARSE[loss]
            and scipy.sparse.issparse(X) and _hessian_fits(X)):
        return None
    if params.get("early_stopping") or params.get("average") or params.get("positive") or np.ndim(params["alpha"]):
        return None  # asked of SGD (held-out rows, averaging), or not Newton's (constraints)
    size = _known_size(X)
    if size is None:
        return None
    per_pass = _newton_pass_seconds(*size[1:])
    passes = RESCUE_MIN_PASSES_LAD if loss == "absolute_error" else RESCUE_MIN_PASSES
    return (RESCUE_SECONDS, per_pass) if passes * per_pass <= RESCUE_SECONDS else None


def _known_size(X) -> tuple[float, float, float] | None:
    """``(n, d, stored values)`` of ``X`` for the cost models, or None where its shape is not known yet (a Dask
    DataFrame's); without the stored values' count, as on Dask arrays, one a row."""
    n, d = X.shape[0], X.shape[-1]
    if not (isinstance(n, Number) and isinstance(d, Number)) or math.isnan(n) or math.isnan(d):
        return None
    stored = getattr(X, "nnz", None)
    return n, d, n if not isinstance(stored, Number) else max(stored, n)


# "auto" with positive=True on sparse X: the closed form's NNLS is exact, but on exactly dependent columns (one-hot
# beside an intercept) its Cholesky is rejected and the QR path densifies the rows, 2 n d^2 flops
# (fastopt._krylov.CLOSED_FORM_S_PER_FLOP each); where that exceeds POSITIVE_PREMIUM SGD fits (the model above),
# projected SGD. Measured: 50,000 x 333 one-hot, 1.5-2.1 s exact (model 0.55 s, 11 SGD fits): the closed form;
# 100,000 x 3,853, over 90 s (model 148 s, 1,500 SGD fits): projected SGD, 0.5 s.
POSITIVE_PREMIUM = 50.0


def _positive_closed_form_pays(X) -> bool:
    """Whether "auto" fits ``positive=True`` on sparse ``X`` by the closed form (the model above)."""
    size = _known_size(X)
    if size is None:
        return True
    n, d, stored = size
    qr = _krylov.CLOSED_FORM_S_PER_FLOP * 2.0 * n * (d + 1.0) ** 2
    return qr <= POSITIVE_PREMIUM * SGD_EPOCHS * SGD_S_PER_STORED * stored


def _ridged(alpha) -> np.ndarray:
    """Whether ``alpha`` (one, or one per target) puts a ridge on each target, read before :func:`check_options`
    has checked it: the real part of a complex alpha, which that check then refuses."""
    return np.real(np.asarray(alpha)).astype(float) > 0


def krylov_for(alpha) -> str:
    """The Krylov solver for ``alpha`` (one, or one per target): with a ridge on every target, which bounds the
    condition number, CGLS, whose cheaper iteration is then as accurate; else LSQR, the more stable of the two
    (Paige & Saunders 1982)."""
    return "cg" if np.all(_ridged(alpha)) else "lsqr"


def krylov_first(X, positive: bool = False, alpha=0.0) -> bool:
    """Whether ``solver="auto"`` on ``X`` whose Gram fits runs a Krylov solver first (falling back on the
    closed form if it does not reach round-off within the closed form's cost): sparse ``X`` on which the closed
    form costs at least :func:`fastopt._krylov.attempt_floor` Krylov iterations
    (:func:`fastopt._krylov.closed_form_iterations`; the weights, not known here, are judged by the attempt)."""
    if not (scipy.sparse.issparse(X) and X.ndim == 2 and krylov_first_shape(X.shape, positive)):
        return False
    n, d = X.shape
    return _krylov.closed_form_iterations(n, d, X.nnz) >= _krylov.attempt_floor(X.nnz, alpha, weighted=False)


def krylov_first_shape(shape: tuple, positive: bool = False) -> bool:
    """:func:`krylov_first` before the stored values are known (Dask arrays of sparse blocks, streams): not
    ``positive`` and a Gram that fits; the cost is judged once the blocks are read."""
    d = shape[1] if len(shape) == 2 else math.nan
    return not positive and isinstance(d, Number) and not math.isnan(d) and 8.0 * d * d <= GRAM_MAX_BYTES


def fit_params(solver: str, name: str, X, params: dict) -> dict:
    """``params`` for registry entry ``name``'s ``fit`` on ``X``, where ``solver`` named it: under "auto" a
    Krylov solver run first in the closed form's band (:func:`krylov_first`) is told so, to fall back on it, and
    the closed form on sparse ``X``, to try a Krylov solver before its QR fallback
    (:func:`fastopt._closed_form.krylov_instead`)."""
    if solver == "auto" and name in _krylov.SOLVERS and krylov_first(X, bool(params.get("positive")),
                                                                       params["alpha"]):
        return {**params, _krylov.AUTO_KEY: True}
    if solver == "auto" and name == "normal" and scipy.sparse.issparse(X):  # Krylov if Cholesky is rejected
        return {**params, _closed_form.AUTO_KEY: True}
    if solver == "auto" and name == "qr":  # fewer rows than columns: the rows' own system first, where it is exact
        return {**params, _closed_form.KERNEL_KEY: True}
    return params


def uniform_alpha(alpha, y):
    """``alpha`` as one number where it is an array giving every target of ``y`` the same value (one entry, or
    one per target), as ``Ridge(alpha=array)`` means it; else ``alpha`` as given (a wrong shape is named by the
    solver). The scalar's paths then apply: an array with any zero entry never reached the closed form's pivoted
    path nor ``"auto"``'s Krylov-first route (one-hot CSR of 50,000 x 710 with ``alpha=[0, 0]``: the SVD, 2.2 s,
    where ``alpha=0`` takes 0.015-0.044 s)."""
    if not np.ndim(alpha):
        return alpha
    a = np.asarray(alpha)
    if a.ndim != 1 or a.size == 0 or a.dtype.kind not in "iuf" or not np.all(a == a[0]):
        return alpha
    targets = 1 if np.ndim(y) < 2 else np.shape(y)[1]
    return float(a[0]) if a.shape[0] in (1, targets) else alpha


def resolve(solver: str, loss: str, X=None, alpha: float = 0.0, incremental: bool = False,
            sparse: bool = False, positive: bool = False, rereadable: bool = False, average: bool | int = False) -> str:
    """The registry key that ``solver=`` names for ``loss`` (in an ``incremental`` fit, on ``sparse`` X; for
    "auto" with squared error, by the training data ``X`` when known and ``positive``; in an incremental fit by a
    chunk ``X`` when known, from a stream that can be read once per iteration when ``rereadable``); raises
    ValueError on an impossible pair. Under "auto", ``average`` (Polyak-Ruppert averaging, which only the iterative
    solvers define) picks SGD, as ``SGDRegressor(average=...)``."""
    if solver == "auto" and average:
        return resolve("sgd", loss)
    if solver == "auto":
        # (incremental on sparse rows: SGD for the robust losses, whose step costs O(nonzeros))
        name = (AUTO_SPARSE if sparse and incremental else AUTO_INCREMENTAL if incremental else AUTO)[loss]
        if sparse and not SOLVERS[name].supports_sparse:
            name = AUTO_SPARSE[loss]
    else:
        name = solver
    if solver == "auto" and name == "normal" and X is not None and incremental and not _hessian_fits(X):
        # the Gram would not fit: a Krylov solver where each iteration can read the stream again, else SGD
        name = krylov_for(alpha) if rereadable else AUTO_WIDE_INCREMENTAL
    if solver == "auto" and name == "normal" and X is not None and not incremental:
        name = auto_least_squares(X, alpha, positive)
    if solver == "auto" and positive and not SOLVERS[name].positive:
        # Newton has no constraints: the iterative solvers' projected steps (as for rows in chunks)
        name = (AUTO_SPARSE if sparse else AUTO_INCREMENTAL)[loss]
        if name == "normal" and X is not None and not _hessian_fits(X):
            # no Krylov solver takes the constraint, and the closed form's d x d would not fit: projected SGD
            # (the closed form formed it anyway: 200,000 one-hot rows of 7,303 columns ran for over ten minutes)
            name = AUTO_WIDE_INCREMENTAL
    if solver == "auto" and positive and sparse and not incremental and name in ("normal", "qr") and X is not None \
            and not _positive_closed_form_pays(X):
        name = AUTO_WIDE_INCREMENTAL  # the densified QR the closed form may need costs too much
    if solver == "auto" and sparse and X is not None and not SOLVERS[name].chunked and not _newton_pays(X, loss):
        name = AUTO_SPARSE[loss]  # Newton's d x d Hessian would not fit, or its factorisations cost too much
    if solver == "auto" and np.ndim(alpha) and not incremental and not SOLVERS[name].per_target_alpha \
            and not positive:
        name = AUTO[loss]  # one alpha per target: Newton (or the closed form) takes it, SGD does not
    entry = SOLVERS[name]
    if loss not in entry.losses:
        raise ValueError(
            f"solver={solver!r} supports loss in {sorted(entry.losses)}, got loss={loss!r}; "
            "use an iterative solver (e.g. solver='adam') for robust losses."
        )
    return name


def needs_finite_check(name: str, params: dict) -> bool:
    """Whether validation must check ``X`` for NaN/inf, or the solver's ``fit`` reports it (saving a pass)."""
    return not SOLVERS[name].checks_finite_X(params)


def needs_index_check(name: str, params: dict) -> bool:
    """Whether validation must check a CSR ``X``'s column indices, or the solver's ``fit`` does (saving a pass)."""
    return not SOLVERS[name].checks_indices(params)


def needs_finite_y_check(name: str, params: dict) -> bool:
    """Whether validation must check ``y`` for NaN/inf, or the solver's ``fit`` reports it (saving a pass)."""
    return not SOLVERS[name].checks_finite_y(params)


def check_ridge_range(name: str, params: dict, sample_weight: np.ndarray | None, n_rows: int) -> None:
    """ValueError when solver ``name`` forms the ridge (:attr:`Solver.forms_ridge`) and it overflows float64:
    ``alpha W`` with the weights in the units the solvers normalise them to (a power of two of the largest, which
    leaves the fit unchanged), so ``W`` is the rows' count, or the weights' sum over the largest (``alpha`` of 1e308
    on 50 rows: "the sufficient statistics overflowed", which blamed X and y, or LAPACK's "SVD did not
    converge")."""
    if not SOLVERS[name].forms_ridge:
        return
    top = float(np.max(np.asarray(params["alpha"], dtype=np.float64), initial=0.0))
    if top == 0.0:
        return
    rows = float(n_rows)
    if sample_weight is not None:
        largest = float(np.max(sample_weight))
        rows = float(np.sum(sample_weight / largest, dtype=np.float64)) if largest > 0 else 0.0
    with np.errstate(over="ignore"):
        ridge = top * rows
    if not np.isfinite(ridge):
        raise ValueError(
            f"alpha = {top:.3g} times the rows' weight ({rows:.3g} rows, the weights over the largest) overflows "
            f"float64: solver={name!r} forms that ridge. Lower alpha (the coefficients are below 1e-300 of "
            "X^T y / n here) or use an iterative solver, which takes alpha per mean."
        )


def check_options(name: str, params: dict, n_targets: int | None, where: str | None = None) -> None:
    """Raise ValueError when solver ``name`` cannot honour ``alpha`` (array), ``positive`` or ``average``
    (``n_targets`` None: before the targets are known, as a stream or Dask fit checks before its first pass;
    ``where`` "stream", "dask" or "partial_fit" for rows in chunks, so that the advice names solvers that fit
    there)."""
    entry = SOLVERS[name]
    alpha = np.asarray(params["alpha"])
    # (a 0-d array passes the "array-like" constraint as a number does not: np.array(-0.5) had fitted a negative
    # ridge, and np.array(nan) failed with "overflow")
    if np.iscomplexobj(alpha):  # (its imaginary part was dropped, with NumPy's ComplexWarning alone)
        raise ValueError("alpha must be real: finite and non-negative.")
    if alpha.dtype == bool:  # (it read "must be finite and non-negative", which True is)
        raise ValueError(f"alpha must be a number, not a bool (got {params['alpha']!r}).")
    if not np.issubdtype(alpha.dtype, np.number) or not np.all(np.isfinite(alpha)) or np.any(alpha < 0):
        raise ValueError("alpha must be finite and non-negative.")
    if alpha.ndim:
        if not entry.per_target_alpha:
            loss = params.get("loss", "squared_error")
            # the solvers that take one alpha per target for this loss (on rows in chunks: those that fit chunks,
            # or Dask arrays by their own passes), so that the advice is one that can be followed
            # (and, under positive=True, those that take the constraint: cg, lsqr and newton refuse it)
            takers = sorted(other for other, e in SOLVERS.items() if e.per_target_alpha and loss in e.losses
                            and (where is None or e.chunked is not None
                                 or (where == "dask" and loss in e.dask_losses))
                            and (e.positive or not params.get("positive")))
            place = {None: "", "stream": " on a stream of chunks", "dask": " on Dask arrays",
                     "partial_fit": " in partial_fit"}[where]
            given = f"loss={loss!r}" + (" and positive=True" if params.get("positive") else "")
            if not takers:
                raise ValueError(
                    f"alpha has one value per target, which no solver takes with {given}{place} "
                    f"(solver={name!r} takes a scalar alpha). Fit each target with its own alpha, or pass one alpha."
                )
            raise ValueError(f"solver={name!r} takes a scalar alpha; with {given}{place} a per-target alpha "
                             f"array needs solver={' or '.join(repr(t) for t in takers)}.")
        if n_targets is not None and alpha.shape not in ((n_targets,), (1,)):  # (1,): every target's, as Ridge
            raise ValueError(f"alpha has shape {alpha.shape}; an array alpha needs one value per target, "
                             f"shape ({n_targets},)" + (", or one for all, shape (1,)." if n_targets != 1 else
                                                        ": y has one target."))
    if params.get("positive") and not entry.positive:
        raise ValueError(f"positive=True is not supported by solver={name!r}; use the closed form or an iterative "
                         "solver.")
    if params.get("average") and not entry.averages:
        raise ValueError(f"average={params['average']!r} applies to the iterative solvers, not solver={name!r}.")


def check_init(coef_init, intercept_init, data) -> tuple[np.ndarray, np.ndarray]:
    """``coef_init`` (n_features,) or (n_targets, n_features) and ``intercept_init`` (scalar or (n_targets,))
    as float64 arrays of shapes (k, d) and (k,); None stands for zeros."""
    d, k = data.X.shape[1], data.Y.shape[1]
    coef = np.zeros((k, d)) if coef_init is None else np.asarray(coef_init, dtype=np.float64)
    if coef.shape == (d,) and k == 1:
        coef = coef.reshape(1, d)
    if coef.shape != (k, d):
        expected = f"({d},) or ({k}, {d})" if k == 1 else f"({k}, {d}): one row for each of y's {k} targets"
        raise ValueError(f"coef_init has shape {coef.shape}; expected {expected}.")
    b = np.zeros(k) if intercept_init is None else np.asarray(intercept_init, dtype=np.float64).reshape(-1)
    if b.shape == (1,) and k > 1:
        b = np.repeat(b, k)
    if b.shape != (k,):
        raise ValueError(f"intercept_init has shape {np.shape(intercept_init)}; expected a scalar or ({k},).")
    if not (np.all(np.isfinite(coef)) and np.all(np.isfinite(b))):
        raise ValueError("coef_init and intercept_init must be finite.")
    return coef, b


def supports_sparse(name: str) -> bool:
    """Whether the registry entry ``name`` fits sparse ``X``."""
    return SOLVERS[name].supports_sparse


def sparse_solvers() -> list[str]:
    """The ``solver=`` names that accept sparse ``X``."""
    return sorted(name for name in SOLVERS if supports_sparse(name))
