"""One training epoch: n = 200,000 rows, d = 100 features, minibatches of 64 in shuffled order.

Run with ``pytest bench/test_epoch.py --benchmark-only`` (add ``--benchmark-json=...`` to keep the figures).
Groups ``epoch-float64`` and ``epoch-float32`` each hold:

* ``test_fastopt_epoch[<rule>-<threads>]``: the fused kernel, one epoch of SGD, momentum or Adam over a pre-drawn
  order, on one thread or two (bit-identical results; the two-thread epoch exchanges half-gradients every step);
* ``test_fastopt_estimator_epoch[<threads>]``: ``LinearRegressor(max_epochs=1, n_threads=...)``, adding
  validation, the starting loss and the permutation;
* ``test_estimator_over_kernel_epoch[<threads>]``: the two rows above (Adam) timed in alternation, one pair per
  round, so that a change of machine load affects both alike; ``extra_info`` holds the median over the pairs of
  estimator / kernel (wall time, and the calling thread's CPU time): the work the estimator adds around the
  kernel, as a fraction of the kernel's epoch;
* ``test_numpy_reference_epoch``: the NumPy twin in ``fastopt._reference`` (same batches, same arithmetic);
* ``test_sklearn_sgdregressor_epoch`` (float64 only; it converts float32): ``SGDRegressor(max_iter=1,
  tol=None)``, one shuffled epoch of per-sample SGD;
* ``test_torch_optim_epoch``: the usual ``torch.optim.Adam`` minibatch loop, when PyTorch is installed;
* ``test_limit_one_pass_X_at_w``: one BLAS pass ``X @ w``, the floor that reading X once costs;
* ``test_one_thread_pass_X_at_w``: the same on one core (the epoch is sequential; BLAS may use every core).

Targets (ratios from one run): Adam <= 2.5x the limit, >= 8x faster than the reference, >= 4x faster than
SGDRegressor; float32 <= 0.6x float64's time; the estimator's epoch <= 1.10x the kernel's.
"""
import numpy as np
import pytest
from conftest import estimator_over_kernel, sgd_regressor_epoch

from fastopt import LinearRegressor, _kernels, _reference, optim
from fastopt._iterative import EpochCtl

N, D, BATCH = 200_000, 100, 64
DTYPES = {"float64": np.float64, "float32": np.float32}


@pytest.fixture(scope="module", params=list(DTYPES))
def data(request):
    rng = np.random.default_rng(0)
    dtype = DTYPES[request.param]
    X = rng.normal(size=(N, D)).astype(dtype)
    y = (X @ rng.normal(size=D) + rng.normal(size=N)).astype(dtype)
    order = rng.permutation(N).astype(np.int64)
    return request.param, X, y, order


def _group(benchmark, dtype_name):
    benchmark.group = f"epoch-{dtype_name}"


def _epoch_runner(impl, spec, X, Y, order, n_threads=1):
    train = EpochCtl(batch_size=BATCH, loss=optim.Loss.SQUARED_ERROR, epsilon=1.35, clip_norm=None,
                  loss_limit=np.inf)
    n_params = X.shape[1] + 1

    def setup():
        params = np.zeros(n_params, X.dtype)
        return (params, spec.init_state(n_params, X.dtype), np.empty(6 * n_params + 2, X.dtype)), {}

    def run(params, state, work):
        status = impl.epoch(int(spec.rule), spec.hyper, train, X, Y, None, order, params, state, work, 0, 1e-3,
                            n_threads)
        assert status[0] == 0

    return run, setup


@pytest.mark.parametrize("threads", [1, 2], ids=["1thread", "2threads"])
@pytest.mark.parametrize("rule", ["sgd", "momentum", "adam"])
def test_fastopt_epoch(benchmark, data, rule, threads):
    name, X, y, order = data
    _group(benchmark, name)
    benchmark.extra_info["simd"] = _kernels.simd()
    run, setup = _epoch_runner(_kernels, optim.make(rule), X, y.reshape(-1, 1), order, threads)
    benchmark.pedantic(run, setup=setup, rounds=10, iterations=1, warmup_rounds=1)


@pytest.mark.parametrize("threads", [1, 2], ids=["1thread", "2threads"])
def test_fastopt_estimator_epoch(benchmark, data, threads):
    name, X, y, _ = data
    _group(benchmark, name)
    est = LinearRegressor(solver="adam", learning_rate=1e-3, max_epochs=1, tol=None, random_state=0,
                          n_threads=threads)
    benchmark.pedantic(est.fit, args=(X, y), rounds=5, iterations=1, warmup_rounds=1)


@pytest.mark.parametrize("threads", [1, 2], ids=["1thread", "2threads"])
def test_estimator_over_kernel_epoch(benchmark, data, threads):
    name, X, y, order = data
    _group(benchmark, name)
    run, setup = _epoch_runner(_kernels, optim.make("adam"), X, y.reshape(-1, 1), order, threads)
    est = LinearRegressor(solver="adam", learning_rate=1e-3, max_epochs=1, tol=None, random_state=0,
                          n_threads=threads)
    estimator_over_kernel(benchmark, run, lambda: setup()[0], lambda: est.fit(X, y))


def test_numpy_reference_epoch(benchmark, data):
    name, X, y, order = data
    _group(benchmark, name)
    run, setup = _epoch_runner(_reference, optim.make("adam"), X, y.reshape(-1, 1), order)
    benchmark.pedantic(run, setup=setup, rounds=2, iterations=1)


def test_sklearn_sgdregressor_epoch(benchmark, data):
    name, X, y, _ = data
    if name != "float64":
        pytest.skip("SGDRegressor converts float32 input to float64: its row is the float64 one")
    _group(benchmark, name)
    sgd_regressor_epoch(benchmark, X, y)


def test_torch_optim_epoch(benchmark, data):
    torch = pytest.importorskip("torch", reason="PyTorch is not installed: no torch.optim row")
    name, X, y, order = data
    _group(benchmark, name)
    Xt, yt, idx = torch.from_numpy(X), torch.from_numpy(y), torch.from_numpy(order)
    batches = [idx[s : s + BATCH] for s in range(0, N, BATCH)]

    def setup():
        w = torch.zeros(D, dtype=Xt.dtype, requires_grad=True)
        b = torch.zeros(1, dtype=Xt.dtype, requires_grad=True)
        return (w, b, torch.optim.Adam([w, b], lr=1e-3)), {}

    def run(w, b, opt):
        for rows in batches:
            loss = 0.5 * ((Xt[rows] @ w + b - yt[rows]) ** 2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()

    # torch's intra-op thread pool only adds synchronisation to 64-row operations (measured: an epoch is over
    # 10x slower with two threads on a busy machine), so give torch its fastest setting here.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        benchmark.pedantic(run, setup=setup, rounds=2, iterations=1)
    finally:
        torch.set_num_threads(threads)


def test_limit_one_pass_X_at_w(benchmark, data):
    name, X, _, _ = data
    _group(benchmark, name)
    w = np.ones(X.shape[1], X.dtype)
    benchmark.pedantic(lambda: X @ w, rounds=20, iterations=1, warmup_rounds=2)


def test_one_thread_pass_X_at_w(benchmark, data):
    """``X @ w`` on one core: the limit row may use every BLAS thread, the minibatch epoch is sequential."""
    from threadpoolctl import threadpool_limits

    name, X, _, _ = data
    _group(benchmark, name)
    w = np.ones(X.shape[1], X.dtype)
    with threadpool_limits(1):
        benchmark.pedantic(lambda: X @ w, rounds=20, iterations=1, warmup_rounds=2)
