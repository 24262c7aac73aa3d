"""minivit: a Vision Transformer written by hand in NumPy/CuPy, every gradient checked.

    import minivit
    model = minivit.create_model("cifar-tiny", seed=0, dtype="float32")
    logits = model.forward(images, train=False)     # (B, C, H, W) -> (B, classes)
    logits = minivit.predict_logits(model, images)  # the same, on every CPU core
    loss, dlogits = minivit.cross_entropy(logits, labels, label_smoothing=0.0)
    model.backward(dlogits)                         # fills model.grads
    cfg = minivit.TrainConfig(steps=300)            # a run; minivit.training.loop.train(cfg)
"""

from importlib.metadata import PackageNotFoundError, version

from minivit.analysis.evaluation import predict_logits
from minivit.backend import get_backend, get_xp, set_backend, to_device, to_numpy
from minivit.io.hf import save_hf
from minivit.io.official_npz import export_official_npz
from minivit.io.serialization import load, load_official_npz, load_optimizer, save, save_optimizer
from minivit.io.timm import timm_kwargs
from minivit.layers.loss import cross_entropy
from minivit.models.resample import resample_pos_embed
from minivit.models.vit import VisionTransformer, create_model
from minivit.models.vit_config import CONFIGS, ViTConfig, count_params, get_config
from minivit.reference.numerical import rel_error
from minivit.training.config import TrainConfig
from minivit.training.optim import SGD, AdamW, clip_grad_norm, global_grad_norm
from minivit.training.schedule import warmup_cosine

try:                                 # one version: pyproject.toml's, from the installed metadata
    __version__ = version("minivit")
except PackageNotFoundError:         # a checkout that was never installed (PYTHONPATH=.)
    __version__ = "0+unknown"

__all__ = [
    "AdamW", "CONFIGS", "SGD", "TrainConfig", "ViTConfig", "VisionTransformer", "clip_grad_norm",
    "count_params", "create_model", "cross_entropy", "export_official_npz", "get_backend",
    "get_config", "get_xp", "global_grad_norm", "load", "load_official_npz", "load_optimizer",
    "predict_logits", "rel_error", "resample_pos_embed", "save", "save_hf", "save_optimizer",
    "set_backend", "timm_kwargs", "to_device", "to_numpy", "warmup_cosine",
]
