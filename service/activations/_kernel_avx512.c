/* The compiled first tier with AVX-512 and fused multiply-adds, eight lanes: _kernel.c calls it
 * where the CPU has them. */
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
#pragma GCC target("avx512f,avx512dq,fma")
#define KERNEL_FMA 1
#else
#define KERNEL_FMA 0
#endif
#define W 8
#define RUN run_avx512
#define SOFTMAX softmax_avx512
#define EXP_ENTRY exp_entry_avx512
#define SINCOS_ENTRY sincos_entry_avx512
#include "_kernel_body.h"
