"""The first lines of every walkthrough, kept here once: use this checkout's minivit, fast or
full mode, where the figures go and how they are written.  Plumbing, not part of the story.

    from _setup import shown, walkthrough
    FAST, OUT, ASSETS, save = walkthrough("01_pixels_to_prediction")
    print("figures in", shown(OUT))

MINIVIT_FAST=1: small sizes, few steps (the tests run every walkthrough so).
MINIVIT_OUT=DIR: where the figures go (default walkthroughs/rendered/<name>/).
"""

import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent                # walkthroughs/
ASSETS = HERE / "assets"                              # the CIFAR-10 sample, the trained model
DPI = 80
if (HERE.parent / "minivit" / "__init__.py").is_file():
    sys.path.insert(0, str(HERE.parent))              # this checkout's minivit, installed or not


def walkthrough(name):
    """-> (FAST, OUT, ASSETS, save) for the walkthrough ``name``."""
    fast = os.environ.get("MINIVIT_FAST") == "1"
    out = Path(os.environ.get("MINIVIT_OUT", HERE / "rendered" / name)).resolve()
    out.mkdir(parents=True, exist_ok=True)

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
