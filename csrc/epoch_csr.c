/* epoch_csr.c: the fused minibatch epoch over a CSR matrix, for float64 and float32.
 *
 * The same objective, minibatches, losses, clipping, weighting and step rules (rules.h) as the dense epoch
 * (epoch.c); only the storage of X differs, so a sparse fit equals the dense fit of the same matrix to rounding.
 * The type-independent parts (sizes of the workspaces, the catch-up tables) live here; the epoch itself is
 * written once in epoch_csr_body.h and compiled for each real type below.
 *
 * Cost per step. A minibatch touches the features T (the union of its rows' stored columns). Its rows' nonzeros
 * are read once from memory (to form T; the residual and gradient sweeps then find them in cache), and the step
 * is applied to the touched coordinates and the intercepts only, gathered into compact arrays on which the
 * unchanged rules.h step runs. The other coordinates receive a zero loss gradient, and for most rules the
 * effect of s such steps has a closed form, applied when a coordinate is next read (and at the end of the
 * epoch): the "just-in-time" update of sparse SGD (Bottou 2012, "Stochastic gradient descent tricks"; Langford,
 * Li & Zhang 2009) made exact:
 *   SGD with L2:          w <- (1 - lr wd)^s w
 *   momentum, Nesterov:   (v, w) <- A^s (v, w), A the 2x2 linear map of one step with g = wd w (wd may be 0)
 *   RMSProp without L2:   r <- rho^s r, a <- rho^s a, and with momentum (b, w) <- A^s (b, w)
 *   AdaGrad without L2, SGD without L2: untouched coordinates do not move.
 * A step then costs O(nnz of the minibatch * k + |T| * k * slots). The learning rate is constant within an
 * epoch, so the powers A^s are tabulated once per epoch (s up to the epoch's step count), in double.
 * The rules whose untouched coordinates move nonlinearly (AdaGrad and RMSProp with L2, Adam and AdamW) take
 * every step on all coordinates, exactly as the dense epoch does: O(d k) a step. FO_SPARSE_LAZY instead gives
 * Adam and AdamW the semantics of torch.optim.SparseAdam: moments and weights change only where the minibatch
 * loss gradient is nonzero, with SparseAdam's arithmetic (denominator sqrt(v) + eps, step size
 * lr sqrt(1 - beta2^t) / (1 - beta1^t)); L2 (coupled for Adam, decoupled for AdamW) and AMSGrad act on the same
 * coordinates. The first step of a fit (t = 1: momentum buffers start as the gradient) is taken densely.
 */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "fastopt.h"

#if defined(__GNUC__) || defined(__clang__)
#define FO_CSR_PREFETCH(p) __builtin_prefetch((p), 0, 2) /* into L2: a step's lines overflow L1 */
#else
#define FO_CSR_PREFETCH(p) ((void)(p))
#endif

/* torch.nn.utils.clip_grad_norm_ adds this to the norm before dividing (as epoch.c). */
#define FO_CSR_CLIP_EPS 1e-6

/* Entries of one catch-up table row: the 2x2 map (a, b; c, e) and a scalar factor f. */
#define FO_CSR_TAB 5

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
    return (3 + FO_MAX_SLOTS) * n_params + batch_size * k + stage_cap + fo_csr_stage_rows(batch_size) * (k + 1);
}

/* Per feature, in one 8-byte slot so that one random access finds both: the step (counted from the epoch's
 * start) that its coordinates are up to date with, and its position in the current minibatch's T. */
typedef struct {
    int32_t last;
    int32_t pos;
} fo_csr_slot;

ptrdiff_t fo_csr_iwork_size(ptrdiff_t d, ptrdiff_t batch_size, ptrdiff_t stage_cap)
{
    /* d slots, T, then the staged indices and row pointers (int32, two to an entry) */
    return 2 * d + (stage_cap + fo_csr_stage_rows(batch_size) + 2) / 2;
}

ptrdiff_t fo_csr_table_size(ptrdiff_t n_rows, ptrdiff_t batch_size)
{
    const ptrdiff_t steps = batch_size > 0 ? (n_rows + batch_size - 1) / batch_size : 0;
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

static fo_catch fo_csr_catch(fo_rule rule, const fo_hyper *h, int lazy)
{
    const int wd = h->weight_decay != 0;
    switch (rule) {
    case FO_RULE_SGD: return wd ? FO_CATCH_SCALE : FO_CATCH_NONE;
    case FO_RULE_MOMENTUM:
    case FO_RULE_NESTEROV: return FO_CATCH_PAIR;
    case FO_RULE_ADAGRAD: return wd ? FO_CATCH_DENSE : FO_CATCH_NONE;
    case FO_RULE_RMSPROP: return wd ? FO_CATCH_DENSE : FO_CATCH_RMS;
    case FO_RULE_ADAM:
    case FO_RULE_ADAMW: return lazy ? FO_CATCH_NONE : FO_CATCH_DENSE;
    }
    return FO_CATCH_DENSE;
}

/* table[s] = (A^s, f^s) for s = 0..steps, A the map of one zero-gradient step on (buffer, w), f the scalar
 * factor, both in double (products of at most `steps` factors: relative error about steps * 2^-53). */
static void fo_csr_tables(fo_rule rule, const fo_hyper *h, double lr, ptrdiff_t steps, double *table)
{
    double a = 1, b = 0, c = 0, e = 1, f = 1;
    const double mu = h->momentum, wd = h->weight_decay;
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
    double *p = table;
    p[0] = 1, p[1] = 0, p[2] = 0, p[3] = 1, p[4] = 1;
    for (ptrdiff_t s = 1; s <= steps; s++, p += FO_CSR_TAB) {
        double *q = p + FO_CSR_TAB;
        q[0] = a * p[0] + b * p[2];
        q[1] = a * p[1] + b * p[3];
        q[2] = c * p[0] + e * p[2];
        q[3] = c * p[1] + e * p[3];
        q[4] = f * p[4];
    }
}

#define FO_CAT_(a, b) a##_##b
#define FO_CAT(a, b) FO_CAT_(a, b)
#define FO_FN(name) FO_CAT(name, FO_T)

#define FO_REAL double
#define FO_T d
#define FO_SQRT sqrt
#include "epoch_csr_body.h"
#undef FO_REAL
#undef FO_T
#undef FO_SQRT

#define FO_REAL float
#define FO_T s
#define FO_SQRT sqrtf
#include "epoch_csr_body.h"
#undef FO_REAL
#undef FO_T
#undef FO_SQRT
