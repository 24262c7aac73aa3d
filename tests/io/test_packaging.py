"""The package declares itself: one version (``--version``), the license, py.typed, POSIX, its
core dependencies; install hints that fit how minivit was installed."""

import subprocess
import sys
from importlib.metadata import PackageNotFoundError
from pathlib import Path

import pytest

import minivit
from minivit import cli, install

tomllib = pytest.importorskip("tomllib", reason="tomllib is in Python 3.11 and later")
ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def test_version_option(capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["--version"])
    assert e.value.code == 0
    assert capsys.readouterr().out == f"minivit {minivit.__version__}\n"


def test_python_m_version():
    out = subprocess.run([sys.executable, "-m", "minivit", "--version"], cwd=ROOT,
                         capture_output=True, text=True, check=True).stdout
    assert out.startswith("minivit ") and out.strip() == f"minivit {minivit.__version__}"


def test_version_is_pyprojects_or_unknown():
    assert minivit.__version__ in (PYPROJECT["version"], "0+unknown")


def test_license_and_metadata():
    assert PYPROJECT["license"] == "MIT" and PYPROJECT["license-files"] == ["LICENSE"]
    text = (ROOT / "LICENSE").read_text()
    assert text.startswith("MIT License") and "Copyright (c) 2026 the minivit authors" in text
    assert "Operating System :: POSIX" in PYPROJECT["classifiers"]
    assert any(d.startswith("safetensors") for d in PYPROJECT["dependencies"])
    assert (Path(minivit.__file__).parent / "py.typed").is_file()
    package_data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert "py.typed" in package_data["package-data"]["minivit"]
    for extra in ("viz", "train"):
        assert "pillow>=9.1" in PYPROJECT["optional-dependencies"][extra]


class FakeDistribution:
    def __init__(self, init_file, installer="pip"):
        self.init_file, self.installer = init_file, installer

    def locate_file(self, name):
        return self.init_file

    def read_text(self, name):
        return self.installer if name == "INSTALLER" else None


def test_install_hint_for_a_checkout(monkeypatch):
    def missing(name):
        raise PackageNotFoundError(name)
    monkeypatch.setattr(install, "distribution", missing)
    assert install.install_hint("viz") == 'pip install -e ".[viz]"'
    assert install.install_hint() == "pip install -e ."
    # installed, but with pip install -e: the package runs from the source tree
    monkeypatch.setattr(install, "distribution",
                        lambda name: FakeDistribution("/site-packages/minivit/__init__.py"))
    assert install.install_hint("mpi") == 'pip install -e ".[mpi]"'
    # a source tree with an egg-info left by a build: no INSTALLER
    monkeypatch.setattr(install, "distribution",
                        lambda name: FakeDistribution(str(install.PACKAGE_INIT), None))
    assert install.install_hint("viz") == 'pip install -e ".[viz]"'


def test_install_hint_for_an_installed_wheel(monkeypatch):
    monkeypatch.setattr(install, "distribution",
                        lambda name: FakeDistribution(str(install.PACKAGE_INIT)))
    assert install.install_hint("viz") == 'pip install "minivit[viz]"'
    assert install.install_hint() == "pip install minivit"
