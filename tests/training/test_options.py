"""The options a recipe search tries: --ema, --layer-decay, --randaugment (all off by
default).  The moving average by hand, its checkpoint and Ctrl-C rollback, bit-identical
resume with all three on, the flags, old run directories, and independence of --threads."""

import json

import numpy as np
import pytest
from support import TINY, all_rngs_on, assert_same_run, checkpoint, cli_flags, write_tiny_cifar
from support import two_thread_cfg as make_cfg

import minivit
import minivit.io.rundir as R
import minivit.training as T
import minivit.training.step_window as W
from minivit.backend import to_numpy
from minivit.cli import main
from minivit.io.serialization import load
from minivit.training.ema import WithEMA, ema_decay

LEVERS = dict(ema=0.9, layer_decay=0.75, randaugment=[2, 9])


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return write_tiny_cifar(tmp_path_factory.mktemp("cifar"))


class _SetTo:
    """An optimizer whose step sets the parameters to the next of ``targets``."""

    def __init__(self, targets):
        self.targets, self.step_count = targets, 0

    def step(self, params, grads, lr=None):
        params.flat[...] = self.targets[self.step_count]
        self.step_count += 1

    def state_dict(self):
        return {"step": self.step_count}

    def load_state_dict(self, state):
        self.step_count = int(state["step"])


def test_the_average_by_hand_with_its_warmup(xp):
    model = minivit.create_model("cifar-nano", seed=0, depth=1, embed_dim=8, num_heads=2,
                                 mlp_dim=8, dtype="float64")
    p0 = model.flat_params.copy()
    targets = [p0 + 1.0, p0 * 2.0, p0 - 3.0]
    opt = WithEMA(_SetTo(targets), model, decay=0.5)
    assert [ema_decay(0.5, t) for t in (1, 2, 10)] == [0.1, 2 / 11, 0.5]
    want = p0
    for t, target in enumerate(targets, 1):
        opt.step(model.params, model.grads)
        d = min(0.5, t / (t + 9))
        want = d * want + (1 - d) * target
        np.testing.assert_allclose(to_numpy(opt.ema), to_numpy(want), rtol=1e-14, atol=1e-14)
    with opt.ema_weights(model):
        assert bool((model.flat_params == opt.ema).all())
        assert bool((model.params["head.weight"] == opt.layout.views(opt.ema)["head.weight"]).all())
    assert bool((model.flat_params == targets[-1]).all())        # its own weights are back
    state = opt.state_dict()
    assert state["step"] == 3 and "ema.pos_embed" in state
    other = WithEMA(_SetTo(targets), model, decay=0.5)
    other.load_state_dict({k: (v.copy() if hasattr(v, "copy") else v) for k, v in state.items()})
    assert other.step_count == 3 and bool((other.ema == opt.ema).all())
    with pytest.raises(ValueError, match="no EMA weights"):
        other.load_state_dict({"step": 3})
    with pytest.raises(ValueError, match="in \\(0, 1\\)"):
        WithEMA(_SetTo(targets), model, decay=1.0)


def test_resume_with_every_option_on_is_bit_identical(data_dir, tmp_path):
    T.train(all_rngs_on(data_dir, tmp_path / "straight", **LEVERS))
    T.train(all_rngs_on(data_dir, tmp_path / "resumed", max_steps=3, **LEVERS))
    assert T.resume(tmp_path / "resumed", max_steps=5)["step"] == 5
    assert T.resume(tmp_path / "resumed")["status"] == "done"
    assert_same_run(tmp_path / "straight", tmp_path / "resumed")
    tensors, _ = checkpoint(tmp_path / "straight")
    model = load(tmp_path / "straight" / R.MODEL_FILE)
    for k, v in model.params.items():                   # the saved model is the average
        assert np.array_equal(v, tensors[f"optim.ema.{k}"]), k
    assert not np.array_equal(model.params["head.weight"], tensors["model.head.weight"])
    records = R.read_metrics(tmp_path / "straight")
    assert records[0]["raw_val_acc"] is None and records[-1]["raw_val_acc"] is not None
    assert records[-1]["raw_val_loss"] != records[-1]["val_loss"]


def test_ctrl_c_after_the_average_moved_rolls_it_back(data_dir, tmp_path, monkeypatch):
    T.train(all_rngs_on(data_dir, tmp_path / "straight", **LEVERS))
    real, calls = W.StepWindow.add, []

    def interrupt_at_step_7(self, *args):              # after the optimizer and the average
        calls.append(1)
        if len(calls) == 7:
            raise KeyboardInterrupt
        return real(self, *args)

    monkeypatch.setattr(W.StepWindow, "add", interrupt_at_step_7)
    assert T.train(all_rngs_on(data_dir, tmp_path / "resumed", **LEVERS))["step"] == 6
    monkeypatch.setattr(W.StepWindow, "add", real)
    assert T.resume(tmp_path / "resumed")["status"] == "done"
    assert_same_run(tmp_path / "straight", tmp_path / "resumed")


def test_the_flags_reach_config_json_and_the_defaults_are_off(data_dir, tmp_path):
    d = T.TrainConfig()
    assert (d.ema, d.layer_decay, d.randaugment) == (0.0, 1.0, None)
    run = tmp_path / "run"
    assert main(cli_flags(data_dir, run) + ["--epochs", "1", "--ema", "0.99", "--layer-decay",
                                            "0.8", "--randaugment", "3,5"]) == 0
    train = json.loads((run / "config.json").read_text())["train"]
    assert (train["ema"], train["layer_decay"], train["randaugment"]) == (0.99, 0.8, [3, 5])
    assert T.load_train_config(run).randaugment == [3, 5]
    run2 = tmp_path / "run2"
    assert main(cli_flags(data_dir, run2) + ["--epochs", "1", "--randaugment", "7"]) == 0
    assert json.loads((run2 / "config.json").read_text())["train"]["randaugment"] == [2, 7]


def test_train_size_trains_on_a_balanced_subset(data_dir, tmp_path):
    run = tmp_path / "run"
    assert main(cli_flags(data_dir, run) + ["--epochs", "1", "--train-size", "40"]) == 0
    info = json.loads((run / "config.json").read_text())
    assert info["train"]["train_size"] == 40 and info["data"]["n_train"] == 40
    assert info["steps_per_epoch"] == 40 // 16 and info["data"]["n_val"] == 20
    assert T.load_train_config(run).train_size == 40
    assert T.TrainConfig().train_size is None


@pytest.mark.parametrize("flags, message", [
    (["--ema", "1"], "ema must be in (0, 1), or 0 (off)"),
    (["--ema", "-0.5"], "ema must be in (0, 1)"),
    (["--layer-decay", "0"], "layer-decay must be in (0, 1]"),
    (["--randaugment", "x"], "randaugment must be N,M"),
    (["--randaugment", "2,11"], "magnitude M in 0-10"),
    (["--randaugment", "0,5"], "randaugment must be N,M"),
    (["--train-size", "0"], "train-size must be a positive integer"),
    (["--train-size", "1000"], "train_size must be an int in 10..80"),
])
def test_bad_values_give_one_line_and_exit_2(data_dir, tmp_path, flags, message, capsys):
    rc = main(cli_flags(data_dir, tmp_path / "run") + flags)
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1, err
    assert err[0].startswith("minivit train: error:") and message in err[0], err[0]


def test_layer_decay_is_for_vit_classifiers():
    for kw in (dict(model="resnet8"), dict(objective="mae")):
        with pytest.raises(ValueError, match="not for a ResNet or pre-training"):
            T.TrainConfig(layer_decay=0.5, **kw)
    T.TrainConfig(model="resnet8", ema=0.99, randaugment=(1, 3))   # those two work for all


def test_runs_recorded_without_the_options_load_with_them_off(data_dir, tmp_path):
    run = tmp_path / "run"
    T.train(make_cfg(data_dir, run, max_steps=2))
    info = json.loads((run / "config.json").read_text())
    for k in ("ema", "layer_decay", "randaugment"):
        del info["train"][k]
    (run / "config.json").write_text(json.dumps(info))
    cfg = T.load_train_config(run)
    assert (cfg.ema, cfg.layer_decay, cfg.randaugment) == (0.0, 1.0, None)
    assert T.resume(run, max_steps=4)["step"] == 4


def test_randaugment_does_not_depend_on_the_number_of_threads(data_dir, tmp_path):
    """The whole batch is augmented before it is split over threads."""
    params = []
    for threads in (1, 2):
        run = tmp_path / f"t{threads}"
        T.train(make_cfg(data_dir, run, dtype="float64", threads=threads, eval_every=0,
                         model_overrides=dict(TINY), **LEVERS))
        params.append(load(run / R.MODEL_FILE).params)
    worst = max(float(np.abs(params[0][k] - params[1][k]).max()) for k in params[0])
    assert worst < 1e-10, worst
