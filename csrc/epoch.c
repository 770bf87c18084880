/* epoch.c: the fused minibatch epoch, one optimizer step and gradient clipping, for float64 and float32.
 *
 * The file instantiates itself: the first pass (FO_REAL undefined) defines the type macros and includes this
 * file once per real type; the second pass compiles the body below for that type. One source, two types.
 *
 * Each minibatch is processed in chunks of rows that stay in L1/L2. Per chunk, two sweeps:
 *   1. residuals: r_ij = x_i.w_j + b_j - y_ij for each row (dot products of several rows at once, sharing the
 *      loads of w_j), the loss, and the coefficients c_ij = sw_i loss'(r_ij);
 *   2. gradient: g_j += sum_i c_ij x_i, a block of features held in registers while the chunk's rows stream
 *      past, so the gradient is not loaded and stored once per row.
 * The next rows of the (shuffled) order are prefetched, because a gather in random order would otherwise wait
 * on memory at every row. No BLAS: plain loops with a fixed summation order keep results bit-identical across
 * runs and threads. The order is the same as the simple loops' (each dot product in eight lanes combined
 * pairwise; each gradient entry summed over the rows in visiting order), whatever the chunking, the vector width
 * or the number of outputs, so the AVX2 and baseline builds, and one fit of k outputs and k fits of one, agree
 * bit for bit. Floating-point contraction (FMA) is off in the build for the same reason.
 */
#ifndef FO_REAL

#include <math.h>
#include <string.h>

#include "fastopt.h"

/* FO_PORTABLE builds the plain-C fallback that any C99 compiler takes (no GNU extensions); tests use it. */
#if (defined(__GNUC__) || defined(__clang__)) && !defined(FO_PORTABLE)
#define FO_PREFETCH(p) __builtin_prefetch((p), 0, 1)
#define FO_INLINE static inline __attribute__((always_inline))
/* GNU vector extensions: 32-byte vectors (one AVX register, or two SSE2 registers in the baseline build). */
#define FO_VEC 1
typedef double fo_vd __attribute__((vector_size(32)));
typedef float fo_vs __attribute__((vector_size(32)));
#else
#define FO_PREFETCH(p) ((void)(p))
#define FO_INLINE static inline
#define FO_VEC 0
#endif

/* On x86 with GCC or clang, a second copy of the epoch is compiled for AVX2 and chosen at run time when the CPU
 * has it; the baseline copy needs only SSE2. Define FO_NO_DISPATCH to build the baseline only. */
#if FO_VEC && (defined(__x86_64__) || defined(__i386__)) && !defined(FO_NO_DISPATCH)
#define FO_DISPATCH_AVX2 1
#define FO_TARGET_AVX2 __attribute__((target("avx2")))
static int fo_cpu_has_avx2(void)
{
    __builtin_cpu_init(); /* idempotent and cheap; needed before __builtin_cpu_supports in some contexts */
    return __builtin_cpu_supports("avx2") != 0;
}
#else
#define FO_DISPATCH_AVX2 0
#endif

/* Prefetch in two levels: every line of the row about 4 KB of X ahead of the current one (5 rows of 100
 * doubles; 2 to 64 rows), and the first line of the row FO_PREFETCH_FAR times further ahead, with its targets,
 * which starts that row's memory access early. Measured 5-10% faster than one level at d = 10, 100 and 1000. */
#define FO_PREFETCH_BYTES 4096
#define FO_PREFETCH_MIN_ROWS 2
#define FO_PREFETCH_MAX_ROWS 64
#define FO_PREFETCH_FAR 4
#define FO_CACHE_LINE 64

/* Rows per chunk: at most FO_CHUNK_ROWS, about FO_CHUNK_BYTES of X (so the chunk is still in cache for the
 * gradient sweep), and at most FO_CHUNK_COEFS / k so the coefficients fit a fixed array on the stack. */
#define FO_CHUNK_ROWS 64
#define FO_CHUNK_BYTES 32768
#define FO_CHUNK_COEFS 256

/* torch.nn.utils.clip_grad_norm_ adds this to the norm before dividing. */
#define FO_CLIP_EPS 1e-6

#define FO_REAL double
#define FO_FN(name) name##_d
#define FO_SQRT sqrt
#if FO_VEC
#define FO_V fo_vd
#endif
#include "rules.h"
#include "epoch.c"
#undef FO_REAL
#undef FO_FN
#undef FO_SQRT
#undef FO_V

#define FO_REAL float
#define FO_FN(name) name##_s
#define FO_SQRT sqrtf
#if FO_VEC
#define FO_V fo_vs
#endif
#include "rules.h"
#include "epoch.c"
#undef FO_REAL
#undef FO_FN
#undef FO_SQRT
#undef FO_V

#else /* the body, for one FO_REAL */

/* Dot product in eight lanes: s_l = sum over i = l mod 8 (the remainder after the last full 8 goes to lane 0),
 * combined ((s0 + s1) + (s2 + s3)) + ((s4 + s5) + (s6 + s7)). A fixed order, so deterministic, that pipelines. */
static inline FO_REAL FO_FN(lanes_sum)(const FO_REAL *s)
{
    return ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]));
}

#if FO_VEC
#define FO_VL ((ptrdiff_t)(sizeof(FO_V) / sizeof(FO_REAL))) /* lanes per vector: 4 doubles, 8 floats */
#define FO_NV (8 / FO_VL)                                    /* vectors per eight-lane accumulator */
#define FO_VLOAD(v, p) memcpy(&(v), (p), sizeof(FO_V))
#define FO_VSTORE(p, v) memcpy((p), &(v), sizeof(FO_V))

/* The eight-lane dot products of w with nr rows at once (nr a compile-time constant after inlining): the loads
 * of w are shared and the nr independent accumulator chains hide the adder's latency. */
FO_INLINE void FO_FN(dots)(const FO_REAL *w, const FO_REAL *const *x, int nr, ptrdiff_t n, FO_REAL *out)
{
    FO_V acc[4][2];
    FO_REAL s[8];
    ptrdiff_t i = 0;
    for (int q = 0; q < nr; q++)
        for (int v = 0; v < FO_NV; v++) acc[q][v] = (FO_V){0};
    for (; i + 8 <= n; i += 8) {
        for (int v = 0; v < FO_NV; v++) {
            FO_V wv;
            FO_VLOAD(wv, w + i + v * FO_VL);
            for (int q = 0; q < nr; q++) {
                FO_V xv;
                FO_VLOAD(xv, x[q] + i + v * FO_VL);
                acc[q][v] += wv * xv;
            }
        }
    }
    for (int q = 0; q < nr; q++) {
        for (int v = 0; v < FO_NV; v++) memcpy(s + v * FO_VL, &acc[q][v], sizeof(FO_V));
        for (ptrdiff_t t = i; t < n; t++) s[0] += w[t] * x[q][t];
        out[q] = FO_FN(lanes_sum)(s);
    }
}

/* g[0:n] = (first ? 0 : g) + sum_r c[r * cstride] x_r[0:n], summed over r = 0, 1, ... for each entry, with nb
 * vectors of accumulators in registers. */
FO_INLINE void FO_FN(gradient_rows)(FO_REAL *g, const FO_REAL *const *x, const FO_REAL *c, ptrdiff_t cstride,
                                    ptrdiff_t nr, ptrdiff_t n, int first, int nb)
{
    ptrdiff_t f = 0;
    for (; f + nb * FO_VL <= n; f += nb * FO_VL) {
        FO_V acc[8];
        for (int b = 0; b < nb; b++) {
            if (first) acc[b] = (FO_V){0};
            else FO_VLOAD(acc[b], g + f + b * FO_VL);
        }
        for (ptrdiff_t r = 0; r < nr; r++) {
            const FO_REAL cr = c[r * cstride], *xr = x[r] + f;
            for (int b = 0; b < nb; b++) {
                FO_V xv;
                FO_VLOAD(xv, xr + b * FO_VL);
                acc[b] += cr * xv;
            }
        }
        for (int b = 0; b < nb; b++) FO_VSTORE(g + f + b * FO_VL, acc[b]);
    }
    for (; f + FO_VL <= n; f += FO_VL) {
        FO_V acc = {0};
        if (!first) FO_VLOAD(acc, g + f);
        for (ptrdiff_t r = 0; r < nr; r++) {
            FO_V xv;
            FO_VLOAD(xv, x[r] + f);
            acc += c[r * cstride] * xv;
        }
        FO_VSTORE(g + f, acc);
    }
    for (; f < n; f++) {
        FO_REAL acc = first ? (FO_REAL)0 : g[f];
        for (ptrdiff_t r = 0; r < nr; r++) acc += c[r * cstride] * x[r][f];
        g[f] = acc;
    }
}
#else /* portable fallback: the same arithmetic in plain loops */
FO_INLINE void FO_FN(dots)(const FO_REAL *w, const FO_REAL *const *x, int nr, ptrdiff_t n, FO_REAL *out)
{
    for (int q = 0; q < nr; q++) {
        FO_REAL s[8] = {0, 0, 0, 0, 0, 0, 0, 0};
        ptrdiff_t i = 0;
        for (; i + 8 <= n; i += 8)
            for (int l = 0; l < 8; l++) s[l] += w[i + l] * x[q][i + l];
        for (; i < n; i++) s[0] += w[i] * x[q][i];
        out[q] = FO_FN(lanes_sum)(s);
    }
}

FO_INLINE void FO_FN(gradient_rows)(FO_REAL *g, const FO_REAL *const *x, const FO_REAL *c, ptrdiff_t cstride,
                                    ptrdiff_t nr, ptrdiff_t n, int first, int nb)
{
    (void)nb;
    if (first) memset(g, 0, (size_t)n * sizeof(FO_REAL));
    for (ptrdiff_t r = 0; r < nr; r++) {
        const FO_REAL cr = c[r * cstride], *xr = x[r];
        for (ptrdiff_t f = 0; f < n; f++) g[f] += cr * xr[f];
    }
}
#endif

/* The per-sample loss of residual r, and its derivative in *dl (absolute error: the sign, 0 at 0). */
static inline double FO_FN(loss_value)(fo_loss loss, FO_REAL r, FO_REAL epsilon, FO_REAL *dl)
{
    const FO_REAL ar = r < 0 ? -r : r, sign = (FO_REAL)((r > 0) - (r < 0));
    switch (loss) {
    case FO_LOSS_ABSOLUTE:
        *dl = sign;
        return (double)ar;
    case FO_LOSS_HUBER:
        if (ar <= epsilon) {
            *dl = r;
            return 0.5 * (double)r * (double)r;
        }
        *dl = epsilon * sign;
        return (double)epsilon * ((double)ar - 0.5 * (double)epsilon);
    case FO_LOSS_SQUARED:
    default:
        *dl = r;
        return 0.5 * (double)r * (double)r;
    }
}

double FO_FN(fo_clip_grad_norm)(FO_REAL *grad, ptrdiff_t n, double max_norm)
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

fo_status FO_FN(fo_step)(fo_rule rule, const fo_hyper *h, FO_REAL *params, const FO_REAL *grad, FO_REAL *state,
                         ptrdiff_t n, ptrdiff_t n_decay, int64_t t, double lr)
{
    return FO_FN(rule_step)(rule, h, params, grad, state, n, n_decay, t, lr);
}

FO_INLINE void FO_FN(prefetch_row)(const FO_REAL *row, ptrdiff_t d)
{
    const char *p = (const char *)row;
    for (size_t off = 0; off < (size_t)d * sizeof(FO_REAL); off += FO_CACHE_LINE) FO_PREFETCH(p + off);
}

/* The summed (unnormalised) gradient of one minibatch into grad; returns its summed weighted loss. rows_per_dot
 * rows share each sweep over w_j; nb vectors of gradient stay in registers (compile-time constants). */
FO_INLINE double FO_FN(batch_gradient)(const fo_epoch_ctl *c, ptrdiff_t start, ptrdiff_t end, const FO_REAL *X,
                                       const FO_REAL *Y, const FO_REAL *sw, ptrdiff_t d, ptrdiff_t k,
                                       const FO_REAL *params, int has_b, FO_REAL *grad, FO_REAL *work_coef,
                                       int rows_per_dot, int nb)
{
    FO_REAL coef_stack[FO_CHUNK_COEFS];
    const FO_REAL *rows[FO_CHUNK_ROWS];
    const FO_REAL epsilon = (FO_REAL)c->epsilon;
    const FO_REAL *b = params + k * d;
    FO_REAL *gb = grad + k * d;
    FO_REAL *cf = k <= FO_CHUNK_COEFS ? coef_stack : work_coef;
    double loss = 0;
    ptrdiff_t lookahead = (ptrdiff_t)(FO_PREFETCH_BYTES / ((size_t)d * sizeof(FO_REAL)));
    lookahead = lookahead < FO_PREFETCH_MIN_ROWS ? FO_PREFETCH_MIN_ROWS
              : lookahead > FO_PREFETCH_MAX_ROWS ? FO_PREFETCH_MAX_ROWS : lookahead;
    ptrdiff_t chunk = (ptrdiff_t)(FO_CHUNK_BYTES / ((size_t)d * sizeof(FO_REAL)));
    if (chunk > FO_CHUNK_ROWS) chunk = FO_CHUNK_ROWS;
    if (chunk > FO_CHUNK_COEFS / k) chunk = FO_CHUNK_COEFS / k;
    if (chunk < 1) chunk = 1;
    for (ptrdiff_t c0 = start; c0 < end; c0 += chunk) {
        const ptrdiff_t c1 = c0 + chunk < end ? c0 + chunk : end, nr = c1 - c0;
        /* Sweep 1: residuals, loss and coefficients, rows_per_dot rows at a time. */
        for (ptrdiff_t q0 = 0; q0 < nr; q0 += rows_per_dot) {
            const int nq = (int)(nr - q0 < rows_per_dot ? nr - q0 : rows_per_dot);
            for (int q = 0; q < nq; q++) {
                const ptrdiff_t pos = c0 + q0 + q;
                if (pos + FO_PREFETCH_FAR * lookahead < c->n_rows) {
                    const int64_t far = c->order[pos + FO_PREFETCH_FAR * lookahead];
                    FO_PREFETCH(X + far * d);
                    FO_PREFETCH(Y + far * k);
                }
                if (pos + lookahead < c->n_rows) FO_FN(prefetch_row)(X + c->order[pos + lookahead] * d, d);
                rows[q0 + q] = X + c->order[pos] * d;
            }
            for (ptrdiff_t j = 0; j < k; j++) {
                FO_REAL dot[4];
                if (nq == rows_per_dot) {
                    FO_FN(dots)(params + j * d, rows + q0, rows_per_dot, d, dot);
                } else {
                    for (int q = 0; q < nq; q++) FO_FN(dots)(params + j * d, rows + q0 + q, 1, d, dot + q);
                }
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
                    loss += (double)wi * FO_FN(loss_value)(c->loss, cq[j], epsilon, &dl);
                    cq[j] = wi * dl;
                }
            }
        }
        /* Sweep 2: the gradient, each entry summed over the rows in order. */
        const int first = c0 == start;
        for (ptrdiff_t j = 0; j < k; j++) {
            FO_FN(gradient_rows)(grad + j * d, rows, cf + j, k, nr, d, first, nb);
            if (has_b) {
                FO_REAL acc = first ? (FO_REAL)0 : gb[j];
                for (ptrdiff_t r = 0; r < nr; r++) acc += cf[r * k + j];
                gb[j] = acc;
            }
        }
    }
    return loss;
}

FO_INLINE fo_status FO_FN(epoch_body)(fo_rule rule, const fo_hyper *h, fo_epoch_ctl *c, const FO_REAL *X,
                                      const FO_REAL *Y, const FO_REAL *sw, ptrdiff_t d, ptrdiff_t k,
                                      FO_REAL *params, ptrdiff_t n_params, FO_REAL *state, FO_REAL *work,
                                      int rows_per_dot, int nb)
{
    FO_REAL *grad = work, *coef = work + n_params;
    const int has_b = n_params > k * d;
    double total = 0;
    for (ptrdiff_t start = 0; start < c->n_rows; start += c->batch_size) {
        const ptrdiff_t end = start + c->batch_size < c->n_rows ? start + c->batch_size : c->n_rows;
        const double loss = FO_FN(batch_gradient)(c, start, end, X, Y, sw, d, k, params, has_b, grad, coef,
                                                  rows_per_dot, nb);
        /* The minibatch mean: gradients equal torch's for (sw * loss).sum(1).mean() with normalised weights. */
        const FO_REAL inv = (FO_REAL)(1.0 / (double)(end - start));
        double ss = 0;
        for (ptrdiff_t p = 0; p < n_params; p++) {
            grad[p] *= inv;
            ss += (double)grad[p] * (double)grad[p];
        }
        total += loss;
        if (!isfinite(loss) || !isfinite(ss)) {
            c->bad_step = c->t + 1;
            return FO_NONFINITE_LOSS;
        }
        if (loss / (double)(end - start) > c->loss_limit) {
            c->bad_step = c->t + 1;
            return FO_DIVERGED;
        }
        if (c->clip_norm > 0) FO_FN(fo_clip_grad_norm)(grad, n_params, c->clip_norm);
        c->t += 1;
        FO_FN(rule_step)(rule, h, params, grad, state, n_params, k * d, c->t, c->lr);
    }
    for (ptrdiff_t p = 0; p < n_params; p++) {
        if (!isfinite(params[p])) {
            c->bad_step = c->t;
            return FO_NONFINITE_LOSS;
        }
    }
    c->loss_out = c->n_rows > 0 ? total / (double)c->n_rows : 0.0;
    return FO_OK;
}

static fo_status FO_FN(epoch_base)(fo_rule rule, const fo_hyper *h, fo_epoch_ctl *c, const FO_REAL *X,
                                   const FO_REAL *Y, const FO_REAL *sw, ptrdiff_t d, ptrdiff_t k, FO_REAL *params,
                                   ptrdiff_t n_params, FO_REAL *state, FO_REAL *work)
{
    /* SSE2: 16 registers; two rows per dot sweep and four vectors (eight SSE2 registers) of gradient. */
    return FO_FN(epoch_body)(rule, h, c, X, Y, sw, d, k, params, n_params, state, work, 2, 4);
}

#if FO_DISPATCH_AVX2
FO_TARGET_AVX2 static fo_status FO_FN(epoch_avx2)(fo_rule rule, const fo_hyper *h, fo_epoch_ctl *c,
                                                  const FO_REAL *X, const FO_REAL *Y, const FO_REAL *sw,
                                                  ptrdiff_t d, ptrdiff_t k, FO_REAL *params, ptrdiff_t n_params,
                                                  FO_REAL *state, FO_REAL *work)
{
    /* AVX2: 16 registers of 32 bytes; four rows per dot sweep and eight registers of gradient. */
    return FO_FN(epoch_body)(rule, h, c, X, Y, sw, d, k, params, n_params, state, work, 4, 8);
}
#endif

fo_status FO_FN(fo_epoch)(fo_rule rule, const fo_hyper *h, fo_epoch_ctl *c, const FO_REAL *X, const FO_REAL *Y,
                          const FO_REAL *sw, ptrdiff_t d, ptrdiff_t k, FO_REAL *params, ptrdiff_t n_params,
                          FO_REAL *state, FO_REAL *work)
{
    c->bad_step = 0;
    c->loss_out = 0;
    if (c->batch_size < 1 || k < 1 || n_params != k * d + (n_params > k * d ? k : 0)) return FO_BAD_ARGUMENT;
#if FO_DISPATCH_AVX2
    if (fo_cpu_has_avx2()) return FO_FN(epoch_avx2)(rule, h, c, X, Y, sw, d, k, params, n_params, state, work);
#endif
    return FO_FN(epoch_base)(rule, h, c, X, Y, sw, d, k, params, n_params, state, work);
}

#endif /* FO_REAL */
