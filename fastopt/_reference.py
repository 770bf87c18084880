"""Pure-NumPy twins of every kernel in :mod:`fastopt._kernels`.

Same names, same arguments, same outputs (written into the same output arrays); each mirrors its compiled
twin step for step so tests/test_parity.py can compare them after identical inputs. Slow by design: clarity
over speed.
"""
from __future__ import annotations

import numpy as np
import scipy.sparse

# ---------------------------------------------------------------- closed form


def gram_stats(X, Y, sample_weight, mean, gram, block_rows):
    """Twin of :func:`fastopt._kernels.gram_stats` (csrc/gram.c): same blocks, same merges, in NumPy.

    Weighted, centred sufficient statistics of ``Z = [X, Y]``, accumulated in float64: ``mean`` receives the
    weighted column means, ``gram`` the centred weighted cross-products ``sum_i w_i (z_i - mean)(z_i - mean)^T``;
    returns ``sum_i w_i``.
    """
    weight = 0.0
    mean[:] = 0.0
    gram[:] = 0.0
    for i0 in range(0, X.shape[0], block_rows):
        Z = np.hstack([X[i0 : i0 + block_rows], Y[i0 : i0 + block_rows]]).astype(np.float64)
        w = np.ones(Z.shape[0]) if sample_weight is None else sample_weight[i0 : i0 + block_rows].astype(np.float64)
        wb = w.sum()
        if wb == 0.0:
            continue
        mb = (w @ Z) / wb
        Zc = np.sqrt(w)[:, None] * (Z - mb)
        # Chan, Golub & LeVeque: M_ab = M_a + M_b + (w_a w_b / w_ab) delta delta^T, delta = mean_b - mean_a.
        delta = mb - mean
        gram += Zc.T @ Zc + (weight * wb / (weight + wb)) * np.outer(delta, delta)
        mean += (wb / (weight + wb)) * delta
        weight += wb
    return weight


def csr_gram_stats(data, indices, indptr, n_features, Y, sample_weight, mean, gram):
    """Twin of :func:`fastopt._kernels.csr_gram_stats` (csrc/csr_gram.c): the same two passes, in NumPy/SciPy.

    Rows ``i = 0 .. len(indptr) - 2`` of a canonical CSR matrix whose row ``i`` is
    ``data[indptr[i]:indptr[i + 1]]`` at columns ``indices[...]`` (``indptr`` holds absolute offsets, so a slice
    of a larger matrix's ``indptr`` selects its rows); ``Y`` and ``sample_weight`` hold those rows only. Outputs as
    :func:`gram_stats`; returns ``sum_i w_i``.
    """
    n, d = Y.shape[0], n_features
    w = np.ones(n) if sample_weight is None else sample_weight.astype(np.float64)
    start, stop = int(indptr[0]), int(indptr[-1])
    X = scipy.sparse.csr_array(
        (data[start:stop].astype(np.float64), indices[start:stop], np.asarray(indptr, dtype=np.int64) - start),
        shape=(n, d),
    )
    Y = Y.astype(np.float64)
    mean[:] = 0.0
    gram[:] = 0.0
    # Pass 1: weight and weighted means.
    weight = w.sum()
    if weight == 0.0:
        return 0.0
    mx = (X.T @ w) / weight
    my = (w @ Y) / weight
    # Pass 2: uncentred cross-products of X from its nonzeros; Y centred on its mean (so the X-Y and Y-Y blocks
    # need no correction beyond the residual sum r of the centred Y, zero up to round-off).
    Yc = Y - my
    r = w @ Yc
    Sxx = (X.T @ (X.multiply(w[:, None]))).toarray()
    Sxy = X.T @ (w[:, None] * Yc)
    gram[:d, :d] = Sxx - weight * np.outer(mx, mx)
    gram[:d, d:] = Sxy - np.outer(mx, r)
    gram[d:, :d] = gram[:d, d:].T
    gram[d:, d:] = Yc.T @ (w[:, None] * Yc) - np.outer(r, r) / weight
    mean[:d], mean[d:] = mx, my
    return weight

# ---------------------------------------------------------------- optimizers
# Mirrors csrc/rules.h and csrc/epoch.c. Element-wise arithmetic is in the array's dtype; the scalars PyTorch
# computes as Python floats (bias corrections, decayed learning rates) are computed in float64 and rounded once.
from fastopt._kernels import Loss, Rule, Status  # noqa: E402  (the C enums; constants, not kernels)

_CLIP_EPS = 1e-6  # torch.nn.utils.clip_grad_norm_ adds this to the norm before dividing


def _with_decay(hyper, w, g, n_decay, coupled=True):
    """The gradient a rule sees: g plus weight_decay * w on the first n_decay entries (coupled L2)."""
    if not coupled or hyper.weight_decay == 0:
        return g.copy()
    real = w.dtype.type
    g = g.copy()
    g[:n_decay] += real(hyper.weight_decay) * w[:n_decay]
    return g


def _sgd(hyper, w, g, state, n_decay, t, lr):
    w -= w.dtype.type(lr) * _with_decay(hyper, w, g, n_decay)


def _momentum(hyper, w, g, state, n_decay, t, lr):
    real = w.dtype.type
    g = _with_decay(hyper, w, g, n_decay)
    v = state[0]
    v[:] = g if t == 1 else real(hyper.momentum) * v + real(1.0 - hyper.dampening) * g
    w -= real(lr) * v


def _nesterov(hyper, w, g, state, n_decay, t, lr):
    real = w.dtype.type
    g = _with_decay(hyper, w, g, n_decay)
    mu = real(hyper.momentum)
    v = state[0]
    v[:] = g if t == 1 else mu * v + g
    w -= real(lr) * (g + mu * v)


def _adagrad(hyper, w, g, state, n_decay, t, lr):
    real = w.dtype.type
    g = _with_decay(hyper, w, g, n_decay)
    clr = real(lr / (1.0 + (t - 1) * hyper.lr_decay))
    r = state[0]
    r += g * g
    w -= clr * (g / (np.sqrt(r) + real(hyper.eps)))


def _rmsprop(hyper, w, g, state, n_decay, t, lr):
    real = w.dtype.type
    g = _with_decay(hyper, w, g, n_decay)
    one_rho = real(1.0 - hyper.rho)
    r, avg, buf = state[0], state[1], state[2]
    r[:] = real(hyper.rho) * r + one_rho * (g * g)
    if hyper.centered:
        avg += one_rho * (g - avg)
        den = np.sqrt(r - avg * avg) + real(hyper.eps)
    else:
        den = np.sqrt(r) + real(hyper.eps)
    if hyper.momentum > 0:
        buf[:] = real(hyper.momentum) * buf + g / den
        w -= real(lr) * buf
    else:
        w -= real(lr) * (g / den)


def _adam(hyper, w, g, state, n_decay, t, lr, decoupled=False):
    real = w.dtype.type
    if decoupled and hyper.weight_decay != 0:
        w[:n_decay] *= real(1.0 - lr * hyper.weight_decay)
    g = _with_decay(hyper, w, g, n_decay, coupled=not decoupled)
    step_size = real(lr / (1.0 - hyper.beta1**t))
    bc2_sqrt = real(np.sqrt(1.0 - hyper.beta2**t))
    m, v, vmax = state[0], state[1], state[2]
    m += real(1.0 - hyper.beta1) * (g - m)
    v[:] = real(hyper.beta2) * v + real(1.0 - hyper.beta2) * (g * g)
    if hyper.amsgrad:
        np.maximum(vmax, v, out=vmax)
        v = vmax
    w -= step_size * (m / (np.sqrt(v) / bc2_sqrt + real(hyper.eps)))


def _adamw(hyper, w, g, state, n_decay, t, lr):
    _adam(hyper, w, g, state, n_decay, t, lr, decoupled=True)


_RULES = {
    Rule.SGD: _sgd,
    Rule.MOMENTUM: _momentum,
    Rule.NESTEROV: _nesterov,
    Rule.ADAGRAD: _adagrad,
    Rule.RMSPROP: _rmsprop,
    Rule.ADAM: _adam,
    Rule.ADAMW: _adamw,
}


def step(rule, hyper, params, grad, state, t, lr, n_decay=None):
    """Twin of ``fastopt._kernels.step``: one optimizer step in place on ``params`` and ``state``."""
    if rule not in _RULES:
        return int(Status.BAD_ARGUMENT)
    _RULES[rule](hyper, params, grad, state, params.shape[0] if n_decay is None else n_decay, t, lr)
    return int(Status.OK)


def clip_grad_norm(grad, max_norm):
    """Twin of ``fastopt._kernels.clip_grad_norm``: clip ``grad`` in place; return the norm before."""
    norm = float(np.sqrt(np.sum(grad.astype(np.float64) ** 2)))
    coef = max_norm / (norm + _CLIP_EPS)
    if coef < 1:
        grad *= grad.dtype.type(coef)
    return norm


def _loss_and_derivative(loss, R, epsilon):
    """Per-sample loss values (float64) and derivatives (R's dtype) of residuals R."""
    R64 = R.astype(np.float64)
    if loss == Loss.ABSOLUTE_ERROR:
        return np.abs(R64), np.sign(R)
    if loss == Loss.HUBER:
        inside = np.abs(R) <= epsilon
        value = np.where(inside, 0.5 * R64 * R64, float(epsilon) * (np.abs(R64) - 0.5 * float(epsilon)))
        return value, np.where(inside, R, epsilon * np.sign(R))
    return 0.5 * R64 * R64, R


def _half_gradient(train, X, Y, sample_weight, rows, W, b, grad):
    """The summed gradient (into grad) and summed weighted loss of the rows ``rows``."""
    R = X[rows] @ W.T - Y[rows]
    if b is not None:
        R += b
    value, dl = _loss_and_derivative(train.loss, R, X.dtype.type(train.epsilon))
    wts = np.ones(rows.shape[0], X.dtype) if sample_weight is None else sample_weight[rows]
    C = wts[:, None] * dl
    kd = W.size
    grad[:kd] = (C.T @ X[rows]).ravel()
    if b is not None:
        grad[kd:] = C.sum(axis=0)
    return float(np.sum(wts.astype(np.float64)[:, None] * value))


def epoch(rule, hyper, train, X, Y, sample_weight, order, params, state, work, t, lr, n_threads=1):
    """Twin of ``fastopt._kernels.epoch``: one epoch of minibatch steps; returns (status, t, loss, bad_step).

    Every minibatch gradient is the sum of its two halves' (rows ``[0, ceil(n/2))`` and the rest), as in the
    kernel, whatever ``n_threads`` (accepted for the same signature; the twin runs in one thread).
    """
    real = X.dtype.type
    d, k, m = X.shape[1], Y.shape[1], order.shape[0]
    n_params = params.shape[0]
    has_b = n_params > k * d
    grad, half = work[:n_params], work[n_params : 2 * n_params]
    clip = 0.0 if train.clip_norm is None else train.clip_norm
    total = 0.0
    for start in range(0, m, train.batch_size):
        rows = order[start : start + train.batch_size]
        nb = rows.shape[0]
        W = params[: k * d].reshape(k, d)
        b = params[k * d :] if has_b else None
        mid = (nb + 1) // 2
        loss = _half_gradient(train, X, Y, sample_weight, rows[:mid], W, b, grad)
        loss += _half_gradient(train, X, Y, sample_weight, rows[mid:], W, b, half)
        grad += half
        grad *= real(1.0 / nb)
        ss = float(np.sum(grad.astype(np.float64) ** 2))
        total += loss
        if not (np.isfinite(loss) and np.isfinite(ss)):
            return int(Status.NONFINITE_LOSS), t, 0.0, t + 1
        if loss / nb > train.loss_limit:
            return int(Status.DIVERGED), t, 0.0, t + 1
        if clip > 0:
            clip_grad_norm(grad, clip)
        t += 1
        step(rule, hyper, params, grad, state, t, lr, k * d)
    if not np.all(np.isfinite(params)):
        return int(Status.NONFINITE_LOSS), t, 0.0, t
    return int(Status.OK), t, (total / m if m > 0 else 0.0), 0


def simd(name=None):
    """Twin of ``fastopt._kernels.simd``: NumPy has no instruction-set copies to choose, so this validates
    ``name`` as the kernel does and reports ``"numpy"``."""
    choices = ["avx2", "baseline", "best"]
    if name is not None and name not in choices:
        raise ValueError(f"simd must be one of {choices}, got {name!r}")
    return "numpy"
