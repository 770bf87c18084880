# Huber Newton kernel (the fused pass of csrc/huber.c); included by _kernels.pyx.
from cython cimport floating
from cpython.mem cimport PyMem_RawFree, PyMem_RawMalloc
from libc.stdint cimport uint8_t


def huber_pass(const floating[:, ::1] X, const double[::1] y, const double[::1] s, const double[::1] w, double b,
               double epsilon, const double[::1] centre, const uint8_t[::1] prev, uint8_t[::1] mask, double[::1] r,
               double[::1] g, double[:, ::1] dH, double[::1] moved, bint serial=False):
    """One fused pass of the Huber Newton solver over the rows of ``X``, in float64 whatever the dtype of ``X``.

    With ``r = X w + b - y``, ``psi = clip(r, -epsilon, epsilon)`` and ``huber`` the Huber loss of threshold
    ``epsilon`` (``inf``: squared error), writes ``r``, ``g = X^T (s psi)`` and ``mask = |r| <= epsilon``. When
    ``dH`` is given, the rows whose mask differs from ``prev`` (all zeros when None: every inlier "enters") give
    ``dH = sum_enter s_i z_i z_i^T - sum_leave s_i z_i z_i^T`` and ``moved = sum_changed s_i z_i ** 2`` with
    ``z_i = [x_i - centre, 1]`` (``p = d + 1``) or ``x_i - centre`` (``p = d``).

    Parameters
    ----------
    X : ndarray of shape (n, d), C-contiguous float32 or float64
    y, s : ndarray of shape (n,), float64
        Targets and row weights (``s`` None: ones).
    w : ndarray of shape (d,), float64
    b, epsilon : float
    centre : ndarray of shape (d,), float64, or None when ``dH`` is None
    prev : ndarray of shape (n,), uint8 (0/1), or None
    mask : ndarray of shape (n,), uint8, or None
        Output.
    r : ndarray of shape (n,), float64
        Output.
    g : ndarray of shape (d,), float64
        Output.
    dH : ndarray of shape (p, p), float64, or None
        Output, with ``p`` = d + 1 or d.
    moved : ndarray of shape (p,), float64, or None when ``dH`` is None
        Output.
    serial : bool, default=False
        Call the private single-threaded BLAS (:mod:`fastopt._serial_blas`) instead of SciPy's; same results.

    Returns
    -------
    (sum(s * huber(r)), sum(s * psi), changed rows, inliers) : tuple of float
        ``changed`` is 0 when ``dH`` is None.
    """
    cdef Py_ssize_t n = X.shape[0], d = X.shape[1]
    cdef fo_huber_dims dims
    cdef double out[4]
    cdef fo_status status
    cdef int p = <int>(dH.shape[0] if dH is not None else d)
    if y.shape[0] != n or r.shape[0] != n or w.shape[0] != d or g.shape[0] != d \
            or (s is not None and s.shape[0] != n) or (prev is not None and prev.shape[0] != n) \
            or (mask is not None and mask.shape[0] != n):
        raise ValueError("huber_pass: inconsistent shapes")
    if dH is not None and (dH.shape[1] != p or (p != d and p != d + 1) or moved is None or moved.shape[0] != p
                           or centre is None or centre.shape[0] != d):
        raise ValueError("huber_pass: inconsistent shapes of dH, moved or centre")
    if d + 1 > 2**20:
        raise ValueError("huber_pass: d must be below 2**20")
    if not epsilon >= 0:
        raise ValueError("huber_pass: epsilon must be non-negative")
    dims.n, dims.d, dims.p = n, d, max(p, 1)
    _check_serial(serial, "huber_pass")
    cdef const fo_blas *blas = &_BLAS_SERIAL if serial else &_BLAS
    cdef const floating *x = &X[0, 0] if n and d else NULL
    cdef const double *sp = &s[0] if s is not None and n else NULL
    cdef const double *wp = &w[0] if d else NULL
    cdef const double *cp = &centre[0] if centre is not None and d else NULL
    cdef const uint8_t *pp = &prev[0] if prev is not None and n else NULL
    cdef uint8_t *mp = &mask[0] if mask is not None and n else NULL
    cdef double *rp = &r[0] if n else NULL
    cdef double *gp = &g[0] if d else NULL
    cdef double *hp = &dH[0, 0] if dH is not None else NULL
    cdef double *vp = &moved[0] if dH is not None else NULL
    # Misaligned typed loads are undefined behaviour in C (NumPy allows such arrays; Dask hands them over).
    for ptr, size, name in ((<size_t>x, sizeof(floating), "X"), (<size_t>(&y[0] if n else NULL), sizeof(double), "y"),
                            (<size_t>sp, sizeof(double), "s")):
        if ptr % size:
            raise ValueError(f"huber_pass: {name} is not aligned to its item size")
    cdef double *work = NULL
    if dH is not None:
        # PyMem_Raw*: thread-safe without the GIL, and visible to tracemalloc.
        work = <double *>PyMem_RawMalloc(<size_t>2 * 512 * p * sizeof(double))
        if work == NULL:
            raise MemoryError()
    try:
        with nogil:
            if floating is double:
                status = fo_huber_pass_d(blas, x, &y[0] if n else NULL, sp, dims, wp, b, epsilon, cp, pp, mp, rp,
                                         gp, hp, vp, work, out)
            else:
                status = fo_huber_pass_s(blas, x, &y[0] if n else NULL, sp, dims, wp, b, epsilon, cp, pp, mp, rp,
                                         gp, hp, vp, work, out)
    finally:
        PyMem_RawFree(work)
    if status != FO_OK:
        raise ValueError(f"huber_pass: the kernel rejected its arguments (status {Status(status).name})")
    return out[0], out[1], out[2], out[3]
