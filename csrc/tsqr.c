/* tsqr.c: the R factor of the centred, weighted rows by a blockwise (tall-skinny) Householder QR.
 *
 * The contract is fastopt.h's "closed form: R factor" section. The block loop reads the caller's float or double
 * rows and is written once in tsqr_body.h, compiled twice below with FO_REAL set to each input type; both
 * factorise in double. The type-independent steps (work size, sign normalisation) live here.
 *
 * Centring without a first pass over X: each block is centred on its own weighted mean, and the difference
 * between that mean and the running one enters the factorisation as one more row, sqrt(w_a w_b / (w_a + w_b))
 * (mean_b - mean_a): the square-root form of the pairwise moment update of Chan, Golub & LeVeque (1979), so
 * R^T R equals the Gram matrix of rows centred on the global mean. This costs one extra row per block instead of
 * a second read of X (a global-mean pass would read all of X once more from memory), and it is at least as
 * accurate: every block is centred on a mean computed from the very rows it centres.
 */
#include <math.h>
#include <string.h>

#include "fastopt.h"

/* Inner block size of LAPACK's dtpqrt: 16 measured best against 8-64 for p = 100-220 and 512-2048 rows
 * (single-threaded OpenBLAS, Haswell): about 2.6 times the time of syrk on the same rows, for twice its flops. */
#define FO_TSQR_IB 16

static int fo_tsqr_ib(int p) { return p < FO_TSQR_IB ? p : FO_TSQR_IB; }

/* Rows of the first block (at most): it is factorised by dgeqrf, about twice the time of dtpqrt per row, so it is
 * kept short (0.5% of a 50,000-row segment instead of 2% at 1,024 rows). */
#define FO_TSQR_FIRST_ROWS 256

ptrdiff_t fo_tsqr_work_size(int p, int block)
{
    if (p <= 0 || block <= 0) return 0;
    /* block rows + 1 correction row (column-major), T and LAPACK's work (ib x p each), the block mean */
    return ((ptrdiff_t)block + 1) * p + 2 * (ptrdiff_t)fo_tsqr_ib(p) * p + p;
}

/* LAPACK leaves R column-major (the upper triangle at r[j * p + i], i <= j) with diagonal entries of either sign.
 * Return it row-major upper with a non-negative diagonal: R is then unique for a design of full rank, whatever
 * the order of the Householder reflections, which makes results comparable across implementations. */
static void fo_tsqr_finish(double *r, int p)
{
    for (int j = 0; j < p; j++)
        for (int i = 0; i < j; i++) {
            r[(size_t)i * p + j] = r[(size_t)j * p + i];
            r[(size_t)j * p + i] = 0.0;
        }
    for (int i = 0; i < p; i++)
        if (r[(size_t)i * p + i] < 0.0)
            for (int j = i; j < p; j++) r[(size_t)i * p + j] = -r[(size_t)i * p + j];
}

#define FO_REAL double
#define FO_TSQR fo_tsqr_d
#define FO_BLOCK_MEAN fo_block_mean_d
#include "block_mean.h"
#include "tsqr_body.h"
#undef FO_REAL
#undef FO_TSQR
#undef FO_BLOCK_MEAN

#define FO_REAL float
#define FO_TSQR fo_tsqr_s
#define FO_BLOCK_MEAN fo_block_mean_s
#include "block_mean.h"
#include "tsqr_body.h"
#undef FO_REAL
#undef FO_TSQR
#undef FO_BLOCK_MEAN
