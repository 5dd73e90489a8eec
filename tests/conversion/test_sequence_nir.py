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


def _round_trip(snn):
    import warnings

    from spikebridge.export.nir import export_nir
    from spikebridge.importers.from_nir import load_nir

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the ExportWarnings are tested above
        graph = export_nir(snn)
    return graph, load_nir(graph, dt=snn.dt)


@pytest.mark.parametrize("seqs,stacked,dale,m", [(False, False, "none", 1), (True, True, "none", 1), (False, True, "relay", 1),
                                                  (True, True, "none", 2)])
def test_nir_round_trip_gives_identical_spikes(tmp_path, seqs, stacked, dale, m):
    pytest.importorskip("nir")
    import nir

    from spikebridge.engines.reference import simulate_reference
    from spikebridge.export.nir import export_nir
    from spikebridge.importers.from_nir import load_nir

    _, snn, x = _case(seqs, stacked, dale, m=m)
    with pytest.warns(UserWarning):
        export_nir(snn, tmp_path / "rnn.nir")
    back = load_nir(tmp_path / "rnn.nir", dt=snn.dt)  # through the file: metadata types as nir.read gives them
    # what NIR cannot say came back from the spikebridge_* metadata
    assert back.min_delay_steps == 0
    assert back.populations["rnn"].reset == "subtract"
    np.testing.assert_array_equal(back.populations["rnn"].v_init, snn.populations["rnn"].v_init)
    assert back.populations["rnn"].params["window"] == pytest.approx(8 * snn.dt)
    if m == 1:
        assert back.populations["rnn"].params["window_floor"] == 0.0
    else:  # several neurons per unit: the wrap, no floor
        assert back.populations["rnn"].params["window_wrap"] is True and "window_floor" not in back.populations["rnn"].params
    assert back.readout["window_steps"] == 8 and back.readout["windows"] == 6 and back.readout["per_element"] is seqs
    assert back.projections["rnn_recurrent"].delay == pytest.approx(8 * snn.dt)
    assert all(np.all(np.asarray(back.projections[p.name].delay) == 0) for p in snn.projections.values()
               if p.kind != "recurrent" and p.name in back.projections)
    assert isinstance(nir.read(tmp_path / "rnn.nir").nodes["rnn"], nir.IF)
    n = 6 * 8
    a = simulate_reference(snn, x, n, record=("all",))
    b = simulate_reference(back, x, n, record=("all",))
    assert sum(int(c.sum()) for c in a.counts.values()) > 50
    for pop in a.spikes:
        sa, sb = a.spikes[pop], b.spikes[pop]
        assert np.array_equal(sa.sample, sb.sample) and np.array_equal(sa.neuron, sb.neuron) and np.array_equal(sa.step, sb.step), pop
    np.testing.assert_array_equal(a.window_values(), b.window_values())


def test_nir_round_trip_of_a_feed_forward_subtraction_network():
    pytest.importorskip("nir")
    from spikebridge.config import ConversionConfig
    from spikebridge.conversion.convert import convert
    from spikebridge.engines.reference import simulate_reference
    from spikebridge.ir import AnnGraph, Dense, Input, ReLU

    rng = np.random.default_rng(5)
    g = AnnGraph([Input(name="x", shape=(4,)), Dense(name="d1", weight=rng.normal(0, 1, (6, 4)), bias=rng.normal(0, 0.1, 6)),
                  ReLU(name="r1"), Dense(name="d2", weight=rng.normal(0, 1, (3, 6)))], name="ff")
    for delay in (0, 1):  # same-step delivery and one step per layer
        snn = convert(g, ConversionConfig(delay=delay, output="potential", v_init=0.5), calibration=rng.random((50, 4)))
        assert any(p.reset == "subtract" for p in snn)
        _, back = _round_trip(snn)
        assert back.min_delay_steps == snn.min_delay_steps
        assert {p.name: p.reset for p in back if p.is_spiking} == {p.name: p.reset for p in snn if p.is_spiking}
        x = rng.random((4, 4))
        a, b = simulate_reference(snn, x, 60, record=("all",)), simulate_reference(back, x, 60, record=("all",))
        assert sum(int(c.sum()) for c in a.counts.values()) > 20
        for pop in a.counts:
            np.testing.assert_array_equal(a.counts[pop], b.counts[pop], err_msg=pop)
        np.testing.assert_array_equal(a.output_potential_t, b.output_potential_t)
        assert back.readout["latency_steps"] == snn.readout["latency_steps"]


@pytest.mark.parametrize("node,key,value,match", [
    ("rnn", "spikebridge_reset", "explode", "spikebridge_reset must be"),
    ("rnn", "spikebridge_reset", 3.0, "spikebridge_reset must be"),
    ("rnn", "spikebridge_window", -1.0, "spikebridge_window must be > 0"),
    ("rnn", "spikebridge_window", "soon", "must be a finite number"),
    ("rnn", "spikebridge_window_floor", float("nan"), "must be a finite number"),
    ("rnn", "spikebridge_v_init", np.ones(99), "needs 1 or 5 finite values"),
    ("rnn_fc", "spikebridge_delay_steps", -2, "integer >= 0"),
    ("rnn_fc", "spikebridge_delay_steps", 0.5, "integer >= 0"),
])
def test_hostile_spikebridge_metadata_is_refused_in_one_line(node, key, value, match):
    pytest.importorskip("nir")
    from spikebridge.errors import ModelFormatError
    from spikebridge.importers.from_nir import load_nir

    _, snn, _ = _case(False, False)
    graph, _ = _round_trip(snn)
    graph.nodes[node].metadata[key] = value
    with pytest.raises(ModelFormatError, match=match):
        load_nir(graph, dt=snn.dt)


def test_hostile_readout_metadata_is_refused():
    pytest.importorskip("nir")
    from spikebridge.errors import ModelFormatError
    from spikebridge.importers.from_nir import load_nir

    _, snn, _ = _case(False, False)
    graph, _ = _round_trip(snn)
    for bad, match in (("[1, 2]", "not a JSON object"), ('{"window_steps": -3}', "window_steps must be a int"),
                       ('{"n_out": 7}', "n_out 7"), ('{"mode": "magic"}', "unknown mode")):
        graph.metadata["spikebridge_readout"] = bad
        with pytest.raises(ModelFormatError, match=match):
            load_nir(graph, dt=snn.dt)
    del graph.metadata["spikebridge_readout"]
    graph.nodes["rnn"].metadata.pop("spikebridge_window_floor")
    with pytest.raises(ModelFormatError, match="come together"):
        load_nir(graph, dt=snn.dt)
