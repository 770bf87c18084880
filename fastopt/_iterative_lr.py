"""Data-derived quantities for the iterative solvers: the loss of a model, and ``learning_rate="auto"``.

``learning_rate="auto"`` follows the seed's ill-conditioning argument: a gradient step ``-lr g`` lowers a
quadratic loss only if ``lr < 2 / L`` along the Hessian's top eigenvector, ``L`` its largest eigenvalue. ``L``
is found by power iteration with Hessian-vector products ``Xa^T diag(sw) Xa v / n`` (``Xa = [X, 1]`` with an
intercept), on at most ``AUTO_ROWS`` training rows drawn from ``random_state`` (for a streamed or Dask fit,
a seeded uniform sample of that size across all chunks, see :mod:`fastopt._streaming`). The squared-error
Hessian is used for every loss: it bounds Huber's and sets the curvature scale for absolute error.

Minibatches are noisier than the full gradient, so the plain and momentum rules take the critical step size of
minibatch SGD on least squares (Jain, Kakade, Kidambi, Netrapalli & Sidford, JMLR 2018),
``lr = b / (R^2 + (b - 1) L)`` with ``R^2 = tr(H)`` the mean squared row norm and ``b`` the batch size: ``1 / L``
for full batches, ``1 / R^2`` for single rows. Heavy-ball and Nesterov momentum multiply the effective step by
``1 / (1 - momentum)``, so their rate is scaled by ``1 - momentum``.

The adaptive rules (AdaGrad, RMSProp, Adam, AdamW) move each coordinate by about ``lr`` per step whatever the
gradient's scale, so ``lr`` must be a distance: ``ADAPTIVE_FRACTION * ||g0||_inf / L``, a fraction of the
largest coordinate of the first gradient-descent step ``g0 / L`` from the initial parameters (``g0`` the
squared-error gradient there, which measures the scale of the targets).
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from fastopt.optim import Loss, Rule

AUTO_ROWS = 20_000  # rows used to estimate the Hessian: enough for a few-percent estimate of L
POWER_ITERATIONS = 100
POWER_RTOL = 1e-3  # a step size needs L to three digits, not more
ADAPTIVE_FRACTION = 0.1
CHUNK_ROWS = 65_536  # bounds the temporaries of mean_loss


def _per_sample_loss(R, loss, epsilon):
    if loss == Loss.ABSOLUTE_ERROR:
        return np.abs(R)
    if loss == Loss.HUBER:
        A = np.abs(R)
        return np.where(A <= epsilon, 0.5 * R * R, epsilon * (A - 0.5 * epsilon))
    return 0.5 * R * R


def mean_loss(data, rows, sw, p, loss, epsilon) -> float:
    """Weighted mean over ``rows`` of the per-sample loss (summed over targets) at parameters ``p``.

    ``p`` is the parameter vector (weights, then intercepts), or None for the all-zero model, which needs no
    pass over ``X``. ``sw`` are the normalised weights or None.
    """
    d, k = data.X.shape[1], data.Y.shape[1]
    total = 0.0
    # rows is sorted and unique; all of them (no validation split) are read by slices, not gathered.
    every = rows.shape[0] == data.Y.shape[0]
    for start in range(0, rows.shape[0], CHUNK_ROWS):
        r = slice(start, start + CHUNK_ROWS) if every else rows[start : start + CHUNK_ROWS]
        if p is None:  # every loss is even, so the residuals -y may be taken as y
            R = data.Y[r].astype(np.float64, copy=False)
        else:
            R = -data.Y[r].astype(np.float64)
            R += data.X[r] @ p[: k * d].reshape(k, d).T.astype(np.float64)
            if p.shape[0] > k * d:
                R += p[k * d :]
        # NumPy's sums, not a BLAS dot: a threaded BLAS call costs milliseconds here when the cores are busy.
        if loss == Loss.SQUARED_ERROR:  # one pass, no temporaries
            total += 0.5 * float(np.einsum("ij,ij->", R, R) if sw is None else np.einsum("ij,ij,i->", R, R, sw[r]))
        else:
            per_sample = _per_sample_loss(R, loss, epsilon)
            total += float(np.sum(per_sample) if sw is None else np.sum(per_sample.sum(axis=1) * sw[r]))
    return total / rows.shape[0]


def _top_eigenvalue(Xa, w, ridge, rng) -> float:
    """Largest eigenvalue of ``Xa^T diag(w) Xa / m + diag(ridge)`` by power iteration (Rayleigh quotient)."""
    m = Xa.shape[0]
    v = rng.standard_normal(Xa.shape[1])
    v /= np.linalg.norm(v)
    lam = 0.0
    for _ in range(POWER_ITERATIONS):
        Hv = Xa.T @ (w * (Xa @ v)) / m + ridge * v
        lam_new = float(v @ Hv)
        norm = float(np.linalg.norm(Hv))
        if norm == 0.0:
            return 0.0
        v = Hv / norm
        if abs(lam_new - lam) <= POWER_RTOL * lam_new:
            return lam_new
        lam = lam_new
    return lam


def auto_learning_rate(spec, data, train_idx, sw, params, p0, rng) -> float:
    """The base learning rate for ``learning_rate="auto"`` (see the module docstring)."""
    rows = train_idx
    if rows.shape[0] > AUTO_ROWS:
        rows = np.sort(rng.choice(train_idx, AUTO_ROWS, replace=False))
    w = sw[rows] if sw is not None else None
    return sample_learning_rate(spec, data.X[rows], data.Y[rows], w, params, p0, train_idx.shape[0], rng)


def sample_learning_rate(spec, X, Y, w, params, p0, n_train, rng) -> float:
    """``learning_rate="auto"`` from a sample of the training rows.

    Parameters
    ----------
    spec : fastopt.optim.Optimizer
    X, Y : ndarray of shape (m, d) and (m, k)
        The sampled rows (at most ``AUTO_ROWS``).
    w : ndarray of shape (m,) or None
        Their sample weights (any scale: they are normalised to mean 1 over the sample).
    params : dict
        The estimator's hyperparameters (``fit_intercept``, ``batch_size``).
    p0 : ndarray
        The initial parameters (weights, then intercepts), where the adaptive rules take the first gradient.
    n_train : int
        Training rows the sample was drawn from (bounds the batch size).
    rng : numpy.random.Generator
        Starts the power iteration.
    """
    fit_intercept = params["fit_intercept"]
    if sp.issparse(X):  # the same products from the nonzeros: X is never densified
        Xa = sp.csr_array(X, dtype=np.float64)
        if fit_intercept:
            Xa = sp.hstack([Xa, sp.csr_array(np.ones((Xa.shape[0], 1)))], format="csr")
    else:
        Xa = X.astype(np.float64)
        if fit_intercept:
            Xa = np.hstack([Xa, np.ones((Xa.shape[0], 1))])
    w = w.astype(np.float64) if w is not None else np.ones(Xa.shape[0])
    w = w / w.mean()
    d = X.shape[1]
    coupled = spec.rule != Rule.ADAMW
    ridge = np.r_[np.full(d, spec.weight_decay if coupled else 0.0), np.zeros(Xa.shape[1] - d)]
    L = _top_eigenvalue(Xa, w, ridge, rng)
    if L <= 0.0:  # X is zero and there is no intercept: nothing moves, any rate will do
        return 1.0
    if spec.rule in (Rule.SGD, Rule.MOMENTUM, Rule.NESTEROV):
        b = min(int(params["batch_size"]), n_train)
        row_sq = (np.asarray(Xa.multiply(Xa).sum(axis=1)).ravel() if sp.issparse(Xa)
                  else np.einsum("ij,ij->i", Xa, Xa))
        trace = float(w @ row_sq) / Xa.shape[0] + float(ridge.sum())
        lr = b / (trace + (b - 1) * L)
        return lr * (1.0 - spec.momentum) if spec.rule != Rule.SGD else lr
    k = Y.shape[1]
    P0 = np.vstack([p0[: k * d].reshape(k, d).T.astype(np.float64),
                    p0[k * d :][None, :] if fit_intercept else np.zeros((0, k))])
    G0 = np.asarray(Xa.T @ (w[:, None] * (Xa @ P0 - Y))) / Xa.shape[0]
    scale = float(np.max(np.abs(G0))) / L
    return ADAPTIVE_FRACTION * scale if scale > 0 else 1e-3
