"""Graph analysis against hand-built networks with known answers, and against networkx."""

from __future__ import annotations

import json

import networkx as nx
import numpy as np
import pytest

from spikebridge.analysis.graph import analyse, population_latency, to_networkx, write_graphml
from spikebridge.snn.network import Population, Projection, SpikingNetwork
from spikebridge.errors import ValidationError

DT = 1e-3


def pop(name, n=1, **kw):
    return Population(name=name, n=n, model=kw.pop("model", "if"), **kw)


def proj(name, pre, post, pre_index, post_index, weight, delay=DT):
    return Projection(name=name, pre=pre, post=post, pre_index=pre_index, post_index=post_index, weight=weight, delay=delay)


def three_cycle() -> SpikingNetwork:
    # neurons 0 -> 1 -> 2 -> 0 inside one population
    return SpikingNetwork([pop("ring", 3)], [proj("r", "ring", "ring", [0, 1, 2], [1, 2, 0], [1.0, 1.0, -1.0])], name="ring")


def test_three_cycle():
    rep = analyse(three_cycle())
    assert rep.components == {"n_components": 1, "largest": 3, "n_recurrent": 1, "neurons_in_loops": 3}
    assert rep.loops == [["ring"]]
    assert rep.feedback_edges == [{"pre": "ring", "post": "ring", "projections": ["r"]}]
    assert rep.reciprocity == 0.0
    assert rep.clustering == pytest.approx(nx.average_clustering(nx.DiGraph([(0, 1), (1, 2), (2, 0)])))
    assert rep.motifs["030C"] == 1 and sum(rep.motifs.values()) == 1
    assert rep.counts["synapses"] == 3 and rep.counts["exc_synapses"] == 2 and rep.counts["inh_synapses"] == 1
    # neuron 2 only inhibits, 0 and 1 only excite
    assert (rep.counts["exc"], rep.counts["inh"], rep.counts["mixed"]) == (2, 1, 0)
    p = rep.populations["ring"]
    assert p["in_degree"] == {"mean": 1.0, "std": 0.0, "min": 1.0, "max": 1.0}
    # neuron 0 receives -1 (from 2), neurons 1 and 2 receive +1
    assert p["exc_input"]["mean"] == pytest.approx(2 / 3) and p["inh_input"]["mean"] == pytest.approx(1 / 3)
    assert p["balance"] == pytest.approx((1 + 1 - 1) / 3)
    assert p["inh_dominated"] == pytest.approx(1 / 3)


def test_reciprocal_pair_and_neuron_orientation():
    # (post, pre) layout: a[0] -> b[0] with weight 2, b[0] -> a[0] with weight -0.5
    net = SpikingNetwork(
        [pop("a"), pop("b")],
        [proj("ab", "a", "b", [0], [0], [2.0]), proj("ba", "b", "a", [0], [0], [-0.5], delay=3e-3)],
    )
    g = to_networkx(net, level="neuron")
    assert g.edges[0, 1]["weight"] == 2.0 and g.edges[0, 1]["sign"] == "excitatory"
    assert g.edges[1, 0]["weight"] == -0.5 and g.edges[1, 0]["delay"] == pytest.approx(3e-3)
    assert g.nodes[0] == {"population": "a", "layer": "", "ei": "E", "index": 0}
    assert g.nodes[1]["ei"] == "I"
    rep = analyse(net)
    assert rep.reciprocity == 1.0 == nx.reciprocity(g)
    assert rep.loops == [["a", "b"]]
    assert rep.feedback_edges == [{"pre": "b", "post": "a", "projections": ["ba"]}]
    assert rep.motifs["102"] == 0  # only two nodes: no triad at all
    pg = to_networkx(net)
    assert pg.nodes["a"]["ei"] == "E" and pg.nodes["b"]["ei"] == "I"
    assert pg.edges["b", "a"]["sign"] == "inhibitory" and pg.edges["b", "a"]["delay"] == pytest.approx(3e-3)


def ff_chain(kind: str) -> SpikingNetwork:
    """input -(2 ms)-> a -(3 ms)-> b -(1 ms)-> out, plus a skip a -(1 ms)-> out; two neurons each."""
    pops = [pop("input", 2, model="input", role="input"), pop("a", 2), pop("b", 2), pop("out", 2, role="output")]
    projs = [
        proj("p_in", "input", "a", [0, 1], [0, 1], [1.0, 1.0], delay=2e-3),
        proj("p_ab", "a", "b", [0, 1], [0, 1], [1.0, 1.0], delay=3e-3),
        proj("p_bo", "b", "out", [0, 1], [0, 1], [1.0, -1.0], delay=1e-3),
        # the skip reaches out[0] only, with per-synapse delays 1 and 4 steps
        proj("p_skip", "a", "out", [0, 1], [0, 0], [0.5, 0.5], delay=np.array([1e-3, 4e-3])),
    ]
    return SpikingNetwork(pops, projs, input="input", output="out", encoding={"kind": kind})


def test_feed_forward_chain_latency():
    spikes = ff_chain("poisson")
    # shortest: 2 + 1 (skip) = 3; longest: 2 + 3 + 1 = 6 steps
    assert population_latency(spikes) == (3, 6)
    rep = analyse(spikes)
    assert rep.latency["shortest_steps"] == 3 and rep.latency["longest_steps"] == 6
    assert rep.latency["longest_s"] == pytest.approx(6e-3)
    # out[0] is first reached via input0 -> a0 -(1)-> out0 = 3 steps; out[1] only via b: 2 + 3 + 1 = 6
    assert rep.latency["neuron_first_arrival_steps"] == {"mean": 4.5, "std": 1.5, "min": 3.0, "max": 6.0}
    assert rep.latency["unreachable_outputs"] == 0
    assert rep.loops == [] and rep.feedback_edges == []
    assert rep.components["n_recurrent"] == 0 and rep.components["n_components"] == 8
    # a current-encoded input enters layer a without a synaptic hop
    current = ff_chain("current")
    assert population_latency(current) == (1, 4)
    rep = analyse(current)
    assert rep.latency["neuron_first_arrival_steps"]["min"] == 1.0
    assert rep.latency["neuron_first_arrival_steps"]["max"] == 4.0


def test_no_input_network_latency_and_unreachable():
    net = SpikingNetwork([pop("a", 2), pop("out", 2, role="output")], [proj("p", "a", "out", [0], [0], [1.0], delay=2e-3)],
                         output="out")
    rep = analyse(net)
    assert rep.latency["shortest_steps"] == 2 and rep.latency["unreachable_outputs"] == 1
    brunel_like = SpikingNetwork([pop("e", 2)], [proj("ee", "e", "e", [0, 1], [1, 0], [1.0, 1.0])])
    rep = analyse(brunel_like)
    assert rep.latency["shortest_steps"] is None
    assert any("latency not measured" in n for n in rep.notes)


def random_net(rng, n_e=60, n_i=20, p=0.1) -> SpikingNetwork:
    pops = [pop("E", n_e, sign="excitatory"), pop("I", n_i, sign="inhibitory")]
    projs = []
    for pre, npre, w in (("E", n_e, 0.1), ("I", n_i, -0.5)):
        for post, npost in (("E", n_e), ("I", n_i)):
            m = rng.random((npost, npre)) < p
            if pre == post:
                np.fill_diagonal(m, False)
            post_i, pre_i = np.nonzero(m)
            projs.append(proj(f"{pre}{post}", pre, post, pre_i, post_i, np.full(pre_i.size, w), delay=1.5e-3))
    return SpikingNetwork(pops, projs, name="ei")


def test_matches_networkx_on_random_ei_network(rng):
    net = random_net(rng)
    g = to_networkx(net, level="neuron")
    rep = analyse(net)
    assert rep.counts["synapses"] == g.number_of_edges()
    assert rep.reciprocity == pytest.approx(nx.reciprocity(g))
    assert rep.components["n_components"] == nx.number_strongly_connected_components(g)
    assert rep.components["largest"] == max(len(c) for c in nx.strongly_connected_components(g))
    assert rep.clustering == pytest.approx(nx.average_clustering(g))
    assert rep.motifs == nx.triadic_census(g)
    indeg = np.array([d for _, d in g.in_degree(range(60))])
    assert rep.populations["E"]["in_degree"]["mean"] == pytest.approx(indeg.mean())
    assert rep.populations["E"]["in_degree"]["max"] == indeg.max()
    strength = np.array([d for _, d in g.in_degree(range(60, 80), weight="weight")])
    assert rep.populations["I"]["in_strength"]["mean"] == pytest.approx(strength.mean())
    assert rep.counts["exc"] == 60 and rep.counts["inh"] == 20
    assert rep.loops == [["E", "I"]]
    assert {(e["pre"], e["post"]) for e in rep.feedback_edges} == {("E", "E"), ("I", "E"), ("I", "I")}
    assert rep.populations["E"]["ei"] == "E" and rep.populations["I"]["ei"] == "I"


def test_large_graph_skips_then_samples(rng):
    net = random_net(rng)
    rep = analyse(net, exact_limit=(10, 10))
    assert rep.clustering is None and rep.motifs is None
    assert any("sample_size" in n for n in rep.notes)
    rep = analyse(net, exact_limit=(10, 10), sample_size=30, seed=1)
    assert rep.sampled == 30 and sum(rep.motifs.values()) == 30 * 29 * 28 // 6
    assert 0.0 <= rep.clustering <= 1.0
    assert analyse(net, exact_limit=(10, 10), sample_size=30, seed=1).motifs == rep.motifs
    with pytest.raises(ValidationError, match="sample_size"):
        analyse(net, exact_limit=(10, 10), sample_size=2)


def test_report_json_text_and_graphml(rng, tmp_path):
    net = random_net(rng)
    rep = analyse(net)
    data = json.loads(json.dumps(rep.to_dict()))
    assert data["counts"]["neurons"] == 80 and data["loops"] == [["E", "I"]]
    text = rep.to_text()
    assert "80 neurons" in text and "reciprocity" in text and "{E, I}" in text
    for level in ("population", "neuron"):
        path = write_graphml(net, tmp_path / f"{level}.graphml", level=level)
        back = nx.read_graphml(path)
        assert back.number_of_edges() == (4 if level == "population" else net.n_synapses)
    back = nx.read_graphml(tmp_path / "population.graphml")
    assert back.nodes["I"]["ei"] == "I" and back.edges["I", "E"]["sign"] == "inhibitory"
    with pytest.raises(ValidationError, match="level"):
        to_networkx(net, level="synapse")


def test_parallel_synapses_counted_once(rng):
    net = SpikingNetwork(
        [pop("a"), pop("b")],
        [proj("p1", "a", "b", [0], [0], [1.0], delay=1e-3), proj("p2", "a", "b", [0], [0], [-2.0], delay=3e-3)],
        output="b",
    )
    rep = analyse(net)
    assert rep.populations["b"]["in_degree"]["mean"] == 1.0
    assert rep.counts["mixed"] == 1
    assert any("parallel" in n for n in rep.notes)
    g = to_networkx(net, level="neuron")
    assert g.edges[0, 1]["weight"] == -1.0 and g.edges[0, 1]["delay"] == pytest.approx(1e-3)
    pg = to_networkx(net)
    assert pg.edges["a", "b"]["sign"] == "mixed" and pg.edges["a", "b"]["projections"] == "p1,p2"


@pytest.mark.parametrize("factory", ["tiny_mlp", "tiny_cnn"])
@pytest.mark.parametrize("dale", ["none", "relay"])
def test_latency_agrees_with_converted_readout(request, factory, dale):
    from spikebridge.config import ConversionConfig
    from spikebridge.conversion.convert import convert

    g = request.getfixturevalue(factory)(seed=2)
    x = np.random.default_rng(0).uniform(0, 1, (30, *g.input_shape))
    for enc in ("current", "regular"):
        snn = convert(g, ConversionConfig(dale=dale, input_encoding=enc), calibration=x)
        rep = analyse(snn)
        assert rep.latency["longest_steps"] == snn.readout["latency_steps"]
        assert rep.latency["unreachable_outputs"] == 0
        assert (rep.counts["mixed"] == 0) == (dale != "none")
        assert rep.loops == []
