# Closed-form kernel: the R factor by blockwise Householder QR (csrc/tsqr.c); included by _kernels.pyx.


def tsqr_stats(const floating[:, ::1] X, const floating[:, ::1] Y, const floating[::1] sample_weight,
               double[::1] mean, double[:, ::1] r, int block_rows, bint serial=False,
               const int32_t[::1] stop=None):
    """Weighted means and the ``R`` factor of the centred, weighted ``Z = [X, Y]``, in double, blockwise.

    Parameters
    ----------
    X : ndarray of shape (n, d), C-contiguous float32 or float64 (read-only arrays and memmaps are fine)
    Y : ndarray of shape (n, k), same dtype as X
    sample_weight : ndarray of shape (n,), same dtype as X, or None for unit weights
    mean : ndarray of shape (d + k,), float64
        Output: weighted column means of ``Z``.
    r : ndarray of shape (d + k, d + k), float64
        Output: upper-triangular ``R`` with a non-negative diagonal and
        ``R^T R = sum_i w_i (z_i - mean)(z_i - mean)^T``.
    block_rows : int
        Rows per block; each block is centred in a workspace of ``(block_rows + 1) * (d + k)`` doubles.
    serial : bool, default=False
        Call the private single-threaded LAPACK (:mod:`fastopt._serial_blas`) instead of SciPy's; same results.
    stop : ndarray of shape (1,), int32, or None
        A flag another thread may set (nonzero) while the call runs: the kernel reads it between blocks of
        bounded work and, once set, stops and raises ``KeyboardInterrupt`` (the outputs are then partial).

    Returns
    -------
    weight : float
        ``sum_i w_i``.
    """
    cdef fo_gram_dims dims
    cdef fo_factor out
    cdef fo_status status
    cdef const floating *w = NULL
    dims.n = X.shape[0]
    dims.d = <int>X.shape[1]
    dims.k = <int>Y.shape[1]
    dims.block = block_rows
    dims.stop = NULL
    if stop is not None:
        if stop.shape[0] < 1:
            raise ValueError("tsqr_stats: stop must hold one flag")
        dims.stop = &stop[0]
    if sample_weight is not None:
        w = &sample_weight[0] if sample_weight.shape[0] else NULL
    if Y.shape[0] != dims.n or mean.shape[0] != dims.d + dims.k or r.shape[0] != mean.shape[0] \
            or r.shape[1] != mean.shape[0] or block_rows <= 0 \
            or (sample_weight is not None and sample_weight.shape[0] != dims.n):
        raise ValueError("tsqr_stats: inconsistent shapes or block_rows <= 0")
    _check_serial(serial, "tsqr_stats")
    cdef const fo_lapack *lapack = &_LAPACK_SERIAL if serial else &_LAPACK
    out.mean = &mean[0]
    out.r = &r[0, 0]
    # PyMem_Raw*: thread-safe, and visible to tracemalloc, so the benchmark's memory figure includes it.
    out.work = <double *>PyMem_RawMalloc(<size_t>fo_tsqr_work_size(dims.d + dims.k, block_rows) * sizeof(double))
    if out.work == NULL:
        raise MemoryError()
    cdef const floating *x = &X[0, 0] if dims.n else NULL
    cdef const floating *y = &Y[0, 0] if dims.n else NULL
    try:
        with nogil:
            if floating is double:
                status = fo_tsqr_d(lapack, x, y, w, dims, &out)
            else:
                status = fo_tsqr_s(lapack, x, y, w, dims, &out)
    finally:
        PyMem_RawFree(out.work)
    if status == FO_INTERRUPTED:
        raise KeyboardInterrupt("tsqr_stats: stopped by its stop flag")
    if status != FO_OK:
        raise ValueError(f"tsqr_stats: the kernel rejected its arguments (status {Status(status).name})")
    return out.weight
