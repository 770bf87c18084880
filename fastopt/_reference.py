"""Pure-NumPy twins of every kernel in :mod:`fastopt._kernels`.

Same names, same arguments, same outputs (written into the same output arrays); each mirrors its compiled
twin step for step so tests/test_parity.py can compare them after identical inputs. Slow by design: clarity
over speed.
"""
from __future__ import annotations

import numpy as np

# ---------------------------------------------------------------- closed form


def gram_stats(X, Y, sample_weight, mean, gram, block_rows):
    """Twin of :func:`fastopt._kernels.gram_stats` (csrc/gram.c): same blocks, same merges, in NumPy.

    Weighted, centred sufficient statistics of ``Z = [X, Y]``, accumulated in float64: ``mean`` receives the
    weighted column means, ``gram`` the centred weighted cross-products ``sum_i w_i (z_i - mean)(z_i - mean)^T``;
    returns ``sum_i w_i``.
    """
    weight = 0.0
    mean[:] = 0.0
    gram[:] = 0.0
    for i0 in range(0, X.shape[0], block_rows):
        Z = np.hstack([X[i0 : i0 + block_rows], Y[i0 : i0 + block_rows]]).astype(np.float64)
        w = np.ones(Z.shape[0]) if sample_weight is None else sample_weight[i0 : i0 + block_rows].astype(np.float64)
        wb = w.sum()
        if wb == 0.0:
            continue
        mb = (w @ Z) / wb
        Zc = np.sqrt(w)[:, None] * (Z - mb)
        # Chan, Golub & LeVeque: M_ab = M_a + M_b + (w_a w_b / w_ab) delta delta^T, delta = mean_b - mean_a.
        delta = mb - mean
        gram += Zc.T @ Zc + (weight * wb / (weight + wb)) * np.outer(delta, delta)
        mean += (wb / (weight + wb)) * delta
        weight += wb
    return weight

# ---------------------------------------------------------------- optimizers
