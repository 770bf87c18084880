"""Default iterative fits of the robust losses on users'-data designs against the exact optimum: which end more
than 1% above it, and which of those stay silent (no ConvergenceWarning).

The designs, weights, ridge and storage of ``default_fit_fuzz.py``, with Student-t noise (2 degrees of freedom,
scale 0.1 or 1) added to the target, fitted with ``loss`` (``"huber"`` or ``"absolute_error"``) by every
first-order rule with its defaults (``random_state=0``) and compared with ``solver="newton"``'s objective::

    python tools/robust_fit_fuzz.py SEED CASES LOSS [solvers]

prints one line per fit more than 1% above the optimum or warned, then ``total``, ``flagged`` and ``silent>1%``.
Deterministic for a seed.
"""
from __future__ import annotations

import sys
import warnings

import numpy as np
from default_fit_fuzz import RULES, design, fit_default, report

from fastopt import LinearRegressor

EPSILON = 1.35


def _objective(est, X, y, w, alpha: float, loss: str) -> float:
    a = np.abs(est.predict(X) - y)
    rho = a if loss == "absolute_error" else np.where(a <= EPSILON, 0.5 * a * a, EPSILON * (a - 0.5 * EPSILON))
    return float(np.average(rho, weights=w)) + 0.5 * alpha * float(np.sum(est.coef_**2))


def main(seed: int, cases: int, loss: str, rules: list[str]) -> None:
    flagged = silent = 0
    for i in range(cases):
        kind, X, y, w, alpha, csr = design(np.random.default_rng(seed * 100_000 + i))
        rng = np.random.default_rng(seed * 7 + i)
        y = y + rng.standard_t(2, size=y.shape[0]) * rng.choice([0.1, 1.0])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            exact = LinearRegressor(solver="newton", loss=loss, alpha=alpha, epsilon=EPSILON)
            best = _objective(exact.fit(X, y, sample_weight=w), X, y, w, alpha, loss)
        for rule in rules:
            est = LinearRegressor(solver=rule, loss=loss, alpha=alpha, epsilon=EPSILON, random_state=0)
            est, warned = fit_default(est, X, y, w, csr)
            excess = (_objective(est, X, y, w, alpha, loss) - best) / max(best, 1e-12)
            f, s = report(f"case {i} {kind:9s} {X.shape!s:11s} csr={int(csr)} w={int(w is not None)} "
                          f"alpha={alpha:g} {rule:8s}", est, excess, warned)
            flagged, silent = flagged + f, silent + s
    print("total", cases * len(rules), "flagged", flagged, "silent>1%", silent)


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4].split(",") if len(sys.argv) > 4 else RULES)
