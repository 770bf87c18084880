"""One training epoch on sparse input: a hashed-text-like problem, n = 200,000 rows, d = 2^18 features, 30 stored
values a row (CSR, float64, seeded), minibatches of 64 in shuffled order.

Run on its own with ``cd bench && python -m pytest test_sparse_epoch.py -q -p no:randomly
--benchmark-json=OUT && python report.py OUT``. Group ``sparse`` holds:

* ``test_limit_csr_X_at_w``: one CSR ``X @ w`` (SciPy), the floor that reading X once costs;
* ``test_fastopt_sparse_epoch[<mode>]``: the fused CSR kernel, one epoch of SGD, Adam (exact: O(d) a step) or
  Adam in SparseAdam mode over a pre-drawn order, on one thread (``-1t``) or two (``-2t``: the piped epoch, a
  second thread staging the rows and finding each minibatch's columns, and sharing SparseAdam's and exact Adam's
  steps; the same bits);
* ``test_fastopt_sparse_estimator_epoch[<mode>]``: ``LinearRegressor(max_epochs=1, n_threads=1 or 2)`` on the
  CSR matrix, adding validation, the starting loss and the row order;
* ``test_sparse_estimator_over_kernel_epoch[<mode>]`` (SGD and SparseAdam mode): the two rows above timed in
  alternation, one pair per round; ``extra_info`` holds the medians over the pairs of estimator / kernel (wall
  time and the calling thread's CPU time), as in ``test_epoch.py``;
* ``test_sklearn_sgdregressor_sparse_epoch``: ``SGDRegressor(max_iter=1, tol=None)``, one shuffled epoch of
  per-sample SGD on the same CSR matrix;
* ``test_floor_shuffled_rows_X_at_w``: ``X[order] @ w`` (SciPy), reading X's rows in an epoch's shuffled order:
  not a target, it shows how much of an epoch's distance from the limit is the shuffled order's memory latency,
  which depends on the machine far more than the storage-order limit does.

Targets (ratios from one run): the SGD and SparseAdam-mode epochs <= 4x the limit and >= 5x faster than
SGDRegressor; the estimator's epoch <= 1.10x the kernel's.
"""

import numpy as np
import pytest
from conftest import estimator_over_kernel, hashed_rows, sgd_regressor_epoch

from fastopt import LinearRegressor, _kernels, optim
from fastopt._iterative import EpochCtl

N, D, NNZ, BATCH = 200_000, 2**18, 30, 64
MODES = {"sgd-1t": ("sgd", False, 1), "sgd-2t": ("sgd", False, 2), "adam-1t": ("adam", False, 1),
         "adam-2t": ("adam", False, 2), "adam-lazy-1t": ("adam", True, 1), "adam-lazy-2t": ("adam", True, 2)}
EXACT = ("adam-1t", "adam-2t")  # O(d) a step: seconds an epoch, fewer rounds
RATES = {"sgd": 0.05, "adam": 1e-3}


@pytest.fixture(scope="module")
def hashed():
    rng = np.random.default_rng(0)
    X = hashed_rows(rng, N, D, NNZ)
    coef = np.where(rng.random(D) < 0.1, rng.standard_normal(D), 0.0)
    y = X @ coef + 0.1 * rng.standard_normal(N)
    order = rng.permutation(N).astype(np.int64)
    return X, y, order


@pytest.fixture(autouse=True)
def _group(benchmark):
    benchmark.group = "sparse"


def _sparse_runner(X, y, order, mode):
    """The bare CSR epoch of ``mode`` over ``order``, and a function making its fresh parameters and state."""
    rule, lazy, threads = MODES[mode]
    spec = optim.make(rule)
    Y = y.reshape(-1, 1)
    train = EpochCtl(batch_size=BATCH, loss=optim.Loss.SQUARED_ERROR, epsilon=1.35, clip_norm=None, loss_limit=np.inf)

    def setup():
        params = np.zeros(D + 1)
        return (params, spec.init_state(D + 1, np.float64)), {}

    def run(params, state):
        status = _kernels.epoch_csr(int(spec.rule), spec.hyper, train, X, Y, None, order, params, state, 0,
                                    RATES[rule], lazy, n_threads=threads)
        assert status[0] == 0

    return run, setup


def _sparse_estimator(mode):
    rule, lazy, threads = MODES[mode]
    return LinearRegressor(solver=rule, learning_rate=RATES[rule], max_epochs=1, tol=None, random_state=0,
                           sparse_mode="lazy" if lazy else "exact", n_threads=threads)


@pytest.mark.parametrize("mode", list(MODES))
def test_fastopt_sparse_epoch(benchmark, hashed, mode):
    run, setup = _sparse_runner(*hashed, mode)
    benchmark.pedantic(run, setup=setup, rounds=5 if mode not in EXACT else 2, iterations=1, warmup_rounds=1)


@pytest.mark.parametrize("mode", list(MODES))
def test_fastopt_sparse_estimator_epoch(benchmark, hashed, mode):
    X, y, _ = hashed
    benchmark.pedantic(_sparse_estimator(mode).fit, args=(X, y), rounds=5 if mode not in EXACT else 2, iterations=1)


@pytest.mark.parametrize("mode", ["sgd-1t", "sgd-2t", "adam-lazy-1t", "adam-lazy-2t"])
def test_sparse_estimator_over_kernel_epoch(benchmark, hashed, mode):
    X, y, order = hashed
    run, setup = _sparse_runner(X, y, order, mode)
    est = _sparse_estimator(mode)
    estimator_over_kernel(benchmark, run, lambda: setup()[0], lambda: est.fit(X, y), rounds=9)


def test_sklearn_sgdregressor_sparse_epoch(benchmark, hashed):
    X, y, _ = hashed
    sgd_regressor_epoch(benchmark, X, y)


def test_limit_csr_X_at_w(benchmark, hashed):
    X, _, _ = hashed
    w = np.ones(D)
    benchmark.pedantic(lambda: X @ w, rounds=20, iterations=1, warmup_rounds=2)


def test_floor_shuffled_rows_X_at_w(benchmark, hashed):
    X, _, order = hashed
    w = np.ones(D)
    benchmark.pedantic(lambda: X[order] @ w, rounds=10, iterations=1, warmup_rounds=1)
