"""``minivit train``: train a ViT on CIFAR-10 (see minivit/training/loop.py for the loop).

    minivit train                                   # cifar-nano, the CPU recipe below
    minivit train --config cifar-tiny --epochs 100 --mixup 0.8 --cutmix 1.0 --drop-path 0.1
    minivit train --steps 20 --no-progress          # a quick check
    minivit train --resume runs/cifar-nano-20250101-120000   # continue after Ctrl-C / a limit

Every flag defaults to ``None`` here so that the TrainConfig's own default applies and so a
``--resume`` can tell which flags were really given.
"""

from __future__ import annotations

import json
import sys

from minivit.errors import UserError
from minivit.models.airbench_config import AIRBENCH_CONFIGS
from minivit.models.convnets import CONVNET_CONFIGS
from minivit.models.vit_config import CONFIGS
from minivit.training import (
    RECIPE_MODEL_OVERRIDES,
    SESSION_FIELDS,
    TrainConfig,
    TrainingDiverged,
    resume,
    train,
)
from minivit.training.airbench_recipe import RECIPE_BATCH_SIZE, recipe_defaults
from minivit.training.config import (
    BUDGET_EVAL_EVERY,
    BUDGET_MAX_EPOCHS,
    DISTILL_MODEL_OVERRIDES,
    OPTIMIZERS,
    PRETRAIN_EPOCHS,
    RECIPE_TIME_BUDGET,
)

D = TrainConfig()          # the defaults, for the help text
# The flags of the session options that --resume accepts ("progress" is set by --no-progress).
_SESSION_FLAGS = ", ".join("--no-progress" if f == "progress" else "--" + f.replace("_", "-")
                           for f in SESSION_FIELDS)

# flag dest -> ViTConfig field that it overrides
MODEL_FLAGS = {"drop_path": "drop_path_rate", "dropout": "drop_rate",
               "attn_dropout": "attn_drop_rate", "patch_drop": "patch_drop_rate"}


def add_arguments(parser, classify: bool = True):
    """The training loop's flags; classify=False (``minivit pretrain``) leaves out those that
    only classification uses (--init-from, --label-smoothing, --mixup, --cutmix)."""
    parser.description = (
        "Train a ViT on CIFAR-10. The default recipe (cifar-nano with mean pooling and "
        "patch dropout 0.5 but for the last epoch, AdamW lr 1e-3, wd 0.05, batch 128, "
        "1 warmup epoch then cosine to 1e-5, label smoothing 0.1, crop+flip, clip 1.0, the "
        "epochs that fit in one hour) is meant for a CPU; on a GPU try docs/gpu.md's "
        "recipe: --config cifar-small --epochs 200 --warmup-epochs 5 --patch-drop 0 "
        "--mixup 0.8 --cutmix 1.0 --drop-path 0.1 --batch-size 256. Writes "
        "RUN_DIR/config.json, metrics.jsonl, checkpoint.safetensors, model.safetensors. "
        "Ctrl-C or SIGTERM saves a checkpoint; continue with --resume RUN_DIR.")
    m = parser.add_argument_group("model")
    m.add_argument("--config", dest="model", metavar="NAME",
                   help=f"model config: {', '.join(CONFIGS)}, or a convnet teacher: "
                        f"{', '.join(CONVNET_CONFIGS)} (default {D.model})")
    m.add_argument("--set", dest="model_set", action="append", metavar="KEY=VALUE",
                   help="override a model config field, e.g. --set depth=4 --set pool=token "
                        "(repeatable)" + ("; on top of the recipe's " + ", ".join(
                            f"{k}={v}" for k, v in RECIPE_MODEL_OVERRIDES.items())
                            if classify else ""))
    m.add_argument("--drop-path", type=float, help="stochastic depth rate (default 0)")
    m.add_argument("--dropout", type=float, help="dropout rate (default 0)")
    m.add_argument("--attn-dropout", type=float, help="attention dropout rate (default 0)")
    if classify:
        m.add_argument("--patch-drop", type=float,
                       help="PatchDropout: share of patch tokens each training image drops "
                            f"(default {RECIPE_MODEL_OVERRIDES['patch_drop_rate']}; 0 = off)")
        m.add_argument("--unmasked-epochs", type=float,
                       help="train the last N epochs without patch dropout, on every token "
                            f"as evaluation sees them (default {D.unmasked_epochs})")
    m.add_argument("--dtype", choices=("float32", "float64"), help=f"default {D.dtype}")
    if classify:
        m.add_argument("--teacher", metavar="RUN_OR_FILE",
                       help="distil (DeiT) from this trained classifier (e.g. a run of "
                            "--config resnet20): the student becomes distilled=true with "
                            "pool=token, and learns from the labels and the teacher")
        m.add_argument("--distill", choices=("hard", "soft"),
                       help="hard: the teacher's argmax is the distillation head's label "
                            "(default with --teacher); soft: KL of the softened outputs")
        m.add_argument("--distill-tau", type=float,
                       help=f"soft distillation temperature (default {D.distill_tau})")
        m.add_argument("--distill-lambda", type=float,
                       help=f"soft distillation weight of the KL term (default "
                            f"{D.distill_lambda})")
    if classify:
        m.add_argument("--init-from", metavar="CHECKPOINT",
                       help="fine-tune: start from the encoder of a pre-trained run or model "
                            "file (minivit pretrain, or a ViT) with a new zero head; the "
                            "architecture is the checkpoint's")

    o = parser.add_argument_group("optimisation")
    o.add_argument("--epochs", type=int,
                   help="train exactly N epochs (with --time-budget: at most N; default: "
                        + (f"as many as fit in {RECIPE_TIME_BUDGET:g} minutes, at most "
                           f"{BUDGET_MAX_EPOCHS})" if classify else f"{PRETRAIN_EPOCHS})"))
    o.add_argument("--steps", type=int, help="total optimizer steps; replaces --epochs")
    o.add_argument("--time-budget", type=float, metavar="MINUTES",
                   help="fit the run to this wall-clock time: time a few steps first, then "
                        "train the whole epochs that fit, evaluations and saves included (at "
                        f"most --epochs, or {BUDGET_MAX_EPOCHS}), fitted again after the first "
                        "epoch; config.json records the steps chosen, and --steps N repeats "
                        "the run exactly" + (f" (default {RECIPE_TIME_BUDGET:g} when neither "
                                             "--epochs nor --steps is given)" if classify
                                             else ""))
    o.add_argument("--batch-size", type=int, help=f"default {D.batch_size}")
    o.add_argument("--lr", type=float,
                   help=f"peak learning rate of AdamW, or of the SGD of --optimizer airbench "
                        f"(default {D.lr})")
    o.add_argument("--min-lr", type=float, help=f"final cosine learning rate (default {D.min_lr})")
    o.add_argument("--warmup-epochs", type=float, help=f"linear warmup (default {D.warmup_epochs})")
    o.add_argument("--warmup-steps", type=int,
                   help="linear warmup in steps; replaces --warmup-epochs")
    o.add_argument("--weight-decay", type=float,
                   help=f"weight decay of AdamW or of the SGD (default {D.weight_decay})")
    if classify:
        o.add_argument("--label-smoothing", type=float, help=f"default {D.label_smoothing}")
    o.add_argument("--clip-grad", type=float,
                   help=f"max global gradient norm, 0 = off (default {D.clip_grad})")
    if classify:
        o.add_argument("--mixup", type=float, help="mixup alpha, 0 = off (default 0)")
        o.add_argument("--cutmix", type=float, help="cutmix alpha, 0 = off (default 0)")
    o.add_argument("--no-augment", dest="augment", action="store_const", const=False,
                   help="no random crop / flip")
    o.add_argument("--ema", type=float, metavar="DECAY",
                   help="evaluate and save a moving average of the weights, e.g. 0.999 "
                        "(decay warmed up as min(DECAY, (1+t)/(10+t)); default 0 = off)")
    if classify:
        o.add_argument("--layer-decay", type=float, metavar="R",
                       help="layer-wise lr decay: block i of L learns at lr * R^(L-i), the "
                            "embeddings at lr * R^(L+1), the head at lr (default 1 = off)")
        o.add_argument("--randaugment", metavar="N,M",
                       help="RandAugment: N random ops per image (default 2 if only M is "
                            "given) of magnitude M in 0-10, after crop/flip (default off)")
    if classify:
        o.add_argument("--optimizer", choices=OPTIMIZERS,
                       help="adamw, or airbench: Nesterov SGD with airbench's groups, fixed "
                            "whitening, lookahead and triangular schedule (the default of "
                            "--config airbench, with its lr, weight decay, smoothing 0.2, "
                            "batch 512, 10 epochs, --tta 2; default adamw)")
    o.add_argument("--seed", type=int, help=f"default {D.seed}")

    d = parser.add_argument_group("data and evaluation")
    d.add_argument("--data-dir", help="CIFAR-10 folder (default: $MINIVIT_DATA, then the cache)")
    d.add_argument("--download", action="store_const", const=True,
                   help="download CIFAR-10 into the cache if it is not found")
    d.add_argument("--val-size", type=int,
                   help=f"training images held out for validation (default {D.val_size})")
    d.add_argument("--train-size", type=int, metavar="N",
                   help="train on only N of the other training images, the same number of "
                        "each class (default: all)")
    d.add_argument("--eval-every", type=int,
                   help="evaluate on val every N epochs and after the last, 0 = never "
                        f"(default 1; {BUDGET_EVAL_EVERY} with a time budget)")
    d.add_argument("--eval-test", action="store_const", const=True,
                   help="also evaluate on the test set each epoch")
    d.add_argument("--eval-batch-size", type=int, help=f"default {D.eval_batch_size}")
    if classify:
        d.add_argument("--tta", type=int, choices=(0, 1, 2),
                       help="test-time augmentation of every evaluation: 0 none, 1 mirror, "
                            "2 mirror and one-pixel shifts (default 0)")

    r = parser.add_argument_group("run")
    r.add_argument("--run-dir", help="where to write the run (default runs/<config>-<time>)")
    r.add_argument("--resume", metavar="RUN_DIR",
                   help="continue RUN_DIR exactly where its checkpoint stopped, with its saved "
                        f"config; only {_SESSION_FLAGS} may be given with it")
    r.add_argument("--checkpoint-every", type=int,
                   help="also checkpoint every N steps (default: at epoch ends and the end)")
    r.add_argument("--snapshots", type=int, metavar="N",
                   help="keep the model after N epochs spread over the run, in "
                        "RUN_DIR/snapshots (minivit explain replays them; default 0)")
    r.add_argument("--max-steps", type=int,
                   help="stop, resumably, once N steps are done (the schedule is unchanged)")
    r.add_argument("--time-limit", type=float, metavar="MINUTES",
                   help="stop, resumably, after this many minutes")
    r.add_argument("--threads", type=int,
                   help="NumPy: split each batch over N threads, one per core (default 0 = "
                        "one per available CPU core; 1 = no threads)"
                        + ("" if classify else "; MAE only, MPP runs on one thread"))
    r.add_argument("--no-progress", dest="progress", action="store_const", const=False,
                   help="no progress bar")


def parse_value(text: str):
    """'4' -> 4, '0.1' -> 0.1, 'true' -> True, 'mean' -> 'mean'."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _model_overrides(args) -> dict:
    overrides = {}
    for item in args.model_set or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UserError(f"--set expects KEY=VALUE, got {item!r}")
        overrides[key.strip()] = parse_value(value.strip())
    for flag, field in MODEL_FLAGS.items():
        value = getattr(args, flag, None)          # None: not given, or not a flag of this command
        if value is not None:
            overrides[field] = value
    return overrides


def _given(args) -> dict:
    """The TrainConfig fields whose flags were given on the command line."""
    names = set(TrainConfig.__dataclass_fields__)
    return {k: v for k, v in vars(args).items() if k in names and v is not None}


def run(args) -> int:
    given = _given(args)
    overrides = _model_overrides(args)
    try:
        if args.resume:
            extra = sorted(set(given) - set(SESSION_FIELDS)) + (["model overrides"] if overrides
                                                                else [])
            if extra:
                flags = ", ".join("--" + k.replace("_", "-") for k in extra)
                raise UserError(f"--resume continues the run with its saved config; "
                                f"{flags} cannot be changed (only {_SESSION_FLAGS})")
            result = resume(args.resume, **given)
        else:
            resnet = given.get("model") in CONVNET_CONFIGS
            if given.get("model") in AIRBENCH_CONFIGS and args.command == "train":
                given = {**recipe_defaults(given.get("batch_size", RECIPE_BATCH_SIZE)),
                         **given}
            if overrides and args.command == "train" and not resnet:   # on the recipe's
                base = DISTILL_MODEL_OVERRIDES if given.get("teacher") else RECIPE_MODEL_OVERRIDES
                given["model_overrides"] = {**base, **overrides}
            elif overrides:
                given["model_overrides"] = overrides
            result = train(TrainConfig(**given))
    except TrainingDiverged as e:
        print(f"minivit {args.command}: error: {e}", file=sys.stderr)
        return 1
    return 130 if result["status"] == "interrupted" else 0
