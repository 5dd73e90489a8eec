"""Weight recordings in the store and the learning report (strength, reciprocity) before/after STDP."""

from __future__ import annotations

# brian2 is imported inside the tests: importing it while pytest collects patches pytest's doctest collector

import json

import h5py
import numpy as np
import pytest

from spikebridge.learning.weights import reciprocity, weight_changes
from spikebridge.engines.brian2.api import to_brian2
from spikebridge.engines.brian2.plasticity import STDPRule, add_stdp
from spikebridge.cli import main
from spikebridge.config import SimulationConfig
from spikebridge.snn.network import Population, Projection, SpikingNetwork
from spikebridge.errors import StoreFormatError
from spikebridge.learning.stdp import write_weight_history
from spikebridge.store.spikes import SpikeStore
from spikebridge.store.weights import read_weights, write_weights


def _sequence_store(path) -> None:
    """Four excitatory neurons, all-to-all recurrent STDP, driven in the order 0, 1, 2, 3 again and again."""
    import brian2

    brian2.prefs.codegen.target = "numpy"
    n = 4
    pops = [Population(name="input", n=n, model="input", role="input", sign="excitatory"),
            Population(name="E", n=n, model="if", role="output", reset="zero", sign="excitatory")]
    idx = np.arange(n)
    pre, post = np.repeat(idx, n), np.tile(idx, n)
    other = pre != post
    projs = [Projection(name="drive", pre="input", post="E", pre_index=idx, post_index=idx, weight=np.full(n, 1.0), delay=1e-3),
             Projection(name="EE", pre="E", post="E", pre_index=pre[other], post_index=post[other],
                        weight=np.full(int(other.sum()), 0.3), delay=1e-3, kind="recurrent")]
    snn = SpikingNetwork(pops, projs, input="input", output="E", encoding={"kind": "spikes"})
    steps = 400
    raster = np.zeros((1, steps, n))
    for k in range(0, steps - 20, 20):
        for i in range(n):
            raster[0, k + 3 * i, i] = 1  # neuron i fires 3 ms after neuron i - 1
    net = to_brian2(snn, raster, config=SimulationConfig(n_steps=steps, record=("E",)))
    plastic = add_stdp(net, "EE", STDPRule(a_plus=0.01, a_minus=-0.012, w_max=0.6))
    plastic.snapshot()
    net.run()
    plastic.snapshot()
    rec = net.spike_record()
    with SpikeStore(path, "w") as st:
        st.write_header(n_steps=steps, dt=1e-3, n_samples=1,
                        populations={p.name: {"n": p.n, "sign": p.sign, "role": p.role} for p in pops})
        st.append_batch(0, rec)
    write_weight_history(path, plastic, pre="E", post="E")


def test_sequence_learning_breaks_reciprocity(tmp_h5):
    _sequence_store(tmp_h5)
    with SpikeStore(tmp_h5) as st:
        h = read_weights(st)["EE"]
    before, after = h.matrix(0), h.matrix(-1)
    # forward synapses i -> i+1 (post row i+1, pre column i) grew, backward ones shrank
    assert after[1, 0] > before[1, 0] and after[0, 1] < before[0, 1]
    report = weight_changes(tmp_h5)
    (p,) = report.projections
    assert p.recurrent and p.excitatory and p.n_synapses == 12 and p.n_snapshots == 2
    assert p.weighted_reciprocity_before == pytest.approx(1.0)  # all weights equal: perfectly symmetric
    rec_after, wrec_after = reciprocity(after, p.strong)
    assert p.weighted_reciprocity_after == pytest.approx(wrec_after) and wrec_after < 0.8
    assert p.mean_after == pytest.approx(float(h.w[-1].mean()), rel=1e-6)
    assert "reciprocity" in report.to_text()


def test_cli_graph_and_compare_plots_on_a_store_with_weights(tmp_h5, tmp_path, capsys):
    _sequence_store(tmp_h5)
    assert main(["graph", str(tmp_h5), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["projections"][0]["name"] == "EE"
    assert data["projections"][0]["weighted_reciprocity_after"] < 0.8
    pytest.importorskip("matplotlib")
    assert main(["compare", str(tmp_h5), "--plots", str(tmp_path / "figs")]) == 0
    assert (tmp_path / "figs" / f"{tmp_h5.stem}_weights.png").is_file()


def test_old_store_without_weights_and_malformed_weights(tmp_h5):
    with SpikeStore(tmp_h5, "w") as st:
        st.write_header(n_steps=2, dt=1e-3)
    assert read_weights(SpikeStore(tmp_h5)) == {}
    assert weight_changes(tmp_h5).projections == []
    with SpikeStore(tmp_h5, "a") as st:
        write_weights(st, "p", pre="a", post="b", pre_index=[0, 1], post_index=[0, 0], times=[0.0, 1.0],
                      weights=[[0.1, 0.2], [0.3, 0.4]])
        with pytest.raises(ValueError):
            write_weights(st, "q", pre="a", post="b", pre_index=[0], post_index=[0], times=[0.0], weights=[[1.0, 2.0]])
    with SpikeStore(tmp_h5) as st:
        h = read_weights(st)["p"]
    np.testing.assert_allclose(h.matrix(-1), [[0.3, 0.4]], rtol=1e-6)
    with h5py.File(tmp_h5, "a") as f:
        del f["weights/p/t"]
    with SpikeStore(tmp_h5) as st, pytest.raises(StoreFormatError, match="weights/p"):
        read_weights(st)
