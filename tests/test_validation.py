"""Bad input gets a clear TypeError/ValueError naming the problem, and the caller's arrays are never modified."""
import warnings

import numpy as np
import pytest
import scipy.sparse

from fastopt import LinearRegressor
from fastopt.exceptions import DivergenceError


@pytest.fixture
def Xy(rng):
    return rng.normal(size=(20, 3)), rng.normal(size=20)


def with_nonfinite(a, value):
    a = a.copy()
    a.flat[5] = value
    return a


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_nonfinite_x_y_or_weights(Xy, value):
    X, y = Xy
    with pytest.raises(ValueError, match="NaN|infinity"):
        LinearRegressor().fit(with_nonfinite(X, value), y)
    with pytest.raises(ValueError, match="NaN|infinity"):
        LinearRegressor().fit(X, with_nonfinite(y, value))
    with pytest.raises(ValueError, match="sample_weight.*(NaN|infinity)|(NaN|infinity).*sample_weight"):
        LinearRegressor().fit(X, y, sample_weight=with_nonfinite(np.ones(20), value))


@pytest.mark.parametrize("solver", ["sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adam"])
@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("sparse", [False, True])
@pytest.mark.parametrize("call", ["fit", "partial_fit"])
def test_nonfinite_x_is_named_before_any_numpy_warning(rng, solver, value, sparse, call):
    # The automatic rate's curvature spread divided inf by inf before the epoch named X: "invalid value
    # encountered in divide" came first, and under a filter of "error" (pytest -W error) it was all users saw
    X = rng.normal(size=(200, 4))
    y = X @ np.arange(1.0, 5.0)
    X = with_nonfinite(X, value)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ValueError, match="X contains (NaN|infinity)"):
            getattr(LinearRegressor(solver=solver), call)(scipy.sparse.csr_array(X) if sparse else X, y)


@pytest.mark.parametrize("solver", ["normal", "lsqr", "newton", "sgd", "adam"])
@pytest.mark.parametrize("value", [np.nan, np.inf, 6e38])
def test_a_scalar_weight_out_of_range_is_named(Xy, solver, value):
    # scikit-learn's _check_sample_weight fills a scalar in without checking it: a NaN or infinite scalar (or one
    # beyond float32 with float32 X) was blamed on "X column 0", on the learning rate, or on weights summing to zero
    X, y = Xy
    X = X.astype(np.float32) if value == 6e38 else X
    with pytest.raises(ValueError, match="sample_weight.*(NaN|infinity)"):
        LinearRegressor(solver=solver, loss="huber" if solver == "newton" else "squared_error").fit(
            X, y, sample_weight=value)


@pytest.mark.parametrize("solver, call", [(s, c) for s in ("normal", "lsqr", "newton", "sgd")
                                          for c in ("fit", "partial_fit", "fit_stream") if s != "newton" or c == "fit"])
def test_weights_that_float32_would_flush_are_refused(rng, solver, call):
    # float32 X casts the weights to float32: weights of 1e-46 became 0 or coarse subnormals, and the closed form
    # and LSQR fitted another problem silently (+21% on the asked one's objective). Only the ratios matter, so the
    # error asks for one common factor; weights that float32 would lose beside the largest one anyway still fit.
    X = rng.normal(size=(60, 3)).astype(np.float32)
    y = X @ np.array([1.0, 2.0, 3.0], dtype=np.float32)
    w = 10.0 ** rng.uniform(-1, 1, 60)
    est = LinearRegressor(solver=solver, loss="huber" if solver == "newton" else "squared_error")

    def run(weights):
        if call == "fit_stream":
            return est.fit_stream([(X[:30], y[:30], weights[:30]), (X[30:], y[30:], weights[30:])])
        return getattr(est, call)(X, y, sample_weight=weights)

    for tiny in (w * 1e-46, np.full(60, 1e-46)):  # (all flushed to 0: blamed on weights "summing to zero")
        with pytest.raises(ValueError, match="sample_weight has (60|30) positive value.*float32.*ratios"):
            run(tiny)
    with pytest.raises(ValueError, match="sample_weight contains infinity or a value too large for dtype"):
        run(w * 1e39)
    negligible = w.copy()
    negligible[:3] = 1e-45  # below float32's rounding of the largest weight: lost there whatever the cast
    assert np.isfinite(run(negligible).coef_).all()


@pytest.mark.parametrize("solver", ["normal", "sgd", "adam"])
@pytest.mark.parametrize("first_1d", [True, False])
def test_partial_fit_refuses_one_target_switching_between_1d_and_a_column(rng, solver, first_1d):
    # coef_ and predict had switched shapes with each call, silently; fit_stream refuses the same chunks
    X = rng.normal(size=(200, 3))
    y = X @ np.array([1.0, 2.0, 3.0])
    shaped = (lambda v: v) if first_1d else (lambda v: v[:, None])
    other = (lambda v: v[:, None]) if first_1d else (lambda v: v)
    est = LinearRegressor(solver=solver, random_state=0).partial_fit(X[:100], shaped(y[:100]))
    before = est.coef_.copy()
    with pytest.raises(ValueError, match="every call's y must be 1-D, or every call's 2-D"):
        est.partial_fit(X[100:], other(y[100:]))
    np.testing.assert_array_equal(est.coef_, before)
    est.partial_fit(X[100:], shaped(y[100:]))  # the same layout goes on
    assert est.coef_.shape == before.shape
    two = LinearRegressor(solver=solver, random_state=0).partial_fit(X[:100], np.c_[y[:100], y[:100]])
    with pytest.raises(ValueError):  # (another number of targets: refused as such, as before)
        two.partial_fit(X[100:], other(y[100:]))


@pytest.mark.parametrize("weight", [0, 0.0, np.float32(0)])
def test_a_scalar_weight_of_zero_in_a_later_chunk_adds_nothing(Xy, weight):
    # as an all-zero array does (partial_fit's docstring); the scalar reached NumPy's "at least 1 dimension" error
    X, y = Xy
    first = LinearRegressor(solver="normal").partial_fit(X[:10], y[:10])
    est = LinearRegressor(solver="normal").partial_fit(X[:10], y[:10]).partial_fit(X[10:], y[10:],
                                                                                   sample_weight=weight)
    np.testing.assert_array_equal(est.coef_, first.coef_)
    stream = LinearRegressor(solver="normal").fit_stream([(X[:10], y[:10]), (X[10:], y[10:], weight)])
    np.testing.assert_array_equal(stream.coef_, first.coef_)


@pytest.mark.parametrize(
    "make, error, match",
    [
        (lambda X, y: (X[:, 0], y), ValueError, "2D array"),
        (lambda X, y: (X[:0], y[:0]), ValueError, "0 sample"),
        (lambda X, y: (X[:, :0], y), ValueError, "0 feature"),
        (lambda X, y: (X, y[:-1]), ValueError, "inconsistent numbers of samples"),
        (lambda X, y: (X.astype(str).astype(object) + "a", y), ValueError, "could not convert|numeric"),
        # numbers as strings: scikit-learn's numeric validation refuses them (its float dtypes would parse them)
        (lambda X, y: (X.astype(str), y), ValueError, "dtype='numeric' is not compatible"),
        (lambda X, y: (X.astype("S24"), y), ValueError, "dtype='numeric' is not compatible"),
        (lambda X, y: (X, np.array(["a"] * 20)), ValueError, "numeric|convert"),
        (lambda X, y: (X + 1j, y), ValueError, "X has a complex dtype"),
        (lambda X, y: (X, y + 1j), ValueError, "y has a complex dtype"),
        (lambda X, y: (X, scipy.sparse.csr_matrix(y.reshape(-1, 1))), TypeError, "y is a sparse"),
        (lambda X, y: (X, y.reshape(-1, 1)[:, :0]), ValueError, "0 target|0 feature"),
    ],
    ids=["1d-X", "empty", "d=0", "n-mismatch", "strings-X", "numeric-strings-X", "bytes-X", "strings-y", "complex-X",
         "complex-y", "sparse-y", "k=0"],
)
def test_bad_arrays(Xy, make, error, match):
    X, y = make(*Xy)
    with pytest.raises(error, match=match):
        LinearRegressor().fit(X, y)


@pytest.mark.parametrize(
    "weights, error, match",
    [
        (lambda n: -np.ones(n), ValueError, "[Nn]egative"),
        (lambda n: np.zeros(n), ValueError, "non-zero|sums to zero"),
        (lambda n: np.ones(n - 1), ValueError, "sample_weight.shape|shape"),
        (lambda n: np.ones(n) + 1j, ValueError, "sample_weight has a complex dtype"),
    ],
    ids=["negative", "all-zero", "wrong-length", "complex"],
)
def test_bad_sample_weight(Xy, weights, error, match):
    X, y = Xy
    with pytest.raises(error, match=match):
        LinearRegressor().fit(X, y, sample_weight=weights(len(y)))


def test_wrong_feature_count_at_predict_and_partial_fit(Xy):
    X, y = Xy
    est = LinearRegressor().fit(X, y)
    with pytest.raises(ValueError, match="3 features"):
        est.predict(X[:, :2])
    with pytest.raises(ValueError, match="3 features"):
        LinearRegressor().partial_fit(X, y).partial_fit(X[:, :2], y)


def test_predict_refuses_strings_too(Xy):
    X, y = Xy
    with pytest.raises(ValueError, match="dtype='numeric' is not compatible"):
        LinearRegressor().fit(X, y).predict(X.astype(str))


@pytest.mark.parametrize("params", [dict(loss="huber", epsilon=10**400), dict(solver="sgd", learning_rate=10**400),
                                    dict(solver="sgd", clip_norm=10**400), dict(solver="sgd", tol=10**400),
                                    dict(solver="sgd", average=2**63), dict(solver="sgd", average=10**400)])
def test_ints_beyond_float_or_counter_range_are_parameter_errors(Xy, params):
    # scikit-learn's Interval(Real, ...) compares a Python int exactly, so 10**400 passed it and ended in
    # float()'s OverflowError inside the fit; average=2**63 in the kernel's "too large to convert to C long".
    name = next(k for k in params if k not in ("loss", "solver"))
    with pytest.raises(ValueError, match=f"The '{name}' parameter of LinearRegressor must be"):
        LinearRegressor(**params).fit(*Xy)


def test_absurd_hyperparameters(Xy):
    X, y = Xy
    with pytest.raises(ValueError, match="alpha"):
        LinearRegressor(alpha=-1.0).fit(X, y)
    with pytest.raises(ValueError, match="solver"):
        LinearRegressor(solver="cholesky").fit(X, y)
    with pytest.raises(ValueError, match="alpha must be a number, not a bool"):  # (read "finite and non-negative")
        LinearRegressor(alpha=True).fit(X, y)


@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.int64])
@pytest.mark.parametrize("solver", ["normal", "qr"])
def test_callers_arrays_are_not_modified(rng, dtype, solver):
    X = (rng.normal(size=(40, 3)) * 10).astype(dtype)
    y = (rng.normal(size=40) * 10).astype(dtype)
    w = rng.uniform(0.5, 2, size=40).astype(dtype if dtype != np.int64 else np.float64)
    copies = [a.copy() for a in (X, y, w)]
    for a in (X, y, w):
        a.flags.writeable = False  # read-only input must work, and a write would raise
    est = LinearRegressor(solver=solver).fit(X, y, sample_weight=w)
    est.partial_fit(X, y, sample_weight=w)
    est.predict(X)
    for a, before in zip((X, y, w), copies):
        np.testing.assert_array_equal(a, before)


@pytest.mark.parametrize("value", [np.nan, np.inf])
@pytest.mark.parametrize("row", [0, 3000, 4999])
@pytest.mark.parametrize(("solver", "loss"), [("normal", "squared_error"), ("qr", "squared_error"),
                                              ("newton", "huber")])
@pytest.mark.parametrize("sparse", [False, True])
def test_solvers_that_check_x_themselves_report_nonfinite_x_in_validations_words(rng, value, row, solver, loss,
                                                                              sparse):
    # These solvers skip the separate finiteness pass over X: their statistics must catch NaN/inf anywhere
    # (first, middle, last block), and say which, as scikit-learn's validation does (they said "NaN or
    # infinity"). (A finite value whose square overflows is fitted on rescaled data: tests/test_reliability.py.)
    from sklearn.linear_model import LinearRegression

    X = rng.normal(size=(5000, 4))
    y = X.sum(axis=1)
    X[row, 1] = value
    with pytest.raises(ValueError) as theirs:
        LinearRegression().fit(X, y)
    X = scipy.sparse.csr_array(X) if sparse else X
    with pytest.raises(ValueError) as ours:
        LinearRegressor(solver=solver, loss=loss).fit(X, y)
    assert str(ours.value).splitlines()[0] == str(theirs.value).splitlines()[0]


@pytest.mark.parametrize("solver", ["sgd", "adam", "rmsprop"])
@pytest.mark.parametrize("learning_rate", ["auto", 0.01])
@pytest.mark.parametrize("value", [np.nan, -np.inf])
@pytest.mark.parametrize("row", [0, 1999])
def test_iterative_fit_names_nonfinite_x_not_divergence(rng, solver, learning_rate, value, row):
    # fit leaves X's finiteness to the first epoch, which reads every row: the error must still name the
    # input, never blame the learning rate (DivergenceError).
    X = rng.normal(size=(2000, 3))
    y = X.sum(axis=1)
    X[row, 2] = value
    with pytest.raises(ValueError, match="Input X contains") as excinfo:
        LinearRegressor(solver=solver, learning_rate=learning_rate, max_epochs=2, random_state=0).fit(X, y)
    assert not isinstance(excinfo.value, DivergenceError)


def test_nonfinite_x_in_zero_weight_rows_is_still_rejected(rng):
    # Whole blocks of zero-weight rows are skipped by the kernel, so validation keeps its own check then.
    X = rng.normal(size=(5000, 3))
    X[10, 0] = np.nan
    w = np.r_[np.zeros(4000), np.ones(1000)]
    with pytest.raises(ValueError, match="NaN"):
        LinearRegressor(solver="normal").fit(X, X.sum(axis=1), sample_weight=w)


@pytest.mark.parametrize("sparse", [False, True])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("row", [0, 1999])
def test_iterative_fit_names_nonfinite_y_from_its_starting_loss(rng, sparse, dtype, value, row):
    # fit leaves y's finiteness to the starting loss (every training target read once): the error must name y,
    # with validation's message, never blame the learning rate; a warm start learns it in its first epoch.
    X = rng.normal(size=(2000, 3)).astype(dtype)
    y = X.sum(axis=1)
    Xf = scipy.sparse.csr_array(X) if sparse else X
    est = LinearRegressor(solver="adam", learning_rate=0.01, max_epochs=2, random_state=0, warm_start=True)
    est.fit(Xf, y)
    before = est.coef_.copy()
    y[row] = value
    for _ in range(2):  # a warm start continues the previous fit: its first epoch reads y
        with pytest.raises(ValueError, match="Input y contains") as excinfo:
            est.fit(Xf, y)
        assert not isinstance(excinfo.value, DivergenceError)
        np.testing.assert_array_equal(est.coef_, before)  # all-or-nothing
        est.warm_start = False
    with pytest.raises(ValueError, match="Input y contains"):  # zero weights: validation checks y itself
        LinearRegressor(solver="sgd", max_epochs=1).fit(Xf, y, sample_weight=np.r_[np.zeros(1000), np.ones(1000)])
    with pytest.raises(ValueError, match="Input y contains"):  # held-out targets are only scored
        LinearRegressor(solver="sgd", max_epochs=1, early_stopping=True).fit(Xf, y)


def test_longdouble_y_beyond_float64_is_named_with_its_magnitude():
    # the message printed the magnitude through float ("inf") and advised passing X as float64, which it was
    X = np.random.default_rng(0).normal(size=(20, 2))
    y = np.ones(20, dtype=np.longdouble)
    if np.finfo(np.longdouble).max <= np.finfo(np.float64).max:
        pytest.skip("longdouble is float64 here")
    y[3] = np.longdouble("2e401")
    with pytest.raises(ValueError, match=r"largest magnitude 2\.00e\+401\): X is float64 and y takes its dtype\. "
                                         r"Rescale y\.$"):
        LinearRegressor().fit(X, y)


def test_float64_y_beyond_float32_x_range_is_named():
    # y takes X's dtype: a finite float64 y beyond float32's range became inf, with NumPy's overflow warning and
    # a solver's error about X or the statistics
    X = np.random.default_rng(0).normal(size=(20, 2)).astype(np.float32)
    y = np.ones(20)
    y[3] = 1e39
    for solver in ("normal", "sgd"):
        with warnings.catch_warnings():
            warnings.simplefilter("error", RuntimeWarning)
            with pytest.raises(ValueError, match="y has values beyond the float32 range"):
                LinearRegressor(solver=solver).fit(X, y)
    sw = np.ones(20)
    sw[0] = 1e39
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        with pytest.raises(ValueError, match="sample_weight"):
            LinearRegressor(solver="normal").fit(X, np.ones(20), sample_weight=sw)


def test_predict_on_one_sparse_row_is_an_array():
    sp = scipy.sparse
    X = np.random.default_rng(0).normal(size=(20, 3))
    est = LinearRegressor().fit(X, X @ [1.0, 2.0, 3.0])
    for fmt in (sp.coo_array, sp.coo_matrix, sp.csr_array, sp.csc_array):
        pred = est.predict(fmt(X[:1]))
        assert isinstance(pred, np.ndarray) and pred.shape == (1,)
        assert est.score(fmt(X[:2]), X[:2] @ [1.0, 2.0, 3.0]) == pytest.approx(1.0)


@pytest.mark.parametrize("solver", ["normal", "qr", "sgd", "adam", "rmsprop", "cg", "lsqr", "newton"])
@pytest.mark.parametrize("bad", ["+-inf", "nan"])
def test_nonfinite_x_is_named_without_runtime_warnings(solver, bad):
    # The statistics passes that run before the epoch or solve names X (scaling, the auto learning rate, the
    # Krylov moments, scikit-learn's quick sum) met +inf and -inf and warned first.
    X = np.random.default_rng(0).normal(size=(30, 3))
    if bad == "nan":
        X[4, 1] = np.nan
    else:
        X[0, 0], X[1, 1] = np.inf, -np.inf
    inputs = [X, X.astype(np.float32)] + ([] if solver == "newton" else [scipy.sparse.csr_array(X)])
    for data in inputs:
        for options in ({}, {"schedule": "constant"}, {"learning_rate": 0.01}):
            if solver not in ("sgd", "adam", "rmsprop") and options:
                continue
            with warnings.catch_warnings():
                warnings.simplefilter("error", RuntimeWarning)
                with pytest.raises(ValueError, match="X"):
                    LinearRegressor(solver=solver, **options).fit(data, np.ones(30))


@pytest.mark.parametrize("loss", ["squared_error", "huber", "absolute_error"])
def test_newton_names_a_column_too_large_to_square(loss):
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(20, 2)), np.ones(20)
    X[0, 1] = 1e300  # finite, but its square overflows the Gram (this was an internal RuntimeError)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        with pytest.raises(ValueError, match="X column 1 has values too large to square"):
            LinearRegressor(solver="newton", loss=loss).fit(X, y)


def test_dataframe_columns_are_checked_for_complex_values_without_converting_the_frame(rng, monkeypatch):
    # pd.get_dummies' bool columns beside float ones: np.asarray of the frame interleaved them into Python objects
    # (1.1 s of a 0.3 s fit at 50,000 x 306) only to read a dtype; the columns' dtypes say it.
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame({"x": rng.normal(size=40), "b": rng.random(40) < 0.5, "c": rng.normal(size=40)})
    y = frame["x"].to_numpy() + rng.normal(size=40)
    mixed = []  # conversions of the frame with its bool and float columns side by side (scikit-learn's
    to_array = pd.DataFrame.__array__  # validation casts it to float64 first)
    monkeypatch.setattr(pd.DataFrame, "__array__", lambda self, *a, **k: mixed.append(self.dtypes.nunique() > 1)
                        or to_array(self, *a, **k))
    est = LinearRegressor().fit(frame, y)
    assert mixed and not any(mixed)
    np.testing.assert_allclose(est.predict(frame), LinearRegressor().fit(frame.to_numpy(float), y).predict(
        frame.to_numpy(float)), rtol=1e-12, atol=1e-12)
    for column in (np.ones(40) + 1j, pd.arrays.SparseArray(np.ones(40) + 1j)):
        with pytest.raises(ValueError, match="X has a complex dtype"):
            LinearRegressor().fit(frame.assign(z=column), y)


@pytest.mark.parametrize("solver", ["sgd", "auto"])
@pytest.mark.parametrize("change", [dict(batch_size=0), dict(batch_size=-5), dict(learning_rate=-1.0),
                                    dict(alpha=-10.0), dict(solver="bogus")])
def test_partial_fit_checks_parameters_set_between_calls(solver, change):
    # Only the first call was validated: batch_size=0 raised ZeroDivisionError, a negative rate ascended, a
    # negative alpha was taken as 0. A failed call leaves the fit as it was.
    from sklearn.utils._param_validation import InvalidParameterError
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(200, 3)), rng.normal(size=200)
    est = LinearRegressor(solver=solver, random_state=0).partial_fit(X[:100], y[:100])
    coef = est.coef_.copy()
    with pytest.raises(InvalidParameterError, match=next(iter(change))):
        est.set_params(**change).partial_fit(X[100:], y[100:])
    np.testing.assert_array_equal(est.coef_, coef)


def test_partial_fit_honours_skip_parameter_validation():
    # helper-143: fit skipped the parameter check under sklearn's skip_parameter_validation (its _fit_context) and
    # partial_fit raised InvalidParameterError there, where SGDRegressor.partial_fit goes on. An int where the
    # constraint asks for a bool is harmless.
    import sklearn

    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(50, 3)), rng.normal(size=50)
    with sklearn.config_context(skip_parameter_validation=True):
        for method in ("fit", "partial_fit"):
            est = LinearRegressor(solver="sgd", random_state=0).set_params(shuffle=1)
            getattr(est, method)(X, y)
            assert np.isfinite(est.coef_).all()
    from sklearn.utils._param_validation import InvalidParameterError

    with pytest.raises(InvalidParameterError, match="shuffle"):  # checked as before otherwise
        LinearRegressor(solver="sgd").set_params(shuffle=1).partial_fit(X, y)


@pytest.mark.parametrize("alpha", [np.array(-0.5), np.array(np.nan), np.array(np.inf)])
@pytest.mark.parametrize("solver", ["normal", "lsqr", "sgd", "newton"])
def test_a_zero_dimensional_alpha_is_checked_as_a_number_is(alpha, solver):
    # a 0-d array passes the "array-like" constraint: np.array(-0.5) had fitted a negative ridge with the closed
    # form and Newton, and nan or inf failed with a message about overflow
    X = np.random.default_rng(0).standard_normal((50, 3))
    with pytest.raises(ValueError, match="alpha must be finite and non-negative"):
        LinearRegressor(alpha=alpha, solver=solver).fit(X, X.sum(axis=1))


@pytest.mark.parametrize("solver", ["normal", "lsqr", "sgd", "adam", "newton"])
def test_a_zero_dimensional_alpha_fits_as_the_number(solver):
    # (the iterative rules refused np.array(0.1) with a message about their weight_decay, no estimator parameter)
    rng = np.random.default_rng(0)
    X = rng.standard_normal((50, 3))
    y = X @ [1.0, 2.0, 3.0]
    fits = [LinearRegressor(alpha=alpha, solver=solver, random_state=0).fit(X, y) for alpha in (np.array(0.1), 0.1)]
    np.testing.assert_array_equal(fits[0].coef_, fits[1].coef_)


@pytest.mark.parametrize("alpha", [np.array([0.1 + 5j, 0.2]), np.array(0.1 + 0j)])
def test_a_complex_alpha_is_refused(alpha):
    # (its imaginary part was dropped, with NumPy's ComplexWarning alone)
    X = np.random.default_rng(0).standard_normal((50, 3))
    with pytest.raises(ValueError, match="alpha must be real"):
        LinearRegressor(alpha=alpha).fit(X, np.c_[X.sum(axis=1), X[:, 0]])


@pytest.mark.parametrize("solver", ["auto", "normal", "qr", "lsqr", "cg", "newton"])
def test_a_ridge_beyond_float64_is_named(solver, rng):
    # alpha = 1e308 on 50 rows: the exact solvers form alpha * 50, which overflows ("the sufficient statistics
    # overflowed; rescale X and y", LAPACK's "SVD did not converge", or cg's NaN warnings and zeros). The weights
    # enter in the units the solvers normalise them to, so weights of 1e10 with alpha = 1e300 still fit.
    X = rng.normal(size=(50, 3))
    y = X @ [1.0, 2.0, 3.0] + rng.normal(size=50)
    with pytest.raises(ValueError, match="alpha = 1e\\+308 times the rows' weight"):
        LinearRegressor(solver=solver, alpha=1e308).fit(X, y)
    if solver in ("normal", "qr", "newton"):
        est = LinearRegressor(solver=solver, alpha=1e300).fit(X, y, sample_weight=np.full(50, 1e10))
        Xc = X - X.mean(axis=0)  # (w = (Xc^T Xc / n + alpha I)^-1 Xc^T y / n: the second term alone at 1e300)
        np.testing.assert_allclose(est.coef_ * 1e300, Xc.T @ (y - y.mean()) / 50, rtol=1e-12)
    assert np.all(np.isfinite(LinearRegressor(solver="sgd", alpha=1e308).fit(X, y).coef_))


@pytest.mark.parametrize("solver, loss", [("normal", "squared_error"), ("qr", "squared_error"),
                                          ("lsqr", "squared_error"), ("cg", "squared_error"),
                                          ("newton", "huber"), ("sgd", "squared_error")])
def test_nonfinite_y_under_assume_finite_is_named_as_y(Xy, solver, loss):
    # scikit-learn's assume_finite=True skips validation's check; the solvers name non-finite input before blaming
    # a scale: an infinite y was "X column 0 has values too large or too small to square" (the Gram's X^T y)
    import sklearn

    X, y = Xy
    y = with_nonfinite(y, np.inf)
    with sklearn.config_context(assume_finite=True):
        with pytest.raises(ValueError, match="Input y contains infinity"):
            LinearRegressor(solver=solver, loss=loss).fit(X, y)


def test_a_target_whose_squares_overflow_is_named_in_partial_fit(Xy):
    # partial_fit cannot rescale merged statistics: its error names the column; y's overflowing squares poisoned
    # X^T y and were reported as X column 0
    X, y = Xy
    with pytest.raises(ValueError, match="y column 0 has values too large or too small to square"):
        LinearRegressor(solver="normal").partial_fit(X, y * 1e200)


@pytest.mark.parametrize("solver", ["sgd", "momentum", "adam"])
def test_a_ridge_whose_curvature_overflows_is_a_value_error(solver):
    # alpha of 1e308 raised a bare ZeroDivisionError from the learning rate's sample (1 / rate)
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(500, 4)), rng.normal(size=500)
    try:
        LinearRegressor(solver=solver, alpha=1e308, max_epochs=2).fit(X, y)
    except ValueError as error:
        assert "alpha" in str(error)
