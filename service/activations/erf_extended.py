"""erf and erfc in x87 extended precision (``np.longdouble``), vectorised.

A port to NumPy of glibc's ``sysdeps/ieee754/ldbl-96/s_erfl.c`` (``erfl`` and
``erfcl`` for the 80-bit long double format): Sun's fdlibm ``s_erf.c``, with
the long double rational approximations of Stephen L. Moshier.  Intervals,
coefficients and order of operations are those of the C code.  ``erf_ext``
agrees bit for bit with glibc's ``erfl`` (NumPy's ``np.exp`` on long double
arrays calls ``expl``; checked against glibc 2.36 on 300,000 arguments), and
so does ``erfc_ext`` for x < 0.25.  For x >= 0.25, where erfc < 0.75 and
glibc's erfcl loses up to 3 ULP (the pure port measured 3.0 ULP at
x = 0.84298, 2.5 ULP in the tail; glibc's own tables allow 5), the same
formulas are evaluated without their rounding errors: compensated Horner
(Graillat, Langlois and Louvet 2005) for the rational functions, exact
remainders for the quotients, error-free sums and products (Knuth, Dekker,
Veltkamp with 2^32 + 1), and the tail's exponent carried as a long double plus
a correction, so that expl is called once, at an exact argument.  Every
operation is elementwise: a result never depends on the other elements of
the array (checked: whole, reversed and element by element agree bit for bit).

Method (|x| thresholds; erf(-x) = -erf(x), erfc(-x) = 2 - erfc(x)):

* |x| < 0.84375: erf(x) = x + x R(x^2) (x + efx x below 2^-33, scaled by 16
  near the subnormal range); erfc(x) = 1 - erf(x) below 1/4, and
  0.5 - ((x - 0.5) + x R(x^2)) from 1/4 on.
* 0.84375 <= |x| < 1.25: erf(1 + s) = erx + P(s)/Q(s), erx = erf(1) rounded to
  24 bits, s = |x| - 1.
* 1.25 <= |x| < 107: erfc(x) = exp(-z^2 - 0.5625) exp((z - x)(z + x) + R/S) / x
  with R/S a rational function of 1/x^2 on [1.25, 2.857), [2.857, 6.667) and
  [6.667, 107), and z = x truncated to 24 bits (erfc) or 32 bits (erf), so that
  z^2 is exact and exp's argument carries no rounding of x^2.  erf is 1 - erfc.
* beyond: erf = +-1, erfc = 0 (x >= 107) or 2 (x <= -6.667).

Measured maximum error against mpmath at 200 bits, in units of the long double
ULP of the true value, 2^(floor(log2|f|) - 63) (of 2^-16445 where the result is
subnormal), with ``python -m tests.bench.erf_extended_accuracy`` (default run,
about 20 s, 600,000 points) and ``--scale 4 --seed 99`` (2.3 million points):

* erfc_ext: 1.74 ULP (x = 23.98; 1.68 at x = 11.53 in the default run) over
  [-6, 30], |x| log-uniform in [1e-30, 100] of both signs, the neighbourhoods
  of every interval boundary and the tail up to x = 106.536, where erfc leaves
  the normal range; per interval (20,000 random points each, one more run):
  1.75 ULP in the tail (x = 86.2), 1.66 on [1.25, 2.857), 1.58 on
  [2.857, 6.667), 1.23 on [0.25, 0.84375), 0.75 on [0.84375, 1.25), and for
  x < 0.25 (glibc's code as it is) 1.18 ULP (x = -0.8204); 0.96 units of
  2^-16445 for subnormal results (x in [106.536, 106.78)).  In the tail the
  error is that of expl (below 1.25 * 2^-64 relative, measured) plus the
  final rounding.
* erf_ext: 0.99 ULP (x = 0.84315, just below the 0.84375 boundary); 0.86 ULP
  over [-6, 6] at random; 0.77 ULP for |x| in [1e-300, 1e-5]; 0.66 ULP for
  subnormal and tiny x.
* Arguments out to +-1e4932 and +-inf give 0, 2, +-1 without floating-point
  warnings, NaN gives NaN.

Cost, one core: about 0.3 s per million elements for erf_ext, 1.4 s for
erfc_ext (the compensated evaluation; np.exp alone takes 0.05 s).

The coefficients are parsed from decimal strings by ``np.longdouble`` (strtold),
never through a Python float.  On a platform whose long double is not the x87
format (IEEE binary128 on aarch64 Linux, or plain double) the code still runs,
but its accuracy is that of the approximations (about 1e-21 relative), not a
few ULPs of the wider format, nor exactly float64 rounding in the narrower one.

Licence notices of the original, kept as it carries them:

 * ====================================================
 * Copyright (C) 1993 by Sun Microsystems, Inc. All rights reserved.
 *
 * Developed at SunPro, a Sun Microsystems, Inc. business.
 * Permission to use, copy, modify, and distribute this
 * software is freely granted, provided that this notice
 * is preserved.
 * ====================================================

/* Long double expansions are
  Copyright (C) 2001 Stephen L. Moshier <moshier@na-net.ornl.gov>
  and are incorporated herein by permission of the author.  The author
  reserves the right to distribute this material elsewhere under different
  copying permissions.  These modifications are distributed here under
  the following terms:

    This library is free software; you can redistribute it and/or
    modify it under the terms of the GNU Lesser General Public
    License as published by the Free Software Foundation; either
    version 2.1 of the License, or (at your option) any later version.

    This library is distributed in the hope that it will be useful,
    but WITHOUT ANY WARRANTY; without even the implied warranty of
    MERCHANTABILITY or FITNESS FOR A PARTICULAR PURPOSE.  See the GNU
    Lesser General Public License for more details.

    You should have received a copy of the GNU Lesser General Public
    License along with this library; if not, see
    <https://www.gnu.org/licenses/>.  */
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = ["erf_ext", "erfc_ext"]

LongArray = NDArray[np.longdouble]

_L = np.longdouble


def _coefficients(values: Sequence[str]) -> tuple[np.longdouble, ...]:
    return tuple(_L(v) for v in values)


_ONE = _L(1)
_TWO = _L(2)
_HALF = _L("0.5")
_SHIFT = _L("0.5625")  # 9/16

#: erf(1) rounded to 24 bits ("c = (float)0.84506291151").
_ERX = _L("0.845062911510467529296875")
#: 2/sqrt(pi) - 1.
_EFX = _L("1.2837916709551257389615890312154517168810E-1")
_EFX16 = 16 * _EFX  # exact
_SIXTEENTH = _L("0.0625")
_SIXTEEN = _L(16)

# Interval bounds: exact values of glibc's thresholds on (exponent << 16 | top 16 significand bits).
_TINY_ERF = np.ldexp(_ONE, -16375)  # 0x00080000: scale by 16 below, so as not to lose bits
_SMALL_ERF = np.ldexp(_ONE, -33)  # 0x3fde8000
_SMALL_ERFC = np.ldexp(_ONE, -65)  # 0x3fbe0000
_QUARTER = _L("0.25")  # 0x3ffd8000
_B1 = _L("0.84375")  # 0x3ffed800
_B2 = _L("1.25")  # 0x3fffa000
_B3 = _L("2.85711669921875")  # 0x4000b6db
_B4 = _L("6.6666259765625")  # 0x4001d555
_B5 = _L(107)  # 0x4005d600

# erf(x) = x + x pp(x^2)/qq(x^2) on [0, 0.84375]; qq is monic (its leading 1 is implicit).
_PP = _coefficients(
    (
        "1.122751350964552113068262337278335028553E6",
        "-2.808533301997696164408397079650699163276E6",
        "-3.314325479115357458197119660818768924100E5",
        "-6.848684465326256109712135497895525446398E4",
        "-2.657817695110739185591505062971929859314E3",
        "-1.655310302737837556654146291646499062882E2",
    )
)
_QQ = _coefficients(
    (
        "8.745588372054466262548908189000448124232E6",
        "3.746038264792471129367533128637019611485E6",
        "7.066358783162407559861156173539693900031E5",
        "7.448928604824620999413120955705448117056E4",
        "4.511583986730994111992253980546131408924E3",
        "1.368902937933296323345610240009071254014E2",
    )
)
# erf(x+1) = erx + pa(x)/qa(x), -0.15625 <= x <= +.25, peak relative error 8.5e-22.
_PA = _coefficients(
    (
        "-1.076952146179812072156734957705102256059E0",
        "1.884814957770385593365179835059971587220E2",
        "-5.339153975012804282890066622962070115606E1",
        "4.435910679869176625928504532109635632618E1",
        "1.683219516032328828278557309642929135179E1",
        "-2.360236618396952560064259585299045804293E0",
        "1.852230047861891953244413872297940938041E0",
        "9.394994446747752308256773044667843200719E-2",
    )
)
_QA = _coefficients(
    (
        "4.559263722294508998149925774781887811255E2",
        "3.289248982200800575749795055149780689738E2",
        "2.846070965875643009598627918383314457912E2",
        "1.398715859064535039433275722017479994465E2",
        "6.060190733759793706299079050985358190726E1",
        "2.078695677795422351040502569964299664233E1",
        "4.641271134150895940966798357442234498546E0",
    )
)
# erfc(1/x) = x exp(-1/x^2 - 0.5625 + ra(x^2)/sa(x^2)), 1/2.85711669921875 < 1/x < 1/1.25,
# peak relative error 3.1e-21.
_RA = _coefficients(
    (
        "1.363566591833846324191000679620738857234E-1",
        "1.018203167219873573808450274314658434507E1",
        "1.862359362334248675526472871224778045594E2",
        "1.411622588180721285284945138667933330348E3",
        "5.088538459741511988784440103218342840478E3",
        "8.928251553922176506858267311750789273656E3",
        "7.264436000148052545243018622742770549982E3",
        "2.387492459664548651671894725748959751119E3",
        "2.220916652813908085449221282808458466556E2",
    )
)
_SA = _coefficients(
    (
        "-1.382234625202480685182526402169222331847E1",
        "-3.315638835627950255832519203687435946482E2",
        "-2.949124863912936259747237164260785326692E3",
        "-1.246622099070875940506391433635999693661E4",
        "-2.673079795851665428695842853070996219632E4",
        "-2.880269786660559337358397106518918220991E4",
        "-1.450600228493968044773354186390390823713E4",
        "-2.874539731125893533960680525192064277816E3",
        "-1.402241261419067750237395034116942296027E2",
    )
)
# Same form, 1/6.6666259765625 < 1/x < 1/2.85711669921875, peak relative error 4.2e-22.
_RB = _coefficients(
    (
        "-4.869587348270494309550558460786501252369E-5",
        "-4.030199390527997378549161722412466959403E-3",
        "-9.434425866377037610206443566288917589122E-2",
        "-9.319032754357658601200655161585539404155E-1",
        "-4.273788174307459947350256581445442062291E0",
        "-8.842289940696150508373541814064198259278E0",
        "-7.069215249419887403187988144752613025255E0",
        "-1.401228723639514787920274427443330704764E0",
    )
)
_SB = _coefficients(
    (
        "4.936254964107175160157544545879293019085E-3",
        "1.583457624037795744377163924895349412015E-1",
        "1.850647991850328356622940552450636420484E0",
        "9.927611557279019463768050710008450625415E0",
        "2.531667257649436709617165336779212114570E1",
        "2.869752886406743386458304052862814690045E1",
        "1.182059497870819562441683560749192539345E1",
    )
)
# Same form, 1/107 <= 1/x <= 1/6.6666259765625, peak relative error 1.1e-21.
_RC = _coefficients(
    (
        "-8.299617545269701963973537248996670806850E-5",
        "-6.243845685115818513578933902532056244108E-3",
        "-1.141667210620380223113693474478394397230E-1",
        "-7.521343797212024245375240432734425789409E-1",
        "-1.765321928311155824664963633786967602934E0",
        "-1.029403473103215800456761180695263439188E0",
    )
)
_SC = _coefficients(
    (
        "8.413244363014929493035952542677768808601E-3",
        "2.065114333816877479753334599639158060979E-1",
        "1.639064941530797583766364412782135680148E0",
        "4.936788463787115555582319302981666347450E0",
        "5.005177727208955487404729933261347679090E0",
    )
)


_SPLITTER = _L(4294967297)  # 2**32 + 1: Veltkamp's constant for a 64-bit significand


def _two_sum(a: LongArray, b: LongArray | np.longdouble) -> tuple[LongArray, LongArray]:
    """a + b = s + e exactly (Knuth; in either order of magnitude)."""
    s = a + b
    bb = s - a
    return s, (a - (s - bb)) + (b - bb)


def _split(a: LongArray) -> tuple[LongArray, LongArray]:
    """a = hi + lo with 32 bits each (Veltkamp), so that products of halves are exact."""
    c = _SPLITTER * a
    hi = c - (c - a)
    return hi, a - hi


def _two_prod_split(a: LongArray, b: LongArray, bh: LongArray, bl: LongArray) -> tuple[LongArray, LongArray]:
    """a b = p + e exactly (Dekker), barring underflow, with b already split into bh + bl."""
    p = a * b
    ah, al = _split(a)
    return p, ((ah * bh - p) + ah * bl + al * bh) + al * bl


def _two_prod(a: LongArray, b: LongArray) -> tuple[LongArray, LongArray]:
    """a b = p + e exactly (Dekker), barring underflow."""
    return _two_prod_split(a, b, *_split(b))


def _div(n: LongArray, d: LongArray) -> tuple[LongArray, LongArray]:
    """n / d = q + e to about twice the working precision: e from the exact remainder n - q d."""
    q = n / d
    p, pe = _two_prod(q, d)
    return q, ((n - p) - pe) / d


def _horner2(
    c: tuple[np.longdouble, ...], t: LongArray, th: LongArray, tl: LongArray, monic: bool
) -> tuple[LongArray, LongArray]:
    """Compensated Horner's rule (Graillat, Langlois and Louvet 2005), t = th + tl split.

    The polynomial as r + e, as accurate as Horner's rule in twice the working
    precision (with the coefficients as stored).  ``monic``: the leading
    coefficient 1 is implicit, as in :func:`_horner_monic`.
    """
    if monic:
        r, e = _two_sum(t, c[-1])
    else:
        r, e = np.full_like(t, c[-1]), np.zeros_like(t)
    for k in range(len(c) - 2, -1, -1):
        p, pe = _two_prod_split(r, t, th, tl)
        r, se = _two_sum(p, c[k])
        e = e * t + (pe + se)
    return r, e


def _ratio2(
    c: tuple[np.longdouble, ...], d: tuple[np.longdouble, ...], t: LongArray
) -> tuple[LongArray, LongArray]:
    """c(t) / d(t) (d monic) as q + qe, to about twice the working precision."""
    th, tl = _split(t)
    n, ne = _horner2(c, t, th, tl, monic=False)
    m, me = _horner2(d, t, th, tl, monic=True)
    q = n / m
    p, pe = _two_prod(q, m)
    return q, (((n - p) - pe) + (ne - q * me)) / m


def _horner(c: tuple[np.longdouble, ...], t: LongArray) -> LongArray:
    """c[0] + t (c[1] + t (... + t c[-1])), in the C code's order."""
    r = np.full_like(t, c[-1])
    for k in range(len(c) - 2, -1, -1):
        r = c[k] + t * r
    return r


def _horner_monic(c: tuple[np.longdouble, ...], t: LongArray) -> LongArray:
    """c[0] + t (c[1] + t (... + t (c[-1] + t))): the leading coefficient 1 is implicit."""
    r = c[-1] + t
    for k in range(len(c) - 2, -1, -1):
        r = c[k] + t * r
    return r


def _truncate(a: LongArray, bits: int) -> LongArray:
    """a > 0 cut to its leading ``bits`` significand bits (toward zero), exactly.

    glibc clears the low significand word (32 bits kept) or more (24 bits kept);
    z^2 then fits in the 64-bit significand.
    """
    m, e = np.frexp(a)
    return np.ldexp(np.trunc(np.ldexp(m, bits)), e - bits)


def _tail(a: LongArray, rs: LongArray, bits: int) -> LongArray:
    """exp(-a^2 - 0.5625 + rs) for 1.25 <= a < 107, with a^2 carried exactly (glibc's trick)."""
    z = _truncate(a, bits)
    with np.errstate(under="ignore"):  # exp(-z^2) underflows from a ~ 106.5 on
        return np.exp(-z * z - _SHIFT) * np.exp((z - a) * (z + a) + rs)


def _small(x: LongArray) -> LongArray:
    """x pp(x^2)/qq(x^2), |x| < 0.84375: erf(x) = x + x y."""
    z = x * x
    return _horner(_PP, z) / _horner_monic(_QQ, z)


def _near_one(a: LongArray) -> LongArray:
    """pa(s)/qa(s), s = |x| - 1, 0.84375 <= |x| < 1.25: erf(|x|) = erx + P/Q."""
    s = a - _ONE
    return _horner(_PA, s) / _horner_monic(_QA, s)


def _prepare(x: ArrayLike) -> tuple[LongArray, LongArray, tuple[int, ...]]:
    arr = np.asarray(x, dtype=np.longdouble)
    flat = arr.reshape(-1)
    return flat, np.empty_like(flat), arr.shape


def erf_ext(x: ArrayLike) -> LongArray:
    """erf(x) for long double x, within about 1 ULP (see the module docstring)."""
    xf, out, shape = _prepare(x)
    a = np.abs(xf)
    negative = np.signbit(xf)
    finite = np.isfinite(xf)

    i = np.flatnonzero(np.isnan(xf))
    out[i] = xf[i]
    i = np.flatnonzero(np.isinf(xf))
    out[i] = np.where(negative[i], -_ONE, _ONE)

    i = np.flatnonzero(a < _TINY_ERF)
    v = xf[i]
    with np.errstate(under="ignore"):  # subnormal x: the result is subnormal too
        out[i] = _SIXTEENTH * (_SIXTEEN * v + _EFX16 * v)

    i = np.flatnonzero((a >= _TINY_ERF) & (a < _SMALL_ERF))
    v = xf[i]
    out[i] = v + _EFX * v

    i = np.flatnonzero((a >= _SMALL_ERF) & (a < _B1))
    v = xf[i]
    out[i] = v + v * _small(v)

    i = np.flatnonzero((a >= _B1) & (a < _B2))
    y = _ERX + _near_one(a[i])
    out[i] = np.where(negative[i], -y, y)

    i = np.flatnonzero((a >= _B2) & (a < _B4))
    v = a[i]
    s = _ONE / (v * v)
    lo = v < _B3
    rs = np.empty_like(v)
    rs[lo] = _horner(_RA, s[lo]) / _horner_monic(_SA, s[lo])
    rs[~lo] = _horner(_RB, s[~lo]) / _horner_monic(_SB, s[~lo])
    q = _tail(v, rs, 32) / v
    out[i] = np.where(negative[i], q - _ONE, _ONE - q)

    i = np.flatnonzero(finite & (a >= _B4))
    out[i] = np.where(negative[i], -_ONE, _ONE)  # 1 - tiny rounds to 1
    return out.reshape(shape)


def _erfc_tail(a: LongArray, rs_hi: LongArray, rs_lo: LongArray) -> LongArray:
    """erfc(a) = exp(-a^2 - 0.5625 + rs) / a for 1.25 <= a < 107, rs = rs_hi + rs_lo.

    glibc's formula, with its roundings removed: the exponent
    -z^2 - 0.5625 + (z - a)(z + a) + rs is carried as s + c, s a long double
    and |c| about ulp(s)/2, so that the one exponential evaluated is exp(s)
    and exp(c) = 1 + c far beyond working precision; the quotient by a is
    corrected from its exact remainder.  What is left is the error of expl
    (below 1.25 * 2^-64 relative, measured) and the final rounding.  Scaled by
    2^64 until the last step, so that no intermediate is subnormal while the
    result is still normal.
    """
    z = _truncate(a, 24)
    big = -z * z - _SHIFT  # exact: z has 24 bits
    u, ue = _two_sum((z - a) * (z + a), rs_hi)
    s = big + u
    c = (u - (s - big)) + (ue + rs_lo)  # big + u = s + (u - (s - big)) exactly, as |big| > |u|
    with np.errstate(under="ignore"):  # exp(s) is subnormal from a ~ 106.56 on, 0 from 106.77
        e = np.ldexp(np.exp(s), 64)
        q, qe = _div(e, a)
        return np.ldexp(q + (qe + q * c), -64)


def erfc_ext(x: ArrayLike) -> LongArray:
    """erfc(x) = 1 - erf(x) for long double x, with the relative accuracy of its tail kept."""
    xf, out, shape = _prepare(x)
    a = np.abs(xf)
    negative = np.signbit(xf)
    finite = np.isfinite(xf)
    positive = ~negative

    i = np.flatnonzero(np.isnan(xf))
    out[i] = xf[i]
    i = np.flatnonzero(np.isinf(xf))
    out[i] = np.where(negative[i], _TWO, _L(0))

    # -- glibc's erfcl, as it is, for x < 0.25 -------------------------------------------------
    i = np.flatnonzero(a < _SMALL_ERFC)
    out[i] = _ONE - xf[i]

    i = np.flatnonzero((a >= _SMALL_ERFC) & (a < _QUARTER))
    v = xf[i]
    out[i] = _ONE - (v + v * _small(v))

    i = np.flatnonzero((a >= _QUARTER) & (a < _B1) & negative)
    v = xf[i]
    out[i] = _HALF - (v * _small(v) + (v - _HALF))

    i = np.flatnonzero((a >= _B1) & (a < _B2) & negative)
    out[i] = _ONE + (_ERX + _near_one(a[i]))

    i = np.flatnonzero((a >= _B2) & (a < _B4) & negative)
    v = a[i]
    s = _ONE / (v * v)
    lo = v < _B3
    rs = np.empty_like(v)
    rs[lo] = _horner(_RA, s[lo]) / _horner_monic(_SA, s[lo])
    rs[~lo] = _horner(_RB, s[~lo]) / _horner_monic(_SB, s[~lo])
    out[i] = _TWO - _tail(v, rs, 24) / v

    i = np.flatnonzero(finite & (a >= _B4) & negative)
    out[i] = _TWO  # 2 - tiny rounds to 2

    # -- x >= 0.25: glibc's formulas and coefficients, evaluated without its rounding errors ----
    # (compensated Horner, exact remainders of the quotients, error-free sums), which cost
    # glibc's erfcl up to 2.5 ULP where the result falls below 0.75.

    # 0.25 <= x < 0.84375: 0.5 - (x y + (x - 0.5)), y = pp(x^2)/qq(x^2).
    i = np.flatnonzero((a >= _QUARTER) & (a < _B1) & positive)
    v = xf[i]
    y, ye = _ratio2(_PP, _QQ, v * v)
    p, pe = _two_prod(v, y)
    w, we = _two_sum(p, v - _HALF)  # x - 0.5: exact
    h, he = _two_sum(-w, _HALF)
    out[i] = h + (he - (we + (pe + v * ye)))

    # 0.84375 <= x < 1.25: (1 - erx) - pa(s)/qa(s), s = x - 1; 1 - erx: exact.
    i = np.flatnonzero((a >= _B1) & (a < _B2) & positive)
    pq, pqe = _ratio2(_PA, _QA, a[i] - _ONE)
    h, he = _two_sum(-pq, _ONE - _ERX)
    out[i] = h + (he - pqe)

    # 1.25 <= x < 107.
    i = np.flatnonzero((a >= _B2) & (a < _B5) & positive)
    v = a[i]
    s = _ONE / (v * v)
    rs = np.empty_like(v)
    rse = np.empty_like(v)
    # Compensated below 6.667 only: beyond, |R/S| < 0.021, and its rounding errors (absolute
    # errors in the exponent) stay far below the result's ULP.
    for lower, upper, r, q in ((_B2, _B3, _RA, _SA), (_B3, _B4, _RB, _SB)):
        j = (v >= lower) & (v < upper)
        rs[j], rse[j] = _ratio2(r, q, s[j])
    j = v >= _B4
    rs[j], rse[j] = _div(_horner(_RC, s[j]), _horner_monic(_SC, s[j]))
    out[i] = _erfc_tail(v, rs, rse)

    i = np.flatnonzero(finite & (a >= _B5) & positive)
    out[i] = _L(0)  # tiny * tiny
    return out.reshape(shape)
