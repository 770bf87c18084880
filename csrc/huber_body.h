/* huber_body.h: the fused pass of huber.c for one input type.
 *
 * Included by huber_isa.h with FO_REAL and FO_HUBER_PASS defined: with FO_ISA defined, the row loop for that
 * instruction set; without, the public function. Deliberately without an include guard. See fastopt.h for the
 * contract.
 */

#ifdef FO_ISA
static fo_status FO_CAT(FO_HUBER_PASS, FO_ISA)(const fo_blas *blas, const FO_REAL *X, const double *y,
                                                 const double *s, fo_huber_dims dims, const double *w, double b,
                                                 double eps, const double *centre, const uint8_t *prev,
                                                 uint8_t *mask, double *r_out, double *g, double *dH,
                                                 double *moved, double *work, double *out)
{
    const ptrdiff_t n = dims.n, d = dims.d;
    const int p = dims.p;
    double loss = 0.0, se = 0.0, changed = 0.0, inliers = 0.0;
    double *enter = work, *leave = work + (size_t)FO_HUBER_GATHER * p;
    int n_enter = 0, n_leave = 0;
    memset(g, 0, (size_t)d * sizeof(double));
    if (dH) {
        memset(dH, 0, (size_t)p * p * sizeof(double));
        memset(moved, 0, (size_t)p * sizeof(double));
    }
    const ptrdiff_t d4 = d - d % 4;
    for (ptrdiff_t i = 0; i < n; i += 4) {
        const int nr = n - i < 4 ? (int)(n - i) : 4;
        const FO_REAL *x[4];
        for (int q = 0; q < 4; q++) x[q] = X + (i + (q < nr ? q : 0)) * d; /* short tail: repeat row i, unused */
        double acc[4][4] = {{0.0}};
        for (ptrdiff_t j = 0; j < d4; j += 4)
            for (int q = 0; q < 4; q++)
                for (int l = 0; l < 4; l++) acc[q][l] += (double)x[q][j + l] * w[j + l];
        double e[4] = {0.0, 0.0, 0.0, 0.0};
        for (int q = 0; q < nr; q++) {
            const ptrdiff_t row = i + q;
            double t = (acc[q][0] + acc[q][1]) + (acc[q][2] + acc[q][3]);
            for (ptrdiff_t j = d4; j < d; j++) t += (double)x[q][j] * w[j];
            const double res = t + b - y[row];
            const double a = fabs(res), si = s ? s[row] : 1.0;
            const int in = a <= eps;
            const double psi = in ? res : (res > 0.0 ? eps : -eps);
            r_out[row] = res;
            e[q] = si * psi;
            se += e[q];
            loss += si * (in ? 0.5 * res * res : eps * (a - 0.5 * eps));
            inliers += in;
            if (mask) mask[row] = (uint8_t)in;
            if (!dH || in == (prev ? (int)prev[row] : 0)) continue;
            changed += 1.0;
            if (si == 0.0) continue; /* a weightless row changes nothing */
            /* Gather sqrt(s_i) z_i while the row is in cache. */
            const double sq = sqrt(si);
            double *z = in ? enter + (size_t)n_enter * p : leave + (size_t)n_leave * p;
            for (ptrdiff_t j = 0; j < d; j++) {
                z[j] = sq * ((double)x[q][j] - centre[j]);
                moved[j] += z[j] * z[j];
            }
            if (p > d) {
                z[d] = sq;
                moved[d] += si;
            }
            if (in && ++n_enter == FO_HUBER_GATHER) fo_huber_flush(blas, enter, &n_enter, p, 1.0, dH);
            if (!in && ++n_leave == FO_HUBER_GATHER) fo_huber_flush(blas, leave, &n_leave, p, -1.0, dH);
        }
        for (ptrdiff_t j = 0; j < d; j++)
            g[j] += FO_HUBER_MULADD(e[1], (double)x[1][j], e[0] * (double)x[0][j])
                    + FO_HUBER_MULADD(e[3], (double)x[3][j], e[2] * (double)x[2][j]);
    }
    if (dH) {
        fo_huber_flush(blas, enter, &n_enter, p, 1.0, dH);
        fo_huber_flush(blas, leave, &n_leave, p, -1.0, dH);
        /* syrk wrote the row-major lower triangle: mirror it. */
        for (int j = 0; j < p; j++)
            for (int k = 0; k < j; k++) dH[(size_t)k * p + j] = dH[(size_t)j * p + k];
    }
    out[0] = loss;
    out[1] = se;
    out[2] = changed;
    out[3] = inliers;
    return FO_OK;
}

#else /* the public function of this type */

fo_status FO_HUBER_PASS(const fo_blas *blas, const FO_REAL *X, const double *y, const double *s, fo_huber_dims dims,
                        const double *w, double b, double eps, const double *centre, const uint8_t *prev,
                        uint8_t *mask, double *r, double *g, double *dH, double *moved, double *work, double *out)
{
    if (dims.n < 0 || dims.d < 0 || (dims.p != dims.d && dims.p != dims.d + 1) || dims.p < 1 || !(eps >= 0.0)
        || (dims.n > 0 && dims.d > 0 && X == NULL) || (dH && (moved == NULL || work == NULL || (dims.d > 0 && centre == NULL))))
        return FO_BAD_ARGUMENT;
#if FO_AVX2_DISPATCH
    if (fo_huber_avx2())
        return FO_CAT(FO_HUBER_PASS, avx2)(blas, X, y, s, dims, w, b, eps, centre, prev, mask, r, g, dH, moved, work,
                                           out);
#endif
    return FO_CAT(FO_HUBER_PASS, base)(blas, X, y, s, dims, w, b, eps, centre, prev, mask, r, g, dH, moved, work,
                                       out);
}
#endif
