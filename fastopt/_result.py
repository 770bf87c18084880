"""The value every solver returns to the estimator (a leaf module, so solvers can import it)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class FitResult:
    """What a solver hands back to the estimator.

    Attributes
    ----------
    coef : ndarray of shape (n_targets, n_features)
    intercept : ndarray of shape (n_targets,)
    state : object
        Opaque solver state, kept on the estimator for ``partial_fit`` and ``warm_start``.
    attrs : dict
        Further fitted attributes to set on the estimator (names end in ``_``, e.g. ``n_iter_``,
        ``loss_curve_``, ``solver_``).
    """

    coef: np.ndarray
    intercept: np.ndarray
    state: Any = None
    attrs: dict = field(default_factory=dict)
