"""The solver registry: one entry per ``solver=`` name, no if-chain.

A solver takes the estimator's hyperparameters and validated data, and returns a
:class:`fastopt._result.FitResult`; it owns allocation, randomness, epochs, schedules, stopping and convergence.
The estimator owns only the sklearn API.

Protocol (duck-typed; see ``_closed_form`` and ``_iterative``)::

    solver.losses -> frozenset[str]
        The ``loss=`` values it fits.
    solver.supports_sparse -> bool
        Whether ``fit``/``partial_fit`` accept ``data.X`` as a canonical ``scipy.sparse`` CSR matrix; validation
        refuses sparse input with a TypeError for a solver that does not.
    solver.checks_finite_X(params) -> bool
        Whether its ``fit`` reports non-finite ``X`` itself, so validation may skip that pass over ``X``.
    solver.fit(params, data, state=None) -> FitResult
        A full fit. ``state`` is the previous fit's state when ``warm_start`` applies, else None.
    solver.partial_fit(params, data, state=None) -> FitResult
        One incremental update: a closed-form solver merges sufficient statistics, an iterative one makes one
        pass over the given rows (placed in an epoch of a streamed fit by an optional ``sweep``). ``state`` is
        None on the first call.
    solver.fit_dask(params, checker, chunks, state) -> FitResult   (optional)
        A full fit on Dask blocks (:class:`fastopt._dask.DaskChunks`; ``checker`` validates blocks), for a
        solver with its own cluster path; without it, ``fit`` on Dask runs the closed form's or the iterative
        solvers' path of :mod:`fastopt._dask`.

``params`` is ``estimator.get_params()``; ``data`` is a :class:`fastopt._validation.Data`.
"""
from __future__ import annotations

from typing import Any

from fastopt import _closed_form, _iterative


SOLVERS: dict[str, Any] = {**_closed_form.SOLVERS, **_iterative.SOLVERS}

# "auto": the exact closed form when the loss allows it, else the most forgiving iterative rule.
AUTO = {"squared_error": "normal", "absolute_error": "adam", "huber": "adam"}


def resolve(solver: str, loss: str) -> str:
    """The registry key that ``solver=`` names for ``loss``; raises ValueError on an impossible pair."""
    name = AUTO[loss] if solver == "auto" else solver
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


def supports_sparse(name: str) -> bool:
    """Whether the registry entry ``name`` fits sparse ``X``."""
    return bool(getattr(SOLVERS[name], "supports_sparse", False))


def sparse_solvers() -> list[str]:
    """The ``solver=`` names that accept sparse ``X``."""
    return sorted(name for name in SOLVERS if supports_sparse(name))
