"""Iterative least squares: minibatch epochs over the fused compiled kernels."""
from __future__ import annotations

from typing import NamedTuple


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
        A minibatch mean loss above this is divergence (see ``_divergence_limit``).
    """

    batch_size: int
    loss: int
    epsilon: float
    clip_norm: float | None
    loss_limit: float


SOLVERS: dict = {}
