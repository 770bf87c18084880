# The row order of an epoch (csrc/shuffle.c); included by _kernels.pyx.
from libc.stdint cimport uint64_t


def shuffle(const int64_t[::1] rows, uint64_t key):
    """A uniform random permutation of ``rows``, a function of the 64-bit ``key`` alone.

    Forward Fisher-Yates (Knuth, *TAOCP* vol. 2, 3.4.2) with SplitMix64 words (Steele, Lea & Flood 2014) and
    Lemire's multiply-shift for the bounded draws; see csrc/shuffle.c. The estimator draws ``key`` from its
    ``random_state`` generator every epoch.

    Parameters
    ----------
    rows : ndarray of shape (n,), int64
    key : int in [0, 2**64)

    Returns
    -------
    order : ndarray of shape (n,), int64
        A new array: ``rows`` permuted.
    """
    out = np.empty(rows.shape[0], dtype=np.int64)
    cdef int64_t[::1] o = out
    if rows.shape[0] > 0:
        with nogil:
            fo_shuffle(&rows[0], rows.shape[0], key, &o[0])
    return out
