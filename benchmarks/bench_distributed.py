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

``--rows store`` measures the store's side of the scaling model only, with
every spike recorded and the ANN activations stored, and writes
``results/distributed_store.json``:

* one process, ``simulate_to_store`` into one file and into shards (the
  worker's cost per sample with shards: simulating, ANN activations, writing);
* a 2-process ``LocalCluster``, ``simulate_to_store`` without shards (the
  client receives every record and writes the store) and with shards (the
  workers write, the client indexes): the client's CPU per sample, its
  in-process scheduler included, and the N* each gives;
* a scheduler in a process of its own (``dask scheduler``) with 2 ``dask worker``
  processes, as on a cluster, shards, at ``--batch-size`` and 4x that: the client's
  and the scheduler's CPU per sample, each measured at a third of the samples and at
  all of them, so that the fixed cost of a run (connecting, sending the network)
  drops out of the marginal cost per sample that bounds N*.

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
    ap.add_argument("--out", default=None)
    ap.add_argument("--rows", choices=("all", "store"), default="all",
                    help="store: only the rows of the store's share (one file vs shards)")
    args = ap.parse_args()
    if args.out is None:
        args.out = str(HERE / "results" / ("distributed.json" if args.rows == "all" else "distributed_store.json"))
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
    if args.rows == "store":
        return store_rows(args, snn, x, y, base, distributed)
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


def store_rows(args: Any, snn: Any, x: Any, y: Any, base: Any, distributed: Any) -> int:
    """The store's share of a Dask run, one file against shards (see the module docstring)."""
    from spikebridge.run.simulate import simulate
    from spikebridge.run.store import simulate_to_store
    from spikebridge.store.spikes import SpikeStore

    n = len(x)
    cfg = dataclasses.replace(base, record=("all",))
    rows: list[dict[str, Any]] = []
    tmp = Path(tempfile.mkdtemp(prefix="sb-bench-store-"))
    counter = [0]

    def run(c: Any, shards: bool | None) -> Any:
        counter[0] += 1
        if shards is None:  # simulation only, nothing stored
            return simulate(snn, x, c)
        path = tmp / f"s{counter[0]}.h5"
        simulate_to_store(snn, x, path, c, labels=y, ann_activations=True, shards=shards, return_record=False)
        return path

    def row(label: str, c: Any, shards: bool | None) -> Any:
        walls, cpus, loads = [], [], []
        out = run(c, shards)  # warm-up: compile cache, worker imports
        for _ in range(args.repeats):
            c0, t0 = _cpu(), time.perf_counter()
            run(c, shards)
            walls.append(time.perf_counter() - t0)
            cpus.append(_cpu() - c0)
            loads.append(os.getloadavg()[0])
        med = statistics.median(walls)
        rows.append({"label": label, "wall_s": walls, "wall_median_s": med, "load_1min": loads,
                     "client_cpu_per_sample_ms": 1e3 * statistics.median(cpus) / n, "shards": shards})
        print(f"  {label}: {med:.2f} s wall, client {1e3 * statistics.median(cpus) / n:.3f} CPU ms/sample, load {loads}",
              file=sys.stderr, flush=True)
        return out

    ref = row("one process, simulate only (s)", cfg, None)
    row("one process, shards (s with shards: simulate, ANN, write)", cfg, True)
    t0 = time.perf_counter()
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                                       dashboard_address=None, silence_logs=logging.ERROR)
    startup = time.perf_counter() - t0
    try:
        dcfg = dataclasses.replace(cfg, scheduler=cluster.scheduler_address)
        one = row("dask workers=2, one-file store (client: c_recv + c_store)", dcfg, False)
        sharded = row("dask workers=2, shards (client: c_recv + index)", dcfg, True)
    finally:
        cluster.close()
    external = external_rows(args, snn, x, y, cfg, tmp, run)
    with SpikeStore(one) as st1, SpikeStore(sharded) as st2:  # read back outside the timings
        one, sharded = st1.to_record(), st2.to_record()
    identical = all(
        np.array_equal(getattr(ref.spikes[p], f), getattr(r.spikes[p], f))
        for r in (one, sharded) for p in ref.spikes for f in ("sample", "neuron", "step")
    ) and all(np.array_equal(ref.output_counts_t, r.output_counts_t) for r in (one, sharded))
    s_sim, s_shard, c_one, c_shard = (r["client_cpu_per_sample_ms"] for r in rows)
    for e in external:
        e["n_star_client"] = s_shard / max(e["client_marginal_ms"], 1e-9)
        e["n_star_scheduler"] = s_shard / max(e["scheduler_marginal_ms"], 1e-9)
        e["n_star"] = min(e["n_star_client"], e["n_star_scheduler"])
        print(f"  external scheduler, batch {e['batch_size']}: client {e['client_marginal_ms']:.3f} ms/sample "
              f"(+{e['client_fixed_s']:.2f} s per run), scheduler {e['scheduler_marginal_ms']:.3f} ms/sample: "
              f"N* client {e['n_star_client']:.0f}, scheduler {e['n_star_scheduler']:.0f}", flush=True)
    model = {
        "s_ms": s_sim,
        "s_with_shards_ms": s_shard,
        "client_one_file_ms": c_one,
        "client_shards_ms": c_shard,
        "n_star_one_file": s_sim / c_one,
        "n_star_shards": s_shard / c_shard,
        "cluster_startup_s": startup,
        "identical": bool(identical),
        "external_scheduler": external,
    }
    print(f"\n{args.model}, {n} samples, T={args.steps}, batch_size={args.batch_size}, cython, every spike and the ANN "
          f"activations stored; medians of {args.repeats} on {os.cpu_count()} cores shared with other jobs (loads per row)")
    print(f"{'path':<70}{'wall s':>9}{'client CPU ms/sample':>22}{'load':>14}")
    for r in rows:
        print(f"{r['label']:<70}{r['wall_median_s']:>9.2f}{r['client_cpu_per_sample_ms']:>22.3f}"
              f"{min(r['load_1min']):>7.1f}-{max(r['load_1min']):<6.1f}")
    print(", ".join(f"{k} {v:.2f}" if isinstance(v, float) else f"{k} {v}" for k, v in model.items() if k != "external_scheduler"))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"machine": platform.platform(), "cpu_count": os.cpu_count(), "model": args.model, "n_samples": n,
                               "steps": args.steps, "batch_size": args.batch_size, "results": rows, "model_figures": model}, indent=2))
    print(f"wrote {out}")
    import shutil

    shutil.rmtree(tmp, ignore_errors=True)
    return 0


def _proc_cpu(pid: int) -> float:
    """CPU seconds (user + system) of process ``pid`` so far, from /proc (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def external_rows(args: Any, snn: Any, x: Any, y: Any, cfg: Any, tmp: Path, run: Any) -> list[dict[str, Any]]:
    """Shards with the scheduler in its own process (as on a cluster): client and scheduler CPU per sample.

    Each batch size runs a third of the samples and then all of them; the difference over the
    difference in samples is the marginal cost per sample (what N* depends on), the rest the
    fixed cost of a run.  Workers are ``dask worker`` processes without nannies.
    """
    import socket
    import subprocess

    if not Path("/proc/self/stat").exists():
        print("  external scheduler rows skipped: no /proc to read the scheduler's CPU time", file=sys.stderr)
        return []
    with socket.socket() as sock:  # a free port
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE.parent), os.environ.get("PYTHONPATH", "")])}
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL, "env": env}
    address = f"tcp://127.0.0.1:{port}"
    procs = [subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1", "--port", str(port),
                               "--no-dashboard"], **quiet)]  # type: ignore[call-overload]
    out: list[dict[str, Any]] = []
    try:
        import distributed

        deadline = time.time() + 60
        while True:
            try:
                with distributed.Client(address, timeout=5):
                    break
            except OSError:
                if time.time() > deadline:
                    raise
                time.sleep(0.5)
        procs += [subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_worker", address, "--nthreads", "1",
                                    "--no-nanny", "--no-dashboard"], **quiet) for _ in range(2)]  # type: ignore[call-overload]
        with distributed.Client(address) as c:
            c.wait_for_workers(2, timeout=120)
        n = len(x)
        sizes = (n // 3, n)
        for bs in (args.batch_size, 4 * args.batch_size):
            dcfg = dataclasses.replace(cfg, scheduler=address, batch_size=bs)
            run_n(run, dcfg, min(n, 2 * bs), x, y, snn, tmp)  # warm-up: the workers' imports and compile cache
            client, sched, walls, loads = [], [], [], []
            for m in sizes:
                c0, s0, t0 = _cpu(), _proc_cpu(procs[0].pid), time.perf_counter()
                run_n(run, dcfg, m, x, y, snn, tmp)
                walls.append(time.perf_counter() - t0)
                client.append(_cpu() - c0)
                sched.append(_proc_cpu(procs[0].pid) - s0)
                loads.append(os.getloadavg()[0])
            dn = sizes[1] - sizes[0]
            row = {"batch_size": bs, "samples": list(sizes), "client_cpu_s": client, "scheduler_cpu_s": sched, "wall_s": walls,
                   "load_1min": loads,
                   "client_marginal_ms": 1e3 * (client[1] - client[0]) / dn,
                   "scheduler_marginal_ms": 1e3 * (sched[1] - sched[0]) / dn,
                   "client_fixed_s": client[0] - (client[1] - client[0]) / dn * sizes[0]}
            print(f"  external scheduler, batch {bs}: client CPU {client} s, scheduler CPU {sched} s for {list(sizes)} samples, "
                  f"load {loads}", file=sys.stderr, flush=True)
            out.append(row)
    finally:
        for p in reversed(procs):
            p.terminate()
        for p in reversed(procs):
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
    return out


def run_n(run: Any, cfg: Any, m: int, x: Any, y: Any, snn: Any, tmp: Path) -> None:
    """``simulate_to_store`` with shards of the first ``m`` samples (``run`` stores all of them)."""
    from spikebridge.run.store import simulate_to_store

    path = tmp / f"ext{m}-{cfg.batch_size}-{time.monotonic_ns()}.h5"
    simulate_to_store(snn, x[:m], path, cfg, labels=y[:m], ann_activations=True, shards=True, return_record=False)


if __name__ == "__main__":  # guarded: Dask's worker processes are started with "spawn"
    sys.exit(main())
