"""Render a walkthrough to Markdown: its prose, its code, what the code printed, its figures.

    python walkthroughs/render.py                      # all walkthroughs, full mode
    python walkthroughs/render.py 01 03                # the ones whose names start so
    MINIVIT_FAST=1 python walkthroughs/render.py 02    # fast mode (small sizes, few steps)

A walkthrough is a jupytext "percent" script: ``# %% [markdown]`` starts a Markdown cell (its
lines are comments, ``# `` stripped), ``# %%`` starts a code cell.  This script needs no
Jupyter: it executes the code cells one by one in a single namespace (as a notebook kernel
would), captures what each prints, notes the PNG files each one writes into the walkthrough's
output folder, and writes ``walkthroughs/rendered/<name>.md`` with the Markdown cells, the code
cells, their output and the figures (relative links into ``rendered/<name>/``), so that a
reader on GitHub sees text and figures without running anything.

The output folder is passed to the walkthrough as ``MINIVIT_OUT`` (default
``walkthroughs/rendered/<name>/``); its old PNG files are deleted first.  Matplotlib draws on
the Agg canvas (``MPLBACKEND=Agg``).  A cell that raises stops the rendering with the
traceback, and nothing is written.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import re
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
RENDERED = HERE / "rendered"
CELL = re.compile(r"^# %%(?P<rest>.*)$")
MAX_OUTPUT_LINES = 60


@dataclass
class Cell:
    kind: str                       # "markdown" or "code"
    source: str
    output: str = ""
    figures: list = field(default_factory=list)
    seconds: float = 0.0


def walkthroughs() -> list[Path]:
    """The walkthrough scripts, in reading order (NN_name.py)."""
    return sorted(p for p in HERE.glob("[0-9][0-9]_*.py"))


def parse(text: str) -> list[Cell]:
    """Split a percent-format script into cells; anything before the first ``# %%`` (the
    jupytext header) is dropped."""
    cells, kind, lines = [], None, []

    def close():
        if kind is not None:
            body = "\n".join(lines).strip("\n")
            if body.strip():
                cells.append(Cell(kind, body))

    for line in text.splitlines():
        m = CELL.match(line)
        if m:
            close()
            rest = m.group("rest")
            kind = "markdown" if re.search(r"\[(markdown|md)\]", rest) else "code"
            lines = []
        elif kind == "markdown":
            lines.append(line[2:] if line.startswith("# ") else line.lstrip("#"))
        elif kind == "code":
            lines.append(line)
    close()
    return cells


class _Tee(io.TextIOBase):
    """Write to a buffer and, optionally, echo to the terminal."""

    def __init__(self, *streams):
        self.streams = streams

    def write(self, s):
        for st in self.streams:
            st.write(s)
        return len(s)

    def flush(self):
        for st in self.streams:
            st.flush()


def _pngs(folder: Path) -> dict:
    return {p.name: p.stat().st_mtime_ns for p in folder.glob("*.png")}


def _trim(text: str, limit: int = MAX_OUTPUT_LINES) -> str:
    lines = text.rstrip("\n").splitlines()
    if len(lines) <= limit:
        return "\n".join(lines)
    head, tail = lines[:limit // 2], lines[-limit // 2:]
    return "\n".join(head + [f"... ({len(lines) - limit} lines not shown) ..."] + tail)


def execute(path: Path, out_dir: Path, echo: bool = True) -> list[Cell]:
    """Run the cells of ``path`` in one namespace; fill in each code cell's output/figures."""
    cells = parse(path.read_text())
    out_dir.mkdir(parents=True, exist_ok=True)
    for old in out_dir.glob("*.png"):
        old.unlink()
    os.environ["MINIVIT_OUT"] = str(out_dir)
    os.environ["MPLBACKEND"] = "Agg"
    ns = {"__name__": "__main__", "__file__": str(path)}
    for i, cell in enumerate(cells):
        if cell.kind != "code":
            continue
        before = _pngs(out_dir)
        buf = io.StringIO()
        stream = _Tee(buf, sys.__stdout__) if echo else buf
        t0 = time.perf_counter()
        try:
            with contextlib.redirect_stdout(stream):
                exec(compile(cell.source, f"{path.name}, cell {i + 1}", "exec"), ns)
        except BaseException:
            print(buf.getvalue(), file=sys.stderr)
            traceback.print_exc()
            raise SystemExit(f"render: {path.name} failed in cell {i + 1} (see above)")
        cell.seconds = time.perf_counter() - t0
        cell.output = buf.getvalue()
        after = _pngs(out_dir)
        new = [n for n, t in after.items() if before.get(n) != t]
        cell.figures = sorted(new, key=lambda n: after[n])
    return cells


def to_markdown(path: Path, cells: list[Cell], out_dir: Path, md_path: Path,
                seconds: float) -> str:
    def rel(p):
        return os.path.relpath(p, md_path.parent).replace(os.sep, "/")

    mode = "fast" if os.environ.get("MINIVIT_FAST") == "1" else "full"
    parts = [f"<!-- Rendered from {path.name} by render.py ({mode} mode). Edit the .py file, "
             "not this one. -->",
             f"*Rendered from [`{path.name}`]({rel(path)}) by [`render.py`]({rel(__file__)}) "
             f"in {mode} mode ({seconds:.0f} s on one CPU core). Run it yourself with "
             f"`python walkthroughs/{path.name}`, or open it as a notebook with jupytext.*"]
    for cell in cells:
        if cell.kind == "markdown":
            parts.append(cell.source)
            continue
        parts.append("```python\n" + cell.source + "\n```")
        if cell.output.strip():
            parts.append("```text\n" + _trim(cell.output) + "\n```")
        for name in cell.figures:
            parts.append(f"![{Path(name).stem}]({rel(out_dir / name)})")
    return "\n\n".join(parts) + "\n"


def render(path: Path, rendered: Path = RENDERED, echo: bool = True) -> Path:
    """Execute ``path`` and write rendered/<name>.md; figures go to rendered/<name>/."""
    path, rendered = Path(path).resolve(), Path(rendered).resolve()
    name = path.stem
    out_dir = rendered / name
    md_path = rendered / f"{name}.md"
    t0 = time.perf_counter()
    cells = execute(path, out_dir, echo)
    seconds = time.perf_counter() - t0
    md_path.parent.mkdir(parents=True, exist_ok=True)
    md_path.write_text(to_markdown(path, cells, out_dir, md_path, seconds))
    n_fig = sum(len(c.figures) for c in cells)
    print(f"render: wrote {md_path} ({len(cells)} cells, {n_fig} figures, {seconds:.0f} s)",
          file=sys.stderr)
    return md_path


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", help="walkthroughs to render (a prefix of the "
                                                 "file name, e.g. 01); default all")
    parser.add_argument("--quiet", action="store_true", help="do not echo the output")
    args = parser.parse_args(argv)
    chosen = [p for p in walkthroughs()
              if not args.names or any(p.stem.startswith(n) for n in args.names)]
    if not chosen:
        parser.error(f"no walkthrough matches {args.names}; have "
                     f"{[p.stem for p in walkthroughs()]}")
    for path in chosen:
        render(path, echo=not args.quiet)
    return 0


if __name__ == "__main__":
    sys.exit(main())
