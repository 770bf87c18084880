"""The closed form's pivoted path: exactly dependent columns (one-hot columns with an intercept, a constant column
such as ``PolynomialFeatures``' bias) solved from the Gram, with the null space confirmed by a pass over ``X``.

The reference is ``numpy.linalg.lstsq`` on the centred, weighted design (its minimum-norm solution with its
cutoff). The pivoted path solves the normal equations of the kept columns, column-scaled, whose reciprocal
condition it reports as ``rcond_``: its error is about ``u / rcond_`` (Higham, *Accuracy and Stability of
Numerical Algorithms*, 2nd ed., sec. 20.4), ``u = max(n, d) eps``, where QR's is ``u kappa_r``; the tolerances
below take the larger of the two, times 8.
"""
import types
import warnings

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given
from hypothesis import strategies as st

from fastopt import LinearRegressor, _closed_form, _solvers, _sparse
from fastopt.exceptions import IllConditionedWarning, RankDeficientWarning

EPS = np.finfo(np.float64).eps


def lstsq_reference(X, y, w=None, fit_intercept=True):
    """Minimum-norm coefficients, intercept and singular values of the weighted (centred) problem."""
    X = X.toarray() if sp.issparse(X) else np.asarray(X, dtype=np.float64)
    sw = np.ones(len(y)) if w is None else w
    xm = np.average(X, axis=0, weights=sw) if fit_intercept else np.zeros(X.shape[1])
    ym = np.average(y, weights=sw) if fit_intercept else 0.0
    coef, _, rank, s = np.linalg.lstsq(np.sqrt(sw)[:, None] * (X - xm), np.sqrt(sw) * (y - ym), rcond=None)
    return coef, ym - coef @ xm, rank, s


def assert_matches(est, X, y, w=None, fit_intercept=True):
    ref, intercept, rank, s = lstsq_reference(X, y, w, fit_intercept)
    assert est.rank_ == rank
    kappa_r = s[0] / s[rank - 1]
    # (the SVD of R is as accurate as lstsq's own; its rcond_, R's, is 0 where a column is zero)
    tol = 8 * max(X.shape) * EPS * (kappa_r if est.solver_ == "svd" else max(kappa_r, 1 / est.rcond_))
    assert np.linalg.norm(est.coef_ - ref) <= tol * np.linalg.norm(ref)
    assert abs(est.intercept_ - intercept) <= tol * (abs(intercept) + np.abs(ref).sum() * np.abs(X).max())


def one_hot(rng, n, levels, numeric=2):
    codes = [rng.integers(0, m, size=n) for m in levels]
    for c, m in zip(codes, levels):
        c[:m] = np.arange(m)  # every level present
    return np.ascontiguousarray(np.hstack([*(np.eye(m)[c] for c, m in zip(codes, levels)),
                                           rng.normal(size=(n, numeric))]))


def fit(X, y, **kw):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        est = LinearRegressor(**kw).fit(X, y)
    return est, [c.category for c in caught]


def _no_qr_pass(monkeypatch):
    def no_qr_pass(*args):
        raise AssertionError("the QR pass ran although the pivoted path applies")

    monkeypatch.setattr(_closed_form, "chunk_qr_state", no_qr_pass)


@pytest.mark.parametrize(("solver", "path"), [("normal", "pivoted_cholesky"), ("qr", "svd")])
@pytest.mark.parametrize("weighted", [False, True])
def test_dummy_variable_trap_equals_lstsq_on_centred_data(solver, path, weighted, rng):
    X = one_hot(rng, 3000, (5, 7, 4))
    y = X @ rng.normal(size=X.shape[1]) + 0.1 * rng.normal(size=len(X))
    w = rng.uniform(0.5, 2, size=len(y)) if weighted else None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        est = LinearRegressor(solver=solver).fit(X, y, sample_weight=w)
    assert [c.category for c in caught] == [RankDeficientWarning]  # one warning per fit, filterable
    d, deficit = X.shape[1], 3
    assert (est.solver_, est.rank_) == (path, d - deficit)
    sw = np.ones(len(y)) if w is None else w
    xm, ym = np.average(X, axis=0, weights=sw), np.average(y, weights=sw)
    A, b = np.sqrt(sw)[:, None] * (X - xm), np.sqrt(sw) * (y - ym)
    ref, _, rank, s = np.linalg.lstsq(A, b, rcond=None)
    assert rank == d - deficit
    # Minimum-norm solutions of the same problem: both backward stable with the same cutoff, so they agree to
    # about u kappa_r (Golub & Van Loan, sec. 5.5.6), kappa_r = s_1 / s_rank, u = max(n, d) eps; 8 as in the
    # module docstring.
    # The pivoted path solves the normal equations of the kept columns, column-scaled, with reciprocal condition
    # rcond_: their error grows with its inverse instead (Higham, Accuracy and Stability of Numerical Algorithms,
    # 2nd ed., sec. 20.4), and so does that of the null space removed from the basic solution.
    kappa_r = s[0] / s[rank - 1]
    tol = 8 * max(X.shape) * EPS * (kappa_r if path == "svd" else max(kappa_r, 1 / est.rcond_))
    assert np.linalg.norm(est.coef_ - ref) <= tol * np.linalg.norm(ref)
    assert abs(est.intercept_ - (ym - ref @ xm)) <= tol * (abs(ym) + np.abs(xm) @ np.abs(ref))
    if path == "svd":  # the singular values are those of the centred design (from the d x d R, not from X)
        np.testing.assert_allclose(est.singular_[:rank], s[:rank], rtol=tol)
    else:
        assert est.singular_ is None


@pytest.mark.parametrize("weighted", [False, True])
def test_one_hot_with_intercept_takes_the_pivoted_path_without_a_qr_pass(weighted, rng, monkeypatch):
    X = one_hot(rng, 70_000, (50, 30, 7))  # enough rows for the probe (32 x 2048): it must let the Gram run
    y = X @ rng.normal(size=X.shape[1]) + 0.1 * rng.normal(size=len(X))
    w = rng.uniform(0.5, 2, size=len(y)) if weighted else None
    _no_qr_pass(monkeypatch)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        est = LinearRegressor().fit(X, y, sample_weight=w)
    assert [c.category for c in caught] == [RankDeficientWarning]  # the answer is qualified: one warning
    assert "solver_='pivoted_cholesky'" in str(caught[0].message)
    assert (est.solver_, est.rank_, est.singular_) == ("pivoted_cholesky", X.shape[1] - 3, None)
    assert_matches(est, X, y, w)


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("sparse", [False, True])
def test_one_hot_whose_kept_block_fails_the_test_is_solved_by_the_lifted_equations(weighted, sparse, monkeypatch):
    # Which columns pstrf keeps decides the kept block's condition: the centred one-hot columns of a category
    # without a frequent level are nearly dependent, and on 2,000 rows of 10, 100 and 500 levels its rcond (5e-5)
    # failed the test; the fit went to QR and the SVD (on 20,000 rows of 10, 100 and 1,000 levels, CSR: 2.8 s
    # against 0.1 s, the QR densifying row blocks). The lifted equations, whose condition is the design's nonzero
    # spectrum's, give the minimum-norm solution without that pass.
    from sklearn.preprocessing import OneHotEncoder

    rng = np.random.default_rng(0)
    cats = np.column_stack([rng.integers(0, m, size=2000) for m in (10, 100, 500)])
    X = OneHotEncoder(sparse_output=True).fit_transform(cats).tocsr()
    X = X if sparse else X.toarray()
    y = rng.normal(size=2000) + cats[:, 0]
    w = rng.uniform(0.5, 2, size=len(y)) if weighted else None
    _no_qr_pass(monkeypatch)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        est = LinearRegressor(solver="normal").fit(X, y, sample_weight=w)
    assert [c.category for c in caught] == [RankDeficientWarning]
    assert (est.solver_, est.rank_) == ("pivoted_cholesky", X.shape[1] - 3)
    assert est.rcond_ >= _closed_form.RCOND_CHOLESKY  # the lifted system's, which passed the test
    assert_matches(est, X, y, w)


def test_one_alpha_per_target_with_a_zero_takes_the_pivoted_path(monkeypatch):
    # An array alpha never reached the pivoted path: alpha=[0, 0] (the same as alpha=0) and [0, 1e-3] sent every
    # target to QR and the SVD (one-hot CSR of 50,000 x 710: 2.2 s, where each target alone takes 0.01-0.05 s)
    from sklearn.preprocessing import OneHotEncoder

    rng = np.random.default_rng(7)
    cats = np.column_stack([rng.integers(0, m, size=3000) for m in (10, 30, 60)])
    X = OneHotEncoder(sparse_output=True).fit_transform(cats).tocsr()
    assert not _solvers.krylov_first(X)  # (at 300 levels "auto" runs LSQR first: the closed form costs more)
    Y = np.column_stack([rng.normal(size=3000) + cats[:, 0], rng.normal(size=3000)])
    alone = [LinearRegressor(solver="normal", alpha=a) for a in (0.0, 1e-3)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RankDeficientWarning)
        for j, est in enumerate(alone):
            est.fit(X, Y[:, j])
    assert [est.solver_ for est in alone] == ["pivoted_cholesky", "cholesky"]
    _no_qr_pass(monkeypatch)
    for solver in ["normal", "auto"]:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            est = LinearRegressor(solver=solver, alpha=[0.0, 1e-3]).fit(X, Y)
        assert [c.category for c in caught] == [RankDeficientWarning]  # the alpha=0 target's, once
        assert est.solver_ == "pivoted_cholesky+cholesky"
        for j in range(2):  # each target as its own fit: the same solve
            np.testing.assert_array_equal(est.coef_[j], alone[j].coef_)
            assert est.intercept_[j] == alone[j].intercept_
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RankDeficientWarning)
            same = LinearRegressor(solver=solver, alpha=[0.0, 0.0]).fit(X, Y)
            scalar = LinearRegressor(solver=solver, alpha=0.0).fit(X, Y)
        assert same.solver_ == scalar.solver_ and same.solver_ in ("pivoted_cholesky", "lsqr")
        np.testing.assert_array_equal(same.coef_, scalar.coef_)


@pytest.mark.parametrize("alpha", [[0.0, 0.0], [0.0, 1e-3]])
def test_partial_fit_after_one_alpha_per_target_stays_on_the_pivoted_path(alpha):
    # The per-target solve kept no null space: a partial_fit after it took the warned eigensolve (IllConditioned
    # Warning), where after a scalar alpha it stays on the pivoted path
    from sklearn.preprocessing import OneHotEncoder

    rng = np.random.default_rng(3)
    cats = np.column_stack([rng.integers(0, m, size=3000) for m in (10, 30)])
    X = OneHotEncoder(sparse_output=False).fit_transform(cats)
    Y = np.column_stack([rng.normal(size=3000) + cats[:, 0], rng.normal(size=3000)])
    est = LinearRegressor(solver="normal", alpha=alpha)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        est.fit(X[:2000], Y[:2000])
        est.partial_fit(X[2000:], Y[2000:])
    assert [c.category for c in caught] == [RankDeficientWarning] * 2  # one a call, none IllConditioned
    assert est.solver_.startswith("pivoted_cholesky")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RankDeficientWarning)
        whole = LinearRegressor(solver="normal", alpha=alpha).fit(X, Y)
    np.testing.assert_allclose(est.coef_, whole.coef_, rtol=0, atol=1e-12 * np.abs(whole.coef_).max())


@pytest.mark.parametrize("how", ["fit_stream", "dask"])
def test_streams_and_dask_take_one_alpha_per_target_on_the_pivoted_path(how):
    # They took QR and the SVD, with a RankDeficientWarning per target (one-hot CSR of 20,000 x 410: 0.3-0.6 s,
    # where alpha=0 takes the pivoted path in 0.01-0.2 s)
    from sklearn.preprocessing import OneHotEncoder

    rng = np.random.default_rng(3)
    cats = np.column_stack([rng.integers(0, m, size=4000) for m in (10, 30)])
    X = OneHotEncoder(sparse_output=True).fit_transform(cats).tocsr()
    Y = np.column_stack([rng.normal(size=4000) + cats[:, 0], rng.normal(size=4000)])
    est = LinearRegressor(solver="normal", alpha=[0.0, 1e-3])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if how == "fit_stream":
            est.fit_stream([(X[i : i + 1000], Y[i : i + 1000]) for i in range(0, 4000, 1000)])
        else:
            da = pytest.importorskip("dask.array")
            dask = pytest.importorskip("dask")
            with dask.config.set(scheduler="synchronous"):
                est.fit(da.from_array(X.toarray(), chunks=(1000, X.shape[1])).map_blocks(sp.csr_matrix),
                        da.from_array(Y, chunks=(1000, 2)))
    assert [c.category for c in caught] == [RankDeficientWarning]
    assert est.solver_ == "pivoted_cholesky+cholesky"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RankDeficientWarning)
        memory = LinearRegressor(solver="normal", alpha=[0.0, 1e-3]).fit(X, Y)
    # the statistics summed chunk by chunk: rounding of the normal equations' accuracy (rcond_ about 1e-2)
    np.testing.assert_allclose(est.coef_, memory.coef_, rtol=0, atol=1e-11 * np.abs(memory.coef_).max())


def test_an_array_alpha_stays_refused_by_the_scalar_only_solvers():
    X, y = np.random.default_rng(0).normal(size=(50, 3)), np.zeros((50, 2))
    with pytest.raises(ValueError, match="takes a scalar alpha"):
        LinearRegressor(solver="sgd", alpha=[1e-3, 1e-3]).fit(X, y)


def test_polynomial_bias_column_gets_a_zero_coefficient(rng):
    from sklearn.preprocessing import PolynomialFeatures

    X = PolynomialFeatures(3).fit_transform(rng.normal(size=(5000, 4)))  # the default keeps the bias column
    y = X @ rng.normal(size=X.shape[1]) + rng.normal(size=len(X))
    est, caught = fit(X, y)
    assert caught == [RankDeficientWarning]
    assert est.solver_ == "pivoted_cholesky" and est.rank_ == X.shape[1] - 1
    assert est.coef_[0] == 0.0  # the centred bias column is exactly zero: its minimum-norm coefficient is 0
    assert_matches(est, X, y)


def test_a_small_singular_value_above_lstsqs_cutoff_is_not_dropped(rng):
    # Two columns 1e-6 apart: the Gram's pivot (about 1e-12 after scaling) cannot tell this from rounding, so the
    # pivoted path proposes it as null; the pass over X measures it (1e-6 of the largest singular value, far
    # above lstsq's cutoff eps max(n, d)) and refutes it. QR then keeps the column, as lstsq does.
    X = rng.normal(size=(10_000, 4))
    X[:, 3] = X[:, 2] + 1e-6 * rng.normal(size=len(X))
    y = X @ np.array([1.0, -2.0, 0.5, 3.0]) + 0.01 * rng.normal(size=len(X))
    est, caught = fit(X, y)
    assert caught == []  # a full-rank answer: nothing to warn about
    assert (est.solver_, est.rank_) == ("qr", 4)
    ref, _, rank, s = lstsq_reference(X, y)
    assert rank == 4
    tol = 8 * max(X.shape) * EPS * s[0] / s[-1]  # QR: u kappa
    assert np.linalg.norm(est.coef_ - ref) <= tol * np.linalg.norm(ref)


def test_candidates_the_rows_refute_are_left_to_qr(rng, monkeypatch):
    # The decision is the pass's: with the threshold made unreachable, the same one-hot design goes to QR/SVD.
    X = one_hot(rng, 3000, (5, 7, 4))
    y = X @ rng.normal(size=X.shape[1]) + 0.1 * rng.normal(size=len(X))
    monkeypatch.setattr(_closed_form, "_null_pass_of", lambda *args: np.inf)
    est, caught = fit(X, y)
    assert caught == [RankDeficientWarning] and est.solver_ == "svd"
    assert_matches(est, X, y)


def test_polynomial_features_of_one_hot_columns_take_the_pivoted_path(rng, monkeypatch):
    # PolynomialFeatures(2) after one-hot columns: a dummy's square is the dummy, two levels of one feature never
    # meet (zero columns), and products with one feature's dummies sum to the other factor. The kept columns'
    # reciprocal condition is judged on their own block (the whole matrix's norm, swollen by the duplicates, made
    # it 7.9e-5 < 1e-4 on 100,000 rows of three 10-level features and three numeric columns, whose own block has
    # 1.7e-4: the SVD took 1.9 s where this path takes 0.7-0.9 s).
    from sklearn.preprocessing import PolynomialFeatures

    X = PolynomialFeatures(2).fit_transform(one_hot(rng, 4000, (6, 5, 4), numeric=2))
    y = X @ (0.1 * rng.normal(size=X.shape[1])) + rng.normal(size=len(X))
    _no_qr_pass(monkeypatch)
    est, caught = fit(X, y)
    assert (est.solver_, caught) == ("pivoted_cholesky", [RankDeficientWarning])
    assert_matches(est, X, y)


@pytest.mark.parametrize("fit_intercept", [True, False])
def test_the_kept_blocks_norm_is_that_of_the_scaled_equations(fit_intercept, rng):
    X = rng.normal(size=(200, 12)) * rng.choice([0.01, 1.0, 300.0], size=12) + rng.normal(size=12)
    y = X @ rng.normal(size=12)
    params = LinearRegressor(fit_intercept=fit_intercept).get_params()
    state = _closed_form.chunk_state(params, _closed_form.Data(X=X, Y=y[:, None], sample_weight=None,
                                                               y_was_1d=True))
    A, _, scale = _closed_form._scaled_normal_equations(params, state)
    idx = rng.permutation(12)[:7]
    expected = np.abs(A[np.ix_(idx, idx)]).sum(axis=0).max()
    assert _closed_form._block_one_norm(params, state, scale, idx) == pytest.approx(expected, rel=1e-14)


def test_without_intercept_duplicated_columns_take_the_uncentred_pivoted_path(rng):
    X = rng.normal(size=(4000, 6)) + 3.0
    X = np.column_stack([X, X[:, 1], X[:, 0] - X[:, 4]])
    y = X @ rng.normal(size=X.shape[1]) + 0.1 * rng.normal(size=len(X))
    est, caught = fit(X, y, fit_intercept=False)
    assert caught == [RankDeficientWarning]
    assert (est.solver_, est.rank_, est.intercept_) == ("pivoted_cholesky", 6, 0.0)
    assert_matches(est, X, y, fit_intercept=False)


def test_sparse_one_hot_named_normal_and_float32(rng):
    X = one_hot(rng, 20_000, (40, 12, 9))
    y = X @ rng.normal(size=X.shape[1]) + 0.1 * rng.normal(size=len(X))
    est, _ = fit(sp.csr_matrix(X), y, solver="normal")
    assert est.solver_ == "pivoted_cholesky"
    assert_matches(est, X, y)
    est32, _ = fit(X.astype(np.float32), y.astype(np.float32))
    assert est32.solver_ == "pivoted_cholesky" and est32.coef_.dtype == np.float32
    # float32 data: the statistics accumulate in float64 from values exact in float32 (0/1 and the rounded
    # numeric columns); the difference from the float64 fit is the numeric columns' and y's rounding, about
    # eps32 kappa_r relative to the coefficients, here below 1e-5.
    ref32, _, _, _ = lstsq_reference(X.astype(np.float32), y.astype(np.float32))
    assert np.linalg.norm(est32.coef_ - ref32) <= 1e-5 * np.linalg.norm(ref32)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("index", [np.int32, np.int64])
@pytest.mark.parametrize("q", [1, 3, 40])  # the compiled product up to _NULL_COMPILED_MAX directions, SciPy's above
def test_the_confirming_pass_reads_csr_rows_as_their_dense_copy(dtype, index, q, rng, monkeypatch):
    # Rows with unsorted and duplicate column indices, weighted, in several blocks; the reference sums the same
    # products densely. Each entry of X_c Q sums at most 2 * 12 + 1 terms in float64 in another order, and the
    # squares add positively: a relative difference within a few hundred eps.
    n, d = 5000, 60
    rows = np.repeat(np.arange(n), 12)
    cols = rng.integers(0, d, size=rows.size)  # duplicates within a row, in no order
    vals = rng.normal(size=rows.size).astype(dtype)
    X = sp.csr_array((vals, cols.astype(index), np.arange(0, rows.size + 1, 12).astype(index)), shape=(n, d))
    dense = np.zeros((n, d))
    np.add.at(dense, (rows, cols), vals.astype(np.float64))
    Q = np.linalg.qr(rng.normal(size=(d, q)))[0]
    mean = dense.mean(axis=0)
    w = rng.uniform(0.5, 2, size=n)
    data = types.SimpleNamespace(X=X, sample_weight=w)
    monkeypatch.setattr(_closed_form, "_NULL_BLOCK_VALUES", 4096)  # several blocks
    compiled = []
    block_times = _sparse.csr_block_times
    monkeypatch.setattr(_sparse, "csr_block_times", lambda *args: compiled.append(1) or block_times(*args))
    got = _closed_form.null_squares({"fit_intercept": True}, mean, 1, data, Q)
    Z = np.sqrt(w / 2)[:, None] * ((dense - mean) @ Q)
    assert got == pytest.approx(np.vdot(Z, Z), rel=256 * EPS)
    assert len(compiled) == (0 if q > _closed_form._NULL_COMPILED_MAX else -(-n // (4096 // 12)))
    assert X.indices.dtype == index and X.data.dtype == dtype  # the caller's matrix is read in place, unchanged


def _auto_fits(X, y, rows):
    """``solver="auto"`` on CSR ``X`` in memory, from a re-readable stream and on Dask blocks of ``rows`` rows,
    each with the categories of the warnings it raised."""
    da = pytest.importorskip("dask.array")
    dask = pytest.importorskip("dask")
    S, fits = sp.csr_array(X), []
    for how in ("memory", "stream", "dask"):
        with warnings.catch_warnings(record=True) as caught, dask.config.set(scheduler="synchronous"):
            warnings.simplefilter("always")
            if how == "memory":
                est = LinearRegressor().fit(S, y)
            elif how == "stream":
                est = LinearRegressor().fit_stream([(S[i : i + rows], y[i : i + rows])
                                                    for i in range(0, len(y), rows)])
            else:
                est = LinearRegressor().fit(da.from_array(S, chunks=(rows, X.shape[1]), asarray=False),
                                            da.from_array(y, chunks=rows))
        fits.append((est, [c.category for c in caught]))
    return fits


def _no_krylov(monkeypatch):
    from fastopt import _krylov

    def no_krylov(*args, **kwargs):
        raise AssertionError("a Krylov solver ran although the pivoted path applies")

    monkeypatch.setattr(_closed_form, "krylov_instead", no_krylov)
    monkeypatch.setattr(_krylov.SOLVERS["lsqr"], "_solve", no_krylov)


def test_auto_on_sparse_one_hot_takes_the_pivoted_path_as_on_dense(rng, monkeypatch):
    # "auto" on narrow sparse X computes the Gram (cheaper than the Krylov iterations); with an intercept
    # Cholesky rejects it, and where the pivoted path costs fewer iterations than LSQR's fewest it runs first:
    # the coefficients that OneHotEncoder's dense output gets (lstsq's minimum norm in the columns' own units,
    # not LSQR's least norm in its column-scaled units), with the same warning, in memory, from a re-readable
    # stream and on Dask blocks (where each Krylov iteration would read every chunk again).
    from fastopt import _krylov, _solvers

    X = one_hot(rng, 8000, (60, 30, 10))
    y = X @ rng.normal(size=X.shape[1]) + 0.1 * rng.normal(size=len(X))
    S = sp.csr_array(X)
    assert not _solvers.krylov_first(S) and _krylov.pivoted_first(*S.shape, S.nnz)
    # the QR fallback costs more than AUTO_MIN_ITERS iterations: streams and Dask would try Krylov before it
    assert _krylov.qr_fallback_iterations(*S.shape, S.nnz) >= _krylov.AUTO_MIN_ITERS
    _no_qr_pass(monkeypatch)
    _no_krylov(monkeypatch)
    dense, caught_dense = fit(X, y)
    assert dense.solver_ == "pivoted_cholesky" and caught_dense == [RankDeficientWarning]
    for est, categories in _auto_fits(X, y, 2000):
        assert categories == [RankDeficientWarning]
        assert (est.solver_, est.rank_) == ("pivoted_cholesky", X.shape[1] - 3)
        assert_matches(est, X, y)


@pytest.mark.filterwarnings("ignore::fastopt.exceptions.RankDeficientWarning")
def test_auto_on_wider_sparse_one_hot_runs_krylov_first_in_memory(rng, monkeypatch):
    # 8,000 rows of 493 columns: the closed form costs more than AUTO_MIN_ITERS of LSQR's iterations in memory
    # (measured: its pivoted path 7.6 ms, LSQR 3.6 ms), so LSQR runs first there (its predictions, no warning).
    # Where the closed form runs first (as on longer X), the pivoted path's factorisation still costs more than
    # LSQR's fewest iterations, so LSQR runs once the trap is found. A stream or Dask blocks read every chunk
    # again per iteration, and take the pivoted path (one more read).
    from fastopt import _krylov, _solvers

    X = one_hot(rng, 8000, (300, 150, 40))
    y = X @ rng.normal(size=X.shape[1]) + 0.1 * rng.normal(size=len(X))
    S = sp.csr_array(X)
    assert _solvers.krylov_first(S) and not _krylov.pivoted_first(*S.shape, S.nnz)
    _no_qr_pass(monkeypatch)
    (memory, caught), *chunked = _auto_fits(X, y, 2000)
    monkeypatch.setattr(_solvers, "krylov_first", lambda X, positive=False, alpha=0.0: False)
    with warnings.catch_warnings(record=True) as after_trap:
        warnings.simplefilter("always")
        trapped = LinearRegressor().fit(S, y)
    ref, intercept, _, _ = lstsq_reference(X, y)
    for est, categories in [(memory, caught), (trapped, after_trap)]:
        assert (est.solver_, categories) == ("lsqr", [])
        assert np.max(np.abs(est.predict(X) - (X @ ref + intercept))) <= 1e-9 * np.std(y)
    assert isinstance(memory._solver_state, _krylov.KrylovState)
    assert isinstance(trapped._solver_state, _closed_form.ClosedFormState)  # the Gram's, as the closed form's
    for est, categories in chunked:
        assert (est.solver_, categories) == ("pivoted_cholesky", [RankDeficientWarning])
        assert_matches(est, X, y)


def test_indicators_summing_to_a_constant_are_recognised_exactly(rng):
    # The dummy-variable trap from the stored values: the columns whose values are all 0 or 1 must sum to one
    # positive constant in every row, whatever else the rows hold.
    X = one_hot(rng, 500, (6, 4, 3))
    trap = _sparse.indicators_sum_to_constant
    for kind in (sp.csr_array, sp.csr_matrix):
        assert trap(kind(X)) and trap(kind(X.astype(np.float32)))
    S = sp.csr_array(X)
    S.indices, S.indptr = S.indices.astype(np.int64), S.indptr.astype(np.int64)
    assert trap(S)
    assert not trap(sp.csr_array(np.delete(X, [0, 6, 10], axis=1)))  # OneHotEncoder(drop="first"): no trap
    # One feature's first level dropped: the others' levels are still a trap, but all the indicators' sum is not
    # constant, so this test misses it; one_hot_block finds the other features' adjacent levels.
    assert not trap(sp.csr_array(X[:, 1:]))
    assert _sparse.one_hot_block(sp.csr_array(X[:, 1:])) and _sparse.dummy_trap(sp.csr_array(X[:, 1:]))
    assert not _sparse.dummy_trap(sp.csr_array(np.delete(X, [0, 6, 10], axis=1)))
    assert trap(sp.csr_array(X[:, :6])) and not trap(sp.csr_array(np.vstack([X[:, :6], np.zeros((1, 6))])))
    scaled = X.copy()
    scaled[:, :6] *= 2.0  # values 0 and 2: not indicators; the other features' levels still sum to 1
    assert trap(sp.csr_array(scaled))
    scaled[:, 6:13] *= 2.0
    assert not trap(sp.csr_array(scaled))
    assert not trap(sp.csr_array(np.zeros((5, 3)))) and not trap(sp.csr_array(rng.normal(size=(5, 3))))
    # explicit zeros are values 0 (they add nothing)
    Z = sp.csr_array(X[:, :6])
    Z.data[0] = 0.0
    assert not trap(Z)  # row 0 now sums to 0
    Z.data[0], Z.indices[0] = 1.0, (Z.indices[0] + 1) % 6
    assert trap(Z)  # another level, still one stored 1 a row (unsorted indices too)
    # duplicate indices add, as in X @ v: every row's stored ones sum to 2, so X @ 1 is constant
    D = sp.csr_array((np.ones(6), np.array([0, 0, 1, 2, 2, 1]), np.array([0, 2, 4, 6])), shape=(3, 3))
    assert trap(D) and np.all(D @ np.ones(3) == 2)
    E = sp.csr_array((np.ones(5), np.array([0, 0, 1, 2, 2]), np.array([0, 2, 3, 5])), shape=(3, 3))
    assert not trap(E)


@st.composite
def indicator_designs(draw):
    """CSR designs of one-hot groups (some dropped or with a level missing from a row) beside numeric columns."""
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    n = draw(st.integers(1, 40))
    levels = draw(st.lists(st.integers(1, 5), min_size=0, max_size=3))
    blocks = [np.eye(m)[rng.integers(0, m, size=n)] for m in levels]
    if blocks and draw(st.booleans()):
        blocks[0][rng.integers(0, n)] = 0.0  # a row lacking a level of the first feature
    if blocks and draw(st.booleans()):
        blocks[-1] = blocks[-1][:, 1:]  # drop="first"
    numeric = rng.choice([0.0, 1.0, 2.0, 0.5], size=(n, draw(st.integers(0, 2))))
    X = np.hstack([*blocks, numeric, np.zeros((n, 1))])
    return X, draw(st.sampled_from([np.float32, np.float64]))


@given(problem=indicator_designs())
def test_the_indicator_test_is_its_definition(problem):
    # Against the definition on the dense array: B = the columns whose values are all 0 or 1, and X_B @ 1 one
    # positive constant (the constant column is in the span of X_B).
    X, dtype = problem
    B = np.all((X == 0) | (X == 1), axis=0)
    sums = X[:, B].sum(axis=1)
    assert _sparse.indicators_sum_to_constant(sp.csr_array(X.astype(dtype))) == bool(
        sums[0] >= 1 and np.all(sums == sums[0]))


def _adjacent_levels_summing_to_one(X: np.ndarray) -> bool:
    """The definition one_hot_block decides: some run of adjacent columns whose values are all 0 or 1 sums to 1
    in every row (all runs tried)."""
    indicator = np.all((X == 0) | (X == 1), axis=0)
    d = X.shape[1]
    return X.shape[0] > 0 and any(np.all(X[:, a:b].sum(axis=1) == 1) for a in range(d) for b in range(a + 1, d + 1)
                                  if indicator[a:b].all())


@given(problem=indicator_designs())
def test_the_one_hot_block_test_is_its_definition(problem):
    # Every candidate verified: exactly the definition. With the verifications capped (the default), never a
    # block that is not one.
    X, dtype = problem
    S = sp.csr_array(X.astype(dtype))
    expected = _adjacent_levels_summing_to_one(X)
    assert not _sparse.one_hot_block(S) or expected
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(_sparse, "ONE_HOT_BLOCK_CHECKS", 10**6)
        assert _sparse.one_hot_block(S) == expected


def test_one_hot_blocks_of_encoder_layouts(rng):
    # OneHotEncoder's layouts beside numeric columns: drop="if_binary", drop="first" on one feature, a level
    # never seen (a zero column inside the block), unsorted indices and explicit zeros
    from sklearn.preprocessing import OneHotEncoder

    codes = np.column_stack([rng.integers(0, m, size=300) for m in (7, 2, 4, 2)])
    numeric = sp.csr_array(rng.normal(size=(300, 2)))
    for drop, expected in ((None, True), ("if_binary", True), ("first", False)):
        S = sp.hstack([OneHotEncoder(drop=drop).fit_transform(codes), numeric], format="csr")
        assert _sparse.one_hot_block(S) == expected and _sparse.dummy_trap(S) == expected
    unseen = OneHotEncoder(categories=[np.arange(9)]).fit_transform(codes[:, :1])  # levels 7 and 8 never occur
    S = sp.hstack([numeric, unseen, OneHotEncoder(drop="first").fit_transform(codes[:, 1:])], format="csr")
    assert _sparse.one_hot_block(S) and not _sparse.indicators_sum_to_constant(S)
    S.data[S.indices == 0] = 0.0  # a numeric column now of explicit zeros: an indicator column without ones
    shuffled = S.copy()
    for i in range(0, 300, 7):  # unsorted rows
        lo, hi = shuffled.indptr[i], shuffled.indptr[i + 1]
        shuffled.indices[lo:hi], shuffled.data[lo:hi] = shuffled.indices[lo:hi][::-1], shuffled.data[lo:hi][::-1]
    assert _sparse.one_hot_block(shuffled)


@pytest.mark.parametrize("solver", ["auto", "normal"])
@pytest.mark.parametrize("weighted", [False, True])
def test_the_dummy_variable_trap_skips_the_cholesky_it_would_fail(solver, weighted, rng, monkeypatch):
    # On sparse one-hot columns with an intercept the Cholesky is sure to be rejected (an exact null vector), so
    # where the trap test costs less than the factorisation it is not tried: the same bits, one Cholesky fewer.
    from fastopt import _krylov

    X = one_hot(rng, 3000, (40, 20, 10))
    y = X @ rng.normal(size=X.shape[1]) + 0.1 * rng.normal(size=len(X))
    w = rng.uniform(0.5, 2.0, size=len(y)) if weighted else None
    S = sp.csr_array(X)
    calls = []
    real = _closed_form._cholesky
    monkeypatch.setattr(_closed_form, "_cholesky", lambda *a: calls.append(1) or real(*a))

    def fitted(cost, **kw):
        monkeypatch.setattr(_krylov, "TRAP_S_PER_STORED", cost)
        calls.clear()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RankDeficientWarning)
            est = LinearRegressor(solver=solver, **kw).fit(S, y, sample_weight=w)
        return est, len(calls)

    (tested, tried), (untested, tried_before) = fitted(0.0), fitted(np.inf)
    assert (tried, tried_before) == (0, 1)
    assert tested.solver_ == untested.solver_ and untested.solver_ in ("pivoted_cholesky", "lsqr")
    assert np.array_equal(tested.coef_, untested.coef_) and tested.intercept_ == untested.intercept_
    # Cholesky can succeed otherwise: a ridge, no intercept, or one level dropped
    assert fitted(0.0, alpha=1e-3)[1] == 1
    assert fitted(0.0, fit_intercept=False)[1] == 1
    S = sp.csr_array(np.delete(X, [0, 40, 60], axis=1))  # every feature's first level dropped: no trap
    assert fitted(0.0)[1] == 1
    # one feature's first level dropped (the others' levels still sum to 1): skipped, with the same bits
    S = sp.csr_array(X[:, 1:])
    (tested, tried), (untested, tried_before) = fitted(0.0), fitted(np.inf)
    assert (tried, tried_before) == (0, 1)
    assert np.array_equal(tested.coef_, untested.coef_) and tested.intercept_ == untested.intercept_


def test_the_trap_test_runs_where_it_costs_less_than_the_factorisation():
    # Measured: 1-3 ns a stored value, where the Cholesky of 1,125 columns took 18-26 ms; at 493 columns (2 ms)
    # the 1.2 million stored values of onehot_sparse_narrow cost more to test (2.4-3.6 ms).
    from fastopt import _krylov

    assert _krylov.trap_test_first(1125, 560_000) and _krylov.trap_test_first(1125, 1_400_000)
    assert not _krylov.trap_test_first(493, 1_200_000)


@pytest.mark.parametrize("seed", range(5))
def test_partial_fit_after_a_pivoted_fit_stays_on_the_pivoted_path(seed):
    # A pivoted fit keeps the Gram and no R (which would cost the QR pass), but also the null space it confirmed
    # and a bound on its residual over the rows seen: partial_fit confirms the merged statistics' null space on
    # the new rows by a pass and on the earlier ones by that certificate.
    rng = np.random.default_rng(seed)
    X = one_hot(rng, 300, (5, 7, 4))
    y = X @ rng.normal(size=X.shape[1]) + 0.1 * rng.normal(size=len(X))
    est, _ = fit(X[:150], y[:150])
    assert est.solver_ == "pivoted_cholesky"
    with pytest.warns(RankDeficientWarning):
        est.partial_fit(X[150:200], y[150:200])
    with pytest.warns(RankDeficientWarning):
        est.partial_fit(X[200:], y[200:])  # a chain: the certificate of the merged rows carries on
    assert (est.solver_, est.rank_) == ("pivoted_cholesky", X.shape[1] - 3)
    assert_matches(est, X, y)


def test_partial_fit_rows_that_refute_the_certified_null_space_leave_the_pivoted_path(rng):
    X = rng.normal(size=(400, 4))
    X[:, 3] = X[:, 2]  # exactly dependent in the first rows
    y = X @ np.array([1.0, -2.0, 0.5, 3.0]) + 0.01 * rng.normal(size=len(X))
    est, _ = fit(X[:200], y[:200])
    assert est.solver_ == "pivoted_cholesky"
    X[200:, 3] += 1e-6 * rng.normal(size=200)  # no longer: a small singular value far above lstsq's cutoff
    with pytest.warns(IllConditionedWarning):
        est.partial_fit(X[200:], y[200:])
    assert (est.solver_, est.rank_) == ("eigh", 4)  # no R to fall back on: the warned eigensolve


def test_a_ridge_or_constraints_leave_the_pivoted_path(rng):
    X = one_hot(rng, 3000, (5, 7, 4))
    y = X @ rng.normal(size=X.shape[1]) + 0.1 * rng.normal(size=len(X))
    assert fit(X, y, alpha=1e-3)[0].solver_ == "cholesky"  # the ridge makes the system definite enough
    assert fit(X, y, positive=True)[0].solver_ != "pivoted_cholesky"
    # one alpha per target: each target's own path (here both lifted), the same solve as its own fit
    both = fit(X, np.column_stack([y, y]), alpha=[1e-8, 1e-7])[0]
    assert both.solver_ == "pivoted_cholesky"
    for j, a in enumerate([1e-8, 1e-7]):
        np.testing.assert_array_equal(both.coef_[j], fit(X, y, alpha=a)[0].coef_)


def block_null_space(levels, numeric=2):
    """The exact null space of one_hot's centred columns: the ones over each categorical block, normalised."""
    Q0 = np.zeros((sum(levels) + numeric, len(levels)))
    for j, (start, m) in enumerate(zip(np.cumsum((0, *levels)), levels)):
        Q0[start : start + m, j] = 1 / np.sqrt(m)
    return Q0


def ridge_reference(X, y, alpha, w=None, Q0=None, fit_intercept=True):
    """Coefficients and intercept minimising ``||W^1/2 (X_c b - y_c)||^2 + (sum w) alpha ||b||^2`` (uncentred
    without intercept), over ``b`` orthogonal to ``Q0`` when given (an exact null space: the exact solution has no
    component in it), by lstsq on the augmented system; and that system's condition number, residual norm and
    largest singular value."""
    X = X.toarray() if sp.issparse(X) else np.asarray(X, dtype=np.float64)
    sw = np.ones(len(y)) if w is None else w
    xm = np.average(X, axis=0, weights=sw) if fit_intercept else np.zeros(X.shape[1])
    ym = np.average(y, weights=sw) if fit_intercept else 0.0
    Z = np.eye(X.shape[1]) if Q0 is None else np.linalg.svd(Q0, full_matrices=True)[0][:, Q0.shape[1] :]
    A = np.vstack([np.sqrt(sw)[:, None] * ((X - xm) @ Z), np.sqrt(sw.sum() * alpha) * np.eye(Z.shape[1])])
    b = np.concatenate([np.sqrt(sw) * (y - ym), np.zeros(Z.shape[1])])
    u, _, _, s = np.linalg.lstsq(A, b, rcond=None)
    coef = Z @ u
    return coef, ym - coef @ xm, s[0] / s[-1], float(np.linalg.norm(A @ u - b)), s[0]


@pytest.mark.parametrize("alpha", [1e-10, 1e-7, 1e-6])
@pytest.mark.parametrize("weighted", [False, True])
def test_a_small_ridge_on_one_hot_columns_lifts_their_null_space(alpha, weighted, rng, monkeypatch):
    # Cholesky rejects the ridge's normal equations (their condition number grows as 1 / alpha along the dummies'
    # null space), and QR's answer carries the rounding of X_c Q divided by W alpha there. The exact answer has no
    # component in the null space: the lifted solve gives it without a QR pass, to the accuracy of the reduced
    # problem's normal equations (u / rcond_), against lstsq on that problem (u kappa).
    levels = (5, 7, 4)
    X = one_hot(rng, 3000, levels)
    y = X @ rng.normal(size=X.shape[1]) + 0.1 * rng.normal(size=len(X))
    w = rng.uniform(0.5, 2, size=len(y)) if weighted else None
    _no_qr_pass(monkeypatch)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the ridge problem has one solution: nothing to warn about
        est = LinearRegressor(alpha=alpha).fit(X, y, sample_weight=w)
    assert (est.solver_, est.rank_) == ("pivoted_cholesky", X.shape[1])
    Q0 = block_null_space(levels)
    ref, intercept, kappa, _, _ = ridge_reference(X, y, alpha, w, Q0)
    tol = 8 * max(X.shape) * EPS * max(kappa, 1 / est.rcond_)
    assert np.linalg.norm(est.coef_ - ref) <= tol * np.linalg.norm(ref)
    assert abs(est.intercept_ - intercept) <= tol * (abs(intercept) + np.abs(ref).sum())
    assert np.linalg.norm(Q0.T @ est.coef_) <= tol * np.linalg.norm(ref)


def test_a_small_ridge_lifts_the_null_space_of_sparse_rows_streams_blocks_and_partial_fits(rng, monkeypatch):
    da = pytest.importorskip("dask.array")
    dask = pytest.importorskip("dask")
    levels, alpha = (9, 6, 5), 1e-8
    X = one_hot(rng, 4000, levels)
    y = X @ rng.normal(size=X.shape[1]) + 0.1 * rng.normal(size=len(X))
    S = sp.csr_array(X)
    _no_qr_pass(monkeypatch)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fits = [LinearRegressor(alpha=alpha).fit(S, y), LinearRegressor(alpha=alpha, solver="normal").fit(S, y),
                LinearRegressor(alpha=alpha).fit_stream([(S[i : i + 1000], y[i : i + 1000])
                                                         for i in range(0, 4000, 1000)])]
        with dask.config.set(scheduler="synchronous"):
            fits.append(LinearRegressor(alpha=alpha).fit(da.from_array(X, chunks=(1000, X.shape[1])),
                                                         da.from_array(y, chunks=1000)))
        chained = LinearRegressor(alpha=alpha).fit(X[:2000], y[:2000])
        chained.partial_fit(X[2000:3000], y[2000:3000])
        fits.append(chained.partial_fit(X[3000:], y[3000:]))  # the certificate carries the null space on
    ref, _, kappa, _, _ = ridge_reference(X, y, alpha, None, block_null_space(levels))
    for est in fits:
        assert est.solver_ == "pivoted_cholesky"
        tol = 8 * max(X.shape) * EPS * max(kappa, 1 / est.rcond_)
        assert np.linalg.norm(est.coef_ - ref) <= tol * np.linalg.norm(ref)


def test_a_small_ridge_on_nearly_dependent_columns_stays_on_qr(rng):
    X = rng.normal(size=(3000, 4))
    X[:, 3] = X[:, 2] + 1e-6 * rng.normal(size=len(X))  # proposed by the Gram, refuted by the rows
    y = X @ np.array([1.0, -2.0, 0.5, 3.0]) + 0.01 * rng.normal(size=len(X))
    est, caught = fit(X, y, alpha=1e-12)
    assert (est.solver_, caught) == ("qr", [])


def _count_null_directions(monkeypatch):
    """The null directions each confirming pass is asked about (a list, one entry per pass)."""
    asked = []
    null_squares = _closed_form.null_squares

    def counting(params, mean_x, weight_exp, data, Q):
        asked.append(Q.shape[1])
        return null_squares(params, mean_x, weight_exp, data, Q)

    monkeypatch.setattr(_closed_form, "null_squares", counting)
    return asked


@pytest.mark.parametrize("kind", ["dense", "sparse", "weighted"])
def test_levels_absent_from_the_rows_are_null_without_a_pass(kind, rng, monkeypatch):
    # One-hot columns of an encoder fitted on more rows than these (a cross-validation fold without the rare
    # levels, categories given): zero columns, exactly null (e_j), need no pass and do not count against the
    # limit on null directions; the pass confirms the dummies' dependence on the intercept only.
    levels = (40, 12, 9)
    X = one_hot(rng, 2000, levels)
    absent = np.r_[3:30, 45:50]  # 32 of 63 columns: more than half, all from the categorical blocks
    X[:, 2] += X[:, 3:30].sum(axis=1)  # those rows take another level of the same feature: still the
    X[:, 40] += X[:, 45:50].sum(axis=1)  # dummy-variable trap
    X[:, absent] = 0.0
    y = X @ rng.normal(size=X.shape[1]) + 0.1 * rng.normal(size=len(X))
    w = rng.uniform(0.5, 2, size=len(y)) if kind == "weighted" else None
    asked = _count_null_directions(monkeypatch)
    _no_qr_pass(monkeypatch)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        est = LinearRegressor().fit(sp.csr_array(X) if kind == "sparse" else X, y, sample_weight=w)
    assert [c.category for c in caught] == [RankDeficientWarning]
    assert (est.solver_, est.rank_) == ("pivoted_cholesky", X.shape[1] - absent.size - 3)
    assert asked and set(asked) == {3}  # the probe's sample, then the rows: the three blocks' directions only
    assert np.all(est.coef_[absent] == 0)
    assert_matches(est, X, y, w)


def test_zero_columns_beside_full_rank_ones_need_no_pass(rng, monkeypatch):
    X = np.zeros((500, 40))
    X[:, :10] = rng.normal(size=(500, 10))
    y = X[:, :10] @ rng.normal(size=10) + 0.1 * rng.normal(size=500)
    asked = _count_null_directions(monkeypatch)
    for fit_intercept in (True, False):
        est, caught = fit(X, y, fit_intercept=fit_intercept)
        assert (est.solver_, est.rank_, caught) == ("pivoted_cholesky", 10, [RankDeficientWarning])
        assert np.all(est.coef_[10:] == 0)
        assert_matches(est, X, y, fit_intercept=fit_intercept)
    assert asked == []
    # rows that fill the zero columns: the merged statistics are full-rank again
    more = rng.normal(size=(300, 40))
    y_more = more @ rng.normal(size=40) + 0.1 * rng.normal(size=300)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RankDeficientWarning)
        est = LinearRegressor().fit(X, y)
    est.partial_fit(more, y_more)
    assert (est.solver_, est.rank_) == ("cholesky", 40)
    assert_matches(est, np.vstack([X, more]), np.r_[y, y_more])


@pytest.mark.parametrize("alpha", [1e-9, 1e-6])
def test_a_small_ridge_lifts_zero_columns_with_the_dependent_ones(alpha, rng, monkeypatch):
    levels = (40, 12, 9)
    X = one_hot(rng, 2000, levels)
    absent = np.r_[3:30, 45:50]
    X[:, 2] += X[:, 3:30].sum(axis=1)
    X[:, 40] += X[:, 45:50].sum(axis=1)
    X[:, absent] = 0.0
    y = X @ rng.normal(size=X.shape[1]) + 0.1 * rng.normal(size=len(X))
    _no_qr_pass(monkeypatch)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        est = LinearRegressor(alpha=alpha).fit(X, y)
    assert (est.solver_, est.rank_) == ("pivoted_cholesky", X.shape[1])
    Q0 = np.hstack([np.eye(X.shape[1])[:, absent], block_null_space(levels)])
    Q0[absent, absent.size :] = 0.0  # the blocks' ones over their present levels
    Q0[:, absent.size :] /= np.linalg.norm(Q0[:, absent.size :], axis=0)
    ref, _, kappa, _, _ = ridge_reference(X, y, alpha, None, Q0)
    tol = 8 * max(X.shape) * EPS * max(kappa, 1 / est.rcond_)
    assert np.linalg.norm(est.coef_ - ref) <= tol * np.linalg.norm(ref)
    assert np.all(est.coef_[absent] == 0)


@st.composite
def dependent_designs(draw):
    """A full-rank Gaussian base (n x r) beside small-integer combinations of its columns and up to two zero
    columns, the columns shuffled, optionally weighted."""
    seed = draw(st.integers(0, 2**32 - 1))
    r, extra = draw(st.integers(2, 8)), draw(st.integers(1, 3))
    n = draw(st.integers(4 * (r + extra), 400))
    rng = np.random.default_rng(seed)
    base = rng.normal(size=(n, r)) * rng.choice([1.0, 8.0, 0.125], size=r) + rng.normal(size=r)
    combos = rng.integers(-2, 3, size=(r, extra)).astype(float)
    combos[rng.integers(0, r, size=extra), np.arange(extra)] = 1.0  # no combination is all zero
    zeros = draw(st.integers(0, 2))
    X = np.column_stack([base, base @ combos, np.zeros((n, zeros))])[:, rng.permutation(r + extra + zeros)]
    y = X @ rng.normal(size=X.shape[1]) + 0.1 * rng.normal(size=n)
    w = rng.uniform(0.2, 3.0, size=n) if draw(st.booleans()) else None
    return X, y, w


@given(problem=dependent_designs(), fit_intercept=st.booleans())
def test_exact_dependencies_match_lstsq(problem, fit_intercept):
    X, y, w = problem
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RankDeficientWarning)
        est = LinearRegressor(solver="normal", fit_intercept=fit_intercept).fit(X, y, sample_weight=w)
    assert est.solver_ in ("pivoted_cholesky", "svd")
    assert_matches(est, X, y, w, fit_intercept)


@given(problem=dependent_designs(), log_alpha=st.floats(-10, -4), fit_intercept=st.booleans())
def test_exact_dependencies_under_a_ridge_match_the_ridge_solution(problem, log_alpha, fit_intercept):
    # The reference is lstsq on the augmented system [X_c; sqrt(W alpha) I] of the stored data, whose answer moves
    # by u kappa (2 + (kappa + 1) ||r|| / (||A|| ||x||)) ||x|| under backward errors of size u (Higham, Accuracy and
    # Stability of Numerical Algorithms, 2nd ed., thm. 20.1); the normal equations' error is u / rcond_ in place of
    # the first u kappa. The lifted path drops the component that the columns' rounding leaves in their null
    # space Q: ||Q^T x|| = ||(X_c Q)^T r|| / (W alpha), with ||X_c Q|| at most u times the largest singular value
    # (the confirming pass): within the second term, since kappa^2 ||r|| / ||A|| = ||A|| ||r|| / sigma_min^2 and
    # sigma_min^2 is W alpha on a rank-deficient design.
    X, y, w = problem
    alpha = 10.0**log_alpha
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RankDeficientWarning)
        est = LinearRegressor(alpha=alpha, fit_intercept=fit_intercept).fit(X, y, sample_weight=w)
    ref, _, kappa, resid, norm = ridge_reference(X, y, alpha, w, fit_intercept=fit_intercept)
    u = 8 * max(X.shape) * EPS
    tol = u * (2 * max(kappa, 1 / est.rcond_) * np.linalg.norm(ref) + kappa * (kappa + 1) * resid / norm)
    assert np.linalg.norm(est.coef_ - ref) <= tol


@pytest.mark.parametrize("weighted", [False, True])
def test_a_rereadable_stream_takes_the_pivoted_path(weighted, rng, monkeypatch):
    # The confirming pass reads the stream again (O(n d) per null direction) instead of the QR pass.
    X = one_hot(rng, 4000, (9, 6, 5))
    y = X @ rng.normal(size=X.shape[1]) + 0.1 * rng.normal(size=len(X))
    w = rng.uniform(0.5, 2, size=len(y)) if weighted else None
    chunks = [(X[i : i + 1000], y[i : i + 1000], None if w is None else w[i : i + 1000]) for i in range(0, 4000, 1000)]
    _no_qr_pass(monkeypatch)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        est = LinearRegressor().fit_stream(chunks)
    assert [c.category for c in caught] == [RankDeficientWarning]
    assert (est.solver_, est.rank_) == ("pivoted_cholesky", X.shape[1] - 3)
    assert_matches(est, X, y, w)


def test_dask_blocks_take_the_pivoted_path(rng, monkeypatch):
    da = pytest.importorskip("dask.array")
    dask = pytest.importorskip("dask")
    X = one_hot(rng, 4000, (9, 6, 5))
    y = X @ rng.normal(size=X.shape[1]) + 0.1 * rng.normal(size=len(X))
    _no_qr_pass(monkeypatch)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RankDeficientWarning)
        with dask.config.set(scheduler="synchronous"):
            est = LinearRegressor().fit(da.from_array(X, chunks=(1000, X.shape[1])), da.from_array(y, chunks=1000))
    assert (est.solver_, est.rank_) == ("pivoted_cholesky", X.shape[1] - 3)
    assert_matches(est, X, y)


def test_a_stream_whose_rows_refute_the_null_space_takes_the_qr_pass(rng):
    X = rng.normal(size=(4000, 4))
    X[:, 3] = X[:, 2] + 1e-6 * rng.normal(size=len(X))  # proposed by the Gram, refuted by the rows
    y = X @ np.array([1.0, -2.0, 0.5, 3.0]) + 0.01 * rng.normal(size=len(X))
    est = LinearRegressor().fit_stream([(X[i : i + 1000], y[i : i + 1000]) for i in range(0, 4000, 1000)])
    assert (est.solver_, est.rank_) == ("qr", 4)


def test_dask_partial_fit_after_a_pivoted_fit_stays_on_the_pivoted_path(rng):
    # (partial_fit's statistics carry each chunk's R, as ever; merged with a state that has none they are dropped)
    da = pytest.importorskip("dask.array")
    dask = pytest.importorskip("dask")
    X = one_hot(rng, 4000, (9, 6, 5))
    y = X @ rng.normal(size=X.shape[1]) + 0.1 * rng.normal(size=len(X))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RankDeficientWarning)
        with dask.config.set(scheduler="synchronous"):
            est = LinearRegressor().fit(da.from_array(X[:2000], chunks=(1000, X.shape[1])),
                                        da.from_array(y[:2000], chunks=1000))
            est.partial_fit(da.from_array(X[2000:], chunks=(1000, X.shape[1])), da.from_array(y[2000:], chunks=1000))
    assert (est.solver_, est.rank_) == ("pivoted_cholesky", X.shape[1] - 3)
    assert_matches(est, X, y)
