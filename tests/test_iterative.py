"""The iterative solvers behind LinearRegressor: convergence, determinism, divergence and training controls."""
import warnings
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import scipy.sparse as sp

from fastopt import LinearRegressor
from fastopt._iterative import SOLVERS
from fastopt.exceptions import ConvergenceWarning, DivergenceError

METHODS = sorted(SOLVERS)


def _data(rng, n=400, d=5, k=None, noise=0.5, dtype=np.float64):
    X = rng.normal(size=(n, d))
    coef = rng.normal(size=(d,) if k is None else (d, k))
    y = X @ coef + 2.0 + noise * rng.normal(size=(n,) if k is None else (n, k))
    return X.astype(dtype), y.astype(dtype)


def _half_mse(est, X, y, sample_weight=None):
    r = (est.predict(X) - y).reshape(len(X), -1)
    return 0.5 * np.average(np.sum(r * r, axis=1), weights=sample_weight)


def _closed_form_half_mse(X, y):
    exact = _half_mse(LinearRegressor(solver="normal").fit(X, y), X, y)
    Xa = np.c_[X, np.ones(len(X))]
    assert exact == pytest.approx(0.5 * np.mean((Xa @ np.linalg.lstsq(Xa, y, rcond=None)[0] - y) ** 2), rel=1e-12)
    return exact


# A suitable schedule per rule: an exponential decay of the rate removes the minibatch noise floor (the rate
# falls to 1e-4 of its start over 300 epochs) while the early epochs travel far enough. RMSProp needs a long
# squared-gradient memory (PyTorch's rho=0.99): with rho=0.9 its per-step scale 1/sqrt(r) is so noisy that it
# stalls near 1e-6. AdaGrad's steps already decay as 1/sqrt(t); full batches remove its noise.
DECAY = dict(schedule="exponential", gamma=0.97)
CONVERGENCE = {
    "sgd": DECAY,
    "momentum": DECAY,
    "nesterov": DECAY,
    "adagrad": dict(schedule="constant", learning_rate=0.5, batch_size=400),
    "rmsprop": DECAY | dict(rho=0.99),
    "adam": DECAY,
    "adamw": DECAY,
}


@pytest.mark.parametrize("method", METHODS)
def test_reaches_the_closed_form_training_loss(method):
    rng = np.random.default_rng(0)
    X, y = _data(rng)
    params = dict(batch_size=50, max_epochs=300, tol=None, random_state=0) | CONVERGENCE[method]
    est = LinearRegressor(solver=method, **params).fit(X, y)
    best = _closed_form_half_mse(X, y)
    assert _half_mse(est, X, y) <= best * (1 + 1e-6)
    assert est.n_iter_ == 300 and est.solver_ == method and len(est.loss_curve_) == 300


def test_same_random_state_is_bit_identical_also_across_threads():
    rng = np.random.default_rng(1)
    X, y = _data(rng, n=3000, d=20)

    def fit(seed):
        return LinearRegressor(solver="adam", max_epochs=5, tol=None, random_state=seed).fit(X, y).coef_

    serial = fit(7)
    with ThreadPoolExecutor(max_workers=4) as pool:
        parallel = list(pool.map(fit, [7, 7, 7, 7, 8]))
    for coef in parallel[:4]:
        np.testing.assert_array_equal(coef, serial)
    assert not np.array_equal(parallel[4], serial)


@pytest.mark.parametrize("method", ["sgd", "momentum", "nesterov"])
def test_divergence_raises_with_epoch_and_advice(method):
    rng = np.random.default_rng(2)
    X, y = _data(rng)
    est = LinearRegressor(solver=method, learning_rate=5.0, max_epochs=50, random_state=0)
    with pytest.raises(DivergenceError, match=r"diverged in epoch \d+, step \d+: .*smaller learning_rate"):
        est.fit(X, y)
    assert not hasattr(est, "coef_")


def test_nonfinite_is_reported_even_without_explosion_threshold():
    # Data on the float32 edge: the second step's gradient (9e36 * 3e18) overflows float32 while its loss, summed
    # in float64, is finite; the overflow must be caught as non-finite before the loss threshold is consulted.
    X = np.full((8, 1), 3e18, np.float32)
    y = np.ones(8, np.float32)
    with pytest.raises(DivergenceError, match="epoch 2, step 2: the loss or gradient became NaN"):
        LinearRegressor(solver="sgd", learning_rate=1.0, random_state=0).fit(X, y)


@pytest.mark.parametrize("method", ["sgd", "adam"])
def test_multi_output_equals_separate_fits(method):
    rng = np.random.default_rng(3)
    X, Y = _data(rng, k=3)
    params = dict(solver=method, learning_rate=0.01, max_epochs=4, tol=None, random_state=0)
    joint = LinearRegressor(**params).fit(X, Y)
    for j in range(3):
        single = LinearRegressor(**params).fit(X, Y[:, j])
        np.testing.assert_array_equal(joint.coef_[j], single.coef_)
        assert joint.intercept_[j] == single.intercept_


def test_partial_fit_sequence_equals_fit_and_is_deterministic():
    rng = np.random.default_rng(4)
    X, y = _data(rng)
    params = dict(solver="momentum", max_epochs=3, tol=None, random_state=5, schedule="linear")
    full = LinearRegressor(**params).fit(X, y)
    runs = []
    for _ in range(2):
        est = LinearRegressor(**params)
        for _ in range(3):
            est.partial_fit(X, y)
        runs.append(est)
    np.testing.assert_array_equal(runs[0].coef_, full.coef_)
    np.testing.assert_array_equal(runs[1].coef_, full.coef_)
    assert runs[0].t_ == full.t_ == 3 * 7 and runs[0].n_iter_ == 3
    assert runs[0].loss_curve_ == full.loss_curve_


def test_partial_fit_keeps_state_across_chunks():
    rng = np.random.default_rng(5)
    X, y = _data(rng, n=1000)
    est = LinearRegressor(solver="adam", random_state=0, batch_size=100)
    for chunk in np.array_split(np.arange(1000), 4):
        est.partial_fit(X[chunk], y[chunk])
    assert est.t_ == 12 and est.n_iter_ == 4 and len(est.loss_curve_) == 4
    with pytest.raises(ValueError, match="targets"):
        est.partial_fit(X, np.c_[y, y])


@pytest.mark.parametrize("method", ["sgd", "adam", "rmsprop"])
@pytest.mark.parametrize("first", [np.float32, np.float64])
@pytest.mark.parametrize("sparse", [False, True])
def test_partial_fit_takes_later_rows_in_its_first_calls_precision(method, first, sparse):
    # A chunk in the other floating type (a float64 chunk after float32 ones, or the reverse) is cast to the
    # state's, as the closed form's statistics take it; the typed kernels raised "Buffer dtype mismatch".
    import scipy.sparse as sp
    rng = np.random.default_rng(5)
    X, y = _data(rng, n=400)
    later = np.float64 if first == np.float32 else np.float32
    wrap = sp.csr_array if sparse else np.asarray
    mixed = LinearRegressor(solver=method, random_state=0).partial_fit(wrap(X[:200].astype(first)), y[:200])
    same = LinearRegressor(solver=method, random_state=0).partial_fit(wrap(X[:200].astype(first)), y[:200])
    w = rng.uniform(0.5, 2.0, size=200)
    mixed.partial_fit(wrap(X[200:].astype(later)), y[200:].astype(later), sample_weight=w.astype(later))
    same.partial_fit(wrap(X[200:].astype(later).astype(first)), y[200:].astype(later).astype(first),
                     sample_weight=w.astype(later).astype(first))
    assert mixed.coef_.dtype == first
    np.testing.assert_array_equal(mixed.coef_, same.coef_)


def test_partial_fit_reads_a_numeric_learning_rate_at_every_call():
    rng = np.random.default_rng(5)
    X, y = _data(rng, n=400)
    est = LinearRegressor(solver="sgd", random_state=0).partial_fit(X, y)  # "auto": resolved on the first call
    auto = est.learning_rate_
    assert est.partial_fit(X, y).learning_rate_ == auto
    assert est.set_params(learning_rate=auto / 4).partial_fit(X, y).learning_rate_ == auto / 4
    assert est.set_params(learning_rate="auto").partial_fit(X, y).learning_rate_ == auto / 4  # kept, not re-estimated


def test_warm_start_continues_from_the_previous_fit():
    rng = np.random.default_rng(6)
    X, y = _data(rng)
    est = LinearRegressor(solver="sgd", max_epochs=5, tol=None, random_state=0, warm_start=True).fit(X, y)
    first_curve, t = est.loss_curve_, est.t_
    est.fit(X, y)
    assert est.loss_curve_[0] < 0.5 * first_curve[0] and est.t_ == 2 * t
    est.set_params(learning_rate=1e-3).fit(X, y)  # a warm start takes the new hyperparameters
    assert est.learning_rate_ == 1e-3 and est.t_ == 3 * t
    cold = LinearRegressor(solver="sgd", max_epochs=5, tol=None, random_state=0).fit(X, y)
    assert cold.loss_curve_ == first_curve


@pytest.mark.parametrize("solver", ["sgd", "adam"])
@pytest.mark.parametrize("multi", [False, True])
def test_fitted_coefficients_stay_as_fitted_through_later_fits(solver, multi):
    """coef_ and intercept_ view the fitted state's parameter vector (no copy): a later warm start, partial_fit or
    refit steps a copy, so the attributes a caller kept from an earlier fit never change."""
    rng = np.random.default_rng(8)
    X, y = _data(rng)
    Y = np.column_stack([y, -y]) if multi else y
    est = LinearRegressor(solver=solver, max_epochs=2, tol=None, random_state=0, warm_start=True,
                          learning_rate=0.01).fit(X, Y)
    kept, kept_b = est.coef_, est.intercept_
    saved, saved_b = kept.copy(), np.copy(kept_b)
    est.fit(X, Y)
    assert not np.array_equal(est.coef_, saved)  # the warm start moved on
    est.partial_fit(X, Y)
    est.set_params(warm_start=False).fit(X, Y)
    np.testing.assert_array_equal(kept, saved)
    np.testing.assert_array_equal(kept_b, saved_b)


def test_early_stopping_on_validation_honours_sample_weight():
    rng = np.random.default_rng(7)
    X, y = _data(rng, n=600)
    sw = rng.uniform(0.5, 2.0, size=600)
    sw[::10] = 0.0
    params = dict(solver="adam", early_stopping=True, validation_fraction=0.2, n_iter_no_change=3, tol=1e-4,
                  max_epochs=200, random_state=0)
    est = LinearRegressor(**params).fit(X, y, sample_weight=sw)
    assert est.n_iter_ < 200 and len(est.validation_scores_) == est.n_iter_
    assert est.best_validation_score_ == max(est.validation_scores_) > 0.9
    # Rows of weight zero count neither in training nor in the validation score.
    y_bad = y.copy()
    y_bad[::10] += 1e3
    other = LinearRegressor(**params).fit(X, y_bad, sample_weight=sw)
    np.testing.assert_array_equal(other.coef_, est.coef_)
    assert other.validation_scores_ == est.validation_scores_


def test_unit_sample_weight_is_bit_identical_to_none():
    rng = np.random.default_rng(8)
    X, y = _data(rng)
    a = LinearRegressor(solver="rmsprop", max_epochs=3, tol=None, random_state=0).fit(X, y)
    b = LinearRegressor(solver="rmsprop", max_epochs=3, tol=None, random_state=0).fit(X, y, np.full(400, 3.0))
    np.testing.assert_array_equal(a.coef_, b.coef_)


def test_tol_none_runs_every_epoch_and_tol_warns_when_unmet():
    rng = np.random.default_rng(9)
    X, y = _data(rng)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        est = LinearRegressor(solver="sgd", max_epochs=7, tol=None, random_state=0).fit(X, y)
    assert est.n_iter_ == 7
    with pytest.warns(ConvergenceWarning, match="max_epochs=3"):
        LinearRegressor(solver="sgd", max_epochs=3, tol=1e-12, random_state=0).fit(X, y)
    stopped = LinearRegressor(solver="sgd", max_epochs=500, tol=1e-3, random_state=0).fit(X, y)
    assert stopped.n_iter_ < 500 and stopped.best_loss_ == min(stopped.loss_curve_)


def test_verbose_prints_one_line_per_epoch(capsys):
    rng = np.random.default_rng(10)
    X, y = _data(rng)
    LinearRegressor(solver="nesterov", max_epochs=4, tol=None, verbose=1, random_state=0).fit(X, y)
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 4 and lines[-1].startswith("nesterov epoch 4: loss ")


@pytest.mark.parametrize("loss", ["absolute_error", "huber"])
def test_robust_losses_resist_outliers(loss):
    rng = np.random.default_rng(11)
    X = rng.normal(size=(1000, 3))
    coef = np.array([1.0, -2.0, 0.5])
    y = X @ coef + 0.1 * rng.laplace(size=1000)
    y[:50] += 100.0  # 5% gross outliers
    params = dict(solver="adam", schedule="cosine", end_factor=1e-3, max_epochs=100, tol=None, random_state=0)
    robust = LinearRegressor(loss=loss, **params).fit(X, y)
    squared = LinearRegressor(loss="squared_error", **params).fit(X, y)
    assert np.max(np.abs(robust.coef_ - coef)) < 0.05
    assert abs(robust.intercept_) < 0.2 < abs(squared.intercept_)


def test_float32_fits_in_float32_and_agrees_with_float64():
    rng = np.random.default_rng(12)
    X, y = _data(rng)
    params = dict(solver="adam", schedule="cosine", max_epochs=50, tol=None, random_state=0)
    e32 = LinearRegressor(**params).fit(X.astype(np.float32), y.astype(np.float32))
    e64 = LinearRegressor(**params).fit(X, y)
    assert e32.coef_.dtype == np.float32
    np.testing.assert_allclose(e32.coef_, e64.coef_, rtol=0, atol=1e-3)


def test_no_intercept_and_random_init():
    rng = np.random.default_rng(13)
    X, y = _data(rng)
    est = LinearRegressor(solver="sgd", fit_intercept=False, max_epochs=2, tol=None, random_state=0).fit(X, y)
    assert est.intercept_ == 0.0
    r1 = LinearRegressor(solver="sgd", init="random", max_epochs=1, tol=None, random_state=0).fit(X, y)
    r2 = LinearRegressor(solver="sgd", init="random", max_epochs=1, tol=None, random_state=0).fit(X, y)
    z = LinearRegressor(solver="sgd", max_epochs=1, tol=None, random_state=0).fit(X, y)
    np.testing.assert_array_equal(r1.coef_, r2.coef_)
    assert not np.array_equal(r1.coef_, z.coef_)


def test_alpha_shrinks_weights_not_the_intercept():
    rng = np.random.default_rng(14)
    X, y = _data(rng)
    params = dict(max_epochs=100, tol=None, random_state=0, schedule="linear")
    plain = LinearRegressor(solver="sgd", **params).fit(X, y)
    ridge = LinearRegressor(solver="sgd", alpha=1.0, **params).fit(X, y)
    assert np.linalg.norm(ridge.coef_) < 0.7 * np.linalg.norm(plain.coef_)
    assert abs(ridge.intercept_ - plain.intercept_) < 0.1
    decoupled = LinearRegressor(solver="adamw", alpha=1.0, **params).fit(X, y)
    assert np.linalg.norm(decoupled.coef_) < 0.9 * np.linalg.norm(plain.coef_)


def test_bad_validation_fraction_is_a_clear_error():
    X, y = np.ones((3, 1)), np.arange(3.0)
    with pytest.raises(ValueError, match="leaves no training rows"):
        LinearRegressor(solver="sgd", early_stopping=True, validation_fraction=0.9).fit(X, y)


def test_one_validation_row_is_a_clear_error():
    # 10 rows at the default fraction hold out one: r2_score is NaN there, so every epoch scored NaN, warned,
    # and the fit ran to max_epochs
    X = np.random.default_rng(0).standard_normal((10, 3))
    y = X @ np.array([1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="1 row; R\\^2 needs at least two"):
        LinearRegressor(solver="sgd", early_stopping=True).fit(X, y)
    est = LinearRegressor(solver="sgd", early_stopping=True, validation_fraction=0.2, random_state=0).fit(X, y)
    assert np.all(np.isfinite(est.validation_scores_))


def test_held_out_rows_of_equal_targets_are_a_clear_error():
    # Every held-out target equal: R^2 is 0 at every epoch (r2_score of a constant target), so the first epoch
    # was the "best" and its coefficients came back unwarned (0.945, 2.013, 2.828 where the training rows' least
    # squares are 0.999, 2.000, 2.995).
    from fastopt import _iterative

    rng = np.random.default_rng(1)
    X = rng.normal(size=(200, 3))
    y = X @ np.array([1.0, 2.0, 3.0]) + 0.1 * rng.normal(size=200)
    val = np.sort(_iterative._seed(0).permutation(200)[:20])  # the rows held out for random_state=0
    y[val] = 7.0
    params = dict(solver="sgd", early_stopping=True, random_state=0)
    with pytest.raises(ValueError, match=r"held-out rows \(validation_fraction=0.1 of the 200 rows\), whose "
                                         r"targets are all equal \(7\)"):
        LinearRegressor(**params).fit(X, y)
    varied = y.copy()
    varied[val[0]] = 8.0  # one other held-out value: R^2 is defined (and low: the held-out targets barely vary)
    assert np.isfinite(LinearRegressor(**params).fit(X, varied).best_validation_score_)
    w = np.ones(200)
    w[val[0]] = 0.0  # ... unless its row carries no weight
    with pytest.raises(ValueError, match="targets are all equal"):
        LinearRegressor(**params).fit(X, varied, sample_weight=w)
    Y = np.column_stack([y, varied])  # one target constant there, the other not: the mean R^2 still moves
    assert np.isfinite(LinearRegressor(**params).fit(X, Y).best_validation_score_)
    with pytest.raises(ValueError, match="targets are all equal:"):
        LinearRegressor(**params).fit(X, np.column_stack([y, y]))
    with pytest.raises(ValueError, match="each chunk's rows.*targets are all equal"):  # streams: the same refusal
        LinearRegressor(**params).fit_stream([(X[i : i + 50], np.full(50, 3.0)) for i in range(0, 200, 50)])


def test_full_batch_weights_equal_repeated_rows():
    # Weights are normalised to mean 1, so a full-batch gradient with integer weights is the gradient of the data
    # with rows repeated: without minibatch noise the two fits agree (the conformance suite's reason to expect
    # check_sample_weight_equivalence to fail for minibatches rests on this).
    rng = np.random.default_rng(15)
    X, y = _data(rng, n=60)
    sw = rng.integers(0, 3, size=60)
    rows = np.repeat(np.arange(60), sw)
    params = dict(solver="sgd", batch_size=1000, shuffle=False, max_epochs=1000, tol=None, random_state=0,
                  schedule="constant")  # gradient descent at one rate: no loss comparison can tell the two apart
    weighted = LinearRegressor(**params).fit(X, y, sample_weight=sw.astype(float))
    repeated = LinearRegressor(**params).fit(X[rows], y[rows])
    np.testing.assert_allclose(weighted.coef_, repeated.coef_, rtol=1e-10)
    np.testing.assert_allclose(weighted.intercept_, repeated.intercept_, rtol=1e-10)


def _sgd_pass_iterates(X, y, w, b, lr=0.1, batch=64):
    """Plain minibatch SGD over the rows in order (the reference of the tests below), and each step's iterate."""
    steps = []
    for s in range(0, len(y), batch):
        r = X[s : s + batch] @ w + b - y[s : s + batch]
        w, b = w - lr * X[s : s + batch].T @ r / len(r), b - lr * r.mean()
        steps.append(np.r_[w, b])
    return w, b, steps


def test_average_switched_on_later_averages_the_steps_from_then_on():
    # Turned on by a later partial_fit call (or warm start), the average counted the earlier steps as zeros and
    # divided by every step taken: coefficients about halved. It averages the iterates from then on.
    rng = np.random.default_rng(1)
    X = rng.normal(size=(500, 3))
    y = X @ np.array([1.0, 2.0, 3.0]) + 5.0
    kw = dict(solver="sgd", learning_rate=0.1, shuffle=False, precondition="none", random_state=0)
    est = LinearRegressor(**kw).partial_fit(X, y)
    est.set_params(average=True).partial_fit(X, y)
    w, b, _ = _sgd_pass_iterates(X, y, np.zeros(3), 0.0)
    _, _, steps = _sgd_pass_iterates(X, y, w, b)
    mean = np.mean(steps, axis=0)
    np.testing.assert_allclose(np.r_[est.coef_, est.intercept_], mean, rtol=1e-12)
    # off again, then on: a fresh average of the latest call's steps
    est.set_params(average=False).partial_fit(X, y)
    est.set_params(average=True).partial_fit(X, y)
    w, b = np.zeros(3), 0.0
    for _ in range(4):  # the four calls' passes
        w, b, steps = _sgd_pass_iterates(X, y, w, b)
    np.testing.assert_allclose(np.r_[est.coef_, est.intercept_], np.mean(steps, axis=0), rtol=1e-12)
    warm = LinearRegressor(**kw, max_epochs=2, tol=None).fit(X, y)
    warm.set_params(warm_start=True, average=True).fit(X, y)
    w, b, steps = np.zeros(3), 0.0, []
    for epoch in range(4):
        w, b, these = _sgd_pass_iterates(X, y, w, b)
        steps += these if epoch >= 2 else []
    np.testing.assert_allclose(np.r_[warm.coef_, warm.intercept_], np.mean(steps, axis=0), rtol=1e-12)


@pytest.mark.parametrize("solver", ["sgd", "adam"])
def test_constant_targets_of_a_multi_output_fit_stop_without_dividing_by_zero(solver):
    # Every target fitted exactly by its constant: the per-target check's alarm level is 0 (ZeroDivisionError).
    X = np.random.default_rng(0).normal(size=(50, 2))
    Y = np.c_[np.full(50, 3.0), np.full(50, -1.0)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est = LinearRegressor(solver=solver, random_state=0).fit(X, Y)
        one_row = LinearRegressor(solver=solver).fit(np.array([[1.0, 2.0]]), np.array([[1.0, 2.0]]))
    np.testing.assert_allclose(est.intercept_, [3.0, -1.0], rtol=1e-12)
    np.testing.assert_allclose(one_row.intercept_, [1.0, 2.0], rtol=1e-12)


@pytest.mark.parametrize("solver", ["sgd", "momentum", "nesterov"])
@pytest.mark.parametrize("how", ["warm_start", "partial_fit"])
def test_continuing_under_a_larger_alpha_lowers_the_auto_rate(solver, how):
    # The rate the unpenalised fit left (0.79 for SGD here) ignored the added ridge: a warm start raising alpha to
    # 3 diverged in its fourth epoch, to 10 in its second, where a fresh fit takes 0.24 and 0.09.
    rng = np.random.RandomState(1)
    X = rng.randn(300, 4)
    y = X @ [1.0, 2.0, 3.0, 4.0] + 5 + rng.randn(300)
    for alpha in (3.0, 10.0):
        fresh = LinearRegressor(solver=solver, alpha=alpha, random_state=0).fit(X, y)
        est = LinearRegressor(solver=solver, warm_start=True, random_state=0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)  # (partial_fit's calls: as many epochs)
            if how == "warm_start":
                est.fit(X, y).set_params(alpha=alpha).fit(X, y)
            else:
                for _ in range(3):
                    est.partial_fit(X, y)
                est.set_params(alpha=alpha)
                for _ in range(60):
                    est.partial_fit(X, y)
        # the inverse of the rate grows by the added ridge: within the rate a fresh fit with it takes, nearly
        assert est.learning_rate_ <= 1.05 * fresh.learning_rate_
        np.testing.assert_allclose(est.coef_, fresh.coef_, atol=0.02)


@pytest.mark.parametrize("solver", ["adam", "adagrad", "rmsprop"])
@pytest.mark.parametrize("first", ["one row", "constant targets"])
def test_an_adaptive_rate_waits_for_a_call_with_a_gradient(solver, first):
    # A first partial_fit call of one row (or of constant targets) is fitted exactly where it starts (intercepts
    # at the targets' mean): no gradient, and the adaptive rules' rate, a distance, fell back to 1e-3 whatever the
    # targets' scale (Adam's is 24 here; R^2 -0.39 to -1.7 after the calls below, unwarned).
    rng = np.random.default_rng(0)
    X = rng.normal(size=(3000, 4))
    y = 100 * (X @ np.array([1.0, -2, 3, 0.5])) + 500 + rng.normal(size=3000)
    est, ordinary = LinearRegressor(solver=solver, random_state=0), LinearRegressor(solver=solver, random_state=0)
    est.partial_fit(X[:1], y[:1]) if first == "one row" else est.partial_fit(X[:100], np.zeros(100))
    ordinary.partial_fit(X[:100], y[:100])
    for _ in range(3):
        for i in range(100, 3000, 100):
            est.partial_fit(X[i : i + 100], y[i : i + 100])
            ordinary.partial_fit(X[i : i + 100], y[i : i + 100])
    # the distance left from where the next call starts (after zero targets, the offset of 500 too): within a
    # factor of two of the ordinary first call's (1e-3 before)
    assert 0.5 < est.learning_rate_ / ordinary.learning_rate_ < 2
    assert est.score(X, y) > ordinary.score(X, y) - 0.01  # (0.98-1.0 here; -0.39 to -1.7 before)


def test_a_one_shot_streams_adaptive_rate_waits_for_a_chunk_with_a_gradient():
    # A one-shot iterator takes its rate from its first chunk, as partial_fit: a chunk of constant targets left
    # Adam at the 1e-3 fallback (R^2 -1.74 after one pass)
    rng = np.random.default_rng(0)
    X = rng.normal(size=(5000, 4))
    y = 100 * (X @ np.array([1.0, -2, 3, 0.5])) + 500 + rng.normal(size=5000)

    def chunks():
        yield X[:100], np.zeros(100)
        for i in range(100, 5000, 100):
            yield X[i : i + 100], y[i : i + 100]

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # (one pass: max_epochs=1)
        est = LinearRegressor(solver="adam", random_state=0, max_epochs=1).fit_stream(chunks())
    assert est.learning_rate_ > 1 and est.score(X, y) > 0.99


def _hashed_rows(seed: int, n: int, d: int, per_row: int):
    """CSR rows of about ``per_row`` standard-normal values at random columns, and targets of a random model."""
    import scipy.sparse as sp

    rng = np.random.default_rng(seed)
    X = sp.random(n, d, density=per_row / d, format="csr", random_state=seed, data_rvs=rng.standard_normal)
    return X, X @ rng.normal(size=d) + 0.1 * rng.normal(size=n)


@pytest.mark.parametrize("solver", ["sgd", "momentum"])
def test_partial_fit_after_fit_on_new_rows_is_guarded_under_the_fits_map(solver):
    # The fit's map scales a column stored a few times with small values by their inverse (0.0037: 2.3e-4); new
    # rows holding such a column at its usual size took steps of that multiple, and one partial_fit after the fit
    # took R^2 on those rows from 0.97 to -195, silently: partial_fit after fit had no rate guard (a first
    # partial_fit call keeps what its rate was taken from; a fit now keeps it too).
    X, y = _hashed_rows(seed=2, n=8000, d=1000, per_row=2)
    old, new = slice(0, 3000), slice(3000, None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est = LinearRegressor(solver=solver, random_state=0).fit(X[old], y[old])
    before = est.score(X[new], y[new])
    est.partial_fit(X[new], y[new])
    assert est.score(X[new], y[new]) >= before - 0.05  # (a step that does not undo the fit: 0.972 -> 0.976)


@pytest.mark.parametrize("solver", ["sgd", "momentum", "nesterov"])
@pytest.mark.parametrize("change", ["wider", "shifted", "units"])
def test_a_warm_start_on_stiffer_rows_takes_their_rate(solver, change):
    # A warm start keeps the first fit's map and, before, its rate: on rows one of whose columns is three times
    # wider, whose mean moved by 5 (which the map does not centre) or in other units, SGD and Nesterov diverged
    # where a fresh fit on those rows converges. Now the rate is the lower of the kept one and these rows'.
    rng = np.random.RandomState(1)
    n, coef = 400, np.array([1.0, -1, 2, 0.5, 1])
    X1 = rng.normal(size=(n, 5)) * [1, 3, 0.2, 1, 1] + [0, 4, 0, 0, 1]
    scale, shift = {"wider": ([1, 1, 3, 1, 1], 0), "shifted": (1, [5, 0, 0, 0, 0]), "units": (2, 0)}[change]
    X2 = (rng.normal(size=(n, 5)) * [1, 3, 0.2, 1, 1] + [0, 4, 0, 0, 1]) * scale + shift
    y1, y2 = X1 @ coef + 0.1 * rng.normal(size=n), X2 @ coef + 0.1 * rng.normal(size=n)
    fresh = LinearRegressor(solver=solver, random_state=0).fit(X2, y2)
    est = LinearRegressor(solver=solver, random_state=0, warm_start=True).fit(X1, y1)
    first = est.learning_rate_
    est.fit(X2, y2)
    # the mean moved by 5, which the kept map does not centre, puts these rows' rate under it more than
    # STALE_MAP_RATIO times below the kept one: the warm start begins afresh from its coefficients, under a map
    # (and a rate) of these rows
    assert est.learning_rate_ <= first if change != "shifted" else est.learning_rate_ == fresh.learning_rate_
    assert est.score(X2, y2) == pytest.approx(fresh.score(X2, y2), abs=1e-4)
    # on the same rows the kept rate is their rate: a warm start on them keeps it, bit for bit
    again = LinearRegressor(solver=solver, random_state=0, warm_start=True).fit(X1, y1)
    assert again.fit(X1, y1).learning_rate_ == first


def test_a_warm_start_on_rows_that_make_the_kept_map_stale_starts_afresh_from_its_coefficients():
    # The kept map scales a column the first rows stored once, with a small value, by its inverse: on new rows
    # holding it at its usual size the rate under that map was 23 times smaller and the warm fit ended at R^2
    # 0.934 on its own rows (0.038 on a larger probe) where a fresh fit reaches 0.9985.
    X, y = _hashed_rows(seed=0, n=3000, d=2000, per_row=10)
    old, new = slice(0, 1000), slice(1000, None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        warm = LinearRegressor(solver="sgd", random_state=0, warm_start=True).fit(X[old], y[old]).fit(X[new], y[new])
        cold = LinearRegressor(solver="sgd", random_state=0).fit(X[new], y[new])
    assert warm.learning_rate_ == cold.learning_rate_
    assert warm.score(X[new], y[new]) >= cold.score(X[new], y[new]) - 1e-3


@pytest.mark.parametrize("solver", ["sgd", "adam"])
@pytest.mark.parametrize("before", [True, False])
def test_partial_fit_refuses_a_changed_fit_intercept(solver, before):
    # The state's parameter vector holds intercepts or not: the calls trained as before while intercept_ followed
    # the new setting (True -> False: R^2 0.9993 -> -0.80, unwarned). The closed form's statistics take either.
    rng = np.random.default_rng(0)
    X = rng.normal(size=(600, 4))
    y = X @ np.array([1.0, -2, 3, 0.5]) + 5 + 0.1 * rng.normal(size=600)
    est = LinearRegressor(solver=solver, random_state=0, fit_intercept=before).partial_fit(X[:300], y[:300])
    coef, intercept = est.coef_.copy(), est.intercept_
    with pytest.raises(ValueError, match=f"ran with fit_intercept={before}; fit_intercept is now {not before}"):
        est.set_params(fit_intercept=not before).partial_fit(X[300:], y[300:])
    assert np.array_equal(est.coef_, coef) and est.intercept_ == intercept
    closed = LinearRegressor(solver="normal", fit_intercept=before).partial_fit(X[:300], y[:300])
    closed.set_params(fit_intercept=not before).partial_fit(X[300:], y[300:])
    np.testing.assert_allclose(closed.coef_, LinearRegressor(fit_intercept=not before).fit(X, y).coef_, rtol=1e-10)


@pytest.mark.parametrize("what", ["X", "y", "sample_weight"])
def test_a_later_float64_call_beyond_float32_is_named(what):
    # The state of float32 calls takes later float64 rows in float32: values beyond its range became inf after
    # validation and the call ended in a DivergenceError blaming the learning rate (NumPy's cast warning aside).
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 3))
    y = X @ [1.0, 2.0, 3.0]
    est = LinearRegressor(solver="sgd", random_state=0).partial_fit(X[:100].astype(np.float32),
                                                                     y[:100].astype(np.float32))
    X2, y2, w2 = X[100:].copy(), y[100:].copy(), np.ones(100)
    {"X": X2, "y": y2, "sample_weight": w2}[what][3] = 1e39
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # (no NumPy overflow warning either)
        with pytest.raises(ValueError, match=f"{what} has values beyond the range of float32"):
            est.partial_fit(X2, y2, sample_weight=w2)


@pytest.mark.parametrize("solver", ["adagrad", "rmsprop", "adam", "adamw"])
def test_squared_gradients_beyond_float32_are_named(solver):
    # The adaptive rules square the gradients in the data's dtype: on float32 targets of 1e30 the squares were inf,
    # every step 0, and the fit returned zero coefficients with a ConvergenceWarning about conditioning.
    rng = np.random.default_rng(0)
    X = rng.standard_normal((200, 3)).astype(np.float32)
    y = ((X @ np.array([1.0, -2.0, 3.0]) + 0.5) * 1e30).astype(np.float32)
    with pytest.raises(ValueError, match="squares the gradients.*exceed float32's range"):
        LinearRegressor(solver=solver, random_state=0).fit(X, y)
    est = LinearRegressor(solver=solver, random_state=0).fit(X.astype(np.float64), y.astype(np.float64))
    np.testing.assert_allclose(est.coef_ / 1e30, [1.0, -2.0, 3.0], rtol=1e-3)


@pytest.mark.parametrize("first, second", [("adam", "adamw"), ("momentum", "nesterov"), ("normal", "sgd")])
def test_a_warm_start_with_another_solver_starts_from_the_previous_coefficients(first, second):
    # It started from scratch, silently (the closed form's exact coefficients were thrown away for SGD's from
    # zero); the other solver's optimizer state is not kept: as coef_init and intercept_init, bit for bit.
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 3))
    y = X @ np.array([1.0, 2.0, 3.0]) + 0.5 + 0.1 * rng.normal(size=300)
    kw = dict(random_state=0, max_epochs=3, tol=None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est = LinearRegressor(solver=first, warm_start=True, **kw).fit(X, y)
        coef, intercept = est.coef_.copy(), est.intercept_
        est.set_params(solver=second).fit(X, y)
        ref = LinearRegressor(solver=second, **kw).fit(X, y, coef_init=coef, intercept_init=intercept)
    np.testing.assert_array_equal(est.coef_, ref.coef_)
    assert est.intercept_ == ref.intercept_


@pytest.mark.parametrize("solver", ["sgd", "adam", "lsqr", "newton", "normal", "auto"])
@pytest.mark.parametrize("sparse", [False, True])
def test_a_warm_start_on_other_features_or_targets_is_an_error(solver, sparse):
    # A warm start continues the previous fit; on 12 features after 10 it started afresh, silently, where
    # SGDRegressor(warm_start=True) says "X has 12 features, but SGDRegressor is expecting 10".
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 12))
    y = X @ rng.normal(size=12) + 0.1 * rng.normal(size=200)
    X = sp.csr_matrix(X) if sparse else X
    kw = dict(solver=solver, random_state=0, warm_start=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est = LinearRegressor(**kw).fit(X[:, :10], y)
        coef = est.coef_.copy()
        with pytest.raises(ValueError, match="X has 12 features, but LinearRegressor is expecting 10"):
            est.fit(X, y)
        with pytest.raises(ValueError, match="y has 2 target.*warm_start=True continues a fit of 1"):
            est.fit(X[:, :10], np.c_[y, -y])
        np.testing.assert_array_equal(est.coef_, coef)  # (a failed fit changes nothing)
        if solver not in ("normal", "auto"):  # coef_init overrides the warm start (as SGDRegressor's)
            est.fit(X, y, coef_init=np.zeros(12))
            assert est.n_features_in_ == 12
        est.set_params(warm_start=False).fit(X, np.c_[y, -y])
        assert est.coef_.shape == (2, 12)


def test_nesterov_refuses_dampening_as_torch_does():
    # (dropped silently: solver='nesterov', dampening=0.5 was bit-identical to dampening=0)
    X, y = np.random.default_rng(0).normal(size=(50, 2)), np.arange(50.0)
    with pytest.raises(ValueError, match="solver='nesterov' takes no dampening"):
        LinearRegressor(solver="nesterov", dampening=0.5).fit(X, y)
    LinearRegressor(solver="momentum", dampening=0.5, max_epochs=2, tol=None).fit(X, y)


@pytest.mark.parametrize("loss", ["huber", "absolute_error"])
@pytest.mark.parametrize("solver", ["sgd", "momentum"])
def test_a_robust_warm_start_on_its_own_rows_continues_its_state(solver, loss):
    # The stale-map test compared rates that carry the robust loss's residual scale, which the first fit had
    # shrunk: a warm start on the same rows was taken for stale and restarted (t_ 700 -> 630, not 1,400)
    rng = np.random.default_rng(0)
    X = rng.normal(size=(700, 4)) * [1, 10, 0.1, 1]
    y = X @ np.array([1.0, 0.2, 5.0, -1.0]) + 100 + 0.5 * rng.standard_t(3, size=700)  # residuals 100 -> 0.5
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est = LinearRegressor(solver=solver, loss=loss, random_state=0, warm_start=True, max_epochs=10).fit(X, y)
        t = est.t_
        est.fit(X, y)
    assert est.t_ == 2 * t


@pytest.mark.parametrize("solver", ["adam", "adagrad", "rmsprop"])
def test_a_positive_fit_from_an_unconstrained_start_takes_its_rate_at_the_projected_start(solver):
    # At the unconstrained optimum the first gradient is 0: the adaptive rate was 1e-17 and the fit stayed at the
    # clipped start (R^2 -0.38, NNLS's 0.79), unwarned. The rate is now taken where the projected steps start.
    rng = np.random.default_rng(0)
    Z = rng.normal(size=(400, 3))
    X = np.c_[Z[:, 0], 0.8 * Z[:, 0] + 0.6 * Z[:, 1], Z[:, 2]]
    y = X @ np.array([3.0, -2.0, 1.0]) + 0.1 * rng.normal(size=400)
    unconstrained = LinearRegressor().fit(X, y)
    est = LinearRegressor(solver=solver, positive=True, random_state=0).fit(
        X, y, coef_init=unconstrained.coef_, intercept_init=unconstrained.intercept_)
    nnls = LinearRegressor(positive=True).fit(X, y)
    assert est.score(X, y) > nnls.score(X, y) - 1e-3


@pytest.mark.parametrize("solver", ["adam", "adagrad"])
def test_an_empty_first_chunk_leaves_the_adaptive_rate_to_the_next(solver):
    # Rows that store nothing, targets whose mean is inexact: the first gradient is that mean's rounding (1e-17),
    # and Adam took it as the rate's scale (3.6e-17): R^2 -0.02 after 10 passes, unwarned. It is no gradient.
    import scipy.sparse as sp

    rng = np.random.default_rng(0)
    X = sp.random(2000, 300, density=0.03, format="csr", random_state=0, data_rvs=rng.standard_normal)
    y = X @ rng.normal(size=300) + 1.0
    est = LinearRegressor(solver=solver, random_state=0)
    est.partial_fit(sp.csr_matrix((5, 300)), np.array([9.0, 10.0, 11.0, 12.0, 13.5]))
    for _ in range(10):
        for i in range(0, 2000, 250):
            est.partial_fit(X[i : i + 250], y[i : i + 250])
    assert est.learning_rate_ > 1e-3 and est.score(X, y) > 0.99


@pytest.mark.parametrize("how", ["warm", "partial_fit"])
def test_switching_to_sparse_mode_lazy_on_dense_rows_goes_on_from_the_coefficients(how):
    # SparseAdam mode steps dense rows as CSR, which the exact rule's map of dense rows (it centres columns) cannot
    # map: the switch was refused with "continuing it on sparse X would densify X" to a caller passing dense X.
    rng = np.random.default_rng(0)
    levels = rng.integers(0, 20, size=600)
    X = np.c_[np.eye(20)[levels], rng.normal(size=600) * (rng.random(600) < 0.1), rng.normal(size=600) + 3]
    y = X @ rng.normal(size=22) + 0.1 * rng.normal(size=600)
    est = LinearRegressor(solver="adam", random_state=0, warm_start=how == "warm", max_epochs=5, tol=None)
    fit = est.fit if how == "warm" else est.partial_fit
    fit(X, y)
    est.set_params(sparse_mode="lazy")
    fit(X, y)  # (raised ValueError)
    assert np.isfinite(est.coef_).all()


def test_partial_fit_names_a_changed_loss_not_a_hand_over():
    # Under "auto" a squared-error partial_fit keeps the closed form's statistics; after set_params(loss="huber")
    # the next call's refusal said the closed form had "handed over to the closed form (solver_='cholesky')" and
    # never named the loss that changed.
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 3))
    y = X @ [1.0, 2.0, 3.0] + rng.normal(size=200)
    est = LinearRegressor().partial_fit(X[:100], y[:100])
    est.set_params(loss="huber")
    with pytest.raises(ValueError) as info:
        est.partial_fit(X[100:], y[100:])
    message = str(info.value)
    assert "handed over" not in message
    assert "earlier fit or partial_fit ran solver 'normal'" in message
    assert "loss is now 'huber', which 'normal' does not fit" in message


@pytest.mark.parametrize("loss", ["squared_error", "huber"])
@pytest.mark.parametrize("call", ["fit", "partial_fit"])
@pytest.mark.parametrize("case", ["plain", "a zero-weight row", "one of two targets"])
def test_targets_whose_squares_underflow_are_refused_by_the_adaptive_rules(loss, call, case):
    # Targets of 1e-170: their losses round to 0, and Adam returned zero coefficients for the squared error, and
    # Huber (epsilon scaled alike) ended 148% above its minimum, both silently. Judged on the rows of positive
    # weight (a row of weight 0 and y = 1 let it through) and per target.
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 4))
    y = (X @ rng.normal(size=4) + 0.1 * rng.normal(size=200)) * 1e-170
    w = None
    if case == "a zero-weight row":
        X, y, w = np.vstack([X, np.ones(4)]), np.r_[y, 1.0], np.r_[np.ones(200), 0.0]
    elif case == "one of two targets":
        y = np.column_stack([y * 1e170, y])
    est = LinearRegressor(solver="adam", loss=loss, epsilon=1.35e-170 if loss == "huber" and y.ndim == 1 else 1.35)
    with pytest.raises(ValueError, match=r"largest magnitude is .*e-1[67]\d: squared, it underflows float64"):
        getattr(est, call)(X, y, sample_weight=w)
    assert not hasattr(est, "coef_")


def test_tiny_targets_are_fitted_by_sgd_and_judged_once_by_partial_fit():
    # SGD's rate carries no unit of y: it fits targets of 1e-170. A partial_fit call of tiny targets after calls
    # of unit ones continues (the first call set the scale; each call was judged alone, and refused).
    rng = np.random.default_rng(0)
    X = rng.normal(size=(400, 3))
    y = X @ np.array([1.0, -2.0, 3.0]) + 0.01 * rng.normal(size=400)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sgd = LinearRegressor(solver="sgd", random_state=0).fit(X, y * 1e-170)
        np.testing.assert_allclose(sgd.coef_ / 1e-170, [1.0, -2.0, 3.0], atol=0.05)
        est = LinearRegressor(solver="adam", random_state=0).partial_fit(X[:300], y[:300])
        est.partial_fit(X[300:], y[300:] * 1e-170)


def test_a_stream_of_targets_whose_squares_underflow_is_refused_by_its_rate_sample():
    # A stream is judged by the rate's sample of every chunk: Adam on a stream of targets of 1e-170 stopped at zero
    # coefficients, silently, and one tiny chunk among unit ones fits.
    rng = np.random.default_rng(0)
    X = rng.normal(size=(400, 3))
    y = X @ np.array([1.0, -2.0, 3.0]) + 0.01 * rng.normal(size=400)
    tiny = [(X[i : i + 100], y[i : i + 100] * 1e-170) for i in range(0, 400, 100)]
    with pytest.raises(ValueError, match=r"y's largest magnitude is .*e-1[67]\d: squared, it underflows float64"):
        LinearRegressor(solver="adam", random_state=0).fit_stream(tiny)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        LinearRegressor(solver="adam", random_state=0, max_epochs=2).fit_stream(
            [tiny[0]] + [(X[i : i + 100], y[i : i + 100]) for i in range(100, 400, 100)])


@pytest.mark.parametrize("sparse", [False, True])
def test_warm_start_on_targets_of_a_larger_scale_is_not_a_divergence(sparse):
    # The divergence limit was the first fit's (1e10 times its zero model's loss): a warm refit on y x 1e10 (or a
    # dense squared-error one on y x 1e6) raised DivergenceError at its first minibatch, where a fresh fit converges
    import scipy.sparse as sp

    rng = np.random.default_rng(0)
    X = rng.standard_normal((500, 20))
    if sparse:
        X = sp.random(500, 200, density=0.05, format="csr", random_state=np.random.RandomState(0),
                      data_rvs=rng.standard_normal)
    y = X @ rng.standard_normal(X.shape[1]) + 0.1 * rng.standard_normal(500)
    loss, scale = ("huber", 1e10) if sparse else ("squared_error", 1e6)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always", ConvergenceWarning)
        est = LinearRegressor(solver="sgd", loss=loss, random_state=0, warm_start=True).fit(X, y)
        est.fit(X, y * scale)
        fresh = LinearRegressor(solver="sgd", loss=loss, random_state=0).fit(X, y * scale)
    assert np.isfinite(est.coef_).all()
    if loss == "squared_error":
        assert est.score(X, y * scale) >= fresh.score(X, y * scale) - 0.05
    else:
        # Huber's threshold of 1.35 on targets of 1e10: every residual is an outlier and the warm start's steps,
        # at the earlier fit's rate, hardly move; the plateau check says so (a fresh fit starts at the targets'
        # centre with a rate taken on them)
        assert any("loss plateau" in str(w.message) for w in seen)


@pytest.mark.parametrize("sparse", [False, True])
@pytest.mark.parametrize("solver", ["sgd", "momentum", "nesterov"])
def test_a_partial_fit_call_back_from_larger_targets_is_not_a_divergence(solver, sparse):
    # A call's divergence limit takes the loss where it starts, as a warm fit's does: calls on y, then y x 1e6,
    # then y again started 1e12 times above the kept limit (1e10 times y's zero-model loss) and raised
    # DivergenceError at the first call back, where a first call from those coefficients converges; momentum's
    # overshoot on the way down then started the third call back above the second's mean loss, which raised.
    import scipy.sparse as sp

    rng = np.random.default_rng(0)
    X = rng.standard_normal((300, 8))
    y = X @ rng.standard_normal(8) + 0.1 * rng.standard_normal(300)
    X = sp.csr_matrix(X) if sparse else X

    def history():
        est = LinearRegressor(solver=solver, random_state=0)
        for targets in [y] + [1e6 * y] * 10:
            est.partial_fit(X, targets)
        return est

    est, twin = history(), history()
    start = 0.5 * np.mean((est.predict(X) - y) ** 2)
    for _ in range(30):
        est.partial_fit(X, y)
        twin.partial_fit(X, y)
    assert np.isfinite(est.coef_).all() and est.loss_curve_[-1] < start * 1e-6
    np.testing.assert_array_equal(est.coef_, twin.coef_)  # the retried call's row order is the call's own
    # a genuine divergence after it is still caught, and leaves the estimator as it was
    est.set_params(learning_rate=100.0, schedule="constant")
    before = est.coef_.copy()
    with pytest.raises(DivergenceError, match="diverged"):
        est.partial_fit(X, y)
    np.testing.assert_array_equal(est.coef_, before)


def test_a_call_whose_first_minibatch_is_over_the_limit_is_not_blamed_on_the_rate():
    # A chunk of rows 1e6 times the earlier calls' is over the limit at its first minibatch, before any step, at
    # any rate: the error advised a smaller learning rate
    rng = np.random.default_rng(0)
    X = rng.standard_normal((300, 8))
    y = X @ rng.standard_normal(8) + 0.1 * rng.standard_normal(300)
    est = LinearRegressor(solver="adam", random_state=0)
    for _ in range(5):
        est.partial_fit(X, y)
    glitched = X.copy()
    glitched[:10] *= 1e6
    with pytest.raises(DivergenceError, match="before its first step.*far larger scale"):
        est.partial_fit(glitched, y)


@pytest.mark.parametrize("history", ["large", "zero"])
def test_a_warm_fits_raised_divergence_limit_is_its_own(history):
    # A warm fit's limit is raised to its targets' and its start's loss for that fit only: kept, a fit on y x 1e12
    # had left a later diverging fit (a constant rate of 10) returning coefficients of 1e11 with no error; after a
    # fit of all-zero targets (no limit) such a fit returned 1e46. Back from y x 1e12 the start's loss counts: the
    # warm fit on y starts at coefficients 1e12 times too large, which a fresh fit from them survives.
    rng = np.random.default_rng(0)
    X = rng.standard_normal((300, 8))
    y = X @ rng.standard_normal(8) + 0.1 * rng.standard_normal(300)
    est = LinearRegressor(solver="sgd", random_state=0, warm_start=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for targets in ([y, 1e12 * y, y] if history == "large" else [0 * y, y]):
            est.fit(X, targets)
    assert est.score(X, y) > 0.99
    est.set_params(learning_rate=10.0, schedule="constant", batch_size=300, max_epochs=14)
    before = est.coef_.copy()
    with pytest.raises(DivergenceError):
        est.fit(X, y)
    np.testing.assert_array_equal(est.coef_, before)


@pytest.mark.parametrize("solver, average", [("adagrad", False), ("rmsprop", False), ("adam", False),
                                             ("sgd", False), ("sgd", True)])
def test_a_warm_start_on_shifted_targets_recentres_its_intercepts(monkeypatch, solver, average):
    # The adaptive rules move a coordinate by about the rate a step: warm-started on the same X with y + 100 sd,
    # the kept intercept stayed far off, and AdaGrad, RMSProp and Adam ended 3e5-4e5 times the optimal objective
    # above it after 1,100 epochs (warned only to raise max_epochs). The intercepts (and the average's) now move to
    # the residuals' mean first, as a fresh fit starts at the targets' mean; on targets near the earlier fit's
    # nothing moves, bit for bit.
    from fastopt import _iterative

    rng = np.random.default_rng(0)
    Z = rng.normal(size=(150, 4))
    X = np.hstack([Z, Z[:, :2], 2 * Z[:, :1]])
    y = Z @ [1.0, -1.0, 2.0, 0.5] + 0.2 * rng.normal(size=150)
    A = np.c_[X, np.ones(150)]
    # (-3 y - 30 flips the coefficients, which an average that continues over the earlier fit's iterates lags)
    for y2 in (y + 100 * y.std(),) if average else (y + 100 * y.std(), -3 * y - 30):
        optimum = np.mean((A @ np.linalg.lstsq(A, y2, rcond=None)[0] - y2) ** 2)
        est = LinearRegressor(solver=solver, average=average, random_state=0, warm_start=True).fit(X, y)
        with warnings.catch_warnings():
            warnings.simplefilter("error", ConvergenceWarning)
            est.fit(X, y2)
        # (the average stops within 4.4e-3 on this design warm-started on y itself: the same here)
        assert np.mean((est.predict(X) - y2) ** 2) / optimum - 1 < (5e-3 if average else 1e-3)
    same = LinearRegressor(solver=solver, average=average, random_state=0, warm_start=True).fit(X, y)
    same.fit(X, y + 0.01 * y.std())  # a mean residual (0.025) below the residuals' spread (0.2): nothing moves
    monkeypatch.setattr(_iterative, "_recentre_intercepts", lambda *args: None)
    kept = LinearRegressor(solver=solver, average=average, random_state=0, warm_start=True).fit(X, y)
    kept.fit(X, y + 0.01 * y.std())
    np.testing.assert_array_equal(same.coef_, kept.coef_)
    np.testing.assert_array_equal(same.intercept_, kept.intercept_)
