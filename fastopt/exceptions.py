"""Warnings and errors that fastopt raises, importable by users for filtering and catching."""
import contextlib
import contextvars
import os
import sys
import warnings

import joblib
import sklearn
from sklearn.exceptions import ConvergenceWarning


class IllConditionedWarning(UserWarning):
    """A closed-form answer is qualified by the conditioning of the data.

    Raised (at most once per fit) when the coefficients are not the full-accuracy least-squares solution that a
    well-conditioned design gets: the minimum-norm solution of a rank-deficient design
    (:class:`RankDeficientWarning`, a subclass), or an eigensolve of normal equations too ill-conditioned for
    Cholesky when the rows cannot be read a second time (a one-shot stream). Switching from Cholesky to QR is not
    warned about: it loses no accuracy, and the fitted ``solver_``, ``rcond_`` and ``rank_`` report it. Silence
    with ``warnings.simplefilter("ignore", IllConditionedWarning)``.
    """


class RankDeficientWarning(IllConditionedWarning):
    """The centred, weighted design is rank-deficient to working precision (``rank_ < n_features_in_``).

    The coefficients are then the minimum-norm least-squares solution, as from ``numpy.linalg.lstsq`` (Golub &
    Van Loan, *Matrix Computations*, 4th ed., 2013, sec. 5.5): one of infinitely many minimisers, which changes if
    a dependent column is dropped or rescaled. The dummy-variable trap (one-hot columns with an intercept) is the
    common case. Silence with ``warnings.simplefilter("ignore", RankDeficientWarning)``.
    """


class DivergenceError(FloatingPointError, ValueError):
    """An iterative solver's loss became non-finite or exploded; the message names the epoch."""


# Frames a warning passes over to reach the line that called fastopt: fastopt's own, scikit-learn's (its fit
# wrapper, Pipeline, GridSearchCV) and joblib's (GridSearchCV's sequential loop), whose depth below that line
# differs by entry point.
_INTERNAL = tuple(os.path.dirname(os.path.abspath(path)) + os.sep
                  for path in (__file__, sklearn.__file__, joblib.__file__))


# The list that _warn appends to instead of warning, in this context (_held), or None.
_HELD = contextvars.ContextVar("fastopt_held_warnings", default=None)


@contextlib.contextmanager
def _held(into: list):
    """Within the block, this context's :func:`_warn` calls append ``(message, category)`` to ``into`` instead of
    warning, for the caller to warn later or drop (``warnings.catch_warnings`` would change the process's filters,
    which other threads share)."""
    token = _HELD.set(into)
    try:
        yield into
    finally:
        _HELD.reset(token)


def _warn(message: str, category: type[Warning]) -> None:
    """``warnings.warn`` attributed to the first caller outside fastopt, scikit-learn and joblib (the user's ``fit``,
    ``pipeline.fit`` or ``search.fit`` line), so that the message names it and filters by module match it; held
    instead within :func:`_held`."""
    if (held := _HELD.get()) is not None:
        held.append((message, category))
        return
    frame, level = sys._getframe(1), 2
    while frame.f_back is not None and frame.f_code.co_filename.startswith(_INTERNAL):
        frame, level = frame.f_back, level + 1
    warnings.warn(message, category, stacklevel=level)


__all__ = ["ConvergenceWarning", "DivergenceError", "IllConditionedWarning", "RankDeficientWarning"]
