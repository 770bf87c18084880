"""A single-threaded BLAS for the closed form's parallel segments, without touching the process's BLAS settings.

The closed form runs row segments on parallel threads, each of which must call BLAS/LAPACK single-threaded (two
threads each starting a two-thread OpenBLAS call made the 1e6 x 100 Gram pass about 25 times slower, measured).
OpenBLAS offers no per-thread limit: ``openblas_set_num_threads_local`` (0.3.27+) calls the process-wide setter
in its pthreads and OpenMP builds alike (measured with SciPy's bundled 0.3.30: another thread's
``openblas_get_num_threads`` reads 1 during and after the call), and ``threadpoolctl`` limits are process-wide.

So, on glibc, this module loads a *private instance* of the OpenBLAS library that ``scipy.linalg.cython_blas``
uses, with ``dlmopen(LM_ID_NEWLM)``: the same file in a new link namespace, with globals of its own. Its thread
count is set to 1 once, at load; the process's BLAS (what NumPy, SciPy and ``threadpoolctl`` see and control)
is never touched, and ``threadpoolctl`` does not list the private instance (``dl_iterate_phdr`` reports the
caller's namespace only). Being the same code, it computes the same bits as the shared library limited to one
thread. Where that is not possible (not glibc, no OpenBLAS, a symbol missing, ``FASTOPT_PRIVATE_BLAS=0``),
:func:`tables` returns None and the caller falls back to a process-wide one-thread limit for the duration of its
parallel section, one section at a time (documented in the README).
"""
from __future__ import annotations

import ctypes
import os
import sys
import threading

__all__ = ["tables"]

# Functions of the kernels' BLAS and LAPACK tables (csrc/fastopt.h: fo_blas, fo_lapack), and those of the closed
# form's tail (fastopt/_kernels_tail.pxi): dpotrf, the pivoted path's dpstrf, dtrtrs for its triangular solves and
# dtrmm for the products of its condition estimate.
BLAS_NAMES = ("dsyrk", "dtrmm")
LAPACK_NAMES = ("dtpqrt", "dgeqrf", "dpotrf", "dpstrf", "dtrtrs")
_LM_ID_NEWLM = -1
_RTLD_NOW = 2

_lock = threading.Lock()
_loaded = False
_tables: dict[str, int] | None = None


def _scipy_openblas():
    """``(path, symbol prefix)`` of the OpenBLAS behind ``scipy.linalg.cython_blas``, or None."""
    import scipy.linalg.cython_blas  # loads SciPy's BLAS, so threadpoolctl can see it
    from threadpoolctl import threadpool_info

    scipy_dir = os.path.dirname(os.path.dirname(os.path.abspath(scipy.__file__)))
    for lib in threadpool_info():
        path = lib.get("filepath") or ""
        if lib.get("internal_api") == "openblas" and os.path.dirname(path).startswith(scipy_dir) \
                and os.path.basename(os.path.dirname(path)) == "scipy.libs":
            prefix = lib.get("prefix") or ""
            return path, ("scipy_" if prefix.startswith("libscipy_openblas") else "")
    return None


def _load() -> dict[str, int] | None:
    if not sys.platform.startswith("linux") or os.environ.get("FASTOPT_PRIVATE_BLAS", "1") == "0":
        return None
    found = _scipy_openblas()
    if found is None:
        return None
    path, prefix = found
    try:
        libc = ctypes.CDLL(None)
        dlmopen, dlsym = libc.dlmopen, libc.dlsym
    except (OSError, AttributeError):  # not glibc
        return None
    dlmopen.restype, dlmopen.argtypes = ctypes.c_void_p, [ctypes.c_long, ctypes.c_char_p, ctypes.c_int]
    dlsym.restype, dlsym.argtypes = ctypes.c_void_p, [ctypes.c_void_p, ctypes.c_char_p]
    handle = dlmopen(_LM_ID_NEWLM, os.fsencode(path), _RTLD_NOW)
    if not handle:
        return None
    set_threads = dlsym(handle, f"{prefix}openblas_set_num_threads".encode())
    get_threads = dlsym(handle, f"{prefix}openblas_get_num_threads".encode())
    addresses = {name: dlsym(handle, f"{prefix}{name}_".encode()) for name in BLAS_NAMES + LAPACK_NAMES}
    if not (set_threads and get_threads and all(addresses.values())):
        return None  # the handle stays open: unloading a library with live helper threads is not safe
    ctypes.CFUNCTYPE(None, ctypes.c_int)(set_threads)(1)
    if ctypes.CFUNCTYPE(ctypes.c_int)(get_threads)() != 1:
        return None
    return addresses


def tables() -> dict[str, int] | None:
    """Addresses of the private single-threaded BLAS/LAPACK functions (loaded once per process), or None."""
    global _loaded, _tables
    if not _loaded:
        with _lock:
            if not _loaded:
                _tables = _load()
                if _tables is not None:
                    from fastopt import _kernels

                    _kernels._use_serial_blas(_tables)
                _loaded = True
    return _tables
