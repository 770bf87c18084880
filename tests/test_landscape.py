"""Numerical derivatives, the critical-point classifier and search, conditioning."""
import warnings

import numpy as np
import pytest

from fastopt import landscape
from fastopt.functions import FUNCTIONS


def _smooth(x):
    return np.exp(0.3 * x[0]) * np.sin(x[1]) + x[0] ** 2 * x[1] ** 3


def _smooth_grad(x):
    return np.array([0.3 * np.exp(0.3 * x[0]) * np.sin(x[1]) + 2 * x[0] * x[1] ** 3,
                     np.exp(0.3 * x[0]) * np.cos(x[1]) + 3 * x[0] ** 2 * x[1] ** 2])


def _smooth_hess(x):
    e = np.exp(0.3 * x[0])
    hxy = 0.3 * e * np.cos(x[1]) + 6 * x[0] * x[1] ** 2
    return np.array([[0.09 * e * np.sin(x[1]) + 2 * x[1] ** 3, hxy], [hxy, -e * np.sin(x[1]) + 6 * x[0] ** 2 * x[1]]])


@pytest.mark.parametrize("x", [[0.4, -1.3], [25.0, 0.7], [-3e-3, 2e-3]])
def test_gradient_accuracy_matches_the_step_analysis(x):
    x = np.array(x)
    exact = _smooth_grad(x)
    scale = max(1.0, abs(_smooth(x))) * max(1.0, np.abs(x).max())
    eps = np.finfo(float).eps
    # Central: error about eps**(2/3) of the scale; forward: about sqrt(eps). Margins of 100.
    np.testing.assert_allclose(landscape.gradient(_smooth, x), exact, rtol=0, atol=100 * eps ** (2 / 3) * scale)
    np.testing.assert_allclose(landscape.gradient(_smooth, x, scheme="2-point"), exact, rtol=0,
                               atol=100 * eps ** 0.5 * scale * max(1, np.abs(x).max()))


def test_hessian_from_values_and_from_gradients():
    x = np.array([0.4, -1.3])
    exact = _smooth_hess(x)
    np.testing.assert_allclose(landscape.hessian(_smooth, x), exact, atol=1e-6)
    np.testing.assert_allclose(landscape.hessian(_smooth, x, jac=_smooth_grad), exact, atol=1e-9)
    H = landscape.hessian(_smooth, x)
    np.testing.assert_array_equal(H, H.T)


def test_float32_points_are_differenced_with_float32_steps():
    x = np.array([1.0, 2.0], dtype=np.float32)
    g = landscape.gradient(lambda p: np.sum(np.sin(p)), x)
    assert g.dtype == np.float32
    # float32 eps**(2/3) is 2.4e-5; a float64-sized step would drown in float32 rounding instead.
    np.testing.assert_allclose(g, np.cos([1.0, 2.0]), atol=1e-4)


def test_args_are_passed_through():
    f = lambda x, a, b: a * x[0] ** 2 + b * x[0]  # noqa: E731
    assert landscape.gradient(f, [1.0], args=(3.0, 1.0))[0] == pytest.approx(7.0)
    assert landscape.hessian(f, [1.0], args=(3.0, 1.0))[0, 0] == pytest.approx(6.0, rel=1e-6)


@pytest.mark.parametrize("analytic", [False, True], ids=["finite-differences", "analytic"])
@pytest.mark.parametrize(
    "name, x, kind",
    [
        ("risk", -0.27385268680085091, "minimum"),
        ("risk", 1.0904082219467212, "minimum"),
        ("risk", 0.27385268680085091, "maximum"),
        ("empirical_risk", 1.0169834031079085, "minimum"),
        ("cubic", 0.0, "saddle"),
        ("saddle", (0.0, 0.0), "saddle"),
        ("tanh", 4.0, "noncritical"),
        ("double_well", (-1.0, -0.5), "minimum"),
        ("double_well", (0.0, 0.0), "saddle"),
    ],
)
def test_classifier_names_the_seed_examples(name, x, kind, analytic):
    obj = FUNCTIONS[name]
    kw = {"jac": obj.grad, "hess": obj.hess} if analytic else {}
    point = landscape.classify_critical_point(obj.fun, np.atleast_1d(x), **kw)
    assert point.kind == kind, point.reason
    if kind in ("minimum", "maximum"):
        assert np.all(np.sign(point.eigenvalues) == (1 if kind == "minimum" else -1))


def test_saddle_eigenvalues_and_vectors():
    point = landscape.classify_critical_point(FUNCTIONS["saddle"].fun, np.zeros(2))
    np.testing.assert_allclose(point.eigenvalues, [-2.0, 2.0], rtol=1e-6)
    np.testing.assert_allclose(np.abs(point.eigenvectors), np.eye(2)[::-1], atol=1e-6)
    assert point.gradient_norm == 0.0 and point.value == 0.0


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_degenerate_cases_use_the_higher_order_probe(dtype):
    zero = np.zeros(2, dtype=dtype)
    classify = landscape.classify_critical_point
    assert classify(lambda x: x[0] ** 3 + x[1] ** 2, zero).kind == "saddle"
    assert classify(lambda x: x[0] ** 2 - x[1] ** 4, zero).kind == "saddle"
    # x**4 is a minimum, but a singular Hessian plus finitely many probes cannot prove it.
    point = classify(lambda x: x[0] ** 4 + x[1] ** 2, zero)
    assert point.kind == "degenerate" and "inconclusive" in point.reason


def test_tolerances_can_be_set():
    f = lambda x: x[0] ** 2 + 1e-9 * x[1] ** 2  # noqa: E731
    assert landscape.classify_critical_point(f, np.zeros(2)).kind == "degenerate"
    assert landscape.classify_critical_point(f, np.zeros(2), eig_tol=1e-12).kind == "minimum"
    near = np.array([1e-3, 0.0])  # gradient norm 2e-3
    assert landscape.classify_critical_point(f, near, eig_tol=1e-12).kind == "noncritical"
    assert landscape.classify_critical_point(f, near, eig_tol=1e-12, gtol=1e-2).kind == "minimum"


def test_search_finds_the_seed_risk_points_without_derivatives():
    obj = FUNCTIONS["risk"]
    found = landscape.find_critical_points(obj.fun, obj.bounds, n_starts=16)
    assert [p.kind for p in found] == ["minimum", "minimum", "maximum"]
    np.testing.assert_allclose([p.x[0] for p in found], [p.x[0] for p in obj.critical_points], atol=1e-7)


def test_search_rejects_bad_boxes():
    f = FUNCTIONS["saddle"].fun
    with pytest.raises(ValueError, match="low < high"):
        landscape.find_critical_points(f, [(1.0, -1.0), (0.0, 1.0)])
    with pytest.raises(ValueError, match="n_starts"):
        landscape.find_critical_points(f, [(-1.0, 1.0), (-1.0, 1.0)], n_starts=0)
    for seed in (-1, 1.5, True):  # (NumPy's own messages did not name it)
        with pytest.raises(ValueError, match="seed must be None or an integer"):
            landscape.find_critical_points(f, [(-1.0, 1.0), (-1.0, 1.0)], seed=seed)


def test_condition_number_and_largest_stable_learning_rate():
    A = np.array([[10.0, 3.0], [3.0, 2.0]])
    f = lambda x: 0.5 * x @ A @ x  # noqa: E731
    lam = np.linalg.eigvalsh(A)
    x = np.array([0.5, -0.25])
    assert landscape.condition_number(f, x) == pytest.approx(lam[1] / lam[0], rel=1e-6)
    assert landscape.max_stable_learning_rate(f, x) == pytest.approx(2 / lam[1], rel=1e-6)
    assert landscape.max_stable_learning_rate(f, x, hess=lambda _: A) == pytest.approx(2 / lam[1], rel=1e-14)
    concave = lambda x: -x @ x  # noqa: E731
    assert landscape.max_stable_learning_rate(concave, x) == np.inf
    assert landscape.condition_number(FUNCTIONS["cubic"].fun, np.zeros(1)) == np.inf


def test_gradient_norms_show_the_vanishing_gradient_of_tanh():
    path = np.array([[0.0], [2.0], [4.0]])
    norms = landscape.gradient_norms(FUNCTIONS["tanh"].fun, path)
    np.testing.assert_allclose(norms, 1 - np.tanh(path[:, 0]) ** 2, rtol=1e-8)
    assert norms[-1] < 0.0014
    with pytest.raises(ValueError, match="n_points"):
        landscape.gradient_norms(FUNCTIONS["tanh"].fun, np.zeros(3))


@pytest.mark.parametrize(
    "x, error, match",
    [([np.nan, 0.0], ValueError, "NaN"), ([[0.0, 1.0]], ValueError, "1-D"), (["a"], TypeError, "real-valued"),
     ([1j, 0.0], TypeError, "real-valued")],
)
def test_bad_points(x, error, match):
    with pytest.raises(error, match=match):
        landscape.classify_critical_point(lambda p: p @ p, np.array(x))


def test_fun_must_return_a_scalar():
    with pytest.raises(ValueError, match="scalar"):
        landscape.gradient(lambda p: p, np.zeros(2))
    with pytest.raises(ValueError, match="shape"):
        landscape.classify_critical_point(lambda p: p @ p, np.zeros(2), hess=lambda p: np.eye(3))


@pytest.mark.parametrize("call, error, match", [
    # NaN values, gradients or Hessians came back as inf condition numbers and stable rates, "degenerate" points
    (lambda: landscape.condition_number(lambda x: float("nan"), [1.0, 2.0]), landscape.NonFiniteError, "fun"),
    (lambda: landscape.max_stable_learning_rate(lambda x: x[0] ** 2, [1.0], hess=lambda x: np.array([[np.nan]])),
     landscape.NonFiniteError, "Hessian"),
    (lambda: landscape.classify_critical_point(lambda x: float("nan"), [1.0, 2.0]), landscape.NonFiniteError, "fun"),
    (lambda: landscape.classify_critical_point(lambda x: float(x @ x), [0.0, 0.0], jac=lambda x: np.array([np.nan, 0])),
     landscape.NonFiniteError, "jac"),
    (lambda: landscape.classify_critical_point(lambda x: float(x @ x), [0.0, 0.0], jac=lambda x: 0.0),
     ValueError, "jac returned shape"),
    # a negative gtol called the minimum "noncritical"; NaN tolerances were taken
    (lambda: landscape.classify_critical_point(lambda x: float(x @ x), [0.0, 0.0], gtol=-1.0), ValueError, "gtol"),
    (lambda: landscape.classify_critical_point(lambda x: float(x @ x), [0.0, 0.0], eig_tol=float("nan")),
     ValueError, "eig_tol"),
    (lambda: landscape.max_stable_learning_rate(lambda x: 0.0, []), ValueError, "at least one coordinate"),
    (lambda: landscape.find_critical_points(lambda x: float(x @ x), [(-1, 1)], n_starts=1.5), ValueError, "n_starts"),
    (lambda: landscape.find_critical_points(lambda x: float(x @ x), [(-1, 1)], n_starts=2**40), ValueError,
     "n_starts"),
])
def test_bad_input_to_the_diagnostics_is_a_clear_error(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_find_critical_points_skips_starts_that_leave_the_finite_region():
    # log(x0) is NaN left of 0: a root finding that wanders there is skipped, not an error
    def fun(x):
        with np.errstate(invalid="ignore"):
            return float(np.log(x[0]) ** 2 + x[1] ** 2)

    points = landscape.find_critical_points(fun, [(0.1, 3.0), (-1.0, 1.0)], n_starts=16)
    assert [p.kind for p in points] == ["minimum"]
    np.testing.assert_allclose(points[0].x, [1.0, 0.0], atol=1e-6)


def test_find_critical_points_skips_a_root_whose_probe_leaves_the_finite_region():
    # (x - 0.005)^4 is a degenerate minimum 0.004 from where log turns NaN: the higher-order probe steps past that
    # edge, and its NonFiniteError ended the whole search, losing the regular root at 0.8 too
    def fun(x):
        with np.errstate(invalid="ignore", divide="ignore"):
            return float((x[0] - 0.005) ** 4 * (x[0] - 0.8) ** 2 + 0.0 * np.log(x[0]))

    with np.errstate(all="ignore"):
        points = landscape.find_critical_points(fun, [(0.001, 1.0)], n_starts=16)
    assert any(p.kind == "minimum" and abs(p.x[0] - 0.8) < 1e-6 for p in points)


@pytest.mark.parametrize("shift", [10.0, 100.0])
def test_finite_difference_gtol_follows_the_points_scale(shift):
    # Rosenbrock's minimum moved to (1 + shift, 1 + shift): the central difference's step grows with |x| and its
    # error with the step's square, so the exact minimum was "noncritical" (gradient 1.8e-6 > gtol 3.7e-8 at 10)
    def fun(x):
        u, v = x[0] - shift, x[1] - shift
        return float((1 - u) ** 2 + 100 * (v - u * u) ** 2)

    point = landscape.classify_critical_point(fun, np.array([1.0 + shift, 1.0 + shift]))
    assert point.kind == "minimum"
    assert landscape.classify_critical_point(fun, np.array([1.1 + shift, 1.0 + shift])).kind == "noncritical"


def test_the_critical_point_keeps_its_own_copy_of_x():
    x = np.zeros(2)
    point = landscape.classify_critical_point(lambda z: float(z[0] ** 2 - z[1] ** 2), x)
    x[:] = 5.0
    assert point.x.tolist() == [0.0, 0.0]


@pytest.mark.parametrize("bad, error", [
    (lambda x: np.full(2, np.nan), landscape.NonFiniteError),  # (a NaN Hessian, silently)
    (lambda x: 1.0, ValueError),  # (broadcast into a zero Hessian)
    (lambda x: np.zeros(5), ValueError),  # (a length-5 gradient for 2 coordinates: norms of it)
])
def test_a_supplied_jac_is_checked_by_hessian_and_gradient_norms(bad, error):
    with pytest.raises(error):
        landscape.hessian(lambda x: float(x @ x), np.ones(2), jac=bad)
    with pytest.raises(error):
        landscape.gradient_norms(lambda x: float(x @ x), np.ones((3, 2)), jac=bad)


@pytest.mark.parametrize("offset", [0.0, 1e6, 1e8])
def test_a_constant_added_to_f_changes_no_classification_with_exact_derivatives(offset):
    # The default tolerances scaled with |f(x)| even for an exact gradient: at f = 1e8 + x^2 + y^2 a point of
    # gradient norm 2.2 was a "minimum" (gtol 3.7), and the minimum of 1e9 + log1p((x - 0.3)^2) "degenerate".
    def f(x):
        return offset + x[0] ** 2 + x[1] ** 2

    def g(x):
        return 2 * np.asarray(x, dtype=float)

    assert landscape.classify_critical_point(f, [1.0, 0.5], jac=g).kind == "noncritical"
    assert landscape.classify_critical_point(f, [0.0, 0.0], jac=g).kind == "minimum"
    assert landscape.classify_critical_point(f, [0.0, 0.0], jac=g, hess=lambda x: 2 * np.eye(2)).kind == "minimum"
    found = landscape.find_critical_points(lambda x: 10 * offset + np.log1p((x[0] - 0.3) ** 2), [(-1.0, 1.0)],
                                           jac=lambda x: np.array([2 * (x[0] - 0.3) / (1 + (x[0] - 0.3) ** 2)]))
    assert [(p.kind, round(float(p.x[0]), 6)) for p in found] == [("minimum", 0.3)]


def test_differences_of_an_exact_gradient_resolve_a_condition_number_of_1e6():
    # (second differences of f do too, their error estimated: test_second_differences_resolve_a_condition_number_of_1e6)
    A = np.diag([1.0, 1e6])
    point = landscape.classify_critical_point(lambda x: 0.5 * x @ A @ x, [0.0, 0.0], jac=lambda x: A @ x)
    assert point.kind == "minimum"


@pytest.mark.parametrize("value, error, match", [
    ("1.0", TypeError, "fun must return a real scalar, got str"),  # (taken as the number 1.0)
    (None, TypeError, "fun must return a real scalar, got NoneType"),  # (float()'s message, naming no function)
    (1 + 2j, ValueError, r"fun must return a real scalar, got a complex value \(complex128\)"),
    (np.zeros(2), ValueError, r"fun must return a real scalar, got an array of shape \(2,\)"),
    (10**400, landscape.NonFiniteError, "fun returned inf"),  # (float()'s OverflowError)
])
def test_function_values_are_checked_as_minimize_checks_them(value, error, match):
    from fastopt import minimize

    for call in (lambda: landscape.gradient(lambda x: value, np.zeros(2)),
                 lambda: landscape.hessian(lambda x: value, np.zeros(2)),
                 lambda: landscape.classify_critical_point(lambda x: value, np.zeros(2))):
        with pytest.raises(error, match=match):
            call()
    # the same check in minimize, whose non-finite fun(x0) is its own ValueError
    with pytest.raises(ValueError if error is landscape.NonFiniteError else error,
                       match="not finite" if error is landscape.NonFiniteError else match):
        minimize(lambda x: value, np.zeros(2), jac=lambda x: x, method="sgd")


def test_a_complex_gradient_or_hessian_is_refused_not_truncated():
    # (cast to float64 with only a ComplexWarning: the imaginary part silently dropped)
    sq = lambda x: float(x @ x)  # noqa: E731
    cjac = lambda x: (1 + 1j) * x  # noqa: E731
    chess = lambda x: (2 + 5j) * np.eye(2)  # noqa: E731
    jac_error = pytest.raises(TypeError, match="jac must return a real array, got dtype complex128")
    hess_error = pytest.raises(TypeError, match="hess must return a real array, got dtype complex128")
    with jac_error:
        landscape.hessian(sq, np.zeros(2), jac=cjac)
    with jac_error:
        landscape.classify_critical_point(sq, np.zeros(2), jac=cjac)
    with jac_error:
        landscape.gradient_norms(sq, np.zeros((2, 2)), jac=cjac)
    with jac_error:
        landscape.find_critical_points(sq, [(-1, 1), (-1, 1)], jac=cjac, n_starts=1)
    with hess_error:
        landscape.classify_critical_point(sq, np.zeros(2), hess=chess)
    with hess_error:
        landscape.condition_number(sq, np.zeros(2), hess=chess)
    with hess_error:
        landscape.find_critical_points(sq, [(-1, 1), (-1, 1)], jac=lambda x: 2 * x, hess=chess, n_starts=1)


def test_a_scalar_gradient_of_a_one_variable_function_is_taken_as_minimize_takes_it():
    # (minimize took jac's 0-d value for one variable, the landscape refused it as "shape ()")
    f = lambda x: float(x[0] ** 2)  # noqa: E731
    point = landscape.classify_critical_point(f, [0.0], jac=lambda x: 2 * x[0], hess=lambda x: np.array([[2.0]]))
    assert point.kind == "minimum"


@pytest.mark.parametrize("x0", [[0.0, 0.0], [0.3, -0.7]])
def test_second_differences_resolve_a_condition_number_of_1e6(x0):
    # The default eig_tol for second differences of f was 100 sqrt(eps) max(1, |lambda|_max, |f|), 3 here: the
    # eigenvalue 2 beside 2e6 was "zero" and the minimum "degenerate", though condition_number gave 1e6 and jac=
    # or hess= said "minimum". The values the differences read are about 2e6 h^2, so their rounding costs about
    # eps 2e6 = 4e-10 of curvature (a quadratic has no truncation): 2 is far above it.
    x0 = np.array(x0)

    def f(x):
        return 1e6 * (x[0] - x0[0]) ** 2 + (x[1] - x0[1]) ** 2

    point = landscape.classify_critical_point(f, x0)
    assert point.kind == "minimum", point.reason
    # within the rounding bound 4 n eps max|f| / h^2, max|f| = 1e6 (2h)^2 at the mixed probes: 7e-9, both
    np.testing.assert_allclose(point.eigenvalues, [2.0, 2e6], rtol=0, atol=1e-8)
    assert landscape.condition_number(f, x0) == pytest.approx(1e6, rel=1e-6)
    found = landscape.find_critical_points(f, [(x0[0] - 1, x0[0] + 1), (x0[1] - 1, x0[1] + 1)], n_starts=4)
    assert [p.kind for p in found] == ["minimum"]


@pytest.mark.parametrize("f", [lambda x: x[0] ** 2 + x[1] ** 4, lambda x: x[0] ** 2 + 1e4 * x[1] ** 4,
                               lambda x: 1e6 * x[0] ** 2 + x[1] ** 4, lambda x: x[0] ** 2 + 0.0 * x[1]],
                         ids=["x^2+y^4", "x^2+1e4y^4", "1e6x^2+y^4", "x^2 in 2-D"])
def test_a_singular_direction_stays_degenerate_under_second_differences(f):
    # y^4's second difference is 2 h^2 (3e-8 at h = eps**(1/4)), all truncation: the halved steps' 2 h^2 / 4
    # measure exactly that, so it counts as zero however large the quartic (1e4 y^4: 3e-4, which the old
    # 100 sqrt(eps) = 3e-6 called a positive eigenvalue, "minimum")
    point = landscape.classify_critical_point(f, np.zeros(2))
    assert point.kind == "degenerate" and "inconclusive" in point.reason


@pytest.mark.parametrize("bounds", [[(-2.0, 2.0)], [(-3.0, 1.0)], [(-0.5, 2.0)]])
def test_the_cubics_inflection_is_a_saddle_wherever_the_root_finder_stops(bounds):
    # x^3's second differences have no truncation error, so the tolerance from their own error fell to 3.7e-9; the
    # root finder stops up to ~1e-4 from 0, where the curvature 6x is real: found at x = -6.7e-10 (eigenvalue
    # -4e-9), the inflection was a maximum or a minimum on 4-6 of 40 seeds
    cubic = FUNCTIONS["cubic"]
    for seed in range(40):
        kinds = {p.kind for p in landscape.find_critical_points(cubic.fun, bounds, seed=seed)}
        assert kinds == {"saddle"}, (seed, kinds)


@pytest.mark.parametrize("f0, error, match", [
    (np.nan, landscape.NonFiniteError, "f0 = nan is not finite"),  # (a NaN gradient, silently)
    (np.inf, landscape.NonFiniteError, "f0 = inf is not finite"),
    pytest.param(10**400, landscape.NonFiniteError, "f0 = inf is not finite", id="10**400"),
    ("a", TypeError, "f0 must be a real number"),  # (a raw TypeError from the subtraction)
    (True, TypeError, "f0 must be a real number"),
    ([1.0], TypeError, "f0 must be a real number"),
    (1j, TypeError, "f0 must be a real number"),
])
def test_a_given_f0_must_be_a_finite_real_number(f0, error, match):
    for scheme in ("2-point", "3-point"):
        with pytest.raises(error, match=match):
            landscape.gradient(lambda x: float(x @ x), np.ones(2), scheme=scheme, f0=f0)
    # a good one is used as fun(x): the same gradient as without it
    g = landscape.gradient(lambda x: float(x @ x), np.ones(2), scheme="2-point", f0=np.float32(2.0))
    np.testing.assert_array_equal(g, landscape.gradient(lambda x: float(x @ x), np.ones(2), scheme="2-point"))


@pytest.mark.parametrize("offset", [1e6, 1e9])
def test_a_large_constant_in_f_leaves_the_diagnostics_as_they_were(offset):
    # The differences' steps assumed |f| about its derivatives' size: a constant added to f added rounding but no
    # variation. 1e9 + (x - 3)**2 had the curvature 1.78, condition_number inf on two coordinates, its minimum
    # "degenerate" and every point of [-5, 5] "critical" (gtol 3.7e4, from |f|); at 1e6 the minima were
    # "degenerate" (eig_tol 1.5, from |f|).
    quad = lambda x: float(0.5 * (x[0] ** 2 + 2 * x[1] ** 2)) + offset  # noqa: E731
    assert landscape.condition_number(quad, np.zeros(2)) == pytest.approx(2.0, rel=1e-2)
    assert landscape.max_stable_learning_rate(quad, np.zeros(2)) == pytest.approx(1.0, rel=1e-2)
    assert landscape.classify_critical_point(quad, np.zeros(2)).kind == "minimum"
    shifted = lambda x: offset + float((x[0] - 3) ** 2)  # noqa: E731
    assert landscape.hessian(shifted, [3.0])[0, 0] == pytest.approx(2.0, rel=1e-2)
    assert landscape.gradient(shifted, [3.001])[0] == pytest.approx(0.002, rel=1e-2)
    points = landscape.find_critical_points(shifted, [(-5.0, 5.0)], n_starts=16)
    assert [p.kind for p in points] == ["minimum"] and abs(points[0].x[0] - 3) < 1e-3
    assert landscape.classify_critical_point(shifted, [2.5]).kind == "noncritical"
    rosen = lambda x: offset + float((1 - x[0]) ** 2 + 100 * (x[1] - x[0] ** 2) ** 2)  # noqa: E731
    if offset == 1e6:  # (at 1e9 its smaller eigenvalue, 0.4, is below what the rounding resolves: "degenerate")
        assert landscape.classify_critical_point(rosen, np.ones(2)).kind == "minimum"


@pytest.mark.parametrize("offset", [1e6, 1e9])
def test_an_inflection_beside_a_large_constant_is_no_extremum(offset):
    # 1e9 + x**3 had 60 "saddles" over [-2, 2] (gtol from |f|). The grown steps let points up to 0.01 from 0 pass
    # as critical, and their curvatures (+-0.01) must not make "minima" and "maxima" of them: a curvature that
    # close to an inflection counts as zero. At 1e9 the probes cannot see x**3 beside the rounding: "degenerate".
    cubic = lambda x: offset + float(x[0] ** 3)  # noqa: E731
    points = landscape.find_critical_points(cubic, [(-2.0, 2.0)], n_starts=64)
    kinds = {"saddle"} if offset == 1e6 else {"saddle", "degenerate"}
    assert points and all(p.kind in kinds for p in points) and all(abs(p.x[0]) < 0.02 for p in points)
    assert landscape.classify_critical_point(cubic, [0.0]).kind in kinds


def test_a_hessian_singular_to_rounding_has_an_infinite_condition_number():
    # the eigenvalues of an exactly singular Hessian come out as rounding: 7.2e16 where it is singular
    H = np.array([[0.1, 0.3], [0.3, 0.9]])
    assert landscape.condition_number(lambda x: 0.5 * x @ H @ x, np.zeros(2), hess=lambda x: H) == np.inf
    assert landscape.condition_number(lambda x: 0.5 * x @ H @ x, np.zeros(2)) == np.inf
    near = np.diag([1.0, 1e-12])  # (singular only well beyond rounding: finite)
    assert landscape.condition_number(lambda x: 0.5 * x @ near @ x, np.zeros(2), hess=lambda x: near) == 1e12


@pytest.mark.parametrize("centre", [0.0, 1e3])
def test_a_shifted_degenerate_minimum_is_no_saddle(centre):
    # t**4 - t**5, t = x - centre: a strict minimum at t = 0 (f > 0 for 0 < |t| < 1), its Hessian zero. The
    # higher-order probe's radii grew with |x|: at 1000 they were 2.5 and 11, where -t**5 wins, and the minimum was
    # a "saddle". Finitely many probes cannot prove a minimum: "degenerate", as at 0.
    def f(p):
        return (p[0] - centre) ** 4 - (p[0] - centre) ** 5

    def g(p):
        return np.array([4 * (p[0] - centre) ** 3 - 5 * (p[0] - centre) ** 4])

    def h(p):
        return np.array([[12 * (p[0] - centre) ** 2 - 20 * (p[0] - centre) ** 3]])

    assert landscape.classify_critical_point(f, [centre], jac=g, hess=h).kind == "degenerate"
    # while a shifted inflection stays a saddle
    point = landscape.classify_critical_point(lambda p: (p[0] - centre) ** 3, [centre],
                                              jac=lambda p: np.array([3 * (p[0] - centre) ** 2]),
                                              hess=lambda p: np.array([[6 * (p[0] - centre)]]))
    assert point.kind == "saddle"


def test_second_differences_far_from_the_origin_do_not_overflow():
    # (1e-150 x)**2 at x = 1e200: curvature 2e-300. The steps' squares (1e100**2) overflowed, and the Hessian was 0
    # with NumPy's overflow warnings (the stable rate inf); the differences divided by h twice resolve it.
    def f(p):
        return (1e-150 * p[0]) ** 2

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        H = landscape.hessian(f, [1e200])
        rate = landscape.max_stable_learning_rate(f, [1e200])
    # the second difference's own error at this step: about sqrt(eps), as at unit scale
    np.testing.assert_allclose(H, [[2e-300]], rtol=1e-6)
    np.testing.assert_allclose(rate, 1e300, rtol=1e-6)


def test_bounds_whose_width_overflows_are_named():
    # (-1e308, 1e308) passed the check; its width overflowed into "x contains NaN or inf", naming neither
    with pytest.raises(ValueError, match="bounds must have widths"):
        landscape.find_critical_points(lambda p: float(p @ p), [(-1e308, 1e308)])


@pytest.mark.parametrize("call", [
    lambda bad: landscape.gradient(bad, [1.0]),
    lambda bad: landscape.hessian(bad, [1.0]),
    lambda bad: landscape.classify_critical_point(bad, [1.0]),
    lambda bad: landscape.find_critical_points(bad, [(-1.0, 1.0)]),
    lambda bad: landscape.condition_number(bad, [1.0]),
    lambda bad: landscape.max_stable_learning_rate(bad, [1.0]),
    lambda bad: landscape.gradient_norms(bad, [[1.0]]),
])
def test_a_fun_that_cannot_be_called_is_named(call):
    # (Python's "'int' object is not callable" named no parameter)
    with pytest.raises(TypeError, match="fun must be callable, got int"):
        call(5)


def test_a_jac_or_hess_that_cannot_be_called_is_named():
    with pytest.raises(TypeError, match="jac must be callable or None, got ndarray"):
        landscape.classify_critical_point(lambda p: float(p @ p), [0.0], jac=np.ones(1))
    with pytest.raises(TypeError, match="hess must be callable or None, got str"):
        landscape.condition_number(lambda p: float(p @ p), [0.0], hess="exact")


def test_a_lone_extra_argument_is_wrapped_as_minimize_wraps_it():
    # args=2.0 failed with "Value after * must be an iterable"; minimize (and SciPy's) take it as (2.0,)
    np.testing.assert_allclose(landscape.gradient(lambda p, a: a * p[0] ** 2, [1.0], args=2.0), [4.0], rtol=1e-8)
