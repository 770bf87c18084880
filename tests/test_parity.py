"""Every compiled kernel has a NumPy twin in fastopt._reference with the same name and signature, and the
closed-form twins agree with their kernels on identical inputs.

(The optimizer kernels' numerical parity lives in tests/test_parity_optim.py.)
"""
import inspect

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from fastopt import _kernels, _reference


def kernel_names():
    """Public functions of fastopt._kernels: callables defined there, classes (Status) excluded."""
    return sorted(
        name
        for name, obj in vars(_kernels).items()
        if not name.startswith("_")
        and callable(obj)
        and not inspect.isclass(obj)
        and getattr(obj, "__module__", None) == "fastopt._kernels"
    )


def test_kernels_are_enumerated():
    assert {"gram_stats", "tsqr_stats"} <= set(kernel_names())


@pytest.mark.parametrize("name", kernel_names())
def test_every_kernel_has_a_twin_with_the_same_signature(name):
    twin = getattr(_reference, name, None)
    assert twin is not None, f"fastopt._reference has no twin of _kernels.{name}"
    assert inspect.signature(twin) == inspect.signature(getattr(_kernels, name))


def _offset_design(dtype, weighted, n, d, k, rng):
    """X, Y with means 1e3 times the spread (the centring has to be done right for kernel and twin to agree),
    weights with zeros (total kept positive), X read-only (kernels take const views)."""
    X = (1e3 + rng.normal(size=(n, d))).astype(dtype)
    Y = (rng.normal(size=(n, k)) - 5e2).astype(dtype)
    w = (rng.random(n) * (rng.random(n) > 0.2)).astype(dtype) if weighted else None
    if weighted:
        w[0] = 1  # keep the total weight positive
    X.flags.writeable = False
    return X, Y, w


def _statistics_of_both(name, X, Y, w, block):
    """(weight, mean, second output) of kernel ``name`` and of its twin, outputs pre-filled with NaN."""
    p = X.shape[1] + Y.shape[1]
    outs = []
    for impl in (_kernels, _reference):
        mean, out = np.full(p, np.nan), np.full((p, p), np.nan)
        outs.append((getattr(impl, name)(X, Y, w, mean, out, block), mean, out))
    return outs


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("n, d, k, block", [(1, 1, 1, 4), (37, 3, 1, 8), (200, 7, 3, 64), (64, 5, 2, 64)])
def test_gram_stats_matches_its_twin(dtype, weighted, n, d, k, block, rng):
    X, Y, w = _offset_design(dtype, weighted, n, d, k, rng)
    (wk, mk, gk), (wr, mr, gr) = _statistics_of_both("gram_stats", X, Y, w, block)
    # Both accumulate in float64 over identical blocks and merges; only the order of additions differs (C loop
    # vs BLAS). Means: sums of n terms, so within n * eps of each other. Gram: each centred value differs by at
    # most the block-mean difference, block * eps * |mean|, and each product sum also rounds by n * eps; with
    # Cauchy-Schwarz, |dG_ij| <= n eps (sqrt(G_ii G_jj) + 2 |mean|max sqrt(W) (sqrt(G_ii) + sqrt(G_jj))).
    eps = np.finfo(np.float64).eps
    bound = n * eps
    assert wk == pytest.approx(wr, rel=bound)
    np.testing.assert_allclose(mk, mr, rtol=bound, atol=0)
    root = np.sqrt(np.diag(gr))
    tol = bound * (np.outer(root, root) + 2 * np.abs(mr).max() * np.sqrt(wr) * (root[:, None] + root[None, :]))
    assert np.all(np.abs(gk - gr) <= tol)
    np.testing.assert_array_equal(gk, gk.T)


def test_gram_stats_rejects_inconsistent_shapes():
    X, Y = np.ones((3, 2)), np.ones((3, 1))
    with pytest.raises(ValueError, match="inconsistent shapes"):
        _kernels.gram_stats(X, Y, None, np.empty(2), np.empty((3, 3)), 4)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("n, d, k, block", [(1, 1, 1, 4), (37, 3, 1, 8), (200, 7, 3, 64), (64, 5, 2, 64),
                                            (300, 20, 1, 32)])
def test_tsqr_stats_matches_its_twin(dtype, weighted, n, d, k, block, rng):
    # As for the Gram: centring and the mean-correction rows must be done right.
    X, Y, w = _offset_design(dtype, weighted, n, d, k, rng)
    p = d + k
    (wk, mk, rk), (wr, mr, rr) = _statistics_of_both("tsqr_stats", X, Y, w, block)
    eps = np.finfo(np.float64).eps
    assert wk == pytest.approx(wr, rel=n * eps)
    np.testing.assert_allclose(mk, mr, rtol=n * eps, atol=0)
    for r in (rk, rr):
        assert np.all(np.tril(r, -1) == 0) and np.all(np.diag(r) >= 0)
    # Both are Householder QR of the same centred rows (LAPACK dtpqrt vs NumPy's geqrf): each R^T R equals the
    # exact centred Gram up to a backward error of about (rows + p) p eps per column pair (Higham, ch. 19),
    # plus the centring differences bounded as in the Gram test above.
    gk, gr = rk.T @ rk, rr.T @ rr
    root = np.sqrt(np.diag(gr))
    u = (n + p) * p * eps
    tol = u * (np.outer(root, root) + 2 * np.abs(mr).max() * np.sqrt(wr) * (root[:, None] + root[None, :]))
    assert np.all(np.abs(gk - gr) <= tol)
    # And the kernel's R^T R is the Gram of the Gram kernel (an independent computation of the same statistics).
    mean, gram = np.empty(p), np.empty((p, p))
    _kernels.gram_stats(X, Y, w, mean, gram, block)
    assert np.all(np.abs(gk - gram) <= tol)


def test_tsqr_stats_rejects_inconsistent_shapes():
    X, Y = np.ones((3, 2)), np.ones((3, 1))
    with pytest.raises(ValueError, match="inconsistent shapes"):
        _kernels.tsqr_stats(X, Y, None, np.empty(3), np.empty((2, 2)), 4)
    with pytest.raises(ValueError, match="inconsistent shapes"):
        _kernels.tsqr_stats(X, Y, np.ones(2), np.empty(3), np.empty((3, 3)), 4)
    with pytest.raises(ValueError, match="block_rows"):
        _kernels.tsqr_stats(X, Y, None, np.empty(3), np.empty((3, 3)), 0)


@settings(max_examples=60, deadline=None)
@given(n=st.integers(0, 40), d=st.integers(1, 12), f32=st.booleans(), wide=st.booleans(), dup=st.booleans(),
       seed=st.integers(0, 2**31))
def test_csr_affine_map_matches_its_twin(n, d, f32, wide, dup, seed):
    """The compiled map (x - shift) / scale of CSR rows equals its twin bit for bit: int32 and int64 indices,
    unsorted rows, explicit zeros, values equal to their shift (dropped), a column stored twice in a row (the last
    value wins), and equals the dense map of the same rows where no column repeats."""
    rng = np.random.default_rng(seed)
    dtype = np.float32 if f32 else np.float64
    dense = np.where(rng.random((n, d)) < 0.6, rng.normal(size=(n, d)) * 4, 0.0)
    dense[rng.random((n, d)) < 0.15] = 2.0  # equal to the shift below: zero after it
    data, indices, indptr = _unsorted_csr(dense.astype(dtype), rng)
    shift = np.where(rng.random(d) < 0.4, 2.0, 0.0)
    scale = rng.uniform(0.5, 2.0, size=d)
    expected_dense = ((sp.csr_array((data, indices, indptr), shape=(n, d)).toarray().astype(np.float64) - shift)
                      / scale).astype(dtype)
    if dup:  # a repeated column: the last stored value counts for a shifted column
        data, indices, indptr = _repeat_a_column(data, indices, indptr, dtype(7.0), rng)
    index = np.int64 if wide else np.int32
    args = (data, indices.astype(index), indptr.astype(index), d, shift, scale)
    got, want = _kernels.csr_affine_map(*args), _reference.csr_affine_map(*args)
    for a, b in zip(got, want, strict=True):
        assert a.dtype == b.dtype
        np.testing.assert_array_equal(a, b)
    shifted = np.flatnonzero(shift)  # a caller's kept lookup (fastopt._iterative_lr.Affine): the same output
    slot = np.full(d, -1, dtype=np.intp)
    slot[shifted] = np.arange(shifted.size)
    for impl in (_kernels, _reference):
        for a, b in zip(impl.csr_affine_map(*args, shifted.astype(np.intp), slot), got, strict=True):
            np.testing.assert_array_equal(a, b)
    assert got[0].dtype == dtype and got[1].dtype == np.int32 and got[2].dtype == np.int32
    if not dup:
        np.testing.assert_array_equal(sp.csr_array(got, shape=(n, d)).toarray(), expected_dense)


@pytest.mark.parametrize("name", ["csr_affine_map", "csr_column_moments", "csr_indicator_columns"])
def test_compiled_csr_passes_reject_malformed_rows(name):
    extra = {"csr_affine_map": (np.array([1.0, 0.0]), np.ones(2)), "csr_column_moments": (np.ones(2), True),
             "csr_indicator_columns": ()}[name]
    rows = {"outside": ([0, 5, 1], [0, 2, 3]), "indptr": ([0, 1, 1], [0, 9, 3])}
    for impl in (_kernels, _reference):
        for match, (indices, indptr) in rows.items():
            with pytest.raises(ValueError, match=match):
                getattr(impl, name)(np.ones(3), np.array(indices, np.int32), np.array(indptr, np.int32), 2, *extra)
        with pytest.raises(ValueError, match="inconsistent"):  # n_cols against shift / scale, or weights against rows
            if name == "csr_indicator_columns":  # (no rows: an empty indptr)
                impl.csr_indicator_columns(np.ones(3), np.array([0, 1, 1], np.int32), np.array([], np.int32), 2)
                continue
            args = (3, *extra) if name == "csr_affine_map" else (2, np.ones(3), True)
            getattr(impl, name)(np.ones(3), np.array([0, 1, 1], np.int32), np.array([0, 2, 3], np.int32), *args)


def test_csr_affine_map_refuses_a_kept_lookup_that_is_not_shifts():
    data, indices, indptr = np.ones(3), np.array([0, 1, 2], np.int32), np.array([0, 2, 3], np.int32)
    shift, scale = np.array([0.0, 1.0, 0.0]), np.ones(3)
    shifted = np.array([1], np.intp)
    for impl in (_kernels, _reference):
        with pytest.raises(ValueError, match="together"):
            impl.csr_affine_map(data, indices, indptr, 3, shift, scale, shifted, None)
        for slot in (np.array([-1, 0, 5], np.intp), np.array([-1, 1, -1], np.intp)):  # past the slots; not inverse
            with pytest.raises(ValueError, match="slot_of"):
                impl.csr_affine_map(data, indices, indptr, 3, shift, scale, shifted, slot)


def _unsorted_csr(dense, rng):
    """CSR arrays of ``dense`` with explicit zeros (a tenth of the stored values) and each row's columns shuffled."""
    X = sp.csr_array(dense)
    data, indices, indptr = X.data.copy(), X.indices.copy(), X.indptr.copy()
    data[rng.random(data.size) < 0.1] = 0  # explicit zeros
    for i in range(X.shape[0]):  # unsorted rows
        lo, hi = indptr[i], indptr[i + 1]
        perm = lo + rng.permutation(hi - lo)
        indices[lo:hi], data[lo:hi] = indices[perm], data[perm]
    return data, indices, indptr


def _repeat_a_column(data, indices, indptr, value, rng):
    """The CSR arrays with ``value`` stored again, at the end of a random row, in that row's first column."""
    if not data.size:
        return data, indices, indptr
    i = int(np.searchsorted(indptr, rng.integers(0, data.size), side="right")) - 1
    data = np.insert(data, indptr[i + 1], value)
    indices = np.insert(indices, indptr[i + 1], indices[indptr[i]] if indptr[i + 1] > indptr[i] else 0)
    indptr = indptr.copy()
    indptr[i + 1 :] += 1
    return data, indices, indptr


@settings(max_examples=60, deadline=None)
@given(n=st.integers(0, 400), d=st.integers(1, 600), m=st.integers(0, 6), f32=st.booleans(), wide=st.booleans(),
       seed=st.integers(0, 2**31))
def test_csr_times_and_scaled_values_match_their_twins_and_numpy(n, d, m, f32, wide, seed):
    """The compiled gathers equal their twins and what they replace bit for bit, prefetching included (rows past
    the prefetch distance, more models than it requests): ``X @ W.T`` as SciPy's product (each row's values
    summed in stored order, in X's dtype) and ``data / scale[indices]`` as NumPy's, on int32 and int64 indices,
    unsorted rows, explicit zeros and a column stored twice."""
    rng = np.random.default_rng(seed)
    dtype = np.float32 if f32 else np.float64
    dense = np.where(rng.random((n, d)) < 0.5, rng.normal(size=(n, d)) * 3, 0.0).astype(dtype)
    data, indices, indptr = _repeat_a_column(*_unsorted_csr(dense, rng), dtype(rng.normal()), rng)
    index = np.int64 if wide else np.int32
    indices, indptr = indices.astype(index), indptr.astype(index)
    W = rng.normal(size=(m, d)).astype(dtype)
    got, want = _kernels.csr_times(data, indices, indptr, W), _reference.csr_times(data, indices, indptr, W)
    assert got.dtype == want.dtype == dtype and got.shape == want.shape == (n, m)
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(got, np.asarray(sp.csr_array((data, indices, indptr), shape=(n, d)) @ W.T))
    scale = rng.uniform(1e-3, 1e3, size=d)
    got, want = _kernels.csr_scaled_values(data, indices, scale), _reference.csr_scaled_values(data, indices, scale)
    assert got.dtype == want.dtype == dtype
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(got, (data.astype(np.float64) / scale[indices]).astype(dtype))


def test_csr_gathers_reject_malformed_rows():
    W, scale = np.ones((1, 2)), np.ones(2)
    rows = {"outside": ([0, 5, 1], [0, 2, 3]), "indptr": ([0, 1, 1], [0, 9, 3]), "non-decreasing": ([0, 1, 1],
                                                                                                       [0, 2, 1])}
    for impl in (_kernels, _reference):
        for match, (indices, indptr) in rows.items():
            with pytest.raises(ValueError, match=match):
                impl.csr_times(np.ones(3), np.array(indices, np.int32), np.array(indptr, np.int32), W)
        for bad in (-1, 2):
            with pytest.raises(ValueError, match="outside"):
                impl.csr_scaled_values(np.ones(3), np.array([0, bad, 1], np.int64), scale)
        with pytest.raises(ValueError, match="inconsistent"):
            impl.csr_scaled_values(np.ones(3), np.array([0, 1], np.int32), scale)
        with pytest.raises(ValueError, match="inconsistent"):
            impl.csr_times(np.ones(3), np.array([0, 1, 1], np.int32), np.array([], np.int32), W)


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 40), d=st.integers(1, 12), f32=st.booleans(), wide=st.booleans(), weighted=st.booleans(),
       step=st.integers(1, 4), seed=st.integers(0, 2**31))
def test_csr_moment_bounds_matches_its_twin_and_leaves_its_scratch_zero(n, d, f32, wide, weighted, step, seed):
    """sum_j mu_j^2 and max_j s_j of strided CSR rows: the compiled pass equals its twin bit for bit (the columns'
    sums in the stored order, the mu_j^2 added in the order the columns first appear), unsorted rows, repeated
    columns and NaN included; both near NumPy's dense moments; the scratch zero afterwards, also after a column
    outside the matrix made it raise halfway."""
    rng = np.random.default_rng(seed)
    X = sp.random(n, d, density=0.4, format="csr", random_state=rng, dtype=np.float64)
    X.data = rng.normal(size=X.nnz) * 10.0 ** rng.integers(-3, 4, size=X.nnz)
    X.data[rng.random(X.nnz) < 0.1] = 0.0  # stored zeros: counted as no value, as dense zeros
    data = X.data.astype(np.float32 if f32 else np.float64)
    indices = X.indices.copy()
    if indices.size:  # a repeated column in some rows, a NaN in one run of five
        indices[rng.random(indices.size) < 0.1] = indices[0]
        if seed % 5 == 0:
            data[rng.integers(indices.size)] = np.nan
    index = np.int64 if wide else np.int32
    start = int(rng.integers(0, min(n, step)))
    count = len(range(start, n, step))
    w = rng.uniform(0, 3, size=count) if weighted else np.ones(count)
    scratch = np.zeros(2 * d)
    args = (data, indices.astype(index), X.indptr.astype(index), start, step, count, w, scratch)
    got, want = _kernels.csr_moment_bounds(*args), _reference.csr_moment_bounds(*args)
    np.testing.assert_array_equal(got, want)
    assert not scratch.any()
    # against NumPy on the rows without repeated columns (a repeat's square counts apart, as stored)
    canonical = (data, X.indices.astype(index), *args[2:7], scratch)
    block = sp.csr_array((data.astype(np.float64), X.indices, X.indptr), shape=(n, d)).toarray()[start::step]
    if np.isnan(block).any():
        assert np.isnan(_kernels.csr_moment_bounds(*canonical)[1])
    else:
        mu, sq, scale = w @ block / count, w @ (block * block) / count, w @ np.abs(block) / count
        mu2, largest = _kernels.csr_moment_bounds(*canonical)
        # each mu_j within (n + 2) eps of sum_i |w_i x_ij| / count, so mu2 within 3 (n + 2) eps |scale|^2; the
        # squares' terms are all >= 0: relative error (n + 2) eps
        eps = np.finfo(np.float64).eps
        assert abs(mu2 - mu @ mu) <= 3 * (n + 2) * eps * (scale @ scale) + 1e-300
        np.testing.assert_allclose(largest, sq.max() if X[start::step].nnz else 0.0, rtol=(n + 2) * eps)
    bad = indices.astype(index)
    if bad.size:
        bad[rng.integers(bad.size)] = d  # one column outside: the sums so far undone
        for impl in (_kernels, _reference):
            rows = range(start, n, step)
            if not any(d in bad[X.indptr[r] : X.indptr[r + 1]] for r in rows):
                continue
            with pytest.raises(ValueError, match="outside"):
                impl.csr_moment_bounds(data, bad, X.indptr.astype(index), start, step, count, w, scratch)
            assert not scratch.any()
    for impl in (_kernels, _reference):
        with pytest.raises(ValueError, match="outside the matrix"):
            impl.csr_moment_bounds(*args[:3], start, step, count + 1, np.ones(count + 1), scratch)
        with pytest.raises(ValueError, match="inconsistent"):
            impl.csr_moment_bounds(*args[:6], np.ones(count + 1), scratch)
        past = X.indptr.astype(index)
        past[start + 1 :] = data.size + 1  # the first row read ends past the data
        with pytest.raises(ValueError, match="indptr"):
            impl.csr_moment_bounds(data, args[1], past, *args[3:7], scratch)


@settings(max_examples=60, deadline=None)
@given(n=st.integers(0, 40), d=st.integers(1, 12), f32=st.booleans(), wide=st.booleans(), seed=st.integers(0, 2**31))
def test_csr_indicator_columns_matches_its_twin_and_the_dense_definition(n, d, f32, wide, seed):
    """Which columns store only 0 and 1, and their counts of stored ones: the compiled pass equals the NumPy twin
    and the definition on the dense array (stored zeros, -0.0, NaN, repeated columns, empty columns included)."""
    rng = np.random.default_rng(seed)
    X = sp.random(n, d, density=0.5, format="csr", random_state=rng, dtype=np.float64)
    X.data = rng.choice([0.0, -0.0, 1.0, 1.0, 1.0, 2.0, 0.5, -1.0, np.nan], size=X.nnz)
    indicator_cols = rng.random(d) < 0.6  # most columns 0/1 only, so both answers occur
    X.data[indicator_cols[X.indices] & ~np.isin(X.data, [0.0, 1.0])] = 1.0
    indices = X.indices.copy()
    if indices.size and rng.random() < 0.5:  # a repeated column in some rows
        indices[rng.random(indices.size) < 0.1] = indices[0]
    index = np.int64 if wide else np.int32
    args = (X.data.astype(np.float32 if f32 else np.float64), indices.astype(index), X.indptr.astype(index), d)
    got, want = _kernels.csr_indicator_columns(*args), _reference.csr_indicator_columns(*args)
    for a, b in zip(got, want, strict=True):
        assert a.dtype == b.dtype
        np.testing.assert_array_equal(a, b)
    stored = np.zeros((n, d))  # the definition: every stored value of the column is 0 or 1; ones counted
    bad = np.zeros(d, dtype=bool)
    for i in range(n):
        for j in range(X.indptr[i], X.indptr[i + 1]):
            v, c = X.data[j], indices[j]
            bad[c] |= not (v == 0 or v == 1)
            stored[i, c] += v == 1
    np.testing.assert_array_equal(got[0], ~bad)
    np.testing.assert_array_equal(got[1], stored.sum(axis=0))


@settings(max_examples=40, deadline=None)
@given(n=st.integers(0, 40), d=st.integers(1, 12), f32=st.booleans(), wide=st.booleans(), weighted=st.booleans(),
       means=st.booleans(), seed=st.integers(0, 2**31))
def test_csr_column_moments_matches_its_twin(n, d, f32, wide, weighted, means, seed):
    """The columns' weighted sums of squares, sums and counts of CSR rows: the compiled pass equals np.bincount's
    bit for bit (the same terms added in the same order), unsorted rows and repeated columns included."""
    rng = np.random.default_rng(seed)
    X = sp.random(n, d, density=0.4, format="csr", random_state=rng, dtype=np.float64)
    X.data = rng.normal(size=X.nnz) * 10.0 ** rng.integers(-3, 4, size=X.nnz)
    X.data[rng.random(X.nnz) < 0.1] = 0.0  # stored zeros: counted as no value, as dense zeros
    data = X.data.astype(np.float32 if f32 else np.float64)
    indices = X.indices.copy()
    if indices.size:  # a repeated column in some rows
        indices[rng.random(indices.size) < 0.1] = indices[0]
    index = np.int64 if wide else np.int32
    w = rng.uniform(0, 3, size=n) if weighted else np.ones(n)
    args = (data, indices.astype(index), X.indptr.astype(index), d, w, means)
    got, want = _kernels.csr_column_moments(*args), _reference.csr_column_moments(*args)
    for a, b in zip(got, want, strict=True):
        if b is None:
            assert a is None
        else:
            assert a.dtype == b.dtype
            np.testing.assert_array_equal(a, b)
