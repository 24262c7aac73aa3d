"""GELU (Hendrycks & Gimpel 2016), the MLP non-linearity of ViT.

exact ("erf"):  gelu(x) = x Phi(x) = 0.5 x (1 + erf(x / sqrt 2))
                gelu'(x) = Phi(x) + x phi(x),   phi(x) = exp(-x^2/2) / sqrt(2 pi)
approximate ("tanh"):
                gelu(x) = 0.5 x (1 + tanh(u)),  u = sqrt(2/pi) (x + 0.044715 x^3)
                gelu'(x) = 0.5 (1 + t) + 0.5 x (1 - t^2) sqrt(2/pi) (1 + 3 * 0.044715 x^2)

The forward keeps x and Phi(x) (tanh: x and t), what the derivative needs; gelu(x) itself
is not kept: ``gelu_output(cache)`` rebuilds it in one multiplication when a later backward
needs it (the MLP's fc2 does).  Phi(x) is the costly part (an erf), so it is computed once.
"""

import math
from typing import NamedTuple

from minivit.backend import array_module
from minivit.erf import normal_cdf  # Phi(x); the fast erf behind it: minivit/erf/

SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
TANH_C = 0.044715


class GELUCache(NamedTuple):
    kind: str             # "erf" or "tanh"
    x: object             # the input (...)
    aux: object           # erf: Phi(x); tanh: t = tanh(u)   (...)


def gelu_forward(x, approximate="erf"):
    """x (...) -> (y (...), GELUCache)."""
    xp = array_module(x)
    if approximate == "erf":
        # Phi(x) = (1 + erf(x / sqrt 2)) / 2
        cdf = normal_cdf(x)
        return x * cdf, GELUCache("erf", x, cdf)                 # gelu(x) = x Phi(x)
    if approximate == "tanh":
        t = xp.tanh(SQRT_2_OVER_PI * (x + TANH_C * x * x * x))
        return 0.5 * x * (1.0 + t), GELUCache("tanh", x, t)
    raise ValueError(f"approximate must be 'erf' or 'tanh', got {approximate!r}")


def gelu_output(cache):
    """gelu(x) again from the cache, a new array: x Phi(x), or 0.5 x (1 + t)."""
    if cache.kind == "erf":
        return cache.x * cache.aux
    y = cache.aux + 1.0
    y *= cache.x
    y *= 0.5
    return y


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
        d += aux                                                 # gelu'(x) = Phi(x) + x phi(x)
        d *= dy
        return d
    t = aux
    du = SQRT_2_OVER_PI * (1.0 + 3.0 * TANH_C * x * x)
    return dy * (0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * du)
