"""The closed form's memory: segment statistics merged as they arrive, so a fit of m segments holds
O(threads + log m) p x p states instead of m; merges without p x p temporaries; and both with the bits of the
one-expression merge and of merging every segment at the end."""
import math
import threading
import tracemalloc
import weakref
from dataclasses import replace

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given
from hypothesis import strategies as st

from fastopt import LinearRegressor, _closed_form, _sparse
from fastopt._closed_form import ClosedFormState, TreeMerger, _merge_owned, _ordered_map, merge_states
from fastopt._validation import Data

SEGMENTS = 128  # of 256 rows each


def _peak(fit) -> int:
    tracemalloc.start()
    try:
        fit()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def _bound(n: int, p: int) -> float:
    """Bytes a fit may hold at once, as a count of p x p float64 arrays: per segment in flight its statistics and
    the kernel's block of at most 256 rows x p (two); the one being merged and the merge tree's partial sums (1 +
    log2 m); two for the merge and the solve; plus four n-vectors (the target and its copies)."""
    threads = min(_closed_form._n_threads(), SEGMENTS)
    grams = 2 * threads + 1 + math.log2(SEGMENTS) + 2
    return grams * p * p * 8 + 4 * n * 8


@pytest.mark.parametrize("solver", ["normal", "qr"])
def test_a_dense_fit_of_many_segments_holds_few_states(monkeypatch, rng, solver):
    # Before the segments were merged as they arrived, this fit held all 128 segments' statistics (128 p x p).
    monkeypatch.setattr(_closed_form, "SEGMENT_ROWS", 256)
    n, d = SEGMENTS * 256, 300
    X = rng.normal(size=(n, d))
    y = X[:, 0] + rng.normal(size=n)
    assert len(_closed_form.segment_bounds(n)) == SEGMENTS
    LinearRegressor(solver=solver).fit(X[:1024], y[:1024])  # warm up imports and caches
    peak = _peak(lambda: LinearRegressor(solver=solver).fit(X, y))
    assert peak < _bound(n, d + 1), peak / ((d + 1) ** 2 * 8)


def test_a_sparse_fit_of_many_segments_holds_few_states(monkeypatch, rng):
    monkeypatch.setattr(_sparse, "segment_rows", lambda indptr, p: 256)
    n, d = SEGMENTS * 256, 300
    X = sp.random(n, d, density=0.02, format="csr", random_state=rng)
    y = X @ rng.normal(size=d) + rng.normal(size=n)
    LinearRegressor().fit(X[:1024], y[:1024])
    peak = _peak(lambda: LinearRegressor().fit(X, y))
    assert peak < _bound(n, d + 1), peak / ((d + 1) ** 2 * 8)


def test_the_streamed_merge_has_the_bits_of_merging_every_segment_at_the_end(monkeypatch, rng):
    monkeypatch.setattr(_closed_form, "SEGMENT_ROWS", 512)
    n, d = 40 * 512 + 77, 30
    X, Y = rng.normal(size=(n, d)), rng.normal(size=(n, 2))
    data = Data(X=X, Y=Y, sample_weight=rng.random(n) + 0.5, y_was_1d=False)
    state = _closed_form.chunk_state({"solver": "normal"}, data)
    data = _closed_form.normalised_weights(data)  # as chunk_state does
    everything = [_closed_form._gram_segment(data, *bound) for bound in _closed_form.segment_bounds(n)]
    merger = TreeMerger()
    for segment in everything:
        merger.push(segment)
    expected = merger.result()
    np.testing.assert_array_equal(state.gram, expected.gram)
    np.testing.assert_array_equal(state.mean, expected.mean)
    assert state.weight == expected.weight


def _state(rng, p, weight):
    A = rng.normal(size=(3 * p, p))
    return ClosedFormState(p - 1, 1, "float64", 3 * p, weight, rng.normal(size=p), A.T @ A)


@given(p=st.integers(1, 600), seed=st.integers(0, 2**32 - 1), wa=st.floats(1e-3, 1e3), wb=st.floats(1e-3, 1e3))
def test_merges_add_as_the_one_expression_did(p, seed, wa, wb):
    # The merged Gram is built a slice of rows at a time (and, for states nobody else holds, in place): the same
    # IEEE operations in the same order as gram_a + gram_b + f outer(delta, delta), so the same bits.
    rng = np.random.default_rng(seed)
    a, b = _state(rng, p, wa), _state(rng, p, wb)
    before = a.gram.copy()
    delta, f = b.mean - a.mean, a.weight * (b.weight / (a.weight + b.weight))
    expected = a.gram + b.gram + f * np.outer(delta, delta)
    np.testing.assert_array_equal(merge_states(a, b).gram, expected)
    np.testing.assert_array_equal(a.gram, before)  # merge_states leaves its inputs alone
    owned = replace(a, gram=a.gram.copy())
    merged = _merge_owned(owned, b)
    np.testing.assert_array_equal(merged.gram, expected)
    assert merged.gram is owned.gram  # written in place: no p x p allocation


@pytest.mark.parametrize("threads", [1, 2, 4])
@pytest.mark.parametrize("count", [0, 1, 2, 9])
def test_ordered_map_yields_in_order(threads, count):
    assert list(_ordered_map(lambda i: i * i, range(count), threads)) == [i * i for i in range(count)]


class _Result:
    pass


@pytest.mark.parametrize("threads", [2, 3])
def test_ordered_map_keeps_few_results_waiting(threads):
    # Each call records how many results exist when it starts: those done and not yet taken, and the one the
    # caller holds. pool.map would compute far ahead of a slow caller (up to all 30).
    alive, seen, lock = [0], [], threading.Lock()

    def gone():
        with lock:
            alive[0] -= 1

    def fn(i):
        with lock:
            seen.append(alive[0])
            alive[0] += 1
        result = _Result()
        weakref.finalize(result, gone)
        return result

    done = threading.Event()
    for result in _ordered_map(fn, range(30), threads):
        done.wait(0.002)  # a caller slower than the calls
        del result
    assert len(seen) == 30 and max(seen) <= threads


def test_ordered_map_stops_at_an_error():
    started = []

    def fn(i):
        started.append(i)
        if i == 3:
            raise ValueError("segment 3")
        return i

    with pytest.raises(ValueError, match="segment 3"):
        list(_ordered_map(fn, range(100), 2))
    assert max(started) <= 3 + 2  # nothing is submitted after the failing call's result is taken


def test_the_sparse_memory_check_counts_the_merge_tree(monkeypatch):
    # Two threads: 2 + 2 p x p arrays for one segment, 2 + 2 + ceil(log2 16) = 8 for sixteen (the segments in
    # flight, the one being merged, the tree's partial sums, one spare). With room for 6, the first fits and the
    # second is refused before any work.
    p = 1001
    monkeypatch.setattr(_sparse, "available_memory", lambda: 6 * 8 * p * p)
    _sparse.check_gram_fits(1000, 1, 2, 1)
    with pytest.raises(MemoryError, match="1000 columns"):
        _sparse.check_gram_fits(1000, 1, 2, 16)
