/* rules.h: one step function per optimizer, following torch.optim's single-tensor code path.
 *
 * A body for one real type. epoch_body.h (once per type and instruction set) and epoch_csr_body.h include this
 * file with
 *   FO_REAL      the real type (double or float),
 *   FO_FN(name)  the name with the copy's suffix (e.g. name##_d_avx2, name##_s),
 *   FO_SQRT      the square root for FO_REAL,
 * so float32 and float64 share one source. No include guard on purpose.
 *
 * Conventions of every rule: w = params[0:n], g = grad[0:n] (the loss gradient, read only), t = 1-based step,
 * lr = learning rate of this step. The first n_decay entries get weight decay: g_i + wd * w_i (coupled L2)
 * except in AdamW, whose decay is decoupled. Scalars that PyTorch computes as Python floats (bias corrections,
 * AdaGrad's decayed lr) are computed in double and rounded to FO_REAL once, as PyTorch does; element-wise
 * arithmetic is in FO_REAL. State slot j is state[j*n : (j+1)*n].
 */

/* Forced inline: it sits in the epochs' innermost loops. (An identical redefinition, as each inclusion makes, is
 * allowed.) */
#if defined(__GNUC__) || defined(__clang__)
#define FO_LOSS_INLINE static inline __attribute__((always_inline))
#else
#define FO_LOSS_INLINE static inline
#endif

/* The per-sample loss (shared by the dense and CSR epochs) of residual r, and its derivative in *dl (absolute error: the sign, 0 at 0). */
FO_LOSS_INLINE double FO_FN(loss_value)(fo_loss loss, FO_REAL r, FO_REAL epsilon, FO_REAL *dl)
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

/* The gradient seen by a rule with coupled weight decay. */
/* The end of an epoch, dense and CSR alike: a non-finite weight fails the epoch at its last step; otherwise the
 * epoch's loss sum and the running mean loss are reported. */
static inline fo_status FO_FN(epoch_finish)(fo_epoch_ctl *c, const FO_REAL *params, ptrdiff_t n_params,
                                            double total)
{
    /* x - x is +0 for a finite x and NaN otherwise, and sums of them stay +0 or NaN: eight running sums, a loop the
     * compiler vectorises, a chunk at a time (one isfinite a weight took a sixth of a sparse partial_fit call's
     * kernel time on 2^18 columns) */
    for (ptrdiff_t p0 = 0; p0 < n_params; p0 += 1024) {
        const ptrdiff_t p1 = n_params - p0 < 1024 ? n_params : p0 + 1024;
        FO_REAL z[8] = {0, 0, 0, 0, 0, 0, 0, 0};
        ptrdiff_t p = p0;
        for (; p + 8 <= p1; p += 8)
            for (int l = 0; l < 8; l++) z[l] += params[p + l] - params[p + l];
        for (; p < p1; p++) z[0] += params[p] - params[p];
        if (!(((z[0] + z[1]) + (z[2] + z[3])) + ((z[4] + z[5]) + (z[6] + z[7])) == 0)) {
            c->bad_step = c->t;
            return FO_NONFINITE_LOSS;
        }
    }
    c->loss_sum = total;
    c->loss_out = c->rows_before + c->n_rows > 0 ? total / (double)(c->rows_before + c->n_rows) : 0.0;
    return FO_OK;
}

#define FO_GRAD_WD(i) (g[i] + ((i) < nd ? wd * w[i] : (FO_REAL)0))

/* SGD.  w <- w - lr * g.  No state. */
static inline void FO_FN(rule_sgd)(const fo_hyper *h, FO_REAL *w, const FO_REAL *g, FO_REAL *state,
                                   ptrdiff_t n, ptrdiff_t n_decay, int64_t t, double lr)
{
    const FO_REAL wd = (FO_REAL)h->weight_decay, a = (FO_REAL)lr;
    const ptrdiff_t nd = wd != 0 ? n_decay : 0;
    (void)state;
    (void)t;
    for (ptrdiff_t i = 0; i < n; i++) w[i] -= a * FO_GRAD_WD(i);
}

/* Momentum (heavy ball).  v <- mu v + (1 - dampening) g  (v <- g at t = 1);  w <- w - lr v.
 * Slot 0: v.  With constant lr this is the seed's v' = mu v' - lr g, w += v' for v' = -lr v. */
static inline void FO_FN(rule_momentum)(const fo_hyper *h, FO_REAL *w, const FO_REAL *g, FO_REAL *state,
                                        ptrdiff_t n, ptrdiff_t n_decay, int64_t t, double lr)
{
    const FO_REAL wd = (FO_REAL)h->weight_decay, a = (FO_REAL)lr;
    const FO_REAL mu = (FO_REAL)h->momentum, damp = (FO_REAL)(1.0 - h->dampening);
    const ptrdiff_t nd = wd != 0 ? n_decay : 0;
    FO_REAL *v = state;
    for (ptrdiff_t i = 0; i < n; i++) {
        const FO_REAL gi = FO_GRAD_WD(i);
        v[i] = t == 1 ? gi : mu * v[i] + damp * gi;
        w[i] -= a * v[i];
    }
}

/* Nesterov (PyTorch's look-ahead form, dampening 0).  v <- mu v + g  (v <- g at t = 1);  w <- w - lr (g + mu v).
 * Slot 0: v. */
static inline void FO_FN(rule_nesterov)(const fo_hyper *h, FO_REAL *w, const FO_REAL *g, FO_REAL *state,
                                        ptrdiff_t n, ptrdiff_t n_decay, int64_t t, double lr)
{
    const FO_REAL wd = (FO_REAL)h->weight_decay, a = (FO_REAL)lr, mu = (FO_REAL)h->momentum;
    const ptrdiff_t nd = wd != 0 ? n_decay : 0;
    FO_REAL *v = state;
    for (ptrdiff_t i = 0; i < n; i++) {
        const FO_REAL gi = FO_GRAD_WD(i);
        v[i] = t == 1 ? gi : mu * v[i] + gi;
        w[i] -= a * (gi + mu * v[i]);
    }
}

/* AdaGrad.  clr = lr / (1 + (t-1) lr_decay);  r <- r + g^2;  w <- w - clr g / (sqrt(r) + eps).
 * Slot 0: r (starts at initial_accumulator_value). */
static inline void FO_FN(rule_adagrad)(const fo_hyper *h, FO_REAL *w, const FO_REAL *g, FO_REAL *state,
                                       ptrdiff_t n, ptrdiff_t n_decay, int64_t t, double lr)
{
    const FO_REAL wd = (FO_REAL)h->weight_decay, eps = (FO_REAL)h->eps;
    const FO_REAL clr = (FO_REAL)(lr / (1.0 + (double)(t - 1) * h->lr_decay));
    const ptrdiff_t nd = wd != 0 ? n_decay : 0;
    FO_REAL *r = state;
    for (ptrdiff_t i = 0; i < n; i++) {
        const FO_REAL gi = FO_GRAD_WD(i);
        r[i] += gi * gi;
        w[i] -= clr * (gi / (FO_SQRT(r[i]) + eps));
    }
}

/* RMSProp.  r <- rho r + (1 - rho) g^2;  centred: a <- a + (1 - rho)(g - a), den = sqrt(max(r - a^2, 0)) + eps,
 * else den = sqrt(r) + eps;  momentum mu > 0: b <- mu b + g / den, w <- w - lr b;  else w <- w - lr g / den.
 * Slots: 0 r, 1 a (centred only), 2 b (momentum only). */
static inline void FO_FN(rule_rmsprop)(const fo_hyper *h, FO_REAL *w, const FO_REAL *g, FO_REAL *state,
                                       ptrdiff_t n, ptrdiff_t ld, ptrdiff_t n_decay, int64_t t, double lr)
{
    const FO_REAL wd = (FO_REAL)h->weight_decay, a = (FO_REAL)lr, eps = (FO_REAL)h->eps;
    const FO_REAL rho = (FO_REAL)h->rho, one_rho = (FO_REAL)(1.0 - h->rho), mu = (FO_REAL)h->momentum;
    const ptrdiff_t nd = wd != 0 ? n_decay : 0;
    FO_REAL *r = state, *avg = state + ld, *buf = state + 2 * ld;
    (void)t;
    for (ptrdiff_t i = 0; i < n; i++) {
        const FO_REAL gi = FO_GRAD_WD(i);
        FO_REAL den;
        r[i] = rho * r[i] + one_rho * (gi * gi);
        if (h->centered) {
            avg[i] += one_rho * (gi - avg[i]);
            const FO_REAL var = r[i] - avg[i] * avg[i];
            den = FO_SQRT(var < 0 ? 0 : var) + eps; /* rounding makes it negative under a steady gradient */
        } else {
            den = FO_SQRT(r[i]) + eps;
        }
        if (h->momentum > 0) {
            buf[i] = mu * buf[i] + gi / den;
            w[i] -= a * buf[i];
        } else {
            w[i] -= a * (gi / den);
        }
    }
}

/* Adam, and AdamW when decoupled.  m <- m + (1 - b1)(g - m);  v <- b2 v + (1 - b2) g^2;
 * AMSGrad: vmax <- max(vmax, v) replaces v below;  den = sqrt(v) / sqrt(1 - b2^t) + eps;
 * w <- w - (lr / (1 - b1^t)) m / den.  AdamW first applies w <- w (1 - lr wd) and adds no decay to g.
 * Slots: 0 m, 1 v, 2 vmax (AMSGrad only). */
static inline void FO_FN(rule_adam)(const fo_hyper *h, FO_REAL *w, const FO_REAL *g, FO_REAL *state,
                                    ptrdiff_t n, ptrdiff_t ld, ptrdiff_t n_decay, int64_t t, double lr,
                                    int decoupled)
{
    const FO_REAL wd = decoupled ? 0 : (FO_REAL)h->weight_decay, eps = (FO_REAL)h->eps;
    const FO_REAL one_b1 = (FO_REAL)(1.0 - h->beta1), b2 = (FO_REAL)h->beta2, one_b2 = (FO_REAL)(1.0 - h->beta2);
    const FO_REAL step_size = (FO_REAL)(lr / (1.0 - pow(h->beta1, (double)t)));
    const FO_REAL bc2_sqrt = (FO_REAL)sqrt(1.0 - pow(h->beta2, (double)t));
    const FO_REAL shrink = (FO_REAL)(1.0 - lr * h->weight_decay);
    const ptrdiff_t nd = wd != 0 ? n_decay : 0;
    FO_REAL *m = state, *v = state + ld, *vmax = state + 2 * ld;
    if (decoupled && h->weight_decay != 0)
        for (ptrdiff_t i = 0; i < n_decay; i++) w[i] *= shrink;
    for (ptrdiff_t i = 0; i < n; i++) {
        const FO_REAL gi = FO_GRAD_WD(i);
        FO_REAL vi;
        m[i] += one_b1 * (gi - m[i]);
        v[i] = b2 * v[i] + one_b2 * (gi * gi);
        vi = v[i];
        if (h->amsgrad) {
            if (vi > vmax[i]) vmax[i] = vi;
            vi = vmax[i];
        }
        w[i] -= step_size * (m[i] / (FO_SQRT(vi) / bc2_sqrt + eps));
    }
}

#undef FO_GRAD_WD

/* Dispatch one step on n coordinates whose state slots lie ld apart (a slice of a longer vector: every rule is
 * elementwise); FO_BAD_ARGUMENT for a rule this file does not know. */
static inline fo_status FO_FN(rule_step_ld)(fo_rule rule, const fo_hyper *h, FO_REAL *w, const FO_REAL *g,
                                            FO_REAL *state, ptrdiff_t n, ptrdiff_t ld, ptrdiff_t n_decay, int64_t t,
                                            double lr)
{
    switch (rule) {
    case FO_RULE_SGD: FO_FN(rule_sgd)(h, w, g, state, n, n_decay, t, lr); return FO_OK;
    case FO_RULE_MOMENTUM: FO_FN(rule_momentum)(h, w, g, state, n, n_decay, t, lr); return FO_OK;
    case FO_RULE_NESTEROV: FO_FN(rule_nesterov)(h, w, g, state, n, n_decay, t, lr); return FO_OK;
    case FO_RULE_ADAGRAD: FO_FN(rule_adagrad)(h, w, g, state, n, n_decay, t, lr); return FO_OK;
    case FO_RULE_RMSPROP: FO_FN(rule_rmsprop)(h, w, g, state, n, ld, n_decay, t, lr); return FO_OK;
    case FO_RULE_ADAM: FO_FN(rule_adam)(h, w, g, state, n, ld, n_decay, t, lr, 0); return FO_OK;
    case FO_RULE_ADAMW: FO_FN(rule_adam)(h, w, g, state, n, ld, n_decay, t, lr, 1); return FO_OK;
    }
    return FO_BAD_ARGUMENT;
}

/* Dispatch one step on a whole vector of n coordinates. */
static inline fo_status FO_FN(rule_step)(fo_rule rule, const fo_hyper *h, FO_REAL *w, const FO_REAL *g,
                                         FO_REAL *state, ptrdiff_t n, ptrdiff_t n_decay, int64_t t, double lr)
{
    return FO_FN(rule_step_ld)(rule, h, w, g, state, n, n, n_decay, t, lr);
}
