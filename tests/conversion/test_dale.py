"""Dale's-law split: no mixed neuron, relay exact in rate, pooled error reported."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

from spikebridge.config import ConversionConfig
from spikebridge.conversion.dale import apply_dale, check_dale, is_dale, nmf
from spikebridge.snn.network import Population, Projection, SpikingNetwork, load_network
from spikebridge.conversion.recurrent import add_lateral_inhibition
from spikebridge.errors import ConversionWarning, ValidationError

DT = 1e-3


def simulate_dt(snn: SpikingNetwork, n_steps: int, input_spikes: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Independent oracle of the discrete-time contract for IF networks (COMMON.md).

    Per step: v += dt * bias; add synaptic arrivals due now; spike if v >= threshold;
    reset; spikes emitted at step k reach the post population at step k + max(1, round(d/dt)).
    ``input_spikes`` (n_steps, n_input) drives a spike-encoded input population.

    Returns cumulative spike counts per population, shape (n_steps, n).
    """
    v = {n: np.broadcast_to(np.asarray(p.v_init, float), (p.n,)).copy() for n, p in snn.populations.items()}
    horizon = n_steps + int(round(snn.max_delay() / snn.dt)) + 2
    buf = {n: np.zeros((horizon, p.n)) for n, p in snn.populations.items()}
    counts = {n: np.zeros((n_steps, p.n), dtype=np.int64) for n, p in snn.populations.items()}
    total = {n: np.zeros(p.n, dtype=np.int64) for n, p in snn.populations.items()}
    for k in range(n_steps):
        spikes = {}
        for name, pop in snn.populations.items():
            if pop.model == "input":
                spikes[name] = input_spikes[k].astype(bool) if input_spikes is not None else np.zeros(pop.n, bool)
                continue
            assert pop.model == "if"
            v[name] += snn.dt * np.asarray(pop.bias) + buf[name][k]
            fired = v[name] >= np.asarray(pop.threshold)
            if pop.reset == "subtract":
                v[name] = np.where(fired, v[name] - pop.threshold, v[name])
            elif pop.reset == "zero":
                v[name] = np.where(fired, 0.0, v[name])
            spikes[name] = fired
        for proj in snn.projections.values():
            s = spikes[proj.pre][proj.pre_index]
            steps = np.maximum(np.rint(np.broadcast_to(proj.delay, proj.weight.shape) / snn.dt), 1).astype(int)
            np.add.at(buf[proj.post], (k + steps[s], proj.post_index[s]), proj.weight[s])
        for name in snn.populations:
            total[name] += spikes[name]
            counts[name][k] = total[name]
    return counts


def chain(rng, sizes=(6, 10, 8, 4), hidden_bias=True, delay=DT, lateral=0.0) -> SpikingNetwork:
    """Feed-forward IF chain: the first layer is driven by a bias (the input current), mixed-sign weights."""
    pops = []
    for k, n in enumerate(sizes):
        bias = rng.uniform(50, 400, n) if k == 0 else (rng.uniform(-20, 40, n) if hidden_bias else 0.0)
        role = "output" if k == len(sizes) - 1 else "hidden"
        pops.append(Population(name=f"l{k}", n=n, model="if", bias=bias, role=role, layer=f"fc{k}"))
    projs = []
    for k in range(len(sizes) - 1):
        w = rng.normal(0.1, 0.5, (sizes[k + 1], sizes[k]))
        projs.append(Projection.from_dense(w, name=f"p{k}", pre=f"l{k}", post=f"l{k + 1}", delay=delay, layer=f"fc{k + 1}"))
    net = SpikingNetwork(pops, projs, output=f"l{len(sizes) - 1}", dt=DT, readout={"latency_steps": len(sizes) - 1})
    return add_lateral_inhibition(net, lateral) if lateral else net


def test_plain_chain_is_not_dale(rng):
    net = chain(rng)
    violations = check_dale(net)
    assert {v.population for v in violations} == {"l0", "l1", "l2"}
    assert all(v.reason == "mixed" for v in violations)
    assert "both signs" in str(violations[0]) and "'p0'" in str(violations[0])
    assert not is_dale(net)


def test_violation_across_projections_is_found():
    a = Population(name="a", n=2, model="if", sign="excitatory")
    b = Population(name="b", n=1, model="if")
    c = Population(name="c", n=1, model="if")
    # neuron 0 is positive onto b and negative onto c: each projection alone is single-signed
    p1 = Projection(name="ab", pre="a", post="b", pre_index=[0, 1], post_index=[0, 0], weight=[1.0, 1.0])
    p2 = Projection(name="ac", pre="a", post="c", pre_index=[0], post_index=[0], weight=[-1.0])
    assert p1.sign == "excitatory" and p2.sign == "inhibitory"
    v = check_dale(SpikingNetwork([a, b, c], [p1, p2]))
    assert [x.reason for x in v] == ["mixed"]
    assert v[0].neurons.tolist() == [0]
    assert "positive via 'ab', negative via 'ac'" in v[0].message
    # an excitatory tag with a purely negative neuron is a violation too
    p3 = Projection(name="ac", pre="a", post="c", pre_index=[1], post_index=[0], weight=[-1.0])
    p1b = Projection(name="ab", pre="a", post="b", pre_index=[0], post_index=[0], weight=[1.0])
    v = check_dale(SpikingNetwork([a, b, c], [p1b, p3]))
    assert [x.reason for x in v] == ["tag"] and v[0].neurons.tolist() == [1]


@pytest.mark.parametrize("mode", ["relay", "pooled"])
def test_split_obeys_dale(rng, mode):
    net = chain(rng, lateral=0.5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConversionWarning)
        out = apply_dale(net, ConversionConfig(dale=mode))
    assert check_dale(out) == []
    for name, pop in out.populations.items():
        assert pop.sign in ("excitatory", "inhibitory"), name
        for proj in out.outgoing(name):
            assert proj.sign == pop.sign or proj.n_synapses == 0, (name, proj.name)
    # converted neurons are excitatory, the added ones inhibitory interneurons
    assert {n for n, p in out.populations.items() if p.sign == "inhibitory"} == {"l0_inh", "l1_inh", "l2_inh", "l3_inh"}
    assert all(out.populations[f"l{k}"].sign == "excitatory" for k in range(4))
    # the lateral (recurrent) projection went through the output's interneurons
    assert "l3_lateral" not in out.projections
    lat = out.projections["l3_lateral_inh"]
    assert lat.pre == "l3_inh" and lat.post == "l3" and lat.kind == "lateral" and lat.sign == "inhibitory"
    assert out.metadata["dale"]["mode"] == mode
    # idempotent: a split network needs no more splitting
    assert apply_dale(out, ConversionConfig(dale=mode)).n_neurons == out.n_neurons


def test_relay_structure_and_counts(rng):
    net = chain(rng)
    out = apply_dale(net, ConversionConfig(dale="relay"))
    # one interneuron per neuron that has a negative outgoing weight
    for k in range(3):
        w = net.projections[f"p{k}"].weight
        needs = np.unique(net.projections[f"p{k}"].pre_index[w < 0]).size
        assert out.populations[f"l{k}_inh"].n == needs
        relay = out.projections[f"l{k}_to_inh"]
        assert relay.kind == "relay" and np.all(relay.weight == 1.0)
        inh = out.projections[f"p{k}_inh"]
        assert inh.weight.sum() == pytest.approx(w[w < 0].sum())
        # alignment: relay hop (1 step) + inhibitory delay == excitatory delay
        assert float(relay.delay) + float(inh.delay) == pytest.approx(float(out.projections[f"p{k}"].delay))
        assert float(out.projections[f"p{k}"].delay) == pytest.approx(2 * DT)
    info = out.metadata["dale"]
    assert info["extra_latency_steps"] == 3
    assert out.readout["latency_steps"] == 3 + 3
    assert info["neurons_after"] == out.n_neurons > info["neurons_before"] == net.n_neurons
    assert info["synapses_after"] == out.n_synapses


def test_relay_interneuron_copies_spikes_one_for_one(rng):
    net = chain(rng, sizes=(6, 5))
    out = apply_dale(net, ConversionConfig(dale="relay"))
    res = simulate_dt(out, 200)
    idx = out.projections["l0_to_inh"].pre_index
    pre = np.diff(res["l0"][:, idx], axis=0, prepend=0)
    inh = np.diff(res["l0_inh"], axis=0, prepend=0)
    assert res["l0"][-1].sum() > 100  # the test is not vacuous
    np.testing.assert_array_equal(inh[1:], pre[:-1])  # same spikes, one step later


def test_relay_counts_match_plain_exactly_without_hidden_bias(rng):
    net = chain(rng, hidden_bias=False)
    out = apply_dale(net, ConversionConfig(dale="relay"))
    extra = out.metadata["dale"]["extra_latency_steps"]
    T = 300
    plain = simulate_dt(net, T)
    relay = simulate_dt(out, T + extra)
    assert plain["l3"][-1].sum() > 50
    # without biases in the relayed layers the relay network is the plain one shifted by `extra` steps
    np.testing.assert_array_equal(relay["l3"][extra:], plain["l3"])


def test_relay_rates_match_plain_with_biases(rng):
    net = chain(rng, hidden_bias=True)
    out = apply_dale(net, ConversionConfig(dale="relay"))
    extra = out.metadata["dale"]["extra_latency_steps"]
    T = 400
    plain = simulate_dt(net, T)["l3"][-1]
    relay = simulate_dt(out, T + extra)["l3"][-1]
    assert plain.sum() > 50
    assert np.max(np.abs(relay - plain)) <= 2


def test_pooled_low_rank_negative_part_is_accurate(rng):
    # pre neurons 0-3 only inhibit, with a rank-one pattern; 4-7 only excite
    n_pre, n_post = 8, 6
    w = np.zeros((n_post, n_pre))
    w[:, :4] = -np.outer(rng.uniform(0.2, 1.0, n_post), rng.uniform(0.2, 1.0, 4))
    w[:, 4:] = rng.uniform(0.0, 1.0, (n_post, 4))
    pops = [
        Population(name="a", n=n_pre, model="if", bias=rng.uniform(100, 500, n_pre)),
        Population(name="b", n=n_post, model="if", bias=50.0, role="output"),
    ]
    net = SpikingNetwork(pops, [Projection.from_dense(w, name="ab", pre="a", post="b", delay=DT)], output="b", dt=DT)
    out = apply_dale(net, ConversionConfig(dale="pooled", dale_ratio=4.0))
    assert out.populations["a_inh"].n == 2  # ceil(8 / 4)
    assert out.populations["a_inh"].reset == "subtract"
    err = out.metadata["dale"]["projections"]["ab"]["rel_error"]
    assert 0.0 <= err < 0.02
    assert is_dale(out)
    T = 1000
    plain = simulate_dt(net, T)["b"][-1]
    pooled = simulate_dt(out, T + 1)["b"][-1]
    assert plain.sum() > 100
    np.testing.assert_allclose(pooled, plain, atol=0.03 * T)


def test_pooled_reports_error_and_warns(rng):
    net = chain(rng, sizes=(40, 30, 4))
    with pytest.warns(ConversionWarning, match=r"pooled Dale split .*'p0'.*dale='relay'"):
        out = apply_dale(net, ConversionConfig(dale="pooled", dale_ratio=4.0, seed=3))
    info = out.metadata["dale"]
    assert out.populations["l0_inh"].n == 10 and out.populations["l1_inh"].n == 8
    for name in ("p0", "p1"):
        e = info["projections"][name]["rel_error"]
        assert math.isfinite(e) and 0.0 < e < 1.0
    # same seed, same factorisation
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConversionWarning)
        again = apply_dale(net, ConversionConfig(dale="pooled", dale_ratio=4.0, seed=3))
        more = apply_dale(net, ConversionConfig(dale="pooled", dale_ratio=1.5, seed=3))
    assert again.metadata["dale"]["projections"]["p0"]["rel_error"] == info["projections"]["p0"]["rel_error"]
    # more inhibitory neurons approximate better
    assert more.metadata["dale"]["projections"]["p0"]["rel_error"] < info["projections"]["p0"]["rel_error"]


def test_pooled_with_enough_interneurons_is_exact(rng):
    net = chain(rng, sizes=(4, 3))
    out = apply_dale(net, ConversionConfig(dale="pooled", dale_ratio=0.5))
    assert out.metadata["dale"]["populations"]["l0"]["method"].startswith("exact")
    assert out.metadata["dale"]["projections"]["p0"]["rel_error"] == 0.0


def test_spike_encoded_input_is_relayed_current_input_is_not(rng):
    inp = Population(name="input", n=5, model="input", role="input")
    hid = Population(name="h", n=3, model="if", role="output")
    w = rng.normal(0, 1, (3, 5))
    proj = Projection.from_dense(w, name="fc1", pre="input", post="h", delay=DT)
    cur = SpikingNetwork([inp, hid], [proj], input="input", output="h", encoding={"kind": "current"},
                         readout={"latency_steps": 0})
    out = apply_dale(cur, ConversionConfig(dale="relay"))
    assert "input_inh" not in out.populations and out.projections["fc1"].sign == "mixed"
    assert is_dale(out) and out.readout["latency_steps"] == 0
    spk = cur.copy_with(encoding={"kind": "regular"}, readout={"latency_steps": 1})
    assert not is_dale(spk)
    out = apply_dale(spk, ConversionConfig(dale="relay"))
    assert "input_inh" in out.populations and is_dale(out)
    assert out.readout["latency_steps"] == 2
    x = (rng.random((121, 5)) < 0.3).astype(int)
    x[120] = 0
    plain = simulate_dt(spk, 120, x)["h"][-1]
    relay = simulate_dt(out, 121, x)["h"][-1]
    assert plain.sum() > 20
    np.testing.assert_array_equal(relay, plain)


def test_dale_network_round_trips_through_hdf5(rng, tmp_h5):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConversionWarning)
        out = apply_dale(chain(rng, lateral=0.3), ConversionConfig(dale="pooled"))
    out.save(tmp_h5)
    back = load_network(tmp_h5)
    assert is_dale(back)
    assert back.metadata["dale"]["projections"]["p0"]["rel_error"] == out.metadata["dale"]["projections"]["p0"]["rel_error"]
    assert {n: p.sign for n, p in back.populations.items()} == {n: p.sign for n, p in out.populations.items()}


def test_none_is_identity_and_nmf_checks(rng):
    net = chain(rng)
    assert apply_dale(net, ConversionConfig()) is net
    with pytest.raises(ValidationError, match="negative entries"):
        nmf(-np.ones((2, 2)), 1)
    with pytest.raises(ValidationError, match="k must be"):
        nmf(np.ones((2, 2)), 0)
    a, b, err = nmf(np.zeros((3, 2)), 2)
    assert err == 0.0 and a.shape == (3, 2) and b.shape == (2, 2)


def _converted(tiny, mode, **kw):
    from spikebridge.conversion.convert import convert

    g = tiny(seed=1)
    x = np.random.default_rng(0).uniform(0, 1, (40, *g.input_shape))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConversionWarning)
        return convert(g, ConversionConfig(dale=mode, **kw), calibration=x), x


@pytest.mark.parametrize("factory", ["tiny_mlp", "tiny_cnn"])
def test_converted_relay_matches_plain(request, factory):
    from spikebridge.engines.reference import simulate_reference

    tiny = request.getfixturevalue(factory)
    plain, x = _converted(tiny, "none", delay=None)  # one step per projection: the relay hop costs a step
    relay, _ = _converted(tiny, "relay", delay=None)
    assert not is_dale(plain) and is_dale(relay)
    extra = relay.metadata["dale"]["extra_latency_steps"]
    assert extra >= 1 and relay.readout["latency_steps"] == plain.readout["latency_steps"] + extra
    same, _ = _converted(tiny, "relay")  # same-step delivery (the default): the hop takes no step
    assert same.metadata["dale"]["extra_latency_steps"] == same.readout["latency_steps"] == 0
    T = 200
    a = simulate_reference(plain, x, T).output_counts
    b = simulate_reference(relay, x, T + extra).output_counts
    assert a.sum() > 100
    # biases are not delayed with the spikes, so a count may move by a spike or two
    assert np.max(np.abs(a - b)) <= 2
    assert np.mean(np.argmax(a, 1) == np.argmax(b, 1)) >= 0.9


def test_converted_pooled_and_lateral(tiny_mlp):
    from spikebridge.engines.reference import simulate_reference

    pooled, x = _converted(tiny_mlp, "pooled", lateral_inhibition=0.5)
    assert is_dale(pooled)
    lat = pooled.projections["fc2_lateral_inh"]
    assert (lat.pre, lat.post, lat.kind, lat.sign) == ("fc2_inh", "fc2", "lateral", "inhibitory")
    # one pooled interneuron for 4 outputs: the off-diagonal WTA matrix becomes rank one (global inhibition)
    assert pooled.populations["fc2_inh"].n == 1
    assert pooled.metadata["dale"]["projections"]["fc2_lateral"]["rel_error"] == pytest.approx(0.5, abs=0.01)
    errs = [v["rel_error"] for v in pooled.metadata["dale"]["projections"].values()]
    assert errs and all(math.isfinite(e) and 0.0 <= e < 1.0 for e in errs)
    rec = simulate_reference(pooled, x, 100)
    assert rec.output_counts.sum() > 0


def test_relay_in_brian2_matches_reference(tiny_mlp):
    from spikebridge.engines.reference import simulate_reference
    from spikebridge.run.simulate import simulate
    from spikebridge.config import SimulationConfig

    relay, x = _converted(tiny_mlp, "relay")
    ref = simulate_reference(relay, x[:8], 60)
    b2 = simulate(relay, x[:8], SimulationConfig(n_steps=60, target="numpy"))
    assert ref.output_counts.sum() > 20
    np.testing.assert_array_equal(b2.output_counts, ref.output_counts)
