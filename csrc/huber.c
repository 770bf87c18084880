/* huber.c: the fused pass of the Huber Newton solver (fastopt/_newton.py).
 *
 * One call reads a segment of rows of X once and, at the point (w, b), computes every row's residual
 * r_i = x_i . w + b - y_i, the Huber loss and gradient sums, the inlier mask m_i = [|r_i| <= eps], and the change
 * of the generalised Hessian: the rows whose mask differs from the previous one (prev), gathered while still in
 * cache as sqrt(s_i) z_i with z_i = [x_i - centre, 1] (or x_i - centre without intercept), are added (entering the
 * inlier set) or subtracted (leaving it) by BLAS syrk. With prev == NULL every inlier enters (a rebuild); with
 * dH == NULL no Hessian work is done. Why updating beats rebuilding, and when a rebuild is forced, is explained
 * in fastopt/_newton.py. Everything is accumulated in double whatever the input type.
 *
 * The row loop follows krylov_body.h (four rows at a time, dot products in four lanes, the gradient update
 * fused in the AVX2 copy); within one instruction set every sum has a fixed order, so results are reproducible.
 * huber_body.h is included once per input type and, inside, once per instruction set for the row loop.
 */
#include <math.h>
#include <string.h>

#include "fastopt.h"

#define FO_CAT_(a, b) a##_##b
#define FO_CAT(a, b) FO_CAT_(a, b)

static int fo_huber_avx2(void)
{
#if FO_AVX2_DISPATCH
    return fo_isa_get() == FO_ISA_AVX2;
#else
    return 0;
#endif
}

/* A gather buffer of rows z (row-major, p columns = column-major p x count): added into dH's upper triangle
 * (column-major; the lower one row-major) with sign, then emptied. */
static void fo_huber_flush(const fo_blas *blas, double *buf, int *count, int p, double sign, double *dH)
{
    if (*count == 0) return;
    char uplo = 'U', trans = 'N';
    double one = 1.0;
    int k = *count;
    blas->dsyrk(&uplo, &trans, &p, &k, &sign, buf, &p, &one, dH, &p);
    *count = 0;
}

#define FO_REAL double
#define FO_HUBER_PASS fo_huber_pass_d
#include "huber_isa.h"
#undef FO_REAL
#undef FO_HUBER_PASS

#define FO_REAL float
#define FO_HUBER_PASS fo_huber_pass_s
#include "huber_isa.h"
#undef FO_REAL
#undef FO_HUBER_PASS
