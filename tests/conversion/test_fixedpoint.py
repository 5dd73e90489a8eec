"""Fixed-point weights (``ConversionConfig(fixed_point=True)``): sums exact in float32, in any order."""

from __future__ import annotations

import math

import numpy as np
import pytest

from spikebridge import SpikingNetwork
from spikebridge.cli import main
from spikebridge.config import ConversionConfig
from spikebridge.conversion.convert import convert
from spikebridge.conversion.fixedpoint import EXACT_SUM_UNITS, float32_exact, grid_exponent, kernel_units, weight_exponent
from spikebridge.errors import ValidationError
from spikebridge.importers.registry import load_model
from spikebridge.models import model_path


def test_grid_exponent_is_the_largest_that_keeps_the_bound():
    assert grid_exponent(1.0) == 24  # 1 · 2**24 units: the bound itself
    assert grid_exponent(3.0) == 22  # 3 · 2**22 <= 2**24 < 3 · 2**23
    assert grid_exponent(2.0**-30) == 54
    for s in (0.37, 5.064, 17.845, 23.898, 1e6):
        e = grid_exponent(s)
        assert math.ldexp(s, e) <= EXACT_SUM_UNITS < math.ldexp(s, e + 1)
    assert grid_exponent(0.0) is None


def test_convert_rounds_every_weight_onto_its_grid_and_moves_it_by_half_a_unit_at_most():
    graph = load_model(model_path("digits_cnn"))
    x = np.random.default_rng(0).random((64,) + tuple(graph.input_shape))
    plain = convert(graph, ConversionConfig(), calibration=x)
    fixed = convert(graph, ConversionConfig(fixed_point=True), calibration=x)
    exps = fixed.metadata["fixed_point"]
    assert set(exps) == {n for n, p in plain.projections.items() if p.weight.size}
    assert "fixed_point" not in plain.metadata
    for name, proj in fixed.projections.items():
        e = exps[name]
        before = plain.projections[name]
        assert (proj.operator is None) == (before.operator is None)  # shared kernels stay shared
        units = np.ldexp(proj.weight, e)
        assert np.array_equal(units, np.rint(units)), name
        fan_in = np.bincount(proj.post_index, weights=np.abs(units), minlength=fixed.populations[proj.post].n)
        assert fan_in.max() <= EXACT_SUM_UNITS, name
        if proj.operator is not None:  # (rounding may zero a tap, which then makes no synapse)
            moved = np.abs(proj.operator.kernel - before.operator.kernel)
            assert float32_exact(proj.operator.kernel) and not float32_exact(before.operator.kernel)
        else:
            moved = np.abs(proj.weight - before.weight)
        assert 0 < moved.max() <= math.ldexp(1.0, -e - 1), name


def test_sums_of_fixed_point_weights_do_not_depend_on_the_order(rng):
    graph = load_model(model_path("digits_cnn"))
    x = rng.random((32,) + tuple(graph.input_shape))
    fixed = convert(graph, ConversionConfig(fixed_point=True), calibration=x)
    plain = convert(graph, ConversionConfig(), calibration=x)
    # the bound is per post-synaptic neuron: the taps of the output channel with the largest Σ|w|
    # (onto an inner neuron of the 16 -> 32 3x3 convolution; the shipped kernel also holds weights
    # of ~1e-40, which rounding zeroes, so there are fewer synapses after it)
    k, k0 = fixed.projections["pool1_conv2"].operator.kernel, plain.projections["pool1_conv2"].operator.kernel
    o = np.abs(k).reshape(k.shape[0], -1).sum(axis=1).argmax()
    w, w0 = k[o].ravel(), k0[o].ravel()
    assert w.size == 144
    differs = 0
    for _ in range(20):
        pick = rng.permutation(w.size)[: w.size // 2]
        fwd32 = np.cumsum(w[pick].astype(np.float32), dtype=np.float32)[-1]
        rev64 = np.cumsum(w[pick[::-1]])[-1]
        assert float(fwd32) == rev64  # float32 one way equals float64 the other way: no rounding at all
        differs += np.cumsum(w0[pick].astype(np.float32), dtype=np.float32)[-1] != np.cumsum(w0[pick[::-1]])[-1]
    assert differs > 0  # the unrounded weights do see the order (the premise)


def test_a_fixed_point_network_keeps_its_weights_through_a_file(tmp_path):
    graph = load_model(model_path("digits_cnn"))
    x = np.random.default_rng(1).random((16,) + tuple(graph.input_shape))
    fixed = convert(graph, ConversionConfig(fixed_point=True), calibration=x)
    fixed.save(tmp_path / "fp.h5")
    back = SpikingNetwork.load(tmp_path / "fp.h5")
    assert back.metadata["fixed_point"] == fixed.metadata["fixed_point"]
    assert back.conversion["fixed_point"] is True
    for name, proj in fixed.projections.items():
        assert np.array_equal(back.projections[name].weight, proj.weight), name


def test_fixed_point_must_be_a_bool():
    with pytest.raises(ValidationError, match="fixed_point: must be a bool"):
        ConversionConfig(fixed_point="yes")  # type: ignore[arg-type]


def test_cli_convert_fixed_point(tmp_path, capsys):
    out = tmp_path / "net.h5"
    assert main(["convert", str(model_path("digits_mlp")), "-o", str(out), "--fixed-point"]) == 0, capsys.readouterr().err
    snn = SpikingNetwork.load(out)
    assert snn.conversion["fixed_point"] is True and set(snn.metadata["fixed_point"]) == set(snn.projections)


def test_weight_exponent_is_the_largest_that_keeps_weights_in_k_bits():
    assert weight_exponent(1.0, 8) == 6  # 64 <= 127 < 128
    assert weight_exponent(127.0, 8) == 0  # the bound itself
    assert weight_exponent(127.5, 8) == -1
    assert weight_exponent(3.0, 16) == 13  # 3 · 2**13 = 24,576 <= 32,767 < 49,152
    for m in (0.013, 0.7, 5.0, 1e4):
        for bits in (2, 4, 8, 12, 24):
            e = weight_exponent(m, bits)
            assert math.ldexp(m, e) <= 2 ** (bits - 1) - 1 < math.ldexp(m, e + 1)
    assert weight_exponent(0.0, 8) is None


@pytest.mark.parametrize("bits", [8, 4])
def test_weight_bits_make_every_weight_a_k_bit_integer_on_its_projections_grid(bits):
    graph = load_model(model_path("digits_cnn"))
    x = np.random.default_rng(0).random((64,) + tuple(graph.input_shape))
    plain = convert(graph, ConversionConfig(), calibration=x)
    fine = convert(graph, ConversionConfig(fixed_point=True), calibration=x)
    coarse = convert(graph, ConversionConfig(weight_bits=bits), calibration=x)  # implies fixed_point
    assert coarse.metadata["weight_bits"] == bits and "weight_bits" not in fine.metadata
    exps = coarse.metadata["fixed_point"]
    assert set(exps) == set(fine.metadata["fixed_point"])
    top = 2 ** (bits - 1) - 1
    for name, proj in coarse.projections.items():
        e = exps[name]
        assert e <= fine.metadata["fixed_point"][name]  # never finer than the fan-in grid
        w = proj.operator.kernel if proj.operator is not None else proj.weight
        before = plain.projections[name]
        w0 = before.operator.kernel if before.operator is not None else before.weight
        units = np.ldexp(w, e)
        assert np.array_equal(units, np.rint(units)) and np.abs(units).max() <= top, name
        # the largest weight uses the top bit: the grid is the finest that keeps k bits
        assert np.abs(units).max() > top // 2, name
        assert np.abs(w - w0).max() <= math.ldexp(1.0, -e - 1), name
        if proj.operator is not None:
            u, e_min = kernel_units(proj.operator.kernel)  # the coarsest grid: the k-bit one or coarser
            assert e_min <= e and np.abs(u).max() <= top and np.array_equal(np.ldexp(u.astype(float), -e_min), w)
    # a real bound: each shared kernel moves by more than the 24-bit grid's half unit
    for name, proj in coarse.projections.items():
        if proj.operator is not None:
            moved = np.abs(proj.operator.kernel - plain.projections[name].operator.kernel).max()
            assert moved > math.ldexp(1.0, -fine.metadata["fixed_point"][name] - 1), name


@pytest.mark.parametrize("bad", [1, 25, 8.0, "8", True])
def test_weight_bits_must_be_an_integer_in_range(bad):
    with pytest.raises(ValidationError, match="weight_bits: must be an integer in 2..24"):
        ConversionConfig(weight_bits=bad)  # type: ignore[arg-type]


def test_cli_convert_weight_bits_and_a_file_round_trip(tmp_path, capsys):
    out = tmp_path / "net.h5"
    assert main(["convert", str(model_path("digits_mlp")), "-o", str(out), "--weight-bits", "8"]) == 0, capsys.readouterr().err
    snn = SpikingNetwork.load(out)
    assert snn.conversion["weight_bits"] == 8 and snn.metadata["weight_bits"] == 8
    for name, e in snn.metadata["fixed_point"].items():
        units = np.ldexp(snn.projections[name].weight, e)
        assert np.array_equal(units, np.rint(units)) and np.abs(units).max() <= 127
    assert main(["convert", str(model_path("digits_mlp")), "-o", str(tmp_path / "b.h5"), "--weight-bits", "40"]) != 0
    assert "weight_bits" in capsys.readouterr().err
