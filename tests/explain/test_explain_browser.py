"""The page of ``minivit explain`` in a real headless Chromium (Debian's ``chromium``, driven
by Playwright for Python): it opens from file:// without a single request, and what it shows
equals what NumPy computed.  Skipped where Playwright or the browser is missing; with
MINIVIT_REQUIRE_BROWSER=1 (CI) that is a failure instead."""

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from explain_pages import read_manifest
from support import make_cfg, write_tiny_cifar

from minivit.analysis import attention as analysis
from minivit.analysis.evaluation import load_trained
from minivit.backend import to_numpy
from minivit.cli import main
from minivit.data.batches import normalize
from minivit.data.images import read_image
from minivit.explain.backward_story import class_backward
from minivit.explain.manifest import decode_array
from minivit.models.vit import create_model
from minivit.training import train

pytestmark = pytest.mark.slow
Image = pytest.importorskip("PIL.Image", reason="reading images needs Pillow")
RUN = Path(__file__).resolve().parents[2] / "results" / "cifar-nano-hour-s0"
CHROMIUM = os.environ.get("MINIVIT_CHROMIUM", "/usr/bin/chromium")
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]
MAX_BYTES = 6_000_000


def _playwright_or_skip():
    why = None
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        why = "Playwright for Python is not installed (pip install playwright)"
        sync_playwright = None
    if why is None and not (Path(CHROMIUM).exists() or shutil.which(CHROMIUM)):
        why = f"no browser at {CHROMIUM} (apt-get install chromium)"
    if why is not None:
        if os.environ.get("MINIVIT_REQUIRE_BROWSER") == "1":
            pytest.fail(f"MINIVIT_REQUIRE_BROWSER=1 but {why}")
        pytest.skip(why)
    return sync_playwright


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """The committed cifar-nano run explained on a made-up 32x32 image."""
    _playwright_or_skip()                      # no page to build where it cannot be opened
    if not (RUN / "model.safetensors").is_file():
        pytest.skip(f"{RUN} has no model.safetensors")
    folder = tmp_path_factory.mktemp("explain")
    y, x = np.mgrid[0:32, 0:32]
    pixels = np.stack([(8 * x) % 256, (8 * y) % 256, ((x - 16) ** 2 + (y - 16) ** 2) % 256], -1)
    image = folder / "rings.png"
    Image.fromarray(pixels.astype(np.uint8)).save(image)
    page = folder / "rings.html"
    assert main(["explain", str(RUN), str(image), "--out", str(page)]) == 0
    model, _, info = load_trained(RUN)
    x = normalize(read_image(image, 32)[None], info["data"]["mean"], info["data"]["std"],
                  model.dtype)
    return {"page": page, "image": image, "model": model, "x": x}


@pytest.fixture(scope="module")
def browser():
    sync_playwright = _playwright_or_skip()
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


class Opened:
    """A fresh tab on the page: every request that is not the file itself is refused and
    recorded, and so is every console error and page error."""

    def __init__(self, browser, path):
        self.tab = browser.new_page(viewport={"width": 1400, "height": 1000})
        self.requests, self.errors = [], []
        self.tab.on("request", lambda r: self.requests.append(r.url))
        self.tab.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.tab.on("pageerror", lambda e: self.errors.append(str(e)))
        self.tab.route("**/*", lambda route: route.continue_()
                       if route.request.url.startswith("file://") else route.abort())
        self.tab.goto(path.as_uri())
        for _ in range(100):
            if self.tab.evaluate("!!(window.minivitExplain && window.minivitExplain.ready)"):
                break
            self.tab.wait_for_timeout(50)

    def js(self, expression):
        return self.tab.evaluate(expression)


@pytest.fixture
def page(browser, built):
    opened = Opened(browser, built["page"])
    yield opened
    opened.tab.close()


def forward(model, x):
    logits, attn = model.forward(x, return_attention=True, keep_cache=False)
    return to_numpy(logits)[0], [to_numpy(a) for a in attn]


def test_opens_from_file_with_no_request_and_no_error(page, built):
    assert page.js("window.minivitExplain.ready") is True
    assert page.requests == [built["page"].as_uri()]
    assert page.errors == []
    assert built["page"].stat().st_size < MAX_BYTES


def test_decoded_arrays_equal_numpy(page, built):
    logits, attn = forward(built["model"], built["x"])
    probs = page.js("window.minivitExplain.array('probs')")
    np.testing.assert_allclose(np.reshape(probs["data"], probs["shape"]), np.stack(attn)[:, 0],
                               atol=1e-7)
    np.testing.assert_allclose(page.js("window.minivitExplain.array('logits')")["data"], logits,
                               rtol=1e-6)
    scores = page.js("window.minivitExplain.array('scores')")       # float16
    scores = np.reshape(scores["data"], scores["shape"])
    e = np.exp(scores - scores.max(axis=-1, keepdims=True))
    np.testing.assert_allclose(e / e.sum(axis=-1, keepdims=True), np.stack(attn)[:, 0],
                               atol=5e-3)
    lens = np.reshape(page.js("window.minivitExplain.array('lens_pooled')")["data"], (6, 10))
    np.testing.assert_allclose(lens[-1], logits, rtol=1e-5, atol=1e-6)
    patch = np.reshape(page.js("window.minivitExplain.array('patch_tokens')")["data"], (64, 128))
    expected = to_numpy(built["model"].embed_patches(built["x"])[0])[0]
    np.testing.assert_allclose(patch, expected, rtol=2e-3, atol=2e-3 * np.abs(expected).max())


@pytest.mark.parametrize("row, col", [(0, 0), (3, 5), (7, 2)])
def test_hover_selects_the_patch_and_maps_peak_where_numpy_does(page, built, row, col):
    box = page.tab.locator("#image-canvas").bounding_box()
    page.tab.mouse.move(box["x"] + (col + 0.5) * box["width"] / 8,
                        box["y"] + (row + 0.5) * box["height"] / 8)
    token = 1 + row * 8 + col
    assert page.js("window.minivitExplain.state.token") == token
    _, attn = forward(built["model"], built["x"])
    expected = [[int(np.argmax(a[0, h, token, 1:])) for h in range(4)] for a in attn]
    assert page.js("window.minivitExplain.attentionArgmax()") == expected
    page.tab.click("#dir-to")
    expected = [[int(np.argmax(a[0, h, 1:, token])) for h in range(4)] for a in attn]
    assert page.js("window.minivitExplain.attentionArgmax()") == expected


@pytest.mark.parametrize("discard", [0.0, 0.5])
@pytest.mark.parametrize("fusion", ["mean", "max"])
def test_rollout_equals_analysis(page, built, discard, fusion):
    _, attn = forward(built["model"], built["x"])
    for depth in (6, 3):
        expected = analysis.attention_rollout(attn[:depth], discard, fusion)[0]
        got = page.js(f"Array.from(window.minivitExplain.rollout({depth}, {discard}, '{fusion}'))")
        np.testing.assert_allclose(np.reshape(got, expected.shape), expected, atol=1e-3)
    pooled = analysis.pooled_attention_map(
        analysis.attention_rollout(attn, discard, fusion), 8, "mean")[0].ravel()
    got = page.js(f"window.minivitExplain.rolloutMap(6, {discard}, '{fusion}', 'pooled')")
    np.testing.assert_allclose(got, pooled, atol=1e-3)


def test_top_class_is_predicts_and_the_target_moves_the_pixel_gradient(page, built, capsys):
    assert main(["predict", str(RUN), str(built["image"]), "--top", "1"]) == 0
    top_name = capsys.readouterr().out.splitlines()[1].split()[1]
    names = page.js("window.minivitExplain.manifest.class_names")
    shown = page.js("window.minivitExplain.shownTopClass()")
    assert names[shown] == top_name
    before = np.array(page.js("window.minivitExplain.pixelGradient()"))
    other = (shown + 3) % 10
    page.tab.click(f"#prediction .bar-row[data-class='{other}']")
    after = np.array(page.js("window.minivitExplain.pixelGradient()"))
    assert not np.allclose(before, after)
    expected = class_backward(built["model"], built["x"], other)["d_image"].ravel()
    np.testing.assert_allclose(after, expected, rtol=1e-5, atol=1e-6 * np.abs(expected).max())
    page.tab.select_option("#target-class", str(shown))
    assert page.js("window.minivitExplain.state.target") == shown


def test_stepping_reaches_the_pixels_in_depth_plus_two_steps(page):
    page.tab.click("#step-reset")
    assert page.tab.locator("#pixel-panel").is_hidden()
    for _ in range(6 + 1):
        page.tab.click("#step-next")
    assert page.tab.locator("#pixel-panel").is_hidden()
    page.tab.click("#step-next")
    assert page.js("window.minivitExplain.state.step") == 6 + 2
    assert page.tab.locator("#pixel-panel").is_visible()
    assert page.tab.locator("#pixel-panel canvas").count() == 5


def test_keyboard_moves_the_selection(page):
    page.tab.focus("#image-canvas")
    page.js("window.minivitExplain.selectToken(1 + 2 * 8 + 2)")
    page.tab.keyboard.press("ArrowRight")
    assert page.js("window.minivitExplain.state.token") == 1 + 2 * 8 + 3
    page.tab.keyboard.press("ArrowDown")
    assert page.js("window.minivitExplain.state.token") == 1 + 3 * 8 + 3
    page.tab.keyboard.press("Home")
    assert page.js("window.minivitExplain.state.token") == 0
    assert "class token" in page.tab.locator("#token-info h3").inner_text()


def test_untrained_toggle_shows_the_untrained_model(page, built):
    untrained = create_model(built["model"].config, seed=0)
    logits, _ = forward(untrained, built["x"])
    page.tab.click("#model-untrained")
    assert page.js("window.minivitExplain.state.model") == 1
    np.testing.assert_allclose(page.js("window.minivitExplain.array('logits')")["data"], logits,
                               rtol=1e-5, atol=1e-6)
    assert page.errors == []


@pytest.fixture(scope="module")
def film_page(tmp_path_factory):
    """A tiny 3-epoch run with 2 snapshots, explained: a page with an epoch slider."""
    _playwright_or_skip()
    folder = tmp_path_factory.mktemp("film")
    train(make_cfg(write_tiny_cifar(folder / "data"), folder / "run", epochs=3, snapshots=2))
    pixels = np.random.default_rng(1).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(folder / "img.png")
    page = folder / "film.html"
    assert main(["explain", str(folder / "run"), str(folder / "img.png"), "--out", str(page)]) == 0
    return page


def test_the_epoch_slider_replays_attention_and_prediction(browser, film_page):
    opened = Opened(browser, film_page)
    frames = read_manifest(film_page)["film"]["frames"]
    assert opened.tab.locator("#film").is_visible()
    assert "final model (epoch 3)" in opened.tab.locator("#film-label").inner_text()
    token = 1 + 3 * 8 + 4
    opened.js(f"window.minivitExplain.selectToken({token})")
    for i, frame in enumerate(frames):
        opened.tab.eval_on_selector(
            "#film-epoch", f"e => {{ e.value = {i}; e.dispatchEvent(new Event('input')); }}")
        assert opened.js("window.minivitExplain.state.frame") == i
        assert f"epoch {frame['epoch']} of 3" in opened.tab.locator("#film-label").inner_text()
        probs = decode_array(frame["images"][0]["probs"]).astype(np.float32)
        expected = [[int(np.argmax(probs[layer, h, token, 1:])) for h in range(2)]
                    for layer in range(len(probs))]
        assert opened.js("window.minivitExplain.attentionArgmax()") == expected
        logits = decode_array(frame["images"][0]["logits"])
        assert opened.js("window.minivitExplain.shownTopClass()") == int(np.argmax(logits))
        rollout = analysis.attention_rollout(list(probs[:, None]), 0.0, "mean")[0]
        got = np.reshape(opened.js("Array.from(window.minivitExplain.rollout(1, 0, 'mean'))"),
                         rollout.shape)
        np.testing.assert_allclose(got, rollout, atol=1e-3)
    assert opened.tab.locator("#film-note").is_visible()
    assert opened.errors == [] and opened.requests == [film_page.as_uri()]
    opened.tab.close()
