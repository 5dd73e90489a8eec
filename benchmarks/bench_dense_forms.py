"""The dense forms of fixed-point convolutions, side by side in one process (results.md §0.2p).

A network converted with ``ConversionConfig(fixed_point=True)`` has convolutions whose sums are
exact in float32, so the tensor engine may run a block of such a convolution in three ways, all
with the same spikes (checked here, run by run, against the first row):

* ``float32 push``: the fused event push, never dense (``layered.DENSE32_ABOVE = 2``);
* ``float32 conv2d``: torch's float32 convolution above 10 % fired inputs (``arrays.INT8_DIGITS = False``);
* ``int8 digits``: oneDNN int8 digit convolutions above 5 % (:class:`~spikebridge.engines.tensor.arrays.DigitConv`,
  the default where the CPU has int8 dot products).

The forms alternate within each repeat (1 and 2 threads), so a slow stretch of the machine hits
all of them; each row is the median of ``--repeats`` with the 1-minute load before each run.

Run::

    python benchmarks/bench_dense_forms.py --case fmnist_vgg                  # 1,000 images, T=32
    python benchmarks/bench_dense_forms.py --case mnist_lenet --samples 500 --steps 128
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
sys.path.insert(0, str(HERE))

# (DENSE32_ABOVE, INT8_DIGITS) per form
FORMS = {"float32 push": (2.0, False), "float32 conv2d": (0.1, False), "int8 digits": (0.1, True)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--case", default="fmnist_vgg", help="a bench_accuracy case: fmnist_vgg, fmnist_resnet8, mnist_lenet")
    p.add_argument("--samples", type=int, default=1000)
    p.add_argument("--steps", type=int, default=32)
    p.add_argument("--threads", default="1,2", help="comma-separated thread counts")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", type=Path, default=None, help="JSON file (default results/dense_forms_<case>.json)")
    args = p.parse_args(argv)

    import spikebridge.engines.tensor.arrays as arrays
    import spikebridge.engines.tensor.layered as layered
    from bench_accuracy import load_case
    from spikebridge import ConversionConfig, SimulationConfig, simulate
    from spikebridge.conversion.convert import convert

    case = load_case(args.case)
    if case is None:
        return 0  # data missing: load_case said why
    graph, x_cal, x, _ = case
    shape = (-1,) + tuple(graph.input_shape)
    x = x[: args.samples].reshape(shape).astype(np.float32)
    snn = convert(graph, ConversionConfig(percentile=99.9, fixed_point=True),
                  calibration=x_cal[:500].reshape(shape).astype(np.float32))
    threads = [int(t) for t in args.threads.split(",")]
    simulate(snn, x[:8], SimulationConfig(n_steps=8, engine="tensor", threads=max(threads)))  # kernels, imports
    saved = layered.DENSE32_ABOVE, arrays.INT8_DIGITS
    runs: dict[str, list[tuple[float, float]]] = {}
    first = None
    try:
        for _ in range(args.repeats):
            for th in threads:
                for form, (above, digits) in FORMS.items():
                    layered.DENSE32_ABOVE, arrays.INT8_DIGITS = above, digits
                    load = os.getloadavg()[0]
                    t0 = time.perf_counter()
                    rec = simulate(snn, x, SimulationConfig(n_steps=args.steps, engine="tensor", threads=th, max_memory=2e9))
                    runs.setdefault(f"{form}, {th} thread{'s' if th > 1 else ''}", []).append((time.perf_counter() - t0, load))
                    if first is None:
                        first = rec
                    elif not all(np.array_equal(first.counts[k], rec.counts[k]) for k in rec.counts):
                        raise SystemExit(f"{form}: spike counts differ from the first run's")
    finally:
        layered.DENSE32_ABOVE, arrays.INT8_DIGITS = saved
    res = {k: {"median_s": statistics.median(t for t, _ in v), "runs_s_load": v} for k, v in runs.items()}
    print(f"{args.case}, {args.samples} samples, T={args.steps}, fixed-point; same spikes in every run")
    print(f"{'form':<34}{'median s':>10}   1-minute load before each run")
    for k, v in res.items():
        print(f"{k:<34}{v['median_s']:>10.3f}   {', '.join(f'{ld:.2f}' for _, ld in v['runs_s_load'])}")
    out = args.out or HERE / "results" / f"dense_forms_{args.case}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"case": args.case, "samples": args.samples, "steps": args.steps, "rows": res}, indent=1))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
