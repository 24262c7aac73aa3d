"""Write the committed examples of ``minivit explain``: walkthroughs/rendered/explain_cat.html,
the CIFAR-10 test image it explains (explain_cat_input.png, test image 0 from the committed
sample) and a screenshot of the page (explain_cat.png, with Playwright and Debian's chromium);
with FILM_RUN, also explain_cat_epochs.html and its screenshot: the page with the epoch slider.

    python walkthroughs/assets/make_explain_example.py [RUN_DIR [FILM_RUN]]

RUN_DIR defaults to results/cifar-nano-hour-s0.  FILM_RUN: a run trained with snapshots, as
``minivit train --epochs 3 --snapshots 3 --run-dir runs/film`` (not committed).  Without
Playwright or a browser the pages are still written; only the screenshots are skipped.
"""

import sys
from pathlib import Path

import numpy as np

from minivit.explain import explain

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "walkthroughs" / "rendered"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]
PATCH = (2, 3)                        # the patch selected in the screenshot: the cat's ear


def write_input(path: Path) -> Path:
    from PIL import Image
    sample = np.load(ROOT / "walkthroughs" / "assets" / "cifar10_sample.npz")
    assert sample["label_names"][sample["y"][0]] == "cat"
    Image.fromarray(sample["x"][0].transpose(1, 2, 0)).save(path)
    return path


def screenshot(page: Path, out: Path, frame=None) -> None:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        print("no Playwright: no screenshot (pip install playwright)")
        return
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS)
        tab = browser.new_page(viewport={"width": 1400, "height": 1150}, bypass_csp=True)
        tab.goto(page.as_uri())
        tab.evaluate(f"window.minivitExplain.selectToken(1 + {PATCH[0]} * 8 + {PATCH[1]})")
        tab.click(".map[data-block='3'][data-head='1']")
        if frame is not None:                   # the epoch slider at this frame
            tab.evaluate(f"window.minivitExplain.setFrame({frame})")
        tab.screenshot(path=str(out))
        browser.close()
    print(f"wrote {out}")


def main(run_dir, film_run=None) -> None:
    image = write_input(OUT / "explain_cat_input.png")
    page = explain(run_dir, [image], OUT / "explain_cat.html")
    print(f"wrote {page} ({page.stat().st_size / 1e6:.2f} MB)")
    screenshot(page, OUT / "explain_cat.png")
    if film_run is not None:
        page = explain(film_run, [image], OUT / "explain_cat_epochs.html")
        print(f"wrote {page} ({page.stat().st_size / 1e6:.2f} MB)")
        screenshot(page, OUT / "explain_cat_epochs.png", frame=1)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else ROOT / "results" / "cifar-nano-hour-s0",
         sys.argv[2] if len(sys.argv) > 2 else None)
