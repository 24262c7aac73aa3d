"""Data-parallel training over N ranks (MPI processes, minivit/parallel/mpi.py): one model,
each rank computing the gradient of its share of every global batch.

One step on rank r of N, global batch B (``Objective.step``, minivit/training/objectives/base.py):

    indices = permutation(seed, epoch)[i*B:(i+1)*B]   the global batch of a one-process run
    batch   = prepare_batch(indices)                  every rank prepares the whole batch: the
                                                      crop/flip and mixup/cutmix draws, and the
                                                      mirror image mixup pairs a sample with,
                                                      are those of one process
    shard   = batch[r*B/N:(r+1)*B/N]                  ``rank_rows``: this rank's rows
    g_r     = d/dtheta sum_(i in shard) l_i / B       map_shards(part=...): each backward
                                                      carries b/B; its dropout / drop-path /
                                                      patch-dropout / MAE masks are its rows of
                                                      the draws for the whole batch
    g       = sum_r g_r                               ``ranks.sum_(model.flat_grads)``: one
                                                      allreduce of the flat buffer, then the
                                                      clipping and AdamW, the same on every rank

Every rank starts from the same parameters (the same seed), applies the same summed gradient
and the same update, so the ranks keep equal parameters without sending any; a checkpoint
checks they do.  Preparing the whole batch on each rank costs a gather, crop and normalise
of B images, small next to the forward and backward of B/N (on NumPy the crop of 128 CIFAR
images takes ~2 ms).  MPP is the exception: its corrupted patches are copied from anywhere
in the batch, so each rank draws the corruption of its own share (from a generator of the
step and the rank): an N-rank MPP run is deterministic, but not the one-process run.
Evaluation splits the images into one contiguous part per rank and sums the results: exact
for classification; pre-training's validation masks are drawn per part, so its validation
loss depends (slightly) on the number of ranks.

Rank 0 alone writes the run directory and prints; the others read the checkpoint of
``--resume`` from it (a folder all hosts see).  Ctrl-C / SIGTERM set a flag that the ranks
compare before each step, as they compare rank 0's clock for ``--time-limit``, so all stop
at the same step.  A rank whose code, config or data differ is refused at the start.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import signal
import threading
from pathlib import Path

from minivit.backend import host_xp, to_numpy
from minivit.errors import UserError
from minivit.models.convnets import CONVNET_CONFIGS
from minivit.parallel.threads import shard_slices

np = host_xp()
STOP_TIME, STOP_SIGNAL = 1, 2       # the codes of ``Stop.agreed``


class RanksDisagree(UserError):
    """The ranks of one run were started with different code, config or data."""


# --------------------------------------------------------------------------- the start
def shared_run_dir(ranks, run_dir: str) -> str:
    """Rank 0's run directory, on every rank (a default one is named by each rank's clock)."""
    return ranks.gather_text(run_dir)[0]


def start_together(ranks, make):
    """``make()`` on every rank; an error on any rank stops every rank at once (rank 0
    prints it, the others exit with status 2), and so do ranks that disagree on their
    ``fingerprint()``.  Returns what ``make`` returned."""
    try:
        made, error = make(), None
    except Exception as e:          # noqa: BLE001 - reported to every rank, then re-raised
        made, error = None, e
    messages = ranks.gather_text("" if error is None else f"{error}" or type(error).__name__)
    failed = [(r, m) for r, m in enumerate(messages) if m]
    if failed:
        if ranks.is_root and error is not None:
            raise error
        if ranks.is_root:
            raise UserError(f"rank {failed[0][0]} of {ranks.size}: {failed[0][1]}")
        raise SystemExit(2)
    prints = [dict(part.split("=") for part in text.split()) for text in
              ranks.gather_text(" ".join(f"{k}={v}" for k, v in made.fingerprint().items()))]
    for what in prints[0]:
        odd = [r for r, p in enumerate(prints) if p.get(what) != prints[0][what]]
        if odd:
            made.objective.close()
            if not ranks.is_root:
                raise SystemExit(2)
            raise RanksDisagree(
                f"the {ranks.size} ranks disagree: rank {odd[0]} has another {what} than rank "
                f"0 ({_WHY[what]}); start every rank with the same minivit, command and data")
    return made


_WHY = {"code": "a different minivit version", "config": "different training options",
        "data": "different CIFAR-10 files"}


def fingerprint(fields: dict, data) -> dict:
    """Short hashes of the code, the run's config ``fields`` (without the per-machine session
    options) and the data: what every rank must share."""
    data_hash = hashlib.sha256()
    for a in (data.train_x, data.train_y, data.val_x, data.val_y):
        data_hash.update(memoryview(np.ascontiguousarray(a)).cast("B"))
    code = hashlib.sha256()
    for path in sorted(Path(__file__).resolve().parent.rglob("*.py")):
        code.update(path.read_bytes())
    return {"code": code.hexdigest()[:16], "data": data_hash.hexdigest()[:16],
            "config": hashlib.sha256(json.dumps(fields, sort_keys=True, default=str)
                                     .encode()).hexdigest()[:16]}


def check_rank_split(ranks, cfg) -> None:
    if cfg.batch_size % ranks.size:
        raise UserError(f"the global batch of {cfg.batch_size} does not split over "
                        f"{ranks.size} ranks; give a --batch-size that is a multiple of "
                        f"{ranks.size}")
    if cfg.model in CONVNET_CONFIGS:
        raise UserError(f"{cfg.model} has BatchNorm statistics, which each rank would keep "
                        "apart; train it on one rank")


# --------------------------------------------------------------------------- the shares
def rank_rows(ranks, batch_size: int) -> slice:
    """This rank's rows of every global batch of ``batch_size`` (check_rank_split: it splits)."""
    b = batch_size // ranks.size
    return slice(ranks.rank * b, (ranks.rank + 1) * b)


def sum_evaluations(ranks, evaluate, x, y, mean, std, batch_size) -> dict:
    """``evaluate`` (an objective's, on this process) of this rank's contiguous part of the
    images, summed over the ranks: the loss, the accuracy, the confusion matrix and any
    "counts" (a distilled student's head agreement)."""
    parts = shard_slices(len(x), ranks.size)
    part = parts[ranks.rank] if ranks.rank < len(parts) else slice(0, 0)
    r = evaluate(x[part], y[part], mean, std, batch_size)
    n, confusion, counts = r["n"], r.get("confusion"), r.get("counts", {})
    sums = np.concatenate([[r["loss"] * n, (r["acc"] or 0.0) * n, n], list(counts.values()),
                           [] if confusion is None else confusion.ravel()]).astype("float64")
    ranks.sum_(sums, "the evaluation")
    total = int(sums[2])
    out = {"loss": float(sums[0]) / max(total, 1), "n": total,
           "acc": None if r["acc"] is None else float(sums[1]) / max(total, 1)}
    if counts:                                  # the same names in the same order on every rank
        out["counts"] = {k: int(round(v)) for k, v in zip(counts, sums[3:3 + len(counts)])}
    if confusion is not None:
        out["confusion"] = np.rint(sums[3 + len(counts):]).astype(np.int64).reshape(
            confusion.shape)
        out["acc"] = float(np.trace(out["confusion"])) / max(total, 1)
    return out


# --------------------------------------------------------------------------- the loop
def sum_step_values(ranks, values: list) -> list:
    """StepValues (minivit.training.step_window) with the loss and correct count summed over the
    ranks: each rank's loss is its share of the global mean."""
    if ranks.size == 1 or not values:
        return values
    sums = np.array([[v.loss, v.correct or 0] for v in values], dtype="float64")
    ranks.sum_(sums, "the step's loss")
    return [dataclasses.replace(v, loss=float(s[0]), correct=None if v.correct is None else
                                int(round(s[1])) if isinstance(v.correct, int) else float(s[1]))
            for v, s in zip(values, sums)]


def agreed_seconds(ranks, seconds):
    """``seconds()`` made the same on every rank: the largest rank's value, to the
    microsecond.  Decisions taken on it (how many steps the time budget times, how many
    epochs fit) come out the same on every rank, so that the ranks' collectives match."""
    if ranks.size == 1:
        return seconds
    return lambda: ranks.max_int(round(1e6 * seconds()), "the time budget") / 1e6


def check_same_params(ranks, flat_params) -> None:
    """Before a checkpoint: every rank holds the same parameters (one hash compared)."""
    if ranks.size == 1:
        return
    digest = hashlib.sha256(memoryview(np.ascontiguousarray(to_numpy(flat_params))).cast("B"))
    hashes = ranks.gather_text(digest.hexdigest(), "the parameter check")
    odd = [r for r, h in enumerate(hashes) if h != hashes[0]]
    if odd:
        ranks.abort(f"rank {odd[0]}'s parameters differ from rank 0's (the MPI sum gave the "
                    "ranks different results); not saving")


class Stop:
    """Ctrl-C and SIGTERM: on one rank they interrupt as always (``stop_on_sigterm``); on
    several they set a flag that ``agreed`` compares before each step, so every rank stops
    at the same step (a rank interrupted alone would leave the others in a collective)."""

    def __init__(self, ranks, stop_on_sigterm):
        self.ranks, self.flag = ranks, False
        if ranks.size == 1:
            self._restore = stop_on_sigterm()
            return
        if threading.current_thread() is not threading.main_thread():
            self._restore = lambda: None
            return
        previous = {s: signal.signal(s, self._set) for s in (signal.SIGINT, signal.SIGTERM)}
        self._restore = lambda: [signal.signal(s, h if h is not None else signal.SIG_DFL)
                                 for s, h in previous.items()]

    def _set(self, signum, frame):
        self.flag = True

    def agreed(self, time_up: bool) -> bool:
        """True: stop now (rank 0's clock passed the time limit).  Raises KeyboardInterrupt
        on every rank when any rank was signalled."""
        if self.ranks.size == 1:
            return bool(time_up)
        code = self.ranks.max_int(STOP_SIGNAL if self.flag else
                                  STOP_TIME if time_up and self.ranks.is_root else 0)
        if code == STOP_SIGNAL:
            raise KeyboardInterrupt("signal")
        return code == STOP_TIME

    def restore(self):
        self._restore()


class NoStepsLog:
    """The steps log of a rank that writes nothing."""

    def append(self, step, loss, lr):
        pass

    def flush(self):
        pass

    def close(self):
        pass


__all__ = ["NoStepsLog", "RanksDisagree", "Stop", "agreed_seconds", "check_rank_split",
           "check_same_params", "fingerprint", "rank_rows", "shared_run_dir", "start_together",
           "sum_evaluations", "sum_step_values"]
