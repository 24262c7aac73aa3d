"""Training a ViT on CIFAR-10: the loop, its checkpoints, and exact resumption.

    from minivit.train import TrainConfig, train, resume
    train(TrainConfig(model="cifar-nano", epochs=10, run_dir="runs/nano"))
    resume("runs/nano")                       # after Ctrl-C, --max-steps or --time-limit

One optimizer step:

    indices  = permutation(seed, epoch)[i*B:(i+1)*B]      host, pure function of (seed, epoch)
    x, y     = to_device(train_x[indices]), ...           uint8 pixels move, not floats
    x        = random_crop_flip(x, aug_rng)               on the device, seeded generator
    x        = normalize(x, mean, std)                    on the device
    x, t     = mix_batch(x, y, aug_rng, ...)              mixup / cutmix -> soft targets
    loss, g  = cross_entropy(model.forward(x, True), t)   dropout / drop-path use model.rng
    model.backward(g); clip_grad_norm; AdamW with warmup_cosine(step)

The loop trains an *objective* (``Classification`` below; MAE and masked patch prediction in
``minivit/pretrain.py``, ``objective="mae"`` / ``"mpp"``): something with a ``model``, a
``step`` (forward, loss, backward, clipping), an ``evaluate`` and a ``save_model``.

Everything random is either a pure function of (seed, epoch) or drawn from a generator whose
state the checkpoint stores, so ``resume`` continues bit for bit (tests/test_train.py trains
2N steps straight and N + resume + N, and compares every parameter exactly on NumPy).

Files in RUN_DIR:
    config.json              the TrainConfig, the model config, data set mean/std/class names
    checkpoint.safetensors   params, optimizer state, step, RNG states (one file, atomic)
    model.safetensors        the model alone (minivit.serialization), for eval / predict
    metrics.jsonl            one JSON line per epoch
    eval-val.json            val accuracy, per-class accuracy, confusion matrix (last epoch)
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import signal
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from minivit.backend import (array_module, get_backend, host_rng, host_xp, rng, synchronize,
                             to_device, to_numpy)
from minivit.config import CONFIGS, ViTConfig, get_config
from minivit.data.augment import mix_batch, random_crop_flip
from minivit.data.batches import iterate_batches, normalize
from minivit.data.cifar10 import load_cifar10
from minivit.layers.loss import cross_entropy
from minivit.model import VisionTransformer, create_model
from minivit.optim import AdamW, clip_grad_norm
from minivit.parallel import DataParallel, resolve_threads
from minivit.schedule import warmup_cosine
from minivit.serialization import (CHECKSUM_KEY, check_sha256, load as load_model,
                                   save as save_model, tensors_sha256)

CONFIG_FILE = "config.json"
CHECKPOINT_FILE = "checkpoint.safetensors"
MODEL_FILE = "model.safetensors"
METRICS_FILE = "metrics.jsonl"
EVAL_VAL_FILE = "eval-val.json"
CHECKPOINT_FORMAT = "minivit-train-checkpoint-v1"
DATA_STREAM, AUG_STREAM = 0, 1      # seeds [seed, stream, ...] keep the random streams apart
# Options that belong to one session, not to the run: a resume may change them.  data_dir is
# where this machine keeps CIFAR-10 (the run moves between machines), not which data it is.
SESSION_FIELDS = ("max_steps", "time_limit", "checkpoint_every", "progress", "threads",
                  "data_dir")


# The CPU recipe's changes to the model config (README, "Training results"): the head reads
# the mean of the patch tokens, and each training image drops half of its patch tokens
# (layers/patch_dropout.py), which halves a step's cost, so twice the epochs fit in 2 hours.
RECIPE_MODEL_OVERRIDES = {"pool": "mean", "patch_drop_rate": 0.5}
# Fields added after runs were recorded without them: what those runs did.
OLD_RUN_DEFAULTS = {"unmasked_epochs": 0.0}


class TrainingDiverged(RuntimeError):
    """The loss (or gradient norm) stopped being finite; the last good checkpoint is kept."""


@dataclass
class TrainConfig:
    # model
    model: str = "cifar-nano"               # a name from minivit.CONFIGS
    model_overrides: dict | None = None     # ViTConfig fields, e.g. {"drop_path_rate": 0.1};
                                            # None: RECIPE_MODEL_OVERRIDES to classify, {} to
                                            # pre-train. A dict replaces them all.
    dtype: str = "float32"
    # schedule: `steps` (if set) replaces `epochs`; warmup_steps (if set) replaces warmup_epochs
    epochs: int = 38                        # the CPU recipe: 60 min on 2 cores (README)
    steps: int | None = None
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
    # augmentation
    augment: bool = True                    # random crop (pad 4) + horizontal flip
    mixup: float = 0.0                      # Beta(alpha, alpha); 0 = off
    cutmix: float = 0.0                     # 0 = off; both on: one of the two per batch
    # data and evaluation
    data_dir: str | None = None             # None: $MINIVIT_DATA, then the cache
    download: bool = False
    val_size: int = 5000                    # last val_size training images
    eval_every: int = 1                     # epochs; 0 = no validation during training
    eval_test: bool = False                 # also evaluate on the test set each epoch
    eval_batch_size: int = 500
    seed: int = 0
    threads: int = 0                        # NumPy: split each batch over this many threads
                                            # (0 = one per CPU core; minivit.parallel)
    # run directory and session
    run_dir: str | None = None              # None: runs/<model>-<timestamp>
    checkpoint_every: int = 0               # steps; 0 = only at epoch ends and at the end
    max_steps: int | None = None            # stop (resumably) once this many steps are done
    time_limit: float | None = None         # minutes; stop (resumably) after this long
    progress: bool = True                   # tqdm progress bar
    # objective: "classify", or pre-training ("mae", "mpp"; labels unused, see minivit.pretrain)
    objective: str = "classify"
    objective_options: dict = field(default_factory=dict)  # MAEConfig / MPPConfig fields
    init_from: str | None = None            # classify: start from this checkpoint's encoder

    def __post_init__(self):
        if self.model_overrides is None:
            self.model_overrides = (dict(RECIPE_MODEL_OVERRIDES) if self.objective == "classify"
                                    else {})
        self.validate()

    def validate(self) -> None:
        """Raise ValueError with a one-line message for the first bad field."""
        if self.model not in CONFIGS:
            raise ValueError(f"unknown model config {self.model!r}; expected one of "
                             f"{', '.join(CONFIGS)}")
        fields = {f.name for f in dataclasses.fields(ViTConfig)}
        if not isinstance(self.model_overrides, dict) or not set(self.model_overrides) <= fields:
            raise ValueError(f"model overrides must be ViTConfig fields "
                             f"({', '.join(sorted(fields))}), got {self.model_overrides!r}")
        get_config(self.model, **self.model_overrides)        # checks names and values
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
        check("batch_size", pos_int, "a positive integer")
        check("lr", lambda v: non_neg(v) and v > 0, "a positive number")
        check("min_lr", non_neg, ">= 0")
        check("warmup_epochs", non_neg, ">= 0")
        check("warmup_steps", optional(lambda v: isinstance(v, int) and v >= 0), ">= 0")
        check("weight_decay", non_neg, ">= 0")
        check("label_smoothing", lambda v: non_neg(v) and v < 1, "in [0, 1)")
        check("clip_grad", non_neg, ">= 0 (0 turns clipping off)")
        check("unmasked_epochs", non_neg, ">= 0 (0 = patch dropout to the end)")
        check("mixup", non_neg, ">= 0 (0 turns mixup off)")
        check("cutmix", non_neg, ">= 0 (0 turns cutmix off)")
        check("val_size", lambda v: isinstance(v, int) and v >= 0, "an integer >= 0")
        check("eval_every", lambda v: isinstance(v, int) and v >= 0, "an integer >= 0")
        check("eval_batch_size", pos_int, "a positive integer")
        check("seed", lambda v: isinstance(v, int) and v >= 0, "an integer >= 0")
        check("threads", lambda v: isinstance(v, int) and v >= 0,
              "an integer >= 0 (0 = one per CPU core)")
        check("checkpoint_every", lambda v: isinstance(v, int) and v >= 0, "an integer >= 0")
        check("max_steps", optional(pos_int), "a positive integer")
        check("time_limit", optional(lambda v: non_neg(v) and v > 0),
              "a positive number of minutes")
        if self.objective != "classify":
            from minivit.pretrain import objective_config
            if not isinstance(self.objective_options, dict):
                raise ValueError(f"objective options must be a dict, got {self.objective_options!r}")
            objective_config(self.objective, get_config(self.model, **self.model_overrides),
                             self.objective_options)
            if self.mixup or self.cutmix or self.init_from:
                raise ValueError("mixup, cutmix and init-from are for classification, not "
                                 f"{self.objective} pre-training")
        elif self.objective_options:
            raise ValueError("objective options are for pre-training (objective mae or mpp)")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"unknown training config keys {unknown}")
        return cls(**d)


# --------------------------------------------------------------------------- small helpers

def atomic_write_bytes(path, data: bytes) -> None:
    """Write ``data`` to a temporary file next to ``path``, then os.replace it into place:
    readers see the old file or the new one, never half of one."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path, obj) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2) + "\n").encode())


def read_json(path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{path} is not valid JSON ({e})") from None


def read_metrics(run_dir) -> list[dict]:
    """The records of RUN_DIR/metrics.jsonl, one dict per epoch."""
    path = Path(run_dir) / METRICS_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found (is {run_dir} a training run directory?)")
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def epoch_order(seed: int, epoch: int, n: int):
    """The shuffled training order of one epoch: a pure function of (seed, epoch).

    Returns (permutation, the generator after drawing it)."""
    gen = host_rng([seed, DATA_STREAM, epoch])
    return gen.permutation(n), gen


def rng_state(gen, host: bool = True):
    """(JSON-able description, array or None) that ``set_rng_state`` restores exactly.

    NumPy: ``bit_generator.state`` (a dict of ints).  CuPy: the cuRAND state is one device
    byte array, ``bit_generator._state``: copied to the host (or, host=False, on the device)."""
    if isinstance(gen, host_xp().random.Generator):
        return {"kind": "numpy", "state": gen.bit_generator.state}, None
    bg = gen.bit_generator
    return ({"kind": "cupy", "bit_generator": type(bg).__name__},
            to_numpy(bg._state) if host else bg._state.copy())


def set_rng_state(gen, info: dict, array=None) -> None:
    if info["kind"] == "numpy" and isinstance(gen, host_xp().random.Generator):
        gen.bit_generator.state = info["state"]
        return
    if info["kind"] == "cupy" and not isinstance(gen, host_xp().random.Generator):
        state = gen.bit_generator._state
        if array is None or tuple(array.shape) != tuple(state.shape):
            raise ValueError("the checkpoint's CuPy random state does not fit this GPU (it "
                             "was saved on a GPU with a different number of multiprocessors)")
        state[...] = to_device(array)
        return
    raise ValueError(f"the checkpoint's random state is for {info['kind']}, but the active "
                     f"backend is {get_backend()}; resume with the same --backend")


# --------------------------------------------------------------------------- evaluation

def evaluate(model, x, y, mean, std, batch_size: int = 500, parallel=None) -> dict:
    """Accuracy, mean loss and confusion matrix of ``model`` on host uint8 images / labels.
    ``parallel``: a minivit.parallel.DataParallel of ``model`` (None: one thread).

    Returns {"loss": float, "acc": float, "n": int, "confusion": host int64 (K, K)} where
    confusion[true, predicted] counts images."""
    np = host_xp()
    parallel = parallel or DataParallel(model, 1)
    K = model.config.num_classes
    confusion = np.zeros((K, K), dtype=np.int64)
    loss_sum = 0.0
    for xb, yb in iterate_batches(x, y, batch_size):
        images = normalize(to_device(xb), mean, std, model.dtype)
        logits = parallel.forward(images)                  # no backward follows
        loss, _ = cross_entropy(logits, to_device(yb))
        loss_sum += loss * len(yb)
        np.add.at(confusion, (yb, to_numpy(logits.argmax(axis=1))), 1)
    n = len(y)
    return {"loss": loss_sum / max(n, 1), "acc": float(np.trace(confusion)) / max(n, 1),
            "n": n, "confusion": confusion}


def eval_report(result: dict, label_names, split: str) -> dict:
    """``evaluate``'s result as JSON: accuracy, per-class accuracy, confusion matrix."""
    conf = result["confusion"]
    per_class = {}
    for k, name in enumerate(label_names):
        total = int(conf[k].sum())
        per_class[name] = {"n": total, "correct": int(conf[k, k]),
                           "acc": float(conf[k, k]) / total if total else None}
    return {"split": split, "n": result["n"], "accuracy": result["acc"], "loss": result["loss"],
            "label_names": list(label_names), "per_class": per_class,
            "confusion": conf.tolist()}


# --------------------------------------------------------------------------- checkpoints

def save_checkpoint(path, model, optimizer, rngs: dict, state: dict) -> None:
    """One safetensors file: tensors ``model.*``, ``optim.*``, ``rng.*`` (CuPy states) and
    JSON metadata (step, counters, RNG states, optimizer step).  Written atomically."""
    from safetensors.numpy import save as safetensors_bytes
    np = host_xp()
    tensors = {f"model.{k}": np.ascontiguousarray(to_numpy(v)) for k, v in model.params.items()}
    opt_state = optimizer.state_dict()
    tensors.update({f"optim.{k}": np.ascontiguousarray(to_numpy(v))
                    for k, v in opt_state.items() if k != "step"})
    rng_info = {}
    for name, gen in rngs.items():
        rng_info[name], array = rng_state(gen)
        if array is not None:
            tensors[f"rng.{name}"] = np.ascontiguousarray(array)
    meta = {**state, "optimizer_step": int(opt_state["step"]), "rng": rng_info}
    data = safetensors_bytes(tensors, metadata={"format": CHECKPOINT_FORMAT,
                                                "state": json.dumps(meta),
                                                CHECKSUM_KEY: tensors_sha256(tensors)})
    atomic_write_bytes(path, data)


def load_checkpoint(path, model, optimizer, rngs: dict) -> dict:
    """Restore what ``save_checkpoint`` wrote into model, optimizer and generators;
    return the saved state dict (step, counters, ...)."""
    from safetensors import SafetensorError, safe_open
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: nothing to resume")
    try:
        with safe_open(str(path), framework="np") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError) as e:
        raise ValueError(f"{path} is not a readable checkpoint ({e})") from None
    if meta.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path} is not a minivit training checkpoint")
    check_sha256(path, tensors, meta)
    state = json.loads(meta["state"])
    params = {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}
    if set(params) != set(model.params):
        raise ValueError(f"{path}: checkpoint parameters do not match the model of config.json")
    for k, v in params.items():
        if tuple(v.shape) != tuple(model.params[k].shape):
            raise ValueError(f"{path}: {k} has shape {v.shape}, expected {model.params[k].shape}")
        model.params[k] = to_device(v, model.dtype)
    opt_state = {k[len("optim."):]: to_device(v) for k, v in tensors.items()
                 if k.startswith("optim.")}
    optimizer.load_state_dict({"step": state["optimizer_step"], **opt_state})
    for name, gen in rngs.items():
        set_rng_state(gen, state["rng"][name], tensors.get(f"rng.{name}"))
    return state


# --------------------------------------------------------------------------- trained models

def load_trained(path):
    """A trained model for eval / predict: ``path`` is a run directory, its model.safetensors
    or checkpoint.safetensors, or any model file ``minivit.serialization.load`` reads.

    Returns (model, run_dir or None, the run's config.json as a dict or {})."""
    path = Path(path)
    if path.is_dir():
        run_dir, model_path = path, path / MODEL_FILE
        if not model_path.is_file():
            raise FileNotFoundError(f"{path} is not a training run directory ({MODEL_FILE} "
                                    "not found)")
    elif path.is_file():
        run_dir = path.parent if (path.parent / CONFIG_FILE).is_file() else None
        model_path = path.parent / MODEL_FILE if path.name == CHECKPOINT_FILE else path
    else:
        raise FileNotFoundError(f"checkpoint {path} not found (expected a run directory or a "
                                "model file)")
    info = read_json(run_dir / CONFIG_FILE) if run_dir is not None else {}
    objective = info.get("train", {}).get("objective", "classify")
    if objective != "classify":
        raise ValueError(f"{path} is a {objective!r} pre-training run, not a classifier; "
                         f"fine-tune it first: minivit train --init-from {path}")
    model = load_model(model_path)
    return model, run_dir, info


# --------------------------------------------------------------------------- the loop

def default_run_dir(model_name: str) -> str:
    return str(Path("runs") / f"{model_name}-{time.strftime('%Y%m%d-%H%M%S')}")


def load_train_config(run_dir) -> TrainConfig:
    """The TrainConfig saved in RUN_DIR/config.json."""
    path = Path(run_dir) / CONFIG_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{run_dir} is not a training run directory ({CONFIG_FILE} "
                                "not found)")
    d = read_json(path)
    if "train" not in d:
        raise ValueError(f"{Path(run_dir) / CONFIG_FILE} holds no 'train' section")
    return TrainConfig.from_dict({**OLD_RUN_DEFAULTS, **d["train"]})


def resume(run_dir, **session) -> dict:
    """Continue the run in ``run_dir`` exactly where its checkpoint stopped.

    Only the session options (SESSION_FIELDS) may change; max_steps and time_limit are
    cleared unless given again."""
    bad = sorted(set(session) - set(SESSION_FIELDS))
    if bad:
        raise ValueError(f"resume can only change {', '.join(SESSION_FIELDS)}, not {bad}")
    cfg = load_train_config(run_dir)
    cfg = dataclasses.replace(cfg, **{"run_dir": str(run_dir), "max_steps": None,
                                      "time_limit": None, **session})
    return train(cfg, resume=True)


def train(cfg: TrainConfig, resume: bool = False) -> dict:
    """Train (or, with resume=True, continue) the run described by ``cfg``.

    Returns {"run_dir", "step", "total_steps", "status", "last"}: status is "done",
    "stopped" (max_steps / time_limit) or "interrupted" (Ctrl-C or SIGTERM); "last" is the last
    metrics record.  Raises TrainingDiverged on a non-finite loss."""
    cfg.validate()
    cfg = dataclasses.replace(cfg, threads=resolve_threads(cfg.threads))   # recorded resolved
    if cfg.init_from and not resume:                 # the architecture of the checkpoint
        from minivit.pretrain import with_pretrained_architecture
        cfg = with_pretrained_architecture(cfg)
    prog = "train" if cfg.objective == "classify" else "pretrain"
    run_dir = Path(cfg.run_dir or default_run_dir(
        cfg.model if prog == "train" else f"{cfg.objective}-{cfg.model}"))
    ckpt_path = run_dir / CHECKPOINT_FILE
    if resume and not ckpt_path.is_file():
        raise FileNotFoundError(f"cannot resume: {ckpt_path} not found")
    if not resume and (ckpt_path.exists() or (run_dir / METRICS_FILE).exists()):
        raise ValueError(f"{run_dir} already holds a run; continue it with --resume {run_dir} "
                         "or choose another --run-dir")

    # ---- data (uint8, on the host), model, optimizer, generators, schedule
    data = load_cifar10(cfg.data_dir, cfg.val_size, download=cfg.download)
    n_train, B = len(data.train_y), cfg.batch_size
    steps_per_epoch = n_train // B                   # the last partial batch is dropped
    if steps_per_epoch < 1:
        raise ValueError(f"batch size {B} is larger than the training set ({n_train} images)")
    total = cfg.steps or cfg.epochs * steps_per_epoch
    warmup = min(total, cfg.warmup_steps if cfg.warmup_steps is not None
                 else round(cfg.warmup_epochs * steps_per_epoch))
    objective = make_objective(cfg, data, resume)
    model = objective.model
    # unmasked tuning: the last `unmasked` steps see every patch token, as evaluation does
    unmasked = min(total, round(cfg.unmasked_epochs * steps_per_epoch)) \
        if getattr(model.config, "patch_drop_rate", 0) else 0
    optimizer = AdamW(model.params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    aug_rng = rng([cfg.seed, AUG_STREAM])            # on the device, like model.rng
    rngs = {"augment": aug_rng, "model": model.rng}

    def lr_at(step):
        return warmup_cosine(step, cfg.lr, total, warmup, cfg.min_lr)

    # st: everything about progress that a checkpoint must carry (JSON-able)
    st = {"step": 0, "epochs_logged": 0, "elapsed": 0.0, "last": None, "epoch_loss": 0.0,
          "epoch_steps": 0, "epoch_correct": 0, "epoch_time": 0.0}
    if resume:
        st.update(load_checkpoint(ckpt_path, model, optimizer, rngs))
        _trim_metrics(run_dir / METRICS_FILE, st["epochs_logged"])
    else:
        run_dir.mkdir(parents=True, exist_ok=True)
        write_json(run_dir / CONFIG_FILE, _run_info(cfg, run_dir, model, data, steps_per_epoch,
                                                    total, warmup, unmasked))
    elapsed_before, session_start = st["elapsed"], time.perf_counter()

    def epochs_done(step):          # epochs finished after `step` steps (the last may be short)
        return step // steps_per_epoch + (step == total and step % steps_per_epoch != 0)

    def save(kind="checkpoint"):
        _check_finite_params(model, st["step"])
        st.update(saved_step=st["step"], elapsed=elapsed_before + time.perf_counter()
                  - session_start)
        save_checkpoint(ckpt_path, model, optimizer, rngs, {**st, "kind": kind})
        objective.save_model(run_dir / MODEL_FILE)

    def end_of_epoch():
        """Evaluate, append the epoch's line to metrics.jsonl, checkpoint."""
        epoch, n_seen = st["epochs_logged"] + 1, st["epoch_steps"] * B
        rec = {"epoch": epoch, "step": st["step"],
               "train_loss": st["epoch_loss"] / max(st["epoch_steps"], 1),
               "train_acc": (st["epoch_correct"] / max(n_seen, 1)
                             if objective.has_accuracy else None),
               "val_loss": None, "val_acc": None, "test_loss": None, "test_acc": None,
               "lr": lr_at(st["step"] - 1), "images_per_sec": n_seen / max(st["epoch_time"], 1e-9)}
        if len(data.val_y) and cfg.eval_every and (epoch % cfg.eval_every == 0
                                                   or st["step"] == total):
            r = objective.evaluate(data.val_x, data.val_y, data.mean, data.std,
                                   cfg.eval_batch_size)
            rec["val_loss"], rec["val_acc"] = r["loss"], r["acc"]
            if "confusion" in r:
                write_json(run_dir / EVAL_VAL_FILE,
                           {"step": st["step"], **eval_report(r, data.label_names, "val")})
        if cfg.eval_test:
            r = objective.evaluate(data.test_x, data.test_y, data.mean, data.std,
                                   cfg.eval_batch_size)
            rec["test_loss"], rec["test_acc"] = r["loss"], r["acc"]
        rec["elapsed"] = elapsed_before + time.perf_counter() - session_start
        with open(run_dir / METRICS_FILE, "a") as f:
            f.write(json.dumps(rec) + "\n")
        st.update(epochs_logged=epoch, last=rec, epoch_loss=0.0, epoch_steps=0,
                  epoch_correct=0, epoch_time=0.0)
        save()
        say(_format_record(rec, total))

    bar = _progress_bar(cfg.progress, total, st["step"])
    say = bar.write if bar is not None else print
    say(f"minivit {prog}: {model!r}\n  {n_train} training images, {steps_per_epoch} steps of "
        f"{B} per epoch, {total} steps (warmup {warmup}), run dir {run_dir}"
        + (f", resuming at step {st['step']}" if resume else ""))

    perm, perm_epoch, snapshot, status = None, None, None, "done"
    restore_sigterm = _stop_on_sigterm()     # `kill PID` stops the run as Ctrl-C does
    try:
        while True:
            if st["epochs_logged"] < epochs_done(st["step"]):
                end_of_epoch()
            if st["step"] >= total:
                break
            if (cfg.max_steps and st["step"] >= cfg.max_steps) or (
                    cfg.time_limit and time.perf_counter() - session_start > 60 * cfg.time_limit):
                status = "stopped"
                break
            step = st["step"]
            epoch, i = divmod(step, steps_per_epoch)
            if perm_epoch != epoch:                  # the order is a function of (seed, epoch)
                perm, gen = epoch_order(cfg.seed, epoch, n_train)
                perm_epoch = epoch
                _check_data_order(st, epoch, gen)
            if unmasked:
                objective.set_patch_dropout(step < total - unmasked)
            t0 = time.perf_counter()
            snapshot = _snapshot(model, optimizer, rngs, st)   # Ctrl-C mid-step rolls back
            images, labels, targets, smoothing = prepare_batch(
                data, perm[i * B:(i + 1) * B], cfg, aug_rng, model.dtype)
            lr = lr_at(step)
            loss, correct, grad_norm = objective.step(images, labels, targets, smoothing,
                                                      cfg.clip_grad)
            if not (math.isfinite(loss) and math.isfinite(grad_norm)):
                what, value = ("loss", loss) if not math.isfinite(loss) \
                    else ("gradient norm", grad_norm)
                raise TrainingDiverged(_diverged_message(what, value, step, st, ckpt_path))
            optimizer.step(model.params, model.grads, lr=lr)
            synchronize()
            dt = time.perf_counter() - t0
            st.update(step=step + 1, epoch_loss=st["epoch_loss"] + loss,
                      epoch_steps=st["epoch_steps"] + 1,
                      epoch_correct=st["epoch_correct"] + (correct or 0),
                      epoch_time=st["epoch_time"] + dt)
            snapshot = None                                    # the step is complete
            if bar is not None:
                bar.set_postfix({"loss": f"{loss:.3f}",
                                 "acc": "-" if correct is None else f"{correct / B:.3f}",
                                 "lr": f"{lr:.2e}", "img/s": f"{B / dt:.0f}"}, refresh=False)
                bar.update(1)
            if cfg.checkpoint_every and st["step"] % cfg.checkpoint_every == 0:
                save()
    except KeyboardInterrupt:
        if snapshot is not None:
            _restore(snapshot, model, optimizer, rngs, st)
        status = "interrupted"
        save("interrupted")
    finally:
        restore_sigterm()
        objective.close()
        if bar is not None:
            bar.close()
    if st.get("saved_step") != st["step"]:
        save(status)
    if status == "done":
        print(f"minivit {prog}: done, {st['step']} steps; model saved to {run_dir / MODEL_FILE}")
    else:
        print(f"minivit {prog}: {status} at step {st['step']} of {total}; checkpoint saved to "
              f"{ckpt_path}. Continue with: minivit {prog} --resume {run_dir}")
    return {"run_dir": str(run_dir), "step": st["step"], "total_steps": total,
            "status": status, "last": st["last"]}


def prepare_batch(data, idx, cfg: TrainConfig, aug_rng, dtype):
    """Host indices -> (images, labels, targets, label_smoothing) on the device.

    uint8 pixels are moved, then cropped/flipped, normalised and (mixup/cutmix) mixed there.
    targets are the labels, or soft targets (B, K) that already include label smoothing."""
    images, labels = to_device(data.train_x[idx]), to_device(data.train_y[idx])
    if cfg.augment:
        images = random_crop_flip(images, aug_rng)
    images = normalize(images, data.mean, data.std, dtype)
    if cfg.mixup > 0 or cfg.cutmix > 0:
        images, targets = mix_batch(images, labels, aug_rng, data.num_classes, cfg.mixup,
                                    cfg.cutmix, smoothing=cfg.label_smoothing)
        return images, labels, targets, 0.0
    return images, labels, labels, cfg.label_smoothing


class Classification:
    """The supervised objective of ``minivit train``: cross-entropy on the class labels.
    With ``cfg.init_from`` (and not resuming) the encoder starts from a pre-trained
    checkpoint and the head from zero."""
    has_accuracy = True

    def __init__(self, cfg: TrainConfig, data, resume: bool = False):
        self.model = create_model(cfg.model, seed=cfg.seed, dtype=cfg.dtype,
                                  **{"num_classes": data.num_classes, **cfg.model_overrides})
        if cfg.init_from and not resume:
            from minivit.pretrain import init_from_pretrained
            init_from_pretrained(self.model, cfg.init_from)
        self.config = self.model.config                  # the run's model config, as saved
        self.unmasked_config = self.config.replace(patch_drop_rate=0.0)
        self.parallel = DataParallel(self.model, resolve_threads(cfg.threads))

    def set_patch_dropout(self, on: bool):
        """Patch dropout as configured (on), or off for the unmasked-tuning steps."""
        self.model.config = self.config if on else self.unmasked_config

    def step(self, images, labels, targets, smoothing, clip_grad):
        return train_step(self.model, images, labels, targets, smoothing, clip_grad,
                          self.parallel)

    def evaluate(self, x, y, mean, std, batch_size=500):
        return evaluate(self.model, x, y, mean, std, batch_size, self.parallel)

    def close(self):
        self.parallel.close()

    def save_model(self, path):
        # the run's config, whatever the phase: a view of the same parameters
        save_model(VisionTransformer(self.config, self.model.params), path)


def make_objective(cfg: TrainConfig, data, resume: bool = False):
    """Classification, or a pre-training objective of minivit.pretrain."""
    if cfg.objective == "classify":
        return Classification(cfg, data, resume)
    from minivit.pretrain import Pretraining
    return Pretraining(cfg, data)


def train_step(model, images, labels, targets, smoothing, clip_grad, parallel=None):
    """Forward, loss, backward, clipping: leaves the gradients to apply in ``model.grads``.
    ``parallel``: a minivit.parallel.DataParallel of ``model`` that splits the batch over
    threads (None: one thread).

    Returns (loss, number of correct predictions, gradient norm before clipping or 0)."""
    parallel = parallel or DataParallel(model, 1)
    # a diverging run overflows; the caller checks the loss and gradient norm instead
    with host_xp().errstate(over="ignore", invalid="ignore", divide="ignore"):
        loss, logits = parallel.forward_backward(images, targets, smoothing)
        if not math.isfinite(loss):
            return loss, 0, 0.0
    norm = 0.0
    if clip_grad:
        model.grads, norm = clip_grad_norm(model.grads, clip_grad)
    correct = int((logits.argmax(axis=1) == labels).sum())
    return loss, correct, norm


def _run_info(cfg, run_dir, model, data, steps_per_epoch, total, warmup, unmasked) -> dict:
    """What config.json holds: the TrainConfig, the model config, and what ``minivit
    predict`` needs of the data (mean, std, class names)."""
    return {"train": {**cfg.to_dict(), "run_dir": str(run_dir)},
            "model": model.config.to_dict(),
            "data": {"path": str(data.path), "mean": [float(v) for v in data.mean],
                     "std": [float(v) for v in data.std], "label_names": list(data.label_names),
                     "n_train": len(data.train_y), "n_val": len(data.val_y),
                     "n_test": len(data.test_y)},
            "steps_per_epoch": steps_per_epoch, "total_steps": total, "warmup_steps": warmup,
            "unmasked_steps": unmasked,
            "backend": get_backend(), "num_params": model.num_params()}


# --------------------------------------------------------------------------- loop helpers

def _stop_on_sigterm():
    """Make SIGTERM raise KeyboardInterrupt, so that ``kill PID``, a job scheduler's stop or a
    container shutdown saves a checkpoint as Ctrl-C does.  (A job started with ``&`` from a
    script ignores SIGINT, so ``kill -INT`` cannot reach it; SIGTERM can.)  Returns a function
    that puts the previous handler back.  Only the main thread may set handlers; elsewhere
    this does nothing."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None

    def interrupt(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, interrupt)
    if previous is None:                             # set outside Python: the default
        previous = signal.SIG_DFL
    return lambda: signal.signal(signal.SIGTERM, previous)


def _snapshot(model, optimizer, rngs, st):
    """Everything one step changes. The model and optimizer replace their arrays, never
    modify them in place, so shallow copies of the dicts are enough."""
    return (dict(model.params), dict(optimizer.state), optimizer.step_count,
            {name: rng_state(gen, host=False) for name, gen in rngs.items()}, dict(st))


def _restore(snapshot, model, optimizer, rngs, st):
    params, opt_state, opt_step, states, progress = snapshot
    model.params.update(params)
    optimizer.state, optimizer.step_count = opt_state, opt_step
    st.clear()
    st.update(progress)
    for name, gen in rngs.items():
        info, array = states[name]
        set_rng_state(gen, info, array)


def _check_data_order(st, epoch, gen):
    """Record the data-order generator of this epoch; on resume, check it is the same."""
    info, _ = rng_state(gen)
    saved = st.get("data_rng")
    if saved is not None and saved["epoch"] == epoch and saved["state"] != info["state"]:
        raise ValueError("the training data differ from those the checkpoint was trained on "
                         "(the data order does not match); resume with the same data")
    st["data_rng"] = {"epoch": epoch, "state": info["state"]}


def _check_finite_params(model, step):
    xp = array_module(model.params["cls_token"])
    for name, p in model.params.items():
        if not bool(xp.isfinite(p).all()):
            raise TrainingDiverged(f"parameter {name} is not finite after step {step}; not "
                                   "saving it over the last good checkpoint")


def _diverged_message(what, value, step, st, ckpt_path):
    saved = st.get("saved_step")
    kept = (f"the last good checkpoint {ckpt_path} (step {saved}) is kept" if saved is not None
            else "no checkpoint had been saved yet")
    return (f"{what} is {value} at step {step + 1} (epoch {st['epochs_logged'] + 1}); training "
            f"stopped, {kept}. Try a lower --lr or --clip-grad.")


def _trim_metrics(path, epochs_logged):
    """Drop metrics lines written after the checkpoint we resume from (a crash between
    writing the line and the checkpoint would otherwise repeat an epoch)."""
    if path.is_file():
        lines = [ln for ln in path.read_text().splitlines()
                 if ln.strip() and json.loads(ln)["epoch"] <= epochs_logged]
        atomic_write_bytes(path, "".join(ln + "\n" for ln in lines).encode())


def _progress_bar(enabled, total, initial):
    if not enabled:
        return None
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(total=total, initial=initial, unit="step", dynamic_ncols=True)


def _format_record(rec, total):
    parts = [f"epoch {rec['epoch']:>3}", f"step {rec['step']}/{total}"]
    for split in ("train", "val", "test"):
        if rec[f"{split}_loss"] is not None:
            acc = rec[f"{split}_acc"]
            parts.append(f"{split} loss {rec[f'{split}_loss']:.4f}"
                         + ("" if acc is None else f" acc {100 * acc:.2f}%"))
    return "  ".join(parts + [f"{rec['images_per_sec']:.0f} img/s"])


__all__ = ["TrainConfig", "TrainingDiverged", "train", "resume", "evaluate", "eval_report",
           "load_train_config", "read_metrics", "save_checkpoint", "load_checkpoint"]
