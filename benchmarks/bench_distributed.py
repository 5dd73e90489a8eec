"""Dask-distributed runs against the forked-worker path, on the same batches.

Rows (the shipped digits CNN, cython target, the test split repeated
``--repeat-data`` times, ``--batch-size`` samples per batch for every row):

* forked workers (``SimulationConfig.workers``): 1 (one process) and 2;
* Dask ``LocalCluster`` of 1 and 2 worker processes, started once outside
  the timing (its start-up is reported on its own row) and reached through
  its ``tcp://`` address like a remote scheduler;
* the client's own cost per sample when it streams to a spike store
  (``simulate_to_store`` with every spike recorded and the ANN activations
  stored, fed with finished records, i.e. without any simulation): the
  figure that bounds how many workers one client can keep busy;
* the pickled size of a batch's ``SpikeRecord`` per sample (what travels
  from a worker to the client).

Each row is timed ``--repeats`` times after one warm-up run (the warm-up
pays cython's compile cache and each worker's imports); medians are quoted.

Usage::

    python benchmarks/bench_distributed.py [--repeats 2] [--repeat-data 2] [--batch-size 45]

Needs ``pip install "spikebridge[distributed]"`` (skips cleanly without it).
Prints a table and writes benchmarks/results/distributed.json.  On a shared
machine the numbers move with the load: repeat them.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import pickle
import platform
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))


def _cpu() -> float:
    """CPU seconds of this process (the client) so far: unlike wall time, not inflated by other jobs' load."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _timed(fn: Any, repeats: int) -> tuple[list[float], list[float]]:
    """Wall and client-CPU seconds of ``repeats`` calls after one warm-up call."""
    fn()  # warm-up: imports, compile cache, worker start-up
    walls, cpus = [], []
    for _ in range(repeats):
        c0, t0 = _cpu(), time.perf_counter()
        fn()
        walls.append(time.perf_counter() - t0)
        cpus.append(_cpu() - c0)
    return walls, cpus


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--repeat-data", type=int, default=2, help="how many times the 360-sample test split is repeated")
    ap.add_argument("--batch-size", type=int, default=45)
    ap.add_argument("--steps", type=int, default=128)
    ap.add_argument("--model", default="digits_cnn")
    ap.add_argument("--out", default=str(HERE / "results" / "distributed.json"))
    args = ap.parse_args()
    try:
        import distributed
    except ImportError:
        print('skipped: dask[distributed] is not installed (pip install "spikebridge[distributed]")')
        return 0

    from spikebridge.run.simulate import iter_simulate, simulate
    from spikebridge.config import SimulationConfig
    from spikebridge.conversion.convert import convert
    from spikebridge.datasets import load_digits
    from spikebridge.models import load_shipped
    from spikebridge.run import store as stream

    x_cal, _ = load_digits("train")
    x, y = load_digits("test")
    x, y = np.concatenate([x] * args.repeat_data), np.concatenate([y] * args.repeat_data)
    snn = convert(load_shipped(args.model), calibration=x_cal)
    n = len(x)
    base = SimulationConfig(n_steps=args.steps, batch_size=args.batch_size, target="cython", seed=0, max_memory=4e9)
    rows: list[dict[str, Any]] = []
    reference = simulate(snn, x, base)

    def row(label: str, timed: tuple[list[float], list[float]], **extra: Any) -> None:
        walls, cpus = timed
        med = statistics.median(walls)
        rows.append({"label": label, "wall_s": walls, "wall_median_s": med, "samples_per_s": n / med,
                     "client_cpu_s": cpus, "client_cpu_per_sample_s": statistics.median(cpus) / n, **extra})
        print(f"  {label}: {med:.2f} s ({n / med:.0f} samples/s)", file=sys.stderr, flush=True)

    for w in (1, 2):
        cfg = dataclasses.replace(base, workers=w)
        row(f"forked workers={w}", _timed(lambda: simulate(snn, x, cfg), args.repeats), workers=w, path="forked")

    for w in (1, 2):
        t0 = time.perf_counter()
        cluster = distributed.LocalCluster(
            n_workers=w, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None,
            silence_logs=logging.ERROR,
        )
        startup = time.perf_counter() - t0
        try:
            cfg = dataclasses.replace(base, scheduler=cluster.scheduler_address)
            got: list[Any] = []
            timed = _timed(lambda: got.append(simulate(snn, x, cfg)), args.repeats)
            same = bool(np.array_equal(got[-1].output_counts_t, reference.output_counts_t))
            row(f"dask LocalCluster workers={w}", timed, workers=w, path="dask", cluster_startup_s=startup, identical=same)
        finally:
            cluster.close()

    # the client's share: stream finished records into a store (ANN activations and every spike kept)
    cfg_all = dataclasses.replace(base, record=("all",))
    parts = list(iter_simulate(snn, x, cfg_all))
    record_bytes = sum(len(pickle.dumps(r, protocol=5)) for _, r in parts) / n
    original = stream._backend_iter
    stream._backend_iter = lambda *a, **k: iter(parts)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            walls, cpus = [], []
            for k in range(args.repeats):
                c0, t0 = _cpu(), time.perf_counter()
                stream.simulate_to_store(snn, x, Path(tmp) / f"s{k}.h5", cfg_all, labels=y, ann_activations=True)
                walls.append(time.perf_counter() - t0)
                cpus.append(_cpu() - c0)
    finally:
        stream._backend_iter = original
    client_s = statistics.median(cpus) / n
    rows.append({"label": "client: store writing per sample (no simulation)", "wall_s": walls, "client_cpu_s": cpus,
                 "client_cpu_per_sample_s": client_s, "samples_per_s": 1 / client_s, "record_bytes_per_sample": record_bytes})

    by = {r["label"]: r for r in rows}
    one = by["forked workers=1"]["wall_median_s"]
    # CPU of one process simulating alone = the work one worker does per sample
    sim_cpu = by["forked workers=1"]["client_cpu_per_sample_s"]
    dask_client_cpu = by["dask LocalCluster workers=2"]["client_cpu_per_sample_s"]
    ratios = {
        "sim_cpu_per_sample_ms": 1e3 * sim_cpu,
        "dask_client_cpu_per_sample_ms": 1e3 * dask_client_cpu,
        "store_client_cpu_per_sample_ms": 1e3 * client_s,
        # workers one client keeps busy before its own CPU (receiving + storing) is the bottleneck
        "workers_per_client": sim_cpu / (dask_client_cpu + client_s),
        "forked2_speedup": one / by["forked workers=2"]["wall_median_s"],
        "dask1_vs_forked1": by["dask LocalCluster workers=1"]["wall_median_s"] / one,
        "dask2_speedup": one / by["dask LocalCluster workers=2"]["wall_median_s"],
        "dask2_vs_forked2": by["dask LocalCluster workers=2"]["wall_median_s"] / by["forked workers=2"]["wall_median_s"],
    }
    print(f"\n{args.model}, {n} samples, T={args.steps}, batch_size={args.batch_size}, cython; medians of {args.repeats}"
          f" on {os.cpu_count()} cores (shared with other jobs)")
    print(f"{'path':<52}{'wall s':>9}{'samples/s':>11}{'client CPU ms/sample':>22}")
    for r in rows:
        wall = r.get("wall_median_s", statistics.median(r["wall_s"]))
        print(f"{r['label']:<52}{wall:>9.2f}{r['samples_per_s']:>11.0f}{1e3 * r['client_cpu_per_sample_s']:>22.3f}")
    for r in rows:
        if "cluster_startup_s" in r:
            print(f"{r['label']}: cluster start-up {r['cluster_startup_s']:.1f} s, identical spikes: {r['identical']}")
    print(f"record size per sample {record_bytes / 1e3:.1f} kB; " + ", ".join(f"{k} {v:.2f}" for k, v in ratios.items()))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"machine": platform.platform(), "cpu_count": os.cpu_count(), "model": args.model, "n_samples": n,
                               "steps": args.steps, "batch_size": args.batch_size, "results": rows, "ratios": ratios}, indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":  # guarded: Dask's worker processes are started with "spawn"
    sys.exit(main())
