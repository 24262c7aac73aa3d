"""Exercise: the backward pass of multi-head self-attention (minivit/layers/attention.py)."""

from minivit.exercises.exercise import Case, Exercise, unpack_tuple
from minivit.layers.attention import (
    AttentionCache,
    attention_backward,
    attention_forward,
    merge_heads,
    split_heads_qkv,
)

NAMES = ("x", "qkv_weight", "qkv_bias", "proj_weight", "proj_bias")

STATEMENT = """
Multi-head self-attention as timm lays it out (dropout off: its caches are None):

    qkv = x U_qkv^T + b_qkv                (B, T, 3D), one fused linear map
    q, k, v = split_heads_qkv(qkv, h)      each (B, h, T, d), d = D / h
    out = attention_core(q, k, v)          (B, h, T, d), the previous exercise
    y = merge_heads(out) U_proj^T + b_proj (B, T, D)

    x (B, T, D)  qkv_weight (3D, D)  qkv_bias (3D,)  proj_weight (D, D)  proj_bias (D,)

The columns of qkv are [q | k | v], and inside each, head i owns columns i*d .. (i+1)*d - 1.

Write ``attention_backward``: given dy (B, T, D), return (dx, dqkv_weight, dqkv_bias,
dproj_weight, dproj_bias).  linear_backward, attention_core_backward and dropout_backward
are imported for you.

Hints: reverse each step.  The gradient of merge_heads undoes its transpose and reshape;
the gradient of split_heads_qkv puts dq, dk, dv back into one (B, T, 3D) array, each at the
columns it came from.
"""


def forward(inputs, static):
    return attention_forward(*(inputs[k] for k in NAMES), static["num_heads"])


def call(backward, dy, cache, static):
    return backward(dy, cache)


def unpack(result):
    return unpack_tuple(result, NAMES, "attention_backward")


def cases(rng):
    out = []
    for B, T, D, heads in ((2, 3, 4, 2), (1, 5, 6, 3), (2, 4, 6, 2)):
        out.append(Case({"x": rng.standard_normal((B, T, D)),
                         "qkv_weight": rng.standard_normal((3 * D, D)) / D ** 0.5,
                         "qkv_bias": 0.5 * rng.standard_normal(3 * D),
                         "proj_weight": rng.standard_normal((D, D)),
                         "proj_bias": rng.standard_normal(D)}, {"num_heads": heads}))
    return out


def torch_forward(torch, t, static):
    F = torch.nn.functional
    x = t["x"]
    B, T, D = x.shape
    h = static["num_heads"]
    qkv = F.linear(x, t["qkv_weight"], t["qkv_bias"])
    q, k, v = qkv.reshape(B, T, 3, h, D // h).permute(2, 0, 3, 1, 4).unbind(0)
    scores = q @ k.transpose(-2, -1) * (D // h) ** -0.5
    out = (scores.softmax(dim=-1) @ v).transpose(1, 2).reshape(B, T, D)
    return F.linear(out, t["proj_weight"], t["proj_bias"])


EXERCISE = Exercise(
    name="attention", title="multi-head self-attention, fused qkv and heads",
    difficulty="medium", solution=attention_backward, statement=STATEMENT,
    given=(split_heads_qkv, merge_heads, AttentionCache, attention_forward), forward=forward,
    call=call, unpack=unpack, cases=cases, torch_forward=torch_forward)
