"""2x2 max-pool tournaments run as one compiled pass (``layered.FUSED_POOL``): the same spikes.

:func:`spikebridge.engines.tensor.compiled.pool4_if` replaces the gathers and integer scans of a
tournament's three populations (:mod:`spikebridge.conversion.maxpool`) where their links have the
layout it reads; these tests check where it is used, where it is not, and that every spike,
count and potential equals the reference simulator's and the unfused path's.
"""

from __future__ import annotations

import numpy as np
import pytest

import spikebridge.engines.tensor.compiled as compiled
import spikebridge.engines.tensor.layered as layered
from spikebridge.config import ConversionConfig, SimulationConfig
from spikebridge.conversion.convert import convert
from spikebridge.engines.plan import compile
from spikebridge.engines.reference import simulate_reference
from spikebridge.engines.tensor.arrays import NumpyArrays
from spikebridge.engines.tensor.engine import TensorProgram
from spikebridge.importers.registry import load_model
from spikebridge.models import model_path
from spikebridge.run.simulate import simulate

from ._nets import pool_cnn_graph
from .test_tensor import assert_same_spikes

pytest.importorskip("numba")


def _cnn(hw: int, *, seed: int = 2):
    """:func:`._nets.pool_cnn_graph` converted (same-step delivery), and its calibration inputs."""
    x = np.random.default_rng(seed + 1).uniform(0, 1, size=(20, 2, hw, hw))
    return convert(pool_cnn_graph(hw, seed=seed), ConversionConfig(v_init=0.5), calibration=x), x


def _pools(snn, n_steps: int) -> dict:
    return TensorProgram(compile(snn, n_steps=n_steps), NumpyArrays())._layered.pools


def _spy(monkeypatch) -> list[int]:
    calls: list[int] = []
    real = compiled.pool4_if
    monkeypatch.setattr(compiled, "pool4_if", lambda x, *a: calls.append(x.shape[1]) or real(x, *a))
    return calls


def _run(snn, x, n_steps: int):
    return simulate(snn, x, SimulationConfig(n_steps=n_steps, engine="tensor", device="cpu", record=("all",), seed=5))


def test_even_pooling_runs_fused_with_the_reference_spikes(monkeypatch):
    snn, x = _cnn(8)
    assert compiled.available()
    pools = _pools(snn, 60)
    assert list(pools) == ["pool1_max1"]
    pool = pools["pool1_max1"]
    assert pool.names == ("pool1_max1", "pool1_max2", "pool1") and pool.w2 == 4
    # relu(b - a), relu(d - c); relu((c + u1) - (a + u0)); a + u0 + u2, each weight the threshold,
    # in halves (the scale that makes v_init = 0.5 an integer)
    assert pool.w.tolist() == [-2, 2, -2, 2, -2, 2, -2, 2, 2, 2, 2] and pool.th.tolist() == [2, 2, 2]
    calls = _spy(monkeypatch)
    monkeypatch.setattr(layered, "BLOCK_STEPS", 7)  # blocks that do not divide the run
    fused = _run(snn, x[:4], 60)
    assert calls and sum(calls) == 4 * 9  # 4 samples, 9 blocks of 60 steps
    assert fused.counts["pool1_max1"].sum() > 100 and fused.counts["pool1_max2"].sum() > 20
    ref = simulate_reference(snn, x[:4], 60, seed=5, record=("all",))
    assert_same_spikes(fused, ref, min_spikes=2000)
    np.testing.assert_array_equal(fused.output_potential_t, ref.output_potential_t)
    monkeypatch.setattr(layered, "FUSED_POOL", False)
    calls.clear()
    unfused = _run(snn, x[:4], 60)
    assert not calls
    assert_same_spikes(fused, unfused, min_spikes=2000)


def test_fused_pools_give_brian2s_spikes(monkeypatch):
    snn, x = _cnn(8, seed=6)
    calls = _spy(monkeypatch)
    fused = _run(snn, x[:2], 30)
    assert calls
    brian2 = simulate(snn, x[:2], SimulationConfig(n_steps=30, target="numpy", record=("all",), seed=5))
    assert_same_spikes(fused, brian2, min_spikes=500)
    assert brian2.counts["pool1_max1"].sum() > 20 and brian2.counts["pool1"].sum() > 50


def test_int32_potentials_run_fused_too(monkeypatch):
    snn, x = _cnn(8, seed=4)
    monkeypatch.setattr(layered.LayerMajor, "_int_dtype", staticmethod(lambda ip, n_steps: np.int32))
    calls = _spy(monkeypatch)
    got = _run(snn, x[:3], 40)
    assert calls
    assert_same_spikes(got, simulate_reference(snn, x[:3], 40, seed=5, record=("all",)), min_spikes=1000)


@pytest.mark.parametrize("why", ["odd width", "delays"])
def test_other_layouts_keep_the_gathers(monkeypatch, why):
    if why == "odd width":  # a 7x7 image pooled to 3x3: its last row and column are in no window
        snn, x = _cnn(7)
    else:  # the tournament's rounds one step apart: not within the step
        snn = convert(load_model(model_path("mnist_lenet")), ConversionConfig(delay=1e-3), calibration=np.random.default_rng(0).random((4, 1, 28, 28)))
        x = np.random.default_rng(1).random((2, 1, 28, 28))
    assert any(name.endswith("_max2") for name in snn.populations)  # a tournament, not in the kernel's layout
    assert _pools(snn, 30) == {}
    calls = _spy(monkeypatch)
    got = _run(snn, x[:2], 30)
    assert not calls
    assert_same_spikes(got, simulate_reference(snn, x[:2], 30, seed=5, record=("all",)), min_spikes=50)


def test_shipped_lenet_runs_both_pools_fused(monkeypatch):
    graph = load_model(model_path("mnist_lenet"))
    x = np.random.default_rng(3).random((4,) + tuple(graph.input_shape))
    snn = convert(graph, ConversionConfig(fixed_point=True), calibration=x)
    pools = _pools(snn, 24)
    assert sorted(p.names for p in pools.values()) == [("pool1_max1", "pool1_max2", "pool1"), ("pool2_max1", "pool2_max2", "pool2")]
    assert sorted(p.w2 for p in pools.values()) == [5, 14]  # 28x28 and 10x10 maps
    calls = _spy(monkeypatch)
    fused = _run(snn, x, 24)
    assert len(calls) == 2 * 6  # two tournaments, 6 blocks of 4 steps
    monkeypatch.setattr(layered, "FUSED_POOL", False)
    assert_same_spikes(fused, _run(snn, x, 24), min_spikes=5000)
