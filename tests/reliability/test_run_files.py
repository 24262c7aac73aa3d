"""Files read back from a run directory are not trusted: one bounded JSON reader with a
schema per file (minivit/io/json_files.py, run_schema.py); every damaged or hostile file is
one line naming the file and the field, in predict, eval, plot and train --resume."""

import dataclasses
import json
import os
import re

import pytest

pytest.importorskip("safetensors", reason="runs save .safetensors files (.[io])")

from support import cli, copy_run, error_line

import minivit.io.files as F
import minivit.io.rundir as R
from minivit.io import json_files as J
from minivit.io.run_schema import TRAIN_SECTION
from minivit.training.config import TrainConfig


@pytest.fixture(scope="module")
def image(tmp_path_factory):
    Image = pytest.importorskip("PIL.Image", reason="predict reads images with Pillow")
    path = tmp_path_factory.mktemp("img") / "red.png"
    Image.new("RGB", (32, 32), (200, 10, 10)).save(path)
    return path


# ------------------------------------------------------------------ the reader itself
def test_reader_bounds_depth_size_and_kind(tmp_path):
    p = tmp_path / "a.json"
    p.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(ValueError, match=r"a.json: nested more than 32 deep"):
        J.read_json_file(p)
    p.write_text("[" * 40 + "]" * 40)                    # parses, but deeper than allowed
    with pytest.raises(ValueError, match="nested more than 32 deep"):
        J.read_json_file(p)
    p.write_text('{"x": "' + "y" * 2000 + '"}')
    with pytest.raises(ValueError, match=r"2,009 bytes, more than the 1,000"):
        J.read_json_file(p, max_bytes=1000)
    p.write_bytes(b'{"x": "\xff"}')
    with pytest.raises(ValueError, match="not UTF-8|not valid JSON"):
        J.read_json_file(p)
    p.write_text('{"n": ' + "9" * 5000 + "}")            # Python refuses ints this long
    with pytest.raises(ValueError, match="not valid JSON"):
        J.read_json_file(p)
    fifo = tmp_path / "fifo.json"
    os.mkfifo(fifo)                                       # would block a plain open()
    with pytest.raises(ValueError, match="not a plain file"):
        J.read_json_file(fifo)
    with pytest.raises(FileNotFoundError, match="missing.json not found"):
        J.read_json_file(tmp_path / "missing.json")


@pytest.mark.parametrize("value, message", [
    ({"data": [1]}, "field data: expected an object"),
    ({"data": {"mean": ["a", 0, 0]}}, r"field data.mean\[0\]: expected a number"),
    ({"data": {"mean": [0.5, 0.5, float("nan")]}}, r"data.mean\[2\]: expected a finite"),
    ({"data": {"std": [0.2, 0.2, 0]}}, r"data.std\[2\]: expected a number in \[0.001, 1\]"),
    ({"data": {"label_names": []}}, "data.label_names: a list of 0 entries"),
    ({"train": 5}, "field train: expected an object"),
    ({"train": {"lr": "0.1"}}, "field train.lr: expected a number"),
    ({"train": {"val_size": 1e400}}, "train.val_size: expected an integer"),
    ({"train": {"objective": "steal"}}, "train.objective: expected one of classify"),
    ({"warmup_steps": -3}, r"field warmup_steps: expected an integer in \[0"),
    ({"time_budget": {"minutes": 1}}, "field time_budget: has no 'steps'"),
    ([], "top level: expected an object"),
])
def test_config_schema_names_the_field(tmp_path, value, message):
    (tmp_path / R.CONFIG_FILE).write_text(json.dumps(value))
    with pytest.raises(ValueError, match=message):
        R.read_run_info(tmp_path)


def test_jsonl_torn_last_line_dropped_bad_complete_line_named(tmp_path):
    path = tmp_path / R.METRICS_FILE
    path.write_text('{"epoch": 1, "step": 5}\n{"epoch": 2, "st')
    with pytest.warns(UserWarning, match="line 2: dropped an incomplete last line"):
        assert R.read_metrics(tmp_path) == [{"epoch": 1, "step": 5}]
    path.write_text('{"epoch": 1, "step": 5}\n{"epoch": 2, "val_acc": 7}\n')
    with pytest.raises(ValueError, match=r"line 2: not a metrics record \(field val_acc"):
        R.read_metrics(tmp_path)
    (tmp_path / R.STEPS_FILE).write_text('{"step": "x", "loss": 1, "lr": 0}\n{"step": 2, '
                                         '"loss": 1, "lr": 0}\n')
    with pytest.raises(ValueError, match=r"steps.jsonl line 1: not a step record"):
        R.StepsLog.read(tmp_path)


# ------------------------------------------------------------------ through the command line
def _damage(run, **change):
    info = json.loads((run / R.CONFIG_FILE).read_text())
    for dotted, value in change.items():
        *path, last = dotted.split("__")
        node = info
        for key in path:
            node = node[key]
        node[last] = value
    (run / R.CONFIG_FILE).write_text(json.dumps(info))


@pytest.mark.slow                        # several processes
def test_deep_and_huge_config_json_in_predict_and_resume(base_run, image, tmp_path):
    deep = copy_run(base_run, tmp_path / "deep")
    (deep / R.CONFIG_FILE).write_text("[" * 100_000 + "]" * 100_000)
    assert "nested more than 32 deep" in error_line(cli("predict", deep, image))
    assert "nested more than 32 deep" in error_line(cli("train", "--resume", deep))
    big = copy_run(base_run, tmp_path / "big")
    with open(big / R.CONFIG_FILE, "wb") as f:              # sparse: 100 MB, no disk used
        f.truncate(100 << 20)
    assert "more than the 67,108,864" in error_line(cli("predict", big, image))


@pytest.mark.parametrize("change, command, message", [
    ({"train__lr": "x"}, "resume", "field train.lr: expected a number"),
    ({"train": 5}, "eval", "field train: expected an object"),
    ({"data__mean": ["a", "b", "c"]}, "predict", r"field data.mean\[0\]"),
    ({"data__label_names": ["a", "b", "c"]}, "predict", "names 3 classes, the model has 10"),
    ({"train__val_size": 10**30}, "eval", r"val_size must be an int in 0\.\.99"),
    ({"warmup_steps": "7"}, "resume", "field warmup_steps: expected an integer"),
    ({"time_budget": {"minutes": "x"}}, "resume", "field time_budget"),
])
def test_malformed_config_json_is_one_line(base_run, data_dir, image, tmp_path, change, command,
                                           message):
    run = copy_run(base_run, tmp_path / "run")
    _damage(run, **change)
    args = {"resume": ["train", "--resume", run], "predict": ["predict", run, image],
            "eval": ["eval", run, "--data-dir", data_dir]}[command]
    line = error_line(cli(*args))
    assert re.search(message, line), line
    assert str(run) in line or "val_size" in line        # val_size is checked against the data


@pytest.mark.slow                        # several processes
def test_plot_refuses_a_damaged_eval_report_and_steps_log(base_run, tmp_path):
    run = copy_run(base_run, tmp_path / "run")
    report = json.loads((run / R.EVAL_VAL_FILE).read_text())
    (run / R.EVAL_VAL_FILE).write_text(json.dumps({**report, "confusion": 5}))
    line = error_line(cli("plot", run, "--out", tmp_path / "plots"))
    assert "eval-val.json: field confusion: expected a list" in line
    (run / R.EVAL_VAL_FILE).write_text(json.dumps({**report, "confusion": [[1, 2], [3, 4]]}))
    assert "expected 10 rows of 10 counts" in error_line(
        cli("plot", run, "--out", tmp_path / "plots"))
    (run / R.EVAL_VAL_FILE).unlink()
    (run / R.METRICS_FILE).unlink()
    (run / R.STEPS_FILE).write_text('{"step": 1, "loss": "x", "lr": 0.1}\n'
                                    '{"step": 2, "loss": 1.0, "lr": 0.1}\n')
    assert "steps.jsonl line 1: not a step record (field loss" in error_line(
        cli("plot", run, "--out", tmp_path / "plots"))


@pytest.mark.parametrize("state, message", [
    ("[" * 100_000 + "]" * 100_000, "nested more than 32 deep"),
    ('{"rng": {}, "optimizer_step": 5, "step": "five"}', "field state.step: expected an integer"),
    ('{"rng": {}, "optimizer_step": 5, "elapsed": -1}', "field state.elapsed"),
], ids=["deep", "step-a-string", "negative-elapsed"])
def test_a_crafted_checkpoint_state_with_a_valid_checksum(base_run, tmp_path, state, message):
    run = copy_run(base_run, tmp_path / "run")
    arrays, meta = F.read_arrays(run / R.CHECKPOINT_FILE)
    F.write_arrays(run / R.CHECKPOINT_FILE, arrays, {**meta, "state": state})   # new checksum
    line = error_line(cli("train", "--resume", run))
    assert "the checkpoint's state is damaged" in line and message in line


def test_the_schema_covers_every_training_field():
    assert {f.name for f in dataclasses.fields(TrainConfig)} == set(TRAIN_SECTION.fields)
    TRAIN_SECTION.check({**TrainConfig(randaugment="2,9.5").to_dict()}, "train")
