/* The float32 build of _kernel_plain.c (any CPU, two lanes): every value one double with its
 * bound (see _kernel_body.h). */
#define KERNEL_FMA 0
#define W 2
#define RUN run_plain_f32
#define SOFTMAX softmax_plain_f32
#define EXP_ENTRY exp_entry_plain_f32
#define LIGHT 1
#include "_kernel_body.h"
