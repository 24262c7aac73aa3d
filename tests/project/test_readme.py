"""README.md is a short product page: at most 250 lines and 6 dates, its links lead somewhere,
and its Python example runs as written."""

import re
import runpy
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()


def sections(text):
    """{heading line: body} of the level-2 sections."""
    parts = re.split(r"^(## .*)$", text, flags=re.MULTILINE)
    return dict(zip(parts[1::2], parts[2::2]))


def test_readme_is_short():
    assert len(README.splitlines()) <= 250
    assert len(re.findall(r"\b20\d\d-\d\d-\d\d\b", README)) <= 6


def test_readme_links_lead_to_files():
    for heading, body in sections(README).items():
        for target in re.findall(r"\]\(([^)#]+)\)", body):
            if "://" not in target:
                assert (ROOT / target).exists(), f"{heading}: {target}"


def test_readme_python_example_runs(tmp_path, monkeypatch):
    pytest.importorskip("safetensors", reason="the example saves a .safetensors file (.[io])")
    example = re.findall(r"```python\n(.*?)```", README, flags=re.DOTALL)[0]   # the first
    script = tmp_path / "readme_example.py"
    script.write_text(example)
    monkeypatch.chdir(tmp_path)                     # it writes vit.safetensors
    runpy.run_path(str(script))
    assert (tmp_path / "vit.safetensors").is_file()
