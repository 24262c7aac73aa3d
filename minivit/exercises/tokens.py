"""Exercise: the backward pass of the class token and position embeddings
(minivit/layers/tokens.py)."""

from minivit.exercises.exercise import Case, Exercise, unpack_tuple
from minivit.layers.tokens import embed_prefix_backward, embed_prefix_forward

STATEMENT = """
The rest of ViT equation (1): put the learnable prefix tokens (the class token; DeiT adds a
distillation token) before the patch tokens, and add the position embeddings:

    z_0 = [x_class; x_p^1 E; ...; x_p^N E] + E_pos

    patch_tokens (B, N, D)   prefix_tokens (1, P, D)   pos_embed (1, P+N, D)  ->  z0 (B, P+N, D)

The prefix tokens and position embeddings are shared by every image of the batch.

Write ``embed_prefix_backward``: given dz0 (B, P+N, D) and P = num_prefix, return
(dpatch_tokens (B, N, D), dprefix (1, P, D), dpos_embed (1, P+N, D)).

Hints: concatenation passes each slice of the gradient to the tensor it came from; a tensor
broadcast over the batch (B copies of one) gets the sum of its copies' gradients, kept with
the leading axis of length one.
"""


def forward(inputs, static):
    return embed_prefix_forward(inputs["patch_tokens"], inputs["prefix_tokens"],
                                inputs["pos_embed"])


def call(backward, dz0, cache, static):
    return backward(dz0, static["num_prefix"])


def unpack(result):
    return unpack_tuple(result, ("patch_tokens", "prefix_tokens", "pos_embed"),
                        "embed_prefix_backward")


def cases(rng):
    out = []
    for B, N, D, P in ((2, 4, 3, 1), (3, 2, 5, 2), (1, 3, 4, 1)):
        out.append(Case({"patch_tokens": rng.standard_normal((B, N, D)),
                         "prefix_tokens": rng.standard_normal((1, P, D)),
                         "pos_embed": rng.standard_normal((1, P + N, D))}, {"num_prefix": P}))
    return out


def torch_forward(torch, t, static):
    B = t["patch_tokens"].shape[0]
    prefix = t["prefix_tokens"].expand(B, -1, -1)
    return torch.cat([prefix, t["patch_tokens"]], dim=1) + t["pos_embed"]


EXERCISE = Exercise(
    name="tokens", title="the class token and position embeddings", difficulty="easy",
    solution=embed_prefix_backward, statement=STATEMENT, given=(embed_prefix_forward,),
    forward=forward, call=call, unpack=unpack, cases=cases, torch_forward=torch_forward)
