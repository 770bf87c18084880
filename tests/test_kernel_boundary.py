"""Memory safety at the compiled boundary: no Python call may make a kernel read or write out of bounds.

Each case here used to segfault, raise SIGFPE, or read past an array (AddressSanitizer reports); now each is a
ValueError (or a parameter error) before any C runs. ``tools/sanitize.sh`` runs this file under ASan + UBSan.
"""
import numpy as np
import pytest
from sklearn.utils._param_validation import InvalidParameterError

from fastopt import LinearRegressor, _kernels, optim
from fastopt._iterative import LOSSES, EpochCtl, make_spec

ADAM = optim.make("adam", amsgrad=True)


def misaligned(a):
    """A copy of ``a`` whose data starts one byte past an aligned address."""
    raw = np.zeros(a.nbytes + 1, dtype=np.uint8)
    out = np.frombuffer(raw.data, dtype=a.dtype, count=a.size, offset=1).reshape(a.shape)
    out[...] = a
    assert out.ctypes.data % a.dtype.itemsize
    return out


def epoch_args(n=16, d=3, k=1, batch_size=4):
    rng = np.random.default_rng(0)
    X, Y = rng.normal(size=(n, d)), rng.normal(size=(n, k))
    params = np.zeros(k * d + k)
    state = ADAM.init_state(params.shape[0])
    work = np.empty(6 * params.shape[0] + 2 * k)
    train = EpochCtl(batch_size=batch_size, loss=LOSSES["squared_error"], epsilon=1.35, clip_norm=None,
                  loss_limit=np.inf)
    return {"rule": int(ADAM.rule), "hyper": ADAM.hyper, "train": train, "X": X, "Y": Y, "sample_weight": None,
            "order": np.arange(n, dtype=np.int64), "params": params, "state": state, "work": work, "t": 0,
            "lr": 1e-3}


def run_epoch(**changes):
    args = {**epoch_args(), **changes}
    return _kernels.epoch(*args.values())


def test_epoch_accepts_consistent_arguments():
    status, t, loss, _ = run_epoch()
    assert status == _kernels.Status.OK and t == 4 and np.isfinite(loss)


@pytest.mark.parametrize("change, match", [
    (lambda a: {"Y": a["Y"][:-1]}, "same rows"),
    (lambda a: {"X": np.empty((16, 0)), "params": np.zeros(1), "state": ADAM.init_state(1),
                "work": np.empty(8)}, "d, k >= 1"),
    (lambda a: {"params": np.zeros(2)}, "params has 2 entries"),
    (lambda a: {"order": np.array([0, 16], dtype=np.int64)}, "outside the 16 rows"),
    (lambda a: {"order": np.array([3, -1], dtype=np.int64)}, "outside the 16 rows"),
    (lambda a: {"state": a["state"][:2].copy()}, "at least 3 rows"),
    (lambda a: {"state": np.zeros((3, 2))}, "at least 3 rows of 4"),
    (lambda a: {"sample_weight": np.ones(15)}, "sample_weight has 15"),
    (lambda a: {"train": a["train"]._replace(batch_size=0)}, "batch_size must lie"),
    (lambda a: {"train": a["train"]._replace(batch_size=2**63 - 1)}, "batch_size must lie"),
    (lambda a: {"work": np.empty(3)}, "work needs"),
    (lambda a: {"X": misaligned(a["X"])}, "X is not aligned"),
    (lambda a: {"params": misaligned(a["params"])}, "params is not aligned"),
    (lambda a: {"sample_weight": misaligned(np.ones(16))}, "sample_weight is not aligned"),
])
def test_epoch_rejects_inconsistent_arguments(change, match):
    with pytest.raises(ValueError, match=match):
        run_epoch(**change(epoch_args()))


def test_step_checks_lengths_state_and_alignment():
    p, g = np.zeros(4), np.ones(4)
    with pytest.raises(ValueError, match="grad has 3"):
        _kernels.step(int(ADAM.rule), ADAM.hyper, p, g[:3], ADAM.init_state(4), 1, 0.1)
    with pytest.raises(ValueError, match="at least 3 rows"):
        _kernels.step(int(ADAM.rule), ADAM.hyper, p, g, np.zeros((2, 4)), 1, 0.1)
    with pytest.raises(ValueError, match="n_decay"):
        _kernels.step(int(ADAM.rule), ADAM.hyper, p, g, ADAM.init_state(4), 1, 0.1, 5)
    with pytest.raises(ValueError, match="grad is not aligned"):
        _kernels.step(int(ADAM.rule), ADAM.hyper, p, misaligned(g), ADAM.init_state(4), 1, 0.1)
    with pytest.raises(ValueError, match="grad is not aligned"):
        _kernels.clip_grad_norm(misaligned(g), 1.0)
    assert _kernels.step(int(ADAM.rule), ADAM.hyper, np.zeros(0), np.zeros(0), np.zeros((3, 0)), 1, 0.1) == 0
    # The public wrapper names a state given as a list (it raised AttributeError).
    with pytest.raises(ValueError, match="state must be a C-contiguous"):
        ADAM.step(p, g, [[0.0] * 4] * 3, 1, 0.1)


def test_gram_stats_checks_lengths_and_alignment():
    X, Y = np.ones((10, 2)), np.ones((10, 1))
    mean, gram = np.empty(3), np.empty((3, 3))
    with pytest.raises(ValueError, match="sample_weight has 4 entries"):
        _kernels.gram_stats(X, Y, np.ones(4), mean, gram, 4)
    with pytest.raises(ValueError, match="d \\+ k must lie"):
        _kernels.gram_stats(np.empty((10, 0)), np.empty((10, 0)), None, np.empty(0), np.empty((0, 0)), 4)
    with pytest.raises(ValueError, match="X is not aligned"):
        _kernels.gram_stats(misaligned(X), Y, None, mean, gram, 4)
    assert _kernels.gram_stats(X, Y, None, mean, gram, 4) == 10.0


def test_estimator_copies_misaligned_input():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(50, 3))
    y = X @ np.ones(3)
    w = rng.uniform(0.5, 1.5, size=50)
    for solver in ("normal", "qr", "adam"):
        ref = LinearRegressor(solver=solver, max_epochs=3, random_state=0).fit(X, y, sample_weight=w)
        got = LinearRegressor(solver=solver, max_epochs=3, random_state=0).fit(
            misaligned(X), misaligned(y), sample_weight=misaligned(w))
        np.testing.assert_array_equal(got.coef_, ref.coef_)


@pytest.mark.parametrize("params", [{"batch_size": 2**63 - 1}, {"batch_size": 10**30}])
def test_sizes_that_would_overflow_are_parameter_errors(params):
    X, y = np.ones((8, 2)), np.ones(8)
    with pytest.raises(InvalidParameterError, match="batch_size"):
        LinearRegressor(solver="sgd", **params).fit(X, y)


def test_huge_power_t_decays_the_rate_to_zero():
    # It raised OverflowError after the first epoch.
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 2))
    est = LinearRegressor(solver="sgd", schedule="invscaling", power_t=1e308, max_epochs=3, tol=None,
                          learning_rate=0.01).fit(X, X @ np.ones(2))
    assert est.n_iter_ == 3 and np.isfinite(est.coef_).all()
    assert optim.schedule_lr("invscaling", 0.1, 2, 5, power_t=1e308) == 0.0


def test_make_spec_matches_kernel_slot_count():
    # The boundary's slot count (rules.h) never rejects the state init_state makes.
    for name in optim.OPTIMIZERS:
        for extra in ({}, {"amsgrad": True}, {"centered": True}, {"momentum": 0.5}):
            try:
                spec = optim.make(name, **extra)
            except ValueError:
                continue
            n = 4
            spec.step(np.zeros(n), np.ones(n), spec.init_state(n), 1, 0.01)
    assert make_spec("rmsprop", LinearRegressor(solver="rmsprop", centered=True).get_params()).n_slots >= 2


def test_csr_gram_stats_checks_alignment():
    import scipy.sparse

    X = scipy.sparse.random(20, 4, density=0.5, format="csr", random_state=0)
    Y = np.ones((20, 1))
    mean, gram = np.empty(5), np.empty((5, 5))
    args = [X.data, X.indices.astype(np.int32), X.indptr.astype(np.int32), 4, Y, None, mean, gram]
    assert _kernels.csr_gram_stats(*args) == 20.0
    for i, name in ((0, "data"), (1, "indices"), (4, "Y")):
        bad = list(args)
        bad[i] = misaligned(args[i])
        with pytest.raises(ValueError, match=f"{name} is not aligned"):
            _kernels.csr_gram_stats(*bad)
