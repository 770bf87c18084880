"""Sparse X through every entry point: formats, dtypes, index types, non-canonical input, errors, no mutation.

The closed form on sparse X must give the dense fit of ``X.toarray()``: both solve the same normal equations from
statistics accumulated in float64, so they agree to a few units of round-off times the condition number
(rtol 1e-9 on these well-conditioned problems, whose condition numbers are below 1e3).
"""
import copy
import itertools
import warnings

import numpy as np
import pytest
import scipy.sparse as sp

from fastopt import LinearRegressor
from fastopt._solvers import SOLVERS, supports_sparse
from fastopt._validation import check_fit_data, is_sparse
from fastopt.exceptions import IllConditionedWarning

ITERATIVE_DENSE_ONLY = sorted(name for name in SOLVERS if not supports_sparse(name))


def make_problem(rng, n=300, d=15, density=0.2, k=None, dtype=np.float64):
    X = sp.random(n, d, density=density, format="csr", random_state=rng, dtype=np.float64)
    X = (X + sp.csr_matrix(np.where(rng.random((n, d)) < 0.05, 1.0, 0.0))).tocsr()  # some duplicated positions
    coef = rng.normal(size=(d,) if k is None else (d, k))
    y = X @ coef + 0.5 + 0.1 * rng.normal(size=(n,) if k is None else (n, k))
    return X.astype(dtype), y.astype(dtype)


def snapshot(X):
    """Everything about a sparse object that a fit could modify."""
    if X.format in ("csr", "csc", "bsr"):
        return ("c", X.data.copy(), X.indices.copy(), X.indptr.copy(), X.shape, X.indices.dtype)
    if X.format == "coo":
        return ("o", X.data.copy(), X.row.copy(), X.col.copy(), X.shape)
    return ("a", X.toarray(), X.shape, X.dtype)


def assert_unchanged(before, after):
    assert len(before) == len(after)
    for a, b in zip(before, after):
        if isinstance(a, np.ndarray):
            assert a.dtype == b.dtype
            np.testing.assert_array_equal(a, b)
        else:
            assert a == b


FORMATS = ["csr_matrix", "csr_array", "csc", "coo", "lil", "dok", "bsr", "dia", "csr_int64", "csc_int64", "coo_int64"]


def convert(X, fmt):
    if fmt == "csr_matrix":
        return sp.csr_matrix(X)
    if fmt == "csr_array":
        return sp.csr_array(X)
    if fmt.endswith("_int64"):
        Y = X.asformat(fmt[:3])
        if fmt.startswith("coo"):
            Y.row, Y.col = Y.row.astype(np.int64), Y.col.astype(np.int64)
        else:
            Y.indices, Y.indptr = Y.indices.astype(np.int64), Y.indptr.astype(np.int64)
        return Y
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", sp.SparseEfficiencyWarning)  # DIA of a random matrix: inefficient, valid
        return X.asformat(fmt)


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("solver", ["normal", "qr"])
def test_every_format_fits_like_dense_and_is_not_modified(rng, fmt, solver):
    X, y = make_problem(rng)
    Xf = convert(X, fmt)
    before = snapshot(Xf)
    w = rng.uniform(0.5, 2.0, size=X.shape[0])
    est = LinearRegressor(solver=solver, alpha=1e-3).fit(Xf, y, sample_weight=w)
    ref = LinearRegressor(solver=solver, alpha=1e-3).fit(X.toarray(), y, sample_weight=w)
    np.testing.assert_allclose(est.coef_, ref.coef_, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(est.intercept_, ref.intercept_, rtol=1e-9)
    assert est.solver_ == ref.solver_
    pred = est.predict(Xf)
    assert isinstance(pred, np.ndarray) and not is_sparse(pred) and pred.shape == (X.shape[0],)
    np.testing.assert_allclose(pred, ref.predict(X.toarray()), rtol=1e-9, atol=1e-12)
    assert est.score(Xf, y) == pytest.approx(ref.score(X.toarray(), y), rel=1e-12)
    assert_unchanged(before, snapshot(Xf))


def test_validation_hands_solvers_canonical_int32_csr(rng):
    # Unsorted, duplicated column indices, an explicit zero and int64 indices, built by hand.
    data = np.array([1.0, 2.0, 0.0, 3.0, 4.0, 5.0])
    indices = np.array([2, 0, 1, 2, 0, 2], dtype=np.int64)
    indptr = np.array([0, 3, 3, 6], dtype=np.int64)
    X = sp.csr_matrix((data, indices, indptr), shape=(3, 3))
    assert not X.has_canonical_format
    before = snapshot(X)
    data_out = check_fit_data(LinearRegressor(), X, np.arange(3.0))
    Xv = data_out.X
    assert Xv.format == "csr" and Xv.has_sorted_indices and Xv.indices.dtype == np.int32
    assert Xv.indptr.dtype == np.int32 and Xv.dtype == np.float64
    np.testing.assert_array_equal(Xv.toarray(), X.toarray())
    assert np.all(np.diff(Xv.indices[Xv.indptr[2]:Xv.indptr[3]]) > 0)  # duplicates summed
    assert_unchanged(before, snapshot(X))
    # Row 0 keeps its explicit zero (allowed); it carries no weight in any statistic.
    est = LinearRegressor(alpha=0.1).fit(X, np.arange(3.0))
    ref = LinearRegressor(alpha=0.1).fit(X.toarray(), np.arange(3.0))
    np.testing.assert_allclose(est.predict(X), ref.predict(X.toarray()), atol=1e-12)


def test_canonical_float64_csr_is_passed_through_without_copy(rng):
    X, y = make_problem(rng)
    X.sort_indices()
    assert check_fit_data(LinearRegressor(), X, y).X is X


def test_indices_changed_in_place_under_a_stale_canonical_flag_are_named_and_the_reset_flag_fits(rng):
    """SciPy caches ``has_canonical_format`` and trusts it (its own ``sum_duplicates`` does nothing while it is
    set), and so does validation. Columns relabelled in place leave unsorted rows under the stale flag: the
    closed form's kernel refuses them, and its message now names the flag; reset, the fit is the dense one."""
    Xd = rng.standard_normal((200, 12)) * (rng.random((200, 12)) < 0.4)
    y = Xd @ rng.standard_normal(12) + 1.0
    X = sp.csr_matrix(Xd)
    assert X.has_canonical_format
    perm = rng.permutation(12)
    X.indices = perm[X.indices].astype(X.indices.dtype)
    with pytest.raises(ValueError, match="set X.has_canonical_format = False"):
        LinearRegressor(solver="normal").fit(X, y)
    X.has_canonical_format = False
    est = LinearRegressor(solver="normal").fit(X, y)
    np.testing.assert_allclose(est.coef_, LinearRegressor(solver="normal").fit(X.toarray(), y).coef_, atol=1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int64])
def test_dtypes(rng, dtype):
    X, y = make_problem(rng, density=0.3)
    X = (X * 10).astype(dtype)
    est = LinearRegressor().fit(X, y)
    expected = np.float32 if dtype == np.float32 else np.float64
    assert est.coef_.dtype == expected and est.predict(X).dtype == expected
    ref = LinearRegressor().fit(X.toarray(), y)
    # float32 input: both fits accumulate in float64 from the same float32 values, then round to float32.
    np.testing.assert_allclose(est.coef_, ref.coef_, rtol=1e-5 if dtype == np.float32 else 1e-9, atol=1e-6)


def test_multi_target_and_no_intercept(rng):
    X, Y = make_problem(rng, k=3)
    for fit_intercept in (True, False):
        est = LinearRegressor(fit_intercept=fit_intercept).fit(X, Y)
        ref = LinearRegressor(fit_intercept=fit_intercept).fit(X.toarray(), Y)
        np.testing.assert_allclose(est.coef_, ref.coef_, rtol=1e-9, atol=1e-12)
        assert est.predict(X).shape == Y.shape


def test_partial_fit_and_fit_stream_on_sparse_chunks(rng):
    X, y = make_problem(rng, n=600)
    w = rng.uniform(0.0, 2.0, size=600)
    ref = LinearRegressor().fit(X.toarray(), y, sample_weight=w)
    cuts = [0, 100, 250, 600]
    est = LinearRegressor()
    for a, b in itertools.pairwise(cuts):
        est.partial_fit(sp.csc_matrix(X[a:b]), y[a:b], sample_weight=w[a:b])
    np.testing.assert_allclose(est.coef_, ref.coef_, rtol=1e-9, atol=1e-12)
    # A stream mixing sparse and dense chunks.
    chunks = [(X[a:b] if i % 2 == 0 else X[a:b].toarray(), y[a:b], w[a:b]) for i, (a, b) in
              enumerate(itertools.pairwise(cuts))]
    streamed = LinearRegressor().fit_stream(chunks)
    np.testing.assert_allclose(streamed.coef_, ref.coef_, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(streamed.intercept_, ref.intercept_, rtol=1e-9)


@pytest.mark.filterwarnings("ignore::fastopt.exceptions.ConvergenceWarning")
def test_auto_for_chunks_is_judged_by_the_first_chunk(rng, monkeypatch):
    # partial_fit and a re-readable stream pick "auto"'s solver from the rows at hand, as fit does: SGD for a
    # robust loss on sparse rows (an exact Adam step costs O(d)), and where the Gram would not fit SGD in
    # partial_fit and a Krylov solver on the stream (one read an iteration), not the closed form's MemoryError.
    # A one-shot stream cannot be looked at first: it keeps the choice made without its rows. The first call's
    # choice goes on: a later dense chunk continues SGD.
    from fastopt import _solvers

    X, y = make_problem(rng, n=400)
    chunks = [(X[:200], y[:200]), (X[200:], y[200:])]
    est = LinearRegressor(loss="huber", random_state=0).partial_fit(*chunks[0])
    assert est._solver_name == "sgd"
    est.partial_fit(X[200:].toarray(), y[200:])
    assert est._solver_name == "sgd"
    assert LinearRegressor(loss="huber", random_state=0).partial_fit(X[:200].toarray(), y[:200])._solver_name \
        == "adam"
    assert LinearRegressor(loss="huber", max_epochs=2, random_state=0).fit_stream(chunks).solver_ == "sgd"
    assert LinearRegressor(loss="huber", max_epochs=1, random_state=0).fit_stream(iter(chunks)).solver_ == "adam"
    # squared error, a Gram that would not fit (GRAM_MAX_BYTES lowered below 15 columns' Gram)
    assert LinearRegressor().partial_fit(*chunks[0])._solver_name == "normal"
    monkeypatch.setattr(_solvers, "GRAM_MAX_BYTES", 8 * 14**2)
    assert LinearRegressor(random_state=0).partial_fit(*chunks[0])._solver_name == "sgd"
    streamed = LinearRegressor(tol=1e-12).fit_stream(chunks)
    in_memory = LinearRegressor(tol=1e-12).fit(X, y)
    assert streamed.solver_ == in_memory.solver_ == "lsqr"
    np.testing.assert_allclose(streamed.coef_, in_memory.coef_, rtol=1e-9, atol=1e-10)
    assert LinearRegressor().fit_stream(iter(chunks)).solver_ == "cholesky"  # read once: the closed form


def test_dask_arrays_with_sparse_blocks(rng):
    da = pytest.importorskip("dask.array")
    dask = pytest.importorskip("dask")
    X, y = make_problem(rng, n=400)
    dX = da.from_array(X, chunks=(100, X.shape[1]), asarray=False)
    dy = da.from_array(y, chunks=100)
    ref = LinearRegressor().fit(X.toarray(), y)
    with dask.config.set(scheduler="synchronous"):
        est = LinearRegressor().fit(dX, dy)
        np.testing.assert_allclose(est.coef_, ref.coef_, rtol=1e-9, atol=1e-12)
        pred = est.predict(dX).compute()
        assert isinstance(pred, np.ndarray)
        np.testing.assert_allclose(pred, ref.predict(X.toarray()), rtol=1e-9, atol=1e-12)
        inc = LinearRegressor().partial_fit(dX, dy)
        np.testing.assert_allclose(inc.coef_, ref.coef_, rtol=1e-9, atol=1e-12)
        # Blocks split over columns too (rechunked to whole rows by the fit).
        dX2 = da.from_array(X.toarray(), chunks=(100, 5)).map_blocks(sp.csr_matrix)
        np.testing.assert_allclose(LinearRegressor().fit(dX2, dy).coef_, ref.coef_, rtol=1e-9, atol=1e-12)


def test_tags():
    assert LinearRegressor().__sklearn_tags__().input_tags.sparse
    assert LinearRegressor(solver="qr").__sklearn_tags__().input_tags.sparse
    for name in ITERATIVE_DENSE_ONLY:
        assert not LinearRegressor(solver=name).__sklearn_tags__().input_tags.sparse
    assert not LinearRegressor(solver="normal", loss="huber").__sklearn_tags__().input_tags.sparse
    assert LinearRegressor(solver="newton", loss="huber").__sklearn_tags__().input_tags.sparse
    assert LinearRegressor(loss="absolute_error").__sklearn_tags__().input_tags.sparse


def test_solver_without_sparse_support_says_so_everywhere(rng, monkeypatch):
    # Every registry entry takes sparse X now; an entry that declares otherwise is refused with a clear error.
    import copy

    from fastopt import _solvers

    X, y = make_problem(rng, n=100)
    name = ITERATIVE_DENSE_ONLY[0] if ITERATIVE_DENSE_ONLY else "momentum"
    if not ITERATIVE_DENSE_ONLY:
        dense_only = copy.copy(_solvers.SOLVERS[name])
        dense_only.supports_sparse = False
        monkeypatch.setitem(_solvers.SOLVERS, name, dense_only)
    est = LinearRegressor(solver=name, max_epochs=2)
    calls = [lambda: est.fit(X, y)]
    if hasattr(est, "partial_fit"):  # not every solver fits incrementally (e.g. newton)
        calls += [lambda: est.partial_fit(X, y), lambda: est.fit_stream([(X, y)])]
    try:
        import dask.array as da
    except ImportError:
        da = None
    if da is not None:  # on Dask too
        dX = da.from_array(X.toarray(), chunks=(50, X.shape[1])).map_blocks(sp.csr_matrix)
        calls.append(lambda: est.fit(dX, da.from_array(y, chunks=50)))
    for call in calls:
        with pytest.raises(TypeError, match=f"Sparse input X is not supported by solver='{name}'"):
            call()
    # "auto" never resolves to such a solver on sparse X (robust losses: tests/test_robust.py).
    from fastopt._solvers import resolve, supports_sparse
    for loss in ("squared_error", "huber", "absolute_error"):
        assert supports_sparse(resolve("auto", loss, X, sparse=True))
    # predict on sparse works whatever the solver.
    fitted = LinearRegressor(solver=name, max_epochs=2, tol=None).fit(X.toarray(), y)
    np.testing.assert_allclose(fitted.predict(X), fitted.predict(X.toarray()), rtol=1e-12)


# ---------------------------------------------------------------- bad input: the dense path's errors


def test_nonfinite_data_gets_the_dense_error(rng):
    X, y = make_problem(rng, n=50)
    for bad in (np.nan, np.inf):
        Xb = X.copy()
        Xb.data[3] = bad
        with pytest.raises(ValueError, match="Input X contains (NaN|infinity)"):
            LinearRegressor().fit(Xb, y)
        with pytest.raises(ValueError, match="Input X contains (NaN|infinity)"):
            LinearRegressor().fit(X, y).predict(Xb)


def test_weights_and_shapes_get_the_dense_errors(rng):
    X, y = make_problem(rng, n=50)
    with pytest.raises(ValueError, match="Negative values in data passed to `?sample_weight"):
        LinearRegressor().fit(X, y, sample_weight=-np.ones(50))
    with pytest.raises(ValueError, match="inconsistent numbers of samples"):
        LinearRegressor().fit(X, y[:-1])
    with pytest.raises(ValueError, match="sample_weight.shape"):
        LinearRegressor().fit(X, y, sample_weight=np.ones(49))
    est = LinearRegressor().fit(X, y)
    with pytest.raises(ValueError, match="features"):
        est.predict(X[:, :-1])
    with pytest.raises(ValueError, match="features"):
        est.partial_fit(X[:, :-1], y)


@pytest.mark.parametrize("fmt", ["csr", "csc"])
@pytest.mark.parametrize("fault", ["index-high", "index-negative", "indptr-decreasing", "indptr-end"])
def test_hand_built_malformed_matrix_is_refused_before_use(fmt, fault):
    data = np.array([1.0, 2.0, 3.0])
    indices = np.array([0, 1, 2], dtype=np.int32)
    indptr = np.array([0, 1, 2, 3], dtype=np.int32)
    if fault == "index-high":
        indices[1] = 7
    elif fault == "index-negative":
        indices[1] = -1
    elif fault == "indptr-decreasing":
        indptr[1:3] = [2, 1]
    cls = sp.csr_matrix if fmt == "csr" else sp.csc_matrix
    X = cls((data, indices, indptr), shape=(3, 3), copy=False)
    if fault == "indptr-end":  # the constructor checks this one: break it afterwards
        X.indptr[-1] = 5
    before = snapshot(X)
    with pytest.raises(ValueError, match="X is a malformed sparse matrix"):
        LinearRegressor().fit(X, np.arange(3.0))
    with pytest.raises(ValueError, match="X is a malformed sparse matrix"):
        LinearRegressor(fit_intercept=False).fit(np.eye(3), np.arange(3.0)).predict(X)
    assert_unchanged(before, snapshot(X))


@pytest.mark.parametrize("fmt", ["csr", "csc"])
@pytest.mark.parametrize("solver, kw", [("normal", {}), ("lsqr", {}), ("newton", {"loss": "huber"}),
                                        ("sgd", {}), ("adam", {"sparse_mode": "lazy"})])
def test_big_endian_index_arrays_are_read_in_their_byte_order(rng, fmt, solver, kw):
    # SciPy keeps a big-endian index array assigned to a matrix (its constructors convert): the range check viewed
    # it as native, read index 1 as 2**24 and failed with a bare IndexError on a valid matrix; and passed an index
    # out of range whose bytes swapped were in range, which the kernels read out of bounds (a segfault)
    X, y = make_problem(rng, n=200, d=6, density=0.5)
    X = X.asformat(fmt)
    swapped = X.copy()
    swapped.indices, swapped.indptr = X.indices.astype(">i4"), X.indptr.astype(">i4")
    swapped.data = X.data.astype(">f8")
    est = LinearRegressor(solver=solver, random_state=0, **kw)
    np.testing.assert_array_equal(est.fit(swapped, y).coef_, LinearRegressor(**est.get_params()).fit(X, y).coef_)
    np.testing.assert_array_equal(est.predict(swapped), est.predict(X))
    bad = X.copy()
    bad.indices, bad.indptr, bad.data = swapped.indices.copy(), swapped.indptr, swapped.data
    bad.indices[3] = 2**24  # as native bytes: 1
    with pytest.raises(ValueError, match="X is a malformed sparse matrix: .* index 16777216 is out of range"):
        LinearRegressor(solver=solver, **kw).fit(bad, y)
    with pytest.raises(ValueError, match="X is a malformed sparse matrix"):
        est.predict(bad)


def test_more_columns_than_32_bit_indices_hold_is_named_with_its_way_out():
    # the message asked to split the rows into chunks, which leaves the columns as many
    X = sp.csr_matrix((np.ones(3), np.array([0, 1, 2**31 + 5], dtype=np.int64), np.array([0, 1, 2, 3], dtype=np.int64)),
                      shape=(3, 2**32))
    with pytest.raises(ValueError, match=r"4294967296 columns; .*limited to 2\*\*31 - 1 .*Hash or select the columns"):
        LinearRegressor().fit(X, np.arange(3.0))


def test_predict_sums_big_endian_duplicates_beyond_the_float_range(rng):
    # the duplicates' sum is taken on a copy: SciPy's copy of '>f8' data was refused ("does not support dtype >f8")
    X = sp.csr_matrix((np.array([1.5e308, 1.5e308, 1.0, 2.0]), np.array([0, 0, 1, 1], dtype=np.int32),
                       np.array([0, 2, 3, 4], dtype=np.int32)), shape=(3, 2))
    X.data = X.data.astype(">f8")
    assert not X.has_canonical_format
    est = LinearRegressor(fit_intercept=False).fit(np.eye(2), np.array([1.0, 2.0]))
    with pytest.raises(ValueError, match="X contains infinity|too large"):
        est.predict(X)  # (two 1.5e308 at one place: an inf of X, as fit refuses it)


def _hand_built_csr(rng, n, d, bad_row, bad_value, index_dtype=np.int32):
    """A CSR matrix with 3 stored values a row and column ``bad_value`` in row ``bad_row`` (built unchecked)."""
    indices = np.sort(rng.choice(d - 2, size=(n, 3), replace=True), axis=1) + np.arange(3)  # increasing in a row
    indices = indices.astype(np.int64)
    indices[bad_row, -1] = bad_value
    indptr = np.arange(0, 3 * n + 1, 3)
    return sp.csr_matrix((rng.normal(size=3 * n), indices.ravel().astype(index_dtype),
                          indptr.astype(index_dtype)), shape=(n, d), copy=False)


# Settings where validation leaves the column indices to the first epoch (Solver.checks_indices), with one and
# two threads, rules with and without deferred updates, and SparseAdam mode.
KERNEL_CHECKED = [dict(solver="sgd"), dict(solver="sgd", n_threads=2), dict(solver="momentum"),
                  dict(solver="adagrad", n_threads=2), dict(solver="rmsprop", alpha=0.1),
                  dict(solver="adam", sparse_mode="lazy", n_threads=2), dict(solver="adam", average=True)]


@pytest.mark.parametrize("bad_value", [40, -1, 2**31 - 1])
@pytest.mark.parametrize("bad_row", [0, 799])
@pytest.mark.parametrize("settings", KERNEL_CHECKED, ids=lambda s: "-".join(map(str, s.values())))
def test_index_out_of_range_found_by_the_first_epoch(settings, bad_row, bad_value):
    """The first epoch reads every index before reading through it and names a bad one as validation would; the
    estimator is left unfitted and X untouched (the sanitizer job runs this file: nothing reads out of bounds)."""
    rng = np.random.default_rng(5)
    X = _hand_built_csr(rng, 800, 30, bad_row, bad_value)
    y = rng.normal(size=800)
    before = snapshot(X)
    est = LinearRegressor(learning_rate=0.01, max_epochs=3, tol=None, random_state=0, **settings)
    assert _solvers_needs_index_check(est) is False
    with pytest.raises(ValueError, match=f"column index {bad_value} is out of range for 30 columns"):
        est.fit(X, y)
    assert not hasattr(est, "coef_")
    assert_unchanged(before, snapshot(X))


def _solvers_needs_index_check(est):
    from fastopt import _solvers

    return _solvers.needs_index_check(_solvers.resolve(est.solver, est.loss, sparse=True), est.get_params())


def test_index_out_of_range_named_before_a_divergence():
    """A step that fails before the epoch reaches the bad row: the malformed matrix is named, not the rate."""
    rng = np.random.default_rng(6)
    X = _hand_built_csr(rng, 800, 30, 799, 99)
    with pytest.raises(ValueError, match="column index 99 is out of range"):
        LinearRegressor(solver="sgd", learning_rate=1e6, random_state=0).fit(X, 1e3 * rng.normal(size=800))


@pytest.mark.parametrize("settings", [dict(learning_rate="auto"), dict(early_stopping=True),
                                      dict(init="random"), dict(coef_init=True), dict(index_dtype=np.int64)],
                         ids=["auto-rate", "early-stopping", "random-init", "coef-init", "int64-indices"])
def test_index_out_of_range_checked_by_validation(settings, monkeypatch):
    """Where something reads X through its indices before the first epoch (or a conversion could wrap an index
    into range), validation checks them: the fit fails before any solver code runs."""
    from fastopt import _iterative

    settings = dict(settings)
    rng = np.random.default_rng(7)
    bad = 2**32 + 3 if settings.get("index_dtype") is np.int64 else 77
    X = _hand_built_csr(rng, 200, 30, 150, bad, index_dtype=settings.pop("index_dtype", np.int32))
    fit_kwargs = {"coef_init": np.ones(30)} if settings.pop("coef_init", False) else {}
    monkeypatch.setattr(_iterative.IterativeSolver, "fit", lambda *a, **k: pytest.fail("the solver ran"))
    est = LinearRegressor(solver="sgd", **{"learning_rate": 0.01, **settings})
    with pytest.raises(ValueError, match=f"column index {bad} is out of range"):
        est.fit(X, rng.normal(size=200), **fit_kwargs)


def test_hand_built_coo_out_of_range_is_refused():
    X = sp.coo_matrix((np.ones(2), (np.array([0, 1]), np.array([0, 1]))), shape=(3, 3))
    X.col = np.array([0, 9])
    with pytest.raises(ValueError, match="column index 9 is out of range"):
        LinearRegressor().fit(X, np.arange(3.0))


def test_too_large_for_int32_indices_is_a_clear_error(monkeypatch, rng):
    from fastopt import _validation

    X, y = make_problem(rng, n=30)
    X = convert(X, "csr_int64")
    monkeypatch.setattr(_validation, "_INDEX_MAX", 5)
    with pytest.raises(ValueError, match="32-bit indices"):
        LinearRegressor().fit(X, y)


def test_deep_copy_round_trip_keeps_sparse_fit(rng):
    X, y = make_problem(rng)
    est = LinearRegressor().fit(X, y)
    np.testing.assert_array_equal(copy.deepcopy(est).predict(X), est.predict(X))


def test_warning_free_on_sparse_well_conditioned(rng):
    X, y = make_problem(rng)
    with warnings.catch_warnings():
        warnings.simplefilter("error", IllConditionedWarning)
        LinearRegressor().fit(X, y)


@pytest.mark.parametrize("params", [{"positive": True}, {"alpha": np.array([0.1, 1.0])}])
def test_positive_and_per_target_alpha_on_sparse(rng, params):
    X, Y = make_problem(rng, k=2)
    est = LinearRegressor(**params).fit(X, Y)
    ref = LinearRegressor(**params).fit(X.toarray(), Y)
    assert est.solver_ == ref.solver_
    np.testing.assert_allclose(est.coef_, ref.coef_, rtol=1e-9, atol=1e-12)


def _with_stored_zeros(X: np.ndarray, fraction: float, seed: int):
    """CSR of ``X`` (its values) plus explicit zeros at about ``fraction`` of its zero entries."""
    rng = np.random.default_rng(seed)
    A = sp.csr_matrix(X).tocoo()
    r, c = np.nonzero((X == 0) & (rng.random(X.shape) < fraction))
    return sp.csr_matrix((np.r_[A.data, np.zeros(r.size)], (np.r_[A.row, r], np.r_[A.col, c])), shape=X.shape)


def test_stored_zeros_do_not_change_momentums_rate():
    # A column of one value plus stored zeros was no longer "private": momentum's rate lost its cap (0.008 ->
    # 0.026) and the fit differed from the dense one, under precondition="none" too.
    rng = np.random.default_rng(0)
    X = np.zeros((64, 2))
    X[:, 0] = rng.standard_normal(64)
    X[0, 1] = 5.0
    y = rng.standard_normal(64)
    A = sp.csr_matrix(X).tocoo()
    rows = np.arange(1, 40)
    Z = sp.csr_matrix((np.r_[A.data, np.zeros(rows.size)], (np.r_[A.row, rows], np.r_[A.col, np.ones(rows.size, int)])),
                      shape=X.shape)
    kw = dict(solver="momentum", batch_size=2, max_epochs=1, tol=None, random_state=0, precondition="none")
    dense, zeros = LinearRegressor(**kw).fit(X, y), LinearRegressor(**kw).fit(Z, y)
    assert zeros.learning_rate_ == dense.learning_rate_
    np.testing.assert_allclose(zeros.coef_, dense.coef_, rtol=1e-12)


@pytest.mark.parametrize("solver", ["sgd", "adam"])
def test_stored_zeros_do_not_change_the_default_map(solver):
    # The default map counted stored zeros as values: other rare columns, SGD's rate 0.200 -> 0.092, coefficients
    # 2.3 apart after two epochs.
    rng = np.random.default_rng(1)
    X = (rng.random((64, 20)) < 0.03) * rng.standard_normal((64, 20))
    y = X @ rng.standard_normal(20) + 1.0 + 0.3 * rng.standard_normal(64)
    A = sp.csr_matrix(X).tocoo()
    r, c = np.nonzero((X == 0) & (rng.random(X.shape) < 0.3))
    Z = sp.csr_matrix((np.r_[A.data, np.zeros(r.size)], (np.r_[A.row, r], np.r_[A.col, c])), shape=X.shape)
    kw = dict(solver=solver, batch_size=7, max_epochs=2, tol=None, random_state=0)
    clean, zeros = LinearRegressor(**kw).fit(sp.csr_matrix(X), y), LinearRegressor(**kw).fit(Z, y)
    assert zeros.learning_rate_ == clean.learning_rate_
    np.testing.assert_allclose(zeros.coef_, clean.coef_, rtol=1e-12, atol=1e-14)


def test_stored_zeros_do_not_change_the_floored_weighted_map():
    # The floor's holders summed the weights of every stored entry, zeros included (rare columns' scales 0.138
    # and 0.389 where the zeros eliminated give 0.315 and 1.034).
    from fastopt import _iterative_lr

    rng = np.random.default_rng(3)
    X = (rng.random((400, 30)) < 0.02) * rng.standard_normal((400, 30))
    A = sp.csr_matrix(X).tocoo()
    r, c = np.nonzero((X == 0) & (rng.random(X.shape) < 0.2))
    Z = sp.csr_matrix((np.r_[A.data, np.zeros(r.size)], (np.r_[A.row, r], np.r_[A.col, c])), shape=X.shape)
    w = rng.uniform(0.5, 2.0, 400)
    params = {"fit_intercept": True, "alpha": 0.0}
    rows = np.arange(400)
    clean = _iterative_lr._csr_affine(params, sp.csr_matrix(X), rows, w, floor=True)
    zeros = _iterative_lr._csr_affine(params, Z, rows, w, floor=True)
    np.testing.assert_allclose(zeros.scale, clean.scale, rtol=1e-12)


@pytest.mark.parametrize("fault", ["indptr-float", "indices-float", "lengths"])
def test_index_arrays_of_the_wrong_kind_or_length_are_named(fault):
    # SciPy's constructors take these as assigned afterwards; a float indptr had ended in slicing's TypeError, a
    # data array longer than its indices had been fitted by some solvers and refused by others in their words.
    X = sp.csr_matrix((np.array([1.0, 2.0, 3.0]), np.array([0, 1, 2], np.int32), np.array([0, 1, 2, 3], np.int32)),
                      shape=(3, 3))
    if fault == "indptr-float":
        X.indptr = X.indptr.astype(np.float64)
    elif fault == "indices-float":
        X.indices = X.indices.astype(np.float64)
    else:
        X.data = np.append(X.data, 4.0)
    for solver in ("normal", "qr", "lsqr", "sgd", "newton"):
        with pytest.raises(ValueError, match="X is a malformed sparse matrix: (indptr|indices)"):
            LinearRegressor(solver=solver).fit(X, np.arange(3.0))


@pytest.mark.parametrize("solver", ["normal", "qr", "lsqr", "cg", "sgd", "adam", "newton"])
def test_stored_entries_past_indptr_end_are_ignored_as_scipy_does(solver, rng):
    # SciPy's nnz is indptr[-1]: values stored beyond it are not part of the matrix (toarray ignores them), and
    # Ridge fits it; the default rate's column moments read X.data whole and failed to broadcast.
    X, y = make_problem(rng, n=120, d=6)
    X = sp.csr_matrix(X)
    slack = X.copy()  # (assigned after construction: SciPy's constructor prunes them)
    slack.data, slack.indices = np.append(X.data, [np.nan, 7.0]), np.append(X.indices, [0, 1]).astype(np.int32)
    before = snapshot(slack)
    kw = {"random_state": 0} if solver in ("sgd", "adam") else {}
    want = LinearRegressor(solver=solver, **kw).fit(X, y)
    got = LinearRegressor(solver=solver, **kw).fit(slack, y)
    np.testing.assert_array_equal(got.coef_, want.coef_)
    assert_unchanged(before, snapshot(slack))


@pytest.mark.parametrize("index", [np.uint64, np.uint32, np.int16])
def test_unsigned_and_narrow_index_arrays_are_taken(index, rng):
    # SciPy's canonical-format check refuses uint64 ("unsupported data types"); Ridge takes them.
    X, y = make_problem(rng, n=80, d=5)
    X = sp.csr_matrix(X)
    X.sum_duplicates()
    odd = X.copy()  # (assigned after construction: SciPy's constructor casts them to int32)
    odd.indices, odd.indptr = X.indices.astype(index), X.indptr.astype(index)
    want = LinearRegressor().fit(X, y).coef_
    np.testing.assert_array_equal(LinearRegressor().fit(odd, y).coef_, want)


@pytest.mark.parametrize("solver", ["auto", "sgd", "lsqr"])
def test_a_dataframe_of_float32_sparse_columns_fits_in_float32_as_its_csr(solver):
    # scikit-learn converts a frame of sparse columns with no original dtype, so to float64: coef_ and predict
    # were float64 where the same values as a float32 CSR matrix (or a dense float32 frame) fit in float32.
    pd = pytest.importorskip("pandas")
    rng = np.random.default_rng(0)
    X = np.where(rng.random((200, 4)) < 0.5, 0, rng.normal(size=(200, 4))).astype(np.float32)
    y = (X @ np.arange(1.0, 5.0) + 0.1 * rng.normal(size=200)).astype(np.float32)
    frame = pd.DataFrame(X, columns=list("abcd")).astype(pd.SparseDtype(np.float32, 0))
    kw = dict(solver=solver, random_state=0)
    ref = LinearRegressor(**kw).fit(sp.csr_matrix(X), y)
    for fit in (lambda e: e.fit(frame, y), lambda e: e.partial_fit(frame, y) if solver == "sgd" else e.fit(frame, y),
                lambda e: e.fit_stream([(frame, y)])):
        est = fit(LinearRegressor(**kw))
        assert est.coef_.dtype == np.float32 and est.predict(frame).dtype == np.float32
    np.testing.assert_array_equal(LinearRegressor(**kw).fit(frame, y).coef_, ref.coef_)
    # float64 sparse columns stay float64
    assert LinearRegressor(**kw).fit(frame.astype(pd.SparseDtype(np.float64, 0)), y).coef_.dtype == np.float64


def test_dataframe_of_sparse_bool_columns_fits_as_floats(rng):
    # pd.get_dummies(sparse=True) gives Sparse[bool] columns, which validation turns into a bool CSR: the float
    # cast of y to X's dtype failed ("data type bool not inexact") in fit, partial_fit and fit_stream.
    pd = pytest.importorskip("pandas")
    cats = pd.DataFrame({"a": rng.choice(list("xyz"), 60), "b": rng.choice(list("pq"), 60)})
    frame = pd.get_dummies(cats, sparse=True)
    dense = frame.sparse.to_dense().to_numpy(dtype=float)
    y = dense @ rng.normal(size=dense.shape[1]) + 0.1 * rng.normal(size=60)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # one-hot with an intercept: rank-deficient, warned
        want = LinearRegressor().fit(dense, y).predict(dense)
        for fit in (lambda e: e.fit(frame, y), lambda e: e.partial_fit(frame, y), lambda e: e.fit_stream([(frame, y)])):
            np.testing.assert_allclose(fit(LinearRegressor()).predict(dense), want, rtol=1e-10, atol=1e-10)


def test_sparse_sample_weight_gets_the_same_error_everywhere(rng):
    X, y = make_problem(rng, n=40, d=4)
    sw = sp.csr_matrix(np.ones((40, 1)))
    for fit in (lambda e: e.fit(X, y, sample_weight=sw), lambda e: e.partial_fit(X, y, sample_weight=sw),
                lambda e: e.fit_stream([(X, y, sw)])):
        with pytest.raises(TypeError, match="Sparse data was passed for sample_weight"):
            fit(LinearRegressor())


def test_qr_on_too_wide_sparse_x_is_a_clear_memory_error(monkeypatch):
    from fastopt import _sparse

    monkeypatch.setattr(_sparse, "available_memory", lambda: 2**30)
    X = sp.random(50, 2**14, density=0.001, format="csr", random_state=0)
    with pytest.raises(MemoryError, match="solver='qr' densifies blocks"):
        LinearRegressor(solver="qr").fit(X, np.arange(50.0))


@pytest.mark.parametrize("fmt", ["coo", "csr", "csc"])
@pytest.mark.parametrize("call", ["predict", "score"])
def test_duplicate_entries_that_sum_to_inf_are_refused_at_predict_as_at_fit(rng, fmt, call):
    # Two stored 1.5e308 at one place are an inf of X (X.toarray() holds it, and fit refuses it); predict checked
    # the stored values one by one and returned 5e307, score 0.0 with NumPy's overflow warning
    est = LinearRegressor().fit(rng.normal(size=(50, 2)), rng.normal(size=50))
    parts = ([1.5e308, 1.5e308, 1.0], [0, 0, 1], [0, 2, 3])  # row (or column) 0 stores index 0 twice
    X = {"coo": lambda: sp.coo_array((parts[0], (parts[1], parts[1])), shape=(2, 2)),
         "csr": lambda: sp.csr_array(parts, shape=(2, 2)), "csc": lambda: sp.csc_array(parts, shape=(2, 2))}[fmt]()
    X_before = X.copy()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ValueError, match="X contains infinity"):
            est.predict(X) if call == "predict" else est.score(X, np.zeros(2))
    np.testing.assert_array_equal(X.data, X_before.data)  # (summed on a copy)
    assert X.nnz == 3


@pytest.mark.parametrize("fmt", ["coo", "csr"])
def test_predict_copies_no_duplicate_free_sparse_X_whose_sums_cannot_overflow(rng, fmt):
    # A COO matrix built from triplets is never flagged canonical: summing its duplicates on a copy at every
    # call (a sort) made predict on 1e7 stored values 57 times slower. Only values that could add up beyond the
    # float range are summed first.
    from fastopt._validation import check_predict_data

    est = LinearRegressor().fit(rng.normal(size=(50, 3)), rng.normal(size=50))
    parts = (rng.normal(size=4), np.array([2, 0, 1, 2]), np.array([0, 2, 4]))  # unsorted indices
    X = (sp.coo_array((parts[0], (np.array([0, 0, 1, 1]), parts[1])), shape=(2, 3)) if fmt == "coo"
         else sp.csr_array(parts, shape=(2, 3)))
    assert not X.has_canonical_format
    assert np.shares_memory(check_predict_data(est, X).data, X.data)


@pytest.mark.parametrize("loss", ["squared_error", "huber", "absolute_error"])
def test_a_dataframe_of_sparse_columns_chooses_the_solver_its_csr_does(loss):
    # Validation turns such a frame into CSR; "auto" chose from the frame as if its rows were dense: Newton for the
    # robust losses (18-116 s on a CountVectorizer frame of 4,000 x 2,500, against SGD's 0.05 s on its CSR) and
    # the closed form's QR for squared error (2.9 s against LSQR's 0.03 s)
    pd = pytest.importorskip("pandas")
    rng = np.random.default_rng(0)
    X = sp.random(2000, 1500, density=0.005, format="csr", random_state=np.random.RandomState(0),
                  data_rvs=rng.standard_normal)
    y = X @ rng.standard_normal(1500) + 0.1 * rng.standard_normal(2000)
    frame = pd.DataFrame.sparse.from_spmatrix(X, columns=[f"c{j}" for j in range(1500)])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # (SGD's plateau warning where it stops short: the same for both)
        on_csr = LinearRegressor(loss=loss, random_state=0).fit(X, y)
        on_frame = LinearRegressor(loss=loss, random_state=0).fit(frame, y)
    assert on_frame.solver_ == on_csr.solver_
    np.testing.assert_array_equal(on_frame.coef_, on_csr.coef_)
    assert list(on_frame.feature_names_in_) == list(frame.columns)


def test_fit_stream_of_sparse_dataframe_chunks_chooses_as_their_csr():
    # fit_stream judged "auto" by the first chunk as it was, a frame of sparse columns as dense rows: Adam for the
    # Huber loss where CSR chunks take SGD (and the closed form's SVD, 11 s, for wide squared error where they take
    # LSQR, 0.06 s)
    pd = pytest.importorskip("pandas")
    rng = np.random.default_rng(1)
    X = sp.random(1200, 300, density=0.01, format="csr", random_state=np.random.RandomState(1),
                  data_rvs=rng.standard_normal)
    y = X @ rng.standard_normal(300) + 0.1 * rng.standard_normal(1200)
    names = [f"c{j}" for j in range(300)]
    csr_chunks = [(X[i : i + 400], y[i : i + 400]) for i in range(0, 1200, 400)]
    frame_chunks = [(pd.DataFrame.sparse.from_spmatrix(Xc, columns=names), yc) for Xc, yc in csr_chunks]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        on_csr = LinearRegressor(loss="huber", random_state=0, max_epochs=5).fit_stream(csr_chunks)
        on_frames = LinearRegressor(loss="huber", random_state=0, max_epochs=5).fit_stream(frame_chunks)
    assert on_frames.solver_ == on_csr.solver_ == "sgd"
    np.testing.assert_array_equal(on_frames.coef_, on_csr.coef_)
