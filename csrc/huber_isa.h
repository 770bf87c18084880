/* huber_isa.h: one input type of huber.c: the row loop per instruction set, then the public function.
 * Included twice by huber.c; deliberately without an include guard. */
#define FO_ISA base
#define FO_HUBER_MULADD(a, b, c) ((a) * (b) + (c))
#include "huber_body.h"
#undef FO_HUBER_MULADD
#undef FO_ISA

#if FO_AVX2_DISPATCH
FO_TARGET_AVX2_BEGIN
#define FO_ISA avx2
#define FO_HUBER_MULADD(a, b, c) __builtin_fma((a), (b), (c))
#include "huber_body.h"
#undef FO_HUBER_MULADD
#undef FO_ISA
FO_TARGET_AVX2_END
#endif

#include "huber_body.h" /* FO_ISA undefined: the public function */
