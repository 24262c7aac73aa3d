"""Data parallelism over MPI ranks (minivit/parallel/mpi.py, minivit/parallel/ranks.py).

The ``mpi`` tests launch 2 local ranks with ``mpiexec`` on the tiny runs of tests/support.py;
they are skipped where mpi4py or mpiexec is missing (``pip install -e ".[mpi]"``), and fail
instead with MINIVIT_REQUIRE_MPI=1 (.ci/run), so that CI cannot skip them silently.
"""

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from support import TINY_FLAGS, write_tiny_cifar

from minivit.errors import UserError
from minivit.parallel.mpi import Ranks, connect, launched_size

ROOT = Path(__file__).resolve().parents[2]


def _mpi_missing() -> str:
    try:
        import mpi4py  # noqa: F401
    except ImportError:
        return "mpi4py is not installed (pip install -e \".[mpi]\")"
    if shutil.which("mpiexec") is None:
        return "no mpiexec on PATH (pip install -e \".[mpi]\")"
    return ""


WHY = _mpi_missing()
if WHY and os.environ.get("MINIVIT_REQUIRE_MPI") == "1":
    raise RuntimeError(f"MINIVIT_REQUIRE_MPI=1 but {WHY}")
needs_mpi = [pytest.mark.mpi, pytest.mark.skipif(bool(WHY), reason=WHY)]


def mpiexec(n=2):
    """mpiexec -n N, with Open MPI's flags for a root user and more ranks than cores."""
    cmd = ["mpiexec", "-n", str(n)]
    version = subprocess.run(["mpiexec", "--version"], capture_output=True, text=True).stdout
    if "Open MPI" in version or "OpenRTE" in version:
        cmd[1:1] = ["--oversubscribe", "--allow-run-as-root"]
    return cmd


def env():
    return {**os.environ, "PYTHONPATH": str(ROOT), "OPENBLAS_NUM_THREADS": "1",
            "MINIVIT_MPI_TIMEOUT": "60"}


def train_cmd(data, run_dir, *extra, command="train"):
    return [sys.executable, "-m", "minivit", command, *TINY_FLAGS, "--batch-size", "16",
            "--val-size", "20", "--data-dir", str(data), "--no-progress",
            "--run-dir", str(run_dir), *extra]


def run(cmd, cwd, ranks=None, timeout=120, **kw):
    cmd = (mpiexec(ranks) + cmd) if ranks else cmd
    return subprocess.run(cmd, cwd=cwd, env=env(), capture_output=True, text=True,
                          timeout=timeout, **kw)


def params(run_dir):
    from safetensors.numpy import load_file
    return load_file(str(Path(run_dir) / "model.safetensors"))


def max_diff(a, b):
    assert set(a) == set(b)
    return max(float(np.abs(a[k].astype(np.float64) - b[k]).max()) for k in a)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cifar")
    write_tiny_cifar(folder)
    return folder


# --------------------------------------------------------------------------- without MPI
def test_a_plain_process_is_one_rank_and_never_imports_mpi4py(monkeypatch):
    assert launched_size({}) == 1
    assert launched_size({"PMI_SIZE": "4"}) == 4
    assert launched_size({"OMPI_COMM_WORLD_SIZE": "3"}) == 3
    monkeypatch.setitem(sys.modules, "mpi4py", None)       # an import would fail
    ranks = connect({"PMI_SIZE": "1"})
    assert (ranks.size, ranks.rank, ranks.is_root) == (1, 0, True)
    buf = np.arange(3.0)
    assert ranks.sum_(buf) is buf and list(buf) == [0, 1, 2]


def test_several_ranks_without_mpi4py_is_a_one_line_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "mpi4py", None)
    with pytest.raises(UserError, match=r'2 MPI ranks, but mpi4py is not installed.*\.\[mpi\]'):
        connect({"PMI_SIZE": "2"})


def test_a_shard_is_the_ranks_rows_of_the_batch():
    from minivit.training.batch import Batch
    b = Batch(np.arange(8), np.arange(8) * 2, np.arange(8) * 3, 0.1)
    s = b.rows(slice(4, 8))
    assert list(s.images) == [4, 5, 6, 7] and list(s.targets) == [12, 15, 18, 21]
    assert s.smoothing == 0.1 and Ranks().size == 1


def test_a_resnet_on_several_ranks_is_refused_before_it_starts():
    from types import SimpleNamespace

    from minivit.parallel.ranks import check_rank_split
    from minivit.training.config import TrainConfig
    two = SimpleNamespace(size=2, rank=0)                 # what check_rank_split reads of Ranks
    check_rank_split(two, TrainConfig(model="cifar-nano", batch_size=8))
    for name in ("resnet8", "resnet20"):
        with pytest.raises(UserError, match=f"{name} has BatchNorm statistics.*one rank"):
            check_rank_split(two, TrainConfig(model=name, batch_size=8))


# --------------------------------------------------------------------------- 2 ranks
@pytest.mark.parametrize("dtype, tol", [("float64", 1e-12), ("float32", 2e-4)])
@pytest.mark.parametrize("mpi", [pytest.param(0, marks=needs_mpi)], ids=[""])
def test_two_ranks_train_the_parameters_of_one_process(data, tmp_path, dtype, tol, mpi):
    """Global batch 16 on 2 ranks x 2 threads = batch 16 in one process: mixup / cutmix,
    crop / flip, dropout, drop-path and patch dropout draw the same numbers; only the
    gradient sum's rounding differs.  Rank 0 alone wrote the run directory."""
    flags = ["--epochs", "2", "--dtype", dtype, "--mixup", "0.8", "--cutmix", "1.0",
             "--drop-path", "0.1", "--dropout", "0.1"]
    one = run(train_cmd(data, "one", *flags, "--threads", "1"), tmp_path)
    assert one.returncode == 0, one.stderr
    two = run(train_cmd(data, "two", *flags, "--threads", "2"), tmp_path, ranks=2)
    assert two.returncode == 0, two.stderr
    assert max_diff(params(tmp_path / "one"), params(tmp_path / "two")) < tol
    # rank 0 alone wrote: the same files as one process, each line once, one start line
    assert sorted(os.listdir(tmp_path)) == ["one", "two"]
    assert sorted(os.listdir(tmp_path / "two")) == sorted(os.listdir(tmp_path / "one"))
    for name, lines in (("steps.jsonl", 10), ("metrics.jsonl", 2)):
        assert len((tmp_path / "two" / name).read_text().splitlines()) == lines
    assert two.stdout.count("minivit train: VisionTransformer") == 1
    assert two.stdout.count("done, 10 steps") == 1


@pytest.mark.parametrize("mpi", [pytest.param(0, marks=needs_mpi)], ids=[""])
def test_mae_on_two_ranks_trains_the_parameters_of_one_process(data, tmp_path, mpi):
    flags = ["--epochs", "1", "--dtype", "float64", "--threads", "1"]
    one = run(train_cmd(data, "one", *flags, command="pretrain"), tmp_path)
    two = run(train_cmd(data, "two", *flags, command="pretrain"), tmp_path, ranks=2)
    assert one.returncode == 0 and two.returncode == 0, one.stderr + two.stderr
    assert max_diff(params(tmp_path / "one"), params(tmp_path / "two")) < 1e-12


@pytest.mark.parametrize("mpi", [pytest.param(0, marks=needs_mpi)], ids=[""])
def test_mpp_trains_on_two_ranks(data, tmp_path, mpi):
    r = run(train_cmd(data, "mpp", "--epochs", "1", "--objective", "mpp", command="pretrain"),
            tmp_path, ranks=2)
    assert r.returncode == 0, r.stderr          # the ranks' parameters were checked equal
    assert "done, 5 steps" in r.stdout


@pytest.mark.parametrize("mpi", [pytest.param(0, marks=needs_mpi)], ids=[""])
def test_two_ranks_stop_together_on_sigterm_and_resume_bit_for_bit(data, tmp_path, mpi):
    flags = ["--steps", "120", "--checkpoint-every", "5", "--eval-every", "0", "--threads", "1"]
    straight = run(train_cmd(data, "straight", *flags), tmp_path, ranks=2)
    assert straight.returncode == 0, straight.stderr
    proc = subprocess.Popen(mpiexec(2) + train_cmd(data, "killed", *flags), cwd=tmp_path,
                            env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    deadline = time.monotonic() + 60
    while not (tmp_path / "killed" / "checkpoint.safetensors").exists():
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)                  # mpiexec passes it to every rank
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert out.count("interrupted at step") == 1
    resumed = run([sys.executable, "-m", "minivit", "train", "--resume", "killed",
                   "--no-progress"], tmp_path, ranks=2)
    assert resumed.returncode == 0, resumed.stderr
    a, b = params(tmp_path / "straight"), params(tmp_path / "killed")
    assert all(np.array_equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("mpi", [pytest.param(0, marks=needs_mpi)], ids=[""])
def test_ranks_with_different_configs_or_an_odd_batch_are_refused(data, tmp_path, mpi):
    one = train_cmd(data, "run", "--steps", "2", "--lr", "0.001")
    other = train_cmd(data, "run", "--steps", "2", "--lr", "0.002")
    r = run(mpiexec(1)[:-1] + ["1"] + one + [":", "-n", "1"] + other, tmp_path)
    assert r.returncode != 0
    lines = [ln for ln in r.stderr.splitlines() if "error" in ln]
    assert len(lines) == 1 and "the 2 ranks disagree: rank 1 has another config" in lines[0]
    r = run(train_cmd(data, "odd", "--steps", "2", "--batch-size", "15"), tmp_path, ranks=2)
    assert r.returncode != 0
    assert "the global batch of 15 does not split over 2 ranks" in r.stderr


@pytest.mark.parametrize("mpi", [pytest.param(0, marks=needs_mpi)], ids=[""])
def test_a_rank_that_never_answers_stops_the_others_after_the_timeout(tmp_path, mpi):
    script = ("import time, numpy as np\nfrom minivit.parallel.mpi import connect\n"
              "ranks = connect()\nif ranks.rank == 1:\n    time.sleep(120)\n"
              "ranks.sum_(np.ones(4))\n")
    start = time.monotonic()
    r = subprocess.run(mpiexec(2) + [sys.executable, "-c", script], cwd=tmp_path,
                       env={**env(), "MINIVIT_MPI_TIMEOUT": "2"}, capture_output=True,
                       text=True, timeout=100)
    assert r.returncode != 0 and time.monotonic() - start < 60
    assert "rank 0: no answer from the other ranks for 2 s in the gradient sum" in r.stderr, \
        (r.returncode, r.stdout, r.stderr)


@pytest.mark.parametrize("mpi", [pytest.param(0, marks=needs_mpi)], ids=[""])
def test_the_time_limit_of_rank_0_stops_both_ranks_at_one_step(data, tmp_path, mpi):
    r = run(train_cmd(data, "run", "--steps", "50", "--time-limit", "0.0001", "--threads", "1"),
            tmp_path, ranks=2)
    assert r.returncode == 0, r.stderr
    assert len(re.findall(r"stopped at step \d+ of 50", r.stdout)) == 1     # no hang, rank 0


@pytest.mark.parametrize("mpi", [pytest.param(0, marks=needs_mpi)], ids=[""])
def test_a_time_budget_on_two_ranks_is_timed_on_one_clock(data, tmp_path, mpi):
    """The ranks time the same probe steps and first epoch (the clock is the slowest rank's)
    and fix the same length twice; the steps run it names repeats it on 2 ranks; the weight
    average rides along."""
    flags = ["--epochs", "3", "--threads", "1", "--ema", "0.9", "--warmup-steps", "5"]
    r = run(train_cmd(data, "budget", *flags, "--time-budget", "5"), tmp_path, ranks=2)
    assert r.returncode == 0, r.stderr
    steps = re.findall(r"repeat exactly with --steps (\d+)", r.stdout)   # the probe's, the
    assert len(steps) == 2 and r.stdout.count("; time budget 5 min") == 1, r.stdout   # epoch's
    assert r.stdout.count("(again after step 5, from its wall time") == 1, r.stdout
    again = run(train_cmd(data, "steps", *flags, "--steps", steps[1]), tmp_path, ranks=2)
    assert again.returncode == 0, again.stderr
    a, b = params(tmp_path / "budget"), params(tmp_path / "steps")
    assert all(np.array_equal(a[k], b[k]) for k in a)


STANDIN_TRAIN = """import sys
sys.path.insert(0, {tests!r})
import cupy_standin
cupy_standin.install()
import minivit.backend as backend
backend._cupy.update(module=None, error=None)
from minivit.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.parametrize("mpi", [pytest.param(0, marks=needs_mpi)], ids=[""])
def test_two_ranks_on_the_cupy_standin_sum_through_the_host(data, tmp_path, mpi):
    """CuPy arrays without NCCL: the gradients are summed through a host copy; the masks
    are the rows of host draws copied to the device; the ranks' parameters are checked
    equal at each checkpoint."""
    script = tmp_path / "standin_train.py"
    script.write_text(STANDIN_TRAIN.format(tests=str(ROOT / "tests")))
    cmd = train_cmd(data, "run", "--epochs", "1", "--threads", "1", "--drop-path", "0.1")
    r = run([sys.executable, str(script), "--backend", "cupy", *cmd[3:]], tmp_path, ranks=2)
    assert r.returncode == 0, r.stderr
    assert "float32, cupy)" in r.stdout and "done, 5 steps" in r.stdout
