# The fused epoch over CSR input (csrc/epoch_csr.c); included by _kernels.pyx after _kernels_optim.pxi, whose
# _to_hyper and _slots it uses.
from libc.stdint cimport int32_t


# Stored values the blocks of a piped epoch may hold together (minibatches of longer rows run on one thread).
cdef Py_ssize_t PIPE_MAX_STAGED = 2**27

# The last piped epoch's workspace (its staged blocks and the producer's marks), kept for the next call of the same
# sizes while it takes at most WORKSPACE_KEEP_BYTES. Freed at the end of a call, it left glibc's heap with enough
# free memory at its top to be returned to the system, and the next call faulted its pages in again (1,000-1,100
# page faults a two-thread SparseAdam-mode fit on the sparse benchmark). Toggled fit by fit in one process, that
# fit's median went from 34.9 ms (29.2-41.5) to 29.4 ms (29.1-30.4) with it kept; the SGD fit's did not change.
# Keeping the one-thread work arrays as well made the two-thread SGD fit 3-5 ms slower (14.5 -> 17.3-19.6 ms, for a
# reason not found), so they are not kept. A call takes the workspace out of the dict (atomic under the GIL) and
# puts it back when done, so concurrent calls never share one; its memory is uninitialised either way (np.empty),
# and the kernels write every entry before reading it.
WORKSPACE_KEEP_BYTES = 2**26
_WORKSPACES: dict = {}

# A per-weight decay is stepped on every coordinate (fo_epoch_ctl.decay_every_step) when d is at most this many
# times a minibatch's mean stored values (_csr_every_step_cheap: a cost choice, not a kernel, so no twin), and
# CSR_EVERY_STEP_PAIR times as many for momentum and Nesterov, whose deferred catch-ups cost more. Measured with
# both ways piped (estimator fits of 6 epochs under a ridge, TF-IDF-like rows of 10 and 95 values, batch 64,
# interleaved, one and two threads; deferred over every-step time): SGD 1.02-1.39 at ratios 3-8, 0.86-0.99 at 10,
# 0.68-0.70 at 26; momentum and Nesterov 1.03-1.56 at ratios 3-15, 0.80-0.97 at 20. At 200 columns of 10 values
# (ratio 0.3) every-step was 0.97-1.22 too. The ratio was 4 before. bench/test_sparse_ridge.py times both ways of
# the bare epoch (test_csr_epoch_own_decay_ways). Since momentum's and Nesterov's catch-ups take their powers in
# batches, their epochs choose at the same ratio as SGD's (_csr_defer_own_decay; TF-IDF-like rows of 40 terms,
# bare epochs, deferred over every-step time, one and two threads: 1.26 and 1.48 at ratio 4.3, 1.06-1.17 at 6.8,
# 0.96 at 9.4, 0.81-0.84 at 11.9); CSR_EVERY_STEP_PAIR stays the bound of what is cheap (csr_steps_cheap).
CSR_EVERY_STEP_RATIO = 8.0
CSR_EVERY_STEP_PAIR = 1.5


def _csr_defer_own_decay(Py_ssize_t d, Py_ssize_t batch_size, Py_ssize_t nnz, Py_ssize_t n_rows) -> bool:
    """Whether a CSR epoch defers each weight's own decay (SGD, momentum, Nesterov) rather than step it on every
    coordinate: where that step is not cheap at SGD's bound (``CSR_EVERY_STEP_RATIO`` times a minibatch's mean
    stored values), whatever the rule."""
    return not _csr_every_step_cheap(d, batch_size, nnz, n_rows, FO_RULE_SGD)


def _csr_every_step_cheap(Py_ssize_t d, Py_ssize_t batch_size, Py_ssize_t nnz, Py_ssize_t n_rows,
                          int rule) -> bool:
    """Whether a CSR epoch's step on every coordinate (O(d k)) costs at most ``CSR_EVERY_STEP_RATIO`` times a
    minibatch's own reads (O(stored values k): the outputs cancel) on ``n_rows`` rows storing ``nnz`` values
    (``CSR_EVERY_STEP_PAIR`` times that for ``rule`` momentum or Nesterov): where ``epoch_csr`` steps each
    weight's own decay on every coordinate, and where the estimator's per-column ridge map may ask it to
    (``fastopt._iterative_lr.csr_steps_cheap``)."""
    ratio = CSR_EVERY_STEP_RATIO
    if rule == FO_RULE_MOMENTUM or rule == FO_RULE_NESTEROV:
        ratio *= CSR_EVERY_STEP_PAIR
    return d <= ratio * max(batch_size, 1) * nnz / max(n_rows, 1)


def _keep_workspace(key, arrays) -> None:
    """Keep ``arrays`` for the next call with ``key`` (only the last workspace), if small enough."""
    if sum(a.nbytes for a in arrays) <= WORKSPACE_KEEP_BYTES:
        _WORKSPACES.clear()
        _WORKSPACES[key] = arrays


def epoch_csr(int rule, hyper, train, X, const floating[:, ::1] Y, sample_weight, const int64_t[::1] order,
              floating[::1] params, floating[:, ::1] state, int64_t t, double lr, bint lazy=False, stage_cap=None,
              floating[::1] avg=None, double[::1] loss_acc=None, int64_t period=0, int n_threads=1,
              const floating[::1] decay=None, int64_t _solo_block=0, int64_t _slow_producer_ns=0):
    """One fused epoch of minibatch training over the rows ``order`` of a CSR matrix, in place on ``params``
    and ``state``: :func:`epoch` for sparse ``X``.

    Parameters
    ----------
    rule, hyper, train, Y, sample_weight, order, params, state, t, lr, avg, loss_acc
        As for :func:`epoch` (``train.positive``: projected steps; ``train.average`` with ``avg``: the running
        Polyak-Ruppert average; ``loss_acc``: an epoch run in slices).
    X : scipy.sparse CSR matrix or array of shape (n_samples, d)
        ``data`` of Y's dtype, ``indices`` and ``indptr`` int32, no duplicate column within a row (the
        canonical form that validation produces; unsorted columns and explicit zeros are fine).
    lazy : bool, default=False
        Give Adam and AdamW the semantics of ``torch.optim.SparseAdam`` (moments and weights change only where
        the minibatch gradient is nonzero); the other rules are exact either way. Their ``state`` then holds each
        parameter's two moments side by side: ``m_i``, ``v_i`` at flat positions ``2 i``, ``2 i + 1`` of its first
        two rows (``fastopt._iterative.moments_layout`` converts), AMSGrad's maximum in the third row.
    stage_cap : int or None, default=None
        Stored values the kernel may copy at a time to read the shuffled rows in visiting order (None: about
        twice a block's mean). Any value gives bit-identical results (tests use small ones to exercise blocks
        staged in part and minibatches read in place).
    period : int, default=0
        > 0: the deferred updates of resting coordinates are split at the steps that are multiples of
        ``period``, so that an epoch run in calls that end at such steps (:func:`fastopt._iterative.run_epoch_csr`)
        gives the bits of one call with the same ``period``; 0: never split.
    n_threads : int, default=1
        2: a second thread stages the shuffled rows and finds each minibatch's touched columns while this one
        takes the steps (``fo_csr_pipe`` in ``csrc/fastopt.h``; plain SGD stepped row by row has no touched
        columns to find, and the second thread only stages and checks its rows), when there is more than one
        minibatch, whatever the rule and settings (the stamps of deferred updates stay on this thread); else
        one thread. Bit-identical to one thread. When the second thread stalls (its core is taken by other
        work), this thread goes on alone and takes it back later: the same bits.
    decay : ndarray of shape (k * d,) or None
        Each weight's own L2 coefficient, as for :func:`epoch`. SGD, momentum and Nesterov defer it (a resting
        coordinate caught up by its own power of its step map, O(log s) after s steps); the other rules, and
        projected momentum and Nesterov, then step every coordinate (O(d k) a step). Not with ``lazy`` Adam or
        AdamW.

    Returns
    -------
    status, t, loss, bad_step
        As for :func:`epoch`.
    """
    cdef const floating[::1] data = X.data
    cdef const int32_t[::1] indices = X.indices
    cdef const int32_t[::1] indptr = X.indptr
    cdef Py_ssize_t n = X.shape[0], d = X.shape[1], k = Y.shape[1], n_params = params.shape[0]
    if indptr.shape[0] != n + 1 or Y.shape[0] != n:
        raise ValueError(f"X has {n} rows and indptr {indptr.shape[0]} entries; Y has {Y.shape[0]} rows")
    if state.shape[0] > FO_MAX_SLOTS or (state.shape[0] > 0 and state.shape[1] != n_params):
        raise ValueError(f"state must have shape (n_slots <= {FO_MAX_SLOTS}, {n_params}), got {state.shape}")
    cdef fo_hyper h = _to_hyper(hyper)
    _check_state(rule, &h, state.shape[0], state.shape[1] if state.shape[0] else n_params, n_params)
    if not 1 <= train.batch_size <= FO_MAX_BATCH or t < 0:
        raise ValueError(f"epoch_csr: batch_size must lie in [1, 2**62] and t >= 0, got {train.batch_size} and {t}")
    # What the kernel trusts, checked here (it reads rows through indptr and checks each column index itself):
    # the row pointers within data and indices and non-decreasing, the order within the rows.
    lengths = np.diff(np.asarray(indptr))
    if indptr[0] != 0 or indptr[n] > min(data.shape[0], indices.shape[0]) or (n and lengths.min() < 0):
        raise ValueError("epoch_csr: X.indptr must start at 0, not decrease, and end within X.data and X.indices")
    cdef int64_t lo = 0, hi = 0
    cdef Py_ssize_t i, m = order.shape[0]
    if m:
        if _order_out_of_range(&order[0], m, n):
            lo, hi = np.min(order), np.max(order)
            raise ValueError(f"epoch_csr: order has indices in [{lo}, {hi}], outside the {n} rows of X")
    cdef fo_epoch_ctl c
    cdef const floating[::1] sw
    cdef const floating *swp = NULL
    cdef floating *s = _slots(state)
    cdef fo_status st
    if sample_weight is not None:
        sw = sample_weight
        if sw.shape[0] != n:
            raise ValueError(f"epoch_csr: sample_weight has {sw.shape[0]} entries, X has {n} rows")
        swp = &sw[0] if n else NULL
    if data.shape[0]:
        _check_aligned(&data[0], sizeof(floating), "X.data")
    if n and k:
        _check_aligned(&Y[0, 0], sizeof(floating), "Y")
    _check_aligned(swp, sizeof(floating), "sample_weight")
    if n_params:
        _check_aligned(&params[0], sizeof(floating), "params")
    _check_aligned(s, sizeof(floating), "state")
    c.order = &order[0] if order.shape[0] > 0 else NULL
    c.n_rows = order.shape[0]
    # a minibatch larger than the epoch is the epoch (the scratch is sized by it: batch_size=10**9 asked 30 GiB)
    c.batch_size = min(train.batch_size, max(order.shape[0], 1))
    pad_rows = getattr(train, "pad_rows", 0)
    if not 0 <= pad_rows <= FO_MAX_BATCH:
        raise ValueError(f"epoch_csr: pad_rows must lie in [0, 2**62], got {pad_rows}")
    c.pad_rows = pad_rows
    c.loss = <fo_loss><int>train.loss
    c.epsilon = train.epsilon
    c.clip_norm = 0.0 if train.clip_norm is None else train.clip_norm
    c.loss_limit = train.loss_limit
    c.lr = lr
    c.t = t
    c.loss_sum = 0.0
    c.rows_before = 0
    if loss_acc is not None:
        if loss_acc.shape[0] != 2 or not 0 <= loss_acc[1] < 2.0**62:
            raise ValueError("epoch_csr: loss_acc must be [loss sum, rows before] (2 entries)")
        c.loss_sum, c.rows_before = loss_acc[0], <int64_t>loss_acc[1]
    c.positive = bool(getattr(train, "positive", False))
    c.avg_start = getattr(train, "average", 0)
    c.avg = NULL
    _set_decay(&c, &h, decay, k * d, "epoch_csr", lazy and rule in (int(FO_RULE_ADAM), int(FO_RULE_ADAMW)))
    # each weight's decay on every coordinate where that costs little beside a minibatch's stored values, else
    # deferred (SGD, momentum, Nesterov; see CSR_EVERY_STEP_RATIO)
    c.decay_every_step = c.decay != NULL and not _csr_defer_own_decay(d, c.batch_size, data.shape[0], n)
    if avg is not None and c.avg_start > 0:
        if avg.shape[0] != n_params:
            raise ValueError(f"avg needs {n_params} entries, got {avg.shape[0]}")
        _check_aligned(&avg[0], sizeof(floating), "avg")
        c.avg = <void *>&avg[0]
    if c.batch_size < 1:
        return int(FO_BAD_ARGUMENT), t, 0.0, 0
    dtype = np.float32 if floating is float else np.float64
    # Staging room for about twice a block's mean number of stored values (a block that holds more is staged
    # in part, a minibatch that holds more is read in place: the result is the same either way).
    cdef Py_ssize_t nnz = data.shape[0]
    cdef Py_ssize_t cap = min(nnz, fo_csr_stage_rows(c.batch_size) * (2 * nnz // max(n, 1) + 1), 2**31 - 1)
    if stage_cap is not None:
        if not 0 <= stage_cap < 2**31:
            raise ValueError(f"stage_cap must lie in [0, 2**31), got {stage_cap}")
        cap = stage_cap
    cdef floating[::1] work = np.empty(fo_csr_work_size(n_params, k, c.batch_size, cap), dtype=dtype)
    cdef int64_t[::1] iwork = np.empty(max(fo_csr_iwork_size(d, c.batch_size, cap), 1), dtype=np.int64)
    cdef double[::1] table = np.empty(fo_csr_table_size(c.n_rows, c.batch_size, period), dtype=np.float64)
    # Empty arrays have no first element: pass NULL (the kernel reads nothing through them then).
    cdef const floating *xp = &data[0] if data.shape[0] > 0 else NULL
    cdef const int32_t *ip = &indices[0] if indices.shape[0] > 0 else NULL
    cdef const floating *yp = &Y[0, 0] if n > 0 and k > 0 else NULL
    cdef floating *pp = &params[0] if n_params > 0 else NULL
    # Two threads: blocks large enough for any one minibatch (its rows at most max_len values each). An order may
    # repeat rows, so a minibatch may hold more than nnz values: where b * max_len exceeds nnz (few rows, or one
    # far longer than the rest), the order's own largest minibatch and block are counted instead (O(m)).
    cdef Py_ssize_t pipe_cap = 0, whole, rows_at = fo_csr_stage_rows(c.batch_size), max_len
    cdef bint fixed = False
    if n_threads > 1 and c.batch_size < c.n_rows and n and fo_csr_pipe_available():
        max_len = int(lengths.max())
        pipe_cap, whole = max(cap, c.batch_size * max_len), rows_at * max_len
        if c.batch_size * max_len > nnz:
            visited = lengths[np.asarray(order)].astype(np.int64)
            pipe_cap = max(cap, int(np.add.reduceat(visited, np.arange(0, m, c.batch_size)).max()))
            whole = int(np.add.reduceat(visited, np.arange(0, m, rows_at)).max())
        # Scattered steps: blocks that hold any fo_csr_stage_rows rows, which either thread may then stage
        # (fo_csr_pipe.fixed), unless the longest row makes them far larger than the blocks staged one after
        # another.
        if stage_cap is None and fo_csr_scatter(<fo_rule>rule, &h, &c, lazy, k) and whole <= 4 * cap:
            pipe_cap, fixed = max(pipe_cap, whole), True
    if 0 < pipe_cap <= PIPE_MAX_STAGED // FO_CSR_PIPE_BLOCKS:
        st = _epoch_csr_piped(rule, &h, &c, lazy, xp, ip, &indptr[0], yp, swp, d, k, pp, n_params, s,
                              state.shape[0], work, iwork, table, pipe_cap, period, fixed, cap, _solo_block,
                              _slow_producer_ns)
    else:
        with nogil:
            if floating is double:
                st = fo_epoch_csr_d(<fo_rule>rule, &h, &c, lazy, xp, ip, &indptr[0], yp, swp, d, k, pp, n_params,
                                    s, state.shape[0], &work[0], &iwork[0], &table[0], cap, period)
            else:
                st = fo_epoch_csr_s(<fo_rule>rule, &h, &c, lazy, xp, ip, &indptr[0], yp, swp, d, k, pp, n_params,
                                    s, state.shape[0], &work[0], &iwork[0], &table[0], cap, period)
    if loss_acc is not None and st == FO_OK:
        loss_acc[0] = c.loss_sum
        loss_acc[1] += c.n_rows
    return int(st), c.t, c.loss_out, c.bad_step


cdef fo_status _epoch_csr_piped(int rule, const fo_hyper *h, fo_epoch_ctl *c, bint lazy, const floating *xp,
                                const int32_t *ip, const int32_t *pp_, const floating *yp, const floating *swp,
                                Py_ssize_t d, Py_ssize_t k, floating *pp, Py_ssize_t n_params, floating *s,
                                Py_ssize_t n_slots, floating[::1] work, int64_t[::1] iwork, double[::1] table,
                                Py_ssize_t cap, int64_t period, bint fixed, Py_ssize_t stage_cap,
                                int64_t solo_block, int64_t slow_ns) except *:
    """The epoch on two threads (fo_csr_pipe): the epoch helper thread produces the staged blocks, this thread
    consumes them with ``work``, ``iwork`` and ``table`` (as the one-thread epoch's, which it becomes with
    ``stage_cap`` while the producer stalls; ``solo_block`` and ``slow_ns``, tests: fo_csr_pipe)."""
    dtype = np.float32 if floating is float else np.float64
    cdef Py_ssize_t rows = fo_csr_stage_rows(c.batch_size), i
    cdef Py_ssize_t nb = FO_CSR_PIPE_BLOCKS
    key = (np.dtype(dtype).char, nb, cap, rows, k, d)
    bufs = _WORKSPACES.pop(key, None)
    if bufs is None:
        bufs = (np.empty((nb, cap), dtype=dtype), np.empty((nb, rows * k), dtype=dtype),
                np.empty((nb, rows), dtype=dtype), np.empty((nb, 3 * cap), dtype=np.int32),
                np.empty((nb, 2 * (rows + 2)), dtype=np.int32), np.empty(max(d, 1), dtype=np.int32))
    cdef floating[:, ::1] vals = bufs[0], ys = bufs[1], sws = bufs[2]
    cdef int32_t[:, ::1] ints = bufs[3], ptrs = bufs[4]
    cdef int32_t[::1] slots = bufs[5]
    cdef fo_csr_pipe *pipe = <fo_csr_pipe *>calloc(1, sizeof(fo_csr_pipe))
    if pipe == NULL:
        raise MemoryError()
    for i in range(nb):
        pipe.block[i].s_data, pipe.block[i].s_y, pipe.block[i].s_sw = &vals[i, 0], &ys[i, 0], &sws[i, 0]
        pipe.block[i].s_ind, pipe.block[i].s_pos, pipe.block[i].touched = &ints[i, 0], &ints[i, cap], &ints[i, 2 * cap]
        pipe.block[i].s_ptr, pipe.block[i].t_off = &ptrs[i, 0], &ptrs[i, rows + 2]
    pipe.cap, pipe.slots = cap, &slots[0]
    pipe.scatter = fo_csr_scatter(<fo_rule>rule, h, c, lazy, k)
    pipe.fixed = fixed
    pipe.period = period
    pipe.stage_cap, pipe.solo_block, pipe.slow_ns = stage_cap, solo_block, slow_ns
    pipe.carry = _pace_carry
    cdef _EpochHelper helper
    try:
        helper = _take_helper()  # nothing below raises until the helper is released
    except BaseException:
        free(pipe)
        raise
    helper.kind, helper.pipe, helper.ctl = 2, pipe, c
    helper.X, helper.indices, helper.indptr, helper.Y, helper.sw = xp, ip, pp_, yp, swp
    helper.d, helper.k, helper.single = d, k, floating is float
    helper.buffers = bufs
    helper.post()
    cdef fo_status st
    with nogil:
        if floating is double:
            st = fo_epoch_csr_piped_d(pipe, <fo_rule>rule, h, c, lazy, xp, ip, pp_, yp, swp, d, k, pp, n_params, s,
                                      n_slots, &work[0], &iwork[0], &table[0])
        else:
            st = fo_epoch_csr_piped_s(pipe, <fo_rule>rule, h, c, lazy, xp, ip, pp_, yp, swp, d, k, pp, n_params, s,
                                      n_slots, &work[0], &iwork[0], &table[0])
        helper.collect()  # the consumer told the producer to stop on every path
    helper.pipe, helper.ctl = NULL, NULL
    global _last_went_solo, _last_rejoined, _last_paced, _last_stalls, _pace_carry
    _last_went_solo, _last_rejoined = pipe.went_solo, pipe.rejoined
    _last_paced, _last_stalls = pipe.paced, pipe.stalls
    _pace_carry = pipe.carry
    _finish_helper(helper)
    free(pipe)
    _keep_workspace(key, bufs)  # the producer has returned: nothing reads them any more
    return st


# The backoff with which the last piped CSR epoch's consumer ended alone on its pace (fo_csr_pipe.carry; 0: it did
# not), for the next call: in a slow cross-core spell, which outlasts an epoch, each call of a fit no longer learns
# anew that one thread is faster (with the pace restarting each call, four or five departures an epoch on the sparse
# benchmark). Per process, like the spells; the bits are the same either way.
cdef int64_t _pace_carry = 0


def _carried(value=None):
    """The backoff the next piped CSR epoch starts alone with (``fo_csr_pipe.carry``; 0: it starts piped); sets
    it first when ``value`` is given (tests)."""
    global _pace_carry
    if value is not None:
        _pace_carry = value
    return _pace_carry


def _pace_blocks(blocks):
    """Feed ``fo_csr_pace_block`` the blocks ``(piped, values, waited_ns, now_ns)`` in turn, from a fresh pace;
    ``[(goes alone, ns a stored value alone, measured), ...]`` after each (tests)."""
    cdef fo_csr_pace pace
    memset(&pace, 0, sizeof(pace))
    out = []
    for piped, values, waited, now in blocks:
        go = fo_csr_pace_block(&pace, piped, values, waited, now)
        out.append((bool(go), pace.alone, bool(pace.measured)))
    return out
