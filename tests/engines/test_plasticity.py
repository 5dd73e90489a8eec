"""STDP on to_brian2 networks: hand-computed weight changes, Dale's law, weight recordings."""

from __future__ import annotations

# brian2 is imported inside the tests: importing it while pytest collects patches pytest's doctest collector

import math

import numpy as np
import pytest

from spikebridge.engines.brian2.api import to_brian2
from spikebridge.engines.brian2.plasticity import STDPRule, add_stdp, present_samples
from spikebridge.config import SimulationConfig
from spikebridge.snn.network import Population, Projection, SpikingNetwork
from spikebridge.errors import ValidationError


def _pair_net(w0: float = 0.2) -> SpikingNetwork:
    """Two input neurons -> one IF neuron: input 1 alone makes it fire (weight 1)."""
    pops = [Population(name="input", n=2, model="input", role="input", sign="excitatory"),
            Population(name="a", n=1, model="if", role="output", reset="zero", sign="excitatory")]
    proj = Projection(name="in_a", pre="input", post="a", pre_index=[0, 1], post_index=[0, 0], weight=[w0, 1.0], delay=1e-3)
    return SpikingNetwork(pops, [proj], input="input", output="a", encoding={"kind": "spikes"})


def test_pair_based_stdp_matches_hand_computation():
    import brian2

    brian2.prefs.codegen.target = "numpy"
    raster = np.zeros((1, 40, 2))
    raster[0, 10, 0] = 1  # pre 0 at step 10, 5 steps before the post spike
    raster[0, 15, 1] = 1  # pre 1 at step 15 -> a fires at step 16
    raster[0, 30, 0] = 1  # pre 0 again, 14 steps after the post spike
    rule = STDPRule(tau_pre=0.02, tau_post=0.02, a_plus=0.01, a_minus=-0.012, w_max=2.0)
    net = to_brian2(_pair_net(), raster, config=SimulationConfig(n_steps=40, record=("a",)))
    plastic = add_stdp(net, "in_a", rule)
    assert net.synapses["in_a"] is plastic.synapses and net.network["in_a"] is plastic.synapses
    plastic.snapshot()
    net.run()
    plastic.snapshot()
    rec = net.spike_record()
    assert rec.spikes["a"].step.tolist() == [16]
    # both pathways run in the synapses slot one step after the spike: pre 0 at 11, pre 1 at 16, post at 17
    w0 = 0.2 + 0.01 * math.exp(-6 / 20) - 0.012 * math.exp(-14 / 20)
    w1 = 1.0 + 0.01 * math.exp(-1 / 20)
    np.testing.assert_allclose(plastic.weights, [w0, w1], rtol=1e-9)
    assert plastic.times == [0.0, pytest.approx(0.04)]
    np.testing.assert_allclose(plastic.weight_matrix(), [[w0, w1]], rtol=1e-6)


def test_stdp_on_a_same_step_projection_keeps_its_schedule_slot():
    import brian2

    brian2.prefs.codegen.target = "numpy"
    snn = _pair_net()
    snn = snn.copy_with(projections=[snn.projections["in_a"].replace(delay=0.0)], min_delay_steps=0)
    raster = np.zeros((1, 40, 2))
    raster[0, 10, 0] = 1
    raster[0, 15, 1] = 1  # pre 1 at step 15 -> a fires in the same step
    raster[0, 30, 0] = 1
    rule = STDPRule(tau_pre=0.02, tau_post=0.02, a_plus=0.01, a_minus=-0.012, w_max=2.0)
    net = to_brian2(snn, raster, config=SimulationConfig(n_steps=40, record=("a",)))
    plastic = add_stdp(net, "in_a", rule)
    assert plastic.synapses.pre.when == "thresholds"
    net.run()
    assert net.spike_record().spikes["a"].step.tolist() == [15]
    # pre events now act in their own step, the post pathway one step after the post spike: the
    # pairings are the same intervals as with one-step delays
    w0 = 0.2 + 0.01 * math.exp(-6 / 20) - 0.012 * math.exp(-14 / 20)
    w1 = 1.0 + 0.01 * math.exp(-1 / 20)
    np.testing.assert_allclose(plastic.weights, [w0, w1], rtol=1e-9)


def test_weights_stay_within_bounds():
    import brian2

    brian2.prefs.codegen.target = "numpy"
    raster = np.zeros((1, 60, 2))
    raster[0, ::3, 0] = 1
    raster[0, 1::3, 1] = 1
    net = to_brian2(_pair_net(0.05), raster, config=SimulationConfig(n_steps=60))
    plastic = add_stdp(net, "in_a", STDPRule(a_plus=0.5, a_minus=-0.5, w_min=0.0, w_max=1.2))
    net.run()
    assert np.all(plastic.weights >= 0.0) and np.all(plastic.weights <= 1.2)
    assert plastic.weights.max() == pytest.approx(1.2)  # potentiation hit the bound


def test_dale_and_rule_checks(rng):
    import brian2

    brian2.prefs.codegen.target = "numpy"
    raster = np.zeros((1, 5, 2))
    with pytest.raises(ValidationError, match="inhibitory"):
        add_stdp(to_brian2(_pair_net(-0.3), raster, config=SimulationConfig(n_steps=5)), "in_a")
    net = to_brian2(_pair_net(), raster, config=SimulationConfig(n_steps=5))
    with pytest.raises(ValidationError, match="w_max"):
        add_stdp(net, "in_a", STDPRule(w_max=0.5))
    with pytest.raises(ValidationError, match="no Synapses named"):
        add_stdp(net, "nope")
    for bad in (dict(a_minus=0.1), dict(w_min=-0.1), dict(tau_pre=0.0)):
        with pytest.raises(ValidationError):
            STDPRule(**bad)
    net.run()
    with pytest.raises(ValidationError, match="already run"):
        add_stdp(net, "in_a")


def test_present_samples_counts_and_normalises():
    import brian2

    brian2.prefs.codegen.target = "numpy"
    pops = [Population(name="input", n=2, model="input", role="input", sign="excitatory"),
            Population(name="a", n=2, model="if", role="output", reset="zero", sign="excitatory")]
    proj = Projection.from_dense([[0.6, 0.0], [0.0, 0.6]], keep_zeros=True, name="in_a", pre="input", post="a", delay=1e-3)
    snn = SpikingNetwork(pops, [proj], input="input", output="a", encoding={"kind": "poisson", "scale": 1.0, "max_rate": 1000.0})
    net = to_brian2(snn, config=SimulationConfig(n_steps=1))
    plastic = add_stdp(net, "in_a", STDPRule(a_plus=1e-4, a_minus=-1e-4, w_max=2.0))
    # a rate of 1/dt fires every step: input 0 only, then input 1 only
    counts = present_samples(net, np.array([[1000.0, 0.0], [0.0, 1000.0]]), t_present=0.02, t_rest=0.01,
                             population="a", plastic=plastic, normalise=0.6, snapshot_every=1)
    # two input spikes of 0.6 per output spike (reset to zero): 19 arrivals in 20 steps -> 9 spikes
    assert counts.tolist() == [[9, 0], [0, 9]]
    assert len(plastic.history) == 3 and plastic.times[:2] == [0.0, pytest.approx(0.03)]
    np.testing.assert_allclose(np.bincount(plastic.post, weights=plastic.history[1]), [0.6, 0.6])
