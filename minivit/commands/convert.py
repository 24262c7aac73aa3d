"""``minivit convert SRC DST --to hf|timm|npz|safetensors``: a ViT to another format.

    minivit convert runs/nano vit-hf --to hf                 # transformers' ViT folder
    minivit convert vit-hf nano.safetensors --to safetensors # and back to a minivit file
    minivit convert runs/nano nano-timm.safetensors --to timm
    minivit convert runs/nano nano.npz --to npz              # the official (Flax) layout

SRC is a run directory, a model file (minivit's .safetensors/.npz, a timm state dict, an
official .npz) or a Hugging Face ViT folder.  The targets:

    hf           a folder transformers.ViTForImageClassification.from_pretrained reads
                 (class-token models only: HF's classifier reads the class token)
    timm         a .safetensors state dict timm loads with strict=True; the timm.create_model
                 call that builds its model is printed
    npz          the official google-research/vision_transformer .npz layout
    safetensors  minivit's own file (timm names, the config in the metadata)

The class names of a run (or of an HF folder's id2label) go into an HF config.json, and the
run's mean/std into preprocessor_config.json (transformers' ViTImageProcessor), so that
``transformers.pipeline("image-classification", DST)`` takes image files.
"""

from __future__ import annotations

from pathlib import Path

from minivit.errors import UserError
from minivit.io import hf
from minivit.io.official_npz import export_official_npz
from minivit.io.rundir import find_model, read_run_info
from minivit.io.serialization import load, save
from minivit.io.timm import timm_kwargs
from minivit.models.vit import VisionTransformer

TARGETS = ("hf", "timm", "npz", "safetensors")
SUFFIX = {"timm": ".safetensors", "npz": ".npz", "safetensors": ".safetensors"}


def add_arguments(parser):
    parser.add_argument("source", metavar="SRC",
                        help="run directory, model file or Hugging Face ViT folder")
    parser.add_argument("dest", metavar="DST",
                        help="the file to write (a folder for --to hf)")
    parser.add_argument("--to", choices=TARGETS, required=True, help="the format to write")
    parser.add_argument("--num-heads", type=int,
                        help="heads of a timm state dict without a minivit config (no shape "
                             "shows them)")


def load_source(path, num_heads=None) -> tuple[VisionTransformer, dict]:
    """A ViT from a run directory, model file or HF folder -> (model, the run's config.json
    as a dict, {} outside a run; an HF folder gives {"data": {"label_names": id2label}})."""
    path = Path(path)
    if hf.is_hf_folder(path):
        return load(path), {"data": {"label_names": hf.hf_label_names(path)}}
    model_path, run_dir = find_model(path)
    info = read_run_info(run_dir)
    objective = info.get("train", {}).get("objective", "classify")
    if objective != "classify":
        raise UserError(f"{path} is a {objective!r} pre-training run, not a classifier")
    model = load(model_path, num_heads=num_heads)
    if not isinstance(model, VisionTransformer):
        raise UserError(f"{model_path} holds a {type(model).__name__}; only a Vision "
                        "Transformer converts")
    return model, info


def timm_call(config) -> str:
    """The timm.create_model(...) line for ``config``, to paste where minivit is not installed."""
    kw = timm_kwargs(config)
    args = ", ".join(f"{k}={v!r}" for k, v in kw.items() if k != "model_name")
    return f"timm.create_model({kw['model_name']!r}, {args})"


def run(args) -> int:
    dest = Path(args.dest)
    if args.to in SUFFIX and dest.suffix.lower() != SUFFIX[args.to]:
        raise UserError(f"{dest}: --to {args.to} writes a {SUFFIX[args.to]} file")
    model, info = load_source(args.source, args.num_heads)
    if args.to == "hf":
        data = info.get("data", {})
        hf.save_hf(model, dest, data.get("label_names"), data.get("mean"), data.get("std"))
    elif args.to == "npz":
        export_official_npz(model, dest)
    else:
        save(model, dest)
    cfg = model.config
    print(f"wrote {dest} ({args.to}): depth {cfg.depth}, embed_dim {cfg.embed_dim}, "
          f"{cfg.num_heads} heads, {cfg.num_classes} classes, pool {cfg.pool!r}")
    if args.to == "timm":
        print(f"load it in timm:\n  model = {timm_call(cfg)}\n  model.load_state_dict("
              f"safetensors.torch.load_file({str(dest)!r}), strict=True)")
    elif args.to == "npz" and (cfg.pool, cfg.gelu) != ("token", "erf"):
        print(f"note: the official layout does not hold pool={cfg.pool!r} / gelu={cfg.gelu!r}: "
              "pass the config again when loading it")
    return 0
