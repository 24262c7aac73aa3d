"""What the training loop trains (the contract: base.py): classification, distillation from a
teacher, and the two pre-training objectives, MAE and masked patch prediction."""

from minivit.training.objectives.base import Objective, errors_ignored
from minivit.training.objectives.classification import Classification
from minivit.training.objectives.distillation import Distillation
from minivit.training.objectives.mae import MAEObjective
from minivit.training.objectives.mpp import MPPObjective
from minivit.training.objectives.pretraining import EVAL_STREAM, Pretraining


def make_objective(cfg, data, resume: bool = False, ranks=None) -> Objective:
    """The objective of a TrainConfig: classification (with ``cfg.teacher``: distillation),
    or pre-training for cfg.objective "mae" / "mpp".  ranks: the run's processes."""
    if cfg.objective == "mae":
        return MAEObjective(cfg, data, ranks)
    if cfg.objective == "mpp":
        return MPPObjective(cfg, data, ranks)
    if cfg.teacher:
        return Distillation(cfg, data, resume, ranks)
    return Classification(cfg, data, resume, ranks)


__all__ = ["Classification", "Distillation", "EVAL_STREAM", "MAEObjective", "MPPObjective",
           "Objective", "Pretraining", "errors_ignored", "make_objective"]
