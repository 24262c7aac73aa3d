"""Write the page: ``static/page.html`` with the CSS, the JavaScript and the manifest inlined,
one self-contained file (no request leaves it), written atomically."""

from __future__ import annotations

import html
from importlib import resources
from pathlib import Path

from minivit.explain.manifest import manifest_json
from minivit.io.files import atomic_write_bytes, naming_write_errors

# the page's script, in this order: the manifest and drawing, then the panels
SCRIPTS = ("explain.js", "explain_forward.js", "explain_backward.js")


def static_text(name: str) -> str:
    """A file of ``minivit/explain/static`` (package data)."""
    return resources.files("minivit.explain").joinpath("static", name).read_text("utf-8")


def render_page(manifest: dict) -> str:
    """The HTML text of the page for ``manifest``."""
    page = static_text("page.html")
    parts = {"{{TITLE}}": html.escape(manifest["title"]),
             "{{CSS}}": static_text("explain.css"),
             "{{JS}}": "\n".join(static_text(name) for name in SCRIPTS),
             "{{DATA}}": manifest_json(manifest)}
    for key, value in parts.items():        # the data last: nothing is replaced inside it
        page = page.replace(key, value)
    return page


def write_page(path, manifest: dict) -> Path:
    """Write the page to ``path`` (all or nothing); returns the path."""
    path = Path(path)
    with naming_write_errors(path):
        atomic_write_bytes(path, render_page(manifest).encode("utf-8"))
    return path


__all__ = ["render_page", "static_text", "write_page"]
