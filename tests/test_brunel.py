"""Brunel (2000) E/I network: structure, statistics helper, and the AI regime in simulation."""

from __future__ import annotations

import numpy as np
import pytest

from spikebridge.analysis.graph import analyse
from spikebridge.config import SimulationConfig
from spikebridge.conversion.dale import is_dale
from spikebridge.errors import ValidationError
from spikebridge.models.brunel import brunel_network, firing_statistics, mean_field_rate
from spikebridge.store.record import SpikeRecord, SpikeTrains


def test_structure_follows_the_paper():
    net = brunel_network(scale=0.05, seed=3)
    m = net.metadata["brunel"]
    assert (m["N_E"], m["N_I"], m["C_E"], m["C_I"]) == (500, 125, 50, 12)
    # J scaled so that J C_E equals the paper's 0.1 mV x 1000
    assert m["J"] * m["C_E"] == pytest.approx(0.1e-3 * 1000)
    assert m["nu_thr"] == pytest.approx(20e-3 / (0.1 * 0.02))  # theta / (J C_E tau) = 10 Hz
    assert m["nu_ext"] == pytest.approx(2 * 10.0)
    e, i = net.populations["E"], net.populations["I"]
    assert (e.sign, i.sign) == ("excitatory", "inhibitory")
    assert e.model == "lif" and e.tau_mem == 0.02 and e.refractory == 0.002 and e.reset == "value" and e.v_reset == 0.5
    assert e.params == {"poisson_n": 50, "poisson_rate": pytest.approx(20.0), "poisson_weight": pytest.approx(m["J"] / 20e-3)}
    assert np.all((np.asarray(e.v_init) >= 0) & (np.asarray(e.v_init) < 1))
    for name, proj in net.projections.items():
        pre, post = name.split("_")
        c = m["C_E"] if pre == "E" else m["C_I"]
        n_post = net.populations[post].n
        # fixed in-degree, distinct partners, no self-connection
        assert np.all(np.bincount(proj.post_index, minlength=n_post) == c)
        pairs = proj.post_index * 10_000 + proj.pre_index
        assert np.unique(pairs).size == pairs.size
        if pre == post:
            assert not np.any(proj.pre_index == proj.post_index)
        w = m["J"] / 20e-3 * (1.0 if pre == "E" else -5.0)
        np.testing.assert_allclose(proj.weight, w)
        assert float(proj.delay) == 1.5e-3 and proj.kind == "recurrent"
    assert is_dale(net)
    # already split into E and I: Dale's conversion leaves it alone
    from spikebridge.config import ConversionConfig
    from spikebridge.conversion.dale import apply_dale

    same = apply_dale(net, ConversionConfig(dale="relay"))
    assert list(same.populations) == ["E", "I"] and same.n_synapses == net.n_synapses
    # same seed, same network; another seed, another one
    again = brunel_network(scale=0.05, seed=3)
    np.testing.assert_array_equal(again.projections["I_E"].pre_index, net.projections["I_E"].pre_index)
    other = brunel_network(scale=0.05, seed=4)
    assert not np.array_equal(other.projections["I_E"].pre_index, net.projections["I_E"].pre_index)


def test_graph_analysis_of_brunel():
    net = brunel_network(scale=0.05, seed=0)
    rep = analyse(net)
    assert rep.loops == [["E", "I"]]
    assert rep.counts["exc"] == 500 and rep.counts["inh"] == 125 and rep.counts["mixed"] == 0
    assert rep.components["largest"] == 625
    # random sparse graph: reciprocity is about the connection probability
    assert 0.05 < rep.reciprocity < 0.15
    e = rep.populations["E"]
    assert e["in_degree"]["min"] == e["in_degree"]["max"] == 50 + 12
    # every neuron gets 50 J excitation and 12 g J inhibition: inhibition dominates (g C_I > C_E)
    assert e["inh_dominated"] == 1.0
    assert e["balance"] == pytest.approx((50 - 12 * 5) / (50 + 12 * 5))
    assert rep.latency["shortest_steps"] is None


def test_validation():
    with pytest.raises(ValidationError, match="epsilon"):
        brunel_network(scale=0.05, epsilon=0.0)
    with pytest.raises(ValidationError, match="in-degree"):
        brunel_network(n_exc=10, n_inh=3, epsilon=1.0)
    with pytest.raises(ValidationError, match="V_r"):
        brunel_network(scale=0.05, V_r=25e-3)
    with pytest.raises(ValidationError, match="scale"):
        brunel_network(scale=-1.0)


def _record(neuron, step, n, n_steps, dt=1e-3) -> SpikeRecord:
    trains = SpikeTrains(n_neurons=n, n_samples=1, dt=dt, sample=np.zeros(len(neuron), int), neuron=neuron, step=step)
    return SpikeRecord(n_samples=1, n_steps=n_steps, dt=dt, output_counts_t=np.zeros((1, n_steps, 0), np.int32),
                       output_potential_t=np.zeros((1, n_steps, 0), np.float32), spikes={"A": trains})


def test_firing_statistics_known_answers():
    # neuron 0 fires every 10 steps (100 Hz, CV 0); neuron 1 fires at steps 0, 10, 30, 60 (ISIs 10, 20, 30); neuron 2 twice
    n0 = list(range(0, 1000, 10))
    neuron = [0] * len(n0) + [1, 1, 1, 1] + [2, 2]
    step = n0 + [0, 10, 30, 60] + [5, 500]
    stats = firing_statistics(_record(np.array(neuron), np.array(step), 3, 1000))["A"]
    assert stats["rate"] == pytest.approx((100 + 4 + 2) / (3 * 1.0))
    isi = np.array([10, 20, 30.0])
    assert stats["cv_isi"] == pytest.approx(np.mean([0.0, isi.std() / isi.mean()]))
    assert stats["n_cv"] == 2  # neuron 2 has fewer than 3 spikes
    assert stats["active"] == 1.0
    # t_start drops the early spikes
    late = firing_statistics(_record(np.array(neuron), np.array(step), 3, 1000), t_start=0.5)["A"]
    assert late["rate"] == pytest.approx((50 + 1) / (3 * 0.5))
    # perfectly synchronous firing: chi = 1
    sync = firing_statistics(_record(np.repeat(np.arange(4), 10), np.tile(np.arange(0, 100, 10), 4), 4, 100))["A"]
    assert sync["synchrony"] == pytest.approx(1.0)
    with pytest.raises(ValidationError, match="t_start"):
        firing_statistics(_record(np.array([0]), np.array([0]), 1, 10), t_start=1.0)
    with pytest.raises(ValidationError, match=r"record=\('all',\)"):
        firing_statistics(_record(np.array([0]), np.array([0]), 1, 10), brunel_network(scale=0.01))


def test_mean_field_matches_reference_simulator():
    from spikebridge.engines.reference import simulate_reference

    net = brunel_network(scale=0.1, seed=0)
    theory = mean_field_rate(net)
    assert theory == pytest.approx(60.4, abs=0.1)
    rec = simulate_reference(net, None, 4000, seed=1, record=("all",))
    stats = firing_statistics(rec, net, t_start=0.1)
    for name in ("E", "I"):
        assert stats[name]["rate"] == pytest.approx(theory, rel=0.12)


@pytest.fixture(scope="module")
def brian2_ai_and_sr():
    from spikebridge.run.simulate import simulate

    out = {}
    for label, g in (("AI", 5.0), ("SR", 3.0)):
        net = brunel_network(scale=0.1, g=g, eta=2.0, seed=0)
        rec = simulate(net, None, SimulationConfig(n_steps=2500, target="numpy", seed=2, record=("all",)))
        out[label] = firing_statistics(rec, net, t_start=0.05)
    return out


def test_brian2_asynchronous_irregular_regime(brian2_ai_and_sr):
    # g = 5, eta = 2 (Brunel 2000, Fig. 8C): irregular (CV ~ 1), tens of Hz, no population synchrony
    for name in ("E", "I"):
        s = brian2_ai_and_sr["AI"][name]
        assert 20.0 < s["rate"] < 100.0
        assert s["cv_isi"] > 0.8
        assert s["n_cv"] > 0.9 * (1000 if name == "E" else 250)
        assert s["synchrony"] < 0.25


def test_brian2_synchronous_regular_regime_differs(brian2_ai_and_sr):
    # g = 3 (Fig. 8A): excitation dominates, neurons fire fast, regularly and together
    s = brian2_ai_and_sr["SR"]["E"]
    assert s["rate"] > 150.0
    assert s["cv_isi"] < 0.3
    assert s["synchrony"] > 0.3


@pytest.mark.slow
def test_brian2_default_network_one_second():
    from spikebridge.run.simulate import simulate

    net = brunel_network()  # scale 0.2: N_E = 2000, N_I = 500
    rec = simulate(net, None, SimulationConfig(n_steps=10_000, target="auto", seed=0, record=("all",)))
    stats = firing_statistics(rec, net, t_start=0.1)
    theory = mean_field_rate(net)
    for name in ("E", "I"):
        assert stats[name]["rate"] == pytest.approx(theory, rel=0.15)
        assert stats[name]["cv_isi"] > 0.8
        assert stats[name]["synchrony"] < 0.2
