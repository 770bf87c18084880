/* epoch_body.h: the fused epoch for one real type and one instruction set.
 *
 * Included by epoch.c once per real type and instruction set of the run-time dispatch; deliberately without an
 * include guard. epoch.c defines FO_T, the type's suffix (d, s), and FO_ISA, the instruction set's (base,
 * avx2), and gives each type's and each instruction set's settings as FO_<suffix>_<name>:
 *   type:             REAL  the real type,  SQRT  its square root,  M256, FMADD256  (x86) its AVX register type
 *                     and fused multiply-add intrinsic;
 *   instruction set:  VBYTES  the vector size in bytes (0: plain loops),  FMA  1 to form the dot products and
 *                     gradient sums with fused multiply-adds,  NR  rows sharing each sweep over w,  NV  vectors
 *                     making one dot-product accumulator,  NB  vectors of gradient held in registers;
 * and the shared helpers (prefetching, the team's wait, work strides). Every function is static, named with the
 * suffix _<FO_T>_<FO_ISA>; epoch.c's dispatch calls this copy's epoch_copy, clip_grad_norm and rule_step. The
 * algorithm (chunks, the two sweeps, the halves of a team) is described in epoch.c. Undefines FO_T at the end.
 */
#define FO_FN(name) FO_CAT3(name, FO_T, FO_ISA)
#define FO_REAL FO_CAT3(FO, FO_T, REAL)
#define FO_SQRT FO_CAT3(FO, FO_T, SQRT)
#define FO_M256 FO_CAT3(FO, FO_T, M256)
#define FO_FMADD256 FO_CAT3(FO, FO_T, FMADD256)
#define FO_SETTING(name) FO_CAT3(FO, FO_ISA, name)
#define FO_VBYTES FO_SETTING(VBYTES)
#define FO_FMA FO_SETTING(FMA)
#define FO_NR FO_SETTING(NR)
#define FO_NV FO_SETTING(NV)
#define FO_NB FO_SETTING(NB)

#include "rules.h"

/* Scale grad[0:n] in place to global L2 norm at most max_norm; the norm before (fo_clip_grad_norm_*). */
static double FO_FN(clip_grad_norm)(FO_REAL *grad, ptrdiff_t n, double max_norm)
{
    double ss = 0;
    for (ptrdiff_t i = 0; i < n; i++) ss += (double)grad[i] * (double)grad[i];
    const double norm = sqrt(ss), coef = max_norm / (norm + FO_CLIP_EPS);
    if (coef < 1) {
        const FO_REAL c = (FO_REAL)coef;
        for (ptrdiff_t i = 0; i < n; i++) grad[i] *= c;
    }
    return norm;
}

#if FO_VBYTES
typedef FO_REAL FO_FN(vec) __attribute__((vector_size(FO_VBYTES)));
#define FO_V FO_FN(vec)
#define FO_VL ((int)(FO_VBYTES / sizeof(FO_REAL))) /* lanes per vector */
#define FO_VLOAD(v, p) memcpy(&(v), (p), sizeof(FO_V))
#define FO_VSTORE(p, v) memcpy((p), &(v), sizeof(FO_V))
#if FO_FMA == 1
#define FO_MADD(acc, a, b) ((FO_V)FO_FMADD256((FO_M256)(a), (FO_M256)(b), (FO_M256)(acc)))
#else
#define FO_MADD(acc, a, b) ((acc) + (a) * (b))
#endif

/* Vectors travel by pointer: passing 32-byte vectors by value in the baseline (SSE2) build changes the ABI. */
FO_INLINE void FO_FN(splat)(FO_V *v, FO_REAL x)
{
    for (int l = 0; l < FO_VL; l++) (*v)[l] = x;
}


/* The lanes of v summed in a fixed tree: halves added until one lane is left. */
FO_INLINE FO_REAL FO_FN(hsum)(const FO_V *v)
{
    FO_REAL s[FO_VL];
    memcpy(s, v, sizeof(FO_V));
    for (int half = FO_VL / 2; half > 0; half /= 2)
        for (int l = 0; l < half; l++) s[l] += s[l + half];
    return s[0];
}

/* Dot products of w with nr rows at once (nr a compile-time constant after inlining): the loads of w are
 * shared and the nr * FO_NV independent accumulator chains hide the latency of the adds. Each dot product sums
 * FO_NV * FO_VL lanes, the vectors added in order, then the lanes in hsum's tree; the whole vectors left over go
 * to the first accumulators, and the last n mod FO_VL entries are summed in order and added last. */
FO_INLINE void FO_FN(dots)(const FO_REAL *w, const FO_REAL *const *x, int nr, ptrdiff_t n, FO_REAL *out)
{
    FO_V acc[FO_NR][FO_NV];
    ptrdiff_t i = 0;
    for (int q = 0; q < nr; q++)
        for (int v = 0; v < FO_NV; v++) acc[q][v] = (FO_V){0};
    for (; i + FO_NV * FO_VL <= n; i += FO_NV * FO_VL) {
        for (int v = 0; v < FO_NV; v++) {
            FO_V wv;
            FO_VLOAD(wv, w + i + v * FO_VL);
            for (int q = 0; q < nr; q++) {
                FO_V xv;
                FO_VLOAD(xv, x[q] + i + v * FO_VL);
                acc[q][v] = FO_MADD(acc[q][v], wv, xv);
            }
        }
    }
    for (int v = 0; v < FO_NV && i + FO_VL <= n; v++, i += FO_VL) {
        FO_V wv;
        FO_VLOAD(wv, w + i);
        for (int q = 0; q < nr; q++) {
            FO_V xv;
            FO_VLOAD(xv, x[q] + i);
            acc[q][v] = FO_MADD(acc[q][v], wv, xv);
        }
    }
    for (int q = 0; q < nr; q++) {
        FO_V s = acc[q][0];
        for (int v = 1; v < FO_NV; v++) s += acc[q][v];
        FO_REAL tail = 0;
        for (ptrdiff_t t = i; t < n; t++) tail += w[t] * x[q][t];
        out[q] = FO_FN(hsum)(&s) + tail;
    }
}

/* nb vectors of g starting at f: g = (first ? 0 : g) + sum_r c[r * cstride] x_r, summed over r = 0, 1, ... for
 * each entry, the accumulators in registers (nb a compile-time constant after inlining). */
FO_INLINE void FO_FN(gradient_block)(FO_REAL *g, const FO_REAL *const *x, const FO_REAL *c, ptrdiff_t cstride,
                                     ptrdiff_t nr, ptrdiff_t f, int first, const int nb)
{
    FO_V acc[FO_NB];
    for (int b = 0; b < nb; b++) {
        if (first) acc[b] = (FO_V){0};
        else FO_VLOAD(acc[b], g + f + b * FO_VL);
    }
    for (ptrdiff_t r = 0; r < nr; r++) {
        FO_V cr;
        FO_FN(splat)(&cr, c[r * cstride]);
        const FO_REAL *xr = x[r] + f;
        /* An empty asm makes xr opaque, so GCC addresses the nb loads as xr + constant instead of hoisting nb
         * offsets into registers, which it spilled to the stack and reloaded per row (measured: 4-9% of the
         * epoch at d = 100). */
        __asm__("" : "+r"(xr));
        for (int b = 0; b < nb; b++) {
            FO_V xv;
            FO_VLOAD(xv, xr + b * FO_VL);
            acc[b] = FO_MADD(acc[b], cr, xv);
        }
    }
    for (int b = 0; b < nb; b++) FO_VSTORE(g + f + b * FO_VL, acc[b]);
}

/* g[0:n] = (first ? 0 : g) + sum_r c[r * cstride] x_r[0:n]: the whole vectors in equal blocks of at most FO_NB
 * (a short last block would be one long dependency chain), then the last n mod FO_VL entries. */
FO_INLINE void FO_FN(gradient_rows)(FO_REAL *g, const FO_REAL *const *x, const FO_REAL *c, ptrdiff_t cstride,
                                    ptrdiff_t nr, ptrdiff_t n, int first)
{
    const ptrdiff_t nvec = n / FO_VL, nblocks = (nvec + FO_NB - 1) / FO_NB;
    ptrdiff_t v0 = 0;
    for (ptrdiff_t blk = 0; blk < nblocks; blk++) {
        const ptrdiff_t m = (nvec - v0) / (nblocks - blk); /* equal shares, the larger ones last */
        switch (m) {
#define FO_BLOCK(m)                                                                                              \
    case m: FO_FN(gradient_block)(g, x, c, cstride, nr, v0 * FO_VL, first, m); break;
            FO_BLOCK(1) FO_BLOCK(2) FO_BLOCK(3) FO_BLOCK(4)
#if FO_NB > 4
            FO_BLOCK(5) FO_BLOCK(6) FO_BLOCK(7) FO_BLOCK(8)
#endif
#if FO_NB > 8
            FO_BLOCK(9) FO_BLOCK(10) FO_BLOCK(11) FO_BLOCK(12)
#endif
#undef FO_BLOCK
        default: break;
        }
        v0 += m;
    }
    for (ptrdiff_t f = nvec * FO_VL; f < n; f++) {
        FO_REAL acc = first ? (FO_REAL)0 : g[f];
        for (ptrdiff_t r = 0; r < nr; r++) acc += c[r * cstride] * x[r][f];
        g[f] = acc;
    }
}
#else /* plain loops: each dot product summed in order, the gradient row after row */
FO_INLINE void FO_FN(dots)(const FO_REAL *w, const FO_REAL *const *x, int nr, ptrdiff_t n, FO_REAL *out)
{
    for (int q = 0; q < nr; q++) {
        FO_REAL s = 0;
        for (ptrdiff_t i = 0; i < n; i++) s += w[i] * x[q][i];
        out[q] = s;
    }
}

FO_INLINE void FO_FN(gradient_rows)(FO_REAL *g, const FO_REAL *const *x, const FO_REAL *c, ptrdiff_t cstride,
                                    ptrdiff_t nr, ptrdiff_t n, int first)
{
    if (first) memset(g, 0, (size_t)n * sizeof(FO_REAL));
    for (ptrdiff_t r = 0; r < nr; r++) {
        const FO_REAL cr = c[r * cstride], *xr = x[r];
        for (ptrdiff_t f = 0; f < n; f++) g[f] += cr * xr[f];
    }
}
#endif


FO_INLINE void FO_FN(prefetch_row)(const FO_REAL *row, ptrdiff_t d)
{
    fo_prefetch_lines((const char *)row, (size_t)d * sizeof(FO_REAL));
}

/* How many rows ahead every line of a row is prefetched. */
FO_INLINE ptrdiff_t FO_FN(lookahead)(ptrdiff_t d)
{
    const ptrdiff_t rows = (ptrdiff_t)(FO_PREFETCH_BYTES / ((size_t)d * sizeof(FO_REAL)));
    return rows < FO_PREFETCH_MIN_ROWS ? FO_PREFETCH_MIN_ROWS
         : rows > FO_PREFETCH_MAX_ROWS ? FO_PREFETCH_MAX_ROWS : rows;
}

/* The position `ahead` rows after pos in this thread's stream of rows: [start, end) continues with
 * [next_start, next_end) (the same half of the next minibatch); -1 past both. */
FO_INLINE ptrdiff_t FO_FN(ahead)(ptrdiff_t pos, ptrdiff_t ahead, ptrdiff_t end, ptrdiff_t next_start,
                                 ptrdiff_t next_end)
{
    const ptrdiff_t p = pos + ahead;
    if (p < end) return p;
    return next_start + (p - end) < next_end ? next_start + (p - end) : -1;
}

/* The summed (unnormalised) gradient of the rows order[start:end] into grad (zero when the range is empty);
 * returns their summed weighted loss (loss_kind is c->loss, a parameter so that a caller can make it a constant). Rows
 * of [next_start, next_end) are prefetched when this range runs out. */
FO_INLINE double FO_FN(batch_gradient)(const fo_epoch_ctl *c, fo_loss loss_kind, ptrdiff_t start, ptrdiff_t end,
                                       ptrdiff_t next_start, ptrdiff_t next_end, const FO_REAL *X, const FO_REAL *Y,
                                       const FO_REAL *sw, ptrdiff_t d, ptrdiff_t k, const FO_REAL *params, int has_b,
                                       FO_REAL *grad, FO_REAL *work_coef)
{
    FO_REAL coef_stack[FO_CHUNK_COEFS];
    const FO_REAL *rows[FO_CHUNK_ROWS + FO_NR];
    const FO_REAL epsilon = (FO_REAL)c->epsilon;
    const FO_REAL *b = params + k * d;
    FO_REAL *gb = grad + k * d;
    FO_REAL *cf = k <= FO_CHUNK_COEFS ? coef_stack : work_coef;
    double loss = 0;
    const ptrdiff_t lookahead = FO_FN(lookahead)(d);
    ptrdiff_t chunk = (ptrdiff_t)(FO_CHUNK_BYTES / ((size_t)d * sizeof(FO_REAL)));
    if (chunk > FO_CHUNK_ROWS) chunk = FO_CHUNK_ROWS;
    if (chunk > FO_CHUNK_COEFS / k) chunk = FO_CHUNK_COEFS / k;
    if (chunk < 1) chunk = 1;
    if (start >= end) memset(grad, 0, (size_t)(k * d + (has_b ? k : 0)) * sizeof(FO_REAL));
    for (ptrdiff_t c0 = start; c0 < end; c0 += chunk) {
        const ptrdiff_t c1 = c0 + chunk < end ? c0 + chunk : end, nr = c1 - c0;
        /* Sweep 1: residuals, loss and coefficients, FO_NR rows at a time. */
        for (ptrdiff_t q0 = 0; q0 < nr; q0 += FO_NR) {
            const int nq = (int)(nr - q0 < FO_NR ? nr - q0 : FO_NR);
            for (int q = 0; q < nq; q++) {
                const ptrdiff_t pos = c0 + q0 + q;
                const ptrdiff_t far = FO_FN(ahead)(pos, FO_PREFETCH_FAR * lookahead, end, next_start, next_end);
                const ptrdiff_t near = FO_FN(ahead)(pos, lookahead, end, next_start, next_end);
                if (far >= 0) {
                    FO_PREFETCH(X + c->order[far] * d);
                    FO_PREFETCH(Y + c->order[far] * k);
                }
                if (near >= 0) FO_FN(prefetch_row)(X + c->order[near] * d, d);
                rows[q0 + q] = X + c->order[pos] * d;
            }
            /* A short last group repeats its last row, so the dot products keep their compile-time width. */
            for (int q = nq; q < FO_NR; q++) rows[q0 + q] = rows[q0 + nq - 1];
            for (ptrdiff_t j = 0; j < k; j++) {
                FO_REAL dot[FO_NR];
                FO_FN(dots)(params + j * d, rows + q0, FO_NR, d, dot);
                for (int q = 0; q < nq; q++) {
                    const FO_REAL y = Y[c->order[c0 + q0 + q] * k + j];
                    cf[(q0 + q) * k + j] = dot[q] + (has_b ? b[j] : (FO_REAL)0) - y;
                }
            }
            for (int q = 0; q < nq; q++) {
                const FO_REAL wi = sw ? sw[c->order[c0 + q0 + q]] : (FO_REAL)1;
                FO_REAL *cq = cf + (q0 + q) * k;
                for (ptrdiff_t j = 0; j < k; j++) {
                    FO_REAL dl;
                    loss += (double)wi * FO_FN(loss_value)(loss_kind, cq[j], epsilon, &dl);
                    cq[j] = wi * dl;
                }
            }
        }
        /* Sweep 2: the gradient, each entry summed over the rows in order. */
        const int first = c0 == start;
        for (ptrdiff_t j = 0; j < k; j++) {
            FO_FN(gradient_rows)(grad + j * d, rows, cf + j, k, nr, d, first);
            if (has_b) {
                FO_REAL acc = first ? (FO_REAL)0 : gb[j];
                for (ptrdiff_t r = 0; r < nr; r++) acc += cf[r * k + j];
                gb[j] = acc;
            }
        }
    }
    return loss;
}

/* batch_gradient, with the default problem (one output, squared error, no sample weights) compiled as its own
 * copy: with k, the loss and the weights known, the per-row loop loses its branches and spills. Measured 4-6%
 * faster per epoch at d = 100 (float32 and float64, one and two threads). Same arithmetic, same bits. */
static double FO_FN(half_gradient)(const fo_epoch_ctl *c, ptrdiff_t start, ptrdiff_t end, ptrdiff_t next_start,
                                   ptrdiff_t next_end, const FO_REAL *X, const FO_REAL *Y, const FO_REAL *sw,
                                   ptrdiff_t d, ptrdiff_t k, const FO_REAL *params, int has_b, FO_REAL *grad,
                                   FO_REAL *work_coef)
{
    if (k == 1 && !sw && c->loss == FO_LOSS_SQUARED)
        return FO_FN(batch_gradient)(c, FO_LOSS_SQUARED, start, end, next_start, next_end, X, Y, NULL, d, 1, params,
                                     has_b, grad, work_coef);
    return FO_FN(batch_gradient)(c, c->loss, start, end, next_start, next_end, X, Y, sw, d, k, params, has_b, grad,
                                 work_coef);
}

/* Every minibatch's gradient is the sum of two halves, g = g0 + g1 (rows [start, mid) and [mid, end), mid =
 * start + ceil(n / 2)), each summed in row order. Alone, a thread computes both halves. In a team of two, thread
 * `part` computes half `part`, publishes it, waits for the other's, and both form the same sum g0 + g1 and take
 * the same step on their own copies of the parameters and optimizer state (one exchange per step, as in
 * data-parallel training). Either way the arithmetic is the same, so results are bit-identical whatever the
 * number of threads. Halves are double-buffered by step parity: a thread can be at most one step ahead.
 * work: halves h[p][parity] at (2p + parity) * ws, the sum of part p at (4 + p) * ws, the per-row coefficients
 * of part p at 6 * ws + p * wk (ws, wk: fo_work_stride of n_params and k); in a team, the calling thread's halves
 * when it goes on alone (*solo) at 6 * ws + 2 * wk and 7 * ws + 2 * wk, the second half's coefficients at
 * 8 * ws + 2 * wk: buffers the helper, which may still be running a step, neither reads nor writes. The calling
 * thread goes on alone when its wait for the helper's half stalls (fo_team_wait: the helper has not begun it
 * FO_LATE_NS after this thread finished its own, or has not published it for FO_STALL_NS), computing that half
 * itself (*solo set); the helper, whose wait then returns 3, sets *solo (it is to stop and wait: epoch). Returns
 * the summed loss, or NaN if the team was aborted or the helper is to stop. */
static double FO_FN(minibatch)(const fo_epoch_ctl *c, fo_team *team, int *solo, int part, ptrdiff_t start,
                               ptrdiff_t end, const FO_REAL *X, const FO_REAL *Y, const FO_REAL *sw, ptrdiff_t d,
                               ptrdiff_t k, const FO_REAL *params, int has_b, FO_REAL *work, ptrdiff_t n_params,
                               int64_t step, double *sumsq)
{
    const int par = (int)(step & 1);
    const ptrdiff_t ws = fo_work_stride(n_params, sizeof(FO_REAL), team != NULL);
    const ptrdiff_t wk = fo_work_stride(k, sizeof(FO_REAL), team != NULL);
    FO_REAL *h0 = work + par * ws, *h1 = work + (2 + par) * ws, *sum = work + (4 + part) * ws;
    FO_REAL *coef0 = work + 6 * ws, *coef1 = coef0 + wk;
    const ptrdiff_t mid = start + (end - start + 1) / 2;
    const ptrdiff_t next_end = end + c->batch_size < c->n_rows ? end + c->batch_size : c->n_rows;
    const ptrdiff_t next_mid = end + (next_end - end + 1) / 2;
    double loss0, loss1;
    (void)solo; /* (the plain-C build runs one thread) */
#if FO_VEC
    if (team && !*solo) {
        if (part == 1) __atomic_store_n(&team->part[1].started, step, __ATOMIC_RELAXED);
        const double mine = part == 0
            ? FO_FN(half_gradient)(c, start, mid, end, next_mid, X, Y, sw, d, k, params, has_b, h0, coef0)
            : FO_FN(half_gradient)(c, mid, end, next_mid, next_end, X, Y, sw, d, k, params, has_b, h1, coef1);
        team->part[part].loss[par] = mine;
        __atomic_store_n(&team->part[part].ready, step, __ATOMIC_RELEASE);
        /* this thread's next half, past the rows batch_gradient prefetched already, up to FO_CHUNK_BYTES */
        const size_t row_bytes = (size_t)d * sizeof(FO_REAL);
        const ptrdiff_t next0 = part == 0 ? end : next_mid, next1 = part == 0 ? next_mid : next_end;
        const ptrdiff_t from = next0 + FO_FN(lookahead)(d), upto = from + (ptrdiff_t)(FO_CHUNK_BYTES / row_bytes);
        fo_wait_prefetch pf = {(const char *)X, c->order, row_bytes, from, upto < next1 ? upto : next1};
        const int64_t every = team->solo_step < 0 ? -team->solo_step : team->solo_step;
        const int forced = part == 0 && every > 0 && step % every == 0;
        const int got = forced ? 2 : fo_team_wait(team, part, &team->part[1 - part].ready, step, &pf);
        if (got == 0 || got == 3) { /* aborted; or (the helper) the calling thread has gone on alone */
            *solo = got == 3;
            return NAN;
        }
        if (got == 2) { /* the helper lost its core: its half here, from its rows, and on alone (fo_team) */
            *solo = 1;
            if (!team->went_solo) team->went_solo = step;
            __atomic_store_n(&team->solo, team->solo + 1, __ATOMIC_RELEASE);
            /* (h0 stays as it is: this thread writes it no more) */
            FO_REAL *own1 = work + 7 * ws + 2 * wk;
            loss0 = mine;
            loss1 = FO_FN(half_gradient)(c, mid, end, end, next_mid, X, Y, sw, d, k, params, has_b, own1,
                                         own1 + ws);
            h1 = own1;
        } else {
            const double theirs = team->part[1 - part].loss[par];
            loss0 = part == 0 ? mine : theirs;
            loss1 = part == 0 ? theirs : mine;
        }
    } else
#endif
    {
        if (team) /* gone on alone: buffers the helper does not touch */
            h0 = work + 6 * ws + 2 * wk, h1 = h0 + ws, coef1 = h1 + ws;
        loss0 = FO_FN(half_gradient)(c, start, mid, mid, end, X, Y, sw, d, k, params, has_b, h0, coef0);
        loss1 = FO_FN(half_gradient)(c, mid, end, end, next_mid, X, Y, sw, d, k, params, has_b, h1, coef1);
    }
    /* The minibatch mean (gradients equal torch's for (sw * loss).sum(1).mean() with normalised weights), and
     * its sum of squares in four chains (only its finiteness is used, so the order is free). */
    const ptrdiff_t rows = end - start;
    const FO_REAL inv = (FO_REAL)(1.0 / (double)(rows < c->pad_rows ? c->pad_rows : rows)); /* (pad_rows) */
    double ss[4] = {0, 0, 0, 0};
    ptrdiff_t p = 0;
    for (; p + 4 <= n_params; p += 4) {
        for (int l = 0; l < 4; l++) {
            const FO_REAL g = (h0[p + l] + h1[p + l]) * inv;
            sum[p + l] = g;
            ss[l] += (double)g * (double)g;
        }
    }
    for (; p < n_params; p++) {
        const FO_REAL g = (h0[p] + h1[p]) * inv;
        sum[p] = g;
        ss[0] += (double)g * (double)g;
    }
    *sumsq = (ss[0] + ss[1]) + (ss[2] + ss[3]);
    return loss0 + loss1;
}

static fo_status FO_FN(epoch)(fo_rule rule, const fo_hyper *h, fo_epoch_ctl *c, const FO_REAL *X,
                              const FO_REAL *Y, const FO_REAL *sw, ptrdiff_t d, ptrdiff_t k, FO_REAL *params,
                              ptrdiff_t n_params, FO_REAL *state, FO_REAL *work, fo_team *team, int part)
{
    FO_REAL *grad = work + (4 + part) * fo_work_stride(n_params, sizeof(FO_REAL), team != NULL);
    const int has_b = n_params > k * d;
    double total = c->loss_sum;
    /* in a team, the calling thread has gone on alone, or the helper is to stop and wait (minibatch, fo_team) */
    int solo = 0;
    /* The calling thread, alone, tries to take the helper back from step solo_until on; a team that lasted fewer
     * than FO_TEAM_SHORT steps doubles the wait (up to FO_TEAM_BACKOFF_MAX steps), a longer one resets it. When
     * the helper shares this thread's core, each try costs the helper a wasted half and two switches of the
     * core: the wait makes them rare. */
#if FO_VEC
    int64_t solo_until = 0, backoff = 1, team_since = 0;
    /* (the helper, just woken, may begin its first half late) */
    if (team && part == 0) team->late_from = c->t + 2;
#endif
    for (ptrdiff_t start = 0; start < c->n_rows; start += c->batch_size) {
#if FO_VEC
        if (team && solo && part == 0 && c->t + 1 >= solo_until) {
            /* (tests, solo_step < 0: wait for the helper to stop, then take it back, each time it can be; not
             * while it may still publish step t + 1, which it cannot then take) */
            for (;;) {
                if (fo_team_rejoin(team, params, n_params, state, sizeof(FO_REAL), start, c->t)) {
                    solo = 0, team_since = c->t + 1, team->late_from = c->t + 2;
                    break;
                }
                FO_YIELD(); /* a helper woken on this thread's core runs (and stops) only when this thread lets it */
                if (team->solo_step >= 0 || __atomic_load_n(&team->part[1].ready, __ATOMIC_ACQUIRE) > c->t) break;
            }
        }
        const int was_solo = solo;
#endif
        const ptrdiff_t end = start + c->batch_size < c->n_rows ? start + c->batch_size : c->n_rows;
        double ss;
        const double loss = FO_FN(minibatch)(c, team, &solo, part, start, end, X, Y, sw, d, k, params, has_b,
                                             work, n_params, c->t + 1, &ss);
#if FO_VEC
        if (team && part == 0 && solo && !was_solo) {
            backoff = fo_rejoin_backoff(backoff, c->t + 1 - team_since, FO_TEAM_SHORT, 1, FO_TEAM_BACKOFF_MAX);
            solo_until = team->solo_step < 0 ? 0 : c->t + 1 + backoff;
        }
        if (team && part == 1 && solo) { /* stopped: go on where the calling thread says, from its copies */
            if (!fo_team_park(team)) return FO_BAD_ARGUMENT;
            solo = 0;
            c->t = team->resume_t;
            start = team->resume_start - c->batch_size; /* (the loop adds it back) */
            continue;
        }
        if (team && !solo && __atomic_load_n(&team->abort, __ATOMIC_ACQUIRE)) return FO_BAD_ARGUMENT;
#endif
        total += loss;
        if (!isfinite(loss) || !isfinite(ss)) {
            c->bad_step = c->t + 1;
            return FO_NONFINITE_LOSS;
        }
        if (loss / (double)(end - start) > c->loss_limit) {
            c->bad_step = c->t + 1;
            return FO_DIVERGED;
        }
        if (c->clip_norm > 0) FO_FN(clip_grad_norm)(grad, n_params, c->clip_norm);
        if (c->decay) {
            const FO_REAL *decay = (const FO_REAL *)c->decay;
            for (ptrdiff_t p = 0; p < k * d; p++) grad[p] += decay[p] * params[p];
        }
        c->t += 1;
        FO_FN(rule_step)(rule, h, params, grad, state, n_params, k * d, c->t, c->lr);
        if (c->positive)
            for (ptrdiff_t p = 0; p < k * d; p++)
                if (params[p] < 0) params[p] = 0;
        if (c->avg && c->avg_start > 0 && c->t >= c->avg_start) {
            FO_REAL *avg = (FO_REAL *)c->avg;
            const FO_REAL count = (FO_REAL)(c->t - c->avg_start + 1);
            for (ptrdiff_t p = 0; p < n_params; p++) avg[p] += (params[p] - avg[p]) / count;
        }
    }
    return FO_FN(epoch_finish)(c, params, n_params, total);
}


/* The loss of the all-zero model (fo_mean_loss_zero_*) for one loss kind (a constant after inlining): every loss
 * is even, so each residual -y_ij is taken as y_ij. Each row's losses over the k targets are summed in order and
 * times its weight; the rows go to FO_ZERO_LANES running sums by position (row q to sum q mod FO_ZERO_LANES; the
 * last m mod FO_ZERO_LANES rows to sum 0), added in a fixed tree at the end: independent chains of additions
 * (one chain took 0.3 ms for 200,000 rows, a quarter of the work around an estimator's epoch). */
#define FO_ZERO_LANES 8
FO_INLINE double FO_FN(zero_row)(fo_loss loss, const FO_REAL *Y, ptrdiff_t k, const int64_t *rows, ptrdiff_t q,
                                 const FO_REAL *sw, FO_REAL epsilon)
{
    const ptrdiff_t i = rows ? (ptrdiff_t)rows[q] : q;
    FO_REAL dl;
    double row = 0;
    for (ptrdiff_t j = 0; j < k; j++) row += FO_FN(loss_value)(loss, Y[i * k + j], epsilon, &dl);
    return sw ? row * (double)sw[i] : row;
}

FO_INLINE double FO_FN(zero_sum)(fo_loss loss, const FO_REAL *Y, ptrdiff_t k, const int64_t *rows, ptrdiff_t m,
                                 const FO_REAL *sw, FO_REAL epsilon)
{
    double acc[FO_ZERO_LANES] = {0};
    ptrdiff_t q = 0;
    for (; q + FO_ZERO_LANES <= m; q += FO_ZERO_LANES)
        for (int l = 0; l < FO_ZERO_LANES; l++) acc[l] += FO_FN(zero_row)(loss, Y, k, rows, q + l, sw, epsilon);
    for (; q < m; q++) acc[0] += FO_FN(zero_row)(loss, Y, k, rows, q, sw, epsilon);
    return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
}

static double FO_FN(mean_loss_zero)(const FO_REAL *Y, ptrdiff_t k, const int64_t *rows, ptrdiff_t m,
                                    const FO_REAL *sw, fo_loss loss, double epsilon)
{
    const FO_REAL eps = (FO_REAL)epsilon;
    double total;
    if (loss == FO_LOSS_SQUARED && k == 1 && !rows && !sw) /* the default problem: a loop the compiler vectorises */
        total = FO_FN(zero_sum)(FO_LOSS_SQUARED, Y, 1, NULL, m, NULL, eps);
    else if (loss == FO_LOSS_SQUARED)
        total = FO_FN(zero_sum)(FO_LOSS_SQUARED, Y, k, rows, m, sw, eps);
    else if (loss == FO_LOSS_ABSOLUTE)
        total = FO_FN(zero_sum)(FO_LOSS_ABSOLUTE, Y, k, rows, m, sw, eps);
    else
        total = FO_FN(zero_sum)(FO_LOSS_HUBER, Y, k, rows, m, sw, eps);
    return total / (double)m;
}
#undef FO_ZERO_LANES

/* This copy's entry in epoch.c's table of copies: the same arguments as untyped pointers. */
static fo_status FO_FN(epoch_copy)(fo_rule rule, const fo_hyper *h, fo_epoch_ctl *c, const void *X, const void *Y,
                                   const void *sw, ptrdiff_t d, ptrdiff_t k, void *params, ptrdiff_t n_params,
                                   void *state, void *work, fo_team *team, int part)
{
    return FO_FN(epoch)(rule, h, c, (const FO_REAL *)X, (const FO_REAL *)Y, (const FO_REAL *)sw, d, k,
                        (FO_REAL *)params, n_params, (FO_REAL *)state, (FO_REAL *)work, team, part);
}

#if FO_VBYTES
#undef FO_V
#undef FO_VL
#undef FO_VLOAD
#undef FO_VSTORE
#undef FO_MADD
#endif
#undef FO_SETTING
#undef FO_VBYTES
#undef FO_FMA
#undef FO_NR
#undef FO_NV
#undef FO_NB
#undef FO_FN
#undef FO_REAL
#undef FO_SQRT
#undef FO_M256
#undef FO_FMADD256
#undef FO_T
