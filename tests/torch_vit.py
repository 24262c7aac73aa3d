"""The PyTorch reference ViT used by the tests (timm's module and parameter names).

The model itself lives in the library, ``minivit/reference/torch_twin.py``, because
``minivit gradcheck`` uses it too; this module re-exports it for the tests so there is one copy.
Importing it needs torch: test modules guard with ``pytest.importorskip("torch")`` first.
"""

from minivit.reference.torch_twin import (  # noqa: F401
                                     LN_EPS,
                                     Attention,
                                     Block,
                                     Mlp,
                                     PatchEmbed,
                                     TorchViT,
                                     build_torch_vit,
                                     from_torch,
                                     load_minivit_params,
                                     reference_gradients,
                                     to_torch,
                                     torch_dtype,
                                     torch_grads,
)

__all__ = ["Attention", "Block", "LN_EPS", "Mlp", "PatchEmbed", "TorchViT", "build_torch_vit",
           "from_torch", "load_minivit_params", "reference_gradients", "to_torch", "torch_dtype",
           "torch_grads"]
