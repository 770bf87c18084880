# C declarations of csrc/fastopt.h, for fastopt/_kernels.pyx.
from libc.stdint cimport int32_t, int64_t, uint8_t, uint64_t

cdef extern from "fastopt.h" nogil:
    ctypedef enum fo_status:
        FO_OK
        FO_NONFINITE_LOSS
        FO_DIVERGED
        FO_BAD_ARGUMENT
        FO_INTERRUPTED

    ctypedef void (*fo_dsyrk_t)(char *, char *, int *, int *, double *, double *, int *, double *, double *,
                                int *) noexcept nogil

    ctypedef struct fo_blas:
        fo_dsyrk_t dsyrk

    # ------------------------------------------------------------ closed form (gram.c)
    ctypedef struct fo_gram_dims:
        Py_ssize_t n
        int d
        int k
        int block
        const int32_t *stop

    ctypedef struct fo_moments:
        double weight
        double *mean
        double *gram
        double *work

    fo_status fo_gram_d(const fo_blas *blas, const double *X, const double *Y, const double *w, fo_gram_dims dims,
                        fo_moments *out)
    fo_status fo_gram_s(const fo_blas *blas, const float *X, const float *Y, const float *w, fo_gram_dims dims,
                        fo_moments *out)

    # ------------------------------------------------------------ closed form: R factor (tsqr.c)
    ctypedef void (*fo_dtpqrt_t)(int *, int *, int *, int *, double *, int *, double *, int *, double *, int *,
                                 double *, int *) noexcept nogil

    ctypedef void (*fo_dgeqrf_t)(int *, int *, double *, int *, double *, double *, int *, int *) noexcept nogil

    ctypedef struct fo_lapack:
        fo_dtpqrt_t dtpqrt
        fo_dgeqrf_t dgeqrf

    ctypedef struct fo_factor:
        double weight
        double *mean
        double *r
        double *work

    Py_ssize_t fo_tsqr_work_size(int p, int block)
    fo_status fo_tsqr_d(const fo_lapack *lapack, const double *X, const double *Y, const double *w,
                        fo_gram_dims dims, fo_factor *out)
    fo_status fo_tsqr_s(const fo_lapack *lapack, const float *X, const float *Y, const float *w,
                        fo_gram_dims dims, fo_factor *out)

    # ------------------------------------------------------------ sparse closed form (csr_gram.c)
    ctypedef struct fo_csr_dims:
        Py_ssize_t n
        int d
        int k
        const int32_t *stop

    fo_status fo_csr_gram_d(const double *data, const int32_t *indices, const int32_t *indptr, const double *Y,
                            const double *w, fo_csr_dims dims, fo_moments *out)
    fo_status fo_csr_gram_s(const float *data, const int32_t *indices, const int32_t *indptr, const float *Y,
                            const float *w, fo_csr_dims dims, fo_moments *out)

    # ------------------------------------------------------------ optimizers (rules.h, epoch.c)
    ctypedef enum fo_rule:
        FO_RULE_SGD
        FO_RULE_MOMENTUM
        FO_RULE_NESTEROV
        FO_RULE_ADAGRAD
        FO_RULE_RMSPROP
        FO_RULE_ADAM
        FO_RULE_ADAMW

    ctypedef enum fo_loss:
        FO_LOSS_SQUARED
        FO_LOSS_ABSOLUTE
        FO_LOSS_HUBER

    ctypedef struct fo_hyper:
        double momentum
        double dampening
        double rho
        double beta1
        double beta2
        double eps
        double weight_decay
        double lr_decay
        int centered
        int amsgrad

    int FO_MAX_SLOTS

    ctypedef struct fo_epoch_ctl:
        const int64_t *order
        Py_ssize_t n_rows
        Py_ssize_t batch_size
        fo_loss loss
        double epsilon
        double clip_norm
        double loss_limit
        double lr
        int64_t t
        double loss_out
        int64_t bad_step
        double loss_sum
        int64_t rows_before
        int positive
        int64_t avg_start
        void *avg
        const void *decay
        int decay_every_step
        Py_ssize_t pad_rows

    fo_status fo_step_d(fo_rule rule, const fo_hyper *h, double *params, const double *grad, double *state,
                        Py_ssize_t n, Py_ssize_t n_decay, int64_t t, double lr)
    fo_status fo_step_s(fo_rule rule, const fo_hyper *h, float *params, const float *grad, float *state,
                        Py_ssize_t n, Py_ssize_t n_decay, int64_t t, double lr)
    double fo_clip_grad_norm_d(double *grad, Py_ssize_t n, double max_norm)
    double fo_clip_grad_norm_s(float *grad, Py_ssize_t n, double max_norm)
    double fo_mean_loss_zero_d(const double *Y, Py_ssize_t k, const int64_t *rows, Py_ssize_t m, const double *sw,
                               fo_loss loss, double epsilon) nogil
    double fo_mean_loss_zero_s(const float *Y, Py_ssize_t k, const int64_t *rows, Py_ssize_t m, const float *sw,
                               fo_loss loss, double epsilon) nogil
    ctypedef enum fo_isa:
        FO_ISA_BASELINE
        FO_ISA_AVX2
    int fo_isa_get() nogil
    int fo_isa_set(int isa) nogil
    ctypedef struct fo_team:
        int isa
        void *h_params
        void *h_state
        Py_ssize_t h_state_len
        int64_t solo_step
        int64_t went_solo
        int64_t rejoined
    Py_ssize_t fo_work_size(Py_ssize_t n_params, Py_ssize_t k, size_t itemsize, int team)
    fo_status fo_epoch_d(fo_rule rule, const fo_hyper *h, fo_epoch_ctl *ctl, const double *X, const double *Y,
                         const double *sw, Py_ssize_t d, Py_ssize_t k, double *params, Py_ssize_t n_params,
                         double *state, double *work, fo_team *team)
    fo_status fo_epoch_s(fo_rule rule, const fo_hyper *h, fo_epoch_ctl *ctl, const float *X, const float *Y,
                         const float *sw, Py_ssize_t d, Py_ssize_t k, float *params, Py_ssize_t n_params,
                         float *state, float *work, fo_team *team)
    fo_status fo_epoch_helper_d(fo_rule rule, const fo_hyper *h, fo_epoch_ctl *ctl, const double *X,
                                const double *Y, const double *sw, Py_ssize_t d, Py_ssize_t k, double *params,
                                Py_ssize_t n_params, double *state, double *work, fo_team *team)
    fo_status fo_epoch_helper_s(fo_rule rule, const fo_hyper *h, fo_epoch_ctl *ctl, const float *X,
                                const float *Y, const float *sw, Py_ssize_t d, Py_ssize_t k, float *params,
                                Py_ssize_t n_params, float *state, float *work, fo_team *team)

    # ------------------------------------------------------------ sparse epoch (epoch_csr.c)
    enum: FO_CSR_PIPE_BLOCKS
    ctypedef struct fo_csr_block:
        void *s_data
        void *s_y
        void *s_sw
        int32_t *s_ind
        int32_t *s_ptr
        int32_t *s_pos
        int32_t *touched
        int32_t *t_off
    ctypedef struct fo_csr_pipe:
        fo_csr_block block[FO_CSR_PIPE_BLOCKS]
        Py_ssize_t cap
        void *slots
        int scatter
        int fixed
        int64_t period
        Py_ssize_t stage_cap
        int64_t solo_block
        int64_t went_solo
        int64_t rejoined
        int64_t paced
        int64_t stalls
        int64_t slow_ns
        int64_t carry
    ctypedef struct fo_csr_pace:
        int measured
        double alone
    int fo_csr_pace_block(fo_csr_pace *pace, int piped, int64_t values, int64_t waited, int64_t now) nogil
    int fo_csr_scatter(fo_rule rule, const fo_hyper *h, const fo_epoch_ctl *ctl, int lazy, Py_ssize_t k) nogil
    int fo_csr_pipe_available() nogil
    void fo_csr_produce_d(fo_csr_pipe *pipe, const fo_epoch_ctl *ctl, Py_ssize_t d, Py_ssize_t k, const double *data,
                          const int32_t *indices, const int32_t *indptr, const double *Y, const double *sw) nogil
    void fo_csr_produce_s(fo_csr_pipe *pipe, const fo_epoch_ctl *ctl, Py_ssize_t d, Py_ssize_t k, const float *data,
                          const int32_t *indices, const int32_t *indptr, const float *Y, const float *sw) nogil
    fo_status fo_epoch_csr_piped_d(fo_csr_pipe *pipe, fo_rule rule, const fo_hyper *h, fo_epoch_ctl *ctl, int lazy,
                                   const double *data, const int32_t *indices, const int32_t *indptr,
                                   const double *Y, const double *sw, Py_ssize_t d, Py_ssize_t k, double *params,
                                   Py_ssize_t n_params, double *state, Py_ssize_t n_slots, double *work,
                                   int64_t *iwork, double *table) nogil
    fo_status fo_epoch_csr_piped_s(fo_csr_pipe *pipe, fo_rule rule, const fo_hyper *h, fo_epoch_ctl *ctl, int lazy,
                                   const float *data, const int32_t *indices, const int32_t *indptr,
                                   const float *Y, const float *sw, Py_ssize_t d, Py_ssize_t k, float *params,
                                   Py_ssize_t n_params, float *state, Py_ssize_t n_slots, float *work,
                                   int64_t *iwork, double *table) nogil
    Py_ssize_t fo_csr_stage_rows(Py_ssize_t batch_size)
    Py_ssize_t fo_csr_work_size(Py_ssize_t n_params, Py_ssize_t k, Py_ssize_t batch_size, Py_ssize_t stage_cap)
    Py_ssize_t fo_csr_iwork_size(Py_ssize_t d, Py_ssize_t batch_size, Py_ssize_t stage_cap)
    Py_ssize_t fo_csr_table_size(Py_ssize_t n_rows, Py_ssize_t batch_size, int64_t period)
    fo_status fo_epoch_csr_d(fo_rule rule, const fo_hyper *h, fo_epoch_ctl *ctl, int lazy, const double *data,
                             const int32_t *indices, const int32_t *indptr, const double *Y, const double *sw,
                             Py_ssize_t d, Py_ssize_t k, double *params, Py_ssize_t n_params, double *state,
                             Py_ssize_t n_slots, double *work, int64_t *iwork, double *table, Py_ssize_t stage_cap,
                             int64_t period)
    fo_status fo_epoch_csr_s(fo_rule rule, const fo_hyper *h, fo_epoch_ctl *ctl, int lazy, const float *data,
                             const int32_t *indices, const int32_t *indptr, const float *Y, const float *sw,
                             Py_ssize_t d, Py_ssize_t k, float *params, Py_ssize_t n_params, float *state,
                             Py_ssize_t n_slots, float *work, int64_t *iwork, double *table, Py_ssize_t stage_cap,
                             int64_t period)

    # ------------------------------------------------------------ row orders (shuffle.c)
    void fo_shuffle(const int64_t *rows, Py_ssize_t n, uint64_t key, int64_t *out)
    void fo_shuffle_tracked(const int64_t *rows, Py_ssize_t n, uint64_t key, int64_t *out, int64_t *done)

    # ------------------------------------------------------------ Krylov solvers (krylov.c)
    fo_status fo_krylov_dense_d(const double *X, const double *y, Py_ssize_t y_stride, const double *sw,
                                Py_ssize_t n, Py_ssize_t d, const double *v, double c, double shift, double *z,
                                double *zz, double *out)
    fo_status fo_krylov_dense_s(const float *X, const float *y, Py_ssize_t y_stride, const double *sw,
                                Py_ssize_t n, Py_ssize_t d, const double *v, double c, double shift, double *z,
                                double *zz, double *out)
    fo_status fo_krylov_csr_d(const double *data, const int32_t *indices, const int32_t *indptr, const double *y,
                              Py_ssize_t y_stride, const double *sw, Py_ssize_t n, Py_ssize_t d, const double *v,
                              double c, double shift, double *z, double *zz, double *out)
    fo_status fo_krylov_csr_s(const float *data, const int32_t *indices, const int32_t *indptr, const float *y,
                              Py_ssize_t y_stride, const double *sw, Py_ssize_t n, Py_ssize_t d, const double *v,
                              double c, double shift, double *z, double *zz, double *out)
    fo_status fo_krylov_moments_csr_d(const double *data, const int32_t *indices, const int32_t *indptr,
                                      const double *Y, Py_ssize_t k, const double *sw, Py_ssize_t n, Py_ssize_t d,
                                      const double *shift, double *Z, double *e, double *out)
    fo_status fo_krylov_moments_csr_s(const float *data, const int32_t *indices, const int32_t *indptr,
                                      const float *Y, Py_ssize_t k, const double *sw, Py_ssize_t n, Py_ssize_t d,
                                      const double *shift, double *Z, double *e, double *out)
    double fo_cgls_step(Py_ssize_t d, Py_ssize_t S, const double *Z, Py_ssize_t ld, double step, double se,
                        const double *m, const double *L2, double lam2, const double *p, double *x, double *s)
    void fo_cgls_direction(Py_ssize_t d, double beta, const double *s, double *p, const double *m,
                           const double *L2, double lam2, double *out)
    void fo_lsqr_before(Py_ssize_t d, double alpha, const double *v, const double *L, double lam, double *g,
                        double *ub, const double *m, double *out)
    double fo_lsqr_after(Py_ssize_t d, Py_ssize_t S, const double *Z, Py_ssize_t ld, double beta, double bdiv,
                         double se, const double *m, double *g, double *ub, const double *L, double lam, double *v)
    void fo_lsqr_update(Py_ssize_t d, double adiv, double cx, double cw, double *v, double *x, double *w)
    void fo_lsqr_next(Py_ssize_t d, double adiv, double cx, double cw, double *v, double *x, double *w,
                      double alpha, const double *L, double lam, double *g, double *ub, const double *m, double *out)

    # ------------------------------------------------------------ Huber Newton (huber.c)
    int FO_HUBER_GATHER

    ctypedef struct fo_huber_dims:
        Py_ssize_t n
        Py_ssize_t d
        int p

    fo_status fo_huber_pass_d(const fo_blas *blas, const double *X, const double *y, const double *s,
                              fo_huber_dims dims, const double *w, double b, double eps, const double *centre,
                              const uint8_t *prev, uint8_t *mask, double *r, double *g, double *dH, double *moved,
                              double *work, double *out)
    fo_status fo_huber_pass_s(const fo_blas *blas, const float *X, const double *y, const double *s,
                              fo_huber_dims dims, const double *w, double b, double eps, const double *centre,
                              const uint8_t *prev, uint8_t *mask, double *r, double *g, double *dH, double *moved,
                              double *work, double *out)
