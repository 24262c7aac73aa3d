"""What the CPU benchmarks share: the restart with the command line's BLAS settings, the
2-core float32 GEMM peak, the timing of alternating calls and the machine line of a table.

A benchmark calls ``restart_like_cli()`` first, before NumPy is imported: the process starts
itself again with OPENBLAS_NUM_THREADS=1 and the malloc settings of minivit/cli.py, as the
``minivit`` command does when it splits batches over threads.
"""

import os
import platform
import statistics
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_CHILD = "_MINIVIT_BENCH_CHILD"


def _restart_env():
    """The environment the minivit command line gives itself (minivit/cli.py)."""
    from minivit.cli import restart_env
    env = restart_env(os.environ)
    for v in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):    # NumPy's BLAS is OpenBLAS: leave
        if v not in os.environ:                          # PyTorch's OpenMP threads alone
            env.pop(v, None)
    return env


def restart_like_cli():
    """exec this script again with the command line's environment (once)."""
    if os.environ.get(_CHILD) is not None:
        return
    sys.path.insert(0, ROOT)
    paths = [ROOT] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    env = {**_restart_env(), _CHILD: "1", "PYTHONPATH": os.pathsep.join(paths)}
    os.execve(sys.executable, [sys.executable, *sys.argv], env)


def gemm_peak(threads, n=2048, reps=3):
    """FLOP/s of ``threads`` concurrent float32 n^3 GEMMs, one per thread (best of reps)."""
    import numpy as np
    a = [np.random.default_rng(i).standard_normal((n, n), dtype=np.float32) for i in range(threads)]
    out = [np.empty((n, n), np.float32) for _ in range(threads)]
    best = 0.0
    for _ in range(reps):
        ts = [threading.Thread(target=np.matmul, args=(a[i], a[i]), kwargs={"out": out[i]})
              for i in range(threads)]
        t = time.perf_counter()
        for th in ts:
            th.start()
        for th in ts:
            th.join()
        best = max(best, threads * 2 * n ** 3 / (time.perf_counter() - t))
    return best


def time_calls(fn, steps):
    """Median seconds of ``steps`` calls of fn()."""
    times = []
    for _ in range(steps):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def alternate(calls, rounds, steps):
    """calls: {name: (fn, images per call)} -> {name: [images/s per round]}, the calls timed
    in turn within each round, so that a change of machine load hits them all alike."""
    rates = {k: [] for k in calls}
    for _ in range(rounds):
        for k, (fn, images) in calls.items():
            rates[k].append(images / time_calls(fn, steps))
    return rates


def train_and_infer_rates(libs, args):
    """libs: {name: a library's model with data(batch), train_step(x, y), infer(x)}.  Warm
    each up, then time its training step and its inference in turn (``alternate``):
    {"<name> train" / "<name> infer": median images/s over the rounds}."""
    data = {k: (libs[k].data(args.batch), libs[k].data(args.infer_batch)) for k in libs}
    for k in libs:                                   # warm-up: page in, build the pools
        for _ in range(args.warmup):
            libs[k].train_step(*data[k][0])
            libs[k].infer(data[k][1][0])
    calls = {}
    for k in libs:
        calls[f"{k} train"] = (lambda k=k: libs[k].train_step(*data[k][0]), args.batch)
        calls[f"{k} infer"] = (lambda k=k: libs[k].infer(data[k][1][0]), args.infer_batch)
    return {k: statistics.median(v) for k, v in alternate(calls, args.rounds, args.steps).items()}


def machine_line(threads, peak):
    """The table's first line: processor, threads, load, versions, GEMM peak, environment."""
    import numpy as np
    import torch
    load = os.getloadavg()
    return (f"{platform.processor() or platform.machine()}, {threads} threads; "
            f"load average before {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; numpy "
            f"{np.__version__}, torch {torch.__version__}; matmul peak {peak / 1e9:.1f} GFLOP/s "
            f"({threads} threads, float32 2048^3); env OPENBLAS_NUM_THREADS="
            f"{os.environ.get('OPENBLAS_NUM_THREADS')} MALLOC_MMAP_THRESHOLD_="
            f"{os.environ.get('MALLOC_MMAP_THRESHOLD_')} MALLOC_TOP_PAD_="
            f"{os.environ.get('MALLOC_TOP_PAD_')} OPENBLAS_CORETYPE="
            f"{os.environ.get('OPENBLAS_CORETYPE')}; NumPy's BLAS kernels: {blas_kernels()}")


def blas_kernels():
    """The kernels NumPy's OpenBLAS runs ("SkylakeX": AVX-512, "Haswell": AVX2), which it picks
    from the CPU unless OPENBLAS_CORETYPE names them (threadpoolctl tells; "?" without it)."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return "?"
    return ", ".join(sorted({i.get("architecture", "?") for i in threadpool_info()
                             if i.get("internal_api") == "openblas"})) or "?"


def timing_parser(description, configs):
    """The command-line options every speed table takes (a script adds its own)."""
    import argparse
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--configs", nargs="+", default=configs)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--infer-batch", type=int, default=256)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", type=int, default=0, help="0 = one per core")
    ap.add_argument("--label", default="", help="a note for the table's heading")
    ap.add_argument("--out", help="append the table to this markdown file")
    return ap


def load_after():
    return f"load average after {' '.join(f'{v:.2f}' for v in os.getloadavg())}"


def emit(args, text):
    """Print ``text`` and, with --out, append it to that file at once (a cut run keeps
    what it measured)."""
    print(text, flush=True)
    if args.out:
        with open(args.out, "a") as f:
            f.write(text + "\n")


def start_table(args, title, peak, columns, infer="inference"):
    """The heading (date, machine, batches, rounds) and the header of a markdown table."""
    import datetime
    emit(args, f"### {datetime.datetime.now():%Y-%m-%d %H:%M} {title}\n\n"
               f"{machine_line(args.threads, peak)}; training batch {args.batch}, {infer} batch "
               f"{args.infer_batch}; median of {args.rounds} rounds x {args.steps} calls, "
               f"alternating\n\n| " + " | ".join(columns) + " |\n|" + "---|" * len(columns))
