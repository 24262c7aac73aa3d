"""Training over MPI ranks: the step time on 1 and 2 local ranks, the allreduce's share of it,
and a model of the step time on N machines.

    python benchmarks/bench_mpi.py                          # cifar-nano, cifar-tiny; 1 and 2 ranks
    python benchmarks/bench_mpi.py --configs cifar-nano --batch 128 --steps 10 --ranks 1 2
    python benchmarks/bench_mpi.py --model-only             # the scaling model alone

One step = forward, cross-entropy, backward of this rank's B/N images (one thread per rank,
minivit.parallel.threads.DataParallel with ``rows``), the allreduce of the flat float32 gradients
(minivit.parallel.mpi.Ranks.sum_), clipping and AdamW: what ``mpirun -n N minivit train`` runs.  The
median of the timed steps, after warm-up steps, launched with ``mpiexec -n N``.

The scaling model: on N machines a step costs T1/N (each computes B/N images at the speed
measured here, one process per machine using its cores) plus a ring allreduce moving
2(N-1)/N x the gradient bytes over the link (latency and overlap ignored: minivit sums after
the backward).  Speedup = T1 / (T1/N + allreduce).
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LINKS_GBIT = (10, 25, 100)
MACHINES = (1, 2, 4, 8, 16, 32)
MODEL_RUNS = {"cifar-small": 256, "vit-b16": 512}      # config -> global batch of the model


def worker(args):
    """One rank: time `steps` training steps of its share; rank 0 prints a JSON line."""
    import numpy as np

    import minivit
    from minivit.parallel.mpi import connect
    from minivit.parallel.threads import DataParallel
    from minivit.training.objectives.classification import classify
    from minivit.training.optim import clip_flat_grads
    ranks = connect()
    B = args.batch
    b = B // ranks.size
    model = minivit.create_model(args.config, seed=0, pool="mean", patch_drop_rate=0.5)
    opt = minivit.AdamW(model.params, lr=1e-3)
    gen = np.random.default_rng(ranks.rank)
    x = gen.standard_normal((b, 3, 32, 32)).astype("float32")
    y = gen.integers(0, 10, size=b)
    steps, sums = [], []
    with DataParallel(model, args.threads) as dp:
        dp.rows = (ranks.rank * b, B)
        for i in range(args.warmup + args.steps):
            t0 = time.perf_counter()
            classify(dp, x, y, 0.1)
            t1 = time.perf_counter()
            ranks.sum_(model.flat_grads)
            t2 = time.perf_counter()
            clip_flat_grads(model.flat_grads, 1.0)
            opt.step(model.params, model.grads)
            if i >= args.warmup:
                steps.append(time.perf_counter() - t0)
                sums.append(t2 - t1)
    if ranks.is_root:
        print(json.dumps({"config": args.config, "ranks": ranks.size, "batch": B,
                          "step": statistics.median(steps), "sum": statistics.median(sums),
                          "params": model.num_params()}))


def measure(config, ranks, args):
    cmd = [sys.executable, __file__, "--worker", "--configs", config, "--batch",
           str(args.batch), "--steps", str(args.steps), "--warmup", str(args.warmup)]
    cmd = ["mpiexec", "-n", str(ranks)] + cmd
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OPENBLAS_NUM_THREADS": "1"}
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def images_per_sec(config, batch, threads):
    """The single-process speed (images / s) of a training step, `threads` threads."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench_train_step import time_minivit
    overrides = {"pool": "mean", "patch_drop_rate": 0.5} if config.startswith("cifar") else {}
    speed, model = time_minivit(config, batch, 2, 1, overrides, threads)
    return speed, model.num_params()


def scaling_table(rows, faster=1.0):
    """rows: (config, global batch, images/s of one machine, params) -> Markdown lines: the
    modelled step time and speedup over one machine for N machines and each link speed, for
    machines ``faster`` times faster than the measured one."""
    head = [f"{config} {gbit} Gbit/s" for config, _, _, _ in rows for gbit in LINKS_GBIT]
    out = ["| N | " + " | ".join(head) + " |", "|---|" + "---|" * len(head)]
    for n in MACHINES:
        cells = []
        for config, batch, speed, params in rows:
            t1 = batch / (speed * faster)
            for gbit in LINKS_GBIT:
                step = t1 / n + allreduce_seconds(n, params, gbit)
                cells.append(f"{_secs(step)} ({t1 / step:.1f}x)")
        out.append(f"| {n} | " + " | ".join(cells) + " |")
    return out


def allreduce_seconds(n, params, gbit):
    """A ring allreduce of float32 gradients: 2(N-1)/N x the bytes over one link."""
    return 2 * (n - 1) / n * 4 * params * 8 / (gbit * 1e9)


def _secs(t):
    return f"{t * 1e3:.0f} ms" if t < 1 else f"{t:.1f} s"


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--configs", nargs="+", default=["cifar-nano", "cifar-tiny"])
    p.add_argument("--ranks", nargs="+", type=int, default=[1, 2])
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--model-threads", type=int, default=2,
                   help="threads of the single-process speed the scaling model starts from")
    p.add_argument("--model-only", action="store_true")
    p.add_argument("--faster", nargs="+", type=float, default=[1.0, 100.0],
                   help="model machines this many times faster than this one (100: roughly "
                        "a GPU's speed next to a 2-core CPU)")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        args.config = args.configs[0]
        return worker(args)
    print(f"{time.strftime('%Y-%m-%d %H:%M')}, load average {os.getloadavg()[0]:.2f}, "
          f"{os.cpu_count()} cores, OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS')}")
    if not args.model_only:
        print("\n| config | ranks | global batch | step | allreduce | share |"
              "\n|---|---|---|---|---|---|")
        for config in args.configs:
            for n in args.ranks:
                r = measure(config, n, args)
                print(f"| {config} | {n} | {r['batch']} | {r['step'] * 1e3:.0f} ms | "
                      f"{r['sum'] * 1e3:.2f} ms | {100 * r['sum'] / r['step']:.1f}% |",
                      flush=True)
    rows = []
    for config, batch in MODEL_RUNS.items():
        probe = 32 if config.startswith("cifar") else 2
        speed, params = images_per_sec(config, probe, args.model_threads)
        t1 = batch / speed
        print(f"\n{config}: {speed:.1f} images/s in one process ({args.model_threads} threads): "
              f"{_secs(t1)} per step of {batch}; {params:,} parameters = "
              f"{4 * params / 1e6:.1f} MB of float32 gradients; the allreduce on N >> 1 "
              f"machines: " + ", ".join(f"{_secs(allreduce_seconds(1e9, params, g))} at {g} "
                                        f"Gbit/s" for g in LINKS_GBIT))
        rows.append((config, batch, speed, params))
    for faster in args.faster:
        print("\nmodelled step time (speedup over 1 machine) on N machines "
              + ("as fast as this one:" if faster == 1 else f"{faster:g}x as fast as this one:"))
        print("\n".join(scaling_table(rows, faster)))


if __name__ == "__main__":
    main()
