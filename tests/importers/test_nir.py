"""NIR import and export: closed-form single neurons, composition of linear nodes, recurrence,
round trip, error texts, and a cross-check against snnTorch reading the same file.

The mapping is checked with ``simulate_ref`` below, a small numpy simulation of the
SpikingNetwork discrete-time contract (COMMON.md: state update, arrivals after the
projection delay, threshold ``v >= theta``, reset), with exact exponential integration of
the leaky models so that it agrees with NIR's continuous-time equations on the time grid.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

from tests._optional import requires_nir, requires_snntorch, requires_torch

pytestmark = requires_nir

DT = 1e-4


# -- reference simulation of a SpikingNetwork driven by a spike raster ---------------------------
def simulate_ref(snn, raster, n_steps=None):
    """Simulate one sample; ``raster`` (n_steps, n_input) of 0/1.

    Returns (spike steps per population: list of (step, neuron)), counts per population,
    membrane traces per population (n_steps, n) after each step.
    """
    raster = np.asarray(raster)
    n_steps = raster.shape[0] if n_steps is None else n_steps
    dt = snn.dt
    pops = snn.populations
    v = {k: np.broadcast_to(np.asarray(p.v_init, float), (p.n,)).copy() for k, p in pops.items()}
    cur = {k: np.zeros(p.n) for k, p in pops.items()}
    projs = []
    for p in snn.projections.values():
        steps = np.maximum(np.rint(np.broadcast_to(np.asarray(p.delay, float), p.weight.shape) / dt), 1).astype(int)
        projs.append((p, steps))
    maxd = max([int(s.max()) for _, s in projs if s.size] + [1])
    buf = {(k, t): np.zeros((maxd + 1, pops[k].n)) for k in pops for t in ("v", "I")}
    spikes = {k: [] for k in pops}
    trace = {k: np.zeros((n_steps, p.n)) for k, p in pops.items()}
    for step in range(n_steps):
        slot = step % (maxd + 1)
        fired = {}
        for k, p in pops.items():
            if p.model == "input":
                row = raster[step] if step < raster.shape[0] else np.zeros(p.n)
                fired[k] = np.nonzero(row)[0]
                continue
            b = np.broadcast_to(np.asarray(p.bias, float), (p.n,))
            if p.model in ("if", "integrator"):
                v[k] += dt * b
            elif p.model in ("lif", "li"):
                e = math.exp(-dt / p.tau_mem)
                vinf = p.v_rest + b * p.tau_mem
                v[k] = vinf + (v[k] - vinf) * e
            else:  # exact solution of the linear cuba system over one step
                tm, ts = p.tau_mem, p.tau_syn
                em, es = math.exp(-dt / tm), math.exp(-dt / ts)
                vinf = p.v_rest + b * tm
                v[k] = vinf + (v[k] - vinf) * em + p.r * cur[k] * ts / (ts - tm) * (es - em)
                cur[k] *= es
            v[k] += buf[(k, "v")][slot]
            cur[k] += buf[(k, "I")][slot]
            buf[(k, "v")][slot] = 0
            buf[(k, "I")][slot] = 0
            if p.is_spiking:
                thr = np.broadcast_to(np.asarray(p.threshold, float), (p.n,))
                f = v[k] >= thr
                if p.reset == "zero":
                    v[k][f] = 0.0
                elif p.reset == "value":
                    v[k][f] = p.v_reset
                elif p.reset == "subtract":
                    v[k][f] -= thr[f]
                fired[k] = np.nonzero(f)[0]
            trace[k][step] = v[k]
        for k, idx in fired.items():
            spikes[k].extend((step, int(i)) for i in idx)
        for p, steps in projs:
            idx = fired.get(p.pre)
            if idx is None or not len(idx):
                continue
            sel = np.isin(p.pre_index, idx)
            for s in np.unique(steps[sel]):
                m = sel & (steps == s)
                np.add.at(buf[(p.post, p.target)][(step + s) % (maxd + 1)], p.post_index[m], p.weight[m])
    counts = {k: np.bincount(np.array([i for _, i in spikes[k]], dtype=int), minlength=pops[k].n) for k in pops}
    return spikes, counts, trace


def first_step(spikes, pop, neuron=0):
    steps = [s for s, i in spikes[pop] if i == neuron]
    return steps[0] if steps else None


def one(x):
    return np.array([float(x)])


def graph(nodes, edges):
    import nir

    return nir.NIRGraph(nodes=nodes, edges=edges, type_check=False)


def single(neuron, *, weight=1.0, bias=None):
    """Input(1) -> Linear/Affine -> neuron -> Output."""
    import nir

    lin = nir.Affine(weight=np.array([[weight]]), bias=one(bias)) if bias is not None else nir.Linear(weight=np.array([[weight]]))
    return graph(
        {"input": nir.Input(np.array([1])), "fc": lin, "n": neuron, "output": nir.Output(np.array([1]))},
        [("input", "fc"), ("fc", "n"), ("n", "output")],
    )


# -- closed-form single neurons -------------------------------------------------------------------
def test_lif_constant_current_first_spike_matches_closed_form():
    import nir

    from spikebridge.importers.from_nir import load_nir

    tau, r, b, theta = 10e-3, 2.0, 0.8, 1.0  # v_inf = R b = 1.6 > theta
    lif = nir.LIF(tau=one(tau), r=one(r), v_leak=one(0), v_threshold=one(theta), v_reset=one(0))
    net = load_nir(single(lif, weight=0.0, bias=b), dt=DT)
    pop = net.populations["n"]
    assert pop.model == "lif" and pop.tau_mem == tau
    assert np.allclose(pop.bias, r * b / tau)  # R b / tau, membrane units per second
    spikes, counts, _ = simulate_ref(net, np.zeros((400, 1)))
    t_star = -tau * math.log(1 - theta / (r * b))  # 9.16 ms
    k = first_step(spikes, "n")
    # the state after step k is the membrane at (k + 1) dt; the first spike lies within one dt of t*
    assert k is not None and t_star <= (k + 1) * DT < t_star + DT
    # reset to v_reset = 0 restarts the same trajectory: regular firing with period ceil(t*/dt) steps
    period = math.ceil(t_star / DT)
    assert counts["n"][0] == 400 // period


@pytest.mark.parametrize("convention, area", [("step", DT), ("dirac", 1.0)])
def test_if_spike_driven_time_to_threshold(convention, area):
    import nir

    from spikebridge.importers.from_nir import load_nir

    r, w, theta = 3000.0, 0.7, 1.0  # R w dt = 0.21: five arrivals reach the threshold
    if_ = nir.IF(r=one(r), v_threshold=one(theta), v_reset=one(0))
    net = load_nir(single(if_, weight=w), dt=DT, convention=convention)
    proj = next(iter(net.projections.values()))
    assert np.allclose(proj.weight, r * w * area)  # jump R w A
    assert np.allclose(proj.delay, DT)  # one step per projection
    if convention == "step":
        # a spike every step is a constant current I = w: t* = theta / (R w)
        spikes, counts, _ = simulate_ref(net, np.ones((200, 1)))
        n_jumps = math.ceil(theta / (r * w * DT))
        assert first_step(spikes, "n") == n_jumps  # arrivals start at step 1 (one-step latency)
        assert abs(first_step(spikes, "n") * DT - (theta / (r * w) + DT)) <= DT
        assert counts["n"][0] == (200 - 1) // n_jumps
    else:
        # each delta moves v by R w = 2100 > theta: one output spike per input spike
        raster = np.zeros((50, 1))
        raster[[3, 10, 20]] = 1
        spikes, counts, _ = simulate_ref(net, raster)
        assert [s for s, _ in spikes["n"]] == [4, 11, 21]


def test_integrator_and_li_potentials_match_closed_form():
    import nir

    from spikebridge.importers.from_nir import load_nir

    raster = np.zeros((60, 1))
    raster[[0, 5]] = 1
    r, w = 2.0, 0.5
    net = load_nir(single(nir.I(r=one(r)), weight=w), dt=DT)
    assert net.populations["n"].model == "integrator" and net.readout["mode"] == "potential"
    _, _, trace = simulate_ref(net, raster)
    expect = np.zeros(60)
    expect[1:] += r * w * DT  # v jumps R w A per arriving spike
    expect[6:] += r * w * DT
    assert np.allclose(trace["n"][:, 0], expect)

    tau = 2e-3
    net = load_nir(single(nir.LI(tau=one(tau), r=one(r), v_leak=one(0.0)), weight=w), dt=DT)
    _, _, trace = simulate_ref(net, raster)
    t = np.arange(60) * DT
    jump = r * w * DT / tau
    expect = np.where(t >= DT, jump * np.exp(-(t - DT) / tau), 0) + np.where(t >= 6 * DT, jump * np.exp(-(t - 6 * DT) / tau), 0)
    assert np.allclose(trace["n"][:, 0], expect, rtol=1e-9, atol=1e-12)


def test_li_leak_potential_and_bias():
    import nir

    from spikebridge.importers.from_nir import load_nir

    tau, r, b = 5e-3, 1.5, 0.4
    net = load_nir(single(nir.LI(tau=one(tau), r=one(r), v_leak=one(0.3)), weight=0.0, bias=b), dt=DT)
    _, _, trace = simulate_ref(net, np.zeros((300, 1)))
    t = (np.arange(300) + 1) * DT
    v_inf = 0.3 + r * b  # tau dv/dt = v_leak - v + R b
    # started at v = 0, relaxes to v_inf with time constant tau
    assert np.allclose(trace["n"][:, 0], v_inf + (0 - v_inf) * np.exp(-t / tau), atol=1e-12)


def test_cuba_jump_response_and_peak_threshold():
    import nir

    from spikebridge.importers.from_nir import load_nir

    ts, tm, r, w_in, w = 2e-3, 5e-3, 4.0, 3.0, 0.9
    raster = np.zeros((200, 1))
    raster[0] = 1
    net = load_nir(single(nir.CubaLI(tau_syn=one(ts), tau_mem=one(tm), r=one(r), v_leak=one(0), w_in=one(w_in)), weight=w), dt=DT)
    proj = next(iter(net.projections.values()))
    assert proj.target == "I"
    i0 = r * w_in * w * DT / ts  # jump of I' = R I per spike
    assert np.allclose(proj.weight, i0)
    _, _, trace = simulate_ref(net, raster)
    t = (np.arange(200) - 1) * DT  # the spike arrives at step 1
    closed = np.where(t >= 0, i0 * ts / (ts - tm) * (np.exp(-t / ts) - np.exp(-np.maximum(t, 0) / tm)), 0.0)
    assert np.allclose(trace["n"][:, 0], closed, atol=1e-12)
    t_peak = math.log(ts / tm) * ts * tm / (ts - tm)
    v_peak = i0 * ts / (ts - tm) * (math.exp(-t_peak / ts) - math.exp(-t_peak / tm))
    assert abs(np.argmax(trace["n"][:, 0]) - 1 - t_peak / DT) <= 1

    # CubaLIF: one spike when the threshold is just below the peak, none just above
    for theta, n_spikes in ((0.98 * v_peak, 1), (1.02 * v_peak, 0)):
        cuba = nir.CubaLIF(tau_syn=one(ts), tau_mem=one(tm), r=one(r), v_leak=one(0), v_threshold=one(theta),
                           v_reset=one(0), w_in=one(w_in))
        _, counts, _ = simulate_ref(load_nir(single(cuba, weight=w), dt=DT), raster)
        assert counts["n"][0] == n_spikes


def test_reset_potential_and_leak_are_shifted():
    import nir

    from spikebridge.importers.from_nir import load_nir

    # a biophysical-looking LIF: v_leak = -65, v_reset = -70, threshold -50 (mV as plain numbers)
    lif = nir.LIF(tau=one(0.02), r=one(1.0), v_leak=one(-65.0), v_threshold=one(-50.0), v_reset=one(-70.0))
    pop = load_nir(single(lif), dt=DT).populations["n"]
    assert pop.reset == "zero" and pop.v_rest == pytest.approx(5.0) and pop.threshold == pytest.approx(20.0)
    assert pop.v_init == pytest.approx(70.0) and pop.params["v_offset"] == -70.0


def test_per_neuron_time_constants_split_a_hidden_node_into_groups():
    import nir

    from spikebridge.importers.from_nir import load_nir

    taus = np.array([10e-3, 20e-3, 10e-3])
    r, b, theta = 2.0, 0.8, 1.0
    hidden = nir.LIF(tau=taus, r=np.full(3, r), v_leak=np.zeros(3), v_threshold=np.full(3, theta), v_reset=np.zeros(3))
    out = nir.IF(r=np.ones(1), v_threshold=np.ones(1))
    g = graph(
        {"input": nir.Input(np.array([1])), "fc": nir.Affine(weight=np.zeros((3, 1)), bias=np.full(3, b)), "hid": hidden,
         "ro": nir.Linear(weight=np.array([[1.0, 2.0, 3.0]])), "out": out, "output": nir.Output(np.array([1]))},
        [("input", "fc"), ("fc", "hid"), ("hid", "ro"), ("ro", "out"), ("out", "output")],
    )
    net = load_nir(g, dt=DT)
    assert [(p.name, p.n, p.tau_mem) for p in net if p.model == "lif"] == [("hid_g0", 2, 0.01), ("hid_g1", 1, 0.02)]
    assert net.populations["hid_g0"].params["nir_indices"] == [0, 2]
    ro = {p.pre: p for p in net.projections.values() if p.post == "out"}
    # R w dt with R = 1 for the IF read-out; node neurons 0 and 2 are g0's 0 and 1
    assert np.allclose(ro["hid_g0"].to_dense(1, 2), [[1 * DT, 3 * DT]]) and np.allclose(ro["hid_g1"].to_dense(1, 1), [[2 * DT]])
    spikes, _, _ = simulate_ref(net, np.zeros((400, 1)))
    for pop, tau in (("hid_g0", 10e-3), ("hid_g1", 20e-3)):
        t_star = -tau * math.log(1 - theta / (r * b))
        assert t_star <= (first_step(spikes, pop) + 1) * DT < t_star + DT


# -- graphs -----------------------------------------------------------------------------------------
def test_recurrent_graph_self_excitation():
    import nir

    from spikebridge.importers.from_nir import load_nir

    tau = 10e-3
    lif = nir.LIF(tau=np.full(2, tau), r=np.full(2, tau / DT), v_leak=np.zeros(2), v_threshold=np.ones(2), v_reset=np.zeros(2))
    # neuron 0 excites itself above threshold, neuron 1 receives a sub-threshold self-loop
    rec = nir.Affine(weight=np.array([[1.5, 0.0], [0.0, 0.2]]), bias=np.zeros(2))
    g = graph(
        {"input": nir.Input(np.array([2])), "fc": nir.Linear(weight=np.eye(2) * 1.2), "lif": lif, "rec": rec,
         "output": nir.Output(np.array([2]))},
        [("input", "fc"), ("fc", "lif"), ("lif", "rec"), ("rec", "lif"), ("lif", "output")],
    )
    net = load_nir(g, dt=DT)
    assert set(net.projections) == {"fc", "rec"}
    rec_p = net.projections["rec"]
    assert rec_p.kind == "recurrent" and rec_p.pre == rec_p.post == "lif" and np.allclose(rec_p.delay, DT)
    assert np.allclose(rec_p.to_dense(2, 2), [[1.5, 0], [0, 0.2]])  # R w dt / tau = w with R = tau/dt
    raster = np.zeros((40, 2))
    raster[0] = 1
    spikes, counts, _ = simulate_ref(net, raster)
    # one input spike starts neuron 0 firing every step for ever; neuron 1 fires once
    assert counts["lif"].tolist() == [39, 1]


def test_nested_subgraph_is_inlined():
    """snnTorch writes recurrent layers as a nested NIRGraph (Input -> LIF <-> Linear -> Output)."""
    import nir

    from spikebridge.importers.from_nir import load_nir

    tau = 10e-3
    lif = nir.LIF(tau=np.full(2, tau), r=np.full(2, tau / DT), v_leak=np.zeros(2), v_threshold=np.ones(2), v_reset=np.zeros(2))
    sub = nir.NIRGraph(
        nodes={"input": nir.Input(np.array([2])), "lif": lif, "w_rec": nir.Linear(weight=np.array([[0, 1.1], [1.1, 0]])),
               "output": nir.Output(np.array([2]))},
        edges=[("input", "lif"), ("lif", "w_rec"), ("w_rec", "lif"), ("lif", "output")],
        type_check=False,
    )
    g = graph(
        {"input": nir.Input(np.array([1])), "fc": nir.Linear(weight=np.array([[1.2], [0.0]])), "rnn": sub,
         "output": nir.Output(np.array([2]))},
        [("input", "fc"), ("fc", "rnn"), ("rnn", "output")],
    )
    net = load_nir(g, dt=DT)
    assert [p.model for p in net] == ["input", "lif"] and net.output == "rnn_lif"
    raster = np.zeros((21, 1))
    raster[0] = 1
    spikes, counts, _ = simulate_ref(net, raster)
    # a ring of two: 0 fires at step 1, then 1 and 0 alternate, one spike per step in total
    assert [i for _, i in spikes["rnn_lif"]][:4] == [0, 1, 0, 1] and counts["rnn_lif"].sum() == 20


def test_delay_nodes_become_per_synapse_delays():
    import nir

    from spikebridge.importers.from_nir import load_nir

    if_ = nir.IF(r=np.full(2, 1 / DT), v_threshold=np.ones(2), v_reset=np.zeros(2))
    g = graph(
        {"input": nir.Input(np.array([2])), "fc": nir.Linear(weight=np.array([[1.0, 0.0], [1.0, 1.0]])),
         "delay": nir.Delay(delay=np.array([2 * DT, 5 * DT])), "n": if_, "output": nir.Output(np.array([2]))},
        [("input", "fc"), ("fc", "delay"), ("delay", "n"), ("n", "output")],
    )
    net = load_nir(g, dt=DT)
    proj = net.projections["fc"]
    by_post = {int(p): float(d) for p, d in zip(proj.post_index, proj.delay)}
    assert by_post == pytest.approx({0: 3 * DT, 1: 6 * DT})  # one step plus the NIR delay
    raster = np.zeros((10, 2))
    raster[0, 0] = 1
    spikes, _, _ = simulate_ref(net, raster)
    assert spikes["n"] == [(3, 0), (6, 1)]
    with pytest.warns(Warning, match="not multiples of dt"):
        load_nir(g, dt=3e-4)


@requires_torch
def test_conv_pool_flatten_affine_chain_composes_like_torch(rng):
    import nir
    import torch

    from spikebridge.importers.from_nir import load_nir

    w_conv = rng.normal(size=(3, 2, 3, 3))
    b_conv = rng.normal(size=3)
    w_fc = rng.normal(size=(4, 3 * 2 * 2))
    b_fc = rng.normal(size=4)
    lif = nir.LIF(tau=np.full(4, 0.01), r=np.full(4, 0.01 / DT), v_leak=np.zeros(4), v_threshold=np.ones(4), v_reset=np.zeros(4))
    g = graph(
        {
            "input": nir.Input(np.array([2, 5, 5])),
            "conv": nir.Conv2d(input_shape=(5, 5), weight=w_conv, stride=1, padding=1, dilation=1, groups=1, bias=b_conv),
            "pool": nir.SumPool2d(kernel_size=np.array([2, 2]), stride=np.array([2, 2]), padding=np.array([0, 0])),
            "flat": nir.Flatten(start_dim=0, end_dim=-1, input_type={"input": np.array([3, 2, 2])}),
            "fc": nir.Affine(weight=w_fc, bias=b_fc),
            "lif": lif,
            "output": nir.Output(np.array([4])),
        },
        [("input", "conv"), ("conv", "pool"), ("pool", "flat"), ("flat", "fc"), ("fc", "lif"), ("lif", "output")],
    )
    net = load_nir(g, dt=DT)
    assert list(net.projections) == ["conv"] and net.populations["input"].shape == (2, 5, 5)

    def forward(x, bias):
        y = torch.nn.functional.conv2d(x, torch.tensor(w_conv), torch.tensor(b_conv) if bias else None, padding=1)
        y = torch.nn.functional.avg_pool2d(y, 2) * 4
        return torch.nn.functional.linear(y.flatten(1), torch.tensor(w_fc), torch.tensor(b_fc) if bias else None)

    eye = torch.eye(50, dtype=torch.float64).reshape(50, 2, 5, 5)
    expect = forward(eye, False).numpy().T  # (4, 50): column j = response to input unit j
    got = net.projections["conv"].to_dense(4, 50)  # jump = R w dt / tau = w
    assert np.allclose(got, expect)
    bias_expect = forward(torch.zeros(1, 2, 5, 5, dtype=torch.float64), True).numpy()[0]
    assert np.allclose(net.populations["lif"].bias, bias_expect * (0.01 / DT) / 0.01)  # R b / tau


def test_conv1d_and_avgpool_with_groups_and_stride(rng):
    import nir

    from spikebridge.importers.from_nir import _conv_matrix

    w = rng.normal(size=(4, 1, 3))
    m, out_shape = _conv_matrix(w, (2, 7), 2, 0, 1, 2, "conv")
    assert out_shape == (4, 3)
    x = rng.normal(size=(2, 7))
    dense = m.toarray() @ x.ravel()
    expect = np.zeros((4, 3))
    for co in range(4):
        ci = co // 2
        for o in range(3):
            expect[co, o] = np.dot(w[co, 0], x[ci, 2 * o:2 * o + 3])
    assert np.allclose(dense, expect.ravel())
    m_same, shape_same = _conv_matrix(rng.normal(size=(1, 1, 3, 3)), (1, 4, 4), 1, "same", 1, 1, "conv")
    assert shape_same == (1, 4, 4) and m_same.shape == (16, 16)


def test_output_potential_readout_and_latency():
    import nir

    from spikebridge.importers.from_nir import load_nir

    tau = 0.01
    lif = nir.LIF(tau=np.full(3, tau), r=np.full(3, tau / DT), v_leak=np.zeros(3), v_threshold=np.ones(3), v_reset=np.zeros(3))
    g = nir.NIRGraph.from_list(nir.Linear(weight=np.ones((3, 2))), lif, nir.Linear(weight=np.ones((2, 3))),
                               nir.LI(tau=np.full(2, tau), r=np.full(2, 1.0), v_leak=np.zeros(2)))
    net = load_nir(g, dt=DT)
    assert net.readout["mode"] == "potential" and net.readout["latency_steps"] == 2 and net.encoding == {"kind": "spikes"}
    assert net.populations[net.output].role == "output" and net.populations[net.input].role == "input"


# -- errors -----------------------------------------------------------------------------------------
def test_threshold_node_is_refused_with_its_name():
    import nir

    from spikebridge.errors import UnsupportedLayerError
    from spikebridge.importers.from_nir import load_nir

    g = graph(
        {"input": nir.Input(np.array([2])), "fc": nir.Linear(weight=np.eye(2)), "thr": nir.Threshold(threshold=np.ones(2)),
         "output": nir.Output(np.array([2]))},
        [("input", "fc"), ("fc", "thr"), ("thr", "output")],
    )
    with pytest.raises(UnsupportedLayerError) as err:
        load_nir(g, dt=DT)
    msg = str(err.value)
    assert "unsupported NIR layer 'thr' of type Threshold" in msg and "supported: " in msg and "LIF" in msg
    assert err.value.layer == "thr" and isinstance(err.value, NotImplementedError)


def test_other_refusals_name_the_node():
    import nir

    from spikebridge.errors import ModelFormatError, UnsupportedLayerError, ValidationError
    from spikebridge.importers.from_nir import load_nir

    lif2 = nir.LIF(tau=np.array([0.01, 0.02]), r=np.ones(2), v_leak=np.zeros(2), v_threshold=np.ones(2))
    with pytest.raises(UnsupportedLayerError, match="'lif' of type LIF output with per-neuron time constants"):
        load_nir(nir.NIRGraph.from_list(nir.Linear(weight=np.eye(2)), lif2), dt=DT)
    li = nir.LI(tau=np.full(2, 0.01), r=np.ones(2), v_leak=np.zeros(2))
    if_ = nir.IF(r=np.ones(2), v_threshold=np.ones(2))
    with pytest.raises(UnsupportedLayerError, match="'li' of type LI feeding"):
        load_nir(nir.NIRGraph.from_list(nir.Linear(weight=np.eye(2)), li, nir.Linear(weight=np.eye(2)), if_), dt=DT)
    loop = graph(
        {"input": nir.Input(np.array([2])), "a": nir.Linear(weight=np.eye(2)), "b": nir.Scale(scale=np.ones(2)),
         "n": if_, "output": nir.Output(np.array([2]))},
        [("input", "a"), ("a", "b"), ("b", "a"), ("b", "n"), ("n", "output")],
    )
    with pytest.raises(ModelFormatError, match="loop through linear nodes only"):
        load_nir(loop, dt=DT)
    with pytest.raises(ModelFormatError, match=r"weight \(2, 3\) expects 3 inputs, got 2"):
        load_nir(graph({"input": nir.Input(np.array([2])), "fc": nir.Linear(weight=np.ones((2, 3))), "n": if_},
                       [("input", "fc"), ("fc", "n")]), dt=DT)
    with pytest.raises(ValidationError, match="dt must be a positive"):
        load_nir(nir.NIRGraph.from_list(nir.Linear(weight=np.eye(2)), if_), dt=0)
    with pytest.raises(ValidationError, match="convention"):
        load_nir(nir.NIRGraph.from_list(nir.Linear(weight=np.eye(2)), if_), dt=DT, convention="euler")


def test_file_errors_and_registry(tmp_path):
    import nir

    import spikebridge
    from spikebridge.errors import ModelFormatError, ValidationError
    from spikebridge.importers.from_nir import load_nir

    bad = tmp_path / "bad.nir"
    bad.write_bytes(b"not hdf5")
    with pytest.raises(ModelFormatError, match="not a readable NIR file"):
        load_nir(bad, dt=DT)
    with pytest.raises(FileNotFoundError):
        load_nir(tmp_path / "missing.nir", dt=DT)
    g = nir.NIRGraph.from_list(nir.Linear(weight=np.eye(2)), nir.IF(r=np.ones(2), v_threshold=np.ones(2)))
    path = tmp_path / "net.nir"
    nir.write(path, g)
    net = spikebridge.load_model(path, dt=DT)  # registered as the "nir" format, suffix .nir
    with pytest.raises(ValidationError, match="pass the simulation time step"):
        spikebridge.load_model(path)
    assert [p.model for p in net] == ["input", "if"] and net.dt == DT


# -- export -----------------------------------------------------------------------------------------
def _exportable_net():
    from spikebridge.snn.network import Population, Projection, SpikingNetwork

    r = np.random.default_rng(3)
    pops = [
        Population(name="x", n=3, model="input", role="input"),
        Population(name="h", n=4, model="if", reset="zero", threshold=np.array([1.0, 0.8, 1.2, 1.0]), bias=0.5),
        Population(name="o", n=2, model="lif", reset="zero", tau_mem=0.02, v_rest=0.0, role="output"),
    ]
    d = np.where(r.random(12) < 0.5, DT, 3 * DT)
    projs = [
        Projection.from_dense(r.uniform(0.2, 0.9, (4, 3)), name="fc1", pre="x", post="h", delay=d),
        Projection.from_dense(r.normal(0.2, 0.5, (2, 4)), name="fc2", pre="h", post="o", delay=2 * DT),
        Projection.from_dense(np.array([[0, -0.3], [-0.3, 0]]), name="lat", pre="o", post="o", delay=DT, kind="lateral"),
    ]
    return SpikingNetwork(pops, projs, input="x", output="o", dt=DT, name="demo")


def test_export_import_round_trip_same_network_and_spikes(tmp_path, rng):
    import nir

    from spikebridge.importers.from_nir import load_nir
    from spikebridge.export.nir import export_nir

    net = _exportable_net()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing here needs a warning
        export_nir(net, tmp_path / "net.nir")
    g = nir.read(tmp_path / "net.nir")
    kinds = sorted(type(n).__name__ for n in g.nodes.values())
    assert kinds.count("Delay") == 2 and "IF" in kinds and "LIF" in kinds and "Affine" in kinds
    back = load_nir(tmp_path / "net.nir", dt=DT)
    assert list(back.populations) == ["x", "h", "o"]
    for name, p in net.populations.items():
        q = back.populations[name]
        assert q.model == p.model and q.n == p.n and np.allclose(q.threshold, p.threshold) and np.allclose(q.bias, p.bias)
    for name, p in net.projections.items():
        q = [x for x in back.projections.values() if x.pre == p.pre and x.post == p.post]
        pre_n, post_n = net.populations[p.pre].n, net.populations[p.post].n
        for delay in np.unique(p.delay):
            sel_p = np.broadcast_to(p.delay, p.weight.shape) == delay
            dense_p = p.replace(pre_index=p.pre_index[sel_p], post_index=p.post_index[sel_p], weight=p.weight[sel_p], delay=delay)
            both = [x.replace(pre_index=x.pre_index[m], post_index=x.post_index[m], weight=x.weight[m], delay=delay)
                    for x in q for m in [np.isclose(np.broadcast_to(x.delay, x.weight.shape), delay)]]
            got = sum(b.to_dense(post_n, pre_n) for b in both)
            assert np.allclose(got, dense_p.to_dense(post_n, pre_n)), (name, delay)
    raster = (rng.random((300, 3)) < 0.2).astype(float)
    s1, c1, _ = simulate_ref(net, raster)
    s2, c2, _ = simulate_ref(back, raster)
    assert c1["o"].sum() > 5 and c1["h"].sum() > 20  # the comparison is not vacuous
    assert s1["h"] == s2["h"] and s1["o"] == s2["o"]


def test_export_warns_once_per_inexpressible_feature(tmp_path):
    import nir

    from spikebridge.snn.network import Population, Projection, SpikingNetwork
    from spikebridge.errors import ExportWarning
    from spikebridge.export.nir import export_nir

    pops = [
        Population(name="x", n=2, model="input", role="input"),
        Population(name="h", n=2, model="if", reset="subtract", refractory=2e-3, sign="excitatory"),
        Population(name="i", n=2, model="if", reset="subtract", sign="inhibitory"),
        Population(name="o", n=2, model="if", reset="zero", role="output"),
    ]
    projs = [Projection.from_dense(np.eye(2), name=f"p{k}", pre=a, post=b) for k, (a, b) in
             enumerate([("x", "h"), ("h", "i"), ("i", "o"), ("h", "o")])]
    net = SpikingNetwork(pops, projs, input="x", output="o", dt=DT)
    with pytest.warns(ExportWarning) as rec:
        export_nir(net, tmp_path / "n.nir")
    msgs = [str(w.message) for w in rec]
    assert len(msgs) == 3
    assert any("reset by subtraction (populations h, i)" in m for m in msgs)
    assert any("refractory period (populations h)" in m for m in msgs)
    assert any("excitatory/inhibitory tags (populations h, i)" in m for m in msgs)
    g = nir.read(tmp_path / "n.nir")
    meta = g.nodes["h"].metadata
    assert meta["spikebridge_reset"] == "subtract" and float(meta["spikebridge_refractory"]) == 2e-3
    assert meta["spikebridge_sign"] == "excitatory" and g.nodes["i"].metadata["spikebridge_sign"] == "inhibitory"
    assert float(g.nodes["h"].v_reset[0]) == 0.0  # exported as reset to zero


def test_export_refuses_v_projection_onto_cuba():
    from spikebridge.snn.network import Population, Projection, SpikingNetwork
    from spikebridge.errors import UnsupportedLayerError
    from spikebridge.export.nir import export_nir

    pops = [Population(name="x", n=1, model="input"),
            Population(name="c", n=1, model="cuba_lif", tau_mem=0.01, tau_syn=0.005, reset="zero")]
    net = SpikingNetwork(pops, [Projection.from_dense([[1.0]], name="p", pre="x", post="c", target="v")], input="x", dt=DT)
    with pytest.raises(UnsupportedLayerError, match="'p' of type projection onto v of cuba_lif population 'c'"):
        export_nir(net)


def test_cuba_round_trip(rng):
    from spikebridge.snn.network import Population, Projection, SpikingNetwork
    from spikebridge.importers.from_nir import load_nir
    from spikebridge.export.nir import export_nir

    pops = [Population(name="x", n=3, model="input", role="input"),
            Population(name="c", n=2, model="cuba_lif", tau_mem=0.01, tau_syn=0.004, r=2.0, reset="zero", role="output")]
    net = SpikingNetwork(pops, [Projection.from_dense(rng.uniform(0, 3, (2, 3)), name="p", pre="x", post="c", target="I")],
                         input="x", output="c", dt=DT)
    back = load_nir(export_nir(net), dt=DT)
    raster = (rng.random((400, 3)) < 0.1).astype(float)
    s1, c1, _ = simulate_ref(net, raster)
    s2, _, _ = simulate_ref(back, raster)
    assert c1["c"].sum() > 3 and s1["c"] == s2["c"]


# -- cross-check against snnTorch reading the same file -------------------------------------------------
def _snntorch_counts(path, raster):
    import nir
    import torch
    from snntorch.import_nir import import_from_nir

    net = import_from_nir(nir.read(path))
    counts = None
    with torch.no_grad():
        for row in raster:
            out = net(torch.tensor(row[None], dtype=torch.float32))[0].numpy()[0]
            counts = out if counts is None else counts + out
    return counts


@requires_snntorch
@requires_torch
@pytest.mark.parametrize("neuron", ["lif", "cuba_lif"])
def test_cross_check_with_snntorch(tmp_path, neuron, capsys):
    import nir

    from spikebridge.importers.from_nir import load_nir

    dt = 1e-4  # snnTorch's import_nir assumes this time step
    r = np.random.default_rng(7)
    n_in, n_hid, n_out, n_steps = 6, 8, 4, 600

    def layer(n):
        if neuron == "lif":
            tau = 5e-3  # snnTorch: beta = 1 - dt/tau (Euler); we: exp(-dt/tau)
            return nir.LIF(tau=np.full(n, tau), r=np.full(n, tau / dt), v_leak=np.zeros(n), v_threshold=np.ones(n),
                           v_reset=np.zeros(n))
        ts, tm = 2e-3, 5e-3
        return nir.CubaLIF(tau_syn=np.full(n, ts), tau_mem=np.full(n, tm), r=np.full(n, tm / dt), v_leak=np.zeros(n),
                           v_threshold=np.ones(n), v_reset=np.zeros(n), w_in=np.full(n, ts / dt))

    scale = 0.4 if neuron == "lif" else 0.02
    g = nir.NIRGraph(
        nodes={"input": nir.Input(np.array([n_in])),
               "fc1": nir.Affine(weight=r.normal(scale, scale, (n_hid, n_in)), bias=r.normal(0, scale / 20, n_hid) * (neuron == "lif")),
               "lif1": layer(n_hid), "fc2": nir.Linear(weight=r.normal(scale, scale, (n_out, n_hid))),
               "lif2": layer(n_out), "output": nir.Output(np.array([n_out]))},
        edges=[("input", "fc1"), ("fc1", "lif1"), ("lif1", "fc2"), ("fc2", "lif2"), ("lif2", "output")],
    )
    path = tmp_path / "ff.nir"
    nir.write(path, g)
    raster = (r.random((n_steps, n_in)) < 0.3).astype(np.float32)
    theirs = _snntorch_counts(path, raster)
    capsys.readouterr()  # snnTorch prints while importing
    net = load_nir(path, dt=dt)
    latency = net.readout["latency_steps"] + (2 if neuron == "cuba_lif" else 0)  # one more step per cuba layer
    _, counts, _ = simulate_ref(net, np.vstack([raster, np.zeros((latency, n_in))]))
    ours = counts[net.output]
    assert theirs.sum() > 50 and (theirs > 0).sum() >= n_out // 2  # enough spikes to compare
    if neuron == "lif":
        assert np.array_equal(ours, theirs.astype(int))
    else:  # exact exponential integration vs snnTorch's Euler: a few spikes apart
        assert np.all(np.abs(ours - theirs) <= 2 + 0.03 * theirs)


# -- Brian2 ---------------------------------------------------------------------------------------------
def _backend_takes_spike_rasters() -> bool:
    """True once the backend accepts ``encoding={"kind": "spikes"}`` (binary rasters per step)."""
    try:
        from spikebridge.engines.plan import prepare_inputs
        from spikebridge.snn.network import Population, SpikingNetwork

        net = SpikingNetwork([Population(name="x", n=1, model="input")], input="x", encoding={"kind": "spikes"}, dt=DT)
        prepare_inputs(net, np.zeros((1, 2, 1)), DT)
    except Exception:  # noqa: BLE001 - any refusal means "not yet"
        return False
    return True


def _brian2(net, inputs, n_steps, record=("all",)):
    from spikebridge.run.simulate import simulate
    from spikebridge.config import SimulationConfig

    return simulate(net, inputs, SimulationConfig(n_steps=n_steps, target="numpy", record=record))


def test_brian2_lif_first_spike_matches_closed_form():
    import nir

    from spikebridge.importers.from_nir import load_nir

    tau, r, b, theta = 10e-3, 2.0, 0.8, 1.0
    lif = nir.LIF(tau=one(tau), r=one(r), v_leak=one(0), v_threshold=one(theta), v_reset=one(0))
    net = load_nir(single(lif, weight=0.0, bias=b), dt=DT)
    # the input is silent (zero weights): a zero constant current is the same as an empty raster
    rec = _brian2(net.copy_with(encoding={"kind": "current"}), np.zeros((1, 1)), 400)
    steps = rec.spikes["n"].step
    t_star = -tau * math.log(1 - theta / (r * b))
    assert steps.size == 400 // math.ceil(t_star / DT)
    assert t_star <= (steps[0] + 1) * DT < t_star + DT


def test_brian2_round_trip_gives_the_same_spikes(tmp_path, rng):
    from spikebridge.importers.from_nir import load_nir
    from spikebridge.export.nir import export_nir

    net = _exportable_net()
    export_nir(net, tmp_path / "net.nir")
    back = load_nir(tmp_path / "net.nir", dt=DT)
    x = rng.uniform(0, 1, (3, 3)) * 2e-2  # a constant current through the (round-tripped) input weights
    a = _brian2(net.copy_with(encoding={"kind": "current"}), x, 300)
    b = _brian2(back.copy_with(encoding={"kind": "current"}), x, 300)
    assert a.counts["h"].sum() > 20 and a.counts["o"].sum() > 5
    for pop in ("h", "o"):
        sa, sb = a.spikes[pop], b.spikes[pop]
        assert np.array_equal(sa.sample, sb.sample) and np.array_equal(sa.neuron, sb.neuron) and np.array_equal(sa.step, sb.step)


@pytest.mark.skipif(not _backend_takes_spike_rasters(), reason="backend has no spike-raster input encoding yet")
def test_brian2_spike_raster_agrees_with_reference(rng):
    import nir

    from spikebridge.importers.from_nir import load_nir

    tau = 5e-3
    lif = nir.LIF(tau=np.full(3, tau), r=np.full(3, tau / DT), v_leak=np.zeros(3), v_threshold=np.ones(3), v_reset=np.zeros(3))
    g = nir.NIRGraph.from_list(nir.Linear(weight=rng.uniform(0.2, 0.6, (3, 4))), lif)
    net = load_nir(g, dt=DT)
    raster = (rng.random((2, 200, 4)) < 0.3).astype(float)
    rec = _brian2(net, raster, 200)
    for k in range(2):
        _, counts, _ = simulate_ref(net, raster[k])
        assert np.array_equal(rec.counts["lif"][k], counts["lif"])
    assert rec.counts["lif"].sum() > 20


def test_output_fed_by_linear_node_is_refused():
    import nir

    from spikebridge.errors import UnsupportedLayerError
    from spikebridge.importers.from_nir import load_nir

    if_ = nir.IF(r=np.ones(2), v_threshold=np.ones(2))
    g = graph(
        {"input": nir.Input(np.array([2])), "fc": nir.Linear(weight=np.eye(2)), "n": if_, "ro": nir.Linear(weight=np.eye(2)),
         "output": nir.Output(np.array([2]))},
        [("input", "fc"), ("fc", "n"), ("n", "ro"), ("ro", "output")],
    )
    with pytest.raises(UnsupportedLayerError, match="'output' of type Output fed by Linear 'ro'"):
        load_nir(g, dt=DT)


def test_export_of_a_converted_cnn_type_checks_and_reads_back(tmp_path, tiny_cnn, rng):
    import nir

    from spikebridge.conversion.convert import convert
    from spikebridge.errors import ExportWarning
    from spikebridge.importers.from_nir import load_nir
    from spikebridge.export.nir import export_nir

    snn = convert(tiny_cnn(), None, rng.uniform(0, 1, (20, 1, 6, 6)))
    with pytest.warns(ExportWarning, match="reset by subtraction"):
        export_nir(snn, tmp_path / "cnn.nir")
    g = nir.read(tmp_path / "cnn.nir")  # nir's own type check passes (Input (1, 6, 6) -> Flatten -> Linear ...)
    assert type(g.nodes["input_flatten"]).__name__ == "Flatten"
    back = load_nir(tmp_path / "cnn.nir", dt=snn.dt)
    assert [(p.name, p.model, p.shape) for p in back] == [(p.name, p.model, p.shape) for p in snn]
    assert list(back.projections) == list(snn.projections)
    for name, p in snn.projections.items():
        n_post, n_pre = snn.populations[p.post].n, snn.populations[p.pre].n
        assert np.allclose(back.projections[name].to_dense(n_post, n_pre), p.to_dense(n_post, n_pre))
    # reset by subtraction, v_init, same-step delivery and the read-out come back from the spikebridge_* metadata
    assert all(q.reset == snn.populations[q.name].reset == "subtract" for q in back if q.model == "if")
    assert back.min_delay_steps == snn.min_delay_steps == 0 and back.readout == snn.readout
    from spikebridge.engines.reference import simulate_reference

    x = rng.uniform(0, 1, (3, 1, 6, 6))
    a, b = simulate_reference(snn, x, 40), simulate_reference(back, x, 40)
    assert sum(int(c.sum()) for c in a.counts.values()) > 20
    for pop in a.counts:
        np.testing.assert_array_equal(a.counts[pop], b.counts[pop], err_msg=pop)


def test_network_without_input_round_trips_bias_and_warns_about_poisson_drive(tmp_path):
    from spikebridge.snn.network import Population, Projection, SpikingNetwork
    from spikebridge.errors import ExportWarning
    from spikebridge.importers.from_nir import load_nir
    from spikebridge.export.nir import export_nir

    pop = Population(name="e", n=4, model="lif", tau_mem=0.02, reset="zero", bias=100.0, role="output",
                     params={"poisson_n": 10, "poisson_rate": 5.0, "poisson_weight": 0.1})
    w = np.full((4, 4), 0.1) - 0.1 * np.eye(4)
    net = SpikingNetwork([pop], [Projection.from_dense(w, name="rec", pre="e", post="e", kind="recurrent")], output="e", dt=DT)
    with pytest.warns(ExportWarning, match=r"Poisson drive \(populations e\)"):
        export_nir(net, tmp_path / "b.nir")  # a graph without Input: nir's type inference refuses it, we do not
    back = load_nir(tmp_path / "b.nir", dt=DT)
    assert back.input is None and back.populations["e"].bias == pytest.approx(100.0)
    assert np.allclose(back.projections["rec"].to_dense(4, 4), w)
    _, c1, _ = simulate_ref(net.copy_with(populations=[pop.replace(params={})]), np.zeros((1000, 0)))
    _, c2, _ = simulate_ref(back, np.zeros((1000, 0)))
    assert c1["e"].sum() > 10 and np.array_equal(c1["e"], c2["e"])


def test_scale_and_direct_edges_and_multiple_paths_sum():
    import nir

    from spikebridge.importers.from_nir import load_nir

    r = np.array([1.0, 2.0])
    if_ = nir.IF(r=r / DT, v_threshold=np.ones(2), v_reset=np.zeros(2))
    g = graph(
        {"input": nir.Input(np.array([2])), "s": nir.Scale(scale=np.array([0.5, 3.0])), "n": if_,
         "output": nir.Output(np.array([2]))},
        # two paths from the input: through Scale and directly; NIR sums what arrives at a node
        [("input", "s"), ("s", "n"), ("input", "n"), ("n", "output")],
    )
    net = load_nir(g, dt=DT)
    (proj,) = net.projections.values()
    assert proj.name == "input_to_n"  # the paths go through different nodes: named after the ends
    assert np.allclose(proj.to_dense(2, 2), np.diag(r * (np.array([0.5, 3.0]) + 1.0)))  # R (s + 1) dt / dt


def test_brian2_cuba_potential_follows_the_mapping():
    import nir

    from spikebridge.importers.from_nir import load_nir

    # an IF driven by a bias fires every 10 steps and feeds a CubaLI read-out through its current
    if_ = nir.IF(r=one(1.0), v_threshold=one(1.0), v_reset=one(0.0))
    li = nir.CubaLI(tau_syn=one(2e-3), tau_mem=one(5e-3), r=one(4.0), v_leak=one(0.1), w_in=one(3.0))
    g = graph(
        {"input": nir.Input(np.array([1])), "drive": nir.Affine(weight=np.zeros((1, 1)), bias=one(1 / (9.5 * DT))),
         "src": if_, "fc": nir.Linear(weight=np.array([[0.9]])), "ro": li, "output": nir.Output(np.array([1]))},
        [("input", "drive"), ("drive", "src"), ("src", "fc"), ("fc", "ro"), ("ro", "output")],
    )
    net = load_nir(g, dt=DT)
    _, counts, trace = simulate_ref(net, np.zeros((300, 1)))
    rec = _brian2(net.copy_with(encoding={"kind": "current"}), np.zeros((1, 1)), 300)
    assert counts["src"][0] == 30 and rec.counts["src"][0, 0] == 30
    pot = rec.output_potential_t[0, :, 0].astype(float)
    assert np.abs(pot).max() > 0.1 and np.allclose(pot, trace["ro"][:, 0], rtol=1e-4, atol=1e-6)


def test_round_trip_of_a_converted_network_takes_the_original_inputs(tmp_path):
    # issue 23: a reimported network fed the original's input silently scored chance
    pytest.importorskip("nir")
    from spikebridge.config import ConversionConfig, SimulationConfig
    from spikebridge.conversion.convert import convert
    from spikebridge.datasets import load_dataset
    from spikebridge.errors import ValidationError
    from spikebridge.export.nir import export_nir
    from spikebridge.importers.from_nir import load_nir
    from spikebridge.importers.registry import load_model
    from spikebridge.models import model_path
    from spikebridge.run.simulate import simulate

    x, y = load_dataset("digits:test")
    x, y = x[:60], y[:60]
    snn = convert(load_model(model_path("digits_mlp")), ConversionConfig(reset="zero"), calibration=x)
    with pytest.warns(Warning):
        export_nir(snn, tmp_path / "mlp.nir")
    back = load_nir(tmp_path / "mlp.nir", dt=snn.dt)
    assert back.encoding == snn.encoding and back.encoding["kind"] == "current"  # restored: faithful by default
    cfg = SimulationConfig(n_steps=64, engine="tensor")
    a = simulate(snn, x, cfg).predictions()
    b = simulate(back, x.reshape(len(x), -1), cfg).predictions()
    assert np.mean(a == y) > 0.8
    assert np.mean(a == b) >= 0.95
    # NIR's own spike-raster input, fed data samples: one line naming the working recipe, never chance
    raster_net = back.copy_with(encoding={"kind": "spikes"})
    with pytest.raises(ValidationError, match=r"copy_with\(encoding=\{'kind': 'current'\}\)"):
        simulate(raster_net, x.reshape(len(x), -1), cfg)
