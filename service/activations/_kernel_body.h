/* The double-double evaluation and the rounding test of the compiled first tier (see
 * _kernel.c), W elements at a time in SIMD vectors (GCC's vector extensions).
 *
 * Included by _kernel_avx512.c, _kernel_fma.c and _kernel_plain.c: the same code compiled three
 * times, with the products' exact remainders taken by a fused multiply-add where the CPU has one
 * (AVX-512, eight lanes, or AVX2, four), and by Dekker's splitting where it does not (two).  The two give the same bits: both remainders are exact,
 * and every other operation is an IEEE double operation rounded to nearest (the build turns
 * contraction into fused multiply-adds off).
 *
 * Before including: KERNEL_FMA (1 or 0), W (lanes), RUN, SOFTMAX and EXP_ENTRY (the names of
 * the entry points; SINCOS_ENTRY in the double-double builds), and LIGHT (1 for the float32
 * builds, _kernel_*_f32.c).
 *
 * The float32 builds (LIGHT) hold every value as one double h with its bound: each operation
 * rounds to double instead of carrying a low part, and adds 2^-52 of its result to the bound.
 * A result then carries about 2^-50 of itself, a ten-millionth of float32's half unit, which
 * decides all but a few in ten million elements at a third of the double-double's cost.  Only
 * the primitives (add, mul, scale2, divide, sqrt_v, constant) differ; every function is the same
 * code, and the bounds of its explicit steps (exp's reduction and series) hold in both.
 *
 * A value is a double-double h + l with a bound e on its absolute error.  Every operation adds
 * its own rounding error to the errors it inherits, propagated through its derivative; functions
 * with two formulas (by the sign of x, say) evaluate the operands of both and select, lane by
 * lane, so that no lane branches.
 */
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "_kernel.h"

#ifndef LIGHT
#define LIGHT 0
#endif

#if KERNEL_FMA
#include <immintrin.h>
#endif

/* Every helper is inlined into the loops: a call passes its double-double structs (three
 * vectors each) through memory, and GCC at -O2 leaves the larger helpers (divide, exp_parts)
 * out of line, which costs about a third of the time. */
#define INLINE static inline __attribute__((always_inline))

typedef double vd __attribute__((vector_size(8 * W)));
typedef long long vl __attribute__((vector_size(8 * W)));
typedef float vf __attribute__((vector_size(4 * W)));
typedef int vi __attribute__((vector_size(4 * W)));
typedef signed char vc __attribute__((vector_size(W)));

typedef struct {
    vd h, l; /* the value h + l, |l| <= ulp(h) / 2 */
    vd e;    /* a bound on |true value - (h + l)| */
} V;

/* Per-operation relative error of the double-double operations used here (each is below
 * 2^-103 by the analyses of Joldes, Muller and Popescu 2017); 2^-100 leaves a margin. */
#define U 0x1p-100
/* Per-operation absolute error where parts underflow: a product's error term and the low
 * parts' products lose their bits below 2^-1074 (sums of doubles are exact there).  Taken far
 * larger, 2^-1000, and used for every absolute floor below: a bound near 2^-1074 is a subnormal
 * number, and the products that propagate it then take the CPU's slow path for subnormal
 * operands (about a hundred cycles each; elu's bounds at x > 0 halved its speed).  Only results
 * below about 2^-940 (the exp underflow window) are left to the slower routes by it. */
#define T 0x1p-1000
/* The largest |x| this tier takes; beyond it the slower routes answer. */
#define BIG 0x1p200

/* -- lanes ---------------------------------------------------------------------------------- */

INLINE vd splat(double c) { return (vd){0} + c; }

INLINE vd vabs(vd x) { return (vd)((vl)x & 0x7fffffffffffffffLL); }

/* m ? a : b, lane by lane (m: all ones or all zeros). */
INLINE vd sel(vl m, vd a, vd b) { return (vd)((m & (vl)a) | (~m & (vl)b)); }

INLINE V selv(vl m, V a, V b) { return (V){sel(m, a.h, b.h), sel(m, a.l, b.l), sel(m, a.e, b.e)}; }

INLINE vd inf_where(vl m, vd a) { return sel(m, splat(INFINITY), a); }

/* -- error-free transformations ---------------------------------------------------------- */

INLINE void two_sum(vd a, vd b, vd *s, vd *t) {
    vd x = a + b, bb = x - a;
    *t = (a - (x - bb)) + (b - bb);
    *s = x;
}

INLINE void fast_two_sum(vd a, vd b, vd *s, vd *t) {
    vd x = a + b;
    *t = b - (x - a);
    *s = x;
}

INLINE void two_prod(vd a, vd b, vd *p, vd *t) {
    vd x = a * b;
#if KERNEL_FMA && W == 8
    *t = (vd)_mm512_fmadd_pd((__m512d)a, (__m512d)b, (__m512d)-x);
#elif KERNEL_FMA
    *t = (vd)_mm256_fmadd_pd((__m256d)a, (__m256d)b, (__m256d)-x);
#else
    vd c = 134217729.0 * a; /* Dekker's split, 2^27 + 1 */
    vd ah = c - (c - a), al = a - ah;
    vd d = 134217729.0 * b;
    vd bh = d - (d - b), bl = b - bh;
    *t = ((ah * bh - x) + ah * bl + al * bh) + al * bl;
#endif
    *p = x;
}

/* -- double-double values with bounds ---------------------------------------------------- */

INLINE V exact(vd x) { return (V){x, splat(0.0), splat(0.0)}; }

INLINE V zero(void) { return exact(splat(0.0)); }

#if LIGHT
INLINE V constant(double h, double l) {
    /* (float32 build) h alone: its error is |l| and the double-double's 2^-106 |c|. */
    return (V){splat(h), splat(0.0), splat(fabs(l) + fabs(h) * 0x1p-104)};
}

#else
INLINE V constant(double h, double l) {
    /* A published constant held as h + l: its own error is below 2^-106 |c|. */
    return (V){splat(h), splat(l), splat(fabs(h) * 0x1p-105)};
}

#endif

INLINE vd mag(V a) { return vabs(a.h) + vabs(a.l); }

#if LIGHT
/* (float32 build) h + l rounded to a double, l folded into the bound: |h + l - fl(h + l)| is at
 * most 2^-53 |fl(h + l)|. */
INLINE V fold(V a) {
    vd h = a.h + a.l;
    return (V){h, splat(0.0), a.e + sel(a.l != 0, 0x1p-53 * vabs(h), splat(0.0))};
}

/* (float32 build) Each operation rounds once or a few times to a double, each rounding within
 * 2^-53 of its result (or 2^-1075 where it is subnormal, below T); the bounds take 2^-52, twice
 * that, which also covers the rounding of the bounds' own sums. */
INLINE V add(V a, V b) {
    vd s1, t1;
    two_sum(a.h, b.h, &s1, &t1);
    vd s2 = a.l + b.l, s = s1 + s2;
    /* The sum of two doubles that TwoSum finds exact is exact (piecewise polynomials' values and
     * their ties stay decidable), as in the double-double build. */
    vl exactly = (a.l == 0) & (b.l == 0) & (t1 == 0);
    return (V){s, splat(0.0), a.e + b.e + sel(exactly, splat(0.0), 0x1p-52 * (vabs(s1) + vabs(s2) + vabs(s)))};
}

#else
INLINE V add(V a, V b) {
    vd sh, sl, th, tl;
    two_sum(a.h, b.h, &sh, &sl);
    two_sum(a.l, b.l, &th, &tl);
    sl += th;
    fast_two_sum(sh, sl, &sh, &sl);
    sl += tl;
    fast_two_sum(sh, sl, &sh, &sl);
    /* The sum of two doubles is exact (TwoSum): its bound stays the inputs'. */
    vl exactly = (a.l == 0) & (b.l == 0);
    return (V){sh, sl, a.e + b.e + sel(exactly, splat(0.0), U * vabs(sh))};
}

#endif

INLINE V neg(V a) { return (V){-a.h, -a.l, a.e}; }

INLINE V sub(V a, V b) { return add(a, neg(b)); }

INLINE V add_d(V a, double b) { return add(a, exact(splat(b))); }

#if LIGHT
INLINE V mul(V a, V b) {
    V x = fold(a), y = fold(b);
    vd p, t;
    two_prod(x.h, y.h, &p, &t);
    /* Exact where the remainder is 0 and cannot have underflowed, or a factor is an exact 0. */
    vl exactly = ((t == 0) & (vabs(p) >= 0x1p-968) & (x.e == 0) & (y.e == 0)) | ((x.h == 0) & (x.e == 0)) |
                 ((y.h == 0) & (y.e == 0));
    vd e = x.e * vabs(y.h) + y.e * vabs(x.h) + x.e * y.e + 0x1p-52 * vabs(p) + T;
    return (V){p, splat(0.0), sel(exactly, splat(0.0), e)};
}

/* a times a power of two p <= 1: exact but where it becomes subnormal. */
INLINE V scale2(V a, double p) {
    V x = fold(a);
    vd h = x.h * p;
    vl lost = (x.h != 0) & (vabs(h) < 0x1p-1021);
    vd floor = sel(x.e > 0, splat(T), splat(0.0)); /* (as in mul) */
    return (V){h, splat(0.0), x.e * p + floor + sel(lost, splat(T), splat(0.0))};
}

#else
INLINE V mul(V a, V b) {
    vd ph, pl;
    two_prod(a.h, b.h, &ph, &pl);
    pl += a.h * b.l + a.l * b.h;
    fast_two_sum(ph, pl, &ph, &pl);
    /* The product of two doubles is exact (its remainder is), but where the remainder
     * underflows. */
    vl exactly = (a.l == 0) & (b.l == 0) & ((vabs(ph) >= 0x1p-968) | (a.h == 0) | (b.h == 0));
    /* The propagated error is at least T where an input has any: the
     * products below can underflow to 0, which would make an inexact 0 look exact. */
    vd floor = sel((a.e > 0) | (b.e > 0), splat(T), splat(0.0));
    vd e = a.e * mag(b) + b.e * mag(a) + a.e * b.e + floor + sel(exactly, splat(0.0), U * vabs(ph) + T);
    return (V){ph, pl, e};
}

/* a times a power of two p <= 1: exact but where the low part becomes subnormal. */
INLINE V scale2(V a, double p) {
    vd l = a.l * p;
    vl lost = (l != 0) & (vabs(l) < 0x1p-1021);
    vd floor = sel(a.e > 0, splat(T), splat(0.0)); /* (as in mul) */
    return (V){a.h * p, l, a.e * p + floor + sel(lost, splat(T), splat(0.0))};
}

#endif

INLINE V mul_d(V a, double b) { return mul(a, exact(splat(b))); }

#if LIGHT
INLINE V divide(V a, V b) {
    /* |a/b - x/y| <= (e_x + |x/y| e_y) / (|y| - e_y), and the quotient's own rounding. */
    V x = fold(a), y = fold(b);
    vd q = x.h / y.h;
    vd below = vabs(y.h) - y.e;
    vd e = (x.e + vabs(q) * (1 + 0x1p-50) * y.e) / below;
    /* Exact where q y is x exactly (its product and remainder), both exact. */
    vd p, t;
    two_prod(q, y.h, &p, &t);
    vl whole = (x.e == 0) & (y.e == 0) & (p == x.h) & (t == 0) & (y.h != 0);
    return (V){q, splat(0.0), sel(whole, splat(0.0), inf_where(~(below > 0), e) + 0x1p-52 * vabs(q) + T)};
}

/* (A quotient on a midpoint of float32 is left to the slower routes.) */
INLINE V divide_exact(V a, V b) { return divide(a, b); }

INLINE V sqrt_v(V a) {
    V x = fold(a);
    vd s, root;
    vd below = x.h - x.e;
    for (int k = 0; k < W; k++) {
        s[k] = sqrt(x.h[k] > 0 ? x.h[k] : 0.0);
        root[k] = sqrt(below[k] > 0 ? below[k] : 0.0);
    }
    /* |sqrt a - sqrt x| <= e_x / (sqrt a + sqrt x) <= e_x / (2 sqrt(x - e_x)) */
    vd prop = inf_where(~(below > 0), x.e / (2 * root));
    return (V){s, splat(0.0), prop + 0x1p-52 * s + T};
}

#else
INLINE V divide(V a, V b) {
    /* q = a.h / b.h corrected once by the remainder a - q b (Joldes, Muller and Popescu's
     * DWDivDW1: relative error below 3.5 2^-106); where |b| - b.e is not positive the bound is
     * infinite. */
    vd q1 = a.h / b.h;
    V r = sub((V){a.h, a.l, splat(0.0)}, mul((V){b.h, b.l, splat(0.0)}, exact(q1)));
    vd q2 = r.h / b.h;
    vd qh, ql;
    fast_two_sum(q1, q2, &qh, &ql);
    vd below = vabs(b.h) - vabs(b.l) - b.e;
    vd e = (a.e + (vabs(qh) + vabs(ql)) * b.e) / below;
    /* The remainder's product loses its bits below 2^-1074 where b is tiny: T / |b| more. */
    return (V){qh, ql, inf_where(~(below > 0), e) + U * vabs(qh) + T + T / vabs(b.h)};
}

/* a / b for exact a and b (their bounds 0) where the quotient may be exactly a midpoint of the
 * format (a rational function's value): two corrections, and a bound of 0 where the second
 * remainder is 0 (the quotient is then exactly h + l, and the rounding test rounds it, ties to
 * even). */
INLINE V divide_exact(V a, V b) {
    vd q1 = a.h / b.h;
    V r = sub(a, mul(b, exact(q1)));
    vd q2 = r.h / b.h;
    V r2 = sub(r, mul(b, exact(q2)));
    vd qh, ql;
    fast_two_sum(q1, q2, &qh, &ql);
    V q = divide(a, b);
    vl whole = (a.e == 0) & (b.e == 0) & (r2.h == 0) & (r2.l == 0) & (b.l == 0);
    return selv(whole, (V){qh, ql, splat(0.0)}, q);
}

INLINE V sqrt_v(V a) {
    /* a > 0: s = sqrt(h) and one Newton step in double-double. */
    vd s;
    for (int k = 0; k < W; k++) s[k] = sqrt(a.h[k]);
    V s2 = mul(exact(s), exact(s));
    V r = sub((V){a.h, a.l, splat(0.0)}, s2);
    V q = add(exact(s), exact(r.h / (2 * s)));
    vd below = a.h - vabs(a.l) - a.e;
    vd root;
    for (int k = 0; k < W; k++) root[k] = sqrt(below[k] > 0 ? below[k] : 0.0);
    vd prop = inf_where(~(below > 0), a.e / (2 * root));
    q.e = prop + U * vabs(q.h) + vabs(r.h) * vabs(r.h) / (s * s * s) + T;
    return q;
}

#endif

/* -- exp ------------------------------------------------------------------------------------ */

/* e^r - 1 for |r| <= ln 2 / 512 (about 1.36e-3), r = rh + rl: r + r^2/2 + ... */
INLINE V expm1_small(vd rh, vd rl) {
    vd hh, hl, sh, sl;
    two_prod(rh, 0.5 * rh, &hh, &hl); /* r^2 / 2, exact */
    vd r2 = rh * rh;
    vd q3 = r2 * rh *
            (1.0 / 6 + rh * (1.0 / 24 + rh * (1.0 / 120 + rh * (1.0 / 720 + rh * (1.0 / 5040 + rh * (1.0 / 40320))))));
    two_sum(rh, hh, &sh, &sl);
    vd cross = rh * rl;
    vd tail = sl + hl + rl + cross + q3;
    vd parts = vabs(sl) + vabs(hl) + vabs(rl) + vabs(cross) + vabs(q3);
    vd vh, vlo;
    fast_two_sum(sh, tail, &vh, &vlo);
    /* Rounding of q3 (its coefficients and Horner steps) and of the tail's sums, the terms
     * left out (r^9/9!, and r_l^2/2 + r^2 r_l/2 from the low part), each well inside: */
    vd r8 = r2 * r2 * r2 * r2;
    vd e = 0x1p-49 * (vabs(q3) + parts) + r8 * vabs(rh) * (1.0 / 300000) + vabs(rl) * (vabs(rl) + r2) +
           0x1p-104 * vabs(vh) + T;
    return (V){vh, vlo, e};
}

INLINE vd pow2(vl m) {
    /* 2^m for -1022 <= m <= 1023. */
    return (vd)((m + 1023) << 52);
}

/* e^a = 2^m 2^(j/256) e^r, |r| <= ln 2 / 512; *small: e^a - 1 where j = m = 0 (|a| below about
 * 1.35e-3), accurate relative to itself, and *none: the lanes where it is not. */
INLINE V exp_parts(V a, V *small, vl *none) {
    vl over = a.h > 709.0, under = a.h < -746.0;
    vd ah = sel(over | under, splat(0.0), a.h);
    vd al = sel(over | under, splat(0.0), a.l);
    /* n = a.h 256 / ln 2 rounded to an integer (to nearest, by the 1.5 2^52 shift). */
    vd shifted = ah * INV_L + 0x1.8p52;
    vd n = shifted - 0x1.8p52;
    vl N = ((vl)shifted & ((1LL << 52) - 1)) - (1LL << 51);
    vl j = N & 255;
    vl m = (N - j) >> 8;
    vd r1 = ah - n * L1; /* exact: n L1 has at most 52 bits, and is within a factor 2 of ah */
    vd th, tl, rh, rl;
    two_prod(n, splat(L2), &th, &tl);
    two_sum(r1, -th, &rh, &rl);
    rl += al - tl - n * L3;
    fast_two_sum(rh, rl, &rh, &rl);
    V p = expm1_small(rh, rl);
    /* Error of the reduction: n L3's rounding, the last sums, and L's own error. */
    vd reduce = 0x1p-51 * (vabs(n * L3) + vabs(tl) + vabs(al)) + 0x1p-103 * vabs(rh) + 0x1p-140 * vabs(n);
    vd tbh, tbl;
    for (int k = 0; k < W; k++) {
        tbh[k] = TBL_H[j[k]];
        tbl[k] = TBL_L[j[k]];
    }
    V t = {tbh, tbl, splat(0.0)};
    V v = add(t, mul(t, p)); /* 2^(j/256) (1 + p) */
    vd e = v.e + tbh * (p.e + reduce) * 1.01 + tbh * 0x1p-105;
    /* 2^m in two steps, each a normal power of two: exact but where the result is subnormal. */
    vl m1 = m >> 1;
    vd s1 = pow2(m1), s2 = pow2(m - m1);
    vd vh = v.h * s1 * s2, vlo = v.l * s1 * s2;
    e = e * s1 * s2 + T;
    fast_two_sum(vh, vlo, &vh, &vlo);
    /* The argument's error: e^(a +- a.e) = e^a e^(+-a.e). */
    vl wide = a.e > 0x1p-20;
    vd amp = inf_where(wide, a.e * (1 + a.e));
    vd out_e = e + UEXP * vabs(vh) + vabs(vh) * (1 + UEXP) * amp;
    V result = {sel(over, splat(INFINITY), sel(under, splat(0.0), vh)), sel(over | under, splat(0.0), vlo),
                sel(over, splat(INFINITY), sel(under, splat(T), out_e))}; /* e^a < 2^-1076 */
    if (small) {
        vd pamp = inf_where(wide, a.e * (1 + a.e) * (1 + vabs(p.h) * 1.01));
        *small = (V){p.h, p.l, p.e + pamp + 0x1p-60 * p.e};
        *none = (N != 0) | over | under;
    }
    return result;
}

INLINE V exp_v(V a) { return exp_parts(a, NULL, NULL); }

/* e^a - 1, accurate relative to the result near 0. */
INLINE V expm1_v(V a) {
    V small;
    vl none;
    V e = exp_parts(a, &small, &none);
    return selv(none, add_d(e, -1.0), small);
}

/* log w for a normal w > 0, to about 2^-50 relative: 2^k m, m in [sqrt(1/2), sqrt(2)), and
 * log m = 2 atanh(s), s = (m - 1)/(m + 1).  Only Newton's starting point (log1p_v): its accuracy
 * makes the step's bound small, never the result wrong. */
INLINE vd log_start(vd w) {
    vl b = (vl)w;
    vl k = ((b >> 52) & 0x7ff) - 1023;
    vd m = (vd)((b & ((1LL << 52) - 1)) | (1023LL << 52)); /* [1, 2) */
    vl big = m > 1.4142135623730951;
    m = sel(big, 0.5 * m, m);
    k = k + (big & 1);
    vd s = (m - 1) / (m + 1), s2 = s * s;
    vd p = s2 * (1.0 / 3 + s2 * (1.0 / 5 + s2 * (1.0 / 7 + s2 * (1.0 / 9 + s2 * (1.0 / 11 + s2 * (1.0 / 13 + s2 * (1.0 / 15 + s2 * (1.0 / 17))))))));
    return __builtin_convertvector(k, vd) * 0.6931471805599453 + 2 * (s + s * p);
}

/* log(1 + t) for t >= 0. */
INLINE V log1p_v(V t) {
    /* Below 2^-8: t - t^2/2 + t^3 (1/3 - t/4 + ...), the tail in double, t^10/10 left out. */
    vd x = t.h;
    vd tail = x * x * x *
              (1.0 / 3 - x * (1.0 / 4 - x * (1.0 / 5 - x * (1.0 / 6 - x * (1.0 / 7 - x * (1.0 / 8 - x * (1.0 / 9)))))));
    V half = mul(t, mul_d(t, -0.5));
    V series = add(add(t, half), exact(tail));
    vd x2 = x * x;
    series.e += 0x1p-50 * vabs(tail) + x2 * x2 * x2 * x2 * x2 * 0.11;
    /* Above: w = 1 + t; y0 = log(w_h) in double; one Newton step y = y0 + w e^-y0 - 1. */
    V w = add(exact(splat(1.0)), t);
    vd y0 = log_start(w.h);
    V z = exp_v(exact(-y0));
    V c = add_d(mul(w, z), -1.0);
    V newton = add(exact(y0), c);
    /* Newton's step leaves at most c^2 (|c| about 2^-50 from log_start). */
    newton.e += c.h * c.h + t.e;
    return selv(t.h < 0x1p-8, series, newton);
}

/* -- the functions -------------------------------------------------------------------------- */

INLINE V absv(V z) { return selv(z.h < 0, neg(z), z); }

INLINE V sigmoid_v(V z) {
    /* 1 / (1 + u) for z >= 0, u / (1 + u) below, u = e^-|z|. */
    V u = exp_v(neg(absv(z)));
    V num = selv(z.h >= 0, exact(splat(1.0)), u);
    return divide(num, add_d(u, 1.0));
}

INLINE V tanh_v(V z) {
    /* tanh |z| = -m / (2 + m), m = e^-2|z| - 1; odd. */
    V m = expm1_v(mul_d(absv(z), -2.0));
    V t = divide(neg(m), add_d(m, 2.0));
    return selv(z.h < 0, neg(t), t);
}

INLINE V softplus_core(V z) {
    /* log(1 + e^z) = max(z, 0) + log1p(e^-|z|). */
    V l = log1p_v(exp_v(neg(absv(z))));
    return selv(z.h > 0, add(z, l), l);
}

/* The standard normal distribution function Phi(x) = erfc(-x/sqrt 2) / 2, t = x/sqrt 2:
 * - |t| < ERF_SPLIT (3; 2.5 in the float32 build): erf t = (2/sqrt pi) t sum_n (-1)^n t^2n /
 *   (n! (2n+1)), Horner's rule in u = t^2,
 *   the terms from n = 36 in double (below 2^-30 there), n = 72 on left out: an alternating
 *   series whose terms decrease from n > u, so the first term left out bounds the rest;
 * - beyond: erfc |t| = e^-t^2 / sqrt pi / g_0, g_k = |t| + ((k+1)/2) / g_(k+1) (Laplace's
 *   continued fraction).  Its approximants alternate about the true value: the tail from level
 *   16 is taken from depths 60 and 61 (in double), the interval between the two holding it, and
 *   levels 15 .. 0 in double-double, where each level damps an error below it. */
INLINE int any_lane(vl m) {
    for (int k = 0; k < W; k++)
        if (m[k]) return 1;
    return 0;
}

/* Where the series gives way to the continued fraction: 3; in the float32 build 2.5, where the
 * series' alternating terms (up to e^(t^2)) leave Phi's 2^-52 rounding still far below its value. */
#if LIGHT
#define ERF_SPLIT 2.5
#else
#define ERF_SPLIT 3.0
#endif

INLINE V phi_v(V X) {
    V t = mul(X, constant(K_ISQ2_H, K_ISQ2_L));
    vl small = vabs(t.h) < ERF_SPLIT;
    /* (A branch no lane takes is not evaluated; what it would give is never selected.) */
    V result_small = zero(), result_large = zero();
    if (any_lane(small)) {
        V ts = selv(small, t, zero());
        V u = mul(ts, ts);
        double c = ERF_TAIL[ERF_TERMS - 1];
        vd tail = splat(c), size = splat(fabs(c));
        for (int n = ERF_TERMS - 2; n >= ERF_DD; n--) {
            tail = tail * u.h + ERF_TAIL[n];
            size = size * vabs(u.h) + fabs(ERF_TAIL[n]);
        }
        vd u2 = u.h * u.h, u4 = u2 * u2, u8 = u4 * u4, u16 = u8 * u8, u36 = u16 * u16 * u4;
        V acc = {tail, splat(0.0), 0x1p-44 * size + u36 * fabs(ERF_NEXT) * 1.01};
        for (int n = ERF_DD - 1; n >= 0; n--) acc = add(mul(acc, u), constant(ERF_H[n], ERF_L[n]));
        V erf = mul(mul(ts, acc), constant(K_2SPI_H, K_2SPI_L));
        result_small = scale2(add_d(erf, 1.0), 0.5);
    }
    if (any_lane(~small)) {
        V a = selv(small, exact(splat(3.0)), absv(t));
        vd ga = a.h, gb = a.h;
        for (int k = 60; k > 16; k--) ga = a.h + (0.5 * k) / ga;
        for (int k = 61; k > 16; k--) gb = a.h + (0.5 * k) / gb;
        vd mid = 0.5 * (ga + gb);
        /* The bracket, the doubles' rounding (2^-52 a level, damped below), and a.l left out. */
        V g = {mid, splat(0.0), 0.5 * vabs(ga - gb) + 0x1p-44 * mid + 2 * vabs(a.l)};
        for (int k = 16; k >= 1; k--) g = add(a, divide(exact(splat(0.5 * k)), g));
        V erfc = divide(mul(exp_v(neg(mul(a, a))), constant(K_ISPI_H, K_ISPI_L)), g);
        V half = scale2(erfc, 0.5);
        result_large = selv(t.h > 0, add_d(neg(half), 1.0), half);
    }
    return selv(small, result_small, result_large);
}


/* -- sin and cos ---------------------------------------------------------------------------- */

/* sin t and cos t of an exact t = th + tl (|tl| <= ulp(th) / 2, |th| <= 2^19).
 *
 * t = k pi/2 + r: k = th 2/pi rounded, r = th - k P1 - k P2 - k P3 + tl, pi/2 = P1 + P2 + P3 to
 * below 2^-138 (th - k P1 is exact: k P1 has at most 53 bits and a multiple of ulp(th) below 1
 * is); then r = j/128 + b, |b| <= 1/256, from the tables' sin and cos of j/128 and the Taylor
 * series of sin b and cos b (b^3/6 and b^4/24 on in double, b^11/11! and b^10/10! on left out). */
INLINE void sincos_v(vd th, vd tl, V *sin_t, V *cos_t) {
    vd shifted = th * TWO_OVER_PI + 0x1.8p52;
    vd k = shifted - 0x1.8p52;
    vl K = ((vl)shifted & ((1LL << 52) - 1)) - (1LL << 51);
    vd r1 = th - k * PIO2_1;
    vd ph, pl, rh, rl;
    two_prod(k, splat(PIO2_2), &ph, &pl);
    two_sum(r1, -ph, &rh, &rl);
    vd k3 = k * PIO2_3;
    vd low = (tl - pl) - k3;
    vd parts = vabs(tl) + vabs(pl) + vabs(k3) + vabs(rl);
    two_sum(rh, rl + low, &rh, &rl);
    /* The reduction's roundings (of k P3 and the low parts' sums) and pi/2's own error. */
    vd reduce = 0x1p-50 * parts + 0x1p-137 * vabs(k);
    /* j = r 128 rounded; b = r - j/128 (exact: j/128 is within a factor 2 of rh, or 0). */
    vd sj = rh * 128.0 + 0x1.8p52;
    vd a = sj - 0x1.8p52;
    vl J = ((vl)sj & ((1LL << 52) - 1)) - (1LL << 51);
    vd bh = rh - a * 0.0078125;
    vd b2 = bh * bh;
    /* sin b = b - b^3/6 + ..., with rl entering to first order (its square and rl b^2 bound the rest). */
    vd cs = b2 * bh * (-1.0 / 6 + b2 * (1.0 / 120 + b2 * (-1.0 / 5040 + b2 * (1.0 / 362880))));
    vd sh, sl;
    two_sum(bh, cs + rl, &sh, &sl);
    vd b10 = b2 * b2 * b2 * b2 * b2;
    vd es = 0x1p-48 * (vabs(cs) + vabs(rl)) + vabs(rl) * (b2 + vabs(rl)) + b10 * vabs(bh) * (1.0 / 39916800) +
            0x1p-104 * vabs(sh) + reduce + T;
    /* cos b = 1 - b^2/2 + b^4/24 - ..., b^2/2 exact; rl enters as -rl b. */
    vd hh, hl, ch, cl;
    two_prod(bh, 0.5 * bh, &hh, &hl);
    vd c4 = b2 * b2 * (1.0 / 24 + b2 * (-1.0 / 720 + b2 * (1.0 / 40320)));
    two_sum(splat(1.0), -hh, &ch, &cl);
    vd cross = bh * rl;
    vd tail = ((cl - hl) + c4) - cross;
    vd ctail = vabs(cl) + vabs(hl) + vabs(c4) + vabs(cross);
    fast_two_sum(ch, tail, &ch, &cl);
    vd ec = 0x1p-48 * ctail + vabs(rl) * (b2 + vabs(rl)) + b10 * (1.0 / 3628800) + 0x1p-104 + reduce + T;
    V sb = {sh, sl, es}, cb = {ch, cl, ec};
    /* sin r = sin a cos b + cos a sin b, cos r = cos a cos b - sin a sin b, a = j/128. */
    vl neg_j = J < 0;
    vl aj = (neg_j & -J) | (~neg_j & J);
    vd sah, sal, cah, cal;
    for (int lane = 0; lane < W; lane++) {
        long long i = aj[lane] < TRIG_N ? aj[lane] : 0;
        sah[lane] = SIN_H[i];
        sal[lane] = SIN_L[i];
        cah[lane] = COS_H[i];
        cal[lane] = COS_L[i];
    }
    V sa = {sel(neg_j, -sah, sah), sel(neg_j, -sal, sal), 0x1p-105 * sah};
    V ca = {cah, cal, 0x1p-105 * cah};
    V sr = add(mul(sa, cb), mul(ca, sb));
    V cr = sub(mul(ca, cb), mul(sa, sb));
    /* The quadrant: sin t = sin r, cos r, -sin r, -cos r for k = 0, 1, 2, 3 mod 4; cos t follows. */
    vl q = K & 3;
    vl swap = (q & 1) != 0, neg_s = (q & 2) != 0, neg_c = ((q + 1) & 2) != 0;
    V s = selv(swap, cr, sr), c = selv(swap, sr, cr);
    *sin_t = selv(neg_s, neg(s), s);
    *cos_t = selv(neg_c, neg(c), c);
}

/* sin and cos of a x for snake (a > 0): the lanes where a x is within the reduction's range (up
 * to 2^19) and not so small that its exact low part underflows. */
INLINE void snake_parts(vd x, double a, vl *ok, V *s, V *c) {
    vd th, tl;
    two_prod(x, splat(a), &th, &tl);
    vl fits = (vabs(th) <= 0x1p19) & ((vabs(th) >= 0x1p-300) | (x == 0));
    if (!(a > 0)) fits = fits & 0;
    *ok = *ok & fits;
    sincos_v(sel(fits, th, splat(0.0)), sel(fits, tl, splat(0.0)), s, c);
}

/* The value of function f at x; params as the registry orders them.  *ok: the lanes this tier
 * takes (the others are left to the slower routes). */
INLINE V value(int f, vd x0, const double *p, vl *ok, int bits) {
    *ok = vabs(x0) <= BIG;
    vd x = sel(*ok, x0, splat(0.0));
    V X = exact(x);
    vl positive = x > 0;
    switch (f) {
    case F_EXPONENTIAL:
        return exp_v(X);
    case F_SIGMOID:
        return sigmoid_v(X);
    case F_TANH:
        return tanh_v(X);
    case F_SILU:
        return mul(X, sigmoid_v(mul_d(X, p[0])));
    case F_QUICK_GELU:
        return mul(X, sigmoid_v(mul(X, constant(K_1702_H, K_1702_L))));
    case F_SOFTPLUS: {
        /* log(1 + e^z) / beta, z = beta x; for z > 0, x + log1p(e^-z) / beta. */
        double beta = p[0];
        if (!(beta > 0)) *ok = *ok & 0;
        V z = mul_d(X, beta);
        V l = divide(log1p_v(exp_v(neg(absv(z)))), exact(splat(beta)));
        return selv(z.h > 0, add(X, l), l);
    }
    case F_LOG_SIGMOID:
        return neg(softplus_core(neg(X)));
    case F_ELU:
        return selv(positive, X, mul_d(expm1_v(selv(positive, zero(), X)), p[0]));
    case F_SELU:
        return selv(positive, mul(X, constant(K_SCALE_H, K_SCALE_L)),
                    mul(expm1_v(selv(positive, zero(), X)), constant(K_SA_H, K_SA_L)));
    case F_CELU: {
        if (!(p[0] > 0)) *ok = *ok & 0;
        V t = divide(selv(positive, zero(), X), exact(splat(p[0])));
        return selv(positive, X, mul_d(expm1_v(t), p[0]));
    }
    case F_MISH: {
        /* x tanh(softplus(x)) = x N / D with u = e^-|x|: for x <= 0, N = u (u + 2), D = N + 2;
         * for x > 0, N = 1 + 2u, D = 1 + 2u + 2u^2. */
        V u = exp_v(neg(absv(X)));
        V n_neg = mul(u, add_d(u, 2.0));
        V n_pos = add_d(mul_d(u, 2.0), 1.0);
        V d_neg = add_d(n_neg, 2.0);
        V d_pos = add(n_pos, mul_d(mul(u, u), 2.0));
        return mul(X, divide(selv(positive, n_pos, n_neg), selv(positive, d_pos, d_neg)));
    }
    case F_GELU: {
        /* x Phi(x); beyond |x| = 40 Phi is 0 or 1 within 2^-1100 (the slower routes take x < -40,
         * whose result is below the subnormals). */
        *ok = *ok & (x0 > -40.0);
        V xs = selv(vabs(x) <= 40.0, X, exact(splat(40.0)));
        V phi = phi_v(xs);
        /* Beyond 40, x Phi(x) = x - x Phi(-x), Phi(-x) < 2^-1000: x, inexact (a product with g
         * can sit on a midpoint that the tail decides). */
        V beyond = {x, splat(0.0), vabs(x) * 0x1p-1000};
        return selv(x > 40.0, beyond, mul(xs, phi));
    }
    case F_GELU_TANH: {
        /* x sigma(v), v = 2 sqrt(2/pi) (x + 0.044715 x^3). */
        *ok = *ok & (vabs(x0) <= 0x1p40);
        V xs = selv(vabs(x) <= 0x1p40, X, zero());
        V x3 = mul(mul(xs, xs), xs);
        V v = mul(add(xs, mul(x3, constant(K_A_H, K_A_L))), constant(K_GT_H, K_GT_L));
        return mul(xs, sigmoid_v(v));
    }
    case F_TANHSHRINK:
        return sub(X, tanh_v(X));
    case F_SOFTSIGN:
        return divide(X, add_d(exact(vabs(x)), 1.0));
    case F_LEAKY_RELU: /* and prelu with one weight */
        return selv(x < 0, mul_d(X, p[0]), exact(x + 0.0));
    case F_RRELU: {
        vd sh, sl;
        two_sum(splat(p[0]), splat(p[1]), &sh, &sl); /* lower + upper, exact */
        V slope = {0.5 * sh, 0.5 * sl, splat(fabs(p[0] + p[1]) < 0x1p-1000 ? T : 0.0)};
        return selv(x < 0, mul(X, slope), exact(x + 0.0));
    }
    case F_SOFTSHRINK: {
        vd lam = splat(p[0]);
        return selv(x > lam, sub(X, exact(lam)), selv(x < -lam, add(X, exact(lam)), zero()));
    }
    case F_RELU_SQUARED:
        return selv(positive, mul(X, X), zero());
    case F_HARD_SIGMOID:
        return selv(x <= -3, zero(), selv(x >= 3, exact(splat(1.0)), divide_exact(add_d(X, 3.0), exact(splat(6.0)))));
    case F_HARD_SILU: {
        /* x (x + 3) / 6.  For float32 the quotient proper (divide_exact): a float32 x makes
         * x (x + 3) exact, and its sixth lands exactly on a midpoint of float32 for a few inputs in
         * a hundred thousand, which a product by 1/6 (inexact) cannot tell from a near-tie. */
        V t = mul(X, add_d(X, 3.0));
        V mid = bits == 24 ? divide_exact(t, exact(splat(6.0))) : mul(t, constant(K_SIXTH_H, K_SIXTH_L));
        return selv(x <= -3, zero(), selv(x >= 3, X, mid));
    }
    case F_SPARSE_PLUS: {
        V t = add_d(X, 1.0);
        return selv(x <= -1, zero(), selv(x >= 1, X, scale2(mul(t, t), 0.25)));
    }
    case F_SPARSE_SIGMOID:
        return selv(x <= -1, zero(), selv(x >= 1, exact(splat(1.0)), scale2(add_d(X, 1.0), 0.5)));
    case F_STAR_RELU: /* s relu(x)^2 + b */
        return selv(positive, add_d(mul_d(mul(X, X), p[0]), p[1]), exact(splat(p[1] + 0.0)));
    case F_SMELU: {
        /* 0 below -beta, x above beta, (x + beta)^2 / (4 beta) between. */
        double beta = p[0];
        if (!(beta > 0 && 4 * beta < INFINITY)) *ok = *ok & 0;
        V t = add_d(X, beta);
        V mid = divide(mul(t, t), exact(splat(4 * beta)));
        return selv(x <= -beta, zero(), selv(x >= beta, X, mid));
    }
    case F_RATIONAL: {
        /* P(x) / (1 + |B(x)|), Horner's rule: p = (count of a, count of b, a_0 .. a_m, b_1 .. b_n). */
        int na = (int)p[0], nb = (int)p[1];
        const double *a = p + 2, *b = p + 2 + na;
        *ok = *ok & (vabs(x0) <= 0x1p100);
        V xs = selv(vabs(x) <= 0x1p100, X, zero());
        V num = exact(splat(a[na - 1]));
        for (int i = na - 2; i >= 0; i--) num = add_d(mul(num, xs), a[i]);
        V den = exact(splat(b[nb - 1]));
        for (int i = nb - 2; i >= 0; i--) den = add_d(mul(den, xs), b[i]);
        den = mul(den, xs); /* B(x) = x (b_1 + b_2 x + ...) */
        return divide(num, add_d(absv(den), 1.0));
    }
    case F_XIELU: {
        /* alpha_p x^2 + beta x above 0; alpha_n expm1(eps) + (beta - alpha_n) x on [eps, 0];
         * beta x + alpha_n (expm1(x) - x) below eps. */
        double ap = p[0], an = p[1], beta = p[2], eps = p[3];
        V above = mul(X, add_d(mul_d(X, ap), beta));
        vd dh, dl;
        two_sum(splat(beta), splat(-an), &dh, &dl); /* beta - alpha_n, exact */
        V flat = add(mul(X, (V){dh, dl, splat(0.0)}), mul_d(expm1_v(exact(splat(eps))), an));
        V low = selv(x < eps, X, exact(splat(eps - 1.0)));
        V below = add(mul_d(low, beta), mul_d(sub(expm1_v(low), low), an));
        return selv(positive, above, selv(x >= eps, flat, below));
    }
    case F_SNAKE: { /* x + sin^2(a x) / a */
        V s, c;
        snake_parts(x, p[0], ok, &s, &c);
        V y = add(X, divide(mul(s, s), exact(splat(p[0] > 0 ? p[0] : 1.0))));
        return selv(x == 0, zero(), y); /* exactly 0 at 0 */
    }
    case F_SQUAREPLUS: {
        /* (x + s) / 2 for x >= 0, b / (2 (s - x)) below, s = sqrt(x^2 + b). */
        double b = p[0];
        *ok = *ok & (vabs(x0) <= 0x1p400);
        if (!(b > 0)) *ok = *ok & 0;
        V xs = selv(vabs(x) <= 0x1p400, X, zero());
        V s = sqrt_v(add_d(mul(xs, xs), b > 0 ? b : 1.0));
        V below = divide(exact(splat(b)), mul_d(sub(s, xs), 2.0));
        return selv(x >= 0, scale2(add(xs, s), 0.5), below);
    }
    }
    *ok = *ok & 0;
    return zero();
}

/* f'(x) for the functions whose derivative this tier has; *ok as for value(). */
INLINE V derivative(int f, vd x0, const double *p, vl *ok, int bits) {
    (void)bits;
    *ok = vabs(x0) <= BIG;
    vd x = sel(*ok, x0, splat(0.0));
    V X = exact(x);
    vl positive = x > 0;
    V one = exact(splat(1.0));
    switch (f) {
    case F_EXPONENTIAL:
        return exp_v(X);
    case F_SIGMOID:
    case F_LOG_SIGMOID: {
        /* sigma(x) sigma(-x) = u / (1 + u)^2, u = e^-|x|; log_sigmoid' = sigma(-x). */
        V u = exp_v(neg(absv(X)));
        V d = add_d(u, 1.0);
        if (f == F_SIGMOID) return divide(u, mul(d, d));
        return divide(selv(positive, u, one), d);
    }
    case F_TANH: {
        /* sech^2 x = 4u / (1 + u)^2, u = e^-2|x|. */
        V u = exp_v(mul_d(absv(X), -2.0));
        V d = add_d(u, 1.0);
        return divide(u, scale2(mul(d, d), 0.25));
    }
    case F_SILU:
    case F_QUICK_GELU:
    case F_SOFTPLUS: {
        /* z = k x; sigma(z) + z sigma(z) sigma(-z) (silu, quick_gelu); sigma(z) (softplus). */
        V z = f == F_QUICK_GELU ? mul(X, constant(K_1702_H, K_1702_L)) : mul_d(X, p[0]);
        if (f == F_SOFTPLUS && !(p[0] > 0)) *ok = *ok & 0;
        V u = exp_v(neg(absv(z)));
        V d = add_d(u, 1.0);
        vl up = z.h >= 0;
        V s = divide(selv(up, one, u), d);
        if (f == F_SOFTPLUS) return s;
        V t = divide(selv(up, u, one), d);
        return add(s, mul(z, mul(s, t)));
    }
    case F_ELU:
        return selv(positive, one, mul_d(exp_v(selv(positive, zero(), X)), p[0]));
    case F_SELU:
        return selv(positive, constant(K_SCALE_H, K_SCALE_L), mul(exp_v(selv(positive, zero(), X)), constant(K_SA_H, K_SA_L)));
    case F_CELU: {
        if (!(p[0] > 0)) *ok = *ok & 0;
        V t = divide(selv(positive, zero(), X), exact(splat(p[0])));
        return selv(positive, one, exp_v(t));
    }
    case F_SOFTSIGN: {
        V d = add_d(exact(vabs(x)), 1.0);
        return divide(one, mul(d, d));
    }
    case F_TANHSHRINK: {
        V t = tanh_v(X);
        return mul(t, t);
    }
    case F_MISH: {
        /* mish' = t + x sech^2(sp) sigma(x), t = tanh(softplus(x)), with u = e^-|x|:
         * x <= 0: t = n / (n + 2), 1 - t = 2 / (n + 2), n = u (u + 2);
         * x > 0: t = (1 + 2u) / D, 1 - t = 2u^2 / D, D = 1 + 2u + 2u^2;  sech^2 = (1 - t)(1 + t). */
        V u = exp_v(neg(absv(X)));
        V n = mul(u, add_d(u, 2.0));
        V num = selv(positive, add_d(mul_d(u, 2.0), 1.0), n);
        V den = selv(positive, add(add_d(mul_d(u, 2.0), 1.0), mul_d(mul(u, u), 2.0)), add_d(n, 2.0));
        V rest = selv(positive, mul_d(mul(u, u), 2.0), exact(splat(2.0)));
        V t = divide(num, den);
        V m = divide(rest, den); /* 1 - t */
        V sech2 = mul(m, add_d(t, 1.0));
        V sig = divide(selv(positive, one, u), add_d(u, 1.0));
        return add(t, mul(X, mul(sech2, sig)));
    }
    case F_GELU: {
        /* Phi(x) + x phi(x), phi(x) = e^(-x^2/2) / sqrt(2 pi). */
        *ok = *ok & (x0 > -40.0);
        V xs = selv(vabs(x) <= 40.0, X, exact(splat(40.0)));
        V phi = phi_v(xs);
        V density = mul(exp_v(neg(scale2(mul(xs, xs), 0.5))), constant(K_IS2PI_H, K_IS2PI_L));
        V beyond = {splat(1.0), splat(0.0), splat(0x1p-1000)}; /* 1 - Phi(-x) + x phi(x): not 1 */
        return selv(x > 40.0, beyond, add(phi, mul(xs, density)));
    }
    case F_GELU_TANH: {
        /* sigma(v) + x sigma(v) sigma(-v) v', v = K (x + a x^3), v' = K (1 + 3 a x^2). */
        *ok = *ok & (vabs(x0) <= 0x1p40);
        V xs = selv(vabs(x) <= 0x1p40, X, zero());
        V x2 = mul(xs, xs);
        V a = constant(K_A_H, K_A_L), k = constant(K_GT_H, K_GT_L);
        V v = mul(add(xs, mul(mul(x2, xs), a)), k);
        V dv = mul(add_d(mul_d(mul(x2, a), 3.0), 1.0), k);
        V u = exp_v(neg(absv(v)));
        V d = add_d(u, 1.0);
        vl up = v.h >= 0;
        V s = divide(selv(up, one, u), d);
        V t = divide(selv(up, u, one), d);
        return add(s, mul(mul(xs, dv), mul(s, t)));
    }
    case F_SQUAREPLUS: {
        /* (1 + x/s) / 2 for x >= 0, b / (2 s (s - x)) below. */
        double b = p[0];
        *ok = *ok & (vabs(x0) <= 0x1p400);
        if (!(b > 0)) *ok = *ok & 0;
        V xs = selv(vabs(x) <= 0x1p400, X, zero());
        V s = sqrt_v(add_d(mul(xs, xs), b > 0 ? b : 1.0));
        V above = scale2(add_d(divide(xs, s), 1.0), 0.5);
        V below = divide(exact(splat(b)), mul_d(mul(s, sub(s, xs)), 2.0));
        return selv(x >= 0, above, below);
    }
    case F_XIELU: {
        /* 2 alpha_p x + beta above 0; beta - alpha_n on [eps, 0]; beta + alpha_n expm1(x) below. */
        double ap = p[0], an = p[1], beta = p[2], eps = p[3];
        V above = add_d(mul_d(X, 2 * ap), beta);
        if (!(fabs(2 * ap) < INFINITY)) *ok = *ok & 0;
        vd dh, dl;
        two_sum(splat(beta), splat(-an), &dh, &dl);
        V flat = {dh, dl, splat(0.0)};
        V low = selv(x < eps, X, exact(splat(eps - 1.0)));
        V below = add_d(mul_d(expm1_v(low), an), beta);
        return selv(positive, above, selv(x >= eps, flat, below));
    }
    case F_SMELU: {
        double beta = p[0];
        if (!(beta > 0 && 2 * beta < INFINITY)) *ok = *ok & 0;
        V mid = divide_exact(add_d(X, beta), exact(splat(2 * beta)));
        return selv(x <= -beta, zero(), selv(x >= beta, one, mid));
    }
    case F_SPARSE_PLUS:
        return selv(x <= -1, zero(), selv(x >= 1, one, scale2(add_d(X, 1.0), 0.5)));
    case F_HARD_SILU:
        return selv(x <= -3, zero(), selv(x >= 3, one, divide_exact(add_d(mul_d(X, 2.0), 3.0), exact(splat(6.0)))));
    case F_STAR_RELU:
        return selv(positive, mul_d(X, 2 * p[0]), zero());
    case F_SNAKE: { /* 1 + sin(2 a x) = 1 + 2 sin(a x) cos(a x) */
        V s, c;
        snake_parts(x, p[0], ok, &s, &c);
        return selv(x == 0, exact(splat(1.0)), add_d(mul_d(mul(s, c), 2.0), 1.0)); /* exactly 1 at 0 */
    }
    }
    *ok = *ok & 0;
    return zero();
}

/* -- the rounding test ---------------------------------------------------------------------- */

/* Whether every number within v's bound rounds to the same number of the format (53 or 24
 * bits of significand), lane by lane; that number in *r. */
INLINE vl decide(V v, int bits, vd *r) {
    vd e = v.e * (1 + 0x1p-20);
    vl finite = (e < INFINITY) & (vabs(v.h) < INFINITY);
    /* An exact 0 is +0; the sign of a result that rounds to 0 is the slower routes'. */
    vl exact_zero = (v.h == 0) & (v.l == 0) & (e == 0);
    vl sure;
    if (bits == 53) {
        vd a = vabs(v.h);
        vd d = sel(v.h < 0, -v.l, v.l); /* away from zero */
        vl b = (vl)a;
        vd up = (vd)(b + 1) - a;   /* the gap to the next number away from zero */
        vd down = a - (vd)(b - 1); /* and toward it */
        vl inside = finite & (a <= 0x1p1022) & (v.h != 0);
        sure = inside & (2 * e < up - 2 * d) & (2 * e < down + 2 * d);
        /* An exact h + l: h is h + l rounded to nearest, ties to even (the last operation of
         * every value here is a rounded sum, h = fl(h + l)). */
        sure |= inside & (e == 0);
        *r = sel(exact_zero, splat(0.0), v.h);
    } else {
        /* f = h + l rounded to float32.  Rounding h alone rounds twice where h is exactly a
         * midpoint of float32 and l is not 0: h is first moved one double ULP toward l. */
        vl hb = (vl)v.h;
        vl midpoint = ((hb & ((1LL << 29) - 1)) == (1LL << 28)) & (vabs(v.h) >= 0x1p-126) & (v.l != 0);
        vl away = (v.l > 0) == (v.h > 0); /* l points away from zero: the magnitude grows */
        vl delta = (away & 1) | ~away;    /* +1 or -1 on the magnitude's bits */
        vf f = __builtin_convertvector((vd)(hb + (midpoint & delta)), vf);
        vi fb = (vi)f & 0x7fffffff;
        vd a = __builtin_convertvector((vf)fb, vd);
        vd fd = __builtin_convertvector(f, vd);
        vd dd = v.h - fd + v.l; /* v.h - f is exact */
        vd d = sel(v.h < 0, -dd, dd);
        e = (e + vabs(dd) * 0x1p-52) * (1 + 0x1p-20);
        vd up = __builtin_convertvector((vf)(fb + 1), vd) - a;
        vd down = a - __builtin_convertvector((vf)(fb - 1), vd);
        vl inside = finite & (a <= 0x1p126) & (a != 0);
        sure = inside & (2 * e < up - 2 * d) & (2 * e < down + 2 * d);
        /* An exact h + l: f is it rounded to nearest, ties to even. */
        sure |= inside & (v.e == 0) & ((v.l == 0) | (a >= 0x1p-126));
        /* A result whose whole interval lies strictly between 0 and half the smallest subnormal,
         * on one side of 0: a zero of that sign (f, h rounded, has it). */
        sure |= finite & (vabs(v.h) - e > 0) & (vabs(v.h) + e < 0x1p-150);
        *r = sel(exact_zero, splat(0.0), fd);
    }
    return sure | (exact_zero & finite);
}

/* Loads and stores of the first k lanes.  A whole vector's copy has a constant size, which the
 * compiler turns into one vector move; a copy of a variable size is a call to memcpy, which on a
 * cheap function took as long as the function. */
INLINE vd load_lanes(const double *p, ptrdiff_t k, vd fill) {
    vd v = fill;
    if (k == W)
        memcpy(&v, p, sizeof v);
    else
        memcpy(&v, p, (size_t)k * sizeof(double));
    return v;
}

INLINE void store_lanes(double *p, vd v, ptrdiff_t k) {
    if (k == W)
        memcpy(p, &v, sizeof v);
    else
        memcpy(p, &v, (size_t)k * sizeof(double));
}

/* The first k lanes of mask s as bytes 1 (sure) or 0 at ss; returns how many are 1. */
INLINE ptrdiff_t store_sure(vl s, unsigned char *ss, ptrdiff_t k) {
    vc c = __builtin_convertvector(s & 1, vc); /* 0 or 1 a lane */
    uint64_t bytes = 0;
    memcpy(&bytes, &c, sizeof c);
    if (k == W)
        memcpy(ss, &c, sizeof c);
    else {
        bytes &= k >= 8 ? ~0ULL : (1ULL << (8 * k)) - 1;
        memcpy(ss, &bytes, (size_t)k);
    }
    return __builtin_popcountll(bytes);
}

/* -- the loop ------------------------------------------------------------------------------- */

/* One loop a function, with value() inlined into it; where gs is given, the result is
 * gs[i] times the quantity (a vector-Jacobian product, or a gated unit's a * act(b)), the
 * double-double product rounded once. */
#define LOOP(F, FN)                                                                                       \
    case F:                                                                                               \
        for (ptrdiff_t i = 0; i < n; i += W) {                                                            \
            vd g = {0}, r;                                                                                \
            ptrdiff_t k = n - i < W ? n - i : W;                                                          \
            vd x = load_lanes(xs + i, k, splat(0.0));                                                     \
            vl ok;                                                                                        \
            V v = FN(F, x, ps, &ok, bits);                                                                \
            if (gs) {                                                                                     \
                g = load_lanes(gs + i, k, splat(0.0));                                                    \
                v = mul(exact(g), v);                                                                     \
            }                                                                                             \
            vl s = decide(v, bits, &r) & ok;                                                              \
            store_lanes(ys + i, r, k);                                                                    \
            count += store_sure(s, ss + i, k);                                                            \
        }                                                                                                 \
        break;

ptrdiff_t RUN(int f, int quantity, int bits, const double *xs, const double *gs, const double *ps, double *ys,
            unsigned char *ss, ptrdiff_t n) {
    ptrdiff_t count = 0;
    if (quantity == 0) {
        switch (f) {
            LOOP(F_EXPONENTIAL, value)
            LOOP(F_SIGMOID, value)
            LOOP(F_TANH, value)
            LOOP(F_SILU, value)
            LOOP(F_QUICK_GELU, value)
            LOOP(F_SOFTPLUS, value)
            LOOP(F_LOG_SIGMOID, value)
            LOOP(F_ELU, value)
            LOOP(F_SELU, value)
            LOOP(F_CELU, value)
            LOOP(F_MISH, value)
            LOOP(F_GELU_TANH, value)
            LOOP(F_TANHSHRINK, value)
            LOOP(F_SOFTSIGN, value)
            LOOP(F_LEAKY_RELU, value)
            LOOP(F_RRELU, value)
            LOOP(F_SOFTSHRINK, value)
            LOOP(F_RELU_SQUARED, value)
            LOOP(F_HARD_SIGMOID, value)
            LOOP(F_HARD_SILU, value)
            LOOP(F_SQUAREPLUS, value)
            LOOP(F_SPARSE_PLUS, value)
            LOOP(F_SPARSE_SIGMOID, value)
            LOOP(F_STAR_RELU, value)
            LOOP(F_SMELU, value)
            LOOP(F_XIELU, value)
            LOOP(F_RATIONAL, value)
            LOOP(F_GELU, value)
            LOOP(F_SNAKE, value)
        }
    } else {
        switch (f) {
            LOOP(F_EXPONENTIAL, derivative)
            LOOP(F_SIGMOID, derivative)
            LOOP(F_TANH, derivative)
            LOOP(F_SILU, derivative)
            LOOP(F_QUICK_GELU, derivative)
            LOOP(F_SOFTPLUS, derivative)
            LOOP(F_LOG_SIGMOID, derivative)
            LOOP(F_ELU, derivative)
            LOOP(F_SELU, derivative)
            LOOP(F_CELU, derivative)
            LOOP(F_MISH, derivative)
            LOOP(F_GELU_TANH, derivative)
            LOOP(F_TANHSHRINK, derivative)
            LOOP(F_SOFTSIGN, derivative)
            LOOP(F_HARD_SILU, derivative)
            LOOP(F_SQUAREPLUS, derivative)
            LOOP(F_SPARSE_PLUS, derivative)
            LOOP(F_STAR_RELU, derivative)
            LOOP(F_SMELU, derivative)
            LOOP(F_XIELU, derivative)
            LOOP(F_GELU, derivative)
            LOOP(F_SNAKE, derivative)
        default:
            for (ptrdiff_t i = 0; i < n; i++) ss[i] = 0;
        }
    }
    return count;
}

/* -- the softmax family, a row at a time --------------------------------------------------- */

/* The lanes of a vector value added into one (lane 0 of the result, splat). */
INLINE V lanes_sum(V a) {
    V t = {splat(a.h[0]), splat(a.l[0]), splat(a.e[0])};
    for (int k = 1; k < W; k++) t = add(t, (V){splat(a.h[k]), splat(a.l[k]), splat(a.e[k])});
    return t;
}

/* softmax (log = 0) or log_softmax (log = 1) of each row of n, at temperature T: q = (x - max)/T,
 * y = e^q / (1 + S) or q - log1p(S), S the sum of e^q over the row but for one of its largest
 * elements (whose e^q is exactly 1).  ys and ss as for RUN; returns how many are sure. */
ptrdiff_t SOFTMAX(int log_form, int bits, const double *xs, ptrdiff_t rows, ptrdiff_t n, double temperature, double *ys,
                  unsigned char *ss) {
    ptrdiff_t count = 0;
    int scaled = temperature != 1.0;
    for (ptrdiff_t row = 0; row < rows; row++) {
        const double *x = xs + row * n;
        double top = x[0];
        ptrdiff_t at = 0;
        for (ptrdiff_t i = 1; i < n; i++)
            if (x[i] > top) {
                top = x[i];
                at = i;
            }
        /* Pass 1: S. */
        V acc = zero();
        for (ptrdiff_t i = 0; i < n; i += W) {
            ptrdiff_t k = n - i < W ? n - i : W;
            vd v = load_lanes(x + i, k, splat(top));
            vd dh, dl;
            two_sum(v, splat(-top), &dh, &dl); /* x - max, exact */
            V q = {dh, dl, splat(0.0)};
            if (scaled) q = divide(q, exact(splat(temperature)));
            V e = exp_v(q);
            /* Lanes past the row's end and the largest element itself count 0. */
            vl skip = (vl){0};
            for (int lane = 0; lane < W; lane++) skip[lane] = (i + lane >= n || i + lane == at) ? -1 : 0;
            acc = add(acc, selv(skip, zero(), e));
        }
        V S = lanes_sum(acc);
        V Z = add_d(S, 1.0);
        V L = log_form ? log1p_v(S) : zero();
        /* Pass 2: the results. */
        for (ptrdiff_t i = 0; i < n; i += W) {
            vd r;
            ptrdiff_t k = n - i < W ? n - i : W;
            vd v = load_lanes(x + i, k, splat(top));
            vd dh, dl;
            two_sum(v, splat(-top), &dh, &dl);
            V q = {dh, dl, splat(0.0)};
            if (scaled) q = divide(q, exact(splat(temperature)));
            V y = log_form ? sub(q, L) : divide(exp_v(q), Z);
            vl s = decide(y, bits, &r);
            store_lanes(ys + row * n + i, r, k);
            count += store_sure(s, ss + row * n + i, k);
        }
    }
    return count;
}

/* e^(h + l) in lane 0, with its bound: for the tests. */
void EXP_ENTRY(double h, double l, double *out) {
    V v = exp_v((V){splat(h), splat(l), splat(0.0)});
    out[0] = v.h[0];
    out[1] = v.l[0];
    out[2] = v.e[0];
}

#ifdef SINCOS_ENTRY
/* sin and cos of h + l (|h| <= 2^19) in lane 0, each with its bound: for the tests. */
void SINCOS_ENTRY(double h, double l, double *out) {
    V s, c;
    sincos_v(splat(h), splat(l), &s, &c);
    out[0] = s.h[0];
    out[1] = s.l[0];
    out[2] = s.e[0];
    out[3] = c.h[0];
    out[4] = c.l[0];
    out[5] = c.e[0];
}
#endif
