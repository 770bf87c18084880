/* gram_body.h: the block loop of the closed-form statistics, for one input type.
 *
 * Included twice by gram.c, with FO_REAL (the caller's element type) and FO_GRAM (the function's name) defined;
 * deliberately without an include guard. See fastopt.h for the contract.
 */
fo_status FO_GRAM(const fo_blas *blas, const FO_REAL *X, const FO_REAL *Y, const FO_REAL *w, fo_gram_dims dims,
                  fo_moments *out)
{
    int d = dims.d, k = dims.k, p = d + k;
    if (dims.n < 0 || d < 0 || k < 0 || p == 0 || dims.block <= 0) return FO_BAD_ARGUMENT;
    double *Z = out->work;                           /* block rows, centred and scaled: nb x p, row-major */
    double *mb = out->work + (size_t)dims.block * p; /* the block's weighted mean */
    char uplo = 'U', trans = 'N';
    double one = 1.0;

    out->weight = 0.0;
    memset(out->mean, 0, (size_t)p * sizeof(double));
    memset(out->gram, 0, (size_t)p * p * sizeof(double));

    for (ptrdiff_t i0 = 0; i0 < dims.n; i0 += dims.block) {
        if (fo_stop_requested(dims.stop)) return FO_INTERRUPTED;
        int nb = (int)(dims.n - i0 < dims.block ? dims.n - i0 : dims.block);
        /* Pass 1 (reads the block from memory): weight and weighted mean of the block. */
        const double wb = FO_BLOCK_MEAN(X, Y, w, i0, nb, d, k, mb);
        if (wb == 0.0) continue; /* zero-weight rows contribute nothing */

        /* Pass 2 (the block is now in cache): centre on the block mean, scale by sqrt(w), in double. Centring per
         * block keeps the cross-products small even when a column's mean dwarfs its spread. */
        for (int r = 0; r < nb; r++) {
            const ptrdiff_t i = i0 + r;
            const double s = w ? sqrt((double)w[i]) : 1.0;
            const FO_REAL *x = X + i * d, *y = Y + i * k;
            double *z = Z + (size_t)r * p;
            for (int j = 0; j < d; j++) z[j] = s * ((double)x[j] - mb[j]);
            for (int j = 0; j < k; j++) z[d + j] = s * ((double)y[j] - mb[d + j]);
        }

        /* Column-major, Z is p x nb with leading dimension p, so Z Z^T is the block's centred Gram. */
        blas->dsyrk(&uplo, &trans, &p, &nb, &one, Z, &p, &one, out->gram, &p);
        fo_merge_block(out, p, wb, mb);
    }
    fo_symmetrize(out->gram, p);
    return FO_OK;
}
