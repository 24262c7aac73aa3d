"""What a change of the recipe's model costs: training-step images/s of model shapes, timed in
turn in one process, as ratios to the recipe (cifar-nano, mean pooling, patch dropout 0.5).

    python benchmarks/bench_shapes.py                        # the shapes below, 2 threads
    python benchmarks/bench_shapes.py --threads 1            # one core each (two runs at once)
    python benchmarks/bench_shapes.py --shape mlp_dim=512 --shape depth=8,mlp_dim=384

A lever that makes a step dearer gets fewer steps in the same wall time; this table is the
exchange rate (``--steps`` of a run at equal compute = the recipe's steps / the ratio), measured
side by side so that a change of the host's speed hits every shape alike.
"""

import os
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_common import alternate, emit, load_after, restart_like_cli, timing_parser  # noqa: E402

SHAPES = ["", "mlp_dim=512", "depth=8", "depth=8,mlp_dim=384", "embed_dim=192,num_heads=6",
          "patch_drop_rate=0.75", "patch_drop_rate=0"]


def parse_shape(text):
    """'depth=8,mlp_dim=384' -> {'depth': 8, 'mlp_dim': 384}, each value read as ``--set``
    reads it."""
    from minivit.commands.train import parse_value
    return {k: parse_value(v) for k, _, v in
            (item.partition("=") for item in text.split(",") if item)}


def main():
    ap = timing_parser(__doc__.splitlines()[0], ["cifar-nano"])
    ap.add_argument("--shape", action="append", help="overrides on top of the recipe "
                    "(repeatable; the recipe itself is always first)")
    args = ap.parse_args()
    restart_like_cli()
    import datetime

    import numpy as np

    import minivit
    from minivit.backend import to_device
    from minivit.parallel.threads import DataParallel, resolve_threads
    from minivit.training.config import RECIPE_MODEL_OVERRIDES as RECIPE
    from minivit.training.objectives.classification import classify

    shapes = [""] + [s for s in (args.shape or SHAPES) if s]
    threads = resolve_threads(args.threads)
    gen = np.random.default_rng(0)
    x = to_device(gen.standard_normal((args.batch, 3, 32, 32)), "float32")
    y = to_device(gen.integers(0, 10, size=args.batch))
    calls, pools = {}, []
    for shape in shapes:
        model = minivit.create_model(args.configs[0], seed=0, **{**RECIPE, **parse_shape(shape)})
        dp = DataParallel(model, threads)
        opt = minivit.AdamW(model.params, lr=1e-3)
        pools.append(dp)

        def step(dp=dp, model=model, opt=opt):
            classify(dp, x, y)
            opt.step(model.params, model.grads)
        for _ in range(args.warmup):
            step()
        label = shape or "the recipe"
        calls[label] = (step, args.batch)
        print(f"  {label}: {model.num_params():,} params", file=sys.stderr)
    before = " ".join(f"{v:.2f}" for v in os.getloadavg())
    rates = {k: statistics.median(v) for k, v in
             alternate(calls, args.rounds, args.steps).items()}
    base = rates["the recipe"]
    emit(args, f"### {datetime.datetime.now():%Y-%m-%d %H:%M} training step of model shapes, "
               f"{args.configs[0]} + {RECIPE}, batch {args.batch}, {threads} thread(s), median "
               f"of {args.rounds} rounds x {args.steps} steps, in turn; "
               f"load average before {before}\n")
    emit(args, "| shape | images/s | cost of a step / the recipe's |\n|---|---|---|")
    for k, r in rates.items():
        emit(args, f"| {k} | {r:.0f} | {base / r:.2f} |")
    emit(args, f"\n{load_after()}\n")
    for dp in pools:
        dp.close()


if __name__ == "__main__":
    main()
