"""Conversion: layer mapping, hand-checked normalisation, read-outs, delays, errors."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from spikebridge.engines.reference import simulate_reference
from spikebridge.config import ConversionConfig
from spikebridge.conversion.calibrate import neuron_scales
from spikebridge.conversion.convert import convert
from spikebridge.conversion.stages import plan_stages
from spikebridge.conversion.normalise import activation_scale
from spikebridge.snn.operators import conv_operator, linear_operator
from spikebridge.errors import ConversionError, ConversionWarning, UnsupportedLayerError
from spikebridge.ir import AnnGraph, AvgPool2d, Conv2d, Dense, Flatten, Input, ReLU
from spikebridge.ir.evaluate import evaluate
from spikebridge.ir.layers import GlobalAvgPool2d, Identity, MaxPool2d, Softmax


def _hand_net() -> AnnGraph:
    return AnnGraph(
        [
            Input(name="x", shape=(2,)),
            Dense(name="fc1", weight=[[1.0, 0.0], [0.0, 2.0]], bias=[0.5, -0.5]),
            ReLU(name="relu1"),
            Dense(name="out", weight=[[1.0, 1.0]], bias=[0.2]),
        ],
        name="hand",
    )


def test_normalisation_scales_and_bias_rescale_by_hand():
    x = np.array([[1.0, 1.0], [2.0, 0.0], [0.0, 3.0]])
    # fc1 + relu: [1.5, 1.5], [2.5, 0], [0.5, 5.5] -> lambda_1 = 5.5 ; out: 3.2, 2.7, 6.2 -> 6.2 ; input max 3
    snn = convert(_hand_net(), ConversionConfig(percentile=100.0), calibration=x)
    assert snn.scales == pytest.approx({"x": 3.0, "relu1": 5.5, "out": 6.2})
    fc1 = snn.projections["input_fc1"].to_dense(2, 2)
    np.testing.assert_allclose(fc1, np.array([[1.0, 0.0], [0.0, 2.0]]) * 3.0 / 5.5)
    out = snn.projections["fc1_out"].to_dense(1, 2)
    np.testing.assert_allclose(out, np.array([[1.0, 1.0]]) * 5.5 / 6.2)
    # biases become currents in threshold units per second: b / lambda / dt
    np.testing.assert_allclose(snn.populations["fc1"].bias, np.array([0.5, -0.5]) / 5.5 / 1e-3)
    assert snn.populations["out"].bias == pytest.approx(0.2 / 6.2 / 1e-3)
    assert snn.encoding == {"kind": "current", "max_rate": 1000.0, "scale": 3.0}
    assert snn.readout["scale"] == pytest.approx(6.2) and snn.readout["latency_steps"] == 0  # same-step delivery
    assert snn.populations["fc1"].layer == "relu1" and snn.populations["out"].role == "output"


def test_normalisation_none_keeps_weights():
    snn = convert(_hand_net(), ConversionConfig(normalisation="none"))
    np.testing.assert_allclose(snn.projections["fc1_out"].to_dense(1, 2), [[1.0, 1.0]])
    assert set(snn.scales.values()) == {1.0}


def test_percentile_ignores_silent_units():
    a = np.concatenate([np.zeros(1000), np.arange(1, 101, dtype=float)])
    assert activation_scale(a, 100, name="l") == 100.0
    assert activation_scale(a, 50, name="l") == pytest.approx(50.5)
    with pytest.warns(ConversionWarning, match="never active"):
        assert activation_scale(np.zeros(5), 99, name="dead") == 1.0


def test_missing_calibration_is_explained():
    with pytest.raises(ConversionError, match="calibration"):
        convert(_hand_net())


def test_conv_operator_matches_evaluate(rng):
    layer = Conv2d(name="c", weight=rng.normal(size=(3, 2, 3, 2)), bias=rng.normal(size=3), stride=(2, 1), padding=(1, 0))
    g = AnnGraph([Input(name="x", shape=(2, 5, 4)), layer])
    x = rng.normal(size=(4, 2, 5, 4))
    mat, bias = linear_operator(layer, (2, 5, 4))
    got = (mat @ x.reshape(4, -1).T).T + bias
    np.testing.assert_allclose(got, evaluate(g, x).reshape(4, -1), atol=1e-12)
    assert conv_operator(layer.weight, (2, 5, 4), (2, 1), (1, 0)).shape == (3 * 3 * 3, 40)


def test_cnn_layers_map_to_populations(tiny_cnn, rng):
    g = tiny_cnn()
    x = rng.uniform(0, 1, size=(30, 1, 6, 6))
    snn = convert(g, ConversionConfig(scales="layer"), calibration=x)
    assert list(snn.populations) == ["input", "conv1", "pool1", "fc"]
    assert snn.populations["conv1"].shape == (3, 6, 6) and snn.populations["pool1"].n == 27
    assert [p.kind for p in snn.projections.values()] == ["conv", "pool", "dense"]
    # the pool projection averages: 4 synapses of 1/4 per output, rescaled by lambda ratio
    pool = snn.projections["conv1_pool1"]
    ratio = snn.scales["relu1"] / snn.scales["pool1"]
    np.testing.assert_allclose(pool.weight, 0.25 * ratio)
    assert snn.readout["latency_steps"] == 0  # same-step delivery
    assert convert(g, ConversionConfig(scales="layer", delay=None), calibration=x).readout["latency_steps"] == 2


def _rate_check(g, x, snn, n_steps):
    rec = simulate_reference(snn, x, n_steps)
    acts = evaluate(g, x, return_all=True)
    fired = 0
    for pop in snn.populations.values():
        if pop.role not in ("hidden",):
            continue
        rate = rec.counts[pop.name] / n_steps
        # per-neuron λ: the channel's own scale with scales="channel" (the default)
        target = np.clip(acts[pop.layer].reshape(len(x), -1) / neuron_scales(snn, pop.name), 0, 1)
        assert np.corrcoef(rate.ravel(), target.ravel())[0, 1] > 0.98, pop.name
        slope = np.polyfit(target.ravel(), rate.ravel(), 1)[0]
        assert 0.85 < slope < 1.1, (pop.name, slope)
        fired += np.mean(rec.counts[pop.name] > 0)
    return fired


def test_converted_mlp_rates_follow_activations(tiny_mlp, rng):
    g = tiny_mlp(sizes=(6, 20, 12, 4))
    x = rng.uniform(0, 1, size=(50, 6))
    snn = convert(g, ConversionConfig(v_init=0.5), calibration=x)
    fired = _rate_check(g, x, snn, 400)
    assert fired > 0.5  # more than half the hidden neurons fire on average, so the check is not vacuous
    rec = simulate_reference(snn, x, 400)
    out = evaluate(g, x)
    assert np.mean(rec.predictions() == out.argmax(1)) >= 0.9
    pos = out > 0.05 * out.max()
    assert np.corrcoef(rec.output_values()[pos], out[pos])[0, 1] > 0.98


def test_converted_cnn_rates_follow_activations(tiny_cnn, rng):
    g = tiny_cnn()
    x = rng.uniform(0, 1, size=(40, 1, 6, 6))
    snn = convert(g, ConversionConfig(v_init=0.5), calibration=x)
    assert _rate_check(g, x, snn, 400) > 0.5


def test_maxpool_modes(rng):
    layers = [
        Input(name="x", shape=(1, 4, 4)),
        Conv2d(name="conv", weight=rng.normal(size=(2, 1, 3, 3)), bias=np.zeros(2), padding=1),
        ReLU(name="relu"),
        MaxPool2d(name="mp", kernel_size=2),
        Flatten(name="flat"),
        Dense(name="fc", weight=rng.normal(size=(3, 8))),
        Softmax(name="softmax"),
    ]
    g = AnnGraph(layers)
    x = rng.uniform(0, 1, size=(20, 1, 4, 4))
    with pytest.raises(ConversionError, match="maxpool='avg'"):
        convert(g, ConversionConfig(maxpool="refuse"), calibration=x)
    with pytest.warns(ConversionWarning, match="replaced by average pooling"):
        avg = convert(g, ConversionConfig(maxpool="avg"), calibration=x)
    assert avg.projections["conv_mp"].kind == "pool"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        gate = convert(g, ConversionConfig(maxpool="gate"), calibration=x)
    assert gate.projections["conv_mp"].kind == "gate" and gate.populations["mp"].reset == "zero"
    assert "mp_max1" in convert(g, calibration=x).populations  # the default is the converging tree
    # the OR gate fires whenever an input fires: rate >= max input rate, <= 1 per step
    rec = simulate_reference(gate, x, 200)
    conv_rate = rec.counts["conv"].reshape(20, 2, 4, 4) / 200
    window_max = conv_rate.reshape(20, 2, 2, 2, 2, 2).max(axis=(3, 5))
    gate_rate = rec.counts["mp"].reshape(20, 2, 2, 2) / 200
    assert np.all(gate_rate >= window_max - 0.02)
    assert gate_rate.sum() > 1.0


def test_unsupported_and_misplaced_layers(rng):
    bad = AnnGraph([Input(name="x", shape=(3,)), Dense(name="fc", weight=np.eye(3)), Softmax(name="sm"), Dense(name="fc2", weight=np.eye(3))])
    with pytest.raises(UnsupportedLayerError, match="only supported as the last layer"):
        convert(bad, ConversionConfig(normalisation="none"))


def test_global_avgpool_and_identity_fold(rng):
    g = AnnGraph(
        [
            Input(name="x", shape=(1, 4, 4)),
            Conv2d(name="conv", weight=rng.normal(size=(3, 1, 3, 3)), bias=rng.normal(size=3)),
            ReLU(name="relu"),
            Identity(name="drop"),
            GlobalAvgPool2d(name="gap"),
            Dense(name="fc", weight=rng.normal(size=(2, 3)), bias=rng.normal(size=2)),
        ]
    )
    stages = plan_stages(g, ConversionConfig())
    assert [(s.name, s.kind) for s in stages] == [("conv", "relu"), ("gap", "pool"), ("fc", "output")]


def test_avgpool_before_relu_is_folded(rng):
    g = AnnGraph(
        [
            Input(name="x", shape=(1, 4, 4)),
            Conv2d(name="conv", weight=rng.normal(size=(2, 1, 3, 3)), padding=1),
            AvgPool2d(name="pool", kernel_size=2),
            ReLU(name="relu"),
            Flatten(name="flat"),
            Dense(name="fc", weight=rng.normal(size=(2, 8))),
        ]
    )
    x = rng.uniform(0, 1, size=(10, 1, 4, 4))
    snn = convert(g, calibration=x)
    assert list(snn.populations) == ["input", "pool", "fc"]
    mat = snn.projections["input_pool"].to_dense(8, 16) * snn.scales["relu"] / snn.scales["x"]
    want = evaluate(AnnGraph(g.layers[:3]), x).reshape(10, -1)
    np.testing.assert_allclose(x.reshape(10, -1) @ mat.T, want, atol=1e-12)


def test_regression_uses_potential_readout(rng):
    g = AnnGraph(
        [Input(name="x", shape=(3,)), Dense(name="h", weight=rng.normal(size=(8, 3)), bias=rng.normal(0, 0.2, 8)), ReLU(name="r"),
         Dense(name="y", weight=rng.normal(size=(2, 8)), bias=[0.3, -0.4])],
        metadata={"task": "regression"},
    )
    x = rng.uniform(0, 1, size=(40, 3))
    snn = convert(g, ConversionConfig(v_init=0.5), calibration=x)
    assert snn.readout["mode"] == "potential" and snn.readout["task"] == "regression"
    assert snn.populations["y"].model == "integrator"
    rec = simulate_reference(snn, x, 300)
    want = evaluate(g, x)
    got = rec.output_values()
    assert np.min(want) < 0  # negative targets are represented
    assert np.sqrt(np.mean((got - want) ** 2)) < 0.05 * np.ptp(want)


def test_delays_and_jitter_are_seeded(tiny_mlp, rng):
    g = tiny_mlp(sizes=(6, 8, 8, 4))
    x = rng.uniform(0, 1, size=(10, 6))
    snn = convert(g, ConversionConfig(delay=2e-3), calibration=x)
    assert all(p.delay == pytest.approx(2e-3) for p in snn.projections.values())
    assert snn.readout["latency_steps"] == 4  # two hidden->next projections of 2 steps; the input one is folded
    a = convert(g, ConversionConfig(delay=None, delay_jitter=3e-3, seed=5), calibration=x)
    b = convert(g, ConversionConfig(delay=None, delay_jitter=3e-3, seed=5), calibration=x)
    c = convert(g, ConversionConfig(delay=None, delay_jitter=3e-3, seed=6), calibration=x)
    d_a = a.projections["fc1_fc2"].delay
    np.testing.assert_array_equal(d_a, b.projections["fc1_fc2"].delay)
    assert not np.array_equal(d_a, c.projections["fc1_fc2"].delay)
    steps = np.rint(np.asarray(d_a) / 1e-3)
    assert steps.min() >= 1 and steps.max() <= 4 and len(np.unique(steps)) > 1
    poisson = convert(g, ConversionConfig(input_encoding="poisson", max_rate=250.0, delay=None), calibration=x)
    assert poisson.readout["latency_steps"] == 3  # the input projection now has a delay too
    # spike-encoded input: weights carry 1 / (max_rate dt) so the mean drive is unchanged
    ratio = poisson.projections["input_fc1"].weight / convert(g, calibration=x).projections["input_fc1"].weight
    np.testing.assert_allclose(ratio, 4.0)


def test_maxpool_on_input_is_refused(rng):
    g = AnnGraph([Input(name="x", shape=(1, 4, 4)), MaxPool2d(name="mp", kernel_size=2), Flatten(name="f"),
                  Dense(name="fc", weight=rng.normal(size=(2, 4)))])
    with pytest.raises(ConversionError, match="directly on the input"):
        convert(g, ConversionConfig(normalisation="none"))


def test_integrator_readout_counts_bias_after_latency(rng):
    # a constant-only regression output: its value must be exact whatever T is
    g = AnnGraph(
        [Input(name="x", shape=(2,)), Dense(name="h", weight=np.eye(2)), ReLU(name="r"),
         Dense(name="y", weight=np.zeros((1, 2)), bias=[0.7])],
        metadata={"task": "regression"},
    )
    snn = convert(g, ConversionConfig(delay=3e-3), calibration=rng.uniform(0, 1, size=(5, 2)))
    assert snn.readout["latency_steps"] == 3
    rec = simulate_reference(snn, rng.uniform(0, 1, size=(2, 2)), 20)
    np.testing.assert_allclose(rec.output_values(), 0.7, rtol=1e-9)
    np.testing.assert_allclose(rec.output_values(step=9), 0.7, rtol=1e-9)


def test_finer_simulation_step_keeps_rates(tiny_mlp, rng):
    g = tiny_mlp(sizes=(6, 12, 4))
    x = rng.uniform(0, 1, size=(20, 6))
    snn = convert(g, ConversionConfig(percentile=100.0), calibration=x)  # no unit saturates at one spike per step
    coarse = simulate_reference(snn, x, 200)
    fine = simulate_reference(snn, x, 400, dt=0.5e-3)
    # same simulated time, half the step: the same number of spikes within rounding
    assert np.abs(coarse.counts["fc1"] - fine.counts["fc1"]).max() <= 2
    assert coarse.counts["fc1"].sum() > 200


def test_lif_neurons_and_refractory_are_applied(tiny_mlp, rng):
    g = tiny_mlp(sizes=(6, 10, 3))
    x = rng.uniform(0, 1, size=(20, 6))
    snn = convert(g, ConversionConfig(neuron="lif", tau_mem=0.05, refractory=2e-3, reset="zero", v_init=0.5), calibration=x)
    hidden = snn.populations["fc1"]
    assert (hidden.model, hidden.tau_mem, hidden.refractory, hidden.reset) == ("lif", 0.05, 2e-3, "zero")
    assert hidden.v_init == pytest.approx(0.5)
    rec = simulate_reference(snn, x, 200)
    # a refractory period of 2 steps caps every neuron at one spike per 2 steps
    assert rec.counts["fc1"].max() <= 100 and rec.counts["fc1"].sum() > 100
    assert np.mean(rec.predictions() == evaluate(g, x).argmax(1)) >= 0.8
