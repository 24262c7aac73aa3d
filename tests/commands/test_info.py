"""``minivit info`` lists every config that ``--config`` accepts; ``minivit.TrainConfig``."""

import pytest

import minivit
from minivit.cli import main
from minivit.models.resnet_config import RESNET_CONFIGS
from minivit.models.vit_config import CONFIGS
from minivit.training.config import TrainConfig


def listed_configs(out):
    """The first word of each table row that names a config."""
    return [line.split()[0] for line in out.splitlines()
            if line.split() and line.split()[-1].replace(",", "").isdigit()]


def test_info_lists_every_config_train_accepts(capsys):
    assert main(["info"]) == 0
    listed = listed_configs(capsys.readouterr().out)
    assert listed == [*CONFIGS, *RESNET_CONFIGS]
    for name in listed:
        assert TrainConfig(model=name, steps=1).model == name      # accepted by --config


def test_info_gives_the_resnets_parameter_counts(capsys):
    assert main(["info"]) == 0
    rows = {line.split()[0]: line.split() for line in capsys.readouterr().out.splitlines()
            if line.startswith("resnet")}
    assert rows["resnet14"][1:] == ["32", "2,2,2", "16,32,64", "10", "175,258"]


def test_train_config_is_exported():
    assert minivit.TrainConfig is TrainConfig
    assert "TrainConfig" in minivit.__all__
    assert minivit.TrainConfig().model == "cifar-nano"
    with pytest.raises(ValueError, match="unknown model config"):
        minivit.TrainConfig(model="resnet15")
