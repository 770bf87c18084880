"""Out-of-core fitting on one machine: memory-mapped files and streams of chunks (fastopt._streaming)."""
import itertools
import subprocess
import sys
import tracemalloc

import numpy as np
import pytest

from fastopt import LinearRegressor
from fastopt._streaming import ChunkSource, chunk_orders, naming, unpack
from fastopt._validation import check_fit_data


def make_problem(rng, n=2_000, d=5, k=None, dtype=np.float64):
    X = rng.normal(size=(n, d)).astype(dtype)
    coef = rng.normal(size=(d,) if k is None else (d, k))
    y = (X @ coef + 0.5 + 0.1 * rng.normal(size=(n,) if k is None else (n, k))).astype(dtype)
    return X, y


# ---------------------------------------------------------------- helpers that need no solver


def test_import_does_not_import_dask():
    code = "import sys, fastopt; sys.exit('dask' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_chunk_orders_are_seeded_permutations():
    a = list(itertools.islice(chunk_orders(7, 5), 3))
    b = list(itertools.islice(chunk_orders(7, 5), 3))
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert all(sorted(o) == list(range(5)) for o in a)
    assert not all(np.array_equal(a[0], o) for o in a[1:])  # epochs draw fresh permutations
    assert [list(o) for o in itertools.islice(chunk_orders(7, 4, shuffle=False), 2)] == [[0, 1, 2, 3]] * 2


def test_chunk_source_kinds():
    items = [(np.ones((2, 1)), np.ones(2))] * 3
    listed = ChunkSource(items)
    assert listed.indexable and not listed.one_shot and len(listed) == 3
    assert [i for i, _ in listed.epoch(np.array([2, 0, 1]))] == [2, 0, 1]
    factory = ChunkSource(lambda: iter(items))
    assert not factory.indexable and not factory.one_shot
    assert [i for i, _ in factory.epoch()] == [0, 1, 2] == [i for i, _ in factory.epoch()]
    once = ChunkSource(iter(items))
    assert once.one_shot
    once.check_epochs(1)
    with pytest.raises(TypeError, match="one-shot iterator"):
        once.check_epochs(2)
    with pytest.raises(TypeError, match="chunks must be"):
        ChunkSource(3)


def test_unpack_and_naming():
    X, y, w = np.ones((2, 1)), np.ones(2), np.ones(2)
    assert unpack((X, y), "chunk 0")[2] is None
    assert unpack([X, y, w], "chunk 0")[2] is w
    with pytest.raises(TypeError, match=r"chunk 4 is a ndarray; each chunk must be a tuple \(X, y\)"):
        unpack(X, "chunk 4")
    with pytest.raises(ValueError, match="^chunk 2: boom$"):
        with naming("chunk 2"):
            raise ValueError("boom")

    class Special(ValueError):
        pass

    with pytest.raises(Special, match="^boom$"):  # subclasses keep their type and message
        with naming("chunk 2"):
            raise Special("boom")


def test_validation_does_not_copy_a_float64_memmap(tmp_path, rng):
    X, y = make_problem(rng, n=500)
    np.save(tmp_path / "X.npy", X)
    mm = np.load(tmp_path / "X.npy", mmap_mode="r")
    data = check_fit_data(LinearRegressor(), mm, y)
    assert np.shares_memory(data.X, mm)
