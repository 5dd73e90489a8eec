"""Operation counts and energy, checked by hand on a tiny network."""

from __future__ import annotations

import numpy as np
import pytest

from spikebridge.analysis.ops import EnergyModel, operations
from spikebridge.snn.network import Population, Projection, SpikingNetwork
from spikebridge.errors import ValidationError
from spikebridge.ir import AnnGraph, Dense, Input, ReLU
from spikebridge.store.record import SpikeRecord
from spikebridge.store.spikes import SpikeStore


def _net(encoding: str) -> SpikingNetwork:
    graph = AnnGraph(
        [Input(name="x", shape=(2,)), Dense(name="fc1", weight=np.ones((3, 2))), ReLU(name="relu1"), Dense(name="fc2", weight=np.ones((2, 3)))]
    )  # MACs: 6 + 6 = 12
    pops = [
        Population(name="input", n=2, model="input", role="input"),
        Population(name="h", n=3, model="if", layer="relu1"),
        Population(name="o", n=2, model="if", role="output", layer="fc2"),
    ]
    projs = [
        Projection.from_dense(np.ones((3, 2)), name="p1", pre="input", post="h", layer="relu1"),  # relu1 -> walks back to fc1
        Projection(name="p2", pre="h", post="o", pre_index=[0, 0, 1, 2], post_index=[0, 1, 0, 1], weight=[1.0] * 4, layer="fc2"),
        Projection(name="lat", pre="o", post="o", pre_index=[0, 1], post_index=[1, 0], weight=[-1.0, -1.0], kind="lateral"),
    ]
    return SpikingNetwork(pops, projs, input="input", output="o", encoding={"kind": encoding}, ann=graph)


def _record(with_input: bool) -> SpikeRecord:
    counts = {"h": np.array([[4, 0, 2], [1, 1, 1]]), "o": np.array([[3, 1], [0, 2]])}
    if with_input:
        counts["input"] = np.array([[1, 2], [0, 0]])
    return SpikeRecord(
        n_samples=2, n_steps=10, dt=1e-3, output_counts_t=np.zeros((2, 10, 2), np.int32),
        output_potential_t=np.zeros((2, 10, 2), np.float32), counts=counts,
    )


def test_current_input_counts_hand_checked():
    r = operations(_net("current"), _record(False))
    by = {row.name: row for row in r.layers}
    # h out-degrees [2, 1, 1]: sample 0 -> 4*2 + 0 + 2*1 = 10, sample 1 -> 2 + 1 + 1 = 4; mean 7
    assert by["fc2"].snn_synops == pytest.approx(7.0) and by["fc2"].ann_macs == 6
    # lateral o -> o, out-degrees [1, 1]: sample 0 -> 4, sample 1 -> 2; mean 3; no ANN counterpart
    assert by["lat"].snn_synops == pytest.approx(3.0) and by["lat"].ann_macs == 0
    # the analogue input current W x: 6 MACs once per inference, no SynOps
    assert by["fc1"].snn_macs == 6.0 and by["fc1"].snn_synops == 0.0 and by["fc1"].ann_macs == 6
    assert r.ann_macs == 12 and r.snn_synops == pytest.approx(10.0) and r.snn_macs == 6.0
    assert r.synops_per_mac == pytest.approx(10 / 12)
    assert r.spikes_per_neuron == {"h": pytest.approx(9 / 6), "o": pytest.approx(6 / 4)}
    assert r.spikes_per_inference == pytest.approx(7.5) and r.mean_spikes_per_neuron == pytest.approx(1.5)
    assert r.ann_energy_j == pytest.approx(12 * 4.6e-12)
    assert r.snn_energy_j == pytest.approx(10 * 0.9e-12 + 6 * 4.6e-12)
    assert r.energy_ratio == pytest.approx((9.0 + 27.6) / 55.2)
    assert "Horowitz 2014" in r.to_dict()["energy_source"]


def test_spiking_input_counts_synops_and_custom_energy(tmp_h5):
    rec = _record(True)
    with SpikeStore(tmp_h5, "w") as st:
        st.append_batch(0, rec)
    r = operations(_net("poisson"), tmp_h5, energy=EnergyModel(e_mac=1.0, e_ac=0.5))
    # input out-degrees [3, 3]: sample 0 -> 9, sample 1 -> 0; mean 4.5
    assert r.layers[0].name == "fc1" and r.layers[0].snn_synops == pytest.approx(4.5) and r.snn_macs == 0.0
    assert r.snn_synops == pytest.approx(14.5)
    assert r.snn_energy_j == pytest.approx(7.25) and r.ann_energy_j == pytest.approx(12.0)


def test_missing_counts_and_bad_constants_are_clear():
    with pytest.raises(ValidationError, match="'p1' leaves population 'input', which has no stored spike counts"):
        operations(_net("poisson"), _record(False))
    with pytest.raises(ValidationError, match="EnergyModel.e_ac"):
        EnergyModel(e_ac=-1.0)
