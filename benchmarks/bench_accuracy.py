"""Accuracy of the converted shipped digits models versus simulated time steps.

For the shipped MLP and CNN, converts with data-based normalisation on the
digits training split and simulates the whole test split once for the
largest T; because the simulation is causal, the prediction after step T of
that run is exactly the prediction of a run of length T, so one run gives
every T in ``--steps``.  Prints SNN accuracy next to the ANN accuracy, the
agreement with the ANN's predictions, and writes
``benchmarks/results/accuracy.json``.

Two conversion settings are measured: the defaults (IF, reset by subtraction,
percentile 99.9, v_init 0) and the tuned one (half-threshold start
``v_init=0.5``, ``percentile=100``).

Usage::

    python benchmarks/bench_accuracy.py [--simulator brian2|reference] [--target cython]
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np

from spikebridge.backend.reference import simulate_reference
from spikebridge.config import ConversionConfig, SimulationConfig
from spikebridge.conversion.convert import convert
from spikebridge.datasets import load_digits
from spikebridge.ir.evaluate import evaluate
from spikebridge.models import load_shipped

SETTINGS = {
    "default": ConversionConfig(),
    "tuned": ConversionConfig(v_init=0.5, percentile=100.0),
}
TARGETS = {"digits_mlp": {32: 0.005, 128: 0.0}, "digits_cnn": {64: 0.01}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--simulator", choices=("brian2", "reference"), default="brian2")
    ap.add_argument("--target", default="auto", help="Brian2 code-generation target")
    ap.add_argument("--steps", default="8,16,32,64,128,256")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "accuracy.json"))
    args = ap.parse_args()
    steps = [int(s) for s in args.steps.split(",")]
    x_train, _ = load_digits("train")
    x, y = load_digits("test")
    results: dict = {
        "simulator": args.simulator,
        "target": args.target,
        "n_test": int(len(y)),
        "steps": steps,
        "machine": platform.platform(),
        "models": {},
    }
    for name in ("digits_mlp", "digits_cnn"):
        g = load_shipped(name)
        ann_pred = evaluate(g, x).argmax(1)
        ann_acc = float(np.mean(ann_pred == y))
        entry: dict = {"ann_accuracy": ann_acc, "settings": {}}
        for label, cfg in SETTINGS.items():
            snn = convert(g, cfg, calibration=x_train)
            t0 = time.perf_counter()
            if args.simulator == "brian2":
                from spikebridge.backend.runner import simulate

                rec = simulate(snn, x, SimulationConfig(n_steps=max(steps), target=args.target))
            else:
                rec = simulate_reference(snn, x, max(steps))
            wall = time.perf_counter() - t0
            acc = rec.accuracy_over_time(y)
            rows = {}
            for T in steps:
                pred = rec.predictions(T - 1)
                rows[str(T)] = {"accuracy": float(acc[T - 1]), "agreement": float(np.mean(pred == ann_pred))}
            entry["settings"][label] = {
                "config": cfg.to_dict(),
                "latency_steps": snn.readout["latency_steps"],
                "by_steps": rows,
                "wall_s": wall,
                "target": rec.meta.get("target"),
                "targets_met": {
                    str(T): bool(rows[str(T)]["accuracy"] >= ann_acc - tol - 1e-9) for T, tol in TARGETS[name].items()
                },
            }
        results["models"][name] = entry

    print(f"Accuracy on the digits test split ({len(y)} samples), simulator={args.simulator}")
    head = f"{'model':<11} {'setting':<8} {'ANN':>6} " + " ".join(f"{'T=' + str(T):>12}" for T in steps)
    print(head)
    print("-" * len(head))
    for name, entry in results["models"].items():
        for label, res in entry["settings"].items():
            cells = " ".join(
                f"{100 * res['by_steps'][str(T)]['accuracy']:6.2f} ({100 * res['by_steps'][str(T)]['agreement']:3.0f})"
                for T in steps
            )
            print(f"{name:<11} {label:<8} {100 * entry['ann_accuracy']:6.2f} {cells}")
    print("cells: SNN accuracy % (agreement with the ANN's predictions %)")
    for name, entry in results["models"].items():
        for label, res in entry["settings"].items():
            print(f"targets {name} {label}: {res['targets_met']}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
