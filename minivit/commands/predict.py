"""``minivit predict CHECKPOINT IMAGE...``: the top-5 classes of PNG/JPEG images.

    minivit predict runs/cifar-nano-20250101-120000 cat.png ship.jpg

Each image is converted to RGB, resized to the model's input size and normalised with the
mean/std the model was trained with (from the run's config.json; give --mean/--std for a model
file without one).  An image smaller than the model's input is enlarged with a one-line note on
stderr (what it shows is made up by the interpolation).
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

from minivit.backend import host_xp, to_device, to_numpy
from minivit.errors import UserError
from minivit.data.batches import normalize
from minivit.layers.softmax import softmax_forward
from minivit.evaluation import load_trained, predict_logits


def add_arguments(parser):
    parser.add_argument("checkpoint", metavar="CHECKPOINT", help="run directory or model file")
    parser.add_argument("images", metavar="IMAGE", nargs="+",
                        help="PNG or JPEG files, resized to the model's input size (a note on "
                             "stderr when an image is smaller than that)")
    parser.add_argument("--top", type=int, default=5,
                        help="how many classes to show, at most the model's number of classes "
                             "(default 5)")
    add_normalisation_arguments(parser)


def add_normalisation_arguments(parser):
    """--mean R G B and --std R G B (checked by check_normalisation)."""
    parser.add_argument("--mean", type=float, nargs=3, metavar=("R", "G", "B"),
                        help="per-channel mean in [0, 1] (default: the run's)")
    parser.add_argument("--std", type=float, nargs=3, metavar=("R", "G", "B"),
                        help="per-channel std in [0, 1], each > 0 (default: the run's)")


def check_normalisation(mean, std, channels: int = 3) -> None:
    """UserError unless mean and std have one finite value per channel and std > 0."""
    for name, values in (("mean", mean), ("std", std)):
        if len(values) != channels:
            raise UserError(f"--{name} needs one value per channel ({channels}), got "
                            f"{len(values)}")
        if not all(math.isfinite(v) for v in values):
            raise UserError(f"--{name} values must be finite numbers, got {list(values)}")
    if not all(v > 0 for v in std):
        raise UserError(f"--std values must be > 0 (each channel is divided by its std), got "
                        f"{list(std)}")


def read_image(path, size: int):
    """An image file -> uint8 host array (3, size, size), RGB, resized (bicubic); a note on
    stderr when the image is smaller than size x size."""
    try:
        from PIL import Image
    except ImportError:
        raise UserError('reading images needs Pillow: pip install -e ".[viz]"') from None
    path = Path(path)
    if path.is_dir():
        raise UserError(f"image {path} is a folder, not an image file")
    if not path.is_file():
        raise FileNotFoundError(f"image {path} not found")
    try:
        with Image.open(path) as img:
            w, h = img.size
            img = img.convert("RGB").resize((size, size), Image.Resampling.BICUBIC)
    except (OSError, ValueError, Image.DecompressionBombError) as e:   # UnidentifiedImageError
        # is an OSError; a decompression bomb is refused before it is decoded
        raise UserError(f"cannot read image {path}: {e}") from None
    if w < size or h < size:
        print(f"minivit: note: {path} is {w}x{h}, enlarged to the model's {size}x{size}",
              file=sys.stderr)
    return host_xp().asarray(img, dtype="uint8").transpose(2, 0, 1)


def run(args) -> int:
    if args.top < 1:
        raise ValueError(f"--top must be a positive integer, got {args.top}")
    model, _, info = load_trained(args.checkpoint)
    cfg, data = model.config, info.get("data", {})
    if args.top > cfg.num_classes:
        raise UserError(f"--top must be at most the model's {cfg.num_classes} classes, got "
                        f"{args.top}")
    mean, std = args.mean or data.get("mean"), args.std or data.get("std")
    if mean is None or std is None:
        raise UserError(f"{args.checkpoint} has no config.json with the training mean/std; "
                        "pass --mean R G B --std R G B")
    check_normalisation(mean, std)
    names = data.get("label_names") or [f"class {k}" for k in range(cfg.num_classes)]
    np = host_xp()
    images = np.stack([read_image(p, cfg.image_size) for p in args.images])
    logits = predict_logits(model, normalize(to_device(images), mean, std, model.dtype))
    probs = to_numpy(softmax_forward(logits)[0])
    k = args.top
    w, rw = max(len(n) for n in names), len(str(k))
    for path, p in zip(args.images, probs):
        print(path)
        for rank, c in enumerate(np.argsort(-p, kind="stable")[:k], 1):
            print(f"  {rank:>{rw}}. {names[c]:<{w}}  {p[c]:.4f}")
    return 0
