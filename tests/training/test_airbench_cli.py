"""The airbench teacher through the command line on tiny synthetic CIFAR-10 files: trained by
``minivit train --config airbench`` with its recipe (airbench's optimizer, whitening filters
set from the training images and kept, test-time augmentation), scored by ``minivit eval``,
resumed bit for bit, and distilled into a ViT student."""

import numpy as np
import pytest

pytest.importorskip("safetensors", reason="runs save .safetensors files (.[io])")

from safetensors import safe_open
from support import assert_same_run

import minivit.training as T
from minivit.cli import main
from minivit.data.cifar10 import load_cifar10
from minivit.data.synthetic import write_cifar10_like
from minivit.io.serialization import load
from minivit.models.airbench import create_airbench
from minivit.models.convnets import prepare_convnet

pytestmark = pytest.mark.slow
SMALL = ["--set", "widths=8,16,16"]
STUDENT = ["--set", "embed_dim=16", "--set", "depth=1", "--set", "num_heads=2",
           "--set", "mlp_dim=32"]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return write_cifar10_like(tmp_path_factory.mktemp("cifar"), n_train_per_batch=20, n_test=30)


def common(data_dir, run_dir):
    return ["--data-dir", str(data_dir), "--run-dir", str(run_dir), "--batch-size", "16",
            "--val-size", "20", "--epochs", "1", "--no-progress", "--threads", "2"]


@pytest.fixture(scope="module")
def teacher(data_dir, tmp_path_factory):
    run = tmp_path_factory.mktemp("teacher") / "t"
    assert main(["train", "--config", "airbench", *SMALL, *common(data_dir, run)]) == 0
    return run


def test_the_start_line_names_the_recipe(data_dir, tmp_path, capsys):
    assert main(["train", "--config", "airbench", *SMALL, "--max-steps", "1",
                 *common(data_dir, tmp_path / "r")]) == 0
    out = capsys.readouterr().out
    assert "label smoothing 0.2, airbench's optimizer" in out
    assert "test-time augmentation 2" in out


def test_the_teacher_is_a_saved_airbench_net_whitened_from_the_data(data_dir, teacher):
    cfg = T.load_train_config(teacher)
    assert (cfg.optimizer, cfg.tta, cfg.label_smoothing, cfg.clip_grad) == ("airbench", 2, 0.2, 0)
    model = load(teacher / "model.safetensors")
    assert type(model).__name__ == "AirbenchNet" and model.config.widths == (8, 16, 16)
    assert int(model.buffers["block1.norm1.num_batches_tracked"]) == 5
    whitened = create_airbench(model.config)
    prepare_convnet(whitened, load_cifar10(data_dir, 20))
    fresh = create_airbench(model.config)
    assert not np.allclose(whitened.params["whiten.weight"], fresh.params["whiten.weight"])
    assert np.array_equal(model.params["whiten.weight"], whitened.params["whiten.weight"])


def test_eval_scores_the_teacher_and_a_student_learns_from_it(data_dir, teacher, tmp_path,
                                                             capsys):
    assert main(["eval", str(teacher), "--split", "test", "--data-dir", str(data_dir)]) == 0
    assert "with test-time augmentation 2" in capsys.readouterr().out
    run = tmp_path / "student"
    assert main(["train", "--teacher", str(teacher), "--distill", "hard", *STUDENT,
                 *common(data_dir, run)]) == 0
    assert load(run / "model.safetensors").config.distilled


def test_an_airbench_run_resumes_bit_for_bit_through_lookahead(data_dir, tmp_path):
    """5 epochs of 5 steps: the slow weights are taken at step 20 (epoch 3), averaged at 25;
    the run is cut at step 22, between the two."""
    def cfg(run, **kw):
        return T.TrainConfig(model="airbench", model_overrides={"widths": [4, 8, 8]},
                             optimizer="airbench", lr=0.05, weight_decay=0.01, clip_grad=0.0,
                             batch_size=16, val_size=20, epochs=5, tta=1,
                             data_dir=str(data_dir), run_dir=str(run), progress=False,
                             threads=2, **kw)
    T.train(cfg(tmp_path / "straight"))
    T.train(cfg(tmp_path / "split", max_steps=22))
    with safe_open(str(tmp_path / "split" / "checkpoint.safetensors"), "np") as f:
        assert "optim.lookahead.params" in f.keys()
    T.resume(tmp_path / "split")
    assert_same_run(tmp_path / "straight", tmp_path / "split")
    a, b = (load(tmp_path / r / "model.safetensors") for r in ("straight", "split"))
    for k in a.buffers:
        assert np.array_equal(a.buffers[k], b.buffers[k]), k


@pytest.mark.parametrize("flags,message", [
    (["--config", "resnet8", "--optimizer", "airbench"], "optimizer airbench trains the airbench"),
    (["--config", "airbench", "--time-budget", "5"], "no time budget"),
])
def test_bad_airbench_options_fail_in_one_line(data_dir, tmp_path, capsys, flags, message):
    assert main(["train", *flags, *common(data_dir, tmp_path / "r")]) != 0
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1, err
