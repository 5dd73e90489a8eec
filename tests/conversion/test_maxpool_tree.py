"""maxpool="tree": a tournament of rectified differences whose rate converges to the window max."""

from __future__ import annotations

import numpy as np
import pytest

from spikebridge.engines.reference import simulate_reference
from spikebridge.config import ConversionConfig, SimulationConfig
from spikebridge.conversion.convert import convert
from spikebridge.conversion.maxpool import tournament
from spikebridge.snn.network import load_network
from spikebridge.ir import AnnGraph, Conv2d, Dense, Flatten, Input, MaxPool2d, ReLU


def _eval_tree(k, values):
    """Evaluate the tournament's difference units in plain arithmetic."""
    units, winner, _ = tournament(k)
    unit_vals: list[float] = []
    for inputs in units:
        total = sum(s * (values[ix] if lv == 0 else unit_vals[ix]) for lv, ix, s in inputs)
        unit_vals.append(max(0.0, total))
    return sum(values[ix] if lv == 0 else unit_vals[ix] for lv, ix in winner)


@pytest.mark.parametrize("k", [1, 2, 3, 4, 5, 9])
def test_tournament_computes_the_max(k, rng):
    units, winner, rounds = tournament(k)
    assert len(units) == k - 1 and len(winner) == rounds + 1
    assert rounds == int(np.ceil(np.log2(k))) if k > 1 else rounds == 0
    for _ in range(20):
        v = rng.uniform(0, 1, size=k)
        assert _eval_tree(k, v) == pytest.approx(v.max(), abs=1e-12)


def _pool_graph(window_values):
    """Input (1, 2, 4) -> identity 1x1 conv -> ReLU -> 2x2 max pool -> identity dense: two windows."""
    return AnnGraph(
        [
            Input(name="x", shape=(1, 2, 4)),
            Conv2d(name="conv", weight=np.ones((1, 1, 1, 1)), bias=np.zeros(1)),
            ReLU(name="relu"),
            MaxPool2d(name="mp", kernel_size=2),
            Flatten(name="flat"),
            Dense(name="fc", weight=np.eye(2), bias=np.zeros(2)),
        ]
    )


def test_tree_rate_converges_to_max_where_the_or_gate_overcounts():
    # two 2x2 windows of constant input rates (conv neurons driven by currents = the pixel values)
    x = np.array([[[[0.30, 0.50, 0.20, 0.90], [0.45, 0.20, 0.85, 0.10]]]])
    g = _pool_graph(x)
    calib = np.ones((1, 1, 2, 4))  # scales 1: one spike per step is an activation of 1
    true_max = np.array([0.50, 0.90])
    T = 2000
    gate = simulate_reference(convert(g, ConversionConfig(percentile=100, maxpool="gate"), calibration=calib), x, T)
    tree_snn = convert(g, ConversionConfig(percentile=100, maxpool="tree"), calibration=calib)
    tree = simulate_reference(tree_snn, x, T)
    assert list(tree_snn.populations) == ["input", "conv", "mp_max1", "mp_max2", "mp", "fc"]
    assert tree_snn.populations["mp_max1"].n == 4 and tree_snn.populations["mp_max2"].n == 2
    # with one step per projection: input current -> conv (0), conv -> tree rounds 1, 2 -> pool (3 steps),
    # pool -> fc (1); with same-step delivery (the default) the rounds settle within the step
    gate_snn = convert(g, ConversionConfig(percentile=100, maxpool="gate", delay=None), calibration=calib)
    tree_piped = convert(g, ConversionConfig(percentile=100, maxpool="tree", delay=None), calibration=calib)
    assert tree_piped.readout["latency_steps"] == gate_snn.readout["latency_steps"] + 2 == 4
    assert tree_snn.readout["latency_steps"] == 0
    tree_rate = tree.counts["mp"][0] / T
    gate_rate = gate.counts["mp"][0] / T
    # the tree is exact up to a bounded number of spikes (one per unit on the winner's path)
    np.testing.assert_allclose(tree_rate, true_max, atol=4 / T)
    # the OR gate counts the union of desynchronised spikes: far above the max
    assert gate_rate[0] > true_max[0] + 0.3 and gate_rate[1] > true_max[1] + 0.09
    # and the tree's error shrinks with T (bounded count error => ~1/T)
    short = simulate_reference(tree_snn, x, 200).counts["mp"][0] / 200
    assert np.max(np.abs(short - true_max)) <= 4 / 200


def test_tree_saves_loads_and_brian2_matches_reference(tmp_path):
    from spikebridge.run.simulate import simulate

    x = np.array([[[[0.30, 0.50, 0.20, 0.90], [0.45, 0.20, 0.85, 0.10]]], [[[0.7, 0.1, 0.0, 0.3], [0.2, 0.6, 0.3, 0.3]]]])
    snn = convert(_pool_graph(x), ConversionConfig(percentile=100, maxpool="tree", v_init=0.5), calibration=np.ones((1, 1, 2, 4)))
    path = tmp_path / "tree.h5"
    snn.save(path)
    back = load_network(path)
    assert back.metadata["maxpool_tree"] == {"mp": 2}
    ref = simulate_reference(back, x, 60)
    b2 = simulate(back, x, SimulationConfig(n_steps=60, target="numpy"))
    for name in ("conv", "mp_max1", "mp_max2", "mp", "fc"):
        np.testing.assert_array_equal(b2.counts[name], ref.counts[name], err_msg=name)
    np.testing.assert_array_equal(b2.output_counts_t, ref.output_counts_t)


def test_tree_with_padding_and_overlap_matches_ann_max(rng):
    # 3x3 windows, stride 2, padding 1: border windows have 4 or 6 inputs, inner ones 9
    g = AnnGraph(
        [
            Input(name="x", shape=(1, 5, 5)),
            Conv2d(name="conv", weight=np.ones((2, 1, 1, 1)) * np.array([1.0, 0.5])[:, None, None, None], bias=np.zeros(2)),
            ReLU(name="relu"),
            MaxPool2d(name="mp", kernel_size=3, stride=2, padding=1),
            Flatten(name="flat"),
            Dense(name="fc", weight=np.eye(18), bias=np.zeros(18)),
        ]
    )
    x = rng.uniform(0, 1, size=(3, 1, 5, 5))
    snn = convert(g, ConversionConfig(percentile=100, maxpool="tree", scales="layer"), calibration=np.ones((1, 1, 5, 5)))
    T = 1500
    rec = simulate_reference(snn, x, T)
    from spikebridge.ir import evaluate

    acts = evaluate(g, x, return_all=True)
    np.testing.assert_allclose(rec.counts["mp"] / T, acts["mp"].reshape(3, -1), atol=6 / T)
