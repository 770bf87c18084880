"""Fit and predict on Dask collections (the optional ``fastopt[dask]`` extra).

Imported only when an input is a Dask collection, so ``import fastopt`` never imports Dask.

- **Closed form**: each row block's sufficient statistics are computed by the compiled kernel *on the
  worker that holds the block*; a binary tree of exact pairwise merges reduces them there too; only the
  merged state (a few ``d x d`` arrays) reaches the client, which solves it. ``X`` is never gathered.
- **Iterative solvers**: as ``dask_ml.wrappers.Incremental``: every epoch visits the row blocks in a
  permutation drawn from ``random_state``; each block is computed, brought to the client (the next one is
  fetched meanwhile) and given one pass at the epoch's scheduled rate. ``learning_rate="auto"`` comes from
  a seeded sample of every block's training rows, drawn and merged on the workers (only the sample travels).
  Every block's weights are divided by the mean weight of all training rows, totalled by that sampling pass
  or, with a numeric rate, by a reduction of the ``sample_weight`` blocks alone on the workers.
  See :mod:`fastopt._streaming` for what an epoch, the schedule, ``early_stopping``, ``tol`` and
  ``loss_curve_`` mean there.
- **predict** maps the fitted model over the blocks lazily and returns a Dask array.
"""
from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import Any

import dask
import dask.array as da
import numpy as np
from dask.delayed import Delayed, delayed
from sklearn.base import clone
from sklearn.utils.validation import _check_feature_names, _check_n_features, check_is_fitted

from fastopt import _chunks, _closed_form, _iterative_lr, _solvers, _streaming


def _is_frame(a: Any) -> bool:
    """A Dask DataFrame or Series (its blocks are partitions; row counts unknown until computed)."""
    return dask.is_dask_collection(a) and not isinstance(a, da.Array) and hasattr(a, "to_delayed")


def _check_collection(name: str, a: Any, ndims: tuple[int, ...]) -> None:
    if isinstance(a, da.Array):
        if a.ndim not in ndims:
            raise ValueError(f"{name} must have {' or '.join(map(str, ndims))} dimensions; got shape {a.shape}.")
        if np.iscomplexobj(a._meta):
            raise TypeError(f"{name} has a complex dtype; fastopt fits real-valued least squares only.")
    elif not _is_frame(a):
        raise TypeError(f"{name} is a {type(a).__name__}; expected a dask.array.Array or a Dask DataFrame/Series.")


def _row_blocks(a: Any, rows: tuple[float, ...] | None) -> list[Delayed]:
    """One delayed object per row block of ``a``, with the rows split as ``rows`` when that is known.

    A matrix is rechunked so every block holds all its columns (the kernels need whole rows). A NumPy
    ``y`` or ``sample_weight`` next to a Dask ``X`` is split the same way, so its pieces travel with the
    blocks of ``X``.
    """
    known = rows is not None and not any(math.isnan(r) for r in rows)
    if not dask.is_dask_collection(a):
        if not known:
            raise TypeError("X is a Dask collection with unknown chunk sizes; y and sample_weight must be Dask too.")
        a = np.asarray(a)
        a = da.from_array(a, chunks=(rows, *a.shape[1:]))
    # Unoptimised graphs keep the original task keys, so blocks that X, y and sample_weight share (y computed
    # from X, or all three from one source) are computed once per block, not once per collection.
    if _is_frame(a):
        return list(a.to_delayed(optimize_graph=False))
    if known and a.chunks[0] != rows and not any(math.isnan(r) for r in a.chunks[0]):
        a = a.rechunk({0: rows})
    if a.ndim == 2:
        a = a.rechunk({1: -1})
    return list(a.to_delayed(optimize_graph=False).reshape(-1))


def _n_rows(a: Any) -> float:
    """Row count of an array or Dask collection; nan when Dask does not know it without computing."""
    shape = getattr(a, "shape", None) or np.shape(a)
    return shape[0] if isinstance(shape[0], (int, np.integer)) and not isinstance(shape[0], bool) else math.nan


class DaskChunks(Sequence):
    """The row blocks of Dask ``X``, ``y`` (and ``sample_weight``), indexable: ``chunks[i]`` computes block
    ``i`` and returns NumPy/pandas ``(X_i, y_i, w_i)``.

    Parameters
    ----------
    X : dask.array.Array of shape (n_samples, n_features), or a Dask DataFrame
    y : dask.array.Array of shape (n_samples,) or (n_samples, n_targets), a Dask Series/DataFrame, or a
        NumPy array when ``X``'s chunk sizes are known
    sample_weight : same kinds as ``y``, 1-D, or None
    """

    def __init__(self, X: Any, y: Any, sample_weight: Any = None):
        _check_collection("X", X, (2,))
        rows = X.chunks[0] if isinstance(X, da.Array) else None
        for name, a in (("y", y), ("sample_weight", sample_weight)):
            n, m = _n_rows(X), math.nan if a is None else _n_rows(a)
            if n != m and not (math.isnan(n) or math.isnan(m)):
                raise ValueError(f"X has {n} rows but {name} has {m}; they must have the same number of samples.")
        self.x = _row_blocks(X, rows)
        self.y = _row_blocks(y, rows)
        self.w = None if sample_weight is None else _row_blocks(sample_weight, rows)
        for name, blocks in (("y", self.y), ("sample_weight", self.w)):
            if blocks is not None and len(blocks) != len(self.x):
                raise ValueError(
                    f"X has {len(self.x)} row blocks but {name} has {len(blocks)}; give them the same row chunks "
                    "(e.g. both from one DataFrame, or y.rechunk(X.chunks[0]))."
                )
        starts = np.cumsum((0, *rows)) if rows is not None else None
        self.labels = [
            f"chunk {i}" + (f" (rows {int(starts[i])}:{int(starts[i + 1])})" if rows is not None else "")
            for i in range(len(self.x))
        ]
        self.y_ndim = y.ndim
        self.rows = rows
        self.dtype = _chunks.check_dtype(X, None, "X") or np.dtype(np.float64)  # what validation casts to

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> tuple:
        w = None if self.w is None else self.w[i]
        return dask.compute(self.x[i], self.y[i], w)

    def block(self, i: int) -> tuple[Delayed, Delayed, Delayed | None, str]:
        """Block ``i`` as delayed objects, with its label for error messages."""
        return self.x[i], self.y[i], None if self.w is None else self.w[i], self.labels[i]


def _template(estimator):
    """An unfitted copy of ``estimator`` carrying the feature count and names workers check blocks against."""
    template = clone(estimator)
    for attr in ("n_features_in_", "feature_names_in_"):
        if hasattr(estimator, attr):
            setattr(template, attr, getattr(estimator, attr))
    return template


def _state_of_block(template, params: dict, kind: str, X, y, sample_weight, where: str, index: int):
    return _chunks.chunk_state(template, params, X, y, sample_weight, where, kind)[0]


def tree_merge(leaves: list[Delayed], merge=_closed_form.merge_states) -> Delayed:
    """Reduce ``leaves`` pairwise with ``merge``, level by level: depth log2(n), every merge on the cluster."""
    level = leaves
    while len(level) > 1:
        merged = [delayed(merge, pure=True)(a, b) for a, b in zip(level[::2], level[1::2])]
        level = merged + level[len(merged) * 2 :]
    return level[0]


def _reduce_blocks(estimator, chunks: DaskChunks, leaf, arg, merge=_closed_form.merge_states):
    """``leaf(template, params, arg, X_i, y_i, w_i, where_i, i)`` for every block ``i`` on the worker that holds
    it, reduced by ``merge`` there too; only the merged value comes back."""
    template_d = delayed(_template(estimator), pure=True)
    params_d = delayed(estimator.get_params(), pure=True)
    leaves = [delayed(leaf, pure=True)(template_d, params_d, arg, *chunks.block(i), i) for i in range(len(chunks))]
    return tree_merge(leaves, merge).compute()


def _cluster_state(estimator, chunks: DaskChunks, kind: str):
    """The merged closed-form statistics (``kind`` as in ``_chunks.STATISTICS``) of every block."""
    return _reduce_blocks(estimator, chunks, _state_of_block, kind)


def _cluster_sample(estimator, chunks: DaskChunks, seed: int):
    """The learning-rate sample (``_chunks.chunk_sample``) of every block: only its rows come back, and
    when the blocks' row counts are known, each block sends only its rows likely to be among them."""
    below = 1.0
    if chunks.rows is not None and not any(math.isnan(r) for r in chunks.rows):
        fraction = _chunks.validation_fraction(estimator.get_params())
        n_train = sum(n - _chunks.n_held_out(n, fraction) for n in chunks.rows)
        below = min(1.0, 2 * _iterative_lr.AUTO_ROWS / max(n_train, 1))
    leaf = functools.partial(_chunks.chunk_sample, below=below)
    return _reduce_blocks(estimator, chunks, leaf, seed, _chunks.merge_samples)


def _cluster_weight(estimator, chunks: DaskChunks, seed: int):
    """The training weight of every block (``_chunks.chunk_weight``), reduced on the workers from the
    ``sample_weight`` blocks alone; None without weights."""
    if chunks.w is None:
        return None
    fraction = _chunks.validation_fraction(estimator.get_params())
    rows = chunks.rows if chunks.rows is not None else (None,) * len(chunks)
    leaves = [delayed(_chunks.chunk_weight, pure=True)(seed, fraction, chunks.dtype, w, n, where, i)
              for i, (w, n, where) in enumerate(zip(chunks.w, rows, chunks.labels))]
    return tree_merge(leaves, _chunks.merge_weights).compute()


def _check_features(estimator, X: Any, reset: bool) -> None:
    """Set (``reset``) or check ``n_features_in_``/``feature_names_in_`` from ``X``'s metadata alone."""
    # scikit-learn reads feature names from pandas frames only: a Dask frame's empty pandas _meta has its columns.
    like = X._meta if _is_frame(X) else X
    _check_n_features(estimator, like, reset=reset)
    _check_feature_names(estimator, like, reset=reset)


def fit(estimator, X: Any, y: Any, sample_weight: Any = None):
    """``LinearRegressor.fit`` on Dask collections (parameters already validated by ``fit``)."""
    chunks = DaskChunks(X, y, sample_weight)
    name = _solvers.resolve(estimator.solver, estimator.loss, X, estimator.alpha)
    _check_features(estimator, X, reset=True)
    if name in ("cg", "lsqr"):  # Krylov solvers: their own passes (fastopt._krylov_dask)
        from fastopt import _krylov_dask

        return _krylov_dask.fit(estimator, name, chunks, X)
    if name in _closed_form.SOLVERS:
        state = _cluster_state(estimator, chunks, "gram")
        second_pass = lambda: _cluster_state(estimator, chunks, "qr")  # noqa: E731
        return _streaming.finish(estimator, name, state, chunks.y_ndim == 1, second_pass)
    sampler = lambda seed: _cluster_sample(estimator, chunks, seed)  # noqa: E731
    weigher = lambda seed: _cluster_weight(estimator, chunks, seed)  # noqa: E731
    return _streaming.fit(estimator, _chunks.ChunkSource(chunks), sampler, weigher)


def partial_fit(estimator, X: Any, y: Any, sample_weight: Any = None):
    """``LinearRegressor.partial_fit`` on Dask collections: every block once, in order.

    The closed form merges the blocks' statistics on the cluster, then into the estimator's state; an
    iterative solver makes one ``partial_fit`` pass over each block (each block's weights divided by their
    own mean, as a ``partial_fit`` call's are).
    """
    chunks = DaskChunks(X, y, sample_weight)
    name = _solvers.resolve(estimator.solver, estimator.loss)
    if name not in _closed_form.SOLVERS:
        _streaming.sweep(estimator, _chunks.ChunkSource(chunks))
        return estimator
    first = not hasattr(estimator, "_solver_state")
    if first:
        estimator._validate_params()
    elif name != estimator._solver_name:
        raise ValueError(
            f"partial_fit was started with solver {estimator._solver_name!r}; solver is now {name!r}. "
            "Call fit to start over."
        )
    _check_features(estimator, X, reset=first)
    state = _cluster_state(estimator, chunks, "partial")
    if not first:
        state = _closed_form.merge_states(estimator._solver_state, state)
    return _streaming.finish(estimator, name, state, chunks.y_ndim == 1)


def _predict_block(block, estimator) -> np.ndarray:
    return estimator.predict(block)


def predict(estimator, X: Any):
    """Lazy ``predict``: a Dask array of predictions, one block per row block of ``X``; nothing is computed."""
    check_is_fitted(estimator)
    _check_collection("X", X, (2,))
    _check_features(estimator, X, reset=False)
    coef = np.asarray(estimator.coef_)
    x_dtype = getattr(X, "dtype", np.float64)  # a DataFrame has only per-column dtypes: validated as float64
    dtype = np.result_type(np.float32 if x_dtype == np.float32 else np.float64, coef.dtype)
    meta = np.empty((0,) * coef.ndim, dtype=dtype)
    if _is_frame(X):
        # Partitions keep their column names, so the fitted feature names are checked block by block.
        return X.map_partitions(_predict_block, estimator, meta=meta)
    X = X.rechunk({1: -1})
    if coef.ndim == 1:
        return X.map_blocks(_predict_block, estimator, drop_axis=1, meta=meta)
    return X.map_blocks(_predict_block, estimator, chunks=(X.chunks[0], (coef.shape[0],)), meta=meta)
