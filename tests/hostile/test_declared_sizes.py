"""Issue 12, class 10: sizes a file declares are checked against its real size and the array budget before allocating."""

from __future__ import annotations

import gzip
import json
import zipfile

import h5py
import numpy as np
import pytest

from spikebridge.errors import ModelFormatError

from ..conftest import make_tiny_mlp


def test_own_format_dense_declared_huge_in_a_tiny_file(tmp_path):
    from spikebridge.ir.serialize import load_graph, save_graph

    path = tmp_path / "m.h5"
    save_graph(make_tiny_mlp(), path)
    with h5py.File(path, "a") as f:
        del f["layers/1/weight"]
        # chunked and never written: reads as fill values, 1 GB from a few KB
        f.create_dataset("layers/1/weight", shape=(2**24, 8), dtype="<f8", chunks=(4096, 8), compression="gzip")
    assert path.stat().st_size < 20_000
    with pytest.raises(ModelFormatError) as info:
        load_graph(path)
    assert str(info.value) == (
        f"model file '{path}': dataset '/layers/1/weight' declares shape (16777216x8), 1073.7 MB, but the file "
        "stores only 0 bytes of it; the file is truncated or forged"
    )


def test_over_the_array_budget(tmp_path, monkeypatch):
    from spikebridge.ir.serialize import load_graph, save_graph

    path = tmp_path / "m.h5"
    save_graph(make_tiny_mlp(sizes=(6, 40000, 4)), path)
    monkeypatch.setenv("SPIKEBRIDGE_MAX_ARRAY_BYTES", "1e6")
    with pytest.raises(ModelFormatError, match=r"dataset '/layers/1/weight' declares shape \(40000x6\), 2 MB, more than the 1 MB array budget"):
        load_graph(path)
    monkeypatch.delenv("SPIKEBRIDGE_MAX_ARRAY_BYTES")
    assert load_graph(path).output_shape == (4,)


def test_nir_input_declared_a_billion_wide(tmp_path):
    nir = pytest.importorskip("nir")
    from spikebridge.importers.from_nir import load_nir

    g = nir.NIRGraph(
        nodes={"input": nir.Input(input_type=np.array([10**9])),
               "lif": nir.LIF(tau=np.full(2, 0.01), r=np.full(2, 10.0), v_leak=np.zeros(2), v_threshold=np.ones(2)),
               "output": nir.Output(output_type=np.array([2]))},
        edges=[("input", "lif"), ("lif", "output")], type_check=False,
    )
    path = tmp_path / "wide.nir"
    nir.write(path, g)
    with pytest.raises(ModelFormatError) as info:
        load_nir(path, dt=1e-3)
    assert str(info.value) == (
        "NIR Input node 'input' declares shape (1000000000,) (1000000000 neurons), more than the 2000 MB array budget "
        "allows (8 bytes per neuron per array; set SPIKEBRIDGE_MAX_ARRAY_BYTES to allow it)"
    )


def test_keras_zip_bomb_is_refused_before_decompressing(tmp_path, monkeypatch):
    from spikebridge.importers.registry import load_model

    monkeypatch.setenv("SPIKEBRIDGE_MAX_ARRAY_BYTES", "5e6")
    path = tmp_path / "bomb.keras"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr("config.json", json.dumps({"class_name": "Sequential", "config": {"layers": []}}))
        z.writestr("model.weights.h5", bytes(20_000_000))  # 20 MB of zeros, ~20 KB compressed
    assert path.stat().st_size < 100_000
    with pytest.raises(ModelFormatError) as info:
        load_model(path)
    assert str(info.value) == (
        f"Keras file '{path}': member 'model.weights.h5' declares 20 MB uncompressed, more than the 5 MB array "
        "budget (set SPIKEBRIDGE_MAX_ARRAY_BYTES to allow it)"
    )


def test_gzipped_idx_declaring_huge_dims(tmp_path):
    from spikebridge.datasets import load_idx

    header = (2051).to_bytes(4, "big") + (60000).to_bytes(4, "big") + (4000).to_bytes(4, "big") + (4000).to_bytes(4, "big")
    path = tmp_path / "images.gz"
    path.write_bytes(gzip.compress(header + bytes(1000)))
    with pytest.raises(ModelFormatError) as info:
        load_idx(path)
    assert str(info.value) == (
        f"IDX images file '{path}': header shape (60000, 4000, 4000) declares 960000000000 data bytes, "
        "more than the 2000 MB array budget"
    )
    small = (2051).to_bytes(4, "big") + (100).to_bytes(4, "big") + (100).to_bytes(4, "big") + (100).to_bytes(4, "big")
    path.write_bytes(gzip.compress(small + bytes(100)))  # declares 1 MB; deflate cannot expand 31 bytes that far
    with pytest.raises(ModelFormatError, match=r"declares 1000000 data bytes, more than what its 31 bytes can hold"):
        load_idx(path)


def test_data_h5_reads_only_the_arrays_used(tmp_path):
    from spikebridge.datasets import load_arrays

    path = tmp_path / "d.h5"
    with h5py.File(path, "w") as f:
        f["x"] = np.ones((3, 2))
        f["y"] = np.arange(3)
        # an unused, forged dataset: would be 1 GB of fill values if it were read
        f.create_dataset("junk", shape=(2**27,), dtype="<f8", chunks=(1 << 16,))
    x, y = load_arrays(path)
    assert x.shape == (3, 2) and y.tolist() == [0, 1, 2]
    with pytest.raises(ModelFormatError, match="declares shape"):
        load_arrays(path, x_key="junk")
