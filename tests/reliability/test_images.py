"""Images read defensively (minivit/data/images.py): decompression bombs refused in one
line, 16-bit / 32-bit / float pixels scaled to 8 bits, names printed escaped, output names
unique when two inputs share a stem."""

import re
import struct
import sys
import zlib

import numpy as np
import pytest

pytest.importorskip("PIL.Image", reason="images are read with Pillow (.[viz])")
pytest.importorskip("safetensors", reason="model files are .safetensors (.[io])")

from PIL import Image
from support import cli, error_line

import minivit
from minivit.data import images as I
from minivit.errors import UserError
from minivit.models.vit_config import ViTConfig

CFG = ViTConfig(image_size=8, patch_size=4, num_classes=3, embed_dim=16, depth=1, num_heads=2,
                mlp_dim=32, name="t")
NORM = ["--mean", "0.5", "0.5", "0.5", "--std", "0.25", "0.25", "0.25", "--top", "1"]


def png_bomb(path, side=30000):
    """A valid PNG header declaring side x side grey pixels, a few KB of zeros after it."""
    def chunk(kind, data):
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))
    z = zlib.compressobj(9)
    rows = b"".join(z.compress(b"\0" + bytes(side)) for _ in range(20)) + z.flush()
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", side, side,
                                                                       8, 0, 0, 0, 0))
                     + chunk(b"IDAT", rows) + chunk(b"IEND", b""))
    return path


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "m.safetensors"
    minivit.save(minivit.create_model(CFG, seed=0), path)
    return path


def test_a_decompression_bomb_is_refused_before_decoding(tmp_path, monkeypatch):
    bomb = png_bomb(tmp_path / "bomb.png")
    assert bomb.stat().st_size < 200_000
    with pytest.raises(UserError, match=r"bomb.png declares more than 89,478,485 pixels.*"
                                        r"MINIVIT_MAX_IMAGE_PIXELS"):
        I.read_image(bomb, 8)
    monkeypatch.setenv(I.PIXELS_VAR, "100")
    small = tmp_path / "small.png"
    Image.new("RGB", (20, 20)).save(small)
    with pytest.raises(UserError, match="more than 100 pixels"):
        I.read_image(small, 8)
    monkeypatch.setenv(I.PIXELS_VAR, "500")
    assert I.read_image(small, 8).shape == (3, 8, 8)          # the limit raised: it loads
    monkeypatch.setenv(I.PIXELS_VAR, "lots")
    with pytest.raises(UserError, match="MINIVIT_MAX_IMAGE_PIXELS must be a positive integer"):
        I.read_image(small, 8)


def test_bomb_from_the_command_line_is_one_line(tmp_path, model_file):
    line = error_line(cli("predict", model_file, png_bomb(tmp_path / "bomb.png"), *NORM))
    assert "decompression bomb" in line and "bomb.png" in line


@pytest.mark.parametrize("mode, values, expected", [
    ("I;16", np.full((8, 8), 30000, np.uint16), round(30000 / 257)),
    ("I;16", np.full((8, 8), 65535, np.uint16), 255),
    ("I", np.full((8, 8), 30000, np.int32), round(30000 / 257)),          # 16-bit in 32 bits
    ("I", np.full((8, 8), 2**30, np.int32), round(255 * 2**30 / (2**31 - 1))),
    ("F", np.full((8, 8), 0.5, np.float32), 128),                         # 0..1
    ("F", np.full((8, 8), 100.0, np.float32), 100),                       # 0..255
])
def test_wide_pixel_modes_are_scaled_not_clipped(tmp_path, mode, values, expected):
    img = Image.fromarray(values, mode) if mode != "I;16" else Image.fromarray(values)
    assert img.mode == mode
    path = tmp_path / ("x.png" if mode == "I;16" else "x.tiff")
    img.save(path)
    got = I.read_image(path, 8)
    assert got.shape == (3, 8, 8) and got.dtype == np.uint8
    assert abs(int(got[0, 4, 4]) - expected) <= 1 and (got[0] == got[2]).all()


def test_float_image_with_nan_is_refused(tmp_path):
    a = np.full((8, 8), np.nan, np.float32)
    Image.fromarray(a, "F").save(tmp_path / "nan.tiff")
    with pytest.raises(UserError, match="NaN or infinite pixel values"):
        I.read_image(tmp_path / "nan.tiff", 8)


@pytest.mark.parametrize("payload", [b"", b"\x89PNG\r\n\x1a\n" + b"\0" * 40, b"GIF89a" + bytes(9),
                                     b"not an image"])
def test_damaged_images_are_one_line(tmp_path, payload):
    (tmp_path / "bad.png").write_bytes(payload)
    with pytest.raises(UserError, match="cannot read image .*bad.png"):
        I.read_image(tmp_path / "bad.png", 8)


def test_a_newline_in_a_name_cannot_forge_a_line(tmp_path, model_file):
    path = tmp_path / "cat\nminivit: 1. truck 1.0000.png"
    Image.new("RGB", (8, 8), (255, 0, 0)).save(path, format="PNG")
    r = cli("predict", model_file, path, *NORM)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert len(lines) == 2 and lines[0] == repr(str(path)), lines
    missing = cli("predict", model_file, tmp_path / "a\nb.png", *NORM)
    assert "\\n" in error_line(missing)


def test_unique_stems():
    assert I.unique_stems(["a/x.png", "b/x.png", "c/x-2.jpg", "y.png", "d/x.jpeg"]) == \
        ["x", "x-2", "x-2-2", "y", "x-3"]


def test_without_pillow_the_hint_fits_how_minivit_was_installed(tmp_path, monkeypatch):
    from minivit.data.images import read_image
    from minivit.install import install_hint
    monkeypatch.setitem(sys.modules, "PIL", None)
    (tmp_path / "x.png").write_bytes(b"not read")
    with pytest.raises(UserError, match=re.escape(install_hint("viz"))):
        read_image(tmp_path / "x.png", 32)
