"""Accuracy versus time steps of plain, relay and pooled (Dale's law) conversions of the shipped models.

For each shipped model (``digits_mlp``, ``digits_cnn``) and each
``ConversionConfig.dale`` mode (``"none"``, ``"relay"``, ``"pooled"``), the
model is converted (calibrated on training digits), simulated on the digits
test split, and the classification accuracy after T steps is reported together
with the neurons and synapses each network needs, its read-out latency, the
pooled approximation error and whether it obeys Dale's principle.

Usage::

    python benchmarks/bench_dale.py [--engine brian2|reference] [--steps 200] [--samples 360]
                                    [--target auto] [--calibration 500]

``--engine brian2`` runs :func:`spikebridge.run.simulate.simulate` (the
real backend); ``--engine reference`` the numpy reference simulator of the
same discrete-time semantics (fast; same numbers up to float rounding).
Prints a table and writes ``benchmarks/results/dale.json``.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
import warnings
from pathlib import Path

import numpy as np

from spikebridge.config import ConversionConfig, SimulationConfig
from spikebridge.conversion.convert import convert
from spikebridge.conversion.dale import is_dale
from spikebridge.datasets import load_digits
from spikebridge.errors import ConversionWarning
from spikebridge.ir import evaluate
from spikebridge.models import load_shipped

RESULTS = Path(__file__).resolve().parent / "results" / "dale.json"
REPORT_STEPS = (10, 25, 50, 100, 200, 400)


def run_one(graph, mode: str, x, y, x_cal, args) -> dict:
    t = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConversionWarning)
        snn = convert(graph, ConversionConfig(dale=mode, seed=0), calibration=x_cal)
    t_conv = time.perf_counter() - t
    t = time.perf_counter()
    if args.engine == "brian2":
        from spikebridge.run.simulate import simulate

        rec = simulate(snn, x, SimulationConfig(n_steps=args.steps, target=args.target, seed=0), labels=y)
    else:
        from spikebridge.engines.reference import simulate_reference

        rec = simulate_reference(snn, x, args.steps, seed=0, labels=y)
    t_sim = time.perf_counter() - t
    acc = rec.accuracy_over_time(y)
    info = snn.metadata.get("dale", {})
    return {
        "mode": mode,
        "neurons": snn.n_neurons,
        "synapses": snn.n_synapses,
        "interneurons": sum(p.n for p in snn.populations.values() if p.role == "interneuron"),
        "latency_steps": int(snn.readout.get("latency_steps", 0)),
        "is_dale": is_dale(snn),
        "accuracy": {int(s): float(acc[s - 1]) for s in REPORT_STEPS if s <= args.steps},
        "accuracy_curve": acc.tolist(),
        "pooled_rel_error": {k: v["rel_error"] for k, v in info.get("projections", {}).items()} if mode == "pooled" else {},
        "warnings": [str(w.message) for w in caught],
        "convert_s": t_conv,
        "simulate_s": t_sim,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--engine", choices=["brian2", "reference"], default="brian2")
    ap.add_argument("--target", default="auto", help="Brian2 codegen target for --engine brian2")
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--samples", type=int, default=360, help="test samples (360 = the whole test split)")
    ap.add_argument("--calibration", type=int, default=500, help="training samples used for normalisation")
    ap.add_argument("--models", nargs="+", default=["digits_mlp", "digits_cnn"])
    args = ap.parse_args()

    results: dict = {"engine": args.engine, "target": args.target, "steps": args.steps, "machine": platform.platform(),
                     "models": {}}
    cols = [s for s in REPORT_STEPS if s <= args.steps]
    header = (f"{'model':<11} {'dale':<7} {'neurons':>7} {'synapses':>8} {'lat':>4} {'Dale':>5} "
              + " ".join(f"{'T=' + str(s):>6}" for s in cols) + f" {'sim s':>7}  pooled error")
    print(header)
    print("-" * len(header))
    for name in args.models:
        graph = load_shipped(name)
        x, y = load_digits("test")
        x_tr, _ = load_digits("train")
        x, y = x[: args.samples], y[: args.samples]
        x_cal = x_tr[: args.calibration]
        ann_acc = float(np.mean(np.argmax(np.asarray(evaluate(graph, x)).reshape(len(x), -1), axis=1) == y))
        rows = []
        for mode in ("none", "relay", "pooled"):
            r = run_one(graph, mode, x, y, x_cal, args)
            rows.append(r)
            err = ", ".join(f"{k} {v:.3f}" for k, v in r["pooled_rel_error"].items())
            print(f"{name:<11} {mode:<7} {r['neurons']:>7} {r['synapses']:>8} {r['latency_steps']:>4} "
                  f"{'yes' if r['is_dale'] else 'no':>5} " + " ".join(f"{r['accuracy'][s]:>6.3f}" for s in cols)
                  + f" {r['simulate_s']:>7.2f}  {err}")
        print(f"{name:<11} {'ANN':<7} accuracy {ann_acc:.3f}")
        results["models"][name] = {"ann_accuracy": ann_acc, "n_samples": len(x), "runs": rows}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=1))
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
