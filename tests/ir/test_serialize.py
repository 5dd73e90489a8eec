"""Our HDF5 ANN format: round trips, foreign files, newer versions, corrupt content."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest

from spikebridge.errors import ModelFormatError, StoreFormatError
from spikebridge.ir import AnnGraph, Input, MaxPool2d, evaluate, load_graph, save_graph
from spikebridge.ir.serialize import FORMAT, VERSION, format_version, graph_from_dict, graph_to_dict


def _same(a: AnnGraph, b: AnnGraph) -> None:
    assert [(x.name, x.type_name) for x in a] == [(y.name, y.type_name) for y in b]
    assert a.edges == b.edges and a.name == b.name and a.metadata == b.metadata
    for x, y in zip(a, b):
        for key, value in x.params().items():
            other = y.params()[key]
            if isinstance(value, np.ndarray):
                np.testing.assert_array_equal(value, other)
            else:
                assert value == other, key


@pytest.mark.parametrize("which", ["mlp", "cnn"])
def test_hdf5_round_trip_is_exact(which, tiny_mlp, tiny_cnn, tmp_h5, rng):
    g = tiny_mlp() if which == "mlp" else tiny_cnn()
    g = AnnGraph(g.layers, name=g.name, metadata={"task": "classification", "classes": [0, 1, 2, 3], "scale": 0.5})
    save_graph(g, tmp_h5)
    back = load_graph(tmp_h5)
    _same(g, back)
    x = rng.normal(size=(3, *g.input_shape))
    np.testing.assert_array_equal(evaluate(back, x), evaluate(g, x))
    with h5py.File(tmp_h5) as f:
        # fixed-length text attributes (bytes); a graph without a clipped ReLU is written as version 3
        assert f.attrs["format"] == FORMAT.encode() and int(f.attrs["format_version"]) == format_version(g) == 3
        assert "numpy" in json.loads(f.attrs["package_versions"])


def test_pool_parameters_and_dict_round_trip(tmp_h5):
    g = AnnGraph([Input(name="x", shape=(2, 7, 7)), MaxPool2d(name="p", kernel_size=3, stride=2, padding=1)])
    save_graph(g, tmp_h5)
    p = load_graph(tmp_h5)["p"]
    assert (p.kernel_size, p.stride, p.padding) == ((3, 3), (2, 2), (1, 1))
    _same(g, graph_from_dict(graph_to_dict(g)))


def test_overwrite_false(tmp_h5, tiny_mlp):
    save_graph(tiny_mlp(), tmp_h5)
    with pytest.raises(FileExistsError, match="already exists"):
        save_graph(tiny_mlp(), tmp_h5, overwrite=False)


def test_foreign_hdf5_file(tmp_h5):
    with h5py.File(tmp_h5, "w") as f:
        f["x"] = np.arange(3)
    with pytest.raises(ModelFormatError, match="is not a spikebridge.ann file: expected format 'spikebridge.ann', "
                                               "found no 'format' attribute"):
        load_graph(tmp_h5)
    with h5py.File(tmp_h5, "a") as f:
        f.attrs["format"] = "spikebridge.spikes"
    with pytest.raises(ModelFormatError, match="found format 'spikebridge.spikes'"):
        load_graph(tmp_h5)


def test_newer_format_version(tmp_h5, tiny_mlp):
    save_graph(tiny_mlp(), tmp_h5)
    with h5py.File(tmp_h5, "a") as f:
        f.attrs["format_version"] = VERSION + 1
    with pytest.raises(StoreFormatError, match=f"format_version {VERSION + 1}; this spikebridge reads versions "
                                               f"1..{VERSION}; upgrade spikebridge"):
        load_graph(tmp_h5)


def test_not_hdf5_and_missing_file(tmp_path):
    bad = tmp_path / "bad.h5"
    bad.write_bytes(b"not an hdf5 file at all")
    with pytest.raises(ModelFormatError, match="not a readable HDF5 file"):
        load_graph(bad)
    with pytest.raises(FileNotFoundError):
        load_graph(tmp_path / "none.h5")


def test_corrupt_contents_are_model_format_errors(tmp_h5, tiny_mlp):
    save_graph(tiny_mlp(), tmp_h5)
    with h5py.File(tmp_h5, "a") as f:
        f["layers/1"].attrs["type"] = "LSTM"
    with pytest.raises(ModelFormatError, match="layer 1: unknown layer type 'LSTM'"):
        load_graph(tmp_h5)
    save_graph(tiny_mlp(), tmp_h5)
    with h5py.File(tmp_h5, "a") as f:
        w = f["layers/1/weight"][()]
        w[0, 0] = np.nan
        f["layers/1/weight"][...] = w
    with pytest.raises(ModelFormatError, match="invalid Dense layer: layer 'fc1': weight contains 1 non-finite"):
        load_graph(tmp_h5)
    save_graph(tiny_mlp(), tmp_h5)
    with h5py.File(tmp_h5, "a") as f:
        del f["layers/3/weight"]
        f["layers/3/weight"] = np.zeros((4, 5))  # fc2 should be (4, 8)
    with pytest.raises(ModelFormatError, match=r"Dense 'fc2': weight shape \(4, 5\) does not match input shape \(8,\)"):
        load_graph(tmp_h5)
