"""Exercise: the backward pass of a fully connected layer (minivit/layers/linear.py)."""

from minivit.exercises.exercise import Case, Exercise, unpack_tuple
from minivit.layers.linear import linear_backward, linear_forward

STATEMENT = """
The forward pass computes y = x W^T + b for every row of x:

    x (..., in)     weight W (out, in)     bias b (out,)     ->     y (..., out)

Leading dimensions (batch, tokens) are flattened into one, so x is a matrix X (M, in) and
Y = X W^T + b is one matrix product.  ``cache`` = (x, weight, has_bias).

Write ``linear_backward``: given dy = dL/dy (..., out), return (dx, dweight, dbias),
each the shape of what it is the gradient of (dbias None when there is no bias).

Hints, with dY (M, out) the flattened dy:
    dX = dY W                    (M, out) @ (out, in)
    dW = dY^T X                  the sum over the M rows of outer products dy_m x_m^T
    db = sum of dY over its rows
Check the shapes first: each gradient has exactly the shape of its tensor.
"""


def forward(inputs, static):
    return linear_forward(inputs["x"], inputs["weight"], inputs["bias"])


def call(backward, dy, cache, static):
    return backward(dy, cache)


def unpack(result):
    return unpack_tuple(result, ("x", "weight", "bias"), "linear_backward")


def cases(rng):
    out = []
    for leading in ((3,), (2, 5), (1, 4, 2)):
        n_in, n_out = (int(v) for v in rng.integers(2, 7, size=2))
        n_out += n_in == n_out            # in != out: a missing transpose changes the shape
        out.append(Case({"x": rng.standard_normal(leading + (n_in,)),
                         "weight": rng.standard_normal((n_out, n_in)),
                         "bias": rng.standard_normal(n_out)}))
    return out


def torch_forward(torch, t, static):
    return torch.nn.functional.linear(t["x"], t["weight"], t["bias"])


EXERCISE = Exercise(
    name="linear", title="a fully connected layer, y = x W^T + b", difficulty="easy",
    solution=linear_backward, statement=STATEMENT, given=(linear_forward,),
    forward=forward, call=call, unpack=unpack, cases=cases, torch_forward=torch_forward)
