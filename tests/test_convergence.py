"""Default iterative fits reach the least-squares optimum; the plateau rule, the deterministic ``learning_rate="auto"``
and the preconditioning behind them.

The suite's small members run here (the large ones, n up to 1e6 and d up to 500, in bench/test_convergence.py).
The excess is relative, as fastopt._convergence defines it: ``(L - L*) / max(L*, 1e-6 * L0)`` with ``L*`` from a
float64 QR solve, so a zero-noise problem must reach ``R^2 >= 1 - 1e-9``.
"""
import itertools
import warnings

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st
from threadpoolctl import threadpool_limits

from fastopt import LinearRegressor, _iterative, _iterative_lr, optim
from fastopt._convergence import (
    half_mse,
    make_problem,
    optimum,
    relative_excess,
    scaled_stream,
    small_problem,
    two_scale_targets,
)
from fastopt._validation import Data
from fastopt.exceptions import ConvergenceWarning, RankDeficientWarning

RULES = ["sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adam", "adamw"]
TARGET = 1e-3

# (n, d, problem options): every dimension of the suite at least once, the small corners of each.
SUITE = [
    (1_000, 5, dict(noise=1.0)),
    (1_000, 5, dict(noise=10.0, scaled=True, intercept=False, dtype=np.float32)),
    (1_000, 5, dict(noise=0.0, scaled=True)),
    (5_000, 20, dict(noise=0.1, condition=100.0, dtype=np.float32)),
    (20_000, 50, dict(noise=1.0, condition=1e3, intercept=False)),
    (20_000, 50, dict(noise=0.0, condition=1e3)),
    (5_000, 100, dict(noise=1.0, condition=10.0, scaled=True, intercept=False, dtype=np.float32)),
]


def epoch_cap(est, n_train: int) -> int:
    """The epochs ``est`` may run on ``n_train`` training rows (``max_epochs="auto"`` resolved)."""
    return _iterative.max_epochs(est.get_params(), -(-n_train // est.batch_size))


@pytest.fixture(scope="module")
def problems():
    out = {}
    for i, (n, d, kw) in enumerate(SUITE):
        X, y = make_problem(n, d, seed=i, **kw)
        out[i] = X, y, optimum(X, y, kw.get("intercept", True))
    return out


@pytest.mark.parametrize("rule", RULES)
@pytest.mark.parametrize("member", range(len(SUITE)), ids=[f"{n}x{d}-{kw}" for n, d, kw in SUITE])
def test_default_fit_reaches_the_optimum(problems, member, rule):
    X, y, L_star = problems[member]
    fit_intercept = SUITE[member][2].get("intercept", True)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)  # the plateau rule stopped it, not max_epochs
        est = LinearRegressor(solver=rule, fit_intercept=fit_intercept, random_state=0).fit(X, y)
    assert relative_excess(est, X, y, L_star) <= TARGET
    assert est.n_iter_ < epoch_cap(est, X.shape[0])
    rates = est.learning_rates_
    assert len(rates) == est.n_iter_ == len(est.loss_curve_) and rates[0] == est.learning_rate_
    assert all(b in (a, a * _iterative.PLATEAU_FACTOR) for a, b in itertools.pairwise(rates))


def test_the_plateau_rule_passes_the_noise_floor_of_a_constant_rate():
    # A constant rate stops on its noise ball, far above the optimum (the issue's first table); the plateau rule
    # does not stop there: it cuts the rate and stops only when a cut no longer helps.
    X, y = make_problem(20_000, 20, noise=1.0, seed=3)
    L_star = optimum(X, y, True)
    for rule in ("sgd", "adam"):
        constant = LinearRegressor(solver=rule, schedule="constant", random_state=0).fit(X, y)
        default = LinearRegressor(solver=rule, random_state=0).fit(X, y)
        floor = relative_excess(constant, X, y, L_star)
        assert floor > 10 * TARGET and constant.learning_rates_ == [constant.learning_rate_] * constant.n_iter_
        assert relative_excess(default, X, y, L_star) < floor / 100
        assert default.learning_rate_ == constant.learning_rate_
        assert min(default.learning_rates_) < default.learning_rate_


# ---------------------------------------------------------------- the plateau rule itself


def run_rule(losses, stop=True, floor=0.0, per_round=1, keep_best=False):
    """The rule over ``losses``; with ``keep_best`` each epoch's parameters are ``[epoch]``."""
    rule = _iterative.RatePlateau(1.0, floor, stop, keep_best=keep_best, epochs_per_round=per_round)
    rates, stopped_at = [], None
    for epoch, loss in enumerate(losses):
        rates.append(rule.lr)
        if rule.update(loss, np.array([epoch]) if keep_best else None):
            stopped_at = epoch
            break
    return rates, stopped_at, rule


def test_plateau_rule_keeps_the_rate_while_the_loss_falls():
    rates, stopped, _ = run_rule([10.0 * 0.9**k for k in range(50)])
    assert rates == [1.0] * 50 and stopped is None


def test_plateau_rule_cuts_on_a_plateau_and_stops_when_a_cut_no_longer_helps():
    # 2.0 flat -> cut -> (a cooldown epoch) 1.5 flat: the cut bought 0.5 -> cut -> (cooldown) 1.5 flat: it
    # bought nothing -> stop.
    rates, stopped, rule = run_rule([3.0, 2.0, 2.0, 1.6, 1.5, 1.5, 1.5, 1.5, 1.5])
    f = _iterative.PLATEAU_FACTOR
    assert rates == [1.0, 1.0, 1.0, f, f, f, f * f, f * f] and stopped == 7 and rule.cuts == 2


def test_plateau_rule_keeps_the_rate_through_a_slow_geometric_bias_phase():
    # Falls of 5e-5 of the loss per epoch (below PLATEAU_RTOL = 1e-4) shrinking by r = 0.95 per epoch still owe
    # fall * r / (1 - r) = 9.5e-4 > PLATEAU_STOP_RTOL: not a plateau until the fall drops below 5e-4 / 19, at
    # k = 13 (5e-5 * 0.95**13 = 2.6e-5); the level is 1 + 1e-3 - 5e-5 * (1 - 0.95**k) / 0.05.
    r, falls = 0.95, 5e-5
    seq = [2.0] + [1.0 + 1e-3 - falls * (1 - r**k) / (1 - r) for k in range(30)]
    rates, _, rule = run_rule(seq)
    expected = next(k for k in range(2, 30) if falls * r ** (k - 1) * r / (1 - r) <= _iterative.PLATEAU_STOP_RTOL
                    * seq[k + 1])
    assert rates.index(_iterative.PLATEAU_FACTOR) == expected + 2 and expected > 10 and rule.cuts == 1
    # The same first fall shrinking by 0.3 per epoch owes about 2e-5: a plateau once the ratio is measured.
    r = 0.3
    seq = [2.0] + [1.0 + 1e-3 - falls * (1 - r**k) / (1 - r) for k in range(6)]
    rates, _, rule = run_rule(seq)
    assert rates[:4] == [1.0] * 4 and rates[4] == _iterative.PLATEAU_FACTOR


def test_plateau_rule_does_not_stop_when_the_cut_moved_the_loss_up():
    # An oscillating start: a lucky low before the cut and a higher level after it mean the rate is still too
    # large, not that the optimum is reached; the rule cuts again.
    _, stopped, rule = run_rule([5.0, 1.0, 3.0, 3.0, 2.9999, 1.2, 1.2, 1.2, 1.2])
    assert rule.cuts >= 2 and (stopped is None or stopped > 4)


def test_plateau_rule_without_tol_never_stops_and_then_keeps_its_rate():
    rates, stopped, rule = run_rule([2.0] * 30, stop=False)
    assert stopped is None and rule.cuts == 1 and rates[-1] == _iterative.PLATEAU_FACTOR


def test_plateau_rule_thresholds_scale_with_the_loss():
    # The same sequence scaled by any factor makes the same decisions (relative thresholds).
    seq = [3.0, 2.0, 2.0, 1.5, 1.49, 1.5, 1.5, 1.5]
    base = run_rule(seq)[:2]
    for c in (1e-8, 1e8):
        assert run_rule([c * v for v in seq])[:2] == base


def test_numeric_rate_without_schedule_is_the_constant_schedule(rng):
    # Existing explicit configurations keep their meaning: schedule="auto" with a numeric rate is "constant".
    X, y = make_problem(2_000, 5, seed=1)
    params = dict(solver="adam", learning_rate=0.01, random_state=0, max_epochs=8, tol=None)
    a = LinearRegressor(**params).fit(X, y)
    b = LinearRegressor(**params, schedule="constant").fit(X, y)
    np.testing.assert_array_equal(a.coef_, b.coef_)
    assert a.learning_rates_ == [0.01] * 8
    # and a named schedule with learning_rate="auto" runs that schedule, without preconditioning.
    Xs = X * np.logspace(-2, 2, 5)
    c = LinearRegressor(solver="sgd", schedule="linear", random_state=0, max_epochs=5, tol=None).fit(Xs, y)
    d = LinearRegressor(solver="sgd", schedule="linear", random_state=0, max_epochs=5, tol=None,
                        precondition="none").fit(Xs, y)
    np.testing.assert_array_equal(c.coef_, d.coef_)
    assert c.learning_rates_ == [optim.schedule_lr("linear", c.learning_rate_, k, 5) for k in range(5)]


def test_early_stopping_with_the_plateau_rule_keeps_the_best_validation_score():
    X, y = make_problem(5_000, 10, noise=1.0, seed=2)
    est = LinearRegressor(solver="adam", early_stopping=True, random_state=0).fit(X, y)
    assert est.n_iter_ < epoch_cap(est, 4_500) and len(est.validation_scores_) == est.n_iter_
    assert est.best_validation_score_ == max(est.validation_scores_)
    assert min(est.learning_rates_) < est.learning_rate_


def test_fit_stream_runs_the_plateau_rule():
    X, y = make_problem(6_000, 8, noise=1.0, seed=4)
    chunks = [(X[i : i + 2_000], y[i : i + 2_000]) for i in range(0, 6_000, 2_000)]
    est = LinearRegressor(solver="sgd", random_state=0).fit_stream(chunks)
    assert len(est.learning_rates_) == est.n_iter_ < epoch_cap(est, X.shape[0])
    assert min(est.learning_rates_) < est.learning_rate_
    assert relative_excess(est, X, y) <= TARGET


# ---------------------------------------------------------------- small data: the plateau rule's rounds

# (n, d): epochs of 1 to 5 minibatch steps at the default batch_size=64.
SMALL = [(20, 3), (50, 5), (100, 10), (300, 20)]


@pytest.mark.parametrize("rule", RULES)
def test_default_fit_reaches_the_optimum_on_small_data(rule):
    # Epoch by epoch, an epoch of one to five steps follows a momentum rule's oscillation more than its progress:
    # the plateau rule cut the rate at the first upturn and max_epochs=100 allowed 100 to 500 steps; these fits
    # stopped up to 47 times the optimal loss above it (momentum), most with a ConvergenceWarning. In rounds of
    # 32 steps they pass well below the check's 1% (measured at most 0.16%).
    for seed, (n, d) in enumerate(SMALL):
        X, y = small_problem(n, d, seed)
        with warnings.catch_warnings():
            warnings.simplefilter("error", ConvergenceWarning)
            est = LinearRegressor(solver=rule, random_state=0).fit(X, y)
        assert relative_excess(est, X, y) <= _iterative.PLATEAU_CHECK_RTOL, (n, d)
        steps = -(-n // est.batch_size)
        per = _iterative.epochs_per_round(steps)
        assert per == -(-_iterative.ROUND_STEPS // steps) > 1
        # the rate changes only between rounds
        changes = [i for i, (a, b) in enumerate(itertools.pairwise(est.learning_rates_), 1) if a != b]
        assert changes and all(i % per == 0 for i in changes)
        assert est.n_iter_ < epoch_cap(est, n) == _iterative.MAX_EPOCHS_AUTO * per


@pytest.mark.parametrize("rule", ["momentum", "nesterov", "adam"])
def test_a_numeric_rate_on_small_data_stops_in_rounds_too(rule):
    # The named schedules' rule (patience n_iter_no_change) in one-step epochs: a momentum rule's oscillation
    # ended these fits after a few rising steps, silently, up to 2.2 times the optimal loss above it (momentum,
    # 20 rows). In rounds of 32 steps they reach the optimum.
    for seed, (n, d) in enumerate([(20, 5), (100, 5)]):
        X, y = small_problem(n, d, seed + 10)
        with warnings.catch_warnings():
            warnings.simplefilter("error", ConvergenceWarning)
            est = LinearRegressor(solver=rule, learning_rate=0.01, random_state=0).fit(X, y)
        assert est.learning_rates_ == [0.01] * est.n_iter_  # the constant schedule
        assert relative_excess(est, X, y) <= _iterative.PLATEAU_CHECK_RTOL, (n, d)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(0.5, 2.0), min_size=1, max_size=60), st.integers(1, 5), st.booleans())
def test_plateau_rule_in_rounds_is_the_rule_on_the_round_means(losses, per, stop):
    # Epochs grouped in rounds: the rule judges each complete round's mean exactly as it judges one epoch's loss,
    # and its rate holds through the round.
    rounds = [sum(losses[i : i + per]) / per for i in range(0, len(losses) - per + 1, per)]
    expected_rates, expected_stop, _ = run_rule(rounds, stop=stop)
    rates, stopped_at, rule = run_rule(losses, stop=stop, per_round=per, keep_best=True)
    complete = len(rates) // per
    assert rates[: complete * per] == [r for r in expected_rates[:complete] for _ in range(per)]
    assert stopped_at == (None if expected_stop is None else expected_stop * per + per - 1)
    # keep_best (a validation score) keeps the best epoch's parameters, not the end of the best round
    assert rule.best_params[0] == int(np.argmin(losses[: len(rates)]))
    # the named schedules' rule (tol, patience) likewise
    def stops(values, per_round):
        rule = _iterative.Stopping(0.05, 2, keep_best=True, epochs_per_round=per_round)
        return next((i for i, v in enumerate(values) if rule.update(v, np.array([i]))), None), rule

    expected, _ = stops(rounds, 1)
    stopped_at, rule = stops(losses, per)
    assert stopped_at == (None if expected is None else expected * per + per - 1)
    seen = len(losses) if stopped_at is None else stopped_at + 1
    assert rule.best_params[0] == int(np.argmin(losses[:seen]))


def test_max_epochs_auto_counts_rounds_of_the_stopping_rules():
    params = LinearRegressor().get_params()
    assert params["max_epochs"] == "auto"
    cap = _iterative.MAX_EPOCHS_AUTO
    assert _iterative.max_epochs(params, 1) == cap * _iterative.ROUND_STEPS  # 20 rows: 3,200 epochs
    assert _iterative.max_epochs(params, 5) == cap * 7
    assert _iterative.max_epochs(params, _iterative.ROUND_STEPS) == cap  # from 2,048 rows: as before
    assert _iterative.max_epochs(params, 0) == cap  # steps unknown (a stream before its first pass)
    # the named schedules' rule (a numeric rate means "constant") takes the same rounds
    assert _iterative.max_epochs({**params, "schedule": "cosine"}, 5) == cap * 7
    assert _iterative.max_epochs({**params, "learning_rate": 0.01}, 5) == cap * 7
    assert _iterative.max_epochs({**params, "max_epochs": 7}, 1) == 7
    X, y = small_problem(20, 3, 0)
    with pytest.raises(ValueError, match="max_epochs"):
        LinearRegressor(solver="sgd", max_epochs="many").fit(X, y)
    with pytest.warns(ConvergenceWarning, match=r"reached max_epochs=3 before"):
        LinearRegressor(solver="sgd", max_epochs=3, random_state=0).fit(X, y)


def test_fit_stream_resolves_max_epochs_auto_for_the_named_schedules():
    # Two chunks of 500 rows: 16 steps an epoch, rounds of 2 epochs, so "auto" is 200 epochs, which a linear
    # schedule spans (the first sweep, before the stream's steps are known, takes the base rate either way).
    X, y = small_problem(1000, 4, 6)
    chunks = [(X[:500], y[:500]), (X[500:], y[500:])]
    est = LinearRegressor(solver="sgd", learning_rate=0.01, schedule="linear", tol=None, random_state=0)
    est.fit_stream(chunks)
    assert est.n_iter_ == 200
    assert est.learning_rates_ == [optim.schedule_lr("linear", 0.01, e, 200) for e in range(200)]
    memory = LinearRegressor(solver="sgd", learning_rate=0.01, schedule="linear", tol=None, random_state=0).fit(X, y)
    assert memory.learning_rates_ == est.learning_rates_  # 1,000 rows: 16 steps an epoch as well


def test_fit_stream_on_small_chunks_judges_rounds():
    X, y = small_problem(60, 4, 5)
    chunks = [(X[i : i + 20], y[i : i + 20]) for i in range(0, 60, 20)]  # three 1-step passes an epoch
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        est = LinearRegressor(solver="adam", random_state=0).fit_stream(chunks)
    per = -(-_iterative.ROUND_STEPS // 3)
    changes = [i for i, (a, b) in enumerate(itertools.pairwise(est.learning_rates_), 1) if a != b]
    assert changes and all(i % per == 0 for i in changes)
    assert relative_excess(est, X, y) <= _iterative.PLATEAU_CHECK_RTOL


# ---------------------------------------------------------------- preconditioning


def test_preconditioning_maps_back_to_the_users_units():
    X, y = make_problem(3_000, 6, noise=0.0, scaled=True, seed=5)
    est = LinearRegressor(solver="sgd", random_state=0).fit(X, y)
    affine = est._solver_state.affine
    assert affine is not None
    coef_u, b_u = _iterative.split_params(est._solver_state.weights, 6, 1)
    # The model in the rescaled space and the returned one predict the same.
    np.testing.assert_allclose(affine.transform(X) @ coef_u[0] + b_u[0], est.predict(X), rtol=1e-10, atol=1e-8)
    # Without it SGD cannot pass the columns' 1e8 spread of curvatures within max_epochs.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        raw = LinearRegressor(solver="sgd", random_state=0, precondition="none").fit(X, y)
    assert raw._solver_state.affine is None
    assert relative_excess(est, X, y) <= TARGET < relative_excess(raw, X, y)


def test_preconditioning_is_skipped_where_it_does_not_apply():
    X, y = make_problem(500, 4, scaled=True, seed=6)
    for params in (dict(learning_rate=1e-8), dict(schedule="constant"), dict(precondition="none")):
        est = LinearRegressor(solver="sgd", random_state=0, max_epochs=3, tol=None, **params).fit(X, y)
        assert est._solver_state.affine is None
    standard, y2 = make_problem(500, 4, seed=6)
    assert LinearRegressor(solver="sgd", max_epochs=2, tol=None).fit(standard, y2)._solver_state.affine is None


@settings(max_examples=40, deadline=None)
@given(n=st.integers(2, 60), d=st.integers(1, 8), f32=st.booleans(), full=st.booleans(), seed=st.integers(0, 2**31))
def test_a_shifted_csr_map_equals_the_dense_one(n, d, f32, full, seed):
    """Affine.transform on CSR with shifts (columns csr_shiftable allows) equals the dense map of X.toarray(): the
    same float64 operations, cast to X's dtype; int32 indices, and the caller's X unchanged (shifted columns that
    every row stores take new values only; others are stored anew where the shift fills their zeros), also for
    columns of any density that a map chosen from other sparse rows shifts."""
    import scipy.sparse

    from fastopt._iterative_lr import Affine, csr_shiftable

    rng = np.random.default_rng(seed)
    density = rng.uniform(0.0, 1.0, size=d)
    dense = (rng.normal(size=(n, d)) * 10 + 5) * (rng.random((n, d)) < density)
    dense[rng.random((n, d)) < 0.1] = 3.0  # some values equal to a shift: zeros after it
    chosen = rng.random(d) < 0.7
    if full:  # the chosen columns stored in every row: the map only changes values
        dense[:, chosen] = np.where(dense[:, chosen] == 0, 1.0, dense[:, chosen])
    X = scipy.sparse.csr_array(dense.astype(np.float32 if f32 else np.float64))
    before = X.copy()
    stored = np.bincount(X.indices, minlength=d)
    shift = np.where((stored >= 0.5 * n) & chosen, 3.0, 0.0)
    affine = Affine(shift=shift, scale=rng.uniform(0.5, 2.0, size=d))
    assert csr_shiftable(X, shift)
    out = affine.transform(X)
    expected = ((X.toarray().astype(np.float64) - shift) / affine.scale).astype(X.dtype)
    np.testing.assert_array_equal(out.toarray(), expected)
    assert out.dtype == X.dtype and out.indices.dtype == np.int32 and out.indptr.dtype == np.int32
    assert (X != before).nnz == 0
    if np.any(stored < 0.5 * n):
        assert not csr_shiftable(X, np.where(stored < 0.5 * n, 1.0, 0.0))
    # a map chosen from other sparse rows (from_sparse) shifts its columns here whatever their density
    anywhere = Affine(shift=np.where(chosen, 3.0, 0.0), scale=affine.scale, from_sparse=True)
    expected = ((X.toarray().astype(np.float64) - anywhere.shift) / anywhere.scale).astype(X.dtype)
    np.testing.assert_array_equal(anywhere.transform(X).toarray(), expected)
    assert (X != before).nnz == 0


def test_an_affine_map_keeps_what_it_derives_and_partial_fit_reuses_it():
    """Affine keeps its O(d) derived values (uniform, the shifted columns, the decay of the last alpha, read-only)
    equal to fresh ones; a new alpha gets its own decay; pickling and _replace keep none of them; consecutive
    sparse partial_fit calls under a ridge continue under the same map object, whose decay is not formed again."""
    import pickle

    import scipy.sparse

    from fastopt import LinearRegressor
    from fastopt._iterative_lr import Affine, csr_shiftable

    rng = np.random.default_rng(0)
    affine = Affine(shift=np.where(rng.random(6) < 0.5, 2.0, 0.0), scale=rng.uniform(0.5, 2.0, size=6))
    assert affine.uniform is False and affine.uniform is False
    np.testing.assert_array_equal(affine.shifted, np.flatnonzero(affine.shift))
    first = affine.decay(1e-2)
    assert affine.decay(1e-2) is first and not first.flags.writeable
    np.testing.assert_array_equal(first, 1e-2 / affine.scale**2)
    np.testing.assert_array_equal(affine.decay(3.0), 3.0 / affine.scale**2)  # another alpha: its own
    X = scipy.sparse.csr_array(np.where(rng.random((8, 6)) < 0.9, 1.0, 0.0))
    assert csr_shiftable(X, affine) == csr_shiftable(X, affine.shift)
    for copy in (pickle.loads(pickle.dumps(affine)), affine._replace(from_sparse=True)):
        assert copy._kept == {}
        np.testing.assert_array_equal(copy.scale, affine.scale)
        np.testing.assert_array_equal(copy.decay(1e-2), first)
    assert Affine(shift=np.zeros(3), scale=np.full(3, 2.0)).uniform

    hashed = scipy.sparse.random(600, 400, density=0.02, format="csr", random_state=1)
    y = rng.normal(size=600)
    est = LinearRegressor(solver="sgd", alpha=1e-3, random_state=0)
    est.partial_fit(hashed[:200], y[:200])
    kept = est._solver_state.affine
    assert not kept.uniform  # a ridge decayed per column
    decay = kept.decay(1e-3)
    for lo in (200, 400):
        est.partial_fit(hashed[lo : lo + 200], y[lo : lo + 200])
        assert est._solver_state.affine is kept and kept.decay(1e-3) is decay


def test_a_csr_fit_with_centred_columns_continues_and_refuses_a_dense_fits_map():
    """A fit on CSR whose map centres its numeric columns: warm starts and partial_fit continue under that map on
    the same CSR; a fit on dense X (every column shifted) refuses to continue on sparse X with sparse columns."""
    import scipy.sparse

    rng = np.random.default_rng(3)
    n = 400
    X = np.c_[np.eye(5)[rng.integers(0, 5, n)], rng.normal(size=(n, 2)) + np.array([40.0, -25.0])]
    y = X @ rng.normal(size=7) + 0.1 * rng.normal(size=n)
    Xs = scipy.sparse.csr_array(X)
    est = LinearRegressor(solver="adam", random_state=0, warm_start=True).fit(Xs, y)
    affine = est._solver_state.affine
    np.testing.assert_array_equal(np.flatnonzero(affine.shift), [5, 6])
    est.fit(Xs, y)
    est.partial_fit(Xs, y)
    assert est._solver_state.affine is affine
    assert est.score(X, y) > 0.99
    dense_fit = LinearRegressor(solver="adam", random_state=0, warm_start=True).fit(X, y)
    assert np.count_nonzero(dense_fit._solver_state.affine.shift) == 7
    with pytest.raises(ValueError, match="would densify X"):
        dense_fit.fit(Xs, y)


def test_warm_start_and_partial_fit_continue_under_the_same_map():
    X, y = make_problem(2_000, 5, scaled=True, seed=7)
    # How far one more pass moves the coefficients depends on its row order; at this seed it stays well inside
    # the bound below (as at most seeds, whichever way the orders are drawn).
    est = LinearRegressor(solver="adam", random_state=1, warm_start=True).fit(X, y)
    affine = est._solver_state.affine
    est.fit(X, y)
    assert est._solver_state.affine is affine
    before = est.coef_.copy()
    est.partial_fit(X[:500], y[:500])
    assert est._solver_state.affine is affine
    np.testing.assert_allclose(est.coef_, before, rtol=0.05, atol=1e-3 / np.std(X, axis=0).min())


# ---------------------------------------------------------------- learning_rate="auto" is deterministic


@pytest.mark.parametrize("rule", ["sgd", "momentum", "adam", "adagrad"])
def test_auto_rate_does_not_depend_on_random_state(rule):
    X, y = make_problem(800, 7, seed=8)
    rates = {LinearRegressor(solver=rule, random_state=rs, max_epochs=1, tol=None).fit(X, y).learning_rate_
             for rs in (0, 1, 12345, None, np.random.RandomState(3))}
    assert len(rates) == 1


def test_auto_rate_sample_of_large_data_is_fixed(monkeypatch):
    monkeypatch.setattr(_iterative_lr, "AUTO_ROWS", 100)  # data larger than the sample, cheaply
    X, y = make_problem(1_000, 4, seed=9)
    rates = {LinearRegressor(solver="sgd", random_state=rs, max_epochs=1, tol=None).fit(X, y).learning_rate_
             for rs in (0, 1, None)}
    assert len(rates) == 1


@pytest.mark.parametrize("batch_size, shuffle", [(10_000, False), (32, False)])
def test_fits_without_row_sampling_are_bit_identical_without_random_state(batch_size, shuffle):
    X, y = make_problem(600, 6, scaled=True, seed=10)
    fits = [LinearRegressor(solver="adam", batch_size=batch_size, shuffle=shuffle).fit(X, y) for _ in range(3)]
    for est in fits[1:]:
        np.testing.assert_array_equal(est.coef_, fits[0].coef_)
        assert est.intercept_ == fits[0].intercept_ and est.learning_rates_ == fits[0].learning_rates_


@pytest.mark.parametrize("rule", ["sgd", "adam"])
def test_auto_rate_does_not_depend_on_blas_threads(rule):
    X, y = make_problem(20_000, 64, condition=100.0, seed=11)
    params = dict(solver=rule, random_state=0, max_epochs=1, tol=None)
    default = LinearRegressor(**params).fit(X, y).learning_rate_
    with threadpool_limits(limits=1, user_api="blas"):
        single = LinearRegressor(**params).fit(X, y).learning_rate_
    two = LinearRegressor(**params, n_threads=2).fit(X, y).learning_rate_
    assert default == single == two
    spec = _iterative.make_spec(rule, LinearRegressor(**params).get_params())
    p0 = np.zeros(65)
    args = (spec, X, y[:, None], None, LinearRegressor(**params).get_params(), p0, X.shape[0])
    with threadpool_limits(limits=1, user_api="blas"):
        assert _iterative_lr.sample_learning_rate(*args) == _iterative_lr.sample_learning_rate(*args)
        single = _iterative_lr.sample_learning_rate(*args)
    assert _iterative_lr.sample_learning_rate(*args) == single


def test_power_iteration_matches_the_largest_eigenvalue():
    X, _ = make_problem(3_000, 12, condition=50.0, seed=12)
    Xa = np.hstack([X, np.ones((3_000, 1))])
    w = np.ones(3_000)
    expected = np.linalg.eigvalsh(Xa.T @ Xa / 3_000)[-1]
    got = _iterative_lr._top_eigenvalue(Xa, w, np.zeros(13))
    assert got == pytest.approx(expected, rel=2 * _iterative_lr.POWER_RTOL)


def test_power_iteration_finds_a_top_eigenvector_orthogonal_to_the_column_sums():
    """Two rows mirrored by centring, each a column and its negation: the top eigenvector (4) is orthogonal to
    the column sums plus the root of the diagonal, the structured start alone found the intercept's eigenvalue
    (1) and default SGD diverged at its rate."""
    row = np.zeros(20)
    row[[2, 16]], row[[3, 11]] = 1.0, -1.0
    Xa = np.column_stack([np.vstack([row, -row]), np.ones(2)])
    got = _iterative_lr._top_eigenvalue(Xa, np.ones(2), np.zeros(21))
    assert got == pytest.approx(4.0, rel=2 * _iterative_lr.POWER_RTOL)


def test_default_sgd_fits_two_rows_that_centring_mirrors():
    X = np.zeros((2, 20), np.float32)
    X[0, 3], X[0, 16] = -0.7701788, 0.355313
    X[1, 2], X[1, 11] = -0.51690435, 0.62562686
    Y = np.array([[1.819353822909188, -0.40086607331186463], [0.7007097574787275, 0.8228941646554213]])
    est = LinearRegressor(solver="sgd", random_state=0).fit(X, Y)
    assert est.learning_rate_ * 4.0 <= 1.0 + 2 * _iterative_lr.POWER_RTOL  # within the critical rate, 1 / L
    # an exact fit exists (2 rows, 20 columns): reached to float32 X's rounding
    assert np.max(np.abs(est.predict(X) - Y)) <= 1e-5



def heavy_rows(kind: str, seed: int = 0):
    """4,000 rows where a few carry most of the curvature: a dense one-hot design (two columns of 40 levels)
    under weights ``10^U(-4, 4)`` (the heaviest about 18 times the mean), or ten Gaussian rows 30 times the
    size of the others (900 times their squared norm)."""
    rng = np.random.default_rng(seed)
    n = 4_000
    if kind == "weights":
        X = np.eye(40)[rng.integers(0, 40, size=(n, 2))].reshape(n, 80)
        w = 10.0 ** rng.uniform(-4, 4, size=n)
    else:
        X = rng.normal(size=(n, 10))
        X[:10] *= 30.0
        w = None
    y = X @ rng.normal(size=X.shape[1]) + 0.3 * rng.normal(size=n) + 5.0
    return X, y, w


@pytest.mark.parametrize("sparse", [False, True])
@pytest.mark.parametrize("kind", ["weights", "rows"])
@pytest.mark.parametrize("rule", ["sgd", "momentum", "nesterov"])
def test_default_gradient_rules_fit_heavy_rows(rule, kind, sparse):
    """The auto rate bounds the step a minibatch holding a heavy row takes (R^2 by the rows' weighted
    curvatures, not their mean): at the mean's rate default SGD raised DivergenceError on both designs, and
    momentum ended 3 times the optimal objective above it on another draw of the second."""
    X, y, w = heavy_rows(kind)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RankDeficientWarning)  # one-hot columns with an intercept
        best = LinearRegressor(solver="qr").fit(X, y, sample_weight=w)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        est = LinearRegressor(solver=rule, random_state=0).fit(sp.csr_array(X) if sparse else X, y, sample_weight=w)

    def objective(e):
        r = e.predict(X) - y
        return 0.5 * np.average(r * r, weights=w)

    # The plateau rule stops within a few tenths of a percent of the optimum here (measured 3e-5 to 3.3e-3).
    assert objective(est) - objective(best) <= 1e-2 * objective(best)


def test_auto_rate_of_rows_of_equal_curvature_is_the_critical_rate():
    """Rows of one weighted squared norm (one-hot rows, unweighted) keep ``b / (tr H + (b - 1) L)``."""
    rng = np.random.default_rng(0)
    X = np.eye(12)[rng.integers(0, 12, 500)]
    y = rng.normal(size=(500, 1))
    params = LinearRegressor().get_params()
    spec = _iterative.make_spec("sgd", params)
    Xa = np.hstack([X, np.ones((500, 1))])
    L = _iterative_lr._top_eigenvalue(Xa, np.ones(500), np.zeros(13))
    b = params["batch_size"]
    got = _iterative_lr.sample_learning_rate(spec, X, y, None, params, np.zeros(13), 500)
    assert got == pytest.approx(b / (2.0 + (b - 1) * L), rel=1e-12)


def test_auto_rate_adds_the_ridges_largest_coefficient_not_its_trace():
    """A row's Hessian with the penalty, ``w x x^T + Lambda``, squared is at most ``c + max Lambda`` times itself:
    the ridge adds its largest coefficient to ``R^2``. Its trace counted each column's decay as noise."""
    rng = np.random.default_rng(0)
    X = np.eye(12)[rng.integers(0, 12, 500)]
    y = rng.normal(size=(500, 1))
    decay = np.linspace(0.1, 0.7, 12)  # each column's ridge, as a per-column map makes it
    params = {**LinearRegressor().get_params(), "decay": decay}
    spec = _iterative.make_spec("sgd", params)
    Xa = np.hstack([X, np.ones((500, 1))])
    L = _iterative_lr._top_eigenvalue(Xa, np.ones(500), np.r_[decay, 0.0])
    b = params["batch_size"]
    got = _iterative_lr.sample_learning_rate(spec, X, y, None, params, np.zeros(13), 500)
    assert got == pytest.approx(b / (2.0 + 0.7 + (b - 1) * L), rel=1e-12)


@pytest.mark.parametrize("rule", ["adam", "adagrad"])
def test_default_adaptive_fit_of_hashed_rows_under_a_small_ridge_converges(rule):
    # 10,000 hashed rows of ten values over 2^14 columns, alpha = 1e-3: the ridge's trace (each column's decay
    # alpha / (m_j + alpha) under the per-column map, near 1 for a column stored a few times) was several times
    # R^2 from the rows, and shrank the rate as much. Adam reached max_epochs 4.1e-3 above the optimum and
    # AdaGrad 6.9e-2, both warned; now 5.1e-3 in 44 epochs and 3.6e-3 in 82, silent.
    rng = np.random.default_rng(0)
    n, d, per_row = 10_000, 2**14, 10
    idx = rng.integers(0, d, size=n * per_row).astype(np.int32)
    X = sp.csr_array((rng.normal(size=n * per_row), idx, np.arange(0, n * per_row + 1, per_row)), shape=(n, d))
    X.sum_duplicates()
    y = X @ rng.normal(size=d) + rng.normal(size=n)
    alpha = 1e-3
    best = LinearRegressor(solver="lsqr", alpha=alpha, tol=1e-12).fit(X, y)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        est = LinearRegressor(solver=rule, alpha=alpha, random_state=0).fit(X, y)

    def objective(e):
        r = e.predict(X) - y
        return 0.5 * np.mean(r * r) + 0.5 * alpha * float(np.sum(e.coef_**2))

    assert objective(est) - objective(best) <= 1e-2 * objective(best)


def one_hot_beside_an_offset_column(n: int = 3000, seed: int = 0):
    """CSR rows of three Zipf-distributed categorical columns (300, 100 and 20 levels) one-hot, beside a numeric
    column of mean 100 and spread 50, and ``y = X w + noise + 5``."""
    rng = np.random.default_rng(seed)
    levels = (300, 100, 20)
    cats = [np.minimum(rng.zipf(1.3, n) - 1, k - 1) for k in levels]
    X = sp.hstack([sp.csr_array((np.ones(n), (np.arange(n), c)), shape=(n, k)) for c, k in zip(cats, levels)]
                  + [sp.csr_array(rng.normal(size=(n, 1)) * 50 + 100)], format="csr")
    return X, X @ rng.normal(size=X.shape[1]) + rng.normal(size=n) + 5.0


@pytest.mark.parametrize("rule", [r for r in RULES if r != "adamw"])  # (AdamW's decoupled decay is no ridge)
def test_default_fit_of_one_hot_csr_with_an_intercept_starts_at_the_targets_mean(rule):
    # Each row stores one level of each categorical column, so a constant added to a column's levels and taken
    # from the intercept leaves the fit unchanged; only the ridge moves along that direction. Started at zero,
    # the levels took up the targets' offset with the intercept, and every rule stopped 0.25-0.55 of the optimal
    # objective above it (warned); started at the targets' mean, SGD, momentum, Nesterov and Adam end within
    # 3.1e-3 to 4.0e-3 of it, silent, and AdaGrad and RMSProp 2.5e-2 and 2.2e-2 (warned).
    X, y = one_hot_beside_an_offset_column()
    alpha = 1e-4
    objective = ridge_objective(X, y, alpha)
    best = objective(LinearRegressor(solver="lsqr", alpha=alpha, tol=1e-14, max_iter=100_000).fit(X, y))
    adaptive_scale = rule in ("adagrad", "rmsprop")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore" if adaptive_scale else "error", ConvergenceWarning)
        est = LinearRegressor(solver=rule, alpha=alpha, random_state=0).fit(X, y)
    assert objective(est) / best - 1.0 < (0.1 if adaptive_scale else 1e-2)


def test_auto_start_of_the_intercepts():
    """``learning_rate="auto"`` with squared error starts the intercepts at the targets' weighted mean; a numeric
    rate, a robust loss and a fit without intercept start them at zero, as scikit-learn and PyTorch do."""
    Y = np.array([[1.0, 10.0], [3.0, 20.0], [8.0, 60.0]])
    w = np.array([1.0, 1.0, 2.0])
    params = LinearRegressor().get_params()
    np.testing.assert_allclose(_iterative._auto_centre(params, Y, w), [5.0, 37.5], rtol=1e-15)
    np.testing.assert_allclose(_iterative._auto_centre(params, Y, None), [4.0, 30.0], rtol=1e-15)
    for change in ({"learning_rate": 0.01}, {"loss": "huber"}, {"fit_intercept": False}):
        assert _iterative._auto_centre({**params, **change}, Y, w) is None
    np.testing.assert_array_equal(_iterative_lr.target_centre(Y, np.zeros(3)), [0.0, 0.0])  # no weight: zeros
    np.testing.assert_array_equal(_iterative_lr.target_centre(np.array([[np.nan], [1.0]]), None), [0.0])
    # Columns of zeros: only the intercepts move. One full-batch momentum step (0.1 of the way from zero) leaves
    # them at the mean they start from; a numeric rate starts them at zero.
    rng = np.random.default_rng(0)
    X, y = np.zeros((200, 3)), rng.normal(size=200) + 7.0
    est = LinearRegressor(solver="momentum", batch_size=200, max_epochs=1, tol=None).fit(X, y)
    assert est.intercept_ == pytest.approx(y.mean(), rel=1e-12)
    est = LinearRegressor(solver="momentum", batch_size=200, max_epochs=1, tol=None, learning_rate=0.1).fit(X, y)
    assert abs(est.intercept_) < 0.5 * abs(y.mean())


def four_columns(n: int, half_zero: bool = False):
    """``n`` rows of four standard normal columns (with ``half_zero``, about half their entries zero), ``y = X
    (1, 2, 3, 4) + 0.3 noise``, and the least-squares coefficients then intercept."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(n, 4))
    if half_zero:
        X = X * (rng.random((n, 4)) < 0.5)
    y = X @ np.array([1.0, 2.0, 3.0, 4.0]) + 0.3 * rng.normal(size=n)
    return X, y, np.linalg.lstsq(np.c_[X, np.ones(n)], y, rcond=None)[0]


@pytest.mark.parametrize("rule", RULES)
def test_default_fit_does_not_depend_on_the_features_common_scale(rule):
    # Features all of scale 1e-3 next to the intercept's column of ones made the Hessian's condition number 1e6
    # with a column-scale spread of 1, so no preconditioning ran: SGD fitted the intercept alone and stopped on a
    # settled loss, without a warning (every rule 4.0 off at 1e-6 and 1e-3). The intercept's scale now counts.
    # At 1e-14 and below every column was taken for constant (an absolute test, std <= 1e-12), and every rule fitted
    # the intercept alone (R^2 0, silent); the test is now relative to each column's mean square. Beyond 1e+-154
    # the squares under- or overflow: the moments are taken of X / 2^e (1e-200 fitted the intercept alone, silently;
    # 1e200 diverged at step 1 with a NaN rate).
    X, y, exact = four_columns(5000)
    fits = {}
    scales = (1e-300, 1e-200, 1e-100, 1e-14, 1e-6, 1e-3, 1e3, 1e100, 1e200, 1e300)
    for c in scales:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            est = LinearRegressor(solver=rule, random_state=0).fit(X * c, y)
        fits[c] = np.append(est.coef_ * c, est.intercept_)
        # the rules' default noise floor on this problem is about 2e-3 (as on unit-scale columns)
        np.testing.assert_allclose(fits[c], exact, atol=1e-2)
    # the standardised problems are the same to rounding
    for c in scales:
        np.testing.assert_allclose(fits[1e-6], fits[c], rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("rule", RULES)
def test_default_fit_centres_a_constant_column_far_from_zero(rule):
    # A column holding 1234.5 in every row beside the intercept is a direction of curvature 1.5e6: it went unmapped
    # (constant columns were left out of the scales' spread), the rate followed it, and SGD ended at R^2 0.001.
    X, y, exact = four_columns(5000)
    Xc = np.c_[X, np.full(X.shape[0], 1234.5)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est = LinearRegressor(solver=rule, random_state=0).fit(Xc, y)
    # the constant column and the intercept share one direction: judge the predictions' parameters
    np.testing.assert_allclose(est.coef_[:4], exact[:4], atol=1e-2)
    np.testing.assert_allclose(est.intercept_ + 1234.5 * est.coef_[4], exact[4], atol=1e-2)


@pytest.mark.parametrize("spread", [1e-3, 1e-7, 1e-8])  # (CONSTANT_RTOL * 1e4 = 2.3e-9)
def test_a_column_of_small_spread_about_a_large_mean_is_not_constant(spread):
    # The constant test read the variance as the mean square less the squared mean, which keeps only eps * mean^2:
    # a column 1 + 1e-7 z (timestamps, coordinates) was taken for constant, left unscaled, and SGD did not fit it
    # (R^2 0.49). The variance is now summed about a pivot row, accurate to its own size.
    rng = np.random.default_rng(0)
    Z = rng.standard_normal((5000, 2))
    X = np.c_[Z[:, 0], 1e4 + spread * Z[:, 1]]
    y = Z[:, 0] + Z[:, 1]
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        est = LinearRegressor(solver="sgd", random_state=0).fit(X, y)
    assert est.score(X, y) > 0.999
    assert est._solver_state.affine.scale[1] == pytest.approx(spread, rel=0.05)


def test_the_variance_pivot_is_a_row_with_weight():
    # The variance was summed about the first row, whatever its weight: an outlier of 1e12 there at weight 0 made
    # its deviations rounding noise, the unit column took a scale of 1.6e4, and SGD left it unfitted (R^2 0.81).
    rng = np.random.default_rng(0)
    Z = rng.standard_normal((2000, 2))
    X = Z.copy()
    X[0, 0] = 1e12
    y = Z @ np.array([1.0, 2.0]) + 0.1 * rng.standard_normal(2000)
    w = np.ones(2000)
    w[0] = 0.0
    est = LinearRegressor(solver="sgd", random_state=0).fit(X, y, sample_weight=w)
    assert est._solver_state.affine is None or est._solver_state.affine.scale[0] == pytest.approx(1.0, rel=0.1)
    assert est.score(X[1:], y[1:]) > 0.99


def test_a_column_whose_mean_square_overflows_is_mapped_without_an_intercept():
    # Its deviations' squares were finite, so no power of two was taken; its mean square overflowed, and its
    # scale came out inf: coefficient 0, R^2 -3.1.
    rng = np.random.default_rng(0)
    Z = rng.standard_normal((2000, 2))
    X = np.c_[Z[:, 0], 1e155 * (1.0 + 1e-3 * Z[:, 1])]
    y = Z[:, 0] + 2e-155 * X[:, 1]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        est = LinearRegressor(solver="sgd", random_state=0, fit_intercept=False).fit(X, y)
    assert est.score(X, y) > 0.999


@pytest.mark.parametrize("fit_intercept", [True, False])
def test_columns_whose_squares_underflow_alone_are_mapped(fit_intercept):
    # One exponent for every column (that of max |X|) left a column of 1e-200 beside unit ones underflowing: taken
    # for constant, unfitted, and the plateau check saw no curvature there (R^2 0.80, silent). Without an
    # intercept, X of 1e-200 had a spread of 1 and took no map: zero coefficients, silent.
    rng = np.random.default_rng(0)
    Z = rng.standard_normal((5000, 2))
    y = Z @ np.array([1.0, 2.0])
    for X in (Z * np.array([1e-200, 1.0]), Z * 1e-200):
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # (no NumPy overflow warning either)
            est = LinearRegressor(solver="sgd", random_state=0, fit_intercept=fit_intercept).fit(X, y)
        assert est.score(X, y) > 0.999


@pytest.mark.parametrize("rule", RULES)
def test_default_fit_without_intercept_scales_a_column_by_its_mean_square(rule):
    # Without an intercept a column's curvature is its mean square: one of mean 100 and spread 1 was scaled by
    # its spread (1, no map), kept its curvature 1e4, and SGD and momentum ran to max_epochs 3x above the optimum.
    X, y, _ = four_columns(5000)
    X[:, 1] += 100.0
    exact = np.linalg.lstsq(X, y, rcond=None)[0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est = LinearRegressor(solver=rule, random_state=0, fit_intercept=False).fit(X, y)
    np.testing.assert_allclose(est.coef_, exact, atol=1e-2)


def test_plateau_check_judges_tiny_columns_in_the_preconditioners_units():
    # Without preconditioning, features of scale 1e-10 beside the intercept have curvature 1e-20: the check took
    # their directions for null (below round-off of H's trace), and a fit that never moved them (R^2 0) did not
    # warn. Measured against each direction's own diagonal curvature, the check finds them.
    X, y, _ = four_columns(2000)
    for c in (1e-4, 1e-10, 1e-30):
        with pytest.warns(ConvergenceWarning, match="still at least"):
            LinearRegressor(solver="sgd", random_state=0, precondition="none").fit(X * c, y)


@pytest.mark.parametrize("rule", RULES)
def test_sparse_default_fit_does_not_depend_on_the_features_common_scale(rule):
    # As test_default_fit_does_not_depend_on_the_features_common_scale, for CSR X: no preconditioning ran on sparse
    # X, and every rule fitted the intercept alone (4.0 off at 1e-3). Its columns are now scaled (no shift).
    sp = pytest.importorskip("scipy.sparse")
    X, y, exact = four_columns(5000, half_zero=True)
    fits = {}
    for c in (1e-3, 1e3):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            est = LinearRegressor(solver=rule, random_state=0).fit(sp.csr_array(X * c), y)
        assert est._solver_state.affine is not None and not est._solver_state.affine.shift.any()
        fits[c] = np.append(est.coef_ * c, est.intercept_)
        np.testing.assert_allclose(fits[c], exact, atol=1e-2)
    np.testing.assert_allclose(fits[1e-3], fits[1e3], rtol=1e-6, atol=1e-8)


def test_sparse_preconditioning_on_one_hot_and_unscaled_numeric_columns():
    # A ColumnTransformer-like CSR design: one-hot columns of three categorical features next to three unscaled
    # numeric ones (means 50, scales 10, 1,000 and 0.01). Without the scaling, SGD stopped 32 times the optimum's
    # loss above it, with no warning.
    sp = pytest.importorskip("scipy.sparse")
    rng = np.random.default_rng(1)
    n = 20_000
    cats = [rng.integers(0, k, n) for k in (5, 50, 500)]
    blocks = [sp.csr_array((np.ones(n), c, np.arange(n + 1)), shape=(n, int(c.max()) + 1)) for c in cats]
    num = np.c_[rng.normal(50, 10, n), rng.exponential(1000, n), rng.normal(0, 0.01, n)]
    X = sp.hstack([*blocks, sp.csr_array(num)], format="csr")
    y = sum(rng.normal(size=int(c.max()) + 1)[c] for c in cats) + num @ [0.1, 0.001, 30] + 0.3 * rng.normal(size=n)
    best = LinearRegressor(solver="lsqr", tol=1e-12, max_iter=100_000).fit(X, y)

    def loss(est):
        r = est.predict(X) - y
        return 0.5 * float(np.mean(r * r))

    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)  # within 1% of the optimum: the plateau check is quiet
        est = LinearRegressor(solver="sgd", random_state=0).fit(X, y)
    with pytest.warns(ConvergenceWarning, match="stopped at a loss plateau"):  # and now says so
        raw = LinearRegressor(solver="sgd", random_state=0, precondition="none").fit(X, y)
    excess = (loss(est) - loss(best)) / loss(best)
    assert excess < 1e-2 < (loss(raw) - loss(best)) / loss(best)
    # in the user's units: predict is X @ coef_ + intercept_, also after a warm start on the same sparse X, which
    # continues under the same scaling
    np.testing.assert_allclose(est.predict(X), X @ est.coef_ + est.intercept_, rtol=1e-12)
    scale = est._solver_state.affine.scale.copy()
    est.set_params(warm_start=True, max_epochs=2).fit(X, y)
    np.testing.assert_array_equal(est._solver_state.affine.scale, scale)
    np.testing.assert_allclose(est.predict(X), X @ est.coef_ + est.intercept_, rtol=1e-12)


def test_rmsprop_plateau_warning_names_its_steps_on_rare_one_hot_levels():
    # One-hot levels of about 3 rows each (5,000 levels in 15,000 rows) beside two numeric columns: RMSProp's steps,
    # normalised by a decaying average of the squared gradient, stay about the rate's size on such a column, and
    # the default fit stopped 66% above the optimal objective, where the plateau warning blamed the conditioning;
    # Adam finishes within 0.2% on the same rows, silently.
    sp = pytest.importorskip("scipy.sparse")
    rng = np.random.default_rng(2)
    n, levels = 15_000, 5_000
    city = rng.integers(0, levels, n)
    num = np.c_[1000.0 * rng.standard_normal(n), rng.exponential(size=n)]
    X = sp.hstack([sp.csr_array((np.ones(n), city, np.arange(n + 1)), shape=(n, levels)), sp.csr_array(num)],
                  format="csr")
    y = rng.standard_normal(levels)[city] + num @ [0.003, 2.0] + rng.standard_normal(n)
    best = LinearRegressor(solver="cg", alpha=1e-4, tol=1e-12).fit(X, y)

    def objective(est):
        r = y - est.predict(X)
        return 0.5 * float(np.mean(r * r)) + 0.5e-4 * float(np.sum(est.coef_**2))

    with pytest.warns(ConvergenceWarning, match="stopped at a loss plateau") as record:
        est = LinearRegressor(solver="rmsprop", alpha=1e-4, random_state=0).fit(X, y)
    message = next(str(m.message) for m in record if "plateau" in str(m.message))
    assert "RMSProp's normalised steps" in message and "solver='adam'" in message
    assert objective(est) > 1.1 * objective(best)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        est = LinearRegressor(solver="adam", alpha=1e-4, random_state=0).fit(X, y)
    assert objective(est) < 1.01 * objective(best)


@pytest.mark.parametrize("rule", ["sgd", "adam"])
def test_partial_fit_does_not_depend_on_the_features_common_scale(rule):
    # A first partial_fit never preconditioned: with features of scale 1e-3 next to the intercept, every pass
    # fitted the intercept alone (4.0 off after 20 passes, no warning). It now scales the first chunk's columns.
    X, y, exact = four_columns(5000)
    n = X.shape[0]
    fits = {}
    for c in (1.0, 1e-3, 1e3):
        est = LinearRegressor(solver=rule, random_state=0)
        for _ in range(20):
            for i in range(0, n, 1000):
                est.partial_fit(X[i : i + 1000] * c, y[i : i + 1000])
        fits[c] = np.append(est.coef_ * c, est.intercept_)
    # Unit-scale columns are not scaled (their spread with the intercept's 1 is within SCALE_SPREAD). The plateau
    # rule's cuts across calls (PassWatch) bring the passes within 0.0012 (SGD) and 0.0066 (Adam) of the optimum
    # here (the coefficients' standard error is about 0.004); at the base rate they ended on its noise floor, 0.04
    # and 0.1 off, and the unfitted features of the old behaviour 4.0 off.
    np.testing.assert_allclose(fits[1.0], exact, atol=0.02)
    np.testing.assert_allclose(fits[1e-3], fits[1.0], atol=0.02)
    np.testing.assert_allclose(fits[1e-3], fits[1e3], rtol=1e-6, atol=1e-8)


def hashed_features(n: int, d: int, per_row: int, seed: int = 0):
    """CSR rows of ``per_row`` standard normal values at uniformly drawn columns of ``d`` (a hashed design: most
    columns stored a few times in a few thousand rows), and ``y = X w + noise``."""
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, d, size=n * per_row).astype(np.int32)
    X = sp.csr_array((rng.normal(size=n * per_row), idx, np.arange(0, n * per_row + 1, per_row)), shape=(n, d))
    X.sum_duplicates()
    return X, np.asarray(X @ rng.normal(size=d)) + rng.normal(size=n)


@pytest.mark.parametrize("entry", ["partial_fit", "fit_stream"])
def test_sampled_scaling_of_rare_columns_does_not_diverge(entry):
    """Hashed features of standard normal values, 2^17 columns, 30 a row, ten chunks of 4,000 rows: the
    sample's scaling took each column's mean square from its few values there, and one small value scaled the
    column's later values by its inverse: default SGD diverged (partial_fit in its second call, fit_stream in
    its first epoch). Rare columns' values now have a shrunk mean square (_iterative_lr.SCALE_PRIOR_VALUES)."""
    X, y = hashed_features(40_000, 2**17, 30)
    chunks = [(X[i : i + 4000], y[i : i + 4000]) for i in range(0, X.shape[0], 4000)]
    est = LinearRegressor(solver="sgd", random_state=0, max_epochs=3)
    if entry == "partial_fit":
        for chunk in chunks:
            est.partial_fit(*chunk)
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)  # three epochs: the rule has not stopped
            est.fit_stream(lambda: iter(chunks))
    assert est._solver_state.affine is not None  # the columns were scaled
    assert est.score(X, y) > (0.3 if entry == "partial_fit" else 0.9)  # measured 0.424 and 0.990


def test_shrunk_squares_leave_columns_of_many_values_alone():
    """Columns that are not rare keep their sums of squares bit for bit; a rare column's values are given
    SCALE_PRIOR_VALUES more of the rare columns' mean square; unstored columns stay 0."""
    squares = np.array([640.0, 1e-6, 4.0, 0.0, 3.0])
    stored = np.array([64.0, 1.0, 2.0, 0.0, 3.0])
    rare = np.array([False, True, True, False, True])
    out = _iterative_lr._shrunk_squares(squares, stored, rare)
    tau, q = _iterative_lr.SCALE_PRIOR_VALUES, (1e-6 + 4.0 + 3.0) / 6.0
    assert out[0] == 640.0 and out[3] == 0.0
    np.testing.assert_allclose(out[rare], stored[rare] * (squares[rare] + tau * q) / (stored[rare] + tau), rtol=1e-15)
    assert out[1] > 0.5  # a single value of 1e-3 no longer makes a mean square of 1e-6
    np.testing.assert_array_equal(_iterative_lr._shrunk_squares(squares, stored, ~rare & False), squares)


def test_floored_raises_rare_columns_shares_keeping_their_values_mean_square():
    """Rare columns whose stored weight is below the floor are raised to it, their sums of squares with them (the
    values' mean square kept); a rare column at the floor, a column of many values and an empty one stay as they
    are. The floor is SCALE_PRIOR_VALUES values, or a sixteenth of a smaller sample's rows."""
    squares = np.array([2.0, 12.0, 64.0, 0.0, 3.0])
    stored = np.array([1.0, 8.0, 4.0, 0.0, 3.0])
    rare = np.array([True, True, False, True, True])
    sq, st = _iterative_lr._floored(squares, stored, rare, 8.0)
    np.testing.assert_array_equal(st, [8.0, 8.0, 4.0, 0.0, 8.0])
    np.testing.assert_allclose(sq, [16.0, 12.0, 64.0, 0.0, 8.0], rtol=1e-15)
    assert _iterative_lr.floor_values(20_000) == _iterative_lr.SCALE_PRIOR_VALUES
    assert _iterative_lr.floor_values(32) == 2.0


@pytest.mark.parametrize("sparse", [False, True])
def test_small_first_chunk_keeps_each_columns_scale(sparse):
    """A first partial_fit of 20 rows of six columns of scales 10^U(-3, 3): every column has fewer than
    SCALE_RARE_VALUES values, but each is stored in every row, so none is rare and each keeps its own scale (pooled
    into one, the map no longer scaled them apart). Dense rows take the in-memory map (centred, each column's
    standard deviation), CSR rows each column's root mean square."""
    X, y = widely_scaled(80)
    first = X[::4]
    est = LinearRegressor(solver="sgd", random_state=0).partial_fit(sp.csr_array(first) if sparse else first, y[::4])
    affine = est._solver_state.affine
    if sparse:
        np.testing.assert_allclose(affine.scale, np.sqrt(np.mean(first**2, axis=0)), rtol=1e-12)
        assert not affine.shift.any()
    else:
        np.testing.assert_allclose(affine.scale, np.std(first, axis=0), rtol=1e-9)
        np.testing.assert_allclose(affine.shift, np.mean(first, axis=0), rtol=1e-12)


@pytest.mark.parametrize("rule", ["sgd", "adam"])
def test_ridge_default_fit_does_not_depend_on_the_features_common_scale(rule):
    # With alpha > 0 no preconditioning ran, and features of scale 1e-3 next to the intercept were fitted not at
    # all (4.0 off). The map now scales each column, its penalty each column's own decay.
    X, y, _ = four_columns(5000)
    for alpha in (1e-4, 1e-2):
        ridge = LinearRegressor(solver="normal", alpha=alpha).fit(X, y)
        for c in (1e-3, 1e3):
            # the same problem in units scaled by c: coef / c, and alpha * c^2 for the same penalty
            est = LinearRegressor(solver=rule, alpha=alpha * c * c, random_state=0).fit(X * c, y)
            assert est._solver_state.affine is not None
            # the rules' noise floor at the defaults is about 2e-3 here (as on unit-scale columns)
            np.testing.assert_allclose(est.coef_ * c, ridge.coef_, atol=1e-2)
            assert est.intercept_ == pytest.approx(ridge.intercept_, abs=1e-2)


def widely_scaled(n: int, zeros: bool = False):
    """Six columns of scales 10^U(-3, 3) (seed 1; half their entries zero when ``zeros``) and a target with noise
    and an offset."""
    rng = np.random.default_rng(1)
    X = rng.normal(size=(n, 6)) * 10.0 ** rng.uniform(-3, 3, size=6)
    if zeros:
        X[rng.random(X.shape) < 0.5] = 0.0
    y = X @ rng.normal(size=6) + 0.3 * rng.normal(size=n) + 2
    return X, y


def ridge_objective(X, y, alpha: float):
    """The ridge objective of a fitted estimator on ``X``, ``y``: half the mean squared error plus
    ``alpha / 2`` times the squared norm of the coefficients."""
    def objective(est):
        r = est.predict(X) - y
        return 0.5 * float(np.mean(r * r)) + 0.5 * alpha * float(est.coef_ @ est.coef_)

    return objective


@pytest.mark.parametrize("sparse", [False, True])
@pytest.mark.parametrize("fit_intercept", [True, False])
@pytest.mark.parametrize("rule", ["sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adam"])
def test_ridge_default_fits_on_widely_scaled_columns_reach_the_optimum(rule, fit_intercept, sparse):
    """Six columns of scales 10^U(-3, 3) under a ridge: one common scale (with an intercept; none without) left
    them as badly conditioned as unmapped, and the default fits ended up to 120 times the optimal objective above
    it (SGD and the momentum rules; the adaptive ones 1-6%). The map now scales each column to unit curvature,
    data and ridge together, each column taking its own decay: every coupled rule ends within 1e-3 of the
    optimum, without a warning, and its last epoch loss is the objective (data and each column's penalty).
    ``sparse``: half the entries zero, stored CSR (12 times the optimal objective above it, SGD, before), whose
    epoch then steps every coordinate (six columns: cheap)."""
    import scipy.sparse

    X, y = widely_scaled(600, zeros=sparse)
    Xf = scipy.sparse.csr_array(X) if sparse else X
    for alpha in (1e-3, 0.1):
        objective = ridge_objective(X, y, alpha)
        best = objective(LinearRegressor(solver="qr", alpha=alpha, fit_intercept=fit_intercept).fit(X, y))
        with warnings.catch_warnings():
            warnings.simplefilter("error", ConvergenceWarning)
            est = LinearRegressor(solver=rule, alpha=alpha, fit_intercept=fit_intercept, random_state=0).fit(Xf, y)
        assert not est._solver_state.affine.uniform
        assert objective(est) - best <= 1e-3 * best
        assert est.loss_curve_[-1] == pytest.approx(objective(est), rel=1e-3)


def _tfidf_like(n: int, d: int, words: int, seed: int):
    """Documents of ``words`` Zipf-distributed terms from a vocabulary of ``d``, as TF-IDF rows (CSR), and a
    target from one term in ten plus an offset and noise: columns whose scales spread as the terms' frequencies."""
    import scipy.sparse
    from sklearn.feature_extraction.text import TfidfTransformer

    rng = np.random.default_rng(seed)
    p = 1.0 / np.arange(1, d + 1) ** 1.1
    terms = rng.choice(d, size=(n, words), p=p / p.sum())
    counts = scipy.sparse.csr_array((np.ones(n * words), (np.repeat(np.arange(n), words), terms.ravel())),
                                    shape=(n, d))
    counts.sum_duplicates()
    X = scipy.sparse.csr_array(TfidfTransformer().fit_transform(counts))
    y = X @ (5 * rng.standard_normal(d) * (rng.random(d) < 0.1)) + 3 + 0.1 * rng.standard_normal(n)
    return X, y


@pytest.mark.parametrize("rule", ["sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adam"])
def test_ridge_default_fits_on_wide_tfidf_columns_reach_the_optimum(rule):
    """TF-IDF rows (8,000 documents of 8 terms, 6,000 terms: CSR too wide for every-coordinate steps to be cheap)
    under a ridge: one common scale left the terms' columns, whose scales spread with their frequencies, as
    badly conditioned as unmapped, and every default fit ended 1.2-1.5 times the optimal objective above it
    (warned). Each column now takes its own scale and decay here too (SGD, momentum and Nesterov defer it with
    each coordinate's own power of its step map; the other rules step every coordinate under any ridge): within
    1% of the optimum, without a warning, and with the per-column map."""
    X, y = _tfidf_like(8000, 6000, 8, seed=0)
    alpha = 1e-2
    assert not _iterative_lr.csr_steps_cheap(LinearRegressor().get_params(), X, rule)

    def objective(est):
        r = X @ est.coef_ + est.intercept_ - y
        return 0.5 * float(np.mean(r * r)) + 0.5 * alpha * float(est.coef_ @ est.coef_)

    best = objective(LinearRegressor(solver="cg", alpha=alpha, tol=1e-12).fit(X, y))
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        est = LinearRegressor(solver=rule, alpha=alpha, random_state=0).fit(X, y)
    assert not est._solver_state.affine.uniform
    assert objective(est) - best <= 1e-2 * best


def test_partial_fit_continues_a_ridge_fit_under_its_per_column_map():
    """partial_fit after a ridge fit on widely scaled columns continues under the same map, each column with its
    decay: the pass stays at the ridge optimum (a penalty dropped or taken uniform would pull it away)."""
    rng = np.random.default_rng(1)
    X = rng.normal(size=(2000, 4)) * [1e-3, 1.0, 1e2, 1e3]
    y = X @ rng.normal(size=4) + 0.1 * rng.normal(size=2000) + 1.0

    def objective(est):
        r = est.predict(X) - y
        return 0.5 * float(np.mean(r * r)) + 0.5 * 0.05 * float(est.coef_ @ est.coef_)

    best = objective(LinearRegressor(solver="normal", alpha=0.05).fit(X, y))
    est = LinearRegressor(solver="adam", alpha=0.05, random_state=0).fit(X, y)
    affine = est._solver_state.affine
    assert not affine.uniform
    assert objective(est) - best <= 1e-3 * best
    for _ in range(3):  # (without the decay, three passes drift 6.5e-3 of the objective away)
        est.partial_fit(X, y)
    assert est._solver_state.affine is affine
    assert objective(est) - best <= 1e-3 * best


@pytest.mark.parametrize("sparse", [False, True])
@pytest.mark.parametrize("rule", ["sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adam"])
def test_warm_start_adding_ridge_to_widely_scaled_columns_does_not_diverge(rule, sparse):
    """A fit without a ridge on columns of scales 10^U(-3, 3) maps each column by its own scale; a warm start that
    adds ``alpha`` went on under that map with each column's decay ``alpha / s_j^2`` up to 77 (alpha 1e-3) and
    7,700 (0.1), and SGD,
    momentum and Nesterov diverged in its first epoch (DivergenceError) at the rate the fit had left. Those rules
    now start afresh from the coefficients (a ridge map, decays at most 1); the adaptive rules, whose steps each
    coordinate's gradient scale bounds, keep the map and reach the optimum under it. Every rule ends within 1e-3
    of the ridge optimum, without a warning."""
    import scipy.sparse

    X, y = widely_scaled(4000, zeros=True)
    data = scipy.sparse.csr_array(X) if sparse else X
    for alpha in (1e-3, 0.1):
        objective = ridge_objective(X, y, alpha)
        best = objective(LinearRegressor(solver="qr", alpha=alpha).fit(X, y))
        est = LinearRegressor(solver=rule, random_state=0).fit(data, y)
        before = est._solver_state.affine
        assert np.max(before.decay(alpha)) > 50
        with warnings.catch_warnings():
            warnings.simplefilter("error", ConvergenceWarning)
            est.set_params(alpha=alpha, warm_start=True).fit(data, y)
        kept = est._solver_state.affine is before
        assert kept == (rule in ("adagrad", "rmsprop", "adam"))
        assert np.max(est._solver_state.affine.decay(alpha)) <= 1.0 or kept
        assert objective(est) - best <= 1e-3 * best


def test_ridge_map_per_column_decay():
    """The map of a ridge fit on dense X: each column's scale sqrt(variance + alpha) (mean square without an
    intercept), so its decay alpha / scale^2 lies in (0, 1]; so on CSR whose every-coordinate steps are cheap
    (d at most 4 times a minibatch's stored values) and on wider CSR for the rules whose CSR epoch defers each
    weight's own decay or steps every coordinate under a ridge anyway; for AdamW (a decay, not a ridge), and on
    wide CSR for projected momentum (which would step every coordinate), one scale for every column."""
    import scipy.sparse

    rng = np.random.default_rng(2)
    X = rng.normal(size=(400, 4)) * [1e-3, 1.0, 30.0, 1e3] + [0.0, 5.0, 0.0, 0.0]
    params = LinearRegressor(alpha=0.5).get_params()
    for fit_intercept in (True, False):
        params["fit_intercept"] = fit_intercept
        affine = _iterative_lr.choose_affine(params, X, "plateau", np.arange(400), None)
        m2 = X.var(axis=0) if fit_intercept else np.mean(X * X, axis=0)
        np.testing.assert_allclose(affine.scale, np.sqrt(m2 + 0.5), rtol=1e-12)
        decay = _iterative._penalised(params, affine, "sgd")["decay"]
        assert np.all((decay > 0) & (decay <= 1)) and _iterative._penalised(params, affine, "sgd")["alpha"] == 0
    params["fit_intercept"] = True
    assert _iterative_lr.choose_affine(params, X, "plateau", np.arange(400), None, per_column=False).uniform
    assert not _iterative_lr.ridge_per_column("adamw", params, X, False)
    assert not _iterative_lr.ridge_per_column("adam", params, X, True)
    narrow = _iterative_lr.choose_affine(params, scipy.sparse.csr_array(X), "plateau", np.arange(400), None)
    # the offset column (mean 5, standard deviation 1) centred, about its mean; the others about 0
    second = np.where(narrow.shift != 0, X.var(axis=0), np.mean(X * X, axis=0))
    np.testing.assert_array_equal(narrow.shift != 0, [False, True, False, False])
    np.testing.assert_allclose(narrow.scale, np.sqrt(second + 0.5), rtol=1e-12)
    wide = scipy.sparse.hstack([scipy.sparse.csr_array(X), scipy.sparse.csr_array((400, 5000))], format="csr")
    for method in ("sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adam"):
        assert _iterative_lr.ridge_per_column(method, params, wide, False)
        sparse = _iterative_lr.choose_affine(params, wide, "plateau", np.arange(400), None)
        np.testing.assert_allclose(sparse.scale[:4], np.sqrt(second + 0.5), rtol=1e-12)
    params["positive"] = True
    assert _iterative_lr.ridge_per_column("sgd", params, wide, False)
    for method in ("momentum", "nesterov"):
        assert not _iterative_lr.ridge_per_column(method, params, wide, False)
        assert _iterative_lr.ridge_per_column(method, params, X, False)  # dense X: the dense epoch takes the decays


def test_adamw_decay_is_a_factor_in_any_units():
    """AdamW's decoupled decay, w <- (1 - lr alpha) w, is the same factor whatever the features' units, so the common
    scale of a ridge fit leaves its alpha alone. Divided by c^2 like the coupled L2, it turned the factor below -1
    on columns of scale 0.2 (hashed features) and the default fit diverged."""
    rng = np.random.default_rng(13)
    X = (rng.random((850, 60)) < 0.05) * rng.choice([-1.0, 1.0], size=(850, 60))
    y = X @ (10 * rng.normal(size=60)) + 4.0 + 0.3 * rng.normal(size=850)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # (max_epochs: not the point here)
        est = LinearRegressor(solver="adamw", alpha=1.0, random_state=0).fit(X, y)
    affine = est._solver_state.affine
    assert affine is not None and affine.uniform and affine.scale[0] < 0.3
    params = est.get_params()
    assert _iterative._penalised(params, affine, "adamw")["alpha"] == 1.0
    assert _iterative._penalised(params, affine, "adam")["alpha"] == pytest.approx(1.0 / affine.scale[0] ** 2)
    assert np.all(np.isfinite(est.coef_)) and np.abs(est.coef_).max() < np.abs(np.linalg.lstsq(
        np.c_[X, np.ones(850)], y, rcond=None)[0]).max()  # decayed, not diverged


def test_adamw_auto_rate_keeps_its_decay_factor_non_negative():
    """AdamW's decoupled decay multiplies the weights by ``1 - lr alpha`` each step; the "auto" rate came from the
    gradient alone, and with ``alpha`` 100 (rate 0.14) the factor was -13: the default fit diverged in its first
    epoch (DivergenceError), and a warm start adding ``alpha`` 10 at the rate the fit had left (2.7) too. The rate
    is now at most ``1 / alpha`` (fresh, warm and partial_fit), and the decay shrinks the fit."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(2000, 5))
    y = X @ rng.normal(size=5) + 1 + 0.1 * rng.normal(size=2000)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # (how far AdamW's fixed point is: not the point here)
        free = LinearRegressor(solver="adamw", random_state=0).fit(X, y)
        assert free.learning_rate_ > 0.1
        norm = np.linalg.norm(free.coef_)
        for alpha in (100.0, 1000.0):
            est = LinearRegressor(solver="adamw", alpha=alpha, random_state=0).fit(X, y)
            assert est.learning_rate_ <= 1.0 / alpha
            assert np.linalg.norm(est.coef_) < 0.1 * norm
        free.set_params(alpha=10.0, warm_start=True).fit(X, y)
        assert free.learning_rate_ <= 0.1 and np.linalg.norm(free.coef_) < 0.5 * norm
        est = LinearRegressor(solver="adamw", random_state=0).partial_fit(X, y)
        est.set_params(alpha=100.0)
        est.partial_fit(X, y)
        assert np.all(np.isfinite(est.coef_)) and np.linalg.norm(est.coef_) < 0.5 * norm


def test_warm_start_adding_ridge_after_a_per_column_scaling_minimises_the_ridge_objective():
    # A warm start that adds alpha to a fit run under a per-column scaling ran the penalty in the scaled units,
    # where it is not alpha ||w||^2: it ended at the unpenalised fit (99, 200, 300 against the ridge's 91, 184, 281).
    # It now goes on under the same map, each column taking its own decay (dense X, and CSR whose every-coordinate
    # steps are cheap); where the epoch takes no such decay (SparseAdam steps) from the coefficients in the user's
    # units, as a fresh fit from them.
    import scipy.sparse

    rng = np.random.default_rng(0)
    n = 5000
    X = rng.normal(size=(n, 3)) * [0.01, 0.011, 0.012]
    y = X @ np.array([100.0, 200.0, 300.0]) + 0.3 * rng.normal(size=n)
    ridge = LinearRegressor(solver="normal", alpha=1e-5).fit(X, y)
    Xs = scipy.sparse.csr_array(X)
    for data in (X, Xs):
        est = LinearRegressor(solver="sgd", random_state=0).fit(data, y)
        affine = est._solver_state.affine
        assert not affine.uniform
        est.set_params(alpha=1e-5, warm_start=True).fit(data, y)
        assert est._solver_state.affine is affine
        np.testing.assert_allclose(est.coef_, ridge.coef_, rtol=1e-2)
    est = LinearRegressor(solver="adam", sparse_mode="lazy", random_state=0).fit(Xs, y)
    assert not est._solver_state.affine.uniform
    first = (est.coef_.copy(), est.intercept_)
    est.set_params(alpha=1e-5, warm_start=True).fit(Xs, y)
    np.testing.assert_allclose(est.coef_, ridge.coef_, rtol=1e-2)
    fresh = LinearRegressor(solver="adam", sparse_mode="lazy", random_state=0, alpha=1e-5).fit(
        Xs, y, coef_init=first[0], intercept_init=first[1])
    np.testing.assert_array_equal(est.coef_, fresh.coef_)


def test_streamed_and_dask_fits_do_not_depend_on_the_features_common_scale():
    # fit_stream and Dask fits never preconditioned: features of scale 1e-3 next to the intercept were fitted not
    # at all (4.0 off). The sample that sets their learning rate now also sets a scaling without shift, for every
    # chunk; held-out rows are scored in the user's units (early stopping), and under a ridge penalty each column
    # takes its own scale and decay (test_streamed_and_dask_ridge_fits_on_widely_scaled_columns_reach_the_optimum).
    da = pytest.importorskip("dask.array")
    X, y, exact = four_columns(6000)
    n = X.shape[0]
    for options in ({}, {"early_stopping": True}, {"alpha": 1e-4}):
        fits = []
        for c in (1e-3, 1e3):
            kw = {**options, "alpha": options.get("alpha", 0.0) * c * c}  # the same penalty in units scaled by c
            chunks = [(X[i : i + 2000] * c, y[i : i + 2000]) for i in range(0, n, 2000)]
            streamed = LinearRegressor(solver="sgd", random_state=0, **kw).fit_stream(chunks)
            fits.append(np.append(streamed.coef_ * c, streamed.intercept_))
            if not options:
                on_dask = LinearRegressor(solver="sgd", random_state=0).fit(da.from_array(X * c, chunks=2000),
                                                                            da.from_array(y, chunks=2000))
                np.testing.assert_allclose(on_dask.coef_, streamed.coef_, rtol=1e-12)
        # about 5e-3 from least squares at the defaults, as for unit-scale columns
        np.testing.assert_allclose(fits[0], exact, atol=2e-2)
        np.testing.assert_allclose(fits[0], fits[1], rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("rule", ["sgd", "momentum", "adagrad", "adam"])
def test_streamed_and_dask_ridge_fits_on_widely_scaled_columns_reach_the_optimum(rule):
    """Six columns of scales 10^U(-3, 3) under a ridge, in four chunks: fit_stream and Dask fits took one common
    scale (their map has no shift: the chunks need not share the sample's means), which left the columns as badly
    conditioned as unmapped, and SGD and momentum stopped 42% (alpha 1e-3) and 1.0-1.4% (alpha 0.1) above the
    optimum, warned. The sample's map now scales each column to unit curvature, data and ridge
    (``sqrt(m_j + alpha)``, ``m_j`` its mean square), each column its own decay in every chunk's epoch: within
    1e-3 of the optimum, silently, streamed and on Dask blocks alike."""
    da = pytest.importorskip("dask.array")
    X, y = widely_scaled(4000)
    chunks = [(X[i : i + 1000], y[i : i + 1000]) for i in range(0, 4000, 1000)]
    for alpha in (1e-3, 0.1):
        objective = ridge_objective(X, y, alpha)
        best = objective(LinearRegressor(solver="qr", alpha=alpha).fit(X, y))
        with warnings.catch_warnings():
            warnings.simplefilter("error", ConvergenceWarning)
            streamed = LinearRegressor(solver=rule, alpha=alpha, random_state=0).fit_stream(chunks)
            on_dask = LinearRegressor(solver=rule, alpha=alpha, random_state=0).fit(
                da.from_array(X, chunks=1000), da.from_array(y, chunks=1000))
        for est in (streamed, on_dask):
            assert not est._solver_state.affine.uniform
            assert objective(est) - best <= 1e-3 * best


def test_first_partial_fit_under_a_ridge_scales_each_column():
    """A first partial_fit under a ridge took no map at all (one common scale would leave a penalty whose scale
    the later calls' rows did not set): now each column's scale is ``sqrt(m_j + alpha)`` from the call's rows
    (``m_j`` the variance about the shift, their mean, as in memory), kept for the later calls, each column its
    own decay.
    Twenty passes of SGD's partial_fit over four chunks of widely scaled columns ended 4.4 times the optimal
    objective above it; now within a tenth of it (the constant rate's noise floor: partial_fit has no schedule)."""
    n, alpha = 4000, 1e-3
    X, y = widely_scaled(n)
    best = LinearRegressor(solver="qr", alpha=alpha).fit(X, y)
    objective = ridge_objective(X, y, alpha)

    est = LinearRegressor(solver="sgd", alpha=alpha, random_state=0)
    est.partial_fit(X[:1000], y[:1000])
    affine = est._solver_state.affine
    np.testing.assert_allclose(affine.scale, np.sqrt(np.var(X[:1000], axis=0) + alpha), rtol=1e-9)
    # (the mean is summed about a pivot row: rounding of the values' size, |mean| + spread, not the mean's)
    mean, spread = np.mean(X[:1000], axis=0), np.std(X[:1000], axis=0)
    assert np.all(np.abs(affine.shift - mean) <= 1e-12 * (np.abs(mean) + spread))
    decay = _iterative._penalised(est.get_params(), affine, "sgd")["decay"]
    assert np.all((decay > 0) & (decay <= 1))
    for _ in range(20):
        for i in range(0, n, 1000):
            est.partial_fit(X[i : i + 1000], y[i : i + 1000])
    assert est._solver_state.affine is affine
    assert objective(est) - objective(best) <= 0.1 * objective(best)


@pytest.mark.parametrize("alpha", [1.5, 5.0])
@pytest.mark.parametrize("solver", ["sgd", "momentum"])
def test_csr_chunks_under_a_ridge_above_one_keep_the_optimizer_state(solver, alpha):
    """CSR chunks with a column far from centred under a ridge ``alpha > 1``: the first call's map scaled the
    other columns by 1, a decay ``alpha`` beyond 1, so every later call (and every pass of a stream) started
    afresh from the coefficients (``n_iter_`` 1 after 80 calls, the rate never cut) and ended 0.2-1.1% above the
    optimum, silently; at ``alpha = 1.5`` the scale ``sqrt(alpha)``'s rounding made a decay 1 + 2e-16 that did the
    same. Now each call continues the state, as on the dense chunks."""
    rng = np.random.default_rng(0)
    n = 4000
    X = rng.normal(size=(n, 4)) + np.array([0.0, 0.0, 3.0, 0.0])
    y = X @ [1.0, -2.0, 3.0, 4.0] + 5 + rng.normal(size=n)
    objective = ridge_objective(X, y, alpha)
    best = objective(LinearRegressor(solver="qr", alpha=alpha).fit(X, y))
    chunks = [(sp.csr_array(X[i : i + 1000]), y[i : i + 1000]) for i in range(0, n, 1000)]
    est = LinearRegressor(solver=solver, alpha=alpha, random_state=0)
    for _ in range(20):
        for Xc, yc in chunks:
            est.partial_fit(Xc, yc)
    assert est.n_iter_ == 80 and len(est.loss_curve_) == 80
    # the dense chunks' sequence ends about 1e-5 above; a fresh start every call left 2e-3 to 1.1e-2
    assert objective(est) - best <= 2e-4 * best
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        streamed = LinearRegressor(solver=solver, alpha=alpha, random_state=0).fit_stream(chunks)
    assert len(np.unique(streamed.learning_rates_)) > 1  # the plateau rule cut the rate
    assert objective(streamed) - best <= 2e-4 * best


def plateau_bound(message: str) -> float:
    """The lower bound a plateau-check warning states, as a fraction of the fit's loss (printed to 2 digits)."""
    return float(message.split("at least ")[1].split(" of its value")[0])


def _objective(X, y, sw, coef, intercept, alpha):
    """The fits' squared-error objective in float64, per target summed (weights of mean 1)."""
    Xd = np.asarray(X.toarray() if hasattr(X, "toarray") else X, dtype=np.float64)
    w = np.ones(Xd.shape[0]) if sw is None else sw / sw.mean()
    R = Xd @ coef.T + intercept - y
    return float(0.5 * np.mean(w[:, None] * R * R, axis=0).sum() + 0.5 * alpha * np.sum(coef * coef))


@settings(max_examples=60, deadline=None)
@given(n=st.integers(8, 120), d=st.integers(1, 10), k=st.sampled_from([1, 2]), sparse=st.booleans(),
       f32=st.booleans(), weighted=st.booleans(), alpha=st.sampled_from([0.0, 0.3]), fit_intercept=st.booleans(),
       near=st.one_of(st.just(0.0), st.floats(0.0, 1.0)), deficient=st.booleans(), seed=st.integers(0, 2**31))
def test_plateau_gap_is_a_lower_bound_on_the_excess(n, d, k, sparse, f32, weighted, alpha, fit_intercept, near,
                                                      deficient, seed):
    """memory_gap's f is the objective, and 0 <= gain <= f - f*: conjugate-gradient steps from the parameters stay
    feasible, so they cannot go below the minimum (f* from a NumPy least-squares solve of the augmented system).
    Rounding: f, f* and gain are float64 sums of O(n d) terms of size f, so each is within about 1e-12 f.
    ``deficient``: one-hot columns (which sum to the intercept's column) and a repeated column, so that H is
    singular; on small data the check runs to d + 1 steps, past H's range (an exact fit of such a design was
    once reported 6% from its optimum)."""
    import scipy.sparse

    from fastopt._validation import Data

    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d)) * rng.uniform(0.1, 10, size=d) + rng.normal(size=d)
    if deficient and d >= 2:
        m = min(d - 1, 4)  # one-hot columns first, then the last column repeats the first numeric one
        X[:, :m] = np.eye(m)[rng.integers(0, m, size=n)]
        X[:, -1] = X[:, m - 1] if m == d - 1 else X[:, m]
    if sparse:
        X = X * (rng.random((n, d)) < 0.5)
    X = X.astype(np.float32 if f32 else np.float64)
    X64 = X.astype(np.float64)
    Y = X64 @ rng.normal(size=(d, k)) + rng.normal(size=(n, k))
    sw = rng.random(n) + 0.2 if weighted else None
    w = np.ones(n) if sw is None else sw / sw.mean()
    # the optimum: centred (weighted) when there is an intercept, the ridge as d extra rows
    mx = w @ X64 / w.sum() if fit_intercept else np.zeros(d)
    my = w @ Y / w.sum() if fit_intercept else np.zeros(k)
    s = np.sqrt(w / n)[:, None]
    A = np.vstack([(X64 - mx) * s, np.sqrt(alpha) * np.eye(d)])
    coef_star = np.linalg.lstsq(A, np.vstack([(Y - my) * s, np.zeros((d, k))]), rcond=None)[0].T
    b_star = my - coef_star @ mx if fit_intercept else np.zeros(k)
    f_star = _objective(X64, Y, sw, coef_star, b_star, alpha)
    # parameters between the optimum and a random point
    coef = coef_star + near * rng.normal(size=(k, d))
    b = b_star + (near * rng.normal(size=k) if fit_intercept else 0.0)
    p = np.r_[coef.ravel(), b if fit_intercept else []]
    Xf = scipy.sparse.csr_array(X) if sparse else X
    if sparse:
        Xf.indices, Xf.indptr = Xf.indices.astype(np.int32), Xf.indptr.astype(np.int32)
    data = Data(Xf, Y.astype(X.dtype), sw, True)
    p = p.astype(X.dtype).astype(np.float64)  # as a fit in X's dtype reports them
    f, gain = _iterative.memory_gap(data, None if sw is None else w, p, alpha, fit_intercept)
    f_here = _objective(X64, Y.astype(X.dtype).astype(np.float64), sw, p[: k * d].reshape(k, d),
                        p[k * d :] if fit_intercept else 0.0, alpha)
    # Rounding near an exact fit (f* = 0 when n <= d): each residual carries an absolute error of about
    # delta = d u S (u = 1.1e-16, S the rows' root mean square of |x . w| + |y|), so f one of 2 sqrt(f) delta + delta^2
    S = np.sqrt(np.mean((np.abs(X64 @ p[: k * d].reshape(k, d).T) + np.abs(Y)) ** 2))
    delta = 1e-14 * S  # d u <= 10 * 1.1e-16, with a factor 10 to spare
    rounding = 2 * np.sqrt(f_here) * delta + delta * delta
    assert f == pytest.approx(f_here, rel=1e-10, abs=rounding)
    if f32:  # the stored targets are rounded: the optimum moves by their rounding, O(1e-7) of f
        return
    assert 0.0 <= gain <= (f - f_star) + 1e-12 * f + 2 * rounding
    # With a loss scale that puts the bound at 3/4 of the alarm, the check takes as many steps again (here past
    # d + 1, where the residual is round-off): the same f, a gain at least as large, and still a lower bound.
    scale = gain / (0.75 * _iterative.PLATEAU_CHECK_RTOL)
    f_more, more = _iterative.memory_gap(data, None if sw is None else w, p, alpha, fit_intercept, scale)
    assert f_more == f
    assert gain <= more <= (f - f_star) + 1e-12 * f + 2 * rounding



@settings(max_examples=40, deadline=None)
@given(n=st.integers(20, 150), d=st.integers(1, 8), sparse=st.booleans(), weighted=st.booleans(),
       alpha=st.sampled_from([0.0, 0.3]), fit_intercept=st.booleans(), near=st.floats(0.0, 3.0),
       outliers=st.booleans(), loss=st.sampled_from(["huber", "absolute_error"]), seed=st.integers(0, 2**31))
def test_robust_plateau_gap_is_a_lower_bound_on_the_excess(n, d, sparse, weighted, alpha, fit_intercept, near,
                                                           outliers, loss, seed):
    """robust_gap's f is the objective, and 0 <= gain <= f - f*: the gain is the decrease to a point it found, so
    it cannot go below the minimum (f* from solver="newton", exact to about 1e-10 of the objective here; residuals
    on both sides of Huber's threshold, and for the absolute error some exactly 0 at the optimum). Rounding: f and
    the point's objective are float64 sums of n terms of size f, within about 1e-13 f of each other."""
    import scipy.sparse

    from fastopt._validation import Data

    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d)) * rng.uniform(0.1, 10, size=d) + rng.normal(size=d)
    if sparse:
        X = X * (rng.random((n, d)) < 0.5)
    y = X @ rng.normal(size=d) + rng.normal(size=n) + (rng.random(n) < 0.1) * 30.0 * outliers
    sw = rng.random(n) + 0.2 if weighted else None
    w = np.ones(n) if sw is None else sw / sw.mean()
    eps = 1.35
    best = LinearRegressor(solver="newton", loss=loss, epsilon=eps, alpha=alpha,
                           fit_intercept=fit_intercept).fit(X, y, sample_weight=sw)

    def objective(coef, b):
        r = X @ coef + b - y
        a = np.abs(r)
        rho = a if loss == "absolute_error" else np.where(a <= eps, 0.5 * r * r, eps * a - 0.5 * eps * eps)
        return float(np.mean(w * rho) + 0.5 * alpha * coef @ coef)

    f_star = objective(best.coef_, best.intercept_)
    coef = best.coef_ + near * rng.normal(size=d)
    b = best.intercept_ + (near * rng.normal() if fit_intercept else 0.0)
    p = np.r_[coef, [b] if fit_intercept else []]
    Xf = scipy.sparse.csr_array(X) if sparse else X
    if sparse:
        Xf.indices, Xf.indptr = Xf.indices.astype(np.int32), Xf.indptr.astype(np.int32)
    f, gain = _iterative.robust_gap(Data(Xf, y[:, None], sw, True), None if sw is None else w, p, alpha,
                                    fit_intercept, loss, eps)
    assert f == pytest.approx(objective(coef, b), rel=1e-12)
    assert 0.0 <= gain <= (f - f_star) + 1e-9 * f
    # With a loss scale that puts the first round's decrease at 3/4 of the alarm, further rounds of reweighting
    # run from the points found (while they can reach it): the same f, a gain at least as large (the same first
    # round), and still a point's decrease, so a lower bound.
    scale = gain / (0.75 * _iterative.PLATEAU_CHECK_RTOL)
    f_more, more = _iterative.robust_gap(Data(Xf, y[:, None], sw, True), None if sw is None else w, p, alpha,
                                         fit_intercept, loss, eps, scale)
    assert f_more == f
    assert gain <= more <= (f - f_star) + 1e-9 * f


@settings(max_examples=40, deadline=None)
@given(n=st.integers(20, 150), d=st.integers(1, 8), sparse=st.booleans(), weighted=st.booleans(),
       alpha=st.sampled_from([0.0, 0.3]), fit_intercept=st.booleans(), near=st.floats(0.0, 3.0),
       loss=st.sampled_from(["squared_error", "huber", "absolute_error"]), seed=st.integers(0, 2**31))
def test_positive_plateau_gap_is_a_lower_bound_on_the_excess(n, d, sparse, weighted, alpha, fit_intercept, near,
                                                             loss, seed):
    """positive_gap's f is the objective, and 0 <= gain <= f - f*, f* the minimum over coefficients >= 0: the gain
    is the decrease to a feasible point it found. Half the true coefficients are negative, so the constraint is
    active at the optimum. f*: the squared error's from bounded least squares (scipy's BVLS, exact active set), the
    absolute error's from its linear program (HiGHS; alpha 0 only, as the ridge makes it a QP), Huber's from
    L-BFGS-B with bounds run to a projected gradient of 1e-12, whose objective is within about 1e-10 f of the
    minimum here: hence 1e-9 f for Huber, 1e-12 f (rounding of sums of n terms) for the others."""
    import scipy.optimize
    import scipy.sparse

    from fastopt._validation import Data

    if loss == "absolute_error":
        alpha = 0.0
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d)) * rng.uniform(0.1, 10, size=d) + rng.normal(size=d)
    if sparse:
        X = X * (rng.random((n, d)) < 0.5)
    y = X @ rng.normal(size=d) + rng.normal(size=n) + (rng.random(n) < 0.1) * 30.0
    sw = rng.random(n) + 0.2 if weighted else None
    w = np.ones(n) if sw is None else sw / sw.mean()
    eps = 1.35
    A = np.hstack([X, np.ones((n, 1))]) if fit_intercept else X
    lower = np.r_[np.zeros(d), [-np.inf] if fit_intercept else []]

    def objective(coef, b):
        r = X @ coef + b - y
        a = np.abs(r)
        rho = {"squared_error": 0.5 * r * r, "absolute_error": a,
               "huber": np.where(a <= eps, 0.5 * r * r, eps * a - 0.5 * eps * eps)}[loss]
        return float(np.mean(w * rho) + 0.5 * alpha * coef @ coef)

    s = np.sqrt(w / n)
    ridge = np.hstack([np.sqrt(alpha) * np.eye(d), np.zeros((d, A.shape[1] - d))])
    z = scipy.optimize.lsq_linear(np.vstack([A * s[:, None], ridge]), np.r_[y * s, np.zeros(d)],
                                  bounds=(lower, np.inf), method="bvls", tol=1e-14).x
    if loss == "absolute_error":  # min sum (w/n)(u + v), A z - y = u - v
        m = A.shape[1]
        res = scipy.optimize.linprog(np.r_[np.zeros(m), w / n, w / n], A_eq=np.hstack([A, -np.eye(n), np.eye(n)]),
                                     b_eq=y, bounds=[(lo, None) for lo in lower] + [(0, None)] * (2 * n),
                                     method="highs")
        z = res.x[:m]
    elif loss == "huber":
        def fun(v):
            r = A @ v - y
            g_r = w * np.clip(r, -eps, eps) / n
            return objective(v[:d], v[d] if fit_intercept else 0.0), A.T @ g_r + np.r_[alpha * v[:d], [0.0] * (
                A.shape[1] - d)]
        z = scipy.optimize.minimize(fun, z, jac=True, method="L-BFGS-B", bounds=[(lo, None) for lo in lower],
                                    options={"maxiter": 20000, "ftol": 1e-16, "gtol": 1e-12}).x
    coef_star, b_star = z[:d], (z[d] if fit_intercept else 0.0)
    f_star = objective(coef_star, b_star)
    coef = np.maximum(coef_star + near * rng.normal(size=d), 0.0)  # a feasible point, as a fit under positive
    b = b_star + (near * rng.normal() if fit_intercept else 0.0)
    p = np.r_[coef, [b] if fit_intercept else []]
    Xf = scipy.sparse.csr_array(X) if sparse else X
    if sparse:
        Xf.indices, Xf.indptr = Xf.indices.astype(np.int32), Xf.indptr.astype(np.int32)
    slack = (1e-9 if loss == "huber" else 1e-12) * objective(coef, b)
    for scale in (None, 1e-3 * objective(coef, b)):  # one round; then rounds from the points found
        f, gain = _iterative.positive_gap(Data(Xf, y[:, None], sw, True), None if sw is None else w, p, alpha,
                                          fit_intercept, loss, eps, scale)
        assert f == pytest.approx(objective(coef, b), rel=1e-12)
        assert 0.0 <= gain <= (f - f_star) + slack


def test_positive_fits_far_from_the_constrained_optimum_warn():
    # positive=True had switched the plateau check off: SGD and Adam (also "auto"'s choice for a positive Huber
    # fit) stopped 17-26% above the optimum of off-centre columns without an intercept, silently
    rng = np.random.default_rng(1)
    X = rng.standard_normal((500, 4)) + np.array([100.0, -50.0, 20.0, 0.0])
    y = X @ [1, 0.5, 2, 1] + rng.standard_t(2, 500)
    for loss, solver in [("huber", "auto"), ("huber", "sgd"), ("squared_error", "adam")]:
        with pytest.warns(ConvergenceWarning, match="loss plateau"):
            est = LinearRegressor(loss=loss, solver=solver, positive=True, fit_intercept=False, alpha=0.01,
                                  random_state=0).fit(X, y)
        assert np.all(est.coef_ >= 0)
    # a positive fit that finishes is not warned: centred columns, an active constraint
    X = rng.standard_normal((2000, 5))
    y = X @ [1.0, -2.0, 0.5, 0.0, 3.0] + 0.1 * rng.standard_normal(2000)
    for loss in ["squared_error", "huber", "absolute_error"]:
        with warnings.catch_warnings():
            warnings.simplefilter("error", ConvergenceWarning)
            est = LinearRegressor(loss=loss, solver="adam", positive=True, random_state=0).fit(X, y)
        assert est.coef_[1] == 0.0 or est.coef_[1] < 1e-3


def _offset_design(seed):
    """A fuzz run's design (columns far from centred, mostly no intercept, a few outliers) and its fit's options."""
    rng = np.random.default_rng(seed)
    n, d = int(rng.integers(30, 800)), int(rng.integers(1, 12))
    loss = str(rng.choice(["squared_error", "huber", "absolute_error"]))
    solver = str(rng.choice(["sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adam", "auto"]))
    fit_intercept = bool(rng.random() < 0.3)
    alpha = 0.0 if loss == "absolute_error" or rng.random() < 0.5 else float(rng.choice([1e-3, 0.01, 0.3]))
    X = rng.normal(size=(n, d)) * rng.uniform(0.1, 10, size=d) + rng.normal(size=d) * rng.choice([10, 50, 200])
    if rng.random() < 0.25:
        X = X * (rng.random((n, d)) < 0.5)
    y = X @ rng.normal(size=d) + rng.normal(size=n) + (rng.random(n) < 0.05) * rng.choice([0, 30])
    return X, y, {"loss": loss, "solver": solver, "fit_intercept": fit_intercept, "alpha": alpha}


@pytest.mark.parametrize("case", ["held", 1041, 1045, 1055])
def test_positive_fits_whose_steps_cross_zero_warn(case):
    # "held": SGD left a coefficient at 1.5e-6 with its gradient pointing out of the feasible set; taken as free, the
    # check's step drove it to -0.98 and every projection was worse than the fit (35% above the optimum, silent).
    # The fuzz seeds: the step crossed 0 at each of its fractions (nesterov 24% and 47% above, SGD on Huber's loss
    # 24%, silent); the largest fraction that stays feasible finds a decrease.
    if case == "held":
        rng = np.random.default_rng(0)
        X = rng.standard_normal((2000, 6)) + np.array([50.0, -30.0, 20.0, 5.0, 0.0, 100.0])
        y = X @ np.array([1.0, -1.0, 0.5, 2.0, -0.3, 0.1]) + rng.standard_normal(2000)
        options = {"solver": "sgd", "fit_intercept": False}
    else:
        X, y, options = _offset_design(case)
    with pytest.warns(ConvergenceWarning, match="loss plateau"):
        LinearRegressor(positive=True, random_state=case if case != "held" else 0, **options).fit(X, y)


def test_a_positive_fits_warning_names_a_solver_that_takes_the_constraint():
    rng = np.random.default_rng(1)
    X = rng.standard_normal((500, 4)) + np.array([100.0, -50.0, 20.0, 0.0])
    y = X @ np.array([1.0, 0.5, 2.0, 1.0]) + rng.standard_t(2, 500)
    for loss, advice in [("squared_error", "solver='normal'"), ("huber", "No exact solver takes positive=True")]:
        with pytest.warns(ConvergenceWarning, match="loss plateau") as caught:
            LinearRegressor(loss=loss, solver="sgd", positive=True, fit_intercept=False, alpha=0.01,
                            random_state=0).fit(X, y)
        message = str(caught[0].message)
        assert advice in message and "newton" not in message and "'cg'" not in message


def test_a_robust_bound_near_the_alarm_takes_rounds_beyond_the_budget():
    # One round was all the small-data budget allowed on these rows: its bound stopped at 0.71-0.88 of the alarm
    # where SGD was 2.4-6% above the optimum (20% of the targets shifted by 1e3), silently
    rng = np.random.default_rng(5)
    X = sp.random(1500, 1000, density=0.1, random_state=5, format="csr")
    X.data = 10 ** rng.uniform(-2, 2, X.nnz)
    y = X @ rng.standard_normal(1000) + 3 + rng.standard_t(2, 1500)
    y[rng.random(1500) < 0.2] += 1e3
    with pytest.warns(ConvergenceWarning, match="loss plateau"):
        LinearRegressor(loss="huber", solver="sgd", random_state=0).fit(X, y)


@pytest.mark.parametrize(("seed", "stream", "switch_off"), [
    (2, False, ("ROBUST_MAX_ROUNDS", 1)), (9, True, ("ROBUST_MAX_ROUNDS", 1)),
    (11, False, ("LAD_RETRY_MU", _iterative.LAD_REWEIGHT_MU)), (22, True, ("LAD_RETRY_MU", _iterative.LAD_REWEIGHT_MU)),
])
def test_weighted_absolute_error_stops_found_by_further_reweighting_warn(monkeypatch, seed, stream, switch_off):
    """80 rows of 14 Gaussian columns, weights 10^U(-3, 3), Student-t noise, alpha = 1e-3, default SGD's
    absolute-error fit, in memory or over a stream of two chunks; each stop was silent, as it is with the
    mechanism that now finds it switched off below, and now warns with a bound that is a point's decrease, below
    the excess.

    * Seed 2 (6.6% above the optimum) and seed 9 streamed (6.9%): one reweighted step from the fit finds less
      than the alarm (1% of the objective); further rounds, each from the best point of the last, reach it.
    * Seed 11 (7.9%): the step at mu = 0.1 of the median |r| finds no decrease at all; taken again at
      LAD_RETRY_MU it finds more than the alarm. Seed 22 streamed (3.1%): silent without the retry. (Seed 18
      streamed, 6.7% above, was this case until a padded step's ridge was weighed by its rows: the stream's fit
      then moved, 7.9% above, and one more round finds it.)
    """
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(80, 14))
    y = X @ rng.normal(size=14) + rng.standard_t(2, size=80) + 2.0
    w = 10.0 ** rng.uniform(-3, 3, size=80)
    alpha = 1e-3

    def objective(est):
        return float(np.average(np.abs(est.predict(X) - y), weights=w)) + 0.5 * alpha * float(est.coef_ @ est.coef_)

    def fit():
        est = LinearRegressor(solver="sgd", loss="absolute_error", alpha=alpha, random_state=0)
        return est.fit_stream([(X[:40], y[:40], w[:40]), (X[40:], y[40:], w[40:])]) if stream else est.fit(
            X, y, sample_weight=w)

    best = objective(LinearRegressor(solver="newton", loss="absolute_error", alpha=alpha).fit(X, y, sample_weight=w))
    with pytest.warns(ConvergenceWarning, match="stopped at a loss plateau") as record:
        est = fit()
    bound = plateau_bound(next(str(m.message) for m in record if "plateau" in str(m.message)))
    assert 0.01 < bound <= 1.05 * (objective(est) - best) / objective(est)  # (printed to 2 digits)
    monkeypatch.setattr(_iterative, *switch_off)
    monkeypatch.setattr(_iterative, "ROBUST_POINT_FROM", np.inf)  # (the small-data point: another way to find it)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        again = fit()
    np.testing.assert_array_equal(again.coef_, est.coef_)


@pytest.mark.parametrize("loss", ["squared_error", "huber"])
def test_default_fits_on_one_hot_beside_offset_numeric_csr_columns_reach_the_optimum(loss):
    """One-hot columns beside two numeric ones of means -67 and -52, stored CSR (as a ColumnTransformer gives
    them): sparse X was scaled, never centred, and the default fits (of SGD, which solver="auto" ran for Huber's
    loss on sparse X before Newton took it) stopped 8-10 times the optimal loss above it (with Huber's loss at
    0.38 against 5e-5, silently before the plateau check). The map now centres the columns that store most rows
    and sit far from centred (the numeric ones here, which store every row: no value is added), and the fits
    reach the optimum."""
    import scipy.sparse

    rng = np.random.default_rng(0)
    n = 600
    cats = rng.integers(0, 7, size=(n, 2))
    X = np.c_[(cats[:, [0]] == np.arange(7)), (cats[:, [1]] == np.arange(7)),
              rng.normal(size=(n, 2)) * [0.8, 0.3] + [-67.0, -52.0]].astype(float)
    y = X @ rng.normal(size=X.shape[1]) + 2.0 + 0.3 * rng.normal(size=n)
    objective = _robust_objective(loss, 0.0, X, y) if loss == "huber" else (
        lambda est: 0.5 * float(np.mean((est.predict(X) - y) ** 2)))
    best = objective(LinearRegressor(solver="newton", loss=loss).fit(X, y))
    Xs = scipy.sparse.csr_array(X)
    for solver in ("sgd", "adam"):
        with warnings.catch_warnings():
            warnings.simplefilter("error", ConvergenceWarning)
            est = LinearRegressor(solver=solver, loss=loss, random_state=0).fit(Xs, y)
        assert est.solver_ in ("sgd", "adam")
        np.testing.assert_array_equal(np.flatnonzero(est._solver_state.affine.shift), [14, 15])
        assert objective(est) - best <= 1e-3 * objective(est)


def _robust_objective(loss: str, alpha: float, X, y, eps: float = 1.35, sw=None):
    def objective(est):
        a = np.abs(est.predict(X) - y)
        rho = a if loss == "absolute_error" else np.where(a <= eps, 0.5 * a * a, eps * a - 0.5 * eps * eps)
        return float(np.average(rho, weights=sw) + 0.5 * alpha * est.coef_ @ est.coef_)

    return objective


def test_the_plateau_warning_on_sparse_x_advises_newton_which_fits_sparse_x():
    """The warning's advice named Newton for dense ``X`` only, though it fits CSR rows too (and the Huber loss on
    Dask arrays): on the CSR copy of the design below, the advice is followed as given."""
    rng = np.random.default_rng(0)
    n = 80
    X = rng.normal(size=(n, 3)) @ rng.normal(size=(3, 8)) + 1e-3 * rng.normal(size=(n, 8))
    y = X @ rng.normal(size=8) + 0.1 * rng.normal(size=n) + 2.0 + rng.standard_t(2, size=n)
    Xs = sp.csr_array(X)
    with pytest.warns(ConvergenceWarning, match="stopped at a loss plateau") as record:
        LinearRegressor(solver="sgd", loss="absolute_error", random_state=0).fit(Xs, y)
    message = next(str(m.message) for m in record if "plateau" in str(m.message))
    assert "solver='newton' in fit (dense or sparse X in memory)" in message and "(dense X)" not in message
    exact = LinearRegressor(solver="newton", loss="absolute_error").fit(Xs, y)
    dense = LinearRegressor(solver="newton", loss="absolute_error").fit(X, y)
    objective = _robust_objective("absolute_error", 0.0, X, y)
    assert objective(exact) <= objective(dense) * (1 + 1e-9)


@pytest.mark.parametrize("seed", [0, 1])
def test_a_default_absolute_error_fit_far_from_the_optimum_warns(seed):
    """Eight nearly collinear columns (rank 3 plus 1e-3 noise), 80 rows, Student-t noise: the default
    absolute-error fits of SGD and Adam stop 4-7% of their objective above the optimum. That was silent (the
    absolute error was not checked); the reweighted step now finds about half of it, a lower bound."""
    rng = np.random.default_rng(seed)
    n = 80
    X = rng.normal(size=(n, 3)) @ rng.normal(size=(3, 8)) + 1e-3 * rng.normal(size=(n, 8))
    y = X @ rng.normal(size=8) + 0.1 * rng.normal(size=n) + 2.0 + rng.standard_t(2, size=n)
    objective = _robust_objective("absolute_error", 0.0, X, y)
    best = objective(LinearRegressor(solver="newton", loss="absolute_error").fit(X, y))
    for rule in ("sgd", "adam"):
        with pytest.warns(ConvergenceWarning, match="stopped at a loss plateau") as record:
            est = LinearRegressor(solver=rule, loss="absolute_error", random_state=0).fit(X, y)
        message = next(str(m.message) for m in record if "plateau" in str(m.message))
        assert "reweighted least-squares step" in message
        assert "exact absolute-error fit use solver='newton'" in message
        excess = (objective(est) - best) / objective(est)
        assert 0.3 * excess <= plateau_bound(message) <= 1.05 * excess  # (printed to 2 digits)


def _offset_robust_problem(loss: str):
    """Columns far from centred, no intercept, Student-t noise, weights: robust default fits stop 86-94% of their
    objective above the optimum. ``(X, y, w, objective, f*)``."""
    rng = np.random.default_rng(0)
    n, d = 1000, 12
    X = rng.normal(size=(n, d)) + rng.uniform(-1e3, 1e3, size=d)
    y = X @ rng.normal(size=d) + 0.3 * rng.standard_t(2, size=n)
    w = rng.uniform(0.5, 2.0, n)

    def objective(est):
        a = np.abs(est.predict(X) - y)
        rho = a if loss == "absolute_error" else np.where(a <= 1.35, 0.5 * a * a, 1.35 * a - 0.5 * 1.35**2)
        return float(np.average(rho, weights=w))

    best = LinearRegressor(solver="newton", loss=loss, fit_intercept=False).fit(X, y, sample_weight=w)
    return X, y, w, objective, objective(best)


@pytest.mark.parametrize("loss", ["huber", "absolute_error"])
def test_a_streamed_robust_plateau_stop_far_from_the_optimum_warns(loss):
    """fit_stream runs the reweighted check over the stream (each pass one read of the chunks; the absolute
    error's mu from the mean |r|, a median needing every residual): offset columns without an intercept, in four
    weighted chunks, stop 86-94% of the objective above the optimum. The absolute error's stops were silent on
    streams, and Huber's bound (the squared error's model) said 0.18; now both say most of it."""
    X, y, w, objective, best = _offset_robust_problem(loss)
    chunks = [(X[i : i + 250], y[i : i + 250], w[i : i + 250]) for i in range(0, 1000, 250)]
    for rule in ("sgd", "adam"):
        with pytest.warns(ConvergenceWarning, match="stopped at a loss plateau") as record:
            est = LinearRegressor(solver=rule, loss=loss, fit_intercept=False, random_state=0).fit_stream(chunks)
        message = next(str(m.message) for m in record if "plateau" in str(m.message))
        assert "reweighted least-squares step" in message
        excess = (objective(est) - best) / objective(est)
        assert 0.9 * excess <= plateau_bound(message) <= 1.05 * excess  # (printed to 2 digits)


@settings(max_examples=25, deadline=None)
@given(n=st.integers(20, 120), d=st.integers(1, 6), weighted=st.booleans(), alpha=st.sampled_from([0.0, 0.3]),
       fit_intercept=st.booleans(), near=st.floats(0.0, 3.0), loss=st.sampled_from(["huber", "absolute_error"]),
       seed=st.integers(0, 2**31))
def test_streamed_robust_gap_is_a_lower_bound_on_the_excess(n, d, weighted, alpha, fit_intercept, near, loss, seed):
    """stream_robust_gap over chunks: its f is the in-memory objective (the same sums, chunk by chunk), and
    0 <= gain <= f - f* (a point it found; f* from solver="newton")."""
    from fastopt import _sweeps
    from fastopt._chunks import check_chunk
    from fastopt._validation import Data

    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d)) * rng.uniform(0.1, 10, size=d) + rng.normal(size=d)
    y = X @ rng.normal(size=d) + rng.normal(size=n) + (rng.random(n) < 0.1) * 30.0
    sw = rng.random(n) + 0.2 if weighted else None
    w = np.ones(n) if sw is None else sw / sw.mean()
    best = LinearRegressor(solver="newton", loss=loss, alpha=alpha, fit_intercept=fit_intercept).fit(
        X, y, sample_weight=sw)
    coef = best.coef_ + near * rng.normal(size=d)
    b = best.intercept_ + (near * rng.normal() if fit_intercept else 0.0)
    p = np.r_[coef, [b] if fit_intercept else []]
    f_mem = _iterative.robust_gap(Data(X, y[:, None], sw, True), None if sw is None else w, p, alpha,
                                  fit_intercept, loss)[0]
    f_star = _iterative.robust_gap(Data(X, y[:, None], sw, True), None if sw is None else w,
                                   np.r_[best.coef_, [best.intercept_] if fit_intercept else []], alpha,
                                   fit_intercept, loss)[0]
    checker = _sweeps.template(LinearRegressor(loss=loss, fit_intercept=fit_intercept))
    check_chunk(checker, X, y, sw, "the data", reset=True)  # (the first chunk read sets the features)
    mean = float(sw.mean()) if weighted else 1.0
    cuts = [0, n // 3, n]

    def fused(mode, target, c, intercept, mu, *args):
        parts = [_sweeps.robust_part(checker, X[a:e], y[a:e], None if sw is None else sw[a:e], "chunk", mean, loss,
                                     1.35, target, c, intercept, mu, mode, *args) for a, e in itertools.pairwise(cuts)]
        return parts[0] + parts[1]

    f, gain = _sweeps.stream_robust_gap(fused, p, 1, alpha, fit_intercept, loss, 1.35)
    assert f == pytest.approx(f_mem, rel=1e-12)
    assert 0.0 <= gain <= (f - f_star) + 1e-9 * f
    # further rounds, as in memory (a loss scale that puts the first round at 3/4 of the alarm)
    f_more, more = _sweeps.stream_robust_gap(fused, p, 1, alpha, fit_intercept, loss, 1.35,
                                             gain / (0.75 * _iterative.PLATEAU_CHECK_RTOL))
    assert f_more == f
    assert gain <= more <= (f - f_star) + 1e-9 * f


@pytest.mark.parametrize("loss", ["huber", "absolute_error"])
def test_robust_plateau_stops_on_polynomial_features_state_the_excess(loss):
    """Degree-5 polynomial features of x in [-3, 3], Student-t noise: AdaGrad and SGD stop 12-27% of their
    objective above the optimum. The absolute error's stops were silent; the reweighted step states half of its
    excess, and nearly all of Huber's."""
    rng = np.random.default_rng(0)
    x = rng.uniform(-3, 3, 200)
    X = np.vstack([x**p for p in range(1, 6)]).T
    y = X @ rng.normal(size=5) + rng.standard_t(2, size=200) + 3.0
    objective = _robust_objective(loss, 0.0, X, y)
    best = objective(LinearRegressor(solver="newton", loss=loss).fit(X, y))
    for rule in ("adagrad", "sgd"):
        # (AdaGrad on Huber stops at its plateau within max_epochs='auto''s 800 epochs with the NumPy release
        # this test was written on, after 920 with NumPy 2.4.6: the stop sits at the rounding of the column
        # scaling; this test is about the stop's statement, not its epoch)
        with pytest.warns(ConvergenceWarning, match="stopped at a loss plateau") as record:
            est = LinearRegressor(solver=rule, loss=loss, random_state=0, max_epochs=3000).fit(X, y)
        excess = (objective(est) - best) / objective(est)
        bound = plateau_bound(next(str(m.message) for m in record if "plateau" in str(m.message)))
        # printed to 2 significant digits: the statement is the bound to half a unit of its second digit
        # (absolute error: 0.40 to 0.72 of the excess over random states 0-9 of both rules)
        half_unit = 0.5 * 10.0 ** (np.floor(np.log10(bound)) - 1)
        assert (0.9 if loss == "huber" else 0.4) * excess <= bound + half_unit
        assert bound - half_unit <= excess


@pytest.mark.parametrize("loss", ["squared_error", "huber"])
def test_a_plateau_stop_far_from_the_optimum_warns(loss):
    """Columns far from centred, stored sparse, without an intercept (no map centres them then): SGD and Adam
    stop at a plateau 70-145 times the optimal loss above it. That was silent; the check's lower bound now says
    at least 0.38 of the fit's loss (0.99 today), and it is a lower bound."""
    import scipy.sparse

    rng = np.random.default_rng(0)
    n, d = 1000, 12
    X = rng.normal(size=(n, d)) + rng.uniform(-1e3, 1e3, size=d)
    y = X @ rng.normal(size=d) + 0.3 * rng.normal(size=n)
    objective = _robust_objective(loss, 0.0, X, y) if loss == "huber" else (
        lambda est: 0.5 * float(np.mean((est.predict(X) - y) ** 2)))
    best = objective(LinearRegressor(solver="newton", loss=loss, fit_intercept=False).fit(X, y))
    for rule in ("sgd", "adam"):
        with pytest.warns(ConvergenceWarning, match="stopped at a loss plateau") as record:
            est = LinearRegressor(solver=rule, loss=loss, random_state=0, fit_intercept=False).fit(
                scipy.sparse.csr_array(X), y)
        message = next(str(w.message) for w in record if "plateau" in str(w.message))
        assert "solver='newton'" in message if loss == "huber" else "solver='normal'" in message
        bound = plateau_bound(message)
        assert 0.1 < bound <= 1.05 * (objective(est) - best) / objective(est)  # (printed to 2 digits)


def test_a_plateau_stop_near_the_alarm_takes_more_steps(monkeypatch):
    """8,000 hashed rows over 8,192 columns, 20 values a row of scale 30, alpha = 0.01 (a case of
    tools/wide_fit_fuzz.py): default momentum stops at a plateau 1.28% above the optimum. With the diagonal of
    every other row (as the check took it before small data took every row, and as larger data still samples
    it), 26 steps of the check (its budget of stored values) bound that by 0.72%, below the 1% alarm, and the
    stop was silent (as it is with the extension switched off below). A bound within PLATEAU_CHECK_BORDER of
    the alarm takes as many steps again: 1.1%, which warns, and is still below the excess. With every row's
    diagonal, the fit warns too."""
    rng = np.random.default_rng(1316)
    n, d, per = 8000, 8192, 20
    X = sp.csr_array((30.0 * rng.normal(size=n * per), rng.integers(0, d, size=n * per).astype(np.int32),
                      np.arange(0, n * per + 1, per)), shape=(n, d))
    X.sum_duplicates()
    y = np.asarray(X @ rng.normal(size=d)) + 0.1 * rng.normal(size=n) + 3.0 * rng.normal()
    alpha = 0.01

    def objective(est):
        r = est.predict(X) - y
        return 0.5 * float(np.mean(r * r)) + 0.5 * alpha * float(np.sum(est.coef_**2))

    best = objective(LinearRegressor(solver="cg", alpha=alpha, tol=1e-12).fit(X, y))
    with pytest.warns(ConvergenceWarning, match="stopped at a loss plateau") as record:
        every_row = LinearRegressor(solver="momentum", alpha=alpha, random_state=0).fit(X, y)
    bound = plateau_bound(next(str(w.message) for w in record if "plateau" in str(w.message)))
    assert 0.01 < bound <= 1.05 * (objective(every_row) - best) / objective(every_row)
    every_other = _iterative._sampled_jacobi
    monkeypatch.setattr(_iterative, "_sampled_jacobi",
                        lambda Xs, w, fi: every_other(Xs[::2], None if w is None else w[::2], fi))
    with pytest.warns(ConvergenceWarning, match="stopped at a loss plateau") as record:
        est = LinearRegressor(solver="momentum", alpha=alpha, random_state=0).fit(X, y)
    np.testing.assert_array_equal(est.coef_, every_row.coef_)
    bound = plateau_bound(next(str(w.message) for w in record if "plateau" in str(w.message)))
    assert 0.01 < bound <= 1.05 * (objective(est) - best) / objective(est)  # (printed to 2 digits)
    monkeypatch.setattr(_iterative, "PLATEAU_CHECK_BORDER", np.inf)  # no extension: the same fit is silent
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        again = LinearRegressor(solver="momentum", alpha=alpha, random_state=0).fit(X, y)
    np.testing.assert_array_equal(again.coef_, est.coef_)


@pytest.mark.parametrize("loss", ["squared_error", "huber"])
@pytest.mark.parametrize("stream", [False, True])
def test_the_plateau_check_knows_its_alarm_in_memory_and_over_a_stream(alarm_scales, stream, loss):
    """The in-memory and the streamed check of a plateau stop hand their bound (plateau_gap; robust_gap or
    stream_robust_gap) the loss scale warn_if_far then judges by, so that a bound near the alarm takes its extra
    steps or rounds on either path."""
    seen = alarm_scales
    X, y = make_problem(4000, 12, seed=3)
    est = LinearRegressor(solver="sgd", loss=loss, random_state=0)
    est.fit_stream([(X[i : i + 500], y[i : i + 500]) for i in range(0, 4000, 500)]) if stream else est.fit(X, y)
    assert [kind for kind, _ in seen] == ["gap", "warn"]
    assert seen[0][1] is not None and seen[0][1] == seen[1][1]


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("seed", [2, 3, 4])
def test_a_plateau_stop_on_small_nearly_collinear_data_warns(seed, stream):
    """Eight columns of rank 3 plus 1e-3 noise, 80 rows: the optimum fits the noise along directions a thousand
    times weaker than the rest, which SGD and Adam leave 4-25% of the optimal loss above it. Three steps of the
    check found little of that and the stops were silent; on data this small it runs to d + 1 steps and states
    most of the excess (a stream of two chunks as well)."""
    rng = np.random.default_rng(seed)
    n = 80
    X = rng.normal(size=(n, 3)) @ rng.normal(size=(3, 8)) + 1e-3 * rng.normal(size=(n, 8))
    y = X @ rng.normal(size=8) + 0.1 * rng.normal(size=n) + 2.0
    best = LinearRegressor(solver="qr").fit(X, y)

    def loss(est):
        return 0.5 * float(np.mean((y - est.predict(X)) ** 2))

    for rule in ("sgd", "adam"):
        with pytest.warns(ConvergenceWarning, match="stopped at a loss plateau") as record:
            est = LinearRegressor(solver=rule, random_state=0)
            est = est.fit_stream([(X[:40], y[:40]), (X[40:], y[40:])]) if stream else est.fit(X, y)
        excess = (loss(est) - loss(best)) / loss(est)
        bound = plateau_bound(next(str(w.message) for w in record if "plateau" in str(w.message)))
        assert 0.5 * excess <= bound <= 1.05 * excess  # (printed to 2 digits)


def test_a_streamed_plateau_stop_far_from_the_optimum_warns():
    """fit_stream's sweeps stop by the same plateau rule, and are checked the same way, over the stream (each of
    the check's passes one read of the chunks, weights divided by the stream's mean as the sweeps do): the
    offset columns of the in-memory case, in eight weighted CSR chunks without the map, warn (0.99 of the
    objective above its minimum); a well-conditioned stream does not. (Under the default map the CSR sample's
    columns are now centred, as dense ones: the stream ended as far, warned, and now ends within 1e-4 of it.)"""
    import scipy.sparse

    rng = np.random.default_rng(0)
    n, d = 4000, 12
    X = rng.normal(size=(n, d)) + rng.uniform(-1e3, 1e3, size=d)
    y = X @ rng.normal(size=d) + 3.0 + 0.3 * rng.normal(size=n)
    w = rng.uniform(0.5, 2.0, size=n)
    best = LinearRegressor(solver="qr").fit(X, y, sample_weight=w)

    def loss(est):
        return 0.5 * float(np.sum(w * (y - est.predict(X)) ** 2) / w.sum())

    chunks = [(scipy.sparse.csr_array(X[i : i + 500]), y[i : i + 500], w[i : i + 500]) for i in range(0, n, 500)]
    with pytest.warns(ConvergenceWarning, match="stopped at a loss plateau") as record:
        est = LinearRegressor(solver="sgd", random_state=0, precondition="none").fit_stream(chunks)
    message = next(str(m.message) for m in record if "plateau" in str(m.message))
    bound = plateau_bound(message)
    assert 0.1 < bound <= 1.05 * (loss(est) - loss(best)) / loss(est)  # (printed to 2 digits)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        est = LinearRegressor(solver="sgd", random_state=0).fit_stream(chunks)
    assert (loss(est) - loss(best)) / loss(est) < 1e-4
    X, y = make_problem(4000, 12, seed=3)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        LinearRegressor(solver="sgd", random_state=0).fit_stream([(X[i : i + 500], y[i : i + 500])
                                                                  for i in range(0, 4000, 500)])


@pytest.mark.parametrize("solver", ["sgd", "momentum"])
def test_a_robust_fit_of_a_constant_target_within_its_rounding_is_not_warned(solver):
    """helper-139: Huber's fit of y = 5 ended within 2 units of the targets' last place (objective 4e-31), and the
    plateau check warned "at least 1 of its value above its minimum": a constant target's own scale is 0, so any
    decrease passed the alarm. A bound within the loss of the float64 targets' rounding (rounding_loss) is no
    evidence of an unfinished fit."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 5))
    y = np.full(300, 5.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        est = LinearRegressor(solver=solver, loss="huber", random_state=0).fit(X, y)
    u = 1.5 * np.spacing(5.0)  # (rounding_loss's residual: the fit is judged within this)
    assert np.max(np.abs(est.predict(X) - y)) <= 4 * u


@pytest.mark.parametrize("stream", [False, True])
def test_a_fit_that_reaches_max_epochs_far_from_the_optimum_says_how_far(stream, monkeypatch):
    """A fit that reaches max_epochs before the plateau rule stops warns of that; where the plateau check's lower
    bound puts it more than 1% of its objective above the optimum, the warning now states the bound too (helper-136:
    default Adam on weighted TF-IDF rows ended 100% above, warned only "increase max_epochs"). The offset columns
    of the plateau tests (0.99 of the objective above after 3 epochs), in memory and over a re-readable stream;
    a fit that ends within 1% (0.8% today) keeps the warning without it. Only fits of at least
    REACHED_CHECK_MIN_EPOCHS epochs are checked (a few epochs cut short by the user are known to be unfinished,
    and the check's reads cost up to 28% of such a fit): lowered here so that the fits stay short."""
    import scipy.sparse

    from fastopt import _iterative

    rng = np.random.default_rng(0)
    n, d = 1000, 12
    X = rng.normal(size=(n, d)) + rng.uniform(-1e3, 1e3, size=d)
    y = X @ rng.normal(size=d) + 0.3 * rng.normal(size=n)
    best = LinearRegressor(solver="qr", fit_intercept=False).fit(X, y)

    def loss(est, X=X, y=y):
        return 0.5 * float(np.mean((y - est.predict(X)) ** 2))

    Xs = scipy.sparse.csr_array(X)
    with pytest.warns(ConvergenceWarning, match="reached max_epochs=3") as record:  # the default: not checked
        LinearRegressor(solver="sgd", random_state=0, fit_intercept=False, max_epochs=3).fit(Xs, y)
    (message,) = [str(w.message) for w in record]
    assert message.endswith("increase max_epochs.")
    monkeypatch.setattr(_iterative, "REACHED_CHECK_MIN_EPOCHS", 3)
    for rule in ("sgd", "adam"):
        est = LinearRegressor(solver=rule, random_state=0, fit_intercept=False, max_epochs=3)
        with pytest.warns(ConvergenceWarning, match="reached max_epochs=3") as record:
            if stream:
                est.fit_stream([(Xs[i : i + 250], y[i : i + 250]) for i in range(0, n, 250)])
            else:
                est.fit(Xs, y)
        (message,) = [str(w.message) for w in record if issubclass(w.category, ConvergenceWarning)]
        assert "increase max_epochs. The training objective is still at least" in message
        assert "solver='normal'" in message
        assert 0.1 < plateau_bound(message) <= 1.05 * (loss(est) - loss(best)) / loss(est)  # (printed to 2 digits)
    rng = np.random.default_rng(3)
    X = rng.normal(size=(4000, 8))
    y = X @ rng.normal(size=8) + 2.0 * rng.normal(size=4000)
    with pytest.warns(ConvergenceWarning, match="reached max_epochs=3") as record:
        est = LinearRegressor(solver="adam", random_state=0, max_epochs=3).fit(X, y)
    (message,) = [str(w.message) for w in record]
    assert message.endswith("increase max_epochs.")
    best = LinearRegressor(solver="qr").fit(X, y)
    assert (loss(est, X, y) - loss(best, X, y)) / loss(est, X, y) < 1e-2


def test_a_streamed_huber_stop_far_from_the_optimum_warns():
    """Huber's loss over a stream: the check's first read takes Huber's sums chunk by chunk (gap_pass), the steps
    the squared error's passes. One-hot beside offset numeric columns, weighted, in six CSR chunks, without the
    map: 14,000 times the optimal loss above it, which was silent; a fit at its optimum's level stays quiet.
    (Under the default map, which now centres the CSR sample's offset columns as a dense one's, the first stream
    ended 8,000 times above it, warned, and now within 2e-4, silently.)"""
    import scipy.sparse

    def make(seed):
        rng = np.random.default_rng(seed)
        n = 600
        c = rng.integers(0, 8, size=(n, 2))
        num = rng.normal(size=(n, 2)) * 10.0 ** rng.uniform(-2, 3, 2) + rng.uniform(-100, 100, 2)
        X = np.c_[(c[:, [0]] == np.arange(8)), (c[:, [1]] == np.arange(8)), num].astype(float)
        y = X @ rng.normal(size=X.shape[1]) + rng.uniform(-5, 5) + 0.01 * rng.normal(size=n)
        return X, y, rng.uniform(0.5, 2, n)

    def huber(r, w):
        r = np.abs(r)
        return float(np.sum(w * np.where(r <= 1.35, 0.5 * r * r, 1.35 * r - 0.5 * 1.35**2)) / w.sum())

    for seed, precondition, far in ((0, "none", True), (0, "auto", False), (8, "auto", False)):
        X, y, w = make(seed)
        chunks = [(scipy.sparse.csr_array(X[i : i + 100]), y[i : i + 100], w[i : i + 100]) for i in range(0, 600, 100)]
        with warnings.catch_warnings(record=True) as record:
            warnings.simplefilter("always")
            est = LinearRegressor(loss="huber", solver="sgd", random_state=0,
                                  precondition=precondition).fit_stream(chunks)
        messages = [str(m.message) for m in record if "stopped at a loss plateau" in str(m.message)]
        assert bool(messages) is far
        best = LinearRegressor(solver="newton", loss="huber").fit(X, y, sample_weight=w)
        f, f_star = huber(est.predict(X) - y, w), huber(best.predict(X) - y, w)
        if far:
            bound = plateau_bound(messages[0])
            assert 0.1 < bound <= 1.05 * (f - f_star) / f  # (printed to 2 digits)
        else:
            assert f - f_star < 1e-3 * f


def test_partial_fit_converges_with_a_schedule_that_decays_over_calls():
    """With schedule="invscaling" the rate decays over calls and SGD's passes approach the optimum (0.3% above
    it after 40 passes over four chunks of the widely scaled design, measured)."""
    X, y = widely_scaled(4000)
    ref = LinearRegressor().fit(X, y)
    objective = ridge_objective(X, y, 0.0)
    est = LinearRegressor(solver="sgd", schedule="invscaling", random_state=0)
    for _ in range(40):
        for c in range(4):
            est.partial_fit(X[c::4], y[c::4])
    assert est.learning_rates_[-1] == pytest.approx(est.learning_rate_ / 160**0.5)
    assert objective(est) <= objective(ref) * 1.01


@pytest.mark.parametrize("rule", ["sgd", "momentum", "adagrad", "rmsprop", "adam"])
def test_partial_fit_default_schedule_cuts_across_calls(rule):
    """The default schedule across partial_fit calls (_iterative.PassWatch): 40 passes over four chunks of the
    widely scaled design, each of the last ten within 1e-3 of the optimal objective (measured 4e-6 to 1.6e-4).
    Before, the plateau rule judged no calls and every pass stayed on the noise floor of the auto rate: SGD
    3-37% above, AdaGrad 12-110%, Adam 0.2-11 times, RMSProp up to 1,200 times."""
    X, y = widely_scaled(4000)
    objective = ridge_objective(X, y, 0.0)
    best = objective(LinearRegressor().fit(X, y))
    est = LinearRegressor(solver=rule, random_state=0)
    excess = []
    for _ in range(40):
        for c in range(4):
            est.partial_fit(X[c::4], y[c::4])
        excess.append(objective(est) / best - 1.0)
    assert max(excess[-10:]) < 1e-3, excess[-10:]
    assert est.learning_rates_[-1] < est.learning_rate_  # cut at least once
    assert est._solver_state.watch.settled  # and a tenfold cut no longer helped


@pytest.mark.parametrize("rule", ["sgd", "adam"])
def test_partial_fit_default_schedule_on_a_stream_of_new_rows(rule):
    """Chunks that are never seen twice (a stream of new rows from one distribution): the comparisons are then
    on rows no model trained on. 160 chunks of 1,000 rows: within 5e-3 of the population optimum's objective
    (measured on 100,000 other rows: 1.3e-3 and 5e-4; before, 3-37% and 0.2-11 times as above)."""
    draw = scaled_stream(3)
    X_test, y_test = draw(100_000)
    objective = ridge_objective(X_test, y_test, 0.0)
    best = objective(LinearRegressor().fit(X_test, y_test))
    est = LinearRegressor(solver=rule, random_state=0)
    for _ in range(160):
        est.partial_fit(*draw(1000))
    assert objective(est) / best - 1.0 < 5e-3


def test_pass_watch_settles_on_differences_it_cannot_resolve():
    """Noise the rows cannot resolve (zero-mean falls and gains of one standard error): one cut (the first
    plateau), then the rate settles instead of being cut towards 0 (200 rounds); gains since the settled point
    that are measurably negative (the model got worse) three rounds in a row cut again, positive ones or two
    such rounds do not."""
    rng = np.random.default_rng(0)
    watch = _iterative.PassWatch(lr0=1.0, lr=1.0, floor=0.0, per_round=1, before=np.zeros(2))
    for _ in range(200):
        fall, gain = rng.normal(0.0, 1e-3, size=2)  # standard errors 1e-3 (variances 1e-6)
        watch.judge(np.array([1.0, fall, 1e-6, gain, 1e-6]), np.zeros(2))
    assert watch.settled and watch.cuts == 1 and watch.lr == _iterative.PLATEAU_FACTOR
    for gain in (0.01, -0.01, -0.01, 0.01, -0.01, -0.01):
        watch.judge(np.array([1.0, 0.0, 1e-6, gain, 1e-6]), np.zeros(2))
    assert watch.settled and watch.cuts == 1
    watch.judge(np.array([1.0, 0.0, 1e-6, -0.01, 1e-6]), np.ones(2))
    assert not watch.settled and watch.cuts == 2 and watch.cooldown
    assert watch.ref is not None and watch.ref[0] == 1.0


def test_pass_watch_counts_falls_it_resolves():
    """Falls above two standard errors and PLATEAU_RTOL of the loss are progress, however noisy the chunk; a
    non-finite comparison is not judged."""
    watch = _iterative.PassWatch(lr0=1.0, lr=1.0, floor=0.0, per_round=2, before=np.zeros(1))
    for _ in range(50):
        watch.judge(np.array([1.0, 1e-2, 1e-6, 0.0, 0.0]), np.zeros(1))
    assert watch.cuts == 0 and watch.lr == 1.0
    watch.judge(np.array([np.nan, 0.0, 0.0, 0.0, 0.0]), np.zeros(1))
    assert watch.calls == 0 and watch.cuts == 0
    for _ in range(2):  # a fall within its noise: a plateau, cut
        watch.judge(np.array([1.0, 1e-2, 1.0, 0.0, 0.0]), np.zeros(1))
    assert watch.cuts == 1


def test_partial_fit_watch_is_transactional_and_deterministic():
    """A partial_fit call that fails (NaN in its chunk) leaves the watch as it was: the calls after it give the
    coefficients of the same sequence without the failed call, bit for bit, and a second run gives the same
    bits."""
    X, y = widely_scaled(4000)
    bad = X[:1000].copy()
    bad[5, 2] = np.nan

    def run(fail: bool):
        est = LinearRegressor(solver="adam", random_state=0)
        for p in range(12):
            for c in range(4):
                est.partial_fit(X[c::4], y[c::4])
            if fail and p == 5:
                with pytest.raises(ValueError, match="NaN"):
                    est.partial_fit(bad, y[:1000])
        return est

    a, b = run(True), run(False)
    np.testing.assert_array_equal(a.coef_, b.coef_)
    assert a.learning_rates_ == b.learning_rates_ and min(a.learning_rates_) < a.learning_rate_
    np.testing.assert_array_equal(run(False).coef_, b.coef_)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("sparse", [False, True])
def test_partial_fit_watch_reuses_ridge_terms_bit_for_bit(monkeypatch, sparse, dtype):
    """The watch takes the ridge terms of before and ref from the calls that took them as now (PassWatch.penalties),
    and now's under a map from the last pass (IterState.ridge_term): every comparison, and so every rate and
    coefficient, equals that of a watch that takes them afresh, on a stream
    of new rows under a per-column ridge map with a cut, and after a new alpha part-way (small enough to leave the
    rate, and so the watch, as they were); and it computes fewer terms, float32 weights too (the map keeps its
    decay cast, Affine.decay_as)."""
    rng = np.random.default_rng(5)
    scale = np.r_[1.0, 30.0, 0.05, np.ones(5)]
    coef = rng.normal(size=8)

    def chunks():
        r = np.random.default_rng(6)
        for _ in range(40):
            X = (r.normal(size=(300, 8)) * scale * (r.random((300, 8)) < 0.6)).astype(dtype)
            yield (sp.csr_array(X) if sparse else X), (X @ coef + 0.1 * r.normal(size=300)).astype(dtype)

    def run():
        seen, terms = [], [0]
        compare, term = _iterative.pass_comparison, _iterative.penalty_term

        def recorded(*args, **kwargs):
            seen.append(compare(*args, **kwargs))
            return seen[-1]

        def counted(*args, **kwargs):
            terms[0] += 1
            return term(*args, **kwargs)

        with monkeypatch.context() as m:
            m.setattr(_iterative, "pass_comparison", recorded)
            m.setattr(_iterative, "penalty_term", counted)
            est = LinearRegressor(solver="sgd", alpha=1e-4, random_state=0)
            for i, (X, y) in enumerate(chunks()):
                if i == 25:
                    est.set_params(alpha=3e-4)  # a new penalty: no term of the old one is reused
                est.partial_fit(X, y)
        return est, np.array(seen), terms[0]

    a, seen_a, terms_a = run()
    with monkeypatch.context() as m:  # a watch and a state that keep no terms
        for cls, name in ((_iterative.PassWatch, "penalties"), (_iterative.IterState, "ridge_term")):
            m.setattr(cls, name, property(lambda self: (), lambda self, value: None))
        b, seen_b, terms_b = run()
    np.testing.assert_array_equal(seen_a, seen_b)
    np.testing.assert_array_equal(a.coef_, b.coef_)
    assert a.learning_rates_ == b.learning_rates_ and min(a.learning_rates_) < a.learning_rate_  # a cut
    assert terms_a < terms_b


def test_partial_fit_over_repeated_chunks_is_judged_in_epochs():
    """Calls that go over the same chunks again are judged as the in-memory rule judges epochs: a chunk is
    known again by its rows (not its memory layout), the rate changes only where an epoch begins, and the
    rows-weighted mean of the chunks' objectives is the epoch's loss."""
    X, y = widely_scaled(4000)
    chunks = [(X[c::4], y[c::4]) for c in range(4)]
    est = LinearRegressor(solver="sgd", random_state=0)
    for chunk in chunks:
        est.partial_fit(*chunk)
    assert est._solver_state.watch.plateau is None  # four new chunks: no epoch yet
    for p in range(20):
        for Xc, yc in chunks:
            # a copy in another layout (Fortran order, float64 again) is the same chunk
            est.partial_fit(np.asfortranarray(Xc) if p % 2 else Xc.copy(), yc.copy())
    watch = est._solver_state.watch
    assert watch.plateau is not None and len(watch.seen) == 4
    rates = np.array(est.learning_rates_)
    changes = np.flatnonzero(np.diff(rates)) + 1
    assert changes.size >= 1 and np.all(changes % 4 == 0), changes
    keys = {_iterative.chunk_key(Xc, yc[:, None], Xc.shape) for Xc, yc in chunks}
    assert len(keys) == 4


def test_partial_fit_on_a_wide_design_does_not_cut_on_recency():
    """Hashed rows (4,096 columns, ten values a row) in four chunks of 500 rows with a ridge, still in their slow
    bias phase after 20 passes. Compared with the previous call's model on the next chunk, each call's model was
    worse (it had stepped on that chunk longer ago), so the comparisons cut the rate at calls 4 and 12 and the
    passes ended 15.3% above the optimum, where the auto rate held constant ends 8.7% above. Judged in epochs,
    each chunk with itself an epoch apart, the falling epochs keep the rate: as good as the constant rate."""
    X, y = hashed_features(2000, 4096, 10, seed=1)
    alpha = 1e-2
    chunks = [(X[i : i + 500], y[i : i + 500]) for i in range(0, 2000, 500)]
    objective = ridge_objective(X, y, alpha)
    fits = {}
    for schedule in ("auto", "constant"):
        est = LinearRegressor(solver="sgd", alpha=alpha, random_state=0, schedule=schedule)  # the auto rate
        for _ in range(20):
            for chunk in chunks:
                est.partial_fit(*chunk)
        fits[schedule] = est
    assert objective(fits["auto"]) <= objective(fits["constant"]) * (1 + 1e-3)


def offset_columns(n: int):
    """Five unit-spread columns of means 5-50 (ages, years, temperatures), a target with noise and an offset."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(n, 5)) + rng.uniform(5, 50, size=5)
    return X, X @ rng.normal(size=5) + 0.3 * rng.normal(size=n) + 2


@pytest.mark.parametrize("rule", ["sgd", "adam"])
def test_streamed_fit_centres_columns_far_from_centred(rule):
    """fit_stream's map (from its seeded sample of every chunk) scaled without shift: on columns of means 5-50 and
    unit spread a streamed SGD fit ended 4.4 times the optimal objective above it and Adam 0.41 (both warned,
    after 100 epochs), where the in-memory fit, which centres them, ends within 5e-5. The sample's dense columns
    are now centred as in memory: within 1e-3 (measured 1.1e-4 and 2.6e-5), silent."""
    X, y = offset_columns(4000)
    objective = ridge_objective(X, y, 0.0)
    best = objective(LinearRegressor().fit(X, y))
    chunks = [(X[i : i + 1000], y[i : i + 1000]) for i in range(0, 4000, 1000)]
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        est = LinearRegressor(solver=rule, random_state=0).fit_stream(lambda: iter(chunks))
    assert est._solver_state.affine.shift.any()
    assert objective(est) / best - 1.0 < 1e-3


def one_hot_beside_offset_numeric(n: int, seed: int = 0):
    """Two categorical columns of 7 levels one-hot beside two numeric ones of means -67 and -52 (spreads 0.8 and
    0.3), dense (CSR as a ColumnTransformer gives them: ``sp.csr_array``), a target with noise and an offset."""
    rng = np.random.default_rng(seed)
    cats = rng.integers(0, 7, size=(n, 2))
    X = np.c_[(cats[:, [0]] == np.arange(7)), (cats[:, [1]] == np.arange(7)),
              rng.normal(size=(n, 2)) * [0.8, 0.3] + [-67.0, -52.0]].astype(float)
    return X, X @ rng.normal(size=X.shape[1]) + 2.0 + 0.3 * rng.normal(size=n)


@pytest.mark.parametrize("rule", ["sgd", "adam"])
def test_sparse_partial_fit_and_stream_centre_offset_numeric_columns(rule):
    """A first partial_fit's CSR rows and a stream's CSR sample were scaled, never centred (the in-memory fit
    centres them): on one-hot columns beside numeric ones far from centred, 20 passes of partial_fit over four
    chunks and fit_stream ended 1.88 times the optimal objective above it, every rule (the stream warned). The
    sample's columns stored in most of its rows and far from centred are now centred (measured 7.1e-5 and 5.0e-5
    for SGD, 7.9e-5 and 1.2e-4 for Adam), silently."""
    X, y = one_hot_beside_offset_numeric(4000)
    objective = ridge_objective(X, y, 0.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RankDeficientWarning)  # one-hot columns beside an intercept
        best = objective(LinearRegressor(solver="qr").fit(X, y))
    Xs = sp.csr_array(X)
    chunks = [(Xs[i : i + 1000], y[i : i + 1000]) for i in range(0, 4000, 1000)]
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        est = LinearRegressor(solver=rule, random_state=0)
        for _ in range(20):
            for chunk in chunks:
                est.partial_fit(*chunk)
        streamed = LinearRegressor(solver=rule, random_state=0).fit_stream(lambda: iter(chunks))
    for fitted in (est, streamed):
        np.testing.assert_array_equal(np.flatnonzero(fitted._solver_state.affine.shift), [14, 15])
        assert objective(fitted) / best - 1.0 < 1e-3


def test_sparse_map_shifts_later_rows_that_store_few_of_its_columns():
    """A map chosen from CSR rows shifts the columns that stored most of them; a later CSR chunk storing such a
    column in few rows takes the same shift (its copy stores the column in full). Continuing an in-memory fit
    on such rows was refused with an error naming a fit on dense X. Its zeros, 84 standard deviations from the
    column's mean, make those rows heavy: the later calls' rate guard now bounds the rows' Hessian from below
    by their mean's square on CSR rows too, as on dense ones (without it, SGD diverged in the second call)."""
    X, y = one_hot_beside_offset_numeric(1000)
    later = X[:200].copy()
    later[20:, 14] = 0.0  # stored in a tenth of this chunk's rows
    Xl = sp.csr_array(later)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est = LinearRegressor(solver="sgd", random_state=0).fit(sp.csr_array(X), y)
    affine = est._solver_state.affine
    assert affine.from_sparse and np.flatnonzero(affine.shift).tolist() == [14, 15]
    assert not _iterative_lr.csr_shiftable(Xl, affine.shift)
    np.testing.assert_allclose(affine.transform(Xl).toarray(), (later - affine.shift) / affine.scale,
                               rtol=1e-15, atol=1e-13)
    est.partial_fit(Xl, y[:200])
    assert np.all(np.isfinite(est.coef_))
    with pytest.raises(ValueError, match="densify"):  # a dense fit's shifts are still refused on such rows
        _iterative._under(affine._replace(from_sparse=False), Data(Xl, y[:200, None], None, True))
    streamed = LinearRegressor(solver="sgd", random_state=0).partial_fit(sp.csr_array(X), y)
    for _ in range(5):
        streamed.partial_fit(Xl, y[:200])
    assert streamed._solver_state.rate_factor < 0.01 and np.all(np.isfinite(streamed.coef_))


def test_partial_fit_watch_stays_bounded_on_a_long_stream():
    """A stream of new chunks never repeats one: the watch remembers at most PASS_WATCH_KEYS of them, and an
    epoch holds at most that many (it had grown by one key a call, each call copying it), while the fit converges
    (1,100 chunks of 20 rows: within 0.01 of the coefficients, noise 0.1)."""
    rng = np.random.default_rng(0)
    w = rng.normal(size=3)
    est = LinearRegressor(solver="sgd", random_state=0)
    for _ in range(_iterative.PASS_WATCH_KEYS + 76):
        X = rng.normal(size=(20, 3))
        est.partial_fit(X, X @ w + 0.1 * rng.normal(size=20))
    watch = est._solver_state.watch
    assert len(watch.seen) == _iterative.PASS_WATCH_KEYS and len(watch.epoch[0]) <= _iterative.PASS_WATCH_KEYS
    assert watch.plateau is None  # no chunk came twice
    np.testing.assert_allclose(est.coef_, w, atol=0.01)


def heavy_later_chunks(scale: float, seed: int = 2):
    """Four 1,000-row chunks of five Gaussian columns; about 0.3% of the rows after the first chunk ``scale``
    times the others' size (12 rows at this seed)."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(4000, 5))
    heavy = np.flatnonzero(rng.random(4000) < 0.003)
    X[heavy[heavy >= 1000]] *= scale
    y = X @ rng.normal(size=5) + 0.3 * rng.normal(size=4000) + 2.0
    return X, y


@pytest.mark.parametrize("rule", ["sgd", "momentum", "nesterov"])
def test_partial_fit_lowers_the_rate_for_heavier_later_rows(rule):
    """The first call's rows set the rate; a later chunk of rows 30 times the others' size (none in the first)
    made default SGD diverge in its second pass. Each later call now judges its rows' spread against the one the
    rate was taken from (fastopt._iterative.rate_guard): the rate drops, and the sequence reaches the optimum
    (measured: within 6e-5 of it after 20 passes, every rule)."""
    X, y = heavy_later_chunks(30.0)
    est = LinearRegressor(solver=rule, random_state=0)
    for _ in range(20):
        for c in range(4):
            est.partial_fit(X[c * 1000 : (c + 1) * 1000], y[c * 1000 : (c + 1) * 1000])
    assert est._solver_state.rate_factor < 0.1
    assert max(est.learning_rates_[1:]) < est.learning_rate_  # the first call runs at the rate it set
    best = LinearRegressor(solver="qr").fit(X, y)
    excess = relative_excess(est, X, y, optimum(X, y, True))
    assert excess < 1e-3, (excess, relative_excess(best, X, y, optimum(X, y, True)))


@pytest.mark.parametrize("rule", ["sgd", "momentum", "nesterov"])
def test_partial_fit_chunks_of_one_distribution_keep_the_rate(rule):
    """The guard lowers the rate only beyond twice the critical rate's inverse: chunks drawn alike never move
    it, and the calls run at the rate the plateau rule sets."""
    X, y = heavy_later_chunks(1.0)
    est = LinearRegressor(solver=rule, random_state=0)
    for _ in range(10):
        for c in range(4):
            est.partial_fit(X[c * 1000 : (c + 1) * 1000], y[c * 1000 : (c + 1) * 1000])
    assert est._solver_state.rate_factor == 1.0
    assert est.learning_rates_[0] == est.learning_rate_


@pytest.mark.parametrize("first", ["weighted", "unweighted"])
def test_partial_fit_weights_spanning_eight_decades_do_not_diverge(first):
    """Weights 10^U(-4, 4) on one-hot CSR chunks: the first chunk set each column's scale from its few rows'
    weights, and a later chunk's heavy row in a column scaled small stepped 50 times too far (DivergenceError in
    the seventh call); the guard then lowered the rate tenfold, and 30 passes ended 1.7% above the optimum
    (measured). A rare column's rows now count at the mean weight (_iterative_lr._rare_weights): no later row is
    heavier than the first chunk's rate allows, and the passes end 0.2% above it. A first chunk without weights
    meets heavier rows later, and the guard lowers the rate for them (measured 0.26 of it; 0.2% above)."""
    rng = np.random.default_rng(0)
    n = 4000
    X = sp.csr_array(np.eye(40)[rng.integers(0, 40, size=(n, 2))].reshape(n, 80))
    _ = rng.uniform(-2, 2, size=(n, 3))  # (the draws of the review that found it)
    y = X @ rng.normal(size=80) + 0.3 * rng.normal(size=n) + 5
    w = 10.0 ** rng.uniform(-4, 4, size=n)
    est = LinearRegressor(solver="sgd", random_state=0)
    for p in range(30):
        for c in range(4):
            unweighted = first == "unweighted" and p == c == 0
            est.partial_fit(X[c::4], y[c::4], sample_weight=None if unweighted else w[c::4])
    assert (est._solver_state.rate_factor < 1.0) == (first == "unweighted")
    r = est.predict(X) - y
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RankDeficientWarning)
        rb = LinearRegressor(solver="qr").fit(X.toarray(), y, sample_weight=w).predict(X) - y
    assert np.average(r * r, weights=w) <= 1.01 * np.average(rb * rb, weights=w)


@pytest.mark.parametrize("sparse", [False, True])
def test_partial_fit_one_hot_levels_scaled_from_a_small_first_chunk_do_not_diverge(sparse):
    """A numeric column beside 50 one-hot levels in chunks of 400, 3,000, 100 and 2,048 rows: the first chunk holds
    some levels a few times, their scales come from those few, and in later chunks their rows had several times
    the curvature the first chunk's rate allowed. Default SGD raised DivergenceError (3 of 30 seeds, dense and
    CSR) or ended far above the optimum (dense 14 of 30 more than twice it, one 2e7 times). The guard's bound of
    the largest diagonal entry lowers the rate there: every seed within 0.51 of the optimum after two passes
    (median 0.09 dense, 0.10 CSR; momentum and Nesterov medians 0.27 and 0.16 before, 0.08 and 0.06 now)."""

    def chunk(rng, rows):
        level, number = rng.integers(0, 50, rows), rng.normal(100, 5, rows)
        X = np.zeros((rows, 51))
        X[:, 0], X[np.arange(rows), 1 + level] = number, 1.0
        return (sp.csr_array(X) if sparse else X), 0.3 * number + 0.1 * level + rng.standard_normal(rows)

    for seed in range(12):
        rng = np.random.default_rng(seed)
        chunks = [chunk(rng, rows) for rows in (400, 3000, 100, 2048)]
        X = sp.vstack([c[0] for c in chunks]).toarray() if sparse else np.vstack([c[0] for c in chunks])
        y = np.concatenate([c[1] for c in chunks])
        est = LinearRegressor(solver="sgd", random_state=0)
        for _ in range(2):
            for Xc, yc in chunks:
                est.partial_fit(Xc, yc)
        excess = relative_excess(est, X, y, optimum(X, y, True))
        assert excess < 1.0, (seed, excess)


def test_partial_fit_rate_guard_is_transactional(monkeypatch):
    """A call that fails after its rows lowered the rate leaves the state's factor and basis as they were."""
    X, y = heavy_later_chunks(30.0)
    est = LinearRegressor(solver="sgd", random_state=0).partial_fit(X[:1000], y[:1000])
    state = est._solver_state
    basis = dict(state.basis)

    def fail(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(_iterative.IterativeSolver, "_epoch", fail)
    with pytest.raises(KeyboardInterrupt):
        est.partial_fit(X[1000:2000], y[1000:2000])
    assert est._solver_state is state and state.rate_factor == 1.0 and state.basis == basis
    monkeypatch.undo()
    est.partial_fit(X[1000:2000], y[1000:2000])
    assert est._solver_state.rate_factor < 0.1 and state.rate_factor == 1.0


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 40), d=st.integers(1, 12), density=st.floats(0.0, 1.0), f32=st.booleans(),
       wide=st.booleans(), start=st.integers(0, 39), step=st.integers(1, 7), seed=st.integers(0, 2**16))
def test_csr_row_squares_are_the_rows_squared_norms(n, d, density, f32, wide, start, step, seed):
    """The compiled read of a strided set of CSR rows (fastopt._iterative.rate_guard) against NumPy, and bit for
    bit against its twin (the same additions in the same order), float32 and float64 values, int32 and int64
    index arrays, empty rows included; rows outside the matrix are refused by both."""
    from fastopt import _kernels, _reference

    rng = np.random.default_rng(seed)
    dense = rng.normal(size=(n, d)) * (rng.random((n, d)) < density)
    X = sp.csr_array(dense.astype(np.float32 if f32 else np.float64))
    indptr = X.indptr.astype(np.int64 if wide else np.int32)
    start = start % n
    count = len(range(start, n, step))
    got = _kernels.csr_row_squares(X.data, indptr, start, step, count)
    rows = X.toarray()[start::step].astype(np.float64)
    np.testing.assert_allclose(got, np.einsum("ij,ij->i", rows, rows), rtol=1e-12, atol=0)
    np.testing.assert_array_equal(got, _reference.csr_row_squares(X.data, indptr, start, step, count))
    for impl in (_kernels, _reference):
        with pytest.raises(ValueError, match="outside the matrix"):
            impl.csr_row_squares(X.data, indptr, start, step, count + 1)
        with pytest.raises(ValueError, match="indptr points outside data"):
            impl.csr_row_squares(X.data[:0], np.r_[indptr[:-1], X.nnz + 1].astype(indptr.dtype), 0, 1, 0)


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 60), d=st.integers(1, 400), density=st.floats(0.0, 0.3), f32=st.booleans(),
       step=st.integers(1, 5), weighted=st.booleans(), seed=st.integers(0, 2**16))
def test_csr_row_moment_bounds_agree_on_every_path(n, d, density, f32, step, weighted, seed):
    """fastopt._iterative._row_moment_bounds on CSR rows: sum_j mu_j^2 and max_j s_j near NumPy's on the dense
    rows, and bit for bit the same whichever scratch holds the sums: this thread's kept one, the stored columns
    renumbered (fewer values than d / ROW_MOMENTS_SORT), or a fresh O(d) one; the kept scratch zero after."""
    from fastopt import _iterative

    rng = np.random.default_rng(seed)
    dense = rng.normal(size=(n, d)) * (rng.random((n, d)) < density)
    X = sp.csr_array(dense.astype(np.float32 if f32 else np.float64))
    rows = slice(None, None, step)
    m = len(range(0, n, step))
    w = rng.uniform(0.2, 2.0, size=m) if weighted else None
    if w is not None:
        w /= w.mean()
    got = _iterative._row_moment_bounds(X, rows, w)
    block = X.toarray()[rows].astype(np.float64)
    ww = np.ones(m) if w is None else w
    want_mu, want_sq = ww @ block / m, ww @ (block * block) / m
    np.testing.assert_allclose(got, [want_mu @ want_mu, want_sq.max()], rtol=1e-12, atol=1e-300)
    assert not _iterative._scratch_for(d).any()
    old = _iterative.MOMENT_SCRATCH_COLS, _iterative.ROW_MOMENTS_SORT
    try:
        _iterative.MOMENT_SCRATCH_COLS = 0  # no kept scratch: renumbered where the values are few
        assert _iterative._row_moment_bounds(X, rows, w) == got
        _iterative.ROW_MOMENTS_SORT = 2**62  # never renumbered: a fresh O(d) scratch
        assert _iterative._row_moment_bounds(X, rows, w) == got
    finally:
        _iterative.MOMENT_SCRATCH_COLS, _iterative.ROW_MOMENTS_SORT = old


def table_of_measurements(n: int = 8000, seed: int = 0):
    """A table as users have it: a year, an age, an income and a temperature, far from centred; a linear
    target with unit noise."""
    rng = np.random.default_rng(seed)
    X = np.c_[rng.uniform(2000, 2024, n), rng.normal(40, 12, n), rng.lognormal(10, 0.5, n), rng.normal(15, 8, n)]
    y = 0.3 * (X[:, 0] - 2000) + 0.05 * X[:, 1] + 2e-5 * X[:, 2] - 0.1 * X[:, 3] + rng.normal(size=n)
    return X, y


@pytest.mark.parametrize("order", ["shuffled", "by year"])
@pytest.mark.parametrize("rule", ["sgd", "momentum", "adagrad", "rmsprop", "adam"])
def test_partial_fit_on_a_table_far_from_centred_reaches_the_optimum(rule, order):
    """A first dense partial_fit takes the in-memory map, centring the columns: without a shift every rule stayed
    4.2-6.3 times the optimal objective above it after 20 passes over eight chunks, in any order of the rows.
    Measured now: shuffled at most 1.8e-5; sorted by year (the first chunk holds three years of 24, so later
    rows lie far outside its spread and the rate guard lowers SGD's rate) at most 6.2e-3."""
    X, y = table_of_measurements()
    if order == "by year":
        idx = np.argsort(X[:, 0], kind="stable")
        X, y = X[idx], y[idx]
    est = LinearRegressor(solver=rule, random_state=0)
    for _ in range(20):
        for c in range(8):
            est.partial_fit(X[c * 1000 : (c + 1) * 1000], y[c * 1000 : (c + 1) * 1000])
    assert np.count_nonzero(est._solver_state.affine.shift) == 4
    excess = relative_excess(est, X, y, optimum(X, y, True))
    assert excess < (1e-4 if order == "shuffled" else 2e-2), excess


@pytest.mark.parametrize("rule", ["sgd", "momentum", "nesterov"])
def test_partial_fit_full_batch_calls_far_from_the_first_are_guarded(rule):
    """Calls of 20 rows (full batches at the default batch size) of a table sorted by year: the first call's
    centred map puts later rows far from their mean, whose Hessian's largest eigenvalue is at least |mu|^2. The
    full-batch rate 1/L of the first call made SGD and the momentum rules diverge in their first pass; the guard
    lowers it. Stable, not converged: measured 0.21 (SGD) to 0.74 (momentum) times the optimal objective above it
    after 30 passes, where Adam reaches 9.6e-4."""
    n = 400
    X, y = table_of_measurements(n)
    idx = np.argsort(X[:, 0], kind="stable")
    X, y = X[idx], y[idx]
    est = LinearRegressor(solver=rule, random_state=0)
    for _ in range(30):
        for c in range(0, n, 20):
            est.partial_fit(X[c : c + 20], y[c : c + 20])
    assert est._solver_state.rate_factor < 1e-2
    assert relative_excess(est, X, y, optimum(X, y, True)) < 1.0


def test_partial_fit_numeric_rate_after_the_guard_is_taken_as_given():
    """A numeric learning_rate set between calls applies as given, not lowered by the factor an auto rate's guard
    set; back at "auto", the calls run at the base rate the state holds (learning_rate_) times that factor."""
    X, y = heavy_later_chunks(30.0)
    est = LinearRegressor(solver="sgd", random_state=0)
    for c in range(4):
        est.partial_fit(X[c * 1000 : (c + 1) * 1000], y[c * 1000 : (c + 1) * 1000])
    factor = est._solver_state.rate_factor
    assert factor < 0.1
    est.set_params(learning_rate=1e-4).partial_fit(X[:1000], y[:1000])
    assert est.learning_rates_[-1] == 1e-4
    est.set_params(learning_rate="auto").partial_fit(X[:1000], y[:1000])
    assert est.learning_rates_[-1] == pytest.approx(est.learning_rate_ * factor, rel=1e-12)


def test_first_partial_fit_scales_the_columns_its_chunk_misses_as_rare_ones():
    """Hashed rows under a ridge (2^16 columns, ten values a row, four chunks of 5,000 rows): the first chunk
    stores 35,000 of the columns. Those it missed kept scale 1, the units of X, 30 times less scaled than the
    columns seen once, and 20 passes of SGD's partial_fit ended 19.6% above the optimum (measured); with the rare
    columns' mean square, 7.0%; with rare shares floored too (_iterative_lr._floored), 0.37%. A stream's sample,
    drawn from every chunk, keeps scale 1 for what it misses."""
    X, y = hashed_features(20_000, 2**16, 10)
    alpha = 1e-3
    objective = ridge_objective(X, y, alpha)
    best = LinearRegressor(solver="lsqr", alpha=alpha).fit(X, y)
    est = LinearRegressor(solver="sgd", alpha=alpha, random_state=0)
    chunks = [(X[c * 5000 : (c + 1) * 5000], y[c * 5000 : (c + 1) * 5000]) for c in range(4)]
    est.partial_fit(*chunks[0])
    scale = est._solver_state.affine.scale
    unseen = np.bincount(chunks[0][0].indices, minlength=2**16) == 0
    assert unseen.sum() > 25_000 and np.all(scale[unseen] < 0.1) and np.ptp(scale[unseen]) == 0
    for _ in range(20):
        for Xc, yc in chunks:
            est.partial_fit(Xc, yc)
    assert objective(est) - objective(best) <= 0.02 * objective(best)


def one_hot_beside_numeric(n: int, levels: int, seed: int = 0):
    """``levels`` one-hot levels (drawn uniformly, one a row) beside a numeric column of mean 100 and spread 50, a
    linear target with unit noise, and weights 10^U(-3, 3) drawn independently of the rows."""
    rng = np.random.default_rng(seed)
    X = np.zeros((n, levels + 1))
    X[np.arange(n), rng.integers(0, levels, n)] = 1.0
    X[:, -1] = rng.normal(size=n) * 50 + 100
    return X, X @ rng.normal(size=levels + 1) + rng.normal(size=n), 10.0 ** rng.uniform(-3, 3, size=n)


@pytest.mark.parametrize("sparse", [False, True])
def test_first_partial_fit_scales_rare_columns_by_their_rows_count_not_their_weights(sparse):
    """A first chunk of 400 rows, 40 levels (about ten rows each: rare) beside a numeric column, weights
    10^U(-3, 3): a level's scale was set by its few rows' weights, hundreds of times too small for a level
    held by light rows. Now a rare column's rows count at the chunk's mean weight: its scale (and, dense, its
    shift) is the unweighted chunk's, while the numeric column, stored in every row, keeps its weighted moments
    (centred: its mean is two spreads from 0)."""
    X, y, w = one_hot_beside_numeric(400, 40)
    Xs = sp.csr_array(X) if sparse else X
    weighted = LinearRegressor(solver="sgd", random_state=0).partial_fit(Xs, y, sample_weight=w)._solver_state.affine
    plain = LinearRegressor(solver="sgd", random_state=0).partial_fit(Xs, y)._solver_state.affine
    np.testing.assert_allclose(weighted.scale[:-1], plain.scale[:-1], rtol=1e-12)
    np.testing.assert_allclose(weighted.shift[:-1], plain.shift[:-1], rtol=1e-12)
    v, x = w / w.mean(), X[:, -1]
    mean = float(np.mean(v * x))
    assert weighted.shift[-1] == pytest.approx(mean, rel=1e-12)
    assert weighted.scale[-1] == pytest.approx(np.sqrt(np.mean(v * (x - mean) ** 2)), rel=1e-9)
    assert abs(weighted.scale[-1] / plain.scale[-1] - 1) > 0.01  # (the weights do move the numeric column's)


@pytest.mark.parametrize("sparse", [False, True])
@pytest.mark.parametrize("fraction", [0.0, 0.3])
def test_stream_sample_weighs_rare_columns_rows_between_their_own_and_the_mean(sparse, fraction):
    """A stream's sample holds ``fraction`` of its training rows: a rare column's rows outside it are expected at
    the mean weight, so its stored values weigh ``f w + (1 - f) mean(w)``. With every column rare (one-hot levels,
    about twenty rows each: none below the floor of _iterative_lr._floored), that is the map of the rows under
    those weights (whose total is the same)."""
    X, _, w = one_hot_beside_numeric(600, 30)
    X = X[:, :-1]
    Xs = sp.csr_array(X) if sparse else X
    params = LinearRegressor().get_params()
    v = w / w.mean()
    got = _iterative_lr.stream_scaling(params, Xs, v, fraction=fraction)
    want = _iterative_lr.stream_scaling(params, Xs, fraction * v + (1 - fraction) * v.mean(), fraction=1.0)
    np.testing.assert_allclose(got.scale, want.scale, rtol=1e-12)
    np.testing.assert_allclose(got.shift, want.shift, rtol=1e-12, atol=1e-15)
    own = _iterative_lr.stream_scaling(params, Xs, v, fraction=1.0)
    assert np.max(np.abs(np.log(got.scale / own.scale))) > np.log(1.25)  # (the rows' own weights move it)


def test_stream_its_sample_holds_whole_takes_the_fits_map():
    """A stream of at most AUTO_ROWS training rows is its own sample (fraction 1): its map takes every row's own
    weight, as ``fit`` on the same rows does (one-hot levels, ten rows each, weights 10^U(-3, 3))."""
    X, y, w = one_hot_beside_numeric(3000, 300)
    chunks = [(X[lo : lo + 500], y[lo : lo + 500], w[lo : lo + 500]) for lo in range(0, 3000, 500)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # one epoch
        streamed = LinearRegressor(solver="sgd", max_epochs=1, random_state=0).fit_stream(chunks)
        fitted = LinearRegressor(solver="sgd", max_epochs=1, random_state=0).fit(X, y, sample_weight=w)
    a, b = streamed._solver_state.affine, fitted._solver_state.affine
    np.testing.assert_allclose(a.scale, b.scale, rtol=1e-12)  # (the sample's rows in another order: rounding)
    np.testing.assert_allclose(a.shift, b.shift, rtol=1e-12, atol=1e-14)


def two_one_hot_beside_numeric(n: int, levels: int, seed: int):
    """Two categorical columns of ``levels`` levels each (drawn uniformly), one-hot in CSR, beside three numeric
    columns of scales 1, 50 and 1e3 and means 0, 100 and 5e3, a linear target with unit noise, and the generator
    for the draws that follow (weights)."""
    rng = np.random.default_rng(seed)
    cat = rng.integers(0, levels, size=(n, 2))
    hot = sp.csr_array((np.ones(2 * n), (np.repeat(np.arange(n), 2), (cat + np.array([0, levels])).ravel())),
                       shape=(n, 2 * levels))
    X = sp.hstack([hot, sp.csr_array(rng.normal(size=(n, 3)) * [1, 50, 1e3] + [0, 100, 5e3])]).tocsr()
    return X, X @ rng.normal(size=X.shape[1]) + rng.normal(size=n), rng


@pytest.mark.parametrize("sparse", [False, True])
@pytest.mark.parametrize("weighted", [False, True])
def test_held_out_curvatures_are_those_under_the_map_made_without_the_row(sparse, weighted):
    """A stream's sample rows' curvatures with each rare column's scale taken without the row: for every row,
    within O(max(1, v_i) / n) of its curvature under the map of the other rows (``v_i`` its weight over the
    mean: the held-out form keeps the sample's total weight and mean weight, which lose the row's share there,
    and the numeric column's scale, which loses one value of 400). Rows of a level the sample holds twice
    keep the curvature the sample's own map gives them: its share is taken as at least SCALE_PRIOR_VALUES
    values' there and without the row (_iterative_lr._floored), where m / (m - 1) would have doubled it."""
    X, _, w = one_hot_beside_numeric(400, 40)
    X[:, -1] -= 100.0  # (centred: the numeric column is neither rare nor shifted)
    level0 = np.flatnonzero(X[:, 0])
    X[level0[2:], 0], X[level0[2:], 1] = 0.0, 1.0  # level 0 keeps two rows
    params = LinearRegressor().get_params()
    Xs = sp.csr_array(X) if sparse else X
    v = w / w.mean() if weighted else None
    fraction = 0.5
    affine = _iterative_lr.stream_scaling(params, Xs, v, fraction=fraction)
    got = _iterative_lr.held_out_curvatures(params, Xs, affine.transform(Xs), v, affine, fraction, False)
    own = _iterative_lr.row_curvatures(affine.transform(Xs), None if v is None else v / v.mean(), True)
    n = X.shape[0]
    for i in range(0, n, 7):
        keep = np.arange(n) != i
        other = _iterative_lr.stream_scaling(params, Xs[keep], None if v is None else v[keep], fraction=fraction)
        z = other.transform(Xs[i : i + 1])
        want = (1.0 + float((z.multiply(z) if sparse else z * z).sum())) * (1.0 if v is None else v[i] / v.mean())
        assert got[i] == pytest.approx(want, rel=3.0 * max(1.0, 1.0 if v is None else v[i]) / n)
    counts = np.count_nonzero(X[:, :40], axis=0)
    twice = np.flatnonzero(X[:, np.flatnonzero(counts == 2)].any(axis=1))
    assert twice.size >= 2
    np.testing.assert_allclose(got[twice], own[twice], rtol=1e-12)
    assert _iterative_lr.held_out_curvatures(params, Xs, affine.transform(Xs), v, affine, 1.0, False) is None


@pytest.mark.parametrize("sparse", [False, True])
def test_stream_sampled_in_part_scales_rare_levels_as_at_least_a_few_rows(sparse, monkeypatch):
    """Two one-hot columns of 375 levels (about 27 rows each) beside numeric columns of scales 1, 50 and 1e3, one
    10,000-row chunk, its sample half of it (``AUTO_ROWS`` 5,000). A level the sample held once or twice was scaled
    to that share, and each of its other rows took ``n / m`` of the sample's rows in its curvature: default SGD
    raised DivergenceError (first measured on 1,500 levels, 40,000 rows and the sample of 20,000, dense and CSR;
    chunks of 5,000 rows too). Each rare column's share is now taken as at least SCALE_PRIOR_VALUES values'
    (_iterative_lr._floored): R^2 0.999999 after three epochs. This smaller case keeps the ratios of that one (27
    rows a level, the sample half the stream) at an eighth of its cost; without the floor its CSR fit raises
    DivergenceError (measured, as the 40,000-row one's). The dense stream of these rows converges without the
    floor now (measured, as does the 40,000-row one's): its case guards the scenario on the dense path."""
    monkeypatch.setattr(_iterative_lr, "AUTO_ROWS", 5_000)
    X, y, _ = two_one_hot_beside_numeric(10_000, 375, seed=0)
    Xs = X if sparse else X.toarray()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # three epochs: the rule has not stopped
        est = LinearRegressor(solver="sgd", random_state=0, max_epochs=3).fit_stream([(Xs, y)])
    assert est.score(X, y) > 0.9999


def test_weighted_stream_sampled_in_part_takes_a_rate_for_the_rows_outside_its_sample():
    """Two one-hot columns of 5,000 levels (twelve rows each) beside numeric columns of scales 1, 50 and 1e3, a
    60,000-row stream in chunks of 10,000, its 20,000-row sample a third of it, weights 10^U(-1, 1). The sample's
    rows set their own levels' scales, so their curvatures were smaller than the other rows' (R^2 2.0e4 against
    3.7e4) and the rate too large: default SGD's epoch losses rose up to 1.8e6-fold, and after 15 epochs the
    weighted R^2 was -3.5, -2.1e4 and -2.2e3 (seeds 0-2, measured). With each row's rare columns scaled without it
    (_iterative_lr.held_out_curvatures): 0.997, 0.999 and 0.984; with rare shares floored too (_floored), 1.0000
    to four places, the epoch losses falling throughout."""
    n = 60_000
    for seed in range(3):
        X, y, rng = two_one_hot_beside_numeric(n, 5000, seed)
        w = 10 ** rng.uniform(-1, 1, size=n)
        chunks = [(X[lo : lo + 10_000], y[lo : lo + 10_000], w[lo : lo + 10_000]) for lo in range(0, n, 10_000)]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)  # 15 epochs: the rule has not stopped
            est = LinearRegressor(solver="sgd", random_state=0, max_epochs=15).fit_stream(chunks)
        assert est.score(X, y, sample_weight=w) > 0.999


@pytest.mark.parametrize("sparse", [False, True])
@pytest.mark.parametrize("rule", ["sgd", "adam"])
def test_partial_fit_on_widely_weighted_one_hot_rows_approaches_the_fit(sparse, rule):
    """Two one-hot columns of 300 levels beside numeric columns of scales 1, 50 and 1e3 (means 0, 100, 5e3),
    weights 10^U(-3, 3), six chunks of 500 rows, five passes of default partial_fit. The first chunk scaled each
    level by its few rows' weights: the weighted R^2 ended at 0.53 (SGD) and -24 (Adam; CSR 0.54 and -7.0,
    with no warning). With a rare column's rows at the mean weight: SGD 0.975 and Adam 0.558 (CSR 0.973 and
    0.630); with its share taken as at least eight rows' too (_iterative_lr._floored), 0.998 and 0.920 (CSR 0.998
    and 0.871; measured, seeds 0-3 at least 0.998 and 0.797)."""
    n = 3000
    X, y, rng = two_one_hot_beside_numeric(n, 300, seed=0)
    w = 10 ** rng.uniform(-3, 3, size=n)
    Xs = X if sparse else X.toarray()
    est = LinearRegressor(solver=rule, random_state=0)
    for _ in range(5):
        for lo in range(0, n, 500):
            est.partial_fit(Xs[lo : lo + 500], y[lo : lo + 500], sample_weight=w[lo : lo + 500])
    assert est.score(X, y, sample_weight=w) > (0.99 if rule == "sgd" else 0.75)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(1, 60), d=st.integers(1, 40), k=st.integers(1, 4),
       dtype=st.sampled_from([np.float32, np.float64]), sparse=st.booleans())
def test_rows_times_is_the_product_within_its_rounding(seed, n, d, k, dtype, sparse):
    # The between-epoch products (validation score, the plateau rule's comparison, a warm start's loss) take
    # NumPy's loops instead of BLAS, whose threaded products leave worker threads spinning on the core a two-thread
    # epoch needs: the same product, summed in another order, so within d units of roundoff of sum |x_ij w_kj|.
    rng = np.random.default_rng(seed)
    X = (rng.normal(size=(n, d)) * (rng.random((n, d)) < 0.5)).astype(dtype)
    W = rng.normal(size=(k, d)).astype(dtype)
    got = _iterative_lr.rows_times(sp.csr_array(X) if sparse else X, W)
    want = X.astype(np.float64) @ W.T.astype(np.float64)
    assert got.shape == (n, k) and got.dtype == dtype
    bound = d * np.finfo(dtype).eps * (np.abs(X).astype(np.float64) @ np.abs(W.T).astype(np.float64))
    assert np.all(np.abs(got - want) <= bound)
    if sparse:  # CSR: SciPy's product bit for bit (the compiled one with int32 or int64 indices, or SciPy's own)
        A = sp.csr_array(X)
        wide = sp.csr_array((A.data, A.indices.astype(np.int64), A.indptr.astype(np.int64)), shape=A.shape)
        for M in (A, wide):
            np.testing.assert_array_equal(_iterative_lr.rows_times(M, W), np.asarray(A @ W.T))
        mixed = sp.csr_array((A.data, A.indices.astype(np.int64), A.indptr), shape=A.shape)  # (falls back to SciPy)
        np.testing.assert_array_equal(_iterative_lr.rows_times(mixed, W), np.asarray(A @ W.T))
        Xs = sp.csr_array((A.data, A.indices, A.indptr), shape=(n, d + 1))  # a column more than W: SciPy's error
        with pytest.raises(ValueError):
            _iterative_lr.rows_times(Xs, W)
        # the map without shift on CSR rows: NumPy's values bit for bit, the rows left as they were
        scale = rng.uniform(1e-3, 1e3, size=d)
        before = A.copy()
        out = _iterative_lr.Affine(shift=np.zeros(d), scale=scale).transform(A)
        np.testing.assert_array_equal(out.data, (A.data.astype(np.float64) / scale[A.indices]).astype(dtype))
        assert out.dtype == dtype and (A != before).nnz == 0


def _singleton_levels(n: int, singles: int, seed: int = 1, levels: int = 1500):
    """:func:`two_one_hot_beside_numeric` (``levels`` levels each) whose first ``singles`` rows each take a level
    of the first categorical column that no other row holds."""
    X, _, rng = two_one_hot_beside_numeric(n, levels, seed)
    X = X.tolil()
    for i in range(singles):
        X[i, X.rows[i][0]] = 0.0
    hot = sp.csr_array((np.ones(singles), (np.arange(singles), np.arange(singles))), shape=(n, singles))
    X = sp.hstack([sp.csr_array(X), hot]).tocsr()
    X.eliminate_zeros()
    return X, X @ rng.normal(size=X.shape[1]) + rng.normal(size=n)


def _excess_over_lsqr(est, X, y) -> float:
    """:func:`relative_excess` of ``est`` on CSR ``X``, the optimum from ``solver="lsqr"`` to 1e-12."""
    best = LinearRegressor(solver="lsqr", tol=1e-12, max_iter=100_000).fit(X, y)
    return relative_excess(est, X, y, L_star=half_mse(X, y, best.coef_, best.intercept_))


def test_levels_held_by_one_row_do_not_make_sgd_overshoot():
    """A CSR fit's map floors a rare column's share of the rows for SGD (``_iterative_lr.floored_squares``): a
    level held by one row of n, scaled to its mean square, put ``n`` into that row's curvature, and default SGD's
    steps on it overshot, its epoch losses rising 9,000-fold over their lowest (20 such levels, 40,000 rows)
    before the plateau rule cut the rate. Floored, no epoch's loss exceeds the lowest before it by more than 10%
    (measured: 0.6%, the minibatch noise), and the fit ends within 0.1% of the optimum (0.019%)."""
    X, y = _singleton_levels(40_000, 20)
    est = LinearRegressor(solver="sgd", random_state=0).fit(X, y)
    losses = np.asarray(est.loss_curve_)
    assert np.max(losses[1:] / np.minimum.accumulate(losses)[:-1]) < 1.1
    assert _excess_over_lsqr(est, X, y) < 1e-3


def _zipf_categories(n: int, levels: int, exponent: float, seed: int):
    """Two categorical columns whose levels follow Zipf's law (``exponent``, capped at ``levels``), one-hot in CSR,
    beside three numeric columns of scales 1, 50 and 1e3 and means 0, 100 and 5e3, and a linear target with unit
    noise: most levels are held by a few rows."""
    rng = np.random.default_rng(seed)
    cat = np.minimum(rng.zipf(exponent, size=(n, 2)) - 1, levels - 1)
    hot = sp.csr_array((np.ones(2 * n), (np.repeat(np.arange(n), 2), (cat + np.array([0, levels])).ravel())),
                       shape=(n, 2 * levels))
    X = sp.hstack([hot, sp.csr_array(rng.normal(size=(n, 3)) * [1, 50, 1e3] + [0, 100, 5e3])]).tocsr()
    return X, X @ rng.normal(size=X.shape[1]) + rng.normal(size=n)


def test_a_zipf_category_is_fitted_by_default_sgd():
    """Zipf categories (exponent 1.3, 5,000 levels, 20,000 rows): default SGD ended 6.1% above the optimum after
    100 epochs; with the floored map (``_iterative_lr.floored_squares``) 0.019%, in 75."""
    X, y = _zipf_categories(20_000, 5_000, 1.3, 2)
    est = LinearRegressor(solver="sgd", random_state=0).fit(X, y)
    assert _excess_over_lsqr(est, X, y) < 1e-2


@pytest.mark.parametrize("sparse", [False, True])
def test_dense_and_sparse_maps_floor_rare_levels_alike(sparse):
    """The dense map floors a rare column's share as the CSR map does (by its nonzero values): Zipf categories of
    exponent 1.2 (1,000 levels, 3,000 rows) ended 76% (dense) and 52% (CSR) above the optimum after 100 epochs of
    default SGD; floored, 0.43% and 0.29%, in 40."""
    X, y = _zipf_categories(3_000, 1_000, 1.2, 8)
    est = LinearRegressor(solver="sgd", random_state=0).fit(X if sparse else X.toarray(), y)
    assert _excess_over_lsqr(est, X, y) < 1e-2


def test_floored_squares_raise_the_rare_columns_held_fewer_than_the_floor():
    """``floored_squares``: a column stored m < 8 times among n >= 128 rows has its mean square times 8 / m (its
    share of the rows taken as 8 values'); columns stored 8 or more times, or not rare (64 or more, or in
    SHIFT_MIN_DENSITY of the rows), and unstored ones keep theirs. Small samples floor at n / 16."""
    counts = np.array([1, 2, 7, 8, 63, 64, 0, 500])
    squares = np.arange(1.0, 9.0)
    got = _iterative_lr.floored_squares(squares, counts, 1000)
    np.testing.assert_array_equal(got, squares * [8.0, 4.0, 8 / 7, 1, 1, 1, 1, 1])
    np.testing.assert_array_equal(_iterative_lr.floored_squares(squares[:2], counts[:2], 32), squares[:2] * [2, 1])


@pytest.mark.parametrize("sparse", [True, False])
def test_the_floored_map_bounds_a_weighted_rows_curvature_as_an_unweighted_ones(sparse):
    """With weights, the floored map (``_iterative_lr.floored_squares``) counts a level's rows by their weights'
    sum over the heaviest (``_iterative_lr.holders``): singleton levels whose rows weigh 3 are floored as levels
    held once, so that row's curvature in its level, its weight over the mean times ``1 / scale^2``, is ``n / 8``
    as without weights. Counted as three repetitions (the weights' sum over the mean weight), the rows had
    three times that. CSR: equal to rounding; dense: within 1% (the centring subtracts the floored mean's square,
    of relative size ``O(8 w / n)`` = 0.6% here, and it differs with the weight)."""
    X, _ = _singleton_levels(4_000, 20)
    params = LinearRegressor(solver="sgd").get_params()
    w = np.ones(X.shape[0])
    w[:20] = 3.0
    Xf = X if sparse else X.toarray()
    weighted = _iterative_lr.choose_affine(params, Xf, "plateau", np.arange(X.shape[0]), w, floor=True)
    plain = _iterative_lr.choose_affine(params, Xf, "plateau", np.arange(X.shape[0]), None, floor=True)
    singles = slice(X.shape[1] - 20, X.shape[1])
    curvature = (3.0 / w.mean()) / weighted.scale[singles] ** 2
    np.testing.assert_allclose(curvature, 1.0 / plain.scale[singles] ** 2, rtol=1e-12 if sparse else 1e-2)
    np.testing.assert_allclose(curvature, X.shape[0] / 8, rtol=1e-12 if sparse else 1e-2)


def test_holders_count_rows_by_the_heaviest_weight():
    """``_iterative_lr.holders``: the weights' sum over the largest; equal weights give the counts; a column no
    weighted row holds keeps its count. The CSR form sums the rare columns' values alone."""
    got = _iterative_lr.holders(np.array([4.0, 6.0, 0.0]), np.array([3.0, 2.0, 0.0]), np.array([2, 3, 5]))
    np.testing.assert_array_equal(got, [4.0 / 3.0, 3.0, 5.0])
    X = sp.csr_array(np.array([[1.0, 1.0], [1.0, 1.0], [0.0, 1.0]]))
    w = np.array([3.0, 1.0, 1.0])
    counts = np.array([2, 3])
    got = _iterative_lr._csr_holders(X, np.repeat(w, np.diff(X.indptr)), counts, np.array([True, False]))
    np.testing.assert_array_equal(got, [4.0 / 3.0, 3.0])


def _weighted_excess(est, X, y, w) -> float:
    """The weighted least-squares objective of ``est`` over the optimum's (``solver="lsqr"`` to 1e-12), less 1."""
    best = LinearRegressor(solver="lsqr", tol=1e-12, max_iter=100_000).fit(X, y, sample_weight=w)

    def objective(e):
        r = X @ e.coef_ + e.intercept_ - y
        return float(np.average(r * r, weights=w))
    return objective(est) / objective(best) - 1.0


@pytest.mark.parametrize(("rule", "bound"), [("sgd", 1e-2), ("momentum", 5e-2)])
def test_zipf_categories_with_widely_spread_weights_are_fitted_by_default(rule, bound):
    """Zipf categories (5,000 levels, 20,000 rows, CSR) with weights ``10^U(-3, 3)``: with the floor counting a
    weight as so many repetitions of its row, a heavy row's level was not floored and default SGD ended 3,180%
    above the weighted optimum, momentum 151% (both at ``max_epochs``); counted by the heaviest weight
    (``_iterative_lr.holders``), 0.30% and 2.2%."""
    X, y = _zipf_categories(20_000, 5_000, 1.3, 2)
    w = 10 ** np.random.default_rng(0).uniform(-3, 3, X.shape[0])
    est = LinearRegressor(solver=rule, random_state=0).fit(X, y, sample_weight=w)
    assert _weighted_excess(est, X, y, w) < bound


@pytest.mark.parametrize("rule", ["momentum", "nesterov"])
def test_levels_held_by_one_row_do_not_make_the_momentum_rules_overshoot(rule):
    """The momentum rules' rate is bounded by the rows' private curvatures (``_iterative_lr.momentum_rate_bound``)
    and their map floors rare columns as SGD's does: with 20 levels held by one row each (40,000 rows), default
    momentum's epoch losses rose 9,100-fold over their lowest before the plateau rule's cuts (the buffer carried
    each such row's step on for about ten steps, with no other row holding its level to pull it back). Now no
    epoch's loss exceeds the lowest before it by more than 10% (measured: never above it), within 0.1% of the
    optimum (0.043%)."""
    X, y = _singleton_levels(40_000, 20)
    est = LinearRegressor(solver=rule, random_state=0).fit(X, y)
    losses = np.asarray(est.loss_curve_)
    assert np.max(losses[1:] / np.minimum.accumulate(losses)[:-1]) < 1.1
    assert _excess_over_lsqr(est, X, y) < 1e-3


@pytest.mark.parametrize("sparse", [False, True])
def test_the_momentum_bound_finds_the_private_levels_of_dense_centred_columns(sparse):
    """Dense ``X``'s map centres one-hot columns, so every row stores a value in them: counting nonzero values,
    ``private_curvatures`` found no private level and the bound never applied. It counts the values other than
    the one 0 maps to (``_iterative_lr.zero_image``). 20 singleton levels beside 100-level columns, 10,000
    rows: dense, default momentum's epoch losses rose 81-fold over their lowest, now never (the CSR fit's never
    did), and it ends within 0.1% of the optimum (0.027%; CSR 0.023%)."""
    X, y = _singleton_levels(10_000, 20, levels=100)
    est = LinearRegressor(solver="momentum", random_state=0).fit(X if sparse else X.toarray(), y)
    losses = np.asarray(est.loss_curve_)
    assert np.max(losses[1:] / np.minimum.accumulate(losses)[:-1]) < 1.1
    assert _excess_over_lsqr(est, X, y) < 1e-3


def test_a_dense_stream_takes_the_momentum_bound_of_its_sample():
    """``fit_stream`` on dense chunks takes its rate from a mapped sample, centred like ``fit``'s: the sample's
    rate passes where the map sends 0 (``_iterative_lr.zero_image``) for the momentum bound as ``fit`` does. 20
    singleton levels beside 100-level columns, 10,000 rows in chunks of 2,500: default momentum's epoch losses
    rose 94-fold over their lowest, now never, and it ends within 0.1% of the optimum (0.074%)."""
    X, y = _singleton_levels(10_000, 20, levels=100)
    Xd = X.toarray()
    est = LinearRegressor(solver="momentum", random_state=0)
    est.fit_stream([(Xd[i : i + 2_500], y[i : i + 2_500]) for i in range(0, Xd.shape[0], 2_500)])
    losses = np.asarray(est.loss_curve_)
    assert np.max(losses[1:] / np.minimum.accumulate(losses)[:-1]) < 1.1
    assert _excess_over_lsqr(est, X, y) < 1e-3


def test_a_plateau_stop_on_rare_levels_is_checked_with_every_rows_diagonal():
    """Zipf categories of 2,000 levels over 5,000 rows: default momentum stops 1.2% above the optimum. The plateau
    check's Jacobi preconditioner from every other row (``PLATEAU_CHECK_ROWS``) missed or doubled the rare
    levels and bounded the gap at 0.48% of the loss: silent. Small data now takes every row
    (``_iterative._sampled_jacobi``): the bound is 1.20%, and the fit warns."""
    X, y = _zipf_categories(5_000, 2_000, 1.3, 8)
    with pytest.warns(ConvergenceWarning, match="stopped at a loss plateau"):
        est = LinearRegressor(solver="momentum", random_state=0).fit(X, y)
    assert _excess_over_lsqr(est, X, y) > 1e-2
    centre, diag = _iterative._sampled_jacobi(X, None, True)
    dense = X.toarray()
    np.testing.assert_allclose(centre, dense.mean(axis=0), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(diag, dense.var(axis=0), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize(("rule", "sparse"), [("momentum", True), ("nesterov", False)])
def test_zipf_categories_are_fitted_by_the_default_momentum_rules(rule, sparse):
    """Zipf categories, default momentum rules: 5,000 levels of exponent 1.3 over 20,000 rows (CSR) ended 6.8%
    above the optimum after 100 epochs, now 0.036% in 45; 1,000 levels of exponent 1.2 over 3,000 rows (dense)
    38.6%, now 0.15% in 38."""
    X, y = _zipf_categories(20_000, 5_000, 1.3, 2) if sparse else _zipf_categories(3_000, 1_000, 1.2, 8)
    est = LinearRegressor(solver=rule, random_state=0).fit(X if sparse else X.toarray(), y)
    assert _excess_over_lsqr(est, X, y) < 1e-2


@pytest.mark.parametrize("sparse", [False, True])
def test_private_curvatures_count_only_the_columns_few_rows_store(sparse):
    """``private_curvatures``: ``w_i sum_j x_ij^2`` over the columns stored in fewer than ``n (1 - mu) / b`` of the
    ``n`` rows (here 100 rows, mu 0.9, b 2: fewer than 5), dense and CSR alike; zero without such a column.
    ``momentum_rate_bound`` is ``b`` over their largest, infinite when all are zero."""
    rng = np.random.default_rng(0)
    n = 100
    X = np.zeros((n, 4))
    X[:, 0] = rng.normal(size=n)  # every row: shared
    X[[3, 7], 1] = [2.0, -3.0]  # two rows: private
    X[10:15, 2] = 1.5  # five rows: not fewer than 5
    X[50, 3] = 0.5  # one row: private
    w = rng.uniform(0.5, 2.0, size=n)
    got = _iterative_lr.private_curvatures(sp.csr_array(X) if sparse else X, w, 0.9, 2)
    want = np.zeros(n)
    want[[3, 7, 50]] = np.array([4.0, 9.0, 0.25]) * w[[3, 7, 50]]
    np.testing.assert_allclose(got, want, rtol=0, atol=0)
    assert _iterative_lr.momentum_rate_bound(got, 2) == 2 / (9.0 * w[7])
    shared = _iterative_lr.private_curvatures(sp.csr_array(X[:, :1]) if sparse else X[:, :1], w, 0.9, 2)
    np.testing.assert_array_equal(shared, np.zeros(n))
    assert _iterative_lr.momentum_rate_bound(shared, 2) == np.inf


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_private_curvatures_of_centred_dense_columns_count_the_values_zero_does_not_map_to(dtype):
    """Dense columns centred and scaled by a map store a value in every row; with ``zero``
    (``_iterative_lr.zero_image``, bit for bit what the map gives 0) the rows whose raw value was nonzero are
    the stored ones: the mapped curvatures of the rows of the private columns (two rows; one row), as the raw
    pattern says. Without it, no column is private (the defect)."""
    rng = np.random.default_rng(0)
    n = 100
    X = np.zeros((n, 4), dtype=dtype)
    X[:, 0] = rng.normal(size=n)
    X[[3, 7], 1] = [2.0, -3.0]
    X[10:15, 2] = 1.5
    X[50, 3] = 0.5
    w = rng.uniform(0.5, 2.0, size=n)
    affine = _iterative_lr.Affine(shift=X.mean(axis=0, dtype=np.float64), scale=X.std(axis=0, dtype=np.float64))
    Z = affine.transform(X)
    zero = _iterative_lr.zero_image(affine, Z)
    got = _iterative_lr.private_curvatures(Z.astype(np.float64), w, 0.9, 2, zero=zero.astype(np.float64))
    want = np.zeros(n)
    for i, j in [(3, 1), (7, 1), (50, 3)]:
        want[i] = w[i] * float(Z[i, j]) ** 2
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(_iterative_lr.private_curvatures(Z.astype(np.float64), w, 0.9, 2), np.zeros(n))


def test_the_momentum_rate_bound_is_left_out_under_a_per_column_ridge_map(monkeypatch):
    """Under a per-column ridge map each coordinate's own decay pulls a rare column back, and the map is not
    floored either: the bound is not consulted there (a tiny bound leaves the rate as it was), and is without
    one."""
    X, y = _zipf_categories(3_000, 1_000, 1.2, 8)

    def rate(alpha):
        return LinearRegressor(solver="momentum", alpha=alpha, max_epochs=1, tol=None, random_state=0).fit(
            X, y).learning_rate_

    plain = {alpha: rate(alpha) for alpha in (0.0, 1e-3)}
    monkeypatch.setattr(_iterative_lr, "momentum_rate_bound", lambda c, b: 1e-12)
    assert rate(1e-3) == plain[1e-3]
    assert rate(0.0) == pytest.approx(1e-12 * 0.1) and plain[0.0] > 1e-6


def test_a_small_target_left_far_beside_a_large_one_is_warned():
    # The plateau rule judges the targets' summed loss, which a target of small scale does not move: beside a
    # target 1e4 times larger RMSProp's default fit stopped 7.8 times the small one's optimal loss above it, and
    # the check of the sum was silent. Each target is now checked at its own scale, and the warning names it.
    X, Y = two_scale_targets()
    with pytest.warns(ConvergenceWarning, match="objective of target 0 is still at least"):
        est = LinearRegressor(solver="rmsprop", random_state=0).fit(X, Y)
    exact = LinearRegressor().fit(X, Y[:, 0])
    far = half_mse(X, Y[:, 0], est.coef_[0], est.intercept_[0])
    assert far > 1.5 * half_mse(X, Y[:, 0], exact.coef_, exact.intercept_)  # far indeed
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)  # both targets finished: nothing to say
        LinearRegressor(solver="adam", random_state=0).fit(X, Y)


@pytest.mark.parametrize("loss, rule", [("huber", "rmsprop"), ("absolute_error", "rmsprop"),
                                        ("absolute_error", "adagrad")])
def test_a_small_target_left_far_by_a_robust_fit_is_warned(loss, rule):
    # The squared error's check judged each target at its own scale; Huber's and the absolute error's judged the
    # sum alone: targets scaled 1, 1e3 and 1e-2, the small one left 7.1 (Huber, RMSProp), 1.8 and 1.2 times its
    # optimal loss above it, silently. Each target's reweighted check now runs at its own scale.
    rng = np.random.default_rng(0)
    X = rng.normal(size=(3000, 6))
    Y = np.column_stack([(X @ rng.normal(size=6) + rng.normal(size=3000)) * s for s in (1.0, 1e3, 1e-2)])
    with pytest.warns(ConvergenceWarning, match="objective of target 2 is still at least"):
        est = LinearRegressor(solver=rule, loss=loss, random_state=0).fit(X, Y)
    exact = LinearRegressor(solver="newton", loss=loss).fit(X, Y[:, 2])

    def objective(coef, intercept):
        a = np.abs(X @ coef + intercept - Y[:, 2])
        return float(np.mean(a if loss == "absolute_error" else np.where(a <= 1.35, 0.5 * a * a, 1.35 * (a - 0.675))))

    assert objective(est.coef_[2], est.intercept_[2]) > 1.1 * objective(exact.coef_, exact.intercept_)  # far


@pytest.mark.parametrize("rule", ["sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adam"])
def test_a_wide_robust_fit_left_far_along_the_null_space_is_warned(rule):
    # The absolute error with a ridge on 300 x 1,000 rows: every rule interpolates the rows and stops 50-96% above
    # the optimal objective, silently. The adaptive rules' per-coordinate steps leave X's row space, and their
    # excess sits in the ridge along X's null space: the check now also evaluates the coefficients with the least
    # ridge for the same predictions (an n x n solve). SGD's and the momentum rules' stays in the row space, a
    # trade of residual for norm that the reweighted steps (curvature 1 / mu, mu a tenth of residuals near 0) did
    # not see: an interpolating fit now also gets a step with mu a tenth of the targets' spread.
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 1000))
    y = X[:, :10] @ rng.normal(size=10) + 0.5 * rng.normal(size=300) + 3
    with pytest.warns(ConvergenceWarning, match="plateau"):
        est = LinearRegressor(solver=rule, loss="absolute_error", alpha=1e-2, random_state=0).fit(X, y)
    exact = LinearRegressor(solver="newton", loss="absolute_error", alpha=1e-2).fit(X, y)

    def objective(e):
        return np.mean(np.abs(e.predict(X) - y)) + 0.5e-2 * e.coef_ @ e.coef_

    assert objective(est) > 1.4 * objective(exact)  # far indeed (SGD: 1.497)


def test_rows_a_huber_fit_has_not_followed_are_not_left_out_as_far():
    # The plateau check leaves rows far out at a fit (beyond 100 times the residuals' 75th percentile) out of the
    # objective it judges, so that an outlier's term does not hide the other rows' distance from their minimum.
    # Rows a fit has not yet followed are far out too: a column on 3% of the rows with an effect of 1e3, its
    # coefficient still 0. Judged without them the fit looked finished; the whole objective's check warns first.
    rng = np.random.default_rng(1)
    X = rng.normal(size=(3000, 6))
    X[:, -1] = rng.random(3000) < 0.03
    y = X @ np.r_[rng.normal(size=5), 1e3] + rng.normal(size=3000)
    exact = LinearRegressor(solver="newton", loss="huber").fit(X, y)
    coef = exact.coef_.copy()
    coef[-1] = 0.0
    r = X @ coef + exact.intercept_ - y
    loss = float(np.mean(_iterative.robust_rho(r, "huber", 1.35)))
    params = {"loss": "huber", "epsilon": 1.35, "fit_intercept": True, "decay": None, "positive": False}
    with pytest.warns(ConvergenceWarning, match="at least 0.9"):
        _iterative._check_plateau_stop("sgd", params, optim.make("sgd"), Data(X, y[:, None], None, True), None,
                                       np.r_[coef, exact.intercept_], loss)


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(1, 400), far=st.integers(0, 30),
       size=st.sampled_from([1e3, 1e8, 1e100]), weighted=st.booleans())
def test_the_streams_far_row_scales_follow_the_in_memory_ones(seed, n, far, size, weighted):
    # fit_stream's and Dask's far-row limit comes from a histogram of the residuals summed over the chunks
    # (_sweeps.spread_scales), where in memory residual_scale and _weighted_quantile see every residual: the
    # histogram's clipped sums lie between the exact ones at t and at (1 + 1 / SPREAD_STEPS) t, and its quantile
    # (a bin's upper edge) between the exact one and 1 + 1 / SPREAD_STEPS times it
    from fastopt import _krylov, _sweeps

    rng = np.random.default_rng(seed)
    a = np.abs(rng.standard_cauchy(n)) * rng.choice([1e-3, 1.0, 1e3])
    a[: min(far, n)] = size * rng.random(min(far, n))
    a[rng.random(n) < 0.05] = 0.0
    w = rng.random(n) * 3 if weighted else np.ones(n)
    parts = [_krylov.Pass(_sweeps._spread(a[i:i + 37], w[i:i + 37]), 0.0, float(w[i:i + 37] @ a[i:i + 37]))
             for i in range(0, n, 37)]
    spread = sum(parts[1:], parts[0])
    weights, sums = np.split(spread.z, 2)
    step = 1 + 1 / _sweeps.SPREAD_STEPS
    for t in [*rng.choice(a, 5), *(a.max() * rng.random(3)), 0.0]:
        value = _sweeps.spread_mean(weights, sums, t)
        low, high = float(w @ np.minimum(a, t)), float(w @ np.minimum(a, t * step))
        assert low * (1 - 1e-12) <= value <= high * (1 + 1e-12) + 1e-300
    if w.sum() > 0:
        q = _sweeps.spread_scales(spread)[1]
        exact = _iterative._weighted_quantile(a, w, _iterative.FAR_ROW_QUANTILE)
        assert exact <= q <= exact * step


def test_a_float32_least_squares_fit_held_by_its_targets_rounding_names_the_precision():
    # Targets of 1e7 (units of 1 in float32, X's dtype): the plateau check found a decrease within the rounding's
    # loss and blamed the conditioning ("columns far from centred ..."); the fit cannot resolve the targets finer
    rng = np.random.default_rng(0)
    X = rng.normal(size=(100, 3)).astype(np.float32)
    y = 1e7 + X.astype(np.float64) @ rng.normal(size=3) + 0.01 * rng.normal(size=100)
    with pytest.warns(ConvergenceWarning, match="rounded to float32.*Pass X as float64"):
        LinearRegressor(solver="sgd", random_state=0).fit(X, y)
    # the same targets in float64 fit without it
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        LinearRegressor(solver="sgd", random_state=0).fit(X.astype(np.float64), y)


@pytest.mark.parametrize("size", [1e8, 1e25, 1e300])
def test_the_clipped_mean_reaches_its_fixed_point_beside_rows_far_out(size):
    # Plain rounds fall by p C a round while rows of weight p stay clipped (0.75 here): 64 of them left three rows
    # of 1e25 among 400 at a scale of 7.6e14 where the others' mean fits, the start's rate diverged in fit_stream
    # and in-memory fits ended with coefficients of 4e13. Each round now steps to the fixed point of the line.
    from fastopt._iterative_lr import RESIDUAL_CLIP, residual_scale

    rng = np.random.default_rng(0)
    r = np.abs(rng.normal(size=400))
    r[:3] = size
    s = residual_scale(r[:, None], np.ones(400))
    expected = float(np.mean(r[3:])) * 397 / 400 / (1 - 3 * RESIDUAL_CLIP / 400)  # s = (sum r_in + 3 C s) / 400
    assert s == pytest.approx(expected, rel=1e-12)


@settings(max_examples=200, deadline=None)
@given(r=st.floats(-1e30, 1e30), dr=st.floats(-1e3, 1e3), loss=st.sampled_from(["huber", "absolute_error"]))
def test_rho_change_is_the_difference_of_the_losses_and_exact_on_a_linear_branch(r, dr, loss):
    # The reweighted step's points are judged by the loss's change (best_step): beside rows of 1e25 the objective
    # (1e23) rounded the other rows' whole decrease away, and the step was never taken
    a, b = np.array([r]), np.array([dr])
    got = float(_iterative.rho_change(a, b, loss, 1.35)[0])
    slope = 1.35 if loss == "huber" else 1.0
    knee = 1.35 if loss == "huber" else 0.0
    if abs(r) > knee and abs(r + dr) > knee and np.sign(r) == np.sign(r + dr):
        assert got == slope * np.sign(r) * dr
    else:
        direct = float(_iterative.robust_rho(a + b, loss, 1.35)[0] - _iterative.robust_rho(a, loss, 1.35)[0])
        assert got == direct


def test_the_clipped_mean_of_residuals_near_the_top_of_float64_is_theirs():
    # Their weighted sum overflowed: inf times no clipped weight gave NaN, and the scale came back 0 (a second
    # target's 1 then stood for both); the rounds now run in units of a power of two near the largest
    from fastopt._iterative_lr import residual_scale

    assert residual_scale(np.array([[1e308], [1e308]]), np.ones(2)) == 1e308
    assert residual_scale(np.full((1000, 1), 1e306), np.ones(1000)) == pytest.approx(1e306, rel=1e-15)
    assert residual_scale(np.stack([np.ones(4), np.full(4, 1e308)], axis=1), np.ones(4)) == 1e308


def _huber_minimum(X, y, sw, alpha, epsilon=1.35):
    """Huber's weighted minimum by SciPy's L-BFGS-B on standardised columns, restarted (independent of fastopt)."""
    from scipy.optimize import minimize
    s, d = sw / sw.sum(), X.shape[1]
    scale = X.std(0)
    scale[scale == 0] = 1.0
    Z = X / scale

    def f(p):
        r = Z @ p[:d] + p[d] - y
        g, w = np.clip(r, -epsilon, epsilon), p[:d] / scale
        a = np.abs(r)
        return (float(s @ np.where(a <= epsilon, 0.5 * r * r, epsilon * a - 0.5 * epsilon**2)) + 0.5 * alpha * w @ w,
                np.append(Z.T @ (s * g) + alpha * w / scale, s @ g))

    p = np.zeros(d + 1)
    for _ in range(5):
        p = minimize(f, p, jac=True, method="L-BFGS-B", options={"maxiter": 20000, "ftol": 1e-15, "gtol": 1e-12}).x
    return f(p)[0]


@pytest.mark.parametrize("seed", [3, 5])
def test_huber_sgd_on_offset_targets_under_spread_weights_reaches_the_optimum_or_warns(seed):
    # y about 1e6: the plateau rule's floor (and the check's alarm, at least 1% of it) was 1e-6 of the all-zero
    # model's loss, 1.35 here where the fit's loss is 0.02 (Huber's linear part of 1e6), so default SGD stopped
    # 13% and 65% above the optimum, silently. The floor is now the weighted median's loss (the best constant's
    # for the absolute error, near Huber's), as it was the best constant's for the squared error.
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(30, 7))
    y = X @ rng.normal(size=7) + 0.1 * rng.standard_t(2, size=30) + 1e6
    sw = 10.0 ** rng.uniform(-3, 3, size=30)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        est = LinearRegressor(solver="sgd", loss="huber", random_state=0).fit(X, y, sample_weight=sw)
    excess = _robust_objective("huber", 0.0, X, y, sw=sw)(est) / _huber_minimum(X, y, sw, 0.0) - 1
    assert excess <= 0.01 or any(issubclass(w.category, ConvergenceWarning) for w in caught)


@pytest.mark.parametrize("loss", ["huber", "absolute_error"])
def test_the_plateau_floor_of_a_robust_loss_with_an_intercept_ignores_an_offset_of_the_targets(loss):
    from fastopt._iterative_lr import null_loss
    rng = np.random.default_rng(0)
    y = rng.standard_t(2, size=(200, 2))
    sw = rng.uniform(0, 2, size=200)
    rows = np.arange(200)
    kind = _iterative.LOSSES[loss]
    here = null_loss(Data(np.zeros((200, 1)), y, None, False), rows, sw, kind, 1.35, True)
    shifted = null_loss(Data(np.zeros((200, 1)), y + np.array([1e6, -3e4]), None, False), rows, sw, kind, 1.35, True)
    assert shifted == pytest.approx(here, rel=1e-9)  # (y + 1e6 carries 1e-10 of rounding into the residuals)
    if loss == "absolute_error":  # the weighted median is its best constant: below the all-zero model's loss
        assert here <= null_loss(Data(np.zeros((200, 1)), y, None, False), rows, sw, kind, 1.35, False)


@pytest.mark.parametrize("solver", ["momentum", "nesterov", "adagrad", "rmsprop", "adam"])
def test_huber_fit_on_polynomial_columns_under_spread_weights_warns_where_it_stops_short(solver):
    # The draws of a probe's generator at seed 35 (the skipped draws chose its design and noise kinds): 80 rows of
    # degree-2 polynomial features of three columns about 100 (unscaled), Cauchy noise, weights 10^U(-3, 3),
    # alpha = 0.01. The fits stopped 3.7-4.8% above Huber's minimum with a reweighted bound of a fifth of the alarm,
    # silently; on small data a bound between 5% of the alarm and it now also tries L-BFGS-B's point from the best
    # one the rounds reached (a point found, so still a lower bound on the excess).
    from sklearn.preprocessing import PolynomialFeatures
    rng = np.random.default_rng(35)
    rng.choice(4), rng.choice(5), rng.integers(1, 4), rng.integers(2, 4)
    raw = rng.normal(size=(80, 3)) * 100 + 100
    rng.choice(3), rng.choice(3), rng.integers(2), rng.random()
    X = PolynomialFeatures(2).fit_transform(raw)
    w = rng.normal(size=10) * 10.0 ** rng.uniform(-2, 2)
    rng.choice(3), rng.normal(size=80), rng.standard_t(2, size=80)
    noise = rng.standard_cauchy(size=80) * 10.0 ** rng.uniform(-2, 1)
    t = X @ w
    y = t / max(1.0, t.std() / 10) + noise
    rng.random(), rng.random(), rng.choice(5)
    sw = 10.0 ** rng.uniform(-3, 3, size=80)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        est = LinearRegressor(solver=solver, loss="huber", alpha=0.01, random_state=0).fit(X, y, sample_weight=sw)
    excess = _robust_objective("huber", 0.01, X, y, sw=sw)(est) / _huber_minimum(X, y, sw, 0.01) - 1
    assert excess > 0.01  # (the case: stopped short)
    assert any(issubclass(w.category, ConvergenceWarning) for w in caught)
