/* epoch_csr_body.h: the CSR epoch for one real type (see epoch_csr.c). Included once per type with
 *   FO_REAL, FO_FN(name), FO_SQRT as for rules.h. No include guard on purpose. */

#include "rules.h"

/* What the deferred updates need, fixed for one call. */
typedef struct {
    fo_catch how;
    const fo_hyper *h;
    const double *table;
    int64_t period;          /* catch-ups are split at the multiples of period (<= 0: never) */
    ptrdiff_t d, k, n_params;
    FO_REAL *params, *state, *avg; /* avg NULL: no averaging */
    int64_t avg_start;
    int positive;
    const FO_REAL *decay;    /* each weight's own decay (fo_epoch_ctl.decay): its own map, no shared table */
    fo_rule rule;
    double lr;
} FO_FN(csr_lazy);

/* w[iv[p]] -= u * xv[p] for p in [0, n), in order (a row's indices may repeat), two at a time: both weights
 * loaded before either is stored. One load and store after another, each load waited on the store before it (the
 * core cannot tell that they differ). Sparse benchmark's SGD epoch on AMD Zen, alternating builds: 53 -> 43 ms on
 * two threads, 84 -> 79 ms on one. The same pairing in SparseAdam mode's moments and weights passes, whose lines
 * are prefetched, measured no change. */
static inline void FO_FN(csr_scatter_sub)(FO_REAL *w, const int32_t *iv, const FO_REAL *xv, ptrdiff_t n, FO_REAL u)
{
    ptrdiff_t p = 0;
    for (; p + 1 < n; p += 2) {
        const int32_t a = iv[p], b = iv[p + 1];
        const FO_REAL wa = w[a], wb = w[b];
        if (a != b) {
            w[a] = wa - u * xv[p];
            w[b] = wb - u * xv[p + 1];
        } else {
            w[a] = (wa - u * xv[p]) - u * xv[p + 1];
        }
    }
    if (p < n) w[iv[p]] -= u * xv[p];
}

/* The first exponent s in [1, n] at which w + C_s v (C_s = table row s's c; e_s = 1: the rules without L2) turns
 * negative, given that it is negative at n and that w >= 0: C_s is monotone, so a binary search finds it. */
static inline ptrdiff_t FO_FN(csr_first_negative)(const double *table, double v, double w, ptrdiff_t n)
{
    ptrdiff_t lo = 1, hi = n;
    while (lo < hi) {
        const ptrdiff_t mid = lo + (hi - lo) / 2;
        if (w + table[FO_CSR_TAB * mid + 2] * v < 0) hi = mid; else lo = mid + 1;
    }
    return lo;
}

/* The end of the catch-up segment starting at step a on the way to `to`: the next multiple of z->period before
 * `to`, else `to` (period <= 0: one segment). */
static inline int64_t FO_FN(csr_seg_end)(const FO_FN(csr_lazy) *z, int64_t a, int64_t to)
{
    return z->period > 0 && (a / z->period + 1) * z->period < to ? (a / z->period + 1) * z->period : to;
}

/* Bring feature `col` (its k weights, their state and running average) from absolute step `from` up to `to`,
 * in segments that end at the multiples of z->period (so that an epoch run in slices that end there takes the
 * same segments, bit for bit). Over a segment of s steps the weights follow table row s (epoch_csr.c), projected
 * on w >= 0 when positive, and the average takes the segment's iterates in one closed-form sum:
 * c_b avg_b = c_a avg_a + sum_j w_j, with c the count of averaged steps. */
static void FO_FN(csr_catch_up)(const FO_FN(csr_lazy) *z, ptrdiff_t col, int64_t from, int64_t to)
{
    const fo_hyper *h = z->h;
    const ptrdiff_t n = z->n_params;
    while (from < to) {
        const int64_t seg_end = FO_FN(csr_seg_end)(z, from, to);
        const ptrdiff_t s = (ptrdiff_t)(seg_end - from);
        const double *A = z->table + FO_CSR_TAB * s, *A0 = z->table;
        /* exponents of the segment that are averaged: (e0, s] */
        const int64_t j0 = z->avg && seg_end >= z->avg_start ? (from + 1 > z->avg_start ? from + 1 : z->avg_start) : 0;
        const ptrdiff_t e0 = j0 ? (ptrdiff_t)(j0 - from - 1) : 0;
        for (ptrdiff_t j = 0; j < z->k; j++) {
            const ptrdiff_t i = j * z->d + col;
            const double w = z->params[i];
            double own[2 * FO_CSR_TAB], m[5]; /* each weight's own decay: its step map, its rows s and e0 */
            if (z->decay) {
                fo_csr_step_map(z->rule, h, z->lr, (double)z->decay[i], m);
                if (z->how == FO_CATCH_SCALE && !j0) { /* f^s alone (the same bits as the row's f^s) */
                    own[4] = fo_csr_power(m[4], s);
                } else if (z->how == FO_CATCH_PAIR && !j0) {
                    /* A^s applied to (v, w) below (fo_csr_power_apply) */
                } else {
                    fo_csr_power_row(m, s, j0 != 0, own);
                    fo_csr_power_row(m, j0 ? e0 : 0, j0 != 0, own + FO_CSR_TAB);
                }
                A = own, A0 = own + FO_CSR_TAB;
                if (z->how == FO_CATCH_SCALE && z->positive && !(m[4] > 0)) { /* f w <= 0, clamped: 0 from then */
                    z->params[i] = 0;
                    if (j0) {
                        const double before = (double)(j0 - z->avg_start), after = (double)(seg_end - z->avg_start + 1);
                        z->avg[i] = (FO_REAL)(before * (double)z->avg[i] / after);
                    }
                    continue;
                }
            }
            double w1 = w, v = 0, sum = 0; /* new weight, buffer before, sum of the averaged iterates */
            ptrdiff_t upto = s;            /* with a projection: the last exponent before the weight reached 0 */
            switch (z->how) {
            case FO_CATCH_SCALE:
                w1 = A[4] * w;
                if (j0) sum = (A[7] - (z->decay ? A0[7] : z->table[FO_CSR_TAB * e0 + 7])) * w;
                break;
            case FO_CATCH_PAIR:
            case FO_CATCH_RMS: {
                FO_REAL *buf = z->how == FO_CATCH_PAIR ? z->state + i : z->state + 2 * n + i;
                if (z->how == FO_CATCH_RMS) {
                    z->state[i] = (FO_REAL)(A[4] * (double)z->state[i]);
                    if (h->centered) z->state[n + i] = (FO_REAL)(A[4] * (double)z->state[n + i]);
                    if (!(h->momentum > 0)) {
                        if (j0) sum = (double)(s - e0) * w;
                        break;
                    }
                }
                v = *buf;
                if (z->decay && z->how == FO_CATCH_PAIR && !j0) {
                    double vs = v, ws = w;
                    fo_csr_power_apply(m, s, &vs, &ws);
                    *buf = (FO_REAL)vs;
                    w1 = ws;
                } else {
                    *buf = (FO_REAL)(A[0] * v + A[1] * w);
                    w1 = A[2] * v + A[3] * w;
                }
                if (z->positive && w1 < 0) { /* no L2 here (else FO_CATCH_DENSE): w + C_s v, monotone */
                    upto = FO_FN(csr_first_negative)(z->table, v, w, s) - 1;
                    w1 = 0;
                }
                if (j0 && upto > e0) { /* (upto < s only with the projection, never with own decays) */
                    const double *P1 = z->decay ? A : z->table + FO_CSR_TAB * upto;
                    const double *P0 = z->decay ? A0 : z->table + FO_CSR_TAB * e0;
                    sum = (P1[5] - P0[5]) * v + (P1[6] - P0[6]) * w;
                }
                break;
            }
            default: /* FO_CATCH_NONE: the weight does not move */
                if (j0) sum = (double)(s - e0) * w;
                break;
            }
            if (z->positive && w1 < 0) w1 = 0;
            z->params[i] = (FO_REAL)w1;
            if (j0) {
                const double before = (double)(j0 - z->avg_start), after = (double)(seg_end - z->avg_start + 1);
                z->avg[i] = (FO_REAL)((before * (double)z->avg[i] + sum) / after);
            }
        }
        from = seg_end;
    }
}

/* csr_catch_up for SGD under each weight's own decay, without projection or running average: w <- f_p^s w,
 * f_p = 1 - lr decay_p, per segment (the same products, so the same bits). It runs once per touched coordinate
 * and step, where the general function's step map, switch and table rows around the one power cost an eighth of
 * the epoch (TF-IDF-like rows under a ridge, one thread, 11 epochs: 1032-1039 -> 911-928 ms, alternating builds). */
static inline void FO_FN(csr_catch_own_scale)(const FO_FN(csr_lazy) *z, ptrdiff_t col, int64_t from, int64_t to)
{
    for (ptrdiff_t j = 0; j < z->k; j++) {
        const ptrdiff_t i = j * z->d + col;
        const double f = 1.0 - z->lr * (double)z->decay[i];
        for (int64_t a = from; a < to;) {
            const int64_t seg_end = FO_FN(csr_seg_end)(z, a, to);
            z->params[i] = (FO_REAL)(fo_csr_power(f, seg_end - a) * (double)z->params[i]);
            a = seg_end;
        }
    }
}

/* csr_catch_up for momentum, Nesterov and RMSProp on the shared table, without projection or running average:
 * (v, w) <- table row s applied (RMSProp: its averages scaled first), per segment (the same products and
 * roundings, so the same bits). It runs once per touched
 * coordinate and step, where the general function's branches around two products cost a fifth of the epoch (the
 * bench's hashed rows, alternating builds: momentum 186 -> 151-152 ms on one thread, 162-185 -> 125-139 on two;
 * Nesterov 188-204 -> 154-155 on one). */
static inline void FO_FN(csr_catch_pair)(const FO_FN(csr_lazy) *z, ptrdiff_t col, int64_t from, int64_t to)
{
    for (ptrdiff_t j = 0; j < z->k; j++) {
        const ptrdiff_t i = j * z->d + col;
        for (int64_t a = from; a < to;) {
            const int64_t seg_end = FO_FN(csr_seg_end)(z, a, to);
            const double *A = z->table + FO_CSR_TAB * (seg_end - a);
            ptrdiff_t ib = i; /* the buffer's index */
            a = seg_end;
            if (z->how == FO_CATCH_RMS) { /* the averages decay; the buffer, if any, is slot 2's */
                z->state[i] = (FO_REAL)(A[4] * (double)z->state[i]);
                if (z->h->centered) z->state[z->n_params + i] = (FO_REAL)(A[4] * (double)z->state[z->n_params + i]);
                if (!(z->h->momentum > 0)) continue;
                ib = 2 * z->n_params + i;
            }
            const double v = (double)z->state[ib], w = (double)z->params[i];
            z->state[ib] = (FO_REAL)(A[0] * v + A[1] * w);
            z->params[i] = (FO_REAL)(A[2] * v + A[3] * w);
        }
    }
}

/* The catch-ups under each weight's own decay of SGD (csr_catch_own_scale) or, with `pair`, of momentum and
 * Nesterov without averaging (csr_catch_up's FO_CATCH_PAIR), collected (csr_batch_add) and taken together
 * (csr_batch_flush): their powers in one vectorised loop (fo_csr_powers: f in a, f^s into v; fo_csr_pair_powers:
 * the step map in a, b, c, e applied to (v, w) = (buffer, weight)), then their weights. */
typedef struct {
    ptrdiff_t i[FO_CSR_OWN_BATCH];
    uint64_t s[FO_CSR_OWN_BATCH], bits;
    double a[FO_CSR_OWN_BATCH], b[FO_CSR_OWN_BATCH], c[FO_CSR_OWN_BATCH], e[FO_CSR_OWN_BATCH];
    double v[FO_CSR_OWN_BATCH], w[FO_CSR_OWN_BATCH];
    ptrdiff_t m;
    int pair;
} FO_FN(csr_batch);

static void FO_FN(csr_batch_flush)(const FO_FN(csr_lazy) *z, FO_FN(csr_batch) *B)
{
    if (B->pair) {
        fo_csr_pair_powers(B->a, B->b, B->c, B->e, B->s, B->v, B->w, B->m, B->bits);
        for (ptrdiff_t r = 0; r < B->m; r++) {
            z->state[B->i[r]] = (FO_REAL)B->v[r];
            z->params[B->i[r]] = (FO_REAL)B->w[r];
        }
    } else {
        fo_csr_powers(B->a, B->s, B->v, B->m, B->bits);
        for (ptrdiff_t r = 0; r < B->m; r++) z->params[B->i[r]] = (FO_REAL)(B->v[r] * (double)z->params[B->i[r]]);
    }
    B->m = 0, B->bits = 0;
}

/* Feature col's catch-up from step `from` to `to`, taken at the next csr_batch_flush, or at once where it spans
 * a multiple of z->period (its segments, rare). */
static inline void FO_FN(csr_batch_add)(const FO_FN(csr_lazy) *z, FO_FN(csr_batch) *B, ptrdiff_t col, int64_t from,
                                        int64_t to)
{
    if (FO_FN(csr_seg_end)(z, from, to) < to) {
        if (B->pair) FO_FN(csr_catch_up)(z, col, from, to);
        else FO_FN(csr_catch_own_scale)(z, col, from, to);
        return;
    }
    for (ptrdiff_t j = 0; j < z->k; j++) {
        const ptrdiff_t i = j * z->d + col, r = B->m;
        B->i[r] = i;
        B->s[r] = (uint64_t)(to - from);
        B->bits |= (uint64_t)(to - from);
        if (B->pair) {
            double m[5];
            fo_csr_step_map(z->rule, z->h, z->lr, (double)z->decay[i], m);
            B->a[r] = m[0], B->b[r] = m[1], B->c[r] = m[2], B->e[r] = m[3];
            B->v[r] = (double)z->state[i], B->w[r] = (double)z->params[i];
        } else {
            B->a[r] = 1.0 - z->lr * (double)z->decay[i];
        }
        if (++B->m == FO_CSR_OWN_BATCH) FO_FN(csr_batch_flush)(z, B);
    }
}

/* Feature col's catch-up at a call's end, from step `from` to `to`: into the batch B where there is one, else by
 * the short form of the call's case (form 1: csr_catch_own_scale, 2: csr_catch_pair), else csr_catch_up. */
static inline void FO_FN(csr_catch_closing)(const FO_FN(csr_lazy) *z, FO_FN(csr_batch) *B, int form, ptrdiff_t col,
                                            int64_t from, int64_t to)
{
    if (B) FO_FN(csr_batch_add)(z, B, col, from, to);
    else if (form == 1) FO_FN(csr_catch_own_scale)(z, col, from, to);
    else if (form == 2) FO_FN(csr_catch_pair)(z, col, from, to);
    else FO_FN(csr_catch_up)(z, col, from, to);
}

/* The closing catch-ups (csr_catch_closing) of the features in [c0, c1) that were stepped in the call but not at its
 * last step, `now` (their stamps, at stamp[2 c], neither 0 nor now): the passes over the resting features below
 * take these as their chunks go by. */
static void FO_FN(csr_catch_others)(const FO_FN(csr_lazy) *z, FO_FN(csr_batch) *B, int form, const int32_t *stamp,
                                    ptrdiff_t c0, ptrdiff_t c1, int32_t now, int64_t from, int64_t to)
{
    for (ptrdiff_t c = c0; c < c1; c++) {
        const int32_t last = stamp[2 * c];
        if (last != 0 && last != now) FO_FN(csr_catch_closing)(z, B, form, c, from + last, to);
    }
}

/* The end of a call, SGD under each weight's own decay (csr_catch_own_scale's case), every feature not stepped at
 * the call's last step (`now`, counted from its start) brought up to date. Those whose stamp is 0 rested through the
 * whole call, from step `from` to `to`, so all of them share each segment's exponent s: their powers f_p^s come out
 * of loops over the features, bit by bit of s, that the compiler vectorises (chunks of FO_CSR_RESTED features; the
 * others' factor is 1, which leaves their weights as they are), the products of fo_csr_power in its order (a clear
 * bit's factor, 1, is skipped: exact), so the bits of one catch-up at a time. The others, stepped in the call but
 * not at its end, are caught up one at a time (or in batches, B) as the chunks pass. In a short call (partial_fit's
 * chunks) almost every feature rests: one at a time, each one's power and the branches around it were most of the
 * kernel's time (100-row chunks of hashed rows, 2^18 columns, alternating builds: 1.43-1.47 -> 0.81-0.83 ms a call,
 * with epoch_finish's test vectorised too; 1,000-row chunks 2.24 -> 2.03 ms; the same bits). */
static void FO_FN(csr_own_scale_rested)(const FO_FN(csr_lazy) *z, const fo_csr_slot *slot, int32_t now,
                                        int64_t from, int64_t to, FO_FN(csr_batch) *B)
{
    double f[FO_CSR_RESTED], b[FO_CSR_RESTED];
    const int32_t *stamp = (const int32_t *)(const void *)slot; /* slot[c].last at stamp[2 c]: vectorised */
    for (int64_t a = from; a < to;) {
        const int64_t seg_end = FO_FN(csr_seg_end)(z, a, to);
        const uint64_t s = (uint64_t)(seg_end - a);
        for (ptrdiff_t j = 0; j < z->k; j++) {
            FO_REAL *restrict w = z->params + j * z->d;
            const FO_REAL *restrict decay = z->decay + j * z->d;
            for (ptrdiff_t c0 = 0; c0 < z->d; c0 += FO_CSR_RESTED) {
                const ptrdiff_t n = z->d - c0 < FO_CSR_RESTED ? z->d - c0 : FO_CSR_RESTED;
                for (ptrdiff_t c = 0; c < n; c++) {
                    const double fc = 1.0 - z->lr * (double)decay[c0 + c];
                    b[c] = stamp[2 * (c0 + c)] == 0 ? fc : 1.0, f[c] = 1.0;
                }
                for (uint64_t e = s;;) {
                    if (e & 1)
                        for (ptrdiff_t c = 0; c < n; c++) f[c] *= b[c];
                    if (!(e >>= 1)) break;
                    for (ptrdiff_t c = 0; c < n; c++) b[c] = b[c] * b[c];
                }
                for (ptrdiff_t c = 0; c < n; c++) w[c0 + c] = (FO_REAL)(f[c] * (double)w[c0 + c]);
                if (a == from && j == 0) /* the others, once: their own exponents */
                    FO_FN(csr_catch_others)(z, B, 1, stamp, c0, c0 + n, now, from, to);
            }
        }
        a = seg_end;
    }
}

/* The end of a call, SGD under each weight's own decay, where the call is one segment (no multiple of the period
 * inside it: every call of run_epoch_csr, whose slices end there): every feature's catch-up in one pass, each
 * lane with its own exponent now - last (0 for the features stepped at the last step, `now` for those that rested
 * through the call), its power taken bit by bit of the largest exponent, `now`, a factor 1 where the lane's bit is
 * clear (fo_csr_pick): fo_csr_power's products in its order, so the same bits as csr_own_scale_rested and its
 * catch-ups of the others one at a time. That pass tested each stamp twice with branches and took the others'
 * powers one at a time, most of a short call's kernel time (SGD partial_fit under a ridge on hashed rows, 2^18
 * columns, the kernel's median a call, the builds alternating call by call in one process: 100 rows 1.77 -> 1.09
 * ms, 1,000 rows 4.0 -> 2.4). The loop that reads the decays and stamps is compiled for AVX2 with the powers
 * (fo_csr_powers' own loop, inline here): with fo_csr_powers called on a chunk, 10% slower. */
#define FO_CSR_OWN_CLOSE(name)                                                                                     \
    static void name(FO_REAL *restrict w, const FO_REAL *restrict decay, const int32_t *restrict stamp,         \
                     ptrdiff_t n, double lr, int32_t now)                                                        \
    {                                                                                                            \
        double b[FO_CSR_RESTED], p[FO_CSR_RESTED];                                                               \
        uint64_t e[FO_CSR_RESTED];                                                                               \
        for (ptrdiff_t c0 = 0; c0 < n; c0 += FO_CSR_RESTED) {                                                    \
            const ptrdiff_t m = n - c0 < FO_CSR_RESTED ? n - c0 : FO_CSR_RESTED;                                \
            for (ptrdiff_t c = 0; c < m; c++) {                                                                  \
                b[c] = 1.0 - lr * (double)decay[c0 + c], p[c] = 1.0;                                             \
                e[c] = (uint64_t)(uint32_t)(now - stamp[2 * (c0 + c)]);                                          \
            }                                                                                                    \
            for (uint32_t bits = (uint32_t)now, sh = 0; bits; bits >>= 1, sh++)                                  \
                for (ptrdiff_t c = 0; c < m; c++) {                                                              \
                    p[c] *= fo_csr_pick(b[c], e[c] >> sh);                                                       \
                    b[c] = b[c] * b[c];                                                                          \
                }                                                                                                \
            for (ptrdiff_t c = 0; c < m; c++) w[c0 + c] = (FO_REAL)(p[c] * (double)w[c0 + c]);                  \
        }                                                                                                        \
    }
FO_CSR_OWN_CLOSE(FO_FN(csr_own_close_base))
#if FO_AVX2_DISPATCH
FO_TARGET_AVX2_BEGIN
FO_CSR_OWN_CLOSE(FO_FN(csr_own_close_avx2))
FO_TARGET_AVX2_END
#endif
#undef FO_CSR_OWN_CLOSE

static void FO_FN(csr_own_close)(const FO_FN(csr_lazy) *z, const fo_csr_slot *slot, int32_t now)
{
    const int32_t *stamp = (const int32_t *)(const void *)slot; /* slot[c].last at stamp[2 c] */
    for (ptrdiff_t j = 0; j < z->k; j++) {
#if FO_AVX2_DISPATCH
        if (fo_isa_get() == FO_ISA_AVX2) {
            FO_FN(csr_own_close_avx2)(z->params + j * z->d, z->decay + j * z->d, stamp, z->d, z->lr, now);
            continue;
        }
#endif
        FO_FN(csr_own_close_base)(z->params + j * z->d, z->decay + j * z->d, stamp, z->d, z->lr, now);
    }
}

/* The end of a call on the shared table (csr_catch_pair's case: momentum, Nesterov, RMSProp), as
 * csr_own_scale_rested: the features whose stamp is 0 rested through the whole call and share each segment's table
 * row, which a loop over the features the compiler vectorises applies (the others keep their values: a select,
 * after the same operations as csr_catch_pair's, so the same bits); the others, stepped in the call but not at its
 * end, are caught up one at a time as the chunks pass. */
static void FO_FN(csr_pair_rested)(const FO_FN(csr_lazy) *z, const fo_csr_slot *slot, int32_t now, int64_t from,
                                   int64_t to)
{
    const int32_t *stamp = (const int32_t *)(const void *)slot; /* slot[c].last at stamp[2 c]: vectorised */
    const int rms = z->how == FO_CATCH_RMS, centered = rms && z->h->centered, mom = !rms || z->h->momentum > 0;
    const ptrdiff_t d = z->d, np_ = z->n_params;
    for (int64_t a = from; a < to;) {
        const int64_t seg_end = FO_FN(csr_seg_end)(z, a, to);
        const double *A = z->table + FO_CSR_TAB * (seg_end - a);
        const double a0 = A[0], a1 = A[1], a2 = A[2], a3 = A[3], f = A[4];
        for (ptrdiff_t j = 0; j < z->k; j++) {
            FO_REAL *restrict w = z->params + j * d;
            FO_REAL *restrict r = z->state + j * d;                       /* RMSProp's average */
            FO_REAL *restrict ca = z->state + np_ + j * d;                /* its centring average */
            FO_REAL *restrict v = z->state + (rms ? 2 * np_ : 0) + j * d; /* the buffer */
            for (ptrdiff_t c0 = 0; c0 < d; c0 += FO_CSR_RESTED) {
                const ptrdiff_t c1 = d - c0 < FO_CSR_RESTED ? d : c0 + FO_CSR_RESTED;
                if (rms)
                    for (ptrdiff_t c = c0; c < c1; c++) {
                        const FO_REAL rr = (FO_REAL)(f * (double)r[c]);
                        r[c] = stamp[2 * c] == 0 ? rr : r[c];
                    }
                if (centered)
                    for (ptrdiff_t c = c0; c < c1; c++) {
                        const FO_REAL cc = (FO_REAL)(f * (double)ca[c]);
                        ca[c] = stamp[2 * c] == 0 ? cc : ca[c];
                    }
                if (mom)
                    for (ptrdiff_t c = c0; c < c1; c++) {
                        const double vv = (double)v[c], ww = (double)w[c];
                        const FO_REAL nv = (FO_REAL)(a0 * vv + a1 * ww), nw = (FO_REAL)(a2 * vv + a3 * ww);
                        const int rest = stamp[2 * c] == 0;
                        v[c] = rest ? nv : v[c];
                        w[c] = rest ? nw : w[c];
                    }
                if (a == from && j == 0) /* the others, once: their own rests */
                    FO_FN(csr_catch_others)(z, NULL, 2, stamp, c0, c1, now, from, to);
            }
        }
        a = seg_end;
    }
}

/* Output j's features [c0, c0 + n): each one's zero-gradient step map under its own decay, (B0, B1; B2, B3) as
 * fo_csr_step_map builds it (momentum, Nesterov), and its (buffer, weight) into (x, y). */
static inline void FO_FN(csr_own_maps)(const FO_FN(csr_lazy) *z, ptrdiff_t j, ptrdiff_t c0, ptrdiff_t n,
                                       double *restrict B0, double *restrict B1, double *restrict B2,
                                       double *restrict B3, double *restrict x, double *restrict y)
{
    const FO_REAL *restrict decay = z->decay + j * z->d + c0;
    const FO_REAL *restrict w = z->params + j * z->d + c0, *restrict v = z->state + j * z->d + c0;
    const int nesterov = z->rule == FO_RULE_NESTEROV;
    const double lr = z->lr, mu = z->h->momentum, damp = z->h->dampening;
    for (ptrdiff_t c = 0; c < n; c++) {
        const double wd = (double)decay[c];
        if (nesterov) {
            B0[c] = mu, B1[c] = wd, B2[c] = -lr * mu * mu, B3[c] = 1.0 - lr * wd - lr * mu * wd;
        } else {
            const double dw = (1.0 - damp) * wd;
            B0[c] = mu, B1[c] = dw, B2[c] = -lr * mu, B3[c] = 1.0 - lr * dw;
        }
        x[c] = (double)v[c], y[c] = (double)w[c];
    }
}

/* csr_own_pair_rested where the call is one segment (as csr_own_close): every feature's map power applied in one
 * pass, each with its own exponent now - last, by fo_csr_pair_powers over a chunk of features (each map built as
 * fo_csr_step_map builds it): fo_csr_power_apply's products, so the same bits as csr_own_pair_rested and its
 * catch-ups of the others. Not with projection. (Momentum partial_fit under a ridge on hashed rows, as
 * csr_own_close's figures: 100 rows 2.78 -> 2.42 ms, 1,000 rows 6.8 -> 5.2.) */
static void FO_FN(csr_own_pair_close)(const FO_FN(csr_lazy) *z, const fo_csr_slot *slot, int32_t now)
{
    double B0[FO_CSR_RESTED], B1[FO_CSR_RESTED], B2[FO_CSR_RESTED], B3[FO_CSR_RESTED];
    double x[FO_CSR_RESTED], y[FO_CSR_RESTED];
    uint64_t e[FO_CSR_RESTED];
    for (ptrdiff_t j = 0; j < z->k; j++) {
        FO_REAL *w = z->params + j * z->d, *v = z->state + j * z->d; /* csr_own_maps reads them too */
        for (ptrdiff_t c0 = 0; c0 < z->d; c0 += FO_CSR_RESTED) {
            const ptrdiff_t m = z->d - c0 < FO_CSR_RESTED ? z->d - c0 : FO_CSR_RESTED;
            FO_FN(csr_own_maps)(z, j, c0, m, B0, B1, B2, B3, x, y);
            for (ptrdiff_t c = 0; c < m; c++) e[c] = (uint64_t)(uint32_t)(now - slot[c0 + c].last);
            fo_csr_pair_powers(B0, B1, B2, B3, e, x, y, m, (uint64_t)now);
            for (ptrdiff_t c = 0; c < m; c++) v[c0 + c] = (FO_REAL)x[c], w[c0 + c] = (FO_REAL)y[c];
        }
    }
}

/* The end of a call under each weight's own decay for momentum and Nesterov without the running average
 * (csr_catch_up's own pair, by fo_csr_power_apply), as csr_own_scale_rested: the features whose stamp is 0 rested
 * through the whole call and share each segment's exponent, so their maps' powers are applied bit by bit of it in
 * loops over the features the compiler vectorises, each map built as fo_csr_step_map builds it and applied as
 * fo_csr_power_apply applies it (the same products in the same order, so the same bits); a select keeps the others,
 * which are caught up one at a time (or in batches, B) as the chunks pass. Not with projection (those steps take
 * every coordinate). */
static void FO_FN(csr_own_pair_rested)(const FO_FN(csr_lazy) *z, const fo_csr_slot *slot, int32_t now,
                                       int64_t from, int64_t to, FO_FN(csr_batch) *B)
{
    double B0[FO_CSR_RESTED], B1[FO_CSR_RESTED], B2[FO_CSR_RESTED], B3[FO_CSR_RESTED];
    double x[FO_CSR_RESTED], y[FO_CSR_RESTED];
    const int32_t *stamp = (const int32_t *)(const void *)slot; /* slot[c].last at stamp[2 c]: vectorised */
    for (int64_t a = from; a < to;) {
        const int64_t seg_end = FO_FN(csr_seg_end)(z, a, to);
        const uint64_t s = (uint64_t)(seg_end - a);
        for (ptrdiff_t j = 0; j < z->k; j++) {
            FO_REAL *w = z->params + j * z->d, *v = z->state + j * z->d; /* csr_own_maps reads them too */
            for (ptrdiff_t c0 = 0; c0 < z->d; c0 += FO_CSR_RESTED) {
                const ptrdiff_t n = z->d - c0 < FO_CSR_RESTED ? z->d - c0 : FO_CSR_RESTED;
                FO_FN(csr_own_maps)(z, j, c0, n, B0, B1, B2, B3, x, y);
                for (uint64_t e = s; e > 0;) { /* fo_csr_power_apply */
                    if (e & 1)
                        for (ptrdiff_t c = 0; c < n; c++) {
                            const double x1 = B0[c] * x[c] + B1[c] * y[c], y1 = B2[c] * x[c] + B3[c] * y[c];
                            x[c] = x1, y[c] = y1;
                        }
                    e >>= 1;
                    if (e > 0)
                        for (ptrdiff_t c = 0; c < n; c++) {
                            const double b0 = B0[c] * B0[c] + B1[c] * B2[c], b1 = B0[c] * B1[c] + B1[c] * B3[c];
                            const double b2 = B2[c] * B0[c] + B3[c] * B2[c], b3 = B2[c] * B1[c] + B3[c] * B3[c];
                            B0[c] = b0, B1[c] = b1, B2[c] = b2, B3[c] = b3;
                        }
                }
                for (ptrdiff_t c = 0; c < n; c++) {
                    const int rest = stamp[2 * (c0 + c)] == 0;
                    const FO_REAL nv = (FO_REAL)x[c], nw = (FO_REAL)y[c];
                    v[c0 + c] = rest ? nv : v[c0 + c];
                    w[c0 + c] = rest ? nw : w[c0 + c];
                }
                if (a == from && j == 0) /* the others, once: their own rests */
                    FO_FN(csr_catch_others)(z, B, 0, stamp, c0, c0 + n, now, from, to);
            }
        }
        a = seg_end;
    }
}

/* SparseAdam's constants for one step (csr_sparse_adam_body, csr_sparse_adam_split). */
typedef struct {
    FO_REAL wd, eps, one_b1, one_b2, step_size, shrink;
    int decay, ams; /* decay: 0 none, 1 coupled L2 (Adam), 2 decoupled (AdamW) */
} FO_FN(csr_adam_k);

static inline FO_FN(csr_adam_k) FO_FN(csr_adam_consts)(const fo_hyper *h, const fo_epoch_ctl *c, int64_t step,
                                                       int decoupled)
{
    FO_FN(csr_adam_k) K;
    K.wd = (FO_REAL)h->weight_decay, K.eps = (FO_REAL)h->eps;
    K.one_b1 = (FO_REAL)(1.0 - h->beta1), K.one_b2 = (FO_REAL)(1.0 - h->beta2);
    K.step_size = (FO_REAL)(c->lr * sqrt(1.0 - pow(h->beta2, (double)step)) / (1.0 - pow(h->beta1, (double)step)));
    K.shrink = (FO_REAL)(1.0 - c->lr * h->weight_decay);
    K.decay = h->weight_decay != 0 ? (decoupled ? 2 : 1) : 0, K.ams = h->amsgrad != 0;
    return K;
}

/* One coordinate's moments, in place: m <- m + (1 - b1)(g - m), v <- v + (1 - b2)(g^2 - v) (and the running
 * maximum with AMSGrad); *mi the new m, *vu the v the step divides by. SparseAdam mode keeps each coordinate's m and
 * v side by side (mv[2 i], mv[2 i + 1]: the memory of the state's first two rows; see fo_epoch_csr), so that
 * one random access finds both; vmax is the state's third row. */
FO_LOSS_INLINE void FO_FN(csr_adam_moments)(const FO_FN(csr_adam_k) *K, FO_REAL *mv, FO_REAL *vmax, ptrdiff_t i,
                                           FO_REAL gi, FO_REAL *mi, FO_REAL *vu)
{
    FO_REAL *m = mv + 2 * i, *v = m + 1;
    const FO_REAL mn = *m + (gi - *m) * K->one_b1;
    const FO_REAL vn = *v + (gi * gi - *v) * K->one_b2;
    FO_REAL u = vn;
    if (K->ams) {
        if (vn > vmax[i]) vmax[i] = vn;
        u = vmax[i];
    }
    *m = mn;
    *v = vn;
    *mi = mn, *vu = u;
}

/* torch.optim.SparseAdam's step, with its arithmetic, on T's k * nt weights (the columns touched) and the nb
 * intercepts, whose compact loss gradient is cg, where that gradient is nonzero:
 * m <- m + (1 - b1)(g - m), v <- v + (1 - b2)(g^2 - v), w <- w - (lr sqrt(1 - b2^t) / (1 - b1^t)) m /
 * (sqrt(v) + eps). Extensions on the same coordinates: coupled L2 (Adam: g + wd w), decoupled (AdamW:
 * w <- (1 - lr wd) w first), AMSGrad (v replaced by its running maximum); the intercepts take no L2. Then the
 * projection of T's weights (positive) and, if averaging, the running average. In place, element by element:
 * gathering T's weights and moments into compact arrays around a vectorised loop cost more than the vectorised
 * square roots and divisions saved (sparse benchmark, one thread, alternating builds: 76 -> 62 ms an epoch); with
 * one output and no average, csr_sparse_adam_split steps the moments in place and only the quotients go through
 * compact arrays. Out of line (csr_sparse_adam_in_place): one copy for the epoch's copies that call it. */
FO_LOSS_INLINE void FO_FN(csr_sparse_adam_body)(const fo_hyper *h, const fo_epoch_ctl *c, FO_REAL *params,
                                                FO_REAL *state, FO_REAL *avg, const FO_REAL *cg,
                                                const int32_t *touched, ptrdiff_t nt, ptrdiff_t d, ptrdiff_t k,
                                                ptrdiff_t nb, ptrdiff_t n_params, int64_t step, int decoupled,
                                                int averaging, FO_REAL count)
{
    const ptrdiff_t kd = k * d;
    const FO_FN(csr_adam_k) K = FO_FN(csr_adam_consts)(h, c, step, decoupled);
    const FO_REAL wd = K.wd, eps = K.eps, step_size = K.step_size, shrink = K.shrink;
    const int decay = K.decay;
    FO_REAL *mv = state, *vmax = state + 2 * n_params;
    for (ptrdiff_t q = 0; q <= nt; q++)
        for (ptrdiff_t j = 0; j < (q < nt ? k : nb); j++) {
            const ptrdiff_t i = q < nt ? j * d + touched[q] : kd + j, ci = q < nt ? q * k + j : k * nt + j;
            const FO_REAL gl = cg[ci];
            FO_REAL w = params[i];
            if (gl != 0) {
                const int dec = q < nt ? decay : 0; /* the intercepts: no decay */
                const FO_REAL ws = dec == 2 ? w * shrink : w;
                const FO_REAL gi = dec == 1 ? gl + wd * w : gl;
                FO_REAL mi, vu;
                FO_FN(csr_adam_moments)(&K, mv, vmax, i, gi, &mi, &vu);
                w = ws + -(step_size * (mi / (FO_SQRT(vu) + eps)));
            }
            if (c->positive && q < nt && w < 0) w = 0;
            params[i] = w;
            if (averaging) avg[i] += (w - avg[i]) / count;
        }
}

/* csr_sparse_adam_body's arithmetic for one output without averaging, in three passes: the moments (random
 * access, element by element), then the steps' quotients step_size * m / (sqrt(v) + eps) over compact arrays M
 * and V (nt + nb each), a loop the compiler vectorises (the same IEEE operations lane by lane: the same bits),
 * then the weights. Element by element, each coordinate's square root and division waited on the divider, which
 * then bounded the two-thread epoch on the sparse benchmark. */
#if FO_AVX2_DISPATCH
/* The quotients of csr_sparse_adam_split, compiled for AVX2 (four double lanes where the build's SSE2 has two):
 * the same IEEE operations, so the same bits (no fused multiply-add: the loop has none to contract). */
FO_TARGET_AVX2_BEGIN
static void FO_FN(csr_quot_avx2)(FO_REAL *restrict M, const FO_REAL *restrict V, ptrdiff_t nc, FO_REAL step_size,
                                 FO_REAL eps)
{
    for (ptrdiff_t q = 0; q < nc; q++) M[q] = step_size * (M[q] / (FO_SQRT(V[q]) + eps));
}
FO_TARGET_AVX2_END
#endif
/* csr_sparse_adam_split's step, posted: its constants and arrays; its coordinates q (T's members, then the
 * intercepts) in [0, nc), each stepped by itself (fo_csr_help_share's chunks). */
typedef struct {
    FO_FN(csr_adam_k) K;
    FO_REAL *params, *state, *M, *V;
    const FO_REAL *cg;
    const int32_t *touched;
    ptrdiff_t nt, nc, d, n_params;
    int positive;
} FO_FN(csr_adam_job);

static void FO_FN(csr_adam_range)(const FO_FN(csr_adam_job) *J, ptrdiff_t q0, ptrdiff_t q1)
{
    const FO_FN(csr_adam_k) K = J->K;
    const FO_REAL wd = K.wd, eps = K.eps, step_size = K.step_size, shrink = K.shrink;
    const int decay = K.decay;
    FO_REAL *params = J->params, *mv = J->state, *vmax = J->state + 2 * J->n_params;
    FO_REAL *restrict M = J->M, *restrict V = J->V;
    const FO_REAL *cg = J->cg;
    const int32_t *touched = J->touched;
    const ptrdiff_t nt = J->nt, d = J->d, t1 = q1 < nt ? q1 : nt; /* T's members in the range end at t1 */
    for (ptrdiff_t q = q0; q < q0 + FO_CSR_ADAM_AHEAD && q < t1; q++) FO_CSR_PREFETCH_W(mv + 2 * touched[q]);
    for (ptrdiff_t q = q0; q < q1; q++) {
        const ptrdiff_t i = q < nt ? touched[q] : d + (q - nt);
        if (q + FO_CSR_ADAM_AHEAD < t1) FO_CSR_PREFETCH_W(mv + 2 * touched[q + FO_CSR_ADAM_AHEAD]);
        const FO_REAL gl = cg[q];
        if (gl != 0) {
            const FO_REAL gi = decay == 1 && q < nt ? gl + wd * params[i] : gl; /* the intercepts: no decay */
            FO_FN(csr_adam_moments)(&K, mv, vmax, i, gi, M + q, V + q);
        } else {
            M[q] = 0, V[q] = 1; /* no step: the quotient is not read */
        }
    }
#if FO_AVX2_DISPATCH
    if (fo_isa_get() == FO_ISA_AVX2)
        FO_FN(csr_quot_avx2)(M + q0, V + q0, q1 - q0, step_size, eps);
    else
#endif
        for (ptrdiff_t q = q0; q < q1; q++) M[q] = step_size * (M[q] / (FO_SQRT(V[q]) + eps));
    for (ptrdiff_t q = q0; q < q1; q++) {
        const ptrdiff_t i = q < nt ? touched[q] : d + (q - nt);
        FO_REAL w = params[i];
        if (cg[q] != 0) w = (decay == 2 && q < nt ? w * shrink : w) + -M[q];
        if (J->positive && q < nt && w < 0) w = 0;
        params[i] = w;
    }
}

/* Chunk i of a posted step (fo_csr_help_share). */
static void FO_FN(csr_adam_chunk)(const void *job, ptrdiff_t i)
{
    const FO_FN(csr_adam_job) *J = (const FO_FN(csr_adam_job) *)job;
    const ptrdiff_t q0 = i * FO_CSR_HELP_CHUNK, q1 = q0 + FO_CSR_HELP_CHUNK < J->nc ? q0 + FO_CSR_HELP_CHUNK : J->nc;
    FO_FN(csr_adam_range)(J, q0, q1);
}

/* The step, on one thread, or, with pipe, in chunks shared with the producer (help counts its chunks). */
static void FO_FN(csr_sparse_adam_split)(const fo_hyper *h, const fo_epoch_ctl *c, FO_REAL *params,
                                         FO_REAL *state, const FO_REAL *cg, const int32_t *touched, ptrdiff_t nt,
                                         ptrdiff_t d, ptrdiff_t nb, ptrdiff_t n_params, int64_t step, int decoupled,
                                         FO_REAL *restrict M, FO_REAL *restrict V, fo_csr_pipe *pipe,
                                         int64_t *helped)
{
    const FO_FN(csr_adam_job) J = {FO_FN(csr_adam_consts)(h, c, step, decoupled), params, state, M, V, cg, touched,
                                   nt, nt + nb, d, n_params, c->positive};
    const ptrdiff_t chunks = (J.nc + FO_CSR_HELP_CHUNK - 1) / FO_CSR_HELP_CHUNK;
    if (pipe && chunks > 1)
        fo_csr_help_share(pipe, &J, FO_FN(csr_adam_chunk), chunks, helped);
    else
        FO_FN(csr_adam_range)(&J, 0, J.nc);
}

/* csr_sparse_adam_body; for one output without averaging, csr_sparse_adam_split with scratch M and V. */
#if defined(__GNUC__) || defined(__clang__)
__attribute__((noinline))
#endif
static void FO_FN(csr_sparse_adam_in_place)(const fo_hyper *h, const fo_epoch_ctl *c, FO_REAL *params,
                                            FO_REAL *state, FO_REAL *avg, const FO_REAL *cg, const int32_t *touched,
                                            ptrdiff_t nt, ptrdiff_t d, ptrdiff_t k, ptrdiff_t nb, ptrdiff_t n_params,
                                            int64_t step, int decoupled, int averaging, FO_REAL count, FO_REAL *M,
                                            FO_REAL *V, fo_csr_pipe *pipe, int64_t *helped)
{
    if (k == 1 && !averaging)
        FO_FN(csr_sparse_adam_split)(h, c, params, state, cg, touched, nt, d, nb, n_params, step, decoupled, M, V,
                                     pipe, helped);
    else
        FO_FN(csr_sparse_adam_body)(h, c, params, state, avg, cg, touched, nt, d, k, nb, n_params, step, decoupled,
                                    averaging, count);
}

/* A step on every coordinate (the rules without deferred updates), posted: rules.h's step on n coordinates, in
 * chunks of FO_CSR_DENSE_CHUNK (every rule is elementwise: a chunk's operations on each coordinate are the whole
 * step's, whichever thread runs it). */
typedef struct {
    fo_rule rule;
    const fo_hyper *h;
    FO_REAL *w, *state;
    const FO_REAL *g;
    ptrdiff_t n, n_decay;
    int64_t t;
    double lr;
} FO_FN(csr_dense_job);

static void FO_FN(csr_dense_chunk)(const void *job, ptrdiff_t i)
{
    const FO_FN(csr_dense_job) *J = (const FO_FN(csr_dense_job) *)job;
    const ptrdiff_t q0 = i * FO_CSR_DENSE_CHUNK, q1 = q0 + FO_CSR_DENSE_CHUNK < J->n ? q0 + FO_CSR_DENSE_CHUNK : J->n;
    const ptrdiff_t nd = J->n_decay <= q0 ? 0 : J->n_decay >= q1 ? q1 - q0 : J->n_decay - q0;
    FO_FN(rule_step_ld)(J->rule, J->h, J->w + q0, J->g + q0, J->state ? J->state + q0 : NULL, q1 - q0, J->n, nd,
                        J->t, J->lr);
}

/* rules.h's step on all n coordinates; with pipe, in chunks shared with the producer (helped counts its chunks):
 * the step streams the weights, gradient and state, and two cores draw more of this machine's memory bandwidth
 * than one. */
static void FO_FN(csr_dense_step)(fo_rule rule, const fo_hyper *h, FO_REAL *w, const FO_REAL *g, FO_REAL *state,
                                  ptrdiff_t n, ptrdiff_t n_decay, int64_t t, double lr, fo_csr_pipe *pipe,
                                  int64_t *helped)
{
    const FO_FN(csr_dense_job) J = {rule, h, w, state, g, n, n_decay, t, lr};
    const ptrdiff_t chunks = (n + FO_CSR_DENSE_CHUNK - 1) / FO_CSR_DENSE_CHUNK;
    if (pipe && chunks > 1)
        fo_csr_help_share(pipe, &J, FO_FN(csr_dense_chunk), chunks, helped);
    else
        FO_FN(rule_step)(rule, h, w, g, state, n, n_decay, t, lr);
}

/* Copy rows order[from:to) into the staging buffers (values, indices, row pointers, targets, weights), as many
 * whole minibatches of b rows as fit in cap stored values; returns the end of the staged range (from if not even
 * one minibatch fits). The copy is a tight loop whose row fetches overlap (each one's address is known a few
 * rows ahead), where the epoch's own sweeps would wait on each shuffled row in turn. */
static ptrdiff_t FO_FN(csr_stage)(const int64_t *order, ptrdiff_t from, ptrdiff_t to, ptrdiff_t b, ptrdiff_t cap,
                                  const FO_REAL *data, const int32_t *indices, const int32_t *indptr,
                                  const FO_REAL *Y, const FO_REAL *sw, ptrdiff_t k, FO_REAL *s_data,
                                  int32_t *s_ind, int32_t *s_ptr, FO_REAL *s_y, FO_REAL *s_sw)
{
    ptrdiff_t used = 0, fitted = from;
    s_ptr[0] = 0;
    for (ptrdiff_t pos = from; pos < to; pos++) {
        if (pos + FO_CSR_AHEAD < to) {
            const int64_t ahead = order[pos + FO_CSR_AHEAD];
            const ptrdiff_t a0 = indptr[ahead], a1 = indptr[ahead + 1];
            for (ptrdiff_t p = a0; p < a1; p += 64 / sizeof(FO_REAL)) FO_CSR_PREFETCH(data + p);
            if (a1 > a0) FO_CSR_PREFETCH(data + a1 - 1);
            for (ptrdiff_t p = a0; p < a1; p += 16) FO_CSR_PREFETCH(indices + p);
            if (a1 > a0) FO_CSR_PREFETCH(indices + a1 - 1);
            FO_CSR_PREFETCH(Y + ahead * k);
        }
        if (pos + 2 * FO_CSR_AHEAD < to) FO_CSR_PREFETCH(indptr + order[pos + 2 * FO_CSR_AHEAD]);
        const int64_t row = order[pos];
        const ptrdiff_t p0 = indptr[row], len = indptr[row + 1] - p0, r = pos - from;
        if (used + len > cap) break;
        if (len > 0) { /* data and indices are NULL when X stores nothing (memcpy must not see NULL) */
            memcpy(s_data + used, data + p0, (size_t)len * sizeof(FO_REAL));
            memcpy(s_ind + used, indices + p0, (size_t)len * sizeof(int32_t));
        }
        used += len;
        s_ptr[r + 1] = (int32_t)used;
        for (ptrdiff_t j = 0; j < k; j++) s_y[r * k + j] = Y[row * k + j];
        if (sw) s_sw[r] = sw[row];
        if ((r + 1) % b == 0 || pos + 1 == to) fitted = pos + 1;
    }
    return fitted;
}

/* Stage the block of rows order[start:...) into B (csr_stage; a piped epoch's, for either thread), and with
 * scattered steps check its rows' indices (step 1's checks); the end of its rows. B->bad: the first malformed
 * minibatch, or -1 (0 where not even one minibatch fits the caps: only a malformed one can, fo_csr_pipe). */
static ptrdiff_t FO_FN(csr_pipe_stage)(fo_csr_pipe *pipe, fo_csr_block *B, const fo_epoch_ctl *c, ptrdiff_t start,
                                       ptrdiff_t d, ptrdiff_t k, const FO_REAL *data, const int32_t *indices,
                                       const int32_t *indptr, const FO_REAL *Y, const FO_REAL *sw)
{
    const ptrdiff_t b = c->batch_size, s_rows = fo_csr_stage_rows(b), n = c->n_rows;
    const ptrdiff_t want = start + s_rows < n ? start + s_rows : n;
    ptrdiff_t end = FO_FN(csr_stage)(c->order, start, want, b, pipe->cap, data, indices, indptr, Y, sw, k,
                                     (FO_REAL *)B->s_data, B->s_ind, B->s_ptr, (FO_REAL *)B->s_y,
                                     (FO_REAL *)B->s_sw);
    int32_t bad = -1;
    if (end <= start) {
        end = start + b < n ? start + b : n;
        bad = 0;
    }
    if (pipe->scatter) /* the consumer scatters its steps (copy 3): no T, only step 1's checks */
        for (ptrdiff_t r = 0; r < end - start && bad < 0; r++)
            if (!fo_csr_row_ok(B->s_ind, B->s_ptr[r], B->s_ptr[r + 1], d)) bad = (int32_t)(r / b);
    B->start = start, B->end = end, B->bad = bad;
    return end;
}

/* Fixed blocks (fo_csr_pipe.fixed), either thread: claim block number j (its buffer free), stage it and publish
 * it; 0 if another thread claimed it first, 1 if staged, 2 if it holds a malformed row. */
static int FO_FN(csr_pipe_stage_fixed)(fo_csr_pipe *pipe, const fo_epoch_ctl *c, int64_t j, ptrdiff_t d,
                                       ptrdiff_t k, const FO_REAL *data, const int32_t *indices,
                                       const int32_t *indptr, const FO_REAL *Y, const FO_REAL *sw)
{
    if (!fo_csr_pipe_claim(pipe, j)) return 0;
    fo_csr_block *B = &pipe->block[j % FO_CSR_PIPE_BLOCKS];
    FO_FN(csr_pipe_stage)(pipe, B, c, (ptrdiff_t)j * fo_csr_stage_rows(c->batch_size), d, k, data, indices, indptr,
                          Y, sw);
    const int bad = B->bad >= 0; /* read before it is published: the buffer is the consumer's then */
    fo_csr_pipe_publish(pipe, j);
    return bad ? 2 : 1;
}

/* Fixed blocks, the consumer: while block number i is not yet published, claim and stage the first block not
 * yet claimed, if its buffer is free (its block i + FO_CSR_PIPE_BLOCKS before is read: the first i blocks are).
 * The producer is then the slower, and the consumer does some of its work. */
static void FO_FN(csr_pipe_stage_ahead)(fo_csr_pipe *pipe, const fo_epoch_ctl *c, int64_t i, ptrdiff_t d,
                                        ptrdiff_t k, const FO_REAL *data, const int32_t *indices,
                                        const int32_t *indptr, const FO_REAL *Y, const FO_REAL *sw)
{
    const int64_t blocks = fo_csr_fixed_blocks(c);
    while (!fo_csr_pipe_ready(pipe, i)) {
        const int64_t j = FO_CSR_LOAD(&pipe->next);
        if (j >= blocks || j >= i + FO_CSR_PIPE_BLOCKS) return; /* nothing to claim until block i is read */
        FO_FN(csr_pipe_stage_fixed)(pipe, c, j, d, k, data, indices, indptr, Y, sw);
    }
}

/* After a step on every coordinate: the projection and the running average, on all of them. */
static void FO_FN(csr_dense_after)(const fo_epoch_ctl *c, FO_REAL *params, ptrdiff_t n_params, ptrdiff_t kd,
                                   FO_REAL *avg)
{
    if (c->positive)
        for (ptrdiff_t p = 0; p < kd; p++)
            if (params[p] < 0) params[p] = 0;
    if (avg && c->t >= c->avg_start) {
        const FO_REAL count = (FO_REAL)(c->t - c->avg_start + 1);
        for (ptrdiff_t p = 0; p < n_params; p++) avg[p] += (params[p] - avg[p]) / count;
    }
}

/* Which of csr_epoch_impl's copies runs these settings. */
static int FO_FN(csr_epoch_copy)(fo_rule rule, const fo_hyper *h, const fo_epoch_ctl *c, int lazy, ptrdiff_t k)
{
    if (fo_csr_scatter(rule, h, c, lazy, k)) return 3;
    if (k != 1 || (c->avg && c->avg_start > 0) ||
        fo_csr_catch(rule, h, lazy, c->positive, c->lr, fo_csr_decay_kind(c)) != FO_CATCH_NONE)
        return 0;
    if (rule == FO_RULE_SGD) return 1;
    return lazy && (rule == FO_RULE_ADAM || rule == FO_RULE_ADAMW) ? 2 : 0;
}

/* The epoch (fo_epoch_csr), alone or, with pipe, as the consumer of a piped epoch (fo_csr_pipe): its blocks
 * are then staged, and their minibatches' T found, by the producer on another thread (fo_csr_produce), and step 1
 * below reads them. */
FO_LOSS_INLINE fo_status FO_FN(csr_epoch_impl)(fo_rule rule, const fo_hyper *h, fo_epoch_ctl *c, int lazy,
                                       const FO_REAL *data, const int32_t *indices, const int32_t *indptr,
                                       const FO_REAL *Y, const FO_REAL *sw, ptrdiff_t d, ptrdiff_t k_arg,
                                       FO_REAL *params, ptrdiff_t n_params, FO_REAL *state, ptrdiff_t n_slots,
                                       FO_REAL *work, int64_t *iwork, double *table, ptrdiff_t stage_cap,
                                       int64_t period, fo_csr_pipe *pipe, int copy)
{
    /* copy (a constant at each call: csr_epoch_copy): 1, plain SGD, or 2, SparseAdam mode, with one output,
     * nothing deferred and no average; 3, plain SGD stepped row by row (fo_csr_scatter, an L2 term too); 0 the
     * rest. The same source compiled for each of the cases alone runs them faster than the general copy (SGD 27
     * against 34-36 ms an epoch on the sparse benchmark): the other rules' code had changed how the shared loops
     * were compiled. */
    const int scatter = copy == 3, sgd1 = copy == 1 || scatter, adam1 = copy == 2;
    /* scattered steps under L2: the weights kept as w = s v (fo_csr_scatter), s in double */
    const int scaled = scatter && h->weight_decay != 0;
    const double f_step = 1.0 - c->lr * h->weight_decay;
    double s_scale = 1.0;
    const ptrdiff_t k = sgd1 || adam1 ? 1 : k_arg;
    c->bad_step = 0;
    c->loss_out = 0;
    const ptrdiff_t steps = c->batch_size > 0 ? (c->n_rows + c->batch_size - 1) / c->batch_size : 0;
    if ((c->decay && lazy && (rule == FO_RULE_ADAM || rule == FO_RULE_ADAMW)) || c->batch_size < 1 || k < 1 || n_slots < 0 || n_slots > FO_MAX_SLOTS || stage_cap < 0 || stage_cap > INT32_MAX ||
        n_params != k * d + (n_params > k * d ? k : 0) || d >= INT32_MAX || steps >= INT32_MAX - 1)
        return FO_BAD_ARGUMENT;
    const int has_b = n_params > k * d;
    const ptrdiff_t kd = k * d, nb = has_b ? k : 0;
    FO_REAL *avg = !copy && c->avg && c->avg_start > 0 ? (FO_REAL *)c->avg : NULL;
    const fo_catch how = copy ? FO_CATCH_NONE : fo_csr_catch(rule, h, lazy, c->positive, c->lr, fo_csr_decay_kind(c));
    /* Coordinates are stamped with their last step, and caught up when read, for the rules with deferred updates
     * and for the running average (which moves while its coordinate rests). */
    const int catching = how != FO_CATCH_DENSE && (how != FO_CATCH_NONE || avg);
    if (pipe && (pipe->scatter != scatter || (pipe->fixed && !scatter))) return FO_BAD_ARGUMENT; /* fo_csr_pipe */
    const int decoupled = rule == FO_RULE_ADAMW;
    const int sparse_adam = adam1 || (!sgd1 && lazy && (rule == FO_RULE_ADAM || rule == FO_RULE_ADAMW));
    const int direct = sgd1 || (!adam1 && rule == FO_RULE_SGD); /* no state: stepped in place (see step 2) */
    /* momentum and Nesterov: stepped in place too, buffer and weight (step 5m), without the compact copies of
     * T's weights and buffers (the bench's hashed rows, one thread, alternating builds, an epoch: momentum
     * 206-215 -> 190-193 ms, 280-289 -> 249-255 under the map's own decays; Nesterov 200-210 -> 188-195 and
     * 263-280 -> 260-269; two threads within their noise). The same operations, so the same bits. */
    const int pair_direct = !sgd1 && !adam1 && (rule == FO_RULE_MOMENTUM || rule == FO_RULE_NESTEROV);
    /* AdaGrad and RMSProp: their accumulators and weights in place, the quotients over compact arrays (step 5a),
     * without the copies of T's weights and state (the bench's hashed rows, alternating builds, an epoch: AdaGrad
     * 134-142 -> 110-116 ms on one thread, 88-91 -> 67-70 on two; RMSProp 225-229 -> 195-201 and 191 -> 163-165;
     * the same operations, so the same bits) */
    const int ada_direct = !sgd1 && !adam1 && (rule == FO_RULE_ADAGRAD || rule == FO_RULE_RMSPROP);
    /* SparseAdam with one output: no compact copy of T's weights (step 2) */
    const int adam_ahead = sparse_adam && k == 1 && n_slots >= 2;
    /* Every step has a form of its own: on every coordinate, row by row, or in place for its rule (steps 5 to
     * 5'). A rule with none is refused, rather than stepped by a general form that no rule reaches. */
    if (!(how == FO_CATCH_DENSE || scatter || direct || pair_direct || ada_direct || sparse_adam))
        return FO_BAD_ARGUMENT;
    const FO_REAL epsilon = (FO_REAL)c->epsilon;
    /* The state slots the rule reads (the others are neither gathered nor scattered). */
    int used[FO_MAX_SLOTS] = {0, 0, 0};
    for (ptrdiff_t sl = 0; sl < n_slots; sl++) used[sl] = 1;
    if ((rule == FO_RULE_ADAM || rule == FO_RULE_ADAMW) && !h->amsgrad && n_slots > 2) used[2] = 0;
    if (rule == FO_RULE_RMSPROP && n_slots > 2) used[1] = h->centered != 0, used[2] = h->momentum > 0;
    /* work: compact w, g, state (T's coordinates feature-major, then the intercepts), the row coefficients, and
     * the dense gradient that the rules without deferred updates step on (zero off T). */
    FO_REAL *cw = work, *cg = cw + n_params, *cs = cg + n_params, *coef = cs + FO_MAX_SLOTS * n_params;
    FO_REAL *g = coef + (c->batch_size + 1) * k;
    /* iwork: one slot per feature (the step it is up to date with, its position in T; or, on one thread with
     * nothing deferred, a 4-byte mark: see `marked`), then T and the positions in T of a row's stored values
     * (int32) */
    fo_csr_slot *slot = (fo_csr_slot *)iwork;
    int32_t *touched0 = (int32_t *)(iwork + d), *spos = touched0 + d;
    /* Staging (see csr_stage and fo_csr_stage_rows): values, targets and weights, after the dense gradient in work;
     * indices and row pointers after T in iwork */
    const ptrdiff_t b = c->batch_size, s_rows = fo_csr_stage_rows(b), s_cap = stage_cap;
    FO_REAL *s_data = g + n_params, *s_y = s_data + s_cap, *s_sw = s_y + s_rows * k, *row_l1 = s_sw + s_rows;
    int32_t *s_ind = (int32_t *)(iwork + 2 * d), *s_ptr = s_ind + s_cap, *s_pos0 = s_ptr + s_rows + 2;
    const int64_t t0 = c->t;
    const ptrdiff_t tab_steps = period > 0 && period < steps ? (ptrdiff_t)period : steps;
    const FO_REAL *own_decay = (const FO_REAL *)c->decay;
    if (catching && !own_decay) fo_csr_tables(rule, h, c->lr, tab_steps, table);
    const FO_FN(csr_lazy) z = {how, h, table, period, d, k, n_params, params, state, avg, c->avg_start,
                                c->positive, own_decay, rule, c->lr};
    /* SGD under each weight's own decay, nothing else deferred: the catch-ups' own short form */
    const int own_scale = how == FO_CATCH_SCALE && own_decay && !avg && !c->positive;
    /* momentum and Nesterov under each weight's own decay, without the running average: theirs */
    const int own_pair = how == FO_CATCH_PAIR && own_decay && !avg;
    /* momentum, Nesterov and RMSProp on the shared table, nothing else deferred: their short form */
    const int table_pair = (how == FO_CATCH_PAIR || how == FO_CATCH_RMS) && !own_decay && !avg && !c->positive;
    /* either taken in batches (csr_batch), where the rests can be long */
    const int batched = (own_scale || own_pair) && steps >= FO_CSR_OWN_BATCH_MIN;
    /* The first step on every coordinate: the momentum rules' first (their buffers start as the gradient), and
     * with projection a first one that finds negative weights (a warm start), which it projects. */
    int dense_first = how == FO_CATCH_PAIR && t0 == 0;
    if (c->positive && !dense_first)
        for (ptrdiff_t p = 0; p < kd; p++)
            if (params[p] < 0) {
                dense_first = 1;
                break;
            }
    if (how == FO_CATCH_DENSE || dense_first) memset(g, 0, (size_t)n_params * sizeof(FO_REAL));
    /* piped, the producer keeps T's marks, and this thread the stamps of the deferred updates; scattered steps
     * have neither */
    /* One thread with nothing deferred (SparseAdam mode, AdaGrad without L2, the steps on every coordinate): T
     * found through 4-byte marks, as the producer's (fo_csr_produce), where no stamp is needed: a feature is in
     * the current minibatch's T when its mark is at least the count g0 of T's members found before the
     * minibatch, and its position is then mark - g0. Half the slots' footprint, so more of them stay in L2: the
     * sparse benchmark's one-thread epoch, alternating builds, SparseAdam mode 107-141 against 126-184 ms (new
     * faster in 14 of 17 pairs), AdaGrad 131-169 against 153-205 (10 of 11); the same bits. */
    int marked = !pipe && !scatter && !catching;
    int32_t *mark = (int32_t *)iwork, found = 0, g0 = 0;
    if (marked)
        for (ptrdiff_t col = 0; col < d; col++) mark[col] = -1;
    else if ((!pipe && !scatter) || catching)
        for (ptrdiff_t col = 0; col < d; col++) slot[col].last = 0, slot[col].pos = -1;
    fo_status status = FO_OK;
    const fo_csr_block *blk = NULL; /* piped: the block being read, and blocks taken so far */
    /* helped: chunks of shared steps the producer ran (csr_sparse_adam_split, csr_dense_step) */
    int64_t taken = 0, helped = 0;
    /* piped: the pipe also while this thread goes on alone (pipe NULL then); when it next tries to take the
     * producer back, the backoff, and the step at which the last team began (fo_csr_pipe_rejoin) */
    fo_csr_pipe *const piped = pipe;
    /* piped with blocks of its own making (not fixed blocks): the pace, the carried backoff and the taking back */
    const int own_blocks = piped && !piped->fixed;
    int64_t solo_until = 0, backoff = FO_CSR_REJOIN_MIN, team_since = 0;
    /* piped: the consumer's pace (fo_csr_pace), the current block's kind, stored values and wait, and whether
     * this thread went on alone on its pace (it then takes the producer back only once it has timed a window
     * alone) */
    fo_csr_pace pace = {0};
    int blk_piped = 0, paced_alone = 0;
    int64_t blk_values = 0, blk_waited = 0;
    double total = c->loss_sum;
    ptrdiff_t nt = 0;
    /* The rows of the current block: staged (sorder NULL, row numbers local to the block, from base) or, for a
     * minibatch too large for the staging buffers, read in place. */
    const FO_REAL *xd = data, *xy = Y, *xsw = sw;
    const int32_t *xi = indices, *xp = indptr;
    const int64_t *sorder = c->order;
    ptrdiff_t base = 0, block_end = 0;
#define FO_ROW(pos) (sorder ? sorder[pos] : (int64_t)((pos) - base))
    for (ptrdiff_t start = 0; start < c->n_rows; start += b) {
        const ptrdiff_t end = start + b < c->n_rows ? start + b : c->n_rows, nrows = end - start;
        /* the pace of the block before (alone, slow: go on alone); or, at the first, the last call's backoff
         * (fo_csr_pipe.carry: it ended alone on its pace) */
        const int carried = own_blocks && start == 0 && piped->carry > 0 && end < c->n_rows;
        const int slow = carried || (own_blocks && start >= block_end && start > 0 &&
                                     fo_csr_pace_block(&pace, blk_piped, blk_values, blk_waited, fo_clock_ns()));
        if (own_blocks && !pipe && start >= block_end && c->t + 1 >= solo_until &&
            (!paced_alone || pace.measured) && fo_csr_pipe_rejoin(piped, start)) {
            /* the producer back, from the block it would make next */
            pipe = piped, taken = piped->resume_block, marked = 0, team_since = c->t + 1, paced_alone = 0;
        }
        if (start >= block_end) blk_waited = 0;
        if (pipe && start >= block_end) {
            if (taken) fo_csr_pipe_release(pipe, taken); /* the previous block is read */
            if (pipe->fixed) FO_FN(csr_pipe_stage_ahead)(pipe, c, taken, d, k, data, indices, indptr, Y, sw);
            const int got = slow ? 2 : fo_csr_pipe_take(pipe, taken, &blk_waited);
            if (got == 2) {
                /* The producer lost its core (or keeps up too slowly): go on as one thread does, from the
                 * one-thread epoch's own staging and marks (no shared chunk is outstanding here: each shared step
                 * waits for all of its chunks); the stamps of deferred updates are this thread's already. The
                 * producer stops once it runs. */
                if (slow)
                    pipe->paced += !carried, paced_alone = 1, pace.measured = 0;
                else
                    pipe->stalls++;
                if (!pipe->went_solo) pipe->went_solo = c->t + 1;
                FO_CSR_STORE(&pipe->solo, pipe->solo + 1);
                pipe = NULL;
                /* (carried: the first try soon, in case the spell has passed; the backoff doubles from the last
                 * call's if the producer is still slow) */
                backoff = carried ? piped->carry
                                  : fo_rejoin_backoff(backoff, c->t + 1 - team_since, FO_CSR_TEAM_SHORT,
                                                      FO_CSR_REJOIN_MIN, FO_CSR_REJOIN_MAX);
                solo_until = piped->solo_block < 0 ? 0 : c->t + 1 + (carried ? FO_CSR_REJOIN_MIN : backoff);
                if (!scatter && !catching) {
                    marked = 1, found = 0;
                    for (ptrdiff_t col = 0; col < d; col++) mark[col] = -1;
                }
            } else if (!got) {
                status = FO_BAD_ARGUMENT;
                break;
            }
        }
        if (pipe && start >= block_end) {
            blk = &pipe->block[taken++ % FO_CSR_PIPE_BLOCKS];
            if (blk->start != start) { /* fixed blocks that did not hold their rows (fo_csr_pipe.fixed) */
                status = FO_BAD_ARGUMENT;
                break;
            }
            xd = (const FO_REAL *)blk->s_data, xi = blk->s_ind, xp = blk->s_ptr, xy = (const FO_REAL *)blk->s_y;
            xsw = sw ? (const FO_REAL *)blk->s_sw : NULL, sorder = NULL, base = start, block_end = blk->end;
            blk_piped = 1, blk_values = blk->bad < 0 ? xp[block_end - start] : 0;
        } else if (start >= block_end) {
            const ptrdiff_t want = start + s_rows < c->n_rows ? start + s_rows : c->n_rows;
            block_end = FO_FN(csr_stage)(c->order, start, want, b, s_cap, data, indices, indptr, Y, sw, k, s_data,
                                         s_ind, s_ptr, s_y, s_sw);
            if (block_end > start) {
                xd = s_data, xi = s_ind, xp = s_ptr, xy = s_y, xsw = sw ? s_sw : NULL, sorder = NULL, base = start;
                blk_values = xp[block_end - start];
            } else {
                block_end = end;
                xd = data, xi = indices, xp = indptr, xy = Y, xsw = sw, sorder = c->order, base = 0;
                blk_values = 0;
                if (piped)
                    for (ptrdiff_t r = start; r < end; r++) blk_values += indptr[sorder[r] + 1] - indptr[sorder[r]];
            }
            blk_piped = 0;
        }
        const int32_t rel = (int32_t)(c->t - t0) + 1; /* this step, counted from the call's start */
        const int64_t step = c->t + 1;
        /* 1. T, the touched features in order of first appearance, each brought up to date with step c->t: a
         * tight loop over the stamps, whose misses overlap. Meanwhile, row by row, the columns of the next
         * minibatch's rows (whose indices arrived with this block) are prefetched: spread out, not in a burst
         * that would overflow the core's queue of outstanding misses. */
        nt = 0;
        /* A staged minibatch's values are contiguous from mb0: step 1 records each one's position in T as it
         * meets it, which step 3 then reads in order (it looked each up again in the stamps: a second random read
         * per stored value, from L2 by then, measured at a tenth of an SGD epoch on the sparse benchmark). */
        const ptrdiff_t mb0 = sorder ? 0 : xp[start - base];
        int32_t *touched = touched0, *s_pos = s_pos0;
        /* piped: the next minibatch's T, whose weights are requested a slice per pair of rows in step 3 (one burst
         * of requests here overflowed the core's queue of outstanding misses: a sixth of the consumer's time) */
        const int32_t *nxt = NULL;
        ptrdiff_t n_nxt = 0, nxt_done = 0, mom_done = 0;
        if (pipe) { /* T and the positions found by the producer; the next minibatch's weights requested */
            const ptrdiff_t m = (start - base) / b;
            if (blk->bad == m) {
                status = FO_BAD_ARGUMENT;
                break;
            }
            if (!scatter) {
                touched = blk->touched + blk->t_off[m];
                nt = blk->t_off[m + 1] - blk->t_off[m];
                s_pos = blk->s_pos + mb0;
            }
            if (!scatter && end < block_end) {
                nxt = blk->touched + blk->t_off[m + 1];
                n_nxt = blk->t_off[m + 2] - blk->t_off[m + 1];
            }
        } else if (scatter) { /* no T (step 5''): only the checks of step 1 below, on the rows' indices */
            for (ptrdiff_t pos = start; pos < end; pos++) {
                const int64_t row = FO_ROW(pos);
                if (!fo_csr_row_ok(xi, xp[row], xp[row + 1], d)) {
                    status = FO_BAD_ARGUMENT;
                    break;
                }
            }
        } else {
            if (marked && found > INT32_MAX - d) { /* the count stays below INT32_MAX: a minibatch adds at most d */
                for (ptrdiff_t col = 0; col < d; col++) mark[col] = -1;
                found = 0;
            }
            g0 = found;
            for (ptrdiff_t pos = start; pos < end; pos++) {
                const int64_t row = FO_ROW(pos);
                if (pos + b < block_end) {
                    const int64_t next = FO_ROW(pos + b);
                    for (ptrdiff_t p = xp[next]; p < xp[next + 1]; p++) { /* not yet checked: clamped */
                        const ptrdiff_t a = (uint32_t)xi[p] < (uint32_t)d ? xi[p] : 0;
                        if (marked)
                            FO_CSR_PREFETCH(mark + a);
                        else
                            FO_CSR_PREFETCH(slot + a);
                        FO_CSR_PREFETCH(params + a);
                    }
                }
                if (xp[row + 1] - xp[row] > d) { /* a column stored twice in a row (not canonical CSR) */
                    status = FO_BAD_ARGUMENT;
                    break;
                }
                for (ptrdiff_t p = xp[row]; p < xp[row + 1]; p++) {
                    const int32_t col = xi[p];
                    if ((uint32_t)col >= (uint32_t)d) { /* a column index out of range: nothing reads through it */
                        status = FO_BAD_ARGUMENT;
                        break;
                    }
                    if (marked) {
                        int32_t v = mark[col];
                        if (v < g0) {
                            v = g0 + (int32_t)nt;
                            mark[col] = v;
                            touched[nt++] = col;
                        }
                        if (!sorder) s_pos[p - mb0] = v - g0;
                        continue;
                    }
                    fo_csr_slot *sl = slot + col;
                    if (sl->last != rel) {
                        if (catching) spos[nt] = sl->last; /* caught up below */
                        sl->last = rel; /* up to date once this step is taken */
                        sl->pos = (int32_t)nt;
                        touched[nt++] = col;
                    }
                    if (!sorder) s_pos[p - mb0] = sl->pos;
                }
                if (status != FO_OK) break;
            }
            found = g0 + (int32_t)nt;
        }
        if (status != FO_OK) { /* malformed input: nothing read through it, the step not taken */
            if (!pipe && !marked)
                for (ptrdiff_t q = 0; q < nt; q++) slot[touched[q]].last = catching ? spos[q] : rel - 1;
            break;
        }
        /* T's resting coordinates brought up to date with step c->t, in a loop of their own whose weights (and
         * decays, states) are requested a few members ahead: called from the search above, each catch-up waited
         * on its weight's line in turn, which sampling put at 60% of the catch-ups' time (SGD with L2 on the
         * sparse benchmark, one thread: 200-300 ms an epoch, against 50-100 without L2). Epoch medians 278-318 ms
         * against 273-385 before, alternating builds: within this machine's noise, not worse. */
        if (pipe && catching) /* T found by the producer: each member's stamp read (for the catch-up) and set */
            for (ptrdiff_t q = 0; q < nt; q++) {
                if (q + 2 * FO_CSR_CATCH_AHEAD < nt) FO_CSR_PREFETCH_W(slot + touched[q + 2 * FO_CSR_CATCH_AHEAD]);
                fo_csr_slot *sl = slot + touched[q];
                spos[q] = sl->last;
                sl->last = rel;
            }
        if (catching && batched) {
            FO_FN(csr_batch) ob;
            ob.m = 0, ob.bits = 0, ob.pair = own_pair;
            for (ptrdiff_t q = 0; q < nt; q++) {
                if (q + FO_CSR_CATCH_AHEAD < nt) {
                    const ptrdiff_t a = touched[q + FO_CSR_CATCH_AHEAD];
                    for (ptrdiff_t j = 0; j < k; j++) {
                        FO_CSR_PREFETCH_W(params + j * d + a);
                        FO_CSR_PREFETCH(own_decay + j * d + a);
                        if (own_pair) FO_CSR_PREFETCH_W(state + j * d + a);
                    }
                }
                if (spos[q] != rel - 1) FO_FN(csr_batch_add)(&z, &ob, touched[q], t0 + spos[q], c->t);
            }
            FO_FN(csr_batch_flush)(&z, &ob);
        } else if (catching)
            for (ptrdiff_t q = 0; q < nt; q++) {
                if (q + FO_CSR_CATCH_AHEAD < nt) {
                    const ptrdiff_t a = touched[q + FO_CSR_CATCH_AHEAD];
                    for (ptrdiff_t j = 0; j < k; j++) {
                        FO_CSR_PREFETCH_W(params + j * d + a);
                        if (own_decay) FO_CSR_PREFETCH(own_decay + j * d + a);
                        for (ptrdiff_t sl = 0; sl < n_slots; sl++)
                            if (used[sl]) FO_CSR_PREFETCH_W(state + sl * n_params + j * d + a);
                    }
                }
                if (spos[q] == rel - 1) continue;
                if (own_scale) FO_FN(csr_catch_own_scale)(&z, touched[q], t0 + spos[q], c->t);
                else if (table_pair) FO_FN(csr_catch_pair)(&z, touched[q], t0 + spos[q], c->t);
                else FO_FN(csr_catch_up)(&z, touched[q], t0 + spos[q], c->t);
            }
        /* 2. T's weights gathered (compact, feature-major), its gradient zeroed, its state's lines requested.
         * SGD steps the weights in place instead (step 5), and its sweeps read them there: no gather, no
         * scatter (measured: the gather was a fifth of the epoch). */
        if (direct)
            memset(cg, 0, (size_t)(nt * k) * sizeof(FO_REAL));
        else if (pair_direct || ada_direct) { /* the buffers' lines requested for step 5m (5a) */
            memset(cg, 0, (size_t)(nt * k) * sizeof(FO_REAL));
            for (ptrdiff_t q = 0; q < nt; q++)
                for (ptrdiff_t j = 0; j < k; j++)
                    for (ptrdiff_t sl = 0; sl < n_slots; sl++)
                        if (used[sl]) FO_CSR_PREFETCH(state + sl * n_params + j * d + touched[q]);
        } else if (adam_ahead) /* stepped in place too (step 5'); one output reads params directly */
            memset(cg, 0, (size_t)nt * sizeof(FO_REAL)); /* (the moments' lines are requested in step 3) */
        else
            for (ptrdiff_t q = 0; q < nt; q++) {
                const ptrdiff_t col = touched[q];
                for (ptrdiff_t j = 0; j < k; j++) {
                    cw[q * k + j] = params[j * d + col];
                    cg[q * k + j] = 0;
                }
                if (sparse_adam) /* its moments side by side, each output's */
                    for (ptrdiff_t j = 0; j < k; j++) FO_CSR_PREFETCH(state + 2 * (j * d + col));
                else
                    for (ptrdiff_t s = 0; s < n_slots; s++)
                        if (used[s]) FO_CSR_PREFETCH(state + s * n_params + col);
            }
        /* 3. Row by row: the positions in T of its values, its residuals, loss and coefficients c_ij = sw_i
         * loss'(r_ij), and its terms of the gradient (each gradient entry summed over the rows in order). */
        double loss = 0, bound = 0; /* bound: sum_i |c_i| |x_i|_1 (scattered steps) */
        FO_REAL *gb = coef + nrows * k; /* the intercepts' gradient, after the coefficients */
        for (ptrdiff_t j = 0; j < nb; j++) gb[j] = 0;
        /* One output: the dot products first, two rows at a time (each still summed in order, so the same bits),
         * so that two chains of dependent additions overlap; T's weights are up to date in params. */
        if (k == 1)
            for (ptrdiff_t q = 0; q < nrows; q += 2) {
                const int64_t ra = FO_ROW(start + q), rb = q + 1 < nrows ? FO_ROW(start + q + 1) : ra;
                const FO_REAL *xa = xd + xp[ra], *xb = xd + xp[rb];
                const int32_t *ia = xi + xp[ra], *ib = xi + xp[rb];
                const ptrdiff_t na = xp[ra + 1] - xp[ra], nb_ = q + 1 < nrows ? xp[rb + 1] - xp[rb] : 0;
                const ptrdiff_t both = na < nb_ ? na : nb_;
                FO_REAL da = 0, db = 0;
                if (scatter) { /* and the rows' absolute sums, for the gradient's bound (step 4) */
                    FO_REAL la = 0, lb = 0;
                    for (ptrdiff_t p = 0; p < both; p++) {
                        da += xa[p] * params[ia[p]];
                        db += xb[p] * params[ib[p]];
                        la += FO_FABS(xa[p]);
                        lb += FO_FABS(xb[p]);
                    }
                    for (ptrdiff_t p = both; p < na; p++) {
                        da += xa[p] * params[ia[p]];
                        la += FO_FABS(xa[p]);
                    }
                    for (ptrdiff_t p = both; p < nb_; p++) {
                        db += xb[p] * params[ib[p]];
                        lb += FO_FABS(xb[p]);
                    }
                    row_l1[q] = la;
                    if (q + 1 < nrows) row_l1[q + 1] = lb;
                } else {
                    for (ptrdiff_t p = 0; p < both; p++) {
                        da += xa[p] * params[ia[p]];
                        db += xb[p] * params[ib[p]];
                    }
                    for (ptrdiff_t p = both; p < na; p++) da += xa[p] * params[ia[p]];
                    for (ptrdiff_t p = both; p < nb_; p++) db += xb[p] * params[ib[p]];
                }
                if (scaled) { /* x . w = s (x . v) */
                    da = (FO_REAL)((double)da * s_scale);
                    db = (FO_REAL)((double)db * s_scale);
                }
                coef[q] = da;
                if (q + 1 < nrows) coef[q + 1] = db;
                if (nxt) {
                    const ptrdiff_t upto = q + 2 < nrows ? n_nxt * (q + 2) / nrows : n_nxt;
                    for (; nxt_done < upto; nxt_done++) FO_CSR_PREFETCH(params + nxt[nxt_done]);
                }
            }
        for (; nxt_done < n_nxt; nxt_done++) FO_CSR_PREFETCH(params + nxt[nxt_done]);
        for (ptrdiff_t q = 0; q < nrows; q++) {
            const int64_t row = FO_ROW(start + q);
            const ptrdiff_t p0 = xp[row], n0 = xp[row + 1] - p0;
            const FO_REAL *xv = xd + p0;
            const int32_t *sp = s_pos + (p0 - mb0); /* staged: recorded by step 1 */
            if (sorder && !scatter) {
                for (ptrdiff_t p = 0; p < n0; p++) spos[p] = marked ? mark[xi[p0 + p]] - g0 : slot[xi[p0 + p]].pos;
                sp = spos;
            }
            const FO_REAL wi = xsw ? xsw[row] : (FO_REAL)1;
            for (ptrdiff_t j = 0; j < k; j++) {
                FO_REAL dot = 0;
                if (k == 1) {
                    dot = coef[q];
                } else if (direct || pair_direct || ada_direct) {
                    const FO_REAL *wj = params + j * d;
                    const int32_t *iv = xi + p0;
                    for (ptrdiff_t p = 0; p < n0; p++) dot += xv[p] * wj[iv[p]];
                } else {
                    for (ptrdiff_t p = 0; p < n0; p++) dot += xv[p] * cw[sp[p] * k + j];
                }
                const FO_REAL r = dot + (has_b ? params[kd + j] : (FO_REAL)0) - xy[row * k + j];
                FO_REAL dl;
                loss += (double)wi * FO_FN(loss_value)(c->loss, r, epsilon, &dl);
                const FO_REAL cq = wi * dl;
                coef[q * k + j] = cq;
                if (scatter) { /* no gradient entries: step 5'' scatters the rows' terms */
                    bound += (double)FO_FABS(cq) * (double)row_l1[q];
                    if (has_b) gb[j] += cq;
                    continue;
                }
                if (k == 1)
                    for (ptrdiff_t p = 0; p < n0; p++) cg[sp[p]] += cq * xv[p];
                else
                    for (ptrdiff_t p = 0; p < n0; p++) cg[sp[p] * k + j] += cq * xv[p];
                if (has_b) gb[j] += cq;
            }
            if (adam_ahead) { /* T's moments' lines, for step 5', a slice a row (in one burst they overflowed the
                               * core's queue of outstanding misses: a tenth of the epoch) */
                /* shared (csr_sparse_adam_split), the producer is likely to step the top half */
                const ptrdiff_t mom_n = pipe && adam1 && nt + nb > FO_CSR_HELP_CHUNK ? nt / 2 : nt;
                const ptrdiff_t upto = q + 1 < nrows ? mom_n * (q + 1) / nrows : mom_n;
                for (; mom_done < upto; mom_done++) FO_CSR_PREFETCH(state + 2 * touched[mom_done]);
            }
        }
        /* The minibatch mean gradient, compact, and its sum of squares in four chains (its order is free: only
         * its finiteness and the clipping norm use it). */
        const ptrdiff_t nc = k * nt + nb;
        for (ptrdiff_t j = 0; j < nb; j++) {
            cw[k * nt + j] = params[kd + j];
            cg[k * nt + j] = gb[j];
        }
        const FO_REAL inv = (FO_REAL)(1.0 / (double)(nrows < c->pad_rows ? c->pad_rows : nrows)); /* (pad_rows) */
        double ss4[4] = {0, 0, 0, 0};
        ptrdiff_t i4 = 0;
        for (; i4 + 4 <= nc; i4 += 4)
            for (int l = 0; l < 4; l++) {
                const FO_REAL gi = cg[i4 + l] * inv;
                cg[i4 + l] = gi;
                ss4[l] += (double)gi * (double)gi;
            }
        for (; i4 < nc; i4++) {
            cg[i4] *= inv;
            ss4[0] += (double)cg[i4] * (double)cg[i4];
        }
        double ss = (ss4[0] + ss4[1]) + (ss4[2] + ss4[3]);
        /* 4. Scattered steps: the gradient's entries are not formed, only bounded, |g_j| <= inv * bound, and
         * sum_j g_j^2 <= (inv * bound)^2. Below the threshold every entry and partial sum, and the sum of squares,
         * are finite (the only use of ss here: no clipping); above it (or when not finite) the entries are formed
         * in the dense g, as cg would hold them, for the exact test, and g is zeroed again. */
        if (scatter && isfinite(loss) && !(bound < (sizeof(FO_REAL) == 4 ? 1e37 : 1e150))) {
            for (ptrdiff_t q = 0; q < nrows; q++) {
                const int64_t row = FO_ROW(start + q);
                for (ptrdiff_t p = xp[row]; p < xp[row + 1]; p++) g[xi[p]] = 0;
            }
            for (ptrdiff_t q = 0; q < nrows; q++) {
                const int64_t row = FO_ROW(start + q);
                for (ptrdiff_t p = xp[row]; p < xp[row + 1]; p++) g[xi[p]] += coef[q] * xd[p];
            }
            for (ptrdiff_t q = 0; q < nrows; q++) {
                const int64_t row = FO_ROW(start + q);
                for (ptrdiff_t p = xp[row]; p < xp[row + 1]; p++) {
                    const FO_REAL gi = g[xi[p]] * inv;
                    ss += (double)gi * (double)gi;
                    g[xi[p]] = 0; /* counted once */
                }
            }
        }
        total += loss;
        if (!isfinite(loss) || !isfinite(ss)) {
            status = FO_NONFINITE_LOSS;
        } else if (loss / (double)nrows > c->loss_limit) {
            status = FO_DIVERGED;
        }
        if (status != FO_OK) {
            c->bad_step = step;
            if ((!pipe && !marked) || catching)
                for (ptrdiff_t q = 0; q < nt; q++) slot[touched[q]].last = rel - 1; /* the step was not taken */
            break;
        }
        /* Clipping by the global norm: the gradient is zero off T. */
        if (c->clip_norm > 0) {
            const double norm = sqrt(ss), cf = c->clip_norm / (norm + FO_CSR_CLIP_EPS);
            if (cf < 1) {
                const FO_REAL s = (FO_REAL)cf;
                for (ptrdiff_t i = 0; i < nc; i++) cg[i] *= s;
            }
        }
        c->t = step;
        /* The step on every coordinate (the rules without deferred updates, and the first steps above). */
        if (how == FO_CATCH_DENSE || (dense_first && rel == 1)) {
            if (sparse_adam) { /* every coordinate whose gradient is nonzero is in T */
                FO_FN(csr_sparse_adam_in_place)(h, c, params, state, avg, cg, touched, nt, d, k, nb, n_params, step,
                                               decoupled, 0, (FO_REAL)1, cw, cs, NULL, NULL);
            } else if (c->decay) { /* the loss gradient (zero off T) plus each weight's decay, as the dense epoch */
                const FO_REAL *decay = (const FO_REAL *)c->decay;
                for (ptrdiff_t p = 0; p < kd; p++) g[p] = decay[p] * params[p];
                for (ptrdiff_t q = 0; q < nt; q++)
                    for (ptrdiff_t j = 0; j < k; j++) g[j * d + touched[q]] += cg[q * k + j];
                for (ptrdiff_t j = 0; j < nb; j++) g[kd + j] = cg[k * nt + j];
                FO_FN(rule_step)(rule, h, params, g, state, n_params, kd, step, c->lr);
                memset(g, 0, (size_t)kd * sizeof(FO_REAL));
            } else {
                for (ptrdiff_t q = 0; q < nt; q++)
                    for (ptrdiff_t j = 0; j < k; j++) g[j * d + touched[q]] = cg[q * k + j];
                for (ptrdiff_t j = 0; j < nb; j++) g[kd + j] = cg[k * nt + j];
                FO_FN(csr_dense_step)(rule, h, params, g, state, n_params, kd, step, c->lr, pipe, &helped);
                for (ptrdiff_t q = 0; q < nt; q++)
                    for (ptrdiff_t j = 0; j < k; j++) g[j * d + touched[q]] = 0;
            }
            FO_FN(csr_dense_after)(c, params, n_params, kd, avg);
            if (catching)
                for (ptrdiff_t col = 0; col < d; col++) slot[col].last = rel;
            continue;
        }
        const int averaging = avg && step >= c->avg_start;
        const FO_REAL count = (FO_REAL)(step - c->avg_start + 1);
        if (scatter) { /* 5''. The step row by row: w_j -= lr (c_i / |B|) x_ij, in the rows' order (under L2:
                         * s <- f s, v_j -= lr (c_i / |B|) x_ij / s) */
            const FO_REAL a = (FO_REAL)c->lr;
            const double s_next = s_scale * f_step;
            for (ptrdiff_t q = 0; q < nrows; q++) {
                const int64_t row = FO_ROW(start + q);
                const ptrdiff_t p0 = xp[row], n0 = xp[row + 1] - p0;
                const FO_REAL u = scaled ? (FO_REAL)((double)a * (double)(coef[q] * inv) / s_next)
                                         : a * (coef[q] * inv);
                const FO_REAL *xv = xd + p0;
                const int32_t *iv = xi + p0;
                FO_FN(csr_scatter_sub)(params, iv, xv, n0, u);
            }
            for (ptrdiff_t j = 0; j < nb; j++) params[kd + j] -= a * (cg[j] + (FO_REAL)0);
            if (scaled) {
                s_scale = s_next;
                const double lo = sizeof(FO_REAL) == 4 ? FO_CSR_SCALE_LO_S : FO_CSR_SCALE_LO_D;
                if ((period > 0 && step % period == 0) || !(s_scale >= lo && s_scale <= 1.0 / lo)) {
                    for (ptrdiff_t p = 0; p < kd; p++) params[p] = (FO_REAL)((double)params[p] * s_scale);
                    s_scale = 1.0;
                }
            }
            continue;
        }
        if (direct) { /* 5. rule_sgd's arithmetic, in place, with the projection and the running average */
            const FO_REAL a = (FO_REAL)c->lr, wd = (FO_REAL)h->weight_decay;
            for (ptrdiff_t q = 0; q < nt; q++)
                for (ptrdiff_t j = 0; j < k; j++) {
                    const ptrdiff_t i = j * d + touched[q];
                    FO_REAL gi = cg[q * k + j];
                    FO_REAL w = params[i];
                    if (own_decay) gi = own_decay[i] * w + gi; /* as the dense epoch: decay w + the clipped g */
                    w -= a * (wd != 0 ? gi + wd * w : gi + (FO_REAL)0);
                    if (c->positive && w < 0) w = 0;
                    params[i] = w;
                    if (averaging) avg[i] += (w - avg[i]) / count;
                }
            for (ptrdiff_t j = 0; j < nb; j++) {
                params[kd + j] -= a * (cg[k * nt + j] + (FO_REAL)0);
                if (averaging) avg[kd + j] += (params[kd + j] - avg[kd + j]) / count;
            }
            continue;
        }
        if (pair_direct) { /* 5m. rule_momentum's or rule_nesterov's arithmetic, in place, as step 5 */
            const FO_REAL a = (FO_REAL)c->lr, wd = (FO_REAL)h->weight_decay, mu = (FO_REAL)h->momentum;
            const FO_REAL damp = (FO_REAL)(1.0 - h->dampening);
            const int nesterov = rule == FO_RULE_NESTEROV;
            for (ptrdiff_t q = 0; q < nt + nb; q++)
                for (ptrdiff_t j = 0; j < (q < nt ? k : 1); j++) {
                    /* T's members (each output's weight), then the intercepts, which take no decay */
                    const ptrdiff_t i = q < nt ? j * d + touched[q] : kd + (q - nt);
                    const ptrdiff_t ci = q < nt ? q * k + j : k * nt + (q - nt);
                    FO_REAL w = params[i], gi = cg[ci], v = state[i];
                    if (q < nt && own_decay) gi = own_decay[i] * w + gi;
                    gi = gi + (q < nt && wd != 0 ? wd * w : (FO_REAL)0); /* FO_GRAD_WD */
                    if (nesterov) {
                        v = step == 1 ? gi : mu * v + gi;
                        w -= a * (gi + mu * v);
                    } else {
                        v = step == 1 ? gi : mu * v + damp * gi;
                        w -= a * v;
                    }
                    if (q < nt && c->positive && w < 0) w = 0;
                    params[i] = w;
                    state[i] = v;
                    if (averaging) avg[i] += (w - avg[i]) / count;
                }
            continue;
        }
        if (ada_direct) { /* 5a. rule_adagrad's or rule_rmsprop's arithmetic (no decay here: with one, every
                           * coordinate steps): the accumulators in place, the quotients g / den over compact
                           * arrays, then the weights (and RMSProp's buffer) in place */
            const FO_REAL eps = (FO_REAL)h->eps, rho = (FO_REAL)h->rho, one_rho = (FO_REAL)(1.0 - h->rho);
            const FO_REAL mu = (FO_REAL)h->momentum;
            const int rms = rule == FO_RULE_RMSPROP, centered = rms && h->centered, mom = rms && h->momentum > 0;
            const FO_REAL a = rms ? (FO_REAL)c->lr : (FO_REAL)(c->lr / (1.0 + (double)(step - 1) * h->lr_decay));
            FO_REAL *restrict R = cs;
            for (ptrdiff_t q = 0; q < nt + nb; q++)
                for (ptrdiff_t j = 0; j < (q < nt ? k : 1); j++) {
                    const ptrdiff_t i = q < nt ? j * d + touched[q] : kd + (q - nt);
                    const ptrdiff_t ci = q < nt ? q * k + j : k * nt + (q - nt);
                    const FO_REAL gi = cg[ci] + (FO_REAL)0; /* FO_GRAD_WD without decay */
                    cg[ci] = gi;
                    if (!rms) {
                        R[ci] = state[i] += gi * gi;
                    } else {
                        const FO_REAL r = state[i] = rho * state[i] + one_rho * (gi * gi);
                        if (centered) {
                            FO_REAL *ai = state + n_params + i;
                            *ai += one_rho * (gi - *ai);
                            const FO_REAL var = r - *ai * *ai;
                            R[ci] = var < 0 ? 0 : var; /* as rule_rmsprop */
                        } else {
                            R[ci] = r;
                        }
                    }
                }
            /* the quotients, element by element in a loop the compiler vectorises (the divider's latency) */
            for (ptrdiff_t ci = 0; ci < nc; ci++) R[ci] = cg[ci] / (FO_SQRT(R[ci]) + eps);
            for (ptrdiff_t q = 0; q < nt + nb; q++)
                for (ptrdiff_t j = 0; j < (q < nt ? k : 1); j++) {
                    const ptrdiff_t i = q < nt ? j * d + touched[q] : kd + (q - nt);
                    const ptrdiff_t ci = q < nt ? q * k + j : k * nt + (q - nt);
                    FO_REAL w = params[i];
                    if (mom) {
                        FO_REAL *bi = state + 2 * n_params + i;
                        *bi = mu * *bi + R[ci];
                        w -= a * *bi;
                    } else {
                        w -= a * R[ci];
                    }
                    if (q < nt && c->positive && w < 0) w = 0;
                    params[i] = w;
                    if (averaging) avg[i] += (w - avg[i]) / count;
                }
            continue;
        }
        /* 5'. SparseAdam's step in place (csr_sparse_adam_in_place): the one rule left (csr_epoch_impl's entry) */
        FO_FN(csr_sparse_adam_in_place)(h, c, params, state, avg, cg, touched, nt, d, k, nb, n_params, step,
                                       decoupled, averaging, count, cw, cs, adam1 ? pipe : NULL, &helped);
    }
#undef FO_ROW
    if (piped) { /* the producer, if still waiting (or stopped), returns; the backoff for the next call */
        piped->carry = !pipe && paced_alone ? backoff : 0;
        fo_csr_pipe_done(piped);
    }
    if (s_scale != 1.0) /* scattered steps under L2: the weights w = s v, on every exit */
        for (ptrdiff_t p = 0; p < kd; p++) params[p] = (FO_REAL)((double)params[p] * s_scale);
    /* Every coordinate up to date with the last step taken, on every exit. */
    if (catching) {
        const int32_t now = (int32_t)(c->t - t0);
        FO_FN(csr_batch) ob;
        ob.m = 0, ob.bits = 0, ob.pair = own_pair;
        const int one_segment = FO_FN(csr_seg_end)(&z, t0, c->t) == c->t; /* then each case in one pass */
        if (own_scale && now > 0 && one_segment)
            FO_FN(csr_own_close)(&z, slot, now);
        else if (own_scale && now > 0) /* SGD under its own decays: the features that rested through the call */
            FO_FN(csr_own_scale_rested)(&z, slot, now, t0, c->t, batched ? &ob : NULL);
        else if (table_pair && now > 0) /* momentum, Nesterov, RMSProp on the table: the same */
            FO_FN(csr_pair_rested)(&z, slot, now, t0, c->t);
        else if (own_pair && !c->positive && now > 0 && one_segment)
            FO_FN(csr_own_pair_close)(&z, slot, now);
        else if (own_pair && !c->positive && now > 0) /* momentum, Nesterov under their own decays */
            FO_FN(csr_own_pair_rested)(&z, slot, now, t0, c->t, batched ? &ob : NULL);
        else
            for (ptrdiff_t col = 0; col < d; col++)
                if (slot[col].last != now)
                    FO_FN(csr_catch_closing)(&z, batched ? &ob : NULL, own_scale ? 1 : table_pair ? 2 : 0, col,
                                             t0 + slot[col].last, c->t);
        FO_FN(csr_batch_flush)(&z, &ob);
    }
    if (status != FO_OK) return status;
    return FO_FN(epoch_finish)(c, params, n_params, total);
}

/* csr_epoch_impl's copy for these settings (csr_epoch_copy). */
static fo_status FO_FN(csr_epoch_run)(fo_rule rule, const fo_hyper *h, fo_epoch_ctl *c, int lazy,
                                      const FO_REAL *data, const int32_t *indices, const int32_t *indptr,
                                      const FO_REAL *Y, const FO_REAL *sw, ptrdiff_t d, ptrdiff_t k, FO_REAL *params,
                                      ptrdiff_t n_params, FO_REAL *state, ptrdiff_t n_slots, FO_REAL *work,
                                      int64_t *iwork, double *table, ptrdiff_t stage_cap, int64_t period,
                                      fo_csr_pipe *pipe)
{
#define FO_CSR_RUN(copy) FO_FN(csr_epoch_impl)(rule, h, c, lazy, data, indices, indptr, Y, sw, d, k, params, \
                                               n_params, state, n_slots, work, iwork, table, stage_cap, period, \
                                               pipe, copy)
    switch (FO_FN(csr_epoch_copy)(rule, h, c, lazy, k)) {
    case 1: return FO_CSR_RUN(1);
    case 2: return FO_CSR_RUN(2);
    case 3: return FO_CSR_RUN(3);
    default: return FO_CSR_RUN(0);
    }
#undef FO_CSR_RUN
}

fo_status FO_FN(fo_epoch_csr)(fo_rule rule, const fo_hyper *h, fo_epoch_ctl *c, int lazy, const FO_REAL *data,
                              const int32_t *indices, const int32_t *indptr, const FO_REAL *Y, const FO_REAL *sw,
                              ptrdiff_t d, ptrdiff_t k, FO_REAL *params, ptrdiff_t n_params, FO_REAL *state,
                              ptrdiff_t n_slots, FO_REAL *work, int64_t *iwork, double *table, ptrdiff_t stage_cap,
                              int64_t period)
{
    return FO_FN(csr_epoch_run)(rule, h, c, lazy, data, indices, indptr, Y, sw, d, k, params, n_params, state,
                                n_slots, work, iwork, table, stage_cap, period, NULL);
}

fo_status FO_FN(fo_epoch_csr_piped)(fo_csr_pipe *pipe, fo_rule rule, const fo_hyper *h, fo_epoch_ctl *c, int lazy,
                                    const FO_REAL *data, const int32_t *indices, const int32_t *indptr,
                                    const FO_REAL *Y, const FO_REAL *sw, ptrdiff_t d, ptrdiff_t k, FO_REAL *params,
                                    ptrdiff_t n_params, FO_REAL *state, ptrdiff_t n_slots, FO_REAL *work,
                                    int64_t *iwork, double *table)
{
    fo_status st = FO_BAD_ARGUMENT;
    if (pipe->cap >= 0 && pipe->cap <= INT32_MAX) /* (its own staging only once it goes on alone) */
        st = FO_FN(csr_epoch_run)(rule, h, c, lazy, data, indices, indptr, Y, sw, d, k, params, n_params, state,
                                  n_slots, work, iwork, table, pipe->stage_cap, pipe->period, pipe);
    fo_csr_pipe_done(pipe); /* also on an early return */
    return st;
}

/* The producer of a piped epoch (fo_csr_pipe): stage the rows of c->order into the blocks in turn
 * (csr_pipe_stage) and find each staged minibatch's T and its values' positions in it (step 1's search, in the
 * same order, with marks of its own); fixed blocks, those the consumer has not claimed. A malformed row marks its
 * minibatch (the consumer stops there) and ends the production. */
void FO_FN(fo_csr_produce)(fo_csr_pipe *pipe, const fo_epoch_ctl *c, ptrdiff_t d, ptrdiff_t k,
                           const FO_REAL *data, const int32_t *indices, const int32_t *indptr, const FO_REAL *Y,
                           const FO_REAL *sw)
{
    const ptrdiff_t b = c->batch_size, n = c->n_rows;
    if (pipe->fixed) { /* scattered steps (no T): the blocks claimed in turn, with the consumer */
        const int64_t blocks = fo_csr_fixed_blocks(c);
        for (;;) {
            const int64_t j = FO_CSR_LOAD(&pipe->next);
            if (j >= blocks) break;
            if (fo_csr_pipe_room(pipe, j) != 1) return; /* (aborted; or the consumer goes on alone: no rejoin) */
            if (FO_FN(csr_pipe_stage_fixed)(pipe, c, j, d, k, data, indices, indptr, Y, sw) == 2) break;
        }
        fo_csr_pipe_serve(pipe);
        return;
    }
    /* One 4-byte mark a feature (half the footprint of the consumer's 8-byte slots, so that more of them stay in
     * the producer's L2): the count of T's members found before it, since the marks were last reset, when the
     * feature last joined T. A feature is in the current minibatch's T when its mark is at least the count g0
     * at the minibatch's start, and its position is then mark - g0. */
    int32_t *mark = (int32_t *)pipe->slots;
    if (!pipe->scatter)
        for (ptrdiff_t col = 0; col < d; col++) mark[col] = -1;
    int32_t found = 0;
    ptrdiff_t start = 0;
    int64_t made = 0;
    int got = 1;
resume:
    for (; start < n; made++) {
        if ((got = fo_csr_pipe_room(pipe, made)) != 1) break;
        fo_csr_block *B = &pipe->block[made % FO_CSR_PIPE_BLOCKS];
        const ptrdiff_t end = FO_FN(csr_pipe_stage)(pipe, B, c, start, d, k, data, indices, indptr, Y, sw);
        int32_t bad = B->bad;
        const int32_t *s_ind = B->s_ind, *s_ptr = B->s_ptr;
        int32_t *s_pos = B->s_pos, *touched = B->touched, *t_off = B->t_off;
        /* the marks' lines are requested FO_CSR_PIPE_AHEAD stored values ahead (a random 4-byte mark a value) */
        const ptrdiff_t total = bad < 0 ? s_ptr[end - start] : 0;
        /* the count must not overflow: a block holds at most cap <= INT32_MAX values (fo_csr_epoch_piped) */
        if (total > INT32_MAX - found) {
            for (ptrdiff_t col = 0; col < d; col++) mark[col] = -1;
            found = 0;
        }
        int32_t off = 0, m = 0;
        t_off[0] = 0;
        if (!pipe->scatter)
        for (ptrdiff_t st = start; st < end && bad < 0; st += b, m++) {
            while (fo_csr_help_one(pipe)) { /* a posted step's chunks first: the consumer waits for them */
            }
            const ptrdiff_t en = st + b < end ? st + b : end;
            const int32_t g0 = found + off;
            int32_t nt = 0;
            for (ptrdiff_t r = st - start; r < en - start && bad < 0; r++) {
                const ptrdiff_t p0 = s_ptr[r], p1 = s_ptr[r + 1];
                if (p1 - p0 > d) bad = m;
                for (ptrdiff_t p = p0; p < p1 && bad < 0; p++) {
                    if (p + FO_CSR_PIPE_AHEAD < total) {
                        const int32_t a = s_ind[p + FO_CSR_PIPE_AHEAD];
                        FO_CSR_PREFETCH_W(mark + ((uint32_t)a < (uint32_t)d ? a : 0));
                    }
                    const int32_t col = s_ind[p];
                    if ((uint32_t)col >= (uint32_t)d) {
                        bad = m;
                        break;
                    }
                    int32_t v = mark[col];
                    if (v < g0) {
                        v = g0 + nt;
                        mark[col] = v;
                        touched[off + nt++] = col;
                    }
                    s_pos[p] = v - g0;
                }
            }
            off += nt;
            t_off[m + 1] = off;
        }
        found += off;
        B->bad = bad;
        fo_csr_pipe_publish(pipe, made);
        if (bad >= 0) {
            made++;
            break;
        }
        start = end;
    }
    if (got == 1) got = fo_csr_pipe_serve(pipe); /* the consumer's last steps, until it returns */
    /* The consumer has gone on alone: wait for it to take this thread back (its marks stay valid: the count of
     * members found only grows) */
    if (got == 3 && fo_csr_pipe_park(pipe, made)) {
        made = pipe->resume_block, start = pipe->resume_start, got = 1;
        goto resume;
    }
}
