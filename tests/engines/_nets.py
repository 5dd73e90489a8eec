"""Small hand-built spiking networks shared by the backend tests."""

from __future__ import annotations

import numpy as np

from spikebridge.config import SimulationConfig
from spikebridge.engines.reference import simulate_reference
from spikebridge.run.simulate import simulate
from spikebridge.snn.network import Population, Projection, SpikingNetwork


def run_engine(engine: str, snn: SpikingNetwork, x: np.ndarray, n_steps: int, **kw):
    """Every population's spikes from ``engine``: "reference", "brian2" (numpy target) or "tensor:<device>"."""
    if engine == "reference":
        return simulate_reference(snn, x, n_steps, record=("all",), **kw)
    extra = {"target": "numpy"} if engine == "brian2" else {"device": engine.split(":", 1)[1]}
    return simulate(snn, x, SimulationConfig(n_steps=n_steps, engine=engine.split(":")[0], record=("all",), **extra, **kw))


def single_if(weight: float = 1.0, threshold: float = 1.0, refractory: float = 0.0, reset: str = "subtract") -> SpikingNetwork:
    """input (1 neuron, current-encoded) -> one IF output neuron."""
    pops = [
        Population(name="input", n=1, model="input", role="input"),
        Population(name="out", n=1, model="if", threshold=threshold, refractory=refractory, reset=reset, role="output"),
    ]
    proj = Projection(name="in_out", pre="input", post="out", pre_index=[0], post_index=[0], weight=[weight], delay=1e-3)
    return SpikingNetwork(pops, [proj], input="input", output="out", encoding={"kind": "current", "scale": 1.0})


def chain(delay_steps: int, dt: float = 1e-3) -> SpikingNetwork:
    """input -> a (fires every step) -> b with a delay of ``delay_steps`` steps."""
    pops = [
        Population(name="input", n=1, model="input", role="input"),
        Population(name="a", n=1, model="if"),
        Population(name="b", n=1, model="if", role="output"),
    ]
    projs = [
        Projection(name="in_a", pre="input", post="a", pre_index=[0], post_index=[0], weight=[1.0], delay=dt),
        Projection(name="a_b", pre="a", post="b", pre_index=[0], post_index=[0], weight=[1.0], delay=delay_steps * dt),
    ]
    return SpikingNetwork(pops, projs, input="input", output="b", dt=dt, encoding={"kind": "current", "scale": 1.0})


def mixed_populations(rng: np.random.Generator, n_in: int, n_a: int, n_b: int, n_c: int, n_out: int) -> list[Population]:
    """Input, IF with bias and refractoriness, LIF reset to zero, cuba LIF reset to a value, integrator output."""
    return [
        Population(name="input", n=n_in, model="input", role="input"),
        Population(name="a", n=n_a, model="if", v_init=0.5, bias=rng.normal(0, 20, n_a), refractory=2e-3),
        Population(name="b", n=n_b, model="lif", tau_mem=0.02, reset="zero", threshold=0.8),
        Population(name="c", n=n_c, model="cuba_lif", tau_mem=0.01, tau_syn=0.005, reset="value", v_reset=-0.1),
        Population(name="out", n=n_out, model="integrator", role="output", bias=5.0),
    ]


def mixed(rng: np.random.Generator, *, kind: str = "current") -> SpikingNetwork:
    """A little of everything: LIF, cuba LIF with target I, reset to zero, refractoriness,
    per-synapse delays, a recurrent projection, an integrator output."""
    n_in, n_a, n_b, n_c, n_out = 5, 7, 6, 4, 3
    pops = mixed_populations(rng, n_in, n_a, n_b, n_c, n_out)

    def dense(name, pre, post, n_pre, n_post, scale, delay=1e-3, target="v"):
        w = rng.normal(0.1, scale, size=(n_post, n_pre))
        return Projection.from_dense(w, name=name, pre=pre, post=post, delay=delay, target=target)

    jitter = None
    projs = [
        dense("in_a", "input", "a", n_in, n_a, 0.6),
        dense("a_b", "a", "b", n_a, n_b, 0.5),
        dense("b_c", "b", "c", n_b, n_c, 1.0, target="I"),
        dense("c_out", "c", "out", n_c, n_out, 0.5),
        dense("a_a", "a", "a", n_a, n_a, 0.2, delay=2e-3),
        dense("b_a", "b", "a", n_b, n_a, 0.3, delay=3e-3),  # feedback onto an earlier population
    ]
    p = projs[1]
    jitter = (1 + rng.integers(0, 4, size=p.n_synapses)) * 1e-3
    projs[1] = p.replace(delay=jitter)
    return SpikingNetwork(pops, projs, input="input", output="out", encoding={"kind": kind, "scale": 1.0, "max_rate": 500.0})


def graded_net(rng: np.random.Generator, a_params: dict, b_params: dict, weights: list[tuple[float, float]],
               encoding: dict) -> SpikingNetwork:
    """Two graded layers (a: IF with biases and per-neuron start potentials, b: LIF with per-neuron
    thresholds; their ``params`` give bursts or signed spikes), a single-spike IF layer c and an
    integrator read-out; ``weights`` = (mean, sd) of the projections in_a, a_b, b_c, a_c, c_out
    (delay 2 steps) and c_a (feedback, delay 1 step)."""
    n_in, n_a, n_b, n_c, n_out = 6, 9, 7, 5, 3
    pops = [
        Population(name="input", n=n_in, model="input", role="input"),
        Population(name="a", n=n_a, model="if", v_init=rng.uniform(0, 0.5, n_a), bias=rng.normal(0, 200, n_a), params=a_params),
        Population(name="b", n=n_b, model="lif", tau_mem=0.02, threshold=rng.uniform(0.3, 0.8, n_b), params=b_params),
        Population(name="c", n=n_c, model="if", v_init=0.5),
        Population(name="out", n=n_out, model="integrator", role="output"),
    ]
    links = [("in_a", "input", "a", n_in, n_a, 0.0), ("a_b", "a", "b", n_a, n_b, 0.0), ("b_c", "b", "c", n_b, n_c, 0.0),
             ("a_c", "a", "c", n_a, n_c, 0.0), ("c_out", "c", "out", n_c, n_out, 2e-3), ("c_a", "c", "a", n_c, n_a, 1e-3)]
    projs = [
        Projection.from_dense(rng.normal(mean, sd, size=(n_post, n_pre)), name=name, pre=pre, post=post, delay=delay)
        for (name, pre, post, n_pre, n_post, delay), (mean, sd) in zip(links, weights, strict=True)
    ]
    return SpikingNetwork(pops, projs, input="input", output="out", min_delay_steps=0, encoding=encoding)


def pool_cnn_graph(hw: int, *, conv2_stride: int = 1, conv2_padding: int = 1, seed: int = 2):
    """A 2-channel ``hw`` x ``hw`` CNN: conv 3x3 (padding 1) -> ReLU -> 2x2 max pool -> conv 3x3 -> ReLU -> dense (3)."""
    from spikebridge.ir import AnnGraph, Conv2d, Dense, Flatten, Input, MaxPool2d, ReLU

    r = np.random.default_rng(seed)
    pooled = hw // 2
    side = (pooled + 2 * conv2_padding - 3) // conv2_stride + 1
    return AnnGraph([
        Input(name="input", shape=(2, hw, hw)),
        Conv2d(name="conv1", weight=r.normal(0, 0.5, size=(4, 2, 3, 3)), bias=r.normal(0.05, 0.1, size=4), padding=1),
        ReLU(name="relu1"),
        MaxPool2d(name="pool1", kernel_size=2),
        Conv2d(name="conv2", weight=r.normal(0, 0.4, size=(5, 4, 3, 3)), bias=r.normal(0, 0.1, size=5),
               stride=conv2_stride, padding=conv2_padding),
        ReLU(name="relu2"),
        Flatten(name="flat"),
        Dense(name="fc", weight=r.normal(0, 0.3, size=(3, 5 * side * side)), bias=np.zeros(3)),
    ], name=f"pool_cnn_{hw}")
