"""The Huber Newton solver's fused pass (csrc/huber.c) against its NumPy twin, the Hessian it keeps up to date
against the one rebuilt from the rows (also on an ill-conditioned, high-leverage design, where the updates
cancel and a rebuild must be forced), and the subsample start of large fits against the least-squares start."""
import numpy as np
import pytest
from threadpoolctl import threadpool_limits

from fastopt import LinearRegressor, _kernels, _newton, _reference

EPS = np.finfo(np.float64).eps


def contaminated(n, d, seed, frac=0.05, offset=3.0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d)) + offset
    y = X @ rng.normal(size=d) + 2.0 + rng.normal(size=n)
    bad = rng.random(n) < frac
    y[bad] += rng.normal(scale=50.0, size=bad.sum())
    return X, y


@pytest.fixture(params=["baseline", "best"])
def isa(request):
    """Both copies of the row loop (csrc/huber_isa.h): the baseline and the best the CPU has (AVX2 + FMA)."""
    before = _kernels.simd()
    _kernels.simd(request.param)
    yield request.param
    _kernels.simd(before)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("intercept", [False, True])
@pytest.mark.parametrize("prev_kind", ["none", "mask", "no_hessian"])
@pytest.mark.parametrize("n, d, eps", [(1, 1, 1.0), (257, 3, 1.0), (1030, 7, 0.5), (600, 5, np.inf)])
def test_huber_pass_matches_its_twin(dtype, weighted, intercept, prev_kind, n, d, eps, rng, isa):
    X = (rng.normal(size=(n, d)) + 2.0).astype(dtype)
    X.flags.writeable = False  # the kernel takes const views
    y = rng.normal(size=n) * 2
    s = rng.random(n) * (rng.random(n) > 0.1) if weighted else None
    w, b = rng.normal(size=d), 0.3
    centre = X.astype(np.float64).mean(axis=0)
    prev = (rng.random(n) < 0.5).astype(np.uint8) if prev_kind == "mask" else None
    p = d + 1 if intercept else d
    outs = {}
    for impl in (_kernels, _reference):
        mask, r, g = np.full(n, 7, np.uint8), np.full(n, np.nan), np.full(d, np.nan)
        dH, moved = (None, None) if prev_kind == "no_hessian" else (np.full((p, p), np.nan), np.full(p, np.nan))
        sums = impl.huber_pass(X, y, s, w, b, eps, centre, prev, mask, r, g, dH, moved)
        outs[impl.__name__] = (sums, mask, r, g, dH, moved)
    (sk, mk, rk, gk, hk, vk), (sr, mr, rr, gr, hr, vr) = outs.values()
    Xd = X.astype(np.float64)
    sw = np.ones(n) if s is None else s
    # Same float64 arithmetic in another order: a residual is a sum of d + 2 terms, so the two differ by at most
    # 2 (d + 2) eps times the sum of the terms' magnitudes; clipping and weighting only shrink that.
    bound_r = 2 * (d + 2) * EPS * (np.abs(Xd) @ np.abs(w) + abs(b) + np.abs(y))
    np.testing.assert_array_less(np.abs(rk - rr), bound_r + 1e-300)
    # The masks agree wherever the residual is not within that bound of the threshold.
    clear = np.abs(np.abs(rr) - eps) > bound_r
    assert np.array_equal(mk[clear], mr[clear]) and set(np.unique(mk)) <= {0, 1}
    # Sums over n rows: within 2 (n + d) eps of the sum of magnitudes, plus the residuals' difference carried
    # through psi (1-Lipschitz).
    e_abs = sw * np.minimum(np.abs(rr) + bound_r, eps)
    bound_g = 2 * (n + d) * EPS * (np.abs(Xd).T @ e_abs) + np.abs(Xd).T @ (sw * bound_r)
    np.testing.assert_array_less(np.abs(gk - gr), bound_g + 1e-300)
    loss_scale = float(sw @ (np.abs(rr) * (np.abs(rr) + 2 * bound_r) + np.where(np.isinf(eps), 0, 1)))
    assert abs(sk[0] - sr[0]) <= 4 * (n + 2) * EPS * loss_scale + float(sw @ bound_r) * (np.max(np.abs(rr)) + 1)
    assert abs(sk[1] - sr[1]) <= 2 * n * EPS * float(e_abs.sum()) + float(sw @ bound_r)
    assert sk[3] == sr[3] or not clear.all()
    if prev_kind == "no_hessian":
        assert sk[2] == sr[2] == 0.0
        return
    if clear.all():
        assert sk[2] == sr[2]
        Z = np.hstack([Xd - centre, np.ones((n, 1))])[:, :p]
        changed = (mr.astype(bool) != (np.zeros(n, bool) if prev is None else prev.astype(bool))) & (sw > 0)
        Za = np.sqrt(sw[changed])[:, None] * np.abs(Z[changed])
        # Products of gathered rows summed over at most n rows, in BLAS's order against NumPy's.
        np.testing.assert_array_less(np.abs(hk - hr), 2 * (n + p) * EPS * (Za.T @ Za) + 1e-300)
        np.testing.assert_array_less(np.abs(vk - vr), 2 * (n + p) * EPS * (Za * Za).sum(axis=0) + 1e-300)
        assert np.array_equal(hk, hk.T)


def test_huber_pass_rejects_inconsistent_arguments():
    X, y = np.ones((4, 2)), np.zeros(4)
    r, g, mask = np.empty(4), np.empty(2), np.empty(4, np.uint8)
    with pytest.raises(ValueError, match="inconsistent shapes"):
        _kernels.huber_pass(X, y[:3], None, np.zeros(2), 0.0, 1.0, None, None, mask, r, g, None, None)
    with pytest.raises(ValueError, match="dH, moved or centre"):
        _kernels.huber_pass(X, y, None, np.zeros(2), 0.0, 1.0, None, None, mask, r, g, np.empty((4, 4)), np.empty(4))
    with pytest.raises(ValueError, match="epsilon"):
        _kernels.huber_pass(X, y, None, np.zeros(2), 0.0, -1.0, None, None, mask, r, g, None, None)
    raw = np.zeros(8 * 8 + 1, np.uint8)
    shifted = np.frombuffer(raw[1:], dtype=np.float64).reshape(4, 2)  # misaligned by one byte
    with pytest.raises(ValueError, match="X is not aligned"):
        _kernels.huber_pass(shifted, y, None, np.zeros(2), 0.0, 1.0, None, None, mask, r, g, None, None)


def _problem(X, y, intercept=True):
    n = X.shape[0]
    s = np.full(n, 1.0 / n)
    full = _newton._full_state(X, y[:, None], s)
    centre = full.mean[: X.shape[1]].copy() if intercept else np.zeros(X.shape[1])
    return _newton._Problem(X, y, s, 0.0, intercept, centre), full


def _relative_error(H, ref):
    """Entry-wise error relative to the diagonal scale: |H_ij - R_ij| / sqrt(R_ii R_jj)."""
    scale = np.sqrt(np.outer(np.diag(ref), np.diag(ref)))
    return float(np.max(np.abs(H - ref) / scale))


@pytest.mark.parametrize("intercept", [True, False])
def test_updated_hessian_equals_the_rebuilt_one(intercept):
    X, y = contaminated(3000, 6, seed=1)
    prob, full = _problem(X, y, intercept)
    fit, hess = _newton.huber_newton(prob, full, 1.35, 4 * EPS, 50)
    assert fit.converged and hess.rebuilds == 0  # updates only: the drift guard did not fire
    rebuilt = prob.run(fit.w, fit.b, 1.35, None)
    assert np.array_equal(rebuilt.mask, hess.mask)
    assert _relative_error(hess.H, rebuilt.dH) < 1e3 * EPS


def test_drift_guard_rebuilds_after_high_leverage_rows_leave(monkeypatch):
    """Ill-conditioned: columns of scales 1 to 1e4, and 20 quadruples of rows (x, y + G), (x, y - G), (-x, -y + G),
    (-x, -y - G) with 1e6 times larger x and gross errors G (so that they move neither the mean nor the fit), which
    dominate the all-rows Gram by a factor of about 1e10 and leave the inlier set at the first pass: subtracting
    them cancels about ten of the Gram's sixteen digits, so the guard must rebuild."""
    rng = np.random.default_rng(2)
    n, d, q = 4000, 4, 20
    scales = np.array([1.0, 1e2, 1e3, 1e4])
    theta = rng.normal(size=d) / scales
    X = rng.normal(size=(n, d)) * scales
    y = X @ theta + 1.0 + rng.normal(size=n)
    big = rng.normal(size=(q, d)) * scales * 1e6
    X[n - 4 * q :] = np.vstack([big, big, -big, -big])
    G = 1e6 * np.concatenate([np.ones(q), -np.ones(q), np.ones(q), -np.ones(q)])
    y[n - 4 * q :] = X[n - 4 * q :] @ theta + 1.0 + G
    prob, full = _problem(X, y)
    fit, hess = _newton.huber_newton(prob, full, 1.35, 4 * EPS, 50)
    assert fit.converged and hess.rebuilds >= 1
    rebuilt = prob.run(fit.w, fit.b, 1.35, None)
    assert _relative_error(hess.H, rebuilt.dH) < 1e3 * EPS
    # The minimiser, independently: the inliers' least-squares equations with the outliers' clipped residuals,
    # solved with iterative refinement in extended precision.
    r = X @ fit.w + fit.b - y
    inl = np.abs(r) <= 1.35
    A = np.hstack([X, np.ones((n, 1))]).astype(np.longdouble)
    lhs = A[inl].T @ A[inl]
    rhs = A[inl].T @ y[inl].astype(np.longdouble) - A[~inl].T @ (1.35 * np.sign(r[~inl])).astype(np.longdouble)
    t = np.linalg.solve(lhs.astype(np.float64), rhs.astype(np.float64))
    for _ in range(3):
        t = t + np.linalg.solve(lhs.astype(np.float64), (rhs - lhs @ t.astype(np.longdouble)).astype(np.float64))
    assert np.array_equal(np.abs(X @ t[:-1] + t[-1] - y) <= 1.35, inl)

    def objective(theta):  # in extended precision: the outliers' constant part dominates it
        r = X.astype(np.longdouble) @ theta[:-1].astype(np.longdouble) + theta[-1] - y
        a = np.abs(r)
        return np.mean(np.where(a <= 1.35, 0.5 * r * r, 1.35 * (a - 0.675)))

    # The contract is the objective to round-off (Newton stops when its predicted decrease is below 8 eps F).
    assert objective(np.append(fit.w, fit.b)) - objective(t) <= 8 * EPS * objective(t)
    # Without the guard, the all-rows Hessian downdated to the minimiser's inliers has lost its digits: the
    # guard is what makes it right.
    monkeypatch.setattr(_newton, "DRIFT", np.inf)
    hess = _newton._Hessian(prob, full)
    _newton._visit(prob, hess, fit.w, fit.b, 1.35)
    assert hess.rebuilds == 0 and _relative_error(hess.H, rebuilt.dH) > 1e-9


def _objective(X, y, coef, intercept, eps=1.35, alpha=0.0, sw=None):
    r = X @ coef + intercept - y
    a = np.abs(r)
    w = np.ones_like(y) if sw is None else sw
    return float(w @ np.where(a <= eps, 0.5 * r * r, eps * (a - 0.5 * eps)) / w.sum()) + 0.5 * alpha * coef @ coef


@pytest.mark.parametrize("weighted, alpha, intercept", [(False, 0.0, True), (True, 0.05, True), (True, 0.0, False)])
def test_subsample_start_reaches_the_least_squares_start_minimum(weighted, alpha, intercept, monkeypatch):
    X, y = contaminated(80_000, 5, seed=3)
    sw = np.random.default_rng(4).uniform(0.2, 3.0, size=y.size) if weighted else None
    assert _newton._sampled(*X.shape)
    est = LinearRegressor(loss="huber", alpha=alpha, fit_intercept=intercept).fit(X, y, sample_weight=sw)
    monkeypatch.setattr(_newton, "SAMPLE_MIN_ROWS", 10**12)
    ls = LinearRegressor(loss="huber", alpha=alpha, fit_intercept=intercept).fit(X, y, sample_weight=sw)
    ours = _objective(X, y, est.coef_, est.intercept_, alpha=alpha, sw=sw)
    theirs = _objective(X, y, ls.coef_, ls.intercept_, alpha=alpha, sw=sw)
    # Both stop when Newton's predicted decrease, half the squared Hessian norm of the remaining step, is below
    # 8 eps F: the objectives agree to round-off, and the coefficients to sqrt(16 eps F) each in that norm.
    assert ours == pytest.approx(theirs, rel=1e-12)
    r = X @ ls.coef_ + ls.intercept_ - y
    s = (np.ones_like(y) if sw is None else sw) * (np.abs(r) <= 1.35)
    A = np.hstack([X, np.ones((X.shape[0], 1))]) if intercept else X
    H = (A * (s / (np.ones_like(y) if sw is None else sw).sum())[:, None]).T @ A
    H[: X.shape[1], : X.shape[1]] += alpha * np.eye(X.shape[1])
    diff = np.append(est.coef_ - ls.coef_, est.intercept_ - ls.intercept_)[: A.shape[1]]
    assert diff @ H @ diff <= 4 * 16 * EPS * max(ours, theirs)
    assert 1 <= est.n_iter_ <= ls.n_iter_


def test_subsample_start_multi_output_float32_and_thread_count():
    X, y = contaminated(140_000, 4, seed=5)  # three segments of the fused pass
    Y = np.column_stack([y, 0.5 * y - 3.0])
    est = LinearRegressor(loss="huber", alpha=np.array([0.0, 0.01])).fit(X, Y)
    one = LinearRegressor(loss="huber", alpha=0.01).fit(X, Y[:, 1])
    np.testing.assert_array_equal(est.coef_[1], one.coef_)
    with threadpool_limits(1):
        serial = LinearRegressor(loss="huber", alpha=np.array([0.0, 0.01])).fit(X, Y)
    np.testing.assert_array_equal(serial.coef_, est.coef_)
    np.testing.assert_array_equal(serial.intercept_, est.intercept_)
    f32 = LinearRegressor(loss="huber").fit(X.astype(np.float32), y.astype(np.float32))
    f64 = LinearRegressor(loss="huber").fit(X.astype(np.float32).astype(np.float64), y.astype(np.float32))
    assert f32.coef_.dtype == np.float32
    # The same float64 arithmetic on the same values, except the subsample's Gram weights (rounded to float32).
    np.testing.assert_allclose(f32.coef_, f64.coef_, rtol=1e-6, atol=1e-6)


def test_subsample_start_reports_nonfinite_x_outside_the_subsample():
    X, y = contaminated(70_000, 3, seed=6)
    X[1, 2] = np.nan  # not among every 16th row
    with pytest.raises(ValueError, match=r"^Input X contains NaN\."):
        LinearRegressor(loss="huber").fit(X, y)


@pytest.mark.parametrize("n", [3000, 70_000])  # the least-squares start, and the subsample start
def test_column_constant_like_the_intercept(n):
    """A column equal to 5 on every row is spanned by the intercept: its centred Gram entries are round-off,
    which must neither give it a huge coefficient that cancels the intercept's (the residuals would lose their
    digits) nor stop Newton early."""
    X, y = contaminated(n, 4, seed=7)
    X[:, 1] = 5.0
    est = LinearRegressor(loss="huber").fit(X, y)
    assert est.n_iter_ <= 10 and abs(est.coef_[1]) < 1e-3
    r = X @ est.coef_ + est.intercept_ - y
    psi = np.clip(r, -1.35, 1.35)
    # Converged as documented: the Newton decrement g^T H^-1 g (on the identifiable coordinates: the constant
    # column dropped) is below 16 eps F, with room for round-off.
    A = np.hstack([X[:, [0, 2, 3]], np.ones((n, 1))])
    g = A.T @ psi / n
    H = (A * (np.abs(r) <= 1.35)[:, None]).T @ A / n
    assert g @ np.linalg.solve(H, g) <= 4 * 16 * EPS * _objective(X, y, est.coef_, est.intercept_)
