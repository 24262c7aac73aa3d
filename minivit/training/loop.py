"""Training a ViT on CIFAR-10: the loop, with exact resumption.

    from minivit.training import TrainConfig, train, resume
    train(TrainConfig(model="cifar-nano", epochs=10, run_dir="runs/nano"))
    resume("runs/nano")                       # after Ctrl-C, --max-steps or --time-limit

One optimizer step is ``_Run.step``: batch -> objective step (forward, loss, backward, the
gradient summed over threads and ranks) -> clip -> AdamW.  The objective
(minivit/training/objectives/) is classification, distillation, MAE or masked patch
prediction; the files of a run directory are minivit/io/rundir.py's; the checkpoint
(params, optimizer state, generators, ``Progress``) is minivit/training/checkpoint.py.  A
``time_budget`` run fixes its length before the first step and once more after the first
epoch (minivit/training/time_budget.py).

Everything random is a pure function of (seed, epoch) or drawn from a generator whose state
the checkpoint stores, so ``resume`` continues bit for bit (tests/training/test_loop.py).
"""

from __future__ import annotations

import dataclasses
import math
import time
import warnings
from contextlib import ExitStack

from minivit.backend import host_rng, rng
from minivit.io.rundir import MODEL_FILE, StepsLog, append_metrics, format_record
from minivit.parallel.mpi import Ranks, connect
from minivit.parallel.ranks import (
    NoStepsLog,
    Stop,
    check_same_params,
    start_together,
    sum_step_values,
)
from minivit.parallel.threads import resolve_threads
from minivit.training.batch import prepare_batch
from minivit.training.checkpoint import Snapshot, save_checkpoint, stop_on_sigterm
from minivit.training.config import SESSION_FIELDS, TrainConfig, load_train_config
from minivit.training.ema import evaluation_weights
from minivit.training.epoch import epoch_record, evaluate_epoch, val_report_writer
from minivit.training.guards import (
    TrainingDiverged,
    check_data_order,
    check_finite_params,
    diverged_message,
)
from minivit.training.objectives import errors_ignored
from minivit.training.optim import clip_flat_grads
from minivit.training.schedule import Schedule, epoch_order
from minivit.training.session import Session, check_run_dir, lock_run_dir
from minivit.training.snapshots import snapshot_epochs, snapshot_path
from minivit.training.time_budget import eval_probe

AUG_STREAM = 1                      # seeds [seed, stream, ...] keep the random streams apart
                                    # (DATA_STREAM = 0: minivit/training/schedule.py)
MIX_STREAM = 4                      # the host generator of the mixup / cutmix scalars


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
    metrics record.  Raises TrainingDiverged on a non-finite loss, TimeBudgetTooShort when
    not one epoch fits in cfg.time_budget."""
    cfg.validate()
    cfg = dataclasses.replace(cfg, threads=resolve_threads(cfg.threads))   # recorded resolved
    if cfg.init_from and not resume:                 # the architecture of the checkpoint
        from minivit.io.pretrained import with_pretrained_architecture
        cfg = with_pretrained_architecture(cfg)
    ranks = connect()                                # several under mpirun (parallel/mpi.py)
    cfg = check_run_dir(cfg, ranks, resume)          # before the data take seconds to load
    with ExitStack() as stack:

        def start():                                 # rank 0 alone locks and writes
            lock_run_dir(stack, cfg, ranks, resume)
            return _Run(cfg, resume, ranks)
        return start_together(ranks, start).loop()


class _Run(Session):
    """One session of a run (its state: minivit/training/session.py) and its loop."""

    def __init__(self, cfg: TrainConfig, resume: bool, ranks: Ranks | None = None):
        super().__init__(cfg, resume, ranks or Ranks())
        self.aug_rng = rng([cfg.seed, AUG_STREAM])   # on the device, like model.rng
        self.rngs = {"augment": self.aug_rng, "model": self.model.rng}
        self.mix_rng = None
        if cfg.mixup > 0 or cfg.cutmix > 0:          # scalars drawn on the host: no read back
            self.mix_rng = self.rngs["mix"] = host_rng([cfg.seed, MIX_STREAM])
        self.restore_progress()
        self.steps_log = StepsLog(self.run_dir) if self.root else NoStepsLog()

    def loop(self) -> dict:
        cfg, perm, perm_epoch, snapshot, status = self.cfg, None, None, None, "done"
        stop = Stop(self.ranks, stop_on_sigterm)    # `kill PID` stops the run as Ctrl-C does
        try:
            if self.schedule is None:           # --time-budget: time steps, fix the length
                self.fit_to_budget()
            if self.warmup.warning and self.root:
                warnings.warn(self.warmup.warning, stacklevel=2)
            self.open_bar()
            while True:
                if self.progress.epochs_logged < self.schedule.epochs_done(self.progress.step):
                    self.end_of_epoch()              # may re-fit a time budget's length
                step, sched = self.progress.step, self.schedule
                if step >= sched.total:
                    break
                if (cfg.max_steps and step >= cfg.max_steps) or stop.agreed(
                        cfg.time_limit and time.perf_counter() - self.session_start
                        > 60 * cfg.time_limit):                 # every rank at one step
                    status = "stopped"
                    break
                epoch = step // sched.steps_per_epoch
                if perm_epoch != epoch:              # the order is a function of (seed, epoch)
                    perm, gen = epoch_order(cfg.seed, epoch, len(self.data.train_y))
                    perm_epoch = epoch
                    check_data_order(self.progress, epoch, gen)
                snapshot = Snapshot.take(self.model, self.optimizer, self.rngs, self.progress)
                self.step(step, perm)                # Ctrl-C in here rolls back to snapshot
                snapshot = None
                if self.window.full():
                    self.read_steps()
                if cfg.checkpoint_every and self.progress.step % cfg.checkpoint_every == 0:
                    self.save()
            self.read_steps()                         # the bar is still open
        except KeyboardInterrupt:
            if snapshot is not None:
                self.progress = snapshot.restore(self.model, self.optimizer, self.rngs)
                self.window.drop_from(self.progress.step)
            status = "interrupted"
            self.save("interrupted")
        finally:
            stop.restore()
            self.steps_log.close()
            self.objective.close()
            self.close_bar()
        if self.progress.saved_step != self.progress.step:
            self.save(status)
        return self.finish(status)

    def step(self, step: int, perm) -> None:
        """One optimizer step on the batch perm[i*B:(i+1)*B] of the step's epoch."""
        cfg, sched, B = self.cfg, self.schedule, self.cfg.batch_size
        i, t0 = step % sched.steps_per_epoch, time.perf_counter()
        batch = prepare_batch(self.data, perm[i * B:(i + 1) * B], cfg, self.aug_rng,
                              self.model.dtype, sched.patch_dropout_at(step), self.mix_rng)
        lr = sched.lr_at(step)
        loss, correct = self.objective.step(batch)  # forward, loss, backward, gradient sums
        with errors_ignored():                      # checked when the window is read
            norm = clip_flat_grads(self.model.flat_grads, cfg.clip_grad) if cfg.clip_grad \
                else 0.0                            # the global norm before clipping
            self.optimizer.step(self.model.params, self.model.grads, lr=lr)
        self.progress.step = step + 1
        self.window.add(step, loss, correct, norm, lr, time.perf_counter() - t0)

    def read_steps(self) -> None:
        """Read the window's steps from the device and account for each in order: the
        divergence check (a non-finite loss or gradient norm), the epoch's sums, the bar."""
        progress, B, bar = self.progress, self.cfg.batch_size, self.bar
        for v in sum_step_values(self.ranks, self.window.read()):   # the ranks' sums
            if not (math.isfinite(v.loss) and math.isfinite(v.grad_norm)):
                what, value = ("loss", v.loss) if not math.isfinite(v.loss) \
                    else ("gradient norm", v.grad_norm)
                raise TrainingDiverged(diverged_message(what, value, v.step, progress,
                                                         self.ckpt_path))
            progress.epoch_loss += v.loss
            progress.epoch_steps += 1
            progress.epoch_correct += v.correct or 0
            progress.epoch_time += v.seconds
            self.steps_log.append(v.step + 1, v.loss, v.lr)
            if bar is not None:
                acc = "-" if v.correct is None else f"{v.correct / B:.3f}"
                bar.set_postfix({"loss": f"{v.loss:.3f}", "acc": acc, "lr": f"{v.lr:.2e}",
                                 "img/s": f"{B / v.seconds:.0f}"}, refresh=False)
                bar.update(1)

    def save(self, kind: str = "checkpoint") -> None:
        self.read_steps()
        progress = self.progress
        check_finite_params(self.model, progress.step)
        check_same_params(self.ranks, self.model.flat_params)
        progress.saved_step, progress.elapsed = progress.step, self.elapsed()
        self.steps_log.flush()
        if self.root:
            save_checkpoint(self.ckpt_path, self.model, self.optimizer, self.rngs,
                            {**progress.to_state(), "kind": kind,  # the run's length, once fixed
                             "total_steps": self.schedule and self.schedule.total})
        with evaluation_weights(self.optimizer, self.model):
            self.objective.save_model(self.run_dir / MODEL_FILE)    # rank 0

    def end_of_epoch(self) -> None:
        """Evaluate, append the epoch's line to metrics.jsonl, checkpoint."""
        self.read_steps()
        steps_end = self.budget and self.budget.epoch_end()
        cfg, data, progress, total = self.cfg, self.data, self.progress, self.schedule.total
        rec = epoch_record(progress, cfg, self.objective.has_accuracy,
                           self.schedule.lr_at(progress.step - 1))
        validate = bool(len(data.val_y) and cfg.eval_every and (
            rec["epoch"] % cfg.eval_every == 0 or progress.step == total))
        rec.update(evaluate_epoch(
            self.objective, data, cfg, validate, progress.step == total,
            lambda: evaluation_weights(self.optimizer, self.model),
            val_report_writer(self.root, self.run_dir, progress.step, data.label_names), self.bar))
        if steps_end is not None:                    # --time-budget: the length once more
            self.refit_to_budget(steps_end)
        rec["elapsed"] = self.elapsed()
        if self.root:
            append_metrics(self.run_dir, rec)
        progress.epochs_logged, progress.last = rec["epoch"], rec
        progress.epoch_loss, progress.epoch_steps, progress.epoch_correct = 0.0, 0, 0
        progress.epoch_time = 0.0
        self.save()
        if self.root and rec["epoch"] in snapshot_epochs(cfg.snapshots, self.schedule.epochs):
            with evaluation_weights(self.optimizer, self.model):      # for minivit explain
                self.objective.save_model(snapshot_path(self.run_dir, rec["epoch"], create=True))
        self.say(format_record(rec, self.schedule.total))

    # -- a time budget (minivit/training/time_budget.py): the run's length from timed steps
    def fit_to_budget(self) -> None:
        """Time rolled-back steps, an evaluation batch and a save, then fix the run's length
        and record it in config.json."""
        cfg, data = self.cfg, self.data
        perm, _ = epoch_order(cfg.seed, 0, len(data.train_y))
        probe = Schedule(self.steps_per_epoch, 2 ** 62, 0, 0, cfg.lr, cfg.min_lr)

        def step(i, masked):                    # a step of epoch 0, waited for, undone
            self.undone(lambda: (self.step(i, perm), self.window.read()),
                        dataclasses.replace(probe, unmasked=0 if masked else probe.total))

        steps = self.budget.fit(step, eval_probe(self.objective, data, cfg.eval_batch_size),
                                self.save, self.progress.step)
        self.schedule = self.fixed_schedule(steps, recorded=False)
        self.budget.accept(self.budget.plan, self.schedule)

    def refit_to_budget(self, steps_end: float) -> None:
        """After the first epoch: the run's length fitted again from its wall time, where
        the steps so far are those of a run of the new length (Schedule.same_start)."""
        plan = self.budget.refit(self.progress.step, steps_end)
        if plan is None:
            return
        first, warmup = self.schedule, self.warmup
        schedule = self.fixed_schedule(plan.steps, recorded=False)       # sets self.warmup
        if not first.same_start(schedule, self.progress.step):
            self.warmup = warmup
            return
        self.schedule = schedule
        self.budget.accept(plan, schedule)
        if self.bar is not None:
            self.bar.total = schedule.total
        self.say(f"  {plan.line()}")

    def undone(self, call, schedule) -> None:
        """``call()`` under ``schedule``, then the run as it was: schedule, parameters,
        optimizer, generators, progress, unread step values; also when interrupted."""
        snap = Snapshot.take(self.model, self.optimizer, self.rngs, self.progress)
        before, self.schedule = self.schedule, schedule
        try:
            call()
        finally:
            self.progress = snap.restore(self.model, self.optimizer, self.rngs)
            self.window.drop_from(self.progress.step)
            self.schedule = before


__all__ = ["TrainConfig", "TrainingDiverged", "resume", "train"]
