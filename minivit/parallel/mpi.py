"""The processes of a run started by ``mpirun`` / ``mpiexec`` / ``srun``: who they are and the
few collectives training needs, each with a deadline.

    ranks = connect()           # Ranks(size 1) unless launched under MPI with several ranks
    ranks.rank, ranks.size, ranks.is_root
    ranks.sum_(flat)            # in-place sum over the ranks (the gradient buffer: NumPy or CuPy)
    ranks.max_int(x)            # the largest of the ranks' ints
    ranks.gather_text(text)     # every rank's string, in rank order

MPI is used only when the launcher's variables say there are several ranks
(OMPI_COMM_WORLD_SIZE: Open MPI; PMI_SIZE: MPICH, Intel MPI, srun --mpi=pmi2; PMIX_SIZE /
SLURM_STEP_NUM_TASKS: PMIx, srun), so a plain ``minivit train`` never imports mpi4py and with
one rank nothing changes.

A collective of MPI waits forever for a rank that died or hangs.  Each one here is
nonblocking (``Iallreduce``, ``Iallgather``) and polled until a deadline,
MINIVIT_MPI_TIMEOUT seconds (default 300); past it the rank prints one line and aborts the
whole job (``MPI_Abort``).

CuPy: the gradient sum runs over NCCL (``cupy.cuda.nccl``) when CuPy has it, else over a
CUDA-aware MPI given the device buffer when MINIVIT_MPI_CUDA_AWARE=1, else through a host
copy (host staging).  Only host staging is tested here (no GPU); the NCCL sum has no
deadline (NCCL has none).
"""

from __future__ import annotations

import os
import sys
import time

from minivit.backend import (
    cupy_nccl,
    get_backend,
    get_xp,
    host_xp,
    is_cupy_array,
    to_device,
    to_numpy,
)
from minivit.errors import UserError
from minivit.install import install_hint

SIZE_VARS = ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE", "SLURM_STEP_NUM_TASKS")
LOCAL_RANK_VARS = ("OMPI_COMM_WORLD_LOCAL_RANK", "MPI_LOCALRANKID", "SLURM_LOCALID")
DEFAULT_TIMEOUT = 300.0
ABORT_GRACE = 1.0              # seconds between the error line and MPI_Abort
INSTALL_HINT = install_hint("mpi")


def launched_size(environ=None) -> int:
    """The number of ranks the launcher started (1 when not launched under MPI)."""
    environ = os.environ if environ is None else environ
    for name in SIZE_VARS:
        value = environ.get(name, "")
        if value.isdigit() and int(value) > 0:
            return int(value)
    return 1


def connect(environ=None) -> "Ranks":
    """The ranks of this run: MPI's world when launched with several ranks, else one rank."""
    size = launched_size(environ)
    if size == 1:
        return Ranks()
    try:
        from mpi4py import MPI
    except ImportError:
        raise UserError(f"launched as {size} MPI ranks, but mpi4py is not installed; install "
                        f"it with: {INSTALL_HINT}") from None
    ranks = Ranks(MPI.COMM_WORLD, MPI)
    if ranks.size != size:
        raise UserError(f"the launcher started {size} ranks but MPI sees {ranks.size}: mpi4py "
                        "is linked with another MPI than the mpirun used (on a cluster, "
                        "build mpi4py against its MPI; see docs/mpi.md)")
    if get_backend() == "cupy":
        _use_local_gpu(environ or os.environ)
    return ranks


class Ranks:
    """This process's rank among ``size``; without a communicator, the only one."""

    def __init__(self, comm=None, mpi=None):
        self.comm, self.MPI = comm, mpi
        self.size = 1 if comm is None else comm.Get_size()
        self.rank = 0 if comm is None else comm.Get_rank()
        self.timeout = _timeout()
        self._device_sum = None         # the CuPy gradient sum, chosen at its first use

    @property
    def is_root(self) -> bool:
        return self.rank == 0

    # -- collectives
    def sum_(self, buf, what: str = "the gradient sum"):
        """Sum ``buf`` over the ranks, in place (a contiguous NumPy or CuPy array)."""
        if self.size == 1:
            return buf
        if is_cupy_array(buf):
            if self._device_sum is None:
                self._device_sum = _device_sum(self)
            self._device_sum(buf, what)
            return buf
        self.wait(self.comm.Iallreduce(self.MPI.IN_PLACE, buf, op=self.MPI.SUM), what)
        return buf

    def max_int(self, value: int, what: str = "the stop check") -> int:
        if self.size == 1:
            return int(value)
        buf = host_xp().array([value], dtype="int64")
        self.wait(self.comm.Iallreduce(self.MPI.IN_PLACE, buf, op=self.MPI.MAX), what)
        return int(buf[0])

    def gather_text(self, text: str, what: str = "the start") -> list[str]:
        """Every rank's ``text`` (UTF-8), in rank order."""
        if self.size == 1:
            return [text]
        np = host_xp()
        data = text.encode()
        n = self.max_int(len(data), what)
        mine = np.zeros(n + 1, dtype="uint8")
        mine[:len(data)] = np.frombuffer(data, dtype="uint8")
        every = np.zeros((self.size, n + 1), dtype="uint8")
        self.wait(self.comm.Iallgather(mine, every), what)
        return [bytes(row).rstrip(b"\0").decode(errors="replace") for row in every]

    def wait(self, request, what: str) -> None:
        """Poll a nonblocking request until it completes or the deadline passes."""
        start = time.monotonic()
        pause = 0.0
        while not request.Test():
            waited = time.monotonic() - start
            if waited > self.timeout:
                self.abort(f"rank {self.rank}: no answer from the other ranks for "
                           f"{self.timeout:g} s in {what} (a rank died or hangs); stopping "
                           "every rank (MINIVIT_MPI_TIMEOUT sets the wait)")
            time.sleep(pause)
            pause = 1e-4 if waited < 1.0 else 0.02

    def abort(self, message: str):
        print(f"minivit: error: {message}", file=sys.stderr, flush=True)
        time.sleep(ABORT_GRACE)     # let the launcher forward the line before it kills the job
        self.comm.Abort(1)
        raise SystemExit(1)                     # not reached: Abort ends the process


def _timeout() -> float:
    text = os.environ.get("MINIVIT_MPI_TIMEOUT", "")
    if not text:
        return DEFAULT_TIMEOUT
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise UserError(f"MINIVIT_MPI_TIMEOUT must be a positive number of seconds, got {text!r}")
    return value


def _use_local_gpu(environ) -> None:
    """Rank i of a host on the host's GPU i (modulo their number)."""
    cuda = get_xp().cuda
    for name in LOCAL_RANK_VARS:
        if environ.get(name, "").isdigit():
            cuda.Device(int(environ[name]) % cuda.runtime.getDeviceCount()).use()
            return


def _device_sum(ranks: Ranks):
    """The in-place sum of a CuPy buffer: NCCL, a CUDA-aware MPI, or host staging."""
    nccl = _nccl_communicator(ranks)
    if nccl is not None:
        comm, module = nccl

        def over_nccl(buf, what):
            kind = {"float32": module.NCCL_FLOAT32, "float64": module.NCCL_FLOAT64}[buf.dtype.name]
            comm.allReduce(buf.data.ptr, buf.data.ptr, buf.size, kind, module.NCCL_SUM,
                           get_xp().cuda.get_current_stream().ptr)
        return over_nccl
    if os.environ.get("MINIVIT_MPI_CUDA_AWARE") == "1":
        def over_cuda_aware_mpi(buf, what):
            get_xp().cuda.get_current_stream().synchronize()     # MPI reads the finished buffer
            ranks.wait(ranks.comm.Iallreduce(ranks.MPI.IN_PLACE, buf, op=ranks.MPI.SUM), what)
        return over_cuda_aware_mpi

    def over_host(buf, what):
        host = to_numpy(buf)
        ranks.sum_(host, what)
        buf[...] = to_device(host)
    return over_host


def _nccl_communicator(ranks: Ranks):
    """(NcclCommunicator, the nccl module), or None where CuPy has no NCCL or
    MINIVIT_MPI_NCCL=0."""
    if os.environ.get("MINIVIT_MPI_NCCL") == "0":
        return None
    uid, nccl = None, cupy_nccl()
    try:
        uid = None if nccl is None else nccl.get_unique_id() if ranks.is_root else ()
    except (AttributeError, RuntimeError):
        pass
    if "0" in ranks.gather_text("0" if uid is None else "1"):    # NCCL on every rank, or none
        return None
    uid = ranks.comm.bcast(uid, root=0)
    return nccl.NcclCommunicator(ranks.size, uid, ranks.rank), nccl


__all__ = ["DEFAULT_TIMEOUT", "INSTALL_HINT", "Ranks", "connect", "launched_size"]
