"""Fit and predict on Dask collections (the optional ``fastopt[dask]`` extra).

Imported only when an input is a Dask collection, so ``import fastopt`` never imports Dask.

- **Closed form**: each row block's sufficient statistics are computed by the compiled kernel *on the
  worker that holds the block*; a binary tree of exact pairwise merges reduces them there too; only the
  merged state (a few ``d x d`` arrays) reaches the client, which solves it. ``X`` is never gathered.
- **Iterative solvers**: the model travels to the data. An epoch visits the row blocks in a permutation
  drawn from ``random_state`` (as ``dask_ml.wrappers.Incremental`` does); each block's pass runs on the
  worker that holds the block (:func:`fastopt._sweeps.block_pass`, one task per run of consecutive blocks),
  taking the model and optimizer state (a few ``d``-vectors, the step count and the row-order generator) from
  the previous block's pass and handing the updated state to the next, so the state hops from worker to
  worker and no block reaches the client.
  A few blocks ahead in the order are computed while the chain runs (:class:`ClusterPasses`); the client
  receives each pass's state and sums as they finish (a few kilobytes), which is also its checkpoint.
  ``learning_rate="auto"`` comes from a seeded sample of every block's training rows, drawn and merged on the
  workers (only the sample travels). Every block's weights are divided by one stream-wide mean weight (see
  "Sample weights" in ARCHITECTURE.md), totalled by that sampling pass or, with a numeric rate, by a reduction
  of the ``sample_weight`` blocks alone on the workers. With ``early_stopping`` the held-out rows are scored on their
  workers and only their sums travel. Without a ``dask.distributed`` client, the blocks are computed by the local
  scheduler and passed here, one at a time, the next computed meanwhile. See :mod:`fastopt._streaming` for
  what an epoch, the schedule, ``early_stopping``, ``tol`` and ``loss_curve_`` mean there.
- **Newton** (``solver="newton"``, and ``"auto"`` for the Huber loss): :mod:`fastopt._newton_dask`, one
  distributed pass per evaluation; only ``d x d`` statistics travel.
- **predict** maps the fitted model over the blocks lazily and returns a Dask array.
"""
from __future__ import annotations

import copy
import dataclasses
import functools
import math
import operator
import sys
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

import dask
import dask.array as da
import numpy as np
from dask.delayed import Delayed, delayed
from dask.optimization import cull
from sklearn.utils.validation import check_is_fitted

from fastopt import _chunks, _closed_form, _iterative_lr, _solvers, _sweeps
from fastopt._result import Outcome
from fastopt._validation import check_features, reject_foreign_sparse


def _is_frame(a: Any) -> bool:
    """A Dask DataFrame or Series (its blocks are partitions; row counts unknown until computed)."""
    return dask.is_dask_collection(a) and not isinstance(a, da.Array) and hasattr(a, "to_delayed")


def _check_collection(name: str, a: Any, ndims: tuple[int, ...]) -> None:
    if isinstance(a, da.Array):
        if a.ndim not in ndims:
            raise ValueError(f"{name} must have {' or '.join(map(str, ndims))} dimensions; got shape {a.shape}.")
        # (the blocks' type: pydata sparse blocks reached NumPy's __array_function__ error from iscomplexobj)
        reject_foreign_sparse(name, a._meta)
        if np.issubdtype(a.dtype, np.complexfloating):
            raise ValueError(f"{name} has a complex dtype; fastopt fits real-valued least squares only.")
    elif not _is_frame(a):
        raise TypeError(f"{name} is a {type(a).__name__}; expected a dask.array.Array or a Dask DataFrame/Series.")


def _row_blocks(a: Any, rows: tuple[float, ...] | None) -> list[Delayed]:
    """One delayed object per row block of ``a``, with the rows split as ``rows`` when that is known.

    A matrix is rechunked so every block holds all its columns (the kernels need whole rows). A NumPy
    ``y`` or ``sample_weight`` next to a Dask ``X`` is split the same way, so its pieces travel with the
    blocks of ``X``, and so is a Dask frame of another number of partitions (after a pass that finds their
    lengths).
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
        if not known:
            return list(a.to_delayed(optimize_graph=False))
        # a frame beside an array of known row blocks: its partitions' lengths (one pass over it, which even the
        # same number of partitions needs), then split as X (a Series of partitions of 130 rows beside blocks of
        # 100 was refused with a count of blocks, or of samples)
        a = a.to_dask_array(lengths=True)
    if known and a.chunks[0] != rows and not any(math.isnan(r) for r in a.chunks[0]):
        a = a.rechunk({0: rows})
    if a.ndim == 2:
        a = a.rechunk({1: -1})
    return list(a.to_delayed(optimize_graph=False).reshape(-1))


def _n_rows(a: Any) -> float:
    """Row count of an array or Dask collection; nan when Dask does not know it without computing."""
    shape = getattr(a, "shape", None) or np.shape(a)
    return shape[0] if isinstance(shape[0], (int, np.integer)) and not isinstance(shape[0], bool) else math.nan


def sparse_blocks(X: Any) -> bool:
    """Whether Dask array ``X``'s blocks are ``scipy.sparse`` matrices (known from its meta, nothing computed)."""
    return isinstance(X, da.Array) and getattr(X._meta, "format", None) is not None


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
        # y (or weights) as a list or another array-like, as in memory (y.ndim below ended in an AttributeError)
        y = y if dask.is_dask_collection(y) or hasattr(y, "ndim") else np.asarray(y)
        if sample_weight is not None and not (dask.is_dask_collection(sample_weight) or hasattr(sample_weight, "ndim")):
            sample_weight = np.asarray(sample_weight)
        if sample_weight is not None and not dask.is_dask_collection(sample_weight) and np.ndim(sample_weight) == 0:
            # one weight for every row, as in memory (scikit-learn's _check_sample_weight)
            n = _n_rows(X)
            if math.isnan(n):
                raise ValueError("a scalar sample_weight needs X's row count, which this Dask collection does not "
                                 "know without computing: pass one weight a row, as a Dask collection.")
            sample_weight = np.full(n, sample_weight, dtype=np.float64)
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
        self.labels = [  # the row range where it is known (not after a mask)
            f"chunk {i}" + (f" (rows {int(starts[i])}:{int(starts[i + 1])})"
                            if starts is not None and np.isfinite(starts[i + 1]) else "")
            for i in range(len(self.x))
        ]
        if rows is not None and 0 in rows and any(rows):  # blocks known to be empty hold nothing to fit: skipped
            keep = [i for i, r in enumerate(rows) if r != 0]
            self.x, self.y, self.labels = [self.x[i] for i in keep], [self.y[i] for i in keep], \
                [self.labels[i] for i in keep]
            self.w = None if self.w is None else [self.w[i] for i in keep]
            rows = tuple(rows[i] for i in keep)
        self.y_ndim = y.ndim
        self.rows = rows
        self.sparse = sparse_blocks(X)
        self.dtype = _chunks.check_dtype(X, None, "X") or np.dtype(np.float64)  # what validation casts to

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> tuple:
        w = None if self.w is None else self.w[i]
        return dask.compute(self.x[i], self.y[i], w)

    def block(self, i: int) -> tuple[Delayed, Delayed, Delayed | None, str]:
        """Block ``i`` as delayed objects, with its label for error messages."""
        return self.x[i], self.y[i], None if self.w is None else self.w[i], self.labels[i]


def _state_of_block(template, params: dict, kind: str, X, y, sample_weight, where: str, index: int):
    return _chunks.checked_statistics(template, params, X, y, sample_weight, where, kind)[0]


def _null_squares_of_block(template, params: dict, arg: tuple, X, y, sample_weight, where: str, index: int):
    mean_x, weight_exp, Q = arg
    data = _chunks.check_chunk(template, X, y, sample_weight, where)
    return _closed_form.null_squares(params, mean_x, weight_exp, data, Q)


def _cluster_null_squares(estimator, chunks: DaskChunks, state, Q: np.ndarray) -> float:
    """:func:`fastopt._closed_form.null_squares` of every block on the worker that holds it, summed there: the
    pivoted path's confirming pass (only ``Q`` and the means travel out, a float comes back)."""
    arg = delayed((state.mean[: state.n_features], state.weight_exp, Q), pure=True)
    return float(_reduce_blocks(estimator, chunks, _null_squares_of_block, arg, operator.add).compute())


def tree_merge(leaves: list[Delayed], merge=_closed_form.merge_states) -> Delayed:
    """Reduce ``leaves`` pairwise with ``merge``, level by level: depth log2(n), every merge on the cluster."""
    level = leaves
    while len(level) > 1:
        merged = [delayed(merge, pure=True)(a, b) for a, b in zip(level[::2], level[1::2])]
        level = merged + level[len(merged) * 2 :]
    return level[0]


def _reduce_blocks(estimator, chunks: DaskChunks, leaf, arg, merge=_closed_form.merge_states) -> Delayed:
    """``leaf(template, params, arg, X_i, y_i, w_i, where_i, i)`` for every block ``i`` on the worker that holds
    it, reduced by ``merge`` there too: the delayed merged value."""
    template_d = delayed(_sweeps.template(estimator), pure=True)
    params_d = delayed(estimator.get_params(), pure=True)
    leaves = [delayed(leaf, pure=True)(template_d, params_d, arg, *chunks.block(i), i) for i in range(len(chunks))]
    return tree_merge(leaves, merge)


def _cluster_state(estimator, chunks: DaskChunks, kind: str):
    """The merged closed-form statistics (``kind`` as in ``_chunks.STATISTICS``) of every block."""
    return _reduce_blocks(estimator, chunks, _state_of_block, kind).compute()


def _cluster_rate(estimator, chunks: DaskChunks, name: str, seed: int):
    """``learning_rate="auto"`` and the training weight of every block (:func:`fastopt._sweeps.sample_rate`),
    from the learning-rate sample (``_chunks.chunk_sample``) of every block, drawn, merged and used on the
    workers: only a float and the blocks' weight sums come back. When the blocks' row counts are known, each
    block sends on only its rows likely to be among the sample."""
    below = 1.0
    params = estimator.get_params()
    if chunks.rows is not None and not any(math.isnan(r) for r in chunks.rows):
        fraction = _chunks.validation_fraction(params)
        n_train = sum(n - _chunks.n_held_out(n, fraction) for n in chunks.rows)
        below = min(1.0, 2 * _iterative_lr.AUTO_ROWS / max(n_train, 1))
    leaf = functools.partial(_chunks.chunk_sample, below=below)
    merged = _reduce_blocks(estimator, chunks, leaf, seed, _chunks.merge_samples)
    return delayed(_sweeps.sample_rate, pure=True)(name, params, seed, merged).compute()


def _cluster_weight(estimator, chunks: DaskChunks, seed: int):
    """The training weight of every block (``_chunks.chunk_weight``), reduced on the workers from the
    ``sample_weight`` blocks alone; None without weights."""
    if chunks.w is None:
        return None
    fraction = _chunks.validation_fraction(estimator.get_params())
    # (a block of unknown size, after a boolean mask, has NaN rows: its weights' block gives the count, where
    # passing NaN raised "'float' object cannot be interpreted as an integer")
    rows = (None,) * len(chunks) if chunks.rows is None else [None if math.isnan(n) else n for n in chunks.rows]
    leaves = [delayed(_chunks.chunk_weight, pure=True)(seed, fraction, chunks.dtype, w, n, where, i)
              for i, (w, n, where) in enumerate(zip(chunks.w, rows, chunks.labels))]
    return tree_merge(leaves, _chunks.merge_weights).compute()


def _check_features(estimator, X: Any, reset: bool) -> None:
    """Set (``reset``) or check ``n_features_in_``/``feature_names_in_`` from ``X``'s metadata alone."""
    # scikit-learn reads feature names from pandas frames only: a Dask frame's empty pandas _meta has its columns.
    check_features(estimator, X._meta if _is_frame(X) else X, reset)


def active_client():
    """The ``dask.distributed`` client that Dask computes with now, or None (a local scheduler)."""
    if "distributed" not in sys.modules:  # no client can exist before distributed is imported
        return None
    from distributed import Client

    owner = getattr(dask.base.get_scheduler(), "__self__", None)
    return owner if isinstance(owner, Client) else None


class FitLost(RuntimeError):
    """A Dask fit lost the work of a pass and the cluster could not redo it (e.g. its worker kept dying)."""


# Consecutive blocks of an epoch's order passed on one worker before the state moves on (ClusterPasses): with
# bench/dask_scaling.py's 15 MiB blocks, 4 keeps both workers busy and 2 x 4 blocks ahead stay well within memory.
RUN = 4


class ClusterPasses:
    """A sweep on a ``dask.distributed`` cluster: each block's pass runs on the worker holding the block.

    The workers take the blocks of the order in turn, ``run`` consecutive blocks each; one task passes over a
    run's blocks in turn (:func:`fastopt._sweeps.block_pass`) on the worker that computed them, taking the
    previous run's future, so the small state travels worker to worker, once per run (each hop costs a few
    scheduler and network round trips, more than a pass over a small block), and every worker computes its
    next blocks while another passes over its own. Blocks are submitted a run at a time while fewer than
    ``lookahead`` are outstanding, so the next ones are computed while it runs but only a few
    blocks are alive at once (a whole epoch's blocks would not fit in the workers' memory). The client
    collects each run's result (the state and each block's :class:`fastopt._sweeps.ChunkRecord`, a few
    kilobytes) as it finishes.

    A worker lost mid-sweep costs only time: the scheduler recomputes the lost blocks from their graph and
    reruns the passes whose results were lost (every pass is a pure function of its inputs). If it cannot (a
    task's workers died ``distributed.scheduler.allowed-failures`` times), the sweep raises :class:`FitLost`
    naming the epoch and block, and nothing of the fit is kept.

    Parameters
    ----------
    client : distributed.Client
    chunks : DaskChunks
    checker : LinearRegressor
        The :func:`fastopt._sweeps.template` blocks are checked against (features already set).
    run : int, default=RUN
        Consecutive blocks of the order given to one worker.
    lookahead : int, optional
        A run is submitted while fewer blocks than this are outstanding; by default one run per worker, plus
        one.
    """

    indexable, one_shot = True, False

    def __init__(self, client, chunks: DaskChunks, checker, run: int = RUN, lookahead: int | None = None):
        self.client, self.chunks, self.checker = client, chunks, checker
        self.run_length = max(1, run)
        self.lookahead = max(1, len(client.nthreads()) * self.run_length + 1 if lookahead is None else lookahead)
        self.token = uuid.uuid4().hex
        # Each block's Delayed carries the graph of its whole collection: submitted with every block, that
        # graph would cost the client time and memory in the number of blocks per block. Materialised once
        # here, it is culled to each block's own tasks as the block is submitted.
        self.graph, seen = {}, set()
        for part in (*chunks.x, *chunks.y, *(chunks.w or ())):
            if id(part.dask) not in seen:
                seen.add(id(part.dask))
                self.graph.update(part.dask)
        self.weight_mean = None
        self.unweighted = None

    def __len__(self) -> int:
        return len(self.chunks)

    def check_epochs(self, n_epochs: int, label: str | None = None) -> None:
        pass

    def run(self, order, spec: _sweeps.PassSpec, state):
        client = self.client
        order = range(len(self.chunks)) if order is None else [int(i) for i in order]
        training = spec.epoch is not None
        tag = "score" if not training else f"{spec.epoch}" if spec.stream else "partial"
        previous = None if state is None else (state, [])
        window, records, last, ahead = deque(), [], state, 0
        workers = sorted(client.nthreads())
        try:
            for start in range(0, len(order), self.run_length):
                # Blocks are submitted a run at a time while fewer than ``lookahead`` are outstanding.
                while window and ahead >= self.lookahead:
                    ahead -= len(window[0][2])
                    last = self._collect(window[0], spec, records)
                    window.popleft()
                # A run of consecutive blocks of the order (each block's X, y and weights in one task) and one
                # task passing over them in turn go to one worker, the workers taken in turn: while one passes
                # over its run, the others compute theirs, and the state changes workers once per run. One task
                # per run, not per block: a worker's single thread, freed by a pass, starts computing a block
                # before the scheduler hands it the next pass, which then waits for that whole block (a
                # scheduler round trip and most of a block's computation per pass). The restriction is loose:
                # if that worker is lost, the scheduler recomputes the blocks, and runs the passes, elsewhere.
                worker = workers[start // self.run_length % len(workers)]
                place = {"workers": [worker], "allow_other_workers": True}
                indices = list(order[start:start + self.run_length])
                wheres, blocks = [], []
                for index in indices:
                    parts, where = self._block(index)
                    wheres.append(where)
                    blocks.append(client.compute(delayed(_together, pure=True)(*parts), optimize_graph=False,
                                                 **place))
                future = client.submit(_run_passes, previous if training else None, blocks, self.checker, spec,
                                       wheres, indices, key=f"fastopt-pass-{self.token}-{tag}-{start}",
                                       priority=1, **place)
                if training:
                    previous = future
                window.append((wheres, future, blocks))
                ahead += len(blocks)
            while window:
                last = self._collect(window[0], spec, records)
                window.popleft()
        except BaseException:  # an error, or an interrupt: stop the work still queued, and release it
            # (the run being collected stays in the window until it succeeds: popped first, a failing run's blocks
            # were never cancelled, and the error's traceback kept its futures, so its X and y blocks stayed in
            # the workers' memory after the fit, 6.5 MB for 4.8 MB of X, one key more each failed fit)
            client.cancel([f for _, future, blocks in window for f in (future, *blocks)])
            window.clear()
            raise
        return (last if training else state), records

    def plateau_gap(self, p, k: int, alpha: float, fit_intercept: bool, scale: float | None = None):
        """:func:`fastopt._sweeps.stream_gap` on the cluster: each pass computes every block where it lives and
        runs its part there (:func:`fastopt._sweeps.gap_pass`), the parts summed in a tree on the cluster; only
        ``d``-vectors travel, as in a Krylov fit's passes (each pass reads the blocks from their source)."""
        from fastopt import _krylov

        mean = self.weight_mean or 1.0

        def fused(target, v, c, shift, squares=False):
            v_d = delayed(v)  # one copy of the direction in the graph, shared by every block
            leaves = []
            for index in range(len(self.chunks)):
                parts, where = self._block(index)
                leaves.append(delayed(_sweeps.gap_pass, pure=True)(self.checker, *parts, where, target, v_d, c,
                                                                    shift, squares, mean))
            return tree_merge(leaves, _krylov.add).compute()

        return _sweeps.stream_gap(fused, p, k, alpha, fit_intercept, scale)

    def robust_gap(self, p, k: int, alpha: float, fit_intercept: bool, loss: str, epsilon: float,
                   scale: float | None = None):
        """:func:`fastopt._sweeps.stream_robust_gap` on the cluster, each pass as :meth:`plateau_gap`'s (every
        block's part, :func:`fastopt._sweeps.robust_part`, where it lives; the parts summed in a tree there)."""
        from fastopt import _krylov

        mean = self.weight_mean or 1.0

        def fused(mode, target, coef, intercept, mu, *args):
            shared = [delayed(a) if isinstance(a, np.ndarray) else a for a in (coef, *args)]
            leaves = []
            for index in range(len(self.chunks)):
                parts, where = self._block(index)
                leaves.append(delayed(_sweeps.robust_part, pure=True)(
                    self.checker, *parts, where, mean, loss, epsilon, target, shared[0], intercept, mu, mode,
                    *shared[1:]))
            return tree_merge(leaves, _krylov.add).compute()

        return _sweeps.stream_robust_gap(fused, p, k, alpha, fit_intercept, loss, epsilon, scale)

    def _block(self, index: int) -> tuple[list, str]:
        """Block ``index``'s X, y and weights (None) as delayed objects holding only their own tasks."""
        *parts, where = self.chunks.block(index)
        keys = [part.key for part in parts if part is not None]
        graph = cull(self.graph, keys)[0]
        return [None if part is None else Delayed(part.key, graph) for part in parts], where

    @staticmethod
    def _collect(item, spec, records: list):
        """Wait for one run's passes and keep their records; its blocks and future are released here."""
        wheres, future, blocks = item
        try:
            state, run_records = future.result()
        except Exception as exc:
            if not _lost(exc):
                raise
            # Name the block whose computation the cluster gave up, else the run's first block.
            where = next((w for w, b in zip(wheres, blocks) if b.status in ("error", "cancelled")), wheres[0])
            epoch = "scoring the last epoch" if spec.epoch is None else (
                f"epoch {spec.epoch + 1}" if spec.stream else "partial_fit")
            raise FitLost(
                f"{epoch}, {where}: the Dask cluster lost the pass over this block (or its input) and could not "
                f"redo it ({type(exc).__name__}: {exc}). The estimator is unchanged; fit again once the cluster "
                "is healthy."
            ) from exc
        records.extend(run_records)
        return state


def _run_passes(previous, blocks: list, checker, spec: _sweeps.PassSpec, wheres: list, indices: list) -> tuple:
    """The passes over a run of blocks in turn (:func:`fastopt._sweeps.block_pass`), from ``previous``, the
    previous run's result (None: start the fit, or a sweep that does not train): the last state and every
    block's record."""
    state, records = None if previous is None else previous[0], []
    for block, where, index in zip(blocks, wheres, indices):
        carry = _sweeps.block_pass(None if state is None else _sweeps.Carry(state, None), block, checker, spec,
                                   where, index)
        records.append(carry.record)
        if spec.epoch is not None:
            state = carry.state
    return state, records


def _together(X, y, sample_weight) -> tuple:
    return X, y, sample_weight


def _lost(exc: BaseException) -> bool:
    """Whether ``exc`` says the cluster lost work (a dead worker, a cancelled future), not that a pass failed."""
    import asyncio
    import concurrent.futures

    from distributed.comm import CommClosedError
    from distributed.scheduler import KilledWorker

    # distributed's FutureCancelledError derives from the asyncio one.
    return isinstance(exc, (KilledWorker, CommClosedError, asyncio.CancelledError, concurrent.futures.CancelledError))


def _passes(chunks: DaskChunks, checker):
    """Where a sweep runs: on the cluster when a ``dask.distributed`` client is active, else here."""
    active = active_client()
    if active is not None:
        return ClusterPasses(active, chunks, checker)
    return _sweeps.LocalPasses(_chunks.ChunkSource(chunks), checker, reset=False)


def _statistics_fit(params: dict, checker, name: str, chunks: DaskChunks, prior, y) -> Outcome:
    """The closed form: the blocks' statistics merged on the cluster, solved here (``prior``: no warm start)."""
    state = _cluster_state(checker, chunks, "fit")
    second_pass = lambda: _cluster_state(checker, chunks, "qr")  # noqa: E731
    krylov = None
    if params["solver"] == "auto" and chunks.sparse and not params["positive"]:
        # LSQR/CGLS on the blocks before the QR pass, which densifies them (as in memory: _closed_form)
        from fastopt import _krylov, _krylov_dask

        auto = {**params, _krylov.AUTO_KEY: True, _krylov.QR_FALLBACK_KEY: True}
        krylov = lambda: _krylov_dask.fit(auto, checker, _solvers.krylov_for(params["alpha"]),  # noqa: E731
                                          chunks, None)
    null_pass = functools.partial(_cluster_null_squares, checker, chunks, state)
    return Outcome(name, _sweeps.solve(checker.get_params(), state, second_pass, krylov, null_pass),
                   chunks.y_ndim == 1)


def _epochs_fit(params: dict, checker, name: str, chunks: DaskChunks, prior, y) -> Outcome:
    """An iterative solver: epochs of one pass per block, on the worker holding it."""
    sampler = lambda seed: _cluster_rate(checker, chunks, name, seed)  # noqa: E731
    weigher = lambda seed: _cluster_weight(checker, chunks, seed)  # noqa: E731
    dims = (checker.n_features_in_, 1 if chunks.y_ndim == 1 else y.shape[1])
    if prior is not None and (prior.dims != dims or prior.weights.dtype != chunks.dtype):
        prior = None  # as the in-memory warm start: another problem's state is not continued
    return _sweeps.Epochs(params, name, _passes(chunks, checker)).run(prior, sampler, weigher)


def _passes_fit(params: dict, checker, name: str, chunks: DaskChunks, prior, y) -> Outcome:
    """A Krylov solver: one distributed pass per iteration (:mod:`fastopt._krylov_dask`)."""
    from fastopt import _krylov_dask

    return _krylov_dask.fit(params, checker, name, chunks, prior)


# How each kind of solver (fastopt._result.Solver.chunked) fits Dask blocks.
FITS = {"statistics": _statistics_fit, "epochs": _epochs_fit, "passes": _passes_fit}


def fit(estimator, X: Any, y: Any, sample_weight: Any, warm_state: Callable[[str], Any]) -> Outcome:
    """``LinearRegressor.fit`` on Dask collections (parameters already validated by ``fit``): the
    :class:`fastopt._result.Outcome` for the estimator to take; ``warm_state(name)`` is the state a warm start
    continues from. Nothing here writes to the estimator."""
    chunks = DaskChunks(X, y, sample_weight)
    sparse_blocks = chunks.sparse
    name = _solvers.resolve(estimator.solver, estimator.loss, X, estimator.alpha, sparse=sparse_blocks,
                            positive=bool(estimator.positive), average=estimator.average)
    # A solver that cannot fit chunks may still fit this loss on Dask blocks by its own distributed passes
    # (Newton: Solver.dask_losses, fit_dask).
    own = estimator.loss in _solvers.SOLVERS[name].dask_losses
    if not _solvers.SOLVERS[name].incremental and not own:  # "auto" picks, as fit_stream does, one that streams
        name = _solvers.resolve(estimator.solver, estimator.loss, incremental=True, sparse=sparse_blocks,
                                average=estimator.average)
    solver = _solvers.SOLVERS[name]
    if not own:
        solver.check_incremental()  # e.g. Newton's absolute error: every iteration reads all rows (a clear error)
    # before any pass reads the options, with the target count where y's metadata knows it (a per-target alpha of
    # the wrong length was refused only after every block had been computed)
    _solvers.check_options(name, estimator.get_params(), known_targets(y), where="dask")
    checker = _sweeps.template(estimator)
    _check_features(checker, X, reset=True)
    params = estimator.get_params()
    if (estimator.solver == "auto" and solver.chunked == "statistics" and sparse_blocks
            and _solvers.krylov_first_shape(X.shape, bool(estimator.positive))):
        # as fit in memory (fastopt._solvers.krylov_first): LSQR/CGLS first, judged on all blocks once validated
        from fastopt import _krylov, _krylov_dask

        krylov = _solvers.krylov_for(estimator.alpha)
        outcome = _krylov_dask.fit({**params, _krylov.AUTO_KEY: True}, checker, krylov, chunks, warm_state(krylov))
        if outcome is not None:
            return dataclasses.replace(outcome, checked=checker)
    if own:
        outcome = Outcome(name, solver.fit_dask(params, checker, chunks, warm_state(name)), chunks.y_ndim == 1)
    else:
        outcome = FITS[solver.chunked](params, checker, name, chunks, warm_state(name), y)
    return dataclasses.replace(outcome, checked=checker)


def partial_fit(estimator, X: Any, y: Any, sample_weight: Any, name: str, first: bool, prior) -> Outcome:
    """``LinearRegressor.partial_fit`` on Dask collections: every block once, in order, continuing ``prior``
    (the previous calls' state unless ``first``) with solver ``name``; returns the
    :class:`fastopt._result.Outcome`.

    The closed form merges the blocks' statistics on the cluster, then into the previous state; an
    iterative solver makes one ``partial_fit`` pass over each block, on the worker holding it (each block's
    weights divided by their own mean, as a ``partial_fit`` call's are).
    """
    chunks = DaskChunks(X, y, sample_weight)
    checker = _sweeps.template(estimator)
    _check_features(checker, X, reset=first)
    blocks = _for_blocks(checker, X)
    solver = _solvers.SOLVERS[name]
    solver.check_incremental()
    if solver.chunked == "passes":  # a Krylov solver refits this call's rows from the previous coefficients
        return dataclasses.replace(_passes_fit(estimator.get_params(), blocks, name, chunks, prior, y),
                                   checked=checker)
    if solver.chunked != "statistics":
        return _sweeps.partial_sweep(_passes(chunks, blocks), name, estimator.get_params(), prior, checker)
    # (a prior Gram without R would drop the blocks' R factors: their Gram alone, as for a fit)
    state = _cluster_state(blocks, chunks, "fit" if _closed_form.gram_only(prior) else "partial")
    if prior is not None:
        state = _closed_form.merge_states(prior, state)
    params = checker.get_params()
    # after a pivoted solve the blocks are read again for the null space's check
    result = _closed_form.pivoted_after(params, prior, state,
                                        functools.partial(_cluster_null_squares, blocks, chunks, state))
    if result is None:
        result = _sweeps.solve(params, state)
    return Outcome(name, result, chunks.y_ndim == 1, checker)


def _prediction_dtype(X: Any, coef: np.ndarray) -> np.dtype:
    """The dtype ``predict`` gives for ``X`` (a Dask or pandas frame: float32 where its NumPy columns' common type is,
    as validation casts it (float32 beside bool, int8 or float16 columns), else float64, as for pandas' own
    nullable dtypes; an array: its own) and the coefficients."""
    if hasattr(X, "dtypes"):  # per-column dtypes (a Dask DataFrame's declared metadata, a partition's own)
        dtypes = list(X.dtypes)
        # (all float32 only: beside a bool column the blocks were float32 while the lazy result declared float64)
        numpy = bool(dtypes) and all(isinstance(t, np.dtype) for t in dtypes)
        x_dtype = np.float32 if numpy and np.result_type(*dtypes) == np.float32 else np.float64
    else:
        x_dtype = getattr(X, "dtype", np.float64)
    return np.result_type(np.float32 if x_dtype == np.float32 else np.float64, coef.dtype)


def _predict_block(block, estimator) -> np.ndarray:
    if block.shape[0] == 0:  # an empty block (a mask's, a filtered partition's) predicts nothing, as fit skips it
        coef = np.asarray(estimator.coef_)
        return np.empty((0, *coef.shape[:-1]), dtype=_prediction_dtype(block, coef))
    return estimator.predict(block)


def _for_blocks(estimator, X: Any):
    """A copy of ``estimator`` (or a fit's checker) to predict or check ``X``'s blocks with, once its features are
    checked on ``X``'s metadata: with the frame's own column names, or without names for an array's blocks, so
    that a names mismatch warns once a call (the metadata check's), not once a block (9 times on 8 blocks, in
    predict, score and partial_fit)."""
    blocks = copy.copy(estimator)
    if _is_frame(X):
        blocks.feature_names_in_ = np.asarray(X.columns, dtype=object)
    elif hasattr(blocks, "feature_names_in_"):
        del blocks.feature_names_in_
    return blocks


def _score_block(block, y, w, estimator) -> tuple:
    """One block's part of R^2: its total weight, the targets' weighted means and centred squares, and the
    weighted squared residuals of ``estimator``'s predictions (per target)."""
    p = np.asarray(_predict_block(block, estimator), dtype=np.float64)
    Y = np.asarray(y, dtype=np.float64).reshape(p.shape[0], -1)
    P = p.reshape(Y.shape)
    w = np.ones(Y.shape[0]) if w is None else np.asarray(w, dtype=np.float64).reshape(-1)
    W = float(w.sum())
    mean = (w @ Y) / W if W > 0 else np.zeros(Y.shape[1])
    return W, mean, w @ (Y - mean) ** 2, w @ (Y - P) ** 2


def _merge_scores(a: tuple, b: tuple) -> tuple:
    """Two blocks' parts merged (the weighted pairwise update of Chan, Golub & LeVeque: no sum of squares of
    uncentred targets, which cancels)."""
    (Wa, ma, Ma, Sa), (Wb, mb, Mb, Sb) = a, b
    W = Wa + Wb
    if not W > 0:
        return W, ma, Ma + Mb, Sa + Sb
    delta = mb - ma
    return W, ma + delta * (Wb / W), Ma + Mb + delta**2 * (Wa * Wb / W), Sa + Sb


def score(estimator, X: Any, y: Any, sample_weight: Any = None) -> float:
    """``RegressorMixin.score`` (R^2, averaged uniformly over the targets, as ``r2_score``) on Dask collections,
    computed block by block where the blocks live: scikit-learn's own asks ``len()`` of collections whose row
    counts are unknown (a Dask DataFrame's), and failed where ``fit`` and ``predict`` work."""
    check_is_fitted(estimator)
    _check_features(estimator, X, reset=False)
    chunks = DaskChunks(X, y, sample_weight)
    blocks_estimator = _for_blocks(estimator, X)
    leaves = [delayed(_score_block, pure=True)(*chunks.block(i)[:3], blocks_estimator) for i in range(len(chunks))]
    W, _, total, residual = tree_merge(leaves, _merge_scores).compute()
    if not W > 0:
        raise ValueError("score needs rows of positive weight; the Dask collections have none.")
    # r2_score's force_finite: a constant target scores 1 when predicted exactly, else 0
    with np.errstate(divide="ignore", invalid="ignore"):
        r2 = np.where(total > 0, 1.0 - residual / np.where(total > 0, total, 1.0), np.where(residual == 0, 1.0, 0.0))
    return float(np.mean(r2))


def release(collections: list) -> None:
    """Cancel the futures behind persisted Dask collections on a ``distributed`` cluster (without one, dropping the
    references frees them). A failed fit calls it: the error's traceback holds the frames that hold the blocks,
    and ``distributed`` keeps the errored task's exception, so the validated X and y blocks had stayed in the
    workers' memory after the fit (4.9 MB for 4.8 MB of X) until the same keys were computed again."""
    try:
        from distributed import futures_of
    except ImportError:
        return
    futures = [f for c in collections for f in futures_of(c)]
    if futures:
        futures[0].client.cancel(futures)


def known_targets(y: Any) -> int | None:
    """The number of target columns of ``y`` where its metadata says (1 for 1-D), else None."""
    if _is_frame(y):
        return len(y.columns) if hasattr(y, "columns") else 1  # (a Dask Series: one target)
    shape = getattr(y, "shape", None)
    if shape is None:
        return None
    if len(shape) == 1:
        return 1
    return int(shape[1]) if len(shape) == 2 and not math.isnan(shape[1]) else None


def predict(estimator, X: Any):
    """Lazy ``predict``: a Dask array of predictions, one block per row block of ``X``; nothing is computed."""
    check_is_fitted(estimator)
    _check_collection("X", X, (2,))
    _check_features(estimator, X, reset=False)
    coef = np.asarray(estimator.coef_)
    # (a frame's lazy result takes its shape from meta: (0, 0) declared 0 targets for a multi-target model)
    meta = np.empty((0,) if coef.ndim == 1 else (0, coef.shape[0]), dtype=_prediction_dtype(X, coef))
    estimator = _for_blocks(estimator, X)
    if _is_frame(X):
        # (each partition keeps the frame's column names, which its check then finds as the copy's)
        return X.map_partitions(_predict_block, estimator, meta=meta)
    X = X.rechunk({1: -1})
    if coef.ndim == 1:
        return X.map_blocks(_predict_block, estimator, drop_axis=1, meta=meta)
    return X.map_blocks(_predict_block, estimator, chunks=(X.chunks[0], (coef.shape[0],)), meta=meta)
