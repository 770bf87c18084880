"""Fingerprint of the iterative fits: SHA-256 of ``coef_`` and ``intercept_`` over a grid of configurations.

Run before and after a change that must not alter results (a restructure of the epoch kernel, a faster path
around it) and compare the outputs: every line, and the total on the last line, must be identical.

    python tools/epoch_fingerprint.py > before.txt   # on the starting commit
    python tools/epoch_fingerprint.py > after.txt    # on the changed tree
    diff before.txt after.txt

``--simd baseline`` runs the epoch kernels' baseline copy instead of the best one the CPU has (results agree bit
for bit within one instruction set, so compare like with like).

The grid: every iterative rule x every loss x with/without ``alpha`` x with/without sample weights x with/without
intercept x float32/float64 x ``n_threads`` 1 and 2 x dense and CSR ``X``, with a fixed ``random_state``; then a
few options that take other paths through the epoch (clipping, projected and averaged steps, early stopping,
``learning_rate="auto"`` with the plateau schedule, ``partial_fit``, SparseAdam mode), and the dense benchmark
shape of ``bench/test_epoch.py`` (n = 200,000, d = 100, one and two threads) and the sparse one of
``bench/test_sparse_epoch.py``. Only the public estimator is used,
so the script runs unchanged across internal renames. The data are large enough (minibatch halves of at least
8 KB, at least 16 steps an epoch) that ``n_threads=2`` really runs the two-thread epoch.
"""
from __future__ import annotations

import hashlib
import itertools
import sys
import warnings

import numpy as np
import scipy.sparse as sp

from fastopt import LinearRegressor

RULES = ("sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adam", "adamw")
LOSSES = ("squared_error", "absolute_error", "huber")
N, D, K_SEED = 1536, 64, 0


def _digest(est) -> str:
    h = hashlib.sha256()
    for a in (est.coef_, est.intercept_):
        a = np.ascontiguousarray(a)
        h.update(str((a.dtype.str, a.shape)).encode())
        h.update(a.tobytes())
    return h.hexdigest()


def _data(dtype, sparse: bool):
    rng = np.random.default_rng(K_SEED)
    X = rng.normal(size=(N, D))
    y = X @ rng.normal(size=D) + 0.5 + rng.normal(size=N)
    w = rng.uniform(0.2, 2.0, size=N)
    if sparse:
        X[rng.uniform(size=X.shape) < 0.7] = 0.0
        X = sp.csr_array(X.astype(dtype))
    else:
        X = X.astype(dtype)
    return X, y.astype(dtype), w.astype(dtype)


def _fit(X, y, w, **kw) -> str:
    est = LinearRegressor(**kw)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est.fit(X, y, sample_weight=w)
    return _digest(est)


def grid():
    """Yield (label, digest) for every configuration."""
    datasets = {(dt, sp_): _data(dt, sp_) for dt in (np.float64, np.float32) for sp_ in (False, True)}
    for rule, loss, alpha, weighted, intercept, dtype, threads, sparse in itertools.product(
        RULES, LOSSES, (0.0, 1e-3), (False, True), (True, False), (np.float64, np.float32), (1, 2),
        (False, True),
    ):
        X, y, w = datasets[(dtype, sparse)]
        kw = dict(solver=rule, loss=loss, alpha=alpha, fit_intercept=intercept, learning_rate=1e-3,
                  max_epochs=2, tol=None, random_state=7, n_threads=threads)
        label = (f"{rule} {loss} alpha={alpha} weights={weighted} intercept={intercept} "
                 f"{np.dtype(dtype).name} threads={threads} {'csr' if sparse else 'dense'}")
        yield label, _fit(X, y, w if weighted else None, **kw)
    extras = {
        "clip_norm": dict(clip_norm=0.5),
        "positive": dict(positive=True),
        "average": dict(average=10),
        "early_stopping": dict(early_stopping=True, tol=1e-4, n_iter_no_change=2, max_epochs=4),
        "auto_plateau": dict(learning_rate="auto", max_epochs=4),
        "init_random_batch7": dict(init="random", batch_size=7),
        "shuffle_off": dict(shuffle=False),
    }
    for (name, extra), rule, dtype, threads in itertools.product(
        extras.items(), ("sgd", "adam"), (np.float64, np.float32), (1, 2)
    ):
        X, y, w = datasets[(dtype, False)]
        kw = dict(solver=rule, learning_rate=1e-3, max_epochs=2, tol=None, random_state=3, n_threads=threads)
        kw.update(extra)
        yield f"{name} {rule} {np.dtype(dtype).name} threads={threads} dense", _fit(X, y, w, **kw)
    for dtype, sparse in itertools.product((np.float64, np.float32), (False, True)):
        X, y, w = datasets[(dtype, sparse)]
        kw = dict(solver="adam", sparse_mode="lazy", learning_rate=1e-3, max_epochs=2, tol=None, random_state=5)
        yield f"sparse_mode=lazy adam {np.dtype(dtype).name} {'csr' if sparse else 'dense'}", _fit(X, y, w, **kw)
        est = LinearRegressor(solver="momentum", learning_rate=1e-3, random_state=5, n_threads=2)
        for _ in range(3):
            est.partial_fit(X, y, sample_weight=w)
        yield f"partial_fit momentum {np.dtype(dtype).name} {'csr' if sparse else 'dense'}", _digest(est)
    # CSR columns of scales over four decades under a ridge: the map scales each column, and the ridge becomes
    # each weight's own decay (the CSR epoch's per-column catch-ups).
    for rule, dtype, threads in itertools.product(("sgd", "momentum", "nesterov"), (np.float64, np.float32), (1, 2)):
        X, y, w = datasets[(dtype, True)]
        Xc = sp.csr_array(X @ sp.diags(np.logspace(-2, 2, D).astype(dtype)))
        kw = dict(solver=rule, alpha=1e-3, learning_rate="auto", max_epochs=2, tol=None, random_state=9,
                  n_threads=threads)
        yield f"own decay {rule} {np.dtype(dtype).name} threads={threads} csr", _fit(Xc, y, w, **kw)
    # The dense benchmark shape (bench/test_epoch.py).
    rng = np.random.default_rng(0)
    Xb = rng.normal(size=(200_000, 100))
    yb = Xb @ rng.normal(size=100) + rng.normal(size=200_000)
    for dtype, threads in itertools.product((np.float64, np.float32), (1, 2)):
        kw = dict(solver="adam", learning_rate=1e-3, max_epochs=1, tol=None, random_state=0, n_threads=threads)
        yield (f"bench adam {np.dtype(dtype).name} threads={threads}",
               _fit(Xb.astype(dtype), yb.astype(dtype), None, **kw))
    # The sparse benchmark shape (bench/test_sparse_epoch.py: hashed features, 30 nonzeros a row, 2^18 columns).
    n, d, nnz = 200_000, 2**18, 30
    rng = np.random.default_rng(0)
    indices = rng.integers(0, d, size=n * nnz).astype(np.int32)
    values = rng.standard_normal(n * nnz) / np.sqrt(nnz)
    Xs = sp.csr_array((values, indices, np.arange(0, n * nnz + 1, nnz, dtype=np.int32)), shape=(n, d))
    ys = Xs @ np.where(rng.random(d) < 0.1, rng.standard_normal(d), 0.0) + 0.1 * rng.standard_normal(n)
    for rule, mode, rate in (("sgd", "exact", 0.05), ("adam", "lazy", 1e-3)):
        kw = dict(solver=rule, sparse_mode=mode, learning_rate=rate, max_epochs=1, tol=None, random_state=0)
        yield f"bench sparse {rule} {mode}", _fit(Xs, ys, None, **kw)


def main() -> int:
    if "--simd" in sys.argv:
        from fastopt import _kernels

        _kernels.simd(sys.argv[sys.argv.index("--simd") + 1])
    total = hashlib.sha256()
    count = 0
    for label, digest in grid():
        print(f"{digest}  {label}")
        total.update(digest.encode())
        count += 1
    print(f"{total.hexdigest()}  TOTAL of {count} fits")
    return 0


if __name__ == "__main__":
    sys.exit(main())
