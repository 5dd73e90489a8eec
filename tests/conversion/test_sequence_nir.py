"""NIR export of a converted RNN keeps the loop (a cyclic NIR graph through a Delay node)."""

from __future__ import annotations

import numpy as np
import pytest

from .test_sequence import _case


def test_nir_export_keeps_the_cycle_and_says_what_it_drops():
    pytest.importorskip("nir")
    from spikebridge.export.nir import export_nir

    g, snn, _ = _case(False, False, k=8)
    with pytest.warns(UserWarning, match="window floor of a sequence network"):
        graph = export_nir(snn)
    edges = set(graph.edges)
    # rnn -> its recurrent Linear -> a Delay of K - 1 further steps -> rnn: the loop of one window
    assert {("rnn", "rnn_recurrent"), ("rnn_recurrent", "rnn_recurrent_delay"), ("rnn_recurrent_delay", "rnn")} <= edges
    np.testing.assert_allclose(graph.nodes["rnn_recurrent_delay"].delay, 7 * snn.dt)
    n = snn.populations["rnn"].n
    np.testing.assert_allclose(graph.nodes["rnn_recurrent"].weight, snn.projections["rnn_recurrent"].to_dense(n, n))
    meta = graph.nodes["rnn"].metadata
    assert meta["spikebridge_window"] == pytest.approx(8 * snn.dt) and meta["spikebridge_window_floor"] == 0.0
