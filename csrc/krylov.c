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

/* Rows and stored entries per block of the CSR pass: 8192 entries are 96 KB of float64 data and int32 indices,
 * resident in L2 between the block's two sweeps (256 rows of 30 nonzeros: 92 KB). */
#define FO_KRYLOV_BLOCK 256
#define FO_KRYLOV_BLOCK_NNZ 8192

#define FO_CAT_(a, b) a##_##b
#define FO_CAT(a, b) FO_CAT_(a, b)

#if (defined(__GNUC__) || defined(__clang__)) && (defined(__x86_64__) || defined(__i386__)) \
    && !defined(FO_NO_DISPATCH) && !defined(FO_PORTABLE)
#define FO_KRYLOV_X86 1
#else
#define FO_KRYLOV_X86 0
#endif

/* The AVX2 copy runs when the epoch kernels' instruction set is AVX2 (fo_isa_get: the best the CPU has, unless a
 * test selected the baseline with fastopt._kernels.simd), so one switch selects both families. */
static int fo_krylov_avx2(void)
{
#if FO_KRYLOV_X86
    return fo_isa_get() == FO_ISA_AVX2;
#else
    return 0;
#endif
}

#define FO_REAL double
#define FO_KRYLOV_DENSE fo_krylov_dense_d
#define FO_KRYLOV_CSR fo_krylov_csr_d
#include "krylov_isa.h"
#undef FO_REAL
#undef FO_KRYLOV_DENSE
#undef FO_KRYLOV_CSR

#define FO_REAL float
#define FO_KRYLOV_DENSE fo_krylov_dense_s
#define FO_KRYLOV_CSR fo_krylov_csr_s
#include "krylov_isa.h"
#undef FO_REAL
#undef FO_KRYLOV_DENSE
#undef FO_KRYLOV_CSR

/* The d-vector updates of a CGLS iteration (fastopt/_krylov.py), fused so that each is one sweep. Sums run in four
 * lanes (entries j mod 4) added as (l0 + l1) + (l2 + l3): a fixed order, which the compiler can keep in vector
 * registers without reassociating anything. */
static inline double fo_lanes(const double l[4]) { return (l[0] + l[1]) + (l[2] + l[3]); }

double fo_cgls_prepare(ptrdiff_t d, double *restrict q, double se, const double *restrict m,
                       const double *restrict L2, const double *restrict p)
{
    double l[4] = {0.0, 0.0, 0.0, 0.0};
    if (m)
        for (ptrdiff_t j = 0; j < d; j++) q[j] -= se * m[j];
    if (!L2) return 0.0;
    const ptrdiff_t d4 = d - d % 4;
    for (ptrdiff_t j = 0; j < d4; j += 4)
        for (int k = 0; k < 4; k++) {
            q[j + k] += L2[j + k] * p[j + k];
            l[k] += L2[j + k] * p[j + k] * p[j + k];
        }
    for (ptrdiff_t j = d4; j < d; j++) {
        q[j] += L2[j] * p[j];
        l[j - d4] += L2[j] * p[j] * p[j];
    }
    return fo_lanes(l);
}

double fo_cgls_advance(ptrdiff_t d, double step, const double *restrict p, const double *restrict q,
                       double *restrict x, double *restrict s)
{
    double l[4] = {0.0, 0.0, 0.0, 0.0};
    const ptrdiff_t d4 = d - d % 4;
    for (ptrdiff_t j = 0; j < d4; j += 4)
        for (int k = 0; k < 4; k++) {
            x[j + k] += step * p[j + k];
            s[j + k] -= step * q[j + k];
            l[k] += s[j + k] * s[j + k];
        }
    for (ptrdiff_t j = d4; j < d; j++) {
        x[j] += step * p[j];
        s[j] -= step * q[j];
        l[j - d4] += s[j] * s[j];
    }
    return fo_lanes(l);
}

double fo_cgls_direction(ptrdiff_t d, double beta, const double *restrict s, double *restrict p,
                         const double *restrict m)
{
    double l[4] = {0.0, 0.0, 0.0, 0.0};
    for (ptrdiff_t j = 0; j < d; j++) p[j] = s[j] + beta * p[j];
    if (!m) return 0.0;
    const ptrdiff_t d4 = d - d % 4;
    for (ptrdiff_t j = 0; j < d4; j += 4)
        for (int k = 0; k < 4; k++) l[k] += m[j + k] * p[j + k];
    for (ptrdiff_t j = d4; j < d; j++) l[j - d4] += m[j] * p[j];
    return fo_lanes(l);
}

/* The d-vector updates of an LSQR iteration (fastopt/_krylov.py), fused likewise. Each loop is branch-free and its
 * sums unrolled by lanes, so that the compiler vectorises it (the lane order is the twins' j mod 4).
 * Before the pass: g = v - alpha g and (ridge, L given) ub = L v - alpha ub; out = {m . g, ub . ub}. */
void fo_lsqr_before(ptrdiff_t d, double alpha, const double *restrict v, const double *restrict L,
                    double *restrict g, double *restrict ub, const double *restrict m, double *out)
{
    double lm[4] = {0.0, 0.0, 0.0, 0.0}, lu[4] = {0.0, 0.0, 0.0, 0.0};
    const ptrdiff_t d4 = d - d % 4;
    for (ptrdiff_t j = 0; j < d; j++) g[j] = -alpha * g[j] + v[j];
    if (L) {
        for (ptrdiff_t j = 0; j < d; j++) ub[j] = -alpha * ub[j] + L[j] * v[j];
        for (ptrdiff_t j = 0; j < d4; j += 4)
            for (int k = 0; k < 4; k++) lu[k] += ub[j + k] * ub[j + k];
        for (ptrdiff_t j = d4; j < d; j++) lu[j - d4] += ub[j] * ub[j];
    }
    if (m) {
        for (ptrdiff_t j = 0; j < d4; j += 4)
            for (int k = 0; k < 4; k++) lm[k] += m[j + k] * g[j + k];
        for (ptrdiff_t j = d4; j < d; j++) lm[j - d4] += m[j] * g[j];
    }
    out[0] = fo_lanes(lm);
    out[1] = fo_lanes(lu);
}

/* After the pass, z = X^T (s a) (its own vector, overwritten), with r = 1 / bdiv (a multiplication, as SciPy's
 * lsqr scales u and v; three divisions per entry made the sweep division-bound): z = (z - se m) r (m given) or
 * z r, g *= r, ub *= r (L given), v = -beta v + z + L ub; returns v . v. */
double fo_lsqr_after(ptrdiff_t d, double beta, double bdiv, double se, const double *restrict m,
                     double *restrict z, double *restrict g, double *restrict ub, const double *restrict L,
                     double *restrict v)
{
    double l[4] = {0.0, 0.0, 0.0, 0.0};
    const ptrdiff_t d4 = d - d % 4;
    const double r = 1.0 / bdiv;
    /* One sweep per case (the branches outside the loops, so that each loop vectorises). */
    if (m && L)
        for (ptrdiff_t j = 0; j < d; j++) {
            z[j] = (z[j] - se * m[j]) * r;
            g[j] *= r;
            ub[j] *= r;
            v[j] = (-beta * v[j] + z[j]) + L[j] * ub[j];
        }
    else if (m)
        for (ptrdiff_t j = 0; j < d; j++) {
            z[j] = (z[j] - se * m[j]) * r;
            g[j] *= r;
            v[j] = -beta * v[j] + z[j];
        }
    else if (L)
        for (ptrdiff_t j = 0; j < d; j++) {
            z[j] *= r;
            g[j] *= r;
            ub[j] *= r;
            v[j] = (-beta * v[j] + z[j]) + L[j] * ub[j];
        }
    else
        for (ptrdiff_t j = 0; j < d; j++) {
            z[j] *= r;
            g[j] *= r;
            v[j] = -beta * v[j] + z[j];
        }
    for (ptrdiff_t j = 0; j < d4; j += 4)
        for (int k = 0; k < 4; k++) l[k] += v[j + k] * v[j + k];
    for (ptrdiff_t j = d4; j < d; j++) l[j - d4] += v[j] * v[j];
    return fo_lanes(l);
}

/* The end of the iteration: v *= 1 / adiv, x += cx w, w = cw w + v. */
void fo_lsqr_update(ptrdiff_t d, double adiv, double cx, double cw, double *restrict v, double *restrict x,
                    double *restrict w)
{
    const double r = 1.0 / adiv;
    for (ptrdiff_t j = 0; j < d; j++) {
        v[j] *= r;
        x[j] += cx * w[j];
        w[j] = cw * w[j] + v[j];
    }
}
