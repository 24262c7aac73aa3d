"""Hostile and damaged files, concurrent runs and failed writes: each ends in one clear line
naming the file (or loads correctly), nothing half-written stays, nothing good is lost.

Every case writes its own small crafted file; nothing comes from the network.  The table in
docs/reliability.md is made by benchmarks/attack_inputs.py from the same kinds of cases."""

import errno
import json
import os
import subprocess
import sys
import textwrap
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("safetensors", reason="model and checkpoint files are .safetensors (.[io])")

from support import TINY_FLAGS, make_cfg, write_tiny_cifar

import minivit
import minivit.io.files as F
import minivit.io.rundir as R
import minivit.training as T
from minivit.models.vit_config import ViTConfig

ROOT = Path(__file__).resolve().parents[2]
CFG = ViTConfig(image_size=8, patch_size=4, num_classes=3, embed_dim=16, depth=2, num_heads=4,
                mlp_dim=32, name="t")


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return write_tiny_cifar(tmp_path_factory.mktemp("cifar"))




def cli(*args, timeout=120):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OPENBLAS_NUM_THREADS": "1"}
    env.pop("MINIVIT_DEBUG", None)
    return subprocess.run([sys.executable, "-m", "minivit", *map(str, args)], env=env,
                          capture_output=True, text=True, timeout=timeout)


def one_line(stderr: str) -> str:
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    return lines[0]


# ------------------------------------------------------------------ 1. torn metrics.jsonl
def test_torn_last_metrics_line_is_dropped_with_a_warning(tmp_path):
    good = [{"epoch": 1, "step": 5}, {"epoch": 2, "step": 10}]
    (tmp_path / R.METRICS_FILE).write_text("".join(json.dumps(r) + "\n" for r in good)
                                           + '{"epoch": 3, "st')
    with pytest.warns(UserWarning, match=r"metrics.jsonl line 3: dropped an incomplete"):
        assert R.read_metrics(tmp_path) == good
    with pytest.warns(UserWarning, match="incomplete last line"):
        R.trim_metrics(tmp_path, 2)
    assert R.read_metrics(tmp_path) == good                  # no warning any more


def test_bad_metrics_line_in_the_middle_names_file_and_line(tmp_path):
    (tmp_path / R.METRICS_FILE).write_text('{"epoch": 1}\n{"epoch" 2}\n{"epoch": 3}\n')
    with pytest.raises(ValueError, match=r"metrics.jsonl line 2: not a metrics record"):
        R.read_metrics(tmp_path)
    with pytest.raises(ValueError, match=r"line 2"):
        R.trim_metrics(tmp_path, 3)


def test_resume_and_plot_after_a_torn_metrics_line(data_dir, tmp_path):
    run = tmp_path / "run"
    T.train(make_cfg(data_dir, run, max_steps=5))
    with open(run / R.METRICS_FILE, "a") as f:
        f.write('{"epoch": 2, "step": 10, "train_lo')          # the disk filled up here
    with pytest.warns(UserWarning, match="incomplete last line"):
        assert T.resume(run)["status"] == "done"
    assert [r["epoch"] for r in R.read_metrics(run)] == [1, 2]


# ------------------------------------------------------------------ 2. one process per run
HOLD = textwrap.dedent("""
    import sys
    from minivit.io.rundir import run_lock
    with run_lock(sys.argv[1]):
        print("locked", flush=True)
        sys.stdin.read()
""")


def _holder(run_dir):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    p = subprocess.Popen([sys.executable, "-c", HOLD, str(run_dir)], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, text=True, env=env)
    assert p.stdout.readline().strip() == "locked"
    return p


def _release(holder):
    holder.stdin.close()
    holder.wait(timeout=30)
    holder.stdout.close()


def test_second_trainer_on_a_locked_run_dir_refuses_at_once(data_dir, tmp_path):
    run, other = tmp_path / "run", tmp_path / "other"
    holder = _holder(run)
    try:
        t0 = time.perf_counter()
        with pytest.raises(R.RunDirInUse, match=rf"in use by another minivit process \(PID "
                                                rf"{holder.pid}\); wait for it or choose"):
            T.train(make_cfg(data_dir, run))
        assert time.perf_counter() - t0 < 1.0                 # before loading any data
        assert sorted(p.name for p in run.iterdir()) == [R.LOCK_FILE]    # nothing written
        r = cli("train", "--data-dir", data_dir, "--run-dir", run, "--no-progress")
        assert r.returncode == 2 and f"PID {holder.pid}" in one_line(r.stderr)
    finally:
        _release(holder)
    T.train(make_cfg(data_dir, other, max_steps=1))
    holder = _holder(other)
    try:
        before = (other / R.CHECKPOINT_FILE).read_bytes()
        for resume in (["train", "--resume", other], ["pretrain", "--resume", other]):
            r = cli(*resume)
            assert r.returncode == 2 and "in use by another minivit process" in one_line(r.stderr)
        assert (other / R.CHECKPOINT_FILE).read_bytes() == before
    finally:
        _release(holder)
    assert T.resume(other)["status"] == "done"                           # free again


def test_a_lock_left_by_a_killed_process_does_not_block(data_dir, tmp_path):
    run = tmp_path / "run"
    holder = _holder(run)
    holder.kill()                                  # kill -9: the kernel drops the flock
    holder.wait(timeout=30)
    holder.stdin.close(), holder.stdout.close()
    assert (run / R.LOCK_FILE).read_text().strip() == str(holder.pid)       # a stale PID
    with R.run_lock(run):
        assert (run / R.LOCK_FILE).read_text().strip() == str(os.getpid())


def test_two_trainers_started_together_one_runs(data_dir, tmp_path):
    run = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OPENBLAS_NUM_THREADS": "1"}
    args = [sys.executable, "-m", "minivit", "train", "--data-dir", str(data_dir), "--run-dir",
            str(run), "--batch-size", "16", "--val-size", "20", "--epochs", "2",
            "--no-progress", "--threads", "1",
            *TINY_FLAGS]
    procs = [subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for _ in range(2)]
    results = [(p.wait(timeout=120), p.stderr.read()) for p in procs]
    for p in procs:
        p.stdout.close(), p.stderr.close()
    codes = sorted(rc for rc, _ in results)
    assert codes == [0, 2], results
    refused = next(err for rc, err in results if rc == 2)
    assert ("in use by another minivit process" in refused
            or "already holds a run" in refused), refused
    assert [r["epoch"] for r in R.read_metrics(run)] == [1, 2]        # each epoch once


# ------------------------------------------------------------------ 3. checksum covers metadata
def _model(cfg=CFG, seed=0):
    return minivit.create_model(cfg, seed=seed)


def _flip(path, old: bytes, new: bytes):
    data = path.read_bytes()
    assert data.count(old) == 1 and len(old) == len(new)
    path.write_bytes(data.replace(old, new))


def test_changed_metadata_byte_is_corrupt(tmp_path):
    path = tmp_path / "m.safetensors"
    minivit.save(_model(), path)
    _flip(path, b'\\"num_heads\\": 4', b'\\"num_heads\\": 2')
    with pytest.raises(F.CorruptFileError, match="m.safetensors: file is corrupt"):
        minivit.load(path)


def test_changed_checkpoint_state_is_corrupt(data_dir, tmp_path):
    run = tmp_path / "run"
    T.train(make_cfg(data_dir, run, max_steps=3))
    path = run / R.CHECKPOINT_FILE
    _flip(path, b'\\"step\\": 3,', b'\\"step\\": 1,')
    with pytest.raises(F.CorruptFileError, match="file is corrupt"):
        T.resume(run)


def test_files_with_the_old_checksum_still_load_and_are_checked(tmp_path):
    import safetensors.numpy
    model = _model()
    arrays = {k: np.asarray(v) for k, v in model.params.items()}
    meta = {"format": "minivit", "minivit_config": json.dumps(CFG.to_dict()),
            F.OLD_CHECKSUM_KEY: F.tensors_sha256(arrays)}
    path = tmp_path / "old.safetensors"
    path.write_bytes(safetensors.numpy.save(arrays, metadata=meta))
    loaded = minivit.load(path)
    assert all(np.array_equal(loaded.params[k], arrays[k]) for k in arrays)
    arrays["cls_token"] = arrays["cls_token"] + 1
    path.write_bytes(safetensors.numpy.save(arrays, metadata=meta))
    with pytest.raises(F.CorruptFileError):
        minivit.load(path)
    committed = ROOT / "results" / "cifar-nano-pd50-38ep-um1" / "model.safetensors"
    assert F.CHECKSUM_KEY not in safetensors.safe_open(str(committed), "np").metadata()
    assert minivit.load(committed).config.name == "cifar-nano"     # written before the v2 key


# ------------------------------------------------------------------ 4. tiny files, huge sizes
def test_official_npz_with_a_huge_block_index_is_refused_at_once(tmp_path):
    path = tmp_path / "official.npz"
    np.savez(path, **{"embedding/kernel": np.zeros((4, 4, 3, 16), np.float32),
                      "Transformer/encoderblock_999999999/LayerNorm_0/scale": np.ones(16)})
    t0 = time.perf_counter()
    with pytest.raises(ValueError, match=r"official.npz: block indices must run 0..depth-1"):
        minivit.load(path)
    assert time.perf_counter() - t0 < 2


@pytest.mark.parametrize("depth", [10**9, 10**6, 257])
def test_model_whose_metadata_declares_a_huge_depth_is_refused(tmp_path, depth):
    path = tmp_path / "m.safetensors"
    minivit.save(_model(), path)
    arrays, meta = F.read_arrays(path)
    meta["minivit_config"] = json.dumps({**CFG.to_dict(), "depth": depth})
    F.write_arrays(path, arrays, meta)                      # a valid checksum: only bounds help
    t0 = time.perf_counter()
    with pytest.raises(ValueError, match=r"m.safetensors: config.depth is .* more than") as e:
        minivit.load(path)
    assert time.perf_counter() - t0 < 2 and len(str(e.value)) < 300


def test_config_that_fits_bounds_but_not_the_file_gives_a_short_message(tmp_path):
    path = tmp_path / "m.safetensors"
    minivit.save(_model(), path)
    arrays, meta = F.read_arrays(path)
    meta["minivit_config"] = json.dumps({**CFG.to_dict(), "depth": 256})
    F.write_arrays(path, arrays, meta)
    with pytest.raises(ValueError, match=r"depth 256, embed_dim 16\) implies 3080 tensors") as e:
        minivit.load(path)
    assert len(str(e.value)) < 500


def test_npz_zip_bomb_is_refused_before_inflating(tmp_path):
    path = tmp_path / "bomb.npz"
    header = np.lib.format
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        with z.open("cls_token.npy", "w", force_zip64=True) as f:
            header.write_array_header_1_0(f, {"descr": "<f4", "fortran_order": False,
                                              "shape": (2**24,)})
            chunk = bytes(1 << 22)
            for _ in range(16):                              # 64 MiB of zeros, ~64 KB on disk
                f.write(chunk)
    assert path.stat().st_size < 1 << 20
    with pytest.raises(ValueError, match=r"bomb.npz: .*'cls_token.npy' inflates from \d+ to "
                                         r"67108\d+ bytes"):
        minivit.load(path)


def test_npz_member_whose_header_declares_more_than_it_holds(tmp_path):
    path = tmp_path / "liar.npz"
    with zipfile.ZipFile(path, "w") as z:
        with z.open("pos_embed.npy", "w") as f:
            np.lib.format.write_array_header_1_0(f, {"descr": "<f8", "fortran_order": False,
                                                     "shape": (10**6, 10**6)})
            f.write(bytes(64))
    with pytest.raises(ValueError, match=r"liar.npz: .*declares shape \(1000000, 1000000\)"):
        minivit.load(path)


def test_genuine_compressed_npz_still_loads(tmp_path):
    model = _model()
    path = tmp_path / "c.npz"
    np.savez_compressed(path, **{k: np.asarray(v) for k, v in model.params.items()},
                        __minivit_config__=np.frombuffer(json.dumps(CFG.to_dict()).encode(),
                                                         np.uint8))
    assert minivit.load(path, config=CFG).config == CFG


# ------------------------------------------------------------------ 5. temporary files
def test_leftover_temp_files_are_removed_on_start_and_resume(data_dir, tmp_path):
    run = tmp_path / "run"
    T.train(make_cfg(data_dir, run, max_steps=3))
    left = [run / ".checkpoint.safetensors.minivit-tmp.k2j_9xq1.tmp",
            run / ".model.safetensors.minivit-tmp.abcdefgh.tmp"]
    keep = [run / "notes.tmp", run / ".hidden.tmp", run / "mine.txt", run / ".draft.20250101.tmp",
            run / ".checkpoint.safetensors.k2j_9xq1.tmp"]
    for p in left + keep:
        p.write_bytes(b"x" * 100)
    T.resume(run, max_steps=4)
    assert not any(p.exists() for p in left) and all(p.exists() for p in keep)
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    (fresh / left[0].name).write_bytes(b"x")
    T.train(make_cfg(data_dir, fresh, max_steps=1))
    assert not (fresh / left[0].name).exists()


# ------------------------------------------------------------------ 6. one line, file named
@pytest.mark.parametrize("suffix", [".safetensors", ".npz"])
def test_disk_full_names_the_file_and_keeps_the_old_one(tmp_path, monkeypatch, suffix):
    path = tmp_path / f"m{suffix}"
    old = _model(seed=0)
    minivit.save(old, path)
    before = path.read_bytes()

    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(F.os, "fsync", full)
    with pytest.raises(F.WriteError, match=rf"cannot write .*m{suffix}: No space left on "
                                           r"device; free some space") as e:
        minivit.save(_model(seed=1), path)
    assert "\n" not in str(e.value) and "Errno" not in str(e.value)
    with pytest.raises(F.WriteError, match=r"cannot write .*c.json: No space left"):
        F.write_json(tmp_path / "c.json", {})
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]


def test_disk_full_during_a_run_keeps_the_last_checkpoint(data_dir, tmp_path, monkeypatch):
    run = tmp_path / "run"
    T.train(make_cfg(data_dir, run, max_steps=5))
    ckpt = (run / R.CHECKPOINT_FILE).read_bytes()

    def full(*a, **k):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(F.os, "fsync", full)
    with pytest.raises(OSError, match=r"cannot write .*: No space left on device"):
        T.resume(run)
    monkeypatch.undo()
    assert (run / R.CHECKPOINT_FILE).read_bytes() == ckpt
    assert T.resume(run)["status"] == "done"


@pytest.mark.parametrize("config", ["null", "5", "[1, 2]", "{\"depth\": null}", "{not json",
                                    "{\"drop_rate\": null}"])
def test_config_metadata_of_the_wrong_type_is_one_line(tmp_path, config):
    path = tmp_path / "m.safetensors"
    minivit.save(_model(), path)
    arrays, meta = F.read_arrays(path)
    F.write_arrays(path, arrays, {**meta, "minivit_config": config})
    with pytest.raises(ValueError, match=r"m.safetensors: ") as e:
        minivit.load(path)
    assert "\n" not in str(e.value)
    r = cli("eval", path, "--data-dir", tmp_path / "none")
    assert r.returncode == 2 and "m.safetensors" in one_line(r.stderr)


def test_damaged_checkpoint_state_is_one_line(data_dir, tmp_path):
    run = tmp_path / "run"
    T.train(make_cfg(data_dir, run, max_steps=3))
    path = run / R.CHECKPOINT_FILE
    tensors, meta = F.read_safetensors(path)
    from minivit.training.checkpoint import CHECKPOINT_FORMAT
    path.write_bytes(F.safetensors_bytes(tensors, {"format": CHECKPOINT_FORMAT, "state": "5"}))
    with pytest.raises(ValueError, match="checkpoint.safetensors: the checkpoint's state is "
                                         "damaged"):
        T.resume(run)
