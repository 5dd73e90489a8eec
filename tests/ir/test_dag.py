"""AnnGraph as a DAG: Add and Concat shapes, the numpy oracle, the HDF5 format (v2, v1 still read)."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from spikebridge.errors import ValidationError
from spikebridge.ir import Add, AnnGraph, Concat, Dense, Input, ReLU, evaluate, load_graph, save_graph
from spikebridge.ir.serialize import VERSION
from tests._dag import make_tiny_resnet
from tests.conftest import strip_checksums


def _relu(x):
    return np.maximum(x, 0.0)


def test_shapes_and_predecessors_of_a_residual_graph():
    g = make_tiny_resnet()
    assert not g.is_chain
    assert g.shapes["a1"] == (4, 6, 6) and g.shapes["a2"] == (6, 3, 3) and g.shapes["cat"] == (8, 3, 3)
    assert g.predecessors("a2") == ("c4", "sc") and g.predecessors("cat") == ("r4", "r5")
    assert g.successors("r0") == ("c1", "a1") and g.successors("r2") == ("c3", "sc")
    assert g.input_shapes_of("cat") == ((6, 3, 3), (2, 3, 3))
    assert g.output == "fc" and g.output_shape == (3,)


def test_oracle_matches_a_hand_written_forward_pass(rng):
    g = make_tiny_resnet()
    x = rng.normal(size=(5, 1, 6, 6))
    acts = evaluate(g, x, return_all=True)

    def lay(name, v):
        return evaluate(AnnGraph([Input(name="i", shape=v.shape[1:]), g[name]]), v)

    r0 = _relu(lay("stem", x))
    a1 = lay("c2", _relu(lay("c1", r0))) + r0
    r2 = _relu(a1)
    a2 = lay("c4", _relu(lay("c3", r2))) + lay("sc", r2)
    r4 = _relu(a2)
    cat = np.concatenate([r4, _relu(lay("side", r4))], axis=1)
    out = cat.mean(axis=(2, 3)) @ g["fc"].weight.T + g["fc"].bias
    np.testing.assert_allclose(acts["a1"], a1, atol=1e-12)
    np.testing.assert_allclose(acts["a2"], a2, atol=1e-12)
    np.testing.assert_allclose(acts["cat"], cat, atol=1e-12)
    np.testing.assert_allclose(acts["fc"], out, atol=1e-12)


def test_concat_on_a_spatial_axis_and_of_vectors():
    i = Input(name="x", shape=(3,))
    d1, d2 = Dense(name="d1", weight=np.eye(3)), Dense(name="d2", weight=-np.ones((2, 3)))
    g = AnnGraph([i, d1, d2, Concat(name="cat", axis=-1), ReLU(name="r")],
                 [("x", "d1"), ("x", "d2"), ("d2", "cat"), ("d1", "cat"), ("cat", "r")])
    assert g.output_shape == (5,)
    # edge order is input order: d2 first
    np.testing.assert_array_equal(evaluate(g, [[1.0, 2.0, -4.0]]), [[1.0, 1.0, 1.0, 2.0, 0.0]])


@pytest.mark.parametrize(
    "layers, edges, match",
    [
        ([Input(name="x", shape=(3,)), Dense(name="d", weight=np.ones((2, 3))), Add(name="a")],
         [("x", "d"), ("x", "a"), ("d", "a")], r"Add 'a': inputs have different shapes \[\(3,\), \(2,\)\]"),
        ([Input(name="x", shape=(3,)), Add(name="a")], [("x", "a")], "Add layer 'a' has inputs"),
        ([Input(name="x", shape=(3,)), Dense(name="d", weight=np.ones((3, 3))), ReLU(name="r")],
         [("x", "d"), ("x", "r"), ("d", "r")], "only Add and Concat layers join several inputs"),
        ([Input(name="x", shape=(3,)), Concat(name="c", axis=1)], [("x", "c"), ("x", "c")], "two or more distinct"),
    ],
)
def test_bad_joins_are_refused(layers, edges, match):
    with pytest.raises(ValidationError, match=match):
        AnnGraph(layers, edges)


def test_hdf5_round_trip_of_a_dag_and_v1_files_still_load(tmp_path, rng):
    g = make_tiny_resnet()
    path = tmp_path / "resnet.h5"
    save_graph(g, path)
    with h5py.File(path) as f:
        assert int(f.attrs["format_version"]) == 3 and VERSION == 5  # 4 only with a clipped ReLU, 5 with an RNN
    back = load_graph(path)
    assert back.edges == g.edges and back["cat"].axis == 0
    x = rng.normal(size=(3, 1, 6, 6))
    np.testing.assert_array_equal(evaluate(back, x), evaluate(g, x))
    # a chain written as version 1 (the layout did not change) is still read
    chain = AnnGraph([Input(name="x", shape=(2,)), Dense(name="d", weight=[[1.0, 2.0]]), ReLU(name="r")])
    old = tmp_path / "v1.h5"
    save_graph(chain, old)
    with h5py.File(old, "a") as f:
        strip_checksums(f)  # version 1 had none
        f.attrs["format_version"] = 1
    np.testing.assert_array_equal(evaluate(load_graph(old), [[1.0, 1.0]]), [[3.0]])


def test_inspect_shows_inputs_and_branches(tmp_path, capsys):
    from spikebridge import cli

    path = tmp_path / "resnet.h5"
    save_graph(make_tiny_resnet(), path)
    assert cli.main(["inspect", str(path)]) == 0
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.startswith("a2 "))
    assert row.split()[1] == "Add" and row.rstrip().endswith("c4, sc")
    assert "branch: 'r2' feeds c3, sc" in out and "branch: 'r4' feeds side, cat" in out
