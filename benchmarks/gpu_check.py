"""Check minivit's CuPy backend on a machine with an NVIDIA GPU, in under 8 minutes.

    bash benchmarks/gpu_check.sh              # on the GPU machine (no network needed)
    bash benchmarks/gpu_check.sh --dry-run    # the same steps on the CPU, CuPy stand-in, tiny sizes

Steps (each logged to OUT/NN-name.log; OUT is $OUT, else ./gpu-check-out):
 1. CuPy's configuration (``cupy.show_config()``) and ``minivit --backend cupy info``;
 2. ``minivit --backend cupy gradcheck`` in float64 (finite differences on the GPU);
 3. a training step of cifar-tiny and cifar-small at batch 256: minivit against PyTorch eager
    CUDA on the same model, in fp32 and in TF32 (CUPY_TF32=1 / torch's allow_tf32);
 4. 300 training steps on synthetic data, and the same run stopped at step 150 and resumed:
    the two final models must be bit-identical;
 5. ``pytest -m cupy -x -q`` with what time is left.
Then OUT/summary.json and OUT/summary.md.  A failing step is recorded and the next one runs.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BUDGET_S = 470                       # the whole check; each step also has its own limit
STANDIN = ("import sys; sys.path.insert(0, {tests!r}); import cupy_standin; "
           "cupy_standin.install(); ")


def prelude(dry: bool) -> str:
    return STANDIN.format(tests=str(ROOT / "tests")) if dry else "import sys; "


def python(dry: bool, code: str) -> list[str]:
    return [sys.executable, "-c", prelude(dry) + code]


def minivit_cli(dry: bool, *args: str) -> list[str]:
    return python(dry, "from minivit.cli import main; sys.exit(main(sys.argv[1:]))") + list(args)


class Check:
    def __init__(self, out: Path, dry: bool):
        self.out, self.dry, self.start = out, dry, time.monotonic()
        self.steps: list[dict] = []
        self.results: dict = {}
        out.mkdir(parents=True, exist_ok=True)

    def left(self) -> float:
        return BUDGET_S - (time.monotonic() - self.start)

    def run(self, name: str, cmd: list[str], limit: float, env: dict | None = None) -> str:
        """Run cmd (logged), at most `limit` seconds; returns its output ("" if skipped)."""
        log = self.out / f"{len(self.steps) + 1:02d}-{name}.log"
        limit = min(limit, self.left())
        rec = {"step": name, "log": log.name, "status": "skipped (no time left)", "seconds": 0.0}
        self.steps.append(rec)
        if limit < 5:
            log.write_text("skipped: the time budget is spent\n")
            return ""
        t = time.monotonic()
        env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
               "OPENBLAS_NUM_THREADS": "1", **(env or {})}
        try:
            p = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True,
                               timeout=limit)
            output, rec["status"] = p.stdout + p.stderr, "ok" if p.returncode == 0 \
                else f"failed (exit {p.returncode})"
        except subprocess.TimeoutExpired as e:
            output = (e.stdout or b"").decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
            rec["status"] = f"timed out after {limit:.0f} s"
        rec["seconds"] = round(time.monotonic() - t, 1)
        log.write_text(f"$ {' '.join(cmd)}\n{output}")
        print(f"[{rec['seconds']:6.1f} s] {name}: {rec['status']}", flush=True)
        return output

    def json_lines(self, output: str) -> list[dict]:
        return [json.loads(line[5:]) for line in output.splitlines() if line.startswith("JSON ")]

    def summary(self) -> int:
        ok = all(s["status"] == "ok" for s in self.steps)
        data = {"dry_run": self.dry, "ok": ok, "seconds": round(time.monotonic() - self.start, 1),
                "steps": self.steps, **self.results}
        (self.out / "summary.json").write_text(json.dumps(data, indent=2) + "\n")
        lines = [f"# minivit GPU check{' (dry run: CPU, CuPy stand-in)' if self.dry else ''}", "",
                 "| step | status | seconds | log |", "|---|---|---|---|"]
        lines += [f"| {s['step']} | {s['status']} | {s['seconds']} | {s['log']} |"
                  for s in self.steps]
        if self.results.get("timing"):
            lines += ["", "| config | batch | precision | minivit ms/step | torch ms/step | "
                      "minivit/torch time | syncs/step |", "|---|---|---|---|---|---|---|"]
            for r in self.results["timing"]:
                ratio = (f"{r['minivit_ms'] / r['torch_ms']:.2f}" if r.get("torch_ms") else "-")
                lines.append(f"| {r['config']} | {r['batch']} | {r['precision']} | "
                             f"{r['minivit_ms']:.1f} | {r.get('torch_ms') or '-'} | {ratio} | "
                             f"{r.get('syncs_per_step', '-')} |")
        if "resume" in self.results:
            lines += ["", f"Resume at the halfway step: {self.results['resume']}"]
        (self.out / "summary.md").write_text("\n".join(lines) + "\n")
        print(f"summary: {self.out / 'summary.md'} ({'all ok' if ok else 'FAILURES'})")
        return 0 if ok else 1


# ------------------------------------------------------------------ steps run in subprocesses

def time_step(config: str, batch: int, steps: int, warmup: int, torch_too: bool,
              overrides: dict) -> None:
    """One line "JSON {...}": ms per minivit step (and PyTorch's), syncs per step if counted."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import bench_train_step as B

    from minivit.backend import set_backend
    set_backend("cupy")
    ips, model = B.time_minivit(config, batch, steps, warmup, overrides, threads=1)
    rec = {"config": config, "batch": batch, "precision": os.environ.get("CHECK_PRECISION", "fp32"),
           "minivit_ms": round(1000 * batch / ips, 2)}
    if "cupy_standin" in sys.modules:
        import cupy_standin
        cupy_standin.reset_syncs()
        B.time_minivit(config, batch, 1, 0, overrides, threads=1)
        rec["syncs_per_step"] = len(cupy_standin.syncs())
    if torch_too:
        import torch
        tf32 = rec["precision"] == "tf32"
        torch.backends.cuda.matmul.allow_tf32 = tf32
        torch.backends.cudnn.allow_tf32 = tf32
        rec["torch_ms"] = round(1000 * batch / B.time_torch(model, batch, steps, warmup, "cuda"), 2)
    print("JSON " + json.dumps(rec))


def train_and_resume(work: str, steps: int, batch: int, overrides: dict) -> None:
    """A straight run of `steps` steps and one stopped halfway and resumed: same model bits?"""
    import numpy as np

    import minivit.training as T
    from minivit.backend import set_backend, to_numpy
    from minivit.data.synthetic import write_cifar10_like
    from minivit.io.rundir import MODEL_FILE
    from minivit.io.serialization import load
    set_backend("cupy")
    data = write_cifar10_like(Path(work) / "cifar", n_train_per_batch=max(16 * batch, 20),
                              n_test=20)
    base = dict(model="cifar-nano", model_overrides=overrides or None, batch_size=batch,
                val_size=batch // 2, steps=steps, warmup_steps=steps // 10, eval_every=0,
                data_dir=str(data), progress=False, threads=1, augment=True, mixup=0.8,
                cutmix=1.0)
    t = time.perf_counter()
    T.train(T.TrainConfig(run_dir=f"{work}/straight", **base))
    straight_s = time.perf_counter() - t
    T.train(T.TrainConfig(run_dir=f"{work}/resumed", max_steps=steps // 2, **base))
    T.resume(f"{work}/resumed")
    a, b = (load(Path(work) / r / MODEL_FILE).params for r in ("straight", "resumed"))
    differ = sorted(k for k in a if not np.array_equal(to_numpy(a[k]), to_numpy(b[k])))
    print("JSON " + json.dumps({"steps": steps, "straight_s": round(straight_s, 1),
                                "bit_identical": not differ, "differ": differ[:5]}))
    if differ:
        sys.exit(1)


# ------------------------------------------------------------------ the check

def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dry-run", action="store_true",
                    help="on the CPU with the CuPy stand-in (tests/cupy_standin), tiny sizes")
    ap.add_argument("--out", default=os.environ.get("OUT") or "gpu-check-out")
    ap.add_argument("--_time", nargs=4, metavar=("CONFIG", "BATCH", "STEPS", "TORCH"),
                    help=argparse.SUPPRESS)
    ap.add_argument("--_train", nargs=3, metavar=("WORK", "STEPS", "BATCH"), help=argparse.SUPPRESS)
    ap.add_argument("--_tiny", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    tiny = {"embed_dim": 16, "depth": 1, "num_heads": 2, "mlp_dim": 32} if args._tiny else {}
    if args._time:
        c, b, s, torch_too = args._time
        time_step(c, int(b), int(s), 1, torch_too == "1", tiny)
        return 0
    if args._train:
        train_and_resume(args._train[0], int(args._train[1]), int(args._train[2]), tiny)
        return 0

    dry = args.dry_run
    out = Path(args.out).resolve()
    check = Check(out, dry)
    me = [str(Path(__file__).resolve())] + (["--_tiny"] if dry else [])

    def helper(*a):
        return python(dry, f"sys.argv[0] = {me[0]!r}; import runpy; "
                      "runpy.run_path(sys.argv[0], run_name='__main__')") + me[1:] + list(a)

    check.run("cupy-show-config", python(dry, "import cupy; cupy.show_config()"), 60)
    check.run("minivit-info", minivit_cli(dry, "--backend", "cupy", "info"), 60)
    grad = ["--embed-dim", "16", "--depth", "1", "--num-heads", "2", "--mlp-dim", "32",
            "--samples", "5", "--no-torch"] if dry else []
    check.run("gradcheck-float64", minivit_cli(dry, "--backend", "cupy", "gradcheck", "--dtype",
                                               "float64", *grad), 90)
    timing = []
    configs = [("cifar-nano", 8)] if dry else [("cifar-tiny", 256), ("cifar-small", 256)]
    for precision in ("fp32", "tf32"):
        env = {"CHECK_PRECISION": precision, "CUPY_TF32": "1" if precision == "tf32" else "0"}
        for config, batch in configs:
            o = check.run(f"step-{config}-{precision}",
                          helper("--_time", config, str(batch), "2" if dry else "10",
                                 "0" if dry else "1"), 120, env)
            timing += check.json_lines(o)
    check.results["timing"] = timing
    work = out / "train-work"
    o = check.run("train-resume", helper("--_train", str(work), "6" if dry else "300",
                                         "8" if dry else "128"), 150)
    res = check.json_lines(o)
    check.results["resume"] = res[0] if res else "no result (see the log)"
    tests = ["tests/backend/test_cupy_parity.py", "tests/backend/test_backend.py"] if dry else []
    check.run("pytest-cupy", [sys.executable, "-m", "pytest", "-m", "cupy", "-x", "-q",
                              "-p", "no:cacheprovider", *tests], max(check.left() - 5, 0),
              {"MINIVIT_CUPY_STANDIN": "1"} if dry else None)
    return check.summary()


if __name__ == "__main__":
    sys.exit(main())
