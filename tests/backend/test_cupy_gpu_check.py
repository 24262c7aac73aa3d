"""benchmarks/gpu_check.sh --dry-run: the GPU check's every step, on the CPU with the CuPy
stand-in and tiny sizes, so the script is known to work before it meets a GPU."""

import json
import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_gpu_check_dry_run_passes_every_step(tmp_path):
    out = tmp_path / "out"
    env = {**os.environ, "OUT": str(out), "PYTHONPATH": str(ROOT)}
    env.pop("MINIVIT_CUPY_STANDIN", None)
    p = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_check.sh"), "--dry-run"],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=180)
    summary = json.loads((out / "summary.json").read_text())
    assert p.returncode == 0 and summary["ok"], p.stdout + p.stderr
    assert summary["dry_run"] and summary["resume"]["bit_identical"]
    assert {r["precision"] for r in summary["timing"]} == {"fp32", "tf32"}
    assert (out / "summary.md").read_text().startswith("# minivit GPU check")
