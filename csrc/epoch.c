/* epoch.c: the fused minibatch epoch, one optimizer step and gradient clipping, for float64 and float32.
 *
 * This file holds the public functions of fastopt.h's optimizer section, the choice of instruction set at run
 * time (fo_isa_*), the two-thread team (fo_team: its hand-off and the layout of its work array) and what every
 * copy of the loop shares (prefetching, chunk sizes). The loop itself is written once, in epoch_body.h, and
 * compiled below once per real type and instruction set; the public functions pick a copy from a table.
 *
 * Instruction sets (chosen at run time, see fo_isa_set): AVX2 with FMA (32-byte vectors), and the baseline every
 * x86-64 CPU has (SSE2, 32-byte GNU vectors in two registers, separate multiply and add). An AVX-512 copy was
 * measured slower than AVX2 on a Sapphire Rapids-class CPU at d = 100 and is not built. Only the dot products
 * and the gradient sums use FMA, through explicit intrinsics; everything else (the step rules above all) is
 * compiled with contraction off, so fo_step and the epoch's steps agree bit for bit with the NumPy reference's
 * arithmetic.
 *
 * Each minibatch is processed in chunks of rows that stay in L1/L2. Per chunk, two sweeps:
 *   1. residuals: r_ij = x_i.w_j + b_j - y_ij for each row (dot products of FO_NR rows at once, sharing the
 *      loads of w_j), the loss, and the coefficients c_ij = sw_i loss'(r_ij);
 *   2. gradient: g_j += sum_i c_ij x_i, a block of features held in registers while the chunk's rows stream
 *      past, so the gradient is not loaded and stored once per row.
 * The next rows of the (shuffled) order are prefetched, because a gather in random order would otherwise wait
 * on memory at every row. No BLAS: plain loops with a fixed summation order keep results bit-identical across
 * runs and threads. Within one instruction set the order is fixed (each dot product in FO_NV vectors of lanes
 * combined in a fixed tree; each gradient entry summed over the rows in visiting order) whatever the chunking or
 * the number of outputs, so one fit of k outputs and k fits of one agree bit for bit. Different instruction sets
 * round differently (FMA, lane counts): results agree to rounding, not bit for bit, across CPUs, as with BLAS.
 */


#include <math.h>
#include <string.h>

#include "fastopt.h"

/* FO_PORTABLE builds the plain-C fallback that any C99 compiler takes (no GNU extensions); tests use it. */
#define FO_PREFETCH(p) FO_PREFETCH_HINT(p, 0, 1)
#define FO_PREFETCH_L1(p) FO_PREFETCH_HINT(p, 0, 3)
#if (defined(__GNUC__) || defined(__clang__)) && !defined(FO_PORTABLE)
#define FO_INLINE static inline __attribute__((always_inline))
#define FO_VEC 1
#else
#define FO_INLINE static inline
#define FO_VEC 0
#endif

/* On x86 with GCC or clang, an AVX2 + FMA copy is compiled too and chosen at run time when the CPU (and the
 * operating system) supports it. Define FO_NO_DISPATCH to build the baseline only. */
#if FO_AVX2_DISPATCH /* (FO_VEC's compilers, on x86) */
#define FO_X86 1
#include <immintrin.h>
#else
#define FO_X86 0
#endif

static int fo_isa_best(void)
{
#if FO_X86
    __builtin_cpu_init(); /* idempotent and cheap; needed before __builtin_cpu_supports in some contexts */
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return FO_ISA_AVX2;
#endif
    return FO_ISA_BASELINE;
}

/* The selected instruction set, or -1 before the first use (then the best one). Relaxed atomics: a selection
 * made while another thread starts an epoch applies to that epoch or the next, never to half of one. */
#if FO_VEC
static int fo_isa_selected = -1;
#endif

int fo_isa_get(void)
{
#if FO_VEC
    int isa = __atomic_load_n(&fo_isa_selected, __ATOMIC_RELAXED);
    if (isa < 0) {
        isa = fo_isa_best();
        __atomic_store_n(&fo_isa_selected, isa, __ATOMIC_RELAXED);
    }
    return isa;
#else
    return FO_ISA_BASELINE;
#endif
}

int fo_isa_set(int isa)
{
    const int best = fo_isa_best();
    if (isa < 0 || isa > best) isa = best;
#if FO_VEC
    __atomic_store_n(&fo_isa_selected, isa, __ATOMIC_RELAXED);
#endif
    return fo_isa_get();
}

/* Prefetch in two levels: every line of the row about 4 KB of X ahead of the current one (5 rows of 100
 * doubles; 2 to 64 rows), and the first line of the row FO_PREFETCH_FAR times further ahead, with its targets,
 * which starts that row's memory access early. Measured 5-10% faster than one level at d = 10, 100 and 1000.
 * Whole rows of at most FO_PREFETCH_L1_ROW_BYTES go into L1 (the dot products then wait on no L2 hits): measured
 * 7-10% faster per epoch at d = 100 float64 and 10-18% at float32 (one and two threads), 7% at d = 300 on two
 * threads; larger rows go to L2, because with them the window and the chunk being summed overflow L1 (L1 was 2%
 * slower at 4 KB rows, 6-8% at 8 KB). The far first lines go to L2 either way. */
#define FO_PREFETCH_BYTES 4096
#define FO_PREFETCH_MIN_ROWS 2
#define FO_PREFETCH_MAX_ROWS 64
#define FO_PREFETCH_FAR 4
#define FO_PREFETCH_L1_ROW_BYTES 2560
#define FO_CACHE_LINE 64

/* Prefetch every cache line of [p, p + bytes): into L1 for a short row, else into L2. */
FO_INLINE void fo_prefetch_lines(const char *p, size_t bytes)
{
    if (bytes <= FO_PREFETCH_L1_ROW_BYTES) {
        for (size_t off = 0; off < bytes; off += FO_CACHE_LINE) FO_PREFETCH_L1(p + off);
    } else {
        for (size_t off = 0; off < bytes; off += FO_CACHE_LINE) FO_PREFETCH(p + off);
    }
}

/* Rows per chunk: at most FO_CHUNK_ROWS, about FO_CHUNK_BYTES of X (so the chunk is still in cache for the
 * gradient sweep), and at most FO_CHUNK_COEFS / k so the coefficients fit a fixed array on the stack. */
#define FO_CHUNK_ROWS 64
#define FO_CHUNK_BYTES 32768
#define FO_CHUNK_COEFS 256

/* Spin-waits of the two-thread epoch: a hand-off takes well under a microsecond, so spin; after FO_SPINS
 * checks (the other thread was descheduled) yield the core. No `pause`: under some hypervisors it exits to
 * the host and costs microseconds. */
#define FO_SPINS 200
/* Taking the helper back after going on alone (epoch_body.h's epoch): a team that lasted fewer than
 * FO_TEAM_SHORT steps doubles the calling thread's wait before its next try, up to FO_TEAM_BACKOFF_MAX steps. */
#define FO_TEAM_SHORT 16
#define FO_TEAM_BACKOFF_MAX 4096
/* A helper that has not begun its half of a step this long after the calling thread's spins has no core: longer
 * than the hiccups of a busy machine's helper (an interrupt), short beside a step taken alone. */
#define FO_LATE_NS 5000
/* A stopped helper naps about this long between its spells of FO_PARK_HOT_NS (fo_team_park, fo_csr_pipe_park). */
#define FO_NAP_NS 50000

/* (the plain-C fallback, FO_PORTABLE, runs one thread: it needs no clock) */
#if FO_VEC && defined(_WIN32)
#include <windows.h>
int64_t fo_clock_ns(void)
{
    LARGE_INTEGER t, f;
    QueryPerformanceCounter(&t);
    QueryPerformanceFrequency(&f);
    return (int64_t)((double)t.QuadPart * (1e9 / (double)f.QuadPart));
}
#define FO_YIELD() SwitchToThread()
void fo_nap(void) { Sleep(1); } /* (the shortest sleep there) */
#elif FO_VEC && (defined(__unix__) || defined(__APPLE__))
#include <sched.h>
#include <time.h>
int64_t fo_clock_ns(void)
{
    struct timespec ts;
    if (clock_gettime(CLOCK_MONOTONIC, &ts) != 0) return 0;
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}
#define FO_YIELD() sched_yield()
void fo_nap(void)
{
    const struct timespec ts = {0, FO_NAP_NS};
    nanosleep(&ts, NULL);
}
#else
int64_t fo_clock_ns(void) { return 0; }
#define FO_YIELD() ((void)0)
void fo_nap(void) {}
#endif

int64_t fo_rejoin_backoff(int64_t backoff, int64_t lasted, int64_t short_steps, int64_t least, int64_t most)
{
    return lasted < short_steps ? (backoff < most ? 2 * backoff : backoff) : least;
}

#if FO_VEC
/* Rows to prefetch while waiting: X rows order[pos:end] of row_bytes each. */
typedef struct {
    const char *X;
    const int64_t *order;
    size_t row_bytes;
    ptrdiff_t pos, end;
} fo_wait_prefetch;

/* Wait until *flag >= value (the other thread may already be one step further): 1; 0 if the team was aborted
 * first. The calling thread's wait (part 0) returns 2 (the helper lost its core) when the helper has not begun the
 * step's half FO_LATE_NS after FO_SPINS checks (from step team->late_from on), or once it has waited
 * FO_STALL_NS; the helper's (part 1) returns 3 once the calling thread has gone on alone (it then stops and waits:
 * fo_team). Meanwhile prefetch pf's rows, one per check: the wait for the other half becomes this thread's
 * memory time for its next rows. */
static int fo_team_wait(const fo_team *team, int part, const int64_t *flag, int64_t value, fo_wait_prefetch *pf)
{
    int64_t since = 0;
    for (long spins = 0; __atomic_load_n(flag, __ATOMIC_ACQUIRE) < value;) {
        if (__atomic_load_n(&team->abort, __ATOMIC_ACQUIRE)) return 0;
        if (part == 1 && __atomic_load_n(&team->solo, __ATOMIC_ACQUIRE) != __atomic_load_n(&team->resume,
                                                                                            __ATOMIC_ACQUIRE))
            return 3;
        if (pf->pos < pf->end) {
            fo_prefetch_lines(pf->X + (size_t)pf->order[pf->pos++] * pf->row_bytes, pf->row_bytes);
        } else if (++spins > FO_SPINS) {
            if (part == 0) {
                const int64_t now = fo_clock_ns();
                if (!since) since = now;
                /* A helper that has not even begun this step's half FO_LATE_NS on has no core now (unless it has
                 * only just been started or taken back: late_from). No yield meanwhile: a helper queued on this
                 * thread's core would take it for its half, and the two would take turns on one core. */
                if (value >= team->late_from && __atomic_load_n(&team->part[1].started, __ATOMIC_RELAXED) < value) {
                    if (now - since > FO_LATE_NS) return 2;
                    continue;
                }
                if (now - since > FO_STALL_NS) return 2;
            }
            FO_YIELD();
        }
    }
    return 1;
}

/* The helper, stopped (fo_team_wait returned 3): wait until the calling thread takes it back; 0 if the team was
 * aborted first. It offers itself (team->parked = the solo count) while it spins, FO_PARK_HOT_NS at a time, and
 * withdraws while it naps between those spells: a helper that shares the calling thread's core would otherwise
 * take half of the core from it, and one taken back while napping would begin its half too late (the calling
 * thread would go on alone again at once). The calling thread takes it by setting parked to 0
 * (fo_team_rejoin), then copies its parameters and state and sets resume. */
static int fo_team_park(fo_team *team)
{
    const int64_t gen = __atomic_load_n(&team->solo, __ATOMIC_ACQUIRE);
    for (;;) {
        __atomic_store_n(&team->parked, gen, __ATOMIC_RELEASE);
        const int64_t since = fo_clock_ns();
        for (long spins = 0; __atomic_load_n(&team->parked, __ATOMIC_ACQUIRE) == gen;) {
            if (__atomic_load_n(&team->abort, __ATOMIC_ACQUIRE)) return 0;
            if (++spins > FO_SPINS) {
                if (fo_clock_ns() - since > FO_PARK_HOT_NS) break;
                FO_YIELD();
            }
        }
        int64_t seen = gen; /* withdraw, unless taken meanwhile */
        if (!__atomic_compare_exchange_n(&team->parked, &seen, -gen, 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) break;
        fo_nap();
        if (__atomic_load_n(&team->abort, __ATOMIC_ACQUIRE)) return 0;
    }
    for (long spins = 0; __atomic_load_n(&team->resume, __ATOMIC_ACQUIRE) != gen;) { /* taken: the copies */
        if (__atomic_load_n(&team->abort, __ATOMIC_ACQUIRE)) return 0;
        if (++spins > FO_SPINS) FO_YIELD();
    }
    return 1;
}

/* The calling thread, alone: if the helper offers itself (and has published no half of step t + 1 or later), take
 * it, copy this thread's parameters and state over the helper's and let it go on at row position start, step
 * t + 1. 1 if it did: the two go on together. */
static int fo_team_rejoin(fo_team *team, const void *params, ptrdiff_t n_params, const void *state, size_t itemsize,
                          ptrdiff_t start, int64_t t)
{
    int64_t gen = __atomic_load_n(&team->solo, __ATOMIC_RELAXED); /* (this thread's own writes) */
    if (__atomic_load_n(&team->parked, __ATOMIC_ACQUIRE) != gen ||
        __atomic_load_n(&team->part[1].ready, __ATOMIC_ACQUIRE) > t)
        return 0;
    if (!__atomic_compare_exchange_n(&team->parked, &gen, 0, 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
        return 0; /* it has just withdrawn to nap */
    memcpy(team->h_params, params, (size_t)n_params * itemsize);
    if (team->h_state_len) memcpy(team->h_state, state, (size_t)team->h_state_len * itemsize);
    team->resume_start = start, team->resume_t = t;
    __atomic_store_n(&team->resume, gen, __ATOMIC_RELEASE);
    team->rejoined++;
    return 1;
}
#endif

/* The spacing of n-entry buffers in the work array: n alone; in a team, n entries of `itemsize` bytes rounded up
 * to whole cache lines. */
static ptrdiff_t fo_work_stride(ptrdiff_t n, size_t itemsize, int team)
{
    const ptrdiff_t per_line = (ptrdiff_t)(FO_CACHE_LINE / itemsize);
    return team ? (n + per_line - 1) / per_line * per_line : n;
}

/* In a team, the two threads' buffers in the work array share no cache line: the halves and sums were packed
 * end to end, so every step both threads wrote to lines the other was reading or writing. Measured 2-6% faster
 * per epoch (float64; medians of interleaved runs) and 5% (float32) at d = 100. */
ptrdiff_t fo_work_size(ptrdiff_t n_params, ptrdiff_t k, size_t itemsize, int team)
{
    return (team ? 8 : 6) * fo_work_stride(n_params, itemsize, team) +
           (team ? 3 : 2) * fo_work_stride(k, itemsize, team);
}

/* torch.nn.utils.clip_grad_norm_ adds this to the norm before dividing. */
#define FO_CLIP_EPS 1e-6

#define FO_CAT_(a, b) a##_##b
#define FO_CAT(a, b) FO_CAT_(a, b)
#define FO_CAT3_(a, b, c) a##_##b##_##c
#define FO_CAT3(a, b, c) FO_CAT3_(a, b, c)

/* ---------------------------------------------------------------- the copies of the loop (epoch_body.h) */
/* Each instruction set's settings (their meaning: epoch_body.h). */
#if FO_VEC
#define FO_base_VBYTES 32 /* two SSE2 registers per vector: eight doubles per row accumulator, four gradient vectors */
#define FO_base_FMA 0
#define FO_base_NR 2
#define FO_base_NV 2
#define FO_base_NB 4
#else
#define FO_base_VBYTES 0
#define FO_base_FMA 0
#define FO_base_NR 1
#define FO_base_NV 1
#define FO_base_NB 1
#endif
#define FO_avx2_VBYTES 32 /* 16 registers of 32 bytes */
#define FO_avx2_FMA 1
/* One row at a time: measured 4-12% faster than four rows sharing the loads of w at d = 30 to 300 (one and two
 * threads; each row's dot product starts as soon as its lines arrive), the same at d = 10 (float64) and 1000,
 * 8% slower at float32 d = 10. FO_NV is unchanged, so are the results. */
#define FO_avx2_NR 1
#define FO_avx2_NV 2
#define FO_avx2_NB 8

/* Each real type's settings: the type, its square root, (x86) its AVX register type and fused multiply-add. */
#define FO_d_REAL double
#define FO_d_SQRT sqrt
#define FO_d_M256 __m256d
#define FO_d_FMADD256 _mm256_fmadd_pd
#define FO_s_REAL float
#define FO_s_SQRT sqrtf
#define FO_s_M256 __m256
#define FO_s_FMADD256 _mm256_fmadd_ps

/* The copies, each instruction set's for each type (the body undefines FO_T). */
#define FO_ISA base
#define FO_T d
#include "epoch_body.h"
#define FO_T s
#include "epoch_body.h"
#undef FO_ISA
#if FO_X86
FO_TARGET_AVX2_BEGIN
#define FO_ISA avx2
#define FO_T d
#include "epoch_body.h"
#define FO_T s
#include "epoch_body.h"
#undef FO_ISA
FO_TARGET_AVX2_END
#endif

/* ---------------------------------------------------------------- dispatch and the public functions */
typedef fo_status (*fo_epoch_copy_fn)(fo_rule rule, const fo_hyper *h, fo_epoch_ctl *c, const void *X,
                                      const void *Y, const void *sw, ptrdiff_t d, ptrdiff_t k, void *params,
                                      ptrdiff_t n_params, void *state, void *work, fo_team *team, int part);

/* The copies by real type (0: double, 1: float) and fo_isa. */
#if FO_X86
#define FO_COPY_AVX2(t) epoch_copy_##t##_avx2
#else
#define FO_COPY_AVX2(t) epoch_copy_##t##_base /* never selected: fo_isa_get is FO_ISA_BASELINE */
#endif
static const fo_epoch_copy_fn fo_epoch_copies[2][2] = {
    {epoch_copy_d_base, FO_COPY_AVX2(d)},
    {epoch_copy_s_base, FO_COPY_AVX2(s)},
};
#undef FO_COPY_AVX2

/* Thread `part` of an epoch: 0, the calling thread (alone when team is NULL), or 1, a team's helper. The copy run
 * is the team's instruction set, or else the selected one. When the calling thread returns, so does the helper
 * (it is done, or must not wait). */
static fo_status fo_epoch_run(int single, fo_rule rule, const fo_hyper *h, fo_epoch_ctl *c, const void *X,
                              const void *Y, const void *sw, ptrdiff_t d, ptrdiff_t k, void *params,
                              ptrdiff_t n_params, void *state, void *work, fo_team *team, int part)
{
#if !FO_VEC
    if (part) return FO_OK; /* no atomics: the calling thread is always alone; the helper returns at once */
    team = NULL;
#endif
    fo_status st = FO_BAD_ARGUMENT;
    c->bad_step = 0;
    c->loss_out = 0;
    if (c->batch_size >= 1 && k >= 1 && n_params == k * d + (n_params > k * d ? k : 0)) {
        const int isa = team ? team->isa : fo_isa_get();
        st = fo_epoch_copies[single][isa == FO_ISA_AVX2 ? FO_ISA_AVX2 : FO_ISA_BASELINE](
            rule, h, c, X, Y, sw, d, k, params, n_params, state, work, team, part);
    }
#if FO_VEC
    if (team && part == 0) __atomic_store_n(&team->abort, 1, __ATOMIC_RELEASE);
#endif
    return st;
}

#if FO_X86
#define FO_ZERO_AVX2(T) mean_loss_zero_##T##_avx2
#else
#define FO_ZERO_AVX2(T) mean_loss_zero_##T##_base /* never selected: fo_isa_get is FO_ISA_BASELINE */
#endif

/* The public functions of one real type (fastopt.h): typed entries to the above, and one step and clipping
 * alone, by the baseline copies (every copy has the same arithmetic there: no contraction). */
#define FO_PUBLIC(T, REAL, single)                                                                               \
    fo_status fo_epoch_##T(fo_rule rule, const fo_hyper *h, fo_epoch_ctl *ctl, const REAL *X, const REAL *Y,    \
                           const REAL *sw, ptrdiff_t d, ptrdiff_t k, REAL *params, ptrdiff_t n_params,           \
                           REAL *state, REAL *work, fo_team *team)                                               \
    {                                                                                                            \
        return fo_epoch_run(single, rule, h, ctl, X, Y, sw, d, k, params, n_params, state, work, team, 0);     \
    }                                                                                                            \
    fo_status fo_epoch_helper_##T(fo_rule rule, const fo_hyper *h, fo_epoch_ctl *ctl, const REAL *X,            \
                                  const REAL *Y, const REAL *sw, ptrdiff_t d, ptrdiff_t k, REAL *params,         \
                                  ptrdiff_t n_params, REAL *state, REAL *work, fo_team *team)                    \
    {                                                                                                            \
        return fo_epoch_run(single, rule, h, ctl, X, Y, sw, d, k, params, n_params, state, work, team, 1);     \
    }                                                                                                            \
    fo_status fo_step_##T(fo_rule rule, const fo_hyper *h, REAL *params, const REAL *grad, REAL *state,          \
                          ptrdiff_t n, ptrdiff_t n_decay, int64_t t, double lr)                                  \
    {                                                                                                            \
        return rule_step_##T##_base(rule, h, params, grad, state, n, n_decay, t, lr);                           \
    }                                                                                                            \
    double fo_clip_grad_norm_##T(REAL *grad, ptrdiff_t n, double max_norm)                                     \
    {                                                                                                            \
        return clip_grad_norm_##T##_base(grad, n, max_norm);                                                    \
    }                                                                                                            \
    double fo_mean_loss_zero_##T(const REAL *Y, ptrdiff_t k, const int64_t *rows, ptrdiff_t m, const REAL *sw,  \
                                 fo_loss loss, double epsilon)                                                   \
    {                                                                                                            \
        /* every copy has the same arithmetic (explicit lanes, no contraction): the same bits */                \
        return fo_isa_get() == FO_ISA_AVX2 ? FO_ZERO_AVX2(T)(Y, k, rows, m, sw, loss, epsilon)                  \
                                           : mean_loss_zero_##T##_base(Y, k, rows, m, sw, loss, epsilon);       \
    }
FO_PUBLIC(d, double, 0)
FO_PUBLIC(s, float, 1)
#undef FO_PUBLIC
