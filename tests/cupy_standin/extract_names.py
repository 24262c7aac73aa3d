"""Write names_cupy14.txt: the public names of the real CuPy in the namespaces minivit can reach.

Run with the real CuPy importable (a GPU is not needed to import it), e.g. from an unpacked wheel:

    pip download --no-deps "cupy-cuda13x==14.*" -d /tmp/w && cd /tmp/w && unzip -q cupy_*.whl
    pip install --target /tmp/w/deps cuda-pathfinder
    PYTHONPATH=/tmp/w:/tmp/w/deps python3 tests/cupy_standin/extract_names.py WHEEL_FILE_NAME
"""

import os
import sys

import cupy
import cupy.cuda
import cupy.linalg
import cupy.random
import cupyx
import cupyx.scipy.special


def _public(obj, keep=lambda n: True):
    return sorted(n for n in dir(obj) if not n.startswith("__") and keep(n))


def main():
    wheel = sys.argv[1] if len(sys.argv) > 1 else "unknown wheel"
    sections = {
        "cupy": _public(cupy, lambda n: not n.startswith("_")),
        "cupy.ndarray": _public(cupy.ndarray,
                                lambda n: not n.startswith("_") or n.startswith("__")),
        "cupy.ufunc": _public(cupy.ufunc, lambda n: not n.startswith("_")),
        "cupy.random": _public(cupy.random, lambda n: not n.startswith("_")),
        "cupy.random.Generator": _public(cupy.random.Generator, lambda n: not n.startswith("_")),
        "cupy.linalg": _public(cupy.linalg, lambda n: not n.startswith("_")),
        "cupy.cuda": _public(cupy.cuda, lambda n: not n.startswith("_")),
        # functions only: the hundreds of cudaXxx constants are left out
        "cupy.cuda.runtime": _public(cupy.cuda.runtime,
                                     lambda n: not n.startswith(("_", "cuda", "CUDA_"))),
        "cupy.cuda.Stream": _public(cupy.cuda.Stream, lambda n: not n.startswith("_")),
        "cupyx": _public(cupyx, lambda n: not n.startswith("_")),
        "cupyx.scipy.special": _public(cupyx.scipy.special, lambda n: not n.startswith("_")),
    }
    out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "names_cupy14.txt")
    with open(out, "w") as f:
        f.write(f"# Public names of CuPy {cupy.__version__}, "
                "written by tests/cupy_standin/extract_names.py\n")
        f.write(f"# from the wheel {wheel} (imported without a GPU).\n")
        f.write("# One '[namespace]' line, then one name per line.  "
                "The stand-in refuses any other name.\n")
        for section, names in sections.items():
            f.write(f"[{section}]\n")
            f.writelines(n + "\n" for n in names)
    print(out, sum(map(len, sections.values())), "names")


if __name__ == "__main__":
    main()
