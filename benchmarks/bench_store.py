"""Spike store throughput: streaming batches into the SWMR-mode HDF5 store and reading them back.

Writes ``--samples`` samples of a synthetic network (``--neurons`` neurons in
3 populations, ``--rate`` spikes per neuron per sample, ``--steps`` steps) in
batches of ``--batch``, each batch flushed before ``n_done`` moves (the
crash-safe path), then reads everything back with ``SpikeStore.to_record``.
Compares with one plain h5py write of the same arrays (no chunking limits,
no per-batch flush) to show what crash safety costs.

Usage::

    python benchmarks/bench_store.py [--samples 2000] [--neurons 2000] [--rate 5] [--batch 100]

Prints a table and writes benchmarks/results/store.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np

from spikebridge.store.record import SpikeRecord, SpikeTrains
from spikebridge.store.spikes import SpikeStore


def make_batch(rng: np.random.Generator, n: int, sizes: dict[str, int], steps: int, rate: float) -> SpikeRecord:
    spikes, counts = {}, {}
    for name, size in sizes.items():
        k = rng.poisson(rate * size * n)
        st = SpikeTrains(
            n_neurons=size, n_samples=n, dt=1e-3,
            sample=rng.integers(0, n, k), neuron=rng.integers(0, size, k), step=rng.integers(0, steps, k),
        )
        spikes[name], counts[name] = st, st.counts()
    n_out = sizes["out"]
    return SpikeRecord(
        n_samples=n, n_steps=steps, dt=1e-3,
        output_counts_t=np.cumsum(rng.integers(0, 2, (n, steps, n_out)), axis=1).astype(np.int32),
        output_potential_t=rng.uniform(0, 1, (n, steps, n_out)).astype(np.float32),
        counts=counts, spikes=spikes, labels=rng.integers(0, n_out, n),
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=2000)
    ap.add_argument("--neurons", type=int, default=2000)
    ap.add_argument("--rate", type=float, default=5.0)
    ap.add_argument("--steps", type=int, default=64)
    ap.add_argument("--batch", type=int, default=100)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    sizes = {"hidden1": args.neurons // 2, "hidden2": args.neurons // 2 - 10, "out": 10}
    batches = [make_batch(rng, min(args.batch, args.samples - s), sizes, args.steps, args.rate) for s in range(0, args.samples, args.batch)]
    n_spikes = sum(st.n_spikes for b in batches for st in b.spikes.values())
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "s.h5"
        t0 = time.perf_counter()
        with SpikeStore(path, "w") as st:
            first = 0
            for b in batches:
                st.append_batch(first, b)
                first += b.n_samples
        t_write = time.perf_counter() - t0
        size = path.stat().st_size
        t0 = time.perf_counter()
        with SpikeStore(path) as st:
            rec = st.to_record()
        t_read = time.perf_counter() - t0
        assert rec.n_samples == args.samples
        plain = Path(tmp) / "plain.h5"
        t0 = time.perf_counter()
        with h5py.File(plain, "w") as f:
            for name in sizes:
                f.create_dataset(f"{name}/neuron", data=np.concatenate([b.spikes[name].neuron for b in batches]), compression="gzip")
                f.create_dataset(f"{name}/step", data=np.concatenate([b.spikes[name].step for b in batches]), compression="gzip")
                f.create_dataset(f"counts/{name}", data=np.concatenate([b.counts[name] for b in batches]), compression="gzip")
            f.create_dataset("counts_t", data=np.concatenate([b.output_counts_t for b in batches]), compression="gzip")
            f.create_dataset("pot_t", data=np.concatenate([b.output_potential_t for b in batches]), compression="gzip")
        t_plain = time.perf_counter() - t0
    rows = [
        ("samples", args.samples),
        ("batches", len(batches)),
        ("spikes", n_spikes),
        ("file size (MB)", round(size / 1e6, 2)),
        ("bytes per spike", round(size / max(n_spikes, 1), 2)),
        ("stream write, flush per batch (s)", round(t_write, 3)),
        ("write throughput (Mspikes/s)", round(n_spikes / t_write / 1e6, 2)),
        ("read all back (s)", round(t_read, 3)),
        ("plain h5py one-shot write (s)", round(t_plain, 3)),
    ]
    width = max(len(k) for k, _ in rows)
    for k, v in rows:
        print(f"{k:<{width}}  {v}")
    out = Path(__file__).parent / "results" / "store.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"args": vars(args), "results": dict(rows), "machine": platform.platform()}, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
