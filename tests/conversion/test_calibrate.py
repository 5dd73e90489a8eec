"""Channel-wise normalisation, post-conversion calibration and the conversion presets."""

from __future__ import annotations

import numpy as np
import pytest

from spikebridge.engines.reference import simulate_reference
from spikebridge.config import PRESETS, ConversionConfig, preset
from spikebridge.conversion.calibrate import neuron_scales
from spikebridge.run.calibrate import calibrate_network
from spikebridge.run.calibrate import convert
from spikebridge.errors import ValidationError
from spikebridge.ir import AnnGraph, Conv2d, Dense, Flatten, Input, MaxPool2d, ReLU, evaluate


def _two_channel_cnn(rng, maxpool=False):
    """1x1 conv with a strong (x1) and a weak (x0.1) channel, then a dense read-out."""
    w = np.array([1.0, 0.1]).reshape(2, 1, 1, 1)
    layers = [Input(name="x", shape=(1, 4, 4)), Conv2d(name="conv", weight=w, bias=np.zeros(2)), ReLU(name="relu")]
    n = 2 * 16
    if maxpool:
        layers.append(MaxPool2d(name="mp", kernel_size=2))
        n = 2 * 4
    layers += [Flatten(name="flat"), Dense(name="fc", weight=rng.normal(size=(3, n)), bias=np.zeros(3))]
    return AnnGraph(layers)


@pytest.mark.parametrize("maxpool", [False, True])
def test_channel_scales_are_per_channel_maxima_and_keep_the_function(rng, maxpool):
    g = _two_channel_cnn(rng, maxpool)
    x = rng.uniform(0, 1, size=(50, 1, 4, 4))
    layer = convert(g, ConversionConfig(percentile=100, maxpool="tree", scales="layer"), calibration=x)
    chan = convert(g, ConversionConfig(percentile=100, maxpool="tree", scales="channel"), calibration=x)
    key = layer.populations["conv"].layer  # "relu", or "conv" before a max-pool
    lam = layer.scales[key]
    assert lam == pytest.approx(x.max())
    assert chan.metadata["channel_scales"][key] == pytest.approx([x.max(), 0.1 * x.max()])
    np.testing.assert_allclose(neuron_scales(chan, "conv"), np.repeat([x.max(), 0.1 * x.max()], 16))
    # input -> conv weights of the weak channel grow 10x; conv -> next weights shrink 10x
    w_layer = layer.projections["input_conv"].weight
    w_chan = chan.projections["input_conv"].weight
    weak = chan.projections["input_conv"].post_index >= 16
    np.testing.assert_allclose(w_chan[weak], 10 * w_layer[weak])
    np.testing.assert_allclose(w_chan[~weak], w_layer[~weak])
    T = 400
    rec_l = simulate_reference(layer, x, T)
    rec_c = simulate_reference(chan, x, T)
    # the weak channel now fires like the strong one (it was quantised 10x more coarsely)
    weak_rate_layer = rec_l.counts["conv"][:, 16:].mean() / T
    weak_rate_chan = rec_c.counts["conv"][:, 16:].mean() / T
    assert weak_rate_chan == pytest.approx(10 * weak_rate_layer, rel=0.05)
    if maxpool:
        # a max-pool keeps its input channel's scale: its unit weights stay one threshold
        np.testing.assert_allclose(chan.projections["conv_mp"].weight, 1.0)
        assert chan.metadata["channel_scales"]["mp"] == chan.metadata["channel_scales"][key]
    # the output (one scale, count read-out: rectified) decodes the same ANN function
    ann = np.maximum(evaluate(g, x), 0.0)
    np.testing.assert_allclose(rec_c.output_values(), ann, atol=0.05 * np.abs(ann).max())


def test_potential_calibration_reduces_the_rate_error_at_its_T(rng):
    g = AnnGraph([
        Input(name="x", shape=(20,)),
        Dense(name="fc1", weight=rng.normal(size=(30, 20)) / 3, bias=rng.normal(size=30) * 0.1), ReLU(name="r1"),
        Dense(name="fc2", weight=rng.normal(size=(30, 30)) / 4, bias=rng.normal(size=30) * 0.1), ReLU(name="r2"),
        Dense(name="fc3", weight=rng.normal(size=(5, 30)) / 4, bias=np.zeros(5)),
    ])
    x = rng.uniform(0, 1, size=(200, 20))
    base_cfg = ConversionConfig(v_init=0.0, percentile=100)
    base = convert(g, base_cfg, calibration=x)
    T = 24
    acts = evaluate(g, x, return_all=True)

    def err(snn, name, layer):
        rec = simulate_reference(snn, x, T)
        want = np.minimum(np.maximum(acts[layer], 0) / snn.scales[layer], 1.0).mean(axis=0)
        return np.mean(np.abs(want - rec.counts[name].mean(axis=0) / T))

    for mode in ("potential", "bias", "both"):
        cfg = ConversionConfig(v_init=0.0, percentile=100, calibrate=mode, calibrate_steps=T, calibrate_samples=200)
        cal = convert(g, cfg, calibration=x)
        for name, layer in (("fc1", "r1"), ("fc2", "r2")):
            before, after = err(base, name, layer), err(cal, name, layer)
            assert after < 0.5 * before, (mode, name, before, after)
    # the log reports the error measured before each correction
    _, log = calibrate_network(base, x, ConversionConfig(calibrate="potential", calibrate_steps=T))
    assert [row["population"] for row in log] == ["fc1", "fc2", "fc3"]
    assert log[0]["mean_abs_rate_error"] == pytest.approx(err(base, "fc1", "r1"), rel=1e-9)


def test_presets_and_validation():
    assert preset("classic") == ConversionConfig(percentile=99.9, v_init=0.0, maxpool="gate", scales="layer", delay=None,
                                                 bias_onset="start")
    assert preset("pipelined") == ConversionConfig(delay=None)
    assert PRESETS["default"] == ConversionConfig()  # the defaults are the measured best preset
    assert ConversionConfig().to_dict() | {"percentile": 100.0, "scales": "layer"} == PRESETS["tree_max"].to_dict()
    assert preset("tuned_gate", seed=3).seed == 3
    with pytest.raises(ValidationError, match="unknown conversion preset 'fast'"):
        preset("fast")
    with pytest.raises(ValidationError, match="calibrate_steps"):
        ConversionConfig(calibrate_steps=0)
    with pytest.raises(ValidationError, match="scales"):
        ConversionConfig(scales="neuron")


def test_cli_preset_and_options(capsys, tmp_path):
    from spikebridge import cli
    from spikebridge.snn.network import load_network
    from spikebridge.models import model_path

    net = tmp_path / "net.h5"
    code = cli.main(["convert", str(model_path("digits_cnn")), "-o", str(net), "--preset", "classic", "--scales", "channel"])
    assert code == 0, capsys.readouterr().err
    conv = load_network(net).conversion
    assert (conv["v_init"], conv["percentile"], conv["maxpool"], conv["scales"]) == (0.0, 99.9, "gate", "channel")


def test_cli_offers_every_preset(capsys, tmp_path):
    """`--preset` takes every named preset (low_latency_qcfs included) and `--calibrate offset_mean`."""
    from spikebridge import cli
    from spikebridge.config import PRESETS
    from spikebridge.models import model_path
    from spikebridge.snn.network import load_network

    assert cli.main(["convert", "--help"]) == 0
    shown = capsys.readouterr().out
    assert all(name in shown for name in PRESETS)
    net = tmp_path / "net.h5"
    code = cli.main(["convert", str(model_path("digits_cnn")), "-o", str(net), "--preset", "low_latency_qcfs",
                     "--calibrate", "offset_mean", "--calibrate-steps", "4", "--calibration", "digits:train"])
    assert code == 0, capsys.readouterr().err
    conv = load_network(net).conversion
    assert (conv["signed"], conv["calibrate"], conv["calibrate_steps"]) == (True, "offset_mean", 4)
