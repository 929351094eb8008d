/* The compiled first tier of the correctly rounded core.
 *
 * Each function is evaluated in double-double arithmetic (a value h + l carrying about 106
 * bits) with a running bound e on its absolute error, as service/activations/bounded.py does
 * in long double: every operation adds its own rounding error to the errors it inherits,
 * propagated through the operation's derivative.  Where the whole interval [v - e, v + e]
 * rounds to one number of the target format (float64 or float32), that number is the
 * correctly rounded result and the element is marked sure; the others (a few in a million)
 * are left to the slower routes, which decide them (bounded long double, then MPFR).
 *
 * Nothing depends on the CPU beyond IEEE double arithmetic rounded to nearest: no x87, and
 * the build turns contraction into fused multiply-adds off.  The code (_kernel_body.h) is
 * compiled twice: _kernel_fma.c takes the exact remainder of a product with a fused
 * multiply-add where the CPU has one, _kernel_plain.c by Dekker's splitting; both remainders
 * are exact, so a sure result is the same on every machine, and equal to what the slower
 * routes give.
 *
 * float32 results come from the same code compiled with one double a value (_kernel_*_f32.c,
 * LIGHT in _kernel_body.h): its bounds, about 2^-50 of the result, decide float32's rounding for
 * all but a few in ten million elements.
 *
 * The tables (2^(j/256) in double-double, ln 2 / 256 in three parts, sin and cos at multiples of
 * 1/128, pi/2 in three parts, the published constants)
 * are computed by the Python side with MPFR and handed over once by init().
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include "_kernel.h"

double TBL_H[256], TBL_L[256];
double L1, L2, L3, INV_L;
double K_1702_H, K_1702_L, K_SCALE_H, K_SCALE_L, K_SA_H, K_SA_L;
double K_GT_H, K_GT_L, K_A_H, K_A_L, K_SIXTH_H, K_SIXTH_L;
double UEXP; /* a margin on exp's own bound, set by init() */
double ERF_H[ERF_DD], ERF_L[ERF_DD], ERF_TAIL[ERF_TERMS], ERF_NEXT;
double K_ISQ2_H, K_ISQ2_L, K_2SPI_H, K_2SPI_L, K_ISPI_H, K_ISPI_L, K_IS2PI_H, K_IS2PI_L;
double PIO2_1, PIO2_2, PIO2_3, TWO_OVER_PI;
double SIN_H[TRIG_N], SIN_L[TRIG_N], COS_H[TRIG_N], COS_L[TRIG_N];
static int ready = 0;
/* The build in use: 0 Dekker's products, two lanes (any CPU); 1 AVX2 and fused multiply-adds,
 * four lanes; 2 AVX-512, eight lanes. */
static int level = 0;
/* Whether float32 results come from the float32 builds (_kernel_*_f32.c: one double and its
 * bound a value) or, as float64's, from the double-double ones; the tests compare the two. */
static int light = 1;

static int best_level(void) {
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("fma"))
        return 2;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return 1;
#endif
    return 0;
}

typedef ptrdiff_t (*run_fn)(int, int, int, const double *, const double *, const double *, double *, unsigned char *,
                           ptrdiff_t);
typedef ptrdiff_t (*softmax_fn)(int, int, const double *, ptrdiff_t, ptrdiff_t, double, double *, unsigned char *);

/* float32 from the float32 build, then the double-double build for the elements it leaves (those
 * within about 2^-50 of a midpoint of float32: a decimal parameter times a float32 input is often
 * that near, 0.7 g for a g that 5 divides); returns how many are sure. */
static ptrdiff_t run_f32(run_fn light_run, run_fn dd_run, int f, int quantity, int bits, const double *xs,
                         const double *gs, const double *ps, double *ys, unsigned char *ss, ptrdiff_t n) {
    ptrdiff_t count = light_run(f, quantity, bits, xs, gs, ps, ys, ss, n);
    ptrdiff_t left = n - count;
    if (left == 0) return count;
    double *buf = malloc(sizeof(double) * (size_t)left * (gs ? 3 : 2));
    unsigned char *sure = malloc((size_t)left);
    if (buf && sure) { /* (else they are left to the slower routes) */
        double *x = buf, *y = buf + left, *g = gs ? buf + 2 * left : NULL;
        ptrdiff_t k = 0;
        for (ptrdiff_t i = 0; i < n; i++)
            if (!ss[i]) {
                x[k] = xs[i];
                if (g) g[k] = gs[i];
                k++;
            }
        dd_run(f, quantity, bits, x, g, ps, y, sure, left);
        k = 0;
        for (ptrdiff_t i = 0; i < n; i++)
            if (!ss[i]) {
                if (sure[k]) {
                    ys[i] = y[k];
                    ss[i] = 1;
                    count++;
                }
                k++;
            }
    }
    free(buf);
    free(sure);
    return count;
}

/* The same for the softmax family, a row at a time: a row the float32 build leaves an element of
 * is done again whole by the double-double one. */
static ptrdiff_t softmax_f32(softmax_fn light_run, softmax_fn dd_run, int log_form, int bits, const double *xs,
                             ptrdiff_t rows, ptrdiff_t n, double temperature, double *ys, unsigned char *ss) {
    ptrdiff_t count = light_run(log_form, bits, xs, rows, n, temperature, ys, ss);
    if (count == rows * n) return count;
    for (ptrdiff_t row = 0; row < rows; row++) {
        unsigned char *s = ss + row * n;
        ptrdiff_t had = 0;
        for (ptrdiff_t i = 0; i < n; i++) had += s[i];
        if (had < n) count += dd_run(log_form, bits, xs + row * n, 1, n, temperature, ys + row * n, s) - had;
    }
    return count;
}

/* -- Python interface ------------------------------------------------------------------------ */

static PyObject *k_init(PyObject *self, PyObject *args) {
    Py_buffer t;
    if (!PyArg_ParseTuple(args, "y*", &t)) return NULL;
    if (t.len != (Py_ssize_t)(sizeof(double) * (512 + 17 + 2 * ERF_DD + ERF_TERMS + 1 + 8 + 4 + 4 * TRIG_N))) {
        PyBuffer_Release(&t);
        PyErr_SetString(PyExc_ValueError, "init: the wrong number of doubles");
        return NULL;
    }
    const double *c = (const double *)t.buf;
    for (int j = 0; j < 256; j++) {
        TBL_H[j] = c[2 * j];
        TBL_L[j] = c[2 * j + 1];
    }
    c += 512;
    L1 = c[0];
    L2 = c[1];
    L3 = c[2];
    INV_L = c[3];
    K_1702_H = c[4];
    K_1702_L = c[5];
    K_SCALE_H = c[6];
    K_SCALE_L = c[7];
    K_SA_H = c[8];
    K_SA_L = c[9];
    K_GT_H = c[10];
    K_GT_L = c[11];
    K_A_H = c[12];
    K_A_L = c[13];
    K_SIXTH_H = c[14];
    K_SIXTH_L = c[15];
    UEXP = c[16];
    c += 17;
    for (int n = 0; n < ERF_DD; n++) {
        ERF_H[n] = c[2 * n];
        ERF_L[n] = c[2 * n + 1];
    }
    c += 2 * ERF_DD;
    for (int n = 0; n < ERF_TERMS; n++) ERF_TAIL[n] = c[n];
    c += ERF_TERMS;
    ERF_NEXT = c[0];
    K_ISQ2_H = c[1];
    K_ISQ2_L = c[2];
    K_2SPI_H = c[3];
    K_2SPI_L = c[4];
    K_ISPI_H = c[5];
    K_ISPI_L = c[6];
    K_IS2PI_H = c[7];
    K_IS2PI_L = c[8];
    c += 9;
    PIO2_1 = c[0];
    PIO2_2 = c[1];
    PIO2_3 = c[2];
    TWO_OVER_PI = c[3];
    c += 4;
    for (int j = 0; j < TRIG_N; j++) {
        SIN_H[j] = c[4 * j];
        SIN_L[j] = c[4 * j + 1];
        COS_H[j] = c[4 * j + 2];
        COS_L[j] = c[4 * j + 3];
    }
    PyBuffer_Release(&t);
    level = best_level();
    ready = 1;
    Py_RETURN_NONE;
}

/* evaluate(f, quantity, bits, x, g, params, out, sure): the value (quantity 0) or the derivative
 * (1, where the function has it: elsewhere nothing is sure), times g[i] where g is not None, in
 * out[i], and whether it is decided in sure[i], for every x[i] (float64 arrays of one length,
 * sure a uint8 array); returns how many are sure.  Runs without the GIL. */
static PyObject *k_evaluate(PyObject *self, PyObject *args) {
    int f, quantity, bits;
    Py_buffer x, p, out, sure, g = {0};
    PyObject *g_object;
    if (!ready) {
        PyErr_SetString(PyExc_RuntimeError, "init() first");
        return NULL;
    }
    if (!PyArg_ParseTuple(args, "iiiy*Oy*w*w*", &f, &quantity, &bits, &x, &g_object, &p, &out, &sure)) return NULL;
    int has_g = g_object != Py_None;
    if (has_g && PyObject_GetBuffer(g_object, &g, PyBUF_SIMPLE) < 0) {
        PyBuffer_Release(&x);
        PyBuffer_Release(&p);
        PyBuffer_Release(&out);
        PyBuffer_Release(&sure);
        return NULL;
    }
    Py_ssize_t n = x.len / (Py_ssize_t)sizeof(double);
    Py_ssize_t count = 0;
    int ok = f >= 0 && f < F_COUNT && (quantity == 0 || quantity == 1) && (bits == 53 || bits == 24) &&
             out.len == x.len && sure.len == n && p.len >= (Py_ssize_t)(4 * sizeof(double)) &&
             (!has_g || g.len == x.len);
    if (ok) {
        const double *xs = (const double *)x.buf;
        const double *gs = has_g ? (const double *)g.buf : NULL;
        const double *ps = (const double *)p.buf;
        double *ys = (double *)out.buf;
        unsigned char *ss = (unsigned char *)sure.buf;
        run_fn dd = level == 2 ? run_avx512 : level == 1 ? run_fma : run_plain;
        run_fn f32 = level == 2 ? run_avx512_f32 : level == 1 ? run_fma_f32 : run_plain_f32;
        Py_BEGIN_ALLOW_THREADS count = bits == 24 && light ? run_f32(f32, dd, f, quantity, bits, xs, gs, ps, ys, ss, n)
                                                           : dd(f, quantity, bits, xs, gs, ps, ys, ss, n);
        Py_END_ALLOW_THREADS
    }
    PyBuffer_Release(&x);
    PyBuffer_Release(&p);
    PyBuffer_Release(&out);
    PyBuffer_Release(&sure);
    if (has_g) PyBuffer_Release(&g);
    if (!ok) {
        PyErr_SetString(PyExc_ValueError, "evaluate: bad arguments");
        return NULL;
    }
    return PyLong_FromSsize_t(count);
}

/* softmax(log, bits, x, n, temperature, out, sure): softmax (log false) or log_softmax of each
 * row of n of x; out and sure as for evaluate.  Runs without the GIL. */
static PyObject *k_softmax(PyObject *self, PyObject *args) {
    int log_form, bits;
    Py_ssize_t n;
    double temperature;
    Py_buffer x, out, sure;
    if (!ready) {
        PyErr_SetString(PyExc_RuntimeError, "init() first");
        return NULL;
    }
    if (!PyArg_ParseTuple(args, "piy*ndw*w*", &log_form, &bits, &x, &n, &temperature, &out, &sure)) return NULL;
    Py_ssize_t size = x.len / (Py_ssize_t)sizeof(double);
    Py_ssize_t count = 0;
    int ok = (bits == 53 || bits == 24) && n > 0 && size % n == 0 && out.len == x.len && sure.len == size &&
             temperature > 0 && isfinite(temperature);
    if (ok) {
        const double *xs = (const double *)x.buf;
        double *ys = (double *)out.buf;
        unsigned char *ss = (unsigned char *)sure.buf;
        softmax_fn dd = level == 2 ? softmax_avx512 : level == 1 ? softmax_fma : softmax_plain;
        softmax_fn f32 = level == 2 ? softmax_avx512_f32 : level == 1 ? softmax_fma_f32 : softmax_plain_f32;
        Py_BEGIN_ALLOW_THREADS count = bits == 24 && light
                                           ? softmax_f32(f32, dd, log_form, bits, xs, size / n, n, temperature, ys, ss)
                                           : dd(log_form, bits, xs, size / n, n, temperature, ys, ss);
        Py_END_ALLOW_THREADS
    }
    PyBuffer_Release(&x);
    PyBuffer_Release(&out);
    PyBuffer_Release(&sure);
    if (!ok) {
        PyErr_SetString(PyExc_ValueError, "softmax: bad arguments");
        return NULL;
    }
    return PyLong_FromSsize_t(count);
}

/* exp_dd(x) -> (h, l, e): the double-double exp and its bound, for the tests. */
static PyObject *k_exp(PyObject *self, PyObject *args) {
    double h, l;
    int which;
    if (!PyArg_ParseTuple(args, "ddi", &h, &l, &which)) return NULL;
    if (which < 0 || which > best_level()) {
        PyErr_SetString(PyExc_ValueError, "this CPU has not that build");
        return NULL;
    }
    double v[3];
    (which == 2 ? exp_entry_avx512 : which == 1 ? exp_entry_fma : exp_entry_plain)(h, l, v);
    return Py_BuildValue("ddd", v[0], v[1], v[2]);
}

/* sincos_dd(h, l, which) -> (sin h, l, e, cos h, l, e): snake's double-double sine and cosine of
 * h + l (|h| <= 2^19) with their bounds, for the tests. */
static PyObject *k_sincos(PyObject *self, PyObject *args) {
    double h, l;
    int which;
    if (!PyArg_ParseTuple(args, "ddi", &h, &l, &which)) return NULL;
    if (which < 0 || which > best_level()) {
        PyErr_SetString(PyExc_ValueError, "this CPU has not that build");
        return NULL;
    }
    if (!(fabs(h) <= 0x1p19)) {
        PyErr_SetString(PyExc_ValueError, "sincos_dd: |h| <= 2^19");
        return NULL;
    }
    double v[6];
    (which == 2 ? sincos_entry_avx512 : which == 1 ? sincos_entry_fma : sincos_entry_plain)(h, l, v);
    return Py_BuildValue("dddddd", v[0], v[1], v[2], v[3], v[4], v[5]);
}

/* variant(level): use the build of that level (0 Dekker's, 1 AVX2, 2 AVX-512), or the best the
 * CPU has below it; returns the level in use.  For the tests, which compare them. */
static PyObject *k_variant(PyObject *self, PyObject *args) {
    int want;
    if (!PyArg_ParseTuple(args, "i", &want)) return NULL;
    int best = best_level();
    level = want < best ? (want < 0 ? 0 : want) : best;
    return PyLong_FromLong(level);
}

/* light(on): float32 from the float32 builds (1) or the double-double ones (0); returns the
 * previous setting.  For the tests, which compare them. */
static PyObject *k_light(PyObject *self, PyObject *args) {
    int want;
    if (!PyArg_ParseTuple(args, "p", &want)) return NULL;
    int previous = light;
    light = want;
    return PyBool_FromLong(previous);
}

static PyMethodDef methods[] = {
    {"light", k_light, METH_VARARGS, "float32 from the float32 builds (True) or the double-double ones."},
    {"variant", k_variant, METH_VARARGS, "Choose the build: 0 Dekker's, 1 AVX2, 2 AVX-512."},
    {"init", k_init, METH_VARARGS, "Set the tables and constants."},
    {"evaluate", k_evaluate, METH_VARARGS, "Correctly rounded values where decided."},
    {"softmax", k_softmax, METH_VARARGS, "Correctly rounded softmax or log_softmax rows where decided."},
    {"exp_dd", k_exp, METH_VARARGS, "exp in double-double with its error bound."},
    {"sincos_dd", k_sincos, METH_VARARGS, "sin and cos in double-double with their error bounds."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_kernel", NULL, -1, methods};

PyMODINIT_FUNC PyInit__kernel(void) { return PyModule_Create(&module); }
