"""fastopt._kernels.Status is pinned to the fo_status enum of csrc/fastopt.h, value by value."""
import pathlib
import re

from fastopt import _kernels

HEADER = pathlib.Path(__file__).resolve().parent.parent / "csrc" / "fastopt.h"


def c_status_values():
    """Name -> value of every FO_* enumerator in the fo_status typedef of the C header."""
    body = re.search(r"typedef enum \{(.*?)\} fo_status;", HEADER.read_text(), re.S).group(1)
    return {name: int(value) for name, value in re.findall(r"FO_(\w+)\s*=\s*(\d+)", body)}


def test_status_matches_the_c_enum():
    c_values = c_status_values()
    assert c_values, "no FO_* enumerators found in csrc/fastopt.h"
    assert {member.name: member.value for member in _kernels.Status} == c_values


def test_a_kernel_reports_bad_arguments_through_status():
    import numpy as np
    import pytest

    with pytest.raises(ValueError, match="BAD_ARGUMENT|block_rows"):
        _kernels.gram_stats(np.ones((2, 1)), np.ones((2, 1)), None, np.empty(2), np.empty((2, 2)), 0)
