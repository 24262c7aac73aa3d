"""--time-budget: the steps it picks from the measured costs, their record in config.json,
resumption, and the identity with the --steps run it chose.

Time is a fake clock (train.time.perf_counter) that only moves when a step, an evaluation or
a save runs, by a fixed cost each, so every number here is exact and no test waits."""

import json
from types import SimpleNamespace

import pytest

pytest.importorskip("safetensors", reason="runs save .safetensors files (.[io])")

import cupy_standin
from support import all_rngs_on, assert_same_run, checkpoint, cli_flags, write_tiny_cifar

import minivit.backend as backend
import minivit.io.rundir as R
import minivit.training as T
import minivit.training.loop as L
import minivit.training.objectives.classification as O
import minivit.training.session as S
from minivit.cli import main
from minivit.training.schedule import Schedule
from minivit.training.time_budget import (
    BudgetPlan,
    Costs,
    EpochTiming,
    RunShape,
    TimeBudgetTooShort,
    fit_budget,
    refit_plan,
)

MASKED, UNMASKED, EVAL_IMAGE, SAVE = 0.25, 0.5, 1 / 64, 0.125   # seconds, exact in binary
# With them, the probes before the first step take 12 masked steps (2 untimed), 5 unmasked
# (1 untimed), 3 evaluations of the 20 val images and a save: 6.5625 s.  An epoch (5 steps,
# an evaluation, a save) takes 1.6875 s and the unmasked last epoch 1.25 s more, so 0.35 min
# less the 4% reserve = 20.16 s fits 7 epochs (6.5625 + 7 * 1.6875 + 1.25 = 19.625 s; 8 would
# take 21.3125 s).
SPENT, BUDGET, EPOCHS = 6.5625, 0.35, 7


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return write_tiny_cifar(tmp_path_factory.mktemp("cifar"))


PROBE_STEPS = 17           # 12 masked and 5 unmasked steps time the first plan


class FakeClock:
    def __init__(self):
        self.now, self.slower, self.interrupt_at, self.steps = 0.0, 1.0, None, 0
        self.run_steps_slower = 1.0          # the steps after the probes: the host's drift

    def perf_counter(self):
        return self.now


@pytest.fixture
def clock(monkeypatch):
    c = FakeClock()
    monkeypatch.setattr(L, "time", SimpleNamespace(perf_counter=c.perf_counter))
    monkeypatch.setattr(S, "time", SimpleNamespace(perf_counter=c.perf_counter))
    step, evaluate, save = O.Classification.step, O.Classification.evaluate, L.save_checkpoint

    def timed_step(self, batch):
        c.steps += 1
        if c.steps == c.interrupt_at:
            raise KeyboardInterrupt
        masked = batch.patch_dropout and self.model.config.patch_drop_rate
        drift = c.run_steps_slower if c.steps > PROBE_STEPS else 1.0
        c.now += (MASKED if masked else UNMASKED) * c.slower * drift
        return step(self, batch)

    def timed_evaluate(self, x, *args, **kwargs):
        c.now += len(x) * EVAL_IMAGE * c.slower
        return evaluate(self, x, *args, **kwargs)

    def timed_save(*args, **kwargs):
        c.now += SAVE * c.slower
        return save(*args, **kwargs)

    monkeypatch.setattr(O.Classification, "step", timed_step)
    monkeypatch.setattr(O.Classification, "evaluate", timed_evaluate)
    monkeypatch.setattr(L, "save_checkpoint", timed_save)
    return c


def budget_cfg(data_dir, run_dir, **kw):
    """Every generator in use, patch dropout with an unmasked last epoch, at most 20 epochs,
    validation after every epoch (the arithmetic of the fake clock's plans counts on it)."""
    return all_rngs_on(data_dir, run_dir,
                       **{"epochs": 20, "time_budget": BUDGET, "eval_every": 1, **kw})


def info(run_dir):
    return json.loads((run_dir / R.CONFIG_FILE).read_text())


def test_the_budget_picks_the_most_whole_epochs_that_fit():
    shape = RunShape(steps_per_epoch=10, max_epochs=50, unmasked_steps=10, val_batches=2,
                     eval_every=3, test_batches=1, checkpoint_every=4)
    costs = Costs(step=1.0, unmasked_step=2.0, eval_batch=0.5, save=0.25)
    # 4 epochs: 30 masked + 10 unmasked steps, validation after epochs 3 and 4 (2 batches
    # each), a test batch per epoch, 4 epoch-end saves + 10 saves every 4 steps
    assert shape.seconds(4, costs) == 30 + 20 + (2 * 2 + 4) * 0.5 + 14 * 0.25
    plan = fit_budget(1.0, spent=0.0, costs=costs, shape=shape)    # 57.6 s: 96% of a minute
    assert (plan.epochs, plan.steps, plan.capped) == (4, 40, False)
    assert shape.seconds(4, costs) <= 57.6 < shape.seconds(5, costs)
    assert plan.estimate_seconds == shape.seconds(4, costs)
    assert fit_budget(1.0, spent=0.2, costs=costs, shape=shape).epochs == 3   # 57.4 s left
    capped = fit_budget(60.0, spent=2.0, costs=costs, shape=shape)
    assert (capped.epochs, capped.capped) == (50, True)
    assert "500 steps = 50 epochs, the --epochs limit (more would fit)" in capped.line()
    with pytest.raises(TimeBudgetTooShort, match="too short: measured 1 s/step, so one "
                                                 "epoch of 10 steps takes about 0.4 min"):
        fit_budget(0.2, spent=2.0, costs=costs, shape=shape)


def test_a_budget_run_fixes_its_steps_from_the_measured_clock(data_dir, tmp_path, clock,
                                                              capsys):
    run = tmp_path / "run"
    result = T.train(budget_cfg(data_dir, run))
    assert result["status"] == "done" and result["step"] == result["total_steps"] == 35
    out = capsys.readouterr().out
    assert ("time budget 0.35 min: measured 0.25 s/step (0.5 s unmasked), 35 steps = "
            "7 epochs; estimated 0.3 min (repeat exactly with --steps 35)") in out
    assert "time budget 0.35 min, took 0.3 min" in out.strip().splitlines()[-1]
    rec = info(run)
    assert (rec["total_steps"], rec["warmup_steps"], rec["unmasked_steps"]) == (35, 3, 5)
    plan = rec["time_budget"]
    assert (plan["minutes"], plan["steps"], plan["epochs"], plan["capped"]) == (0.35, 35, 7,
                                                                                  False)
    assert (plan["step_seconds"], plan["unmasked_step_seconds"], plan["eval_batch_seconds"],
            plan["save_seconds"], plan["spent_seconds"]) == (MASKED, UNMASKED, 20 * EVAL_IMAGE,
                                                             SAVE, SPENT)
    # the costs are exact, so the estimate is what the run took, to the last save
    assert plan["estimate_seconds"] == plan["elapsed_seconds"] == 19.625
    assert rec["train"]["time_budget"] == 0.35 and rec["train"]["steps"] is None
    # the warmup (3 steps, a tenth of the run) ended inside the first epoch (5 steps): a
    # length fitted again would change steps 3-4's learning rate, so the first plan stays
    assert plan["refit_step"] is None and plan["first_steps"] is None
    assert [r["step"] for r in R.StepsLog.read(run)] == list(range(1, 36))   # no probe steps
    assert [r["epoch"] for r in R.read_metrics(run)] == list(range(1, EPOCHS + 1))


@pytest.mark.parametrize("options", [{}, {"ema": 0.9, "layer_decay": 0.75,
                                          "randaugment": [2, 9]}], ids=["recipe", "options"])
def test_a_budget_run_is_the_steps_run_it_chose(data_dir, tmp_path, clock, options):
    """The probe steps are undone, the weight average and RandAugment's draws included."""
    T.train(budget_cfg(data_dir, tmp_path / "budget", **options))
    T.train(all_rngs_on(data_dir, tmp_path / "steps", epochs=20, steps=35, **options))
    assert_same_run(tmp_path / "budget", tmp_path / "steps")     # parameters, bit for bit
    assert info(tmp_path / "steps")["warmup_steps"] == 3
    # every step's loss and learning rate, the warmup's included
    assert R.StepsLog.read(tmp_path / "budget") == R.StepsLog.read(tmp_path / "steps")


@pytest.mark.cupy
@pytest.mark.skipif(not cupy_standin.is_installed(),
                    reason="the CuPy stand-in: run with MINIVIT_CUPY_STANDIN=1 (no GPU)")
def test_on_the_cupy_stand_in_the_probes_leave_no_trace(data_dir, tmp_path, clock):
    """The probes' steps are undone on the device too (cuRAND states, parameter buffer)."""
    previous = backend.get_backend()
    backend.set_backend("cupy")
    try:
        assert T.train(budget_cfg(data_dir, tmp_path / "budget", threads=1))[
            "total_steps"] == 35
        T.train(all_rngs_on(data_dir, tmp_path / "steps", epochs=20, steps=35, threads=1))
    finally:
        backend.set_backend(previous)
    assert_same_run(tmp_path / "budget", tmp_path / "steps")


def test_a_resumed_budget_run_keeps_its_steps_on_a_slower_machine(data_dir, tmp_path, clock,
                                                                   capsys):
    run = tmp_path / "run"
    assert T.train(budget_cfg(data_dir, run, max_steps=12))["status"] == "stopped"
    clock.slower = 10.0                          # a resume on a machine ten times slower
    result = T.resume(run)
    assert result["status"] == "done" and result["step"] == result["total_steps"] == 35
    out = capsys.readouterr().out
    assert "resuming at step 12" in out and "35 steps = 7 epochs" in out
    assert "time budget 0.35 min, took 1.7 min, 1.4 min over" in out.strip().splitlines()[-1]
    # 10.4375 s to step 12, then 23 steps, 5 evaluations and 5 saves at ten times the cost
    plan = info(run)["time_budget"]
    assert plan["steps"] == checkpoint(run)[1]["total_steps"] == 35
    assert plan["elapsed_seconds"] == 10.4375 + 10 * (
        18 * MASKED + 5 * UNMASKED + 5 * (20 * EVAL_IMAGE + SAVE))
    T.train(all_rngs_on(data_dir, tmp_path / "steps", epochs=20, steps=35))
    assert_same_run(run, tmp_path / "steps")


def test_a_run_interrupted_while_timing_times_again_on_resume(data_dir, tmp_path, clock,
                                                              capsys):
    run = tmp_path / "run"
    clock.interrupt_at = 5                       # Ctrl-C in the fifth probe step
    result = T.train(budget_cfg(data_dir, run))
    assert result["status"] == "interrupted" and result["step"] == 0
    assert result["total_steps"] is None and info(run)["total_steps"] is None
    assert "interrupted while timing the steps" in capsys.readouterr().out
    assert checkpoint(run)[1]["step"] == 0 and "time_budget" not in info(run)
    assert checkpoint(run)[1]["total_steps"] is None
    clock.interrupt_at = None
    result = T.resume(run)
    # the 4 steps (1 s) before the interruption count: 7.5625 s spent, 6 epochs fit
    assert result["status"] == "done" and result["total_steps"] == 30
    assert info(run)["time_budget"]["spent_seconds"] == SPENT + 4 * MASKED
    T.train(all_rngs_on(data_dir, tmp_path / "steps", epochs=20, steps=30))
    assert_same_run(run, tmp_path / "steps")


def test_the_flag_and_its_errors(data_dir, tmp_path, clock, capsys):
    run = tmp_path / "run"
    flags = cli_flags(data_dir, run) + ["--epochs", "20", "--patch-drop", "0.25"]
    assert main(flags + ["--time-budget", "0.05"]) == 2          # 3 s: not one epoch
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "time budget 0.05 min is too short" in err[0]
    assert not (run / R.CHECKPOINT_FILE).exists()                # so the same dir can be used
    assert main(flags + ["--time-budget", str(BUDGET)]) == 0
    # validating every 5 epochs (a time budget's default), 8 epochs fit where 7 do with a
    # validation after every epoch (test_a_budget_run_fixes_its_steps_from_the_measured_clock)
    recorded = info(run)
    assert recorded["train"]["time_budget"] == BUDGET and recorded["total_steps"] == 40
    assert recorded["train"]["eval_every"] == 5
    assert main(["train", "--resume", str(run), "--time-budget", "9"]) == 2
    assert "--time-budget cannot be changed" in capsys.readouterr().err
    for bad, message in ((["--time-budget", "0"], "time-budget must be a positive number"),
                         (["--time-budget", "5", "--steps", "10"], "not both")):
        assert main(cli_flags(data_dir, tmp_path / "other") + bad) == 2
        assert message in capsys.readouterr().err


def test_the_first_epoch_s_wall_time_fits_the_length_again():
    shape = RunShape(steps_per_epoch=10, max_epochs=50, unmasked_steps=10, val_batches=2,
                     eval_every=1, test_batches=0, checkpoint_every=0)
    probed = Costs(step=1.0, unmasked_step=2.0, eval_batch=0.5, save=0.25)
    plan = fit_budget(2.0, spent=4.0, costs=probed, shape=shape)    # 111.2 s left: 8 epochs (100 s)
    assert plan.epochs == 8
    # the epoch's steps took 1.2 s each, its validation 1.5 s (the probe said 1.0 s)
    slow = refit_plan(plan, shape, EpochTiming(steps=10, steps_seconds=12.0, eval_seconds=1.5,
                                               step=10), elapsed=17.5)
    assert (slow.step_seconds, slow.unmasked_step_seconds) == (1.2, 2.4)
    assert (slow.eval_batch_seconds, slow.save_seconds, slow.spent_seconds) == (0.75, 0.25, 4.0)
    # an epoch costs 12 + 1.5 + 0.25 = 13.75 s and the unmasked tail 12 s more: 7 fit in
    # 111.2 s (108.25 s; 8 would take 122 s)
    assert (slow.epochs, slow.steps, slow.refit_step) == (7, 70, 10)
    assert (slow.first_steps, slow.first_step_seconds) == (80, 1.0)
    assert slow.first_estimate_seconds == plan.estimate_seconds
    assert slow.estimate_seconds == 4.0 + 7 * 13.75 + 12
    assert "again after step 10, from its wall time; the probe's 1 s/step gave 80 steps" \
        in slow.line()
    assert BudgetPlan.from_dict(slow.to_dict()) == slow                  # config.json's record
    fast = refit_plan(plan, shape, EpochTiming(10, 8.0, 1.0, 10), elapsed=13.0)
    assert fast.epochs == 11                  # 9.25 s an epoch, the tail 8 s more
    late = EpochTiming(10, 110.0, 1.0, 10)                # not one epoch fits any more
    assert refit_plan(plan, shape, late, elapsed=115.0) is None


def test_a_schedule_knows_when_its_first_steps_are_another_length_s():
    a = Schedule(10, 100, 10, 10, 1e-3, 1e-5)
    assert a.same_start(Schedule(10, 70, 10, 10, 1e-3, 1e-5), 10)
    assert not a.same_start(Schedule(10, 70, 10, 10, 1e-3, 1e-5), 11)    # the cosine began
    assert not a.same_start(Schedule(10, 70, 7, 10, 1e-3, 1e-5), 5)      # another warmup
    assert not a.same_start(Schedule(10, 15, 10, 10, 1e-3, 1e-5), 10)    # its tail began
    assert not a.same_start(Schedule(10, 70, 10, 10, 2e-3, 1e-5), 10)


@pytest.mark.parametrize("drift, epochs", [(1.5, 5), (0.5, 12)], ids=["slower", "faster"])
def test_a_budget_run_fits_its_length_again_after_the_first_epoch(data_dir, tmp_path, clock,
                                                                  capsys, drift, epochs):
    """The warmup covers the first epoch (5 steps), so the run is refitted from that epoch's
    wall time, fits the budget, and is exactly the --steps run it names."""
    run, steps = tmp_path / "run", 5 * epochs
    clock.run_steps_slower = drift
    result = T.train(budget_cfg(data_dir, run, warmup_steps=5))
    assert result["status"] == "done" and result["total_steps"] == steps
    out = capsys.readouterr().out
    assert "35 steps = 7 epochs" in out                           # the probe's plan
    assert (f"time budget 0.35 min (again after step 5, from its wall time; the probe's "
            f"0.25 s/step gave 35 steps): measured {MASKED * drift:.3g} s/step") in out
    assert f"{steps} steps = {epochs} epochs" in out
    plan, rec = info(run)["time_budget"], info(run)
    assert (rec["total_steps"], rec["warmup_steps"], rec["unmasked_steps"]) == (steps, 5, 5)
    assert (plan["steps"], plan["first_steps"], plan["refit_step"]) == (steps, 35, 5)
    assert plan["step_seconds"] == MASKED * drift and plan["spent_seconds"] == SPENT
    # the costs after the first epoch are exact, so the estimate is what the run took
    assert plan["estimate_seconds"] == plan["elapsed_seconds"] <= 60 * BUDGET
    assert checkpoint(run)[1]["total_steps"] == steps
    assert [r["epoch"] for r in R.read_metrics(run)] == list(range(1, epochs + 1))
    T.train(all_rngs_on(data_dir, tmp_path / "steps", epochs=20, steps=steps, warmup_steps=5))
    assert_same_run(run, tmp_path / "steps")
    assert R.StepsLog.read(run) == R.StepsLog.read(tmp_path / "steps")


def test_the_length_given_wins_over_the_recipe_s_hour():
    """No length given: a classification run is the recipe's hour (at most 100 epochs), a
    pre-training run 38 epochs; epochs or steps alone are exact; a budget caps at epochs."""
    def length(**kw):
        c = T.TrainConfig(**kw)
        return c.epochs, c.steps, c.time_budget

    assert length() == (100, None, 60.0)
    assert length(epochs=5) == (5, None, None)
    assert length(steps=20) == (100, 20, None)
    assert length(time_budget=10) == (100, None, 10)
    assert length(epochs=5, time_budget=10) == (5, None, 10)
    assert length(objective="mae") == (38, None, None)
    assert length(objective="mae", time_budget=10) == (100, None, 10)
    assert T.TrainConfig.from_dict(T.TrainConfig().to_dict()) == T.TrainConfig()
    with pytest.raises(ValueError, match="give it or --steps, not both"):
        T.TrainConfig(steps=20, time_budget=10)


def test_a_resumed_run_keeps_the_length_fitted_after_its_first_epoch(data_dir, tmp_path,
                                                                    clock, capsys):
    run = tmp_path / "run"
    clock.run_steps_slower = 1.5
    assert T.train(budget_cfg(data_dir, run, warmup_steps=5, max_steps=12))["total_steps"] == 25
    clock.run_steps_slower = 0.25                # faster now: the length stays
    result = T.resume(run)
    assert result["status"] == "done" and result["step"] == result["total_steps"] == 25
    assert "resuming at step 12" in capsys.readouterr().out
    assert info(run)["time_budget"]["refit_step"] == 5
    T.train(all_rngs_on(data_dir, tmp_path / "steps", epochs=20, steps=25, warmup_steps=5))
    assert_same_run(run, tmp_path / "steps")


def test_a_run_resumed_inside_its_first_epoch_keeps_the_first_plan(data_dir, tmp_path, clock):
    run = tmp_path / "run"
    clock.run_steps_slower = 1.5                 # a re-fit would choose 25 steps
    assert T.train(budget_cfg(data_dir, run, warmup_steps=5, max_steps=3))["total_steps"] == 35
    assert T.resume(run)["total_steps"] == 35
    assert info(run)["time_budget"]["refit_step"] is None


def test_a_time_budget_validates_every_few_epochs_unless_told():
    from minivit.training.config import BUDGET_EVAL_EVERY
    assert BUDGET_EVAL_EVERY == 5
    assert T.TrainConfig().eval_every == BUDGET_EVAL_EVERY                 # the recipe's hour
    assert T.TrainConfig(epochs=10, time_budget=30).eval_every == BUDGET_EVAL_EVERY
    assert T.TrainConfig(epochs=10).eval_every == 1                       # a run by epochs
    assert T.TrainConfig(steps=100).eval_every == 1
    assert T.TrainConfig(time_budget=30, eval_every=1).eval_every == 1    # told
    assert T.TrainConfig(time_budget=30, eval_every=0).eval_every == 0
