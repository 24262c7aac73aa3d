"""The run directory cannot be turned against its owner: no write through a symbolic link,
no takeover of a folder of someone else's files, a clean-up that removes only minivit's own
temporary files, and nothing left behind by a run refused before it starts."""

import os

import pytest

pytest.importorskip("safetensors", reason="runs save .safetensors files (.[io])")

from support import cli, copy_run, error_line, train_args

import minivit.io.files as F
import minivit.io.run_lock as run_lock_module
import minivit.io.rundir as R


def test_a_symlinked_lock_file_is_refused_and_its_target_kept(data_dir, tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    run = tmp_path / "run"
    run.mkdir()
    (run / R.LOCK_FILE).symlink_to(victim)
    r = cli(*train_args(data_dir, run, "--max-steps", "1"))
    assert "refusing to write" in error_line(r) and "symbolic link" in r.stderr
    assert victim.read_text() == "precious\n"


@pytest.mark.parametrize("name", [R.STEPS_FILE, R.METRICS_FILE, R.CONFIG_FILE])
def test_resume_refuses_a_symlinked_run_file(base_run, tmp_path, name):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    run = copy_run(base_run, tmp_path / "run")
    (run / name).unlink()
    (run / name).symlink_to(victim)
    r = cli("train", "--resume", run)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert victim.read_text() == "precious\n"


def test_appends_refuse_symlinks_and_fifos(tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("x")
    (tmp_path / R.METRICS_FILE).symlink_to(victim)
    with pytest.raises(F.WriteError, match="symbolic link"):
        R.append_metrics(tmp_path, {"epoch": 1})
    log = R.StepsLog(tmp_path)
    os.mkfifo(tmp_path / R.STEPS_FILE)                    # no reader: would block a writer
    with pytest.raises(F.WriteError, match="not a plain file"):
        log.append(1, 0.5, 1e-3)
    assert victim.read_text() == "x"


def test_atomic_writes_refuse_a_symlink(tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("x")
    (tmp_path / "config.json").symlink_to(victim)
    with pytest.raises(F.WriteError, match="symbolic link"):
        F.write_json(tmp_path / "config.json", {"a": 1})
    assert victim.read_text() == "x" and (tmp_path / "config.json").is_symlink()


def test_a_folder_of_user_files_is_not_taken_over(data_dir, tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "config.json").write_text('{"mine": true}')
    (mine / "model.safetensors").write_bytes(b"my weights")
    r = cli(*train_args(data_dir, mine, "--max-steps", "1"))
    line = error_line(r)
    assert "not empty" in line and "config.json" in line and "choose a new or empty" in line
    assert (mine / "config.json").read_text() == '{"mine": true}'
    assert sorted(p.name for p in mine.iterdir()) == ["config.json", "model.safetensors"]


def test_a_finished_run_is_still_refused_with_the_resume_hint(base_run, data_dir):
    r = cli(*train_args(data_dir, base_run))
    assert "already holds a run; continue it with --resume" in error_line(r)


def test_clean_up_removes_only_minivit_temp_files(tmp_path):
    ours = [".checkpoint.safetensors.minivit-tmp.k2j_9xq1.tmp", ".config.json.minivit-tmp."
            "abcdefgh.tmp"]
    theirs = [".draft.20250101.tmp", ".checkpoint.safetensors.k2j_9xq1.tmp", "notes.tmp",
              ".x.minivit-tmp.ABCDEFGH.tmp"]
    for name in ours + theirs:
        (tmp_path / name).write_text("x")
    assert R.remove_temp_files(tmp_path) == sorted(ours)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(theirs)


def test_atomic_write_temp_names_match_the_clean_up_pattern(tmp_path, monkeypatch):
    seen = []
    real = F.tempfile.mkstemp

    def spy(*a, **kw):
        fd, name = real(*a, **kw)
        seen.append(os.path.basename(name))
        return fd, name
    monkeypatch.setattr(F.tempfile, "mkstemp", spy)
    F.write_json(tmp_path / "config.json", {})
    assert len(seen) == 1 and R.TEMP_PATTERN.match(seen[0]), seen


def test_a_run_refused_before_it_starts_leaves_nothing(tmp_path):
    run = tmp_path / "new" / "run"
    r = cli(*train_args(tmp_path / "no-such-data", run, "--max-steps", "1"))
    assert "CIFAR-10" in error_line(r)
    assert not (tmp_path / "new").exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    r = cli(*train_args(tmp_path / "no-such-data", empty, "--max-steps", "1"))
    assert r.returncode == 2 and empty.is_dir() and not any(empty.iterdir())


def test_a_lock_whose_file_was_replaced_is_not_trusted(tmp_path, monkeypatch):
    run = tmp_path / "run"
    monkeypatch.setattr(run_lock_module, "_same_file", lambda fd, path: False)
    with pytest.raises(R.RunDirInUse, match="try again"):
        with R.run_lock(run):
            pass


def test_a_symlinked_checkpoint_is_refused_when_the_run_starts(base_run, tmp_path):
    run = copy_run(base_run, tmp_path / "run")
    (run / R.MODEL_FILE).rename(tmp_path / "elsewhere.safetensors")
    (run / R.MODEL_FILE).symlink_to(tmp_path / "elsewhere.safetensors")
    before = (tmp_path / "elsewhere.safetensors").read_bytes()
    r = cli("train", "--resume", run)
    assert "model.safetensors: it is a symbolic link" in error_line(r)
    assert "epoch" not in r.stdout                              # refused before training
    assert (tmp_path / "elsewhere.safetensors").read_bytes() == before
