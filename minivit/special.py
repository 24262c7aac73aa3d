"""Special functions NumPy lacks: a vectorised error function for the exact GELU.

NumPy has no ``erf`` and minivit may depend on NumPy alone at run time (no SciPy),
so :func:`erf_numpy` implements it from the classic Sun Microsystems *fdlibm*
algorithm (``s_erf.c``, 1993, as kept in FreeBSD ``lib/msun`` and musl
``src/math/erf.c``), whose rational approximations are in the style of
W. J. Cody's (Cody, "Rational Chebyshev approximations for the error function",
Math. Comp. 23, 1969).  The file header of ``s_erf.c`` describes the method;
in short, for ``a = |x|``::

    a < 0.84375        erf(x) = x + x*P(x^2)/Q(x^2)                 (1)
    0.84375 <= a < 1.25  erf(x) = sign(x)*(erx + P1(s)/Q1(s)), s = a-1  (2)
    1.25 <= a < 1/0.35   erf(x) = sign(x)*(1 - exp(-a^2-0.5625+R1/S1)/a)  (3)
    1/0.35 <= a < 6      erf(x) = sign(x)*(1 - exp(-a^2-0.5625+R2/S2)/a)  (4)
    a >= 6               erf(x) = sign(x)                               (5)

with ``R/S`` rational functions of ``1/a^2`` (an asymptotic expansion of
``log(a*erfc(a)) + a^2``) and ``erx`` = erf(1) rounded to single precision.
In (3)/(4), as in fdlibm, ``exp(-a^2 ...)`` is evaluated as
``exp(-z*z-0.5625) * exp((z-a)*(z+a) + R/S)`` where ``z`` is ``a`` with its low
mantissa bits cleared, so that ``z*z`` is exact and the rounding error of ``a*a``
never reaches the exponential.  Special values: erf(+-0) = +-0, erf(+-inf) = +-1,
erf(nan) = nan.

Precision (measured against ``math.erf``/mpmath, see ``tests/test_special.py``):

* ``float64`` input is computed in float64 with the double-precision fdlibm
  coefficients (``s_erf.c``): at most 1 ulp from ``math.erf`` (max abs error
  1.1e-16, within 0.8 ulp of the exact value on a random sample) -- the same
  algorithm as glibc's and musl's ``erf``.
* ``float32`` input is computed in float32 with the single-precision coefficients
  of FreeBSD's ``s_erff.c`` (the lower-degree fits by S. Kargl, 2014, with
  ``|x| >= 4`` -> +-1): within one float32 ulp (max abs error about 5e-8).
  Staying in float32 halves the memory traffic, which is what bounds the speed.
* ``float16`` is computed in float32 and rounded back; integer and boolean
  input gives float64, like a NumPy ufunc.

The only liberty taken with fdlibm: its separate branch for |x| < 2**-28
(``x + efx*x``, there to avoid spurious underflow/inexact flags) is folded into
range (1), where x^2 is then negligible and the result agrees to within 1 ulp
(bit for bit in float32; 1e-300 -> 1.1283791670955126e-300 either way).

Vectorisation: no per-element Python code.  NumPy input is processed in blocks
of ``_BLOCK`` elements so that each block's temporaries stay in the CPU cache
(CuPy input in one piece).  Within a block, range (1) is evaluated on every
element (on the argument clipped into the range, so nothing can overflow, and
nan propagates); the elements with ``|x| >= 0.84375`` -- a minority for GELU
inputs -- are gathered by index, ranges (2)-(5) are evaluated on them (each on
the argument clipped into its range) and combined with bitwise selects, and the
results are scattered back.  All arithmetic goes through the array module of the
input (NumPy, or CuPy for a device array), obtained from
:func:`minivit.backend.array_module`; this module never imports NumPy itself.
"""

from __future__ import annotations

import contextlib
import struct

from minivit.backend import array_module


# --------------------------------------------------------------------------------
# Coefficients.  Each is written as in the C source, next to its IEEE bit pattern
# (also from the source); ``tests/test_special.py`` checks that the two agree, so a
# mistyped digit cannot slip in.  Tuples are in ascending powers.
# --------------------------------------------------------------------------------

_BITS64: list[tuple[str, float, int]] = []  # (name, value, IEEE-754 binary64 bits)
_BITS32: list[tuple[str, float, int]] = []  # (name, value, IEEE-754 binary32 bits)


def _d(name: str, value: float, bits: int) -> float:
    _BITS64.append((name, value, bits))
    return value


def _f(name: str, value: float, bits: int) -> float:
    _BITS32.append((name, value, bits))
    return value


def _from_bits64(bits: int) -> float:
    return struct.unpack("<d", struct.pack("<Q", bits))[0]


def _from_bits32(bits: int) -> float:
    return struct.unpack("<f", struct.pack("<I", bits))[0]


# ---- double precision: fdlibm / FreeBSD msun s_erf.c (= musl src/math/erf.c) ----
_ERX64 = _d("erx", 8.45062911510467529297e-01, 0x3FEB0AC160000000)
# erf on [0, 0.84375]: (erf(x) - x)/x = PP(x^2)/QQ(x^2)
_PP64 = (
    _d("pp0", 1.28379167095512558561e-01, 0x3FC06EBA8214DB68),
    _d("pp1", -3.25042107247001499370e-01, 0xBFD4CD7D691CB913),
    _d("pp2", -2.84817495755985104766e-02, 0xBF9D2A51DBD7194F),
    _d("pp3", -5.77027029648944159157e-03, 0xBF77A291236668E4),
    _d("pp4", -2.37630166566501626084e-05, 0xBEF8EAD6120016AC),
)
_QQ64 = (
    1.0,
    _d("qq1", 3.97917223959155352819e-01, 0x3FD97779CDDADC09),
    _d("qq2", 6.50222499887672944485e-02, 0x3FB0A54C5536CEBA),
    _d("qq3", 5.08130628187576562776e-03, 0x3F74D022C4D36B0F),
    _d("qq4", 1.32494738004321644526e-04, 0x3F215DC9221C1A10),
    _d("qq5", -3.96022827877536812320e-06, 0xBED09C4342A26120),
)
# erf on [0.84375, 1.25]: erf(1+s) - erx = PA(s)/QA(s)
_PA64 = (
    _d("pa0", -2.36211856075265944077e-03, 0xBF6359B8BEF77538),
    _d("pa1", 4.14856118683748331666e-01, 0x3FDA8D00AD92B34D),
    _d("pa2", -3.72207876035701323847e-01, 0xBFD7D240FBB8C3F1),
    _d("pa3", 3.18346619901161753674e-01, 0x3FD45FCA805120E4),
    _d("pa4", -1.10894694282396677476e-01, 0xBFBC63983D3E28EC),
    _d("pa5", 3.54783043256182359371e-02, 0x3FA22A36599795EB),
    _d("pa6", -2.16637559486879084300e-03, 0xBF61BF380A96073F),
)
_QA64 = (
    1.0,
    _d("qa1", 1.06420880400844228286e-01, 0x3FBB3E6618EEE323),
    _d("qa2", 5.40397917702171048937e-01, 0x3FE14AF092EB6F33),
    _d("qa3", 7.18286544141962662868e-02, 0x3FB2635CD99FE9A7),
    _d("qa4", 1.26171219808761642112e-01, 0x3FC02660E763351F),
    _d("qa5", 1.36370839120290507362e-02, 0x3F8BEDC26B51DD1C),
    _d("qa6", 1.19844998467991074170e-02, 0x3F888B545735151D),
)
# erfc on [1.25, 1/0.35]: log(x*erfc(x)) + x^2 + 0.5625 = RA(1/x^2)/SA(1/x^2)
_RA64 = (
    _d("ra0", -9.86494403484714822705e-03, 0xBF843412600D6435),
    _d("ra1", -6.93858572707181764372e-01, 0xBFE63416E4BA7360),
    _d("ra2", -1.05586262253232909814e01, 0xC0251E0441B0E726),
    _d("ra3", -6.23753324503260060396e01, 0xC04F300AE4CBA38D),
    _d("ra4", -1.62396669462573470355e02, 0xC0644CB184282266),
    _d("ra5", -1.84605092906711035994e02, 0xC067135CEBCCABB2),
    _d("ra6", -8.12874355063065934246e01, 0xC054526557E4D2F2),
    _d("ra7", -9.81432934416914548592e00, 0xC023A0EFC69AC25C),
)
_SA64 = (
    1.0,
    _d("sa1", 1.96512716674392571292e01, 0x4033A6B9BD707687),
    _d("sa2", 1.37657754143519042600e02, 0x4061350C526AE721),
    _d("sa3", 4.34565877475229228821e02, 0x407B290DD58A1A71),
    _d("sa4", 6.45387271733267880336e02, 0x40842B1921EC2868),
    _d("sa5", 4.29008140027567833386e02, 0x407AD02157700314),
    _d("sa6", 1.08635005541779435134e02, 0x405B28A3EE48AE2C),
    _d("sa7", 6.57024977031928170135e00, 0x401A47EF8E484A93),
    _d("sa8", -6.04244152148580987438e-02, 0xBFAEEFF2EE749A62),
)
# erfc on [1/0.35, 28] (used up to 6 for erf)
_RB64 = (
    _d("rb0", -9.86494292470009928597e-03, 0xBF84341239E86F4A),
    _d("rb1", -7.99283237680523006574e-01, 0xBFE993BA70C285DE),
    _d("rb2", -1.77579549177547519889e01, 0xC031C209555F995A),
    _d("rb3", -1.60636384855821916062e02, 0xC064145D43C5ED98),
    _d("rb4", -6.37566443368389627722e02, 0xC083EC881375F228),
    _d("rb5", -1.02509513161107724954e03, 0xC09004616A2E5992),
    _d("rb6", -4.83519191608651397019e02, 0xC07E384E9BDC383F),
)
_SB64 = (
    1.0,
    _d("sb1", 3.03380607434824582924e01, 0x403E568B261D5190),
    _d("sb2", 3.25792512996573918826e02, 0x40745CAE221B9F0A),
    _d("sb3", 1.53672958608443695994e03, 0x409802EB189D5118),
    _d("sb4", 3.19985821950859553908e03, 0x40A8FFB7688C246A),
    _d("sb5", 2.55305040643316442583e03, 0x40A3F219CEDF3BE6),
    _d("sb6", 4.74528541206955367215e02, 0x407DA874E79FE763),
    _d("sb7", -2.24409524465858183362e01, 0xC03670E242712D62),
)

# ---- single precision: FreeBSD msun s_erff.c (S. Kargl's 2014 refit) ----
_ERX32 = _f("erx", 8.42697144e-01, 0x3F57BB00)
# [0, 0.84375]: |(erf(x) - x)/x - pp/qq| < 2**-31
_PP32 = (
    _f("pp0", 1.28379166e-01, 0x3E0375D4),
    _f("pp1", -3.36030394e-01, 0xBEAC0C2D),
    _f("pp2", -1.86261395e-03, 0xBAF422F4),
)
_QQ32 = (
    1.0,
    _f("qq1", 3.12324315e-01, 0x3E9FE8F9),
    _f("qq2", 2.16070414e-02, 0x3CB10140),
    _f("qq3", -1.98859372e-03, 0xBB025311),
)
# [0.84375, 1.25]: |(erf(x) - erx) - pa/qa| < 2**-31
_PA32 = (
    _f("pa0", 3.65041046e-06, 0x3674F993),
    _f("pa1", 4.15109307e-01, 0x3ED48935),
    _f("pa2", -2.09395722e-01, 0xBE566BD5),
    _f("pa3", 8.67677554e-02, 0x3DB1B34B),
)
_QA32 = (
    1.0,
    _f("qa1", 4.95560974e-01, 0x3EFDBA2B),
    _f("qa2", 3.71248513e-01, 0x3EBE1449),
    _f("qa3", 3.92478965e-02, 0x3D20C267),
)
# [1.25, 1/0.35]: |log(x*erfc(x)) + x**2 + 0.5625 - ra/sa| < 2**-28
_RA32 = (
    _f("ra0", -9.88156721e-03, 0xBC21E64C),
    _f("ra1", -5.43658376e-01, 0xBF0B2D32),
    _f("ra2", -1.66828310e00, 0xBFD58A4D),
    _f("ra3", -6.91554189e-01, 0xBF3109B2),
)
_SA32 = (
    1.0,
    _f("sa1", 4.48581553e00, 0x408F8BCD),
    _f("sa2", 4.10799170e00, 0x408374AB),
    _f("sa3", 5.53855181e-01, 0x3F0DC974),
)
# [1/0.35, 11]: |log(x*erfc(x)) + x**2 + 0.5625 - rb/sb| < 2**-30
_RB32 = (
    _f("rb0", -9.86496918e-03, 0xBC21A0AE),
    _f("rb1", -5.48049808e-01, 0xBF0C4CFE),
    _f("rb2", -1.84115684e00, 0xBFEBAB07),
)
_SB32 = (
    1.0,
    _f("sb1", 4.87132740e00, 0x409BE1EA),
    _f("sb2", 3.04982710e00, 0x4043305E),
    _f("sb3", -7.61900663e-01, 0xBF430BEC),
)


class _Consts:
    """Everything one precision needs: coefficients, range limits, bit masks."""

    def __init__(self, *, uint, split_mask, sign_bit, erx, pp, qq, pa, qa, ra, sa,
                 rb, sb, tail_limit, saturate):
        self.uint = uint              # unsigned integer dtype name of the same width
        self.split_mask = split_mask  # clears the low bits of x so that z*z is exact
        self.sign_bit = sign_bit
        self.erx = erx
        self.pp, self.qq, self.pa, self.qa = pp, qq, pa, qa
        self.ra, self.sa, self.rb, self.sb = ra, sa, rb, sb
        self.tail_limit = tail_limit  # boundary between the R_a/S_a and R_b/S_b fits
        self.saturate = saturate      # |x| >= saturate -> erf(x) = sign(x)


_SMALL = 0.84375  # both precisions: range (1) is |x| < 0.84375 ...
_MID = 1.25       # ... range (2) is 0.84375 <= |x| < 1.25

_C64 = _Consts(
    uint="uint64", split_mask=0xFFFFFFFF00000000, sign_bit=1 << 63,  # SET_LOW_WORD(z, 0)
    erx=_ERX64, pp=_PP64, qq=_QQ64, pa=_PA64, qa=_QA64,
    ra=_RA64, sa=_SA64, rb=_RB64, sb=_SB64,
    tail_limit=_from_bits64(0x4006DB6E00000000),  # high word 0x4006DB6E ~ 1/0.35
    saturate=6.0,
)
_C32 = _Consts(
    uint="uint32", split_mask=0xFFFFE000, sign_bit=1 << 31,  # SET_FLOAT_WORD(z, hx&0xffffe000)
    erx=_ERX32, pp=_PP32, qq=_QQ32, pa=_PA32, qa=_QA32,
    ra=_RA32, sa=_SA32, rb=_RB32, sb=_SB32,
    tail_limit=_from_bits32(0x4036DB8C),  # 2.85715 ~ 1/0.35
    saturate=4.0,
)

# NumPy work is done in blocks of this many elements, so that the dozens of
# temporaries of one block stay in the CPU cache (about 2x faster than whole-array
# passes on 1e7 elements).  CuPy arrays are done in one piece.
_BLOCK = 1 << 15


# --------------------------------------------------------------------------------
# Vectorised pieces, on 1-d contiguous arrays.  Each returns a new array and works
# in place on its own temporaries; Python float constants are "weak" scalars, so a
# float32 array stays float32 throughout (NEP 50; CuPy behaves the same).
# Selections use bit operations rather than ``where``/boolean indexing, which are
# several times slower on NumPy when the mask is irregular.
# --------------------------------------------------------------------------------

def _horner(t, coeffs):
    """coeffs[0] + coeffs[1]*t + ... + coeffs[-1]*t**n, elementwise (n >= 1)."""
    p = t * coeffs[-1]
    p += coeffs[-2]
    for c in reversed(coeffs[:-2]):
        p *= t
        p += c
    return p


def _ratio(t, num, den):
    p = _horner(t, num)
    p /= _horner(t, den)
    return p


def _select(mask, a, b, c: _Consts, xp):
    """where(mask, a, b) for same-dtype float arrays, by bit masking."""
    m = mask.astype(c.uint)
    xp.negative(m, out=m)                          # True -> all ones, False -> 0
    r = a.view(c.uint) & m
    xp.invert(m, out=m)
    m &= b.view(c.uint)
    r |= m
    return r.view(a.dtype)


def _with_sign_of(y, x, c: _Consts, xp):
    """copysign(y, x) for y >= +0 (not nan), by bit masking."""
    r = x.view(c.uint) & xp.dtype(c.uint).type(c.sign_bit)
    r |= y.view(c.uint)
    return r.view(y.dtype)


def _erf_small(x, c: _Consts):
    """Range (1), |x| < 0.84375: x + x*PP(x^2)/QQ(x^2).

    For |x| < 2**-28 fdlibm returns x + efx*x in a separate branch, only to avoid
    an inexact/underflow flag; here x^2 is then negligible, PP/QQ rounds to pp0,
    and the formula is the same to within one ulp (identical in float32).
    """
    z = x * x
    y = _ratio(z, c.pp, c.qq)
    y *= x
    y += x
    return y


def _erf_mid(ax, c: _Consts):
    """Range (2), 0.84375 <= |x| < 1.25: erx + PA(s)/QA(s), s = |x|-1 (|x| given)."""
    y = _ratio(ax - 1.0, c.pa, c.qa)
    y += c.erx
    return y


def _erfc_tail(ax, c: _Consts, xp):
    """Ranges (3)/(4), 1.25 <= |x| <= saturate: erfc(|x|) = exp(-x^2-0.5625+R/S)/|x|."""
    s = ax * ax
    xp.reciprocal(s, out=s)                        # s = 1/x^2
    near = ax < c.tail_limit
    n_near = int(xp.count_nonzero(near))
    if n_near == ax.size:
        rs = _ratio(s, c.ra, c.sa)
    elif n_near == 0:
        rs = _ratio(s, c.rb, c.sb)
    else:
        rs = _select(near, _ratio(s, c.ra, c.sa), _ratio(s, c.rb, c.sb), c, xp)
    # exp(-x*x - 0.5625 + R/S) = exp(-z*z - 0.5625) * exp((z-x)*(z+x) + R/S)
    z = (ax.view(c.uint) & xp.dtype(c.uint).type(c.split_mask)).view(ax.dtype)
    e = z - ax
    e *= z + ax
    e += rs
    xp.exp(e, out=e)
    z *= z                                         # exact
    xp.negative(z, out=z)
    z -= 0.5625
    xp.exp(z, out=z)
    e *= z
    e /= ax
    return e


def _erf_large(x, ax, c: _Consts, xp):
    """|x| >= 0.84375, nan excluded: ranges (2)-(5).

    Each range is evaluated on the argument clipped into it (so nothing can
    overflow) and the right one is selected.  Range (5) needs no code of its own:
    with |x| clipped to ``saturate`` (6, or 4 in float32) the tail formula gives
    1 - erfc(saturate), which already rounds to exactly 1.0.
    """
    mid = ax < _MID
    n_mid = int(xp.count_nonzero(mid))
    if n_mid:
        y_mid = _erf_mid(xp.clip(ax, _SMALL, _MID), c)
    if n_mid < ax.size:
        y_tail = _erfc_tail(xp.clip(ax, _MID, c.saturate), c, xp)
        xp.subtract(1.0, y_tail, out=y_tail)
    if n_mid == ax.size:
        y = y_mid
    elif n_mid == 0:
        y = y_tail
    else:
        y = _select(mid, y_mid, y_tail, c, xp)
    return _with_sign_of(y, x, c, xp)


def _erf_flat(x, c: _Consts, xp):
    """erf of a 1-d contiguous float32/float64 array: range (1) everywhere, then
    the elements with |x| >= 0.84375 gathered, done by :func:`_erf_large`, put back."""
    # Range (1) on the argument clipped into it, so nothing overflows; nan stays
    # nan, fails the test below, and is therefore done here.
    y = _erf_small(xp.clip(x, -_SMALL, _SMALL), c)
    ax = xp.abs(x)
    i = xp.flatnonzero(ax >= _SMALL)
    if i.size:
        y[i] = _erf_large(x.take(i), ax.take(i), c, xp)
    return y


def erf_numpy(x):
    """Elementwise error function ``erf(x) = 2/sqrt(pi) * integral_0^x exp(-t^2) dt``.

    Parameters
    ----------
    x : array_like (NumPy or CuPy array, or a Python/NumPy scalar), any shape.

    Returns
    -------
    An array of the same shape as ``x`` (0-d for a 0-d or scalar input) and the
    same dtype for float32 and float64 (float16 is computed in float32 and
    rounded back; integers and booleans give float64).  Complex input raises
    ``TypeError``.

    Method: fdlibm's ``s_erf.c`` (Sun Microsystems, 1993; FreeBSD msun, musl)
    for float64 -- at most 1 ulp -- and FreeBSD's ``s_erff.c`` for float32
    (within one float32 ulp), both evaluated with vectorised array operations,
    a fixed number per block of elements; see the module docstring.
    erf(+-0) = +-0, erf(+-inf) = +-1, erf(nan) = nan; no floating-point
    warnings are raised.
    """
    xp = array_module(x)
    x = xp.asarray(x)
    dt = x.dtype
    if dt.kind == "c":
        raise TypeError(f"erf_numpy: complex input ({dt}) is not supported")
    if dt.kind != "f":
        x, dt = x.astype("float64"), xp.dtype("float64")
    if not dt.isnative:  # the bit tricks below need native byte order
        x = x.astype(dt.newbyteorder("="))
        dt = x.dtype
    if dt.itemsize < 4:  # float16: compute in float32, round back
        return erf_numpy(x.astype("float32")).astype(dt)
    if dt.itemsize > 8:  # long double: fdlibm double accuracy is all we offer
        return erf_numpy(x.astype("float64")).astype(dt)
    c = _C64 if dt.itemsize == 8 else _C32
    shape = x.shape
    if x.size == 0:
        return x.copy()

    errstate = getattr(xp, "errstate", None)  # NumPy has it, CuPy does not
    ctx = errstate(under="ignore") if errstate else contextlib.nullcontext()
    flat = xp.ascontiguousarray(x.ravel())
    n = flat.size
    block = _BLOCK if errstate else n
    with ctx:
        if n <= block:
            y = _erf_flat(flat, c, xp)
        else:
            y = xp.empty_like(flat)
            for start in range(0, n, block):  # blocks of elements, not elements
                y[start:start + block] = _erf_flat(flat[start:start + block], c, xp)
    return y.reshape(shape)


__all__ = ["erf_numpy"]
