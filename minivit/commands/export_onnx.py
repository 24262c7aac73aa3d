"""``minivit export-onnx CHECKPOINT OUT.onnx``: a trained ViT as an ONNX file.

    minivit export-onnx runs/nano nano.onnx
    python -c "import onnxruntime as ort; s = ort.InferenceSession('nano.onnx'); \\
               print(s.run(['logits'], {'images': images})[0])"   # normalised float32 images

The export runs minivit's PyTorch twin (minivit.reference.torch_twin) through torch.onnx.export,
so it needs the ``reference`` extra (PyTorch, CPU build) and the ``onnx`` extra (onnx,
onnxscript, onnxruntime).  Unless ``--check 0``, ONNX Runtime then runs the file on random
images and its logits are held to minivit's (relative difference at most 1e-4).
"""

from __future__ import annotations

import importlib.util
import sys

from minivit.backend import host_rng
from minivit.commands.convert import load_source
from minivit.errors import UserError
from minivit.install import install_hint
from minivit.io.onnx import check_onnx, export_onnx

TOLERANCE = 1e-4


def add_arguments(parser):
    parser.add_argument("checkpoint", metavar="CHECKPOINT",
                        help="run directory, model file or Hugging Face ViT folder")
    parser.add_argument("out", metavar="OUT", help="the .onnx file to write")
    parser.add_argument("--check", type=int, default=8, metavar="N",
                        help="random images ONNX Runtime checks the file on (default 8; 0: "
                             "no check)")


def run(args) -> int:
    if args.check < 0:
        raise UserError(f"--check must be >= 0, got {args.check}")
    model, info = load_source(args.checkpoint)
    export_onnx(model, args.out)
    cfg = model.config
    print(f"wrote {args.out}: input 'images' (batch, {cfg.in_chans}, {cfg.image_size}, "
          f"{cfg.image_size}) float32, output 'logits' (batch, {cfg.num_classes})")
    data = info.get("data", {})
    if data.get("mean") and data.get("std"):
        print(f"normalise the images first: (x / 255 - mean) / std, mean {data['mean']}, "
              f"std {data['std']}")
    if args.check == 0:
        return 0
    if importlib.util.find_spec("onnxruntime") is None:
        print(f"minivit: note: onnxruntime is not installed, the file was not checked "
              f"({install_hint('onnx')})", file=sys.stderr)
        return 0
    shape = (args.check, cfg.in_chans, cfg.image_size, cfg.image_size)
    images = host_rng(0).standard_normal(shape).astype(model.dtype)
    diff = check_onnx(args.out, model, images)
    if not diff <= TOLERANCE:
        raise UserError(f"{args.out}: ONNX Runtime's logits differ from minivit's by {diff:.2e} "
                        f"(relative), more than {TOLERANCE:.0e}")
    print(f"ONNX Runtime's logits match minivit's on {args.check} random images "
          f"(max relative difference {diff:.1e})")
    return 0
