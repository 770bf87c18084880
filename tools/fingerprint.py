"""Fingerprints of fitted coefficients: one SHA-256 per solver and data kind, to show that a refactoring changes
no fit by a single bit.

Fits ``LinearRegressor`` with every solver (closed form, every iterative rule, the Krylov solvers, Newton for
the robust losses) with a fixed ``random_state`` on scaled-down versions of the benchmark shapes of ``bench/``
(dense 200,000 x 100 as in ``bench/test_epoch.py``, fewer rows; sparse CSR with 30 nonzeros a row as in
``bench/test_sparse_epoch.py``, narrower), and through ``partial_fit``, ``fit_stream`` and Dask arrays, then
prints the SHA-256 of each ``coef_`` and ``intercept_``'s bytes. Run it before and after a change and compare
the output (``diff``). About a minute on one core.

Usage: ``python tools/fingerprint.py [--quick]``.
"""
from __future__ import annotations

import hashlib
import sys
import warnings

import numpy as np
import scipy.sparse as sp

from fastopt import LinearRegressor, optim

RULES = list(optim.OPTIMIZERS)


def dense(n: int, d: int, dtype=np.float64, seed: int = 0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    y = X @ rng.standard_normal(d) + rng.standard_normal(n)
    bad = rng.random(n) < 0.05  # outliers, as bench/test_robust.py
    y[bad] += 100.0 * rng.standard_normal(int(bad.sum()))
    return X.astype(dtype), y.astype(dtype)


def sparse(n: int, d: int, nnz: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    indices = np.sort(rng.choice(d, size=(n, nnz)), axis=1).ravel().astype(np.int32)
    values = rng.standard_normal(n * nnz)
    X = sp.csr_array((values, indices, np.arange(0, n * nnz + 1, nnz)), shape=(n, d))
    X.sum_duplicates()
    y = X @ rng.standard_normal(d) + 0.1 * rng.standard_normal(n)
    return X, y


def digest(est) -> str:
    h = hashlib.sha256()
    h.update(np.ascontiguousarray(est.coef_).tobytes())
    h.update(np.ascontiguousarray(est.intercept_).tobytes())
    return h.hexdigest()


def report(label: str, fit) -> None:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            est = fit()
        print(f"{label:48s} {digest(est)}", flush=True)
    except Exception as exc:  # an unsupported combination is part of the fingerprint too
        print(f"{label:48s} {type(exc).__name__}: {str(exc)[:60]}", flush=True)


def main(quick: bool = False) -> None:
    n = 5_000 if quick else 20_000
    X, y = dense(n, 100)
    X32, y32 = dense(n, 100, np.float32)
    w = np.random.default_rng(1).uniform(0.5, 2.0, n)
    S, ys = sparse(n, 2**12, 30)
    it = dict(max_epochs=3, tol=None, random_state=0)

    for solver in ("normal", "qr"):
        report(f"dense {solver}", lambda solver=solver: LinearRegressor(solver).fit(X, y))
        report(f"dense {solver} ridge weighted", lambda solver=solver: LinearRegressor(solver, alpha=0.5).fit(X, y, w))
        report(f"dense32 {solver}", lambda solver=solver: LinearRegressor(solver).fit(X32, y32))
        report(f"sparse {solver} ridge", lambda solver=solver: LinearRegressor(solver, alpha=1e-3).fit(S, ys))
    for solver in ("cg", "lsqr"):
        report(f"dense {solver}", lambda solver=solver: LinearRegressor(solver, tol=1e-8).fit(X, y))
        report(f"dense {solver} ridge weighted", lambda solver=solver: LinearRegressor(solver, alpha=0.5).fit(X, y, w))
        report(f"sparse {solver} ridge", lambda solver=solver: LinearRegressor(solver, alpha=1e-3).fit(S, ys))
    for loss in ("huber", "absolute_error"):
        report(f"dense newton {loss}", lambda loss=loss: LinearRegressor("newton", loss=loss, max_epochs=30).fit(X, y))
    for rule in RULES:
        report(f"dense {rule}", lambda rule=rule: LinearRegressor(rule, **it).fit(X, y))
        report(f"dense {rule} lr=1e-3 huber",
               lambda rule=rule: LinearRegressor(rule, learning_rate=1e-3, loss="huber", **it).fit(X, y, w))
        report(f"dense32 {rule} early_stopping",
               lambda rule=rule: LinearRegressor(rule, early_stopping=True, max_epochs=3, random_state=0).fit(X32, y32))
        report(f"sparse {rule}", lambda rule=rule: LinearRegressor(rule, **it).fit(S, ys))
        report(f"dense {rule} 2 threads", lambda rule=rule: LinearRegressor(rule, n_threads=2, **it).fit(X, y))
    # Incremental paths: partial_fit, fit_stream over a list of chunks, and Dask arrays (no client: local passes).
    chunks = [(X[i:i + n // 4], y[i:i + n // 4]) for i in range(0, n, n // 4)]
    for solver in ("normal", "sgd", "adam"):
        def partial(solver=solver):
            est = LinearRegressor(solver, random_state=0, learning_rate=1e-3)
            for Xc, yc in chunks:
                est.partial_fit(Xc, yc)
            return est

        report(f"partial_fit {solver}", partial)
        report(f"fit_stream {solver}", lambda solver=solver: LinearRegressor(solver, **it).fit_stream(chunks))
    report("fit_stream cg", lambda: LinearRegressor("cg", alpha=0.5).fit_stream(chunks))
    try:
        import dask.array as da
    except ImportError:
        return
    Xd, yd = da.from_array(X, chunks=(n // 4, -1)), da.from_array(y, chunks=n // 4)
    for solver in ("normal", "sgd", "adam", "cg"):
        report(f"dask {solver}", lambda solver=solver: LinearRegressor(solver, **it).fit(Xd, yd))
    report("dask partial_fit sgd", lambda: LinearRegressor("sgd", random_state=0).partial_fit(Xd, yd))


if __name__ == "__main__":
    main(quick="--quick" in sys.argv)
