"""Fitting a training run to a wall-clock budget (``TrainConfig.time_budget``, minutes).

Before its first step, a run with a time budget times what it is about to repeat: a few
masked steps and, with patch dropout, a few unmasked ones (each rolled back: the run's state
is the same after them, so nothing they draw reaches the run), one evaluation batch and one
checkpoint save.  From those costs it picks the number of whole epochs (at most
``cfg.epochs``) whose steps, unmasked tail, evaluations and saves fit in the budget, the
time already spent included, and from then on the run *is* a ``--steps`` run of that many
steps: config.json records the plan, a resume keeps it, and ``--steps N`` with the same seed
trains the same run bit for bit (the warmup follows from N by the same rule).

The total stays fixed: if the steps turn out slower than measured, the run still trains
all of them, and the final line says the budget and the time it took.

    shape = run_shape(cfg, steps_per_epoch, unmasked_steps, data)
    plan = plan_run(cfg.time_budget, shape, step, evaluate, save, elapsed)   # the timing
    plan.steps, plan.epochs, plan.line()   # 13338, 38, "time budget 60 min: measured ..."
    fit_budget(60, spent=6.0, costs=Costs(0.21, 0.41, 0.3, 0.1), shape=shape)   # no timing
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass
from pathlib import Path

from minivit.checkpoint import Snapshot
from minivit.errors import UserError
from minivit.io.rundir import CONFIG_FILE, read_run_info, update_run_info

# (untimed calls first, at least this many timed calls, at least these seconds, at most calls)
MASKED_PROBE = (2, 10, 2.0, 200)
UNMASKED_PROBE = (1, 4, 1.0, 100)
EVAL_PROBE = (1, 1, 0.5, 20)


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
        unmasked = min(steps, self.unmasked_steps)
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

    def line(self) -> str:
        """The line a run prints when it fixes its length."""
        unmasked = (f" ({self.unmasked_step_seconds:.3g} s unmasked)"
                    if self.unmasked_step_seconds != self.step_seconds else "")
        cap = ", the --epochs limit (more would fit)" if self.capped else ""
        return (f"time budget {self.minutes:g} min: measured {self.step_seconds:.3g} s/step"
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
    """The most whole epochs (1 to shape.max_epochs) that fit in ``minutes`` after ``spent``
    seconds; TimeBudgetTooShort when not even one does."""
    budget = 60 * minutes - spent

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


def undone(run, call, schedule) -> None:
    """``call()`` with ``run.schedule = schedule``, then ``run`` (a train._Run) as it was:
    schedule, parameters, optimizer, generators, progress, unread step values; also when
    interrupted."""
    snap, before = Snapshot.take(run.model, run.optimizer, run.rngs, run.progress), run.schedule
    run.schedule = schedule
    try:
        call()
    finally:
        run.progress = snap.restore(run.model, run.optimizer, run.rngs)
        run.window.drop_from(run.progress.step)
        run.schedule = before


def record_elapsed(plan: BudgetPlan | None, run_dir, elapsed: float) -> str:
    """Add the wall time the run took to config.json's plan; the final line's words ("" for
    a run without a time budget)."""
    if plan is None:
        return ""
    plan = dataclasses.replace(plan, elapsed_seconds=elapsed)
    update_run_info(run_dir, time_budget=plan.to_dict())
    return "; " + plan.report()


__all__ = ["BudgetPlan", "Costs", "EVAL_PROBE", "MASKED_PROBE", "RunShape",
           "TimeBudgetTooShort", "UNMASKED_PROBE", "eval_probe", "fit_budget", "plan_run",
           "record_elapsed", "record_plan", "recorded_plan", "run_shape", "time_calls", "undone"]
