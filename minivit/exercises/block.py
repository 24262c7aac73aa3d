"""Exercise: the backward pass of a pre-LN encoder block (minivit/layers/block.py)."""

from minivit.exercises.exercise import Case, Exercise, WrongAnswer
from minivit.layers.block import BLOCK_PARAM_NAMES, BlockCache, block_backward, block_forward
from minivit.models.init import param_shapes
from minivit.models.vit_config import get_config

STATEMENT = """
One encoder block, ViT equations (2) and (3), with the LayerNorm before each branch:

    z1 = MSA(LN1(z)) + z          (2)
    z_out = MLP(LN2(z1)) + z1     (3)

    z (B, T, D) -> z_out (B, T, D).  ``p`` holds the block's parameters under timm's short
    names (``norm1.weight``, ``attn.qkv.weight``, ...: BLOCK_PARAM_NAMES).  Stochastic depth
    (drop_path) is off here: its caches are None, and drop_path_backward(d, None) returns d.

Write ``block_backward``: given dz_out (B, T, D), return (dz, grads), grads a dict with the
gradient of every parameter under the same short names.  layernorm_backward,
attention_backward and mlp_backward are the answers to the exercises before, imported for you.

Hints: a residual connection y = f(x) + x passes dy through unchanged AND through the branch:
dx = dy + (the branch's backward of dy).  Walk (3) back first, then (2).
"""


def forward(inputs, static):
    p = {k: inputs[k] for k in BLOCK_PARAM_NAMES}
    return block_forward(inputs["z"], p, static["num_heads"], static["approximate"])


def call(backward, dz_out, cache, static):
    return backward(dz_out, cache)


def unpack(result):
    if not (isinstance(result, tuple) and len(result) == 2 and isinstance(result[1], dict)):
        raise WrongAnswer(f"block_backward returned {type(result).__name__}; expected a tuple "
                          f"(dz, grads) with grads a dict")
    dz, grads = result
    return {"z": dz, **grads}


def random_params(rng, shapes: dict) -> dict:
    """Parameters of the given shapes: norms' weights near one, everything else ~N(0, 1/fan)."""
    params = {}
    for name, shape in shapes.items():
        if ".norm" in "." + name and name.endswith(".weight"):
            params[name] = 1.0 + 0.3 * rng.standard_normal(shape)
        else:
            fan = shape[-1] if len(shape) == 2 else 1
            params[name] = rng.standard_normal(shape) / fan ** 0.5
    return params


def cases(rng):
    out = []
    for B, T, D, heads, M, kind in ((2, 3, 4, 2, 8, "erf"), (1, 4, 6, 3, 5, "tanh")):
        cfg = get_config("cifar-nano", embed_dim=D, depth=1, num_heads=heads, mlp_dim=M,
                         gelu=kind)
        shapes = {k.removeprefix("blocks.0."): v for k, v in param_shapes(cfg).items()
                  if k.startswith("blocks.0.")}                  # the short names
        inputs = {"z": rng.standard_normal((B, T, D)), **random_params(rng, shapes)}
        out.append(Case(inputs, {"num_heads": heads, "approximate": kind, "config": cfg}))
    return out


def torch_forward(torch, t, static):
    from torch.func import functional_call  # torch stays optional

    from minivit.reference.torch_twin import Block
    block = Block(static["config"]).to(torch.float64)
    return functional_call(block, {k: t[k] for k in BLOCK_PARAM_NAMES}, (t["z"],))


EXERCISE = Exercise(
    name="block", title="the encoder block: LayerNorm, attention, MLP, residuals",
    difficulty="medium", solution=block_backward, statement=STATEMENT,
    given=(BlockCache, block_forward), forward=forward, call=call, unpack=unpack, cases=cases,
    torch_forward=torch_forward, fd_samples=8)
