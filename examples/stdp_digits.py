"""Unsupervised learning of the shipped 8x8 digits with STDP (Diehl & Cook 2015 style).

What it shows
-------------
A spiking network that *learns*, in Brian2, without labels:

1. builds the learner as a plain :class:`~spikebridge.snn.network.SpikingNetwork`
   (:func:`spikebridge.learning.stdp.diehl_cook_network`): 64 Poisson input neurons
   (one per pixel) -> 100 excitatory LIF neurons -> 100 inhibitory LIF neurons, each
   excitatory neuron exciting its inhibitory partner, which inhibits every other
   excitatory neuron (lateral inhibition: one winner per digit);
2. turns it into Brian2 objects with :func:`spikebridge.to_brian2`, makes the input
   projection plastic with pair-based STDP (:func:`spikebridge.engines.brian2.plasticity.add_stdp`;
   excitatory weights bounded in [0, w_max], so Dale's law holds) and shows every
   training digit for 150 ms in one long Brian2 run; each neuron's threshold grows
   with its spikes (homeostasis), and its input weights are normalised before every
   digit;
3. labels every excitatory neuron with the digit it responds to most on the training
   set, adds a 10-neuron read-out that averages each class's neurons, and classifies
   the 360 test digits by simulating the labelled network (:func:`spikebridge.simulate`).

It writes ``stdp_digits_net.h5`` (the labelled network), ``stdp_digits_spikes.h5`` (test
spikes plus the recorded input weights, ``/weights/in_exc``) and a summary JSON into
``--out``; then ``spikebridge graph OUT/stdp_digits_spikes.h5`` reports how the
weights changed and ``spikebridge compare OUT/stdp_digits_spikes.h5 --plots DIR`` plots
their distribution before and after learning.

Run it
------
::

    python examples/stdp_digits.py                 # 100 neurons, 1,437 digits x 4 epochs (about 4 minutes)
    python examples/stdp_digits.py --quick         # 10 neurons, 100 digits, numpy target (CI, seconds)
    spikebridge run examples/stdp_digits.toml      # the same from an experiment file

Expected: about 88 % test accuracy with 100 neurons after 4 epochs (see
``benchmarks/bench_stdp.py``); ``--quick`` is a smoke run (about 60 %; chance is 10 %).
"""

from __future__ import annotations

import argparse
import dataclasses

from spikebridge.learning.stdp import DiehlCookConfig
from spikebridge.run.stdp import run_stdp_digits


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="10 neurons, 100 training and 60 test digits, numpy target (CI)")
    parser.add_argument("--out", default="stdp_digits_out", help="output directory (default ./stdp_digits_out)")
    parser.add_argument("--epochs", type=int, help="passes over the training digits (default 4)")
    parser.add_argument("--n-exc", dest="n_exc", type=int, help="excitatory neurons (default 100)")
    parser.add_argument("--target", choices=["auto", "numpy", "cython"], help="Brian2 target (default auto)")
    parser.add_argument("--overwrite", action="store_true", help="replace earlier output in --out")
    args = parser.parse_args(argv)
    cfg = DiehlCookConfig.quick() if args.quick else DiehlCookConfig()
    changes = {k: v for k, v in (("epochs", args.epochs), ("n_exc", args.n_exc), ("target", args.target)) if v is not None}
    cfg = dataclasses.replace(cfg, **changes)
    summary = run_stdp_digits(cfg, args.out, overwrite=args.overwrite or args.quick, workers=1 if args.quick else 0, say=print)
    print(f"test accuracy: {100 * summary['accuracy']:.1f} % on {summary['n_test']} digits "
          f"({cfg.n_exc} neurons, {summary['n_train']} training digits x {cfg.epochs} epoch(s), "
          f"{sum(summary['epoch_s']) / len(summary['epoch_s']):.1f} s per epoch)")
    print(f"outputs in {args.out}/: stdp_digits_net.h5, stdp_digits_spikes.h5, stdp_digits_summary.json")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
