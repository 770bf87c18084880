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
