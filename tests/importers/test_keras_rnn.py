"""Keras SimpleRNN(activation="relu") from .h5 and .keras files, read with h5py/zipfile only.

The files are written by hand with h5py (the layouts Keras 2/3 write: weights of a recurrent layer
in its cell) and checked against a numpy re-implementation of the Keras recurrence; where the
``keras`` package is installed, real Keras-saved files are checked against ``model.predict``.
"""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest

from spikebridge.config import ConversionConfig, SimulationConfig
from spikebridge.conversion.convert import convert
from spikebridge.engines.reference import simulate_reference
from spikebridge.errors import UnsupportedLayerError
from spikebridge.importers.from_keras import from_keras
from spikebridge.ir import evaluate
from spikebridge.run.simulate import simulate

from ..engines.test_tensor import assert_same_spikes

T, N_IN = 6, 3


def keras_simple_rnn(x: np.ndarray, kernel: np.ndarray, rec: np.ndarray, bias: np.ndarray | None) -> np.ndarray:
    """Keras' SimpleRNN with ReLU, every output: ``h_t = relu(x_t K + h_{t-1} R + b)``; x (N, T, n)."""
    h = np.zeros((x.shape[0], kernel.shape[1]))
    out = []
    for t in range(x.shape[1]):
        h = np.maximum(x[:, t] @ kernel + h @ rec + (0 if bias is None else bias), 0.0)
        out.append(h)
    return np.stack(out, axis=1)


def _weights(rng: np.random.Generator, n_in: int, units: int, bias: bool = True) -> list[np.ndarray]:
    k = rng.normal(0.2, 0.5, (n_in, units))
    r = 0.5 * np.eye(units) + rng.normal(0, 0.2, (units, units))
    return [k, r, rng.normal(0, 0.2, units)] if bias else [k, r]


def _layers(spec: list[tuple[str, dict]], activation: str = "relu") -> list[dict]:
    """Sequential layer configs: ("rnn", {...}) or ("dense", {...})."""
    out: list[dict] = [{"class_name": "InputLayer", "config": {"name": "inp", "batch_shape": [None, T, N_IN]}}]
    for kind, cfg in spec:
        if kind == "rnn":
            out.append({"class_name": cfg.get("cls", "SimpleRNN"), "config": {
                "name": cfg["name"], "units": cfg["units"], "activation": cfg.get("activation", activation),
                "use_bias": cfg.get("bias", True), "return_sequences": cfg.get("seqs", False),
                "go_backwards": cfg.get("go_backwards", False), "stateful": False, "return_state": False}})
        else:
            out.append({"class_name": "Dense", "config": {"name": cfg["name"], "units": cfg["units"],
                                                          "activation": "linear", "use_bias": True}})
    return out


def _write_h5(path: Path, layers: list[dict], weights: dict[str, list[np.ndarray]]) -> None:
    """A Keras 2 style whole-model .h5 (weights named '<layer>/<cell>/kernel:0')."""
    with h5py.File(path, "w") as f:
        f.attrs["model_config"] = json.dumps({"class_name": "Sequential", "config": {"name": "krnn", "layers": layers}})
        mw = f.create_group("model_weights")
        for lname, arrays in weights.items():
            g = mw.create_group(lname)
            cls = next(layer["class_name"] for layer in layers if layer["config"]["name"] == lname)
            names = (["kernel", "recurrent_kernel", "bias"] if cls != "Dense" else ["kernel", "bias"])[: len(arrays)]
            prefix = f"{lname}/simple_rnn_cell" if cls != "Dense" else lname
            g.attrs["weight_names"] = [f"{prefix}/{n}:0".encode() for n in names]
            for n, a in zip(names, arrays):
                g[f"{prefix}/{n}:0"] = a


def _write_keras(path: Path, layers: list[dict], weights: dict[str, list[np.ndarray]]) -> None:
    """A Keras 3 style archive: a SimpleRNN's variables in layers/<group>/cell/vars/0.., its own vars empty."""
    buf = io.BytesIO()
    with h5py.File(buf, "w") as f:
        counts: dict[str, int] = {}
        for layer in layers[1:]:
            cls, lname = layer["class_name"], layer["config"]["name"]
            snake = "simple_rnn" if cls == "SimpleRNN" else "dense"
            k = counts.get(snake, 0)
            counts[snake] = k + 1
            g = f.create_group(f"layers/{snake}" + (f"_{k}" if k else ""))
            g.create_group("vars").attrs["name"] = lname
            target = g["vars"] if cls == "Dense" else g.create_group("cell/vars")
            if cls != "Dense":
                target.attrs["name"] = "simple_rnn_cell"  # the same for every cell: not a unique key
            for i, a in enumerate(weights[lname]):
                target[str(i)] = a
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("config.json", json.dumps({"class_name": "Sequential", "config": {"name": "krnn", "layers": layers}}))
        z.writestr("metadata.json", json.dumps({"keras_version": "3.5.0"}))
        z.writestr("model.weights.h5", buf.getvalue())


def _model(rng: np.random.Generator, seqs: bool, stacked: bool):
    spec: list[tuple[str, dict]] = [("rnn", {"name": "rnn", "units": 5, "seqs": seqs or stacked, "bias": not stacked})]
    weights = {"rnn": _weights(rng, N_IN, 5, bias=not stacked)}
    if stacked:
        spec.append(("rnn", {"name": "rnn2", "units": 4, "seqs": seqs}))
        weights["rnn2"] = _weights(rng, 5, 4)
    units = 4 if stacked else 5
    spec.append(("dense", {"name": "fc", "units": 2}))
    weights["fc"] = [rng.normal(0, 1, (units, 2)), rng.normal(0, 0.1, 2)]

    def oracle(x: np.ndarray) -> np.ndarray:
        w = weights["rnn"]
        h = keras_simple_rnn(x, w[0], w[1], w[2] if len(w) > 2 else None)
        if stacked:
            h = keras_simple_rnn(h, *weights["rnn2"])
        h = h if seqs else h[:, -1]
        return h @ weights["fc"][0] + weights["fc"][1]

    return _layers(spec), weights, oracle


@pytest.mark.parametrize("fmt", ["h5", "keras"])
@pytest.mark.parametrize("seqs,stacked", [(False, False), (True, False), (False, True), (True, True)])
def test_hand_written_simple_rnn_matches_numpy(tmp_path, fmt, seqs, stacked):
    layers, weights, oracle = _model(np.random.default_rng(4), seqs, stacked)
    path = tmp_path / f"m.{fmt}"
    (_write_h5 if fmt == "h5" else _write_keras)(path, layers, weights)
    g = from_keras(path)
    assert [layer.type_name for layer in g] == ["Input", "RNN"] + ["RNN"] * stacked + ["Dense"]
    x = np.random.default_rng(5).normal(0.3, 1.0, (7, T, N_IN))
    ref = oracle(x)
    assert ref.shape == ((7, T, 2) if seqs else (7, 2)) and np.abs(ref).max() > 0.5
    np.testing.assert_allclose(evaluate(g, x), ref, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("cls,act,why", [("SimpleRNN", "tanh", "tanh and sigmoid"), ("SimpleRNN", "sigmoid", "tanh and sigmoid"),
                                         ("LSTM", "tanh", "gates multiply"), ("GRU", "tanh", "gates multiply")])
def test_gated_and_saturating_refused_in_one_line(tmp_path, cls, act, why):
    layers = _layers([("rnn", {"name": "rec", "units": 4, "cls": cls, "activation": act}), ("dense", {"name": "fc", "units": 2})])
    path = tmp_path / "m.h5"
    _write_h5(path, layers, {})
    with pytest.raises(UnsupportedLayerError, match=why) as err:
        from_keras(path)
    msg = str(err.value)
    assert "'rec'" in msg and "SimpleRNN(activation='relu')" in msg and "\n" not in msg


def test_go_backwards_refused(tmp_path):
    layers = _layers([("rnn", {"name": "rec", "units": 4, "go_backwards": True})])
    path = tmp_path / "m.h5"
    _write_h5(path, layers, {"rec": _weights(np.random.default_rng(0), N_IN, 4)})
    with pytest.raises(UnsupportedLayerError, match="go_backwards"):
        from_keras(path)


@pytest.mark.parametrize("seqs", [False, True])
def test_imported_rnn_converts_and_engines_agree(tmp_path, seqs):
    layers, weights, _ = _model(np.random.default_rng(6), seqs, stacked=False)
    path = tmp_path / "m.keras"
    _write_keras(path, layers, weights)
    g = from_keras(path)
    rng = np.random.default_rng(7)
    snn = convert(g, ConversionConfig(steps_per_element=16, percentile=99.0), calibration=rng.random((40, T, N_IN)))
    x = rng.random((4, T, N_IN))
    n = T * 16
    ref = simulate_reference(snn, x, n, record=("all",))
    ten = simulate(snn, x, SimulationConfig(n_steps=n, engine="tensor", record=("all",)))
    assert_same_spikes(ref, ten, min_spikes=50)
    np.testing.assert_array_equal(ref.output_potential_t, ten.output_potential_t)
    out, ann = ref.window_values(), evaluate(g, x)
    out = out if seqs else out[:, -1]
    assert np.abs(out - ann).max() < 0.2 * np.abs(ann).max()  # the spiking read-out follows the ANN


@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_real_keras_files(tmp_path, suffix):
    keras = pytest.importorskip("keras")  # the torch backend (tests/conftest.py sets KERAS_BACKEND)
    import warnings

    keras.utils.set_random_seed(3)
    L = keras.layers
    model = keras.Sequential([keras.Input((T, N_IN)), L.SimpleRNN(5, activation="relu", return_sequences=True, name="r1"),
                              L.SimpleRNN(4, activation="relu", name="r2"), L.Dense(2, name="fc")], name="krnn")
    path = tmp_path / f"m{suffix}"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.save(str(path))
    x = np.random.default_rng(8).normal(0.3, 1.0, (5, T, N_IN))
    ref = np.asarray(model.predict(x.astype(np.float32), verbose=0), dtype=np.float64)
    g = from_keras(path)
    assert [layer.type_name for layer in g] == ["Input", "RNN", "RNN", "Dense"] and g.output_shape == (2,)
    np.testing.assert_allclose(evaluate(g, x), ref, atol=1e-5)
