"""``minivit predict CHECKPOINT IMAGE...``: the top-5 classes of PNG/JPEG images.

    minivit predict runs/cifar-nano-20250101-120000 cat.png ship.jpg

Each image is converted to RGB, resized to the model's input size and normalised with the
mean/std the model was trained with (from the run's config.json; give --mean/--std for a model
file without one).  An image smaller than the model's input is enlarged with a one-line note on
stderr (what it shows is made up by the interpolation).  Images are read by
minivit.data.images (decompression bombs refused, 16-bit and float pixels scaled); names are
printed escaped when they hold a newline or another unprintable character.  Outputs that are
not finite (NaN: normalisation far outside the data's) are an error, never a result.
"""

from __future__ import annotations

from minivit.analysis.evaluation import load_trained, predict_logits
from minivit.backend import host_xp, to_device, to_numpy
from minivit.console import shown
from minivit.data.batches import MIN_STD, check_normalisation, normalize
from minivit.data.images import read_image
from minivit.errors import UserError
from minivit.layers.softmax import softmax_forward


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
                        help=f"per-channel std in [{MIN_STD}, 1] (default: the run's)")


def class_names(info: dict, num_classes: int, checkpoint) -> list[str]:
    """The run's class names (config.json), one per class of the model, else class 0, ..."""
    names = info.get("data", {}).get("label_names")
    if names is None:
        return [f"class {k}" for k in range(num_classes)]
    if len(names) != num_classes:
        raise UserError(f"{checkpoint}: config.json names {len(names)} classes, the model has "
                        f"{num_classes}; the run's files do not belong together")
    return names


def check_finite(values, what: str) -> None:
    """UserError when ``values`` (host) hold NaN or infinity: never print them as a result."""
    if not host_xp().isfinite(values).all():
        raise UserError(f"the model's {what} are not finite (NaN or infinity): check --mean "
                        "and --std, and the checkpoint")


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
    names = class_names(info, cfg.num_classes, args.checkpoint)
    np = host_xp()
    images = np.stack([read_image(p, cfg.image_size) for p in args.images])
    logits = predict_logits(model, normalize(to_device(images), mean, std, model.dtype))
    probs = to_numpy(softmax_forward(logits)[0])
    check_finite(probs, "probabilities")
    k = args.top
    w, rw = max(len(n) for n in names), len(str(k))
    for path, p in zip(args.images, probs):
        print(shown(path))
        for rank, c in enumerate(np.argsort(-p, kind="stable")[:k], 1):
            print(f"  {rank:>{rw}}. {shown(names[c]):<{w}}  {p[c]:.4f}")
    return 0
