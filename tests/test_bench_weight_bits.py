"""The paired statistics of ``benchmarks/bench_weight_bits.py`` (docs/conversion.md#k-bit-weights quotes them)."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import numpy as np
import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_weight_bits.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_weight_bits", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_mcnemar_exact_against_hand_computed_binomial_tails(bench):
    assert bench.mcnemar_exact(0, 0) == 1.0
    assert bench.mcnemar_exact(0, 1) == 1.0  # 2 · 1/2, capped
    assert bench.mcnemar_exact(0, 6) == 2 / 64
    assert bench.mcnemar_exact(9, 1) == 2 * (1 + 10) / 1024  # symmetric in b and c
    assert bench.mcnemar_exact(5, 5) == 1.0
    # the figures of the table: ResNet-8 at 8 bits (59 against 86) and VGG at 6 bits
    assert bench.mcnemar_exact(59, 86) == pytest.approx(0.0305, abs=5e-4)
    assert bench.mcnemar_exact(296, 149) < 1e-3


def test_paired_difference_interval_and_discordant_counts(bench):
    ref = np.array([True] * 90 + [False] * 10)
    other = ref.copy()
    other[:3] = False  # three only the reference gets right
    other[90:97] = True  # seven only the other gets right
    r = bench.paired(ref, other)
    assert (r["only_reference_right"], r["only_other_right"]) == (3, 7)
    assert r["diff"] == pytest.approx(0.04)
    se = math.sqrt(10 - 16 / 100) / 100
    assert r["ci95"] == pytest.approx([0.04 - 1.96 * se, 0.04 + 1.96 * se])
    assert r["mcnemar_p"] == pytest.approx(2 * (1 + 10 + 45 + 120) / 1024)


def test_settings_are_checked(bench):
    assert bench.setting_config("float64") == {}
    assert bench.setting_config("fixed") == {"fixed_point": True}
    assert bench.setting_config("8") == {"weight_bits": 8}
    with pytest.raises(SystemExit, match="not float64, fixed or a number"):
        bench.setting_config("eight")


@pytest.mark.parametrize(("argv", "message"), [
    (["--settings", "float64,40"], "--settings: '40': ConversionConfig.weight_bits: must be an integer in 2..24, got 40"),
    (["--samples", "-3"], "--samples: -3 is negative"),
    (["--cases", "cifar"], "--cases: unknown cifar; choose from mnist_lenet, fmnist_vgg, fmnist_resnet8"),
])
def test_bad_arguments_stop_with_one_line_before_any_run(bench, tmp_path, argv, message):
    out = tmp_path / "r.json"
    with pytest.raises(SystemExit) as err:
        bench.main([*argv, "--out", str(out)])
    assert str(err.value).startswith(message) and "\n" not in str(err.value)
    assert not out.exists()  # nothing run, nothing written
