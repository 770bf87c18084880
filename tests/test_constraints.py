"""positive=True, per-target alpha, average=, coef_init/intercept_init and partial_fit's early_stopping error,
against scikit-learn (LinearRegression/Ridge(positive=True), Ridge(alpha=array), SGDRegressor(average=...)),
scipy.optimize.nnls, and the NumPy twin of the epoch kernel."""
import warnings

import numpy as np
import pytest
from scipy.optimize import nnls
from sklearn.linear_model import LinearRegression, Ridge, SGDRegressor

from fastopt import LinearRegressor, _kernels, _reference, optim
from fastopt._iterative import EpochCtl
from fastopt.exceptions import ConvergenceWarning


def problem(n=200, d=6, k=1, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d)) + 1.0
    W = rng.normal(size=(k, d))  # about half negative: the constraint binds
    Y = X @ W.T + 0.5 + 0.1 * rng.normal(size=(n, k))
    return X, (Y[:, 0] if k == 1 else Y)


@pytest.mark.parametrize("solver", ["normal", "qr"])
@pytest.mark.parametrize("fit_intercept", [True, False])
def test_positive_closed_form_matches_sklearn_and_nnls(solver, fit_intercept):
    X, y = problem(seed=1)
    est = LinearRegressor(solver=solver, positive=True, fit_intercept=fit_intercept).fit(X, y)
    ref = LinearRegression(positive=True, fit_intercept=fit_intercept).fit(X, y)
    assert np.all(est.coef_ >= 0) and np.any(est.coef_ == 0)
    np.testing.assert_allclose(est.coef_, ref.coef_, rtol=1e-9, atol=1e-10)
    assert est.intercept_ == pytest.approx(ref.intercept_, rel=1e-9, abs=1e-10)
    if not fit_intercept:
        np.testing.assert_allclose(est.coef_, nnls(X, y)[0], rtol=1e-9, atol=1e-10)


def test_positive_ridge_weights_and_multi_output_match_sklearn():
    X, Y = problem(k=3, seed=2)
    sw = np.random.default_rng(3).uniform(0.5, 2.0, size=X.shape[0])
    alpha = 0.3
    est = LinearRegressor(positive=True, alpha=alpha).fit(X, Y, sample_weight=sw)
    # LinearRegressor's alpha is per unit of mean loss: Ridge's is alpha * sum(sw)
    ref = Ridge(positive=True, alpha=alpha * sw.sum(), solver="lbfgs", tol=1e-12, max_iter=100000).fit(
        X, Y, sample_weight=sw)
    np.testing.assert_allclose(est.coef_, ref.coef_, rtol=1e-5, atol=1e-6)  # lbfgs's own tolerance
    assert np.all(est.coef_ >= 0)


def test_positive_partial_fit_equals_fit():
    X, y = problem(seed=4)
    est = LinearRegressor(positive=True)
    for part in np.array_split(np.arange(X.shape[0]), 3):
        est.partial_fit(X[part], y[part])
    np.testing.assert_allclose(est.coef_, LinearRegressor(positive=True).fit(X, y).coef_, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("solver", ["sgd", "adam"])
def test_positive_iterative_projected_steps(solver):
    X, y = problem(n=400, seed=1)
    X -= 1.0  # centred columns: full-batch descent converges fast
    est = LinearRegressor(solver=solver, positive=True, random_state=0, max_epochs=300, batch_size=400,
                          shuffle=False, tol=None, learning_rate=0.05).fit(X, y)
    exact = LinearRegressor(positive=True).fit(X, y)
    assert np.any(exact.coef_ == 0) and np.all(est.coef_ >= 0)
    np.testing.assert_allclose(est.coef_, exact.coef_, atol=1e-3)


@pytest.mark.parametrize("kind", ["dense", "csr", "dask"])
def test_positive_robust_loss_under_auto_takes_projected_steps(kind):
    # Newton has no constraints: "auto" with positive=True fits a robust loss by the iterative solvers' projected
    # steps (Adam; SGD on sparse X), where it had resolved to Newton and raised that Newton does not take them.
    import scipy.sparse as sp

    X, y = problem(n=400, seed=2)
    y = y + np.random.default_rng(3).standard_t(2, size=400)
    Xin = sp.csr_matrix(X) if kind == "csr" else X
    if kind == "dask":
        da = pytest.importorskip("dask.array")
        Xin, y_in = da.from_array(X, chunks=(100, X.shape[1])), da.from_array(y, chunks=100)
    else:
        y_in = y
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # (a short fit: the convergence warning is not what is tested)
        est = LinearRegressor(loss="huber", positive=True, random_state=0, max_epochs=5).fit(Xin, y_in)
    assert est.solver_ == ("sgd" if kind == "csr" else "adam") and np.all(est.coef_ >= 0)
    with pytest.raises(ValueError, match="positive=True is not supported by solver='newton'"):
        LinearRegressor(loss="huber", positive=True, solver="newton").fit(X, y)  # named: still an error


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("rule", ["sgd", "momentum", "adam"])
def test_kernel_positive_and_average_agree_with_the_twin(rule, dtype, epoch_problem):
    rng = np.random.default_rng(6)
    n, d, k, batch = 90, 5, 2, 8
    X, Y, sw = epoch_problem(rng, n, d, k, dtype, weighted=True)
    spec = optim.OPTIMIZERS[rule]()
    train = EpochCtl(batch_size=batch, loss=optim.Loss.HUBER, epsilon=1.0, clip_norm=None, loss_limit=1e12,
                  positive=True, average=5)
    n_params = k * d + k
    orders = [rng.permutation(n).astype(np.int64) for _ in range(3)]
    out = []
    for impl in (_kernels, _reference):
        params, state = np.zeros(n_params, dtype), spec.init_state(n_params, dtype)
        avg, work, t = np.zeros(n_params, dtype), np.empty(6 * n_params + 2 * k, dtype), 0
        for order in orders:
            status, t, _, _ = impl.epoch(int(spec.rule), spec.hyper, train, X, Y, sw, order, params, state, work,
                                         t, 0.01, avg=avg)
            assert status == 0
        out.append((params, avg))
    (p, a), (p_ref, a_ref) = out
    assert np.all(p[: k * d] >= 0)
    tol = 30 * (d + batch) * 3 * -(-n // batch) * np.finfo(dtype).eps
    np.testing.assert_allclose(p, p_ref, rtol=tol, atol=tol)
    np.testing.assert_allclose(a, a_ref, rtol=tol, atol=tol)
    assert not np.array_equal(a, p)  # the average is not the last iterate


@pytest.mark.parametrize("average", [False, True, 10])
def test_average_matches_sgdregressor(average):
    X, y = problem(n=50, d=3, seed=7)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # SGDRegressor's max_iter warning
        ref = SGDRegressor(penalty=None, learning_rate="constant", eta0=0.01, shuffle=False, max_iter=2, tol=None,
                           average=average).fit(X, y)
    est = LinearRegressor(solver="sgd", batch_size=1, learning_rate=0.01, shuffle=False, max_epochs=2, tol=None,
                          average=average).fit(X, y)
    np.testing.assert_allclose(est.coef_, ref.coef_, rtol=1e-12, atol=1e-14)
    assert est.intercept_ == pytest.approx(ref.intercept_[0], rel=1e-12)
    # the state keeps the last iterate, and partial_fit continues both
    if average:
        assert not np.allclose(est._solver_state.weights[:3], est.coef_)
    est2 = LinearRegressor(solver="sgd", batch_size=1, learning_rate=0.01, shuffle=False, average=average)
    est2.partial_fit(X, y).partial_fit(X, y)
    np.testing.assert_allclose(est2.coef_, est.coef_, rtol=1e-12)


def test_average_not_started_reports_the_iterate_and_other_solvers_refuse():
    X, y = problem(n=20, d=3, seed=8)
    a = LinearRegressor(solver="sgd", batch_size=4, average=1000, max_epochs=2, tol=None, random_state=0).fit(X, y)
    b = LinearRegressor(solver="sgd", batch_size=4, max_epochs=2, tol=None, random_state=0).fit(X, y)
    np.testing.assert_array_equal(a.coef_, b.coef_)
    with pytest.raises(ValueError, match="average=True applies to the iterative solvers"):
        LinearRegressor(solver="normal", average=True).fit(X, y)


@pytest.mark.parametrize("loss", ["squared_error", "huber"])
def test_average_under_auto_is_sgds(loss):
    # Averaging is defined for the iterative solvers only: "auto" with it is SGD (as SGDRegressor(average=...)),
    # in fit, partial_fit and fit_stream, the same bits as solver="sgd"; it had resolved to the closed form or
    # Newton and raised.
    X, y = problem(n=200, d=3, seed=10)
    params = dict(loss=loss, average=True, random_state=0, max_epochs=3, tol=None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        auto, sgd = LinearRegressor(**params).fit(X, y), LinearRegressor(solver="sgd", **params).fit(X, y)
        assert auto.solver_ == "sgd"
        np.testing.assert_array_equal(auto.coef_, sgd.coef_)
        inc = LinearRegressor(**params).partial_fit(X, y)
        assert inc._solver_name == "sgd"
        np.testing.assert_array_equal(inc.coef_, LinearRegressor(solver="sgd", **params).partial_fit(X, y).coef_)
        assert LinearRegressor(**params).fit_stream([(X[:100], y[:100]), (X[100:], y[100:])]).solver_ == "sgd"


def test_the_advice_for_one_alpha_per_target_names_solvers_that_take_positive():
    # helper-142: under positive=True the advice listed cg, lsqr and newton, which then refuse the constraint
    X, Y = problem(k=2, seed=11)
    alpha = np.array([0.0, 1.0])
    with pytest.raises(ValueError, match=r"with loss='squared_error' and positive=True a per-target alpha array "
                                         r"needs solver='normal' or 'qr'\.$"):
        LinearRegressor(solver="sgd", positive=True, alpha=alpha).fit(X, Y)
    for solver in ("normal", "qr"):  # the advice can be followed
        assert LinearRegressor(solver=solver, positive=True, alpha=alpha).fit(X, Y).coef_.min() >= 0
    with pytest.raises(ValueError, match="which no solver takes with loss='huber' and positive=True "):
        LinearRegressor(solver="sgd", loss="huber", positive=True, alpha=alpha).fit(X, Y)


def test_one_alpha_per_target_under_auto():
    # "auto" with one alpha per target and a robust loss on sparse X: Newton (which takes them) rather than SGD
    # (which does not); where no solver takes them (rows in chunks), the error says so before any pass, not a
    # NumPy error from deep inside the learning-rate sample.
    import scipy.sparse as sp

    X, Y = problem(k=2, seed=11)
    alpha = np.array([0.01, 0.1])
    est = LinearRegressor(loss="absolute_error", alpha=alpha).fit(sp.csr_matrix(X), Y)
    assert est.solver_ == "newton"
    chunks = [(X[:100], Y[:100]), (X[100:], Y[100:])]
    for fit in (lambda e: e.fit_stream(chunks), lambda e: e.partial_fit(X, Y)):
        with pytest.raises(ValueError, match="which no solver takes with loss='huber' (on a stream|in partial_fit)"):
            fit(LinearRegressor(loss="huber", alpha=alpha))
    da = pytest.importorskip("dask.array")
    dask = pytest.importorskip("dask")
    with dask.config.set(scheduler="synchronous"), pytest.raises(ValueError, match="no solver takes with loss="
                                                                                "'absolute_error' on Dask arrays"):
        LinearRegressor(loss="absolute_error", alpha=alpha).fit(da.from_array(X, chunks=(100, X.shape[1])),
                                                                da.from_array(Y, chunks=(100, 2)))


def test_per_target_alpha_matches_ridge():
    X, Y = problem(k=3, seed=9)
    alpha = np.array([0.0, 0.1, 2.0])
    n = X.shape[0]
    ref = Ridge(alpha=alpha * n).fit(X, Y)
    for solver in ("normal", "qr"):
        est = LinearRegressor(solver=solver, alpha=alpha).fit(X, Y)
        np.testing.assert_allclose(est.coef_, ref.coef_, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(est.intercept_, ref.intercept_, rtol=1e-10, atol=1e-12)
    est = LinearRegressor(alpha=alpha)
    for part in np.array_split(np.arange(n), 4):
        est.partial_fit(X[part], Y[part])
    np.testing.assert_allclose(est.coef_, ref.coef_, rtol=1e-9, atol=1e-12)
    pos = LinearRegressor(alpha=alpha, positive=True).fit(X, Y)
    refp = [Ridge(alpha=a * n, positive=True, solver="lbfgs", tol=1e-12, max_iter=10**5).fit(X, Y[:, j]).coef_
            for j, a in enumerate(alpha)]
    np.testing.assert_allclose(pos.coef_, refp, rtol=1e-5, atol=1e-6)


def test_per_target_alpha_errors():
    X, Y = problem(k=2, seed=10)
    with pytest.raises(ValueError, match=r"shape \(3,\); an array alpha needs one value per target, shape \(2,\), "
                                         r"or one for all, shape \(1,\)\.$"):
        LinearRegressor(alpha=[1.0, 2.0, 3.0]).fit(X, Y)
    # one target: the two shapes are one (helper-139: "shape (1,), or one for all, shape (1,)")
    with pytest.raises(ValueError, match=r"shape \(2,\); an array alpha needs one value per target, shape \(1,\): "
                                         r"y has one target\.$"):
        LinearRegressor(alpha=[1.0, 2.0]).fit(X, Y[:, 0])
    with pytest.raises(ValueError, match="takes a scalar alpha"):
        LinearRegressor(solver="adam", alpha=[1.0, 2.0]).fit(X, Y)
    with pytest.raises(ValueError, match="finite and non-negative"):
        LinearRegressor(alpha=[1.0, -2.0]).fit(X, Y)


@pytest.mark.parametrize("solver, where", [("lsqr", "stream"), ("cg", "stream"), ("lsqr", "dask"), ("cg", "dask"),
                                           ("newton", "dask")])
@pytest.mark.parametrize("alpha", [[0.1, 0.2, 0.3], [[0.1, 0.2]]])
def test_per_target_alpha_of_the_wrong_shape_on_streams_and_dask(solver, where, alpha):
    # Streams and Dask check the options before the targets are known; the Krylov solvers then raised IndexError
    # or TypeError, or ignored a third value, and Newton on Dask raised NumPy's errors.
    X, Y = problem(k=2, seed=10)
    est = LinearRegressor(solver=solver, alpha=np.array(alpha), loss="huber" if solver == "newton" else
                          "squared_error")
    with pytest.raises(ValueError, match=r"an array alpha needs one value per target, shape \(2,\)"):
        if where == "stream":
            est.fit_stream([(X, Y)])
        else:
            da = pytest.importorskip("dask.array")
            half = X.shape[0] // 2
            est.fit(da.from_array(X, chunks=(half, X.shape[1])), da.from_array(Y, chunks=(half, 2)))


@pytest.mark.parametrize("solver, where", [("normal", "memory"), ("qr", "memory"), ("lsqr", "memory"),
                                           ("cg", "memory"), ("normal", "sparse"), ("lsqr", "sparse"),
                                           ("normal", "partial_fit"), ("lsqr", "stream"), ("cg", "stream"),
                                           ("lsqr", "dask"), ("cg", "dask"), ("newton", "dask")])
def test_a_length_one_alpha_array_is_every_targets_as_in_ridge(solver, where):
    """``Ridge(alpha=np.array([a]))`` broadcasts one penalty to every target; it was refused with several."""
    sp = pytest.importorskip("scipy.sparse")
    X, Y = problem(k=2, seed=10)
    loss = "huber" if solver == "newton" else "squared_error"

    def fit(alpha):
        est = LinearRegressor(solver=solver, alpha=alpha, loss=loss, tol=1e-12)
        if where == "stream":
            return est.fit_stream([(X[:100], Y[:100]), (X[100:], Y[100:])])
        if where == "partial_fit":
            return est.partial_fit(X[:100], Y[:100]).partial_fit(X[100:], Y[100:])
        if where == "dask":
            da = pytest.importorskip("dask.array")
            half = X.shape[0] // 2
            return est.fit(da.from_array(X, chunks=(half, X.shape[1])), da.from_array(Y, chunks=(half, 2)))
        return est.fit(sp.csr_array(X) if where == "sparse" else X, Y)

    one, scalar = fit(np.array([0.3])), fit(0.3)
    # the closed form solves an array's targets one by one (the scalar's together): the same well-conditioned
    # system (condition about 10), rounding apart
    np.testing.assert_allclose(one.coef_, scalar.coef_, rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(one.intercept_, scalar.intercept_, rtol=1e-12, atol=1e-13)


def test_coef_init_and_intercept_init():
    X, y = problem(seed=11)
    exact = LinearRegressor().fit(X, y)
    est = LinearRegressor(solver="sgd", learning_rate=1e-4, max_epochs=1, tol=None, random_state=0).fit(
        X, y, coef_init=exact.coef_, intercept_init=exact.intercept_)
    np.testing.assert_allclose(est.coef_, exact.coef_, atol=1e-3)
    cold = LinearRegressor(solver="sgd", learning_rate=1e-4, max_epochs=1, tol=None, random_state=0).fit(X, y)
    assert np.abs(cold.coef_ - exact.coef_).max() > 0.1
    # the closed form needs no start
    np.testing.assert_array_equal(LinearRegressor().fit(X, y, coef_init=np.ones(6)).coef_, exact.coef_)
    with pytest.raises(ValueError, match="coef_init has shape"):
        LinearRegressor(solver="sgd").fit(X, y, coef_init=np.ones(5))
    with pytest.raises(ValueError, match="intercept_init has shape"):
        LinearRegressor(solver="sgd").fit(X, y, intercept_init=np.ones(3))
    # with two targets one row is no start: the message offered it ("shape (6,); expected (6,) or (2, 6)")
    with pytest.raises(ValueError, match=r"coef_init has shape \(6,\); expected \(2, 6\): one row for each"):
        LinearRegressor(solver="sgd").fit(X, np.c_[y, y], coef_init=np.ones(6))


def test_partial_fit_with_early_stopping_raises_as_sgdregressor():
    X, y = problem(seed=12)
    with pytest.raises(ValueError, match="early_stopping should be False with partial_fit"):
        SGDRegressor(early_stopping=True).partial_fit(X, y)
    with pytest.raises(ValueError, match="early_stopping should be False with partial_fit"):
        LinearRegressor(solver="sgd", early_stopping=True).partial_fit(X, y)


@pytest.mark.parametrize("alpha", [0.0, 1e-8, 1e-6, 1e-3])
@pytest.mark.parametrize("sparse", [False, True])
def test_nnls_with_empty_columns_reaches_the_kkt_point(alpha, sparse):
    # Hashed counts leave most columns empty: with a small ridge their unit columns in the factor made SciPy's NNLS
    # stop short of the optimum (1e-7 of the objective, a gradient of 2e-7 on the free coefficients). They are
    # decoupled (coefficient 0) and left out; the free coefficients' gradient is then round-off of the problem's
    # scale (||X_c^T y_c|| / n), and the bound ones' is non-negative.
    import scipy.sparse as sp
    rng = np.random.default_rng(0)
    n, d = 3000, 400
    X = np.zeros((n, d))
    used = rng.choice(d, size=120, replace=False)
    X[:, used] = rng.poisson(0.3, size=(n, 120))
    y = X @ rng.standard_normal(d) + 0.1 * rng.standard_normal(n)
    est = LinearRegressor(positive=True, alpha=alpha).fit(sp.csr_array(X) if sparse else X, y)
    A, b = X - X.mean(axis=0), y - y.mean()
    g = A.T @ (A @ est.coef_ - b) / n + alpha * est.coef_
    scale = np.abs(A.T @ b).max() / n
    free = est.coef_ > 0
    assert np.abs(g[free]).max() <= 1e-10 * scale
    assert g[~free].min() >= -1e-10 * scale
    assert not est.coef_[np.setdiff1d(np.arange(d), used)].any()


@pytest.mark.parametrize("entry", ["warm_start", "partial_fit"])
def test_switching_positive_on_restarts_the_average(entry):
    # The running average kept the unconstrained iterates from before positive=True, and coef_ (the average)
    # stayed negative: -0.99 where the constraint asks >= 0. The average now starts afresh with projected iterates.
    rng = np.random.default_rng(0)
    X = rng.standard_normal((200, 3))
    y = X @ np.array([-2.0, 1.0, 0.5]) + 1.0
    if entry == "warm_start":
        est = LinearRegressor(solver="sgd", average=True, max_epochs=5, random_state=0).fit(X, y)
        assert est.coef_[0] < -1.0
        est.set_params(positive=True, warm_start=True).fit(X, y)
    else:
        est = LinearRegressor(solver="sgd", average=True, random_state=0).partial_fit(X, y)
        assert est.coef_[0] < -0.5
        est.set_params(positive=True).partial_fit(X, y)
    assert np.all(est.coef_ >= 0) and est.coef_[1] > 0.5
    # switched off again, the projected average is a valid start: kept (it counts from the same step)
    began = est._solver_state.avg_from
    est.set_params(positive=False)
    est.partial_fit(X, y) if entry == "partial_fit" else est.fit(X, y)
    assert est._solver_state.avg_from == began
    # and on once more: unconstrained iterates joined it while off, so it restarts again (it stayed, negative)
    est.set_params(positive=True)
    est.partial_fit(X, y) if entry == "partial_fit" else est.fit(X, y)
    assert np.all(est.coef_ >= 0) and est._solver_state.avg_from > began


@pytest.mark.parametrize("fit_intercept", [True, False])
@pytest.mark.parametrize("kind", ["dense", "csr", "partial_fit", "dask"])
@pytest.mark.parametrize("seed", [0, 7])
def test_nnls_on_one_hot_columns_reaches_the_kkt_point(seed, kind, fit_intercept):
    # One-hot columns are exactly dependent beside the intercept (and two groups without it): R11's pivots there
    # are rounding, their rows' right-hand sides belong to the residual, and NNLS fitted them with the other
    # coefficients. 10,000 rows of 200/100/30 levels (Zipf counts) and 2 Gaussian columns: of 8 seeds, 0 and 7
    # stopped short (free coefficients' gradient 1.4e-4 of the scale below, the intercept's 9e-4; 50,000 rows:
    # 2e-4 of the objective above the minimum). The solve now runs on R11's SVD above the rank cutoff: the KKT
    # conditions hold to round-off of the problem's scale, as in the test above (measured 1e-15).
    import scipy.sparse as sp
    rng = np.random.default_rng(seed)
    n, levels = 10_000, (200, 100, 30)
    X = np.hstack([np.eye(L)[rng.zipf(1.3, n) % L] for L in levels] + [rng.standard_normal((n, 2))])
    y = X @ rng.standard_normal(X.shape[1]) + rng.standard_t(2, n)
    est = LinearRegressor(positive=True, fit_intercept=fit_intercept)
    if kind == "partial_fit":
        for i in range(0, n, 2500):
            est.partial_fit(X[i : i + 2500], y[i : i + 2500])
    elif kind == "dask":
        da = pytest.importorskip("dask.array")
        est.fit(da.from_array(X, chunks=(2500, -1)), da.from_array(y, chunks=2500))
    else:
        est.fit(sp.csr_array(X) if kind == "csr" else X, y)
    r = X @ est.coef_ + est.intercept_ - y
    g = X.T @ r / n
    scale = np.abs(X.T @ y).max() / n
    free = est.coef_ > 0
    assert np.all(est.coef_ >= 0)
    assert np.abs(g[free]).max() <= 1e-10 * scale
    assert g[~free].min() >= -1e-10 * scale
    if fit_intercept:
        assert abs(r.mean()) <= 1e-10 * np.abs(y).mean()


@pytest.mark.parametrize("sparse", [False, True])
def test_positive_beyond_the_grams_width_under_auto_takes_projected_steps(sparse):
    # positive=True with squared error fell back to the closed form whatever the width, which then formed the
    # d x d statistics that "auto" had rejected as too large (7,303 one-hot columns of 200,000 rows: over ten
    # minutes). No Krylov solver takes the constraint: projected SGD, as for rows in chunks.
    import scipy.sparse as sp

    from fastopt import _solvers

    d = 6000  # 8 d^2 > 256 MiB
    wide = sp.csr_array((50, d)) if sparse else np.zeros((5, d))
    assert _solvers.resolve("auto", "squared_error", wide, sparse=sparse, positive=True) == "sgd"
    assert _solvers.resolve("auto", "squared_error", wide, sparse=sparse) == "lsqr"
    narrow = sp.csr_array((500, 300)) if sparse else np.zeros((500, 300))
    assert _solvers.resolve("auto", "squared_error", narrow, sparse=sparse, positive=True) == "normal"
    if sparse:
        # the Gram fits, but a densified QR of 100,000 x 3,853 one-hot rows (their Cholesky rejected beside the
        # intercept) ran over 90 s: projected SGD (0.5 s); 50,000 x 333 stays exact (1-2 s)
        rows = np.arange(100_000)
        costly = sp.csr_array((np.ones(4 * rows.size), (np.repeat(rows, 4), np.tile([0, 1, 2, 3], rows.size))),
                              shape=(rows.size, 3853))
        assert _solvers.resolve("auto", "squared_error", costly, sparse=True, positive=True) == "sgd"
        affordable = sp.csr_array((np.ones(4 * 50_000), (np.repeat(rows[:50_000], 4), np.tile([0, 1, 2, 3], 50_000))),
                                  shape=(50_000, 333))
        assert _solvers.resolve("auto", "squared_error", affordable, sparse=True, positive=True) == "normal"
    if sparse:  # the fit itself
        rng = np.random.default_rng(0)
        X = sp.random_array((2000, d), density=5e-3, format="csr", rng=rng)
        y = X @ np.abs(rng.standard_normal(d)) + 0.1 * rng.standard_normal(2000)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)  # (five epochs: the choice is what is tested)
            est = LinearRegressor(positive=True, max_epochs=5).fit(X, y)
        assert est.solver_ == "sgd" and np.all(est.coef_ >= 0)


@pytest.mark.parametrize("sparse", [False, True])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_nnls_on_a_cubic_with_its_bias_column_matches_sklearn(seed, sparse):
    # The bias column is constant beside the intercept: its R11 column is rounding. NNLS on the SVD's kept part
    # alone left that null direction free and moved 3e18 along it (seed 0: the objective 62 times the minimum,
    # rounding); the full R11's solve is kept where its residual, with its own rounding, is lower.
    import scipy.sparse as sp
    from sklearn.preprocessing import PolynomialFeatures
    rng = np.random.default_rng(seed)
    X = PolynomialFeatures(3).fit_transform(rng.uniform(-1, 1, (3000, 4)) + 3)
    y = X @ rng.standard_normal(X.shape[1]) + rng.standard_t(3, 3000)
    w = rng.uniform(0.5, 2, 3000)
    est = LinearRegressor(positive=True).fit(sp.csr_array(X) if sparse else X, y, sample_weight=w)
    ref = LinearRegression(positive=True).fit(X, y, sample_weight=w)

    def objective(coef, intercept):
        r = X @ coef + intercept - y
        return float(np.sum(w * r * r) / np.sum(w))

    assert np.all(est.coef_ >= 0)
    assert objective(est.coef_, est.intercept_) <= objective(ref.coef_, ref.intercept_) * (1 + 1e-9)


@pytest.mark.parametrize("fill, seed", [(0.0, 119), (None, 22)])
@pytest.mark.parametrize("sparse", [False, True])
def test_nnls_on_the_qr_path_beside_columns_without_data_reaches_the_minimum(fill, seed, sparse):
    # positive=True on the QR path with a ridge, four all-zero (or constant) columns: the ridge rows give them unit
    # columns without right-hand side, and SciPy's NNLS (1.17) returned a point with a gradient of 0.69 on its free
    # set (scipy/scipy#25389): a coefficient of 2.9 (10.3 on constant columns) where there is no data, the
    # objective 1.1% (7.3%) above the constrained minimum, silently. Its result is now checked by the optimality
    # conditions and replaced by BVLS where they fail. The reference is BVLS on the centred problem with the ridge
    # rows (exact active set: the two agree to rounding, measured 2e-16).
    import scipy.sparse as sp
    from scipy.optimize import lsq_linear
    rng = np.random.default_rng(seed)
    n, d, alpha = 60, 12, 1e-3
    X = rng.poisson(0.5, size=(n, d)).astype(float)
    cols = rng.choice(d, 4, replace=False)
    X[:, cols] = fill if fill is not None else rng.choice([1.0, 3.0, 7.0])
    y = X @ rng.normal(size=d) + rng.normal(size=n) * 0.3
    A = np.vstack([(X - X.mean(0)) / np.sqrt(n), np.sqrt(alpha) * np.eye(d)])
    ref = lsq_linear(A, np.r_[(y - y.mean()) / np.sqrt(n), np.zeros(d)], bounds=(0, np.inf), method="bvls",
                     tol=1e-15).x

    def objective(c, b):
        return 0.5 * np.mean((y - X @ c - b) ** 2) + 0.5 * alpha * c @ c

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        est = LinearRegressor(solver="qr", alpha=alpha, positive=True).fit(sp.csr_array(X) if sparse else X, y)
    assert est.solver_ == "qr"
    f_ref = objective(ref, y.mean() - X.mean(0) @ ref)
    assert objective(est.coef_, est.intercept_) <= f_ref * (1 + 1e-12)
    assert np.abs(est.coef_[cols]).max() <= 1e-12 * np.abs(est.coef_).max()


@pytest.mark.parametrize("seed, solver", [(30, "sgd"), (38, "sgd"), (38, "adam")])
def test_positive_iterative_fit_on_nearly_low_rank_columns_warns_where_it_stops_short(seed, solver):
    # Columns of rank 2-4 plus 1e-3 noise: the constrained optimum fits the noise along directions a thousand times
    # weaker than the rest (coefficients of 154 where the fit has 0.06, whose gradient is positive), so the check's
    # projected steps held those coefficients at 0 and found 1e-4 of the alarm: default SGD and Adam fits stopped
    # 3.4-5.4% above the optimum, silently (44 of 240 such fits). On small data the check now also evaluates the
    # exact constrained least-squares point (NNLS on the design's QR factor), a feasible point, so its decrease is
    # still a lower bound on the excess: every one of them warns, and none of the fits within 1% does.
    from scipy.optimize import lsq_linear
    rng = np.random.default_rng(seed)
    n = int(rng.integers(40, 600))
    r = int(rng.integers(2, 5))
    d = int(rng.integers(6, 12))
    X = rng.normal(size=(n, r)) @ rng.normal(size=(r, d)) + 1e-3 * rng.normal(size=(n, d))
    y = X @ rng.normal(size=d) + rng.normal(size=n)
    A, b = X - X.mean(0), y - y.mean()
    c = lsq_linear(A, b, bounds=(0, np.inf), method="bvls", tol=1e-15).x
    optimum = 0.5 * np.mean((A @ c - b) ** 2)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        est = LinearRegressor(solver=solver, positive=True, random_state=0).fit(X, y)
    excess = 0.5 * np.mean((y - X @ est.coef_ - est.intercept_) ** 2) / optimum - 1
    assert excess > 0.01  # (the case: stopped short; the check must say so)
    assert any(issubclass(w.category, ConvergenceWarning) for w in caught)


def test_positive_in_memory_fit_beside_empty_one_hot_levels_takes_the_second_pass():
    # Two one-hot blocks with two levels never seen (all-zero columns), a small ridge, no intercept: the decision
    # to read the rows again for QR estimated the condition of all columns' factor (0.41, the ridge-only columns
    # in), while the non-negative solve, on the columns with data, found 3e-8 and rejected Cholesky: with no R
    # factor it fell back to the eigendecomposition and warned that "the rows cannot be read again for QR" in a
    # plain fit. Both now ask the same question.
    from sklearn.preprocessing import OneHotEncoder
    rng = np.random.default_rng(20)
    n = int(rng.integers(60, 600))
    levels = [int(v) for v in rng.integers(4, 20, size=2)]
    cats = np.column_stack([rng.integers(0, k - 2, n) for k in levels])
    X = OneHotEncoder(categories=[np.arange(k) for k in levels], sparse_output=False).fit_transform(cats)
    X = np.hstack([X, rng.normal(size=(n, 2))])
    y = X @ rng.normal(size=X.shape[1]) + rng.normal(size=n)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        est = LinearRegressor(alpha=1e-8, fit_intercept=False, positive=True).fit(X, y)
    assert est.solver_ == "qr"
    from scipy.optimize import lsq_linear
    reference = lsq_linear(np.vstack([X / np.sqrt(n), np.sqrt(1e-8) * np.eye(X.shape[1])]),
                           np.r_[y / np.sqrt(n), np.zeros(X.shape[1])], bounds=(0, np.inf), method="bvls",
                           tol=1e-15).x

    def objective(c):
        return 0.5 * np.mean((X @ c - y) ** 2) + 0.5e-8 * c @ c

    assert objective(est.coef_) <= objective(reference) * (1 + 1e-10)


def _robust_low_rank(seed):
    rng = np.random.default_rng(seed)
    n, r, d = int(rng.integers(40, 300)), int(rng.integers(2, 5)), int(rng.integers(6, 12))
    X = rng.normal(size=(n, r)) @ rng.normal(size=(r, d)) + 1e-3 * rng.normal(size=(n, d))
    return X, X @ rng.normal(size=d) + rng.standard_t(3, size=n)


def _robust_objective(loss, X, y, coef, intercept, epsilon=1.35):
    a = np.abs(y - X @ coef - intercept)
    return np.mean(a) if loss == "absolute_error" else np.mean(np.where(a <= epsilon, 0.5 * a * a,
                                                                        epsilon * a - 0.5 * epsilon**2))


def _robust_positive_minimum(loss, X, y, epsilon=1.35):
    """An upper bound on the constrained minimum (a feasible point's value): the absolute error's linear program
    (HiGHS), Huber's L-BFGS-B run to its end."""
    from scipy.optimize import linprog, minimize
    n, d = X.shape
    if loss == "absolute_error":  # min mean(u + v) over X c + b + u - v = y, c >= 0, u, v >= 0
        A = np.hstack([X, np.ones((n, 1)), np.eye(n), -np.eye(n)])
        bounds = [(0, None)] * d + [(None, None)] + [(0, None)] * (2 * n)
        return linprog(np.r_[np.zeros(d + 1), np.full(2 * n, 1 / n)], A_eq=A, b_eq=y, bounds=bounds,
                       method="highs").fun

    def f(p):
        r = X @ p[:d] + p[d] - y
        psi = np.clip(r, -epsilon, epsilon) / n
        return _robust_objective(loss, X, y, p[:d], p[d], epsilon), np.r_[X.T @ psi, psi.sum()]

    return minimize(f, np.zeros(d + 1), jac=True, method="L-BFGS-B", bounds=[(0, None)] * d + [(None, None)],
                    options={"maxiter": 100000, "maxfun": 100000, "ftol": 1e-16, "gtol": 1e-12}).fun


@pytest.mark.parametrize("loss, seed, solver", [("huber", 4, "auto"), ("huber", 69, "sgd"),
                                                ("absolute_error", 4, "auto"), ("absolute_error", 35, "sgd")])
def test_positive_robust_fit_on_nearly_low_rank_columns_warns_where_it_stops_short(loss, seed, solver):
    # The robust losses' form of the squared error's case above: the projected steps hold at 0 coefficients that
    # the optimum takes far from it, and default Adam (auto), SGD and momentum fits stopped 1-10% above the optimum,
    # silently (122 of 480 fits of this generator). On small data the check now also evaluates a feasible point
    # nearer the minimum (L-BFGS-B under the bounds; for the absolute error through a Huber loss of a threshold far
    # below the residuals), so its decrease stays a lower bound on the excess.
    X, y = _robust_low_rank(seed)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        est = LinearRegressor(solver=solver, loss=loss, positive=True, random_state=0).fit(X, y)
    excess = _robust_objective(loss, X, y, est.coef_, est.intercept_) / _robust_positive_minimum(loss, X, y) - 1
    assert excess > 0.01  # (the case: stopped short; a lower bound, the reference being a feasible point's value)
    assert any(issubclass(w.category, ConvergenceWarning) for w in caught)


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("y_scale", [1.0, 1e-2, 1e-3])
def test_positive_absolute_error_check_warns_whatever_the_unit_of_y(seed, y_scale):
    # Non-negative CSR columns of scales 1e-2..1e2, an intercept, weights 10^U(-3, 3): default SGD stops about
    # 50% above the constrained minimum at every scale of y (the same fit). The check's projected step holds at 0
    # the coefficients whose diagonal step would cross it, and took the reweighted rows' diagonal from their
    # weighted means: the absolute error's weights 1 / max(|r|, mu) carry y's inverse unit, so at y / 100 every
    # coefficient was held, no step was found, and the fit was silent (it warned with y as given).
    import scipy.sparse as sp
    from scipy.optimize import linprog
    rng = np.random.default_rng(seed)
    n, d = 1000, 40
    X = sp.random(n, d, density=0.5, random_state=seed, format="csr", data_rvs=rng.standard_normal)
    X = sp.csr_matrix(X @ sp.diags(10 ** rng.uniform(-2, 2, d)))
    X.data = np.abs(X.data)
    y = y_scale * (X @ np.abs(rng.standard_normal(d)) + rng.standard_t(1.5, n))
    sw = 10 ** rng.uniform(-3, 3, n)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        est = LinearRegressor(solver="sgd", loss="absolute_error", positive=True, random_state=0).fit(
            X, y, sample_weight=sw)
    s = sw / sw.sum()  # min s . |X c + b - y| over c >= 0 (HiGHS), the weights' mean objective's minimum
    A = sp.hstack([X, np.ones((n, 1)), -sp.eye(n), sp.eye(n)]).tocsc()
    best = linprog(np.r_[np.zeros(d + 1), s, s], A_eq=A, b_eq=y, method="highs",
                   bounds=[(0, None)] * d + [(None, None)] + [(0, None)] * (2 * n)).fun
    assert s @ np.abs(X @ est.coef_ + est.intercept_ - y) > 1.2 * best  # (the case: far above the minimum)
    assert any(issubclass(w.category, ConvergenceWarning) for w in caught)


@pytest.mark.parametrize("loss", ["huber", "absolute_error"])
def test_positive_robust_fit_at_its_minimum_on_well_conditioned_rows_stays_quiet(loss):
    # Coefficients at the bound (a third of the true ones are 0), the fit within 1% of the minimum: no warning.
    rng = np.random.default_rng(1)
    X = rng.normal(size=(300, 9))
    y = X @ np.where(np.arange(9) % 3 == 0, 0.0, np.abs(rng.normal(size=9))) + rng.standard_t(3, size=300)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        est = LinearRegressor(loss=loss, positive=True, random_state=0).fit(X, y)
    assert np.any(est.coef_ <= 1e-2 * est.coef_.max())  # (the check's feasible point was taken)
    assert _robust_objective(loss, X, y, est.coef_, est.intercept_) <= 1.01 * _robust_positive_minimum(loss, X, y)


def test_positive_partial_fit_on_one_hot_rows_reports_their_rank_without_an_ill_conditioned_warning():
    # partial_fit keeps the Gram only (the rows cannot be read again for QR), so a design Cholesky rejects takes
    # the eigendecomposition. One-hot columns beside an intercept are exactly dependent: their eigenvalues at the
    # rounding are dropped, and the kept spectrum is well-conditioned. It warned of a reciprocal condition of 0 and
    # reported rank_ 18, where fit gives rank 16, no warning, and the same predictions.
    import scipy.sparse as sp
    from sklearn.preprocessing import OneHotEncoder

    from fastopt.exceptions import IllConditionedWarning
    rng = np.random.default_rng(0)
    n = 2000
    X = sp.hstack([OneHotEncoder().fit_transform(rng.integers(0, 8, size=(n, 2))),
                   sp.csr_matrix(rng.normal(size=(n, 2)))]).tocsr()
    y = X @ np.abs(rng.normal(size=X.shape[1])) + 0.1 * rng.normal(size=n)
    whole = LinearRegressor(solver="normal", positive=True).fit(X, y)
    est = LinearRegressor(solver="normal", positive=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error", IllConditionedWarning)
        est.partial_fit(X[:1000], y[:1000]).partial_fit(X[1000:], y[1000:])
    assert whole.rank_ == 16 and (est.solver_, est.rank_) == ("eigh", 16)
    # the fitted values are unique: the eigendecomposition's rounding, eps times the kept condition (about 1e3)
    np.testing.assert_allclose(est.predict(X), whole.predict(X), rtol=0, atol=1e-10 * np.abs(y).max())
    assert est.coef_.min() >= 0


def test_positive_partial_fit_on_ill_conditioned_columns_still_warns():
    # Full rank, but nearly collinear columns (one direction plus 1e-3 noise): the scaled Gram's reciprocal
    # condition is about 1e-7, and the eigendecomposition's accuracy is limited by it; the warning says so. (CSR
    # rows: their partial_fit keeps the Gram only, as for the one-hot rows above.)
    import scipy.sparse as sp

    from fastopt.exceptions import IllConditionedWarning
    rng = np.random.default_rng(1)
    X = rng.normal(size=(500, 1)) + 1e-3 * rng.normal(size=(500, 6))
    y = X @ np.ones(6) + 0.01 * rng.normal(size=500)
    with pytest.warns(IllConditionedWarning, match="non-negative solve on the eigendecomposition"):
        est = LinearRegressor(solver="normal", positive=True).partial_fit(sp.csr_array(X), y)
    assert est.solver_ == "eigh" and est.rank_ == 6


def _nnls_problem(seed, d, alpha):
    """Scaled normal equations ``A = M^T M`` (Gaussian rows plus a ridge) and ``b = M^T c`` whose constrained
    minimum holds a share of the coefficients at 0."""
    r = np.random.default_rng(seed)
    X = r.normal(size=(3 * d, d)) * r.uniform(0.5, 2.0, size=d)
    M = np.vstack([X, np.sqrt(alpha) * np.eye(d)]) if alpha else X
    c = M @ r.normal(size=d) + r.normal(size=M.shape[0])
    return M.T @ M, M.T @ c, M, c


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("alpha", [0.0, 1.0])
def test_block_principal_pivoting_reaches_lawson_hansons_minimum(seed, alpha):
    # _nnls_pivoting (the Cholesky path's first try) against SciPy's NNLS on the same problem: the same minimum
    # (both exact up to the rounding of the free block's solve), every entry >= 0, the optimality conditions met
    from fastopt._closed_form import _nnls_kkt, _nnls_pivoting

    A, b, M, c = _nnls_problem(seed, 40 + 30 * seed, alpha)
    v = _nnls_pivoting(A, b, np.linalg.solve(A, b))
    ref = nnls(M, c, maxiter=50 * A.shape[0])[0]
    assert v is not None and v.min() >= 0 and 0 < np.count_nonzero(v) < v.size
    assert _nnls_kkt(M, c, v)
    f = lambda u: 0.5 * np.sum((M @ u - c) ** 2)  # noqa: E731
    assert f(v) <= f(ref) * (1 + 1e-12)
    np.testing.assert_allclose(v, ref, rtol=1e-8, atol=1e-10 * np.abs(ref).max())


def test_positive_fit_on_the_cholesky_path_takes_block_pivoting_and_keeps_its_answer(monkeypatch):
    # helper-142: dense 10,000 x 2,000 with alpha=1, positive=True, took 3.8 s (SciPy's NNLS, which frees one
    # variable a step: 3.5 s), Ridge(positive=True) by L-BFGS-B 0.30 s; now 1.1 s, the same objective to 12
    # digits. Here 600 x 120: NNLS is not called, and the coefficients are its answer to rounding.
    import scipy.optimize

    from fastopt import _closed_form

    r = np.random.default_rng(7)
    X = r.normal(size=(600, 120))
    y = X @ r.normal(size=120) + r.normal(size=600)
    ref = LinearRegressor(positive=True, alpha=0.5)
    monkeypatch.setattr(_closed_form, "NNLS_PIVOTING_MAX_ITER", 0)  # (None at once: Lawson-Hanson alone)
    ref.fit(X, y)
    monkeypatch.undo()
    calls = []
    real = scipy.optimize.nnls
    monkeypatch.setattr(scipy.optimize, "nnls", lambda *a, **k: calls.append(1) or real(*a, **k))
    est = LinearRegressor(positive=True, alpha=0.5).fit(X, y)
    assert est.solver_ == ref.solver_ == "cholesky" and not calls
    assert 0 < np.count_nonzero(est.coef_) < 120 and est.coef_.min() >= 0
    np.testing.assert_allclose(est.coef_, ref.coef_, rtol=1e-9, atol=1e-12)


def test_positive_fit_factors_the_gram_once(monkeypatch):
    # needs_qr's Cholesky attempt under positive=True is the solve's: each had factored the Gram (a second 1.3 s of
    # a 13 s fit at 4,096 columns). Per-target alphas still factor each target's own equations.
    from fastopt import _closed_form

    r = np.random.default_rng(8)
    X = r.normal(size=(300, 40))
    Y = X @ r.normal(size=(40, 2)) + r.normal(size=(300, 2))
    calls = []
    real = _closed_form._positive_factor
    monkeypatch.setattr(_closed_form, "_positive_factor", lambda *a: calls.append(1) or real(*a))
    one = LinearRegressor(positive=True, alpha=0.1).fit(X, Y[:, 0])
    assert len(calls) == 1 and one.solver_ == "cholesky"
    both = LinearRegressor(positive=True, alpha=np.array([0.1, 1.0])).fit(X, Y)
    np.testing.assert_array_equal(both.coef_[0], one.coef_)
    monkeypatch.undo()
    for j, a in enumerate((0.1, 1.0)):
        np.testing.assert_array_equal(both.coef_[j], LinearRegressor(positive=True, alpha=a).fit(X, Y[:, j]).coef_)


@pytest.mark.parametrize("seed", [0, 3])
def test_positive_absolute_error_fit_on_weighted_tfidf_rows_warns_where_it_stops_short(seed):
    # helper-142: TF-IDF rows 600 x 150 (150 columns: wider than the check's conjugate-gradient steps, so its exact
    # point was not taken), weights spread 1e6, Cauchy outliers: SGD (what "auto" runs) stopped 13% above the
    # constrained minimum, and the reweighted rounds found no decrease at all: silent. The point by L-BFGS-B within
    # a budget of evaluations (positive_point_evals) now finds the gap.
    import scipy.sparse as sp
    from scipy.optimize import linprog
    from sklearn.feature_extraction.text import TfidfTransformer

    rng = np.random.default_rng(0)
    n, d = 600, 150
    C = sp.random(n, d, density=0.05, random_state=0, format="csr")
    C.data = np.ceil(rng.exponential(2, C.nnz))
    X = TfidfTransformer().fit_transform(C).tocsr()
    y = X @ (rng.normal(size=d) * 2) + 0.2 * rng.normal(size=n)
    r = np.random.default_rng(5)
    idx = r.choice(n, n // 20, replace=False)
    y[idx] += r.standard_cauchy(len(idx)) * 10
    w = 10 ** np.random.default_rng(1).uniform(-3, 3, n)
    A = X.toarray()  # the exact minimum: min sum w |r| over coef >= 0 as a linear program (HiGHS)
    cost = np.concatenate([np.zeros(d + 1), w, w]) / w.max()
    lp = linprog(cost, A_eq=np.hstack([A, np.ones((n, 1)), -np.eye(n), np.eye(n)]), b_eq=y,
                 bounds=[(0, None)] * d + [(None, None)] + [(0, None)] * 2 * n, method="highs")
    lad = lambda c, b: float(w @ np.abs(X @ c + b - y)) / w.sum()  # noqa: E731
    best = lad(lp.x[:d], lp.x[d])
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        est = LinearRegressor(loss="absolute_error", positive=True, random_state=seed).fit(X, y, sample_weight=w)
    assert est.solver_ == "sgd" and lad(est.coef_, est.intercept_) > 1.05 * best  # the case: far, 10-13%
    assert any(issubclass(x.category, ConvergenceWarning) and "still at least" in str(x.message) for x in rec)


@pytest.mark.parametrize("gap, noise", [(1e-5, 0.0), (1e-7, 1e-8)])
def test_positive_fit_on_the_qr_path_keeps_a_feasible_unconstrained_minimum(gap, noise):
    # helper-144: on nearly collinear columns (the QR path) with every coefficient positive, block pivoting re-solved
    # the free block on M^T M, which squares R11's condition, and the optimality check accepted it: an objective
    # 15 times the minimum (6.5e-16 against 4.2e-17), predictions 3e-9 of std(y) off lstsq's where Lawson-Hanson's
    # were 2e-15. A feasible unconstrained minimum is now the answer itself.
    r = np.random.default_rng(2)
    n, d = 300, 40
    X = r.normal(size=(n, d))
    X[:, 1::2] = X[:, 0::2] * (1 + gap * r.normal(size=(n, d // 2)))
    y = X @ (np.abs(r.normal(size=d)) + 0.5) + noise * r.normal(size=n) + 1.0
    A = np.hstack([X, np.ones((n, 1))])
    ref = A @ np.linalg.lstsq(A, y, rcond=None)[0]
    pos = LinearRegressor(positive=True).fit(X, y)
    assert pos.solver_ == "qr" and pos.coef_.min() > 0
    assert np.sqrt(np.mean((pos.predict(X) - ref) ** 2)) <= 1e-13 * np.std(y)


@pytest.mark.parametrize("seed", [0, 4, 8, 11, 20, 23])
def test_positive_fit_on_the_qr_path_with_active_bounds_matches_lawson_hanson(seed, monkeypatch):
    # Nearly collinear pairs (1e-5 to 1e-7 apart: the QR path) with positive coefficients beside ten columns whose
    # coefficients are 0, a fit that (nearly) interpolates: some of the ten are held at the bound. Pivoting's free
    # blocks solved on M^T M ended 4 to 2.5e13 times Lawson-Hanson's objective (helper-144's case, extended); on
    # M's columns they reach it, to the predictions' rounding (objectives of 1e-29 at y of about 10).
    from fastopt import _closed_form

    r = np.random.default_rng(seed)
    n, d = 300, 40
    X = r.normal(size=(n, d))
    X[:, 1:30:2] = X[:, 0:29:2] * (1 + [1e-5, 1e-6, 1e-7][seed % 3] * r.normal(size=(n, 15)))
    beta = np.abs(r.normal(size=d)) + 0.5
    beta[30:] = 0.0
    y = X @ beta + [0.0, 1e-8, 1e-3, 1e-10][seed % 4] * r.normal(size=n) + 1.0
    pos = LinearRegressor(positive=True).fit(X, y)
    monkeypatch.setattr(_closed_form, "_nnls_pivoting", lambda *a, **k: None)
    lh = LinearRegressor(positive=True).fit(X, y)
    objective = lambda e: 0.5 * np.mean((X @ e.coef_ + e.intercept_ - y) ** 2)  # noqa: E731
    assert pos.solver_ == "qr" and pos.coef_.min() >= 0
    assert objective(pos) <= objective(lh) * (1 + 1e-6) + (1e-14 * np.abs(y).max()) ** 2
