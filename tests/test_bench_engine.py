"""How ``benchmarks/bench_engine.py`` times its rows: back to back, or interleaved in rounds with
per-round ratios to SpikingJelly (docs/results.md §0.2u quotes them)."""

from __future__ import annotations

import argparse
import importlib.util
import os
from pathlib import Path

import numpy as np
import pytest

from spikebridge import ConversionConfig, convert

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_engine.py"


@pytest.fixture(scope="module")
def bench():
    saved = dict(os.environ)  # the script sets BLAS thread variables for itself at import
    try:
        spec = importlib.util.spec_from_file_location("bench_engine", SCRIPT)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
    finally:
        os.environ.clear()
        os.environ.update(saved)
    mod.SETTLE["below"] = 0.0  # no waiting for the load in tests
    # run_engine compiles every kernel form before timing (10 s); these networks need few of them
    import spikebridge.engines.tensor.compiled as compiled

    forms = compiled.FORMS
    compiled.FORMS = ()
    try:
        yield mod
    finally:
        compiled.FORMS = forms


def _runs(calls: list, names: str) -> dict:
    def run(name: str):
        calls.append(name)
        return f"{name}{calls.count(name)}"

    return {n: (lambda n=n: run(n)) for n in names}


def test_rows_back_to_back_without_interleave(bench):
    calls: list = []
    res = bench.take(_runs(calls, "abc"), 3, interleave=False)
    assert "".join(calls) == "aaabbbccc"
    assert all(len(res[n][k]) == 3 for n in "abc" for k in ("times_s", "cpu_s", "system_s", "minor_faults", "load_before"))
    assert [res[n]["out"] for n in "abc"] == ["a3", "b3", "c3"]  # the last repeat's result


def test_interleaved_rounds_rotate_the_order(bench):
    calls: list = []
    res = bench.take(_runs(calls, "abc"), 4, interleave=True)
    # one repeat of each row per round; each row leads one round in turn, so none always runs
    # right after another's load
    assert "".join(calls) == "abc" + "bca" + "cab" + "abc"
    assert all(len(res[n]["times_s"]) == 4 for n in "abc")
    assert all(t >= 0 for n in "abc" for t in res[n]["times_s"])


def test_interleaved_rows_carry_per_round_ratios_and_every_repeats_load(bench, tiny_mlp):
    graph = tiny_mlp()
    x = np.random.default_rng(0).random((6, 6)).astype(np.float32)
    y = np.zeros(6, dtype=int)
    snn = convert(graph, ConversionConfig(percentile=99.9), calibration=x)
    sj = {"run": lambda: np.zeros(6, dtype=int), "convert_s": 0.0, "batch": 6}
    args = argparse.Namespace(variants=["layer-major", "layer-major, 8-bit weights"], threads=1, phases=False,
                              repeats=3, interleave=True)
    nets = bench.variant_nets(graph, x, args.variants)
    rows = bench.tensor_rows(snn, x, y, 4, args, sj_job=sj, nets=nets)
    sj_row = rows[bench.SJ_LABEL]
    assert sj_row["accuracy"] == 1.0 and "ratio_to_spikingjelly_per_round" not in sj_row
    for label in ("tensor engine (tensor-numpy, layer-major)", "tensor engine (tensor-numpy, layer-major, 8-bit weights)"):
        ours = rows[label]
        # each ratio is over the same round's SpikingJelly repeat, not over its median
        expect = [t / s for t, s in zip(ours["times_s"], sj_row["times_s"])]
        assert len(expect) == 3 and ours["ratio_to_spikingjelly_per_round"] == expect
        assert ours["median_ratio_to_spikingjelly"] == sorted(expect)[1]
        assert len(ours["load_1min"]["before_each"]) == 3
        assert ours["load_1min"]["max_before_a_repeat"] == max(ours["load_1min"]["before_each"])
    k_bit = rows["tensor engine (tensor-numpy, layer-major, 8-bit weights)"]
    exact = rows.pop("_rec")
    assert k_bit["spikes_float64"] == sum(int(c.sum()) for c in exact.counts.values())
    assert 0.0 <= k_bit["same_predictions_as_float64"] <= 1.0


def test_without_interleave_rows_have_no_per_round_ratio(bench, tiny_mlp):
    graph = tiny_mlp()
    x = np.random.default_rng(1).random((4, 6)).astype(np.float32)
    snn = convert(graph, ConversionConfig(percentile=99.9), calibration=x)
    sj = {"run": lambda: np.zeros(4, dtype=int), "convert_s": 0.0, "batch": 4}
    args = argparse.Namespace(variants=["layer-major"], threads=1, phases=True, repeats=2, interleave=False)
    rows = bench.tensor_rows(snn, x, np.zeros(4, dtype=int), 4, args, sj_job=sj)
    ours = rows["tensor engine (tensor-numpy, layer-major)"]
    assert "median_ratio_to_spikingjelly" not in ours and len(ours["times_s"]) == 2
    assert set(ours["cpu_s_by_phase"]) >= {"products", "scan"}


def test_missing_spikingjelly_is_one_error_row(bench, tiny_mlp):
    graph = tiny_mlp()
    x = np.random.default_rng(2).random((4, 6)).astype(np.float32)
    snn = convert(graph, ConversionConfig(percentile=99.9), calibration=x)
    args = argparse.Namespace(variants=["layer-major"], threads=1, phases=False, repeats=1, interleave=True)
    rows = bench.tensor_rows(snn, x, np.zeros(4, dtype=int), 4, args, sj_job={"error": "spikingjelly unavailable: x"})
    assert rows[bench.SJ_LABEL] == {"error": "spikingjelly unavailable: x"}
    assert "median_ratio_to_spikingjelly" not in rows["tensor engine (tensor-numpy, layer-major)"]
