"""The closed form against numpy/scipy lstsq, exact rational answers, and itself (chunked vs one fit).

Tolerances come from least-squares perturbation theory (Higham, *Accuracy and Stability of Numerical
Algorithms*, ch. 20), in coordinates where every column of the centred, weighted design has unit norm (the
solvers scale columns, so that is the conditioning that governs them):

* a backward-stable path (QR, SVD) has relative error <= c u (kappa + kappa^2 eta), eta = ||r|| / (||A|| ||x||);
* the normal equations have relative error <= c u kappa^2 (the Gram is formed with relative error u);

with u = max(n, d) * eps covering the length of every sum, and c = 8: 4 for the solver under test and 4 for
the reference, a backward-stable SVD solve of the same centred problem. float32 input is accumulated and solved
in float64, so a float32 result adds only its final rounding, eps32 relative.
"""
import itertools
import pickle
import warnings

import numpy as np
import pytest
import scipy.linalg
from hypothesis import given
from hypothesis import strategies as st
from sklearn.linear_model import Ridge
from threadpoolctl import threadpool_limits

from fastopt import LinearRegressor, _closed_form
from fastopt._validation import Data
from fastopt.exceptions import IllConditionedWarning, RankDeficientWarning

EPS = np.finfo(np.float64).eps
EPS32 = float(np.finfo(np.float32).eps)


def reference(X, Y, w, fit_intercept, alpha):
    """Solution, residual and scaled design of the weighted ridge problem, by ``scipy.linalg.lstsq`` (SVD).

    ``min ||sqrt(w) (Y - X B - 1 b)||^2 + W alpha ||B||^2``. The intercept is eliminated by centring (as an
    explicit column of ones it would make the reference itself as ill-conditioned as the uncentred design);
    ridge rows ``sqrt(W alpha) I`` penalise the slopes only. Returns (coef (k, d), intercept (k,), scaled
    design, residual (n + d, k), column scales).
    """
    X, Y = X.astype(np.float64), Y.astype(np.float64)
    n, d = X.shape
    w = np.ones(n) if w is None else w.astype(np.float64)
    W = w.sum()
    xm = np.average(X, axis=0, weights=w) if fit_intercept else np.zeros(d)
    ym = np.average(Y, axis=0, weights=w) if fit_intercept else np.zeros(Y.shape[1])
    A = np.vstack([np.sqrt(w)[:, None] * (X - xm), np.sqrt(W * alpha) * np.eye(d)])
    B = np.vstack([np.sqrt(w)[:, None] * (Y - ym), np.zeros((d, Y.shape[1]))])
    scale = np.linalg.norm(A, axis=0)
    scale[scale == 0] = 1
    coef = (scipy.linalg.lstsq(A / scale, B, lapack_driver="gelsd")[0] / scale[:, None]).T
    return coef, ym - coef @ xm, A / scale, B - A @ coef.T, scale


def assert_close_to_reference(est, X, Y, w, fit_intercept, alpha):
    coef_ref, icpt_ref, As, resid, scale = reference(X, Y, w, fit_intercept, alpha)
    n, d = X.shape
    u = max(n, d) * EPS
    kappa = np.linalg.cond(As)
    coef = np.atleast_2d(est.coef_).astype(np.float64)
    icpt = np.broadcast_to(np.atleast_1d(est.intercept_), coef.shape[:1]).astype(np.float64)  # (0.0: none)
    out_rounding = EPS32 if est.coef_.dtype == np.float32 else EPS
    for j in range(coef_ref.shape[0]):
        v_ref = scale * coef_ref[j]
        v = scale * coef[j]
        size = np.linalg.norm(v_ref) + np.linalg.norm(resid[:, j])  # the ||b|| term covers a near-zero x
        if est.solver_ == "cholesky":
            rel = 8 * u * kappa**2
        else:
            eta = np.linalg.norm(resid[:, j]) / (np.linalg.norm(As, 2) * max(np.linalg.norm(v_ref), 1e-300))
            rel = 8 * u * (kappa + kappa**2 * min(eta, 1.0))
        bound = rel * size + 2 * out_rounding * np.linalg.norm(v_ref)
        assert np.linalg.norm(v - v_ref) <= bound, (est.solver_, kappa)
        # intercept = ymean - xmean . coef: inherits the slope error through |xmean / scale|; the means are sums
        # whose rounding scales with the sums of absolute values (mean |x|, not |mean x|: the terms may cancel)
        xm = np.average(np.abs(X.astype(np.float64)), axis=0, weights=w) if fit_intercept else np.zeros(d)
        ym = np.average(np.abs(Y[:, j].astype(np.float64)), weights=w) if fit_intercept else 0.0
        icpt_bound = np.linalg.norm(xm / scale) * bound + (u + out_rounding) * (ym + xm @ np.abs(coef_ref[j]))
        assert abs(icpt[j] - icpt_ref[j]) <= icpt_bound + 2 * out_rounding * abs(icpt_ref[j])


@st.composite
def problems(draw):
    d = draw(st.integers(1, 8))
    n = draw(st.integers(d + 2, 4 * d + 40))
    k = draw(st.integers(1, 3))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    dtype = draw(st.sampled_from([np.float64, np.float32]))
    # Columns of different scales and offsets, and some correlation between them.
    X = rng.normal(size=(n, d)) @ (np.eye(d) + 0.5 * rng.normal(size=(d, d)) / np.sqrt(d))
    X = X * 10.0 ** rng.uniform(-3, 3, size=d) + rng.normal(size=d) * 10
    Y = X @ rng.normal(size=(d, k)) + rng.normal(size=(n, k)) * draw(st.sampled_from([0.0, 1e-3, 1.0]))
    w = None
    if draw(st.booleans()):
        w = rng.uniform(0, 2, size=n) * (rng.random(n) > 0.1)
        w[: d + 2] += 0.5  # keep the weighted design of full rank
    return X.astype(dtype), Y.astype(dtype), None if w is None else w.astype(dtype)


@given(
    problem=problems(),
    fit_intercept=st.booleans(),
    alpha=st.sampled_from([0.0, 1e-6, 0.3]),
    solver=st.sampled_from(["normal", "qr"]),
    one_d=st.booleans(),
)
def test_agrees_with_lstsq(problem, fit_intercept, alpha, solver, one_d):
    X, Y, w = problem
    y = Y[:, 0] if one_d else Y
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", IllConditionedWarning)
        est = LinearRegressor(solver=solver, fit_intercept=fit_intercept, alpha=alpha).fit(X, y, sample_weight=w)
    assert est.coef_.dtype == X.dtype
    assert est.coef_.shape == ((X.shape[1],) if one_d else (Y.shape[1], X.shape[1]))
    assert_close_to_reference(est, X, Y[:, :1] if one_d else Y, w, fit_intercept, alpha)


def test_ridge_alpha_maps_to_sklearn_ridge_times_total_weight(rng):
    X, y = rng.normal(size=(80, 4)), rng.normal(size=80)
    w = rng.uniform(0.5, 2, size=80)
    ours = LinearRegressor(alpha=0.05).fit(X, y, sample_weight=w)
    theirs = Ridge(alpha=0.05 * w.sum()).fit(X, y, sample_weight=w)
    # Well-conditioned (kappa < 3): both are within a few hundred eps of the exact answer.
    np.testing.assert_allclose(ours.coef_, theirs.coef_, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(ours.intercept_, theirs.intercept_, rtol=1e-12, atol=1e-14)


# ---------------------------------------------------------------- ill-conditioned designs, exact answers


def ill_conditioned(kind, rng):
    if kind.startswith("poly"):
        x = np.linspace(0, 1, 40)
        X = np.column_stack([x**p for p in range(1, int(kind[4:]) + 1)])
    elif kind == "collinear":
        base = rng.normal(size=(40, 3))
        X = np.column_stack([base, base[:, 0] + 1e-7 * rng.normal(size=40), base[:, 1] + 1e-6 * rng.normal(size=40)])
    else:  # means 1e6 times the spread
        X = 1e6 + rng.normal(size=(40, 4))
    y = X @ rng.normal(size=X.shape[1]) + 1e-3 * rng.normal(size=40)
    return X, y


@pytest.mark.parametrize("kind", ["poly8", "poly10", "collinear", "offset"])
@pytest.mark.parametrize("solver", ["normal", "qr"])
def test_ill_conditioned_designs_agree_with_exact_answer(kind, solver, rng, exact_least_squares):
    X, y = ill_conditioned(kind, rng)
    coef = exact_least_squares(X, y[:, None])[1][0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", IllConditionedWarning)
        est = LinearRegressor(solver=solver).fit(X, y)
    assert est.solver_ in ("qr", "cholesky")
    assert_close_to_reference(est, X, y[:, None], None, True, 0.0)
    # The digits float64 allows, read off the exact answer: the scaled error against kappa_s * u.
    _, _, As, _, scale = reference(X, y[:, None], None, True, 0.0)
    with np.errstate(divide="ignore"):  # (the exact answer itself: infinitely many digits)
        digits = -np.log10(np.linalg.norm(scale * (est.coef_ - coef)) / np.linalg.norm(scale * coef))
    allowed = -np.log10(4 * len(y) * EPS * np.linalg.cond(As) ** (2 if est.solver_ == "cholesky" else 1))
    assert digits >= allowed - 1, (digits, allowed)


def test_offset_columns_stay_on_cholesky(rng):
    # Centring per block removes a mean 1e6 times the spread before any product is formed.
    X, y = ill_conditioned("offset", rng)
    with warnings.catch_warnings():
        warnings.simplefilter("error", IllConditionedWarning)
        assert LinearRegressor().fit(X, y).solver_ == "cholesky"


def test_rank_deficient_gives_minimum_norm_solution(rng):
    X = rng.normal(size=(50, 3))
    X = np.column_stack([X, X[:, 0] - 2 * X[:, 1]])
    y = rng.normal(size=50)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        est = LinearRegressor(solver="qr").fit(X, y)
    # Exactly one warning, of the documented, filterable category (a subclass of IllConditionedWarning).
    assert [w.category for w in caught] == [RankDeficientWarning]
    assert "rank-deficient" in str(caught[0].message)
    Xc = X - X.mean(0)
    ref = np.linalg.lstsq(Xc, y - y.mean(), rcond=None)[0]
    assert (est.solver_, est.rank_, len(est.singular_)) == ("svd", 3, 4)
    # The minimum-norm solution is well-conditioned on the retained subspace (kappa < 10 here).
    np.testing.assert_allclose(est.coef_, ref, rtol=1e-12, atol=1e-13)


def _scaled_minimum(X, y):
    """The least-squares objective's minimum (mean squared residual) with an intercept, from numpy.linalg.lstsq on
    the centred design with unit columns (the column scaling decides nothing about the objective)."""
    Xc = X - X.mean(0)
    norms = np.linalg.norm(Xc, axis=0)
    z = np.linalg.lstsq(Xc / norms, y - y.mean(), rcond=None)[0]
    return float(np.mean((Xc / norms @ z - (y - y.mean())) ** 2))


@pytest.mark.parametrize("sparse", [False, True])
def test_one_hot_beside_a_cubic_in_a_year_keeps_every_direction_its_scaled_columns_resolve(sparse):
    # 50 one-hot levels beside the intercept (one exact dependency) and PolynomialFeatures(3) of a year and u in
    # [0, 1]: rank 58 of 59 at a scaled condition of about 1e6. QR's scaled R11 is singular (the one-hot
    # dependency), and the SVD path's cutoff, relative to the unscaled singular values (year^3 ~ 8e9), dropped
    # three real directions: rank 55, the objective 51% above the minimum, predictions up to 1.15 off.
    import scipy.sparse as sps
    from sklearn.preprocessing import OneHotEncoder, PolynomialFeatures

    rng = np.random.default_rng(0)
    n = 20_000
    levels = rng.integers(0, 50, size=(n, 1))
    numeric = np.column_stack([rng.uniform(1990, 2020, n), rng.uniform(0, 1, n)])
    poly = PolynomialFeatures(3, include_bias=False).fit_transform(numeric)
    onehot = OneHotEncoder().fit_transform(levels).toarray()
    X = np.hstack([onehot, poly])
    y = onehot @ rng.normal(size=50) + (numeric[:, 0] - 2005) / 10 + np.sin(6 * numeric[:, 1]) \
        + 0.3 * rng.normal(size=n)
    with pytest.warns(RankDeficientWarning):
        est = LinearRegressor().fit(sps.csr_matrix(X) if sparse else X, y)
    assert est.rank_ == 58
    best = _scaled_minimum(X, y)
    # the scaled condition (1e6) leaves the solve about eps * 1e6 relative in the coefficients, and the objective
    # quadratically less above its minimum: 1e-9 is far above that and far below the 51% of dropped directions
    assert np.mean((X @ est.coef_ + est.intercept_ - y) ** 2) <= best * (1 + 1e-9)


def test_a_full_rank_polynomial_of_a_year_is_not_cut_to_the_unscaled_spectrums_rank():
    # PolynomialFeatures(6) of a year and u in [0, 10]: 27 columns, full rank, scaled condition 8e13 (reciprocal
    # below the cutoff, so the SVD path). Cut relative to the unscaled singular values it kept 8 of 27
    # directions, the objective twice the minimum; the same cutoff on the scaled ones keeps 25 (as fastopt on
    # StandardScaler's columns does) and reaches it.
    from sklearn.preprocessing import PolynomialFeatures

    rng = np.random.default_rng(0)
    n = 5_000
    numeric = np.column_stack([rng.uniform(1990, 2020, n), rng.uniform(0, 10, n)])
    X = PolynomialFeatures(6, include_bias=False).fit_transform(numeric)
    y = np.sin((numeric[:, 0] - 2005) / 5) + np.cos(numeric[:, 1]) + 0.1 * rng.normal(size=n)
    with pytest.warns(RankDeficientWarning):
        est = LinearRegressor().fit(X, y)
    assert est.solver_ == "svd" and est.rank_ == 25
    # numpy.linalg.lstsq on the unit columns, with the same cutoff (rank 25), is the reference; on such a
    # condition the two solves' rounding differ by (kappa eps)^2 ~ 3e-4 of the objective at most (measured: ours
    # 2e-5 to 1e-4 below it over four seeds), far below the doubling
    assert np.mean((X @ est.coef_ + est.intercept_ - y) ** 2) <= _scaled_minimum(X, y) * (1 + 3e-4)


# ---------------------------------------------------------------- chunks, merges, partial_fit


def chunks(n, rng, parts=4):
    cuts = np.sort(rng.choice(np.arange(1, n), size=parts - 1, replace=False))
    return np.split(np.arange(n), cuts)


@pytest.mark.parametrize("solver", ["normal", "qr"])
@pytest.mark.parametrize("fit_intercept", [True, False])
def test_partial_fit_in_chunks_equals_one_fit(solver, fit_intercept, rng):
    X = rng.normal(size=(300, 6)) * [1, 10, 100, 1e-2, 1, 5] + 50
    Y = X @ rng.normal(size=(6, 2)) + rng.normal(size=(300, 2))
    w = rng.uniform(0, 3, size=300)
    params = dict(solver=solver, fit_intercept=fit_intercept, alpha=1e-3)
    one = LinearRegressor(**params).fit(X, Y, sample_weight=w)
    est = LinearRegressor(**params)
    for idx in chunks(300, rng):
        est.partial_fit(X[idx], Y[idx], sample_weight=w[idx])
    assert est.solver_ == one.solver_
    # Same statistics summed in a different order: a relative perturbation of u = n eps in the Gram (or R),
    # amplified by at most kappa^2 (kappa ~ 3 after column scaling here), i.e. ~1e-12 -- normwise, in the
    # coordinates where every column has unit spread (an entry of a small coefficient on a column of small
    # spread carries the absolute error of the others, not a relative one).
    spread = X.std(axis=0)
    assert np.linalg.norm(spread * (est.coef_ - one.coef_)) <= 1e-11 * np.linalg.norm(spread * one.coef_)
    np.testing.assert_allclose(est.intercept_, one.intercept_, rtol=1e-11, atol=1e-11)


@pytest.mark.parametrize("fit_intercept", [True, False])
def test_partial_fit_after_a_gram_fit_computes_no_r(fit_intercept, rng, monkeypatch):
    # A fit's Gram state has no R, so a chunk's R would be dropped by the merge: partial_fit computes its Gram
    # alone (the R cost about twice the Gram), with the answer of the merged statistics as before.
    X = rng.normal(size=(400, 6)) * [1, 10, 100, 0.1, 1, 5] + 1  # Cholesky accepts it, centred or not
    y = X @ rng.normal(size=6) + rng.normal(size=400)
    w = rng.uniform(0, 3, size=400)
    est = LinearRegressor(fit_intercept=fit_intercept).fit(X[:250], y[:250], sample_weight=w[:250])
    assert est.solver_ == "cholesky" and est._solver_state.r is None

    def no_r(*args):
        raise AssertionError("partial_fit computed a chunk's R that the merge would drop")

    monkeypatch.setattr(_closed_form, "chunk_qr_state", no_r)
    est.partial_fit(X[250:], y[250:], sample_weight=w[250:])
    monkeypatch.undo()
    one = LinearRegressor(fit_intercept=fit_intercept).fit(X, y, sample_weight=w)
    spread = X.std(axis=0)  # as in test_partial_fit_in_chunks_equals_one_fit
    assert np.linalg.norm(spread * (est.coef_ - one.coef_)) <= 1e-11 * np.linalg.norm(spread * one.coef_)


def test_partial_fit_after_an_auto_fit_that_ran_qr_goes_on_with_it(rng):
    # solver="auto" fits fewer rows than columns by QR; partial_fit's "auto" is the Gram's closed form, but QR's
    # statistics (R) take more rows as the Gram's do, so partial_fit goes on with them: the fit of all the rows.
    X = rng.normal(size=(150, 80))
    y = X @ rng.normal(size=80) + 0.1 * rng.normal(size=150)
    with pytest.warns(RankDeficientWarning):
        est = LinearRegressor().fit(X[:50], y[:50])
    assert est._solver_name == "qr"
    est.partial_fit(X[50:100], y[50:100])
    est.partial_fit(X[100:], y[100:])
    assert (est._solver_name, est.solver_) == ("qr", "qr")
    # QR of the same rows merged in another order: a perturbation of about n eps, amplified by kappa(X) ~ 6
    one = LinearRegressor(solver="qr").fit(X, y)
    assert np.linalg.norm(est.coef_ - one.coef_) <= 1e-11 * np.linalg.norm(one.coef_)


def test_partial_fit_after_a_fit_whose_state_cannot_take_rows_names_both_solvers(rng):
    import scipy.sparse as sp

    X = sp.random(3000, 2000, density=0.01, format="csr", random_state=0)  # "auto": LSQR, no statistics kept
    y = rng.normal(size=3000)
    est = LinearRegressor().fit(X, y)
    assert est.solver_ == "lsqr"
    coef = est.coef_.copy()
    with pytest.raises(ValueError, match="earlier fit or partial_fit ran solver 'lsqr', whose state cannot take "
                                         "more rows by 'normal', the solver that 'auto' runs"):
        est.partial_fit(X[:100], y[:100])
    assert np.array_equal(est.coef_, coef)
    Xd = rng.normal(size=(200, 3))
    # (after Newton's method, "adam" goes on from its coefficients: tests/test_robust.py)
    est = LinearRegressor(solver="normal").partial_fit(Xd, Xd @ [1.0, 2.0, 3.0])
    est.set_params(solver="sgd")  # a solver the user changed: the message says so
    with pytest.raises(ValueError, match="started with solver 'normal'; solver is now 'sgd'"):
        est.partial_fit(Xd, Xd @ [1.0, 2.0, 3.0])


def test_ill_conditioned_partial_fit_falls_back_like_fit(rng):
    X, y = ill_conditioned("poly8", rng)
    # Leaving Cholesky for QR loses no accuracy: reported by solver_ and rcond_, not warned about.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        one = LinearRegressor().fit(X, y)
        est = LinearRegressor()
        *first, last = chunks(len(y), rng)
        for idx in first:
            with warnings.catch_warnings():  # a few rows so far can be genuinely rank-deficient
                warnings.simplefilter("ignore", RankDeficientWarning)
                est.partial_fit(X[idx], y[idx])
        est.partial_fit(X[last], y[last])
    assert est.solver_ == one.solver_ == "qr"
    assert est.rank_ == one.rank_ == X.shape[1]
    assert 0 < est.rcond_ < 1 and 0 < one.rcond_ < 1
    assert_close_to_reference(est, X, y[:, None], None, True, 0.0)


def data(X, Y, w=None):
    return Data(X=np.ascontiguousarray(X), Y=np.ascontiguousarray(Y), sample_weight=w, y_was_1d=False)


def test_merge_is_associative_and_states_pickle(rng):
    X, Y = rng.normal(size=(90, 4)) + 3, rng.normal(size=(90, 1))
    params = LinearRegressor(solver="qr").get_params()
    a, b, c = (_closed_form.chunk_state(params, data(X[s], Y[s])) for s in np.split(np.arange(90), [20, 55]))
    b = pickle.loads(pickle.dumps(b))
    left = _closed_form.merge_states(_closed_form.merge_states(a, b), c)
    right = _closed_form.merge_states(a, _closed_form.merge_states(b, c))
    full = _closed_form.chunk_state(params, data(X, Y))
    for s in (left, right):
        np.testing.assert_allclose(s.mean, full.mean, rtol=1e-14)
        # R is unique up to the signs of its rows: compare R^T R.
        np.testing.assert_allclose(s.r.T @ s.r, full.r.T @ full.r, rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match="features"):
        _closed_form.merge_states(a, _closed_form.chunk_state(params, data(X[:, :3], Y)))


def test_segments_and_threads_do_not_change_the_answer(rng, monkeypatch):
    X, Y = rng.normal(size=(1000, 5)) + 7, rng.normal(size=(1000, 2))
    params = LinearRegressor().get_params()
    monkeypatch.setattr(_closed_form, "SEGMENT_ROWS", 64)
    threaded = _closed_form.chunk_state(params, data(X, Y))
    with threadpool_limits(1):
        serial = _closed_form.chunk_state(params, data(X, Y))
    # Fixed segments merged in a fixed tree: bit-identical whatever the thread count.
    np.testing.assert_array_equal(threaded.gram, serial.gram)
    monkeypatch.setattr(_closed_form, "SEGMENT_ROWS", 65536)
    single = _closed_form.chunk_state(params, data(X, Y))
    np.testing.assert_allclose(threaded.gram, single.gram, rtol=1e-12)


def test_qr_segments_and_threads_do_not_change_the_answer(rng, monkeypatch):
    X, Y = rng.normal(size=(1000, 5)) + 7, rng.normal(size=(1000, 2))
    w = rng.uniform(0, 2, size=1000)
    params = LinearRegressor(solver="qr").get_params()
    monkeypatch.setattr(_closed_form, "SEGMENT_ROWS", 64)
    threaded = _closed_form.chunk_qr_state(params, data(X, Y, w))
    with threadpool_limits(1):
        serial = _closed_form.chunk_qr_state(params, data(X, Y, w))
    np.testing.assert_array_equal(threaded.r, serial.r)
    np.testing.assert_array_equal(threaded.mean, serial.mean)
    # One segment against sixteen: the same R^T R (the Gram) up to the rounding of the merges, ~n eps relative
    # to the column norms.
    monkeypatch.setattr(_closed_form, "SEGMENT_ROWS", 65536)
    single = _closed_form.chunk_qr_state(params, data(X, Y, w))
    root = np.sqrt(np.diag(single.r.T @ single.r))
    assert np.all(np.abs(threaded.r.T @ threaded.r - single.r.T @ single.r) <= 1000 * EPS * np.outer(root, root))


def test_distributed_contract_second_pass(rng):
    X, y = ill_conditioned("poly10", rng)
    params = LinearRegressor().get_params()
    parts = [data(X[idx], y[idx, None]) for idx in chunks(len(y), rng)]
    state = parts and _merge_all([_closed_form.chunk_state(params, part) for part in parts])
    assert _closed_form.needs_qr(params, state)
    with pytest.warns(IllConditionedWarning, match="eigh"):
        assert _closed_form.finish(params, state).attrs["solver_"] == "eigh"
    qr_state = _merge_all([_closed_form.chunk_qr_state(params, part) for part in parts])
    assert not _closed_form.needs_qr(params, qr_state)
    result = _closed_form.finish(params, qr_state)
    fitted = LinearRegressor(solver="qr").fit(X, y)
    assert result.attrs["solver_"] == "qr"
    np.testing.assert_allclose(result.coef[0], fitted.coef_, rtol=1e-6)  # kappa_s ~ 1e7: u kappa ~ 1e-7


def test_partial_state_carries_r_and_the_gram_unless_qr(rng):
    X, y = ill_conditioned("poly10", rng)
    parts = [data(X[idx], y[idx, None]) for idx in chunks(len(y), rng)]
    normal, qr = LinearRegressor().get_params(), LinearRegressor(solver="qr").get_params()
    state = _merge_all([_closed_form.partial_state(normal, part) for part in parts])
    assert state.gram is not None and state.r is not None
    assert not _closed_form.needs_qr(normal, state)  # the carried R replaces the second pass
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the switch to QR is reported in solver_, not warned about
        assert _closed_form.finish(normal, state).attrs["solver_"] == "qr"
    only_r = _closed_form.partial_state(qr, parts[0])
    assert only_r.gram is None and only_r.r is not None


def _merge_all(states):
    state = states[0]
    for other in states[1:]:
        state = _closed_form.merge_states(state, other)
    return state


def test_zero_weights_equal_dropping_rows(rng):
    X, y = rng.normal(size=(60, 3)), rng.normal(size=60)
    w = np.ones(60)
    w[::3] = 0
    a = LinearRegressor().fit(X, y, sample_weight=w)
    b = LinearRegressor().fit(X[w > 0], y[w > 0])
    np.testing.assert_allclose(a.coef_, b.coef_, rtol=1e-13)


def test_float32_is_accumulated_in_float64(rng):
    # 200,000 float32 rows: a float32 Gram would carry relative errors near sqrt(n) eps32 ~ 5e-5; accumulated in
    # float64 the only float32 error left is the final rounding of the coefficients.
    X = (rng.normal(size=(200_000, 3)) + np.array([3, -2, 100])).astype(np.float32)
    y = (X.astype(np.float64) @ [1.5, -0.5, 2.0] + rng.normal(size=200_000)).astype(np.float32)
    est = LinearRegressor().fit(X, y)
    assert est.coef_.dtype == np.float32 and est.intercept_.dtype == np.float32
    assert_close_to_reference(est, X, y[:, None], None, True, 0.0)


def test_fitted_attributes(rng):
    X, y = rng.normal(size=(30, 2)), rng.normal(size=30)
    est = LinearRegressor().fit(X, y)
    assert (est.solver_, est.n_iter_, est.rank_, est.singular_) == ("cholesky", 1, 2, None)
    assert 0 < est.rcond_ <= 1


def test_concurrent_fits_restore_the_blas_thread_limit(rng, monkeypatch):
    from concurrent.futures import ThreadPoolExecutor

    from threadpoolctl import threadpool_info

    X, y = rng.normal(size=(2000, 4)), rng.normal(size=2000)
    monkeypatch.setattr(_closed_form, "SEGMENT_ROWS", 50)
    before = [lib["num_threads"] for lib in threadpool_info()]
    with ThreadPoolExecutor(4) as pool:
        fits = list(pool.map(lambda _: LinearRegressor().fit(X, y).coef_, range(8)))
    assert [lib["num_threads"] for lib in threadpool_info()] == before
    for coef in fits[1:]:
        np.testing.assert_array_equal(coef, fits[0])  # serial or parallel segments: the same tree, the same bits


@pytest.mark.parametrize("solver", ["normal", "qr"])
def test_empty_and_zero_weight_chunks_merge_as_nothing(rng, solver):
    # A distributed caller may meet empty partitions, or partitions whose weights are all zero.
    X, Y = rng.normal(size=(40, 3)), rng.normal(size=(40, 1))
    params = LinearRegressor(solver=solver).get_params()
    full = _closed_form.chunk_state(params, data(X, Y))
    empty = _closed_form.chunk_state(params, data(X[:0], Y[:0]))
    weightless = _closed_form.chunk_state(params, data(X[:5], Y[:5], np.zeros(5)))
    merged = _merge_all([empty, full, weightless, empty])
    np.testing.assert_array_equal(merged.mean, full.mean)
    assert merged.n_samples == 45
    np.testing.assert_array_equal(_closed_form.finish(params, merged).coef, _closed_form.finish(params, full).coef)


# ---------------------------------------------------------------- real designs: one-hot, polynomial


@pytest.mark.parametrize("seed", range(4))
def test_eigensolve_of_a_one_shot_stream_is_minimum_norm_in_the_callers_units(seed):
    # A one-shot stream cannot be read again for QR: its rank-deficient Gram takes the eigensolve. Its minimum
    # norm must be lstsq's, in the caller's units; in the column-scaled units it was another least-squares
    # solution (4-48% away on one-hot designs of a few hundred rows whose levels' frequencies, hence the columns'
    # scales, differ).
    rng = np.random.default_rng(seed)
    p = 1 / np.arange(1, 7) ** 2
    codes = np.r_[np.arange(6), rng.choice(6, size=294, p=p / p.sum())]  # every level, skewed frequencies
    X = np.column_stack([np.eye(6)[codes], rng.normal(size=(300, 2))])
    y = X @ rng.normal(size=8) + 0.1 * rng.normal(size=300)
    chunks = iter([(X[i : i + 100], y[i : i + 100]) for i in range(0, 300, 100)])
    with pytest.warns(IllConditionedWarning):
        est = LinearRegressor().fit_stream(chunks)
    assert est.solver_ == "eigh"
    xm, ym = X.mean(0), y.mean()
    ref, _, rank, s = np.linalg.lstsq(X - xm, y - ym, rcond=None)
    assert est.rank_ == rank
    tol = 8 * max(X.shape) * EPS * (s[0] / s[rank - 1]) ** 2  # the eigensolve squares the condition number
    assert np.linalg.norm(est.coef_ - ref) <= tol * np.linalg.norm(ref)


def test_probe_sends_an_ill_conditioned_fit_straight_to_qr(rng, monkeypatch):
    X = rng.normal(size=(70_000, 5))  # enough rows for the probe (32 x 2048)
    X[:, 4] = X[:, 3] + 1e-3 * rng.normal(size=len(X))  # nearly dependent (not exactly): rcond about 1e-6
    y = X @ rng.normal(size=5) + 0.1 * rng.normal(size=len(X))
    expected = LinearRegressor(solver="qr")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        expected.fit(X, y)

        def no_gram_pass(*args):
            raise AssertionError("the Gram pass ran although the probe rejected Cholesky")

        monkeypatch.setattr(_closed_form, "chunk_state", no_gram_pass)
        est = LinearRegressor().fit(X, y)
    assert est.solver_ == expected.solver_ == "qr"
    np.testing.assert_array_equal(est.coef_, expected.coef_)  # the very same QR pass
    # A well-conditioned design passes the probe and stays on Cholesky.
    monkeypatch.undo()
    assert LinearRegressor().fit(rng.normal(size=(70_000, 4)), rng.normal(size=70_000)).solver_ == "cholesky"


def test_probe_slices_are_evenly_spread_and_bounded():
    assert _closed_form._probe_slices(50_000, 10) is None  # 32 x 2048 rows needed
    slices = _closed_form._probe_slices(1_000_000, 300)  # 8 p = 2400 rows
    assert len(slices) == _closed_form.PROBE_PARTS
    assert sum(s.stop - s.start for s in slices) >= 2400
    assert slices[0].start == 0 and slices[-1].stop == 1_000_000
    assert all(a.stop <= b.start for a, b in itertools.pairwise(slices))


def test_grid_search_on_an_ill_conditioned_full_rank_design_warns_nothing(rng):
    from sklearn.model_selection import GridSearchCV

    t = rng.uniform(size=400)
    X = np.column_stack([t**k for k in range(1, 9)])  # polynomial features: Cholesky is rejected
    y = X @ rng.normal(size=X.shape[1]) + 0.01 * rng.normal(size=400)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        search = GridSearchCV(LinearRegressor(), {"alpha": [0.0, 1e-12]}, cv=3).fit(X, y)
    assert search.best_estimator_.solver_ == "qr"


def test_probe_passes_per_target_alpha_and_positive_to_the_qr_solve(rng):
    # The probe's QR path goes through finish(), so per-target ridge and non-negative solves keep working on it.
    t = rng.uniform(size=70_000)
    X = np.column_stack([t**k for k in range(1, 7)])  # Cholesky rejects even the probe's sample
    Y = np.column_stack([X @ rng.uniform(0, 1, size=6), X @ rng.normal(size=6)]) + 0.01 * rng.normal(size=(70_000, 2))
    alpha = np.array([0.0, 1e-6])
    est = LinearRegressor(alpha=alpha).fit(X, Y)
    ref = LinearRegressor(alpha=alpha, solver="qr").fit(X, Y)
    assert est.solver_ == ref.solver_ == "qr"
    np.testing.assert_array_equal(est.coef_, ref.coef_)  # the very same QR pass and solves
    positive = LinearRegressor(positive=True).fit(X, Y[:, 0])
    assert positive.solver_ == "qr" and np.all(positive.coef_ >= 0)
    np.testing.assert_array_equal(positive.coef_, LinearRegressor(positive=True, solver="qr").fit(X, Y[:, 0]).coef_)


def test_a_ridge_never_makes_the_condition_estimate_worse(rng):
    """The normal equations are Jacobi-scaled with the ridge counted in the diagonal: scaled by the Gram's
    diagonal alone, columns of tiny norm got diagonal entries W alpha / s^2 far above the others', and the
    condition estimate of a ridge fit fell as alpha grew (3e-4 at 1e-3, 3e-5 at 0.1 on this design), sending
    well-conditioned ridge fits to QR and, with one alpha per target, to the warned eigensolve."""
    n, d = 900, 60
    X = rng.normal(size=(n, d)) * 10.0 ** rng.uniform(-3, 1, size=d)  # some columns of tiny norm
    Y = X @ rng.normal(size=(d, 2)) + 0.3 * rng.normal(size=(n, 2))
    rconds = [LinearRegressor(alpha=a, fit_intercept=False).fit(X, Y).rcond_ for a in (1e-3, 1e-2, 0.1, 1.0)]
    assert all(b >= a for a, b in itertools.pairwise(rconds))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no eigensolve: the smallest alpha already passes Cholesky
        est = LinearRegressor(alpha=np.array([1e-3, 0.1]), fit_intercept=False).fit(X, Y)
    assert est.solver_ == "cholesky"
    for j, a in enumerate((1e-3, 0.1)):  # each target as its own ridge fit, to rounding
        ref = LinearRegressor(solver="qr", alpha=a, fit_intercept=False).fit(X, Y[:, j])
        np.testing.assert_allclose(est.coef_[j], ref.coef_, rtol=1e-9, atol=1e-12 * np.abs(ref.coef_).max())


@pytest.mark.parametrize("d", [4, 12, 31, 40, 300, 500])
@pytest.mark.parametrize("spectrum", ["uniform", "log-uniform", "squares", "one small", "two clusters", "four levels"])
def test_the_two_norm_estimate_lies_within_its_margin_above_the_true_reciprocal_condition(d, spectrum):
    """Ritz values lie inside the spectrum, so the estimate is at least lambda_min / lambda_max (to rounding); the
    acceptance divides it by TWO_NORM_MARGIN, which is right only where the estimate stays below that many times
    the true value. Spectra without a gap (uniform, log-uniform) are the block Krylov space's hardest. Below 32
    columns the space is exhausted and later blocks are rounding noise: the estimate read 16 times below the truth
    at d = 4 until the Rayleigh-Ritz step orthonormalised the span itself."""
    rng = np.random.default_rng(d)
    lam = {"uniform": np.linspace(1.0, 1e3, d), "log-uniform": np.logspace(0, 3, d),
           "squares": np.linspace(1.0, 31.6, d) ** 2, "one small": np.r_[1.0, np.full(d - 1, 1e3)],
           "two clusters": np.r_[np.linspace(1.0, 1.01, d // 2), np.linspace(999.0, 1e3, d - d // 2)],
           "four levels": np.repeat([1.0, 10.0, 100.0, 1e3], d // 4 + 1)[:d]}[spectrum]
    Q = np.linalg.qr(rng.standard_normal((d, d)))[0]
    U = np.asfortranarray(scipy.linalg.cholesky((Q * lam) @ Q.T))
    true = lam.min() / lam.max()
    estimate = _closed_form._two_norm_rcond(U, d, serial=False)
    assert true * (1 - 1e-8) <= estimate <= _closed_form.TWO_NORM_MARGIN * true


def _standardised_quadratic(n, k, seed=7):
    from sklearn.preprocessing import PolynomialFeatures, StandardScaler
    rng = np.random.default_rng(seed)
    Z = StandardScaler().fit_transform(rng.uniform(0, 100, size=(n, k)))
    y = np.sin(Z[:, 0]) + Z[:, 1] ** 2 + 0.3 * rng.normal(size=n)
    return PolynomialFeatures(2, include_bias=False).fit_transform(Z), y


def test_a_well_conditioned_ridge_on_barely_tall_quadratic_features_stays_on_cholesky():
    """400 rows of 350 standardised quadratic features, alpha 1e-3: LAPACK's 1-norm estimate reads 8.5e-5 (below
    RCOND_CHOLESKY), the 2-norm reciprocal condition of the scaled system is 1.2e-3. The normal equations'
    error follows the latter, so Cholesky keeps its accuracy; the fit took QR (3.9x Ridge's time on 1,500 x 1,325)."""
    X, y = _standardised_quadratic(400, 25)
    n, d = X.shape
    alpha = 1e-3
    est = LinearRegressor(alpha=alpha).fit(X, y)
    assert est.solver_ == "cholesky"
    Xc = X - X.mean(axis=0)
    G = Xc.T @ Xc / n + alpha * np.eye(d)
    s = np.sqrt(np.diag(G))
    lam = np.linalg.eigvalsh(G / s[:, None] / s)
    assert est.rcond_ <= lam[0] / lam[-1]  # the estimate over its margin: never above the truth
    # the reference: least squares on the augmented rows [Xc; sqrt(n alpha) I], by QR (no squared condition)
    ref = np.linalg.lstsq(np.vstack([Xc, np.sqrt(n * alpha) * np.eye(d)]), np.r_[y - y.mean(), np.zeros(d)],
                          rcond=None)[0]
    # Cholesky of the scaled system: a relative error of about cond * d * eps in the scaled coefficients
    bound = lam[-1] / lam[0] * d * np.finfo(float).eps
    assert np.linalg.norm((est.coef_ - ref) * s) <= bound * np.linalg.norm(ref * s)


def test_a_system_whose_two_norm_condition_fails_the_test_still_takes_qr(rng, monkeypatch):
    """Inside the window where the 2-norm estimate is made (1-norm estimate between RCOND_CHOLESKY / d and
    RCOND_CHOLESKY), a scaled system whose 2-norm reciprocal condition is below RCOND_CHOLESKY is still refused."""
    n, d = 2000, 30
    Z = rng.standard_normal((n, d))
    Z[:, 1] = Z[:, 0] + 1e-2 * rng.standard_normal(n)  # one nearly dependent pair
    Zc = Z - Z.mean(axis=0)
    s = np.sqrt(np.einsum("ij,ij->j", Zc, Zc))
    lam = np.linalg.eigvalsh((Zc.T @ Zc) / s[:, None] / s)
    assert lam[0] / lam[-1] < _closed_form.RCOND_CHOLESKY / _closed_form.TWO_NORM_MARGIN
    estimates = []
    real = _closed_form._two_norm_rcond
    monkeypatch.setattr(_closed_form, "_two_norm_rcond", lambda *a: estimates.append(real(*a)) or estimates[-1])
    est = LinearRegressor().fit(Z, Z @ rng.standard_normal(d))
    assert estimates and estimates[0] / _closed_form.TWO_NORM_MARGIN < _closed_form.RCOND_CHOLESKY  # in the window
    assert est.solver_ == "qr"


@given(seed=st.integers(0, 2**32 - 1), value=st.sampled_from([0.1, 1 / 3, 3.7, -3.7, 5.0, 7.3, 1e5 + 0.1]),
       weights=st.sampled_from(["none", "uniform", "skewed", "zeros"]), sparse=st.booleans(),
       how=st.sampled_from([dict(), dict(solver="qr"), dict(positive=True), dict(alpha=np.array([0.0]))]))
def test_a_constant_column_beside_the_intercept_gets_coefficient_zero(seed, value, weights, sparse, how):
    # A column constant over the rows of positive weight (to round-off: its mean is computed within ulps) is exactly
    # dependent on the intercept. Its centred rounding noise, scaled up by the Jacobi scaling, passed Cholesky's
    # and QR's tests: coefficients of 1e10-1e44 (an error of 4e59 with CSR X and skewed weights), silently. Now
    # its coefficient is 0, the minimum-norm solution (scikit-learn's LinearRegression's), and the others are
    # those of the fit without it, to the accuracy of the normal equations (cond ~ 1 here: 1e-12 is 4,500 eps).
    import scipy.sparse as sp
    rng = np.random.default_rng(seed)
    n = 300
    X = rng.standard_normal((n, 4))
    X[:, 2] = value
    y = X[:, [0, 1, 3]] @ np.array([1.0, 2.0, 0.5]) + 0.1 * rng.standard_normal(n)
    w = {"none": None, "uniform": np.full(n, 0.7), "skewed": np.exp(2 * rng.standard_normal(n)),
         "zeros": np.where(rng.random(n) < 0.3, 0.0, rng.uniform(0.5, 2.0, n))}[weights]
    if weights == "zeros":
        X[w == 0, 2] = rng.standard_normal(int((w == 0).sum()))  # constant only where the weight is positive
    Y = y[:, None] if "alpha" in how else y
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RankDeficientWarning)
        est = LinearRegressor(**how).fit(sp.csr_array(X) if sparse else X, Y, sample_weight=w)
        ref = LinearRegressor(**how).fit(X[:, [0, 1, 3]], Y, sample_weight=w)
    coef = np.ravel(est.coef_)
    assert coef[2] == 0.0
    np.testing.assert_allclose(coef[[0, 1, 3]], np.ravel(ref.coef_), rtol=0, atol=1e-12 * np.abs(ref.coef_).max())
    np.testing.assert_allclose(est.intercept_, ref.intercept_, rtol=0, atol=1e-12 * (1 + abs(value)) * 3)


@pytest.mark.parametrize("column", ["ones", "constant", "zeros", "duplicate"])
@pytest.mark.parametrize("solver", ["auto", "qr"])
@pytest.mark.parametrize("sparse", [False, True])
def test_a_column_without_information_leaves_the_rest_of_a_badly_scaled_fit_alone(column, solver, sparse):
    # PolynomialFeatures(3) of columns scaled 1e-3, 1 and 1e3 (offsets 0, 5, 100): full rank once its columns
    # are scaled (QR, rank 19). Its default bias column (or any constant or zero one) beside the intercept made
    # R11 singular, and the SVD of the unscaled R11 then also dropped 4 directions the scaling resolves: rank 15,
    # predictions 1.6 away, every other coefficient changed. A zero or constant column is an exact null direction
    # e_j: coefficient 0, the others those of the fit without it. A duplicated column is a real rank deficiency,
    # resolved by the SVD of the unscaled R11, as numpy.linalg.lstsq does (not compared).
    import scipy.sparse as sp
    from sklearn.preprocessing import PolynomialFeatures
    rng = np.random.default_rng(1)
    Z = rng.normal(size=(200, 3)) * np.array([1e-3, 1.0, 1e3]) + np.array([0, 5, 100])
    X0 = PolynomialFeatures(3, include_bias=False).fit_transform(Z)
    y = X0[:, :5] @ rng.normal(size=5) + rng.normal(size=200)
    extra = {"ones": np.ones(200), "constant": np.full(200, 7.3), "zeros": np.zeros(200), "duplicate": X0[:, 4]}
    X1 = np.column_stack([extra[column], X0])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        est = LinearRegressor(solver=solver).fit(sp.csr_array(X1) if sparse else X1, y)
    ref = LinearRegressor(solver=solver).fit(X0, y)
    assert (ref.solver_, ref.rank_) == ("qr", 19)
    assert [type(w.message) for w in caught] == [RankDeficientWarning]
    if column == "duplicate":
        return
    assert (est.solver_, est.rank_, est.coef_[0]) == ("qr", 19, 0.0)
    # the same triangular system: R of [0, X0] without its zero column is R of X0 up to the signs of its rows, and
    # the solves agree to the rounding of the one re-triangularisation (rcond_ ~ 1e-3 here: 1e-11 relative)
    scale = np.linalg.norm(X0 - X0.mean(axis=0), axis=0)
    np.testing.assert_allclose(scale * est.coef_[1:], scale * ref.coef_, rtol=0,
                               atol=1e-11 * np.abs(scale * ref.coef_).max())
    np.testing.assert_allclose(est.predict(X1), ref.predict(X0), rtol=0, atol=1e-11 * np.abs(y).max())


@pytest.mark.parametrize("offset", [1.0, 5.0, 100.0])
def test_wide_rows_with_offset_columns_give_the_minimum_norm_fit(offset):
    # 30 rows centred on their mean span 29 directions: the centring's rounding (about eps |mean| sqrt(n)) was kept
    # as a 30th singular value, rank_ 30, and the coefficients 8% (offset 5) to 36% (offset 100) off the minimum
    # norm. Reference: centred in extended precision, the rank-29 pseudo-inverse.
    rng = np.random.default_rng(1)
    n, d = 30, 60
    U, _ = np.linalg.qr(rng.normal(size=(n, n)))
    V, _ = np.linalg.qr(rng.normal(size=(d, n)))
    y = rng.normal(size=n)
    X = (U * np.logspace(0, -1, n)) @ V.T + offset  # singular values 1 .. 0.1 before centring
    XL = X.astype(np.longdouble)
    Uc, s, Vt = np.linalg.svd((XL - XL.mean(axis=0)).astype(np.float64), full_matrices=False)
    ref = Vt[: n - 1].T @ ((Uc[:, : n - 1].T @ (y - y.mean())) / s[: n - 1])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RankDeficientWarning)
        est = LinearRegressor().fit(X, y)
    assert est.rank_ == n - 1
    # condition 10 on the retained directions: a few hundred ulps of the largest coefficient
    np.testing.assert_allclose(est.coef_, ref, rtol=0, atol=1e-13 * np.abs(ref).max())


@pytest.mark.parametrize("solver", ["normal", "qr"])
def test_weights_too_far_apart_for_the_statistics_are_named(solver):
    # One weight of 1e306 among ones: the lighter rows' weighted squares underflow beside it. The error blamed
    # "X column 0" of unit normal values and advised rescaling X, which the in-memory fit had just done itself.
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 4))
    y = X @ rng.normal(size=4) + 3
    with pytest.raises(ValueError, match=r"sample_weight spans too wide a range .* \(from 1 to 1e\+306\)"):
        LinearRegressor(solver=solver).fit(X, y, sample_weight=np.r_[np.ones(299), 1e306])
    # weights spread widely but within float64's reach of each other fit as scaled ones do
    w = 1e300 * rng.uniform(1, 1e6, 300)
    np.testing.assert_allclose(LinearRegressor(solver=solver).fit(X, y, sample_weight=w).coef_,
                               LinearRegressor(solver=solver).fit(X, y, sample_weight=w / w.max()).coef_, rtol=1e-12)


@pytest.mark.parametrize("calls", [1, 2])
def test_partial_fit_on_one_hot_csr_takes_the_pivoted_path_as_fit_does(calls):
    # The first call went to the eigensolve (no pivoted attempt before it): an IllConditionedWarning of a
    # reciprocal condition of 1e-18 and solver_="eigh", where fit on the same rows names the rank
    # (RankDeficientWarning, "pivoted_cholesky"); later calls then continued on the eigensolve too
    from sklearn.preprocessing import OneHotEncoder

    rng = np.random.default_rng(0)
    X = OneHotEncoder().fit_transform(rng.integers(0, 30, (2000, 2))).tocsr()
    y = rng.standard_normal(2000)
    est = LinearRegressor(solver="normal")
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        for rows in np.array_split(np.arange(2000), calls):
            est.partial_fit(X[rows], y[rows])
    assert {w.category for w in record} == {RankDeficientWarning}
    assert est.solver_ == "pivoted_cholesky" and est.rank_ == 58
    whole = LinearRegressor(solver="normal").fit(X, y)
    np.testing.assert_allclose(est.coef_, whole.coef_, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(est.intercept_, whole.intercept_, rtol=1e-12)


# ---------------------------------------------------------------- fewer rows than columns: the kernel form


def _wide_reference(X, Y, w, alpha, fit_intercept):
    """The ridge (or, with alpha 0, minimum-norm least-squares) coefficients by NumPy's SVD-based lstsq on the
    centred, weighted rows augmented with sqrt(W alpha) I: no squared condition number."""
    n, d = X.shape
    w = np.ones(n) if w is None else w
    W = w.sum()
    mx, my = (w @ X / W, w @ Y / W) if fit_intercept else (np.zeros(d), np.zeros(Y.shape[1]))
    root = np.sqrt(w)[:, None]
    out = np.empty((Y.shape[1], d))
    for j, a in enumerate(np.broadcast_to(alpha, (Y.shape[1],))):
        A = np.vstack([root * (X - mx), np.sqrt(W * a) * np.eye(d)])
        out[j] = np.linalg.lstsq(A, np.r_[root[:, 0] * (Y[:, j] - my[j]), np.zeros(d)], rcond=None)[0]
    return out


@pytest.mark.parametrize("fit_intercept", [True, False])
@pytest.mark.parametrize("weights", ["none", "spread", "zeros"])
@pytest.mark.parametrize("alpha", [1e-3, [1e-3, 1.0]])
def test_wide_ridge_solves_the_system_of_the_rows(fit_intercept, weights, alpha, rng):
    """Fewer rows than columns: the m x m kernel system (m^2 d flops where the normal equations cost m d^2 + d^3 / 3;
    1,000 x 1,326 quadratic features with a ridge took the pivoted path, 565 ms against Ridge's 76). The answer is
    the ridge solution, to the accuracy of a Cholesky solve of that system: its condition number here is below 40,
    so cond * m * eps is below 1e-12; the reference's own error is of the order of eps."""
    n, d = 60, 200
    X = rng.standard_normal((n, d)) + 3.0
    Y = X[:, :5] @ rng.standard_normal((5, 2)) + 0.1 * rng.standard_normal((n, 2))
    w = {"none": None, "spread": np.exp(rng.standard_normal(n)),
         "zeros": np.where(rng.random(n) < 0.3, 0.0, rng.uniform(0.5, 2.0, n))}[weights]
    before = X.copy(), Y.copy(), None if w is None else w.copy()
    est = LinearRegressor(alpha=np.asarray(alpha), fit_intercept=fit_intercept).fit(X, Y, sample_weight=w)
    assert est.solver_ == "kernel_cholesky" and est.rank_ == d
    ref = _wide_reference(X, Y, w, np.asarray(alpha), fit_intercept)
    np.testing.assert_allclose(est.coef_, ref, rtol=0, atol=1e-11 * np.abs(ref).max())
    if fit_intercept:
        ww = np.ones(n) if w is None else w
        np.testing.assert_allclose(est.intercept_, ww @ (Y - X @ ref.T) / ww.sum(), rtol=1e-11)
    else:
        assert np.all(est.intercept_ == 0.0)
    for a, b in zip(before, (X, Y, w)):  # the caller's arrays untouched
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(  # solver="normal" takes it too; solver="qr" keeps to QR
        LinearRegressor(solver="normal", alpha=np.asarray(alpha), fit_intercept=fit_intercept)
        .fit(X, Y, sample_weight=w).coef_, est.coef_)
    qr = LinearRegressor(solver="qr", alpha=np.asarray(alpha), fit_intercept=fit_intercept).fit(X, Y, sample_weight=w)
    assert qr.solver_ == "qr"


def test_wide_float32_ridge_is_the_float64_answer_rounded(rng):
    X = rng.standard_normal((50, 120)).astype(np.float32)
    y = (X[:, :3].sum(axis=1) + 0.1 * rng.standard_normal(50)).astype(np.float32)
    est = LinearRegressor(alpha=1e-2).fit(X, y)
    assert est.solver_ == "kernel_cholesky" and est.coef_.dtype == np.float32
    ref = LinearRegressor(alpha=1e-2).fit(X.astype(np.float64), y.astype(np.float64))
    np.testing.assert_array_equal(est.coef_, ref.coef_.astype(np.float32))  # computed in float64, rounded once


@pytest.mark.parametrize("fit_intercept", [True, False])
def test_wide_least_squares_without_a_ridge_is_the_minimum_norm_solution(fit_intercept, rng):
    """alpha=0: the same equations give lstsq's minimum-norm solution where the (centred) rows are independent;
    with an intercept the centring's null vector sqrt(w) is lifted. The answer is qualified, as the SVD path's
    was on these designs: one RankDeficientWarning, naming the rows."""
    n, d = 40, 150
    X = rng.standard_normal((n, d)) + 2.0
    y = X[:, :4].sum(axis=1) + 0.1 * rng.standard_normal(n)
    with pytest.warns(RankDeficientWarning, match=f"rank {n - fit_intercept} of {d} columns; {n} rows of positive"):
        est = LinearRegressor(fit_intercept=fit_intercept).fit(X, y)
    assert est.solver_ == "kernel_cholesky" and est.rank_ == n - fit_intercept
    ref = _wide_reference(X, y[:, None], None, 0.0, fit_intercept)[0]
    np.testing.assert_allclose(est.coef_, ref, rtol=0, atol=1e-11 * np.abs(ref).max())
    np.testing.assert_allclose(est.predict(X), y, rtol=0, atol=1e-10 * np.abs(y).max())  # it interpolates


def test_wide_constant_column_beside_the_intercept_gets_coefficient_zero(rng):
    X = rng.standard_normal((30, 80))
    X[:, 5] = 0.1
    y = X[:, 0] + 0.1 * rng.standard_normal(30)
    est = LinearRegressor(alpha=1e-3).fit(X, y)
    assert est.solver_ == "kernel_cholesky" and est.coef_[5] == 0.0
    ref = LinearRegressor(alpha=1e-3).fit(np.delete(X, 5, axis=1), y)
    np.testing.assert_allclose(np.delete(est.coef_, 5), ref.coef_, rtol=0, atol=1e-12 * np.abs(ref.coef_).max())


def test_wide_fit_with_dependent_rows_falls_back_to_the_svd(rng):
    """Repeated rows leave the (lifted) kernel system singular without a ridge: Cholesky is rejected and the fit
    takes the QR pass and the SVD, as before."""
    X = np.tile(rng.standard_normal((20, 60)), (2, 1))
    y = np.tile(rng.standard_normal(20), 2)
    with pytest.warns(RankDeficientWarning):
        est = LinearRegressor().fit(X, y)
    assert est.solver_ == "svd" and est.rank_ == 19


def test_partial_fit_after_a_wide_fit_goes_on_from_its_rows(rng):
    """The kernel form keeps the centred weighted rows (no d x d statistics); partial_fit triangularises them and
    adds the new rows: the answer is the fit of all the rows."""
    X = rng.standard_normal((150, 100))
    y = X[:, :3].sum(axis=1) + 0.1 * rng.standard_normal(150)
    w = rng.uniform(0.5, 2.0, 150)
    est = LinearRegressor(alpha=1e-2).fit(X[:60], y[:60], sample_weight=w[:60])
    assert est.solver_ == "kernel_cholesky"
    est.partial_fit(X[60:], y[60:], sample_weight=w[60:])
    ref = LinearRegressor(alpha=1e-2).fit(X, y, sample_weight=w)
    np.testing.assert_allclose(est.coef_, ref.coef_, rtol=0, atol=1e-11 * np.abs(ref.coef_).max())
    np.testing.assert_allclose(est.intercept_, ref.intercept_, rtol=1e-11)
    restored = pickle.loads(pickle.dumps(LinearRegressor(alpha=1e-2).fit(X[:60], y[:60])))
    restored.partial_fit(X[60:], y[60:])
    np.testing.assert_allclose(restored.coef_, LinearRegressor(alpha=1e-2).fit(X, y).coef_, rtol=0,
                               atol=1e-11 * np.abs(ref.coef_).max())


def test_wide_fit_is_bit_identical_whatever_the_blas_threads(rng):
    X = rng.standard_normal((400, 900))
    y = X[:, :10].sum(axis=1) + rng.standard_normal(400)
    est = LinearRegressor(alpha=1e-3).fit(X, y)
    with threadpool_limits(1):
        one = LinearRegressor(alpha=1e-3).fit(X, y)
    assert est.solver_ == one.solver_ == "kernel_cholesky"
    np.testing.assert_array_equal(est.coef_, one.coef_)
    np.testing.assert_array_equal(est.intercept_, one.intercept_)


@pytest.mark.parametrize("sparse", [False, True])
@pytest.mark.parametrize("solver", ["auto", "qr"])
def test_float32_spline_bases_beside_an_intercept_are_rank_deficient_at_float32s_precision(sparse, solver):
    """SplineTransformer's bases sum to one in every row; rounded to float32 the sum is broken at 1.8e-8 of the
    largest scaled singular value, far below what float32 data resolves (eps32 sqrt(d) = 6.5e-7 here). Judged at
    float64's cutoff, the fit took those directions as data: coefficients of 2e5 whose cancellation float32 coef_
    then lost, predictions 4e-2 of std(y) off the fit of the float64 design. At the input's precision the rank is
    the float64 design's, and the predictions are that fit's to within float32 rounding of the data (an entry's
    6e-8 relative error times coefficients of a few units over 30 columns: well below 1e-5 of std(y))."""
    import scipy.sparse as sp
    from sklearn.preprocessing import SplineTransformer
    rng = np.random.default_rng(3)
    Z = rng.uniform(0, 100, size=(2000, 3))
    y = np.sin(Z[:, 0] / 15) + (Z[:, 1] / 30) ** 2 + 0.3 * rng.normal(size=2000)
    X64 = SplineTransformer(n_knots=8).fit_transform(Z)
    X32 = X64.astype(np.float32)
    with pytest.warns(RankDeficientWarning):
        ref = LinearRegressor(solver=solver).fit(X64, y)
    with pytest.warns(RankDeficientWarning):
        est = LinearRegressor(solver=solver).fit(sp.csr_array(X32) if sparse else X32, y)
    assert est.rank_ == ref.rank_ < X64.shape[1]
    assert np.abs(est.coef_).max() < 10 * np.abs(ref.coef_).max()
    np.testing.assert_allclose(est.predict(X32), ref.predict(X64), rtol=0, atol=1e-5 * y.std())


def test_float32_columns_apart_by_more_than_their_rounding_keep_their_signal():
    """Columns sharing one component, apart by 1e-5 (stored to about 1e-2 in float32), leave a smallest scaled
    singular value of 1.1e-6: real data, above float32's rounding of the design, eps32 (1 + sqrt(d / n)) = 1.5e-7
    here. The worst-case bound eps32 sqrt(d) = 1.3e-6 dropped it (training RMSE 17 times the float64 fit's on a larger
    design). The float32 fit keeps full rank and fits as the float64 fit of the same values does."""
    rng = np.random.default_rng(0)
    n, d, m = 2000, 120, 60
    Z = rng.standard_normal((n, d))
    X = Z.copy()
    X[:, :m] = rng.standard_normal((n, 1)) + 1e-5 * Z[:, :m]
    y = Z[:, :m] @ rng.standard_normal(m) / np.sqrt(m) + 0.05 * rng.standard_normal(n)
    X32 = X.astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no RankDeficientWarning
        est = LinearRegressor().fit(X32, y)
    ref = LinearRegressor().fit(X32.astype(np.float64), y)
    assert est.rank_ == d
    rmse = np.sqrt(np.mean((y - est.predict(X32)) ** 2))
    assert rmse < 1.1 * np.sqrt(np.mean((y - ref.predict(X32.astype(np.float64))) ** 2))


def test_a_full_rank_float32_design_sent_to_the_svd_by_its_1_norm_estimate_does_not_warn(rng):
    """R11's 1-norm rcond estimate can lie up to d times below its 2-norm one: a full-rank design may reach the SVD,
    which then keeps every direction. No RankDeficientWarning (it read "rank 300 of 300")."""
    n, d = 3000, 300
    U = np.linalg.qr(rng.standard_normal((n, d)))[0]
    V = np.linalg.qr(rng.standard_normal((d, d)))[0]
    X = ((U * np.logspace(0, np.log10(2e-7), d)) @ V.T * np.sqrt(n)).astype(np.float32)
    y = X.astype(np.float64) @ rng.standard_normal(d) + rng.standard_normal(n)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        est = LinearRegressor(solver="qr").fit(X, y)
    assert est.rank_ == d


@pytest.mark.parametrize("sx, sy", [(1e-155, 1.0), (1e-157, 1e-10), (1e-100, 1e110)])
def test_a_wide_fit_of_tiny_x_beside_large_y_takes_the_rescaling_paths(sx, sy):
    """Rows whose squares leave float64's range, or a dual vector a ~ y / |x|^2 that overflows where the coefficients
    ~ y / |x| do not: the kernel form raised ValueError (or returned NaN) where the d x d paths rescale and answer.
    Now it hands over to them; lstsq's minimum-norm answer to rounding (the design's condition is modest)."""
    rng = np.random.default_rng(1)
    X = (rng.standard_normal((40, 120)) + 1) * sx
    y = ((rng.standard_normal((40, 120)) + 1)[:, :3].sum(axis=1) + 0.1 * rng.standard_normal(40)) * sy
    ref = np.linalg.lstsq(X - X.mean(axis=0), y - y.mean(), rcond=None)[0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RankDeficientWarning)
        est = LinearRegressor().fit(X, y)
    np.testing.assert_allclose(est.coef_, ref, rtol=0, atol=1e-12 * np.abs(ref).max())


def test_a_wide_fit_of_denormal_y_takes_the_rescaling_paths():
    """y * 1e-318 beside ordinary X: one range check over X and y together let the kernel form solve with y's
    denormal digits, 6.6e-5 off the rescaled QR answer, silently. Each column of X and y is now judged as
    scale_trouble judges the d x d paths' statistics, and the fit is the rescaled one (QR's to rounding)."""
    rng = np.random.default_rng(1)
    X = rng.standard_normal((40, 120)) + 1
    y = (X[:, :3].sum(axis=1) + 0.1 * rng.standard_normal(40)) * 1e-318
    est = LinearRegressor(alpha=1e-3).fit(X, y)
    ref = LinearRegressor(alpha=1e-3, solver="qr").fit(X, y)
    np.testing.assert_allclose(est.coef_, ref.coef_, rtol=0, atol=1e-12 * np.abs(ref.coef_).max())
