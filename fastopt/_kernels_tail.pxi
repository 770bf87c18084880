# Closed form's tail: the small LAPACK factorisations after the segments (R merges, the d x d Cholesky), through
# the private single-threaded LAPACK when asked; included by _kernels.pyx.
#
# Called through SciPy they ran on the process's multi-threaded OpenBLAS, whose worker threads then spin for about
# 0.1 s beside the next fit's segment threads (back-to-back fits 25% slower, measured). The private instance is
# the same code limited to one thread.


def geqrf_inplace(double[::1, :] a, bint serial=False):
    """Householder QR (LAPACK ``dgeqrf``) of the Fortran-ordered ``a`` of shape (m, n), in place.

    Parameters
    ----------
    a : ndarray of shape (m, n), float64, Fortran-contiguous
        Overwritten: its upper triangle (``min(m, n)`` rows) is ``R``, below it the Householder vectors.
    serial : bool, default=False
        Call the private single-threaded LAPACK (:mod:`fastopt._serial_blas`) instead of SciPy's; same code.

    Returns
    -------
    info : int
        LAPACK's ``info`` (0 on success).
    """
    _check_serial(serial, "geqrf_inplace")
    cdef fo_dgeqrf_t geqrf = _LAPACK_SERIAL.dgeqrf if serial else _LAPACK.dgeqrf
    cdef int m = <int>a.shape[0]
    cdef int n = <int>a.shape[1]
    cdef int lda = m if m > 1 else 1
    cdef int lwork = -1
    cdef int info = 0
    cdef double query = 0.0
    if m == 0 or n == 0:
        return 0
    cdef double *tau = <double *>PyMem_RawMalloc(<size_t>(m if m < n else n) * sizeof(double))
    cdef double *work = NULL
    if tau == NULL:
        raise MemoryError()
    try:
        geqrf(&m, &n, &a[0, 0], &lda, tau, &query, &lwork, &info)  # workspace query, as scipy.linalg.qr
        lwork = <int>query if query >= 1 else 1
        work = <double *>PyMem_RawMalloc(<size_t>lwork * sizeof(double))
        if work == NULL:
            raise MemoryError()
        with nogil:
            geqrf(&m, &n, &a[0, 0], &lda, tau, work, &lwork, &info)
    finally:
        PyMem_RawFree(work)
        PyMem_RawFree(tau)
    return info


def potrf_upper(double[::1, :] a, bint serial=False):
    """Upper Cholesky factor (LAPACK ``dpotrf``, ``uplo="U"``) of the Fortran-ordered symmetric ``a``, in place.

    Parameters
    ----------
    a : ndarray of shape (d, d), float64, Fortran-contiguous
        Overwritten: its upper triangle is ``U`` with ``U^T U = a``; the strictly lower triangle is left as it was.
    serial : bool, default=False
        Call the private single-threaded LAPACK (:mod:`fastopt._serial_blas`) instead of SciPy's; same code.

    Returns
    -------
    info : int
        LAPACK's ``info``: 0 on success, ``j > 0`` when the leading minor of order ``j`` is not positive.
    """
    _check_serial(serial, "potrf_upper")
    cdef _dpotrf_t potrf = _DPOTRF_SERIAL if serial else _DPOTRF
    cdef char uplo = b"U"
    cdef int n = <int>a.shape[0]
    cdef int lda = n if n > 1 else 1
    cdef int info = 0
    if a.shape[1] != n:
        raise ValueError("potrf_upper: a must be square")
    if n == 0:
        return 0
    with nogil:
        potrf(&uplo, &n, &a[0, 0], &lda, &info)
    return info
