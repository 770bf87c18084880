/* krylov_body.h: the fused pass of krylov.c for one input type.
 *
 * Included by krylov_isa.h with FO_REAL, FO_KRYLOV_DENSE and FO_KRYLOV_CSR defined: with FO_ISA defined, the
 * dense loop for that instruction set; without, the public functions. Deliberately without an include guard.
 * See fastopt.h for the contract.
 */

#ifdef FO_ISA
/* Dense rows, four at a time: v and z are then loaded once per four rows instead of once per row, halving the
 * traffic to the cache level that holds them (z is 40 KB at d = 5000). Each row's dot product is summed in four
 * lanes (columns j mod 4) added at the end: one vector register per row, with no reassociation left to the
 * compiler. FO_KRYLOV_MULADD(a, b, c) is a * b + c, fused in the AVX2 copy. */
static fo_status FO_CAT(FO_KRYLOV_DENSE, FO_ISA)(const FO_REAL *X, const FO_REAL *y, ptrdiff_t y_stride,
                                                   const double *sw, ptrdiff_t n, ptrdiff_t d, const double *v,
                                                   double c, double shift, double *z, double *zz, double *out)
{
    double ss = 0.0, se = 0.0;
    memset(z, 0, (size_t)d * sizeof(double));
    if (zz) memset(zz, 0, (size_t)d * sizeof(double));
    const ptrdiff_t d4 = d - d % 4;
    ptrdiff_t i = 0;
    for (; i < n; i += 4) {
        const int nr = n - i < 4 ? (int)(n - i) : 4;
        const FO_REAL *x[4];
        for (int r = 0; r < 4; r++) x[r] = X + (i + (r < nr ? r : 0)) * d; /* short tail: repeat row i, unused */
        double p[4][4] = {{0.0}};
        for (ptrdiff_t j = 0; j < d4; j += 4)
            for (int r = 0; r < 4; r++)
                for (int l = 0; l < 4; l++) p[r][l] += (double)x[r][j + l] * v[j + l];
        double t[4], e[4];
        for (int r = 0; r < 4; r++) {
            t[r] = (p[r][0] + p[r][1]) + (p[r][2] + p[r][3]);
            for (ptrdiff_t j = d4; j < d; j++) t[r] += (double)x[r][j] * v[j];
            e[r] = 0.0;
        }
        for (int r = 0; r < nr; r++) {
            const double s = sw ? sw[i + r] : 1.0;
            const double a = s * (t[r] + (y ? c * (double)y[(i + r) * y_stride] : 0.0) - shift);
            ss += a * a;
            e[r] = s * a;
            se += e[r];
        }
        for (ptrdiff_t j = 0; j < d; j++)
            z[j] += FO_KRYLOV_MULADD(e[1], (double)x[1][j], e[0] * (double)x[0][j])
                    + FO_KRYLOV_MULADD(e[3], (double)x[3][j], e[2] * (double)x[2][j]);
        if (zz)
            for (int r = 0; r < nr; r++)
                for (ptrdiff_t j = 0; j < d; j++) zz[j] += e[r] * ((double)x[r][j] * (double)x[r][j]);
    }
    out[0] = ss;
    out[1] = se;
    return FO_OK;
}

#else /* the public functions of this type */

fo_status FO_KRYLOV_DENSE(const FO_REAL *X, const FO_REAL *y, ptrdiff_t y_stride, const double *sw,
                          ptrdiff_t n, ptrdiff_t d, const double *v, double c, double shift, double *z,
                          double *zz, double *out)
{
    if (n < 0 || d < 0 || (n > 0 && d > 0 && X == NULL)) return FO_BAD_ARGUMENT;
#if FO_AVX2_DISPATCH
    if (fo_krylov_avx2()) return FO_CAT(FO_KRYLOV_DENSE, avx2)(X, y, y_stride, sw, n, d, v, c, shift, z, zz, out);
#endif
    return FO_CAT(FO_KRYLOV_DENSE, base)(X, y, y_stride, sw, n, d, v, c, shift, z, zz, out);
}

/* The dot product of CSR row i with v, in four partial sums (entries p mod 4 from the row's start) added at the
 * end: a single running sum would make every row wait out a chain of as many dependent additions as it has
 * nonzeros. */
static inline double FO_CAT(FO_KRYLOV_CSR, row_dot)(const FO_REAL *data, const int32_t *indices, int32_t p0,
                                                    int32_t p1, const double *v)
{
    double t0 = 0.0, t1 = 0.0, t2 = 0.0, t3 = 0.0;
    int32_t p = p0;
    for (; p + 4 <= p1; p += 4) {
        t0 += (double)data[p] * v[indices[p]];
        t1 += (double)data[p + 1] * v[indices[p + 1]];
        t2 += (double)data[p + 2] * v[indices[p + 2]];
        t3 += (double)data[p + 3] * v[indices[p + 3]];
    }
    for (; p < p1; p++) t0 += (double)data[p] * v[indices[p]];
    return (t0 + t1) + (t2 + t3);
}

/* CSR rows, in blocks of at most FO_KRYLOV_BLOCK rows and FO_KRYLOV_BLOCK_NNZ entries: first every row's dot
 * product with v (the gathers), then every row's scatter into z, while the block's data and indices are still in
 * L1/L2, so X is read from memory once. Two plain sweeps over a block let the processor overlap the accesses at
 * random columns across rows (measured 1.4x faster than dotting and scattering one row at a time, which
 * serialised each row's scatter behind its dot product, on the hashed benchmark; block sizes: see krylov.c). On a
 * CPU with 2 MiB of L2 per core the random columns are not what bounds the pass: the same rows over d = 2^14
 * columns (vectors resident in L2) cost 0.99x (one thread) and 0.80x (two) what they cost over 2^18: the
 * per-entry work and the read of X do.
 * indptr holds absolute offsets into data/indices (a segment passes a slice of indptr). */
fo_status FO_KRYLOV_CSR(const FO_REAL *data, const int32_t *indices, const int32_t *indptr, const FO_REAL *y,
                        ptrdiff_t y_stride, const double *sw, ptrdiff_t n, ptrdiff_t d, const double *v, double c,
                        double shift, double *z, double *zz, double *out)
{
    if (n < 0 || d < 0) return FO_BAD_ARGUMENT;
    double ss = 0.0, se = 0.0;
    double e[FO_KRYLOV_BLOCK];
    memset(z, 0, (size_t)d * sizeof(double));
    if (zz) memset(zz, 0, (size_t)d * sizeof(double));
    for (ptrdiff_t i0 = 0, nb = 0; i0 < n; i0 += nb) {
        /* Up to FO_KRYLOV_BLOCK rows and FO_KRYLOV_BLOCK_NNZ stored entries (at least one row). */
        nb = 1;
        while (nb < FO_KRYLOV_BLOCK && i0 + nb < n && indptr[i0 + nb + 1] - indptr[i0] <= FO_KRYLOV_BLOCK_NNZ) nb++;
        for (ptrdiff_t r = 0; r < nb; r++) {
            const ptrdiff_t i = i0 + r;
            const double t = FO_CAT(FO_KRYLOV_CSR, row_dot)(data, indices, indptr[i], indptr[i + 1], v);
            const double s = sw ? sw[i] : 1.0;
            const double a = s * (t + (y ? c * (double)y[i * y_stride] : 0.0) - shift);
            e[r] = s * a;
            ss += a * a;
            se += e[r];
        }
        for (ptrdiff_t r = 0; r < nb; r++) {
            const ptrdiff_t i = i0 + r;
            const double er = e[r];
            if (er == 0.0) continue;
            for (int32_t p = indptr[i]; p < indptr[i + 1]; p++) z[indices[p]] += er * (double)data[p];
            if (zz)
                for (int32_t p = indptr[i]; p < indptr[i + 1]; p++)
                    zz[indices[p]] += er * ((double)data[p] * (double)data[p]);
        }
    }
    out[0] = ss;
    out[1] = se;
    return FO_OK;
}

/* The moments of CSR rows in one read (see fastopt.h): no product with a vector is needed (the passes of
 * chunk_moments had v = 0), so the rows are only scattered, each stored entry into one row of Z: its 2 + k values
 * are adjacent, one cache line at a random column where the 1 + k separate passes touched 2 + k. Each value is
 * formed exactly as those passes formed it (e = s (s (0 + y - shift)) is s (s (y - shift)); e0 = s (s 1)), and
 * every column is summed in row order, so the moments are bit for bit those of the separate passes. */
fo_status FO_KRYLOV_MOMENTS_CSR(const FO_REAL *data, const int32_t *indices, const int32_t *indptr,
                                const FO_REAL *Y, ptrdiff_t k, const double *sw, ptrdiff_t n, ptrdiff_t d,
                                const double *shift, double *Z, double *e, double *out)
{
    if (n < 0 || d < 0 || k < 0) return FO_BAD_ARGUMENT;
    const ptrdiff_t w = 2 + k;
    memset(Z, 0, (size_t)(d * w) * sizeof(double));
    for (ptrdiff_t j = 0; j < 2 * k; j++) out[j] = 0.0;
    for (ptrdiff_t i = 0; i < n; i++) {
        const double s = sw ? sw[i] : 1.0, e0 = s * s;
        for (ptrdiff_t j = 0; j < k; j++) {
            const double a = s * ((double)Y[i * k + j] - shift[j]);
            e[j] = s * a;
            out[2 * j] += a * a;
            out[2 * j + 1] += e[j];
        }
        if (k == 1) { /* the common case, without the inner loop */
            const double e1 = e[0];
            for (int32_t p = indptr[i]; p < indptr[i + 1]; p++) {
                const double x = (double)data[p];
                double *restrict zc = Z + (ptrdiff_t)indices[p] * 3;
                zc[0] += e0 * x;
                zc[1] += e0 * (x * x);
                zc[2] += e1 * x;
            }
        } else
            for (int32_t p = indptr[i]; p < indptr[i + 1]; p++) {
                const double x = (double)data[p];
                double *restrict zc = Z + (ptrdiff_t)indices[p] * w;
                zc[0] += e0 * x;
                zc[1] += e0 * (x * x);
                for (ptrdiff_t j = 0; j < k; j++) zc[2 + j] += e[j] * x;
            }
    }
    return FO_OK;
}
#endif
