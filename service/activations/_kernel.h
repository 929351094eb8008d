/* Shared by the compiled first tier's translation units (_kernel.c, _kernel_fma.c,
 * _kernel_plain.c). */
#ifndef ACTIVATION_KERNEL_H
#define ACTIVATION_KERNEL_H

#include <stddef.h>

enum {
    F_EXPONENTIAL,
    F_SIGMOID,
    F_TANH,
    F_SILU,
    F_QUICK_GELU,
    F_SOFTPLUS,
    F_LOG_SIGMOID,
    F_ELU,
    F_SELU,
    F_CELU,
    F_MISH,
    F_GELU_TANH,
    F_TANHSHRINK,
    F_SOFTSIGN,
    F_LEAKY_RELU,
    F_RRELU,
    F_SOFTSHRINK,
    F_RELU_SQUARED,
    F_HARD_SIGMOID,
    F_HARD_SILU,
    F_SQUAREPLUS,
    F_SPARSE_PLUS,
    F_SPARSE_SIGMOID,
    F_STAR_RELU,
    F_SMELU,
    F_XIELU,
    F_RATIONAL,
    F_GELU,
    F_SNAKE,
    F_COUNT
};

/* The tables and constants, set once by init() in _kernel.c. */
extern double TBL_H[256], TBL_L[256];
extern double L1, L2, L3, INV_L;
extern double K_1702_H, K_1702_L, K_SCALE_H, K_SCALE_L, K_SA_H, K_SA_L;
extern double K_GT_H, K_GT_L, K_A_H, K_A_L, K_SIXTH_H, K_SIXTH_L;
extern double UEXP;
/* erf's Taylor coefficients (-1)^n / (n! (2n+1)): n < ERF_DD in double-double, every n in
 * double, and the first one left out; 1/sqrt 2, 2/sqrt pi, 1/sqrt pi and 1/sqrt(2 pi). */
#define ERF_DD 36
#define ERF_TERMS 72
extern double ERF_H[ERF_DD], ERF_L[ERF_DD], ERF_TAIL[ERF_TERMS], ERF_NEXT;
extern double K_ISQ2_H, K_ISQ2_L, K_2SPI_H, K_2SPI_L, K_ISPI_H, K_ISPI_L, K_IS2PI_H, K_IS2PI_L;
/* pi/2 in three parts (the first of 33 bits), 2/pi, and sin(j/128), cos(j/128) in double-double
 * for j < TRIG_N. */
#define TRIG_N 104
extern double PIO2_1, PIO2_2, PIO2_3, TWO_OVER_PI;
extern double SIN_H[TRIG_N], SIN_L[TRIG_N], COS_H[TRIG_N], COS_L[TRIG_N];

ptrdiff_t run_fma(int f, int quantity, int bits, const double *xs, const double *gs, const double *ps, double *ys,
                  unsigned char *ss, ptrdiff_t n);
ptrdiff_t run_plain(int f, int quantity, int bits, const double *xs, const double *gs, const double *ps, double *ys,
                    unsigned char *ss, ptrdiff_t n);
ptrdiff_t softmax_fma(int log_form, int bits, const double *xs, ptrdiff_t rows, ptrdiff_t n, double temperature,
                      double *ys, unsigned char *ss);
ptrdiff_t softmax_plain(int log_form, int bits, const double *xs, ptrdiff_t rows, ptrdiff_t n, double temperature,
                        double *ys, unsigned char *ss);
void exp_entry_fma(double h, double l, double *out);
void exp_entry_avx512(double h, double l, double *out);
ptrdiff_t run_avx512(int f, int quantity, int bits, const double *xs, const double *gs, const double *ps, double *ys,
                     unsigned char *ss, ptrdiff_t n);
ptrdiff_t softmax_avx512(int log_form, int bits, const double *xs, ptrdiff_t rows, ptrdiff_t n, double temperature,
                         double *ys, unsigned char *ss);
void exp_entry_plain(double h, double l, double *out);
void sincos_entry_avx512(double h, double l, double *out);
void sincos_entry_fma(double h, double l, double *out);
void sincos_entry_plain(double h, double l, double *out);
/* The float32 builds (_kernel_*_f32.c): the same, each value one double with its bound. */
ptrdiff_t run_avx512_f32(int f, int quantity, int bits, const double *xs, const double *gs, const double *ps,
                         double *ys, unsigned char *ss, ptrdiff_t n);
ptrdiff_t run_fma_f32(int f, int quantity, int bits, const double *xs, const double *gs, const double *ps, double *ys,
                      unsigned char *ss, ptrdiff_t n);
ptrdiff_t run_plain_f32(int f, int quantity, int bits, const double *xs, const double *gs, const double *ps,
                        double *ys, unsigned char *ss, ptrdiff_t n);
ptrdiff_t softmax_avx512_f32(int log_form, int bits, const double *xs, ptrdiff_t rows, ptrdiff_t n,
                             double temperature, double *ys, unsigned char *ss);
ptrdiff_t softmax_fma_f32(int log_form, int bits, const double *xs, ptrdiff_t rows, ptrdiff_t n, double temperature,
                          double *ys, unsigned char *ss);
ptrdiff_t softmax_plain_f32(int log_form, int bits, const double *xs, ptrdiff_t rows, ptrdiff_t n,
                            double temperature, double *ys, unsigned char *ss);
void exp_entry_avx512_f32(double h, double l, double *out);
void exp_entry_fma_f32(double h, double l, double *out);
void exp_entry_plain_f32(double h, double l, double *out);

#endif
