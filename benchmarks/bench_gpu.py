"""The tensor engine on a CUDA GPU: the LeNet and VGG-11 cases of bench_engine.py, samples per second.

Skips cleanly (one line, exit status 0) without torch or without a CUDA device.
MNIST as for bench_engine.py (``/tmp/package/data`` or ``--mnist DIR``); without
it the LeNet case is skipped and VGG-11 (random inputs) still runs.

Run::

    python benchmarks/bench_gpu.py [--device cuda:0] [--lenet-samples 1000] [--vgg-samples 256]

Writes ``benchmarks/results/gpu.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cuda")
    p.add_argument("--mnist", help="directory with the MNIST IDX files")
    p.add_argument("--lenet-samples", dest="lenet_samples", type=int, default=1000)
    p.add_argument("--vgg-samples", dest="vgg_samples", type=int, default=256)
    p.add_argument("--max-memory", dest="max_memory", type=float, default=20e9, help="bytes per batch on the GPU")
    p.add_argument("--out", default=str(HERE / "results" / "gpu.json"))
    args = p.parse_args(argv)
    try:
        import torch
    except ImportError:
        print("bench_gpu: torch is not installed; skipped")
        return 0
    if not torch.cuda.is_available():
        print("bench_gpu: no CUDA device (torch.cuda.is_available() is False); skipped")
        return 0

    import numpy as np

    from bench_engine import load_mnist, synaptic_events, train_lenet, vgg11_module
    from spikebridge import ConversionConfig, SimulationConfig
    from spikebridge.run.simulate import simulate
    from spikebridge.conversion.convert import convert
    from spikebridge.importers.from_torch import from_torch

    result: dict = {"device": torch.cuda.get_device_name(torch.device(args.device))}
    cases = []
    data = load_mnist(Path(args.mnist) if args.mnist else None)
    if data is None:
        print("lenet: MNIST not found; skipped")
    else:
        xtr, ytr, xte, yte = data
        model = train_lenet(xtr.reshape(-1, 1, 28, 28).astype(np.float32), ytr)
        snn = convert(from_torch(model, input_shape=(1, 28, 28)), ConversionConfig(), calibration=xtr[:1000].reshape(-1, 1, 28, 28))
        x, y = xte[: args.lenet_samples].reshape(-1, 1, 28, 28), yte[: args.lenet_samples]
        cases.append(("lenet", snn, x, y, 128))
    vgg = from_torch(vgg11_module(), input_shape=(3, 32, 32))
    rng = np.random.default_rng(0)
    cal = rng.uniform(0, 1, size=(64, 3, 8, 8)).repeat(4, axis=2).repeat(4, axis=3)
    xv = rng.uniform(0, 1, size=(args.vgg_samples, 3, 8, 8)).repeat(4, axis=2).repeat(4, axis=3)
    cases.append(("vgg11", convert(vgg, ConversionConfig(), calibration=cal), xv, None, 32))

    print(f"{'case':<8} {'samples':>8} {'T':>5} {'s':>8} {'samples/s':>10} {'events/s':>10} {'accuracy %':>10}")
    for name, snn, x, y, steps in cases:
        cfg = SimulationConfig(n_steps=steps, engine="tensor", device=args.device, max_memory=args.max_memory)
        simulate(snn, x[:2], SimulationConfig(n_steps=2, engine="tensor", device=args.device))  # CUDA context, kernels
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        rec = simulate(snn, x, cfg)
        torch.cuda.synchronize()
        run_s = time.perf_counter() - t0
        ev = synaptic_events(snn, rec)
        acc = float(np.mean(rec.predictions() == y)) if y is not None else None
        result[name] = {"samples": len(x), "steps": steps, "run_s": run_s, "samples_per_s": len(x) / run_s,
                        "events_per_s": ev / run_s, "accuracy": acc, "batch_size": rec.meta["batch_size"],
                        "peak_gpu_bytes": int(torch.cuda.max_memory_allocated())}
        acc_s = f"{100 * acc:.2f}" if acc is not None else "-"
        print(f"{name:<8} {len(x):>8} {steps:>5} {run_s:>8.2f} {len(x) / run_s:>10.1f} {ev / run_s:>10.3g} {acc_s:>10}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
