# The row order of an epoch (csrc/shuffle.c); included by _kernels.pyx.
from libc.stdint cimport uint64_t


def shuffle(rows, uint64_t key, out=None):
    """A uniform random permutation of ``rows``, a function of the 64-bit ``key`` alone.

    Forward Fisher-Yates (Knuth, *TAOCP* vol. 2, 3.4.2) with SplitMix64 words (Steele, Lea & Flood 2014) and
    Lemire's multiply-shift for the bounded draws; see csrc/shuffle.c. The estimator draws ``key`` from its
    ``random_state`` generator every epoch.

    Parameters
    ----------
    rows : ndarray of shape (n,), int64, or int
        The rows to permute; an int ``n`` stands for ``0 .. n-1``, which the shuffle writes itself (the same
        permutation as of ``np.arange(n)``, without reading one).
    key : int in [0, 2**64)
    out : ndarray of shape (n,), int64, or None
        Where to write the permutation (it may be ``rows`` itself: shuffled in place); None allocates it.
        Reusing one array saves the page faults of a new one, which cost about as much as the shuffle.

    Returns
    -------
    order : ndarray of shape (n,), int64
        ``out``, or a new array: ``rows`` permuted.
    """
    cdef const int64_t[::1] r
    cdef const int64_t *rp = NULL
    cdef Py_ssize_t n
    n, view, order = _shuffle_args("shuffle", rows, out)
    if view is not None and n:
        r = view
        rp = &r[0]
    cdef int64_t[::1] o = order
    if n > 0:
        with nogil:
            fo_shuffle(rp, n, key, &o[0])
    return order


cdef tuple _shuffle_args(str name, rows, out):
    """The arguments of :func:`shuffle` and :func:`shuffle_start` checked: ``(n, view, order)``, ``view`` the rows
    as a read-only int64 memoryview (None for an int ``n``, the rows ``0 .. n-1``), ``order`` ``out`` or a new
    n-row array."""
    cdef const int64_t[::1] r
    cdef Py_ssize_t n
    view = None
    if isinstance(rows, numbers.Integral):
        n = rows
        if n < 0:
            raise ValueError(f"{name}: {n} rows")
    else:
        r = rows
        n = r.shape[0]
        view = r
    order = np.empty(n, dtype=np.int64) if out is None else out
    cdef int64_t[::1] o = order
    if o.shape[0] != n:
        raise ValueError(f"{name}: out has {o.shape[0]} entries, rows {n}")
    return n, view, order
