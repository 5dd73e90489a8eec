"""A population's bias counts from the step its first input can arrive (``bias_onset="arrival"``).

Regression for the Fashion-MNIST ResNet-8: with biases counted from step 0, its deep populations (input
8 steps away, folded BatchNorm biases up to 0.7 θ per step) fired on their biases alone before any input
arrived, and the converted network was at chance (9 %) at T=16 and 1.2 points below the ANN at T=64.
"""

from __future__ import annotations

import numpy as np
import pytest

from spikebridge.engines.reference import simulate_reference
from spikebridge.config import ConversionConfig
from spikebridge.conversion.convert import convert
from spikebridge.conversion.onset import input_onset_steps
from spikebridge.ir import Add, AnnGraph, Dense, Input, ReLU
from tests._dag import make_tiny_resnet

DT = 1e-3
# weights and biases as written, θ = 1; one step per projection, so populations have onsets
RAW = {"normalisation": "none", "scales": "layer", "delay": None}


def _residual(add_bias: float) -> AnnGraph:
    """x -> fc1 (+0.3) -> relu -> fc2 (+0.6) -> relu -> fc3 (+add_bias) ; fc3 + relu(fc1) -> relu -> out."""
    def d(name: str, w: float, b: float) -> Dense:
        return Dense(name=name, weight=[[w]], bias=[b])

    layers = [Input(name="x", shape=(1,)), d("fc1", 1.0, 0.3), ReLU(name="r1"), d("fc2", 0.5, 0.6),
              ReLU(name="r2"), d("fc3", 0.25, add_bias), Add(name="add"), ReLU(name="r3"),
              Dense(name="out", weight=[[1.0], [-1.0]], bias=[0.0, 0.0])]  # two classes: a spiking read-out
    edges = [("x", "fc1"), ("fc1", "r1"), ("r1", "fc2"), ("fc2", "r2"), ("r2", "fc3"), ("fc3", "add"),
             ("r1", "add"), ("add", "r3"), ("r3", "out")]
    return AnnGraph(layers, edges, name="res")


def _by_hand(x: float, n_steps: int, onset: dict[str, int]) -> dict[str, list[int]]:
    """Cumulative spike counts of `_residual(0.3)`'s IF neurons (output: class 0) when each bias starts at `onset`."""
    bias = {"fc1": 0.3, "fc2": 0.6, "add": 0.3, "out": 0.0}
    v = dict.fromkeys(bias, 0.5)
    s: dict[str, list[int]] = {k: [] for k in bias}

    def past(p: str, k: int) -> int:  # spike of p at step k (0 before the start)
        return s[p][k] if k >= 0 else 0

    for k in range(n_steps):
        drive = {"fc1": x, "fc2": 0.5 * past("fc1", k - 1),
                 "add": 0.25 * past("fc2", k - 1) + past("fc1", k - 2), "out": past("add", k - 1)}
        for p, b in bias.items():
            v[p] += b * (k >= onset[p]) + drive[p]
            s[p].append(int(v[p] >= 1.0))
            v[p] -= s[p][-1]
    return {p: list(np.cumsum(t)) for p, t in s.items()}


def test_onset_steps_follow_the_aligned_paths_of_a_resnet():
    snn = convert(make_tiny_resnet(), ConversionConfig(**RAW))
    # same-step delivery (the default): every input arrives in step 0, nothing to shift
    same = convert(make_tiny_resnet(), ConversionConfig(normalisation="none", scales="layer"))
    assert set(input_onset_steps(same).values()) == {0} and "bias_onset" not in same.metadata
    assert np.all(np.asarray(same.populations["a2"].v_init) == 0.5)
    # stem is fed by the input current (0 steps); every later population one step per hop, the sums aligned
    assert input_onset_steps(snn) == {"input": 0, "stem": 0, "c1": 1, "a1": 2, "c3": 3, "a2": 4, "side": 5,
                                      "gap": 6, "fc": 7}
    assert snn.metadata["bias_onset"] == {"c1": 1, "a1": 2, "c3": 3, "a2": 4, "side": 5, "fc": 7}  # gap: no bias
    a2 = snn.populations["a2"]
    np.testing.assert_allclose(a2.v_init, 0.5 - np.asarray(a2.bias) * DT * 4)
    assert float(np.min(a2.v_init)) < 0.5 - 4 * 0.04  # the folded biases are ~0.05 per step: a real shift
    assert snn.populations["stem"].v_init == 0.5  # the input current arrives at step 0: nothing to wait for


def test_residual_counts_equal_biases_switched_on_at_their_onset():
    x, n_steps = 0.1, 12
    arrival = convert(_residual(0.3), ConversionConfig(**RAW))
    start = convert(_residual(0.3), ConversionConfig(**RAW, bias_onset="start"))
    names = [p for p in arrival.populations if p != "input"]
    assert input_onset_steps(arrival) == {"input": 0, names[0]: 0, names[1]: 1, names[2]: 2, names[3]: 3}
    rec_a = simulate_reference(arrival, np.array([[x]]), n_steps)
    rec_s = simulate_reference(start, np.array([[x]]), n_steps)
    delayed = _by_hand(x, n_steps, {"fc1": 0, "fc2": 1, "add": 2, "out": 3})
    from_zero = _by_hand(x, n_steps, dict.fromkeys(("fc1", "fc2", "add", "out"), 0))
    for name, hand in zip(names, ("fc1", "fc2", "add")):
        assert rec_a.counts[name][0, 0] == delayed[hand][-1]
        assert rec_s.counts[name][0, 0] == from_zero[hand][-1]
    assert rec_s.output_counts[0, 0] == from_zero["out"][-1]
    # ANN: relu(fc1) = 0.4, relu(fc2) = 0.8, the sum 0.2 + 0.3 + 0.4 = 0.9 = the class-0 output. With the bias
    # waiting for the input, the sum fires round(0.9 * (12 - 2)) = 9 times and the output round(0.9 * 9) = 8;
    # from step 0, fc2 fires at step 0 on its bias alone (0.5 + 0.6 >= 1) and the sum and output once too often
    assert (delayed["fc2"][0], from_zero["fc2"][0]) == (0, 1)
    assert (delayed["add"][-1], from_zero["add"][-1]) == (9, 10)
    assert delayed["out"] == [0, 0, 0, 1, 2, 2, 3, 4, 5, 6, 7, 8]
    np.testing.assert_array_equal(rec_a.output_counts_t[0, :, 0], delayed["out"])


def test_negative_bias_start_is_capped_below_threshold():
    # add's bias -0.4 with onset 2 would start it at 0.5 + 0.8 = 1.3; after step 0 (-0.4) that is still 0.9 < 1
    snn = convert(_residual(-0.4), ConversionConfig(**RAW))
    add = next(p for p in snn.populations.values() if p.layer == "r3")
    assert np.asarray(add.v_init)[0] == pytest.approx(1.3)
    # with -0.7 the shift (0.5 + 1.4) would fire it at step 0 on the bias alone: capped just below θ + 0.7
    snn = convert(_residual(-0.7), ConversionConfig(**RAW))
    add = next(p for p in snn.populations.values() if p.layer == "r3")
    assert np.asarray(add.v_init)[0] == pytest.approx(1.7 - 1e-6)
    rec = simulate_reference(snn, np.array([[0.0]]), 2)
    assert rec.counts[add.name][0, 0] == 0
