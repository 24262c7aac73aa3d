"""One session of a training run: what it starts from and what it prints.

``Session`` builds everything the loop (minivit/training/loop.py) works on: the data, the
objective, the schedule, the optimizer, the progress, the time budget; it prints the start
line, keeps the progress bar, and prints the final line.  The loop adds the generators and
the steps.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

from minivit.console import plural, progress_bar, silent
from minivit.data.cifar10 import load_cifar10
from minivit.io.files import write_json
from minivit.io.rundir import (
    CHECKPOINT_FILE,
    CONFIG_FILE,
    METRICS_FILE,
    MODEL_FILE,
    StepsLog,
    check_new_run_dir,
    check_run_dir_path,
    check_run_files,
    default_run_dir,
    remove_temp_files,
    run_info,
    run_lock,
    trim_metrics,
)
from minivit.parallel.ranks import agreed_seconds, check_rank_split, fingerprint, shared_run_dir
from minivit.training.airbench_recipe import AirbenchOptimizer
from minivit.training.checkpoint import Progress, load_checkpoint
from minivit.training.config import SESSION_FIELDS, choose_warmup
from minivit.training.ema import WithEMA
from minivit.training.guards import recorded_warmup
from minivit.training.layer_decay import layer_decay_scales
from minivit.training.objectives import make_objective
from minivit.training.optim import AdamW
from minivit.training.schedule import Schedule, unmasked_steps
from minivit.training.step_window import StepWindow, read_every_for_backend
from minivit.training.time_budget import TimeBudget, run_shape


def check_run_dir(cfg, ranks, resume: bool):
    """``cfg`` with its run directory (a new default one named by rank 0's clock), checked:
    a path that can be a run directory; a new run never in a folder of someone else's files."""
    if not cfg.run_dir:
        name = cfg.model if cfg.objective == "classify" else f"{cfg.objective}-{cfg.model}"
        cfg = dataclasses.replace(cfg, run_dir=shared_run_dir(ranks, default_run_dir(name)))
    check_run_dir_path(Path(cfg.run_dir))
    if not resume and ranks.is_root:
        check_new_run_dir(cfg.run_dir)
    return cfg


def lock_run_dir(stack, cfg, ranks, resume: bool) -> None:
    """Rank 0 locks the run directory for the ExitStack's life (a second trainer is refused),
    removes what writes cut short by kill -9 left, and refuses symbolic links where the run
    writes."""
    if ranks.is_root and stack.enter_context(
            run_lock(cfg.run_dir, create=not resume)) is not None:
        remove_temp_files(cfg.run_dir)
        check_run_files(cfg.run_dir)


class Session:
    """The state of one session of a run; rank 0 (``root``) alone writes and prints."""

    def __init__(self, cfg, resume: bool, ranks):
        self.cfg, self.resume, self.ranks = cfg, resume, ranks
        self.root = ranks.is_root
        self.prog = "train" if cfg.objective == "classify" else "pretrain"
        self.run_dir = Path(cfg.run_dir)
        self.ckpt_path = self.run_dir / CHECKPOINT_FILE
        if resume and not self.ckpt_path.is_file():
            raise FileNotFoundError(f"cannot resume: {self.ckpt_path} not found")
        if not resume and (self.ckpt_path.exists() or (self.run_dir / METRICS_FILE).exists()):
            raise ValueError(f"{self.run_dir} already holds a run; continue it with --resume "
                             f"{self.run_dir} or choose another --run-dir")
        self.data = data = load_cifar10(cfg.data_dir, cfg.val_size, download=cfg.download,
                                        train_size=cfg.train_size)
        n_train, B = len(data.train_y), cfg.batch_size
        self.steps_per_epoch = per_epoch = n_train // B    # the last partial batch dropped
        if per_epoch < 1:
            raise ValueError(f"batch size {B} is larger than the training set ({n_train} images)")
        if ranks.size > 1:
            check_rank_split(ranks, cfg)
        self.objective = make_objective(cfg, data, resume, ranks)
        self.model = model = self.objective.model
        self.unmasked_tail = round(cfg.unmasked_epochs * per_epoch) \
            if getattr(model.config, "patch_drop_rate", 0) else 0
        self.budget = TimeBudget(cfg.time_budget, self.run_dir,
                                 run_shape(cfg, per_epoch, self.unmasked_tail, data),
                                 agreed_seconds(ranks, time.perf_counter),
                                 agreed_seconds(ranks, self.elapsed), self.root, resume) \
            if cfg.time_budget else None
        self.warmup = None
        plan = self.budget and self.budget.plan
        total = plan.steps if plan else None if cfg.time_budget \
            else cfg.steps or cfg.epochs * per_epoch
        self.schedule = self.fixed_schedule(total, resume) if total else None  # sets warmup
        if cfg.optimizer == "airbench":
            self.optimizer = AirbenchOptimizer(model, per_epoch, total, cfg.lr,
                                               cfg.weight_decay)
        else:
            self.optimizer = AdamW(model.params, lr=cfg.lr, weight_decay=cfg.weight_decay,
                                   lr_scale=layer_decay_scales(model.params, model.config.depth,
                                                               cfg.layer_decay)
                                   if cfg.layer_decay != 1 else None)
        if cfg.ema:                                  # evaluates and saves the average
            self.optimizer = WithEMA(self.optimizer, model, cfg.ema)
        self.rngs = {}                               # the loop's generators, by name
        self.progress = Progress()
        self.window = StepWindow(read_every_for_backend())   # steps not read back yet
        self.bar, self.say = None, print if self.root else silent
        self.elapsed_before, self.session_start = 0.0, time.perf_counter()

    def restore_progress(self) -> None:
        """A resumed run: the checkpoint's state (``rngs`` set); a new one: config.json."""
        if self.resume:
            self.progress = Progress.from_state(
                load_checkpoint(self.ckpt_path, self.model, self.optimizer, self.rngs))
            if self.root:
                trim_metrics(self.run_dir, self.progress.epochs_logged)
                StepsLog.trim(self.run_dir, self.progress.step)
        elif self.root:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            s = self.schedule
            write_json(self.run_dir / CONFIG_FILE, run_info(
                self.cfg, self.run_dir, self.model, self.data, self.steps_per_epoch,
                *((s.total, s.warmup, s.unmasked) if s else (None, None, None))))
        self.elapsed_before, self.session_start = self.progress.elapsed, time.perf_counter()

    def fingerprint(self) -> dict:
        fields = {k: v for k, v in self.cfg.to_dict().items() if k not in SESSION_FIELDS}
        return fingerprint(fields, self.data)

    def elapsed(self) -> float:
        return self.elapsed_before + time.perf_counter() - self.session_start

    def fixed_schedule(self, total: int, recorded: bool) -> Schedule:
        """The schedule of ``total`` steps; recorded: with the warmup config.json records."""
        cfg, per_epoch = self.cfg, self.steps_per_epoch
        self.warmup = recorded_warmup(self.run_dir, cfg, per_epoch, total) if recorded \
            else choose_warmup(cfg, per_epoch, total)
        unmasked = unmasked_steps(self.unmasked_tail, total, per_epoch)
        return Schedule(per_epoch, total, self.warmup.steps, unmasked, cfg.lr, cfg.min_lr,
                        "triangle" if cfg.optimizer == "airbench" else "cosine")

    # -- what the run prints
    def open_bar(self) -> None:
        """The progress bar (when wanted) and the start line: what the run will do."""
        cfg, sched, p = self.cfg, self.schedule, self.progress
        self.bar = progress_bar(cfg.progress and self.root, sched.total, p.step)
        if self.bar is not None:
            self.say = self.bar.write
        warmup = plural(sched.warmup, "step") + (f" ({self.warmup.note})"
                                                 if self.warmup.note else "")
        unmasked = (f", the last {plural(sched.unmasked, 'step')} without patch dropout"
                    if sched.unmasked else "")
        plan = self.budget and self.budget.plan
        self.say(f"minivit {self.prog}: {self.model!r}\n  {len(self.data.train_y)} training "
                 f"images, {plural(sched.steps_per_epoch, 'step')} of {cfg.batch_size} per "
                 f"epoch, {plural(sched.total, 'step')} (warmup {warmup}){unmasked}, run dir "
                 f"{self.run_dir}" + (f", resuming at step {p.step}" if self.resume else "")
                 + f"\n  {self.objective.summary()}" + (f"\n  {plan.line()}" if plan else ""))

    def close_bar(self) -> None:
        if self.bar is not None:
            self.bar.close()

    def finish(self, status: str) -> dict:
        """The final line; the run's summary."""
        p, total = self.progress, self.schedule and self.schedule.total
        say = print if self.root else silent
        if status == "done":
            budget = self.budget.finish(self.elapsed()) if self.budget else ""
            say(f"minivit {self.prog}: done, {plural(p.step, 'step')}; model saved to "
                f"{self.run_dir / MODEL_FILE}{budget}")
        else:
            where = f"at step {p.step} of {total}" if total else "while timing the steps"
            say(f"minivit {self.prog}: {status} {where}; checkpoint saved to "
                f"{self.ckpt_path}. Continue with: minivit {self.prog} --resume {self.run_dir}")
        return {"run_dir": str(self.run_dir), "step": p.step, "total_steps": total,
                "status": status, "last": p.last}


__all__ = ["Session"]
