"""Training a ViT student from a trained teacher (DeiT, Touvron et al. 2021): the
``Distillation`` objective, which ``minivit train --teacher RUN_OR_FILE`` uses.

The student is a distilled ViT (``config.distilled``): its class head learns from the labels
and its distillation head from the teacher; evaluation averages the two heads.  For every
augmented training image the teacher (any trained minivit classifier: a ResNet from
minivit/models/resnet.py, or a ViT) predicts on the fly, in its evaluation mode, on exactly
the crop, flip (and mixup / cutmix) the student sees, normalised with the teacher's own
per-channel mean and std (its run's; the student's may differ: another training split or
``--train-size``); its cost is part of the step.

    hard ("--distill hard", DeiT's best):  y_t = argmax teacher(x)
        loss = (CE(cls, y) + CE(dist, y_t)) / 2
    soft ("--distill soft"):  loss = (1 - lambda) CE(cls, y) + lambda tau^2 KL(p_t || q_s)
        with p_t = softmax(teacher / tau), q_s = softmax(dist / tau)  (minivit/layers/distill.py)

CE(cls, y) is the cross-entropy of minivit.layers.loss with the run's label smoothing and soft
targets (mixup / cutmix); the teacher's labels are used unsmoothed.  The teacher is a constant
(no gradient).  The batch is split over threads as for classification (minivit.parallel.threads),
and so are the teacher's forward passes.
"""

from __future__ import annotations

from dataclasses import dataclass

from minivit.analysis.heads import head_agreement, teacher_predictions
from minivit.backend import array_module
from minivit.data.batches import renormalize
from minivit.io.rundir import find_model, read_run_info
from minivit.io.serialization import load as load_model
from minivit.layers.distill import soft_distillation_backward, soft_distillation_forward
from minivit.layers.loss import cross_entropy_device
from minivit.parallel.threads import DataParallel, shard_slices
from minivit.training.config import DISTILL_KINDS
from minivit.training.objectives.classification import Classification


@dataclass
class Teacher:
    """A trained classifier and the per-channel ``mean`` / ``std`` (host (C,), [0, 1] units)
    its images are normalised with."""
    model: object
    mean: object
    std: object


def load_teacher(path, dtype, num_classes: int, student_config, mean, std) -> Teacher:
    """The trained classifier of a run directory or model file, in ``dtype``, checked against
    the data's classes and the student's image size (ValueError naming the file otherwise),
    with the normalisation its run recorded (``mean`` / ``std``, the student's, for a model
    file outside a run)."""
    model_path, run_dir = find_model(path)
    info = read_run_info(run_dir)
    objective = info.get("train", {}).get("objective", "classify")
    if objective != "classify":
        raise ValueError(f"teacher {path} is a {objective!r} pre-training run, not a classifier")
    teacher = load_model(model_path, dtype=dtype)
    c = teacher.config
    if c.num_classes != num_classes:
        raise ValueError(f"teacher {path} predicts {c.num_classes} classes, the data have "
                         f"{num_classes}")
    if (c.image_size, c.in_chans) != (student_config.image_size, student_config.in_chans):
        raise ValueError(f"teacher {path} takes {c.image_size}px images with {c.in_chans} "
                         f"channels, the student {student_config.image_size}px with "
                         f"{student_config.in_chans}")
    stats = info.get("data", {})
    return Teacher(teacher, stats.get("mean", mean), stats.get("std", std))


class Distillation(Classification):
    """The student's two heads: the labels for the class head, the teacher for the other."""

    def __init__(self, cfg, data, resume: bool = False, ranks=None):
        super().__init__(cfg, data, resume, ranks)
        self.teacher = load_teacher(cfg.teacher, cfg.dtype, data.num_classes, self.model.config,
                                    data.mean, data.std)
        self.teacher_parallel = DataParallel(self.teacher.model, self.parallel.threads)
        self.student_stats = (data.mean, data.std)      # how the batches are normalised
        self.kind, self.tau, self.lam = cfg.distill, cfg.distill_tau, cfg.distill_lambda
        self.teacher_path = cfg.teacher
        self._teacher_answers = {}          # which images (address, shape) -> their classes

    def summary(self) -> str:
        what = ("hard: (CE(cls, y) + CE(dist, teacher argmax)) / 2" if self.kind == "hard" else
                f"soft: tau {self.tau}, lambda {self.lam}")
        return (f"distilled student (distilled=true: class and distillation tokens) from "
                f"teacher {self.teacher_path}: {self.teacher.model!r}; {what}")

    def losses(self, logits, targets, smoothing, teacher_logits):
        """logits (2, B, K) -> (loss (0-d, on the device), dlogits (2, B, K)).  The labels were
        checked when the data were loaded; the teacher's argmax is a class by construction."""
        ce, dcls = cross_entropy_device(logits[0], targets, smoothing)
        if self.kind == "hard":
            kd, ddist = cross_entropy_device(logits[1], teacher_logits.argmax(axis=1))
            return (ce + kd) / 2, (dcls / 2, ddist / 2)
        kd, cache = soft_distillation_forward(logits[1], teacher_logits, self.tau)
        return ((1 - self.lam) * ce + self.lam * kd,
                (dcls * (1 - self.lam), soft_distillation_backward(self.lam, cache)))

    def shard_step(self, replica, images, targets, teacher_logits, smoothing, patch_dropout,
                   weight):
        """-> (weight * loss_s (0-d float64 on the device), averaged logits_s, grads of
        weight * loss_s).  Nothing is read back: the backward runs whatever the loss, and the
        loop checks it a window of steps at a time (minivit/training/step_window.py)."""
        logits = replica.forward(images, train=True, patch_dropout=patch_dropout)   # (2, B, K)
        loss, (dcls, ddist) = self.losses(logits, targets, smoothing, teacher_logits)
        dlogits = array_module(logits).stack([dcls, ddist])
        replica.backward(dlogits * weight if weight != 1.0 else dlogits)
        return weight * loss.astype("float64"), (logits[0] + logits[1]) / 2, replica.grads

    def forward_backward(self, batch):
        teacher_images = renormalize(batch.images, *self.student_stats, self.teacher.mean,
                                     self.teacher.std)                   # (B, C, H, W)
        teacher_logits = self.teacher_parallel.forward(teacher_images)     # (B, K), eval mode
        outs = self.parallel.map_shards(
            lambda r, x, t, tl, w: self.shard_step(r, x, t, tl, batch.smoothing,
                                                   batch.patch_dropout, w),
            batch.images, batch.targets, teacher_logits, patch_dropout=batch.patch_dropout,
            part=self.part)
        loss = sum(o[0] for o in outs)
        self.parallel.sum_grads([o[2] for o in outs])
        correct = sum((o[1].argmax(axis=1) == batch.labels[s]).sum()           # on the device
                      for o, s in zip(outs, shard_slices(len(batch.labels), len(outs))))
        return loss, correct

    def evaluate_images(self, x, y, mean, std, batch_size=500):
        """The averaged heads' evaluation, plus "counts": how often each head, and the teacher,
        is right and how often they agree (minivit/analysis/heads.py).  The teacher's answers
        on a split are computed once: its images do not change during the run."""
        result = super().evaluate_images(x, y, mean, std, batch_size)
        key = (x.__array_interface__["data"][0], x.shape, x.strides)
        if key not in self._teacher_answers:
            self._teacher_answers[key] = teacher_predictions(
                self.teacher_parallel, x, self.teacher.mean, self.teacher.std, batch_size)
        result["counts"] = head_agreement(self.parallel, x, y, self._teacher_answers[key],
                                          mean, std, batch_size)
        return result

    def close(self):
        super().close()
        self.teacher_parallel.close()


__all__ = ["DISTILL_KINDS", "Distillation", "Teacher", "load_teacher"]
