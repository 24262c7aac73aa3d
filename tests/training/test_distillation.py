"""Distillation end to end on tiny synthetic CIFAR-10 files: a ResNet teacher trained by the
CLI, distilled students (hard and soft), bit-identical resume of a distilled run and of a
ResNet run, and the one-line errors for bad combinations."""

import json

import numpy as np
import pytest

pytest.importorskip("safetensors", reason="runs save .safetensors files (.[io])")

from support import assert_same_run

import minivit.training as T
from minivit.analysis.heads import HEAD_AGREEMENT
from minivit.backend import to_numpy
from minivit.cli import main
from minivit.data import load_cifar10, normalize
from minivit.data.synthetic import write_cifar10_like
from minivit.io.serialization import load
from minivit.training.batch import Batch
from minivit.training.objectives import make_objective

STUDENT = ["--set", "embed_dim=16", "--set", "depth=1", "--set", "num_heads=2",
           "--set", "mlp_dim=32"]
STUDENT_OVERRIDES = {"embed_dim": 16, "depth": 1, "num_heads": 2, "mlp_dim": 32,
                     "pool": "token", "patch_drop_rate": 0.25, "drop_path_rate": 0.1}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return write_cifar10_like(tmp_path_factory.mktemp("cifar"), n_train_per_batch=20, n_test=30)


def common(data_dir, run_dir, epochs=1):
    return ["--data-dir", str(data_dir), "--run-dir", str(run_dir), "--batch-size", "16",
            "--val-size", "20", "--epochs", str(epochs), "--no-progress", "--threads", "2"]


@pytest.fixture(scope="module")
def teacher(data_dir, tmp_path_factory):
    run = tmp_path_factory.mktemp("teacher") / "t"
    assert main(["train", "--config", "resnet8", "--set", "widths=[4,8,8]",
                 *common(data_dir, run)]) == 0
    return run


def test_the_teacher_is_a_saved_resnet(teacher):
    model = load(teacher / "model.safetensors")
    assert type(model).__name__ == "ResNet" and model.config.widths == (4, 8, 8)
    assert int(model.buffers["bn1.num_batches_tracked"]) == 5


@pytest.mark.parametrize("kind", ["hard", "soft"])
def test_cli_distils_a_student(data_dir, teacher, tmp_path, capsys, kind):
    run = tmp_path / kind
    flags = ["--distill", kind] + (["--distill-tau", "2", "--distill-lambda", "0.5"]
                                   if kind == "soft" else [])
    assert main(["train", "--teacher", str(teacher), *flags, *STUDENT,
                 *common(data_dir, run)]) == 0
    out = capsys.readouterr().out
    assert "distilled student (distilled=true" in out and kind in out
    assert "(class head " in out and "agrees with the teacher" in out       # the epoch's line
    student = load(run / "model.safetensors")
    assert student.config.distilled and student.config.pool == "token"
    assert "head_dist.weight" in student.params
    cfg = T.load_train_config(run)
    assert cfg.teacher == str(teacher) and cfg.distill == kind
    last = json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])
    for name in HEAD_AGREEMENT:                      # the heads' agreement, every validation
        rate = last[f"val_{name}"]                   # a count of the 20 validation images
        assert 0 <= rate <= 1 and abs(rate * 20 - round(rate * 20)) < 1e-9
    capsys.readouterr()
    report = tmp_path / f"{kind}-val.json"
    assert main(["eval", str(run), "--split", "val", "--data-dir", str(data_dir),
                 "--json", str(report)]) == 0
    out = capsys.readouterr().out
    assert "heads (clean images): class head" in out and "agreement with the teacher" in out
    heads = json.loads(report.read_text())["heads"]        # the last validation, read again
    assert heads == {"teacher": str(teacher), **{k: last[f"val_{k}"] for k in HEAD_AGREEMENT}}


def test_eval_reports_the_heads_alone_when_the_teacher_is_gone(data_dir, teacher, tmp_path,
                                                              capsys):
    gone = tmp_path / "teacher-copy"
    gone.mkdir()
    (gone / "model.safetensors").write_bytes((teacher / "model.safetensors").read_bytes())
    (gone / "config.json").write_text((teacher / "config.json").read_text())
    run = tmp_path / "student"
    assert main(["train", "--teacher", str(gone), *STUDENT, *common(data_dir, run)]) == 0
    (gone / "model.safetensors").unlink()
    capsys.readouterr()
    assert main(["eval", str(run), "--split", "val", "--data-dir", str(data_dir),
                 "--out", str(tmp_path / "val.json")]) == 0
    out = capsys.readouterr().out
    assert "the run's teacher is not read" in out and "agreement with the teacher" not in out
    heads = json.loads((tmp_path / "val.json").read_text())["heads"]
    assert heads["teacher"] is None and set(heads) == {"teacher", *HEAD_AGREEMENT[:3]}
    assert 0 <= heads["cls_acc"] <= 1


def test_the_teacher_sees_its_own_normalisation(data_dir, teacher, tmp_path):
    """A student on --train-size images normalises with their statistics; the teacher still
    gets the images as its own run normalised them, in training and in validation."""
    cfg = T.TrainConfig(model_overrides=dict(STUDENT_OVERRIDES), batch_size=16, val_size=20,
                        data_dir=str(data_dir), run_dir=str(tmp_path / "s"), threads=1,
                        teacher=str(teacher), train_size=40, dtype="float64")
    data = load_cifar10(data_dir, 20, train_size=40)
    t_stats = json.loads((teacher / "config.json").read_text())["data"]
    assert not np.allclose(data.mean, t_stats["mean"], rtol=0, atol=1e-6)  # they do differ
    objective = make_objective(cfg, data)
    seen = []
    forward = objective.teacher_parallel.forward
    objective.teacher_parallel.forward = lambda x: seen.append(to_numpy(x)) or forward(x)
    u8 = data.train_x[:16]
    batch = Batch(normalize(u8, data.mean, data.std, "float64"), data.train_y[:16],
                  data.train_y[:16], 0.0)
    objective.forward_backward(batch)
    np.testing.assert_allclose(seen[0], normalize(u8, t_stats["mean"], t_stats["std"],
                                                  "float64"), rtol=0, atol=1e-12)
    counts = objective.evaluate_images(data.val_x, data.val_y, data.mean, data.std)["counts"]
    val_in = normalize(data.val_x, t_stats["mean"], t_stats["std"], "float64")
    np.testing.assert_allclose(seen[1], val_in, rtol=0, atol=1e-12)
    want = to_numpy(objective.teacher.model.forward(val_in).argmax(1))
    assert counts["teacher_acc"] == int((want == data.val_y).sum())
    objective.close()


def test_eval_gives_the_teacher_its_own_normalisation(data_dir, teacher, tmp_path,
                                                     monkeypatch):
    run = tmp_path / "student"
    assert main(["train", "--teacher", str(teacher), "--train-size", "40", *STUDENT,
                 *common(data_dir, run)]) == 0
    stats = {name: json.loads((r / "config.json").read_text())["data"]
             for name, r in (("student", run), ("teacher", teacher))}
    assert stats["student"]["mean"] != stats["teacher"]["mean"]
    import minivit.commands.eval as E
    real, used = E.teacher_predictions, []
    monkeypatch.setattr(E, "teacher_predictions",
                        lambda tp, x, mean, std, bs: used.append((mean, std)) or real(
                            tp, x, mean, std, bs))
    assert main(["eval", str(run), "--split", "val", "--data-dir", str(data_dir),
                 "--out", str(tmp_path / "val.json")]) == 0
    assert used == [(stats["teacher"]["mean"], stats["teacher"]["std"])]


def test_distilled_resume_is_bit_identical(data_dir, teacher, tmp_path):
    def cfg(run, **kw):
        return T.TrainConfig(model_overrides=dict(STUDENT_OVERRIDES), batch_size=16,
                             val_size=20, epochs=2, data_dir=str(data_dir), run_dir=str(run),
                             progress=False, threads=2, teacher=str(teacher), distill="soft",
                             mixup=0.8, **kw)
    T.train(cfg(tmp_path / "straight"))
    assert T.train(cfg(tmp_path / "split", max_steps=3))["status"] == "stopped"
    T.resume(tmp_path / "split")
    assert_same_run(tmp_path / "straight", tmp_path / "split")


def test_resnet_resume_is_bit_identical_with_its_running_stats(data_dir, tmp_path):
    def cfg(run, **kw):
        return T.TrainConfig(model="resnet8", model_overrides={"widths": [4, 8, 8]},
                             batch_size=16, val_size=20, epochs=2, data_dir=str(data_dir),
                             run_dir=str(run), progress=False, threads=2, **kw)
    T.train(cfg(tmp_path / "straight"))
    T.train(cfg(tmp_path / "split", max_steps=7))
    T.resume(tmp_path / "split")
    assert_same_run(tmp_path / "straight", tmp_path / "split")
    a, b = load(tmp_path / "straight" / "model.safetensors"), load(
        tmp_path / "split" / "model.safetensors")
    for k in a.buffers:
        assert np.array_equal(a.buffers[k], b.buffers[k]), k


@pytest.mark.parametrize("flags,message", [
    (["--distill", "hard"], "--distill needs --teacher"),
    (["--set", "distilled=true"], "learns from a teacher"),
    (["--teacher", "TEACHER", "--set", "pool=mean"], "pool='token'"),
    (["--teacher", "TEACHER", "--set", "distilled=false"], "distilled ViT"),
    (["--teacher", "TEACHER", "--distill", "soft", "--distill-lambda", "2"],
     "distill-lambda must be in [0, 1]"),
    (["--teacher", "TEACHER", "--distill-tau", "2"], "soft distillation only"),
    (["--distill-lambda", "0.5"], "soft distillation only"),
    (["--config", "resnet8", "--teacher", "TEACHER"], "convnet teacher"),
    (["--teacher", "/nonexistent/run"], "nonexistent"),
])
def test_bad_combinations_fail_in_one_line(data_dir, teacher, tmp_path, capsys, flags, message):
    flags = [str(teacher) if f == "TEACHER" else f for f in flags]
    assert main(["train", *flags, *common(data_dir, tmp_path / "r")]) != 0
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1, err


def test_a_teacher_with_other_classes_is_refused(data_dir, tmp_path, capsys):
    from minivit.io.serialization import save
    from minivit.models.resnet import create_resnet
    path = tmp_path / "t100.safetensors"
    save(create_resnet("resnet8", num_classes=100), path)
    assert main(["train", "--teacher", str(path), *STUDENT,
                 *common(data_dir, tmp_path / "r")]) != 0
    err = capsys.readouterr().err.strip()
    assert "predicts 100 classes, the data have 10" in err and len(err.splitlines()) == 1
