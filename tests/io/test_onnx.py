"""ONNX export through the PyTorch twin: ONNX Runtime's logits equal minivit's (any batch
size), for class-token, mean-pooled and distilled models; the command line writes and checks
the file.  Skipped where torch, onnxscript or onnxruntime is missing."""

import sys

import numpy as np
import pytest

import minivit
from minivit.cli import main
from minivit.errors import UserError
from minivit.io.onnx import export_onnx, onnx_logits

pytest.importorskip("torch", reason="PyTorch not installed (pip install torch==2.13.0)")
pytest.importorskip("onnxscript", reason="onnxscript not installed (the onnx extra)")
pytest.importorskip("onnxruntime", reason="onnxruntime not installed (the onnx extra)")

SMALL = {"image_size": 16, "patch_size": 4, "num_classes": 5, "embed_dim": 32, "depth": 2,
         "num_heads": 4, "mlp_dim": 64}


@pytest.mark.slow                     # torch.onnx.export takes seconds per model
@pytest.mark.parametrize("overrides", [{}, {"pool": "mean", "gelu": "tanh"}, {"distilled": True}],
                         ids=["token", "mean-tanh", "distilled"])
def test_onnx_runtime_logits_equal_minivits(tmp_path, overrides):
    model = minivit.create_model(minivit.ViTConfig(**{**SMALL, **overrides}), seed=0,
                                 dtype="float32")
    export_onnx(model, tmp_path / "m.onnx")
    for batch in (1, 5):
        x = np.random.default_rng(batch).standard_normal((batch, 3, 16, 16)).astype("float32")
        want = minivit.to_numpy(model.forward(x))
        got = onnx_logits(tmp_path / "m.onnx", x)
        assert got.shape == want.shape
        assert np.abs(got - want).max() < 1e-5 * np.abs(want).max()


@pytest.mark.slow
def test_command(tmp_path, capsys):
    model = minivit.create_model(minivit.ViTConfig(**SMALL), seed=1, dtype="float64")
    minivit.save(model, tmp_path / "m.safetensors")
    assert main(["export-onnx", str(tmp_path / "m.safetensors"), str(tmp_path / "m.onnx")]) == 0
    out = capsys.readouterr().out
    assert "input 'images' (batch, 3, 16, 16) float32" in out
    assert "ONNX Runtime's logits match minivit's on 8 random images" in out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx", "m.safetensors"]


def test_bad_output_name(tmp_path, capsys):
    minivit.save(minivit.create_model(minivit.ViTConfig(**SMALL)), tmp_path / "m.safetensors")
    assert main(["export-onnx", str(tmp_path / "m.safetensors"), str(tmp_path / "m.pb")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"minivit export-onnx: error: {tmp_path / 'm.pb'}: an ONNX file name ends "
                   "in .onnx")


def test_missing_packages_say_how_to_install_them(tmp_path, monkeypatch):
    model = minivit.create_model(minivit.ViTConfig(**SMALL))
    monkeypatch.setitem(sys.modules, "onnxscript", None)
    with pytest.raises(UserError, match=r"needs onnxscript .*pip install -e \"\.\[onnx\]\""):
        export_onnx(model, tmp_path / "m.onnx")
    monkeypatch.setitem(sys.modules, "torch", None)
    with pytest.raises(UserError, match="download.pytorch.org/whl/cpu"):
        export_onnx(model, tmp_path / "m.onnx")
    assert not list(tmp_path.iterdir())
