"""Network files carry SHA-256 checksums (issue 19 §5): one per dataset (attribute ``sha256``) and one
over every attribute (root ``attrs_sha256``), written on save and verified on load.  Damaged raw data
is refused in one line; files written before checksums existed still load (nothing to check)."""

from __future__ import annotations

import shutil

import h5py
import numpy as np
import pytest

from spikebridge.cli import main
from spikebridge.config import ConversionConfig
from spikebridge.errors import StoreFormatError
from spikebridge.ir.serialize import load_graph, save_graph
from spikebridge.snn.network import load_network


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    from spikebridge.conversion.convert import convert
    from tests.conftest import make_tiny_mlp

    d = tmp_path_factory.mktemp("sum")
    x = np.random.default_rng(3).uniform(0, 1, (6, 6))
    net = convert(make_tiny_mlp(), ConversionConfig(percentile=100.0), calibration=x)
    net.save(d / "net.h5")
    return d / "net.h5", net


def _datasets(path):
    found = []
    with h5py.File(path, "r") as f:
        f.visititems(lambda name, obj: found.append((name, obj.id.get_offset(), obj.id.get_storage_size()))
                     if isinstance(obj, h5py.Dataset) else None)
    return found


def _flip(src, dst, offset):
    shutil.copy(src, dst)
    with open(dst, "r+b") as fh:
        fh.seek(offset)
        byte = fh.read(1)[0]
        fh.seek(offset)
        fh.write(bytes([byte ^ 0x01]))  # the lowest bit: a float stays finite and plausible


def test_every_damaged_dataset_is_refused(saved, tmp_path):
    path, net = saved
    datasets = _datasets(path)
    # 13 population arrays (+ none for the input's), 8 projection arrays, 4 ANN arrays of the tiny MLP
    assert len(datasets) == 21 and all(off is not None for _, off, _ in datasets)
    refused = by_checksum = 0
    for name, offset, size in datasets:
        for where in (0, size - 1):  # first and last byte of the raw data
            bad = tmp_path / "bad.h5"
            _flip(path, bad, offset + where)
            with pytest.raises(StoreFormatError) as info:
                load_network(bad)
            # the typed checks run first (an index out of range says so); the checksum catches the rest
            refused += 1
            by_checksum += f"is damaged: dataset '/{name}' does not match the checksum" in str(info.value)
    assert refused == 42 and by_checksum >= 38
    assert load_network(path).n_synapses == net.n_synapses  # the undamaged file still loads


def test_damaged_attribute_text_is_refused(saved, tmp_path):
    path, _ = saved
    raw = path.read_bytes()
    # a digit inside the JSON of the root attribute 'scales' (a per-layer scale): the file still parses
    at = raw.index(b'{"fc2": ') + len(b'{"fc2": ') + 3
    assert chr(raw[at]).isdigit()
    bad = tmp_path / "bad.h5"
    bad.write_bytes(raw[:at] + (b"1" if raw[at:at + 1] != b"1" else b"2") + raw[at + 1:])
    with pytest.raises(StoreFormatError, match="its attributes do not match the checksum"):
        load_network(bad)


def test_removed_root_checksum_is_refused(saved, tmp_path):
    path, _ = saved
    bad = tmp_path / "bad.h5"
    shutil.copy(path, bad)
    with h5py.File(bad, "r+") as f:
        del f.attrs["attrs_sha256"]
    with pytest.raises(StoreFormatError, match="the root attribute 'attrs_sha256' is missing"):
        load_network(bad)


def test_files_without_checksums_still_load(saved, tmp_path):
    """Files written before checksums (format versions 1..5 all the same): no checksum, no check."""
    path, net = saved
    old = tmp_path / "old.h5"
    shutil.copy(path, old)
    with h5py.File(old, "r+") as f:
        del f.attrs["attrs_sha256"]
        f.visititems(lambda name, obj: obj.attrs.__delitem__("sha256") if "sha256" in obj.attrs else None)
    loaded = load_network(old)
    np.testing.assert_array_equal(loaded.projections["input_fc1"].weight, net.projections["input_fc1"].weight)


def test_cli_refuses_a_damaged_network_in_one_line(saved, tmp_path, capsys):
    path, _ = saved
    name, offset, size = next(d for d in _datasets(path) if d[0].endswith("input_fc1/weight"))
    bad = tmp_path / "bad.h5"
    _flip(path, bad, offset + size // 2)
    np.savez(tmp_path / "d.npz", x=np.zeros((2, 6)), y=np.zeros(2, int))
    assert main(["-q", "simulate", str(bad), "--data", str(tmp_path / "d.npz"), "--steps", "5", "--target", "numpy"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert "is damaged: dataset '/projections/input_fc1/weight' does not match the checksum" in err


def test_ann_files_carry_checksums_too(saved, tmp_path):
    _, net = saved
    path = tmp_path / "g.h5"
    save_graph(net.ann, path)
    name, offset, size = next(d for d in _datasets(path) if d[0].endswith("weight"))
    _flip(path, tmp_path / "bad.h5", offset)
    from spikebridge.errors import ModelFormatError

    with pytest.raises(ModelFormatError, match="does not match the checksum"):
        load_graph(tmp_path / "bad.h5")
    assert len(load_graph(path).layers) == len(net.ann.layers)
