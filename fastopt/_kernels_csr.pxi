# The fused epoch over CSR input (csrc/epoch_csr.c); included by _kernels.pyx after _kernels_optim.pxi, whose
# _to_hyper and _slots it uses.
from libc.stdint cimport int32_t


def epoch_csr(int rule, hyper, train, X, const floating[:, ::1] Y, sample_weight, const int64_t[::1] order,
              floating[::1] params, floating[:, ::1] state, int64_t t, double lr, bint lazy=False, stage_cap=None,
              floating[::1] avg=None, double[::1] loss_acc=None, int64_t period=0):
    """One fused epoch of minibatch training over the rows ``order`` of a CSR matrix, in place on ``params``
    and ``state``: :func:`epoch` for sparse ``X`` (one thread).

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
        the minibatch gradient is nonzero); the other rules are exact either way.
    stage_cap : int or None, default=None
        Stored values the kernel may copy at a time to read the shuffled rows in visiting order (None: about
        twice a block's mean). Any value gives bit-identical results (tests use small ones to exercise blocks
        staged in part and minibatches read in place).
    period : int, default=0
        > 0: the deferred updates of resting coordinates are split at the steps that are multiples of
        ``period``, so that an epoch run in calls that end at such steps (:func:`fastopt._iterative.run_epoch_csr`)
        gives the bits of one call with the same ``period``; 0: never split.

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
    if indptr[0] != 0 or indptr[n] > min(data.shape[0], indices.shape[0]) or \
            (n and np.any(np.diff(np.asarray(indptr)) < 0)):
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
    c.batch_size = train.batch_size
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
    with nogil:
        if floating is double:
            st = fo_epoch_csr_d(<fo_rule>rule, &h, &c, lazy, xp, ip, &indptr[0], yp, swp, d, k, pp, n_params, s,
                                state.shape[0], &work[0], &iwork[0], &table[0], cap, period)
        else:
            st = fo_epoch_csr_s(<fo_rule>rule, &h, &c, lazy, xp, ip, &indptr[0], yp, swp, d, k, pp, n_params, s,
                                state.shape[0], &work[0], &iwork[0], &table[0], cap, period)
    if loss_acc is not None and st == FO_OK:
        loss_acc[0] = c.loss_sum
        loss_acc[1] += c.n_rows
    return int(st), c.t, c.loss_out, c.bad_step
