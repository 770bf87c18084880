/* fastopt.h: the whole C interface of fastopt's kernels.
 *
 * Plain C99: no Python headers, no allocation. Callers (fastopt/_kernels.pyx) pass every workspace in,
 * and reach BLAS only through the fo_blas table, which Cython fills from scipy.linalg.cython_blas so
 * that the package links no BLAS of its own.
 *
 * Each section belongs to one concept; keep them in this order.
 */
#ifndef FASTOPT_H
#define FASTOPT_H

#include <stddef.h>
#include <stdint.h>

/* ---------------------------------------------------------------- status codes */
/* Values pinned by tests/test_kernels_interface.py against fastopt._kernels.Status. */
typedef enum {
    FO_OK = 0,
    FO_NONFINITE_LOSS = 1,   /* a loss or gradient became NaN/inf */
    FO_DIVERGED = 2,         /* loss exceeded the divergence threshold */
    FO_BAD_ARGUMENT = 3,     /* a precondition the caller should have guaranteed */
    FO_INTERRUPTED = 4       /* the caller's stop flag was set (the outputs are partial) */
} fo_status;

/* Whether a caller's stop flag (NULL: none) is set. Another thread sets it (Python, on Ctrl-C) while a kernel
 * runs without the GIL; the kernels that take one read it between blocks of bounded work and return
 * FO_INTERRUPTED, so that the caller can raise at once instead of waiting for the whole call. A relaxed atomic
 * load: a plain load on x86 and ARM, and no data race in C11's terms. */
static inline int fo_stop_requested(const int32_t *stop)
{
#if defined(__GNUC__) || defined(__clang__)
    return stop != NULL && __atomic_load_n(stop, __ATOMIC_RELAXED) != 0;
#else
    return stop != NULL && *(const volatile int32_t *)stop != 0;
#endif
}

/* ---------------------------------------------------------------- prefetch requests */
/* FO_PREFETCH_HINT(p, rw, locality): __builtin_prefetch's request for the line of p (rw 1: for writing; locality
 * 3: into L1 .. 1: into L3) where GCC or clang compiles it, outside FO_PORTABLE (plain C99: no GNU extensions),
 * else nothing. Each kernel names its own requests with it. */
#if (defined(__GNUC__) || defined(__clang__)) && !defined(FO_PORTABLE)
#define FO_PREFETCH_HINT(p, rw, locality) __builtin_prefetch((p), (rw), (locality))
#else
#define FO_PREFETCH_HINT(p, rw, locality) ((void)(p))
#endif

/* ---------------------------------------------------------------- AVX2 copies (epoch.c, krylov.c, huber.c,
 * epoch_csr.c) */
/* FO_AVX2_DISPATCH: 1 where the kernels also compile AVX2 copies and choose at run time (fo_isa_get): GCC or clang
 * on x86, unless FO_NO_DISPATCH (the baseline only) or FO_PORTABLE (plain C99) is defined. */
#if (defined(__GNUC__) || defined(__clang__)) && (defined(__x86_64__) || defined(__i386__)) \
    && !defined(FO_NO_DISPATCH) && !defined(FO_PORTABLE)
#define FO_AVX2_DISPATCH 1
#else
#define FO_AVX2_DISPATCH 0
#endif

/* Functions defined between FO_TARGET_AVX2_BEGIN and FO_TARGET_AVX2_END are compiled for AVX2 with FMA, whatever
 * the build's target, and are called only after fo_isa_get() reported AVX2. For GCC and clang on x86 only. */
#if defined(__clang__)
#define FO_TARGET_AVX2_BEGIN _Pragma("clang attribute push(__attribute__((target(\"avx2,fma\"))), apply_to = function)")
#define FO_TARGET_AVX2_END _Pragma("clang attribute pop")
#elif defined(__GNUC__)
#define FO_TARGET_AVX2_BEGIN _Pragma("GCC push_options") _Pragma("GCC target(\"avx2,fma\")")
#define FO_TARGET_AVX2_END _Pragma("GCC pop_options")
#endif

/* ---------------------------------------------------------------- BLAS table */
/* The BLAS routines the kernels call, with the signatures of scipy.linalg.cython_blas (Fortran calling
 * convention, all by pointer). Only what is called is here: the syrk of gram_body.h and huber.c. */
typedef void (*fo_dsyrk_t)(char *, char *, int *, int *, double *, double *, int *, double *, double *, int *);

typedef struct {
    fo_dsyrk_t dsyrk;
} fo_blas;

/* ---------------------------------------------------------------- closed form (gram.c) */
/* Weighted, centred sufficient statistics of the augmented matrix Z = [X, Y] (p = d + k columns):
 *   weight = sum_i w_i,  mean = sum_i w_i z_i / weight,  gram = sum_i w_i (z_i - mean)(z_i - mean)^T.
 * Rows are read in blocks; each block is centred on its own mean into the workspace, multiplied by sqrt(w_i),
 * passed to BLAS syrk, and merged into the running moments with the pairwise update of Chan, Golub & LeVeque
 * (1979). All accumulation is in double, whatever the input type. w == NULL means unit weights. */
typedef struct {
    ptrdiff_t n;      /* rows */
    int d;            /* columns of X */
    int k;            /* columns of Y */
    int block;        /* rows per block (> 0) */
    const int32_t *stop; /* read before each block: nonzero returns FO_INTERRUPTED (NULL: never) */
} fo_gram_dims;

typedef struct {
    double weight;    /* out: sum of weights */
    double *mean;     /* out: (p,) weighted column means of [X, Y] */
    double *gram;     /* out: (p, p) row-major, symmetric: centred weighted cross-products */
    double *work;     /* workspace: block * p + p doubles */
} fo_moments;

fo_status fo_gram_d(const fo_blas *blas, const double *X, const double *Y, const double *w, fo_gram_dims dims,
                    fo_moments *out);
fo_status fo_gram_s(const fo_blas *blas, const float *X, const float *Y, const float *w, fo_gram_dims dims,
                    fo_moments *out);

/* ---------------------------------------------------------------- LAPACK table */
/* Signatures as in scipy.linalg.cython_lapack, filled by Cython like the BLAS table. */
typedef void (*fo_dtpqrt_t)(int *, int *, int *, int *, double *, int *, double *, int *, double *, int *,
                            double *, int *);

typedef void (*fo_dgeqrf_t)(int *, int *, double *, int *, double *, double *, int *, int *);

typedef struct {
    fo_dtpqrt_t dtpqrt;
    fo_dgeqrf_t dgeqrf;
} fo_lapack;

/* ---------------------------------------------------------------- closed form: R factor (tsqr.c) */
/* Householder QR of the same centred, weighted rows as the statistics above (dims as there):
 *   weight and mean as fo_gram_*,  r (p, p) row-major upper triangular with a non-negative diagonal and
 *   R^T R = sum_i w_i (z_i - mean)(z_i - mean)^T,
 * without squaring the condition number. Each block of rows is centred on its own weighted mean and scaled by
 * sqrt(w_i) in the workspace (column-major), then folded into the running R with LAPACK dtpqrt together with one
 * row carrying the mean correction of Chan, Golub & LeVeque (1979); the first block (R still zero) is factorised
 * by dgeqrf. All arithmetic is in double. */
typedef struct {
    double weight;    /* out: sum of weights */
    double *mean;     /* out: (p,) weighted column means of [X, Y] */
    double *r;        /* out: (p, p) row-major upper triangular */
    double *work;     /* workspace: fo_tsqr_work_size(p, block) doubles */
} fo_factor;

ptrdiff_t fo_tsqr_work_size(int p, int block);
fo_status fo_tsqr_d(const fo_lapack *lapack, const double *X, const double *Y, const double *w, fo_gram_dims dims,
                    fo_factor *out);
fo_status fo_tsqr_s(const fo_lapack *lapack, const float *X, const float *Y, const float *w, fo_gram_dims dims,
                    fo_factor *out);

/* ---------------------------------------------------------------- sparse closed form (csr_gram.c) */
/* The statistics of the closed-form section for Z = [X, Y] with X in canonical CSR form (row i's values
 * data[indptr[i]:indptr[i+1]] at strictly increasing columns indices[...] in [0, d); indptr holds absolute
 * offsets, so a slice of a larger matrix's indptr selects its rows; Y and w hold those rows only). Two passes:
 * weight and means from the nonzeros; then the uncentred products of each row's nonzeros into a dense lower
 * triangle, with Y centred first, and the centring of the X block applied to the p x p result
 * (G_xx = S_xx - weight mx mx^T). Returns FO_BAD_ARGUMENT for a row whose indices are unsorted, repeated or
 * out of range. Accumulation in double; w == NULL means unit weights; out->work holds 2 k doubles. */
typedef struct {
    ptrdiff_t n;      /* rows */
    int d;            /* columns of X */
    int k;            /* columns of Y */
    const int32_t *stop; /* read before each row: nonzero returns FO_INTERRUPTED (NULL: never) */
} fo_csr_dims;

fo_status fo_csr_gram_d(const double *data, const int32_t *indices, const int32_t *indptr, const double *Y,
                        const double *w, fo_csr_dims dims, fo_moments *out);
fo_status fo_csr_gram_s(const float *data, const int32_t *indices, const int32_t *indptr, const float *Y,
                        const float *w, fo_csr_dims dims, fo_moments *out);

/* ---------------------------------------------------------------- optimizers (rules.h, epoch.c) */
/* Values pinned by tests/test_optim.py against fastopt.optim.Rule and fastopt.optim.Loss. */
typedef enum {
    FO_RULE_SGD = 0,
    FO_RULE_MOMENTUM = 1,
    FO_RULE_NESTEROV = 2,
    FO_RULE_ADAGRAD = 3,
    FO_RULE_RMSPROP = 4,
    FO_RULE_ADAM = 5,
    FO_RULE_ADAMW = 6
} fo_rule;

typedef enum {
    FO_LOSS_SQUARED = 0,     /* (r^2)/2 */
    FO_LOSS_ABSOLUTE = 1,    /* |r| */
    FO_LOSS_HUBER = 2        /* r^2/2 if |r| <= epsilon else epsilon*(|r| - epsilon/2) */
} fo_loss;

/* Hyperparameters of every rule (PyTorch names; rho is torch's RMSprop alpha). A rule reads only its own. */
typedef struct {
    double momentum;         /* momentum, nesterov, rmsprop (0 disables rmsprop's buffer) */
    double dampening;        /* momentum */
    double rho;              /* rmsprop: decay of the squared-gradient average */
    double beta1, beta2;     /* adam, adamw */
    double eps;              /* adagrad, rmsprop, adam, adamw: added outside the square root */
    double weight_decay;     /* L2 added to the gradient; decoupled (w *= 1 - lr*wd) in adamw */
    double lr_decay;         /* adagrad: lr / (1 + (t-1) lr_decay) */
    int centered;            /* rmsprop */
    int amsgrad;             /* adam, adamw */
} fo_hyper;

/* Optimizer state is (n_slots, n_params), row-major; rules.h documents each rule's slots. */
#define FO_MAX_SLOTS 3

/* One epoch of minibatch training: inputs, then outputs written by the kernel. */
typedef struct {
    const int64_t *order;    /* rows to visit, in this order (drawn in Python) */
    ptrdiff_t n_rows;        /* length of order */
    ptrdiff_t batch_size;
    fo_loss loss;
    double epsilon;          /* huber threshold */
    double clip_norm;        /* clip each minibatch gradient to this global L2 norm; <= 0 disables */
    double loss_limit;       /* a minibatch loss above this is divergence */
    double lr;               /* learning rate for the whole epoch (schedules change it between epochs) */
    int64_t t;               /* in: steps taken so far; out: steps taken after the epoch */
    double loss_out;         /* out: mean over the rows of sw_i * loss_i, each before its minibatch's step */
    int64_t bad_step;        /* out: 1-based step at which a non-OK status arose, else 0 */
    /* An epoch run in slices of rows (so that the caller can handle signals between them) is bit-identical to one
     * call: each slice starts from the loss summed over the earlier slices' rows and their count (0 and 0 for a
     * whole epoch), and loss_out divides the running sum by all the rows so far. */
    double loss_sum;         /* in: loss summed over the earlier rows of a sliced epoch; out: plus this call's */
    int64_t rows_before;     /* in: rows of the earlier slices */
    int positive;            /* clamp the weights (not the intercepts) at 0 after every step: projected steps */
    int64_t avg_start;       /* > 0: after every step t >= avg_start, avg += (params - avg) / (t - avg_start + 1) */
    void *avg;               /* (n_params) of the epoch's real type, the Polyak-Ruppert average; NULL: none */
    /* (k d) of the epoch's real type: each weight's own L2 coefficient, added to the (clipped) minibatch gradient
     * as lambda_p w_p before the rule steps (torch's coupled weight decay, per weight: the ridge under a
     * per-column scaling); h->weight_decay is then 0. NULL: none. The CSR epoch defers it for SGD, momentum and
     * Nesterov (each resting coordinate caught up by its own power of its step map), steps every coordinate for
     * the other rules (epoch_csr.c), and refuses it in SparseAdam mode. */
    const void *decay;
    /* With decay, the CSR epoch's choice for SGD, momentum and Nesterov: nonzero steps every coordinate instead of
     * deferring (the caller's, where d is small beside a minibatch's stored values: there every-coordinate
     * steps cost little and may run piped on two threads). The dense epoch ignores it. */
    int decay_every_step;
    /* A minibatch of fewer rows than this divides its summed gradient by pad_rows instead of its row count: as if
     * padded with rows of zero gradient (a streamed fit's chunk ends on such a minibatch; each row then weighs
     * 1 / pad_rows in its step, whatever the chunk's size). 0: every minibatch is its rows' mean. */
    ptrdiff_t pad_rows;
} fo_epoch_ctl;

/* One optimizer step on params[0:n]: the first n_decay entries receive weight decay. */
fo_status fo_step_d(fo_rule rule, const fo_hyper *h, double *params, const double *grad, double *state,
                    ptrdiff_t n, ptrdiff_t n_decay, int64_t t, double lr);
fo_status fo_step_s(fo_rule rule, const fo_hyper *h, float *params, const float *grad, float *state,
                    ptrdiff_t n, ptrdiff_t n_decay, int64_t t, double lr);

/* Scale grad[0:n] in place to global L2 norm at most max_norm (torch.nn.utils.clip_grad_norm_); returns the
 * norm before clipping. */
double fo_clip_grad_norm_d(double *grad, ptrdiff_t n, double max_norm);
double fo_clip_grad_norm_s(float *grad, ptrdiff_t n, double max_norm);

/* The weighted mean over rows[0:m] (rows NULL: 0 .. m-1) of sw_i sum_j loss(y_ij), the loss of the all-zero model
 * (sw NULL: unit weights), summed in double in row order; m > 0. */
double fo_mean_loss_zero_d(const double *Y, ptrdiff_t k, const int64_t *rows, ptrdiff_t m, const double *sw,
                           fo_loss loss, double epsilon);
double fo_mean_loss_zero_s(const float *Y, ptrdiff_t k, const int64_t *rows, ptrdiff_t m, const float *sw,
                           fo_loss loss, double epsilon);

/* Instruction sets of the epoch kernels, best last. fo_isa_get returns the one in use (the best the CPU and the
 * build support unless fo_isa_set chose another); fo_isa_set selects one, clamped to the best supported (a
 * negative value selects the best), and returns the selection. Results agree to rounding across instruction
 * sets and bit for bit within one. */
typedef enum {
    FO_ISA_BASELINE = 0,     /* SSE2 (any x86-64), or plain C elsewhere */
    FO_ISA_AVX2 = 1          /* AVX2 with FMA */
} fo_isa;
int fo_isa_get(void);
int fo_isa_set(int isa);

/* Two threads on one epoch (data-parallel, one exchange per step): every minibatch's gradient is summed in two
 * fixed halves, so results do not depend on the number of threads. The caller zeroes the struct, sets isa (an
 * fo_isa, the same for both threads), runs fo_epoch_* with it in one thread and, in another, fo_epoch_helper_*
 * with it, a copy of ctl, the same X, Y, sw and work, and its own copies of params and state (it takes the same
 * steps on them); the helper returns when the epoch does. When the helper has not begun its half some
 * microseconds after the calling thread has computed its own, or has not published it for FO_STALL_NS (it lost
 * its core: another process, or more busy threads than cores), the calling thread computes that half itself and
 * goes on alone, with the same arithmetic; the helper, once it runs again, stops and waits, and the calling
 * thread later copies its parameters and state to the helper's and the two go on together: a contended core
 * costs the epoch about that wait each time the helper loses it, not a wait per step. Fields after isa belong
 * to the kernels, except those the caller sets (below). A team's work
 * is 64-byte aligned and has fo_work_size(n_params, k, sizeof(real), 1) entries: each thread's buffers in whole
 * cache lines of their own. */
typedef struct {
    int64_t ready;           /* the last step whose half this thread has published */
    double loss[2];          /* its half's summed loss, by step parity */
    int64_t started;         /* the last step whose half this thread has begun */
    char pad[32];
} fo_team_part;

typedef struct {
    int isa;
    char pad0[60];
    fo_team_part part[2];
    /* written by the calling thread */
    int64_t abort;           /* set when the calling thread's epoch has returned */
    int64_t solo;            /* the number of times it has gone on alone */
    int64_t resume;          /* the number of those that it has ended, the helper's copies then set to its own */
    int64_t resume_start;    /* where the helper goes on: the row position, and the steps taken before */
    int64_t resume_t;
    int64_t late_from;       /* the first step at which a helper that has not begun its half counts as stalled */
    char pad1[16];
    int64_t parked;          /* written by the helper: the value of solo at which it stopped and waits */
    char pad2[56];
    /* set by the caller: the helper's copies of params and state (h_state_len entries), which the calling thread
     * overwrites with its own when the helper rejoins; solo_step (tests): the calling thread goes on alone at the
     * steps that are multiples of |solo_step|, as if the helper had stalled (0: only on a stall), and, if
     * solo_step < 0, waits for the helper to stop and takes it back at once */
    void *h_params;
    void *h_state;
    ptrdiff_t h_state_len;
    int64_t solo_step;
    /* reports: the first step at which the calling thread went on alone (0: none), the times the helper rejoined */
    int64_t went_solo;
    int64_t rejoined;
} fo_team;

/* How long a two-thread epoch's calling thread waits on its helper before it goes on alone (fo_team,
 * fo_csr_pipe): a hand-off takes microseconds, a lost core milliseconds (a scheduler's time slice). */
#define FO_STALL_NS 1000000
/* A stopped helper (fo_team) or producer (fo_csr_pipe) spins this long at a time before it naps (fo_nap). */
#define FO_PARK_HOT_NS 50000
/* A monotonic clock in nanoseconds (0 where the platform has none: then no wait counts as a stall). */
int64_t fo_clock_ns(void);
/* A stopped helper's nap between spells of spinning (about 50 microseconds). */
void fo_nap(void);
/* The steps a two-thread epoch's calling thread, alone again, waits before it next takes its helper back: twice
 * `backoff` (at most `most`) after a team that lasted fewer than `short_steps` steps, `least` after a longer one. */
int64_t fo_rejoin_backoff(int64_t backoff, int64_t lasted, int64_t short_steps, int64_t least, int64_t most);

/* Entries of an epoch's work array: 6 * n_params + 2 * k alone (team = 0); in a team, 8 * n_params + 3 * k (the
 * calling thread's buffers for going on alone), each buffer rounded up to whole 64-byte cache lines of entries
 * of `itemsize` bytes. */
ptrdiff_t fo_work_size(ptrdiff_t n_params, ptrdiff_t k, size_t itemsize, int team);

/* One fused epoch. X (n, d) and Y (n, k) row-major; sw (n) or NULL for unit weights (the caller normalises them
 * to mean 1 over the training rows). params = [W (k, d) row-major, b (k) if n_params == k*d + k].
 * work has fo_work_size(n_params, k, sizeof(real), team != NULL) entries. team is NULL for one thread, else see
 * fo_team. */
fo_status fo_epoch_d(fo_rule rule, const fo_hyper *h, fo_epoch_ctl *ctl, const double *X, const double *Y,
                     const double *sw, ptrdiff_t d, ptrdiff_t k, double *params, ptrdiff_t n_params,
                     double *state, double *work, fo_team *team);
fo_status fo_epoch_s(fo_rule rule, const fo_hyper *h, fo_epoch_ctl *ctl, const float *X, const float *Y,
                     const float *sw, ptrdiff_t d, ptrdiff_t k, float *params, ptrdiff_t n_params,
                     float *state, float *work, fo_team *team);
fo_status fo_epoch_helper_d(fo_rule rule, const fo_hyper *h, fo_epoch_ctl *ctl, const double *X, const double *Y,
                            const double *sw, ptrdiff_t d, ptrdiff_t k, double *params, ptrdiff_t n_params,
                            double *state, double *work, fo_team *team);
fo_status fo_epoch_helper_s(fo_rule rule, const fo_hyper *h, fo_epoch_ctl *ctl, const float *X, const float *Y,
                            const float *sw, ptrdiff_t d, ptrdiff_t k, float *params, ptrdiff_t n_params,
                            float *state, float *work, fo_team *team);

/* ---------------------------------------------------------------- sparse epoch (epoch_csr.c) */
/* One fused epoch over X in CSR form (n rows, d columns): values `data`, column `indices` (each in [0, d),
 * int32) and row pointers `indptr` (n + 1, int32); explicit zeros and unsorted columns are allowed, duplicate
 * columns within a row are not. The other arguments as fo_epoch's, plus: lazy (0: the exact rules; 1: Adam and
 * AdamW with torch.optim.SparseAdam's semantics, see epoch_csr.c, whose state keeps each parameter's two moments
 * side by side: m_i, v_i at state[2 i], state[2 i + 1], the first two rows' memory; AMSGrad's maximum in the
 * third row), n_slots (rows of state), stage_cap (stored
 * values the kernel may copy at a time to read the shuffled rows in order: any value in [0, 2^31) is correct;
 * about fo_csr_stage_rows(batch_size) times twice the mean row length is fast), work with fo_csr_work_size
 * entries, iwork with fo_csr_iwork_size, table with fo_csr_table_size (doubles), period (> 0: deferred updates
 * are split at the steps t that are multiples of period, so that an epoch run in calls that end there gives the
 * bits of one call; <= 0: never split). ctl's positive, avg_start/avg, loss_sum/rows_before as for fo_epoch.
 * One thread (two: fo_csr_pipe below). */
ptrdiff_t fo_csr_stage_rows(ptrdiff_t batch_size);
ptrdiff_t fo_csr_work_size(ptrdiff_t n_params, ptrdiff_t k, ptrdiff_t batch_size, ptrdiff_t stage_cap);
ptrdiff_t fo_csr_iwork_size(ptrdiff_t d, ptrdiff_t batch_size, ptrdiff_t stage_cap);
ptrdiff_t fo_csr_table_size(ptrdiff_t n_rows, ptrdiff_t batch_size, int64_t period);
fo_status fo_epoch_csr_d(fo_rule rule, const fo_hyper *h, fo_epoch_ctl *ctl, int lazy, const double *data,
                         const int32_t *indices, const int32_t *indptr, const double *Y, const double *sw,
                         ptrdiff_t d, ptrdiff_t k, double *params, ptrdiff_t n_params, double *state,
                         ptrdiff_t n_slots, double *work, int64_t *iwork, double *table, ptrdiff_t stage_cap,
                         int64_t period);
fo_status fo_epoch_csr_s(fo_rule rule, const fo_hyper *h, fo_epoch_ctl *ctl, int lazy, const float *data,
                         const int32_t *indices, const int32_t *indptr, const float *Y, const float *sw,
                         ptrdiff_t d, ptrdiff_t k, float *params, ptrdiff_t n_params, float *state,
                         ptrdiff_t n_slots, float *work, int64_t *iwork, double *table, ptrdiff_t stage_cap,
                         int64_t period);

/* A piped CSR epoch: two threads, the bits of one. A producer thread stages the shuffled rows block by block
 * (as fo_epoch_csr does) and finds each minibatch's touched columns T and its values' positions in T (step 1 of
 * fo_epoch_csr; with scattered steps, fo_csr_scatter, only checks the rows' indices); the calling thread, the
 * consumer, takes the steps on them. Arithmetic is the consumer's, in fo_epoch_csr's order, except in SparseAdam
 * mode's step with one output (elementwise over T) and in the steps on every coordinate, whose chunks either
 * thread may run (the same operations on each coordinate: the same bits). The stamps of deferred updates are the
 * consumer's too: it reads and sets them for the members of T the producer found, before catching them up. Every
 * setting may run piped, in a build with GNU atomics (fo_csr_pipe_available; else one thread).
 * With scattered steps the rows may come in fixed blocks (fixed), which either thread stages: the consumer
 * stages blocks ahead while it waits for one.
 * When the producer stalls, the consumer goes on alone and takes it back later (below: stage_cap).
 * The caller zeroes the struct, fills the blocks' arrays, cap, slots, scatter, fixed, period and stage_cap (and
 * solo_block in tests), runs fo_csr_produce_* on one thread and fo_epoch_csr_piped_* on another (the producer
 * returns once the consumer has). Each block: s_data, s_ind, s_pos, touched with cap entries; s_y (rows * k),
 * s_sw (rows); s_ptr, t_off (rows + 2) with rows = fo_csr_stage_rows(batch_size). */
typedef struct {
    void *s_data, *s_y, *s_sw;
    int32_t *s_ind, *s_ptr, *s_pos, *touched, *t_off;
    ptrdiff_t start, end;    /* the rows order[start:end) staged */
    int32_t bad;             /* the first malformed minibatch (counted in the block), or -1 */
    int64_t ready;           /* the number of the block last published in this buffer, plus one */
} fo_csr_block;

/* Staged blocks in flight between the producer and the consumer of a piped epoch: the producer may run up to three
 * blocks ahead. With two (one ahead) each thread waited on the other in turn on the sparse benchmark, whose SGD
 * epoch keeps both threads about equally busy; four made the two-thread SGD epoch 1.5-2.7% faster in five
 * alternating runs, and 6% faster during this machine's slow cross-core spells. */
#ifndef FO_CSR_PIPE_BLOCKS
#define FO_CSR_PIPE_BLOCKS 4
#endif

typedef struct {
    int64_t next;            /* fixed blocks: the first not yet claimed for staging */
    char pad0[56];
    int64_t consumed;        /* blocks the consumer has read */
    char pad1[56];
    int64_t abort;           /* set when the consumer has returned */
    char pad2[56];
    fo_csr_block block[FO_CSR_PIPE_BLOCKS];
    ptrdiff_t cap;           /* stored values a block holds: at least a minibatch's (b times the longest row) */
    void *slots;             /* the producer's marks: d entries of 4 bytes (int32) at least */
    int scatter;             /* fo_csr_scatter of the epoch's settings: the producer only stages and checks */
    int fixed;               /* with scatter only: block i is the rows order[i r : (i + 1) r), r =
                              * fo_csr_stage_rows(batch_size), and cap holds any r rows, so that either thread
                              * may stage it (the consumer stages blocks ahead while it waits) */
    int64_t period;          /* fo_epoch_csr's period (scattered steps under L2 fold their scale there) */
    /* Shared steps (SparseAdam mode, steps on every coordinate): the consumer posts a step's elementwise update in
     * chunks, and the producer, between its minibatches, takes chunks from the top while the consumer takes them
     * from the bottom (epoch_csr.c). */
    char pad3[64];
    int64_t help;            /* the chunks not yet claimed: [low 32 bits, high 32 bits) */
    char pad4[56];
    int64_t helped;          /* chunks the producer has finished, in all */
    char pad5[56];
    const void *help_job;    /* the posted step, and the function that runs chunk i of it */
    void (*help_run)(const void *job, ptrdiff_t i);
    /* Going on alone: when the producer stalls (FO_STALL_NS: it lost its core), the consumer goes on as the
     * one-thread epoch does, staging with stage_cap stored values (the caller's, as fo_epoch_csr's; its work and
     * iwork sized for it): the same bits. The producer, once it runs again, stops and waits (parked); the
     * consumer later takes it back at one of its own blocks' starts (not with fixed blocks), from block number
     * resume_block at row position resume_start. solo_block (tests; 0: none): the consumer goes on alone at the
     * block of that number (1-based) instead of taking it, and, if solo_block < 0, at every block whose number
     * is a multiple of -solo_block, taking the producer back as soon as it has stopped. went_solo, rejoined
     * (out): the first step at which the consumer went on alone (0: never), the times it took the producer
     * back. The consumer also goes on alone when the producer keeps up with it too slowly (fo_csr_pace: the
     * consumer waits for its blocks and one thread was faster). paced, stalls (out): the times it went on alone so,
     * and because the producer stalled (or solo_block). slow_ns (tests; 0: none): the producer spins this long
     * after each block it publishes. carry (in and out): the consumer's backoff when the last call ended with it
     * alone on its pace (0: the last call did not). A call given one starts alone, takes the producer back after
     * FO_CSR_REJOIN_MIN steps (once it has timed a window alone), and, if it leaves it again, waits twice that
     * backoff: in a slow spell the calls of a fit do not each learn anew that one thread is faster. Out: the
     * backoff if the call ends alone on its pace, else 0. */
    ptrdiff_t stage_cap;
    int64_t solo_block;
    int64_t went_solo;
    int64_t rejoined;
    int64_t paced;
    int64_t stalls;
    int64_t slow_ns;
    int64_t carry;
    int64_t solo;            /* the consumer: the times it has gone on alone */
    int64_t resume;          /* the consumer: the times it has taken the producer back */
    int64_t resume_block;
    ptrdiff_t resume_start;
    char pad7[32];
    int64_t parked;          /* the producer: the value of solo at which it stopped and waits */
    int64_t made;            /* the producer: the number of the next block it would have made, when it parked */
    char pad8[48];
} fo_csr_pipe;

/* The pace of a piped epoch's consumer, over windows of a few blocks of one kind (piped or alone; the first
 * block after a switch, which pays for it, is not counted): its time a stored value, and the share of a piped
 * window it spent waiting for blocks. A producer may keep up too slowly for two threads to pay: on this machine
 * the latency between the two cores sometimes rose from 50-60 to 330-350 ns a round trip (a ping-pong of one
 * line, for whole processes at a time), and SparseAdam mode's two-thread epoch on the sparse benchmark then took
 * 110-137 ms, its consumer waiting for blocks 40-55% of it, where one thread took 63 (and two, otherwise, 39,
 * waiting under 1%). So when the consumer of a piped window waited for more than a third of it, and a stored
 * value took over 1.25 times as long as in the last window alone (or none has been timed: it finds out), it goes
 * on alone, as when the producer stalls, until it has timed a window alone, and takes the producer back as then
 * (the backoff doubling while the teams it takes back stay short): the bits do not change. */
typedef struct {
    int64_t t0;     /* the window's start (ns; 0: none yet) */
    int64_t values; /* stored values of its blocks */
    int64_t waited; /* ns the consumer waited for them (piped) */
    int blocks;     /* blocks counted */
    int piped;      /* the window's kind */
    int measured;   /* a window alone has ended (the consumer clears it when it goes on alone on its pace) */
    double alone;   /* ns a stored value in the last window alone (0: none yet) */
} fo_csr_pace;
/* At the start of a block, at time now (ns): count the block before it (piped or not, its stored values, the ns
 * the consumer waited for it); 1 if the consumer, piped, is to go on alone. */
int fo_csr_pace_block(fo_csr_pace *pace, int piped, int64_t values, int64_t waited, int64_t now);

int fo_csr_pipe_available(void);
/* Settings whose steps the CSR epoch scatters row by row, without finding T (plain SGD, one output, no clipping,
 * projection, running average or per-weight decay; an L2 term by a global scale factor): the same update as the
 * gradient's, summed in another order (epoch_csr.c). */
int fo_csr_scatter(fo_rule rule, const fo_hyper *h, const fo_epoch_ctl *ctl, int lazy, ptrdiff_t k);
void fo_csr_produce_d(fo_csr_pipe *pipe, const fo_epoch_ctl *ctl, ptrdiff_t d, ptrdiff_t k, const double *data,
                      const int32_t *indices, const int32_t *indptr, const double *Y, const double *sw);
void fo_csr_produce_s(fo_csr_pipe *pipe, const fo_epoch_ctl *ctl, ptrdiff_t d, ptrdiff_t k, const float *data,
                      const int32_t *indices, const int32_t *indptr, const float *Y, const float *sw);
fo_status fo_epoch_csr_piped_d(fo_csr_pipe *pipe, fo_rule rule, const fo_hyper *h, fo_epoch_ctl *ctl, int lazy,
                               const double *data, const int32_t *indices, const int32_t *indptr, const double *Y,
                               const double *sw, ptrdiff_t d, ptrdiff_t k, double *params, ptrdiff_t n_params,
                               double *state, ptrdiff_t n_slots, double *work, int64_t *iwork, double *table);
fo_status fo_epoch_csr_piped_s(fo_csr_pipe *pipe, fo_rule rule, const fo_hyper *h, fo_epoch_ctl *ctl, int lazy,
                               const float *data, const int32_t *indices, const int32_t *indptr, const float *Y,
                               const float *sw, ptrdiff_t d, ptrdiff_t k, float *params, ptrdiff_t n_params,
                               float *state, ptrdiff_t n_slots, float *work, int64_t *iwork, double *table);

/* ---------------------------------------------------------------- row orders (shuffle.c) */
/* out = a uniform random permutation of rows[0:n], a function of key alone (see shuffle.c); out may be rows; rows
 * NULL stands for 0 .. n-1. */
void fo_shuffle(const int64_t *rows, ptrdiff_t n, uint64_t key, int64_t *out);
/* fo_shuffle that also publishes, every few thousand positions, how many leading positions of out are final (*done,
 * stored with release order; n at the end), so that another thread may read those while the rest is drawn. */
void fo_shuffle_tracked(const int64_t *rows, ptrdiff_t n, uint64_t key, int64_t *out, int64_t *done);

/* ---------------------------------------------------------------- Krylov solvers (krylov.c) */
/* The fused pass over a segment of rows (see krylov.c): a_i = s_i (x_i . v + c y_i - shift) with s_i = sw[i] (the
 * square root of the sample weight; sw == NULL means 1) and y_i = y[i * y_stride] (y == NULL means 0); writes
 * z = sum_i s_i a_i x_i (d doubles, overwritten), out[0] = sum_i a_i^2, out[1] = sum_i s_i a_i, and, unless zz is
 * NULL, zz = sum_i s_i a_i x_i^2 elementwise (the column sums of squares the preconditioner needs). CSR: indptr has
 * n + 1 absolute offsets into data and indices, whose column indices lie in [0, d). */
fo_status fo_krylov_dense_d(const double *X, const double *y, ptrdiff_t y_stride, const double *sw, ptrdiff_t n,
                            ptrdiff_t d, const double *v, double c, double shift, double *z, double *zz,
                            double *out);
fo_status fo_krylov_dense_s(const float *X, const float *y, ptrdiff_t y_stride, const double *sw, ptrdiff_t n,
                            ptrdiff_t d, const double *v, double c, double shift, double *z, double *zz,
                            double *out);
fo_status fo_krylov_csr_d(const double *data, const int32_t *indices, const int32_t *indptr, const double *y,
                          ptrdiff_t y_stride, const double *sw, ptrdiff_t n, ptrdiff_t d, const double *v, double c,
                          double shift, double *z, double *zz, double *out);
fo_status fo_krylov_csr_s(const float *data, const int32_t *indices, const int32_t *indptr, const float *y,
                          ptrdiff_t y_stride, const double *sw, ptrdiff_t n, ptrdiff_t d, const double *v, double c,
                          double shift, double *z, double *zz, double *out);
/* The moments of CSR rows in one read: with s_i = sw[i] (NULL: 1), e0_i = s_i^2 and, for each of the k targets
 * (Y row-major, n x k), a_ij = s_i (Y_ij - shift_j), e_ij = s_i a_ij: Z (d rows of 2 + k) = for each column,
 * {sum_i e0_i x_i, sum_i e0_i x_i^2, sum_i e_ij x_i ...}, out = {sum_i a_ij^2, sum_i e_ij} for each target j;
 * e is k doubles of work space. Bit for bit the fused passes with v = 0 that chunk_moments made before. */
fo_status fo_krylov_moments_csr_d(const double *data, const int32_t *indices, const int32_t *indptr, const double *Y,
                                  ptrdiff_t k, const double *sw, ptrdiff_t n, ptrdiff_t d, const double *shift,
                                  double *Z, double *e, double *out);
fo_status fo_krylov_moments_csr_s(const float *data, const int32_t *indices, const int32_t *indptr, const float *Y,
                                  ptrdiff_t k, const double *sw, ptrdiff_t n, ptrdiff_t d, const double *shift,
                                  double *Z, double *e, double *out);
/* The fused d-vector updates of the CGLS and LSQR iterations (krylov.c); the arrays must not overlap. Z holds a
 * pass's S segment parts, S rows of stride ld, summed in row order. A diagonal (L2, L) is an array, or, when NULL,
 * the constant lam2, lam in every entry (0: none). */
double fo_cgls_step(ptrdiff_t d, ptrdiff_t S, const double *Z, ptrdiff_t ld, double step, double se, const double *m,
                    const double *L2, double lam2, const double *p, double *x, double *s);
void fo_cgls_direction(ptrdiff_t d, double beta, const double *s, double *p, const double *m, const double *L2,
                       double lam2, double *out);
void fo_lsqr_before(ptrdiff_t d, double alpha, const double *v, const double *L, double lam, double *g, double *ub,
                    const double *m, double *out);
double fo_lsqr_after(ptrdiff_t d, ptrdiff_t S, const double *Z, ptrdiff_t ld, double beta, double bdiv, double se,
                     const double *m, double *g, double *ub, const double *L, double lam, double *v);
void fo_lsqr_update(ptrdiff_t d, double adiv, double cx, double cw, double *v, double *x, double *w);
void fo_lsqr_next(ptrdiff_t d, double adiv, double cx, double cw, double *v, double *x, double *w, double alpha,
                  const double *L, double lam, double *g, double *ub, const double *m, double *out);

/* ---------------------------------------------------------------- Huber Newton (huber.c) */
/* The fused pass over a segment of rows (see huber.c), at the point (w, b) with threshold eps (may be +inf):
 * r[i] = x_i . w + b - y[i]; psi_i = r_i clipped to [-eps, eps]; with s_i = s[i] (s == NULL means 1) writes
 * g = sum_i s_i psi_i x_i (d doubles, overwritten), mask[i] = [|r_i| <= eps] (unless mask is NULL), and
 * out[0] = sum_i s_i huber_eps(r_i), out[1] = sum_i s_i psi_i, out[3] = the number of inliers. Unless dH is NULL:
 * the rows whose mask differs from prev[i] (prev == NULL means all 0) are counted in out[2], and
 * dH (p x p, row-major, overwritten, symmetric) = sum_{entering} s_i z_i z_i^T - sum_{leaving} s_i z_i z_i^T,
 * moved (p, overwritten) = sum_{changed} s_i z_i^2, with z_i = [x_i - centre, 1] (p = d + 1) or x_i - centre
 * (p = d); work holds 2 * FO_HUBER_GATHER * p doubles (two buffers of gathered rows, each flushed by one syrk:
 * 256 rows, long enough for syrk to run near its peak, short enough for a buffer to stay in L2 at d ~ 100). */
#define FO_HUBER_GATHER 256
typedef struct {
    ptrdiff_t n;      /* rows */
    ptrdiff_t d;      /* columns of X */
    int p;            /* d + 1 (intercept) or d */
} fo_huber_dims;

fo_status fo_huber_pass_d(const fo_blas *blas, const double *X, const double *y, const double *s, fo_huber_dims dims,
                          const double *w, double b, double eps, const double *centre, const uint8_t *prev,
                          uint8_t *mask, double *r, double *g, double *dH, double *moved, double *work, double *out);
fo_status fo_huber_pass_s(const fo_blas *blas, const float *X, const double *y, const double *s, fo_huber_dims dims,
                          const double *w, double b, double eps, const double *centre, const uint8_t *prev,
                          uint8_t *mask, double *r, double *g, double *dH, double *moved, double *work, double *out);

#endif /* FASTOPT_H */
