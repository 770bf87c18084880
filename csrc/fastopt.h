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

/* ---------------------------------------------------------------- optimizers (rules.h, epoch.c) */

#endif /* FASTOPT_H */
