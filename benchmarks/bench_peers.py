"""Peers side by side: spikebridge (Brian2 and numpy reference) versus SpikingJelly's ann2snn.

Same trained model (the shipped digits MLP or CNN), same calibration data,
same test split, same number of time steps T.  Prints a table and writes
``benchmarks/results/peers.json``.

SpikingJelly is optional: ``pip install --no-deps spikingjelly loguru requests``
(2.x or 0.0.0.0.14: :func:`sj_convert` handles both APIs) installs it beside torch 2.13 (its own dependency list would pull a CUDA build
of torch; ann2snn needs only torch).  Without it, the SpikingJelly rows are
skipped and the table says so.

Run::

    python benchmarks/bench_peers.py [--model digits_mlp] [--steps 32 128] [--target cython]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from spikebridge import ConversionConfig, SimulationConfig, evaluate  # noqa: E402
from spikebridge.run.simulate import simulate  # noqa: E402
from spikebridge.conversion.convert import convert  # noqa: E402
from spikebridge.datasets import load_digits  # noqa: E402
from spikebridge.models import load_shipped  # noqa: E402


def torch_module(graph):
    """Rebuild the shipped AnnGraph as a torch module with the same weights (float32)."""
    import torch
    from torch import nn

    from spikebridge.ir import AvgPool2d, Conv2d, Dense, Flatten, MaxPool2d, ReLU

    mods = []
    for layer in graph:
        if isinstance(layer, Dense):
            m = nn.Linear(layer.n_in, layer.n_out)
            m.weight.data = torch.tensor(layer.weight, dtype=torch.float32)
            m.bias.data = torch.tensor(layer.bias, dtype=torch.float32)
        elif isinstance(layer, Conv2d):
            o, i, kh, kw = layer.weight.shape
            m = nn.Conv2d(i, o, (kh, kw), stride=layer.stride, padding=layer.padding)
            m.weight.data = torch.tensor(layer.weight, dtype=torch.float32)
            m.bias.data = torch.tensor(layer.bias, dtype=torch.float32)
        elif isinstance(layer, AvgPool2d):
            m = nn.AvgPool2d(layer.kernel_size, layer.stride, layer.padding)
        elif isinstance(layer, MaxPool2d):
            m = nn.MaxPool2d(layer.kernel_size, layer.stride, layer.padding)
        elif isinstance(layer, ReLU):
            m = nn.ReLU()
        elif isinstance(layer, Flatten):
            m = nn.Flatten()
        else:
            continue
        mods.append(m)
    return nn.Sequential(*mods).eval()


def sj_convert(ann, loader, *, tuned: bool = False):
    """SpikingJelly's ann2snn with 99.9 % scaling, in its 0.0.0.0.14 or 2.x API (every benchmark uses this).

    ``tuned`` (2.x only): its channel-wise scales and half-threshold start, the counterparts of our
    ``scales="channel"`` and ``v_init=0.5``.
    """
    from spikingjelly.activation_based import ann2snn

    if hasattr(ann2snn, "RateCodingRecipe"):  # 2.x: FXConverter + a recipe
        recipe = ann2snn.RateCodingRecipe(dataloader=loader, mode="99.9%", channel_wise=tuned, half_threshold=tuned)
        return ann2snn.FXConverter(recipe=recipe, device="cpu").convert(ann)
    if tuned:
        raise RuntimeError("channel-wise / half-threshold conversion needs spikingjelly >= 2.0")
    return ann2snn.Converter(mode="99.9%", dataloader=loader)(ann)


def sj_accuracy(snn, x, y, shape, steps, batch: int = 500) -> dict[str, float]:
    """Accuracy per T of a converted SpikingJelly network: outputs summed over the steps, batch by batch."""
    import torch
    from spikingjelly.activation_based import functional

    preds: dict[int, list] = {}
    for start in range(0, len(x), batch):
        functional.reset_net(snn)
        xt = torch.tensor(x[start : start + batch].reshape(shape), dtype=torch.float32)
        acc = 0
        with torch.no_grad():
            for t in range(1, max(steps) + 1):
                acc = acc + snn(xt)
                if t in steps:
                    preds.setdefault(t, []).append(acc.argmax(1).numpy())
    return {str(T): float(np.mean(np.concatenate(preds[T]) == y)) for T in steps}


def run_spikingjelly(graph, x_cal, x, y, steps, repeats):
    try:
        import torch
        from spikingjelly.activation_based import functional
    except Exception as err:  # noqa: BLE001 - any import failure means "not installed here"
        return {"error": f"spikingjelly unavailable: {err}"}
    torch.set_num_threads(os.cpu_count() or 1)
    ann = torch_module(graph)
    shape = (-1,) + tuple(graph.input_shape)
    xc = torch.tensor(x_cal.reshape(shape), dtype=torch.float32)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(xc, torch.zeros(len(xc))), batch_size=256)
    t0 = time.perf_counter()
    snn = sj_convert(ann, loader)
    convert_s = time.perf_counter() - t0
    xt = torch.tensor(x.reshape(shape), dtype=torch.float32)
    out = {"convert_s": convert_s}
    for T in steps:
        times = []
        for _ in range(repeats):
            functional.reset_net(snn)
            t0 = time.perf_counter()
            with torch.no_grad():
                acc = 0
                for _t in range(T):
                    acc = acc + snn(xt)
            times.append(time.perf_counter() - t0)
        pred = acc.argmax(1).numpy()
        out[str(T)] = {"accuracy": float(np.mean(pred == y)), "median_s": statistics.median(times)}
    return out


def run_ours(graph, x_cal, x, y, steps, repeats, target):
    from spikebridge.engines.reference import simulate_reference

    t0 = time.perf_counter()
    snn = convert(graph, ConversionConfig(v_init=0.5, percentile=100.0), calibration=x_cal)
    convert_s = time.perf_counter() - t0
    out = {"convert_s": convert_s, "brian2": {}, "reference": {}}
    for T in steps:
        cfg = SimulationConfig(n_steps=T, target=target, seed=0)
        simulate(snn, x[:8], cfg)  # warm the code-generation cache outside the timing
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            rec = simulate(snn, x, cfg)
            times.append(time.perf_counter() - t0)
        out["brian2"][str(T)] = {"accuracy": float(np.mean(rec.predictions() == y)), "median_s": statistics.median(times)}
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            rec = simulate_reference(snn, x, T)
            times.append(time.perf_counter() - t0)
        out["reference"][str(T)] = {"accuracy": float(np.mean(rec.predictions() == y)), "median_s": statistics.median(times)}
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="digits_mlp", choices=["digits_mlp", "digits_cnn"])
    p.add_argument("--steps", type=int, nargs="+", default=[32, 128])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--target", default="cython", choices=["numpy", "cython", "cpp_standalone"])
    p.add_argument("--out", default=str(HERE / "results" / "peers.json"))
    args = p.parse_args(argv)

    graph = load_shipped(args.model)
    x_cal, _ = load_digits("train")
    x, y = load_digits("test")
    ann_acc = float(np.mean(np.argmax(evaluate(graph, x), axis=1) == y))
    sj = run_spikingjelly(graph, x_cal, x, y, args.steps, args.repeats)
    ours = run_ours(graph, x_cal, x, y, args.steps, args.repeats, args.target)

    print(f"model {args.model}, {len(x)} test samples, ANN accuracy {100 * ann_acc:.2f} %, {os.cpu_count()} cores")
    header = f"{'T':>5}  {'tool':<28} {'accuracy %':>10} {'median s':>9} {'vs SpikingJelly':>15}"
    print(header)
    print("-" * len(header))
    for T in args.steps:
        key = str(T)
        sj_t = sj.get(key, {}).get("median_s") if isinstance(sj.get(key), dict) else None
        rows = [
            ("SpikingJelly ann2snn (torch)", sj.get(key)),
            (f"spikebridge Brian2 {args.target}", ours["brian2"][key]),
            ("spikebridge numpy reference", ours["reference"][key]),
        ]
        for name, r in rows:
            if not r:
                print(f"{T:>5}  {name:<28} {'n/a':>10} {'n/a':>9} {sj.get('error', '')[:40]:>15}")
                continue
            ratio = f"{r['median_s'] / sj_t:.1f}x" if sj_t else "n/a"
            print(f"{T:>5}  {name:<28} {100 * r['accuracy']:>10.2f} {r['median_s']:>9.3f} {ratio:>15}")
    result = {"model": args.model, "n_test": int(len(x)), "ann_accuracy": ann_acc, "cores": os.cpu_count(), "target": args.target, "spikingjelly": sj, "spikebridge": ours}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
