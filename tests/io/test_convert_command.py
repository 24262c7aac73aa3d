"""``minivit convert SRC DST --to hf|timm|npz|safetensors``: every target from a run directory,
back again bit for bit, the run's class names in the HF config, one-line refusals."""

import json

import numpy as np
import pytest

import minivit
from minivit.cli import main
from minivit.io.files import write_json

SMALL = {"image_size": 16, "patch_size": 4, "num_classes": 3, "embed_dim": 24, "depth": 2,
         "num_heads": 3, "mlp_dim": 48}
LABELS = ["plane", "car", "bird"]
MEAN, STD = [0.5, 0.45, 0.4], [0.25, 0.2, 0.3]


def make_run(folder, **overrides):
    """A run directory: model.safetensors and a config.json with the class names."""
    model = minivit.create_model(minivit.ViTConfig(**{**SMALL, **overrides}), seed=0,
                                 dtype="float32")
    folder.mkdir()
    minivit.save(model, folder / "model.safetensors")
    write_json(folder / "config.json", {"train": {"objective": "classify"},
                                        "data": {"label_names": LABELS, "mean": MEAN,
                                                 "std": STD}})
    return model


def same_params(a, b):
    assert a.keys() == b.keys()
    for k in a:
        assert np.array_equal(a[k], b[k]), k


def one_error_line(capsys):
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("minivit convert: error:"), err
    return err[0]


def test_to_hf_and_back(tmp_path, capsys):
    model = make_run(tmp_path / "run")
    assert main(["convert", str(tmp_path / "run"), str(tmp_path / "hf"), "--to", "hf"]) == 0
    assert "wrote" in capsys.readouterr().out
    config = json.loads((tmp_path / "hf" / "config.json").read_text())
    assert config["id2label"] == {"0": "plane", "1": "car", "2": "bird"}
    assert main(["convert", str(tmp_path / "hf"), str(tmp_path / "m.safetensors"),
                 "--to", "safetensors"]) == 0
    same_params(minivit.load(tmp_path / "m.safetensors").params, model.params)
    assert main(["convert", str(tmp_path / "hf"), str(tmp_path / "hf2"), "--to", "hf"]) == 0
    assert json.loads((tmp_path / "hf2" / "config.json").read_text())["id2label"]["2"] == "bird"


@pytest.mark.slow                     # importing transformers' pipelines takes seconds
def test_hf_pipeline_classifies_files_as_predict_does(tmp_path, capsys):
    transformers = pytest.importorskip("transformers", reason="transformers not installed")
    image = pytest.importorskip("PIL.Image", reason="Pillow not installed")
    make_run(tmp_path / "run")
    assert main(["convert", str(tmp_path / "run"), str(tmp_path / "hf"), "--to", "hf"]) == 0
    pixels = np.random.default_rng(0).integers(0, 256, (20, 24, 3), dtype=np.uint8)
    image.fromarray(pixels).save(tmp_path / "x.png")
    capsys.readouterr()
    assert main(["predict", str(tmp_path / "run"), str(tmp_path / "x.png"), "--top", "3"]) == 0
    lines = capsys.readouterr().out.splitlines()[1:]
    want = [(line.split()[1], float(line.split()[2])) for line in lines]
    pipe = transformers.pipeline("image-classification", model=str(tmp_path / "hf"))
    got = [(r["label"], r["score"]) for r in pipe(str(tmp_path / "x.png"), top_k=3)]
    assert [g[0] for g in got] == [w[0] for w in want]
    assert np.allclose([g[1] for g in got], [w[1] for w in want], atol=1e-4)


def test_to_timm_prints_the_create_model_call(tmp_path, capsys):
    model = make_run(tmp_path / "run", pool="mean")
    dest = tmp_path / "t.safetensors"
    assert main(["convert", str(tmp_path / "run"), str(dest), "--to", "timm"]) == 0
    out = capsys.readouterr().out
    assert "timm.create_model('vit_tiny_patch16_224', pretrained=False, img_size=16" in out
    assert "global_pool='avg', fc_norm=False" in out and "strict=True" in out
    same_params(minivit.load(dest).params, model.params)


def test_to_official_npz(tmp_path, capsys):
    model = make_run(tmp_path / "run")
    assert main(["convert", str(tmp_path / "run" / "model.safetensors"),
                 str(tmp_path / "o.npz"), "--to", "npz"]) == 0
    same_params(minivit.load_official_npz(tmp_path / "o.npz").params, model.params)


@pytest.mark.parametrize("overrides, dest, to, message", [
    ({"pool": "mean"}, "hf", "hf", "classifies the class token only"),
    ({}, "m.onnx", "npz", "--to npz writes a .npz file"),
    ({}, "m.npz", "timm", "--to timm writes a .safetensors file"),
])
def test_refusals(tmp_path, capsys, overrides, dest, to, message):
    make_run(tmp_path / "run", **overrides)
    assert main(["convert", str(tmp_path / "run"), str(tmp_path / dest), "--to", to]) == 2
    assert message in one_error_line(capsys)
    assert not (tmp_path / dest).exists()


def test_missing_source_and_pretraining_run(tmp_path, capsys):
    assert main(["convert", str(tmp_path / "nope"), str(tmp_path / "hf"), "--to", "hf"]) == 2
    assert "not found" in one_error_line(capsys)
    make_run(tmp_path / "run")
    write_json(tmp_path / "run" / "config.json", {"train": {"objective": "mae"}})
    assert main(["convert", str(tmp_path / "run"), str(tmp_path / "hf"), "--to", "hf"]) == 2
    assert "pre-training run" in one_error_line(capsys)
