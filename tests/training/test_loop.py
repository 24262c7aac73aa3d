"""The training loop: run files, bit-identical resume, divergence, Ctrl-C, flag errors.

Everything runs on tiny synthetic CIFAR-10 files (100 training images) and a one-block ViT,
so each test takes about a second."""

import json
import os
import signal
import time
from pathlib import Path

import numpy as np
import pytest

safe_open = pytest.importorskip("safetensors",
                                reason="runs save .safetensors files (.[io])").safe_open
load_file = pytest.importorskip("safetensors.numpy").load_file

from support import (
    TINY,
    all_rngs_on,
    assert_same_run,
    checkpoint,
    cli_flags,
    two_thread_cfg,
    write_tiny_cifar,
)

import minivit.io.rundir as R
import minivit.training as T
import minivit.training.loop as L
import minivit.training.objectives.classification as O
from minivit.analysis.evaluation import evaluate
from minivit.cli import main
from minivit.io.serialization import load
from minivit.models.vit_config import get_config
from minivit.training.config import OLD_RUN_DEFAULTS


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return write_tiny_cifar(tmp_path_factory.mktemp("cifar"))


def make_cfg(data_dir, run_dir, **kw):
    return two_thread_cfg(data_dir, run_dir, **kw)


def test_a_few_steps_write_the_run_files(data_dir, tmp_path):
    run = tmp_path / "run"
    result = T.train(make_cfg(data_dir, run, eval_test=True))
    assert result["status"] == "done" and result["step"] == 10 == result["total_steps"]
    records = R.read_metrics(run)
    assert [r["epoch"] for r in records] == [1, 2] and [r["step"] for r in records] == [5, 10]
    for key in ("train_loss", "train_acc", "val_loss", "val_acc", "test_acc", "lr",
                "images_per_sec", "elapsed"):
        assert all(r[key] is not None and np.isfinite(r[key]) for r in records), key
    info = json.loads((run / "config.json").read_text())
    assert info["train"]["batch_size"] == 16 and info["model"]["embed_dim"] == 16
    assert len(info["data"]["mean"]) == 3 and info["data"]["label_names"][0] == "airplane"
    tensors, state = checkpoint(run)
    assert state["step"] == 10 and state["optimizer_step"] == 10
    assert any(k.startswith("optim.exp_avg.") for k in tensors)
    model = load(run / R.MODEL_FILE)
    for k, v in model.params.items():
        assert np.array_equal(v, tensors[f"model.{k}"])
    assert json.loads((run / "eval-val.json").read_text())["n"] == 20


def test_resume_is_bit_identical(data_dir, tmp_path):
    T.train(all_rngs_on(data_dir, tmp_path / "straight"))
    first = T.train(all_rngs_on(data_dir, tmp_path / "resumed", max_steps=3))  # mid-epoch
    assert first["status"] == "stopped" and checkpoint(tmp_path / "resumed")[1]["step"] == 3
    assert T.resume(tmp_path / "resumed", max_steps=5)["step"] == 5         # an epoch end
    assert T.resume(tmp_path / "resumed", max_steps=7)["step"] == 7         # unmasked tuning
    assert T.resume(tmp_path / "resumed")["status"] == "done"
    assert_same_run(tmp_path / "straight", tmp_path / "resumed")


def test_a_hybrid_run_from_the_cli_resumes_bit_identically(data_dir, tmp_path, capsys):
    """--set conv_stem=[8,16]: the stem's channels go through config.json and back."""
    flags = cli_flags(data_dir, tmp_path / "straight") + ["--set", "conv_stem=[8,16]"]
    assert main(flags) == 0
    flags = cli_flags(data_dir, tmp_path / "resumed") + ["--set", "conv_stem=[8,16]"]
    assert main(flags + ["--max-steps", "7"]) == 0
    assert main(["train", "--resume", str(tmp_path / "resumed"), "--no-progress"]) == 0
    assert_same_run(tmp_path / "straight", tmp_path / "resumed")
    assert load(tmp_path / "resumed" / R.MODEL_FILE).config.conv_stem == (8, 16)
    assert "conv stem [8, 16]" in capsys.readouterr().out


def test_patch_drop_flag_reaches_the_model_config(data_dir, tmp_path):
    run = tmp_path / "run"
    assert main(cli_flags(data_dir, run) + ["--patch-drop", "0.5", "--epochs", "1"]) == 0
    info = json.loads((run / "config.json").read_text())
    assert info["train"]["model_overrides"]["patch_drop_rate"] == 0.5
    assert info["model"]["patch_drop_rate"] == 0.5
    assert load(run / R.MODEL_FILE).config.num_patches == 64     # evaluation sees every patch


def test_unmasked_epochs_train_the_last_steps_on_every_token(data_dir, tmp_path):
    """Unmasked tuning: patch dropout is off for the last unmasked_epochs, in every thread."""
    pd = dict(TINY, patch_drop_rate=0.5)
    runs = {name: tmp_path / name for name in ("all", "none", "last", "never")}
    T.train(make_cfg(data_dir, runs["all"], model_overrides=pd, unmasked_epochs=2))
    T.train(make_cfg(data_dir, runs["none"], unmasked_epochs=0))           # no patch dropout
    assert_same_run(runs["all"], runs["none"])        # unmasked from the start = never dropped
    T.train(make_cfg(data_dir, runs["last"], model_overrides=pd, unmasked_epochs=1))
    T.train(make_cfg(data_dir, runs["never"], model_overrides=pd, unmasked_epochs=0))
    last, never = R.read_metrics(runs["last"]), R.read_metrics(runs["never"])
    assert last[0]["train_loss"] == never[0]["train_loss"]          # epoch 1: both drop
    assert last[1]["train_loss"] != never[1]["train_loss"]          # epoch 2: one does not
    info = [json.loads((runs[n] / "config.json").read_text()) for n in ("all", "last", "never")]
    assert [i["unmasked_steps"] for i in info] == [10, 5, 0]
    # the saved model keeps the run's config, whatever the phase it ended in
    assert load(runs["last"] / R.MODEL_FILE).config.patch_drop_rate == 0.5


def test_runs_recorded_before_unmasked_tuning_resume_without_it(data_dir, tmp_path):
    run = tmp_path / "run"
    T.train(make_cfg(data_dir, run, max_steps=2))
    info = json.loads((run / "config.json").read_text())
    del info["train"]["unmasked_epochs"]
    (run / "config.json").write_text(json.dumps(info))
    assert T.load_train_config(run).unmasked_epochs == 0.0
    assert T.TrainConfig().unmasked_epochs == 1.0


def test_the_recipe_model_overrides_are_defaults_that_flags_add_to(data_dir, tmp_path):
    assert T.TrainConfig().model_overrides == T.RECIPE_MODEL_OVERRIDES
    assert T.TrainConfig(objective="mae").model_overrides == {}     # MAE masks by itself
    assert T.TrainConfig(model_overrides={"depth": 2}).model_overrides == {"depth": 2}
    run = tmp_path / "run"
    assert main(cli_flags(data_dir, run) + ["--set", "pool=token", "--epochs", "1"]) == 0
    model = json.loads((run / "config.json").read_text())["model"]
    assert (model["depth"], model["pool"], model["patch_drop_rate"]) == (1, "token", 0.5)


ROOT = Path(__file__).resolve().parents[2]
REPORTED_RUN = ROOT / "results" / "cifar-nano-hour-s0"     # the README's default run (seed 0)


def test_the_defaults_are_the_reported_cpu_run():
    """`minivit train` with no options is the run whose figures the README reports."""
    reported = json.loads((REPORTED_RUN / "config.json").read_text())
    ignore = set(T.SESSION_FIELDS) | {"run_dir"}
    defaults = {k: v for k, v in T.TrainConfig().to_dict().items() if k not in ignore}
    recorded = {**OLD_RUN_DEFAULTS, **reported["train"]}   # fields added since: their defaults
    assert defaults == {k: v for k, v in recorded.items() if k not in ignore}
    model = get_config(defaults["model"], **defaults["model_overrides"], num_classes=10)
    assert model.to_dict() == {"distilled": False, **reported["model"]}


def test_the_reported_run_s_committed_model_is_trained():
    """results/<the default run>/model.safetensors is the model of its config.json, and it
    classifies the committed sample of 64 CIFAR-10 test images as a trained model does (56 of
    them when it was committed; chance is about 6); its recorded test accuracy is the
    README's, at least 82%, in a run that kept to its one-hour budget."""
    reported = json.loads((REPORTED_RUN / "config.json").read_text())
    model = load(REPORTED_RUN / "model.safetensors")
    assert model.config.to_dict() == {"distilled": False, **reported["model"]}
    sample = np.load(ROOT / "walkthroughs" / "assets" / "cifar10_sample.npz")
    np.testing.assert_allclose(sample["mean"], reported["data"]["mean"], rtol=1e-12)
    result = evaluate(model, sample["x"], sample["y"], sample["mean"], sample["std"])
    assert result["n"] == 64 and result["acc"] >= 0.75
    reported_test = json.loads((REPORTED_RUN / "eval-test.json").read_text())
    assert reported_test["n"] == 10000 and reported_test["accuracy"] >= 0.82
    plan = reported["time_budget"]
    assert plan["minutes"] == 60 and plan["elapsed_seconds"] <= 60 * 60


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(data_dir, tmp_path, monkeypatch,
                                                          capsys):
    real, calls = O.cross_entropy_device, []

    def nan_on_fourth_step(logits, labels, smoothing=0.0):
        calls.append(1)
        loss, dlogits = real(logits, labels, smoothing)
        return (np.float64("nan") if len(calls) == 4 else loss), dlogits

    monkeypatch.setattr(O, "cross_entropy_device", nan_on_fourth_step)
    run = tmp_path / "run"
    assert main(cli_flags(data_dir, run) + ["--checkpoint-every", "2", "--threads", "1"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "loss is nan at step 4" in err[0]
    assert "last good checkpoint" in err[0] and "(step 2)" in err[0]
    assert checkpoint(run)[1]["step"] == 2                    # not overwritten
    assert np.isfinite(checkpoint(run)[0]["model.head.weight"]).all()


def test_huge_learning_rate_diverges_with_a_clear_message(data_dir, tmp_path, capsys):
    rc = main(cli_flags(data_dir, tmp_path / "run") + ["--lr", "1e30", "--warmup-steps", "0"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1 and len(err) == 1
    assert "at step 2" in err[0] and "training stopped" in err[0]


def test_ctrl_c_saves_and_resume_continues_exactly(data_dir, tmp_path, monkeypatch, capsys):
    T.train(all_rngs_on(data_dir, tmp_path / "straight"))
    real, calls = L.clip_flat_grads, []

    def interrupt_during_step_7(grads, max_norm):       # after this step drew its randoms
        calls.append(1)
        if len(calls) == 7:
            raise KeyboardInterrupt
        return real(grads, max_norm)

    monkeypatch.setattr(L, "clip_flat_grads", interrupt_during_step_7)
    result = T.train(all_rngs_on(data_dir, tmp_path / "resumed"))
    assert result["status"] == "interrupted" and result["step"] == 6
    out = capsys.readouterr().out
    assert f"minivit train --resume {tmp_path / 'resumed'}" in out
    monkeypatch.setattr(L, "clip_flat_grads", real)
    assert main(["train", "--resume", str(tmp_path / "resumed"), "--no-progress"]) == 0
    assert_same_run(tmp_path / "straight", tmp_path / "resumed")


@pytest.mark.skipif(not hasattr(signal, "SIGTERM") or os.name == "nt",
                    reason="needs POSIX signals")
def test_sigterm_saves_like_ctrl_c_and_resume_continues_exactly(data_dir, tmp_path,
                                                                  monkeypatch, capsys):
    T.train(all_rngs_on(data_dir, tmp_path / "straight"))
    real, calls, missed = L.clip_flat_grads, [], []

    def fallback(signum, frame):          # sees SIGTERM only if train() does not handle it
        missed.append(signum)

    before = signal.signal(signal.SIGTERM, fallback)

    def terminate_during_step_7(grads, max_norm):        # `kill PID` while step 7 runs
        calls.append(1)
        if len(calls) == 7:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(1)                                 # the handler raises in here
        return real(grads, max_norm)

    monkeypatch.setattr(L, "clip_flat_grads", terminate_during_step_7)
    result = T.train(all_rngs_on(data_dir, tmp_path / "resumed"))
    assert signal.signal(signal.SIGTERM, before) is fallback   # train() put it back
    assert not missed and result["status"] == "interrupted" and result["step"] == 6
    assert f"minivit train --resume {tmp_path / 'resumed'}" in capsys.readouterr().out
    monkeypatch.setattr(L, "clip_flat_grads", real)
    assert main(["train", "--resume", str(tmp_path / "resumed"), "--no-progress"]) == 0
    assert_same_run(tmp_path / "straight", tmp_path / "resumed")


def test_ctrl_c_from_the_cli_exits_130_with_the_resume_command(data_dir, tmp_path,
                                                                 monkeypatch, capsys):
    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(L, "clip_flat_grads", interrupt)
    run = tmp_path / "run"
    assert main(cli_flags(data_dir, run)) == 130
    assert "--resume" in capsys.readouterr().out
    assert checkpoint(run)[1]["step"] == 0


@pytest.mark.parametrize("flags, message", [
    (["--lr", "-1"], "lr must be a positive number"),
    (["--batch-size", "0"], "batch-size must be a positive integer"),
    (["--config", "nope"], "unknown model config 'nope'"),
    (["--set", "depth=0"], "depth must be a positive integer"),
    (["--set", "nonsense=1"], "model overrides must be ViTConfig fields"),
    (["--label-smoothing", "1.5"], "label-smoothing must be in [0, 1)"),
    (["--batch-size", "1000"], "larger than the training set"),
    (["--threads", "-1"], "threads must be an integer >= 0"),
    (["--patch-drop", "1"], "patch_drop_rate must be in [0, 1)"),
    (["--unmasked-epochs", "-1"], "unmasked-epochs must be >= 0"),
])
def test_bad_flags_give_one_line_and_exit_2(data_dir, tmp_path, flags, message, capsys):
    rc = main(cli_flags(data_dir, tmp_path / "run") + flags)
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1, err
    assert err[0].startswith("minivit train: error:") and message in err[0]


def test_resume_refuses_a_damaged_checkpoint(data_dir, tmp_path, capsys):
    run = tmp_path / "run"
    T.train(make_cfg(data_dir, run, max_steps=3))
    path = run / R.CHECKPOINT_FILE
    data = bytearray(path.read_bytes())
    data[-50] ^= 0x01                                    # a bit flipped inside the tensors
    path.write_bytes(bytes(data))
    assert main(["train", "--resume", str(run)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "checkpoint.safetensors: file is corrupt" in err[0]


def test_resume_refuses_changed_settings_and_fresh_runs_refuse_a_used_dir(data_dir, tmp_path,
                                                                          capsys):
    run = tmp_path / "run"
    assert main(cli_flags(data_dir, run) + ["--max-steps", "2"]) == 0
    capsys.readouterr()
    assert main(["train", "--resume", str(run), "--lr", "0.1"]) == 2
    assert "--lr cannot be changed" in capsys.readouterr().err
    assert main(cli_flags(data_dir, run)) == 2
    assert "already holds a run" in capsys.readouterr().err
    assert main(["train", "--resume", str(tmp_path / "nonexistent")]) == 2
    assert "not a training run directory" in capsys.readouterr().err


def test_a_run_is_the_same_function_for_any_number_of_threads(data_dir, tmp_path):
    """Two epochs with every random mask on (dropout, drop-path, patch dropout), float64:
    one thread and two give the same parameters up to the rounding of the gradient sum."""
    overrides = dict(TINY, drop_rate=0.1, drop_path_rate=0.2, patch_drop_rate=0.25)
    params = []
    for threads in (1, 2):
        run = tmp_path / f"t{threads}"
        T.train(make_cfg(data_dir, run, model_overrides=overrides, dtype="float64",
                         threads=threads, eval_every=0))
        params.append(load(run / R.MODEL_FILE).params)
    worst = max(float(np.abs(params[0][k] - params[1][k]).max()) for k in params[0])
    assert worst < 1e-10, worst
