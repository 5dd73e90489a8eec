"""Pick a latency/accuracy trade-off: sweep the normalisation percentile and the number of steps T.

What it shows
-------------
A rate-coded SNN needs time to average: with few time steps ``T`` each
neuron can only express activations in units of ``λ_l / T``, so accuracy
grows with ``T``.  The normalisation percentile decides ``λ_l``: the maximum
(100) never saturates but makes typical rates low (slow); lower percentiles
raise the rates (fast) but clip the largest activations.  The initial
membrane potential (``v_init=0.5``, half threshold) removes a systematic
under-count and cuts latency further.

For the shipped digits MLP this script

1. converts it once per (percentile, v_init),
2. simulates the test split for the largest T once with the fast numpy
   reference simulator (:func:`spikebridge.engines.reference.simulate_reference`,
   the exact discrete-time semantics of the Brian2 backend) and reads the
   accuracy after every T from the same run (the first T steps of a long run
   *are* a run of length T),
3. prints the accuracy table, picks the fastest point within ``--tolerance``
   of the ANN's accuracy, and
4. confirms that point in Brian2 (:func:`spikebridge.run.simulate.simulate`).

Run it
------
::

    python examples/sweep_latency.py            # full test split, T = 8..128
    python examples/sweep_latency.py --quick    # 120 images, T = 8..64, Brian2 check on 40 (CI)
    python examples/sweep_latency.py --model digits_cnn --tolerance 0.02
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from spikebridge import ConversionConfig, SimulationConfig, evaluate
from spikebridge.engines.reference import simulate_reference
from spikebridge.run.simulate import simulate
from spikebridge.conversion.convert import convert
from spikebridge.datasets import load_digits
from spikebridge.models import load_shipped


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
        help="small run for CI: 120 images, T up to 64, Brian2 check on 40 images"
    )
    parser.add_argument("--model", default="digits_mlp", choices=["digits_mlp", "digits_cnn"], help="shipped model")
    parser.add_argument("--percentiles", default="99,99.9,99.99,100",
        help="comma-separated percentiles (default 99,99.9,99.99,100)"
    )
    parser.add_argument("--steps", default=None,
        help="comma-separated T values (default 8,16,32,64,128; up to 64 with --quick)"
    )
    parser.add_argument("--limit", type=int, default=None,
        help="test images in the sweep (default all 360, 120 with --quick)"
    )
    parser.add_argument("--check-limit", type=int, default=None,
        help="test images in the Brian2 check (default all, 40 with --quick)"
    )
    parser.add_argument("--tolerance", type=float, default=0.01,
        help="allowed accuracy loss vs the ANN for the chosen point (default 0.01)"
    )
    parser.add_argument("--target", default=None, help="Brian2 target for the check (default auto, numpy with --quick)")
    args = parser.parse_args(argv)
    percentiles = [float(p) for p in args.percentiles.split(",")]
    steps = [int(t) for t in (args.steps or ("8,16,32,64" if args.quick else "8,16,32,64,128")).split(",")]
    limit = args.limit or (120 if args.quick else None)
    check_limit = args.check_limit or (40 if args.quick else None)
    target = args.target or ("numpy" if args.quick else "auto")
    v_inits = (0.5,) if args.quick else (0.0, 0.5)

    graph = load_shipped(args.model)
    x_cal, _ = load_digits("train")
    x, y = load_digits("test")
    if limit:
        x, y = x[:limit], y[:limit]
    ann_acc = float(np.mean(np.argmax(evaluate(graph, x).reshape(len(x), -1), axis=1) == y))
    t_max = max(steps)

    rows = []
    t0 = time.perf_counter()
    for v_init in v_inits:
        for p in percentiles:
            snn = convert(graph, ConversionConfig(percentile=p, v_init=v_init), calibration=x_cal[:500])
            rec = simulate_reference(snn, x, t_max, labels=y)
            acc_t = rec.accuracy_over_time()
            rows.append((p, v_init, {t: float(acc_t[t - 1]) for t in steps}, snn.readout["latency_steps"]))
    t_sweep = time.perf_counter() - t0

    dt_ms = ConversionConfig().dt * 1e3
    print(f"{args.model}: ANN accuracy {100 * ann_acc:.2f} % on {len(x)} test images; "
          f"SNN accuracy (%) after T steps of {dt_ms:g} ms, numpy reference simulator ({t_sweep:.1f} s for the sweep)")
    header = f"{'percentile':>10} {'v_init':>6} " + " ".join(f"{f'T={t}':>7}" for t in steps)
    print(header)
    print("-" * len(header))
    for p, v_init, acc, _ in rows:
        print(f"{p:>10g} {v_init:>6g} " + " ".join(f"{100 * acc[t]:>7.2f}" for t in steps))

    # the fastest point within tolerance of the ANN; if none is, the most accurate one
    ok = [(t, -acc[t], p, v) for p, v, acc, _ in rows for t in steps if acc[t] >= ann_acc - args.tolerance]
    if ok:
        t_best, _, p_best, v_best = min(ok)
    else:
        _, t_best, p_best, v_best = min((-acc[t], t, p, v) for p, v, acc, _ in rows for t in steps)
    ref_acc = next(acc[t_best] for p, v, acc, _ in rows if p == p_best and v == v_best)
    print()
    print(f"chosen: percentile {p_best:g}, v_init {v_best:g}, T = {t_best} steps ({t_best * dt_ms:g} ms) "
          f"-> {100 * ref_acc:.2f} % (reference), ANN {100 * ann_acc:.2f} %, tolerance {100 * args.tolerance:g} points")

    # confirm in Brian2 on (a subset of) the same images
    xc, yc = (x[:check_limit], y[:check_limit]) if check_limit else (x, y)
    snn = convert(graph, ConversionConfig(percentile=p_best, v_init=v_best), calibration=x_cal[:500])
    t1 = time.perf_counter()
    rec_b2 = simulate(snn, xc, SimulationConfig(n_steps=t_best, target=target), labels=yc)
    t_b2 = time.perf_counter() - t1
    rec_ref = simulate_reference(snn, xc, t_best, labels=yc)
    b2_acc = float(np.mean(rec_b2.predictions() == yc))
    same = float(np.mean(rec_b2.predictions() == rec_ref.predictions()))
    counts_equal = bool(np.array_equal(rec_b2.output_counts, rec_ref.output_counts))
    print(f"{'check on ' + str(len(xc)) + ' images':<28}{'accuracy':>10}")
    print(f"{'reference simulator':<28}{100 * float(np.mean(rec_ref.predictions() == yc)):>9.2f}%")
    print(f"{'Brian2 (' + rec_b2.meta['target'] + ')':<28}{100 * b2_acc:>9.2f}%")
    print(f"Brian2 vs reference: {100 * same:.1f} % same predictions, output spike counts identical: {counts_equal} "
          f"(Brian2 {t_b2:.1f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
