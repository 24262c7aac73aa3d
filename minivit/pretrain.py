"""Self-supervised pre-training in the training loop, and pre-trained encoders afterwards.

The loop of ``minivit/train.py`` trains an *objective*: an object with

    model                                       params, grads, rng, dtype, config, num_params()
    has_accuracy                                whether ``step`` / ``evaluate`` report accuracy
    step(images, labels, targets, smoothing, clip_grad) -> (loss, correct or None, grad norm)
    evaluate(x, y, mean, std, batch_size) -> {"loss", "acc" (or None), "n", ...}
    save_model(path)

``train.Classification`` is the supervised one; this file adds MAE and masked patch
prediction (``TrainConfig.objective = "mae" / "mpp"``, options in ``objective_options``).
Labels are unused.  The masks are drawn from ``model.rng``, which the checkpoint stores, so a
resumed run is bit-identical; evaluation masks come from a fresh generator seeded
[seed, EVAL_STREAM] each time, so the validation loss of every epoch uses the same masks.

After pre-training, ``load_pretrained`` reads a run directory or a model file of any kind
(ViT, MAE, MPP) and ``encoder_of`` gives its encoder as a ViTConfig and timm-named params,
for ``minivit train --init-from``, ``minivit linprobe`` and ``minivit reconstruct``.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

from minivit.backend import host_xp, rng as make_rng, to_device
from minivit.config import CONFIGS, ViTConfig, get_config
from minivit.data.batches import iterate_batches, normalize
from minivit.init import param_shapes
from minivit.mae import MAE_FORMAT, MAEConfig, create_mae, load_mae, save_mae
from minivit.layers.masking import masking_noise
from minivit.mpp import (MPP_FORMAT, MPPConfig, create_mpp, draw_corruption, load_mpp,
                         mean_color_targets, save_mpp)
from minivit.optim import clip_grad_norm
from minivit.parallel import DataParallel, resolve_threads

OBJECTIVES = {"mae": MAEConfig, "mpp": MPPConfig}
EVAL_STREAM = 2
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


class Pretraining:
    """MAE or MPP as an objective of the training loop (see the module docstring)."""

    def __init__(self, cfg, data):
        encoder = get_config(cfg.model, **cfg.model_overrides)
        ocfg = objective_config(cfg.objective, encoder, cfg.objective_options)
        create = create_mae if cfg.objective == "mae" else create_mpp
        self.kind = cfg.objective
        self.model = create(ocfg, seed=cfg.seed, dtype=cfg.dtype)
        self.has_accuracy = cfg.objective == "mpp"
        self.mean, self.std = data.mean, data.std
        self.eval_seed = [cfg.seed, EVAL_STREAM]
        # MAE splits a batch over threads (minivit.parallel); MPP draws each replacement patch
        # from anywhere in the batch, so its batch cannot be split and it runs on one thread.
        threads = resolve_threads(cfg.threads) if cfg.objective == "mae" else 1
        self.parallel = DataParallel(self.model, threads)

    def _draw(self, gen, images):
        """The batch's randomness, drawn on the calling thread (so that it does not depend on
        the number of threads): MAE masking noise (B, N), or the MPP corruption draws."""
        m = self.model
        B, N = images.shape[0], m.config.encoder.num_patches
        if self.kind == "mae":
            return masking_noise(gen, B, N, m.dtype)
        return draw_corruption(gen, B, N, m.dtype)

    def _forward(self, model, images, draws, keep_cache=True):
        """-> (loss, correct or None): correct = B x the share of corrupted patches whose
        colour is predicted right (MPP), so that correct / B is the accuracy."""
        if self.kind == "mae":
            return model.forward(images, noise=draws, keep_cache=keep_cache)[0], None
        pixels = images * _channels(images, self.std) + _channels(images, self.mean)  # [0, 1]
        targets = mean_color_targets(pixels, model.config.encoder.patch_size,
                                     model.config.color_bits)
        loss, logits, labels, _ = model.forward(images, targets, draws=draws,
                                                keep_cache=keep_cache)
        acc = float((logits.argmax(axis=-1) == labels).mean())
        return loss, acc * images.shape[0]

    def _shard_step(self, replica, images, draws, weight):
        """-> (weight * loss, correct, grads of weight * loss, or None if not finite)."""
        loss, correct = self._forward(replica, images, draws)
        if not math.isfinite(loss):
            replica.clear_cache()
            return loss, correct, None
        replica.backward(weight)                          # d(weight * loss_s)
        return weight * loss, correct, replica.grads

    def step(self, images, labels, targets, smoothing, clip_grad):
        with host_xp().errstate(over="ignore", invalid="ignore", divide="ignore"):
            draws = self._draw(self.model.rng, images)
            outs = self.parallel.map_shards(self._shard_step, images, draws)
            loss = sum(o[0] for o in outs)
            if not math.isfinite(loss):
                return loss, None, 0.0
            self.model.grads = self.parallel.sum_grads([o[2] for o in outs])
        correct = None if self.kind == "mae" else sum(o[1] for o in outs)
        norm = 0.0
        if clip_grad:
            self.model.grads, norm = clip_grad_norm(self.model.grads, clip_grad)
        return loss, correct, norm

    def evaluate(self, x, y, mean, std, batch_size=500) -> dict:
        """Mean loss (and MPP colour accuracy) over host uint8 images, fixed eval masks."""
        gen = make_rng(self.eval_seed)
        loss_sum, correct, n = 0.0, 0.0, len(x)
        for xb, _ in iterate_batches(x, y, batch_size):
            images = normalize(to_device(xb), mean, std, self.model.dtype)
            outs = self.parallel.map_shards(
                lambda r, im, d, w: (w, *self._forward(r, im, d, keep_cache=False)),
                images, self._draw(gen, images))
            loss_sum += len(xb) * sum(w * loss for w, loss, _ in outs)    # sum_s B_s loss_s
            correct += sum(c or 0.0 for _, _, c in outs)
        return {"loss": loss_sum / max(n, 1), "n": n,
                "acc": correct / max(n, 1) if self.has_accuracy else None}

    def close(self):
        self.parallel.close()

    def save_model(self, path):
        (save_mae if self.kind == "mae" else save_mpp)(self.model, path)


def _channels(images, values):
    """(C,) host values -> (1, C, 1, 1) on the images' device, in their dtype."""
    return to_device(host_xp().asarray(values).reshape(1, -1, 1, 1), images.dtype)


# ----------------------------------------------------------------------------- afterwards

def _model_file(path) -> tuple[Path, Path | None]:
    """A run directory, its checkpoint/model file, or any model file -> (file, run dir)."""
    from minivit.train import CHECKPOINT_FILE, CONFIG_FILE, MODEL_FILE
    path = Path(path)
    if path.is_dir():
        if not (path / MODEL_FILE).is_file():
            raise FileNotFoundError(f"{path} is not a run directory ({MODEL_FILE} not found)")
        return path / MODEL_FILE, path
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} not found (expected a run directory or a "
                                "model file)")
    run_dir = path.parent if (path.parent / CONFIG_FILE).is_file() else None
    return (path.parent / MODEL_FILE if path.name == CHECKPOINT_FILE else path), run_dir


def load_pretrained(path):
    """-> (model, run_dir or None, the run's config.json or {}); model is a
    VisionTransformer, MaskedAutoencoder or MaskedPatchPrediction, as the file says."""
    from minivit.serialization import _read, load as load_vit
    from minivit.train import CONFIG_FILE, read_json
    file, run_dir = _model_file(path)
    fmt = _read(file)[1].get("format")
    model = load_mae(file) if fmt == MAE_FORMAT else load_mpp(file) if fmt == MPP_FORMAT \
        else load_vit(file)
    info = read_json(run_dir / CONFIG_FILE) if run_dir is not None else {}
    return model, run_dir, info


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
        raise ValueError(f"{path}: the pre-trained encoder does not fit the model ({'; '.join(diff)})")
    for k in param_shapes(cfg):
        if k.startswith("head."):
            model.params[k] = model.params[k] * 0
        else:
            model.params[k] = to_device(params[k], model.dtype)


__all__ = ["OBJECTIVES", "Pretraining", "encoder_of", "init_from_pretrained", "load_pretrained",
           "objective_config", "with_pretrained_architecture"]
