"""Newton (``solver="newton"``, Huber and squared error) on Dask arrays: one distributed pass per evaluation.

Each row block is validated once, on the worker that holds it, and kept there (``dask.persist``). The fit is the
semismooth Newton method of :mod:`fastopt._newton`, with the statistics of every point computed where the rows
live and reduced in a balanced binary tree on the cluster (:func:`fastopt._dask.tree_merge`): the compiled fused
pass (:func:`fastopt._kernels.huber_pass`) gives each block's objective and gradient sums and the Hessian of its
inlier rows, so only ``d``-vectors and ``(d + 1) x (d + 1)`` matrices travel, never a row. Rows stay on their
workers between passes, but their inlier masks do not: every evaluation rebuilds the inlier Hessian (a weighted
Gram pass) instead of updating it, and a step that fails the Armijo test is cut to the minimiser along it from
two passes of the blocks' slopes at a grid of step lengths (:meth:`_Blocks.line_search`).
The start is the (ridge) least-squares fit from the blocks' merged Gram statistics (where Cholesky rejects them,
the pivoted path with its confirming pass over the blocks, or the blocks' ``R`` factors merged as a tall-skinny
QR), followed, when gross outliers leave it no curvature, by the same threshold continuation as in memory (the
stage thresholds read from the blocks' histograms of residual exponents); the iteration stops on the same
Newton-decrement test, relative to the capped objective or within the round-off floor at the point, so both end
at the same minimiser. Where the Cholesky direction cannot be trusted (:func:`fastopt._newton._newton`), the
steps come from the ``R`` factor of the inliers, the blocks' tall-skinny QR merged on the cluster (one more pass
whenever the inliers change). A step is taken when it passes Armijo's test or the objective's slope at its end is
not positive (convexity: it decreased all the way), which far outliers cannot round away.

Not supported: ``loss="absolute_error"`` (its exact limit solves a system over the rows inside the threshold,
gathered from ``X``) and ``partial_fit``. A ``warm_start`` fit starts from least squares too (Newton ends at the
same minimiser from any start).
"""
from __future__ import annotations

import hashlib
import operator
from dataclasses import dataclass, replace

import dask
import numpy as np
from dask.delayed import delayed

from fastopt import _chunks, _closed_form, _dask, _newton
from fastopt._iterative import max_epochs, weight_mean
from fastopt._validation import Data, aligned

# The weighted histogram of the residuals' binary exponents (bin 0: exact zeros), from which a stage threshold is
# read to within a factor of two, without gathering residuals: an upper bound of the weighted median absolute
# residual, where fastopt._newton._median_abs_residual takes the median over the rows with weight. (Placing that
# median to 1/1024 by one more pass over its octave made a 2 x 10^5-row one-hot Huber fit 2.6 times slower, 9
# iterations for 5: the threshold is a heuristic, and the stage at 8 = 2^3 took 2 iterations where the one at the
# median 5.07 took 6.)
_EXP_LO, _EXP_HI = -1080, 1030
# Points of the line search's second pass inside its bracket (_Blocks.line_search): the step found is within
# 7 / LINE_GRID of the minimiser's (5%); each costs a clip and a dot over the block's rows.
LINE_GRID = 128


@dataclass
class _Stats:
    """Sums over rows at one point: ``sum s huber(r)``, ``X^T (s psi)``, ``sum s psi``, and for a point a step may
    land on (``hessian``) the inlier Hessian, the capped objective ``sum s min(|r|, eps)^2 / 2``
    (:func:`fastopt._newton._huber_reference`), the weighted histogram of the residuals' exponents and the
    round-off floor of the objective at the point (:func:`fastopt._newton.round_off_floor` with ``(w, b)``: the
    inlier Hessian's rebuild already costs ``d`` times its read of ``X``; evaluations without the Hessian, at the
    end of a step that is then cut, only compare objectives and slopes)."""

    loss: float
    g: np.ndarray
    gb: float
    H: np.ndarray | None
    capped: float | None
    hist: np.ndarray | None
    floor: float | None = None
    # With the Hessian, a digest of the inlier set: the sum over blocks of a 128-bit hash of (block, mask), so
    # that the R factor's steps (_BlockHessian) refactor only when the inliers changed, and _iterate sees a step
    # on which no row crossed the threshold.
    digest: int | None = None


def _add(a: _Stats, b: _Stats) -> _Stats:
    if a.H is None:
        return _Stats(a.loss + b.loss, a.g + b.g, a.gb + b.gb, None, None, None)
    return _Stats(a.loss + b.loss, a.g + b.g, a.gb + b.gb, a.H + b.H, a.capped + b.capped, a.hist + b.hist,
                  a.floor + b.floor, a.digest + b.digest)


def _mask_digest(index: int, mask: np.ndarray) -> int:
    h = hashlib.blake2b(np.asarray(mask, np.uint8).tobytes(), digest_size=16, key=index.to_bytes(8, "little"))
    return int.from_bytes(h.digest(), "little")


def _exponent_histogram(r: np.ndarray, s: np.ndarray) -> np.ndarray:
    a = np.abs(r)
    idx = np.where(a > 0, np.frexp(a)[1] - _EXP_LO, 0)
    return np.bincount(np.clip(idx, 0, _EXP_HI - _EXP_LO), weights=s, minlength=_EXP_HI - _EXP_LO + 1)


def _median_from_histogram(hist: np.ndarray) -> float:
    """An upper bound, within a factor of two, of the weighted median absolute residual."""
    total = float(hist.sum())
    if not total > 0:
        return 0.0
    k = int(np.searchsorted(np.cumsum(hist), 0.5 * total))
    return 0.0 if k == 0 else float(np.ldexp(1.0, k + _EXP_LO))


def _validated(template, X, y, sample_weight, where: str):
    return _chunks.check_chunk(template, X, y, sample_weight, where)


def _row_weights(data) -> np.ndarray:
    """A block's row weights as given (ones without), for the tests of which rows count (``> 0``, ``== 0``)."""
    sw = data.sample_weight
    return np.ones(data.Y.shape[0]) if sw is None else sw


def _block_facts(data) -> tuple[int, float, np.ndarray, np.dtype]:
    """A block's rows, mean weight, largest ``|y|`` per target over its rows of positive weight, and dtype."""
    sw = data.sample_weight
    top = _newton.target_top(data.Y, _row_weights(data))
    return data.X.shape[0], 1.0 if sw is None else weight_mean(sw), top, data.X.dtype


def _scaled_block(data, exps: np.ndarray):
    """A block with its targets divided by ``2^exps`` (:func:`fastopt._newton.scaled_targets`)."""
    X, Y = _newton.scaled_targets(data.X, data.Y, _row_weights(data), exps)
    return replace(data, X=X, Y=Y)


def _weights(data, mean: float, n: int) -> np.ndarray:
    """The normalised row weights ``s`` of :meth:`fastopt._newton.NewtonSolver.fit`, for one block."""
    sw = data.sample_weight
    rows = data.X.shape[0]
    return np.full(rows, 1.0 / n) if sw is None else (sw.astype(np.float64) / mean) / n


def _gram(data, mean: float, n: int) -> _closed_form.ClosedFormState:
    data = aligned(data)  # (a persisted block that moved between workers may have been unpickled unaligned)
    return _newton._full_state(data.X, data.Y, _weights(data, mean, n))


def _problem(data, mean: float, n: int, target: int, fit_intercept: bool, centre) -> _newton._Problem:
    """One block's rows as :mod:`fastopt._newton`'s problem (no ridge: the driver adds it)."""
    y = np.ascontiguousarray(data.Y[:, target], dtype=np.float64)
    return _newton._Problem(data.X, y, _weights(data, mean, n), 0.0, fit_intercept, centre)


def _evaluate(data, index: int, mean: float, n: int, target: int, fit_intercept: bool, centre, w, b: float,
              eps: float, hessian: bool) -> _Stats:
    data = aligned(data)  # (as _gram)
    prob = _problem(data, mean, n, target, fit_intercept, centre)
    if prob.n == 0:
        if not hessian:
            return _Stats(0.0, np.zeros(prob.d), 0.0, None, None, None)
        return _Stats(0.0, np.zeros(prob.d), 0.0, np.zeros((prob.p, prob.p)), 0.0, np.zeros(_EXP_HI - _EXP_LO + 1),
                      0.0, 0)
    res = prob.run(w, b, eps, None, hessian=hessian)
    if not hessian:
        return _Stats(res.loss, res.g, res.gb, None, None, None)
    capped = _newton._huber_reference(prob, eps)(res.r, w, res.loss)  # (prob has no ridge: the sum alone)
    return _Stats(res.loss, res.g, res.gb, res.dH, capped, _exponent_histogram(res.r, prob.s),
                  _newton.round_off_floor(prob, res.mask, w, b), _mask_digest(index, res.mask))


def _slopes(data, mean: float, n: int, target: int, fit_intercept: bool, w, b: float, dw, db: float, eps: float,
            ts) -> np.ndarray:
    """The block's ``sum s psi(r + t q) q`` for each ``t`` in ``ts``: the loss's slopes along the step ``(dw, db)``
    from ``(w, b)``, residuals ``r`` there and ``q`` their change over the step (as in memory, the difference of
    the two passes' residuals)."""
    data = aligned(data)
    prob = _problem(data, mean, n, target, fit_intercept, None)
    if prob.n == 0:
        return np.zeros(len(ts))
    r = prob.run(w, b, eps, None, hessian=False).r
    q = prob.run(w + dw, b + db, eps, None, hessian=False).r - r
    sq = prob.s * q
    return np.array([_newton._dot(sq, np.clip(r + t * q, -eps, eps)) for t in ts])


def _inlier_qr(data, mean: float, n: int, target: int, fit_intercept: bool, centre, w, b: float, eps: float):
    """The ``R`` statistics of the block's inliers at ``(w, b)`` (:func:`fastopt._newton._inlier_qr_state`)."""
    data = aligned(data)
    prob = _problem(data, mean, n, target, fit_intercept, centre)
    if prob.n == 0:
        return None
    return _newton._inlier_qr_state(prob, prob.run(w, b, eps, None, hessian=False).mask.view(bool))


def _secant_qr(data, mean: float, n: int, target: int, fit_intercept: bool, centre, w, b: float, eps: float):
    """The ``R`` statistics of the block's rows at ``(w, b)`` with the outliers' secant share
    (:func:`fastopt._newton._secant_qr_state`)."""
    data = aligned(data)
    prob = _problem(data, mean, n, target, fit_intercept, centre)
    if prob.n == 0:
        return None
    return _newton._secant_qr_state(prob, prob.run(w, b, eps, None, hessian=False).r, eps)


def _null_moved(data, mean: float, n: int, target: int, fit_intercept: bool, centre, v) -> float:
    """:func:`fastopt._newton._null_moved` of the block's rows."""
    data = aligned(data)
    return _newton._null_moved(_problem(data, mean, n, target, fit_intercept, centre), v)


def _merge_optional(a, b):
    """:func:`fastopt._closed_form.merge_states`, None for a block without inliers."""
    return b if a is None else a if b is None else _closed_form.merge_states(a, b)


def _null_squares(data, mean: float, n: int, fit_intercept: bool, mean_x, weight_exp: int, Q) -> float:
    """The block's :func:`fastopt._closed_form.null_squares` with the fit's weights."""
    data = aligned(data)
    rows = Data(X=data.X, Y=np.zeros((0, 1)), sample_weight=_weights(data, mean, n), y_was_1d=True)
    return _closed_form.null_squares({"fit_intercept": fit_intercept}, mean_x, weight_exp, rows, Q)


def _qr_state(data, mean: float, n: int, target: int, params: dict):
    """The closed form's ``R`` statistics of the block's ``[X, y]`` with the fit's weights
    (:meth:`fastopt._newton._Rows.qr_state` of the block)."""
    return _newton._Rows(_problem(aligned(data), mean, n, target, params["fit_intercept"], None)).qr_state(params)


class _Blocks:
    """The persisted, validated row blocks and the distributed evaluations over them."""

    def __init__(self, checker, chunks: _dask.DaskChunks):
        template = delayed(checker, pure=True)
        leaves = [delayed(_validated, pure=True)(template, *chunks.block(i)) for i in range(len(chunks))]
        self.blocks = list(dask.persist(*leaves))
        try:
            facts = dask.compute(*[delayed(_block_facts)(b) for b in self.blocks])
        except BaseException:  # (the persisted blocks are released: _dask.release)
            self.release()
            raise
        self.n = int(sum(c for c, _, _, _ in facts))
        if self.n == 0:
            raise ValueError("solver='newton' needs at least one row.")
        # The mean weight over all rows from the blocks' own means (no sum of raw weights, which could overflow).
        self.mean = float(sum((c / self.n) * m for c, m, _, _ in facts))
        if not self.mean > 0:
            raise ValueError("sample_weight is zero on every row.")
        # Tiny targets are fitted scaled, as in memory (NewtonSolver._fits): unscaled, a Huber fit of y of 1e-170
        # stopped at the least-squares start, silently (59% above the minimum)
        self.dtype = np.dtype(facts[0][3])  # (the coefficients' dtype: a scaled float32 block is read in float64)
        self.exps = _newton.target_exponents(np.max([top for _, _, top, _ in facts], axis=0))
        if self.exps.any():
            exps = delayed(self.exps)
            scaled = list(dask.persist(*[delayed(_scaled_block, pure=True)(b, exps) for b in self.blocks]))
            self.release()
            self.blocks = scaled

    def release(self) -> None:
        _dask.release(self.blocks)
        self.blocks = []

    def gram(self) -> _closed_form.ClosedFormState:
        leaves = [delayed(_gram, pure=True)(b, self.mean, self.n) for b in self.blocks]
        return _dask.tree_merge(leaves).compute()

    def evaluate(self, target: int, fit_intercept: bool, centre, w, b: float, eps: float, hessian: bool) -> _Stats:
        w_d = delayed(np.asarray(w, dtype=np.float64))  # one copy in the graph, shared by every block
        leaves = [delayed(_evaluate, pure=True)(blk, i, self.mean, self.n, target, fit_intercept, centre, w_d,
                                                float(b), float(eps), hessian) for i, blk in enumerate(self.blocks)]
        return _dask.tree_merge(leaves, _add).compute()

    def line_search(self, target: int, fit_intercept: bool, centre, alpha: float, w, b: float, dw, db: float,
                    eps: float) -> float:
        """:func:`fastopt._newton._line_search` on the blocks: the minimiser over ``t in [0, 1]`` of the convex
        objective along the step, whose slope at 0 is negative and at 1 positive. The rows' residuals cannot be
        gathered, so each pass returns the slopes at a grid of ``t``: first ``8^-j`` (``j = 1 .. 33``, to the
        in-memory search's 1e-30), then ``LINE_GRID`` points inside the bracket found; the largest ``t`` of
        negative slope (the objective decreases all the way to it), to ``7 / LINE_GRID`` of itself. Two passes,
        where halving the step took one per halving and stopped at the first point Armijo accepted, short of the
        minimiser: on the twelve heavy-tailed fits of ``tests/test_robust.py`` (610 rows in blocks of 200), 285
        iterations in 8.4 s against halving's 354 in 10.3 s (and before the crawl exit of
        :func:`fastopt._newton._newton`, ten of them at ``max_epochs``)."""
        w_d, dw_d = delayed(np.asarray(w, dtype=np.float64)), delayed(np.asarray(dw, dtype=np.float64))

        def slopes(ts):
            leaves = [delayed(_slopes, pure=True)(blk, self.mean, self.n, target, fit_intercept, w_d, float(b), dw_d,
                                                  float(db), float(eps), ts) for blk in self.blocks]
            loss = _dask.tree_merge(leaves, operator.add).compute()
            return loss + (alpha * ((w + ts[:, None] * dw) @ dw) if alpha else 0.0)

        ts = 8.0 ** -np.arange(1, 34)
        neg = np.flatnonzero(slopes(ts) < 0.0)
        if neg.size == 0:
            return 0.0
        j = int(neg[0])
        lo, hi = ts[j], (1.0 if j == 0 else ts[j - 1])
        ts = lo + (hi - lo) * np.arange(1, LINE_GRID + 1) / (LINE_GRID + 1)
        neg = np.flatnonzero(slopes(ts) < 0.0)
        return float(ts[neg[-1]]) if neg.size else float(lo)

    def inlier_r(self, prob: _newton._Problem, target: int, w, b: float, eps: float) -> np.ndarray:
        """:func:`fastopt._newton._inlier_r` of the inliers at ``(w, b)``: the blocks' TSQR, merged on the cluster
        (``p x p`` factors travel)."""
        return self._merged_r(_inlier_qr, prob, target, w, b, eps)

    def null_moved(self, target: int, fit_intercept: bool, centre, v) -> float:
        """:func:`fastopt._newton._null_moved` over the blocks (the largest of theirs)."""
        v_d = delayed(np.asarray(v, dtype=np.float64))
        leaves = [delayed(_null_moved, pure=True)(blk, self.mean, self.n, target, fit_intercept, centre, v_d)
                  for blk in self.blocks]
        return float(_dask.tree_merge(leaves, max).compute())

    def secant_r(self, prob: _newton._Problem, target: int, w, b: float, eps: float) -> np.ndarray:
        """:meth:`fastopt._newton._Hessian._secant_factor` at ``(w, b)``: the blocks' TSQR of every row, the
        outliers at their secant share, merged on the cluster."""
        return self._merged_r(_secant_qr, prob, target, w, b, eps)

    def _merged_r(self, leaf, prob: _newton._Problem, target: int, w, b: float, eps: float) -> np.ndarray:
        """:func:`fastopt._newton._r_of_state` of the merge of the blocks' ``leaf`` statistics at ``(w, b)``."""
        w_d = delayed(np.asarray(w, dtype=np.float64))
        leaves = [delayed(leaf, pure=True)(blk, self.mean, self.n, target, prob.fit_intercept, prob.centre, w_d,
                                           float(b), float(eps)) for blk in self.blocks]
        return _newton._r_of_state(prob, _dask.tree_merge(leaves, _merge_optional).compute())


class _BlockRows:
    """:func:`fastopt._newton._least_squares`' passes over the blocks (:class:`fastopt._newton._Rows`)."""

    def __init__(self, blocks: _Blocks, target: int, fit_intercept: bool):
        self.blocks, self.target, self.fit_intercept = blocks, target, fit_intercept

    def null_squares(self, full: _closed_form.ClosedFormState, Q: np.ndarray) -> float:
        blocks = self.blocks
        mean_x, Q = delayed(full.mean[: full.n_features].copy()), delayed(Q)  # (one copy each in the graph)
        leaves = [delayed(_null_squares, pure=True)(blk, blocks.mean, blocks.n, self.fit_intercept, mean_x,
                                                    full.weight_exp, Q) for blk in blocks.blocks]
        return float(_dask.tree_merge(leaves, operator.add).compute())

    def qr_state(self, params: dict) -> _closed_form.ClosedFormState:
        blocks = self.blocks
        leaves = [delayed(_qr_state, pure=True)(blk, blocks.mean, blocks.n, self.target, params)
                  for blk in blocks.blocks]
        return _dask.tree_merge(leaves).compute()


class _BlockHessian(_newton._Hessian):
    """:class:`fastopt._newton._Hessian` whose matrix is the blocks' at the current point (:meth:`at`), and whose
    ``R`` factor is their TSQR (:meth:`_Blocks.inlier_r`, one more distributed pass whenever the inliers
    changed)."""

    def __init__(self, prob: _newton._Problem, full, blocks: _Blocks, target: int):
        super().__init__(prob, full)
        self.blocks, self.target, self.point = blocks, target, None

    def at(self, st: _Stats, w, b: float, eps: float) -> None:
        """The statistics ``st`` at ``(w, b)`` for threshold ``eps`` are the current point's."""
        self.H, self.point = st.H, (w, b, eps, st.digest)

    def _inlier_factor(self) -> np.ndarray:
        w, b, eps, digest = self.point
        if self._qr is None or self._qr[0] != digest:
            self._qr = (digest, self.blocks.inlier_r(self.prob, self.target, w, b, eps))
        return self._qr[1]

    def _secant_factor(self) -> np.ndarray:
        w, b, eps, _ = self.point
        return self.blocks.secant_r(self.prob, self.target, w, b, eps)


def _fit_target(blocks: _Blocks, target: int, full, alpha: float, fit_intercept: bool, eps: float, rtol: float,
                max_iter: int) -> _newton._Fit:
    """Semismooth Newton for one target from the least-squares fit; the solve of :class:`fastopt._newton._Hessian`.
    When gross outliers leave the start no curvature, the threshold continuation of
    :func:`fastopt._newton.huber_newton` (its median read from the blocks' residual histograms)."""
    d = full.n_features
    centre = full.mean[:d].copy() if fit_intercept else np.zeros(d)
    prob = _newton._Problem(np.empty((0, d)), np.empty(0), np.empty(0), alpha, fit_intercept, centre)
    prob.rows = blocks.n
    # (the all-rows damping reference; H is replaced at every evaluation)
    hess = _BlockHessian(prob, full, blocks, target)
    w, b = _newton._least_squares(prob, full, _BlockRows(blocks, target, fit_intercept))
    st = blocks.evaluate(target, fit_intercept, centre, w, b, eps, True)
    curve, iters = [], 0
    threshold = _newton._stage_threshold(_median_from_histogram(st.hist), eps) if eps < np.inf else eps
    hess.at(st, w, b, eps)
    # (as in memory: only where the curvature cannot answer the gradient, or the ridge's steps crawl)
    if threshold > eps and not _newton._curvature_missing(hess, st.g + alpha * w, st.gb):
        threshold = eps
    crawl_exit = eps < np.inf
    while True:
        while threshold > eps:
            crawl_exit = False
            st = blocks.evaluate(target, fit_intercept, centre, w, b, threshold, True)
            w, b, st, _, it, _ = _iterate(blocks, target, fit_intercept, centre, alpha, hess, w, b, st, threshold,
                                          _newton.STAGE_RTOL, max_iter, curve, capped=True)
            iters += max(it, 1)
            threshold = _newton._stage_threshold(_median_from_histogram(st.hist), eps, threshold)
            if threshold == eps:
                st = blocks.evaluate(target, fit_intercept, centre, w, b, eps, True)
        w, b, st, F, it, ok = _iterate(blocks, target, fit_intercept, centre, alpha, hess, w, b, st, eps, rtol,
                                       max_iter, curve, capped=eps < np.inf, crawl_exit=crawl_exit)
        iters += it
        if not hess.crawled:
            return _newton._minimum_norm(prob, _newton._Fit(w, b, F, iters, ok, curve or [F]),
                                         lambda v: blocks.null_moved(target, fit_intercept, centre, v))
        crawl_exit = False
        threshold = _newton._stage_threshold(_median_from_histogram(st.hist), eps)


def _slope(st: _Stats, alpha: float, w, dw, db: float, t: float) -> float:
    """The objective's derivative along the step ``(dw, db)`` at ``t``, from the statistics there."""
    return float((st.g + alpha * (w + t * dw)) @ dw) + st.gb * db


def _iterate(blocks: _Blocks, target: int, fit_intercept: bool, centre, alpha: float, hess: _BlockHessian, w,
             b: float, st: _Stats, eps: float, rtol: float, max_iter: int, curve: list, capped: bool,
             crawl_exit: bool = False):
    """Newton iterations at threshold ``eps`` from ``(w, b)`` with statistics ``st`` there; the stop as in memory
    (with ``capped``, relative to the capped objective), and as in memory (:func:`fastopt._newton._newton`) a stop
    whose Cholesky direction cannot be trusted, or steps that crawl, go on with the inliers' ``R`` factor's
    directions; with ``crawl_exit``, steps that crawl where only the ridge answers the gradient return early with
    ``hess.crawled`` set (as in memory). Returns (w, b, st, F, iterations, converged)."""
    hess.crawled = False
    try:
        return _iterate_loop(blocks, target, fit_intercept, centre, alpha, hess, w, b, st, eps, rtol, max_iter,
                             curve, capped, crawl_exit)
    finally:
        hess.qr = False


def _iterate_loop(blocks, target, fit_intercept, centre, alpha, hess, w, b, st, eps, rtol, max_iter, curve, capped,
                  crawl_exit):
    """:func:`_iterate`'s iteration."""

    def value(st, w):
        return st.loss + _newton._penalty(alpha, w)

    qr, damped = _newton.QR_FALLBACK, not hess.prob.singular
    crawl, last_dec, landed, cuts = 0, np.inf, False, []
    F = value(st, w)
    it = 0
    while it < max_iter:  # (a switch to the R factor's steps redoes the direction: not an iteration)
        hess.at(st, w, b, eps)
        g, gb = st.g + alpha * w, st.gb
        dw, db = hess.direction(g, gb, 1.0)
        dec = -(float(g @ dw) + gb * db)
        reference = st.capped + _newton._penalty(alpha, w) if capped else abs(F)
        # (or within the round-off floor, as in memory)
        if dec <= 0.0 or (dec <= 2.0 * rtol * abs(F) and dec <= 2.0 * rtol * reference) or dec <= 2.0 * rtol * st.floor:
            if qr and not hess.qr and damped and hess.untrusted():
                hess.qr = True
                continue
            return w, b, st, F, it, True
        if crawl_exit and _newton._crawling(hess, cuts, dec, g, gb, 1.0):
            hess.crawled = True
            return w, b, st, F, it, False
        if qr and not hess.qr:  # (as in memory: a full step with no crossing lands on the piece's minimiser)
            crawl = crawl + 1 if landed and dec > 0.1 * last_dec else 0
            if crawl >= 2:
                hess.qr = True
                continue
        last_dec, landed = dec, False
        trial = blocks.evaluate(target, fit_intercept, centre, w + dw, b + db, eps, True)
        # Armijo, or a slope not positive at 1 (the objective is convex: it then decreased all the way), which sees
        # a decrease that far outliers round out of F; else the minimiser along the step, as in memory
        t = 1.0
        if value(trial, w + dw) > F - _newton.ARMIJO * dec and _slope(trial, alpha, w, dw, db, 1.0) > 0.0:
            t = blocks.line_search(target, fit_intercept, centre, alpha, w, b, dw, db, eps)
            if t == 0.0:  # no decrease at round-off level: optimal to working precision
                if qr and not hess.qr and damped and hess.untrusted():
                    hess.qr = True
                    continue
                return w, b, st, F, it + 1, True
        landed = t == 1.0 and trial.digest == st.digest
        if t < _newton.CRAWL_T:
            cuts.append(dec)
        else:
            cuts.clear()
        w, b = w + t * dw, b + t * db
        st = trial if t == 1.0 else blocks.evaluate(target, fit_intercept, centre, w, b, eps, True)
        F = value(st, w)
        curve.append(F)
        it += 1
    return w, b, st, F, max_iter, False


def fit(params: dict, checker, chunks: _dask.DaskChunks, state=None):
    """:meth:`fastopt._newton.NewtonSolver.fit` on Dask row blocks (``checker`` validates them)."""
    if params["loss"] == "absolute_error":
        raise ValueError(
            "solver='newton' with loss='absolute_error' needs the rows in memory (its exact limit solves a "
            "system over the rows inside the smoothing threshold); on Dask arrays use loss='huber', or an "
            "iterative solver (e.g. solver='adam')."
        )
    blocks = _Blocks(checker, chunks)
    try:
        every = blocks.gram()
        k = every.n_targets
        from fastopt import _solvers  # (the registry imports _newton)

        _solvers.check_options("newton", params, k)  # an alpha array of another length (_dask.fit checks before y)
        alpha = np.broadcast_to(np.asarray(params["alpha"], dtype=np.float64), (k,))
        eps = float(params["epsilon"]) if params["loss"] == "huber" else np.inf
        fits = []
        for j in range(k):
            e = int(blocks.exps[j])
            eps_j = float(np.ldexp(eps, -e))
            if params["loss"] == "huber":
                _newton.check_scaled_epsilon(eps, eps_j)
            fit = _fit_target(blocks, j, _newton._target_state(every, j), float(alpha[j]), params["fit_intercept"],
                              eps_j, _newton.RTOL, max_epochs(params))
            fits.append(_newton.scaled_fit(fit, e, lad=False))
    except BaseException:  # (an error, or an interrupt: the persisted blocks are released)
        blocks.release()
        raise
    return _newton.result(params, blocks.dtype, fits, init=None)


__all__ = ["fit"]
