"""Two-thread epochs beside a busy core: another process spins on one of the machine's cores while these run.

Group ``busy core``: ``LinearRegressor(max_epochs=1, n_threads=1 or 2).fit`` on the dense epoch benchmark's data
(200,000 x 100 float64, Adam) and on the sparse one's hashed rows (200,000 x 2^18, 30 values a row; SparseAdam
mode and momentum), each on one thread and two. On a two-core machine the helper thread then shares a core with
the spinning process: the scheduler takes it away for milliseconds at a time. A two-thread epoch whose calling
thread waited for it at every step took 1.5-8x one thread's time; it now computes the helper's share itself and
goes on alone (``fo_team``, ``fo_csr_pipe`` in ``csrc/fastopt.h``), so the ratio of each ``-2t`` row to its
``-1t`` row (the report's ratio columns) should stay near 1. Run alone::

    cd bench && python -m pytest test_busy_core.py -q -p no:randomly --benchmark-json=OUT && python report.py OUT
"""
import subprocess
import sys
import warnings

import numpy as np
import pytest
from conftest import hashed_rows

from fastopt import LinearRegressor
from fastopt.exceptions import ConvergenceWarning

N, D = 200_000, 100
NS, DS, NNZ = 200_000, 2**18, 30
CASES = {
    "dense-adam": ("dense", dict(solver="adam")),
    "sparse-adam-lazy": ("sparse", dict(solver="adam", learning_rate=1e-3, sparse_mode="lazy")),
    "sparse-momentum": ("sparse", dict(solver="momentum", learning_rate=0.01)),
}


@pytest.fixture(scope="module")
def problems():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(N, D))
    y = X @ rng.normal(size=D) + rng.normal(size=N)
    Xs = hashed_rows(rng, NS, DS, NNZ)
    ys = Xs @ np.where(rng.random(DS) < 0.1, rng.standard_normal(DS), 0.0) + 0.1 * rng.standard_normal(NS)
    return {"dense": (X, y), "sparse": (Xs, ys)}


@pytest.fixture(scope="module")
def busy_core():
    hog = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    yield
    hog.kill()
    hog.wait()


@pytest.fixture(autouse=True)
def _group(benchmark):
    benchmark.group = "busy core"


@pytest.mark.parametrize("threads", [1, 2], ids=["1t", "2t"])
@pytest.mark.parametrize("case", list(CASES))
def test_fastopt_estimator_epoch(benchmark, problems, busy_core, case, threads):
    kind, options = CASES[case]
    X, y = problems[kind]
    est = LinearRegressor(max_epochs=1, tol=None, random_state=0, n_threads=threads, **options)

    def fit():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)  # (one epoch, on purpose)
            est.fit(X, y)

    benchmark.extra_info["case"] = f"{case}-{threads}t"
    benchmark.pedantic(fit, rounds=7, iterations=1, warmup_rounds=1)
