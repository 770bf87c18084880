"""Input checks with clear messages.

Arrays leave this module C-contiguous, float32 or float64, finite (``X`` only if asked: see ``finite_X``), with
matching lengths; later layers trust
that and re-check nothing. Nothing here writes into the caller's arrays: a conversion copies, a pass-through
is only ever read.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.utils.validation import _assert_all_finite, _check_sample_weight, validate_data

FLOAT_DTYPES = (np.float64, np.float32)


@dataclass(frozen=True)
class Data:
    """Validated training data.

    Attributes
    ----------
    X : ndarray of shape (n_samples, n_features), C-contiguous float32/float64
    Y : ndarray of shape (n_samples, n_targets), C-contiguous, same dtype as X
    sample_weight : ndarray of shape (n_samples,) or None
        Non-negative and finite, same dtype as X. None means unit weights.
    y_was_1d : bool
        Whether the caller passed a 1-D target (coefficients are then returned 1-D).
    """

    X: np.ndarray
    Y: np.ndarray
    sample_weight: np.ndarray | None
    y_was_1d: bool


def _reject_complex(name, a):
    # Read the dtype without calling NumPy functions on the object itself: array-likes that only offer
    # __array__ (as scikit-learn's checks pass) refuse __array_function__.
    dtype = getattr(a, "dtype", None)
    if not isinstance(dtype, np.dtype):
        try:
            dtype = np.asarray(a).dtype
        except (TypeError, ValueError):
            return  # ragged or odd input: validate_data gives the precise message
    if np.issubdtype(dtype, np.complexfloating):
        # ValueError with scikit-learn's wording, so callers and its estimator checks see the usual error.
        raise ValueError(
            f"Complex data not supported: {name} has a complex dtype; fastopt fits real-valued least squares only."
        )


def check_fit_data(estimator, X, y, sample_weight=None, *, reset=True, finite_X=True) -> Data:
    """Validate ``X``, ``y`` and ``sample_weight`` for ``fit``/``partial_fit``.

    Parameters
    ----------
    estimator : BaseEstimator
        Receives ``n_features_in_`` and ``feature_names_in_`` (when ``reset``), or is checked against them.
    X : array-like of shape (n_samples, n_features)
    y : array-like of shape (n_samples,) or (n_samples, n_targets)
    sample_weight : array-like of shape (n_samples,), float, or None
    reset : bool
        True on a fresh fit; False on a later ``partial_fit``, where the feature count must match.
    finite_X : bool
        Check that ``X`` is finite. A solver whose kernel sees every element of ``X`` and reports non-finite
        input itself (``solver="normal"``: its statistics are non-finite exactly when ``X`` is) passes False to
        save a full extra pass over ``X``. The check is kept whenever a weight is zero, since such rows may be
        skipped by the kernel.

    Returns
    -------
    Data
    """
    _reject_complex("X", X)
    _reject_complex("y", y)
    X, y = validate_data(
        estimator,
        X,
        y,
        reset=reset,
        accept_sparse=False,
        dtype=list(FLOAT_DTYPES),
        order="C",
        multi_output=True,
        y_numeric=True,
        ensure_all_finite=finite_X,
    )
    # validate_data has checked y (finite, numeric, at least one target column) whatever finite_X says;
    # _check_sample_weight below checks the weights' finiteness and sign.
    y = np.asarray(y)
    y_was_1d = y.ndim == 1
    # The target takes X's dtype so the kernels see one floating type; astype copies when it converts.
    Y = np.ascontiguousarray(y.reshape(-1, 1) if y_was_1d else y, dtype=X.dtype)
    if sample_weight is not None:
        _reject_complex("sample_weight", sample_weight)
        sample_weight = _check_sample_weight(sample_weight, X, dtype=X.dtype, ensure_non_negative=True)
        sample_weight = np.ascontiguousarray(sample_weight)
        if not finite_X and not sample_weight.all():
            _assert_all_finite(X, input_name="X", estimator_name=type(estimator).__name__)
    # The kernels read with typed loads: an array not aligned to its item size (an offset view, some Dask blocks)
    # is copied, as that read would be undefined behaviour in C.
    X, Y = np.require(X, requirements=["C", "A"]), np.require(Y, requirements=["C", "A"])
    if sample_weight is not None:
        sample_weight = np.require(sample_weight, requirements=["C", "A"])
    return Data(X=X, Y=Y, sample_weight=sample_weight, y_was_1d=y_was_1d)


def check_predict_data(estimator, X) -> np.ndarray:
    """Validate ``X`` for ``predict``: same feature count (and names) as at fit time."""
    _reject_complex("X", X)
    return validate_data(
        estimator, X, reset=False, accept_sparse=False, dtype=list(FLOAT_DTYPES), order="C"
    )
