"""Issue 19 §5: finite but absurd values are refused or warned about in one line before simulating,
never simulated into a wrong accuracy with exit 0.

The rules (docs/engines.md, "Absurd values"): inputs over 10^6 times the network's input scale are
refused, over 100 times its calibrated scale warned about; a delay or refractory period at least as
long as the run, and a cpp_standalone ``build_dir`` outside the working directory, warn."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from spikebridge.cli import main
from spikebridge.config import ConversionConfig, SimulationConfig
from spikebridge.errors import AccuracyWarning, SpikebridgeWarning, ValidationError


@pytest.fixture(scope="module")
def net_dir(tmp_path_factory):
    from spikebridge.conversion.convert import convert
    from tests.conftest import make_tiny_mlp

    d = tmp_path_factory.mktemp("absurd")
    x = np.random.default_rng(3).uniform(0, 1, (6, 6))
    convert(make_tiny_mlp(), ConversionConfig(percentile=100.0), calibration=x).save(d / "net.h5")
    np.save(d / "x.npy", x)
    return d


def _run(d, factor, capsys):
    x = np.load(d / "x.npy")
    np.savez(d / "d.npz", x=x * factor, y=np.arange(6) % 4)
    code = main(["-q", "simulate", str(d / "net.h5"), "--data", str(d / "d.npz"), "--steps", "10", "--engine", "tensor"])
    return code, capsys.readouterr().err


@pytest.mark.parametrize("factor", [1e300, 1e7, -1e9])
def test_absurd_inputs_are_refused_before_simulating(net_dir, capsys, factor):
    """×1e300 used to simulate (every neuron saturated) and print an accuracy with exit 0."""
    code, err = _run(net_dir, factor, capsys)
    assert code == 1
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert err.startswith("spikebridge: error: inputs reach ") and "times the network's input scale 0.973 (its " \
        "calibration): more than 1e+06 times would only saturate every neuron" in err, err


def test_inputs_far_outside_the_calibration_warn_in_one_line(net_dir, capsys):
    code, err = _run(net_dir, 255.0, capsys)  # pixels 0-255 into a network calibrated on 0-1
    assert code == 0
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("spikebridge: AccuracyWarning: inputs reach "), err
    assert "times the input scale 0.973 the network 'tiny_mlp' was calibrated on (over 100 times)" in lines[0]
    code, err = _run(net_dir, 1.0, capsys)  # the calibration's own range: silent
    assert code == 0 and err == ""


def test_the_rule_in_numbers(net_dir):
    from spikebridge.engines.plan import prepare_inputs
    from spikebridge.snn.network import load_network

    net = load_network(net_dir / "net.h5")
    scale = net.encoding["scale"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        prepare_inputs(net, np.full((1, 6), 100 * scale), 1e-3)  # 100 times: still quiet
        with pytest.raises(AccuracyWarning):
            prepare_inputs(net, np.full((1, 6), 101 * scale), 1e-3)
    with pytest.raises(ValidationError):
        prepare_inputs(net, np.full((1, 6), 1.01e6 * scale), 1e-3)
    uncalibrated = net.copy_with(encoding={"kind": "current"})  # scale 1, and no warning without a calibration
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        prepare_inputs(uncalibrated, np.full((1, 6), 1e5), 1e-3)
    with pytest.raises(ValidationError, match="times the network's input scale 1: more than"):
        prepare_inputs(uncalibrated, np.full((1, 6), 2e6), 1e-3)


def _warnings_of(net, cfg, x):
    from spikebridge.run.simulate import simulate

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        simulate(net, x, cfg)
    return [str(w.message) for w in caught if issubclass(w.category, SpikebridgeWarning)]


def test_delay_and_refractory_longer_than_the_run_warn(net_dir):
    from spikebridge.snn.network import load_network

    net = load_network(net_dir / "net.h5")
    x = np.load(net_dir / "x.npy")[:2]
    cfg = SimulationConfig(n_steps=10, engine="tensor")
    assert _warnings_of(net, cfg, x) == []
    hours = net.copy_with(projections=[p.replace(delay=3600.0) if p.name == "fc1_fc2" else p for p in net.projections.values()])
    assert _warnings_of(hours, cfg, x) == [
        "projection 'fc1_fc2' has a delay of 3.6e+03 s, at least the whole run (10 steps of 0.001 s = 0.01 s): no spike "
        "across it arrives; check the delay's unit (seconds)"]
    slow = net.copy_with(populations=[p.replace(refractory=0.5) if p.name == "fc1" else p for p in net.populations.values()])
    assert _warnings_of(slow, cfg, x) == [
        "population 'fc1' has a refractory period of 0.5 s, at least the whole run (0.01 s): each of its neurons spikes "
        "at most once; check the period's unit (seconds)"]


def test_build_dir_outside_the_working_directory_warns(net_dir, monkeypatch, tmp_path):
    import spikebridge.run.simulate as runner
    from spikebridge.snn.network import load_network

    net = load_network(net_dir / "net.h5")

    def no_compile(*args, **kwargs):  # the warning comes before any C++ is written or compiled
        raise RuntimeError("stop")

    monkeypatch.setattr(runner, "iter_standalone", no_compile)
    inside = tmp_path / "work"
    inside.mkdir()
    monkeypatch.chdir(inside)
    x = np.load(net_dir / "x.npy")[:1]
    for build_dir, expected in ((str(inside / "build"), 0), ("build", 0), (str(tmp_path / "elsewhere"), 1)):
        cfg = SimulationConfig(n_steps=5, target="cpp_standalone", build_dir=build_dir)
        with warnings.catch_warnings(record=True) as caught, pytest.raises(RuntimeError, match="stop"):
            warnings.simplefilter("always")
            runner.simulate(net, x, cfg)
        said = [str(w.message) for w in caught if "build_dir" in str(w.message)]
        assert len(said) == expected, said
    assert said[0] == (f"build_dir '{tmp_path / 'elsewhere'}' is outside the working directory '{inside.resolve()}': "
                       "a cpp_standalone run writes (and on a rebuild rewrites) its C++ project there")
