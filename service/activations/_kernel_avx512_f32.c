/* The float32 build of _kernel_avx512.c (AVX-512, eight lanes): every value one double with its
 * bound (see _kernel_body.h). */
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
#pragma GCC target("avx512f,avx512dq,fma")
#define KERNEL_FMA 1
#else
#define KERNEL_FMA 0
#endif
#define W 8
#define RUN run_avx512_f32
#define SOFTMAX softmax_avx512_f32
#define EXP_ENTRY exp_entry_avx512_f32
#define LIGHT 1
#include "_kernel_body.h"
