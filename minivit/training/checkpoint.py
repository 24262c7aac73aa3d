"""A training checkpoint: parameters, optimizer state, random generators and the loop's
progress, in one .safetensors file written atomically; and the snapshot a step rolls back to.

    save_checkpoint(path, model, optimizer, rngs, state)      state: JSON-able progress
    state = load_checkpoint(path, model, optimizer, rngs)     restores the first three
    progress = Progress.from_state(state)                     the loop's counters
    snap = Snapshot.take(model, optimizer, rngs, progress)    before a step
    progress = snap.restore(model, optimizer, rngs)           Ctrl-C in the middle of it
    restore = stop_on_sigterm()                               SIGTERM acts as Ctrl-C

The file holds tensors ``model.*``, ``optim.*`` and ``rng.*`` (CuPy generator states) and the
metadata {"format": CHECKPOINT_FORMAT, "state": JSON of {**state, "optimizer_step", "rng"}}
plus the checksum of minivit.io.files (which covers the state too).
"""

from __future__ import annotations

import dataclasses
import json
import signal
import threading
from dataclasses import dataclass
from pathlib import Path

from minivit.backend import get_backend, host_xp, to_device, to_numpy
from minivit.io.files import (
    atomic_write_bytes,
    check_sha256,
    naming_write_errors,
    safetensors_bytes,
)
from minivit.io.json_files import parse_json
from minivit.io.run_schema import CHECKPOINT_STATE

CHECKPOINT_FORMAT = "minivit-train-checkpoint-v1"


# ---------------------------------------------------------------------------- generators
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


# ---------------------------------------------------------------------------- the file
def save_checkpoint(path, model, optimizer, rngs: dict, state: dict) -> None:
    """One safetensors file: tensors ``model.*``, ``optim.*``, ``rng.*`` (CuPy states) and
    JSON metadata (step, counters, RNG states, optimizer step).  Written atomically."""
    np = host_xp()
    tensors = {f"model.{k}": np.ascontiguousarray(to_numpy(v)) for k, v in model.params.items()}
    tensors.update({f"buffer.{k}": np.ascontiguousarray(to_numpy(v))       # BatchNorm stats
                    for k, v in getattr(model, "buffers", {}).items()})
    opt_state = optimizer.state_dict()
    tensors.update({f"optim.{k}": np.ascontiguousarray(to_numpy(v))
                    for k, v in opt_state.items() if k != "step"})
    rng_info = {}
    for name, gen in rngs.items():
        rng_info[name], array = rng_state(gen)
        if array is not None:
            tensors[f"rng.{name}"] = np.ascontiguousarray(array)
    meta = {**state, "optimizer_step": int(opt_state["step"]), "rng": rng_info}
    data = safetensors_bytes(tensors, {"format": CHECKPOINT_FORMAT, "state": json.dumps(meta)})
    with naming_write_errors(path):
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
    try:
        state = parse_json(meta.get("state") or "null")
        if not isinstance(state, dict) or not isinstance(state.get("rng"), dict):
            raise ValueError(f"a JSON object with the run's progress, got {str(state)[:40]}")
        CHECKPOINT_STATE.check(state, "state")
        state["optimizer_step"] = int(state["optimizer_step"])
    except (ValueError, KeyError, TypeError) as e:
        raise ValueError(f"{path}: the checkpoint's state is damaged ({type(e).__name__}: {e}); "
                         "use another copy or start a new run") from None
    params = {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}
    if set(params) != set(model.params):
        raise ValueError(f"{path}: checkpoint parameters do not match the model of config.json")
    for k, v in params.items():
        if tuple(v.shape) != tuple(model.params[k].shape):
            raise ValueError(f"{path}: {k} has shape {v.shape}, expected {model.params[k].shape}")
        model.params[k] = to_device(v, model.dtype)       # into the parameter buffer
    buffers = getattr(model, "buffers", {})
    saved = {k[len("buffer."):]: v for k, v in tensors.items() if k.startswith("buffer.")}
    if set(saved) != set(buffers):
        raise ValueError(f"{path}: checkpoint buffers do not match the model of config.json")
    for k, v in saved.items():                  # 0-d buffers are stored with shape (1,)
        if v.size != buffers[k].size:
            raise ValueError(f"{path}: {k} has shape {v.shape}, expected {buffers[k].shape}")
        buffers[k] = to_device(v.reshape(buffers[k].shape), buffers[k].dtype)
    opt_state = {k[len("optim."):]: to_device(v) for k, v in tensors.items()
                 if k.startswith("optim.")}
    optimizer.load_state_dict({"step": state["optimizer_step"], **opt_state})
    for name, gen in rngs.items():
        if name not in state["rng"]:
            raise ValueError(f"{path} holds no state of the {name!r} random generator (it was "
                             "written by an older minivit); start the run again")
        set_rng_state(gen, state["rng"][name], tensors.get(f"rng.{name}"))
    return state


# ---------------------------------------------------------------------------- progress, rollback
@dataclass
class Progress:
    """How far the run is: the "state" a checkpoint carries (as JSON, these keys)."""
    step: int = 0
    epochs_logged: int = 0
    elapsed: float = 0.0                # seconds trained, all sessions, at the last save
    last: dict | None = None            # the last metrics record
    epoch_loss: float = 0.0             # sums over the steps of the epoch in progress
    epoch_steps: int = 0
    epoch_correct: float = 0
    epoch_time: float = 0.0
    data_rng: dict | None = None        # {"epoch", "state"}: the data order generator
    saved_step: int | None = None       # the step of the last checkpoint

    def to_state(self) -> dict:
        return {k: v for k, v in dataclasses.asdict(self).items()
                if v is not None or k not in ("data_rng", "saved_step")}

    @classmethod
    def from_state(cls, state: dict) -> "Progress":
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in state.items() if k in names})


@dataclass(frozen=True)
class Snapshot:
    """Everything one step changes, taken before it: copies of the parameter buffer and of
    the optimizer's state (both are updated in place), the generators and the progress."""
    flat_params: object
    optimizer_state: object     # optimizer.snapshot()
    rng_states: dict            # name -> (description, device array or None)
    progress: Progress          # a copy
    buffers: dict | None = None # the model's buffers (BatchNorm statistics), if it has any

    @classmethod
    def take(cls, model, optimizer, rngs: dict, progress) -> "Snapshot":
        return cls(model.flat_params.copy(), optimizer.snapshot(),
                   {name: rng_state(gen, host=False) for name, gen in rngs.items()},
                   dataclasses.replace(progress),
                   dict(model.buffers) if hasattr(model, "buffers") else None)

    def restore(self, model, optimizer, rngs: dict):
        """Put model, optimizer and generators back; returns the progress as it was."""
        model.flat_params[...] = self.flat_params
        optimizer.restore(self.optimizer_state)
        if self.buffers is not None:
            model.buffers.update(self.buffers)
        for name, gen in rngs.items():
            info, array = self.rng_states[name]
            set_rng_state(gen, info, array)
        return dataclasses.replace(self.progress)


def stop_on_sigterm():
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


__all__ = ["CHECKPOINT_FORMAT", "Progress", "Snapshot", "load_checkpoint", "rng_state",
           "save_checkpoint", "set_rng_state", "stop_on_sigterm"]
