"""Default ``partial_fit`` sequences against the exact optimum: repeated passes over chunks, and a stream of new
chunks.

Repeated passes: 40 passes over four 1,000-row chunks (rows ``c::4``) of six widely scaled columns, Gaussian
columns, or one-hot beside numeric columns; squared error or Huber's loss, ``alpha`` 0 or 1e-2, weights, CSR
storage under a ridge, float32. Printed per case and rule: the largest excess of the objective over the optimum
(the closed form, or Newton for Huber's loss), relative to it, over the last ten passes. New chunks: 160 chunks of
1,000 rows never seen twice, the excess over the population optimum (fitted on 200,000 other rows)::

    python tools/partial_fit_survey.py [rules]

Deterministic (``random_state=0``, seeded data).
"""
from __future__ import annotations

import sys
import warnings

import numpy as np
import scipy.sparse as sp

from fastopt import LinearRegressor
from fastopt._convergence import scaled_stream

RULES = ["sgd", "momentum", "adagrad", "rmsprop", "adam"]


def problem(kind: str, seed: int = 1):
    rng = np.random.default_rng(seed)
    n = 4000
    if kind == "scaled":
        X = rng.normal(size=(n, 6)) * 10.0 ** rng.uniform(-3, 3, size=6)
    elif kind == "gauss":
        X = rng.normal(size=(n, 20))
    else:  # one-hot (30 levels) beside three numeric columns
        X = np.zeros((n, 30))
        X[np.arange(n), rng.integers(0, 30, n)] = 1
        X = np.hstack([X, rng.normal(size=(n, 3))])
    y = X @ rng.normal(size=X.shape[1]) + 0.3 * rng.standard_t(3, size=n) + 2
    return X, y, rng


def objective(est, X, y, loss: str, alpha: float, sw) -> float:
    r = est.predict(X) - y
    if loss == "squared_error":
        per_row = 0.5 * r * r
    else:
        a, eps = np.abs(r), est.epsilon
        per_row = np.where(a <= eps, 0.5 * r * r, eps * (a - 0.5 * eps))
    s = np.ones_like(y) if sw is None else sw / sw.mean()
    return float(np.mean(s * per_row)) + 0.5 * alpha * float(est.coef_ @ est.coef_)


def repeated(rules: list[str]) -> None:
    cases = [(kind, loss, alpha, False, "dense") for kind in ("scaled", "gauss", "onehot")
             for loss in ("squared_error", "huber") for alpha in (0.0, 1e-2)]
    cases += [("gauss", "squared_error", 0.0, True, "dense"), ("onehot", "squared_error", 1e-3, False, "csr"),
              ("scaled", "squared_error", 0.0, False, "float32")]
    for kind, loss, alpha, weighted, storage in cases:
        X, y, rng = problem(kind)
        sw = rng.uniform(0.1, 2, size=y.size) if weighted else None
        exact = LinearRegressor(loss=loss, alpha=alpha, solver="newton" if loss != "squared_error" else "normal")
        best = objective(exact.fit(X, y, sample_weight=sw), X, y, loss, alpha, sw)
        Xs = sp.csr_array(X) if storage == "csr" else X.astype(np.float32) if storage == "float32" else X
        row = []
        for rule in rules:
            est = LinearRegressor(solver=rule, loss=loss, alpha=alpha, random_state=0)
            excess = []
            for p in range(40):
                for c in range(4):
                    est.partial_fit(Xs[c::4], y[c::4], sample_weight=None if sw is None else sw[c::4])
                if p >= 30:
                    excess.append(objective(est, X, y, loss, alpha, sw) / best - 1.0)
            row.append(f"{rule} {max(excess):.1e}")
        print(f"{kind:7s} {loss:13s} alpha={alpha:<6g} weights={int(weighted)} {storage:8s} |", "  ".join(row),
              flush=True)


def new_chunks(rules: list[str]) -> None:
    draw = scaled_stream(1)
    X_test, y_test = draw(200_000)
    best = objective(LinearRegressor().fit(X_test, y_test), X_test, y_test, "squared_error", 0.0, None)
    stream = [draw(1000) for _ in range(160)]
    row = []
    for rule in rules:
        est = LinearRegressor(solver=rule, random_state=0)
        for chunk in stream:
            est.partial_fit(*chunk)
        row.append(f"{rule} {objective(est, X_test, y_test, 'squared_error', 0.0, None) / best - 1.0:.1e}")
    print("new chunks (160 x 1,000 rows, widely scaled) |", "  ".join(row), flush=True)


if __name__ == "__main__":
    warnings.simplefilter("ignore")
    chosen = sys.argv[1].split(",") if len(sys.argv) > 1 else RULES
    repeated(chosen)
    new_chunks(chosen)
