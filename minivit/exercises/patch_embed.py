"""Exercise: the backward pass of the patch embedding (minivit/layers/patch_embed.py)."""

from minivit.exercises.exercise import Case, Exercise, unpack_tuple
from minivit.layers.patch_embed import _kernel_as_matrix, patch_embed_backward, patch_embed_forward
from minivit.layers.patches import patchify

STATEMENT = """
ViT equation (1) starts with x_p^i E: cut each image into P x P patches, flatten each patch to
P*P*C numbers in (row, column, channel) order, and project it to D with one shared linear map.
The weight is stored as timm stores it, a convolution kernel (D, C, P, P), so the forward
first reorders it into the matrix (D, P*P*C) whose columns follow the patch vectors' order.

    images (B, C, H, W)   weight (D, C, P, P)   bias (D,)   ->   tokens (B, N, D),
    N = (H/P)(W/P).   cache = (the linear layer's cache, weight.shape, patchify's cache)

Write ``patch_embed_backward``: given dtokens (B, N, D), return (dimages, dweight, dbias).

Hints: linear_backward gives the gradients of the patch vectors and of the (D, P*P*C) matrix;
patchify_backward puts each patch value back at its pixel.  The matrix's gradient has to go
back into the kernel's layout: undo _kernel_as_matrix's reshape and transpose, in reverse
order.  (A stride-P convolution with a P x P kernel is this same map.)
"""


def forward(inputs, static):
    return patch_embed_forward(inputs["images"], inputs["weight"], inputs["bias"])


def call(backward, dtokens, cache, static):
    return backward(dtokens, cache)


def unpack(result):
    return unpack_tuple(result, ("images", "weight", "bias"), "patch_embed_backward")


def cases(rng):
    out = []
    for B, C, H, W, P, D in ((2, 3, 4, 4, 2, 5), (1, 2, 6, 4, 2, 3), (2, 1, 6, 6, 3, 4)):
        out.append(Case({"images": rng.standard_normal((B, C, H, W)),
                         "weight": rng.standard_normal((D, C, P, P)),
                         "bias": rng.standard_normal(D)}))
    return out


def torch_forward(torch, t, static):
    P = t["weight"].shape[-1]
    y = torch.nn.functional.conv2d(t["images"], t["weight"], t["bias"], stride=P)
    return y.flatten(2).transpose(1, 2)


EXERCISE = Exercise(
    name="patch_embed", title="the patch embedding: patches, then one linear map",
    difficulty="medium", solution=patch_embed_backward, statement=STATEMENT,
    given=(patchify, _kernel_as_matrix, patch_embed_forward), forward=forward, call=call,
    unpack=unpack, cases=cases, torch_forward=torch_forward)
