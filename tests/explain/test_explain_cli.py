"""``minivit explain`` from the command line and from Python: the page's manifest holds what
NumPy computed, and bad input ends with one line naming the file, exit 2, no page."""

import struct
import zlib

import numpy as np
import pytest
from explain_pages import read_manifest

from minivit.cli import main
from minivit.explain import explain
from minivit.explain.manifest import decode_array
from minivit.io.pretrained import save_mae
from minivit.io.serialization import save
from minivit.models.mae import create_mae
from minivit.models.vit import create_model

Image = pytest.importorskip("PIL.Image", reason="reading images needs Pillow")
NORM = ["--mean", "0.5", "0.5", "0.5", "--std", "0.25", "0.25", "0.25"]


def tiny_model_file(tmp_path):
    model = create_model("cifar-nano", seed=0, image_size=8, patch_size=4, embed_dim=16,
                         depth=2, num_heads=2, mlp_dim=24, num_classes=4)
    path = tmp_path / "tiny.safetensors"
    save(model, path)
    return path


def image_file(tmp_path, name="img.png", size=8):
    pixels = np.random.default_rng(0).integers(0, 256, (size, size, 3), dtype=np.uint8)
    path = tmp_path / name
    Image.fromarray(pixels).save(path)
    return path


def test_page_from_the_command_line(tmp_path, capsys):
    model, img, out = tiny_model_file(tmp_path), image_file(tmp_path), tmp_path / "page.html"
    assert main(["explain", str(model), str(img), str(img), "--out", str(out), *NORM]) == 0
    assert "wrote" in capsys.readouterr().out
    m = read_manifest(out)
    assert [x["label"] for x in m["models"]] == ["trained", "untrained"]
    assert len(m["images"]) == 2 and len(m["models"][0]["images"]) == 2
    story = m["models"][0]["images"][0]
    assert decode_array(story["probs"]).shape == (2, 2, 5, 5)
    assert decode_array(story["d_image"]).shape == (4, 3, 8, 8)
    assert decode_array(story["token_grad_norms"]).shape == (4, 3, 5)
    assert len(m["stages"]) == 2 + 3
    text = out.read_text()
    assert "{{" not in text and "http://" not in text and "https://" not in text


def test_default_out_and_no_untrained(tmp_path):
    model, img = tiny_model_file(tmp_path), image_file(tmp_path)
    assert main(["explain", str(model), str(img), "--no-compare-untrained", *NORM]) == 0
    page = tmp_path / "tiny-explain.html"
    assert [x["label"] for x in read_manifest(page)["models"]] == ["trained"]


def test_python_api_returns_the_path(tmp_path):
    out = explain(tiny_model_file(tmp_path), [image_file(tmp_path)], tmp_path / "p.html",
                  untrained=False, mean=(0.5,) * 3, std=(0.25,) * 3)
    assert out == tmp_path / "p.html" and out.stat().st_size > 1000


def png_header(width, height):
    """The signature and IHDR chunk of a greyscale PNG (enough for Pillow to read the size)."""
    def chunk(kind, data):
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data)))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0"))


def bad_inputs(tmp_path):
    garbage = tmp_path / "garbage.png"
    garbage.write_bytes(b"not an image at all")
    folder = tmp_path / "folder.png"
    folder.mkdir()
    bomb = tmp_path / "bomb.png"                   # a header claiming 30000 x 30000 pixels
    bomb.write_bytes(png_header(30000, 30000))
    return {"garbage": garbage, "folder": folder, "bomb": bomb}


@pytest.mark.parametrize("which", ["garbage", "folder", "bomb"])
def test_bad_image_is_one_line(tmp_path, capsys, which):
    model, out = tiny_model_file(tmp_path), tmp_path / "page.html"
    bad = bad_inputs(tmp_path)[which]
    assert main(["explain", str(model), str(bad), "--out", str(out), *NORM]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(bad) in err and "Traceback" not in err, err
    if which == "bomb":
        assert "decompression bomb" in err
    assert not out.exists() and not list(tmp_path.glob(".page.html*"))


def test_model_that_is_not_a_classifier(tmp_path, capsys):
    mae = tmp_path / "mae.safetensors"
    save_mae(create_mae("cifar-tiny", seed=0), mae)
    out = tmp_path / "page.html"
    assert main(["explain", str(mae), str(image_file(tmp_path)), "--out", str(out), *NORM]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "mae.safetensors" in err, err
    assert not out.exists()


def test_out_that_is_a_folder(tmp_path, capsys):
    model, img = tiny_model_file(tmp_path), image_file(tmp_path)
    assert main(["explain", str(model), str(img), "--out", str(tmp_path), *NORM]) == 2
    assert "is a folder" in capsys.readouterr().err


def test_a_large_page_leaves_out_the_heaviest_arrays(tmp_path, monkeypatch):
    from minivit.explain import explanation
    monkeypatch.setattr(explanation, "MAX_BYTES", 1000)   # the tiny page is ~20 kB
    out = explain(tiny_model_file(tmp_path), [image_file(tmp_path)], tmp_path / "p.html",
                  untrained=False, mean=(0.5,) * 3, std=(0.25,) * 3)
    m = read_manifest(out)
    story = m["models"][0]["images"][0]
    assert "scores" not in story and "head_outputs" not in story and "probs" in story
    assert m["notes"] and "leaves out" in m["notes"][0]


def test_a_distilled_model_is_refused(tmp_path, capsys):
    model = create_model("cifar-nano", seed=0, image_size=8, patch_size=4, embed_dim=16,
                         depth=1, num_heads=2, mlp_dim=24, distilled=True, pool="token")
    path = tmp_path / "deit.safetensors"
    save(model, path)
    assert main(["explain", str(path), str(image_file(tmp_path)), *NORM]) == 2
    assert "distilled" in capsys.readouterr().err
