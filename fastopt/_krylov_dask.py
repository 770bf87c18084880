"""Krylov solvers (``solver="cg"``/``"lsqr"``) on Dask arrays: one distributed pass per iteration.

Each row block, dense or ``scipy.sparse`` (kept as CSR, never densified), is validated once, on the worker that
holds it, into a :class:`fastopt._validation.Data` that stays there (``dask.persist``: the blocks are read from
their source once, not once per iteration; a CSR block's structure is checked then, not by every pass). Every pass of
:func:`fastopt._krylov.solve` then runs the compiled fused kernel on each block where it lives and reduces the
blocks' sums in a balanced binary tree on the cluster (:func:`fastopt._dask.tree_merge`); only ``d``-vectors
travel: the direction out to the blocks, one ``d``-vector and two numbers back from the tree's root.
"""
from __future__ import annotations

import dask
from dask.delayed import delayed

from fastopt import _chunks, _dask, _krylov, _sweeps
from fastopt._result import Outcome
from fastopt._validation import aligned


def _validated(template, X, y, sample_weight, where: str):
    data = _chunks.check_chunk(template, X, y, sample_weight, where)
    _krylov.check_structure(data)  # once per block, not in every pass
    return data


def _moments(data, centred: bool):
    return _krylov.chunk_moments(aligned(data), centred)  # (a persisted block may arrive unpickled unaligned)


def _spread(data, cols, m):
    return _krylov.chunk_spread(data, cols, m)


def _fused(data, target: int, v, c: float, shift: float):
    data = aligned(data)  # (as _moments)
    return _krylov.chunk_pass(data, _krylov._sqrt_weight(data.sample_weight), target, v, c, shift, checked=True)


class DaskPasses:
    """:class:`fastopt._krylov.Passes` over persisted, validated Dask row blocks."""

    def __init__(self, checker, chunks: _dask.DaskChunks):
        template = delayed(_sweeps.template(checker), pure=True)
        leaves = [delayed(_validated, pure=True)(template, *chunks.block(i)) for i in range(len(chunks))]
        self.blocks = list(dask.persist(*leaves))

    def release(self) -> None:
        """Cancel the persisted blocks on the cluster (a failed fit's, see :func:`fastopt._dask.release`)."""
        _dask.release(self.blocks)
        self.blocks = []

    def moments(self, centred: bool) -> _krylov.Moments:
        return _dask.tree_merge([delayed(_moments)(b, centred) for b in self.blocks], _krylov.add).compute()

    def fused(self, target: int, v, c: float, shift: float) -> _krylov.Pass:
        v_d = delayed(v)  # one copy of the direction in the graph, shared by every block
        leaves = [delayed(_fused, pure=True)(b, target, v_d, c, shift) for b in self.blocks]
        return _dask.tree_merge(leaves, _krylov.add).compute()

    def spread(self, cols, m) -> _krylov.Spread:
        leaves = [delayed(_spread, pure=True)(b, cols, m) for b in self.blocks]
        return _dask.tree_merge(leaves, _krylov.add).compute()


def _size(data) -> tuple[int, int, int]:
    return data.X.shape[0], data.X.nnz, data.Y.shape[1]


def fit(params: dict, checker, name: str, chunks: _dask.DaskChunks, state) -> Outcome | None:
    """``LinearRegressor.fit`` on Dask collections with a Krylov solver (``checker``: the estimator template
    holding the features, already checked), from ``state`` under ``warm_start``.

    With ``params[AUTO_KEY]`` (``solver="auto"`` on sparse blocks, :func:`fastopt._dask.fit`): to
    ``AUTO_TOL`` within the iterations the closed form would cost (:func:`fastopt._krylov.closed_form_iterations`
    of all blocks, once they are validated; with ``QR_FALLBACK_KEY`` its QR fallback, see
    :func:`fastopt._krylov.auto_iterations`), else None: the caller fits the closed form instead."""
    passes = DaskPasses(checker, chunks)
    try:
        if not params.get(_krylov.AUTO_KEY):
            return Outcome(name, _krylov.cast(_krylov.solve(name, params, passes, state), chunks.dtype),
                           chunks.y_ndim == 1)
        sizes = dask.compute(*[delayed(_size)(b) for b in passes.blocks])
        rows, stored, k = sum(size[0] for size in sizes), sum(size[1] for size in sizes), sizes[0][2]
        d = checker.n_features_in_
        budget = _krylov.auto_iterations(params, rows, d, stored, k, blocks=len(passes.blocks))
        if budget is None:
            return None
        result = _krylov.solve(name, _krylov.auto_params(params, budget), passes, state, quiet=True)
        return None if result is None else Outcome(name, _krylov.cast(result, chunks.dtype), chunks.y_ndim == 1)
    except BaseException:  # (an error, or an interrupt: the persisted blocks are released)
        passes.release()
        raise
