/* krylov_isa.h: one input type of krylov.c: the dense loop per instruction set, then the public functions.
 * Included twice by krylov.c; deliberately without an include guard. */
#define FO_ISA base
#define FO_KRYLOV_MULADD(a, b, c) ((a) * (b) + (c))
#include "krylov_body.h"
#undef FO_KRYLOV_MULADD
#undef FO_ISA

#if FO_KRYLOV_X86
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2,fma"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx2,fma")
#endif
#define FO_ISA avx2
#define FO_KRYLOV_MULADD(a, b, c) __builtin_fma((a), (b), (c))
#include "krylov_body.h"
#undef FO_KRYLOV_MULADD
#undef FO_ISA
#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif
#endif

#include "krylov_body.h" /* FO_ISA undefined: the public functions */
