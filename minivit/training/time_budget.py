"""Fitting a training run to a wall-clock budget (``TrainConfig.time_budget``, minutes).

Before its first step, a run with a time budget times what it is about to repeat: a few
masked steps and, with patch dropout, a few unmasked ones (each rolled back: the run's state
is the same after them, so nothing they draw reaches the run), one evaluation batch and one
checkpoint save.  From those costs it picks the number of whole epochs (at most
``cfg.epochs``) whose steps, unmasked tail, evaluations and saves fit in the budget, the
time already spent included, and from then on the run *is* a ``--steps`` run of that many
steps: config.json records the plan, a resume keeps it, and ``--steps N`` with the same seed
trains the same run bit for bit (the warmup follows from N by the same rule).

The plan aims at the budget less a reserve (``RESERVE``, 4%) for the host's drift.  A probe of
two seconds can still be off by 5-10% (caches, the host's load), so after the first epoch
the run fits its length once more (``refit_plan``) from that epoch's wall time: its steps and
its evaluation, scaled from the probe's costs where the epoch did not show them (the
unmasked step).  While the first epoch is inside the warmup and the unmasked tail has not
begun, every step so far is the same in a run of either length, so the re-fitted run is
still exactly a ``--steps`` run (train.py checks this, and keeps the first plan when it does
not hold).  config.json records both plans.  A run resumed before the end of its first epoch
keeps the first plan.  From then on the total stays fixed: if the steps turn out slower, the
run still trains all of them, and the final line says the budget and the time it took.

    shape = run_shape(cfg, steps_per_epoch, unmasked_steps, data)
    plan = plan_run(cfg.time_budget, shape, step, evaluate, save, elapsed)   # the timing
    plan.steps, plan.epochs, plan.line()   # 13338, 38, "time budget 60 min: measured ..."
    plan = refit_plan(plan, shape, EpochTiming(351, 60.1, 2.3, 351), elapsed=65.0)  # or None
    fit_budget(60, spent=6.0, costs=Costs(0.21, 0.41, 0.3, 0.1), shape=shape)   # no timing
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from minivit.errors import UserError
from minivit.io.rundir import CONFIG_FILE, read_run_info, update_run_info
from minivit.training.schedule import unmasked_steps

# (untimed calls first, at least this many timed calls, at least these seconds, at most calls)
MASKED_PROBE = (2, 10, 2.0, 200)
UNMASKED_PROBE = (1, 4, 1.0, 100)
EVAL_PROBE = (1, 1, 0.5, 20)
RESERVE = 0.04              # the plans aim at 96% of the budget


class TimeBudgetTooShort(UserError):
    """Not even one epoch fits in the time budget."""


@dataclass(frozen=True)
class Costs:
    """Measured seconds of the things a run repeats."""
    step: float             # one optimizer step (patch dropout on, when the model has it)
    unmasked_step: float    # one step of the unmasked tail (= step without patch dropout)
    eval_batch: float       # one evaluation batch (0: the run evaluates nothing)
    save: float             # one checkpoint with its model file


@dataclass(frozen=True)
class RunShape:
    """What a run of E epochs does besides its steps, as counts (from its TrainConfig)."""
    steps_per_epoch: int
    max_epochs: int         # cfg.epochs: the budget never trains more
    unmasked_steps: int     # the unmasked tail (cut to the run's length); 0: none
    val_batches: int        # batches of one validation pass; 0: no validation
    eval_every: int         # validate every N epochs and after the last
    test_batches: int       # batches of the test pass after every epoch; 0: none
    checkpoint_every: int   # extra saves every N steps; 0: only at epoch ends

    def seconds(self, epochs: int, costs: Costs) -> float:
        """The predicted wall time of the steps, evaluations and saves of ``epochs``."""
        steps = epochs * self.steps_per_epoch
        unmasked = unmasked_steps(self.unmasked_steps, steps, self.steps_per_epoch)
        evals = epochs // self.eval_every + (epochs % self.eval_every != 0) \
            if self.val_batches and self.eval_every else 0
        saves = epochs + (steps // self.checkpoint_every if self.checkpoint_every else 0)
        return ((steps - unmasked) * costs.step + unmasked * costs.unmasked_step
                + (evals * self.val_batches + epochs * self.test_batches) * costs.eval_batch
                + saves * costs.save)


@dataclass(frozen=True)
class BudgetPlan:
    """What a time budget chose, as config.json's "time_budget" records it."""
    minutes: float
    steps: int
    epochs: int
    capped: bool                # more epochs would fit: cfg.epochs capped the run
    step_seconds: float
    unmasked_step_seconds: float
    eval_batch_seconds: float
    save_seconds: float
    spent_seconds: float        # the run's time before its first step (the timing included)
    estimate_seconds: float     # predicted wall time of the whole run
    elapsed_seconds: float | None = None    # the wall time it took (set when it is done)
    # set when the length was fitted again after the first epoch (refit_plan):
    refit_step: int | None = None           # the step it was fitted at
    first_steps: int | None = None          # the probe's plan: its steps,
    first_step_seconds: float | None = None             # its cost of a step
    first_estimate_seconds: float | None = None         # and its predicted wall time

    def line(self) -> str:
        """The line a run prints when it fixes its length."""
        unmasked = (f" ({self.unmasked_step_seconds:.3g} s unmasked)"
                    if self.unmasked_step_seconds != self.step_seconds else "")
        cap = ", the --epochs limit (more would fit)" if self.capped else ""
        when = "" if self.refit_step is None else (
            f" (again after step {self.refit_step}, from its wall time; the probe's "
            f"{self.first_step_seconds:.3g} s/step gave {self.first_steps} steps)")
        return (f"time budget {self.minutes:g} min{when}: measured {self.step_seconds:.3g} s/step"
                f"{unmasked}, {self.steps} steps = {_epochs(self.epochs)}{cap}; estimated "
                f"{self.estimate_seconds / 60:.1f} min (repeat exactly with --steps "
                f"{self.steps})")

    def report(self) -> str:
        """Budget against the time taken, for the final line."""
        took = self.elapsed_seconds / 60
        over = f", {took - self.minutes:.1f} min over" if took > self.minutes else ""
        return f"time budget {self.minutes:g} min, took {took:.1f} min{over}"

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict, where: str = "config.json") -> "BudgetPlan":
        names = {f.name for f in dataclasses.fields(cls)}
        try:
            return cls(**{k: v for k, v in d.items() if k in names})
        except TypeError as e:
            raise ValueError(f"{where}: the time budget's record is damaged ({e})") from None


def _epochs(n: int) -> str:
    return f"{n} epoch" + ("" if n == 1 else "s")


def time_calls(call, probe: tuple, clock=time.perf_counter) -> float:
    """Seconds per ``call(i)``: ``skip`` untimed calls (caches, first allocations), then
    calls until at least ``n_min`` calls and ``min_seconds`` are timed (at most ``n_max``).
    ``call`` must wait for its device work to end."""
    skip, n_min, min_seconds, n_max = probe
    for i in range(skip):
        call(i)
    t0, n = clock(), 0
    while n < n_max and (n < n_min or clock() - t0 < min_seconds):
        call(skip + n)
        n += 1
    return (clock() - t0) / n


def plan_run(minutes: float, shape: RunShape, step, evaluate, save, elapsed,
             clock=time.perf_counter) -> BudgetPlan:
    """Time ``step(i, masked)`` (one rolled-back step), ``evaluate()`` (one evaluation batch)
    and ``save()`` (a real checkpoint), then ``fit_budget`` with ``elapsed()`` seconds spent.
    A budget too short for one epoch fails before the save (no checkpoint is written)."""
    masked = time_calls(lambda i: step(i, True), MASKED_PROBE, clock)
    unmasked = time_calls(lambda i: step(i, False), UNMASKED_PROBE, clock) \
        if shape.unmasked_steps else masked
    evals = shape.val_batches or shape.test_batches
    eval_batch = time_calls(lambda i: evaluate(), EVAL_PROBE, clock) if evals else 0.0
    costs = Costs(masked, unmasked, eval_batch, 0.0)
    fit_budget(minutes, elapsed(), costs, shape)
    costs = dataclasses.replace(costs, save=time_calls(lambda i: save(), (0, 1, 0.0, 1), clock))
    return fit_budget(minutes, elapsed(), costs, shape)


def fit_budget(minutes: float, spent: float, costs: Costs, shape: RunShape) -> BudgetPlan:
    """The most whole epochs (1 to shape.max_epochs) that fit in ``minutes`` less the reserve
    after ``spent`` seconds; TimeBudgetTooShort when not even one does."""
    budget = 60 * minutes * (1 - RESERVE) - spent

    def fits(e):
        return shape.seconds(e, costs) <= budget

    if not fits(1):
        need = (spent + shape.seconds(1, costs)) / 60
        raise TimeBudgetTooShort(
            f"time budget {minutes:g} min is too short: measured {costs.step:.3g} s/step, so "
            f"one epoch of {shape.steps_per_epoch} steps takes about {need:.2g} min with its "
            "evaluation and save; give a longer --time-budget or --steps")
    lo, hi = 1, shape.max_epochs            # fits(lo); the answer is in [lo, hi]
    while lo < hi:
        mid = (lo + hi + 1) // 2
        lo, hi = (mid, hi) if fits(mid) else (lo, mid - 1)
    return BudgetPlan(minutes, lo * shape.steps_per_epoch, lo,
                      lo == shape.max_epochs and fits(lo + 1), costs.step, costs.unmasked_step,
                      costs.eval_batch, costs.save, spent, spent + shape.seconds(lo, costs))


@dataclass(frozen=True)
class EpochTiming:
    """The wall time of a run's first epoch, as the loop measured it."""
    steps: int                  # the steps it timed (the epoch's, all with patch dropout)
    steps_seconds: float        # their wall time, from the first step to the last one's end
    eval_seconds: float         # the epoch's evaluation (validation and test passes)
    step: int                   # the run's step after them


@dataclass(frozen=True)
class FirstEpoch:
    """Where a run's first epoch began, to time it for ``refit_plan``: the run's shape, the
    clock every rank agrees on, and the step and time its steps started at."""
    shape: RunShape
    clock: Callable[[], float]
    step: int
    start: float

    def timing(self, step: int, steps_end: float) -> EpochTiming:
        """The epoch's timing at ``step``, its steps having ended at ``steps_end``."""
        return EpochTiming(step - self.step, steps_end - self.start, self.clock() - steps_end,
                           step)


def refit_plan(plan: BudgetPlan, shape: RunShape, timing: EpochTiming,
               elapsed: float) -> BudgetPlan | None:
    """``plan`` fitted again from the first epoch's wall time, ``elapsed`` seconds into the
    run (None when not even one epoch fits any more: the first plan stays).

    The step's cost is the epoch's; the unmasked step's and the evaluation batch's are the
    probe's, scaled by how far the epoch's steps and evaluation were from the probe's; the
    save's is the probe's.  The time not in the epoch's steps and evaluation (the probes, the
    first plan's save) counts as spent."""
    step = timing.steps_seconds / timing.steps
    batches = shape.test_batches + (shape.val_batches if shape.eval_every == 1 else 0)
    probed_eval = batches * plan.eval_batch_seconds
    eval_scale = timing.eval_seconds / probed_eval if probed_eval > 0 else 1.0
    costs = Costs(step, plan.unmasked_step_seconds * step / plan.step_seconds,
                  plan.eval_batch_seconds * eval_scale, plan.save_seconds)
    spent = elapsed - timing.steps_seconds - timing.eval_seconds
    try:
        new = fit_budget(plan.minutes, spent, costs, shape)
    except TimeBudgetTooShort:
        return None
    return dataclasses.replace(new, refit_step=timing.step, first_steps=plan.steps,
                               first_step_seconds=plan.step_seconds,
                               first_estimate_seconds=plan.estimate_seconds)


def run_shape(cfg, steps_per_epoch: int, unmasked_steps: int, data) -> RunShape:
    """The RunShape of a TrainConfig's run on ``data`` (a data.cifar10 split)."""
    def passes(n):
        return math.ceil(n / cfg.eval_batch_size)

    return RunShape(steps_per_epoch, cfg.epochs, unmasked_steps,
                    passes(len(data.val_y)) if cfg.eval_every else 0, cfg.eval_every,
                    passes(len(data.test_y)) if cfg.eval_test else 0, cfg.checkpoint_every)


def eval_probe(objective, data, batch_size: int):
    """A call that evaluates one batch of validation images (test images without them)."""
    x, y = (data.val_x, data.val_y) if len(data.val_y) else (data.test_x, data.test_y)
    n = min(len(y), batch_size)
    return lambda: objective.evaluate(x[:n], y[:n], data.mean, data.std, n)


def recorded_plan(run_dir) -> BudgetPlan | None:
    """The plan RUN_DIR/config.json records (None: the length is not fixed yet)."""
    recorded = read_run_info(run_dir).get("time_budget")
    return BudgetPlan.from_dict(recorded, f"{Path(run_dir) / CONFIG_FILE}") if recorded else None


def record_plan(run_dir, plan: BudgetPlan, schedule) -> None:
    """config.json: the plan, and the schedule's steps that follow from it."""
    update_run_info(run_dir, total_steps=schedule.total, warmup_steps=schedule.warmup,
                    unmasked_steps=schedule.unmasked, time_budget=plan.to_dict())


class TimeBudget:
    """A run's time budget, as the loop sees it: ``fit`` before the first step, ``refit``
    after the first epoch, ``finish`` at the end.  Rank 0 (``root``) records in config.json.

        budget = TimeBudget(cfg.time_budget, run_dir, shape, clock, elapsed, root, resume)
        steps = budget.fit(step, evaluate, save, start_step)   # step(i, masked): timed, undone
        plan = budget.refit(step, steps_end)                   # after epoch 1; None: keep
        budget.accept(plan, schedule)
    """

    def __init__(self, minutes: float, run_dir, shape: RunShape, clock, elapsed, root: bool,
                 resume: bool):
        self.minutes, self.run_dir, self.shape, self.root = minutes, Path(run_dir), shape, root
        self.clock, self.elapsed = clock, elapsed    # both agreed on by every rank
        self.plan = recorded_plan(run_dir) if resume else None
        self.first_epoch = None                      # a FirstEpoch while a re-fit is to come

    def fit(self, step, evaluate, save, start_step: int) -> int:
        """Time ``step(i, masked)`` (each call rolled back by the caller), ``evaluate()`` and
        ``save()``; fix the plan; the number of steps it gives."""
        self.plan = plan_run(self.minutes, self.shape, step, evaluate, save, self.elapsed,
                             clock=self.clock)
        self.first_epoch = FirstEpoch(self.shape, self.clock, start_step, self.clock())
        return self.plan.steps

    def epoch_end(self) -> float | None:
        """The clock at the end of the first epoch's steps (None: no re-fit to come)."""
        return self.first_epoch.clock() if self.first_epoch else None

    def refit(self, step: int, steps_end: float) -> BudgetPlan | None:
        """The plan fitted again from the first epoch (refit_plan); None: keep the first."""
        epoch1, self.first_epoch = self.first_epoch, None
        return refit_plan(self.plan, epoch1.shape, epoch1.timing(step, steps_end),
                          self.elapsed())

    def accept(self, plan: BudgetPlan, schedule) -> None:
        """The run's plan from now on, and its schedule, recorded in config.json."""
        self.plan = plan
        if self.root:
            record_plan(self.run_dir, plan, schedule)

    def finish(self, elapsed: float) -> str:
        """The final line's words; config.json records the wall time."""
        return record_elapsed(self.plan, self.run_dir, elapsed) if self.root else ""


def record_elapsed(plan: BudgetPlan | None, run_dir, elapsed: float) -> str:
    """Add the wall time the run took to config.json's plan; the final line's words ("" for
    a run without a time budget)."""
    if plan is None:
        return ""
    plan = dataclasses.replace(plan, elapsed_seconds=elapsed)
    update_run_info(run_dir, time_budget=plan.to_dict())
    return "; " + plan.report()


__all__ = ["BudgetPlan", "Costs", "EVAL_PROBE", "EpochTiming", "FirstEpoch", "MASKED_PROBE",
           "RESERVE", "RunShape", "TimeBudgetTooShort", "UNMASKED_PROBE", "eval_probe",
           "fit_budget", "plan_run", "record_elapsed", "record_plan", "recorded_plan",
           "refit_plan", "run_shape", "time_calls", "TimeBudget"]
