"""The second set of cases of benchmarks/attack_inputs.py: the run directory turned against
its owner, run files read back, images, resource limits, non-finite outputs, output paths.

``second_round(tmp, data, base, record, run_cli)``: ``base`` is a finished tiny run; each
case copies what it damages.  A case whose victim file changes, whose output is lost or that
leaves a folder behind is recorded as "lost data" whatever its exit status.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import zlib
from pathlib import Path

import numpy as np

import minivit
from minivit.data.images import read_image
from minivit.io import files as F
from minivit.io import rundir as R
from minivit.io.pretrained import save_mae
from minivit.models.mae import MAEConfig, create_mae
from minivit.models.vit_config import get_config

TINY_SETS = ["--set", "embed_dim=16", "--set", "depth=1", "--set", "num_heads=2",
             "--set", "mlp_dim=32"]
NORM = ["--mean", "0.5", "0.5", "0.5", "--std", "0.25", "0.25", "0.25"]
MEMORY_ERROR = ("import minivit.commands.info as I\n"
                "def boom(args):\n    raise MemoryError\nI.run = boom\n")


def png_bomb(path: Path, side: int = 30000) -> Path:
    def chunk(kind, data):
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))
    z = zlib.compressobj(9)
    rows = b"".join(z.compress(b"\0" + bytes(side)) for _ in range(20)) + z.flush()
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(
        ">IIBBBBB", side, side, 8, 0, 0, 0, 0)) + chunk(b"IDAT", rows) + chunk(b"IEND", b""))
    return path


def second_round(tmp: Path, data: Path, base: Path, record, run_cli):
    from PIL import Image
    train = ["train", "--data-dir", data, "--batch-size", "16", "--val-size", "20",
             "--epochs", "2", "--no-progress", "--threads", "1", *TINY_SETS]
    n = [0]

    def copy(edit=None):
        n[0] += 1
        d = tmp / f"r2-{n[0]}"
        shutil.copytree(base, d)
        if edit is not None:
            info = json.loads((d / R.CONFIG_FILE).read_text())
            edit(info)
            (d / R.CONFIG_FILE).write_text(json.dumps(info))
        return d

    victim = tmp / "victim.txt"

    def fresh_victim():
        victim.write_text("precious\n")
        return victim

    def harmed():
        return victim.read_text() != "precious\n"

    img = tmp / "img.png"
    Image.new("RGB", (40, 40), (200, 10, 10)).save(img)

    # ---------------------------------------------------------------- the run directory
    kind = "run dir (2)"
    d = tmp / "r2-lock"
    d.mkdir()
    (d / R.LOCK_FILE).symlink_to(fresh_victim())
    rc, err, dt = run_cli([*train, "--run-dir", d, "--max-steps", "1"])
    record(kind, ".minivit.lock a symlink to another file", rc, err, dt, [R.LOCK_FILE], False,
           lost=harmed())
    for name in (R.STEPS_FILE, R.METRICS_FILE):
        d = copy()
        (d / name).unlink()
        (d / name).symlink_to(fresh_victim())
        rc, err, dt = run_cli(["train", "--resume", d])
        record(kind, f"{name} a symlink to another file: resume", rc, err, dt, [name], False,
               lost=harmed())
    d = copy()
    (d / R.STEPS_FILE).unlink()
    os.mkfifo(d / R.STEPS_FILE)
    rc, err, dt = run_cli(["train", "--resume", d], timeout=60)
    record(kind, "steps.jsonl a FIFO: resume (no hang)", rc, err, dt, [R.STEPS_FILE], False)
    d = copy()
    (d / R.MODEL_FILE).unlink()
    (d / R.MODEL_FILE).symlink_to(fresh_victim())
    rc, out, err, dt = run_cli(["train", "--resume", d], stdout=True)
    record(kind, "model.safetensors a symlink: resume refuses before training", rc, err, dt,
           [R.MODEL_FILE], False, lost=harmed() or "epoch" in out)
    d = copy()
    (d / R.EVAL_VAL_FILE).unlink()
    (d / R.EVAL_VAL_FILE).symlink_to(fresh_victim())
    rc, err, dt = run_cli(["eval", d, "--split", "val", "--threads", "1"])
    record(kind, "eval-val.json a symlink: eval --split val", rc, err, dt, [R.EVAL_VAL_FILE],
           False, lost=harmed())
    d = copy()
    (d / "curves.png").symlink_to(fresh_victim())
    rc, err, dt = run_cli(["plot", d])
    record(kind, "curves.png a symlink: plot", rc, err, dt, ["curves.png"], False,
           lost=harmed())
    mine = tmp / "r2-mine"
    mine.mkdir()
    (mine / "config.json").write_text('{"mine": true}')
    (mine / "model.safetensors").write_bytes(b"my weights")
    rc, err, dt = run_cli([*train, "--run-dir", mine, "--max-steps", "1"])
    record(kind, "--run-dir a folder of user files (config.json, model.safetensors)", rc, err,
           dt, ["config.json"], False, lost=(mine / "config.json").read_text() != '{"mine": true}')
    d = copy()
    (d / ".draft.20250101.tmp").write_text("draft")
    rc, err, dt = run_cli(["train", "--resume", d])
    record(kind, "user file .draft.20250101.tmp kept by the clean-up", rc, err, dt, [], True,
           lost=not (d / ".draft.20250101.tmp").exists())
    gone = tmp / "r2-new" / "run"
    rc, err, dt = run_cli([*train[:2], tmp / "no-data", *train[3:], "--run-dir", gone])
    record(kind, "wrong --data-dir leaves no folder or lock file", rc, err, dt, ["CIFAR-10"],
           False, lost=(tmp / "r2-new").exists())

    # ---------------------------------------------------------------- run files read back
    kind = "run files"
    cases = [
        ("config.json nested 100000 deep: predict", "deep", ["predict", None, img, "--top", "1"]),
        ("config.json 100 MB: predict", "big", ["predict", None, img, "--top", "1"]),
        ("config.json a FIFO: predict (no hang)", "fifo", ["predict", None, img, "--top", "1"]),
        ("section data a list: predict", lambda i: i.update(data=[1]),
         ["predict", None, img, "--top", "1"]),
        ("data.mean strings: predict", lambda i: i["data"].update(mean=["a", "b", "c"]),
         ["predict", None, img, "--top", "1"]),
        ("3 label names for 10 classes: predict",
         lambda i: i["data"].update(label_names=["a", "b", "c"]),
         ["predict", None, img, "--top", "1"]),
        ("train.lr a string: resume", lambda i: i["train"].update(lr="x"),
         ["train", "--resume", None]),
        ("section train a number: eval", lambda i: i.update(train=5),
         ["eval", None, "--threads", "1"]),
        ("train.val_size Infinity: eval", lambda i: i["train"].update(val_size=float("inf")),
         ["eval", None, "--threads", "1"]),
        ("warmup_steps a string: resume", lambda i: i.update(warmup_steps="7"),
         ["train", "--resume", None]),
        ("time_budget damaged: resume", lambda i: i.update(time_budget={"minutes": "x"}),
         ["train", "--resume", None]),
    ]
    for what, edit, args in cases:
        d = copy(edit if callable(edit) else None)
        if edit == "deep":
            (d / R.CONFIG_FILE).write_text("[" * 100_000 + "]" * 100_000)
        elif edit == "big":
            with open(d / R.CONFIG_FILE, "wb") as f:
                f.truncate(100 << 20)
        elif edit == "fifo":
            (d / R.CONFIG_FILE).unlink()
            os.mkfifo(d / R.CONFIG_FILE)
        rc, err, dt = run_cli([d if a is None else a for a in args], timeout=60)
        record(kind, what, rc, err, dt, [R.CONFIG_FILE, "val_size"], False)
    d = copy()
    arrays, meta = F.read_arrays(d / R.CHECKPOINT_FILE)
    F.write_arrays(d / R.CHECKPOINT_FILE, arrays, {**meta, "state": "[" * 100_000 + "]" * 100_000})
    rc, err, dt = run_cli(["train", "--resume", d])
    record(kind, "checkpoint state nested 100000 deep (valid checksum): resume", rc, err, dt,
           [R.CHECKPOINT_FILE], False)
    d = copy()
    report = json.loads((d / R.EVAL_VAL_FILE).read_text())
    (d / R.EVAL_VAL_FILE).write_text(json.dumps({**report, "confusion": 5}))
    rc, err, dt = run_cli(["plot", d, "--out", tmp / "r2-plots"])
    record(kind, "eval-val.json confusion a number: plot", rc, err, dt, [R.EVAL_VAL_FILE], False)
    d = copy()
    (d / R.METRICS_FILE).write_text('{"epoch": 1, "step": 5, "val_acc": "high"}\n{"epoch": 2}\n')
    rc, err, dt = run_cli(["plot", d, "--out", tmp / "r2-plots"])
    record(kind, "metrics.jsonl val_acc a string: plot", rc, err, dt, [R.METRICS_FILE], False)
    d = copy()
    (d / R.METRICS_FILE).unlink()
    (d / R.STEPS_FILE).write_text('{"step": 1, "loss": "x", "lr": 0.1}\n'
                                  '{"step": 2, "loss": 1.0, "lr": 0.1}\n')
    rc, err, dt = run_cli(["plot", d, "--out", tmp / "r2-plots"])
    record(kind, "steps.jsonl loss a string: plot", rc, err, dt, [R.STEPS_FILE], False)

    # ---------------------------------------------------------------- images
    kind = "image"
    bomb = png_bomb(tmp / "bomb.png")
    rc, err, dt = run_cli(["predict", base, bomb, "--top", "1"])
    record(kind, f"PNG bomb, 30000x30000 in {bomb.stat().st_size:,} bytes", rc, err, dt,
           ["bomb.png"], False)
    g16 = tmp / "g16.png"
    Image.fromarray(np.full((40, 40), 30000, np.uint16)).save(g16)
    level = int(read_image(g16, 32)[0, 8, 8])
    rc, err, dt = run_cli(["predict", base, g16, "--top", "1"])
    record(kind, f"16-bit grey PNG, 30000/65535 read as {level}/255", rc, err, dt, [], True,
           lost=abs(level - 117) > 1)
    f32 = tmp / "f32.tiff"
    Image.fromarray(np.full((40, 40), 0.5, np.float32), "F").save(f32)
    level = int(read_image(f32, 32)[0, 8, 8])
    rc, err, dt = run_cli(["predict", base, f32, "--top", "1"])
    record(kind, f"float TIFF, 0.5 read as {level}/255", rc, err, dt, [], True,
           lost=abs(level - 128) > 1)
    half = tmp / "half.png"
    half.write_bytes(img.read_bytes()[:60])
    rc, err, dt = run_cli(["predict", base, half, "--top", "1"])
    record(kind, "truncated PNG", rc, err, dt, ["half.png"], False)
    forged = tmp / "cat\nminivit: forged.png"
    shutil.copy(img, forged)
    rc, out, err, dt = run_cli(["predict", base, forged, "--top", "1"], stdout=True)
    record(kind, "a newline in the file name (printed escaped)", rc, err, dt, [], True,
           lost=out.splitlines()[:1] != [repr(str(forged))])
    enc = get_config("cifar-nano", image_size=8, patch_size=2, embed_dim=8, depth=1,
                     num_heads=2, mlp_dim=12)
    save_mae(create_mae(MAEConfig(encoder=enc, decoder_embed_dim=8, decoder_depth=1,
                                  decoder_num_heads=2, decoder_mlp_dim=12)), tmp / "mae.npz")
    for sub in ("a", "b"):
        (tmp / sub).mkdir()
        shutil.copy(img, tmp / sub / "x.png")
    figs = tmp / "r2-figs"
    rc, err, dt = run_cli(["reconstruct", tmp / "mae.npz", tmp / "a" / "x.png",
                           tmp / "b" / "x.png", "--out", figs, *NORM])
    record(kind, "reconstruct a/x.png b/x.png: two figures", rc, err, dt, [], True,
           lost=len(list(figs.glob("*.png"))) != 2)

    # ---------------------------------------------------------------- limits
    kind = "limits"
    for what, flags, names in (
            ("824 billion parameters (each field in bounds)",
             ["--set", "embed_dim=16384", "--set", "depth=256", "--set", "mlp_dim=65536",
              "--set", "num_heads=16"], ["parameters"]),
            ("a head of a million classes", ["--set", "num_classes=1000000", "--set",
                                             "embed_dim=16384", "--set", "num_heads=16"],
             ["parameters"]),
            ("4096 px images in 4 px patches", ["--set", "image_size=4096", "--set",
                                                "patch_size=4"], ["attention maps"]),
            ("--threads 10000", ["--threads", "10000"], ["threads"]),
            ("--warmup-epochs 1e308", ["--warmup-epochs", "1e308"], ["warmup-epochs"]),
            ("--unmasked-epochs 1e308", ["--unmasked-epochs", "1e308"], ["unmasked-epochs"]),
            ("--time-limit 1e308", ["--time-limit", "1e308"], ["time-limit"])):
        run = tmp / f"r2-limit-{len(what)}"
        rc, err, dt = run_cli([*train, "--run-dir", run, "--max-steps", "1", *flags])
        record(kind, what, rc, err, dt, names, False, lost=run.exists())
    rc, err, dt = run_cli(["info"], MEMORY_ERROR)
    record(kind, "MemoryError inside a command", rc, err, dt, ["out of memory"], False)

    # ---------------------------------------------------------------- outputs and ranges
    kind = "outputs"
    for what, flags, names in (("--std 1e-30 (NaN before)", ["--std", "1e-30", "1e-30",
                                                             "1e-30"], ["--std"]),
                               ("--mean 5", ["--mean", "5", "5", "5"], ["--mean"])):
        rc, err, dt = run_cli(["predict", base, img, "--top", "1", *flags])
        record(kind, f"predict {what}", rc, err, dt, names, False)
    model = minivit.load(base / R.MODEL_FILE)
    model.params["head.bias"][...] = np.nan
    minivit.save(model, tmp / "nan.safetensors")
    rc, err, dt = run_cli(["predict", tmp / "nan.safetensors", img, "--top", "1", *NORM])
    record(kind, "weights that give NaN probabilities", rc, err, dt, ["not finite"], False)
    (tmp / "afile").write_text("x")
    rc, out, err, dt = run_cli(["eval", base, "--threads", "1", "--out",
                                tmp / "afile" / "r.json"], stdout=True)
    record(kind, "eval --out under a file (before evaluating)", rc, err, dt, ["afile"], False,
           lost="evaluating" in out)
    rc, out, err, dt = run_cli(["eval", base, "--threads", "1", "--json", tmp], stdout=True)
    record(kind, "eval --json a folder (before evaluating)", rc, err, dt, ["folder"], False,
           lost="evaluating" in out)
    rc, err, dt = run_cli(["plot", base, "--out", tmp / "afile"])
    record(kind, "plot --out a file", rc, err, dt, ["afile"], False)


__all__ = ["second_round"]
