"""AnnGraph and layers: shape inference, validation messages, parameter and MAC counts."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from spikebridge.errors import ValidationError
from spikebridge.ir import (
    AnnGraph,
    AvgPool2d,
    Conv2d,
    Dense,
    Flatten,
    GlobalAvgPool2d,
    Input,
    MaxPool2d,
    ReLU,
    safe_name,
)


def test_shape_inference_of_tiny_cnn(tiny_cnn):
    g = tiny_cnn()
    assert g.shapes == {
        "input": (1, 6, 6), "conv1": (3, 6, 6), "relu1": (3, 6, 6), "pool1": (3, 3, 3), "flatten": (27,), "fc": (4,)
    }
    assert g.input_shape == (1, 6, 6) and g.output_shape == (4,) and g.output == "fc"
    assert g.predecessor("pool1") == "relu1" and g.successors("pool1") == ("flatten",)
    assert g.input_shape_of("conv1") == (1, 6, 6)


def test_strided_conv_and_pool_shapes():
    conv = Conv2d(name="c", weight=np.zeros((4, 2, 3, 3)), stride=2, padding=1)
    assert conv.output_shape((2, 7, 7)) == (4, 4, 4)  # floor((7 + 2 - 3) / 2) + 1
    assert MaxPool2d(name="p", kernel_size=3, stride=2).output_shape((4, 7, 7)) == (4, 3, 3)
    assert AvgPool2d(name="p", kernel_size=(2, 3)).stride == (2, 3)  # stride defaults to the kernel
    assert GlobalAvgPool2d(name="g").output_shape((5, 3, 3)) == (5,)
    assert Flatten(name="f").output_shape((5, 3, 2)) == (30,)


def test_params_and_macs_counts(tiny_cnn):
    g = tiny_cnn()
    rows = {row.name: row for row in g.summary()}
    assert rows["conv1"].n_params == 3 * 1 * 3 * 3 + 3
    assert rows["conv1"].macs == 27 * 6 * 6  # 9 MACs per output value, 3 * 6 * 6 outputs
    assert rows["pool1"].macs == 3 * 3 * 3 * 4
    assert rows["fc"].n_params == 4 * 27 + 4 and rows["fc"].macs == 4 * 27
    assert rows["relu1"].n_params == 0 and rows["relu1"].macs == 0
    assert g.n_params() == 30 + 112
    assert g.macs() == 972 + 108 + 108


def test_dense_shape_mismatch_message_names_layer_and_both_shapes():
    with pytest.raises(ValidationError) as info:
        AnnGraph([Input(name="x", shape=(4,)), Dense(name="fc2", weight=np.zeros((3, 5)))])
    assert str(info.value) == (
        "Dense 'fc2': weight shape (3, 5) does not match input shape (4,); expected input (5,)"
    )
    with pytest.raises(ValidationError, match="add a Flatten layer before it"):
        AnnGraph([Input(name="x", shape=(1, 2, 2)), Dense(name="fc", weight=np.zeros((3, 4)))])


def test_conv_and_pool_shape_errors():
    with pytest.raises(ValidationError, match=r"Conv2d 'c': weight shape \(2, 3, 3, 3\) expects 3 input channels, "
                                              r"got input shape \(1, 5, 5\)"):
        AnnGraph([Input(name="x", shape=(1, 5, 5)), Conv2d(name="c", weight=np.zeros((2, 3, 3, 3)))])
    with pytest.raises(ValidationError, match=r"kernel \(3, 3\) does not fit input \(1, 2, 2\)"):
        AnnGraph([Input(name="x", shape=(1, 2, 2)), Conv2d(name="c", weight=np.zeros((2, 1, 3, 3)))])
    with pytest.raises(ValidationError, match=r"MaxPool2d 'p': expects a \(channels, height, width\) input, got shape \(8,\)"):
        AnnGraph([Input(name="x", shape=(8,)), MaxPool2d(name="p", kernel_size=2)])
    with pytest.raises(ValidationError, match=r"bias shape \(3,\) does not match weight shape \(2, 4\); expected \(2,\)"):
        Dense(name="d", weight=np.zeros((2, 4)), bias=np.zeros(3))
    with pytest.raises(ValidationError, match="stride must be a pair of ints >= 1"):
        Conv2d(name="c", weight=np.zeros((1, 1, 1, 1)), stride=0)


def test_nan_and_inf_weights_are_refused_with_position():
    w = np.ones((2, 3))
    w[1, 2] = np.nan
    with pytest.raises(ValidationError, match=r"layer 'fc': weight contains 1 non-finite value\(s\) \(NaN or Inf\), "
                                              r"first at index \(1, 2\)"):
        Dense(name="fc", weight=w)
    with pytest.raises(ValidationError, match="layer 'c': bias contains 1 non-finite"):
        Conv2d(name="c", weight=np.zeros((2, 1, 1, 1)), bias=[0.0, np.inf])


def test_duplicate_names_and_input_count():
    with pytest.raises(ValidationError, match=r"duplicate layer names \['a'\]"):
        AnnGraph([Input(name="x", shape=(2,)), ReLU(name="a"), ReLU(name="a")])
    with pytest.raises(ValidationError, match="needs exactly one Input layer, found 2"):
        AnnGraph([Input(name="x", shape=(2,)), Input(name="y", shape=(2,))])
    with pytest.raises(ValidationError, match="needs exactly one Input layer, found 0"):
        AnnGraph([ReLU(name="a")])


def test_cycle_and_bad_edges():
    layers = [Input(name="x", shape=(2,)), ReLU(name="a"), ReLU(name="b")]
    with pytest.raises(ValidationError, match="the edges form a cycle through"):
        AnnGraph(layers, [("b", "a"), ("a", "b")])
    with pytest.raises(ValidationError, match="names unknown layer 'zzz'"):
        AnnGraph(layers, [("x", "a"), ("a", "zzz")])
    with pytest.raises(ValidationError, match=r"layer 'b' has 2 inputs \['x', 'a'\]; expected 1"):
        AnnGraph(layers, [("x", "a"), ("x", "b"), ("a", "b")])
    with pytest.raises(ValidationError, match=r"needs exactly one output layer, found \['a', 'b'\]"):
        AnnGraph(layers, [("x", "a"), ("x", "b")])


def test_edges_given_out_of_order_are_sorted():
    layers = [ReLU(name="b"), Input(name="x", shape=(2,)), ReLU(name="a")]
    g = AnnGraph(layers, [("a", "b"), ("x", "a")])
    assert [layer.name for layer in g] == ["x", "a", "b"]
    assert g.edges == (("x", "a"), ("a", "b"))


def test_layers_are_frozen_and_arrays_read_only():
    d = Dense(name="d", weight=np.eye(2))
    with pytest.raises(dataclasses.FrozenInstanceError):
        d.name = "e"  # type: ignore[misc]
    with pytest.raises(ValueError):
        d.weight[0, 0] = 5.0
    assert d.replace(name="e").name == "e" and d.name == "d"


@pytest.mark.parametrize(
    "raw, safe", [("features.0", "features_0"), ("0conv", "l0conv"), ("/fc/Gemm", "fc_Gemm"), ("class", "class_"),
                  ("...", "layer")],
)
def test_safe_name(raw, safe):
    assert safe_name(raw) == safe
    assert safe.isidentifier()
