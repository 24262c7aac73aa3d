"""What the tests share.

Command-line runs: ``cli`` (a fresh ``python -m minivit`` process), ``error_line`` (its one
line of refusal), ``train_args`` (a tiny run's flags), ``copy_run``.

Gradient-check helpers shared by the tests (float64, central differences).

``check_layer`` checks a forward/backward pair: for a random upstream gradient dout it compares
the hand-written backward with finite differences of f(x) = sum(forward(x) * dout).

Tiny training runs shared by the tests: a one-block ViT on synthetic CIFAR-10 files
(100 training images - 20 val = 80: 5 steps of 16 per epoch), each run about a second.
"""

import inspect
import json
import os
import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
from safetensors import safe_open
from safetensors.numpy import load_file

import minivit
import minivit.io.rundir as R
from minivit.backend import array_module
from minivit.data.synthetic import write_cifar10_like
from minivit.reference.numerical import TOL_FD64, numerical_gradient, rel_error, sample_indices
from minivit.training.config import TrainConfig


def randn(xp, *shape, seed=0, scale=1.0):
    """Deterministic standard-normal float64 array on backend xp (drawn on the host)."""
    return xp.asarray(np.random.default_rng(seed).standard_normal(shape) * scale)


def check_layer(forward, backward, inputs, names=None, seed=123, tol=TOL_FD64, h=1e-5):
    """forward(*inputs) -> (out, cache); backward(dout, cache) -> grad or tuple of grads, one
    per input (None entries skipped).  Returns {name: rel_error}; asserts each is below tol."""
    xp = array_module(inputs[0])
    out, cache = forward(*inputs)
    dout = randn(xp, *out.shape, seed=seed)
    grads = backward(dout, cache)
    if not isinstance(grads, tuple):
        grads = (grads,)
    names = names or [f"input{i}" for i in range(len(inputs))]
    errors = {}

    def f():
        return float((forward(*inputs)[0] * dout).sum())

    for name, x, g in zip(names, inputs, grads):
        if g is None:
            continue
        assert g.shape == x.shape, f"{name}: gradient shape {g.shape} != input shape {x.shape}"
        errors[name] = rel_error(g, numerical_gradient(f, x, h=h))
    bad = {k: v for k, v in errors.items() if not v < tol}
    assert not bad, f"gradient check failed (rel error > {tol}): {bad}"
    return errors



TINY = {"embed_dim": 16, "depth": 1, "num_heads": 2, "mlp_dim": 32}
TINY_FLAGS = [f for k, v in TINY.items() for f in ("--set", f"{k}={v}")]


def write_tiny_cifar(folder):
    return write_cifar10_like(folder, n_train_per_batch=20, n_test=30)


def make_cfg(data_dir, run_dir, threads=1, **kw):
    base = dict(model_overrides=dict(TINY), batch_size=16, val_size=20, epochs=2,
                data_dir=str(data_dir), run_dir=str(run_dir), progress=False, threads=threads)
    return TrainConfig(**{**base, **kw})


TIMING_KEYS = ("images_per_sec", "elapsed")


def two_thread_cfg(data_dir, run_dir, **kw):
    """make_cfg with two threads: the tests of resuming split every batch."""
    return make_cfg(data_dir, run_dir, **{"threads": 2, **kw})


def all_rngs_on(data_dir, run_dir, **kw):
    """Crop/flip, mixup and cutmix, dropout, drop-path and patch dropout: every generator
    is used."""
    overrides = dict(TINY, drop_rate=0.1, drop_path_rate=0.2, patch_drop_rate=0.25)
    return two_thread_cfg(data_dir, run_dir, model_overrides=overrides, mixup=0.8, cutmix=1.0,
                    label_smoothing=0.1, augment=True, **kw)


def cli_flags(data_dir, run_dir):
    return ["train", "--data-dir", str(data_dir), "--run-dir", str(run_dir), "--batch-size",
            "16", "--val-size", "20", "--epochs", "2", "--no-progress", "--threads", "2",
            *TINY_FLAGS]


def checkpoint(run_dir):
    """(tensors, metadata state) of RUN_DIR/checkpoint.safetensors."""
    path = str(run_dir / R.CHECKPOINT_FILE)
    with safe_open(path, framework="np") as f:
        state = json.loads(f.metadata()["state"])
    return load_file(path), state


def assert_same_run(a, b):
    """Parameters and optimizer state bit-identical, same RNG states, same metrics."""
    (ta, sa), (tb, sb) = checkpoint(a), checkpoint(b)
    assert sorted(ta) == sorted(tb)
    for k in ta:
        assert np.array_equal(ta[k], tb[k]), f"{k} differs"
    assert sa["step"] == sb["step"] and sa["rng"] == sb["rng"]
    ma, mb = R.read_metrics(a), R.read_metrics(b)
    strip = [[{k: v for k, v in r.items() if k not in TIMING_KEYS} for r in m] for m in (ma, mb)]
    assert strip[0] == strip[1]


def randomise(model, scale=0.3, seed=1):
    """Move every parameter away from its initial value (biases non-zero, norm weights != 1,
    a head that is not tiny), so that every gradient is O(1) and the check is not vacuous."""
    gen = np.random.default_rng(seed)
    for k, v in model.params.items():
        noise = minivit.to_device(gen.standard_normal(v.shape) * scale, v.dtype)
        model.params[k] = v + noise


def whole_model_check(model, images, labels, smoothing=0.0, train=False, samples=None):
    """Compare model.grads (and d images) with central differences; return the errors."""
    randomise(model)
    def forward():
        if train:                      # re-seed the dropout generator -> the same masks each time
            model.rng = minivit.backend.rng(5, minivit.backend.array_module(images))
        return model.forward(images, train=train)

    def loss():
        return minivit.cross_entropy(forward(), labels, smoothing)[0]

    _, dlogits = minivit.cross_entropy(forward(), labels, smoothing)
    dimages = model.backward(dlogits)
    errors = {}
    for name, x, g in [("images", images, dimages)] + [(k, model.params[k], model.grads[k])
                                                        for k in model.params]:
        assert g.shape == x.shape, name
        if samples is None:
            errors[name] = rel_error(g, numerical_gradient(loss, x))
        else:
            idx = sample_indices(x.size, samples)
            errors[name] = rel_error(g.reshape(-1)[idx], numerical_gradient(loss, x, indices=idx))
    bad = {k: v for k, v in errors.items() if not v < TOL_FD64}
    assert not bad, f"rel errors above {TOL_FD64}: {bad}"
    return errors


# ------------------------------------------------------------------ command-line runs
ROOT = Path(__file__).resolve().parents[1]


def cli(*args, env=None, timeout=120):
    """Run ``python -m minivit ARGS`` -> CompletedProcess (text)."""
    full = {**os.environ, "PYTHONPATH": str(ROOT), "OPENBLAS_NUM_THREADS": "1", **(env or {})}
    full.pop("MINIVIT_DEBUG", None)
    return subprocess.run([sys.executable, "-m", "minivit", *map(str, args)], env=full,
                          capture_output=True, text=True, timeout=timeout)


def error_line(result, code: int = 2) -> str:
    """The one line on stderr of a refused command (exit ``code``, no traceback)."""
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert result.returncode == code and len(lines) == 1 and "Traceback" not in result.stderr, \
        (result.returncode, result.stderr)
    return lines[0]


def train_args(data_dir, run_dir, *extra):
    return ["train", "--data-dir", data_dir, "--run-dir", run_dir, "--batch-size", "16",
            "--val-size", "20", "--epochs", "2", "--no-progress", "--threads", "1", *TINY_FLAGS,
            *extra]


def copy_run(base: Path, to: Path) -> Path:
    shutil.copytree(base, to)
    return to


# ------------------------------------------------------------------ the test run itself
# Every test that runs a training loop, MPI ranks or a fresh interpreter is `slow`, so that
# `pytest -m "not slow"` stays a quick loop: conftest.py marks a test when its own source or the
# source of a fixture it uses starts one (starts_training).
TRAINS = re.compile(r"\bT\.(train|resume)\(|(?<![\w.])(train|resume)\(|cli_flags\(|train_args\("
                    r"|\b(main|cli|run_cli)\(\[?\"(train|pretrain|linprobe)\"|mpiexec"
                    r"|(?<![\w.])(cli|run_cli)\(|subprocess\.run\(")


def starts_training(func) -> bool:
    try:
        return bool(TRAINS.search(inspect.getsource(func)))
    except (OSError, TypeError):        # a builtin or a fixture defined by a plugin
        return False


def skip_kind(reason: str) -> str:
    """A skip reason without its details: "Skipped: CuPy backend unavailable: no module" ->
    "CuPy backend unavailable"."""
    reason = reason.removeprefix("Skipped: ").strip()
    return reason.split(": ")[0]


def skip_summary(reasons) -> str:
    """"skipped: 240 CuPy backend unavailable, 1 real CIFAR-10 not found (...)" for a list of
    skip reasons, most frequent first ("" for none)."""
    counts = Counter(skip_kind(r) for r in reasons)
    if not counts:
        return ""
    return ("skipped: " + ", ".join(f"{n} {kind}" for kind, n in counts.most_common())
            + " (pytest -rs gives each test's reason)")
