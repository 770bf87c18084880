"""Group "designs <name>": one least-squares fit of the designs real pipelines produce, against the limit of one
BLAS pass computing X^T X of the same matrix. Each design is generated from a fixed seed:

* ``poly``: ``PolynomialFeatures(3, include_bias=False)`` of 8 uniform features, n = 200,000 (d = 164);
* ``poly_bias``: ``PolynomialFeatures(3)`` (its default, with the bias column) of 10 Gaussian features,
  n = 200,000 (d = 286, rank 285 with the intercept: the constant column);
* ``onehot``: one-hot columns of 4 categorical features with 50 levels each plus 20 Gaussian columns, n = 200,000,
  fitted with an intercept (d = 220, rank 216: the dummy-variable trap);
* ``onehot_ridge``: the ``onehot`` design under ``alpha=1e-6`` (``Ridge``'s ``alpha=0.2`` at this n; the ``Ridge``
  row takes that alpha): the ridge's normal equations are too ill-conditioned for Cholesky along the dummies' null
  space, which the pivoted path lifts (before it, QR);
* ``gauss_qr``: Gaussian, n = 1,000,000, d = 100, ``solver="qr"``;
* ``wide``: Gaussian, n = 50,000, d = 2,000;
* ``onehot_sparse``: ``OneHotEncoder()``'s CSR output (its default) of 3 Zipf-distributed categorical features of
  5,000, 300 and 50 levels, n = 20,000, with an intercept (d = 5,350, rank-deficient: the dummy-variable trap and
  levels that never occur). ``"auto"`` runs LSQR here; the ``closed_form`` row (one round) is the closed form,
  ``solver="normal"``, which "auto" ran before: its rank-deficient fallback was an SVD that densified ``X`` and
  took minutes, now its pivoted path reads ``X`` sparse. The limit row is SciPy's sparse ``X.T @ X``;
* ``onehot_sparse_narrow``: a ``ColumnTransformer``'s CSR output, one-hot columns of 3 uniform categorical
  features of 300, 150 and 40 levels beside 3 Gaussian columns, n = 200,000, with an intercept (d = 493,
  rank-deficient). The closed form's Gram is cheap here, so ``"auto"`` computes it; its Cholesky is rejected, and
  the pivoted path solves it, as ``solver="normal"`` does (the ``closed_form`` row, one round). ``"auto"`` ran LSQR
  there before the pivoted path existed, to avoid the SVD fallback that densified ``X``;
* ``onehot_uniform`` (dense) and ``onehot_sparse_uniform`` (CSR): ``OneHotEncoder``'s columns of 3 uniform
  categorical features of 1,000, 100 and 10 levels, n = 20,000, with an intercept (d = 1,110, rank 1,107). The
  kept columns ``pstrf`` chooses are nearly dependent once centred (no level is frequent), and their normal
  equations failed the Cholesky test: the fit went to QR and the SVD (the CSR's QR densifying row blocks) until the
  lifted equations took their place. ``"auto"`` runs the closed form on the dense design and LSQR on the CSR,
  whose ``closed_form`` row is ``solver="normal"``.

Run on its own: ``cd bench && python -m pytest test_designs.py -q -p no:randomly --benchmark-json=OUT &&
python report.py OUT``. Each design is made once (a module-scoped fixture, so pytest runs a design's rows
together and frees it before the next).
"""
import warnings

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.linear_model import LinearRegression, Ridge
from sklearn.preprocessing import OneHotEncoder, PolynomialFeatures

from fastopt import LinearRegressor
from fastopt.exceptions import RankDeficientWarning

DESIGNS = ["poly", "poly_bias", "onehot", "onehot_ridge", "gauss_qr", "wide", "onehot_sparse", "onehot_sparse_narrow",
           "onehot_uniform", "onehot_sparse_uniform"]


def make_design(name: str, seed: int = 0):
    """``(X, y, fastopt_params)`` of one design, C-contiguous float64."""
    rng = np.random.default_rng(seed)
    if name == "poly":
        X = PolynomialFeatures(3, include_bias=False).fit_transform(rng.uniform(size=(200_000, 8)))
        params = {}
    elif name == "poly_bias":
        X = PolynomialFeatures(3).fit_transform(rng.standard_normal((200_000, 10)))  # the default keeps the bias
        params = {}
    elif name in ("onehot", "onehot_ridge"):
        levels = rng.integers(0, 50, size=(200_000, 4))
        dummies = OneHotEncoder(sparse_output=False).fit_transform(levels)
        X = np.hstack([dummies, rng.standard_normal((200_000, 20))])
        params = {"alpha": 1e-6} if name == "onehot_ridge" else {}
    elif name == "gauss_qr":
        X = rng.standard_normal((1_000_000, 100))
        params = {"solver": "qr"}
    elif name == "wide":
        X = rng.standard_normal((50_000, 2_000))
        params = {}
    elif name == "onehot_sparse":
        levels = np.column_stack([rng.choice(c, size=20_000, p=_zipf(c)) for c in (5_000, 300, 50)])
        X = OneHotEncoder(categories=[np.arange(c) for c in (5_000, 300, 50)]).fit_transform(levels).tocsr()
        params = {}
    elif name in ("onehot_uniform", "onehot_sparse_uniform"):
        levels = np.column_stack([rng.integers(0, c, size=20_000) for c in (1_000, 100, 10)])
        X = OneHotEncoder(categories=[np.arange(c) for c in (1_000, 100, 10)]).fit_transform(levels).tocsr()
        X = X.toarray() if name == "onehot_uniform" else X
        params = {}
    elif name == "onehot_sparse_narrow":
        levels = np.column_stack([rng.integers(0, c, size=200_000) for c in (300, 150, 40)])
        dummies = OneHotEncoder(categories=[np.arange(c) for c in (300, 150, 40)]).fit_transform(levels)
        X = sp.hstack([dummies, sp.csr_array(rng.standard_normal((200_000, 3)))], format="csr")
        params = {}
    else:
        raise ValueError(name)
    X = X if sp.issparse(X) else np.ascontiguousarray(X)
    y = X @ rng.standard_normal(X.shape[1]) + rng.standard_normal(X.shape[0])
    return X, y, params


def _zipf(levels: int) -> np.ndarray:
    p = 1.0 / np.arange(1, levels + 1) ** 1.1
    return p / p.sum()


@pytest.fixture(scope="module", params=DESIGNS)
def design(request):
    return request.param, *make_design(request.param)


@pytest.fixture
def grouped(benchmark, design):
    benchmark.group = f"designs {design[0]}"
    return design[1:]


def test_limit_xtx(record, grouped):
    X, y, _ = grouped
    record(lambda X, y: X.T @ X, X, y)


def test_fastopt(record, grouped, benchmark):
    X, y, params = grouped

    def fit(X, y):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RankDeficientWarning)  # the one-hot and bias designs are rank-deficient
            est = LinearRegressor(**params).fit(X, y)
        benchmark.extra_info["solver_"] = est.solver_
        return est

    record(fit, X, y)


def test_sklearn_linear_regression(record, grouped):
    X, y, params = grouped
    if "alpha" in params:
        pytest.skip("a ridge: the Ridge row is the reference")
    record(lambda X, y: LinearRegression().fit(X, y), X, y, rounds=2)


def test_sklearn_ridge_cholesky(record, grouped):
    X, y, params = grouped
    if sp.issparse(X):
        pytest.skip("Ridge(solver='cholesky') fits no intercept on sparse X")
    alpha = params.get("alpha", 0.0) * X.shape[0] or 1e-8  # fastopt's ridge is per sample
    record(lambda X, y: Ridge(alpha=alpha, solver="cholesky").fit(X, y), X, y)


def test_fastopt_closed_form(grouped, benchmark, design):
    """The closed form ``"auto"`` picked on the sparse designs before it ran LSQR there (one round)."""
    if not design[0].startswith("onehot_sparse"):
        pytest.skip("the closed form is the fastopt row of the dense designs")
    X, y, _ = grouped

    def fit():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RankDeficientWarning)
            benchmark.extra_info["solver_"] = LinearRegressor(solver="normal").fit(X, y).solver_

    benchmark.pedantic(fit, rounds=1, iterations=1)
