"""The examples in the public modules' docstrings run and print what they show."""
import doctest
import importlib

import pytest

MODULES = ["linear_model", "optim", "minimize", "landscape", "functions", "plotting", "_closed_form",
           "_iterative", "_streaming", "_chunks", "_dask"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(f"fastopt.{name}")
    failures, _ = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE | doctest.ELLIPSIS)
    assert failures == 0
