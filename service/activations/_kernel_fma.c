/* The compiled first tier with AVX2 and fused multiply-adds (x86-64 CPUs since 2013):
 * _kernel.c calls it where the CPU has them. */
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
#pragma GCC target("avx2,fma")
#define KERNEL_FMA 1
#else
#define KERNEL_FMA 0
#endif
#define W 4
#define RUN run_fma
#define SOFTMAX softmax_fma
#define EXP_ENTRY exp_entry_fma
#define SINCOS_ENTRY sincos_entry_fma
#include "_kernel_body.h"
