"""Issue 12, class 1: no HDF5 reader of ours follows data outside the file it was given.

Every case builds a valid file, swaps one dataset for external raw storage, a
virtual dataset, an external link or a soft link, and checks the reader's exact
one-line refusal, and that no byte of the outside file lands anywhere.
"""

from __future__ import annotations

import io
import json
import re
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest

from spikebridge.errors import ModelFormatError, StoreFormatError

from ..conftest import make_tiny_mlp

TAIL = "; spikebridge reads only data stored inside the file"
KINDS = ("external", "virtual", "external_link", "soft_link")


@pytest.fixture
def secret(tmp_path):
    """An outside file whose bytes are recognisable float64 values (and an HDF5 file holding them)."""
    values = 1234.5 + np.arange(4096, dtype=np.float64)
    path = tmp_path / "outside" / "secret.bin"
    path.parent.mkdir()
    path.write_bytes(values.tobytes())
    with h5py.File(path.with_suffix(".h5"), "w") as f:
        f["data"] = values
    return path


def poison(f: h5py.File, name: str, kind: str, secret: Path) -> str:
    """Replace dataset ``name`` by one whose data would come from ``secret``; returns the expected message tail."""
    shape, dtype = f[name].shape, f[name].dtype
    n = int(np.prod(shape))
    del f[name]
    if kind == "external":
        f.create_dataset(name, shape=shape, dtype="<f8", external=[(str(secret), 0, 8 * n)])
        return f"dataset '{name}' has external raw storage in '{secret}'"
    if kind == "virtual":
        layout = h5py.VirtualLayout(shape=(n,), dtype="<f8")
        layout[:] = h5py.VirtualSource(str(secret.with_suffix(".h5")), "data", shape=(4096,))[:n]
        f.create_virtual_dataset(name, layout)
        return f"dataset '{name}' is a virtual dataset reading '{secret.with_suffix('.h5')}'"
    if kind == "external_link":
        f[name] = h5py.ExternalLink(str(secret.with_suffix(".h5")), "/data")
        return f"'{name}' is an external link to '{secret.with_suffix('.h5')}:/data'"
    f["/hidden"] = np.zeros(shape, dtype)
    f[name] = h5py.SoftLink("/hidden")
    return f"'{name}' is a soft link to '/hidden'"


def assert_refused(exc_info: pytest.ExceptionInfo[BaseException], where: str, tail: str) -> None:
    assert str(exc_info.value) == f"{where}: {tail}{TAIL}"
    assert "\n" not in str(exc_info.value)


def assert_no_leak(root: Path, secret: Path) -> None:
    """No file under ``root`` except the outside ones holds a run of the secret's bytes."""
    needle = secret.read_bytes()[8 * 7 : 8 * 15]
    for p in root.rglob("*"):
        if p.is_file() and p.parent != secret.parent:
            assert needle not in p.read_bytes(), p


@pytest.mark.parametrize("kind", KINDS)
def test_own_ann_format(tmp_path, secret, kind):
    from spikebridge.ir.serialize import load_graph, save_graph

    path = tmp_path / "model.h5"
    save_graph(make_tiny_mlp(), path)
    assert load_graph(path).name == "tiny_mlp"
    with h5py.File(path, "a") as f:
        tail = poison(f, "/layers/1/weight", kind, secret)
    with pytest.raises(ModelFormatError) as info:
        load_graph(path)
    assert_refused(info, f"model file '{path}'", tail)


@pytest.mark.parametrize("kind", ["external", "external_link"])
def test_cli_convert_refuses_and_writes_nothing(tmp_path, secret, kind, capsys):
    from spikebridge.cli import main
    from spikebridge.ir.serialize import save_graph

    path = tmp_path / "model.h5"
    save_graph(make_tiny_mlp(), path)
    with h5py.File(path, "a") as f:
        tail = poison(f, "/layers/1/weight", kind, secret)
    out = tmp_path / "net.h5"
    assert main(["convert", str(path), "-o", str(out), "--normalisation", "none"]) == 1
    err = capsys.readouterr().err
    assert err == f"spikebridge: error: model file '{path}': {tail}{TAIL}\n"
    assert not out.exists()
    assert_no_leak(tmp_path, secret)


def _keras_config(cls: str) -> dict:
    return {"class_name": "Sequential", "config": {"name": "seq", "layers": [
        {"class_name": "InputLayer", "config": {"batch_shape": [None, 4], "name": "input"}},
        {"class_name": "Dense", "config": {"name": "dense", "units": 3, "activation": "linear", "use_bias": True}},
    ]}}


@pytest.mark.parametrize("kind", KINDS)
def test_keras_legacy_h5(tmp_path, secret, kind):
    from spikebridge.importers.registry import load_model

    path = tmp_path / "k.h5"
    with h5py.File(path, "w") as f:
        f.attrs["model_config"] = json.dumps(_keras_config("Sequential")).encode()
        g = f.create_group("model_weights/dense")
        g.attrs["weight_names"] = [b"dense/kernel:0", b"dense/bias:0"]
        g["dense/kernel:0"] = np.ones((4, 3))
        g["dense/bias:0"] = np.zeros(3)
    assert load_model(path).output_shape == (3,)
    with h5py.File(path, "a") as f:
        tail = poison(f, "/model_weights/dense/dense/kernel:0", kind, secret)
    with pytest.raises(ModelFormatError) as info:
        load_model(path)
    assert_refused(info, f"Keras file '{path}'", tail)


@pytest.mark.parametrize("kind", ["external", "virtual", "external_link"])
def test_keras_v3_inner_weights_file(tmp_path, secret, kind):
    from spikebridge.importers.registry import load_model

    def write(poisoned: bool) -> Path:
        buf = io.BytesIO()
        tail = ""
        with h5py.File(buf, "w") as f:
            g = f.create_group("layers/dense/vars")
            g["0"] = np.ones((4, 3))
            g["1"] = np.zeros(3)
            if poisoned:
                tail = poison(f, "/layers/dense/vars/0", kind, secret)
        path = tmp_path / ("bad.keras" if poisoned else "good.keras")
        with zipfile.ZipFile(path, "w") as z:
            z.writestr("config.json", json.dumps(_keras_config("Sequential")))
            z.writestr("model.weights.h5", buf.getvalue())
        return path, tail

    good, _ = write(False)
    assert load_model(good).output_shape == (3,)
    bad, tail = write(True)
    with pytest.raises(ModelFormatError) as info:
        load_model(bad)
    assert_refused(info, f"Keras file '{bad}' (model.weights.h5)", tail)


@pytest.mark.parametrize("kind", KINDS)
def test_network_file(tmp_path, secret, kind):
    from spikebridge.conversion.convert import convert
    from spikebridge.snn.network import load_network
    from spikebridge.config import ConversionConfig

    path = tmp_path / "net.h5"
    convert(make_tiny_mlp(), ConversionConfig(normalisation="none")).save(path)
    with h5py.File(path, "a") as f:
        name = next(f"/projections/{k}/weight" for k in f["projections"])
        tail = poison(f, name, kind, secret)
    with pytest.raises(StoreFormatError) as info:
        load_network(path)
    assert_refused(info, f"network file '{path}'", tail)


@pytest.mark.parametrize("kind", KINDS)
def test_data_h5(tmp_path, secret, kind):
    from spikebridge.datasets import load_dataset

    path = tmp_path / "data.h5"
    with h5py.File(path, "w") as f:
        f["x"] = np.zeros((5, 4))
        f["y"] = np.arange(5)
    assert load_dataset(str(path))[0].shape == (5, 4)
    with h5py.File(path, "a") as f:
        tail = poison(f, "/x", kind, secret)
    with pytest.raises(ModelFormatError) as info:
        load_dataset(str(path))
    assert_refused(info, f"array file '{path}'", tail)


@pytest.mark.parametrize("kind", ["external", "external_link", "soft_link"])
def test_spike_store(tmp_path, secret, kind):
    from spikebridge.store.record import SpikeRecord, SpikeTrains
    from spikebridge.store.spikes import SpikeStore

    path = tmp_path / "s.h5"
    rec = SpikeRecord(
        n_samples=1, n_steps=2, dt=1e-3, output_counts_t=np.zeros((1, 2, 1), np.int32),
        output_potential_t=np.zeros((1, 2, 1), np.float32), counts={"a": np.array([[1]])},
        spikes={"a": SpikeTrains(n_neurons=1, n_samples=1, dt=1e-3, sample=[0], neuron=[0], step=[1])},
    )
    with SpikeStore(path, "w") as st:
        st.append_batch(0, rec, ann_outputs=np.zeros((1, 1)))
    with h5py.File(path, "a") as f:
        tail = poison(f, "/ann/outputs", kind, secret)
    for mode in ("r", "a"):
        with pytest.raises(StoreFormatError) as info:
            SpikeStore(path, mode)
        assert_refused(info, f"spike store '{path}'", tail)


@pytest.mark.parametrize("kind", ["external", "external_link"])
def test_nir_file(tmp_path, secret, kind):
    nir = pytest.importorskip("nir")
    from spikebridge.importers.from_nir import load_nir

    path = tmp_path / "g.nir"
    nir.write(path, nir.NIRGraph.from_list(nir.Linear(weight=np.eye(2)), nir.IF(r=np.ones(2), v_threshold=np.ones(2))))
    assert load_nir(path, dt=1e-3).n_neurons == 4
    with h5py.File(path, "a") as f:
        name = next(f"/node/nodes/{k}/weight" for k in f["node/nodes"] if "weight" in f["node/nodes"][k])
        tail = poison(f, name, kind, secret)
    with pytest.raises(ModelFormatError) as info:
        load_nir(path, dt=1e-3)
    assert_refused(info, f"NIR file '{path}'", tail)


def test_message_names_etc_passwd(tmp_path):
    """The case the issue reported: a weight stored in /etc/passwd."""
    from spikebridge.ir.serialize import load_graph, save_graph

    passwd = Path("/etc/passwd")
    if not passwd.is_file() or passwd.stat().st_size < 8 * 32:
        pytest.skip("no /etc/passwd of at least 256 bytes here")
    path = tmp_path / "model.h5"
    save_graph(make_tiny_mlp(sizes=(4, 8)), path)
    with h5py.File(path, "a") as f:
        del f["/layers/1/weight"]
        f.create_dataset("/layers/1/weight", shape=(8, 4), dtype="<f8", external=[("/etc/passwd", 0, 256)])
    with pytest.raises(ModelFormatError, match=re.escape("has external raw storage in '/etc/passwd'" + TAIL)):
        load_graph(path)
