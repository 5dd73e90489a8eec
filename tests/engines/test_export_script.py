"""spikebridge export --brian2: a standalone Brian2 script that reproduces simulate's counts."""

from __future__ import annotations

import ast
import subprocess
import sys

import numpy as np
import pytest

from spikebridge.export.brian2_script import export_brian2_script
from spikebridge.run.simulate import simulate
from spikebridge.cli import main
from spikebridge.config import ConversionConfig, SimulationConfig
from spikebridge.conversion.convert import convert
from spikebridge.errors import ValidationError

from ._nets import mixed


def _run(script) -> subprocess.CompletedProcess:
    # a clean interpreter that cannot see this checkout's spikebridge (cwd = the script's folder)
    return subprocess.run([sys.executable, "-I", str(script), "--target", "numpy"], capture_output=True, text=True,
                          cwd=script.parent, timeout=300)


def check_to_brian2_and_script(snn, x, tmp_path, n_steps: int, marker: str, min_spikes: int):
    """`to_brian2` and the exported script (whose text holds ``marker``) reproduce the reference's
    spikes and counts (numpy target); returns the reference record."""
    import brian2

    from spikebridge.engines.brian2.api import to_brian2
    from spikebridge.engines.reference import simulate_reference

    from .test_tensor import assert_same_spikes

    cfg = SimulationConfig(n_steps=n_steps, target="numpy", record=("all",))
    ref = simulate_reference(snn, x, n_steps, record=("all",))
    brian2.prefs.codegen.target = "numpy"
    net = to_brian2(snn, x, config=cfg)
    net.network.run(cfg.n_steps * net.dt * brian2.second, namespace={})
    assert_same_spikes(net.spike_record(), ref, min_spikes=min_spikes)
    script, _ = export_brian2_script(snn, tmp_path / "out", x, n_steps=n_steps)
    assert marker in script.read_text()
    res = _run(script)
    assert res.returncode == 0, res.stderr[-2000:]
    with np.load(tmp_path / "out" / "snn_results.npz", allow_pickle=False) as got:
        for name, counts in ref.counts.items():
            np.testing.assert_array_equal(got[f"{name}__counts"], counts, err_msg=name)
    return ref


def _imports(script) -> set[str]:
    tree = ast.parse(script.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            names.add((node.module or "").split(".")[0])
    return names


def test_script_of_delayed_poisson_network_reproduces_counts(rng, tmp_path):
    snn = mixed(rng, kind="poisson")
    x = rng.uniform(0, 1, size=(3, 5))
    script, arrays = export_brian2_script(snn, tmp_path / "out", x, n_steps=80, seed=7)
    assert _imports(script) == {"argparse", "os", "brian2", "numpy"}
    text = script.read_text()
    for name in ("a", "b", "c", "out", "a_b", "b_a"):
        assert f"'{name}'" in text  # every population and projection named in a comment or object
    assert "# --- projection 'a_b': a -> b" in text
    res = _run(script)
    assert res.returncode == 0, res.stderr[-2000:]
    ref = simulate(snn, x, SimulationConfig(n_steps=80, target="numpy", seed=7))
    with np.load(tmp_path / "out" / "snn_results.npz", allow_pickle=False) as got:
        for name, counts in ref.counts.items():
            np.testing.assert_array_equal(got[f"{name}__counts"], counts, err_msg=name)
        np.testing.assert_allclose(got["output__potential"], ref.output_potential_t[:, -1], atol=1e-5)
    assert sum(int(c.sum()) for c in ref.counts.values()) > 300


def test_cli_export_digits_mlp_and_refuse_overwrite(tmp_path, capsys):
    from spikebridge.datasets import load_digits
    from spikebridge.models import load_shipped

    x_cal, _ = load_digits("train")
    snn = convert(load_shipped("digits_mlp"), ConversionConfig(v_init=0.5), calibration=x_cal[:200])
    net = tmp_path / "net.h5"
    snn.save(net)
    out = tmp_path / "script"
    assert main(["export", str(net), "--brian2", str(out), "--limit", "5", "--steps", "40"]) == 0
    script = out / f"{snn.name}.py"
    res = _run(script)
    assert res.returncode == 0, res.stderr[-2000:]
    x, _ = load_digits("test")
    ref = simulate(snn, x[:5], SimulationConfig(n_steps=40, target="numpy"))
    with np.load(out / f"{snn.name}_results.npz", allow_pickle=False) as got:
        np.testing.assert_array_equal(got[f"{snn.output}__counts"], ref.output_counts)
    assert ref.output_counts.sum() > 20
    assert "sample 0:" in res.stdout
    # a second export refuses to replace the files
    assert main(["export", str(net), "--brian2", str(out), "--limit", "5"]) == 1
    assert "--overwrite" in capsys.readouterr().err
    assert main(["export", str(net), "--brian2", str(out), "--limit", "5", "--overwrite"]) == 0


def test_export_needs_inputs(rng, tmp_path):
    with pytest.raises(ValidationError, match="inputs"):
        export_brian2_script(mixed(rng), tmp_path, None)


def test_script_reproduces_brian2_drawn_poisson_drive(tmp_path):
    from spikebridge.snn.network import Population, SpikingNetwork

    drive = {"poisson_n": 20, "poisson_rate": 200.0, "poisson_weight": 0.2}
    snn = SpikingNetwork([Population(name="e", n=30, model="lif", tau_mem=0.02, params=drive, refractory=2e-3,
                                     role="output")], output="e", name="brunel_like")
    script, _ = export_brian2_script(snn, tmp_path, None, n_steps=100, seed=3)
    assert "b2.PoissonInput(e, 'v', N=20" in script.read_text()
    res = _run(script)
    assert res.returncode == 0, res.stderr[-2000:]
    ref = simulate(snn, None, SimulationConfig(n_steps=100, target="numpy", seed=3))
    with np.load(tmp_path / "brunel_like_results.npz", allow_pickle=False) as got:
        np.testing.assert_array_equal(got["e__counts"], ref.counts["e"])
    assert ref.counts["e"].sum() > 20
