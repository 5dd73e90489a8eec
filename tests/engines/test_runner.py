"""Brian2 backend: hand-computed cases, equality with the reference simulator, batching, state."""

from __future__ import annotations

import math

import numpy as np
import pytest

from spikebridge.config import ConversionConfig, SimulationConfig
from spikebridge.conversion.convert import convert
from spikebridge.engines.brian2.builder import estimate_memory, max_batch_size
from spikebridge.engines.plan import compile
from spikebridge.engines.reference import simulate_reference
from spikebridge.errors import BuildError, ValidationError
from spikebridge.run.simulate import iter_simulate, simulate
from spikebridge.snn.network import load_network, save_network

from ._nets import chain, mixed, single_if


def _cfg(n_steps: int, **kw) -> SimulationConfig:
    return SimulationConfig(n_steps=n_steps, target="numpy", **kw)


def test_if_neuron_hand_count_in_brian2():
    rec = simulate(single_if(threshold=0.5), [[0.37], [0.11]], _cfg(64))
    assert rec.output_counts[:, 0].tolist() == [math.floor(64 * 0.37 / 0.5), math.floor(64 * 0.11 / 0.5)]
    assert rec.meta["target"] == "numpy"


@pytest.mark.parametrize("d", [1, 3])
def test_delay_shifts_first_spike_in_brian2(d):
    rec = simulate(chain(d), [[1.0]], _cfg(16, record=("a", "b")))
    assert int(rec.spikes["b"].step.min()) - int(rec.spikes["a"].step.min()) == d


def test_refractory_caps_rate_in_brian2():
    rec = simulate(single_if(refractory=3e-3), [[2.5]], _cfg(20))
    assert int(rec.output_counts[0, 0]) == math.ceil(20 / 3)


@pytest.mark.parametrize("kind", ["current", "regular"])
def test_brian2_matches_reference_on_mixed_network(rng, kind):
    net = mixed(rng, kind=kind)
    x = rng.uniform(0, 1, size=(3, 5))
    ref = simulate_reference(net, x, 120, record=("all",))
    b2 = simulate(net, x, _cfg(120, record=("all",)))
    assert set(b2.counts) == set(ref.counts)
    fired = 0
    for name in ref.counts:
        np.testing.assert_array_equal(b2.counts[name], ref.counts[name], err_msg=name)
        np.testing.assert_array_equal(b2.spikes[name].step, ref.spikes[name].step, err_msg=name)
        fired += int(ref.counts[name].sum())
    assert fired > 300  # not vacuous
    np.testing.assert_allclose(b2.output_potential_t, ref.output_potential_t, atol=1e-5)


def test_brian2_matches_reference_on_converted_cnn(tiny_cnn, rng):
    g = tiny_cnn()
    x = rng.uniform(0, 1, size=(40, 1, 6, 6))
    snn = convert(g, ConversionConfig(v_init=0.5, delay_jitter=2e-3), calibration=x)
    ref = simulate_reference(snn, x[:4], 50)
    b2 = simulate(snn, x[:4], _cfg(50))
    for name in ref.counts:
        np.testing.assert_array_equal(b2.counts[name], ref.counts[name], err_msg=name)
    np.testing.assert_array_equal(b2.output_counts_t, ref.output_counts_t)
    assert sum(int(c.sum()) for c in ref.counts.values()) > 200


def test_batched_equals_per_sample(tiny_mlp, rng):
    g = tiny_mlp()
    x = rng.uniform(0, 1, size=(30, 6))
    snn = convert(g, calibration=x)
    together = simulate(snn, x[:3], _cfg(60, record=("all",)))
    alone = simulate(snn, x[:3], _cfg(60, record=("all",), batch_size=1))
    assert alone.meta["n_batches"] == 3 and together.meta["n_batches"] == 1
    for name in together.spikes:
        for key in ("sample", "neuron", "step"):
            np.testing.assert_array_equal(getattr(together.spikes[name], key), getattr(alone.spikes[name], key))
    np.testing.assert_array_equal(together.output_counts_t, alone.output_counts_t)
    assert together.spikes["fc1"].n_spikes > 20


def test_iter_simulate_resumes_from_start(tiny_mlp, rng):
    g = tiny_mlp()
    x = rng.uniform(0, 1, size=(5, 6))
    snn = convert(g, calibration=x)
    batches = list(iter_simulate(snn, x, _cfg(30, batch_size=2), start=1))
    assert [k for k, _ in batches] == [1, 3]
    assert [r.n_samples for _, r in batches] == [2, 2]
    full = simulate_reference(snn, x, 30)
    np.testing.assert_array_equal(batches[1][1].output_counts_t, full.output_counts_t[3:5])


def test_save_load_round_trip_gives_identical_spikes(tiny_cnn, rng, tmp_h5):
    g = tiny_cnn()
    x = rng.uniform(0, 1, size=(20, 1, 6, 6))
    snn = convert(g, ConversionConfig(delay_jitter=1e-3), calibration=x)
    save_network(snn, tmp_h5)
    back = load_network(tmp_h5)
    a = simulate(snn, x[:2], _cfg(40, record=("all",)))
    b = simulate(back, x[:2], _cfg(40, record=("all",)))
    for name in a.spikes:
        np.testing.assert_array_equal(a.spikes[name].step, b.spikes[name].step)
        np.testing.assert_array_equal(a.spikes[name].neuron, b.spikes[name].neuron)
    assert back.readout == snn.readout and back.scales == snn.scales
    assert a.spikes["conv1"].n_spikes > 50


def test_poisson_runs_are_seeded(tiny_mlp, rng):
    g = tiny_mlp()
    x = rng.uniform(0, 1, size=(10, 6))
    snn = convert(g, ConversionConfig(input_encoding="poisson", max_rate=500.0), calibration=x)
    a = simulate(snn, x[:2], _cfg(50, seed=3, record=("input",)))
    b = simulate(snn, x[:2], _cfg(50, seed=3, record=("input",)))
    c = simulate(snn, x[:2], _cfg(50, seed=4, record=("input",)))
    np.testing.assert_array_equal(a.spikes["input"].step, b.spikes["input"].step)
    assert a.spikes["input"].n_spikes > 50
    assert not np.array_equal(a.counts["input"], c.counts["input"])
    # input rates follow x: 500 Hz * x / scale over 50 ms
    expected = np.clip(x[:2] / snn.encoding["scale"], 0, 1) * 500 * 0.05
    assert abs(a.counts["input"].sum() - expected.sum()) < 4 * np.sqrt(expected.sum())


def test_memory_estimate_and_build_error(tiny_mlp, rng):
    g = tiny_mlp()
    x = rng.uniform(0, 1, size=(10, 6))
    snn = convert(g, calibration=x)
    plan10 = compile(snn, n_steps=10)
    one, ten = estimate_memory(plan10, 1), estimate_memory(plan10, 10)
    assert ten > one > 0
    assert estimate_memory(compile(snn, n_steps=1000), 10) > ten  # the output potential is recorded every step
    with pytest.raises(BuildError, match=r"raise max_memory to at least"):
        simulate(snn, x, _cfg(10, max_memory=1000.0))
    fit = max_batch_size(plan10, one + 3 * (ten - one) / 9)
    assert fit == 4
    with pytest.raises(BuildError, match=r"batch_size <= 4 would fit"):
        simulate(snn, x, _cfg(10, max_memory=one + 3 * (ten - one) / 9, batch_size=8))
    rec = simulate(snn, x, _cfg(10, max_memory=one + 3 * (ten - one) / 9))
    assert rec.meta["batch_size"] == 4 and rec.meta["n_batches"] == 3 and rec.n_samples == 10


def test_global_brian2_state_is_restored(tiny_mlp, rng):
    import brian2

    g = tiny_mlp()
    x = rng.uniform(0, 1, size=(4, 6))
    snn = convert(g, calibration=x)
    brian2.prefs["codegen.target"] = "numpy"
    brian2.defaultclock.dt = 0.25 * brian2.ms
    np.random.seed(99)
    expected_draw = np.random.RandomState(99).random_sample()
    device = brian2.get_device()
    simulate(snn, x, SimulationConfig(n_steps=10, target="numpy", dt=5e-4, seed=7))
    assert brian2.prefs["codegen.target"] == "numpy"
    assert float(brian2.defaultclock.dt / brian2.ms) == pytest.approx(0.25)
    assert brian2.get_device() is device
    assert np.random.random_sample() == expected_draw


def test_inputs_are_checked(tiny_mlp, rng):
    snn = convert(tiny_mlp(), calibration=rng.uniform(0, 1, size=(4, 6)))
    with pytest.raises(ValidationError, match="do not match input population"):
        simulate(snn, np.zeros((2, 5)), _cfg(5))
    with pytest.raises(ValidationError, match="unknown population"):
        simulate(snn, np.zeros((2, 6)), _cfg(5, record=("nope",)))


@pytest.mark.slow
def test_cpp_standalone_reuses_binary_and_matches_reference(tiny_mlp, rng, tmp_path):
    g = tiny_mlp()
    x = rng.uniform(0, 1, size=(5, 6))
    snn = convert(g, ConversionConfig(delay_jitter=2e-3), calibration=x)
    cfg = SimulationConfig(n_steps=40, target="cpp_standalone", batch_size=2, build_dir=str(tmp_path / "sa"), record=("fc1",))
    rec = simulate(snn, x, cfg)
    ref = simulate_reference(snn, x, 40, record=("fc1",))
    assert rec.meta["n_batches"] == 3  # one compiled binary, run three times (last batch padded)
    for name in ref.counts:
        np.testing.assert_array_equal(rec.counts[name], ref.counts[name], err_msg=name)
    np.testing.assert_array_equal(rec.spikes["fc1"].step, ref.spikes["fc1"].step)
    import brian2

    assert type(brian2.get_device()).__name__ == "RuntimeDevice"
    # the build ran with one compiler per core (run.brian2_target) and left Brian2's own default behind
    assert brian2.prefs["devices.cpp_standalone.extra_make_args_unix"] == ["-j"]


def test_poisson_drive_and_non_spiking_models_in_brian2(rng):
    from spikebridge.snn.network import Population, Projection, SpikingNetwork

    drive = {"poisson_n": 20, "poisson_rate": 50.0, "poisson_weight": 0.1}
    pops = [
        Population(name="e", n=40, model="lif", tau_mem=0.02, params=drive, refractory=2e-3),
        Population(name="li", n=3, model="li", tau_mem=0.01),
        Population(name="cli", n=3, model="cuba_li", tau_mem=0.01, tau_syn=0.005, role="output"),
    ]
    projs = [
        Projection.from_dense(rng.uniform(0, 0.2, size=(3, 40)), name="e_li", pre="e", post="li"),
        Projection.from_dense(rng.uniform(0, 0.2, size=(3, 40)), name="e_cli", pre="e", post="cli", target="I", delay=2e-3),
    ]
    net = SpikingNetwork(pops, projs, output="cli")
    b2 = simulate(net, None, _cfg(200, seed=1))
    ref = simulate_reference(net, None, 200, seed=1)
    # 20 x 50 Hz x 0.1 = 2 threshold units per second against a leak of v/20 ms: mean-driven v ~ 0.04 -> fluctuation-driven firing
    r_b2, r_ref = b2.counts["e"].mean(), ref.counts["e"].mean()
    assert r_b2 > 0.5 and r_ref > 0.5
    assert abs(r_b2 - r_ref) < 0.35 * r_ref  # same statistics, different random streams
    assert set(b2.counts) == {"e"}  # li / cuba_li do not spike
    assert np.all(b2.output_counts_t == 0) and np.abs(b2.output_potential_t).max() > 0


def test_progress_bar_over_batches(tiny_mlp, rng, capsys):
    pytest.importorskip("tqdm")
    snn = convert(tiny_mlp(), calibration=rng.uniform(0, 1, size=(4, 6)))
    rec = simulate(snn, rng.uniform(0, 1, size=(4, 6)), _cfg(5, batch_size=2, progress=True))
    assert rec.n_samples == 4
    assert "4/4" in capsys.readouterr().err


def test_spike_raster_input_in_brian2_and_reference(rng):
    from spikebridge.snn.network import Population, Projection, SpikingNetwork

    pops = [Population(name="x", n=4, model="input", role="input"), Population(name="o", n=3, model="if", role="output")]
    proj = Projection.from_dense(rng.uniform(0.2, 0.6, size=(3, 4)), name="x_o", pre="x", post="o", delay=2e-3)
    net = SpikingNetwork(pops, [proj], input="x", output="o", encoding={"kind": "spikes"})
    raster = rng.random((3, 30, 4)) < 0.3
    rec = simulate(net, raster, _cfg(40, batch_size=2, record=("x", "o")))
    ref = simulate_reference(net, raster, 40, record=("x", "o"))
    # input spikes are exactly the raster (and none after it ends at step 30)
    s, k, i = np.nonzero(raster)
    order = np.lexsort((i, k, s))
    np.testing.assert_array_equal(rec.spikes["x"].step, k[order])
    np.testing.assert_array_equal(rec.spikes["x"].neuron, i[order])
    np.testing.assert_array_equal(rec.counts["o"], ref.counts["o"])
    assert rec.counts["o"].sum() > 10
    # not recorded, the raster input is counted by a reset of its own (no SpikeMonitor): the raster's sums
    counted = simulate(net, raster, _cfg(40, batch_size=2))
    np.testing.assert_array_equal(counted.counts["x"], raster.sum(axis=1))
    np.testing.assert_array_equal(counted.counts["o"], rec.counts["o"])


def test_standalone_tables_are_one_samples_csr():
    from spikebridge.engines.brian2.builder import _csr

    # synapses sorted by (pre, post), as the builder orders them; pre 1 has none
    pre, post = np.array([0, 0, 2, 2, 2]), np.array([1, 3, 0, 2, 3])
    rowptr, cols = _csr(pre, post, 3)
    assert rowptr.tolist() == [0, 2, 2, 5] and cols.tolist() == [1, 3, 0, 2, 3]
    # a repeated (pre, post) pair cannot be looked up by (pre, post): the caller falls back to arrays
    assert _csr(np.array([0, 0]), np.array([1, 1]), 1) is None


@pytest.mark.slow
def test_cpp_standalone_tables_match_reference_and_write_no_synapses(tiny_cnn, rng, tmp_path):
    """Synapses made inside the binary from one sample's tables: same spikes, no per-batch files left."""
    g = tiny_cnn()
    x = rng.uniform(0, 1, size=(5, *g.input_shape))
    snn = convert(g, ConversionConfig(), calibration=x)
    assert all(np.ndim(p.delay) == 0 or np.all(np.asarray(p.delay) == np.ravel(p.delay)[0]) for p in snn.projections.values())
    build = tmp_path / "sa"
    cfg = SimulationConfig(n_steps=30, target="cpp_standalone", batch_size=2, build_dir=str(build))
    rec = simulate(snn, x, cfg)
    ref = simulate_reference(snn, x, 30)
    assert rec.meta["n_batches"] == 3
    for name in ref.counts:
        np.testing.assert_array_equal(rec.counts[name], ref.counts[name], err_msg=name)
    np.testing.assert_array_equal(rec.output_counts_t, ref.output_counts_t)
    assert rec.meta["timings"]["network_run_s"] > 0
    # no replicated index arrays among the project's inputs, no input files of earlier batches left
    static = sorted(p.name for p in (build / "static_arrays").iterdir())
    assert not [n for n in static if n.endswith(("_sources", "_targets")) or n.startswith("init_")], static
    # the synapse arrays were emptied before the binary wrote its results
    synaptic = [p for p in (build / "results").iterdir() if "__synaptic_pre" in p.name]
    assert synaptic and all(p.stat().st_size == 0 for p in synaptic)


def _window_bytes(snn, per_win, dt):
    """WINDOW_SYNAPSE_BYTES that gives windows of ``per_win`` samples (16 bytes per simulated synapse)."""
    folded = compile(snn, n_steps=4).folded
    return per_win * 16 * sum(p.n_synapses for p in snn.projections.values() if p.name not in folded)


def test_windows_only_where_a_window_can_start_as_a_fresh_run(tiny_cnn, rng, monkeypatch):
    from spikebridge.engines.brian2 import run as b2run
    from spikebridge.engines.plan import prepare_inputs

    g = tiny_cnn()
    x = rng.uniform(0, 1, size=(4, *g.input_shape))
    snn = convert(g, ConversionConfig(), calibration=x)
    plan = prepare_inputs(snn, x, snn.dt)
    monkeypatch.setattr(b2run, "WINDOW_SYNAPSE_BYTES", _window_bytes(snn, 2, snn.dt))
    assert b2run.window_batch(compile(snn, n_steps=10), plan, 7) == 2  # 4 windows (the last one half empty)
    assert b2run.window_batch(compile(snn, n_steps=10), plan, 6) == 0  # 3 windows: not worth it (MIN_WINDOWS)
    # recorded spike trains run as one batch
    assert b2run.window_batch(compile(snn, n_steps=10, record=(snn.output,)), plan, 7) == 0
    # a 0/1 spike raster is windowed too; an analog one (pulse areas) and undrawn Poisson rates are not
    from spikebridge.snn.network import Population, Projection, SpikingNetwork

    pops = [Population(name="x", n=4, model="input", role="input"), Population(name="o", n=3, model="if", role="output")]
    proj = Projection.from_dense(rng.uniform(0.2, 0.6, size=(3, 4)), name="x_o", pre="x", post="o", delay=0.0)
    net = SpikingNetwork(pops, [proj], input="x", output="o", encoding={"kind": "spikes"}, min_delay_steps=0)
    spikes = rng.random((3, 10, 4)) < 0.3
    monkeypatch.setattr(b2run, "WINDOW_SYNAPSE_BYTES", 1.0)
    assert b2run.window_batch(compile(net, n_steps=10), prepare_inputs(net, spikes, net.dt), 8) == 1
    analog = prepare_inputs(net, spikes * 0.5, net.dt)
    assert analog.graded and b2run.window_batch(compile(net, n_steps=10), analog, 8) == 0
    poisson = convert(g, ConversionConfig(input_encoding="poisson"), calibration=x)
    rates = prepare_inputs(poisson, x, poisson.dt)
    assert rates.rates is not None and b2run.window_batch(compile(poisson, n_steps=10), rates, 8) == 0


@pytest.mark.slow
def test_cpp_standalone_windows_equal_the_reference(tiny_cnn, rng, tmp_path, monkeypatch):
    """A batch run as consecutive windows of 2 samples in one run of the binary: every window starts
    as a fresh run (v reset, counts per window), so spikes, counts over time and potentials are the reference's."""
    from spikebridge.engines.brian2 import run as b2run

    g = tiny_cnn()
    x = rng.uniform(0, 1, size=(9, *g.input_shape))
    snn = convert(g, ConversionConfig(), calibration=x)
    monkeypatch.setattr(b2run, "WINDOW_SYNAPSE_BYTES", _window_bytes(snn, 2, snn.dt))
    cfg = SimulationConfig(n_steps=30, target="cpp_standalone", batch_size=9, build_dir=str(tmp_path / "sa"))
    rec = simulate(snn, x, cfg)
    assert (rec.meta["window_batch"], rec.meta["windows"], rec.meta["n_batches"]) == (2, 5, 1)  # 10 slots, one empty
    ref = simulate_reference(snn, x, 30)
    tensor = simulate(snn, x, SimulationConfig(n_steps=30, engine="tensor"))
    assert set(rec.counts) == set(ref.counts)
    for name in ref.counts:
        np.testing.assert_array_equal(rec.counts[name], ref.counts[name], err_msg=name)
    np.testing.assert_array_equal(rec.output_counts_t, ref.output_counts_t)
    np.testing.assert_array_equal(rec.output_potential_t, tensor.output_potential_t)
    assert min(int(c.sum()) for c in ref.counts.values()) > 0 and rec.output_counts_t[:, -1].sum() > 10
    # two clocks (steps and windows) write main.cpp in the same order in every build: the binary is
    # reused by later runs, not recompiled (an identity-hashed clock set reorders it at random)
    binary = tmp_path / "sa" / "main"
    stamp = binary.stat().st_mtime_ns
    for _ in range(3):
        again = simulate(snn, x, cfg)
        np.testing.assert_array_equal(again.output_counts_t, rec.output_counts_t)
    assert binary.stat().st_mtime_ns == stamp


@pytest.mark.slow
def test_cpp_standalone_windows_of_poisson_inputs_equal_the_reference(tiny_cnn, rng, tmp_path, monkeypatch):
    """Poisson inputs, drawn per sample beforehand, enter the windows as one stacked raster; the input
    population is counted per window like the others."""
    from spikebridge.engines.brian2 import run as b2run

    g = tiny_cnn()
    x = rng.uniform(0, 1, size=(9, *g.input_shape))
    snn = convert(g, ConversionConfig(input_encoding="poisson"), calibration=x)
    monkeypatch.setattr(b2run, "WINDOW_SYNAPSE_BYTES", _window_bytes(snn, 2, snn.dt))
    cfg = SimulationConfig(n_steps=30, target="cpp_standalone", batch_size=9, build_dir=str(tmp_path / "sa"), seed=3)
    rec = simulate(snn, x, cfg)
    assert (rec.meta["window_batch"], rec.meta["windows"]) == (2, 5)
    ref = simulate_reference(snn, x, 30, seed=3)
    assert set(rec.counts) == set(ref.counts) and snn.input in rec.counts
    for name in ref.counts:
        np.testing.assert_array_equal(rec.counts[name], ref.counts[name], err_msg=name)
    np.testing.assert_array_equal(rec.output_counts_t, ref.output_counts_t)
    assert rec.counts[snn.input].sum() > 100 and rec.output_counts_t[:, -1].sum() > 10


def test_runtime_batches_count_spikes_in_resets_like_monitors(tiny_mlp, rng):
    """simulate's batches count in the resets (no SpikeMonitor per population, output count beside
    v); to_brian2 keeps one SpikeMonitor per population: both give the same counts over time."""
    import brian2 as b2

    from spikebridge.engines.brian2.api import to_brian2
    from spikebridge.engines.brian2.builder import build_network
    from spikebridge.engines.brian2.run import brian2_state
    from spikebridge.engines.plan import prepare_inputs

    g = tiny_mlp()
    x = rng.uniform(0, 1, size=(30, 6))
    snn = convert(g, calibration=x)
    cfg = _cfg(60, record=("fc1",))
    counted = simulate(snn, x[:4], cfg)
    net = to_brian2(snn, x[:4], config=cfg)
    with brian2_state("numpy", cfg.seed):
        net.run()
    monitored = net.spike_record()
    assert set(net.spike_monitors) == set(counted.counts)  # to_brian2: a monitor per spiking population
    for name in counted.counts:
        np.testing.assert_array_equal(counted.counts[name], monitored.counts[name])
    np.testing.assert_array_equal(counted.output_counts_t, monitored.output_counts_t)
    np.testing.assert_array_equal(counted.output_potential_t, monitored.output_potential_t)
    np.testing.assert_array_equal(counted.spikes["fc1"].step, monitored.spikes["fc1"].step)
    assert counted.output_counts_t[:, -1].sum() > 0 and counted.counts["fc1"].sum() > 20

    from spikebridge.engines.brian2.run import collect

    plan = compile(snn, cfg)
    inputs = prepare_inputs(snn, x[:2], plan.dt)
    with brian2_state("numpy", 0):
        built = build_network(plan, 2, inputs=inputs, counters=True)
        built.set_inputs(snn, inputs)
        built.network.run(cfg.n_steps * plan.dt * b2.second, namespace={})
        data = collect(built, snn, 2, cfg.n_steps, plan.dt)
    for name in counted.counts:
        np.testing.assert_array_equal(data["counts"][name], counted.counts[name][:2])
    np.testing.assert_array_equal(data["output_counts_t"], counted.output_counts_t[:2])
    # fc1 is recorded (spike times): it keeps its monitor; the others count in their resets
    assert "fc1" in built.spike_monitors and "fc1" not in built.spike_counters
    assert built.spike_counters == set(counted.counts) - {"fc1"} and built.output_counter
    assert not any(isinstance(o, b2.SpikeMonitor) and o.source.name in built.spike_counters for o in built.network.objects)


@pytest.mark.parametrize("threads", [1, 2])
def test_a_tensor_run_turns_numpys_hugepage_advice_off_and_restores_it(monkeypatch, tiny_cnn, rng, threads):
    # a fault of a madvised array may compact memory first (results.md §0.2o: LeNet 2.7 against 3.4 s)
    import spikebridge.run.batches as batches
    from spikebridge.engines.tensor.engine import TensorProgram

    seen = []
    real = TensorProgram.run

    def spy(self, *a, **k):
        state = batches._numpy_hugepages(False)  # reads the setting (and sets it back below)
        batches._numpy_hugepages(bool(state))
        seen.append(state)
        return real(self, *a, **k)

    monkeypatch.setattr(TensorProgram, "run", spy)
    graph = tiny_cnn()
    x = rng.random((6,) + tuple(graph.input_shape))
    snn = convert(graph, calibration=x)
    if batches._numpy_hugepages(True) is None:
        pytest.skip("this numpy has no hugepage switch")
    simulate(snn, x, SimulationConfig(n_steps=4, engine="tensor", device="cpu", threads=threads))
    assert seen and set(seen) == {False}
    assert batches._numpy_hugepages(True) is True  # restored after the run
