"""Convert a PyTorch MLP you trained yourself into a Brian2 spiking network.

What it shows
-------------
1. Train a small ``torch.nn.Sequential`` MLP (64-64-10, ReLU) on the shipped
   8x8 digits for a few seconds (seeded, CPU).
2. Import the live module with :func:`spikebridge.load_model` (no file needed).
3. Convert it with data-based normalisation, using training images as
   calibration data (:func:`spikebridge.conversion.convert.convert`).
4. Simulate the test images in Brian2 (:func:`spikebridge.run.simulate.simulate`)
   and print the ANN and SNN accuracies side by side.

Run it
------
::

    python examples/convert_pytorch.py            # full test split, 128 steps
    python examples/convert_pytorch.py --quick    # 60 test images, 64 steps, numpy target (CI)

Needs ``torch`` (``pip install "spikebridge[torch]"``).

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
from spikebridge.datasets import load_digits


def train_mlp(x: np.ndarray, y: np.ndarray, *, epochs: int, seed: int):
    """Train a 64-64-10 ReLU MLP with Adam; returns the module in eval mode."""
    import torch
    from torch import nn

    torch.manual_seed(seed)
    # a 64-64-10 MLP is too small to gain from threads; one thread avoids oversubscribing small machines
    torch.set_num_threads(1)
    model = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    xt = torch.tensor(x, dtype=torch.float32)
    yt = torch.tensor(y, dtype=torch.long)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        for idx in torch.randperm(len(xt), generator=gen).split(64):
            opt.zero_grad()
            nn.functional.cross_entropy(model(xt[idx]), yt[idx]).backward()
            opt.step()
    return model.eval()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small run for CI: 60 test images, 64 steps, numpy target")
    parser.add_argument("--epochs", type=int, default=None, help="training epochs (default 30, 8 with --quick)")
    parser.add_argument("--steps", type=int, default=None, help="time steps per image (default 128, 64 with --quick)")
    parser.add_argument("--limit", type=int, default=None,
        help="number of test images (default all 360, 60 with --quick)"
    )
    parser.add_argument("--target", default=None, help="Brian2 target (default auto, numpy with --quick)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    epochs = args.epochs or (8 if args.quick else 30)
    steps = args.steps or (64 if args.quick else 128)
    limit = args.limit or (60 if args.quick else None)
    target = args.target or ("numpy" if args.quick else "auto")

    x_train, y_train = load_digits("train", flatten=True)
    x_test, y_test = load_digits("test", flatten=True)
    if limit:
        x_test, y_test = x_test[:limit], y_test[:limit]

    t0 = time.perf_counter()
    module = train_mlp(x_train, y_train, epochs=epochs, seed=args.seed)
    t_train = time.perf_counter() - t0

    graph = spikebridge.load_model(module)  # a torch.nn.Module is recognised by its type
    ann_acc = float(np.mean(np.argmax(spikebridge.evaluate(graph, x_test), axis=1) == y_test))

    # v_init=0.5 starts every membrane at half threshold: it removes the systematic
    # under-count of the first spikes (Bu et al. 2022) and so cuts latency
    conv = spikebridge.ConversionConfig(percentile=99.9, v_init=0.5)
    snn = convert(graph, conv, calibration=x_train[:500])
    t1 = time.perf_counter()
    sim = spikebridge.SimulationConfig(n_steps=steps, target=target, seed=args.seed)
    record = simulate(snn, x_test, sim, labels=y_test)
    t_sim = time.perf_counter() - t1
    snn_acc = float(np.mean(record.predictions() == y_test))
    acc_t = record.accuracy_over_time()

    print(f"PyTorch MLP trained for {epochs} epochs in {t_train:.1f} s; "
          f"SNN: {snn.n_neurons} neurons, {snn.n_synapses} synapses, {len(x_test)} test images x {steps} steps")
    print(f"{'':<26}{'value':>10}")
    print(f"{'ANN accuracy':<26}{100 * ann_acc:>9.2f}%")
    print(f"{'SNN accuracy':<26}{100 * snn_acc:>9.2f}%")
    for k in (steps // 4, steps // 2):
        print(f"{f'SNN accuracy @ {k} steps':<26}{100 * acc_t[k - 1]:>9.2f}%")
    print(f"{'simulation time':<26}{t_sim:>9.2f}s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
