"""Exercise: the backward pass of LayerNorm (minivit/layers/layernorm.py)."""

from minivit.exercises.exercise import Case, Exercise, unpack_tuple
from minivit.layers.layernorm import EPS, layernorm_backward, layernorm_forward

STATEMENT = """
LayerNorm normalises each row of D features, then scales and shifts it:

    mean = (1/D) sum_i x_i      var = (1/D) sum_i (x_i - mean)^2      rstd = 1 / sqrt(var + eps)
    xhat = (x - mean) rstd      y = xhat * weight + bias

    x (..., D)   weight (D,)   bias (D,)   ->   y (..., D)      cache = (xhat, rstd, weight)

Write ``layernorm_backward``: given dy (..., D), return (dx, dweight, dbias).

Hints: weight and bias are shared by every row, so their gradients are sums over all the rows:
    dweight = sum over rows of dy * xhat        dbias = sum over rows of dy
For dx, let g = dy * weight (the gradient reaching xhat).  Both mean and rstd depend on every
x_i of the row; working it through gives
    dx = rstd (g - mean(g) - xhat mean(g xhat))          (means over the D features)
minivit.layers.sums has row_mean (the mean over the last axis, kept) and column_sum (the sum
over every leading axis).
"""


def forward(inputs, static):
    return layernorm_forward(inputs["x"], inputs["weight"], inputs["bias"])


def call(backward, dy, cache, static):
    return backward(dy, cache)


def unpack(result):
    return unpack_tuple(result, ("x", "weight", "bias"), "layernorm_backward")


def cases(rng):
    out = []
    for leading, D in (((4,), 5), ((2, 3), 6), ((2, 2, 3), 4)):
        out.append(Case({"x": 1.0 + 2.0 * rng.standard_normal(leading + (D,)),
                         "weight": 1.0 + 0.5 * rng.standard_normal(D),
                         "bias": 0.5 * rng.standard_normal(D)}))
    return out


def torch_forward(torch, t, static):
    D = t["x"].shape[-1]
    return torch.nn.functional.layer_norm(t["x"], (D,), t["weight"], t["bias"], eps=EPS)


EXERCISE = Exercise(
    name="layernorm", title="LayerNorm over the features", difficulty="medium",
    solution=layernorm_backward, statement=STATEMENT, given=(layernorm_forward,),
    forward=forward, call=call, unpack=unpack, cases=cases, torch_forward=torch_forward)
