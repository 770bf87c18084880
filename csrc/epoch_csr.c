/* epoch_csr.c: the fused minibatch epoch over a CSR matrix, for float64 and float32.
 *
 * The same objective, minibatches, losses, clipping, weighting and step rules (rules.h) as the dense epoch
 * (epoch.c); only the storage of X differs, so a sparse fit equals the dense fit of the same matrix to rounding.
 * The type-independent parts (sizes of the workspaces, the catch-up tables) live here; the epoch itself is
 * written once in epoch_csr_body.h and compiled for each real type below.
 *
 * Cost per step. A minibatch touches the features T (the union of its rows' stored columns). Its rows' nonzeros
 * are read once from memory (staged in visiting order; T is found through one stamp per feature, the sweeps
 * after it find the values in cache), and the step is applied to the touched coordinates and the intercepts
 * only, in place, with the rules.h step's operations for each rule. The other coordinates receive a
 * zero loss gradient, and for most rules the effect of s such steps has a closed form, applied when a coordinate
 * is next read (and at the end of the call): the "just-in-time" update of sparse SGD (Bottou 2012, "Stochastic
 * gradient descent tricks"; Langford, Li & Zhang 2009) made exact:
 *   SGD with L2:          w <- (1 - lr wd)^s w
 *   momentum, Nesterov:   (v, w) <- A^s (v, w), A the 2x2 linear map of one step with g = wd w (wd may be 0)
 *   RMSProp without L2:   r <- rho^s r, a <- rho^s a, and with momentum (b, w) <- A^s (b, w)
 *   AdaGrad without L2, SGD without L2: untouched coordinates do not move.
 * A step then costs O(nnz of the minibatch * k + |T| * k * slots). Plain SGD with one output and no clipping,
 * projection, running average or per-weight decay (fo_csr_scatter) needs no T at all: its step is linear in the
 * rows' terms, so it is taken row by row, w_j -= lr (c_i / |B|) x_ij in the rows' order, after all the minibatch's
 * residuals (the same update, its sums in another order), and an L2 term by a global scale factor (w = s v);
 * the gradient is only bounded, |g_j| <= sum_i |c_i| |x_i|_1 / |B|, for the finiteness check, and formed where
 * that bound is too large to decide. Finding T through the stamps was the largest share of that epoch after the
 * staging copy (sparse benchmark, one thread: 94-121 -> 49-62 ms an epoch, two threads 39-81 -> 25-39 ms,
 * alternating builds; with L2, whose stamps also brought each coordinate up to date, the estimator's epoch
 * 200-266 -> 43-63 ms). The learning rate is constant within a call,
 * so the powers A^s are tabulated once per call (s up to the call's step count, or the period below), in double.
 * The rules whose untouched coordinates move nonlinearly (AdaGrad and RMSProp with L2, Adam and AdamW) take
 * every step on all coordinates, exactly as the dense epoch does: O(d k) a step. FO_SPARSE_LAZY instead gives
 * Adam and AdamW the semantics of torch.optim.SparseAdam: moments and weights change only where the minibatch
 * loss gradient is nonzero, with SparseAdam's arithmetic (denominator sqrt(v) + eps, step size
 * lr sqrt(1 - beta2^t) / (1 - beta1^t)); L2 (coupled for Adam, decoupled for AdamW) and AMSGrad act on the same
 * coordinates. The first step of a fit (t = 1: momentum buffers start as the gradient) is taken densely.
 *
 * A per-weight decay (ctl->decay: the ridge under a per-column scaling, decay_p w_p added to the clipped gradient
 * as the dense epoch does) has no shared table: each coordinate's map differs. SGD, momentum and Nesterov then
 * catch a coordinate up by its own power A_p^s (and, with the running average, its own geometric sums), found by
 * binary powering in O(log s) (fo_csr_power_row); projected momentum and Nesterov, and the rules that have no
 * closed form under L2, step every coordinate (O(d k) a step); SparseAdam mode does not take it.
 *
 * Projected steps (ctl->positive: weights clamped at 0 after every step) stay exact and lazy: a resting weight
 * under SGD with L2 keeps its sign (f = 1 - lr wd > 0; else every step is dense), and under momentum, Nesterov
 * and RMSProp's momentum without L2 it moves monotonically, w_s = w + C_s v, so the first step at which it would
 * cross 0 is found by bisection in the table and w stays 0 from there (v does not depend on w without L2). With
 * L2 the pair (v, w) may turn and cross 0 repeatedly: those combinations step every coordinate (O(d) a step). A
 * call that finds a negative weight (a warm start) takes its first step on every coordinate, which projects it.
 *
 * Polyak-Ruppert averaging (ctl->avg from step avg_start; as scikit-learn's sparse SGD keeps its average lazily
 * through `wscale` and `average_b`/`average_a`) uses the count form c_t avg_t = c_{t-1} avg_{t-1} + w_t: over a
 * rest of s steps, sum_j w_j is a closed form in the same tables (prefix sums of A^i's entries and of f^i; s w
 * for resting weights that do not move), so the average is caught up with its coordinate, in O(1).
 *
 * Two threads (fo_csr_pipe). Step 1 (staging the shuffled rows, finding T and each value's position in it) reads
 * only indices and depends on nothing the steps change; a second thread can then do it a block ahead
 * (fo_csr_produce), while the calling thread takes the steps on the blocks it is handed, in the one-thread order:
 * the same bits. The stamps of deferred updates stay with the calling thread, which reads and sets them for the
 * members of T it is handed before catching them up (epoch on the sparse benchmark, two threads against one:
 * momentum 0.87, averaged SGD 0.80, each weight's own decay 0.93; these ran on one thread before). With scattered
 * steps the second thread only stages the rows and checks their indices. Staging and step 1 were about 40% of an
 * SGD epoch on the sparse benchmark (one thread 27 ms, two 15 ms). A hand-off per block of fo_csr_stage_rows rows,
 * FO_CSR_PIPE_BLOCKS blocks in flight. SparseAdam mode's step (one output) is elementwise over T, and its random
 * accesses to the moments and weights bounded the calling thread, which waited on one core's outstanding misses
 * while the second thread idled about 40% of the time: the step is posted in chunks that both threads claim
 * (fo_csr_help_share), each chunk's moments requested for writing as it is stepped (epoch on the sparse benchmark,
 * paired against the previous build: 0.54-0.58 on two threads; the requests alone 0.72-0.76 on one and two). The
 * steps on every coordinate (csr_dense_step: exact Adam, AdaGrad and RMSProp under L2) are shared the same way.
 * With scattered steps the producer was the slower (its random reads of the shuffled rows at one core's
 * outstanding misses; the consumer yielded about a fifth of its time): their blocks are fixed, r =
 * fo_csr_stage_rows rows each (the caller makes room for any r rows: fo_csr_pipe.fixed), so that either thread
 * may stage one, and the consumer, while it waits for a block, claims and stages the next unclaimed one
 * (csr_pipe_stage_ahead; epoch on the sparse benchmark, paired against the previous build in one process, two
 * threads: bare kernel 0.77-1.00, most rounds 0.86-0.96, estimator 0.89-0.97; about an eighth of the blocks
 * staged by the consumer). A producer that lost its core (another process, more busy threads than cores) held
 * the consumer at every block: beside a spinning process the two-thread epoch took 1.7-2.3x one thread's time
 * (SparseAdam mode, momentum). After FO_STALL_NS without a block the consumer goes on as one thread does, and
 * takes the producer back later at one of its own blocks (fo_csr_pipe_park, fo_csr_pipe_rejoin): 1.05-1.15x. A
 * producer that keeps up too slowly (slow cross-core spells) is left the same way, on the consumer's pace
 * (fo_csr_pace in fastopt.h).
 *
 * Slices. An epoch may run in several calls (so that Python can handle Ctrl-C between them). Catch-ups are
 * split at the steps that are multiples of `period`, and a call brings every coordinate up to date at its end;
 * so calls that end at such steps take the same segments, hence the same bits, as one call with that period.
 */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "fastopt.h"

#define FO_CSR_PREFETCH(p) FO_PREFETCH_HINT(p, 0, 2) /* into L2: a step's lines overflow L1 */
#define FO_CSR_PREFETCH_W(p) FO_PREFETCH_HINT(p, 1, 3)

/* Rows ahead whose values the staging copy prefetches (measured on 200,000 shuffled rows of 30 values: the copy
 * took 7.2, 5.5, 4.4 and 4.4 ms at 4, 8, 16 and 24 rows ahead). */
#define FO_CSR_AHEAD 16

/* Stored values ahead whose marks the producer of a piped epoch requests, for writing, into L1 (fo_csr_produce):
 * without it the producer waited on each mark, and the two-thread SGD epoch on the sparse benchmark took 18 ms
 * instead of 15; with 8-byte stamps requested into L2, 32, 64 and 128 ahead measured alike; with 4-byte marks
 * requested for writing, 128 and 256 ahead 7-8% faster than 64 (alternating builds). */
#define FO_CSR_PIPE_AHEAD 128

/* Shared steps (fo_csr_help_share): coordinates a chunk, and the share of the unclaimed chunks the consumer claims
 * at a time (at least one). The same epochs measured alike with chunks of 64 and 256 and with shares 1/2 and 1/8. */
#define FO_CSR_HELP_CHUNK 128
#define FO_CSR_HELP_SPLIT 4
/* Coordinates a chunk of a step on every coordinate (csr_dense_step): exact Adam's epoch on the sparse benchmark
 * (2^18 columns), paired against one thread's step, 0.585 with chunks of 4,096 and 0.55 with 16,384. */
#define FO_CSR_DENSE_CHUNK 16384

/* Members of T ahead whose moments SparseAdam's step requests for writing, into L1 (csr_adam_range); step 3 has
 * requested them into L2 (piped: those of the first half of T only, the half the consumer is likely to step). */
#define FO_CSR_ADAM_AHEAD 16

/* Members of T ahead whose weights (and state) the catch-up loop requests (fo_csr_epoch's step 1). */
#define FO_CSR_CATCH_AHEAD 16

/* Catch-ups under each weight's own decay (SGD, momentum, Nesterov) collected before their powers are taken
 * together (csr_batch_flush). */
#define FO_CSR_OWN_BATCH 64
/* Steps a call must have for them to be batched: in shorter calls the rests are short, and one catch-up at a time
 * costs less (SGD partial_fit under a ridge on hashed rows, median per call, scalar against batched: 100 rows,
 * 2 steps, 3.8 against 4.1 ms; 500 rows 5.1 against 5.2; 1,000 rows, 16 steps, 6.5 against 6.3). */
#define FO_CSR_OWN_BATCH_MIN 16

/* torch.nn.utils.clip_grad_norm_ adds this to the norm before dividing (as epoch.c). */
#define FO_CSR_CLIP_EPS 1e-6

/* fo_csr_catch's `decay`: 0 none, 1 each weight's own (deferred where a rule can), 2 the same stepped on every
 * coordinate (fo_epoch_ctl.decay_every_step). */
static int fo_csr_decay_kind(const fo_epoch_ctl *c) { return c->decay == NULL ? 0 : c->decay_every_step ? 2 : 1; }

/* Entries of one catch-up table row s: the 2x2 map A^s = (a, b; c, e), the scalar factor f^s, and the sums over
 * i = 1..s of A^i's c and e and of f^i (the running average's closed form). */
#define FO_CSR_TAB 8

/* Rows staged at a time: whole minibatches, about FO_CSR_STAGE_ROWS rows (a block's values stay in L2 while its
 * minibatches are trained on: 512 rows of 30 values take 180 KB). */
#define FO_CSR_STAGE_ROWS 512

ptrdiff_t fo_csr_stage_rows(ptrdiff_t batch_size)
{
    if (batch_size < 1) return 1;
    const ptrdiff_t per = (FO_CSR_STAGE_ROWS + batch_size - 1) / batch_size;
    return per * batch_size;
}

ptrdiff_t fo_csr_work_size(ptrdiff_t n_params, ptrdiff_t k, ptrdiff_t batch_size, ptrdiff_t stage_cap)
{
    return (3 + FO_MAX_SLOTS) * n_params + (batch_size + 1) * k + stage_cap + fo_csr_stage_rows(batch_size) * (k + 1) +
           (batch_size > 0 ? batch_size : 0);
}

/* Per feature, in one 8-byte slot so that one random access finds both: the step (counted from the call's
 * start) that its coordinates are up to date with, and its position in the current minibatch's T. The slots
 * also find T's members without a separate pass: a feature joins T when its stamp is not the current step. */
typedef struct {
    int32_t last;
    int32_t pos;
} fo_csr_slot;

ptrdiff_t fo_csr_iwork_size(ptrdiff_t d, ptrdiff_t batch_size, ptrdiff_t stage_cap)
{
    /* d slots, T and a row's positions in T (int32), then the staged indices, row pointers and the positions in T
     * of a staged minibatch's values (int32) */
    return 2 * d + (2 * stage_cap + fo_csr_stage_rows(batch_size) + 3) / 2;
}

ptrdiff_t fo_csr_table_size(ptrdiff_t n_rows, ptrdiff_t batch_size, int64_t period)
{
    ptrdiff_t steps = batch_size > 0 ? (n_rows + batch_size - 1) / batch_size : 0;
    if (period > 0 && period < steps) steps = (ptrdiff_t)period;
    return FO_CSR_TAB * (steps + 1);
}

/* How untouched coordinates are brought up to date. */
typedef enum {
    FO_CATCH_NONE = 0,     /* they do not move */
    FO_CATCH_SCALE = 1,    /* w *= f^s (SGD with L2) */
    FO_CATCH_PAIR = 2,     /* (slot 0, w) <- A^s (momentum, Nesterov) */
    FO_CATCH_RMS = 3,      /* slots 0, 1 *= rho^s; with momentum (slot 2, w) <- A^s */
    FO_CATCH_DENSE = 4     /* no closed form: every step on every coordinate */
} fo_catch;

/* With projected steps (positive) a resting weight is clamped after every step: SGD's w *= f stays >= 0 when
 * f > 0, and the momentum rules without L2 move w monotonically (w + C_s v, C_s of one sign), so that the first
 * step at which it would cross 0 is found by bisection and w stays 0 from there. With L2 the pair (v, w) may
 * turn and cross 0 several times: no closed form, every step on every coordinate. */
static fo_catch fo_csr_catch(fo_rule rule, const fo_hyper *h, int lazy, int positive, double lr, int decay)
{
    if (decay == 2) return FO_CATCH_DENSE; /* fo_epoch_ctl.decay_every_step */
    if (decay) /* each weight's own decay: no shared table, each coordinate its own power (csr_power_row) */
        switch (rule) {
        case FO_RULE_SGD: return FO_CATCH_SCALE; /* a factor f_p <= 0 under projection: 0 after one step */
        case FO_RULE_MOMENTUM:
        case FO_RULE_NESTEROV: return positive ? FO_CATCH_DENSE : FO_CATCH_PAIR;
        default: return FO_CATCH_DENSE;
        }
    const int wd = h->weight_decay != 0;
    switch (rule) {
    case FO_RULE_SGD:
        if (!wd) return FO_CATCH_NONE;
        return positive && !(1.0 - lr * h->weight_decay > 0) ? FO_CATCH_DENSE : FO_CATCH_SCALE;
    case FO_RULE_MOMENTUM:
    case FO_RULE_NESTEROV: return positive && wd ? FO_CATCH_DENSE : FO_CATCH_PAIR;
    case FO_RULE_ADAGRAD: return wd ? FO_CATCH_DENSE : FO_CATCH_NONE;
    case FO_RULE_RMSPROP: return wd ? FO_CATCH_DENSE : FO_CATCH_RMS;
    case FO_RULE_ADAM:
    case FO_RULE_ADAMW: return lazy ? FO_CATCH_NONE : FO_CATCH_DENSE;
    }
    return FO_CATCH_DENSE;
}

/* One zero-gradient step's 2x2 map A = (a, b; c, e) on (buffer, w) and scalar factor f, for weight decay wd
 * (fo_csr_tables' table row 1). */
static void fo_csr_step_map(fo_rule rule, const fo_hyper *h, double lr, double wd, double *m)
{
    double a = 1, b = 0, c = 0, e = 1, f = 1;
    const double mu = h->momentum;
    switch (rule) {
    case FO_RULE_SGD: f = 1.0 - lr * wd; break;
    case FO_RULE_MOMENTUM: { /* v' = mu v + (1 - damp) wd w;  w' = w - lr v' */
        const double dw = (1.0 - h->dampening) * wd;
        a = mu, b = dw, c = -lr * mu, e = 1.0 - lr * dw;
        break;
    }
    case FO_RULE_NESTEROV: /* v' = mu v + wd w;  w' = w - lr (wd w + mu v') */
        a = mu, b = wd, c = -lr * mu * mu, e = 1.0 - lr * wd - lr * mu * wd;
        break;
    case FO_RULE_RMSPROP: /* b' = mu b;  w' = w - lr b';  r' = rho r */
        a = mu, b = 0, c = -lr * mu, e = 1;
        f = h->rho;
        break;
    default: break;
    }
    m[0] = a, m[1] = b, m[2] = c, m[3] = e, m[4] = f;
}

/* x where the low bit of s is set, else y: a select on the bit patterns, which compiles without a branch (a
 * conditional expression compiled to one, mispredicted on the random bits of the exponents: two thirds of an
 * epoch of SGD under each weight's own decay). */
static inline double fo_csr_choose(double x, double y, uint64_t s)
{
    uint64_t bx, by;
    memcpy(&bx, &x, sizeof bx);
    memcpy(&by, &y, sizeof by);
    const uint64_t mask = (uint64_t)0 - (s & 1);
    bx = (bx & mask) | (by & ~mask);
    memcpy(&x, &bx, sizeof x);
    return x;
}

static inline double fo_csr_pick(double b, uint64_t s) { return fo_csr_choose(b, 1.0, s); }

/* f^s by binary powering (fo_csr_power_row's scalar part, alone: SGD without the running average), a factor 1
 * where a bit of s is clear (exact, so the same bits as skipping it) rather than a branch on the bits, which vary
 * at random from one catch-up to the next. (A loop of a fixed count, the longest rest's bit length, against this
 * one, which ends at s's own: the same times on the sparse benchmark within its noise.) */
static inline double fo_csr_power(double f, int64_t s)
{
    double p = 1, b = f;
    for (; s > 0; s >>= 1) {
        p *= (s & 1) ? b : 1.0;
        b = b * b;
    }
    return p;
}

/* Features a chunk of the passes at a call's end (csr_own_scale_rested, csr_own_close and theirs): a chunk's
 * powers and maps stay in L1. */
#define FO_CSR_RESTED 512

/* p[r] = f[r]^s[r] for r < m (m <= FO_CSR_RESTED), with fo_csr_power's products, so its bits: bit by bit of
 * the exponents (`bits` their union) across the batch, a loop the compiler vectorises, where one catch-up at a
 * time waited on its chain of squares. Beyond an exponent's own length its factors are 1, exact. (SGD under
 * each weight's own decay on the sparse benchmark's data, alternating builds: one thread 304-321 -> 139-155 ms
 * an epoch, two threads 273-296 -> 114-128; the same bits.) */
#define FO_CSR_POWERS(name)                                                                                        \
    static void name(const double *restrict f, const uint64_t *restrict s, double *restrict p, ptrdiff_t m,        \
                     uint64_t bits)                                                                              \
    {                                                                                                            \
        double b[FO_CSR_RESTED];                                                                                \
        for (ptrdiff_t r = 0; r < m; r++) p[r] = 1, b[r] = f[r];                                                 \
        for (int sh = 0; bits; bits >>= 1, sh++)                                                                 \
            for (ptrdiff_t r = 0; r < m; r++) {                                                                  \
                p[r] *= fo_csr_pick(b[r], s[r] >> sh);                                                           \
                b[r] = b[r] * b[r];                                                                              \
            }                                                                                                    \
    }
FO_CSR_POWERS(fo_csr_powers_base)
#if FO_AVX2_DISPATCH
FO_TARGET_AVX2_BEGIN
FO_CSR_POWERS(fo_csr_powers_avx2)
FO_TARGET_AVX2_END
#endif
#undef FO_CSR_POWERS

static void fo_csr_powers(const double *f, const uint64_t *s, double *p, ptrdiff_t m, uint64_t bits)
{
#if FO_AVX2_DISPATCH
    if (fo_isa_get() == FO_ISA_AVX2) {
        fo_csr_powers_avx2(f, s, p, m, bits);
        return;
    }
#endif
    fo_csr_powers_base(f, s, p, m, bits);
}

/* (v, w) <- A^s (v, w), A = (m[0], m[1]; m[2], m[3]), by binary powering applied to the vector: where a bit of s
 * is set, (v, w) <- A^(2^j) (v, w). Four products a set bit where the row's A^s (fo_csr_power_row) took eight,
 * and the loop ends at s's own bit length (its work per bit is large beside the exit's misprediction): momentum's
 * own-decay catch-ups without the running average that a period splits (the others: fo_csr_pair_powers). */
static inline void fo_csr_power_apply(const double *m, int64_t s, double *v, double *w)
{
    double B0 = m[0], B1 = m[1], B2 = m[2], B3 = m[3], x = *v, y = *w;
    while (s > 0) {
        if (s & 1) {
            const double x1 = B0 * x + B1 * y, y1 = B2 * x + B3 * y;
            x = x1, y = y1;
        }
        s >>= 1;
        if (s > 0) {
            const double b0 = B0 * B0 + B1 * B2, b1 = B0 * B1 + B1 * B3;
            const double b2 = B2 * B0 + B3 * B2, b3 = B2 * B1 + B3 * B3;
            B0 = b0, B1 = b1, B2 = b2, B3 = b3;
        }
    }
    *v = x, *w = y;
}

/* (v[r], w[r]) <- A_r^s[r] (v[r], w[r]) for r < m, A_r = (a[r], b[r]; c[r], e[r]), with
 * fo_csr_power_apply's products, so its bits: bit by bit of the exponents (`bits` their union) across the batch
 * in a loop the compiler vectorises, each product kept where the exponent's bit is set (fo_csr_choose). The
 * squares past an exponent's length are never kept, whatever they hold. (Under each weight's own decay on the
 * sparse benchmark's data, alternating builds, an epoch: momentum 452 -> 297 ms on one thread, 424 -> 268 on
 * two; Nesterov 472 -> 279 and 428 -> 258; the same bits.) */
#define FO_CSR_PAIR_POWERS(name)                                                                                   \
    static void name(double *restrict a, double *restrict b, double *restrict c, double *restrict e,              \
                     const uint64_t *restrict s, double *restrict v, double *restrict w, ptrdiff_t m,              \
                     uint64_t bits)                                                                              \
    {                                                                                                            \
        for (int sh = 0; bits; bits >>= 1, sh++)                                                                 \
            for (ptrdiff_t r = 0; r < m; r++) {                                                                  \
                const double B0 = a[r], B1 = b[r], B2 = c[r], B3 = e[r], x = v[r], y = w[r];                     \
                const double x1 = B0 * x + B1 * y, y1 = B2 * x + B3 * y;                                         \
                v[r] = fo_csr_choose(x1, x, s[r] >> sh);                                                         \
                w[r] = fo_csr_choose(y1, y, s[r] >> sh);                                                         \
                a[r] = B0 * B0 + B1 * B2, b[r] = B0 * B1 + B1 * B3;                                              \
                c[r] = B2 * B0 + B3 * B2, e[r] = B2 * B1 + B3 * B3;                                              \
            }                                                                                                    \
    }
FO_CSR_PAIR_POWERS(fo_csr_pair_powers_base)
#if FO_AVX2_DISPATCH
FO_TARGET_AVX2_BEGIN
FO_CSR_PAIR_POWERS(fo_csr_pair_powers_avx2)
FO_TARGET_AVX2_END
#endif
#undef FO_CSR_PAIR_POWERS

static void fo_csr_pair_powers(double *a, double *b, double *c, double *e, const uint64_t *s, double *v, double *w,
                               ptrdiff_t m, uint64_t bits)
{
#if FO_AVX2_DISPATCH
    if (fo_isa_get() == FO_ISA_AVX2) {
        fo_csr_pair_powers_avx2(a, b, c, e, s, v, w, m, bits);
        return;
    }
#endif
    fo_csr_pair_powers_base(a, b, c, e, s, v, w, m, bits);
}

/* A table row (FO_CSR_TAB entries, as fo_csr_tables') for exponent s >= 0 of the one-step map m (a, b, c, e, f),
 * by binary powering: (P, S) for a run of n steps, P = A^n and S = sum_{i=1..n} A^i, joins a run's (P', S')
 * as (P P', S + P S') (the powers of A commute), and the runs of 2^j steps double the same way; the scalar f
 * alike. About 2 log2(s) products of 2x2 matrices where the shared table takes one lookup: the price of each
 * weight's own decay (fo_epoch_ctl.decay), whose map differs from coordinate to coordinate. With `sums` 0 the
 * sums (the running average's) are left out. Relative error about 2 log2(s) * 2^-53. */
static void fo_csr_power_row(const double *m, int64_t s, int sums, double *row)
{
    double P[4] = {1, 0, 0, 1}, S[4] = {0, 0, 0, 0}, pf = 1, sf = 0;     /* the result: the empty run */
    double B[4] = {m[0], m[1], m[2], m[3]}, T[4] = {m[0], m[1], m[2], m[3]}, bf = m[4], tf = m[4]; /* 2^j steps */
    while (s > 0) {
        /* where the bit is clear, the empty run (identity, zero sums) is joined instead: exact (x 1 + y 0 = x),
         * so the same bits as skipping it, without a branch on the random bits of s */
        const int bit = (int)(s & 1);
        const double b0 = bit ? B[0] : 1, b1 = bit ? B[1] : 0, b2 = bit ? B[2] : 0, b3 = bit ? B[3] : 1;
        if (sums) {
            const double t0 = bit ? T[0] : 0, t1 = bit ? T[1] : 0, t2 = bit ? T[2] : 0, t3 = bit ? T[3] : 0;
            const double s0 = S[0] + (P[0] * t0 + P[1] * t2), s1 = S[1] + (P[0] * t1 + P[1] * t3);
            const double s2 = S[2] + (P[2] * t0 + P[3] * t2), s3 = S[3] + (P[2] * t1 + P[3] * t3);
            S[0] = s0, S[1] = s1, S[2] = s2, S[3] = s3;
            sf = sf + pf * (bit ? tf : 0);
        }
        const double p0 = P[0] * b0 + P[1] * b2, p1 = P[0] * b1 + P[1] * b3;
        const double p2 = P[2] * b0 + P[3] * b2, p3 = P[2] * b1 + P[3] * b3;
        P[0] = p0, P[1] = p1, P[2] = p2, P[3] = p3;
        pf = pf * (bit ? bf : 1);
        s >>= 1;
        { /* the run of 2^(j+1) steps: two of 2^j */
            if (sums) {
                const double s0 = T[0] + (B[0] * T[0] + B[1] * T[2]), s1 = T[1] + (B[0] * T[1] + B[1] * T[3]);
                const double s2 = T[2] + (B[2] * T[0] + B[3] * T[2]), s3 = T[3] + (B[2] * T[1] + B[3] * T[3]);
                T[0] = s0, T[1] = s1, T[2] = s2, T[3] = s3;
                tf = tf + bf * tf;
            }
            const double b0 = B[0] * B[0] + B[1] * B[2], b1 = B[0] * B[1] + B[1] * B[3];
            const double b2 = B[2] * B[0] + B[3] * B[2], b3 = B[2] * B[1] + B[3] * B[3];
            B[0] = b0, B[1] = b1, B[2] = b2, B[3] = b3;
            bf = bf * bf;
        }
    }
    row[0] = P[0], row[1] = P[1], row[2] = P[2], row[3] = P[3], row[4] = pf;
    row[5] = S[2], row[6] = S[3], row[7] = sf;
}

/* table[s] = (A^s, f^s) for s = 0..steps, A the map of one zero-gradient step on (buffer, w), f the scalar
 * factor, both in double (products of at most `steps` factors: relative error about steps * 2^-53). */
static void fo_csr_tables(fo_rule rule, const fo_hyper *h, double lr, ptrdiff_t steps, double *table)
{
    double m[5];
    fo_csr_step_map(rule, h, lr, h->weight_decay, m);
    const double a = m[0], b = m[1], c = m[2], e = m[3], f = m[4];
    double *p = table;
    p[0] = 1, p[1] = 0, p[2] = 0, p[3] = 1, p[4] = 1, p[5] = 0, p[6] = 0, p[7] = 0;
    for (ptrdiff_t s = 1; s <= steps; s++, p += FO_CSR_TAB) {
        double *q = p + FO_CSR_TAB;
        q[0] = a * p[0] + b * p[2];
        q[1] = a * p[1] + b * p[3];
        q[2] = c * p[0] + e * p[2];
        q[3] = c * p[1] + e * p[3];
        q[4] = f * p[4];
        q[5] = p[5] + q[2];
        q[6] = p[6] + q[3];
        q[7] = p[7] + q[4];
    }
}

/* ---------------------------------------------------------------- the piped epoch's hand-offs (fo_csr_pipe) */
/* GNU atomics; the portable build runs every CSR epoch on one thread (fo_csr_pipe_available is 0). */
#if (defined(__GNUC__) || defined(__clang__)) && !defined(FO_PORTABLE)
#define FO_CSR_PIPE 1
#define FO_CSR_LOAD(p) __atomic_load_n((p), __ATOMIC_ACQUIRE)
#define FO_CSR_STORE(p, v) __atomic_store_n((p), (v), __ATOMIC_RELEASE)
#if defined(_WIN32)
#include <windows.h>
#define FO_CSR_YIELD() SwitchToThread()
#elif defined(__unix__) || defined(__APPLE__)
#include <sched.h>
#define FO_CSR_YIELD() sched_yield()
#else
#define FO_CSR_YIELD() ((void)0)
#endif
#else
#define FO_CSR_PIPE 0
#define FO_CSR_LOAD(p) (*(p))
#define FO_CSR_STORE(p, v) (*(p) = (v))
#define FO_CSR_YIELD() ((void)0)
#endif

/* Spins before yielding the core in a wait (as the dense epoch's team: after that the other thread was
 * descheduled). */
#define FO_CSR_SPINS 200
/* The consumer, alone, takes the producer back after FO_CSR_REJOIN_MIN steps, twice as many each time a team
 * lasted fewer than FO_CSR_TEAM_SHORT steps (up to FO_CSR_REJOIN_MAX): a stall costs it up to FO_STALL_NS, which
 * a short team does not win back. */
#define FO_CSR_REJOIN_MIN 64
#define FO_CSR_REJOIN_MAX 65536
#define FO_CSR_TEAM_SHORT 512

/* fo_csr_pace (fastopt.h): windows of FO_CSR_PACE_BLOCKS blocks; the consumer goes on alone when it waited for
 * more than 1/FO_CSR_PACE_WAIT of a piped window's time and a stored value took more than FO_CSR_PACE_SLOWER
 * times as long as alone. (Momentum's consumer, which otherwise never waits, waited 27% of a window in a spell
 * when this machine slowed both threads; with a quarter and no margin it left producers that were still faster
 * than it alone: 9 of 40 two-thread epochs on the sparse benchmark had 1-4 departures and took 106-130 ms,
 * against 97-101 for most without; with these, none in 60.) */
#define FO_CSR_PACE_BLOCKS 8
#define FO_CSR_PACE_WAIT 3
#define FO_CSR_PACE_SLOWER 1.25
int fo_csr_pace_block(fo_csr_pace *p, int piped, int64_t values, int64_t waited, int64_t now)
{
    if (!p->t0 || piped != p->piped) {
        p->t0 = now, p->piped = piped, p->values = p->waited = 0, p->blocks = 0;
        return 0;
    }
    p->values += values, p->waited += waited;
    if (++p->blocks < FO_CSR_PACE_BLOCKS) return 0;
    const int64_t span = now - p->t0;
    const double per = (double)span / (double)(p->values > 0 ? p->values : 1);
    int alone = 0;
    if (!piped)
        p->alone = per, p->measured = 1;
    else
        alone = FO_CSR_PACE_WAIT * p->waited > span && (p->alone == 0 || per > FO_CSR_PACE_SLOWER * p->alone);
    p->t0 = now, p->values = p->waited = 0, p->blocks = 0;
    return alone;
}

/* Shared steps (SparseAdam mode, and steps on every coordinate, on two threads). The consumer posts a step's
 * update, elementwise over T (or over all coordinates), as chunks [0, n) in pipe->help (the unclaimed chunks
 * [lo, hi), lo in the low 32 bits) and claims chunks from the bottom; the producer, between its minibatches,
 * while it waits for room and after its last block, claims one from the top, runs it and counts it in
 * pipe->helped. Either thread claims by compare-and-swap, and reads the posted job only after its claim
 * succeeded: the consumer overwrites the job only once every chunk is claimed and done. A chunk's arithmetic is
 * the same whichever thread runs it, so the bits are the one-thread epoch's. */
#define FO_CSR_HELP(lo, hi) ((int64_t)(((uint64_t)(uint32_t)(hi) << 32) | (uint32_t)(lo)))
#if FO_CSR_PIPE
static int fo_csr_help_claim(fo_csr_pipe *pipe, int64_t seen, int64_t want)
{
    return __atomic_compare_exchange_n(&pipe->help, &seen, want, 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE);
}
#endif

/* The producer: run the top unclaimed chunk of the posted step, if any; 1 if it ran one. */
static int fo_csr_help_one(fo_csr_pipe *pipe)
{
#if FO_CSR_PIPE
    for (;;) {
        const int64_t v = FO_CSR_LOAD(&pipe->help);
        const uint32_t lo = (uint32_t)v, hi = (uint32_t)((uint64_t)v >> 32);
        if (lo >= hi) return 0;
        if (fo_csr_help_claim(pipe, v, FO_CSR_HELP(lo, hi - 1))) {
            pipe->help_run(pipe->help_job, (ptrdiff_t)hi - 1);
            __atomic_fetch_add(&pipe->helped, 1, __ATOMIC_RELEASE);
            return 1;
        }
    }
#else
    (void)pipe;
    return 0;
#endif
}

/* The consumer: post job's n chunks, run those it claims (from the bottom, several at a time while many are
 * left), and wait for the producer's. *expect counts the chunks the producer has run in all. */
static void fo_csr_help_share(fo_csr_pipe *pipe, const void *job, void (*run)(const void *, ptrdiff_t),
                              ptrdiff_t n, int64_t *expect)
{
#if FO_CSR_PIPE
    pipe->help_job = job, pipe->help_run = run;
    FO_CSR_STORE(&pipe->help, FO_CSR_HELP(0, n));
    int64_t mine = 0;
    for (;;) {
        const int64_t v = FO_CSR_LOAD(&pipe->help);
        const uint32_t lo = (uint32_t)v, hi = (uint32_t)((uint64_t)v >> 32);
        if (lo >= hi) break;
        const uint32_t take = (hi - lo) / FO_CSR_HELP_SPLIT > 1 ? (hi - lo) / FO_CSR_HELP_SPLIT : 1;
        if (!fo_csr_help_claim(pipe, v, FO_CSR_HELP(lo + take, hi))) continue;
        for (uint32_t i = lo; i < lo + take; i++) run(job, (ptrdiff_t)i);
        mine += take;
    }
    *expect += n - mine;
    for (long spins = 0; FO_CSR_LOAD(&pipe->helped) < *expect;) /* one chunk's time, unless it lost its core */
        if (++spins > FO_CSR_SPINS) FO_CSR_YIELD();
#else
    (void)pipe, (void)expect;
    for (ptrdiff_t i = 0; i < n; i++) run(job, i);
#endif
}

/* Wait until *flag >= value (1), the producer (serve) running posted chunks meanwhile; 0 if the consumer returned
 * first. The consumer's wait (!serve) returns 2 once it has waited FO_STALL_NS after its spins: the producer lost
 * its core. The producer's returns 3 once the consumer has gone on alone, also if it need not wait (a consumer
 * gone on alone reads no more blocks: the producer stops at once, fo_csr_pipe_park, not once the buffers are
 * full). */
static int fo_csr_pipe_wait(fo_csr_pipe *pipe, const int64_t *flag, int64_t value, int serve)
{
    int64_t since = 0;
    for (long spins = 0;;) {
        if (serve && FO_CSR_LOAD(&pipe->solo) != FO_CSR_LOAD(&pipe->resume)) return 3;
        if (FO_CSR_LOAD(flag) >= value) return 1;
        if (FO_CSR_LOAD(&pipe->abort)) return 0;
        if (serve && fo_csr_help_one(pipe)) {
            spins = 0;
        } else if (++spins > FO_CSR_SPINS) {
            if (!serve) {
                const int64_t now = fo_clock_ns();
                if (!since) since = now;
                else if (now - since > FO_STALL_NS) return 2;
            }
            FO_CSR_YIELD();
        }
    }
}

/* Block number i (0-based) is published. */
static int fo_csr_pipe_ready(fo_csr_pipe *pipe, int64_t i)
{
    return FO_CSR_LOAD(&pipe->block[i % FO_CSR_PIPE_BLOCKS].ready) > i;
}

/* The consumer: wait for block number i (1; 0 if aborted; 2 if the producer stalled, or the caller's test asks
 * the consumer to go on alone at this block: solo_block); add the ns it waited to *waited. */
static int fo_csr_pipe_take(fo_csr_pipe *pipe, int64_t i, int64_t *waited)
{
    const int64_t every = pipe->solo_block;
    if ((every > 0 && i + 1 == every) || (every < 0 && (i + 1) % every == 0)) return 2;
    if (fo_csr_pipe_ready(pipe, i)) return 1;
    const int64_t since = fo_clock_ns();
    const int got = fo_csr_pipe_wait(pipe, &pipe->block[i % FO_CSR_PIPE_BLOCKS].ready, i + 1, 0);
    *waited += fo_clock_ns() - since;
    return got;
}

/* The producer, told to stop (a wait returned 3), before making block number `made`: wait until the consumer takes
 * it back (1; it then goes on with block resume_block from row position resume_start) or returns (0). It spins
 * for FO_PARK_HOT_NS, then naps between checks: a producer that shares a core with other work would take
 * part of it from them. */
static int fo_csr_pipe_park(fo_csr_pipe *pipe, int64_t made)
{
    const int64_t gen = FO_CSR_LOAD(&pipe->solo);
    pipe->made = made;
    FO_CSR_STORE(&pipe->parked, gen);
    const int64_t since = fo_clock_ns();
    for (long spins = 0; FO_CSR_LOAD(&pipe->resume) != gen;) {
        if (FO_CSR_LOAD(&pipe->abort)) return 0;
        if (++spins > FO_CSR_SPINS) {
            if (fo_clock_ns() - since > FO_PARK_HOT_NS)
                fo_nap();
            else
                FO_CSR_YIELD();
        }
    }
    return 1;
}

/* The consumer, alone: take the producer back if it has stopped (in tests, solo_block < 0, wait for it to), to go
 * on with the block numbered as its next from row position start; 1 if it did. */
static int fo_csr_pipe_rejoin(fo_csr_pipe *pipe, ptrdiff_t start)
{
    const int64_t gen = pipe->solo; /* (this thread's own writes) */
    if (pipe->solo_block < 0)
        while (FO_CSR_LOAD(&pipe->parked) != gen) FO_CSR_YIELD();
    if (FO_CSR_LOAD(&pipe->parked) != gen) return 0;
    pipe->resume_block = pipe->made, pipe->resume_start = start;
    FO_CSR_STORE(&pipe->consumed, pipe->made); /* the blocks made before are not read: their buffers are free */
    FO_CSR_STORE(&pipe->resume, gen);
    pipe->rejoined++;
    return 1;
}
static void fo_csr_pipe_release(fo_csr_pipe *pipe, int64_t i) { FO_CSR_STORE(&pipe->consumed, i); }
static void fo_csr_pipe_done(fo_csr_pipe *pipe) { FO_CSR_STORE(&pipe->abort, 1); }

/* The producer: wait until the buffer of block number `made` is free (FO_CSR_PIPE_BLOCKS blocks in flight at most:
 * its last block was read once the consumer has taken the one after it); publish; once its blocks are all made,
 * run posted chunks until the consumer returns (no block count reaches INT64_MAX). */
static int fo_csr_pipe_room(fo_csr_pipe *pipe, int64_t made)
{
    return fo_csr_pipe_wait(pipe, &pipe->consumed, made - (FO_CSR_PIPE_BLOCKS - 1), 1);
}
static void fo_csr_pipe_publish(fo_csr_pipe *pipe, int64_t i)
{
    FO_CSR_STORE(&pipe->block[i % FO_CSR_PIPE_BLOCKS].ready, i + 1);
    if (pipe->slow_ns > 0) /* (tests: a producer that keeps up slowly) */
        for (const int64_t since = fo_clock_ns(); fo_clock_ns() - since < pipe->slow_ns;) {
        }
}

/* Fixed blocks (fo_csr_pipe.fixed): claim block number `want` for staging, if no thread has. A thread claims a
 * block only once its buffer is free, and stages it at once: no claimed block waits on anything. */
static int fo_csr_pipe_claim(fo_csr_pipe *pipe, int64_t want)
{
#if FO_CSR_PIPE
    int64_t seen = want;
    return __atomic_compare_exchange_n(&pipe->next, &seen, want + 1, 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE);
#else
    (void)pipe, (void)want;
    return 0;
#endif
}
/* Fixed blocks (fo_csr_pipe.fixed): their number. */
static int64_t fo_csr_fixed_blocks(const fo_epoch_ctl *c)
{
    const ptrdiff_t s_rows = fo_csr_stage_rows(c->batch_size);
    return (c->n_rows + s_rows - 1) / s_rows;
}

static int fo_csr_pipe_serve(fo_csr_pipe *pipe) { return fo_csr_pipe_wait(pipe, &pipe->consumed, INT64_MAX, 1); }

int fo_csr_pipe_available(void) { return FO_CSR_PIPE; }

/* Plain SGD with one output, no clipping, projection, running average or per-weight decay: its step is linear
 * in the rows' terms, so it is taken row by row (w_j -= lr (c_i / |B|) x_ij, the rows in order), without T. An L2
 * term (f = 1 - lr wd, 0 < f) scales every weight by f at each step: the weights are then kept as w = s v, s a
 * global factor (scikit-learn's sparse SGD keeps its weights so, `wscale`), s <- f s at each step and
 * v_j -= lr (c_i / |B|) x_ij / s for the rows' terms. s is folded back into the weights (v <- s v, s <- 1, O(d))
 * when it leaves [lo, 1 / lo] (lo = 1e-150 for double weights, 1e-25 for float: v = w / s stays far from overflow
 * for |w| up to 1e8), at the steps that are multiples of `period` (so that an epoch run in slices that end there
 * folds where one call does) and when the call returns. Only for 0.5 <= f <= 2, so that a fold comes at most every
 * 83 steps (float; 498 for double): a stronger decay keeps the stamps' catch-ups. */
#define FO_CSR_SCALE_LO_D 1e-150
#define FO_CSR_SCALE_LO_S 1e-25
int fo_csr_scatter(fo_rule rule, const fo_hyper *h, const fo_epoch_ctl *c, int lazy, ptrdiff_t k)
{
    (void)lazy;
    if (k != 1 || rule != FO_RULE_SGD || (c->avg && c->avg_start > 0) || c->clip_norm > 0 || c->positive || c->decay)
        return 0;
    const double f = 1.0 - c->lr * h->weight_decay;
    return h->weight_decay == 0 || (f >= 0.5 && f <= 2.0);
}

/* Step 1's checks of one row whose steps are scattered (no T to find): at most d values, every column index in
 * [0, d); for the one-thread epoch and the piped epoch's producer alike. */
static inline int fo_csr_row_ok(const int32_t *ind, ptrdiff_t p0, ptrdiff_t p1, ptrdiff_t d)
{
    int ok = p1 - p0 <= d;
    for (ptrdiff_t p = p0; p < p1; p++) ok &= (uint32_t)ind[p] < (uint32_t)d;
    return ok;
}

#define FO_CAT_(a, b) a##_##b
#define FO_CAT(a, b) FO_CAT_(a, b)
#define FO_FN(name) FO_CAT(name, FO_T)

#define FO_REAL double
#define FO_T d
#define FO_SQRT sqrt
#define FO_FABS fabs
#include "epoch_csr_body.h"
#undef FO_REAL
#undef FO_T
#undef FO_SQRT
#undef FO_FABS

#define FO_REAL float
#define FO_T s
#define FO_SQRT sqrtf
#define FO_FABS fabsf
#include "epoch_csr_body.h"
#undef FO_REAL
#undef FO_T
#undef FO_SQRT
#undef FO_FABS
