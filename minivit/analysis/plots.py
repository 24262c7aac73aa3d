"""Plots of a training run, as PNG files (matplotlib, imported only when a plot is made).

    plot_curves(read_metrics(run_dir), "curves.png")     loss, accuracy and lr vs epoch
    plot_steps(StepsLog.read(run_dir), records, "curves.png")   loss and lr vs step
    plot_confusion(matrix, label_names, "confusion.png")  rows: true class, columns: predicted

Figures are drawn with matplotlib's object API on the Agg canvas: no window, no pyplot state.
"""

from __future__ import annotations

from minivit.install import install_hint
from minivit.io.files import write_figure


def _matplotlib():
    """(Figure, FigureCanvasAgg), or an ImportError that says how to install matplotlib."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as e:
        raise ImportError(f"plots need matplotlib ({e}); install it with {install_hint('viz')}"
                          ) from None
    return Figure, FigureCanvasAgg


def _series(records, key):
    """(epochs, values) of the records where ``key`` has a value."""
    pts = [(r["epoch"], r[key]) for r in records if r.get(key) is not None]
    return [p[0] for p in pts], [p[1] for p in pts]


def has_accuracy(records: list[dict]) -> bool:
    """Did the run record any accuracy?  (MAE and MPP pre-training runs do not.)"""
    return any(_series(records, f"{split}_acc")[0] for split in ("train", "val", "test"))


def plot_curves(records: list[dict], path, title: str = "") -> None:
    """Panels from metrics.jsonl records: loss, accuracy (train/val/test), lr.  A run with no
    accuracy (MAE or MPP pre-training) gets the loss and lr panels only."""
    if not records:
        raise ValueError("no metrics to plot (metrics.jsonl is empty: no epoch has finished)")
    Figure, FigureCanvasAgg = _matplotlib()
    from matplotlib.ticker import MaxNLocator
    has_acc = has_accuracy(records)
    fig = Figure(figsize=(13 if has_acc else 9, 4), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 3 if has_acc else 2)
    loss_ax, acc_ax, lr_ax = axes[0], axes[1] if has_acc else None, axes[-1]
    panels = [(loss_ax, "loss")] + ([(acc_ax, "accuracy (%)")] if has_acc else []) \
        + [(lr_ax, "learning rate")]
    for split, style in (("train", "o-"), ("val", "s-"), ("test", "^-")):
        x, y = _series(records, f"{split}_loss")
        if x:
            loss_ax.plot(x, y, style, label=split, markersize=3)
        x, y = _series(records, f"{split}_acc")
        if x:                                          # only where has_acc
            acc_ax.plot(x, [100 * v for v in y], style, label=split, markersize=3)
    x, y = _series(records, "lr")
    lr_ax.plot(x, y, "o-", markersize=3)
    for ax, name in panels:
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
    for ax, _ in panels[:-1]:                        # the lr panel has one line
        ax.legend()
    lr_ax.ticklabel_format(axis="y", style="sci", scilimits=(0, 0))
    if title:
        fig.suptitle(title)
    write_figure(fig, path, dpi=120)


def plot_steps(steps: list[dict], records: list[dict], path, title: str = "") -> None:
    """Panels from steps.jsonl records (a run of a few epochs, or not one yet): the training
    loss of every step (and the epochs' validation / test loss at their last step) and the
    learning rate of every step."""
    if not steps:
        raise ValueError("no step recorded yet (steps.jsonl is empty)")
    Figure, FigureCanvasAgg = _matplotlib()
    fig = Figure(figsize=(9, 4), layout="constrained")
    FigureCanvasAgg(fig)
    loss_ax, lr_ax = fig.subplots(1, 2)
    x = [r["step"] for r in steps]
    loss_ax.plot(x, [r["loss"] for r in steps], "-", linewidth=0.8, label="train (per step)")
    for split, style in (("val", "s"), ("test", "^")):
        pts = [(r["step"], r[f"{split}_loss"]) for r in records
               if r.get(f"{split}_loss") is not None]
        if pts:
            loss_ax.plot(*zip(*pts), style, label=f"{split} (end of epoch)", markersize=5)
    lr_ax.plot(x, [r["lr"] for r in steps], "-")
    for ax, name in ((loss_ax, "loss"), (lr_ax, "learning rate")):
        ax.set_xlabel("step")
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
    loss_ax.legend()
    lr_ax.ticklabel_format(axis="y", style="sci", scilimits=(0, 0))
    if title:
        fig.suptitle(title)
    write_figure(fig, path, dpi=120)


def plot_confusion(matrix, label_names, path, title: str = "confusion matrix") -> None:
    """A confusion matrix (list of rows, true class x predicted class) with its counts."""
    Figure, FigureCanvasAgg = _matplotlib()
    K = len(label_names)
    fig = Figure(figsize=(1.0 + 0.6 * K, 0.8 + 0.6 * K), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    im = ax.imshow(matrix, cmap="Blues")
    fig.colorbar(im, ax=ax, shrink=0.8)
    ax.set_xticks(range(K), label_names, rotation=45, ha="right")
    ax.set_yticks(range(K), label_names)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title(title)
    top = max(max(row) for row in matrix) or 1
    for i, row in enumerate(matrix):
        for j, v in enumerate(row):
            ax.text(j, i, str(v), ha="center", va="center", fontsize=7,
                    color="white" if v > top / 2 else "black")
    write_figure(fig, path, dpi=120)


__all__ = ["plot_curves", "plot_confusion", "plot_steps"]
