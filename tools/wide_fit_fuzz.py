"""Default iterative fits on wide sparse designs against the exact ridge optimum: which end more than 1% above it,
and which of those stay silent (no ConvergenceWarning).

Each case draws, alternately, hashed rows (2,000 or 8,000 rows of 5 or 20 values over 2^11-2^15 columns, values
of scale 0.01, 1 or 30) or one-hot rows (three categorical columns of 10-3,000 levels, half of them Zipf-distributed,
beside two numeric ones, one far from centred), a target with noise and an offset, and a ridge ``alpha`` of 1e-4,
1e-2 or 1, then fits every first-order rule with its defaults (``random_state=0``) on the CSR matrix and compares
the ridge objective with LSQR's (``tol=1e-14``)::

    python tools/wide_fit_fuzz.py FIRST LAST

prints one line per fit (cases ``FIRST`` to ``LAST - 1``), then ``total``, ``flagged`` (more than 1% above the
optimum, or raised ``DivergenceError``) and ``silent>1%`` (flagged without a warning). Deterministic.
"""
from __future__ import annotations

import sys
import warnings

import numpy as np
import scipy.sparse as sp
from sklearn.exceptions import ConvergenceWarning

from fastopt import LinearRegressor
from fastopt.exceptions import DivergenceError

RULES = ["sgd", "momentum", "adagrad", "rmsprop", "adam"]


def case(i: int):
    rng = np.random.default_rng(1000 + i)
    kind = ["hashed", "onehot"][i % 2]
    n = int(rng.choice([2000, 8000]))
    if kind == "hashed":
        d, per = int(rng.choice([2**11, 2**13, 2**15])), int(rng.choice([5, 20]))
        idx = rng.integers(0, d, size=n * per).astype(np.int32)
        values = rng.normal(size=n * per) * rng.choice([1.0, 0.01, 30.0])
        X = sp.csr_array((values, idx, np.arange(0, n * per + 1, per)), shape=(n, d))
        X.sum_duplicates()
    else:
        levels = [int(v) for v in rng.choice([10, 100, 1000, 3000], size=3)]
        cats = [np.minimum(rng.zipf(1.3, n) - 1, k - 1) if rng.random() < 0.5 else rng.integers(0, k, n)
                for k in levels]
        X = sp.hstack([sp.csr_array((np.ones(n), (np.arange(n), c)), shape=(n, k)) for c, k in zip(cats, levels)]
                      + [sp.csr_array(rng.normal(size=(n, 2)) * [1, 50] + [0, 100])], format="csr")
    y = np.asarray(X @ rng.normal(size=X.shape[1])) + rng.choice([0.1, 1.0]) * rng.normal(size=n) + rng.normal() * 3
    alpha = float(rng.choice([1e-4, 1e-2, 1.0]))
    return kind, X, y, alpha


def main(first: int, last: int) -> None:
    total = flagged = silent = 0
    for i in range(first, last):
        kind, X, y, alpha = case(i)

        def objective(est, X=X, y=y, alpha=alpha):
            r = est.predict(X) - y
            return 0.5 * np.mean(r * r) + 0.5 * alpha * float(np.sum(est.coef_**2))

        best = objective(LinearRegressor(solver="lsqr", alpha=alpha, tol=1e-14, max_iter=100_000).fit(X, y))
        for rule in RULES:
            total += 1
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                try:
                    est = LinearRegressor(solver=rule, alpha=alpha, random_state=0).fit(X, y)
                    excess, epochs = objective(est) / best - 1.0, est.n_iter_
                except DivergenceError:
                    excess, epochs = np.inf, -1
            warned = any(issubclass(w.category, ConvergenceWarning) for w in caught)
            if excess > 1e-2:
                flagged += 1
                silent += not warned
            print(f"case {i} {kind} {X.shape} alpha={alpha:g} {rule:8s} excess {excess:.2e} warned={int(warned)} "
                  f"epochs {epochs}", flush=True)
    print("total", total, "flagged", flagged, "silent>1%", silent)


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]))
