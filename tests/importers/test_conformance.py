"""One conformance battery run against every importer (scikit-learn's ``parametrize_with_checks`` idea).

Every case writes a real model with the real framework (or builds the live object), imports it
with :func:`spikebridge.load_model`, and checks that the graph validates, its shapes agree with the
framework's output, ``evaluate()`` matches the framework's own forward pass (float32 frameworks:
rtol 1e-5 and atol 1e-5 relative to the output scale) and that the graph survives our HDF5 format.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from spikebridge.importers.registry import load_model
from spikebridge.ir import AnnGraph, evaluate, save_graph
from tests._optional import requires_keras, requires_onnx, requires_sklearn, requires_torch


@dataclass
class Made:
    source: Any
    x: np.ndarray  # inputs in the graph's layout (channels-first)
    ref: np.ndarray  # the framework's own output for x
    fmt: str
    kwargs: dict[str, Any] = field(default_factory=dict)
    post: Callable[[np.ndarray], np.ndarray] = staticmethod(lambda y: y)  # graph output -> framework output
    n_weighted: int = 0  # Dense/Conv2d layers expected after folding


# -- torch -------------------------------------------------------------------------

def _randomise_bn(module) -> None:
    import torch

    gen = torch.Generator().manual_seed(3)
    for m in module.modules():
        if isinstance(m, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
            n = m.num_features
            with torch.no_grad():
                m.running_mean.copy_(torch.randn(n, generator=gen) * 0.3)
                m.running_var.copy_(torch.rand(n, generator=gen) + 0.5)
                m.weight.copy_(torch.rand(n, generator=gen) + 0.5)
                m.bias.copy_(torch.randn(n, generator=gen) * 0.2)


def _torch_ref(model, x: np.ndarray) -> np.ndarray:
    import torch

    with torch.no_grad():
        return model(torch.from_numpy(x.astype(np.float32))).numpy().astype(np.float64)


def _torch_mlp():
    import torch.nn as nn

    return nn.Sequential(nn.Linear(6, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Dropout(0.2),
                         nn.Sequential(nn.Linear(16, 8), nn.ReLU()), nn.Linear(8, 3))


def _torch_cnn():
    import torch.nn as nn

    return nn.Sequential(
        nn.Conv2d(2, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(4, 6, 3, stride=1, padding="same"), nn.ReLU(), nn.AvgPool2d(2),
        nn.Conv2d(6, 5, 1), nn.ReLU(), nn.AdaptiveAvgPool2d((1, 1)), nn.Flatten(), nn.Linear(5, 3),
    )


def _torch_custom():
    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.features = nn.Sequential(nn.Conv2d(1, 3, 3), nn.BatchNorm2d(3))
            self.fc1 = nn.Linear(3 * 3 * 3, 10)
            self.drop = nn.Dropout(0.5)
            self.fc2 = nn.Linear(10, 4)

        def forward(self, x):
            x = torch.relu(self.features(x))
            x = F.max_pool2d(x, 2)
            x = x.view(x.size(0), -1)
            x = F.relu(self.drop(self.fc1(x)))
            return self.fc2(x)

    return Net()


def make_torch_mlp(tmp: Path, rng: np.random.Generator) -> Made:
    import torch

    torch.manual_seed(0)
    model = _torch_mlp()
    _randomise_bn(model)
    model.eval()
    x = rng.normal(size=(7, 6))
    return Made(model, x, _torch_ref(model, x), "torch", n_weighted=3)


def make_torch_cnn(tmp: Path, rng: np.random.Generator) -> Made:
    import torch

    torch.manual_seed(1)
    model = _torch_cnn()
    _randomise_bn(model)
    model.eval()
    x = rng.normal(size=(5, 2, 8, 8))
    return Made(model, x, _torch_ref(model, x), "torch", kwargs={"input_shape": (2, 8, 8)}, n_weighted=4)


def make_torch_fx(tmp: Path, rng: np.random.Generator) -> Made:
    import torch

    torch.manual_seed(2)
    model = _torch_custom()
    _randomise_bn(model)
    model.eval()
    x = rng.normal(size=(5, 1, 8, 8))
    return Made(model, x, _torch_ref(model, x), "torch", kwargs={"input_shape": (1, 8, 8)}, n_weighted=3)


def make_torch_state_dict(tmp: Path, rng: np.random.Generator) -> Made:
    import torch

    torch.manual_seed(4)
    model = _torch_cnn()
    _randomise_bn(model)
    model.eval()
    path = tmp / "cnn.pt"
    torch.save(model.state_dict(), path)
    torch.manual_seed(99)
    fresh = _torch_cnn()  # other random weights: the file must supply them
    x = rng.normal(size=(4, 2, 8, 8))
    return Made(path, x, _torch_ref(model, x), "torch", kwargs={"architecture": fresh, "input_shape": (2, 8, 8)},
                n_weighted=4)


# -- ONNX (written by torch.onnx.export; torch 2.13 needs dynamo=False without onnxscript) ----

def _export(model, example, path: Path, **kwargs) -> None:
    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (example,), str(path), dynamo=False, **kwargs)


def make_onnx_mlp(tmp: Path, rng: np.random.Generator) -> Made:
    import torch

    torch.manual_seed(5)
    model = _torch_mlp()
    _randomise_bn(model)
    model.eval()
    path = tmp / "mlp.onnx"
    # without constant folding the BatchNormalization node stays in the file and must be folded by us
    _export(model, torch.zeros(1, 6), path, do_constant_folding=False)
    x = rng.normal(size=(6, 6))
    return Made(path, x, _torch_ref(model, x), "onnx", n_weighted=3)


def make_onnx_cnn(tmp: Path, rng: np.random.Generator) -> Made:
    import torch

    torch.manual_seed(6)
    model = _torch_custom()
    _randomise_bn(model)
    model.eval()
    path = tmp / "cnn.onnx"
    # a dynamic batch axis makes x.view(x.size(0), -1) export as Shape/Gather/Concat/Reshape
    _export(model, torch.zeros(2, 1, 8, 8), path, input_names=["x"], output_names=["y"],
            dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}})
    x = rng.normal(size=(5, 1, 8, 8))
    return Made(path, x, _torch_ref(model, x), "onnx", n_weighted=3)


def make_onnx_gap(tmp: Path, rng: np.random.Generator) -> Made:
    import torch

    torch.manual_seed(7)
    model = torch.nn.Sequential(_torch_cnn(), torch.nn.Softmax(dim=1))
    _randomise_bn(model)
    model.eval()
    path = tmp / "gap.onnx"
    _export(model, torch.zeros(1, 2, 8, 8), path, do_constant_folding=False)
    x = rng.normal(size=(3, 2, 8, 8))
    return Made(path, x, _torch_ref(model, x), "onnx", n_weighted=4)


# -- branching models: ResNet-style residual sums (identity and 1x1 conv + BN projection) and a concat --

def _torch_resnet():
    from tests._dag import torch_resnet

    model = torch_resnet(seed=11, in_channels=2, n_classes=4)
    _randomise_bn(model)
    return model.eval()


def make_torch_resnet(tmp: Path, rng: np.random.Generator) -> Made:
    model = _torch_resnet()
    x = rng.normal(size=(5, 2, 8, 8))
    return Made(model, x, _torch_ref(model, x), "torch", kwargs={"input_shape": (2, 8, 8)}, n_weighted=8)


def make_onnx_resnet(tmp: Path, rng: np.random.Generator) -> Made:
    import torch

    model = _torch_resnet()
    path = tmp / "resnet.onnx"
    # unfolded: the BatchNormalization nodes of both paths, and the Add / Concat joins, stay in the file
    _export(model, torch.zeros(1, 2, 8, 8), path, do_constant_folding=False)
    x = rng.normal(size=(4, 2, 8, 8))
    return Made(path, x, _torch_ref(model, x), "onnx", n_weighted=8)


# -- Keras 3 (torch backend) writing .keras and legacy .h5 ---------------------------

def _keras_cnn():
    import keras

    rng = np.random.default_rng(8)
    keras.utils.set_random_seed(8)
    inp = keras.Input((8, 8, 2))
    x = keras.layers.Conv2D(4, 3, padding="same", name="conv1")(inp)
    x = keras.layers.BatchNormalization(name="bn1")(x)
    x = keras.layers.Activation("relu", name="act1")(x)
    x = keras.layers.MaxPooling2D(2, name="pool1")(x)
    x = keras.layers.Conv2D(5, 3, strides=1, padding="valid", activation="relu", name="conv2")(x)
    x = keras.layers.AveragePooling2D(1, name="pool2")(x)
    x = keras.layers.Flatten(name="flat")(x)
    x = keras.layers.Dropout(0.3, name="drop")(x)
    x = keras.layers.Dense(6, name="fc1")(x)
    x = keras.layers.BatchNormalization(name="bn2")(x)
    x = keras.layers.ReLU(name="relu2")(x)
    x = keras.layers.Dense(3, activation="softmax", name="out")(x)
    model = keras.Model(inp, x, name="kcnn")
    for name in ("bn1", "bn2"):
        layer = model.get_layer(name)
        n = layer.get_weights()[0].shape[0]
        layer.set_weights([rng.uniform(0.5, 1.5, n), rng.normal(0, 0.2, n), rng.normal(0, 0.3, n), rng.uniform(0.5, 1.5, n)])
    return model


def _keras_mlp():
    import keras

    keras.utils.set_random_seed(9)
    return keras.Sequential([keras.Input((5,)), keras.layers.Dense(8, activation="relu"), keras.layers.Dropout(0.1),
                             keras.layers.Dense(4, activation="relu"), keras.layers.Dense(2)], name="kmlp")


def _keras_made(model, path: Path, x_keras: np.ndarray, fmt: str, n_weighted: int) -> Made:
    model.save(str(path))
    ref = np.asarray(model.predict(x_keras.astype(np.float32), verbose=0), dtype=np.float64)
    x = x_keras.transpose(0, 3, 1, 2) if x_keras.ndim == 4 else x_keras  # users transpose channels-last inputs
    return Made(path, x, ref, fmt, n_weighted=n_weighted)


def make_keras_v3_cnn(tmp: Path, rng: np.random.Generator) -> Made:
    return _keras_made(_keras_cnn(), tmp / "cnn.keras", rng.normal(size=(5, 8, 8, 2)), "keras", 4)


def make_keras_h5_cnn(tmp: Path, rng: np.random.Generator) -> Made:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return _keras_made(_keras_cnn(), tmp / "cnn.h5", rng.normal(size=(5, 8, 8, 2)), "keras-h5", 4)


def make_keras_v3_mlp(tmp: Path, rng: np.random.Generator) -> Made:
    return _keras_made(_keras_mlp(), tmp / "mlp.keras", rng.normal(size=(6, 5)), "keras", 3)


def make_keras_h5_mlp(tmp: Path, rng: np.random.Generator) -> Made:
    return _keras_made(_keras_mlp(), tmp / "mlp.h5", rng.normal(size=(6, 5)), "keras-h5", 3)


def _keras_resnet():
    import keras

    rng = np.random.default_rng(12)
    keras.utils.set_random_seed(12)
    L = keras.layers
    inp = keras.Input((9, 9, 2))  # odd size: 'same' padding with stride 2 is symmetric here
    x = L.Activation("relu", name="r0")(L.BatchNormalization(name="bn0")(L.Conv2D(4, 3, padding="same", name="stem")(inp)))
    y = L.Conv2D(4, 3, padding="same", activation="relu", name="b1c1")(x)
    y = L.Conv2D(4, 3, padding="same", name="b1c2")(y)
    x = L.ReLU(name="r1")(L.Add(name="add1")([y, x]))
    y = L.Conv2D(6, 3, strides=2, padding="same", activation="relu", name="b2c1")(x)
    y = L.BatchNormalization(name="bn2")(L.Conv2D(6, 3, padding="same", name="b2c2")(y))
    s = L.BatchNormalization(name="bn_sc")(L.Conv2D(6, 1, strides=2, name="sc")(x))
    x = L.ReLU(name="r2")(L.Add(name="add2")([y, s]))
    side = L.Conv2D(3, 1, activation="relu", name="side")(x)
    x = L.Concatenate(name="cat")([x, side])  # axis=-1: channels
    x = L.GlobalAveragePooling2D(name="gap")(x)
    out = L.Dense(4, activation="softmax", name="out")(x)
    model = keras.Model(inp, out, name="kresnet")
    for name in ("bn0", "bn2", "bn_sc"):
        layer = model.get_layer(name)
        n = layer.get_weights()[0].shape[0]
        layer.set_weights([rng.uniform(0.5, 1.5, n), rng.normal(0, 0.2, n), rng.normal(0, 0.3, n), rng.uniform(0.5, 1.5, n)])
    return model


def make_keras_v3_resnet(tmp: Path, rng: np.random.Generator) -> Made:
    return _keras_made(_keras_resnet(), tmp / "resnet.keras", rng.normal(size=(5, 9, 9, 2)), "keras", 8)


def make_keras_h5_resnet(tmp: Path, rng: np.random.Generator) -> Made:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return _keras_made(_keras_resnet(), tmp / "resnet.h5", rng.normal(size=(5, 9, 9, 2)), "keras-h5", 8)


# -- scikit-learn ------------------------------------------------------------------

def _blobs(rng: np.random.Generator, n_classes: int, n: int = 60) -> tuple[np.ndarray, np.ndarray]:
    centres = rng.normal(0, 3, size=(n_classes, 4))
    y = np.arange(n) % n_classes
    return centres[y] + rng.normal(size=(n, 4)), y


def _fit(est, X, y):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning on purpose-small max_iter
        return est.fit(X, y)


def make_sklearn_multiclass(tmp: Path, rng: np.random.Generator) -> Made:
    from sklearn.neural_network import MLPClassifier

    X, y = _blobs(rng, 3)
    clf = _fit(MLPClassifier(hidden_layer_sizes=(8, 6), max_iter=200, random_state=0), X, y)
    return Made(clf, X[:10], clf.predict_proba(X[:10]), "sklearn", n_weighted=3)


def make_sklearn_binary(tmp: Path, rng: np.random.Generator) -> Made:
    from sklearn.neural_network import MLPClassifier

    X, y = _blobs(rng, 2)
    clf = _fit(MLPClassifier(hidden_layer_sizes=(5,), max_iter=200, random_state=0), X, y)
    return Made(clf, X[:10], clf.predict_proba(X[:10])[:, 1:], "sklearn", post=lambda z: 1 / (1 + np.exp(-z)),
                n_weighted=2)


def make_sklearn_regressor(tmp: Path, rng: np.random.Generator) -> Made:
    from sklearn.neural_network import MLPRegressor

    X = rng.normal(size=(50, 3))
    y = X @ np.array([1.0, -2.0, 0.5])
    reg = _fit(MLPRegressor(hidden_layer_sizes=(7,), max_iter=300, random_state=0), X, y)
    return Made(reg, X[:10], reg.predict(X[:10])[:, None], "sklearn", n_weighted=2)


# -- our own format ----------------------------------------------------------------

def make_spikebridge_h5(tmp: Path, rng: np.random.Generator) -> Made:
    from tests.conftest import make_tiny_cnn

    g = make_tiny_cnn(seed=3)
    path = tmp / "own.h5"
    save_graph(g, path)
    x = rng.normal(size=(4, 1, 6, 6))
    return Made(path, x, evaluate(g, x), "spikebridge", n_weighted=2)


_keras = [requires_keras, pytest.mark.filterwarnings("ignore::DeprecationWarning")]  # keras-internal numpy 2 notes

CASES = [
    pytest.param(make_torch_mlp, id="torch-sequential-mlp-bn1d", marks=requires_torch),
    pytest.param(make_torch_cnn, id="torch-sequential-cnn-bn2d", marks=requires_torch),
    pytest.param(make_torch_fx, id="torch-fx-custom-module", marks=requires_torch),
    pytest.param(make_torch_state_dict, id="torch-state-dict-file", marks=requires_torch),
    pytest.param(make_onnx_mlp, id="onnx-mlp-batchnorm-node", marks=requires_onnx),
    pytest.param(make_onnx_cnn, id="onnx-cnn-dynamic-batch-view", marks=requires_onnx),
    pytest.param(make_onnx_gap, id="onnx-cnn-gap-softmax", marks=requires_onnx),
    pytest.param(make_torch_resnet, id="torch-fx-resnet-add-cat", marks=requires_torch),
    pytest.param(make_onnx_resnet, id="onnx-resnet-add-concat-bn", marks=requires_onnx),
    pytest.param(make_keras_v3_resnet, id="keras-v3-functional-resnet", marks=_keras),
    pytest.param(make_keras_h5_resnet, id="keras-h5-functional-resnet", marks=_keras),
    pytest.param(make_keras_v3_cnn, id="keras-v3-functional-cnn", marks=_keras),
    pytest.param(make_keras_h5_cnn, id="keras-h5-functional-cnn", marks=_keras),
    pytest.param(make_keras_v3_mlp, id="keras-v3-sequential-mlp", marks=_keras),
    pytest.param(make_keras_h5_mlp, id="keras-h5-sequential-mlp", marks=_keras),
    pytest.param(make_sklearn_multiclass, id="sklearn-mlp-multiclass", marks=requires_sklearn),
    pytest.param(make_sklearn_binary, id="sklearn-mlp-binary", marks=requires_sklearn),
    pytest.param(make_sklearn_regressor, id="sklearn-mlp-regressor", marks=requires_sklearn),
    pytest.param(make_spikebridge_h5, id="spikebridge-h5-round-trip"),
]


@pytest.mark.parametrize("make", CASES)
def test_importer_conformance(make, tmp_path, rng):
    made = make(tmp_path, rng)
    graph = load_model(made.source, **made.kwargs)

    # the output validates: a graph with consistent shapes and provenance metadata
    assert isinstance(graph, AnnGraph)
    assert graph.metadata["format"] == made.fmt
    assert graph.metadata["source"]
    assert graph.input_shape == made.x.shape[1:]
    assert graph.output_shape == made.ref.shape[1:]
    assert sum(layer.has_weights for layer in graph) == made.n_weighted
    assert len({layer.name for layer in graph}) == len(graph)

    # evaluate() matches the framework's own forward pass
    out = evaluate(graph, made.x)
    assert out.shape == (made.x.shape[0], *graph.output_shape)
    got = made.post(out)
    scale = max(1.0, float(np.abs(made.ref).max()))
    np.testing.assert_allclose(got, made.ref, rtol=1e-5, atol=1e-5 * scale)
    assert np.ptp(made.ref) > 1e-3, "reference outputs must vary, or the comparison says nothing"

    # and it survives our own HDF5 format unchanged
    path = tmp_path / "roundtrip.h5"
    save_graph(graph, path)
    again = load_model(path)
    assert [(layer.name, layer.type_name) for layer in again] == [(layer.name, layer.type_name) for layer in graph]
    np.testing.assert_array_equal(evaluate(again, made.x), out)
    assert again.metadata.get("task") == graph.metadata.get("task")
