/* csr_gram.c: closed-form statistics of a sparse (CSR) X, from its nonzeros.
 *
 * The contract is in fastopt.h's sparse closed-form section. The row loop, which reads the caller's float or
 * double values, is written once in csr_gram_body.h and compiled twice below. Everything is accumulated in
 * double, whatever the input type (as gram.c does, for the same reason).
 *
 * Why not SciPy's X.T @ X: the sparse-sparse product builds a sparse result (index arrays, a sort, a second
 * pass) that is dense anyway for d up to a few thousand, then densifies it; accumulating the row outer products
 * straight into a dense triangle does only the multiply-adds (measured in bench/test_sparse_closed_form.py).
 */
#include <string.h>

#include "fastopt.h"

/* Rows between reads of the stop flag in the O(p^2) loops outside the row passes (a power of two, less one: a mask). */
#define FO_CSR_GRAM_STOP_ROWS 63

/* Copy the computed triangle (row-major lower) onto the other so callers get a plain symmetric matrix; 1 if
 * stopped (the stop flag is read between blocks of rows). */
static int fo_csr_symmetrize(double *gram, int p, const int32_t *stop)
{
    for (int j = 0; j < p; j++) {
        if ((j & FO_CSR_GRAM_STOP_ROWS) == 0 && fo_stop_requested(stop)) return 1;
        for (int i = 0; i < j; i++) gram[(size_t)i * p + j] = gram[(size_t)j * p + i];
    }
    return 0;
}

/* Bytes of the lower triangle's rows a sweep of the rows updates (csr_gram_body.h's pass 2), and the most sweeps.
 * One sweep over a triangle beyond the cache missed it at every scattered update: 500,000 CSR rows of 20 values,
 * two threads, 6e-10 s an update up to 1,000 columns (a 4 MB triangle), 3e-9 at 2,000 and 3.6-4.9e-9 from 3,000.
 * Panels of 4 MB against one sweep, 300,000 such rows, two rounds alternated on a loaded machine: 2,000 columns
 * 0.29 / 0.20 s against 1.1 / 0.66 s, 3,000 0.40 / 0.36 against 1.1 / 0.78, 4,000 0.43 / 0.62 against 1.6 / 0.72;
 * at 6,000 (36 sweeps of 4 MB) 1.1 / 1.4 against 1.6 / 0.97, hence the cap (panels of 1 MB: slower beyond 2,000). */
#define FO_CSR_GRAM_PANEL_BYTES ((size_t)1 << 22)
#define FO_CSR_GRAM_MAX_SWEEPS 16

/* The end of the panel of triangle rows starting at c0 (at most d, at least c0 + 1): rows [c0, c1) hold about
 * (c1^2 - c0^2) / 2 doubles. The whole triangle when it fits. */
static int fo_csr_gram_panel_end(int c0, int d)
{
    const size_t whole = (size_t)d * (size_t)d * 4, per_sweep = whole / FO_CSR_GRAM_MAX_SWEEPS;
    if (whole <= FO_CSR_GRAM_PANEL_BYTES) return d;
    const size_t panel = per_sweep > FO_CSR_GRAM_PANEL_BYTES ? per_sweep : FO_CSR_GRAM_PANEL_BYTES;
    int c1 = c0 + 1;
    while (c1 < d && ((size_t)c1 * c1 - (size_t)c0 * c0) * 4 < panel) c1++;
    return c1;
}

/* Row indices must be strictly increasing (canonical CSR: sorted, no duplicates) and inside [0, d): the
 * triangle update relies on the first, memory safety on the second. One comparison per nonzero. */
static int fo_csr_row_ok(const int32_t *idx, int32_t len, int d)
{
    int32_t prev = -1;
    for (int32_t t = 0; t < len; t++) {
        if (idx[t] <= prev || idx[t] >= d) return 0;
        prev = idx[t];
    }
    return 1;
}

#define FO_REAL double
#define FO_CSR_GRAM fo_csr_gram_d
#include "csr_gram_body.h"
#undef FO_REAL
#undef FO_CSR_GRAM

#define FO_REAL float
#define FO_CSR_GRAM fo_csr_gram_s
#include "csr_gram_body.h"
#undef FO_REAL
#undef FO_CSR_GRAM
