/* krylov.c: the fused pass of the Krylov least-squares solvers (fastopt/_krylov.py).
 *
 * One call reads a segment of rows of X once and returns, for a given d-vector v and target column y,
 *   a_i = s_i (x_i . v + c y_i - shift)          (s_i = sqrt(w_i), or 1)
 *   z   = sum_i s_i a_i x_i,   ss = sum_i a_i^2,   se = sum_i s_i a_i.
 * With m the weighted column means, shift = m . v + c m_y makes a = A v + c b for the implicitly centred,
 * sqrt(weight)-scaled operator A = S (X - 1 m^T) and target b = S (y - m_y); then A^T a = z - m se. Each row
 * (dense: four at a time; CSR: a block of rows) is dotted with v and, while still in cache, added into z, so an
 * iteration reads X once where forming A v and then A^T a reads it twice. Why one such pass per iteration
 * suffices for CGLS and LSQR is explained in fastopt/_krylov.py. Everything is accumulated in double whatever
 * the input type. Within one instruction set the order of every sum is fixed, so results are reproducible; the
 * AVX2 copy of the dense loop forms the update of z with fused multiply-adds, so it rounds differently from the
 * baseline copy (as BLAS builds do across CPUs).
 *
 * krylov_body.h is included once per input type (double, float) and, inside, once per instruction set for the
 * dense loop: the baseline, and on x86 with GCC or clang an AVX2 + FMA copy chosen at run time (the four lanes of
 * a row's dot product fill one 32-byte register; fused multiply-adds in the update of z took the pass from 2.5x
 * to 1.7x the CPU time of one BLAS X @ v at d = 2000, while in the dot products they lengthened the dependency
 * chains and slowed small d: 1.3x became 1.8x at d = 50).
 */
#include <string.h>

#include "fastopt.h"

/* Rows and stored entries per block of the CSR pass: 4096 entries are 48 KB of float64 data and int32 indices,
 * resident in L1/L2 between the block's two sweeps (128 rows of 30 nonzeros: 45 KB). On the hashed benchmark
 * (d = 2^18, 30 nonzeros a row) blocks of 96-128 rows made the pass 4% faster with two threads, 6% with one, than
 * blocks of 256 (medians of 21 alternating runs); 64 rows or fewer were 20% slower. The blocking changes no
 * result: every row's dot product, and every column's sum in row order, are the same for any block size. */
#define FO_KRYLOV_BLOCK 128
#define FO_KRYLOV_BLOCK_NNZ 4096

#define FO_CAT_(a, b) a##_##b
#define FO_CAT(a, b) FO_CAT_(a, b)

/* The AVX2 copy runs when the epoch kernels' instruction set is AVX2 (fo_isa_get: the best the CPU has, unless a
 * test selected the baseline with fastopt._kernels.simd), so one switch selects both families. */
static int fo_krylov_avx2(void)
{
#if FO_AVX2_DISPATCH
    return fo_isa_get() == FO_ISA_AVX2;
#else
    return 0;
#endif
}

#define FO_REAL double
#define FO_KRYLOV_DENSE fo_krylov_dense_d
#define FO_KRYLOV_CSR fo_krylov_csr_d
#define FO_KRYLOV_MOMENTS_CSR fo_krylov_moments_csr_d
#include "krylov_isa.h"
#undef FO_REAL
#undef FO_KRYLOV_DENSE
#undef FO_KRYLOV_CSR
#undef FO_KRYLOV_MOMENTS_CSR

#define FO_REAL float
#define FO_KRYLOV_DENSE fo_krylov_dense_s
#define FO_KRYLOV_CSR fo_krylov_csr_s
#define FO_KRYLOV_MOMENTS_CSR fo_krylov_moments_csr_s
#include "krylov_isa.h"
#undef FO_REAL
#undef FO_KRYLOV_DENSE
#undef FO_KRYLOV_CSR
#undef FO_KRYLOV_MOMENTS_CSR

/* The d-vector updates of a CGLS iteration (fastopt/_krylov.py), fused so that an iteration makes two sweeps
 * besides its pass. Sums run in four lanes (entries j mod 4) added as (l0 + l1) + (l2 + l3): a fixed order, which
 * the compiler can keep in vector registers without reassociating anything. The sweeps run over tiles of
 * FO_KRYLOV_TILE entries (a multiple of 4, so a tile's entry t is in lane t mod 4 = j mod 4): a tile of every
 * operand stays in L1 while it is used twice. */
#define FO_KRYLOV_TILE 512

static inline double fo_lanes(const double l[4]) { return (l[0] + l[1]) + (l[2] + l[3]); }

/* q[0:nt] = the sum of the pass's S segment parts at columns [j0, j0 + nt), in segment order
 * ((Z_0 + Z_1) + Z_2) + ..., the order in which the segments' sums used to be added one vector at a time. */
static inline void fo_sum_parts(double *restrict q, const double *restrict Z, ptrdiff_t S, ptrdiff_t ld,
                                ptrdiff_t j0, ptrdiff_t nt)
{
    memcpy(q, Z + j0, (size_t)nt * sizeof(double));
    for (ptrdiff_t k = 1; k < S; k++) {
        const double *restrict part = Z + k * ld + j0;
        for (ptrdiff_t t = 0; t < nt; t++) q[t] += part[t];
    }
}

/* From the pass's parts Z (S rows of stride ld; their sum is X^T (s a)): q = sum(Z) - se m (m given) + L2 p (the
 * ridge block's diagonal squared: the array L2, or every entry lam2 when L2 is NULL; none when that is 0), the normal
 * matrix times p; then x += step p and s -= step q. Returns s . s. q is never stored: before, forming it was a
 * sweep of its own, and summing the parts another. */
double fo_cgls_step(ptrdiff_t d, ptrdiff_t S, const double *restrict Z, ptrdiff_t ld, double step, double se,
                    const double *restrict m, const double *restrict L2, double lam2, const double *restrict p,
                    double *restrict x, double *restrict s)
{
    double l[4] = {0.0, 0.0, 0.0, 0.0};
    double q[FO_KRYLOV_TILE];
    for (ptrdiff_t j0 = 0; j0 < d; j0 += FO_KRYLOV_TILE) {
        const ptrdiff_t nt = d - j0 < FO_KRYLOV_TILE ? d - j0 : FO_KRYLOV_TILE, nt4 = nt - nt % 4;
        const double *restrict pt = p + j0;
        double *restrict xt = x + j0, *restrict st = s + j0;
        fo_sum_parts(q, Z, S, ld, j0, nt);
        if (m)
            for (ptrdiff_t t = 0; t < nt; t++) q[t] -= se * m[j0 + t];
        if (L2)
            for (ptrdiff_t t = 0; t < nt; t++) q[t] += L2[j0 + t] * pt[t];
        else if (lam2 != 0.0)
            for (ptrdiff_t t = 0; t < nt; t++) q[t] += lam2 * pt[t];
        for (ptrdiff_t t = 0; t < nt4; t += 4)
            for (int k = 0; k < 4; k++) {
                xt[t + k] += step * pt[t + k];
                st[t + k] -= step * q[t + k];
                l[k] += st[t + k] * st[t + k];
            }
        for (ptrdiff_t t = nt4; t < nt; t++) {
            xt[t] += step * pt[t];
            st[t] -= step * q[t];
            l[t - nt4] += st[t] * st[t];
        }
    }
    return fo_lanes(l);
}

/* p = s + beta p; out = {m . p (m given, else 0), sum L2 p^2 (L2 or lam2 as in fo_cgls_step, else 0)}: the next
 * pass's shift and the ridge block's share of ||[A; L] p||^2. */
void fo_cgls_direction(ptrdiff_t d, double beta, const double *restrict s, double *restrict p,
                       const double *restrict m, const double *restrict L2, double lam2, double *out)
{
    double lm[4] = {0.0, 0.0, 0.0, 0.0}, ll[4] = {0.0, 0.0, 0.0, 0.0};
    /* Over tiles, so that p is read back for the sums from L1 rather than swept again: at d = 2^18, 0.24 ms
     * against 0.26 ms for three sweeps with the vectors in cache (equal when they come from memory). */
    for (ptrdiff_t j0 = 0; j0 < d; j0 += FO_KRYLOV_TILE) {
        const ptrdiff_t nt = d - j0 < FO_KRYLOV_TILE ? d - j0 : FO_KRYLOV_TILE, nt4 = nt - nt % 4;
        const double *restrict st = s + j0;
        double *restrict pt = p + j0;
        for (ptrdiff_t t = 0; t < nt; t++) pt[t] = st[t] + beta * pt[t];
        if (m) {
            const double *restrict mt = m + j0;
            for (ptrdiff_t t = 0; t < nt4; t += 4)
                for (int k = 0; k < 4; k++) lm[k] += mt[t + k] * pt[t + k];
            for (ptrdiff_t t = nt4; t < nt; t++) lm[t - nt4] += mt[t] * pt[t];
        }
        if (L2) {
            const double *restrict Lt = L2 + j0;
            for (ptrdiff_t t = 0; t < nt4; t += 4)
                for (int k = 0; k < 4; k++) ll[k] += Lt[t + k] * pt[t + k] * pt[t + k];
            for (ptrdiff_t t = nt4; t < nt; t++) ll[t - nt4] += Lt[t] * pt[t] * pt[t];
        } else if (lam2 != 0.0) {
            for (ptrdiff_t t = 0; t < nt4; t += 4)
                for (int k = 0; k < 4; k++) ll[k] += lam2 * pt[t + k] * pt[t + k];
            for (ptrdiff_t t = nt4; t < nt; t++) ll[t - nt4] += lam2 * pt[t] * pt[t];
        }
    }
    out[0] = fo_lanes(lm);
    out[1] = fo_lanes(ll);
}

/* The d-vector updates of an LSQR iteration (fastopt/_krylov.py), fused likewise. Each loop is branch-free and its
 * sums unrolled by lanes, so that the compiler vectorises it (the lane order is the twins' j mod 4). The ridge
 * block's diagonal is the array L, or every entry lam when L is NULL (none when that is 0: ub is then not used).
 * Before the pass: g = v - alpha g and (ridge) ub = L v - alpha ub, over n entries, adding m . g and ub . ub into
 * the lanes lm and lu. */
static inline void fo_lsqr_before_lanes(ptrdiff_t n, double alpha, const double *restrict v,
                                        const double *restrict L, double lam, double *restrict g,
                                        double *restrict ub, const double *restrict m, double lm[4], double lu[4])
{
    const ptrdiff_t n4 = n - n % 4;
    for (ptrdiff_t j = 0; j < n; j++) g[j] = -alpha * g[j] + v[j];
    if (L || lam != 0.0) {
        if (L)
            for (ptrdiff_t j = 0; j < n; j++) ub[j] = -alpha * ub[j] + L[j] * v[j];
        else
            for (ptrdiff_t j = 0; j < n; j++) ub[j] = -alpha * ub[j] + lam * v[j];
        for (ptrdiff_t j = 0; j < n4; j += 4)
            for (int k = 0; k < 4; k++) lu[k] += ub[j + k] * ub[j + k];
        for (ptrdiff_t j = n4; j < n; j++) lu[j - n4] += ub[j] * ub[j];
    }
    if (m) {
        for (ptrdiff_t j = 0; j < n4; j += 4)
            for (int k = 0; k < 4; k++) lm[k] += m[j + k] * g[j + k];
        for (ptrdiff_t j = n4; j < n; j++) lm[j - n4] += m[j] * g[j];
    }
}

/* out = {m . g, ub . ub} (0 for what is not given). */
void fo_lsqr_before(ptrdiff_t d, double alpha, const double *restrict v, const double *restrict L, double lam,
                    double *restrict g, double *restrict ub, const double *restrict m, double *out)
{
    double lm[4] = {0.0, 0.0, 0.0, 0.0}, lu[4] = {0.0, 0.0, 0.0, 0.0};
    fo_lsqr_before_lanes(d, alpha, v, L, lam, g, ub, m, lm, lu);
    out[0] = fo_lanes(lm);
    out[1] = fo_lanes(lu);
}

/* After the pass, from its parts Z (S rows of stride ld; their sum is z = X^T (s a)), with r = 1 / bdiv (a
 * multiplication, as SciPy's lsqr scales u and v; three divisions per entry made the sweep division-bound):
 * z' = (z - se m) r (m given) or z r, g *= r, ub *= r (ridge), v = -beta v + z' + L ub; returns v . v. The parts
 * are summed tile by tile in this sweep (before, summing them was a sweep of its own) and z' is not stored. */
double fo_lsqr_after(ptrdiff_t d, ptrdiff_t S, const double *restrict Z, ptrdiff_t ld, double beta, double bdiv,
                     double se, const double *restrict m, double *restrict g, double *restrict ub,
                     const double *restrict L, double lam, double *restrict v)
{
    double l[4] = {0.0, 0.0, 0.0, 0.0};
    double z[FO_KRYLOV_TILE];
    const double r = 1.0 / bdiv;
    for (ptrdiff_t j0 = 0; j0 < d; j0 += FO_KRYLOV_TILE) {
        const ptrdiff_t nt = d - j0 < FO_KRYLOV_TILE ? d - j0 : FO_KRYLOV_TILE, nt4 = nt - nt % 4;
        double *restrict gt = g + j0, *restrict vt = v + j0;
        fo_sum_parts(z, Z, S, ld, j0, nt);
        /* One loop per case (the branches outside the loops, so that each loop vectorises). */
        if (m)
            for (ptrdiff_t t = 0; t < nt; t++) z[t] = (z[t] - se * m[j0 + t]) * r;
        else
            for (ptrdiff_t t = 0; t < nt; t++) z[t] *= r;
        for (ptrdiff_t t = 0; t < nt; t++) gt[t] *= r;
        if (L) {
            double *restrict ut = ub + j0;
            const double *restrict Lt = L + j0;
            for (ptrdiff_t t = 0; t < nt; t++) {
                ut[t] *= r;
                vt[t] = (-beta * vt[t] + z[t]) + Lt[t] * ut[t];
            }
        } else if (lam != 0.0) {
            double *restrict ut = ub + j0;
            for (ptrdiff_t t = 0; t < nt; t++) {
                ut[t] *= r;
                vt[t] = (-beta * vt[t] + z[t]) + lam * ut[t];
            }
        } else
            for (ptrdiff_t t = 0; t < nt; t++) vt[t] = -beta * vt[t] + z[t];
        for (ptrdiff_t t = 0; t < nt4; t += 4)
            for (int k = 0; k < 4; k++) l[k] += vt[t + k] * vt[t + k];
        for (ptrdiff_t t = nt4; t < nt; t++) l[t - nt4] += vt[t] * vt[t];
    }
    return fo_lanes(l);
}

/* The end of the iteration over n entries: v *= 1 / adiv, x += cx w, w = cw w + v. */
static inline void fo_lsqr_update_n(ptrdiff_t n, double adiv, double cx, double cw, double *restrict v,
                                    double *restrict x, double *restrict w)
{
    const double r = 1.0 / adiv;
    for (ptrdiff_t j = 0; j < n; j++) {
        v[j] *= r;
        x[j] += cx * w[j];
        w[j] = cw * w[j] + v[j];
    }
}

void fo_lsqr_update(ptrdiff_t d, double adiv, double cx, double cw, double *restrict v, double *restrict x,
                    double *restrict w)
{
    fo_lsqr_update_n(d, adiv, cx, cw, v, x, w);
}

/* The end of an iteration and the start of the next, in one sweep over tiles: fo_lsqr_update, then
 * fo_lsqr_before with the same alpha (the one v was just divided by). Before, they were two sweeps. */
void fo_lsqr_next(ptrdiff_t d, double adiv, double cx, double cw, double *restrict v, double *restrict x,
                  double *restrict w, double alpha, const double *restrict L, double lam, double *restrict g,
                  double *restrict ub, const double *restrict m, double *out)
{
    double lm[4] = {0.0, 0.0, 0.0, 0.0}, lu[4] = {0.0, 0.0, 0.0, 0.0};
    for (ptrdiff_t j0 = 0; j0 < d; j0 += FO_KRYLOV_TILE) {
        const ptrdiff_t nt = d - j0 < FO_KRYLOV_TILE ? d - j0 : FO_KRYLOV_TILE;
        fo_lsqr_update_n(nt, adiv, cx, cw, v + j0, x + j0, w + j0);
        const int ridge = L || lam != 0.0;
        fo_lsqr_before_lanes(nt, alpha, v + j0, L ? L + j0 : NULL, lam, g + j0, ridge ? ub + j0 : NULL,
                             m ? m + j0 : NULL, lm, lu);
    }
    out[0] = fo_lanes(lm);
    out[1] = fo_lanes(lu);
}
