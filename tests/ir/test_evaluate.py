"""The numpy oracle against small hand-computed cases."""

from __future__ import annotations

import numpy as np
import pytest

from spikebridge.errors import ValidationError
from spikebridge.ir import AnnGraph, AvgPool2d, Conv2d, Dense, Flatten, GlobalAvgPool2d, Input, MaxPool2d, ReLU, Softmax, evaluate


def _run(layer, x):
    g = AnnGraph([Input(name="x", shape=x.shape[1:]), layer])
    return evaluate(g, x)


def test_conv_stride_two_hand_computed():
    x = np.arange(16.0).reshape(1, 1, 4, 4)
    w = np.array([[[[1.0, 0.0], [0.0, -1.0]]]])  # x[i, j] - x[i+1, j+1] = -5 everywhere
    out = _run(Conv2d(name="c", weight=w, bias=[1.0], stride=2), x)
    np.testing.assert_array_equal(out, np.full((1, 1, 2, 2), -4.0))


def test_conv_zero_padding_counts_neighbours():
    x = np.ones((1, 1, 3, 3))
    out = _run(Conv2d(name="c", weight=np.ones((1, 1, 3, 3)), padding=1), x)
    np.testing.assert_array_equal(out[0, 0], [[4, 6, 4], [6, 9, 6], [4, 6, 4]])


def test_conv_multi_channel_cross_correlation():
    x = np.zeros((1, 2, 2, 2))
    x[0, 0] = [[1, 2], [3, 4]]
    x[0, 1] = [[10, 20], [30, 40]]
    w = np.zeros((2, 2, 2, 2))
    w[0, 0, 0, 0] = 1.0  # out0 = x0[0, 0] + x1[1, 1]
    w[0, 1, 1, 1] = 1.0
    w[1, 0, 0, 1] = 2.0  # out1 = 2 * x0[0, 1] - x1[1, 0]
    w[1, 1, 1, 0] = -1.0
    out = _run(Conv2d(name="c", weight=w), x)
    np.testing.assert_array_equal(out.reshape(2), [1 + 40, 2 * 2 - 30])


def test_avg_pool_with_padding_counts_zeros():
    x = np.array([[[[1.0, 2.0], [3.0, 4.0]]]])
    out = _run(AvgPool2d(name="p", kernel_size=2, stride=2, padding=1), x)
    np.testing.assert_allclose(out[0, 0], [[0.25, 0.5], [0.75, 1.0]])


def test_max_pool_pads_with_minus_infinity():
    x = -np.array([[[[1.0, 2.0], [3.0, 4.0]]]])
    out = _run(MaxPool2d(name="p", kernel_size=2, stride=2, padding=1), x)
    np.testing.assert_array_equal(out[0, 0], [[-1.0, -2.0], [-3.0, -4.0]])
    x = np.arange(16.0).reshape(1, 1, 4, 4)
    np.testing.assert_array_equal(_run(MaxPool2d(name="p", kernel_size=2), x)[0, 0], [[5, 7], [13, 15]])


def test_global_pool_flatten_order_dense_relu_softmax():
    x = np.arange(8.0).reshape(1, 2, 2, 2)
    g = AnnGraph([Input(name="x", shape=(2, 2, 2)), GlobalAvgPool2d(name="g")])
    np.testing.assert_array_equal(evaluate(g, x), [[1.5, 5.5]])
    g = AnnGraph([Input(name="x", shape=(2, 2, 2)), Flatten(name="f")])
    np.testing.assert_array_equal(evaluate(g, x), [np.arange(8.0)])  # C order of (C, H, W)
    g = AnnGraph([Input(name="x", shape=(2,)), Dense(name="d", weight=[[1.0, -1.0], [2.0, 0.0]], bias=[0.5, -5.0]),
                  ReLU(name="r")])
    np.testing.assert_array_equal(evaluate(g, [[3.0, 1.0]]), [[2.5, 1.0]])
    g = AnnGraph([Input(name="x", shape=(2,)), Softmax(name="s")])
    np.testing.assert_allclose(evaluate(g, [[0.0, np.log(3.0)]]), [[0.25, 0.75]])


def test_return_all_batches_and_single_sample(tiny_cnn, rng):
    g = tiny_cnn()
    x = rng.normal(size=(5, 1, 6, 6))
    acts = evaluate(g, x, return_all=True)
    assert set(acts) == {layer.name for layer in g}
    assert acts["pool1"].shape == (5, 3, 3, 3)
    np.testing.assert_array_equal(acts["fc"], evaluate(g, x))
    np.testing.assert_allclose(evaluate(g, x, batch_size=2), evaluate(g, x))
    np.testing.assert_array_equal(evaluate(g, x[0]), evaluate(g, x[:1]))  # one sample = batch of one


def test_wrong_input_shape_and_nan_input(tiny_cnn):
    g = tiny_cnn()
    with pytest.raises(ValidationError, match=r"input of shape \(2, 1, 5, 5\) does not match model 'tiny_cnn' "
                                              r"input shape \(1, 6, 6\); expected \(n_samples, 1, 6, 6\)"):
        evaluate(g, np.zeros((2, 1, 5, 5)))
    x = np.zeros((1, 1, 6, 6))
    x[0, 0, 2, 2] = np.nan
    with pytest.raises(ValidationError, match="NaN or Inf"):
        evaluate(g, x)
