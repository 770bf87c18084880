"""fastopt.minimize: SciPy's contract, the compiled step rules, Newton and saddle-free Newton."""
import numpy as np
import pytest
import scipy.optimize

from fastopt import landscape, optim
from fastopt.functions import DOUBLE_WELL, FUNCTIONS, ill_conditioned_quadratic
from fastopt.minimize import FIRST_ORDER, METHODS, Status, minimize


def _least_squares(seed=0, n=60, d=3):
    """A least-squares loss: the mean of 1/2 (x_i . w - y_i)^2, a well-conditioned convex problem."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    y = X @ np.array([1.5, -2.0, 0.5]) + 0.1 * rng.normal(size=n)

    def fun(w):
        r = X @ w - y
        return 0.5 * r @ r / n

    def grad(w):
        return X.T @ (X @ w - y) / n

    return fun, grad, np.linalg.lstsq(X, y, rcond=None)[0]


# Learning rates that reach gtol = 1e-6 on the least-squares problem within maxiter (Hessian eigenvalues ~0.6..1.5).
CONVEX_LR = {"sgd": 0.5, "momentum": 0.1, "nesterov": 0.1, "adagrad": 0.5, "rmsprop": 0.01, "adam": 0.05,
             "adamw": 0.05}


@pytest.mark.parametrize("method", METHODS)
def test_reaches_the_least_squares_solution_like_scipy(method):
    fun, grad, w_star = _least_squares()
    options = {"maxiter": 5000, "gtol": 1e-6}
    if method in CONVEX_LR:
        options["lr"] = CONVEX_LR[method]
    if method == "adamw":
        options["weight_decay"] = 0.0  # decoupled decay would move the minimizer away from the least-squares one
    res = minimize(fun, np.zeros(3), jac=grad, method=method, options=options)
    ref = scipy.optimize.minimize(fun, np.zeros(3), jac=grad, method="BFGS", options={"gtol": 1e-6})
    assert res.success and res.status == Status.GTOL, res.message
    # |g| <= 1e-6 and Hessian eigenvalues >= 0.5 put w within 2e-6 of the solution.
    np.testing.assert_allclose(res.x, w_star, atol=2e-6)
    np.testing.assert_allclose(res.x, ref.x, atol=4e-6)
    assert res.fun == pytest.approx(ref.fun, rel=1e-9)


@pytest.mark.parametrize(
    "method, options",
    [("momentum", {"lr": 1e-3}), ("nesterov", {"lr": 1e-3}), ("adam", {"lr": 0.05}),
     ("newton", {}), ("saddle_free_newton", {})],
)
def test_reaches_the_rosenbrock_minimum(method, options):
    rb = FUNCTIONS["rosenbrock"]
    hess = rb.hess if "newton" in method else None
    res = minimize(rb.fun, rb.x0, jac=rb.grad, hess=hess, method=method, options={"maxiter": 5000, **options})
    ref = scipy.optimize.minimize(rb.fun, rb.x0, jac=rb.grad, hess=rb.hess, method="Newton-CG")
    assert res.success, res.message
    np.testing.assert_allclose(res.x, [1.0, 1.0], atol=1e-4)
    np.testing.assert_allclose(res.x, ref.x, atol=1e-4)


def test_first_order_methods_run_the_compiled_step_bit_for_bit():
    rb = FUNCTIONS["rosenbrock"]
    for method in FIRST_ORDER:
        res = minimize(rb.fun, rb.x0, jac=rb.grad, method=method, options={"lr": 1e-3, "maxiter": 25, "gtol": 0})
        spec = optim.make(method)
        x = np.array(rb.x0)
        state = spec.init_state(2, x.dtype)
        for t in range(1, 26):
            spec.step(x, rb.grad(x), state, t, 1e-3)
        np.testing.assert_array_equal(res.x, x, err_msg=method)


def test_newton_lands_on_a_quadratic_minimum_in_one_step():
    A = np.array([[4.0, 1.0], [1.0, 3.0]])
    b = np.array([1.0, 2.0])
    res = minimize(lambda x: 0.5 * x @ A @ x - b @ x, [5.0, -7.0], jac=lambda x: A @ x - b, hess=lambda x: A,
                   method="newton")
    assert res.nit == 1 and res.success and res.nhev == 1
    # Exact up to rounding of the step (|x0| ~ 7 times a few eps).
    np.testing.assert_allclose(res.x, np.linalg.solve(A, b), rtol=0, atol=1e-14 * 7 * 10)


def test_newton_stalls_at_the_saddle_and_saddle_free_newton_escapes():
    s = FUNCTIONS["saddle"]
    x0 = [0.5, 1e-8]  # next to the saddle (0, 0) of x^2 - y^2
    newton = minimize(s.fun, x0, jac=s.grad, hess=s.hess, method="newton")
    # Newton jumps to the critical point of the quadratic model, the saddle, and reports convergence.
    assert newton.success and newton.nit == 1
    np.testing.assert_allclose(newton.x, [0.0, 0.0], atol=1e-15)
    assert landscape.classify_critical_point(s.fun, newton.x).kind == "saddle"
    # |H| = 2 I: the step x - g / 2 zeroes x but doubles y, so y grows 2^k and f falls without bound.
    # gtol = 0: next to a saddle the gradient is as small as next to a minimum (|g| = 4e-8 after one step).
    free = minimize(s.fun, x0, jac=s.grad, hess=s.hess, method="saddle_free_newton",
                    options={"maxiter": 40, "gtol": 0.0})
    assert free.status == Status.MAXITER and free.x[0] == 0.0
    assert free.x[1] == pytest.approx(1e-8 * 2**40) and free.fun < -1e4


def test_newton_regularisation_and_singular_systems():
    linear = lambda x: x[0] + 2 * x[1]  # noqa: E731 (zero Hessian: the Newton system is singular)
    res = minimize(linear, [0.0, 0.0], jac=lambda x: np.array([1.0, 2.0]), hess=lambda x: np.zeros((2, 2)),
                   method="newton")
    assert res.status == Status.SINGULAR and not res.success and "alpha" in res.message
    # (0 + alpha I)^-1 g is a gradient step of length |g| / alpha.
    res = minimize(linear, [0.0, 0.0], jac=lambda x: np.array([1.0, 2.0]), hess=lambda x: np.zeros((2, 2)),
                   method="newton", options={"alpha": 10.0, "maxiter": 3})
    np.testing.assert_allclose(res.x, [-0.3, -0.6])


def test_finite_difference_newton_and_gradients_count_their_evaluations():
    rb = FUNCTIONS["rosenbrock"]
    res = minimize(rb.fun, rb.x0, method="newton")
    assert res.success and np.allclose(res.x, [1.0, 1.0], atol=1e-5)
    for scheme, per_point in [("2-point", 1 + 2), ("3-point", 1 + 4)]:
        res = minimize(rb.fun, rb.x0, jac=scheme, method="momentum", options={"lr": 1e-4, "maxiter": 7})
        assert res.nit == 7 and res.nfev == 8 * per_point and res.njev == 8  # SciPy's counts: see below
    res = minimize(rb.fun, rb.x0, jac=rb.grad, method="sgd", options={"lr": 1e-4, "maxiter": 7})
    assert res.nfev == res.njev == 8


def _basin(x):
    """Index into DOUBLE_WELL.minima (0: global, 1: local) of the minimum that full-batch descent from x reaches."""
    end = minimize(DOUBLE_WELL.fun, x, jac=DOUBLE_WELL.grad, method="sgd", options={"lr": 0.2, "maxiter": 200}).x
    return int(np.argmin([np.linalg.norm(end - np.array(p.x)) for p in DOUBLE_WELL.minima]))


def test_minibatch_noise_lets_sgd_leave_the_local_minimum():
    """Zhang et al., *Dive into Deep Learning*, sec. 12.1: "the natural variation of gradients over minibatches is able
    to dislodge the parameters".

    Plain SGD (one sample per step, per-sample noise 5, lr 0.05, 300 steps) from the local minimum of the double
    well, whose barrier is 5/12 high, against full-batch descent of the same finite sum. Over 200 seeds SGD ends in
    the global basin in 94.5% of runs; requiring 15 of these 20 seeds fails with probability 5e-4 (binomial) if
    that rate holds, while full-batch descent never leaves: its gradient is exactly zero at the minimum.
    """
    local = np.array(DOUBLE_WELL.minima[1].x)
    left = 0
    for seed in range(20):
        options = {"lr": 0.05, "maxiter": 300, "gtol": 0.0, "seed": seed}
        noisy = DOUBLE_WELL.minibatch_gradient(noise=5.0, batch_size=1, n_samples=1024, seed=seed)
        left += _basin(minimize(DOUBLE_WELL.fun, local, jac=noisy, method="sgd", options=options).x) == 0
        full = DOUBLE_WELL.minibatch_gradient(noise=5.0, batch_size=1024, n_samples=1024, seed=seed)
        gd = minimize(DOUBLE_WELL.fun, local + np.array([-0.3, 0.4]), jac=full, method="sgd", options=options)
        assert _basin(gd.x) == 1 and np.linalg.norm(gd.x - local) < 1e-6
    assert left >= 15


def test_stochastic_runs_are_reproducible_from_the_seed():
    noisy = DOUBLE_WELL.minibatch_gradient(noise=1.0, batch_size=2)
    run = lambda seed: minimize(DOUBLE_WELL.fun, [0.5, 0.5], jac=noisy, method="adam",  # noqa: E731
                                options={"maxiter": 50, "seed": seed}).x
    np.testing.assert_array_equal(run(3), run(3))
    assert not np.array_equal(run(3), run(4))


def test_largest_stable_learning_rate_predicts_divergence():
    q = ill_conditioned_quadratic(condition_number=25.0)
    x0 = np.array(q.x0)
    lr_max = landscape.max_stable_learning_rate(q.fun, x0)  # from finite differences, 2 / 25 up to ~1e-7
    assert lr_max == pytest.approx(2 / 25, rel=1e-6)
    # Just below: the steepest component shrinks by |1 - 0.95 * 2| = 0.9 per step; just above it grows by 1.1.
    below = minimize(q.fun, x0, jac=q.grad, method="sgd", options={"lr": 0.95 * lr_max, "maxiter": 2000})
    above = minimize(q.fun, x0, jac=q.grad, method="sgd", options={"lr": 1.05 * lr_max, "maxiter": 2000})
    assert below.success and np.linalg.norm(below.x) < 1e-5
    assert above.status == Status.DIVERGED and not above.success and "lower lr" in above.message


def test_non_finite_values_stop_with_status_diverged():
    with np.errstate(over="ignore"):
        res = minimize(lambda x: x @ x, [1.0], jac=lambda x: 2 * x, method="sgd",
                       options={"lr": 10.0, "divergence": np.inf, "return_path": True})
    assert res.status == Status.DIVERGED and "not finite" in res.message
    assert np.isfinite(res.fun) and np.all(np.isfinite(res.xs)) and res.nit == len(res.xs) - 1


def test_result_fields_and_path():
    rb = FUNCTIONS["rosenbrock"]
    res = minimize(rb.fun, rb.x0, jac=rb.grad, method="adam", options={"maxiter": 30, "return_path": True})
    for field in ("x", "fun", "jac", "nit", "nfev", "njev", "status", "success", "message", "xs", "fs"):
        assert field in res
    assert res.nit == 30 and res.status == Status.MAXITER and not res.success
    assert res.xs.shape == (31, 2) and res.fs.shape == (31,)
    np.testing.assert_array_equal(res.xs[0], rb.x0)
    np.testing.assert_array_equal(res.xs[-1], res.x)
    np.testing.assert_allclose(res.fs, [rb.fun(x) for x in res.xs])
    np.testing.assert_allclose(res.jac, rb.grad(res.x))
    assert "xs" not in minimize(rb.fun, rb.x0, jac=rb.grad, options={"maxiter": 3})


def test_jac_true_and_args():
    def fun(x, a):
        return a * x @ x, 2 * a * x

    res = minimize(fun, [1.0, -1.0], args=(3.0,), jac=True, method="sgd", options={"lr": 0.1})
    assert res.success and np.allclose(res.x, 0.0, atol=1e-5) and res.njev == res.nfev  # each call: f and g


def test_float32_stays_float32():
    q = ill_conditioned_quadratic()
    res = minimize(q.fun, np.float32(q.x0), jac=q.grad, method="momentum", options={"lr": 0.02, "gtol": 1e-4})
    assert res.x.dtype == np.float32 and res.jac.dtype == np.float32
    assert res.success and np.allclose(res.x, 0.0, atol=1e-3)


def test_schedule_and_clipping_shape_the_steps():
    # f = x has gradient 1, so an SGD step is exactly the current learning rate.
    res = minimize(lambda x: x[0], [0.0], jac=lambda x: np.ones(1), method="sgd",
                   options={"lr": 0.5, "schedule": "cosine", "maxiter": 10, "return_path": True})
    expected = [optim.schedule_lr("cosine", 0.5, t, 10) for t in range(10)]
    np.testing.assert_allclose(-np.diff(res.xs[:, 0]), expected, rtol=1e-12)
    res = minimize(lambda x: x @ x, [30.0, 40.0], jac=lambda x: 2 * x, method="sgd",
                   options={"lr": 1.0, "clip_norm": 0.5, "maxiter": 1, "return_path": True})
    assert np.linalg.norm(res.xs[1] - res.xs[0]) == pytest.approx(0.5, rel=1e-5)


def test_callbacks_in_both_styles_and_stop_iteration():
    seen, results = [], []
    minimize(lambda x: x @ x, [1.0], jac=lambda x: 2 * x, method="sgd", callback=seen.append,
             options={"maxiter": 4, "gtol": 0})
    assert len(seen) == 4 and all(isinstance(x, np.ndarray) for x in seen)

    def stop(intermediate_result):
        results.append(intermediate_result.fun)
        if len(results) == 2:
            raise StopIteration

    res = minimize(lambda x: x @ x, [1.0], jac=lambda x: 2 * x, method="sgd", callback=stop)
    assert res.status == Status.CALLBACK == 99 and res.nit == 2 and results[-1] == res.fun


def test_ftol_stops_when_f_stalls():
    res = minimize(lambda x: x @ x, [1.0], jac=lambda x: 2 * x, method="sgd",
                   options={"lr": 1e-3, "ftol": 1e-2, "gtol": 0})
    assert res.status == Status.FTOL and res.success and res.nit < 10


def test_hess_is_ignored_with_a_warning_by_first_order_methods():
    with pytest.warns(RuntimeWarning, match="does not use Hessian"):
        minimize(lambda x: x @ x, [1.0], jac=lambda x: 2 * x, hess=lambda x: 2 * np.eye(1), method="sgd")


def _sq(x):
    return x @ x


def _sq_grad(x):
    return 2 * x


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"x0": [np.nan, 1.0]}, ValueError, "NaN"),
        ({"x0": [[1.0, 2.0]]}, ValueError, "1-D"),
        ({"x0": []}, ValueError, "empty"),
        ({"x0": [1j, 0]}, TypeError, "real-valued"),
        ({"method": "lbfgs"}, ValueError, "unknown method"),
        ({"options": {"maxiterations": 5}}, ValueError, "maxiterations"),
        ({"options": {"maxiter": -1}}, ValueError, "maxiter"),
        ({"options": {"maxiter": 2.5}}, ValueError, "maxiter"),
        ({"options": {"maxiter": 2**63}}, ValueError, r"options\['maxiter'\]"),  # (was named max_epochs)
        ({"options": {"seed": -1}}, ValueError, r"options\['seed'\]"),  # (NumPy's messages did not name it)
        ({"options": {"seed": 1.5}}, ValueError, r"options\['seed'\]"),
        ({"options": {"lr": 0.0}}, ValueError, "lr"),
        ({"options": {"gtol": -1.0}}, ValueError, "gtol"),
        ({"options": {"return_path": "yes"}}, ValueError, "return_path"),
        ({"options": {"clip_norm": 0.0}}, ValueError, "clip_norm"),
        ({"options": {"schedule": "warmup"}}, ValueError, "schedule"),
        ({"options": {"beta1": 1.5}}, ValueError, "beta1"),
        ({"options": {"momentum": 0.5}, "method": "newton"}, ValueError, "momentum"),
        ({"options": {"alpha": -1.0}, "method": "newton"}, ValueError, "alpha"),
        ({"options": [("lr", 1.0)]}, TypeError, "dict"),
        ({"jac": "4-point"}, ValueError, "jac"),
        ({"jac": lambda x: np.ones(3)}, ValueError, r"shape \(3,\)"),
        ({"jac": lambda x: np.ones((2, 1))}, ValueError, r"shape \(2, 1\)"),
        ({"jac": True}, ValueError, "pair"),
        ({"fun": lambda x: x}, ValueError, "scalar"),
        ({"fun": lambda x: np.inf}, ValueError, "not finite"),
        ({"fun": "x @ x"}, TypeError, "callable"),
        ({"hess": lambda x: np.eye(3), "method": "newton"}, ValueError, "hess returned"),
        ({"fun": lambda x, rng: x @ x, "jac": None}, ValueError, "deterministic"),
        # (Newton without hess silently differenced a minibatch gradient for its Hessian)
        ({"jac": lambda x, rng: 2 * x + rng.normal(size=2), "method": "newton"}, ValueError,
         "jac takes an rng.*pass hess"),
        ({"jac": lambda x, *, rng: 2 * x, "method": "saddle_free_newton"}, ValueError, "stochastic gradient"),
        ({"fun": lambda x, rng: (x @ x, 2 * x), "jac": True, "method": "newton"}, ValueError,
         r"fun \(with jac=True\) takes an rng"),
    ],
)
def test_bad_input_gets_a_clear_error(kwargs, error, match):
    call = {"fun": _sq, "x0": [1.0, 2.0], "jac": _sq_grad, **kwargs}
    with pytest.raises(error, match=match):
        minimize(call.pop("fun"), call.pop("x0"), **call)


@pytest.mark.parametrize("option, value", [("gamma", 2.0), ("gamma", -1.0), ("gamma", 0.0), ("gamma", float("nan")),
                                           ("end_factor", -1.0), ("end_factor", 1.5), ("power_t", -1.0)])
def test_schedule_parameters_are_checked_before_the_first_step(option, value):
    # They act only after epoch 0, so a bad one failed deep into a run (gamma = 2 overflowed after ~1,000 steps)
    # or not at all; the estimator's ranges apply, before any step.
    calls = []

    def jac(x):
        calls.append(1)
        return np.ones(1)

    schedule = {"gamma": "exponential", "end_factor": "linear", "power_t": "invscaling"}[option]
    with pytest.raises(ValueError, match=option):
        minimize(lambda x: float(x[0]), [1.0], jac=jac, method="sgd",
                 options={"schedule": schedule, option: value, "maxiter": 50})
    assert not calls


def test_maxiter_zero_returns_the_start():
    # schedule_lr's check of max_epochs (>= 1 at first) refused minimize's maxiter=0
    res = minimize(lambda x: float(x @ x), np.ones(2), jac=lambda x: 2 * x, method="adam", options={"maxiter": 0})
    np.testing.assert_array_equal(res.x, np.ones(2))
    assert res.nit == 0


def test_a_finite_difference_probe_outside_the_domain_stops_with_status_diverged():
    # f is finite on x <= 1, NaN beyond: the forward probe at x = 1 leaves the domain. The run stops as with an
    # analytic gradient that turns NaN there (it had raised NonFiniteError and lost the run).
    def fun(x):
        return -x[0] if x[0] <= 1.0 else np.nan

    def jac(x):
        return np.array([-1.0 if x[0] <= 1.0 else np.nan])

    analytic = minimize(fun, [0.0], jac=jac, method="sgd", options={"lr": 0.5})
    fd = minimize(fun, [0.0], method="sgd", options={"lr": 0.5})
    assert analytic.status == fd.status == Status.DIVERGED and not fd.success
    # the last iterate whose gradient was finite: 1.0 analytically, 0.5 by differences (1.0's probe is NaN)
    np.testing.assert_array_equal(analytic.x, [1.0])
    np.testing.assert_array_equal(fd.x, [0.5])
    # At the start too: the backward probe of x - log(x) at 1e-9 is at a negative x.
    with np.errstate(invalid="ignore"):  # the probe's log of a negative number
        start = minimize(lambda x: x[0] - np.log(x[0]), [1e-9], jac="3-point", method="sgd")
    assert start.status == Status.DIVERGED and start.nit == 0
    # And a finite-difference Hessian: Newton stops instead of raising.
    newton = minimize(fun, [1.0], method="newton")
    assert newton.status == Status.DIVERGED


def test_functions_get_a_copy_of_the_iterate():
    # As SciPy's: a function that writes into its argument must not move the iterate.
    def jac(x):
        g = 2 * x
        x[:] = 0.0
        return g

    r = minimize(lambda x: float(x @ x), [1.0, 2.0], jac=jac, method="sgd",
                 options={"maxiter": 3, "lr": 0.1, "return_path": True})
    np.testing.assert_allclose(r.x, np.array([1.0, 2.0]) * 0.8**3, rtol=1e-15)
    assert r.fun == float(r.x @ r.x)
    np.testing.assert_array_equal(r.xs[0], [1.0, 2.0])


def test_integers_beyond_float_range_get_a_clear_error_or_count_as_infinite():
    with pytest.raises(ValueError, match="lr"):
        minimize(lambda x: float(x @ x), [1.0], method="sgd", options={"lr": 10**400})
    with pytest.raises(ValueError, match="gtol"):
        minimize(lambda x: float(x @ x), [1.0], method="sgd", options={"gtol": 10**400})
    with pytest.raises(ValueError, match="weight_decay"):
        minimize(lambda x: float(x @ x), [1.0], method="adam", options={"weight_decay": 10**400})
    # norm and divergence admit inf: an integer beyond float's range is inf
    r = minimize(lambda x: float(x @ x), [1.0], method="sgd", options={"divergence": 10**400, "maxiter": 2})
    assert r.nit == 2
    # fun returning such an integer at x0 is a non-finite fun(x0); later, a divergence
    with pytest.raises(ValueError, match="not finite"):
        minimize(lambda x: 10**400, [1.0], method="sgd")
    later = minimize(lambda x: float(x @ x) if x[0] == 1.0 else 10**400, [1.0], method="sgd",
                     jac=lambda x: 2 * x)
    assert later.status == Status.DIVERGED


def test_a_complex_hessian_is_refused_as_a_complex_gradient_is():
    with pytest.raises(TypeError, match="hess must return a real array"):
        minimize(lambda x: float(x @ x), [1.0, 2.0], jac=lambda x: 2 * x, hess=lambda x: 2 * np.eye(2) + 0j,
                 method="newton")


@pytest.mark.parametrize("value", [None, "1.0", b"1", object()])
def test_fun_returning_no_real_number_is_a_type_error(value):
    # (None raised float()'s own TypeError from inside; the string "1.0" was taken as the number)
    with pytest.raises(TypeError, match="fun must return a real scalar, got"):
        minimize(lambda x: value, np.ones(2), jac=lambda x: x, method="adam")


def test_fun_returning_a_fraction_is_taken():
    import fractions

    res = minimize(lambda x: fractions.Fraction(1, 4) + float(x @ x), np.ones(2), jac=lambda x: 2 * x,
                   method="adam", options={"maxiter": 5})
    assert res.fun > 0.25 and np.isfinite(res.fun)


def test_a_non_finite_gradient_at_x0_does_not_blame_the_step_size():
    res = minimize(lambda x: float(x @ x), np.ones(2), jac=lambda x: np.full(2, np.nan), method="sgd")
    assert res.nit == 0 and not res.success
    assert "before the first step: the gradient at x0 is not finite; check jac" in res.message
    assert "lr" not in res.message


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), "25"])
def test_ill_conditioned_quadratic_names_a_bad_argument(bad):
    # (a NaN failed quadratic's symmetry check, whose message blamed the 2 x 2 matrix's shape)
    with pytest.raises(ValueError, match="condition_number must be a finite real number"):
        ill_conditioned_quadratic(bad)


def test_without_return_path_the_iterates_are_not_kept():
    # every iterate was copied into the path and dropped at the end: 400 steps of 10^5 coordinates held 325 MB
    import tracemalloc

    n = 100_000
    tracemalloc.start()
    try:
        res = minimize(lambda x: float(x @ x), np.ones(n), jac=lambda x: 2 * x, method="sgd",
                       options={"lr": 1e-3, "maxiter": 200, "gtol": 0.0})
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert res.nit == 200 and "xs" not in res
    assert peak < 20 * 8 * n  # a few iterates' worth (the step's temporaries), not 200


def test_the_demo_leaves_numpys_print_options_alone(capsys):
    from fastopt import __main__ as cli

    before = np.get_printoptions()
    assert cli.main(["demo"]) == 0
    assert np.get_printoptions() == before
    assert "lsqr" in capsys.readouterr().out


def test_a_callback_that_is_not_callable_is_refused_before_any_call():
    calls = []

    def f(x):
        calls.append(1)
        return float(x @ x)

    with pytest.raises(TypeError, match="callback must be callable"):
        minimize(f, [1.0, 2.0], callback=3)
    assert not calls


@pytest.mark.parametrize("jac", [np.array([1.0, 2.0]), np.array(0.0), 0, 0.0, [1.0, 2.0]])
def test_a_jac_of_no_accepted_kind_names_the_choices(jac):
    # (an array, a gradient value passed by mistake, raised NumPy's "truth value of an array ... is ambiguous";
    # 0, 0.0 and a 0-d zero array compared equal to False and silently chose finite differences)
    with pytest.raises(ValueError, match="jac must be a callable, True, '2-point', '3-point' or None, got"):
        minimize(lambda x: float(x @ x), [1.0, 2.0], jac=jac, method="sgd")


@pytest.mark.parametrize("pair", [tuple, list, lambda fg: np.array(fg, dtype=object)])
def test_jac_true_takes_any_sequence_of_two_as_scipy_does(pair):
    # (a list [value, grad] was refused as "not a pair"; SciPy reads fg[0] and fg[1] of whatever fun returns)
    def fun(x):
        return pair((float(x @ x), 2 * x))

    res = minimize(fun, [1.0, 2.0], jac=True, method="cg")
    ref = scipy.optimize.minimize(fun, [1.0, 2.0], jac=True, method="CG")
    assert res.success and ref.success
    np.testing.assert_array_equal(res.x, [0.0, 0.0])  # CG's first line search is exact on x @ x
    # 1-D: a float array [f, f'] is such a pair too
    res = minimize(lambda x: np.array([x[0] ** 2, 2 * x[0]]), [1.0], jac=True, method="cg")
    assert res.success and res.x[0] == 0.0


@pytest.mark.parametrize("out, got", [((1.0, np.zeros(2), 0), "tuple of length 3"), (1.0, "float"),
                                      ("ab", "str"), (np.zeros(3), r"an array of shape \(3,\)"),
                                      (np.zeros((3, 2)), r"an array of shape \(3, 2\)")])
def test_jac_true_names_what_fun_returned_instead_of_a_pair(out, got):
    with pytest.raises(ValueError, match=rf"with jac=True, fun must return a pair \(value, gradient\), got {got}\."):
        minimize(lambda x: out, [1.0, 2.0], jac=True, method="sgd")


@pytest.mark.parametrize("method", ["sgd", "newton", "cg"])
def test_an_option_name_that_is_no_string_names_options(method):
    # (a first-order method passed it on as **kwargs: Python's bare "keywords must be strings"; Newton and CG
    # sorted the unknown names, and {1: 2, 'a': 3} raised "'<' not supported between 'str' and 'int'")
    for options in ({1: 2}, {1: 2, "a": 3}):
        with pytest.raises(TypeError, match=r"options keys must be option names \(strings\), got 1\."):
            minimize(lambda x: float(x @ x), [1.0, 2.0], jac=lambda x: 2 * x, method=method, options=options)


def test_a_keyword_only_intermediate_result_callback_is_called_by_keyword_as_scipy_does():
    # (minimize passed the result positionally: `def cb(*, intermediate_result)` raised TypeError; SciPy calls
    # callback(intermediate_result=res) whenever that is the only parameter)
    ours, scipys = [], []

    def cb(*, intermediate_result):
        ours.append(intermediate_result.fun)

    def cb_scipy(*, intermediate_result):
        scipys.append(intermediate_result.fun)

    res = minimize(lambda x: float(x @ x), [1.0, 2.0], jac=lambda x: 2 * x, method="cg", callback=cb)
    scipy.optimize.minimize(lambda x: float(x @ x), [1.0, 2.0], jac=lambda x: 2 * x, method="CG", callback=cb_scipy)
    assert ours == scipys == [res.fun] == [0.0]  # one exact line search on x @ x, by both


@pytest.mark.parametrize("jac", [True, "2-point", "3-point"])
def test_gradient_evaluations_count_in_njev_as_scipy_counts_them(jac):
    # (njev stayed 0 with jac=True or finite differences; SciPy counts every gradient in njev, and the calls of
    # fun made for it in nfev as well). CG on x @ x takes the same steps as SciPy's CG: compare the counts.
    calls = []

    def f(x):
        calls.append(1)
        return float(x @ x)

    def fg(x):
        calls.append(1)
        return float(x @ x), 2 * x

    fun = fg if jac is True else f
    ours = minimize(fun, [1.0, 2.0], jac=jac, method="cg")
    n_ours = len(calls)
    calls.clear()
    ref = scipy.optimize.minimize(fun, [1.0, 2.0], jac=jac, method="CG")
    assert (ours.nit, ours.nfev, ours.njev) == (ref.nit, ref.nfev, ref.njev)
    assert ours.nfev == n_ours and ref.nfev == len(calls)
    assert ours.njev == 3  # x0 and two trial points


@pytest.mark.parametrize("scale", [1.0, 1e-16, 1e-200, 1e16])
def test_newtons_singularity_test_is_relative_to_the_hessians_scale(scale):
    # f = s |x - 1|^2: the Hessian 2 s I is as regular at s = 1e-16 as at 1 (an absolute floor of 1 in the test
    # called 2e-16 I singular, status 4 before the first step). One exact step lands on (1, 1): the quotient
    # -2s / 2s is exactly -1.
    def run(hess, **options):
        return minimize(lambda x: scale * float((x - 1) @ (x - 1)), [0.0, 0.0], jac=lambda x: 2 * scale * (x - 1),
                        hess=hess, method="newton", options={"gtol": 0.0, "maxiter": 3, **options})

    res = run(lambda x: 2 * scale * np.eye(2))
    assert res.status == Status.GTOL and res.nit == 1
    np.testing.assert_array_equal(res.x, [1.0, 1.0])
    # A singular Hessian, or one whose small eigenvalue is below rounding (1e-17 of the largest, under
    # n eps = 4.4e-16), stays singular at every scale; alpha of the Hessian's size makes it regular.
    for small in (0.0, 1e-17):
        assert run(lambda x, small=small: scale * np.diag([2.0, small])).status == Status.SINGULAR
    assert run(lambda x: scale * np.diag([2.0, 0.0]), alpha=scale).status != Status.SINGULAR


def test_newton_refuses_to_difference_a_minibatch_gradient_but_takes_a_stochastic_one_with_hess():
    from fastopt.functions import ILL_CONDITIONED as obj

    jac = obj.minibatch_gradient(noise=1.0, batch_size=4)
    with pytest.raises(ValueError, match="stochastic gradient"):
        minimize(obj.fun, obj.x0, jac=jac, method="newton")
    res = minimize(obj.fun, obj.x0, jac=jac, hess=obj.hess, method="newton", options={"maxiter": 3, "seed": 0})
    assert res.nit == 3 and res.nhev == 3
