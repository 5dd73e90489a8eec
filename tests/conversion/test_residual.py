"""Branching graphs: a residual sum is one population fed by both paths, a concat is an index map."""

from __future__ import annotations

import numpy as np
import pytest

from spikebridge.engines.reference import simulate_reference
from spikebridge.config import ConversionConfig, SimulationConfig
from spikebridge.conversion.convert import convert
from spikebridge.conversion.latency import population_latency
from spikebridge.snn.operators import linear_operator
from spikebridge.errors import UnsupportedLayerError
from spikebridge.ir import Add, AnnGraph, Dense, Input, MaxPool2d, ReLU, Softmax, evaluate
from tests._dag import make_tiny_resnet

DT = 1e-3


@pytest.fixture(scope="module")
def resnet():
    g = make_tiny_resnet()
    x = np.random.default_rng(1).normal(size=(200, 1, 6, 6))
    # one step per projection, so the paths into a sum must be aligned (same-step delivery needs no alignment)
    return g, x, convert(g, ConversionConfig(percentile=100.0, scales="layer", delay=None), calibration=x)


def test_residual_sum_is_one_population_with_a_scaled_projection_per_path(resnet):
    g, x, snn = resnet
    lam = snn.scales
    acts = evaluate(g, x, return_all=True)
    assert lam["r2"] == pytest.approx(np.max(acts["r2"])) and lam["r0"] == pytest.approx(np.max(acts["r0"]))
    # no population for the Concat, the Adds are one population each (representing the ReLU after them)
    assert [p.name for p in snn] == ["input", "stem", "c1", "a1", "c3", "a2", "side", "gap", "fc"]
    assert snn.populations["a1"].layer == "r2" and snn.populations["a2"].layer == "r4"
    ident = snn.projections["stem_a1"].to_dense(144, 144)
    np.testing.assert_allclose(ident, np.eye(144) * lam["r0"] / lam["r2"])
    conv, bias = linear_operator(g["c2"], (4, 6, 6))
    np.testing.assert_allclose(snn.projections["c1_a1"].to_dense(144, 144), conv.toarray() * lam["r1"] / lam["r2"])
    np.testing.assert_allclose(snn.populations["a1"].bias, bias / lam["r2"] / DT)
    # projection shortcut: the 1x1 stride-2 convolution, scaled by its source's scale; both biases summed
    sc, sc_bias = linear_operator(g["sc"], (4, 6, 6))
    _, c4_bias = linear_operator(g["c4"], (6, 3, 3))
    np.testing.assert_allclose(snn.projections["a1_a2"].to_dense(54, 144), sc.toarray() * lam["r2"] / lam["r4"])
    np.testing.assert_allclose(snn.populations["a2"].bias, (sc_bias + c4_bias) / lam["r4"] / DT)


def test_paths_into_a_sum_arrive_aligned_and_latency_is_the_longest_path(resnet):
    _, _, snn = resnet
    delay = {name: float(p.delay) for name, p in snn.projections.items()}
    # identity path skips one population: it waits one more step
    assert delay["c1_a1"] == pytest.approx(DT) and delay["stem_a1"] == pytest.approx(2 * DT)
    assert delay["c3_a2"] == pytest.approx(DT) and delay["a1_a2"] == pytest.approx(2 * DT)
    # the concat's direct path into the pooling population waits for the side branch
    assert delay["side_gap"] == pytest.approx(DT) and delay["a2_gap"] == pytest.approx(2 * DT)
    # input current (0) + stem->c1->a1->c3->a2->side->gap->fc
    assert snn.readout["latency_steps"] == 7
    # same-step delivery (the default): every path arrives within the step, nothing to align
    same = convert(resnet[0], ConversionConfig(percentile=100.0, scales="layer"), calibration=resnet[1])
    assert same.readout["latency_steps"] == 0 and all(float(p.delay) == 0.0 for p in same.projections.values())
    assert population_latency(snn) == (7, 7)  # every path has the same length


def test_alignment_with_jittered_delays(resnet):
    g, x, _ = resnet
    snn = convert(g, ConversionConfig(delay=2e-3, delay_jitter=3e-3, seed=4), calibration=x)
    shortest, longest = population_latency(snn)
    assert shortest is not None and longest is not None and shortest <= snn.readout["latency_steps"] <= longest

    def mean_steps(name):
        return float(np.mean(np.rint(np.asarray(snn.projections[name].delay) / DT)))

    # both paths into a1 arrive within half a step of each other on average
    a_main = mean_steps("stem_c1") + mean_steps("c1_a1")
    assert abs(a_main - mean_steps("stem_a1")) <= 0.5


def test_snn_agrees_with_ann_and_rates_follow_activations(resnet):
    g, x, snn = resnet
    xt = np.random.default_rng(2).normal(size=(60, 1, 6, 6))
    rec = simulate_reference(snn, xt, 256)
    acts = evaluate(g, xt, return_all=True)
    agreement = float(np.mean(rec.predictions() == acts["fc"].argmax(1)))
    assert agreement >= 0.9
    eff = 256 - 3  # a1 is 3 steps from the input
    rate = rec.counts["a1"] / eff
    target = np.minimum(acts["r2"].reshape(60, -1) / snn.scales["r2"], 1.0)
    assert np.corrcoef(rate.ravel(), target.ravel())[0, 1] > 0.98


def test_brian2_gives_identical_spikes_on_a_residual_network(resnet):
    from spikebridge.run.simulate import simulate

    g, x, _ = resnet
    snn = convert(g, ConversionConfig(v_init=0.5, delay_jitter=2e-3), calibration=x)
    xs = x[:3]
    ref = simulate_reference(snn, xs, 40, record=("all",))
    b2 = simulate(snn, xs, SimulationConfig(n_steps=40, batch_size=3, target="numpy", record=("all",)))
    fired = 0
    for name in ref.counts:
        np.testing.assert_array_equal(b2.counts[name], ref.counts[name], err_msg=name)
        np.testing.assert_array_equal(b2.spikes[name].step, ref.spikes[name].step, err_msg=name)
        fired += int(ref.counts[name].sum())
    assert fired > 300
    np.testing.assert_array_equal(b2.output_counts_t, ref.output_counts_t)


def test_softmax_inside_a_dag_and_maxpool_on_a_sum():
    i = Input(name="x", shape=(2,))
    d = Dense(name="d", weight=np.eye(2))
    g = AnnGraph([i, d, Softmax(name="s"), Add(name="a")], [("x", "d"), ("d", "s"), ("s", "a"), ("x", "a")])
    with pytest.raises(UnsupportedLayerError, match="Softmax is only supported as the last layer"):
        convert(g, ConversionConfig(normalisation="none"))
    # a max-pool over a residual sum: the sum becomes a (rectified) population, then the gate
    from spikebridge.ir import Conv2d

    w = np.ones((1, 1, 1, 1))
    layers = [Input(name="x", shape=(1, 2, 2)), Conv2d(name="c", weight=w), ReLU(name="r"),
              Conv2d(name="c2", weight=w), Add(name="a"), MaxPool2d(name="mp", kernel_size=2), ReLU(name="r2"),
              Conv2d(name="out", weight=w)]
    edges = [("x", "c"), ("c", "r"), ("r", "c2"), ("c2", "a"), ("r", "a"), ("a", "mp"), ("mp", "r2"), ("r2", "out")]
    snn = convert(AnnGraph(layers, edges), ConversionConfig(percentile=100.0, scales="layer", maxpool="gate"), calibration=np.ones((1, 1, 2, 2)))
    assert [(p.name, p.layer) for p in snn] == [("input", "x"), ("c", "r"), ("a", "a"), ("mp", "mp"), ("out", "out")]
    assert snn.populations["mp"].reset == "zero" and snn.scales["mp"] == snn.scales["a"] == pytest.approx(2.0)


@pytest.mark.parametrize("maxpool", ["gate", "avg"])
def test_dag_planner_reproduces_the_chain_planner_on_chains(maxpool, tiny_mlp, tiny_cnn):
    import warnings

    from spikebridge.conversion.stages import plan_stages
    from spikebridge.conversion.dag import plan_dag
    from spikebridge.models import load_shipped

    for g in (tiny_mlp(), tiny_cnn(), load_shipped("digits_cnn"), load_shipped("digits_mlp")):
        cfg = ConversionConfig(maxpool=maxpool)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            chain, dag = plan_stages(g, cfg), plan_dag(g, cfg)
        assert [(s.name, s.kind, s.layer, s.source, s.shape, s.rectify, len(s.extra)) for s in dag] == \
            [(s.name, s.kind, s.layer, s.source, s.shape, s.rectify, 0) for s in chain]
        for a, b in zip(chain, dag):
            assert abs(a.csr() - b.csr()).max() < 1e-12
            # the same convolutions and poolings stay shared kernels
            assert (a.operator is None) == (b.operator is None), a.name
            if a.operator is not None:
                np.testing.assert_array_equal(a.operator.kernel, b.operator.kernel)
            assert (a.bias is None and b.bias is None) or np.allclose(a.bias, b.bias)


def test_residual_convolutions_keep_their_shared_kernels_and_engines_agree(resnet):
    """Both convolutions into a residual sum stay shared kernels (event convolution), with identical spikes."""
    from spikebridge.run.simulate import simulate

    g, x, _ = resnet
    snn = convert(g, ConversionConfig(percentile=100.0, scales="layer", v_init=0.5, delay=None), calibration=x)
    kern = {name for name, p in snn.projections.items() if p.operator is not None}
    # stem conv of the input, c1, both paths into a2 (c4 and the 1x1 projection shortcut), the side conv
    assert kern == {"input_stem", "stem_c1", "c1_a1", "a1_c3", "c3_a2", "a1_a2", "a2_side"}
    # the identity shortcut and the pooling of a concat stay matrices
    assert snn.projections["stem_a1"].operator is None and snn.projections["a2_gap"].operator is None
    # same map as the explicit matrix, in the path's own scale
    sc, _ = linear_operator(g["sc"], (4, 6, 6))
    np.testing.assert_allclose(snn.projections["a1_a2"].to_dense(54, 144), sc.toarray() * snn.scales["r2"] / snn.scales["r4"])
    xs = x[:3]
    ref = simulate_reference(snn, xs, 40, record=("all",))
    ten = simulate(snn, xs, SimulationConfig(n_steps=40, engine="tensor", record=("all",)))
    b2 = simulate(snn, xs, SimulationConfig(n_steps=40, batch_size=3, target="numpy", record=("all",)))
    fired = 0
    for name in ref.counts:
        for other in (ten, b2):
            np.testing.assert_array_equal(other.counts[name], ref.counts[name], err_msg=name)
            np.testing.assert_array_equal(other.spikes[name].step, ref.spikes[name].step, err_msg=name)
        fired += int(ref.counts[name].sum())
    assert fired > 3000
