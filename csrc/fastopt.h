/* fastopt.h: the whole C interface of fastopt's kernels.
 *
 * Plain C99: no Python headers, no allocation. Callers (fastopt/_kernels.pyx) pass every workspace in,
 * and reach BLAS only through the fo_blas table, which Cython fills from scipy.linalg.cython_blas so
 * that the package links no BLAS of its own.
 *
 * Each section belongs to one concept; keep them in this order.
 */
#ifndef FASTOPT_H
#define FASTOPT_H

#include <stddef.h>
#include <stdint.h>

/* ---------------------------------------------------------------- status codes */
/* Values pinned by tests/test_kernels_interface.py against fastopt._kernels.Status. */
typedef enum {
    FO_OK = 0,
    FO_NONFINITE_LOSS = 1,   /* a loss or gradient became NaN/inf */
    FO_DIVERGED = 2,         /* loss exceeded the divergence threshold */
    FO_BAD_ARGUMENT = 3      /* a precondition the caller should have guaranteed */
} fo_status;

/* ---------------------------------------------------------------- BLAS table */
/* Signatures as in scipy.linalg.cython_blas (Fortran calling convention, all by pointer). */
typedef void (*fo_dgemm_t)(char *, char *, int *, int *, int *, double *, double *, int *, double *, int *,
                           double *, double *, int *);
typedef void (*fo_sgemm_t)(char *, char *, int *, int *, int *, float *, float *, int *, float *, int *,
                           float *, float *, int *);
typedef void (*fo_dsyrk_t)(char *, char *, int *, int *, double *, double *, int *, double *, double *, int *);
typedef void (*fo_ssyrk_t)(char *, char *, int *, int *, float *, float *, int *, float *, float *, int *);
typedef void (*fo_dgemv_t)(char *, int *, int *, double *, double *, int *, double *, int *, double *, double *,
                           int *);
typedef void (*fo_sgemv_t)(char *, int *, int *, float *, float *, int *, float *, int *, float *, float *, int *);
typedef double (*fo_ddot_t)(int *, double *, int *, double *, int *);
typedef float (*fo_sdot_t)(int *, float *, int *, float *, int *);

typedef struct {
    fo_dgemm_t dgemm;
    fo_sgemm_t sgemm;
    fo_dsyrk_t dsyrk;
    fo_ssyrk_t ssyrk;
    fo_dgemv_t dgemv;
    fo_sgemv_t sgemv;
    fo_ddot_t ddot;
    fo_sdot_t sdot;
} fo_blas;

/* ---------------------------------------------------------------- closed form (gram.c) */
/* Weighted, centred sufficient statistics of the augmented matrix Z = [X, Y] (p = d + k columns):
 *   weight = sum_i w_i,  mean = sum_i w_i z_i / weight,  gram = sum_i w_i (z_i - mean)(z_i - mean)^T.
 * Rows are read in blocks; each block is centred on its own mean into the workspace, multiplied by sqrt(w_i),
 * passed to BLAS syrk, and merged into the running moments with the pairwise update of Chan, Golub & LeVeque
 * (1979). All accumulation is in double, whatever the input type. w == NULL means unit weights. */
typedef struct {
    ptrdiff_t n;      /* rows */
    int d;            /* columns of X */
    int k;            /* columns of Y */
    int block;        /* rows per block (> 0) */
} fo_gram_dims;

typedef struct {
    double weight;    /* out: sum of weights */
    double *mean;     /* out: (p,) weighted column means of [X, Y] */
    double *gram;     /* out: (p, p) row-major, symmetric: centred weighted cross-products */
    double *work;     /* workspace: block * p + p doubles */
} fo_moments;

fo_status fo_gram_d(const fo_blas *blas, const double *X, const double *Y, const double *w, fo_gram_dims dims,
                    fo_moments *out);
fo_status fo_gram_s(const fo_blas *blas, const float *X, const float *Y, const float *w, fo_gram_dims dims,
                    fo_moments *out);

/* ---------------------------------------------------------------- optimizers (rules.h, epoch.c) */

#endif /* FASTOPT_H */
