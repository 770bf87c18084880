"""Default iterative fits on users'-data designs against the exact optimum: which end more than 1% above it,
and which of those stay silent (no ConvergenceWarning).

Each case draws a design (Gaussian, one-hot beside numeric columns, polynomial, nearly collinear, offset, widely
scaled, mixed, heavy-tailed rows) of 30-4,000 rows, a target with noise and an offset, weights (30% of cases, a
third of them spanning six decades), a ridge (``alpha`` 0, 1e-3 or 0.1) and CSR storage (25%), then fits every
first-order rule with its defaults (``random_state=0``) and compares the ridge objective with the closed form's
(``solver="qr"``)::

    python tools/default_fit_fuzz.py SEED CASES [solvers] [partial_fit]

prints one line per fit more than 1% above the optimum, warned or raising ``DivergenceError``, then ``total fits``,
``flagged`` and ``silent>1%`` (the fits more than 1% above the optimum without a warning). Deterministic for a seed.
With ``partial_fit`` each fit is instead 30 passes of ``partial_fit`` over four chunks (rows ``c::4``), which warns
of nothing (``tol`` does not apply), so every flagged fit is silent.
"""
from __future__ import annotations

import sys
import warnings

import numpy as np
import scipy.sparse as sp
from sklearn.exceptions import ConvergenceWarning

from fastopt import LinearRegressor
from fastopt.exceptions import DivergenceError

RULES = ["sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adam"]


def design(rng: np.random.Generator):
    n = int(rng.choice([30, 80, 200, 600, 1500, 4000]))
    kind = str(rng.choice(["gauss", "onehot", "poly", "collinear", "offset", "scaled", "mixed", "outliers"]))
    if kind == "gauss":
        X = rng.normal(size=(n, int(rng.integers(2, 30))))
    elif kind == "onehot":
        k = int(rng.integers(2, 12))
        X = np.hstack([np.eye(k)[rng.integers(0, k, n)], rng.normal(size=(n, int(rng.integers(0, 4))))])
    elif kind == "poly":
        x = rng.uniform(-1, 1, n) * rng.choice([1, 3, 10])
        X = np.vstack([x**p for p in range(1, int(rng.integers(2, 6)) + 1)]).T
    elif kind == "collinear":
        X = rng.normal(size=(n, 3)) @ rng.normal(size=(3, 8)) + 1e-3 * rng.normal(size=(n, 8))
    elif kind == "offset":
        X = rng.normal(size=(n, 5)) + rng.uniform(5, 50, size=5)
    elif kind == "scaled":
        X = rng.normal(size=(n, 6)) * 10.0 ** rng.uniform(-3, 3, size=6)
    elif kind == "mixed":
        X = np.hstack([np.eye(5)[rng.integers(0, 5, n)], rng.normal(size=(n, 3)) * [1, 100, 0.01] + [0, 50, 0]])
    else:  # heavy-tailed rows: about 1% of them (at least one) 10-100 times the others' size
        X = rng.normal(size=(n, int(rng.integers(2, 20))))
        X[rng.random(n) < 0.01] *= 10.0 ** rng.uniform(1, 2)
        X[0] *= 10.0 ** rng.uniform(1, 2)
    y = X @ rng.normal(size=X.shape[1]) + rng.choice([0.0, 0.1, 1.0]) * rng.normal(size=n) + rng.normal() * 3
    u = rng.random()  # 30% weighted: most within 0.1-5, some spanning six decades
    w = None if u >= 0.3 else rng.uniform(0.1, 5, n) if u < 0.2 else 10.0 ** rng.uniform(-3, 3, n)
    alpha = float(rng.choice([0.0, 0.0, 1e-3, 0.1]))
    return kind, X, y, w, alpha, bool(rng.random() < 0.25)


def _objective(est, X, y, w, alpha: float) -> float:
    r = est.predict(X) - y
    return 0.5 * np.average(r * r, weights=w) + 0.5 * alpha * float(np.sum(est.coef_**2))


def main(seed: int, cases: int, rules: list[str], partial: bool = False) -> None:
    flagged, silent = 0, 0
    fit = fit_partial if partial else fit_default
    for i in range(cases):
        kind, X, y, w, alpha, csr = design(np.random.default_rng(seed * 100_000 + i))

        best = _objective(LinearRegressor(solver="qr", alpha=alpha).fit(X, y, sample_weight=w), X, y, w, alpha)
        null = 0.5 * np.average((y - np.average(y, weights=w)) ** 2, weights=w)
        for rule in rules:
            label = (f"case {i} {kind:9s} {X.shape!s:11s} csr={int(csr)} w={int(w is not None)} "
                     f"alpha={alpha:g} {rule:8s}")
            try:
                est, warned = fit(LinearRegressor(solver=rule, alpha=alpha, random_state=0), X, y, w, csr)
            except DivergenceError as exc:  # a clear error, not silent: counted as flagged
                print(f"{label} raised {type(exc).__name__}")
                flagged += 1
                continue
            excess = (_objective(est, X, y, w, alpha) - best) / max(best, 1e-6 * null)
            f, s = report(label, est, excess, warned)
            flagged, silent = flagged + f, silent + s
    print("total fits", cases * len(rules), "flagged", flagged, "silent>1%", silent)


def fit_default(est, X, y, w, csr: bool):
    """``est`` fitted on ``X`` (as CSR when ``csr``), and whether the fit warned ``ConvergenceWarning``."""
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        est.fit(sp.csr_array(X) if csr else X, y, sample_weight=w)
    return est, any(issubclass(r.category, ConvergenceWarning) for r in record)


def fit_partial(est, X, y, w, csr: bool, passes: int = 30, chunks: int = 4):
    """``est`` after ``passes`` passes of ``partial_fit`` over ``chunks`` chunks of ``X`` (rows ``c::chunks``,
    as CSR when ``csr``), and whether a call warned ``ConvergenceWarning``."""
    Xs = sp.csr_array(X) if csr else X
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        for _ in range(passes):
            for c in range(chunks):
                est.partial_fit(Xs[c::chunks], y[c::chunks], sample_weight=None if w is None else w[c::chunks])
    return est, any(issubclass(r.category, ConvergenceWarning) for r in record)


def report(label: str, est, excess: float, warned: bool) -> tuple[int, int]:
    """Print a fit more than 1% above the optimum or warned; its ``(flagged, silent)`` counts."""
    if not (excess > 1e-2 or warned):
        return 0, 0
    print(f"{label} excess {excess:.2e} warned={int(warned)} epochs {est.n_iter_}")
    return 1, int(not warned)


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3].split(",") if len(sys.argv) > 3 else RULES,
         partial=len(sys.argv) > 4 and sys.argv[4] == "partial_fit")
