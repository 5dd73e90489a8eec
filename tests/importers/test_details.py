"""Importer details beyond the conformance battery: ONNX operator attributes, metadata, layouts."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from spikebridge.errors import UnsupportedLayerError
from spikebridge.importers.registry import load_model
from spikebridge.ir import evaluate
from tests._optional import requires_keras, requires_onnx, requires_sklearn, requires_torch


def _onnx_model(nodes, inits, in_shape, out_shape):
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    graph = helper.make_graph(
        nodes, "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, in_shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, out_shape)],
        initializer=[numpy_helper.from_array(np.asarray(v, dtype=np.float32), name=k) for k, v in inits.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    return model


@requires_onnx
def test_onnx_gemm_alpha_beta_and_no_transpose(rng):
    from onnx import helper

    B = rng.normal(size=(4, 3))  # (n_in, n_out), transB = 0
    C = rng.normal(size=(3,))
    model = _onnx_model([helper.make_node("Gemm", ["x", "B", "C"], ["y"], alpha=0.5, beta=2.0, name="gemm")],
                        {"B": B, "C": C}, ["N", 4], ["N", 3])
    graph = load_model(model)
    x = rng.normal(size=(5, 4))
    expected = 0.5 * x @ B.astype(np.float32) + 2.0 * C.astype(np.float32)  # the ONNX Gemm definition
    np.testing.assert_allclose(evaluate(graph, x), expected, rtol=1e-6, atol=1e-6)
    assert graph.metadata["format"] == "onnx" and graph.metadata["source"] == "onnx.ModelProto"


@requires_onnx
def test_onnx_matmul_add_batchnorm_relu_softmax(rng):
    from onnx import helper

    W = rng.normal(size=(4, 3)).astype(np.float32)
    b = rng.normal(size=(3,)).astype(np.float32)
    gamma, beta = rng.uniform(0.5, 1.5, 3), rng.normal(size=3)
    mean, var = rng.normal(size=3), rng.uniform(0.5, 1.5, 3)
    nodes = [
        helper.make_node("MatMul", ["x", "W"], ["h"], name="mm"),
        helper.make_node("Add", ["h", "b"], ["h2"], name="bias"),
        helper.make_node("BatchNormalization", ["h2", "g", "be", "m", "v"], ["h3"], epsilon=1e-3, name="bn"),
        helper.make_node("Relu", ["h3"], ["h4"], name="relu"),
        helper.make_node("Softmax", ["h4"], ["y"], axis=-1, name="sm"),
    ]
    model = _onnx_model(nodes, {"W": W, "b": b, "g": gamma, "be": beta, "m": mean, "v": var}, [1, 4], [1, 3])
    graph = load_model(model)
    assert [layer.name for layer in graph] == ["input", "mm", "relu", "sm"]
    assert graph.metadata["task"] == "classification"
    assert graph.metadata["folded_batchnorm"] == {"bn": "mm"}
    x = rng.normal(size=(6, 4))
    f = lambda a: np.asarray(a, dtype=np.float32).astype(np.float64)  # noqa: E731
    z = (x @ f(W) + f(b) - f(mean)) / np.sqrt(f(var) + 1e-3) * f(gamma) + f(beta)
    z = np.maximum(z, 0)
    expected = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(evaluate(graph, x), expected, rtol=1e-6, atol=1e-7)


@requires_onnx
def test_onnx_asymmetric_pads_and_residual_add(rng):
    from onnx import helper

    conv = helper.make_node("Conv", ["x", "w"], ["y"], pads=[0, 0, 1, 1], name="c")
    model = _onnx_model([conv], {"w": rng.normal(size=(1, 1, 2, 2))}, [1, 1, 4, 4], [1, 1, 4, 4])
    with pytest.raises(UnsupportedLayerError, match=r"'c' of type Conv\(pads=\[0, 0, 1, 1\]\).*symmetric"):
        load_model(model)
    # a residual sum of two computed tensors is an Add layer; an Add of a constant that is no bias is refused
    nodes = [helper.make_node("Relu", ["x"], ["r"], name="r"), helper.make_node("Add", ["r", "x"], ["y"], name="res")]
    g = load_model(_onnx_model(nodes, {}, [1, 3], [1, 3]))
    assert g["res"].type_name == "Add" and g.predecessors("res") == ("r", g.input.name)
    np.testing.assert_allclose(evaluate(g, [[-1.0, 2.0, 0.5]]), [[-1.0, 4.0, 1.0]])
    nodes = [helper.make_node("Relu", ["x"], ["r"], name="r"), helper.make_node("Add", ["r", "b"], ["y"], name="res")]
    with pytest.raises(UnsupportedLayerError, match="'res' of type Add.*only supported as the bias"):
        load_model(_onnx_model(nodes, {"b": np.ones(3)}, [1, 3], [1, 3]))
    nodes = [helper.make_node("Relu", ["x"], ["r"], name="r"), helper.make_node("Mul", ["r", "x"], ["y"], name="gate")]
    with pytest.raises(UnsupportedLayerError, match="'gate' of type Mul"):
        load_model(_onnx_model(nodes, {}, [1, 3], [1, 3]))


@requires_onnx
def test_onnx_sum_of_three_and_concat_checked_by_onnx_reference(rng):
    from onnx import helper
    from onnx.reference import ReferenceEvaluator

    w1, w2 = rng.normal(size=(3, 3)), rng.normal(size=(3, 3))
    nodes = [
        helper.make_node("MatMul", ["x", "w1"], ["a"], name="m1"),
        helper.make_node("MatMul", ["x", "w2"], ["b"], name="m2"),
        helper.make_node("Sum", ["a", "b", "x"], ["s"], name="sum3"),
        helper.make_node("Relu", ["s"], ["r"], name="relu"),
        helper.make_node("Concat", ["r", "a"], ["y"], name="cat", axis=-1),
    ]
    model = _onnx_model(nodes, {"w1": w1, "w2": w2}, [2, 3], [2, 6])
    g = load_model(model)
    assert g["sum3"].type_name == "Add" and g.predecessors("sum3") == ("m1", "m2", g.input.name)
    assert g["cat"].type_name == "Concat" and g["cat"].axis == -1 and g.output_shape == (6,)
    x = rng.normal(size=(2, 3)).astype(np.float32)
    ref = ReferenceEvaluator(model).run(None, {"x": x})[0]
    np.testing.assert_allclose(evaluate(g, x), ref, rtol=1e-5, atol=1e-5)


@requires_sklearn
def test_sklearn_binary_metadata_and_decision_rule(rng):
    from sklearn.neural_network import MLPClassifier

    X = rng.normal(size=(40, 3))
    y = np.where(X[:, 0] + X[:, 1] > 0, "yes", "no")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        clf = MLPClassifier(hidden_layer_sizes=(6,), max_iter=300, random_state=0).fit(X, y)
    graph = load_model(clf)
    meta = graph.metadata
    assert meta["task"] == "classification" and meta["classes"] == ["no", "yes"]
    assert meta["binary_logit"] is True and meta["decision"] == "output > 0"
    assert graph.output_shape == (1,)
    out = evaluate(graph, X)[:, 0]
    predicted = np.where(out > 0, meta["classes"][1], meta["classes"][0])
    np.testing.assert_array_equal(predicted, clf.predict(X))


@requires_sklearn
def test_sklearn_multiclass_argmax_matches_predict(rng):
    from sklearn.neural_network import MLPClassifier

    X = rng.normal(size=(60, 4))
    y = np.argmax(X[:, :3], axis=1) * 10
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        clf = MLPClassifier(hidden_layer_sizes=(8,), max_iter=300, random_state=0).fit(X, y)
    graph = load_model(clf)
    assert graph.metadata["classes"] == [0, 10, 20] and graph.layers[-1].type_name == "Softmax"
    pred = np.asarray(graph.metadata["classes"])[evaluate(graph, X).argmax(axis=1)]
    np.testing.assert_array_equal(pred, clf.predict(X))


@requires_keras
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_keras_metadata_records_channels_last_layout(tmp_path):
    import keras

    model = keras.Sequential([keras.Input((5, 4, 3)), keras.layers.Conv2D(2, 3, name="c"), keras.layers.Flatten(),
                              keras.layers.Dense(2, name="d")])
    model.save(str(tmp_path / "m.keras"))
    graph = load_model(tmp_path / "m.keras")
    assert graph.input_shape == (3, 5, 4)  # (H, W, C) = (5, 4, 3) becomes channels-first
    assert graph.metadata["input_layout"] == "channels_last"
    assert graph.metadata["format"] == "keras" and graph.metadata["keras_version"]
    assert "task" not in graph.metadata  # no softmax: unknown


@requires_torch
def test_torch_module_is_not_modified_and_softmax_sets_task():
    import torch
    import torch.nn as nn

    arch = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2), nn.Softmax(dim=-1))
    before = [p.detach().clone() for p in arch.parameters()]
    graph = load_model(arch)
    assert graph.metadata == {"source": "torch.nn.modules.container.Sequential", "format": "torch",
                              "task": "classification"}
    assert all(torch.equal(a, b) for a, b in zip(before, arch.parameters()))
    assert load_model(arch, task="regression").metadata["task"] == "regression"


def test_keras2_style_legacy_h5_written_by_hand(tmp_path, rng):
    """TF-Keras 2 files: ``batch_input_shape`` on the first layer, list-style ``inbound_nodes``,
    weight names with ``:0`` and a functional model whose weights sit one group deeper."""
    import json

    import h5py

    k1, b1 = rng.normal(size=(4, 3)), rng.normal(size=3)
    k2, b2 = rng.normal(size=(3, 2)), rng.normal(size=2)
    config = {"class_name": "Functional", "config": {"name": "model", "layers": [
        {"class_name": "InputLayer", "name": "input_1", "inbound_nodes": [],
         "config": {"batch_input_shape": [None, 4], "name": "input_1"}},
        {"class_name": "Dense", "name": "dense", "inbound_nodes": [[["input_1", 0, 0, {}]]],
         "config": {"name": "dense", "units": 3, "activation": "relu", "use_bias": True}},
        {"class_name": "Dense", "name": "dense_1", "inbound_nodes": [[["dense", 0, 0, {}]]],
         "config": {"name": "dense_1", "units": 2, "activation": "linear", "use_bias": True}},
    ]}}
    path = tmp_path / "tf2.h5"
    with h5py.File(path, "w") as f:
        f.attrs["model_config"] = json.dumps(config).encode()
        f.attrs["keras_version"] = b"2.11.0"
        mw = f.create_group("model_weights")
        for name, (k, b) in {"dense": (k1, b1), "dense_1": (k2, b2)}.items():
            g = mw.create_group(name)
            g.attrs["weight_names"] = [f"{name}/kernel:0".encode(), f"{name}/bias:0".encode()]
            g[f"{name}/kernel:0"] = k
            g[f"{name}/bias:0"] = b
    graph = load_model(path)
    assert graph.metadata["format"] == "keras-h5" and graph.metadata["keras_version"] == "2.11.0"
    assert [layer.name for layer in graph] == ["input", "dense", "dense_relu", "dense_1"]
    x = rng.normal(size=(5, 4))
    np.testing.assert_allclose(evaluate(graph, x), np.maximum(x @ k1 + b1, 0) @ k2 + b2, rtol=1e-12)


@requires_torch
def test_torch_training_mode_warns_and_uses_running_statistics():
    import torch
    import torch.nn as nn

    from spikebridge.errors import ConversionWarning

    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Dropout(0.5))
    with torch.no_grad():
        model[1].running_mean.fill_(1.0)
        model[1].running_var.fill_(4.0)
    with pytest.warns(ConversionWarning, match=r"training mode.*model\.eval\(\)"):
        graph = load_model(model)
    x = np.random.default_rng(0).normal(size=(6, 3))
    with torch.no_grad():
        expected = model.eval()(torch.from_numpy(x).float()).numpy()
    np.testing.assert_allclose(evaluate(graph, x), expected, rtol=1e-5, atol=1e-6)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_model(model)  # eval mode: silent
