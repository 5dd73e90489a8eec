"""Same-step delivery (``min_delay_steps=0``, ``ConversionConfig(delay=0)``).

A zero-delay spike is integrated by its target within the step it was
emitted, populations thresholding in the network's update order.  Every engine
must give identical spikes (exact comparisons), and a converted network must
lose its pipeline latency.
"""

from __future__ import annotations

import numpy as np
import pytest

from spikebridge.engines.reference import simulate_reference
from spikebridge.run.simulate import simulate
from spikebridge.config import ConversionConfig, SimulationConfig
from spikebridge.conversion.convert import convert
from spikebridge.snn.network import Population, Projection, SpikingNetwork, load_network, save_network
from spikebridge.errors import ValidationError
from spikebridge.ir import evaluate
from spikebridge.ir.serialize import load_graph

from .test_tensor import DEVICES, assert_same_spikes
from tests.conftest import strip_checksums


def _chain(min_delay_steps: int) -> SpikingNetwork:
    """input current 0.25/step -> a -> b -> c, all zero delays (one step each without same-step delivery)."""
    pops = [
        Population(name="input", n=1, model="input", role="input"),
        Population(name="a", n=1, model="if"),
        Population(name="b", n=1, model="if"),
        Population(name="c", n=1, model="if", role="output"),
    ]
    projs = [
        Projection(name="in_a", pre="input", post="a", pre_index=[0], post_index=[0], weight=[0.25], delay=0.0),
        # listed out of order on purpose: the update order comes from the graph, not from this list
        Projection(name="b_c", pre="b", post="c", pre_index=[0], post_index=[0], weight=[1.0], delay=0.0),
        Projection(name="a_b", pre="a", post="b", pre_index=[0], post_index=[0], weight=[1.0], delay=0.0),
    ]
    return SpikingNetwork(pops[::-1], projs, input="input", output="c", encoding={"kind": "current", "scale": 1.0},
                          min_delay_steps=min_delay_steps)


def _steps_of(rec, name):
    return rec.spikes[name].step.tolist()


@pytest.mark.parametrize("engine", ["reference", "tensor", "brian2"])
def test_chain_hand_computed_spike_steps(engine):
    # a integrates 0.25 per step (exact in binary): v = (k + 1) / 4 - spikes, so it fires at
    # steps 3, 7, 11, 15, 19; b and c relay each spike within the same step (or one step later each)
    expected_a = [3, 7, 11, 15, 19]
    for min_steps, lag in ((0, 0), (1, 1)):
        snn = _chain(min_steps)
        assert snn.update_order() == (["input", "a", "b", "c"] if min_steps == 0 else ["c", "b", "a", "input"])
        x = np.ones((1, 1))
        if engine == "reference":
            rec = simulate_reference(snn, x, 20, record=("all",))
        else:
            kw = {"target": "numpy"} if engine == "brian2" else {}
            rec = simulate(snn, x, SimulationConfig(n_steps=20, engine=engine, record=("all",), **kw))
        assert _steps_of(rec, "a") == expected_a
        assert _steps_of(rec, "b") == [k + lag for k in expected_a if k + lag < 20]
        assert _steps_of(rec, "c") == [k + 2 * lag for k in expected_a if k + 2 * lag < 20]


def _mixed_same_step(rng: np.random.Generator, kind: str) -> SpikingNetwork:
    """LIF, cuba (target I), refractoriness, reset to zero/value, per-synapse delays mixing 0 and
    1-3 steps, self and feedback loops with delays, an integrator read-out, all with same-step delivery."""
    n_in, n_a, n_b, n_c, n_out = 5, 7, 6, 4, 3
    pops = [
        Population(name="out", n=n_out, model="integrator", role="output", bias=5.0),
        Population(name="input", n=n_in, model="input", role="input"),
        Population(name="c", n=n_c, model="cuba_lif", tau_mem=0.01, tau_syn=0.005, reset="value", v_reset=-0.1),
        Population(name="a", n=n_a, model="if", v_init=0.5, bias=rng.normal(0, 20, n_a), refractory=2e-3),
        Population(name="b", n=n_b, model="lif", tau_mem=0.02, reset="zero", threshold=0.8),
    ]

    def dense(name, pre, post, n_pre, n_post, scale, delay=0.0, target="v"):
        w = rng.normal(0.1, scale, size=(n_post, n_pre))
        return Projection.from_dense(w, name=name, pre=pre, post=post, delay=delay, target=target)

    projs = [
        dense("in_a", "input", "a", n_in, n_a, 0.6),
        dense("a_b", "a", "b", n_a, n_b, 0.5),
        dense("b_c", "b", "c", n_b, n_c, 1.0, target="I"),
        dense("c_out", "c", "out", n_c, n_out, 0.5),
        dense("a_out", "a", "out", n_a, n_out, 0.2),
        dense("a_a", "a", "a", n_a, n_a, 0.2, delay=2e-3),
        dense("b_a", "b", "a", n_b, n_a, 0.3, delay=1e-3),  # feedback onto an earlier population
    ]
    p = projs[1]
    projs[1] = p.replace(delay=rng.integers(0, 4, size=p.n_synapses) * 1e-3)  # zero and lagged synapses mixed
    return SpikingNetwork(pops, projs, input="input", output="out", min_delay_steps=0,
                          encoding={"kind": kind, "scale": 1.0, "max_rate": 500.0})


@pytest.mark.parametrize("kind", ["current", "poisson"])
def test_mixed_network_identical_in_every_engine(rng, kind):
    snn = _mixed_same_step(np.random.default_rng(3), kind)
    assert snn.update_order() == ["input", "a", "b", "c", "out"]
    x = rng.uniform(0, 1, size=(4, 5))
    ref = simulate_reference(snn, x, 60, seed=4, record=("all",))
    for device in DEVICES:
        assert_same_spikes(simulate(snn, x, SimulationConfig(n_steps=60, engine="tensor", device=device, seed=4, record=("all",))),
                           ref, min_spikes=200)
    b2 = simulate(snn, x, SimulationConfig(n_steps=60, target="numpy", seed=4, record=("all",)))
    assert_same_spikes(b2, ref, min_spikes=200)
    np.testing.assert_allclose(b2.output_potential_t, ref.output_potential_t, rtol=1e-5, atol=1e-6)


def test_zero_delay_cycle_is_refused_with_its_names():
    a = Population(name="a", n=2, model="if")
    b = Population(name="b", n=2, model="if")
    ab = Projection.from_dense(np.ones((2, 2)), name="ab", pre="a", post="b", delay=0.0)
    ba = Projection.from_dense(np.ones((2, 2)), name="ba", pre="b", post="a", delay=0.0)
    with pytest.raises(ValidationError, match=r"\['ab', 'ba'\].*cycle.*at least one time step"):
        SpikingNetwork([a, b], [ab, ba], min_delay_steps=0)
    # one step on the way back breaks the cycle; without same-step delivery every delay is >= 1 step anyway
    assert SpikingNetwork([a, b], [ab, ba.replace(delay=1e-3)], min_delay_steps=0).update_order() == ["a", "b"]
    assert SpikingNetwork([a, b], [ab, ba]).update_order() == ["a", "b"]
    with pytest.raises(ValidationError, match="min_delay_steps must be 0 or 1"):
        SpikingNetwork([a], min_delay_steps=2)


@pytest.fixture(scope="module")
def digits():
    from spikebridge.datasets import load_dataset

    return load_dataset("digits:test")


def test_converted_cnn_has_no_latency_and_is_identical_in_brian2(digits):
    x, y = digits
    g = load_graph("models/digits_cnn.h5")
    snn = convert(g, ConversionConfig(delay=0.0), calibration=x[:200])
    old = convert(g, ConversionConfig(delay=None), calibration=x[:200])
    assert snn.min_delay_steps == 0 and snn.readout["latency_steps"] == 0
    assert old.readout["latency_steps"] == 4  # 3 layers + 1 tree round at one step each
    assert all(int(np.max(snn.projection_steps(p))) == 0 for p in snn.projections.values())
    # first output spikes: same-step delivery answers in the first steps, the pipeline only after its latency
    first = simulate_reference(snn, x[:20], 8).output_counts_t[:, 3].sum()
    assert first > 0 and simulate_reference(old, x[:20], 8).output_counts_t[:, 3].sum() == 0
    # accuracy at T=8 on the 360 test digits (measured: 0.950 with delay=0, 0.903 with one step per layer)
    acc_new = float(np.mean(simulate_reference(snn, x, 8).predictions() == y))
    acc_old = float(np.mean(simulate_reference(old, x, 8).predictions() == y))
    assert acc_new >= 0.94 and acc_new > acc_old + 0.03
    xs = x[:3]
    ten = simulate(snn, xs, SimulationConfig(n_steps=32, engine="tensor", device=DEVICES[-1], record=("all",)))
    assert_same_spikes(ten, simulate(snn, xs, SimulationConfig(n_steps=32, target="numpy", record=("all",))), min_spikes=1000)


@pytest.mark.parametrize("dale", ["relay", "pooled"])
def test_dale_relay_takes_no_step_with_same_step_delivery(digits, dale):
    x, _ = digits
    snn = convert(load_graph("models/digits_mlp.h5"), ConversionConfig(delay=0.0, dale=dale), calibration=x[:200])
    assert snn.min_delay_steps == 0 and snn.readout["latency_steps"] == 0
    xs = x[:3]
    ref = simulate_reference(snn, xs, 40, record=("all",))
    assert_same_spikes(simulate(snn, xs, SimulationConfig(n_steps=40, target="numpy", record=("all",))), ref, min_spikes=500)


def test_file_round_trip_keeps_same_step_delivery(tmp_path):
    import h5py

    snn = _chain(0)
    save_network(snn, tmp_path / "n.h5")
    with h5py.File(tmp_path / "n.h5", "r") as f:
        assert int(f.attrs["format_version"]) == 4  # older readers refuse it instead of running it a step late
    back = load_network(tmp_path / "n.h5")
    assert back.min_delay_steps == 0
    x = np.ones((1, 1))
    assert_same_spikes(simulate_reference(back, x, 20, record=("all",)), simulate_reference(snn, x, 20, record=("all",)))
    save_network(_chain(1), tmp_path / "old.h5")
    with h5py.File(tmp_path / "old.h5", "r+") as f:
        assert int(f.attrs["format_version"]) == 3
        del f.attrs["min_delay_steps"]  # as written before same-step delivery existed
        strip_checksums(f)  # (and before checksums)
    assert load_network(tmp_path / "old.h5").min_delay_steps == 1


def test_exported_brian2_script_reproduces_same_step_counts(rng, tmp_path):
    from spikebridge.export.brian2_script import export_brian2_script

    from .test_export_script import _run

    snn = _mixed_same_step(np.random.default_rng(3), "poisson")
    x = rng.uniform(0, 1, size=(3, 5))
    script, _ = export_brian2_script(snn, tmp_path / "out", x, n_steps=60, seed=7)
    assert "a_b.pre.when = 'thresholds'" in script.read_text()
    res = _run(script)
    assert res.returncode == 0, res.stderr[-2000:]
    ref = simulate_reference(snn, x, 60, seed=7)
    with np.load(tmp_path / "out" / "snn_results.npz", allow_pickle=False) as got:
        for name, counts in ref.counts.items():
            np.testing.assert_array_equal(got[f"{name}__counts"], counts, err_msg=name)
    assert sum(int(c.sum()) for c in ref.counts.values()) > 200


def test_low_latency_preset_folds_average_pooling_and_wins_at_small_t(digits):
    from spikebridge.config import preset

    x, y = digits
    g = load_graph("models/digits_cnn.h5")
    low = convert(g, preset("low_latency"), calibration=x[:200])
    same = convert(g, ConversionConfig(delay=0.0), calibration=x[:200])
    # the pooling populations are gone: conv1 -> conv2 -> fc, each pooling folded into the next map
    assert [p for p in low.populations if low.populations[p].role != "input"] == ["conv1", "conv2", "fc"]
    assert {"pool1", "pool2"} <= set(same.populations)
    ann = np.argmax(evaluate(g, x), 1)
    # folding changes no ANN arithmetic: at large T both converge on the ANN's predictions
    agree = float(np.mean(simulate_reference(low, x[:120], 64).predictions() == ann[:120]))
    assert agree >= 0.99
    # one quantising layer fewer per pooling: better at T=4 (measured 0.958 vs 0.919 of the 360 digits)
    acc = {k: float(np.mean(simulate_reference(n, x, 4).predictions() == y)) for k, n in (("low", low), ("same", same))}
    assert acc["low"] >= 0.95 and acc["low"] > acc["same"] + 0.02
    xs = x[:3]
    assert_same_spikes(simulate(low, xs, SimulationConfig(n_steps=24, engine="tensor", record=("all",))),
                       simulate(low, xs, SimulationConfig(n_steps=24, target="numpy", record=("all",))), min_spikes=300)


def test_folded_pooling_in_a_branching_graph_reads_the_concat_directly():
    from tests._dag import make_tiny_resnet

    g = make_tiny_resnet()
    x = np.random.default_rng(1).normal(size=(200, 1, 6, 6))
    ann = np.argmax(evaluate(g, x), 1)
    base = dict(percentile=100.0, scales="layer")
    pop = convert(g, ConversionConfig(**base), calibration=x)
    fold = convert(g, ConversionConfig(**base, avgpool="fold"), calibration=x)
    # the global pooling of the concatenated branches becomes part of fc's synapses from each branch
    assert "gap" in pop.populations and "gap" not in fold.populations
    assert sorted(p.pre for p in fold.incoming("fc")) == ["a2", "side"]
    # measured: agreement with the ANN at T=4/8/64 is 0.98/0.995/1.0 folded, 0.97/1.0/1.0 with the population
    agree = [float(np.mean(simulate_reference(fold, x, T).predictions() == ann)) for T in (4, 64)]
    assert agree[0] >= 0.95 and agree[1] == 1.0
