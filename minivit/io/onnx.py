"""A minivit ViT as an ONNX file, through its PyTorch twin (``minivit.reference.torch_twin``).

    export_onnx(model, "model.onnx")                # float32; input "images", output "logits"
    check_onnx("model.onnx", model, images)         # ONNX Runtime's logits against minivit's

The twin mirrors every layer of minivit's ViT (the tests hold its logits to minivit's), so
``torch.onnx.export`` of the twin is the model: class token or mean pooling, either GELU, a
convolutional stem, a distilled model (the mean of its two heads, as ``forward`` returns).
The graph takes images already normalised with the training mean/std, (batch, C, H, W)
float32 with any batch size, and returns logits (batch, classes).

Needs PyTorch (the ``reference`` extra: the CPU build, TORCH_HINT) and,
for torch's exporter, onnx and onnxscript; ``check_onnx`` needs onnxruntime (the ``onnx``
extra).  The file holds its weights inline, so models up to ONNX's 2 GB limit (ViT-L) export.
"""

from __future__ import annotations

import importlib
import logging
import warnings
from contextlib import contextmanager
from pathlib import Path

from minivit.backend import host_xp, to_device, to_numpy
from minivit.errors import UserError
from minivit.install import install_hint
from minivit.io.files import atomic_write_bytes, naming_write_errors
from minivit.models.vit_config import ViTConfig

INPUT, OUTPUT = "images", "logits"


TORCH_HINT = "pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu"


def _need(module: str, what: str, hint: str):
    """Import ``module`` or raise a UserError saying how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise UserError(f"{what} needs {module.split('.')[0]} ({e}): {hint}") from None


@contextmanager
def quiet_exporter():
    """torch's exporter logs a line per torchvision op it skips and warns about its own
    internals: nothing a user can act on."""
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            warnings.simplefilter("ignore", DeprecationWarning)
            yield
    finally:
        logger.setLevel(level)


def export_onnx(model, path) -> None:
    """Write ``model`` (a minivit ViT, any dtype) as a float32 ONNX graph to ``path`` (.onnx),
    atomically: input "images" (batch, C, H, W), output "logits" (batch, classes)."""
    cfg = getattr(model, "config", None)
    if not isinstance(cfg, ViTConfig):
        raise TypeError(f"export_onnx exports a Vision Transformer, got {type(model).__name__}")
    path = Path(path)
    if path.suffix.lower() != ".onnx":
        raise ValueError(f"{path}: an ONNX file name ends in .onnx")
    torch = _need("torch", "the ONNX export", f"{TORCH_HINT} (the CPU build)")
    _need("onnxscript", "torch's ONNX exporter", install_hint("onnx"))
    reference = _need("minivit.reference.torch_twin", "the ONNX export", TORCH_HINT)
    params = {k: to_numpy(v).astype("float32") for k, v in model.params.items()}
    twin = reference.build_torch_vit(cfg, params)
    example = torch.zeros(2, cfg.in_chans, cfg.image_size, cfg.image_size)
    with quiet_exporter():
        program = torch.onnx.export(twin, (example,), None, dynamo=True, input_names=[INPUT],
                                    output_names=[OUTPUT], verbose=False,
                                    dynamic_shapes=({0: torch.export.Dim("batch")},))
    data = program.model_proto.SerializeToString()
    with naming_write_errors(path):
        atomic_write_bytes(path, data)


def onnx_logits(path, images):
    """ONNX Runtime's logits (host float32) for normalised ``images`` (B, C, H, W)."""
    ort = _need("onnxruntime", "running an ONNX file", install_hint("onnx"))
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run([OUTPUT], {INPUT: to_numpy(images).astype("float32")})[0]


def check_onnx(path, model, images) -> float:
    """max |ONNX Runtime - minivit| / max |minivit| over the logits of ``images``."""
    np = host_xp()
    logits = model.forward(to_device(images, model.dtype), train=False, keep_cache=False)
    want = to_numpy(logits).astype("float64")
    got = onnx_logits(path, images).astype("float64")
    return float(np.abs(got - want).max() / max(np.abs(want).max(), 1e-30))


__all__ = ["INPUT", "OUTPUT", "TORCH_HINT", "check_onnx", "export_onnx", "onnx_logits",
           "quiet_exporter"]
