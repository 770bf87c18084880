/* huber_isa.h: one input type of huber.c: the row loop per instruction set, then the public function.
 * Included twice by huber.c; deliberately without an include guard. */
#define FO_ISA base
#define FO_HUBER_MULADD(a, b, c) ((a) * (b) + (c))
#include "huber_body.h"
#undef FO_HUBER_MULADD
#undef FO_ISA

#if FO_HUBER_X86
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2,fma"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx2,fma")
#endif
#define FO_ISA avx2
#define FO_HUBER_MULADD(a, b, c) __builtin_fma((a), (b), (c))
#include "huber_body.h"
#undef FO_HUBER_MULADD
#undef FO_ISA
#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif
#endif

#include "huber_body.h" /* FO_ISA undefined: the public function */
