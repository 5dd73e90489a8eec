"""The tensor engine: identical spikes to Brian2 and the reference simulator, family by family.

Every comparison is exact (``assert_array_equal`` on spike counts and spike
steps), never a tolerance.  Brian2 runs with the numpy target (no compiler,
fast to start).  The tensor engine runs on numpy/scipy and, where installed,
on torch CPU threads.
"""

from __future__ import annotations

import logging

import numpy as np
import pytest

from spikebridge.config import ConversionConfig, SimulationConfig
from spikebridge.conversion.convert import convert
from spikebridge.engines.plan import compile
from spikebridge.engines.reference import simulate_reference
from spikebridge.errors import BuildError, ValidationError
from spikebridge.ir.serialize import load_graph
from spikebridge.run.simulate import resolve_engine, simulate
from spikebridge.snn.network import Projection, load_network, save_network
from tests._optional import requires_nir

from ._nets import chain, mixed, pool_cnn_graph, single_if

try:
    import torch  # noqa: F401

    DEVICES = ["cpu", "torch"]
except ImportError:  # pragma: no cover - torch is an optional extra
    DEVICES = ["cpu"]


def _tensor(snn, x, n_steps, device, **kw):
    return simulate(snn, x, SimulationConfig(n_steps=n_steps, engine="tensor", device=device, **kw))


def _brian2(snn, x, n_steps, **kw):
    return simulate(snn, x, SimulationConfig(n_steps=n_steps, target="numpy", **kw))


def assert_same_spikes(a, b, *, min_spikes: int = 1):
    """Identical counts of every population, output counts over time, and recorded spike trains."""
    assert set(a.counts) == set(b.counts)
    for name in a.counts:
        np.testing.assert_array_equal(a.counts[name], b.counts[name], err_msg=name)
    np.testing.assert_array_equal(a.output_counts_t, b.output_counts_t)
    for name in set(a.spikes) & set(b.spikes):
        for key in ("sample", "neuron", "step"):
            np.testing.assert_array_equal(getattr(a.spikes[name], key), getattr(b.spikes[name], key), err_msg=name)
    total = sum(int(c.sum()) for c in a.counts.values())
    assert total >= min_spikes, f"only {total} spikes: the comparison would be vacuous"


@pytest.fixture(scope="module")
def digits():
    from spikebridge.datasets import load_dataset

    x, _ = load_dataset("digits:test")
    return x


# -- hand-built networks -----------------------------------------------------------------------
@pytest.mark.parametrize("device", DEVICES)
def test_hand_counts(device):
    import math

    rec = _tensor(single_if(threshold=0.5), [[0.37], [0.11]], 64, device)
    assert rec.output_counts[:, 0].tolist() == [math.floor(64 * 0.37 / 0.5), math.floor(64 * 0.11 / 0.5)]
    assert rec.meta["engine"] == "tensor"
    # refractory period of 3 steps: ceil(T / 3) spikes however strong the drive
    assert int(_tensor(single_if(refractory=3e-3), [[2.5]], 20, device).output_counts[0, 0]) == math.ceil(20 / 3)
    for d in (1, 3, 5):
        r = _tensor(chain(d), [[1.0]], 20, device, record=("a", "b"))
        assert int(r.spikes["b"].step.min()) - int(r.spikes["a"].step.min()) == d
        assert int(r.counts["b"][0, 0]) == 20 - d


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("kind", ["current", "regular", "poisson"])
def test_mixed_network_equals_reference(rng, kind, device):
    # LIF, cuba LIF onto I, reset to zero / to a value, refractoriness, per-synapse delays of 1-4 steps,
    # recurrence and feedback, an integrator read-out
    net = mixed(rng, kind=kind)
    x = rng.uniform(0, 1, size=(3, 5))
    ref = simulate_reference(net, x, 120, seed=4, record=("all",))
    ten = _tensor(net, x, 120, device, seed=4, record=("all",))
    assert_same_spikes(ten, ref, min_spikes=300)
    np.testing.assert_array_equal(ten.output_potential_t, ref.output_potential_t)


def test_mixed_network_equals_brian2(rng):
    net = mixed(rng, kind="regular")
    x = rng.uniform(0, 1, size=(3, 5))
    assert_same_spikes(_tensor(net, x, 100, DEVICES[-1], record=("all",)), _brian2(net, x, 100, record=("all",)), min_spikes=300)


# -- shipped models ----------------------------------------------------------------------------
@pytest.mark.parametrize("device", DEVICES)
def test_digits_mlp_equals_brian2(digits, device):
    snn = convert(load_graph("models/digits_mlp.h5"), ConversionConfig(v_init=0.5, percentile=100.0), calibration=digits[:200])
    x = digits[:6]
    assert_same_spikes(_tensor(snn, x, 64, device, record=("all",)), _brian2(snn, x, 64, record=("all",)), min_spikes=2000)


@pytest.mark.parametrize("device", DEVICES)
def test_digits_cnn_equals_brian2_with_shared_kernels(digits, device):
    snn = convert(load_graph("models/digits_cnn.h5"), ConversionConfig(v_init=0.5), calibration=digits[:200])
    kinds = {p.name: (p.kind, p.operator is not None) for p in snn.projections.values()}
    # first conv folded into the input current, the rest applied as kernels
    assert kinds["conv1_pool1"] == ("pool", True) and kinds["pool1_conv2"] == ("conv", True)
    x = digits[:3]
    ten = _tensor(snn, x, 48, device, record=("all",))
    # the engine applied the kernels without making per-synapse arrays
    assert all("weight" not in p.__dict__ for p in snn.projections.values() if p.operator is not None)
    assert_same_spikes(ten, _brian2(snn, x, 48, record=("all",)), min_spikes=2000)


@pytest.mark.parametrize("maxpool", ["gate", "tree"])
@pytest.mark.parametrize("device", DEVICES)
def test_maxpool_gate_cnn_with_delays_equals_reference(rng, device, maxpool):
    g = pool_cnn_graph(8, conv2_stride=2, conv2_padding=0)
    x = rng.uniform(0, 1, size=(30, 2, 8, 8))
    snn = convert(g, ConversionConfig(delay=2e-3, refractory=1e-3, input_encoding="poisson", max_rate=500.0, maxpool=maxpool), calibration=x)
    if maxpool == "gate":  # the gate keeps its shared kernel; the tree adds populations of rounds
        assert any(p.kind == "gate" and p.operator is not None for p in snn.projections.values())
    else:
        assert any("_max" in name for name in snn.populations)  # the tournament's rounds
    ref = simulate_reference(snn, x[:4], 80, seed=9, record=("all",))
    assert_same_spikes(_tensor(snn, x[:4], 80, device, seed=9, record=("all",)), ref, min_spikes=500)


# -- Dale's law, Brunel, NIR -------------------------------------------------------------------
@pytest.mark.parametrize("dale", ["relay", "pooled"])
def test_dale_nets_equal_brian2(digits, dale):
    snn = convert(load_graph("models/digits_mlp.h5"), ConversionConfig(v_init=0.5, dale=dale), calibration=digits[:200])
    x = digits[:4]
    assert_same_spikes(_tensor(snn, x, 48, DEVICES[-1], record=("all",)), _brian2(snn, x, 48, record=("all",)), min_spikes=1000)


def _brunel(scale: float = 0.03):
    from spikebridge.models.brunel import brunel_network

    return brunel_network(scale=scale, seed=1)


@pytest.mark.parametrize("device", DEVICES)
def test_brunel_with_poisson_drive_equals_reference(device):
    net = _brunel()
    ref = simulate_reference(net, None, 600, seed=3, record=("all",))
    assert_same_spikes(_tensor(net, None, 600, device, seed=3, record=("all",)), ref, min_spikes=200)


def test_brunel_structure_equals_brian2():
    # Brian2 draws its own Poisson numbers, so the external drive is replaced by its mean as a bias:
    # E/I populations, 15-step delays, refractoriness and reset to a value stay
    net = _brunel()
    pops = []
    for pop in net.populations.values():
        p = pop.params
        mean = p["poisson_n"] * p["poisson_rate"] * p["poisson_weight"] * 1.1
        pops.append(pop.replace(params={}, bias=mean))
    net = net.copy_with(populations=pops)
    a = _tensor(net, None, 500, DEVICES[-1], record=("all",))
    b = _brian2(net, None, 500, record=("all",))
    assert_same_spikes(a, b, min_spikes=200)


@requires_nir
def test_nir_import_equals_brian2(rng):
    import nir

    from spikebridge.importers.from_nir import load_nir

    dt = 1e-4
    n_in, n_h, n_out = 4, 6, 3
    w1 = rng.uniform(0.0, 2.0, size=(n_h, n_in)) * 40
    g = nir.NIRGraph(
        nodes={
            "input": nir.Input(np.array([n_in])),
            "fc": nir.Affine(weight=w1, bias=rng.uniform(0, 0.5, n_h)),
            "cuba": nir.CubaLIF(tau_syn=np.full(n_h, 5e-3), tau_mem=np.full(n_h, 1e-2), r=np.ones(n_h), v_leak=np.zeros(n_h),
                                v_threshold=np.ones(n_h), v_reset=np.zeros(n_h), w_in=np.ones(n_h)),
            "ro": nir.Linear(weight=rng.uniform(0, 1.0, size=(n_out, n_h)) * 200),
            "lif": nir.LIF(tau=np.full(n_out, 2e-2), r=np.ones(n_out), v_leak=np.zeros(n_out), v_threshold=np.ones(n_out),
                           v_reset=np.zeros(n_out)),
            "output": nir.Output(np.array([n_out])),
        },
        edges=[("input", "fc"), ("fc", "cuba"), ("cuba", "ro"), ("ro", "lif"), ("lif", "output")],
        type_check=False,
    )
    net = load_nir(g, dt=dt)
    raster = (rng.uniform(size=(3, 300, n_in)) < 0.2).astype(float)
    a = _tensor(net, raster, 300, DEVICES[-1], record=("all",))
    assert_same_spikes(a, _brian2(net, raster, 300, record=("all",)), min_spikes=50)
    assert_same_spikes(_tensor(net, raster, 300, "cpu", record=("all",)), a)


# -- Poisson input: per-sample seeds -------------------------------------------------------------
def test_poisson_input_per_sample_seeds_equal_brian2_and_batch_independent(digits):
    snn = convert(load_graph("models/digits_cnn.h5"), ConversionConfig(input_encoding="poisson", max_rate=500.0), calibration=digits[:200])
    x = digits[:4]
    whole = _tensor(snn, x, 40, DEVICES[-1], seed=11, record=("all",))
    split = _tensor(snn, x, 40, "cpu", seed=11, record=("all",), batch_size=1)
    assert split.meta["n_batches"] == 4
    assert_same_spikes(whole, split, min_spikes=1000)
    assert_same_spikes(whole, _brian2(snn, x, 40, seed=11, record=("all",)))
    other = _tensor(snn, x, 40, "cpu", seed=12)
    assert not np.array_equal(other.counts["input"], whole.counts["input"])


# -- the operator form: lazy synapses, files, choice of engine ---------------------------------
def test_kernel_projection_makes_synapses_only_when_asked(digits, tmp_path):
    snn = convert(load_graph("models/digits_cnn.h5"), calibration=digits[:100])
    proj = snn.projections["pool1_conv2"]
    # 32 x 16 x 3 x 3 kernel, padding 1, over a 4 x 4 map: 10 in-image taps per row and column
    n = proj.n_synapses
    assert n == 32 * 16 * 10 * 10
    assert "weight" not in proj.__dict__ and proj.sign == "mixed"
    explicit = Projection(name="x", pre=proj.pre, post=proj.post, pre_index=proj.pre_index, post_index=proj.post_index,
                          weight=proj.weight)
    assert explicit.n_synapses == n == proj.weight.size
    dense = proj.to_dense(snn.populations[proj.post].n, snn.populations[proj.pre].n)
    op = proj.operator
    k = op.kernel
    # post neuron (o, y, x) sums kernel[o, c, i, j] * pre (c, y + i - 1, x + j - 1)
    o, y, xx, c, i, j = 3, 0, 2, 5, 1, 1
    post = o * 16 + y * 4 + xx
    pre = c * 16 + (y + i - 1) * 4 + (xx + j - 1)
    assert dense[post, pre] == k[o, c, i, j]
    # files keep the kernel, not the synapses; version-1 files still load
    path = tmp_path / "cnn.h5"
    save_network(snn, path)
    back = load_network(path)
    assert back.projections["pool1_conv2"].operator is not None
    np.testing.assert_array_equal(back.projections["pool1_conv2"].operator.kernel, k)
    x = digits[:2]
    assert_same_spikes(_tensor(back, x, 30, "cpu"), _tensor(snn, x, 30, "cpu"), min_spikes=100)
    explicit_net = snn.copy_with(projections=[p.replace(weight=p.weight) for p in snn.projections.values()])
    assert all(p.operator is None for p in explicit_net.projections.values())
    save_network(explicit_net, tmp_path / "v1.h5")
    import h5py

    with h5py.File(tmp_path / "v1.h5") as f:
        assert int(f.attrs["format_version"]) == 4  # same-step delivery (the default) since version 4
    assert_same_spikes(_tensor(load_network(tmp_path / "v1.h5"), x, 30, "cpu"), _tensor(snn, x, 30, "cpu"), min_spikes=100)


def test_engine_auto_announces_its_choice(digits, caplog):
    cnn = convert(load_graph("models/digits_cnn.h5"), calibration=digits[:100])
    mlp = convert(load_graph("models/digits_mlp.h5"), calibration=digits[:100])
    with caplog.at_level(logging.INFO, logger="spikebridge.notice"):
        assert resolve_engine(cnn, SimulationConfig(engine="auto")) == "tensor"
        assert resolve_engine(mlp, SimulationConfig(engine="auto")) == "brian2"
        assert resolve_engine(mlp, SimulationConfig(engine="auto", max_memory=30e6)) == "tensor"
    lines = [r.getMessage() for r in caplog.records if "engine auto" in r.getMessage()]
    assert len(lines) == 3
    assert "shared-kernel" in lines[0] and "fits max_memory" in lines[1] and "over max_memory" in lines[2]


def test_brian2_limit_error_suggests_the_tensor_engine(digits):
    snn = convert(load_graph("models/digits_cnn.h5"), calibration=digits[:100])
    with pytest.raises(BuildError, match=r"one sample needs about [\d.]+ MB in Brian2.*engine='tensor'"):
        simulate(snn, digits[:2], SimulationConfig(n_steps=8, target="numpy", max_memory=30e6))
    # the tensor engine runs it within the same budget
    assert _tensor(snn, digits[:2], 8, "cpu", max_memory=30e6).n_samples == 2


def test_bad_device_is_refused():
    with pytest.raises(ValidationError, match="device"):
        SimulationConfig(engine="tensor", device="tpu")
    with pytest.raises(ValidationError, match="engine"):
        SimulationConfig(engine="fast")


def test_cli_simulate_with_the_tensor_engine_stores_the_same_spikes(capsys, tmp_path):
    from spikebridge import cli
    from spikebridge.models import model_path
    from spikebridge.store.spikes import SpikeStore

    net = tmp_path / "cnn.h5"
    assert cli.main(["-q", "convert", str(model_path("digits_cnn")), "-o", str(net), "--v-init", "0.5"]) == 0
    stores = {}
    for engine in ("tensor", "brian2"):
        stores[engine] = tmp_path / f"{engine}.h5"
        argv = ["-q", "simulate", str(net), "--limit", "4", "--steps", "32", "--target", "numpy", "--engine", engine,
                *(["--device", "cpu"] if engine == "tensor" else []), "-o", str(stores[engine])]  # brian2 refuses --device
        assert cli.main(argv) == 0
    capsys.readouterr()
    with SpikeStore(stores["tensor"]) as a, SpikeStore(stores["brian2"]) as b:
        assert set(a.count_populations) == set(b.count_populations)
        fired = 0
        for name in a.count_populations:
            np.testing.assert_array_equal(a.counts(name), b.counts(name))
            fired += int(a.counts(name).sum())
        assert fired > 1000
    code = cli.main(["simulate", str(net), "--limit", "2", "--engine", "tensor", "--device", "tpu"])
    err = capsys.readouterr().err
    assert code == 1 and "device" in err and len(err.strip().splitlines()) == 1


def test_dense_convolution_path_used_on_gpus_gives_the_same_spikes(digits):
    pytest.importorskip("torch")
    from spikebridge.engines.plan import draw_poisson, prepare_inputs
    from spikebridge.engines.tensor import TensorProgram
    from spikebridge.engines.tensor.arrays import TorchArrays

    # CUDA runs convolutions with torch.nn.functional.conv2d; the same code path on the CPU
    snn = convert(load_graph("models/digits_cnn.h5"), ConversionConfig(v_init=0.5), calibration=digits[:200])
    x = digits[:3]
    arrays = TorchArrays("cpu")
    arrays.event_driven = False
    plan = draw_poisson(prepare_inputs(snn, x, snn.dt), 40, snn.dt, 0)
    dense = TensorProgram(compile(snn), arrays).run(plan, 40, seed=0, record=set())
    assert_same_spikes(dense, simulate_reference(snn, x, 40), min_spikes=1000)


@pytest.mark.parametrize("device", DEVICES)
def test_threads_split_batches_with_the_same_spikes(digits, device):
    snn = convert(load_graph("models/digits_cnn.h5"), ConversionConfig(input_encoding="poisson", max_rate=500.0), calibration=digits[:200])
    x = digits[:5]
    one = _tensor(snn, x, 30, device, seed=2, record=("all",))
    two = _tensor(snn, x, 30, device, seed=2, record=("all",), threads=2)
    assert two.meta["n_batches"] == 1
    assert_same_spikes(two, one, min_spikes=500)


# -- fast paths (issue 21): ordered sums, gathers, dense convolutions ------------------------------
def test_ordered_matmul_equals_the_loop_bit_for_bit():
    from spikebridge.engines.tensor.arrays import _loop_matmul, ordered_matmul, sequential_k

    assert sequential_k() >= 16  # OpenBLAS (numpy's wheels): one accumulator per output up to its block size
    r = np.random.default_rng(4)
    # K beyond the BLAS block size, outputs not a multiple of 8, a single row (GEMV otherwise)
    for m, k, n in ((1, 385, 9), (7, 1000, 37), (300, 800, 130), (64, 2304, 16)):
        a = (r.random((m, k)) < 0.4).astype(np.float64)
        w = r.normal(size=(k, n)) * np.exp(r.normal(size=(k, n)) * 6)  # weights over many octaves
        loop = _loop_matmul(a, w)
        np.testing.assert_array_equal(ordered_matmul(a, w), loop)
    # the plain GEMM regroups such sums (what the ordered product exists for)
    assert not np.array_equal(a @ w, loop)


def test_gather_and_event_matrices_give_identical_sums():
    import scipy.sparse as sp

    from spikebridge.engines.tensor.arrays import NumpyArrays

    r = np.random.default_rng(5)
    n_pre, n_post = 200, 90
    pre = np.concatenate([r.permutation(n_pre)[:3] for _ in range(n_post)])  # fan-in 3
    post = np.repeat(np.arange(n_post), 3)
    m = sp.csr_matrix((r.normal(size=pre.size) * 1e3 ** r.random(pre.size), (post, pre)), shape=(n_post, n_pre))
    m.sum_duplicates()
    xp = NumpyArrays()
    gather = xp.matrix(m)
    assert gather[0] == "gather"
    x = r.random((17, n_pre)) < 0.3
    xp.pull_above = 2.0  # events (a sparse-sparse product) at any density
    events = xp.matmul(("sparse", (sp.csr_matrix(m.T), m)), x)
    np.testing.assert_array_equal(xp.matmul(gather, x), events)
    np.testing.assert_array_equal(events, (m @ x.T.astype(np.float64)).T)  # the reference's product
    # fan-in 40 with weights over six orders of magnitude: pulling (m @ spikesᵀ in row chunks) and
    # pushing events sum in the same pre-index order, at densities on both sides of the crossover
    pre = np.concatenate([r.permutation(n_pre)[:40] for _ in range(n_post)])
    post = np.repeat(np.arange(n_post), 40)
    wide = sp.csr_matrix((r.normal(size=pre.size) * 1e3 ** r.random(pre.size), (post, pre)), shape=(n_post, n_pre))
    wide.sum_duplicates()
    prepared = xp.matrix(wide)
    assert prepared[0] == "sparse"
    for density in (0.05, 0.3, 0.8):
        x = r.random((150, n_pre)) < density
        xp.pull_above = 2.0
        events = xp.matmul(prepared, x)
        xp.pull_above = 0.0
        np.testing.assert_array_equal(xp.matmul(prepared, x), events)
    assert NumpyArrays.pull_above == 0.12


@pytest.mark.parametrize("device", DEVICES)
def test_dense_and_event_convolutions_give_identical_spikes(digits, device):
    from spikebridge.engines.plan import draw_poisson, prepare_inputs
    from spikebridge.engines.tensor import TensorProgram
    from spikebridge.engines.tensor.arrays import SparseConv, arrays_for

    snn = convert(load_graph("models/digits_cnn.h5"), ConversionConfig(input_encoding="poisson", max_rate=800.0, v_init=0.5),
                  calibration=digits[:200])
    plan = draw_poisson(prepare_inputs(snn, digits[:6], snn.dt), 40, snn.dt, 3)
    runs = {}
    for mode, above in (("events", 2.0), ("dense", 0.0)):
        program = TensorProgram(compile(snn), arrays_for(device))
        convs = [link.prepared for links in program.links.values() for link in links if isinstance(link.prepared, SparseConv)]
        assert convs  # the poisson input's convolution and the hidden one run as SparseConv
        for conv in convs:
            conv.dense_above = above
        runs[mode] = program.run(plan, 40, seed=3, record=set(program.names))
    assert_same_spikes(runs["dense"], runs["events"], min_spikes=1000)
    np.testing.assert_array_equal(runs["dense"].output_potential_t, runs["events"].output_potential_t)
    assert_same_spikes(runs["dense"], simulate_reference(snn, digits[:6], 40, seed=3, record=("all",)), min_spikes=1000)
