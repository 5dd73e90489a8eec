"""Hostile inputs that used to end in a Python traceback (issue 12, item 11): each now ends in one line
on stderr and a documented exit status (docs/cli.md: 0 ok, 1 error, 2 usage, 3 internal error,
130 interrupted, 141 output pipe closed)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from spikebridge.cli import EXIT_CODES, main
from spikebridge.config import ConversionConfig

ROOT = Path(__file__).resolve().parents[2]


def _one_error_line(capsys, prefix="spikebridge: error: "):
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(prefix), err
    assert "Traceback" not in err
    return err.strip()


@pytest.fixture(scope="module")
def net_and_data(tmp_path_factory):
    from spikebridge.conversion.convert import convert
    from tests.conftest import make_tiny_mlp

    d = tmp_path_factory.mktemp("tb")
    x = np.random.default_rng(3).uniform(0, 1, (6, 6))
    convert(make_tiny_mlp(), ConversionConfig(percentile=100.0), calibration=x).save(d / "net.h5")
    np.savez(d / "d.npz", x=x, y=np.arange(6) % 4)
    return d


@pytest.fixture(scope="module")
def store(net_and_data):
    path = net_and_data / "s.h5"
    assert main(["-q", "simulate", str(net_and_data / "net.h5"), "--data", str(net_and_data / "d.npz"),
                 "--steps", "10", "--target", "numpy", "-o", str(path)]) == 0
    return path


def _simulate(d, data, *extra):
    return main(["-q", "simulate", str(d / "net.h5"), "--data", str(data), "--steps", "5", "--target", "numpy", *extra])


def test_malformed_keras_config(tmp_path, capsys):
    path = tmp_path / "m.h5"
    with h5py.File(path, "w") as f:
        f.attrs["model_config"] = json.dumps({"class_name": "Sequential", "config": {"layers": [1, 2]}})
        f.create_group("model_weights")
    assert main(["inspect", str(path)]) == 1
    err = _one_error_line(capsys)
    assert err == f"spikebridge: error: Keras file '{path}': malformed model config (AttributeError: 'int' object has no attribute 'get')"


def test_truncated_npz_and_empty_data(net_and_data, tmp_path, capsys):
    raw = (net_and_data / "d.npz").read_bytes()
    (tmp_path / "cut.npz").write_bytes(raw[: len(raw) // 2])
    assert _simulate(net_and_data, tmp_path / "cut.npz") == 1
    assert "is not a readable .npz file (truncated" in _one_error_line(capsys)
    np.savez(tmp_path / "empty.npz", x=np.zeros((0, 6)), y=np.zeros(0, int))
    assert _simulate(net_and_data, tmp_path / "empty.npz") == 1
    assert _one_error_line(capsys) == f"spikebridge: error: '{tmp_path / 'empty.npz'}': array 'x' holds no samples (shape (0, 6))"
    assert main(["convert", "shipped:digits_mlp", "-o", str(tmp_path / "n.h5"), "--calibration", str(tmp_path / "empty.npz")]) == 1
    assert "holds no samples" in _one_error_line(capsys)


def test_out_of_range_seed_in_the_api_and_config_file(net_and_data, tmp_path, capsys):
    from spikebridge.config import SimulationConfig
    from spikebridge.errors import ValidationError

    with pytest.raises(ValidationError, match=r"SimulationConfig.seed: must be an integer in 0..2147483647, got 1180591620717411303424"):
        SimulationConfig(seed=2**70)
    (tmp_path / "c.toml").write_text("[simulation]\nseed = -1\n")
    assert _simulate(net_and_data, net_and_data / "d.npz", "--config", str(tmp_path / "c.toml")) == 1
    assert _one_error_line(capsys) == "spikebridge: error: SimulationConfig.seed: must be an integer in 0..2147483647, got -1"


def _make_read_only(path, undo):
    """chmod for ordinary users; root ignores permissions, so it uses the immutable flag (chattr +i)."""
    if not (hasattr(os, "geteuid") and os.geteuid() == 0):
        path.chmod(0o555 if path.is_dir() else 0o444)
        return
    if subprocess.run(["chattr", "+i", str(path)], capture_output=True).returncode != 0:
        pytest.skip("running as root without chattr +i support: nothing is read-only")
    undo.append(path)


def test_read_only_store_and_directory(net_and_data, store, tmp_path, capsys):
    undo: list[Path] = []
    try:
        ro = tmp_path / "ro.h5"
        ro.write_bytes(store.read_bytes())
        _make_read_only(ro, undo)
        for extra in (("--resume",), ("--overwrite",)):
            assert _simulate(net_and_data, net_and_data / "d.npz", "-o", str(ro), *extra) == 1
            err = _one_error_line(capsys)
            assert err in (f"spikebridge: error: Permission denied: '{ro}'",  # no raw [Errno N] (issue 19 §5)
                           f"spikebridge: error: Operation not permitted: '{ro}'")
        (tmp_path / "dir").mkdir()
        _make_read_only(tmp_path / "dir", undo)
        assert _simulate(net_and_data, net_and_data / "d.npz", "-o", str(tmp_path / "dir" / "s.h5")) == 1
        err = _one_error_line(capsys)
        assert "Permission denied" in err or "Operation not permitted" in err
    finally:
        for path in undo:
            subprocess.run(["chattr", "-i", str(path)], capture_output=True)


def test_os_errors_are_one_line_and_unexpected_errors_are_internal(monkeypatch, capsys):
    import spikebridge.cli as cli

    def denied(args):
        raise PermissionError(13, "Permission denied", "/x/store.h5")

    monkeypatch.setattr(cli, "cmd_formats", denied)
    assert main(["formats"]) == EXIT_CODES["error"] == 1
    assert _one_error_line(capsys) == "spikebridge: error: Permission denied: '/x/store.h5'"  # no raw [Errno 13]

    def bug(args):
        raise AttributeError("'NoneType' object has no attribute 'shape'\nsecond line")

    monkeypatch.setattr(cli, "cmd_formats", bug)
    assert main(["formats"]) == EXIT_CODES["internal error"] == 3
    assert _one_error_line(capsys, "spikebridge: internal error: ") == (
        "spikebridge: internal error: AttributeError: 'NoneType' object has no attribute 'shape'; rerun with --debug for the traceback"
    )
    with pytest.raises(AttributeError):  # --debug shows the real traceback
        main(["--debug", "formats"])


def test_output_piped_to_a_closed_reader_exits_quietly():
    # like `spikebridge formats | head -0`: the reader is gone before the first line
    proc = subprocess.Popen([sys.executable, "-m", "spikebridge", "formats"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == EXIT_CODES["broken pipe"] == 141
    assert err == ""


# -- corrupted stores --------------------------------------------------------------------------------


def _compare(path):
    return main(["compare", str(path)])


def test_truncated_store(store, tmp_path, capsys):
    raw = store.read_bytes()
    for frac in (0.1, 0.5, 0.9):
        bad = tmp_path / f"cut{frac}.h5"
        bad.write_bytes(raw[: int(len(raw) * frac)])
        assert _compare(bad) == 1
        err = _one_error_line(capsys)
        assert f"spike store '{bad}'" in err and ("truncated" in err or "corrupt" in err)


def test_corrupted_metadata_bytes_and_checksums(store, tmp_path, capsys):
    raw = store.read_bytes()
    at = raw.find(b'{"conversion"')
    assert at > 0  # the run metadata are a plain byte dataset
    bad = tmp_path / "json.h5"
    bad.write_bytes(raw[:at] + b"\xff\x00" * 8 + raw[at + 16 :])
    assert _compare(bad) == 1
    assert _one_error_line(capsys) == f"spikebridge: error: spike store '{bad}': /run_metadata is not valid JSON"
    # garbage in the object headers (checksummed): every case one line, never a traceback
    rng = np.random.default_rng(0)
    for k, name in enumerate((b"format", b"n_done", b"run_metadata", b"populations", b"labels_sha256")):
        at = raw.find(name)
        b = bytearray(raw)
        off = at + int(rng.integers(-24, 24))
        b[off : off + 4] = rng.integers(0, 256, 4, dtype=np.uint8).tobytes()
        bad = tmp_path / f"hdr{k}.h5"
        bad.write_bytes(bytes(b))
        rc = _compare(bad)
        err = capsys.readouterr().err
        assert rc in (0, 1) and "Traceback" not in err and err.count("\n") <= 1, (name, err)


def test_oversized_attribute_is_refused_before_reading(store, tmp_path, capsys):
    bad = tmp_path / "big.h5"
    bad.write_bytes(store.read_bytes())
    with h5py.File(bad, "r+") as f:
        f.attrs["populations"] = np.zeros(300_000, dtype=np.float64)  # 2.4 MB: more than any attribute of ours
    assert _compare(bad) == 1
    assert _one_error_line(capsys) == (
        f"spikebridge: error: spike store '{bad}' is corrupt: attribute 'populations' claims 2400000 bytes "
        f"(the file has {bad.stat().st_size}); refusing to read it"
    )


def test_old_store_with_json_attributes_is_still_read(store, tmp_path, capsys):
    from spikebridge.analysis.compare import compare

    old = tmp_path / "old.h5"
    old.write_bytes(store.read_bytes())
    with h5py.File(old, "r+") as f:  # the layout before /run_metadata: JSON root attributes
        doc = json.loads(f["run_metadata"][()].tobytes())
        del f["run_metadata"]
        for key, value in doc.items():
            f.attrs[key] = json.dumps(value)
    a, b = compare(store).to_dict(), compare(old).to_dict()
    assert a["snn_accuracy"] == b["snn_accuracy"] and a["layers"] == b["layers"] and len(a["layers"]) == 2
    assert _compare(old) == 0


def test_store_has_no_variable_length_strings(store):
    # a corrupted global heap (where variable-length strings live) hung `compare` inside HDF5
    assert b"GCOL" not in store.read_bytes()
    kinds = {}

    def visit(name, obj):
        kinds.update({f"{name}@{k}": obj.attrs.get_id(k).dtype.kind for k in obj.attrs})

    with h5py.File(store, "r") as f:
        visit("/", f)
        f.visititems(visit)
    assert len(kinds) > 12 and set(kinds.values()) <= {"S", "i", "f"}, kinds


# -- 12: every unsupported operator at once, the most specific first ---------------------------------


def test_onnx_lists_every_unsupported_operator_most_specific_first(tmp_path, capsys):
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    h = 4
    nodes = [helper.make_node("Transpose", ["x"], ["xt"], perm=[1, 0, 2], name="transpose_in"),
             helper.make_node("LSTM", ["xt", "W", "R"], ["h", "hn"], hidden_size=h, name="lstm"),
             helper.make_node("Squeeze", ["hn"], ["y"], name="squeeze_out")]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 5, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
        initializer=[numpy_helper.from_array(np.zeros((1, 4 * h, 3), np.float32), "W"),
                     numpy_helper.from_array(np.zeros((1, 4 * h, h), np.float32), "R")],
    )
    path = tmp_path / "lstm.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    assert main(["inspect", str(path)]) == 1
    err = _one_error_line(capsys)
    # the recurrent layer is named first, with why it has no spiking form and what converts instead
    assert err.startswith("spikebridge: error: unsupported ONNX layer 'lstm' of type LSTM; supported: Add, ")
    assert err.endswith("convert a ReLU RNN instead: nn.RNN(nonlinearity='relu'), ONNX RNN with Relu or Keras "
                        "SimpleRNN(activation='relu') becomes a recurrent spiking network")


def test_torch_and_keras_list_every_unsupported_layer(tmp_path):
    torch = pytest.importorskip("torch")
    from spikebridge.errors import UnsupportedLayerError
    from spikebridge.importers.from_keras import from_keras_h5
    from spikebridge.importers.from_torch import from_torch

    net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Unflatten(1, (2, 4)),
                              torch.nn.LSTM(4, 3), torch.nn.ReLU())
    with pytest.raises(UnsupportedLayerError) as info:
        from_torch(net, input_shape=(4,))
    assert str(info.value).startswith("3 unsupported PyTorch layers: '1' of type Tanh, '3' of type LSTM, "
                                      "'2' of type Unflatten; supported: ")
    assert info.value.layers == (("1", "Tanh"), ("3", "LSTM"), ("2", "Unflatten"))

    def layer(cls, name, **cfg):
        return {"class_name": cls, "config": {"name": name, **cfg}}

    config = {"class_name": "Sequential", "config": {"name": "seq", "layers": [
        layer("InputLayer", "in", batch_shape=[None, 5, 3]), layer("Permute", "permute", dims=[2, 1]),
        layer("LSTM", "lstm", units=4), layer("Dense", "dense", units=2)]}}
    path = tmp_path / "m.h5"
    with h5py.File(path, "w") as f:
        f.attrs["model_config"] = json.dumps(config)
        f.create_group("model_weights")
    with pytest.raises(UnsupportedLayerError, match=r"^2 unsupported Keras layers: 'lstm' of type LSTM, 'permute' of type Permute; "):
        from_keras_h5(path)


@pytest.mark.parametrize(
    "toml, message",
    [
        ("[simulation]\nrecord = 5\n", "SimulationConfig.record: expected population names (a string or a list of strings), got 5"),
        ("[experiment]\nout = 5\n", "[experiment] out must be a directory name (a string), got 5"),
    ],
)
def test_wrongly_typed_experiment_values(toml, message, tmp_path, capsys):
    path = tmp_path / "exp.toml"
    path.write_text('[model]\npath = "shipped:digits_mlp"\n' + toml)
    assert main(["run", str(path), "--out", str(tmp_path / "out")]) == 1
    assert message in _one_error_line(capsys)


def test_text_file_named_npz_is_not_blamed_on_pickles(net_and_data, tmp_path, capsys):
    (tmp_path / "g.npz").write_text("not an archive\n")
    assert _simulate(net_and_data, tmp_path / "g.npz") == 1
    assert _one_error_line(capsys) == (
        f"spikebridge: error: '{tmp_path / 'g.npz'}' is not a .npz file (no zip signature); save arrays with np.savez(path, x=..., y=...)"
    )


@pytest.mark.parametrize("address", ["tcp://", "tcp://h:notaport", "udp://x:1", "tls://", "inproc://", "tcp://h:0", "h:8786"])
def test_malformed_scheduler_addresses_are_one_line_errors(address):
    """Issue 19 §5: each gave 'internal error: ValueError' from Dask; now SimulationConfig refuses them."""
    from spikebridge.config import SimulationConfig
    from spikebridge.errors import ValidationError

    with pytest.raises(ValidationError, match=r"^SimulationConfig\.scheduler: .+expected None, 'local' or a Dask scheduler address"):
        SimulationConfig(scheduler=address)
    assert SimulationConfig(scheduler="tcp://127.0.0.1:8786").scheduler == "tcp://127.0.0.1:8786"
    assert SimulationConfig(scheduler="tls://[::1]:8786").scheduler == "tls://[::1]:8786"


def test_missing_output_folders_are_said_before_anything_runs(tmp_path):
    """Issue 19 §5: a network saved into a missing folder gave a raw '[Errno 2]'; a spike store in a missing
    folder was found only after the whole simulation, when the first batch was written."""
    import numpy as np

    import spikebridge.run.store as run_store
    from spikebridge.ir import AnnGraph, Dense, Input, ReLU
    from spikebridge.run.calibrate import convert
    from spikebridge.snn.network import save_network
    from spikebridge.errors import ValidationError

    g = AnnGraph([Input(name="x", shape=(2,)), Dense(name="fc", weight=[[1.0, 0.5]]), ReLU(name="r"), Dense(name="out", weight=[[1.0]])])
    snn = convert(g, calibration=np.array([[1.0, 1.0], [0.5, 0.0]]))
    with pytest.raises(FileNotFoundError, match=r"^output folder '.*nodir' of network file '.*net\.h5' does not exist; create it first$"):
        save_network(snn, tmp_path / "nodir" / "net.h5")
    calls = []
    original = run_store._backend_iter
    run_store._backend_iter = lambda *a, **k: calls.append(a) or original(*a, **k)
    try:
        with pytest.raises(ValidationError, match=r"^output folder '.*nodir' of spike store '.*s\.h5' does not exist"):
            run_store.simulate_to_store(snn, np.ones((2, 2)), tmp_path / "nodir" / "s.h5")
    finally:
        run_store._backend_iter = original
    assert calls == []  # nothing was simulated
    assert not (tmp_path / "nodir").exists()


def test_more_workers_than_cores_explains_itself():
    """Issue 19 §5: workers = 1000 ran silently."""
    import numpy as np

    from spikebridge.config import SimulationConfig
    from spikebridge.errors import SpikebridgeWarning
    from spikebridge.run.simulate import simulate
    from spikebridge.snn.network import Population, SpikingNetwork

    net = SpikingNetwork([Population(name="a", n=1, model="if", bias=370.0, role="output")], output="a")
    workers = (os.cpu_count() or 1) + 1
    with pytest.warns(SpikebridgeWarning, match=rf"^SimulationConfig\.workers={workers} is more than this machine's \d+ cores"):
        rec = simulate(net, None, SimulationConfig(n_steps=64, target="numpy", workers=workers))
    assert int(np.asarray(rec.output_counts)[0, 0]) == 23  # and the run is the same
