"""The backend module is the only door to NumPy/CuPy, and it says clearly what is missing."""

import ast
import pathlib

import numpy as np
import pytest
from conftest import CUPY_OK

import minivit
import minivit.backend as backend

PKG = pathlib.Path(minivit.__file__).parent


def _imports(path):
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module.split(".")[0]


def test_only_the_backend_module_imports_numpy_or_cupy():
    offenders = []
    for path in sorted(PKG.rglob("*.py")):
        if path == PKG / "backend.py":
            continue
        bad = sorted(set(_imports(path)) & {"numpy", "cupy", "cupyx"})
        if bad:
            offenders.append(f"{path.relative_to(PKG.parent)} imports {bad}")
    assert not offenders, "\n".join(offenders)
    assert len(list(PKG.rglob("*.py"))) > 10                 # the scan really saw the package


def test_library_never_imports_torch_at_module_level():
    for path in sorted(PKG.rglob("*.py")):
        tree = ast.parse(path.read_text())
        top = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
        names = {a.name.split(".")[0] for n in top if isinstance(n, ast.Import) for a in n.names}
        names |= {n.module.split(".")[0] for n in top if isinstance(n, ast.ImportFrom) and n.module}
        assert "torch" not in names, f"{path} imports torch at module level"


# The loops a layer may have: over the k x k offsets of a convolution kernel (each step copies
# one strided slice of the batch), over the cache-sized chunks of images of a convolution's
# im2col and product (one chunk on CuPy), and over the layers of the convolutional stem.
ALLOWED_LOOPS = {"conv.py": {"range(k)", "range(0, B, n)", "column_chunks(xpad, k, stride)"},
                 "maxpool.py": {"range(1, k * k)", "range(k * k)"},   # the window's offsets
                 "batchnorm.py": {"shards"},          # pooling the threads' statistics
                 "conv_stem.py": {"convs", "reversed(cache.convs)"},
                 "softmax.py": {"range(rows.bit_length() - 1)"},   # halvings: log2(T) of them
                 "encoder.py": {"enumerate(blocks)", "reversed(range(len(cache.blocks)))",
                                "range(depth)"}}


def test_layers_have_no_python_loops():
    """Heads, tokens, samples and pixels go through batched array operations, never a Python
    loop; the only loops are over kernel offsets, stem layers, encoder blocks and the halvings
    of a column maximum (ALLOWED_LOOPS)."""
    for path in sorted((PKG / "layers").glob("*.py")):
        allowed = ALLOWED_LOOPS.get(path.name, set())
        for n in ast.walk(ast.parse(path.read_text())):
            if isinstance(n, ast.While):
                raise AssertionError(f"{path.name} has a while loop at line {n.lineno}")
            iters = ([n.iter] if isinstance(n, ast.For) else
                     [g.iter for g in n.generators]
                     if isinstance(n, (ast.ListComp, ast.GeneratorExp)) else [])
            for it in iters:
                assert ast.unparse(it) in allowed, \
                    f"{path.name} has a loop over {ast.unparse(it)} at line {n.lineno}"


def test_set_backend_and_environment(monkeypatch):
    assert backend.get_backend() == "numpy"
    with pytest.raises(ValueError, match="unknown backend 'jax'"):
        backend.set_backend("jax")
    monkeypatch.setitem(backend._active, "name", None)
    monkeypatch.setenv("MINIVIT_BACKEND", "tpu")
    with pytest.raises(ValueError, match="MINIVIT_BACKEND='tpu'"):
        backend.get_backend()
    monkeypatch.setenv("MINIVIT_BACKEND", "numpy")
    monkeypatch.setitem(backend._active, "name", None)
    assert backend.get_backend() == "numpy" and backend.get_xp() is np


@pytest.mark.skipif(CUPY_OK, reason="CuPy and a GPU are present here")
def test_asking_for_cupy_without_it_gives_one_clear_error():
    with pytest.raises(backend.BackendError, match="CuPy is not installed|no usable NVIDIA GPU"):
        backend.set_backend("cupy")
    assert backend.get_backend() == "numpy"                   # nothing changed


def test_host_device_helpers(xp):
    a = np.arange(6.0).reshape(2, 3)
    d = backend.to_device(a, "float32")
    assert backend.array_module(d) is xp and d.dtype == np.float32
    back = backend.to_numpy(d)
    assert isinstance(back, np.ndarray) and (back == a).all()
    assert backend.resolve_dtype(None) == np.float32
    with pytest.raises(ValueError, match="dtype must be one of"):
        backend.resolve_dtype("int32")


def test_seeded_generators_repeat(xp):
    a = backend.rng(0, xp).random((4,))
    b = backend.rng(0, xp).random((4,))
    assert (a == b).all()
