"""``minivit explain CHECKPOINT IMAGE... --out PAGE.html``: one self-contained HTML page of the
forward and backward pass of a ViT on the images (``minivit.explain``).

    minivit explain results/cifar-nano-hour-s0 cat.png --out cat.html

The page opens from the file in any current browser (no server, no network).  Without --out it
is written to RUN_DIR/explain.html, or <model file name>-explain.html next to the model file.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from minivit.commands.predict import add_normalisation_arguments
from minivit.explain import explain


def add_arguments(parser):
    parser.add_argument("checkpoint", metavar="CHECKPOINT", help="run directory or model file")
    parser.add_argument("images", metavar="IMAGE", nargs="+",
                        help="PNG or JPEG files, resized to the model's input size")
    parser.add_argument("--out", metavar="PAGE.html",
                        help="the page to write (default RUN_DIR/explain.html)")
    parser.add_argument("--compare-untrained", action=argparse.BooleanOptionalAction,
                        default=True, help="add the same model at initialisation behind a "
                                           "toggle (default on)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the untrained model")
    parser.add_argument("--epochs", action=argparse.BooleanOptionalAction, default=True,
                        help="for a run trained with --snapshots N: the epoch slider that "
                             "replays the attention and the prediction (default on)")
    add_normalisation_arguments(parser)


def _default_out(checkpoint: Path) -> Path:
    if checkpoint.is_dir():
        return checkpoint / "explain.html"
    return checkpoint.parent / f"{checkpoint.stem}-explain.html"


def run(args) -> int:
    checkpoint = Path(args.checkpoint)
    out = Path(args.out) if args.out else _default_out(checkpoint)
    if out.is_dir():
        raise ValueError(f"--out {out} is a folder; give the page's file name, e.g. "
                         f"{out / 'explain.html'}")
    path = explain(checkpoint, args.images, out, untrained=args.compare_untrained,
                   mean=args.mean, std=args.std, seed=args.seed, epochs=args.epochs)
    print(f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB)")
    return 0
