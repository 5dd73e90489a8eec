"""Low-latency conversion of the QCFS-trained MNIST LeNet: accuracy at T = 1 … 32 versus its ANNs.

The model is ``models/mnist_lenet_qcfs.h5`` (``models/train_qcfs.py``; QCFS activations, Bu et
al. 2022, stored as clipped ReLUs ``ReLU(max_value=λ)``).  It is converted with
``ConversionConfig()`` (the defaults: ``v_init=0.5``, the clip level λ as each layer's scale,
``scales="channel"`` elsewhere) plus any ``--set key=value`` overrides, simulated once for the
largest T (the tensor engine, or ``--engine reference``; identical spikes), and the prediction
after step T of that causal run is the prediction of a run of length T.

Columns: the QCFS network itself (L-level quantised activations, the network as trained), the
clipped-ReLU ANN (``spikebridge.evaluate`` on the .h5: what the SNN approaches for large T),
spikebridge's SNN at each T, and with ``--spikingjelly`` SpikingJelly's ann2snn on the same
weights (its converter replaces ``nn.ReLU`` only, so it gets plain ReLUs and its own 99.9 %
scaling, the clip levels cannot be passed to it): its classic layer-wise recipe, and with the
2.x ``RateCodingRecipe`` also channel-wise scales with a half-threshold start.

Usage::

    python benchmarks/bench_qcfs.py                                  # defaults, full MNIST test split
    python benchmarks/bench_qcfs.py --n-test 2000 --spikingjelly
    python benchmarks/bench_qcfs.py --delay 0                        # same-step delivery (once it exists)
    python benchmarks/bench_qcfs.py --set output=potential --set delay=0 --tag zero_delay_potential

Writes ``benchmarks/results/qcfs[_<tag>].json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from spikebridge import ConversionConfig, SimulationConfig
from spikebridge.engines.reference import simulate_reference
from spikebridge.run.simulate import simulate
from spikebridge.conversion.convert import convert
from spikebridge.datasets import load_mnist
from spikebridge.ir import AnnGraph, load_graph
from spikebridge.ir.evaluate import _FORWARD, evaluate
from spikebridge.ir.layers import Input, ReLU

MNIST_DIR = os.environ.get("MNIST_DIR", "/tmp/package/data")
#: issue 11 item 6: within this many points of the ANN at some T <= 8
TARGET_POINTS, TARGET_T = 0.3, 8


def quantised_forward(graph: AnnGraph, x: np.ndarray, levels: dict[str, int]) -> np.ndarray:
    """The QCFS network as trained: each clipped ReLU ``l`` with ``L = levels[l]`` quantised to
    ``λ/L · clip(floor(x L/λ + 1/2), 0, L)`` (a chain of layers, float64)."""
    a = np.asarray(x, dtype=np.float64).reshape((len(x), *graph.input_shape))
    for layer in graph.layers:
        if isinstance(layer, Input):
            continue
        if isinstance(layer, ReLU) and layer.max_value is not None and layer.name in levels:
            lam, n = layer.max_value, levels[layer.name]
            a = lam / n * np.clip(np.floor(a * n / lam + 0.5), 0, n)
        else:
            a = _FORWARD[type(layer)](layer, a)
    return a


def parse_overrides(pairs: list[str]) -> dict[str, Any]:
    """``key=value`` strings to ConversionConfig fields (numbers, None, true/false, or strings like ``1ms``)."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep:
            raise SystemExit(f"--set expects key=value, got {pair!r}")
        value: Any = text
        if text.lower() in ("none", "null"):
            value = None
        elif text.lower() in ("true", "false"):
            value = text.lower() == "true"
        else:
            try:
                value = int(text)
            except ValueError:
                try:
                    value = float(text)
                except ValueError:
                    value = text
        out[key.strip()] = value
    return out


def run_spikingjelly(graph: AnnGraph, x_cal: np.ndarray, x: np.ndarray, y: np.ndarray, steps: list[int],
                     batch: int = 500) -> dict[str, Any]:
    """SpikingJelly ann2snn on the same weights, plain ReLUs (its converter replaces only ``nn.ReLU``),
    99.9 % scaling: layer-wise (its classic recipe) and channel-wise with half-threshold start (the
    closest to spikebridge's defaults).  Accuracy per T for each."""
    try:
        import copy

        import spikingjelly
        import torch
        from bench_peers import sj_accuracy, sj_convert, torch_module
    except Exception as err:  # noqa: BLE001 - any import failure means "not installed here"
        return {"error": f"spikingjelly unavailable: {err}"}
    torch.set_num_threads(1)
    ann = torch_module(graph)  # clipped ReLUs become nn.ReLU: ann2snn converts only those
    shape = (-1,) + tuple(graph.input_shape)
    xc = torch.tensor(x_cal[:1000].reshape(shape), dtype=torch.float32)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(xc, torch.zeros(len(xc))), batch_size=250)
    out: dict[str, Any] = {"version": getattr(spikingjelly, "__version__", None) or _dist_version("spikingjelly"),
                           "activations": "nn.ReLU (unclipped; the clip levels cannot be passed)", "rows": {}}
    for variant in ("layer", "channel_half"):
        t0 = time.perf_counter()
        try:
            snn = sj_convert(copy.deepcopy(ann), loader, tuned=variant == "channel_half")
        except Exception as err:  # noqa: BLE001 - report what SpikingJelly cannot convert
            out["rows"][variant] = {"error": f"ann2snn failed: {type(err).__name__}: {err}"}
            continue
        out["rows"][variant] = {"accuracy": sj_accuracy(snn, x, y, shape, steps, batch),
                                "seconds": round(time.perf_counter() - t0, 1)}
    return out


def _dist_version(name: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=str(HERE.parent / "models" / "mnist_lenet_qcfs.h5"))
    ap.add_argument("--data-dir", default=MNIST_DIR)
    ap.add_argument("--steps", default="1,2,4,8,16,32")
    ap.add_argument("--n-test", type=int, default=None, help="first N test images (default: all 10,000)")
    ap.add_argument("--calibration-samples", type=int, default=2000, help="first N training images")
    ap.add_argument("--engine", choices=("tensor", "reference"), default="tensor")
    ap.add_argument("--batch", type=int, default=1000, help="samples per simulation batch")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="ConversionConfig override, repeatable (e.g. --set output=potential --set delay=0)")
    ap.add_argument("--delay", default=None, help="shortcut for --set delay=VALUE (seconds, or e.g. 0, 1ms)")
    ap.add_argument("--spikingjelly", action="store_true", help="add SpikingJelly ann2snn on the same weights")
    ap.add_argument("--tag", default=None, help="suffix of the result file name")
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    steps = sorted({int(s) for s in args.steps.split(",")})
    overrides = parse_overrides(args.set + ([f"delay={args.delay}"] if args.delay is not None else []))
    cfg = ConversionConfig.from_dict({**ConversionConfig().to_dict(), **overrides})

    graph = load_graph(args.model)
    levels = {str(k): int(v) for k, v in (graph.metadata.get("qcfs_levels") or {}).items()}
    x_tr, _ = load_mnist("train", args.data_dir)
    x, y = load_mnist("test", args.data_dir)
    if args.n_test:
        x, y = x[: args.n_test], y[: args.n_test]
    x_cal = x_tr[: args.calibration_samples]
    ann_acc = float(np.mean(evaluate(graph, x).argmax(1) == y))
    q_acc = float(np.mean(quantised_forward(graph, x, levels).argmax(1) == y)) if levels else None

    t0 = time.perf_counter()
    snn = convert(graph, cfg, calibration=x_cal)
    convert_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    hits = {T: 0 for T in steps}
    for start in range(0, len(x), args.batch):
        xb, yb = x[start : start + args.batch], y[start : start + args.batch]
        if args.engine == "tensor":
            rec = simulate(snn, xb, SimulationConfig(n_steps=max(steps), engine="tensor", batch_size=args.batch,
                                                     max_memory=4e9))
        else:
            rec = simulate_reference(snn, xb, max(steps))
        for T in steps:
            hits[T] += int(np.sum(rec.predictions(T - 1) == yb))
    sim_s = time.perf_counter() - t0
    snn_acc = {str(T): hits[T] / len(x) for T in steps}

    result: dict[str, Any] = {
        "model": Path(args.model).name,
        "n_test": len(x),
        "calibration_samples": len(x_cal),
        "engine": args.engine,
        "steps": steps,
        "config_overrides": overrides,
        "config": cfg.to_dict(),
        "qcfs_levels": levels,
        "clip_levels": snn.metadata.get("clip_levels", {}),
        "latency_steps": int(snn.readout["latency_steps"]),
        "populations": [p for p in snn.populations if p != snn.input],
        "ann_quantised_accuracy": q_acc,
        "ann_clipped_accuracy": ann_acc,
        "snn_accuracy": snn_acc,
        "convert_s": round(convert_s, 1),
        "simulate_s": round(sim_s, 1),
        "machine": platform.platform(),
        "note": "2-core machine shared with other jobs; wall times are indicative",
    }
    ref = q_acc if q_acc is not None else ann_acc
    best = max((snn_acc[str(T)] for T in steps if T <= TARGET_T), default=0.0)
    result["target"] = {"points": TARGET_POINTS, "max_T": TARGET_T, "reference": "quantised" if q_acc is not None else "clipped",
                        "best_at_or_below_T": best, "met": bool(100 * (ref - best) <= TARGET_POINTS + 1e-9)}
    if args.spikingjelly:
        result["spikingjelly"] = run_spikingjelly(graph, x_cal, x, y, steps)

    print(f"{result['model']}: {len(x)} MNIST test images, engine {args.engine}, latency {result['latency_steps']} steps, "
          f"overrides {overrides or 'none'}")
    print(f"ANN: QCFS (quantised, L={sorted(set(levels.values()))}) {100 * q_acc:.2f} %, " if q_acc is not None else "ANN: ",
          f"clipped ReLU {100 * ann_acc:.2f} %", sep="")
    head = "| row | " + " | ".join(f"T={T}" for T in steps) + " |"
    print(head)
    print("|---|" + "---:|" * len(steps))
    print("| spikebridge SNN | " + " | ".join(f"{100 * snn_acc[str(T)]:.2f}" for T in steps) + " |")
    sj = result.get("spikingjelly")
    labels = {"layer": "SpikingJelly ann2snn (99.9 %, layer)", "channel_half": "SpikingJelly (99.9 %, channel, half threshold)"}
    if sj is not None and "error" in sj:
        print(f"| SpikingJelly ann2snn | {sj['error']} |")
    for variant, row in (sj or {}).get("rows", {}).items():
        if "accuracy" in row:
            print(f"| {labels[variant]} | " + " | ".join(f"{100 * row['accuracy'][str(T)]:.2f}" for T in steps) + " |")
        else:
            print(f"| {labels[variant]} | {row['error']} |")
    print(f"target (within {TARGET_POINTS} points of the {result['target']['reference']} ANN at T <= {TARGET_T}): "
          f"{'met' if result['target']['met'] else 'not met'} (best {100 * best:.2f} %); "
          f"convert {result['convert_s']} s, simulate {result['simulate_s']} s")
    out = Path(args.out or HERE / "results" / f"qcfs{'_' + args.tag if args.tag else ''}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
