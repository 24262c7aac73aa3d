"""The first lines of every walkthrough, kept here once: use this checkout's minivit, fast or
full mode, where the figures go and how they are written.  Plumbing, not part of the story.

    from _setup import shown, walkthrough
    FAST, OUT, ASSETS, save = walkthrough("01_pixels_to_prediction")
    print("figures in", shown(OUT))

MINIVIT_FAST=1: small sizes, few steps (the tests run every walkthrough so).
MINIVIT_OUT=DIR: where the figures go.  Without it, a new temporary folder (printed), so that
running a walkthrough never overwrites the committed figures of walkthroughs/rendered/;
``render.py`` passes ``MINIVIT_OUT=walkthroughs/rendered/<name>/`` to re-render them.
"""

import os
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent                # walkthroughs/
ASSETS = HERE / "assets"                              # the CIFAR-10 sample
# the model of the recipe `minivit train` ran by default until 2026-12-06 (mean pooling, patch
# dropout 0.5, 38 epochs, 80.24% test), committed with its run in results/: walkthroughs 01
# and 03 look at it
TRAINED_RUN = HERE.parent / "results" / "cifar-nano-pd50-38ep-um1"
TRAINED_MODEL = TRAINED_RUN / "model.safetensors"
DPI = 80
if (HERE.parent / "minivit" / "__init__.py").is_file():
    sys.path.insert(0, str(HERE.parent))              # this checkout's minivit, installed or not


def walkthrough(name):
    """-> (FAST, OUT, ASSETS, save) for the walkthrough ``name``."""
    fast = os.environ.get("MINIVIT_FAST") == "1"
    if os.environ.get("MINIVIT_OUT"):
        out = Path(os.environ["MINIVIT_OUT"]).resolve()
        out.mkdir(parents=True, exist_ok=True)
    else:                                             # never the committed rendered/<name>/
        out = Path(tempfile.mkdtemp(prefix=f"minivit-{name}-")).resolve()

    def save(fig, figure_name):
        """Write the figure to OUT/figure_name.png (in Jupyter it is also shown below the cell)."""
        import matplotlib.pyplot as plt
        if fast:                                      # fast mode only checks that it draws
            fig.set_layout_engine("none")
        fig.savefig(out / f"{figure_name}.png", dpi=DPI // 2 if fast else DPI)
        if "ipykernel" not in sys.modules:
            plt.close(fig)

    return fast, out, ASSETS, save


def shown(path):
    """``path`` as printed: relative to the working directory when it lies below it."""
    rel = os.path.relpath(path)
    return Path(path) if rel.startswith("..") else Path(rel)
