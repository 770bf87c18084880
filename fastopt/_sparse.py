"""Closed-form statistics of sparse (CSR) ``X``, from its nonzeros.

The centred Gram of ``[X, Y]`` is what :mod:`fastopt._closed_form` solves. For sparse ``X`` it is accumulated
without ever densifying ``X`` (:func:`fastopt._kernels.csr_gram_stats`): the *uncentred* weighted cross-products
``S = sum_i w_i x_i x_i^T`` from the outer products of each row's nonzeros, ``X^T (Y - mean_Y)`` with the target
centred first (exact, two passes over the dense ``Y``), and the column means from the nonzeros; the centring of
the ``X`` block is then applied to the ``d x d`` result, ``G = S - W m m^T``. Memory beyond ``X`` is O(p^2)
per segment in flight (``p = d + k``), never O(n d).

Centring after accumulation cancels digits where a column's mean is large next to its spread: entry ``G_aa`` is
the difference of ``S_aa`` and ``W m_a^2``, so its rounding error is about ``eps * S_aa``, a relative error of
``eps * S_aa / G_aa``. Such a column is mostly nonzero (a column with a fraction ``f`` of equal nonzeros has
``S_aa / G_aa = 1 / (1 - f)``), typically a numeric feature beside one-hot ones, so each segment recomputes the rows
and columns of ``G`` of its few columns (at most ``CENTRE_FIRST_MAX``) with ``S_aa > CENTRE_FIRST_RATIO * G_aa``
the way ``Y`` is treated: densified over the segment's rows, centred first, multiplied exactly
(:func:`_centre_first`). What cancellation remains is estimated by the solve from ``S``'s diagonal, which the state
keeps (``raw_diag``): ``ratio = max_a (S_aa + W alpha) / (G_aa + W alpha)`` (about ``log10(ratio)`` digits); Cholesky
is refused when ``rcond / ratio < RCOND_CHOLESKY``, i.e. whenever the combined loss could exceed the 4 digits the
dense path allows, and the fit takes the accurate path, Householder QR of the centred rows densified in row blocks
of about 2 MiB (:func:`fastopt._closed_form.chunk_qr_state`), with memory O(p^2 + block) and time O(n p^2).

Rows are cut into segments fixed by the data alone (never by the number of threads), processed in parallel by
threads (the kernel releases the GIL) and merged in a fixed balanced tree, so the result is bit-identical for
any thread count.

References: the pairwise merge of centred moments is Chan, Golub & LeVeque (1979), *Updating formulae and a
pairwise algorithm for computing sample variances*; the cancellation in ``S - W m m^T`` (the "textbook" one-pass
variance) and the two-pass remedy are analysed in Higham, *Accuracy and Stability of Numerical Algorithms*, 2nd ed.,
2002, section 1.9; the normal equations' squared condition number in Björck, *Numerical Methods for Least Squares
Problems*, 1996, section 2.2.
"""
from __future__ import annotations

import math
import os

import numpy as np

from fastopt import _kernels

# Multiply-adds of row outer products per segment: with about 4 p^2 for its own set-up (zeroing, centring,
# symmetrising and merging a p x p state), a segment must hold much more work than that to be worth a thread.
SEGMENT_WORK = 2**23
MAX_SEGMENT_ROWS = 2**18  # also bounds the dense copy of the columns centred first (_centre_first)
# Columns whose centring would cancel more than about one digit (S_aa > 16 G_aa) are centred before their products,
# up to 64 of them per segment. Their dense copies over a segment's rows take 24 |D| rows bytes; such columns are
# mostly nonzero, so a segment of |D| of them has at most about 2 SEGMENT_WORK / |D|^2 rows: tens of MB at most.
CENTRE_FIRST_RATIO = 16.0
CENTRE_FIRST_MAX = 64


def compiled_csr(X, dtype=None) -> bool:
    """Whether CSR ``X`` suits the compiled CSR reads (:func:`fastopt._kernels.csr_times`,
    :func:`fastopt._kernels.csr_scaled_values`): float32 or float64 values (of ``dtype`` when given) and int32 or
    int64 indices of one dtype, each array contiguous."""
    return X.format == "csr" and X.dtype in (np.float32, np.float64) and (dtype is None or X.dtype == dtype) \
        and X.indices.dtype == X.indptr.dtype and X.indices.dtype in (np.int32, np.int64) \
        and X.data.flags.c_contiguous and X.indices.flags.c_contiguous and X.indptr.flags.c_contiguous


def csr_block_times(X, lo: int, hi: int, QT: np.ndarray) -> np.ndarray:
    """``X[lo:hi] @ QT.T`` in float64 for :func:`compiled_csr` ``X`` and ``QT`` (m, d) float64, C-contiguous,
    reading the rows in place (SciPy's row slicing copies them, at about 80 us a call; float32 values are
    converted a block at a time)."""
    hi = min(hi, X.shape[0])
    ip = X.indptr[lo : hi + 1]
    if X.dtype == np.float64:
        return _kernels.csr_times(X.data, X.indices, ip, QT)
    a, b = ip[0], ip[-1]
    return _kernels.csr_times(X.data[a:b].astype(np.float64), X.indices[a:b], ip - a, QT)


def indicator_columns(X) -> tuple[np.ndarray, np.ndarray]:
    """For each column of CSR ``X``: whether it stores only the values 0 and 1 (a column storing nothing does),
    and its count of stored ones (float64)."""
    if compiled_csr(X):
        return _kernels.csr_indicator_columns(X.data, X.indices, X.indptr, X.shape[1])
    data = np.ascontiguousarray(X.data, dtype=np.float64)
    indices, indptr = (np.ascontiguousarray(a, dtype=np.int64) for a in (X.indices, X.indptr))
    return _kernels.csr_indicator_columns(data, indices, indptr, X.shape[1])


def indicators_sum_to_constant(X, indicator: np.ndarray | None = None) -> bool:
    """Whether the columns of CSR ``X`` whose stored values are all 0 or 1 (indicators, as ``OneHotEncoder``'s
    columns) sum to one positive constant in every row: then the constant column lies in their span, and with an
    intercept the centred design has an exact null vector (one-hot columns of every categorical feature: the
    dummy-variable trap). Exact: the row sums are sums of ones (duplicate indices add, as in ``X @ v``)."""
    indicator = indicator_columns(X)[0] if indicator is None else indicator
    if X.shape[0] == 0 or not indicator.any():  # (then every row sums to 0)
        return False
    sums = np.asarray(X @ indicator.astype(X.dtype)).ravel()
    return sums[0] >= 1 and bool(np.all(sums == sums[0]))


# Blocks :func:`one_hot_block` verifies at most (a pass over the stored values each): candidates whose stored ones
# total n by coincidence, across two features' levels, each cost a pass and fail.
ONE_HOT_BLOCK_CHECKS = 2


def one_hot_block(X, columns: tuple[np.ndarray, np.ndarray] | None = None) -> bool:
    """Whether some run of adjacent columns of CSR ``X``, each of whose stored values are all 0 or 1, sums to 1 in
    every row: one categorical feature's every level side by side (``OneHotEncoder``'s layout), beside features
    whose first or binary level was dropped (``drop="first"`` on some, ``drop="if_binary"``) or numeric columns,
    which :func:`indicators_sum_to_constant` misses. With an intercept the centred design then has an exact null
    vector. The candidates are the runs whose stored ones total ``n`` (prefix sums of the columns' counts); at
    most :data:`ONE_HOT_BLOCK_CHECKS` of them are verified, each by one product ``X @ v`` (exact: sums of ones),
    so a False may miss a block, never a True a non-block. ``columns``: :func:`indicator_columns`' answer."""
    n, d = X.shape
    indicator, ones_count = indicator_columns(X) if columns is None else columns
    if n == 0 or d == 0 or not indicator.any():
        return False
    # an indicator column's sum is its count of stored ones (exact); the others' sums are set aside
    counts = np.where(indicator, ones_count, 0.0)
    ones = np.concatenate([[0.0], np.cumsum(counts)])
    others = np.concatenate([[0], np.cumsum(~indicator)])  # non-indicator columns before each position
    start = np.flatnonzero(indicator)
    stop = np.searchsorted(ones, ones[start] + n)  # the first end whose block holds n ones, if any
    end = np.minimum(stop, d)
    valid = (stop <= d) & (ones[end] == ones[start] + n) & (others[end] == others[start])
    start, end = start[valid], end[valid]
    # starts that differ only by columns without stored ones give the same sums: one per total
    first = np.unique(ones[start], return_index=True)[1][:ONE_HOT_BLOCK_CHECKS]
    for a, b in zip(start[first], end[first], strict=True):
        v = np.zeros(d, dtype=X.dtype)
        v[a:b] = 1
        if np.all(np.asarray(X @ v).ravel() == 1):
            return True
    return False


def dummy_trap(X) -> bool:
    """Whether CSR ``X``'s indicator columns certify an exact null vector of the centred design (with an
    intercept): :func:`indicators_sum_to_constant` or :func:`one_hot_block`."""
    columns = indicator_columns(X)
    return indicators_sum_to_constant(X, columns[0]) or one_hot_block(X, columns)


def available_memory() -> int | None:
    """Bytes of memory that can be allocated without swapping: Linux's MemAvailable (free memory plus reclaimable
    caches), else the physical memory size where the platform reports it; None when unknown (no check)."""
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, OSError, ValueError):
        return None


class GramMemoryError(MemoryError):
    """The closed form's dense matrices would not fit in the memory available (:func:`check_gram_fits`,
    :func:`check_qr_fits`): a MemoryError of fastopt's own, told apart from one a chunk source raises."""


def check_gram_fits(d: int, k: int, n_threads: int, n_segments: int = 1) -> None:
    """A clear error, instead of an out-of-memory kill, when the dense Gram of a wide sparse ``X`` cannot fit.

    Sparse data can have far more columns than dense data ever does (hashed text: 2^18), and the closed form
    needs dense (d + k)^2 float64 Grams: one per segment in flight (``n_threads``), the one being merged and the
    merge tree's partial sums (at most ceil(log2 n_segments) besides it), one more for the temporaries; the solve,
    after them, needs two.
    """
    p = d + k
    need = (n_threads + 2 + math.ceil(math.log2(max(n_segments, 1)))) * 8 * p * p
    available = available_memory()
    if available is not None and need > available:
        raise GramMemoryError(
            f"sparse X has {d} columns: the closed form needs dense {p} x {p} float64 Gram matrices, about "
            f"{need / 2**30:.1f} GiB, but only {available / 2**30:.1f} GiB of memory is available. Use a solver "
            "whose cost follows the nonzeros (an iterative one that accepts sparse X), or fewer features."
        )


def check_qr_fits(d: int, k: int, rows: int, n_threads: int, n_segments: int = 1) -> None:
    """:func:`check_gram_fits` for ``solver="qr"`` on sparse ``X``: each block in flight (``n_threads``) is ``rows``
    densified rows and their ``(d + k) x (d + k)`` ``R``, beside the merge tree's ``R`` factors."""
    p = d + k
    need = 8 * p * (n_threads * (rows + p) + (2 + math.ceil(math.log2(max(n_segments, 1)))) * p)
    available = available_memory()
    if available is not None and need > available:
        raise GramMemoryError(
            f"sparse X has {d} columns: solver='qr' densifies blocks of {rows} rows and needs dense {p} x {p} "
            f"R factors, about {need / 2**30:.1f} GiB, but only {available / 2**30:.1f} GiB of memory is "
            "available. Use a solver whose cost follows the nonzeros (an iterative one that accepts sparse X), "
            "or fewer features."
        )


def segment_rows(indptr: np.ndarray, p: int) -> int:
    """Rows per segment: enough outer-product work (at least ``SEGMENT_WORK`` and 16 p^2) to repay a segment's
    O(p^2) set-up; a function of the data alone, so results do not depend on the number of threads."""
    n = indptr.shape[0] - 1
    if n <= 0:
        return 1
    nnz = int(indptr[-1]) - int(indptr[0])
    per_row = max(1.0, (nnz / n) * (nnz / n + 1) / 2)
    return int(np.clip(max(SEGMENT_WORK, 16 * p * p) / per_row, 1024, MAX_SEGMENT_ROWS))


def segment_stats(data, start: int, stop: int, halt: np.ndarray | None = None):
    """``(weight, mean, gram, raw_diag)`` of rows ``start:stop`` of validated sparse ``data``; ``halt``: the
    kernel's stop flag (see ``fastopt._closed_form._stoppable``)."""
    X, Y, sw = data.X, data.Y, data.sample_weight
    d, k = X.shape[1], Y.shape[1]
    mean, gram = np.empty(d + k), np.empty((d + k, d + k))
    weight = _kernels.csr_gram_stats(
        X.data, X.indices, X.indptr[start : stop + 1], d, Y[start:stop], None if sw is None else sw[start:stop],
        mean, gram, stop=halt,
    )
    # S_aa = G_aa + W m_a^2 to within eps * S_aa: all the centring-loss estimate needs. (Values too large to
    # square overflow here silently: the fit then rescales X, see _closed_form.scale_trouble.)
    with np.errstate(over="ignore", invalid="ignore"):
        raw_diag = np.diagonal(gram)[:d] + weight * mean[:d] ** 2
        cols = np.flatnonzero(raw_diag > CENTRE_FIRST_RATIO * np.maximum(np.diagonal(gram)[:d], 0.0))
    if weight > 0 and 0 < cols.size <= CENTRE_FIRST_MAX:
        _centre_first(X, sw, start, stop, cols, weight, mean, gram)
        raw_diag[cols] = np.diagonal(gram)[cols]  # no cancellation left in these
    return weight, mean, gram, raw_diag


def _centre_first(X, sw, start: int, stop: int, cols: np.ndarray, weight: float, mean, gram) -> None:
    """Recompute the rows and columns ``cols`` of the segment's Gram with those columns centred before the products.

    ``G[a, D] = sum_i w_i x_ia (x_iD - m_D) - m_a r_D`` with ``r_D = sum_i w_i (x_iD - m_D)`` (zero up to round-off):
    exact centring with no cancellation, as the kernel treats ``Y``; ``G[D, D]`` directly from the centred copy.
    """
    d = X.shape[1]
    lo, hi = int(X.indptr[start]), int(X.indptr[stop])
    rows = type(X)((X.data[lo:hi], X.indices[lo:hi], X.indptr[start : stop + 1] - lo), shape=(stop - start, d),
                   copy=False)  # views of the segment's nonzeros
    w = np.ones(stop - start) if sw is None else sw[start:stop].astype(np.float64)
    Xc = rows[:, cols].toarray().astype(np.float64) - mean[cols]
    WXc = w[:, None] * Xc
    r = WXc.sum(axis=0)
    block = np.asarray(rows.T @ WXc) - np.outer(mean[:d], r)
    gram[:d, cols] = block
    gram[cols, :d] = block.T
    inner = Xc.T @ WXc - np.outer(r, r) / weight
    gram[np.ix_(cols, cols)] = (inner + inner.T) / 2  # exactly symmetric whatever order BLAS summed in


def segments(data) -> list[tuple[int, int]]:
    """Row ranges ``[start, stop)`` of the segments of sparse ``data.X`` (:func:`segment_rows` rows each)."""
    n = data.X.shape[0]
    step = segment_rows(data.X.indptr, data.X.shape[1] + data.Y.shape[1])
    return [(start, min(start + step, n)) for start in range(0, n, step)]


def cancellation(params: dict, weight: float, gram: np.ndarray, raw_diag: np.ndarray) -> float:
    """Factor by which centring after accumulation may have magnified the Gram's rounding errors (>= 1)."""
    if not params["fit_intercept"]:
        return 1.0  # the solve adds W m m^T back: the uncentred S is recovered to within eps * S
    d = raw_diag.shape[0]
    ridge = weight * params["alpha"]
    top = raw_diag + ridge
    bottom = np.maximum(np.diagonal(gram)[:d], 0.0) + ridge
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(top > 0, top / bottom, 1.0)
    return float(np.max(ratio, initial=1.0))
