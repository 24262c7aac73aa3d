"""Shared test setup: backend parametrisation (NumPy always, CuPy where a GPU is present) and
hypothesis settings.  Tests that take ``xp`` run once per available backend."""

import os
import sys

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

import minivit.backend as backend

# The test folders mirror the package's; what they share (support.py, the PyTorch twins, the
# CuPy stand-in) sits here, on the import path of every test.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from skips import skip_summary  # tests/ is on the path from here on

# --- CuPy stand-in (tests/cupy_standin) -------------------------------------------------------
# With MINIVIT_CUPY_STANDIN=1 and no working CuPy, the `cupy` tests run against a strict
# NumPy-backed stand-in installed as `cupy` / `cupyx` (on a GPU the variable stays unset).
if os.environ.get("MINIVIT_CUPY_STANDIN") == "1" and not backend.cupy_available()[0]:
    import cupy_standin
    cupy_standin.install()
    backend._cupy.update(module=None, error=None)      # forget the failed try; load the stand-in
# ----------------------------------------------------------------------------------------------

settings.register_profile(
    "minivit", deadline=None, max_examples=15, derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
settings.load_profile("minivit")

CUPY_OK, CUPY_WHY = backend.cupy_available()
requires_cupy = pytest.mark.skipif(not CUPY_OK, reason=f"CuPy backend unavailable: {CUPY_WHY}")

BACKEND_PARAMS = [
    pytest.param("numpy", id="numpy"),
    pytest.param("cupy", id="cupy", marks=[pytest.mark.cupy, requires_cupy]),
]


@pytest.fixture(params=BACKEND_PARAMS)
def xp(request):
    """The array module under test; the active backend is set to it for the test's duration."""
    previous = backend.get_backend()
    mod = backend.set_backend(request.param)
    yield mod
    backend.set_backend(previous)


def pytest_terminal_summary(terminalreporter):
    """Say why tests were skipped, in one line: most are the CuPy tests where there is no GPU,
    and the real-data test runs only with $MINIVIT_DATA set."""
    reasons = [r.longrepr[2] for r in terminalreporter.stats.get("skipped", [])
               if isinstance(r.longrepr, tuple)]
    if reasons:
        terminalreporter.write_line(skip_summary(reasons))
