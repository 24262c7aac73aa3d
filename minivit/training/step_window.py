"""The training loop's reads of the device: a window of steps read back at once.

A step leaves its loss, its count of correct predictions and its gradient norm on the
device (0-d arrays); reading any of them stalls the GPU until its queue drains.  The loop
keeps them in a ``StepWindow`` and reads the whole window in one transfer every
``read_every`` steps (at the epoch's end and before a checkpoint too), then accounts for
each step in order, as if it had read it at once: the same sums, the same messages, the
divergence check naming the exact step.

One code path for both backends; only the window differs: on NumPy nothing waits, so every
step is read at once (``read_every`` 1: the progress bar moves each step and a diverging
step is caught before the next); on CuPy every 10 steps, so a step costs no device -> host
sync (a diverging step is caught at the window's end; no checkpoint is written before).

    window = StepWindow(read_every_for_backend())
    window.add(step, loss, correct, grad_norm, lr, seconds)
    if window.full():
        for v in window.read(): ...                     # StepValues, host numbers
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from minivit.backend import array_module, get_backend, is_cupy_array, to_numpy

READ_EVERY = {"numpy": 1, "cupy": 10}


def read_every_for_backend() -> int:
    return READ_EVERY.get(get_backend(), 1)


@dataclass(frozen=True)
class StepValues:
    """One step's numbers on the host."""
    step: int                   # the step's index (0-based)
    loss: float
    correct: float | int | None
    grad_norm: float
    lr: float
    seconds: float              # the step's wall time (the window's wait for the read included)


class StepWindow:
    """Steps whose device values have not been read yet."""

    def __init__(self, read_every: int = 1):
        self.read_every = max(1, int(read_every))
        self._pending: list = []    # (step, loss, correct, grad_norm, lr, seconds, int counts)

    def __len__(self) -> int:
        return len(self._pending)

    def full(self) -> bool:
        return len(self._pending) >= self.read_every

    def add(self, step: int, loss, correct, grad_norm, lr: float, seconds: float) -> None:
        """Keep one step's values (0-d device arrays or host numbers; correct None: no
        accuracy)."""
        counts = correct is not None and getattr(correct, "dtype", None) is not None \
            and correct.dtype.kind in "iu"
        self._pending.append((step, loss, correct, grad_norm, lr, seconds, counts))

    def drop_from(self, step: int) -> None:
        """Forget the steps from ``step`` on (rolled back)."""
        self._pending = [e for e in self._pending if e[0] < step]

    def read(self) -> list[StepValues]:
        """The pending steps' values in one device -> host copy; the window empties."""
        pending, self._pending = self._pending, []
        if not pending:
            return []
        t0 = time.perf_counter()
        numbers = [v for e in pending for v in (e[1], e[2], e[3])]
        on_device = [i for i, v in enumerate(numbers) if is_cupy_array(v)]
        if on_device:
            xp = array_module(numbers[on_device[0]])
            host = to_numpy(xp.stack([numbers[i].astype("float64") for i in on_device]))
            for i, v in zip(on_device, host.tolist()):
                numbers[i] = v
        wait = time.perf_counter() - t0
        out = []
        for k, (step, _, _, _, lr, seconds, counts) in enumerate(pending):
            loss, correct, norm = numbers[3 * k:3 * k + 3]
            if correct is not None:
                correct = int(correct) if counts else float(correct)
            out.append(StepValues(step, float(loss), correct, float(norm), lr,
                                  seconds + (wait if k == len(pending) - 1 else 0.0)))
        return out


__all__ = ["READ_EVERY", "StepValues", "StepWindow", "read_every_for_backend"]
