"""Exercise: the backward pass of the whole ViT (minivit/models/vit.py)."""

import types

from minivit.exercises.block import random_params
from minivit.exercises.exercise import Case, Exercise, WrongAnswer
from minivit.models.init import param_shapes
from minivit.models.vit import VisionTransformer, ViTCache
from minivit.models.vit_config import get_config

STATEMENT = """
The whole Vision Transformer, ViT equations (1)-(4), as ``VisionTransformer.forward`` runs it:
patch embedding, class token and position embeddings, the encoder blocks, the final
LayerNorm, the pooled feature (the class token, or the mean of the patch tokens with
pool="mean"), the head.  The forward keeps a ViTCache in self._cache.

Write ``backward(self, dlogits)``, a method of VisionTransformer: given dlogits
(B, num_classes), return dimages (B, C, H, W), and store the gradient of every parameter
with self.store_grads(grads) (grads: {name: array}, timm's names, as self.params).

Every step has a backward you wrote (imported for you; encoder_backward runs the blocks'
backwards in reverse, and stack_grads names their gradients ``blocks.{i}.{name}``).
self.pop_cache() returns the cache (and releases it);
self.embed_patches_backward(dx, cache.patch_embed, grads) runs the patch embedding's backward
and puts its gradients in grads; self.config tells the pooling, the
number of prefix tokens (config.num_prefix_tokens) and whether the model is distilled (DeiT:
two heads).  The grader checks plain ViTs (not distilled, no patch dropout, no dropout:
those caches are None, and patch_dropout_backward(dz, None, P) returns dz); the library's
answer handles every case.

Hints: the pooled feature is z[:, 0] (token) or z[:, 1:].mean(axis=1) (mean): its gradient
goes back into a zero (B, T, D) array, to the tokens it was read from.
"""


def forward(inputs, static):
    params = {k: inputs[k] for k in param_shapes(static["config"])}
    model = VisionTransformer(static["config"], params)
    return model.forward(inputs["images"]), model


def call(backward, dlogits, model, static):
    model.grads = {}
    dimages = types.MethodType(backward, model)(dlogits)
    return dimages, model.grads


def unpack(result):
    dimages, grads = result
    if not hasattr(grads, "keys"):
        raise WrongAnswer("backward left self.grads not a dict: store the gradients with "
                          "self.store_grads(grads)")
    return {"images": dimages, **grads}


def cases(rng):
    out = []
    for B, depth, pool, kind in ((2, 1, "token", "erf"), (2, 2, "mean", "tanh")):
        cfg = get_config("cifar-nano", image_size=8, patch_size=4, embed_dim=8, depth=depth,
                         num_heads=2, mlp_dim=12, num_classes=3, pool=pool, gelu=kind)
        shapes = {k: tuple(v) for k, v in param_shapes(cfg).items()}
        params = random_params(rng, shapes)
        images = rng.standard_normal((B, cfg.in_chans, cfg.image_size, cfg.image_size))
        out.append(Case({"images": images, **params},
                        {"pool": pool, "gelu": kind, "depth": depth, "config": cfg}))
    return out


def torch_forward(torch, t, static):
    from torch.func import functional_call  # torch stays optional

    from minivit.reference.torch_twin import build_torch_vit
    module = build_torch_vit(static["config"], dtype="float64")
    params = {k: v for k, v in t.items() if k != "images"}
    return functional_call(module, params, (t["images"],))


EXERCISE = Exercise(
    name="vit", title="the whole ViT: from dlogits to every parameter and the image",
    difficulty="hard", solution=VisionTransformer.backward, statement=STATEMENT,
    given=(ViTCache, VisionTransformer.forward), forward=forward, call=call, unpack=unpack,
    cases=cases, torch_forward=torch_forward, fd_samples=6)
