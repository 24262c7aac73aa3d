"""The contract of what the training loop trains: an *objective*.

    loss, correct = objective.step(batch)   # forward, loss, backward; model.grads summed
                                            # over the threads and the ranks
    result = objective.evaluate(x, y, mean, std, batch_size)    # {"loss", "acc" or None, "n"}
    objective.save_model(path)              # the model file (rank 0 writes it)
    objective.summary()                     # one line for the run's start: what it trains

Each objective (classification.py, mae.py, mpp.py, distillation.py) owns its loss and its
*shard function*: ``shard_step(replica, *shard arrays, weight) -> (weight * loss_s, ...,
grads)``, which the threads of ``DataParallel`` (minivit/parallel/threads.py) map over a
batch.  The loss is a mean over the batch, so the sum over shards of ``weight * loss_s``
(weight = B_s / B) is the batch's loss and the sum of the shards' gradients its gradient.
A run over several processes (``ranks``, minivit/parallel/ranks.py) gives each process rows
``rows`` of every global batch: the objective takes those rows, and sums the gradient over
the ranks after the threads' sum.  Clipping and the optimizer step are the loop's.

A step reads nothing back to the host: its loss and count of correct predictions stay on the
device, and the loop reads them a window of steps at a time (minivit/training/step_window.py),
checking there that they are finite.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

from minivit.backend import array_module, host_xp
from minivit.parallel.mpi import Ranks
from minivit.parallel.ranks import rank_rows, sum_evaluations
from minivit.parallel.threads import DataParallel


def errors_ignored():
    """A diverging run overflows; the loop checks the loss and gradient norm instead (the
    step, the optimizer's update included, runs to its end whatever the values)."""
    return host_xp().errstate(over="ignore", invalid="ignore", divide="ignore")


class Objective(ABC):
    """What the objectives share: the model, the threads that split a batch, the ranks.

    ranks: the processes of the run (``Ranks()``: this one alone); batch_size: the global
    batch, of which this process takes its ``rows``."""
    has_accuracy = True                 # whether ``correct`` and evaluate's "acc" mean anything

    def __init__(self, model, threads: int, ranks: Ranks | None = None,
                 batch_size: int | None = None):
        self.model = model
        self.parallel = DataParallel(model, threads)
        self.ranks = ranks or Ranks()
        self.batch_size = batch_size
        self.rows = rank_rows(self.ranks, batch_size) if self.ranks.size > 1 else None

    def step(self, batch):
        """One training step of this process's rows of ``batch`` -> (loss, correct): 0-d
        arrays on the device (correct None without accuracy); the gradient of the global
        batch's mean loss in ``model.grads``."""
        with errors_ignored():
            share = batch if self.rows is None else batch.rows(self.rows)
            loss, correct = self.forward_backward(share)        # the threads' sum
            if self.rows is not None:
                self.ranks.sum_(self.model.flat_grads)          # the ranks' sum
        return loss, correct

    def evaluate(self, x, y, mean, std, batch_size=500) -> dict:
        """{"loss", "acc" (None without accuracy), "n", ...} over host uint8 images; over
        several ranks each takes a part of the images and the results are summed."""
        if self.ranks.size == 1:
            return self.evaluate_images(x, y, mean, std, batch_size)
        return sum_evaluations(self.ranks, self.evaluate_images, x, y, mean, std, batch_size)

    def save_model(self, path) -> None:
        if self.ranks.is_root:
            self.write_model(path)

    @property
    def part(self):
        """(start, total): this process's rows start.. of a global batch of ``total`` (what
        DataParallel.map_shards takes as ``part``); None: the batch is the whole batch."""
        return None if self.rows is None else (self.rows.start, self.batch_size)

    # -- what each objective defines
    @abstractmethod
    def forward_backward(self, batch) -> tuple:
        """(loss, correct) of ``batch`` (this process's rows), its gradient in model.grads."""

    @abstractmethod
    def evaluate_images(self, x, y, mean, std, batch_size) -> dict:
        """The evaluation of these images on this process."""

    @abstractmethod
    def write_model(self, path) -> None:
        """The model file."""

    @abstractmethod
    def summary(self) -> str:
        """One line: what the run trains, for its start line."""

    def close(self):
        self.parallel.close()


def float64(value, like):
    """A loss (Python float or 0-d array) as a 0-d float64 array on ``like``'s device."""
    return array_module(like).asarray(value, dtype="float64")


__all__ = ["Objective", "errors_ignored", "float64"]
