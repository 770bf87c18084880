# The row order of an epoch (csrc/shuffle.c); included by _kernels.pyx.
from libc.stdint cimport uint64_t


def shuffle(const int64_t[::1] rows, uint64_t key, out=None):
    """A uniform random permutation of ``rows``, a function of the 64-bit ``key`` alone.

    Forward Fisher-Yates (Knuth, *TAOCP* vol. 2, 3.4.2) with SplitMix64 words (Steele, Lea & Flood 2014) and
    Lemire's multiply-shift for the bounded draws; see csrc/shuffle.c. The estimator draws ``key`` from its
    ``random_state`` generator every epoch.

    Parameters
    ----------
    rows : ndarray of shape (n,), int64
    key : int in [0, 2**64)
    out : ndarray of shape (n,), int64, or None
        Where to write the permutation (it may be ``rows`` itself: shuffled in place); None allocates it.
        Reusing one array saves the page faults of a new one, which cost about as much as the shuffle.

    Returns
    -------
    order : ndarray of shape (n,), int64
        ``out``, or a new array: ``rows`` permuted.
    """
    order = np.empty(rows.shape[0], dtype=np.int64) if out is None else out
    cdef int64_t[::1] o = order
    if o.shape[0] != rows.shape[0]:
        raise ValueError(f"shuffle: out has {o.shape[0]} entries, rows {rows.shape[0]}")
    if rows.shape[0] > 0:
        with nogil:
            fo_shuffle(&rows[0], rows.shape[0], key, &o[0])
    return order
