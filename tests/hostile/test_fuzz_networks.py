"""Damaged network (``spikebridge.snn``) and ANN (``spikebridge.ann``) files: one clean error, quickly.

The fuzzer (``tests/hostile/_fuzz.py``) damages small files written here or by
the previous version and loads each in a forked child with a time limit; every
load must succeed or raise a ``spikebridge.errors`` type — no hang, no crash,
no h5py/KeyError/ValueError.  Variable-length string attributes (files written
before format version 3) are read in a separate process killed after
``_h5.HEAP_READ_TIMEOUT_S``; the tests lower that limit to keep hangs short.
"""

from __future__ import annotations

import shutil
import struct
import time

import h5py
import numpy as np
import pytest

from spikebridge import _h5
from spikebridge.cli import main
from spikebridge.snn.network import VERSION as SNN_VERSION
from spikebridge.snn.network import load_network
from spikebridge.errors import ModelFormatError, StoreFormatError
from spikebridge.ir.serialize import VERSION as ANN_VERSION
from spikebridge.ir.serialize import load_graph

from . import _fuzz

pytestmark = pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="the fuzzer forks")


@pytest.fixture
def short_heap_timeout(monkeypatch):
    monkeypatch.setattr(_h5, "HEAP_READ_TIMEOUT_S", 1.0)


def _assert_all_clean(outcomes):
    bad = [o for o in outcomes if o.result not in ("ok", "clean")]
    assert not bad, "\n".join(f"seed {o.seed} {o.base} {o.mutation} [{o.what}] {o.loader}: {o.result} {o.detail}" for o in bad)
    return {r: sum(o.result == r for o in outcomes) for r in ("ok", "clean")}


def test_fuzz_seeded_small(tmp_path, short_heap_timeout):
    """25 damaged current-version files, each through one loader (the CLI included): all clean.

    (Files with variable-length strings cost a separate interpreter each, ~0.5 s: they are in the slow test.)"""
    outcomes = _fuzz.run_cases(range(25), tmp_path, timeout=8.0, kinds=("snn", "ann"))
    counts = _assert_all_clean(outcomes)
    assert len(outcomes) == 25 and counts["clean"] >= 15  # most damage must be noticed, not silently loaded


@pytest.mark.slow
def test_fuzz_seeded_more_with_old_files(tmp_path, short_heap_timeout):
    """40 more seeds over every base, old-version files included.  The local runs: 1500 seeds with every
    loader (``python3 -m tests.hostile._fuzz --cases 1500 --all-loaders``)."""
    _assert_all_clean(_fuzz.run_cases(range(1000, 1040), tmp_path, timeout=8.0))


def _forge_format_length(path, length: int) -> None:
    """Forge the length in the heap id of the root ``format`` attribute (a 15-character variable-length string)."""
    raw = bytearray(path.read_bytes())
    needle = struct.pack("<I", len("spikebridge.snn")) + struct.pack("<Q", raw.index(b"GCOL"))
    at = raw.index(needle)
    raw[at : at + 4] = struct.pack("<I", length)
    path.write_bytes(bytes(raw))


@pytest.mark.parametrize("kind", ["snn", "ann"])
def test_forged_heap_string_length_is_refused_not_hung(tmp_path, short_heap_timeout, kind):
    """The hang the fuzzing found: a variable-length string whose heap id claims 2**31-1 bytes."""
    path = tmp_path / "forged.h5"
    shutil.copy(_fuzz.PREVIOUS[f"{kind}_previous"], path)
    _forge_format_length(path, 2**31 - 1)  # reading it with h5py hangs (measured: killed after 3 s)
    loader = "load_network" if kind == "snn" else "load_graph"
    t0 = time.monotonic()
    result, detail = _fuzz.run_one(path, loader, timeout=20.0)
    assert result == "clean", detail
    assert time.monotonic() - t0 < 10.0
    error = "StoreFormatError" if kind == "snn" else "ModelFormatError"
    assert detail == (
        f"{error}: {'network' if kind == 'snn' else 'model'} file '{path}': reading its variable-length string "
        "attributes did not finish in 1 s (a corrupt global heap); the file is damaged"
    )


def test_files_of_the_previous_version_still_load(tmp_path):
    """Files written by the previous version (variable-length strings, format_version 2) load unchanged."""
    net_old = load_network(_fuzz.PREVIOUS["snn_previous"])
    net_new = _fuzz._network()
    assert list(net_old.populations) == list(net_new.populations) == ["inp", "conv", "out"]
    for name, pop in net_new.populations.items():
        old = net_old.populations[name]
        assert (old.n, old.model, old.shape, old.params) == (pop.n, pop.model, pop.shape, pop.params)
        np.testing.assert_array_equal(old.threshold, pop.threshold)
        np.testing.assert_array_equal(old.bias, pop.bias)
    for name, proj in net_new.projections.items():
        np.testing.assert_array_equal(net_old.projections[name].weight, proj.weight)
        np.testing.assert_array_equal(net_old.projections[name].delay, proj.delay)
    assert net_old.projections["p_conv"].operator is not None
    assert (net_old.input, net_old.output, net_old.dt, net_old.scales) == ("inp", "out", 1e-3, {"fc": 1.5})
    assert net_old.ann.metadata == {"classes": [0, 1, 2, 3]}
    ann_old = load_graph(_fuzz.PREVIOUS["ann_previous"])
    x = np.random.default_rng(0).normal(size=(3, 6))
    from spikebridge.ir import evaluate

    np.testing.assert_array_equal(evaluate(ann_old, x), evaluate(_fuzz._tiny_mlp(), x))
    # and the current writer: fixed-length strings, version 3, read back identically
    net_new.save(tmp_path / "n.h5")
    with h5py.File(tmp_path / "n.h5") as f:
        # 3: fixed-length strings (4 only with same-step delivery, 5 with burst neurons, 6 with signed ones)
        assert f.attrs["format"] == b"spikebridge.snn" and f.attrs["format_version"] == 3 and SNN_VERSION == 6
        assert not f["populations/inp"].attrs.get_id("model").get_type().is_variable_str()
    again = load_network(tmp_path / "n.h5")
    np.testing.assert_array_equal(again.projections["p_out"].weight, net_new.projections["p_out"].weight)
    assert again.ann.metadata == net_new.ann.metadata and ANN_VERSION == 5  # 4 only with a clipped ReLU, 5 with an RNN


def test_long_text_falls_back_to_a_variable_length_string(tmp_path):
    """An attribute over 60 000 bytes cannot be fixed-length (64 KiB object header message): it is written
    variable-length and read in the separate process."""
    net = _fuzz._network().copy_with(metadata={"classes": [f"class {i}" for i in range(9000)]})
    net.save(tmp_path / "n.h5")
    with h5py.File(tmp_path / "n.h5") as f:
        assert f.attrs.get_id("metadata").get_type().is_variable_str()
        assert not f.attrs.get_id("readout").get_type().is_variable_str()
    assert load_network(tmp_path / "n.h5").metadata["classes"][-1] == "class 8999"


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda f: f["populations/conv"].attrs.__setitem__("n", b"[8]"),
         "attribute 'n' of '/populations/conv' is [8]; expected int"),
        (lambda f: f["populations/conv"].attrs.__setitem__("n", 7),
         "attribute 'n' of '/populations/conv' is 7; expected text"),
        (lambda f: f["populations/conv"].attrs.__setitem__("n", b"1000000000000000"),
         "population 'conv' declares 1000000000000000 neurons, more than the 2000 MB array budget allows"),
        (lambda f: f["projections/p_out"].__delitem__("weight"), "missing dataset '/projections/p_out/weight'"),
        (lambda f: (f["projections/p_out"].__delitem__("weight"),
                    f["projections/p_out"].create_dataset("weight", data=np.array(["a"] * 24, dtype=h5py.string_dtype()))),
         "dataset '/projections/p_out/weight' holds object; expected integers or floats"),
        (lambda f: f["projections/p_out/weight"].__setitem__(0, np.nan), "weight contains NaN or Inf"),
        (lambda f: f.attrs.__setitem__("dt", b"0.001"), "attribute 'dt' of '/' is '0.001'; expected a finite number"),
        (lambda f: f.attrs.__setitem__("format_version", b"1e999"), "format_version '1e999', not an integer"),
    ],
)
def test_typed_reads_name_the_part(tmp_path, mutate, message):
    path = tmp_path / "n.h5"
    _fuzz._network().save(path)
    with h5py.File(path, "a") as f:
        mutate(f)
    with pytest.raises(StoreFormatError) as info:
        load_network(path)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_ann_typed_reads(tmp_path):
    from spikebridge.ir.serialize import save_graph

    path = tmp_path / "m.h5"
    save_graph(_fuzz._tiny_mlp(), path)
    with h5py.File(path, "a") as f:
        f["layers/1"].attrs["type"] = 3
    with pytest.raises(ModelFormatError, match=r"layer group 1 is incomplete or unreadable: attribute 'type' of '/layers/1' is 3; expected text"):
        load_graph(path)


@pytest.mark.parametrize(("command", "damage"), [("inspect", "heap"), ("graph", "heap"), ("simulate", "truncate"),
                                                 ("inspect", "truncate")])
def test_cli_one_line_for_damaged_network(tmp_path, capsys, short_heap_timeout, command, damage):
    path = tmp_path / "net.h5"
    shutil.copy(_fuzz.PREVIOUS["snn_previous"], path)
    if damage == "heap":
        _forge_format_length(path, 2**31 - 1)
    else:
        raw = path.read_bytes()
        path.write_bytes(raw[: len(raw) * 2 // 3])
    np.savez(tmp_path / "d.npz", x=np.zeros((2, 16)), y=np.zeros(2, int))
    args = {"inspect": [str(path)], "graph": [str(path)],
            "simulate": [str(path), "--data", str(tmp_path / "d.npz"), "--steps", "5", "--target", "numpy"]}[command]
    assert main([command, *args]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("spikebridge: error: ") and "Traceback" not in err, err
    assert str(path) in err
