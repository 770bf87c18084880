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
 * the input type, and without fused multiply-adds, so the copies compiled for different instruction sets give
 * identical results.
 *
 * krylov_body.h is included once per input type (double, float) and, inside, once per instruction set for the
 * dense loop: the baseline, and on x86 with GCC or clang an AVX2 copy chosen at run time (measured about 2x the
 * baseline's speed at d = 2000: the four lanes of a row's dot product fill one 32-byte register).
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

static int fo_krylov_avx2(void)
{
#if FO_KRYLOV_X86
    static int known = -1;
    int v = __atomic_load_n(&known, __ATOMIC_RELAXED);
    if (v < 0) {
        __builtin_cpu_init();
        v = __builtin_cpu_supports("avx2") ? 1 : 0;
        __atomic_store_n(&known, v, __ATOMIC_RELAXED);
    }
    return v;
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
