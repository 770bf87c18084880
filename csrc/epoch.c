/* epoch.c: the fused minibatch epoch, one optimizer step and gradient clipping, for float64 and float32.
 *
 * The file instantiates itself: the first pass (FO_REAL undefined) defines the type macros and includes this
 * file once per real type; the second pass compiles the body below for that type. One source, two types.
 *
 * Per minibatch, each row is read once: its k residuals r_j = x.w_j + b_j - y_j and its gradient contribution
 * g_j += sw_i loss'(r_j) x are computed while the row is in L1. The next rows of the (shuffled) order are
 * prefetched, because a gather in random order would otherwise wait on memory at every row. No BLAS: the
 * per-row dot products are short, and plain loops with a fixed summation order keep results bit-identical
 * across runs and threads.
 */
#ifndef FO_REAL

#include <math.h>
#include <string.h>

#include "fastopt.h"

#if defined(__GNUC__) || defined(__clang__)
#define FO_PREFETCH(p) __builtin_prefetch((p), 0, 1)
#else
#define FO_PREFETCH(p) ((void)(p))
#endif

/* The epoch is also compiled for AVX2 + FMA and chosen when the library loads (GCC's ifunc, x86-64 ELF only):
 * once prefetching hides memory latency the row loops are compute-bound, and 4-wide fused multiply-adds cut
 * them by about a third. Results stay bit-identical run to run on one machine; across machines they may differ
 * in the last bits, as BLAS results do. */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__ELF__)
#define FO_CLONES __attribute__((target_clones("arch=haswell", "default")))
#else
#define FO_CLONES
#endif

/* How many rows ahead of the current one to prefetch: enough to cover memory latency for d ~ 10..1000. */
#define FO_PREFETCH_ROWS 8
#define FO_CACHE_LINE 64

/* torch.nn.utils.clip_grad_norm_ adds this to the norm before dividing. */
#define FO_CLIP_EPS 1e-6

#define FO_REAL double
#define FO_FN(name) name##_d
#define FO_SQRT sqrt
#include "rules.h"
#include "epoch.c"
#undef FO_REAL
#undef FO_FN
#undef FO_SQRT

#define FO_REAL float
#define FO_FN(name) name##_s
#define FO_SQRT sqrtf
#include "rules.h"
#include "epoch.c"
#undef FO_REAL
#undef FO_FN
#undef FO_SQRT

#else /* the body, for one FO_REAL */

/* Dot product with eight independent accumulators: a fixed order (so deterministic) that still pipelines. */
static inline FO_REAL FO_FN(dot)(const FO_REAL *a, const FO_REAL *b, ptrdiff_t n)
{
    FO_REAL s[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    ptrdiff_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int j = 0; j < 8; j++) s[j] += a[i + j] * b[i + j];
    for (; i < n; i++) s[0] += a[i] * b[i];
    return ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]));
}

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

static inline void FO_FN(prefetch_row)(const FO_REAL *row, ptrdiff_t d)
{
    const char *p = (const char *)row;
    for (size_t off = 0; off < (size_t)d * sizeof(FO_REAL); off += FO_CACHE_LINE) FO_PREFETCH(p + off);
}

/* Accumulate one minibatch's summed (unnormalised) gradient into grad; return its summed weighted loss. */
static inline double FO_FN(batch_gradient)(const fo_epoch_ctl *c, ptrdiff_t start, ptrdiff_t end,
                                           const FO_REAL *X, const FO_REAL *Y, const FO_REAL *sw, ptrdiff_t d,
                                           ptrdiff_t k, const FO_REAL *params, int has_b, FO_REAL *grad,
                                           FO_REAL *coef)
{
    const FO_REAL epsilon = (FO_REAL)c->epsilon;
    const FO_REAL *b = params + k * d;
    FO_REAL *gb = grad + k * d;
    double loss = 0;
    for (ptrdiff_t pos = start; pos < end; pos++) {
        if (pos + FO_PREFETCH_ROWS < c->n_rows) {
            const int64_t ahead = c->order[pos + FO_PREFETCH_ROWS];
            FO_FN(prefetch_row)(X + ahead * d, d);
            FO_PREFETCH(Y + ahead * k);
        }
        const int64_t i = c->order[pos];
        const FO_REAL *x = X + i * d, *y = Y + i * k;
        const FO_REAL wi = sw ? sw[i] : (FO_REAL)1;
        for (ptrdiff_t j = 0; j < k; j++) {
            const FO_REAL r = FO_FN(dot)(params + j * d, x, d) + (has_b ? b[j] : (FO_REAL)0) - y[j];
            FO_REAL dl;
            loss += (double)wi * FO_FN(loss_value)(c->loss, r, epsilon, &dl);
            coef[j] = wi * dl;
        }
        for (ptrdiff_t j = 0; j < k; j++) {
            FO_REAL *gj = grad + j * d;
            const FO_REAL cj = coef[j];
            for (ptrdiff_t f = 0; f < d; f++) gj[f] += cj * x[f];
            if (has_b) gb[j] += cj;
        }
    }
    return loss;
}

FO_CLONES fo_status FO_FN(fo_epoch)(fo_rule rule, const fo_hyper *h, fo_epoch_ctl *c, const FO_REAL *X,
                                    const FO_REAL *Y, const FO_REAL *sw, ptrdiff_t d, ptrdiff_t k, FO_REAL *params,
                                    ptrdiff_t n_params, FO_REAL *state, FO_REAL *work)
{
    FO_REAL *grad = work, *coef = work + n_params;
    const int has_b = n_params > k * d;
    double total = 0;
    c->bad_step = 0;
    c->loss_out = 0;
    if (c->batch_size < 1 || n_params != k * d + (has_b ? k : 0)) return FO_BAD_ARGUMENT;
    for (ptrdiff_t start = 0; start < c->n_rows; start += c->batch_size) {
        const ptrdiff_t end = start + c->batch_size < c->n_rows ? start + c->batch_size : c->n_rows;
        memset(grad, 0, (size_t)n_params * sizeof(FO_REAL));
        const double loss = FO_FN(batch_gradient)(c, start, end, X, Y, sw, d, k, params, has_b, grad, coef);
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

#endif /* FO_REAL */
