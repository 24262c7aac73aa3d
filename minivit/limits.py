"""Resource limits checked before memory is spent: a model's parameters and a batch's
attention maps against the machine's memory.

    check_params_fit(shapes, itemsize, what)         before a fresh model is allocated
    check_attention_fits(cfg, batch, itemsize, ...)  before a run starts (TrainConfig.validate)
    check_run_counts(train_cfg, vit_cfg)             both batches, and the options that become
                                                     counts of steps (TrainConfig.validate)
    machine_memory() -> bytes or None                 physical memory, or a cgroup's limit

Each check is a lower bound of what the work needs: it refuses only what cannot fit, in one
line that names the total and the ceiling, instead of a MemoryError after gigabytes.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

from minivit.console import plural
from minivit.errors import UserError

TRAINING_COPIES = 4          # weights, gradients and AdamW's two moments
# Bounds on options that become counts: far above any real run, low enough that arithmetic
# on them stays finite (1e308 warmup epochs overflowed round()).
MAX_STEPS = 10**12
MAX_EPOCHS = 10**6
MAX_MINUTES = 525_600               # a year
CGROUP_LIMITS = ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes")


def machine_memory() -> int | None:
    """Bytes of memory this process may use: the physical memory, or a smaller cgroup limit;
    None where neither can be read."""
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        total = None
    for path in CGROUP_LIMITS:
        try:
            text = Path(path).read_text().strip()
        except OSError:
            continue
        if text.isdigit() and int(text) > 0:
            total = int(text) if total is None else min(total, int(text))
    return total


def gib(n: float) -> str:
    return f"{n / 2**30:,.1f} GiB"


def check_params_fit(shapes: dict, itemsize: int, what: str = "model") -> int:
    """The parameter count of ``shapes`` {name: shape}; UserError when training it (weights,
    gradients, optimizer state: TRAINING_COPIES copies) needs more than machine_memory()."""
    n = sum(math.prod(s) for s in shapes.values())
    need, have = n * itemsize * TRAINING_COPIES, machine_memory()
    if have is not None and need > have:
        raise UserError(f"the {what} would have {n:,} parameters: {gib(need)} for its weights, "
                        f"gradients and optimizer state, more than this machine's {gib(have)} "
                        "of memory; choose smaller sizes (embed_dim, depth, mlp_dim, "
                        "num_classes)")
    return n


def check_attention_fits(cfg, batch: int, itemsize: int, layers_kept: int, what: str) -> None:
    """UserError when the attention probabilities of one batch alone (batch x heads x T x T
    per layer, ``layers_kept`` layers at once: depth for a training step's cache, 1 for an
    evaluation) need more than machine_memory()."""
    tokens = cfg.num_patches + cfg.num_prefix_tokens
    need = batch * cfg.num_heads * tokens * tokens * itemsize * layers_kept
    have = machine_memory()
    if have is not None and need > have:
        raise UserError(f"{what} of {batch} images would need at least {gib(need)} for the "
                        f"attention maps ({tokens:,} tokens, "
                        f"{plural(cfg.num_heads, 'head')}, {plural(layers_kept, 'layer')}), "
                        f"more than this machine's {gib(have)} of memory; use a smaller batch, "
                        "larger patches or smaller images")


def check_run_counts(cfg, vit_cfg=None) -> None:
    """ValueError when an option of the TrainConfig ``cfg`` that becomes a count is beyond its
    bound; with ``vit_cfg`` (a ViT's config) UserError when a training or an evaluation
    batch's attention maps cannot fit (check_attention_fits)."""
    bounds = {"epochs": MAX_STEPS, "steps": MAX_STEPS, "warmup_steps": MAX_STEPS,
              "max_steps": MAX_STEPS, "warmup_epochs": MAX_EPOCHS,
              "unmasked_epochs": MAX_EPOCHS, "time_budget": MAX_MINUTES,
              "time_limit": MAX_MINUTES}
    for name, most in bounds.items():
        v = getattr(cfg, name)
        if v is not None and v > most:
            unit = " minutes (a year)" if most == MAX_MINUTES else ""
            raise ValueError(f"{name.replace('_', '-')} must be at most {most:g}{unit}, got "
                             f"{v!r}")
    if vit_cfg is not None:
        itemsize = 8 if cfg.dtype == "float64" else 4
        check_attention_fits(vit_cfg, cfg.batch_size, itemsize, vit_cfg.depth,
                             "a training batch")
        check_attention_fits(vit_cfg, cfg.eval_batch_size, itemsize, 1, "an evaluation batch")


__all__ = ["MAX_EPOCHS", "MAX_MINUTES", "MAX_STEPS", "TRAINING_COPIES", "check_attention_fits",
           "check_params_fit", "check_run_counts", "machine_memory"]
