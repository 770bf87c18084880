"""Interrupts: Ctrl-C within 0.5 s whatever the epoch length; streamed fits never wait for their reader."""
import linecache
import queue
import signal
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest
import scipy.sparse as sp

from fastopt import LinearRegressor, _closed_form, _iterative, _kernels, _reference, _serial_blas, optim
from fastopt._iterative import LOSSES, EpochCtl


@pytest.mark.parametrize("solver, n_threads, weighted", [("sgd", None, False), ("adam", 2, True),
                                                         ("rmsprop", None, True)])
def test_sliced_epochs_are_bit_identical_to_one_call(rng, monkeypatch, solver, n_threads, weighted):
    X = rng.normal(size=(3000, 40))
    y = X @ rng.normal(size=40) + rng.normal(size=3000)
    w = rng.uniform(0.5, 2.0, size=3000) if weighted else None
    params = {"solver": solver, "batch_size": 32, "max_epochs": 3, "tol": None, "random_state": 0,
              "n_threads": n_threads}
    whole = LinearRegressor(**params).fit(X, y, sample_weight=w)
    calls = []
    real = _kernels.epoch
    monkeypatch.setattr(_kernels, "epoch", lambda *a, **k: calls.append(a[6].shape[0]) or real(*a, **k))
    monkeypatch.setattr(_iterative, "SLICE_WORK", 40 * 32 * 5)  # 5 minibatches per slice, the last one short
    sliced = LinearRegressor(**params).fit(X, y, sample_weight=w)
    assert len(calls) == 3 * 19 and set(calls) == {160, 3000 - 18 * 160}
    np.testing.assert_array_equal(sliced.coef_, whole.coef_)
    assert sliced.loss_curve_ == whole.loss_curve_ and sliced.t_ == whole.t_


def test_twin_chains_slices_as_the_kernel(rng):
    spec = optim.make("adam")
    X, Y = rng.normal(size=(50, 3)), rng.normal(size=(50, 1))
    train = EpochCtl(batch_size=4, loss=LOSSES["huber"], epsilon=1.0, clip_norm=None, loss_limit=np.inf)
    out = []
    for impl in (_kernels, _reference):
        params, state, work, acc = np.zeros(4), spec.init_state(4), np.empty(26), np.zeros(2)
        order, t = rng.permutation(50).astype(np.int64) if not out else out[0][0], 0
        for part in (order[:20], order[20:]):
            status, t, loss, _ = impl.epoch(int(spec.rule), spec.hyper, train, X, Y, None, part, params, state,
                                            work, t, 0.01, 1, loss_acc=acc)
            assert status == 0
        out.append((order, params, loss, acc))
    np.testing.assert_allclose(out[0][1], out[1][1], rtol=1e-12)
    np.testing.assert_allclose(out[0][2], out[1][2], rtol=1e-12)
    assert out[0][3][1] == out[1][3][1] == 50


CHILD = textwrap.dedent("""
    import sys, time
    import numpy as np
    from fastopt import optim, _iterative
    from fastopt._iterative import LOSSES, EpochCtl
    spec = optim.make("sgd")
    rng = np.random.default_rng(0)
    X, Y = rng.normal(size=(1000, 8)), rng.normal(size=(1000, 1))
    order = np.tile(np.arange(1000, dtype=np.int64), 1000)  # 1M steps at batch_size=1, 30 ms; 100 epochs: 3 s
    params, state, work = np.zeros(9), spec.init_state(9), np.empty(6 * 9 + 2)
    train = EpochCtl(batch_size=1, loss=LOSSES["squared_error"], epsilon=1.0, clip_norm=None, loss_limit=np.inf)
    print("ready", flush=True)
    try:
        for _ in range(100):
            _iterative.run_epoch(int(spec.rule), spec.hyper, train, X, Y, None, order, params, state, work, 0, 1e-5,
                                 1)
        print("finished", flush=True)
    except KeyboardInterrupt:
        print("interrupted", time.time(), flush=True)
""")


def _csr_child(rule, batch, threads, repeats, d=5000):
    """The same on sparse X: ``repeats`` CSR epochs of 4M rows through run_epoch_csr, on one thread or two (the
    piped epoch, for a rule without deferred updates); seconds either way (the piped SGD epoch takes 0.45 s here,
    too close to the signal's 0.3 s for one). With ``d`` of 2^20 columns exact Adam steps every one of them at
    every step (2 ms a step): its slices were sized by the stored values alone, thousands of steps each, and
    Ctrl-C waited seconds."""
    return textwrap.dedent(f"""
        import sys, time
        import numpy as np
        import scipy.sparse as sp
        from fastopt import optim, _iterative
        from fastopt._iterative import LOSSES, EpochCtl
        spec = optim.make("{rule}", weight_decay={1e-4 if rule == "momentum" else 0.0})
        rng = np.random.default_rng(0)  # (sp.random draws among all 1000 d places: a minute at d = 2^20)
        X = sp.csr_matrix((rng.random(10_000), (np.repeat(np.arange(1000), 10), rng.integers(0, {d}, 10_000))),
                          shape=(1000, {d}))
        X.indices, X.indptr = X.indices.astype(np.int32), X.indptr.astype(np.int32)
        Y = np.ones((1000, 1))
        order = np.tile(np.arange(1000, dtype=np.int64), 4000)
        params, state = np.zeros({d + 1}), spec.init_state({d + 1})
        train = EpochCtl(batch_size={batch}, loss=LOSSES["squared_error"], epsilon=1.0, clip_norm=None,
                         loss_limit=np.inf)
        print("ready", flush=True)
        try:
            for _ in range({repeats}):
                _iterative.run_epoch_csr(int(spec.rule), spec.hyper, train, X, Y, None, order, params, state, 0,
                                         1e-5, False, threads={threads})
            print("finished", flush=True)
        except KeyboardInterrupt:
            print("interrupted", time.time(), flush=True)
    """)


@pytest.mark.parametrize("script", [CHILD, _csr_child("momentum", 1, 1, 1), _csr_child("sgd", 2, 2, 10),
                                    _csr_child("adam", 1, 1, 1, d=2**20)],
                         ids=["dense", "csr", "csr-two-threads", "csr-every-coordinate"])
def test_ctrl_c_interrupts_a_long_epoch_within_half_a_second(tmp_path, script):
    line, sent = _interrupted_child(tmp_path, [script], 0.3)
    assert line[0] == "interrupted"
    assert float(line[1]) - sent < 0.5


def _interrupted_child(tmp_path, args, delay):
    """The line a child (``python -c *args``) prints after SIGINT, sent ``delay`` seconds after it printed
    "ready", and the time it was sent. Run outside the checkout: `python -c` puts the working directory first on
    sys.path, and the checkout's fastopt/ is the unbuilt source, which would shadow the installed package."""
    child = subprocess.Popen([sys.executable, "-c", *args], stdout=subprocess.PIPE, text=True, cwd=tmp_path)
    try:
        assert child.stdout.readline().strip() == "ready"
        time.sleep(delay)
        sent = time.time()
        child.send_signal(signal.SIGINT)
        line = child.stdout.readline().split()
        child.wait(timeout=60)
    finally:
        child.kill()
    return line, sent


CLOSED_FORM_CHILD = textwrap.dedent("""
    import sys, threading, time
    import numpy as np
    import scipy.sparse as sp
    from fastopt import LinearRegressor, _closed_form, _sparse
    case = sys.argv[1]
    rng = np.random.default_rng(0)
    if case == "dense-qr":  # one segment, 2.8 s here
        X = rng.random((40_000, 1200), dtype=np.float32)
    elif case == "dense-kernel":  # fewer rows than columns: the rows' product, about 1 s here, signalled inside it
        X = rng.random((4_000, 5_000))
        product = _closed_form._rows_product

        def announced(*args):
            print("ready", flush=True)
            return product(*args)

        _closed_form._rows_product = announced
    elif case == "dense-qr-segments":  # four segments on the pool's two threads, about 3 s each
        X = rng.random((40_000, 2000), dtype=np.float32)
        _closed_form.SEGMENT_ROWS = 10_000
    else:  # sparse-normal: one segment of the rows' products (3 s); sparse-qr: blocks of 5,002 rows densified
        n, d, per = (20_000, 2000, 1000) if case == "sparse-normal" else (20_000, 2500, 15)
        X = sp.csr_matrix((rng.standard_normal(n * per), rng.integers(0, d, n * per),
                           np.arange(0, n * per + 1, per)), shape=(n, d))
        X.sum_duplicates()
        _sparse.SEGMENT_WORK = 2**40
    y = rng.random(X.shape[0])
    model = LinearRegressor(solver="normal" if case in ("sparse-normal", "dense-kernel") else "qr",
                            alpha=1e-3 if case == "dense-kernel" else 0.0)
    if case != "dense-kernel":
        print("ready", flush=True)
    try:
        model.fit(X, y)
        print("finished", flush=True)
    except KeyboardInterrupt:
        print("interrupted", time.time(), len(threading.enumerate()), flush=True)
""")


@pytest.mark.parametrize("case", ["dense-qr", "dense-qr-segments", "sparse-normal", "sparse-qr", "dense-kernel"])
def test_ctrl_c_interrupts_a_long_closed_form_fit_within_half_a_second(tmp_path, case):
    # Each case waited for a compiled call of seconds (a minute for QR at 60,000 x 1,500): a segment or block on
    # the main thread, or the pool's running segments. Nothing but the main thread is left once it is raised.
    line, sent = _interrupted_child(tmp_path, [CLOSED_FORM_CHILD, case], 0.5)
    assert line[0] == "interrupted"
    assert float(line[1]) - sent < 0.5
    assert line[2] == "1"


def _interrupted_start_and_halted_pass(monkeypatch):
    """A Ctrl-C inside the worker's start() (patched in), and ``(run, seen)``: a pass that ends at its stop flag,
    as the kernels read it between blocks, and records whether it was set."""
    real_start = threading.Thread.start

    def start(self):
        real_start(self)
        raise KeyboardInterrupt

    monkeypatch.setattr(threading.Thread, "start", start)
    seen = []

    def run(halt):
        t0 = time.monotonic()
        while not halt[0] and time.monotonic() - t0 < 10:
            time.sleep(0.001)
        seen.append(bool(halt[0]))

    return run, seen


def test_a_ctrl_c_inside_the_workers_start_stops_its_pass(monkeypatch):
    # start() waits for the new thread to run: a KeyboardInterrupt there, before the wait for the pass began, left
    # the pass running to its end beside the caller, its stop flag never set (found by interrupts at random
    # instants of hundreds of fits)
    run, seen = _interrupted_start_and_halted_pass(monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        _closed_form._stoppable(run, work=_closed_form.STOPPABLE_WORK)
    assert seen == [True]
    assert not [t for t in threading.enumerate() if t.name == "fastopt-closed-form" and t.is_alive()]


def _second_ctrl_c_at(function: str, line: str):
    """A trace function raising KeyboardInterrupt once, when ``function`` (of fastopt) reaches source ``line``: a
    second Ctrl-C at that instant."""
    fired = []

    def local(frame, event, arg):
        if event == "line" and not fired and linecache.getline(frame.f_code.co_filename,
                                                               frame.f_lineno).strip() == line:
            fired.append(True)
            raise KeyboardInterrupt("second Ctrl-C")
        return local

    def trace(frame, event, arg):
        return local if frame.f_code.co_name == function and "fastopt" in frame.f_code.co_filename else None

    return trace, fired


def test_a_second_ctrl_c_while_the_pass_is_stopped_still_stops_it(monkeypatch):
    # It escaped before the stop flag was set, and the pass ran on beside the caller
    run, seen = _interrupted_start_and_halted_pass(monkeypatch)
    trace, fired = _second_ctrl_c_at("_stop_worker", "halt[0] = 1")
    sys.settrace(trace)
    try:
        with pytest.raises(KeyboardInterrupt):
            _closed_form._stoppable(run, work=_closed_form.STOPPABLE_WORK)
    finally:
        sys.settrace(None)
    assert fired and seen == [True]


def test_a_second_ctrl_c_during_the_restore_leaves_the_estimator_as_it_was(rng):
    # One between clearing the attributes and putting them back left an estimator without its parameters
    X, y = rng.normal(size=(200, 3)), rng.normal(size=200)
    model = LinearRegressor(alpha=0.5).fit(X, y)
    before = dict(model.__dict__)
    bad = X.copy()
    bad[7, 1] = np.nan
    trace, fired = _second_ctrl_c_at("restore", "self.__dict__ = restored")
    sys.settrace(trace)
    try:
        with pytest.raises(ValueError, match="NaN"):
            model.fit(bad, y)
    finally:
        sys.settrace(None)
    assert fired and model.__dict__.keys() == before.keys()
    assert all(model.__dict__[key] is value for key, value in before.items() if key != "_solver_state")  # (a copy)
    np.testing.assert_array_equal(model.predict(X), LinearRegressor(alpha=0.5).fit(X, y).predict(X))


@pytest.mark.parametrize("impl", [_kernels, _reference])
@pytest.mark.parametrize("name", ["gram_stats", "tsqr_stats", "csr_gram_stats"])
def test_the_closed_form_kernels_stop_at_their_flag_and_are_unchanged_without_it(rng, impl, name):
    X, Y, w = rng.normal(size=(300, 6)), rng.normal(size=(300, 2)), rng.random(300)
    if name == "csr_gram_stats":
        C = sp.csr_matrix(np.where(rng.random(X.shape) < 0.5, X, 0.0))

        def call(stop):
            mean, out = np.empty(8), np.empty((8, 8))
            return impl.csr_gram_stats(C.data, C.indices, C.indptr, 6, Y, w, mean, out, stop=stop), mean, out
    else:
        def call(stop):
            mean, out = np.empty(8), np.empty((8, 8))
            return getattr(impl, name)(X, Y, w, mean, out, 64, stop=stop), mean, out

    plain = call(None)
    for got, want in zip(call(np.zeros(1, dtype=np.int32)), plain):
        np.testing.assert_array_equal(got, want)
    with pytest.raises(KeyboardInterrupt, match=f"{name}: stopped by its stop flag"):
        call(np.ones(1, dtype=np.int32))


def test_the_sparse_gram_reads_its_flag_before_zeroing_its_output(rng):
    # The p x p output was zeroed in one memset before the flag was first read: at 20,000 columns 3.2 GB a segment
    # thread, 2-17 s of page faults during which Ctrl-C went unanswered. It is now zeroed (its lower triangle) a
    # block of rows at a time, the flag read between: a flag already set leaves the output as it was.
    C = sp.random(50, 300, density=0.1, format="csr", random_state=0)
    Y = rng.normal(size=(50, 1))
    mean, out = np.full(301, np.nan), np.full((301, 301), np.nan)
    with pytest.raises(KeyboardInterrupt, match="csr_gram_stats: stopped by its stop flag"):
        _kernels.csr_gram_stats(C.data, C.indices, C.indptr, 300, Y, None, mean, out, stop=np.ones(1, dtype=np.int32))
    assert np.isnan(out).all()
    # rows of no weight: a zero Gram, both triangles (the upper one is written by the symmetrisation otherwise)
    assert _kernels.csr_gram_stats(C.data, C.indices, C.indptr, 300, Y, np.zeros(50), mean, out) == 0.0
    assert not out.any() and not mean.any()


def test_a_closed_form_kernel_stops_mid_call_when_another_thread_sets_its_flag(rng):
    # tsqr_stats of 40,000 x 1,200 takes seconds; the flag set 0.2 s in ends it at its next block (256 rows), on
    # the private one-thread LAPACK as the fits call it (the process's OpenBLAS threads, beside other busy
    # processes, made a block take over a second)
    X, Y = rng.random((40_000, 1200), dtype=np.float32), rng.random((40_000, 1), dtype=np.float32)
    stop, outcome, serial = np.zeros(1, dtype=np.int32), [], _serial_blas.tables() is not None

    def run():
        try:
            _kernels.tsqr_stats(X, Y, None, np.empty(1201), np.empty((1201, 1201)), 256, serial=serial, stop=stop)
            outcome.append("finished")
        except KeyboardInterrupt:
            outcome.append("stopped")

    worker = threading.Thread(target=run)
    worker.start()
    time.sleep(0.2)
    stop[0] = 1
    set_at = time.perf_counter()
    worker.join()
    assert outcome == ["stopped"]
    assert time.perf_counter() - set_at < 0.5


def _blocking_source(X, y, release, bad_first=True):
    def chunks():
        first = X.copy()
        if bad_first:
            first[0, 0] = np.nan
        yield first, y
        release.wait()  # the reader blocks here, reading the second chunk
        yield X, y

    return chunks


def _prefetch_threads():
    return [t for t in threading.enumerate() if t.name == "fastopt-prefetch"]


@pytest.mark.parametrize("solver", ["normal", "sgd"])
def test_fit_stream_reports_an_error_without_waiting_for_the_reader(rng, solver):
    X = rng.normal(size=(100, 3))
    y = X.sum(axis=1)
    release = threading.Event()
    start = time.monotonic()
    try:
        with pytest.raises(ValueError, match="NaN"):
            LinearRegressor(solver=solver, max_epochs=1, learning_rate=0.01).fit_stream(
                _blocking_source(X, y, release))
        assert time.monotonic() - start < 0.5
    finally:
        release.set()
    deadline = time.monotonic() + 5
    while _prefetch_threads() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not _prefetch_threads()  # the reader ended once its read returned, reading nothing more


def test_interrupt_while_the_reader_starts_leaves_no_reader(monkeypatch):
    """Ctrl-C that lands in Thread.start() (which waits until the new thread runs) left the reader started and
    waiting for a request for ever: the thread is started inside the block whose exit tells it to stop."""
    from fastopt import _chunks

    start = threading.Thread.start

    def interrupted(self):
        start(self)
        if self.name == "fastopt-prefetch":
            raise KeyboardInterrupt

    monkeypatch.setattr(threading.Thread, "start", interrupted)
    with pytest.raises(KeyboardInterrupt):
        next(_chunks.prefetched(iter([1, 2])))
    monkeypatch.undo()
    deadline = time.monotonic() + 5
    while _prefetch_threads() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not _prefetch_threads()


@pytest.mark.skipif(not hasattr(signal, "pthread_kill"), reason="needs pthread_kill")
def test_fit_stream_waiting_for_a_blocked_source_is_interruptible(rng):
    X = rng.normal(size=(100, 3))
    y = X.sum(axis=1)
    release = threading.Event()
    est = LinearRegressor(solver="sgd", max_epochs=1, learning_rate=0.01)
    timer = threading.Timer(0.3, signal.pthread_kill, (threading.main_thread().ident, signal.SIGINT))
    start = time.monotonic()
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            est.fit_stream(_blocking_source(X, y, release, bad_first=False))
        assert time.monotonic() - start < 0.3 + 0.5
    finally:
        release.set()
        timer.join()
    assert not hasattr(est, "coef_")  # transactional: the first chunk's pass is undone
    deadline = time.monotonic() + 5
    while _prefetch_threads() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not _prefetch_threads()


def test_waiting_for_the_reader_returns_to_python_between_bounded_waits(monkeypatch):
    """The consumer waits for a chunk in bounded waits: a SIGINT that lands just before a blocking wait begins
    would otherwise be handled only when the (maybe blocked) reader answers."""
    from fastopt import _chunks, _interrupts

    timeouts = []

    class Recording(queue.SimpleQueue):
        def get(self, block=True, timeout=None):
            timeouts.append(timeout)
            return super().get(block, timeout)

    monkeypatch.setattr(_chunks.queue, "SimpleQueue", Recording)

    def slow():
        time.sleep(0.4)
        yield 1

    assert list(_chunks.prefetched(slow())) == [1]
    consumer_waits = [t for t in timeouts if t is not None]
    assert len(consumer_waits) >= 0.4 / _interrupts.WAIT_POLL - 2 and max(consumer_waits) <= _interrupts.WAIT_POLL


def test_no_signal_handler_is_installed():
    # Interrupts are handled by slicing, not by replacing the process's SIGINT handler.
    LinearRegressor(solver="sgd", max_epochs=1).fit(np.ones((10, 2)), np.ones(10))
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
