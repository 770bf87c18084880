"""fastopt.optim: enums pinned to C, spec validation, one step of each rule against hand-computed values,
schedules and clipping."""
import math
import os
import pathlib
import re

import numpy as np
import pytest

from fastopt import LinearRegressor, optim

HEADER = pathlib.Path(__file__).resolve().parent.parent / "csrc" / "fastopt.h"


def _c_enum(prefix):
    text = HEADER.read_text()
    return {name: int(value) for name, value in re.findall(rf"\b{prefix}(\w+)\s*=\s*(\d+)", text)}


def test_rule_enum_pinned_to_c_header():
    assert _c_enum("FO_RULE_") == {r.name: r.value for r in optim.Rule}
    assert set(optim.OPTIMIZERS) == {r.name.lower() for r in optim.Rule}
    assert {name: cls.rule for name, cls in optim.OPTIMIZERS.items()} == {r.name.lower(): r for r in optim.Rule}


def test_loss_enum_pinned_to_c_header():
    c = _c_enum("FO_LOSS_")
    assert c == {"SQUARED": 0, "ABSOLUTE": 1, "HUBER": 2}
    assert {r.name: r.value for r in optim.Loss} == {"SQUARED_ERROR": 0, "ABSOLUTE_ERROR": 1, "HUBER": 2}


def test_state_slots_fit_the_c_maximum():
    from fastopt import _kernels

    assert max(cls.n_slots for cls in optim.OPTIMIZERS.values()) == _kernels.MAX_SLOTS


@pytest.mark.parametrize(
    "method, kwargs, match",
    [
        ("lbfgs", {}, "unknown optimizer 'lbfgs'"),
        (None, {}, "unknown optimizer None"),
        ("adam", {"betas": (0.9, 0.99)}, "Adam has no hyperparameter 'betas'"),
        ("adam", {"beta1": 1.0}, r"beta1 must lie in \[0.0, 1.0\)"),
        ("adam", {"eps": 0.0}, r"eps must lie in \(0.0, inf\)"),
        ("sgd", {"weight_decay": -1}, "weight_decay must lie"),
        ("sgd", {"weight_decay": float("nan")}, "finite real number"),
        ("momentum", {"momentum": "0.9"}, "finite real number"),
        ("nesterov", {"momentum": 0.0}, r"momentum must lie in \(0.0, 1.0\)"),
        ("rmsprop", {"centered": 1}, "centered must be True or False"),
        ("adagrad", {"initial_accumulator_value": -0.1}, "initial_accumulator_value must lie"),
    ],
)
def test_make_rejects_bad_input(method, kwargs, match):
    with pytest.raises(ValueError, match=match):
        optim.make(method, **kwargs)


def test_make_defaults_are_pytorchs():
    assert optim.make("adam") == optim.Adam(beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0, amsgrad=False)
    assert optim.make("adamw").weight_decay == 0.01
    assert optim.make("adagrad").eps == 1e-10
    assert optim.make("rmsprop").rho == 0.99
    assert optim.make("momentum", dampening=0.5).hyper.dampening == 0.5


def test_init_state_shapes_and_adagrad_initial_value():
    for name, cls in optim.OPTIMIZERS.items():
        s = optim.make(name).init_state(4, np.float32)
        assert s.shape == (cls.n_slots, 4) and s.dtype == np.float32 and not s.any()
    assert np.all(optim.make("adagrad", initial_accumulator_value=0.5).init_state(3) == 0.5)
    with pytest.raises(ValueError, match="float32 or float64"):
        optim.make("sgd").init_state(3, np.int64)


def _run(opt, grads, w0=(1.0, -2.0), lr=0.1, n_decay=None, dtype=np.float64):
    w = np.array(w0, dtype=dtype)
    state = opt.init_state(w.size, dtype)
    for t, g in enumerate(grads, start=1):
        opt.step(w, np.array(g, dtype=dtype), state, t, lr, n_decay=n_decay)
    return w, state


G = (0.5, 1.0)


def test_sgd_one_step_with_decay_on_leading_entries_only():
    w, _ = _run(optim.SGD(weight_decay=0.1), [G], n_decay=1)
    # g' = (0.5 + 0.1 * 1, 1.0): the second entry (an intercept) is not decayed.
    np.testing.assert_allclose(w, [1 - 0.1 * 0.6, -2 - 0.1 * 1.0], rtol=1e-15)


def test_momentum_first_step_undampened_then_dampened():
    w, s = _run(optim.Momentum(momentum=0.9, dampening=0.5), [G, G])
    v2 = 0.9 * np.array(G) + 0.5 * np.array(G)  # buffer after step 2 (step 1 sets it to g, as PyTorch)
    np.testing.assert_allclose(s[0], v2, rtol=1e-15)
    np.testing.assert_allclose(w, np.array([1.0, -2.0]) - 0.1 * np.array(G) - 0.1 * v2, rtol=1e-15)


def test_nesterov_look_ahead():
    w, s = _run(optim.Nesterov(momentum=0.9), [G])
    np.testing.assert_allclose(w, np.array([1.0, -2.0]) - 0.1 * 1.9 * np.array(G), rtol=1e-15)
    np.testing.assert_allclose(s[0], G, rtol=1e-15)


def test_adagrad_normalises_and_decays_lr():
    w, s = _run(optim.AdaGrad(lr_decay=1.0), [G, G])
    # Step 1: lr * g / |g|; step 2: lr / (1 + 1) * g / (sqrt(2) |g|).
    expected = np.array([1.0, -2.0]) - (0.1 + 0.05 / math.sqrt(2)) * np.sign(G)
    np.testing.assert_allclose(w, expected, rtol=1e-9)
    np.testing.assert_allclose(s[0], 2 * np.square(G), rtol=1e-15)


@pytest.mark.parametrize("centered, step", [(False, math.sqrt(0.1)), (True, 0.1 / 0.3)])
def test_rmsprop_one_step(centered, step):
    # r = 0.1 g^2; centred: a = 0.1 g, r - a^2 = 0.09 g^2. The step is lr / sqrt(.) per unit sign.
    w, s = _run(optim.RMSProp(rho=0.9, eps=1e-12, centered=centered), [G])
    np.testing.assert_allclose(w, np.array([1.0, -2.0]) - step * np.sign(G), rtol=1e-9)
    np.testing.assert_allclose(s[0], 0.1 * np.square(G), rtol=1e-15)


def test_rmsprop_momentum_buffer():
    w, s = _run(optim.RMSProp(rho=0.9, eps=1e-12, momentum=0.5), [G, G])
    den1, den2 = math.sqrt(0.1), math.sqrt(0.9 * 0.1 + 0.1)
    b2 = 0.5 / den1 + 1 / den2  # per unit |g|: b1 = g/den1, b2 = 0.5 b1 + g/den2
    np.testing.assert_allclose(s[2], b2 * np.sign(G), rtol=1e-9)
    np.testing.assert_allclose(w, np.array([1.0, -2.0]) - 0.1 * (1 / den1 + b2) * np.sign(G), rtol=1e-9)


def test_adam_first_step_is_lr_times_sign():
    w, s = _run(optim.Adam(), [G])
    np.testing.assert_allclose(w, np.array([1.0, -2.0]) - 0.1 * np.sign(G), rtol=1e-7)
    np.testing.assert_allclose(s[0], 0.1 * np.array(G), rtol=1e-15)
    np.testing.assert_allclose(s[1], 0.001 * np.square(G), rtol=1e-12)


def test_amsgrad_uses_the_running_maximum():
    b1, b2 = 0.9, 0.999
    grads = [G, (0.0, 0.0)]
    w, s = _run(optim.Adam(amsgrad=True, eps=1e-12), grads)
    m2 = b1 * (1 - b1) * np.array(G)
    vmax = (1 - b2) * np.square(G)  # v fell at step 2; the maximum keeps step 1's value
    den = np.sqrt(vmax) / math.sqrt(1 - b2**2)
    expected = np.array([1.0, -2.0]) - 0.1 * np.sign(G) - 0.1 / (1 - b1**2) * m2 / den
    np.testing.assert_allclose(s[2], vmax, rtol=1e-12)
    np.testing.assert_allclose(w, expected, rtol=1e-9)


def test_adamw_decay_is_decoupled():
    w, _ = _run(optim.AdamW(weight_decay=0.1), [G])
    np.testing.assert_allclose(w, np.array([1.0, -2.0]) * (1 - 0.1 * 0.1) - 0.1 * np.sign(G), rtol=1e-7)
    w_adam, _ = _run(optim.Adam(weight_decay=0.1), [G])
    assert not np.allclose(w, w_adam)


def test_step_rejects_mismatched_arrays():
    opt = optim.make("adam")
    w = np.zeros(3)
    with pytest.raises(ValueError, match="state must be"):
        opt.step(w, np.ones(3), np.zeros((3, 2)), 1, 0.1)
    with pytest.raises(ValueError, match="grad must have shape"):
        opt.step(w, np.ones(3, np.float32), opt.init_state(3), 1, 0.1)
    with pytest.raises(ValueError, match="1-based"):
        opt.step(w, np.ones(3), opt.init_state(3), 0, 0.1)
    with pytest.raises(ValueError, match="n_decay"):
        opt.step(w, np.ones(3), opt.init_state(3), 1, 0.1, n_decay=4)
    with pytest.raises(ValueError, match="lr"):
        opt.step(w, np.ones(3), opt.init_state(3), 1, -0.1)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_clip_grad_norm(dtype):
    g = np.array([3.0, 4.0], dtype=dtype)
    assert optim.clip_grad_norm(g, 10.0) == pytest.approx(5.0)
    np.testing.assert_array_equal(g, [3.0, 4.0])  # under the limit: untouched
    assert optim.clip_grad_norm(g, 1.0) == pytest.approx(5.0)
    np.testing.assert_allclose(g, np.array([0.6, 0.8]) * 5 / (5 + 1e-6), rtol=1e-6)
    with pytest.raises(ValueError, match="max_norm"):
        optim.clip_grad_norm(g, 0.0)


def test_schedules():
    lr = {name: [optim.schedule_lr(name, 1.0, k, 11, end_factor=0.1, power_t=0.5, gamma=0.5) for k in range(13)]
          for name in optim.SCHEDULES}
    assert lr["constant"] == [1.0] * 13
    np.testing.assert_allclose(lr["linear"], [1 - 0.09 * k for k in range(11)] + [0.1, 0.1])
    np.testing.assert_allclose(lr["invscaling"], [1 / math.sqrt(k + 1) for k in range(13)])
    np.testing.assert_allclose(lr["exponential"], [0.5**k for k in range(13)])
    assert lr["cosine"][0] == 1.0 and lr["cosine"][5] == pytest.approx(0.55) and lr["cosine"][10:] == [0.1] * 3
    with pytest.raises(ValueError, match="unknown schedule 'step'"):
        optim.schedule_lr("step", 1.0, 0, 10)


# ---------------------------------------------------------------- cross-check against torch.optim
TORCH_REASON = "PyTorch is not installed: the torch.optim cross-check needs it"


def _import_torch():
    """torch, or a skip; CI (``FASTOPT_REQUIRE_TORCH=1``, set by .ci/run) fails instead of skipping."""
    if os.environ.get("FASTOPT_REQUIRE_TORCH") == "1":
        import torch

        return torch
    return pytest.importorskip("torch", reason=TORCH_REASON)

TORCH_CASES = {
    "sgd": ({"weight_decay": 0.1}, "SGD", {"weight_decay": 0.1}),
    "momentum": ({"momentum": 0.8, "dampening": 0.2, "weight_decay": 0.1}, "SGD",
                 {"momentum": 0.8, "dampening": 0.2, "weight_decay": 0.1}),
    "nesterov": ({"momentum": 0.8, "weight_decay": 0.1}, "SGD", {"momentum": 0.8, "nesterov": True,
                                                                 "weight_decay": 0.1}),
    "adagrad": ({"lr_decay": 0.01, "initial_accumulator_value": 0.1, "eps": 1e-8, "weight_decay": 0.1}, "Adagrad",
                {"lr_decay": 0.01, "initial_accumulator_value": 0.1, "eps": 1e-8, "weight_decay": 0.1}),
    "rmsprop": ({"rho": 0.9, "momentum": 0.5, "centered": True, "weight_decay": 0.1}, "RMSprop",
                {"alpha": 0.9, "momentum": 0.5, "centered": True, "weight_decay": 0.1}),
    "adam": ({"beta1": 0.8, "beta2": 0.99, "amsgrad": True, "weight_decay": 0.1}, "Adam",
             {"betas": (0.8, 0.99), "amsgrad": True, "weight_decay": 0.1}),
    "adamw": ({"beta1": 0.8, "beta2": 0.99, "weight_decay": 0.1}, "AdamW", {"betas": (0.8, 0.99),
                                                                            "weight_decay": 0.1}),
}


def _torch_optimizer(torch, name, params, lr):
    _, cls, kwargs = TORCH_CASES[name]
    weights, intercept = params
    wd = kwargs.get("weight_decay", 0.0)
    groups = [{"params": [weights], "weight_decay": wd}, {"params": [intercept], "weight_decay": 0.0}]
    extra = {key: value for key, value in kwargs.items() if key != "weight_decay"}
    return getattr(torch.optim, cls)(groups, lr=lr, foreach=False, **extra)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("name", sorted(TORCH_CASES))
def test_steps_match_torch_optim_on_the_same_gradients(name, dtype):
    torch = _import_torch()
    rng = np.random.default_rng(0)
    spec = optim.make(name, **TORCH_CASES[name][0])
    w = rng.normal(size=6).astype(dtype)  # five weights, then an intercept (never decayed)
    tw = torch.tensor(w[:5].copy(), requires_grad=True)
    tb = torch.tensor(w[5:].copy(), requires_grad=True)
    opt = _torch_optimizer(torch, name, (tw, tb), lr=0.05)
    state = spec.init_state(6, dtype)
    for t in range(1, 41):
        lr = optim.schedule_lr("cosine", 0.05, t - 1, 40)
        g = rng.normal(size=6).astype(dtype)
        spec.step(w, g, state, t, lr, n_decay=5)
        for group in opt.param_groups:
            group["lr"] = lr
        tw.grad, tb.grad = torch.tensor(g[:5].copy()), torch.tensor(g[5:].copy())
        opt.step()
    # Same operations in the same order; torch may fuse some (addcdiv, lerp), so allow a few ulps per step.
    tol = 40 * 8 * np.finfo(dtype).eps
    np.testing.assert_allclose(w[:5], tw.detach().numpy(), rtol=tol, atol=tol)
    np.testing.assert_allclose(w[5:], tb.detach().numpy(), rtol=tol, atol=tol)


@pytest.mark.parametrize("loss", list(optim.Loss))
def test_epoch_matches_a_torch_training_loop(loss):
    torch = _import_torch()
    from fastopt import _kernels
    from fastopt._iterative import EpochCtl

    rng = np.random.default_rng(1)
    n, d, k, batch = 70, 4, 2, 16
    X, Y = rng.normal(size=(n, d)), rng.normal(size=(n, k))
    sw = rng.uniform(0.2, 2.0, size=n)
    sw /= sw.mean()
    order = rng.permutation(n).astype(np.int64)
    spec = optim.make("adam", weight_decay=0.05)
    params, state, work = np.zeros(k * d + k), spec.init_state(k * d + k), np.empty(6 * (k * d + k) + 2 * k)
    train = EpochCtl(batch_size=batch, loss=loss, epsilon=0.7, clip_norm=1.0, loss_limit=np.inf)
    status, t, _, _ = _kernels.epoch(int(spec.rule), spec.hyper, train, X, Y, sw, order, params, state, work, 0,
                                     0.03)
    assert status == 0 and t == 5

    W = torch.zeros((k, d), dtype=torch.float64, requires_grad=True)
    b = torch.zeros(k, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.Adam([{"params": [W], "weight_decay": 0.05}, {"params": [b], "weight_decay": 0.0}], lr=0.03,
                           foreach=False)
    per_sample = {
        optim.Loss.SQUARED_ERROR: lambda r: 0.5 * r**2,
        optim.Loss.ABSOLUTE_ERROR: lambda r: r.abs(),
        optim.Loss.HUBER: lambda r: torch.nn.functional.huber_loss(r, torch.zeros_like(r), reduction="none",
                                                                   delta=0.7),
    }[loss]
    for start in range(0, n, batch):
        rows = torch.as_tensor(order[start : start + batch])
        r = torch.as_tensor(X)[rows] @ W.T + b - torch.as_tensor(Y)[rows]
        # The documented objective: targets summed, rows averaged with weights of mean 1.
        objective = (torch.as_tensor(sw)[rows] * per_sample(r).sum(1)).mean()
        opt.zero_grad()
        objective.backward()
        torch.nn.utils.clip_grad_norm_([W, b], 1.0)
        opt.step()
    np.testing.assert_allclose(params[: k * d], W.detach().numpy().ravel(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(params[k * d :], b.detach().numpy(), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("dampening", [0.0, 0.5, 0.9])
def test_zero_momentum_ignores_dampening_as_pytorch(dampening):
    # torch.optim.SGD keeps no buffer when momentum == 0 (its algorithm's "if mu != 0"), so its steps are plain
    # SGD's whatever the dampening; a dampened buffer b <- (1 - tau) g shrank every step after the first.
    rng = np.random.default_rng(0)
    grads = rng.normal(size=(5, 4))
    momentum, sgd = optim.make("momentum", momentum=0.0, dampening=dampening), optim.make("sgd")
    w_m, w_s = np.zeros(4), np.zeros(4)
    s_m, s_s = momentum.init_state(4), sgd.init_state(4)
    for t, g in enumerate(grads, start=1):
        momentum.step(w_m, g.copy(), s_m, t, 0.1)
        sgd.step(w_s, g.copy(), s_s, t, 0.1)
        np.testing.assert_array_equal(w_m, w_s)
    X = rng.normal(size=(300, 3))
    y = X @ np.array([1.0, 2.0, 3.0])
    kw = dict(learning_rate=0.01, schedule="constant", max_epochs=3, random_state=0, tol=None)
    fit_m = LinearRegressor(solver="momentum", momentum=0.0, dampening=dampening, **kw).fit(X, y)
    np.testing.assert_array_equal(fit_m.coef_, LinearRegressor(solver="sgd", **kw).fit(X, y).coef_)


@pytest.mark.parametrize("t, error", [(float("inf"), TypeError), (1.7, TypeError), (True, TypeError),
                                      (2**70, ValueError), (0, ValueError), (-3, ValueError)])
def test_step_count_must_be_a_positive_integer(t, error):
    # 1.7 and True ran as step 1 (bias corrections of another step), inf and 2**70 raised OverflowError
    opt = optim.make("adam")
    p, g, s = np.ones(2), np.ones(2), opt.init_state(2)
    with pytest.raises(error, match="t \\(the 1-based step count\\)"):
        opt.step(p, g, s, t, 0.1)
    np.testing.assert_array_equal(p, np.ones(2))  # nothing stepped
    opt.step(p, g, s, np.int64(1), 0.1)  # NumPy integers are integers


@pytest.mark.parametrize("args, error, match", [
    (("invscaling", 0.1, -1, 10), ValueError, "epoch"),  # ZeroDivisionError
    (("cosine", float("nan"), 1, 10), ValueError, "lr0"),  # NaN
    (("linear", -0.1, 1, 10), ValueError, "lr0"),
    (("linear", 0.1, 2.5, 10), TypeError, "epoch"),
    (("cosine", 0.1, 1, -1), ValueError, "max_epochs"),
])
def test_schedule_lr_rejects_bad_arguments(args, error, match):
    with pytest.raises(error, match=match):
        optim.schedule_lr(*args)


def test_counts_and_reals_beyond_float_range_get_a_clear_error():
    spec = optim.make("adam")
    with pytest.raises(ValueError, match="weight_decay"):
        optim.make("adam", weight_decay=10**400)  # (OverflowError before)
    with pytest.raises(TypeError, match="n_params"):
        spec.init_state(float("inf"))
    with pytest.raises(TypeError, match="n_params"):
        spec.init_state(1.5)  # (taken as 1)
    p, g = np.zeros(3), np.ones(3)
    state = spec.init_state(3)
    for bad, error in ((float("inf"), TypeError), ("1", TypeError), (1.7, TypeError), (4, ValueError),
                       (-1, ValueError)):
        with pytest.raises(error, match="n_decay"):
            spec.step(p, g, state, 1, 0.1, n_decay=bad)
    with pytest.raises(ValueError, match="lr"):
        spec.step(p, g, state, 1, 10**400)
    np.testing.assert_array_equal(p, 0.0)  # no step was taken
    spec.step(p, g, state, 1, 0.1, n_decay=np.int64(2))


def test_clip_grad_norm_follows_torch_on_non_finite_gradients():
    # torch.nn.utils.clip_grad_norm_: grad *= clamp(max_norm / (norm + 1e-6), max=1); a NaN norm makes every
    # entry NaN, an infinite one makes the finite entries 0 (and inf * 0 NaN).
    for dtype in (np.float64, np.float32):
        g = np.array([np.nan, 1.0], dtype=dtype)
        assert math.isnan(optim.clip_grad_norm(g, 1.0))
        assert g.dtype == dtype and np.all(np.isnan(g))
        g = np.array([np.inf, 1.0], dtype=dtype)
        assert optim.clip_grad_norm(g, 1.0) == np.inf
        assert np.isnan(g[0]) and g[1] == 0


def test_clip_grad_norm_names_a_read_only_grad():
    # (Cython's "buffer source array is read-only", even where nothing needed clipping)
    grad = np.array([3.0, 4.0])
    grad.flags.writeable = False
    with pytest.raises(ValueError, match="grad must be writeable"):
        optim.clip_grad_norm(grad, 100.0)
