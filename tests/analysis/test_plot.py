"""Figures render at the requested size and are not blank."""

from __future__ import annotations

import numpy as np
import pytest

from tests._optional import requires_matplotlib
from tests.store.test_spikes import make_record

pytestmark = requires_matplotlib


def _png(path, size):
    import matplotlib.image as mpimg

    assert path.exists() and path.suffix == ".png"
    img = mpimg.imread(path)
    assert img.shape[:2] == size[::-1]  # (height, width)
    assert float(np.var(img[..., :3])) > 1e-4  # drawn, not blank
    return img


def test_raster(tmp_path):
    from spikebridge.analysis.plot import plot_raster

    rec = make_record(3, n_steps=50, n_spikes=400, rng=np.random.default_rng(2))
    out = plot_raster(rec.spikes, tmp_path / "r.png", samples=[0, 2], n_steps=50, figsize=(6, 4), dpi=50)
    _png(out, (300, 200))


def test_accuracy_with_ann_line(tmp_path):
    from spikebridge.analysis.plot import plot_accuracy

    acc = 1 - np.exp(-np.arange(1, 65) / 10)
    _png(plot_accuracy(acc, tmp_path / "a.png", dt=1e-3, ann_accuracy=0.97, figsize=(5, 3), dpi=80), (400, 240))
    svg = plot_accuracy(acc, tmp_path / "a.svg", dt=1e-3)
    assert svg.read_text().lstrip().startswith("<?xml") and "<svg" in svg.read_text()


def test_rate_vs_activation_and_histograms(tmp_path):
    from spikebridge.analysis.plot import plot_rate_histograms, plot_rate_vs_activation

    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1.2, (50, 20))
    layers = {"relu1": (x, np.minimum(x, 1) + rng.normal(0, 0.05, x.shape)), "fc2": (x[:, :5], x[:, :5] * 0.8)}
    _png(plot_rate_vs_activation(layers, tmp_path / "s.png", figsize=(6, 3), dpi=60), (360, 180))
    counts = {"h": rng.poisson(5, (10, 30)), "o": rng.poisson(20, (10, 4)), "i": rng.poisson(1, (10, 6)), "z": np.zeros((10, 3))}
    _png(plot_rate_histograms(counts, tmp_path / "h.png", n_steps=100, dt=1e-3, figsize=(6, 4), dpi=50), (300, 200))


def test_plot_all_from_store(tmp_path):
    from spikebridge.analysis.plot import plot_all, plot_report
    from tests.analysis.test_compare import _classification_store

    store = _classification_store(tmp_path / "c.h5")
    figs = plot_all(store, tmp_path / "figs", prefix="m_", raster_samples=2, dpi=50)
    assert set(figs) == {"accuracy", "raster", "scatter", "rates"}
    assert figs["accuracy"].name == "m_accuracy.png"
    for p in figs.values():
        import matplotlib.image as mpimg

        assert float(np.var(mpimg.imread(p)[..., :3])) > 1e-4
    assert sorted(p.name for p in plot_report(store, tmp_path / "r")) == [
        "c_accuracy.png", "c_raster.png", "c_rates.png", "c_scatter.png"
    ]


def test_bad_suffix_and_empty_inputs_are_clear(tmp_path):
    from spikebridge.analysis.plot import plot_accuracy, plot_raster
    from spikebridge.errors import ValidationError

    with pytest.raises(ValidationError, match=r"\.png, \.svg or \.pdf"):
        plot_accuracy([0.5], tmp_path / "a.jpg", dt=1e-3)
    with pytest.raises(ValidationError, match="record=\\('all',\\)"):
        plot_raster({}, tmp_path / "r.png")
