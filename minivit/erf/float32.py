"""float32 erf and normal CDF in few passes: tanh of a polynomial (minivit.erf.fdlibm uses these
for float32 NumPy arrays; :func:`minivit.erf.fdlibm.erf` is the entry point).

    erf(x) ~= tanh(x R(x^2)),  R of degree 6 (coefficients.ERF32_TANH),  |x| <= 4.5
    Phi(x) = (1 + erf(x / sqrt 2)) / 2

NumPy's tanh is a fast vectorised ufunc, so erf costs 15 in-place passes and one tanh over
blocks of the array that stay in the CPU cache, with no gather/scatter.  Within 8 float32 ulp
of the exact erf (3.3 measured, tests/erf/test_erf.py; the fit: benchmarks/fit_erf_float32.py).

The blocks are large (2^18 numbers, 1 MB) because every NumPy call gives up Python's lock and
takes it back, and with one thread per core the threads queue for it between short calls.
Phi of cifar-tiny's MLP array at batch 64 (3.2 million numbers), measured 2026-12-06 with
blocks of 2^15 / 2^18: one thread 4.6 / 4.5 ms, two threads at once 12.3 / 5.8 ms each.
"""

from __future__ import annotations

import contextlib

from minivit.backend import array_module
from minivit.erf.coefficients import ERF32_TANH

_SATURATE32 = 4.5  # erf = 1.0 in float32 from x = 3.92; any tanh(u(4.5) = 14.7) is 1.0
_BLOCK32 = 1 << 18  # few calls: with two threads, each call is a hand-over of Python's lock
_INV_SQRT_2 = 0.7071067811865476


def _erf32_block(x, out, z, t, cdf=False):
    """out = erf(x) of a 1-d float32 block (cdf: Phi(x) = (1 + erf(x / sqrt 2)) / 2); z, t: scratch.

        a = clip(x, -4.5, 4.5),  z = a^2,  erf(x) ~= tanh(a R(z))     (coefficients.ERF32_TANH)

    Every operation writes into ``out``, ``z`` or ``t``: 3 + 2 * 6 passes and one tanh (a fast
    vectorised NumPy ufunc) over a block that stays in the CPU cache, no temporaries (cdf:
    three more).  nan stays nan (clip keeps it), +-inf -> +-1, the sign of zero is kept."""
    xp = array_module(x)
    if cdf:
        xp.multiply(x, _INV_SQRT_2, out=out)
        xp.clip(out, -_SATURATE32, _SATURATE32, out=out)               # a = x / sqrt 2, clipped
    else:
        xp.clip(x, -_SATURATE32, _SATURATE32, out=out)                 # a
    xp.multiply(out, out, out=z)                                       # z = a^2
    _horner_into(z, ERF32_TANH, t, xp)                                 # t = R(z)
    out *= t                                                           # u = a R(a^2)
    xp.tanh(out, out=out)                                              # erf ~= tanh(u)
    if cdf:
        out *= 0.5
        out += 0.5                                                     # Phi = (1 + erf) / 2


def _horner_into(z, coeffs, out, xp):
    """out = coeffs[0] + coeffs[1] z + ... (in place, coeffs of length >= 2)."""
    xp.multiply(z, coeffs[-1], out=out)
    out += coeffs[-2]
    for c in reversed(coeffs[:-2]):
        out *= z
        out += c


def erf_float32(x, out=None):
    """erf of a float32 array (any shape), as tanh(x R(x^2)): within 8 float32 ulp of the exact
    value (3.3 measured, absolute error < 5e-7; tests/erf/test_erf.py samples every range,
    subnormals, +-inf, nan).  Into ``out`` when given (C-contiguous float32 of x's shape, ``x``
    itself allowed), else into a new array."""
    return _blocked32(x, out, cdf=False)


def normal_cdf_float32(x):
    """Phi(x) = (1 + erf(x / sqrt 2)) / 2 of a float32 array, a new array, in the same blocked
    pass as :func:`erf_float32` (within 4e-7 of the exact value)."""
    return _blocked32(x, None, cdf=True)


def _blocked32(x, out, cdf):
    """NumPy: blocks of ``_BLOCK32`` elements, each pass in the CPU cache; CuPy: one piece."""
    xp = array_module(x)
    flat = xp.ascontiguousarray(x).reshape(-1)
    y = xp.empty_like(flat) if out is None else out.reshape(-1)
    n = flat.size
    block = _BLOCK32 if getattr(xp, "errstate", None) else max(n, 1)   # NumPy: blocks
    z, t = xp.empty(min(n, block), flat.dtype), xp.empty(min(n, block), flat.dtype)
    errstate = getattr(xp, "errstate", None)
    with errstate(under="ignore") if errstate else contextlib.nullcontext():   # subnormal x
        for start in range(0, n, block):                                      # -> z = x^2 = 0
            k = min(start + block, n) - start
            _erf32_block(flat[start:start + k], y[start:start + k], z[:k], t[:k], cdf)
    return y.reshape(x.shape) if out is None else out


__all__ = ["erf_float32", "normal_cdf_float32"]
