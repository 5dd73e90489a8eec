"""The CLI on a recurrent model: convert --steps-per-element K, simulate runs T x K steps by default."""

from __future__ import annotations

import numpy as np

from spikebridge import cli
from spikebridge.ir import save_graph
from spikebridge.snn.network import load_network

from .test_sequence import _rnn_graph


def _convert(tmp_path, capsys, *flags: str):
    """A small ReLU RNN and 30 sequences written to tmp_path, converted by the CLI with ``flags``."""
    rng = np.random.default_rng(3)
    save_graph(_rnn_graph(rng), tmp_path / "rnn.h5")
    np.savez(tmp_path / "seq.npz", x=rng.random((30, 6, 3)), y=rng.integers(0, 2, 30))
    net = tmp_path / "net.h5"
    code = cli.main(["convert", str(tmp_path / "rnn.h5"), "-o", str(net), "--calibration", str(tmp_path / "seq.npz"), *flags])
    assert code == 0, capsys.readouterr()
    return net


def test_convert_and_simulate_with_steps_per_element(tmp_path, capsys):
    net = _convert(tmp_path, capsys, "--steps-per-element", "8")
    snn = load_network(net)
    assert snn.readout["window_steps"] == 8 and snn.metadata["recurrent"]["rnn"]["delay_steps"] == 8
    capsys.readouterr()
    code = cli.main(["--quiet", "simulate", str(net), "--data", str(tmp_path / "seq.npz"), "--engine", "tensor",
                     "--steps-per-element", "8"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "48" in out  # 6 elements x 8 steps, without --steps
    code = cli.main(["simulate", str(net), "--data", str(tmp_path / "seq.npz"), "--steps-per-element", "16"])
    out, err = capsys.readouterr()
    assert code != 0 and "converted with 8 steps per element" in err and len(err.strip().splitlines()) == 1


def test_convert_with_neurons_per_unit_saves_and_reloads(tmp_path, capsys):
    from spikebridge.engines.reference import simulate_reference

    net = _convert(tmp_path, capsys, "--steps-per-element", "8", "--neurons-per-unit", "3")
    snn = load_network(net)
    rnn = snn.populations["rnn"]
    assert rnn.n == 15 and rnn.params["window_wrap"] is True and snn.metadata["neurons_per_unit"] == 3
    np.testing.assert_allclose(np.asarray(rnn.v_init)[::5], [0.5 / 3, 1.5 / 3, 2.5 / 3])
    x = np.random.default_rng(4).random((2, 6, 3))
    assert simulate_reference(snn, x, 48).counts["rnn"].sum() > 10
