"""What every solver declares and returns to the estimator (a leaf module, so solvers can import it).

:class:`Solver` is the base of every registry entry of :mod:`fastopt._solvers`: it declares what the entry
supports, with the conservative defaults, so that no caller tests a solver's name or its module. A solver
returns a :class:`FitResult`; a fit over chunks (:mod:`fastopt._streaming`, :mod:`fastopt._dask`) returns an
:class:`Outcome`, which the estimator alone turns into its fitted attributes.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

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


@dataclass
class Outcome:
    """What a fit over chunks (a stream, or Dask blocks) hands back to the estimator.

    Attributes
    ----------
    name : str
        The registry key of the solver that ran.
    result : FitResult
    y_was_1d : bool
        Whether ``y`` was one-dimensional (``coef_`` is then 1-D).
    checked : object or None
        The estimator template the chunks were checked against (:func:`fastopt._sweeps.template`), holding
        the feature count and names the estimator takes; None when the estimator itself holds them.
    """

    name: str
    result: FitResult
    y_was_1d: bool
    checked: Any = None


class Solver:
    """Base of the registry entries: what a solver supports, declared once (defaults: the least).

    Attributes
    ----------
    losses : frozenset of str
        The ``loss=`` values it fits.
    supports_sparse : bool
        ``fit``/``partial_fit`` accept ``data.X`` as a canonical ``scipy.sparse`` CSR matrix.
    per_target_alpha, positive, averages, accepts_init : bool
        Whether it honours an array ``alpha`` (one per target), ``positive=True``, ``average``, and
        ``coef_init``/``intercept_init``.
    chunked : {"statistics", "epochs", "passes"} or None
        How it fits rows that arrive in chunks (``fit_stream``, Dask arrays): merged sufficient statistics
        solved once (closed form), epochs of one ``partial_fit`` pass per chunk (iterative rules), or one read
        of every chunk per iteration (Krylov). None: it cannot (every iteration needs all rows in memory), and
        ``partial_fit`` is not available either.
    forms_ridge : bool
        It forms the ridge ``alpha W`` (``W`` the total sample weight) in float64: the normal equations'
        ``G + alpha W I``, the Krylov damping, Newton's system; a product beyond float64's range is a
        ``ValueError`` before the fit (the iterative rules take ``alpha`` per mean and need no such bound).
    dask_losses : frozenset of str
        Losses it fits on (dense) Dask arrays by its own distributed passes (``fit_dask(params, checker, chunks,
        state) -> FitResult``) although it cannot fit chunks incrementally (Newton's Huber loss); ``"auto"`` then
        keeps it on Dask arrays.
    """

    losses: ClassVar[frozenset[str]] = frozenset()
    supports_sparse: ClassVar[bool] = False
    per_target_alpha: ClassVar[bool] = False
    positive: ClassVar[bool] = False
    averages: ClassVar[bool] = False
    accepts_init: ClassVar[bool] = False
    chunked: ClassVar[str | None] = None
    dask_losses: ClassVar[frozenset[str]] = frozenset()
    forms_ridge: ClassVar[bool] = False
    name: str = ""  # the solver= value(s) it answers to, for messages

    @property
    def incremental(self) -> bool:
        """Whether ``partial_fit``, ``fit_stream`` and Dask arrays are available."""
        return self.chunked is not None

    def prepare(self, params: dict, X, y):
        """Work to start before the input is validated, on the caller's ``X`` and ``y``, passed back to ``fit``
        as ``prepared=`` (which then owns it); an object with ``release()``, or None (the default: nothing)."""
        return None

    def checks_finite_X(self, params: dict) -> bool:
        """Whether its ``fit`` reports non-finite ``X`` itself, so validation may skip that pass over ``X``."""
        return False

    def checks_finite_y(self, params: dict) -> bool:
        """Whether its ``fit`` reports non-finite ``y`` itself, so validation may skip that pass over ``y``."""
        return False

    def checks_indices(self, params: dict) -> bool:
        """Whether its ``fit`` on CSR ``X`` first reads every column index through a kernel that refuses one out
        of range before anything reads through it, and then names the fault as validation would, so validation
        may skip that pass over the indices."""
        return False

    def check_incremental(self) -> None:
        """Raise the solver's own ValueError when it cannot fit rows that arrive in chunks."""
        if not self.incremental:
            raise ValueError(f"{self.name!r} cannot fit incrementally (partial_fit, fit_stream or Dask arrays).")
