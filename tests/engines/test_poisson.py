"""Poisson inputs are drawn per sample in numpy: identical across simulators, batch sizes and targets."""

from __future__ import annotations

import numpy as np

from spikebridge import ConversionConfig, SimulationConfig
from spikebridge.engines.reference import simulate_reference
from spikebridge.run.simulate import simulate
from spikebridge.conversion.convert import convert
from tests.conftest import make_tiny_mlp


def _poisson_net(rng):
    graph = make_tiny_mlp(seed=3)
    x = rng.uniform(0.0, 1.0, size=(6, 6))
    snn = convert(graph, ConversionConfig(input_encoding="poisson", max_rate=500.0), calibration=x)
    return snn, x


def test_brian2_poisson_equals_reference_spike_for_spike(rng):
    snn, x = _poisson_net(rng)
    cfg = SimulationConfig(n_steps=60, target="numpy", seed=7, record=("all",))
    b2 = simulate(snn, x, cfg)
    ref = simulate_reference(snn, x, 60, seed=7, record=("all",))
    assert b2.counts["input"].sum() > 100  # about rate * dt * steps * neurons spikes: not vacuous
    for name in b2.counts:
        np.testing.assert_array_equal(b2.counts[name], ref.counts[name])
    np.testing.assert_array_equal(b2.spikes["input"].step, ref.spikes["input"].step)


def test_poisson_spikes_do_not_depend_on_batch_size_or_start(rng):
    snn, x = _poisson_net(rng)
    whole = simulate(snn, x, SimulationConfig(n_steps=40, target="numpy", seed=3, record=("input",)))
    split = simulate(snn, x, SimulationConfig(n_steps=40, target="numpy", seed=3, batch_size=4, record=("input",)))
    np.testing.assert_array_equal(whole.counts["input"], split.counts["input"])
    other_seed = simulate(snn, x, SimulationConfig(n_steps=40, target="numpy", seed=4, record=("input",)))
    assert not np.array_equal(whole.counts["input"], other_seed.counts["input"])
    # input rates follow the encoding: rate = x * max_rate, so counts ~ x * 500 Hz * 40 ms
    expected = np.clip(x, 0, 1) * 500.0 * 40e-3
    assert abs(whole.counts["input"].sum() - expected.sum()) < 4 * np.sqrt(expected.sum())


def test_parallel_workers_give_identical_results_in_order(rng):
    from spikebridge.run.simulate import iter_simulate
    from spikebridge.run.batches import plan_batches

    snn, x = _poisson_net(rng)
    x = np.concatenate([x, x[::-1]])  # 12 samples
    serial = simulate(snn, x, SimulationConfig(n_steps=30, target="numpy", seed=5, record=("all",)))
    cfg = SimulationConfig(n_steps=30, target="numpy", seed=5, record=("all",), workers=2)
    assert plan_batches(snn, 12, cfg) == 6  # samples spread so both workers get a batch
    parallel = simulate(snn, x, cfg)
    for name in serial.counts:
        np.testing.assert_array_equal(serial.counts[name], parallel.counts[name])
    np.testing.assert_array_equal(serial.output_counts_t, parallel.output_counts_t)
    starts = [k0 for k0, _ in iter_simulate(snn, x, SimulationConfig(n_steps=30, target="numpy", batch_size=3, workers=2))]
    assert starts == [0, 3, 6, 9]
