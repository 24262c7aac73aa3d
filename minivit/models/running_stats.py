"""What the convnets with BatchNorm share (the ResNet, the airbench teacher): the running
statistics as ``buffers`` beside the parameters, their momentum update after a training
forward, and their deterministic update under data parallelism.

A replica (one per thread of minivit.parallel.threads) normalises its shard by that shard's
own batch statistics and only records them; ``merge_replica_stats`` pools the recorded
statistics in shard order into those of the whole batch (BatchNorm's pool_batch_stats) and
updates once.  A subclass sets ``bn_momentum`` (PyTorch's convention) and calls
``finish_batch_stats(stats, train)`` at the end of its forward.
"""

from __future__ import annotations

from minivit.backend import host_xp, to_device
from minivit.layers.batchnorm import MOMENTUM, pool_batch_stats, update_running_stats
from minivit.models.base import ModelBase, check_param_shapes


def running_stats_shapes(norms: dict) -> dict:
    """{norm name: channels} -> the running statistics' names and shapes (num_batches_tracked:
    an int64 ())."""
    shapes = {}
    for norm, c in norms.items():
        shapes[f"{norm}.running_mean"] = shapes[f"{norm}.running_var"] = (c,)
        shapes[f"{norm}.num_batches_tracked"] = ()
    return shapes


def init_running_stats(shapes: dict, dtype="float32") -> dict:
    """Running mean 0, running variance 1, no batch seen yet (num_batches_tracked int64 ())."""
    np, buffers = host_xp(), {}
    for name, shape in shapes.items():
        if name.endswith("num_batches_tracked"):
            buffers[name] = to_device(np.zeros((), dtype=np.int64))
        else:
            fill = np.zeros if name.endswith("running_mean") else np.ones
            buffers[name] = to_device(fill(shape), dtype)
    return buffers


class RunningStatsModel(ModelBase):
    """ModelBase with ``buffers`` {name: running statistic}, shaped by ``buffer_shapes``."""

    bn_momentum = MOMENTUM

    @staticmethod
    def buffer_shapes(config) -> dict:
        raise NotImplementedError

    def __init__(self, config, params: dict, buffers: dict | None = None, seed: int = 0):
        super().__init__(config, params, seed)
        if buffers is None:
            buffers = init_running_stats(self.buffer_shapes(config), self.dtype)
        check_param_shapes(self.buffer_shapes(config), buffers, "BatchNorm buffers")
        self.buffers = buffers
        self.records_stats = False      # a replica: record batch statistics, do not update
        self.batch_stats = None         # {bn name: BatchStats} of the last training forward

    def replica(self):
        """Shares the parameter buffer and the running statistics; keeps its own gradients and
        activations, and records its shard's batch statistics for the model."""
        r = super().replica()
        r.records_stats, r.batch_stats = True, None
        return r

    def finish_batch_stats(self, stats: dict, train: bool) -> None:
        """After a forward: a training forward updates the running statistics (a replica
        records them instead)."""
        if train:
            if self.records_stats:
                self.batch_stats = stats
            else:
                self.apply_batch_stats(stats)

    def apply_batch_stats(self, stats: dict) -> None:
        """The momentum update of every BatchNorm's running statistics (new arrays)."""
        b = self.buffers
        for bn, s in stats.items():
            b[f"{bn}.running_mean"], b[f"{bn}.running_var"] = update_running_stats(
                b[f"{bn}.running_mean"], b[f"{bn}.running_var"], s, self.bn_momentum)
            b[f"{bn}.num_batches_tracked"] = b[f"{bn}.num_batches_tracked"] + 1

    def merge_replica_stats(self, replicas) -> None:
        """Pool the statistics the replicas recorded (in their order) and update once."""
        recorded = [r.batch_stats for r in replicas if r.batch_stats]
        for r in replicas:
            r.batch_stats = None
        if recorded:
            self.apply_batch_stats({bn: pool_batch_stats([s[bn] for s in recorded])
                                    for bn in recorded[0]})


__all__ = ["RunningStatsModel", "init_running_stats"]
