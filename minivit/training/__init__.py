"""Training: the loop (loop.py), its configuration (config.py), the objectives it trains
(objectives/), the optimizers, schedule, EMA and layer decay, checkpoints and time budgets.

    from minivit.training import TrainConfig, train, resume
    train(TrainConfig(model="cifar-nano", epochs=10, run_dir="runs/nano"))
"""

from minivit.training.config import (
                                     RECIPE_MODEL_OVERRIDES,
                                     SESSION_FIELDS,
                                     TrainConfig,
                                     load_train_config,
)
from minivit.training.guards import TrainingDiverged
from minivit.training.loop import resume, train

__all__ = ["RECIPE_MODEL_OVERRIDES", "SESSION_FIELDS", "TrainConfig", "TrainingDiverged",
           "load_train_config", "resume", "train"]
