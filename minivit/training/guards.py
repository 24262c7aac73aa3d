"""The training loop's checks: a diverged run, the data order on resume, the parameters
before they are saved, and the warmup a run recorded."""

from minivit.backend import array_module
from minivit.io.rundir import read_run_info
from minivit.training.checkpoint import Progress, rng_state
from minivit.training.config import Warmup


class TrainingDiverged(RuntimeError):
    """The loss (or gradient norm) stopped being finite; the last good checkpoint is kept."""


def check_data_order(progress: Progress, epoch, gen):
    """Record the data-order generator of this epoch; on resume, check it is the same."""
    info, _ = rng_state(gen)
    saved = progress.data_rng
    if saved is not None and saved["epoch"] == epoch and saved["state"] != info["state"]:
        raise ValueError("the training data differ from those the checkpoint was trained on "
                         "(the data order does not match); resume with the same data")
    progress.data_rng = {"epoch": epoch, "state": info["state"]}


def check_finite_params(model, step):
    xp = array_module(model.flat_params)
    if bool(xp.isfinite(model.flat_params).all()):             # one read
        return
    for name, p in model.params.items():
        if not bool(xp.isfinite(p).all()):
            raise TrainingDiverged(f"parameter {name} is not finite after step {step}; not "
                                   "saving it over the last good checkpoint")


def diverged_message(what, value, step, progress: Progress, ckpt_path):
    saved = progress.saved_step
    kept = (f"the last good checkpoint {ckpt_path} (step {saved}) is kept" if saved is not None
            else "no checkpoint had been saved yet")
    return (f"{what} is {value} at step {step + 1} (epoch {progress.epochs_logged + 1}); training "
            f"stopped, {kept}. Try a lower --lr or --clip-grad.")


def recorded_warmup(run_dir, cfg, steps_per_epoch, total) -> Warmup:
    """The warmup config.json recorded for the run (a resume keeps it, whatever rule picks
    the warmup of new runs); runs recorded without it used the whole of warmup_epochs."""
    recorded = read_run_info(run_dir).get("warmup_steps")
    if recorded is None:
        recorded = (cfg.warmup_steps if cfg.warmup_steps is not None
                    else round(cfg.warmup_epochs * steps_per_epoch))
    return Warmup(min(total, int(recorded)))


__all__ = ["TrainingDiverged", "check_data_order", "check_finite_params", "diverged_message",
           "recorded_warmup"]
