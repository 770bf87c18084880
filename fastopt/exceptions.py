"""Warnings and errors that fastopt raises, importable by users for filtering and catching."""
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


__all__ = ["ConvergenceWarning", "DivergenceError", "IllConditionedWarning", "RankDeficientWarning"]
