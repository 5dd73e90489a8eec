"""Signed neurons with memory (Wang et al. 2022; ``params["signed"]``, ``ConversionConfig(signed=True)``)
and the unrounded offset calibration (``calibrate="offset_mean"``).

A signed neuron that has emitted more positive than negative spikes emits a negative spike
(``n = -1``, ``v += θ``, each synapse delivers ``-w``) in a step where its potential is below 0
after the threshold test.  Every engine (reference, tensor on every device, Brian2, ``to_brian2``,
the exported script) must give the same counts (net) and the same trains (positive spikes).
"""

from __future__ import annotations

import numpy as np
import pytest

from spikebridge.config import ConversionConfig, SimulationConfig
from spikebridge.engines.reference import simulate_reference
from spikebridge.errors import ValidationError
from spikebridge.models import model_path
from spikebridge.run.simulate import simulate
from spikebridge.snn.network import Population, Projection, SpikingNetwork, load_network, save_network

from ..engines.test_tensor import DEVICES, assert_same_spikes
from ..engines._nets import graded_net, run_engine as _run


def _trio(signed: bool = True) -> SpikingNetwork:
    """e fires every step, i every 4th step (steps 3, 7); a (signed) gets +0.5 from e and -1.5 from i;
    an integrator read-out sums a's spikes with weight 1 (same-step delivery)."""
    params = {"signed": True} if signed else {}
    pops = [
        Population(name="input", n=2, model="input", role="input"),
        Population(name="e", n=1, model="if", v_init=0.5),
        Population(name="i", n=1, model="if", v_init=0.0),
        Population(name="a", n=1, model="if", v_init=0.5, params=params),
        Population(name="c", n=1, model="if", v_init=0.5, params={"burst": 4, "rate_cap": True, **params}),
        Population(name="out", n=1, model="integrator", role="output"),
    ]
    projs = [
        Projection(name="in_e", pre="input", post="e", pre_index=[0], post_index=[0], weight=[1.0], delay=0.0),
        Projection(name="in_i", pre="input", post="i", pre_index=[1], post_index=[0], weight=[0.25], delay=0.0),
        Projection(name="e_a", pre="e", post="a", pre_index=[0], post_index=[0], weight=[0.5], delay=0.0),
        Projection(name="i_a", pre="i", post="a", pre_index=[0], post_index=[0], weight=[-1.5], delay=0.0),
        Projection(name="a_out", pre="a", post="out", pre_index=[0], post_index=[0], weight=[1.0], delay=0.0),
        Projection(name="i_c", pre="i", post="c", pre_index=[0], post_index=[0], weight=[4.5], delay=0.0),
    ]
    return SpikingNetwork(pops, projs, input="input", output="out", encoding={"kind": "current", "scale": 1.0},
                          min_delay_steps=0)


@pytest.mark.parametrize("engine", ["reference", "brian2"] + [f"tensor:{d}" for d in DEVICES])
def test_hand_computed_signed_spikes(engine):
    # a: v (after input, before its spike) 1.0 +, 0.5, 1.0 +, -1.0 -, 0.5, 1.0 +, 0.5, -0.5 -
    # -> positive spikes at steps 0, 2, 5, negative ones at 3 and 7: net 1 = floor(0.5 + 8·0.5 - 2·1.5),
    # the exact quantiser of its total input (a plain IF neuron fires at 0 and 2 only: 2)
    rec = _run(engine, _trio(), np.ones((1, 2)), 8)
    assert rec.counts["e"].tolist() == [[8]] and rec.counts["i"].tolist() == [[2]]
    assert rec.counts["a"].tolist() == [[1]]
    assert rec.spikes["a"].step.tolist() == [0, 2, 5]  # trains keep the positive spikes
    np.testing.assert_allclose(rec.output_potential_t[0, :, 0], [1, 1, 2, 1, 1, 2, 2, 1])
    # c (burst 4, rate cap): 4 spikes at step 3 (v = 5 -> 1; the cap 4 also binds), 1 at 4 (cap 5), none until
    # step 7: v = 4.5 -> min(4, 8 - 5) = 3 spikes: 8 = min(floor(0.5 + 2·4.5), 8), its clip at T = 8
    assert rec.counts["c"].tolist() == [[8]]
    assert rec.spikes["c"].step.tolist() == [3, 3, 3, 3, 4, 7, 7, 7]
    plain = _run(engine, _trio(signed=False), np.ones((1, 2)), 8)
    assert plain.counts["a"].tolist() == [[2]]
    np.testing.assert_allclose(plain.output_potential_t[0, -1, 0], 2.0)


def _random_signed_net(rng: np.random.Generator) -> SpikingNetwork:
    """A signed IF layer with biases, a signed LIF layer with capped bursts, a plain layer and an
    integrator read-out; mixed-sign weights so negative spikes happen."""
    return graded_net(rng, {"signed": True}, {"burst": 3, "signed": True, "rate_cap": True},
                      [(0.4, 1.0), (0.05, 0.5), (0.05, 0.4), (0.0, 0.3), (0.2, 0.5), (0.0, 0.5)],
                      {"kind": "current", "scale": 1.0})


def _negative_spikes(rec) -> int:
    """Positive spikes recorded minus net counts, over the signed populations: the number of negative spikes."""
    return sum(len(rec.spikes[n].step) - int(rec.counts[n].sum()) for n in ("a", "b"))


def test_random_signed_network_identical_in_every_engine(rng):
    snn = _random_signed_net(np.random.default_rng(5))
    x = rng.uniform(0, 1, size=(4, 6))
    ref = simulate_reference(snn, x, 50, record=("all",))
    assert _negative_spikes(ref) > 20  # negative spikes really happen
    for device in DEVICES:
        ten = simulate(snn, x, SimulationConfig(n_steps=50, engine="tensor", device=device, record=("all",)))
        assert_same_spikes(ten, ref, min_spikes=300)
    b2 = simulate(snn, x, SimulationConfig(n_steps=50, target="numpy", record=("all",)))
    assert_same_spikes(b2, ref, min_spikes=300)
    np.testing.assert_allclose(b2.output_potential_t, ref.output_potential_t, rtol=1e-6, atol=1e-9)


def test_to_brian2_and_exported_script_reproduce_signed_spikes(rng, tmp_path):
    from ..engines.test_export_script import check_to_brian2_and_script

    snn = _random_signed_net(np.random.default_rng(5))
    ref = check_to_brian2_and_script(snn, rng.uniform(0, 1, size=(3, 6)), tmp_path, 40, "n_emitted > 0.5", min_spikes=200)
    assert _negative_spikes(ref) > 10


def test_signed_network_file_round_trip_and_refusals(tmp_path):
    import h5py

    save_network(_trio(), tmp_path / "n.h5")
    with h5py.File(tmp_path / "n.h5", "r") as f:
        assert int(f.attrs["format_version"]) == 6  # older readers refuse it instead of dropping negative spikes
    back = load_network(tmp_path / "n.h5")
    assert back.populations["a"].signed and not back.populations["e"].signed
    assert simulate_reference(back, np.ones((1, 2)), 8).counts["a"].tolist() == [[1]]
    with pytest.raises(ValidationError, match="signed spikes need model 'if' or 'lif' with reset 'subtract'"):
        Population(name="g", n=2, model="if", reset="zero", params={"signed": True})
    with pytest.raises(ValidationError, match=r"params\['rate_cap'\] needs burst spikes"):
        Population(name="g", n=2, model="if", params={"rate_cap": True})
    with pytest.raises(ValidationError, match=r"params\['signed'\] must be a bool"):
        Population(name="g", n=2, model="if", params={"signed": 1})
    with pytest.raises(ValidationError, match="'a_out' leaves signed population 'a' with a delay"):
        _trio().copy_with(projections=[p.replace(delay=1e-3) if p.name == "a_out" else p for p in _trio().projections.values()])
    with pytest.raises(ValidationError, match="ConversionConfig.signed: signed neurons cannot be used with delay=None"):
        ConversionConfig(signed=True, delay=None)
    with pytest.raises(ValidationError, match="ConversionConfig.signed: must be a bool"):
        ConversionConfig(signed=1)  # type: ignore[arg-type]


def test_converted_cnn_signed_and_offset_mean(digits_train_test):
    from spikebridge.ir.serialize import load_graph
    from spikebridge.run.calibrate import convert

    (x_cal, _), (x, y) = digits_train_test
    g = load_graph(model_path("digits_cnn"))
    plain = convert(g, ConversionConfig(), calibration=x_cal[:300])
    signed = convert(g, ConversionConfig(signed=True), calibration=x_cal[:300])
    hidden = [p for p in signed.populations.values() if p.role == "hidden"]
    assert hidden and all(p.signed for p in hidden)
    assert not signed.populations[signed.output].signed  # the read-out counts single spikes
    xs = x[:3]
    ref = simulate_reference(signed, xs, 16, record=("all",))
    assert sum(len(ref.spikes[n].step) - int(ref.counts[n].sum()) for n in ref.counts if signed.populations[n].signed) > 0
    ten = simulate(signed, xs, SimulationConfig(n_steps=16, engine="tensor", device=DEVICES[-1], record=("all",)))
    assert_same_spikes(ten, ref, min_spikes=500)
    assert_same_spikes(simulate(signed, xs, SimulationConfig(n_steps=16, target="numpy", record=("all",))), ref, min_spikes=500)
    # fractional offsets: some start potential moves by a non-integer number of thresholds
    mean = convert(g, ConversionConfig(calibrate="offset_mean", calibrate_steps=4, calibrate_samples=64),
                   calibration=x_cal[:300])
    frac = []
    for name, pop in mean.populations.items():
        if name != mean.input:
            shift = (np.asarray(pop.v_init) - np.asarray(plain.populations[name].v_init)) / np.asarray(pop.threshold)
            frac.append(np.abs(shift - np.rint(shift)).max())
    assert max(frac) > 0.01
    acc = {k: float(np.mean(simulate_reference(n, x, 4).predictions() == y)) for k, n in (("plain", plain), ("mean", mean))}
    assert acc["mean"] >= acc["plain"] - 0.01, acc


def test_signed_capped_bursts_compute_the_quantised_qcfs_network_exactly_at_t_equal_l(rng):
    """At T = L every hidden count of the shipped QCFS LeNet (L = 8) is its quantised activation in levels."""
    from spikebridge.config import preset
    from spikebridge.conversion.calibrate import quantised_activations
    from spikebridge.conversion.convert import convert
    from spikebridge.ir.serialize import load_graph

    g = load_graph("models/mnist_lenet_qcfs.h5")
    levels = {str(k): int(v) for k, v in g.metadata["qcfs_levels"].items()}
    L = max(levels.values())
    x = rng.uniform(0, 1, size=(200, *g.input_shape))
    cfg = preset("low_latency_qcfs", calibrate="none")
    snn = convert(g, cfg, calibration=x)
    acts = quantised_activations(g, x)
    assert acts is not None
    rec = simulate_reference(snn, x[:6], L)
    checked = 0
    for name, pop in snn.populations.items():
        if pop.layer in levels:
            assert pop.signed and pop.burst == 4 and pop.rate_cap
            lam = float(snn.scales[pop.layer])
            want = np.rint(acts[pop.layer][:6].reshape(6, -1) * L / lam).astype(np.int64)
            np.testing.assert_array_equal(rec.counts[name], want, err_msg=name)
            checked += int(want.sum())
    assert checked > 500
    # the same spikes in the tensor engine and Brian2 (capped bursts read the step index there)
    rec2 = simulate_reference(snn, x[:2], L, record=("all",))
    ten = simulate(snn, x[:2], SimulationConfig(n_steps=L, engine="tensor", device=DEVICES[-1], record=("all",)))
    assert_same_spikes(ten, rec2, min_spikes=300)
    b2 = simulate(snn, x[:2], SimulationConfig(n_steps=L, target="numpy", record=("all",)))
    assert_same_spikes(b2, rec2, min_spikes=300)
    # without signed neurons the same network is off by whole spikes
    plain = convert(g, preset("low_latency_qcfs", calibrate="none", signed=False), calibration=x)
    off = sum(int(np.abs(simulate_reference(plain, x[:6], L).counts[n] - rec.counts[n]).sum())
              for n, p in snn.populations.items() if p.layer in levels)
    assert off > 0
