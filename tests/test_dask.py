"""Fitting and predicting on Dask collections, on a real two-process dask.distributed LocalCluster."""
import contextlib
import itertools
import warnings

import numpy as np
import pytest

dask = pytest.importorskip("dask")
da = pytest.importorskip("dask.array")
distributed = pytest.importorskip("distributed")

from fastopt import LinearRegressor  # noqa: E402
from fastopt._chunks import chunk_orders  # noqa: E402
from fastopt.exceptions import ConvergenceWarning, RankDeficientWarning  # noqa: E402

RTOL = 1e-10  # closed form: only the summation order differs from the in-memory fit


@pytest.fixture(scope="module")
def client():
    """One cluster for the module: two worker processes, so states really cross process boundaries. Without
    work stealing, which may move a task with loose worker restrictions (a block, a pass) to an idle worker:
    placement is then exactly fastopt's and testable."""
    with dask.config.set({"distributed.scheduler.work-stealing": False}), distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None, worker_dashboard_address=None
    ) as cluster, distributed.Client(cluster) as client:
        yield client


def make_problem(rng, n=3_000, d=6, k=None, dtype=np.float64):
    X = rng.normal(size=(n, d)).astype(dtype)
    coef = rng.normal(size=(d,) if k is None else (d, k))
    y = (X @ coef + 0.5 + 0.1 * rng.normal(size=(n,) if k is None else (n, k))).astype(dtype)
    return X, y


ROWS = (700, 900, 1, 650, 749)  # uneven, with a one-row block


def blocks(a, rows=ROWS):
    return da.from_array(a, chunks=(rows, *a.shape[1:]))


def assert_close(a, b, rtol=RTOL):
    np.testing.assert_allclose(a, b, rtol=rtol, atol=rtol * np.max(np.abs(b)))


# ---------------------------------------------------------------- closed form


@pytest.mark.parametrize(
    "params, k, weighted",
    [
        ({}, None, False),
        ({}, None, True),
        ({"fit_intercept": False}, 3, True),
        ({"alpha": 2.5}, 2, False),
        ({"solver": "qr"}, None, True),
    ],
)
def test_closed_form_matches_in_memory(client, rng, params, k, weighted):
    X, y = make_problem(rng, k=k)
    w = rng.uniform(0, 3, size=len(X)) if weighted else None
    expected = LinearRegressor(**params).fit(X, y, sample_weight=w)
    est = LinearRegressor(**params).fit(blocks(X), blocks(y), sample_weight=None if w is None else blocks(w))
    assert_close(est.coef_, expected.coef_)
    assert_close(est.intercept_, expected.intercept_)
    assert est.solver_ == expected.solver_
    assert est.n_features_in_ == X.shape[1]


def test_closed_form_rechunks_columns_and_aligns_targets(client, rng):
    X, y = make_problem(rng)
    expected = LinearRegressor().fit(X, y)
    # X split over columns too, y chunked differently, weights as NumPy: all aligned to X's row blocks.
    est = LinearRegressor().fit(da.from_array(X, chunks=(500, 4)), da.from_array(y, chunks=800), np.ones(len(X)))
    assert_close(est.coef_, expected.coef_)


def test_closed_form_float32(client, rng):
    X, y = make_problem(rng, dtype=np.float32)
    expected = LinearRegressor().fit(X, y)
    est = LinearRegressor().fit(blocks(X), blocks(y))
    assert est.coef_.dtype == np.float32
    assert_close(est.coef_, expected.coef_, rtol=20 * np.finfo(np.float32).eps)


def test_closed_form_partial_fit_merges_on_the_cluster(client, rng):
    X, y = make_problem(rng)
    expected = LinearRegressor().fit(X, y)
    est = LinearRegressor().partial_fit(blocks(X[:1000], (400, 600)), blocks(y[:1000], (400, 600)))
    est.partial_fit(blocks(X[1000:], (2000,)), blocks(y[1000:], (2000,)))
    assert_close(est.coef_, expected.coef_)


def test_ill_conditioned_takes_the_qr_path_on_the_cluster(client):
    # A degree-9 polynomial design: Cholesky on the normal equations loses everything here.
    t = np.linspace(0, 1, 3_000)
    X = np.vander(t, 10, increasing=True)[:, 1:]
    y = X @ np.arange(1.0, 10.0) + 1.0
    with warnings.catch_warnings(record=True) as in_memory:
        warnings.simplefilter("always")
        expected = LinearRegressor().fit(X, y)
    with warnings.catch_warnings(record=True) as on_cluster:
        warnings.simplefilter("always")
        est = LinearRegressor().fit(blocks(X), blocks(y))
    assert expected.solver_ != "cholesky"
    assert est.solver_ == expected.solver_
    assert {type(w.message) for w in on_cluster} == {type(w.message) for w in in_memory}
    assert_close(est.coef_, expected.coef_, rtol=1e-6)


def test_dataframe_input(client, rng):
    pd = pytest.importorskip("pandas")
    dd = pytest.importorskip("dask.dataframe")
    X, y = make_problem(rng)
    frame = pd.DataFrame(X, columns=[f"f{i}" for i in range(X.shape[1])]).assign(target=y)
    expected = LinearRegressor().fit(frame.drop(columns="target"), frame["target"])
    ddf = dd.from_pandas(frame, npartitions=4)
    est = LinearRegressor().fit(ddf.drop(columns="target"), ddf["target"])
    assert_close(est.coef_, expected.coef_)
    assert list(est.feature_names_in_) == list(expected.feature_names_in_)
    pred = est.predict(ddf.drop(columns="target"))
    assert isinstance(pred, da.Array)
    assert_close(pred.compute(), expected.predict(frame.drop(columns="target")))


# ---------------------------------------------------------------- iterative solvers


def test_incremental_wrapper_with_the_closed_form(client, rng):
    Incremental = pytest.importorskip("dask_ml.wrappers").Incremental
    X, y = make_problem(rng)
    # The closed form's partial_fit merges exactly, so dask-ml's block sweep gives the one-fit answer.
    even = (1000, 1000, 1000)  # no block with fewer rows than features: each partial_fit is well-posed
    inc = Incremental(LinearRegressor(), shuffle_blocks=True, random_state=0).fit(blocks(X, even), blocks(y, even))
    assert_close(inc.coef_, LinearRegressor().fit(X, y).coef_)
    pred = inc.predict(blocks(X))
    assert isinstance(pred, da.Array)
    assert_close(pred.compute(), inc.estimator_.predict(X))


# ---------------------------------------------------------------- iterative solvers


def row_chunks(*arrays, rows=ROWS):
    """The in-memory row blocks of ``arrays`` that ``blocks(a, rows)`` makes."""
    edges = np.cumsum((0, *rows))
    return [tuple(a[edges[i] : edges[i + 1]] for a in arrays) for i in range(len(rows))]


def seeded_orders(params, n_epochs):
    """The block orders a Dask fit with ``params`` draws (fastopt._chunks.chunk_orders)."""
    return itertools.islice(chunk_orders(params["random_state"], len(ROWS), params.get("shuffle", True)), n_epochs)


@pytest.mark.parametrize("solver, schedule", [("sgd", "linear"), ("adam", "cosine")])
def test_iterative_is_the_chunked_partial_fit_sequence(client, rng, replay, solver, schedule):
    X, y = make_problem(rng)
    params = {"solver": solver, "random_state": 3, "max_epochs": 4, "tol": None, "schedule": schedule}
    est = LinearRegressor(**params).fit(blocks(X), blocks(y))
    assert est.n_iter_ == 4 and len(est.loss_curve_) == 4
    # learning_rate="auto" from a seeded sample of every block, drawn on the workers: only its rows travel,
    # and it is the sample (hence the rate) of the same blocks streamed from the client.
    streamed = LinearRegressor(**{**params, "max_epochs": 1}).fit_stream(row_chunks(X, y))
    assert est.learning_rate_ == streamed.learning_rate_
    expected = replay(params, est.learning_rate_, row_chunks(X, y), seeded_orders(params, 4))[-1]
    np.testing.assert_array_equal(est.coef_, expected.coef_)
    np.testing.assert_array_equal(est.intercept_, expected.intercept_)


def test_iterative_stops_when_the_epoch_loss_stalls(client, rng):
    X, y = make_problem(rng)
    est = LinearRegressor("sgd", random_state=0, max_epochs=200, tol=1e-3, n_iter_no_change=2).fit(blocks(X), blocks(y))
    assert 3 <= est.n_iter_ < 200
    assert len(est.loss_curve_) == est.n_iter_
    assert est.loss_curve_[-1] < est.loss_curve_[0]
    with pytest.warns(ConvergenceWarning, match="max_epochs=2"):
        LinearRegressor("sgd", random_state=0, max_epochs=2, tol=1e-12).fit(blocks(X), blocks(y))


def test_early_stopping_on_the_cluster(client, rng):
    X, y = make_problem(rng)
    y[::7] += 3 * rng.standard_normal(len(y[::7]))
    w = rng.uniform(0.2, 2, size=len(X))
    params = {"solver": "sgd", "learning_rate": 0.1, "max_epochs": 30, "tol": 1e-4, "n_iter_no_change": 2,
              "early_stopping": True, "validation_fraction": 0.2, "random_state": 4}
    est = LinearRegressor(**params).fit(blocks(X), blocks(y), sample_weight=blocks(w))
    assert est.n_iter_ < 30 and len(est.validation_scores_) == len(est.loss_curve_) == est.n_iter_
    assert est.best_validation_score_ == max(est.validation_scores_) > 0.5
    # The same held-out rows, rule and restored coefficients as streaming the blocks from the client (whose
    # equality with fit's rule on an in-memory replay tests/test_out_of_core.py checks).
    local = LinearRegressor(**params).fit_stream(row_chunks(X, y, w))
    np.testing.assert_array_equal(est.coef_, local.coef_)
    assert est.validation_scores_ == local.validation_scores_ and est.t_ == local.t_


@pytest.mark.parametrize("learning_rate, dask_weights", [("auto", False), (0.01, True)])
def test_weights_scaled_by_block_as_the_local_stream(client, rng, learning_rate, dask_weights):
    # Every block is divided by the mean weight of all training rows: totalled by the learning-rate sample,
    # or (numeric rate) by a reduction of the weight blocks alone, on the workers, in the exact sum that
    # streaming the same blocks from the client totals, so the fits agree bit for bit.
    X, y = make_problem(rng)
    w = np.concatenate([s * rng.uniform(0.5, 2, size=n) for s, n in zip((10.0, 0.1, 1.0, 0.0, 1.0), ROWS)])
    params = {"solver": "sgd", "learning_rate": learning_rate, "max_epochs": 2, "tol": None, "random_state": 3}
    est = LinearRegressor(**params).fit(blocks(X), blocks(y), sample_weight=blocks(w) if dask_weights else w)
    local = LinearRegressor(**params).fit_stream(row_chunks(X, y, w))
    assert est.learning_rate_ == local.learning_rate_
    np.testing.assert_array_equal(est.coef_, local.coef_)
    np.testing.assert_array_equal(est.intercept_, local.intercept_)
    if dask_weights:
        with pytest.raises(ValueError, match="sums to zero over the training rows of all chunks"):
            LinearRegressor(**params).fit(blocks(X), blocks(y), sample_weight=blocks(np.zeros(len(X))))


def test_incremental_wrapper_with_an_iterative_solver(client, rng, replay):
    Incremental = pytest.importorskip("dask_ml.wrappers").Incremental
    X, y = make_problem(rng)
    # One partial_fit pass per block, in dask-ml's order (here: in order), run on the workers.
    params = {"solver": "sgd", "random_state": 1, "learning_rate": 0.01}
    inc = Incremental(LinearRegressor(**params), shuffle_blocks=False).fit(blocks(X), blocks(y))
    np.testing.assert_array_equal(inc.coef_, replay(params, 0.01, row_chunks(X, y), [range(len(ROWS))],
                                                    weights="chunk")[-1].coef_)  # (public partial_fit: unpadded)


# ---------------------------------------------------------------- predict


def test_predict_is_lazy(client, rng):
    X, y = make_problem(rng, k=2)
    est = LinearRegressor().fit(X, y)

    def explode(block):
        raise AssertionError("predict computed its input")

    untouchable = blocks(X).map_blocks(explode, dtype=X.dtype)
    pred = est.predict(untouchable)
    assert isinstance(pred, da.Array) and pred.shape == (len(X), 2)
    assert_close(est.predict(blocks(X)).compute(), est.predict(X))


def test_a_feature_names_warning_comes_once_a_call_not_once_a_block():
    # Checked once on the collection's metadata; the blocks' own checks repeated it: score on an array after a
    # frame's fit, and predict or score on a frame after an array's fit, warned 9 times over 8 blocks. (In this
    # thread, so that the blocks' warnings are seen: a cluster's workers warn in their own.)
    import dask

    dd = pytest.importorskip("dask.dataframe")
    pd = pytest.importorskip("pandas")
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.normal(size=(400, 3)), columns=list("abc"))
    y = frame.a + 1
    arrays = (da.from_array(frame.to_numpy(), chunks=(50, 3)), da.from_array(y.to_numpy(), chunks=50))
    frames = (dd.from_pandas(frame, npartitions=8), dd.from_pandas(y, npartitions=8))
    for fitted, (X, Y) in [(LinearRegressor().fit(frame, y), arrays),
                           (LinearRegressor().fit(frame.to_numpy(), y.to_numpy()), frames)]:
        for call in (lambda e, X, Y: e.predict(X).compute(), lambda e, X, Y: e.score(X, Y)):
            with warnings.catch_warnings(record=True) as caught, dask.config.set(scheduler="synchronous"):
                warnings.simplefilter("always")
                call(fitted, X, Y)
            assert len([w for w in caught if "feature names" in str(w.message)]) == 1
        np.testing.assert_allclose(fitted.predict(X).compute(), fitted.predict(frame.to_numpy()), rtol=1e-12)
    # partial_fit's blocks likewise, for each kind of solver (statistics, epochs, Krylov passes)
    for solver in ("normal", "sgd", "lsqr"):
        for first, (X, Y) in [(frame, arrays), (frame.to_numpy(), frames)]:
            est = LinearRegressor(solver=solver, random_state=0).partial_fit(first, y.to_numpy())
            with warnings.catch_warnings(record=True) as caught, dask.config.set(scheduler="synchronous"):
                warnings.simplefilter("always")
                est.partial_fit(X, Y)
            assert len([w for w in caught if "feature names" in str(w.message)]) == 1
            assert hasattr(est, "feature_names_in_") == (first is frame)  # (the first call's, as scikit-learn's)


@pytest.mark.parametrize("companion", ["bool", "int8", "float16", "int32", "Int8", "Float32"])
def test_predict_on_a_frame_of_float32_and_other_columns_declares_the_dtype_its_blocks_have(client, companion):
    # Validation casts float32 columns beside bool, int8 or float16 ones to float32 (their common type, as
    # scikit-learn does); the lazy result declared float64 unless every column was float32. pandas' nullable
    # dtypes and wider integers go to float64.
    dd = pytest.importorskip("dask.dataframe")
    pd = pytest.importorskip("pandas")
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.normal(size=(100, 2)).astype(np.float32), columns=["a", "b"])
    frame["c"] = (frame.a > 0).astype(companion)
    y = (frame.a + frame.b).astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RankDeficientWarning)  # (c is a function of a; any design will do)
        est = LinearRegressor().fit(frame, y)
    pred = est.predict(dd.from_pandas(frame, npartitions=2))
    assert pred.dtype == pred.compute().dtype == est.predict(frame).dtype


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_predict_on_a_dataframe_declares_its_targets_and_dtype(client, rng, dtype):
    # A frame's lazy result takes its shape and dtype from meta: a multi-target model declared (nan, 0) (p[:, 1]
    # raised IndexError), and float32 columns were declared float64 while the blocks computed float32.
    dd = pytest.importorskip("dask.dataframe")
    pd = pytest.importorskip("pandas")
    X, y = make_problem(rng, k=2, dtype=dtype)
    frame = pd.DataFrame(X, columns=[f"f{j}" for j in range(X.shape[1])])
    est = LinearRegressor().fit(frame, y)
    pred = est.predict(dd.from_pandas(frame, npartitions=3))
    assert pred.shape[1] == 2 and pred.dtype == dtype
    computed = pred.compute()
    assert computed.dtype == dtype
    np.testing.assert_array_equal(pred[:, 1].compute(), est.predict(frame)[:, 1])


@pytest.mark.parametrize("chunksize", [130, 150])
@pytest.mark.parametrize("solver", ["normal", "sgd"])
def test_frames_of_other_partitions_beside_an_array_follow_its_row_blocks(rng, chunksize, solver):
    # y and sample_weight as Dask Series whose partitions (130 or 150 rows) were not X's blocks (100): refused
    # with a count of blocks, or, at the same count, a block's "inconsistent numbers of samples: [100, 10]"
    dd = pytest.importorskip("dask.dataframe")
    pd = pytest.importorskip("pandas")
    X, y = make_problem(rng, n=400, d=4)
    w = 10.0 ** rng.uniform(-1, 1, 400)
    with dask.config.set(scheduler="synchronous"):
        est = LinearRegressor(solver=solver, random_state=0, max_epochs=3, tol=None)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)  # (three epochs)
            series = est.fit(blocks(X, 100), dd.from_pandas(pd.Series(y), chunksize=chunksize, sort=False),
                             sample_weight=dd.from_pandas(pd.Series(w), chunksize=chunksize, sort=False)).coef_
            arrays = est.fit(blocks(X, 100), blocks(y, 100), sample_weight=blocks(w, 100)).coef_
    np.testing.assert_array_equal(series, arrays)


@pytest.mark.parametrize("k", [None, 2])
def test_score_on_dask_collections_equals_the_score_in_memory(client, rng, k):
    # scikit-learn's score asks len() of a Dask DataFrame (unknown row counts): "Cannot call len() on object with
    # unknown chunk size", where fit and predict work. Now computed block by block (R^2 as r2_score).
    dd = pytest.importorskip("dask.dataframe")
    pd = pytest.importorskip("pandas")
    X, y = make_problem(rng, k=k)
    w = rng.uniform(0.1, 2.0, size=len(X))
    frame = pd.DataFrame(X, columns=[f"f{j}" for j in range(X.shape[1])])
    est = LinearRegressor().fit(frame, y)
    Y = pd.DataFrame(y) if k else pd.Series(y)
    dX, dY = dd.from_pandas(frame, npartitions=4), dd.from_pandas(Y, npartitions=4)
    assert est.score(dX, dY) == pytest.approx(est.score(frame, y), rel=1e-12)
    dW = dd.from_pandas(pd.Series(w), npartitions=4)
    assert est.score(dX, dY, sample_weight=dW) == pytest.approx(est.score(frame, y, sample_weight=w), rel=1e-12)
    plain = LinearRegressor().fit(X, y)
    assert plain.score(blocks(X), blocks(y)) == pytest.approx(plain.score(X, y), rel=1e-12)


def test_a_list_y_beside_dask_x_is_an_array_like(client, rng):
    # (y.ndim ended in an AttributeError; in memory a list y fits)
    X, y = make_problem(rng)
    assert_close(LinearRegressor().fit(blocks(X), list(y)).coef_, LinearRegressor().fit(X, y).coef_)


def test_a_per_target_alpha_of_the_wrong_length_is_refused_before_any_block(client, rng):
    # the target count is y's metadata: the error came after every block had been computed
    X, y = make_problem(rng, k=2)
    computed = []

    def counted(block):
        computed.append(block.shape[0])  # (Dask calls it once on an empty block for its metadata)
        return block

    dX = blocks(X).map_blocks(counted, dtype=X.dtype)
    with pytest.raises(ValueError, match=r"one value per target, shape \(2,\)"):
        LinearRegressor(alpha=[1.0, 2.0, 3.0]).fit(dX, blocks(y))
    assert not any(computed)


@pytest.mark.parametrize("solver", ["lsqr", "cg", "normal", "sgd"])
def test_partial_fit_refuses_another_target_count_before_any_block(client, rng, solver):
    # helper-139: after calls on two targets, a Krylov partial_fit on one refitted on it alone, silently (coef_
    # became (1, d)), where in memory and for the other solvers it is an error; the count is y's metadata, so it
    # is checked before any block is computed.
    X, Y = make_problem(rng, k=2)
    est = LinearRegressor(solver=solver, random_state=0, max_epochs=2, tol=None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # (a Krylov call refits on its own rows: warned, as documented)
        est.partial_fit(blocks(X), blocks(Y))
    coef = est.coef_.copy()
    computed = []

    def counted(block):
        computed.append(block.shape[0])  # (Dask calls it once on an empty block for its metadata)
        return block

    for y in (Y[:, 0], Y[:, :1]):
        with pytest.raises(ValueError, match=r"y has 1 target; the earlier fit or partial_fit calls had 2"):
            est.partial_fit(blocks(X).map_blocks(counted, dtype=X.dtype), blocks(y))
    assert not any(computed)
    np.testing.assert_array_equal(est.coef_, coef)


def test_predict_checks_features_eagerly(client, rng):
    X, y = make_problem(rng)
    est = LinearRegressor().fit(X, y)
    with pytest.raises(ValueError, match="features"):
        est.predict(blocks(X[:, :3]))


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize("params", [{"solver": "sgd", "learning_rate": 0.01, "max_epochs": 2},
                                    {"solver": "lsqr"}, {"loss": "huber"}], ids=["sgd", "lsqr", "newton"])
def test_a_failed_fit_leaves_nothing_in_the_workers_memory(client, rng, params):
    # The failing run's blocks were never cancelled (the pass's run, or the persisted validated blocks of the
    # Krylov and Newton fits), and the error's traceback kept their futures: X and y blocks stayed on the workers
    # after the fit, one key more each failed fit.
    import gc
    import time

    # Keys are compared as sets: an earlier test's results, released asynchronously while this one runs, leave
    # the count (which this compared) below its starting value without any key of these fits being left.
    X, y = make_problem(rng)
    X[1650, 2] = np.nan
    held = lambda: set(client.nbytes(summary=False))  # noqa: E731
    gc.collect()
    before = held()
    for _ in range(2):
        with pytest.raises(ValueError, match="Input X contains NaN"):
            LinearRegressor(**params).fit(blocks(X), blocks(y))
    gc.collect()
    deadline = time.monotonic() + 10  # (cancellation reaches the scheduler asynchronously)
    while held() - before and time.monotonic() < deadline:
        time.sleep(0.05)
    left = held() - before
    assert not left, f"{len(left)} keys left on the workers, e.g. {sorted(map(str, left))[:4]}"


def test_nan_in_a_block_names_the_block(client, rng):
    X, y = make_problem(rng)
    X[1650, 2] = np.nan  # in the fourth block (rows 1601:2251)
    with pytest.raises(ValueError, match=r"chunk 3 \(rows 1601:2251\): Input X contains NaN"):
        LinearRegressor().fit(blocks(X), blocks(y))
    with pytest.raises(ValueError, match=r"chunk 3 \(rows 1601:2251\): Input X contains NaN"):
        LinearRegressor("sgd", shuffle=False, max_epochs=1).fit(blocks(X), blocks(y))


def test_mismatched_rows_and_blocks(client, rng):
    X, y = make_problem(rng)
    with pytest.raises(ValueError, match="X has 3000 rows but y has 2999"):
        LinearRegressor().fit(blocks(X), da.from_array(y[:-1], chunks=1000))
    with pytest.raises(ValueError, match="must have 2 dimensions"):
        LinearRegressor().fit(blocks(X[:, 0]), blocks(y))


# ---------------------------------------------------------------- iterative solvers: where the passes run


def served(client):
    """Bytes each worker served since the last call, ``(to other workers, to the client)``, from the workers'
    transfer logs (a client's or scheduler's request names no worker); the logs are cleared."""
    def drain(dask_worker):
        log = list(dask_worker.transfer_outgoing_log)
        dask_worker.transfer_outgoing_log.clear()
        return [(entry["who"], entry["total"]) for entry in log]

    workers = set(client.scheduler_info()["workers"])
    entries = [e for log in client.run(drain).values() for e in log]
    return sum(n for who, n in entries if who in workers), sum(n for who, n in entries if who not in workers)


def test_iterative_passes_run_where_the_blocks_are(client, monkeypatch):
    # Blocks of 8 MB generated on the workers, y computed from X's block where it is: a pass placed anywhere but
    # on its block's worker, or a block brought to the client, would move megabytes.
    from fastopt import _dask

    X = da.random.default_rng(0).standard_normal((100_000, 40), chunks=(25_000, 40))
    y = X.map_blocks(lambda block: block @ np.linspace(-1, 1, 40) + 0.5, drop_axis=1, dtype=X.dtype)
    monkeypatch.setattr(_dask.DaskChunks, "__getitem__", lambda *a: pytest.fail("a block went to the client"))
    params = {"solver": "adam", "learning_rate": 1e-3, "max_epochs": 2, "tol": None, "random_state": 0,
              "early_stopping": True, "n_iter_no_change": 5}
    served(client)
    est = LinearRegressor(**params).fit(X, y)
    between, to_client = served(client)
    assert est.n_iter_ == 2 and len(est.validation_scores_) == 2
    # Per pass the state (41 parameters, Adam's two moments) and a few sums: about a kilobyte, against 8 MB.
    n_passes = 4 * (2 + 1)  # two epochs and the pass that scores the last one
    assert to_client < n_passes * 4096 < 0.01 * X.nbytes
    assert between < n_passes * 4096
    # Without a distributed client the local scheduler computes the blocks and the passes run here: same fit.
    with dask.config.set(scheduler="threads"):
        monkeypatch.undo()
        local = LinearRegressor(**params).fit(X, y)
    np.testing.assert_array_equal(est.coef_, local.coef_)
    assert est.validation_scores_ == local.validation_scores_


def test_iterative_partial_fit_on_the_cluster(client, rng, replay):
    X, y = make_problem(rng)
    w = rng.uniform(0.5, 2, size=len(X))
    params = {"solver": "momentum", "random_state": 2}
    est = LinearRegressor(**params).partial_fit(blocks(X), blocks(y), sample_weight=blocks(w))
    est.partial_fit(blocks(X), blocks(y), sample_weight=blocks(w))
    # Every block one public partial_fit call, weights normalised per block, auto rate from the first block.
    expected = LinearRegressor(**params)
    for _ in range(2):
        for chunk in row_chunks(X, y, w):
            expected.partial_fit(*chunk)
    np.testing.assert_array_equal(est.coef_, expected.coef_)
    assert est.loss_curve_ == expected.loss_curve_ and est.n_iter_ == expected.n_iter_ == 10
    with pytest.raises(ValueError, match="solver is now 'adam'"):
        est.set_params(solver="adam").partial_fit(blocks(X), blocks(y))


@pytest.mark.parametrize("sparse", [False, True])
def test_auto_partial_fit_of_a_robust_loss_on_the_cluster(client, rng, replay, sparse):
    # "auto" for rows in chunks, as in memory: Adam for a robust loss (SGD on sparse blocks), where it had resolved
    # to Newton, which cannot fit incrementally (a ValueError naming solver='newton').
    import scipy.sparse as sp

    X, y = make_problem(rng)
    y[::50] += 30.0
    params = {"loss": "huber", "random_state": 2}
    dX = blocks(X).map_blocks(sp.csr_matrix) if sparse else blocks(X)
    est = LinearRegressor(**params).partial_fit(dX, blocks(y))
    expected = LinearRegressor(**params)
    for chunk_X, chunk_y in row_chunks(X, y):
        expected.partial_fit(sp.csr_matrix(chunk_X) if sparse else chunk_X, chunk_y)
    assert est._solver_name == expected._solver_name == ("sgd" if sparse else "adam")
    np.testing.assert_array_equal(est.coef_, expected.coef_)


def test_iterative_warm_start_and_errors_leave_the_estimator(client, rng, replay):
    X, y = make_problem(rng)
    params = {"solver": "sgd", "learning_rate": 0.01, "random_state": 1, "max_epochs": 2, "tol": None}
    est = LinearRegressor(**params, warm_start=True).fit(blocks(X), blocks(y))
    est.fit(blocks(X), blocks(y))
    # The second fit continues the first's state: four epochs in all, as the in-memory chunked sequence.
    orders = list(seeded_orders(params, 2))
    expected = replay(params, 0.01, row_chunks(X, y), orders + orders)[-1]
    np.testing.assert_array_equal(est.coef_, expected.coef_)
    bad = X.copy()
    bad[1650, 0] = np.inf  # chunk 3: the error comes from its pass, on a worker, mid-epoch
    with pytest.raises(ValueError, match=r"chunk 3 \(rows 1601:2251\): Input X contains infinity"):
        est.fit(blocks(bad), blocks(y))
    # A fit on other shapes does not continue the state (as in memory), and a failed fit changes nothing.
    two = LinearRegressor(**params, warm_start=True).fit(blocks(X), blocks(np.c_[y, -y]))
    again = est.set_params(warm_start=False).fit(blocks(X), blocks(np.c_[y, -y]))
    np.testing.assert_array_equal(two.coef_, again.coef_)
    est = LinearRegressor(**params, warm_start=True).fit(blocks(X), blocks(y))
    before = {k: v for k, v in vars(est).items() if k.endswith("_")}
    with pytest.raises(ValueError, match=r"chunk 3 \(rows 1601:2251\): Input X contains infinity"):
        est.fit(blocks(bad), blocks(y))
    after = {k: v for k, v in vars(est).items() if k.endswith("_")}
    assert after.keys() == before.keys()
    for k, v in before.items():
        np.testing.assert_array_equal(after[k], v)


def test_a_warm_start_on_blocks_of_other_features_is_an_error(client, rng):
    # (it started afresh, silently, as in memory; SGDRegressor refuses it)
    X, y = make_problem(rng)
    est = LinearRegressor(solver="sgd", random_state=0, max_epochs=2, tol=None, warm_start=True)
    est.fit(blocks(X[:, :-1]), blocks(y))
    with pytest.raises(ValueError, match=f"X has {X.shape[1]} features, but LinearRegressor is expecting"):
        est.fit(blocks(X), blocks(y))


def test_a_plateau_stop_far_from_the_optimum_warns_on_the_cluster(client):
    """The plateau check runs on the cluster as the sweeps do (ClusterPasses.plateau_gap: each pass computes the
    blocks where they live, sums their parts in a tree there): columns far from centred, without an intercept,
    stop at a plateau about 100 times the optimal loss above it; the fit says so. A well-conditioned one does
    not."""
    from fastopt import _dask

    assert _dask.active_client() is not None  # so the sweeps run as ClusterPasses (_dask._passes)
    rng = np.random.default_rng(0)
    n, d = 3000, 12
    X = rng.normal(size=(n, d)) + rng.uniform(-1e3, 1e3, size=d)
    y = X @ rng.normal(size=d) + 0.3 * rng.normal(size=n)
    best = LinearRegressor(solver="qr", fit_intercept=False).fit(X, y)

    def loss(est):
        return 0.5 * float(np.mean((y - est.predict(X)) ** 2))

    with pytest.warns(ConvergenceWarning, match="stopped at a loss plateau") as record:
        est = LinearRegressor(solver="sgd", fit_intercept=False, random_state=0).fit(blocks(X), blocks(y))
    message = next(str(m.message) for m in record if "plateau" in str(m.message))
    bound = float(message.split("at least ")[1].split(" of its value")[0])
    assert 0.1 < bound <= 1.05 * (loss(est) - loss(best)) / loss(est)  # (printed to 2 digits)
    X, y = make_problem(rng)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        LinearRegressor(solver="sgd", random_state=0).fit(blocks(X), blocks(y))


def test_the_plateau_check_on_the_cluster_knows_its_alarm(client, alarm_scales):
    """ClusterPasses.plateau_gap hands plateau_gap the loss scale warn_if_far judges by, as the in-memory and
    streamed checks do, so a bound near the alarm takes its extra steps there too."""
    seen = alarm_scales
    X, y = make_problem(np.random.default_rng(3))
    LinearRegressor(solver="sgd", random_state=0).fit(blocks(X), blocks(y))
    assert [kind for kind, _ in seen] == ["gap", "warn"]
    assert seen[0][1] is not None and seen[0][1] == seen[1][1]


def test_the_robust_check_on_the_cluster_knows_its_alarm(client, alarm_scales):
    """ClusterPasses.robust_gap hands stream_robust_gap the loss scale warn_if_far judges by, so that its further
    rounds of reweighting run on the cluster as over a stream (where a weighted absolute-error stop is caught by
    them: tests/test_convergence.py)."""
    seen = alarm_scales
    X, y = make_problem(np.random.default_rng(3))
    LinearRegressor(solver="sgd", loss="huber", random_state=0).fit(blocks(X), blocks(y))
    assert [kind for kind, _ in seen] == ["gap", "warn"]
    assert seen[0][1] is not None and seen[0][1] == seen[1][1]


def test_a_robust_plateau_stop_far_from_the_optimum_warns_on_the_cluster(client):
    """The robust losses' reweighted check runs on the cluster too (ClusterPasses.robust_gap: every block's part
    where it lives, summed in a tree there): offset columns without an intercept stop most of the objective above
    the optimum with the absolute error, silently before (it was not checked on Dask). (Huber's loss takes the
    same passes; the streamed test covers both.)"""
    rng = np.random.default_rng(0)
    n, d = 1000, 12
    X = rng.normal(size=(n, d)) + rng.uniform(-1e3, 1e3, size=d)
    y = X @ rng.normal(size=d) + 0.3 * rng.standard_t(2, size=n)
    for loss in ("absolute_error",):
        best = LinearRegressor(solver="newton", loss=loss, fit_intercept=False).fit(X, y)

        def objective(est, loss=loss):
            a = np.abs(est.predict(X) - y)
            return float(np.mean(a if loss == "absolute_error" else np.where(a <= 1.35, 0.5 * a * a,
                                                                             1.35 * a - 0.5 * 1.35**2)))

        with pytest.warns(ConvergenceWarning, match="stopped at a loss plateau") as record:
            est = LinearRegressor(solver="sgd", loss=loss, fit_intercept=False, random_state=0).fit(
                blocks(X, 500), blocks(y, 500))  # (two blocks: each of the ~110 epochs is a round on the cluster)
        message = next(str(m.message) for m in record if "plateau" in str(m.message))
        assert "reweighted least-squares step" in message
        excess = (objective(est) - objective(best)) / objective(est)
        assert 0.5 * excess <= float(message.split("at least ")[1].split(" of its value")[0]) <= 1.05 * excess


def test_a_plateau_stop_on_small_nearly_collinear_data_warns_on_the_cluster(client):
    """80 rows of rank 3 plus 1e-3 noise in 8 columns: SGD stops about 18% above the optimum. Small data takes
    up to d + 1 steps of the check (each a pass on the cluster), which states most of it. (Minibatches of 2 rows:
    40 steps an epoch, so 18 epochs on the cluster rather than 240.)"""
    rng = np.random.default_rng(3)
    X = rng.normal(size=(80, 3)) @ rng.normal(size=(3, 8)) + 1e-3 * rng.normal(size=(80, 8))
    y = X @ rng.normal(size=8) + 0.1 * rng.normal(size=80) + 2.0
    best = LinearRegressor(solver="qr").fit(X, y)

    def loss(est):
        return 0.5 * float(np.mean((y - est.predict(X)) ** 2))

    with pytest.warns(ConvergenceWarning, match="stopped at a loss plateau") as record:
        est = LinearRegressor(solver="sgd", batch_size=2, random_state=0).fit(da.from_array(X, chunks=(40, 8)),
                                                                             da.from_array(y, chunks=40))
    message = next(str(m.message) for m in record if "plateau" in str(m.message))
    excess = (loss(est) - loss(best)) / loss(est)
    assert 0.5 * excess <= float(message.split("at least ")[1].split(" of its value")[0]) <= 1.05 * excess


# ---------------------------------------------------------------- iterative solvers: a worker lost mid-fit


def _make_die_on_computation():
    # A nested function: the worker processes cannot import this test module (pytest imports it by path, and the
    # checkout is not on their sys.path when the installed package is tested), so it must travel by value, which
    # Dask's serialisation does for functions that cannot be pickled by reference.
    def die_on_computation(block, marker, dying, block_info=None):
        """Identity on X's blocks, except that computing block 3 for the n-th time, n in ``dying``, kills the
        worker process computing it (as a crash or an out-of-memory kill would)."""
        import os

        if block_info[0]["chunk-location"][0] == 3:
            n = len(os.listdir(marker)) + 1
            open(os.path.join(marker, str(n)), "w").close()
            if n in dying:
                os._exit(1)
        return block

    return die_on_computation


die_on_computation = _make_die_on_computation()


@contextlib.contextmanager
def fragile(n_workers):
    """A cluster of its own, whose workers the test kills, where a task is given up after its second worker
    dies under it (``allowed-failures=1``) rather than the fourth. The tests do not rely on the nannies'
    restarts of killed workers: there are always workers left alive."""
    with dask.config.set({"distributed.scheduler.allowed-failures": 1}), distributed.LocalCluster(
        n_workers=n_workers, threads_per_worker=1, processes=True, dashboard_address=None,
        worker_dashboard_address=None,
    ) as cluster, distributed.Client(cluster, set_as_default=False) as client, client.as_current():
        yield client


def test_worker_lost_mid_epoch_recomputes_and_continues(rng, tmp_path):
    X, y = make_problem(rng)
    params = {"solver": "adam", "learning_rate": 0.01, "max_epochs": 3, "tol": None, "random_state": 0}
    with fragile(2):
        expected = LinearRegressor(**params).fit(blocks(X), blocks(y))
        # The second computation of block 3 is in epoch 2: its worker dies, with whatever states it held; the
        # scheduler recomputes the lost blocks and passes from the graph and the fit goes on, to the same answer.
        killing = blocks(X).map_blocks(die_on_computation, str(tmp_path), (2,), dtype=X.dtype)
        est = LinearRegressor(**params).fit(killing, blocks(y))
    assert len(list(tmp_path.iterdir())) >= 3  # died once, then computed again
    np.testing.assert_array_equal(est.coef_, expected.coef_)
    np.testing.assert_array_equal(est.intercept_, expected.intercept_)
    assert est.loss_curve_ == expected.loss_curve_ and est.t_ == expected.t_


@pytest.mark.slow  # about 11 s: a cluster of three workers, two of them killed
def test_worker_lost_for_good_fails_naming_epoch_and_block(rng, tmp_path):
    from fastopt._dask import FitLost

    X, y = make_problem(rng)
    params = {"solver": "sgd", "learning_rate": 0.01, "max_epochs": 3, "tol": None, "random_state": 0}
    with fragile(3):
        est = LinearRegressor(**params).fit(blocks(X), blocks(y))
        before = {k: v for k, v in vars(est).items() if k.endswith("_")}
        # Block 3 kills the next two workers that compute it, from epoch 2 on: the cluster gives it up.
        killing = blocks(X).map_blocks(die_on_computation, str(tmp_path), (2, 3), dtype=X.dtype)
        with pytest.raises(FitLost, match=r"epoch 2, chunk 3 \(rows 1601:2251\): the Dask cluster lost"):
            est.fit(killing, blocks(y))
    after = {k: v for k, v in vars(est).items() if k.endswith("_")}
    assert after.keys() == before.keys()
    for k, v in before.items():
        np.testing.assert_array_equal(after[k], v)


@pytest.mark.parametrize("rule", ["sgd", "adam"])
def test_iterative_fit_centres_columns_far_from_centred(client, rule):
    """The Dask fit's map comes from the seeded sample of its blocks, as a stream's: columns of means 5-50 and
    unit spread are now centred (without a shift SGD ended 4.4 times the optimal objective above it, Adam 0.44,
    warned): within 1e-3 of it (measured 1.2e-5 and 3.8e-5), silent."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(4000, 5)) + rng.uniform(5, 50, size=5)
    y = X @ rng.normal(size=5) + 0.3 * rng.normal(size=4000) + 2

    def objective(est):
        r = np.asarray(est.predict(X)) - y
        return 0.5 * float(np.mean(r * r))

    best = objective(LinearRegressor().fit(X, y))
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        est = LinearRegressor(solver=rule, random_state=0).fit(blocks(X, 1000), blocks(y, 1000))
    assert objective(est) / best - 1.0 < 1e-3


@pytest.mark.parametrize("rule", ["sgd", "adam"])
def test_iterative_fit_on_sparse_blocks_centres_offset_numeric_columns(client, rule):
    """Blocks of CSR rows (one-hot columns beside numeric ones of means -67 and -52, as a ColumnTransformer
    gives them): the seeded sample's columns that store most of its rows and sit far from centred are centred,
    as in memory. Scaled without shift, SGD and Adam ended 1.89 times the optimal objective above it; now within
    1e-3 (measured 4.5e-5 and 7.8e-5)."""
    import scipy.sparse

    rng = np.random.default_rng(0)
    cats = rng.integers(0, 7, size=(4000, 2))
    X = np.c_[(cats[:, [0]] == np.arange(7)), (cats[:, [1]] == np.arange(7)),
              rng.normal(size=(4000, 2)) * [0.8, 0.3] + [-67.0, -52.0]].astype(float)
    y = X @ rng.normal(size=X.shape[1]) + 2.0 + 0.3 * rng.normal(size=4000)

    def objective(est):
        r = np.asarray(est.predict(X)) - y
        return 0.5 * float(np.mean(r * r))

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RankDeficientWarning)  # one-hot columns beside an intercept
        best = objective(LinearRegressor(solver="qr").fit(X, y))
    Xb = da.from_array(X, chunks=(1000, X.shape[1])).map_blocks(scipy.sparse.csr_matrix)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        est = LinearRegressor(solver=rule, random_state=0).fit(Xb, blocks(y, 1000))
    assert objective(est) / best - 1.0 < 1e-3


@pytest.mark.parametrize("solver", ["auto", "lsqr", "sgd"])
def test_blocks_of_unknown_size_after_a_mask(solver, rng):
    # A boolean mask leaves the row counts unknown (nan); the blocks' labels took int(nan).
    X, y = make_problem(rng, n=800)
    dX, dy = da.from_array(X, chunks=(200, 6)), da.from_array(y, chunks=200)
    keep = dX[:, 0] > -10  # every row, but Dask cannot know
    kw = dict(solver=solver, random_state=0, max_epochs=3)
    with dask.config.set(scheduler="synchronous"):
        masked = LinearRegressor(**kw).fit(dX[keep], dy[keep])
        known = LinearRegressor(**kw).fit(dX, dy)
    np.testing.assert_array_equal(masked.coef_, known.coef_)


@pytest.mark.parametrize("options", [{"learning_rate": 0.01}, {"warm_start": True}])
def test_weighted_blocks_of_unknown_size_after_a_mask(options, rng):
    # The blocks' training weights were reduced with their row counts, nan after a mask: a numeric rate or a warm
    # start raised "'float' object cannot be interpreted as an integer"
    X, y = make_problem(rng, n=800)
    w = rng.uniform(0.5, 1.5, size=800)
    dX, dy, dw = da.from_array(X, chunks=(200, 6)), da.from_array(y, chunks=200), da.from_array(w, chunks=200)
    keep = dX[:, 0] > -10  # every row, but Dask cannot know
    kw = dict(solver="sgd", random_state=0, max_epochs=3, **options)
    with dask.config.set(scheduler="synchronous"):
        masked, known = LinearRegressor(**kw), LinearRegressor(**kw)
        for _ in range(2 if options.get("warm_start") else 1):
            masked.fit(dX[keep], dy[keep], dw[keep])
            known.fit(dX, dy, dw)
    np.testing.assert_array_equal(masked.coef_, known.coef_)


@pytest.mark.parametrize("solver", ["auto", "sgd"])
def test_blocks_known_to_be_empty_are_skipped(solver, rng):
    X, y = make_problem(rng, n=600)
    kw = dict(solver=solver, random_state=0, max_epochs=3)
    with dask.config.set(scheduler="synchronous"):
        holed = LinearRegressor(**kw).fit(da.from_array(X, chunks=((0, 300, 0, 300), 6)),
                                          da.from_array(y, chunks=((0, 300, 0, 300),)))
        plain = LinearRegressor(**kw).fit(da.from_array(X, chunks=(300, 6)), da.from_array(y, chunks=300))
    np.testing.assert_array_equal(holed.coef_, plain.coef_)


def test_an_empty_partition_of_unknown_size_is_named_with_the_way_out(rng):
    pd = pytest.importorskip("pandas")
    dd = pytest.importorskip("dask.dataframe")
    X, y = make_problem(rng, n=60, d=3)
    frame = pd.DataFrame(X, columns=list("abc")).assign(y=y)
    # the first partition emptied by a filter, sizes unknown to Dask
    filtered = dd.from_pandas(frame, npartitions=3).map_partitions(lambda p: p[p.index >= 20])
    with dask.config.set(scheduler="synchronous"):
        with pytest.raises(ValueError, match=r"chunk 0 has no rows.*to_dask_array\(lengths=True\)"):
            LinearRegressor().fit(filtered[["a", "b", "c"]], filtered["y"])
        est = LinearRegressor().fit(filtered[["a", "b", "c"]].to_dask_array(lengths=True),
                                    filtered["y"].to_dask_array(lengths=True))
    ref = LinearRegressor().fit(X[20:], y[20:])
    np.testing.assert_allclose(est.coef_, ref.coef_, rtol=1e-12)


@pytest.mark.parametrize("solver", ["lsqr", "cg"])
def test_krylov_partial_fit_on_dask_refits_the_call_as_in_memory(solver, rng):
    # As in memory: each call refits its own rows from the previous coefficients (the state was handed to the
    # iterative sweeps, which raised AttributeError).
    X, y = make_problem(rng, n=800)
    kw = dict(solver=solver, alpha=1e-3 if solver == "cg" else 0.0, tol=1e-10)
    with dask.config.set(scheduler="synchronous"):
        on_dask = LinearRegressor(**kw)
        on_dask.partial_fit(da.from_array(X[:400], chunks=(100, 6)), da.from_array(y[:400], chunks=100))
        with pytest.warns(UserWarning, match="refits them alone"):  # (as in memory)
            on_dask.partial_fit(da.from_array(X[400:], chunks=(100, 6)), da.from_array(y[400:], chunks=100))
    with pytest.warns(UserWarning, match="refits them alone"):
        in_memory = LinearRegressor(**kw).partial_fit(X[:400], y[:400]).partial_fit(X[400:], y[400:])
    np.testing.assert_allclose(on_dask.coef_, in_memory.coef_, rtol=1e-9)
    assert on_dask.solver_ == solver


def test_complex_blocks_get_the_in_memory_error(rng):
    X, y = make_problem(rng, n=100)
    with pytest.raises(ValueError, match="[Cc]omplex"):
        LinearRegressor().fit(X.astype(complex), y)
    with pytest.raises(ValueError, match="complex dtype"):
        LinearRegressor().fit(da.from_array(X.astype(complex), chunks=(50, 6)), da.from_array(y, chunks=50))


def test_partial_fit_on_dask_reports_the_average(rng):
    # The sweep's result was taken without the parameters, so Dask's partial_fit reported the last iterate where
    # in memory (and Dask's fit, and fit_stream) report the average.
    X, y = make_problem(rng, n=500, d=3)
    kw = dict(solver="sgd", learning_rate=0.1, shuffle=False, precondition="none", random_state=0, average=True)
    with dask.config.set(scheduler="synchronous"):
        on_dask = LinearRegressor(**kw).partial_fit(da.from_array(X, chunks=(500, 3)), da.from_array(y, chunks=500))
    in_memory = LinearRegressor(**kw).partial_fit(X, y)
    np.testing.assert_array_equal(on_dask.coef_, in_memory.coef_)
    np.testing.assert_array_equal(on_dask.intercept_, in_memory.intercept_)


# ---------------------------------------------------------------- edges found by fuzzing


@pytest.mark.parametrize("solver", ["normal", "auto"])
def test_sparse_blocks_unpickled_unaligned_fit_on_the_cluster(client, rng, solver):
    # dask.distributed may unpickle a block's CSR arrays from a buffer at an odd offset; the kernels read with
    # typed loads, and refused them ("indptr is not aligned to its item size"). They are copied aligned. Here the
    # blocks are made unaligned where they are built, so every fit sees it, not only the ones whose blocks move.
    import scipy.sparse as sp

    def unaligned_csr(block):
        M = sp.csr_matrix(block)

        def odd(a):
            buf = bytearray(a.nbytes + 1)
            out = np.frombuffer(buf, dtype=a.dtype, offset=1, count=a.size)
            out[:] = a
            return out

        return sp.csr_matrix((odd(M.data), odd(M.indices), odd(M.indptr)), shape=M.shape)

    X, y = make_problem(rng, n=900)
    X[rng.random(X.shape) < 0.3] = 0.0
    dX = da.from_array(X, chunks=(300, 6)).map_blocks(unaligned_csr, dtype=X.dtype, meta=unaligned_csr(X[:0]))
    est = LinearRegressor(solver).fit(dX, da.from_array(y, chunks=300))
    ref = LinearRegressor(solver).fit(X, y)
    assert_close(est.coef_, ref.coef_)
    huber = LinearRegressor(solver="newton", loss="huber").fit(dX, da.from_array(y, chunks=300))
    assert_close(huber.coef_, LinearRegressor(solver="newton", loss="huber").fit(X, y).coef_, rtol=1e-8)


@pytest.mark.parametrize("k", [None, 2])
def test_predict_on_an_empty_block_returns_no_rows(rng, k):
    # fit skips a block with no rows; predict had validated it as a matrix of 0 samples and raised at compute time
    X, y = make_problem(rng, n=300, d=3, k=k)
    rows = (100, 0, 200)
    est = LinearRegressor().fit(blocks(X, rows), blocks(y, rows))
    with dask.config.set(scheduler="synchronous"):
        for A in (blocks(X, rows), blocks(X, (100, 200))[da.from_array(np.arange(300) >= 100, chunks=(100, 200))]):
            out = est.predict(A).compute()
            np.testing.assert_array_equal(out, est.predict(A.compute()))
            assert out.dtype == np.float64


def test_a_block_of_zero_weight_trains_nothing_in_newton(rng):
    # Newton's per-block statistics read a block whose weights are all zero as underflow, and raised "values
    # too small to square"
    X, y = make_problem(rng, n=300, d=3)
    w = np.ones(300)
    w[:100] = 0.0
    ref = LinearRegressor(loss="huber", solver="newton").fit(X, y, sample_weight=w)
    with dask.config.set(scheduler="synchronous"):
        est = LinearRegressor(loss="huber", solver="newton").fit(blocks(X, (100, 200)), blocks(y, (100, 200)),
                                                               sample_weight=blocks(w, (100, 200)))
    assert_close(est.coef_, ref.coef_, rtol=1e-10)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_huber_newton_on_tiny_targets_reaches_the_in_memory_minimum(rng, dtype):
    # In memory tiny targets are fitted scaled by a power of two; on Dask they were not, and at y of 1e-170 the
    # fit stopped at the least-squares start after one iteration (59% above the minimum), silently
    X, y = make_problem(rng, n=600, d=5)
    y[rng.random(600) < 0.1] += 50.0  # outliers: least squares is far from the Huber minimum
    w = 10.0 ** rng.uniform(-1, 1, 600)
    w[:20] = 0.0
    X, y = X.astype(dtype), (y * 1e-170 if dtype == np.float64 else y * 1e-30).astype(dtype)
    s = 1e-170 if dtype == np.float64 else 1e-30
    est = LinearRegressor(loss="huber", solver="newton", epsilon=1.35 * s)
    ref = est.fit(X, y, sample_weight=w)
    coef, intercept, n_iter = ref.coef_.copy(), ref.intercept_, ref.n_iter_
    with dask.config.set(scheduler="synchronous"):
        est.fit(blocks(X, (200, 200, 200)), blocks(y, (200, 200, 200)), sample_weight=blocks(w, (200, 200, 200)))
    assert n_iter > 1 and est.n_iter_ == n_iter and est.coef_.dtype == dtype
    # the same arithmetic on the same scaled rows, summed by blocks: rounding apart
    assert_close(est.coef_, coef, rtol=1e-10 if dtype == np.float64 else 1e-5)
    assert_close(est.intercept_, intercept, rtol=1e-10 if dtype == np.float64 else 1e-5)
    with dask.config.set(scheduler="synchronous"), pytest.raises(ValueError, match="epsilon=.* is too small"):
        LinearRegressor(loss="huber", solver="newton", epsilon=1e-200).fit(blocks(X, (300, 300)),
                                                                         blocks(y / s, (300, 300)))


@pytest.mark.parametrize("solver", ["auto", "sgd", "lsqr"])
def test_a_scalar_sample_weight_weighs_every_row(rng, solver):
    # as in memory (scikit-learn's _check_sample_weight); it had raised IndexError
    X, y = make_problem(rng, n=300, d=3)
    with dask.config.set(scheduler="synchronous"):
        est = LinearRegressor(solver=solver, random_state=0).fit(blocks(X, (100, 200)), blocks(y, (100, 200)),
                                                                 sample_weight=2.0)
        ref = LinearRegressor(solver=solver, random_state=0).fit(blocks(X, (100, 200)), blocks(y, (100, 200)),
                                                                 sample_weight=blocks(np.full(300, 2.0), (100, 200)))
    np.testing.assert_array_equal(est.coef_, ref.coef_)
    unknown = blocks(X, (100, 200))[da.from_array(np.arange(300) >= 50, chunks=(100, 200))]
    with pytest.raises(ValueError, match="scalar sample_weight"):
        LinearRegressor().fit(unknown, unknown[:, 0], sample_weight=2.0)


@pytest.mark.parametrize("solver", ["normal", "lsqr", "sgd"])
def test_weights_that_float32_would_flush_are_refused_by_name(rng, solver):
    # as in memory: weights of 1e-46 beside float32 blocks were cast to 0 first and blamed on weights "summing to
    # zero"
    X, y = make_problem(rng, n=300, d=3)
    X, y = X.astype(np.float32), y.astype(np.float32)
    flushed = "sample_weight has (100|200) positive"
    with dask.config.set(scheduler="synchronous"), pytest.raises(ValueError, match=flushed):
        LinearRegressor(solver=solver).fit(blocks(X, (100, 200)), blocks(y, (100, 200)),
                                           sample_weight=blocks(np.full(300, 1e-46), (100, 200)))


def test_a_random_state_instance_advances_one_draw_a_fit_as_in_memory(rng):
    X, y = make_problem(rng, n=200, d=3)
    advanced = []
    for A, b in ((X, y), (blocks(X, (100, 100)), blocks(y, (100, 100)))):
        r = np.random.RandomState(0)
        with dask.config.set(scheduler="synchronous"), pytest.warns(ConvergenceWarning):  # (2 epochs)
            LinearRegressor("sgd", random_state=r, max_epochs=2).fit(A, b)
        advanced.append(r.randint(1 << 30))
    once = np.random.RandomState(0)
    once.randint(0, 2**31 - 1)
    assert advanced == [once.randint(1 << 30)] * 2


def test_predict_on_an_array_warns_of_the_missing_feature_names_once():
    # (fitted on a DataFrame, predict on a Dask array of 4 blocks warned once on the driver and again per block)
    pd = pytest.importorskip("pandas")
    rng = np.random.default_rng(0)
    df = pd.DataFrame(rng.normal(size=(200, 3)), columns=list("abc"))
    est = LinearRegressor().fit(df, rng.normal(size=200))
    with dask.config.set(scheduler="synchronous"), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pred = est.predict(da.from_array(df.to_numpy(), chunks=(50, 3))).compute()
    assert [str(w.message) for w in caught] == [
        "X does not have valid feature names, but LinearRegressor was fitted with feature names"]
    np.testing.assert_array_equal(pred, est.predict(df))
    assert est.feature_names_in_.tolist() == ["a", "b", "c"]  # (the blocks' copy lost them, not the estimator)


def test_pydata_sparse_blocks_and_arrays_are_refused_naming_the_conversion():
    # NumPy's "no implementation found for 'numpy.iscomplexobj' on types that implement __array_function__: [COO]"
    # from the Dask check, and pydata's own RuntimeError in memory, named neither the input nor scipy.sparse
    sparse = pytest.importorskip("sparse")
    X = np.random.default_rng(0).random((200, 4))
    y = X @ np.arange(4.0)
    coo = sparse.COO.from_numpy(X)
    with pytest.raises(TypeError, match=r"X is a pydata sparse COO; .* pass X.to_scipy_sparse\(\)"):
        LinearRegressor().fit(da.from_array(coo, chunks=(50, 4)), y)
    with pytest.raises(TypeError, match=r"X is a pydata sparse COO"):
        LinearRegressor().fit(coo, y)
    with pytest.raises(TypeError, match=r"chunk 0: X is a pydata sparse COO"):
        LinearRegressor().fit_stream([(coo, y)])
    with pytest.raises(TypeError, match=r"X is a pydata sparse COO"):
        LinearRegressor().fit(X, y).predict(coo)
    blocks = da.from_array(X, chunks=(50, 4)).map_blocks(lambda b: sparse.COO.from_numpy(b).to_scipy_sparse().tocsr())
    np.testing.assert_allclose(LinearRegressor().fit(blocks, y).coef_, np.arange(4.0), atol=1e-10)
