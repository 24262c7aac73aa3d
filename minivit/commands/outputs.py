"""Where a command writes its result file: ``--out PATH`` or next to the run.

    path = report_path(args.out, run_dir, "eval-test.json")   # None: nowhere to write it

``--out`` names a file, or a folder (one that exists, or a name ending in / or without a
suffix) to write the default file name into.
"""

from __future__ import annotations

import os
from pathlib import Path


def report_path(out, run_dir, name: str) -> Path | None:
    """--out as a file or a folder for ``name``; without it RUN_DIR/name (None: no run)."""
    if out is None:
        return None if run_dir is None else Path(run_dir) / name
    path = Path(out)
    if path.is_dir() or str(out).endswith(("/", os.sep)) or not path.suffix:
        path = path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


__all__ = ["report_path"]
