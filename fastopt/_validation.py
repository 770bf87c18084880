"""Input checks with clear messages.

Arrays leave this module C-contiguous, float32 or float64, finite (``X`` only if asked: see ``finite_X``), with
matching lengths; later layers trust
that and re-check nothing. Nothing here writes into the caller's arrays: a conversion copies, a pass-through
is only ever read.

Sparse ``X`` (any ``scipy.sparse`` matrix or array) leaves as a CSR matrix/array of the caller's class family in
canonical format (sorted indices, duplicates summed), ``data`` float32 or float64 and always finite, ``indices``
and ``indptr`` int32; explicit zeros may remain. Its index arrays are checked before SciPy reads them, since
SciPy's own conversions trust them (an index out of range in a hand-built matrix would write out of bounds).
"""
from __future__ import annotations

import numbers
from dataclasses import dataclass, replace

import numpy as np
import scipy.sparse
from sklearn import config_context
from sklearn.utils.validation import (
    _assert_all_finite,
    _check_feature_names,
    _check_n_features,
    _check_sample_weight,
    validate_data,
)

FLOAT_DTYPES = (np.float64, np.float32)


def assert_all_finite(a, input_name: str, estimator_name: str = "LinearRegressor") -> None:
    """scikit-learn's finiteness check and message, without the RuntimeWarning its quick sum gives before the
    error when ``a`` holds both +inf and -inf."""
    with np.errstate(invalid="ignore", over="ignore"):
        _assert_all_finite(a, input_name=input_name, estimator_name=estimator_name)


@dataclass(frozen=True)
class Data:
    """Validated training data.

    Attributes
    ----------
    X : ndarray of shape (n_samples, n_features), C-contiguous float32/float64, or a canonical CSR
        ``scipy.sparse`` matrix/array (float32/float64 data, int32 indices; see the module docstring)
    Y : ndarray of shape (n_samples, n_targets), C-contiguous, same dtype as X
    sample_weight : ndarray of shape (n_samples,) or None
        Non-negative and finite, same dtype as X. None means unit weights.
    y_was_1d : bool
        Whether the caller passed a 1-D target (coefficients are then returned 1-D).
    indices_checked : bool
        False when validation left a CSR ``X``'s column indices to the solver (``check_indices=False``).
    """

    X: np.ndarray | scipy.sparse.csr_matrix | scipy.sparse.csr_array
    Y: np.ndarray
    sample_weight: np.ndarray | None
    y_was_1d: bool
    indices_checked: bool = True


def beyond_range(name: str, dtype) -> str:
    """The error of solver ``name``'s coefficients beyond ``dtype``'s range (where they scale as y / X)."""
    wider = " or fit in float64" if np.dtype(dtype) == np.float32 else ""
    return (f"solver={name!r} gave coefficients beyond {np.dtype(dtype).name}'s range: X's values are too small for "
            f"y's (the coefficients scale as y / X); multiply X by a power of ten{wider}.")


def is_sparse(X) -> bool:
    """Whether ``X`` is a ``scipy.sparse`` matrix or array (validated sparse ``X`` is always CSR)."""
    return scipy.sparse.issparse(X)


def solver_view(X):
    """``X`` as ``solver="auto"`` reads it before validation: a pandas DataFrame whose columns are all sparse as the
    CSR matrix validation makes of it, so that its stored values choose the solver as that CSR's do (read as dense
    rows, a CountVectorizer frame of 4,000 x 2,500 took Newton 18-22 s where its CSR takes SGD 0.05 s, and the
    closed form's QR 2.9 s where LSQR takes 0.03 s); anything else as it is."""
    if is_sparse(X) or not hasattr(X, "columns"):
        return X
    try:
        return scipy.sparse.csr_matrix(X.sparse.to_coo())  # (the accessor exists only when every column is sparse)
    except (AttributeError, TypeError, ValueError):
        return X


def float_dtypes(X) -> list:
    """The ``dtype`` validation converts ``X`` to: float64 or float32, keeping float32 (scikit-learn's rule), and
    float32 for a pandas DataFrame of sparse columns whose values' common type is float32, as for the dense frame
    (scikit-learn converts such a frame with no original dtype, so to float64: ``coef_`` and ``predict`` were float64
    where the same values as a float32 CSR matrix or a dense frame fitted float32)."""
    dtypes = getattr(X, "dtypes", None)
    if dtypes is not None and not is_sparse(X) and hasattr(X, "sparse"):
        try:
            subtypes = [t.subtype for t in dtypes]
        except AttributeError:  # (a column that is not sparse: the accessor refuses such a frame anyway)
            subtypes = None
        if subtypes and np.result_type(*subtypes) == np.float32:
            return [np.float32]
    return list(FLOAT_DTYPES)


_INDEX_MAX = np.iinfo(np.int32).max


def _malformed(name: str, what: str) -> ValueError:
    return ValueError(f"{name} is a malformed sparse matrix: {what}.")


def _check_range(name: str, idx: np.ndarray, bound: int, what: str) -> None:
    # One pass: viewed as unsigned, a negative index is at least 2**(bits - 1) > bound (half the time of min and
    # max, 1.4 ms on 6M int32 indices).
    # (in idx's own byte order: a big-endian array viewed as native read 1 as 2**24, a false alarm, and an index
    # out of range as one in range, which the kernels then read out of bounds)
    as_unsigned = idx.view(idx.dtype.str.replace("i", "u")) if idx.dtype.kind == "i" else idx
    if idx.size and as_unsigned.max() >= bound:
        bad = idx[(idx < 0) | (idx >= bound)][0]
        raise _malformed(name, f"{what} index {int(bad)} is out of range for {bound} {what}s")


def _check_sparse_structure(name: str, X, column_indices: bool = True) -> None:
    """Check the index arrays of a compressed (CSR, CSC, BSR) or coordinate matrix before anything reads them.

    SciPy's constructors check only the arrays' lengths; its conversions then trust every index, so a
    hand-built matrix with an index out of range would be read (and written) out of bounds. With
    ``column_indices=False`` a CSR matrix's column indices are left to the caller (its ``indptr`` is still checked).
    """
    if X.ndim != 2:
        raise ValueError(f"{name} must be 2-D; got a sparse array of shape {X.shape}.")
    fmt = X.format
    if fmt in ("csr", "csc", "bsr"):
        rows, cols = X.shape
        if fmt == "bsr":
            r, c = X.blocksize
            rows, cols = rows // r, cols // c
        major, minor = (rows, cols) if fmt != "csc" else (cols, rows)
        minor_name = "column" if fmt != "csc" else "row"
        indptr, indices = np.asarray(X.indptr), np.asarray(X.indices)
        n_data = np.shape(X.data)[0]
        for what, a in (("indptr", indptr), ("indices", indices)):
            if a.dtype.kind not in "iu":  # (a float indptr ended in slicing's TypeError)
                raise _malformed(name, f"{what} has dtype {a.dtype}; index arrays must be integers")
        if fmt != "bsr" and indices.shape[0] != n_data:
            raise _malformed(name, f"indices and data have different lengths ({indices.shape[0]} and {n_data})")
        if indptr.ndim != 1 or indptr.shape[0] != major + 1:
            raise _malformed(name, f"indptr has {indptr.shape[0]} entries, expected {major + 1}")
        if indptr.shape[0] and (indptr[0] != 0 or indptr[-1] > min(indices.shape[0], n_data)):
            raise _malformed(name, f"indptr must start at 0 and end at most at the {min(indices.shape[0], n_data)} "
                             f"stored entries (got {int(indptr[0])}..{int(indptr[-1])})")
        if np.less(indptr[1:], indptr[:-1]).any():  # (np.diff's temporary made this twice as slow)
            raise _malformed(name, "indptr is not non-decreasing")
        if column_indices or fmt != "csr":
            _check_range(name, indices[: indptr[-1]], minor, minor_name)
    elif fmt == "coo":
        coords = X.coords if hasattr(X, "coords") else (X.row, X.col)
        for axis, (idx, what) in enumerate(zip(coords, ("row", "column"))):
            idx = np.asarray(idx)
            if idx.shape[0] != np.shape(X.data)[0]:
                raise _malformed(name, f"{what} coordinates and data have different lengths")
            _check_range(name, idx, X.shape[axis], what)


def _without_slack(X):
    """A compressed matrix whose ``data``/``indices`` run past ``indptr[-1]`` as a new one on their first
    ``indptr[-1]`` entries (views, no copy): SciPy's nnz ends there and its products ignore the rest, which
    solvers reading ``X.data`` whole had misaligned with the rows (or refused for a NaN there)."""
    if X.format in ("csr", "csc") and X.indptr.shape[0] and np.shape(X.data)[0] > int(X.indptr[-1]):
        nnz = int(X.indptr[-1])
        return type(X)((X.data[:nnz], X.indices[:nnz], X.indptr), shape=X.shape, copy=False)
    return X


def _canonical_csr(X, original):
    """CSR in canonical format with int32 indices; copies before any change, so ``original`` is never touched."""
    nnz = int(X.indptr[-1])
    if X.indices.dtype != np.int32 or X.indptr.dtype != np.int32:
        if nnz > _INDEX_MAX or X.shape[1] > _INDEX_MAX:
            too_wide = X.shape[1] > _INDEX_MAX
            raise ValueError(
                f"X has {nnz} stored entries and {X.shape[1]} columns; sparse X is limited to 2**31 - 1 of "
                "each (32-bit indices). "
                + ("Hash or select the columns into fewer (e.g. sklearn's FeatureHasher or HashingVectorizer with "
                   "n_features below 2**31)." if too_wide else
                   "Split the rows into chunks and use partial_fit or fit_stream.")
            )
        # (first: SciPy's canonical check refuses uint64 indices)
        X = type(X)((X.data, X.indices.astype(np.int32), X.indptr.astype(np.int32)), shape=X.shape, copy=False)
    if not X.has_canonical_format:
        shared = X is original or np.may_share_memory(X.data, getattr(original, "data", None))
        X = X.copy() if shared else X
        X.sum_duplicates()  # sorts the indices and sums duplicates, in place (on our copy)
    return X


def _check_sparse_solver(estimator) -> None:
    """TypeError when the estimator's resolved solver cannot fit sparse ``X`` (checked before any conversion)."""
    solver, loss = getattr(estimator, "solver", None), getattr(estimator, "loss", None)
    if solver is None or loss is None:
        return
    from fastopt import (
        _solvers,  # the registry imports the solvers, which import this module
    )

    name = _solvers.resolve(solver, loss, sparse=True)
    if not _solvers.supports_sparse(name):
        via = "" if name == solver else f" (resolved to {name!r})"
        raise TypeError(
            f"Sparse input X is not supported by solver={solver!r}{via}; solvers that accept sparse X: "
            f"{_solvers.sparse_solvers()}. Pick one of them, or pass a dense X (X.toarray())."
        )


def _reject_strings(name, a):
    """scikit-learn's error for ``dtype="numeric"`` on an array of strings or bytes: the float dtypes fastopt asks
    validation for would parse them instead."""
    dtype = getattr(a, "dtype", None)
    if isinstance(dtype, np.dtype) and dtype.kind in "USV":
        raise ValueError(
            f"dtype='numeric' is not compatible with arrays of bytes/strings ({name} has dtype {dtype}). Convert "
            "your data to numeric values explicitly instead."
        )


def expanded_weights(sample_weight, n_rows: int):
    """A numeric scalar ``sample_weight`` as one weight for each of ``n_rows`` rows (float64), so that the array
    checks name it: scikit-learn's ``_check_sample_weight`` fills a scalar in without checking it, and a NaN, an
    infinite or (for float32 X) an out-of-range scalar was then blamed on X's columns or the learning rate, and a
    scalar 0 in a later chunk reached NumPy's dimension errors. Anything else is returned unchanged."""
    # (no NumPy function on other objects: array-likes that only offer __array__ refuse __array_function__)
    if not (isinstance(sample_weight, (numbers.Number, np.generic))
            or (isinstance(sample_weight, np.ndarray) and sample_weight.ndim == 0)):
        return sample_weight
    a = np.asarray(sample_weight)
    if a.dtype.kind not in "biuf":
        return sample_weight
    with np.errstate(over="ignore"):  # a float128 beyond float64: inf, refused by the array check
        return np.full(n_rows, a, dtype=np.float64)


def check_weights(sample_weight, X, dtype) -> np.ndarray:
    """scikit-learn's ``_check_sample_weight`` (one finite, non-negative weight a row of ``X``), cast to ``dtype``.

    A positive weight that the cast to a narrower ``dtype`` (float32 ``X``) flushes to zero or to a subnormal
    number is refused, as one that overflows it is, unless it is below ``dtype``'s rounding of the largest weight
    (then it is lost in that rounding anyway): the fit would silently drop or coarsen those rows (weights of 1e-46
    fitted another problem, 21% above the minimum of the one asked). The objective depends only on the weights'
    ratios, so the error suggests rescaling them all.
    """
    narrow = np.dtype(dtype) != np.float64
    with np.errstate(over="ignore", invalid="ignore"):  # beyond float64's range, +-inf: refused by the check
        # (in float64 first for a narrower dtype: its check that some weight is positive came after the cast)
        wide = _check_sample_weight(sample_weight, X, dtype=np.float64 if narrow else dtype, ensure_non_negative=True)
    if not narrow:
        return wide
    with np.errstate(over="ignore", under="ignore"):
        checked = wide.astype(dtype)
    assert_all_finite(checked, input_name="sample_weight")  # scikit-learn's "too large for dtype('float32')"
    tiny = np.finfo(dtype).tiny
    if (checked < tiny).any():
        lost = (wide > 0) & (checked < tiny) & (wide >= np.finfo(dtype).eps * wide.max())
        if lost.any():
            raise ValueError(
                f"sample_weight has {int(lost.sum())} positive value(s) below {tiny:.3g}, the smallest normal "
                f"number of X's dtype {np.dtype(dtype)}, where they would be flushed or rounded coarsely (the "
                f"smallest is {wide[lost].min():.3g}). Multiply all weights by one factor: the fit depends only on "
                f"their ratios.")
    return checked


def refuse_nonfinite(name: str, a) -> None:
    """:func:`assert_all_finite` (validation's error and words) whatever scikit-learn's ``assume_finite``, for ``a``
    an array or a sparse matrix (its stored values): the solvers call it where statistics or losses came out
    non-finite, before blaming a column's scale or the learning rate (with ``assume_finite=True`` an infinite y
    was reported as X column 0 being too large to square). scikit-learn's configuration is thread-local."""
    with config_context(assume_finite=False):
        assert_all_finite(a.data if scipy.sparse.issparse(a) else a, input_name=name)


def refuse_nonfinite_data(data: Data) -> None:
    """:func:`refuse_nonfinite` for ``data``'s targets, then its rows."""
    refuse_nonfinite("y", data.Y)
    refuse_nonfinite("X", data.X)


def reject_foreign_sparse(name: str, a) -> None:
    """A TypeError naming the conversion for pydata ``sparse`` arrays, which refuse ``np.asarray`` (their own
    RuntimeError, "Cannot convert a sparse array to dense", named neither fastopt's input nor scipy.sparse)."""
    if type(a).__module__.split(".")[0] == "sparse" and hasattr(a, "to_scipy_sparse"):
        raise TypeError(
            f"{name} is a pydata sparse {type(a).__name__}; fastopt takes scipy.sparse matrices and arrays: pass "
            f"{name}.to_scipy_sparse() (or a Dask array's blocks converted so, with map_blocks)."
        )


def _reject_complex(name, a):
    # Read the dtype without calling NumPy functions on the object itself: array-likes that only offer
    # __array__ (as scikit-learn's checks pass) refuse __array_function__.
    dtype = getattr(a, "dtype", None)
    columns = getattr(a, "dtypes", None)
    if not isinstance(dtype, np.dtype) and columns is not None and hasattr(columns, "__iter__"):
        # a DataFrame: its columns' dtypes (sparse ones by their values' subtype), not np.asarray of the frame,
        # which interleaves mixed columns (get_dummies' bool beside float) into objects: 1.1 s of a 0.3 s fit
        # of 50,000 x 306
        dtypes = [getattr(c, "subtype", c) for c in columns]
        if any(isinstance(c, np.dtype) and np.issubdtype(c, np.complexfloating) for c in dtypes):
            dtype = np.dtype(complex)
        else:
            return
    elif not isinstance(dtype, np.dtype):
        try:
            dtype = np.asarray(a).dtype
        except (TypeError, ValueError):
            return  # ragged or odd input: validate_data gives the precise message
    if np.issubdtype(dtype, np.complexfloating):
        # ValueError with scikit-learn's wording, so callers and its estimator checks see the usual error.
        raise ValueError(
            f"Complex data not supported: {name} has a complex dtype; fastopt fits real-valued least squares only."
        )


def _ready(X, y) -> bool:
    """Whether validate_data would pass ``X`` and ``y`` through unchanged: X a C-contiguous float32/float64
    ndarray, or a CSR matrix/array of float32/float64 values with int32 indices in canonical format (as
    ``_canonical_csr`` leaves it), with rows and columns, and y a floating ndarray of as many rows (1-D, or 2-D with
    columns)."""
    if type(y) is not np.ndarray or y.dtype.kind != "f" or not (y.ndim == 1 or (y.ndim == 2 and y.shape[1] > 0)):
        return False
    if type(X) is np.ndarray:
        ok = X.ndim == 2 and X.dtype in FLOAT_DTYPES and X.flags.c_contiguous
    else:  # sparse: its structure has been checked (_check_sparse_structure) before this reads its flags
        ok = (isinstance(X, (scipy.sparse.csr_matrix, scipy.sparse.csr_array)) and X.ndim == 2
              and X.dtype in FLOAT_DTYPES and X.indices.dtype == np.int32 and X.indptr.dtype == np.int32
              and X.has_canonical_format)
    return ok and X.shape[0] > 0 and X.shape[1] > 0 and y.shape[:1] == X.shape[:1]


def check_features(estimator, X, reset: bool) -> None:
    """Set (``reset``) or check ``n_features_in_`` and ``feature_names_in_`` from ``X``'s shape and columns alone
    (no conversion of ``X``), as ``validate_data`` does."""
    _check_n_features(estimator, X, reset=reset)
    _check_feature_names(estimator, X, reset=reset)


def _validate_ready(estimator, X, y, *, reset: bool, finite_X: bool, finite_y: bool = True) -> None:
    """What validate_data does with arrays that it passes through unchanged (:func:`_ready`): the feature count
    and names, and the finiteness of y and X when asked, with its messages. Its checks for other kinds of
    input cost 0.3-0.5 ms a fit, 3-4% of an epoch on the benchmark shape (n = 200,000, d = 100); on canonical CSR
    input (the sparse benchmark) about 0.35 ms."""
    if reset and hasattr(estimator, "feature_names_in_"):
        del estimator.feature_names_in_  # an ndarray has no column names
    elif not reset and getattr(estimator, "feature_names_in_", None) is not None:
        # (its warning: fitted with names, given none; with none fitted it would find nothing, in 30-60 us a call,
        # its DataFrame probes)
        _check_feature_names(estimator, X, reset=False)
    _check_n_features(estimator, X, reset=reset)
    name = type(estimator).__name__
    if finite_y:
        assert_all_finite(y, input_name="y", estimator_name=name)
    if finite_X:
        assert_all_finite(X.data if is_sparse(X) else X, input_name="X", estimator_name=name)


def check_fit_data(estimator, X, y, sample_weight=None, *, reset=True, finite_X=True, finite_y=True,
                   check_indices=True) -> Data:
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
    finite_y : bool
        Check that ``y`` is finite, likewise: False only when the solver reads every target before it uses any
        (the iterative solvers' starting loss, or their first epoch on a warm start) and reports a non-finite one
        with the message this check would give. Kept for inputs that take scikit-learn's ``validate_data`` (it
        checks y anyway) and whenever a weight is zero.
    check_indices : bool
        Check that a sparse ``X``'s column indices are in range. False only when ``X`` is CSR already and the
        solver's ``fit`` reads every one through a kernel that refuses one out of range before reading through
        it, and then names it with this check's message (``Solver.checks_indices``); other formats are
        converted by SciPy, which trusts the indices, so they are always checked.

    Returns
    -------
    Data
    """
    _reject_strings("X", X)
    reject_foreign_sparse("X", X)
    reject_foreign_sparse("y", y)
    _reject_complex("X", X)
    _reject_complex("y", y)
    original, sparse = X, is_sparse(X)
    indices_checked = True  # (a DataFrame's sparse columns: validate_data builds their CSR)
    if sparse:
        _check_sparse_solver(estimator)
        # (and int32 already: a conversion from int64 would wrap an index out of range into range)
        indices_checked = check_indices or X.format != "csr" or np.asarray(X.indices).dtype != np.int32
        _check_sparse_structure("X", X, column_indices=indices_checked)
        X = _without_slack(X)
        # As for dense X, a solver whose kernel reads every stored value reports non-finite ones itself
        # (fastopt._iterative names X then): the pass cost 20% of a sparse SGD epoch (measured).
    if is_sparse(y):
        raise TypeError("y is a sparse matrix; pass a dense target (y.toarray()).")
    if _ready(X, y):
        # y is checked later, with X, when a weight is zero (see the weights below)
        _validate_ready(estimator, X, y, reset=reset, finite_X=finite_X, finite_y=finite_y or finite_X)
    else:
        with np.errstate(invalid="ignore", over="ignore"):  # (see assert_all_finite)
            X, y = validate_data(
                estimator,
                X,
                y,
                reset=reset,
                accept_sparse="csr",
                dtype=float_dtypes(X),
                order="C",
                multi_output=True,
                y_numeric=True,
                ensure_all_finite=finite_X,
            )
    if is_sparse(X):  # (also a DataFrame of sparse columns, which validate_data turns into CSR)
        if X.dtype not in FLOAT_DTYPES:  # (validate_data leaves get_dummies' bool sparse columns bool)
            X = X.astype(np.float64)
        X, sparse = _canonical_csr(X, original), True
    # validate_data has checked y (finite, numeric, at least one target column) whatever finite_X says;
    # check_weights below checks the weights' finiteness and sign.
    y = np.asarray(y)
    y_was_1d = y.ndim == 1
    # The target takes X's dtype so the kernels see one floating type; astype copies when it converts.
    Y = _narrowed("y", y.reshape(-1, 1) if y_was_1d else y, X.dtype)
    if sample_weight is not None:
        _reject_complex("sample_weight", sample_weight)
        sample_weight = expanded_weights(sample_weight, X.shape[0])
        sample_weight = check_weights(sample_weight, X, X.dtype)
        sample_weight = np.ascontiguousarray(sample_weight)
        if not sample_weight.all():
            if not finite_y:
                assert_all_finite(y, input_name="y", estimator_name=type(estimator).__name__)
            if not finite_X:
                assert_all_finite(X.data if sparse else X, input_name="X", estimator_name=type(estimator).__name__)
    # The kernels read with typed loads: an array not aligned to its item size (an offset view, some Dask blocks)
    # is copied, as that read would be undefined behaviour in C.
    return aligned(Data(X=X, Y=Y, sample_weight=sample_weight, y_was_1d=y_was_1d,
                        indices_checked=not sparse or indices_checked))


def aligned(data: Data) -> Data:
    """``data`` with every array C-contiguous and aligned to its item size (copies of those that are not; the
    caller's are left as they were). Validated data can lose its alignment after validation: dask.distributed
    unpickles a persisted block that moves between workers from a buffer at any offset."""
    X = data.X
    if not is_sparse(X):
        X = np.require(X, requirements=["C", "A"])
    elif not all(a.flags.aligned and a.flags.c_contiguous for a in (X.data, X.indices, X.indptr)):
        # scipy allocates its arrays aligned, but a matrix built on views or unpickled may not be: a new matrix
        X = type(X)(tuple(np.require(a, requirements=["C", "A"]) for a in (X.data, X.indices, X.indptr)),
                    shape=X.shape)
        X.has_canonical_format = data.X.has_canonical_format  # (the same arrays' values)
    Y = np.require(data.Y, requirements=["C", "A"])
    w = None if data.sample_weight is None else np.require(data.sample_weight, requirements=["C", "A"])
    if X is data.X and Y is data.Y and w is data.sample_weight:
        return data
    return replace(data, X=X, Y=Y, sample_weight=w)


def _narrowed(name: str, a: np.ndarray, dtype) -> np.ndarray:
    """``a`` as a C-contiguous array of ``dtype``; a finite value beyond ``dtype``'s range (float64 ``y`` for float32
    ``X``) is a ``ValueError`` naming ``name``, not an inf left to the solvers (with NumPy's overflow warning)."""
    if a.dtype.kind != "f" or np.finfo(a.dtype).max <= np.finfo(dtype).max:
        return np.ascontiguousarray(a, dtype=dtype)
    with np.errstate(over="ignore"):
        out = np.ascontiguousarray(a, dtype=dtype)
    if not np.isfinite(out).all():
        lost = np.isfinite(a) & ~np.isfinite(out)  # (non-finite values are the finiteness checks' to name)
        if lost.any():
            # (the magnitude in a's own precision: a longdouble beyond float64 printed as inf through float)
            largest = np.format_float_scientific(np.abs(a[lost]).max(), precision=2, unique=False)
            wider = " Pass X as float64, or rescale" if np.dtype(dtype) != np.float64 else " Rescale"
            raise ValueError(
                f"{name} has values beyond the {np.dtype(dtype).name} range of X (largest magnitude {largest}): X is "
                f"{np.dtype(dtype).name} and {name} takes its dtype.{wider} {name}."
            )
    return out


def _sums_may_overflow(X) -> bool:
    """Whether duplicate entries of sparse ``X`` (float32 or else float64 once validated) may add up beyond that
    dtype's range: ``nnz max|data|`` reaches it. A COO matrix built from triplets is never flagged canonical,
    duplicates or not: summing them on a copy every call (a sort) made predict on 1e7 stored values 57 times
    slower."""
    if X.nnz == 0 or X.data.dtype.kind not in "fiu":
        return False
    top = np.finfo(np.float32 if X.data.dtype == np.float32 else np.float64).max
    with np.errstate(over="ignore", invalid="ignore"):
        largest = max(float(np.max(X.data)), -float(np.min(X.data)))  # (no |data| copy)
    return not (largest * X.nnz < top)


def check_predict_data(estimator, X) -> np.ndarray:
    """Validate ``X`` for ``predict``: same feature count (and names) as at fit time.

    Sparse ``X`` comes back as CSR, CSC or COO (products with a dense vector need no canonical format), its
    duplicate entries summed (on a copy) where they may add up beyond the float range, so that the values
    checked are ``X``'s.
    """
    _reject_strings("X", X)
    reject_foreign_sparse("X", X)
    _reject_complex("X", X)
    if is_sparse(X):
        _check_sparse_structure("X", X)
        X = _without_slack(X)
        if X.format in ("csr", "csc", "coo") and not X.has_canonical_format and _sums_may_overflow(X):
            # two stored 1.5e308 at one place are an inf of X (fit refused it) that the stored values' check
            # passed: predict returned 5e307, score 0.0
            # (astype: SciPy's copy keeps a big-endian dtype, which its constructor then refuses)
            X = X.astype(X.dtype.newbyteorder("="), copy=True)
            with np.errstate(over="ignore", invalid="ignore"):
                X.sum_duplicates()
    with np.errstate(invalid="ignore", over="ignore"):  # (see assert_all_finite)
        return validate_data(
            estimator, X, reset=False, accept_sparse=("csr", "csc", "coo"), dtype=float_dtypes(X), order="C"
        )
