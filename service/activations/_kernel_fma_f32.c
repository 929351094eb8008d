/* The float32 build of _kernel_fma.c (AVX2 and fused multiply-adds, four lanes): every value one
 * double with its bound (see _kernel_body.h). */
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
#pragma GCC target("avx2,fma")
#define KERNEL_FMA 1
#else
#define KERNEL_FMA 0
#endif
#define W 4
#define RUN run_fma_f32
#define SOFTMAX softmax_fma_f32
#define EXP_ENTRY exp_entry_fma_f32
#define LIGHT 1
#include "_kernel_body.h"
