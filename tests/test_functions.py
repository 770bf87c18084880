"""The test functions: derivatives agree with finite differences, and the listed critical points are right."""
import numpy as np
import pytest

from fastopt import functions, landscape
from fastopt.functions import FUNCTIONS

NAMES = sorted(FUNCTIONS)


def _random_points(obj, n, rng):
    lo, hi = np.array(obj.bounds).T
    return lo + (hi - lo) * rng.random((n, obj.ndim))


@pytest.mark.parametrize("name", NAMES)
def test_gradient_and_hessian_match_finite_differences(name, rng):
    obj = FUNCTIONS[name]
    for x in _random_points(obj, 5, rng):
        g = obj.grad(x)
        assert g.shape == (obj.ndim,)
        # Central differences err by about eps**(2/3) times the scale of f and its third derivative.
        scale = 1 + abs(float(obj.fun(x)))
        np.testing.assert_allclose(g, landscape.gradient(obj.fun, x), rtol=1e-7, atol=1e-7 * scale)
        H = obj.hess(x)
        assert H.shape == (obj.ndim, obj.ndim)
        np.testing.assert_allclose(H, landscape.hessian(obj.fun, x, jac=obj.grad), rtol=1e-6, atol=1e-6 * scale)


@pytest.mark.parametrize("name", NAMES)
def test_vectorised_over_a_grid(name):
    obj = FUNCTIONS[name]
    grid = np.stack(np.meshgrid(*[np.linspace(lo, hi, 4) for lo, hi in obj.bounds], indexing="ij"))
    values = obj.fun(grid)
    assert values.shape == grid.shape[1:]
    assert obj.grad(grid).shape == grid.shape
    assert obj.hess(grid).shape == (obj.ndim, *grid.shape)
    # Every grid point agrees with the single-point evaluation.
    flat = grid.reshape(obj.ndim, -1).T
    np.testing.assert_allclose(values.ravel(), [obj.fun(p) for p in flat], rtol=1e-12)
    np.testing.assert_allclose(obj.hess(grid).reshape(obj.ndim, obj.ndim, -1).transpose(2, 0, 1),
                               [obj.hess(p) for p in flat], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", NAMES)
def test_known_critical_points_are_critical_and_of_their_kind(name):
    obj = FUNCTIONS[name]
    assert list(obj.critical_points) == sorted(obj.critical_points, key=lambda p: p.value)
    for p in obj.critical_points:
        x = np.array(p.x)
        assert np.linalg.norm(obj.grad(x)) < 1e-12 * max(1.0, float(np.abs(obj.hess(x)).max()))
        assert float(obj.fun(x)) == pytest.approx(p.value, rel=1e-14, abs=1e-14)
        kind = landscape.classify_critical_point(obj.fun, x, jac=obj.grad, hess=obj.hess).kind
        assert kind == p.kind


@pytest.mark.parametrize("name", NAMES)
def test_the_list_of_critical_points_is_complete_in_the_domain(name):
    """A 256-start search of the box finds exactly the listed points, no more."""
    obj = FUNCTIONS[name]
    found = landscape.find_critical_points(obj.fun, obj.bounds, jac=obj.grad, hess=obj.hess, n_starts=256)
    key = lambda x: tuple(np.round(np.asarray(x, float), 5) + 0.0)  # noqa: E731 (+0.0 folds -0.0 into 0.0)
    assert sorted((key(p.x), p.kind) for p in found) == sorted((key(p.x), p.kind) for p in obj.critical_points)


def test_seed_facts():
    # The annotations of Dive into Deep Learning, sec. 12.1: min of risk near 1.1 and of the empirical risk near 1.0;
    # local min near -0.3.
    assert FUNCTIONS["risk"].global_minimum.x[0] == pytest.approx(1.1, abs=0.01)
    assert FUNCTIONS["empirical_risk"].global_minimum.x[0] == pytest.approx(1.0, abs=0.02)
    assert FUNCTIONS["risk"].minima[1].x[0] == pytest.approx(-0.27, abs=0.01)
    # tanh: f'(4) = 0.0013, and no critical point at all.
    assert FUNCTIONS["tanh"].grad(np.array([4.0]))[0] == pytest.approx(0.0013, abs=5e-5)
    assert FUNCTIONS["tanh"].global_minimum is None
    dw = FUNCTIONS["double_well"]
    assert [p.x for p in dw.minima] == [(2.0, 1.0), (-1.0, -0.5)]
    assert dw.global_minimum.value == pytest.approx(-8 / 3)


def test_ill_conditioned_quadratic_has_the_requested_spectrum():
    q = functions.ill_conditioned_quadratic(condition_number=40.0, angle=0.3)
    lam = np.linalg.eigvalsh(q.hess(np.zeros(2)))
    np.testing.assert_allclose(lam, [1.0, 40.0])
    assert landscape.condition_number(q.fun, np.array([0.3, -0.2]), hess=q.hess) == pytest.approx(40.0)


def test_quadratic_rejects_indefinite_or_asymmetric_matrices():
    with pytest.raises(ValueError, match="positive definite"):
        functions.quadratic(np.diag([1.0, -1.0]))
    with pytest.raises(ValueError, match="symmetric"):
        functions.quadratic(np.array([[1.0, 2.0], [0.0, 1.0]]))


def test_distance_to_minimum():
    hb = FUNCTIONS["himmelblau"]
    assert hb.distance_to_minimum([3.0, 2.5]) == pytest.approx(0.5)
    assert np.isnan(FUNCTIONS["saddle"].distance_to_minimum([0.0, 0.0]))


def test_minibatch_gradient_is_unbiased_over_the_full_batch():
    obj = FUNCTIONS["double_well"]
    x = np.array([0.3, -0.7])
    full = obj.minibatch_gradient(noise=2.0, batch_size=64, n_samples=64)
    np.testing.assert_allclose(full(x, rng=np.random.default_rng(0)), obj.grad(x), atol=1e-12)
    noisy = obj.minibatch_gradient(noise=2.0, batch_size=4, n_samples=1024)
    draws = np.array([noisy(x, rng=np.random.default_rng(s)) for s in range(2000)])
    # Standard deviation per coordinate: noise * sqrt((n - b) / (b (n - 1))) ~ 0.998; the mean of 2000 draws
    # is within 5 standard errors (5 * 0.998 / sqrt(2000) = 0.11) of the true gradient.
    np.testing.assert_allclose(draws.std(axis=0), 2.0 * np.sqrt(1020 / (4 * 1023)), rtol=0.08)
    np.testing.assert_allclose(draws.mean(axis=0), obj.grad(x), atol=0.11)
    with pytest.raises(ValueError, match="batch_size"):
        obj.minibatch_gradient(batch_size=0)


def test_get_names_the_choices():
    assert functions.get("beale") is FUNCTIONS["beale"]
    with pytest.raises(ValueError, match="rosenbrock"):
        functions.get("rosenbrok")


@pytest.mark.parametrize("kwargs, message", [
    ({"A": [[np.nan, 0.0], [0.0, 1.0]]}, "A must be finite"),  # (blamed A's shape)
    ({"A": [[np.inf, 0.0], [0.0, 1.0]]}, "A must be finite"),  # (accepted: NaN eigenvalues)
    ({"A": [[1.0, 0.5], [0.0, 1.0]]}, "A must be symmetric"),
    ({"A": np.eye(2), "bound": -1.0}, "bound must be a finite number > 0"),
    ({"A": np.eye(2), "x0": (5.0, 5.0, 5.0)}, "x0 must have 2 values"),
])
def test_quadratic_names_a_bad_argument(kwargs, message):
    with pytest.raises(ValueError, match=message):
        functions.quadratic(**kwargs)


@pytest.mark.parametrize("noise", [float("nan"), -1.0, float("inf")])
def test_minibatch_gradient_names_a_bad_noise(noise):
    # (NaN gave NaN gradients silently; -1 NumPy's "scale < 0")
    with pytest.raises(ValueError, match="noise must be a finite number >= 0"):
        FUNCTIONS["rosenbrock"].minibatch_gradient(noise=noise)


@pytest.mark.parametrize("kwargs", [{"batch_size": 1.5}, {"batch_size": True}, {"n_samples": 2.5}])
def test_minibatch_gradient_names_a_count_that_is_not_an_integer(kwargs):
    # (accepted when built, then NumPy's TypeError at the first step, naming neither)
    with pytest.raises(ValueError, match=f"{next(iter(kwargs))} must be an integer"):
        FUNCTIONS["rosenbrock"].minibatch_gradient(**kwargs)


def test_ill_conditioned_quadratic_refuses_a_bool():
    with pytest.raises(ValueError, match="condition_number must be a finite real number"):
        functions.ill_conditioned_quadratic(True)


def test_quadratic_derivatives_are_of_its_function_for_a_nearly_symmetric_matrix():
    # A symmetric to allclose's tolerance: fun is x^T A x / 2, so grad is (A + A^T) x / 2 (grad returned A x, 100%
    # off on one component of this 1e4-scaled A) and hess is symmetric
    A = np.array([[1e4, 1e4 + 0.09], [1e4, 2.00001e4]])
    obj = functions.quadratic(A)
    x = np.array([1.0, -1.0])
    np.testing.assert_allclose(obj.grad(x), landscape.gradient(obj.fun, x), rtol=1e-6, atol=1e-6)
    H = obj.hess(x)
    np.testing.assert_array_equal(H, H.T)


def test_quadratic_names_an_empty_matrix():
    # (the smallest eigenvalue of a 0 x 0 matrix, [0] of none, raised IndexError)
    with pytest.raises(ValueError, match=r"A must be at least 1 x 1, got shape \(0, 0\)"):
        functions.quadratic(np.zeros((0, 0)))


@pytest.mark.parametrize("kappa", [0, -5, 0.5, 1e20, 1.01 * 0.01 / np.finfo(float).eps])
def test_ill_conditioned_quadratic_names_a_condition_number_out_of_range(kappa):
    # (0, -5 and 1e20 were blamed on "A must be positive definite", an A the caller never passed; 0.5 gave a
    # quadratic of condition number 2)
    with pytest.raises(ValueError, match=r"condition_number must be a finite real number in \[1, 4.5e\+13\]"):
        functions.ill_conditioned_quadratic(condition_number=kappa)


@pytest.mark.parametrize("angle", np.linspace(0.0, np.pi, 61))
def test_ill_conditioned_quadratic_keeps_its_spectrum_up_to_the_largest_condition_number(angle):
    # At the limit 0.01 / eps rounding A's entries (about kappa in size) moves the eigenvalue 1 by at most
    # about eps kappa = 0.01: within 1%, so A is positive definite with the spectrum asked for
    kappa = functions.MAX_CONDITION_NUMBER
    assert kappa == 0.01 / np.finfo(float).eps
    lam = np.linalg.eigvalsh(functions.ill_conditioned_quadratic(kappa, angle).hess(np.zeros(2)))
    np.testing.assert_allclose(lam, [1.0, kappa], rtol=0.01)
    assert functions.ill_conditioned_quadratic(1.0, angle).description.endswith("(condition number 1).")


@pytest.mark.parametrize("name", [["rosenbrock"], None, 3])
def test_get_names_a_name_that_is_no_string(name):
    # (a list raised "unhashable type: 'list'" from the registry's look-up)
    with pytest.raises(TypeError, match="name must be a str, one of risk, .*rosenbrock"):
        functions.get(name)
