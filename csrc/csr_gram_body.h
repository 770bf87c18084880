/* csr_gram_body.h: the row loop of the sparse closed-form statistics, for one input type.
 *
 * Included twice by csr_gram.c, with FO_REAL (the caller's element type) and FO_CSR_GRAM (the function's name)
 * defined; deliberately without an include guard. See fastopt.h for the contract.
 */
fo_status FO_CSR_GRAM(const FO_REAL *data, const int32_t *indices, const int32_t *indptr, const FO_REAL *Y,
                      const FO_REAL *w, fo_csr_dims dims, fo_moments *out)
{
    const int d = dims.d, k = dims.k, p = d + k;
    if (dims.n < 0 || d < 0 || k < 0 || p == 0) return FO_BAD_ARGUMENT;
    double *mx = out->mean, *my = out->mean + d;
    double *yc = out->work;      /* the row's centred targets: k doubles */
    double *r = out->work + k;   /* sum_i w_i (y_i - my): zero up to round-off, k doubles */
    double weight = 0.0;

    out->weight = 0.0;
    memset(out->mean, 0, (size_t)p * sizeof(double));
    /* The lower triangle (all the passes write; symmetrised at the end), a row at a time with the stop flag read
     * between blocks of rows: at 20,000 columns one memset of the fresh p x p array took 2-17 s (page faults in two
     * threads at once), during which Ctrl-C went unanswered. */
    for (int a = 0; a < p; a++) {
        if ((a & FO_CSR_GRAM_STOP_ROWS) == 0 && fo_stop_requested(dims.stop)) return FO_INTERRUPTED;
        memset(out->gram + (size_t)a * p, 0, (size_t)(a + 1) * sizeof(double));
    }
    memset(r, 0, (size_t)k * sizeof(double));

    /* Pass 1: weight and weighted sums of X (from the nonzeros) and Y; checks the index arrays. */
    for (ptrdiff_t i = 0; i < dims.n; i++) {
        if (fo_stop_requested(dims.stop)) return FO_INTERRUPTED;
        const int32_t lo = indptr[i], len = indptr[i + 1] - indptr[i];
        if (len < 0 || !fo_csr_row_ok(indices + lo, len, d)) return FO_BAD_ARGUMENT;
        const double wi = w ? (double)w[i] : 1.0;
        const FO_REAL *v = data + lo, *y = Y + i * k;
        const int32_t *idx = indices + lo;
        weight += wi;
        for (int32_t t = 0; t < len; t++) mx[idx[t]] += wi * (double)v[t];
        for (int j = 0; j < k; j++) my[j] += wi * (double)y[j];
    }
    if (weight == 0.0) { /* nothing to add: a zero Gram (the zeroed lower triangle copied onto the upper one) */
        memset(out->mean, 0, (size_t)p * sizeof(double));
        return fo_csr_symmetrize(out->gram, p, dims.stop) ? FO_INTERRUPTED : FO_OK;
    }
    for (int j = 0; j < p; j++) out->mean[j] /= weight;

    /* Pass 2: uncentred products of X's nonzeros into the lower triangle (row-major: row ca, columns <= ca),
     * and X^T (Y - my), (Y - my)^T (Y - my) with the target centred exactly first. The triangle's rows are
     * taken in panels [c0, c1) of about FO_CSR_GRAM_PANEL_BYTES, one sweep of the rows each, so that the scattered
     * updates stay in cache (fo_csr_gram_panel_end); each entry still adds its rows' products in row order, so the
     * bits are the same as one sweep's. The targets' rows are filled in the first sweep. */
    double *G = out->gram;
    int c0 = 0, first = 1;
    while (first || c0 < d) {
        const int c1 = fo_csr_gram_panel_end(c0, d);
        for (ptrdiff_t i = 0; i < dims.n; i++) {
            if (fo_stop_requested(dims.stop)) return FO_INTERRUPTED;
            const double wi = w ? (double)w[i] : 1.0;
            if (wi == 0.0) continue; /* zero-weight rows contribute nothing */
            const int32_t lo = indptr[i], len = indptr[i + 1] - indptr[i];
            const FO_REAL *v = data + lo, *y = Y + i * k;
            const int32_t *idx = indices + lo;
            if (first) {
                for (int j = 0; j < k; j++) {
                    yc[j] = (double)y[j] - my[j];
                    r[j] += wi * yc[j];
                }
                for (int32_t a = 0; a < len; a++) {
                    const double va = wi * (double)v[a];
                    for (int j = 0; j < k; j++) G[(size_t)(d + j) * p + idx[a]] += va * yc[j];
                }
                for (int j = 0; j < k; j++) {
                    const double wy = wi * yc[j];
                    double *row = G + (size_t)(d + j) * p + d;
                    for (int l = 0; l <= j; l++) row[l] += wy * yc[l];
                }
            }
            int32_t a = 0;
            while (a < len && idx[a] < c0) a++; /* (sorted: the panel's members are consecutive) */
            for (; a < len && idx[a] < c1; a++) {
                const double va = wi * (double)v[a];
                double *row = G + (size_t)idx[a] * p;
                for (int32_t b = 0; b <= a; b++) row[idx[b]] += va * (double)v[b];
            }
        }
        first = 0;
        c0 = c1;
    }

    /* Centring applied to the p x p result: G_xx - W mx mx^T, G_yx - r mx^T, G_yy - r r^T / W. */
    for (int a = 0; a < d; a++) {
        if ((a & FO_CSR_GRAM_STOP_ROWS) == 0 && fo_stop_requested(dims.stop)) return FO_INTERRUPTED;
        const double wa = weight * mx[a];
        double *row = G + (size_t)a * p;
        for (int b = 0; b <= a; b++) row[b] -= wa * mx[b];
    }
    for (int j = 0; j < k; j++) {
        double *row = G + (size_t)(d + j) * p;
        for (int a = 0; a < d; a++) row[a] -= r[j] * mx[a];
        for (int l = 0; l <= j; l++) row[d + l] -= r[j] * r[l] / weight;
    }
    if (fo_csr_symmetrize(G, p, dims.stop)) return FO_INTERRUPTED;
    out->weight = weight;
    return FO_OK;
}
