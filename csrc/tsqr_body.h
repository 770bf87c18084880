/* tsqr_body.h: the block loop of the blockwise QR, for one input type.
 *
 * Included twice by tsqr.c, with FO_REAL (the caller's element type) and FO_TSQR (the function's name) defined;
 * deliberately without an include guard. See fastopt.h for the contract.
 */
fo_status FO_TSQR(const fo_lapack *lapack, const FO_REAL *X, const FO_REAL *Y, const FO_REAL *w, fo_gram_dims dims,
                  fo_factor *out)
{
    int d = dims.d, k = dims.k, p = d + k;
    if (dims.n < 0 || d < 0 || k < 0 || p == 0 || dims.block <= 0) return FO_BAD_ARGUMENT;
    int ib = fo_tsqr_ib(p), ldb = dims.block + 1, zero = 0, info = 0;
    double *B = out->work;                          /* block rows + correction row: ldb x p, column-major */
    double *T = B + (size_t)ldb * p;                /* dtpqrt's block reflector factors: ib x p */
    double *lwork = T + (size_t)ib * p;             /* dtpqrt's workspace: ib x p */
    double *mb = lwork + (size_t)ib * p;            /* the block's weighted mean */

    out->weight = 0.0;
    memset(out->mean, 0, (size_t)p * sizeof(double));
    memset(out->r, 0, (size_t)p * p * sizeof(double));

    const int first = dims.block < FO_TSQR_FIRST_ROWS ? dims.block : FO_TSQR_FIRST_ROWS;
    for (ptrdiff_t i0 = 0, step = first; i0 < dims.n; i0 += step, step = dims.block) {
        if (fo_stop_requested(dims.stop)) return FO_INTERRUPTED;
        int nb = (int)(dims.n - i0 < step ? dims.n - i0 : step);
        /* Pass 1 (reads the block from memory): weight and weighted mean of the block. */
        const double wb = FO_BLOCK_MEAN(X, Y, w, i0, nb, d, k, mb);
        if (wb == 0.0) continue; /* zero-weight rows contribute nothing */

        /* Pass 2 (the block is now in cache): centre on the block mean and scale by sqrt(w) in double, written
         * column-major for LAPACK. */
        for (int r = 0; r < nb; r++) {
            const ptrdiff_t i = i0 + r;
            const double s = w ? sqrt((double)w[i]) : 1.0;
            const FO_REAL *x = X + i * d, *y = Y + i * k;
            for (int j = 0; j < d; j++) B[(size_t)j * ldb + r] = s * ((double)x[j] - mb[j]);
            for (int j = 0; j < k; j++) B[(size_t)(d + j) * ldb + r] = s * ((double)y[j] - mb[d + j]);
        }
        int m = nb;
        const double wa = out->weight, wab = wa + wb;
        if (wa > 0.0) { /* the mean correction row (see tsqr.c) */
            const double sf = sqrt(wa * (wb / wab));  /* not wa * wb / wab: the product under- or overflows */
            for (int j = 0; j < p; j++) B[(size_t)j * ldb + nb] = sf * (mb[j] - out->mean[j]);
            m = nb + 1;
        }

        if (wa == 0.0) {
            /* The first block, R still zero: R := the triangle of QR(B) by dgeqrf. dtpqrt on [0; B] would be the
             * same in exact arithmetic, but with a zero diagonal every reflector degenerates to tau = 1 (modified
             * Gram-Schmidt on B, Bjorck & Paige 1992): just as stable, yet it rounded differently enough to cost
             * NIST's Wampler3 half a digit against LAPACK's Householder QR of the block (9.3 against 9.8). */
            int lw = ib * p;
            lapack->dgeqrf(&m, &p, B, &ldb, T, lwork, &lw, &info);
            if (info != 0) return FO_BAD_ARGUMENT;
            for (int j = 0; j < p; j++)
                for (int i = 0; i <= j && i < m; i++) out->r[(size_t)j * p + i] = B[(size_t)j * ldb + i];
        } else {
            /* R := the triangle of QR([R; B]); B is rectangular (l = 0). */
            lapack->dtpqrt(&m, &p, &zero, &ib, out->r, &p, B, &ldb, T, &ib, lwork, &info);
            if (info != 0) return FO_BAD_ARGUMENT;
        }

        const double g = wb / wab;
        for (int j = 0; j < p; j++) out->mean[j] += g * (mb[j] - out->mean[j]);
        out->weight = wab;
    }
    fo_tsqr_finish(out->r, p);
    return FO_OK;
}
