"""Shared test set-up: tests run against the *installed* fastopt, with reproducible hypothesis runs."""
import os
import pathlib
import signal
import subprocess
import sys

import pytest
from hypothesis import HealthCheck, settings

import fastopt

settings.register_profile(
    "ci", derandomize=True, deadline=None, max_examples=60, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile("dev", deadline=None, max_examples=60)
settings.load_profile("ci" if os.environ.get("CI") else "dev")

# A run started as a background job (`pytest &` in a non-interactive shell, as a CI step may start it) inherits
# SIGINT ignored, so Python installs no KeyboardInterrupt handler, and the Ctrl-C tests (in this process, and in
# children, which keep an ignored signal across exec) would send it to no one: restore the interactive default.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

REPO = pathlib.Path(__file__).resolve().parent.parent
DATA = pathlib.Path(__file__).resolve().parent / "data"


def pytest_report_header(config):
    return f"fastopt {fastopt.__version__} imported from {pathlib.Path(fastopt.__file__).parent}"


@pytest.fixture
def rng():
    import numpy as np

    return np.random.default_rng(12345)


@pytest.fixture(scope="session")
def exact_least_squares():
    """``solve(X, Y, w=None, alpha=0.0, fit_intercept=True)``: the minimiser of
    ``(1/(2W)) sum_i w_i ||y_i - b0 - B x_i||^2 + (alpha/2) ||B||^2`` in rational arithmetic (the floats are exact
    binaries), rounded once: ``(b0, B)`` of shapes (k,) and (k, d) (``b0`` zero without an intercept)."""
    from fractions import Fraction

    import numpy as np

    def solve(X, Y, w=None, alpha=0.0, fit_intercept=True):
        n = X.shape[0]
        wf = [Fraction(1)] * n if w is None else [Fraction(float(v)) for v in w]
        W = sum(wf)
        lead = 1 if fit_intercept else 0
        rows = [[Fraction(1)] * lead + [Fraction(float(v)) for v in X[i]] for i in range(n)]
        p = len(rows[0])
        ridge = W * Fraction(float(alpha))
        sols = []
        for j in range(Y.shape[1]):
            M = [[sum(wf[i] * rows[i][a] * rows[i][b] for i in range(n)) + (ridge if a == b >= lead else 0)
                  for b in range(p)] + [sum(wf[i] * rows[i][a] * Fraction(float(Y[i, j])) for i in range(n))]
                 for a in range(p)]
            for col in range(p):  # Gauss-Jordan; exact, so no pivoting strategy is needed beyond a non-zero pivot
                piv = next(r for r in range(col, p) if M[r][col] != 0)
                M[col], M[piv] = M[piv], M[col]
                for r in range(p):
                    if r != col and M[r][col] != 0:
                        f = M[r][col] / M[col][col]
                        M[r] = [a - f * c for a, c in zip(M[r], M[col])]
            sols.append([float(M[i][p] / M[i][i]) for i in range(p)])
        sol = np.array(sols)
        return (sol[:, 0], sol[:, 1:]) if fit_intercept else (np.zeros(Y.shape[1]), sol)

    return solve


@pytest.fixture(scope="session")
def epoch_problem():
    """``epoch_problem(rng, n, d, k, dtype, weighted)``: a regression problem for the epoch kernels, returned as
    ``(X, Y, sw)``: Gaussian X, k targets with Student-t noise (heavy tails exercise the robust losses), and
    uniform weights normalised to mean 1 (as the estimator passes them) or None. Session-scoped so that
    hypothesis tests may use it."""

    def make(rng, n, d, k, dtype, weighted):
        X = rng.normal(size=(n, d)).astype(dtype)
        Y = (X @ rng.normal(size=(d, k)) + 0.3 * rng.standard_t(3, size=(n, k))).astype(dtype)
        sw = rng.uniform(0.0, 2.0, size=n).astype(dtype) if weighted else None
        return X, Y, None if sw is None else sw / sw.mean()

    return make


@pytest.fixture
def replay():
    """The in-memory chunked ``partial_fit`` sequence that a streamed or Dask fit must equal bit for bit.

    ``replay(params, lr0, chunks, orders, split=None, weights="stream")`` visits ``chunks`` (tuples
    ``(X, y[, w])``) in each of ``orders`` in turn, every epoch at the rate the fit's schedule gives it from the
    base rate ``lr0`` (``partial_fit`` reads a numeric ``learning_rate`` at every call). ``split(i, n)`` returns
    chunk ``i``'s training rows when the fit holds rows out. ``weights="stream"`` divides every chunk's
    weights by the mean weight of all training rows (each chunk's float64 sum, totalled exactly), as a
    streamed fit does; a number divides them by that number; ``"chunk"`` calls the public ``partial_fit``,
    which divides by each call's own mean.
    Returns the estimator after each epoch, copied.
    """
    import copy
    import dataclasses
    import math

    import numpy as np

    from fastopt import LinearRegressor, _iterative, optim
    from fastopt._iterative import Sweep
    from fastopt._validation import check_fit_data

    def weight_mean(chunks, rows_of):
        sums = [np.sum(c[2][rows_of(i)], dtype=np.float64) if len(c) == 3 else len(c[0][rows_of(i)])
                for i, c in enumerate(chunks)]
        return math.fsum(sums) / sum(len(c[0][rows_of(i)]) for i, c in enumerate(chunks))

    def one_pass(est, chunk, epoch, mean, first_lr0=None):
        # first_lr0: the first pass of a learning_rate="auto" fit, which starts where the stream's does (the
        # intercepts at the chunk's target mean) at the stream's rate
        if mean is None and first_lr0 is None:
            return est.partial_fit(*chunk)
        X, y, w = (*chunk, np.ones(len(chunk[0])))[:3]
        zero = not w.any()  # validation refuses all-zero weights; the stream gives the chunk no weight
        if first_lr0 is not None:
            rate = est.learning_rate
            est.set_params(learning_rate="auto")
        data = check_fit_data(est, X, y, np.ones_like(w) if zero else w, reset=not hasattr(est, "_solver_state"))
        if zero:
            data = dataclasses.replace(data, sample_weight=np.zeros_like(w))
        est._partial_fit(data, Sweep(epoch, weight_mean=mean, lr0=first_lr0))
        if first_lr0 is not None:
            est.set_params(learning_rate=rate)

    def run(params, lr0, chunks, orders, split=None, weights="stream"):
        p = LinearRegressor(**params).get_params()
        est = LinearRegressor(**{**params, "schedule": "constant", "early_stopping": False})
        rows_of = (lambda i: slice(None)) if split is None else (lambda i: split(i, len(chunks[i][0])))
        mean = weight_mean(chunks, rows_of) if weights == "stream" else None if weights == "chunk" else weights
        epochs = []
        # schedule="plateau" (and "auto" with learning_rate="auto") runs at lr0 until its first cut, which a
        # replayed fit must not reach.
        schedule = "constant" if p["schedule"] in ("auto", "plateau") else p["schedule"]
        # the horizon of max_epochs="auto": rounds of the stream's steps an epoch
        steps = sum(-(-len(c[0][rows_of(i)]) // p["batch_size"]) for i, c in enumerate(chunks))
        horizon = _iterative.max_epochs(p, steps)
        for epoch, order in enumerate(orders):
            est.set_params(learning_rate=optim.schedule_lr(
                schedule, lr0, epoch, horizon, end_factor=p["end_factor"], power_t=p["power_t"], gamma=p["gamma"]))
            for i in order:
                first = p["learning_rate"] == "auto" and not hasattr(est, "_solver_state")
                one_pass(est, tuple(a[rows_of(i)] for a in chunks[i]), epoch, mean, lr0 if first else None)
            epochs.append(copy.deepcopy(est))
        return epochs

    return run


@pytest.fixture
def alarm_scales(monkeypatch) -> list:
    """Record the loss scale each plateau check hands its bound (plateau_gap; the robust losses' robust_gap in
    memory, stream_robust_gap over chunks: their extra steps and rounds near the alarm need it) and the one
    warn_if_far is then given, as ``("gap", scale)`` and ``("warn", scale)`` in call order."""
    from fastopt import _iterative, _sweeps

    seen = []

    def spy(module, name, at):  # the scale is the call's positional argument ``at``
        original = getattr(module, name)

        def spied(*args, **kwargs):
            seen.append(("gap", args[at]))
            return original(*args, **kwargs)

        monkeypatch.setattr(module, name, spied)

    spy(_iterative, "plateau_gap", 9)  # (fused, diag, W, p, k, alpha, fit_intercept, centre, steps, scale)
    spy(_iterative, "robust_gap", 7)  # (data, sw, p, alpha, fit_intercept, loss, epsilon, scale)
    spy(_sweeps, "stream_robust_gap", 7)  # (fused, p, k, alpha, fit_intercept, loss, epsilon, scale)
    warn = _iterative.warn_if_far

    def spied_warn(method, f, gain, scale, **kwargs):
        seen.append(("warn", scale))
        return warn(method, f, gain, scale, **kwargs)

    monkeypatch.setattr(_iterative, "warn_if_far", spied_warn)
    return seen


@pytest.fixture
def busy_core():
    """A process spinning on one core while the test runs: a two-thread epoch's second thread then loses its core
    now and then (the dense team's calling thread goes on alone, fo_team; the CSR pipe's calling thread stages
    fixed blocks ahead while it waits, fo_csr_pipe.fixed)."""
    hog = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    yield
    hog.kill()
    hog.wait()
