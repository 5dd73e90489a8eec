"""Calibration of QCFS-trained networks aims at the quantised network as trained (issue 22)."""

from __future__ import annotations

import numpy as np

from spikebridge.conversion.calibrate import quantised_activations
from spikebridge.ir import AnnGraph
from spikebridge.ir.layers import Dense, Input, ReLU


def _graph(levels: dict[str, int] | None) -> AnnGraph:
    layers = [Input(name="x", shape=(2,)), Dense(name="fc", weight=[[1.0, 0.0], [0.0, 1.0]], bias=[0.0, 0.0]),
              ReLU(name="q", max_value=2.0), Dense(name="out", weight=[[1.0, -1.0]], bias=[0.0])]
    g = AnnGraph(layers)
    return g if levels is None else AnnGraph(g.layers, g.edges, metadata={"qcfs_levels": levels})


def test_quantised_activations_follow_the_qcfs_levels() -> None:
    # L = 4, λ = 2: h(x) = 0.5 · clip(floor(2 x + 1/2), 0, 4)
    x = np.array([[0.2, 0.3], [0.74, 0.76], [1.9, -1.0], [5.0, 1.26]])
    acts = quantised_activations(_graph({"q": 4}), x)
    assert acts is not None
    np.testing.assert_allclose(acts["q"], [[0.0, 0.5], [0.5, 1.0], [2.0, 0.0], [2.0, 1.5]])
    np.testing.assert_allclose(acts["out"], [[-0.5], [-0.5], [2.0], [0.5]])


def test_plain_clipped_graph_has_no_quantised_activations() -> None:
    assert quantised_activations(_graph(None), np.zeros((1, 2))) is None
