"""Out-of-core fitting on one machine: memory-mapped files and streams of chunks (fastopt._streaming)."""
import functools
import itertools
import os
import pathlib
import subprocess
import sys
import tracemalloc
import warnings

import numpy as np
import pytest
import scipy.sparse as sp

import fastopt
from fastopt import LinearRegressor, _iterative, _iterative_lr
from fastopt._chunks import ChunkSource, chunk_orders, chunk_sample, chunk_split, merge_samples, naming, unpack
from fastopt._convergence import two_scale_targets
from fastopt._validation import check_fit_data
from fastopt.exceptions import IllConditionedWarning


def make_problem(rng, n=2_000, d=5, k=None, dtype=np.float64):
    X = rng.normal(size=(n, d)).astype(dtype)
    coef = rng.normal(size=(d,) if k is None else (d, k))
    y = (X @ coef + 0.5 + 0.1 * rng.normal(size=(n,) if k is None else (n, k))).astype(dtype)
    return X, y


# ---------------------------------------------------------------- helpers that need no solver


def test_import_does_not_import_dask(tmp_path):
    code = "import sys, fastopt; sys.exit('dask' in sys.modules)"
    # The child must import the fastopt under test (installed, or built in place), not an unbuilt source tree
    # that `python -c` would find first in its working directory.
    package_root = str(pathlib.Path(fastopt.__file__).resolve().parent.parent)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")]))}
    assert subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env).returncode == 0


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
    with pytest.raises(TypeError, match=r"chunk 1 is a tuple of 4 items; each chunk must be a tuple"):
        unpack((X, y, w, 1), "chunk 1")  # (it read "is a tuple; each chunk must be a tuple")
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


# ---------------------------------------------------------------- memory-mapped files


# learning_rate="auto" copies a fixed sample of fastopt._iterative_lr.AUTO_ROWS rows (bounded whatever the
# file's length); a fixed rate keeps this test about the epochs themselves.
@pytest.mark.parametrize("params", [{}, {"solver": "adam", "max_epochs": 2, "random_state": 0, "learning_rate": 1e-3,
                                         "tol": None}])
def test_memmap_fit_streams_in_bounded_memory(tmp_path, params):
    n, d = 100_000, 100  # an 80 MB file
    rng = np.random.default_rng(0)
    X = np.lib.format.open_memmap(tmp_path / "X.npy", mode="w+", dtype=np.float64, shape=(n, d))
    for s in range(0, n, 20_000):
        X[s : s + 20_000] = rng.normal(size=(min(20_000, n - s), d))
    y = X @ rng.normal(size=d) + 0.1 * rng.normal(size=n)
    X.flush()
    del X
    mm = np.load(tmp_path / "X.npy", mmap_mode="r")
    tracemalloc.start()
    try:
        est = LinearRegressor(**params).fit(mm, y)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    # Nothing of X's size may be allocated: validation passes the memmap through, the closed form reads it
    # blockwise, an epoch reads rows in place through an index array (a few vectors of length n in all).
    assert peak < 0.05 * mm.nbytes, f"peak {peak / 2**20:.1f} MiB while fitting an {mm.nbytes / 2**20:.0f} MiB memmap"
    expected = LinearRegressor(**params).fit(np.array(mm), y)
    np.testing.assert_array_equal(est.coef_, expected.coef_)


# ---------------------------------------------------------------- streams of chunks


def split(n, sizes=(300, 700, 1, 450)):
    """Uneven row slices covering range(n), including a one-row chunk."""
    edges = np.cumsum((0, *sizes))
    edges = [*edges[edges < n].tolist(), n]
    return [slice(a, b) for a, b in itertools.pairwise(edges)]


def chunks_of(slices, *arrays):
    return [tuple(a[s] for a in arrays) for s in slices]


def assert_close(a, b, rtol=1e-10):
    np.testing.assert_allclose(a, b, rtol=rtol, atol=rtol * np.max(np.abs(b)))


@pytest.mark.parametrize("k, weighted", [(None, False), (None, True), (3, True)])
def test_stream_closed_form_is_one_fit(rng, k, weighted):
    X, y = make_problem(rng, k=k)
    w = rng.uniform(0, 2, size=len(X))
    arrays = (X, y, w) if weighted else (X, y)
    expected = LinearRegressor().fit(X, y, sample_weight=w if weighted else None)
    items = chunks_of(split(len(X)), *arrays)
    for chunks in (items, iter(items), lambda: iter(items)):
        est = LinearRegressor().fit_stream(chunks)
        assert_close(est.coef_, expected.coef_)
        assert_close(est.intercept_, expected.intercept_)
        assert est.n_features_in_ == X.shape[1]


def _refilled(X, y, rows, fresh_first=0):
    """A source that refills one buffer pair for each chunk of ``rows`` rows (after ``fresh_first`` chunks in
    arrays of their own), as readers into a preallocated buffer do."""
    def chunks():
        bx, by = np.empty((rows, X.shape[1])), np.empty(rows)
        for i, start in enumerate(range(0, len(X), rows)):
            if i < fresh_first:
                yield X[start : start + rows].copy(), y[start : start + rows].copy()
                continue
            bx[:], by[:] = X[start : start + rows], y[start : start + rows]
            yield bx, by
    return chunks


@pytest.mark.parametrize("solver", ["normal", "qr", "lsqr", "sgd", "adam"])
def test_a_source_that_refills_one_buffer_fits_as_one_of_fresh_arrays(rng, solver):
    # The next chunk is read while the current one is fitted: the refill overwrote the chunk the kernels were
    # reading, and every solver returned wrong coefficients, different on each run (closed form 0.01-0.08 off).
    X = rng.normal(size=(60_000, 30))
    y = X @ rng.normal(size=30) + 0.1 * rng.normal(size=60_000)
    fresh = lambda: ((X[s : s + 6000].copy(), y[s : s + 6000].copy()) for s in range(0, 60_000, 6000))  # noqa: E731
    params = {"solver": solver, "random_state": 0}
    if solver in ("sgd", "adam"):
        params.update(max_epochs=2, tol=None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", fastopt.exceptions.ConvergenceWarning)
        expected = LinearRegressor(**params).fit_stream(fresh)
        for _ in range(3):
            est = LinearRegressor(**params).fit_stream(_refilled(X, y, 6000))
            np.testing.assert_array_equal(est.coef_, expected.coef_)
            assert est.intercept_ == expected.intercept_


def test_a_source_that_changes_what_it_yielded_fits_as_fresh_arrays(rng):
    # The source resumes while the chunk it yielded is fitted: a buffer refilled only after chunks of their own,
    # or a view standardised in place and restored after the yield, changed the chunk the kernels were reading
    X, y = rng.normal(size=(6000, 5)), rng.normal(size=6000)

    def restored():
        D = X.copy()  # (each read its own: the fit's look at the first chunk abandons a generator after its yield)
        for s in range(0, 6000, 1000):
            v = D[s : s + 1000]
            v -= 1.0
            yield v, y[s : s + 1000]
            v += 1.0

    expected = LinearRegressor().fit(X - 1.0, y)
    for chunks in (_refilled(X - 1.0, y, 1000, fresh_first=1), _refilled(X - 1.0, y, 1000, fresh_first=2),
                   restored):
        for _ in range(3):
            assert_close(LinearRegressor().fit_stream(chunks).coef_, expected.coef_)


def test_chunks_that_share_memory_they_do_not_write_are_fitted_as_before(rng):
    # Overlap alone was refused at first: one weight array shared by the later chunks, a chunk repeated, views of
    # several Fortran-ordered arrays (their bounds overlap), overlapping windows over two arrays
    X, y = rng.normal(size=(6000, 5)), rng.normal(size=6000)
    ones, F = np.ones(1000), [np.asfortranarray(X[:3000]), np.asfortranarray(X[3000:])]
    sources = {
        "shared weights": lambda: ((X[s : s + 1000], y[s : s + 1000], ones if s else np.ones(1000))
                                   for s in range(0, 6000, 1000)),
        "repeated": lambda: ((X[s : s + 1000].copy(), y[s : s + 1000].copy()) for s in (0, 1000, 1000, 0)),
        "fortran views": lambda: ((F[s // 3000][s % 3000 : s % 3000 + 1000], y[s : s + 1000])
                                  for s in range(0, 6000, 1000)),
        "windows": lambda: ((F[s // 3000][s % 3000 : s % 3000 + 1000], y[s : s + 1000])
                            for s in (0, 500, 1000, 3000, 3500, 4000)),
    }
    for name, source in sources.items():
        fresh = lambda source=source: ((X_.copy(), *(a.copy() for a in rest)) for X_, *rest in source())  # noqa: E731
        for solver in ("normal", "sgd"):
            params = {"solver": solver, "random_state": 0, "max_epochs": 2, "tol": None}
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", fastopt.exceptions.ConvergenceWarning)
                got = LinearRegressor(**params).fit_stream(source)
                want = LinearRegressor(**params).fit_stream(fresh)
            np.testing.assert_array_equal(got.coef_, want.coef_, err_msg=name)


@pytest.mark.parametrize("solver", ["sgd", "adam"])
def test_a_callable_whose_generators_share_their_buffers_fits_as_fresh_arrays(rng, solver):
    # With weights and a numeric rate the fit totals the stream's weights by reading it again while it takes its
    # first chunk: that read refilled the first chunk's buffers, and, beside the reader's read of the second
    # chunk, its buffers too (3e-3 off in 10 of 10 fits, silently)
    chunks = [(rng.normal(size=(4000, 20)), rng.normal(size=4000), rng.uniform(0.5, 2, 4000)) for _ in range(8)]
    buffers = [(np.empty((4000, 20)), np.empty(4000), np.empty(4000)) for _ in range(2)]

    def shared():
        for i, (X, y, w) in enumerate(chunks):
            bx, by, bw = buffers[i % 2]
            bx[:], by[:], bw[:] = X, y, w
            yield bx, by, bw

    params = {"solver": solver, "learning_rate": 1e-3, "max_epochs": 2, "tol": None, "random_state": 0}
    expected = LinearRegressor(**params).fit_stream(lambda: ((X.copy(), y.copy(), w.copy()) for X, y, w in chunks))
    for _ in range(3):
        np.testing.assert_array_equal(LinearRegressor(**params).fit_stream(shared).coef_, expected.coef_)


def test_stream_chunks_of_array_likes_without_copy_refilled_in_place_are_copied(rng):
    # An array-like with __array__ but no copy() (a torch tensor) was handed over as it was, and validation's
    # np.asarray shares its memory
    class Buffer:
        def __init__(self, a):
            self.a = a

        def __array__(self, dtype=None, copy=None):
            return self.a if dtype is None else self.a.astype(dtype, copy=False)

        def __len__(self):
            return len(self.a)

        @property
        def shape(self):
            return self.a.shape

    X, y = rng.normal(size=(60_000, 30)), rng.normal(size=60_000)
    bx, by = np.empty((6000, 30)), np.empty(6000)

    def chunks():
        for s in range(0, 60_000, 6000):
            bx[:], by[:] = X[s : s + 6000], y[s : s + 6000]
            yield Buffer(bx), Buffer(by)

    expected = LinearRegressor().fit(X, y)
    for _ in range(3):
        assert_close(LinearRegressor().fit_stream(chunks).coef_, expected.coef_)


def test_stream_chunks_in_dataframes_refilled_in_place_are_copied(rng):
    pd = pytest.importorskip("pandas")
    X, y = rng.normal(size=(6000, 4)), rng.normal(size=6000)
    frame, target = pd.DataFrame(np.empty((1000, 4)), columns=list("abcd")), pd.Series(np.empty(1000))

    def chunks():
        for start in range(0, 6000, 1000):
            frame.iloc[:, :], target.iloc[:] = X[start : start + 1000], y[start : start + 1000]
            yield frame, target

    est = LinearRegressor().fit_stream(chunks)
    assert_close(est.coef_, LinearRegressor().fit(X, y).coef_)


@pytest.mark.parametrize("solver", ["normal", "sgd"])
def test_a_stream_mixing_1d_and_2d_targets_is_refused(rng, solver):
    # coef_ had the shape of the first chunk visited: (5,) or (1, 5) by random_state for the iterative solvers
    X, y = rng.normal(size=(100, 5)), rng.normal(size=100)
    for seed in range(4):
        with pytest.raises(ValueError, match=r"targets of shape \(50, 1\) but chunk 0 had targets of shape \(50,\)"
                                             r"|targets of shape \(50,\) but chunk 1 had targets of shape \(50, 1\)"):
            LinearRegressor(solver=solver, random_state=seed).fit_stream([(X[:50], y[:50]), (X[50:], y[50:, None])])


def test_stream_closed_form_keeps_zero_weight_chunks(rng):
    X, y = make_problem(rng)
    w = np.ones(len(X))
    w[300:1000] = 0.0
    expected = LinearRegressor().fit(X, y, sample_weight=w)
    est = LinearRegressor().fit_stream(chunks_of(split(len(X)), X, y, w))
    assert_close(est.coef_, expected.coef_)
    with pytest.raises(ValueError, match="sums to zero over all chunks"):
        LinearRegressor().fit_stream([(X[:10], y[:10], np.zeros(10))] * 2)


def test_stream_ill_conditioned_takes_a_second_qr_pass(rng):
    t = np.linspace(0, 1, 2_000)
    X = np.vander(t, 10, increasing=True)[:, 1:]
    y = X @ np.arange(1.0, 10.0) + 1.0
    items = chunks_of(split(len(X)), X, y)
    with warnings.catch_warnings():
        warnings.simplefilter("error", IllConditionedWarning)  # the switch to QR is in solver_, not a warning
        expected = LinearRegressor().fit(X, y)
        est = LinearRegressor().fit_stream(items)
    assert est.solver_ == expected.solver_ == "qr"
    assert_close(est.coef_, expected.coef_, rtol=1e-6)
    # A one-shot stream cannot be read twice: the closed form says so and solves what it has.
    with pytest.warns(IllConditionedWarning, match="eigensolve"):
        assert LinearRegressor().fit_stream(iter(items)).solver_ == "eigh"


@pytest.mark.parametrize("learning_rate", ["auto", 0.01])
def test_a_stream_of_frames_and_an_array_takes_its_names_from_chunk_0_whatever_the_order(learning_rate):
    # The first epoch's shuffled order set the names from its first chunk: where that was the array, the fit
    # kept no names (random_state=3 here), warned "fitted without feature names" for every frame after it, and
    # predict then took reordered columns with a warning instead of an error.
    pd = pytest.importorskip("pandas")
    rng = np.random.default_rng(0)
    X = pd.DataFrame(rng.normal(size=(400, 3)), columns=list("abc"))
    y = X.a + 2 * X.b + 1
    chunks = [(X.iloc[i : i + 100], y.iloc[i : i + 100]) for i in range(0, 400, 100)]
    chunks[2] = (chunks[2][0].to_numpy(), chunks[2][1])
    for seed in range(6):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            est = LinearRegressor(solver="sgd", learning_rate=learning_rate, random_state=seed, max_epochs=3,
                                  tol=None).fit_stream(chunks)
        assert list(est.feature_names_in_) == list("abc")
        # only the array's chunk warns (sklearn's message for a call without names after a fit with them)
        assert {str(w.message)[:40] for w in caught} == {"X does not have valid feature names, but"}
        with pytest.raises(ValueError, match="feature names"):
            est.predict(X[["c", "b", "a"]])


def test_stream_pandas_chunks_keep_feature_names(rng):
    pd = pytest.importorskip("pandas")
    X, y = make_problem(rng)
    frame = pd.DataFrame(X, columns=[f"f{i}" for i in range(X.shape[1])])
    est = LinearRegressor().fit_stream([(frame.iloc[s], y[s]) for s in split(len(X))])
    assert list(est.feature_names_in_) == list(frame.columns)
    with pytest.raises(ValueError, match="chunk 1: .*feature names"):
        LinearRegressor().fit_stream([(frame.iloc[:500], y[:500]), (frame.iloc[500:, ::-1], y[500:])])


@pytest.mark.parametrize("solver, shuffle, schedule", [("adam", True, "linear"), ("sgd", False, "cosine"),
                                                     ("momentum", True, "constant")])
def test_stream_iterative_replays_partial_fit(rng, replay, solver, shuffle, schedule):
    X, y = make_problem(rng)
    w = rng.uniform(0.5, 2, size=len(X))
    slices = split(len(X))
    params = {"solver": solver, "random_state": 5, "max_epochs": 3, "tol": None, "shuffle": shuffle,
              "schedule": schedule, "end_factor": 0.1}
    chunks = chunks_of(slices, X, y, w)
    est = LinearRegressor(**params).fit_stream(chunks)
    # The schedule advances once per epoch (sweep), exactly as fit's: epoch e's passes all run at its rate.
    expected = replay(params, est.learning_rate_, chunks, itertools.islice(chunk_orders(5, len(slices), shuffle), 3))
    np.testing.assert_array_equal(est.coef_, expected[-1].coef_)
    np.testing.assert_array_equal(est.intercept_, expected[-1].intercept_)
    assert est.n_iter_ == 3 and len(est.loss_curve_) == 3 and est.t_ == expected[-1].t_
    assert est.best_loss_ == min(est.loss_curve_)


def test_stream_max_epochs_auto_spans_the_rounds_of_small_chunks(rng, replay):
    # Two chunks of 500 rows: 16 steps an epoch, so max_epochs="auto" is 100 rounds of 2 epochs, resolved after
    # the first sweep; from the second sweep on the linear schedule spans those 200 epochs, as fit's does.
    X, y = make_problem(rng, n=1_000)
    items = chunks_of(split(len(X), sizes=(500, 500)), X, y)
    params = {"solver": "sgd", "learning_rate": 0.05, "random_state": 2, "tol": None, "schedule": "linear",
              "shuffle": False}
    est = LinearRegressor(**params).fit_stream(items)
    assert est.n_iter_ == 200
    expected = replay(params, 0.05, items, [range(len(items))] * 200)[-1]
    np.testing.assert_array_equal(est.coef_, expected.coef_)
    np.testing.assert_array_equal(est.intercept_, expected.intercept_)


def test_stream_iterative_from_a_callable_runs_in_its_order(rng, replay):
    X, y = make_problem(rng)
    items = chunks_of(split(len(X)), X, y)
    params = {"solver": "sgd", "random_state": 2, "max_epochs": 2, "tol": None, "schedule": "invscaling"}
    est = LinearRegressor(**params).fit_stream(lambda: iter(items))
    expected = replay(params, est.learning_rate_, items, [range(len(items))] * 2)[-1]
    np.testing.assert_array_equal(est.coef_, expected.coef_)
    # The rate comes from a sample keyed by chunk position, so a list gives the same one.
    assert LinearRegressor(**params).fit_stream(items).learning_rate_ == est.learning_rate_
    with pytest.raises(TypeError, match="max_epochs=2 needs several passes"):
        LinearRegressor(**params).fit_stream(iter(items))
    with pytest.raises(TypeError, match="early_stopping=True scores each epoch .* one-shot iterator"):
        LinearRegressor(**{**params, "max_epochs": 1}, early_stopping=True).fit_stream(iter(items))


@pytest.mark.parametrize("solver", ["sgd", "adam"])
def test_stream_auto_learning_rate_samples_every_chunk(rng, solver):
    X, y = make_problem(rng)
    X[:300] *= 5  # the first chunk alone would suggest a far smaller rate
    w = rng.uniform(0.5, 2, size=len(X))
    items = chunks_of(split(len(X)), X, y, w)
    params = {"solver": solver, "random_state": 0, "max_epochs": 1, "tol": None}
    est = LinearRegressor(**params).fit_stream(items)
    # Under AUTO_ROWS training rows the sample is all of them: the in-memory estimate, up to the power
    # iteration's tolerance (its start vector differs).
    in_memory = LinearRegressor(**params).fit(X, y, sample_weight=w).learning_rate_
    np.testing.assert_allclose(est.learning_rate_, in_memory, rtol=5e-3)
    # (a first partial_fit would scale the chunk's columns, RMS 5 here, and report the rate of the scaled problem)
    first_chunk = LinearRegressor(**params, precondition="none").partial_fit(*items[0]).learning_rate_
    assert first_chunk < est.learning_rate_ / 1.5
    # A one-shot stream cannot be read twice: its first chunk sets the rate, as partial_fit does.
    assert LinearRegressor(**params).fit_stream(iter(items)).learning_rate_ == first_chunk


def test_stream_learning_rate_sample_is_bounded_and_merges_in_any_order(rng, monkeypatch):
    monkeypatch.setattr(_iterative_lr, "AUTO_ROWS", 50)
    X, y = make_problem(rng)
    params = LinearRegressor("sgd").get_params()
    slices = split(len(X))
    def parts(below=1.0):
        return [chunk_sample(LinearRegressor(), params, 3, X[s], y[s], None, f"chunk {i}", i, below=below)
                for i, s in enumerate(slices)]

    forward, backward = functools.reduce(merge_samples, parts()), functools.reduce(merge_samples, parts()[::-1])
    # With the row count known beforehand (Dask arrays), chunks send only keys below 2 * AUTO_ROWS / n.
    thin = parts(below=2 * 50 / len(X))
    assert sum(len(p.keys) for p in thin) < 200
    thinned = functools.reduce(merge_samples, thin)
    assert forward.X.shape == (50, X.shape[1]) and forward.n_train == thinned.n_train == len(X)
    assert np.all(np.diff(forward.keys) > 0)
    for other in (backward, thinned):
        for a, b in ((forward.keys, other.keys), (forward.X, other.X), (forward.Y, other.Y)):
            np.testing.assert_array_equal(a, b)


# ---------------------------------------------------------------- sample weights across chunks

SCALES = (10.0, 0.1, 1.0, 0.0, 1.0)  # per chunk of split(2000): the fourth weighs nothing at all


def weighted_chunks(rng):
    """Chunks whose weights differ in scale from chunk to chunk, the first of which disagrees with the rest
    (its targets are shifted by 5): how far it pulls the fit depends on its weight relative to the others."""
    X, y = make_problem(rng)
    slices = split(len(X))
    y[slices[0]] += 5.0
    w = np.concatenate([s * rng.uniform(0.5, 2, size=sl.stop - sl.start) for s, sl in zip(SCALES, slices)])
    return X, y, w, slices


@pytest.mark.parametrize("params", [
    {"solver": "adam", "schedule": "linear"},  # learning_rate="auto": its sampling pass totals the weights
    {"solver": "sgd", "learning_rate": 0.01, "shuffle": False},  # the first chunk's weights ask for one read
])
def test_stream_weights_are_normalised_by_the_stream_mean(rng, replay, params):
    X, y, w, slices = weighted_chunks(rng)
    chunks = chunks_of(slices, X, y, w)
    chunks[-1] = chunks[-1][:2]  # a chunk without weights counts as unit weights
    params = {**params, "random_state": 3, "max_epochs": 3, "tol": None}
    est = LinearRegressor(**params).fit_stream(chunks)
    orders = list(itertools.islice(chunk_orders(3, len(chunks), params.get("shuffle", True)), 3))
    expected = replay(params, est.learning_rate_, chunks, orders)[-1]  # every chunk over the stream's mean
    np.testing.assert_array_equal(est.coef_, expected.coef_)
    np.testing.assert_array_equal(est.intercept_, expected.intercept_)
    # partial_fit's per-call rule is another fit, and refuses the all-zero chunk the stream passes through.
    with pytest.raises(ValueError, match="at least one non-zero"):
        replay(params, est.learning_rate_, chunks, orders, weights="chunk")


def test_stream_weights_keep_their_scale_across_chunks(rng, replay):
    # What the constant changes: a streamed fit minimises fit's weighted objective on all rows, not the one
    # where every chunk weighs as much per row as any other (which dividing each chunk by its mean gives).
    X, y, w, slices = weighted_chunks(rng)
    chunks = chunks_of(slices, X, y, w)
    per_chunk_w = np.concatenate([w[s] / w[s].mean() if w[s].any() else w[s] for s in slices])
    optimum = LinearRegressor().fit(X, y, sample_weight=w).intercept_
    per_chunk_optimum = LinearRegressor().fit(X, y, sample_weight=per_chunk_w).intercept_
    assert optimum - per_chunk_optimum > 3
    params = {"solver": "sgd", "learning_rate": 0.01, "schedule": "linear", "end_factor": 0.001, "max_epochs": 20,
              "tol": None, "random_state": 1}
    streamed = LinearRegressor(**params).fit_stream(chunks)
    assert abs(streamed.intercept_ - optimum) < 0.5
    orders = [[i for i in order if SCALES[i]] for order in itertools.islice(chunk_orders(1, len(chunks)), 20)]
    per_chunk = replay(params, 0.01, chunks, orders, weights="chunk")[-1]
    assert abs(per_chunk.intercept_ - per_chunk_optimum) < 0.5


def test_stream_early_stopping_with_weights_scaled_by_chunk(rng, replay):
    X, y, w, slices = weighted_chunks(rng)
    chunks = chunks_of(slices, X, y, w)
    params = {"solver": "sgd", "learning_rate": 0.03, "max_epochs": 30, "tol": 1e-3, "n_iter_no_change": 2,
              "early_stopping": True, "validation_fraction": 0.2, "random_state": 5}
    est = LinearRegressor(**params).fit_stream(chunks)
    # The mean weight is that of the training rows left after each chunk's split.
    best, last, scores = in_memory_early_stopping(
        params, chunks, itertools.islice(chunk_orders(5, len(chunks)), 30), replay)
    assert est.n_iter_ == len(scores) < 30 and np.argmax(scores) < len(scores) - 1
    np.testing.assert_allclose(est.validation_scores_, scores, rtol=1e-12)
    np.testing.assert_array_equal(est.coef_, best.coef_)
    assert est.t_ == last.t_


def test_stream_with_no_training_weight_is_an_error(rng):
    X, y = make_problem(rng, n=100)
    zero = [(X[:50], y[:50], np.zeros(50)), (X[50:], y[50:], np.zeros(50))]
    for rate in ("auto", 0.01):
        with pytest.raises(ValueError, match="sample_weight sums to zero over the training rows of all chunks"):
            LinearRegressor("sgd", learning_rate=rate).fit_stream(zero)
    # Weight on held-out rows only trains nothing either.
    held_out = np.zeros(50)
    held_out[chunk_split(0, 0, 50, 0.2)[1]] = 1.0
    with pytest.raises(ValueError, match="sums to zero over the training rows"):
        LinearRegressor("sgd", early_stopping=True, validation_fraction=0.2, random_state=0).fit_stream(
            [(X[:50], y[:50], held_out), zero[1]])
    with pytest.raises(ValueError, match=r"training rows of chunk 0 \(a one-shot stream is normalised by its first"):
        LinearRegressor("sgd", max_epochs=1).fit_stream(iter(zero))


def test_one_shot_stream_is_normalised_by_its_first_chunk(rng, replay):
    X, y, w, slices = weighted_chunks(rng)
    chunks = chunks_of(slices, X, y, w)
    params = {"solver": "sgd", "learning_rate": 0.01, "max_epochs": 1, "tol": None, "random_state": 0}
    est = LinearRegressor(**params).fit_stream(iter(chunks))
    first_mean = np.sum(w[slices[0]]) / len(w[slices[0]])
    expected = replay(params, 0.01, chunks, [range(len(chunks))], weights=first_mean)[-1]
    np.testing.assert_array_equal(est.coef_, expected.coef_)


def test_stream_weights_cost_no_read_without_weights(rng):
    X, y, w, slices = weighted_chunks(rng)
    reads = []

    def reader(items):
        def chunks():
            reads.append(1)
            return iter(items)
        return chunks

    def count(items, **params):
        reads.clear()
        LinearRegressor("sgd", max_epochs=2, tol=None, random_state=0, **params).fit_stream(reader(items))
        return len(reads)

    weighted, unweighted = chunks_of(slices, X, y, w), chunks_of(slices, X, y)
    assert count(unweighted, learning_rate=0.01) == 2  # the first chunk has no weights: nothing more is read
    assert count(weighted, learning_rate=0.01) == 3  # one read of the weights
    assert count(weighted) == 3  # learning_rate="auto": its sampling pass totals them
    with pytest.raises(ValueError, match="chunk 1 has sample_weight but chunk 0, the stream's first chunk, has none"):
        count([unweighted[0], *weighted[1:]], learning_rate=0.01)


# ---------------------------------------------------------------- early stopping on held-out rows of each chunk


def in_memory_early_stopping(params, chunks, orders, replay):
    """What a streamed fit with early stopping must give, computed the in-memory way: the replayed epochs on
    each chunk's training rows, scored by scikit-learn's r2_score on all held-out rows, under fit's rule."""
    from sklearn.metrics import r2_score

    fraction = params.get("validation_fraction", 0.1)
    split_of = functools.partial(chunk_split, params["random_state"], validation_fraction=fraction)
    val = [split_of(i, len(c[0]))[1] for i, c in enumerate(chunks)]
    X_val, y_val, w_val = (np.concatenate([c[j][v] for c, v in zip(chunks, val)]) for j in range(3))
    epochs = replay(params, params["learning_rate"], chunks, orders, lambda i, n: split_of(i, n)[0])
    # the rule judges rounds of whole epochs of at least ROUND_STEPS steps, by their mean
    steps = sum(-(-len(split_of(i, len(c[0]))[0]) // params.get("batch_size", 64)) for i, c in enumerate(chunks))
    per = _iterative.epochs_per_round(steps)
    scores, best, stalled, total = [], np.inf, 0, 0.0
    for est in epochs:
        scores.append(r2_score(y_val, est.predict(X_val), sample_weight=w_val))
        total += 1.0 - scores[-1]
        if len(scores) % per:
            continue
        current, total = total / per, 0.0
        stalled = stalled + 1 if current > best - params["tol"] else 0
        best = min(best, current)
        if stalled >= params["n_iter_no_change"]:
            break
    return epochs[int(np.argmax(scores))], epochs[len(scores) - 1], scores


def test_stream_early_stopping_is_fits_rule_on_held_out_rows(rng, replay):
    X, y = make_problem(rng, n=3_000)
    y[::7] += 3 * rng.standard_normal(len(y[::7]))  # noisy targets: the validation score peaks and stalls
    w = rng.uniform(0.2, 2, size=len(X))
    w[::11] = 0.0
    slices = split(len(X), sizes=(700, 900, 1, 650))
    chunks = chunks_of(slices, X, y, w)
    params = {"solver": "sgd", "learning_rate": 0.1, "schedule": "linear", "max_epochs": 40, "tol": 1e-4,
              "n_iter_no_change": 3, "early_stopping": True, "validation_fraction": 0.2, "random_state": 4}
    est = LinearRegressor(**params).fit_stream(chunks)
    best, last, scores = in_memory_early_stopping(
        params, chunks, itertools.islice(chunk_orders(4, len(chunks)), 40), replay)
    assert est.n_iter_ == len(scores) < 40
    assert np.argmax(scores) < len(scores) - 1  # so restoring the best epoch matters
    assert len(est.loss_curve_) == len(est.validation_scores_) == est.n_iter_
    np.testing.assert_allclose(est.validation_scores_, scores, rtol=1e-12)
    assert est.best_validation_score_ == max(est.validation_scores_)
    # The best epoch's coefficients are restored; the optimizer stopped after the stopping epoch (the extra
    # sweep that scored it is undone).
    np.testing.assert_array_equal(est.coef_, best.coef_)
    np.testing.assert_array_equal(est.intercept_, best.intercept_)
    assert est.t_ == last.t_


def test_stream_early_stopping_without_tol_runs_every_epoch(rng):
    X, y = make_problem(rng)
    chunks = chunks_of(split(len(X)), X, y)
    params = {"solver": "adam", "max_epochs": 3, "tol": None, "early_stopping": True, "random_state": 0}
    est = LinearRegressor(**params).fit_stream(chunks)
    assert est.n_iter_ == len(est.validation_scores_) == 3 and est.validation_scores_[-1] > 0.5
    again = LinearRegressor(**params).fit_stream(chunks)  # deterministic for a given random_state
    np.testing.assert_array_equal(again.coef_, est.coef_)
    assert again.validation_scores_ == est.validation_scores_
    with pytest.raises(ValueError, match="0 held-out row"):
        LinearRegressor(**params).fit_stream([(X[i : i + 1], y[i : i + 1]) for i in range(5)])
    # one held-out row in all: its R^2 is undefined (NaN in memory), so this is refused as in memory
    with pytest.raises(ValueError, match="1 held-out row.*at least two"):
        LinearRegressor(**params).fit_stream([(X[:10], y[:10])] + [(X[i : i + 1], y[i : i + 1]) for i in range(5)])


@pytest.mark.parametrize("how", ["fit", "fit_stream"])
def test_early_stopping_without_tol_keeps_the_best_epoch(how):
    # tol=None ran every epoch but returned the last epoch's coefficients, while best_validation_score_ (and the
    # docstring) reported the best one's as kept.
    rng = np.random.RandomState(9)
    X = rng.randn(400, 30)
    y = X @ rng.randn(30) * 0.3 + 2.0 * rng.randn(400)
    params = {"solver": "sgd", "early_stopping": True, "validation_fraction": 0.25, "random_state": 0, "tol": None,
              "learning_rate": 0.05, "schedule": "constant"}

    def fitted(epochs):
        est = LinearRegressor(**params, max_epochs=epochs)
        return est.fit(X, y) if how == "fit" else est.fit_stream([(X[:200], y[:200]), (X[200:], y[200:])])

    est = fitted(30)
    best = int(np.argmax(est.validation_scores_)) + 1
    assert est.n_iter_ == 30 and best < 30  # (the case: a best epoch before the last)
    np.testing.assert_array_equal(est.coef_, fitted(best).coef_)


def test_chunk_split_is_seeded_per_chunk():
    train, val = chunk_split(3, 2, 101, 0.1)
    assert len(val) == 11 and len(train) == 90 and np.union1d(train, val).tolist() == list(range(101))
    np.testing.assert_array_equal(chunk_split(3, 2, 101, 0.1)[1], val)
    assert not np.array_equal(chunk_split(3, 1, 101, 0.1)[1], val)
    assert chunk_split(3, 0, 1, 0.1)[1].size == 0  # a one-row chunk only trains


def test_stream_refit_starts_over(rng):
    X, y = make_problem(rng)
    items = chunks_of(split(len(X)), X, y)
    params = {"solver": "sgd", "random_state": 2, "max_epochs": 2, "tol": None}
    est = LinearRegressor(**params).fit_stream(items)
    first = est.coef_.copy()
    np.testing.assert_array_equal(est.fit_stream(items).coef_, first)


def test_stream_bad_chunks_are_named(rng):
    X, y = make_problem(rng)
    bad_nan = X[500:].copy()
    bad_nan[3, 1] = np.inf
    cases = [
        ([(X[:500], y[:500]), (X[500:, :4], y[500:])], ValueError, r"chunk 1: X has 4 features"),
        ([(X[:500], y[:500]), (bad_nan, y[500:])], ValueError, r"chunk 1: Input X contains infinity"),
        ([(X[:500], y[:500]), (X[500:], y[501:])], ValueError, r"chunk 1: Found input variables with inconsistent"),
        ([(X[:500], y[:500]), (X[500:], np.c_[y[500:], y[500:]])], ValueError, r"chunk 1: y has 2 targets"),
        ([(X[:500], y[:500]), (X[500:].astype(np.float32), y[500:])], TypeError, r"chunk 1 is float32"),
        ([(X[:500], y[:500]), X[500:]], TypeError, r"chunk 1 is a ndarray"),
        ([], ValueError, "empty"),
    ]
    pd = pytest.importorskip("pandas")
    frame, frame32 = pd.DataFrame(X[:500]).add_prefix("x"), pd.DataFrame(X[500:].astype(np.float32)).add_prefix("x")
    # DataFrames by their columns' common type, which validation casts to (it was left to the iterative kernels,
    # whose typed buffers raised "Buffer dtype mismatch"); float32 beside bool columns stays float32
    cases += [([(frame, y[:500]), (frame32, y[500:])], TypeError, r"chunk 1 is float32 but the stream started"),
              ([(frame32.assign(flag=True), y[500:]), (frame.assign(flag=True), y[:500])], TypeError,
               r"chunk 1 is float64 but the stream started with float32")]
    for chunks, error, message in cases:
        with pytest.raises(error, match=message):
            LinearRegressor().fit_stream(chunks)
        with pytest.raises(error, match=message):
            LinearRegressor("sgd", max_epochs=1, shuffle=False).fit_stream(chunks)


@pytest.mark.parametrize("solver", ["sgd", "momentum", "adam"])
@pytest.mark.parametrize("rows", [1, 4])
def test_stream_of_chunks_smaller_than_a_minibatch_takes_their_rate(solver, rows):
    # A minibatch never spans chunks, and a chunk's last one is padded to batch_size: SGD's and momentum's steps
    # are then at most those of 64 rows, so their rate is the in-memory rate for 64; Adam's steps do not shrink
    # with the gradient, so its rate is the in-memory rate for batch_size=rows (to rounding: the same sample, summed
    # in another order). Two epochs (a stream of one-row chunks costs about 2 s an epoch in Python).
    rng = np.random.RandomState(0)
    X = rng.randn(2000, 20)
    y = X @ rng.randn(20) + 0.1 * rng.randn(2000)
    chunks = [(X[i : i + rows], y[i : i + rows]) for i in range(0, 2000, rows)]
    batch_size = rows if solver == "adam" else 64
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # two epochs: what is tested is the rate and that it does not diverge
        streamed = LinearRegressor(solver=solver, random_state=0, max_epochs=2).fit_stream(chunks)
        in_memory = LinearRegressor(solver=solver, random_state=0, max_epochs=2, batch_size=batch_size).fit(X, y)
    assert streamed.learning_rate_ == pytest.approx(in_memory.learning_rate_, rel=1e-12)
    assert streamed.score(X, y) > 0.995


@pytest.mark.parametrize("solver", ["auto", "qr", "lsqr", "sgd"])
def test_stream_of_lists_fits_as_arrays(solver, rng):
    # Chunks of Python lists are validated as fit's are (the closed form read X.shape of the raw chunk first).
    X, y = make_problem(rng, n=600)
    chunks = [(X[:300].tolist(), y[:300].tolist()), (X[300:].tolist(), y[300:].tolist())]
    kw = dict(solver=solver, random_state=0, max_epochs=3)
    listed = LinearRegressor(**kw).fit_stream(chunks)
    arrays = LinearRegressor(**kw).fit_stream([(X[:300], y[:300]), (X[300:], y[300:])])
    np.testing.assert_array_equal(listed.coef_, arrays.coef_)


def test_a_one_shot_stream_too_wide_for_the_gram_says_what_runs_instead(monkeypatch, rng):
    # The closed form's MemoryError said to use a solver whose cost follows the nonzeros; on a one-shot stream the
    # Krylov solvers cannot run and SGD's default epochs raised next: the error names both ways out, which work.
    import scipy.sparse as sp

    from fastopt import _sparse

    d = 2000
    chunks = []
    for _ in range(3):
        X = sp.random_array((400, d), density=0.01, format="csr", rng=rng)
        chunks.append((X, X @ rng.normal(size=d) + rng.normal(size=400)))
    monkeypatch.setattr(_sparse, "available_memory", lambda: 8 * d * d)  # the Gram's (d + 1)^2 cannot fit
    with pytest.raises(MemoryError, match="one-shot iterator.*solver='auto' runs LSQR or CG.*solver='sgd' and "
                                          "max_epochs=1"):
        LinearRegressor().fit_stream(iter(chunks))
    assert LinearRegressor().fit_stream(lambda: iter(chunks)).solver_ in ("lsqr", "cg")
    assert LinearRegressor(solver="sgd", max_epochs=1, tol=None).fit_stream(iter(chunks)).n_iter_ == 1
    with pytest.raises(MemoryError) as caught:  # a re-readable stream's error is the closed form's own
        LinearRegressor(solver="normal").fit_stream(chunks)
    assert "one-shot" not in str(caught.value)

    monkeypatch.undo()  # (memory enough for the Gram from here)

    def loading():  # a source's own MemoryError (loading a file) is its own: it was advised on solvers
        yield chunks[0]
        raise MemoryError("cannot load part 2")

    with pytest.raises(MemoryError) as caught:
        LinearRegressor(solver="normal").fit_stream(loading())
    assert str(caught.value) == "cannot load part 2"


@pytest.mark.parametrize("sparse", [False, True])
def test_auto_on_a_stream_reads_its_first_chunk_once_to_choose(sparse, monkeypatch, rng):
    # The choice of solver and of a Krylov solver first share one extra read of the first chunk (a callable
    # stream may load it from disk): it had been read twice.
    import scipy.sparse as sp

    from fastopt import _streaming

    X = rng.normal(size=(600, 5))
    y = X @ np.arange(5.0) + rng.normal(size=600)
    data = sp.csr_array(X) if sparse else X
    chunks = [(data[:300], y[:300]), (data[300:], y[300:])]
    reads = []
    first_chunk_x = _streaming._first_chunk_x
    monkeypatch.setattr(_streaming, "_first_chunk_x", lambda source: reads.append(1) or first_chunk_x(source))
    est = LinearRegressor().fit_stream(lambda: iter(chunks))
    assert len(reads) == 1
    np.testing.assert_allclose(est.coef_, LinearRegressor().fit(data, y).coef_, rtol=1e-6, atol=1e-8)


def test_stream_and_dask_check_each_target_at_its_own_scale():
    # As in memory (test_convergence.py): the plateau check over a stream's (or Dask blocks') passes judges each
    # target at its own scale, from one more pass a target for its best constant model's loss; it was the sum's.
    X, Y = two_scale_targets()
    n, d = X.shape
    chunks = [(X[i : i + 1000], Y[i : i + 1000]) for i in range(0, n, 1000)]
    with pytest.warns(fastopt.exceptions.ConvergenceWarning, match="objective of target 0 is still at least"):
        LinearRegressor(solver="rmsprop", random_state=0).fit_stream(chunks)
    dask = pytest.importorskip("dask")
    import dask.array as da
    with dask.config.set(scheduler="synchronous"), pytest.warns(fastopt.exceptions.ConvergenceWarning,
                                                                  match="of target 0"):
        LinearRegressor(solver="rmsprop", random_state=0).fit(da.from_array(X, chunks=(1000, d)),
                                                              da.from_array(Y, chunks=(1000, 2)))


def test_a_warm_stream_of_other_features_or_targets_starts_cold_and_sets_the_names(rng):
    # A warm iterative fit_stream checked its first chunk against the earlier fit: another feature or target count
    # was refused ("earlier chunks had 1" at chunk 0), and a DataFrame stream after an array fit kept no names. As
    # in memory, the stream now sets the names, continues where the shapes match and starts cold where they do not.
    pd = pytest.importorskip("pandas")
    X = rng.normal(size=(80, 3))
    Y = X @ rng.normal(size=(3, 2)) + 1.0
    y = Y[:, 0]

    def warm():
        return LinearRegressor(solver="sgd", max_epochs=3, tol=None, random_state=0, warm_start=True).fit(X, y)

    est = warm()
    t = est.t_
    est.fit_stream([(pd.DataFrame(X, columns=list("abc")), y)])
    assert list(est.feature_names_in_) == list("abc") and est.t_ > t  # same shapes: continued
    assert warm().fit_stream([(X, Y)]).coef_.shape == (2, 3)
    cold = warm().fit_stream([(X[:, :2], y)])
    fresh = LinearRegressor(solver="sgd", max_epochs=3, tol=None, random_state=0).fit_stream([(X[:, :2], y)])
    np.testing.assert_array_equal(cold.coef_, fresh.coef_)
    assert cold.n_features_in_ == 2


@pytest.mark.parametrize("solver", ["adam", "adamw"])
def test_sparse_mode_lazy_streams_dense_chunks_as_fit_takes_them(solver):
    """SparseAdam mode steps dense chunks as CSR; its stream map was made from the dense sample (centring
    mostly-zero columns), which the chunks as CSR then refused ("fitted on dense X ... would densify X")."""
    rng = np.random.default_rng(0)
    X = rng.standard_normal((64, 8)) * (rng.random((64, 8)) < 0.1)
    y = X @ np.arange(1.0, 9.0) + 1.0 + 0.1 * rng.standard_normal(64)
    params = dict(solver=solver, sparse_mode="lazy", random_state=3, max_epochs=20, tol=None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", fastopt.exceptions.ConvergenceWarning)
        dense = LinearRegressor(**params).fit_stream([(X[:32], y[:32]), (X[32:], y[32:])])
        csr = LinearRegressor(**params).fit_stream([(sp.csr_array(X[:32]), y[:32]), (sp.csr_array(X[32:]), y[32:])])
    np.testing.assert_array_equal(dense.coef_, csr.coef_)
    assert dense.intercept_ == csr.intercept_


def test_a_per_target_alpha_no_solver_takes_on_chunks_is_said_so():
    # With a robust loss on a stream, "auto" took Adam, whose error advised solver='newton', which a stream refuses
    # in turn ("cannot fit incrementally ... e.g. solver='adam'"): a circle. Now the error says no solver takes it.
    rng = np.random.default_rng(0)
    X = rng.normal(size=(400, 5))
    Y = X @ rng.normal(size=(5, 2)) + rng.standard_t(2, size=(400, 2))
    chunks = [(X[:200], Y[:200]), (X[200:], Y[200:])]
    with pytest.raises(ValueError, match="which no solver takes with loss='huber' on a stream of chunks"):
        LinearRegressor(loss="huber", alpha=np.array([0.0, 0.3])).fit_stream(chunks)
    with pytest.raises(ValueError, match="with loss='squared_error' on a stream of chunks a per-target alpha array "
                                         "needs solver='cg' or 'lsqr' or 'normal' or 'qr'"):
        LinearRegressor(solver="sgd", alpha=np.array([0.0, 0.3])).fit_stream(chunks)


@pytest.mark.parametrize("solver", ["sgd", "adam"])
def test_the_auto_rate_and_map_passes_over_dense_rows_hold_blocks_not_the_rows(solver):
    # README, out of core: beyond X, an epoch holds a few vectors of length n, plus the auto rate's sample of
    # AUTO_ROWS rows (twice: as given and in float64 with the intercept's column) and passes over blocks of at
    # most CHUNK_VALUES values. The map's moments, the mean loss and the adaptive rate's size of terms took blocks
    # of 65,536 rows whatever d, several temporaries at a time (|X| whole; 65,536 x 200 rows: 105 MB each, more
    # than a mapped X of 70,000 such rows): 39-44 MB here, for X of 38 MB.
    rng = np.random.default_rng(0)
    n, d = 120_000, 40
    X = rng.normal(size=(n, d))
    y = X @ rng.normal(size=d)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # one epoch: not converged
        LinearRegressor(solver=solver, max_epochs=1).fit(X[:500], y[:500])  # imports and first-call caches
        tracemalloc.start()
        try:
            LinearRegressor(solver=solver, max_epochs=1, random_state=0).fit(X, y)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    sample = _iterative_lr.AUTO_ROWS * (d + 1) * 8
    assert peak <= 2 * sample + 2**20 * 8 + 4 * n * 8  # (CHUNK_VALUES float64 values)


@pytest.mark.parametrize("change", ["chunks", "rows", "targets", "columns"])
@pytest.mark.parametrize("solver", ["lsqr", "cg", "sgd", "adam", "qr"])
def test_a_stream_whose_later_reads_differ_is_refused(change, solver):
    # A callable read once per pass (files another process rewrites): the Krylov solvers took the moments from the
    # first read and iterated on the later ones, a least-squares fit of neither, silently (0.04 from the fit of all
    # rows); 2-D targets on later reads gave a 1-D coef_; SGD and Adam fitted 3 columns at a rate taken on 4.
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 4))
    y = X @ rng.normal(size=4) + 3 + rng.normal(size=200)
    reads = []

    def source():
        reads.append(None)
        if len(reads) == 1:
            return iter([(X[:100], y[:100]), (X[100:], y[100:])])
        Z, Y = (X[:, :3] if change == "columns" else X), (np.c_[y, -y] if change == "targets" else y)
        if change == "chunks":
            return iter([(Z[:100], Y[:100])])
        return iter([(Z[:100], Y[:100]), (Z[100:150] if change == "rows" else Z[100:],
                                          Y[100:150] if change == "rows" else Y[100:])])

    # solver="qr" reads once (the closed form): nothing to compare, so it fits
    est = LinearRegressor(solver=solver, max_epochs=3, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # three epochs: not converged
        if solver == "qr":
            est.fit_stream(source)
            assert len(reads) == 1
            return
        with pytest.raises(ValueError, match="must yield the same chunks on every read"):
            est.fit_stream(source)
    assert len(reads) >= 2 and not hasattr(est, "coef_")


def test_mappings_series_and_missing_arrays_as_chunks():
    # A dict was indexed by position (a bare KeyError: 0), so was a sliced pandas Series of chunks (its [] reads
    # labels); a chunk (None, y) ended in len(None)'s TypeError, naming no chunk.
    pd = pytest.importorskip("pandas")
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 4))
    y = X @ rng.normal(size=4) + 3
    chunks = [(X[:100], y[:100]), (X[100:200], y[100:200]), (X[200:], y[200:])]
    with pytest.raises(TypeError, match="chunks is a dict, a mapping; pass its chunks as a sequence"):
        LinearRegressor().fit_stream({"part-0": chunks[0], "part-1": chunks[1]})
    sliced = LinearRegressor().fit_stream(pd.Series([*chunks, None])[1:3])
    np.testing.assert_allclose(sliced.coef_, LinearRegressor().fit(X[100:], y[100:]).coef_, rtol=1e-12)
    for bad, name in [((None, y[:10]), "X"), ((X[:10], None), "y")]:
        with pytest.raises(TypeError, match=f"chunk 1 has {name} = None"):
            LinearRegressor().fit_stream([chunks[0], bad])


@pytest.mark.parametrize("solver", ["lsqr", "sgd"])
def test_nullable_float_chunks_count_in_the_streams_precision(solver):
    # pandas' "Float64" columns skipped the precision check: after float32 chunks they were fitted in float32,
    # silently, and before them the stream was fitted in float64.
    pd = pytest.importorskip("pandas")
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 4))
    y = X @ rng.normal(size=4) + 3
    f32 = (pd.DataFrame(X[:100].astype(np.float32), columns=list("abcd")), y[:100])
    ext = (pd.DataFrame(X[100:], columns=list("abcd")).astype("Float64"), y[100:])
    for chunks, (first, later) in [([f32, ext], ("float32", "float64")), ([ext, f32], ("float64", "float32"))]:
        with pytest.raises(TypeError, match=f"chunk 1 is {later} but the stream started with {first}"):
            LinearRegressor(solver=solver, max_epochs=2, random_state=0).fit_stream(chunks)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # two epochs: not converged
        fitted = LinearRegressor(solver=solver, max_epochs=2, random_state=0).fit_stream([ext, ext])
        # "Float32" columns too are fitted in float64, as validation converts them: beside float64 chunks
        ext32 = (ext[0].astype("Float32"), ext[1])
        mixed = LinearRegressor(solver=solver, max_epochs=2, random_state=0).fit_stream([ext32, (X[:100], y[:100])])
    assert fitted.coef_.dtype == np.float64 and mixed.coef_.dtype == np.float64


@pytest.mark.parametrize("lr", ["auto", 1e-3, 1e-6])
def test_a_heavy_row_in_a_later_chunk_is_no_divergence(lr):
    # The divergence limit came from the first chunk's all-zero loss, whose rows, divided by the stream's mean
    # weight, weigh 1e-9 beside a later row of weight 1e12: that chunk's minibatch loss passed 1e10 times it at
    # any rate, and the DivergenceError advised a smaller rate; fit on the same rows succeeds. A real divergence
    # in a later chunk is still one.
    rng = np.random.default_rng(1)
    X = rng.standard_normal((384, 3))
    y = X @ np.array([1.0, -2.0, 3.0]) + 0.5 + rng.standard_normal(384)
    y[137] += 10
    w = np.ones(384)
    w[137] = 1e12
    chunks = [(X[i : i + 128], y[i : i + 128], w[i : i + 128]) for i in range(0, 384, 128)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # five epochs: not converged
        LinearRegressor(solver="sgd", random_state=0, learning_rate=lr, max_epochs=5).fit_stream(chunks)
        with pytest.raises(fastopt.exceptions.DivergenceError):
            LinearRegressor(solver="sgd", random_state=0, learning_rate=1e3, max_epochs=5).fit_stream(chunks)


def test_a_dask_chunk_of_unknown_rows_is_the_same_chunk_on_every_read():
    # A callable yielding Dask chunks filtered by a mask: (nan, 3) rows, a new NaN each read, and NaN != NaN
    # refused the chunk for differing from itself on the second read.
    da = pytest.importorskip("dask.array")
    rng = np.random.default_rng(0)
    A = da.from_array(rng.normal(size=(200, 3)), chunks=100)
    b = A @ np.array([1.0, -2.0, 3.0])
    keep = A[:, 0] > -5  # every row, of unknown count to Dask

    def source():
        return iter([(A[keep], b[keep])])

    import dask
    with dask.config.set(scheduler="synchronous"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fitted = LinearRegressor(solver="lsqr").fit_stream(source)
    np.testing.assert_allclose(fitted.coef_, [1.0, -2.0, 3.0], atol=1e-6)


@pytest.mark.parametrize("loss", ["huber", "absolute_error"])
def test_a_far_outlier_in_a_later_chunk_is_no_divergence(loss):
    # A robust loss fits past a far outlier, wherever it lies; in a stream's last chunk (or a later partial_fit
    # call) its minibatch loss passed 1e10 times the first chunk's all-zero loss, a DivergenceError blaming the
    # rate, where the same outlier in the first chunk fitted.
    rng = np.random.default_rng(0)
    X = rng.normal(size=(2000, 5))
    y = X @ rng.normal(size=5) + rng.normal(size=2000)
    y[1995] = 1e14
    chunks = [(X[i : i + 500], y[i : i + 500]) for i in range(0, 2000, 500)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        LinearRegressor(loss=loss, random_state=0).fit_stream(chunks)
        est = LinearRegressor(loss=loss, random_state=0)
        for _ in range(5):
            for Xc, yc in chunks:
                est.partial_fit(Xc, yc)


def test_one_calls_large_target_leaves_later_calls_divergence_seen():
    # A call's own all-zero loss raises the divergence limit for that call only: kept, one target of 1e6 in the
    # first call left later clean calls at an unstable rate diverging to coefficients of 7e9 without an error.
    rng = np.random.default_rng(0)
    est = LinearRegressor(solver="sgd", learning_rate=2.2, schedule="constant", random_state=0)
    with pytest.raises(fastopt.exceptions.DivergenceError):
        for call in range(60):
            X = rng.normal(size=(64, 3))
            y = X @ np.array([1.0, 2.0, 3.0]) + 0.1 * rng.normal(size=64)
            if call == 1:
                y[0] = 1e6
            est.partial_fit(X, y)


def test_a_first_call_of_zero_targets_leaves_divergence_seen():
    # A first call (or chunk) of all-zero targets has a loss of 0 and set no divergence limit: later calls at an
    # unstable rate returned coefficients of 1e48 (a stream: 1e91) without an error.
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 3))
    clean = [(X, X @ np.array([1.0, 2.0, 3.0]) + 0.1 * rng.normal(size=200)) for _ in range(6)]
    est = LinearRegressor(solver="sgd", learning_rate=1e-3, schedule="constant", random_state=0)
    est.partial_fit(X, np.zeros(200))
    est.set_params(learning_rate=100.0)
    with pytest.raises(fastopt.exceptions.DivergenceError):
        for Xc, yc in clean:
            est.partial_fit(Xc, yc)
    with pytest.raises(fastopt.exceptions.DivergenceError):
        LinearRegressor(solver="sgd", learning_rate=100.0, schedule="constant", shuffle=False, max_epochs=3,
                        random_state=0).fit_stream([(X, np.zeros(200)), *clean])


def test_early_stopping_on_chunks_too_small_to_split_says_so():
    # Chunks of 3 rows at validation_fraction=0.9 hold out nothing (a chunk keeps a training row); the error spoke
    # of sample weights the stream does not have and advised a larger fraction, which can never help
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 3))
    y = X @ np.array([1.0, 2.0, 3.0])
    chunks = [(X[i : i + 3], y[i : i + 3]) for i in range(0, 60, 3)]
    with pytest.raises(ValueError, match="0 held-out row.*none where that would leave it no training row"):
        LinearRegressor(solver="sgd", early_stopping=True, validation_fraction=0.9, random_state=0).fit_stream(chunks)
    LinearRegressor(solver="sgd", early_stopping=True, validation_fraction=0.5, random_state=0,
                    max_epochs=2, tol=None).fit_stream(chunks)


@pytest.mark.parametrize("solver", ["sgd", "momentum", "adam"])
def test_small_chunks_among_large_ones_weigh_their_rows_as_the_others(solver):
    # A chunk ends on a short minibatch, padded to batch_size: each row weighs 1 / batch_size in its step. The
    # short minibatch's mean had taken a full step, so the rows of 2- to 7-row chunks between 150-row ones weighed up
    # to 32 times the others' every epoch: a biased fixed point, 0.8-1% above the optimum and silent (SGD, momentum
    # and Adam alike); now within 1e-4 (2.6e-5 to 8.2e-5). The same stream on Dask, blocks of the same rows.
    rng = np.random.default_rng(0)
    n, d = 2000, 5
    X = rng.standard_normal((n, d))
    y = X @ rng.standard_normal(d) + 0.5 * rng.standard_normal(n) + 3
    sizes = np.resize([150, 2, 7, 3, 5, 4], 80)  # 11 chunks of 150 rows, 55 of 2-7 and one of 119
    edges = np.minimum(np.cumsum([0, *sizes]), n)
    chunks = [(X[a:b], y[a:b]) for a, b in itertools.pairwise(edges.tolist()) if b > a]
    A = np.c_[X, np.ones(n)]
    optimum = np.mean((A @ np.linalg.lstsq(A, y, rcond=None)[0] - y) ** 2)

    def excess(est):
        return np.mean((X @ est.coef_ + est.intercept_ - y) ** 2) / optimum - 1

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # and no warning: the stream converges
        est = LinearRegressor(solver=solver, random_state=0).fit_stream(chunks)
    assert excess(est) < 2e-4
    da = pytest.importorskip("dask.array")
    import dask

    blocks = tuple(int(b - a) for a, b in itertools.pairwise(edges.tolist()) if b > a)
    with dask.config.set(scheduler="synchronous"):
        on_dask = LinearRegressor(solver=solver, random_state=0).fit(da.from_array(X, chunks=(blocks, d)),
                                                                    da.from_array(y, chunks=(blocks,)))
    assert excess(on_dask) < 2e-4


@pytest.mark.parametrize("solver", ["adagrad", "adam", "sgd"])
def test_a_warm_stream_on_shifted_targets_recentres_its_intercepts(monkeypatch, solver):
    # As a warm start in memory: the first chunk's pass moves the intercepts to its residuals' mean where that
    # halves their mean square. Warm-started on y + 100 sd, Adam had ended 0.2 and AdaGrad 81 times the optimal
    # objective above it (streams and Dask alike), warned only to raise max_epochs; targets near the earlier
    # fit's move nothing.
    from fastopt import _iterative

    rng = np.random.default_rng(0)
    X = rng.normal(size=(800, 6)) * rng.uniform(0.5, 3, 6) + rng.normal(size=6)
    y = X @ rng.normal(size=6) + 3 + 0.5 * rng.normal(size=800)
    y2 = y + 100 * y.std()
    A = np.c_[X, np.ones(800)]
    optimum = np.mean((A @ np.linalg.lstsq(A, y2, rcond=None)[0] - y2) ** 2)

    def chunks(targets):
        return [(X[i : i + 200], targets[i : i + 200]) for i in range(0, 800, 200)]

    est = LinearRegressor(solver=solver, random_state=0, warm_start=True).fit_stream(chunks(y))
    with warnings.catch_warnings():
        warnings.simplefilter("error", fastopt.exceptions.ConvergenceWarning)
        est.fit_stream(chunks(y2))
    assert np.mean((est.predict(X) - y2) ** 2) / optimum - 1 < 1e-3
    da = pytest.importorskip("dask.array")
    import dask

    with dask.config.set(scheduler="synchronous"):
        on_dask = LinearRegressor(solver=solver, random_state=0, warm_start=True)
        dX = da.from_array(X, chunks=(200, 6))
        on_dask.fit(dX, da.from_array(y, chunks=200)).fit(dX, da.from_array(y2, chunks=200))
    np.testing.assert_array_equal(on_dask.coef_, est.coef_)
    near = y + 0.01 * y.std()
    moved = LinearRegressor(solver=solver, random_state=0, warm_start=True).fit_stream(chunks(y))
    moved.fit_stream(chunks(near))
    monkeypatch.setattr(_iterative, "_recentre_intercepts", lambda *args: None)
    kept = LinearRegressor(solver=solver, random_state=0, warm_start=True).fit_stream(chunks(y))
    kept.fit_stream(chunks(near))
    np.testing.assert_array_equal(moved.coef_, kept.coef_)


def test_checking_a_chunk_reads_no_earlier_chunks_layouts():
    # check_layout rebuilt a dict over every chunk seen so far for each chunk it checked: a pass over m chunks
    # cost O(m**2) (20,000 one-row chunks: 106 s for one SGD epoch, 8.7 s now)
    class Counting(dict):
        scans = 0

        def items(self):
            Counting.scans += 1
            return super().items()

        def values(self):
            Counting.scans += 1
            return super().values()

        def __iter__(self):
            Counting.scans += 1
            return super().__iter__()

    X, y = np.zeros((1, 3)), np.zeros(1)
    source = ChunkSource([(X, y)] * 50)
    source.layouts = Counting()
    for i in range(50):
        source.check_layout(i, f"chunk {i}", X, y)
    assert Counting.scans == 0
    with pytest.raises(ValueError, match="chunk 50 has targets of shape .* but chunk 0 had targets of shape"):
        source.check_layout(50, "chunk 50", X, y.reshape(-1, 1))


@pytest.mark.parametrize("first_weighted", [False, True])
def test_a_sequence_with_some_weighted_chunks_is_judged_by_its_first_chunk_whatever_the_order(first_weighted):
    # The shuffled order's first chunk decided whether the stream was weighted: with chunk 0 unweighted, seeds
    # 0-4 and 7 fitted (unit weights for it) and seeds 5, 6, 8-11 refused the same chunks
    rng = np.random.default_rng(0)
    X, y, w = rng.standard_normal((900, 3)), rng.standard_normal(900), rng.uniform(0.5, 2.0, 900)
    chunks = [(X[i:i + 300], y[i:i + 300], w[i:i + 300]) for i in (0, 300, 600)]
    if not first_weighted:
        chunks[0] = chunks[0][:2]
    else:
        chunks[2] = chunks[2][:2]
    outcomes = set()
    for seed in range(12):
        est = LinearRegressor("sgd", learning_rate=0.01, random_state=seed, max_epochs=2, tol=None)
        try:
            est.fit_stream(chunks)
            outcomes.add("fitted")
        except ValueError as exc:
            assert "chunk 0, the stream's first chunk, has none" in str(exc)
            outcomes.add("refused")
    assert outcomes == ({"fitted"} if first_weighted else {"refused"})


@pytest.mark.parametrize("returned", [5, {"a": 1}, "ab"])
def test_a_callable_returning_no_iterable_of_chunks_is_named(returned):
    # enumerate's bare "'int' object is not iterable" named neither chunks nor the callable
    with pytest.raises(TypeError, match=f"must return an iterable of chunks; it returned {type(returned).__name__}"):
        LinearRegressor().fit_stream(lambda: returned)


@pytest.mark.parametrize("solver", ["sgd", "momentum", "adam"])
@pytest.mark.parametrize("csr", [False, True])
def test_small_chunks_under_a_ridge_weigh_it_as_their_rows(solver, csr):
    # A chunk's short last minibatch is padded (each row weighs 1 / batch_size), and its ridge now weighs its rows
    # over batch_size too. With the full ridge on every padded step, 16-row chunks minimised the ridge of 4 alpha
    # (the coefficients 0.19 from ridge(alpha)'s and 2e-3 from ridge(4 alpha)'s, the objective 23% above its
    # optimum; silent under a named schedule), streams and Dask alike. Each weight's own decay (alpha under the
    # default column scaling of CSR rows) is scaled the same way.
    rng = np.random.default_rng(0)
    n, d, alpha = 400, 5, 0.05
    X = rng.normal(size=(n, d))
    y = X @ rng.normal(size=d) + 2.0 + 0.3 * rng.normal(size=n)
    ridge = LinearRegressor(solver="normal", alpha=alpha).fit(X, y)

    def objective(est):
        return 0.5 * np.mean((X @ est.coef_ + est.intercept_ - y) ** 2) + 0.5 * alpha * est.coef_ @ est.coef_

    rows = sp.csr_array(X) if csr else X
    chunks = [(rows[i : i + 16], y[i : i + 16]) for i in range(0, n, 16)]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # and no warning: the stream converges
        est = LinearRegressor(solver=solver, alpha=alpha, random_state=0).fit_stream(chunks)
    assert objective(est) / objective(ridge) - 1 < 2e-4  # (in memory the same fits end 2e-5 to 8e-5 above)
    np.testing.assert_allclose(est.coef_, ridge.coef_, atol=1e-2)  # (ridge(4 alpha)'s are 0.19 away)
    if csr:
        return
    da = pytest.importorskip("dask.array")
    import dask

    with dask.config.set(scheduler="synchronous"):
        on_dask = LinearRegressor(solver=solver, alpha=alpha, random_state=0).fit(da.from_array(X, chunks=(16, d)),
                                                                                 da.from_array(y, chunks=16))
    np.testing.assert_array_equal(on_dask.coef_, est.coef_)  # (the same chunks, the same steps)
