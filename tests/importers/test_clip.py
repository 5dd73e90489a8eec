"""Clipped ReLUs from ONNX (Clip) and Keras (ReLU(max_value), relu6) become ``ReLU(max_value=c)``."""

from __future__ import annotations

import numpy as np
import pytest

from spikebridge.errors import UnsupportedLayerError
from spikebridge.importers.registry import load_model
from spikebridge.ir import ReLU, evaluate
from tests._optional import requires_keras, requires_onnx


def _clip_model(opset: int, lo: float | None, hi: float | None, *, as_inputs: bool):
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    inits = [numpy_helper.from_array(np.eye(3, dtype=np.float32), name="W")]
    if as_inputs:  # opset >= 11: bounds are optional inputs
        names = []
        for key, v in (("lo", lo), ("hi", hi)):
            if v is not None:
                inits.append(numpy_helper.from_array(np.array(v, dtype=np.float32), name=key))
            names.append(key if v is not None else "")
        clip = helper.make_node("Clip", ["h", *names], ["y"], name="clip")
    else:  # opset < 11: attributes
        attrs = {k: v for k, v in (("min", lo), ("max", hi)) if v is not None}
        clip = helper.make_node("Clip", ["h"], ["y"], name="clip", **attrs)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W"], ["h"], name="mm"), clip], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3])], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    onnx.checker.check_model(model)
    return model


@requires_onnx
@pytest.mark.parametrize("opset,as_inputs", [(9, False), (17, True)])
def test_onnx_clip_from_zero_is_a_clipped_relu(opset, as_inputs):
    x = np.array([[-1.0, 0.4, 5.0]])
    g = load_model(_clip_model(opset, 0.0, 1.5, as_inputs=as_inputs))
    assert isinstance(g["clip"], ReLU) and g["clip"].max_value == 1.5
    np.testing.assert_array_equal(evaluate(g, x), np.clip(x, 0, 1.5))
    assert load_model(_clip_model(opset, 0.0, None, as_inputs=as_inputs))["clip"].max_value is None
    with pytest.raises(UnsupportedLayerError, match=r"Clip\(min=-1.0, max=1.0\).*only Clip\(min=0, max=c\)"):
        load_model(_clip_model(opset, -1.0, 1.0, as_inputs=as_inputs))
    with pytest.raises(UnsupportedLayerError, match=r"Clip\(min=None, max=2.0\)"):
        load_model(_clip_model(opset, None, 2.0, as_inputs=as_inputs))


@requires_keras
def test_keras_relu_max_value_and_relu6_activation(tmp_path, rng):
    import keras

    keras.utils.set_random_seed(1)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(5, name="a"),
                              keras.layers.ReLU(max_value=0.7, name="clip"),
                              keras.layers.Dense(3, activation="relu6", name="b"), keras.layers.Dense(2, name="c")])
    model.save(str(tmp_path / "clip.keras"))
    g = load_model(tmp_path / "clip.keras")
    assert [(layer.name, layer.max_value) for layer in g if isinstance(layer, ReLU)] == [("clip", pytest.approx(0.7)),
                                                                                         ("b_relu6", 6.0)]
    x = rng.normal(0, 3, (6, 4)).astype(np.float32)
    np.testing.assert_allclose(evaluate(g, x), model.predict(x, verbose=0), atol=1e-5)
    leaky = keras.Sequential([keras.Input((2,)), keras.layers.Dense(2), keras.layers.ReLU(negative_slope=0.1, name="lk")])
    leaky.save(str(tmp_path / "leaky.keras"))
    with pytest.raises(UnsupportedLayerError, match="only the plain ReLU or a clipped one"):
        load_model(tmp_path / "leaky.keras")
