"""``minivit predict CHECKPOINT IMAGE...``: the top-5 classes of PNG/JPEG images.

    minivit predict runs/cifar-nano-20250101-120000 cat.png ship.jpg

Each image is converted to RGB, resized to the model's input size and normalised with the
mean/std the model was trained with (from the run's config.json; give --mean/--std for a model
file without one).
"""

from __future__ import annotations

from pathlib import Path

from minivit.backend import host_xp, to_device, to_numpy
from minivit.errors import UserError
from minivit.data.batches import normalize
from minivit.layers.softmax import softmax_forward
from minivit.evaluation import load_trained, predict_logits


def add_arguments(parser):
    parser.add_argument("checkpoint", metavar="CHECKPOINT", help="run directory or model file")
    parser.add_argument("images", metavar="IMAGE", nargs="+", help="PNG or JPEG files")
    parser.add_argument("--top", type=int, default=5, help="how many classes to show (default 5)")
    parser.add_argument("--mean", type=float, nargs=3, metavar=("R", "G", "B"),
                        help="per-channel mean in [0, 1] (default: the run's)")
    parser.add_argument("--std", type=float, nargs=3, metavar=("R", "G", "B"),
                        help="per-channel std in [0, 1] (default: the run's)")


def read_image(path, size: int):
    """An image file -> uint8 host array (3, size, size), RGB, resized (bicubic)."""
    try:
        from PIL import Image
    except ImportError:
        raise UserError('reading images needs Pillow: pip install -e ".[viz]"') from None
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image {path} not found")
    try:
        with Image.open(path) as img:
            img = img.convert("RGB").resize((size, size), Image.Resampling.BICUBIC)
    except (OSError, ValueError) as e:          # UnidentifiedImageError is an OSError
        raise UserError(f"cannot read image {path}: {e}") from None
    return host_xp().asarray(img, dtype="uint8").transpose(2, 0, 1)


def run(args) -> int:
    if args.top < 1:
        raise ValueError(f"--top must be a positive integer, got {args.top}")
    model, _, info = load_trained(args.checkpoint)
    cfg, data = model.config, info.get("data", {})
    mean, std = args.mean or data.get("mean"), args.std or data.get("std")
    if mean is None or std is None:
        raise UserError(f"{args.checkpoint} has no config.json with the training mean/std; "
                        "pass --mean R G B --std R G B")
    names = data.get("label_names") or [f"class {k}" for k in range(cfg.num_classes)]
    np = host_xp()
    images = np.stack([read_image(p, cfg.image_size) for p in args.images])
    logits = predict_logits(model, normalize(to_device(images), mean, std, model.dtype))
    probs = to_numpy(softmax_forward(logits)[0])
    k = min(args.top, cfg.num_classes)
    w = max(len(n) for n in names)
    for path, p in zip(args.images, probs):
        print(path)
        for rank, c in enumerate(np.argsort(-p, kind="stable")[:k], 1):
            print(f"  {rank}. {names[c]:<{w}}  {p[c]:.4f}")
    return 0
