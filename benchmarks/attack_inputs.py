"""Feed the ``minivit`` command line damaged and hostile inputs; print the table of outcomes.

    PYTHONPATH=$PWD python3 benchmarks/attack_inputs.py [--markdown]

Every case is a fresh interpreter running ``minivit.cli.main([...])`` (some with a patch set
first: a full disk, the official CIFAR-10 checksums of a synthetic folder), on small files
this script writes.  The outcome is classified from the exit status and stderr:

    one-line error     exit 2, one line on stderr naming the file, no traceback
    loads correctly    exit 0 (the cases that must load)
    traceback          any other exit status with a Python traceback
    crash              killed by a signal (segfault, out of memory) or a timeout

The CIFAR-10 payloads are the ones of tests/data/test_cifar10.py (read from its parametrize lists).
The run directory, run files, images, limits and outputs cases are in attack_run_cases.py; a
case that changes a file outside its place, loses an output or leaves a folder behind is
"lost data".
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import pickle
import subprocess
import sys
import tempfile
import time
import zipfile
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
from attack_run_cases import second_round  # noqa: E402

import minivit  # noqa: E402
from minivit.data.synthetic import write_cifar10_like  # noqa: E402
from minivit.io import files as F  # noqa: E402
from minivit.io import rundir as R  # noqa: E402
from minivit.models.vit_config import ViTConfig  # noqa: E402

TINY = ["--set", "embed_dim=16", "--set", "depth=1", "--set", "num_heads=2",
        "--set", "mlp_dim=32"]
DISK_FULL = ("import errno, os, minivit.io.files as F\n"
             "def full(*a):\n    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))\n"
             "F.os.fsync = full\n")


def run_cli(args, prelude="", timeout=120, stdout=False):
    """-> (exit status or None on a timeout, stderr, seconds); with stdout=True
    (status, stdout, stderr, seconds)."""
    code = (prelude + "import sys\nfrom minivit.cli import main\n"
            f"sys.exit(main({[str(a) for a in args]!r}))\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OPENBLAS_NUM_THREADS": "1"}
    env.pop("MINIVIT_DEBUG", None)
    t0 = time.perf_counter()
    try:
        r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           env=env, timeout=timeout)
    except subprocess.TimeoutExpired:
        r = subprocess.CompletedProcess([], None, "", f"timeout after {timeout} s")
    dt = time.perf_counter() - t0
    return (r.returncode, r.stdout, r.stderr, dt) if stdout else (r.returncode, r.stderr, dt)


def classify(rc, stderr, names, must_load):
    if rc is None or rc < 0 or rc >= 128:
        return "crash"
    if "Traceback" in stderr:
        return "traceback"
    lines = [ln for ln in stderr.splitlines()
             if ln.strip() and "warning" not in ln and not ln.startswith("  ")]
    if rc == 0:
        return "loads correctly" if must_load else "loads (should have refused)"
    if rc == 2 and len(lines) == 1 and (not names or any(n in lines[0] for n in names)):
        return "one-line error"
    return f"other (exit {rc})"


# ---------------------------------------------------------------------------- the cases
def cifar_cases(tmp: Path):
    """(kind, description, make(dir) -> None, prelude, must_load) for the CIFAR-10 reader."""
    sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "tests" / "data")]   # support, the tests
    import test_cifar10 as T

    def marks(fn):
        return fn.pytestmark[0].args[1]

    def put(name, payload):
        return lambda d: (d / name).write_bytes(payload)

    def rewrite(name, **change):
        def make(d):
            raw = T._raw(d / name)
            for k, v in change.items():
                raw[k.encode()] = v
            T.save_py2_pickle(raw, d / name)
        return make

    cases = []
    for meta in marks(T.test_object_dtype_pickle_is_refused_without_a_crash):
        cases.append(("CIFAR-10 batches.meta", f"object / field dtype ({len(meta[0])} bytes; "
                      "segfaulted before)", put("batches.meta", meta[0]), "", False))
    for name, payload, expect in marks(T.test_crafted_pickles_give_one_line_errors):
        cases.append(("CIFAR-10 pickle", f"{name}: {expect}", put(name, payload), "", False))
    for name, change, expect in marks(T.test_bad_content_names_the_file):
        if all(v is not None for v in change.values()):
            cases.append(("CIFAR-10 pickle", f"{name}: bad content ({expect})",
                          rewrite(name, **change), "", False))
    for names, expect in marks(T.test_bad_class_names_are_refused):
        cases.append(("CIFAR-10 batches.meta", f"class names: {expect}",
                      rewrite("batches.meta", label_names=names), "", False))

    def evil(d):
        T.save_py2_pickle({b"data": T._Evil(tmp / "pwned"), b"labels": []}, d / "data_batch_1")
    cases.append(("CIFAR-10 pickle", "os.system in a pickle", evil, "", False))

    def truncated(d):
        p = d / "data_batch_2"
        p.write_bytes(p.read_bytes()[:p.stat().st_size // 2])
    cases.append(("CIFAR-10 pickle", "truncated batch", truncated, "", False))

    def empty_bytes(d):
        raw = T._raw(d / "data_batch_1")
        raw[b"batch_label"] = b""
        (d / "data_batch_1").write_bytes(pickle.dumps(raw, protocol=2))
    cases.append(("CIFAR-10 pickle", "Python 3 re-save with empty bytes", empty_bytes, "", True))

    def flipped(d):
        p = d / "data_batch_3"
        data = bytearray(p.read_bytes())
        data[len(data) // 2] ^= 0x10
        p.write_bytes(bytes(data))
    cases.append(("CIFAR-10 pickle", "a flipped byte in an official file (MD5)", flipped,
                  "OFFICIAL", False))
    return cases


def official_prelude(d: Path) -> str:
    """Make the synthetic folder ``d`` (as first written) the official release."""
    table = {p.name: (p.stat().st_size, hashlib.md5(p.read_bytes()).hexdigest())
             for p in d.iterdir()}
    return f"import minivit.data.verify as V\nV.OFFICIAL_FILES = {table!r}\n"


CFG = ViTConfig(image_size=32, patch_size=8, num_classes=10, embed_dim=16, depth=2,
                num_heads=4, mlp_dim=32, name="t")


def model_cases(tmp: Path):
    """(kind, description, path, must_load) for model files given to ``minivit eval``."""
    good = tmp / "good.safetensors"
    minivit.save(minivit.create_model(CFG, seed=0), good)
    arrays, meta = F.read_arrays(good)
    cases = [("model file", "valid file", good, True)]

    def variant(name, data: bytes):
        p = tmp / name
        p.write_bytes(data)
        return p

    raw = good.read_bytes()
    cases.append(("model file", "num_heads 4 -> 2 in the header",
                  variant("heads.safetensors", raw.replace(b'\\"num_heads\\": 4',
                                                           b'\\"num_heads\\": 2')), False))
    flip = bytearray(raw)
    flip[-10] ^= 1
    cases.append(("model file", "a flipped tensor byte", variant("flip.safetensors", flip), False))
    cases.append(("model file", "truncated to half", variant("half.safetensors",
                                                            raw[:len(raw) // 2]), False))
    cases.append(("model file", "random bytes", variant("rand.safetensors",
                                                       os.urandom(4096)), False))
    old_meta = {"format": "minivit", "minivit_config": meta["minivit_config"],
                F.OLD_CHECKSUM_KEY: F.tensors_sha256(arrays)}
    import safetensors.numpy
    cases.append(("model file", "old checksum key (tensors only)",
                  variant("old.safetensors", safetensors.numpy.save(arrays, metadata=old_meta)),
                  True))
    for depth in (10**9, 10**6, 257):
        p = tmp / f"depth{depth}.safetensors"
        F.write_arrays(p, arrays, {**meta, "minivit_config": json.dumps(
            {**CFG.to_dict(), "depth": depth})})
        cases.append(("model file", f"metadata depth {depth} (valid checksum)", p, False))
    for text in ("null", "5", "[1]", '{"drop_rate": null}', "{not json"):
        p = tmp / f"cfg{len(cases)}.safetensors"
        F.write_arrays(p, arrays, {**meta, "minivit_config": text})
        cases.append(("model file", f"metadata config {text}", p, False))

    p = tmp / "official-999999999.npz"
    np.savez(p, **{"embedding/kernel": np.zeros((8, 8, 3, 16), np.float32),
                   "Transformer/encoderblock_999999999/LayerNorm_0/scale": np.ones(16)})
    cases.append(("official .npz", "2 KB, encoderblock_999999999", p, False))
    p = tmp / "official.npz"
    minivit.io.official_npz.export_official_npz(minivit.create_model(CFG, seed=0), p)
    cases.append(("official .npz", "valid export", p, True))

    p = tmp / "bomb.npz"
    with zipfile.ZipFile(p, "w", zipfile.ZIP_DEFLATED) as z:
        with z.open("cls_token.npy", "w", force_zip64=True) as f:
            np.lib.format.write_array_header_1_0(
                f, {"descr": "<f4", "fortran_order": False, "shape": (2**28,)})
            chunk = bytes(1 << 22)
            for _ in range(256):                          # 1 GiB of zeros, ~1 MB on disk
                f.write(chunk)
    cases.append(("model .npz", f"zip bomb ({p.stat().st_size >> 10} KB -> 1 GiB)", p, False))
    p = tmp / "liar.npz"
    with zipfile.ZipFile(p, "w") as z:
        with z.open("pos_embed.npy", "w") as f:
            np.lib.format.write_array_header_1_0(
                f, {"descr": "<f8", "fortran_order": False, "shape": (10**6, 10**6)})
            f.write(bytes(64))
    cases.append(("model .npz", ".npy header declares 8 TB", p, False))
    p = tmp / "ok.npz"
    minivit.save(minivit.create_model(CFG, seed=0), p)
    cases.append(("model .npz", "valid file", p, True))
    return cases


# ---------------------------------------------------------------------------- running them
def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--markdown", action="store_true", help="print the summary as a table")
    args = ap.parse_args()
    rows = []

    def record(kind, what, rc, err, dt, names, must_load, lost=False):
        outcome = classify(rc, err, names, must_load)
        if lost:
            outcome = "lost data"
        rows.append((kind, what, outcome, rc, dt))
        last = [ln for ln in err.splitlines() if ln.strip()][-1:] or [""]
        print(f"{outcome:16} exit {rc!s:4} {dt:5.1f}s  {kind}: {what}  | {last[0][:150]}",
              flush=True)

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        clean = write_cifar10_like(tmp / "clean", n_train_per_batch=20, n_test=30)
        for i, (kind, what, make, prelude, must_load) in enumerate(cifar_cases(tmp)):
            d = write_cifar10_like(tmp / f"c{i}", n_train_per_batch=20, n_test=30)
            prelude = official_prelude(d) if prelude == "OFFICIAL" else prelude
            make(d)
            rc, err, dt = run_cli(["train", "--data-dir", d, "--run-dir", tmp / f"r{i}",
                                   "--max-steps", "1", "--batch-size", "16", "--val-size", "20",
                                   "--no-progress", "--threads", "1", *TINY], prelude)
            record(kind, what, rc, err, dt, [str(d)], must_load,
                   lost=(tmp / "pwned").exists())
        (tmp / "models").mkdir()
        for kind, what, path, must_load in model_cases(tmp / "models"):
            rc, err, dt = run_cli(["eval", path, "--data-dir", clean, "--val-size", "20",
                                  "--threads", "1"])
            record(kind, what, rc, err, dt, [path.name], must_load)
        run_cases(tmp, clean, record)
        second_round(tmp, clean, tmp / "base", record, run_cli)

    counts = Counter(outcome for _, _, outcome, _, _ in rows)
    kinds = Counter(kind for kind, *_ in rows)
    if args.markdown:
        print("\n| input kind | cases | outcomes |\n|---|---|---|")
        for kind in kinds:
            got = Counter(o for k, _, o, _, _ in rows if k == kind)
            print(f"| {kind} | {kinds[kind]} | "
                  + ", ".join(f"{n} {o}" for o, n in got.most_common()) + " |")
        print("\n| input kind | case | outcome | exit | seconds |\n|---|---|---|---|---|")
        for kind, what, outcome, rc, dt in rows:
            print(f"| {kind} | {what} | {outcome} | {rc} | {dt:.1f} |")
    print(f"\n{len(rows)} cases: " + ", ".join(f"{n} {o}" for o, n in counts.most_common()))
    bad = [r for r in rows if r[2] not in ("one-line error", "loads correctly")]
    return 1 if bad else 0


def run_cases(tmp: Path, data: Path, record):
    """Run directories: torn metrics, a held lock, leftovers, a full disk."""
    train = ["train", "--data-dir", data, "--batch-size", "16", "--val-size", "20",
             "--epochs", "2", "--no-progress", "--threads", "1", *TINY]
    base = tmp / "base"
    run_cli([*train, "--run-dir", base, "--max-steps", "5"])

    def copy(name):
        import shutil
        d = tmp / name
        shutil.copytree(base, d)
        return d

    d = copy("torn")
    with open(d / R.METRICS_FILE, "a") as f:
        f.write('{"epoch": 2, "step": 10, "train_lo')
    rc, err, dt = run_cli(["plot", d, "--out", tmp / "plots"])
    record("run dir", "torn last metrics line: plot", rc, err, dt, [], True)
    rc, err, dt = run_cli(["train", "--resume", d])
    record("run dir", "torn last metrics line: resume", rc, err, dt, [], True)
    d = copy("middle")
    text = (d / R.METRICS_FILE).read_text()
    (d / R.METRICS_FILE).write_text('{"epoch" 0}\n' + text)
    rc, err, dt = run_cli(["plot", d, "--out", tmp / "plots"])
    record("run dir", "bad metrics line in the middle: plot", rc, err, dt, ["line 1"], False)

    d = copy("locked")
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys\nfrom minivit.io.rundir import run_lock\n"
         f"with run_lock({str(d)!r}):\n    print('locked', flush=True)\n    sys.stdin.read()\n"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)})
    holder.stdout.readline()
    before = (d / R.CHECKPOINT_FILE).read_bytes()
    for what, cmd in (("second train on a running dir", [*train, "--run-dir", d]),
                      ("second --resume on a running dir", ["train", "--resume", d])):
        rc, err, dt = run_cli(cmd)
        record("run dir", what, rc, err, dt, [f"PID {holder.pid}"], False,
               lost=(d / R.CHECKPOINT_FILE).read_bytes() != before)
    holder.kill()
    holder.wait()
    holder.stdin.close(), holder.stdout.close()
    rc, err, dt = run_cli(["train", "--resume", d])
    record("run dir", "lock file left by a kill -9", rc, err, dt, [], True)

    d = copy("leftovers")
    (d / ".checkpoint.safetensors.minivit-tmp.k2j_9xq1.tmp").write_bytes(bytes(1 << 20))
    rc, err, dt = run_cli(["train", "--resume", d])
    record("run dir", "temp file of a killed write, resume", rc, err, dt, [], True,
           lost=(d / ".checkpoint.safetensors.minivit-tmp.k2j_9xq1.tmp").exists())

    d = copy("full")
    before = (d / R.CHECKPOINT_FILE).read_bytes()
    rc, err, dt = run_cli(["train", "--resume", d], DISK_FULL)
    record("disk full", "resume: the first write fails", rc, err, dt,
           [R.METRICS_FILE, R.CHECKPOINT_FILE, R.MODEL_FILE], False,
           lost=(d / R.CHECKPOINT_FILE).read_bytes() != before
           or any(p.name.endswith(".tmp") for p in d.iterdir()))
    rc, err, dt = run_cli([*train, "--run-dir", tmp / "full-new"], DISK_FULL)
    record("disk full", "new run: config.json write fails", rc, err, dt, [R.CONFIG_FILE], False)


if __name__ == "__main__":
    sys.exit(main())
