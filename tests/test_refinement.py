"""Extra-precise iterative refinement of small closed-form fits (fastopt._closed_form._refined).

The residual kernel is checked against its twin (bit for bit) and against exact rational arithmetic; refined fits
against exact rational least squares. Its effect on the NIST StRD datasets is in tests/test_nist.py.
"""
from fractions import Fraction

import numpy as np
import pytest
import scipy.sparse
from hypothesis import given, settings
from hypothesis import strategies as st

from fastopt import LinearRegressor, _closed_form, _kernels, _reference

EPS = np.finfo(np.float64).eps


def _near_fit(rng, n, d, k, weighted):
    """Data whose residuals cancel all but a few of y's digits: y = 100 + X b + 1e-6 noise, with |X| ~ 1e3."""
    X = 1e3 * rng.normal(size=(n, d))
    coef = rng.normal(size=(k, d))
    intercept = 100.0 + rng.normal(size=k)
    Y = intercept + X @ coef.T + 1e-6 * rng.normal(size=(n, k))
    w = rng.uniform(0.5, 2.0, size=n) if weighted else None
    return X, Y, w, coef, intercept


def _both(X, Y, w, coef, intercept):
    out = []
    for impl in (_kernels, _reference):
        grad, rsum = np.full(coef.shape, np.nan), np.full(coef.shape[0], np.nan)
        impl.refine_residual(X, Y, w, coef, intercept, grad, rsum)
        out.append((grad, rsum))
    return out


@settings(max_examples=25, deadline=None)
@given(n=st.integers(0, 40), d=st.integers(1, 6), k=st.integers(1, 3), weighted=st.booleans(),
       seed=st.integers(0, 2**32 - 1))
def test_kernel_and_twin_agree_bit_for_bit(n, d, k, weighted, seed):
    X, Y, w, coef, intercept = _near_fit(np.random.default_rng(seed), n, d, k, weighted)
    X.flags.writeable = False  # the kernel takes const views
    (g1, s1), (g2, s2) = _both(X, Y, w, coef, intercept)
    np.testing.assert_array_equal(g1, g2)
    np.testing.assert_array_equal(s1, s2)


@pytest.mark.parametrize("weighted", [False, True])
def test_residual_sums_are_exact_to_the_rounding_of_each_residual(weighted):
    rng = np.random.default_rng(3)
    X, Y, w, coef, intercept = _near_fit(rng, 30, 4, 2, weighted)
    grad, rsum = _both(X, Y, w, coef, intercept)[0]
    wf = [Fraction(1)] * 30 if w is None else [Fraction(v) for v in w]
    for j in range(2):
        r = [Fraction(Y[i, j]) - Fraction(intercept[j]) - sum(Fraction(X[i, c]) * Fraction(coef[j, c])
                                                            for c in range(4)) for i in range(30)]
        u = [wi * ri for wi, ri in zip(wf, r)]
        # Each residual is rounded once to float64 and multiplied by its weight (relative error 2 eps); the
        # compensated sums add O(n eps^2) of the sum of magnitudes, and the result is rounded once (eps).
        exact_s = sum(u)
        bound_s = 2.5 * EPS * float(sum(abs(v) for v in u)) + EPS * abs(float(exact_s))
        assert abs(rsum[j] - float(exact_s)) <= bound_s
        for col in range(4):
            terms = [ui * Fraction(X[i, col]) for i, ui in enumerate(u)]
            exact = sum(terms)
            bound = 2.5 * EPS * float(sum(abs(t) for t in terms)) + EPS * abs(float(exact))
            assert abs(grad[j, col] - float(exact)) <= bound
            # float64 evaluation of the residual loses y's magnitude (1e2-1e4) against residuals of 1e-6: the
            # bound above is far below that rounding, so it tells the kernel's arithmetic from float64's.
            naive = np.sum((w if w is not None else 1.0) * (Y[:, j] - intercept[j] - X @ coef[j]) * X[:, col])
            assert abs(naive - float(exact)) > 10 * bound


@pytest.mark.parametrize("solver", ["normal", "qr"])
@pytest.mark.parametrize("fit_intercept", [True, False])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("alpha", [0.0, 0.3])
def test_refined_fit_is_the_exact_answer_to_a_few_ulps(solver, fit_intercept, weighted, alpha, exact_least_squares):
    # Offset, mildly correlated columns and a near-exact fit: float64 residuals cancel ~6 of y's digits, which
    # unrefined QR and Cholesky carry into the coefficients (checked below, so the test can tell them apart).
    rng = np.random.default_rng(11)
    n, d = 40, 3
    X = 50.0 + rng.normal(size=(n, d)) @ np.array([[1.0, 0.5, 0.0], [0.0, 1.0, 0.5], [0.0, 0.0, 1.0]])
    Y = np.column_stack([7.0 + X @ [1.5, -2.0, 0.25], -3.0 + X @ [0.5, 1.0, -1.0]]) + 1e-4 * rng.normal(size=(n, 2))
    w = rng.integers(1, 5, size=n).astype(float) if weighted else None
    b0, B = exact_least_squares(X, Y, w, alpha, fit_intercept)
    est = LinearRegressor(solver=solver, alpha=alpha, fit_intercept=fit_intercept).fit(X, Y, sample_weight=w)
    assert est.solver_ in ("cholesky", "qr")
    # After one step with residuals in twice the working precision, what is left is the final rounding of each
    # coefficient (half an ulp) plus the error of the correction, itself about kappa * eps (kappa ~ 1e2 here) of
    # a correction of a few tens of ulps: within 2 ulps of the largest coefficient. Unrefined fits of this data
    # miss by up to 28 ulps (coefficients, no intercept) and 39 ulps (intercepts); with alpha = 0.3 by 1-5.
    scale = np.abs(B).max()
    np.testing.assert_allclose(est.coef_, B, rtol=0, atol=2 * EPS * scale)
    np.testing.assert_allclose(est.intercept_, b0, rtol=0, atol=2 * EPS * np.abs(b0).max())


def test_refinement_is_what_brings_the_answer_there(monkeypatch, exact_least_squares):
    rng = np.random.default_rng(11)
    X = 1e4 + rng.normal(size=(40, 3))
    y = 2.0 + X @ [1.5, -2.0, 0.25] + 1e-8 * rng.normal(size=40)
    _, B = exact_least_squares(X, y[:, None])
    refined = LinearRegressor(solver="qr").fit(X, y).coef_
    monkeypatch.setattr(_closed_form, "REFINE_MAX_ENTRIES", 0)
    plain = LinearRegressor(solver="qr").fit(X, y).coef_
    err_refined, err_plain = np.abs(refined - B[0]).max(), np.abs(plain - B[0]).max()
    assert err_refined <= 4 * EPS * 2.0
    assert err_plain > 16 * err_refined


def test_large_fits_are_not_refined(monkeypatch):
    def refuse(*args):
        raise AssertionError("refine_residual called above REFINE_MAX_ENTRIES")

    monkeypatch.setattr(_kernels, "refine_residual", refuse)
    rng = np.random.default_rng(0)
    n = _closed_form.REFINE_MAX_ENTRIES // 4 + 1  # (d + k) * n just above the limit
    X = rng.normal(size=(n, 3))
    LinearRegressor(solver="qr").fit(X, X @ [1.0, 2.0, 3.0])
    with pytest.raises(AssertionError, match="REFINE_MAX_ENTRIES"):
        LinearRegressor(solver="qr").fit(X[: n - 2], X[: n - 2] @ [1.0, 2.0, 3.0])


def test_sparse_and_dense_small_fits_are_refined_alike():
    rng = np.random.default_rng(5)
    X = scipy.sparse.random(200, 6, density=0.4, random_state=rng, format="csr") * 1e3
    y = 9.0 + X @ rng.normal(size=6) + 1e-6 * rng.normal(size=200)
    dense = LinearRegressor(solver="qr").fit(X.toarray(), y)
    sparse = LinearRegressor(solver="qr").fit(X, y)
    np.testing.assert_array_equal(sparse.coef_, dense.coef_)


def test_float32_and_constrained_fits_are_left_alone(monkeypatch):
    def refuse(*args):
        raise AssertionError("refined")

    monkeypatch.setattr(_kernels, "refine_residual", refuse)
    rng = np.random.default_rng(0)
    X = rng.normal(size=(50, 3))
    y = X @ [1.0, 2.0, 3.0]
    LinearRegressor().fit(X.astype(np.float32), y.astype(np.float32))
    LinearRegressor(positive=True).fit(X, y)
    LinearRegressor(alpha=np.array([0.1, 0.2])).fit(X, np.column_stack([y, y]))


@pytest.mark.parametrize("solver", ["normal", "qr"])
@pytest.mark.parametrize("alpha", [1e-14, 1e-8, 1e-4])
@pytest.mark.parametrize("column", ["round-off", "exact"])
def test_a_column_taken_as_constant_stays_at_zero_through_the_refinement(solver, alpha, column):
    # The solve takes a column constant to round-off (spread below CONSTANT_RTOL of its mean) as exactly constant:
    # coefficient 0, with a ridge too. The refinement's gradient there is the spread the solve set aside, which the
    # factor's diagonal W alpha turned into a coefficient of 1 / alpha (9e5 at 1e-8; MSE 7.9e7 for the
    # 0.0103 of the other column's fit), and an exactly constant column into 1e-10 at 1e-14.
    rng = np.random.default_rng(5)
    z, x = rng.normal(size=200), rng.normal(size=200)
    first = 1e12 + 0.01 * z if column == "round-off" else np.full(200, 1e6 / 3)
    y = z + x + 0.1 * rng.normal(size=200)
    fit = LinearRegressor(solver=solver, alpha=alpha).fit(np.column_stack([first, x]), y)
    alone = LinearRegressor(solver=solver, alpha=alpha).fit(x[:, None], y)
    assert fit.coef_[0] == 0.0
    # the same well-conditioned one-column ridge (both refined): agreement to a few ulps
    np.testing.assert_allclose(fit.coef_[1:], alone.coef_, rtol=8 * EPS)
    np.testing.assert_allclose(fit.intercept_, alone.intercept_, rtol=8 * EPS)
