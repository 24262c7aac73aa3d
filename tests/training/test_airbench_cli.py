"""The airbench teacher through the command line on tiny synthetic CIFAR-10 files: trained by
``minivit train --config airbench`` with its whitening filters set from the training images,
scored by ``minivit eval``, and distilled into a ViT student."""

import numpy as np
import pytest

pytest.importorskip("safetensors", reason="runs save .safetensors files (.[io])")

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


def test_the_teacher_is_a_saved_airbench_net_whitened_from_the_data(data_dir, teacher):
    model = load(teacher / "model.safetensors")
    assert type(model).__name__ == "AirbenchNet" and model.config.widths == (8, 16, 16)
    assert int(model.buffers["block1.norm1.num_batches_tracked"]) == 5
    whitened = create_airbench(model.config)
    prepare_convnet(whitened, load_cifar10(data_dir, 20))
    fresh = create_airbench(model.config)
    assert not np.allclose(whitened.params["whiten.weight"], fresh.params["whiten.weight"])
    # trained by AdamW for 5 steps: the filters moved a little from the whitening
    assert np.abs(model.params["whiten.weight"] - whitened.params["whiten.weight"]).max() < 0.1


def test_eval_scores_the_teacher_and_a_student_learns_from_it(data_dir, teacher, tmp_path):
    assert main(["eval", str(teacher), "--split", "test", "--data-dir", str(data_dir)]) == 0
    run = tmp_path / "student"
    assert main(["train", "--teacher", str(teacher), "--distill", "hard", *STUDENT,
                 *common(data_dir, run)]) == 0
    assert load(run / "model.safetensors").config.distilled
