"""Bad inputs to every importer: each must fail with our exception and a message that says what and where."""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import h5py
import numpy as np
import pytest

from spikebridge.errors import (
    MissingDependencyError,
    ModelFormatError,
    UnsupportedLayerError,
    ValidationError,
)
from spikebridge.importers.registry import list_formats, load_model
from spikebridge.ir import save_graph
from tests._optional import requires_keras, requires_onnx, requires_sklearn, requires_torch
from tests.conftest import make_tiny_mlp


def _truncate(path: Path) -> Path:
    data = path.read_bytes()
    cut = path.with_name("cut_" + path.name)
    cut.write_bytes(data[: len(data) // 2])
    return cut


def _export(model, example, path: Path, **kwargs) -> None:
    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (example,), str(path), dynamo=False, **kwargs)


# -- unsupported layers ------------------------------------------------------------

@requires_torch
def test_torch_sigmoid_hidden_activation_is_named():
    import torch.nn as nn

    model = nn.Sequential(nn.Linear(4, 5), nn.Sigmoid(), nn.Linear(5, 2))
    with pytest.raises(UnsupportedLayerError) as info:
        load_model(model)
    msg = str(info.value)
    assert "layer '1' of type Sigmoid" in msg
    assert "supported:" in msg and "ReLU" in msg and "Linear" in msg
    assert info.value.layer == "1" and info.value.layer_type == "Sigmoid"
    assert isinstance(info.value, NotImplementedError)


@requires_torch
def test_torch_lstm_in_nested_sequential_named_by_module_path():
    import torch.nn as nn

    model = nn.Sequential(nn.Linear(4, 4), nn.Sequential(nn.ReLU(), nn.LSTM(4, 4)))
    with pytest.raises(UnsupportedLayerError, match=r"layer '1\.1' of type LSTM"):
        load_model(model)


@requires_torch
def test_torch_traced_joins_other_than_add_and_cat_are_refused():
    import torch
    import torch.nn as nn

    class Gated(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(4, 4)

        def forward(self, x):
            return self.fc(x) * x

    with pytest.raises(UnsupportedLayerError, match="'mul' of type call_function mul.*torch.add and torch.cat"):
        load_model(Gated())

    class Shifted(nn.Module):  # a sum with a constant is no residual connection
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(4, 4)

        def forward(self, x):
            return self.fc(x) + 1.0

    with pytest.raises(UnsupportedLayerError, match="'add' of type add of 1 tensor"):
        load_model(Shifted())

    class Stacked(nn.Module):
        def forward(self, x):
            return torch.cat([x, x], dim=0)

    with pytest.raises(UnsupportedLayerError, match=r"cat\(dim=0\).*batch"):
        load_model(Stacked(), input_shape=(4,))


@requires_torch
def test_torch_traced_tanh_call_is_named():
    import torch
    import torch.nn as nn

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(3, 2)

        def forward(self, x):
            return torch.tanh(self.fc(x))

    with pytest.raises(UnsupportedLayerError, match="'tanh' of type call_function tanh"):
        load_model(Net())


@requires_torch
@pytest.mark.parametrize(
    "layer_args, text",
    [
        ({"groups": 2}, "groups=2"),
        ({"dilation": 2}, r"dilation=\(2, 2\)"),
    ],
)
def test_torch_conv_options_outside_the_ir(layer_args, text):
    import torch.nn as nn

    model = nn.Sequential(nn.Conv2d(2, 4, 3, **layer_args))
    with pytest.raises(UnsupportedLayerError, match=text):
        load_model(model, input_shape=(2, 8, 8))


@requires_torch
def test_torch_even_kernel_same_padding_and_ceil_mode():
    import torch.nn as nn

    with pytest.raises(UnsupportedLayerError, match="asymmetrically"):
        load_model(nn.Sequential(nn.Conv2d(1, 1, 2, padding="same")), input_shape=(1, 4, 4))
    with pytest.raises(UnsupportedLayerError, match="ceil_mode=True"):
        load_model(nn.Sequential(nn.MaxPool2d(2, ceil_mode=True)), input_shape=(1, 5, 5))
    with pytest.raises(UnsupportedLayerError, match="count_include_pad=False"):
        load_model(nn.Sequential(nn.AvgPool2d(3, padding=1, count_include_pad=False)), input_shape=(1, 5, 5))


@requires_torch
def test_torch_batchnorm_not_after_a_weighted_layer():
    import torch.nn as nn

    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.BatchNorm1d(4)).eval()
    with pytest.raises(UnsupportedLayerError, match="layer '2' of type BatchNorm1d") as info:
        load_model(model)
    assert "follows ReLU '1'" in str(info.value)


@requires_sklearn
def test_sklearn_tanh_hidden_activation():
    from sklearn.neural_network import MLPClassifier

    X = np.random.default_rng(0).normal(size=(20, 3))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        clf = MLPClassifier(hidden_layer_sizes=(4,), activation="tanh", max_iter=5).fit(X, X[:, 0] > 0)
    with pytest.raises(UnsupportedLayerError, match=r"MLPClassifier\(activation='tanh'\)") as info:
        load_model(clf)
    assert "relu" in str(info.value)


@requires_sklearn
def test_sklearn_unfitted_estimator():
    from sklearn.neural_network import MLPRegressor

    with pytest.raises(ValidationError, match="not fitted"):
        load_model(MLPRegressor())


@requires_onnx
def test_onnx_unsupported_op_names_node_and_type(tmp_path):
    import torch.nn as nn

    path = tmp_path / "sig.onnx"
    _export(nn.Sequential(nn.Linear(3, 4), nn.Sigmoid()), __import__("torch").zeros(1, 3), path)
    with pytest.raises(UnsupportedLayerError, match="ONNX layer '/1/Sigmoid' of type Sigmoid"):
        load_model(path)


@requires_onnx
def test_onnx_average_pool_excluding_padding_is_explained(tmp_path):
    import torch
    import torch.nn as nn

    path = tmp_path / "ap.onnx"
    _export(nn.Sequential(nn.AvgPool2d(2, padding=1, count_include_pad=False)), torch.zeros(1, 1, 6, 6), path)
    with pytest.raises(UnsupportedLayerError, match="count_include_pad=0") as info:
        load_model(path)
    assert "exclude the zero padding" in str(info.value)


@requires_keras
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_keras_tanh_activation_and_lstm(tmp_path):
    import keras

    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="tanh", name="hid")])
    model.save(str(tmp_path / "tanh.keras"))
    with pytest.raises(UnsupportedLayerError, match=r"layer 'hid' of type Dense\(activation='tanh'\)"):
        load_model(tmp_path / "tanh.keras")
    lstm = keras.Sequential([keras.Input((5, 4)), keras.layers.LSTM(3, name="rnn")])
    lstm.save(str(tmp_path / "lstm.keras"))
    with pytest.raises(UnsupportedLayerError, match="layer 'rnn' of type LSTM"):
        load_model(tmp_path / "lstm.keras")


@requires_keras
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_keras_same_padding_with_even_kernel(tmp_path):
    import keras

    model = keras.Sequential([keras.Input((6, 6, 1)), keras.layers.Conv2D(2, 2, padding="same", name="c")])
    model.save(str(tmp_path / "even.keras"))
    with pytest.raises(UnsupportedLayerError, match="asymmetrically"):
        load_model(tmp_path / "even.keras")


@requires_keras
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_keras_merge_other_than_add_and_concatenate_refused(tmp_path):
    import keras

    inp = keras.Input((4,))
    a = keras.layers.Dense(3, name="a")(inp)
    b = keras.layers.Dense(3, name="b")(inp)
    model = keras.Model(inp, keras.layers.Multiply(name="prod")([a, b]))
    model.save(str(tmp_path / "branch.keras"))
    with pytest.raises(UnsupportedLayerError, match="'prod' of type Multiply.*only Add and Concatenate join"):
        load_model(tmp_path / "branch.keras")


# -- NaN weights: the message names the file/model and the layer --------------------

@requires_torch
def test_torch_nan_weight():
    import torch
    import torch.nn as nn

    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    with torch.no_grad():
        model[2].weight[1, 2] = float("nan")
    with pytest.raises(ValidationError) as info:
        load_model(model)
    msg = str(info.value)
    assert msg.startswith("PyTorch model 'Sequential'") and "layer '2'" in msg
    assert "NaN or Inf" in msg and "(1, 2)" in msg


@requires_onnx
def test_onnx_nan_weight_names_file(tmp_path):
    import torch
    import torch.nn as nn

    model = nn.Sequential(nn.Linear(3, 4))
    with torch.no_grad():
        model[0].bias[0] = float("inf")
    path = tmp_path / "nan.onnx"
    _export(model, torch.zeros(1, 3), path)
    with pytest.raises(ValidationError, match=r"ONNX file '.*nan\.onnx': layer '/0/Gemm': bias contains 1 non-finite"):
        load_model(path)


@requires_keras
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_keras_h5_nan_weight_names_file_and_layer(tmp_path):
    import keras

    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, name="fc")])
    w, b = model.get_layer("fc").get_weights()
    w[0, 1] = np.nan
    model.get_layer("fc").set_weights([w, b])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.save(str(tmp_path / "nan.h5"))
    with pytest.raises(ValidationError, match=r"Keras file '.*nan\.h5': layer 'fc': weight contains"):
        load_model(tmp_path / "nan.h5")


@requires_sklearn
def test_sklearn_nan_coefficients():
    from sklearn.neural_network import MLPRegressor

    X = np.random.default_rng(0).normal(size=(20, 3))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reg = MLPRegressor(hidden_layer_sizes=(4,), max_iter=5).fit(X, X[:, 0])
    reg.coefs_[1][2, 0] = np.nan
    with pytest.raises(ValidationError, match="scikit-learn MLPRegressor: layer 'fc2': weight contains 1 non-finite"):
        load_model(reg)


# -- shapes ------------------------------------------------------------------------

@requires_torch
def test_torch_cnn_needs_input_shape_and_wrong_shape_is_named():
    import torch.nn as nn

    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten(), nn.Linear(2 * 4 * 4, 3))
    with pytest.raises(ValidationError, match=r"input_shape is required .* pass input_shape=\(1, H, W\)"):
        load_model(model)
    with pytest.raises(ValidationError) as info:
        load_model(model, input_shape=(1, 7, 7))
    msg = str(info.value)
    assert "Dense '2'" in msg and "(3, 32)" in msg and "(50,)" in msg
    with pytest.raises(ValidationError, match="expects 1 input channels"):
        load_model(model, input_shape=(3, 6, 6))


@requires_torch
def test_torch_view_to_wrong_size():
    import torch.nn as nn

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(1, 2, 3)
            self.fc = nn.Linear(32, 2)

        def forward(self, x):
            return self.fc(self.conv(x).view(-1, 32))

    load_model(Net(), input_shape=(1, 6, 6))  # 2 * 4 * 4 = 32 fits
    with pytest.raises(ValidationError, match="view"):
        load_model(Net(), input_shape=(1, 7, 7))


@requires_onnx
def test_onnx_symbolic_non_batch_dims_need_input_shape(tmp_path):
    import torch
    import torch.nn as nn

    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2, 2))
    path = tmp_path / "dyn.onnx"
    _export(model, torch.zeros(1, 1, 6, 6), path, input_names=["x"], dynamic_axes={"x": {0: "n", 2: "h", 3: "w"}})
    with pytest.raises(ValidationError, match=r"input 'x' has dims \['\?', 1, '\?', '\?'\]"):
        load_model(path)
    graph = load_model(path, input_shape=(1, 9, 9))
    assert graph.input_shape == (1, 9, 9) and graph.output_shape == (2,)


# -- truncated, foreign and newer files ----------------------------------------------

@requires_onnx
def test_truncated_onnx(tmp_path):
    import torch
    import torch.nn as nn

    path = tmp_path / "m.onnx"
    _export(nn.Sequential(nn.Linear(30, 20), nn.ReLU(), nn.Linear(20, 3)), torch.zeros(1, 30), path)
    with pytest.raises(ModelFormatError, match="could not be parsed|not a valid ONNX|holds no graph"):
        load_model(_truncate(path))


@requires_keras
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_truncated_keras_files(tmp_path):
    import keras

    model = keras.Sequential([keras.Input((30,)), keras.layers.Dense(20), keras.layers.Dense(3)])
    model.save(str(tmp_path / "m.keras"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.save(str(tmp_path / "m.h5"))
    with pytest.raises(ModelFormatError, match="not a readable .keras zip archive"):
        load_model(_truncate(tmp_path / "m.keras"))
    with pytest.raises(ModelFormatError, match="not a readable HDF5 file"):
        load_model(_truncate(tmp_path / "m.h5"))
    with pytest.raises(ModelFormatError, match="not a readable HDF5 file"):
        load_model(_truncate(tmp_path / "m.h5"), format="keras-h5")


@requires_torch
def test_truncated_and_pickled_torch_files(tmp_path):
    import torch
    import torch.nn as nn

    model = nn.Sequential(nn.Linear(30, 20), nn.ReLU(), nn.Linear(20, 3))
    torch.save(model.state_dict(), tmp_path / "m.pt")
    with pytest.raises(ModelFormatError, match="could not be read as a state dict"):
        load_model(_truncate(tmp_path / "m.pt"), architecture=model)
    with pytest.raises(ValidationError, match="architecture="):
        load_model(tmp_path / "m.pt")
    with pytest.raises(ModelFormatError, match="does not fit architecture"):
        load_model(tmp_path / "m.pt", architecture=nn.Sequential(nn.Linear(30, 5)))
    torch.save(model, tmp_path / "whole.pt")  # a pickled module: refused, never unpickled
    with pytest.raises(ModelFormatError, match="never unpickles"):
        load_model(tmp_path / "whole.pt", architecture=model)


def test_truncated_own_file(tmp_path):
    path = tmp_path / "m.h5"
    save_graph(make_tiny_mlp(sizes=(60, 40, 10)), path)
    with pytest.raises(ModelFormatError, match="not a readable HDF5 file"):
        load_model(_truncate(path))
    with pytest.raises(ModelFormatError, match="not a readable HDF5 file"):
        load_model(_truncate(path), format="spikebridge")


def test_foreign_hdf5_file_lists_what_was_expected(tmp_path):
    path = tmp_path / "foreign.h5"
    with h5py.File(path, "w") as f:
        f["data"] = np.arange(3)
        f.attrs["creator"] = "someone else"
    with pytest.raises(ModelFormatError) as info:
        load_model(path)
    msg = str(info.value)
    assert "cannot tell the format" in msg
    assert "format='spikebridge.ann'" in msg and "model_config" in msg
    with pytest.raises(ModelFormatError, match="found no 'format' attribute"):
        load_model(path, format="spikebridge")
    with pytest.raises(ModelFormatError, match="no 'model_config' attribute"):
        load_model(path, format="keras-h5")


def test_newer_format_version_is_refused(tmp_path):
    path = tmp_path / "new.h5"
    save_graph(make_tiny_mlp(), path)
    with h5py.File(path, "a") as f:
        f.attrs["format_version"] = 99
    with pytest.raises(ModelFormatError, match="format_version 99.*upgrade spikebridge"):
        load_model(path)


def test_unknown_suffix_object_and_format_name(tmp_path):
    path = tmp_path / "model.xyz"
    path.write_bytes(b"hello")
    with pytest.raises(ModelFormatError, match=r"unknown model file suffix '\.xyz'.*onnx \(\.onnx\)"):
        load_model(path)
    with pytest.raises(ModelFormatError, match=r"object of type builtins\.dict.*known formats: torch"):
        load_model({"weights": [1, 2]})
    with pytest.raises(ModelFormatError, match="unknown model format 'caffe'; known formats"):
        load_model(path, format="caffe")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_model(tmp_path / "missing.onnx")


# -- missing optional packages ----------------------------------------------------

@pytest.mark.parametrize(
    "module, suffix, extra",
    [("torch", ".pt", "torch"), ("onnx", ".onnx", "onnx")],
)
def test_missing_framework_gives_pip_hint(monkeypatch, tmp_path, module, suffix, extra):
    path = tmp_path / f"model{suffix}"
    path.write_bytes(b"\x00" * 16)
    monkeypatch.setitem(sys.modules, module, None)  # makes `import module` fail like an absent package
    with pytest.raises(MissingDependencyError) as info:
        load_model(path)
    assert str(info.value).endswith(f'pip install "spikebridge[{extra}]"')
    assert isinstance(info.value, ImportError)
    formats = {f["name"]: f for f in list_formats()}
    assert formats[extra]["available"] is False
    assert formats[extra]["extra"] == extra
    assert formats["spikebridge"]["available"] is True and formats["keras"]["available"] is True


@requires_sklearn
def test_missing_sklearn_gives_pip_hint(monkeypatch):
    from sklearn.neural_network import MLPRegressor

    X = np.random.default_rng(0).normal(size=(20, 3))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reg = MLPRegressor(hidden_layer_sizes=(4,), max_iter=5).fit(X, X[:, 0])
    monkeypatch.setitem(sys.modules, "sklearn", None)
    with pytest.raises(MissingDependencyError, match=r'pip install "spikebridge\[sklearn\]"$'):
        load_model(reg)


def test_keras_h5_batchnorm_without_moving_statistics_is_a_format_error(tmp_path):
    """A BatchNormalization whose file lacks moving_mean/moving_variance names the layer."""
    import json

    import h5py
    import numpy as np

    from spikebridge import ModelFormatError, load_model

    rng = np.random.default_rng(0)
    config = {"class_name": "Functional", "config": {"name": "model", "layers": [
        {"class_name": "InputLayer", "name": "input_1", "inbound_nodes": [],
         "config": {"batch_input_shape": [None, 4], "name": "input_1"}},
        {"class_name": "Dense", "name": "dense", "inbound_nodes": [[["input_1", 0, 0, {}]]],
         "config": {"name": "dense", "units": 3, "activation": "linear", "use_bias": True}},
        {"class_name": "BatchNormalization", "name": "bn", "inbound_nodes": [[["dense", 0, 0, {}]]],
         "config": {"name": "bn", "axis": -1}},
    ]}}
    path = tmp_path / "bn.h5"
    with h5py.File(path, "w") as f:
        f.attrs["model_config"] = json.dumps(config).encode()
        mw = f.create_group("model_weights")
        g = mw.create_group("dense")
        g.attrs["weight_names"] = [b"dense/kernel:0", b"dense/bias:0"]
        g["dense/kernel:0"] = rng.normal(size=(4, 3))
        g["dense/bias:0"] = rng.normal(size=3)
        g = mw.create_group("bn")
        g.attrs["weight_names"] = [b"bn/gamma:0", b"bn/beta:0"]
        g["bn/gamma:0"] = np.ones(3)
        g["bn/beta:0"] = np.zeros(3)
    with pytest.raises(ModelFormatError, match="BatchNormalization 'bn'.*moving_mean"):
        load_model(path)
