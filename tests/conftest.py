"""Shared test setup: backend parametrisation (NumPy always, CuPy where a GPU is present) and
hypothesis settings.  Tests that take ``xp`` run once per available backend."""

import inspect
import os
import re
import sys
from collections import Counter

import pytest
from hypothesis import HealthCheck, settings

import minivit.backend as backend

# The test folders mirror the package's; what they share (support.py, the PyTorch twins, the
# CuPy stand-in) sits here, on the import path of every test.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

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


# --- the one-minute loop ------------------------------------------------------------------------
# Every test that runs a training loop, MPI ranks or a fresh interpreter is `slow`, so that
# `pytest -m "not slow"` stays a quick loop: a test is marked when its own source or the source
# of a fixture it uses starts one.
TRAINS = re.compile(r"\bT\.(train|resume)\(|(?<![\w.])(train|resume)\(|cli_flags\(|train_args\("
                    r"|\b(main|cli|run_cli)\(\[?\"(train|pretrain|linprobe)\"|mpiexec"
                    r"|(?<![\w.])(cli|run_cli)\(|subprocess\.run\(")


def _starts_training(func) -> bool:
    try:
        return bool(TRAINS.search(inspect.getsource(func)))
    except (OSError, TypeError):        # a builtin or a fixture defined by a plugin
        return False


def pytest_collection_modifyitems(config, items):
    for item in items:
        func = getattr(item, "function", None)
        if func is None or item.get_closest_marker("slow"):
            continue
        defs = getattr(getattr(item, "_fixtureinfo", None), "name2fixturedefs", {})
        fixtures = [d[-1].func for d in defs.values() if d and "_pytest" not in
                    getattr(d[-1].func, "__module__", "_pytest")]
        if item.get_closest_marker("mpi") or any(map(_starts_training, [func, *fixtures])):
            item.add_marker(pytest.mark.slow)


# --- why tests were skipped, in one line under pytest's summary ------------------------------
def skip_kind(reason: str) -> str:
    """A skip reason without its details: "Skipped: CuPy backend unavailable: no module" ->
    "CuPy backend unavailable"."""
    reason = reason.removeprefix("Skipped: ").strip()
    return reason.split(": ")[0]


def skip_summary(reasons) -> str:
    """"skipped: 240 CuPy backend unavailable, 1 real CIFAR-10 not found (...)" for a list of
    skip reasons, most frequent first ("" for none)."""
    counts = Counter(skip_kind(r) for r in reasons)
    if not counts:
        return ""
    return ("skipped: " + ", ".join(f"{n} {kind}" for kind, n in counts.most_common())
            + " (pytest -rs gives each test's reason)")


def pytest_terminal_summary(terminalreporter):
    """Say why tests were skipped, in one line: most are the CuPy tests where there is no GPU,
    and the real-data test runs only with $MINIVIT_DATA set."""
    reasons = [r.longrepr[2] for r in terminalreporter.stats.get("skipped", [])
               if isinstance(r.longrepr, tuple)]
    if reasons:
        terminalreporter.write_line(skip_summary(reasons))
