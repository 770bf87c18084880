/* block_mean.h: pass 1 of the closed-form block loops (gram_body.h, tsqr_body.h), for one input type.
 *
 * Included once per type by gram.c and tsqr.c, before their body header, with FO_REAL (the element type) and
 * FO_BLOCK_MEAN (the function's name) defined; deliberately without an include guard.
 *
 * Reads rows [i0, i0 + nb) of Z = [X, Y] from memory and returns their weight wb = sum_i w_i; mb (p doubles)
 * receives their weighted mean when wb > 0 (it is left unnormalised otherwise, and the caller skips the block).
 */
static double FO_BLOCK_MEAN(const FO_REAL *X, const FO_REAL *Y, const FO_REAL *w, ptrdiff_t i0, int nb, int d,
                            int k, double *mb)
{
    const int p = d + k;
    double wb = 0.0;
    memset(mb, 0, (size_t)p * sizeof(double));
    for (int r = 0; r < nb; r++) {
        const ptrdiff_t i = i0 + r;
        const double wi = w ? (double)w[i] : 1.0;
        const FO_REAL *x = X + i * d, *y = Y + i * k;
        wb += wi;
        for (int j = 0; j < d; j++) mb[j] += wi * (double)x[j];
        for (int j = 0; j < k; j++) mb[d + j] += wi * (double)y[j];
    }
    if (wb != 0.0)
        for (int j = 0; j < p; j++) mb[j] /= wb;
    return wb;
}
