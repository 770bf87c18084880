"""Group "sparse ridge": ridge fits on TF-IDF rows, whose columns' scales spread with their terms' frequencies:
100,000 documents of 40 Zipf-distributed terms (exponent 1.1) from 20,000, ``TfidfTransformer``'s rows (CSR,
float64, seeded), a target from one term in ten plus an offset and noise, ``alpha = 1e-3``.

Run on its own with ``cd bench && python -m pytest test_sparse_ridge.py -q -p no:randomly
--benchmark-json=OUT && python report.py OUT``. Rows:

* ``test_csr_epoch_with_decays[<rule>-<decay>]``: the bare CSR kernel, one epoch of SGD or momentum (one thread,
  minibatches of 64, a pre-drawn order) under one common decay ``alpha`` (``one``: the deferred updates' shared
  table) or each column's own decay ``alpha / (m_j + alpha)`` (``own``: the per-column map's; each resting
  coordinate caught up by its own power of its step map);
* ``test_csr_epoch_own_decay_ways[<rule>-<way>-<threads>t]``: the bare kernel, one epoch of SGD, momentum or
  Nesterov under each column's own decay, stepped on every coordinate (``every``) or deferred (``deferred``),
  forced through ``CSR_EVERY_STEP_RATIO``, on one and two threads; ``extra_info`` the rows' ratio
  ``d / (batch * stored values a row)`` and the way the kernel chooses there (``every`` up to 8);
* ``test_default_fit[<rule>]``: ``LinearRegressor(solver=rule, alpha=1e-3, random_state=0)`` on the CSR matrix
  (the per-column map and its decays), ``extra_info`` the objective's relative excess over the exact
  ``solver="cg"`` fit and the epochs;
* ``test_sklearn_sgdregressor``: ``SGDRegressor(alpha=1e-3, random_state=0)`` at its defaults (the same
  objective: the mean squared error halved plus ``alpha / 2`` times the squared norm), the same ``extra_info``.
"""
import warnings

import numpy as np
import pytest
from conftest import tfidf_rows
from sklearn.exceptions import ConvergenceWarning as SklearnConvergenceWarning
from sklearn.linear_model import SGDRegressor

from fastopt import LinearRegressor, _kernels, optim
from fastopt._iterative import EpochCtl
from fastopt.exceptions import ConvergenceWarning

N, D, TERMS, ALPHA, BATCH = 100_000, 20_000, 40, 1e-3, 64


@pytest.fixture(scope="module")
def tfidf():
    rng = np.random.default_rng(0)
    X = tfidf_rows(rng, N, D, TERMS)
    X.indices, X.indptr = X.indices.astype(np.int32), X.indptr.astype(np.int32)
    y = X @ (5 * rng.standard_normal(D) * (rng.random(D) < 0.1)) + 3 + 0.1 * rng.standard_normal(N)
    order = rng.permutation(N).astype(np.int64)
    best = _objective(X, y, LinearRegressor(solver="cg", alpha=ALPHA, tol=1e-12).fit(X, y))
    return X, y, order, best


@pytest.fixture(autouse=True)
def _group(benchmark):
    benchmark.group = "sparse ridge"


def _objective(X, y, est) -> float:
    r = X @ est.coef_ + est.intercept_ - y
    return 0.5 * float(np.mean(r * r)) + 0.5 * ALPHA * float(est.coef_ @ est.coef_)


def _epoch_runner(tfidf, spec, decay: str, threads: int):
    """The bare CSR epoch of ``spec`` on the rows over their order, under ``decay`` (``one``: the spec's own
    ``weight_decay``; ``own``: each column's ``alpha / (m_j + alpha)``), and a function making fresh parameters and
    state: ``benchmark.pedantic``'s ``run`` and ``setup``."""
    X, y, order, _ = tfidf
    own = None
    if decay == "own":
        m2 = np.asarray(X.multiply(X).mean(axis=0)).ravel()
        own = ALPHA / (m2 + ALPHA)
    train = EpochCtl(batch_size=BATCH, loss=optim.Loss.SQUARED_ERROR, epsilon=1.35, clip_norm=None,
                     loss_limit=np.inf)
    Y = y.reshape(-1, 1)

    def setup():
        return (np.zeros(D + 1), spec.init_state(D + 1, np.float64)), {}

    def run(params, state):
        status = _kernels.epoch_csr(int(spec.rule), spec.hyper, train, X, Y, None, order, params, state, 0, 0.05,
                                    False, n_threads=threads, decay=own)
        assert status[0] == 0

    return run, setup


@pytest.mark.parametrize("decay", ["one", "own"])
@pytest.mark.parametrize("rule", ["sgd", "momentum"])
def test_csr_epoch_with_decays(benchmark, tfidf, rule, decay):
    spec = optim.make(rule, weight_decay=ALPHA if decay == "one" else 0.0)
    run, setup = _epoch_runner(tfidf, spec, decay, threads=1)
    benchmark.pedantic(run, setup=setup, rounds=5, iterations=1)


@pytest.mark.parametrize("threads", [1, 2], ids=["1t", "2t"])
@pytest.mark.parametrize("way", ["every", "deferred"])
@pytest.mark.parametrize("rule", ["sgd", "momentum", "nesterov"])
def test_csr_epoch_own_decay_ways(benchmark, monkeypatch, tfidf, rule, way, threads):
    X = tfidf[0]
    spec = optim.make(rule)
    chosen = not _kernels._csr_defer_own_decay(D, BATCH, X.nnz, N)
    benchmark.extra_info["ratio"] = round(D / (BATCH * X.nnz / N), 2)
    benchmark.extra_info["chosen"] = "every" if chosen else "deferred"
    monkeypatch.setattr(_kernels, "CSR_EVERY_STEP_RATIO", np.inf if way == "every" else 0.0)
    run, setup = _epoch_runner(tfidf, spec, "own", threads)
    benchmark.pedantic(run, setup=setup, rounds=7, iterations=1, warmup_rounds=1)


def _fit_row(benchmark, X, y, best, make):
    fitted = []

    def run():
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            fitted.append((make().fit(X, y), caught))

    benchmark.pedantic(run, rounds=1, iterations=1)
    est, caught = fitted[-1]
    benchmark.extra_info["relative_excess"] = f"{(_objective(X, y, est) - best) / best:.2e}"
    benchmark.extra_info["epochs"] = int(np.max(est.n_iter_))
    benchmark.extra_info["warned"] = any(issubclass(w.category, (ConvergenceWarning, SklearnConvergenceWarning))
                                         for w in caught)


@pytest.mark.parametrize("rule", ["sgd", "momentum", "adam"])
def test_default_fit(benchmark, tfidf, rule):
    X, y, _, best = tfidf
    _fit_row(benchmark, X, y, best, lambda: LinearRegressor(solver=rule, alpha=ALPHA, random_state=0))


def test_sklearn_sgdregressor(benchmark, tfidf):
    X, y, _, best = tfidf
    _fit_row(benchmark, X, y, best, lambda: SGDRegressor(alpha=ALPHA, random_state=0))
