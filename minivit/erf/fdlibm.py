"""Special functions NumPy lacks: a vectorised error function for the exact GELU.

NumPy has no ``erf`` and minivit may depend on NumPy alone at run time (no SciPy),
so :func:`erf_fdlibm` implements it from the classic Sun Microsystems *fdlibm*
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

Precision (measured against ``math.erf``/mpmath, see ``tests/erf/test_erf.py``):

* ``float64`` input is computed in float64 with the double-precision fdlibm
  coefficients (``s_erf.c``): at most 1 ulp from ``math.erf`` (max abs error
  1.1e-16, within 0.8 ulp of the exact value on a random sample) -- the same
  algorithm as glibc's and musl's ``erf``.
* ``float32`` input to :func:`erf_fdlibm` is computed in float32 with the
  single-precision coefficients of FreeBSD's ``s_erff.c`` (the lower-degree fits by
  S. Kargl, 2014, with ``|x| >= 4`` -> +-1): within one float32 ulp (max abs error
  about 5e-8).
* :func:`erf_numpy` -- what the exact GELU calls -- takes a faster road for float32:
  :func:`erf_float32`, ``tanh(x R(x^2))`` with R a polynomial of degree 6 on
  ``|x| <= 4.5`` (coefficients in ``coefficients.ERF32_TANH``), 15 in-place passes and
  NumPy's vectorised tanh over cache-sized blocks, no gather/scatter: several times faster
  than the fdlibm ranges, within 8 float32 ulp (3.3 measured, absolute error < 5e-7), which
  float32 training cannot tell apart.
* ``float16`` is computed in float32 and rounded back; integer and boolean
  input gives float64, like a NumPy ufunc.

The only liberty taken with fdlibm: its branch for |x| < 2**-28 (``x + efx*x``, against
spurious underflow/inexact flags) is folded into range (1), where x^2 is negligible and the
result agrees within 1 ulp (bit for bit in float32; 1e-300 -> 1.1283791670955126e-300).

Vectorisation: no per-element Python code.  NumPy input goes in blocks of ``_BLOCK``
elements, whose temporaries stay in the CPU cache (CuPy input in one piece).  Range (1) is
evaluated on every element (clipped into the range: nothing overflows, nan propagates); the
few elements with ``|x| >= 0.84375`` are gathered, ranges (2)-(5) evaluated on them (each
clipped into its range), combined by bitwise selects and scattered back.  The arithmetic
goes through the input's array module (``minivit.backend.array_module``): no NumPy import.
"""

from __future__ import annotations

import contextlib

from minivit.backend import array_module, cupy_special, is_cupy_array
from minivit.erf.coefficients import (
    ERX32,
    ERX64,
    PA32,
    PA64,
    PP32,
    PP64,
    QA32,
    QA64,
    QQ32,
    QQ64,
    RA32,
    RA64,
    RB32,
    RB64,
    SA32,
    SA64,
    SB32,
    SB64,
    from_bits32,
    from_bits64,
)
from minivit.erf.float32 import erf_float32, normal_cdf_float32


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
    erx=ERX64, pp=PP64, qq=QQ64, pa=PA64, qa=QA64,
    ra=RA64, sa=SA64, rb=RB64, sb=SB64,
    tail_limit=from_bits64(0x4006DB6E00000000),  # high word 0x4006DB6E ~ 1/0.35
    saturate=6.0,
)
_C32 = _Consts(
    uint="uint32", split_mask=0xFFFFE000, sign_bit=1 << 31,  # SET_FLOAT_WORD(z, hx&0xffffe000)
    erx=ERX32, pp=PP32, qq=QQ32, pa=PA32, qa=QA32,
    ra=RA32, sa=SA32, rb=RB32, sb=SB32,
    tail_limit=from_bits32(0x4036DB8C),  # 2.85715 ~ 1/0.35
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


def erf_fdlibm(x):
    """Elementwise error function ``erf(x) = 2/sqrt(pi) * integral_0^x exp(-t^2) dt``,
    fdlibm's algorithm in both precisions (:func:`erf_numpy` uses it for float64).

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
        raise TypeError(f"erf: complex input ({dt}) is not supported")
    if dt.kind != "f":
        x, dt = x.astype("float64"), xp.dtype("float64")
    if not dt.isnative:  # the bit tricks below need native byte order
        x = x.astype(dt.newbyteorder("="))
        dt = x.dtype
    if dt.itemsize < 4:  # float16: compute in float32, round back
        return erf_fdlibm(x.astype("float32")).astype(dt)
    if dt.itemsize > 8:  # long double: fdlibm double accuracy is all we offer
        return erf_fdlibm(x.astype("float64")).astype(dt)
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


def normal_cdf(x):
    """Phi(x) = (1 + erf(x / sqrt 2)) / 2, the standard normal CDF, as a new array: for float32
    NumPy in one blocked pass (:func:`erf_float32`'s, within 4e-7 of the exact value), for
    every other dtype and on CuPy through :func:`erf`."""
    xp = array_module(x)
    if not is_cupy_array(x) and x.dtype == xp.dtype("float32") and x.dtype.isnative:
        return normal_cdf_float32(x)
    cdf = erf(x * 0.7071067811865476)                           # erf(x / sqrt 2), in place below
    cdf += 1.0
    cdf *= 0.5
    return cdf


def erf_numpy(x):
    """Elementwise error function without SciPy: :func:`erf_float32` for float32 input (fast,
    within 8 ulp), fdlibm (:func:`erf_fdlibm`, within 1 ulp) for every other dtype -- float64,
    what the gradient checks use, keeps its full precision."""
    xp = array_module(x)
    x = xp.asarray(x)
    if x.dtype == xp.dtype("float32") and x.dtype.isnative:
        return erf_float32(x)
    return erf_fdlibm(x)


def erf(x, out=None):
    """Elementwise error function on either backend: CuPy's kernel for a CuPy array,
    :func:`erf_numpy` otherwise (NumPy has none built in).  ``out``: an array of x's shape and
    dtype for the result (``x`` itself allowed); float32 NumPy is then computed in place."""
    if is_cupy_array(x):
        y = cupy_special().erf(x)
    elif out is not None and x.dtype == out.dtype == array_module(x).dtype("float32") \
            and out.flags.c_contiguous and x.dtype.isnative:
        return erf_float32(x, out=out)
    else:
        y = erf_numpy(x)
    if out is None:
        return y
    out[...] = y
    return out


__all__ = ["erf", "erf_fdlibm", "erf_float32", "erf_numpy", "normal_cdf"]

