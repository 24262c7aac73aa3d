"""Short runs and first-use checks of ``minivit train``: the warmup and the unmasked tail of
short runs, the per-step log (steps.jsonl), a --run-dir that is a file, --min-lr above --lr,
the progress bar while validating."""

import json

import pytest

pytest.importorskip("safetensors", reason="runs save .safetensors files (.[io])")

from support import TINY, TINY_FLAGS, make_cfg, write_tiny_cifar

import minivit.io.rundir as R
import minivit.training as T
from minivit.cli import main
from minivit.training.config import TrainConfig, choose_warmup
from minivit.training.schedule import unmasked_steps


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return write_tiny_cifar(tmp_path_factory.mktemp("cifar"))




# ------------------------------------------------------------------ warmup rule
def test_the_default_recipe_keeps_its_one_epoch_warmup():
    w = choose_warmup(TrainConfig(), steps_per_epoch=351, total=38 * 351)
    assert w.steps == 351 and w.note == "" and w.warning == ""


@pytest.mark.parametrize("total, by_epochs, expected", [
    (3510, 351, 351),        # exactly a tenth: unchanged
    (3509, 351, 350),        # a little more than a tenth: a tenth
    (200, 351, 20),
    (5, 351, 1),             # at least one step
])
def test_a_warmup_over_a_tenth_of_the_run_is_cut_to_a_tenth(total, by_epochs, expected):
    w = choose_warmup(TrainConfig(), steps_per_epoch=by_epochs, total=total)
    assert w.steps == expected
    if expected != by_epochs:
        assert w.note == f"a tenth of the run; 1 epoch would be {by_epochs}"


def test_an_explicit_warmup_is_obeyed_with_a_warning_when_it_covers_the_run():
    assert choose_warmup(TrainConfig(warmup_steps=50), 351, 200).steps == 50
    w = choose_warmup(TrainConfig(warmup_steps=300), 351, 200)
    assert w.steps == 200 and "covers the whole run of 200 steps" in w.warning


def test_the_start_line_says_which_warmup_it_chose(data_dir, tmp_path, capsys):
    assert main(["train", "--data-dir", str(data_dir), "--run-dir", str(tmp_path / "r"),
                 "--batch-size", "16", "--val-size", "20", "--steps", "20", "--no-progress",
                 "--threads", "1", *TINY_FLAGS
                 ]) == 0
    out = capsys.readouterr().out
    assert "20 steps (warmup 2 steps (a tenth of the run; 1 epoch would be 5))" in out
    info = json.loads((tmp_path / "r" / R.CONFIG_FILE).read_text())
    assert info["warmup_steps"] == 2


def test_warmup_steps_covering_the_run_warns(data_dir, tmp_path):
    with pytest.warns(UserWarning, match="--warmup-steps 5 covers the whole run of 3 steps"):
        rc = main(["train", "--data-dir", str(data_dir), "--run-dir", str(tmp_path / "r"),
                   "--batch-size", "16", "--val-size", "20", "--steps", "3", "--warmup-steps",
                   "5", "--no-progress", "--threads", "1",
                   *TINY_FLAGS])
    assert rc == 0


def test_resume_keeps_the_recorded_warmup(data_dir, tmp_path):
    """A run recorded before the tenth-of-the-run rule (warmup_epochs 1 = 5 of 10 steps,
    config.json's warmup_steps 5) resumes with warmup 5, as it was trained straight."""
    straight, old = tmp_path / "straight", tmp_path / "old"
    T.train(make_cfg(data_dir, straight, warmup_steps=5))
    T.train(make_cfg(data_dir, old, warmup_steps=5, max_steps=3))
    info = json.loads((old / R.CONFIG_FILE).read_text())
    assert info["warmup_steps"] == 5
    info["train"]["warmup_steps"] = None                  # the warmup came from warmup_epochs
    (old / R.CONFIG_FILE).write_text(json.dumps(info))
    T.resume(old)
    a, b = R.StepsLog.read(straight), R.StepsLog.read(old)
    assert len(a) == 10 and [r["lr"] for r in a] == [r["lr"] for r in b]
    assert [r["loss"] for r in a] == [r["loss"] for r in b]


# ------------------------------------------------------------------ steps.jsonl
def test_every_step_is_logged_and_a_resume_trims_the_log(data_dir, tmp_path):
    run = tmp_path / "run"
    T.train(make_cfg(data_dir, run, max_steps=3))
    steps = R.StepsLog.read(run)
    assert [r["step"] for r in steps] == [1, 2, 3]
    with open(run / R.STEPS_FILE, "a") as f:                # written after the checkpoint
        f.write('{"step": 4, "loss": 1.0, "lr": 0.1}\n{"step": 5, "lo')
    T.resume(run)
    assert [r["step"] for r in R.StepsLog.read(run)] == list(range(1, 11))


# ------------------------------------------------------------------ refused early
def test_a_run_dir_that_is_a_file_is_refused_before_loading_data(tmp_path, capsys):
    f = tmp_path / "taken"
    f.write_text("x")
    nowhere = tmp_path / "no-data-here"                      # loading it would fail otherwise
    for run_dir in (f, f / "sub"):
        rc = main(["train", "--data-dir", str(nowhere), "--run-dir", str(run_dir),
                   "--no-progress"])
        err = capsys.readouterr().err.strip().splitlines()
        assert rc == 2 and len(err) == 1, err
        assert "cannot be made" in err[0] and "is a file" in err[0]


def test_min_lr_above_lr_is_refused():
    with pytest.raises(ValueError, match=r"min-lr \(0.1\) must not be above lr \(0.001\)"):
        TrainConfig(min_lr=0.1)


def test_counted_nouns_are_singular_for_one():
    from minivit.console import plural
    assert plural(1, "step") == "1 step" and plural(2, "step") == "2 steps"
    assert plural(1.0, "epoch") == "1 epoch" and plural(0.5, "epoch") == "0.5 epochs"


def test_a_one_step_run_says_1_step(data_dir, tmp_path, capsys):
    T.train(make_cfg(data_dir, tmp_path / "r", steps=1))
    out = capsys.readouterr().out
    assert "1 step (warmup 1 step" in out and "done, 1 step;" in out


# ------------------------------------------------------------------ a first look
@pytest.mark.parametrize("total, expected", [
    (300, 30),               # --steps 300 with the recipe's 351-step unmasked epoch: a tenth
    (9, 0),                  # a tenth of 9 steps: none
    (351, 351),              # one whole epoch: the tail as asked
    (2000, 351),
])
def test_a_run_shorter_than_an_epoch_keeps_patch_dropout(total, expected):
    assert unmasked_steps(351, total, steps_per_epoch=351) == expected


def test_a_short_run_trains_with_patch_dropout_and_says_so(data_dir, tmp_path, capsys):
    """A 4-step run of a 5-step epoch: the recipe's unmasked epoch would be all of it."""
    cfg = make_cfg(data_dir, tmp_path / "r", steps=4, epochs=None,
                   model_overrides={**TINY, "patch_drop_rate": 0.5})
    T.train(cfg)
    info = json.loads((tmp_path / "r" / R.CONFIG_FILE).read_text())
    assert info["unmasked_steps"] == 0 and info["total_steps"] == 4
    T.train(make_cfg(data_dir, tmp_path / "s", steps=10, epochs=None,
                     model_overrides={**TINY, "patch_drop_rate": 0.5}))
    assert "), the last 5 steps without patch dropout, run dir" \
        in capsys.readouterr().out


class RecordingBar:
    """A stand-in for tqdm that records its descriptions and pauses."""

    def __init__(self, *args, **kwargs):
        self.events, self.total = [], kwargs.get("total")

    def set_description_str(self, text, refresh=True):
        self.events.append(("desc", text))

    def unpause(self):
        self.events.append(("unpause",))

    def update(self, n=1):
        self.events.append(("step",))

    def set_postfix(self, *args, **kwargs):
        pass

    def write(self, text):
        pass

    def close(self):
        pass


def test_the_bar_says_validating_and_its_rate_leaves_the_evaluation_out(data_dir, tmp_path,
                                                                        monkeypatch):
    import minivit.training.epoch as E
    import minivit.training.session as S
    bars = []
    monkeypatch.setattr(S, "progress_bar", lambda *a, **k: bars.append(RecordingBar()) or bars[-1])
    evaluated = []
    real = E.evaluate_epoch

    def spy(objective, *args, **kwargs):
        bar = args[-1] if len(args) == 7 else kwargs.get("bar")
        evaluated.append(list(bar.events))                       # the bar before evaluating
        return real(objective, *args, **kwargs)

    monkeypatch.setattr("minivit.training.loop.evaluate_epoch", spy)
    T.train(make_cfg(data_dir, tmp_path / "r", progress=True))
    events = bars[0].events
    steps_at = [i for i, e in enumerate(events) if e == ("step",)]
    validating = [i for i, e in enumerate(events) if e == ("desc", "validating")]
    assert len(validating) == 2 and len(steps_at) == 10          # 2 epochs of 5 steps
    for v in validating:                                           # after each epoch's steps:
        assert events[v + 1] == ("desc", "") and events[v + 2] == ("unpause",)
    assert steps_at[4] < validating[0] < steps_at[5]
