/* shuffle.c: the row order of an epoch, a uniform random permutation drawn from a 64-bit key.
 *
 * The forward Fisher-Yates shuffle (Knuth, TAOCP vol. 2, 3.4.2, Algorithm P run from the front): for
 * i = 0..n-2 swap out[i] with out[j], j uniform in [i, n). The i-th random word is SplitMix64's output for the
 * counter i + 1 (Steele, Lea & Flood, "Fast splittable pseudorandom number generators", OOPSLA 2014): a pure
 * function of (key, i), so the NumPy twin computes every word at once. j = i + floor(u (n - i) / 2^64)
 * (Lemire's multiply-shift, "Fast random integer generation in an interval", 2019, without the rejection
 * step): each j is off uniform by less than (n - i) / 2^64, below 10^-13 for any array that fits in memory.
 * Measured 4-6x faster than numpy.random.Generator.permutation on 200,000 rows (its bounded integers take a
 * masked rejection loop each), which made the permutation most of an estimator epoch's overhead.
 *
 * Where the epoch kernels run AVX2 (fo_isa_get) and n < 2^32, the targets are formed four at a time in 64-bit
 * vector lanes, four swaps ahead of their use (the same integers: multiplications modulo 2^64 from 32-bit
 * partial products, and the high word of u (n - i) exactly, as n - i < 2^32): the same permutation, bit for bit.
 * The swaps wait on memory; the scalar hashing, about half of the shuffle's time alone, then overlapped them only
 * in part (200,000 rows: 0.62 -> 0.46 ms and 0.93 -> 0.68 ms in two runs). A batch of 256 targets formed at once
 * was slower than the scalar loop (0.75 -> 0.97 ms): the swaps waited behind the burst of arithmetic.
 */
#include <string.h>

#include "fastopt.h"

#if FO_AVX2_DISPATCH
#include <immintrin.h>
#endif

#define FO_GOLDEN_GAMMA 0x9e3779b97f4a7c15ULL

static inline uint64_t fo_splitmix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* The high 64 bits of a * b, in portable C99 (four 32-bit partial products). */
static inline uint64_t fo_mulhi64(uint64_t a, uint64_t b)
{
#if defined(__SIZEOF_INT128__)
    return (uint64_t)(((unsigned __int128)a * b) >> 64); /* the same bits, one instruction */
#endif
    const uint64_t a0 = a & 0xffffffffULL, a1 = a >> 32, b0 = b & 0xffffffffULL, b1 = b >> 32;
    const uint64_t p00 = a0 * b0, p01 = a0 * b1, p10 = a1 * b0, p11 = a1 * b1;
    const uint64_t mid = (p00 >> 32) + (p01 & 0xffffffffULL) + (p10 & 0xffffffffULL);
    return p11 + (p01 >> 32) + (p10 >> 32) + (mid >> 32);
}

/* The swap partner of position i: uniform in [i, n). */
static inline ptrdiff_t fo_shuffle_target(uint64_t key, ptrdiff_t i, ptrdiff_t n)
{
    const uint64_t u = fo_splitmix64(key + (uint64_t)(i + 1) * FO_GOLDEN_GAMMA);
    return i + (ptrdiff_t)fo_mulhi64(u, (uint64_t)(n - i));
}

/* How many swaps ahead a target is formed and prefetched. After an epoch has streamed X through the caches, the
 * 200,000-row order buffer (1.6 MB) is out of L2 and each swap waits on L3 or memory: 16 ahead left the shuffle at
 * 0.62-1.03 ms, 64 ahead 0.44-0.76 ms (medians of 60 shuffles after a pass over 80 MB, alternating builds; 128
 * measured like 64). The permutation is the same whatever the distance. */
#define FO_SHUFFLE_AHEAD 64
/* Fisher-Yates's step: out[i] and out[j] exchanged. */
static inline void fo_shuffle_swap(int64_t *out, ptrdiff_t i, ptrdiff_t j)
{
    const int64_t tmp = out[i];
    out[i] = out[j];
    out[j] = tmp;
}

#define FO_SHUFFLE_PREFETCH(p) FO_PREFETCH_HINT(p, 1, 3)

/* The positions the shuffle has finished, published for a reader on another thread (fo_shuffle_tracked): with
 * release order, so a reader that loads a count with acquire order also sees those positions' values. Without
 * GNU atomics nothing is published before the end (the caller then waits for the whole shuffle). */
#define FO_SHUFFLE_PUBLISH 4096
#if defined(__GNUC__) || defined(__clang__)
#define FO_SHUFFLE_STORE(p, v) __atomic_store_n((p), (v), __ATOMIC_RELEASE)
#else
#define FO_SHUFFLE_STORE(p, v) ((void)(p), (void)(v))
#endif

void fo_shuffle(const int64_t *rows, ptrdiff_t n, uint64_t key, int64_t *out)
{
    fo_shuffle_tracked(rows, n, key, out, NULL);
}

#if FO_AVX2_DISPATCH
FO_TARGET_AVX2_BEGIN
/* x c modulo 2^64 in each lane, c a constant: x_lo c_lo + 2^32 (x_hi c_lo + x_lo c_hi), modulo 2^64. */
static inline __m256i fo_mul64c(__m256i x, uint64_t c)
{
    const __m256i cl = _mm256_set1_epi64x((long long)(c & 0xffffffffULL)), ch = _mm256_set1_epi64x((long long)(c >> 32));
    const __m256i cross = _mm256_add_epi64(_mm256_mul_epu32(_mm256_srli_epi64(x, 32), cl), _mm256_mul_epu32(x, ch));
    return _mm256_add_epi64(_mm256_mul_epu32(x, cl), _mm256_slli_epi64(cross, 32));
}

/* The high 64 bits of u m in each lane, m < 2^32: (u_hi m + floor(u_lo m / 2^32)) / 2^32, whose sum is below
 * 2^64 - 2^32 (no carry lost) and exact (floor of an integer plus a fraction over 2^32). */
static inline __m256i fo_mulhi_u32(__m256i u, __m256i m)
{
    const __m256i hi = _mm256_mul_epu32(_mm256_srli_epi64(u, 32), m);
    const __m256i lo = _mm256_srli_epi64(_mm256_mul_epu32(u, m), 32);
    return _mm256_srli_epi64(_mm256_add_epi64(hi, lo), 32);
}

/* fo_shuffle_target for the positions in the lanes of i (each below n, n < 2^32). */
static inline __m256i fo_shuffle_targets4(__m256i i, __m256i key, __m256i n)
{
    __m256i z = _mm256_add_epi64(key, fo_mul64c(_mm256_add_epi64(i, _mm256_set1_epi64x(1)), FO_GOLDEN_GAMMA));
    z = fo_mul64c(_mm256_xor_si256(z, _mm256_srli_epi64(z, 30)), 0xbf58476d1ce4e5b9ULL);
    z = fo_mul64c(_mm256_xor_si256(z, _mm256_srli_epi64(z, 27)), 0x94d049bb133111ebULL);
    z = _mm256_xor_si256(z, _mm256_srli_epi64(z, 31));
    return _mm256_add_epi64(i, fo_mulhi_u32(z, _mm256_sub_epi64(n, i)));
}

/* The swaps of fo_shuffle_tracked (out filled; 2 <= n < 2^32), their targets formed four at a time
 * FO_SHUFFLE_AHEAD positions ahead in a ring of twice that many. Lanes past the last swap are formed and never
 * read (their positions are below n + FO_SHUFFLE_AHEAD + 4, and n - i wraps harmlessly there). */
static void fo_shuffle_swaps_avx2(int64_t *out, ptrdiff_t n, uint64_t key, int64_t *done)
{
    enum { RING = 2 * FO_SHUFFLE_AHEAD };
    int64_t ring[RING] __attribute__((aligned(32)));
    const __m256i k = _mm256_set1_epi64x((long long)key), nn = _mm256_set1_epi64x((long long)n);
    const ptrdiff_t last = n - 1;
    for (ptrdiff_t b = 0; b < FO_SHUFFLE_AHEAD; b += 4)
        _mm256_store_si256((__m256i *)(ring + b), fo_shuffle_targets4(_mm256_set_epi64x(b + 3, b + 2, b + 1, b), k, nn));
    for (ptrdiff_t b = 0; b < FO_SHUFFLE_AHEAD && b < last; b++) FO_SHUFFLE_PREFETCH(out + ring[b]);
    ptrdiff_t i = 0;
    for (; i + 4 <= last; i += 4) {
        const ptrdiff_t a = i + FO_SHUFFLE_AHEAD;
        _mm256_store_si256((__m256i *)(ring + a % RING),
                           fo_shuffle_targets4(_mm256_set_epi64x(a + 3, a + 2, a + 1, a), k, nn));
        for (ptrdiff_t l = 0; l < 4; l++) {
            if (a + l < last) FO_SHUFFLE_PREFETCH(out + ring[(a + l) % RING]);
            fo_shuffle_swap(out, i + l, (ptrdiff_t)ring[(i + l) % RING]);
        }
        if (done && (i + 4) % FO_SHUFFLE_PUBLISH == 0) FO_SHUFFLE_STORE(done, (int64_t)(i + 4));
    }
    for (; i < last; i++) fo_shuffle_swap(out, i, (ptrdiff_t)ring[i % RING]);
    if (done) FO_SHUFFLE_STORE(done, (int64_t)n);
}
FO_TARGET_AVX2_END
#endif

void fo_shuffle_tracked(const int64_t *rows, ptrdiff_t n, uint64_t key, int64_t *out, int64_t *done)
{
    if (n <= 0) return;
    if (!rows) {
        for (ptrdiff_t i = 0; i < n; i++) out[i] = i;
    } else if (out != rows) {
        memmove(out, rows, (size_t)n * sizeof(int64_t));
    }
#if FO_AVX2_DISPATCH
    if (n >= 2 && (uint64_t)n < (1ULL << 32) && fo_isa_get() == FO_ISA_AVX2) {
        fo_shuffle_swaps_avx2(out, n, key, done);
        return;
    }
#endif
    /* The targets are known FO_SHUFFLE_AHEAD swaps early (they depend on the counter only): prefetch them, so
     * that the random accesses overlap instead of waiting one by one. */
    ptrdiff_t ring[FO_SHUFFLE_AHEAD];
    const ptrdiff_t last = n - 1;
    for (ptrdiff_t i = 0; i < FO_SHUFFLE_AHEAD && i < last; i++) {
        ring[i] = fo_shuffle_target(key, i, n);
        FO_SHUFFLE_PREFETCH(out + ring[i]);
    }
    for (ptrdiff_t i = 0; i < last; i++) {
        const ptrdiff_t j = ring[i % FO_SHUFFLE_AHEAD];
        if (i + FO_SHUFFLE_AHEAD < last) {
            const ptrdiff_t ahead = fo_shuffle_target(key, i + FO_SHUFFLE_AHEAD, n);
            ring[i % FO_SHUFFLE_AHEAD] = ahead;
            FO_SHUFFLE_PREFETCH(out + ahead);
        }
        fo_shuffle_swap(out, i, j);
        /* positions 0 .. i are final: later swaps only touch positions after the current one */
        if (done && (i + 1) % FO_SHUFFLE_PUBLISH == 0) FO_SHUFFLE_STORE(done, (int64_t)(i + 1));
    }
    if (done) FO_SHUFFLE_STORE(done, (int64_t)n);
}
