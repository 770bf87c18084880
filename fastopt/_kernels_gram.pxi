# Closed-form kernels (sufficient statistics); included by _kernels.pyx.
from cython cimport floating
from cpython.mem cimport PyMem_RawFree, PyMem_RawMalloc


def gram_stats(const floating[:, ::1] X, const floating[:, ::1] Y, const floating[::1] sample_weight,
               double[::1] mean, double[:, ::1] gram, int block_rows, bint serial=False,
               const int32_t[::1] stop=None):
    """Weighted, centred sufficient statistics of ``Z = [X, Y]``, accumulated in double, blockwise.

    Parameters
    ----------
    X : ndarray of shape (n, d), C-contiguous float32 or float64 (read-only arrays and memmaps are fine)
    Y : ndarray of shape (n, k), same dtype as X
    sample_weight : ndarray of shape (n,), same dtype as X, or None for unit weights
    mean : ndarray of shape (d + k,), float64
        Output: weighted column means of ``Z``.
    gram : ndarray of shape (d + k, d + k), float64
        Output: ``sum_i w_i (z_i - mean)(z_i - mean)^T`` (symmetric).
    block_rows : int
        Rows per block; each block is centred in a workspace of ``block_rows * (d + k)`` doubles.
    serial : bool, default=False
        Call the private single-threaded BLAS (:mod:`fastopt._serial_blas`) instead of SciPy's; same results.
    stop : ndarray of shape (1,), int32, or None
        A flag another thread may set (nonzero) while the call runs: the kernel reads it between blocks of
        bounded work and, once set, stops and raises ``KeyboardInterrupt`` (the outputs are then partial).

    Returns
    -------
    weight : float
        ``sum_i w_i``.
    """
    cdef fo_gram_dims dims
    cdef fo_moments out
    cdef fo_status status
    cdef const floating *w = NULL
    dims.n = X.shape[0]
    dims.d = <int>X.shape[1]
    dims.k = <int>Y.shape[1]
    dims.block = block_rows
    dims.stop = NULL
    if stop is not None:
        if stop.shape[0] < 1:
            raise ValueError("gram_stats: stop must hold one flag")
        dims.stop = &stop[0]
    if X.shape[1] + Y.shape[1] > 2**20 or X.shape[1] + Y.shape[1] == 0:
        raise ValueError("gram_stats: d + k must lie in [1, 2**20]")
    if sample_weight is not None:
        if sample_weight.shape[0] != dims.n:
            raise ValueError(f"gram_stats: sample_weight has {sample_weight.shape[0]} entries, X has {dims.n} rows")
        w = &sample_weight[0] if sample_weight.shape[0] else NULL
    if Y.shape[0] != dims.n or mean.shape[0] != dims.d + dims.k or gram.shape[0] != mean.shape[0] \
            or gram.shape[1] != mean.shape[0] or block_rows <= 0 or block_rows > 2**20:
        raise ValueError("gram_stats: inconsistent shapes or block_rows outside [1, 2**20]")
    _check_serial(serial, "gram_stats")
    cdef const fo_blas *blas = &_BLAS_SERIAL if serial else &_BLAS
    out.mean = &mean[0]
    out.gram = &gram[0, 0]
    # PyMem_Raw*: thread-safe, and visible to tracemalloc, so the benchmark's memory figure includes it.
    cdef size_t n_work = <size_t>block_rows * (dims.d + dims.k) + dims.d + dims.k
    out.work = <double *>PyMem_RawMalloc(n_work * sizeof(double))
    if out.work == NULL:
        raise MemoryError()
    # An empty X has no element to point at; the kernel reads nothing when n == 0.
    cdef const floating *x = &X[0, 0] if dims.n else NULL
    cdef const floating *y = &Y[0, 0] if dims.n else NULL
    for ptr, name in ((<size_t>x, "X"), (<size_t>y, "Y"), (<size_t>w, "sample_weight")):
        if ptr % sizeof(floating):
            PyMem_RawFree(out.work)
            raise ValueError(f"gram_stats: {name} is not aligned to its item size")
    try:
        with nogil:
            if floating is double:
                status = fo_gram_d(blas, x, y, w, dims, &out)
            else:
                status = fo_gram_s(blas, x, y, w, dims, &out)
    finally:
        PyMem_RawFree(out.work)
    if status == FO_INTERRUPTED:
        raise KeyboardInterrupt("gram_stats: stopped by its stop flag")
    if status != FO_OK:
        raise ValueError(f"gram_stats: the kernel rejected its arguments (status {Status(status).name})")
    return out.weight
