"""Winner-take-all lateral inhibition, alone and through Dale's split."""

from __future__ import annotations

import numpy as np
import pytest

from spikebridge.analysis.graph import analyse
from spikebridge.config import ConversionConfig
from spikebridge.conversion.dale import apply_dale, is_dale
from spikebridge.snn.network import Population, SpikingNetwork
from spikebridge.conversion.recurrent import add_lateral_inhibition
from spikebridge.errors import ConversionError, ValidationError
from tests.conversion.test_dale import DT, chain, simulate_dt


def test_lateral_projection_shape_and_metadata(rng):
    net = chain(rng)
    out = add_lateral_inhibition(net, 0.75)
    p = out.projections["l3_lateral"]
    assert (p.pre, p.post, p.kind, p.target) == ("l3", "l3", "lateral", "v")
    assert float(p.delay) == DT
    m = p.to_dense(4, 4)
    np.testing.assert_array_equal(np.diag(m), 0.0)
    np.testing.assert_allclose(m[~np.eye(4, dtype=bool)], -0.75)
    assert out.metadata["lateral_inhibition"] == 0.75
    assert out.n_synapses == net.n_synapses + 12
    # the recurrent projection adds no pipeline latency
    assert out.readout == net.readout
    assert add_lateral_inhibition(net, 0.0) is net


def test_lateral_scales_with_threshold():
    out = Population(name="o", n=2, model="if", threshold=np.array([2.0, 4.0]), role="output")
    net = add_lateral_inhibition(SpikingNetwork([out], output="o"), 0.5)
    np.testing.assert_allclose(net.projections["o_lateral"].to_dense(2, 2), [[0.0, -1.0], [-2.0, 0.0]])


def test_lateral_errors(rng):
    net = chain(rng)
    with pytest.raises(ValidationError, match="strength must be >= 0"):
        add_lateral_inhibition(net, -1.0)
    with pytest.raises(ValidationError, match="finite"):
        add_lateral_inhibition(net, float("nan"))
    with pytest.raises(ValidationError, match="already has 'l3_lateral'"):
        add_lateral_inhibition(add_lateral_inhibition(net, 0.5), 0.5)
    integ = Population(name="o", n=3, model="integrator", role="output")
    with pytest.raises(ConversionError, match="non-spiking.*output='count'"):
        add_lateral_inhibition(SpikingNetwork([integ], output="o"), 0.5)
    with pytest.raises(ConversionError, match="no output population"):
        add_lateral_inhibition(SpikingNetwork([integ]), 0.5)


def test_winner_take_all_suppresses_losers(rng):
    net = chain(rng, hidden_bias=False)
    T = 300
    plain = simulate_dt(net, T)["l3"][-1]
    wta = simulate_dt(add_lateral_inhibition(net, 1.0), T)["l3"][-1]
    winner = int(np.argmax(plain))
    assert plain.sum() > 50
    assert int(np.argmax(wta)) == winner
    losers = np.arange(plain.size) != winner
    assert wta[losers].sum() < 0.5 * plain[losers].sum()


def test_lateral_through_dale_relay(rng):
    net = add_lateral_inhibition(chain(rng, hidden_bias=False), 1.0)
    out = apply_dale(net, ConversionConfig(dale="relay"))
    assert is_dale(out)
    relay = out.projections["l3_to_inh"]
    lat = out.projections["l3_lateral_inh"]
    assert relay.post == "l3_inh" and lat.pre == "l3_inh" and lat.post == "l3"
    # relay hop + lateral delay: the recurrent loop now takes two steps
    assert float(relay.delay) + float(lat.delay) == pytest.approx(2 * DT)
    T = 300
    plain = simulate_dt(net, T)["l3"][-1]
    split = simulate_dt(out, T + out.metadata["dale"]["extra_latency_steps"])["l3"][-1]
    assert int(np.argmax(split)) == int(np.argmax(plain))
    # the population graph now has the loop l3 -> l3_inh -> l3
    rep = analyse(out)
    assert ["l3", "l3_inh"] in rep.loops
    assert {"pre": "l3_inh", "post": "l3", "projections": ["l3_lateral_inh"]} in rep.feedback_edges
