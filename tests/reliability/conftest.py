"""What the reliability tests share: tiny CIFAR-10 files and a tiny finished run to damage
(copy it first: ``support.copy_run``)."""

import pytest
from support import make_cfg, write_tiny_cifar

import minivit.training as T


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return write_tiny_cifar(tmp_path_factory.mktemp("cifar"))


@pytest.fixture(scope="module")
def base_run(data_dir, tmp_path_factory):
    run = tmp_path_factory.mktemp("runs") / "base"
    T.train(make_cfg(data_dir, run, max_steps=5))
    return run
