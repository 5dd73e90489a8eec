"""The converted shipped digits models reach their accuracy targets."""

from __future__ import annotations

import numpy as np
import pytest

from spikebridge.engines.reference import simulate_reference
from spikebridge.config import ConversionConfig, SimulationConfig, preset
from spikebridge.conversion.convert import convert
from spikebridge.ir.evaluate import evaluate

datasets = pytest.importorskip("spikebridge.datasets")
models = pytest.importorskip("spikebridge.models")


@pytest.fixture(scope="module")
def digits():
    x_train, _ = datasets.load_digits("train")
    x_test, y_test = datasets.load_digits("test")
    return x_train, x_test, y_test


@pytest.fixture(scope="module")
def mlp(digits):
    g = models.load_shipped("digits_mlp")
    return g, convert(g, calibration=digits[0])


def test_shipped_mlp_meets_targets_on_whole_test_split(mlp, digits):
    g, snn = mlp
    x_train, x, y = digits
    ann = float(np.mean(evaluate(g, x).argmax(1) == y))
    acc = simulate_reference(snn, x, 128).accuracy_over_time(y)
    # the defaults (chosen on the real-data models, docs/conversion.md#defaults-and-presets) are two
    # test images (0.56 points) below the ANN at T = 32 and equal from T = 64
    assert acc[31] >= ann - 2 / 360 - 1e-9
    assert acc[63] >= ann - 1e-9 and acc[127] >= ann - 1e-9
    # the original targets (within 0.5 points at T = 32, equal at T = 128) with preset "tree_max"
    tuned = simulate_reference(convert(g, preset("tree_max"), calibration=x_train), x, 128).accuracy_over_time(y)
    assert tuned[31] >= ann - 0.005
    assert tuned[127] >= ann - 1e-9


def test_shipped_mlp_half_threshold_start_is_faster(digits):
    g = models.load_shipped("digits_mlp")
    _, x, y = digits
    snn = convert(g, ConversionConfig(v_init=0.5, percentile=100.0), calibration=digits[0])
    ann_pred = evaluate(g, x).argmax(1)
    rec = simulate_reference(snn, x, 32)
    # the stretch goal: the same predictions as the ANN for nearly every sample at T = 32
    assert np.mean(rec.predictions() == ann_pred) >= 0.99
    assert rec.accuracy_over_time(y)[-1] >= np.mean(ann_pred == y) - 0.003


def test_shipped_mlp_in_brian2_matches_reference(mlp, digits):
    from spikebridge.run.simulate import simulate

    g, snn = mlp
    _, x, y = digits
    n = 40
    b2 = simulate(snn, x[:n], SimulationConfig(n_steps=32, target="numpy"), labels=y[:n])
    ref = simulate_reference(snn, x[:n], 32)
    for name in ref.counts:
        np.testing.assert_array_equal(b2.counts[name], ref.counts[name], err_msg=name)
    assert b2.accuracy_over_time()[-1] >= 0.9


def test_shipped_cnn_meets_target(digits):
    g = models.load_shipped("digits_cnn")
    x_train, x, y = digits
    snn = convert(g, calibration=x_train)
    ann = float(np.mean(evaluate(g, x).argmax(1) == y))
    acc = simulate_reference(snn, x, 64).accuracy_over_time(y)
    assert acc[63] >= ann - 0.01
