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

``--per-conv`` times each convolution alone instead (one thread, blocks of 4 steps × 64
samples of random spikes at fired fractions 0.02, 0.05, 0.1, 0.2, medians of 7 alternating
calls): µs per row of its int8 digits (:meth:`DigitConv.scan_if
<spikebridge.engines.tensor.arrays.DigitConv.scan_if>`, nearly independent of the fraction) and
of the float32 push (:func:`~spikebridge.engines.tensor.compiled.conv_if`), and the fraction
where they cross (the push's times interpolated linearly; "> 0.2" when the digits never win,
null in the JSON): the CPU's own value of ``layered.DIGITS_ABOVE``.

Run::

    python benchmarks/bench_dense_forms.py --case fmnist_vgg                  # 1,000 images, T=32
    python benchmarks/bench_dense_forms.py --case mnist_lenet --samples 500 --steps 128
    python benchmarks/bench_dense_forms.py --case fmnist_resnet8 --per-conv   # results.md §0.2s, ~10 s
"""

from __future__ import annotations

import argparse
import json
import math
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
    p.add_argument("--per-conv", action="store_true", help="time each convolution's two forms alone (see above)")
    p.add_argument("--out", type=Path, default=None,
                   help="JSON file (default results/dense_forms_<case>.json, dense_forms_per_conv_<case>.json)")
    args = p.parse_args(argv)
    if args.per_conv:
        return per_conv(args)

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


def crossing(fractions: tuple[float, ...], push_us: list[float], digits_us: float) -> float:
    """The fired fraction where the push's time per row (measured at ``fractions``, interpolated
    linearly) reaches the digits' ``digits_us``: 0.0 below the first fraction, inf above the last."""
    if push_us[0] >= digits_us:
        return 0.0
    for (f0, p0), (f1, p1) in zip(zip(fractions, push_us), zip(fractions[1:], push_us[1:])):
        if p1 >= digits_us:
            return f0 + (f1 - f0) * (digits_us - p0) / (p1 - p0)
    return math.inf


def fmt_crossing(cross: float, fractions: tuple[float, ...]) -> str:
    return f"< {fractions[0]}" if cross == 0.0 else f"> {fractions[-1]}" if math.isinf(cross) else f"{cross:.3f}"


def per_conv(args: argparse.Namespace) -> int:
    """``--per-conv``: each fixed-point convolution's int8 digits against its float32 push, alone, one thread."""
    import torch

    import spikebridge.engines.tensor.compiled as compiled
    from bench_accuracy import load_case
    from spikebridge import ConversionConfig
    from spikebridge.conversion.convert import convert
    from spikebridge.engines.tensor.arrays import DigitConv, SparseConv

    case = load_case(args.case)
    if case is None:
        return 0
    if not compiled.available():
        raise SystemExit("--per-conv needs the compiled kernels: pip install numba")
    graph, x_cal, _, _ = case
    shape = (-1,) + tuple(graph.input_shape)
    snn = convert(graph, ConversionConfig(percentile=99.9, fixed_point=True),
                  calibration=x_cal[:500].reshape(shape).astype(np.float32))
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    tb, r = 4, 64
    fractions = (0.02, 0.05, 0.1, 0.2)
    rows = []
    print(f"{args.case}, fixed-point, one thread, µs per row ({tb} steps × {r} samples per call), medians of 7")
    print(f"{'convolution':<32} {'digits':>4} {'int8':>7}  " + " ".join(f"{'push ' + str(f):>10}" for f in fractions) + f" {'crossover':>10}")
    for proj in snn.projections.values():
        op = proj.operator
        if op is None or op.groups != 1:
            continue
        sc = SparseConv(op)
        dc = sc.dense32
        if not isinstance(dc, DigitConv) or sc.wf32 is None:
            continue
        n_pre, n = int(np.prod(op.in_shape)), op.kernel.shape[0] * op.out_hw[0] * op.out_hw[1]
        link = ("conv", None, sc.wf32, op.in_shape, op.stride, op.padding, op.out_hw)

        def digits(x: np.ndarray) -> None:
            if not dc.scan_if(x.reshape(tb * r, -1), np.zeros((r, n)), 0.0, 1.0, np.empty((tb, r, n), bool)):
                raise SystemExit("DigitConv.scan_if declined")

        def push(x: np.ndarray) -> None:
            if not compiled.conv_if([link[:1] + (x,) + link[2:]], np.zeros((r, n)), 0.0, 1.0, np.empty((tb, r, n), bool)):
                raise SystemExit("compiled.conv_if declined")

        us_digits, us_push = [], []
        for f in fractions:
            x = rng.random((tb, r, n_pre)) < f
            digits(x)
            push(x)
            td, tp = [], []
            for _ in range(7):
                for fn, ts in ((digits, td), (push, tp)):
                    t0 = time.perf_counter()
                    fn(x)
                    ts.append(time.perf_counter() - t0)
            us_digits.append(1e6 * statistics.median(td) / (tb * r))
            us_push.append(1e6 * statistics.median(tp) / (tb * r))
        d = statistics.median(us_digits)
        cross = crossing(fractions, us_push, d)
        label = f"{proj.pre} -> {proj.post}"
        form = f"{dc.n_digits}{'p' if dc.paired else ''}"  # 1p: one convolution of paired inputs (16-bit weights)
        print(f"{label:<32} {form:>4} {d:>7.1f}  " + " ".join(f"{p:>10.1f}" for p in us_push) + f" {fmt_crossing(cross, fractions):>10}")
        rows.append({"conv": label, "digits": dc.n_digits, "paired": dc.paired, "int8_us_per_row": d, "push_us_per_row": dict(zip(map(str, fractions), us_push)),
                     "crossover": None if math.isinf(cross) else cross})
    out = args.out or HERE / "results" / f"dense_forms_per_conv_{args.case}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"case": args.case, "threads": 1, "rows_per_call": tb * r, "load_1min": os.getloadavg()[0], "convs": rows}, indent=1))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
