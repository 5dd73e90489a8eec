"""to_brian2: the user's own Brian2 run gives the same spikes as simulate."""

from __future__ import annotations

# brian2 is imported inside the tests: importing it while pytest collects patches pytest's doctest collector

import numpy as np
import pytest

from spikebridge.engines.brian2.api import to_brian2
from spikebridge.run.simulate import simulate
from spikebridge.config import ConversionConfig, SimulationConfig
from spikebridge.conversion.convert import convert
from spikebridge.errors import ValidationError

from ._nets import mixed


def _same(rec, ref) -> int:
    assert set(rec.counts) == set(ref.counts)
    for name in ref.counts:
        np.testing.assert_array_equal(rec.counts[name], ref.counts[name], err_msg=name)
    for name in ref.spikes:
        np.testing.assert_array_equal(rec.spikes[name].step, ref.spikes[name].step, err_msg=name)
        np.testing.assert_array_equal(rec.spikes[name].neuron, ref.spikes[name].neuron, err_msg=name)
    np.testing.assert_array_equal(rec.output_counts_t, ref.output_counts_t)
    np.testing.assert_allclose(rec.output_potential_t, ref.output_potential_t, atol=1e-6)
    return sum(int(c.sum()) for c in ref.counts.values())


def test_digits_mlp_user_run_equals_simulate():
    import brian2

    from spikebridge.datasets import load_digits
    from spikebridge.models import load_shipped

    x_cal, _ = load_digits("train")
    x, _ = load_digits("test")
    x = x[:4]
    snn = convert(load_shipped("digits_mlp"), ConversionConfig(v_init=0.5), calibration=x_cal[:200])
    cfg = SimulationConfig(n_steps=40, target="numpy", record=("all",))
    ref = simulate(snn, x, cfg)
    brian2.prefs.codegen.target = "numpy"  # the user's choice; to_brian2 does not set it
    net = to_brian2(snn, x, config=cfg)
    assert set(net.groups) >= set(p for p in snn.populations if p != snn.input)
    assert net.network.schedule == ["start", "groups", "synapses", "thresholds", "resets", "end"]
    # what a user writes: their own run call on the Network
    net.network.run(cfg.n_steps * net.dt * brian2.second, namespace={})
    assert _same(net.spike_record(), ref) > 100
    assert float(np.asarray(net.clock.dt_)) == pytest.approx(snn.dt)


def test_delayed_poisson_network_and_user_monitor(rng):
    import brian2

    snn = mixed(rng, kind="poisson")
    x = rng.uniform(0, 1, size=(3, 5))
    cfg = SimulationConfig(n_steps=80, target="numpy", record=("all",), seed=7)
    ref = simulate(snn, x, cfg)
    brian2.prefs.codegen.target = "numpy"
    saved_dt = brian2.defaultclock.dt_
    net = to_brian2(snn, x, config=cfg)
    # a user's StateMonitor, added before running, sees every step of population "b"
    mon = brian2.StateMonitor(net.groups["b"], "v", record=[0, 1], clock=net.clock)
    net.network.add(mon)
    net.run()
    assert _same(net.spike_record(), ref) > 100
    assert mon.v.shape == (2, cfg.n_steps)
    assert brian2.defaultclock.dt_ == saved_dt  # global state untouched


def test_changing_tau_changes_the_run(rng):
    import brian2

    snn = mixed(rng, kind="current")
    x = rng.uniform(0, 1, size=(2, 5))
    cfg = SimulationConfig(n_steps=60, target="numpy")
    brian2.prefs.codegen.target = "numpy"
    base = to_brian2(snn, x, config=cfg)
    base.run()
    slow = to_brian2(snn, x, config=cfg)
    # namespace constants are plain Brian2 quantities the user may change before running
    slow.groups["b"].namespace["tau_mem"] = 0.2 * brian2.second
    slow.run()
    assert slow.spike_record().counts["b"].sum() != base.spike_record().counts["b"].sum()


def test_batch_size_is_checked(rng):
    snn = mixed(rng)
    with pytest.raises(ValidationError, match="batch_size"):
        to_brian2(snn, rng.uniform(0, 1, size=(3, 5)), batch_size=2)


def test_brian2_random_drive_reproduced_with_the_documented_seed():
    import brian2

    from spikebridge.snn.network import Population, SpikingNetwork

    drive = {"poisson_n": 20, "poisson_rate": 200.0, "poisson_weight": 0.2}
    snn = SpikingNetwork([Population(name="e", n=30, model="lif", tau_mem=0.02, params=drive, role="output")], output="e")
    cfg = SimulationConfig(n_steps=100, target="numpy", seed=3)
    ref = simulate(snn, None, cfg)
    brian2.prefs.codegen.target = "numpy"
    net = to_brian2(snn, config=cfg)
    brian2.seed(cfg.seed)  # the one thing the user owns for Brian2-drawn randomness (docs/brian2.md)
    net.run()
    assert _same(net.spike_record(), ref) > 20


def test_run_with_progress_says_what_it_does_and_keeps_the_spikes(rng, capsys):
    import brian2

    snn = mixed(rng, kind="current")
    x = rng.uniform(0, 1, size=(2, 5))
    cfg = SimulationConfig(n_steps=30, target="numpy", record=("all",))
    ref = simulate(snn, x, cfg)
    brian2.prefs.codegen.target = "numpy"
    net = to_brian2(snn, x, config=cfg)
    net.run(progress=True, report_period=0 * brian2.second)
    err = capsys.readouterr().err
    assert "to_brian2: generating code" in err and "target numpy" in err
    assert "100.0% of 30 steps x 2 samples" in err  # Brian2's final report
    assert _same(net.spike_record(), ref) > 0
