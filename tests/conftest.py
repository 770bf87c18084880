"""Shared test set-up: tests run against the *installed* fastopt, with reproducible hypothesis runs."""
import os
import pathlib

import pytest
from hypothesis import HealthCheck, settings

import fastopt

settings.register_profile(
    "ci", derandomize=True, deadline=None, max_examples=60, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile("dev", deadline=None, max_examples=60)
settings.load_profile("ci" if os.environ.get("CI") else "dev")

REPO = pathlib.Path(__file__).resolve().parent.parent
DATA = pathlib.Path(__file__).resolve().parent / "data"


def pytest_report_header(config):
    return f"fastopt {fastopt.__version__} imported from {pathlib.Path(fastopt.__file__).parent}"


@pytest.fixture
def rng():
    import numpy as np

    return np.random.default_rng(12345)


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

    from fastopt import LinearRegressor, optim
    from fastopt._iterative import Sweep
    from fastopt._validation import check_fit_data

    def weight_mean(chunks, rows_of):
        sums = [np.sum(c[2][rows_of(i)], dtype=np.float64) if len(c) == 3 else len(c[0][rows_of(i)])
                for i, c in enumerate(chunks)]
        return math.fsum(sums) / sum(len(c[0][rows_of(i)]) for i, c in enumerate(chunks))

    def one_pass(est, chunk, epoch, mean):
        if mean is None:
            return est.partial_fit(*chunk)
        X, y, w = (*chunk, np.ones(len(chunk[0])))[:3]
        zero = not w.any()  # validation refuses all-zero weights; the stream gives the chunk no weight
        data = check_fit_data(est, X, y, np.ones_like(w) if zero else w, reset=not hasattr(est, "_solver_state"))
        if zero:
            data = dataclasses.replace(data, sample_weight=np.zeros_like(w))
        est._partial_fit(data, Sweep(epoch, weight_mean=mean))

    def run(params, lr0, chunks, orders, split=None, weights="stream"):
        p = LinearRegressor(**params).get_params()
        est = LinearRegressor(**{**params, "schedule": "constant", "early_stopping": False})
        rows_of = (lambda i: slice(None)) if split is None else (lambda i: split(i, len(chunks[i][0])))
        mean = weight_mean(chunks, rows_of) if weights == "stream" else None if weights == "chunk" else weights
        epochs = []
        # schedule="plateau" (and "auto" with learning_rate="auto") runs at lr0 until its first cut, which a
        # replayed fit must not reach.
        schedule = "constant" if p["schedule"] in ("auto", "plateau") else p["schedule"]
        for epoch, order in enumerate(orders):
            est.set_params(learning_rate=optim.schedule_lr(
                schedule, lr0, epoch, p["max_epochs"], end_factor=p["end_factor"], power_t=p["power_t"],
                gamma=p["gamma"]))
            for i in order:
                one_pass(est, tuple(a[rows_of(i)] for a in chunks[i]), epoch, mean)
            epochs.append(copy.deepcopy(est))
        return epochs

    return run
