"""CPU speed of minivit's airbench teacher against PyTorch eager on the same net, and what a
training run of it costs at that speed.

    python3 benchmarks/bench_airbench.py                     # batch 512, as `minivit train` runs
    python3 benchmarks/bench_airbench.py --batch 1024 --out results.md

minivit runs data parallel over one thread per core with one-threaded BLAS (the script starts
itself again with the command line's environment, benchmarks/bench_common.py); PyTorch eager
with torch.set_num_threads(cores), tests/torch_airbench.py's twin in float32.

* training step: forward (batch statistics), cross-entropy with label smoothing 0.2, backward,
  Nesterov SGD with the 64x bias learning rate;
* evaluation: logits of a batch with the running statistics (no test-time augmentation: level
  2 costs six of these per image).

The libraries are timed alternately in one process (``--rounds`` rounds of ``--steps`` calls
after warm-up, median shown).  "epoch" is 50,000 training images at the measured rate.
"""

import os
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

EPOCH = 50_000
SMOOTHING, LR, MOMENTUM, BIAS_SCALE = 0.2, 0.01, 0.85, 64.0


def train_flops(cfg, batch):
    """Multiply-add FLOPs of a training step (forward + backward = 3 x forward)."""
    from minivit.models.airbench_config import blocks
    size = cfg.image_size - cfg.whiten_kernel + 1
    flops = 2 * size * size * cfg.whiten_width * cfg.in_chans * cfg.whiten_kernel ** 2
    for _, c_in, c_out in blocks(cfg):
        flops += 2 * size * size * c_out * c_in * 9                  # conv1, before the pool
        size //= 2
        flops += 2 * size * size * c_out * c_out * 9                 # conv2
    flops += 2 * cfg.widths[-1] * cfg.num_classes
    return 3 * batch * flops


class Minivit:
    def __init__(self, name, threads):
        from minivit.analysis.evaluation import predict_logits
        from minivit.models.airbench import create_airbench
        from minivit.parallel.threads import DataParallel
        from minivit.training.objectives.classification import classify
        from minivit.training.optim import SGD
        self.model = create_airbench(name, seed=0)
        self.dp = DataParallel(self.model, threads)
        self.classify = classify
        biases = {k: BIAS_SCALE for k in self.model.params if ".norm" in k}
        self.opt = SGD(self.model.params, lr=LR, momentum=MOMENTUM, nesterov=True,
                       weight_decay=5e-4, lr_scale=biases, decay_vectors=True)
        self.predict = predict_logits

    def data(self, batch):
        c = self.model.config
        g = np.random.default_rng(0)
        x = g.standard_normal((batch, c.in_chans, c.image_size, c.image_size)).astype(np.float32)
        return x, g.integers(0, c.num_classes, size=batch)

    def train_step(self, x, y):
        self.classify(self.dp, x, y, smoothing=SMOOTHING)
        self.opt.step(self.model.params, self.model.grads)

    def infer(self, x):
        return self.predict(self.model, x, parallel=self.dp, batch_size=len(x))


class Torch:
    def __init__(self, name, threads):
        import torch
        sys.path.insert(0, os.path.join(ROOT, "tests"))
        from torch_airbench import TorchAirbench

        from minivit.models.airbench_config import get_airbench_config
        torch.set_num_threads(threads)
        torch.manual_seed(0)
        self.torch, self.config = torch, get_airbench_config(name)
        self.model = TorchAirbench(self.config)
        biases = [p for k, p in self.model.named_parameters() if ".norm" in k]
        others = [p for k, p in self.model.named_parameters() if ".norm" not in k]
        self.opt = torch.optim.SGD([dict(params=biases, lr=LR * BIAS_SCALE), dict(params=others)],
                                   lr=LR, momentum=MOMENTUM, nesterov=True, weight_decay=5e-4)

    def data(self, batch):
        c = self.config
        return (self.torch.randn(batch, c.in_chans, c.image_size, c.image_size),
                self.torch.randint(0, c.num_classes, (batch,)))

    def train_step(self, x, y):
        self.model.train()
        loss = self.torch.nn.functional.cross_entropy(self.model(x), y,
                                                      label_smoothing=SMOOTHING)
        self.opt.zero_grad()
        loss.backward()
        self.opt.step()

    def infer(self, x):
        self.model.eval()
        with self.torch.no_grad():
            return self.model(x)


LIBS = {"minivit": Minivit, "torch": Torch}


def main():
    ap = timing_parser(__doc__.splitlines()[0], ["airbench"])
    ap.set_defaults(batch=512, infer_batch=500, rounds=2, steps=2, warmup=1)
    args = ap.parse_args()
    from minivit.parallel.threads import available_cores
    args.threads = args.threads or available_cores()
    start_table(args, f"airbench {args.label}", gemm_peak(args.threads),
                ("config", "lib", "train img/s", "s per step", "s per epoch", "eval img/s",
                 "GFLOP/s", "train ratio"), infer="evaluation")
    for name in args.configs:
        libs = {k: LIBS[k](name, args.threads) for k in LIBS}
        r = train_and_infer_rates(libs, args)
        flops = train_flops(libs["minivit"].model.config, 1)
        for k in LIBS:
            rate = r[f"{k} train"]
            emit(args, f"| {name} | {k} | {rate:.1f} | {args.batch / rate:.2f} | "
                       f"{EPOCH / rate:.0f} | {r[f'{k} infer']:.1f} | {flops * rate / 1e9:.1f} | "
                       f"{rate / r['torch train']:.2f}x |")
        libs["minivit"].dp.close()
    emit(args, f"\n{load_after()}\n")


if __name__ == "__main__":
    main()
