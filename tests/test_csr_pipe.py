"""The piped CSR epoch (two threads, ``fo_csr_pipe`` in csrc/fastopt.h) against the one-thread epoch.

The second thread stages rows and finds each minibatch's touched columns (index work); every arithmetic
operation stays on the calling thread, in the one-thread order, except SparseAdam mode's elementwise step (one
output) and the steps on every coordinate, whose chunks of coordinates either thread runs with the same
operations. So the comparisons here are exact
(``assert_array_equal``), with no tolerance: any difference is a defect.
"""
import itertools
import subprocess
import sys
import textwrap
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from fastopt import LinearRegressor, _iterative, _kernels, optim
from fastopt._iterative import EpochCtl

RULES = ["sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adam", "adamw"]
LOSSES = [optim.Loss.SQUARED_ERROR, optim.Loss.ABSOLUTE_ERROR, optim.Loss.HUBER]


@pytest.fixture(autouse=True)
def _no_carried_backoff():
    # Each test's epochs start piped: none inherits a backoff from an earlier test's last epoch (_kernels._carried).
    _kernels._carried(0)
    yield
    _kernels._carried(0)


def _problem(rng, n, d, k, dtype, density, explicit_zeros=False, unsorted=False):
    X = sp.random(n, d, density=density, format="csr", random_state=rng, dtype=np.float64)
    X.data = rng.normal(size=X.nnz)
    if explicit_zeros and X.nnz:
        X.data[rng.random(X.nnz) < 0.2] = 0.0
    X = sp.csr_array(X.astype(dtype))
    if unsorted:  # the columns of each row in a random order: allowed, and read in that order
        for r in range(n):
            a, b = X.indptr[r], X.indptr[r + 1]
            perm = a + rng.permutation(b - a)
            X.indices[a:b], X.data[a:b] = X.indices[perm], X.data[perm]
    X.indices, X.indptr = X.indices.astype(np.int32), X.indptr.astype(np.int32)
    Y = np.ascontiguousarray((X @ rng.normal(size=(d, k)) + 0.3 * rng.normal(size=(n, k))).astype(dtype))
    return X, Y


def _epochs(X, Y, sw, spec, train, orders, params, lr, lazy, n_threads, avg=None, solo_block=0, solos=None,
            period=0, decay=None):
    params, state = params.copy(), spec.init_state(params.shape[0], params.dtype)
    out, t = [], 0
    for order in orders:
        res = _kernels.epoch_csr(int(spec.rule), spec.hyper, train, X, Y, sw, order, params, state, t, lr, lazy,
                                 None, avg, None, period, n_threads, decay, _solo_block=solo_block)
        if solos is not None:
            solos.append(_kernels._went_solo())
        out.append(res)
        t = res[1]
        if res[0] != 0:
            break
    return params, state, out


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(2, 300), d=st.integers(1, 80),
       density=st.sampled_from([0.02, 0.1, 0.4, 1.0]), dtype=st.sampled_from([np.float64, np.float32]),
       batch=st.integers(1, 40), k=st.sampled_from([1, 2]), rule=st.sampled_from(RULES),
       wd=st.sampled_from([0.0, 0.05]), lazy=st.booleans(), loss=st.sampled_from(LOSSES),
       weighted=st.booleans(), intercept=st.booleans(), positive=st.booleans(),
       clip=st.sampled_from([None, 0.5]), average=st.sampled_from([0, 3]), zeros=st.booleans(),
       unsorted=st.booleans(), solo=st.sampled_from([0, 0, 1, 2, 3, -1, -2]))
def test_two_threads_give_the_bits_of_one(seed, n, d, density, dtype, batch, k, rule, wd, lazy, loss, weighted,
                                          intercept, positive, clip, average, zeros, unsorted, solo):
    # (solo > 0: the calling thread goes on alone at that block, as when the second thread stalls; < 0: at every
    # -solo-th block, taking the second thread back as soon as it has stopped)
    rng = np.random.default_rng(seed)
    X, Y = _problem(rng, n, d, k, dtype, density, zeros, unsorted)
    sw = None
    if weighted:
        sw = rng.uniform(0, 2, size=n).astype(dtype)
        sw /= sw.mean()
    spec = optim.make(rule, weight_decay=wd)
    train = EpochCtl(batch_size=batch, loss=loss, epsilon=0.8, clip_norm=clip, loss_limit=np.inf,
                     positive=positive, average=average)
    n_params = k * d + (k if intercept else 0)
    params = (0.1 * rng.normal(size=n_params)).astype(dtype)
    if positive:
        params = np.abs(params)
    orders = [rng.permutation(n).astype(np.int64) for _ in range(2)]
    runs = {}
    for threads in (1, 2):
        avg = np.zeros(n_params, dtype) if average else None
        p, s, out = _epochs(X, Y, sw, spec, train, orders, params, 0.05, lazy, threads, avg,
                            solo_block=solo if threads == 2 else 0)
        runs[threads] = (p, s, out, avg)
    p1, s1, o1, a1 = runs[1]
    p2, s2, o2, a2 = runs[2]
    assert o2 == o1
    np.testing.assert_array_equal(p2, p1)
    np.testing.assert_array_equal(s2, s1)
    if average:
        np.testing.assert_array_equal(a2, a1)


def _hashed(rng, n, d, nnz):
    indices = rng.integers(0, d, size=n * nnz).astype(np.int32)
    X = sp.csr_array((rng.normal(size=n * nnz), indices, np.arange(0, n * nnz + 1, nnz, dtype=np.int32)),
                     shape=(n, d))
    X.sum_duplicates()
    X.indices, X.indptr = X.indices.astype(np.int32), X.indptr.astype(np.int32)
    return X


def _hashed_epoch(seed, n, d, nnz, rule, batch, loss):
    """A hashed problem of n rows and one target, the rule's spec and the epoch's controls; the generator after
    them (for the rows' order)."""
    rng = np.random.default_rng(seed)
    X = _hashed(rng, n, d, nnz)
    Y = rng.normal(size=(n, 1))
    train = EpochCtl(batch_size=batch, loss=loss, epsilon=1.0, clip_norm=None, loss_limit=np.inf)
    return rng, X, Y, optim.make(rule), train


@pytest.mark.parametrize(("rule", "lazy"), [("sgd", False), ("adagrad", False), ("adam", True), ("adam", False),
                                           ("momentum", False), ("rmsprop", False)])
def test_a_long_epoch_of_many_blocks_gives_the_bits_of_one_thread(rule, lazy):
    # Many staged blocks (512 rows each), so that each of the blocks in flight is refilled many times.
    rng, X, Y, spec, train = _hashed_epoch(4, 20_000, 5_000, 12, rule, 32, optim.Loss.HUBER)
    orders = [rng.permutation(20_000).astype(np.int64)]
    p1, s1, o1 = _epochs(X, Y, None, spec, train, orders, np.zeros(5_001), 0.01, lazy, 1)
    p2, s2, o2 = _epochs(X, Y, None, spec, train, orders, np.zeros(5_001), 0.01, lazy, 2)
    assert o2 == o1 and o1[0][:2] == (0, 625)
    np.testing.assert_array_equal(p2, p1)
    np.testing.assert_array_equal(s2, s1)


@pytest.mark.parametrize("solo_block", [1, 2, 7, 40, -1, -3])
@pytest.mark.parametrize(("rule", "lazy", "wd", "average", "own"), [
    ("sgd", False, 0.0, 0, False), ("sgd", False, 0.01, 3, False), ("adagrad", False, 0.0, 0, False),
    ("adam", True, 0.0, 0, False), ("adam", False, 0.01, 0, False), ("momentum", False, 0.01, 0, False),
    ("nesterov", False, 0.0, 0, True), ("rmsprop", False, 0.0, 5, False)])
def test_going_on_alone_mid_epoch_gives_the_bits_of_one_thread(rule, lazy, wd, average, own, solo_block):
    # The producer stalls at block solo_block (of 40 per epoch, 512 rows each; forced here; solo_block < 0: at
    # every block whose number is a multiple of -solo_block): the calling thread goes on from its own staging and
    # marks, with the stamps of its deferred updates as they are, and (solo_block < 0) takes the producer back as
    # soon as it has stopped, at the start of its own next block. Scattered SGD steps (fixed blocks either thread
    # stages; no rejoin there), SparseAdam's shared steps, deferred updates with averaging and each weight's own
    # decay, steps on every coordinate.
    rng, X, Y, spec, train = _hashed_epoch(5, 20_000, 5_000, 12, rule, 32, optim.Loss.HUBER)
    spec = optim.make(rule, weight_decay=wd)
    train = train._replace(average=average)
    decay = np.linspace(0.0, 0.02, 5_000) if own else None
    orders = [rng.permutation(20_000).astype(np.int64) for _ in range(2)]
    avgs = [np.zeros(5_001) if average else None for _ in range(2)]
    p1, s1, o1 = _epochs(X, Y, None, spec, train, orders, np.zeros(5_001), 0.01, lazy, 1, avgs[0], period=7,
                         decay=decay)
    solos = []
    p2, s2, o2 = _epochs(X, Y, None, spec, train, orders, np.zeros(5_001), 0.01, lazy, 2, avgs[1], solo_block,
                         solos, period=7, decay=decay)
    assert o2 == o1 and [o[:2] for o in o1] == [(0, 625), (0, 1250)]
    first = 16 * (abs(solo_block) - 1) + 1  # (16 minibatches a block; a real stall may come earlier)
    assert 0 < solos[0][0] <= first and 625 < solos[1][0] <= 625 + first, solos
    if solo_block < 0 and rule != "sgd":  # (plain SGD's fixed blocks: no rejoin)
        assert all(rejoined > 0 for _, rejoined in solos), solos
    np.testing.assert_array_equal(p2, p1)
    np.testing.assert_array_equal(s2, s1)
    if average:
        np.testing.assert_array_equal(avgs[1], avgs[0])


def _assert_two_threads_equal_one(rng, X, Y, sw, spec, train, params, lazy):
    """Two epochs in two drawn orders, at rate 0.01, on one thread and on two: the same statuses, bits and state."""
    orders = [rng.permutation(X.shape[0]).astype(np.int64) for _ in range(2)]
    p1, s1, o1 = _epochs(X, Y, sw, spec, train, orders, params, 0.01, lazy, 1)
    p2, s2, o2 = _epochs(X, Y, sw, spec, train, orders, params, 0.01, lazy, 2)
    assert o2 == o1
    np.testing.assert_array_equal(p2, p1)
    np.testing.assert_array_equal(s2, s1)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), d=st.integers(200, 3_000), nnz=st.integers(4, 40),
       batch=st.integers(8, 96), dtype=st.sampled_from([np.float64, np.float32]),
       rule=st.sampled_from(["adam", "adamw"]), wd=st.sampled_from([0.0, 0.05]), amsgrad=st.booleans(),
       loss=st.sampled_from(LOSSES), weighted=st.booleans(), intercept=st.booleans(), positive=st.booleans(),
       clip=st.sampled_from([None, 0.5]))
def test_sparse_adam_steps_shared_by_both_threads_give_the_bits_of_one(seed, d, nnz, batch, dtype, rule, wd,
                                                                        amsgrad, loss, weighted, intercept,
                                                                        positive, clip):
    # SparseAdam mode with one output: on two threads the producer runs chunks of 128 of each step's touched
    # coordinates (csr_sparse_adam_split, fo_csr_help_share). Minibatches here touch up to 3,840 columns: 1 to 30
    # chunks, shared between the threads as they come. Each chunk's arithmetic is elementwise, so the bits must be
    # those of one thread.
    rng = np.random.default_rng(seed)
    n = 1_500
    X = _hashed(rng, n, d, nnz)
    X.data = X.data.astype(dtype)
    Y = np.ascontiguousarray((X @ rng.normal(size=(d, 1)) + 0.3 * rng.normal(size=(n, 1))).astype(dtype))
    sw = None
    if weighted:
        sw = rng.uniform(0, 2, size=n).astype(dtype)
        sw /= sw.mean()
    spec = optim.make(rule, weight_decay=wd, amsgrad=amsgrad)
    train = EpochCtl(batch_size=batch, loss=loss, epsilon=0.8, clip_norm=clip, loss_limit=np.inf,
                     positive=positive)
    params = (0.1 * rng.normal(size=d + (1 if intercept else 0))).astype(dtype)
    if positive:
        params = np.abs(params)
    _assert_two_threads_equal_one(rng, X, Y, sw, spec, train, params, True)


@settings(max_examples=12, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), d=st.integers(16_000, 60_000), dtype=st.sampled_from([np.float64, np.float32]),
       rule=st.sampled_from(["adam", "adamw", "adagrad", "rmsprop"]), amsgrad=st.booleans(),
       centered=st.booleans(), intercept=st.booleans(), loss=st.sampled_from(LOSSES))
def test_steps_on_every_coordinate_shared_by_both_threads_give_the_bits_of_one(seed, d, dtype, rule, amsgrad,
                                                                               centered, intercept, loss):
    # Rules without deferred updates (exact Adam and AdamW, AdaGrad and RMSProp under L2) step every coordinate
    # each step; on two threads the producer runs chunks of 16,384 of them (csr_dense_step). With d + 1 up to
    # 60,001 coordinates a step has 1 to 4 chunks, the last one holding the intercept (no L2: the chunks' share of
    # the decayed coordinates). The rules are elementwise, so the bits must be one thread's.
    rng = np.random.default_rng(seed)
    n = 240
    X = _hashed(rng, n, d, 20)
    X.data = X.data.astype(dtype)
    Y = np.ascontiguousarray((X @ rng.normal(size=(d, 1)) + 0.3 * rng.normal(size=(n, 1))).astype(dtype))
    hyper = dict(weight_decay=0.05)
    if rule in ("adam", "adamw"):
        hyper["amsgrad"] = amsgrad
    if rule == "rmsprop":
        hyper.update(centered=centered, momentum=0.5 if amsgrad else 0.0)
    spec = optim.make(rule, **hyper)
    train = EpochCtl(batch_size=16, loss=loss, epsilon=0.8, clip_norm=None, loss_limit=np.inf)
    params = (0.1 * rng.normal(size=d + (1 if intercept else 0))).astype(dtype)
    _assert_two_threads_equal_one(rng, X, Y, None, spec, train, params, False)


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("fault", ["column out of range", "column stored twice"])
def test_a_malformed_row_stops_the_epoch_before_its_minibatch(fault, threads):
    # Row 150 (in visiting order: minibatch 15 of 10 rows) is malformed: the 15 steps before it are taken, its
    # step is not, and the status says so, on one thread and two alike.
    rng = np.random.default_rng(5)
    n, d = 400, 6
    X = _hashed(rng, n, d, 3)
    indptr, indices, data = X.indptr.copy(), X.indices.copy(), X.data.copy()
    order = rng.permutation(n).astype(np.int64)
    bad = order[150]
    if fault == "column out of range":
        indices[indptr[bad]] = d + 3
    else:  # a row of d + 1 values: some column twice
        a = indptr[bad]
        row = np.arange(d + 1, dtype=np.int32) % d
        indices = np.concatenate([indices[:a], row, indices[indptr[bad + 1]:]]).astype(np.int32)
        data = np.concatenate([data[:a], np.ones(d + 1), data[indptr[bad + 1]:]])
        indptr = indptr.copy()
        indptr[bad + 1:] += d + 1 - (X.indptr[bad + 1] - X.indptr[bad])
    Xbad = sp.csr_array((data, indices, indptr), shape=(n, d))
    Y = rng.normal(size=(n, 1))
    spec = optim.make("sgd")
    train = EpochCtl(batch_size=10, loss=optim.Loss.SQUARED_ERROR, epsilon=1.0, clip_norm=None, loss_limit=np.inf)
    p_ok, _, o_ok = _epochs(X, Y, None, spec, train, [order[:150]], np.zeros(d + 1), 0.01, False, 1)
    p, _, out = _epochs(Xbad, Y, None, spec, train, [order], np.zeros(d + 1), 0.01, False, threads)
    assert o_ok[0][:2] == (0, 15)
    assert out[0][0] == _kernels.Status.BAD_ARGUMENT and out[0][1] == 15
    np.testing.assert_array_equal(p, p_ok)  # rows before the malformed minibatch's are unaffected by it


@pytest.mark.parametrize("rule", ["sgd", "momentum"])
@pytest.mark.parametrize("lr", [1e150, 1e3])
def test_a_failing_step_stops_both_alike(lr, rule):
    # A non-finite (lr 1e150) or divergent loss mid-epoch: the same status, step and weights on two threads
    # (momentum: its deferred updates' stamps set back where the failing step was not taken).
    rng = np.random.default_rng(6)
    X = _hashed(rng, 3_000, 300, 8)
    Y = 1e3 * rng.normal(size=(3_000, 1))
    spec = optim.make(rule)
    train = EpochCtl(batch_size=16, loss=optim.Loss.SQUARED_ERROR, epsilon=1.0, clip_norm=None, loss_limit=1e12)
    orders = [rng.permutation(3_000).astype(np.int64)]
    p1, _, o1 = _epochs(X, Y, None, spec, train, orders, np.zeros(301), lr, False, 1)
    p2, _, o2 = _epochs(X, Y, None, spec, train, orders, np.zeros(301), lr, False, 2)
    assert o1[0][0] != 0 and o2 == o1
    np.testing.assert_array_equal(p2, p1)


def _helper_threads():
    return [t for t in threading.enumerate() if t.name == "fastopt-epoch-helper"]


@pytest.mark.parametrize("solver", ["sgd", "adagrad", "adam", "adamw"])
def test_estimator_fits_on_two_threads_equal_one_and_run_concurrently(solver):
    rng = np.random.default_rng(7)
    X = _hashed(rng, 4_000, 2_000, 10)
    y = X @ rng.normal(size=2_000) + 0.1 * rng.normal(size=4_000)
    w = rng.uniform(0.5, 2, size=4_000)

    def fit(threads):
        est = LinearRegressor(solver=solver, learning_rate=0.01, max_epochs=3, tol=None, random_state=1,
                              n_threads=threads)
        return est.fit(X, y, sample_weight=w).coef_

    one = fit(1)
    np.testing.assert_array_equal(fit(2), one)
    _kernels._carried(1_024)  # as after a fit that ended alone on its pace: the next starts alone
    np.testing.assert_array_equal(fit(2), one)
    shared = _helper_threads()
    with ThreadPoolExecutor(max_workers=3) as pool:  # the shared helper busy: one-job helpers, which end
        for coef in pool.map(lambda _: fit(2), range(6)):
            np.testing.assert_array_equal(coef, one)
    assert _helper_threads() == shared


def test_csr_epoch_threads_follows_n_threads_and_the_epoch_length(monkeypatch):
    monkeypatch.setattr(_iterative, "_usable_cpus", lambda: 2)
    assert _iterative.csr_epoch_threads(None, 10_000, 64) == 1
    assert _iterative.csr_epoch_threads(1, 10_000, 64) == 1
    assert _iterative.csr_epoch_threads(2, 10_000, 64) == 2
    assert _iterative.csr_epoch_threads(4, 15 * 64, 64) == 1  # fewer than TEAM_MIN_STEPS minibatches
    monkeypatch.setattr(_iterative, "_usable_cpus", lambda: 1)
    assert _iterative.csr_epoch_threads(2, 10_000, 64) == 1


# In a fresh process (the helper thread, once started, stays for later epochs): a CSR epoch on two threads starts
# the helper thread, with deferred updates (momentum, SGD under a strong L2 or each weight's own decay), averaging,
# or neither; on one thread it does not. One process a setting: the epoch on one thread first, which must leave
# no helper (so the process is still without one), then the epoch on two threads.
CHILD = textwrap.dedent("""
    import sys
    import threading
    import numpy as np
    import scipy.sparse as sp
    from fastopt import _kernels, optim
    from fastopt._iterative import EpochCtl
    rule, wd, average, own = sys.argv[1], float(sys.argv[2]), int(sys.argv[3]), sys.argv[4] == "1"
    X = sp.random(2000, 300, density=0.05, format="csr", random_state=0)
    X.indices, X.indptr = X.indices.astype(np.int32), X.indptr.astype(np.int32)
    Y, order = np.ones((2000, 1)), np.arange(2000, dtype=np.int64)
    spec = optim.make(rule, weight_decay=wd)
    train = EpochCtl(batch_size=16, loss=optim.Loss.SQUARED_ERROR, epsilon=1.0, clip_norm=None,
                     loss_limit=np.inf, average=average)
    for threads in map(int, sys.argv[5:]):
        params = np.zeros(301)
        avg = np.zeros(301) if average else None
        decay = np.linspace(0.0, 2.0, 300) if own else None
        _kernels.epoch_csr(int(spec.rule), spec.hyper, train, X, Y, None, order, params, spec.init_state(301), 0,
                           0.01, False, None, avg, None, 0, threads, decay)
        print(sum(t.name == "fastopt-epoch-helper" for t in threading.enumerate()))
""")


@pytest.mark.parametrize(("rule", "wd", "average", "own"), [
    ("momentum", 0.0, 0, False), ("sgd", 0.0, 5, False), ("sgd", 0.0, 0, False), ("sgd", 60.0, 0, False),
    ("sgd", 0.0, 0, True), ("rmsprop", 0.0, 0, False),
])
def test_every_setting_uses_the_second_thread(tmp_path, rule, wd, average, own):
    out = subprocess.run([sys.executable, "-c", CHILD, rule, str(wd), str(average), str(int(own)), "1", "2"],
                         capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split("\n")[:2] == ["0", "1"], out.stdout  # helpers after one thread's epoch, then two's


@pytest.mark.parametrize("rule", ["sgd", "adagrad", "adam"])
def test_a_warm_start_with_negative_weights_under_positive_gives_the_bits_of_one_thread(rule):
    # The first step then runs on every coordinate (it projects the negative weights), the rest as usual.
    rng = np.random.default_rng(8)
    X = _hashed(rng, 2_000, 400, 6)
    Y = rng.normal(size=(2_000, 1))
    spec = optim.make(rule)
    train = EpochCtl(batch_size=16, loss=optim.Loss.SQUARED_ERROR, epsilon=1.0, clip_norm=None, loss_limit=np.inf,
                     positive=True)
    start = rng.normal(size=401)
    orders = [rng.permutation(2_000).astype(np.int64)]
    p1, s1, o1 = _epochs(X, Y, None, spec, train, orders, start, 0.01, True, 1)
    p2, s2, o2 = _epochs(X, Y, None, spec, train, orders, start, 0.01, True, 2)
    assert o2 == o1 and p1[:400].min() == 0
    np.testing.assert_array_equal(p2, p1)
    np.testing.assert_array_equal(s2, s1)


@pytest.mark.parametrize(("rule", "lazy"), [("sgd", False), ("adagrad", False), ("adam", True)])
def test_a_kept_workspace_full_of_garbage_gives_the_bits_of_a_new_one(rule, lazy):
    # The piped epoch keeps its workspace for the next call of the same sizes (fastopt._kernels.WORKSPACE_KEEP_BYTES):
    # every entry must be written before it is read, whatever the last call left there.
    threads = 2
    rng = np.random.default_rng(9)
    X = _hashed(rng, 20_000, 3_000, 10)
    Y = rng.normal(size=(20_000, 1))
    spec = optim.make(rule)
    train = EpochCtl(batch_size=32, loss=optim.Loss.HUBER, epsilon=1.0, clip_norm=None, loss_limit=np.inf)
    orders = [rng.permutation(20_000).astype(np.int64) for _ in range(2)]
    _kernels._WORKSPACES.clear()
    fresh = _epochs(X, Y, None, spec, train, orders, np.zeros(3_001), 0.01, lazy, threads)
    assert _kernels._WORKSPACES  # kept for the next call
    for arrays in _kernels._WORKSPACES.values():
        for a in arrays:
            a.fill(np.nan if a.dtype.kind == "f" else -12345)
    dirty = _epochs(X, Y, None, spec, train, orders, np.zeros(3_001), 0.01, lazy, threads)
    np.testing.assert_array_equal(dirty[0], fresh[0])
    np.testing.assert_array_equal(dirty[1], fresh[1])
    assert dirty[2] == fresh[2]


def test_large_workspaces_are_not_kept(monkeypatch):
    rng = np.random.default_rng(10)
    X = _hashed(rng, 2_000, 500, 5)
    spec = optim.make("sgd")
    train = EpochCtl(batch_size=16, loss=optim.Loss.SQUARED_ERROR, epsilon=1.0, clip_norm=None, loss_limit=np.inf)
    monkeypatch.setattr(_kernels, "WORKSPACE_KEEP_BYTES", 1024)
    _kernels._WORKSPACES.clear()
    _epochs(X, rng.normal(size=(2_000, 1)), None, spec, train, [rng.permutation(2_000).astype(np.int64)],
            np.zeros(501), 0.01, False, 2)
    assert not _kernels._WORKSPACES


@pytest.mark.parametrize("rule", ["sgd", "momentum", "nesterov"])
@pytest.mark.parametrize("period", [0, 7])
def test_each_weights_own_decay_on_two_threads_gives_the_bits_of_one(rule, period):
    # Each weight's own decay (a ridge under a per-column map): deferred, its catch-ups read and set stamps that the
    # calling thread keeps while the helper finds T; slices of `period` steps too.
    rng, X, Y, spec, train = _hashed_epoch(11, 6_000, 800, 6, rule, 20, optim.Loss.SQUARED_ERROR)
    decay = rng.uniform(0.0, 3.0, size=800)
    order = rng.permutation(6_000).astype(np.int64)
    runs = []
    for threads in (1, 2):
        params, state = np.zeros(801), spec.init_state(801)
        t, cuts = 0, [*range(0, 6_000, 7 * 20 * 9), 6_000] if period else [0, 6_000]
        for a, b in itertools.pairwise(cuts):
            status, t, _, _ = _kernels.epoch_csr(int(spec.rule), spec.hyper, train, X, Y, None, order[a:b], params,
                                                 state, t, 0.02, False, None, None, None, period, threads, decay)
            assert status == 0
        runs.append((params, state, t))
    assert runs[0][2] == runs[1][2] == 300
    np.testing.assert_array_equal(runs[1][0], runs[0][0])
    np.testing.assert_array_equal(runs[1][1], runs[0][1])


@pytest.mark.parametrize(("solver", "learning_rate"), [("sgd", "auto"), ("momentum", "auto"), ("sgd", 0.01)])
def test_an_epochs_ridge_term_calls_no_blas_dot(monkeypatch, solver, learning_rate):
    # Above 10,000 entries OpenBLAS's dot wakes its worker threads, which then spin on the core that the next
    # two-thread epoch's helper needs: the objective's ridge term after each epoch (each column's own decay under
    # the map, or one alpha under a numeric rate) is summed with NumPy's own loops.
    rng = np.random.default_rng(12)
    X = sp.random(3_000, 20_000, density=0.002, format="csr", random_state=rng)
    X.data = rng.normal(size=X.nnz) * 10.0 ** rng.uniform(-1, 1, size=X.nnz)
    y = X @ rng.normal(size=20_000) + rng.normal(size=3_000)
    dot = np.dot

    def small_dot(a, b, *args, **kwargs):
        assert np.size(a) <= 10_000 and np.size(b) <= 10_000, "a BLAS dot over more than 10,000 entries"
        return dot(a, b, *args, **kwargs)

    monkeypatch.setattr(np, "dot", small_dot)
    est = LinearRegressor(solver=solver, alpha=1e-3, learning_rate=learning_rate, max_epochs=3, tol=None,
                          random_state=0, n_threads=2).fit(X, y)
    assert est.n_iter_ == 3 and np.all(np.isfinite(est.coef_))


def _ragged(rng, n, d, dtype):
    """Rows of 0-24 values (a few empty), so that the fixed blocks hold different numbers of values."""
    lengths = rng.integers(0, 25, size=n)
    lengths[rng.random(n) < 0.05] = 0
    indptr = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)
    indices = np.concatenate([rng.choice(d, size=m, replace=False) for m in lengths]).astype(np.int32)
    return sp.csr_array((rng.normal(size=indptr[-1]).astype(dtype), indices, indptr), shape=(n, d))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize(("wd", "weighted", "intercept"), [(0.0, False, True), (0.02, True, True),
                                                           (0.02, False, False)])
def test_fixed_blocks_staged_by_either_thread_give_the_bits_of_one(busy_core, dtype, wd, weighted, intercept):
    # Scattered SGD steps (an L2 term by the global scale factor): blocks of 512 rows (batch 32), the last one
    # short, each staged by whichever thread claims it first.
    rng = np.random.default_rng(13)
    n, d = 30_100, 3_000
    X = _ragged(rng, n, d, dtype)
    Y = rng.normal(size=(n, 1)).astype(dtype)
    sw = rng.uniform(0, 2, size=n).astype(dtype) if weighted else None
    spec = optim.make("sgd", weight_decay=wd)
    train = EpochCtl(batch_size=32, loss=optim.Loss.HUBER, epsilon=1.0, clip_norm=None, loss_limit=np.inf)
    params = (0.1 * rng.normal(size=d + (1 if intercept else 0))).astype(dtype)
    orders = [rng.permutation(n).astype(np.int64) for _ in range(3)]
    p1, _, o1 = _epochs(X, Y, sw, spec, train, orders, params, 0.01, False, 1)  # SGD has no state
    p2, _, o2 = _epochs(X, Y, sw, spec, train, orders, params, 0.01, False, 2)
    assert o2 == o1 and [o[:2] for o in o1] == [(0, 941), (0, 1882), (0, 2823)]
    np.testing.assert_array_equal(p2, p1)


@pytest.mark.parametrize("where", [0.1, 0.5, 0.97])
def test_a_malformed_row_in_a_fixed_block_stops_the_epoch_before_its_minibatch(busy_core, where):
    rng = np.random.default_rng(14)
    n, d = 30_000, 2_000
    X = _hashed(rng, n, d, 8)
    order = rng.permutation(n).astype(np.int64)
    at = int(where * n)
    indices = X.indices.copy()
    indices[X.indptr[order[at]] + 1] = d  # a column index out of range
    Xbad = sp.csr_array((X.data, indices, X.indptr), shape=(n, d))
    Y = rng.normal(size=(n, 1))
    spec = optim.make("sgd")
    train = EpochCtl(batch_size=32, loss=optim.Loss.SQUARED_ERROR, epsilon=1.0, clip_norm=None, loss_limit=np.inf)
    p_ok, _, o_ok = _epochs(X, Y, None, spec, train, [order[:at // 32 * 32]], np.zeros(d + 1), 0.01, False, 1)
    for _ in range(3):
        p, _, out = _epochs(Xbad, Y, None, spec, train, [order], np.zeros(d + 1), 0.01, False, 2)
        assert out[0][0] == _kernels.Status.BAD_ARGUMENT and out[0][1] == at // 32 == o_ok[0][1]
        np.testing.assert_array_equal(p, p_ok)


@pytest.mark.parametrize("rule", ["sgd", "momentum", "adam"])
@pytest.mark.parametrize("orders", ["the longest row", "drawn with replacement"])
@pytest.mark.parametrize(("n", "d"), [(3_000, 2_000), (50, 30)])
def test_an_order_that_repeats_rows_gives_the_bits_of_one_thread(rule, orders, n, d):
    # An order may visit a row many times (the kernel takes any rows in range): a block of repeats of the longest
    # row may hold more values than X stores (50 rows), and must still be staged whole (fixed blocks) or in part.
    rng = np.random.default_rng(15)
    X = _ragged(rng, n, d, np.float64)
    Y = rng.normal(size=(n, 1))
    spec = optim.make(rule)
    train = EpochCtl(batch_size=32, loss=optim.Loss.SQUARED_ERROR, epsilon=1.0, clip_norm=None, loss_limit=np.inf)
    longest = int(np.argmax(np.diff(X.indptr)))
    order = (np.full(10_000, longest) if orders == "the longest row" else rng.integers(0, n, 10_000)).astype(np.int64)
    p1, s1, o1 = _epochs(X, Y, None, spec, train, [order], np.zeros(d + 1), 0.001, rule == "adam", 1)
    p2, s2, o2 = _epochs(X, Y, None, spec, train, [order], np.zeros(d + 1), 0.001, rule == "adam", 2)
    assert o2 == o1 and o1[0][:2] == (0, 313)
    np.testing.assert_array_equal(p2, p1)
    np.testing.assert_array_equal(s2, s1)


def _slowed_epochs(X, Y, spec, train, orders, lazy, slow_ns, avg=None):
    """The epochs of ``orders`` on two threads, at rate 0.01 and period 7, the producer spinning ``slow_ns`` after
    each block: (params, state, results, and each call's (backoff it was handed, _went_solo(), _paced(), backoff
    it handed on))."""
    params, state, out, seen = np.zeros(X.shape[1] + 1), spec.init_state(X.shape[1] + 1, np.float64), [], []
    for order in orders:
        carried = _kernels._carried()
        out.append(_kernels.epoch_csr(int(spec.rule), spec.hyper, train, X, Y, None, order, params, state,
                                      out[-1][1] if out else 0, 0.01, lazy, None, avg, None, 7, 2,
                                      _slow_producer_ns=slow_ns))
        seen.append((carried, _kernels._went_solo(), _kernels._paced(), _kernels._carried()))
    return params, state, out, seen


@pytest.mark.parametrize(("rule", "lazy", "wd", "average"), [
    ("sgd", False, 0.01, 3), ("adagrad", False, 0.0, 0), ("adam", True, 0.0, 0), ("momentum", False, 0.01, 0)])
def test_a_producer_that_keeps_up_slowly_is_left_and_taken_back_with_the_bits_of_one_thread(rule, lazy, wd, average):
    # The producer spins 600 us after each block it publishes (under the 1 ms that counts as a stall), so
    # the consumer waits for most of every piped window while one thread takes far less a block on this problem
    # (40 blocks an epoch; settings whose steps take at most about 200 us a block of 16 minibatches): it goes on
    # alone on its pace (fo_csr_pace), times a window alone, takes the producer back, finds it as slow and leaves
    # it again; every switch at a block's start, with the bits of one thread (as every other). Averaged SGD's
    # deferred updates, AdaGrad's marks, SparseAdam's shared steps, momentum's pairs under L2.
    rng, X, Y, spec, train = _hashed_epoch(6, 20_000, 5_000, 12, rule, 32, optim.Loss.HUBER)
    spec = optim.make(rule, weight_decay=wd)
    train = train._replace(average=average)
    orders = [rng.permutation(20_000).astype(np.int64) for _ in range(2)]
    avgs = [np.zeros(5_001) if average else None for _ in range(2)]
    began = time.perf_counter_ns()
    p1, s1, o1 = _epochs(X, Y, None, spec, train, orders, np.zeros(5_001), 0.01, lazy, 1, avgs[0], period=7)
    # (a build many times slower, as under ThreadSanitizer, takes longer a block alone than 600 us: the producer
    # is then slowed to three times one thread's block, over the 1 ms that counts as a stall)
    slow_ns = max(600_000, 3 * (time.perf_counter_ns() - began) // 80)
    params, state, out, seen = _slowed_epochs(X, Y, spec, train, orders, lazy, slow_ns, avgs[1])
    assert out == o1
    # (with no stall the consumer leaves on its pace, or, in the second epoch, may start alone on the first's
    # backoff (fo_csr_pipe.carry); a loaded machine may stall the producer first, and delay its parking, and so
    # the taking back, past the epoch's end: fo_csr_pace_block's own tests below)
    assert all(went > 0 and (stalls > 0 or p > 0 or carried > 0) for carried, (went, _), (p, stalls), _ in seen), seen
    np.testing.assert_array_equal(params, p1)
    np.testing.assert_array_equal(state, s1)
    if average:
        np.testing.assert_array_equal(avgs[1], avgs[0])


@pytest.mark.parametrize("slow_ns", [600_000, 0])
@pytest.mark.parametrize(("rule", "lazy"), [("adam", True), ("momentum", False), ("adagrad", False)])
def test_a_backoff_carried_from_the_last_call_starts_alone_and_doubles_if_the_producer_is_still_slow(rule, lazy,
                                                                                                      slow_ns):
    # A call that ended alone on its pace hands its backoff to the next (fo_csr_pipe.carry). Given 1,024, the
    # consumer starts alone, and after the first try's 64 steps and a window timed alone (9 blocks of 16
    # minibatches) takes the producer back. A producer as slow as before (600 us a block) is left for 2,048
    # steps, past the epoch's end (625 steps): the call ends alone and hands on 2,048, and the next call starts
    # alone too. A producer that keeps up is kept: the call ends piped and hands on nothing (on this small problem
    # one thread may still be the faster, and the pace leave it). A loaded machine may also delay the producer's
    # stop past the epoch's end (never taken back: the backoff handed on as it came), stall it, or slow the window
    # timed alone (the slowed producer kept). So each call's outcome is one of these three, with the bits of one
    # thread throughout.
    rng, X, Y, spec, train = _hashed_epoch(6, 20_000, 5_000, 12, rule, 32, optim.Loss.HUBER)
    orders = [rng.permutation(20_000).astype(np.int64) for _ in range(2)]
    p1, s1, o1 = _epochs(X, Y, None, spec, train, orders, np.zeros(5_001), 0.01, lazy, 1, period=7)
    _kernels._carried(1_024)
    params, state, out, seen = _slowed_epochs(X, Y, spec, train, orders, lazy, slow_ns)
    assert out == o1
    np.testing.assert_array_equal(params, p1)
    np.testing.assert_array_equal(state, s1)
    for call, (carried, (went, rejoined), (paced, stalls), carry) in enumerate(seen):
        if not carried:
            continue
        assert went == 625 * call + 1, seen  # alone from the call's first step (not counted as a departure)
        if not stalls:  # never taken back; left again on the pace; kept
            outcomes = {(0, 0, carried), (1, 1, 2 * carried), (1, 0, 0)}
            assert (rejoined, paced, carry) in outcomes, seen


def _windows(kinds, per_block, waited, t=1_000):
    """Blocks of 100 stored values, each of kind piped (1) or alone (0) in ``kinds``, ``per_block`` ns apart, the
    consumer waiting ``waited`` ns for each: fo_csr_pace_block's inputs, the clock from t."""
    out = []
    for piped in kinds:
        out.append((piped, 100, waited if piped else 0, t))
        t += per_block
    return out


def test_the_pace_leaves_a_producer_it_waits_for_until_a_window_alone_is_timed():
    # Nothing timed alone yet: a piped window (its first block, the switch's, not counted; then 8 blocks) in which
    # the consumer waited for more than a third of the time sends it alone, at the start of the 10th block.
    got = _kernels._pace_blocks(_windows([1] * 10, 1_000, 400))
    assert [g[0] for g in got] == [False] * 8 + [True, False]
    # waiting a third or less: it stays
    assert not any(g[0] for g in _kernels._pace_blocks(_windows([1] * 30, 1_000, 333)))
    # alone, the first block is not counted; the 8 after it time a stored value (800 ns / 800 values)
    got = _kernels._pace_blocks(_windows([0] * 10, 1_000, 0))
    assert [g[2] for g in got] == [False] * 8 + [True, True]
    assert got[-2][1] == 1_000 * 8 / 800 and not any(g[0] for g in got)


@pytest.mark.parametrize(("team_ns", "waited", "leaves"), [
    (1_600, 600, True),   # 1.33 times as long a value as alone (1,200 ns a block), waiting 37.5%: leave
    (1_000, 600, False),  # faster than alone, though waiting 60%: stay
    (1_450, 600, False),  # 1.21 times as long as alone (within the margin), waiting 41%: stay
    (1_600, 500, False),  # 1.33 times as long as alone but waiting 31% (its own steps are slow): stay
])
def test_the_pace_compares_a_piped_window_with_the_last_one_alone(team_ns, waited, leaves):
    blocks = _windows([0] * 9, 1_200, 0)
    blocks += _windows([1] * 9, team_ns, waited, t=blocks[-1][3] + 1_200)
    got = _kernels._pace_blocks(blocks)
    assert got[8][1] == 1_200 * 8 / 800 and got[8][2]
    assert [g[0] for g in got] == [False] * 17 + [leaves]
    # each window is judged afresh: a later piped window that keeps up stays
    more = _kernels._pace_blocks(blocks + _windows([1] * 8, 1_000, 0, t=blocks[-1][3] + team_ns))
    assert not any(g[0] for g in more[18:])
