"""Benchmark fixtures: one shared data set per shape, and a peak-memory probe recorded in extra_info.

Run everything and print the report with ``python bench/report.py --run``. Under ``pytest --benchmark-disable``
every benchmark runs its code once, untimed, as a plain test: the helpers here then skip the bookkeeping that
needs timings (see :func:`timing`).
"""
import pathlib
import sys
import threading
import tracemalloc

import numpy as np
import pytest
import scipy.sparse as sp
from threadpoolctl import threadpool_info

# The bench modules import this file's helpers as ``from conftest import ...``. That needs bench/ on sys.path, which
# only `python -m pytest` run from bench/ gives: pytest imports this file under --import-mode=importlib (the
# project's setting) without adding its folder, so `pytest bench` from the checkout's root failed to collect them.
_BENCH = str(pathlib.Path(__file__).resolve().parent)
if _BENCH not in sys.path:
    sys.path.insert(0, _BENCH)


def hashed_rows(rng: np.random.Generator, rows: int, d: int, nnz: int):
    """``rows`` hashed-text-like rows as canonical CSR with int32 indices: ``nnz`` columns a row drawn uniformly
    from ``d`` (the few collisions summed, as validation hands CSR to the solvers), values N(0, 1 / nnz)."""
    indices = rng.integers(0, d, size=rows * nnz).astype(np.int32)
    values = rng.standard_normal(rows * nnz) / np.sqrt(nnz)
    X = sp.csr_array((values, indices, np.arange(0, rows * nnz + 1, nnz, dtype=np.int32)), shape=(rows, d))
    X.sum_duplicates()
    X.indices, X.indptr = X.indices.astype(np.int32), X.indptr.astype(np.int32)
    return X


def tfidf_rows(rng: np.random.Generator, rows: int, d: int, terms: int):
    """``TfidfTransformer``'s rows (CSR array, float64) of ``rows`` documents of ``terms`` terms each drawn from a
    Zipf law (exponent 1.1) over ``d``, repeats counted."""
    from sklearn.feature_extraction.text import TfidfTransformer

    p = 1.0 / np.arange(1, d + 1) ** 1.1
    drawn = rng.choice(d, size=(rows, terms), p=p / p.sum())
    counts = sp.csr_array((np.ones(rows * terms), (np.repeat(np.arange(rows), terms), drawn.ravel())),
                          shape=(rows, d))
    counts.sum_duplicates()
    return sp.csr_array(TfidfTransformer().fit_transform(counts))


def zipf_text_rows(rng: np.random.Generator, rows: int, d: int, vocab: int = 20_000, seed: int = 0):
    """``rows`` documents as ``HashingVectorizer(n_features=d)`` makes them, without the strings: 5 to 59 tokens
    a document drawn from a Zipf law (exponent 1.05) over ``vocab`` words, each word hashed to a column and a
    sign (one fixed hash for a ``seed``), counts summed, rows scaled to unit norm; canonical CSR, int32 indices.
    The commonest words' columns store most rows, as real text's do (unlike :func:`hashed_rows`)."""
    words = np.random.default_rng(seed)
    column, sign = words.integers(0, d, size=vocab), words.choice([-1.0, 1.0], size=vocab)
    p = 1.0 / np.arange(1, vocab + 1) ** 1.05
    lengths = rng.integers(5, 60, size=rows)
    tokens = rng.choice(vocab, size=int(lengths.sum()), p=p / p.sum())
    row = np.repeat(np.arange(rows), lengths)
    X = sp.csr_array((sign[tokens], (row, column[tokens])), shape=(rows, d))  # duplicates summed
    X.eliminate_zeros()
    norms = np.sqrt(np.asarray(X.multiply(X).sum(axis=1)).ravel())
    X = sp.csr_array(sp.diags_array(1.0 / np.where(norms > 0, norms, 1.0)) @ X)
    X.sort_indices()
    X.indices, X.indptr = X.indices.astype(np.int32), X.indptr.astype(np.int32)
    return X


@pytest.fixture(scope="session")
def closed_form_data():
    """n = 1,000,000 rows, d = 100 features, float64 (800 MB of X), with a noisy linear target."""
    rng = np.random.default_rng(0)
    X = rng.standard_normal((1_000_000, 100))
    y = X @ rng.standard_normal(100) + rng.standard_normal(1_000_000)
    return X, y


def timing(benchmark) -> bool:
    """Whether pytest-benchmark times ``benchmark``'s rounds.

    Under ``--benchmark-disable`` ``benchmark.pedantic`` calls its function once (no warm-up, no rounds) and
    ``benchmark.stats`` stays None, so figures derived from timings must be skipped; the code itself still runs.
    """
    return not benchmark.disabled


def median_seconds(benchmark) -> float | None:
    """The median of ``benchmark``'s timed rounds in seconds, or None when nothing was timed (under
    ``--benchmark-disable``, or before ``benchmark.pedantic`` ran)."""
    return None if benchmark.stats is None else benchmark.stats.stats.median


def peak_memory(fn, *args):
    """Peak bytes allocated by ``fn(*args)`` beyond what existed before (tracemalloc sees NumPy's buffers and
    fastopt's kernel workspaces; not BLAS/LAPACK-internal scratch, which is small next to X)."""
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        fn(*args)
        return tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()


def peak_rss(fn, *args):
    """Peak growth of the process's resident set during ``fn(*args)``, sampled every millisecond (catches
    allocations tracemalloc cannot see, such as LAPACK workspaces allocated in C)."""
    import psutil

    proc = psutil.Process()
    base = peak = proc.memory_info().rss
    done = threading.Event()

    def sample():
        nonlocal peak
        while not done.wait(0.001):
            peak = max(peak, proc.memory_info().rss)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        fn(*args)
    finally:
        done.set()
        sampler.join()
    return max(peak, proc.memory_info().rss) - base


def x_nbytes(X) -> int:
    """Bytes that hold ``X``: an array's buffer, or a CSR matrix's three arrays."""
    if hasattr(X, "indptr"):
        return X.data.nbytes + X.indices.nbytes + X.indptr.nbytes
    return X.nbytes


def sgd_regressor_epoch(benchmark, X, y):
    """Time one ``SGDRegressor(max_iter=1)`` epoch (shuffled, seeded, ``eta0=1e-3``) on ``X, y``, 3 rounds."""
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import SGDRegressor

    est = SGDRegressor(max_iter=1, tol=None, shuffle=True, random_state=0, eta0=1e-3)

    def fit():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)  # one epoch never converges
            est.fit(X, y)

    benchmark.pedantic(fit, rounds=3, iterations=1)


def estimator_over_kernel(benchmark, kernel, kernel_args, fit, rounds=11):
    """Time ``kernel(*kernel_args())`` (a bare epoch, its arguments made fresh outside the timing) and ``fit()``
    (the estimator's epoch) in alternation, one pair per round and the first of each pair alternating, so that a
    change of machine load affects both alike; record in ``extra_info`` the medians over the pairs (the first
    dropped) of fit / kernel, wall time and the calling thread's CPU time: the work the estimator adds around the
    kernel, as a fraction of the kernel's epoch."""
    import time

    wall, cpu = [], []

    def timed(f, *args):
        t, c = time.perf_counter(), time.thread_time()
        f(*args)
        return time.perf_counter() - t, time.thread_time() - c

    def pair():
        args = kernel_args()
        if len(wall) % 2:
            (we, ce), (wk, ck) = timed(fit), timed(kernel, *args)
        else:
            (wk, ck), (we, ce) = timed(kernel, *args), timed(fit)
        wall.append(we / wk)
        cpu.append(ce / ck)

    benchmark.pedantic(pair, rounds=rounds, iterations=1, warmup_rounds=1)
    if not timing(benchmark):  # one untimed pair, no warm-up to drop: no ratio to record
        return
    benchmark.extra_info["estimator_over_kernel"] = round(float(np.median(wall[1:])), 3)
    benchmark.extra_info["cpu_estimator_over_kernel"] = round(float(np.median(cpu[1:])), 3)


@pytest.fixture
def record(benchmark):
    """Record peak memory beyond X and y (X dense or CSR; two untimed runs, which also warm up), BLAS threads,
    then time ``fn(X, y)`` over ``rounds`` rounds (under ``--benchmark-disable``: only run it once)."""

    def run(fn, X, y, rounds=3):
        if timing(benchmark):  # (the probes are measurements: a run that only checks the code skips them)
            traced, rss = peak_memory(fn, X, y), peak_rss(fn, X, y)
            benchmark.extra_info["traced_peak_vs_X"] = round(traced / x_nbytes(X), 4)
            benchmark.extra_info["rss_peak_vs_X"] = round(rss / x_nbytes(X), 4)
            benchmark.extra_info["blas_threads"] = max(lib["num_threads"] for lib in threadpool_info())
        benchmark.pedantic(fn, args=(X, y), rounds=rounds, iterations=1)

    return run
