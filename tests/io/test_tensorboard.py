"""``minivit tensorboard RUN...``: the JSONL logs of a run as an event file, read back here
record by record; a second conversion replaces the file; one-line errors."""

import json
import sys

import pytest

from minivit.cli import main
from minivit.io.tensorboard import EVENT_PREFIX, read_scalars

METRICS = [
    {"epoch": 1, "step": 5, "train_loss": 2.25, "train_acc": 0.125, "val_loss": None,
     "val_acc": None, "lr": 0.001, "images_per_sec": 700.5, "elapsed": 10.0},
    {"epoch": 2, "step": 10, "train_loss": 1.5, "train_acc": 0.375, "val_loss": 1.75,
     "val_acc": 0.25, "lr": 0.0005, "images_per_sec": 710.0, "elapsed": 20.0, "extra": 3},
]
STEPS = [{"step": s, "loss": 2.5 - s / 10, "lr": s / 1000} for s in range(1, 11)]


def make_run(folder):
    folder.mkdir(parents=True)
    (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in METRICS))
    (folder / "steps.jsonl").write_text("".join(json.dumps(r) + "\n" for r in STEPS))
    return folder


def event_files(folder):
    return sorted(folder.glob(EVENT_PREFIX + "*"))


def test_event_file_holds_every_scalar(tmp_path, capsys):
    pytest.importorskip("tensorboardX", reason="tensorboardX not installed")
    run = make_run(tmp_path / "run")
    assert main(["tensorboard", str(run)]) == 0
    assert "(33 scalars)" in capsys.readouterr().out
    [events] = event_files(run / "tensorboard")
    s = read_scalars(events)
    assert s["loss/train"] == [(5, 2.25), (10, 1.5)]
    assert s["accuracy/train"] == [(5, 0.125), (10, 0.375)]
    assert s["loss/val"] == [(10, 1.75)] and s["accuracy/val"] == [(10, 0.25)]
    assert s["epoch"] == [(5, 1.0), (10, 2.0)] and s["metrics/extra"] == [(10, 3.0)]
    assert [st for st, _ in s["loss/train_step"]] == list(range(1, 11))
    assert s["lr/step"][-1] == (10, pytest.approx(0.01))
    assert s["speed/images_per_sec"] == [(5, 700.5), (10, 710.0)]
    assert main(["tensorboard", str(run)]) == 0              # again: replaced, not doubled
    assert len(event_files(run / "tensorboard")) == 1
    assert sorted(p.name for p in (run / "tensorboard").iterdir()) == [
        p.name for p in event_files(run / "tensorboard")]   # no temporary folder left


def test_out_folder_per_run(tmp_path, capsys):
    pytest.importorskip("tensorboardX", reason="tensorboardX not installed")
    a, b = make_run(tmp_path / "runs" / "a"), make_run(tmp_path / "runs" / "b")
    assert main(["tensorboard", str(a), str(b), "--out", str(tmp_path / "tb")]) == 0
    assert "tensorboard --logdir" in capsys.readouterr().out
    assert len(event_files(tmp_path / "tb" / "a")) == len(event_files(tmp_path / "tb" / "b")) == 1
    assert not (a / "tensorboard").exists()


def one_error_line(capsys):
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("minivit tensorboard: error:"), err
    return err[0]


def test_errors(tmp_path, capsys, monkeypatch):
    assert main(["tensorboard", str(tmp_path / "nope")]) == 2
    assert "not found" in one_error_line(capsys)
    a, b = make_run(tmp_path / "x" / "run"), make_run(tmp_path / "y" / "run")
    assert main(["tensorboard", str(a), str(b), "--out", str(tmp_path / "tb")]) == 2
    assert "several runs are named 'run'" in one_error_line(capsys)
    (tmp_path / "empty").mkdir()
    assert main(["tensorboard", str(tmp_path / "empty")]) == 2
    assert "metrics.jsonl not found" in one_error_line(capsys)
    monkeypatch.setitem(sys.modules, "tensorboardX", None)
    assert main(["tensorboard", str(a)]) == 2
    assert 'need tensorboardX' in one_error_line(capsys)
    assert not event_files(a / "tensorboard")


def test_a_linked_events_folder_is_refused(tmp_path, capsys):
    pytest.importorskip("tensorboardX", reason="tensorboardX not installed")
    run = make_run(tmp_path / "run")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (run / "tensorboard").symlink_to(elsewhere)
    assert main(["tensorboard", str(run)]) == 2
    assert "symbolic link" in one_error_line(capsys)
    assert not list(elsewhere.iterdir())
