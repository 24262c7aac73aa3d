"""Training a ViT on CIFAR-10: the configuration and the loop, with exact resumption.

    from minivit.train import TrainConfig, train, resume
    train(TrainConfig(model="cifar-nano", epochs=10, run_dir="runs/nano"))
    resume("runs/nano")                       # after Ctrl-C, --max-steps or --time-limit

One optimizer step (``_Run.step``):

    indices  = permutation(seed, epoch)[i*B:(i+1)*B]      host, pure function of (seed, epoch)
    batch    = prepare_batch(data, indices, ...)          uint8 pixels move, then crop/flip,
                                                          normalize, mixup/cutmix on the device
    loss, stats = objective.step(batch)                   forward, loss, backward, clipping
    optimizer.step(params, grads, lr=warmup_cosine(step))  --ema: then the weights' average,
                                                          which evaluation and saving use
    window.add(step, loss, stats, ...)                    the values stay on the device; read
                                                          a window at a time (step_window.py)

The objective (minivit/objectives.py) is ``Classification`` (cross-entropy on the labels) or
``Pretraining`` (``objective="mae"`` / ``"mpp"``); the loop only sees ``step``, ``evaluate``
and ``save_model``.  The files of a run directory are those of minivit/io/rundir.py; the
checkpoint (params, optimizer state, generators, ``Progress``) is minivit/checkpoint.py.  A
``time_budget`` run fixes its length before the first step and once more after the first
epoch (minivit/time_budget.py).

Everything random is either a pure function of (seed, epoch) or drawn from a generator whose
state the checkpoint stores, so ``resume`` continues bit for bit (tests/test_train.py trains
2N steps straight and N + resume + N, and compares every parameter exactly on NumPy).
"""

from __future__ import annotations

import dataclasses
import math
import time
import warnings
from contextlib import ExitStack
from pathlib import Path

from minivit.backend import host_rng, rng
from minivit.checkpoint import (Progress, Snapshot, load_checkpoint, save_checkpoint,
                                stop_on_sigterm)
from minivit.console import plural, progress_bar, silent
from minivit.data.cifar10 import load_cifar10
from minivit.evaluation import eval_report
from minivit.io.files import write_json
from minivit.io.rundir import (CHECKPOINT_FILE, CONFIG_FILE, EVAL_VAL_FILE, METRICS_FILE,
                               MODEL_FILE, StepsLog, append_metrics, check_run_dir_path,
                               default_run_dir, format_record,
                               remove_temp_files, run_info, run_lock, trim_metrics)
from minivit.distillation import Distillation
from minivit.distributed import (NoStepsLog, RankObjective, Stop, agreed_seconds,
                                 check_rank_split, check_same_params, fingerprint,
                                 shared_run_dir, start_together, sum_step_values)
from minivit.ema import WithEMA, evaluation_weights
from minivit.layer_decay import layer_decay_scales
from minivit.mpi import Ranks, connect
from minivit.objectives import errors_ignored, make_objective, prepare_batch
from minivit.optim import AdamW
from minivit.loop_checks import (TrainingDiverged, check_data_order, check_finite_params,
                                 diverged_message, recorded_warmup)
from minivit.parallel import resolve_threads
from minivit.schedule import Schedule, epoch_order
from minivit.snapshots import snapshot_epochs, snapshot_path
from minivit.step_window import StepWindow, read_every_for_backend
from minivit.time_budget import (FirstEpoch, eval_probe, plan_run, record_elapsed, record_plan,
                                 recorded_plan, refit_plan, run_shape, undone)
from minivit.train_config import (RECIPE_MODEL_OVERRIDES, SESSION_FIELDS, TrainConfig,
                                  choose_warmup, load_train_config)

AUG_STREAM = 1                      # seeds [seed, stream, ...] keep the random streams apart
                                    # (DATA_STREAM = 0: minivit/schedule.py)
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
        from minivit.pretrain import with_pretrained_architecture
        cfg = with_pretrained_architecture(cfg)
    ranks = connect()                                # several under mpirun (minivit/mpi.py)
    if not cfg.run_dir:
        name = cfg.model if cfg.objective == "classify" else f"{cfg.objective}-{cfg.model}"
        cfg = dataclasses.replace(cfg, run_dir=shared_run_dir(ranks, default_run_dir(name)))
    check_run_dir_path(Path(cfg.run_dir))            # before the data take seconds to load
    with ExitStack() as stack:

        def start():                                 # rank 0 alone locks and writes
            if ranks.is_root and stack.enter_context(      # a second trainer: refused
                    run_lock(cfg.run_dir, create=not resume)) is not None:
                remove_temp_files(cfg.run_dir)       # what writes cut short by kill -9 left
            return _Run(cfg, resume, ranks)
        return start_together(ranks, start).loop()


class _Run:
    """One session of a run: its data, objective, optimizer, generators and progress."""

    def __init__(self, cfg: TrainConfig, resume: bool, ranks: Ranks | None = None):
        self.cfg, self.resume, self.ranks = cfg, resume, ranks or Ranks()
        self.root = root = self.ranks.is_root        # rank 0 alone writes and prints
        self.prog = "train" if cfg.objective == "classify" else "pretrain"
        self.run_dir = Path(cfg.run_dir)             # set by train()
        self.ckpt_path = self.run_dir / CHECKPOINT_FILE
        if resume and not self.ckpt_path.is_file():
            raise FileNotFoundError(f"cannot resume: {self.ckpt_path} not found")
        if not resume and (self.ckpt_path.exists() or (self.run_dir / METRICS_FILE).exists()):
            raise ValueError(f"{self.run_dir} already holds a run; continue it with --resume "
                             f"{self.run_dir} or choose another --run-dir")
        # data (uint8, on the host), schedule, objective, optimizer, generators
        self.data = data = load_cifar10(cfg.data_dir, cfg.val_size, download=cfg.download)
        n_train, B = len(data.train_y), cfg.batch_size
        steps_per_epoch = n_train // B               # the last partial batch is dropped
        if steps_per_epoch < 1:
            raise ValueError(f"batch size {B} is larger than the training set ({n_train} images)")
        self.steps_per_epoch = steps_per_epoch
        if self.ranks.size > 1:
            check_rank_split(self.ranks, cfg)
        self.objective = (Distillation(cfg, data, resume) if cfg.teacher
                          else make_objective(cfg, data, resume))
        if self.ranks.size > 1:                      # this rank's share (distributed.py)
            self.objective = RankObjective(self.objective, self.ranks, B)
        self.model = model = self.objective.model
        self.unmasked_tail = round(cfg.unmasked_epochs * steps_per_epoch) \
            if getattr(model.config, "patch_drop_rate", 0) else 0
        self.plan = recorded_plan(self.run_dir) if resume and cfg.time_budget else None
        self.refit_due = None                        # a FirstEpoch while a re-fit is to come
        total = self.plan.steps if self.plan else None if cfg.time_budget \
            else cfg.steps or cfg.epochs * steps_per_epoch
        self.schedule = self.fixed_schedule(total, resume) if total else None
        self.optimizer = AdamW(model.params, lr=cfg.lr, weight_decay=cfg.weight_decay,
                               lr_scale=layer_decay_scales(model.params, model.config.depth,
                                                           cfg.layer_decay)
                               if cfg.layer_decay != 1 else None)
        if cfg.ema:                                  # evaluates and saves the average
            self.optimizer = WithEMA(self.optimizer, model, cfg.ema)
        self.aug_rng = rng([cfg.seed, AUG_STREAM])   # on the device, like model.rng
        self.rngs = {"augment": self.aug_rng, "model": model.rng}
        self.mix_rng = None
        if cfg.mixup > 0 or cfg.cutmix > 0:          # scalars drawn on the host: no read back
            self.mix_rng = self.rngs["mix"] = host_rng([cfg.seed, MIX_STREAM])
        self.progress = Progress()
        self.window = StepWindow(read_every_for_backend())   # steps not read back yet
        if resume:
            self.progress = Progress.from_state(
                load_checkpoint(self.ckpt_path, model, self.optimizer, self.rngs))
            if root:
                trim_metrics(self.run_dir, self.progress.epochs_logged)
                StepsLog.trim(self.run_dir, self.progress.step)
        elif root:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            s = self.schedule
            write_json(self.run_dir / CONFIG_FILE, run_info(
                cfg, self.run_dir, model, data, steps_per_epoch,
                *((s.total, s.warmup, s.unmasked) if s else (None, None, None))))
        self.elapsed_before, self.session_start = self.progress.elapsed, time.perf_counter()

    def fingerprint(self) -> dict:
        return fingerprint(self.cfg, self.data)

    def elapsed(self) -> float:
        return self.elapsed_before + time.perf_counter() - self.session_start

    def fixed_schedule(self, total: int, recorded: bool) -> Schedule:
        """The schedule of ``total`` steps; recorded: with the warmup config.json records."""
        cfg, spe = self.cfg, self.steps_per_epoch
        self.warmup = recorded_warmup(self.run_dir, cfg, spe, total) if recorded \
            else choose_warmup(cfg, spe, total)
        return Schedule(spe, total, self.warmup.steps, min(total, self.unmasked_tail), cfg.lr,
                        cfg.min_lr)

    def loop(self) -> dict:
        cfg, self.bar, self.say = self.cfg, None, print if self.root else silent
        self.steps_log = StepsLog(self.run_dir) if self.root else NoStepsLog()
        perm, perm_epoch, snapshot, status = None, None, None, "done"
        stop = Stop(self.ranks, stop_on_sigterm)    # `kill PID` stops the run as Ctrl-C does
        try:
            if self.schedule is None:           # --time-budget: time steps, fix the length
                self.fit_to_budget()
            sched, p = self.schedule, self.progress
            if self.warmup.warning and self.root:
                warnings.warn(self.warmup.warning, stacklevel=2)
            self.bar = bar = progress_bar(cfg.progress and self.root, sched.total, p.step)
            self.say = bar.write if bar is not None else self.say
            warmup = plural(sched.warmup, "step") + (f" ({self.warmup.note})"
                                                     if self.warmup.note else "")
            self.say(f"minivit {self.prog}: {self.model!r}\n  {len(self.data.train_y)} training "
                     f"images, {plural(sched.steps_per_epoch, 'step')} of {cfg.batch_size} per "
                     f"epoch, {plural(sched.total, 'step')} (warmup {warmup}), run dir "
                     f"{self.run_dir}" + (f", resuming at step {p.step}" if self.resume else "")
                     + (f"\n  {self.objective.summary()}" if cfg.teacher else "")
                     + (f"\n  {self.plan.line()}" if self.plan else ""))
            while True:
                if self.progress.epochs_logged < sched.epochs_done(self.progress.step):
                    self.end_of_epoch()
                    sched = self.schedule            # a time budget's length may be re-fitted
                step = self.progress.step
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
                self.step(step, perm, bar)            # Ctrl-C in here rolls back to snapshot
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
            if self.bar is not None:
                self.bar.close()
        p, total = self.progress, self.schedule and self.schedule.total
        if p.saved_step != p.step:
            self.save(status)
        say = print if self.root else silent
        if status == "done":
            budget = record_elapsed(self.plan, self.run_dir, self.elapsed()) if self.root else ""
            say(f"minivit {self.prog}: done, {plural(p.step, 'step')}; model saved to "
                f"{self.run_dir / MODEL_FILE}{budget}")
        else:
            where = f"at step {p.step} of {total}" if total else "while timing the steps"
            say(f"minivit {self.prog}: {status} {where}; checkpoint saved to "
                f"{self.ckpt_path}. Continue with: minivit {self.prog} --resume "
                  f"{self.run_dir}")
        return {"run_dir": str(self.run_dir), "step": p.step, "total_steps": total,
                "status": status, "last": p.last}

    def fit_to_budget(self) -> None:
        """Time rolled-back steps, an evaluation batch and a save (minivit/time_budget.py),
        then fix the run's length and record it in config.json."""
        cfg, data, spe = self.cfg, self.data, self.steps_per_epoch
        perm, _ = epoch_order(cfg.seed, 0, len(data.train_y))
        probe = Schedule(spe, 2 ** 62, 0, 0, cfg.lr, cfg.min_lr)

        def step(i, masked):                    # a step of epoch 0, waited for, undone
            undone(self, lambda: (self.step(i, perm, None), self.window.read()),
                   dataclasses.replace(probe, unmasked=0 if masked else probe.total))

        shape = run_shape(cfg, spe, self.unmasked_tail, data)
        clock = agreed_seconds(self.ranks, time.perf_counter)    # one clock for all ranks
        self.plan = plan_run(cfg.time_budget, shape, step,
                             eval_probe(self.objective, data, cfg.eval_batch_size), self.save,
                             agreed_seconds(self.ranks, self.elapsed), clock=clock)
        self.schedule = self.fixed_schedule(self.plan.steps, recorded=False)
        if self.root:
            record_plan(self.run_dir, self.plan, self.schedule)
        self.refit_due = FirstEpoch(shape, clock, self.progress.step, clock())

    def refit_to_budget(self, steps_end: float) -> None:
        """After the first epoch of a --time-budget run: its length fitted again from the
        epoch's wall time (time_budget.refit_plan), where the steps so far are those of a
        run of the new length (Schedule.same_start); otherwise the first plan stays."""
        epoch1, self.refit_due = self.refit_due, None
        p = self.progress.step
        plan = refit_plan(self.plan, epoch1.shape, epoch1.timing(p, steps_end),
                          agreed_seconds(self.ranks, self.elapsed)())
        if plan is None:
            return
        first, warmup = self.schedule, self.warmup
        schedule = self.fixed_schedule(plan.steps, recorded=False)       # sets self.warmup
        if not first.same_start(schedule, p):
            self.warmup = warmup
            return
        self.plan, self.schedule = plan, schedule
        if self.root:
            record_plan(self.run_dir, plan, schedule)
        if self.bar is not None:
            self.bar.total = schedule.total
        self.say(f"  {plan.line()}")

    def step(self, step: int, perm, bar) -> None:
        """One optimizer step on the batch perm[i*B:(i+1)*B] of the step's epoch."""
        cfg, sched, p, B = self.cfg, self.schedule, self.progress, self.cfg.batch_size
        i = step % sched.steps_per_epoch
        t0 = time.perf_counter()
        batch = prepare_batch(self.data, perm[i * B:(i + 1) * B], cfg, self.aug_rng,
                              self.model.dtype, sched.patch_dropout_at(step), self.mix_rng)
        lr = sched.lr_at(step)
        loss, stats = self.objective.step(batch)
        with errors_ignored():                      # checked when the window is read
            self.optimizer.step(self.model.params, self.model.grads, lr=lr)
        p.step = step + 1
        self.window.add(step, loss, stats, lr, time.perf_counter() - t0)

    def read_steps(self) -> None:
        """Read the window's steps from the device and account for each in order: the
        divergence check (a non-finite loss or gradient norm), the epoch's sums, the bar."""
        p, B, bar = self.progress, self.cfg.batch_size, self.bar
        for v in sum_step_values(self.ranks, self.window.read()):   # the ranks' sums
            if not (math.isfinite(v.loss) and math.isfinite(v.grad_norm)):
                what, value = ("loss", v.loss) if not math.isfinite(v.loss) \
                    else ("gradient norm", v.grad_norm)
                raise TrainingDiverged(diverged_message(what, value, v.step, p,
                                                         self.ckpt_path))
            p.epoch_loss, p.epoch_steps = p.epoch_loss + v.loss, p.epoch_steps + 1
            p.epoch_correct += v.correct or 0
            p.epoch_time += v.seconds
            self.steps_log.append(v.step + 1, v.loss, v.lr)
            if bar is not None:
                acc = "-" if v.correct is None else f"{v.correct / B:.3f}"
                bar.set_postfix({"loss": f"{v.loss:.3f}", "acc": acc, "lr": f"{v.lr:.2e}",
                                 "img/s": f"{B / v.seconds:.0f}"}, refresh=False)
                bar.update(1)

    def save(self, kind: str = "checkpoint") -> None:
        self.read_steps()
        p = self.progress
        check_finite_params(self.model, p.step)
        check_same_params(self.ranks, self.model.flat_params)
        p.saved_step, p.elapsed = p.step, self.elapsed()
        self.steps_log.flush()
        if self.root:
            save_checkpoint(self.ckpt_path, self.model, self.optimizer, self.rngs,
                            {**p.to_state(), "kind": kind,     # the run's length, once fixed
                             "total_steps": self.schedule and self.schedule.total})
        with evaluation_weights(self.optimizer, self.model):
            self.objective.save_model(self.run_dir / MODEL_FILE)    # rank 0

    def end_of_epoch(self) -> None:
        """Evaluate, append the epoch's line to metrics.jsonl, checkpoint."""
        self.read_steps()
        steps_end = self.refit_due.clock() if self.refit_due else None
        cfg, data, p, obj = self.cfg, self.data, self.progress, self.objective
        epoch, n_seen = p.epochs_logged + 1, p.epoch_steps * cfg.batch_size
        rec = {"epoch": epoch, "step": p.step,
               "train_loss": p.epoch_loss / max(p.epoch_steps, 1),
               "train_acc": p.epoch_correct / max(n_seen, 1) if obj.has_accuracy else None,
               "val_loss": None, "val_acc": None, "test_loss": None, "test_acc": None,
               "lr": self.schedule.lr_at(p.step - 1),
               "images_per_sec": n_seen / max(p.epoch_time, 1e-9)}
        if cfg.ema:
            rec["raw_val_loss"] = rec["raw_val_acc"] = None
        validate = len(data.val_y) and cfg.eval_every and (epoch % cfg.eval_every == 0
                                                           or p.step == self.schedule.total)
        with evaluation_weights(self.optimizer, self.model):
            if validate:
                r = obj.evaluate(data.val_x, data.val_y, data.mean, data.std,
                                 cfg.eval_batch_size)
                rec["val_loss"], rec["val_acc"] = r["loss"], r["acc"]
                if "confusion" in r and self.root:
                    write_json(self.run_dir / EVAL_VAL_FILE,
                               {"step": p.step, **eval_report(r, data.label_names, "val")})
            if cfg.eval_test:
                r = obj.evaluate(data.test_x, data.test_y, data.mean, data.std,
                                 cfg.eval_batch_size)
                rec["test_loss"], rec["test_acc"] = r["loss"], r["acc"]
        if cfg.ema and validate and p.step == self.schedule.total:     # the last epoch:
            r = obj.evaluate(data.val_x, data.val_y, data.mean, data.std,    # also the raw
                             cfg.eval_batch_size)                            # weights
            rec["raw_val_loss"], rec["raw_val_acc"] = r["loss"], r["acc"]
        if steps_end is not None:                    # --time-budget: the length once more
            self.refit_to_budget(steps_end)
        rec["elapsed"] = self.elapsed()
        if self.root:
            append_metrics(self.run_dir, rec)
        p.epochs_logged, p.last, p.epoch_loss, p.epoch_steps = epoch, rec, 0.0, 0
        p.epoch_correct, p.epoch_time = 0, 0.0
        self.save()
        if self.root and epoch in snapshot_epochs(cfg.snapshots,
                                                  self.schedule.epochs_done(self.schedule.total)):
            with evaluation_weights(self.optimizer, self.model):      # for minivit explain
                self.objective.save_model(snapshot_path(self.run_dir, epoch, create=True))
        self.say(format_record(rec, self.schedule.total))


__all__ = ["RECIPE_MODEL_OVERRIDES", "SESSION_FIELDS", "Schedule", "TrainConfig",
           "TrainingDiverged", "epoch_order", "load_train_config", "resume", "train"]
