"""The layer-major schedule of the tensor engine: the same spikes as the step-major one and the reference.

Acyclic networks run layer by layer on numpy (``Plan.layer_major``); these tests run each
network both ways (``engine.LAYER_MAJOR``), with blocks short enough that delays reach back
across block boundaries, and compare every spike, count and potential exactly.
"""

from __future__ import annotations

import numpy as np
import pytest

import spikebridge.engines.tensor.engine as tensor_engine
import spikebridge.engines.tensor.layered as layered
from spikebridge.config import SimulationConfig
from spikebridge.engines.plan import compile, layer_major_blocker
from spikebridge.engines.reference import simulate_reference
from spikebridge.run.simulate import simulate
from spikebridge.snn.network import Projection, SpikingNetwork

from ._nets import mixed, mixed_populations


def feed_forward(rng: np.random.Generator, *, kind: str, min_delay_steps: int = 1) -> SpikingNetwork:
    """LIF, cuba LIF onto I, resets to zero and to a value, refractoriness, per-synapse delays of
    0-4 steps, a skip projection joining a later layer, a sparse matrix, an integrator read-out."""
    n_in, n_a, n_b, n_c, n_out = 5, 40, 6, 4, 3
    pops = mixed_populations(rng, n_in, n_a, n_b, n_c, n_out)
    d0 = 1e-3 * min_delay_steps

    def dense(name, pre, post, n_pre, n_post, scale, delay=1e-3, target="v", keep=1.0):
        w = rng.normal(0.1, scale, size=(n_post, n_pre)) * (rng.random((n_post, n_pre)) < keep)
        return Projection.from_dense(w, name=name, pre=pre, post=post, delay=delay, target=target)

    projs = [
        dense("in_a", "input", "a", n_in, n_a, 0.6, delay=d0),
        dense("a_b", "a", "b", n_a, n_b, 0.5),
        dense("b_c", "b", "c", n_b, n_c, 1.0, target="I", delay=d0),
        dense("c_out", "c", "out", n_c, n_out, 0.5),
        dense("a_c", "a", "c", n_a, n_c, 0.4, delay=2e-3, keep=0.1),  # skip, sparse (fill < 0.2)
        dense("in_b", "input", "b", n_in, n_b, 0.3, delay=d0),
    ]
    p = projs[1]
    projs[1] = p.replace(delay=(min_delay_steps + rng.integers(0, 4, size=p.n_synapses)) * 1e-3)
    return SpikingNetwork(pops, projs, input="input", output="out", min_delay_steps=min_delay_steps,
                          encoding={"kind": kind, "scale": 1.0, "max_rate": 500.0})


def _both(snn, x, n_steps, monkeypatch, **kw):
    """Step-major and layer-major runs of the same inputs (the second checked to run layer by layer)."""
    cfg = SimulationConfig(n_steps=n_steps, engine="tensor", device="cpu", record=("all",), **kw)
    calls = []
    real = layered.LayerMajor.run

    def spy(self, *a, **k):
        calls.append(1)
        return real(self, *a, **k)

    monkeypatch.setattr(layered.LayerMajor, "run", spy)
    monkeypatch.setattr(tensor_engine, "LAYER_MAJOR", False)
    step = simulate(snn, x, cfg)
    assert not calls
    monkeypatch.setattr(tensor_engine, "LAYER_MAJOR", True)
    layer = simulate(snn, x, cfg)
    assert calls
    return step, layer


def _assert_identical(a, b, min_spikes):
    assert set(a.counts) == set(b.counts)
    for name in a.counts:
        np.testing.assert_array_equal(a.counts[name], b.counts[name], err_msg=name)
    np.testing.assert_array_equal(a.output_counts_t, b.output_counts_t)
    np.testing.assert_array_equal(a.output_potential_t, b.output_potential_t)
    assert set(a.spikes) == set(b.spikes)
    for name in a.spikes:
        for key in ("sample", "neuron", "step"):
            np.testing.assert_array_equal(getattr(a.spikes[name], key), getattr(b.spikes[name], key), err_msg=name)
    total = sum(int(c.sum()) for c in a.counts.values())
    assert total >= min_spikes, f"only {total} spikes: the comparison would be vacuous"


@pytest.mark.parametrize("block", [3, 32])
@pytest.mark.parametrize("kind", ["current", "regular", "poisson"])
@pytest.mark.parametrize("min_delay_steps", [0, 1])
def test_layer_major_equals_step_major_and_reference(rng, monkeypatch, kind, block, min_delay_steps):
    monkeypatch.setattr(layered, "BLOCK_STEPS", block)
    net = feed_forward(rng, kind=kind, min_delay_steps=min_delay_steps)
    assert compile(net, n_steps=50).layer_major
    x = rng.uniform(0, 1, size=(3, 5))
    step, layer = _both(net, x, 50, monkeypatch, seed=4)
    _assert_identical(step, layer, min_spikes=300)
    ref = simulate_reference(net, x, 50, seed=4, record=("all",))
    _assert_identical(ref, layer, min_spikes=300)


def test_digits_cnn_layer_major_equals_step_major(monkeypatch):
    from spikebridge.config import ConversionConfig
    from spikebridge.conversion.convert import convert
    from spikebridge.datasets import load_dataset
    from spikebridge.ir.serialize import load_graph

    monkeypatch.setattr(layered, "BLOCK_STEPS", 7)
    x, _ = load_dataset("digits:test")
    snn = convert(load_graph("models/digits_cnn.h5"), ConversionConfig(), calibration=x[:100])
    step, layer = _both(snn, x[:40], 40, monkeypatch, threads=2)
    _assert_identical(step, layer, min_spikes=5000)


def test_batch_parts_pack_into_one_raster_without_a_join_copy(monkeypatch):
    """Threads' batch parts write their recorded rasters into slices of one array: joining them
    copies no raster (0.5 GB per 1,000 LeNet images at T=128), and the spikes are a single part's."""
    import spikebridge.store.record as record_mod
    from spikebridge.config import ConversionConfig
    from spikebridge.conversion.convert import convert
    from spikebridge.datasets import load_dataset
    from spikebridge.ir.serialize import load_graph

    x, _ = load_dataset("digits:test")
    snn = convert(load_graph("models/digits_cnn.h5"), ConversionConfig(), calibration=x[:100])
    joined = []
    real = record_mod.concat_records

    def spy(records):
        joined.append(sorted(records[0].spikes))
        return real(records)

    monkeypatch.setattr(record_mod, "concat_records", spy)
    cfg = dict(n_steps=20, engine="tensor", device="cpu", record=("all",))
    two = simulate(snn, x[:9], SimulationConfig(threads=2, **cfg))
    assert joined and all(names == [] for names in joined)  # every recorded population already joined
    # counts stay in the engine's uint16 through the join: no int64 copy unless read (Counts)
    assert len(two.counts) > 3 and {two.counts.raw(name).dtype for name in two.counts} == {np.dtype(np.uint16)}
    one = simulate(snn, x[:9], SimulationConfig(threads=1, **cfg))
    assert list(two.spikes) == list(one.spikes) and len(two.spikes) > 3
    for name, st in one.spikes.items():
        assert two.spikes[name].packed is not None and two.spikes[name].packed.flags.c_contiguous
        np.testing.assert_array_equal(two.spikes[name].packed, st.packed)
        np.testing.assert_array_equal(two.counts[name], one.counts[name])
    assert sum(st.n_spikes for st in one.spikes.values()) > 1000

    # a raster of the wrong shape is refused in one line, before anything runs
    from spikebridge.engines.plan import draw_poisson, prepare_inputs
    from spikebridge.engines.tensor.arrays import arrays_for
    from spikebridge.engines.tensor.engine import TensorProgram
    from spikebridge.errors import ValidationError

    plan = compile(snn, SimulationConfig(**cfg))
    name = sorted(plan.record)[0]
    inputs = draw_poisson(prepare_inputs(snn, x[:3], snn.dt), 20, snn.dt, 0)
    with pytest.raises(ValidationError, match=rf"bits_out\['{name}'\] has shape \(2, 20, 1\) and type uint8, expected \(3, 20, \d+\) uint8"):
        TensorProgram(plan, arrays_for("cpu")).run(inputs, 20, seed=0, record=set(plan.record), bits_out={name: np.zeros((2, 20, 1), np.uint8)})


def test_cycles_and_poisson_drive_keep_the_step_major_schedule(rng):
    assert "cycle" in str(layer_major_blocker(mixed(rng), 1e-3))
    net = feed_forward(rng, kind="current")
    assert layer_major_blocker(net, 1e-3) is None
    pops = [p.replace(params={"poisson_n": 10, "poisson_rate": 50.0, "poisson_weight": 0.1}) if p.name == "a" else p
            for p in net.populations.values()]
    drive = net.copy_with(populations=pops)
    assert "Poisson" in str(layer_major_blocker(drive, 1e-3))
    assert not compile(drive, n_steps=10).layer_major


def gated(rng: np.random.Generator, *, kind: str) -> SpikingNetwork:
    """IF populations whose values are all dyadic (max-pool-gate-like: fan-in <= 3, weights in
    {±1, ±0.5, 0.25}, thresholds 1 and 0.75, start 0.5, reset by subtraction or to -0.25, a
    step drive of 0.25, delays of 0-2 steps) between float populations."""
    from spikebridge.snn.network import Population

    n_in, n_a, n_g, n_h, n_out = 5, 40, 20, 10, 3

    def gather(name, pre, post, n_pre, n_post, fan, delay=0.0):
        rows = np.repeat(np.arange(n_post), fan)
        cols = np.concatenate([rng.choice(n_pre, fan, replace=False) for _ in range(n_post)])
        w = rng.choice([-1.0, -0.5, 0.25, 0.5, 1.0], size=rows.size, p=[0.15, 0.1, 0.25, 0.2, 0.3])
        return Projection(name=name, pre=pre, post=post, pre_index=cols, post_index=rows, weight=w, delay=delay)

    pops = [
        Population(name="input", n=n_in, model="input", role="input"),
        Population(name="a", n=n_a, model="if", v_init=0.5, bias=rng.normal(0, 20, n_a)),
        Population(name="g", n=n_g, model="if", v_init=0.5, threshold=np.where(np.arange(n_g) % 2, 1.0, 0.75)),
        Population(name="h", n=n_h, model="if", v_init=0.5, bias=250.0, reset="value", v_reset=-0.25),
        Population(name="out", n=n_out, model="integrator", role="output"),
    ]
    w_in = rng.normal(0.3, 0.6, size=(n_a, n_in))
    projs = [
        Projection.from_dense(w_in, name="in_a", pre="input", post="a", delay=0.0),
        gather("a_g", "a", "g", n_a, n_g, 3),
        gather("g_h", "g", "h", n_g, n_h, 2).replace(delay=rng.integers(0, 3, size=2 * n_h) * 1e-3),
        gather("a_h", "a", "h", n_a, n_h, 1),
        Projection.from_dense(rng.normal(0.2, 0.5, size=(n_out, n_h)), name="h_out", pre="h", post="out", delay=0.0),
    ]
    return SpikingNetwork(pops, projs, input="input", output="out", min_delay_steps=0,
                          encoding={"kind": kind, "scale": 1.0, "max_rate": 500.0})


@pytest.mark.parametrize("use_numba", [False, True])
@pytest.mark.parametrize("kind", ["current", "regular"])
def test_integer_populations_are_exact(rng, monkeypatch, kind, use_numba):
    import spikebridge.engines.tensor.compiled as compiled
    from spikebridge.engines.tensor.arrays import NumpyArrays
    from spikebridge.engines.tensor.engine import TensorProgram

    monkeypatch.setattr(compiled, "ENABLED", use_numba)
    if use_numba and not compiled.available():
        pytest.skip("numba is not installed (pip install 'spikebridge[fast]')")
    monkeypatch.setattr(layered, "BLOCK_STEPS", 7)
    # "a" (plain IF, only a constant drive with current input) scans only its neurons that can fire
    monkeypatch.setattr(layered, "_PACK_BELOW", 1.01)
    scans = []
    real_scan = layered.LayerMajor._if_scan
    monkeypatch.setattr(layered.LayerMajor, "_if_scan", staticmethod(lambda v, *a: scans.append(v.shape) or real_scan(v, *a)))
    net = gated(rng, kind=kind)
    program = TensorProgram(compile(net, n_steps=60), NumpyArrays())
    ints = program._layered.ints
    assert set(ints) == {"g", "h"}  # "a" has a float bias, "out" is an integrator
    assert ints["g"].scale == 4 and ints["h"].scale == 4  # quarters (0.25, 0.75, -0.25) set the scales
    assert layered.LayerMajor._int_dtype(ints["h"], 60) is np.int16
    assert layered.LayerMajor._int_dtype(ints["h"], 10**5) is np.int32
    x = rng.uniform(0, 1, size=(4, 5))
    step, layer = _both(net, x, 60, monkeypatch, seed=4)
    _assert_identical(step, layer, min_spikes=500)
    assert layer.counts["g"].sum() > 50 and layer.counts["h"].sum() > 50
    packed = [shape for shape in scans if len(shape) == 1]
    if kind == "current":  # some of "a"'s 4 x 40 neurons have a drive <= 0: they never fire
        assert (layer.counts["a"] == 0).any()
        if use_numba:  # the compiled scan runs them all: cheaper than scattering packed spikes back
            assert not packed and scans
        else:  # the numpy scan leaves them out
            assert packed and all(0 < shape[0] < 4 * 40 for shape in packed)
    else:  # driven by spikes of the input population: every neuron is scanned
        assert not packed
    monkeypatch.setattr(layered, "INTEGER_GATES", False)
    _assert_identical(simulate(net, x, SimulationConfig(n_steps=60, engine="tensor", record=("all",), seed=4)), layer, 500)
    ref = simulate_reference(net, x, 60, seed=4, record=("all",))
    _assert_identical(ref, layer, min_spikes=500)


def test_recorded_spikes_reach_the_store_packed_without_decoding(rng, monkeypatch, tmp_path):
    """Layer-major runs hand recorded spikes on as packed rasters; `simulate -o` stores dense
    populations as rasters without building index arrays, and reads back the step-major spikes."""
    import spikebridge.store.record as record_mod
    import spikebridge.store.spikes as spikes_mod
    from spikebridge.run.store import simulate_to_store
    from spikebridge.store.spikes import SpikeStore

    net = feed_forward(rng, kind="current")
    x = rng.uniform(0, 1, size=(3, 5))
    step, layer = _both(net, x, 50, monkeypatch)
    assert all(st.packed is not None and "sample" not in st.__dict__ for st in layer.spikes.values())

    def no_decoding(*a, **k):
        raise AssertionError("packed spikes were decoded on the way to the store")

    cfg = SimulationConfig(n_steps=50, engine="tensor", device="cpu", record=("all",))
    with monkeypatch.context() as m:
        m.setattr(record_mod, "unpack_spikes", no_decoding)
        m.setattr(spikes_mod, "BITS_DENSITY", 0.0)  # every population dense enough for a raster
        simulate_to_store(net, x, tmp_path / "run.h5", cfg, return_record=False)
    with SpikeStore(tmp_path / "run.h5") as st:
        assert all("bits" in st.file["populations"][name] for name in st)
        for name in step.spikes:
            got = st.read_spikes(name, 0, 3)
            for key in ("sample", "neuron", "step"):
                np.testing.assert_array_equal(getattr(got, key), getattr(step.spikes[name], key), err_msg=name)
    assert sum(int(c.sum()) for c in step.counts.values()) >= 300


def test_decoded_trains_equal_packed_trains(rng, monkeypatch):
    """PACKED_TRAINS=False decodes each batch's raster at once: the same spikes as the lazy trains."""
    net = feed_forward(rng, kind="current")
    x = rng.uniform(0, 1, size=(3, 5))
    step, packed = _both(net, x, 50, monkeypatch)
    monkeypatch.setattr(layered, "PACKED_TRAINS", False)
    _, decoded = _both(net, x, 50, monkeypatch)
    assert all(st.packed is None and "sample" in st.__dict__ for st in decoded.spikes.values())
    _assert_identical(decoded, packed, min_spikes=300)
    _assert_identical(decoded, step, min_spikes=300)
