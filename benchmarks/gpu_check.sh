#!/usr/bin/env bash
# Check minivit's CuPy backend on a GPU machine in under 8 minutes (see benchmarks/gpu_check.py):
#   bash benchmarks/gpu_check.sh             # logs and summary.{json,md} in $OUT or ./gpu-check-out
#   bash benchmarks/gpu_check.sh --dry-run   # the same on the CPU with the CuPy stand-in, tiny sizes
# Needs no network: minivit is installed from this checkout without its dependencies.
set -uo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-gpu-check-out}"
mkdir -p "$out"
if [[ " $* " != *" --dry-run "* ]]; then
    python3 -m pip install --no-deps --no-build-isolation -e . > "$out/00-pip-install.log" 2>&1 \
        || echo "pip install -e . failed (see $out/00-pip-install.log); using the checkout"
fi
exec timeout 480 python3 benchmarks/gpu_check.py --out "$out" "$@"
