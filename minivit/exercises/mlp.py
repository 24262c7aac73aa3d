"""Exercise: the backward pass of the Transformer's MLP (minivit/layers/mlp.py)."""

from minivit.exercises.exercise import Case, Exercise, unpack_tuple
from minivit.layers.mlp import MLPCache, mlp_backward, mlp_forward

NAMES = ("x", "fc1_weight", "fc1_bias", "fc2_weight", "fc2_bias")

STATEMENT = """
The MLP of every encoder block: two linear layers with a GELU between (dropout after each,
off here: its caches are None, and dropout_backward(d, None) returns d).

    h = fc1(x) = x W1^T + b1     a = gelu(h)     y = fc2(a) = a W2^T + b2
    x (B, T, D)   W1 (M, D)   b1 (M,)   W2 (D, M)   b2 (D,)   ->   y (B, T, D)

To save memory the forward does not keep a: fc2's cache is (None, W2, has_bias), and
gelu_output(cache.gelu) rebuilds a from the GELU's cache (times cache.drop1 with dropout).

Write ``mlp_backward``: given dy (B, T, D), return (dx, dfc1_weight, dfc1_bias, dfc2_weight,
dfc2_bias).  This exercise is about composing: linear_backward and gelu_backward are the
library's answers to the exercises before, imported for you.

Hints: walk the forward in reverse.  fc2's backward needs fc2's input a (rebuild it), and
gives da; the GELU turns da into dh; fc1's backward turns dh into dx and fc1's gradients.
"""


def forward(inputs, static):
    return mlp_forward(*(inputs[k] for k in NAMES), static["approximate"])


def call(backward, dy, cache, static):
    return backward(dy, cache)


def unpack(result):
    return unpack_tuple(result, NAMES, "mlp_backward")


def cases(rng):
    out = []
    for B, T, D, M, kind in ((2, 3, 4, 6, "erf"), (1, 5, 3, 8, "tanh"), (2, 2, 5, 7, "erf")):
        out.append(Case({"x": rng.standard_normal((B, T, D)),
                         "fc1_weight": rng.standard_normal((M, D)),
                         "fc1_bias": rng.standard_normal(M),
                         "fc2_weight": rng.standard_normal((D, M)),
                         "fc2_bias": rng.standard_normal(D)}, {"approximate": kind}))
    return out


def torch_forward(torch, t, static):
    F = torch.nn.functional
    kind = "none" if static["approximate"] == "erf" else "tanh"
    h = F.gelu(F.linear(t["x"], t["fc1_weight"], t["fc1_bias"]), approximate=kind)
    return F.linear(h, t["fc2_weight"], t["fc2_bias"])


EXERCISE = Exercise(
    name="mlp", title="the MLP: linear, GELU, linear", difficulty="medium",
    solution=mlp_backward, statement=STATEMENT, given=(MLPCache, mlp_forward),
    forward=forward, call=call, unpack=unpack, cases=cases, torch_forward=torch_forward)
