"""``minivit inspect`` on a tiny checkpoint saved in tmp_path, with and without CIFAR-10."""

import numpy as np
import pytest

pytest.importorskip("matplotlib", reason="minivit inspect draws with matplotlib (.[viz])")
pytest.importorskip("safetensors", reason="the test checkpoint is a .safetensors file (.[io])")
Image = pytest.importorskip("PIL.Image", reason="minivit inspect reads images with Pillow")

import minivit
from minivit.cli import main
from minivit.data.synthetic import make_images, write_cifar10_like

TINY = {"embed_dim": 16, "depth": 2, "num_heads": 2, "mlp_dim": 32}
FIGURES = ("filters_pca.png", "position_similarity.png", "attention_distance.png",
           "attention_heads.png", "attention_rollout.png")


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("inspect")
    model = minivit.create_model("cifar-nano", seed=1, **TINY)
    minivit.save(model, root / "tiny.safetensors")
    images = []
    for i, pixels in enumerate(make_images([3, 8], np.random.default_rng(0))):
        path = root / f"img{i}.png"
        Image.fromarray(pixels.transpose(1, 2, 0)).resize((40, 40)).save(path)
        images.append(path)
    data = write_cifar10_like(root / "cifar", n_train_per_batch=10, n_test=20)
    return root, images, data


@pytest.fixture
def no_cifar(monkeypatch, tmp_path):
    """Make sure no CIFAR-10 is found through $MINIVIT_DATA or the cache."""
    monkeypatch.delenv("MINIVIT_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "empty-cache"))


def one_error_line(capsys):
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("minivit inspect: error:"), err
    return err[0]


def test_inspect_writes_every_figure_with_cifar(files, tmp_path, capsys):
    root, images, data = files
    out = tmp_path / "out"
    rc = main(["inspect", str(root / "tiny.safetensors"), "--image", *map(str, images),
               "--data-dir", str(data), "--out", str(out), "--mistakes", "3", "--layer", "0"])
    assert rc == 0
    text = capsys.readouterr().out
    for name in FIGURES + ("mistakes.png",):
        assert (out / name).is_file() and (out / name).stat().st_size > 1000, name
        assert f"wrote {out / name}" in text
    assert "accuracy" in text and "on 20 test images" in text
    assert "per layer, untrained" in text and "img0.png:" in text


def test_inspect_without_data_and_without_untrained(files, tmp_path, capsys, no_cifar):
    root, images, _ = files
    out = tmp_path / "out"
    rc = main(["inspect", str(root / "tiny.safetensors"), "--image", str(images[0]),
               "--out", str(out), "--no-compare-untrained"])
    assert rc == 0
    text = capsys.readouterr().out
    assert "CIFAR-10 not found" in text and "untrained" not in text
    assert sorted(p.name for p in out.iterdir()) == sorted(FIGURES)


@pytest.mark.slow
def test_inspect_default_out_dir_and_test_images(files, capsys):
    root, _, data = files
    assert main(["inspect", str(root / "tiny.safetensors"), "--data-dir", str(data),
                 "--mistakes", "0"]) == 0
    out = root / "tiny-inspect"
    assert sorted(p.name for p in out.iterdir()) == sorted(FIGURES)
    assert "test 0:" in capsys.readouterr().out


@pytest.mark.parametrize("problem", ["missing checkpoint", "missing image", "not an image",
                                     "bad data dir", "bad layer", "no images"])
def test_inspect_bad_input_is_one_line(files, tmp_path, capsys, no_cifar, problem):
    root, images, _ = files
    ckpt, img = str(root / "tiny.safetensors"), str(images[0])
    junk = tmp_path / "junk.png"
    junk.write_text("not a PNG")
    argv, expected = {
        "missing checkpoint": (["nope.safetensors", "--image", img], "nope.safetensors not found"),
        "missing image": ([ckpt, "--image", "nope.png"], "image nope.png not found"),
        "not an image": ([ckpt, "--image", str(junk)], "cannot read image"),
        "bad data dir": ([ckpt, "--image", img, "--data-dir", str(tmp_path)], "not found"),
        "bad layer": ([ckpt, "--image", img, "--layer", "5"], "--layer must be in 0..1"),
        "no images": ([ckpt], "give --image"),
    }[problem]
    assert main(["inspect", *argv, "--out", str(tmp_path / "o")]) == 2
    assert expected in one_error_line(capsys)


def test_inspect_a_model_with_a_convolutional_stem(files, tmp_path, capsys):
    """The filter figure then shows the first convolution's 3x3 kernels, the pixels' filters."""
    root, images, data = files
    model = minivit.create_model("cifar-nano", seed=2, conv_stem=(8, 16), pool="mean", **TINY)
    minivit.save(model, root / "hybrid.safetensors")
    out = tmp_path / "out"
    assert main(["inspect", str(root / "hybrid.safetensors"), "--image", str(images[0]),
                 "--data-dir", str(data), "--out", str(out), "--mistakes", "0"]) == 0
    assert sorted(p.name for p in out.iterdir()) == sorted(FIGURES)
    assert f"wrote {out / 'filters_pca.png'}" in capsys.readouterr().out
    assert (out / "filters_pca.png").stat().st_size > 1000


def test_rollout_titles_do_not_overlap(tmp_path, monkeypatch):
    """Long column titles (a run directory's name) wrap within their column, and the
    two-line figure title stays clear of the first row's captions."""
    import minivit.analysis.inspect_figures as P
    figs = []
    monkeypatch.setattr(P, "_save", lambda fig, path, dpi=P.DPI: figs.append(fig) or path)
    gen = np.random.default_rng(0)
    images = gen.integers(0, 256, (3, 3, 32, 32)).astype(np.uint8)
    maps = gen.random((3, 8, 8))
    P.plot_rollout(images, [("rollout, runs/cifar-nano-cpu (trained)", maps),
                            ("rollout, untrained", maps)], tmp_path / "r.png",
                   [f"test {i}: automobile\n-> airplane 0.{i}3" for i in range(3)],
                   title="attention rollout (Abnar & Zuidema 2020)\ncolour: 0 .. 2x")
    fig = figs[0]
    renderer = fig.canvas.get_renderer()
    boxes = [t.get_window_extent(renderer) for t in [fig._suptitle]
             + [ax.title for ax in fig.axes if ax.get_title()]]
    for i, a in enumerate(boxes):
        for b in boxes[i + 1:]:
            assert not a.overlaps(b), (a, b)


def test_a_run_name_is_not_read_as_a_layer(files, tmp_path, capsys, no_cifar):
    """A run folder named "first" is "run 'first'" in the figures and the printout, never a bare
    "first" that reads as the first layer."""
    root, images, _ = files
    run = tmp_path / "first"
    run.mkdir()
    minivit.save(minivit.create_model("cifar-nano", seed=1, **TINY), run / "model.safetensors")
    (run / "config.json").write_text("{}")
    assert main(["inspect", str(run), "--image", str(images[0]),
                 "--out", str(tmp_path / "out")]) == 0
    text = capsys.readouterr().out
    assert "per layer, run 'first' (trained):" in text
    assert main(["inspect", str(root / "tiny.safetensors"), "--image", str(images[0]),
                 "--out", str(tmp_path / "out2"), "--no-compare-untrained"]) == 0
    assert "per layer, model 'tiny' (trained):" in capsys.readouterr().out


def test_attention_figures_have_a_colour_bar(tmp_path, monkeypatch):
    """Colour is a value in the attention maps: each figure has one labelled colour bar, to the
    right of every image."""
    import minivit.analysis.inspect_figures as P
    figs = []
    monkeypatch.setattr(P, "_save", lambda fig, path, dpi=P.DPI: figs.append(fig) or path)
    gen = np.random.default_rng(0)
    images = gen.integers(0, 256, (3, 3, 32, 32)).astype(np.uint8)
    maps = gen.random((3, 8, 8))
    P.plot_attention_heads(images, gen.random((3, 2, 8, 8)), tmp_path / "h.png", title="heads")
    P.plot_rollout(images, [("rollout of run 'first' (trained)", maps)], tmp_path / "r.png")
    P.plot_mistakes(images, maps, ["true cat\nsaid dog"] * 3, tmp_path / "m.png")
    labels = ["attention weight / the map's largest", "rollout weight", "rollout weight"]
    for fig, label in zip(figs, labels):
        bars = [ax for ax in fig.axes if ax.get_label() == "colour bar"]
        assert len(bars) == 1 and bars[0].get_ylabel() == label
        renderer = fig.canvas.get_renderer()
        bar = bars[0].get_tightbbox(renderer)
        assert 0 < bar.x1 <= fig.bbox.x1
        for ax in fig.axes:
            if ax is not bars[0]:
                assert ax.get_window_extent(renderer).x1 < bar.x0
    ticks = [t.get_text() for t in figs[1].axes[-1].get_yticklabels()]
    assert ticks == ["0", "average\npatch", "2x"]
