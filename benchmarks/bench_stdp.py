"""Unsupervised STDP learning of the shipped 8x8 digits (Diehl & Cook 2015 style): accuracy and time per epoch.

Trains :func:`spikebridge.learning.stdp.run_stdp_digits` (Poisson input -> 100
excitatory neurons with STDP and adaptive thresholds -> inhibitory population
for lateral inhibition), labels every neuron by its strongest mean response
on the training digits and classifies the 360 test digits by the labelled
neurons' mean response (the spiking network, simulated batched by
:func:`spikebridge.simulate`).  Side by side, to show what bounds it:

* ``learned weights as prototypes``: the same learned input weights used by a
  non-spiking nearest-prototype classifier (largest ``W x``, neuron labels from
  the training digits) -- separates the learned representation from the
  spiking read-out;
* ``k-means, k = n_exc``: 100 prototypes found by k-means (numpy Lloyd, 30
  iterations, seeded), labelled the same way -- what 100 prototypes of this
  data can reach at best with this voting scheme.

Usage::

    python benchmarks/bench_stdp.py [--epochs 3] [--n-exc 100] [--target auto] [--quick]

Data: the digits shipped with spikebridge (no download).  Prints a table and
writes ``benchmarks/results/stdp.json``.  Times are wall-clock on a shared,
busy machine (other jobs run alongside); compare ratios, not absolutes.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

from spikebridge.datasets import load_digits
from spikebridge.learning.stdp import DiehlCookConfig, assign_labels
from spikebridge.run.stdp import run_stdp_digits

RESULTS = Path(__file__).resolve().parent / "results" / "stdp.json"


def prototype_accuracy(w: np.ndarray, x_tr, y_tr, x_te, y_te) -> float:
    """Label prototypes (rows of ``w``) by the training digits that match them best; classify by best match."""
    win_tr = np.argmax(x_tr @ w.T, axis=1)
    onehot = np.zeros((len(x_tr), w.shape[0]))
    onehot[np.arange(len(x_tr)), win_tr] = 1.0
    labels = assign_labels(onehot, y_tr, 10)
    return float(np.mean(labels[np.argmax(x_te @ w.T, axis=1)] == y_te))


def kmeans(x: np.ndarray, k: int, seed: int = 0, iters: int = 30) -> np.ndarray:
    rng = np.random.default_rng(seed)
    c = x[rng.choice(len(x), k, replace=False)].copy()
    for _ in range(iters):
        d = ((x[:, None, :] - c[None]) ** 2).sum(-1)
        a = d.argmin(1)
        for j in range(k):
            if np.any(a == j):
                c[j] = x[a == j].mean(0)
    return c


def kmeans_accuracy(c: np.ndarray, x_tr, y_tr, x_te, y_te) -> float:
    a_tr = (((x_tr[:, None, :] - c[None]) ** 2).sum(-1)).argmin(1)
    onehot = np.zeros((len(x_tr), len(c)))
    onehot[np.arange(len(x_tr)), a_tr] = 1.0
    labels = assign_labels(onehot, y_tr, 10)
    a_te = (((x_te[:, None, :] - c[None]) ** 2).sum(-1)).argmin(1)
    return float(np.mean(labels[a_te] == y_te))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--epochs", type=int, default=None, help="training epochs (default: DiehlCookConfig's)")
    p.add_argument("--n-exc", dest="n_exc", type=int, default=100)
    p.add_argument("--target", default="auto", choices=["auto", "numpy", "cython"])
    p.add_argument("--quick", action="store_true", help="DiehlCookConfig.quick(): 10 neurons, 100 digits, numpy (smoke run)")
    p.add_argument("--workers", type=int, default=0, help="processes for the batched labelling/test runs")
    args = p.parse_args()
    cfg = DiehlCookConfig(n_exc=args.n_exc, target=args.target)
    if args.epochs:
        cfg = dataclasses.replace(cfg, epochs=args.epochs)
    if args.quick:
        cfg = DiehlCookConfig.quick()
    x_tr, y_tr = load_digits("train")
    x_te, y_te = load_digits("test")
    x_tr, y_tr = x_tr.reshape(len(x_tr), -1)[: cfg.n_train], y_tr[: cfg.n_train]
    x_te, y_te = x_te.reshape(len(x_te), -1)[: cfg.n_test], y_te[: cfg.n_test]
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        summary = run_stdp_digits(cfg, tmp, workers=args.workers, say=print)
        from spikebridge.snn.network import load_network

        w = np.zeros((cfg.n_exc, x_tr.shape[1]))
        proj = load_network(Path(tmp) / "stdp_digits_net.h5").projections["in_exc"]
        w[proj.post_index, proj.pre_index] = proj.weight
    total = time.perf_counter() - t0
    proto = prototype_accuracy(w, x_tr, y_tr, x_te, y_te)
    km = kmeans_accuracy(kmeans(x_tr, cfg.n_exc, cfg.seed), x_tr, y_tr, x_te, y_te)
    epoch_s = summary["epoch_s"]
    rows = [
        ("spiking network (STDP, Brian2)", summary["accuracy"], f"{np.median(epoch_s):.1f}"),
        ("learned weights as prototypes", proto, "-"),
        (f"k-means, k = {cfg.n_exc}", km, "-"),
    ]
    print(f"\n{'method':<34} {'test accuracy':>14} {'s / epoch':>10}")
    for name, acc, t in rows:
        print(f"{name:<34} {100 * acc:>13.1f}% {t:>10}")
    print(f"\n{summary['n_train']} training digits x {cfg.epochs} epoch(s), {summary['n_test']} test digits; "
          f"{np.mean(summary['spikes_per_sample']):.1f} excitatory spikes per presentation; "
          f"labelling {summary['label_s']:.1f} s, test {summary['test_s']:.1f} s, total {total:.0f} s")
    result = {
        "accuracy": summary["accuracy"], "train_vote_accuracy": summary["train_accuracy"],
        "prototype_accuracy": proto, "kmeans_accuracy": km, "epoch_s": epoch_s,
        "median_epoch_s": float(np.median(epoch_s)), "label_s": summary["label_s"], "test_s": summary["test_s"],
        "total_s": total, "spikes_per_sample": summary["spikes_per_sample"], "classes_covered": summary["classes_covered"],
        "n_train": summary["n_train"], "n_test": summary["n_test"], "config": summary["config"],
        "machine": platform.platform(), "note": "shared machine, other jobs running; wall-clock times",
    }
    if not args.quick:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(result, indent=1))
        print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
