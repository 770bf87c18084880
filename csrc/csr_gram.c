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
