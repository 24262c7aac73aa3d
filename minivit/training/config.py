"""The configuration of a training run: ``TrainConfig``, its checks, and reading it back.

    cfg = TrainConfig(model="cifar-nano", epochs=10, run_dir="runs/nano")   # validated
    cfg = load_train_config("runs/nano")          # what a run directory's config.json says

The defaults are the CPU recipe of ``minivit train`` (results/README.md, section 10): the
model and its training, a length of one hour (``length_defaults``) and, on a time budget,
validation every ``BUDGET_EVAL_EVERY`` epochs.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path

from minivit.analysis.tta import TTA_LEVELS
from minivit.data.randaugment import check_randaugment, parse_randaugment
from minivit.io.rundir import CONFIG_FILE, read_run_info
from minivit.limits import check_run_counts
from minivit.models.airbench_config import AIRBENCH_CONFIGS
from minivit.models.convnets import CONVNET_CONFIGS, get_convnet_config
from minivit.models.vit_config import CONFIGS, ViTConfig, get_config

# Options that belong to one session, not to the run: a resume may change them.  data_dir is
# where this machine keeps CIFAR-10 (the run moves between machines), not which data it is.
SESSION_FIELDS = ("max_steps", "time_limit", "checkpoint_every", "progress", "threads", "data_dir")


# The CPU recipe's changes to the model config: the head reads the mean of the patch tokens,
# and each image drops half of its patch tokens (layers/patch_dropout.py), which halves a
# step's cost.  A distilled student (--teacher) reads its class and distillation tokens.
RECIPE_MODEL_OVERRIDES = {"pool": "mean", "patch_drop_rate": 0.5}
DISTILL_MODEL_OVERRIDES = {**RECIPE_MODEL_OVERRIDES, "pool": "token", "distilled": True}
DISTILL_KINDS = ("hard", "soft")
# The run's length when none is given: classification fits the whole epochs it can in an hour
# (the README's CPU recipe, results/README.md sections 9-10), pre-training trains 38 epochs.
RECIPE_TIME_BUDGET = 60.0           # minutes
BUDGET_MAX_EPOCHS = 100             # a time budget's cap when --epochs is not given
# A time-budgeted run validates every BUDGET_EVAL_EVERY epochs (and after the last) unless
# told otherwise: validating every epoch costs about 8% of the recipe's hour (3-4 epochs).
BUDGET_EVAL_EVERY = 5
PRETRAIN_EPOCHS = 38
# Fields added after runs were recorded without them: what those runs did.
OLD_RUN_DEFAULTS = {"unmasked_epochs": 0.0, "teacher": None, "distill": None,
                    "distill_tau": 3.0, "distill_lambda": 0.1, "ema": 0.0, "layer_decay": 1.0,
                    "randaugment": None, "time_budget": None, "snapshots": 0,
                    "optimizer": "adamw", "tta": 0, "train_size": None}
# "airbench": the airbench net's own optimisation (minivit/training/airbench_recipe.py): Nesterov
# SGD (lr, weight_decay its own), 64x bias lr, fixed whitening, lookahead, triangular schedule
OPTIMIZERS = ("adamw", "airbench")


@dataclass
class TrainConfig:
    # model
    model: str = "cifar-nano"               # a name from minivit.CONFIGS, or a convnet's
                                            # (resnet8/14/20, airbench: a teacher)
    model_overrides: dict | None = None     # ViTConfig fields, e.g. {"drop_path_rate": 0.1};
                                            # None: RECIPE_MODEL_OVERRIDES to classify, {} to
                                            # pre-train. A dict replaces them all.
    dtype: str = "float32"
    # schedule: `steps` (if set) replaces `epochs`; warmup_steps (if set) replaces warmup_epochs.
    # A classification run given none of epochs, steps, time_budget is the CPU recipe's hour:
    # time_budget RECIPE_TIME_BUDGET, at most BUDGET_MAX_EPOCHS (see length_defaults).
    epochs: int | None = None               # None: see length_defaults
    steps: int | None = None
    time_budget: float | None = None        # minutes: train the whole epochs that fit, at
                                            # most `epochs` (minivit/training/time_budget.py)
    batch_size: int = 128
    lr: float = 1e-3
    min_lr: float = 1e-5
    warmup_epochs: float = 1.0
    warmup_steps: int | None = None
    weight_decay: float = 0.05
    label_smoothing: float = 0.1
    clip_grad: float = 1.0                  # max global gradient norm; 0 = off
    unmasked_epochs: float = 1.0            # the last epochs train without patch dropout
                                            # (FLIP's "unmasked tuning"); no effect without it
    ema: float = 0.0                        # decay of the weights' moving average that
                                            # evaluation and the saved model use; 0 = off
    layer_decay: float = 1.0                # lr * layer_decay ** (depth + 1 - layer); 1 = off
    optimizer: str = "adamw"                # or "airbench" (OPTIMIZERS; the airbench net only)
    # augmentation
    augment: bool = True                    # random crop (pad 4) + horizontal flip
    mixup: float = 0.0                      # Beta(alpha, alpha); 0 = off
    cutmix: float = 0.0                     # 0 = off; both on: one of the two per batch
    randaugment: list | None = None         # [N, M] (or "N,M", "M"): N random ops of
                                            # magnitude M (0-10) per image after crop/flip
                                            # (minivit/data/randaugment.py); None = off
    # data and evaluation
    data_dir: str | None = None             # None: $MINIVIT_DATA, then the cache
    download: bool = False
    val_size: int = 5000                    # last val_size training images
    train_size: int | None = None           # only this many of the others (balanced_subset)
    eval_every: int | None = None           # epochs; 0 = no validation during training;
                                            # None: 1, or BUDGET_EVAL_EVERY with a time budget
    eval_test: bool = False                 # also evaluate on the test set each epoch
    eval_batch_size: int = 500
    tta: int = 0                            # test-time augmentation of every evaluation:
                                            # 0 off, 1 mirror, 2 mirror + shifts (analysis/tta.py)
    seed: int = 0
    threads: int = 0                        # NumPy: split each batch over this many threads
                                            # (0 = one per CPU core; minivit.parallel.threads)
    # run directory and session
    run_dir: str | None = None              # None: runs/<model>-<timestamp>
    checkpoint_every: int = 0               # steps; 0 = only at epoch ends and at the end
    snapshots: int = 0                      # keep the model after this many epochs, spread
                                            # evenly (RUN_DIR/snapshots, minivit.training.snapshots)
    max_steps: int | None = None            # stop (resumably) once this many steps are done
    time_limit: float | None = None         # minutes; stop (resumably) after this long
    progress: bool = True                   # tqdm progress bar
    objective: str = "classify"             # or pre-training: "mae", "mpp" (labels unused)
    objective_options: dict = field(default_factory=dict)  # MAEConfig / MPPConfig fields
    init_from: str | None = None            # classify: start from this checkpoint's encoder
    # distillation (DeiT, training/objectives/distillation.py): a student learns from a teacher
    teacher: str | None = None              # a trained run directory or model file
    distill: str | None = None              # "hard" (the default with a teacher) or "soft"
    distill_tau: float = 3.0                # soft: temperature (DeiT's 3.0)
    distill_lambda: float = 0.1             # soft: weight of the KL term (DeiT's 0.1)

    def __post_init__(self):
        self.epochs, self.time_budget = length_defaults(self.epochs, self.steps,
                                                        self.time_budget, self.objective)
        if self.eval_every is None:
            self.eval_every = 1 if self.time_budget is None else BUDGET_EVAL_EVERY
        if self.model_overrides is None:
            self.model_overrides = (
                {} if self.model in CONVNET_CONFIGS or self.objective != "classify" else
                dict(DISTILL_MODEL_OVERRIDES) if self.teacher else dict(RECIPE_MODEL_OVERRIDES))
        if self.teacher and self.model not in CONVNET_CONFIGS and isinstance(
                self.model_overrides, dict):
            self.model_overrides = {"distilled": True, **self.model_overrides}
            self.distill = self.distill or "hard"
        if isinstance(self.randaugment, str):               # "N,M" or "M" (the flag)
            self.randaugment = parse_randaugment(self.randaugment)
        elif isinstance(self.randaugment, tuple):
            self.randaugment = list(self.randaugment)       # as config.json gives it back
        self.validate()

    def validate(self) -> None:
        """Raise ValueError with a one-line message for the first bad field."""
        if self.model not in CONFIGS and self.model not in CONVNET_CONFIGS:
            raise ValueError(f"unknown model config {self.model!r}; expected one of "
                             f"{', '.join([*CONFIGS, *CONVNET_CONFIGS])}")
        resnet = self.model in CONVNET_CONFIGS          # a convnet
        kind = type(CONVNET_CONFIGS[self.model]) if resnet else ViTConfig
        fields = {f.name for f in dataclasses.fields(kind)}
        if not isinstance(self.model_overrides, dict) or not set(self.model_overrides) <= fields:
            raise ValueError(f"model overrides must be {kind.__name__} fields "
                             f"({', '.join(sorted(fields))}), got {self.model_overrides!r}")
        self._check_distillation(resnet)
        model_cfg = (get_convnet_config if resnet else get_config)(self.model,
                                                                   **self.model_overrides)
        if self.dtype not in ("float32", "float64"):
            raise ValueError(f"dtype must be float32 or float64, got {self.dtype!r}")

        def check(name, ok, expected):
            v = getattr(self, name)
            if isinstance(v, bool) or not ok(v):
                raise ValueError(f"{name.replace('_', '-')} must be {expected}, got {v!r}")

        def pos_int(v):
            return isinstance(v, int) and v > 0

        def non_neg(v):
            return isinstance(v, (int, float)) and v >= 0 and math.isfinite(v)

        def optional(ok):
            return lambda v: v is None or ok(v)

        check("epochs", pos_int, "a positive integer")
        check("steps", optional(pos_int), "a positive integer")
        check("time_budget", optional(lambda v: non_neg(v) and v > 0),
              "a positive number of minutes")
        if self.time_budget is not None and self.steps is not None:
            raise ValueError("time-budget chooses the number of steps (whole epochs, at most "
                             "--epochs); give it or --steps, not both")
        check("batch_size", pos_int, "a positive integer")
        check("lr", lambda v: non_neg(v) and v > 0, "a positive number")
        check("min_lr", non_neg, ">= 0")
        if self.min_lr > self.lr:
            raise ValueError(f"min-lr ({self.min_lr}) must not be above lr ({self.lr}): the "
                             "cosine decays from lr down to min-lr")
        check("warmup_epochs", non_neg, ">= 0")
        check("warmup_steps", optional(lambda v: isinstance(v, int) and v >= 0), ">= 0")
        check("weight_decay", non_neg, ">= 0")
        check("label_smoothing", lambda v: non_neg(v) and v < 1, "in [0, 1)")
        check("clip_grad", non_neg, ">= 0 (0 turns clipping off)")
        check("unmasked_epochs", non_neg, ">= 0 (0 = patch dropout to the end)")
        check("mixup", non_neg, ">= 0 (0 turns mixup off)")
        check("cutmix", non_neg, ">= 0 (0 turns cutmix off)")
        self._check_levers(resnet)
        check("val_size", lambda v: isinstance(v, int) and v >= 0, "an integer >= 0")
        check("train_size", optional(pos_int), "a positive integer (None = every image)")
        check("eval_every", lambda v: isinstance(v, int) and v >= 0, "an integer >= 0")
        check("eval_batch_size", pos_int, "a positive integer")
        check("seed", lambda v: isinstance(v, int) and v >= 0, "an integer >= 0")
        check("threads", lambda v: isinstance(v, int) and v >= 0,
              "an integer >= 0 (0 = one per CPU core)")
        check("checkpoint_every", lambda v: isinstance(v, int) and v >= 0, "an integer >= 0")
        check("snapshots", lambda v: isinstance(v, int) and v >= 0, "an integer >= 0")
        check("max_steps", optional(pos_int), "a positive integer")
        check("time_limit", optional(lambda v: non_neg(v) and v > 0),
              "a positive number of minutes")
        check_run_counts(self, None if resnet else model_cfg)   # minivit/limits.py
        if self.objective != "classify":
            from minivit.io.pretrained import objective_config
            if not isinstance(self.objective_options, dict):
                raise ValueError("objective options must be a dict, "
                                 f"got {self.objective_options!r}")
            objective_config(self.objective, get_config(self.model, **self.model_overrides),
                             self.objective_options)
            if self.mixup or self.cutmix or self.init_from:
                raise ValueError("mixup, cutmix and init-from are for classification, not "
                                 f"{self.objective} pre-training")
        elif self.objective_options:
            raise ValueError("objective options are for pre-training (objective mae or mpp)")

    def _check_levers(self, resnet: bool) -> None:
        """ema, layer_decay, randaugment."""
        for name, ok, expected in (
                ("ema", lambda v: v == 0 or 0 < v < 1, "in (0, 1), or 0 (off)"),
                ("layer_decay", lambda v: 0 < v <= 1, "in (0, 1] (1 = off)")):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not ok(v):
                raise ValueError(f"{name.replace('_', '-')} must be {expected}, got {v!r}")
        if self.layer_decay != 1 and (resnet or self.objective != "classify"):
            raise ValueError("layer-decay scales the learning rate of a ViT classifier's "
                             "blocks; it is not for a ResNet or pre-training")
        if self.randaugment is not None:
            check_randaugment(self.randaugment)
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {', '.join(OPTIMIZERS)}, got "
                             f"{self.optimizer!r}")
        if self.optimizer == "airbench" and (self.model not in AIRBENCH_CONFIGS
                                             or self.time_budget is not None):
            raise ValueError("optimizer airbench trains the airbench net (--config airbench) "
                             "for a length given up front (--epochs or --steps, no time budget)")
        if isinstance(self.tta, bool) or self.tta not in TTA_LEVELS or (
                self.tta and self.objective != "classify"):
            raise ValueError(f"tta must be one of {TTA_LEVELS} (0 when pre-training), got "
                             f"{self.tta!r}")

    def _check_distillation(self, resnet: bool) -> None:
        if self.distill is not None and not self.teacher:
            raise ValueError("--distill needs --teacher (a trained run directory or model file)")
        if resnet and (self.objective != "classify" or self.init_from or self.teacher):
            raise ValueError(f"{self.model} is a convnet teacher: train it as a classifier "
                             "(no pre-training, --init-from or --teacher); the student of "
                             "--teacher is a ViT")
        if self.model_overrides.get("distilled") and not self.teacher:
            raise ValueError("a distilled ViT (distilled=true) learns from a teacher: give "
                             "--teacher RUN_OR_FILE")
        soft_options = (self.distill_tau, self.distill_lambda) != (
            TrainConfig.distill_tau, TrainConfig.distill_lambda)
        if soft_options and self.distill != "soft":
            raise ValueError("--distill-tau and --distill-lambda weigh soft distillation only; "
                             "give --teacher RUN_OR_FILE --distill soft (--distill hard uses "
                             "the teacher's argmax)")
        if not self.teacher:
            return
        if self.model_overrides.get("distilled") is not True:
            raise ValueError("the student of --teacher is a distilled ViT; do not set "
                             "distilled=false")
        if self.distill not in DISTILL_KINDS:
            raise ValueError(f"distill must be one of {', '.join(DISTILL_KINDS)}, got "
                             f"{self.distill!r}")
        if self.objective != "classify" or self.init_from:
            raise ValueError("--teacher trains a classifier from scratch; it cannot be combined "
                             "with pre-training or --init-from")
        tau, lam = self.distill_tau, self.distill_lambda
        if isinstance(tau, bool) or not isinstance(tau, (int, float)) or not (
                math.isfinite(tau) and tau > 0):
            raise ValueError(f"distill-tau must be a positive number, got {tau!r}")
        if isinstance(lam, bool) or not isinstance(lam, (int, float)) or not 0 <= lam <= 1:
            raise ValueError(f"distill-lambda must be in [0, 1], got {lam!r}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"unknown training config keys {unknown}")
        return cls(**d)


@dataclass(frozen=True)
class Warmup:
    """The warmup a run uses, and why (the start line says it)."""
    steps: int
    note: str = ""          # "" or what the rule changed, e.g. "a tenth of the run; ..."
    warning: str = ""       # "" or a one-line warning about an explicit --warmup-steps


def length_defaults(epochs, steps, time_budget, objective: str) -> tuple:
    """(epochs, time_budget) with the defaults filled in.  The length given wins: ``steps``,
    else ``epochs`` (exactly, or as a time budget's cap when ``time_budget`` is given too);
    a time budget alone trains at most BUDGET_MAX_EPOCHS; nothing given is the recipe's hour
    (RECIPE_TIME_BUDGET) for classification and PRETRAIN_EPOCHS for pre-training."""
    if epochs is None and steps is None and time_budget is None and objective == "classify":
        time_budget = RECIPE_TIME_BUDGET
    if epochs is None:
        epochs = PRETRAIN_EPOCHS if objective != "classify" and time_budget is None \
            else BUDGET_MAX_EPOCHS
    return epochs, time_budget


def choose_warmup(cfg: TrainConfig, steps_per_epoch: int, total: int) -> Warmup:
    """The warmup of a new run of ``total`` steps.

    An explicit ``warmup_steps`` is obeyed (up to the whole run; a warning when it covers the
    whole run).  A warmup from ``warmup_epochs`` is kept when it is at most a tenth of the
    run (the default recipe: 351 of 13,338 steps); a longer one would leave a short run
    (``--steps 200``, a couple of epochs) warming up all the way and never decaying the
    learning rate, so it is cut to a tenth of the run, at least 1 step."""
    from minivit.console import plural
    if cfg.warmup_steps is not None:
        warning = (f"--warmup-steps {cfg.warmup_steps} covers the whole run of "
                   f"{plural(total, 'step')}: the learning rate only rises and never decays"
                   if cfg.warmup_steps >= total else "")
        return Warmup(min(total, cfg.warmup_steps), warning=warning)
    by_epochs = round(cfg.warmup_epochs * steps_per_epoch)
    if 10 * by_epochs <= total:
        return Warmup(by_epochs)
    capped = max(1, total // 10)
    return Warmup(capped, note=f"a tenth of the run; {plural(cfg.warmup_epochs, 'epoch')} "
                               f"would be {by_epochs}")


def load_train_config(run_dir) -> TrainConfig:
    """The TrainConfig saved in RUN_DIR/config.json."""
    path = Path(run_dir) / CONFIG_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{run_dir} is not a training run directory ({CONFIG_FILE} "
                                "not found)")
    d = read_run_info(run_dir)
    if "train" not in d:
        raise ValueError(f"{Path(run_dir) / CONFIG_FILE} holds no 'train' section")
    return TrainConfig.from_dict({**OLD_RUN_DEFAULTS, **d["train"]})


__all__ = ["BUDGET_EVAL_EVERY", "BUDGET_MAX_EPOCHS", "DISTILL_KINDS", "DISTILL_MODEL_OVERRIDES",
           "OLD_RUN_DEFAULTS", "PRETRAIN_EPOCHS", "RECIPE_MODEL_OVERRIDES", "RECIPE_TIME_BUDGET",
           "SESSION_FIELDS", "TrainConfig", "Warmup", "choose_warmup", "length_defaults",
           "load_train_config"]
