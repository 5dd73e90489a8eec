"""The documentation builds strictly (no warning) and the README's links point at files that exist."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_readme_relative_links_exist():
    text = (ROOT / "README.md").read_text()
    targets = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text)
    local = [t for t in targets if "://" not in t]
    assert local, "README links to no file"
    missing = [t for t in local if not (ROOT / t).exists()]
    assert not missing, f"README links to missing files: {missing}"


def test_mkdocs_build_strict(tmp_path):
    """`mkdocs build --strict` (the `docs` extra): guide pages, results and the API reference from the docstrings."""
    pytest.importorskip("mkdocs")
    pytest.importorskip("mkdocstrings_handlers.python")
    site = tmp_path / "site"
    out = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(ROOT / "mkdocs.yml"), "-d", str(site)],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert out.returncode == 0, out.stderr[-4000:]
    warnings = [line for line in out.stderr.splitlines() if "WARNING" in line]
    assert not warnings, warnings
    # the reference really comes from the docstrings: simulate's parameters are rendered
    run_page = (site / "api" / "run" / "index.html").read_text()
    assert 'id="spikebridge.run.simulate.simulate"' in run_page
    assert "n_steps" in (site / "api" / "config" / "index.html").read_text()
