"""Convert an ONNX file into a Brian2 spiking network.

What it shows
-------------
1. Load the shipped ONNX export of the digits CNN
   (``spikebridge.models.model_path("digits_cnn", fmt="onnx")``; pass ``--model``
   for your own file) with :func:`spikebridge.load_model`.
2. Check the imported graph against ONNX's own reference evaluator
   (``onnx.reference``), so you know the import is exact before converting.
3. Convert with data-based normalisation and simulate the test images in Brian2.
4. Print ANN vs SNN accuracy and the accuracy after a quarter / half of the steps.

Run it
------
::

    python examples/convert_onnx.py                   # full test split, 128 steps
    python examples/convert_onnx.py --quick           # 40 test images, 48 steps, numpy target (CI)
    python examples/convert_onnx.py --model my.onnx --data my_data.npz

Needs ``onnx`` (``pip install "spikebridge[onnx]"``).  ``--data`` takes any
dataset spec of :func:`spikebridge.datasets.load_dataset` (``digits:test``, an
``.npz``/``.h5`` file with ``x``/``y``); calibration uses ``--calibration``.

The first full run with the default target ``auto`` (cython) compiles Brian2's code
(about half a minute on 2 cores); later runs reuse the cache.  ``--quick`` uses the
numpy target, which needs no compiler.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import spikebridge
from spikebridge.run.simulate import simulate
from spikebridge.conversion.convert import convert
from spikebridge.datasets import load_dataset
from spikebridge.models import model_path


def onnx_reference_outputs(path: str, x: np.ndarray) -> np.ndarray:
    """Outputs of the ONNX file computed by onnx's own reference evaluator (float32)."""
    import onnx
    from onnx.reference import ReferenceEvaluator

    model = onnx.load(path)
    sess = ReferenceEvaluator(model)
    name = model.graph.input[0].name
    return np.asarray(sess.run(None, {name: x.astype(np.float32)})[0])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small run for CI: 40 test images, 48 steps, numpy target")
    parser.add_argument("--model", default=None, help="ONNX file (default: the shipped digits CNN)")
    parser.add_argument("--data", default="digits:test", help="test data spec (default digits:test)")
    parser.add_argument("--calibration", default="digits:train", help="calibration data spec (default digits:train)")
    parser.add_argument("--steps", type=int, default=None, help="time steps per image (default 128, 48 with --quick)")
    parser.add_argument("--limit", type=int, default=None, help="number of test images (default all, 40 with --quick)")
    parser.add_argument("--target", default=None, help="Brian2 target (default auto, numpy with --quick)")
    args = parser.parse_args(argv)
    steps = args.steps or (48 if args.quick else 128)
    limit = args.limit or (40 if args.quick else None)
    target = args.target or ("numpy" if args.quick else "auto")
    path = str(args.model or model_path("digits_cnn", fmt="onnx"))

    graph = spikebridge.load_model(path)
    x_cal, _ = load_dataset(args.calibration)
    x, y = load_dataset(args.data)
    if limit:
        x, y = x[:limit], (None if y is None else y[:limit])

    ann_out = spikebridge.evaluate(graph, x).reshape(len(x), -1)
    ref_out = onnx_reference_outputs(path, x).reshape(len(x), -1)
    import_err = float(np.max(np.abs(ann_out - ref_out)))

    snn = convert(graph, spikebridge.ConversionConfig(v_init=0.5), calibration=x_cal[:500])
    t0 = time.perf_counter()
    record = simulate(snn, x, spikebridge.SimulationConfig(n_steps=steps, target=target))
    t_sim = time.perf_counter() - t0

    print(f"ONNX model '{graph.name}' ({path}): {len(graph.layers)} layers, {graph.n_params():,} parameters")
    print(f"SNN: {snn.n_neurons} neurons, {snn.n_synapses} synapses per image; {len(x)} images x {steps} steps")
    print(f"{'':<28}{'value':>10}")
    print(f"{'max |spikebridge - onnx|':<28}{import_err:>10.2e}")
    if y is not None:
        ann_acc = float(np.mean(np.argmax(ann_out, axis=1) == y))
        acc_t = record.accuracy_over_time(y)
        print(f"{'ANN accuracy':<28}{100 * ann_acc:>9.2f}%")
        print(f"{'SNN accuracy':<28}{100 * acc_t[-1]:>9.2f}%")
        for k in (steps // 4, steps // 2):
            print(f"{f'SNN accuracy @ {k} steps':<28}{100 * acc_t[k - 1]:>9.2f}%")
    print(f"{'simulation time':<28}{t_sim:>9.2f}s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
