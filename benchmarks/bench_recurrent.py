"""Trained ReLU RNNs as recurrent spiking networks: accuracy per steps per element, Dale split, cost.

Models (``models/train_rnn.py``, shipped as spikebridge HDF5): ``seq_mnist_rnn`` and
``seq_fmnist_rnn`` (row-sequential MNIST / Fashion-MNIST: 28 elements of 28 pixels, 128 ReLU
units, read-out of the last element) and ``sines_rnn`` (next value of a noisy sum of three
sines: 32 elements, 64 units, read-out at every element).  Each is converted with the default
``ConversionConfig`` and ``steps_per_element`` K (the recurrent delay is one window of K steps,
``spikebridge/conversion/sequence.py``), calibrated on 1,000 training sequences, and simulated
with the tensor engine (numpy, one thread) on the test split.

Reported:

* classification accuracy of the SNN (decoded from the last window) next to the ANN's, and
  their agreement, at K = 4, 8, 16, 32, 64;
* the regression's error per element in % of the target range (SNN vs target, ANN vs target,
  SNN vs ANN) at each K;
* the Dale-split (``dale="relay"``) conversion against the plain one at K = 32;
* the tensor engine's time per sample at K = 32 next to the torch ANN forward pass on CPU;
* Brian2 (runtime, numpy target) against the tensor engine on a few samples: identical spikes.

Usage::

    python benchmarks/bench_recurrent.py [--samples 10000] [--ks 4 8 16 32 64] [--only mnist fmnist sines]
        [--data-dir /tmp/package/data] [--fashion-dir /usr/share/datasets/fashion-mnist]

Several neurons per hidden unit (``ConversionConfig.neurons_per_unit``, what seq-F-MNIST needs at
K = 32)::

    python benchmarks/bench_recurrent.py --only fmnist --neurons-per-unit 4 --ks 32 --no-extras \
        --out benchmarks/results/recurrent_fmnist_m4_whole_k32.json

``--engine-samples N`` runs the tensor engine on the first N sequences only, and ``--summed-model``
also evaluates every sequence with :func:`summed_copy_model` (numpy; reported with its agreement
with the engine on the sequences both ran).

Prints tables and writes ``benchmarks/results/recurrent.json`` (with the 1-minute load average
beside every time: timings taken on a shared machine are upper bounds).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

from spikebridge.config import ConversionConfig, SimulationConfig
from spikebridge.conversion.convert import convert
from spikebridge.ir import evaluate, load_graph
from spikebridge.run.simulate import simulate

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "recurrent.json"
MODELS = {"mnist": "seq_mnist_rnn", "fmnist": "seq_fmnist_rnn", "sines": "sines_rnn"}


def load(task: str, args: argparse.Namespace) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Calibration inputs, test inputs and test targets of a task."""
    if task == "sines":
        sys.path.insert(0, str(ROOT / "models"))
        from train_rnn import make_sines

        x_tr, _ = make_sines(8000, seed=1)
        x_te, y_te = make_sines(1000, seed=2)
        return x_tr[:1000], x_te[: args.samples], y_te[: args.samples]
    from spikebridge.datasets import load_idx_set

    name, folder = ("mnist", args.data_dir) if task == "mnist" else ("fashion-mnist", args.fashion_dir)
    x_tr, _ = load_idx_set(name, "train", folder)
    x_te, y_te = load_idx_set(name, "test", folder)
    return x_tr.reshape(-1, 28, 28)[:1000], x_te.reshape(-1, 28, 28)[: args.samples], y_te[: args.samples]


def run_snn(graph, x, x_cal, k: int, dale: str = "none", m: int = 1) -> tuple[np.ndarray, float, dict]:
    snn = convert(graph, ConversionConfig(steps_per_element=k, dale=dale, neurons_per_unit=m), calibration=x_cal)
    t0 = time.perf_counter()
    rec = simulate(snn, x, SimulationConfig(n_steps=graph.input_shape[0] * k, engine="tensor", threads=1,
                                            max_memory=2e9))
    elapsed = time.perf_counter() - t0
    info = {"neurons": snn.n_neurons, "synapses": snn.n_synapses, "populations": len(snn.populations),
            "neurons_per_unit": m}
    return rec.window_values(), elapsed, info


def summed_copy_model(snn, x: np.ndarray, batch: int = 2500) -> np.ndarray:
    """The last window's read-out of a converted one-RNN classifier, computed in numpy from the summed copies.

    The same arithmetic as the engines (current input, one-window recurrent delay, reset by
    subtraction, window floor or wrap, integrating read-out) except that the M copies of a unit
    share their recurrent drive as one product of the summed spikes (``M²`` fewer synaptic
    operations) and BLAS sums in its own order: last-bit differences may move a spike, so this
    is a model of the network, checked against the tensor engine on the samples both run.
    """
    hid = next(p for p in snn if p.role == "hidden")
    out = snn.populations[snn.output]
    m = int(snn.metadata.get("neurons_per_unit", 1))
    nu = hid.n // m
    dense = {p.name: p.to_dense(snn.populations[p.post].n, snn.populations[p.pre].n) for p in snn.projections.values()}
    w_in = dense[f"input_{hid.name}"][:nu]
    w_rec = dense[f"{hid.name}_recurrent"][:nu, :nu]  # W/M: every copy's spike carries 1/M
    w_out = dense[f"{hid.name}_{out.name}"][:, :nu]
    th, dt, k = float(hid.threshold), snn.dt, int(snn.readout["window_steps"])
    bias = np.broadcast_to(np.asarray(hid.bias, dtype=np.float64), (hid.n,))[:nu] * dt
    v0 = np.broadcast_to(np.asarray(hid.v_init, dtype=np.float64), (hid.n,)).reshape(m, nu)
    wrap = bool(hid.params.get("window_wrap"))
    floor = float(hid.params.get("window_floor") or 0.0)
    b_out = np.broadcast_to(np.asarray(out.bias, dtype=np.float64), (out.n,)) * dt
    res = []
    for s0 in range(0, len(x), batch):
        xb = x[s0:s0 + batch]
        cur = (xb / float(snn.encoding["scale"])) @ w_in.T + bias
        v = np.repeat(v0[None], len(xb), 0)
        ring = np.zeros((k, len(xb), nu))
        for t in range(xb.shape[1]):
            v = np.where(v < 0, v - th * np.floor(v / th), v) if wrap else np.maximum(v, floor)
            acc = np.zeros((len(xb), nu))
            for j in range(k):
                v += (cur[:, t] + ring[j] @ w_rec.T)[:, None, :]
                s = v >= th
                v -= th * s
                ring[j] = s.sum(1)
                acc += ring[j]
        res.append((acc @ w_out.T + k * b_out) * float(snn.readout["scale"]) / k)
    return np.concatenate(res)


def classification(task: str, graph, x, y, x_cal, args, rows: list[dict]) -> None:
    ann = evaluate(graph, x)
    ann_pred = ann.argmax(1)
    ann_acc = float(np.mean(ann_pred == y))
    print(f"\n{task}: ANN accuracy {100 * ann_acc:.2f} % on {len(y)} test sequences")
    print(f"{'K':>4} {'SNN %':>8} {'ANN-SNN':>8} {'agree %':>8} {'sim s':>8} {'ms/sample':>10} {'load1':>6}")
    m = args.neurons_per_unit
    n_eng = len(y) if args.engine_samples is None else min(args.engine_samples, len(y))
    for k in args.ks:
        out, secs, info = run_snn(graph, x[:n_eng], x_cal, k, m=m)
        pred = out[:, -1].argmax(1)
        ye, ae = y[:n_eng], ann_pred[:n_eng]
        row = {"task": task, "K": k, "dale": "none", "n": int(n_eng), "ann_accuracy": float(np.mean(ae == ye)),
               "snn_accuracy": float(np.mean(pred == ye)), "agreement": float(np.mean(pred == ae)),
               "sim_s": secs, "ms_per_sample": 1e3 * secs / n_eng, "load_1min": os.getloadavg()[0], **info}
        rows.append(row)
        print(f"{k:>4} {100 * row['snn_accuracy']:>8.2f} {100 * (row['ann_accuracy'] - row['snn_accuracy']):>8.2f} "
              f"{100 * row['agreement']:>8.2f} {secs:>8.1f} {row['ms_per_sample']:>10.2f} {row['load_1min']:>6.2f}"
              f"  (tensor engine, {n_eng} sequences, M={m})")
        if args.summed_model:
            snn = convert(graph, ConversionConfig(steps_per_element=k, neurons_per_unit=m), calibration=x_cal)
            t0 = time.perf_counter()
            mod = summed_copy_model(snn, x)
            mpred = mod.argmax(1)
            mrow = {"task": task, "K": k, "dale": "none", "n": int(len(y)), "engine": "summed-copy numpy model",
                    "neurons_per_unit": m, "ann_accuracy": ann_acc, "snn_accuracy": float(np.mean(mpred == y)),
                    "agreement": float(np.mean(mpred == ann_pred)),
                    "same_prediction_as_tensor_engine": float(np.mean(mpred[:n_eng] == pred)),
                    "max_abs_readout_diff_vs_tensor": float(np.max(np.abs(mod[:n_eng] - out[:, -1]))),
                    "model_s": time.perf_counter() - t0, "load_1min": os.getloadavg()[0]}
            rows.append(mrow)
            print(f"{k:>4} {100 * mrow['snn_accuracy']:>8.2f} {100 * (ann_acc - mrow['snn_accuracy']):>8.2f} "
                  f"{100 * mrow['agreement']:>8.2f}  (summed-copy model, {len(y)} sequences; same prediction as the "
                  f"engine on {100 * mrow['same_prediction_as_tensor_engine']:.2f} % of its {n_eng})")
    if task == "mnist" and args.dale:
        out, secs, info = run_snn(graph, x, x_cal, 32, dale="relay")
        pred = out[:, -1].argmax(1)
        plain = next(r for r in rows if r["task"] == task and r["K"] == 32 and r["dale"] == "none")
        row = {"task": task, "K": 32, "dale": "relay", "n": int(len(y)), "ann_accuracy": ann_acc,
               "snn_accuracy": float(np.mean(pred == y)), "agreement": float(np.mean(pred == ann_pred)),
               "plain_accuracy": plain["snn_accuracy"], "sim_s": secs, "ms_per_sample": 1e3 * secs / len(y),
               "load_1min": os.getloadavg()[0], **info}
        rows.append(row)
        print(f"Dale relay K=32: {100 * row['snn_accuracy']:.2f} % (plain {100 * plain['snn_accuracy']:.2f} %), "
              f"{info['neurons']} neurons, {info['synapses']} synapses per sample")


def regression(graph, x, y, x_cal, args, rows: list[dict]) -> None:
    ann = evaluate(graph, x)
    rng = float(y.max() - y.min())

    def pct(a, b):
        return 100 * float(np.sqrt(np.mean((a - b) ** 2))) / rng

    print(f"\nsines: target range {rng:.3f}; ANN RMSE {pct(ann, y):.2f} % of the range ({len(y)} sequences x "
          f"{y.shape[1]} elements)")
    print(f"{'K':>4} {'SNN-target %':>13} {'SNN-ANN %':>10} {'max|SNN-ANN| %':>15} {'sim s':>8} {'load1':>6}")
    for k in args.ks:
        out, secs, info = run_snn(graph, x, x_cal, k)
        row = {"task": "sines", "K": k, "dale": "none", "n": int(len(y)), "target_range": rng,
               "ann_rmse_pct_range": pct(ann, y), "snn_rmse_pct_range": pct(out, y), "snn_vs_ann_rmse_pct_range": pct(out, ann),
               "snn_vs_ann_max_pct_range": 100 * float(np.max(np.abs(out - ann))) / rng,
               "per_element_snn_vs_ann_rmse_pct": [100 * float(np.sqrt(np.mean((out[:, t] - ann[:, t]) ** 2))) / rng
                                                   for t in range(out.shape[1])],
               "sim_s": secs, "load_1min": os.getloadavg()[0], **info}
        rows.append(row)
        print(f"{k:>4} {row['snn_rmse_pct_range']:>13.2f} {row['snn_vs_ann_rmse_pct_range']:>10.2f} "
              f"{row['snn_vs_ann_max_pct_range']:>15.2f} {secs:>8.1f} {row['load_1min']:>6.2f}")


def cost(graph, x, x_cal, n: int = 1000) -> dict:
    """Tensor engine at K = 32 against the torch ANN forward pass (same samples, CPU, one thread)."""
    import torch

    sys.path.insert(0, str(ROOT / "models"))
    from train_rnn import SeqRNN

    torch.set_num_threads(1)
    x = x[:n]
    _, secs, _ = run_snn(graph, x, x_cal, 32)
    # the trained torch module again, from the shipped weights (the HDF5 holds b_ih + b_hh as one bias)
    rnn, fc = graph.layers[1], graph.layers[2]
    model = SeqRNN(rnn.n_in, rnn.hidden, fc.n_out).eval()
    with torch.no_grad():
        for p, v in ((model.rnn.weight_ih_l0, rnn.weight_ih), (model.rnn.weight_hh_l0, rnn.weight_hh),
                     (model.rnn.bias_ih_l0, rnn.bias), (model.rnn.bias_hh_l0, 0 * rnn.bias),
                     (model.fc.weight, fc.weight), (model.fc.bias, fc.bias)):
            p.copy_(torch.tensor(np.asarray(v), dtype=torch.float32))
    xt = torch.tensor(x, dtype=torch.float32)
    with torch.no_grad():
        model(xt[:10])
        t0 = time.perf_counter()
        for _ in range(5):
            model(xt)
        ann_s = (time.perf_counter() - t0) / 5
    row = {"n": n, "K": 32, "tensor_ms_per_sample": 1e3 * secs / n, "torch_ann_ms_per_sample": 1e3 * ann_s / n,
           "ratio": secs / ann_s, "load_1min": os.getloadavg()[0]}
    print(f"\ncost at K=32 ({n} samples, one thread): tensor engine {row['tensor_ms_per_sample']:.3f} ms/sample, "
          f"torch ANN {row['torch_ann_ms_per_sample']:.4f} ms/sample ({row['ratio']:.0f}x), load {row['load_1min']:.2f}")
    return row


def brian2_identity(graph, x, x_cal, n: int = 4, k: int = 8) -> dict:
    """Brian2 (runtime, numpy target) and the tensor engine on the same samples: every count equal."""
    snn = convert(graph, ConversionConfig(steps_per_element=k, dale="relay"), calibration=x_cal)
    steps = graph.input_shape[0] * k
    ten = simulate(snn, x[:n], SimulationConfig(n_steps=steps, engine="tensor"))
    t0 = time.perf_counter()
    b2 = simulate(snn, x[:n], SimulationConfig(n_steps=steps, engine="brian2", target="numpy"))
    same = all(np.array_equal(ten.counts[p], b2.counts[p]) for p in ten.counts) and np.array_equal(
        ten.output_counts_t, b2.output_counts_t)
    spikes = int(sum(c.sum() for c in ten.counts.values()))
    row = {"n": n, "K": k, "dale": "relay", "identical_counts": bool(same), "spikes": spikes,
           "max_abs_potential_diff": float(np.max(np.abs(ten.output_potential_t - b2.output_potential_t))),
           "brian2_s": time.perf_counter() - t0, "load_1min": os.getloadavg()[0]}
    print(f"\nBrian2 vs tensor ({n} samples, K={k}, Dale relay): identical counts {same} ({spikes} spikes), "
          f"max |potential diff| {row['max_abs_potential_diff']:.2e}")
    return row


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=10000)
    ap.add_argument("--ks", type=int, nargs="+", default=[4, 8, 16, 32, 64])
    ap.add_argument("--only", nargs="+", choices=sorted(MODELS), default=sorted(MODELS))
    ap.add_argument("--data-dir", default="/tmp/package/data")
    ap.add_argument("--fashion-dir", default="/usr/share/datasets/fashion-mnist")
    ap.add_argument("--no-dale", dest="dale", action="store_false")
    ap.add_argument("--neurons-per-unit", type=int, default=1,
                    help="ConversionConfig.neurons_per_unit of the classifiers (M neurons per hidden unit)")
    ap.add_argument("--engine-samples", type=int, default=None,
                    help="run the tensor engine on the first N test sequences only (default: all)")
    ap.add_argument("--summed-model", action="store_true",
                    help="also evaluate every test sequence with summed_copy_model (numpy), checked against the engine")
    ap.add_argument("--no-extras", dest="extras", action="store_false", help="skip the cost and Brian2 checks")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args(argv)
    rows: list[dict] = []
    extra: dict = {}
    t_start = time.perf_counter()
    for task in ("mnist", "fmnist", "sines"):
        if task not in args.only:
            continue
        graph = load_graph(ROOT / "models" / f"{MODELS[task]}.h5")
        x_cal, x, y = load(task, args)
        if task == "sines":
            regression(graph, x, y, x_cal, args, rows)
        else:
            classification(task, graph, x, y, x_cal, args, rows)
        if task == "mnist" and args.extras:
            extra["cost"] = cost(graph, x, x_cal)
            extra["brian2_identity"] = brian2_identity(graph, x, x_cal)
        # written after every task: a long run that is stopped keeps what it measured
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({
            "benchmark": "bench_recurrent", "engine": "tensor (numpy, 1 thread)", "samples": args.samples,
            "neurons_per_unit": args.neurons_per_unit, "argv": sys.argv[1:] if argv is None else argv,
            "platform": platform.platform(), "python": platform.python_version(), "cpu_count": os.cpu_count(),
            "note": "times taken on a shared, loaded machine (load_1min beside each)",
            "total_s": time.perf_counter() - t_start, "rows": rows, **extra}, indent=1) + "\n")
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
