"""Newton's method (``solver="newton"``, and ``"auto"`` for the robust losses) on CSR ``X``: the pass
(:meth:`fastopt._newton._Problem._run_csr`) against its definition, and whole fits against the dense fits of
``X.toarray()``."""
import warnings

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from fastopt import LinearRegressor, _newton
from fastopt.exceptions import ConvergenceWarning

EPS = np.finfo(np.float64).eps


def contaminated_csr(rng, n, d, density, dtype=np.float64, index=np.int32):
    X = sp.random(n, d, density=density, format="csr", random_state=rng, dtype=np.float64)
    X.data = rng.normal(size=X.nnz) * 3.0
    y = X @ rng.normal(size=d) + 0.5 + 0.3 * rng.normal(size=n)
    bad = rng.random(n) < 0.08
    y[bad] += rng.normal(scale=50.0, size=bad.sum())
    X = sp.csr_array((X.data.astype(dtype), X.indices.astype(index), X.indptr.astype(index)), shape=(n, d))
    return X, y


def _reference_pass(X, y, s, w, b, eps, centre, intercept):
    """The pass by its definition, in float64 on the dense copy."""
    A = X.toarray().astype(np.float64)
    r = A @ w + b - y
    inside = np.abs(r) <= eps
    psi = np.clip(r, -eps, eps)
    rho = np.where(inside, 0.5 * r * r, eps * (np.abs(r) - 0.5 * eps) if eps < np.inf else 0.0)
    Z = A - centre
    if intercept:
        Z = np.hstack([Z, np.ones((len(y), 1))])
    H = (Z * (s * inside)[:, None]).T @ Z
    return r, inside, A.T @ (s * psi), float(np.sum(s * psi)), float(s @ rho), H


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("intercept", [True, False])
@pytest.mark.parametrize("eps", [1.35, np.inf])
@pytest.mark.parametrize("weighted", [False, True])
def test_the_csr_pass_is_its_definition(dtype, intercept, eps, weighted, rng):
    X, y = contaminated_csr(rng, 600, 12, 0.3, dtype)
    s = rng.uniform(0.0, 2.0, size=600) if weighted else np.ones(600)
    s /= s.sum()
    centre = np.asarray(X.mean(axis=0), dtype=np.float64).ravel() if intercept else np.zeros(12)
    w, b = rng.normal(size=12), 0.3
    prob = _newton._Problem(X, y, s, 0.0, intercept, centre)
    res = prob.run(w, b, eps, None)
    r, inside, g, gb, loss, H = _reference_pass(X, y, s, w, b, eps, centre, intercept)
    # Sums of a few hundred terms of size |r| (or their squares): within n eps of their magnitudes.
    tol = 600 * EPS
    np.testing.assert_allclose(res.r, r, rtol=0, atol=tol * np.abs(r).max())
    assert np.array_equal(res.mask.view(bool), inside)
    np.testing.assert_allclose(res.g, g, rtol=0, atol=tol * np.abs(X.toarray()).max() * np.abs(r).max())
    assert res.gb == pytest.approx(gb, abs=tol * np.abs(r).max())
    assert res.loss == pytest.approx(loss, rel=tol)
    assert res.rebuilt
    scale = np.sqrt(np.outer(np.diag(H), np.diag(H)))
    # the centring's rounding; for float32 X the Gram kernel takes the weights in X's dtype (as the dense path's
    # all-rows Gram does), rounded to 2^-24 relative: the Hessian steers the steps, the gradient is float64
    tol_h = 1e3 * EPS if dtype == np.float64 else 4 * 2.0**-24
    assert np.max(np.abs(res.dH - H) / np.where(scale > 0, scale, 1.0)) <= tol_h
    light = prob.run(w, b, eps, None, hessian=False)
    assert light.dH is None and np.array_equal(light.r, res.r) and light.loss == res.loss


@pytest.mark.parametrize("intercept", [True, False])
@pytest.mark.parametrize("weighted", [False, True])
def test_a_csr_pass_after_another_takes_the_crossed_rows_change(intercept, weighted, rng):
    # Relative to the last pass's mask, a pass returns the Hessian change of the rows that crossed the threshold
    # (entered minus left), as the dense pass does, not a rebuild: it must equal the difference of the two rebuilt
    # inlier Hessians. Each entry is a sum of at most n weighted products, so its rounding is within n eps of the
    # sum of their magnitudes, which Cauchy-Schwarz bounds by the mean of the two diagonal entries' masses.
    n, d = 1500, 10
    X, y = contaminated_csr(rng, n, d, 0.3)
    s = rng.uniform(0.0, 2.0, size=n) if weighted else np.ones(n)
    s[::7] = 0.0 if weighted else s[::7]  # rows of weight 0 change nothing
    s /= s.sum()
    centre = np.asarray(X.mean(axis=0), dtype=np.float64).ravel() if intercept else np.zeros(d)
    prob = _newton._Problem(X, y, s, 0.0, intercept, centre)
    w, b = rng.normal(size=d), 0.3
    first = prob.run(w, b, 1.35, None)
    moved_w = w + 0.05 * rng.normal(size=d)
    second = prob.run(moved_w, b, 1.35, first.mask)
    rebuilt = prob.run(moved_w, b, 1.35, None)
    crossed = first.mask != second.mask
    assert not second.rebuilt and second.changed == crossed.sum() > 0
    assert np.array_equal(second.mask, rebuilt.mask)
    mass = np.diag(first.dH) + np.diag(rebuilt.dH)
    bound = n * EPS * 0.5 * (mass[:, None] + mass[None, :])
    assert np.all(np.abs(first.dH + second.dH - rebuilt.dH) <= bound)
    # the mass it moved: the crossed rows' diagonal entries, whichever way they crossed
    Z = X.toarray() - centre
    Z = np.hstack([Z, np.ones((n, 1))]) if intercept else Z
    np.testing.assert_allclose(second.moved, (s * crossed) @ Z**2, rtol=n * EPS)


@pytest.mark.parametrize("far", [0.0, 5e6, 1e8])
def test_the_crossed_rows_change_is_centred_exactly_on_columns_far_from_zero(far, rng):
    # The change sum v_i (x_i - c)(x_i - c)^T (v = s entering, -s leaving) comes from the rows' nonzeros by
    # expanding the product; a column like `far + t` (and a constant one) is centred value by value instead, since
    # the expansion's terms of c^2 = 1e16 would leave rounding of eps c^2 = 2 in entries of order 1. Each entry is
    # then a sum of k products of centred values: within k eps of the sum of their magnitudes, which
    # Cauchy-Schwarz bounds by the mean of the two diagonal entries' masses (the dense definition rounds alike).
    n, d = 400, 12
    X, _ = contaminated_csr(rng, n, d - 2, 0.3)
    dense = np.column_stack([X.toarray(), far + rng.normal(size=n), np.full(n, 3.0)])
    X = sp.csr_array(dense)
    s = rng.uniform(0.5, 2.0, size=n)
    s /= s.sum()
    centre = s @ dense / s.sum()
    prob = _newton._Problem(X, np.zeros(n), s, 0.0, True, centre)
    crossed = np.sort(rng.choice(n, 60, replace=False))
    inside = rng.random(n) < 0.5
    dH, moved = _newton._crossed_hessian(prob, crossed, inside)
    Z = np.hstack([dense[crossed] - centre, np.ones((60, 1))])
    v = np.where(inside[crossed], s[crossed], -s[crossed])
    mass = np.abs(v) @ Z**2
    bound = 60 * EPS * 0.5 * (mass[:, None] + mass[None, :])
    assert np.all(np.abs(dH - (Z * v[:, None]).T @ Z) <= bound)
    np.testing.assert_allclose(moved, mass, rtol=60 * EPS)


def test_a_csr_pass_rebuilds_when_more_rows_crossed_than_half_the_inliers(rng):
    X, y = contaminated_csr(rng, 400, 6, 0.5)
    prob = _newton._Problem(X, y, np.full(400, 1 / 400), 0.0, True, np.zeros(6))
    everyone = np.ones(400, np.uint8)  # the least-squares start's mask: every row an inlier
    res = prob.run(np.zeros(6), 0.0, 1e-3, everyone)  # nearly every row leaves
    assert res.rebuilt and res.changed == res.mask.sum()
    np.testing.assert_array_equal(res.dH, prob.run(np.zeros(6), 0.0, 1e-3, None).dH)


def test_a_sparse_huber_fit_updates_its_hessian_instead_of_rebuilding_it(rng, monkeypatch):
    # Newton's later passes move few rows across the threshold: each takes their change, so the inliers' Gram is
    # rebuilt only where most rows cross (the first pass from the least-squares start) or the updates drift.
    X, y = contaminated_csr(rng, 5000, 12, 0.3)
    rebuilds = []
    real = _newton._inlier_hessian
    monkeypatch.setattr(_newton, "_inlier_hessian", lambda *a: rebuilds.append(1) or real(*a))
    est = LinearRegressor(loss="huber", solver="newton").fit(X, y)
    assert est.n_iter_ >= 3 and len(rebuilds) <= 1
    dense = LinearRegressor(loss="huber", solver="newton").fit(X.toarray(), y)
    A = X.toarray()
    assert objective(A, y, est.coef_, est.intercept_, "huber") == pytest.approx(
        objective(A, y, dense.coef_, dense.intercept_, "huber"), rel=64 * EPS)


@pytest.mark.parametrize("sparse", [True, False])
@pytest.mark.parametrize("alpha", [0.0, 1e-9])  # a ridge too small for Cholesky: the lifted path
def test_a_one_hot_design_starts_from_the_pivoted_least_squares_fit(sparse, alpha, rng, monkeypatch):
    # One-hot columns beside an intercept: Cholesky rejects the normal equations, and the least-squares start is
    # the pivoted path's (one pass over X), not an eigendecomposition, with the same minimum-norm solution to the
    # accuracy of the normal equations (kappa^2 eps of the kept columns' scaled Gram, here below 1e4 eps).
    n = 4000
    codes = rng.integers(0, 30, size=n)
    A = np.hstack([np.eye(30)[codes], rng.normal(size=(n, 3))])
    y = A @ rng.normal(size=33) + rng.standard_t(2, size=n)
    X = sp.csr_array(A) if sparse else A
    s = np.full(n, 1.0 / n)
    full = _newton._full_state(X, y[:, None], s)
    prob = _newton._Problem(X, y, s, alpha, True, full.mean[:33].copy())
    eighs = []
    real = _newton._closed_form._solve_eigh
    monkeypatch.setattr(_newton._closed_form, "_solve_eigh", lambda *a: eighs.append(1) or real(*a))
    w, b = _newton._least_squares(prob, full)
    assert not eighs
    # The minimum-norm (ridge) least-squares fit: the centred levels sum to 0 in every row, so it has no component
    # along q (1 on the levels); by the SVD of the centred design with the ridge's rows on q's complement B (the
    # ridge's exact solution has none either, while a direct solve divides q's rounding by alpha).
    q = np.append(np.ones(30), np.zeros(3)) / np.sqrt(30)
    B = np.linalg.svd(np.eye(33) - np.outer(q, q))[0][:, :32]
    Ac = A - A.mean(axis=0)
    aug = np.vstack([Ac @ B / np.sqrt(n), np.sqrt(alpha) * B])
    ref = B @ np.linalg.lstsq(aug, np.append((y - y.mean()) / np.sqrt(n), np.zeros(33)), rcond=None)[0]
    np.testing.assert_allclose(w, ref, rtol=0, atol=1e4 * EPS * np.abs(ref).max())
    assert b == pytest.approx(y.mean() - A.mean(axis=0) @ ref, abs=1e4 * EPS * np.abs(ref).max())


def test_no_inliers_gives_a_zero_hessian(rng):
    X, y = contaminated_csr(rng, 50, 4, 0.5)
    prob = _newton._Problem(X, y + 1e6, np.full(50, 0.02), 0.0, True, np.zeros(4))
    res = prob.run(np.zeros(4), 0.0, 1.0, None)
    assert not res.mask.any() and not res.dH.any()


def objective(X, y, coef, intercept, loss, alpha=0.0, sw=None, eps=1.35):
    r = X @ coef + intercept - y
    a = np.abs(r)
    rho = a if loss == "absolute_error" else np.where(a <= eps, 0.5 * r * r, eps * (a - 0.5 * eps))
    s = np.ones_like(y) if sw is None else sw
    return float(s @ rho / s.sum()) + 0.5 * alpha * float(coef @ coef)


@st.composite
def sparse_problems(draw):
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    n = draw(st.integers(30, 300))
    d = draw(st.integers(1, 15))
    density = draw(st.sampled_from([0.05, 0.2, 0.6]))
    dtype = draw(st.sampled_from([np.float64, np.float32]))
    index = draw(st.sampled_from([np.int32, np.int64]))
    X, y = contaminated_csr(rng, n, d, density, dtype, index)
    sw = rng.uniform(0.1, 3.0, size=n) if draw(st.booleans()) else None
    alpha = draw(st.sampled_from([0.0, 1e-3, 0.1]))
    return X, y, sw, alpha, draw(st.booleans())


@settings(max_examples=40, deadline=None)
@given(problem=sparse_problems())
def test_huber_on_csr_matches_the_dense_fit(problem):
    # Both stop when Newton's decrement is at round-off (lambda^2 <= 8 eps F): the objectives agree to that, and
    # with a ridge (a unique minimiser, Hessian >= alpha I) the coefficients to sqrt(4 * 16 eps F / alpha).
    X, y, sw, alpha, intercept = problem
    params = dict(loss="huber", solver="newton", alpha=alpha, fit_intercept=intercept)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        sparse = LinearRegressor(**params).fit(X, y, sample_weight=sw)
        dense = LinearRegressor(**params).fit(X.toarray(), y, sample_weight=sw)
    assert sparse.coef_.dtype == X.dtype
    A = X.toarray().astype(np.float64)
    f = objective(A, y, sparse.coef_.astype(np.float64), float(sparse.intercept_), "huber", alpha, sw)
    f_star = objective(A, y, dense.coef_.astype(np.float64), float(dense.intercept_), "huber", alpha, sw)
    if X.dtype == np.float32:  # float32 coefficients: rounded to 6e-8 relative, which the objective sees
        assert f == pytest.approx(f_star, rel=1e-6)
        return
    assert f == pytest.approx(f_star, rel=64 * EPS, abs=64 * EPS)
    if alpha > 0:
        assert np.linalg.norm(sparse.coef_ - dense.coef_) <= np.sqrt(4 * 16 * EPS * max(f, f_star) / alpha) + 1e-12


@pytest.mark.parametrize("intercept", [True, False])
def test_absolute_error_on_csr_reaches_the_dense_minimum(intercept, rng):
    X, y = contaminated_csr(rng, 800, 10, 0.3)
    # ("auto" fits the absolute error on sparse X by SGD: its smoothing stages cost more, see fastopt._solvers)
    sparse = LinearRegressor(loss="absolute_error", solver="newton", fit_intercept=intercept).fit(X, y)
    dense = LinearRegressor(loss="absolute_error", fit_intercept=intercept).fit(X.toarray(), y)
    assert sparse.solver_ == dense.solver_ == "newton"
    A = X.toarray()
    f = objective(A, y, sparse.coef_, sparse.intercept_, "absolute_error")
    f_star = objective(A, y, dense.coef_, dense.intercept_, "absolute_error")
    assert f == pytest.approx(f_star, rel=1e-12)  # both certified exact minimisers (or within 4 eps F)


@pytest.mark.parametrize("target", ["plane", "constant", "both"])
def test_absolute_error_of_an_exact_fit_on_csr(target, rng):
    # The round-off test of a nearly exact fit summed |X| by einsum, which refuses a CSR slice: noise-free data, a
    # constant target, or one constant target among two raised "too many subscripts" on CSR (dense was fine).
    X = rng.normal(size=(50, 3)) + 2.0
    plane = X @ np.array([1.0, -2.0, 0.5]) + 3.0
    y = {"plane": plane, "constant": np.full(50, 7.0), "both": np.c_[plane, np.full(50, 7.0)]}[target]
    sparse = LinearRegressor(solver="newton", loss="absolute_error").fit(sp.csr_array(X), y)
    dense = LinearRegressor(solver="newton", loss="absolute_error").fit(X, y)
    np.testing.assert_allclose(sparse.coef_, dense.coef_, atol=1e-12)
    np.testing.assert_allclose(sparse.predict(sp.csr_array(X)), y, atol=1e-12)


def test_one_hot_huber_with_an_intercept_and_duplicate_indices(rng):
    # One-hot columns beside an intercept (a singular Hessian: the damping's case) and a CSR matrix with
    # duplicate, unsorted indices, which the caller keeps as it was.
    n = 3000
    codes = rng.integers(0, 40, size=n)
    X = sp.hstack([sp.csr_array(np.eye(40)[codes]), sp.csr_array(rng.normal(size=(n, 3)))], format="csr")
    y = X @ rng.normal(size=43) + rng.standard_t(2, size=n)
    dup = sp.csr_array((np.concatenate([X.data, [0.25, 0.25]]),
                        np.concatenate([X.indices, [41, 41]]),
                        np.concatenate([X.indptr[:-1], [X.nnz + 2]])), shape=X.shape)  # last row: 2 more entries
    before = (dup.data.copy(), dup.indices.copy(), dup.indptr.copy())
    sparse = LinearRegressor(loss="huber").fit(dup, y)
    dense = LinearRegressor(loss="huber").fit(dup.toarray(), y)
    assert all(np.array_equal(a, b) for a, b in zip(before, (dup.data, dup.indices, dup.indptr)))
    assert sparse.solver_ == "newton"
    np.testing.assert_allclose(sparse.predict(dup), dense.predict(dup.toarray()), rtol=0, atol=1e-9 * np.std(y))


def test_bad_sparse_input_gets_the_dense_errors(rng):
    X, y = contaminated_csr(rng, 200, 5, 0.4)
    X.data[3] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        LinearRegressor(loss="huber").fit(X, y)
    X.data[3] = 1.0
    with pytest.raises(ValueError, match="sample_weight"):
        LinearRegressor(loss="huber").fit(X, y, sample_weight=-np.ones(200))


def test_large_csr_starts_from_the_subsample_fit(rng, monkeypatch):
    # n >= 65,536: the fit of every 16th row first (CSR row slices), then two or three passes over all rows.
    X, y = contaminated_csr(rng, 70_000, 6, 0.5)
    assert _newton._sampled(*X.shape)
    est = LinearRegressor(loss="huber").fit(X, y)
    monkeypatch.setattr(_newton, "SAMPLE_MIN_ROWS", 10**12)
    ls = LinearRegressor(loss="huber").fit(X, y)
    A = X.toarray()
    assert objective(A, y, est.coef_, est.intercept_, "huber") == pytest.approx(
        objective(A, y, ls.coef_, ls.intercept_, "huber"), rel=1e-12)


def test_targets_per_target_alpha_and_starts_on_csr(rng):
    # Several targets (one Newton fit each, one alpha each), a warm start and coef_init on CSR X: as on the dense
    # copy. Both end with the decrement at round-off, so the coefficients agree to sqrt(eps)-level at worst; here
    # the inlier sets settle and the last full steps land on the same minimiser, to round-off.
    X, y = contaminated_csr(rng, 2000, 8, 0.3)
    Y = np.column_stack([y, 0.5 * y + rng.standard_t(2, size=2000)])
    for kw in (dict(loss="huber", alpha=np.array([0.0, 0.01])), dict(loss="absolute_error", solver="newton")):
        sparse = LinearRegressor(**kw).fit(X, Y)
        dense = LinearRegressor(**kw).fit(X.toarray(), Y)
        assert sparse.coef_.shape == (2, 8)
        np.testing.assert_allclose(sparse.coef_, dense.coef_, rtol=1e-9, atol=1e-9)
        np.testing.assert_allclose(sparse.intercept_, dense.intercept_, rtol=1e-9, atol=1e-9)
    warm = LinearRegressor(loss="huber", warm_start=True).fit(X, y)
    coef = warm.coef_.copy()
    assert warm.fit(X, y).n_iter_ == 0  # started at the minimiser: nothing left to do
    np.testing.assert_array_equal(warm.coef_, coef)
    started = LinearRegressor(loss="huber").fit(X, y, coef_init=np.zeros(8), intercept_init=0.0)
    np.testing.assert_allclose(started.coef_, coef, rtol=1e-9, atol=1e-9)


def test_zero_columns_of_the_inliers_factor_are_solved_around_not_by_the_svd(rng, monkeypatch):
    # Columns stored only in rows of weight 0 are zero columns of R, exact null directions of the Hessian: every
    # R-factor step went to the SVD of all of R (20 of 27.7 s of a Huber fit on 4,000 rows of 4,096 hashed
    # columns, whose empty columns are now dropped before the fit: the next test). Now the step is 0 there and the
    # rest comes from the triangle of R's live columns: the fit without those columns, without an SVD.
    n, d = 400, 30
    X = sp.random(n, d, density=0.3, format="csr", random_state=np.random.RandomState(3))
    X.data = rng.normal(size=X.nnz)
    y = X @ rng.normal(size=d) + rng.standard_t(2, size=n)
    w = np.ones(n)
    w[:5] = 0.0
    extra = np.zeros((n, 4))
    extra[:5] = rng.normal(size=(5, 4))  # stored only in the rows of weight 0
    empty = [4, 11, 12, 29]
    keep = np.delete(np.arange(d + 4), empty)
    wide = sp.hstack([X, sp.csr_array(extra)], format="csr")[:, np.argsort(np.r_[keep, empty])]
    assert wide.shape == (n, d + 4) and wide[:, empty].nnz == 20
    calls = {"r_solve": 0, "svd": 0}
    r_solve, svd = _newton._Hessian._r_solve, np.linalg.svd

    def counted_r_solve(self, *args):
        calls["r_solve"] += 1
        return r_solve(self, *args)

    def counted_svd(*args, **kwargs):
        calls["svd"] += 1
        return svd(*args, **kwargs)

    monkeypatch.setattr(_newton._Hessian, "_r_solve", counted_r_solve)
    monkeypatch.setattr(np.linalg, "svd", counted_svd)
    monkeypatch.setattr(_newton._Hessian, "untrusted", lambda self: True)  # every step from R (the QR path)
    est = LinearRegressor(solver="newton", loss="huber").fit(wide, y, sample_weight=w)
    assert calls["r_solve"] > 0 and calls["svd"] == 0
    monkeypatch.undo()
    narrow = LinearRegressor(solver="newton", loss="huber").fit(X, y, sample_weight=w)
    assert np.all(est.coef_[empty] == 0.0)
    np.testing.assert_allclose(est.coef_[keep], narrow.coef_, rtol=1e-9, atol=1e-9 * np.abs(narrow.coef_).max())
    assert est.intercept_ == pytest.approx(narrow.intercept_, rel=1e-9, abs=1e-9)


@pytest.mark.parametrize("loss", ["huber", "absolute_error"])
def test_columns_that_store_nothing_are_left_out_of_newtons_factorisations(loss, rng):
    # FeatureHasher's columns that no term falls in (2,499 of 4,096 on 4,000 short documents) are exact null
    # directions: fitted without them (coefficient 0, the minimum norm), the Huber fit took 33 -> 5.7 s. The same
    # bits as the fit of the stored columns alone; explicit zeros store nothing; a warm start's values there go.
    n, d = 300, 20
    X = sp.random(n, d, density=0.3, format="csr", random_state=np.random.RandomState(5))
    X.data = rng.normal(size=X.nnz)
    y = X @ rng.normal(size=d) + rng.standard_t(2, size=n) + 1.0
    empty = [0, 7, 8, 23]
    keep = np.delete(np.arange(d + 4), empty)
    wide = sp.hstack([X, sp.csr_array((n, 4))], format="csr")[:, np.argsort(np.r_[keep, empty])]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", sp.SparseEfficiencyWarning)
        wide[3, 7] = 0.0  # an explicit zero
    assert wide.nnz == X.nnz + 1
    est = LinearRegressor(solver="newton", loss=loss).fit(wide, y)
    narrow = LinearRegressor(solver="newton", loss=loss).fit(X, y)
    np.testing.assert_array_equal(est.coef_[keep], narrow.coef_)
    assert np.all(est.coef_[empty] == 0.0) and est.intercept_ == narrow.intercept_
    assert est.n_iter_ == narrow.n_iter_
    start = np.ones(d + 4)
    warm = LinearRegressor(solver="newton", loss=loss).fit(wide, y, coef_init=start, intercept_init=0.0)
    assert np.all(warm.coef_[empty] == 0.0)
    np.testing.assert_allclose(warm.coef_[keep], narrow.coef_, rtol=1e-6, atol=1e-6)
