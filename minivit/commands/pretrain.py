"""``minivit pretrain``: self-supervised pre-training on the CIFAR-10 training images.

    minivit pretrain --objective mae --config cifar-tiny --epochs 100 --norm-pix-loss
    minivit pretrain --objective mpp --steps 20 --no-progress       # masked patch prediction
    minivit pretrain --resume runs/mae-cifar-nano-20250101-120000   # after Ctrl-C / a limit
    minivit train --init-from runs/mae-cifar-nano-...               # then fine-tune
    minivit linprobe runs/mae-cifar-nano-...                        # or probe linearly

The loop, its flags, run files, checkpoints and exact resume are those of ``minivit train``
(minivit/training/loop.py with an objective from minivit/training/objectives/pretraining.py);
labels are not used, and mixup, cutmix and label smoothing do not apply.  The epoch's
validation loss uses the same masks every epoch.  RUN_DIR/model.safetensors holds the whole
MAE (or MPP model).
"""

from __future__ import annotations

from minivit.commands import train as train_cmd
from minivit.errors import UserError

# flag dest -> (objective, MAEConfig / MPPConfig field)
OPTION_FLAGS = {
    "mask_ratio": ("mae", "mask_ratio"),
    "norm_pix_loss": ("mae", "norm_pix_loss"),
    "decoder_dim": ("mae", "decoder_embed_dim"),
    "decoder_depth": ("mae", "decoder_depth"),
    "decoder_heads": ("mae", "decoder_num_heads"),
    "decoder_mlp_dim": ("mae", "decoder_mlp_dim"),
    "decoder_pos_embed": ("mae", "decoder_pos_embed"),
    "corrupt_ratio": ("mpp", "corrupt_ratio"),
    "color_bits": ("mpp", "color_bits"),
}


def add_arguments(parser):
    train_cmd.add_arguments(parser, classify=False)
    parser.description = (
        "Self-supervised pre-training on the CIFAR-10 training images (labels unused): a "
        "masked autoencoder (MAE, He et al. 2021; default) or the ViT paper's masked patch "
        "prediction (MPP). Same loop, flags, run files and --resume as `minivit train` "
        "(less --mixup, --cutmix, --label-smoothing and --init-from). Fine-tune the "
        "result with `minivit train --init-from RUN_DIR`, probe it with `minivit linprobe "
        "RUN_DIR`, look at MAE reconstructions with `minivit reconstruct RUN_DIR IMAGE`.")
    g = parser.add_argument_group("objective")
    g.add_argument("--objective", choices=("mae", "mpp"),
                   help="mae (default): reconstruct hidden patches' pixels; mpp: predict the "
                        "3-bit mean colour of corrupted patches")
    g.add_argument("--mask-ratio", type=float, help="mae: share of patches hidden (default 0.75)")
    g.add_argument("--norm-pix-loss", action="store_const", const=True,
                   help="mae: targets are patches normalised by their own mean/std")
    g.add_argument("--decoder-dim", type=int, help="mae: decoder width (default 128)")
    g.add_argument("--decoder-depth", type=int, help="mae: decoder blocks (default 2)")
    g.add_argument("--decoder-heads", type=int, help="mae: decoder heads (default 4)")
    g.add_argument("--decoder-mlp-dim", type=int, help="mae: decoder MLP width (default 256)")
    g.add_argument("--decoder-pos-embed", choices=("sincos", "learned"),
                   help="mae: fixed 2-D sine-cosine (default) or learned")
    g.add_argument("--corrupt-ratio", type=float,
                   help="mpp: share of patches corrupted (default 0.5)")
    g.add_argument("--color-bits", type=int, help="mpp: bits per colour channel (default 3)")


def run(args) -> int:
    given = {dest: getattr(args, dest) for dest in OPTION_FLAGS if getattr(args, dest) is not None}
    if args.resume:
        if args.objective or given:
            flags = ", ".join("--" + k.replace("_", "-")
                              for k in (["objective"] if args.objective else []) + list(given))
            raise UserError(f"--resume continues the run with its saved config; {flags} cannot "
                            "be changed")
        return train_cmd.run(args)
    objective = args.objective or "mae"
    wrong = [k for k in given if OPTION_FLAGS[k][0] != objective]
    if wrong:
        flags = ", ".join("--" + k.replace("_", "-") for k in wrong)
        raise UserError(f"{flags} do(es) not apply to --objective {objective}")
    args.objective = objective
    args.objective_options = {OPTION_FLAGS[k][1]: v for k, v in given.items()}
    return train_cmd.run(args)
