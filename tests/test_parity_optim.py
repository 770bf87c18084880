"""Compiled optimizer kernels against their NumPy twins in fastopt._reference.

Tolerances: the step rules are element-wise with the same operation order in C and NumPy, so a single step
agrees bit for bit. The epoch differs only in summation order and fused multiply-adds (C: per-row dot products
in vector lanes, with FMA in the AVX2 copy, and running gradient sums of each half-minibatch; NumPy: BLAS matrix
products of the same halves), each step contributing a relative error of at most about (d + batch_size) * eps,
accumulated over the steps taken. The epoch tests run for every instruction-set copy the CPU has. The bound used is
(d + batch_size) * n_steps * eps relative to the largest entry, with eps the dtype's machine epsilon.

That bound assumes a well-conditioned problem. On random small problems (the property test) a gradient entry
can be a sum with cancellation, whose small relative rounding error the scale-free rules (AdaGrad, RMSProp,
Adam) pass on whole into the step. There the test adds the problem's own sensitivity: rounding errors of the
two implementations are backward errors, i.e. exact results for inputs perturbed by about (d + batch_size) * eps
relative; so the reference is rerun on X and Y perturbed by that much (random signs, a few draws) and the
largest change of each entry, times a safety factor of 4, is added to that entry's tolerance.
"""
import dataclasses
import inspect

import numpy as np
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from fastopt import _kernels, _reference, optim
from fastopt._iterative import EpochCtl

OPTIMIZER_NAMES = ("step", "clip_grad_norm", "epoch")

# Every rule, with its non-default options switched on where it has them.
SPECS = {
    "sgd": optim.SGD(weight_decay=0.05),
    "momentum": optim.Momentum(momentum=0.8, dampening=0.3, weight_decay=0.05),
    "nesterov": optim.Nesterov(momentum=0.8, weight_decay=0.05),
    "adagrad": optim.AdaGrad(lr_decay=0.01, weight_decay=0.05, initial_accumulator_value=0.1),
    "rmsprop": optim.RMSProp(rho=0.9, weight_decay=0.05),
    "rmsprop-centered-momentum": optim.RMSProp(rho=0.9, momentum=0.5, centered=True),
    "adam": optim.Adam(weight_decay=0.05),
    "adam-amsgrad": optim.Adam(amsgrad=True),
    "adamw": optim.AdamW(weight_decay=0.05),
}
DTYPES = (np.float64, np.float32)


def test_every_kernel_has_a_reference_twin_with_the_same_signature():
    public = {n for n in dir(_kernels) if not n.startswith("_") and inspect.isroutine(getattr(_kernels, n))}
    assert set(OPTIMIZER_NAMES) <= public
    for name in public:
        assert hasattr(_reference, name), f"_reference lacks a twin of _kernels.{name}"
    for name in OPTIMIZER_NAMES:
        kernel_args = list(inspect.signature(getattr(_kernels, name)).parameters)
        assert kernel_args == list(inspect.signature(getattr(_reference, name)).parameters), name


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", SPECS)
def test_steps_agree_bit_for_bit(name, dtype):
    spec, rng = SPECS[name], np.random.default_rng(0)
    w = rng.normal(size=9).astype(dtype)
    s = spec.init_state(9, dtype)
    w_ref, s_ref = w.copy(), s.copy()
    for t in range(1, 30):
        g = rng.normal(size=9).astype(dtype)
        assert _kernels.step(int(spec.rule), spec.hyper, w, g, s, t, 0.05, 6) == 0
        _reference.step(int(spec.rule), spec.hyper, w_ref, g, s_ref, t, 0.05, 6)
    np.testing.assert_array_equal(w, w_ref)
    np.testing.assert_array_equal(s, s_ref)


@pytest.mark.parametrize("dtype", DTYPES)
def test_centred_rmsprop_under_a_steady_gradient_stays_finite(dtype):
    """Under a steady gradient ``a*a -> r`` and rounding makes ``r - a*a`` negative (float32: at step 140 for
    ``g = 0.37``): its root was NaN and the fit raised DivergenceError. It is taken as 0, in both twins."""
    spec = optim.RMSProp(rho=0.9, centered=True)
    g = np.array([0.37, 1.3, 2.9e-3, -0.37, 1.0, 0.1], dtype)
    w, s = np.zeros(6, dtype), spec.init_state(6, dtype)
    w_ref, s_ref = w.copy(), s.copy()
    for t in range(1, 2001):
        assert _kernels.step(int(spec.rule), spec.hyper, w, g, s, t, 1e-3, 6) == 0
        _reference.step(int(spec.rule), spec.hyper, w_ref, g, s_ref, t, 1e-3, 6)
    assert np.all(np.isfinite(w))
    np.testing.assert_array_equal(w, w_ref)
    np.testing.assert_array_equal(s, s_ref)


def test_unknown_rule_is_a_status_not_a_crash():
    w, g, s = np.zeros(2), np.ones(2), np.zeros((3, 2))
    hyper = optim.Hyper()
    assert _kernels.step(99, hyper, w, g, s, 1, 0.1) == _reference.step(99, hyper, w, g, s, 1, 0.1) == 3


def _run(impl, spec, train, X, Y, sw, orders, lrs, fit_intercept=True):
    """Epochs from zeros with ``impl`` (_kernels or _reference): (params, state, t, losses), or None if an epoch
    did not end OK."""
    k, d = Y.shape[1], X.shape[1]
    n_params = k * d + (k if fit_intercept else 0)
    params, state = np.zeros(n_params, X.dtype), spec.init_state(n_params, X.dtype)
    work, t, losses = np.empty(6 * n_params + 2 * k, X.dtype), 0, []
    for order, lr in zip(orders, lrs):
        status, t, loss, bad = impl.epoch(int(spec.rule), spec.hyper, train, X, Y, sw, order, params, state,
                                          work, t, lr)
        if status != 0 or bad != 0:
            return None
        losses.append(loss)
    return params, state, t, np.array(losses)


def _run_both(spec, train, X, Y, sw, orders, lrs, fit_intercept=True):
    out = [_run(impl, spec, train, X, Y, sw, orders, lrs, fit_intercept) for impl in (_kernels, _reference)]
    assert out[0] is not None and out[1] is not None, "an epoch did not end OK"
    return out


def _assert_close(a, b, tol, what, sensitivity=0.0):
    scale = max(float(np.max(np.abs(b))), 1e-30) if b.size else 1.0
    np.testing.assert_array_less(np.abs(a - b), tol * scale + 4 * sensitivity + np.finfo(b.dtype).tiny,
                                 err_msg=what)


def _reference_sensitivity(spec, train, X, Y, sw, orders, lrs, fit_intercept, rel, rng, draws=4):
    """The largest change of the reference's (params, state, losses) over ``draws`` runs on X and Y perturbed
    by ``rel`` relative, with random signs: how far rounding-level input changes move this problem's result."""
    def run(X, Y):  # (params, state, losses) of the reference, or None if an epoch failed
        out = _run(_reference, spec, train, X, Y, sw, orders, lrs, fit_intercept)
        return None if out is None else (out[0], out[1], out[3])

    base = run(X, Y)
    worst = [np.zeros_like(b) for b in base]
    for _ in range(draws):
        Xp = (X * (1 + rel * rng.choice([-1.0, 1.0], size=X.shape))).astype(X.dtype)
        Yp = (Y * (1 + rel * rng.choice([-1.0, 1.0], size=Y.shape))).astype(Y.dtype)
        other = run(Xp, Yp)
        if other is not None:
            worst = [np.maximum(w, np.abs(o.astype(np.float64) - b)) for w, o, b in zip(worst, other, base)]
    return worst


@pytest.fixture(params=["baseline", "avx2"])
def simd(request):
    """Run the kernels with one instruction-set copy (skipped when the CPU lacks it), then restore the best."""
    if _kernels.simd(request.param) != request.param:
        _kernels.simd("best")
        pytest.skip(f"this CPU has no {request.param} copy")
    yield request.param
    _kernels.simd("best")


@pytest.mark.parametrize("schedule", sorted(optim.SCHEDULES))
@pytest.mark.parametrize("loss", list(optim.Loss))
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", SPECS)
def test_epochs_agree(name, dtype, loss, schedule, simd, epoch_problem):
    rng = np.random.default_rng(1)
    n, d, k, batch, epochs = 150, 6, 2, 16, 4
    X, Y, sw = epoch_problem(rng, n, d, k, dtype, weighted=True)
    spec = SPECS[name]
    train = EpochCtl(batch_size=batch, loss=loss, epsilon=1.0, clip_norm=5.0, loss_limit=1e12)
    orders = [rng.permutation(n).astype(np.int64) for _ in range(epochs)]
    lrs = [optim.schedule_lr(schedule, 0.02, e, epochs) for e in range(epochs)]
    (p, s, t, losses), (p_ref, s_ref, t_ref, losses_ref) = _run_both(spec, train, X, Y, sw, orders, lrs)
    n_steps = epochs * -(-n // batch)
    tol = (d + batch) * n_steps * np.finfo(dtype).eps
    assert t == t_ref == n_steps
    _assert_close(p, p_ref, tol, "params")
    _assert_close(s, s_ref, tol, "state")
    _assert_close(losses, losses_ref, tol, "epoch losses")


@given(
    n=st.integers(1, 60),
    d=st.integers(1, 12),
    k=st.integers(1, 3),
    batch=st.integers(1, 70),
    name=st.sampled_from(sorted(SPECS)),
    dtype=st.sampled_from(DTYPES),
    weighted=st.booleans(),
    fit_intercept=st.booleans(),
    seed=st.integers(0, 2**32 - 1),
)
# Found by hypothesis: a gradient entry summed with cancellation, whose rounding Adam's scale-free step passes
# on whole; the results differ by about 1.4x the well-conditioned bound, within the sensitivity-widened one.
@example(n=2, d=5, k=2, batch=2, name="adam", dtype=np.float64, weighted=True, fit_intercept=True, seed=5421771)
def test_epoch_property(n, d, k, batch, name, dtype, weighted, fit_intercept, seed, epoch_problem):
    rng = np.random.default_rng(seed)
    X, Y, sw = epoch_problem(rng, n, d, k, dtype, weighted)
    train = EpochCtl(batch_size=batch, loss=optim.Loss.SQUARED_ERROR, epsilon=1.0, clip_norm=None, loss_limit=1e12)
    orders = [rng.permutation(n).astype(np.int64) for _ in range(2)]
    (p, s, t, losses), (p_ref, s_ref, t_ref, losses_ref) = _run_both(
        SPECS[name], train, X, Y, sw, orders, [0.01, 0.01], fit_intercept
    )
    tol = (d + batch) * t * np.finfo(dtype).eps
    assert t == t_ref == 2 * -(-n // batch)
    sens = _reference_sensitivity(SPECS[name], train, X, Y, sw, orders, [0.01, 0.01], fit_intercept,
                                  (d + batch) * np.finfo(dtype).eps, rng)
    _assert_close(p, p_ref, tol, "params", sens[0])
    _assert_close(s, s_ref, tol, "state", sens[1])
    _assert_close(losses, losses_ref, tol, "epoch losses", sens[2])


@pytest.mark.parametrize("impl", [_kernels, _reference])
def test_epoch_reports_divergence_with_the_step(impl):
    X = np.ones((8, 1))
    Y = np.ones((8, 1))
    spec = optim.SGD()
    params, state, work = np.zeros(2), spec.init_state(2), np.empty(6 * 2 + 2)
    train = EpochCtl(batch_size=2, loss=optim.Loss.SQUARED_ERROR, epsilon=1.0, clip_norm=None, loss_limit=1e3)
    # lr = 10 on a curvature-2 problem multiplies the residual by -19 per step: the loss passes 1e3 at step 3.
    status, t, _, bad = impl.epoch(0, spec.hyper, train, X, Y, None, np.arange(8), params, state, work, 0, 10.0)
    assert (status, t, bad) == (2, 2, 3)
    train = train._replace(loss_limit=np.inf)
    X[5] = np.inf
    params[:] = 0
    status, t, _, bad = impl.epoch(0, spec.hyper, train, X, Y, None, np.arange(8), params, state, work, 10, 1e-3)
    assert (status, t, bad) == (1, 12, 13)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("loss", list(optim.Loss))
@pytest.mark.parametrize("k", [1, 3])
@pytest.mark.parametrize("subset", [False, True])
@pytest.mark.parametrize("weighted", [False, True])
def test_mean_loss_zero_matches_its_twin(dtype, loss, k, subset, weighted, simd):
    # The twin adds the same float64 terms in the kernel's order (targets in order, eight sums by row position,
    # a fixed tree): the same bits.
    rng = np.random.default_rng(3)
    Y = (3 * rng.normal(size=(1001, k))).astype(dtype)
    rows = rng.permutation(1001)[:700].astype(np.int64) if subset else None
    sw = rng.uniform(0, 2, size=1001).astype(dtype) if weighted else None
    got = _kernels.mean_loss_zero(Y, rows, sw, int(loss), 1.35)
    want = _reference.mean_loss_zero(Y, rows, sw, int(loss), 1.35)
    assert got == want  # the same operations in the same order
    Y[rows[0] if subset else 500, k - 1] = np.nan
    assert np.isnan(_kernels.mean_loss_zero(Y, rows, sw, int(loss), 1.35))


def test_mean_loss_zero_rejects_bad_arguments():
    Y = np.ones((5, 1))
    for impl in (_kernels, _reference):
        with pytest.raises(ValueError, match="outside"):
            impl.mean_loss_zero(Y, np.array([0, 5], dtype=np.int64), None, 0, 1.35)
        with pytest.raises(ValueError, match="sample_weight"):
            impl.mean_loss_zero(Y, None, np.ones(4), 0, 1.35)
        with pytest.raises(ValueError, match="no rows"):
            impl.mean_loss_zero(Y, np.empty(0, dtype=np.int64), None, 0, 1.35)


# The coupled rules without their own weight decay, for the per-weight decay (EpochCtl.decay, the ridge under a
# per-column scaling).
DECAY_SPECS = {
    "sgd": optim.SGD(),
    "momentum": optim.Momentum(momentum=0.8, dampening=0.3),
    "nesterov": optim.Nesterov(momentum=0.8),
    "adagrad": optim.AdaGrad(lr_decay=0.01, initial_accumulator_value=0.1),
    "rmsprop-centered-momentum": optim.RMSProp(rho=0.9, momentum=0.5, centered=True),
    "adam-amsgrad": optim.Adam(amsgrad=True),
}


def _run_decay(impl, spec, train, X, Y, sw, orders, lr, decay, n_threads=1):
    k, d = Y.shape[1], X.shape[1]
    n_params = k * d + k
    params, state = np.zeros(n_params, X.dtype), spec.init_state(n_params, X.dtype)
    work, t, losses = np.empty(6 * n_params + 2 * k, X.dtype), 0, []
    for order in orders:
        status, t, loss, bad = impl.epoch(int(spec.rule), spec.hyper, train, X, Y, sw, order, params, state,
                                          work, t, lr, n_threads, decay=decay)
        assert status == 0 and bad == 0
        losses.append(loss)
    return params, state, np.array(losses)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", DECAY_SPECS)
def test_per_weight_decay_epochs_agree(name, dtype, simd, epoch_problem):
    """The kernel's per-weight decay (``lambda_p w_p`` added to the clipped minibatch gradient before the rule)
    against its twin, on one thread and two (the same bits); and a decay of one value for every weight against
    the rule's own weight decay of that value (the same sums in another order: the epoch tolerance)."""
    rng = np.random.default_rng(3)
    n, d, k, batch, epochs = 150, 6, 2, 16, 3
    X, Y, sw = epoch_problem(rng, n, d, k, dtype, weighted=True)
    spec = DECAY_SPECS[name]
    train = EpochCtl(batch_size=batch, loss=optim.Loss.SQUARED_ERROR, epsilon=1.0, clip_norm=5.0, loss_limit=1e12)
    orders = [rng.permutation(n).astype(np.int64) for _ in range(epochs)]
    decay = rng.uniform(0.01, 1.0, size=k * d).astype(dtype)
    tol = (d + batch) * epochs * -(-n // batch) * np.finfo(dtype).eps
    one = _run_decay(_kernels, spec, train, X, Y, sw, orders, 0.02, decay)
    two = _run_decay(_kernels, spec, train, X, Y, sw, orders, 0.02, decay, n_threads=2)
    twin = _run_decay(_reference, spec, train, X, Y, sw, orders, 0.02, decay)
    for a, b, c, what in zip(one, two, twin, ("params", "state", "epoch losses")):
        np.testing.assert_array_equal(a, b, err_msg=what)
        _assert_close(a, c, tol, what)
    plain = _run_decay(_kernels, spec, train, X, Y, sw, orders, 0.02, None)
    assert np.max(np.abs(one[0] - plain[0])) > 100 * tol * np.max(np.abs(plain[0]))  # the decay acts
    uniform = _run_decay(_kernels, spec, train, X, Y, sw, orders, 0.02, np.full(k * d, 0.3, dtype=dtype))
    coupled = dataclasses.replace(spec, weight_decay=0.3)
    own = _run_decay(_kernels, coupled, train, X, Y, sw, orders, 0.02, None)
    _assert_close(uniform[0], own[0], tol, "params")


def test_per_weight_decay_is_checked():
    rng = np.random.default_rng(4)
    X, Y = rng.normal(size=(20, 3)), rng.normal(size=(20, 1))
    train = EpochCtl(batch_size=4, loss=optim.Loss.SQUARED_ERROR, epsilon=1.0, clip_norm=None, loss_limit=1e12)
    order = np.arange(20, dtype=np.int64)
    for spec, decay, match in ((optim.SGD(), np.ones(2), "decay needs k \\* d = 3"),
                               (optim.SGD(weight_decay=0.1), np.ones(3), "exclusive")):
        for impl in (_kernels, _reference):
            with pytest.raises(ValueError, match=match):
                impl.epoch(int(spec.rule), spec.hyper, train, X, Y, None, order, np.zeros(4),
                           spec.init_state(4, np.float64), np.empty(26), 0, 0.1, decay=decay)


@given(n=st.integers(0, 300), dtype=st.sampled_from([np.float32, np.float64]), seed=st.integers(0, 2**32 - 1))
def test_weighted_square_sum_matches_its_twin_and_the_exact_sum(n, dtype, seed):
    """``weighted_square_sum`` bit for bit against its twin, and against the exact sum of the same float64 terms
    (``math.fsum``): its terms are nonnegative (weights >= 0), so four partial sums, each running, are within
    ``(n + 2) eps`` of it relative (each product rounds twice, ``2 eps``; each addition once, at most ``n / 4 + 2``
    of them on a term's path)."""
    import math

    rng = np.random.default_rng(seed)
    w = (rng.random(n) * 10.0 ** rng.integers(-3, 4)).astype(dtype)
    x = (rng.standard_normal(n) * 10.0 ** rng.integers(-3, 4, n)).astype(dtype)
    got = _kernels.weighted_square_sum(w, x)
    assert got == _reference.weighted_square_sum(w, x)  # the twin: the same operations in the same order
    exact = math.fsum(float(a) * float(b) * float(b) for a, b in zip(w, x, strict=True))
    assert abs(got - exact) <= (n + 2) * np.finfo(np.float64).eps * exact


@pytest.mark.parametrize("module", [_kernels, _reference])
def test_weighted_square_sum_names_a_length_mismatch(module):
    with pytest.raises(ValueError, match="weight has 3 entries, x 2"):
        module.weighted_square_sum(np.ones(3), np.ones(2))
