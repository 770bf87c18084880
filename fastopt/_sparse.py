"""Closed-form statistics of sparse (CSR) ``X``, from its nonzeros.

The centred Gram of ``[X, Y]`` is what :mod:`fastopt._closed_form` solves. For sparse ``X`` it is accumulated
without ever densifying ``X`` (:func:`fastopt._kernels.csr_gram_stats`): the *uncentred* weighted cross-products
``S = sum_i w_i x_i x_i^T`` from the outer products of each row's nonzeros, ``X^T (Y - mean_Y)`` with the target
centred first (exact, two passes over the dense ``Y``), and the column means from the nonzeros; the centring of
the ``X`` block is then applied to the ``d x d`` result, ``G = S - W m m^T``. Memory beyond ``X`` is O(p^2)
per segment in flight (``p = d + k``), never O(n d).

Centring after accumulation cancels digits where a column's mean is large next to its spread: entry ``G_aa`` is
the difference of ``S_aa`` and ``W m_a^2``, so its rounding error is about ``eps * S_aa``, a relative error of
``eps * S_aa / G_aa``. The state keeps ``S``'s diagonal (``raw_diag``) so that the solve can estimate the loss,
``ratio = max_a (S_aa + W alpha) / (G_aa + W alpha)`` (about ``log10(ratio)`` digits), and refuse Cholesky when
``rcond / ratio < RCOND_CHOLESKY``, i.e. whenever the combined loss could exceed the 4 digits the dense path
allows; the fit then takes the accurate path, Householder QR of the centred rows densified in row blocks of
about 2 MiB (:func:`fastopt._closed_form.chunk_qr_state`), with memory O(p^2 + block).

Rows are cut into segments fixed by the data alone (never by the number of threads), processed in parallel by
threads (the kernel releases the GIL) and merged in a fixed balanced tree, so the result is bit-identical for
any thread count.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np

from fastopt import _kernels

# Multiply-adds of row outer products per segment: with about 4 p^2 for its own set-up (zeroing, centring,
# symmetrising and merging a p x p state), a segment must hold much more work than that to be worth a thread.
SEGMENT_WORK = 2**23
MAX_SEGMENT_ROWS = 2**20


def segment_rows(indptr: np.ndarray, p: int) -> int:
    """Rows per segment: enough outer-product work (at least ``SEGMENT_WORK`` and 16 p^2) to repay a segment's
    O(p^2) set-up; a function of the data alone, so results do not depend on the number of threads."""
    n = indptr.shape[0] - 1
    if n <= 0:
        return 1
    nnz = int(indptr[-1]) - int(indptr[0])
    per_row = max(1.0, (nnz / n) * (nnz / n + 1) / 2)
    return int(np.clip(max(SEGMENT_WORK, 16 * p * p) / per_row, 1024, MAX_SEGMENT_ROWS))


def segment_stats(data, start: int, stop: int):
    """``(weight, mean, gram, raw_diag)`` of rows ``start:stop`` of validated sparse ``data``."""
    X, Y, sw = data.X, data.Y, data.sample_weight
    d, k = X.shape[1], Y.shape[1]
    mean, gram = np.empty(d + k), np.empty((d + k, d + k))
    weight = _kernels.csr_gram_stats(
        X.data, X.indices, X.indptr[start : stop + 1], d, Y[start:stop], None if sw is None else sw[start:stop],
        mean, gram,
    )
    # S_aa = G_aa + W m_a^2 to within eps * S_aa: all the centring-loss estimate needs.
    raw_diag = np.diagonal(gram)[:d] + weight * mean[:d] ** 2
    return weight, mean, gram, raw_diag


def map_segments(data, fn, n_threads: int):
    """``fn(start, stop)`` over the row segments of sparse ``data.X``, in order, on up to ``n_threads`` threads."""
    n = data.X.shape[0]
    step = segment_rows(data.X.indptr, data.X.shape[1] + data.Y.shape[1])
    bounds = [(start, min(start + step, n)) for start in range(0, n, step)]
    threads = min(n_threads, len(bounds))
    if threads <= 1:
        return [fn(*b) for b in bounds]
    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(lambda b: fn(*b), bounds))


def cancellation(params: dict, weight: float, gram: np.ndarray, raw_diag: np.ndarray) -> float:
    """Factor by which centring after accumulation may have magnified the Gram's rounding errors (>= 1)."""
    if not params["fit_intercept"]:
        return 1.0  # the solve adds W m m^T back: the uncentred S is recovered to within eps * S
    d = raw_diag.shape[0]
    ridge = weight * params["alpha"]
    top = raw_diag + ridge
    bottom = np.maximum(np.diagonal(gram)[:d], 0.0) + ridge
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(top > 0, top / bottom, 1.0)
    return float(np.max(ratio, initial=1.0))
