"""CPU speed of minivit against PyTorch eager on the same ViT: training steps and inference.

    python3 benchmarks/bench_cpu.py                          # cifar-nano, -tiny, -small
    python3 benchmarks/bench_cpu.py --configs cifar-nano --rounds 3 --out results.md

minivit runs as its command line runs it: data parallel over one thread per core
(minivit.parallel.threads.DataParallel) with one-threaded BLAS each -- this script starts
itself again with OPENBLAS_NUM_THREADS=1 (and the malloc settings of minivit/cli.py) before
NumPy loads.  PyTorch runs eager on the CPU with torch.set_num_threads(cores), the model built
by minivit/reference/torch_twin.py (fused attention, exact GELU).

* training step: forward, cross-entropy, backward, AdamW update, float32, batch 128;
* inference: logits of a batch of 256 (minivit.predict_logits; torch under no_grad).

The two are timed alternately in one process, ``--rounds`` rounds of ``--steps`` timed calls
each after warm-up; the table shows the median.  "peak %" is the training step's matmul FLOPs
(counted from the model's shapes: forward 2*M*N*K for every product, backward twice that)
per second over the 2-core float32 GEMM peak measured in the same process (one 2048^3 GEMM
per core, each in its own thread, NumPy's BLAS).  "peak MB" is the memory a training step
adds: each library in a fresh subprocess, the resident high-water mark (VmHWM, reset to the
resident size with /proc/self/clear_refs once the model, optimizer state and batch exist)
after two steps minus the resident size before them -- so it counts NumPy's and PyTorch's
allocations alike (Linux only).

The table's heading names the kernels NumPy's OpenBLAS ran: it picks them from the CPU unless
OPENBLAS_CORETYPE is set (some machines set it to an older core; to measure what a user's
NumPy does there, unset it for the one command: ``env -u OPENBLAS_CORETYPE -u
OPENBLAS_L2_SIZE python3 benchmarks/bench_cpu.py``).
"""

import argparse
import json
import os
import subprocess
import sys

from bench_common import (
    emit,
    gemm_peak,
    load_after,
    restart_like_cli,
    start_table,
    timing_parser,
    train_and_infer_rates,
)

if __name__ == "__main__":
    restart_like_cli()

import numpy as np  # noqa: E402  (after the restart with one BLAS thread)


# ---------------------------------------------------------------- FLOPs of one step
def forward_flops(cfg, batch):
    """Matmul FLOPs of one forward pass (2 per multiply-add), from the config's shapes."""
    D, N, T, M = cfg.embed_dim, cfg.num_patches, cfg.num_patches + 1, cfg.mlp_dim
    per_block = 2 * T * D * 3 * D + 2 * 2 * T * T * D + 2 * T * D * D + 2 * 2 * T * D * M
    return batch * (2 * N * cfg.patch_dim * D + cfg.depth * per_block + 2 * D * cfg.num_classes)


# ---------------------------------------------------------------- the two libraries
class Minivit:
    def __init__(self, name, threads):
        import minivit
        from minivit.parallel.threads import DataParallel
        from minivit.training.objectives.classification import classify
        self.model = minivit.create_model(name, seed=0)
        self.dp = DataParallel(self.model, threads)
        self.classify = classify
        self.opt = minivit.AdamW(self.model.params, lr=1e-3)
        self.threads = threads
        self.predict = getattr(minivit, "predict_logits", None)

    def data(self, batch):
        c = self.model.config
        g = np.random.default_rng(0)
        x = g.standard_normal((batch, 3, c.image_size, c.image_size)).astype(np.float32)
        return x, g.integers(0, c.num_classes, size=batch)

    def train_step(self, x, y):
        self.classify(self.dp, x, y)
        self.opt.step(self.model.params, self.model.grads)

    def infer(self, x):
        if self.predict is not None:
            return self.predict(self.model, x, threads=self.threads)
        return self.model.forward(x, train=False, keep_cache=False)  # before predict_logits


class Torch:
    def __init__(self, name, threads):
        import torch

        from minivit.models.vit_config import get_config
        from minivit.reference.torch_twin import TorchViT
        torch.set_num_threads(threads)
        torch.manual_seed(0)
        self.torch = torch
        self.model = TorchViT(get_config(name), fused_attn=True)
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=1e-3)

    def data(self, batch):
        c = self.model.config
        return (self.torch.randn(batch, 3, c.image_size, c.image_size),
                self.torch.randint(0, c.num_classes, (batch,)))

    def train_step(self, x, y):
        loss = self.torch.nn.functional.cross_entropy(self.model(x), y)
        self.opt.zero_grad()
        loss.backward()
        self.opt.step()

    def infer(self, x):
        with self.torch.no_grad():
            return self.model(x)


LIBS = {"minivit": Minivit, "torch": Torch}


def peak_memory_child(lib, name, threads, batch):
    """In a fresh process: MB that two training steps add to ru_maxrss."""
    obj = LIBS[lib](name, threads)
    x, y = obj.data(batch)
    with open("/proc/self/clear_refs", "w") as f:    # VmHWM := VmRSS (Linux)
        f.write("5")
    before = _status_kb("VmRSS")
    for _ in range(2):
        obj.train_step(x, y)
    print(json.dumps({"mb": (_status_kb("VmHWM") - before) / 1024.0}))


def _status_kb(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def peak_memory(lib, name, threads, batch):
    out = subprocess.run([sys.executable, os.path.abspath(__file__), "--memory-child", lib, name,
                          str(threads), str(batch)], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])["mb"]


def bench_config(name, args, peak):
    from minivit.models.vit_config import get_config
    cfg = get_config(name)
    libs = {k: LIBS[k](name, args.threads) for k in LIBS}
    rates = train_and_infer_rates(libs, args)
    flops = 3 * forward_flops(cfg, args.batch)
    row = {"config": name, **rates}
    for k in libs:
        row[f"{k} peak%"] = 100.0 * flops / args.batch * row[f"{k} train"] / peak
        row[f"{k} MB"] = (peak_memory(k, name, args.threads, args.batch) if args.memory
                          else float("nan"))
    del libs
    return row


def main():
    ap = timing_parser(__doc__.splitlines()[0], ["cifar-nano", "cifar-tiny", "cifar-small"])
    ap.add_argument("--no-memory", dest="memory", action="store_false")
    ap.add_argument("--memory-child", nargs=4, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.memory_child:
        lib, name, threads, batch = args.memory_child
        return peak_memory_child(lib, name, int(threads), int(batch))
    from minivit.parallel.threads import available_cores
    args.threads = args.threads or available_cores()
    peak = gemm_peak(args.threads)
    start_table(args, args.label, peak,
                ("config", "minivit train img/s", "torch train img/s", "train ratio",
                 "minivit infer img/s", "torch infer img/s", "infer ratio", "minivit peak %",
                 "torch peak %", "minivit step MB", "torch step MB"))
    for name in args.configs:
        r = bench_config(name, args, peak)
        line = (f"| {name} | {r['minivit train']:.1f} | {r['torch train']:.1f} | "
                f"{r['minivit train'] / r['torch train']:.2f}x | {r['minivit infer']:.1f} | "
                f"{r['torch infer']:.1f} | {r['minivit infer'] / r['torch infer']:.2f}x | "
                f"{r['minivit peak%']:.0f}% | {r['torch peak%']:.0f}% | {r['minivit MB']:.0f} | "
                f"{r['torch MB']:.0f} |")
        emit(args, line)
    emit(args, f"\n{load_after()}\n")


if __name__ == "__main__":
    main()
