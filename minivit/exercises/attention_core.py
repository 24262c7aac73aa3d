"""Exercise: the backward pass of scaled dot-product attention (minivit/layers/attention.py)."""

from minivit.exercises.exercise import Case, Exercise, unpack_tuple
from minivit.layers.attention import (
    AttentionCoreCache,
    _t,
    attention_core_backward,
    attention_core_forward,
)

STATEMENT = """
The heart of self-attention, for every sample and head at once (dropout off here):

    S = q k^T / sqrt(d)      A = softmax(S) along each row (over the keys)      out = A v
    q, k, v (B, h, T, d)   ->   out (B, h, T, d);   S, A (B, h, T, T)

The library computes the scores transposed, S^T = k (q / sqrt(d))^T (one column per query),
and takes the softmax down the columns (axis -2): the same numbers, faster on the CPU.  So
the cache keeps A^T (``probs_t``, keys first; ``dropped_t`` after dropout, the same here),
qs = q / sqrt(d), k, v and scale = 1 / sqrt(d).  _t(x) transposes the last two axes.

Write ``attention_core_backward``: given dout (B, h, T, d), return (dq, dk, dv).

Hints, for one matrix of the stack:
    dv = A^T dout            dA = dout v^T            dS = softmax backward of dA (over keys)
    dq = dS k / sqrt(d)      dk = dS^T q / sqrt(d)
With the transposed layout, work with A^T and dS^T directly: dA^T = v dout^T, and
softmax_backward(dA^T, A^T, axis=-2) gives dS^T.
"""


def forward(inputs, static):
    return attention_core_forward(inputs["q"], inputs["k"], inputs["v"])


def call(backward, dout, cache, static):
    return backward(dout, cache)


def unpack(result):
    return unpack_tuple(result, ("q", "k", "v"), "attention_core_backward")


def cases(rng):
    return [Case({name: rng.standard_normal(shape) for name in "qkv"})
            for shape in ((1, 2, 3, 4), (2, 1, 5, 2), (2, 3, 4, 3))]


def torch_forward(torch, t, static):
    q, k, v = t["q"], t["k"], t["v"]
    scores = q @ k.transpose(-2, -1) * q.shape[-1] ** -0.5
    return scores.softmax(dim=-1) @ v


EXERCISE = Exercise(
    name="attention_core", title="softmax(q k^T / sqrt(d)) v", difficulty="hard",
    solution=attention_core_backward, statement=STATEMENT,
    given=(AttentionCoreCache, _t, attention_core_forward), forward=forward, call=call,
    unpack=unpack, cases=cases, torch_forward=torch_forward)
