# cython: language_level=3
"""Typed wrappers over the C kernels in csrc/.

Every public name here has a pure-NumPy twin with the same name and arguments in fastopt._reference;
tests/test_parity.py enumerates both. Inputs are trusted: fastopt._validation has already made them
C-contiguous float32/float64 of matching shapes, so nothing is re-checked here.
"""
from enum import IntEnum

from cpython.exc cimport PyErr_CheckSignals
from libc.stdint cimport uintptr_t

cimport scipy.linalg.cython_blas as cblas
cimport scipy.linalg.cython_lapack as clapack

from fastopt._kernels cimport *


class Status(IntEnum):
    """Return codes of the C kernels (values pinned to csrc/fastopt.h by a test)."""

    OK = FO_OK
    NONFINITE_LOSS = FO_NONFINITE_LOSS
    DIVERGED = FO_DIVERGED
    BAD_ARGUMENT = FO_BAD_ARGUMENT
    INTERRUPTED = FO_INTERRUPTED


cdef fo_blas _BLAS

# SciPy's bundled OpenBLAS (0.3.30, two threads) crashed the process (SIGSEGV) in its threaded dsyrk on an output
# of about 15,500 columns or more (15,000 worked at 1,024 inner; 20,000 crashed at 256): the dense Gram and the
# Huber Hessian of that many columns reached it. Above _SYRK_PANEL_MIN columns the table's dsyrk (uplo "U",
# trans "N", as they call it) updates _SYRK_PANEL columns of the result at a time, the diagonal block by dsyrk and
# the block above it by dgemm (which ran at 16,384-30,000 rows); the same sums to rounding.
cdef int _SYRK_PANEL_MIN = 8192
cdef int _SYRK_PANEL = 2048


cdef void _syrk_upper_panels(char *trans, int n, int k, double *alpha, double *a, int lda, double *beta, double *c,
                             int ldc, int panel) noexcept nogil:
    """``C = alpha op(A) op(A)^T + beta C`` on ``C``'s upper triangle (``dsyrk``, ``uplo="U"``; ``op(A)`` is n x k,
    ``A`` itself k x n for ``trans="T"``), ``panel`` columns of ``C`` at a time: the diagonal block by ``dsyrk``,
    the block above it by ``dgemm``."""
    cdef int c0 = 0, w
    cdef char uplo = b"U"
    cdef char notrans = b"N"
    cdef char transposed = b"T"
    cdef bint t = trans[0] in (b"T", b"t")
    cdef double *panel_a
    while c0 < n:
        w = panel if panel < n - c0 else n - c0
        panel_a = a + (<size_t>c0 * lda if t else c0)  # op(A)'s rows c0 .. c0 + w - 1
        cblas.dsyrk(&uplo, trans, &w, &k, alpha, panel_a, &lda, beta, c + c0 + <size_t>c0 * ldc, &ldc)
        if c0 > 0:
            cblas.dgemm(&transposed if t else &notrans, &notrans if t else &transposed, &c0, &w, &k, alpha, a, &lda,
                        panel_a, &lda, beta, c + <size_t>c0 * ldc, &ldc)
        c0 += w


cdef void _dsyrk_panels(char *uplo, char *trans, int *n, int *k, double *alpha, double *a, int *lda, double *beta,
                        double *c, int *ldc) noexcept nogil:
    if n[0] <= _SYRK_PANEL_MIN or uplo[0] not in (b"U", b"u") or trans[0] not in (b"N", b"n"):
        cblas.dsyrk(uplo, trans, n, k, alpha, a, lda, beta, c, ldc)
    else:
        _syrk_upper_panels(trans, n[0], k[0], alpha, a, lda[0], beta, c, ldc[0], _SYRK_PANEL)


def _syrk_panels(int panel_min, int panel):
    """Set the table's dsyrk panels (tests); returns the previous ``(panel_min, panel)``."""
    global _SYRK_PANEL_MIN, _SYRK_PANEL
    if panel < 1:
        raise ValueError("_syrk_panels: panel must be positive")
    old = (_SYRK_PANEL_MIN, _SYRK_PANEL)
    _SYRK_PANEL_MIN, _SYRK_PANEL = panel_min, panel
    return old


cdef void _fill_blas_table() noexcept:
    # SciPy exports its BLAS as C function pointers; taking them here means csrc/ never links BLAS itself.
    _BLAS.dsyrk = <fo_dsyrk_t>_dsyrk_panels


_fill_blas_table()

cdef fo_lapack _LAPACK
_LAPACK.dtpqrt = <fo_dtpqrt_t>clapack.dtpqrt
_LAPACK.dgeqrf = <fo_dgeqrf_t>clapack.dgeqrf

# The same tables over a private single-threaded BLAS instance (fastopt._serial_blas), for the closed form's
# parallel segments (``serial=True``); filled once, before first use, by _use_serial_blas.
cdef fo_blas _BLAS_SERIAL
cdef fo_lapack _LAPACK_SERIAL
cdef bint _SERIAL_READY = False

# LAPACK of the closed form's tail (the R merges and the d x d solve, _kernels_tail.pxi), outside the C tables.
ctypedef void (*_dpotrf_t)(char *, int *, double *, int *, int *) noexcept nogil
cdef _dpotrf_t _DPOTRF = <_dpotrf_t>clapack.dpotrf
cdef _dpotrf_t _DPOTRF_SERIAL = NULL
ctypedef void (*_dpstrf_t)(char *, int *, double *, int *, int *, int *, double *, double *, int *) noexcept nogil
cdef _dpstrf_t _DPSTRF = <_dpstrf_t>clapack.dpstrf
cdef _dpstrf_t _DPSTRF_SERIAL = NULL
ctypedef void (*_dtrtrs_t)(char *, char *, char *, int *, int *, double *, int *, double *, int *,
                           int *) noexcept nogil
cdef _dtrtrs_t _DTRTRS = <_dtrtrs_t>clapack.dtrtrs
cdef _dtrtrs_t _DTRTRS_SERIAL = NULL
ctypedef void (*_dtrmm_t)(char *, char *, char *, char *, int *, int *, double *, double *, int *, double *,
                          int *) noexcept nogil
cdef _dtrmm_t _DTRMM = <_dtrmm_t>cblas.dtrmm
cdef _dtrmm_t _DTRMM_SERIAL = NULL


def _use_serial_blas(dict addresses):
    """Fill the single-threaded tables from raw function addresses (see :mod:`fastopt._serial_blas`)."""
    global _SERIAL_READY, _DPOTRF_SERIAL, _DPSTRF_SERIAL, _DTRTRS_SERIAL, _DTRMM_SERIAL
    _BLAS_SERIAL.dsyrk = <fo_dsyrk_t><uintptr_t>addresses["dsyrk"]
    _LAPACK_SERIAL.dtpqrt = <fo_dtpqrt_t><uintptr_t>addresses["dtpqrt"]
    _LAPACK_SERIAL.dgeqrf = <fo_dgeqrf_t><uintptr_t>addresses["dgeqrf"]
    _DPOTRF_SERIAL = <_dpotrf_t><uintptr_t>addresses["dpotrf"]
    _DPSTRF_SERIAL = <_dpstrf_t><uintptr_t>addresses["dpstrf"]
    _DTRTRS_SERIAL = <_dtrtrs_t><uintptr_t>addresses["dtrtrs"]
    _DTRMM_SERIAL = <_dtrmm_t><uintptr_t>addresses["dtrmm"]
    _SERIAL_READY = True


cdef int _check_serial(bint serial, str kernel) except -1:
    if serial and not _SERIAL_READY:
        raise ValueError(f"{kernel}: serial=True needs the private single-threaded BLAS (fastopt._serial_blas)")
    return 0

# ---------------------------------------------------------------- closed form
include "_kernels_gram.pxi"
include "_kernels_tsqr.pxi"
include "_kernels_tail.pxi"
include "_kernels_csr_gram.pxi"

# ---------------------------------------------------------------- optimizers
include "_kernels_optim.pxi"

# ---------------------------------------------------------------- row orders
include "_kernels_order.pxi"

# ---------------------------------------------------------------- sparse epoch
include "_kernels_csr.pxi"

# ---------------------------------------------------------------- Krylov solvers
include "_kernels_krylov.pxi"

# ---------------------------------------------------------------- Huber Newton
include "_kernels_huber.pxi"
