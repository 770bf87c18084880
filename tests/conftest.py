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


@pytest.fixture
def replay():
    """The in-memory chunked ``partial_fit`` sequence that a streamed or Dask fit must equal bit for bit.

    ``replay(params, lr0, chunks, orders, split=None)`` visits ``chunks`` (tuples ``(X, y[, w])``) in each of
    ``orders`` in turn, every epoch at the rate the fit's schedule gives it from the base rate ``lr0``
    (``partial_fit`` reads a numeric ``learning_rate`` at every call). ``split(i, n)`` returns chunk ``i``'s
    training rows when the fit holds rows out. Returns the estimator after each epoch, copied.
    """
    import copy

    from fastopt import LinearRegressor, optim

    def run(params, lr0, chunks, orders, split=None):
        p = LinearRegressor(**params).get_params()
        est = LinearRegressor(**{**params, "schedule": "constant", "early_stopping": False})
        epochs = []
        for epoch, order in enumerate(orders):
            est.set_params(learning_rate=optim.schedule_lr(
                p["schedule"], lr0, epoch, p["max_epochs"], end_factor=p["end_factor"], power_t=p["power_t"],
                gamma=p["gamma"]))
            for i in order:
                rows = slice(None) if split is None else split(i, len(chunks[i][0]))
                est.partial_fit(*(a[rows] for a in chunks[i]))
            epochs.append(copy.deepcopy(est))
        return epochs

    return run
