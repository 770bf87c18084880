"""The two-thread epoch and the instruction-set copies.

Every minibatch gradient is summed in the same two halves whatever the number of threads, so one thread and two
must agree bit for bit: on every rule, loss and dtype, with weights, several outputs, clipping, short last
minibatches, and when training stops early. Instruction-set copies differ in rounding only (their agreement
with the NumPy reference is in tests/test_parity_optim.py); within one copy, results are reproducible.
"""
import multiprocessing
import os
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from fastopt import LinearRegressor, _kernels, _reference, optim
from fastopt._iterative import TEAM_MIN_HALF_BYTES, TEAM_MIN_STEPS, EpochCtl, epoch_threads

DTYPES = (np.float64, np.float32)
# Every rule once, with its options on.
SPECS = {
    "sgd": optim.SGD(weight_decay=0.05),
    "momentum": optim.Momentum(momentum=0.8, dampening=0.3),
    "nesterov": optim.Nesterov(momentum=0.8),
    "adagrad": optim.AdaGrad(lr_decay=0.01),
    "rmsprop": optim.RMSProp(rho=0.9, momentum=0.5, centered=True),
    "adam": optim.Adam(amsgrad=True, weight_decay=0.05),
    "adamw": optim.AdamW(weight_decay=0.05),
}


def _epochs(spec, train, X, Y, sw, orders, lr, n_threads, fit_intercept=True, solo_step=0, solos=None):
    k, d = Y.shape[1], X.shape[1]
    n_params = k * d + (k if fit_intercept else 0)
    params = np.zeros(n_params, X.dtype)
    state = spec.init_state(n_params, X.dtype)
    work = np.empty(6 * n_params + 2 * k, X.dtype)
    t, results = 0, []
    for order in orders:
        status, t, loss, bad = _kernels.epoch(int(spec.rule), spec.hyper, train, X, Y, sw, order, params, state,
                                              work, t, lr, n_threads, _solo_step=solo_step)
        results.append((status, t, loss, bad))
        if solos is not None:
            solos.append(_kernels._went_solo())
    return params, state, results


@pytest.mark.parametrize("loss", list(optim.Loss))
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", SPECS)
def test_two_threads_equal_one_bit_for_bit(name, dtype, loss, epoch_problem):
    rng = np.random.default_rng(3)
    n, d, k, batch = 301, 9, 2, 20  # 16 minibatches, the last of 1 row: one half empty
    X, Y, sw = epoch_problem(rng, n, d, k, dtype, weighted=True)
    train = EpochCtl(batch_size=batch, loss=loss, epsilon=1.0, clip_norm=5.0, loss_limit=1e12)
    orders = [rng.permutation(n).astype(np.int64) for _ in range(3)]
    one = _epochs(SPECS[name], train, X, Y, sw, orders, 0.02, 1)
    two = _epochs(SPECS[name], train, X, Y, sw, orders, 0.02, 2)
    np.testing.assert_array_equal(two[0], one[0])
    np.testing.assert_array_equal(two[1], one[1])
    assert two[2] == one[2] and all(r[0] == 0 for r in one[2])


@pytest.mark.parametrize("solo_step", [3, 1, -1, -2, -7])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", SPECS)
def test_going_on_alone_and_taking_the_helper_back_give_the_bits_of_one(name, dtype, solo_step, epoch_problem):
    # A helper that loses its core: the calling thread computes the helper's halves itself and goes on alone, the
    # helper stops; later the calling thread copies its parameters and state over the helper's and the two go on
    # together. Forced here at every |solo_step|-th step; a negative solo_step takes the helper back as soon as it
    # has stopped, so that every call also exercises the rejoin (fo_team in fastopt.h).
    rng = np.random.default_rng(21)
    n, d, k, batch = 301, 9, 2, 20
    X, Y, sw = epoch_problem(rng, n, d, k, dtype, weighted=True)
    train = EpochCtl(batch_size=batch, loss=optim.Loss.HUBER, epsilon=1.0, clip_norm=5.0, loss_limit=1e12)
    orders = [rng.permutation(n).astype(np.int64) for _ in range(3)]
    one = _epochs(SPECS[name], train, X, Y, sw, orders, 0.02, 1)
    solos = []
    two = _epochs(SPECS[name], train, X, Y, sw, orders, 0.02, 2, solo_step=solo_step, solos=solos)
    np.testing.assert_array_equal(two[0], one[0])
    np.testing.assert_array_equal(two[1], one[1])
    assert two[2] == one[2] and all(r[0] == 0 for r in one[2])
    assert all(went > 0 for went, _ in solos), solos
    if solo_step < 0:
        assert all(rejoined > 0 for _, rejoined in solos), solos


@pytest.mark.parametrize("batch", [1, 2, 3, 64, 1000])
@pytest.mark.parametrize("fit_intercept", [False, True])
def test_two_threads_any_batch_size(batch, fit_intercept, epoch_problem):
    rng = np.random.default_rng(4)
    X, Y, sw = epoch_problem(rng, 157, 33, 1, np.float64, weighted=False)
    train = EpochCtl(batch_size=batch, loss=optim.Loss.SQUARED_ERROR, epsilon=1.0, clip_norm=None, loss_limit=1e12)
    orders = [rng.permutation(157).astype(np.int64)]
    one = _epochs(optim.make("adam"), train, X, Y, sw, orders, 0.01, 1, fit_intercept)
    two = _epochs(optim.make("adam"), train, X, Y, sw, orders, 0.01, 2, fit_intercept)
    np.testing.assert_array_equal(two[0], one[0])
    assert two[2] == one[2]


@pytest.mark.parametrize("dtype", DTYPES)
def test_two_threads_many_outputs(dtype, epoch_problem):
    # More outputs than the kernel's per-row coefficients hold on the stack (256): each thread's coefficients
    # then live in the scratch array, in cache lines of their own.
    rng = np.random.default_rng(11)
    X, Y, sw = epoch_problem(rng, 90, 3, 261, dtype, weighted=True)
    train = EpochCtl(batch_size=7, loss=optim.Loss.HUBER, epsilon=1.0, clip_norm=None, loss_limit=1e12)
    orders = [rng.permutation(90).astype(np.int64) for _ in range(2)]
    one = _epochs(optim.make("adam"), train, X, Y, sw, orders, 0.01, 1)
    two = _epochs(optim.make("adam"), train, X, Y, sw, orders, 0.01, 2)
    np.testing.assert_array_equal(two[0], one[0])
    assert two[2] == one[2] and all(r[0] == 0 for r in one[2])


def test_two_threads_match_the_reference(epoch_problem):
    # The twin sums the same halves; the two-thread kernel agrees with it to the parity tests' tolerance.
    rng = np.random.default_rng(5)
    n, d, batch = 400, 40, 32
    X, Y, sw = epoch_problem(rng, n, d, 1, np.float64, weighted=True)
    spec = optim.make("adam")
    train = EpochCtl(batch_size=batch, loss=optim.Loss.HUBER, epsilon=1.0, clip_norm=None, loss_limit=1e12)
    order = rng.permutation(n).astype(np.int64)
    params, _, [(status, t, loss, _)] = _epochs(spec, train, X, Y, sw, [order], 0.01, 2)
    ref_params, ref_state = np.zeros(d + 1), spec.init_state(d + 1)
    ref = _reference.epoch(int(spec.rule), spec.hyper, train, X, Y, sw, order, ref_params, ref_state,
                           np.empty(6 * (d + 1) + 2), 0, 0.01, 2)
    assert (status, t) == ref[:2] == (0, n // batch + 1)
    tol = (d + batch) * t * np.finfo(np.float64).eps
    np.testing.assert_allclose(params, ref_params, rtol=0, atol=tol * np.abs(ref_params).max())
    assert loss == pytest.approx(ref[2], rel=tol)


@pytest.mark.parametrize(("n_threads", "solo_step"), [(1, 0), (2, 0), (2, 1), (2, -1), (2, 2), (2, -4)])
def test_divergence_and_bad_input_stop_both_threads(n_threads, solo_step):
    # (solo_step: the calling thread goes on alone, or has just taken the helper back, when the fit stops)
    # lr = 10 on a curvature-2 problem multiplies the residual by -19 per step: the loss passes 1e3 at step 3.
    X, Y = np.ones((64, 1)), np.ones((64, 1))
    spec = optim.SGD()
    work = np.empty(6 * 2 + 2)
    train = EpochCtl(batch_size=8, loss=optim.Loss.SQUARED_ERROR, epsilon=1.0, clip_norm=None, loss_limit=1e3)
    params, state = np.zeros(2), spec.init_state(2)
    status, t, _, bad = _kernels.epoch(0, spec.hyper, train, X, Y, None, np.arange(64), params, state, work, 0,
                                       10.0, n_threads, _solo_step=solo_step)
    assert (status, t, bad) == (2, 2, 3)
    X[37] = np.nan  # minibatch 5, second half: the helper's rows when there are two threads
    params[:] = 0
    status, t, _, bad = _kernels.epoch(0, spec.hyper, train._replace(loss_limit=np.inf), X, Y, None,
                                       np.arange(64), params, state, work, 0, 1e-3, n_threads,
                                       _solo_step=solo_step)
    assert (status, t, bad) == (1, 4, 5)


def test_work_too_small_is_a_clear_error():
    X, Y = np.ones((8, 2)), np.ones((8, 1))
    spec = optim.SGD()
    train = EpochCtl(batch_size=2, loss=optim.Loss.SQUARED_ERROR, epsilon=1.0, clip_norm=None, loss_limit=1e3)
    with pytest.raises(ValueError, match="work needs 6 \\* n_params \\+ 2 \\* k = 20"):
        _kernels.epoch(0, spec.hyper, train, X, Y, None, np.arange(8), np.zeros(3), spec.init_state(3),
                       np.empty(19), 0, 0.1, 2)


def test_estimator_threads_do_not_change_the_fit(monkeypatch):
    import fastopt._iterative as it

    calls = []
    real_epoch = it._kernels.epoch
    monkeypatch.setattr(it._kernels, "epoch", lambda *a, **k: calls.append(a[12]) or real_epoch(*a, **k),
                        raising=False)
    rng = np.random.default_rng(6)
    X = rng.normal(size=(6000, 64))
    y = X @ rng.normal(size=64) + rng.normal(size=6000)
    w = rng.uniform(0.5, 2.0, size=6000)
    fits, threads = [], []
    for n in (1, 2, 5, None):
        calls.clear()
        fits.append(LinearRegressor(solver="adam", max_epochs=3, tol=None, random_state=0, n_threads=n).fit(X, y, w))
        threads.append(list(calls))
    for est in fits[1:]:
        np.testing.assert_array_equal(est.coef_, fits[0].coef_)
        assert est.intercept_ == fits[0].intercept_
    if it._usable_cpus() >= 2:  # 94 steps of 32-row halves of 64 float64 features: large enough for two
        assert threads[0] == threads[3] == [1] * 3
        for used in threads[1:3]:  # the first epoch may begin alone on the rows drawn while the helper draws on
            alone = used.index(2)
            assert used == [1] * alone + [2] * 3


def test_concurrent_two_thread_fits_are_bit_identical():
    # Four fits with a helper thread each on a machine with fewer cores: the waits yield, nothing hangs.
    rng = np.random.default_rng(7)
    X = rng.normal(size=(4000, 64))
    y = X @ rng.normal(size=64)

    def fit(seed):
        return LinearRegressor(solver="momentum", max_epochs=2, tol=None, random_state=seed, n_threads=2,
                               learning_rate=1e-3).fit(X, y).coef_

    serial = fit(3)
    with ThreadPoolExecutor(max_workers=4) as pool:
        for coef in pool.map(fit, [3, 3, 3, 3]):
            np.testing.assert_array_equal(coef, serial)


@pytest.mark.parametrize("dtype", DTYPES)
def test_two_thread_fits_beside_a_busy_core_have_the_bits_of_one(busy_core, dtype):
    # Another process takes a core now and then: the helper loses it mid-epoch, the calling thread goes on
    # alone and takes the helper back later, wherever the scheduler decides; the coefficients stay those of one
    # thread.
    rng = np.random.default_rng(8)
    X = rng.normal(size=(20_000, 48)).astype(dtype)
    y = X @ rng.normal(size=48).astype(dtype) + rng.normal(size=20_000).astype(dtype)
    fits = [LinearRegressor(solver="adam", max_epochs=4, tol=None, random_state=1, n_threads=n).fit(X, y)
            for n in (1, 2, 2)]
    for est in fits[1:]:
        np.testing.assert_array_equal(est.coef_, fits[0].coef_)
        assert est.intercept_ == fits[0].intercept_


@pytest.mark.parametrize("bad", [0, -1, 1.5, "2"])
def test_n_threads_is_validated(bad):
    X, y = np.ones((10, 2)), np.ones(10)
    with pytest.raises(ValueError, match="n_threads"):
        LinearRegressor(solver="sgd", n_threads=bad).fit(X, y)


def test_auto_threads_policy(monkeypatch):
    import fastopt._iterative as it

    monkeypatch.setattr(it, "_usable_cpus", lambda: 2)
    rows = TEAM_MIN_HALF_BYTES // 8  # float64 rows of one feature filling a half-minibatch
    big = 2 * rows * TEAM_MIN_STEPS
    assert epoch_threads(2, big, 2 * rows, 1, 1, 8) == 2
    assert epoch_threads(7, big, 2 * rows, 1, 1, 8) == 2  # two at most
    assert epoch_threads(2, big, 2 * rows - 2, 1, 1, 8) == 1  # halves below the threshold
    assert epoch_threads(2, big // 2, 2 * rows, 1, 1, 8) == 1  # too few steps
    assert epoch_threads(2, big, 2 * rows, 1, 1, 4) == 1  # float32 halves are half as large
    assert epoch_threads(None, big, 2 * rows, 1, 1, 8) == epoch_threads(1, big, 2 * rows, 1, 1, 8) == 1  # opt-in
    monkeypatch.setattr(it, "_usable_cpus", lambda: 1)
    assert epoch_threads(2, big, 2 * rows, 1, 1, 8) == 1


def test_simd_selection():
    best = _kernels.simd()
    try:
        assert _kernels.simd("baseline") == "baseline"
        assert _kernels.simd("best") == best
        with pytest.raises(ValueError, match="simd must be one of"):
            _kernels.simd("avx9000")
        with pytest.raises(ValueError, match="simd must be one of"):
            _reference.simd("avx9000")
    finally:
        _kernels.simd("best")


def test_each_instruction_set_is_reproducible_and_they_agree_to_rounding(epoch_problem):
    rng = np.random.default_rng(8)
    X, Y, sw = epoch_problem(rng, 500, 37, 1, np.float64, weighted=True)
    train = EpochCtl(batch_size=16, loss=optim.Loss.SQUARED_ERROR, epsilon=1.0, clip_norm=None, loss_limit=1e12)
    orders = [rng.permutation(500).astype(np.int64)]
    spec = optim.make("rmsprop")
    fits = {}
    try:
        for isa in ("baseline", "best"):
            name = _kernels.simd(isa)
            a = _epochs(spec, train, X, Y, sw, orders, 0.01, 1)[0]
            b = _epochs(spec, train, X, Y, sw, orders, 0.01, 2)[0]
            np.testing.assert_array_equal(a, b)
            fits[name] = a
    finally:
        _kernels.simd("best")
    ref = next(iter(fits.values()))
    tol = (37 + 16) * 32 * np.finfo(np.float64).eps
    for got in fits.values():
        np.testing.assert_allclose(got, ref, rtol=0, atol=tol * np.abs(ref).max())


def _helper_threads():
    return [t for t in threading.enumerate() if t.name == "fastopt-epoch-helper"]


def _epoch_runner(seed, n, d):
    """A function running one Adam epoch on a fixed random problem, from zeros, with 1 or 2 threads."""
    rng = np.random.default_rng(seed)
    X, Y = rng.normal(size=(n, d)), rng.normal(size=(n, 1))
    order, spec = rng.permutation(n).astype(np.int64), optim.make("adam")
    train = EpochCtl(batch_size=16, loss=optim.Loss.SQUARED_ERROR, epsilon=1.0, clip_norm=None, loss_limit=1e12)

    def run(n_threads=2):
        params, state = np.zeros(d + 1), spec.init_state(d + 1)
        status, *_ = _kernels.epoch(int(spec.rule), spec.hyper, train, X, Y, None, order, params, state,
                                    np.empty(6 * (d + 1) + 2), 0, 0.01, n_threads)
        assert status == 0
        return params

    return run


def test_helper_thread_is_started_once_and_reused():
    run = _epoch_runner(8, 200, 12)
    one = run(1)
    np.testing.assert_array_equal(run(), one)
    helpers = _helper_threads()
    assert len(helpers) == 1 and helpers[0].daemon
    for _ in range(50):
        np.testing.assert_array_equal(run(), one)
    assert _helper_threads() == helpers  # the same thread served every epoch, none was added


def test_concurrent_two_thread_epochs_use_one_job_helpers():
    # While the shared helper is busy, another epoch gets a helper thread of its own, which ends with its epoch.
    run = _epoch_runner(9, 20_000, 40)
    one = run(1)
    np.testing.assert_array_equal(run(), one)
    shared = _helper_threads()
    with ThreadPoolExecutor(max_workers=3) as pool:
        for params in pool.map(lambda _: run(), range(6)):
            np.testing.assert_array_equal(params, one)
    assert _helper_threads() == shared


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_two_thread_epoch_in_a_forked_child():
    # The child of a fork has no helper thread; its first two-thread epoch starts one instead of waiting forever.
    run = _epoch_runner(10, 300, 12)
    parent = run()  # the parent's helper exists before the fork
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # fork with threads (Python >= 3.12)
        child = ctx.Process(target=lambda: queue.put(run().tobytes()))
        child.start()
    try:
        result = queue.get(timeout=60)
    finally:
        child.join(timeout=60)
        if child.is_alive():
            child.kill()
    assert child.exitcode == 0
    np.testing.assert_array_equal(np.frombuffer(result), parent)


@pytest.mark.parametrize("impl", [_kernels, _reference])
def test_shuffle_start_draws_shuffle_s_permutation(impl):
    rows = np.arange(5_000, dtype=np.int64)[::-1].copy()
    for key in (0, 7, 2**64 - 1):
        job = impl.shuffle_start(rows, key)
        np.testing.assert_array_equal(job.result(), _kernels.shuffle(rows, key))
        np.testing.assert_array_equal(job.result(), _kernels.shuffle(rows, key))  # result() may be asked again
    assert impl.shuffle_start(rows[:1], 3) is None  # nothing to draw
    job = impl.shuffle_start(5_000, 9)  # the rows 0 .. n-1, written by the helper itself
    np.testing.assert_array_equal(job.result(), _kernels.shuffle(np.arange(5_000, dtype=np.int64), 9))
    with pytest.raises(ValueError, match="out must not be rows"):
        impl.shuffle_start(rows, 3, rows)


def test_shuffle_start_leaves_a_busy_helper_alone():
    rows = np.arange(50_000, dtype=np.int64)
    job = _kernels.shuffle_start(rows, 11)
    assert job is not None and _kernels.shuffle_start(rows, 12) is None  # the shared helper is taken
    del job  # an uncollected job is collected when dropped: the helper is free again
    second = _kernels.shuffle_start(rows, 12)
    assert second is not None
    np.testing.assert_array_equal(second.result(), _kernels.shuffle(rows, 12))


@pytest.mark.parametrize("max_epochs", [1, 3])
def test_two_thread_fits_draw_their_first_order_early_with_the_same_result(rng, max_epochs):
    # A two-thread fit draws its first epoch's order on the helper thread during the set-up: the coefficients are
    # bit for bit those of one thread, also when the helper is busy with another order (then drawn at once), and
    # a set-up that raises leaves the helper free.
    X = rng.normal(size=(4000, 64))
    y = X @ rng.normal(size=64) + rng.normal(size=4000)
    params = dict(solver="adam", learning_rate=1e-3, max_epochs=max_epochs, tol=None, random_state=3, batch_size=64)
    one = LinearRegressor(**params, n_threads=1).fit(X, y).coef_
    np.testing.assert_array_equal(LinearRegressor(**params, n_threads=2).fit(X, y).coef_, one)
    hold = _kernels.shuffle_start(np.arange(10, dtype=np.int64), 1)  # the shared helper busy
    np.testing.assert_array_equal(LinearRegressor(**params, n_threads=2).fit(X, y).coef_, one)
    hold.result()
    bad = y.copy()
    bad[5] = np.nan
    with pytest.raises(ValueError, match="Input y contains"):
        LinearRegressor(**params, n_threads=2).fit(X, bad)
    job = _kernels.shuffle_start(np.arange(10, dtype=np.int64), 1)
    assert job is not None  # free again
    job.result()


class _Drawing:
    """A stand-in for a job of shuffle_start whose order becomes final in the given steps."""

    def __init__(self, order, steps):
        self.order, self.steps, self.collected = order, list(steps), False

    def ready(self):
        return self.steps.pop(0) if self.steps and not self.collected else len(self.order)

    def result(self):
        self.collected = True
        return self.order


@pytest.mark.parametrize("steps", [[0], [5], [64, 64, 200], [100, 1000, 1001, 5000], [6000], [10**9]])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_epoch_trains_alone_on_the_rows_drawn_so_far_with_the_same_bits(steps, dtype, monkeypatch):
    # While the helper still draws the order, run_epoch trains one-thread slices of whole minibatches on its final
    # leading rows; any such split gives the bits of the plain two-thread epoch.
    import fastopt._iterative as it
    from fastopt import optim

    monkeypatch.setattr(it, "PENDING_WORK", 2**13)  # slices of a few minibatches: several of them
    rng = np.random.default_rng(8)
    X = rng.normal(size=(6000, 16)).astype(dtype)
    Y = (X @ rng.normal(size=(16, 1)) + rng.normal(size=(6000, 1))).astype(dtype)
    order = _kernels.shuffle(6000, 11)
    spec = optim.make("adam")
    train = it.EpochCtl(batch_size=32, loss=optim.Loss.HUBER, epsilon=1.0, clip_norm=None, loss_limit=np.inf)
    runs, calls = [], []
    real = _kernels.epoch
    monkeypatch.setattr(it._kernels, "epoch", lambda *a, **k: calls.append((a[12], len(a[6]))) or real(*a, **k))
    for pending in (None, _Drawing(order, steps)):
        params, state = np.zeros(17, dtype), spec.init_state(17, dtype)
        work = np.empty(6 * 17 + 2, dtype)
        out = it.run_epoch(int(spec.rule), spec.hyper, train, X, Y, None, order, params, state, work, 0, 1e-2, 2,
                           pending)
        runs.append((out, params, state))
        if pending is not None:
            assert pending.collected
    # alone only on rows reported final before the whole order was: then two threads for the rest
    partial = max([s for s in steps if s < 6000], default=0)
    alone = sum(n for threads, n in calls if threads == 1)
    assert alone <= partial and alone % 32 == 0
    assert sum(n for threads, n in calls if threads == 2) == 2 * 6000 - alone
    (o1, p1, s1), (o2, p2, s2) = runs
    assert o1[:2] == o2[:2] and o1[2] == o2[2]
    np.testing.assert_array_equal(p1, p2)
    np.testing.assert_array_equal(s1, s2)


def test_shuffle_job_reports_final_leading_rows():
    n = 300_000
    expected = _kernels.shuffle(n, 42)
    job = _kernels.shuffle_start(n, 42, np.empty(n, dtype=np.int64))
    if job is None:
        pytest.skip("the shared helper is busy")
    seen = []
    while True:
        ready = job.ready()
        seen.append(ready)
        np.testing.assert_array_equal(job.buffer()[:ready], expected[:ready])  # final once reported
        if ready == n:
            break
    assert seen == sorted(seen)
    np.testing.assert_array_equal(job.result(), expected)
    assert job.ready() == n
