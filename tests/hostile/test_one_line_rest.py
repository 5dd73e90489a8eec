"""Issue 19 §5, the rest of "no internal error" and "no raw [Errno N]": each input below ended in
``spikebridge: internal error: ...`` (exit 3) or in a line with Python's ``[Errno N]``; now one line
of our own, exit 1."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest

from spikebridge.cli import main
from spikebridge.config import ConversionConfig


def _one_error_line(capsys):
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("spikebridge: error: "), err
    assert "Traceback" not in err and "[Errno" not in err
    return err.strip()


def _keras_h5(path, dim):
    cfg = {"class_name": "Sequential", "config": {"name": "s", "layers": [
        {"class_name": "InputLayer", "config": {"batch_input_shape": [None, dim], "name": "in"}},
        {"class_name": "Dense", "config": {"name": "d", "units": 2, "activation": "relu", "use_bias": True}}]}}
    with h5py.File(path, "w") as f:
        f.attrs["model_config"] = json.dumps(cfg)
        g = f.create_group("model_weights/d")
        g.attrs["weight_names"] = [b"d/kernel:0", b"d/bias:0"]
        g["d/kernel:0"] = np.ones((4, 2), np.float32)
        g["d/bias:0"] = np.zeros(2, np.float32)


@pytest.mark.parametrize("dim", ["x", "4", 4.5, True])
def test_keras_input_dim_that_is_not_an_integer(tmp_path, capsys, dim):
    """'x' was an internal error (int('x')); '4' and 4.5 were silently read as 4, True as 1."""
    _keras_h5(tmp_path / "k.h5", dim)
    assert main(["inspect", str(tmp_path / "k.h5")]) == 1
    err = _one_error_line(capsys)
    assert f"the model config's batch_input_shape has the dimension {str(dim)!r}; expected an integer (or null)" in err
    _keras_h5(tmp_path / "k.h5", 4)
    assert main(["inspect", str(tmp_path / "k.h5")]) == 0  # the same file with an integer converts


@pytest.mark.parametrize("index", [5, -9])
def test_onnx_gather_index_out_of_range(tmp_path, capsys, index):
    """``x.view(x.size(index), -1)`` with an index past the shape: was IndexError, an internal error."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    nodes = [helper.make_node("Shape", ["x"], ["s"], name="shape"),
             helper.make_node("Gather", ["s", "i"], ["g"], axis=0, name="gather"),
             helper.make_node("Unsqueeze", ["g", "ax"], ["u"], name="unsq"),
             helper.make_node("Concat", ["u", "m1"], ["sh"], axis=0, name="cat"),
             helper.make_node("Reshape", ["x", "sh"], ["r"], name="reshape"),
             helper.make_node("Gemm", ["r", "W"], ["y"], transB=1, name="fc")]
    consts = {"i": np.array(index, np.int64), "ax": np.array([0], np.int64), "m1": np.array([-1], np.int64),
              "W": np.ones((2, 6), np.float32)}
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 3])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])],
                              initializer=[numpy_helper.from_array(v, k) for k, v in consts.items()])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), tmp_path / "g.onnx")
    assert main(["inspect", str(tmp_path / "g.onnx")]) == 1
    err = _one_error_line(capsys)
    assert err == (f"spikebridge: error: ONNX file '{tmp_path / 'g.onnx'}': node 'gather' (Gather) cannot be computed "
                   f"from its constant inputs: index {index} is out of bounds for axis 0 with size 3")


def test_no_raw_errno_in_error_lines(tmp_path, capsys):
    """An OSError from writing (here: a folder that is a file) says its words, not ``[Errno 20]``."""
    from spikebridge.conversion.convert import convert
    from tests.conftest import make_tiny_mlp

    x = np.random.default_rng(3).uniform(0, 1, (6, 6))
    convert(make_tiny_mlp(), ConversionConfig(percentile=100.0), calibration=x).save(tmp_path / "net.h5")
    (tmp_path / "file").write_text("not a folder")
    assert main(["graph", str(tmp_path / "net.h5"), "--graphml", str(tmp_path / "file" / "g.graphml")]) == 1
    err = _one_error_line(capsys)
    assert err == f"spikebridge: error: Not a directory: '{tmp_path / 'file' / 'g.graphml'}'"
