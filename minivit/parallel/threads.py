"""Data parallelism on a multi-core CPU: one batch split over threads.

NumPy releases the GIL inside its array operations (ufuncs and the BLAS matrix products), so
T Python threads, each running the forward and backward pass of its own replica of the model
on B/T of the images, keep T cores busy.  The replicas share the parameter buffer (read only
during a step) and each keeps its own activations and gradient buffer.  The loss is a mean
over the batch, so

    L = (1/B) sum_i l_i = sum_s (B_s/B) L_s    =>    dL/dtheta = sum_s (B_s/B) dL_s/dtheta

and each shard's gradient is the backward of its own dlogits scaled by B_s/B; the shards are
summed in order 0, 1, ... (one whole-buffer add per shard), so a run is deterministic for a
given number of threads, and another number changes only the rounding of that sum: the random
masks (dropout, drop-path, patch dropout) are cut from draws made for the whole batch
(``ShardGenerator``), so each image gets the same mask whatever the split.

Each thread must run one-threaded BLAS, or T threads x T BLAS threads fight over T cores.
Best is OPENBLAS_NUM_THREADS=1 (or OMP_/MKL_NUM_THREADS) set before NumPy loads; the
``minivit`` command line starts itself again with it set when it will split batches
(minivit/cli.py).  From Python without it, ``DataParallel`` lowers BLAS to one thread with
threadpoolctl while it is open (the ``train`` extra installs it); measured here on 2 cores,
that trains at ~105-135 images/s against ~150-160 with the variable set and ~80-95 with one
thread (OpenBLAS's own worker threads stay alive when their number is lowered late).

Only for NumPy: on CuPy one GPU already runs the whole batch in parallel.
"""

from __future__ import annotations

import contextvars
import math
import os
from concurrent.futures import ThreadPoolExecutor

from minivit.backend import array_module, get_backend, host_xp, to_device
from minivit.backend import rng as make_rng
from minivit.models.vit_config import STOCHASTIC_FIELDS

THREADS_PER_CORE = 4         # --threads above this many per core: refused


def available_cores() -> int:
    """CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def resolve_threads(threads: int) -> int:
    """0 means: one per available core on NumPy, 1 on CuPy.  More than THREADS_PER_CORE per
    available core is refused (each thread keeps a replica's activations)."""
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 0:
        raise ValueError(f"threads must be an integer >= 0 (0 = one per core), got {threads!r}")
    if threads == 0:
        return available_cores() if get_backend() == "numpy" else 1
    most = THREADS_PER_CORE * available_cores()
    if threads > most:
        raise ValueError(f"threads must be at most {most} ({THREADS_PER_CORE} per available "
                         f"core), got {threads}; 0 = one per core")
    return threads


def shard_slices(batch: int, shards: int) -> list[slice]:
    """Split range(batch) into at most `shards` contiguous, non-empty, near-equal slices."""
    shards = max(1, min(shards, batch))
    bounds = [batch * s // shards for s in range(shards + 1)]
    return [slice(bounds[s], bounds[s + 1]) for s in range(shards)]


def _is_stochastic(config, patch_dropout: bool = True) -> bool:
    """Does a forward pass draw dropout / drop-path / patch-dropout masks from model.rng?
    patch_dropout=False: patch dropout is switched off (unmasked tuning)."""
    return any(getattr(config, k, 0) for k in STOCHASTIC_FIELDS
               if patch_dropout or k != "patch_drop_rate")


class DataParallel:
    """``threads`` replicas of ``model`` that share its ``params``; each takes a slice of a batch.

        dp = DataParallel(model, threads=2)
        outs = dp.map_shards(fn, images, targets)   # fn(replica, x_s, t_s, weight) per shard
        dp.sum_grads([o.grads for o in outs])       # their gradients, summed in model.grads
        logits = dp.forward(images)                 # evaluation
        dp.close()                                                       # or use `with`

    The model needs ``replica()``, ``clear_cache()``, ``forward`` and ``backward``
    (VisionTransformer, MaskedAutoencoder, MaskedPatchPrediction have them).

    With dropout, drop-path or patch dropout, each training step draws one seed from
    ``model.rng`` (which a checkpoint stores) and every shard, the one-thread case included,
    draws its masks through a ``ShardGenerator`` of that seed: the masks of image i are the
    same for any number of threads.  Without them, and in evaluation, ``model.rng`` is
    untouched.  ``patch_dropout=False`` (unmasked tuning) counts patch dropout as off.
    """

    def __init__(self, model, threads: int):
        if threads < 1:
            raise ValueError(f"DataParallel needs threads >= 1, got {threads}")
        if threads > 1 and get_backend() != "numpy":
            raise ValueError("DataParallel splits a batch over CPU threads; it is for the NumPy "
                             "backend only (use threads=1 on CuPy)")
        self.model, self.threads = model, threads
        self.replicas = [model.replica() for _ in range(threads)] if threads > 1 else [model]
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="minivit") \
            if threads > 1 else None
        self._blas_limit = _limit_blas_threads() if threads > 1 else None

    # -- the general operation: a function of (replica, shard of each array, weight)
    def map_shards(self, fn, *arrays, patch_dropout=True, train=True, part=None):
        """Split each array along its first axis into one shard per thread and run
        ``fn(replica, *shards, weight)`` on the pool, weight = B_s / B.

        Returns the results in shard order.  With one thread, ``fn(model, *arrays, 1.0)`` runs
        in the calling thread.  train=False: no random masks are drawn (evaluation).
        part (start, total): the arrays are rows start.. of a batch of total split over
        processes (minivit.parallel.ranks): the weights are B_s / total and the masks those
        rows of the whole batch's."""
        B = arrays[0].shape[0]
        start, total = (0, B) if part is None or not train else part
        seed = self._step_seed(patch_dropout, part) if train else None
        if self._pool is None:
            weight = 1.0 if total == B else B / total
            if seed is None:
                return [fn(self.model, *arrays, weight)]
            main, self.model.rng = self.model.rng, ShardGenerator(seed, start, total)
            try:
                return [fn(self.model, *arrays, weight)]
            finally:
                self.model.rng = main
        slices = shard_slices(B, self.threads)
        if seed is not None:
            for replica, s in zip(self.replicas, slices):
                replica.rng = ShardGenerator(seed, start + s.start, total)
        jobs = [(replica, *[a[s] for a in arrays], (s.stop - s.start) / total)
                for replica, s in zip(self.replicas, slices)]
        results = self._map(fn, jobs)
        merge = getattr(self.model, "merge_replica_stats", None)   # BatchNorm statistics:
        if merge is not None:                                       # pooled in shard order
            merge(self.replicas[:len(slices)])
        return results

    def sum_grads(self, shard_grads):
        """sum_s (weighted shard gradients) into the model's gradient buffer, in shard order:
        deterministic for a given number of threads.  Each shard's backward already carried
        its weight B_s / B.  shard_grads: the replicas' ``grads`` (views of their buffers).
        Returns ``model.grads``."""
        model = self.model
        layout = model.params.layout
        flats = [g.flat if getattr(g, "layout", None) is layout else layout.pack(g)
                 for g in shard_grads]
        total = model.flat_grads
        if len(flats) == 1:
            if flats[0] is not total:
                total[...] = flats[0]
        else:
            xp = array_module(total)
            xp.add(flats[0], flats[1], out=total)
            for f in flats[2:]:
                total += f
        return model.use_grad_buffer()

    # -- evaluation
    def forward(self, images):
        """Logits (B, K) for evaluation (no dropout, nothing kept for a backward)."""
        outs = self.map_shards(lambda r, x, w: r.forward(x, train=False, keep_cache=False),
                               images, train=False)
        return array_module(images).concatenate(outs) if len(outs) > 1 else outs[0]

    # -- helpers
    def _map(self, fn, jobs):
        """fn(*job) for each job on the pool, results in job order.  Each job runs in a copy
        of the caller's context, so settings such as ``errstate`` reach the threads."""
        futures = [self._pool.submit(contextvars.copy_context().run, fn, *job) for job in jobs]
        return [f.result() for f in futures]

    def _step_seed(self, patch_dropout, part):
        """The seed of this step's masks (None: nothing random to draw).  On CuPy, where one
        GPU takes the whole batch (one thread), the model draws from ``model.rng`` itself, so
        that no seed has to be read back from the device; a batch split over processes
        (``part``) reads it, so that every process cuts its rows from the same draws."""
        if (get_backend() != "numpy" and part is None) or not _is_stochastic(
                self.model.config, patch_dropout):
            return None
        return int(self.model.rng.integers(0, 2**31 - 1))

    def close(self):
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None
        if self._blas_limit is not None:
            self._blas_limit.restore_original_limits()
            self._blas_limit = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class ShardGenerator:
    """The random draws of one shard, cut from draws made for the whole batch.

    Layers draw masks batch axis first (``rng.random((B_s, ...), dtype)``).  The k-th draw of
    a step is ``default_rng([seed, k]).random((B, ...))[start:start + B_s]``: image i gets the
    same numbers whether it is in a shard of 64 or of 128, so a step is the same function
    for any number of threads.  A shard skips the numbers of the rows before its own (the
    generator's ``advance``) and draws only its rows.
    The draws are made on the host; on CuPy (a batch split over processes) its rows are
    copied to the device.
    """

    def __init__(self, seed: int, start: int, batch: int):
        self.seed, self.start, self.batch, self.draws = seed, start, batch, 0

    def random(self, shape, dtype="float64"):
        shape = tuple(shape)
        if not shape or self.start + shape[0] > self.batch:
            raise ValueError(f"a shard's random draw must be over its images, batch axis first; "
                             f"got shape {shape} for images {self.start}.. of {self.batch}")
        gen = make_rng([self.seed, self.draws], host_xp())
        self.draws += 1
        _skip_uniforms(gen, self.start * math.prod(shape[1:]), dtype)   # the earlier rows'
        rows = gen.random(shape, dtype=dtype)
        return rows if get_backend() == "numpy" else to_device(rows)


def _skip_uniforms(gen, n: int, dtype) -> None:
    """Move NumPy's PCG64 ``gen`` past ``n`` uniform draws of ``dtype`` without making them:
    each float64 takes one 64-bit output, each float32 one half of one (low half first).
    What follows is what ``gen.random`` would give after drawing those n numbers."""
    if host_xp().dtype(dtype).itemsize == 8:
        gen.bit_generator.advance(n)
        return
    gen.bit_generator.advance(n // 2)
    if n % 2:
        gen.random(1, dtype=dtype)


def _limit_blas_threads():
    """One BLAS thread per replica, through threadpoolctl if it is installed (else None)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return None
    return threadpool_limits(limits=1, user_api="blas")


__all__ = ["DataParallel", "available_cores", "resolve_threads", "shard_slices"]
