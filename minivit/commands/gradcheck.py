"""``minivit gradcheck``: check every gradient of a ViT against finite differences and PyTorch.

    minivit gradcheck                                  # the recipe's model, float64, batch 2
    minivit gradcheck --config cifar-small --samples 5
    minivit gradcheck --pool token --patch-drop 0      # a class-token model, every token
    minivit gradcheck --dtype float32 --no-torch
    minivit --backend cupy gradcheck                   # the hand-written backward on the GPU
    minivit gradcheck --depth 1 --image-size 8         # override fields of the config
    minivit gradcheck --conv-stem 8,16                 # a hybrid: convolutional stem (patch 4)

The model is the one ``minivit train`` trains: by default the recipe's (cifar-nano with mean
pooling and patch dropout 0.5), and with ``--config NAME`` that config with the recipe's
options, as ``minivit train --config NAME`` builds it.  Patch dropout is checked with one fixed
mask (drawn from ``--seed``); dropout and stochastic depth stay off.

A random batch of images and labels goes through the model; the hand-written backward gives
the gradient of the cross-entropy loss for every parameter and for the images.
Each is compared with central finite differences on a sample of its entries, and with PyTorch
autograd on the whole tensor when torch is installed.  Exit status 1 when any relative error is
above its threshold (see minivit/reference/gradcheck.py); 0 otherwise.
"""

from __future__ import annotations

import time

from minivit.backend import get_backend, host_rng, to_device
from minivit.models.vit import create_model
from minivit.models.vit_config import CONFIGS, GELUS, POOLS, STOCHASTIC_FIELDS
from minivit.reference.gradcheck import fd_scale_floor, gradcheck
from minivit.training.config import TrainConfig

RECIPE = TrainConfig()          # the model `minivit train` trains by default, and its options

# integer fields of ViTConfig that may be overridden from the command line
INT_OVERRIDES = ("image_size", "patch_size", "embed_dim", "depth", "num_heads", "mlp_dim",
                 "num_classes")


def add_arguments(parser):
    parser.add_argument("--config", default=RECIPE.model, choices=sorted(CONFIGS),
                        help=f"named model config, with the training recipe's options "
                             f"({_options(RECIPE.model_overrides)}; default: {RECIPE.model})")
    parser.add_argument("--batch", type=int, default=2, help="images in the batch (default: 2)")
    parser.add_argument("--samples", type=int, default=20,
                        help="entries per tensor checked by finite differences (default: 20)")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed of the parameters, the batch and the sampled entries")
    parser.add_argument("--dtype", choices=("float64", "float32"), default="float64",
                        help="dtype of the model (finite differences always run in float64)")
    parser.add_argument("--no-torch", action="store_true",
                        help="skip the comparison with PyTorch even if it is installed")
    parser.add_argument("--label-smoothing", type=float, default=0.0, metavar="EPS",
                        help="label smoothing of the cross-entropy loss (default: 0)")
    parser.add_argument("--step", type=float, default=1e-5, metavar="H",
                        help="finite-difference step h (default: 1e-5)")
    over = parser.add_argument_group("config overrides (e.g. a tiny model for a quick check)")
    for name in INT_OVERRIDES:
        over.add_argument("--" + name.replace("_", "-"), dest=name, type=int, default=None)
    over.add_argument("--pool", choices=POOLS, default=None,
                      help=f"default: the recipe's {RECIPE.model_overrides['pool']}")
    over.add_argument("--patch-drop", dest="patch_drop_rate", type=float, default=None,
                      metavar="P", help="patch dropout rate, checked with one fixed mask "
                      f"(default: the recipe's {RECIPE.model_overrides['patch_drop_rate']:g}; "
                      "0 = every token)")
    over.add_argument("--gelu", choices=GELUS, default=None)
    over.add_argument("--conv-stem", dest="conv_stem", default=None, metavar="C0,C1,...",
                      help="channels of a convolutional stem (3x3 stride-2 convs; "
                           "patch size = 2**count)")


def _options(overrides: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in overrides.items())


def describe(args, cfg) -> str:
    """Which model is checked, in words: the recipe's, or how it differs from it."""
    recipe = {k: getattr(cfg, k) for k in RECIPE.model_overrides}
    changed = {k: getattr(args, k) for k in INT_OVERRIDES + ("gelu", "conv_stem")
               if getattr(args, k) is not None}
    if recipe == RECIPE.model_overrides:
        text = (f"the default recipe's, {args.config} with {_options(recipe)}"
                if args.config == RECIPE.model else
                f"{args.config} with the recipe's {_options(recipe)}")
        if not changed:
            flag = "" if args.config == RECIPE.model else f" --config {args.config}"
            text += f", as `minivit train{flag}` builds it"
    else:
        text = (f"{args.config} with {_options(recipe)} (the recipe has "
                f"{_options(RECIPE.model_overrides)})")
    if changed:
        text += f"; changed: {_options(changed)}"
    mask = (f"patch dropout {cfg.patch_drop_rate:g} with one fixed mask (seed {args.seed})"
            if cfg.patch_drop_rate else "every token (no patch dropout)")
    return f"{text}; {mask}"


def _fmt(err):
    return "-" if err is None else f"{err:.2e}"


def run(args) -> int:
    if args.batch < 1:
        raise ValueError(f"--batch must be at least 1, got {args.batch}")
    if args.samples < 1:
        raise ValueError(f"--samples must be at least 1, got {args.samples}")
    # dropout and stochastic depth would make the loss random: the check runs without them
    overrides = {k: 0.0 for k in STOCHASTIC_FIELDS}
    overrides.update(RECIPE.model_overrides)
    overrides.update({k: getattr(args, k) for k in INT_OVERRIDES + (
        "pool", "gelu", "conv_stem", "patch_drop_rate") if getattr(args, k) is not None})
    model = create_model(args.config, seed=args.seed, dtype=args.dtype, **overrides)
    cfg = model.config

    gen = host_rng(args.seed)
    images = to_device(gen.standard_normal((args.batch, cfg.in_chans, cfg.image_size,
                                            cfg.image_size)), args.dtype)
    labels = to_device(gen.integers(0, cfg.num_classes, size=args.batch))

    print(f"gradcheck: {model}")
    print(f"model: {describe(args, cfg)}")
    print(f"batch {args.batch}, {args.samples} sampled entries per tensor, seed {args.seed}, "
          f"h = {args.step:g}, label smoothing {args.label_smoothing:g}")

    name_w = max(len(k) for k in list(model.params) + ["parameter"])
    header = (f"{'parameter':<{name_w}}  {'shape':<16} {'checked':>7}  {'FD rel err':>10}  "
              f"{'torch rel err':>13}  status")
    printed_header = []

    def print_row(row, report):
        if not printed_header:
            if report.torch_missing:
                print(f"PyTorch not used: {report.torch_missing}")
            print(header)
            print("-" * len(header))
            printed_header.append(True)
        status = "ok" if row.ok(report.fd_tol, report.torch_tol) else "FAIL"
        shape = "x".join(str(s) for s in row.shape)
        fd = _fmt(row.fd_error) + ("*" if row.fd_near_zero else " ")
        print(f"{row.name:<{name_w}}  {shape:<16} {row.checked:>7}  {fd:>11} "
              f"{_fmt(row.torch_error):>13}  {status}", flush=True)

    wall, cpu = time.perf_counter(), time.process_time()
    report = gradcheck(model, images, labels, samples=args.samples, seed=args.seed, h=args.step,
                       use_torch=not args.no_torch, label_smoothing=args.label_smoothing,
                       on_row=print_row)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu

    print("-" * len(header))
    if any(r.fd_near_zero for r in report.rows):
        floor = fd_scale_floor(report.loss, args.step)
        print(f"* the sampled gradient entries are all ~0 (scale below the finite-difference "
              f"noise floor {floor:.1e}): judged by absolute error, max|a - b| / {floor:.1e}")
    if report.torch_used:
        outs = ", ".join(f"{k} {e:.2e}" for k, e in report.outputs.items())
        print(f"outputs vs PyTorch: {outs}")
    fd_err, fd_name = report.worst_fd
    line = f"worst FD rel error {fd_err:.2e} ({fd_name}; threshold {report.fd_tol:g})"
    if report.torch_used:
        t_err, t_name = report.worst_torch
        line += f"; worst torch rel error {t_err:.2e} ({t_name}; threshold {report.torch_tol:g})"
    else:
        line += "; torch not compared"
    n_fail = sum(not r.ok(report.fd_tol, report.torch_tol) for r in report.rows)
    n_fail += sum(not e < report.torch_tol for e in report.outputs.values())
    verdict = "PASS" if report.ok else f"FAIL ({n_fail} above threshold)"
    print(f"{verdict}: {len(report.rows)} tensors, {line}; {wall:.1f} s "
          f"({cpu:.1f} s CPU, {cfg.name}, {report.dtype}, {get_backend()})")
    return 0 if report.ok else 1
