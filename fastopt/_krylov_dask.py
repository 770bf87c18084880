"""Krylov solvers (``solver="cg"``/``"lsqr"``) on Dask arrays: one distributed pass per iteration.

Each row block is validated once, on the worker that holds it, into a :class:`fastopt._validation.Data` that
stays there (``dask.persist``: the blocks are read from their source once, not once per iteration). Every pass of
:func:`fastopt._krylov.solve` then runs the compiled fused kernel on each block where it lives and reduces the
blocks' sums in a balanced binary tree on the cluster (:func:`fastopt._dask.tree_merge`); only ``d``-vectors
travel: the direction out to the blocks, one ``d``-vector and two numbers back from the tree's root.
"""
from __future__ import annotations

import dask
from dask.delayed import delayed

from fastopt import _chunks, _dask, _krylov, _sweeps
from fastopt._result import Outcome


def _validated(template, X, y, sample_weight, where: str):
    return _chunks.check_chunk(template, X, y, sample_weight, where)


def _moments(data):
    return _krylov.chunk_moments(data)


def _fused(data, target: int, v, c: float, shift: float):
    return _krylov.chunk_pass(data, _krylov._sqrt_weight(data.sample_weight), target, v, c, shift)


class DaskPasses:
    """:class:`fastopt._krylov.Passes` over persisted, validated Dask row blocks."""

    def __init__(self, checker, chunks: _dask.DaskChunks):
        template = delayed(_sweeps.template(checker), pure=True)
        leaves = [delayed(_validated, pure=True)(template, *chunks.block(i)) for i in range(len(chunks))]
        self.blocks = list(dask.persist(*leaves))

    def moments(self) -> _krylov.Moments:
        return _dask.tree_merge([delayed(_moments)(b) for b in self.blocks], _krylov.add).compute()

    def fused(self, target: int, v, c: float, shift: float) -> _krylov.Pass:
        v_d = delayed(v)  # one copy of the direction in the graph, shared by every block
        leaves = [delayed(_fused, pure=True)(b, target, v_d, c, shift) for b in self.blocks]
        return _dask.tree_merge(leaves, _krylov.add).compute()


def fit(params: dict, checker, name: str, chunks: _dask.DaskChunks, state) -> Outcome:
    """``LinearRegressor.fit`` on Dask collections with a Krylov solver (``checker``: the estimator template
    holding the features, already checked), from ``state`` under ``warm_start``."""
    passes = DaskPasses(checker, chunks)
    result = _krylov.cast(_krylov.solve(name, params, passes, state), chunks.dtype)
    return Outcome(name, result, chunks.y_ndim == 1)
