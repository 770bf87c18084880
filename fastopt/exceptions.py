"""Warnings and errors that fastopt raises, importable by users for filtering and catching."""
from sklearn.exceptions import ConvergenceWarning


class IllConditionedWarning(UserWarning):
    """The closed form switched from Cholesky to a path that does not square the condition number."""


class DivergenceError(FloatingPointError, ValueError):
    """An iterative solver's loss became non-finite or exploded; the message names the epoch."""


__all__ = ["ConvergenceWarning", "DivergenceError", "IllConditionedWarning"]
