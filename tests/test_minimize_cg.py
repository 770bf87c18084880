"""fastopt.minimize(method="cg"): Polak-Ribiere+ nonlinear CG against scipy.optimize.minimize(method="CG")."""
import warnings

import numpy as np
import pytest
import scipy.optimize

from fastopt.__main__ import main as cli
from fastopt.functions import BEALE, ROSENBROCK, ill_conditioned_quadratic
from fastopt.minimize import Status, _NonlinearCG, minimize


def _both(obj, x0, gtol):
    ours = minimize(obj.fun, x0, jac=obj.grad, method="cg", options={"gtol": gtol, "maxiter": 10_000})
    ref = scipy.optimize.minimize(obj.fun, x0, jac=obj.grad, method="CG", options={"gtol": gtol, "maxiter": 10_000})
    return ours, ref


def test_rosenbrock_like_scipy():
    ours, ref = _both(ROSENBROCK, ROSENBROCK.x0, 1e-6)
    assert ours.success and ours.status == Status.GTOL and ref.success
    assert np.abs(ours.jac).max() <= 1e-6
    # |x - x*| <= |H^-1| |g| with the Hessian's smallest eigenvalue about 0.4 at (1, 1).
    np.testing.assert_allclose(ours.x, [1.0, 1.0], atol=1e-5)
    # Same method and line-search constants: comparable work (measured: 31 iterations and 87 evaluations of
    # f and g at gtol = 1e-6, SciPy 37 and 80; its MINPACK line search is a little more frugal elsewhere).
    assert ours.nit <= 1.5 * ref.nit
    assert ours.nfev <= 1.5 * ref.nfev and ours.njev <= 1.5 * ref.njev
    assert ours.nfev == ours.njev  # every trial point evaluates f and g once


@pytest.mark.parametrize("kappa", [25.0, 1e3])
def test_ill_conditioned_quadratic(kappa):
    obj = ill_conditioned_quadratic(kappa)
    ours, ref = _both(obj, obj.x0, 1e-8)
    assert ours.success and ref.success
    # Exact line searches would finish in n = 2 iterations; strong-Wolfe steps need a few more.
    assert ours.nit <= 10 and ours.nfev <= 25
    assert np.abs(ours.x).max() <= 1e-8  # the minimiser is 0; |x| <= |g| / lambda_min = |g|
    assert abs(ours.fun - ref.fun) <= 1e-14


def test_ill_conditioned_quadratics_of_few_variables_reach_gtol_as_often_as_scipys_cg():
    # 5 variables, eigenvalues 1 to 1e6 in a random basis: f's rounding (terms of 1e5 beside a decrease of
    # 1e-8 near the end) and inexact line searches cost conjugacy. A restart every n = 5 iterations (the former
    # default) reached gtol on 1 of these 40 and stopped at a failed line search on the rest (max |g| up to
    # 1e-2); without it, and with the approximate Wolfe steps where f's decrease is below its rounding, on 24.
    # SciPy's CG reaches it on 22 (the rest "precision loss", as ours end by the line search).
    rng = np.random.default_rng(0)
    ours, scipys = [], []
    for _ in range(40):
        Q, _ = np.linalg.qr(rng.normal(size=(5, 5)))
        A = Q * np.geomspace(1, 1e6, 5) @ Q.T
        A = (A + A.T) / 2
        b, x0 = rng.normal(size=5), rng.normal(size=5)
        def f(x, A=A, b=b):
            return 0.5 * x @ A @ x - b @ x
        def g(x, A=A, b=b):
            return A @ x - b
        res = minimize(f, x0, jac=g, method="cg", options={"maxiter": 5000})
        ref = scipy.optimize.minimize(f, x0, jac=g, method="CG", options={"maxiter": 5000})
        assert res.success or res.status == Status.LINE_SEARCH
        ours.append((res.success, np.abs(g(res.x)).max()))
        scipys.append((ref.success, np.abs(g(ref.x)).max()))
    assert sum(s for s, _ in ours) >= sum(s for s, _ in scipys)
    # the misses (each solver's on other problems) end alike: the largest gradients left within 2x of each other
    assert max(r for _, r in ours) <= 2 * max(r for _, r in scipys)


def test_beale_reaches_the_minimum():
    ours, ref = _both(BEALE, BEALE.x0, 1e-6)
    assert ours.success
    np.testing.assert_allclose(ours.x, ref.x, atol=1e-4)
    np.testing.assert_allclose(ours.x, BEALE.global_minimum.x, atol=1e-4)


def test_restart_option_and_path():
    res = minimize(ROSENBROCK.fun, ROSENBROCK.x0, jac=ROSENBROCK.grad, method="cg",
                   options={"restart": 1, "return_path": True, "maxiter": 20_000, "gtol": 1e-5})
    # restart=1 is steepest descent with a line search: it still converges, slowly.
    assert res.success and res.nit > 100
    assert res.xs.shape == (res.nit + 1, 2) and res.fs[-1] == res.fun
    # sufficient decrease makes f monotone, up to the approximate-Wolfe steps' allowance where f's decrease is
    # below its rounding
    assert np.all(np.diff(res.fs) <= _NonlinearCG.APPROX_WOLFE_EPS * np.abs(res.fs[:-1]))


def test_line_search_failure_is_reported():
    # A gradient that points the wrong way: no step along -g decreases f.
    res = minimize(lambda x: float(x @ x), np.ones(2), jac=lambda x: -2 * x, method="cg")
    assert res.status == Status.LINE_SEARCH and not res.success and "Wolfe" in res.message


@pytest.mark.parametrize("options, match", [
    ({"c1": 0.5, "c2": 0.4}, "0 < c1 < c2 < 1"),
    ({"restart": 0}, "restart"),
    ({"momentum": 0.9}, "unknown option"),
])
def test_bad_options(options, match):
    with pytest.raises(ValueError, match=match):
        minimize(ROSENBROCK.fun, ROSENBROCK.x0, jac=ROSENBROCK.grad, method="cg", options=options)


def test_finite_difference_gradient():
    res = minimize(ROSENBROCK.fun, ROSENBROCK.x0, method="cg", options={"gtol": 1e-4})
    # every trial point: one differenced gradient (njev, as SciPy) from f(x) and 2 forward probes (nfev)
    assert res.success and res.nfev == 3 * res.njev
    np.testing.assert_allclose(res.x, [1.0, 1.0], atol=1e-3)


def test_cli_landscape_and_plot_accept_cg(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    png = tmp_path / "rb.png"
    assert cli(["landscape", "rosenbrock", "--methods", "adam", "cg", "--output", str(png)]) == 0
    out = capsys.readouterr().out
    row = next(line.split() for line in out.splitlines() if line.strip().startswith("cg "))
    assert row[-1] == "gtol" and row[-2] == "minimum"  # "global minimum"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_line_with_no_cubic_minimiser_extrapolates_instead_of_dividing_by_zero():
    # Along Huber's linear tail f' is the same at both ends of a trial interval: the cubic's denominator is exactly
    # 0 (Python floats raised ZeroDivisionError); it has no minimiser, so the search extrapolates, as intended.
    f = lambda x: float(np.sum(np.where(np.abs(x) <= 1, 0.5 * x**2, np.abs(x) - 0.5)))  # noqa: E731
    res = minimize(f, [10.0], jac=lambda x: np.clip(x, -1.0, 1.0), method="cg")
    assert res.success and res.status == Status.GTOL and abs(res.x[0]) < 1e-8
    with np.errstate(over="ignore"):  # (-x**2 overflows as the search follows it down)
        concave = minimize(lambda x: -x[0] ** 2, [1.0], jac=lambda x: -2 * x, method="cg")  # unbounded: no crash
    assert not concave.success and abs(concave.x[0]) > 1e100


@pytest.mark.parametrize("case", ["linear", "cubic"])
def test_a_function_unbounded_below_is_followed_down_not_left_at_x0(case):
    # No step meets the curvature condition where f falls ever faster (or at a constant rate): the search ran out
    # of trials and CG stopped at x0 with "precision loss" (SciPy's CG goes on down). It now takes the lowest
    # trial of sufficient decrease it found.
    if case == "linear":
        res = minimize(lambda x: -x[0] - x[1], [0.0, 0.0], jac=lambda x: -np.ones(2), method="cg")
        assert res.status == Status.MAXITER and res.fun < -1e6 and np.all(res.x > 1e5)
    else:
        with np.errstate(over="ignore"):  # (x**3 overflows as the search follows it down)
            res = minimize(lambda x: x[0] ** 3, [1.0], jac=lambda x: 3 * x**2, method="cg")
        assert not res.success and res.x[0] < -1e50 and res.nit > 1


def test_a_gradient_near_1e200_takes_cg_steps_without_overflow():
    # g . p overflowed to -inf: no step met the sufficient decrease and CG stopped at x0, after NumPy's overflow
    # warning from the gradient's norm
    c = 1e200
    f = lambda x: c * float(np.sum(np.tanh(x) ** 2))  # noqa: E731
    jac = lambda x: c * 2 * np.tanh(x) * (1 - np.tanh(x) ** 2)  # noqa: E731
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        res = minimize(f, [0.5, -0.3], jac=jac, method="cg")
    assert res.nit > 10 and np.all(np.abs(res.x) < 1e-50)
