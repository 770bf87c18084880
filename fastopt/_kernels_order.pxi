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
    if isinstance(rows, numbers.Integral):
        n = rows
        if n < 0:
            raise ValueError(f"shuffle: {n} rows")
    else:
        r = rows
        n = r.shape[0]
        rp = &r[0] if n else NULL
    order = np.empty(n, dtype=np.int64) if out is None else out
    cdef int64_t[::1] o = order
    if o.shape[0] != n:
        raise ValueError(f"shuffle: out has {o.shape[0]} entries, rows {n}")
    if n > 0:
        with nogil:
            fo_shuffle(rp, n, key, &o[0])
    return order
