/* krylov_isa.h: one input type of krylov.c: the dense loop per instruction set, then the public functions.
 * Included twice by krylov.c; deliberately without an include guard. */
#define FO_ISA base
#define FO_KRYLOV_MULADD(a, b, c) ((a) * (b) + (c))
#include "krylov_body.h"
#undef FO_KRYLOV_MULADD
#undef FO_ISA

#if FO_AVX2_DISPATCH
FO_TARGET_AVX2_BEGIN
#define FO_ISA avx2
#define FO_KRYLOV_MULADD(a, b, c) __builtin_fma((a), (b), (c))
#include "krylov_body.h"
#undef FO_KRYLOV_MULADD
#undef FO_ISA
FO_TARGET_AVX2_END
#endif

#include "krylov_body.h" /* FO_ISA undefined: the public functions */
