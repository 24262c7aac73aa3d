"""How to install what a feature needs, said the way minivit itself was installed.

    install_hint("viz") -> 'pip install "minivit[viz]"'     (installed from a wheel or PyPI)
                        -> 'pip install -e ".[viz]"'        (a source checkout: installed with
                                                             pip install -e, or on PYTHONPATH)

No imports from minivit: every layer may call it (the backend too).
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path

PACKAGE_INIT = Path(__file__).with_name("__init__.py")


def from_checkout() -> bool:
    """True unless the minivit being run is the copy an installer (pip) put into site-packages:
    an editable install, a checkout on PYTHONPATH, or a source tree with a stray egg-info
    (which has no INSTALLER file) runs from the source tree."""
    try:
        dist = distribution("minivit")
        installed = dist.locate_file("minivit/__init__.py")
        by_installer = dist.read_text("INSTALLER") is not None
        return not (by_installer and Path(str(installed)).resolve() == PACKAGE_INIT.resolve())
    except (PackageNotFoundError, OSError):
        return True


def install_hint(extra: str | None = None) -> str:
    """The pip command that installs minivit with ``extra`` (None: minivit and its dependencies)."""
    if extra is None:
        return "pip install -e ." if from_checkout() else "pip install minivit"
    return f'pip install -e ".[{extra}]"' if from_checkout() else f'pip install "minivit[{extra}]"'


__all__ = ["from_checkout", "install_hint"]
