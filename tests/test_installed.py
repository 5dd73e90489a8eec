"""The package users install holds every module and data file of the source tree (issue 23).

CI (``.ci/run``) builds the wheel, installs it into a fresh virtual environment
and runs the suite from a copy of ``tests/`` elsewhere, with
``SPIKEBRIDGE_SOURCE_TREE`` pointing at the checkout's ``spikebridge/``: there
these tests compare the installed package with the source tree and check that
the checkout is not what gets imported.  Run from a checkout, they compare
the imported package with its own source folder (trivially equal) and check
the wheel's file list in ``pyproject.toml`` terms.
"""

from __future__ import annotations

import os
import pkgutil
from importlib import metadata
from pathlib import Path

import pytest

import spikebridge

HERE = Path(__file__).resolve().parents[1]


def _source_tree() -> Path | None:
    env = os.environ.get("SPIKEBRIDGE_SOURCE_TREE")
    if env:
        return Path(env)
    local = HERE / "spikebridge"
    return local if local.is_dir() else None


def _modules_in(root: Path, prefix: str = "spikebridge") -> set[str]:
    """Dotted names of the .py modules under ``root`` (following the models/ and datasets/ links)."""
    names: set[str] = set()
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        dirnames[:] = [d for d in dirnames if d != "__pycache__" and not d.startswith(".")]
        rel = Path(dirpath).relative_to(root)
        if rel.parts and not (Path(dirpath) / "__init__.py").is_file():
            continue  # not a package: not importable as spikebridge.<...>
        for f in filenames:
            if f.endswith(".py"):
                parts = [prefix, *rel.parts] + ([] if f == "__init__.py" else [f[:-3]])
                names.add(".".join(parts))
    return names


def _installed_modules() -> set[str]:
    found = {"spikebridge"}
    for info in pkgutil.walk_packages(spikebridge.__path__, "spikebridge."):
        found.add(info.name)
    return found


def test_installed_package_has_every_source_module() -> None:
    src = _source_tree()
    if src is None:
        pytest.skip("no source tree beside the tests")
    missing = sorted(_modules_in(src) - _installed_modules())
    assert not missing, f"modules of the source tree missing from the imported package {spikebridge.__file__}: {missing}"


def test_installed_package_has_its_data_files() -> None:
    # what the code opens at run time: the shipped models and the digits data set
    from spikebridge.datasets import load_dataset
    from spikebridge.models import model_path

    for name in ("digits_mlp", "digits_cnn", "mnist_lenet"):
        assert model_path(name).is_file(), name
    x, y = load_dataset("digits:test")
    assert len(x) == len(y) > 0
    pkg = Path(spikebridge.__file__).parent
    assert (pkg / "py.typed").is_file()


def test_ci_imports_the_wheel_not_the_checkout() -> None:
    src = os.environ.get("SPIKEBRIDGE_SOURCE_TREE")
    if not src:
        pytest.skip("only in CI (.ci/run sets SPIKEBRIDGE_SOURCE_TREE)")
    imported = Path(spikebridge.__file__).resolve().parent
    assert not imported.is_relative_to(Path(src).resolve().parent), imported
    # the distribution's own file list (RECORD) names every module of the source tree
    files = metadata.files("spikebridge") or []
    recorded = {".".join(Path(str(f)).with_suffix("").parts).removesuffix(".__init__") for f in files if str(f).endswith(".py")}
    missing = sorted(m for m in _modules_in(Path(src)) if m not in recorded)
    assert not missing, f"the installed distribution's RECORD lacks {missing}"


def test_pyproject_ships_every_package() -> None:
    # the same check without building: setuptools' own discovery on pyproject.toml, from the checkout
    pyproject = HERE / "pyproject.toml"
    src = HERE / "spikebridge"
    if not (pyproject.is_file() and src.is_dir()):
        pytest.skip("no checkout beside the tests")
    import tomllib

    cfg = tomllib.loads(pyproject.read_text())["tool"].get("setuptools", {})
    listed = cfg.get("packages")
    if not isinstance(listed, list):
        return  # found automatically (packages.find): the CI wheel test covers it
    packages = {".".join(["spikebridge", *p.relative_to(src).parts]) if p != src else "spikebridge"
                for p in [src, *[d.parent for d in src.rglob("__init__.py")]] if "__pycache__" not in p.parts}
    missing = sorted(packages - set(listed))
    assert not missing, f"pyproject.toml [tool.setuptools] packages leaves out {missing}"
