/* The compiled first tier without fused multiply-adds (Dekker's products): any CPU. */
#define KERNEL_FMA 0
#define W 2
#define RUN run_plain
#define SOFTMAX softmax_plain
#define EXP_ENTRY exp_entry_plain
#define SINCOS_ENTRY sincos_entry_plain
#include "_kernel_body.h"
