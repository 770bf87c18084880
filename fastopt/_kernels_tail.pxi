# Closed form's tail: the small LAPACK factorisations after the segments (R merges, the d x d Cholesky, the pivoted
# path's factorisation and triangular solves), through the private single-threaded LAPACK when asked; included by
# _kernels.pyx.
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


# Above POTRF_BLOCKED_MIN columns the process's (threaded) dpotrf is not called on the whole matrix: the factor is
# computed POTRF_BLOCK rows at a time, LAPACK's blocked algorithm (right-looking): the diagonal block by dpotrf
# (the private one-thread LAPACK when loaded), the rows beside it by dtrsm, and the trailing matrix a panel of
# POTRF_BLOCK columns at a time, its diagonal block by dsyrk and the rest by dgemm, on the process's BLAS threads.
# SciPy's bundled OpenBLAS (0.3.30, two threads) crashed the process (SIGSEGV) in dpotrf on 16,384 columns, and in
# its threaded dsyrk alone from about 15,500 columns (1,024 inner: 15,000 worked; 256 inner: 16,384 worked,
# 20,000 crashed); OpenBLAS issues 352, 1413, 2562 and 2821 report the same at other sizes and thread counts.
# Its dgemm ran at 16,384-30,000 rows. Between blocks Ctrl-C is seen. The same speed, two threads: 0.042 against
# 0.044 s at 2,000 columns, 0.24 against 0.28 s at 4,000, 1.97 against 1.87 s at 8,000.
POTRF_BLOCKED_MIN = 2048
POTRF_BLOCK = 1024


def potrf_upper(double[::1, :] a, bint serial=False, Py_ssize_t block=-1):
    """Upper Cholesky factor (LAPACK ``dpotrf``, ``uplo="U"``) of the Fortran-ordered symmetric ``a``, in place.

    Parameters
    ----------
    a : ndarray of shape (d, d), float64, Fortran-contiguous
        Overwritten: its upper triangle is ``U`` with ``U^T U = a``; the strictly lower triangle is left as it was.
    serial : bool, default=False
        Call the private single-threaded LAPACK (:mod:`fastopt._serial_blas`) instead of SciPy's; same code.
    block : int, default=-1
        Rows per block of the blocked algorithm (``dpotrf`` of each diagonal block, by the private LAPACK when
        loaded; ``dtrsm``, ``dsyrk`` and ``dgemm`` on the process's BLAS, whatever ``serial``); 0 for one ``dpotrf``
        call; -1: ``POTRF_BLOCK`` when ``d > POTRF_BLOCKED_MIN`` and not ``serial``, else 0.

    Returns
    -------
    info : int
        LAPACK's ``info``: 0 on success, ``j > 0`` when the leading minor of order ``j`` is not positive.
    """
    _check_serial(serial, "potrf_upper")
    cdef _dpotrf_t potrf = _DPOTRF_SERIAL if serial else _DPOTRF
    cdef char uplo = b"U"
    cdef char left = b"L"
    cdef char trans = b"T"
    cdef char nonunit = b"N"
    cdef int n = <int>a.shape[0]
    cdef int lda = n if n > 1 else 1
    cdef int info = 0
    cdef int j, jb, rest, t, bs
    cdef double one = 1.0
    cdef double minus_one = -1.0
    if a.shape[1] != n:
        raise ValueError("potrf_upper: a must be square")
    if n == 0:
        return 0
    if block < 0:
        block = POTRF_BLOCK if n > POTRF_BLOCKED_MIN and not serial else 0
    if block == 0 or block >= n:
        with nogil:
            potrf(&uplo, &n, &a[0, 0], &lda, &info)
        return info
    if not serial and _SERIAL_READY:
        potrf = _DPOTRF_SERIAL  # the diagonal blocks: small, one thread
    bs = <int>block
    for j in range(0, n, bs):
        jb = bs if bs < n - j else n - j
        rest = n - j - jb
        with nogil:
            potrf(&uplo, &jb, &a[j, j], &lda, &info)
            if info == 0 and rest > 0:
                cblas.dtrsm(&left, &uplo, &trans, &nonunit, &jb, &rest, &one, &a[j, j], &lda, &a[j, j + jb], &lda)
                t = j + jb  # the trailing matrix a[t:, t:] -= P^T P, P = a[j:t, t:], a panel of columns at a time
                _syrk_upper_panels(&trans, rest, jb, &minus_one, &a[j, t], lda, &one, &a[t, t], lda, bs)
        if info != 0:
            return j + info
        PyErr_CheckSignals()
    return 0


def pstrf_upper(double[::1, :] a, double tol, bint serial=False):
    """Pivoted Cholesky factorisation (LAPACK ``dpstrf``, ``uplo="U"``) of the Fortran-ordered symmetric
    positive semi-definite ``a``, in place: ``P^T a P = U^T U`` with ``U``'s trailing ``n - rank`` rows zero.

    Parameters
    ----------
    a : ndarray of shape (n, n), float64, Fortran-contiguous
        Overwritten: the upper triangle of its first ``rank`` rows holds ``U``'s (the rest of the upper triangle
        is LAPACK's workspace); the strictly lower triangle is left as it was.
    tol : float
        The factorisation stops at the first pivot (a diagonal of the remaining Schur complement, the largest)
        at or below ``tol``; negative: LAPACK's default ``n eps max(diag(a))``.
    serial : bool, default=False
        Call the private single-threaded LAPACK (:mod:`fastopt._serial_blas`) instead of SciPy's; same code.

    Returns
    -------
    piv : ndarray of shape (n,), int32
        The permutation, counting from 1 as LAPACK does: column ``j`` of ``a P`` is column ``piv[j] - 1`` of ``a``.
    rank : int
        The number of pivots above ``tol``.
    info : int
        LAPACK's ``info``: 0 full rank, 1 stopped at ``rank < n``, negative for an illegal argument.
    """
    _check_serial(serial, "pstrf_upper")
    cdef _dpstrf_t pstrf = _DPSTRF_SERIAL if serial else _DPSTRF
    cdef char uplo = b"U"
    cdef int n = <int>a.shape[0]
    cdef int lda = n if n > 1 else 1
    cdef int rank = 0
    cdef int info = 0
    if a.shape[1] != n:
        raise ValueError("pstrf_upper: a must be square")
    cdef int[::1] piv = np.zeros(n, dtype=np.intc)
    if n == 0:
        return np.asarray(piv), 0, 0
    cdef double *work = <double *>PyMem_RawMalloc(<size_t>(2 * n) * sizeof(double))
    if work == NULL:
        raise MemoryError()
    try:
        with nogil:
            pstrf(&uplo, &n, &a[0, 0], &lda, &piv[0], &rank, &tol, work, &info)
    finally:
        PyMem_RawFree(work)
    return np.asarray(piv), rank, info


def trtrs_upper(const double[::1, :] a, int r, double[::1, :] b, bint trans=False, bint serial=False):
    """Solve ``U x = b`` (or ``U^T x = b``) in place for the upper triangular ``U = a[:r, :r]`` (LAPACK
    ``dtrtrs``), each column of ``b`` a right-hand side.

    Parameters
    ----------
    a : ndarray of shape (m, m), float64, Fortran-contiguous, m >= r
        Its leading ``r x r`` upper triangle is ``U``; nothing else of it is read.
    r : int
        The order of ``U``.
    b : ndarray of shape (r, k), float64, Fortran-contiguous
        Overwritten by the solution.
    trans : bool, default=False
        Solve with ``U^T``.
    serial : bool, default=False
        Call the private single-threaded LAPACK (:mod:`fastopt._serial_blas`) instead of SciPy's; same code.

    Returns
    -------
    info : int
        LAPACK's ``info``: 0 on success, ``j > 0`` when ``U[j-1, j-1]`` is exactly zero (no solution computed).
    """
    _check_serial(serial, "trtrs_upper")
    cdef _dtrtrs_t trtrs = _DTRTRS_SERIAL if serial else _DTRTRS
    cdef char uplo = b"U"
    cdef char tr = b"T" if trans else b"N"
    cdef char diag = b"N"
    cdef int n = r
    cdef int nrhs = <int>b.shape[1]
    cdef int lda = <int>a.shape[0] if a.shape[0] > 1 else 1
    cdef int ldb = <int>b.shape[0] if b.shape[0] > 1 else 1
    cdef int info = 0
    if r < 0 or a.shape[1] != a.shape[0] or r > a.shape[0] or b.shape[0] != r:
        raise ValueError("trtrs_upper: a must be square of order at least r, and b must have r rows")
    if r == 0 or nrhs == 0:
        return 0
    with nogil:
        trtrs(&uplo, &tr, &diag, &n, &nrhs, <double *>&a[0, 0], &lda, &b[0, 0], &ldb, &info)
    return info

def syrk_rows(const double[::1, :] a, double[::1, :] c, double beta, bint serial=False):
    """``c <- a a^T + beta c`` on the upper triangle of ``c`` (BLAS ``dsyrk``, through the panelled table entry
    for wide outputs), without the GIL: the product of the rows of ``a`` that the kernel form solves with, which a
    caller splits into blocks of columns to stop between them.

    Parameters
    ----------
    a : ndarray of shape (m, k), float64, Fortran-contiguous
    c : ndarray of shape (m, m), float64, Fortran-contiguous
        Its upper triangle is updated; the strict lower triangle is not touched.
    beta : float
        Weight of ``c``'s previous upper triangle (0: not read).
    serial : bool, default=False
        Call the private single-threaded BLAS (:mod:`fastopt._serial_blas`) instead of SciPy's.
    """
    _check_serial(serial, "syrk_rows")
    cdef fo_dsyrk_t syrk = _BLAS_SERIAL.dsyrk if serial else _BLAS.dsyrk
    cdef char uplo = b"U"
    cdef char tr = b"N"
    cdef int n = <int>a.shape[0]
    cdef int k = <int>a.shape[1]
    cdef double one = 1.0
    cdef int lda = n if n > 1 else 1
    cdef int ldc = n if n > 1 else 1
    cdef Py_ssize_t i, j
    if c.shape[0] != n or c.shape[1] != n:
        raise ValueError("syrk_rows: c must be square with a's number of rows")
    if n == 0:
        return
    if k == 0:  # beta c alone (as BLAS: beta 0 sets it to zero without reading it)
        for j in range(n):
            for i in range(j + 1):
                c[i, j] = beta * c[i, j] if beta != 0.0 else 0.0
        return
    with nogil:
        syrk(&uplo, &tr, &n, &k, &one, <double *>&a[0, 0], &lda, &beta, &c[0, 0], &ldc)


def trmm_upper(const double[::1, :] a, int r, double[::1, :] b, bint trans=False, bint serial=False):
    """Multiply in place ``b <- U b`` (or ``U^T b``) by the upper triangular ``U = a[:r, :r]`` (BLAS ``dtrmm``).

    Parameters
    ----------
    a : ndarray of shape (m, m), float64, Fortran-contiguous, m >= r
        Its leading ``r x r`` upper triangle is ``U``; nothing else of it is read.
    r : int
        The order of ``U``.
    b : ndarray of shape (r, k), float64, Fortran-contiguous
        Overwritten by the product.
    trans : bool, default=False
        Multiply by ``U^T``.
    serial : bool, default=False
        Call the private single-threaded BLAS (:mod:`fastopt._serial_blas`) instead of SciPy's; same code.
    """
    _check_serial(serial, "trmm_upper")
    cdef _dtrmm_t trmm = _DTRMM_SERIAL if serial else _DTRMM
    cdef char side = b"L"
    cdef char uplo = b"U"
    cdef char tr = b"T" if trans else b"N"
    cdef char diag = b"N"
    cdef int m = r
    cdef int n = <int>b.shape[1]
    cdef double one = 1.0
    cdef int lda = <int>a.shape[0] if a.shape[0] > 1 else 1
    cdef int ldb = <int>b.shape[0] if b.shape[0] > 1 else 1
    if r < 0 or a.shape[1] != a.shape[0] or r > a.shape[0] or b.shape[0] != r:
        raise ValueError("trmm_upper: a must be square of order at least r, and b must have r rows")
    if r == 0 or n == 0:
        return
    with nogil:
        trmm(&side, &uplo, &tr, &diag, &m, &n, &one, <double *>&a[0, 0], &lda, &b[0, 0], &ldb)

# Compensated dot products for the refinement residual (Ogita, Rump & Oishi, *Accurate sum and dot product*,
# SIAM J. Sci. Comput. 26, 2005, Dot2): each product split exactly into p + pe (Dekker 1971; a libm fma call
# without -mfma cost twice as much), each sum's rounding error collected, as if computed in twice the precision
# and rounded once. -ffp-contract=off keeps the compiler from fusing the roundings away.
cdef inline void _two_sum(double a, double b, double *s, double *e) noexcept nogil:
    cdef double t
    s[0] = a + b
    t = s[0] - a
    e[0] = (a - (s[0] - t)) + (b - t)


cdef inline void _two_prod(double a, double b, double *p, double *e) noexcept nogil:
    cdef double ca = 134217729.0 * a, cb = 134217729.0 * b  # 2^27 + 1: split into 26-bit halves
    cdef double ah = ca - (ca - a), bh = cb - (cb - b)
    cdef double al = a - ah, bl = b - bh
    p[0] = a * b
    e[0] = ((ah * bh - p[0]) + ah * bl + al * bh) + al * bl


def refine_residual(const double[:, ::1] X, const double[:, ::1] Y, const double[::1] sample_weight,
                    const double[:, ::1] coef, const double[::1] intercept, double[:, ::1] grad,
                    double[::1] rsum):
    """Residuals of a linear fit in twice the working precision, and their weighted sums with and against ``X``.

    With ``r_ij = Y_ij - intercept_j - sum_l X_il coef_jl`` evaluated as if in twice the precision and rounded
    once, and ``u_ij = w_i r_ij`` (``w_i = 1`` without weights), computes the same way
    ``grad[j, l] = sum_i u_ij X_il`` and ``rsum[j] = sum_i u_ij`` (compensated sums, Ogita, Rump & Oishi 2005).
    These are the right-hand sides of one step of extra-precise iterative refinement of a least-squares solution
    (Demmel et al. 2006; Bjorck 1996, 2.9): the cancellation in ``r`` near the solution is what float64 cannot
    resolve. Values above about 1e300 in magnitude overflow the exact product's splitting.

    Parameters
    ----------
    X : ndarray of shape (n, d), float64, C-contiguous
    Y : ndarray of shape (n, k), float64, C-contiguous
    sample_weight : ndarray of shape (n,), float64, or None
    coef : ndarray of shape (k, d), float64, C-contiguous
    intercept : ndarray of shape (k,), float64
    grad : ndarray of shape (k, d), float64, C-contiguous
        Output.
    rsum : ndarray of shape (k,), float64
        Output.
    """
    cdef Py_ssize_t n = X.shape[0], d = X.shape[1], k = Y.shape[1], i, j, l
    cdef const double *w = NULL
    if sample_weight is not None:
        if sample_weight.shape[0] != n:
            raise ValueError("refine_residual: sample_weight must have one entry per row of X")
        w = &sample_weight[0] if n else NULL
    if Y.shape[0] != n or coef.shape[0] != k or coef.shape[1] != d or intercept.shape[0] != k \
            or grad.shape[0] != k or grad.shape[1] != d or rsum.shape[0] != k:
        raise ValueError("refine_residual: inconsistent shapes")
    cdef double[:, ::1] gerr = np.zeros((k, d))
    cdef double[::1] serr = np.zeros(k)
    cdef double s, c, p, pe, q, u
    grad[:, :] = 0.0
    rsum[:] = 0.0
    with nogil:
        for i in range(n):
            for j in range(k):
                _two_sum(Y[i, j], -intercept[j], &s, &c)
                for l in range(d):
                    _two_prod(X[i, l], -coef[j, l], &p, &pe)
                    _two_sum(s, p, &s, &q)
                    c = c + (q + pe)
                u = s + c
                if w != NULL:
                    u = u * w[i]
                _two_sum(rsum[j], u, &rsum[j], &q)
                serr[j] = serr[j] + q
                for l in range(d):
                    _two_prod(u, X[i, l], &p, &pe)
                    _two_sum(grad[j, l], p, &grad[j, l], &q)
                    gerr[j, l] = gerr[j, l] + (q + pe)
        for j in range(k):
            rsum[j] = rsum[j] + serr[j]
            for l in range(d):
                grad[j, l] = grad[j, l] + gerr[j, l]
