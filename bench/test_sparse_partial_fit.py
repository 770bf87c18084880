"""``partial_fit`` on a stream of sparse chunks: hashed-text-like rows (d = 2^18 features, 30 stored values a row,
float64, seeded), 100 or 1,000 rows a chunk, each call on a new chunk after a first call on another one.

Run on its own with ``cd bench && python -m pytest test_sparse_partial_fit.py -q -p no:randomly
--benchmark-json=OUT && python report.py OUT``. Group ``sparse partial_fit`` holds, per chunk size and ridge
(``alpha`` 0 or 1e-4):

* ``test_fastopt_partial_fit[<rows>-<alpha>-<rule>]``: ``LinearRegressor(solver=rule).partial_fit`` with its
  defaults (``learning_rate="auto"``: a ridge becomes each column's own decay under the per-column map, caught up
  in the kernel at the end of each call; the plateau rule's comparison across calls);
* ``test_sklearn_partial_fit[<rows>-<alpha>]``: ``SGDRegressor.partial_fit`` (``penalty=None`` without ridge);
* ``test_fastopt_text_partial_fit`` / ``test_sklearn_text_partial_fit``: the same calls (SGD, 1,000 rows, no ridge)
  on hashed Zipf-distributed text (``conftest.zipf_text_rows``), whose commonest words' columns store most rows:
  ``"auto"``'s map centres those columns, so each call maps its chunk (the path the uniform hashed rows above do
  not take).

Each round is one call; there is no limit row (a call's O(d) work, the catch-ups, the finiteness test and
``coef_``, is what these rows measure beside the chunk's own).
"""

import numpy as np
import pytest
from conftest import hashed_rows, zipf_text_rows
from sklearn.linear_model import SGDRegressor

from fastopt import LinearRegressor

D, NNZ, CHUNKS = 2**18, 30, 41
CASES = [(rows, alpha) for rows in (100, 1000) for alpha in (0.0, 1e-4)]


def _chunks(rows: int):
    rng = np.random.default_rng(rows)
    coef = np.where(rng.random(D) < 0.1, rng.standard_normal(D), 0.0)
    out = []
    for _ in range(CHUNKS):
        X = hashed_rows(rng, rows, D, NNZ)
        out.append((X, X @ coef + 0.1 * rng.standard_normal(rows)))
    return out


@pytest.fixture(scope="module")
def streams():
    return {rows: _chunks(rows) for rows in (100, 1000)}


@pytest.fixture(scope="module")
def text_stream():
    rng = np.random.default_rng(7)
    coef = rng.standard_normal(D)
    out = []
    for _ in range(CHUNKS):
        X = zipf_text_rows(rng, 1000, D)
        out.append((X, X @ coef + 0.1 * rng.standard_normal(1000)))
    return out


@pytest.fixture(autouse=True)
def _group(benchmark):
    benchmark.group = "sparse partial_fit"


def _calls(benchmark, est, chunks):
    est.partial_fit(*chunks[0])
    rest = iter(chunks[1:])
    benchmark.pedantic(est.partial_fit, setup=lambda: (next(rest), {}), rounds=CHUNKS - 1, iterations=1)


@pytest.mark.parametrize("rule", ["sgd", "momentum"])
@pytest.mark.parametrize("rows, alpha", CASES)
def test_fastopt_partial_fit(benchmark, streams, rule, rows, alpha):
    _calls(benchmark, LinearRegressor(solver=rule, alpha=alpha, random_state=0), streams[rows])


@pytest.mark.parametrize("rows, alpha", CASES)
def test_sklearn_partial_fit(benchmark, streams, rows, alpha):
    est = SGDRegressor(random_state=0, alpha=alpha or 1e-4, penalty="l2" if alpha else None)
    _calls(benchmark, est, streams[rows])


def test_fastopt_text_partial_fit(benchmark, text_stream):
    est = LinearRegressor(solver="sgd", random_state=0)
    _calls(benchmark, est, text_stream)
    assert est._solver_state.affine is not None and est._solver_state.affine.shifted.size  # the centring path


def test_sklearn_text_partial_fit(benchmark, text_stream):
    _calls(benchmark, SGDRegressor(random_state=0, penalty=None), text_stream)
