"""Recurrent models (ReLU RNNs): IR oracle, conversion semantics, identical spikes in every engine.

Semantics under test (``spikebridge/conversion/sequence.py``): element ``t`` drives window ``t``
(K steps) as a current, the recurrent projection has a delay of one window, hidden membranes are
floored at every window start, and the integrating read-out is decoded per window.
"""

from __future__ import annotations

import numpy as np
import pytest

from spikebridge.engines.reference import simulate_reference
from spikebridge.run.simulate import simulate
from spikebridge.config import ConversionConfig, SimulationConfig
from spikebridge.conversion.convert import convert
from spikebridge.snn.network import load_network, save_network
from spikebridge.errors import ConversionError, ValidationError
from spikebridge.ir import RNN, AnnGraph, Dense, Input, ReLU, evaluate, load_graph, save_graph

from ..engines.test_tensor import DEVICES, assert_same_spikes


def _rnn_graph(rng: np.random.Generator, *, t: int = 6, n_in: int = 3, h: int = 5, n_out: int = 2, seqs: bool = False,
               stacked: bool = False) -> AnnGraph:
    w_hh = 0.6 * np.eye(h) + rng.normal(0, 0.25, (h, h))
    layers = [Input(name="x", shape=(t, n_in)),
              RNN(name="rnn", weight_ih=rng.normal(0.3, 0.6, (h, n_in)), weight_hh=w_hh, bias=rng.normal(0, 0.2, h),
                  return_sequences=seqs or stacked)]
    if stacked:
        layers.append(RNN(name="rnn2", weight_ih=rng.normal(0.2, 0.5, (h, h)), weight_hh=0.5 * np.eye(h),
                          bias=rng.normal(0, 0.1, h), return_sequences=seqs))
    layers.append(Dense(name="fc", weight=rng.normal(0, 1, (n_out, h)), bias=rng.normal(0, 0.1, n_out)))
    return AnnGraph(layers, name="tiny_rnn")


def test_rnn_layer_oracle_and_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    g = _rnn_graph(rng, seqs=True)
    x = rng.random((4, 6, 3))
    layer = g["rnn"]
    h = np.zeros((4, 5))
    for t in range(6):  # h_t = relu(W_ih x_t + W_hh h_{t-1} + b) by hand
        h = np.maximum(x[:, t] @ layer.weight_ih.T + h @ layer.weight_hh.T + layer.bias, 0)
    out = evaluate(g, x)
    assert out.shape == (4, 6, 2)  # Dense on every element
    np.testing.assert_allclose(out[:, -1], h @ g["fc"].weight.T + g["fc"].bias)
    save_graph(g, tmp_path / "g.h5")
    g2 = load_graph(tmp_path / "g.h5")
    assert g2["rnn"].return_sequences is True
    np.testing.assert_array_equal(evaluate(g2, x), out)
    with pytest.raises(ValidationError, match="expects a sequence"):
        AnnGraph([Input(name="x", shape=(3,)), layer])


def test_hand_computed_window_semantics():
    # one unit, input weight 1, recurrent weight 0.5, K = 4, threshold 1, v_init 0.5, input scale 1:
    # window 0: x=1 -> drive 1/step -> v: 1.5, 1.5, 1.5, 1.5 after spikes -> 4 spikes (one per step)
    # window 1: x=0, recurrent 0.5 per arriving spike (4 of them at the same steps) -> 0.5 per step -> 2 spikes
    # window 2: x=0, 2 spikes * 0.5 -> 1 spike ... the ReLU RNN h = 1, 0.5, 0.25 at lambda = 1
    g = AnnGraph([Input(name="x", shape=(3, 1)),
                  RNN(name="r", weight_ih=[[1.0]], weight_hh=[[0.5]], return_sequences=True),
                  Dense(name="out", weight=[[1.0]])], name="hand")
    snn = convert(g, ConversionConfig(normalisation="none", steps_per_element=4, scales="layer"))
    assert snn.projections["r_recurrent"].delay == pytest.approx(4e-3)
    x = np.array([[[1.0], [0.0], [0.0]]])
    rec = simulate_reference(snn, x, 12, record=("all",))
    counts = np.bincount(rec.spikes["r"].step // 4, minlength=3)
    assert counts.tolist() == [4, 2, 1]
    np.testing.assert_allclose(rec.window_values()[0, :, 0], [1.0, 0.5, 0.25])
    np.testing.assert_allclose(evaluate(g, x)[0, :, 0], [1.0, 0.5, 0.25])


def test_window_floor_forgets_negative_drive():
    # window 0: x = -1 drives v from 0.5 down to -3.5; without the floor window 1 (x = +1) would spend
    # its drive paying the debt back; with it, window 1 starts again at 0 and fires 4 times (v = 1 each step)
    g = AnnGraph([Input(name="x", shape=(2, 1)), RNN(name="r", weight_ih=[[1.0]], weight_hh=[[0.0]]),
                  Dense(name="out", weight=[[1.0]])], name="floor")
    snn = convert(g, ConversionConfig(normalisation="none", steps_per_element=4, scales="layer"))
    rec = simulate_reference(snn, np.array([[[-1.0], [1.0]]]), 8, record=("all",))
    assert rec.spikes["r"].step.tolist() == [4, 5, 6, 7]


def test_neurons_per_unit_stagger_and_wrap_by_hand():
    # one unit as M = 2 neurons with v_init 0.25 and 0.75, input weight 1, K = 4, read-out weight 1 (1/2 per spike):
    # window 0, x = 0.4:  A .65 1.05* .45 .85 (1 spike), B 1.15* .55 .95 1.35* (2) -> 3 spikes / 2 / 4 = 0.375
    #   (one neuron: 2 spikes, 0.5; the ANN 0.4)
    # window 1, x = -0.6: A ends at -1.55, B at -2.05, no spikes
    # window 2 starts with the wrap v - floor(v): A 0.45, B 0.95 (a floor at 0 would give 0 and 0);
    #   x = 0.4: A .85 1.25* .65 1.05* (2), B 1.35* .75 1.15* .55 (2) -> 0.5
    g = AnnGraph([Input(name="x", shape=(3, 1)),
                  RNN(name="r", weight_ih=[[1.0]], weight_hh=[[0.0]], return_sequences=True),
                  Dense(name="out", weight=[[1.0]])], name="hand")
    snn = convert(g, ConversionConfig(normalisation="none", steps_per_element=4, scales="layer", neurons_per_unit=2))
    r = snn.populations["r"]
    assert r.n == 2 and np.allclose(r.v_init, [0.25, 0.75]) and r.params.get("window_wrap") is True
    assert "window_floor" not in r.params
    rec = simulate_reference(snn, np.array([[[0.4], [-0.6], [0.4]]]), 12, record=("all",))
    sp = rec.spikes["r"]
    assert sp.step[sp.neuron == 0].tolist() == [1, 9, 11] and sp.step[sp.neuron == 1].tolist() == [0, 3, 8, 10]
    np.testing.assert_allclose(rec.window_values()[0, :, 0], [0.375, 0.0, 0.5])
    with pytest.raises(ConversionError, match="neurons_per_unit"):
        convert(AnnGraph([Input(name="x", shape=(2,)), Dense(name="d", weight=np.eye(2))]),
                ConversionConfig(normalisation="none", neurons_per_unit=2))


def _case(seqs: bool, stacked: bool, dale: str = "none", k: int = 8, m: int = 1):
    rng = np.random.default_rng(3)
    g = _rnn_graph(rng, seqs=seqs, stacked=stacked)
    xc = rng.random((40, 6, 3))
    snn = convert(g, ConversionConfig(steps_per_element=k, dale=dale, percentile=99.0, neurons_per_unit=m), calibration=xc)
    return g, snn, rng.random((5, 6, 3))


@pytest.mark.parametrize("seqs,stacked,dale,m", [(False, False, "none", 1), (True, True, "none", 1), (False, True, "relay", 1),
                                                  (True, True, "none", 3), (False, False, "relay", 2)])
@pytest.mark.parametrize("device", DEVICES)
def test_tensor_matches_reference(seqs, stacked, dale, m, device):
    g, snn, x = _case(seqs, stacked, dale, m=m)
    n = 6 * 8
    ref = simulate_reference(snn, x, n, record=("all",))
    ten = simulate(snn, x, SimulationConfig(n_steps=n, engine="tensor", device=device, record=("all",)))
    assert_same_spikes(ref, ten, min_spikes=50)
    np.testing.assert_array_equal(ref.output_potential_t, ten.output_potential_t)


@pytest.mark.parametrize("seqs,stacked,dale,m", [(False, False, "none", 1), (True, True, "relay", 1), (True, True, "none", 3)])
def test_brian2_matches_reference(seqs, stacked, dale, m):
    pytest.importorskip("brian2")
    g, snn, x = _case(seqs, stacked, dale, m=m)
    n = 6 * 8
    ref = simulate_reference(snn, x, n, record=("all",))
    b2 = simulate(snn, x, SimulationConfig(n_steps=n, engine="brian2", target="numpy", record=("all",)))
    assert_same_spikes(ref, b2, min_spikes=50)
    np.testing.assert_allclose(ref.output_potential_t, b2.output_potential_t, rtol=1e-6, atol=1e-5)


def test_snn_tracks_ann_and_file_round_trip(tmp_path):
    g, snn, x = _case(True, False, k=64)
    rec = simulate_reference(snn, x, 6 * 64)
    ann = evaluate(g, x)
    err = np.abs(rec.window_values() - ann)
    assert err.max() < 0.1 * np.abs(ann).max()  # the per-element read-out follows the ANN
    save_network(snn, tmp_path / "s.h5")
    again = load_network(tmp_path / "s.h5")
    assert again.encoding["sequence_length"] == 6 and again.readout["window_steps"] == 64
    assert_same_spikes(rec, simulate_reference(again, x, 6 * 64))


def test_dale_relay_keeps_the_loop_and_is_dale():
    from spikebridge.conversion.dale import is_dale

    _, snn, _ = _case(False, False, "relay")
    assert is_dale(snn)
    loops = [p for p in snn.projections.values() if p.kind == "recurrent"]
    assert loops and all(np.all(np.asarray(p.delay) == pytest.approx(8e-3)) for p in loops)


def test_refusals():
    rng = np.random.default_rng(0)
    g = _rnn_graph(rng)
    with pytest.raises(ConversionError, match="same-step"):
        convert(g, ConversionConfig(delay=None), calibration=rng.random((4, 6, 3)))
    with pytest.raises(ConversionError, match="current"):
        convert(g, ConversionConfig(input_encoding="poisson"), calibration=rng.random((4, 6, 3)))
    snn = convert(g, ConversionConfig(), calibration=rng.random((4, 6, 3)))
    with pytest.raises(ValidationError, match="expected \\(n_samples, 6, 3\\)"):
        simulate_reference(snn, rng.random((2, 5, 3)), 10)


@pytest.mark.parametrize("m", [1, 2])
def test_exported_script_and_to_brian2_match_reference(tmp_path, m):
    brian2 = pytest.importorskip("brian2")
    import subprocess
    import sys

    from spikebridge.engines.brian2.api import to_brian2
    from spikebridge.export.brian2_script import export_brian2_script

    _, snn, x = _case(False, True, "relay", m=m)
    n = 6 * 8
    ref = simulate_reference(snn, x, n, record=("all",))
    script, _ = export_brian2_script(snn, tmp_path / "out", x, n_steps=n)
    text = script.read_text()
    assert "TimedArray" in text
    assert ("run_regularly('v = clip(v, 0.0, inf)'" in text) == (m == 1)
    assert ("run_regularly('v = v - 1.0 * floor(v / 1.0) * int(v < 0)'" in text) == (m > 1)
    res = subprocess.run([sys.executable, "-I", str(script), "--target", "numpy"], capture_output=True, text=True,
                         cwd=script.parent, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    with np.load(tmp_path / "out" / f"{snn.name}_results.npz", allow_pickle=False) as got:
        for name, counts in ref.counts.items():
            np.testing.assert_array_equal(got[f"{name}__counts"], counts, err_msg=name)
    brian2.prefs.codegen.target = "numpy"
    net = to_brian2(snn, x, config=SimulationConfig(n_steps=n, target="numpy", record=("all",)))
    net.network.run(n * net.dt * brian2.second, namespace={})
    assert_same_spikes(ref, net.spike_record(), min_spikes=50)


def test_graph_analysis_of_converted_rnn(tmp_path):
    pytest.importorskip("networkx")
    from spikebridge.analysis.graph import analyse

    g, snn, _ = _case(False, True, "relay")
    rep = analyse(snn)
    loops = {tuple(loop["populations"]): loop for loop in rep.recurrent}
    assert set(loops) == {("rnn", "rnn_inh"), ("rnn2",)}  # rnn2's recurrent weights are all positive: no relay
    for loop in rep.recurrent:
        assert loop["loop_steps"] == [8]  # one window: the relay hop takes no step
        (pop, sr), = loop["spectral_radius"].items()
        # the per-unit scaling is a similarity transform: the spectral radius is the ANN's
        assert sr["snn"] == pytest.approx(sr["ann"], rel=1e-9)
        assert sr["ann"] == pytest.approx(float(np.max(np.abs(np.linalg.eigvals(g[sr["layer"]].weight_hh)))))
    assert "recurrent loop" in rep.to_text()
    pytest.importorskip("matplotlib")
    from spikebridge.analysis.plot import plot_recurrent

    assert plot_recurrent(snn, tmp_path / "rec.png").stat().st_size > 10_000
