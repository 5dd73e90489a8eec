"""The numpy reference simulator against hand-computed spike counts."""

from __future__ import annotations

import math

import numpy as np
import pytest

from spikebridge.engines.reference import simulate_reference
from spikebridge.snn.network import Population, SpikingNetwork
from spikebridge.errors import ValidationError

from ._nets import chain, single_if


@pytest.mark.parametrize(("current", "threshold", "n_steps"), [(0.37, 1.0, 64), (0.37, 0.5, 64), (0.9, 1.0, 33), (0.11, 0.3, 100)])
def test_if_neuron_fires_floor_t_i_over_theta(current, threshold, n_steps):
    net = single_if(threshold=threshold)
    rec = simulate_reference(net, [[current]], n_steps)
    expected = math.floor(n_steps * current / threshold)
    assert int(rec.output_counts[0, 0]) == expected
    # reset by subtraction keeps the remainder: v_T = T*I - count*theta
    assert rec.output_potential_t[0, -1, 0] == pytest.approx(n_steps * current - expected * threshold, abs=1e-5)


def test_if_counts_over_time_are_cumulative():
    rec = simulate_reference(single_if(), [[0.25]], 12)
    # fires at steps 3, 7, 11
    assert rec.output_counts_t[0, :, 0].tolist() == [0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3]


@pytest.mark.parametrize("d", [1, 2, 5])
def test_delay_shifts_first_spike(d):
    rec = simulate_reference(chain(d), [[1.0]], 20, record=("a", "b"))
    first_a = int(rec.spikes["a"].step.min())
    first_b = int(rec.spikes["b"].step.min())
    assert first_a == 0
    assert first_b - first_a == d
    assert int(rec.counts["b"][0, 0]) == 20 - d


@pytest.mark.parametrize(("ref_steps", "drive"), [(3, 1.0), (3, 2.5), (5, 1.0)])
def test_refractory_period_caps_rate(ref_steps, drive):
    n_steps = 20
    rec = simulate_reference(single_if(refractory=ref_steps * 1e-3), [[drive]], n_steps, record=("out",))
    # fires at 0, r, 2r, ...: ceil(T / r) spikes, however strong the drive
    assert int(rec.output_counts[0, 0]) == math.ceil(n_steps / ref_steps)
    assert np.all(np.diff(rec.spikes["out"].step) == ref_steps)


def test_reset_to_zero_loses_remainder():
    rec = simulate_reference(single_if(reset="zero"), [[0.7]], 10)
    # v: .7, 1.4->0, .7, 1.4->0 ... one spike every two steps
    assert int(rec.output_counts[0, 0]) == 5


def test_bias_only_network_runs_without_inputs():
    net = SpikingNetwork([Population(name="a", n=2, model="if", bias=[250.0, 500.0], role="output")], output="a")
    rec = simulate_reference(net, None, 16)
    assert rec.output_counts[0].tolist() == [4, 8]
    with pytest.raises(ValidationError, match="no input population"):
        simulate_reference(net, np.zeros((1, 2)), 4)


def test_bad_input_shape_is_refused():
    with pytest.raises(ValidationError, match="do not match input population"):
        simulate_reference(single_if(), np.zeros((2, 3)), 4)


def test_poisson_drive_is_seeded():
    pop = Population(name="a", n=50, model="if", role="output", params={"poisson_n": 10, "poisson_rate": 20.0, "poisson_weight": 0.3})
    net = SpikingNetwork([pop], output="a")
    a = simulate_reference(net, None, 100, seed=1).output_counts
    b = simulate_reference(net, None, 100, seed=1).output_counts
    c = simulate_reference(net, None, 100, seed=2).output_counts
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)
    # 10 inputs x 20 Hz x 0.1 s x 0.3 = 6 threshold units on average -> about 6 spikes
    assert 4 < a.mean() < 8
