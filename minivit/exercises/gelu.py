"""Exercise: the backward pass of the GELU, exact and tanh (minivit/layers/gelu.py)."""

from minivit.exercises.exercise import Case, Exercise, unpack_tuple
from minivit.layers.gelu import GELUCache, gelu_backward, gelu_forward

STATEMENT = """
The GELU, elementwise, exact or in its tanh approximation:

    erf:    gelu(x) = x Phi(x),             Phi(x) = (1 + erf(x / sqrt 2)) / 2
    tanh:   gelu(x) = 0.5 x (1 + t),        t = tanh(u),  u = sqrt(2/pi) (x + 0.044715 x^3)

    cache = GELUCache(kind, x, aux): kind "erf" or "tanh", the input x, and aux = Phi(x) (erf)
    or t (tanh)

Write ``gelu_backward``: given dy (the shape of x), return dx = dy * gelu'(x), for both kinds.

Hints:
    erf:    gelu'(x) = Phi(x) + x phi(x),      phi(x) = exp(-x^2 / 2) / sqrt(2 pi)
    tanh:   gelu'(x) = 0.5 (1 + t) + 0.5 x (1 - t^2) du/dx,  du/dx = sqrt(2/pi) (1 + 3 0.044715 x^2)
The module's constants INV_SQRT_2PI = 1/sqrt(2 pi), SQRT_2_OVER_PI and TANH_C = 0.044715
are imported for you.
"""


def forward(inputs, static):
    return gelu_forward(inputs["x"], static["approximate"])


def call(backward, dy, cache, static):
    return backward(dy, cache)


def unpack(result):
    return unpack_tuple(result, ("x",), "gelu_backward")


def cases(rng):
    shapes = (((4, 5), "erf"), ((2, 3, 4), "tanh"), ((7,), "erf"), ((3, 4), "tanh"))
    return [Case({"x": 2.0 * rng.standard_normal(shape)}, {"approximate": kind})
            for shape, kind in shapes]


def torch_forward(torch, t, static):
    kind = "none" if static["approximate"] == "erf" else "tanh"
    return torch.nn.functional.gelu(t["x"], approximate=kind)


EXERCISE = Exercise(
    name="gelu", title="the GELU, exact (erf) and tanh", difficulty="easy",
    solution=gelu_backward, statement=STATEMENT, given=(GELUCache, gelu_forward),
    forward=forward, call=call, unpack=unpack, cases=cases, torch_forward=torch_forward)
