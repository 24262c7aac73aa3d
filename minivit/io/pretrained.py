"""Pre-trained encoders: the pre-training objectives' configs, and their models afterwards.

``objective_config`` builds the MAEConfig / MPPConfig of ``TrainConfig.objective = "mae" /
"mpp"`` (the objective the loop trains is
``minivit.training.objectives.pretraining.Pretraining``).

After pre-training, ``load_pretrained`` reads a run directory or a model file of any kind
(ViT, MAE, MPP) and ``encoder_of`` gives its encoder as a ViTConfig and timm-named params,
for ``minivit train --init-from``, ``minivit linprobe`` and ``minivit reconstruct``.
"""

from __future__ import annotations

import dataclasses

from minivit.backend import to_device
from minivit.io.files import read_arrays
from minivit.io.rundir import find_model, read_run_info
from minivit.io.serialization import load as load_vit
from minivit.io.serialization import read_params, write_params
from minivit.models.init import param_shapes
from minivit.models.mae import (
    MAE_CONFIG_KEY,
    MAE_FORMAT,
    MAEConfig,
    MaskedAutoencoder,
    mae_param_shapes,
)
from minivit.models.masked_patch_prediction import (
    MPP_CONFIG_KEY,
    MPP_FORMAT,
    MaskedPatchPrediction,
    MPPConfig,
)
from minivit.models.vit_config import CONFIGS, ViTConfig

OBJECTIVES = {"mae": MAEConfig, "mpp": MPPConfig}
# the fields of a ViTConfig that fix the shapes of the encoder's parameters
ARCHITECTURE = ("image_size", "patch_size", "in_chans", "embed_dim", "depth", "num_heads",
                "mlp_dim", "qkv_bias", "conv_stem")


def objective_config(objective: str, encoder: ViTConfig, options: dict):
    """An MAEConfig / MPPConfig from the encoder and the objective's options; ValueError
    naming the known options for an unknown one."""
    if objective not in OBJECTIVES:
        raise ValueError(f"unknown objective {objective!r}; expected one of {sorted(OBJECTIVES)}")
    cls = OBJECTIVES[objective]
    known = sorted(f.name for f in dataclasses.fields(cls) if f.name != "encoder")
    bad = sorted(set(options) - set(known))
    if bad:
        raise ValueError(f"unknown {objective} options {bad}; known: {', '.join(known)}")
    return cls(encoder=encoder, **options)


def load_pretrained(path):
    """-> (model, run_dir or None, the run's config.json or {}); model is a
    VisionTransformer, MaskedAutoencoder or MaskedPatchPrediction, as the file says."""
    file, run_dir = find_model(path)
    fmt = read_arrays(file)[1].get("format")
    model = load_mae(file) if fmt == MAE_FORMAT else load_mpp(file) if fmt == MPP_FORMAT \
        else load_vit(file)
    return model, run_dir, read_run_info(run_dir)


def encoder_of(model) -> tuple[ViTConfig, dict]:
    """The encoder of any of the three models: (ViTConfig, params with timm names, no head)."""
    if hasattr(model, "encoder_params"):
        return model.config.encoder, model.encoder_params()
    return model.config, {k: v for k, v in model.params.items() if not k.startswith("head.")}


def with_pretrained_architecture(cfg):
    """A TrainConfig whose model has the architecture of the encoder in ``cfg.init_from``:
    its name if it is a named config, and overrides for every field that differs.  An
    explicit override that contradicts the checkpoint is an error."""
    enc, _ = encoder_of(load_pretrained(cfg.init_from)[0])
    clash = [f"{k}={cfg.model_overrides[k]!r} (the checkpoint has {getattr(enc, k)!r})"
             for k in ARCHITECTURE if k in cfg.model_overrides
             and cfg.model_overrides[k] != getattr(enc, k)]
    if clash:
        raise ValueError(f"--init-from {cfg.init_from}: the model overrides {', '.join(clash)} "
                         "contradict the pre-trained encoder; leave them out")
    name = enc.name if enc.name in CONFIGS else cfg.model
    base = CONFIGS[name]
    overrides = {**{k: getattr(enc, k) for k in ARCHITECTURE + ("gelu",)
                    if getattr(enc, k) != getattr(base, k)}, **cfg.model_overrides}
    return dataclasses.replace(cfg, model=name, model_overrides=overrides)


def init_from_pretrained(model, path) -> None:
    """Copy the encoder of the checkpoint at ``path`` into a VisionTransformer (cast to its
    dtype); its head becomes zero (fine-tuning)."""
    enc, params = encoder_of(load_pretrained(path)[0])
    cfg = model.config
    diff = [f"{k}: {getattr(enc, k)} vs {getattr(cfg, k)}" for k in ARCHITECTURE
            if getattr(enc, k) != getattr(cfg, k)]
    if diff:
        raise ValueError(f"{path}: the pre-trained encoder does not fit the model "
                         f"({'; '.join(diff)})")
    for k in param_shapes(cfg):
        if k.startswith("head."):
            model.params[k] = model.params[k] * 0
        else:
            model.params[k] = to_device(params[k], model.dtype)


# -- the pre-trained models' files
def save_mae(model: MaskedAutoencoder, path) -> None:
    """Parameters (reference names) and config to .safetensors / .npz, atomically."""
    write_params(path, model.params, MAE_FORMAT, MAE_CONFIG_KEY, model.config.to_dict())


def load_mae(path, dtype=None) -> MaskedAutoencoder:
    """Read what ``save_mae`` wrote; ValueError naming the file if it is not an MAE."""
    config, arrays, dt = read_params(path, MAE_FORMAT, MAE_CONFIG_KEY, "MAE", dtype)
    cfg = MAEConfig.from_dict(config)
    try:
        MaskedAutoencoder.check_params(cfg, arrays)
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from None
    return MaskedAutoencoder(cfg, {k: to_device(arrays[k], dt) for k in mae_param_shapes(cfg)})


def save_mpp(model: MaskedPatchPrediction, path) -> None:
    """Parameters and config to .safetensors / .npz, atomically."""
    write_params(path, model.params, MPP_FORMAT, MPP_CONFIG_KEY, model.config.to_dict())


def load_mpp(path, dtype=None) -> MaskedPatchPrediction:
    config, arrays, dt = read_params(path, MPP_FORMAT, MPP_CONFIG_KEY,
                                     "masked-patch-prediction", dtype)
    cfg = MPPConfig.from_dict(config)
    try:
        return MaskedPatchPrediction(cfg, {k: to_device(v, dt) for k, v in arrays.items()})
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from None


__all__ = ["load_mae", "load_mpp", "save_mae", "save_mpp", "ARCHITECTURE", "OBJECTIVES",
           "encoder_of", "init_from_pretrained", "load_pretrained", "objective_config",
           "with_pretrained_architecture"]
