"""Data-derived quantities for the iterative solvers: the loss of a model, and ``learning_rate="auto"``.

``learning_rate="auto"`` follows the ill-conditioning argument of Goodfellow, Bengio & Courville, *Deep Learning*, 2016,
sec. 4.3.1 and 8.2.1: a gradient step ``-lr g`` lowers a quadratic loss only if ``lr < 2 / L`` along the Hessian's top
eigenvector, ``L`` its largest eigenvalue. ``L`` is found by power iteration with Hessian-vector products ``Xa^T
diag(sw) Xa v / n`` (``Xa = [X, 1]`` with an intercept), on at most ``AUTO_ROWS`` training rows (for a streamed or Dask
fit, a seeded uniform sample of that size across all chunks, see :mod:`fastopt._streaming`). The squared-error
Hessian is used for every loss: it bounds Huber's and sets the curvature scale for absolute error.

Minibatches are noisier than the full gradient, so the plain and momentum rules take the critical step size of
minibatch SGD on least squares (Jain, Kakade, Kidambi, Netrapalli & Sidford, JMLR 2018),
``lr = b / (R^2 + (b - 1) L)`` with ``b`` the batch size (``1 / L`` for full batches, ``1 / R^2`` for single
rows) and ``R^2`` the constant of their fourth-moment condition ``E[w^2 ||x||^2 x x^T] <= R^2 H``, estimated by
its trace, ``E[c^2] / E[c]`` over the rows' weighted curvatures ``c = w ||x||^2`` (weights of mean 1), plus the
ridge's largest coefficient (a row's Hessian with the penalty, ``w x x^T + Lambda``, squared is at most
``c + max Lambda`` times itself; the penalty is no noise, and its trace would count each column's). The first
term is the mean weighted squared row norm when every row has the same ``c``, and grows
with their spread: a few heavy rows (by weight or by size) set it, as they set the largest step a minibatch
holding one of them can take. Heavy-ball and Nesterov momentum multiply the effective step by
``1 / (1 - momentum)``, so their rate is scaled by ``1 - momentum``. For the absolute error and Huber's loss the
rate is also multiplied by the start's residual scale (:func:`robust_rate_factor`): the critical rate is the squared
error's, and the absolute error's gradient carries no unit of the targets.

The adaptive rules (AdaGrad, RMSProp, Adam, AdamW) move each coordinate by about ``lr`` per step whatever the
gradient's scale, so ``lr`` must be a distance: ``ADAPTIVE_FRACTION * ||g0||_inf * lr_sgd``, a fraction of the
largest coordinate of the first gradient step from the initial parameters (``g0`` the squared-error gradient
there, which measures the distance left to the targets, with a robust loss its residuals clipped at
``ROBUST_CLIP`` times their robust scale, :func:`residual_scale`; the intercepts of a squared-error fit start at
the targets' mean, :func:`target_centre`) taken at the critical minibatch rate
``lr_sgd`` above with ``R^2`` the mean weighted squared row norm plus the ridge's largest coefficient (their
steps are distances, not multiples of a row's gradient), so that the minibatch noise shrinks it as it shrinks
SGD's step (``ADAGRAD_FRACTION`` for AdaGrad, whose steps decay by themselves).

The estimate is deterministic: on at most ``AUTO_ROWS`` rows it reads them all (beyond, a sample drawn from the
fixed ``AUTO_SAMPLE_SEED``), the power iteration starts from a fixed vector, and every reduction runs in NumPy's
own single-threaded loops, so neither ``random_state`` nor the BLAS thread count changes the rate.
"""
from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import numpy as np
import scipy.sparse as sp

from fastopt import _kernels, _sparse
from fastopt._closed_form import CONSTANT_RTOL  # a dense column's constant rule, as the closed form's
from fastopt.optim import OPTIMIZERS, Loss

AUTO_ROWS = 20_000  # rows used to estimate the Hessian: enough for a few-percent estimate of L
POWER_ITERATIONS = 100
POWER_RTOL = 1e-3  # a step size needs L to three digits, not more
POWER_START_SEED = 0x70A1  # the power iteration's fixed Gaussian start (_start_vector)
ADAPTIVE_FRACTION = 0.1
# AdaGrad divides its rate by the root of the summed squared gradients, so its steps shrink like 1 / sqrt(t)
# by themselves: it starts larger (as torch's default rates, 1e-2 against Adam's 1e-3). Measured on the
# convergence suite (n = 20,000, d = 50, condition number 1e3, no intercept): the excess reached by default is
# 2.3e-3 with a fraction of 1, 3.2e-4 with 3, 8.5e-5 with 10; 10 doubles the epochs at n = 100,000, d = 100.
ADAGRAD_FRACTION = 3.0
# The adaptive rules' first gradient for a robust loss: residuals clipped at this many times their scale
# (residual_scale; about 5 standard deviations of Gaussian residuals, whose mean magnitude is 0.8 of one).
ROBUST_CLIP = 4.0
# residual_scale: residuals beyond RESIDUAL_CLIP times the scale are clipped there (rows holding less than
# 1 / RESIDUAL_CLIP of the weight cannot raise it), in at most this many rounds from the mean (each a step to the
# fixed point of the map's line: one far outlier among 1,000 rows, 2 rounds).
RESIDUAL_CLIP = 100.0
RESIDUAL_CLIP_ROUNDS = 64
AUTO_SAMPLE_SEED = 0x5EED  # fixed: the sampled rows (beyond AUTO_ROWS) never depend on random_state
CHUNK_ROWS = 65_536  # bounds the temporaries of mean_loss
# ... and, for wide rows, this many values: blocks of 65,536 rows of d = 200 columns made 105 MB temporaries,
# several at a time, more than a mapped X of 70,000 such rows (which an epoch reads in place).
CHUNK_VALUES = 2**20


def block_rows(d: int) -> int:
    """Rows per block of the passes over dense ``X`` with ``d`` columns: temporaries of at most
    ``CHUNK_VALUES`` values (8 MiB in float64)."""
    return max(1, min(CHUNK_ROWS, CHUNK_VALUES // max(d, 1)))


def rows_times(X, W: np.ndarray) -> np.ndarray:
    """``X @ W.T`` for the rows ``X`` (dense or sparse) and the weights ``W`` (k, d), in their common dtype. Dense
    rows take NumPy's own loops (``einsum``), not BLAS: between epochs, a threaded BLAS product wakes OpenBLAS's
    worker threads, which then spin on the core that the next two-thread epoch's helper needs (200,000 x 100 with
    ``early_stopping``: a 20,000-row validation product before each epoch made the two-thread epochs 3.6 times
    slower, 75 against 21 ms, and the fit slower than on one thread)."""
    if sp.issparse(X):
        if X.shape[1] == W.shape[1] and _sparse.compiled_csr(X, W.dtype):  # the same bits, its gathers requested ahead
            return _kernels.csr_times(X.data, X.indices, X.indptr, np.ascontiguousarray(W))
        return np.asarray(X @ W.T)
    return np.einsum("ij,kj->ik", X, W)


def _per_sample_loss(R, loss, epsilon):
    if loss == Loss.ABSOLUTE_ERROR:
        return np.abs(R)
    if loss == Loss.HUBER:
        A = np.abs(R)
        return np.where(A <= epsilon, 0.5 * R * R, epsilon * (A - 0.5 * epsilon))
    return 0.5 * R * R


def _row_blocks(rows: np.ndarray, n: int, step: int):
    """Blocks of ``step`` of the sorted, unique ``rows`` of ``n``: slices where they are all rows (read in place,
    not gathered), else index arrays."""
    every = rows.shape[0] == n
    for start in range(0, rows.shape[0], step):
        yield slice(start, start + step) if every else rows[start : start + step]


def residual_blocks(data, rows, p):
    """``(r, R)`` for each block ``r`` of ``rows`` (:func:`_row_blocks`): ``R`` the residuals ``X_r W^T + b - Y_r``
    in float64 of the parameter vector ``p`` (weights, then intercepts), a block's temporaries within
    :func:`block_rows`."""
    d, k = data.X.shape[1], data.Y.shape[1]
    W = p[: k * d].reshape(k, d).astype(np.float64)
    for r in _row_blocks(rows, data.Y.shape[0], block_rows(d)):
        R = -data.Y[r].astype(np.float64)
        R += rows_times(data.X[r], W)
        if p.shape[0] > k * d:
            R += p[k * d :]
        yield r, R


def mean_loss(data, rows, sw, p, loss, epsilon) -> float:
    """Weighted mean over ``rows`` of the per-sample loss (summed over targets) at parameters ``p``.

    ``p`` is the parameter vector (weights, then intercepts), or None for the all-zero model, which needs no
    pass over ``X``. ``sw`` are the normalised weights or None.
    """
    total = 0.0
    if p is None:  # every loss is even, so the residuals -y may be taken as y
        blocks = ((r, data.Y[r].astype(np.float64, copy=False))
                  for r in _row_blocks(rows, data.Y.shape[0], CHUNK_ROWS))
    else:
        blocks = residual_blocks(data, rows, p)
    for r, R in blocks:
        # NumPy's sums, not a BLAS dot: a threaded BLAS call costs milliseconds here when the cores are busy.
        if loss == Loss.SQUARED_ERROR:  # one pass, no temporaries
            total += 0.5 * float(np.einsum("ij,ij->", R, R) if sw is None else np.einsum("ij,ij,i->", R, R, sw[r]))
        else:
            per_sample = _per_sample_loss(R, loss, epsilon)
            total += float(np.sum(per_sample) if sw is None else np.sum(per_sample.sum(axis=1) * sw[r]))
    return total / rows.shape[0]


# Preconditioning of precondition="auto" (Affine): rescale when the columns' standard deviations span more than
# this factor, centre (with an intercept) when a column's mean exceeds this many of its standard deviations.
# Measured on the convergence suite (n = 20,000, d = 50, columns scaled 1e-2..1e2): without it SGD stops 6e-3
# above the optimum with noise 0.3 and is 60 above it after 100 epochs without noise; with it, within 1e-3.
SCALE_SPREAD = 4.0
MEAN_RATIO = 1.0
# A column of sparse X is shifted (centred) only where at least this fraction of its entries is stored: the
# shift then adds at most as many stored values as the column has (a numeric column of a ColumnTransformer's CSR
# output stores every row and adds none), where centring a sparse column would densify it.
SHIFT_MIN_DENSITY = 0.5
# partial_fit, streams and Dask scale the columns from a sample of rows (the first call's, or a seeded sample)
# for all later rows. A column stored only a few times in the sample (hashed features, rare words or levels)
# had the mean square of those few values as its scale: one small value scaled later rows' values of the column
# by its inverse, and default SGD diverged on hashed features of standard normal values (2^18 columns, 30 values
# a row: partial_fit on 20,000-row chunks in the second call, fit_stream in its first epoch). The values' mean
# square of a column with fewer than SCALE_RARE_VALUES of them, stored in fewer than SHIFT_MIN_DENSITY of the
# sample's rows, is taken as if it had SCALE_PRIOR_VALUES more, of the rare columns' mean square (a prior;
# empirical Bayes shrinkage). Columns of many values keep their own, and so do the columns stored in most of a
# small sample's rows (20 rows of columns of scales 1e-3..1e3 pooled into one scale: partial_fit 120 times
# further off). (Dense samples take the in-memory map, _dense_affine: a dense column's values are their own
# scale; only a rare column's weights are taken as here, _rare_weights.)
SCALE_RARE_VALUES = 64
SCALE_PRIOR_VALUES = 8
# The rules whose in-memory maps (CSR and dense) floor a rare column's share of the rows (floored_squares); the
# momentum rules' rate is bounded by their rows' private curvatures as well (momentum_rate_bound).
FLOORED_RULES = frozenset({"sgd", "momentum", "nesterov"})


def floors_rare_columns(method: str, params: dict, n_train: int, per_column: bool) -> bool:
    """Whether the map of an in-memory fit of ``method`` on ``n_train`` rows (or of a stream its sample holds
    whole, which takes that map) floors its rare columns' shares (:func:`floored_squares`): a rule of
    ``FLOORED_RULES``, minibatches smaller than the rows (a full batch steps at ``1 / L``), and no per-column
    ridge map (``per_column``, :func:`ridge_per_column`, with ``alpha``), whose ``sqrt(m_j + alpha)`` bounds a
    rare column's curvature already."""
    return method in FLOORED_RULES and int(params["batch_size"]) < n_train \
        and not (params["alpha"] != 0 and per_column)


@dataclasses.dataclass(frozen=True, eq=False)
class Affine:
    """The map ``x -> (x - shift) / scale`` under which an iterative fit runs (``precondition="auto"``).
    ``from_sparse``: chosen from sparse rows, whose shifted columns stored most of them (:func:`csr_shiftable`);
    later sparse rows take its shift whatever their density (their copy stores those columns in full). Its
    arrays are not changed once made: what each ``partial_fit`` call derived from them again in O(d) (whether
    the scale is uniform, the shifted columns, the ridge's decay) is kept (``_kept``)."""

    shift: np.ndarray
    scale: np.ndarray
    from_sparse: bool = False
    _kept: dict = dataclasses.field(default_factory=dict, init=False, repr=False, compare=False)

    def _replace(self, **changes) -> Affine:
        """A copy with ``changes`` (as a named tuple's ``_replace``), nothing kept."""
        return dataclasses.replace(self, **changes)

    def __getstate__(self) -> dict:
        # what is kept is derived: not pickled (a decay is d floats)
        return {"shift": self.shift, "scale": self.scale, "from_sparse": self.from_sparse}

    def __setstate__(self, state: dict) -> None:
        for name, value in {**state, "_kept": {}}.items():
            object.__setattr__(self, name, value)

    @property
    def shifted(self) -> np.ndarray:
        """The shifted columns, ``flatnonzero(shift)``."""
        if "shifted" not in self._kept:
            self._kept["shifted"] = np.flatnonzero(self.shift)
        return self._kept["shifted"]

    def _slot_of(self) -> np.ndarray:
        """``s`` at column ``shifted[s]``, -1 elsewhere (intp, d entries): :func:`_shifted_csr`'s lookup."""
        if "slot_of" not in self._kept:
            slot = np.full(max(self.shift.shape[0], 1), -1, dtype=np.intp)
            slot[self.shifted] = np.arange(self.shifted.size)
            self._kept["slot_of"] = slot
        return self._kept["slot_of"]

    def transform(self, X: np.ndarray) -> np.ndarray:
        """A new C-contiguous array of ``X``'s dtype, computed in row blocks (bounded float64 temporaries); for CSR
        ``X`` a CSR matrix with new values and ``X``'s own index arrays, or, when it shifts columns (those
        :func:`csr_shiftable` allows), new ones with their implicit zeros stored as ``-shift / scale``."""
        if sp.issparse(X):
            if self.shifted.size:
                return _shifted_csr(X, self.shift, self.scale, self.shifted, self._slot_of())
            if _sparse.compiled_csr(X) and X.data.shape[0] == X.indices.shape[0]:
                values = _kernels.csr_scaled_values(X.data, X.indices, np.ascontiguousarray(self.scale, np.float64))
            else:
                values = (X.data.astype(np.float64) / self.scale[X.indices]).astype(X.dtype)
            return type(X)((values, X.indices, X.indptr), shape=X.shape)
        out = np.empty(X.shape, dtype=X.dtype)
        step = block_rows(X.shape[1])
        for start in range(0, X.shape[0], step):
            block = X[start : start + step].astype(np.float64)
            out[start : start + step] = (block - self.shift) / self.scale
        return out

    @property
    def uniform(self) -> bool:
        """One scale for every column: a ridge penalty stays uniform under the map (see :meth:`penalty`)."""
        if "uniform" not in self._kept:
            self._kept["uniform"] = bool(np.all(self.scale == self.scale[0])) if self.scale.size else True
        return self._kept["uniform"]

    def penalty(self, alpha: float) -> float:
        """The ridge ``alpha`` (a scalar: the iterative solvers take no other) in the mapped units:
        ``alpha ||w||^2 = (alpha / c^2) ||w'||^2`` for one scale ``c`` (the shift moves only the intercept, which is
        not penalised). A per-column map: :meth:`decay`."""
        if alpha == 0:
            return alpha
        if not self.uniform:
            raise ValueError("internal error: a uniform ridge penalty under a per-column scaling")
        with np.errstate(over="ignore"):  # a scale beyond 1e154 (X of 1e200): the decay is 0
            return float(float(alpha) / np.float64(self.scale[0]) ** 2)

    def decay(self, alpha: float) -> np.ndarray:
        """The ridge ``alpha`` in the mapped units, column by column: ``alpha ||w||^2 = sum_j (alpha / s_j^2)
        w'_j^2`` (float64, one coefficient per column; kept for the last ``alpha`` asked, read-only)."""
        kept = self._kept.get("decay")
        if kept is None or kept[0] != float(alpha):
            with np.errstate(over="ignore"):  # a scale beyond 1e154 (X of 1e200): its decay is 0, as it should be
                decay = float(alpha) / (self.scale.astype(np.float64) ** 2)
            decay.flags.writeable = False
            kept = self._kept["decay"] = (float(alpha), decay)
        return kept[1]

    def decay_as(self, decay: np.ndarray, dtype) -> np.ndarray:
        """``decay`` (:meth:`decay`'s array) in ``dtype``, kept for the last array and dtype asked (read-only): the
        same array call after call, so that what is keyed by it (``fastopt._iterative.ridge_key``) is found again."""
        dtype = np.dtype(dtype)
        if decay.dtype == dtype:
            return decay
        kept = self._kept.get("decay_as")
        if kept is None or kept[0] is not decay or kept[1] != dtype:
            cast = decay.astype(dtype)
            cast.flags.writeable = False
            kept = self._kept["decay_as"] = (decay, dtype, cast)
        return kept[2]

    def to_raw(self, coef: np.ndarray, intercept: np.ndarray):
        """``coef`` (k, d) and ``intercept`` (k,) in the user's units from those of the transformed features."""
        # in float64 without temporaries: O(d) passes are most of a small partial_fit call's time on wide X
        with np.errstate(over="ignore"):  # beyond float32's range: inf, which the estimator names (beyond_range)
            raw = np.divide(coef, self.scale, dtype=np.float64).astype(coef.dtype, copy=False)
        if not self.shifted.size:  # no column shifted (as a map of sparse rows mostly is): the same intercept
            return raw, intercept.copy()
        # over the shifted columns only (the others' shifts are 0): no O(d) float64 copy of raw for a few columns
        on = self.shifted
        b = intercept.astype(np.float64) - np.einsum("kd,d->k", raw[:, on].astype(np.float64), self.shift[on])
        return raw, b.astype(intercept.dtype)


def csr_shiftable(X, shift: np.ndarray | Affine) -> bool:
    """Whether a map with ``shift`` (or ``Affine``'s) may run on CSR ``X``: every shifted column stores at least
    ``SHIFT_MIN_DENSITY`` of its rows (so the shifted copy holds at most twice its stored values there)."""
    shifted = shift.shifted if isinstance(shift, Affine) else np.flatnonzero(shift)
    if shifted.size == 0:
        return True
    stored = np.bincount(X.indices, minlength=X.shape[1])[shifted]
    return bool(np.all(stored >= SHIFT_MIN_DENSITY * X.shape[0]))


def _shifted_csr(X, shift: np.ndarray, scale: np.ndarray, shifted: np.ndarray, slot_of: np.ndarray):
    """``(X - shift) / scale`` as CSR with int32 indices (:func:`csr_shiftable` holds; the products in float64, cast
    to ``X``'s dtype): each row's unshifted stored values, scaled, then its shifted columns' values (shifted, their
    zeros left out), in one compiled pass (:func:`fastopt._kernels.csr_affine_map`). ``shifted`` and ``slot_of``
    are :class:`Affine`'s kept ``flatnonzero(shift)`` and its inverse."""
    X = sp.csr_array(X)
    n, d = X.shape
    shift, scale = np.ascontiguousarray(shift, dtype=np.float64), np.ascontiguousarray(scale, dtype=np.float64)
    if np.all(np.bincount(X.indices, minlength=d)[shifted] == n) and X.nnz < 2**31:
        # every row stores them (a numeric column of a ColumnTransformer's output): new values only (a value equal
        # to its shift becomes a stored zero, which the kernels take)
        values = (X.data.astype(np.float64) - shift[X.indices]) / scale[X.indices]
        return sp.csr_array((values.astype(X.dtype), X.indices.astype(np.int32, copy=False),
                             X.indptr.astype(np.int32, copy=False)), shape=X.shape)
    index = np.promote_types(X.indices.dtype, X.indptr.dtype)
    data, indices, indptr = _kernels.csr_affine_map(np.ascontiguousarray(X.data),
                                                    np.ascontiguousarray(X.indices, dtype=index),
                                                    np.ascontiguousarray(X.indptr, dtype=index), d, shift, scale,
                                                    shifted.astype(np.intp, copy=False), slot_of)
    return sp.csr_array((data, indices, indptr), shape=X.shape)


def choose_affine(params: dict, X, schedule: str, rows: np.ndarray, sw, per_column: bool = True,
                  floor: bool = False) -> Affine | None:
    """The preconditioning map of ``precondition="auto"``, or None when it does not apply or is not needed.

    Applies to a fresh in-memory fit with ``learning_rate="auto"`` and the plateau schedule, whose columns are
    badly scaled (sparse ``X``: :func:`_csr_affine`). With a ridge penalty, dense ``X`` scales each
    column to unit curvature, data and ridge together, and the ridge becomes each column's own decay
    (``_iterative._penalised``), and so does CSR ``X``, where ``per_column`` (the caller's
    :func:`ridge_per_column`: the rule's epoch takes each weight's own decay, on CSR at the cost of one); else
    (AdamW, whose decoupled decay is no ridge, SparseAdam steps, projected momentum on wide CSR) one scale for
    every column (:func:`_common`), so that the penalty stays uniform. Badly scaled:
    standard deviations spanning more than ``SCALE_SPREAD`` (with an intercept, 1, the scale of its column of
    ones, counts among them), or, with an intercept, a mean beyond ``MEAN_RATIO`` standard deviations. Running the
    rule on standardised columns is diagonal preconditioning of the original problem (LeCun, Bottou, Orr &
    Mueller, *Efficient BackProp*, 1998, sec. 4.3; Goodfellow et al., *Deep Learning*, 2016, sec. 8.7.1): the
    Hessian's condition number no longer carries the columns' scales. With ``floor``
    (:func:`floors_rare_columns`), the rare columns' shares of the rows are floored as :func:`floored_squares` says.
    The statistics are the ``sw``-weighted moments of the training ``rows`` (so a weight equals a repetition, but
    in the floor's count of a column's rows), summed in NumPy's own loops (no BLAS), hence deterministic.
    """
    if schedule != "plateau" or not _applies(params, X, rows.shape[0], per_column=per_column):
        return None
    if sp.issparse(X):
        return _csr_affine(params, X, rows, sw, per_column, floor)
    return _dense_affine(params, X, rows, sw, per_column, floor=floor)


def _dense_moments(X, rows, sw, e: np.ndarray, floors: bool, weighted: bool, unweighted: bool, fraction: float):
    """:func:`_dense_affine`'s sums over ``rows`` of each column ``j`` of ``X / 2^e_j`` (exact scaling), taken
    about the first positive-weight row's values (the pivot, also returned): ``(s0, p1, p2, u1, u2, nonzero, held,
    top, pivot)``."""
    d = X.shape[1]
    s0, p1, p2 = 0.0, np.zeros(d), np.zeros(d)
    u1, u2, nonzero, held = np.zeros(d), np.zeros(d), np.zeros(d, dtype=np.int64), np.zeros(d)
    top = np.zeros(d)  # each column's heaviest nonzero row's weight (holders(); weighted and floor alone)
    whole = rows.shape[0] == X.shape[0]
    # the pivot: the first row of positive weight (a zero-weight outlier's deviations were all rounding: a unit
    # column with 1e12 at weight 0 took a scale of 1.6e4)
    heavy = np.flatnonzero(sw[rows] > 0) if sw is not None and rows.shape[0] else np.zeros(0, dtype=np.intp)
    first = rows[heavy[0]] if heavy.size else (rows[0] if rows.shape[0] else None)
    pivot = np.zeros(d) if first is None else np.ldexp(np.asarray(X[first], dtype=np.float64), -e)
    step = block_rows(d)
    for start in range(0, rows.shape[0], step):
        r = slice(start, start + step) if whole else rows[start : start + step]
        block = X[r].astype(np.float64)
        if e.any():
            block = np.ldexp(block, -e)
        w = np.ones(block.shape[0]) if sw is None else sw[r].astype(np.float64)
        s0 += float(w.sum())
        if floors:
            stored = block != 0
            nonzero += np.count_nonzero(stored, axis=0)
            if weighted:
                held += np.einsum("i,ij->j", w, stored)  # the weight of each column's nonzero values
                if fraction >= 1.0:
                    top = np.maximum(top, np.max(np.where(stored, w[:, None], 0.0), axis=0, initial=0.0))
        if unweighted:
            u1 += block.sum(axis=0)
            u2 += np.einsum("ij,ij->j", block, block)
        block -= pivot  # (in place: block is a copy)
        p1 += np.einsum("i,ij->j", w, block)
        p2 += np.einsum("i,ij,ij->j", w, block, block)
    return s0, p1, p2, u1, u2, nonzero, held, top, pivot


def _dense_affine(params: dict, X: np.ndarray, rows: np.ndarray, sw, per_column: bool, fraction: float = 1.0,
                  floor: bool = False) -> Affine | None:
    """:func:`choose_affine` of dense ``X``: from the ``sw``-weighted moments of its ``rows``, which are
    ``fraction`` of the rows the map serves: below 1 (a first ``partial_fit``'s, a stream's sample), a column
    with few nonzero values among them (rare, as :func:`_csr_sample` counts) takes its rows' weights as
    :func:`_rare_weights` does, and its share of the rows as at least :func:`floor_values` values'
    (:func:`_floored`: its moments raised together). With ``floor`` (:func:`floors_rare_columns`), the rows' own
    rare columns' shares are floored alike (:func:`floored_squares`; with weights, a column's rows counted by
    :func:`holders`)."""
    floors = fraction < 1.0 or floor  # (the counts cost one more pass over the rows, once a fit)
    weighted = floors and sw is not None  # (unweighted, a column's nonzero values weigh their count)
    unweighted = fraction < 1.0 and sw is not None  # the rare columns' unweighted moments are wanted too
    d = X.shape[1]
    with np.errstate(over="ignore", invalid="ignore", under="ignore"):  # non-finite X or overflow: judged below
        # the moments of each column j of X / 2^e_j, e_j where its squares under- or overflowed at 0 (X of 1e-200
        # or 1e160; one exponent for all columns lost a column of 1e-200 beside unit ones)
        e = np.zeros(d, dtype=np.int64)
        sums = _dense_moments(X, rows, sw, e, floors, weighted, unweighted, fraction)
        p1, p2, pivot = sums[1], sums[2], sums[8]
        # squares lost: the deviations' (X of 1e-200, 1e160), or the values' own (a column 1e155 (1 + 1e-3 z),
        # whose mean square overflowed without an intercept)
        extreme = (pivot != 0) & ((np.abs(pivot) > 2.0**500) | (np.abs(pivot) < 2.0**-500))
        if np.all(np.isfinite(p1)) and (not np.all(np.isfinite(p2)) or np.any((p2 == 0) & (p1 != 0))
                                        or np.any(extreme)):
            e = np.frexp(np.max(np.abs(X[rows]), axis=0, initial=0.0).astype(np.float64))[1].astype(np.int64)
            sums = _dense_moments(X, rows, sw, e, floors, weighted, unweighted, fraction)
        s0, p1, p2, u1, u2, nonzero, held, top, pivot = sums
        if not s0 > 0:
            return None
        # the moments about the pivot (the first row's values): the variance accurate to its own size, where the
        # mean square less the squared mean keeps only eps * mean^2 (a column of 1 + 1e-7 z read as constant)
        shift = p1 / s0
        var = np.maximum(p2 / s0 - shift * shift, 0.0)
        mean = pivot + shift
        second = var + mean * mean
        if floors:
            n, mean_weight = rows.shape[0], s0 / rows.shape[0]
            rare = _rare_columns(nonzero, n)
            if not weighted:
                held = nonzero  # (mean_weight is 1)
            if unweighted:  # _rare_weights summed: f * (weighted sum) + (1 - f) * (s0 / n) * (plain sum), over s0
                mean = np.where(rare, fraction * mean + (1.0 - fraction) * u1 / n, mean)
                second = np.where(rare, fraction * second + (1.0 - fraction) * u2 / n, second)
                held = fraction * held + (1.0 - fraction) * mean_weight * nonzero
            if weighted and fraction >= 1.0:  # the floor alone: floored_squares' holders, at the mean weight
                held = holders(held, top, nonzero) * mean_weight
            factor = np.where(rare, _floor_factor(held, floor_values(n) * mean_weight), 1.0)
            mean, second = mean * factor, second * factor
            # a rare column (mostly zeros: its mean is no larger than its spread) takes its floored moments
            var = np.where(rare, np.maximum(second - mean * mean, 0.0), var)
    if not (np.all(np.isfinite(mean)) and np.all(np.isfinite(var))):
        return None  # non-finite X: the first epoch names it
    fit_intercept = params["fit_intercept"]
    # each column's curvature where the fit runs: about its mean with an intercept (the shift below), its mean
    # square without (scaled by its spread alone, a column of mean 100 and spread 1 kept its curvature 1e4)
    m2 = var if fit_intercept else second
    # constant: a spread within CONSTANT_RTOL of the mean (the closed form's rule), a test of no unit (an absolute
    # 1e-12 took every column of X * 1e-14 for constant, and SGD fitted the intercept alone, silently)
    varying = (m2 > CONSTANT_RTOL**2 * mean * mean) & (m2 > 0)
    off = np.abs(mean[varying]) / np.sqrt(m2[varying])
    std, mean = np.ldexp(np.sqrt(m2), e), np.ldexp(mean, e)  # X's own units (from X / 2^e)
    scale = np.where(varying, std, 1.0)
    # the intercept's column of ones is a column of scale 1: features all of scale 1e-3 (or 1e3) left the
    # Hessian's condition number at 1e6, and SGD fitted the intercept alone (no warning: the loss had settled).
    # A constant column's curvature until the shift removes it is its mean's square: a column of 1234.5 in every
    # row beside N(0, 1) ones went unmapped, and SGD ended at R^2 0.001.
    constant = fit_intercept & ~varying & (mean != 0)
    spread = _scale_spread(np.concatenate([std[varying], np.abs(mean[constant])]), fit_intercept)
    centre = fit_intercept and off.size > 0 and off.max() > MEAN_RATIO
    # (columns whose squares under- or overflowed are mapped whatever their spread: without an intercept, X of
    # 1e-200 has a spread of 1, and its rate's curvature underflowed: zero coefficients, silently)
    if spread <= SCALE_SPREAD and not centre and not e.any():
        return None
    if params["alpha"] != 0 and not per_column:
        return _common(mean, scale, varying, centre)
    if params["alpha"] != 0:
        # Each column's curvature in the mapped units, data and ridge, (m_j + alpha) / s_j^2 (m_j its variance,
        # or without an intercept its mean square), is 1 at s_j = sqrt(m_j + alpha), and its decay alpha / s_j^2
        # (_penalised) lies in (0, 1]: the columns' scales no longer spread the Hessian's diagonal, and no
        # coordinate is stiffer than the data's. One common scale (all sparse X may take) left columns of scales
        # 1e-3 and 1e3 as badly conditioned as without a map: the largest family of far default fits.
        alpha = float(params["alpha"])
        # (hypot: m2 of X of 1e-200 in X's units underflows)
        scale = np.where(varying, np.sqrt(m2 + alpha) if not e.any() else np.hypot(std, np.sqrt(alpha)), 1.0)
    return Affine(shift=mean if fit_intercept else np.zeros(d), scale=scale)


def _common(shift: np.ndarray, scale: np.ndarray, varying: np.ndarray, centre: bool = False) -> Affine | None:
    """With a ridge penalty (and an intercept): one scale for every column, the geometric mean of the varying
    columns' scales, which keeps the penalty uniform (:meth:`Affine.penalty`) and brings the features' common
    scale to the intercept's 1, and the shift (which moves only the intercept); None when neither is needed.
    Columns whose scales spread widely stay as badly conditioned among themselves as without the map."""
    c = float(np.exp(np.mean(np.log(scale[varying])))) if varying.any() else 1.0
    if max(c, 1.0 / c) <= SCALE_SPREAD and not centre:
        return None
    return Affine(shift=shift, scale=np.full(scale.shape[0], c))


def ridge_per_column(method: str, params: dict, X, lazy: bool) -> bool:
    """Whether a ridge fit of ``method`` on ``X`` may take a per-column map, each column its own decay: not
    AdamW (whose decoupled decay is no ridge) nor SparseAdam steps (``lazy``), which take no per-weight decay, and
    on sparse ``X`` where the CSR epoch takes the decays at the cost of one (:func:`own_decay_cheap`)."""
    if method not in OPTIMIZERS or OPTIMIZERS[method].decoupled_decay or lazy:
        return False
    return not sp.issparse(X) or own_decay_cheap(method, params, X)


def choose_scaling(params: dict, X, rows: np.ndarray, sw, per_column: bool = False) -> Affine | None:
    """The preconditioning of a first ``partial_fit`` (``precondition="auto"``, ``learning_rate="auto"``) from
    this call's rows, kept for the calls after it. Dense: the in-memory map (:func:`_dense_affine`), centring
    columns far from centred. A shift is an exact change of variables whatever later rows' means; without one a
    table with a column of years (means 5-50 in the accuracy fuzz) stayed 4.2 times (180 times) the optimal
    objective above it after 20 (30) passes, for every rule. Rows far from the first call's (a table sorted by
    a column) are heavier in these units, and ``fastopt._iterative.rate_guard`` lowers SGD's rate for them.
    Sparse: :func:`_sample_csr_affine`, centring the columns that store most of the chunk's rows.
    With a ridge only ``per_column`` (:func:`ridge_per_column`): one common scale would leave a penalty the later
    calls' rows did not set the scale of."""
    if (params["alpha"] != 0 and not per_column) or not _applies(params, X, rows.shape[0], per_column=per_column):
        return None
    if not sp.issparse(X):
        return _dense_affine(params, X, rows, sw, per_column, fraction=0.0)
    return _sample_csr_affine(params, X, rows, sw, per_column, first_chunk=True)


def stream_scaling(params: dict, X, w, per_column: bool = False, fraction: float = 1.0, floor: bool = False
                   ) -> Affine | None:
    """The preconditioning of a streamed or Dask fit (``precondition="auto"``, ``learning_rate="auto"``), from
    the seeded sample of its training rows that also sets the rate (``X`` dense or sparse, weights ``w``), per
    column under a ridge where ``per_column`` (:func:`ridge_per_column`). Dense: the in-memory map
    (:func:`choose_affine`), centring columns far from centred: the sample is drawn from every chunk, so its means
    are the stream's (a shift is an exact change of variables whatever a chunk's own means; without one, five
    columns of means 5-50 and unit spread left a streamed SGD fit 4.4 times the optimal objective above it).
    Sparse: :func:`_sample_csr_affine`, centring the columns that store most of the sample's rows. The sample
    is ``fraction`` of the training rows (a rare column's weights: :func:`_rare_weights`). Below 1 a rare
    column's share is floored (:func:`_floored`); at 1 only with ``floor``, as ``fit`` floors it
    (:func:`floors_rare_columns`)."""
    if not _applies(params, X, X.shape[0], per_column=per_column):
        return None
    if not sp.issparse(X):
        return _dense_affine(params, X, np.arange(X.shape[0]), w, per_column, fraction=fraction, floor=floor)
    return _sample_csr_affine(params, X, np.arange(X.shape[0]), w, per_column, fraction=fraction, floor=floor)


def _applies(params: dict, X, n_rows: int, per_column: bool = False) -> bool:
    """Whether ``precondition="auto"`` may map this fit's ``X`` (dense or sparse; ``n_rows`` training rows): a
    ``learning_rate="auto"`` fit; with a ridge penalty, one whose map may scale each column (``per_column``) or
    one with an intercept (one common scale does not change the conditioning without one)."""
    return params.get("precondition", "auto") == "auto" and params["learning_rate"] == "auto" \
        and not (params["alpha"] != 0 and not params["fit_intercept"] and not per_column) \
        and (type(X) is np.ndarray or sp.issparse(X)) and X.ndim == 2 and n_rows >= 2 and X.shape[1] > 0


def _scaling(params: dict, s2: np.ndarray, per_column: bool = False) -> Affine | None:
    """A map without shift of sparse columns (:func:`_rms_scaling`, from their weighted mean squares ``s2``).
    Under a ridge penalty, with ``per_column`` each column scaled to unit curvature, data and ridge
    (``sqrt(m_j + alpha)``, ``m_j`` its mean square: each column then takes its own decay), else one scale for
    every column (:func:`_common`)."""
    affine = _rms_scaling(params, s2, per_column)
    if affine is None or params["alpha"] == 0 or per_column:
        return affine
    return _common(affine.shift, affine.scale, affine.scale != 1.0)


def csr_steps_cheap(params: dict, X, method: str) -> bool:
    """Whether every step of a CSR epoch of ``method`` on every coordinate costs little beside the minibatch's
    stored values (:func:`fastopt._kernels._csr_every_step_cheap`, where the epoch itself steps each weight's own
    decay so)."""
    return _kernels._csr_every_step_cheap(X.shape[1], int(params["batch_size"]), X.nnz, X.shape[0],
                                          int(OPTIMIZERS[method].rule))


# The rules whose CSR epoch under a ridge costs the same with each weight's own decay as with one: SGD, momentum
# and Nesterov defer it (each resting coordinate caught up by its own power of its step map, csrc/epoch_csr.c:
# O(log s) a catch-up after s steps instead of a table lookup), AdaGrad, RMSProp and Adam (exact) step every
# coordinate under any ridge.
_OWN_DECAY_RULES = frozenset({"sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adam"})


def own_decay_cheap(method: str, params: dict, X) -> bool:
    """Whether a CSR epoch of ``method`` takes each weight's own decay at the cost of one common decay (see
    ``_OWN_DECAY_RULES``; projected momentum and Nesterov step every coordinate with it, as under a ridge their
    resting weights may cross 0 repeatedly), or every coordinate's step is cheap anyway
    (:func:`csr_steps_cheap`)."""
    deferred = method in _OWN_DECAY_RULES and not (params["positive"] and method in ("momentum", "nesterov"))
    return deferred or csr_steps_cheap(params, X, method)


def _csr_affine(params: dict, X, rows: np.ndarray, sw, per_column: bool = False, floor: bool = False
                ) -> Affine | None:
    """The map of an in-memory fit on CSR ``X``: :func:`_scaling`, and, with an intercept, the columns that store
    at least ``SHIFT_MIN_DENSITY`` of the training rows and whose means exceed ``MEAN_RATIO`` standard deviations
    centred (and scaled by their standard deviations): numeric columns far from centred beside one-hot ones, the
    family of the default fits on sparse X that ended farthest from the optimum (one-hot columns beside numeric
    ones of means near -70: 120 to 29,000 times the optimal loss above it, as the scaling left them unshifted).
    With a ridge and ``per_column`` (:func:`ridge_per_column`): each column scaled to unit curvature, data and
    ridge, as for dense ``X`` (its mean square, or its variance where centred, plus ``alpha``). With ``floor``
    (:func:`floors_rare_columns`: never with that ridge), a rare column's mean square is scaled as
    :func:`floored_squares` scales it."""
    # columns' stored counts over all rows (with an intercept: without, nothing is centred): the means are summed
    # only when some column may be centred (hashed and text columns never are: on the hashed benchmark the means
    # and counts had doubled the scaling's 60 ms, the counts alone add 25), or when the floor needs the counts
    counts = np.bincount(X.indices, minlength=X.shape[1]) if params["fit_intercept"] else None
    dense = counts is not None and bool(np.any(counts >= SHIFT_MIN_DENSITY * X.shape[0]))
    moments = _csr_moments(X, rows, sw, means=dense or floor)
    if moments is None:  # weights totalling 0 or non-finite X (the first epoch names it): no map
        return None
    if params["alpha"] != 0 and per_column:
        return _csr_ridge_affine(params, X, rows, moments, counts)
    squares = moments[2]
    if floor:
        held = None
        if sw is not None:
            Xr = X if rows.shape[0] == X.shape[0] else X[rows]
            held = _csr_holders(Xr, np.repeat(sw[rows].astype(np.float64), np.diff(Xr.indptr)), moments[3],
                                _rare_columns(moments[3], rows.shape[0]))
        squares = floored_squares(squares, moments[3], rows.shape[0], held)
    affine = _scaling(params, squares)
    if not dense:
        return affine
    offset, mean, var = _csr_offset(moments, rows.shape[0], counts, X.shape[0])
    if not offset.any():
        return affine
    scale = np.ones(X.shape[1]) if affine is None else affine.scale.copy()
    shift = np.where(offset, mean, 0.0)
    if params["alpha"] != 0:  # not per_column: _scaling's one scale (or none) keeps the penalty uniform
        return Affine(shift=shift, scale=scale, from_sparse=True)
    scale[offset] = np.sqrt(var[offset])
    return Affine(shift=shift, scale=scale, from_sparse=True)


def _sample_csr_affine(params: dict, X, rows: np.ndarray, sw, per_column: bool, first_chunk: bool = False,
                       fraction: float = 0.0, floor: bool = False) -> Affine | None:
    """The map of a sample of CSR rows (a first ``partial_fit``'s, or a stream's drawn from every chunk) for all
    later rows: :func:`_scaling`, and, with an intercept, the columns stored in at least ``SHIFT_MIN_DENSITY`` of
    the sample's rows whose means exceed ``MEAN_RATIO`` standard deviations centred, as :func:`_csr_affine`
    centres them (scaled by their standard deviations, with a ridge and ``per_column`` ``sqrt(var + alpha)``).
    Later rows take the shift whatever their density (``Affine.from_sparse``): at most one stored value a row
    for each shifted column. Without it a numeric column far from centred stored beside others in CSR (a
    ColumnTransformer's output) kept the intercept and its coefficient entangled: five columns of means 11-48 and
    unit spread left 30 passes of ``partial_fit`` at the constant model's objective, where the same rows dense
    reached the optimum."""
    sample = _csr_sample(X, rows, sw, first_chunk, fraction, floor=floor)
    if sample is None:  # weights totalling 0
        return None
    affine = _scaling(params, sample.s2, per_column)
    n = rows.shape[0]
    # the columns' means only where one may be centred (hashed and text columns never store half the rows)
    if not params["fit_intercept"] or not np.any(sample.counts >= SHIFT_MIN_DENSITY * n):
        return affine
    with np.errstate(over="ignore", invalid="ignore"):
        mean = np.bincount(sample.Xr.indices, weights=sample.row_w * sample.values, minlength=X.shape[1]) / sample.s0
    if not (np.all(np.isfinite(mean)) and np.all(np.isfinite(sample.s2))):  # non-finite X: the first epoch names it
        return affine
    # a column stored in half the rows is no rare column: its s2 is its values' own mean square
    offset, mean, var = _csr_offset((sample.s0, mean, sample.s2, sample.counts), n, sample.counts, n)
    if not offset.any():
        return affine
    scale = np.full(X.shape[1], _unscaled(params, per_column)) if affine is None else affine.scale.copy()
    alpha = float(params["alpha"])
    if alpha == 0 or per_column:  # else _scaling's one scale (or none) keeps the penalty uniform
        scale[offset] = np.sqrt(var[offset] + (alpha if per_column else 0.0))
    return Affine(shift=np.where(offset, mean, 0.0), scale=scale, from_sparse=True)


def _csr_offset(moments, n_rows: int, counts: np.ndarray, n_all: int):
    """``(offset, mean, variance)``: the columns :func:`_csr_affine` centres (with an intercept), those storing at
    least ``SHIFT_MIN_DENSITY`` of the ``n_rows`` training rows and, by ``counts``, of all ``n_all`` rows, as
    :func:`csr_shiftable` asks, whose means exceed ``MEAN_RATIO`` standard deviations."""
    _, mean, square, stored = moments
    var = np.maximum(square - mean * mean, 0.0)
    std = np.sqrt(var)
    offset = (stored >= SHIFT_MIN_DENSITY * n_rows) & (counts >= SHIFT_MIN_DENSITY * n_all) & (std > 0) \
        & (np.abs(mean) > MEAN_RATIO * std)
    return offset, mean, var


def _csr_moments(X, rows: np.ndarray, sw, means: bool = True):
    """``(s0, mean, mean square, stored)`` of CSR ``X``'s columns over ``rows`` with weights ``sw`` (the mean
    square as :func:`_csr_sample` sums it, unshrunk; ``means=False``: no mean and no counts, None in their
    places), or None for non-finite values or weights totalling 0. The stored counts come from the same compiled pass
    (:func:`fastopt._kernels.csr_column_moments`)."""
    d = X.shape[1]
    w = np.ones(rows.shape[0]) if sw is None else sw[rows].astype(np.float64)
    s0 = float(w.sum())
    if not s0 > 0:
        return None
    Xr = X if rows.shape[0] == X.shape[0] else X[rows]
    index = np.promote_types(Xr.indices.dtype, Xr.indptr.dtype)
    squares, sums, stored = _kernels.csr_column_moments(  # the sums np.bincount forms, in one compiled pass
        np.ascontiguousarray(Xr.data), np.ascontiguousarray(Xr.indices, dtype=index),
        np.ascontiguousarray(Xr.indptr, dtype=index), d, np.ascontiguousarray(w, dtype=np.float64), means)
    with np.errstate(over="ignore", invalid="ignore"):
        square = squares / s0
        mean = sums / s0 if means else None
    if not (np.all(np.isfinite(square)) and (mean is None or np.all(np.isfinite(mean)))):
        return None
    return s0, mean, square, stored


def _csr_ridge_affine(params: dict, X, rows: np.ndarray, moments, counts: np.ndarray) -> Affine | None:
    """The per-column ridge map of CSR ``X`` (:func:`_csr_affine`, from its :func:`_csr_moments` over ``rows``
    and its columns' stored ``counts``):
    the columns :func:`_csr_affine` centres centred, every column scaled by ``sqrt(m_j + alpha)``, ``m_j`` its
    mean square about its shift; None when the columns' scales (the intercept's 1 among them) span at most
    ``SCALE_SPREAD`` and none is centred."""
    if moments[1] is None:  # no mean was summed (no intercept, or no column dense enough): nothing is centred
        offset, second = np.zeros(X.shape[1], dtype=bool), moments[2]
    else:
        offset, mean, var = _csr_offset(moments, rows.shape[0], counts, X.shape[0])
        second = np.where(offset, var, moments[2])
    present = second > 0
    if _scale_spread(np.sqrt(second[present]), params["fit_intercept"]) <= SCALE_SPREAD and not offset.any():
        return None
    shift = np.where(offset, mean, 0.0) if offset.any() else np.zeros(X.shape[1])
    return Affine(shift=shift, scale=np.sqrt(second + float(params["alpha"])), from_sparse=True)


class _CsrSample(NamedTuple):
    """:func:`_csr_sample`: the weights' total, the columns' mean squares and stored counts, and the sample's rows
    (``Xr``), their values (float64) and each value's row weight (a rare column's as :func:`_rare_weights` takes
    it), for the sums a caller adds; the rare columns, and the columns' weighted sums of squares and stored
    weights before :func:`_floored` and the shrinkage (what :func:`held_out_curvatures` leaves a row out of)."""

    s0: float
    s2: np.ndarray
    counts: np.ndarray
    Xr: Any
    values: np.ndarray
    row_w: np.ndarray
    rare: np.ndarray
    squares: np.ndarray
    stored: np.ndarray


def _csr_sample(X, rows: np.ndarray, sw, first_chunk: bool = False, fraction: float = 0.0, floor: bool = False
                ) -> _CsrSample | None:
    """The columns' weighted mean squares over ``rows`` of CSR ``X`` (weights ``sw``), None for weights totalling 0.
    The rows are ``fraction`` of those the map serves (:func:`_rare_weights`; below 1, or with ``floor``,
    :func:`_floored`).

    A column's mean square is its share of stored values times their mean square, and a column with few stored
    values in the sample has its values' mean square shrunk towards that of the rare columns' values together,
    as if it had ``SCALE_PRIOR_VALUES`` more of them (see there). Non-finite ``X`` gives non-finite squares,
    which :func:`_rms_scaling` judges."""
    d = X.shape[1]
    w = np.ones(rows.shape[0]) if sw is None else sw[rows].astype(np.float64)
    s0 = float(w.sum())
    if not s0 > 0:
        return None
    with np.errstate(over="ignore", invalid="ignore"):  # non-finite X: judged by the caller
        Xr = X if rows.shape[0] == X.shape[0] else X[rows]
        values = np.asarray(Xr.data, dtype=np.float64)
        row_w = np.repeat(w, np.diff(Xr.indptr))
        # the nonzero values count, as dense X's (stored zeros, which validation may keep, changed the map)
        nonzero = values != 0
        explicit = not nonzero.all()
        counts = np.bincount(Xr.indices[nonzero] if explicit else Xr.indices, minlength=d)
        rare = _rare_columns(counts, rows.shape[0])
        if sw is not None and rare.any():
            row_w = _rare_weights(row_w, rare[Xr.indices], s0 / rows.shape[0], fraction)
        sums = (np.bincount(Xr.indices, weights=row_w * values * values, minlength=d),
                np.bincount(Xr.indices, weights=row_w * nonzero if explicit else row_w, minlength=d))
        squares, stored = sums
        if fraction < 1.0 or floor:  # the map serves rows outside the sample, or FLOORED_RULES' (floored_squares)
            mean_weight = s0 / rows.shape[0]
            # by the stored weights (unweighted: the counts; below 1 the rows outside the sample at the mean
            # weight, _rare_weights), or, weighted and the sample whole, floored_squares' holders
            held = None
            if sw is not None and fraction >= 1.0:
                held = _csr_holders(Xr, row_w, counts, rare) * mean_weight
            squares, stored = _floored(squares, stored, rare, floor_values(rows.shape[0]) * mean_weight, held)
        s2 = _shrunk_squares(squares, stored, rare) / s0
        unseen = counts == 0
        if first_chunk and rare.any() and unseen.any():
            # A first partial_fit's chunk is one of the chunks to come: a column it does not store is a rare
            # column it missed, with the rare columns' mean square (their values' squares spread over them and the
            # unseen ones together). Scale 1 (the units of X) left them 30 times less scaled than the columns
            # seen once, on hashed rows under a ridge (2^16 columns, ten values a row, a 5,000-row first chunk:
            # 30,586 unseen), and partial_fit ended 20% above the optimum. (A stream's sample is drawn from
            # every chunk: a column it misses is nearly empty, and keeps scale 1.)
            pooled = float(squares[rare].sum()) / (np.count_nonzero(rare) + np.count_nonzero(unseen))
            values_square = float(squares[rare].sum() / stored[rare].sum())  # (of the floored shares: their own)
            s2[unseen] = max(pooled, floor_values(rows.shape[0]) * s0 / rows.shape[0] * values_square) / s0
    return _CsrSample(s0, s2, counts, Xr, values, row_w, rare, *sums)


def holders(total: np.ndarray, top: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """The rows holding each column of a weighted fit as :func:`floored_squares` counts them: the weights' sum
    ``total`` of its nonzero rows over the heaviest one's, ``top`` (the count of rows of that weight that
    would carry the same weight); its nonzero ``counts`` where no such row weighs anything. Equal weights give
    the counts; rows of weights 3 and 1 count as 4/3 rows."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(top > 0, total / np.where(top > 0, top, 1.0), counts.astype(np.float64))


def _csr_holders(Xr, value_w: np.ndarray, counts: np.ndarray, rare: np.ndarray) -> np.ndarray:
    """:func:`holders` of CSR rows ``Xr`` whose stored values' row weights are ``value_w``, summed over the
    ``rare`` columns' values alone (the floor changes no other); ``counts`` elsewhere."""
    idx, vw = Xr.indices, value_w
    nonzero = Xr.data != 0  # (stored zeros hold nothing, as dense X's zeros)
    if not rare.all() or not nonzero.all():  # (hashed columns are all rare: no masked copies)
        mask = rare[idx] & nonzero
        idx, vw = idx[mask], vw[mask]
    idx = idx.astype(np.intp, copy=False)  # (ufunc.at's fast path: a third quicker than int32 indices)
    top = np.zeros(counts.shape[0])
    np.maximum.at(top, idx, vw)
    return holders(np.bincount(idx, weights=vw, minlength=counts.shape[0]), top, counts)


def floored_squares(squares: np.ndarray, counts: np.ndarray, n_rows: int, held: np.ndarray | None = None
                    ) -> np.ndarray:
    """The columns' mean ``squares`` over ``n_rows`` rows of an in-memory fit, those of the rare columns
    (:func:`_rare_columns` by their stored ``counts``) held fewer than :func:`floor_values` times raised as if
    they held that many values of the same size: their values' scale is kept and their share of the rows taken as
    at least ``floor_values(n) / n``, as a stream's sample takes it (:func:`_floored`). ``held``: with weights,
    the rows holding each column as :func:`holders` counts them (their weights' sum over the heaviest one's);
    ``counts`` without weights.

    A weighted row's curvature in a column is ``n`` times its share of the column's weighted squares, and its
    whole weight arrives in one step: for one-hot columns the heaviest holder's share is ``1 / held``, so the
    floor bounds every holder's curvature at ``n / floor_values(n)``, as the counts do for equal weights.
    Counting a weight as so many repetitions of its row (the weights' sum over the mean weight) left the levels of
    heavy rows unfloored, their curvature ``n``; counting the rows alone left a level's heavy row among light
    ones at nearly ``n``. Zipf categories with weights ``10^U(-3, 3)``, default fits over the weighted optimum
    (5,000 levels, 20,000 rows, CSR): SGD 3,180% (repetitions) -> 0.30%, momentum 151% -> 2.2%; (1,000 levels,
    3,000 rows, dense) SGD 12,200% -> 15%; weights ``10^U(-1, 1)``, 500-level Zipf categories of 3,000 rows:
    SGD 3,960% (repetitions), 56% (rows alone) -> 50%. Integer weights 1-3 moved both ways (grid of seven designs:
    SGD 23% -> 1.6% and 5.7% -> 0.63%, but 0.14% -> 2.0% and 0.27% -> 4.0%).

    For SGD and the momentum rules with minibatches smaller than the training rows (``FLOORED_RULES``; a full
    batch takes the exact gradient at the rate ``1 / L``, which no row's curvature exceeds): a column stored m
    times is scaled to ``sqrt(m / n)`` times its values' size, so each row holding it has ``n / m`` in its
    curvature, and the step on that row, ``lr n / (b m)`` of its residual, overshoots where m is small. Levels
    held by one row each beside 1,500-level one-hot columns and numeric ones (40,000 rows): default SGD's epoch
    losses rose 9,000-fold (20 such levels) and 900-fold (200) over their lowest before the plateau rule's cuts;
    floored, they fall throughout. Two Zipf-distributed categories beside numeric columns, no ridge, default SGD
    over the optimum (``relative_excess``): 5,000 levels, 20,000 rows, exponent 1.3: 10.9% -> 0.067%; 2,000
    levels, 5,000 rows: 7.5% -> 0.33%; 1,000 levels, 10,000 rows, exponent 1.1: 1.9% -> 0.25%. On 10,000 rows with
    20 singleton levels beside 300-level columns the fit ends further off (0.022% -> 0.15%): the floored columns'
    coordinates take 8 times longer, and the plateau rule stops first. Dense maps floor alike
    (:func:`_dense_affine`; 1,000 levels, 3,000 rows, exponent 1.2: 76% -> 0.43%). The momentum rules are floored
    with a rate bound of their own (:func:`momentum_rate_bound`): without it, their higher rates under the floored
    map overshot on columns held 8-60 times (Zipf exponent 2, 40,000 rows: 0.5% -> 143% above the optimum). The
    adaptive rules are not, their steps being about the rate in the mapped units (Adam on 200 singleton levels:
    0.1% -> 20%). Under a per-column ridge map, ``sqrt(m_j + alpha)``, the ridge bounds a rare column's curvature
    already (the same fits with ``alpha = 1e-3``: no change). ``tools/default_fit_fuzz.py 1 300`` and ``2 300``
    (1,800 fits each): no SGD fit changed."""
    held = counts.astype(np.float64) if held is None else held
    return _floored(squares, held, _rare_columns(counts, n_rows), floor_values(n_rows))[0]


def floor_values(n_rows: int) -> float:
    """The fewest values a sample of ``n_rows`` rows counts a rare column as holding (:func:`_floored`):
    ``SCALE_PRIOR_VALUES``, or a sixteenth of the rows if fewer. A small sample's counts are their own bound:
    ``n / m`` is small there, and a floor beyond the rows' count scaled one-hot levels of chunks of 7-20 rows
    as if each held most rows (``tools/default_fit_fuzz.py``'s ``partial_fit`` mode, seed 1: 30- and 80-row
    designs, 60 fits more than 20% further off and 41 closer)."""
    return min(float(SCALE_PRIOR_VALUES), n_rows / 16.0)


def _rare_columns(counts: np.ndarray, n_rows: int) -> np.ndarray:
    """The rare columns of a sample of ``n_rows`` rows by their stored (or nonzero) ``counts``: stored, fewer than
    ``SCALE_RARE_VALUES`` times and in fewer than ``SHIFT_MIN_DENSITY`` of the rows."""
    return (counts > 0) & (counts < SCALE_RARE_VALUES) & (counts < SHIFT_MIN_DENSITY * n_rows)


def _floor_factor(stored: np.ndarray, floor: float) -> np.ndarray:
    """The factor that raises each positive ``stored`` weight below ``floor`` to it, 1 elsewhere
    (:func:`_floored`)."""
    low = (stored > 0) & (stored < floor)
    return np.where(low, floor / np.where(low, stored, 1.0), 1.0)


def _floored(squares: np.ndarray, stored: np.ndarray, rare: np.ndarray, floor: float,
             held: np.ndarray | None = None):
    """A sample's columns' weighted sums of squares and stored weights, those of the ``rare`` columns whose stored
    weight is below ``floor`` (:func:`floor_values` values at the mean weight) raised to it, their values' mean
    square kept: a rare column's share of the rows is taken as at least that of so many values.

    A column stored m times in a sample of n rows is scaled to ``sqrt(m / n)`` times its values' size, so each
    later row holding it has ``n / m`` in its curvature, and SGD's step on that row, ``lr n / (b m)`` of its
    residual (b the batch size), overshoots where m is small: the rate is set by the rows' mean curvature, not
    the largest. A level the sample held once or twice but the stream a dozen times made the stream's losses
    rise a million-fold: one-hot columns of 1,500 levels beside numeric columns, a 40,000-row stream sampled by
    half, default SGD raised DivergenceError (chunks of 5,000 and 40,000 rows; of 20,000 it converged). Floored,
    the stream converges as ``fit`` does, in 2 epochs to the noise. ``held``, when given, decides the factor in
    place of ``stored`` (:func:`floored_squares`' count of a weighted column's rows, at the mean weight)."""
    factor = np.where(rare, _floor_factor(stored if held is None else held, floor), 1.0)
    return squares * factor, stored * factor


def _rare_weights(weights: np.ndarray, rare: np.ndarray, mean_weight: float, fraction: float) -> np.ndarray:
    """``weights`` (of a sample's stored values, or rows) with those where ``rare`` is set taken as
    ``fraction * w + (1 - fraction) * mean_weight``: the sample holds ``fraction`` of the rows the map serves (0
    for a first ``partial_fit``, whose map serves the chunks to come), and a rare column's rows outside it are
    expected at the sample's mean weight. The few rows that store a rare column in a sample say little about the
    weights its other rows carry, while their own weights, if they spread widely, set its scale by orders of
    magnitude: one-hot levels held by light rows of a first chunk (weights ``10^U(-3, 3)``) were scaled
    hundreds of times too small, and five passes of default ``partial_fit`` ended at a weighted R^2 of 0.53 (SGD)
    and -24 (Adam), with no warning; now 0.975 and 0.558 (0.998 and 0.920 with :func:`_floored` too; the README,
    "Iterative solvers"). Columns of many values keep their rows' weights, which also tell where weights follow
    a column."""
    if fraction >= 1.0:
        return weights
    return np.where(rare, fraction * weights + (1.0 - fraction) * mean_weight, weights)


def _shrunk_squares(squares: np.ndarray, stored: np.ndarray, rare: np.ndarray) -> np.ndarray:
    """The columns' weighted sums of squares ``squares`` over a sample, those of the ``rare`` columns (stored
    fewer than ``SCALE_RARE_VALUES`` times, in fewer than ``SHIFT_MIN_DENSITY`` of the sample's rows) shrunk:
    ``stored_j * (squares_j + tau q) / (stored_j + tau)``, ``stored_j`` the weights of the column's stored values,
    ``tau = SCALE_PRIOR_VALUES`` and ``q`` the mean square of the rare columns' values together. A column stored
    in most rows of a small sample is no rare column: its values are its own scale, whatever the pool's."""
    if not rare.any() or not stored[rare].sum() > 0:
        return squares
    q = float(squares[rare].sum() / stored[rare].sum())
    out = squares.copy()
    out[rare] = _shrunk(squares[rare], stored[rare], q)
    return out


def _shrunk(squares: np.ndarray, stored: np.ndarray, q: float) -> np.ndarray:
    """:func:`_shrunk_squares`' formula, ``stored * (squares + tau q) / (stored + tau)``."""
    return stored * (squares + SCALE_PRIOR_VALUES * q) / (stored + SCALE_PRIOR_VALUES)


def _rms_scaling(params: dict, s2: np.ndarray, per_column: bool = False) -> Affine | None:
    """The columns' weighted root mean squares, from their mean squares ``s2`` (over a sample of rows,
    :func:`_csr_sample`, or all, :func:`_csr_moments`), as the scale of a map without shift of sparse columns (a
    shift would densify ``X``), when they span more than ``SCALE_SPREAD`` (with an intercept, 1 counts among
    them); all-zero columns keep scale 1. With a ridge and ``per_column``, each scale ``sqrt(s2 + alpha)``: see
    :func:`_scaling`."""
    if not np.all(np.isfinite(s2)):
        return None  # non-finite X: the first epoch names it
    stored = s2 > 0
    if not stored.any() or _scale_spread(np.sqrt(s2[stored]), params["fit_intercept"]) <= SCALE_SPREAD:
        return None
    m2 = s2 + float(params["alpha"]) if per_column else s2
    return Affine(shift=np.zeros(s2.shape[0]), scale=np.where(stored, np.sqrt(m2), _unscaled(params, per_column)))


def _unscaled(params: dict, per_column: bool) -> float:
    """The scale of a column that a map does not scale by its own values (1): under a ridge ``alpha`` above 1 and
    ``per_column``, ``sqrt(alpha)``, so that its decay ``alpha / s^2`` is at most 1, as the map of a ridge fit
    makes every column's (:func:`fastopt._iterative._penalty_fits`). With 1, a later ``partial_fit`` call or a
    stream's next pass found a decay of ``alpha`` beyond 1, started afresh from the coefficients, and SGD,
    momentum and Nesterov at ``alpha = 5`` never left 0.2-1.1% above the optimum (one epoch a call, the rate
    never cut), silently."""
    return float(np.sqrt(max(1.0, float(params["alpha"])))) if per_column else 1.0


def _scale_spread(scales: np.ndarray, fit_intercept: bool) -> float:
    """How far the (positive) column scales spread, max / min, with an intercept the scale of its column of
    ones, 1, among them (1.0 for no columns)."""
    if scales.size == 0:
        return 1.0
    spread = scales.max() / scales.min()
    return max(spread, scales.max(), 1.0 / scales.min()) if fit_intercept else spread


def target_centre(Y: np.ndarray, w: np.ndarray | None) -> np.ndarray:
    """The targets' weighted means (``Y`` of shape (m, k), weights ``w`` or None), the best constant model under
    squared error, where ``learning_rate="auto"`` starts the intercepts; zeros where that is not finite (the fit
    names a non-finite ``y``) or the weights total 0. Summed in NumPy's own loops, so deterministic."""
    Y = np.asarray(Y, dtype=np.float64)
    w = np.ones(Y.shape[0]) if w is None else np.asarray(w, dtype=np.float64)
    total = float(w.sum())
    if not total > 0.0:
        return np.zeros(Y.shape[1])
    with np.errstate(over="ignore", invalid="ignore"):
        centre = np.einsum("i,ij->j", w, Y) / total
    return np.where(np.isfinite(centre), centre, 0.0)


def null_loss(data, rows, sw, loss, epsilon, fit_intercept: bool) -> float:
    """The weighted mean training loss of a constant model: for squared error with an intercept, the best one's,
    half the summed weighted variance of the targets; for Huber's loss and the absolute error with an intercept,
    that of each target's weighted median (the absolute error's best constant, and near Huber's); without an
    intercept the all-zero model's. It is the scale below which a loss counts as zero for the plateau rule
    (``fastopt._iterative.RatePlateau``), and the plateau check's alarm is at least a fraction of it. The robust
    losses took the all-zero model's: targets offset by 1e6 set the floor at 1.35 (Huber) where the fit's loss was
    0.02, and the check's alarm above a 3% excess (SGD on 30 rows, silent)."""
    if fit_intercept and loss != Loss.SQUARED_ERROR:
        Y = data.Y[rows].astype(np.float64)
        w = np.ones(rows.shape[0]) if sw is None else sw[rows].astype(np.float64)
        total = 0.0
        for j in range(Y.shape[1]):
            r = Y[:, j] - _weighted_quantile(Y[:, j], w, 0.5)
            total += float(w @ _per_sample_loss(r[:, None], loss, epsilon).sum(axis=1))
        return total / rows.shape[0]
    if loss != Loss.SQUARED_ERROR or not fit_intercept:
        return mean_loss(data, rows, sw, None, loss, epsilon)
    # rows is sorted and unique: all of them are read in place, not gathered (this ran 2 ms of a 10 ms epoch).
    every = rows.shape[0] == data.Y.shape[0]
    Y = (data.Y if every else data.Y[rows]).astype(np.float64, copy=False)
    if sw is None:
        centred = Y - np.einsum("ij->j", Y) / rows.shape[0]
        return 0.5 * float(np.einsum("ij,ij->", centred, centred)) / rows.shape[0]
    w = (sw if every else sw[rows]).astype(np.float64)
    total = float(w.sum())
    if total <= 0.0:
        return 0.0
    centred = Y - np.einsum("i,ij->j", w, Y) / total
    return 0.5 * float(np.einsum("i,ij,ij->", w, centred, centred)) / rows.shape[0]


def _weighted_quantile(r: np.ndarray, w: np.ndarray, q: float) -> float:
    """The lower weighted ``q`` quantile of ``r`` (the smallest value whose rows up to it hold ``q`` of the
    weight); weights ``w`` nonnegative with a positive total."""
    order = np.argsort(r, kind="stable")
    cum = np.cumsum(w[order])
    return float(r[order[min(int(np.searchsorted(cum, q * cum[-1])), r.shape[0] - 1)]])


def _matvec(A, v):
    # einsum without ``optimize`` runs NumPy's own single-threaded loops, never BLAS: the sums are taken in one
    # fixed order, so the estimate is bit-identical whatever the BLAS thread count (a threaded gemv may split a
    # reduction differently). On the sampled rows it is as fast as gemv (measured 0.6 ms for 20,000 x 101).
    if sp.issparse(A):  # SciPy's CSR products: one thread, one fixed order, from the nonzeros
        return np.asarray(A @ v)
    return np.einsum("ij,j->i", A, v)


def _rmatvec(A, u):
    if sp.issparse(A):
        return np.asarray(A.T @ u)
    return np.einsum("ij,i->j", A, u)


def _abs_rmatvec(A, u):
    """``|A|^T u``; dense ``A`` by row blocks (:func:`block_rows`), not through a whole copy ``|A|``: a third
    copy of a stream's or a mapped X's rate sample, beside the sample and its float64 form."""
    if sp.issparse(A):
        return np.asarray(abs(A).T @ u)
    out = np.zeros(A.shape[1])
    step = block_rows(A.shape[1])
    for start in range(0, A.shape[0], step):
        out += np.einsum("ij,i->j", np.abs(A[start : start + step]), u[start : start + step])
    return out


# Below this a sum of squares may have lost its smaller terms to underflow (1e-292: squares of 1e-146 and less).
_SQUARE_SAFE = np.finfo(np.float64).tiny * 2.0**52


def _dot(a, b) -> float:
    return float(np.einsum("i,i->", a, b))  # not BLAS ddot, for the same reason


def _norm(v) -> float:
    """The 2-norm of ``v`` in NumPy's own loops (:func:`_dot`); where its square overflows (a Hessian product of
    1e155) or may have underflowed, taken of ``v`` scaled by its largest magnitude."""
    square = _dot(v, v)
    if np.isfinite(square) and square > _SQUARE_SAFE:
        return float(np.sqrt(square))
    top = float(np.max(np.abs(v))) if v.size else 0.0
    if top == 0.0 or not np.isfinite(top):
        return top
    u = v / top
    return top * float(np.sqrt(_dot(u, u)))


def _unit(v):
    return v / _norm(v)


def _start_vector(Xa, w):
    """A deterministic start for the power iteration: ``Xa^T w`` (the column sums) plus the root of the
    diagonal, normalised, plus a unit Gaussian vector from a fixed seed (``POWER_START_SEED``; no draw from the
    caller's generator: the rate does not depend on ``random_state``) on the first part's side, their sum
    normalised. The first part leads on uncentred data (whose top eigenvector is near the mean); the second
    gives every direction a component of about ``1 / sqrt(d)``. Alone, the first was orthogonal to the top
    eigenvector of two centred rows (a column and its negation in each), its fixed ramp of ``1e-3`` left a
    component the Rayleigh quotient's stop did not wait for, ``L`` came out 1 where it is 4, and default SGD
    diverged."""
    diag = (np.asarray(Xa.multiply(Xa).T @ w) if sp.issparse(Xa) else np.einsum("ij,ij,i->j", Xa, Xa, w))
    v = _rmatvec(Xa, w) / Xa.shape[0] + np.sqrt(diag / Xa.shape[0])
    g = np.random.default_rng(POWER_START_SEED).standard_normal(Xa.shape[1])
    g = g / _norm(g)
    norm = _norm(v)
    if not norm > 0:  # X zero (or non-finite: the first epoch names it)
        return g
    v = v / norm
    # g on v's side: the sum's norm is then at least 1. Opposite, the two cancelled for one column (d = 1: +1 and
    # the seed's -1), and the rate came out NaN for every one-feature fit without an intercept.
    return _unit(v + (g if _dot(v, g) >= 0 else -g))


def _top_eigenvalue(Xa, w, ridge) -> float:
    """Largest eigenvalue of ``Xa^T diag(w) Xa / m + diag(ridge)`` by power iteration (Rayleigh quotient)."""
    m = Xa.shape[0]
    v = _start_vector(Xa, w)
    lam = 0.0
    for _ in range(POWER_ITERATIONS):
        Hv = _rmatvec(Xa, w * _matvec(Xa, v)) / m + ridge * v
        lam_new = _dot(v, Hv)
        norm = _norm(Hv)  # (the square of a product of 1e155 overflowed: the rate came out NaN)
        if norm == 0.0:
            return 0.0
        if not np.isfinite(norm):  # non-finite X: the first epoch names it (this returned NaN after the loop)
            return float("nan")
        v = Hv / norm
        if abs(lam_new - lam) <= POWER_RTOL * lam_new:
            return lam_new
        lam = lam_new
    return lam


def auto_learning_rate(spec, data, train_idx, sw, params, p0, rng=None, basis: dict | None = None,
                       zero: np.ndarray | None = None) -> float:
    """The base learning rate for ``learning_rate="auto"`` (see the module docstring).

    Deterministic: on at most ``AUTO_ROWS`` training rows it uses all of them; on more, a uniform sample drawn
    from a fixed seed (``AUTO_SAMPLE_SEED``), so neither ``random_state`` nor the BLAS thread count changes it
    (``rng`` is accepted for the solver protocol and not used). ``zero``: where a map sends 0 in each column
    (:func:`zero_image`), for :func:`private_curvatures`.
    """
    rows = train_idx
    if rows.shape[0] > AUTO_ROWS:
        sampler = np.random.default_rng(AUTO_SAMPLE_SEED)
        rows = np.sort(sampler.choice(train_idx, AUTO_ROWS, replace=False))
    w = sw[rows] if sw is not None else None
    return sample_learning_rate(spec, data.X[rows], data.Y[rows], w, params, p0, train_idx.shape[0],
                                basis=basis, zero=zero)


def row_curvatures(X, w, fit_intercept: bool, rows: slice = slice(None)) -> np.ndarray:
    """The weighted curvatures ``c = w ||x||^2`` (plus 1 for the intercept's column of ones) of the ``rows`` of
    ``X`` (dense or CSR; ``w`` given for those rows, None: 1), in float64, summed in NumPy's own loops or the
    compiled CSR read (no BLAS), so deterministic."""
    if sp.issparse(X):
        # Read in place: slicing a CSR matrix by a step copies its rows (2.8 ms of a 39 ms partial_fit call on
        # the hashed benchmark's rows, where this takes 0.2 ms). A repeated index counts as stored, not summed.
        X = sp.csr_array(X)
        start, stop, step = rows.indices(X.shape[0])
        norms = _kernels.csr_row_squares(X.data, X.indptr, start, step, len(range(start, stop, step)))
    else:
        norms = np.einsum("ij,ij->i", X[rows], X[rows], dtype=np.float64)
    c = norms + 1.0 if fit_intercept else norms
    return c * w if w is not None else c


def held_out_curvatures(params: dict, X, Z, w, affine: Affine | None, fraction: float, per_column: bool
                        ) -> np.ndarray | None:
    """The weighted curvatures (:func:`row_curvatures`, with the intercept's 1 when fitted) of a stream's sample
    rows ``X`` (mapped: ``Z``; weights ``w`` or None) under its map ``affine`` (:func:`stream_scaling` with
    ``per_column``, made from these rows, which are ``fraction`` of the training rows), each rare column's scale
    taken without the row: what a training row outside the sample meets. None when nothing is held out
    (``fraction`` 1), there is no map, or its scale is one for every column.

    A sample's rows set their own rare columns' scales, so their curvatures under the map are smaller than those
    of the rows the map was not made from (a Jacobi scaling's self-bound), and the critical rate taken from them
    was too large for the stream: two one-hot columns of 5,000 levels (twelve rows each) beside numeric columns,
    a 60,000-row stream sampled by a third, weights ``10^U(-1, 1)``: the sample's ``R^2`` was 2.0e4 where the
    stream's rows have 3.7e4, and default SGD's epoch losses rose a thousandfold (weights ``10^U(-3, 3)``:
    DivergenceError). Left out, a row's column keeps the counts of the rows like it outside the sample: 4.2e4.
    Dense rare columns (few nonzero values) alike, their shift left out too; a column held by one sampled row
    only is then one the sample misses (scale 1, no shift)."""
    if fraction >= 1.0 or affine is None or affine.uniform or X.shape[0] < 2:
        return None
    n = X.shape[0]
    v = np.ones(n) if w is None else np.asarray(w, dtype=np.float64) / float(np.mean(w))
    alpha = float(params["alpha"]) if (params["alpha"] != 0 and per_column) else 0.0
    c = row_curvatures(Z, v, params["fit_intercept"])
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        if sp.issparse(X):
            sample = _csr_sample(X, np.arange(n), w if w is None else v, False, fraction)
            scaling = None if sample is None else _scaling(params, sample.s2, per_column)
            if scaling is None or scaling.uniform:
                return c  # the map scales no rare column by its own values (only shifted ones, or none)
            Xr, vals, rare = sample.Xr, sample.values, sample.rare
            idx, e_w = Xr.indices, sample.row_w  # each stored value's weight, as the map took it
            floor = floor_values(n) * sample.s0 / n
            fs, ft = _floored(sample.squares, sample.stored, rare, floor)  # (the pool's q, as the map took it)
            q = float(fs[rare].sum() / ft[rare].sum()) if rare.any() and ft[rare].sum() > 0 else 0.0
            st, sq = sample.stored[idx] - e_w, sample.squares[idx] - e_w * vals * vals
            raise_to = _floor_factor(st, floor)
            s2 = _shrunk(sq * raise_to, st * raise_to, q) / sample.s0
            alone = (sample.counts[idx] <= 1) | ~(s2 > 0)
            z_out = np.where(alone, vals * vals, vals * vals / (s2 + alpha))
            z_in = (vals / affine.scale[idx]) ** 2
            delta = np.where(rare[idx], z_out - z_in, 0.0)
            rows_of = np.repeat(np.arange(n), np.diff(Xr.indptr))
        else:
            Xd = np.asarray(X, dtype=np.float64)
            nonzero = np.count_nonzero(Xd, axis=0)
            rare = _rare_columns(nonzero, n)
            R = Xd[:, rare]  # (one copy of the rare columns)
            rows_of, at = np.nonzero(R)
            cols = np.flatnonzero(rare)[at]
            x = R[rows_of, at]
            e_w = fraction * v[rows_of] + (1.0 - fraction)  # _rare_weights (the mean weight is 1)
            mean = (fraction * np.einsum("i,ij->j", v, R) + (1.0 - fraction) * R.sum(axis=0)) / n
            second = (fraction * np.einsum("i,ij,ij->j", v, R, R) + (1.0 - fraction) * np.einsum("ij,ij->j", R, R)) / n
            held = fraction * np.bincount(at, weights=v[rows_of], minlength=R.shape[1]) \
                + (1.0 - fraction) * np.bincount(at, minlength=R.shape[1])  # (from the nonzero values alone)
            m_out, s_out, h_out = mean[at] - e_w * x / n, second[at] - e_w * x * x / n, held[at] - e_w
            raise_to = _floor_factor(h_out, floor_values(n))
            m_out, s_out = m_out * raise_to, s_out * raise_to
            # as _dense_affine scales: by the variance (with a per-column ridge and no intercept, the mean
            # square), shifted by the mean with an intercept
            var_out = np.maximum(s_out - m_out * m_out, 0.0)
            m2_out = s_out if alpha and not params["fit_intercept"] else var_out
            alone = (nonzero[cols] <= 1) | ~(var_out > 0)
            shift_out = m_out if params["fit_intercept"] else 0.0
            z_out = np.where(alone, x * x, (x - shift_out) ** 2 / (m2_out + alpha))
            z_in = ((x - affine.shift[cols]) / affine.scale[cols]) ** 2
            delta = z_out - z_in
        extra = np.bincount(rows_of, weights=delta, minlength=n)
    if not np.all(np.isfinite(extra)):
        return c  # non-finite X: the first epoch names it
    return c + v * extra


def curvature_spread(c: np.ndarray) -> float:
    """``E[c^2] / E[c]`` over rows' weighted curvatures ``c`` (:func:`row_curvatures`): the ``R^2`` of the
    critical minibatch rate (module docstring); 0.0 when every ``c`` is 0."""
    total = float(np.sum(c))
    if not total > 0.0:
        return 0.0
    square = _dot(c, c)
    if np.isfinite(square) and square > _SQUARE_SAFE:
        return square / total
    top = float(np.max(c))  # (rows of 1e100 unmapped: c^2 overflowed, the rate came out 0)
    if not np.isfinite(top):  # non-finite X: the first epoch names it (inf / inf warned "invalid value" first)
        return top
    u = c / top
    return top * (_dot(u, u) / float(np.sum(u)))


def sample_learning_rate(spec, X, Y, w, params, p0, n_train, rng=None, basis: dict | None = None,
                         curvatures: np.ndarray | None = None, zero: np.ndarray | None = None) -> float:
    """``learning_rate="auto"`` from a sample of the training rows.

    Parameters
    ----------
    spec : fastopt.optim.Optimizer
    X, Y : ndarray of shape (m, d) and (m, k)
        The sampled rows (at most ``AUTO_ROWS``).
    w : ndarray of shape (m,) or None
        Their sample weights (any scale: they are normalised to mean 1 over the sample).
    params : dict
        The estimator's hyperparameters (``fit_intercept``, ``batch_size``).
    p0 : ndarray
        The initial parameters (weights, then intercepts), where the adaptive rules take the first gradient.
    n_train : int
        Training rows the sample was drawn from (bounds the batch size).
    rng : numpy.random.Generator or None
        Not used: the power iteration starts from a deterministic vector (kept for callers that pass one).
    basis : dict or None
        When given, receives what the rate of SGD and the momentum rules was taken from, for ``partial_fit``
        to judge later calls' rows by (``fastopt._iterative.rate_guard``): ``L``, ``ridge`` (the penalty's
        largest coefficient), and ``first`` and ``inverse`` (``1 / lr`` of plain SGD; the guard raises ``inverse``).
    curvatures : ndarray of shape (m,) or None
        The rows' weighted curvatures for SGD's and the momentum rules' ``R^2`` (a stream's sample:
        :func:`held_out_curvatures`); None: those of ``X`` (:func:`row_curvatures`).
    zero : ndarray of shape (d,) or None
        Dense ``X`` mapped by a preconditioning map: the value 0 takes in each column (:func:`zero_image`),
        which :func:`private_curvatures` counts as not stored; None: 0.
    """
    fit_intercept = params["fit_intercept"]
    if sp.issparse(X):  # the same products from the nonzeros: X is never densified
        Xa = sp.csr_array(X, dtype=np.float64)
        if fit_intercept:
            Xa = sp.hstack([Xa, sp.csr_array(np.ones((Xa.shape[0], 1)))], format="csr")
    elif fit_intercept:  # one copy of the sample (astype, then hstack, made two beside the caller's)
        Xa = np.empty((X.shape[0], X.shape[1] + 1))
        Xa[:, :-1], Xa[:, -1] = X, 1.0
    else:
        Xa = X.astype(np.float64, copy=False)  # (read only here)
    w = w.astype(np.float64) if w is not None else np.ones(Xa.shape[0])
    w = w / w.mean()
    d = X.shape[1]
    coupled = not spec.decoupled_decay
    decay = params.get("decay")  # each column's ridge (a per-column scaling), else the one weight decay
    ridge = np.r_[decay if decay is not None else np.full(d, spec.weight_decay if coupled else 0.0),
                  np.zeros(Xa.shape[1] - d)]
    with np.errstate(over="ignore", invalid="ignore"):  # non-finite X (NaN here): the first epoch names it
        L = _top_eigenvalue(Xa, w, ridge)
    if not np.isfinite(L) and np.isfinite(Xa.data if sp.issparse(Xa) else Xa).all() and np.isfinite(ridge).all():
        # Finite data whose curvature is beyond float64 (X of 1e160 unmapped): a NaN rate diverged in SGD's first
        # step with advice to use the rate in use, and the adaptive rules' fallback rate fitted nothing.
        raise ValueError(
            "learning_rate='auto' cannot be estimated: the curvature of the data (the largest eigenvalue of "
            "X^T X / n plus the penalty) overflows float64. Rescale X (or use precondition='auto'), or pass "
            "learning_rate as a number."
        )
    if L <= 0.0:  # X is zero and there is no intercept: nothing moves, any rate will do
        return 1.0
    # A row's Hessian with the penalty, w x x^T + Lambda, squared is at most (c + max Lambda) times itself: the
    # ridge adds its largest coefficient to R^2, not its trace, which counted each of d columns' decay as noise.
    # On hashed rows under a small ridge (2^16 columns) the trace was 6 times R^2 from the rows, and default Adam
    # stopped at max_epochs 7% above the optimum (1.8e-3 in 56 epochs now).
    penalty = rate_penalty(spec, params)  # (ridge's largest entry)
    if int(params["batch_size"]) >= n_train:
        lr, inverse = 1.0 / L, L  # full batches: the exact gradient, whatever the number (or weights) of the rows
    else:
        b = int(params["batch_size"])
        if spec.follows_gradient:
            # R^2 of the fourth-moment condition E[w^2 ||x||^2 x x^T] <= R^2 H, by its trace: at R^2 = tr H a
            # minibatch holding one row of 18 times the mean weight (or 30 times the typical size) took 18
            # (900) times the typical step along that row, and default SGD diverged.
            spread = curvature_spread(row_curvatures(Xa, w, False) if curvatures is None else curvatures)
        elif sp.issparse(Xa):  # the adaptive rules' steps are distances per coordinate: R^2 = E[c]
            spread = _dot(w, np.asarray(Xa.multiply(Xa).sum(axis=1)).ravel()) / Xa.shape[0]
        else:
            spread = float(np.einsum("i,ij,ij->", w, Xa, Xa)) / Xa.shape[0]
        lr = b / (spread + penalty + (b - 1) * L)  # the critical minibatch rate
        if spec.follows_gradient and getattr(spec, "momentum", 0.0) > 0 and decay is None:
            # (under a per-column ridge map each coordinate's own decay pulls a rare column back: as the floor)
            with np.errstate(over="ignore", invalid="ignore"):  # non-finite X: the first epoch names it
                at = None if zero is None or sp.issparse(Xa) else np.r_[zero.astype(np.float64),
                                                                        np.zeros(Xa.shape[1] - d)]
                lr = min(lr, momentum_rate_bound(private_curvatures(Xa, w, spec.momentum, b, zero=at), b))
        if lr == 0.0:  # (the ridge's curvature beyond float64: alpha of 1e308 raised ZeroDivisionError here)
            raise ValueError(f"alpha = {penalty:.3g} makes the problem's curvature overflow float64, so no learning "
                             "rate is small enough; lower alpha.")
        inverse = 1.0 / lr
    if basis is not None and spec.follows_gradient:
        basis.update(L=L, ridge=penalty, first=inverse, inverse=inverse)
    k = Y.shape[1]
    P0 = np.vstack([p0[: k * d].reshape(k, d).T.astype(np.float64),
                    p0[k * d :][None, :] if fit_intercept else np.zeros((0, k))])
    if spec.follows_gradient:
        factor = robust_rate_factor(params, Xa, Y, w, P0)
        if factor != 1.0:
            # The ridge's curvature does not scale with y: a step lr * penalty beyond 1 along it overshoots, and
            # the scaled rate diverged under alpha = 1e-3 on targets of 1e4 (and on one-hot rows, whose rare
            # levels' per-column decay is near 1, at unit scale). At most the ridge's own critical step.
            lr = min(lr * factor, max(lr, 1.0 / penalty)) if penalty > 0 else lr * factor
        return lr * (1.0 - spec.momentum) if hasattr(spec, "momentum") else lr
    pred = [_matvec(Xa, P0[:, j]) for j in range(k)]  # (for the gradient and the size of its terms)
    resid = [pred[j] - Y[:, j] for j in range(k)]
    sizes = [np.abs(pred[j]) + np.abs(Y[:, j]) for j in range(k)]  # bound each residual's rounding (below)
    if params["loss"] != "squared_error":
        # The squared error's gradient carries the unit of y, as the steps must (the robust losses' is bounded);
        # its residuals are clipped at ROBUST_CLIP times their robust scale (:func:`residual_scale`), so that a
        # far outlier does not set the rate (one of 1e8 among 200 unit rows: Adam's coefficients 17-27 off).
        with np.errstate(over="ignore", invalid="ignore"):  # non-finite y: the first epoch names it
            tau = ROBUST_CLIP * residual_scale(np.abs(np.stack(resid, axis=1)), w)
        if np.isfinite(tau) and tau > 0:
            sizes = [np.where(np.abs(r) >= tau, tau, c) for r, c in zip(resid, sizes)]  # (a clipped one: exact)
            resid = [np.clip(r, -tau, tau) for r in resid]
    G0 = np.stack([_rmatvec(Xa, w * resid[j]) for j in range(k)], axis=1) / Xa.shape[0]
    # The first gradient-descent step g0 / L, shrunk by the same minibatch-noise factor as SGD's rate
    # (lr L = b L / (tr H + (b - 1) L), 1 for full batches): a smaller batch moves the adaptive rules in
    # noisier directions, and their noise ball grows with the per-coordinate step.
    scale = float(np.max(np.abs(G0))) * lr
    fraction = ADAGRAD_FRACTION if spec.accumulates else ADAPTIVE_FRACTION
    # No gradient where the fit starts but its rounding (one row, constant targets, rows that store nothing: every
    # residual zero, or the rounding of the targets' mean, so no step moves): any rate will do here, and
    # partial_fit takes the rate from its next call's rows (basis["pending"]). G0 is a mean of m terms: its
    # rounding is at most about m eps times their mean magnitude, i.e. eps times the sum of their magnitudes
    # (``magnitudes``); a first chunk of empty hashed rows, its targets' mean inexact, left Adam at 3.6e-17.
    magnitudes = max(float(np.max(_abs_rmatvec(Xa, w * sizes[j]))) for j in range(k))
    if not float(np.max(np.abs(G0))) > np.finfo(np.float64).eps * magnitudes:
        if basis is not None:
            basis["pending"] = True
        scale = 0.0
    return decay_capped(spec, fraction * scale if scale > 0 else 1e-3)


def robust_rate_factor(params: dict, Xa, Y: np.ndarray, w: np.ndarray, P0: np.ndarray) -> float:
    """The factor of SGD's and the momentum rules' critical rate for a robust loss: the start's residual scale
    ``s`` (:func:`residual_scale`: the largest over the targets of the clipped weighted mean of
    ``|y - x^T theta_0|``, ``theta_0`` the initial parameters), for the absolute error, and ``max(1, s /
    epsilon)`` for Huber's loss; 1 for the squared error.

    The critical rate is the squared error's, in units of one over ``x^2``; the absolute error's gradient
    ``sign(r) x`` carries no unit of ``y``, so its steps need one: with it a fit of ``c y`` is ``c`` times the fit
    of ``y`` (to rounding; without a ridge). Huber's loss is the squared error within ``epsilon`` and
    ``epsilon |r|`` beyond, where residuals of scale ``s`` lie. Without the factor, targets of scale 1e4 left
    SGD, momentum and Nesterov at ``max_epochs`` 0.9-1.9 times the optimal objective above it (warned), while
    the adaptive rules, whose rate is already a distance, fitted them. The plateau schedule cuts a rate that is
    too large; one that is too small it cannot raise."""
    loss = params["loss"]
    if loss == "squared_error":
        return 1.0
    with np.errstate(over="ignore", invalid="ignore"):  # non-finite X or y: the first epoch names it
        R = np.abs(Y.astype(np.float64) - np.stack([_matvec(Xa, P0[:, j]) for j in range(Y.shape[1])], axis=1))
        s = residual_scale(R, w)
    if not (np.isfinite(s) and s > 0.0):
        return 1.0  # nothing to fit from the start (or the epoch names the non-finite values)
    return s if loss == "absolute_error" else max(1.0, s / float(params["epsilon"]))


def residual_scale(R: np.ndarray, w: np.ndarray) -> float:
    """The residual scale of a robust loss (the start's, for the rate; a fit's, for its far rows): the largest
    over the targets (columns of ``R``, the residuals' magnitudes) of their clipped mean, the largest fixed point
    of ``s = mean_w(min(|r|, C s))`` (``C = RESIDUAL_CLIP``), reached from the weighted mean. A group of rows
    holding a fraction ``p`` of the weight keeps its residuals in ``s`` when ``p C >= 1``: the rows a fit must
    follow, however few of them are far from 0 (a column active on 45% of the rows beside targets near 0), count
    as in the mean, and a far outlier (or a few large targets) on less than ``1 / C`` of them does not. The mean
    took one row of 1e8 among 1,000 unit ones for a scale of 1e5, and every iterative rule ended its default fit
    far from the minimiser (the outlier's term, epsilon |r| / n, dominated the objective its plateau rule
    watched); the median collapsed to the targets near 0 (a rate of 3e-4 where 2.7 fits).

    Each round takes the fixed point of the line that ``mean_w(min(|r|, C s))`` follows at the current ``s``
    (the rows clipped there staying clipped): the map is concave, so that line lies above it and its fixed point
    is at or above the largest fixed point, and the rounds fall to it in as many steps as rows change sides
    (:func:`clipped_mean_step`)."""
    W = float(np.sum(w))
    best = 0.0
    for j in range(R.shape[1]):
        top = float(np.max(R[:, j])) if R.shape[0] else 0.0
        # in units of a power of two near the largest (exact): residuals of 1e306-1e308 overflowed the sums,
        # inf times no clipped weight is NaN, and the scale came back 0
        unit = float(np.ldexp(1.0, int(np.frexp(top)[1]) - 1)) if np.isfinite(top) and top > 0 else 1.0
        r = R[:, j] / unit

        def step(s: float, r=r) -> float:
            t = RESIDUAL_CLIP * s
            above = r > t
            return clipped_mean_step(float(w @ np.where(above, 0.0, r)), float(w @ above), W, t)

        s = clipped_mean_rounds(float(w @ r) / W, step)
        with np.errstate(over="ignore"):
            best = max(best, s * unit)
    return best


def clipped_mean_rounds(s: float, step) -> float:
    """The clipped mean's rounds from the weighted mean ``s``: ``s = step(s)`` (decreasing) until a round lowers
    it by less than 1e-3 of itself, at most ``RESIDUAL_CLIP_ROUNDS`` of them (:func:`residual_scale` over the
    residuals, ``_sweeps.spread_scales`` over their histogram)."""
    for _ in range(RESIDUAL_CLIP_ROUNDS):
        new = step(s)
        settled, s = not new < s * (1.0 - 1e-3), new
        if settled:
            break
    return s


def clipped_mean_step(below: float, clipped: float, W: float, t: float) -> float:
    """One round of the clipped mean (:func:`residual_scale`) at the clip ``t = C s``: ``below`` the weighted sum
    of the residuals under it, ``clipped`` the weight of those above; the fixed point ``below / (W - C
    clipped)`` of the map's line there where it has one below the plain round ``(below + t clipped) / W``, else
    that round. Plain rounds fall by a factor ``p C`` a round while rows of weight ``p`` stay clipped: 64 of
    them left three rows of 1e25 among 400 (0.75%) at a scale of 7.6e14 where 1 fits, and the rate diverged."""
    new = (below + t * clipped) / W
    room = W - RESIDUAL_CLIP * clipped
    return min(new, below / room) if room > 0 else new


def zero_image(affine: Affine | None, X) -> np.ndarray | None:
    """The value 0 takes in each column of dense ``X`` under ``affine``, in ``X``'s dtype as
    :meth:`Affine.transform` computes it (``(0 - shift) / scale``, so that it compares equal), for
    :func:`private_curvatures`; None for CSR ``X`` (its implicit zeros stay unstored) or no map."""
    if affine is None or sp.issparse(X):
        return None
    return ((0.0 - np.asarray(affine.shift, dtype=np.float64)) / affine.scale).astype(X.dtype)


def private_curvatures(X, w: np.ndarray, momentum: float, batch_size: int, zero: np.ndarray | None = None
                       ) -> np.ndarray:
    """The rows' weighted curvatures ``w_i sum_j x_ij^2`` over their private columns only: those that fewer than
    ``n (1 - momentum) / batch_size`` of the ``n`` rows of ``X`` (dense or CSR) store, so that a momentum rule's
    buffer, which carries a step on for about ``1 / (1 - momentum)`` steps, meets no other row of the column while
    it does (about ``m b / n`` rows of a column stored ``m`` times come in each minibatch of ``b``). Zero for a
    row without one; float64. Dense ``X`` stores the values other than ``zero`` (each column's, 0 when None):
    mapped by a map that centres columns (:func:`zero_image`), a one-hot level's other rows hold ``-mean /
    scale``, and counting nonzero values found no private column. The curvature sums the stored values alone,
    as CSR's does."""
    n = X.shape[0]
    limit = n * (1.0 - momentum) / batch_size
    if sp.issparse(X):
        X = sp.csr_array(X)
        nonzero = X.data != 0  # (stored zeros count as dense X's zeros do: not at all)
        counts = np.bincount(X.indices if nonzero.all() else X.indices[nonzero], minlength=X.shape[1])
    else:
        stored = X != 0 if zero is None else X != np.asarray(zero, dtype=X.dtype)
        counts = np.count_nonzero(stored, axis=0)
    private = (counts > 0) & (counts < limit)
    if not private.any():
        return np.zeros(n)
    if sp.issparse(X):  # the private columns' stored values, each row's summed in order (no column slicing)
        values = np.asarray(X.data, dtype=np.float64)
        kept = sp.csr_array((np.where(private[X.indices], values * values, 0.0), X.indices, X.indptr), shape=X.shape)
        squares = np.asarray(kept.sum(axis=1), dtype=np.float64).ravel()
    else:
        part = np.where(stored[:, private], np.asarray(X[:, private], dtype=np.float64), 0.0)
        squares = np.einsum("ij,ij->i", part, part)
    return squares * w


def momentum_rate_bound(c: np.ndarray, batch_size: int) -> float:
    """The largest rate ``lr / (1 - mu)`` of a momentum rule (SGD's rate ``lr`` over ``1 - mu``) at which a
    minibatch holding the row of the largest private curvature ``c_i`` (:func:`private_curvatures`) does not
    carry that row past its own fit: ``b / max_i c_i`` (infinite where every ``c_i`` is 0).

    A row's private columns (a rare one-hot level) meet no restoring force from other rows after its step: the
    buffer carries the step on for about ``1 / (1 - mu)`` steps, so the row's residual is multiplied by about
    ``1 - lr / (1 - mu) c_i / b``. SGD's critical rate, from the rows' mean curvature (``R^2``), ignores one such
    row: with 20 one-hot levels held by one row each (40,000 rows), default momentum's epoch losses rose
    9,000-fold over their lowest before the plateau rule's cuts, and on Zipf-distributed categories (5,000
    levels, 20,000 rows) it ended 9% above the optimum after 100 epochs. At twice this bound the factor is -1 for
    the heaviest rows, whose residuals then flip sign at every pass without shrinking: one of 12 such designs
    crawled, 143 times the optimum's loss above it after 100 epochs. Rows heavy in columns that other rows share
    (outliers) are left to ``R^2``: the whole rows' curvature here made default momentum crawl on them (0.5% ->
    360% above the optimum on a 600-row design). Not under a per-column ridge map, whose decays pull a rare column
    back (with ``alpha = 1e-3`` the bound cut the rate of Zipf designs' fits in half, and the smallest ended 0.53%
    above its optimum instead of 0.14%). SGD takes its step on such a row once, not ``1 / (1 - mu)`` times, and
    keeps its rate (:func:`floored_squares`)."""
    top = float(np.max(c)) if c.size else 0.0
    return batch_size / top if top > 0.0 else np.inf


def rate_penalty(spec, params: dict) -> float:
    """The largest ridge coefficient of a run's penalty in its units (``params`` after the map's penalty, see
    ``fastopt._iterative._penalised``), as :func:`sample_learning_rate` adds it to the curvature: a per-column
    decay's largest, or the coupled weight decay; 0 for AdamW's decoupled one (:func:`decay_capped`)."""
    decay = params.get("decay")
    if decay is not None:
        return float(np.max(decay)) if np.size(decay) else 0.0
    return 0.0 if spec.decoupled_decay else float(spec.weight_decay)


def decay_capped(spec, lr: float) -> float:
    """``lr``, at most ``1 / weight_decay`` for a decoupled decay (AdamW's ``w <- (1 - lr wd) w``): beyond it the
    factor turns negative, and past ``2 / wd`` each step multiplies the weights by more than 1 in size. The rate
    from the gradient alone ignores the decay: default AdamW fits with ``alpha`` 100 diverged in their first
    epoch, and a warm start adding ``alpha`` 10 at the rate the fit had left (2.7) too."""
    if spec.decoupled_decay and spec.weight_decay > 0:
        return min(lr, 1.0 / float(spec.weight_decay))
    return lr
