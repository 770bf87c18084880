"""The fused CSR epoch (csrc/epoch_csr.c): its NumPy twin, the dense epoch on ``X.toarray()``, SparseAdam mode.

Tolerances. The kernel and its twin sum every dot product and gradient entry in the same order, so they differ
only where the kernel defers updates (the catch-up powers are formed in double, the per-step twin rounds every
step in the working type) and in the order of the clipping norm's sum: a few units of roundoff per step, which
the adaptive rules may amplify by ``|g| / (sqrt(v) + eps)``. Against the dense epoch the dot products are also
summed in another order (vectorised). ``_close`` allows ``TOL_STEPS`` roundoffs per step over the fit. Where a
rule's denominator is tiny (centred RMSProp on a coordinate whose gradients barely vary, any adaptive rule near its
``eps``) a different order of the same sums moves the fit further; the hypothesis test adds the first-order reach
of that rounding, replayed on the dense trajectory (``_order_sensitivity``). On most draws that is a small fraction
of the per-step allowance.
"""
import dataclasses
import zlib

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from fastopt import LinearRegressor, _iterative, _kernels, _reference, optim
from fastopt._iterative import SOLVERS, EpochCtl, moments_layout
from fastopt._validation import Data

RULES = ["sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adam", "adamw"]
LOSSES = {"squared_error": optim.Loss.SQUARED_ERROR, "absolute_error": optim.Loss.ABSOLUTE_ERROR,
          "huber": optim.Loss.HUBER}
TOL_STEPS = 64



def _seed(*parts) -> int:
    """A seed from the test's parameters, the same in every process (``hash`` of a string is salted per process,
    which made a test's data, and whether two ways of rounding happened to agree on it, vary from run to run)."""
    return zlib.crc32(repr(parts).encode())

def _csr(rng, n, d, density, dtype, explicit_zeros=False):
    X = sp.random(n, d, density=density, format="csr", random_state=rng, dtype=np.float64)
    X.data = rng.normal(size=X.nnz)
    if explicit_zeros and X.nnz:
        X.data[rng.random(X.nnz) < 0.2] = 0.0
    X = sp.csr_array(X.astype(dtype))
    X.indices, X.indptr = X.indices.astype(np.int32), X.indptr.astype(np.int32)
    return X


def _problem(rng, n, d, k, dtype, weighted, density=0.15):
    X = _csr(rng, n, d, density, dtype)
    Y = (X @ rng.normal(size=(d, k)) + 0.3 * rng.standard_t(3, size=(n, k))).astype(dtype)
    sw = None
    if weighted:
        sw = rng.uniform(0, 2, size=n).astype(dtype)
        sw /= sw.mean()
    return X, np.ascontiguousarray(Y), sw


def _spec(rule, wd, **extra):
    kw = {"weight_decay": wd}
    if rule == "rmsprop":
        kw.update(momentum=0.5, centered=True)
    kw.update(extra)
    return optim.make(rule, **kw)


def _close(a, b, steps, dtype, scale=1.0, slack=0.0):
    eps = np.finfo(dtype).eps
    tol = TOL_STEPS * steps * eps * max(scale, float(np.max(np.abs(b), initial=0.0)), 1.0) + slack
    np.testing.assert_allclose(a, b, rtol=0, atol=tol)


def _order_sensitivity(spec, train, X, Y, order, epochs, lr, dtype):
    """How far rounding differences in the minibatch gradients can move the fit: a first-order estimate.

    Two epochs that sum the same products in different orders differ, per gradient entry of a minibatch of ``m``
    rows, by at most ``gamma_m * sum_i |x_ij| |l'_i| / m``, plus what the residuals' own rounding (at most
    ``gamma_(d+1)`` times ``sum_j |x_ij w_j| + |b| + |y_i|``) adds through the loss's derivative (Lipschitz 1 for
    the Huber loss). Plain steps pass such an error on as it is, which ``_close``'s per-step allowance covers.
    The adaptive rules divide it by their denominator, and centred RMSProp's ``sqrt(v - avg^2)`` is small where a
    coordinate's gradients barely vary, so the same rounding can move such a coordinate by many units of ``|w|``.
    This replays the dense trajectory in float64 with the NumPy twin's steps, once with every minibatch gradient
    pushed by ``+h`` times that bound and once by ``-h``, and returns the larger change over ``h`` of the
    parameters and of the optimizer state: the first-order change the bound can cause, propagation through later
    steps included. ``h`` puts the push near 1e-10 relative, where the map is linear and float64 rounding is far
    below it."""
    u = np.finfo(dtype).eps / 2
    n, d = X.shape
    k = Y.shape[1]
    X, Y = np.asarray(X, np.float64), np.asarray(Y, np.float64)
    aX = np.abs(X)
    h = 1e-10 / u
    hyper = spec.hyper

    def replay(push):
        params = np.zeros(k * d + k)
        state = spec.init_state(params.size, np.float64)
        t = 0
        for _ in range(epochs):
            for lo in range(0, n, train.batch_size):
                rows = order[lo:lo + train.batch_size]
                m = rows.size
                W, b = params[:k * d].reshape(k, d), params[k * d:]
                R = X[rows] @ W.T + b - Y[rows]
                dl = _reference._loss_and_derivative(train.loss, R, train.epsilon)[1]  # the twin's l'(r)
                g = np.concatenate([(dl.T @ X[rows]).ravel(), dl.sum(axis=0)]) / m
                gamma_m, gamma_d = m * u / (1 - m * u), (d + 1) * u / (1 - (d + 1) * u)
                r_err = gamma_d * (aX[rows] @ np.abs(W).T + np.abs(b) + np.abs(Y[rows]))
                g_err = gamma_m * np.concatenate([(np.abs(dl).T @ aX[rows]).ravel(), np.abs(dl).sum(axis=0)])
                g_err += np.concatenate([(r_err.T @ aX[rows]).ravel(), r_err.sum(axis=0)])
                t += 1
                _reference.step(int(spec.rule), hyper, params, g + push * h * g_err / m, state, t, lr, k * d)
        return params, state

    (p0, s0), pushed = replay(0.0), [replay(1.0), replay(-1.0)]
    return (max(float(np.max(np.abs(p - p0))) for p, _ in pushed) / h,
            max(float(np.max(np.abs(s - s0), initial=0.0)) for _, s in pushed) / h)


def _run(impl, spec, train, X, Y, sw, order, n_params, epochs, lr, lazy, dense=False, stage_cap=None):
    params = np.zeros(n_params, Y.dtype)
    state = spec.init_state(n_params, Y.dtype)
    t, out = 0, []
    for _ in range(epochs):
        if dense:
            work = np.empty(6 * n_params + 2 * Y.shape[1], Y.dtype)
            out.append(impl.epoch(int(spec.rule), spec.hyper, train, X, Y, sw, order, params, state, work, t, lr))
        else:
            out.append(impl.epoch_csr(int(spec.rule), spec.hyper, train, X, Y, sw, order, params, state, t, lr,
                                      lazy, stage_cap))
        t = out[-1][1]
    return params, state, out


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("wd", [0.0, 0.05])
@pytest.mark.parametrize("rule", RULES)
def test_csr_epoch_matches_its_twin_and_the_dense_epoch(rule, wd, dtype):
    rng = np.random.default_rng(_seed(rule, wd, dtype().itemsize))
    n, d, k, batch = 120, 30, 2, 16
    X, Y, sw = _problem(rng, n, d, k, dtype, weighted=True)
    order = rng.permutation(n).astype(np.int64)
    spec = _spec(rule, wd, amsgrad=True) if rule == "adamw" else _spec(rule, wd)
    lazy_modes = [False, True] if rule in ("adam", "adamw") else [False]
    for loss, clip in (("huber", 0.5), ("squared_error", None), ("absolute_error", None)):
        train = EpochCtl(batch_size=batch, loss=LOSSES[loss], epsilon=0.8, clip_norm=clip, loss_limit=np.inf)
        for lazy in lazy_modes:
            p1, s1, o1 = _run(_kernels, spec, train, X, Y, sw, order, k * d + k, 3, 0.05, lazy)
            p2, s2, o2 = _run(_reference, spec, train, X, Y, sw, order, k * d + k, 3, 0.05, lazy)
            assert [o[:2] for o in o1] == [o[:2] for o in o2] == [(0, 8), (0, 16), (0, 24)]
            np.testing.assert_allclose([o[2] for o in o1], [o[2] for o in o2], rtol=1e-5 if dtype == np.float32
                                       else 1e-12)
            _close(p1, p2, 24, dtype)
            _close(s1, s2, 24, dtype)
            for cap in (0, 7, 60):  # rows read in place, blocks staged in part: the same bits
                p4, s4, o4 = _run(_kernels, spec, train, X, Y, sw, order, k * d + k, 3, 0.05, lazy, stage_cap=cap)
                assert o4 == o1
                np.testing.assert_array_equal(p4, p1)
                np.testing.assert_array_equal(s4, s1)
            if not lazy:  # the same objective and steps as the dense epoch on X.toarray()
                p3, s3, _ = _run(_kernels, spec, train, X.toarray(), Y, sw, order, k * d + k, 3, 0.05, lazy,
                                  dense=True)
                _close(p1, p3, 24, dtype)
                _close(s1, s3, 24, dtype)


@pytest.mark.parametrize("rule", ["sgd", "adagrad", "adam"])
def test_rules_without_deferred_updates_agree_with_the_twin_bit_for_bit(rule):
    # No catch-up and no clipping: the kernel and the twin perform the same operations in the same order.
    rng = np.random.default_rng(3)
    X, Y, sw = _problem(rng, 200, 40, 1, np.float64, weighted=True)
    order = rng.permutation(200).astype(np.int64)
    train = EpochCtl(batch_size=8, loss=LOSSES["squared_error"], epsilon=1.0, clip_norm=None, loss_limit=np.inf)
    spec = _spec(rule, 0.0)
    for lazy in (False, True):
        p1, s1, _ = _run(_kernels, spec, train, X, Y, sw, order, 41, 2, 0.01, lazy)
        p2, s2, _ = _run(_reference, spec, train, X, Y, sw, order, 41, 2, 0.01, lazy)
        np.testing.assert_array_equal(p1, p2)
        np.testing.assert_array_equal(s1, s2)


def _csr_epochs(impl, spec, train, X, Y, sw, order, n_params, epochs, lr, n_threads=1, stage_cap=None, period=0):
    params, state, t, out = np.zeros(n_params, Y.dtype), spec.init_state(n_params, Y.dtype), 0, []
    for _ in range(epochs):
        out.append(impl.epoch_csr(int(spec.rule), spec.hyper, train, X, Y, sw, order, params, state, t, lr,
                                  stage_cap=stage_cap, period=period, n_threads=n_threads))
        t = out[-1][1]
    return params, out


@pytest.mark.parametrize("wd", [0.0, 0.05])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("loss", list(LOSSES))
def test_scattered_sgd_steps_agree_with_the_twin_bit_for_bit(loss, dtype, wd):
    """Plain SGD with one output and no clipping, projection or average steps row by row (fo_csr_scatter in
    csrc/epoch_csr.c; under L2 its weights are kept as w = s v); the twin does the same, so the two agree bit for
    bit, on one thread or two, with or without the intercept, on rows whose columns are not sorted or repeat
    (the kernel steps two entries at a time: a repeat within a pair, or across two, steps in turn)."""
    rng = np.random.default_rng(21)
    X, Y, sw = _problem(rng, 300, 50, 1, dtype, weighted=True)
    for i in range(0, 300, 2):  # every other row's entries reversed
        lo, hi = X.indptr[i], X.indptr[i + 1]
        X.indices[lo:hi], X.data[lo:hi] = X.indices[lo:hi][::-1].copy(), X.data[lo:hi][::-1].copy()
    for i in range(0, 300, 3):  # and every third row's columns repeated: entries 0, 1 and 4 alike, and 2 and 3
        lo, hi = X.indptr[i], X.indptr[i + 1]
        if hi - lo >= 5:
            X.indices[lo + 1] = X.indices[lo + 4] = X.indices[lo]
            X.indices[lo + 3] = X.indices[lo + 2]
    order = rng.permutation(300).astype(np.int64)
    spec = _spec("sgd", wd)
    train = EpochCtl(batch_size=16, loss=LOSSES[loss], epsilon=0.8, clip_norm=None, loss_limit=np.inf)
    for n_params in (51, 50):
        p0, o0 = _csr_epochs(_reference, spec, train, X, Y, sw, order, n_params, 3, 0.05)
        assert [o[:2] for o in o0] == [(0, 19), (0, 38), (0, 57)]
        # two threads; one, with blocks staged whole, in part, or rows read in place
        for threads, cap in ((2, None), (1, None), (1, 40), (1, 0)):
            p1, o1 = _csr_epochs(_kernels, spec, train, X, Y, sw, order, n_params, 3, 0.05, threads, cap)
            assert [o[:2] for o in o1] == [o[:2] for o in o0]
            np.testing.assert_allclose([o[2] for o in o1], [o[2] for o in o0], rtol=1e-12)  # summed pairwise here
            np.testing.assert_array_equal(p1, p0)
        # With a clipping norm that never binds, the kernel forms each minibatch's gradient and steps on it: the
        # same update summed in another order, so close but not the same bits (the steps above were scattered).
        never = train._replace(clip_norm=1e300)
        p2, _ = _csr_epochs(_kernels, spec, never, X, Y, sw, order, n_params, 3, 0.05)
        _close(p2, p0, 57, dtype)
        assert not np.array_equal(p2, p0)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_scattered_sgd_steps_under_l2_fold_their_scale_as_the_twin_and_slice_as_one_call(monkeypatch, dtype):
    """Under a strong L2 (each step scales the weights by f = 0.55) the global factor leaves [lo, 1 / lo] after
    97 steps in float32 (lo = 1e-25) and 578 in float64 (1e-150) and is folded back; with a period it is also
    folded at its multiples. The twin folds at the same steps (bit for bit, one thread or two), an epoch run in
    slices (run_epoch_csr) equals one call with its period (one thread or two: the piped epoch folds there too),
    and the fit equals the dense epoch's to rounding. A
    decay of f < 0.5 keeps the deferred catch-ups (other bits, the same fit to rounding)."""
    rng = np.random.default_rng(23)
    X, Y, sw = _problem(rng, 800, 30, 1, dtype, weighted=True, density=0.2)
    order = rng.permutation(800).astype(np.int64)
    spec = _spec("sgd", 0.9)
    train = EpochCtl(batch_size=2, loss=LOSSES["huber"], epsilon=1.0, clip_norm=None, loss_limit=np.inf)
    for period in (0, 7):
        p0, o0 = _csr_epochs(_reference, spec, train, X, Y, sw, order, 31, 2, 0.5, period=period)
        assert [o[:2] for o in o0] == [(0, 400), (0, 800)]
        for threads in (1, 2):
            p1, o1 = _csr_epochs(_kernels, spec, train, X, Y, sw, order, 31, 2, 0.5, threads, period=period)
            assert [o[:2] for o in o1] == [o[:2] for o in o0]
            np.testing.assert_array_equal(p1, p0)
    p3, _, _ = _run(_kernels, spec, train, X.toarray(), Y, sw, order, 31, 2, 0.5, False, dense=True)
    _close(p1, p3, 800, dtype)
    deferred, _ = _csr_epochs(_kernels, spec, train._replace(clip_norm=1e300), X, Y, sw, order, 31, 2, 0.5)
    _close(deferred, p1, 800, dtype)
    assert not np.array_equal(deferred, p1)  # the scaled steps ran above
    strong = _spec("sgd", 1.2)  # f = 0.4: the catch-ups, as with a clipping norm that never binds
    pa, _ = _csr_epochs(_kernels, strong, train, X, Y, sw, order, 31, 1, 0.5)
    pb, _ = _csr_epochs(_kernels, strong, train._replace(clip_norm=1e300), X, Y, sw, order, 31, 1, 0.5)
    np.testing.assert_array_equal(pa, pb)
    monkeypatch.setattr(_iterative, "SLICE_WORK", 64)
    period = _iterative.csr_period(X, 1, 2)
    assert 1 < period < 400 // 3
    outs = []
    for sliced, threads in ((True, 1), (True, 2), (False, 1), (False, 2)):
        params, state, t = np.zeros(31, dtype), spec.init_state(31, dtype), 3
        for _ in range(2):
            if sliced:
                res = _iterative.run_epoch_csr(int(spec.rule), spec.hyper, train, X, Y, sw, order, params, state, t,
                                               0.5, False, threads=threads)
            else:
                res = _kernels.epoch_csr(int(spec.rule), spec.hyper, train, X, Y, sw, order, params, state, t, 0.5,
                                         period=period, n_threads=threads)
            t = res[1]
        outs.append((params, res))
    for params, res in outs[1:]:
        np.testing.assert_array_equal(params, outs[0][0])
        assert res == outs[0][1]


@pytest.mark.parametrize("dtype, big, target, finite", [
    (np.float64, 1e140, 1e12, True),   # |c| |x| = 1e152: above the bound, the gradient 2.5e151 is finite
    (np.float64, 1e160, 1.0, False),   # the gradient's sum of squares overflows
    (np.float32, 1e19, 1e18, True),    # 1e37: above float32's bound, 2.5e36 finite
    (np.float32, 1e20, 1e19, False),   # the gradient entry overflows float32
])
def test_scattered_sgd_steps_check_the_gradient_exactly_beyond_its_bound(dtype, big, target, finite):
    """Scattered steps bound the gradient instead of forming it; beyond the bound the kernel forms it to decide,
    as the twin does: a finite gradient is stepped on, an overflowing one stops the epoch before its step. The
    large row comes last, after 15 ordinary minibatches (16 in all: enough for the two-thread epoch)."""
    rng = np.random.default_rng(22)
    X = sp.csr_array(rng.normal(size=(64, 3)).astype(dtype))
    X.indices, X.indptr = X.indices.astype(np.int32), X.indptr.astype(np.int32)
    X.data[X.indptr[60]] = dtype(big)  # row 60's first value, in the last minibatch
    Y = np.zeros((64, 1), dtype)
    Y[60, 0] = target
    spec = _spec("sgd", 0.0)
    train = EpochCtl(batch_size=4, loss=LOSSES["squared_error"], epsilon=1.0, clip_norm=None, loss_limit=np.inf)
    order = np.arange(64, dtype=np.int64)
    p0, o0 = _csr_epochs(_reference, spec, train, X, Y, None, order, 4, 1, 0.1)
    status = int(_kernels.Status.OK if finite else _kernels.Status.NONFINITE_LOSS)
    assert o0[0][:2] == (status, 16 if finite else 15)
    for threads, cap in ((1, None), (2, None), (1, 0)):
        p1, o1 = _csr_epochs(_kernels, spec, train, X, Y, None, order, 4, 1, 0.1, threads, cap)
        assert o1[0][:2] == o0[0][:2] and o1[0][3] == o0[0][3]
        np.testing.assert_array_equal(p1, p0)
    assert np.all(np.isfinite(p0)) and (np.max(np.abs(p0)) > 1e30) == finite


def _sparse_adam_definition(X, Y, order, batch, lr, betas, eps, steps_per_epoch, epochs):
    """torch.optim.SparseAdam (torch/optim/sparse_adam.py) transliterated, on the squared-error minibatch gradient
    of a linear model with intercept, written independently of fastopt's twin: one dict entry per coordinate
    whose gradient is nonzero."""
    d = X.shape[1]
    w = np.zeros(d + 1)
    m, v = np.zeros(d + 1), np.zeros(d + 1)
    Xd = X.toarray()
    step = 0
    for _ in range(epochs):
        for s in range(steps_per_epoch):
            rows = order[s * batch : (s + 1) * batch]
            r = Xd[rows] @ w[:d] + w[d] - Y[rows, 0]
            grad = np.r_[Xd[rows].T @ r, r.sum()] / len(rows)
            step += 1
            idx = np.flatnonzero(grad)
            g = grad[idx]
            old_m, old_v = m[idx], v[idx]
            upd_m = (g - old_m) * (1 - betas[0])
            upd_v = (g**2 - old_v) * (1 - betas[1])
            m[idx], v[idx] = old_m + upd_m, old_v + upd_v
            numer = upd_m + old_m
            denom = np.sqrt(upd_v + old_v) + eps
            step_size = lr * np.sqrt(1 - betas[1] ** step) / (1 - betas[0] ** step)
            w[idx] += -step_size * (numer / denom)
    return w, m, v


def test_sparse_adam_mode_follows_torch_sparse_adam_step_for_step():
    rng = np.random.default_rng(7)
    n, d, batch = 96, 50, 8
    X, Y, _ = _problem(rng, n, d - 5, 1, np.float64, weighted=False, density=0.05)
    X = sp.hstack([X, sp.csr_array((n, 5))], format="csr")  # five columns that no row stores
    X.indices, X.indptr = X.indices.astype(np.int32), X.indptr.astype(np.int32)
    order = rng.permutation(n).astype(np.int64)
    spec = optim.make("adam", beta1=0.8, beta2=0.95, eps=1e-6)
    train = EpochCtl(batch_size=batch, loss=LOSSES["squared_error"], epsilon=1.0, clip_norm=None, loss_limit=np.inf)
    params, state, _ = _run(_kernels, spec, train, X, Y, None, order, d + 1, 2, 0.1, True)
    w, m, v = _sparse_adam_definition(X, Y, order, batch, 0.1, (0.8, 0.95), 1e-6, n // batch, 2)
    np.testing.assert_allclose(params, w, rtol=1e-12, atol=1e-14)
    # SparseAdam mode keeps each parameter's m and v side by side: m_i, v_i at flat positions 2 i, 2 i + 1.
    np.testing.assert_allclose(state[:2].reshape(-1)[0::2], m, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(state[:2].reshape(-1)[1::2], v, rtol=1e-12, atol=1e-14)
    # Columns that no row stores never move, nor do their moments.
    empty = np.flatnonzero(np.diff(X.tocsc().indptr) == 0)
    rows = moments_layout(state, True, False)
    assert empty.size and not params[empty].any() and not rows[:, empty].any()


def test_sparse_adam_mode_matches_torch_when_available():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(8)
    n, d, batch = 64, 40, 8
    X, Y, _ = _problem(rng, n, d, 1, np.float64, weighted=False, density=0.05)
    order = rng.permutation(n).astype(np.int64)
    spec = optim.make("adam", beta1=0.9, beta2=0.99, eps=1e-8)
    train = EpochCtl(batch_size=batch, loss=LOSSES["squared_error"], epsilon=1.0, clip_norm=None, loss_limit=np.inf)
    params, _, _ = _run(_kernels, spec, train, X, Y, None, order, d + 1, 1, 0.05, True)
    p = torch.zeros(d + 1, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.SparseAdam([p], lr=0.05, betas=(0.9, 0.99), eps=1e-8)
    Xd = torch.from_numpy(X.toarray())
    y = torch.from_numpy(Y[:, 0])
    for s in range(n // batch):
        rows = torch.from_numpy(order[s * batch : (s + 1) * batch])
        opt.zero_grad()
        r = Xd[rows] @ p[:d] + p[d] - y[rows]
        (0.5 * (r**2).mean()).backward()
        g = p.grad.detach()
        idx = torch.nonzero(g).T
        p.grad = torch.sparse_coo_tensor(idx, g[idx[0]], (d + 1,))
        opt.step()
    np.testing.assert_allclose(params, p.detach().numpy(), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("rule", RULES)
@pytest.mark.parametrize("loss", list(LOSSES))
def test_sparse_fit_equals_dense_fit(rule, loss):
    """The solver on CSR data equals the solver on X.toarray() with the same random_state (alpha, weights,
    intercept, auto learning rate, several epochs)."""
    rng = np.random.default_rng(11)
    X, Y, _ = _problem(rng, 150, 25, 1, np.float64, weighted=False)
    raw_sw = rng.uniform(0.5, 2.0, size=150)
    for alpha, weights, intercept in ((0.0, None, True), (0.01, raw_sw, False), (0.01, raw_sw, True)):
        params = LinearRegressor(solver=rule, loss=loss, alpha=alpha, fit_intercept=intercept, max_epochs=4,
                                 tol=None, batch_size=16, random_state=5, clip_norm=5.0).get_params()
        dense = SOLVERS[rule].fit(params, Data(X.toarray(), Y, weights, False))
        sparse = SOLVERS[rule].fit(params, Data(X, Y, weights, False))
        assert sparse.attrs["t_"] == dense.attrs["t_"]
        assert sparse.attrs["learning_rate_"] == pytest.approx(dense.attrs["learning_rate_"], rel=1e-9)
        _close(sparse.coef, dense.coef, 40, np.float64)
        _close(sparse.intercept, dense.intercept, 40, np.float64)
        np.testing.assert_allclose(sparse.attrs["loss_curve_"], dense.attrs["loss_curve_"], rtol=1e-9)


def test_sparse_fit_is_deterministic_and_partial_fit_continues():
    rng = np.random.default_rng(12)
    X, Y, _ = _problem(rng, 300, 60, 2, np.float32, weighted=False, density=0.05)
    params = LinearRegressor(solver="momentum", alpha=1e-3, max_epochs=3, tol=None, random_state=0).get_params()
    a = SOLVERS["momentum"].fit(params, Data(X, Y, None, False))
    b = SOLVERS["momentum"].fit(params, Data(X, Y, None, False))
    np.testing.assert_array_equal(a.coef, b.coef)
    assert a.coef.dtype == np.float32
    # partial_fit over two sparse chunks equals it over the same chunks dense, under the same map (precondition
    # "auto" centres dense columns far from centred, which would densify sparse ones)
    params["precondition"] = "none"
    results = []
    for conv in (lambda M: M, lambda M: M.toarray()):
        state = None
        for lo, hi in ((0, 150), (150, 300)):
            r = SOLVERS["momentum"].partial_fit(params, Data(conv(X[lo:hi]), Y[lo:hi], None, False), state)
            state = r.state
        results.append(r.coef)
    _close(results[0], results[1], 10, np.float32)


def test_lazy_mode_on_dense_x_equals_it_on_csr():
    rng = np.random.default_rng(13)
    X, Y, _ = _problem(rng, 100, 20, 1, np.float64, weighted=False)
    params = LinearRegressor(solver="adamw", alpha=0.01, sparse_mode="lazy", max_epochs=2, tol=None,
                             learning_rate=0.01, random_state=1).get_params()
    a = SOLVERS["adamw"].fit(params, Data(X, Y, None, False))
    b = SOLVERS["adamw"].fit(params, Data(X.toarray(), Y, None, False))
    np.testing.assert_array_equal(a.coef, b.coef)
    exact = SOLVERS["adamw"].fit({**params, "sparse_mode": "exact"}, Data(X, Y, None, False))
    assert not np.array_equal(a.coef, exact.coef)  # a different optimizer, not a relabelling


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("position", [0, 700, 2047])
def test_a_weight_that_overflows_at_the_last_step_fails_the_epoch(dtype, position):
    """The loss stays finite up to the last step, whose step overflows one weight (at ``position`` among 2,048
    columns, no intercept: in the end-of-epoch test's chunks of 1,024 and its eight running sums, head and tail) to
    inf: the epoch fails at that step, dense and CSR, kernels and twins alike, and the other weights stay 0."""
    big = 1e300 if dtype == np.float64 else 1e37
    d = 2048
    X = np.zeros((4, d), dtype)
    X[:, position] = 1.0
    Y = np.full((4, 1), 1e10 if dtype == np.float64 else 1e5, dtype)
    spec = _spec("sgd", 0.0)
    train = EpochCtl(batch_size=4, loss=LOSSES["squared_error"], epsilon=1.0, clip_norm=None, loss_limit=np.inf)
    order = np.arange(4, dtype=np.int64)
    Xc = sp.csr_array(X)
    Xc.indices, Xc.indptr = Xc.indices.astype(np.int32), Xc.indptr.astype(np.int32)
    for impl in (_kernels, _reference):
        for data, dense in ((X, True), (Xc, False)):
            with np.errstate(over="ignore", invalid="ignore"):  # the twin's overflow is the point
                params, _, out = _run(impl, spec, train, data, Y, None, order, d, 1, float(big), False, dense)
            status, t, _, step = out[0]
            assert (status, t, step) == (int(_kernels.Status.NONFINITE_LOSS), 1, 1), (impl.__name__, dense)
            assert np.isinf(params[position]) and not np.delete(params, position).any()


def test_csr_epoch_reports_nonfinite_data_and_divergence():
    rng = np.random.default_rng(14)
    X, Y, _ = _problem(rng, 40, 10, 1, np.float64, weighted=False)
    spec = _spec("momentum", 0.0)
    train = EpochCtl(batch_size=8, loss=LOSSES["squared_error"], epsilon=1.0, clip_norm=None, loss_limit=np.inf)
    bad = X.copy()
    bad.data[bad.indptr[20]] = np.nan  # a value of row 20
    order = np.arange(40, dtype=np.int64)
    for impl in (_kernels, _reference):
        status, t, _, step = _run(impl, spec, train, bad, Y, None, order, 11, 1, 0.01, False)[2][0]
        assert (status, t, step) == (int(_kernels.Status.NONFINITE_LOSS), 2, 3)
    limited = train._replace(loss_limit=1e-9)
    for impl in (_kernels, _reference):
        status, t, _, step = _run(impl, spec, limited, X, Y, None, order, 11, 1, 0.01, False)[2][0]
        assert (status, t, step) == (int(_kernels.Status.DIVERGED), 0, 1)


def test_csr_epoch_rejects_bad_arguments():
    rng = np.random.default_rng(15)
    X, Y, _ = _problem(rng, 20, 5, 1, np.float64, weighted=False)
    spec = _spec("sgd", 0.0)
    train = EpochCtl(batch_size=4, loss=LOSSES["squared_error"], epsilon=1.0, clip_norm=None, loss_limit=np.inf)
    order = np.arange(20, dtype=np.int64)
    with pytest.raises(ValueError, match="rows"):
        _kernels.epoch_csr(int(spec.rule), spec.hyper, train, X, Y[:10], None, order, np.zeros(6),
                           spec.init_state(6), 0, 0.1)
    status = _kernels.epoch_csr(int(spec.rule), spec.hyper, train, X, Y, None, order, np.zeros(4),
                                spec.init_state(4), 0, 0.1)[0]
    assert status == int(_kernels.Status.BAD_ARGUMENT)  # 4 parameters fit neither 5 weights nor 5 + 1


@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 60), d=st.integers(1, 40), k=st.integers(1, 3), density=st.floats(0.0, 0.6),
       batch=st.integers(1, 20), rule=st.sampled_from(RULES), wd=st.sampled_from([0.0, 0.1]),
       f32=st.booleans(), seed=st.integers(0, 2**16), zeros=st.booleans(), unsorted=st.booleans())
def test_random_sparsity_patterns_match_the_dense_epoch(n, d, k, density, batch, rule, wd, f32, seed, zeros,
                                                        unsorted):
    dtype = np.float32 if f32 else np.float64
    rng = np.random.default_rng(seed)
    X = _csr(rng, n, d, density, dtype, explicit_zeros=zeros)
    if unsorted:  # reverse each row's stored entries: a valid CSR matrix whose columns are not sorted
        for i in range(n):
            lo, hi = X.indptr[i], X.indptr[i + 1]
            X.indices[lo:hi], X.data[lo:hi] = X.indices[lo:hi][::-1].copy(), X.data[lo:hi][::-1].copy()
    Y = rng.normal(size=(n, k)).astype(dtype)
    order = rng.permutation(n).astype(np.int64)
    spec = _spec(rule, wd)
    train = EpochCtl(batch_size=batch, loss=LOSSES["huber"], epsilon=1.0, clip_norm=None, loss_limit=np.inf)
    steps = 2 * -(-n // batch)
    cap = int(np.random.default_rng(seed).integers(0, 3 * X.nnz + 2))  # any staging room: the same bits
    p1, s1, o1 = _run(_kernels, spec, train, X, Y, None, order, k * d + k, 2, 0.02, False, stage_cap=cap)
    p0, _, _ = _run(_kernels, spec, train, X, Y, None, order, k * d + k, 2, 0.02, False)
    np.testing.assert_array_equal(p1, p0)
    p2, s2, o2 = _run(_kernels, spec, train, X.toarray(), Y, None, order, k * d + k, 2, 0.02, False, dense=True)
    assert [o[:2] for o in o1] == [o[:2] for o in o2]
    # the per-step allowance, plus twice the first-order reach of the gradients' rounding (it is an estimate
    # along one direction of push, and the two epochs' roundings each deviate from the exact sums)
    for a, b, reach in zip((p1, s1), (p2, s2), _order_sensitivity(spec, train, X.toarray(), Y, order, 2, 0.02,
                                                                  dtype)):
        _close(a, b, steps, dtype, slack=2 * reach)


# ---------------------------------------------------------------- the estimator, end to end


@pytest.mark.parametrize("solver, mode", [("sgd", "exact"), ("nesterov", "exact"), ("rmsprop", "exact"),
                                          ("adam", "exact"), ("adamw", "lazy")])
def test_estimator_entry_points_fit_sparse_as_dense(solver, mode):
    rng = np.random.default_rng(21)
    X = sp.random(400, 30, density=0.1, format="csr", random_state=rng)
    y = X @ rng.normal(size=30) + 0.1 * rng.normal(size=400)
    w = rng.uniform(0.5, 2.0, size=400)
    # precondition="none": the default scales sparse columns without shift but centres dense ones (README)
    kw = {"solver": solver, "sparse_mode": mode, "alpha": 1e-3, "max_epochs": 4, "tol": None, "random_state": 0,
          "precondition": "none"}
    steps = 4 * 7 * 2

    def same(a, b):
        _close(a.coef_, b.coef_, steps, np.float64)
        _close(a.intercept_, b.intercept_, steps, np.float64)

    for fmt in ("csr", "csc", "coo"):
        same(LinearRegressor(**kw).fit(X.asformat(fmt), y, sample_weight=w),
             LinearRegressor(**kw).fit(X.toarray(), y, sample_weight=w))
    a, b = LinearRegressor(**kw), LinearRegressor(**kw)
    for lo, hi in ((0, 200), (200, 400)):
        a.partial_fit(X[lo:hi], y[lo:hi])
        b.partial_fit(X[lo:hi].toarray(), y[lo:hi])
    same(a, b)
    chunks = [(X[:150], y[:150], w[:150]), (X[150:], y[150:], w[150:])]
    same(LinearRegressor(**kw).fit_stream(chunks),
         LinearRegressor(**kw).fit_stream([(Xc.toarray(), yc, wc) for Xc, yc, wc in chunks]))
    # float32 stays float32
    est = LinearRegressor(**kw).fit(X.astype(np.float32), y.astype(np.float32))
    assert est.coef_.dtype == np.float32


def test_estimator_on_dask_arrays_of_sparse_blocks():
    da = pytest.importorskip("dask.array")
    rng = np.random.default_rng(22)
    X = sp.random(300, 20, density=0.2, format="csr", random_state=rng)
    y = X @ rng.normal(size=20)
    # One map for both (precondition="auto" maps dense and sparse X differently, in memory as on Dask: centring
    # and standard deviations against root mean squares without shift), so that the passes are compared.
    kw = {"solver": "momentum", "max_epochs": 3, "tol": None, "random_state": 0, "precondition": "none"}
    dX = da.from_array(X.toarray(), chunks=(100, 20))
    dy = da.from_array(y, chunks=100)
    a = LinearRegressor(**kw).fit(dX.map_blocks(sp.csr_matrix), dy)
    b = LinearRegressor(**kw).fit(dX, dy)
    _close(a.coef_, b.coef_, 30, np.float64)


# ---------------------------------------------------------------- projected and averaged steps


def _run_opts(impl, spec, train, X, Y, sw, order, n_params, epochs, lr, lazy, dense=False, period=0, decay=None):
    """_run with the running average (and each weight's own ``decay``): (params, state, avg, outputs)."""
    params = np.zeros(n_params, Y.dtype)
    params[: n_params // 2] = -0.05  # a warm start with negative weights, which the first step projects
    state, avg = spec.init_state(n_params, Y.dtype), np.zeros(n_params, Y.dtype)
    t, out = 0, []
    for _ in range(epochs):
        if dense:
            work = np.empty(6 * n_params + 2 * Y.shape[1], Y.dtype)
            out.append(impl.epoch(int(spec.rule), spec.hyper, train, X, Y, sw, order, params, state, work, t, lr,
                                  avg=avg, decay=decay))
        else:
            out.append(impl.epoch_csr(int(spec.rule), spec.hyper, train, X, Y, sw, order, params, state, t, lr,
                                      lazy, None, avg, None, period, decay=decay))
        t = out[-1][1]
    return params, state, avg, out


@pytest.mark.parametrize("wd", [0.0, 0.05, "own"])
@pytest.mark.parametrize("rule", RULES)
def test_projected_and_averaged_csr_epoch_matches_its_twin_and_the_dense_epoch(rule, wd):
    """positive=True and average (from the first step, and from a step inside the second epoch) for every rule,
    exact and SparseAdam mode, against the twin and the dense epoch on X.toarray(); deferred updates split at a
    period give the same fit to rounding. ``wd="own"``: each weight its own decay (SGD, momentum and Nesterov
    defer it with each coordinate's own power of its step map)."""
    rng = np.random.default_rng(_seed("opts", rule, wd))
    n, d, k, batch, dtype = 120, 30, 2, 16, np.float64
    X, Y, sw = _problem(rng, n, d, k, dtype, weighted=True, density=0.1)
    order = rng.permutation(n).astype(np.int64)
    decay = rng.uniform(0.01, 2.0, size=k * d) if wd == "own" else None
    wd = 0.0 if wd == "own" else wd
    spec = _spec(rule, wd, amsgrad=True) if rule == "adamw" else _spec(rule, wd)
    lazy_modes = [False, True] if rule in ("adam", "adamw") and decay is None else [False]
    for positive, average in ((True, 0), (False, 1), (True, 11), (True, 1)):
        train = EpochCtl(batch_size=batch, loss=LOSSES["squared_error"], epsilon=1.0, clip_norm=None,
                      loss_limit=np.inf, positive=positive, average=average)
        for lazy in lazy_modes:
            p1, s1, a1, o1 = _run_opts(_kernels, spec, train, X, Y, sw, order, k * d + k, 3, 0.05, lazy,
                                       decay=decay)
            p2, s2, a2, o2 = _run_opts(_reference, spec, train, X, Y, sw, order, k * d + k, 3, 0.05, lazy,
                                       decay=decay)
            assert [o[:2] for o in o1] == [o[:2] for o in o2] == [(0, 8), (0, 16), (0, 24)]
            _close(p1, p2, 24, dtype)
            _close(s1, s2, 24, dtype)
            _close(a1, a2, 24, dtype)
            if positive:
                assert p1[: k * d].min() >= 0 and (p1[: k * d] == 0).any()
            if average:
                assert not np.array_equal(a1, p1)
            p3, _, a3, _ = _run_opts(_kernels, spec, train, X, Y, sw, order, k * d + k, 3, 0.05, lazy, period=3,
                                     decay=decay)
            _close(p3, p1, 24, dtype)
            _close(a3, a1, 24, dtype)
            if not lazy:
                p4, _, a4, _ = _run_opts(_kernels, spec, train, X.toarray(), Y, sw, order, k * d + k, 3, 0.05,
                                          lazy, dense=True, decay=decay)
                _close(p1, p4, 24, dtype)
                _close(a1, a4, 24, dtype)


@pytest.mark.parametrize("rule, wd", [("sgd", 0.05), ("momentum", 0.0), ("rmsprop", 0.0), ("adagrad", 0.0),
                                      ("nesterov", 0.05), ("adam", 0.0)])
def test_sliced_csr_epoch_is_bit_identical_to_one_call(monkeypatch, rule, wd):
    """run_epoch_csr's slices end at multiples of the period that every slice passes to the kernel: the fit,
    its running average and the loss equal one call with that period bit for bit (also from a step count that
    is not a multiple of it)."""
    rng = np.random.default_rng(31)
    X, Y, sw = _problem(rng, 500, 40, 1, np.float64, weighted=True, density=0.1)
    order = rng.permutation(500).astype(np.int64)
    spec = _spec(rule, wd)
    monkeypatch.setattr(_iterative, "SLICE_WORK", 64)
    train = EpochCtl(batch_size=4, loss=LOSSES["huber"], epsilon=1.0, clip_norm=None, loss_limit=np.inf,
                  positive=True, average=7)
    period = _iterative.csr_period(X, 1, 4)
    assert 1 < period < 125 // 3
    outs = []
    for sliced in (True, False):
        params, state, avg = np.zeros(41), spec.init_state(41), np.zeros(41)
        t, res = 3, []
        for _ in range(2):
            if sliced:
                res.append(_iterative.run_epoch_csr(int(spec.rule), spec.hyper, train, X, Y, sw, order, params,
                                                    state, t, 0.02, False, avg))
            else:
                res.append(_kernels.epoch_csr(int(spec.rule), spec.hyper, train, X, Y, sw, order, params, state,
                                              t, 0.02, False, None, avg, None, period))
            t = res[-1][1]
        outs.append((params, state, avg, res))
    np.testing.assert_array_equal(outs[0][0], outs[1][0])
    np.testing.assert_array_equal(outs[0][1], outs[1][1])
    np.testing.assert_array_equal(outs[0][2], outs[1][2])
    assert outs[0][3] == outs[1][3]


@pytest.mark.parametrize("rule", RULES)
def test_projected_and_averaged_sparse_fit_equals_dense_fit(rule):
    """LinearRegressor(positive=True, average=...) on CSR data equals it on X.toarray() (alpha, weights,
    intercept, several epochs), for every rule, and SparseAdam mode on CSR equals it on dense X."""
    rng = np.random.default_rng(17)
    X, Y, _ = _problem(rng, 150, 25, 1, np.float64, weighted=False)
    raw_sw = rng.uniform(0.5, 2.0, size=150)
    for positive, average in ((True, False), (False, True), (True, 20)):
        params = LinearRegressor(solver=rule, alpha=0.01, max_epochs=4, tol=None, batch_size=16, random_state=5,
                                 learning_rate=0.02, positive=positive, average=average,
                                 precondition="none").get_params()
        dense = SOLVERS[rule].fit(params, Data(X.toarray(), Y, raw_sw, False))
        sparse = SOLVERS[rule].fit(params, Data(X, Y, raw_sw, False))
        assert sparse.attrs["t_"] == dense.attrs["t_"]
        _close(sparse.coef, dense.coef, 40, np.float64)
        _close(sparse.intercept, dense.intercept, 40, np.float64)
        if positive:
            assert sparse.coef.min() >= 0
        if rule in ("adam", "adamw"):
            lazy = {**params, "sparse_mode": "lazy"}
            a = SOLVERS[rule].fit(lazy, Data(X, Y, raw_sw, False))
            b = SOLVERS[rule].fit(lazy, Data(X.toarray(), Y, raw_sw, False))
            np.testing.assert_array_equal(a.coef, b.coef)


def test_projected_and_averaged_partial_fit_on_sparse_chunks_equals_dense():
    rng = np.random.default_rng(18)
    X = sp.random(300, 30, density=0.1, format="csr", random_state=rng)
    y = X @ rng.normal(size=30) + 0.1 * rng.normal(size=300)
    kw = {"solver": "momentum", "positive": True, "average": 5, "max_epochs": 2, "tol": None, "random_state": 0,
          "precondition": "none"}  # the same map on both (a dense first chunk's centres its columns)
    a, b = LinearRegressor(**kw), LinearRegressor(**kw)
    for lo, hi in ((0, 150), (150, 300)):
        a.partial_fit(X[lo:hi], y[lo:hi])
        b.partial_fit(X[lo:hi].toarray(), y[lo:hi])
    _close(a.coef_, b.coef_, 40, np.float64)
    _close(a.intercept_, b.intercept_, 40, np.float64)
    assert a.coef_.min() >= 0


@settings(max_examples=20, deadline=None)
@given(n=st.integers(1, 60), d=st.integers(1, 30), k=st.integers(1, 2), density=st.floats(0.0, 0.6),
       batch=st.integers(1, 12), rule=st.sampled_from(RULES), wd=st.sampled_from([0.0, 0.1]),
       f32=st.booleans(), seed=st.integers(0, 2**16), positive=st.booleans(), average=st.integers(0, 9),
       period=st.integers(0, 7), own=st.booleans())
def test_random_projected_and_averaged_epochs_match_the_dense_epoch(n, d, k, density, batch, rule, wd, f32, seed,
                                                                    positive, average, period, own):
    """``own``: each weight its own decay in place of ``wd`` (deferred by SGD, momentum and Nesterov)."""
    dtype = np.float32 if f32 else np.float64
    rng = np.random.default_rng(seed)
    X = _csr(rng, n, d, density, dtype)
    Y = rng.normal(size=(n, k)).astype(dtype)
    order = rng.permutation(n).astype(np.int64)
    decay = rng.uniform(0.0, 2.0, size=k * d).astype(dtype) if own else None
    spec = _spec(rule, 0.0 if own else wd)
    train = EpochCtl(batch_size=batch, loss=LOSSES["huber"], epsilon=1.0, clip_norm=None, loss_limit=np.inf,
                  positive=positive, average=average)
    steps = 2 * -(-n // batch)
    p1, s1, a1, o1 = _run_opts(_kernels, spec, train, X, Y, None, order, k * d + k, 2, 0.02, False,
                               period=period, decay=decay)
    p2, s2, a2, o2 = _run_opts(_kernels, spec, train, X.toarray(), Y, None, order, k * d + k, 2, 0.02, False,
                               dense=True, decay=decay)
    assert [o[:2] for o in o1] == [o[:2] for o in o2]
    _close(p1, p2, steps, dtype)
    _close(s1, s2, steps, dtype)
    _close(a1, a2, steps, dtype)


@pytest.mark.parametrize("rule, n_threads", [("momentum", 1), ("sgd", 1), ("sgd", 2), ("adam", 2)])
def test_csr_epoch_boundary_rejects_malformed_input_without_reading_it(rule, n_threads):
    """Direct calls cannot make the kernel read out of bounds: row pointers, row order, state rows and weights are
    checked before it runs, and a column index out of range stops it with BAD_ARGUMENT before anything reads
    through it (plain SGD's scattered steps and the two-thread epoch included)."""
    spec = optim.make(rule)
    train = EpochCtl(batch_size=4, loss=LOSSES["squared_error"], epsilon=1.0, clip_norm=None, loss_limit=np.inf)
    X = _csr(np.random.default_rng(0), 20, 5, 0.5, np.float64)
    Y, order = np.ones((20, 1)), np.arange(20, dtype=np.int64)

    def run(X, order=order, state=None, sw=None):
        return _kernels.epoch_csr(int(spec.rule), spec.hyper, train, X, Y, sw, order, np.zeros(6),
                                  spec.init_state(6) if state is None else state, 0, 0.1, n_threads=n_threads)

    for bad in (99, -1):
        B = X.copy()
        B.indices[3] = bad
        assert run(B)[:2] == (int(_kernels.Status.BAD_ARGUMENT), 0)
    later = next(i for i in range(8, 20) if X.indptr[i + 1] > X.indptr[i])  # a row past the first two minibatches
    B = X.copy()
    B.indices[B.indptr[later]] = 5
    assert run(B)[:2] == (int(_kernels.Status.BAD_ARGUMENT), later // 4)  # the minibatches before it taken
    B = X.copy()
    B.indptr[5] = 10**6
    with pytest.raises(ValueError, match="indptr"):
        run(B)
    with pytest.raises(ValueError, match="order has indices"):
        run(X, order=np.array([0, 25], dtype=np.int64))
    if spec.init_state(6).shape[0]:  # (SGD has no state)
        with pytest.raises(ValueError, match="state must have"):
            run(X, state=np.zeros((0, 6)))
    with pytest.raises(ValueError, match="sample_weight"):
        run(X, sw=np.ones(3))
    assert run(X)[:2] == (0, 5)


def test_projected_and_averaged_fit_stream_and_early_stopping_on_sparse_x_equal_dense():
    rng = np.random.default_rng(19)
    X = sp.random(400, 30, density=0.1, format="csr", random_state=rng)
    y = X @ rng.normal(size=30) + 0.1 * rng.normal(size=400)
    kw = {"solver": "sgd", "alpha": 1e-3, "positive": True, "average": 10, "max_epochs": 3, "tol": None,
          "random_state": 0, "precondition": "none"}
    chunks = [(X[:200], y[:200]), (X[200:], y[200:])]
    a = LinearRegressor(**kw).fit_stream(chunks)
    b = LinearRegressor(**kw).fit_stream([(Xc.toarray(), yc) for Xc, yc in chunks])
    _close(a.coef_, b.coef_, 40, np.float64)
    assert a.coef_.min() >= 0
    a = LinearRegressor(**kw, early_stopping=True).fit(X, y)
    b = LinearRegressor(**kw, early_stopping=True).fit(X.toarray(), y)
    _close(a.coef_, b.coef_, 40, np.float64)


def test_moments_layout_round_trips_and_puts_each_pair_side_by_side():
    rng = np.random.default_rng(3)
    rows = rng.normal(size=(3, 7))
    pairs = moments_layout(rows, False, True)
    np.testing.assert_array_equal(pairs[:2].reshape(-1)[0::2], rows[0])
    np.testing.assert_array_equal(pairs[:2].reshape(-1)[1::2], rows[1])
    np.testing.assert_array_equal(pairs[2], rows[2])  # AMSGrad's maximum keeps its row
    np.testing.assert_array_equal(moments_layout(pairs, True, False), rows)
    same = moments_layout(rows, True, True)
    np.testing.assert_array_equal(same, rows)
    assert same is not rows  # always a copy: the caller steps it in place


@pytest.mark.parametrize("first, then", [("lazy", "exact"), ("exact", "lazy")])
def test_a_warm_start_that_switches_sparse_mode_reads_the_moments_in_its_layout(first, then):
    # The same continuation twice: from the fitted state as it is (its moments converted by the warm start), and
    # from a copy whose moments were converted to the new layout beforehand: the same bits.
    import copy

    rng = np.random.default_rng(12)
    X, Y, _ = _problem(rng, 300, 40, 1, np.float64, weighted=False, density=0.1)
    y = Y[:, 0]
    a = LinearRegressor(solver="adam", sparse_mode=first, learning_rate=0.01, max_epochs=2, tol=None,
                        random_state=0, warm_start=True).fit(X, y)
    assert a._solver_state.interleaved == (first == "lazy")
    b = copy.deepcopy(a)
    st = b._solver_state
    b._solver_state = dataclasses.replace(
        st, opt_state=moments_layout(st.opt_state, st.interleaved, then == "lazy"), interleaved=then == "lazy")
    a.set_params(sparse_mode=then).fit(X, y)
    b.set_params(sparse_mode=then).fit(X, y)
    np.testing.assert_array_equal(a.coef_, b.coef_)
    assert a._solver_state.interleaved == b._solver_state.interleaved == (then == "lazy")
    np.testing.assert_array_equal(a._solver_state.opt_state, b._solver_state.opt_state)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("rule", RULES)
def test_csr_epoch_per_weight_decay_matches_its_twin_and_the_dense_epoch(rule, dtype):
    """A per-weight decay (each weight's own L2 coefficient, the ridge under a per-column scaling) on CSR X: every
    step on every coordinate, the loss gradient plus decay_p w_p, as the twin and the dense epoch of X.toarray()
    take it; two threads give the same bits; SparseAdam mode refuses it."""
    rng = np.random.default_rng(_seed(rule, dtype().itemsize, "decay"))
    n, d, k, batch = 120, 30, 2, 16
    X, Y, sw = _problem(rng, n, d, k, dtype, weighted=True)
    order = rng.permutation(n).astype(np.int64)
    spec = _spec(rule, 0.0)
    decay = rng.uniform(0.01, 1.0, size=k * d).astype(dtype)
    train = EpochCtl(batch_size=batch, loss=LOSSES["huber"], epsilon=0.8, clip_norm=0.5, loss_limit=np.inf)

    def run(impl, dense=False, threads=1, with_decay=True):
        params, state, t = np.zeros(k * d + k, dtype), spec.init_state(k * d + k, dtype), 0
        for _ in range(3):
            extra = {"decay": decay} if with_decay else {}
            if dense:
                work = np.empty(6 * (k * d + k) + 2 * k, dtype)
                status, t, _, _ = impl.epoch(int(spec.rule), spec.hyper, train, X.toarray(), Y, sw, order, params,
                                             state, work, t, 0.05, **extra)
            else:
                status, t, _, _ = impl.epoch_csr(int(spec.rule), spec.hyper, train, X, Y, sw, order, params, state,
                                                 t, 0.05, n_threads=threads, **extra)
            assert status == 0
        return params, state

    p1, s1 = run(_kernels)
    p2, s2 = run(_reference)
    _close(p1, p2, 24, dtype)
    _close(s1, s2, 24, dtype)
    p3, s3 = run(_kernels, dense=True)
    _close(p1, p3, 24, dtype)
    _close(s1, s3, 24, dtype)
    p4, s4 = run(_kernels, threads=2)
    np.testing.assert_array_equal(p4, p1)
    np.testing.assert_array_equal(s4, s1)
    p5, _ = run(_kernels, with_decay=False)
    assert np.max(np.abs(p5 - p1)) > 1e3 * TOL_STEPS * np.finfo(dtype).eps * np.max(np.abs(p5))  # it acts
    if rule in ("adam", "adamw"):
        for impl in (_kernels, _reference):
            with pytest.raises(ValueError, match="excludes SparseAdam steps"):
                impl.epoch_csr(int(spec.rule), spec.hyper, train, X, Y, sw, order, np.zeros(k * d + k, dtype),
                               spec.init_state(k * d + k, dtype), 0, 0.05, True, decay=decay)


@pytest.mark.parametrize("rule", ["sgd", "momentum", "nesterov"])
def test_own_decays_are_deferred_exactly_over_long_rests(rule):
    """Each weight's own decay on wide X, where most coordinates rest for many steps between the rows that store
    them: SGD, momentum and Nesterov catch them up with each coordinate's own power of its step map (and, with
    the running average, its own geometric sums), which must equal the twin's every-coordinate steps; also
    split at a period, and with projection, where a decay beyond 1 / lr (a factor f <= 0) sends a resting
    weight to 0 after one step."""
    rng = np.random.default_rng(_seed("own rests", rule))
    n, d, k, batch, lr = 200, 400, 2, 3, 0.05
    X, Y, sw = _problem(rng, n, d, k, np.float64, weighted=True, density=0.01)
    order = rng.permutation(n).astype(np.int64)
    decay = rng.uniform(0.0, 3.0, size=k * d)
    if rule == "sgd":
        decay[::7] = rng.uniform(1.0 / lr, 3.0 / lr, size=decay[::7].shape)  # f = 1 - lr decay in (-2, 0]
    spec = _spec(rule, 0.0)
    for positive, average in ((False, 0), (False, 5), (True, 40)):
        train = EpochCtl(batch_size=batch, loss=LOSSES["squared_error"], epsilon=1.0, clip_norm=None,
                         loss_limit=np.inf, positive=positive, average=average)
        ref = _run_opts(_reference, spec, train, X, Y, sw, order, k * d + k, 2, lr, False, decay=decay)
        assert [o[:2] for o in ref[3]] == [(0, 67), (0, 134)]
        for period in (0, 5):
            got = _run_opts(_kernels, spec, train, X, Y, sw, order, k * d + k, 2, lr, False, period=period,
                            decay=decay)
            for a, b in zip(got[:3], ref[:3]):
                _close(a, b, 134, np.float64)
        if positive and rule == "sgd":
            assert (got[0][: k * d][::7] == 0).mean() > 0.9


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("k", [1, 2])
@pytest.mark.parametrize("rule", ["sgd", "momentum", "nesterov"])
def test_own_decay_catch_ups_taken_in_batches_match_the_twin(rule, k, dtype):
    """SGD, momentum and Nesterov under each weight's own decay collect their catch-ups and take their powers
    together, 64 at a time: minibatches touching hundreds of columns (several batches a step, the last one
    partial), the call's closing catch-ups over every resting column, and a period splitting some of them (taken
    one by one) must all equal the twin's every-coordinate steps, with rests long enough for exponents of many
    bits."""
    rng = np.random.default_rng(_seed("own batches", rule, k, dtype))
    n, d, batch, lr = 240, 5000, 4, 0.05
    X, Y, sw = _problem(rng, n, d, k, dtype, weighted=True, density=0.005)
    order = rng.permutation(n).astype(np.int64)
    decay = rng.uniform(0.0, 3.0, size=k * d).astype(dtype)
    spec = _spec(rule, 0.0)
    train = EpochCtl(batch_size=batch, loss=LOSSES["squared_error"], epsilon=1.0, clip_norm=None,
                     loss_limit=np.inf)
    touched = max(len(np.unique(X[order[i:i + batch]].indices)) for i in range(0, n, batch))
    assert touched * k > 64  # steps whose catch-ups fill a batch and start another
    assert _kernels._csr_defer_own_decay(d, batch, X.nnz, n)  # deferred, not every step
    ref = _run_opts(_reference, spec, train, X, Y, sw, order, k * d + k, 2, lr, False, decay=decay)
    for period in (0, 7):
        got = _run_opts(_kernels, spec, train, X, Y, sw, order, k * d + k, 2, lr, False, period=period,
                        decay=decay)
        _close(got[0], ref[0], 2 * n // batch, dtype)
        _close(got[1], ref[1], 2 * n // batch, dtype)  # momentum's buffers
        assert np.isfinite(got[0]).all() and not np.array_equal(got[0], np.zeros_like(got[0]))


@pytest.mark.parametrize("batch", [4, 8])  # 20 steps a call (own decays: catch-ups in batches) or 10 (one by one)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("k", [1, 2])
@pytest.mark.parametrize("rule, extra", [("sgd", "own"), ("momentum", {}), ("nesterov", {}),
                                         ("rmsprop", {"momentum": 0.5, "centered": True}), ("rmsprop", {}),
                                         ("momentum", "own"), ("nesterov", "own")])
def test_coordinates_resting_through_a_whole_call_match_the_twin(rule, extra, k, dtype, batch):
    """The partial_fit pattern: a first call trains on rows that store the first half of the columns (and a few of
    the second), a second call on rows that store the second half (and a few of the first). Most of the first half
    then rest through the whole second call, with moved weights and state, and the call's end brings them up to date
    together (csr_own_scale_rested, csr_pair_rested, csr_own_pair_rested); the few it stepped are caught up by
    themselves. Every weight and state entry must equal the twin's every-coordinate steps, also split at a
    period."""
    rng = np.random.default_rng(_seed("rested", rule, str(extra), k, dtype))
    n, d, lr = 160, 600, 0.05
    half = d // 2
    dense = np.zeros((n, d))
    for i in range(n):
        block = rng.choice(half, size=6, replace=False) + (0 if i < n // 2 else half)
        dense[i, block] = rng.normal(size=6)
        if i % 10 == 3:  # a few values in the other half
            dense[i, rng.integers(0, half) + (half if i < n // 2 else 0)] = rng.normal()
    X = sp.csr_array(dense.astype(dtype))
    X.indices, X.indptr = X.indices.astype(np.int32), X.indptr.astype(np.int32)
    Y = np.ascontiguousarray((dense @ rng.normal(size=(d, k)) + 0.1 * rng.normal(size=(n, k))).astype(dtype))
    spec = optim.make(rule, **({} if extra == "own" else extra))
    decay = rng.uniform(0.0, 3.0, size=k * d).astype(dtype) if extra == "own" else None
    train = EpochCtl(batch_size=batch, loss=LOSSES["squared_error"], epsilon=1.0, clip_norm=None, loss_limit=np.inf)
    first, second = (rng.permutation(np.arange(a, a + n // 2)).astype(np.int64) for a in (0, n // 2))
    n_params = k * d + k

    def calls(impl, period):
        params, state, t = np.zeros(n_params, dtype), spec.init_state(n_params, dtype), 0
        for order in (first, second):
            status, t, _, _ = impl.epoch_csr(int(spec.rule), spec.hyper, train, X, Y, None, order, params, state, t,
                                             lr, False, None, None, None, period, decay=decay)
            assert status == 0
        return params, state

    ref = calls(_reference, 0)
    rested = np.setdiff1d(np.arange(half), X[second].indices)
    assert rested.size > half // 2 and (ref[0][rested] != 0).mean() > 0.5  # moved, then rested through call two
    for period in (0, 7):
        got = calls(_kernels, period)
        _close(got[0], ref[0], n // batch, dtype)
        _close(got[1], ref[1], n // batch, dtype)


@pytest.mark.parametrize("rule", ["sgd", "momentum", "nesterov"])
def test_own_decays_stepped_on_every_coordinate_or_deferred_agree(monkeypatch, rule):
    """Where d is small beside a minibatch's stored values the CSR epoch steps each weight's own decay on every
    coordinate (cheaper there, and piped on two threads), elsewhere it defers it: the same fit to rounding, and
    two threads the same bits as one either way."""
    rng = np.random.default_rng(_seed("every step", rule))
    n, d, k, batch = 300, 20, 2, 16
    X, Y, sw = _problem(rng, n, d, k, np.float64, weighted=True, density=0.2)
    order = rng.permutation(n).astype(np.int64)
    decay = rng.uniform(0.01, 1.0, size=k * d)
    spec = _spec(rule, 0.0)
    train = EpochCtl(batch_size=batch, loss=LOSSES["huber"], epsilon=1.0, clip_norm=None, loss_limit=np.inf)
    assert not _kernels._csr_defer_own_decay(d, batch, X.nnz, n)
    fits = []
    for ratio in (_kernels.CSR_EVERY_STEP_RATIO, 0.0):
        monkeypatch.setattr(_kernels, "CSR_EVERY_STEP_RATIO", ratio)
        for threads in (1, 2):
            params, state = np.zeros(k * d + k), spec.init_state(k * d + k)
            t = 0
            for _ in range(3):
                status, t, _, _ = _kernels.epoch_csr(int(spec.rule), spec.hyper, train, X, Y, sw, order, params,
                                                     state, t, 0.05, n_threads=threads, decay=decay)
                assert status == 0
            fits.append(params)
    np.testing.assert_array_equal(fits[0], fits[1])
    np.testing.assert_array_equal(fits[2], fits[3])
    assert not np.array_equal(fits[0], fits[2])  # the two ways round differently
    _close(fits[0], fits[2], 3 * -(-n // batch), np.float64)


# ---------------------------------------------------------------- partial_fit's pass comparison on CSR rows
@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n_models=st.integers(1, 3), k=st.integers(1, 3),
       dtype=st.sampled_from([np.float32, np.float64]), intercept=st.booleans(), weighted=st.booleans(),
       loss=st.sampled_from(["squared_error", "absolute_error", "huber"]))
def test_pass_comparison_on_csr_takes_a_product_a_model_with_the_same_sums(seed, n_models, k, dtype, intercept,
                                                                          weighted, loss):
    # The plateau rule's comparison of a partial_fit call multiplies CSR rows by each model in turn (no (d, models)
    # copy): the same sums, column by column over a row's stored values in order, as one product with the models
    # side by side, so the same comparison bit for bit (its cuts, hence the fits, are unchanged).
    rng = np.random.default_rng(seed)
    m, d = int(rng.integers(1, 200)), int(rng.integers(1, 300))
    X = sp.random_array((m, d), density=float(rng.uniform(0.01, 0.6)), dtype=dtype, rng=rng, format="csr")
    Y = rng.normal(size=(m, k)).astype(dtype)
    sw = rng.uniform(0.1, 2.0, m) if weighted else None
    size = k * d + (k if intercept else 0)
    models = [(rng.normal(size=size) * 10.0 ** rng.uniform(-3, 3)).astype(dtype) for _ in range(n_models)]
    now, before, ref = [*models, None, None][:3]
    got = _iterative.pass_comparison(X, Y, sw, now, before, ref, _iterative.LOSSES[loss], 1.35, lambda p: 0.25)
    side = np.concatenate([p[: k * d].reshape(k, d) for p in models]).T
    R = np.asarray(X @ np.ascontiguousarray(side, dtype=dtype), dtype=np.float64).reshape(m, n_models, k)
    if intercept:
        R += np.stack([p[k * d :] for p in models]).astype(np.float64)
    R -= Y.astype(np.float64)[:, None, :]
    per_row = _iterative._per_sample_loss(R, _iterative.LOSSES[loss], 1.35).sum(axis=2)
    if sw is not None:
        per_row *= sw[:, None]
    want = np.zeros(5)
    want[0] = per_row[:, 0].mean() + 0.25
    for j, slot in ((1, 1), (2, 3)):
        if j < n_models:
            diff = per_row[:, j] - per_row[:, 0]
            want[slot], want[slot + 1] = diff.mean() + 0.25 - 0.25, diff.var() / m
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("batch", [10**9, 2**62])
def test_a_minibatch_larger_than_the_rows_is_the_full_batch_on_csr(batch):
    # The CSR epoch sized its scratch by batch_size: 10**9 asked 30 GiB (MemoryError), 2**62 NumPy's "array is too
    # big"; dense X was fine. A minibatch larger than the epoch is the epoch, as on dense X.
    rng = np.random.default_rng(0)
    X = sp.random(200, 4, density=0.5, format="csr", random_state=0)
    y = X @ np.array([1.0, -2.0, 3.0, 0.5]) + 0.1 * rng.normal(size=200)
    params = dict(solver="sgd", max_epochs=3, tol=None, random_state=0)
    huge = LinearRegressor(batch_size=batch, **params).fit(X, y)
    full = LinearRegressor(batch_size=200, **params).fit(X, y)
    np.testing.assert_array_equal(huge.coef_, full.coef_)
    assert huge.intercept_ == full.intercept_ and np.abs(full.coef_).max() > 0.1


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("rule", RULES)
def test_a_padded_minibatch_divides_by_pad_rows_as_zero_weight_rows_would(rule, dtype):
    """``pad_rows`` (a streamed fit's chunk ends on a short minibatch): a minibatch of fewer rows divides its summed
    gradient by ``pad_rows``, as if padded with rows of zero gradient. Dense and CSR kernels and their twins alike;
    the epoch equals one whose order appends rows of zero weight to fill the last minibatch (the same products
    summed in another order: ``_close``), and a ``pad_rows`` no minibatch is short of changes no bit."""
    rng = np.random.default_rng(_seed("pad", rule, dtype().itemsize))
    n, d, k, batch, extra = 45, 20, 1, 16, 3  # minibatches of 16, 16 and 13 rows
    X, Y, sw = _problem(rng, n, d, k, dtype, weighted=True)
    order = rng.permutation(n).astype(np.int64)
    spec = _spec(rule, 0.0)
    base = EpochCtl(batch_size=batch, loss=LOSSES["huber"], epsilon=0.8, clip_norm=None, loss_limit=np.inf)
    padded = base._replace(pad_rows=batch)
    X2 = sp.vstack([X, X[:extra]]).tocsr()  # the same rows again, of zero weight
    Y2, sw2 = np.vstack([Y, Y[:extra]]), np.concatenate([sw, np.zeros(extra, dtype)])
    order2 = np.concatenate([order, np.arange(n, n + extra)])
    lazy_modes = [False, True] if rule in ("adam", "adamw") else [False]
    for lazy in lazy_modes:
        p_csr, s_csr, _ = _run(_kernels, spec, padded, X, Y, sw, order, d + 1, 3, 0.05, lazy)
        p_twin, s_twin, _ = _run(_reference, spec, padded, X, Y, sw, order, d + 1, 3, 0.05, lazy)
        _close(p_csr, p_twin, 9, dtype)
        _close(s_csr, s_twin, 9, dtype)
        p_fill, _, _ = _run(_kernels, spec, base, X2, Y2, sw2, order2, d + 1, 3, 0.05, lazy)
        _close(p_csr, p_fill, 9, dtype)
        unpadded, _, _ = _run(_kernels, spec, base, X, Y, sw, order, d + 1, 3, 0.05, lazy)
        assert not np.allclose(unpadded, p_csr, rtol=1e-3, atol=0)  # the last minibatch's step is 13/16 of it
        never, _, _ = _run(_kernels, spec, base._replace(pad_rows=13), X, Y, sw, order, d + 1, 3, 0.05, lazy)
        np.testing.assert_array_equal(never, unpadded)
        two = padded._replace(n_threads=2)
        params, state = np.zeros(d + 1, dtype), spec.init_state(d + 1, dtype)
        for e in range(3):
            _kernels.epoch_csr(int(spec.rule), spec.hyper, two, X, Y, sw, order, params, state, 3 * e, 0.05,
                               lazy, n_threads=2)
        np.testing.assert_array_equal(params, p_csr)  # the piped epoch: the same bits
        if not lazy:
            p_dense, _, _ = _run(_kernels, spec, padded, X.toarray(), Y, sw, order, d + 1, 3, 0.05, lazy,
                                       dense=True)
            p_dtwin, _, _ = _run(_reference, spec, padded, X.toarray(), Y, sw, order, d + 1, 3, 0.05, lazy,
                                 dense=True)
            _close(p_dense, p_csr, 9, dtype)
            _close(p_dense, p_dtwin, 9, dtype)
            p_dfill, _, _ = _run(_kernels, spec, base, X2.toarray(), Y2, sw2, order2, d + 1, 3, 0.05, lazy,
                                 dense=True)
            _close(p_dense, p_dfill, 9, dtype)
    for impl in (_kernels, _reference):
        for bad in (-1, 2**63):
            with pytest.raises((ValueError, OverflowError), match="pad_rows"):
                _run(impl, spec, base._replace(pad_rows=bad), X, Y, sw, order, d + 1, 1, 0.05, False)
            with pytest.raises((ValueError, OverflowError), match="pad_rows"):
                _run(impl, spec, base._replace(pad_rows=bad), X.toarray(), Y, sw, order, d + 1, 1, 0.05, False,
                     dense=True)
