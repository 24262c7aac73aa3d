"""``minivit reconstruct CHECKPOINT IMAGE...``: what a masked autoencoder makes of an image.

    minivit reconstruct runs/mae-cifar-tiny-20250101-120000 cat.png ship.jpg --seed 3

One PNG per image (--out DIR/<image name>-mae.png) with four panels, as in MAE's figure 2:
the original (resized to the model's input), the masked input (hidden patches grey), the
reconstruction (the decoder's prediction for every patch), and the reconstruction with the
visible patches pasted back.  With ``norm_pix_loss`` the model predicts each patch normalised
by its own mean and variance, which the model never sees for a hidden patch; the figure
un-normalises every prediction with the statistics of the image's *visible* patches (the mean
of their means and the mean of their standard deviations) and says so in its title.  Two
images with the same name (a/x.png, b/x.png) get x-mae.png and x-2-mae.png.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from minivit.analysis.plots import _matplotlib
from minivit.backend import host_xp, to_device, to_numpy
from minivit.backend import rng as make_rng
from minivit.commands.outputs import check_output_dir
from minivit.commands.predict import add_normalisation_arguments, check_finite
from minivit.console import plural, shown
from minivit.data.batches import check_normalisation, normalize
from minivit.data.images import read_image, unique_stems
from minivit.errors import UserError
from minivit.io.files import write_figure
from minivit.io.pretrained import load_pretrained
from minivit.layers.patches import patchify, unpatchify
from minivit.models.mae import NORM_PIX_EPS, MaskedAutoencoder


def add_arguments(parser):
    parser.add_argument("checkpoint", metavar="CHECKPOINT",
                        help="run directory or model file of `minivit pretrain --objective mae`")
    parser.add_argument("images", metavar="IMAGE", nargs="+", help="PNG or JPEG files")
    parser.add_argument("--out", metavar="DIR",
                        help="folder to write the figures into (default: "
                             "RUN_DIR/reconstructions, or . for a model file)")
    parser.add_argument("--out-dir", dest="out", help=argparse.SUPPRESS)   # the old name
    parser.add_argument("--mask-ratio", type=float, help="default: the model's")
    parser.add_argument("--seed", type=int, default=0, help="seed of the masks (default 0)")
    add_normalisation_arguments(parser)


def unnormalise_with_visible(pred, patches, mask):
    """pred, patches (B, N, Q), mask (B, N) 1 = hidden -> pred * s + m per image, where m and s
    are the mean over visible patches of each patch's mean and standard deviation (unbiased,
    + eps, as the norm_pix_loss target)."""
    visible = (1.0 - mask)[..., None]                                         # (B, N, 1)
    count = visible.sum(axis=1, keepdims=True)                                # (B, 1, 1)
    mu = patches.mean(axis=-1, keepdims=True)
    sd = (patches.var(axis=-1, ddof=1, keepdims=True) + NORM_PIX_EPS) ** 0.5
    m = (mu * visible).sum(axis=1, keepdims=True) / count
    s = (sd * visible).sum(axis=1, keepdims=True) / count
    return pred * s + m


def run(args) -> int:
    model, run_dir, info = load_pretrained(args.checkpoint)
    if not isinstance(model, MaskedAutoencoder):
        raise UserError(f"{args.checkpoint} holds a {type(model).__name__}, not a masked "
                        "autoencoder; reconstruct needs `minivit pretrain --objective mae`")
    cfg = model.config
    if args.mask_ratio is not None:
        cfg = cfg.replace(mask_ratio=args.mask_ratio)                  # validated
        model = MaskedAutoencoder(cfg, model.params)
    stats = info.get("data", {})
    mean, std = args.mean or stats.get("mean"), args.std or stats.get("std")
    if mean is None or std is None:
        raise UserError(f"{args.checkpoint} has no config.json with the training mean/std; "
                        "pass --mean R G B --std R G B")
    check_normalisation(mean, std)
    enc = cfg.encoder
    if enc.in_chans != 3:
        raise UserError(f"the model takes {enc.in_chans}-channel images; reconstruct reads RGB")
    out_dir = check_output_dir(Path(args.out) if args.out else (
        run_dir / "reconstructions" if run_dir is not None else Path(".")))
    np = host_xp()
    raw = np.stack([read_image(p, enc.image_size) for p in args.images])
    images = normalize(to_device(raw), mean, std, model.dtype)
    loss, pred, mask = model.forward(images, mask_rng=make_rng(args.seed), keep_cache=False)
    check_finite(to_numpy(pred), "reconstructions")
    patches = patchify(images, enc.patch_size)
    if cfg.norm_pix_loss:
        pred = unnormalise_with_visible(pred, patches, mask)
        how = ("norm_pix_loss: predictions un-normalised with the mean/std of the visible "
               "patches")
    else:
        how = "pixel targets: predictions shown as they are"
    m = mask[..., None]
    # mid grey in normalised units, repeated over a patch's (row, column, channel) layout
    grey = to_device(np.tile((0.5 - np.asarray(mean)) / np.asarray(std), enc.patch_size ** 2),
                     model.dtype)
    def image(p):
        """patches (B, N, Q) in normalised units -> host (B, H, W, 3) in [0, 1]."""
        x = to_numpy(unpatchify(p, enc.patch_size, 3)).transpose(0, 2, 3, 1)
        return np.clip(x * np.asarray(std) + np.asarray(mean), 0, 1)

    panels = {"original": image(patches),
              "masked input": image(patches * (1 - m) + grey * m),
              "reconstruction": image(pred),
              "reconstruction + visible": image(patches * (1 - m) + pred * m)}
    out_dir.mkdir(parents=True, exist_ok=True)
    N, hidden = enc.num_patches, int(to_numpy(mask[0]).sum())
    Figure, Canvas = _matplotlib()
    for i, (path, stem) in enumerate(zip(args.images, unique_stems(args.images))):
        fig = Figure(figsize=(10, 3.2))
        Canvas(fig)
        for j, (title, arr) in enumerate(panels.items()):
            ax = fig.add_subplot(1, 4, j + 1)
            ax.imshow(arr[i], interpolation="nearest")
            ax.set_title(title, fontsize=9)
            ax.axis("off")
        fig.suptitle(f"{shown(Path(path).name)}: {hidden} of {N} patches hidden (mask ratio "
                     f"{cfg.mask_ratio}), seed {args.seed}\n{how}", fontsize=8)
        out = out_dir / f"{stem}-mae.png"
        write_figure(fig, out, dpi=100, bbox_inches="tight")
        print(f"{shown(path)} -> {shown(out)}")
    print(f"minivit reconstruct: mean loss on hidden patches {loss:.4f} "
          f"({plural(len(args.images), 'image')})")
    return 0

