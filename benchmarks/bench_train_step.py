"""Training-step throughput: minivit (NumPy or CuPy) against PyTorch on the same model.

    python benchmarks/bench_train_step.py                       # cifar configs, batch 128, CPU
    python benchmarks/bench_train_step.py --backend cupy        # the same on the GPU
    python benchmarks/bench_train_step.py --configs cifar-nano --batch 256 --steps 10
    python benchmarks/bench_train_step.py --threads 1 2          # NumPy: 1 and 2 threads
    python benchmarks/bench_train_step.py --mae                  # also MAE pre-training steps

One step = forward, cross-entropy, backward, AdamW update, in float32.  Prints a table of
images per second (median of the timed steps, after warm-up steps): minivit for each thread
count (minivit.parallel.threads.DataParallel; 0 = one per core), PyTorch with its default threads.
"""

import argparse
import statistics
import time

import numpy as np

import minivit
from minivit.backend import set_backend, synchronize, to_device
from minivit.parallel.threads import DataParallel, resolve_threads
from minivit.training.objectives.classification import classify


def time_minivit(name, batch, steps, warmup, overrides, threads=1):
    model = minivit.create_model(name, seed=0, **overrides)
    with DataParallel(model, resolve_threads(threads)) as dp:
        return _time_steps(model, dp, batch, steps, warmup), model


def _time_steps(model, dp, batch, steps, warmup):
    opt = minivit.AdamW(model.params, lr=1e-3)
    gen = np.random.default_rng(0)
    x = to_device(gen.standard_normal((batch, 3, model.config.image_size, model.config.image_size)),
                  "float32")
    y = to_device(gen.integers(0, model.config.num_classes, size=batch))
    times = []
    for i in range(warmup + steps):
        synchronize()
        t = time.perf_counter()
        classify(dp, x, y)
        opt.step(model.params, model.grads)
        synchronize()
        if i >= warmup:
            times.append(time.perf_counter() - t)
    return batch / statistics.median(times)


def time_mae(name, batch, steps, warmup, threads=1):
    """One MAE pre-training step (75% masked, the default CIFAR decoder): images per second."""
    from minivit.layers.masking import masking_noise
    from minivit.models.mae import create_mae
    mae = create_mae(name, seed=0)
    opt = minivit.AdamW(mae.params, lr=1e-3)
    c = mae.config.encoder
    x = to_device(np.random.default_rng(0).standard_normal(
        (batch, 3, c.image_size, c.image_size)), "float32")

    def shard(replica, images, noise, weight):
        replica.forward(images, noise=noise)
        replica.backward(weight)
        return replica.grads

    times = []
    with DataParallel(mae, resolve_threads(threads)) as dp:
        for i in range(warmup + steps):
            synchronize()
            t = time.perf_counter()
            noise = masking_noise(mae.rng, batch, c.num_patches, mae.dtype)
            dp.sum_grads(dp.map_shards(shard, x, noise))
            opt.step(mae.params, mae.grads)
            synchronize()
            if i >= warmup:
                times.append(time.perf_counter() - t)
    return batch / statistics.median(times), mae


def time_torch(model, batch, steps, warmup, device):
    import torch

    from minivit.reference.torch_twin import TorchViT
    tm = TorchViT(model.config, fused_attn=True).to(device)
    opt = torch.optim.AdamW(tm.parameters(), lr=1e-3)
    c = model.config
    x = torch.randn(batch, 3, c.image_size, c.image_size, device=device)
    y = torch.randint(0, c.num_classes, (batch,), device=device)
    times = []
    for i in range(warmup + steps):
        if device == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        loss = torch.nn.functional.cross_entropy(tm(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if device == "cuda":
            torch.cuda.synchronize()
        if i >= warmup:
            times.append(time.perf_counter() - t)
    return batch / statistics.median(times)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backend", default="numpy", choices=("numpy", "cupy"))
    ap.add_argument("--configs", nargs="+", default=["cifar-nano", "cifar-tiny", "cifar-small"])
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="config override, e.g. --set patch_size=8")
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 0],
                    help="minivit thread counts to time (NumPy; 0 = one per core)")
    ap.add_argument("--no-torch", action="store_true")
    ap.add_argument("--mae", action="store_true",
                    help="also time MAE pre-training steps (encoder = each config)")
    args = ap.parse_args()
    set_backend(args.backend)
    overrides = {}
    for kv in args.set:
        k, v = kv.split("=", 1)
        overrides[k] = int(v) if v.isdigit() else v
    try:
        import torch
        torch_ok = not args.no_torch
    except ImportError:
        torch_ok = False
    device = "cuda" if args.backend == "cupy" else "cpu"
    print(f"backend {args.backend} ({minivit.backend.device_name()}), batch {args.batch}, float32, "
          f"median of {args.steps} steps after {args.warmup} warm-up")
    threads = [1] if args.backend == "cupy" else list(dict.fromkeys(
        resolve_threads(t) for t in args.threads))
    if torch_ok:
        print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    cols = [f"minivit x{t} img/s" for t in threads]
    print(f"{'config':<12} {'params':>11} " + " ".join(f"{c:>18}" for c in cols)
          + f" {'torch img/s':>12} {'best/torch':>10}")
    for name in args.configs:
        ips = []
        for t in threads:
            r, model = time_minivit(name, args.batch, args.steps, args.warmup, overrides, t)
            ips.append(r)
        tps = time_torch(model, args.batch, args.steps, args.warmup, device) if torch_ok else None
        ratio = f"{max(ips) / tps:10.2f}" if tps else f"{'-':>10}"
        tcol = f"{tps:12.1f}" if tps else f"{'-':>12}"
        print(f"{name:<12} {model.num_params():>11,} " + " ".join(f"{r:>18.1f}" for r in ips)
              + f" {tcol} {ratio}", flush=True)
    if args.mae:
        print("\nMAE pre-training step (mask 0.75, decoder 128 wide, 2 blocks)")
        print(f"{'encoder':<12} {'params':>11} " + " ".join(f"{c:>18}" for c in cols))
        for name in args.configs:
            ips = []
            for t in threads:
                r, mae = time_mae(name, args.batch, args.steps, args.warmup, t)
                ips.append(r)
            print(f"{name:<12} {mae.num_params():>11,} " + " ".join(f"{r:>18.1f}" for r in ips),
                  flush=True)


if __name__ == "__main__":
    main()
