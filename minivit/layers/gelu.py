"""GELU (Hendrycks & Gimpel 2016), the MLP non-linearity of ViT.

exact ("erf"):  gelu(x) = x Phi(x) = 0.5 x (1 + erf(x / sqrt 2))
                gelu'(x) = Phi(x) + x phi(x),   phi(x) = exp(-x^2/2) / sqrt(2 pi)
approximate ("tanh"):
                gelu(x) = 0.5 x (1 + tanh(u)),  u = sqrt(2/pi) (x + 0.044715 x^3)
                gelu'(x) = 0.5 (1 + t) + 0.5 x (1 - t^2) sqrt(2/pi) (1 + 3 * 0.044715 x^2)
"""

import math

from minivit.backend import array_module
from minivit.special import erf

SQRT_2 = math.sqrt(2.0)
SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
TANH_C = 0.044715


def _phi_cdf(x):
    """Phi(x) = (1 + erf(x / sqrt 2)) / 2, the standard normal CDF: a new array."""
    cdf = x * (1.0 / SQRT_2)                                     # new array; in place below
    erf(cdf, out=cdf)
    cdf += 1.0
    cdf *= 0.5
    return cdf


def gelu_forward(x, approximate="erf"):
    """x (...) -> y (...).  cache = what the derivative needs."""
    xp = array_module(x)
    if approximate == "erf":
        y = _phi_cdf(x)                                          # new array; in place below
        y *= x                                                   # gelu(x) = x Phi(x)
        return y, ("erf", x, None)        # backward recomputes Phi(x): one array less to keep
    if approximate == "tanh":
        t = xp.tanh(SQRT_2_OVER_PI * (x + TANH_C * x * x * x))
        return 0.5 * x * (1.0 + t), ("tanh", x, t)
    raise ValueError(f"approximate must be 'erf' or 'tanh', got {approximate!r}")


def gelu_backward(dy, cache):
    """dy (...) -> dx (...)."""
    kind, x, aux = cache
    xp = array_module(x)
    if kind == "erf":
        d = x * x                                                # new array; in place below
        d *= -0.5
        xp.exp(d, out=d)
        d *= INV_SQRT_2PI                                        # phi(x)
        d *= x
        d += _phi_cdf(x)                                         # gelu'(x) = Phi(x) + x phi(x)
        d *= dy
        return d
    t = aux
    du = SQRT_2_OVER_PI * (1.0 + 3.0 * TANH_C * x * x)
    return dy * (0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * du)
