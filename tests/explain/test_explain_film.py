"""``minivit train --snapshots N`` and the explain page's epoch slider: which epochs are kept,
the files a short run writes, and the frames ``minivit explain`` makes of them."""

import numpy as np
import pytest
from explain_pages import read_manifest
from support import make_cfg, write_tiny_cifar

from minivit.cli import main
from minivit.explain.film import pick
from minivit.explain.manifest import decode_array
from minivit.io.serialization import load
from minivit.training import train
from minivit.training.config import TrainConfig
from minivit.training.snapshots import list_snapshots, snapshot_epochs

Image = pytest.importorskip("PIL.Image", reason="reading images needs Pillow")


def test_snapshot_epochs_are_spread_and_end_with_the_last():
    assert snapshot_epochs(3, 10) == {4, 7, 10}
    assert snapshot_epochs(2, 2) == {1, 2}
    assert snapshot_epochs(5, 3) == {1, 2, 3}
    assert snapshot_epochs(0, 3) == set()
    assert snapshot_epochs(1, 97) == {97}


def test_snapshots_must_be_a_count():
    with pytest.raises(ValueError, match="snapshots"):
        TrainConfig(snapshots=-1)


def test_pick_keeps_the_ends():
    assert pick(list(range(10)), 4) == [0, 3, 6, 9]
    assert pick([1, 2], 4) == [1, 2]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A 3-epoch tiny run that keeps 2 snapshots, and an image."""
    folder = tmp_path_factory.mktemp("film")
    data = write_tiny_cifar(folder / "data")
    result = train(make_cfg(data, folder / "run", epochs=3, snapshots=2))
    assert result["status"] == "done"
    pixels = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(folder / "img.png")
    return folder


@pytest.mark.slow
def test_a_run_keeps_its_snapshots(run):
    assert [e for e, _ in list_snapshots(run / "run")] == [2, 3]
    last = load(list_snapshots(run / "run")[-1][1])
    final = load(run / "run" / "model.safetensors")
    for k in final.params:
        np.testing.assert_array_equal(last.params[k], final.params[k])


@pytest.mark.slow
def test_explain_adds_the_frames(run, tmp_path):
    page = tmp_path / "film.html"
    assert main(["explain", str(run / "run"), str(run / "img.png"), "--out", str(page)]) == 0
    m = read_manifest(page)
    assert [f["epoch"] for f in m["film"]["frames"]] == [0, 2, 3]
    untrained = m["models"][1]["images"][0]           # seed 0: the run's initialisation
    first, last = m["film"]["frames"][0]["images"][0], m["film"]["frames"][-1]["images"][0]
    np.testing.assert_allclose(decode_array(first["logits"]), decode_array(untrained["logits"]),
                               rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(decode_array(last["logits"]),
                               decode_array(m["models"][0]["images"][0]["logits"]), rtol=1e-5,
                               atol=1e-6)
    assert decode_array(last["probs"]).shape == (1, 2, 65, 65)
    assert main(["explain", str(run / "run"), str(run / "img.png"), "--out", str(page),
                 "--no-epochs"]) == 0
    assert read_manifest(page)["film"] is None


def test_a_linked_snapshots_folder_is_refused(tmp_path):
    from minivit.io.files import WriteError
    from minivit.training.snapshots import SNAPSHOT_DIR, snapshot_path
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / SNAPSHOT_DIR).symlink_to(elsewhere)
    with pytest.raises(WriteError, match="symbolic link"):
        snapshot_path(tmp_path / "run", 1, create=True)
