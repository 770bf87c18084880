# C declarations of csrc/fastopt.h, for fastopt/_kernels.pyx.
cdef extern from "fastopt.h" nogil:
    ctypedef enum fo_status:
        FO_OK
        FO_NONFINITE_LOSS
        FO_DIVERGED
        FO_BAD_ARGUMENT

    ctypedef void (*fo_dgemm_t)(char *, char *, int *, int *, int *, double *, double *, int *, double *, int *,
                                double *, double *, int *) noexcept nogil
    ctypedef void (*fo_sgemm_t)(char *, char *, int *, int *, int *, float *, float *, int *, float *, int *,
                                float *, float *, int *) noexcept nogil
    ctypedef void (*fo_dsyrk_t)(char *, char *, int *, int *, double *, double *, int *, double *, double *,
                                int *) noexcept nogil
    ctypedef void (*fo_ssyrk_t)(char *, char *, int *, int *, float *, float *, int *, float *, float *,
                                int *) noexcept nogil
    ctypedef void (*fo_dgemv_t)(char *, int *, int *, double *, double *, int *, double *, int *, double *,
                                double *, int *) noexcept nogil
    ctypedef void (*fo_sgemv_t)(char *, int *, int *, float *, float *, int *, float *, int *, float *, float *,
                                int *) noexcept nogil
    ctypedef double (*fo_ddot_t)(int *, double *, int *, double *, int *) noexcept nogil
    ctypedef float (*fo_sdot_t)(int *, float *, int *, float *, int *) noexcept nogil

    ctypedef struct fo_blas:
        fo_dgemm_t dgemm
        fo_sgemm_t sgemm
        fo_dsyrk_t dsyrk
        fo_ssyrk_t ssyrk
        fo_dgemv_t dgemv
        fo_sgemv_t sgemv
        fo_ddot_t ddot
        fo_sdot_t sdot

    # ------------------------------------------------------------ closed form (gram.c)
    ctypedef struct fo_gram_dims:
        Py_ssize_t n
        int d
        int k
        int block

    ctypedef struct fo_moments:
        double weight
        double *mean
        double *gram
        double *work

    fo_status fo_gram_d(const fo_blas *blas, const double *X, const double *Y, const double *w, fo_gram_dims dims,
                        fo_moments *out)
    fo_status fo_gram_s(const fo_blas *blas, const float *X, const float *Y, const float *w, fo_gram_dims dims,
                        fo_moments *out)

    # ------------------------------------------------------------ optimizers (rules.h, epoch.c)
