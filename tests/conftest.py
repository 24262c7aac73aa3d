"""Shared test setup: backend parametrisation (NumPy always, CuPy where a GPU is present) and
hypothesis settings.  Tests that take ``xp`` run once per available backend."""

import os
import sys

import pytest
from hypothesis import HealthCheck, settings

import minivit.backend as backend

# The test folders mirror the package's; what they share (support.py, the PyTorch twins, the
# CuPy stand-in) sits here, on the import path of every test.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from support import make_cfg, skip_summary, starts_training, write_tiny_cifar  # noqa: E402

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
def pytest_collection_modifyitems(config, items):
    for item in items:
        func = getattr(item, "function", None)
        if func is None or item.get_closest_marker("slow"):
            continue
        defs = getattr(getattr(item, "_fixtureinfo", None), "name2fixturedefs", {})
        fixtures = [d[-1].func for d in defs.values() if d and "_pytest" not in
                    getattr(d[-1].func, "__module__", "_pytest")]
        if item.get_closest_marker("mpi") or any(map(starts_training, [func, *fixtures])):
            item.add_marker(pytest.mark.slow)


# --- why tests were skipped, in one line under pytest's summary (support.skip_summary) --------
def pytest_terminal_summary(terminalreporter):
    """Say why tests were skipped, in one line: most are the CuPy tests where there is no GPU,
    and the real-data test runs only with $MINIVIT_DATA set."""
    reasons = [r.longrepr[2] for r in terminalreporter.stats.get("skipped", [])
               if isinstance(r.longrepr, tuple)]
    if reasons:
        terminalreporter.write_line(skip_summary(reasons))


# --- tiny CIFAR-10 files and a tiny finished run, for the tests that damage one ---------------
@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    """Synthetic CIFAR-10 files (tests/support.py sizes); many test modules have their own."""
    return write_tiny_cifar(tmp_path_factory.mktemp("cifar"))


@pytest.fixture(scope="module")
def base_run(data_dir, tmp_path_factory):
    """A tiny finished run to damage (copy it first: ``support.copy_run``)."""
    import minivit.training as T
    run = tmp_path_factory.mktemp("runs") / "base"
    T.train(make_cfg(data_dir, run, max_steps=5))
    return run
