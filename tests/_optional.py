"""Skip markers for optional frameworks (xarray's ``_importorskip`` pattern)."""

from __future__ import annotations

import importlib

import pytest


def _has(module: str) -> bool:
    try:
        importlib.import_module(module)
    except Exception:  # a broken install counts as absent
        return False
    return True


has_torch = _has("torch")
has_onnx = _has("onnx")
has_sklearn = _has("sklearn")
has_keras = _has("keras")
has_nir = _has("nir")
has_matplotlib = _has("matplotlib")
has_pynwb = _has("pynwb")
has_snntorch = _has("snntorch")

requires_torch = pytest.mark.skipif(not has_torch, reason='needs torch: pip install "spikebridge[torch]"')
requires_onnx = pytest.mark.skipif(not (has_onnx and has_torch), reason="needs onnx and torch")
requires_sklearn = pytest.mark.skipif(not has_sklearn, reason='needs scikit-learn: pip install "spikebridge[sklearn]"')
requires_keras = pytest.mark.skipif(not (has_keras and has_torch), reason="needs keras (torch backend) to write files")
requires_nir = pytest.mark.skipif(not has_nir, reason='needs nir: pip install "spikebridge[nir]"')
requires_matplotlib = pytest.mark.skipif(not has_matplotlib, reason='needs matplotlib: pip install "spikebridge[plot]"')
requires_pynwb = pytest.mark.skipif(not has_pynwb, reason='needs pynwb: pip install "spikebridge[nwb]"')
requires_snntorch = pytest.mark.skipif(not has_snntorch, reason="needs snntorch")
