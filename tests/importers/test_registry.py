"""The importer registry: dispatch, listing, plugin registration, light imports."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from spikebridge.errors import ModelFormatError, ValidationError
from spikebridge.importers import registry
from spikebridge.importers.registry import list_formats, load_model, register_importer, unregister_importer
from spikebridge.ir import AnnGraph, Dense, Input, evaluate, save_graph
from tests.conftest import make_tiny_mlp


def test_list_formats_describes_every_builtin():
    formats = {f["name"]: f for f in list_formats()}
    assert {"torch", "onnx", "keras", "keras-h5", "sklearn", "spikebridge"} <= set(formats)
    for f in formats.values():
        assert set(f) == {"name", "suffixes", "extra", "available", "description"}
        assert isinstance(f["available"], bool) and f["description"]
    assert formats["onnx"]["suffixes"] == [".onnx"] and formats["onnx"]["extra"] == "onnx"
    assert formats["keras"]["extra"] is None and formats["keras"]["available"] is True  # h5py only
    assert formats["sklearn"]["suffixes"] == []


def test_registered_plugin_is_dispatched_by_suffix_and_detect(tmp_path):
    calls = []

    def load(source, **kwargs):
        calls.append((source, kwargs))
        return AnnGraph([Input(name="x", shape=(1,)), Dense(name="fc", weight=[[2.0]])], metadata={"format": "demo"})

    register_importer("demo-fmt", suffixes=["DEMO"], detect=lambda s: False, load=load, description="demo")
    try:
        path = tmp_path / "m.demo"
        path.write_text("x")
        graph = load_model(path, scale=3)
        assert calls == [(path, {"scale": 3})]
        assert evaluate(graph, np.array([[1.5]]))[0, 0] == 3.0
        with pytest.raises(ValidationError, match="already registered"):
            register_importer("demo-fmt", detect=lambda s: False, load=load)
        assert "demo-fmt" in [f["name"] for f in list_formats()]
    finally:
        unregister_importer("demo-fmt")
    assert "demo-fmt" not in [f["name"] for f in list_formats()]


def test_object_detection_by_plugin():
    class Thing:
        pass

    register_importer("thing", detect=lambda s: isinstance(s, Thing),
                      load=lambda s, **kw: make_tiny_mlp())
    try:
        assert load_model(Thing()).name == "tiny_mlp"
    finally:
        unregister_importer("thing")


def test_a_crashing_detector_does_not_decide(tmp_path):
    def boom(source):
        raise RuntimeError("broken detector")

    register_importer("crashy", suffixes=[".h5"], detect=boom, load=lambda s, **kw: None)
    try:
        path = tmp_path / "m.h5"
        save_graph(make_tiny_mlp(), path)
        assert load_model(path).metadata["format"] == "spikebridge"
    finally:
        unregister_importer("crashy")


def test_own_format_by_suffix_and_by_name(tmp_path):
    g = make_tiny_mlp()
    path = tmp_path / "model.hdf5"
    save_graph(g, path)
    for graph in (load_model(path), load_model(str(path), format="SpikeBridge")):
        assert graph.metadata == {"source": str(path), "format": "spikebridge"}
        x = np.random.default_rng(0).normal(size=(3, 6))
        np.testing.assert_array_equal(evaluate(graph, x), evaluate(g, x))
    assert load_model(g) is g  # an AnnGraph passes through
    with pytest.raises(ValidationError, match="take no import options"):
        load_model(path, input_shape=(6,))


def test_reimported_file_keeps_original_source(tmp_path):
    g = AnnGraph(make_tiny_mlp().layers, metadata={"source": "net.onnx", "format": "onnx", "task": "classification"})
    path = tmp_path / "m.h5"
    save_graph(g, path)
    meta = load_model(path).metadata
    assert meta["original_source"] == "net.onnx" and meta["original_format"] == "onnx"
    assert meta["task"] == "classification" and meta["format"] == "spikebridge"


def test_directory_is_refused(tmp_path):
    with pytest.raises(ModelFormatError, match="is a directory"):
        load_model(tmp_path)


def test_plugin_modules_listed_and_importable():
    import importlib

    for module in registry.PLUGIN_MODULES:
        importlib.import_module(module)


def test_registry_import_and_listing_stay_light():
    code = (
        "import sys; from spikebridge.importers.registry import list_formats; list_formats(); "
        "print(','.join(m for m in ['torch', 'onnx', 'sklearn', 'keras', 'tensorflow'] if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_top_level_load_model_is_the_registry_function():
    import spikebridge

    assert spikebridge.load_model is load_model
