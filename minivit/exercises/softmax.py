"""Exercise: the backward pass of the softmax (minivit/layers/softmax.py)."""

from minivit.exercises.exercise import Case, Exercise, unpack_tuple
from minivit.layers.softmax import softmax_backward, softmax_forward

STATEMENT = """
The forward pass turns scores x into probabilities p along one axis (the last, or the
second-to-last as attention uses it):

    p_i = exp(x_i - max_j x_j) / sum_k exp(x_k - max_j x_j)         cache = p

Write ``softmax_backward``: given dp = dL/dp (the shape of p) and the axis, return dx.

Hints: the Jacobian is dp_i/dx_j = p_i (delta_ij - p_j), so
    dx_i = sum_j dp_j p_j (delta_ij - p_i) = p_i (dp_i - sum_j dp_j p_j)
The sum runs along the softmax's own axis, one number per row (or per column), kept with
length one so that it broadcasts.  minivit.layers.sums.sum_over(a, axis) is
a.sum(axis, keepdims=True), faster on the CPU.
"""


def forward(inputs, static):
    return softmax_forward(inputs["x"], static["axis"])


def call(backward, dp, cache, static):
    return backward(dp, cache, static["axis"])


def unpack(result):
    return unpack_tuple(result, ("x",), "softmax_backward")


def cases(rng):
    shapes = (((4, 5), -1), ((2, 3, 4, 5), -2), ((2, 3, 6), -1), ((3, 5, 2), -2))
    return [Case({"x": 2.0 * rng.standard_normal(shape)}, {"axis": axis})
            for shape, axis in shapes]


def torch_forward(torch, t, static):
    return torch.softmax(t["x"], dim=static["axis"])


EXERCISE = Exercise(
    name="softmax", title="the softmax along one axis", difficulty="easy",
    solution=softmax_backward, statement=STATEMENT, given=(softmax_forward,),
    forward=forward, call=call, unpack=unpack, cases=cases, torch_forward=torch_forward)
