# Optimizer kernels (step rules, fused epoch); included by _kernels.pyx.
#
# hyper: any object with the fields of fo_hyper (fastopt.optim.Hyper). train: any object with batch_size, loss,
# epsilon, clip_norm (None or <= 0: no clipping) and loss_limit (fastopt._iterative.EpochCtl).
from cython cimport floating
from libc.stdint cimport int64_t
from libc.stdlib cimport calloc, free
from libc.string cimport memset
from cpython.pythread cimport (PyThread_type_lock, PyThread_allocate_lock, PyThread_free_lock,
                               PyThread_acquire_lock, PyThread_release_lock, WAIT_LOCK)
import numbers
import os
import threading

import numpy as np


class Rule(IntEnum):
    """Optimizer rules of csrc/rules.h (values from the C enum fo_rule)."""

    SGD = FO_RULE_SGD
    MOMENTUM = FO_RULE_MOMENTUM
    NESTEROV = FO_RULE_NESTEROV
    ADAGRAD = FO_RULE_ADAGRAD
    RMSPROP = FO_RULE_RMSPROP
    ADAM = FO_RULE_ADAM
    ADAMW = FO_RULE_ADAMW


class Loss(IntEnum):
    """Per-sample losses of csrc/epoch.c (values from the C enum fo_loss)."""

    SQUARED_ERROR = FO_LOSS_SQUARED
    ABSOLUTE_ERROR = FO_LOSS_ABSOLUTE
    HUBER = FO_LOSS_HUBER


MAX_SLOTS = FO_MAX_SLOTS
# The largest batch_size the epoch takes: row positions plus a batch must not overflow ptrdiff_t.
cdef int64_t FO_MAX_BATCH = 2**62
MAX_BATCH = FO_MAX_BATCH

_ISA_NAMES = {FO_ISA_BASELINE: "baseline", FO_ISA_AVX2: "avx2"}


def simd(name=None):
    """The instruction set of the epoch kernels; with ``name``, select it first.

    Parameters
    ----------
    name : {"baseline", "avx2", "best"} or None
        Select this instruction set; one the CPU lacks falls back to the best it has. None only reports.

    Returns
    -------
    str
        The instruction set in use: results agree bit for bit within one, and to rounding across them.
    """
    if name is not None:
        codes = {v: k for k, v in _ISA_NAMES.items()}
        if name != "best" and name not in codes:
            raise ValueError(f"simd must be one of {sorted(codes) + ['best']}, got {name!r}")
        fo_isa_set(codes.get(name, -1))
    return _ISA_NAMES[fo_isa_get()]


cdef fo_hyper _to_hyper(hyper) except *:
    cdef fo_hyper h
    h.momentum = hyper.momentum
    h.dampening = hyper.dampening
    h.rho = hyper.rho
    h.beta1 = hyper.beta1
    h.beta2 = hyper.beta2
    h.eps = hyper.eps
    h.weight_decay = hyper.weight_decay
    h.lr_decay = hyper.lr_decay
    h.centered = bool(hyper.centered)
    h.amsgrad = bool(hyper.amsgrad)
    return h


# Every entry checks, in O(1) (and the epoch's row indices in one pass over `order`, far less than the epoch reads),
# what the C kernels take on trust: lengths, index ranges, state rows, alignment. No call from Python, private or
# not, may make them read or write out of bounds.
cdef int _slots_needed(int rule, fo_hyper *h) noexcept:
    """State rows the C rule touches (rules.h); -1 for an unknown rule (the kernel reports it)."""
    if rule == FO_RULE_SGD:
        return 0
    if rule == FO_RULE_MOMENTUM or rule == FO_RULE_NESTEROV or rule == FO_RULE_ADAGRAD:
        return 1
    if rule == FO_RULE_RMSPROP:
        return 3 if h.momentum > 0 else (2 if h.centered else 1)
    if rule == FO_RULE_ADAM or rule == FO_RULE_ADAMW:
        return 3 if h.amsgrad else 2
    return -1


cdef int _check_state(int rule, fo_hyper *h, Py_ssize_t rows, Py_ssize_t cols, Py_ssize_t n) except -1:
    cdef int need = _slots_needed(rule, h)
    if rows < need or (rows > 0 and cols != n):
        raise ValueError(f"state must have at least {need} rows of {n} entries for rule {rule}, got ({rows}, {cols})")
    return 0


cdef int _check_aligned(const void *p, size_t itemsize, str name) except -1:
    # Typed loads of a misaligned address are undefined behaviour in C (NumPy allows such arrays: offset views,
    # some Dask blocks); the estimator's validation copies them, so only direct calls can meet this.
    if p != NULL and <size_t>p % itemsize:
        raise ValueError(f"{name} is not aligned to its item size; pass np.require({name}, requirements='A')")
    return 0


cdef int _set_decay(fo_epoch_ctl *c, const fo_hyper *h, const floating[::1] decay, Py_ssize_t kd, str name,
                    bint sparse_adam) except -1:
    """An epoch's per-weight decay (``decay``, or None) into ``c``: ``kd = k * d`` entries, and neither the rule's
    own weight decay nor SparseAdam steps (``sparse_adam``) beside it."""
    c.decay = NULL
    c.decay_every_step = 0
    if decay is None:
        return 0
    if decay.shape[0] != kd:
        raise ValueError(f"{name}: decay needs k * d = {kd} entries, got {decay.shape[0]}")
    if h.weight_decay != 0:
        raise ValueError(f"{name}: a per-weight decay and hyper.weight_decay are exclusive")
    if sparse_adam:
        raise ValueError(f"{name}: a per-weight decay excludes SparseAdam steps")
    if kd:
        _check_aligned(&decay[0], sizeof(floating), "decay")
        c.decay = <const void *>&decay[0]
    return 0


cdef bint _order_out_of_range(const int64_t *order, Py_ssize_t m, Py_ssize_t n) noexcept:
    """Whether an entry of order[0:m] lies outside [0, n): one branch-free pass, four independent maxima of the
    entries seen as unsigned (a negative one is then huge). The former loop, minimum and maximum through
    branches, cost 0.1-0.15 ms of a 6 ms epoch at 200,000 rows."""
    cdef uint64_t a0 = 0, a1 = 0, a2 = 0, a3 = 0, v
    cdef Py_ssize_t i = 0
    with nogil:
        while i + 4 <= m:
            v = <uint64_t>order[i]
            a0 = v if v > a0 else a0
            v = <uint64_t>order[i + 1]
            a1 = v if v > a1 else a1
            v = <uint64_t>order[i + 2]
            a2 = v if v > a2 else a2
            v = <uint64_t>order[i + 3]
            a3 = v if v > a3 else a3
            i += 4
        while i < m:
            v = <uint64_t>order[i]
            a0 = v if v > a0 else a0
            i += 1
    a0 = a0 if a0 > a1 else a1
    a2 = a2 if a2 > a3 else a3
    return (a0 if a0 > a2 else a2) >= <uint64_t>n


cdef inline floating *_slots(floating[:, ::1] state) noexcept:
    # A rule without state (SGD) gets an empty (0, n) array; never index into it.
    return &state[0, 0] if state.shape[0] > 0 else NULL


def step(int rule, hyper, floating[::1] params, const floating[::1] grad, floating[:, ::1] state,
         int64_t t, double lr, n_decay=None):
    """One optimizer step, in place on ``params`` and ``state``.

    Parameters
    ----------
    rule : Rule
    hyper : Hyper
    params : ndarray of shape (n,)
    grad : ndarray of shape (n,), same dtype
        The loss gradient (weight decay is added by the rule).
    state : ndarray of shape (n_slots, n), same dtype
    t : int
        1-based step count.
    lr : float
    n_decay : int or None
        Number of leading entries of ``params`` that receive weight decay; None means all.

    Returns
    -------
    status : int
        ``Status.OK``, or ``Status.BAD_ARGUMENT`` for an unknown rule.
    """
    cdef fo_hyper h = _to_hyper(hyper)
    cdef Py_ssize_t n = params.shape[0]
    cdef Py_ssize_t nd = n if n_decay is None else n_decay
    cdef fo_status st
    if grad.shape[0] != n or not 0 <= nd <= n:
        raise ValueError(f"step: grad has {grad.shape[0]} entries and n_decay={nd}, params {n}")
    _check_state(rule, &h, state.shape[0], state.shape[1], n)
    if n == 0:
        return int(FO_OK)
    cdef floating *s = _slots(state)
    _check_aligned(&params[0], sizeof(floating), "params")
    _check_aligned(&grad[0], sizeof(floating), "grad")
    _check_aligned(s, sizeof(floating), "state")
    with nogil:
        if floating is double:
            st = fo_step_d(<fo_rule>rule, &h, &params[0], &grad[0], s, n, nd, t, lr)
        else:
            st = fo_step_s(<fo_rule>rule, &h, &params[0], &grad[0], s, n, nd, t, lr)
    return int(st)


def clip_grad_norm(floating[::1] grad, double max_norm):
    """Scale ``grad`` in place to global L2 norm at most ``max_norm``; return the norm before clipping."""
    cdef double norm
    if grad.shape[0] == 0:
        return 0.0
    _check_aligned(&grad[0], sizeof(floating), "grad")
    with nogil:
        if floating is double:
            norm = fo_clip_grad_norm_d(&grad[0], grad.shape[0], max_norm)
        else:
            norm = fo_clip_grad_norm_s(&grad[0], grad.shape[0], max_norm)
    return norm


def mean_loss_zero(const floating[:, ::1] Y, rows, sample_weight, int loss, double epsilon):
    """The weighted mean loss of the all-zero model: ``sum_i sw_i sum_j loss(y_ij) / m`` over the ``m`` rows.

    One pass over ``Y`` in double without temporaries (every loss is even, so the residuals ``-y`` are taken as
    ``y``); non-finite exactly when a read target or weight is (or the sum overflows), which is how ``fit``
    checks the finiteness of ``y`` without a pass of its own.

    Parameters
    ----------
    Y : ndarray of shape (n, k)
    rows : ndarray of shape (m,), int64, or None
        The rows to average over (each in ``[0, n)``); None for all ``n``.
    sample_weight : ndarray of shape (n,) or None
        Same dtype as ``Y``; None means unit weights.
    loss : Loss
    epsilon : float
        Huber threshold.

    Returns
    -------
    float
    """
    cdef const int64_t[::1] r
    cdef const int64_t *rp = NULL
    cdef const floating[::1] sw
    cdef const floating *swp = NULL
    cdef Py_ssize_t n = Y.shape[0], m = n
    cdef double out
    if rows is not None:
        r = rows
        m = r.shape[0]
        rp = &r[0] if m else NULL
        if m and _order_out_of_range(rp, m, n):
            given = np.asarray(r)
            raise ValueError(f"mean_loss_zero: row {given[(given < 0) | (given >= n)][0]} outside the {n} rows of Y")
    if sample_weight is not None:
        sw = sample_weight
        if sw.shape[0] != n:
            raise ValueError(f"mean_loss_zero: sample_weight has {sw.shape[0]} entries, Y has {n} rows")
        swp = &sw[0] if n else NULL
    if m == 0 or Y.shape[1] == 0:
        raise ValueError("mean_loss_zero: no rows or no targets")
    if not FO_LOSS_SQUARED <= loss <= FO_LOSS_HUBER:
        raise ValueError(f"mean_loss_zero: unknown loss {loss}")
    _check_aligned(&Y[0, 0], sizeof(floating), "Y")
    _check_aligned(swp, sizeof(floating), "sample_weight")
    with nogil:
        if floating is double:
            out = fo_mean_loss_zero_d(&Y[0, 0], Y.shape[1], rp, m, swp, <fo_loss>loss, epsilon)
        else:
            out = fo_mean_loss_zero_s(&Y[0, 0], Y.shape[1], rp, m, swp, <fo_loss>loss, epsilon)
    return out


cdef extern from *:
    """
    /* The helper's completion flag: set with release order after its epoch, so a spinning reader that sees it
       also sees the helper's writes. Plain volatile accesses where the compiler has no __atomic builtins (there the
       kernels run one thread and the helper returns at once). */
    #if defined(__GNUC__) || defined(__clang__)
    #define FO_FLAG_LOAD(p) __atomic_load_n((p), __ATOMIC_ACQUIRE)
    #define FO_FLAG_STORE(p, v) __atomic_store_n((p), (v), __ATOMIC_RELEASE)
    #define FO_COUNT_LOAD(p) __atomic_load_n((p), __ATOMIC_ACQUIRE)
    #else
    #define FO_FLAG_LOAD(p) (*(volatile int *)(p))
    #define FO_FLAG_STORE(p, v) ((void)(*(volatile int *)(p) = (v)))
    #define FO_COUNT_LOAD(p) ((int64_t)0) /* nothing published before the end (fo_shuffle_tracked) */
    #endif
    """
    int FO_FLAG_LOAD(int *p) nogil
    void FO_FLAG_STORE(int *p, int v) nogil
    int64_t FO_COUNT_LOAD(int64_t *p) nogil

# Checks of a flag before blocking on a lock, because waking a blocked thread is slow (measured here, a virtual
# machine: 25-30 us added per two-thread epoch without these spins, 4-5 us with them). The caller's: the helper
# ends within a step of the calling thread. The helper's, for its next job: the epochs of a fit follow each other
# closely; it spins for about 0.4 ms of CPU time (measured) and then sleeps.
cdef long _JOIN_SPINS = 1000000
cdef long _IDLE_SPINS = 100000


cdef class _EpochHelper:
    """The second thread of two-thread epochs: a thread that waits (without the GIL) for a job, runs
    fo_epoch_helper_* on its own copies of the control block, the parameters and the optimizer state, signals,
    and waits for the next job. One such thread is kept for the process (starting a thread per epoch cost about
    0.2 ms, more than a whole epoch of 6,400 rows); a second concurrent two-thread epoch gets a helper of its own
    that serves one job. ``epoch`` keeps every pointer alive until it has collected the job."""

    cdef PyThread_type_lock go, done
    cdef int finished, posted
    cdef bint persistent, busy
    cdef object thread
    cdef object buffers  # the job's own arrays (copies of params and state, the team's work), kept alive
    cdef fo_team *team
    cdef fo_epoch_ctl c
    cdef fo_hyper h
    cdef fo_rule rule
    cdef const void *X
    cdef const void *Y
    cdef const void *sw
    cdef void *work
    cdef void *params
    cdef void *slots
    cdef Py_ssize_t d, k, n_params
    cdef bint single
    # A row-order job instead of an epoch (kind 1, shuffle_start): fo_shuffle_tracked(rows, n, key, out, drawn).
    cdef int kind
    cdef const int64_t *rows
    cdef int64_t *out
    cdef int64_t *drawn
    cdef Py_ssize_t n_rows
    cdef uint64_t key
    # The producer of a piped CSR epoch instead (kind 2, epoch_csr): the pipe, the epoch's control block (its
    # order and minibatches; read only) and the matrix (X: its values).
    cdef fo_csr_pipe *pipe
    cdef const fo_epoch_ctl *ctl
    cdef const int32_t *indices
    cdef const int32_t *indptr

    def __cinit__(self):
        self.go = PyThread_allocate_lock()
        self.done = PyThread_allocate_lock()
        if self.go == NULL or self.done == NULL:
            raise MemoryError()
        # Both start taken: the thread blocks on `go` until a job is posted, the caller on `done` until it ends.
        PyThread_acquire_lock(self.go, WAIT_LOCK)
        PyThread_acquire_lock(self.done, WAIT_LOCK)

    def __dealloc__(self):
        if self.go != NULL:
            PyThread_free_lock(self.go)
        if self.done != NULL:
            PyThread_free_lock(self.done)

    cdef void _run(self) noexcept nogil:
        if self.kind == 1:
            fo_shuffle_tracked(self.rows, self.n_rows, self.key, self.out, self.drawn)
        elif self.kind == 2:
            if self.single:
                fo_csr_produce_s(self.pipe, self.ctl, self.d, self.k, <const float *>self.X, self.indices,
                                 self.indptr, <const float *>self.Y, <const float *>self.sw)
            else:
                fo_csr_produce_d(self.pipe, self.ctl, self.d, self.k, <const double *>self.X, self.indices,
                                 self.indptr, <const double *>self.Y, <const double *>self.sw)
        elif self.single:
            fo_epoch_helper_s(self.rule, &self.h, &self.c, <const float *>self.X, <const float *>self.Y,
                              <const float *>self.sw, self.d, self.k, <float *>self.params, self.n_params,
                              <float *>self.slots, <float *>self.work, self.team)
        else:
            fo_epoch_helper_d(self.rule, &self.h, &self.c, <const double *>self.X, <const double *>self.Y,
                              <const double *>self.sw, self.d, self.k, <double *>self.params, self.n_params,
                              <double *>self.slots, <double *>self.work, self.team)

    def serve(self):
        """The thread's body: run posted jobs, one (or, if persistent, every one) until the process ends."""
        cdef long spins
        with nogil:
            while True:
                spins = 0
                while not FO_FLAG_LOAD(&self.posted) and spins < _IDLE_SPINS:
                    spins += 1
                PyThread_acquire_lock(self.go, WAIT_LOCK)
                FO_FLAG_STORE(&self.posted, 0)
                self._run()
                FO_FLAG_STORE(&self.finished, 1)
                PyThread_release_lock(self.done)
                if not self.persistent:
                    break

    cdef void post(self) noexcept:
        FO_FLAG_STORE(&self.finished, 0)
        FO_FLAG_STORE(&self.posted, 1)
        PyThread_release_lock(self.go)

    cdef void collect(self) noexcept nogil:
        cdef long spins = 0
        while not FO_FLAG_LOAD(&self.finished) and spins < _JOIN_SPINS:
            spins += 1
        PyThread_acquire_lock(self.done, WAIT_LOCK)


cdef _EpochHelper _shared_helper = None
# The last two-thread epoch's first step on which the calling thread went on alone (0: none) and the times its
# helper rejoined (the dense team; the CSR pipe's consumer goes on alone for the rest of the call); for tests.
cdef int64_t _last_went_solo = 0
cdef int64_t _last_rejoined = 0


def _went_solo():
    """``(first step on which the calling thread went on alone or 0, times the helper rejoined)`` of the last
    two-thread epoch (tests)."""
    return _last_went_solo, _last_rejoined


# The times the last piped CSR epoch's consumer went on alone on its pace (fo_csr_pace) and because its producer
# stalled; for tests.
cdef int64_t _last_paced = 0
cdef int64_t _last_stalls = 0


def _paced():
    """``(times the calling thread went on alone because its producer kept up too slowly, times because it
    stalled)`` in the last two-thread CSR epoch (tests)."""
    return _last_paced, _last_stalls


def _forget_helper_after_fork():
    # A forked child has only the forking thread: the shared helper's thread is not there.
    global _shared_helper
    _shared_helper = None


if hasattr(os, "register_at_fork"):  # POSIX only; elsewhere processes do not fork
    os.register_at_fork(after_in_child=_forget_helper_after_fork)


cdef _EpochHelper _take_helper():
    """The shared helper if it is idle (started on first use), else a new one-job helper. Runs under the GIL
    without calls back into Python between the test and the claim, so two threads cannot both claim it."""
    global _shared_helper
    cdef _EpochHelper helper
    if _shared_helper is not None and not _shared_helper.busy:
        _shared_helper.busy = True
        return _shared_helper
    helper = _EpochHelper()
    helper.persistent = _shared_helper is None
    helper.busy = True
    helper.thread = threading.Thread(target=helper.serve, name="fastopt-epoch-helper", daemon=True)
    helper.thread.start()
    if helper.persistent:
        _shared_helper = helper
    return helper


cdef _EpochHelper _start_helper(int rule, const fo_hyper *h, const fo_epoch_ctl *c, const floating[:, ::1] X,
                                const floating[:, ::1] Y, const floating *sw, floating[::1] params,
                                floating[:, ::1] state, int64_t solo_step):
    """Start the second thread of a two-thread epoch and return its helper.

    The helper gets its own copies of ``params`` and ``state`` (it takes the same steps on them), the team's
    work array (64-byte aligned, fo_work_size(..., team=1) entries, shared by both threads) and a copy of the
    control block ``c`` without the average (the calling thread alone keeps it), and its job is posted. The
    caller then runs its own epoch with ``helper.team`` and ``helper.work`` and calls :func:`_finish_helper`,
    on every path, once that epoch has returned (which tells the helper to stop). ``solo_step`` (tests): the
    team's ``solo_step``, set before the job is posted, as every field both threads read.
    """
    cdef Py_ssize_t n_params = params.shape[0], per_line = 64 // sizeof(floating)
    buffers = (np.array(params), np.array(state),
               np.empty(fo_work_size(n_params, Y.shape[1], sizeof(floating), 1) + per_line,
                        dtype=np.float32 if floating is float else np.float64))
    cdef floating[::1] own_params = buffers[0]
    cdef floating[:, ::1] own_state = buffers[1]
    cdef floating[::1] team_work = buffers[2]
    cdef floating *wp = &team_work[0]
    if <size_t>wp % 64:  # to the next 64-byte boundary (NumPy aligns to the item size at least)
        wp += (64 - <size_t>wp % 64) // sizeof(floating)
    cdef fo_team *team = <fo_team *>calloc(1, sizeof(fo_team))
    if team == NULL:
        raise MemoryError()
    cdef _EpochHelper helper
    try:
        helper = _take_helper()  # nothing below raises until the helper is released
    except BaseException:
        free(team)
        raise
    team.isa = fo_isa_get()
    # the helper's copies, which the calling thread overwrites with its own when the helper rejoins (fo_team)
    team.h_params, team.h_state = <void *>&own_params[0], <void *>_slots(own_state)
    team.h_state_len = own_state.shape[0] * own_state.shape[1]
    team.solo_step = solo_step
    helper.kind = 0
    helper.team, helper.buffers, helper.c, helper.h, helper.rule = team, buffers, c[0], h[0], <fo_rule>rule
    helper.c.avg = NULL
    helper.X, helper.Y, helper.sw, helper.work = &X[0, 0], &Y[0, 0], sw, wp
    helper.d, helper.k, helper.n_params = X.shape[1], Y.shape[1], n_params
    helper.params, helper.slots = <void *>&own_params[0], <void *>_slots(own_state)
    helper.single = floating is float
    helper.post()
    return helper


cdef int _finish_helper(_EpochHelper helper) except -1:
    """Release a helper whose job has been collected (the shared one for the next epoch; a one-job helper's
    thread is joined) and free its team."""
    cdef fo_team *team = helper.team
    helper.team, helper.buffers = NULL, None
    helper.busy = False
    if not helper.persistent:
        helper.thread.join()
    free(team)
    return 0


cdef class _ShuffleJob:
    """A row order being drawn on the epoch helper thread (:func:`shuffle_start`); :meth:`result` waits for it,
    :meth:`ready` says how much of it may be read already."""

    cdef _EpochHelper helper
    cdef object order, rows
    cdef int64_t done  # the leading positions of order that are final (fo_shuffle_tracked publishes them)

    def ready(self):
        """How many leading entries of the order are final already (all of it once :meth:`result` returned): a
        thread may read ``buffer()[:ready()]`` while the helper draws the rest."""
        if self.helper is None:
            return len(self.order)
        return FO_COUNT_LOAD(&self.done)

    def buffer(self):
        """The array the order is drawn into, without waiting: only its first :meth:`ready` entries are final."""
        return self.order

    def result(self):
        """The permutation (``shuffle``'s result), once the helper has drawn it; the helper is then free again."""
        cdef _EpochHelper helper = self.helper
        if helper is not None:
            self.helper = None
            with nogil:
                helper.collect()
            helper.buffers = None
            helper.busy = False
        self.rows = None
        return self.order

    def __dealloc__(self):
        # never leave the shared helper claimed (or its job's arrays freed under it)
        if self.helper is not None:
            self.result()


def shuffle_start(rows, uint64_t key, out=None):
    """:func:`shuffle` on the epoch helper thread, while the caller goes on: the same permutation, returned by
    the job's ``result()`` (which waits for it).

    For a two-thread fit, whose helper thread would otherwise idle until the first epoch: the estimator draws
    the first epoch's order there while it validates and sets up the fit (both cost a few tenths of a
    millisecond on the benchmark shape). Neither ``rows`` nor ``out`` may be touched before ``result()``.

    Parameters
    ----------
    rows : ndarray of shape (n,), int64, or int
        As :func:`shuffle`; an int ``n`` stands for the rows ``0 .. n-1``, which the helper writes itself (the
        caller then need not make them).
    key, out
        As :func:`shuffle`; ``out`` must not be ``rows``.

    Returns
    -------
    job : object with a ``result()`` method, or None
        None when the shared helper thread is busy with another fit's epoch (starting a thread for one order
        would cost about as much as drawing it): call :func:`shuffle` then.
    """
    global _shared_helper
    cdef const int64_t[::1] r
    cdef const int64_t *rp = NULL
    cdef Py_ssize_t n
    n, view, order = _shuffle_args("shuffle_start", rows, out)
    if view is not None and n:
        r = view
        rp = &r[0]
    cdef int64_t[::1] o = order
    if rp != NULL and &o[0] == rp:
        raise ValueError("shuffle_start: out must not be rows")
    if n < 2 or (_shared_helper is not None and _shared_helper.busy):
        return None
    cdef _EpochHelper helper = _take_helper()  # the shared one (started on first use): it was not busy
    cdef _ShuffleJob job = _ShuffleJob()
    job.order, job.rows = order, (r if rp != NULL else None)  # the memoryview keeps rows alive until result()
    helper.kind, helper.rows, helper.out, helper.n_rows, helper.key = 1, rp, &o[0], n, key
    helper.drawn = &job.done  # the job outlives the helper's work on it (result() or its deallocation waits)
    helper.buffers = (job.order, job.rows)
    job.helper = helper
    helper.post()
    return job


def epoch(int rule, hyper, train, const floating[:, ::1] X, const floating[:, ::1] Y, sample_weight,
          const int64_t[::1] order, floating[::1] params, floating[:, ::1] state, floating[::1] work,
          int64_t t, double lr, int n_threads=1, floating[::1] avg=None, double[::1] loss_acc=None,
          const floating[::1] decay=None, int64_t _solo_step=0):
    """One fused epoch of minibatch training over the rows ``order``, in place on ``params`` and ``state``.

    Parameters
    ----------
    rule : Rule
    hyper : Hyper
    train : EpochCtl
    X : ndarray of shape (n_samples, d)
    Y : ndarray of shape (n_samples, k)
    sample_weight : ndarray of shape (n_samples,) or None
        Normalised by the caller to mean 1 over the training rows; None means unit weights.
    order : ndarray of shape (m,), int64
        Rows to visit, in this order; minibatches are consecutive runs of ``train.batch_size``.
    params : ndarray of shape (k * d,) or (k * d + k,)
        Weights (k, d) row-major, then the k intercepts when fitted.
    state : ndarray of shape (n_slots, n_params)
    work : ndarray of shape (6 * n_params + 2 * k,)
        Scratch space (the halves and sums of the gradient, per-row coefficients). Two threads use scratch of
        their own instead, laid out so that no cache line holds both threads' buffers.
    t : int
        Steps taken before this epoch.
    lr : float
        Learning rate for every step of the epoch.
    n_threads : int, default=1
        1, or 2 to compute the second half of every minibatch's gradient in a helper thread that takes the same
        steps on its own copy of the parameters. The result is bit-identical either way (every minibatch
        gradient is summed in the same two halves). When the helper stalls (its core is taken by other work),
        the calling thread computes its halves and takes the rest of the call's steps alone: the same bits.
    avg : ndarray of shape (n_params,) or None
        The running Polyak-Ruppert average of the parameters, updated in place after every step
        ``t >= train.average`` (``train.average`` > 0). ``train.positive`` clamps the weights at 0 after every
        step (projected steps; intercepts are free).
    loss_acc : ndarray of shape (2,), float64, or None
        For an epoch run in slices of whole minibatches: ``[loss summed over the earlier slices' rows, their
        count]``, updated in place (start from zeros). ``loss`` is then the mean over all rows so far, and the
        slices together give bit for bit the result of one call.
    decay : ndarray of shape (k * d,) or None
        Each weight's own L2 coefficient ``lambda_p``: ``lambda_p w_p`` is added to the (clipped) minibatch
        gradient before the rule steps, torch's coupled weight decay per weight (``hyper.weight_decay`` must
        then be 0). The objective's penalty is ``sum_p lambda_p w_p^2 / 2``.

    Returns
    -------
    status : int
        A ``Status`` value.
    t : int
        Steps taken after the epoch (or up to the failure).
    loss : float
        Mean over the rows of ``sample_weight * loss``, each evaluated before its minibatch's step.
    bad_step : int
        The 1-based step at which a non-OK status arose, else 0.
    """
    cdef fo_hyper h = _to_hyper(hyper)
    cdef fo_epoch_ctl c
    cdef const floating[::1] sw
    cdef const floating *swp = NULL
    cdef fo_status st
    cdef Py_ssize_t n = X.shape[0], d = X.shape[1], k = Y.shape[1], m = order.shape[0], i
    cdef int64_t lo = 0, hi = 0
    cdef object batch_size = train.batch_size
    if Y.shape[0] != n or d < 1 or k < 1:
        raise ValueError(f"epoch: X {X.shape[0]}x{d} and Y {Y.shape[0]}x{k} must have the same rows, d, k >= 1")
    if params.shape[0] != k * d and params.shape[0] != k * d + k:
        raise ValueError(f"epoch: params has {params.shape[0]} entries; expected k * d = {k * d} or {k * d + k}")
    _check_state(rule, &h, state.shape[0], state.shape[1], params.shape[0])
    if not 1 <= batch_size <= FO_MAX_BATCH or t < 0:
        raise ValueError(f"epoch: batch_size must lie in [1, 2**62] and t >= 0, got {batch_size} and {t}")
    if sample_weight is not None:
        sw = sample_weight
        if sw.shape[0] != n:
            raise ValueError(f"epoch: sample_weight has {sw.shape[0]} entries, X has {n} rows")
        swp = &sw[0] if n else NULL
    if m:
        if _order_out_of_range(&order[0], m, n):
            lo, hi = np.min(order), np.max(order)
            raise ValueError(f"epoch: order has indices in [{lo}, {hi}], outside the {n} rows of X")
        _check_aligned(&X[0, 0], sizeof(floating), "X")
        _check_aligned(&Y[0, 0], sizeof(floating), "Y")
        _check_aligned(swp, sizeof(floating), "sample_weight")
    _check_aligned(&params[0], sizeof(floating), "params")
    cdef floating *s = _slots(state)
    _check_aligned(s, sizeof(floating), "state")
    c.order = &order[0] if order.shape[0] > 0 else NULL
    c.n_rows = order.shape[0]
    c.batch_size = train.batch_size
    pad_rows = getattr(train, "pad_rows", 0)
    if not 0 <= pad_rows <= FO_MAX_BATCH:
        raise ValueError(f"epoch: pad_rows must lie in [0, 2**62], got {pad_rows}")
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
            raise ValueError("epoch: loss_acc must be [loss sum, rows before] (2 entries)")
        c.loss_sum, c.rows_before = loss_acc[0], <int64_t>loss_acc[1]
    c.positive = bool(getattr(train, "positive", False))
    c.avg_start = getattr(train, "average", 0)
    c.avg = NULL
    if avg is not None and c.avg_start > 0:
        if avg.shape[0] != params.shape[0]:
            raise ValueError(f"avg needs {params.shape[0]} entries, got {avg.shape[0]}")
        _check_aligned(&avg[0], sizeof(floating), "avg")
        c.avg = <void *>&avg[0]
    _set_decay(&c, &h, decay, k * d, "epoch", False)
    cdef Py_ssize_t need = fo_work_size(params.shape[0], Y.shape[1], sizeof(floating), 0)
    if work.shape[0] < need:
        raise ValueError(f"work needs 6 * n_params + 2 * k = {need} entries, got {work.shape[0]}")
    _check_aligned(&work[0], sizeof(floating), "work")
    cdef fo_team *team = NULL
    cdef _EpochHelper helper = None
    cdef floating *wp = &work[0]
    if n_threads > 1:
        helper = _start_helper(rule, &h, &c, X, Y, swp, params, state, _solo_step)
        team, wp = helper.team, <floating *>helper.work
    with nogil:
        if floating is double:
            st = fo_epoch_d(<fo_rule>rule, &h, &c, &X[0, 0], &Y[0, 0], swp, X.shape[1], Y.shape[1],
                            &params[0], params.shape[0], s, wp, team)
        else:
            st = fo_epoch_s(<fo_rule>rule, &h, &c, &X[0, 0], &Y[0, 0], swp, X.shape[1], Y.shape[1],
                            &params[0], params.shape[0], s, wp, team)
        if helper is not None:
            helper.collect()  # the epoch told the helper to stop on every path
    global _last_went_solo, _last_rejoined
    if helper is not None:
        _last_went_solo, _last_rejoined = team.went_solo, team.rejoined
        _finish_helper(helper)
    if loss_acc is not None and st == FO_OK:
        loss_acc[0] = c.loss_sum
        loss_acc[1] += c.n_rows
    return int(st), c.t, c.loss_out, c.bad_step


def weighted_square_sum(const floating[::1] weight, const floating[::1] x):
    """``sum_i weight_i x_i^2`` over equal-length ``weight`` and ``x`` (one dtype), each product and the sums in
    float64: four partial sums, of the terms ``i`` with ``i mod 4`` equal, added as ``(s0 + s1) + (s2 + s3)``
    (each at most as far from the exact sum as one running sum). Without the GIL. The ridge term of a per-column
    decay (``fastopt._iterative.penalty_term``), where NumPy's three-operand ``einsum`` and a float64 copy of a
    float32 decay were its O(d) passes (2^18 columns: einsum 0.29 ms, this 0.07 ms on warm arrays)."""
    if weight.shape[0] != x.shape[0]:
        raise ValueError(f"weighted_square_sum: weight has {weight.shape[0]} entries, x {x.shape[0]}")
    cdef Py_ssize_t n = x.shape[0], i, m = n - n % 4
    cdef double s0 = 0.0, s1 = 0.0, s2 = 0.0, s3 = 0.0, v
    with nogil:
        for i in range(0, m, 4):
            v = <double>x[i]
            s0 += <double>weight[i] * v * v
            v = <double>x[i + 1]
            s1 += <double>weight[i + 1] * v * v
            v = <double>x[i + 2]
            s2 += <double>weight[i + 2] * v * v
            v = <double>x[i + 3]
            s3 += <double>weight[i + 3] * v * v
        for i in range(m, n):
            v = <double>x[i]
            s0 += <double>weight[i] * v * v
    return (s0 + s1) + (s2 + s3)
