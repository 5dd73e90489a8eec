"""Convert a Keras model file into a Brian2 spiking network, without TensorFlow.

What it shows
-------------
1. Build and train a tiny Keras 3 MLP (64-64-10, ReLU, softmax) on the shipped
   digits, with the PyTorch backend (``KERAS_BACKEND=torch`` is set before
   Keras is imported; no TensorFlow anywhere).
2. Save it twice: as a Keras 3 archive (``digits_keras.keras``) and as a
   legacy HDF5 file (``digits_keras.h5``).
3. Import both with spikebridge's own reader (h5py + zipfile only; it never
   imports Keras or TensorFlow), check that both imports agree with each other
   and with ``model.predict``.
4. Convert and simulate in Brian2; print ANN vs SNN accuracy.

Keras is channels-last.  For an MLP nothing changes; for a CNN the imported
graph is channels-first and its ``metadata["input_layout"]`` is
``"channels_last"``: transpose images with ``x.transpose(0, 3, 1, 2)`` before
:func:`spikebridge.evaluate` / simulation (this script shows where).

Run it
------
::

    python examples/convert_keras.py                     # full test split, 128 steps
    python examples/convert_keras.py --quick             # 60 images, 64 steps, numpy target (CI)
    python examples/convert_keras.py --model my.keras    # skip training, import your file

Files go to ``--out`` (default ``./keras_example``).  Needs ``keras>=3`` and
``torch`` to *train and save*; importing the files needs neither.

The first full run with the default target ``auto`` (cython) compiles Brian2's code
(about half a minute on 2 cores); later runs reuse the cache.  ``--quick`` uses the
numpy target, which needs no compiler.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path

import numpy as np

import spikebridge
from spikebridge.run.simulate import simulate
from spikebridge.conversion.convert import convert
from spikebridge.datasets import load_digits


def train_and_save(out: Path, x: np.ndarray, y: np.ndarray, *, epochs: int, seed: int) -> tuple[list[Path], object]:
    """Train a Keras MLP; save it as ``.keras`` and legacy ``.h5``; return the two paths and the model."""
    os.environ.setdefault("KERAS_BACKEND", "torch")  # must happen before the first `import keras`
    import keras
    import torch

    # the torch backend's default thread pool only oversubscribes small machines for a model this size
    torch.set_num_threads(1)
    keras.utils.set_random_seed(seed)
    model = keras.Sequential(
        [
            keras.Input(shape=(64,)),
            keras.layers.Dense(64, activation="relu", name="hidden"),
            keras.layers.Dense(10, activation="softmax", name="out"),
        ],
        name="digits_keras",
    )
    model.compile(optimizer=keras.optimizers.Adam(3e-3), loss="sparse_categorical_crossentropy")
    model.fit(x, y, epochs=epochs, batch_size=64, verbose=0, shuffle=True)
    paths = [out / "digits_keras.keras", out / "digits_keras.h5"]
    model.save(paths[0])
    # legacy HDF5: Keras logs a "legacy format" warning through absl; saving it is the point here
    logging.getLogger("absl").setLevel(logging.ERROR)
    model.save(paths[1])
    return paths, model


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small run for CI: 60 test images, 64 steps, numpy target")
    parser.add_argument("--model", default=None, help="import this .keras/.h5 file instead of training one")
    parser.add_argument("--out", default="keras_example", help="directory for the saved Keras files")
    parser.add_argument("--epochs", type=int, default=None, help="training epochs (default 30, 10 with --quick)")
    parser.add_argument("--steps", type=int, default=None, help="time steps per image (default 128, 64 with --quick)")
    parser.add_argument("--limit", type=int, default=None, help="number of test images (default all, 60 with --quick)")
    parser.add_argument("--target", default=None, help="Brian2 target (default auto, numpy with --quick)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    epochs = args.epochs or (10 if args.quick else 30)
    steps = args.steps or (64 if args.quick else 128)
    limit = args.limit or (60 if args.quick else None)
    target = args.target or ("numpy" if args.quick else "auto")

    x_train, y_train = load_digits("train", flatten=True)
    x_test, y_test = load_digits("test", flatten=True)
    if limit:
        x_test, y_test = x_test[:limit], y_test[:limit]

    keras_probs = None
    if args.model:
        paths = [Path(args.model)]
    else:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        paths, model = train_and_save(out, x_train, y_train, epochs=epochs, seed=args.seed)
        keras_probs = np.asarray(model.predict(x_test, verbose=0))
        saved = ", ".join(map(str, paths))
        print(f"trained a Keras MLP for {epochs} epochs and saved {saved} ({time.perf_counter() - t0:.1f} s)")

    # spikebridge's Keras reader: h5py + zipfile, no Keras, no TensorFlow
    graphs = {p.suffix: spikebridge.load_model(p) for p in paths}
    first = next(iter(graphs.values()))

    def ann_input(graph: spikebridge.AnnGraph, x_flat: np.ndarray) -> np.ndarray:
        # a Keras CNN expects (N, H, W, C); the imported graph is channels-first
        if len(graph.input_shape) == 3:
            c, h, w = graph.input_shape
            if graph.metadata.get("input_layout") == "channels_last":
                x = x_flat.reshape(len(x_flat), h, w, c)  # the images as the Keras model sees them
                return x.transpose(0, 3, 1, 2)  # (N, H, W, C) -> (N, C, H, W)
            return x_flat.reshape(len(x_flat), c, h, w)
        return x_flat

    outputs = {s: spikebridge.evaluate(g, ann_input(g, x_test)).reshape(len(x_test), -1) for s, g in graphs.items()}
    print(f"{'check':<40}{'max abs difference':>20}")
    if len(outputs) == 2:
        print(f"{'.keras import vs .h5 import':<40}{float(np.max(np.abs(outputs['.keras'] - outputs['.h5']))):>20.2e}")
    if keras_probs is not None:
        # the imported graph keeps the final Softmax, so it returns probabilities like model.predict
        # (conversion drops it later: argmax is unchanged)
        diff = float(np.max(np.abs(outputs[paths[0].suffix] - keras_probs)))
        print(f"{'spikebridge evaluate vs keras predict':<40}{diff:>20.2e}")
    print(f"TensorFlow imported: {'tensorflow' in sys.modules}")

    snn = convert(first, spikebridge.ConversionConfig(v_init=0.5), calibration=ann_input(first, x_train[:500]))
    t1 = time.perf_counter()
    sim = spikebridge.SimulationConfig(n_steps=steps, target=target)
    record = simulate(snn, ann_input(first, x_test), sim, labels=y_test)
    t_sim = time.perf_counter() - t1
    ann_acc = float(np.mean(np.argmax(outputs[paths[0].suffix], axis=1) == y_test))
    snn_acc = float(np.mean(record.predictions() == y_test))
    print(f"SNN: {snn.n_neurons} neurons, {snn.n_synapses} synapses; {len(x_test)} images x {steps} steps")
    print(f"{'':<26}{'value':>10}")
    print(f"{'ANN accuracy':<26}{100 * ann_acc:>9.2f}%")
    print(f"{'SNN accuracy':<26}{100 * snn_acc:>9.2f}%")
    print(f"{'simulation time':<26}{t_sim:>9.2f}s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
