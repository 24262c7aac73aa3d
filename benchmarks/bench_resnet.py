"""CPU speed of minivit's ResNet (the distillation teacher) against PyTorch eager on the same
architecture, and where minivit's time goes.

    python3 benchmarks/bench_resnet.py                        # resnet8, resnet20
    python3 benchmarks/bench_resnet.py --configs resnet20 --out results.md
    python3 benchmarks/bench_resnet.py --profile resnet20     # per-function time of one thread

minivit runs as ``minivit train --config resnet20`` runs it: data parallel over one thread per
core with one-threaded BLAS (the script starts itself again with the command line's
environment, benchmarks/bench_common.py).  PyTorch runs eager on the CPU with
torch.set_num_threads(cores), tests/torch_resnet.py's torchvision-named ResNet in float32.

* training step: forward (batch statistics), cross-entropy, backward, AdamW, batch 128;
* evaluation: logits of a batch of 256 with the running statistics (minivit.predict_logits;
  torch in eval mode under no_grad) -- what a distilled student's step asks of its teacher.

The two libraries are timed alternately in one process (``--rounds`` rounds of ``--steps``
calls after warm-up, median shown), so the ratios hold under the load of a shared machine.
"GFLOP/s" counts the training step's convolution and fc multiply-adds (forward 2 FLOPs each,
backward twice that).

--profile: cProfile over a few training steps and evaluation forwards of one replica on one
thread (a shard: batch / cores images), the time each function spends in its own body
(tottime) per step.  A matrix product written with ``@`` counts to the function that does it;
ndarray methods and NumPy functions (sum, pad, zeros, empty, ...) are listed on their own.
"""

import cProfile
import os
import pstats
import sys

from bench_common import (
    ROOT,
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


def train_flops(cfg, batch):
    """Multiply-add FLOPs of a training step (forward + backward = 3 x forward)."""
    from minivit.models.resnet_config import stages
    size = cfg.image_size
    flops = 2 * size * size * cfg.widths[0] * cfg.in_chans * 9
    for _, c_in, c_out, stride, down in stages(cfg):
        size //= stride
        hw = size * size
        flops += 2 * hw * c_out * (c_in * 9 + c_out * 9 + (c_in if down else 0))
    flops += 2 * cfg.widths[-1] * cfg.num_classes
    return 3 * batch * flops


class Minivit:
    def __init__(self, name, threads):
        import minivit
        from minivit.models.resnet import create_resnet
        from minivit.parallel.threads import DataParallel
        from minivit.training.objectives.classification import classify
        self.model = create_resnet(name, seed=0)
        self.dp = DataParallel(self.model, threads)
        self.classify = classify
        self.opt = minivit.AdamW(self.model.params, lr=1e-3)
        self.threads = threads
        self.predict = minivit.predict_logits

    def data(self, batch):
        c = self.model.config
        g = np.random.default_rng(0)
        x = g.standard_normal((batch, c.in_chans, c.image_size, c.image_size)).astype(np.float32)
        return x, g.integers(0, c.num_classes, size=batch)

    def train_step(self, x, y):
        self.classify(self.dp, x, y)
        self.opt.step(self.model.params, self.model.grads)

    def infer(self, x):
        return self.predict(self.model, x, parallel=self.dp)


class Torch:
    def __init__(self, name, threads):
        import torch
        sys.path.insert(0, os.path.join(ROOT, "tests"))
        from torch_resnet import TorchResNet

        from minivit.models.resnet_config import get_resnet_config
        torch.set_num_threads(threads)
        torch.manual_seed(0)
        self.torch, self.config = torch, get_resnet_config(name)
        self.model = TorchResNet(self.config)
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=1e-3)

    def data(self, batch):
        c = self.config
        return (self.torch.randn(batch, c.in_chans, c.image_size, c.image_size),
                self.torch.randint(0, c.num_classes, (batch,)))

    def train_step(self, x, y):
        self.model.train()
        loss = self.torch.nn.functional.cross_entropy(self.model(x), y)
        self.opt.zero_grad()
        loss.backward()
        self.opt.step()

    def infer(self, x):
        self.model.eval()
        with self.torch.no_grad():
            return self.model(x)


LIBS = {"minivit": Minivit, "torch": Torch}


def bench_config(name, args):
    libs = {k: LIBS[k](name, args.threads) for k in LIBS}
    row = train_and_infer_rates(libs, args)
    row["gflops"] = train_flops(libs["minivit"].model.config, 1) * row["minivit train"] / 1e9
    libs["minivit"].dp.close()
    return row


def profile(name, args, steps=4):
    """Per-function tottime (ms per call) of one replica's training step and evaluation."""
    from minivit.layers.loss import cross_entropy
    lib = Minivit(name, 1)
    model, shard = lib.model, args.batch // args.threads
    x, y = lib.data(shard)
    xe, _ = lib.data(args.infer_batch // args.threads)

    def train():
        logits = model.forward(x, train=True)
        model.backward(cross_entropy(logits, y)[1])

    def infer():
        model.forward(xe, train=False, keep_cache=False)

    out = []
    for label, fn, images in (("training step", train, shard), ("evaluation", infer, len(xe))):
        fn()
        prof = cProfile.Profile()
        prof.enable()
        for _ in range(steps):
            fn()
        prof.disable()
        st = pstats.Stats(prof).stats
        rows = sorted(((v[2] / steps * 1e3, _fname(k)) for k, v in st.items()), reverse=True)
        total = sum(ms for ms, _ in rows)
        out.append(f"\n{name} {label}, one thread, batch {images}: {total:.0f} ms per call "
                   f"({images / total * 1e3:.0f} img/s on one core)\n")
        out.append("| function | ms per call | % |\n|---|---|---|")
        for ms, fname in rows:
            if ms / total < 0.005:
                break
            out.append(f"| {fname} | {ms:.1f} | {100 * ms / total:.1f}% |")
    return "\n".join(out)


def _fname(key):
    file, line, func = key
    if file == "~":
        return func.replace("<", "").replace(">", "")
    rel = os.path.relpath(file, ROOT) if file.startswith(ROOT) else os.path.basename(file)
    return f"{rel}:{func}"


def main():
    ap = timing_parser(__doc__.splitlines()[0], ["resnet8", "resnet20"])
    ap.add_argument("--profile", metavar="CONFIG", help="only the per-function profile")
    args = ap.parse_args()
    from minivit.parallel.threads import available_cores
    args.threads = args.threads or available_cores()
    if args.profile:
        emit(args, profile(args.profile, args))
        return
    start_table(args, f"ResNet {args.label}", gemm_peak(args.threads),
                ("config", "minivit train img/s", "torch train img/s", "train ratio",
                 "minivit eval img/s", "torch eval img/s", "eval ratio", "minivit GFLOP/s"),
                infer="evaluation")
    for name in args.configs:
        r = bench_config(name, args)
        emit(args, f"| {name} | {r['minivit train']:.1f} | {r['torch train']:.1f} | "
                   f"{r['minivit train'] / r['torch train']:.2f}x | {r['minivit infer']:.1f} "
                   f"| {r['torch infer']:.1f} | {r['minivit infer'] / r['torch infer']:.2f}x "
                   f"| {r['gflops']:.1f} |")
    emit(args, f"\n{load_after()}\n")


if __name__ == "__main__":
    main()
