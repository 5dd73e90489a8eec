"""Input currents computed per batch (``plan.InputCurrents``): every selection reads the same values."""

from __future__ import annotations

import pickle

import numpy as np

import spikebridge.engines.plan as plan_mod
from spikebridge.config import ConversionConfig, SimulationConfig
from spikebridge.conversion.convert import convert
from spikebridge.engines.plan import InputCurrents, prepare_inputs
from spikebridge.run.simulate import simulate
from spikebridge.snn.network import Population, Projection, SpikingNetwork


def _two_links(rng):
    """Input onto "a" through two dense projections (summed) and onto "b" through one."""
    pops = [Population(name="input", n=6, model="input"), Population(name="a", n=5, model="if", threshold=1.0),
            Population(name="b", n=3, model="if", threshold=1.0)]
    projs = [Projection.from_dense(rng.normal(0, 1, (5, 6)), name="in_a", pre="input", post="a"),
             Projection.from_dense(rng.normal(0, 1, (5, 6)), name="in_a2", pre="input", post="a"),
             Projection.from_dense(rng.normal(0, 1, (3, 6)), name="in_b", pre="input", post="b")]
    return SpikingNetwork(pops, projs, input="input", output="b", encoding={"kind": "current", "scale": 2.0})


def test_selections_read_the_same_currents_as_the_whole_plan(rng, monkeypatch):
    monkeypatch.setattr(plan_mod, "CURRENT_CHUNK", 7)  # chunks that batches cut across
    net = _two_links(rng)
    x = rng.uniform(0, 1, (40, 6))
    plan = prepare_inputs(net, x, net.dt)
    assert isinstance(plan.currents, InputCurrents) and set(plan.currents) == {"a", "b"} and "c" not in plan.currents
    whole = {k: v.copy() for k, v in plan.currents.items()}
    # what the currents mean: Σ (x / scale) @ Wᵀ / dt over the links onto a population
    dense = {name: sum((x / 2.0) @ _dense(net.projections[p], net.populations[name].n).T for p in links) / net.dt
             for name, links in {"a": ("in_a", "in_a2"), "b": ("in_b",)}.items()}
    for name in whole:
        np.testing.assert_allclose(whole[name], dense[name], rtol=1e-12, atol=1e-9)
    fresh = prepare_inputs(net, x, net.dt)
    for start, stop in [(0, 40), (3, 11), (7, 14), (13, 40), (39, 45), (40, 50)]:
        part = fresh.select(start, stop)
        assert part.n_samples == len(range(40)[start:stop])
        for name in whole:  # computed from the part's own chunks, never from the whole plan's
            np.testing.assert_array_equal(part.currents[name], whole[name][start:stop])
        # a part of a part, and a part of a plan whose currents were already computed
        np.testing.assert_array_equal(part.select(1, 4).currents["a"], whole["a"][start + 1 : min(start + 4, stop, 40)])
        np.testing.assert_array_equal(plan.select(start, stop).currents["b"], whole["b"][start:stop])
    part = fresh.select(5, 20)
    back = pickle.loads(pickle.dumps(part))  # sent to Dask workers
    np.testing.assert_array_equal(back.currents["a"], whole["a"][5:20])
    # a batch carries the inputs of its own chunks (samples 0-20 here), not all 40 samples
    assert len(pickle.dumps(part)) < len(pickle.dumps(fresh)) - 18 * 6 * 8
    np.testing.assert_array_equal(back.select(9, 12).currents["b"], whole["b"][14:17])


def _dense(proj, n_post: int, n_pre: int = 6):
    w = np.zeros((n_post, n_pre))
    np.add.at(w, (proj.post_index, proj.pre_index), proj.weight)
    return w


def test_a_run_in_batches_and_parts_gives_the_spikes_of_one_batch(monkeypatch):
    """A conv net whose first convolution is folded into the input current: batches of 5 and 2
    thread parts against one batch, with chunks of 3 samples that every batch cuts across."""
    from spikebridge.ir import AnnGraph, Conv2d, Dense, Flatten, Input, ReLU

    monkeypatch.setattr(plan_mod, "CURRENT_CHUNK", 3)
    r = np.random.default_rng(8)
    g = AnnGraph([Input(name="input", shape=(1, 6, 6)),
                  Conv2d(name="conv1", weight=r.normal(0.1, 0.5, size=(3, 1, 3, 3)), bias=np.zeros(3)),
                  ReLU(name="relu1"), Flatten(name="flat"),
                  Dense(name="fc", weight=r.normal(0, 0.3, size=(4, 48)), bias=np.zeros(4))], name="folded")
    x = r.uniform(0, 1, (13, 1, 6, 6))
    snn = convert(g, ConversionConfig(v_init=0.5), calibration=x)
    one = simulate(snn, x, SimulationConfig(n_steps=40, engine="tensor", batch_size=13, record=("all",)))
    many = simulate(snn, x, SimulationConfig(n_steps=40, engine="tensor", batch_size=5, threads=2, record=("all",)))
    for name in one.counts:
        np.testing.assert_array_equal(one.counts[name], many.counts[name], err_msg=name)
    assert sum(int(c.sum()) for c in one.counts.values()) > 200
