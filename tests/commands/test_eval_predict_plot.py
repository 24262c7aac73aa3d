"""``minivit eval``, ``predict`` and ``plot`` on a tiny run trained once for the module."""

import json

import numpy as np
import pytest

Image = pytest.importorskip("PIL.Image", reason="predict reads images with Pillow (.[viz])")

from minivit.cli import main
from minivit.data.synthetic import LABEL_NAMES, make_images, write_cifar10_like
from minivit.training import TrainConfig, train

TINY = {"embed_dim": 16, "depth": 1, "num_heads": 2, "mlp_dim": 32}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    data = write_cifar10_like(tmp_path_factory.mktemp("cifar"), n_train_per_batch=20, n_test=30)
    run = tmp_path_factory.mktemp("runs") / "tiny"
    train(TrainConfig(model_overrides=TINY, batch_size=16, val_size=20, epochs=2,
                      data_dir=str(data), run_dir=str(run), progress=False))
    return run


def one_error_line(capsys, command):
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"minivit {command}: error:"), err
    return err[0]


def test_eval_prints_accuracy_table_and_confusion_matrix(run_dir, tmp_path, capsys):
    out_json = tmp_path / "report.json"
    assert main(["eval", str(run_dir), "--json", str(out_json)]) == 0
    out = capsys.readouterr().out
    assert "accuracy" in out and "on 30 test images" in out
    assert "confusion matrix" in out and all(name in out for name in LABEL_NAMES)
    report = json.loads(out_json.read_text())
    conf = np.array(report["confusion"])
    assert conf.shape == (10, 10) and conf.sum() == 30
    assert report["accuracy"] == pytest.approx(np.trace(conf) / 30)
    assert (run_dir / "eval-test.json").is_file()


def test_eval_out_writes_the_report_there_and_not_into_the_run(run_dir, tmp_path, capsys):
    before = (run_dir / "eval-val.json").stat().st_mtime_ns          # written by train
    assert main(["eval", str(run_dir), "--split", "val", "--out", str(tmp_path)]) == 0
    assert (tmp_path / "eval-val.json").is_file()
    assert (run_dir / "eval-val.json").stat().st_mtime_ns == before
    assert main(["eval", str(run_dir), "--split", "val", "--out", str(tmp_path / "r.json")]) == 0
    assert json.loads((tmp_path / "r.json").read_text())["split"] == "val"
    assert f"wrote {tmp_path / 'r.json'}" in capsys.readouterr().out


@pytest.mark.parametrize("command", ["eval", "plot", "inspect", "linprobe", "reconstruct"])
def test_every_command_that_writes_takes_out(command, capsys):
    with pytest.raises(SystemExit):
        main([command, "--help"])
    assert "--out" in capsys.readouterr().out


def test_eval_a_model_file_on_the_val_split(run_dir, capsys):
    assert main(["eval", str(run_dir / "model.safetensors"), "--split", "val"]) == 0
    assert "on 20 val images" in capsys.readouterr().out


def test_eval_gives_the_same_report_on_one_or_three_threads(run_dir, tmp_path, capsys):
    reports = []
    for threads in ("1", "3"):
        out = tmp_path / f"eval{threads}.json"
        assert main(["eval", str(run_dir), "--threads", threads, "--json", str(out)]) == 0
        reports.append(json.loads(out.read_text()))
    assert reports[0]["confusion"] == reports[1]["confusion"]
    assert reports[0]["loss"] == pytest.approx(reports[1]["loss"], rel=1e-6)
    assert main(["eval", str(run_dir), "--threads", "-1"]) == 2
    assert "threads must be an integer >= 0" in capsys.readouterr().err


def test_predict_prints_top5_classes(run_dir, tmp_path, capsys):
    pixels = make_images([3], np.random.default_rng(0))[0].transpose(1, 2, 0)   # (32, 32, 3)
    path = tmp_path / "cat.png"
    Image.fromarray(pixels).resize((48, 40)).save(path)          # resized back to 32 x 32
    gray = tmp_path / "gray.jpg"
    Image.fromarray(pixels[:, :, 0]).save(gray)                  # converted to RGB
    assert main(["predict", str(run_dir), str(path), str(gray)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == str(path) and lines[6] == str(gray)
    ranked = lines[1:6]
    assert [ln.split()[0] for ln in ranked] == ["1.", "2.", "3.", "4.", "5."]
    assert all(ln.split()[1] in LABEL_NAMES for ln in ranked)
    probs = [float(ln.split()[-1]) for ln in ranked]
    assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1.0001


def test_predict_top_ten_aligns_two_digit_ranks_and_notes_tiny_images(run_dir, tmp_path,
                                                                      capsys):
    tiny = tmp_path / "dot.png"
    Image.fromarray(np.zeros((1, 1, 3), np.uint8)).save(tiny)
    assert main(["predict", str(run_dir), str(tiny), "--top", "10"]) == 0
    captured = capsys.readouterr()
    rows = captured.out.splitlines()[1:]
    assert [r.split()[0] for r in rows] == [f"{k}." for k in range(1, 11)]
    assert len({r.index(r.split()[1]) for r in rows}) == 1          # names in one column
    assert captured.err.strip() == f"minivit: note: {tiny} is 1x1, enlarged to the model's 32x32"


def run_cli(*argv):
    """python -m minivit ARGV in a fresh interpreter -> (exit status, stderr lines)."""
    import os
    import subprocess
    import sys
    from pathlib import Path
    root = str(Path(__file__).resolve().parents[2])
    env = {**os.environ, "PYTHONPATH": root + os.pathsep + os.environ.get("PYTHONPATH", ""),
           "OPENBLAS_NUM_THREADS": "1"}
    env.pop("MINIVIT_DEBUG", None)
    r = subprocess.run([sys.executable, "-m", "minivit", *argv], env=env, capture_output=True,
                       text=True, timeout=300)
    return r.returncode, r.stderr.strip().splitlines()


@pytest.mark.parametrize("argv, command, message", [
    (["predict", "RUN", "IMG", "--std", "0", "0", "0"], "predict",
     "--std values must be numbers in [0.001, 1]"),
    (["predict", "RUN", "IMG", "--top", "20"], "predict",
     "--top must be at most the model's 10 classes, got 20"),
    (["train", "--min-lr", "0.1", "--lr", "0.01"], "train",
     "min-lr (0.1) must not be above lr (0.01)"),
])
def test_refused_from_the_command_line_with_one_line(run_dir, tmp_path, argv, command,
                                                      message):
    img = tmp_path / "img.png"
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(img)
    argv = [{"RUN": str(run_dir), "IMG": str(img)}.get(a, a) for a in argv]
    rc, err = run_cli(*argv)
    assert rc == 2 and len(err) == 1, err
    assert err[0].startswith(f"minivit {command}: error:") and message in err[0], err


@pytest.mark.slow
def test_plot_writes_curves_and_confusion(run_dir, tmp_path, capsys):
    import shutil
    longer = tmp_path / "run"                               # three epochs: per-epoch curves
    shutil.copytree(run_dir, longer)
    last = json.loads((longer / "metrics.jsonl").read_text().splitlines()[-1])
    with open(longer / "metrics.jsonl", "a") as f:
        f.write(json.dumps({**last, "epoch": 3}) + "\n")
    assert main(["plot", str(longer), "--out", str(tmp_path)]) == 0
    for name in ("curves.png", "confusion.png"):
        with Image.open(tmp_path / name) as img:
            assert img.format == "PNG" and img.size[0] > 200
    with Image.open(tmp_path / "curves.png") as img:     # loss, accuracy, lr: 13 in at 120 dpi
        assert img.size[0] == 13 * 120


@pytest.mark.slow
def test_plot_of_a_short_run_draws_every_step(run_dir, tmp_path, capsys):
    import shutil
    assert main(["plot", str(run_dir), "--out", str(tmp_path / "a")]) == 0   # 2 epochs
    assert "loss and lr per step: 2 epochs recorded" in capsys.readouterr().out
    with Image.open(tmp_path / "a" / "curves.png") as img:   # loss and lr per step: 9 in
        assert img.size[0] == 9 * 120
    early = tmp_path / "early"                           # stopped before its first epoch
    shutil.copytree(run_dir, early)
    (early / "metrics.jsonl").unlink()
    (early / "steps.jsonl").write_text("".join(
        ln + "\n" for ln in (early / "steps.jsonl").read_text().splitlines()[:3]))
    assert main(["plot", str(early), "--out", str(tmp_path / "b")]) == 0
    assert (tmp_path / "b" / "curves.png").is_file()
    (early / "steps.jsonl").unlink()
    assert main(["plot", str(early)]) == 2
    assert one_error_line(capsys, "plot").endswith(f"no step recorded yet in {early}")


def test_missing_or_unreadable_inputs_exit_2_with_one_line(run_dir, tmp_path, capsys):
    assert main(["eval", str(tmp_path / "nope")]) == 2
    assert "not found" in one_error_line(capsys, "eval")
    assert main(["eval", str(tmp_path)]) == 2                   # a folder that is not a run
    assert "not a training run directory" in one_error_line(capsys, "eval")
    assert main(["plot", str(tmp_path / "nope")]) == 2
    assert "not found" in one_error_line(capsys, "plot")
    assert main(["plot", str(tmp_path)]) == 2
    assert "is not a training run directory" in one_error_line(capsys, "plot")
    bad = tmp_path / "bad.png"
    bad.write_text("not an image")
    assert main(["predict", str(run_dir), str(bad)]) == 2
    assert "cannot read image" in one_error_line(capsys, "predict")
    assert main(["predict", str(run_dir), str(tmp_path / "missing.png")]) == 2
    assert "not found" in one_error_line(capsys, "predict")


def test_plot_without_matplotlib_says_how_to_install_it(run_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(__import__("sys").modules, "matplotlib.figure", None)
    assert main(["plot", str(run_dir), "--out", str(tmp_path)]) == 2
    assert 'pip install -e ".[viz]"' in one_error_line(capsys, "plot")


def test_bad_flag_values_are_one_line(capsys):
    from minivit.cli import main
    with pytest.raises(SystemExit) as e:
        main(["train", "--lr", "abc"])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--lr: invalid float value: 'abc'" in err


def test_missing_data_is_one_line(tmp_path, capsys, monkeypatch):
    from minivit.cli import main
    monkeypatch.delenv("MINIVIT_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert main(["train", "--data-dir", str(tmp_path / "nowhere"), "--steps", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "was not found" in err and "nowhere" in err and "--data-dir" in err
