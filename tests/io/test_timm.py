"""minivit.timm_kwargs against real timm: the timm model built from the kwargs takes minivit's
parameter dict with strict=True and gives minivit's logits.  timm imports torchvision, which
is not installed here: the test stubs the one symbol timm's import needs."""

import enum
import importlib
import importlib.util
import sys
import types

import numpy as np
import pytest

import minivit
from minivit.io.timm import mlp_ratio

torch = pytest.importorskip("torch", reason="PyTorch not installed")


# What `import timm` (1.0.31) takes from torchvision, and nothing else: the names its modules
# import at the top (timm.layers, timm.data), none of them used to build or run a ViT.
TORCHVISION_NAMES = {
    "torchvision.ops.misc": ["FrozenBatchNorm2d"],
    "torchvision.transforms": ["ToTensor"],
    "torchvision.datasets": ["CIFAR10", "CIFAR100", "MNIST", "KMNIST", "FashionMNIST",
                             "ImageFolder"],
}


def torchvision_stub() -> dict:
    """{module name: module}: the packages of TORCHVISION_NAMES with placeholder classes, and
    transforms.functional.InterpolationMode (an enum timm reads members of at import)."""
    names = ["torchvision", "torchvision.ops", "torchvision.transforms.functional",
             *TORCHVISION_NAMES]
    mods = {n: types.ModuleType(n) for n in names}
    for name, symbols in TORCHVISION_NAMES.items():
        for symbol in symbols:
            setattr(mods[name], symbol, type(symbol, (torch.nn.Module,), {}))
    mods["torchvision.transforms.functional"].InterpolationMode = enum.Enum(
        "InterpolationMode", "NEAREST NEAREST_EXACT BILINEAR BICUBIC BOX HAMMING LANCZOS")
    for name, mod in mods.items():                 # package.sub as an attribute, as import does
        parent, _, child = name.rpartition(".")
        if parent:
            setattr(mods[parent], child, mod)
    return mods


@pytest.fixture(scope="module")
def timm():
    """timm, imported with the stub in sys.modules where torchvision is missing; the stub is
    taken out again once timm holds what it needs."""
    if importlib.util.find_spec("timm") is None:
        pytest.skip("timm not installed (pip install timm==1.0.31 --no-deps)")
    if importlib.util.find_spec("torchvision") is not None or "timm" in sys.modules:
        return importlib.import_module("timm")
    stub = torchvision_stub()
    sys.modules.update(stub)
    try:
        return importlib.import_module("timm")
    finally:
        for name in stub:
            sys.modules.pop(name, None)


SMALL = {"image_size": 16, "patch_size": 4, "num_classes": 5, "embed_dim": 24, "depth": 2,
         "num_heads": 3, "mlp_dim": 50}


@pytest.mark.parametrize("overrides", [
    {}, {"pool": "mean"}, {"gelu": "tanh"}, {"qkv_bias": False}, {"distilled": True},
    {"mlp_dim": 100, "embed_dim": 192, "num_heads": 3},
], ids=["token", "mean", "tanh", "no-qkv-bias", "distilled", "odd-mlp-ratio"])
def test_timm_loads_strictly_with_the_same_logits(timm, overrides):
    model = minivit.create_model(minivit.ViTConfig(**{**SMALL, **overrides}), seed=0,
                                 dtype="float32")
    tm = timm.create_model(**minivit.timm_kwargs(model.config)).eval()
    tm.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in model.params.items()},
                       strict=True)
    x = np.random.default_rng(1).standard_normal((2, 3, 16, 16)).astype("float32")
    with torch.no_grad():
        want = tm(torch.from_numpy(x)).numpy()
    got = minivit.to_numpy(model.forward(x))
    assert np.abs(got - want).max() < 1e-5 * np.abs(want).max()


def test_mlp_ratio_gives_mlp_dim():
    for D in (24, 96, 192, 384):
        for H in range(1, 5 * D, 7):
            cfg = minivit.ViTConfig(embed_dim=D, num_heads=3, mlp_dim=H)
            assert int(D * mlp_ratio(cfg)) == H


def test_conv_stem_is_refused():
    with pytest.raises(ValueError, match="convolutional stem"):
        minivit.timm_kwargs(minivit.ViTConfig(conv_stem=(16, 32), patch_size=4))
