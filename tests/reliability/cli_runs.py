"""Helpers of the reliability tests: a fresh ``python -m minivit`` process, its one-line
error, and a tiny finished run to damage (tests/tiny_runs.py sizes)."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

from tiny_runs import TINY_FLAGS

ROOT = Path(__file__).resolve().parents[2]


def cli(*args, env=None, timeout=120):
    """Run ``python -m minivit ARGS`` -> CompletedProcess (text)."""
    full = {**os.environ, "PYTHONPATH": str(ROOT), "OPENBLAS_NUM_THREADS": "1", **(env or {})}
    full.pop("MINIVIT_DEBUG", None)
    return subprocess.run([sys.executable, "-m", "minivit", *map(str, args)], env=full,
                          capture_output=True, text=True, timeout=timeout)


def error_line(result, code: int = 2) -> str:
    """The one line on stderr of a refused command (exit ``code``, no traceback)."""
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert result.returncode == code and len(lines) == 1 and "Traceback" not in result.stderr, \
        (result.returncode, result.stderr)
    return lines[0]


def train_args(data_dir, run_dir, *extra):
    return ["train", "--data-dir", data_dir, "--run-dir", run_dir, "--batch-size", "16",
            "--val-size", "20", "--epochs", "2", "--no-progress", "--threads", "1", *TINY_FLAGS,
            *extra]


def copy_run(base: Path, to: Path) -> Path:
    shutil.copytree(base, to)
    return to
