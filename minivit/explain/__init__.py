"""``minivit explain``: one self-contained HTML page where a learner hovers a patch and
watches the forward and the backward pass of a trained ViT on their own image.

    from minivit.explain import explain
    explain("results/cifar-nano-hour-s0", ["cat.png"], "cat.html")

Every number on the page is computed here, in NumPy, by the model's own forward and backward
passes (forward_story.py, backward_story.py, logit_lens.py); ``static/explain.js`` only draws
them and derives cheap views (the attention rollout from the stored attention).
The script (``static/explain*.js``) and style are package data, inlined into the page.
"""

from __future__ import annotations

from pathlib import Path

from minivit.analysis.evaluation import load_trained
from minivit.data.batches import CIFAR10_MEAN, CIFAR10_STD, check_normalisation
from minivit.data.images import read_image
from minivit.errors import UserError
from minivit.explain.explanation import build_manifest
from minivit.explain.film import film
from minivit.explain.page import write_page
from minivit.models.vit import VisionTransformer, create_model


def check_model(model, path) -> None:
    """UserError unless ``model`` is a ViT classifier the page can show."""
    if not isinstance(model, VisionTransformer):
        raise UserError(f"{path} is not a ViT classifier ({type(model).__name__}); explain "
                        "needs a model trained with minivit train")
    if model.config.distilled:
        raise UserError(f"{path} is a distilled ViT (two heads); explain shows one-head ViTs")
    if model.config.in_chans != 3:
        raise UserError(f"{path} takes {model.config.in_chans} channels; explain reads RGB "
                        "images")


def explain(checkpoint, image_paths, out, untrained=True, mean=None, std=None, seed=0,
            epochs=True) -> Path:
    """Write the page for the model at ``checkpoint`` (a run directory or a model file) on the
    images ``image_paths`` to ``out``.  untrained: add the same config at initialisation
    (seed ``seed``, as ``minivit train`` starts) behind a toggle.  mean/std: the per-channel
    normalisation (default: the run's config.json, else CIFAR-10's).  epochs: for a run kept
    with ``minivit train --snapshots N``, add the epoch slider.  Returns the path."""
    model, run_dir, info = load_trained(checkpoint)
    check_model(model, checkpoint)
    cfg, data = model.config, info.get("data", {})
    mean = mean or data.get("mean") or CIFAR10_MEAN
    std = std or data.get("std") or CIFAR10_STD
    check_normalisation(mean, std)
    names = data.get("label_names") or [f"class {k}" for k in range(cfg.num_classes)]
    images = [(Path(p).name, read_image(p, cfg.image_size)) for p in image_paths]
    models = [("trained", model)]
    if untrained:
        models.append(("untrained", create_model(cfg, seed=seed, dtype=model.dtype)))
    frames = None
    if epochs and run_dir is not None:           # epoch 0: the run's own initialisation
        initial = create_model(cfg, seed=info.get("train", {}).get("seed", seed),
                               dtype=model.dtype)
        frames = film(run_dir, initial, images, mean, std)
    title = f"minivit explain: {Path(checkpoint).name}"
    return write_page(out, build_manifest(models, images, mean, std, names, title, frames))


__all__ = ["check_model", "explain"]
