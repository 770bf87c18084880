# Krylov kernels (the fused pass of csrc/krylov.c); included by _kernels.pyx.
from cython cimport floating
from libc.stdint cimport int32_t, int64_t


def krylov_dense(const floating[:, ::1] X, const floating[:, ::1] Y, Py_ssize_t target,
                 const double[::1] sqrt_weight, const double[::1] v, double c, double shift, double[::1] z,
                 double[::1] z_squares=None):
    """The fused Krylov pass over dense rows: ``X v`` and ``X^T (...)`` in one read of ``X``.

    With ``s = sqrt_weight`` (ones when None) and ``y = Y[:, target]`` (zeros when ``Y`` is None), computes
    ``a = s * (X v + c y - shift)`` and writes ``z = X^T (s * a)`` (and ``z_squares = (X * X)^T (s * a)``).

    Parameters
    ----------
    X : ndarray of shape (n, d), C-contiguous float32 or float64 (read-only arrays and memmaps are fine)
    Y : ndarray of shape (n, k), same dtype as X, or None
    target : int
        Column of ``Y`` used (ignored when ``Y`` is None).
    sqrt_weight : ndarray of shape (n,), float64, or None
    v : ndarray of shape (d,), float64
    c, shift : float
    z : ndarray of shape (d,), float64
        Output.
    z_squares : ndarray of shape (d,), float64, or None
        Output when given: the same sum over the squared entries of ``X`` (with ``v = 0, c = 0, shift = -1`` the
        weighted column sums of squares).

    Returns
    -------
    (sum(a ** 2), sum(s * a)) : tuple of float
    """
    cdef Py_ssize_t n = X.shape[0], d = X.shape[1]
    cdef double out[2]
    cdef fo_status status
    cdef const floating *y = NULL
    cdef Py_ssize_t y_stride = 0
    cdef const double *sw = NULL
    if v.shape[0] != d or z.shape[0] != d or (sqrt_weight is not None and sqrt_weight.shape[0] != n) \
            or (z_squares is not None and z_squares.shape[0] != d):
        raise ValueError("krylov_dense: inconsistent shapes")
    if Y is not None:
        if Y.shape[0] != n or not 0 <= target < Y.shape[1]:
            raise ValueError("krylov_dense: inconsistent shapes")
        y_stride = Y.shape[1]
        y = &Y[0, target] if n else NULL
    if sqrt_weight is not None and n:
        sw = &sqrt_weight[0]
    cdef const floating *x = &X[0, 0] if n and d else NULL
    cdef const double *vp = &v[0] if d else NULL
    cdef double *zp = &z[0] if d else NULL
    cdef double *zzp = &z_squares[0] if z_squares is not None and d else NULL
    with nogil:
        if floating is double:
            status = fo_krylov_dense_d(x, y, y_stride, sw, n, d, vp, c, shift, zp, zzp, out)
        else:
            status = fo_krylov_dense_s(x, y, y_stride, sw, n, d, vp, c, shift, zp, zzp, out)
    if status != FO_OK:
        raise ValueError(f"krylov_dense: the kernel rejected its arguments (status {Status(status).name})")
    return out[0], out[1]


cdef int _check_indptr_bounds(str kernel, const int32_t[::1] indptr, Py_ssize_t nnz) except -1:
    """The span of the rows inside ``data``: the kernels read ``[indptr[0], indptr[n])`` of it."""
    cdef Py_ssize_t n = indptr.shape[0] - 1
    if n > 0 and (indptr[0] < 0 or indptr[n] > nnz or indptr[n] < indptr[0]):
        raise ValueError(f"{kernel}: indptr points outside data")
    return 0


def krylov_csr(const floating[::1] data, const int32_t[::1] indices, const int32_t[::1] indptr,
               const floating[:, ::1] Y, Py_ssize_t target, const double[::1] sqrt_weight, const double[::1] v,
               double c, double shift, double[::1] z, double[::1] z_squares=None, bint check=True):
    """The fused Krylov pass over CSR rows; :func:`krylov_dense` for a sparse ``X``.

    ``X`` is given by ``data``, ``indices`` (int32 columns in ``[0, d)``, ``d = len(v)``) and ``indptr`` (n + 1
    offsets into ``data``, non-decreasing; a slice of a larger matrix's ``indptr`` selects a segment of its rows).
    The other arguments and the result are those of :func:`krylov_dense`. ``check=False`` skips the O(n + nnz)
    scan of ``indptr`` and ``indices`` (the bounds of ``indptr`` are still checked): only for a structure the
    caller has already checked (:func:`csr_check`), as a solver does once before its many passes.
    """
    cdef Py_ssize_t n = indptr.shape[0] - 1, d = v.shape[0]
    cdef double out[2]
    cdef fo_status status
    cdef const floating *y = NULL
    cdef Py_ssize_t y_stride = 0
    cdef const double *sw = NULL
    if n < 0 or z.shape[0] != d or indices.shape[0] != data.shape[0] \
            or (sqrt_weight is not None and sqrt_weight.shape[0] != n) \
            or (z_squares is not None and z_squares.shape[0] != d):
        raise ValueError("krylov_csr: inconsistent shapes")
    # The kernel trusts the structure: check it here (O(n + nnz) integer reads: at 30 nonzeros a row about a
    # tenth of the pass, hence check=False for a structure checked once).
    _check_indptr_bounds("krylov_csr", indptr, data.shape[0])
    if check:
        csr_check(indices, indptr, d)
    if Y is not None:
        if Y.shape[0] != n or not 0 <= target < Y.shape[1]:
            raise ValueError("krylov_csr: inconsistent shapes")
        y_stride = Y.shape[1]
        y = &Y[0, target] if n else NULL
    if sqrt_weight is not None and n:
        sw = &sqrt_weight[0]
    cdef const floating *dp = &data[0] if data.shape[0] else NULL
    cdef const int32_t *ip = &indices[0] if indices.shape[0] else NULL
    cdef const double *vp = &v[0] if d else NULL
    cdef double *zp = &z[0] if d else NULL
    cdef double *zzp = &z_squares[0] if z_squares is not None and d else NULL
    with nogil:
        if floating is double:
            status = fo_krylov_csr_d(dp, ip, &indptr[0], y, y_stride, sw, n, d, vp, c, shift, zp, zzp, out)
        else:
            status = fo_krylov_csr_s(dp, ip, &indptr[0], y, y_stride, sw, n, d, vp, c, shift, zp, zzp, out)
    if status != FO_OK:
        raise ValueError(f"krylov_csr: the kernel rejected its arguments (status {Status(status).name})")
    return out[0], out[1]


def krylov_moments_csr(const floating[::1] data, const int32_t[::1] indices, const int32_t[::1] indptr,
                       const floating[:, ::1] Y, const double[::1] sqrt_weight, const double[::1] shift,
                       double[:, ::1] Z, bint check=True):
    """The weighted moments of CSR rows in one read (no vector product): what :func:`krylov_csr` gave with
    ``v = 0`` in ``1 + k`` passes, bit for bit.

    With ``s = sqrt_weight`` (ones when None), ``e0 = s * s`` and, for each target ``j`` of ``Y`` (n, k),
    ``a_j = s * (Y[:, j] - shift[j])`` and ``e_j = s * a_j``, writes ``Z`` (d, 2 + k): ``Z[:, 0] = X^T e0``,
    ``Z[:, 1] = (X * X)^T e0`` and ``Z[:, 2 + j] = X^T e_j`` (a stored entry's values are adjacent, one cache line
    at a random column). ``d = Z.shape[0]``; ``indptr``, ``check`` as in :func:`krylov_csr`.

    Returns
    -------
    (sum(a ** 2), sum(s * a)) : tuple of ndarray of shape (k,)
    """
    cdef Py_ssize_t n = indptr.shape[0] - 1, d = Z.shape[0], k = Y.shape[1]
    cdef fo_status status
    if n < 0 or indices.shape[0] != data.shape[0] or Y.shape[0] != n or Z.shape[1] != 2 + k \
            or shift.shape[0] != k or (sqrt_weight is not None and sqrt_weight.shape[0] != n):
        raise ValueError("krylov_moments_csr: inconsistent shapes")
    _check_indptr_bounds("krylov_moments_csr", indptr, data.shape[0])
    if check:
        csr_check(indices, indptr, d)
    cdef double[::1] e = np.empty(max(k, 1))
    cdef double[::1] out = np.empty(max(2 * k, 1))
    cdef const double *sw = &sqrt_weight[0] if sqrt_weight is not None and n else NULL
    cdef const floating *dp = &data[0] if data.shape[0] else NULL
    cdef const int32_t *ip = &indices[0] if indices.shape[0] else NULL
    cdef const floating *yp = &Y[0, 0] if n and k else NULL
    cdef const double *hp = &shift[0] if k else NULL
    cdef double *zp = &Z[0, 0] if d else NULL
    with nogil:
        if floating is double:
            status = fo_krylov_moments_csr_d(dp, ip, &indptr[0], yp, k, sw, n, d, hp, zp, &e[0], &out[0])
        else:
            status = fo_krylov_moments_csr_s(dp, ip, &indptr[0], yp, k, sw, n, d, hp, zp, &e[0], &out[0])
    if status != FO_OK:
        raise ValueError(f"krylov_moments_csr: the kernel rejected its arguments (status {Status(status).name})")
    res = np.asarray(out)[: 2 * k].reshape(k, 2)
    return res[:, 0].copy(), res[:, 1].copy()


def csr_check(const int32_t[::1] indices, const int32_t[::1] indptr, Py_ssize_t d):
    """Check the CSR structure the Krylov pass trusts: ``indptr`` non-decreasing within ``[0, len(indices)]`` and
    every column index of the rows it spans in ``[0, d)``; raises ValueError naming the first fault."""
    cdef Py_ssize_t n = indptr.shape[0] - 1, i
    cdef int32_t lo = 0, hi = -1, col
    if n < 0:
        raise ValueError("krylov_csr: inconsistent shapes")
    if n and (indptr[0] < 0 or indptr[n] > indices.shape[0]):
        raise ValueError("krylov_csr: indptr points outside data")
    with nogil:
        for i in range(n):
            if indptr[i + 1] < indptr[i]:
                lo = -1
                break
        if n and lo == 0:
            for i in range(indptr[0], indptr[n]):
                col = indices[i]
                if col < 0 or col >= d:
                    hi = col
                    break
    if lo < 0:
        raise ValueError("krylov_csr: indptr is not non-decreasing")
    if hi != -1:
        raise ValueError(f"krylov_csr: column index {hi} outside [0, {d})")


ctypedef fused csr_index:
    int32_t
    int64_t


cdef int _check_csr_indptr(str kernel, const csr_index[::1] indptr, Py_ssize_t n_data, Py_ssize_t n_indices) except -1:
    """The rows' offsets inside ``data`` (``n_data`` values) and ``indices`` (``n_indices``) and non-decreasing
    (``n = len(indptr) - 1 >= 0``, checked by the caller), with the messages of ``fastopt._reference``'s checks."""
    cdef Py_ssize_t n = indptr.shape[0] - 1, i
    if n and (indptr[0] < 0 or indptr[n] > n_indices or indptr[n] > n_data):
        raise ValueError(f"{kernel}: indptr points outside data")
    for i in range(n):
        if indptr[i + 1] < indptr[i]:
            raise ValueError(f"{kernel}: indptr is not non-decreasing")
    return 0


def csr_row_squares(const floating[::1] data, const csr_index[::1] indptr, Py_ssize_t start, Py_ssize_t step,
                    Py_ssize_t count):
    """The sums of squares of the stored values of the ``count`` rows ``start, start + step, ...`` of a CSR
    matrix (its ``data`` and ``indptr``), as float64: its rows' squared norms when no index repeats in a row.

    One read of those rows' values and no temporaries (gathering them with NumPy took four arrays of their size,
    whose first-touch page faults were most of 1.1 ms on 2,000 rows of 30 values).
    """
    cdef Py_ssize_t n = indptr.shape[0] - 1, i, r
    cdef int64_t j
    cdef double acc, v
    if count < 0 or step < 1 or start < 0 or (count and start + (count - 1) * step >= n):
        raise ValueError("csr_row_squares: rows outside the matrix")
    if n >= 0 and indptr.shape[0] and (indptr[0] < 0 or indptr[n] > data.shape[0]):
        raise ValueError("csr_row_squares: indptr points outside data")
    out = np.empty(count, dtype=np.float64)
    cdef double[::1] o = out
    with nogil:
        for i in range(count):
            r = start + i * step
            acc = 0.0
            if indptr[r + 1] > indptr[r]:
                for j in range(indptr[r], indptr[r + 1]):
                    v = data[j]
                    acc += v * v
            o[i] = acc
    return out


def csr_affine_map(const floating[::1] data, const csr_index[::1] indices, const csr_index[::1] indptr,
                   Py_ssize_t n_cols, const double[::1] shift, const double[::1] scale, shifted_cols=None,
                   slot_of=None):
    """``(X - shift) / scale`` of a CSR matrix as a new CSR matrix's ``(data, indices, indptr)`` (int32 indices),
    for shifts on a few columns (``shift`` nonzero) that store most rows (the map of
    ``fastopt._iterative_lr.Affine`` on sparse rows).

    Row by row: the stored values of the unshifted columns, ``x / scale``, in their stored order; then each shifted
    column in increasing order, ``(x - shift) / scale`` with ``x`` its stored value or 0 (the last one stored, if a
    row stores a column twice), where that is not zero after the cast to ``data``'s dtype. Each value is computed
    in float64 and cast once. Two passes over the rows (count, then fill) with one buffer of the shifted columns'
    size: NumPy's version built an ``n x (shifted columns)`` block and int64 copies of the index arrays, 129 ms on
    4M stored values where this takes a tenth.

    ``shifted_cols`` (``flatnonzero(shift)``, intp) and ``slot_of`` (intp, ``n_cols`` entries: ``s`` at
    ``shifted_cols[s]``, else -1), given together, are a caller's kept copies of what the map otherwise derives
    in O(n_cols) per call (2^18 columns: 0.8 ms of a 1,000-row ``partial_fit`` call's 1.6 ms map); a slot out of
    range is an error.
    """
    cdef Py_ssize_t n = indptr.shape[0] - 1, i, s, q
    cdef int64_t j, col, total = 0, a, b
    cdef double v
    if n < 0 or shift.shape[0] != n_cols or scale.shape[0] != n_cols:
        raise ValueError("csr_affine_map: inconsistent shapes")
    _check_csr_indptr("csr_affine_map", indptr, data.shape[0], indices.shape[0])
    if (shifted_cols is None) != (slot_of is None):
        raise ValueError("csr_affine_map: give shifted_cols and slot_of together")
    if shifted_cols is None:
        shifted_cols = np.flatnonzero(np.asarray(shift)).astype(np.intp)
        slot_of = np.full(max(n_cols, 1), -1, dtype=np.intp)
        slot_of[shifted_cols] = np.arange(shifted_cols.shape[0])
    cdef const Py_ssize_t[::1] shifted = shifted_cols
    cdef const Py_ssize_t[::1] slot = slot_of
    cdef Py_ssize_t ns = shifted.shape[0]
    if slot.shape[0] < n_cols or ns > n_cols:
        raise ValueError("csr_affine_map: inconsistent shapes")
    for s in range(ns):
        if shifted[s] < 0 or shifted[s] >= n_cols or slot[shifted[s]] != s:
            raise ValueError("csr_affine_map: slot_of is not the inverse of shifted_cols")
    buf_np = np.zeros(max(ns, 1))
    cdef double[::1] buf = buf_np
    counts_np = np.zeros(n + 1, dtype=np.int64)
    cdef int64_t[::1] counts = counts_np
    cdef bint bad = False
    with nogil:  # pass 1: each row's count
        for i in range(n):
            a, b = indptr[i], indptr[i + 1]
            for s in range(ns):
                buf[s] = 0.0
            q = 0
            for j in range(a, b):
                col = indices[j]
                if col < 0 or col >= n_cols:
                    bad = True
                    break
                if slot[col] >= ns:
                    bad = True
                    break
                if slot[col] >= 0:
                    buf[slot[col]] = <double>data[j]
                else:
                    q += 1
            if bad:
                break
            for s in range(ns):
                col = shifted[s]
                if <floating>((buf[s] - shift[col]) / scale[col]) != 0:
                    q += 1
            total += q
            counts[i + 1] = total
    if bad:
        raise ValueError(f"csr_affine_map: a column index outside [0, {n_cols}), or its slot_of entry beyond "
                         "shifted_cols")
    if total >= 2**31 or n_cols >= 2**31:
        raise ValueError(f"the centred copy of sparse X would hold {total} values; at most 2**31 - 1 fit int32.")
    dtype = np.float32 if floating is float else np.float64
    out_data_np, out_ind_np = np.empty(total, dtype=dtype), np.empty(total, dtype=np.int32)
    cdef floating[::1] out_data = out_data_np
    cdef int32_t[::1] out_ind = out_ind_np
    cdef floating w
    with nogil:  # pass 2: the values
        for i in range(n):
            a, b = indptr[i], indptr[i + 1]
            q = counts[i]
            for s in range(ns):
                buf[s] = 0.0
            for j in range(a, b):
                col = indices[j]
                if slot[col] >= 0:
                    buf[slot[col]] = <double>data[j]
                else:
                    out_data[q] = <floating>(<double>data[j] / scale[col])
                    out_ind[q] = <int32_t>col
                    q += 1
            for s in range(ns):
                col = shifted[s]
                w = <floating>((buf[s] - shift[col]) / scale[col])
                if w != 0:
                    out_data[q] = w
                    out_ind[q] = <int32_t>col
                    q += 1
    return out_data_np, out_ind_np, counts_np.astype(np.int32)



def csr_column_moments(const floating[::1] data, const csr_index[::1] indices, const csr_index[::1] indptr,
                       Py_ssize_t n_cols, const double[::1] row_weight, bint means):
    """The columns' weighted sums of squares ``sum_i w_i x_ij^2`` over the rows of a CSR matrix, and with
    ``means`` their weighted sums ``sum_i w_i x_ij`` and nonzero counts: ``(squares, sums or None, counts or
    None)``, float64 (counts int64). Each term is formed as ``(w_i x_ij) x_ij`` and added in the stored values'
    order, as ``np.bincount`` with those weights adds them (the same bits), in one pass without the value-sized
    temporaries that took 26 ms of a 4M-value fit's scaling.
    """
    cdef Py_ssize_t n = indptr.shape[0] - 1, i
    cdef int64_t j, col
    cdef double w, wv, v
    if n < 0 or row_weight.shape[0] != n:
        raise ValueError("csr_column_moments: inconsistent shapes")
    _check_csr_indptr("csr_column_moments", indptr, data.shape[0], indices.shape[0])
    squares_np = np.zeros(max(n_cols, 0))
    sums_np = np.zeros(max(n_cols, 0)) if means else np.zeros(0)
    counts_np = np.zeros(max(n_cols, 0), dtype=np.int64) if means else np.zeros(0, dtype=np.int64)
    cdef double[::1] sq = squares_np, sm = sums_np
    cdef int64_t[::1] cnt = counts_np
    cdef bint bad = False
    with nogil:
        for i in range(n):
            w = row_weight[i]
            for j in range(indptr[i], indptr[i + 1]):
                col = indices[j]
                if col < 0 or col >= n_cols:
                    bad = True
                    break
                v = <double>data[j]
                wv = w * v
                sq[col] += wv * v
                if means:
                    sm[col] += wv
                    cnt[col] += v != 0  # (a stored zero counts as dense X's zeros do: not at all)
            if bad:
                break
    if bad:
        raise ValueError(f"csr_column_moments: a column index outside [0, {n_cols})")
    return squares_np, (sums_np if means else None), (counts_np if means else None)


def csr_indicator_columns(const floating[::1] data, const csr_index[::1] indices, const csr_index[::1] indptr,
                          Py_ssize_t n_cols):
    """For each column of a CSR matrix: whether its stored values are all 0 or 1 (a column storing nothing is),
    and the count of its stored ones: ``(indicator, ones)``, bool and float64 (exact below ``2**53``). One pass
    over the stored values, where NumPy's masks, gather and ``np.bincount`` took 0.13 s of a 10M-value fit
    (the dummy-variable trap test, :func:`fastopt._sparse.dummy_trap`).
    """
    cdef Py_ssize_t n = indptr.shape[0] - 1
    cdef int64_t j, col, lo, hi
    cdef double v
    if n < 0:
        raise ValueError("csr_indicator_columns: inconsistent shapes")
    _check_csr_indptr("csr_indicator_columns", indptr, data.shape[0], indices.shape[0])
    indicator_np = np.ones(max(n_cols, 0), dtype=np.uint8)
    ones_np = np.zeros(max(n_cols, 0))
    cdef uint8_t[::1] ind = indicator_np
    cdef double[::1] ones = ones_np
    cdef bint bad = False
    lo = indptr[0] if n else 0
    hi = indptr[n] if n else 0
    with nogil:
        for j in range(lo, hi):
            col = indices[j]
            if col < 0 or col >= n_cols:
                bad = True
                break
            v = <double>data[j]
            if v == 1.0:
                ones[col] += 1.0
            elif v != 0.0:  # (NaN too)
                ind[col] = 0
    if bad:
        raise ValueError(f"csr_indicator_columns: a column index outside [0, {n_cols})")
    return indicator_np.view(bool), ones_np

cdef extern from *:
    """
    /* Requests into L2 (fastopt.h's FO_PREFETCH_HINT): for writing, a scratch line some rows ahead
       (csr_moment_bounds); for reading, a gathered entry some stored values ahead (csr_scaled_values,
       csr_times). */
    #include "fastopt.h"
    #define FO_SCRATCH_PREFETCH(p) FO_PREFETCH_HINT(p, 1, 2)
    #define FO_GATHER_PREFETCH(p) FO_PREFETCH_HINT(p, 0, 2)
    """
    void FO_SCRATCH_PREFETCH(const void *p) nogil
    void FO_GATHER_PREFETCH(const void *p) nogil


# csr_moment_bounds requests the scratch lines of the row MOMENT_ROWS_AHEAD ahead, at most MOMENT_PREFETCH columns
# of it: the scratch is 16 bytes a column of d (4 MiB at 2^18), so its lines are cold in a partial_fit call. Hashed
# rows (30 values, 2^18 columns, the scratch evicted between calls; alternating builds, medians of 55 calls): none ->
# two rows ahead into L1, 1,000 rows 1.4-2.4 -> 0.76-0.99 ms, 100 rows 0.35-0.38 -> 0.17-0.31 ms, 10,000 rows
# 6.5-7.2 -> 4.4-6.0 ms; then -> six rows ahead into L2, 1,000 rows 0.88-0.99 -> 0.46-0.53 ms (four ahead into L1
# 0.67-0.91, six into L1 0.65-0.91, eight into L2 0.52-0.55; medians of 60 calls). The same bounds.
cdef enum:
    MOMENT_PREFETCH = 64
    MOMENT_ROWS_AHEAD = 6


cdef inline void _prefetch_row(const csr_index[::1] indices, int64_t a, int64_t b, Py_ssize_t n_cols,
                               double *scratch) noexcept nogil:
    """Request the scratch lines of the columns ``indices[a:b]`` (at most the first MOMENT_PREFETCH of them)."""
    cdef int64_t j, col
    for j in range(a, min(b, a + MOMENT_PREFETCH)):
        col = indices[j]
        if 0 <= col < n_cols:
            FO_SCRATCH_PREFETCH(&scratch[2 * col])


def csr_moment_bounds(const floating[::1] data, const csr_index[::1] indices, const csr_index[::1] indptr,
                      Py_ssize_t start, Py_ssize_t step, Py_ssize_t count, const double[::1] row_weight,
                      double[::1] scratch):
    """Two bounds from the column moments of ``count`` CSR rows ``start, start + step, ...`` weighted by
    ``row_weight`` (``count`` entries): with ``mu_j = sum_i w_i x_ij / count`` and ``s_j = sum_i (w_i x_ij) x_ij /
    count`` (each column's terms added in the stored values' order, as :func:`csr_column_moments` adds them),
    returns ``(sum_j mu_j^2, max_j s_j)`` over the stored columns, in the order they first appear (``(0.0, 0.0)``
    with none stored; a NaN reaches both). ``scratch`` holds ``2 * n_cols`` zeros (``n_cols`` columns), which
    the call uses and leaves zero, also when it raises: a caller keeps it across calls, so that a call costs
    O(stored values), not the O(n_cols) arrays and their page faults of :func:`csr_column_moments`.
    """
    cdef Py_ssize_t n = indptr.shape[0] - 1, n_cols = scratch.shape[0] // 2, i, r, q, last = -1
    cdef int64_t j, col, a, b
    cdef double w, wv, v, inv, mu, sq, mu2 = 0.0, mx = 0.0
    if n < 0 or count < 0 or step < 1 or start < 0 or (count and start + (count - 1) * step >= n):
        raise ValueError("csr_moment_bounds: rows outside the matrix")
    if row_weight.shape[0] != count or scratch.shape[0] % 2:
        raise ValueError("csr_moment_bounds: inconsistent shapes")
    for i in range(count):
        r = start + i * step
        if indptr[r] < 0 or indptr[r + 1] < indptr[r] or indptr[r + 1] > min(data.shape[0], indices.shape[0]):
            raise ValueError("csr_moment_bounds: indptr points outside data or decreases")
    inv = 1.0 / count if count else 0.0
    with nogil:
        for i in range(count):  # the sums; last: the rows summed, all of them unless a column is outside
            r = start + i * step
            w = row_weight[i]
            a, b = indptr[r], indptr[r + 1]
            if i + MOMENT_ROWS_AHEAD < count:  # the columns of a row ahead (rows of a few dozen values)
                q = r + MOMENT_ROWS_AHEAD * step
                _prefetch_row(indices, indptr[q], indptr[q + 1], n_cols, &scratch[0])
            for j in range(a, b):
                col = indices[j]
                if col < 0 or col >= n_cols:
                    break
                v = <double>data[j]
                wv = w * v
                scratch[2 * col] += wv
                scratch[2 * col + 1] += wv * v
            else:
                last = i
                continue
            break
        for i in range(count):  # the bounds, each column at its first stored value, and the zeros restored
            r = start + i * step
            a, b = indptr[r], indptr[r + 1]
            if i + MOMENT_ROWS_AHEAD < count:
                q = r + MOMENT_ROWS_AHEAD * step
                _prefetch_row(indices, indptr[q], indptr[q + 1], n_cols, &scratch[0])
            for j in range(a, b):
                col = indices[j]
                if col < 0 or col >= n_cols:
                    break
                if i <= last and (scratch[2 * col] != 0 or scratch[2 * col + 1] != 0):
                    mu = scratch[2 * col] * inv
                    sq = scratch[2 * col + 1] * inv
                    mu2 += mu * mu
                    if sq > mx or sq != sq:  # a NaN stays
                        mx = sq
                scratch[2 * col] = 0.0
                scratch[2 * col + 1] = 0.0
            else:
                continue
            break
    if last < count - 1:
        raise ValueError(f"csr_moment_bounds: a column index outside [0, {n_cols})")
    return mu2, mx


# csr_scaled_values and csr_times request, into L2, the entry of the d-vector that the stored value this many places
# ahead gathers: a partial_fit call's vectors (2 MiB at 2^18 columns) are cold. Hashed rows (1,000 rows of 30 values,
# 2^18 columns, the vectors evicted between calls, medians of 40): csr_scaled_values 0.13 ms at 256 ahead, 0.17-0.22
# at 128, 0.28 at 24 into L1 (NumPy 0.51-0.71); csr_times 0.18-0.26 ms at 256 and 128 (SciPy 0.29-0.34).
cdef enum:
    GATHER_AHEAD = 256
    GATHER_MODELS = 4  # csr_times requests the entries of at most this many of W's rows


def csr_scaled_values(const floating[::1] data, const csr_index[::1] indices, const double[::1] scale):
    """``data[j] / scale[indices[j]]`` for every stored value of a CSR matrix (its ``data`` and column
    ``indices``, ``scale`` one entry a column): a new array of ``data``'s dtype, each value divided in float64 and
    cast once (NumPy's ``(data.astype(float64) / scale[indices]).astype(data.dtype)``, the same bits), the values
    of the map of :class:`fastopt._iterative_lr.Affine` without shift on sparse rows.

    One pass that requests ``scale``'s entries a few values ahead (NumPy's gather waited on each, and its three
    temporaries cost as much again: 0.7-0.9 ms of a 1,000-row ``partial_fit`` call on hashed rows of 2^18 columns).
    """
    cdef Py_ssize_t nnz = data.shape[0], n_cols = scale.shape[0], j
    cdef int64_t col
    cdef bint bad = False
    if indices.shape[0] != nnz:
        raise ValueError("csr_scaled_values: inconsistent shapes")
    out = np.empty(nnz, dtype=np.float32 if floating is float else np.float64)
    cdef floating[::1] o = out
    with nogil:
        for j in range(nnz):
            if j + GATHER_AHEAD < nnz:
                col = indices[j + GATHER_AHEAD]
                if 0 <= col < n_cols:
                    FO_GATHER_PREFETCH(&scale[col])
            col = indices[j]
            if col < 0 or col >= n_cols:
                bad = True
                break
            o[j] = <floating>(<double>data[j] / scale[col])
    if bad:
        raise ValueError(f"csr_scaled_values: a column index outside [0, {n_cols})")
    return out


def csr_times(const floating[::1] data, const csr_index[::1] indices, const csr_index[::1] indptr,
              const floating[:, ::1] W):
    """``X @ W.T`` for a CSR matrix ``X`` (``data``, ``indices``, ``indptr``) of ``W.shape[1]`` columns and ``W``
    (m, d) of ``X``'s dtype: an (n, m) array of that dtype, each entry summed over the row's stored values in
    their stored order from 0, in that dtype (SciPy's ``csr_matvec``/``csr_matvecs`` arithmetic: the same bits).

    It requests the entries of ``W`` (of at most its first four rows) that the stored values a few places ahead
    gather: SciPy's product waited on each cold entry (a ``partial_fit`` call's three products on 1,000 hashed
    rows of 2^18 columns, 0.25 ms apiece).
    """
    cdef Py_ssize_t n = indptr.shape[0] - 1, m = W.shape[0], d = W.shape[1], i, q, mp
    cdef int64_t j, a, b, col, total
    cdef floating v
    cdef bint bad = False
    if n < 0:
        raise ValueError("csr_times: inconsistent shapes")
    _check_csr_indptr("csr_times", indptr, data.shape[0], indices.shape[0])
    total = indptr[n] if n else 0
    out = np.zeros((n, m), dtype=np.float32 if floating is float else np.float64)
    if m == 0 or n == 0:
        return out
    cdef floating[:, ::1] o = out
    mp = min(m, <Py_ssize_t>GATHER_MODELS)
    with nogil:
        for i in range(n):
            a, b = indptr[i], indptr[i + 1]
            for j in range(a, b):
                if j + GATHER_AHEAD < total:
                    col = indices[j + GATHER_AHEAD]
                    if 0 <= col < d:
                        for q in range(mp):
                            FO_GATHER_PREFETCH(&W[q, col])
                col = indices[j]
                if col < 0 or col >= d:
                    bad = True
                    break
                v = data[j]
                for q in range(m):
                    o[i, q] += v * W[q, col]
            if bad:
                break
    if bad:
        raise ValueError(f"csr_times: a column index outside [0, {d})")
    return out

# The d-vector updates of the CGLS and LSQR iterations (fastopt/_krylov.py), fused in C (krylov.c): at d = 2^18
# each NumPy operation is a 2 MiB sweep, and a CGLS iteration made fourteen. Every sum runs in four lanes (entries
# j mod 4, added as (l0 + l1) + (l2 + l3)) in a fixed order: deterministic. A pass's result comes as its segment
# parts Z (S, d), summed in row order by the sweep that consumes it.

cdef inline const double *_ptr_or_null(const double[::1] a) noexcept:
    return &a[0] if a is not None and a.shape[0] else NULL


def _distinct(name, *arrays):
    """The C loops take restrict pointers: the arrays they write must not overlap any other argument."""
    arrays = [a for a in arrays if a is not None]
    for i, a in enumerate(arrays):
        for b in arrays[i + 1:]:
            if np.may_share_memory(a, b):
                raise ValueError(f"{name}: the arrays must not overlap")


def _base(a):
    return None if a is None else a.base


def cgls_step(double step, const double[:, ::1] Z, double se, const double[::1] m, const double[::1] L2,
              const double[::1] p, double[::1] x, double[::1] s, double lam2=0.0):
    """With ``q = Z.sum(axis=0)`` summed in row order, minus ``se * m`` (when ``m`` is given), plus ``L2 * p`` (when
    ``L2`` is given; else ``lam2 * p``, nothing when ``lam2 == 0``): ``x += step * p`` and ``s -= step * q`` in place;
    returns ``s . s``. From a pass's segment parts ``Z`` (their sum ``X^T (s a)``), ``q`` is ``A^T A p + L^2 p``.
    A constant diagonal is given as ``lam2`` rather than an array: one 2 MiB read fewer per sweep at d = 2^18."""
    cdef Py_ssize_t d = p.shape[0], S = Z.shape[0]
    cdef double out
    if S < 1 or Z.shape[1] != d or x.shape[0] != d or s.shape[0] != d \
            or (m is not None and m.shape[0] != d) or (L2 is not None and L2.shape[0] != d):
        raise ValueError("cgls_step: inconsistent shapes")
    _distinct("cgls_step", Z.base, _base(m), _base(L2), p.base, x.base, s.base)
    if d == 0:
        return 0.0
    cdef const double *mp = _ptr_or_null(m)
    cdef const double *lp = _ptr_or_null(L2)
    with nogil:
        out = fo_cgls_step(d, S, &Z[0, 0], d, step, se, mp, lp, lam2, &p[0], &x[0], &s[0])
    return out


def cgls_direction(double beta, const double[::1] s, double[::1] p, const double[::1] m, const double[::1] L2,
                   double lam2=0.0):
    """``p = s + beta * p`` in place; returns ``(m . p, sum(L2 * p * p))`` (0.0 for what is not given; without
    ``L2``, ``lam2`` stands for its every entry)."""
    cdef Py_ssize_t d = p.shape[0]
    cdef double out[2]
    if s.shape[0] != d or (m is not None and m.shape[0] != d) or (L2 is not None and L2.shape[0] != d):
        raise ValueError("cgls_direction: inconsistent shapes")
    _distinct("cgls_direction", s.base, p.base, _base(m), _base(L2))
    if d == 0:
        return 0.0, 0.0
    cdef const double *mp = _ptr_or_null(m)
    cdef const double *lp = _ptr_or_null(L2)
    with nogil:
        fo_cgls_direction(d, beta, &s[0], &p[0], mp, lp, lam2, out)
    return out[0], out[1]


cdef inline double *_wptr_or_null(double[::1] a) noexcept:
    return &a[0] if a is not None and a.shape[0] else NULL


def _same_length(name, d, *arrays):
    if any(a is not None and a.shape[0] != d for a in arrays):
        raise ValueError(f"{name}: inconsistent shapes")


def lsqr_before(double alpha, const double[::1] v, const double[::1] L, double[::1] g, double[::1] ub,
                const double[::1] m, double lam=0.0):
    """``g = v - alpha g`` and (when ``L`` is given, or ``lam != 0`` stands for its every entry)
    ``ub = L v - alpha ub``, in place; returns ``(m . g, ub . ub)`` (0.0 for what is not given): an LSQR iteration
    up to its pass."""
    cdef Py_ssize_t d = g.shape[0]
    cdef double out[2]
    cdef bint ridge = L is not None or lam != 0.0
    _same_length("lsqr_before", d, v, L, ub if ridge else None, m)
    if ridge and ub is None:
        raise ValueError("lsqr_before: L needs ub")
    _distinct("lsqr_before", v.base, None if L is None else L.base, g.base, None if ub is None else ub.base,
              None if m is None else m.base)
    cdef const double *vp = _ptr_or_null(v)
    cdef const double *lp = _ptr_or_null(L)
    cdef const double *mp = _ptr_or_null(m)
    cdef double *gp = _wptr_or_null(g)
    cdef double *up = _wptr_or_null(ub) if ridge else NULL
    with nogil:
        fo_lsqr_before(d, alpha, vp, lp, lam, gp, up, mp, out)
    return out[0], out[1]


def lsqr_after(double beta, double bdiv, double se, const double[::1] m, const double[:, ::1] Z, double[::1] g,
               double[::1] ub, const double[::1] L, double[::1] v, double lam=0.0):
    """From a pass's segment parts ``Z`` (S, d), with ``z = Z.sum(axis=0)`` summed in row order and
    ``r = 1 / bdiv``: ``z' = (z - se m) r`` (``z r`` without ``m``), ``g *= r``, ``ub *= r`` (when ``L`` is given,
    or ``lam != 0`` stands for its every entry), ``v = -beta v + z' + L ub``, in place (``Z`` is only read); returns
    ``v . v``."""
    cdef Py_ssize_t d = g.shape[0], S = Z.shape[0]
    cdef double out
    cdef bint ridge = L is not None or lam != 0.0
    if S < 1 or Z.shape[1] != d:
        raise ValueError("lsqr_after: inconsistent shapes")
    _same_length("lsqr_after", d, m, ub if ridge else None, L, v)
    if ridge and ub is None:
        raise ValueError("lsqr_after: L needs ub")
    _distinct("lsqr_after", _base(m), Z.base, g.base, _base(ub), _base(L), v.base)
    cdef const double *mp = _ptr_or_null(m)
    cdef const double *lp = _ptr_or_null(L)
    cdef const double *zp = &Z[0, 0] if d else NULL
    cdef double *gp = _wptr_or_null(g)
    cdef double *up = _wptr_or_null(ub) if ridge else NULL
    cdef double *vp = _wptr_or_null(v)
    with nogil:
        out = fo_lsqr_after(d, S, zp, d, beta, bdiv, se, mp, gp, up, lp, lam, vp)
    return out


def lsqr_update(double adiv, double cx, double cw, double[::1] v, double[::1] x, double[::1] w):
    """``v *= 1 / adiv``, ``x += cx w`` and ``w = cw w + v``, in place: the end of an LSQR iteration."""
    cdef Py_ssize_t d = v.shape[0]
    _same_length("lsqr_update", d, x, w)
    _distinct("lsqr_update", v.base, x.base, w.base)
    cdef double *vp = _wptr_or_null(v)
    cdef double *xp = _wptr_or_null(x)
    cdef double *wp = _wptr_or_null(w)
    with nogil:
        fo_lsqr_update(d, adiv, cx, cw, vp, xp, wp)


def lsqr_next(double adiv, double cx, double cw, double[::1] v, double[::1] x, double[::1] w, double alpha,
              const double[::1] L, double[::1] g, double[::1] ub, const double[::1] m, double lam=0.0):
    """:func:`lsqr_update` ``(adiv, cx, cw, v, x, w)`` then :func:`lsqr_before` ``(alpha, v, L, g, ub, m, lam)`` in
    one sweep (the end of an LSQR iteration and the start of the next); returns ``lsqr_before``'s
    ``(m . g, ub . ub)``."""
    cdef Py_ssize_t d = v.shape[0]
    cdef double out[2]
    cdef bint ridge = L is not None or lam != 0.0
    _same_length("lsqr_next", d, x, w, L, g, ub if ridge else None, m)
    if ridge and ub is None:
        raise ValueError("lsqr_next: L needs ub")
    _distinct("lsqr_next", v.base, x.base, w.base, _base(L), g.base, _base(ub) if ridge else None, _base(m))
    cdef double *vp = _wptr_or_null(v)
    cdef double *xp = _wptr_or_null(x)
    cdef double *wp = _wptr_or_null(w)
    cdef const double *lp = _ptr_or_null(L)
    cdef double *gp = _wptr_or_null(g)
    cdef double *up = _wptr_or_null(ub) if ridge else NULL
    cdef const double *mp = _ptr_or_null(m)
    with nogil:
        fo_lsqr_next(d, adiv, cx, cw, vp, xp, wp, alpha, lp, lam, gp, up, mp, out)
    return out[0], out[1]
