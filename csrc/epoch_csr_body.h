/* epoch_csr_body.h: the CSR epoch for one real type (see epoch_csr.c). Included once per type with
 *   FO_REAL, FO_FN(name), FO_SQRT as for rules.h. No include guard on purpose. */

#include "rules.h"


/* Bring feature `col` (its k weights and their state) from s steps behind up to date. */
static inline void FO_FN(csr_catch_up)(fo_catch how, const fo_hyper *h, ptrdiff_t col, ptrdiff_t s,
                                       const double *table, FO_REAL *params, FO_REAL *state, ptrdiff_t d,
                                       ptrdiff_t k, ptrdiff_t n_params)
{
    const double *A = table + FO_CSR_TAB * s;
    for (ptrdiff_t j = 0; j < k; j++) {
        const ptrdiff_t i = j * d + col;
        switch (how) {
        case FO_CATCH_SCALE: params[i] = (FO_REAL)(A[4] * (double)params[i]); break;
        case FO_CATCH_PAIR: {
            const double v = state[i], w = params[i];
            state[i] = (FO_REAL)(A[0] * v + A[1] * w);
            params[i] = (FO_REAL)(A[2] * v + A[3] * w);
            break;
        }
        case FO_CATCH_RMS:
            state[i] = (FO_REAL)(A[4] * (double)state[i]);
            if (h->centered) state[n_params + i] = (FO_REAL)(A[4] * (double)state[n_params + i]);
            if (h->momentum > 0) {
                const double b = state[2 * n_params + i], w = params[i];
                state[2 * n_params + i] = (FO_REAL)(A[0] * b);
                params[i] = (FO_REAL)(A[2] * b + w);
            }
            break;
        default: break;
        }
    }
}

/* torch.optim.SparseAdam on the compact coordinates whose loss gradient g is nonzero, with its arithmetic:
 * m <- m + (1 - b1)(g - m), v <- v + (1 - b2)(g^2 - v), w <- w - (lr sqrt(1 - b2^t) / (1 - b1^t)) m /
 * (sqrt(v) + eps). Extensions on the same coordinates: coupled L2 (Adam: g + wd w), decoupled (AdamW:
 * w <- (1 - lr wd) w first), AMSGrad (v replaced by its running maximum). */
static void FO_FN(csr_sparse_adam)(const fo_hyper *h, FO_REAL *w, const FO_REAL *g, FO_REAL *state,
                                   ptrdiff_t n, ptrdiff_t n_decay, int64_t t, double lr, int decoupled)
{
    const FO_REAL wd = (FO_REAL)h->weight_decay, eps = (FO_REAL)h->eps;
    const FO_REAL one_b1 = (FO_REAL)(1.0 - h->beta1), one_b2 = (FO_REAL)(1.0 - h->beta2);
    const FO_REAL step_size = (FO_REAL)(lr * sqrt(1.0 - pow(h->beta2, (double)t)) /
                                        (1.0 - pow(h->beta1, (double)t)));
    const FO_REAL shrink = (FO_REAL)(1.0 - lr * h->weight_decay);
    FO_REAL *m = state, *v = state + n, *vmax = state + 2 * n;
    for (ptrdiff_t i = 0; i < n; i++) {
        if (g[i] == 0) continue;
        FO_REAL gi = g[i];
        if (i < n_decay && h->weight_decay != 0) {
            if (decoupled)
                w[i] *= shrink;
            else
                gi = gi + wd * w[i];
        }
        m[i] = m[i] + (gi - m[i]) * one_b1;
        v[i] = v[i] + (gi * gi - v[i]) * one_b2;
        FO_REAL vi = v[i];
        if (h->amsgrad) {
            if (vi > vmax[i]) vmax[i] = vi;
            vi = vmax[i];
        }
        w[i] = w[i] + -(step_size * (m[i] / (FO_SQRT(vi) + eps)));
    }
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
        if (pos + 8 < to) {
            const int64_t ahead = order[pos + 8];
            const ptrdiff_t a0 = indptr[ahead], a1 = indptr[ahead + 1];
            for (ptrdiff_t p = a0; p < a1; p += 64 / sizeof(FO_REAL)) FO_CSR_PREFETCH(data + p);
            if (a1 > a0) FO_CSR_PREFETCH(data + a1 - 1);
            for (ptrdiff_t p = a0; p < a1; p += 16) FO_CSR_PREFETCH(indices + p);
            if (a1 > a0) FO_CSR_PREFETCH(indices + a1 - 1);
            FO_CSR_PREFETCH(Y + ahead * k);
        }
        if (pos + 16 < to) FO_CSR_PREFETCH(indptr + order[pos + 16]);
        const int64_t row = order[pos];
        const ptrdiff_t p0 = indptr[row], len = indptr[row + 1] - p0, r = pos - from;
        if (used + len > cap) break;
        memcpy(s_data + used, data + p0, (size_t)len * sizeof(FO_REAL));
        memcpy(s_ind + used, indices + p0, (size_t)len * sizeof(int32_t));
        used += len;
        s_ptr[r + 1] = (int32_t)used;
        for (ptrdiff_t j = 0; j < k; j++) s_y[r * k + j] = Y[row * k + j];
        if (sw) s_sw[r] = sw[row];
        if ((r + 1) % b == 0 || pos + 1 == to) fitted = pos + 1;
    }
    return fitted;
}

fo_status FO_FN(fo_epoch_csr)(fo_rule rule, const fo_hyper *h, fo_epoch_ctl *c, int lazy, const FO_REAL *data,
                              const int32_t *indices, const int32_t *indptr, const FO_REAL *Y, const FO_REAL *sw,
                              ptrdiff_t d, ptrdiff_t k, FO_REAL *params, ptrdiff_t n_params, FO_REAL *state,
                              ptrdiff_t n_slots, FO_REAL *work, int64_t *iwork, double *table, ptrdiff_t stage_cap)
{
    c->bad_step = 0;
    c->loss_out = 0;
    if (c->batch_size < 1 || k < 1 || n_slots < 0 || n_slots > FO_MAX_SLOTS || stage_cap < 0 || stage_cap > INT32_MAX ||
        n_params != k * d + (n_params > k * d ? k : 0))
        return FO_BAD_ARGUMENT;
    const int has_b = n_params > k * d;
    const ptrdiff_t kd = k * d, nb = has_b ? k : 0;
    const fo_catch how = fo_csr_catch(rule, h, lazy);
    const int catching = how == FO_CATCH_SCALE || how == FO_CATCH_PAIR || how == FO_CATCH_RMS;
    const int decoupled = rule == FO_RULE_ADAMW;
    const FO_REAL epsilon = (FO_REAL)c->epsilon;
    /* work: compact w, g, state (T's coordinates output-major, then the intercepts), the row coefficients, and
     * the dense gradient that the rules without deferred updates step on (zero off T). */
    FO_REAL *cw = work, *cg = cw + n_params, *cs = cg + n_params, *coef = cs + FO_MAX_SLOTS * n_params;
    FO_REAL *g = coef + c->batch_size * k;
    /* iwork: one slot per feature (the step it is up to date with, its position in T), then T */
    fo_csr_slot *slot = (fo_csr_slot *)iwork;
    int64_t *touched = iwork + d;
    /* staging (see csr_stage and fo_csr_stage_rows): values, targets and weights after the dense gradient in
     * work; indices and row pointers after T in iwork */
    const ptrdiff_t b = c->batch_size, s_rows = fo_csr_stage_rows(b), s_cap = stage_cap;
    FO_REAL *s_data = g + n_params, *s_y = s_data + s_cap, *s_sw = s_y + s_rows * k;
    int32_t *s_ind = (int32_t *)(iwork + 2 * d), *s_ptr = s_ind + s_cap;
    const int64_t t0 = c->t;
    const ptrdiff_t steps = (c->n_rows + c->batch_size - 1) / c->batch_size;
    if (catching) fo_csr_tables(rule, h, c->lr, steps, table);
    if (how == FO_CATCH_DENSE || (how == FO_CATCH_PAIR && t0 == 0)) memset(g, 0, (size_t)n_params * sizeof(FO_REAL));
    for (ptrdiff_t col = 0; col < d; col++) slot[col].last = 0, slot[col].pos = -1;
    fo_status status = FO_OK;
    double total = 0;
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
        if (start >= block_end) {
            const ptrdiff_t want = start + s_rows < c->n_rows ? start + s_rows : c->n_rows;
            block_end = FO_FN(csr_stage)(c->order, start, want, b, s_cap, data, indices, indptr, Y, sw, k, s_data,
                                         s_ind, s_ptr, s_y, s_sw);
            if (block_end > start) {
                xd = s_data, xi = s_ind, xp = s_ptr, xy = s_y, xsw = sw ? s_sw : NULL, sorder = NULL, base = start;
            } else {
                block_end = end;
                xd = data, xi = indices, xp = indptr, xy = Y, xsw = sw, sorder = c->order, base = 0;
            }
        }
        const int32_t rel = (int32_t)(c->t - t0) + 1; /* this step, counted from the epoch's start */
        const int64_t step = c->t + 1;
        /* 1. T: the touched features in order of first appearance, each brought up to date with step c->t.
         * Meanwhile, row by row, the columns of the next minibatch's rows (whose indices arrived during the
         * previous step) and the rows of the one after are prefetched: spread out, not in a burst that would
         * overflow the core's queue of outstanding misses (measured: most of a burst's prefetches were lost). */
        nt = 0;
        for (ptrdiff_t pos = start; pos < end; pos++) {
            const int64_t row = FO_ROW(pos);
            if (pos + b < block_end) { /* the next minibatch's columns, when it is in this block */
                const int64_t next = FO_ROW(pos + b);
                for (ptrdiff_t p = xp[next]; p < xp[next + 1]; p++) {
                    FO_CSR_PREFETCH(slot + xi[p]);
                    FO_CSR_PREFETCH(params + xi[p]);
                }
            }
            for (ptrdiff_t p = xp[row]; p < xp[row + 1]; p++) {
                const int32_t col = xi[p];
                fo_csr_slot *sl = slot + col;
                if (sl->last != rel) {
                    const ptrdiff_t behind = (ptrdiff_t)(rel - 1 - sl->last);
                    if (catching && behind > 0)
                        FO_FN(csr_catch_up)(how, h, col, behind, table, params, state, d, k, n_params);
                    sl->last = rel; /* up to date once this step is taken */
                    sl->pos = (int32_t)nt;
                    touched[nt++] = col;
                }
            }
        }
        /* 2. Residuals, loss and coefficients c_ij = sw_i loss'(r_ij). */
        double loss = 0;
        for (ptrdiff_t q = 0; q < nrows; q++) {
            const int64_t row = FO_ROW(start + q);
            const ptrdiff_t p0 = xp[row], p1 = xp[row + 1];
            const FO_REAL wi = xsw ? xsw[row] : (FO_REAL)1;
            for (ptrdiff_t j = 0; j < k; j++) {
                const FO_REAL *wj = params + j * d;
                FO_REAL dot = 0;
                for (ptrdiff_t p = p0; p < p1; p++) dot += xd[p] * wj[xi[p]];
                const FO_REAL r = dot + (has_b ? params[kd + j] : (FO_REAL)0) - xy[row * k + j];
                FO_REAL dl;
                loss += (double)wi * FO_FN(loss_value)(c->loss, r, epsilon, &dl);
                coef[q * k + j] = wi * dl;
            }
        }
        /* 3. The minibatch mean gradient on T and the intercepts, compact, each entry summed over the rows in
         * order. */
        const ptrdiff_t nc = k * nt + nb;
        memset(cg, 0, (size_t)nc * sizeof(FO_REAL));
        for (ptrdiff_t q = 0; q < nrows; q++) {
            const int64_t row = FO_ROW(start + q);
            const ptrdiff_t p0 = xp[row], p1 = xp[row + 1];
            for (ptrdiff_t j = 0; j < k; j++) {
                const FO_REAL cq = coef[q * k + j];
                FO_REAL *gj = cg + j * nt;
                for (ptrdiff_t p = p0; p < p1; p++) gj[slot[xi[p]].pos] += cq * xd[p];
                if (has_b) cg[k * nt + j] += cq;
            }
        }
        const FO_REAL inv = (FO_REAL)(1.0 / (double)nrows);
        double ss = 0;
        for (ptrdiff_t i = 0; i < nc; i++) {
            cg[i] *= inv;
            ss += (double)cg[i] * (double)cg[i];
        }
        total += loss;
        if (!isfinite(loss) || !isfinite(ss)) {
            status = FO_NONFINITE_LOSS;
        } else if (loss / (double)nrows > c->loss_limit) {
            status = FO_DIVERGED;
        }
        if (status != FO_OK) {
            c->bad_step = step;
            for (ptrdiff_t q = 0; q < nt; q++) slot[touched[q]].last = rel - 1; /* the step was not taken */
            break;
        }
        /* 4. Clipping by the global norm: the gradient is zero off T. */
        if (c->clip_norm > 0) {
            const double norm = sqrt(ss), cf = c->clip_norm / (norm + FO_CSR_CLIP_EPS);
            if (cf < 1) {
                const FO_REAL s = (FO_REAL)cf;
                for (ptrdiff_t i = 0; i < nc; i++) cg[i] *= s;
            }
        }
        c->t = step;
        /* 5. The step: on every coordinate (the rules without deferred updates, and the first step of the
         * momentum rules, whose buffers start as the gradient), else on T and the intercepts. */
        if (how == FO_CATCH_DENSE || (how == FO_CATCH_PAIR && step == 1)) {
            for (ptrdiff_t j = 0; j < k; j++)
                for (ptrdiff_t q = 0; q < nt; q++) g[j * d + touched[q]] = cg[j * nt + q];
            for (ptrdiff_t j = 0; j < nb; j++) g[kd + j] = cg[k * nt + j];
            FO_FN(rule_step)(rule, h, params, g, state, n_params, kd, step, c->lr);
            for (ptrdiff_t j = 0; j < k; j++)
                for (ptrdiff_t q = 0; q < nt; q++) g[j * d + touched[q]] = 0;
            if (how == FO_CATCH_PAIR)
                for (ptrdiff_t col = 0; col < d; col++) slot[col].last = rel;
            continue;
        }
        /* Gather T's coordinates and the intercepts, step them with the unchanged rule, scatter back. */
        for (ptrdiff_t j = 0; j < k; j++)
            for (ptrdiff_t q = 0; q < nt; q++) {
                const ptrdiff_t i = j * d + touched[q], ci = j * nt + q;
                cw[ci] = params[i];
                for (ptrdiff_t sl = 0; sl < n_slots; sl++) cs[sl * nc + ci] = state[sl * n_params + i];
            }
        for (ptrdiff_t j = 0; j < nb; j++) {
            const ptrdiff_t i = kd + j, ci = k * nt + j;
            cw[ci] = params[i];
            for (ptrdiff_t sl = 0; sl < n_slots; sl++) cs[sl * nc + ci] = state[sl * n_params + i];
        }
        if (lazy && (rule == FO_RULE_ADAM || rule == FO_RULE_ADAMW))
            FO_FN(csr_sparse_adam)(h, cw, cg, cs, nc, k * nt, step, c->lr, decoupled);
        else
            FO_FN(rule_step)(rule, h, cw, cg, n_slots ? cs : NULL, nc, k * nt, step, c->lr);
        for (ptrdiff_t j = 0; j < k; j++)
            for (ptrdiff_t q = 0; q < nt; q++) {
                const ptrdiff_t i = j * d + touched[q], ci = j * nt + q;
                params[i] = cw[ci];
                for (ptrdiff_t sl = 0; sl < n_slots; sl++) state[sl * n_params + i] = cs[sl * nc + ci];
            }
        for (ptrdiff_t j = 0; j < nb; j++) {
            const ptrdiff_t i = kd + j, ci = k * nt + j;
            params[i] = cw[ci];
            for (ptrdiff_t sl = 0; sl < n_slots; sl++) state[sl * n_params + i] = cs[sl * nc + ci];
        }
    }
#undef FO_ROW
    /* Every coordinate up to date with the last step taken, on every exit. */
    if (catching) {
        const int32_t now = (int32_t)(c->t - t0);
        for (ptrdiff_t col = 0; col < d; col++)
            if (slot[col].last != now)
                FO_FN(csr_catch_up)(how, h, col, (ptrdiff_t)(now - slot[col].last), table, params, state, d, k,
                                    n_params);
    }
    if (status != FO_OK) return status;
    for (ptrdiff_t p = 0; p < n_params; p++) {
        if (!isfinite(params[p])) {
            c->bad_step = c->t;
            return FO_NONFINITE_LOSS;
        }
    }
    c->loss_out = c->n_rows > 0 ? total / (double)c->n_rows : 0.0;
    return FO_OK;
}
