"""The walkthroughs (walkthroughs/NN_*.py) run in fast mode and draw their figures, and the
renderer turns a percent-format script into Markdown.

Each walkthrough runs in a subprocess, as a user runs it (``python walkthroughs/01_....py``),
with MINIVIT_FAST=1, its figures in tmp_path, and no CIFAR-10 reachable (no $MINIVIT_DATA, an
empty cache): they must work from the committed sample and synthetic data alone.
"""

import importlib.util
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

pytest.importorskip("matplotlib", reason="the walkthroughs draw with matplotlib (.[viz])")
pytest.importorskip("PIL", reason="the walkthroughs write PNG files with Pillow (.[viz])")
pytest.importorskip("safetensors", reason="the walkthroughs load .safetensors models (.[io])")

ROOT = Path(__file__).resolve().parents[2]
WALK = ROOT / "walkthroughs"
_spec = importlib.util.spec_from_file_location("walkthroughs_render", WALK / "render.py")
render = importlib.util.module_from_spec(_spec)          # walkthroughs/render.py
sys.modules[_spec.name] = render
_spec.loader.exec_module(render)

FIGURES = {
    "01_pixels_to_prediction": [
        "01_image", "02_patches", "03_flattened", "04_patch_embedding", "05_tokens", "06_qkv",
        "07_scores_softmax", "07b_weighted_values", "08_heads", "08b_projection_residual",
        "09_mlp_gelu", "10_blocks", "10b_block_outputs", "10c_pooled", "11_probabilities",
        "11b_gradient_map", "12_loss_steps"],
    "02_backward_by_hand": ["01_gelu_derivative", "02_op_errors", "03_whole_vit"],
    "03_inside_a_trained_vit": ["01_filters_pca", "02_position_similarity",
                                "03_attention_distance", "04_heads_layer1", "05_rollout",
                                "06_mistakes"],
    "04_training_on_cifar10": ["01_recipe", "02_curves", "03_confusion"],
    "05_masked_autoencoders": ["01_masks", "02_mae_loss", "03_reconstructions", "04_mpp_targets"],
    "06_data_parallel": ["01_shards"],
    "07_distillation": ["01_disagreements", "02_heads", "03_heads_disagree", "04_over_training",
                        "05_attention"],
}


def test_the_walkthroughs_exist_in_reading_order():
    found = [p.stem for p in render.walkthroughs()]
    assert [n for n in found if n in FIGURES] == list(FIGURES)


@pytest.mark.slow
@pytest.mark.parametrize("name", list(FIGURES))
def test_walkthrough_runs_in_fast_mode_and_saves_its_figures(name, tmp_path):
    out = tmp_path / "out"
    env = {k: v for k, v in os.environ.items() if k != "MINIVIT_DATA"}
    env.update(MINIVIT_FAST="1", MINIVIT_OUT=str(out), MPLBACKEND="Agg",
               MINIVIT_BACKEND="numpy", XDG_CACHE_HOME=str(tmp_path / "cache"))
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, str(WALK / f"{name}.py")], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    seconds = time.perf_counter() - t0
    assert proc.returncode == 0, f"{name} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    assert "fast mode" in proc.stdout
    made = {p.stem for p in out.glob("*.png")}
    missing = [f for f in FIGURES[name] if f not in made]
    assert not missing, f"{name} did not save {missing} (saved {sorted(made)})"
    for f in FIGURES[name]:
        assert (out / f"{f}.png").stat().st_size > 1000
    print(f"{name}: {seconds:.1f} s")


def test_figures_go_to_a_temporary_folder_unless_minivit_out_is_set(tmp_path, monkeypatch):
    spec = importlib.util.spec_from_file_location("walkthroughs_setup", WALK / "_setup.py")
    setup = importlib.util.module_from_spec(spec)       # walkthroughs/_setup.py
    spec.loader.exec_module(setup)
    monkeypatch.delenv("MINIVIT_OUT", raising=False)
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    tempfile.tempdir = None                              # read TMPDIR again
    try:
        out = setup.walkthrough("01_pixels_to_prediction")[1]
    finally:
        tempfile.tempdir = None
    assert out.is_dir() and out.parent == tmp_path.resolve()
    assert WALK not in out.parents                       # never the committed rendered/ folder
    monkeypatch.setenv("MINIVIT_OUT", str(tmp_path / "figs"))
    assert setup.walkthrough("01_pixels_to_prediction")[1] == (tmp_path / "figs").resolve()
    assert (tmp_path / "figs").is_dir()


def test_rendered_markdown_names_no_folder_of_the_machine_it_ran_on():
    absolute = re.compile(r"(?<![\w.~])/(?:tmp|home|work|root|Users|var|private)/")
    for md in sorted((WALK / "rendered").glob("*.md")):
        bad = [line for line in md.read_text().splitlines() if absolute.search(line)]
        assert not bad, f"{md.name} prints absolute paths: {bad[:3]}"


def test_parse_percent_cells():
    text = "\n".join([
        "# ---", "# jupyter:", "#   jupytext: {}", "# ---", "",
        "# %% [markdown]", "# # Title", "#", "# Some $x^2$ prose.", "",
        "# %%", "x = 1", "", "# %% a titled code cell", "print(x)", "",
        "# %% [md]", "# more", "# %%", "", ""])
    cells = render.parse(text)
    assert [(c.kind, c.source) for c in cells] == [
        ("markdown", "# Title\n\nSome $x^2$ prose."), ("code", "x = 1"), ("code", "print(x)"),
        ("markdown", "more")]


def test_render_writes_markdown_with_output_and_figure_links(tmp_path, monkeypatch):
    monkeypatch.setenv("MINIVIT_OUT", "unused")          # restored after the test
    monkeypatch.setenv("MPLBACKEND", "Agg")
    script = tmp_path / "07_demo.py"
    script.write_text("\n".join([
        "# %% [markdown]", "# # Demo", "# %%", "import os", "from pathlib import Path",
        "OUT = Path(os.environ['MINIVIT_OUT'])", "value = 6 * 7", "print('value', value)",
        "# %% [markdown]", "# A figure:", "# %%",
        "(OUT / 'fig.png').write_bytes(b'not really a png')", "print('same namespace:', value)",
        ""]))
    rendered = tmp_path / "rendered"
    (rendered / "07_demo").mkdir(parents=True)
    (rendered / "07_demo" / "stale.png").write_bytes(b"old")
    md_path = render.render(script, rendered=rendered, echo=False)
    md = md_path.read_text()
    assert md_path == rendered / "07_demo.md"
    assert "# Demo" in md and "```python\nimport os" in md
    assert "```text\nvalue 42\n```" in md and "same namespace: 42" in md
    assert "![fig](07_demo/fig.png)" in md and "[`07_demo.py`](../07_demo.py)" in md
    assert md.index("A figure:") < md.index("![fig]")
    assert not (rendered / "07_demo" / "stale.png").exists()    # old figures are removed


def test_render_stops_on_an_error(tmp_path, monkeypatch):
    monkeypatch.setenv("MINIVIT_OUT", "unused")
    script = tmp_path / "08_broken.py"
    script.write_text("# %%\nprint('before')\n# %%\nraise RuntimeError('boom')\n")
    with pytest.raises(SystemExit, match="08_broken.py failed in cell 2"):
        render.render(script, rendered=tmp_path / "rendered", echo=False)
    assert not (tmp_path / "rendered" / "08_broken.md").exists()
