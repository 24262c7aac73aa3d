"""The default recipe's first steps on CIFAR-10, to check that a change to the code leaves
training the same to float32 rounding.

    python3 benchmarks/first_steps.py --data-dir path/to/cifar-10-batches-py --out new.json
    python3 benchmarks/first_steps.py --data-dir path/to/cifar-10-batches-py --out old.json \\
        --repo path/to/an/older/checkout
    python3 benchmarks/first_steps.py --compare old.json new.json

Runs ``minivit train --epochs 57 --max-steps 20`` (the default recipe with its schedule fixed to
57 epochs, stopped after 20 steps; the command line's own thread and BLAS settings) in a
temporary run directory, and writes the 20 losses and the sum of squares of every parameter
after them.  ``--compare`` prints how far two such files are apart: the largest loss
difference in float32 ulps of the loss, and the largest relative difference of a parameter's
sum of squares.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile

STEPS, EPOCHS = 20, 57


def record(data_dir, repo):
    import numpy as np
    from safetensors.numpy import load_file
    env = dict(os.environ)
    if repo:
        env["PYTHONPATH"] = os.pathsep.join([os.path.abspath(repo), env.get("PYTHONPATH", "")])
    with tempfile.TemporaryDirectory() as tmp:
        run = os.path.join(tmp, "run")
        subprocess.run([sys.executable, "-m", "minivit", "train", "--epochs", str(EPOCHS),
                        "--max-steps", str(STEPS), "--data-dir", data_dir, "--run-dir", run,
                        "--no-progress"], env=env, check=True, capture_output=True, cwd=tmp)
        with open(os.path.join(run, "steps.jsonl")) as f:
            losses = [json.loads(line)["loss"] for line in f]
        params = load_file(os.path.join(run, "model.safetensors"))
    return {"losses": losses,
            "sum_of_squares": {k: float(np.sum(v.astype(np.float64) ** 2))
                               for k, v in sorted(params.items())}}


def compare(a, b):
    import numpy as np
    la, lb = np.array(a["losses"]), np.array(b["losses"])
    if la.shape != lb.shape:
        return f"different numbers of steps: {la.size} and {lb.size}"
    ulp = np.spacing(np.abs(la).astype(np.float32)).astype(np.float64)
    dl = np.abs(la - lb) / ulp
    sa, sb = a["sum_of_squares"], b["sum_of_squares"]
    rel = {k: abs(sa[k] - sb[k]) / max(abs(sa[k]), 1e-30) for k in sa if k in sb}
    worst = max(rel, key=rel.get)
    return (f"{la.size} steps: losses differ by at most {dl.max():.1f} float32 ulp "
            f"(step {int(dl.argmax()) + 1}: {la[dl.argmax()]:.7f} / {lb[dl.argmax()]:.7f}); "
            f"{len(rel)} parameters: sums of squares differ by at most {rel[worst]:.1e} "
            f"relative ({worst})")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir")
    ap.add_argument("--out")
    ap.add_argument("--repo", help="run the minivit of this checkout instead")
    ap.add_argument("--compare", nargs=2, metavar="JSON")
    args = ap.parse_args()
    if args.compare:
        a, b = (json.load(open(p)) for p in args.compare)
        print(compare(a, b))
        return
    if not (args.data_dir and args.out):
        ap.error("--data-dir and --out are needed (or --compare A B)")
    result = record(args.data_dir, args.repo)
    with open(args.out, "w") as f:
        json.dump(result, f, indent=1)
    print(f"wrote {args.out}: losses {result['losses'][0]:.6f} ... {result['losses'][-1]:.6f}")


if __name__ == "__main__":
    main()
