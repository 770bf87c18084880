# Sparse closed-form kernel (statistics of CSR X from its nonzeros); included by _kernels.pyx.


def csr_gram_stats(const floating[::1] data, const int32_t[::1] indices, const int32_t[::1] indptr,
                   int n_features, const floating[:, ::1] Y, const floating[::1] sample_weight,
                   double[::1] mean, double[:, ::1] gram, const int32_t[::1] stop=None):
    """Weighted, centred sufficient statistics of ``Z = [X, Y]`` for CSR ``X``, from its nonzeros, in double.

    Parameters
    ----------
    data, indices : ndarray of shape (nnz,)
        A canonical CSR matrix's values (float32 or float64) and int32 column indices (strictly increasing
        within each row, in ``[0, n_features)``).
    indptr : ndarray of shape (n + 1,), int32
        Absolute offsets into ``data``: row ``i`` is ``data[indptr[i]:indptr[i + 1]]``, so a slice
        ``X.indptr[start:stop + 1]`` selects rows ``start:stop`` without copying.
    n_features : int
        ``d``.
    Y : ndarray of shape (n, k), same dtype as data
    sample_weight : ndarray of shape (n,), same dtype as data, or None for unit weights
    mean : ndarray of shape (d + k,), float64
        Output: weighted column means of ``Z``.
    gram : ndarray of shape (d + k, d + k), float64
        Output: ``sum_i w_i (z_i - mean)(z_i - mean)^T`` (symmetric), the ``X`` block computed as
        ``sum_i w_i x_i x_i^T - W m m^T`` (see ``fastopt._sparse`` for the digits this centring may cancel).
    stop : ndarray of shape (1,), int32, or None
        A flag another thread may set (nonzero) while the call runs: the kernel reads it between blocks of
        bounded work and, once set, stops and raises ``KeyboardInterrupt`` (the outputs are then partial).

    Returns
    -------
    weight : float
        ``sum_i w_i``.
    """
    cdef fo_csr_dims dims
    cdef fo_moments out
    cdef fo_status status
    cdef const floating *w = NULL
    dims.n = indptr.shape[0] - 1
    dims.d = n_features
    dims.k = <int>Y.shape[1]
    dims.stop = NULL
    if stop is not None:
        if stop.shape[0] < 1:
            raise ValueError("csr_gram_stats: stop must hold one flag")
        dims.stop = &stop[0]
    if dims.n < 0 or Y.shape[0] != dims.n or n_features < 0 or mean.shape[0] != dims.d + dims.k \
            or gram.shape[0] != mean.shape[0] or gram.shape[1] != mean.shape[0] \
            or (sample_weight is not None and sample_weight.shape[0] != dims.n):
        raise ValueError("csr_gram_stats: inconsistent shapes")
    # The kernel trusts indptr to stay inside data and indices: check its ends and monotonicity here (O(n)).
    cdef Py_ssize_t i
    cdef Py_ssize_t nnz = min(data.shape[0], indices.shape[0])
    if indptr[0] < 0 or indptr[dims.n] > nnz:
        raise ValueError("csr_gram_stats: indptr points outside data/indices")
    for i in range(dims.n):
        if indptr[i + 1] < indptr[i]:
            raise ValueError("csr_gram_stats: indptr is not non-decreasing")
    if sample_weight is not None and dims.n:
        w = &sample_weight[0]
    out.mean = &mean[0]
    out.gram = &gram[0, 0]
    out.work = <double *>PyMem_RawMalloc((2 * <size_t>dims.k + 1) * sizeof(double))
    if out.work == NULL:
        raise MemoryError()
    # Empty arrays have no element to point at; the kernel reads nothing there.
    cdef const floating *x = &data[0] if data.shape[0] else NULL
    cdef const int32_t *idx = &indices[0] if indices.shape[0] else NULL
    cdef const floating *y = &Y[0, 0] if dims.n and dims.k else NULL
    for ptr, name in ((<size_t>x, "data"), (<size_t>y, "Y"), (<size_t>w, "sample_weight"), (<size_t>idx, "indices"),
                      (<size_t>&indptr[0], "indptr")):
        if ptr % (sizeof(int32_t) if name in ("indices", "indptr") else sizeof(floating)):  # misaligned loads: UB
            PyMem_RawFree(out.work)
            raise ValueError(f"csr_gram_stats: {name} is not aligned to its item size")
    try:
        with nogil:
            if floating is double:
                status = fo_csr_gram_d(x, idx, &indptr[0], y, w, dims, &out)
            else:
                status = fo_csr_gram_s(x, idx, &indptr[0], y, w, dims, &out)
    finally:
        PyMem_RawFree(out.work)
    if status == FO_INTERRUPTED:
        raise KeyboardInterrupt("csr_gram_stats: stopped by its stop flag")
    if status != FO_OK:
        raise ValueError("csr_gram_stats: a row's column indices are unsorted, repeated or out of range "
                         f"(status {Status(status).name}); pass a canonical CSR matrix (SciPy caches "
                         "has_canonical_format: after changing X.indices in place, set X.has_canonical_format = "
                         "False)")
    return out.weight
