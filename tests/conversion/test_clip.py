"""Clipped ReLUs (``ReLU(max_value=c)``): oracle, HDF5 format, and the clip level as the conversion scale."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from spikebridge.engines.reference import simulate_reference
from spikebridge.config import ConversionConfig
from spikebridge.conversion.convert import convert
from spikebridge.errors import ModelFormatError, ValidationError
from spikebridge.ir import (
    AnnGraph,
    AvgPool2d,
    Conv2d,
    Dense,
    Flatten,
    Input,
    MaxPool2d,
    ReLU,
    evaluate,
    load_graph,
    save_graph,
)
from spikebridge.ir.serialize import format_version


def _clipped_cnn(seed: int = 3) -> AnnGraph:
    r = np.random.default_rng(seed)
    return AnnGraph([
        Input(name="x", shape=(1, 6, 6)),
        Conv2d(name="conv", weight=r.normal(0, 0.5, (3, 1, 3, 3)), bias=r.normal(0, 0.1, 3), padding=1),
        ReLU(name="clip1", max_value=0.75),
        AvgPool2d(name="pool", kernel_size=2),
        Flatten(name="flat"),
        Dense(name="fc", weight=r.normal(0, 0.5, (5, 27)), bias=r.normal(0, 0.1, 5)),
        ReLU(name="clip2", max_value=0.4),
        Dense(name="out", weight=r.normal(0, 0.5, (3, 5))),
    ], name="clipped_cnn")


def test_clipped_relu_forward_and_validation():
    g = AnnGraph([Input(name="x", shape=(4,)), ReLU(name="r", max_value=2), ReLU(name="plain")])
    out = evaluate(g, np.array([[-1.0, 0.5, 2.0, 7.5]]), return_all=True)
    np.testing.assert_array_equal(out["r"], [[0.0, 0.5, 2.0, 2.0]])
    assert g["r"].max_value == 2.0 and isinstance(g["r"].max_value, float) and g["plain"].max_value is None
    assert repr(g["plain"]) == "ReLU('plain')" and repr(g["r"]) == "ReLU('r', max_value=2.0)"
    for bad in (0.0, -1.0, float("inf"), float("nan"), "six", True):
        with pytest.raises(ValidationError, match="ReLU 'bad': max_value must be"):
            ReLU(name="bad", max_value=bad)


def test_hdf5_writes_version_4_only_with_a_clip_and_reads_older_relus(tmp_path, rng):
    g = _clipped_cnn()
    path = tmp_path / "clipped.h5"
    save_graph(g, path)
    with h5py.File(path) as f:
        assert int(f.attrs["format_version"]) == format_version(g) == 4
        assert b'"max_value": 0.75' in f["layers/2"].attrs["params"]
    back = load_graph(path)
    assert back["clip1"].max_value == 0.75 and back["clip2"].max_value == 0.4
    x = rng.uniform(0, 1, (4, 1, 6, 6))
    np.testing.assert_array_equal(evaluate(back, x), evaluate(g, x))
    # without clips: version 3 and no max_value key, as the previous release wrote and read it
    plain = AnnGraph([Input(name="x", shape=(2,)), Dense(name="d", weight=[[1.0, -1.0]]), ReLU(name="r")])
    path2 = tmp_path / "plain.h5"
    save_graph(plain, path2)
    with h5py.File(path2) as f:
        assert int(f.attrs["format_version"]) == 3 and f["layers/2"].attrs["params"] == b"{}"
    assert load_graph(path2)["r"].max_value is None
    # a corrupt clip level in a file is a format error naming the layer
    with h5py.File(path, "a") as f:
        f["layers/2"].attrs["params"] = '{"max_value": -1}'
    with pytest.raises(ModelFormatError, match="invalid ReLU layer: ReLU 'clip1': max_value must be finite and > 0"):
        load_graph(path)


def test_clip_level_is_the_layer_scale_and_channel_scales_leave_it(rng):
    g = _clipped_cnn()
    x = rng.uniform(0, 1, (40, 1, 6, 6))
    snn = convert(g, ConversionConfig(), calibration=x)  # scales="channel" is the default
    # the pool of a clipped layer keeps its bound (a mean of values in [0, c])
    assert snn.scales["clip1"] == 0.75 and snn.scales["pool"] == 0.75 and snn.scales["clip2"] == 0.4
    assert snn.metadata["clip_levels"] == {"clip1": 0.75, "pool": 0.75, "clip2": 0.4}
    assert "clip1" not in snn.metadata.get("channel_scales", {})
    # the projection into the pool keeps weights 1/4: source and pool share the scale 0.75
    pool_proj = next(p for p in snn.projections.values() if p.post == "pool")
    np.testing.assert_allclose(pool_proj.operator.kernel if pool_proj.operator is not None else pool_proj.weight, 0.25)
    # the unclipped twin gets percentile scales below the clip level's maximum activation
    plain = AnnGraph([layer if not isinstance(layer, ReLU) else ReLU(name=layer.name) for layer in g], name="plain")
    snn_plain = convert(plain, ConversionConfig(scales="layer"), calibration=x)
    acts = evaluate(plain, x, return_all=True)
    assert snn_plain.scales["clip1"] == pytest.approx(np.percentile(acts["clip1"][acts["clip1"] > 0], 99.9))
    assert "clip_levels" not in snn_plain.metadata


def test_relu_then_clip_is_one_population_and_a_redundant_clip_adds_none(rng):
    r = np.random.default_rng(0)
    w1, w2 = r.normal(0, 1, (6, 4)), r.normal(0, 1, (3, 6))
    x = rng.normal(0, 1, (30, 4))
    base = [Input(name="x", shape=(4,)), Dense(name="fc1", weight=w1)]
    # an ONNX Relu followed by Clip(0, c): the population represents the clipped value
    g = AnnGraph(base + [ReLU(name="relu"), ReLU(name="clip", max_value=0.5), Dense(name="out", weight=w2)])
    snn = convert(g, ConversionConfig(), calibration=x)
    assert sorted(snn.populations) == ["fc1", "input", "out"]
    assert snn.populations["fc1"].layer == "clip" and snn.scales["clip"] == 0.5 and snn.readout["latency_steps"] == 0
    # a wider clip after a narrower one changes nothing and needs no neurons
    g2 = AnnGraph(base + [ReLU(name="clip", max_value=0.5), ReLU(name="wide", max_value=2.0), Dense(name="out", weight=w2)])
    assert sorted(convert(g2, ConversionConfig(), calibration=x).populations) == ["fc1", "input", "out"]
    # a narrower clip after a max-pool of a wider one is a relay population that clips
    cnn = AnnGraph([Input(name="x", shape=(1, 4, 4)), Conv2d(name="c", weight=r.normal(0, 1, (2, 1, 3, 3)), padding=1),
                    ReLU(name="clip", max_value=1.0), MaxPool2d(name="mp", kernel_size=2), ReLU(name="narrow", max_value=0.3),
                    Flatten(name="f"), Dense(name="out", weight=r.normal(0, 1, (2, 8)))])
    snn3 = convert(cnn, ConversionConfig(maxpool="gate"), calibration=rng.uniform(0, 1, (20, 1, 4, 4)))
    assert snn3.populations["narrow"].layer == "narrow" and snn3.scales["narrow"] == 0.3 and snn3.scales["mp"] == 1.0


def test_first_layer_counts_are_the_qcfs_quantisation_at_t_equal_levels(rng):
    # Bu et al. 2022: with threshold = λ and v_init = θ/2, an IF neuron driven by a constant x fires
    # clip(floor(x T / λ + 1/2), 0, T) times in T steps: the L-level quantised ReLU at T = L.
    lam, T = 0.8, 4
    w = rng.normal(0, 1, (16, 5))
    g = AnnGraph([Input(name="x", shape=(5,)), Dense(name="fc", weight=w, bias=rng.normal(0, 0.1, 16)),
                  ReLU(name="q", max_value=lam), Dense(name="out", weight=rng.normal(0, 1, (3, 16)))])
    x = rng.uniform(-1, 1, (50, 5))
    snn = convert(g, ConversionConfig(v_init=0.5), calibration=x)
    rec = simulate_reference(snn, x, T)
    pre = evaluate(g, x, return_all=True)["fc"]
    want = np.clip(np.floor(pre * T / lam + 0.5), 0, T)
    assert np.array_equal(rec.counts["fc"], want), np.abs(rec.counts["fc"] - want).max()
    assert 0 < want.mean() < T  # the test data exercise the clip and the rounding


def test_clipped_relus_in_a_branching_graph(rng):
    from spikebridge.ir import Add

    r = np.random.default_rng(1)
    w = lambda o, i: r.normal(0, 0.7, (o, i))
    layers = [Input(name="x", shape=(4,)), Dense(name="fc0", weight=w(5, 4)), ReLU(name="r0"),
              ReLU(name="c0", max_value=0.6),  # Relu + Clip whose Relu also feeds the shortcut: a relay, not a relabel
              Dense(name="fc1", weight=w(5, 5)), Add(name="add"), ReLU(name="r6", max_value=1.0),
              Dense(name="out", weight=w(2, 5))]
    edges = [("x", "fc0"), ("fc0", "r0"), ("r0", "c0"), ("c0", "fc1"), ("fc1", "add"), ("r0", "add"), ("add", "r6"),
             ("r6", "out")]
    g = AnnGraph(layers, edges)
    x = rng.normal(0, 1, (40, 4))
    snn = convert(g, ConversionConfig(output="potential"), calibration=x)
    assert snn.populations["fc0"].layer == "r0" and snn.populations["c0"].layer == "c0"
    assert snn.scales["c0"] == 0.6 and snn.scales["r6"] == 1.0 and snn.metadata["clip_levels"] == {"c0": 0.6, "r6": 1.0}
    # the sum's population is fed by the clipped relay (through fc1) and by the shortcut from fc0
    assert sorted(p.pre for p in snn.projections.values() if p.post == "add") == ["c0", "fc0"]
    rec = simulate_reference(snn, x, 256)
    acts = evaluate(g, x, return_all=True)
    for pop, layer in (("fc0", "r0"), ("c0", "c0"), ("add", "r6")):  # rates times λ approach the activations
        assert np.abs(rec.counts[pop] / 256 * snn.scales[layer] - acts[layer]).max() < 0.03, pop
    assert np.abs(rec.output_values() - acts["out"]).max() < 0.02
