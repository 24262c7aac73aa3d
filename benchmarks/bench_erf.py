"""Time minivit's NumPy erf (fdlibm algorithm) against scipy.special.erf.

    python benchmarks/bench_erf.py                    # GELU-like inputs, N(0, 1/2)
    python benchmarks/bench_erf.py --dist uniform     # U(-5, 5): mostly the exp tail
    python benchmarks/bench_erf.py --sizes 1e6 1e7 --repeat 7

Prints the best of ``--repeat`` wall-clock runs for each size and dtype.  SciPy is
only the yardstick here (it is installed for development, never imported by
minivit); its column reads "-" where it is missing.  NumPy runs on one core, so
the numbers are single-threaded.
"""

from __future__ import annotations

import argparse
import math
import pathlib
import sys
import time

import numpy as np

try:
    from minivit.erf.fdlibm import erf_numpy
except ImportError:  # run from a checkout that is not pip-installed
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
    from minivit.erf.fdlibm import erf_numpy

try:
    from scipy.special import erf as scipy_erf
except ImportError:  # pragma: no cover - depends on the machine
    scipy_erf = None


def best_time(fn, x, repeat: int) -> float:
    fn(x)  # warm-up
    best = math.inf
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn(x)
        best = min(best, time.perf_counter() - t0)
    return best


def make_input(n: int, dist: str, dtype, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if dist == "gelu":  # erf's argument in GELU(x) = x/2 * (1 + erf(x/sqrt 2)), x ~ N(0, 1)
        x = rng.standard_normal(n) / math.sqrt(2.0)
    elif dist == "uniform":
        x = rng.uniform(-5.0, 5.0, n)
    else:
        raise ValueError(dist)
    return x.astype(dtype)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", nargs="+", type=float, default=[1e3, 1e5, 1e6, 1e7])
    ap.add_argument("--dtypes", nargs="+", default=["float32", "float64"])
    ap.add_argument("--dist", choices=["gelu", "uniform"], default="gelu")
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args(argv)

    print(f"erf on {args.dist} inputs, best of {args.repeat} runs (seconds)")
    header = (f"{'elements':>10}  {'dtype':<8} {'erf_numpy':>10} {'scipy':>10} {'ratio':>7} "
              f"{'max|diff|':>10}")
    print(header)
    print("-" * len(header))
    for size in args.sizes:
        n = int(size)
        for dt in args.dtypes:
            x = make_input(n, args.dist, np.dtype(dt))
            t_ours = best_time(erf_numpy, x, args.repeat)
            if scipy_erf is not None:
                t_sp = best_time(scipy_erf, x, args.repeat)
                diff = float(np.max(np.abs(erf_numpy(x).astype(np.float64)
                                           - scipy_erf(x.astype(np.float64)))))
                sp, ratio, d = f"{t_sp:10.4f}", f"{t_ours / t_sp:7.2f}", f"{diff:10.2e}"
            else:
                sp, ratio, d = f"{'-':>10}", f"{'-':>7}", f"{'-':>10}"
            print(f"{n:>10}  {dt:<8} {t_ours:10.4f} {sp} {ratio} {d}")


if __name__ == "__main__":
    main()
