"""The options of a command that evaluates a run, and where it writes its result file:
``--out PATH`` or next to the run.

    add_run_arguments(parser, "eval-<split>.json")            # --data-dir, ..., --out, --json
    path = report_path(args.out, run_dir, "eval-test.json")   # None: nowhere to write it
    check_output_dir(folder) / check_output_file(path)         # before the work starts

``--out`` names a file, or a folder (one that exists, or a name ending in / or without a
suffix) to write the default file name into.  Output paths are checked before the work
starts (a folder that is a file, a file that is a folder or a symbolic link, a folder that
cannot be written), so a long evaluation is never lost to a bad path.
"""

from __future__ import annotations

import os
from pathlib import Path

from minivit.console import shown
from minivit.errors import UserError
from minivit.io.files import write_json


def add_run_arguments(parser, file_name: str, what: str = "report", threads: str = "N threads"):
    """The options every command that reads a run's data shares: --data-dir, --val-size,
    --threads, and where its JSON goes (--out: a file, or a folder for ``file_name``)."""
    parser.add_argument("--data-dir", help="CIFAR-10 folder (default: the run's, then "
                                           "$MINIVIT_DATA, then the cache)")
    parser.add_argument("--val-size", type=int, help="training images held out for "
                                                     "validation (default: the run's, else 5000)")
    parser.add_argument("--threads", type=int, default=0,
                        help=f"NumPy: {threads} (default 0 = one per core)")
    parser.add_argument("--out", metavar="PATH",
                        help=f"write the JSON {what} here (a file, or a folder for "
                             f"{file_name}) instead of RUN_DIR/{file_name}")
    parser.add_argument("--json", metavar="OUT", help=f"also write the {what} as JSON")


def write_result(result: dict, out, json_copy=None) -> None:
    """The command's JSON result to ``out`` (report_path; None: nowhere) and to --json."""
    if json_copy:
        Path(json_copy).parent.mkdir(parents=True, exist_ok=True)
        write_json(json_copy, result)
    if out is not None:
        write_json(out, result)
        print(f"wrote {out}")


def check_output_dir(folder) -> Path:
    """UserError unless ``folder`` is, or can be made, a writable folder (nothing made)."""
    folder = Path(folder)
    for p in (folder, *folder.parents):
        if p.exists() or p.is_symlink():
            if not p.is_dir():
                where = "it is a file" if p == folder else f"{shown(p)} is a file"
                raise UserError(f"cannot write into {shown(folder)}: {where}; choose another "
                                "--out")
            if not os.access(p, os.W_OK | os.X_OK):
                raise UserError(f"cannot write into {shown(folder)}: {shown(p)} is not "
                                "writable; choose another --out")
            return folder
    return folder


def check_output_file(path) -> Path:
    """UserError unless ``path`` can be written as a plain file (not a folder, not a
    symbolic link, in a writable folder)."""
    path = Path(path)
    if path.is_symlink():
        raise UserError(f"refusing to write {shown(path)}: it is a symbolic link; remove it or "
                        "choose another path")
    if path.is_dir():
        raise UserError(f"cannot write {shown(path)}: it is a folder; choose a file name")
    check_output_dir(path.parent)
    return path


def report_path(out, run_dir, name: str) -> Path | None:
    """--out as a file or a folder for ``name``; without it RUN_DIR/name (None: no run).
    The path is checked (check_output_file) and its folder made."""
    if out is None:
        return None if run_dir is None else check_output_file(Path(run_dir) / name)
    path = Path(out)
    if path.is_dir() or str(out).endswith(("/", os.sep)) or not path.suffix:
        path = path / name
    check_output_file(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


__all__ = ["check_output_dir", "check_output_file", "report_path"]
