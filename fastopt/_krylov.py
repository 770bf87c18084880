"""Krylov least squares: CGLS and LSQR, matrix-free, one fused pass over ``X`` per iteration.

The problem
-----------
The objective is the closed form's (see :mod:`fastopt._closed_form`): with ``W = sum_i w_i``,
``(1 / (2 W)) sum_i w_i (y_i - x_i . coef - intercept)^2 + (alpha / 2) ||coef||^2``. Eliminating the intercept
by the weighted means ``m`` (of ``X``'s columns) and ``m_y`` leaves, times ``2 W``, the damped least-squares
problem ``min ||A coef - b||^2 + lam^2 ||coef||^2`` with ``A = S (X - 1 m^T)``, ``b = S (y - m_y)``,
``S = diag(sqrt(w))`` and ``lam^2 = W alpha``; ``intercept = m_y - m . coef`` (without an intercept,
``m = 0`` and ``m_y = 0``). ``A`` is never formed: ``A v = S (X v - (m . v) 1)`` and
``A^T u = X^T (S u) - m sum_i s_i u_i``.

Preconditioning (``precondition="auto"``, the default; ``"none"`` turns it off) solves for ``z = D^-1 coef``
with the operator ``A D``, where ``D = diag(1 / sqrt(||A e_j||^2 + lam^2))`` is the inverse square root of the
diagonal of the normal matrix ``A^T A + lam^2 I``: columns of very different scales (counts beside ratios,
hashed features of Zipf-distributed frequencies) then converge together. "auto" applies it when the norms of
the non-empty columns span more than a factor 4 (:func:`jacobi_pays`); on evenly scaled columns ``D = I``. The
ridge term becomes ``lam^2 ||D z||^2``, so both methods run on the augmented operator ``[A D; lam D]`` and
right-hand side ``[b; 0]`` (its lower block is diagonal: O(d) work).

Stopping (``tol``)
------------------
``tol`` is LSQR's pair of stopping rules (Paige & Saunders 1982, sec. 6; ``scipy.sparse.linalg.lsqr`` with
``atol = btol = tol``) on the scaled augmented problem, ``A_bar = [A D; lam D]``, ``r = [b; 0] - A_bar z``
(``D = I`` without the preconditioner): stop when ``||A_bar^T r|| <= tol ||A_bar||_F ||r||`` (S2: the residual
within an angle of about ``tol`` of the normal to ``A_bar``'s range) or ``||r|| <= tol (||b|| + ||A_bar||_F ||z||)``
(S1: a compatible system; not with a ridge, where the augmented residual never vanishes, so ridge fits stop on S2
alone). Either is a backward-error bound: the answer solves exactly a problem whose data differ
by about ``tol`` relative. The relative excess of the objective is then at most ``t^2 / (1 - t^2)`` with
``t = tol ||A_bar||_F / sigma_min(A_bar)`` (S2; see :class:`_Stopping`). The rules take LSQR's running estimate
of ``||A_bar||_F`` (at most the norm itself, so the bound holds; before the first iteration the exact norm, from
the column norms the moments give). When the iteration's own estimates meet a rule, one more pass computes the true
residual; if recurrence round-off left it unmet, the method restarts from the current coefficients (the restart's
iterations count in ``n_iter_``). ``tol=None`` runs up to ``max_iter`` iterations, stopping where the rules hold
at machine precision (confirmed by a true pass, as every stop is).
Not meeting a rule within ``max_iter`` warns :class:`~sklearn.exceptions.ConvergenceWarning`. For a condition
number ``kappa`` of the scaled operator, both methods reduce ``||A_bar^T r||`` by a factor ``eps`` in about
``(kappa / 2) log(2 kappa / eps)`` iterations (the conjugate-gradient bound, Nocedal & Wright, *Numerical
Optimization*, 2006, eq. 5.36, applied to ``A^T A`` whose condition is ``kappa^2``).

One pass over X per iteration
-----------------------------
The compiled kernel (:func:`fastopt._kernels.krylov_dense`/``krylov_csr``, csrc/krylov.c) returns, in one
read of ``X``, ``a = A v + c b`` together with ``||a||^2`` and ``A^T a`` for any ``d``-vector ``v`` and scalar
``c``, without storing ``a``. Both recurrences are arranged to need exactly that once per iteration:

* **CGLS** (Hestenes & Stiefel 1952; Paige & Saunders 1982, section 7.1) needs ``q = A p`` for the step length
  ``gamma / ||q||^2`` and then ``A^T r`` for the new residual ``r = r - step q``. Since
  ``A^T r_new = A^T r - step A^T q``, the kernel's ``A^T A p`` from the same pass updates the normal-equation
  residual directly; the ``n``-vector ``r`` is never needed.
* **LSQR** (Paige & Saunders 1982) runs Golub-Kahan bidiagonalisation,
  ``beta u_{k+1} = A v_k - alpha u_k`` then ``alpha v_{k+1} = A^T u_{k+1} - beta v_k``. Every ``u_k`` is a
  combination ``A g_k + gamma_k b`` (``u_1`` is ``b - A x_0``, and the recurrence keeps the form), so ``u`` is
  carried as the ``d``-vector ``g`` and the scalar ``gamma``: ``g' = v - alpha g``, ``gamma' = -alpha gamma``,
  and one pass with ``(v, c) = (g', gamma')`` gives ``||u'||`` (so ``beta``) and ``A^T u'`` together. The
  rotations and updates of ``x`` are SciPy's ``lsqr`` (``scipy.sparse.linalg``) without its ``damp`` branch
  (the damping is in the augmented operator). Carrying ``u`` implicitly costs LSQR some of its stability on
  very ill-conditioned problems (``g`` grows like ``1 / sigma_min``), which the true-residual check catches.

A cold start (from zero) takes its first residual ``A^T b`` and ``||b||`` from the moments pass (:class:`Moments`),
so a fit costs the moments' passes (one read of CSR rows, ``1 + k`` of dense rows), one per iteration and the final
check; with an intercept, one more read of the columns whose moments cannot tell them from constant, where there
are any (:func:`centred_verdict`).

Memory: ``O(n + d)`` (a few ``d``-vectors per thread; no ``n``-vector besides ``sqrt(w)``).

Data
----
Dense arrays (memory-mapped ones too) and CSR matrices in memory are split into fixed segments of rows run by
parallel threads (the kernel releases the GIL) and summed in segment order, so the result does not depend on
the thread count; :meth:`fastopt.LinearRegressor.fit_stream` makes one read of the stream per iteration (chunks
merged in a balanced tree); Dask arrays make one distributed pass per iteration (:mod:`fastopt._krylov_dask`).
"""
from __future__ import annotations

import dataclasses
import itertools
import math
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import scipy.linalg
import scipy.sparse

from fastopt import _closed_form, _kernels
from fastopt._iterative_lr import SCALE_SPREAD
from fastopt._result import FitResult, Outcome, Solver
from fastopt._validation import Data, refuse_nonfinite_data
from fastopt.exceptions import ConvergenceWarning, _warn

__all__ = ["SOLVERS", "KrylovState", "Moments", "Passes", "default_max_iter", "solve"]

# Segments of rows: fixed by the data's shape alone (never by the thread count), so the sums, made in segment
# order, are the same for any number of threads. Each segment fills and returns a d-vector of its own, so a
# segment holds at least SEGMENT_WORK * d stored entries (that overhead then stays below a few percent of the
# pass: at d = 2^18 with 30 nonzeros a row, 200,000 rows make two segments), at least SEGMENT_ROWS rows, and
# there are at most MAX_SEGMENTS.
SEGMENT_ROWS = 16384
SEGMENT_WORK = 8
MAX_SEGMENTS = 32
MAX_ITER_DEFAULT = 10_000


def default_max_iter(d: int) -> int:
    """``max_iter=None``: ``2 d`` (SciPy's ``lsqr`` default; exact arithmetic needs at most ``d``), within
    ``[100, 10000]``."""
    return int(min(max(2 * d, 100), MAX_ITER_DEFAULT))


# solver="auto" on sparse X whose Gram would fit (fastopt._solvers.auto_least_squares) runs LSQR or CGLS first
# where the closed form costs at least AUTO_MIN_ITERS of their iterations: to AUTO_TOL (round-off level: on
# one-hot, TF-IDF and hashed designs 16-26 iterations, the closed form's predictions to 1e-10 and its objective
# to 4e-16 relative; further on nearly collinear columns, AUTO_PREDICTION_TOL below) within the iterations the
# closed form costs, else the closed form after all (at most about twice its cost). The closed form's Cholesky
# is O(d^3) whatever the sparsity, and on a rank-deficient design (one-hot columns with an intercept) its QR/SVD
# fallback densifies X, O(n d^2): 20,000 one-hot rows of 5,350 columns took 3.1 s (Cholesky, alpha = 1e-3) and
# 183 s (SVD, alpha = 0; the pivoted path since, 4.3-4.7 s) where LSQR takes 10 ms.
AUTO_TOL = 1e-12
# ... and on to machine precision (within the same iterations) where its error bound does not put its predictions
# within AUTO_PREDICTION_TOL of y's spread (the root mean square over the rows relative to y's weighted standard
# deviation, or root mean square without an intercept; _inaccurate). The params key that asks solve for that check.
AUTO_PREDICTION_TOL = 1e-10
ACCURACY_KEY = "_krylov_accuracy"
AUTO_MIN_ITERS = 30
# ... and 15 where the design is large and the attempt is LSQR's on unweighted rows (attempt_floor). Measured
# quiet, medians of 5 interleaved, "auto" at a floor of 30 and 15 against the faster of the closed form and the
# Krylov solver (LSQR's iterations of the model's budget):
#   random rows of 60 values, 500,000 x 1,000 (10 of 29):   2.14x -> 0.97x (0.62 -> 0.28 s)
#   random rows of 20 values, 500,000 x 1,500 (11 of 16):   1.13x -> 0.84x;  100,000 x 1,000 (14 of 24, 2.0
#                                                           million values): 1.33x -> 0.97x
#   random rows of 60 values, 50,000 x 400 (13 of 28):      1.33x -> 1.18x
#   TF-IDF 100,000 x 800, 2.5 million values (12 of 19):    0.11-0.13 s -> 0.086 s; hashed 200,000 x 1,024 (13 of 17),
#                                                           0.117 -> 0.082 s
# and where it lost, the floor stays 30: designs of up to about a million stored values, where the model prices
# the closed form 1.2-2.5x above its cost (TF-IDF 100,000 x 800 with 1.0 million values, 13 of 21: 1.04x ->
# 1.35x; random 20,000 x 400, 17 of 20: 1.08x -> 1.78x; between 1.0 and 1.5 million, hashed 100,000 x 1,024
# neither gained nor lost and one-hot 100,000 x 800 gained, 1.48x -> 0.98x, left out with the margin), and a
# ridge or weights, under which CGLS and LSQR need 23-28 iterations (one-hot 100,000 x 800 with alpha 1e-3,
# 24 of 20: 1.00x -> 2.59x; hashed 20,000 x 512 under weights 10^U(-3, 3): 1.00x -> 2.03x) (helper-140).
AUTO_MIN_ITERS_LARGE, AUTO_LARGE_NNZ = 15, 1_500_000


def attempt_floor(nnz: int, alpha, weighted: bool) -> int:
    """The fewest iterations the model must give the closed form (:func:`closed_form_iterations`) for
    ``solver="auto"`` on sparse ``X`` in memory to try the Krylov solver first: ``AUTO_MIN_ITERS_LARGE`` on
    at least ``AUTO_LARGE_NNZ`` stored values without a ridge (``alpha``, one or one per target) or weights, else
    ``AUTO_MIN_ITERS`` (see the measurements above)."""
    from fastopt import _solvers  # (the registry imports this module)

    ridged = bool(_solvers._ridged(alpha).any())
    return AUTO_MIN_ITERS_LARGE if nnz >= AUTO_LARGE_NNZ and not ridged and not weighted else AUTO_MIN_ITERS


AUTO_KEY = "_krylov_first"  # the params key that tells a Krylov entry it runs for "auto" (see KrylovSolver.fit)
# With AUTO_KEY on streams and Dask: the attempt replaces the closed form's QR fallback (auto_iterations).
QR_FALLBACK_KEY = "_krylov_instead_of_qr"
# The cost model, seconds (this repository's 2-core machine; only the ratio matters). The closed form on sparse X:
# the Gram's products (gram_seconds) and its Cholesky (cholesky_seconds). An iteration: 0.8 ns a stored value plus
# the d- and n-vectors' work and Python's per-iteration overhead, measured on random, one-hot and hashed CSR of
# 60,000 to 10 million stored values (0.12-0.16 ms at 60,000, 0.6-1.3 ms at 0.8-1.2 million, 5.8-7.5 ms at 10
# million; 12-13 ms on 6 million stored values of 2^18 columns). The solvers' set-up before their first iteration
# (the columns' scales, a scaled copy of the stored values: 2-7 ns a stored value, 3-6 iterations) is not priced;
# AUTO_MIN_ITERS leaves room for it.
CLOSED_FORM_S_PER_FLOP = 5e-11
# The QR of densified rows (qr_fallback_iterations): solver="qr" on random CSR of 20,000-100,000 rows took
# 1.9-2.1e-11 s a flop (2 n p^2) at 300-800 columns and 3.1-3.3e-11 at 1,500-2,000 (6e-11 at 100 columns, 25 ms in
# all). At CLOSED_FORM_S_PER_FLOP the fallback's budget was 1.6-2.5x its cost: with LSQR's run on to machine
# precision (AUTO_PREDICTION_TOL) on 20,000 x 400 near-duplicate weighted columns, "auto" took 0.40 s where the QR
# takes 0.13 (helper-144).
QR_S_PER_FLOP = 3e-11
ITER_S_PER_STORED, ITER_S_PER_COLUMN, ITER_S_PER_ROW, ITER_S_FIXED = 8e-10, 2e-8, 1e-9, 5e-5
# On Dask arrays each iteration is a graph of one task per block and a tree reduction: about 1-1.5 ms a block on
# the local threaded scheduler (4 blocks: 4.3 ms an iteration, 16 blocks: 25 ms). A stream's iteration reads and
# checks each chunk again: 0.14-0.32 ms a chunk measured on lists of 4-64 CSR chunks held in memory (a source that
# reads files costs more).
DASK_S_PER_BLOCK, STREAM_S_PER_CHUNK = 1.5e-3, 2.5e-4


# The sparse Gram (csrc/csr_gram.c): the products of each row's stored values (nnz^2 / n of them, counting both
# triangles), GRAM_S_PER_UPDATE each while the triangle's panels stay in cache, growing as p^1.7 beyond
# GRAM_CACHED_COLUMNS, where the scattered updates miss it; plus GRAM_S_PER_ENTRY for each entry of the p x p
# result (zeroing, centring, symmetrising and merging it, and the panels' sweeps of the rows). Measured on 100,000
# to 500,000 CSR rows of 5-100 stored values at random columns, two threads: 3.4-6.6e-10 an update up to 2,000
# columns, 9e-10 at 3,000 and 1.4e-9 at 4,000 (20 a row; 5-6.5e-10 at 60-100), 3e-9 at 6,000; 84 and 199 ms at
# 3,000 and 6,000 columns on rows of 5 values, the entries' part. The model is within 1.5x of each.
GRAM_S_PER_UPDATE, GRAM_CACHED_COLUMNS, GRAM_S_PER_ENTRY = 4e-10, 2500, 8e-9
# The closed form's factorisation after the Gram: the Cholesky (d^3 / 3 flops) at BLAS's rate, which grows with d,
# and passes over the d x d equations (copies, scaling, the reciprocal condition estimate). Measured (the closed
# form's time less its Gram's) at 1,000-6,000 columns: 18-26, 79-98, 205-244, 386-493 and 1,243 ms at 1,000,
# 1,500-2,000, 3,000, 4,000 and 6,000 columns; the model is within 1.3x of each but 1,500 (0.6x).
CHOLESKY_S_PER_FLOP, CHOLESKY_S_PER_ENTRY = 1.2e-11, 1.5e-8


def gram_update_seconds(p: int) -> float:
    """Seconds an update of the sparse Gram of ``p`` columns costs (``GRAM_S_PER_UPDATE`` while its panels stay in
    cache, growing as ``p^1.7`` beyond ``GRAM_CACHED_COLUMNS`` columns, to at most 7 times that)."""
    return GRAM_S_PER_UPDATE * min(max((p / GRAM_CACHED_COLUMNS) ** 1.7, 1.0), 7.0)


def gram_seconds(n: int, p: int, nnz: int) -> float:
    """Seconds the sparse Gram of ``p`` columns (``d + k``) costs on ``n`` rows of ``nnz`` stored values."""
    return gram_update_seconds(p) * nnz * (nnz / max(n, 1)) + GRAM_S_PER_ENTRY * p * p


def cholesky_seconds(d: int) -> float:
    """Seconds the closed form's factorisation of its ``d x d`` normal equations costs, with its passes over them."""
    return CHOLESKY_S_PER_FLOP * d**3 / 3.0 + CHOLESKY_S_PER_ENTRY * d * d


def closed_form_iterations(n: int, d: int, nnz: int, k: int = 1, blocks: int = 0, chunks: int = 0) -> int:
    """How many Krylov iterations of each of ``k`` targets cost as much as the closed form on sparse ``X`` of
    shape ``(n, d)`` with ``nnz`` stored values (the cost model above; ``blocks``: Dask row blocks; ``chunks``: a
    stream's chunks)."""
    closed = cholesky_seconds(d) + gram_seconds(n, d + k, nnz)
    return int(closed / _iteration_seconds(n, d, nnz, k, blocks, chunks))


def _iteration_seconds(n: int, d: int, nnz: int, k: int, blocks: int, chunks: int = 0) -> float:
    """One Krylov iteration of ``k`` targets on sparse ``X`` of these sizes, by the cost model above."""
    return k * (ITER_S_PER_STORED * nnz + ITER_S_PER_COLUMN * d + ITER_S_PER_ROW * n + ITER_S_FIXED
                + DASK_S_PER_BLOCK * blocks + STREAM_S_PER_CHUNK * chunks)


def qr_fallback_iterations(n: int, d: int, nnz: int, k: int = 1, blocks: int = 0, chunks: int = 0) -> int:
    """How many Krylov iterations of each of ``k`` targets cost as much as the closed form's QR fallback on sparse
    ``X`` (Householder QR of the densified ``n x (d + k)`` rows, ``2 n p^2`` flops; ``blocks``: Dask row blocks;
    ``chunks``: a stream's chunks),
    capped at ``default_max_iter(d)``: the budget of ``solver="auto"``'s Krylov attempt once the Gram's Cholesky
    is rejected (:func:`fastopt._closed_form.krylov_instead`, and with ``QR_FALLBACK_KEY`` on streams and Dask)."""
    p = d + k
    qr = QR_S_PER_FLOP * 2.0 * n * p * p
    return min(int(qr / _iteration_seconds(n, d, nnz, k, blocks, chunks)), default_max_iter(d))


# The closed form's pivoted path is tried before "auto"'s Krylov attempt where it costs fewer iterations than
# this (pivoted_first): half the fewest the attempt took, since the model undercounts the path's copies and
# Python (up to 2x measured). To AUTO_TOL, LSQR took 11-13 iterations on one-hot CSR with an intercept (80,000
# and 200,000 rows of 1,125 columns), where the pivoted path applies, and 16-26 on TF-IDF and hashed designs,
# whose Cholesky is rejected for ill-conditioning: the pivoted path's pass refutes that, so it is wasted first.
PIVOTED_FIRST_ITERS = 8


def pivoted_first(n: int, d: int, nnz: int, k: int = 1) -> bool:
    """Whether ``solver="auto"`` on sparse ``X`` in memory, once the Gram's Cholesky is rejected, tries the closed
    form's pivoted path (:func:`fastopt._closed_form.pivoted`) before the Krylov attempt: where its cost, about
    twice the factorisation (``2 d^3 / 3`` flops: the pivoted factorisation, then the triangular solves and
    copies) and one read of ``X``, is that of fewer than ``PIVOTED_FIRST_ITERS`` iterations. Measured on one-hot
    CSR with an intercept: 200,000 rows, 493 columns, the pivoted path 28 ms where LSQR took 40-52 ms; 80,000 and
    200,000 rows of 1,125 columns, 54-58 ms where LSQR (13 and 11 iterations) took 16 and 39 ms."""
    pivoted = CLOSED_FORM_S_PER_FLOP * 2.0 * d**3 / 3.0 + _iteration_seconds(n, d, nnz, 1, 0)
    return pivoted < PIVOTED_FIRST_ITERS * _iteration_seconds(n, d, nnz, k, 0)


# The closed form on sparse X with an intercept tests for the dummy-variable trap before its Cholesky
# (fastopt._closed_form.cholesky_futile) where the test costs less than the factorisation it spares (d^3 / 3
# flops): a compiled pass over the stored values, then, where indicator columns exist, one to three CSR products.
# Measured on 10 million stored values (500,000 rows, 2,000 columns): 1.0 ns a stored value on numeric columns,
# 2.0 on one-hot columns of every level and 3.1 with one level dropped (NumPy's masks and bincount had taken
# 9.1, 2.4 and 6.3), where the Cholesky of 1,125 columns took 18-26 ms.
TRAP_S_PER_STORED = 3e-9


def trap_test_first(d: int, nnz: int) -> bool:
    """Whether the closed form on sparse ``X`` of ``d`` columns and ``nnz`` stored values tests for the
    dummy-variable trap before its Cholesky: where the test costs less than the factorisation."""
    return TRAP_S_PER_STORED * nnz < CLOSED_FORM_S_PER_FLOP * d**3 / 3.0


def auto_iterations(params: dict, n: int, d: int, nnz: int, k: int = 1, blocks: int = 0,
                    chunks: int = 0) -> int | None:
    """The iterations ``solver="auto"``'s Krylov attempt may take on sparse chunks or blocks of these sizes
    (``params[AUTO_KEY]`` set), or None where the closed form runs directly: in place of the closed form
    (:func:`auto_budget`), or, with ``params[QR_FALLBACK_KEY]``, in place of its QR fallback once the Gram's
    Cholesky is rejected (:func:`qr_fallback_iterations`); at least ``AUTO_MIN_ITERS`` either way, since each
    iteration reads every chunk or block again where the QR pass reads them once."""
    if params.get(QR_FALLBACK_KEY):
        budget = qr_fallback_iterations(n, d, nnz, k, blocks, chunks)
    else:
        budget = auto_budget(n, d, nnz, k, blocks, chunks)
    return budget if budget >= AUTO_MIN_ITERS else None


def auto_budget(n: int, d: int, nnz: int, k: int = 1, blocks: int = 0, chunks: int = 0) -> int:
    """The iterations of each target that ``solver="auto"``'s Krylov attempt may take: what the closed form would
    cost (:func:`closed_form_iterations`), at most ``default_max_iter(d)``."""
    return min(closed_form_iterations(n, d, nnz, k, blocks, chunks), default_max_iter(d))


def auto_params(params: dict, budget: int) -> dict:
    """``params`` for ``solver="auto"``'s Krylov attempt: to ``AUTO_TOL`` within ``budget`` iterations, on to
    machine precision where that may leave the predictions further than ``AUTO_PREDICTION_TOL`` from the exact
    fit's (:func:`_inaccurate`; the estimator's ``tol`` and ``max_iter`` are for the Krylov solvers named)."""
    return {**params, "tol": AUTO_TOL, "max_iter": budget, ACCURACY_KEY: AUTO_PREDICTION_TOL}


def _inaccurate(stop: _Stopping, arnorm: float, accuracy: float) -> bool:
    """Whether a run converged at ``stop.tol`` may leave the predictions further than ``accuracy ||b||`` from
    the exact least-squares fit's; :func:`solve` then runs on to machine precision (``tol=None``'s rules).

    With ``e`` the error of ``z``, ``A_bar^T r = -A_bar^T A_bar e``, so the predictions' error is
    ``||A_bar e|| <= ||A_bar^T r|| / sigma_min(A_bar)``, with ``arnorm`` the true pass's ``||A_bar^T r||`` and
    the runs' least Ritz value for ``sigma_min`` (:meth:`_Stopping.sigma_min`: an estimate from above, as
    SciPy's ``acond``). A stop at ``tol`` leaves ``||A_bar^T r|| <= tol ||A_bar||_F ||r||``, so the error grows
    with the condition of the scaled columns. 50 pairs of near-duplicate columns (1e-6 apart, 20,000 x 400)
    ended at tol 1e-12 with predictions 3e-8 of ``y``'s spread (rms) off ``lstsq``'s, the bound reading 2.4e-7;
    at machine precision 1.5e-10 (QR: 2e-12). On one-hot, TF-IDF, hashed and random designs the bound read 2e-14
    to 8e-12 (the true error 2e-14 to 6e-13), so they stop at tol."""
    return stop.bnorm > 0 and not arnorm <= accuracy * stop.bnorm * stop.sigma_min()


@dataclass
class Moments:
    """Weighted moments of the rows, float64: what centring, the preconditioner and the start need.

    With ``centred`` (an intercept is fitted), ``cxy`` and ``cyy`` are about the weighted means ``m``, ``m_y``:
    ``cxy = sum_i w_i (x_i - m)(y_i - m_y) = A^T b`` and ``cyy = sum_i w_i (y_i - m_y)^2 = ||b||^2``, formed
    from ``y`` centred before the pass (no cancellation against ``W m m_y``) and merged across chunks by the
    pairwise update of Chan, Golub & LeVeque (*Algorithms for computing the sample variance*, 1983); without,
    they are the plain sums ``sum_i w_i x_i y_i`` and ``sum_i w_i y_i^2``. A cold start needs nothing more: its
    residual ``A^T b`` is ``cxy``, so it costs no pass of its own.
    """

    weight: float            # W = sum_i w_i
    n_samples: int
    sx: np.ndarray           # (d,) sum_i w_i x_i
    sxx: np.ndarray          # (d,) sum_i w_i x_i^2
    sy: np.ndarray           # (k,) sum_i w_i y_i
    cxy: np.ndarray          # (d, k) (centred) sum_i w_i x_i y_i
    cyy: np.ndarray          # (k,) (centred) sum_i w_i y_i^2
    centred: bool
    ytop: np.ndarray | None = None  # (k,) max_i |y_i| over the rows of positive weight (the scale test of y)

    def __add__(self, other: Moments) -> Moments:
        cxy, cyy = self.cxy + other.cxy, self.cyy + other.cyy
        if self.centred and self.weight > 0 and other.weight > 0:
            # Chan et al.'s pairwise update: the co-moments about the merged means.
            f = self.weight * other.weight / (self.weight + other.weight)
            dx = self.sx / self.weight - other.sx / other.weight
            dy = self.sy / self.weight - other.sy / other.weight
            cxy += f * np.outer(dx, dy)
            cyy += f * dy * dy
        ytop = None if self.ytop is None or other.ytop is None else np.maximum(self.ytop, other.ytop)
        return Moments(self.weight + other.weight, self.n_samples + other.n_samples, self.sx + other.sx,
                       self.sxx + other.sxx, self.sy + other.sy, cxy, cyy, self.centred, ytop)


@dataclass
class Pass:
    """One fused pass's sums: ``z = X^T (s a)``, ``ss = ||a||^2``, ``se = sum_i s_i a_i`` (and, when asked,
    ``zz = (X * X)^T (s a)``)."""

    z: np.ndarray
    ss: float
    se: float
    zz: np.ndarray | None = None

    def __add__(self, other: Pass) -> Pass:
        zz = None if self.zz is None else self.zz + other.zz
        return Pass(self.z + other.z, self.ss + other.ss, self.se + other.se, zz)


def _dot(a: np.ndarray, b: np.ndarray) -> float:
    """``a . b`` by NumPy's own loop: a multi-threaded BLAS may split a long dot product by its thread count,
    which would make the result depend on it."""
    return float(np.einsum("i,i->", a, b))


def add(a, b):
    """Sum of two :class:`Moments` or :class:`Pass` values (the merge of tree reductions)."""
    return a + b


@dataclass
class KrylovState:
    """What a Krylov fit keeps for ``warm_start``: the coefficients (k, d), float64."""

    coef: np.ndarray


# ---------------------------------------------------------------- passes over data in memory

_POOL: ThreadPoolExecutor | None = None
_POOL_LOCK = threading.Lock()


def _pool() -> ThreadPoolExecutor:
    global _POOL
    with _POOL_LOCK:
        if _POOL is None:
            _POOL = ThreadPoolExecutor(max(1, os.cpu_count() or 1), thread_name_prefix="fastopt-krylov")
        return _POOL


def _forget_pool() -> None:
    """In a forked child: the parent's pool threads do not exist there, and submitting to it would wait forever."""
    global _POOL, _POOL_LOCK
    _POOL, _POOL_LOCK = None, threading.Lock()


if hasattr(os, "register_at_fork"):  # not on Windows, which does not fork
    os.register_at_fork(after_in_child=_forget_pool)


def _segments(n: int, d: int, stored: int) -> list[tuple[int, int]]:
    """Row ranges of the segments of ``n`` rows holding ``stored`` entries (``n d`` when dense)."""
    count = min(MAX_SEGMENTS, -(-n // SEGMENT_ROWS), max(1, stored // max(SEGMENT_WORK * d, 1)))
    rows = -(-n // max(count, 1))
    return [(start, min(start + rows, n)) for start in range(0, n, rows)] or [(0, 0)]


def _sqrt_weight(sample_weight) -> np.ndarray | None:
    return None if sample_weight is None else np.sqrt(np.asarray(sample_weight, dtype=np.float64))


def chunk_moments(data: Data, centred: bool, checked: bool = False, threads: int | None = None) -> Moments:
    """:class:`Moments` of one chunk of validated rows (dense or CSR) by compiled passes: one read for CSR,
    ``1 + k`` for dense.

    With ``v = 0``, ``c = 0`` and ``shift = -1`` the pass gives ``sum_i w_i x_i`` and, from the same read,
    ``sum_i w_i x_i^2``; with ``c = 1`` and ``shift`` the chunk's weighted mean of target ``j`` (0 when not
    ``centred``), ``sum_i w_i (y_ij - shift) x_i`` and ``sum_i w_i (y_ij - shift)^2`` (``w_i`` as the square of
    ``sqrt(w_i)``, exactly the weights the operator applies). CSR rows get all of these from one read
    (:func:`fastopt._kernels.krylov_moments_csr`, the same sums bit for bit: at d = 2^18 the ``1 + k`` passes
    spent most of their time gathering the zero vector and scattering into ``2 + k`` separate vectors). Nothing
    of the size of ``X`` is allocated. ``checked`` and ``threads`` are :func:`chunk_pass`'s.
    """
    X, Y, sw = data.X, data.Y, data.sample_weight
    d, k = X.shape[1], Y.shape[1]
    sqrt_w = _sqrt_weight(sw)
    w = np.ones(X.shape[0]) if sw is None else np.asarray(sw, dtype=np.float64)
    W = float(np.einsum("i->", w))
    sy = np.einsum("i,ik->k", w, np.asarray(Y, dtype=np.float64))
    shift = sy / W if centred and W > 0 else np.zeros(k)
    ytop = np.max(np.abs(Y if sw is None else Y[w > 0]), axis=0, initial=0.0).astype(np.float64)
    options = {"checked": checked, "threads": threads}
    if scipy.sparse.issparse(X):
        _check_csr(X)

        def run(start, stop):
            Z = np.empty((d, 2 + k))
            s = None if sqrt_w is None else sqrt_w[start:stop]
            ss, se = _kernels.krylov_moments_csr(X.data, X.indices, X.indptr[start : stop + 1], Y[start:stop], s,
                                                 shift, Z, not checked)
            return Z, ss, se

        Z, ss, se, spare = None, None, None, None
        for part in _in_segments(_segments_of(data), threads, run):  # in segment order, as chunk_pass
            if Z is None:
                Z, ss, se = part
            else:
                Z += part[0]
                ss += part[1]
                se += part[2]
                spare = part[0]
        # The moments are views of Z, finished in place: at d = 2^18 a fresh d-vector costs about 0.8 ms of page
        # faults when first written (copies and temporaries made this step 5 ms), and a used segment buffer
        # serves as the scratch vector.
        sx, sxx, cxy = Z[:, 0], Z[:, 1], Z[:, 2:]
        if centred and W > 0:
            scratch = spare[:, 0] if spare is not None else np.empty(d)
            for j in range(k):
                # sum_i w_i (y_i - my) is zero up to round-off; removing m times it makes cxy exactly the co-moment.
                np.multiply(sx, se[j] / W, out=scratch)
                cxy[:, j] -= scratch
        return Moments(W, X.shape[0], sx, sxx, sy, cxy, ss, centred, ytop)
    zero, cxy, cyy = np.zeros(d), np.empty((d, k)), np.empty(k)
    first = chunk_pass(data, sqrt_w, 0, zero, 0.0, -1.0, squares=True, **options)
    for j in range(k):
        p = chunk_pass(data, sqrt_w, j, zero, 1.0, shift[j], **options)
        cxy[:, j] = p.z - (p.se / W) * first.z if centred and W > 0 else p.z
        cyy[j] = p.ss
    return Moments(W, X.shape[0], first.z, first.zz, sy, cxy, cyy, centred, ytop)


def _segments_of(data: Data) -> list[tuple[int, int]]:
    X = data.X
    return _segments(*X.shape, X.nnz if scipy.sparse.issparse(X) else X.shape[0] * X.shape[1])


def _in_segments(segs: list[tuple[int, int]], threads: int | None, run: Callable):
    """``run(start, stop)`` for each segment, in parallel threads; the results in segment order, whichever thread
    finished first."""
    threads = min(_closed_form._n_threads() if threads is None else threads, len(segs))
    if threads > 1:
        # The calling thread runs the first segment itself instead of waiting: one thread hand-off fewer a pass.
        futures = [_pool().submit(run, *seg) for seg in segs[1:]]
        return itertools.chain([run(*segs[0])], (f.result() for f in futures))
    return (run(*seg) for seg in segs)


def _segment_pass(data: Data, sqrt_w, start: int, stop: int, target: int, v, c: float, shift: float,
                  squares: bool, checked: bool, z: np.ndarray | None = None) -> Pass:
    X, Y = data.X, data.Y
    z = np.empty(v.shape[0]) if z is None else z
    zz = np.empty(v.shape[0]) if squares else None
    s = None if sqrt_w is None else sqrt_w[start:stop]
    if scipy.sparse.issparse(X):
        ss, se = _kernels.krylov_csr(X.data, X.indices, X.indptr[start : stop + 1], Y[start:stop], target, s, v,
                                     c, shift, z, zz, not checked)
    else:
        ss, se = _kernels.krylov_dense(X[start:stop], Y[start:stop], target, s, v, c, shift, z, zz)
    return Pass(z, ss, se, zz)


def segment_count(data: Data) -> int:
    """How many segments :func:`chunk_pass` cuts ``data``'s rows into (the rows of its ``parts`` buffer)."""
    return len(_segments_of(data))


def chunk_pass(data: Data, sqrt_w, target: int, v: np.ndarray, c: float, shift: float,
               squares: bool = False, checked: bool = False, threads: int | None = None,
               parts: np.ndarray | None = None) -> Pass:
    """The fused pass over one chunk: fixed segments in parallel threads, summed in segment order.

    ``checked``: a CSR structure already checked (:func:`fastopt._kernels.csr_check`), so the kernel skips its
    own scan; ``threads``: the thread count, when the caller has looked it up once for many passes; ``parts``:
    a C-contiguous ``(segment_count(data), d)`` buffer that receives each segment's ``z`` in its row, returned
    unsummed as the result's ``z`` (the consumer sums them in row order within its own sweep, see
    :func:`fastopt._kernels.cgls_step`; one sweep and, with the buffer reused, the page faults of fresh 2 MiB
    vectors fewer a pass).
    """
    segs = _segments_of(data)
    if parts is not None and parts.shape != (len(segs), data.X.shape[1]):
        raise ValueError("chunk_pass: parts must have one row per segment")
    rows = {seg[0]: k for k, seg in enumerate(segs)}

    def run(start, stop):
        z = None if parts is None else parts[rows[start]]
        return _segment_pass(data, sqrt_w, start, stop, target, v, c, shift, squares, checked, z)

    results = _in_segments(segs, threads, run)
    total = None
    for part in results:  # in segment order, whichever thread finished first
        if total is None:
            total = part
            if parts is not None:
                total.z = parts
        else:
            if parts is None:
                total.z += part.z
            total.ss += part.ss
            total.se += part.se
            if squares:
                total.zz += part.zz
    return total


def _check_csr(X) -> None:
    if X.indices.dtype != np.int32 or X.indptr.dtype != np.int32:
        raise ValueError("the Krylov kernels take CSR matrices with int32 indices and indptr.")


def check_structure(data: Data) -> None:
    """Check a CSR ``data.X`` once for the many passes that then skip their own scan (``checked=True``)."""
    if scipy.sparse.issparse(data.X):
        _check_csr(data.X)
        _kernels.csr_check(data.X.indices, data.X.indptr, data.X.shape[1])


class Passes:
    """Passes over data held in memory (dense, memory-mapped or CSR): the interface :func:`solve` uses.

    Other sources (a stream of chunks, Dask blocks) provide the same three members.
    """

    def __init__(self, data: Data, checked: bool = False):
        # Once here rather than in each of the many passes (about a tenth of a pass); not at all when the caller
        # has checked it (``checked``: validation's _check_sparse_structure, 1.7 ms at 6M entries).
        if not checked:
            check_structure(data)
        elif scipy.sparse.issparse(data.X):
            _check_csr(data.X)
        self.data = data
        self.sqrt_w = _sqrt_weight(data.sample_weight)
        self.n_targets = data.Y.shape[1]
        # Looked up once per fit: the BLAS thread limit in force when the fit starts (threadpoolctl) applies.
        self.options = {"checked": True, "threads": _closed_form._n_threads()}
        self._parts = None

    def moments(self, centred: bool) -> Moments:
        return chunk_moments(self.data, centred, **self.options)

    def fused(self, target: int, v: np.ndarray, c: float, shift: float) -> Pass:
        return chunk_pass(self.data, self.sqrt_w, target, v, c, shift, **self.options)

    def spread(self, cols: np.ndarray, m: np.ndarray) -> Spread:
        return chunk_spread(self.data, cols, m)

    def fused_parts(self, target: int, v: np.ndarray, c: float, shift: float) -> Pass:
        """:meth:`fused` with ``z`` its segments' parts, ``(S, d)``, unsummed: valid until the next call, which
        reuses the buffer."""
        if self._parts is None:
            self._parts = np.empty((segment_count(self.data), v.shape[0]))
        return chunk_pass(self.data, self.sqrt_w, target, v, c, shift, parts=self._parts, **self.options)


# ---------------------------------------------------------------- the operator and the two methods


# A column whose centred sum of squares, sum w x^2 - W m^2 from the moments, is at most this fraction of
# sum w x^2 may be constant: the subtraction cancels (naive sums of n terms round by up to ~n eps), so below a
# relative spread of about 5e-7 of the mean the moments cannot tell. A pass over the data then decides
# (centred_verdict).
CANCELLED_RTOL = 2.0**10 * np.finfo(np.float64).eps


# Rows a slab of chunk_spread (a dense copy of its candidate columns: SPREAD_CELLS // k rows of k columns).
SPREAD_CELLS = 2**21


@dataclass
class Spread:
    """Columns' weighted deviations from given means ``m``: ``s1 = sum w (x - m)``, ``s2 = sum w (x - m)^2``."""

    s1: np.ndarray
    s2: np.ndarray

    def __add__(self, other: Spread) -> Spread:
        return Spread(self.s1 + other.s1, self.s2 + other.s2)


def chunk_spread(data: Data, cols: np.ndarray, m: np.ndarray) -> Spread:
    """:class:`Spread` of columns ``cols`` of one chunk of validated rows (dense or CSR, implicit zeros
    included), by slabs of rows copied dense (``SPREAD_CELLS`` entries at a time)."""
    X, k = data.X, cols.size
    if scipy.sparse.issparse(X):
        X = X[:, cols]  # (those columns' stored values only; slabs of all columns had copied the whole matrix)
        cols = slice(None)
    w = None if data.sample_weight is None else np.asarray(data.sample_weight, dtype=np.float64)
    s1, s2 = np.zeros(k), np.zeros(k)
    step = max(1, SPREAD_CELLS // max(k, 1))
    for r0 in range(0, X.shape[0], step):
        r1 = min(X.shape[0], r0 + step)
        slab = X[r0:r1].toarray() if scipy.sparse.issparse(X) else X[r0:r1, cols]
        dev = np.asarray(slab, dtype=np.float64) - m
        wdev = dev if w is None else dev * w[r0:r1, None]
        s1 += wdev.sum(axis=0)
        s2 += np.einsum("ij,ij->j", wdev, dev)
    return Spread(s1, s2)


def centred_verdict(passes, mom: Moments, colsq: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """With an intercept: the columns whose centred norms from the moments, ``colsq`` (``sum w x^2 - W m^2``),
    cancel below what they resolve (``CANCELLED_RTOL``), which of them are constant to round-off by the closed
    form's rule (:func:`fastopt._closed_form.constant_columns`: a centred sum of squares at most
    ``(CONSTANT_RTOL m)^2 W``), and their centred sums of squares. Where there are such columns, one read of the
    data (``passes.spread``: their deviations from the moments' means ``m``, summed as ``x - m`` row by row, no
    cancellation) gives ``sum w (x - xbar)^2 = s2 - s1^2 / W``, which also corrects ``m``'s own rounding (at
    millions of rows it exceeds the rule's tolerance). A column of ``1e7 + t``, ``t`` of spread 1, keeps about 9
    digits of its spread: the moments had called it constant, and LSQR fitted it 0 (R^2 0 where the closed form
    had 0.997)."""
    candidates = np.flatnonzero((colsq <= CANCELLED_RTOL * mom.sxx) & (mom.sxx > 0))
    if not candidates.size:
        return candidates, np.zeros(0, dtype=bool), np.zeros(0)
    W = mom.weight
    m = mom.sx[candidates] / W
    spread = passes.spread(candidates, m)
    norms = np.maximum(spread.s2 - np.square(spread.s1) / W, 0.0)
    return candidates, norms <= _closed_form.CONSTANT_RTOL**2 * W * np.square(m), norms


def jacobi_pays(precondition: str, colsq: np.ndarray, diag: np.ndarray) -> bool:
    """Whether ``precondition`` ("auto" or "none") scales the columns (the Jacobi preconditioner).

    "auto" scales them when the norms ``sqrt(diag)`` of the columns that take part (``colsq > 0``; an empty
    column is decoupled and never enters the Krylov space) span more than the factor ``SCALE_SPREAD`` of the
    iterative solvers' ``precondition="auto"``. Below it the scaling can change the condition number by at most
    ``SCALE_SPREAD^2`` either way and, on nearly uniform columns, costs iterations: on the benchmark's hashed
    problem (norms spanning 3.1) it took CGLS and LSQR from 30 to 35 iterations at tol 1e-4, and to a less
    accurate answer.
    """
    if precondition == "none":
        return False
    used = colsq > 0
    if not used.any():
        return False
    # The extremes over the columns used, without gathering them into a new d-vector.
    top, bottom = np.max(diag, where=used, initial=-np.inf), np.min(diag, where=used, initial=np.inf)
    return float(top) > SCALE_SPREAD**2 * float(bottom)


class _Operator:
    """The scaled augmented operator ``[A D; lam D]`` of one target, over a :class:`Passes`-like source."""

    def __init__(self, passes, mom: Moments, target: int, params: dict, centred: tuple | None = None):
        """``centred``: :func:`centred_verdict` on these moments (the same for every target: :func:`solve` takes
        it from the first target's operator, ``self.verdict``), or None to find it here."""
        W = mom.weight
        self.passes, self.target = passes, target
        if params["fit_intercept"]:
            self.m, self.my = mom.sx / W, mom.sy[target] / W
        else:
            self.m, self.my = np.zeros_like(mom.sx), 0.0
        alpha = np.asarray(params["alpha"], dtype=np.float64)  # one alpha, or one per target
        self.lam2 = W * float(alpha[target if alpha.size > 1 else 0] if alpha.ndim else alpha)  # (length 1: all)
        # Column norms of A (centred, weighted): sum w x^2 - W m^2, clamped at zero against cancellation (the
        # preconditioner only needs them roughly). Formed in one buffer: at d = 2^18 every fresh d-vector costs
        # about 0.8 ms of page faults on first touch, against 0.03 ms for the arithmetic.
        colsq = np.multiply(self.m, self.m)
        colsq *= W
        np.subtract(mom.sxx, colsq, out=colsq)
        np.maximum(colsq, 0.0, out=colsq)
        # With an intercept, a column constant to round-off (centred_verdict: the moments' verdict, confirmed by
        # a read of the data where they cancel) is left out, D = 0 (coefficient 0, the minimum-norm choice):
        # scaled to unit norm its rounding noise fitted the residual's noise (0.1 in every row got -0.29 from
        # LSQR). A column the read finds not constant takes its centred norm, which the moments could not resolve.
        constant, self.verdict = None, None
        if params["fit_intercept"]:
            self.verdict = centred if centred is not None else centred_verdict(passes, mom, colsq)
            candidates, exact, norms = self.verdict
            colsq[candidates] = np.where(exact, 0.0, norms)
            if exact.any():
                constant = np.zeros(colsq.shape[0], dtype=bool)
                constant[candidates[exact]] = True
        diag = colsq + self.lam2
        jacobi = jacobi_pays(params.get("precondition", "auto"), colsq, diag)
        self.scaled = jacobi or constant is not None
        if jacobi:
            self.D = np.where(diag > 0, 1.0 / np.sqrt(np.where(diag > 0, diag, 1.0)), 1.0)
        elif self.scaled:
            self.D = np.ones(diag.shape[0])
        else:
            self.D = 1.0  # D = I: a number, so no d-vector of ones is formed or multiplied by
        if constant is not None:
            self.D[constant] = 0.0
            diag[constant] = 0.0
        self.centred = bool(params["fit_intercept"])
        self.L = np.sqrt(self.lam2) * self.D  # the diagonal lower block (a number when D = I)
        # D A^T b and ||b||^2, from the moments.
        self.Atb = self.D * mom.cxy[:, target]
        self.bb = float(mom.cyy[target])
        # ||[A D; lam D]||_F, from the same norms: each scaled column has norm 1 (an empty one, without the
        # ridge, 0). The stopping rules' norm until an iteration has estimated it (_Stopping).
        self.frobenius = math.sqrt(float(np.count_nonzero(diag > 0)) if jacobi else float(np.sum(diag)))
        self.passes_made = 0

    def apply(self, g: np.ndarray, c: float):
        """One fused pass: ``(||A D g + c b||^2, D A^T (A D g + c b))``."""
        ss, out, _ = self._pass(g, c, in_place=False)
        return ss, out

    def _pass(self, g: np.ndarray, c: float, in_place: bool):
        """:meth:`apply`, and a spare d-vector or None. ``in_place``: in memory, the result is the passes' reused
        parts buffer summed into its first row (valid until the next pass) and the spare one of its other rows,
        so that no fresh d-vector is made (about 0.8 ms of page faults each at d = 2^18); the same arithmetic."""
        # Each d-vector operation skipped counts at d = 2^18 (about 2% of an iteration): D = I and m = 0 are not
        # applied, and the pass's own vector is updated in place.
        v = self.D * g if self.scaled else g
        shift = (_dot(self.m, v) if self.centred else 0.0) + c * self.my
        spare = None
        if in_place and hasattr(self.passes, "fused_parts"):
            p = self.passes.fused_parts(self.target, v, c, shift)
            out = p.z[0]
            for part in p.z[1:]:  # in segment order, as chunk_pass sums them
                out += part
            spare = p.z[1] if p.z.shape[0] > 1 else None
        else:
            p = self.passes.fused(self.target, v, c, shift)
            out = p.z
        self.passes_made += 1
        if p.se != 0.0 and self.centred:
            out -= np.multiply(self.m, p.se, out=spare) if spare is not None else p.se * self.m
        if self.scaled:
            out *= self.D
        return p.ss, out, spare

    def raw(self, g: np.ndarray, mg: float, c: float = 0.0):
        """Without the scaling (``D = I``): one pass with ``v = g`` given ``mg = m . g``; returns, with
        ``a = A g + c b``, ``(||a||^2, Z, sum_i s_i a_i)`` where ``Z`` (S, d) holds parts summing, in row order,
        to ``X^T (S a)``, uncentred (``A^T a`` is it minus the last times ``m``); ``Z`` is valid until the next
        pass."""
        shift = mg + c * self.my
        if hasattr(self.passes, "fused_parts"):
            p = self.passes.fused_parts(self.target, g, c, shift)
        else:  # a source whose passes arrive summed (a stream, Dask): one part
            p = self.passes.fused(self.target, g, c, shift)
            p.z = p.z[None, :]
        self.passes_made += 1
        return p.ss, p.z, p.se

    def normal_residual(self, x: np.ndarray) -> tuple[np.ndarray, float]:
        """``(D (A^T (b - A D x)) - lam^2 D^2 x, ||[b; 0] - [A D; lam D] x||)``: the scaled normal-equation residual
        and the residual's norm, by one true pass.

        In memory the first is a view of the passes' parts buffer (valid until the next pass), formed in place
        (:meth:`_pass`)."""
        ss, out, spare = self._pass(-x, 1.0, in_place=True)
        scratch = np.multiply(x, self.L, out=spare)
        ss += _dot(scratch, scratch)  # the lower block's residual, -L x
        scratch *= self.L
        out -= scratch
        return out, math.sqrt(ss)


def _diagonal(op: _Operator, diag: np.ndarray) -> tuple[np.ndarray | None, float]:
    """A diagonal of the ridge block (``L`` or ``L^2``) as the sweep kernels take it: ``(None, 0.0)`` without a
    ridge, ``(None, its entry)`` when every entry is the same (no scaling: ``D = I``), else ``(diag, 0.0)``."""
    if not op.lam2 > 0:
        return None, 0.0
    if not op.scaled:
        return None, float(diag)  # D = I: L and L^2 are numbers
    return diag, 0.0


class _Stopping:
    """LSQR's stopping rules (Paige & Saunders 1982, sec. 6; ``scipy.sparse.linalg.lsqr`` with
    ``atol = btol = tol``) on the scaled augmented problem ``min ||[b; 0] - [A D; lam D] z||``, with
    ``A_bar = [A D; lam D]`` and ``r = [b; 0] - A_bar z``:

    * S2, a least-squares solution: ``||A_bar^T r|| <= tol ||B_k||_F ||r||``, the residual at most an angle of
      about ``tol`` off the normal to the range of ``A_bar``;
    * S1, a compatible system (``r`` reaching 0): ``||r|| <= tol (||b|| + ||B_k||_F ||z||)``; only without a
      ridge. With one, ``r = [b - A z; -lam z]`` never reaches 0, and S1 would stop wherever ``lam ||z||`` and the
      data residual are both below ``tol ||b||``, before the ridge has chosen among near-interpolants (a wide
      fuzz problem, 3 rows and 16 columns at ``alpha = 1e-3``: coefficients 57% apart between two runs that
      SciPy's rules would both accept). So ridge fits stop on S2 alone, stricter than SciPy there.

    ``||B_k||_F`` is LSQR's estimate of ``||A_bar||_F``: the Frobenius norm of the bidiagonal matrix of the first
    ``k`` iterations, ``sum_i alpha_i^2 + beta_(i+1)^2``, which SciPy's ``anorm`` accumulates. CGLS runs the same
    Lanczos process on ``A_bar^T A_bar`` (whose tridiagonal matrix is ``B_k^T B_k``), so it accumulates the same
    quantity as the trace, ``sum_i 1 / step_i + beta_(i-1) / step_(i-1)`` (Saad, *Iterative Methods for Sparse
    Linear Systems*, 2003, sec. 6.7.3). It grows towards ``||A_bar||_F`` from below (``V_k`` has orthonormal
    columns), which keeps the rules strict early on; the relative excess of the objective at an S2 stop is at most
    ``t^2 / (1 - t^2)``, ``t = tol ||A_bar||_F / sigma_min(A_bar)`` (with ``||A_bar^T r|| >= sigma_min ||A_bar e||``
    and ``||r||^2 = ||r*||^2 + ||A_bar e||^2``).

    Either rule bounds the backward error: ``z`` solves a problem whose data differ by about ``tol`` relative.
    Unlike a test relative to the gradient at zero (``||A_bar^T r|| <= tol ||A_bar^T b||``), S2 does not loosen
    when the model explains most of ``b``: with columns far from centred (means much larger than their spread, and
    no intercept to absorb them) ``A^T b`` is large along one direction, and that test stopped CGLS and LSQR after
    two iterations at an objective 4,000 times the optimum, without a warning.

    ``||z||`` takes a ``d``-vector pass, which the recurrences do not carry: :meth:`may_meet` tests S1 on the norm
    last computed (recomputed every ``XNORM_EVERY`` calls), and :meth:`met` decides on the current one; the final
    true pass (:func:`solve`) confirms. A restart keeps the larger of its own and the earlier estimate of
    ``||A_bar||_F``. Before the first iteration (a warm start or ``coef_init`` that may be converged already) the
    rules take ``||A_bar||_F`` itself, exact from the column norms, for which the bound above holds as well."""

    XNORM_EVERY = 10

    def __init__(self, op: _Operator, tol: float | None, method: str):
        # tol None (or below machine precision): the rules at machine precision (MACHINE_TOL)
        self.machine = tol is None or tol < MACHINE_TOL
        # _unresolved's guard: at machine precision, and for CGLS at any tol, whose recurred ||r|| (a difference
        # of squares) stops resolving near RESOLVED of its start. Below that a tol of 1e-10 ran CGLS on rounding
        # noise: coefficients of 1e13 on a 20 x 1486 sparse system that S1 then accepted, since ||z|| had grown.
        self.limited = self.machine or method == "cg"
        tol = MACHINE_TOL if self.machine else tol
        # _unresolved's S2 floor: LSQR at machine precision (CGLS stops at a null direction instead, _cgls; there
        # the floor cost digits: a condition of 1e7 ended 2e-6 from the closed form, against 1e-8 without it)
        self.s2_floor = S2_RESOLVED if self.machine and method == "lsqr" else 0.0
        self.tol, self.bnorm = tol, math.sqrt(op.bb)
        self.rstart = self.bnorm  # ||r|| where the current run (or restart) began: _unresolved's scale
        self.tri, self.smin = ([], []), math.inf
        self.compatible = not op.lam2 > 0  # S1's case: with a ridge, r = [b - A z; -lam z] never reaches 0
        self.anorm, self.estimated = op.frobenius, False
        self.xnorm, self.age = 0.0, self.XNORM_EVERY

    def estimate(self, bk2: float) -> None:
        """Take ``||B_k||_F^2`` of the current run (see the class docstring)."""
        bk = math.sqrt(bk2)
        self.anorm, self.estimated = (max(self.anorm, bk) if self.estimated else bk), True

    def _holds(self, arnorm: float, rnorm: float, xnorm: float) -> bool:
        """S2, or (without a ridge) S1 with ``||z|| = xnorm``."""
        tol = self.tol
        return arnorm <= tol * self.anorm * rnorm or (
            self.compatible and rnorm <= tol * (self.bnorm + self.anorm * xnorm))

    def begin(self, rnorm: float) -> None:
        """A run (or restart) begins where ``||r|| = rnorm`` (exactly: computed, not recurred)."""
        self.rstart = rnorm
        self.smin = self.sigma_min()  # (the least of the earlier runs')
        self.tri = ([], [])  # this run's Lanczos tridiagonal (lanczos)

    def lanczos(self, diag: float, off: float) -> None:
        """Take the run's next diagonal entry of ``T_k = B_k^T B_k`` and the off-diagonal entry after it."""
        self.tri[0].append(diag)
        self.tri[1].append(off)

    def sigma_min(self) -> float:
        """The run's estimate of ``sigma_min(A_bar)`` on the Krylov space it searched: the square root of the least
        Ritz value of ``A_bar^T A_bar`` (the least eigenvalue of ``T_k``, which converges to it from above; Paige
        & Saunders 1982, sec. 5.3), or an earlier run's if less. ``T_k`` holds squares, so values below about
        ``sqrt(eps) ||A_bar||`` read as rounding; inf before any iteration (no estimate: nothing bounded), 0 where
        an entry is not finite."""
        diag, off = self.tri
        if not diag:
            return self.smin
        diag, off = np.array(diag), np.array(off[:-1])
        if not (np.isfinite(diag).all() and np.isfinite(off).all()):  # (no estimate: the check then runs on)
            return 0.0
        lam = scipy.linalg.eigvalsh_tridiagonal(diag, off, select="i", select_range=(0, 0), check_finite=False)[0]
        return min(math.sqrt(max(lam, 0.0)), self.smin)

    def _unresolved(self, rnorm: float, arnorm: float) -> bool:
        """At machine precision, or for CGLS, whether the recurrence's ``||r||`` is below what it resolves
        (CGLS's is a difference of squares, good to about ``sqrt(eps)`` of its value at the run's start), or, for
        LSQR at machine precision, S2's ratio within ``S2_RESOLVED`` (the rounding of ``A^T r``): only a true pass
        can tell the rules then (the caller's confirming pass, which restarts from an exact residual); run on, the
        recurrences turned rounding noise into steps."""
        return (self.limited and rnorm <= RESOLVED * self.rstart) or arnorm <= self.s2_floor * self.anorm * rnorm

    def may_meet(self, arnorm: float, rnorm: float, x: np.ndarray) -> bool:
        """S2, or S1 on the last ``||z||`` (``x`` the current or the previous iterate): whether to call
        :meth:`met`."""
        if self._unresolved(rnorm, arnorm):
            return True
        if self.age >= self.XNORM_EVERY:
            self.xnorm, self.age = math.sqrt(_dot(x, x)), 0
        self.age += 1
        return self._holds(arnorm, rnorm, self.xnorm)

    def met(self, arnorm: float, rnorm: float, x: np.ndarray, exact: bool = False) -> bool:
        """Whether S1 or S2 holds at ``x``, whose ``||A_bar^T r||`` is ``arnorm`` and ``||r||`` is ``rnorm``
        (``||z||`` is computed only when S1 depends on it); from a recurrence (not ``exact``), also where its
        ``||r||`` is unresolved, for the true pass to decide."""
        if not exact and self._unresolved(rnorm, arnorm):
            return True
        if self._holds(arnorm, rnorm, 0.0):
            return True
        if not self.compatible:
            return False
        self.xnorm, self.age = math.sqrt(_dot(x, x)), 1
        return self._holds(arnorm, rnorm, self.xnorm)

    def ratio(self, arnorm: float, rnorm: float) -> float:
        """S2's ratio ``||A_bar^T r|| / (||B_k||_F ||r||)`` (0 at an exact solution), for the log."""
        return arnorm / (self.anorm * rnorm) if self.anorm * rnorm > 0 else 0.0


def _check_start(rr: float) -> None:
    """Refuse a start (``coef_init``, a warm start) whose squared residual ``rr`` overflows: the stopping rules
    compared infinities and returned the start itself, unwarned (the moments have checked X and y)."""
    if not math.isfinite(rr):
        raise ValueError(
            "the squared_error loss at the starting coefficients (coef_init, or the earlier fit's) overflows "
            "float64; start nearer the data's scale."
        )


def _cgls(op: _Operator, x: np.ndarray, stop: _Stopping, max_iter: int, log=None):
    """CGLS on the augmented operator from ``x`` (updated in place: the caller owns it, see :func:`solve`);
    returns ``(x, iterations, converged)``."""
    L2 = op.L * op.L
    if x.any():
        rr, Atr = op.apply(-x, 1.0)
        s = Atr - L2 * x
        Lx = op.L * x
        rr += _dot(Lx, Lx)
        _check_start(rr)
    else:  # from zero the residual is D A^T b, known from the moments: no pass
        s, rr = op.Atb.copy(), op.bb
    gamma = _dot(s, s)
    stop.begin(math.sqrt(rr))
    if stop.met(math.sqrt(gamma), math.sqrt(rr), x, exact=True):  # a warm start may already be converged
        return x, 0, True
    # The ridge block's squared diagonal: without the scaling every entry is the same lam^2 (one number, so the
    # sweeps read one array fewer); none without a ridge.
    L2, lam2 = _diagonal(op, L2)
    # Without the scaling (D = I) the pass takes p itself and the centring is applied by the fused update, which
    # also returns the next pass's shift m . p; with it, apply() scales and centres.
    m = op.m if op.centred and not op.scaled else None
    p = np.zeros_like(s)
    _, pLp = _kernels.cgls_direction(0.0, s, p, None, L2, lam2)  # p = s, and ||L p||^2
    mp = _dot(m, p) if m is not None else 0.0
    it, bk2, lanczos = 0, 0.0, 0.0
    # The d-vector updates run fused in two C sweeps (cgls_step, cgls_direction), which also sum the pass's
    # segment parts: at d = 2^18 each NumPy operation is a 2 MiB sweep, and an iteration made fourteen.
    while it < max_iter:
        if gamma == 0.0:
            return x, it, True
        if op.scaled:
            qq, AtAp = op.apply(p, 0.0)
            Z, se = AtAp[None, :], 0.0
        else:
            qq, Z, se = op.raw(p, mp)
        qq += pLp
        if qq == 0.0:
            return x, it, True
        # A direction the operator maps to (about) its rounding (||A_bar p|| <= NULL_DIRECTION ||A_bar||_F ||p||) is
        # an exactly dependent column's null direction, not a curvature: its step only grows z. Run past their
        # accuracy (tol None on one-hot columns beside an intercept, S2's ratio resting at 3 eps; tol 1e-12 under
        # weights spread 1e8), CGLS took such steps to coefficients of 1e16, which S1 then accepted: objectives 80
        # to 2.5e6 times the optimum, silently. It stops there, for the confirming pass to judge.
        if qq <= (NULL_DIRECTION * stop.anorm) ** 2 * _dot(p, p):
            return x, it, True
        step = gamma / qq
        if step == 0.0:  # gamma^2 / ||A p||^2 underflowed (an exact solution, tol=None or 0): x cannot move
            return x, it, True
        # x += step p; A^T r_new = A^T r - step A^T A p: no second pass (module docstring). And
        # ||r_new||^2 = ||r||^2 - 2 step r . A p + step^2 ||A p||^2 = ||r||^2 - gamma^2 / ||A p||^2, since
        # r . A p = (A^T r) . p = gamma (Hestenes & Stiefel 1952): the stopping rules' ||r|| without a pass.
        gamma_new = _kernels.cgls_step(step, Z, se, m, L2, p, x, s, lam2)
        rr = max(rr - gamma * step, 0.0)
        # ||B_k||_F^2: the Lanczos tridiagonal's diagonal, 1 / step_k + beta_(k-1) / step_(k-1) (_Stopping)
        diag = 1.0 / step + lanczos
        bk2 += diag
        stop.estimate(bk2)
        stop.lanczos(diag, math.sqrt(gamma_new / gamma) / step)
        lanczos = (gamma_new / gamma) / step  # beta_k / step_k, the next diagonal entry (gamma * step may underflow)
        it += 1
        arnorm, rnorm = math.sqrt(gamma_new), math.sqrt(rr)
        if log is not None:
            log(it, arnorm, rnorm)
        if stop.may_meet(arnorm, rnorm, x) and stop.met(arnorm, rnorm, x):
            return x, it, True
        mp, pLp = _kernels.cgls_direction(gamma_new / gamma, s, p, m, L2, lam2)
        gamma = gamma_new
    return x, it, False


def _lsqr(op: _Operator, x0: np.ndarray, stop: _Stopping, max_iter: int, log=None):
    """LSQR (Paige & Saunders 1982) on the augmented operator from ``x0`` (updated in place, as in :func:`_cgls`);
    returns ``(x, iterations, converged)``.

    ``u`` is carried as ``(g, gamma, ub)`` with ``u = [A D g + gamma b; ub]`` (module docstring).
    """
    ridge = op.lam2 > 0  # without it the lower block of u is zero throughout
    g, gam, ub = -x0, 1.0, -op.L * x0
    if x0.any():
        ss, Atu = op.apply(g, gam)
        _check_start(ss + _dot(ub, ub))
    else:  # from zero u = b: ||b||^2 and D A^T b are known from the moments, no pass
        ss, Atu = op.bb, op.Atb
    beta = math.sqrt(ss + _dot(ub, ub))
    stop.begin(beta)
    x = x0
    if beta == 0.0:
        return x, 0, True
    g, gam, ub, Atu = g / beta, gam / beta, ub / beta, Atu / beta
    v = Atu + op.L * ub
    alpha = math.sqrt(_dot(v, v))
    if alpha == 0.0 or stop.met(alpha * beta, beta, x, exact=True):  # ||A^T r_0|| = alpha beta, ||r_0|| = beta
        return x, 0, True
    v /= alpha
    w = v.copy()
    phibar, rhobar = beta, alpha
    L, lam = _diagonal(op, op.L)  # as in _cgls: a number when every entry is the same
    ub = ub if ridge else None
    m = op.m if op.centred and not op.scaled else None  # as in _cgls: without the scaling, centred by the sweeps
    it, bk2 = 0, 0.0
    # The d-vector updates run fused in two C sweeps an iteration (lsqr_after, then lsqr_next: the end of one
    # iteration with the start of the next), the first of which also sums the pass's segment parts: at d = 2^18
    # each NumPy operation is a 2 MiB sweep, and an iteration made over twenty.
    mg, uu = _kernels.lsqr_before(alpha, v, L, g, ub, m, lam)
    while it < max_iter:
        # Bidiagonalisation: beta u = A v - alpha u (one pass), alpha v = A^T u - beta v.
        gam *= -alpha
        if op.scaled:
            ss, Atu = op.apply(g, gam)
            Z, se = Atu[None, :], 0.0
        else:
            ss, Z, se = op.raw(g, mg, gam)
        beta = math.sqrt(ss + uu)
        bdiv = beta if beta > 0.0 else 1.0
        gam /= bdiv
        if beta > 0.0:  # ||B_k||_F^2, as SciPy's anorm (_Stopping)
            bk2 += alpha * alpha + beta * beta
            stop.estimate(bk2)
        alpha_k = alpha
        alpha = math.sqrt(_kernels.lsqr_after(beta, bdiv, se, m, Z, g, ub, L, v, lam))
        stop.lanczos(alpha_k * alpha_k + beta * beta, alpha * beta)  # T_k = B_k^T B_k, B_k lower bidiagonal
        # Plane rotation eliminating the subdiagonal beta (as scipy.sparse.linalg.lsqr with damp = 0).
        rho = math.hypot(rhobar, beta)
        cs, sn = rhobar / rho, beta / rho
        theta, rhobar = sn * alpha, -cs * alpha
        phi, phibar = cs * phibar, sn * phibar
        it += 1
        # LSQR's estimates of ||A^T r_k|| and ||r_k|| (the damping is in the operator: phibar is the augmented
        # residual's norm)
        arnorm = alpha * abs(cs) * phibar
        if log is not None:
            log(it, arnorm, phibar)
        # v /= alpha, x += (phi / rho) w, w = v - (theta / rho) w; then, unless done, the next g and ub.
        update = (alpha if alpha > 0.0 else 1.0, phi / rho, -(theta / rho), v, x, w)
        if alpha == 0.0 or beta == 0.0 or it == max_iter or stop.may_meet(arnorm, phibar, x):
            _kernels.lsqr_update(*update)  # x_k, on which the rules decide (S1 with its norm)
            if alpha == 0.0 or beta == 0.0 or stop.met(arnorm, phibar, x):
                return x, it, True
            if it == max_iter:
                return x, it, False
            mg, uu = _kernels.lsqr_before(alpha, v, L, g, ub, m, lam)  # (v normalised by the update)
            continue
        mg, uu = _kernels.lsqr_next(*update, alpha, L, g, ub, m, lam)
    return x, it, False


METHODS = {"cg": _cgls, "lsqr": _lsqr}
# The stopping rules' tolerance under tol=None (or below it): SciPy's istop 4 and 5. Run on past them, CGLS's
# recurrences turned rounding noise into steps (a 3 x 5 exact system ended with coefficients of 1e16).
MACHINE_TOL = float(np.finfo(np.float64).eps)
RESOLVED = 16 * math.sqrt(MACHINE_TOL)  # (_Stopping._unresolved)
# (_Stopping._unresolved) S2's ratio at tol=None rests at one to a few eps on a design with an exactly dependent
# column (its A^T r is rounding); LSQR run on from there lost its v vectors' orthogonality and stepped along the
# null direction, to coefficients of 1e9-1e13 (objective up to 3e-3 above the optimum, silently; 10 of 1,600 CSR
# fits of dependent designs). Below this ratio the recurrence hands over to the confirming pass.
S2_RESOLVED = 4 * MACHINE_TOL
# (_cgls) A CGLS direction p with ||A_bar p|| below this times ||A_bar||_F ||p|| is numerically null: full-rank
# columns give at least 1 / (cond sqrt(d)), so only conditions beyond about 1e10 / sqrt(d) are taken for
# dependence, where CGLS, which works with cond^2, has no digit left. At 64 eps instead, steps on rounding noise
# still grew the coefficients to 1e9-1e11 on 15 of 160 dependent designs (the objective 1e-7 to 1.6e-5 above the
# optimum); at 1e-10 none, and a condition of 1e7 at tol=None still reaches the closed form's coefficients.
NULL_DIRECTION = 1e-10
MAX_RESTARTS = 3


def solve(method: str, params: dict, passes, state: KrylovState | None = None,
          moments: Moments | None = None, quiet: bool = False) -> FitResult | None:
    """Fit every target with ``method`` ("cg" or "lsqr") over ``passes`` (see :class:`Passes`).

    Returns
    -------
    FitResult or None
        ``coef`` (k, d) and ``intercept`` (k,) in float64 (the caller casts); ``attrs``: ``solver_``,
        ``n_iter_`` (the most iterations any target took). With ``quiet``, None instead of a ConvergenceWarning
        when a target does not meet ``tol`` within ``max_iter``.
    """
    mom = passes.moments(bool(params["fit_intercept"])) if moments is None else moments
    if not mom.weight > 0:
        raise ValueError("sample_weight sums to zero; at least one sample must have positive weight.")
    if not all(np.isfinite(a).all() for a in (mom.sx, mom.sxx, mom.sy, mom.cxy, mom.cyy)):
        raise ValueError("the weighted column sums of squares of X or y overflow float64; rescale X and y.")
    _check_target_scales(mom)
    d, k = mom.sx.shape[0], mom.sy.shape[0]
    # an alpha array of another length (streams and Dask check before the targets are known; _Operator indexes it)
    from fastopt import _solvers  # (the registry imports this module)

    _solvers.check_options(method, params, k)
    tol, accuracy = params["tol"], params.get(ACCURACY_KEY)
    max_iter = params.get("max_iter")
    max_iter = default_max_iter(d) if max_iter is None else int(max_iter)
    coef, intercept, n_iter, failed = np.zeros((k, d)), np.zeros(k), 0, []
    centred = None
    for j in range(k):
        op = _Operator(passes, mom, j, params, centred)
        centred = op.verdict
        ref = math.sqrt(_dot(op.Atb, op.Atb))
        x = np.zeros(d)
        if state is not None and state.coef.shape == (k, d):
            x = np.divide(state.coef[j], op.D, out=np.zeros(d), where=op.D != 0)  # (D = 0: a constant column)
        used, converged = 0, ref == 0.0 and not x.any()
        target_tol, check, runs = tol, accuracy, MAX_RESTARTS + 1
        stop = _Stopping(op, tol, method)
        while runs > 0:
            runs -= 1
            if converged or used >= max_iter:
                break
            log = None
            if params.get("verbose"):
                def log(it, arnorm, rnorm, j=j, base=used, stop=stop):
                    print(f"{method} target {j} iteration {base + it}: ||A^T r|| / (||A|| ||r||) = "
                          f"{stop.ratio(arnorm, rnorm):.3e}, ||r|| / ||b|| = "
                          f"{rnorm / stop.bnorm if stop.bnorm > 0 else 0.0:.3e}")
            x, it, converged = METHODS[method](op, x, stop, max_iter - used, log)
            used += it
            if converged:  # (under tol=None too: the recurrence's ||r|| may have cancelled to 0)
                # Recurrences drift from the true residual: confirm with one true pass, else restart from x.
                res, rnorm = op.normal_residual(x)
                arnorm = math.sqrt(_dot(res, res))
                converged = stop.met(arnorm, rnorm, x, exact=True)
                if converged and check is not None and _inaccurate(stop, arnorm, check):
                    # On to machine precision from here, as tol=None runs, within the iterations left. Whether or
                    # not its true passes confirm the rules there (the rounding of A^T r may not let them) or its
                    # iterations run out, x is kept: each run minimises ||r|| over x plus its Krylov space, and
                    # the predictions' error is sqrt(||r||^2 - ||r*||^2), so it only moves closer.
                    target_tol, check, runs, converged = None, None, MAX_RESTARTS + 1, False
                    stop = _Stopping(op, None, method)
        if not converged and target_tol is not None:
            failed.append((j, used >= max_iter))
        coef[j] = op.D * x
        intercept[j] = op.my - _dot(op.m, coef[j])
        n_iter = max(n_iter, used)
    if not (np.isfinite(coef).all() and np.isfinite(intercept).all()):
        raise ValueError(f"solver={method!r} produced non-finite coefficients (overflow in float64); rescale X and y.")
    if failed and quiet:
        return None
    if failed:
        rules = "LSQR's stopping rules: ||A^T r|| <= tol ||A|| ||r||, or ||r|| <= tol (||b|| + ||A|| ||coef||)"
        ran_out = [j for j, out in failed if out]
        unconfirmed = [j for j, out in failed if not out]
        other = "solver='lsqr' or the closed form" if method == "cg" else "the closed form"
        if ran_out:
            _warn(
                f"solver={method!r} did not reach tol={tol} ({rules}) within max_iter={max_iter} iterations for "
                f"target(s) {ran_out}; increase max_iter, or use {other} for an ill-conditioned problem.",
                ConvergenceWarning,
            )
        if unconfirmed:  # the recurrences met tol, MAX_RESTARTS true passes did not: round-off, not iterations
            _warn(
                f"solver={method!r} met tol={tol} ({rules}) in its recurrences but not in the confirming pass over "
                f"the data, {MAX_RESTARTS} restarts running, for target(s) {unconfirmed}: the round-off of the data "
                "(targets far from zero, columns far from centred) exceeds what tol asks. Raise tol, centre y, or "
                "use the closed form.",
                ConvergenceWarning,
            )
    if not params["fit_intercept"]:
        intercept[:] = 0.0
    return FitResult(coef, intercept, KrylovState(coef.copy()), {"solver_": method, "n_iter_": n_iter})


# X whose columns' root mean squares lie beyond 2^X_SCALE_LIMIT (or within 2^-X_SCALE_LIMIT of zero), or y beyond
# 2^Y_SCALE_LIMIT, is rescaled by a power of two (exact) before a Krylov solve: CGLS's recurrences hold up to the
# fourth power of X's scale, and the moments' sums of squares under- or overflowed further out. y of 1e-200, or X
# of 1e-200, returned zero coefficients, silently (CGLS already at X of 1e+-100, warned).
X_SCALE_LIMIT, Y_SCALE_LIMIT = 64, 128


def _squares_lost(mom) -> bool:
    """Whether the moments' sums of squares of ``X`` under- or overflowed (a column with a nonzero sum and a zero
    or infinite sum of squares)."""
    return bool(np.any((mom.sxx == 0) & (mom.sx != 0)) or not np.all(np.isfinite(mom.sxx)))


def _x_exponent(X, mom) -> int:
    """The power of two to divide ``X`` by (0: none): the exponent of its columns' largest root mean square from
    the moments when beyond ``2^X_SCALE_LIMIT`` either way, or, where the moments' sums of squares under- or
    overflowed (a column with a nonzero sum and a zero or infinite sum of squares), of its largest magnitude."""
    if _squares_lost(mom):
        return _exponent(X, 0)
    top = float(np.sqrt(np.max(mom.sxx, initial=0.0) / mom.weight)) if mom.weight > 0 else 0.0
    e = int(np.frexp(top)[1]) if top > 0 and np.isfinite(top) else 0
    return e if abs(e) > X_SCALE_LIMIT else 0


def _target_exponents(Y: np.ndarray) -> np.ndarray:
    """Per target, the power of two to divide ``Y[:, j]`` by so that its largest magnitude is near 1, when that
    lies beyond ``2^Y_SCALE_LIMIT`` or within ``2^-Y_SCALE_LIMIT`` of zero; else 0. Each target is its own
    Krylov run, so each takes its own factor: one factor for all, from the largest, left a target of 1e-200
    beside one of 1 unscaled, and its run returned zero coefficients, silently."""
    e = _closed_form._pow2_exponent(Y, axis=0).astype(int)  # (0 for an all-zero column)
    return np.where(np.abs(e) > Y_SCALE_LIMIT, e, 0)


def _check_target_scales(mom: Moments) -> None:
    """Refuse a target whose values lie beyond ``2^Y_SCALE_LIMIT`` (or within ``2^-Y_SCALE_LIMIT`` of zero),
    where the runs' sums of squares over- or underflow: the fit in memory has rescaled them by then
    (:meth:`KrylovSolver._solve`), a stream's or Dask array's chunks are not (their runs returned zero
    coefficients for targets of 1e-200, silently)."""
    if mom.ytop is None:
        return
    for j in np.flatnonzero(_target_exponents(mom.ytop[None, :])):
        raise ValueError(
            f"y column {j} has values too large or too small to square in float64 (largest magnitude "
            f"{mom.ytop[j]:.3g}): the Krylov solvers' sums of squares would over- or underflow; multiply y by a "
            "power of ten to bring its values nearer 1 (the fit with all of X and y in memory does this itself)."
        )


def _exponent(A, limit: int) -> int:
    """The power of two to divide ``A`` (dense or sparse) by so that its largest magnitude is near 1, when that
    lies beyond ``2^limit`` or within ``2^-limit`` of zero; else 0."""
    e = int(_closed_form._pow2_exponent(A.data if scipy.sparse.issparse(A) else A))  # (0 for 0, inf or NaN)
    return e if abs(e) > limit else 0


def _rescaled(data: Data, ex: int, ey: np.ndarray) -> Data:
    """``data`` with ``X`` divided by ``2^ex`` and each target ``Y[:, j]`` by ``2^ey[j]`` (copies of the values;
    exact but for subnormals)."""
    X = _closed_form._scaled_X(data.X, ex) if ex else data.X
    Y = np.ldexp(data.Y, -ey).astype(data.Y.dtype) if np.any(ey) else data.Y
    return dataclasses.replace(data, X=X, Y=Y)


def _weighted_rows(data: Data, mom) -> Data:
    """``data`` without its rows of weight zero (a copy of the others), which the objective does not see, where
    they would change the scale tests or the moments ``mom``: those read every row, and a zero-weight row holding
    y = 1e200 rescaled the others' targets to zero (zero coefficients, silently), one holding x = 1e200 made its
    weighted squares 0 * inf (a false overflow error). Otherwise ``data`` itself (no copy of ``X``)."""
    w = data.sample_weight
    if w is None:
        return data
    keep = w > 0
    if keep.all() or not keep.any():  # (no weight at all: the moments' clear error)
        return data
    finite = all(np.isfinite(a).all() for a in (mom.sx, mom.sxx))
    Y = np.abs(data.Y)
    if finite and not _squares_lost(mom) and np.max(Y[~keep]) <= np.max(Y[keep]):  # (the y scale test's maximum)
        return data
    rows = np.flatnonzero(keep)
    return dataclasses.replace(data, X=data.X[rows], Y=np.ascontiguousarray(data.Y[rows]),
                               sample_weight=np.ascontiguousarray(w[rows]))


def cast(result: FitResult, dtype) -> FitResult:
    """The coefficients in the input's dtype (float32 input gives float32 coefficients, as the closed form)."""
    result.coef = result.coef.astype(dtype)
    result.intercept = result.intercept.astype(dtype)
    return result


class KrylovSolver(Solver):
    """A registry entry: ``solver="cg"`` (CGLS) or ``solver="lsqr"`` (LSQR); see the module docstring."""

    losses = frozenset({"squared_error"})
    supports_sparse = True
    per_target_alpha = True  # each target is its own Krylov run with its own damping
    forms_ridge = True
    accepts_init = True  # coef_init starts the iteration, as a warm start does
    chunked = "passes"  # one read of every chunk per iteration

    def __init__(self, method: str):
        self.method = self.name = method

    @staticmethod
    def checks_finite_X(params: dict) -> bool:
        """``fit`` reports a non-finite ``X`` itself, so validation skips its own pass over ``X`` (3 ms of a 0.2 s
        fit on the hashed benchmark): the moments pass reads every stored value, and a NaN or inf makes its sums
        non-finite whatever the row's weight (``0 * inf`` is NaN)."""
        return True

    def fit(self, params: dict, data: Data, state: KrylovState | None = None, init=None) -> FitResult:
        """Solve on ``data``, starting from ``state``'s coefficients under ``warm_start``, or from ``init``
        (``(coef_init, intercept_init)``; the intercept is eliminated exactly, so only ``coef_init`` matters).

        ``data`` comes from :func:`fastopt._validation.check_fit_data`, which has checked a CSR structure, so the
        passes skip their own check of it."""
        if init is not None:
            state = KrylovState(np.asarray(init[0], dtype=np.float64))
        if not params.get(AUTO_KEY):
            return self._solve(params, data, state)
        # solver="auto" in the closed form's band (see AUTO_TOL): to round-off within what the closed form costs,
        # else the closed form, whose coefficients a warm start then continues from
        n, d = data.X.shape
        # (the route was chosen before the targets and weights were known, by one target's budget and no weights:
        # k targets share it, and where each one's share is below the floor for these rows the attempt is not made:
        # three targets of 20,000 x 400 had spent 5-10 iterations each, which LSQR could not finish in, then the
        # closed form, 35 ms where it takes 14.5; helper-140)
        budget = auto_budget(n, d, data.X.nnz, data.Y.shape[1])
        floor = attempt_floor(data.X.nnz, params["alpha"], data.sample_weight is not None)
        result = None if budget < floor else self._solve(auto_params(params, budget), data, state, quiet=True)
        if result is not None:
            return result
        # The closed form as "auto" runs it on sparse X: where its Cholesky is rejected, the pivoted path and a
        # Krylov attempt within what the densified QR would cost come first (krylov_instead). Without the key,
        # weighted quadratic features of a sparse 6,000 x 60 matrix (LSQR to AUTO_TOL: 888 iterations, past
        # this attempt's 261 but within that one's 3,780) went to the densified QR: 283 s against LSQR's 1.7 s.
        closed = _closed_form.SOLVERS["normal"].fit({**params, _closed_form.AUTO_KEY: True}, data)
        return FitResult(closed.coef, closed.intercept, KrylovState(closed.coef.astype(np.float64)), closed.attrs)

    def _solve(self, params: dict, data: Data, state: KrylovState | None, quiet: bool = False) -> FitResult | None:
        dtype = data.X.dtype
        # Relative weights, divided by a power of two near their maximum (exact) so that no sum overflows.
        data = _closed_form.normalised_weights(data)
        passes = Passes(data, checked=True)
        with np.errstate(over="ignore", invalid="ignore", under="ignore"):  # judged just below
            mom = passes.moments(bool(params["fit_intercept"]))
        weighted = _weighted_rows(data, mom)
        if weighted is not data:
            data, passes = weighted, Passes(weighted, checked=True)
            with np.errstate(over="ignore", invalid="ignore", under="ignore"):
                mom = passes.moments(bool(params["fit_intercept"]))
        if not all(np.isfinite(a).all() for a in (mom.sx, mom.sxx, mom.sy, mom.cyy)):
            # Name non-finite input before blaming overflow (solve's message), whatever assume_finite says
            refuse_nonfinite_data(data)
        ex, ey = _x_exponent(data.X, mom), _target_exponents(data.Y)
        # X or y so small (or large) that their squares under- or overflow: solved at scale 1 (y per target); where
        # X's columns are too far apart for one factor (solve's clear error), y's factors alone
        attempts = ([ex] if ex else []) + ([0] if ey.any() else [])
        for attempt in attempts:
            scaled = _rescaled(data, attempt, ey)
            scaled_passes = Passes(scaled, checked=True)
            with np.errstate(over="ignore", invalid="ignore", under="ignore"):
                scaled_mom = scaled_passes.moments(bool(params["fit_intercept"]))
            if not _squares_lost(scaled_mom):
                ex, data, passes, mom = attempt, scaled, scaled_passes, scaled_mom
                params = {**params, "alpha": _closed_form.scaled_alpha(
                    params["alpha"], np.asarray(params["alpha"], dtype=np.float64), ex)}
                if state is not None and state.coef.shape[0] == ey.shape[0]:  # (another shape: solve ignores it)
                    state = KrylovState(np.ldexp(state.coef, ex - ey[:, None]))
                break
        else:
            ex, ey = 0, np.zeros_like(ey)
        result = solve(self.method, params, passes, state, mom, quiet=quiet)
        if result is not None and (ex or ey.any()):
            result.coef = np.ldexp(result.coef, ey[:, None] - ex)
            result.intercept = np.ldexp(result.intercept, ey)
            result.state = KrylovState(np.ldexp(result.state.coef, ey[:, None] - ex))
        return None if result is None else cast(result, dtype)

    def partial_fit(self, params: dict, data: Data, state: KrylovState | None = None, **_) -> FitResult:
        """Refit on this call's rows only, starting from the previous call's coefficients.

        A Krylov method needs many passes over the same rows, so it cannot accumulate rows seen once; for the
        exact solution over rows that arrive in chunks use ``fit_stream`` (one read of the stream per iteration)
        or the closed form's ``partial_fit``.
        """
        return self.fit(params, data, state)


SOLVERS = {"cg": KrylovSolver("cg"), "lsqr": KrylovSolver("lsqr")}


def fit_stream(params: dict, name: str, source, check: Callable, state: KrylovState | None) -> Outcome | None:
    """``fit_stream`` with a Krylov solver: one read of the stream for the moments, one per iteration (and one
    for the columns :func:`centred_verdict` reads, where there are any), from ``state`` under ``warm_start``.

    ``check(X, y, sample_weight, where, reset)`` validates a chunk into :class:`Data`. Chunks are visited in
    stream order and their sums merged in a balanced tree (round-off grows with the log of the chunk count), so
    the same stream gives the same coefficients every time.

    With ``params[AUTO_KEY]`` (``solver="auto"`` on sparse chunks, :func:`fastopt._streaming.fit`): to
    ``AUTO_TOL`` within the iterations the closed form would cost (:func:`closed_form_iterations` of the whole
    stream, known after the moments' read), else None: the caller fits the closed form instead.
    """
    from fastopt._chunks import read

    source.check_epochs(2, what=f"solver={name!r} (one read of the stream per iteration)")
    info = {}

    def fold(leaf, sizes=None):
        merger = _closed_form.TreeMerger(add)
        targets = None
        for position, (_, where, X, y, sw) in enumerate(read(source)):
            data = check(X, y, sw, where, position == 0 and "y_was_1d" not in info)
            if targets is not None and data.Y.shape[1] != targets:
                raise ValueError(f"{where}: y has {data.Y.shape[1]} targets; earlier chunks had {targets}.")
            targets = data.Y.shape[1]
            info.setdefault("y_was_1d", data.y_was_1d)
            info.setdefault("dtype", data.X.dtype)
            if sizes is not None:  # each chunk's rows, stored values and kind, for "auto"'s budget
                sparse = scipy.sparse.issparse(data.X)
                sizes.append((data.X.shape[0], data.X.nnz if sparse else data.X.size, sparse))
            merger.push(leaf(data))
        total = merger.result()
        if total is None:
            raise ValueError("the stream of chunks is empty; at least one chunk of rows is required.")
        return total

    class StreamPasses:
        def moments(self, centred, sizes=None):
            return fold(lambda data: chunk_moments(data, centred), sizes)

        def fused(self, target, v, c, shift):
            return fold(lambda data: chunk_pass(data, _sqrt_weight(data.sample_weight), target, v, c, shift))

        def spread(self, cols, m):
            return fold(lambda data: chunk_spread(data, cols, m))

    passes = StreamPasses()
    if not params.get(AUTO_KEY):
        return Outcome(name, cast(solve(name, params, passes, state), info["dtype"]), info["y_was_1d"])
    sizes = []
    mom = passes.moments(bool(params["fit_intercept"]), sizes)
    budget = auto_iterations(params, sum(size[0] for size in sizes), mom.sx.shape[0],
                             sum(size[1] for size in sizes), mom.sy.shape[0], chunks=len(sizes))
    if not all(size[2] for size in sizes) or budget is None:
        return None
    result = solve(name, auto_params(params, budget), passes, state, mom, quiet=True)
    return None if result is None else Outcome(name, cast(result, info["dtype"]), info["y_was_1d"])
