"""Pure-NumPy twins of every kernel in :mod:`fastopt._kernels`.

Same names, same arguments, same outputs (written into the same output arrays); each mirrors its compiled
twin step for step so tests/test_parity.py can compare them after identical inputs. Slow by design: clarity
over speed.
"""
from __future__ import annotations

import numbers

import numpy as np
import scipy.linalg
import scipy.sparse

# ---------------------------------------------------------------- closed form


# csrc/tsqr.c's FO_TSQR_FIRST_ROWS.
TSQR_FIRST_ROWS = 256


def _block_mean(X, Y, sample_weight, i0, block_rows):
    """Pass 1 of the closed-form block loops (csrc/block_mean.h): the block ``Z`` in float64, its weights, their
    sum ``wb`` and, when ``wb > 0``, the block's weighted mean."""
    Z = np.hstack([X[i0 : i0 + block_rows], Y[i0 : i0 + block_rows]]).astype(np.float64)
    w = np.ones(Z.shape[0]) if sample_weight is None else sample_weight[i0 : i0 + block_rows].astype(np.float64)
    wb = w.sum()
    return Z, w, wb, ((w @ Z) / wb if wb != 0.0 else None)


def _stopped(stop, name):
    """The kernels' check of their stop flag (``fo_stop_requested``): raises as their wrappers do."""
    if stop is not None and stop[0]:
        raise KeyboardInterrupt(f"{name}: stopped by its stop flag")


def gram_stats(X, Y, sample_weight, mean, gram, block_rows, serial=False, stop=None):
    """Twin of :func:`fastopt._kernels.gram_stats` (csrc/gram.c): same blocks, same merges, in NumPy.

    Weighted, centred sufficient statistics of ``Z = [X, Y]``, accumulated in float64: ``mean`` receives the
    weighted column means, ``gram`` the centred weighted cross-products ``sum_i w_i (z_i - mean)(z_i - mean)^T``;
    returns ``sum_i w_i``. ``serial`` (which BLAS instance the kernel calls) does not change the arithmetic;
    ``stop``, read before each block, raises ``KeyboardInterrupt`` once set.
    """
    weight = 0.0
    mean[:] = 0.0
    gram[:] = 0.0
    for i0 in range(0, X.shape[0], block_rows):
        _stopped(stop, "gram_stats")
        Z, w, wb, mb = _block_mean(X, Y, sample_weight, i0, block_rows)
        if wb == 0.0:
            continue
        Zc = np.sqrt(w)[:, None] * (Z - mb)
        # Chan, Golub & LeVeque: M_ab = M_a + M_b + (w_a w_b / w_ab) delta delta^T, delta = mean_b - mean_a.
        delta = mb - mean
        gram += Zc.T @ Zc + (weight * (wb / (weight + wb))) * np.outer(delta, delta)
        mean += (wb / (weight + wb)) * delta
        weight += wb
    return weight


def tsqr_stats(X, Y, sample_weight, mean, r, block_rows, serial=False, stop=None):
    """Twin of :func:`fastopt._kernels.tsqr_stats` (csrc/tsqr.c): same blocks, same correction rows, in NumPy.

    Weighted means of ``Z = [X, Y]`` into ``mean`` and, into ``r``, the upper-triangular ``R`` with a
    non-negative diagonal and ``R^T R = sum_i w_i (z_i - mean)(z_i - mean)^T``, by Householder QR of each block
    (centred on its own mean, scaled by ``sqrt(w)``) stacked under the running ``R`` and the mean-correction row
    ``sqrt(W_a W_b / (W_a + W_b)) (mean_b - mean_a)``; returns ``sum_i w_i``. ``serial`` (which LAPACK instance
    the kernel calls) does not change the arithmetic; ``stop``, read before each block, raises
    ``KeyboardInterrupt`` once set.
    """
    p = mean.shape[0]
    weight = 0.0
    mean[:] = 0.0
    r[:] = 0.0
    first = min(block_rows, TSQR_FIRST_ROWS)  # the kernel's first block is at most this long (see csrc/tsqr.c)
    for i0 in [0, *range(first, X.shape[0], block_rows)] if X.shape[0] else []:
        _stopped(stop, "tsqr_stats")
        Z, w, wb, mb = _block_mean(X, Y, sample_weight, i0, first if i0 == 0 else block_rows)
        if wb == 0.0:
            continue
        rows = [r, np.sqrt(w)[:, None] * (Z - mb)]
        if weight > 0:
            rows.append(np.sqrt(weight * (wb / (weight + wb))) * (mb - mean)[None, :])
        # The first block (weight 0: R is still zero) alone, as the kernel's dgeqrf; later ones under R.
        tri = np.linalg.qr(rows[1] if weight == 0 else np.vstack(rows), mode="r")
        r[:] = 0.0
        r[: min(tri.shape[0], p)] = tri[:p]
        mean += (wb / (weight + wb)) * (mb - mean)
        weight += wb
    r *= np.where(np.diag(r) < 0, -1.0, 1.0)[:, None]  # the sign convention of the kernel: diagonal >= 0
    return weight


def geqrf_inplace(a, serial=False):
    """Twin of :func:`fastopt._kernels.geqrf_inplace`: Householder QR of ``a`` (m, n) in place, by NumPy's
    ``qr``; the upper triangle (``min(m, n)`` rows) becomes ``R``. NumPy's raw mode returns the same dgeqrf output
    (reflectors below the triangle); returns LAPACK's ``info`` (0). ``serial`` does not change the arithmetic.
    """
    if a.size:
        a[...] = np.linalg.qr(a, mode="raw")[0].T
    return 0


def potrf_upper(a, serial=False, block=-1):
    """Twin of :func:`fastopt._kernels.potrf_upper`: the upper Cholesky factor ``U`` (``U^T U = a``) into the
    upper triangle of ``a`` by NumPy's ``cholesky``; the strictly lower triangle is left as it was. Returns 0, or
    1 when ``a`` is not positive definite (LAPACK reports the order of the failing minor; a positive ``info``
    is all the caller reads). ``serial`` does not change the arithmetic; ``block`` changes only its order.
    """
    try:
        U = np.linalg.cholesky(a).T
    except np.linalg.LinAlgError:
        return 1
    upper = np.triu_indices(a.shape[0])
    a[upper] = U[upper]
    return 0


def pstrf_upper(a, tol, serial=False):
    """Twin of :func:`fastopt._kernels.pstrf_upper`: the pivoted Cholesky factorisation ``P^T a P = U^T U`` of
    the symmetric ``a`` (its upper triangle read), by the outer-product algorithm: at step ``j`` the largest
    diagonal of the remaining Schur complement (the first, on ties) is the pivot, and the factorisation stops
    when it is at or below ``tol`` (negative: ``n eps max(diag(a))``, LAPACK's default). The upper triangle of
    ``U``'s first ``rank`` rows is written into ``a``'s; returns ``(piv, rank, info)`` with ``piv`` counting
    from 1 and ``info`` 1 when ``rank < n``. ``serial`` does not change the arithmetic.
    """
    n = a.shape[0]
    S = np.triu(a) + np.triu(a, 1).T
    piv = np.arange(n)
    if n == 0:
        return piv.astype(np.intc), 0, 0
    if tol < 0:
        tol = n * np.finfo(np.float64).eps * np.max(np.diag(S))
    U = np.zeros((n, n))
    rank = n
    for j in range(n):
        q = j + int(np.argmax(np.diag(S)[j:]))
        if not S[q, q] > tol:
            rank = j
            break
        S[[j, q]] = S[[q, j]]
        S[:, [j, q]] = S[:, [q, j]]
        U[:, [j, q]] = U[:, [q, j]]
        piv[[j, q]] = piv[[q, j]]
        U[j, j] = np.sqrt(S[j, j])
        U[j, j + 1 :] = S[j, j + 1 :] / U[j, j]
        S[j + 1 :, j + 1 :] -= np.outer(U[j, j + 1 :], U[j, j + 1 :])
    upper = np.triu_indices(n)
    keep = upper[0] < rank
    a[upper[0][keep], upper[1][keep]] = U[upper[0][keep], upper[1][keep]]
    return (piv + 1).astype(np.intc), rank, int(rank < n)


def trtrs_upper(a, r, b, trans=False, serial=False):
    """Twin of :func:`fastopt._kernels.trtrs_upper`: ``b`` overwritten by ``U^-1 b`` (``U^-T b`` with
    ``trans``), ``U`` the upper triangle of ``a[:r, :r]``, by SciPy's ``solve_triangular``; returns 0, or
    ``j > 0`` when ``U[j-1, j-1]`` is zero (``b`` unchanged). ``serial`` does not change the arithmetic.
    """
    U = np.triu(a[:r, :r])
    zero = np.flatnonzero(np.diag(U) == 0)
    if zero.size:
        return int(zero[0]) + 1
    if r:
        b[...] = scipy.linalg.solve_triangular(U, b, trans="T" if trans else "N")
    return 0


def syrk_rows(a, c, beta, serial=False):
    """Twin of :func:`fastopt._kernels.syrk_rows`: the upper triangle of ``c`` overwritten by that of ``a a^T +
    beta c``; the strict lower triangle left as it was. ``serial`` does not change the arithmetic."""
    upper = np.triu_indices(c.shape[0])
    c[upper] = (a @ a.T + (beta * c if beta else 0.0))[upper]


def trmm_upper(a, r, b, trans=False, serial=False):
    """Twin of :func:`fastopt._kernels.trmm_upper`: ``b`` overwritten by ``U b`` (``U^T b`` with ``trans``), ``U``
    the upper triangle of ``a[:r, :r]``. ``serial`` does not change the arithmetic."""
    U = np.triu(a[:r, :r])
    b[...] = (U.T if trans else U) @ b


def _two_sum(a, b):
    s = a + b
    t = s - a
    return s, (a - (s - t)) + (b - t)


def _two_prod(a, b):
    """``a * b`` and its exact rounding error, by Dekker's splitting (as the kernel)."""
    p = a * b
    split = 134217729.0  # 2^27 + 1
    ca, cb = split * a, split * b
    ah, bh = ca - (ca - a), cb - (cb - b)
    al, bl = a - ah, b - bh
    return p, ((ah * bh - p) + ah * bl + al * bh) + al * bl


def refine_residual(X, Y, sample_weight, coef, intercept, grad, rsum):
    """Twin of :func:`fastopt._kernels.refine_residual`: the same compensated operations (Dot2), in the same
    order, vectorised over rows for the residuals and over ``(k, d)`` for the sums (rows in order)."""
    n, d = X.shape
    s, c = _two_sum(Y.T, -intercept[:, None])  # (k, n)
    for col in range(d):
        p, pe = _two_prod(X[:, col][None, :], -coef[:, col][:, None])
        s, q = _two_sum(s, p)
        c = c + (q + pe)
    u = s + c
    if sample_weight is not None:
        u = u * sample_weight[None, :]
    gs, gerr = np.zeros(grad.shape), np.zeros(grad.shape)
    ss, serr = np.zeros(rsum.shape), np.zeros(rsum.shape)
    for i in range(n):
        ss, q = _two_sum(ss, u[:, i])
        serr = serr + q
        p, pe = _two_prod(u[:, i][:, None], X[i][None, :])
        gs, q = _two_sum(gs, p)
        gerr = gerr + (q + pe)
    grad[...] = gs + gerr
    rsum[...] = ss + serr


def csr_gram_stats(data, indices, indptr, n_features, Y, sample_weight, mean, gram, stop=None):
    """Twin of :func:`fastopt._kernels.csr_gram_stats` (csrc/csr_gram.c): the same two passes, in NumPy/SciPy.

    Rows ``i = 0 .. len(indptr) - 2`` of a canonical CSR matrix whose row ``i`` is
    ``data[indptr[i]:indptr[i + 1]]`` at columns ``indices[...]`` (``indptr`` holds absolute offsets, so a slice
    of a larger matrix's ``indptr`` selects its rows); ``Y`` and ``sample_weight`` hold those rows only. Outputs as
    :func:`gram_stats`; returns ``sum_i w_i``. ``stop``, read before each pass (the kernel reads it before each
    row), raises ``KeyboardInterrupt`` once set.
    """
    _stopped(stop, "csr_gram_stats")
    n, d = Y.shape[0], n_features
    w = np.ones(n) if sample_weight is None else sample_weight.astype(np.float64)
    first, last = int(indptr[0]), int(indptr[-1])
    X = scipy.sparse.csr_array(
        (data[first:last].astype(np.float64), indices[first:last], np.asarray(indptr, dtype=np.int64) - first),
        shape=(n, d),
    )
    Y = Y.astype(np.float64)
    mean[:] = 0.0
    gram[:] = 0.0
    # Pass 1: weight and weighted means.
    weight = w.sum()
    if weight == 0.0:
        return 0.0
    mx = (X.T @ w) / weight
    my = (w @ Y) / weight
    # Pass 2: uncentred cross-products of X from its nonzeros; Y centred on its mean (so the X-Y and Y-Y blocks
    # need no correction beyond the residual sum r of the centred Y, zero up to round-off).
    _stopped(stop, "csr_gram_stats")
    Yc = Y - my
    r = w @ Yc
    Sxx = (X.T @ (X.multiply(w[:, None]))).toarray()
    Sxy = X.T @ (w[:, None] * Yc)
    gram[:d, :d] = Sxx - weight * np.outer(mx, mx)
    gram[:d, d:] = Sxy - np.outer(mx, r)
    gram[d:, :d] = gram[:d, d:].T
    gram[d:, d:] = Yc.T @ (w[:, None] * Yc) - np.outer(r, r) / weight
    mean[:d], mean[d:] = mx, my
    return weight

# ---------------------------------------------------------------- Krylov solvers


def _krylov_rows(t, Y, target, sqrt_weight, c, shift):
    """``a = s (t + c y - shift)`` and ``e = s a`` of the fused pass, from the row products ``t = X v``."""
    s = np.ones(t.shape[0]) if sqrt_weight is None else sqrt_weight
    y = 0.0 if Y is None else Y[:, target].astype(np.float64)
    a = s * (t + c * y - shift)
    return a, s * a


def krylov_dense(X, Y, target, sqrt_weight, v, c, shift, z, z_squares=None):
    """Twin of :func:`fastopt._kernels.krylov_dense` (csrc/krylov.c): ``a = s (X v + c y - shift)``,
    ``z = X^T (s a)``, ``z_squares = (X * X)^T (s a)`` when given; returns ``(sum(a^2), sum(s a))``, in float64
    whatever the dtype of ``X``."""
    if v.shape[0] != X.shape[1] or z.shape[0] != X.shape[1]:
        raise ValueError("krylov_dense: inconsistent shapes")
    Xd = X.astype(np.float64)
    a, e = _krylov_rows(Xd @ v, Y, target, sqrt_weight, c, shift)
    z[:] = Xd.T @ e
    if z_squares is not None:
        z_squares[:] = (Xd * Xd).T @ e
    return float(a @ a), float(e.sum())


def csr_check(indices, indptr, d):
    """Twin of :func:`fastopt._kernels.csr_check`."""
    n = indptr.shape[0] - 1
    if n < 0:
        raise ValueError("krylov_csr: inconsistent shapes")
    if n and (indptr[0] < 0 or indptr[n] > indices.shape[0]):
        raise ValueError("krylov_csr: indptr points outside data")
    if np.any(np.diff(indptr) < 0):
        raise ValueError("krylov_csr: indptr is not non-decreasing")
    cols = indices[indptr[0] : indptr[n]] if n else indices[:0]
    bad = np.flatnonzero((cols < 0) | (cols >= d))
    if bad.size:
        raise ValueError(f"krylov_csr: column index {cols[bad[0]]} outside [0, {d})")


def _check_csr_rows(name, data, indices, indptr, n_cols, shapes_ok):
    """The compiled CSR passes' checks, in their order (``shapes_ok``: the caller's shapes agree); returns the
    stored column indices of the rows."""
    n = indptr.shape[0] - 1
    if not shapes_ok:
        raise ValueError(f"{name}: inconsistent shapes")
    if n and (indptr[0] < 0 or indptr[n] > indices.shape[0] or indptr[n] > data.shape[0]):
        raise ValueError(f"{name}: indptr points outside data")
    if np.any(np.diff(indptr) < 0):
        raise ValueError(f"{name}: indptr is not non-decreasing")
    cols = indices[indptr[0] : indptr[n]] if n else indices[:0]
    if np.any((cols < 0) | (cols >= n_cols)):
        raise ValueError(f"{name}: a column index outside [0, {n_cols})")
    return cols


def csr_affine_map(data, indices, indptr, n_cols, shift, scale, shifted_cols=None, slot_of=None):
    """Twin of :func:`fastopt._kernels.csr_affine_map`: ``(X - shift) / scale`` of CSR ``X`` as ``(data, indices,
    indptr)``, each row's unshifted stored values (in order) and then its shifted columns' nonzero values; the
    kept ``shifted_cols`` and ``slot_of``, when given, must be ``shift``'s (checked here in full)."""
    n = indptr.shape[0] - 1
    _check_csr_rows("csr_affine_map", data, indices, indptr, n_cols,
                    n >= 0 and shift.shape[0] == n_cols and scale.shape[0] == n_cols)
    shifted = np.flatnonzero(shift)
    if (shifted_cols is None) != (slot_of is None):
        raise ValueError("csr_affine_map: give shifted_cols and slot_of together")
    if shifted_cols is not None:
        slot = np.full(n_cols, -1)
        slot[shifted] = np.arange(shifted.size)
        if not (np.array_equal(shifted_cols, shifted) and np.array_equal(slot_of[:n_cols], slot)):
            raise ValueError("csr_affine_map: slot_of is not the inverse of shifted_cols")
    out_data, out_ind, out_ptr = [], [], [0]
    for i in range(n):
        row_cols, row_vals = indices[indptr[i] : indptr[i + 1]], data[indptr[i] : indptr[i + 1]].astype(np.float64)
        block = np.zeros(shifted.size)
        for c, v in zip(row_cols, row_vals, strict=True):
            if shift[c] != 0:
                block[np.searchsorted(shifted, c)] = v  # the last one stored wins
            else:
                out_data.append(data.dtype.type(v / scale[c]))
                out_ind.append(c)
        mapped = ((block - shift[shifted]) / scale[shifted]).astype(data.dtype)
        for c, w in zip(shifted, mapped, strict=True):
            if w != 0:
                out_data.append(w)
                out_ind.append(c)
        out_ptr.append(len(out_data))
    if len(out_data) >= 2**31 or n_cols >= 2**31:
        raise ValueError(f"the centred copy of sparse X would hold {len(out_data)} values; at most 2**31 - 1 fit "
                         "int32.")
    return (np.array(out_data, dtype=data.dtype), np.array(out_ind, dtype=np.int32),
            np.array(out_ptr, dtype=np.int32))


def csr_scaled_values(data, indices, scale):
    """Twin of :func:`fastopt._kernels.csr_scaled_values`: ``data / scale[indices]`` in float64, cast once to
    ``data``'s dtype."""
    if indices.shape[0] != data.shape[0]:
        raise ValueError("csr_scaled_values: inconsistent shapes")
    if np.any((indices < 0) | (indices >= scale.shape[0])):
        raise ValueError(f"csr_scaled_values: a column index outside [0, {scale.shape[0]})")
    return (data.astype(np.float64) / scale[indices]).astype(data.dtype)


def csr_times(data, indices, indptr, W):
    """Twin of :func:`fastopt._kernels.csr_times`: ``X @ W.T`` row by row, each row's stored values added in
    their order from 0, in ``X``'s dtype."""
    n = indptr.shape[0] - 1
    _check_csr_rows("csr_times", data, indices, indptr, W.shape[1], n >= 0)
    out = np.zeros((max(n, 0), W.shape[0]), dtype=data.dtype)
    for i in range(n):
        for j in range(indptr[i], indptr[i + 1]):
            out[i] += data[j] * W[:, indices[j]]
    return out


def csr_column_moments(data, indices, indptr, n_cols, row_weight, means):
    """Twin of :func:`fastopt._kernels.csr_column_moments`: the columns' weighted sums of squares (and with
    ``means`` sums and nonzero counts) by ``np.bincount``, which adds the terms in the stored values' order."""
    n = indptr.shape[0] - 1
    cols = _check_csr_rows("csr_column_moments", data, indices, indptr, n_cols, n >= 0 and row_weight.shape[0] == n)
    values = np.asarray(data[indptr[0] : indptr[n]] if n else data[:0], dtype=np.float64)
    row_w = np.repeat(np.asarray(row_weight, dtype=np.float64), np.diff(indptr))
    with np.errstate(over="ignore", invalid="ignore"):
        squares = np.bincount(cols, weights=row_w * values * values, minlength=n_cols).astype(np.float64)
        if not means:
            return squares, None, None
        sums = np.bincount(cols, weights=row_w * values, minlength=n_cols).astype(np.float64)
    return squares, sums, np.bincount(cols[values != 0], minlength=n_cols).astype(np.int64)


def csr_indicator_columns(data, indices, indptr, n_cols):
    """Twin of :func:`fastopt._kernels.csr_indicator_columns`: whether each column's stored values are all 0 or 1,
    and its count of stored ones, by NumPy masks and ``np.bincount``."""
    n = indptr.shape[0] - 1
    cols = _check_csr_rows("csr_indicator_columns", data, indices, indptr, n_cols, n >= 0)
    values = data[indptr[0] : indptr[n]] if n else data[:0]
    indicator = np.ones(n_cols, dtype=bool)
    indicator[cols[(values != 0) & (values != 1)]] = False
    return indicator, np.bincount(cols[values == 1], minlength=n_cols).astype(np.float64)


def csr_moment_bounds(data, indices, indptr, start, step, count, row_weight, scratch):
    """Twin of :func:`fastopt._kernels.csr_moment_bounds`: the columns' sums by ``np.bincount`` (the stored
    values' order), then ``mu_j^2`` added one by one in the order the columns first appear, and the largest mean
    square; ``scratch`` is only measured (``2 * n_cols`` entries), never written."""
    n, n_cols = indptr.shape[0] - 1, scratch.shape[0] // 2
    if n < 0 or count < 0 or step < 1 or start < 0 or (count and start + (count - 1) * step >= n):
        raise ValueError("csr_moment_bounds: rows outside the matrix")
    if row_weight.shape[0] != count or scratch.shape[0] % 2:
        raise ValueError("csr_moment_bounds: inconsistent shapes")
    rows = start + step * np.arange(count)
    a, b = np.asarray(indptr[rows], dtype=np.int64), np.asarray(indptr[rows + 1], dtype=np.int64)
    if np.any(a < 0) or np.any(b < a) or np.any(b > min(data.shape[0], indices.shape[0])):
        raise ValueError("csr_moment_bounds: indptr points outside data or decreases")
    at = np.concatenate([np.arange(lo, hi) for lo, hi in zip(a, b, strict=True)] + [np.zeros(0, np.int64)])
    cols = np.asarray(indices[at], dtype=np.int64)
    if np.any((cols < 0) | (cols >= n_cols)):
        raise ValueError(f"csr_moment_bounds: a column index outside [0, {n_cols})")
    values = np.asarray(data[at], dtype=np.float64)
    wv = np.repeat(np.asarray(row_weight, dtype=np.float64), b - a) * values
    with np.errstate(over="ignore", invalid="ignore"):
        sums = np.bincount(cols, weights=wv, minlength=n_cols)
        squares = np.bincount(cols, weights=wv * values, minlength=n_cols)
        inv = 1.0 / count if count else 0.0
        first = cols[np.sort(np.unique(cols, return_index=True)[1])]
        mu2, mx = 0.0, 0.0
        for col in first:
            if sums[col] != 0 or squares[col] != 0:
                mu, sq = sums[col] * inv, squares[col] * inv
                mu2 += mu * mu
                if sq > mx or sq != sq:
                    mx = sq
    return float(mu2), float(mx)


def csr_row_squares(data, indptr, start, step, count):
    """Twin of :func:`fastopt._kernels.csr_row_squares`: each row's stored values squared and added in order."""
    n = indptr.shape[0] - 1
    if count < 0 or step < 1 or start < 0 or (count and start + (count - 1) * step >= n):
        raise ValueError("csr_row_squares: rows outside the matrix")
    if n >= 0 and indptr.shape[0] and (indptr[0] < 0 or indptr[n] > data.shape[0]):
        raise ValueError("csr_row_squares: indptr points outside data")
    out = np.empty(count, dtype=np.float64)
    for i in range(count):
        r = start + i * step
        acc = 0.0
        for v in data[indptr[r] : max(indptr[r], indptr[r + 1])].astype(np.float64):
            acc += v * v
        out[i] = acc
    return out


def krylov_csr(data, indices, indptr, Y, target, sqrt_weight, v, c, shift, z, z_squares=None, check=True):
    """Twin of :func:`fastopt._kernels.krylov_csr`: :func:`krylov_dense` on the CSR rows ``indptr`` selects."""
    import scipy.sparse

    n, d = indptr.shape[0] - 1, v.shape[0]
    if z.shape[0] != d or indices.shape[0] != data.shape[0]:
        raise ValueError("krylov_csr: inconsistent shapes")
    if n and (indptr[0] < 0 or indptr[n] > data.shape[0] or indptr[n] < indptr[0]):
        raise ValueError("krylov_csr: indptr points outside data")
    if check:
        csr_check(indices, indptr, d)
    start = int(indptr[0]) if n else 0
    Xs = scipy.sparse.csr_array(
        (data.astype(np.float64)[start : start + (int(indptr[-1]) - start if n else 0)],
         indices[start : int(indptr[-1]) if n else 0], indptr - start), shape=(n, d)
    )
    a, e = _krylov_rows(Xs @ v, Y, target, sqrt_weight, c, shift)
    z[:] = Xs.T @ e
    if z_squares is not None:
        z_squares[:] = Xs.multiply(Xs).T @ e
    return float(a @ a), float(e.sum())

def krylov_moments_csr(data, indices, indptr, Y, sqrt_weight, shift, Z, check=True):
    """Twin of :func:`fastopt._kernels.krylov_moments_csr`: :func:`krylov_csr` with ``v = 0`` (``c = 0``,
    ``shift = -1``, squares; then ``c = 1`` and ``shift[j]`` for each target), its columns into ``Z``."""
    n, d, k = indptr.shape[0] - 1, Z.shape[0], Y.shape[1]
    if n < 0 or indices.shape[0] != data.shape[0] or Y.shape[0] != n or Z.shape[1] != 2 + k \
            or shift.shape[0] != k or (sqrt_weight is not None and sqrt_weight.shape[0] != n):
        raise ValueError("krylov_moments_csr: inconsistent shapes")
    zero = np.zeros(d)
    z, zz = np.empty(d), np.empty(d)
    krylov_csr(data, indices, indptr, Y if k else None, 0, sqrt_weight, zero, 0.0, -1.0, z, zz, check)
    Z[:, 0], Z[:, 1] = z, zz
    ss, se = np.empty(k), np.empty(k)
    for j in range(k):
        ss[j], se[j] = krylov_csr(data, indices, indptr, Y, j, sqrt_weight, zero, 1.0, shift[j], z, None, False)
        Z[:, 2 + j] = z
    return ss, se


def _lanes(terms):
    """Sum in four lanes (entries j mod 4, each in order), added as (l0 + l1) + (l2 + l3): the kernels' order."""
    lanes = [0.0, 0.0, 0.0, 0.0]
    for j, t in enumerate(np.asarray(terms, dtype=np.float64).tolist()):
        lanes[j & 3] += t
    return (lanes[0] + lanes[1]) + (lanes[2] + lanes[3])


def _sum_parts(Z):
    """A pass's segment parts summed in row order, ``((Z_0 + Z_1) + Z_2) + ...``: the kernels' order."""
    q = Z[0].copy()
    for part in Z[1:]:
        q += part
    return q


def cgls_step(step, Z, se, m, L2, p, x, s, lam2=0.0):
    """Twin of :func:`fastopt._kernels.cgls_step`."""
    d = p.shape[0]
    if Z.ndim != 2 or Z.shape[0] < 1 or Z.shape[1] != d or x.shape[0] != d or s.shape[0] != d \
            or (m is not None and m.shape[0] != d) or (L2 is not None and L2.shape[0] != d):
        raise ValueError("cgls_step: inconsistent shapes")
    q = _sum_parts(Z)
    if m is not None:
        q -= se * m
    if L2 is not None:
        q += L2 * p
    elif lam2 != 0.0:
        q += lam2 * p
    x += step * p
    s -= step * q
    return _lanes(s * s)


def cgls_direction(beta, s, p, m, L2, lam2=0.0):
    """Twin of :func:`fastopt._kernels.cgls_direction`."""
    if s.shape[0] != p.shape[0] or (m is not None and m.shape[0] != p.shape[0]) \
            or (L2 is not None and L2.shape[0] != p.shape[0]):
        raise ValueError("cgls_direction: inconsistent shapes")
    p *= beta
    p += s
    ridge = 0.0 if L2 is None and lam2 == 0.0 else _lanes((lam2 if L2 is None else L2) * p * p)
    return (0.0 if m is None else _lanes(m * p)), ridge

def lsqr_before(alpha, v, L, g, ub, m, lam=0.0):
    """Twin of :func:`fastopt._kernels.lsqr_before`."""
    d = g.shape[0]
    ridge = L is not None or lam != 0.0
    if any(a is not None and a.shape[0] != d for a in (v, L, ub if ridge else None, m)):
        raise ValueError("lsqr_before: inconsistent shapes")
    g *= -alpha
    g += v
    uu = 0.0
    if ridge:
        ub *= -alpha
        ub += (lam if L is None else L) * v
        uu = _lanes(ub * ub)
    return (0.0 if m is None else _lanes(m * g)), uu


def lsqr_after(beta, bdiv, se, m, Z, g, ub, L, v, lam=0.0):
    """Twin of :func:`fastopt._kernels.lsqr_after`."""
    d = g.shape[0]
    ridge = L is not None or lam != 0.0
    if Z.ndim != 2 or Z.shape[0] < 1 or Z.shape[1] != d \
            or any(a is not None and a.shape[0] != d for a in (m, ub if ridge else None, L, v)):
        raise ValueError("lsqr_after: inconsistent shapes")
    r = 1.0 / bdiv
    z = _sum_parts(Z)
    if m is not None:
        z -= se * m
    z *= r
    g *= r
    v *= -beta
    v += z
    if ridge:
        ub *= r
        v += (lam if L is None else L) * ub
    return _lanes(v * v)


def lsqr_update(adiv, cx, cw, v, x, w):
    """Twin of :func:`fastopt._kernels.lsqr_update`."""
    if not v.shape[0] == x.shape[0] == w.shape[0]:
        raise ValueError("lsqr_update: inconsistent shapes")
    v *= 1.0 / adiv
    x += cx * w
    w *= cw
    w += v


def lsqr_next(adiv, cx, cw, v, x, w, alpha, L, g, ub, m, lam=0.0):
    """Twin of :func:`fastopt._kernels.lsqr_next`: :func:`lsqr_update`, then :func:`lsqr_before`."""
    ridge = L is not None or lam != 0.0
    if any(a is not None and a.shape[0] != v.shape[0] for a in (x, w, L, g, ub if ridge else None, m)):
        raise ValueError("lsqr_next: inconsistent shapes")
    lsqr_update(adiv, cx, cw, v, x, w)
    return lsqr_before(alpha, v, L, g, ub, m, lam)


# ---------------------------------------------------------------- Huber Newton


def huber_pass(X, y, s, w, b, epsilon, centre, prev, mask, r, g, dH, moved, serial=False):
    """Twin of :func:`fastopt._kernels.huber_pass` (csrc/huber.c): residuals ``r = X w + b - y``, the Huber loss
    and gradient sums, the inlier ``mask`` and, when ``dH`` is given, the Gram change of the rows whose mask
    differs from ``prev`` (see the kernel's docstring); in float64 whatever the dtype of ``X``. ``serial`` (which
    BLAS instance the kernel calls) does not change the arithmetic."""
    n, d = X.shape
    if y.shape[0] != n or r.shape[0] != n or w.shape[0] != d or g.shape[0] != d:
        raise ValueError("huber_pass: inconsistent shapes")
    Xd = X.astype(np.float64)
    sw = np.ones(n) if s is None else s
    r[:] = Xd @ w + b - y
    a = np.abs(r)
    inside = a <= epsilon
    psi = np.where(inside, r, np.where(r > 0, epsilon, -epsilon))
    e = sw * psi
    g[:] = Xd.T @ e
    with np.errstate(invalid="ignore"):  # epsilon = inf: the outer branch is never taken
        loss = float(sw @ np.where(inside, 0.5 * r * r, epsilon * (a - 0.5 * epsilon)))
    if mask is not None:
        mask[:] = inside
    changed = 0
    if dH is not None:
        was = np.zeros(n, bool) if prev is None else prev.astype(bool)
        moves = inside != was
        changed = int(moves.sum())
        rows = moves & (sw != 0)
        Z = Xd[rows] - centre
        if dH.shape[0] == d + 1:
            Z = np.hstack([Z, np.ones((Z.shape[0], 1))])
        Z *= np.sqrt(sw[rows])[:, None]
        sign = np.where(inside[rows], 1.0, -1.0)
        dH[:] = (Z * sign[:, None]).T @ Z
        moved[:] = (Z * Z).sum(axis=0)
    return loss, float(e.sum()), float(changed), float(inside.sum())

# ---------------------------------------------------------------- optimizers
# Mirrors csrc/rules.h and csrc/epoch.c. Element-wise arithmetic is in the array's dtype; the scalars PyTorch
# computes as Python floats (bias corrections, decayed learning rates) are computed in float64 and rounded once.
from fastopt._kernels import Loss, Rule, Status  # noqa: E402  (the C enums; constants, not kernels)

_CLIP_EPS = 1e-6  # torch.nn.utils.clip_grad_norm_ adds this to the norm before dividing


def _with_decay(hyper, w, g, n_decay, coupled=True):
    """The gradient a rule sees: g plus weight_decay * w on the first n_decay entries (coupled L2)."""
    if not coupled or hyper.weight_decay == 0:
        return g.copy()
    real = w.dtype.type
    g = g.copy()
    g[:n_decay] += real(hyper.weight_decay) * w[:n_decay]
    return g


def _sgd(hyper, w, g, state, n_decay, t, lr):
    w -= w.dtype.type(lr) * _with_decay(hyper, w, g, n_decay)


def _momentum(hyper, w, g, state, n_decay, t, lr):
    real = w.dtype.type
    g = _with_decay(hyper, w, g, n_decay)
    v = state[0]
    v[:] = g if t == 1 else real(hyper.momentum) * v + real(1.0 - hyper.dampening) * g
    w -= real(lr) * v


def _nesterov(hyper, w, g, state, n_decay, t, lr):
    real = w.dtype.type
    g = _with_decay(hyper, w, g, n_decay)
    mu = real(hyper.momentum)
    v = state[0]
    v[:] = g if t == 1 else mu * v + g
    w -= real(lr) * (g + mu * v)


def _adagrad(hyper, w, g, state, n_decay, t, lr):
    real = w.dtype.type
    g = _with_decay(hyper, w, g, n_decay)
    clr = real(lr / (1.0 + (t - 1) * hyper.lr_decay))
    r = state[0]
    r += g * g
    w -= clr * (g / (np.sqrt(r) + real(hyper.eps)))


def _rmsprop(hyper, w, g, state, n_decay, t, lr):
    real = w.dtype.type
    g = _with_decay(hyper, w, g, n_decay)
    one_rho = real(1.0 - hyper.rho)
    r, avg, buf = state[0], state[1], state[2]
    r[:] = real(hyper.rho) * r + one_rho * (g * g)
    if hyper.centered:
        avg += one_rho * (g - avg)
        den = np.sqrt(np.maximum(r - avg * avg, real(0))) + real(hyper.eps)  # (NaN stays NaN)
    else:
        den = np.sqrt(r) + real(hyper.eps)
    if hyper.momentum > 0:
        buf[:] = real(hyper.momentum) * buf + g / den
        w -= real(lr) * buf
    else:
        w -= real(lr) * (g / den)


def _adam(hyper, w, g, state, n_decay, t, lr, decoupled=False):
    real = w.dtype.type
    if decoupled and hyper.weight_decay != 0:
        w[:n_decay] *= real(1.0 - lr * hyper.weight_decay)
    g = _with_decay(hyper, w, g, n_decay, coupled=not decoupled)
    step_size = real(lr / (1.0 - hyper.beta1**t))
    bc2_sqrt = real(np.sqrt(1.0 - hyper.beta2**t))
    m, v, vmax = state[0], state[1], state[2]
    m += real(1.0 - hyper.beta1) * (g - m)
    v[:] = real(hyper.beta2) * v + real(1.0 - hyper.beta2) * (g * g)
    if hyper.amsgrad:
        np.maximum(vmax, v, out=vmax)
        v = vmax
    w -= step_size * (m / (np.sqrt(v) / bc2_sqrt + real(hyper.eps)))


def _adamw(hyper, w, g, state, n_decay, t, lr):
    _adam(hyper, w, g, state, n_decay, t, lr, decoupled=True)


_RULES = {
    Rule.SGD: _sgd,
    Rule.MOMENTUM: _momentum,
    Rule.NESTEROV: _nesterov,
    Rule.ADAGRAD: _adagrad,
    Rule.RMSPROP: _rmsprop,
    Rule.ADAM: _adam,
    Rule.ADAMW: _adamw,
}


def step(rule, hyper, params, grad, state, t, lr, n_decay=None):
    """Twin of ``fastopt._kernels.step``: one optimizer step in place on ``params`` and ``state``."""
    if rule not in _RULES:
        return int(Status.BAD_ARGUMENT)
    _RULES[rule](hyper, params, grad, state, params.shape[0] if n_decay is None else n_decay, t, lr)
    return int(Status.OK)


def clip_grad_norm(grad, max_norm):
    """Twin of ``fastopt._kernels.clip_grad_norm``: clip ``grad`` in place; return the norm before."""
    norm = float(np.sqrt(np.sum(grad.astype(np.float64) ** 2)))
    coef = max_norm / (norm + _CLIP_EPS)
    if coef < 1:
        grad *= grad.dtype.type(coef)
    return norm


def _loss_and_derivative(loss, R, epsilon):
    """Per-sample loss values (float64) and derivatives (R's dtype) of residuals R."""
    R64 = R.astype(np.float64)
    if loss == Loss.ABSOLUTE_ERROR:
        return np.abs(R64), np.sign(R)
    if loss == Loss.HUBER:
        inside = np.abs(R) <= epsilon
        value = np.where(inside, 0.5 * R64 * R64, float(epsilon) * (np.abs(R64) - 0.5 * float(epsilon)))
        return value, np.where(inside, R, epsilon * np.sign(R))
    return 0.5 * R64 * R64, R


def mean_loss_zero(Y, rows, sample_weight, loss, epsilon):
    """Twin of ``fastopt._kernels.mean_loss_zero``: the weighted mean loss of the all-zero model over ``rows``
    (None: all), each row's losses summed over the targets, times its weight, in float64 and the kernel's order."""
    n = Y.shape[0]
    rows = np.arange(n) if rows is None else np.asarray(rows, dtype=np.int64)
    if rows.shape[0] == 0 or Y.shape[1] == 0:
        raise ValueError("mean_loss_zero: no rows or no targets")
    if np.any((rows < 0) | (rows >= n)):
        raise ValueError(f"mean_loss_zero: a row outside the {n} rows of Y")
    if sample_weight is not None and sample_weight.shape[0] != n:
        raise ValueError(f"mean_loss_zero: sample_weight has {sample_weight.shape[0]} entries, Y has {n} rows")
    eps = Y.dtype.type(epsilon)  # the kernel compares |y| with epsilon in Y's type
    value, _ = _loss_and_derivative(loss, Y[rows], eps)
    per_row = value[:, 0].copy()
    for j in range(1, Y.shape[1]):  # each row's targets in order
        per_row += value[:, j]
    if sample_weight is not None:
        per_row = per_row * sample_weight[rows].astype(np.float64)
    # eight running sums by position (row q to sum q mod 8, the last m mod 8 rows to sum 0), in a fixed tree
    m8 = per_row.shape[0] // 8 * 8
    acc = np.zeros(8)
    for block in per_row[:m8].reshape(-1, 8):
        acc += block
    for v in per_row[m8:]:
        acc[0] += v
    return float(((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]))) / rows.shape[0]


def _half_gradient(train, X, Y, sample_weight, rows, W, b, grad):
    """The summed gradient (into grad) and summed weighted loss of the rows ``rows``."""
    R = X[rows] @ W.T - Y[rows]
    if b is not None:
        R += b
    value, dl = _loss_and_derivative(train.loss, R, X.dtype.type(train.epsilon))
    wts = np.ones(rows.shape[0], X.dtype) if sample_weight is None else sample_weight[rows]
    C = wts[:, None] * dl
    kd = W.size
    grad[:kd] = (C.T @ X[rows]).ravel()
    if b is not None:
        grad[kd:] = C.sum(axis=0)
    return float(np.sum(wts.astype(np.float64)[:, None] * value))


def _pad_rows(train):
    """The divisor of a shorter minibatch's summed gradient (fo_epoch_ctl.pad_rows; 0: its row count)."""
    pad = getattr(train, "pad_rows", 0)
    if not 0 <= pad <= 2**62:
        raise ValueError(f"pad_rows must lie in [0, 2**62], got {pad}")
    return pad


def _checked_minibatch(train, loss, grad, nb):
    """The epoch kernels' checks of one minibatch's mean gradient ``grad`` before its step: the status of a
    non-finite loss or gradient, or of a mean loss above ``train.loss_limit``; else None, after clipping ``grad``
    in place to ``train.clip_norm``."""
    with np.errstate(over="ignore"):  # a sum of squares past float64's range is the check's inf, as in C
        ss = float(np.sum(grad.astype(np.float64) ** 2))
    if not (np.isfinite(loss) and np.isfinite(ss)):
        return int(Status.NONFINITE_LOSS)
    if loss / nb > train.loss_limit:
        return int(Status.DIVERGED)
    if train.clip_norm is not None and train.clip_norm > 0:
        clip_grad_norm(grad, train.clip_norm)
    return None


def _after_step(train, params, n_weights, avg, t):
    """After step ``t``, dense and CSR alike: the weights clamped at 0 when ``train.positive``; ``avg`` (when
    given and ``train.average > 0``) the running average of the parameters of steps ``t >= train.average``."""
    real = params.dtype.type
    if getattr(train, "positive", False):
        params[:n_weights] = np.where(params[:n_weights] < 0, real(0), params[:n_weights])
    start_avg = getattr(train, "average", 0)
    if avg is not None and start_avg > 0 and t >= start_avg:
        avg += (params - avg) / real(t - start_avg + 1)


def _epoch_finish(params, t, total, before, m, loss_acc):
    """The end of an epoch (csrc/rules.h epoch_finish): NONFINITE_LOSS at the last step when a weight is not
    finite; else the loss sums and (status, t, mean loss, 0)."""
    if not np.all(np.isfinite(params)):
        return int(Status.NONFINITE_LOSS), t, 0.0, t
    if loss_acc is not None:
        loss_acc[0], loss_acc[1] = total, loss_acc[1] + m
    return int(Status.OK), t, (total / (before + m) if before + m > 0 else 0.0), 0


def _check_decay(name, hyper, decay, kd, sparse_adam=False):
    """The kernels' checks of a per-weight decay: ``k * d`` entries, and neither the rule's own weight decay nor
    SparseAdam steps beside it."""
    if decay is None:
        return
    if decay.shape[0] != kd:
        raise ValueError(f"{name}: decay needs k * d = {kd} entries, got {decay.shape[0]}")
    if hyper.weight_decay != 0 or sparse_adam:
        what = "and hyper.weight_decay are exclusive" if not sparse_adam else "excludes SparseAdam steps"
        raise ValueError(f"{name}: a per-weight decay {what}")


def epoch(rule, hyper, train, X, Y, sample_weight, order, params, state, work, t, lr, n_threads=1, avg=None,
          loss_acc=None, decay=None, _solo_step=0):
    """Twin of ``fastopt._kernels.epoch``: one epoch of minibatch steps; returns (status, t, loss, bad_step).

    After every step the weights are clamped at 0 when ``train.positive``, and ``avg`` (when given and
    ``train.average > 0``) takes the running average of the parameters of steps ``t >= train.average``.

    Every minibatch gradient is the sum of its two halves' (rows ``[0, ceil(n/2))`` and the rest), as in the
    kernel, whatever ``n_threads`` (accepted for the same signature, as is the kernel's test switch
    ``_solo_step``; the twin runs in one thread). ``decay``:
    each weight's L2 coefficient, ``decay * w`` added to the clipped gradient before the rule.
    """
    real = X.dtype.type
    d, k, m = X.shape[1], Y.shape[1], order.shape[0]
    _check_decay("epoch", hyper, decay, k * d)
    n_params = params.shape[0]
    has_b = n_params > k * d
    grad, half = work[:n_params], work[n_params : 2 * n_params]
    pad = _pad_rows(train)
    total, before = (0.0, 0) if loss_acc is None else (float(loss_acc[0]), int(loss_acc[1]))
    for start in range(0, m, train.batch_size):
        rows = order[start : start + train.batch_size]
        nb = rows.shape[0]
        W = params[: k * d].reshape(k, d)
        b = params[k * d :] if has_b else None
        mid = (nb + 1) // 2
        loss = _half_gradient(train, X, Y, sample_weight, rows[:mid], W, b, grad)
        loss += _half_gradient(train, X, Y, sample_weight, rows[mid:], W, b, half)
        grad += half
        grad *= real(1.0 / max(nb, pad))
        total += loss
        if (status := _checked_minibatch(train, loss, grad, nb)) is not None:
            return status, t, 0.0, t + 1
        if decay is not None:
            grad[: k * d] += decay * params[: k * d]
        t += 1
        step(rule, hyper, params, grad, state, t, lr, k * d)
        _after_step(train, params, k * d, avg, t)
    return _epoch_finish(params, t, total, before, m, loss_acc)


def _sparse_adam(hyper, w, g, state, n_decay, t, lr, decoupled):
    """torch.optim.SparseAdam's step on the coordinates where ``g`` is nonzero (twin of csr_sparse_adam_in_place
    in csrc/epoch_csr_body.h), with coupled (Adam) or decoupled (AdamW) L2 and AMSGrad on the same coordinates."""
    real = w.dtype.type
    idx = np.flatnonzero(g)
    gi = g[idx].copy()
    if hyper.weight_decay != 0:
        dec = idx < n_decay
        if decoupled:
            w[idx[dec]] *= real(1.0 - lr * hyper.weight_decay)
        else:
            gi[dec] = gi[dec] + real(hyper.weight_decay) * w[idx[dec]]
    mv = state[:2].reshape(-1)  # m_i, v_i side by side in the first two rows' memory (as the kernel keeps them)
    if not np.shares_memory(mv, state):  # reshape copied: the step would be lost
        raise ValueError("epoch_csr: state must be C-contiguous (it is stepped in place)")
    m, v, vmax = mv[0::2], mv[1::2], state[2]
    m[idx] = m[idx] + (gi - m[idx]) * real(1.0 - hyper.beta1)
    v[idx] = v[idx] + (gi * gi - v[idx]) * real(1.0 - hyper.beta2)
    vi = v[idx]
    if hyper.amsgrad:
        vmax[idx] = np.maximum(vmax[idx], vi)
        vi = vmax[idx]
    step_size = real(lr * np.sqrt(1.0 - hyper.beta2**t) / (1.0 - hyper.beta1**t))
    w[idx] = w[idx] + -(step_size * (m[idx] / (np.sqrt(vi) + real(hyper.eps))))


def epoch_csr(rule, hyper, train, X, Y, sample_weight, order, params, state, t, lr, lazy=False, stage_cap=None,
              avg=None, loss_acc=None, period=0, n_threads=1, decay=None, _solo_block=0,
              _slow_producer_ns=0):
    """Twin of ``fastopt._kernels.epoch_csr``: one epoch over the rows ``order`` of a CSR matrix.

    The definition that the kernel's deferred updates reproduce: every step applies the rule to every
    coordinate (a zero loss gradient off the minibatch's columns), except Adam and AdamW with ``lazy``, which
    take torch.optim.SparseAdam's step on the coordinates whose minibatch gradient is nonzero (their moments side
    by side in ``state``, as the kernel keeps them); then, as in
    :func:`epoch`, the weights are clamped at 0 when ``train.positive`` and ``avg`` takes the running average of
    steps ``t >= train.average``. Residuals and gradients are summed in the kernel's order (each dot product and
    each gradient entry over the stored values in order), so the rules without deferred updates agree bit for
    bit. Plain SGD with one output and no L2, clipping, projection or running average takes its step row by row,
    ``w_j -= lr (c_i / |B|) x_ij`` in the rows' order, as the kernel does (the same update, summed in another
    order; the minibatch's checks still use its gradient); under L2 its weights are kept as ``w = s v`` with a
    global factor ``s <- (1 - lr wd) s`` (when ``0.5 <= 1 - lr wd <= 2``), folded back (``v <- s v``) when it
    leaves ``[lo, 1 / lo]`` (``lo`` 1e-150 for float64, 1e-25 for float32), at the steps that are multiples of
    ``period`` and at the end. ``stage_cap``, ``period``, ``n_threads``, ``_solo_block`` and ``_slow_producer_ns``
    (how the kernel reads rows, splits its deferred updates and shares its work) do not change the definition and
    are accepted for the same signature. ``decay``: each weight's L2 coefficient, ``decay * w`` added to the
    clipped gradient before the rule (not with SparseAdam).
    """
    real = Y.dtype.type
    d, k, m = X.shape[1], Y.shape[1], order.shape[0]
    _check_decay("epoch_csr", hyper, decay, k * d, lazy and rule in (Rule.ADAM, Rule.ADAMW))
    n_params = params.shape[0]
    kd = k * d
    has_b = n_params > kd
    grad = np.zeros(n_params, Y.dtype)
    # Plain SGD with one output, no clipping, projection, running average or per-weight decay: the step is taken
    # row by row (the same update, summed in another order; grad still decides the minibatch's checks). Under L2
    # the weights are kept as w = s v (csrc/epoch_csr.c fo_csr_scatter), s folded back as the kernel does.
    f_step = 1.0 - lr * hyper.weight_decay
    scatter = (rule == Rule.SGD and k == 1 and decay is None
               and not (train.clip_norm is not None and train.clip_norm > 0) and not getattr(train, "positive", False)
               and not (avg is not None and getattr(train, "average", 0) > 0)
               and (hyper.weight_decay == 0 or 0.5 <= f_step <= 2.0))
    scale_lo = 1e-25 if Y.dtype == np.float32 else 1e-150
    scaled, s_scale = scatter and hyper.weight_decay != 0, 1.0

    def fold():
        nonlocal s_scale
        if s_scale != 1.0:
            params[:kd] = (params[:kd].astype(np.float64) * s_scale).astype(Y.dtype)
        s_scale = 1.0

    pad = _pad_rows(train)
    total, before = (0.0, 0) if loss_acc is None else (float(loss_acc[0]), int(loss_acc[1]))
    for start in range(0, m, train.batch_size):
        rows = order[start : start + train.batch_size]
        nb = rows.shape[0]
        Xb = X[rows]
        W = params[:kd].reshape(k, d)
        R = np.asarray(Xb @ W.T, dtype=Y.dtype)
        if scaled:  # x . w = s (x . v)
            R = (R.astype(np.float64) * s_scale).astype(Y.dtype)
        if has_b:
            R += params[kd:]
        R -= Y[rows]
        value, dl = _loss_and_derivative(train.loss, R, real(train.epsilon))
        wts = np.ones(nb, Y.dtype) if sample_weight is None else sample_weight[rows]
        C = wts[:, None] * dl
        grad[:kd] = np.asarray(Xb.T @ C, dtype=Y.dtype).T.ravel()
        if has_b:  # summed row after row, as the kernel does (NumPy's sum is pairwise)
            grad[kd:] = 0
            for c_row in C:
                grad[kd:] += c_row
        grad *= real(1.0 / max(nb, pad))
        loss = float(np.sum(wts.astype(np.float64)[:, None] * value))
        total += loss
        if (status := _checked_minibatch(train, loss, grad, nb)) is not None:
            fold()
            return status, t, 0.0, t + 1
        if decay is not None:
            grad[:kd] += decay * params[:kd]
        t += 1
        if scatter:  # w_j -= lr (c_i / |B|) x_ij, row after row (csrc/epoch_csr.c fo_csr_scatter)
            scale, s_next = real(1.0 / max(nb, pad)), s_scale * f_step
            for i, row in enumerate(rows):
                lo, hi = X.indptr[row], X.indptr[row + 1]
                ci = C[i, 0] * scale
                u = real(float(real(lr)) * float(ci) / s_next) if scaled else real(lr) * ci
                np.subtract.at(params, X.indices[lo:hi], u * X.data[lo:hi])
            params[kd:] -= real(lr) * (grad[kd:] + real(0))
            if scaled:
                s_scale = s_next
                if (period > 0 and t % period == 0) or not (scale_lo <= s_scale <= 1.0 / scale_lo):
                    fold()
        elif lazy and rule in (Rule.ADAM, Rule.ADAMW):
            _sparse_adam(hyper, params, grad, state, kd, t, lr, rule == Rule.ADAMW)
        else:
            step(rule, hyper, params, grad, state, t, lr, kd)
        _after_step(train, params, kd, avg, t)
    fold()
    return _epoch_finish(params, t, total, before, m, loss_acc)


_GOLDEN_GAMMA = np.uint64(0x9E3779B97F4A7C15)


def _splitmix64(z):
    """SplitMix64's output function on an array of uint64 counters (wrapping arithmetic)."""
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def _mulhi64(a, b):
    """The high 64 bits of the products a * b of uint64 arrays, from four 32-bit partial products."""
    lo = np.uint64(0xFFFFFFFF)
    a0, a1, b0, b1 = a & lo, a >> np.uint64(32), b & lo, b >> np.uint64(32)
    p00, p01, p10, p11 = a0 * b0, a0 * b1, a1 * b0, a1 * b1
    mid = (p00 >> np.uint64(32)) + (p01 & lo) + (p10 & lo)
    return p11 + (p01 >> np.uint64(32)) + (p10 >> np.uint64(32)) + (mid >> np.uint64(32))


def shuffle(rows, key, out=None):
    """Twin of ``fastopt._kernels.shuffle`` (csrc/shuffle.c): forward Fisher-Yates, j_i = i + mulhi(u_i, n - i)
    with u_i SplitMix64's word for the counter i + 1; into ``out`` (which may be ``rows``) when given; an int
    ``rows`` stands for ``0 .. rows-1``."""
    if isinstance(rows, numbers.Integral):
        if rows < 0:
            raise ValueError(f"shuffle: {rows} rows")
        rows = np.arange(rows, dtype=np.int64)
    if out is None:
        out = np.array(rows, dtype=np.int64)
    elif out.shape[0] != len(rows):
        raise ValueError(f"shuffle: out has {out.shape[0]} entries, rows {len(rows)}")
    else:
        out[...] = rows
    n = out.shape[0]
    if n < 2:
        return out
    i = np.arange(n - 1, dtype=np.uint64)
    with np.errstate(over="ignore"):
        u = _splitmix64(np.uint64(key) + (i + np.uint64(1)) * _GOLDEN_GAMMA)
        j = (i + _mulhi64(u, np.uint64(n) - i)).astype(np.int64)
    for a, b in enumerate(j):
        out[a], out[b] = out[b], out[a]
    return out


class _ShuffleJob:
    def __init__(self, order):
        self._order = order

    def ready(self):
        return len(self._order)

    def buffer(self):
        return self._order

    def result(self):
        return self._order


def shuffle_start(rows, key, out=None):
    """Twin of ``fastopt._kernels.shuffle_start``: :func:`shuffle` at once (NumPy has no helper thread), as a
    job whose ``result()`` returns the permutation; an int ``rows`` stands for ``0 .. rows-1``."""
    n = rows if isinstance(rows, numbers.Integral) else len(rows)  # (shuffle makes the rows of an int itself)
    if n < 0:
        raise ValueError(f"shuffle_start: {n} rows")
    if out is not None and out.shape[0] != n:
        raise ValueError(f"shuffle_start: out has {out.shape[0]} entries, rows {n}")
    if out is not None and out is rows:
        raise ValueError("shuffle_start: out must not be rows")
    if n < 2:
        return None
    return _ShuffleJob(shuffle(rows, key, out))


def simd(name=None):
    """Twin of ``fastopt._kernels.simd``: NumPy has no instruction-set copies to choose, so this validates
    ``name`` as the kernel does and reports ``"numpy"``."""
    choices = ["avx2", "baseline", "best"]
    if name is not None and name not in choices:
        raise ValueError(f"simd must be one of {choices}, got {name!r}")
    return "numpy"


def weighted_square_sum(weight, x):
    """Twin of ``fastopt._kernels.weighted_square_sum``: the terms ``(weight_i x_i) x_i`` in float64, four running
    sums (``np.cumsum`` adds in order) of the terms ``i`` with ``i mod 4`` equal among the first ``n - n mod 4``,
    the rest added to the first, then ``(s0 + s1) + (s2 + s3)``."""
    if weight.shape[0] != x.shape[0]:
        raise ValueError(f"weighted_square_sum: weight has {weight.shape[0]} entries, x {x.shape[0]}")
    v = np.asarray(x, dtype=np.float64)
    terms = np.asarray(weight, dtype=np.float64) * v * v
    m = terms.shape[0] - terms.shape[0] % 4

    def running(t):
        return float(np.cumsum(t)[-1]) if t.shape[0] else 0.0

    s0 = running(np.concatenate([terms[0:m:4], terms[m:]]))
    s1, s2, s3 = (running(terms[r:m:4]) for r in (1, 2, 3))
    return (s0 + s1) + (s2 + s3)
