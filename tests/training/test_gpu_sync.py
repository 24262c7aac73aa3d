"""Device -> host synchronisations per training step, counted on the CuPy stand-in.

Each ``float()`` / ``int()`` / ``bool()`` / ``.get()`` of a device array stalls the GPU until
its queue drains.  A step keeps its loss, accuracy count and gradient norm on the device and
the loop reads them a window of steps at a time (minivit/training/step_window.py, 10 steps on CuPy).
The stand-in (``tests/cupy_standin``, MINIVIT_CUPY_STANDIN=1) logs every such copy with the
minivit line that caused it.  A step's count is measured as the difference between a 4-step
and a 2-step run (the same start-up and final checkpoint in both), with the window at one
step (the worst case: one read every step) and at its default; the lines are printed (``-s``)
and listed on failure."""

import cupy_standin
import pytest

import minivit.backend as backend
import minivit.training as T
import minivit.training.step_window as W
from minivit.data.synthetic import write_cifar10_like

pytestmark = [pytest.mark.cupy, pytest.mark.skipif(
    not cupy_standin.is_installed(),
    reason="counts syncs on the CuPy stand-in: run with MINIVIT_CUPY_STANDIN=1 (no GPU)")]

RECIPES = {
    "default": {},
    "mixup-cutmix": {"mixup": 0.8, "cutmix": 1.0},
    "mae": {"objective": "mae"},
    "mpp": {"objective": "mpp"},
    "distill-hard": {"distill": "hard"},          # + a trained ResNet teacher (fixture)
    "distill-soft": {"distill": "soft"},
    "ema-layer-decay-randaugment": {"ema": 0.999, "layer_decay": 0.75, "randaugment": [2, 9]},
}
# Syncs per step with a read every step (cifar-nano, batch 8): the window's read.
SYNCS_READING_EVERY_STEP = {"default": 1, "mixup-cutmix": 1, "mae": 1, "mpp": 1,
                            "distill-hard": 1, "distill-soft": 1,
                            "ema-layer-decay-randaugment": 1}
TARGET = 2          # at most: the loss (and the count of correct predictions)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return write_cifar10_like(tmp_path_factory.mktemp("cifar"), n_train_per_batch=20, n_test=30)


@pytest.fixture(scope="module")
def teacher_dir(data_dir, tmp_path_factory):
    """A ResNet teacher trained for two steps on NumPy."""
    run_dir = tmp_path_factory.mktemp("teacher") / "run"
    T.train(T.TrainConfig(model="resnet8", batch_size=8, val_size=20, steps=2, warmup_steps=1,
                          eval_every=0, data_dir=str(data_dir), run_dir=str(run_dir),
                          progress=False, threads=1))
    return run_dir


def _syncs(data_dir, run_dir, steps, **recipe):
    cfg = T.TrainConfig(model="cifar-nano", batch_size=8, val_size=20, steps=steps,
                        warmup_steps=1, eval_every=0, data_dir=str(data_dir),
                        run_dir=str(run_dir), progress=False, threads=1, **recipe)
    previous = backend.get_backend()
    backend.set_backend("cupy")
    try:
        cupy_standin.reset_syncs()
        T.train(cfg)
        return cupy_standin.sync_counts()
    finally:
        backend.set_backend(previous)


_measured: dict = {}


def syncs_per_step(data_dir, tmp_path, recipe, read_every, request=None):
    """(syncs per step, Counter of "file:line (kind)" over two steps); measured once."""
    key = recipe, read_every
    options = dict(RECIPES[recipe])
    if "distill" in options:
        options["teacher"] = str(request.getfixturevalue("teacher_dir"))
    if key not in _measured:
        mp = pytest.MonkeyPatch()
        mp.setitem(W.READ_EVERY, "cupy", read_every)
        try:
            two = _syncs(data_dir, tmp_path / "two", 2, **options)
            four = _syncs(data_dir, tmp_path / "four", 4, **options)
        finally:
            mp.undo()
        diff = four - two
        _measured[key] = sum(diff.values()) / 2, diff
    return _measured[key]


def _show(recipe, per_step, diff):
    lines = [f"{recipe}: {per_step:g} device->host syncs per step"]
    lines += [f"  {n / 2:6g}  {where}" for where, n in diff.most_common()]
    print("\n" + "\n".join(lines))
    return "\n".join(lines)


@pytest.mark.slow
@pytest.mark.parametrize("recipe", list(RECIPES))
def test_at_most_two_syncs_per_step_reading_every_step(recipe, data_dir, tmp_path, request):
    per_step, diff = syncs_per_step(data_dir, tmp_path, recipe, read_every=1, request=request)
    where = _show(recipe, per_step, diff)
    assert per_step <= TARGET, where
    assert per_step == SYNCS_READING_EVERY_STEP[recipe], where


@pytest.mark.slow
@pytest.mark.parametrize("recipe", ["default", "mae", "mpp", "distill-hard",
                                    "ema-layer-decay-randaugment"])
def test_no_sync_between_the_window_reads(recipe, data_dir, tmp_path, request):
    per_step, diff = syncs_per_step(data_dir, tmp_path, recipe,
                                    read_every=W.READ_EVERY["cupy"], request=request)
    where = _show(recipe, per_step, diff)
    assert per_step == 0, where
