/* gram.c: blockwise sufficient statistics for the closed form.
 *
 * The statistics are those of fastopt.h's closed-form section. The type-independent steps (the pairwise merge,
 * the final symmetrisation) live here; the block loop, which reads the caller's float or double rows, is written
 * once in gram_body.h and compiled twice below with FO_REAL set to each input type. Accumulation is in double
 * for both: a float32 Gram summed in float32 over 10^6 rows would lose about half of its 7 digits before the
 * solve even starts, while converting a block to double in cache costs almost nothing next to syrk.
 */
#include <math.h>
#include <string.h>

#include "fastopt.h"

/* Pairwise merge (Chan, Golub & LeVeque 1979) of a block's moments into the running ones. The caller has already
 * added the block's centred cross-products to out->gram with syrk; what remains is the correction for the two
 * means differing, (w_a w_b / (w_a + w_b)) delta delta^T with delta = mean_b - mean_a, and the new mean. Only the
 * triangle that syrk writes (column-major upper = row-major lower) is updated. */
static void fo_merge_block(fo_moments *out, int p, double wb, const double *mb)
{
    const double wa = out->weight, wab = wa + wb;
    /* w_a (w_b / w_ab), not w_a w_b / w_ab: the product of two tiny (or huge) weights under- (over-)flows. */
    const double g = wb / wab, f = wa * g;
    double *delta = out->work;  /* the block's rows are no longer needed: reuse the workspace */
    for (int j = 0; j < p; j++) delta[j] = mb[j] - out->mean[j];
    if (wa > 0.0) {
        for (int j = 0; j < p; j++) {
            const double fj = f * delta[j];
            double *row = out->gram + (size_t)j * p;
            for (int i = 0; i <= j; i++) row[i] += fj * delta[i];
        }
    }
    for (int j = 0; j < p; j++) out->mean[j] += g * delta[j];
    out->weight = wab;
}

/* Copy the computed triangle onto the other so callers get a plain symmetric matrix. */
static void fo_symmetrize(double *gram, int p)
{
    for (int j = 0; j < p; j++)
        for (int i = 0; i < j; i++) gram[(size_t)i * p + j] = gram[(size_t)j * p + i];
}

#define FO_REAL double
#define FO_GRAM fo_gram_d
#define FO_BLOCK_MEAN fo_block_mean_d
#include "block_mean.h"
#include "gram_body.h"
#undef FO_REAL
#undef FO_GRAM
#undef FO_BLOCK_MEAN

#define FO_REAL float
#define FO_GRAM fo_gram_s
#define FO_BLOCK_MEAN fo_block_mean_s
#include "block_mean.h"
#include "gram_body.h"
#undef FO_REAL
#undef FO_GRAM
#undef FO_BLOCK_MEAN
