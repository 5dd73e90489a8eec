"""Simulation speed of converted networks: batching, code-generation targets, memory, peers.

Measures, each configuration in its own subprocess (so peak memory —
``ru_maxrss`` — belongs to that configuration alone):

* **batched vs one run per sample**: the same converted shipped MLP on the
  cython target, the whole digits test split in batched runs against
  ``batch_size=1`` (one Brian2 network and ``run()`` per sample) on a subset
  of ``--per-sample`` samples (said so in the table), per-sample wall time
  and their ratio;
* **targets**: numpy, cython and cpp_standalone on the whole test split at
  T = 32 and 128: build and run time, synaptic events per second (every
  spike times its fan-out) and peak memory.  Runtime targets are warmed up
  first (cython's compile cache); standalone compile time is reported
  separately from the run time of the reused binary;
* **spike counts**: kept by the populations' resets (``n_spikes``, the engine's
  default) against one ``SpikeMonitor`` per population (rows ``... spike monitors``);
  a batched row with Brian2's per-code-object profile (``... profiled``);
* **layout**: one ``Synapses`` object per projection against the split into
  ``_exc``/``_inh`` objects;
* **peer** (when ``spikingjelly`` is installed): SpikingJelly's ``ann2snn``
  on the same trained weights and T, with its accuracy.

* **LeNet cpp_standalone** (when MNIST is found, ``$MNIST_DIR`` or
  /tmp/package/data): the shipped MNIST LeNet, compiled once for its batch
  size (the first repeat), the binary re-run for every batch and repeat;
  synaptic events per second over the binary's ``Network.run`` (the
  counterpart of the runtime targets' run time, which excludes building the
  synapses too) and over the whole binary run.  Each batch runs as windows of
  a few samples (docs/brian2.md, "Windows"); the ``one batch`` rows run each
  batch as one network of all its samples, as before, for an A/B in one run.

Every result carries the 1-minute load average (``os.getloadavg()``) before
and after each repeat; the batched/per-sample ratios come from the same
invocation, so they are less sensitive to the load than single times.

Usage::

    python benchmarks/bench_speed.py [--repeats 3] [--per-sample 20] [--quick] [--case SUBSTR,...]

Prints a table and writes benchmarks/results/speed.json.  The numbers depend
on the load of the machine: on a shared machine, repeat them.  Issue 21 §3's
figures alone (about 3-5 minutes on 2 quiet cores, the LeNet compilation included)::

    python benchmarks/bench_speed.py --case "per-sample,batched cython T=,LeNet" --out benchmarks/results/speed_issue21.json

``--settle 0.5`` waits before every repeat but a row's first (which compiles a standalone
binary) until the 1-minute load is below 0.5, at most 240 s, and records the waits
(``settle_waited_s``); the LeNet rows so, about 15 minutes::

    python benchmarks/bench_speed.py --case LeNet --settle 0.5 --out benchmarks/results/speed_s24_lenet_windows_quiet.json

The MLP rows with their A/B (spike counts kept by the resets, the default, against one
``SpikeMonitor`` per population) and Brian2's own per-code-object profile of the batched run
(``Network.run(profile=True)``, one repeat, printed under the row and kept as
``brian2_profile_s``), about a minute::

    python benchmarks/bench_speed.py --case "per-sample,batched cython T=,batched cython spike,batched cython profiled" \
        --repeats 5 --out benchmarks/results/speed_s20_brian2_mlp.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent


def _events(snn: Any, counts: dict[str, np.ndarray]) -> int:
    """Synaptic events: every spike of a pre neuron times its number of outgoing synapses."""
    from spikebridge.engines.plan import folded_projections

    folded = folded_projections(snn)
    total = 0
    for proj in snn.projections.values():
        if proj.name in folded or proj.pre not in counts:
            continue
        outdeg = np.bincount(proj.pre_index, minlength=snn.populations[proj.pre].n)
        total += int(counts[proj.pre].sum(axis=0) @ outdeg)
    return total


MNIST_DIR = os.environ.get("MNIST_DIR", "/tmp/package/data")


def _mnist_found() -> bool:
    return (Path(MNIST_DIR) / "t10k-images-idx3-ubyte").exists() or any(Path(MNIST_DIR).glob("t10k-images*"))


def _load(model: str, encoding: str = "current"):
    from spikebridge.config import ConversionConfig
    from spikebridge.conversion.convert import convert
    from spikebridge.datasets import load_digits
    from spikebridge.models import load_shipped

    if model.startswith("mnist"):
        from spikebridge.datasets import load_mnist
        from spikebridge.run.calibrate import convert as convert_calibrated

        x_train, _ = load_mnist("train", MNIST_DIR)
        x, y = load_mnist("test", MNIST_DIR)
        g = load_shipped(model)
        # as bench_accuracy.py converts it: default conversion, 2000 training images to calibrate
        # (--lenet-encoding poisson: Poisson inputs instead of the folded current)
        return g, convert_calibrated(g, ConversionConfig(input_encoding=encoding), calibration=x_train[:2000]), x, y
    x_train, _ = load_digits("train")
    x, y = load_digits("test")
    g = load_shipped(model)
    return g, convert(g, calibration=x_train), x, y


def run_one(spec: dict[str, Any]) -> dict[str, Any]:
    """Body of one subprocess: simulate as ``spec`` says, return timings and memory."""
    if spec["kind"] == "spikingjelly":
        return run_spikingjelly(spec)
    from spikebridge.run.simulate import simulate
    from spikebridge.config import SimulationConfig

    g, snn, x, y = _load(spec["model"], spec.get("encoding", "current"))
    n = spec.get("n_samples") or len(x)
    x, y = x[:n], y[:n]
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    # A/B rows: run_batch (spikebridge.engines.brian2.run) builds with these keywords forced:
    # split_signs (E/I populations) or counters=False (one SpikeMonitor per population, as before)
    forced = {k: v for k, v in (("split_signs", True if spec.get("split_signs") else None),
                                ("counters", False if spec.get("spike_monitors") else None)) if v is not None}
    if forced:
        import spikebridge.engines.brian2.run as brian2_run  # where run_batch looks build_network up

        built_with = brian2_run.build_network

        def forced_build(*a: Any, **kw: Any) -> Any:
            return built_with(*a, **{**kw, **forced})

        brian2_run.build_network = forced_build  # type: ignore[assignment]
    if spec.get("one_batch"):
        import spikebridge.engines.brian2.run as brian2_run

        brian2_run.WINDOW_SYNAPSE_BYTES = 0  # A/B: each batch as one network of all its samples (no windows)
    profiles: list[Any] = []
    if spec.get("profile"):
        # Brian2's own per-code-object times (Network.run(profile=True)) of the last repeat
        import brian2

        network_run = brian2.Network.run

        def profiled_run(self: Any, *a: Any, **kw: Any) -> Any:
            kw["profile"] = True
            out = network_run(self, *a, **kw)
            profiles.append([(name, float(t)) for name, t in self.profiling_info])
            return out

        brian2.Network.run = profiled_run  # type: ignore[method-assign]
    cfg = SimulationConfig(
        n_steps=spec["steps"], target=spec["target"], batch_size=spec.get("batch_size"), max_memory=2e9,
        threads=spec.get("threads", 1), workers=spec.get("workers", 1),
    )
    if spec["target"] != "cpp_standalone":
        simulate(snn, x[:2], SimulationConfig(n_steps=4, target=spec["target"]))  # compile / cache warm-up
    walls, runs, builds, net_runs, loads, waits = [], [], [], [], [], []
    rec = None
    for k in range(spec.get("repeats", 1)):
        if spec.get("settle") and k:
            # a standalone row's first repeat compiles (2 busy cores for ~35 s): let the load decay
            from bench_engine import SETTLE, settle

            SETTLE["below"] = float(spec["settle"])
            waits.append(settle())
        load0 = os.getloadavg()[0]
        t0 = time.perf_counter()
        rec = simulate(snn, x, cfg, labels=y)
        walls.append(time.perf_counter() - t0)
        loads.append([load0, os.getloadavg()[0]])
        runs.append(rec.meta["timings"]["run_s"])
        builds.append(rec.meta["timings"]["build_s"])
        if "network_run_s" in rec.meta["timings"]:
            net_runs.append(rec.meta["timings"]["network_run_s"])
    assert rec is not None
    events = _events(snn, rec.counts)
    run_med = statistics.median(runs)
    extra: dict[str, Any] = {}
    if profiles:
        extra["brian2_profile_s"] = sorted(profiles[-1], key=lambda kv: -kv[1])
    if net_runs:
        # standalone: inside the binary's Network.run (synapses built before it, results written after)
        reused = net_runs[1:] or net_runs
        extra = {"network_run_s": net_runs, "network_run_median_s": statistics.median(reused),
                 "events_per_s_network": events / statistics.median(reused),
                 "events_per_s_network_best": events / min(reused),
                 "events_per_s_run_reused": events / statistics.median(runs[1:] or runs)}
    return {
        **spec,
        **extra,
        # 1-minute load average before and after each repeat (2 shared cores: say what the time means)
        "loadavg_1min": loads,
        "settle_waited_s": waits,
        "n_samples": int(n),
        "wall_s": walls,
        "wall_median_s": statistics.median(walls),
        "wall_min_s": min(walls),
        "run_median_s": run_med,
        "build_median_s": statistics.median(builds),
        "build_s": builds,
        "per_sample_s": statistics.median(walls) / n,
        "synaptic_events": events,
        "events_per_s_run": events / run_med if run_med > 0 else None,
        "events_per_s_wall": events / statistics.median(walls),
        "accuracy": float(rec.accuracy_over_time()[-1]),
        "batch_size": rec.meta["batch_size"],
        "n_batches": rec.meta["n_batches"],
        # cpp_standalone windows (samples per window, windows per batch run), if the batch ran as windows
        "window_batch": rec.meta.get("window_batch"),
        "windows": rec.meta.get("windows"),
        # worker processes (workers > 1) hold their batches' networks: count the largest child too
        "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "peak_rss_children_bytes": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024,
        "rss_before_simulate_bytes": rss_before,
    }


def run_spikingjelly(spec: dict[str, Any]) -> dict[str, Any]:
    import torch
    from bench_peers import sj_convert
    from spikingjelly.activation_based import functional
    from torch import nn

    from spikebridge.ir.layers import Dense, ReLU

    torch.set_num_threads(os.cpu_count() or 1)
    g, _, x, y = _load(spec["model"])
    from spikebridge.datasets import load_digits

    x_train, y_train = load_digits("train", flatten=True)
    mods: list[Any] = []
    for layer in g.layers[1:]:
        if isinstance(layer, Dense):
            m = nn.Linear(layer.n_in, layer.n_out)
            m.weight.data = torch.tensor(layer.weight, dtype=torch.float32)
            m.bias.data = torch.tensor(layer.bias, dtype=torch.float32)
            mods.append(m)
        elif isinstance(layer, ReLU):
            mods.append(nn.ReLU())
    ann = nn.Sequential(*mods).eval()
    loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(torch.tensor(x_train, dtype=torch.float32), torch.tensor(y_train)), batch_size=256
    )
    snn = sj_convert(ann, loader)
    xt = torch.tensor(x.reshape(len(x), -1), dtype=torch.float32)
    walls = []
    acc = 0.0
    for _ in range(spec.get("repeats", 1)):
        with torch.no_grad():
            functional.reset_net(snn)
            t0 = time.perf_counter()
            out: Any = 0
            for _ in range(spec["steps"]):
                out = out + snn(xt)
            walls.append(time.perf_counter() - t0)
        acc = float(np.mean(out.argmax(1).numpy() == y))
    return {
        **spec,
        "n_samples": len(x),
        "wall_s": walls,
        "wall_median_s": statistics.median(walls),
        "wall_min_s": min(walls),
        "run_median_s": statistics.median(walls),
        "per_sample_s": statistics.median(walls) / len(x),
        "accuracy": acc,
        # worker processes (workers > 1) hold their batches' networks: count the largest child too
        "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "peak_rss_children_bytes": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024,
    }


def _load_text(r: dict[str, Any]) -> str:
    """The range of the 1-minute load averages seen during a configuration's repeats."""
    loads = [v for pair in r.get("loadavg_1min", []) for v in pair]
    return f"{min(loads):.1f}-{max(loads):.1f}" if loads else "-"


def spawn(spec: dict[str, Any]) -> dict[str, Any]:
    import tempfile

    with tempfile.TemporaryDirectory(prefix="spikebridge_bench_") as cache:
        # a fresh standalone cache: the first repeat pays the compilation, later ones reuse the binary
        env = {**os.environ, "SPIKEBRIDGE_CACHE": cache}
        proc = subprocess.run(
            [sys.executable, __file__, "--one", json.dumps(spec)], capture_output=True, text=True, check=False, env=env
        )
    for line in proc.stdout.splitlines()[::-1]:
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):])
    return {**spec, "error": (proc.stderr or proc.stdout)[-2000:]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--one", help=argparse.SUPPRESS)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--per-sample", type=int, default=20, help="samples for the one-run-per-sample path")
    ap.add_argument("--quick", action="store_true", help="skip cpp_standalone and the numpy target")
    ap.add_argument("--case", default=None,
                    help="comma-separated substrings: run only the configurations whose label contains one")
    ap.add_argument("--lenet-samples", type=int, default=164, help="MNIST test images for the LeNet rows (2 batches of 82)")
    ap.add_argument("--lenet-encoding", default="current", choices=("current", "poisson"),
                    help="input encoding of the converted LeNet (poisson: a spiking input population, drawn per sample)")
    ap.add_argument("--settle", type=float, default=0.0,
                    help="before every repeat but the first, wait (at most 240 s) until the 1-minute load is below this (0: no wait)")
    ap.add_argument("--out", default=str(HERE / "results" / "speed.json"))
    args = ap.parse_args()
    if args.one:
        print("RESULT " + json.dumps(run_one(json.loads(args.one))))
        return

    mlp = "digits_mlp"
    specs: list[dict[str, Any]] = []
    for steps in (32, 128):
        specs.append({"label": f"per-sample cython T={steps}", "kind": "brian2", "model": mlp, "target": "cython",
                      "steps": steps, "batch_size": 1, "n_samples": args.per_sample, "repeats": 1})
        targets = ["cython"] if args.quick else ["numpy", "cython", "cpp_standalone"]
        for target in targets:
            specs.append({"label": f"batched {target} T={steps}", "kind": "brian2", "model": mlp, "target": target,
                          "steps": steps, "repeats": args.repeats})
        if not args.quick:
            specs.append({"label": f"batched cpp_standalone 2 threads T={steps}", "kind": "brian2", "model": mlp,
                          "target": "cpp_standalone", "steps": steps, "repeats": args.repeats, "threads": 2})
        # issue 21 §3: the spike counts kept by SpikeMonitors (as before counters=True), and
        # Brian2's per-code-object profile of the batched run
        specs.append({"label": f"per-sample cython spike monitors T={steps}", "kind": "brian2", "model": mlp,
                      "target": "cython", "steps": steps, "batch_size": 1, "n_samples": args.per_sample, "repeats": 1,
                      "spike_monitors": True})
        specs.append({"label": f"batched cython spike monitors T={steps}", "kind": "brian2", "model": mlp,
                      "target": "cython", "steps": steps, "repeats": args.repeats, "spike_monitors": True})
        specs.append({"label": f"batched cython profiled T={steps}", "kind": "brian2", "model": mlp,
                      "target": "cython", "steps": steps, "repeats": 1, "profile": True})
        specs.append({"label": f"batched cython split exc/inh T={steps}", "kind": "brian2", "model": mlp,
                      "target": "cython", "steps": steps, "repeats": args.repeats, "split_signs": True})
        specs.append({"label": f"batched cython CNN T={steps}", "kind": "brian2", "model": "digits_cnn",
                      "target": "cython", "steps": steps, "repeats": args.repeats})
        # Brian2's runtime is single-threaded: worker processes are how the second core is used
        specs.append({"label": f"batched cython 2 workers T={steps}", "kind": "brian2", "model": mlp,
                      "target": "cython", "steps": steps, "repeats": args.repeats, "workers": 2})
        specs.append({"label": f"batched cython CNN 2 workers T={steps}", "kind": "brian2", "model": "digits_cnn",
                      "target": "cython", "steps": steps, "repeats": args.repeats, "workers": 2})
        try:
            import spikingjelly  # noqa: F401

            specs.append({"label": f"spikingjelly ann2snn T={steps}", "kind": "spikingjelly", "model": mlp,
                          "steps": steps, "repeats": args.repeats})
        except ImportError:
            pass

    if _mnist_found():
        # issue 21 §3: synaptic events/s of the LeNet in cpp_standalone, built once for its structure
        for steps in (32,):
            specs.append({"label": f"LeNet cpp_standalone T={steps}", "kind": "brian2", "model": "mnist_lenet",
                          "target": "cpp_standalone", "steps": steps, "n_samples": args.lenet_samples,
                          "repeats": max(args.repeats, 2)})
            # both cores as OpenMP threads inside the one binary (its own build: OpenMP flags differ)
            specs.append({"label": f"LeNet cpp_standalone 2 threads T={steps}", "kind": "brian2",
                          "model": "mnist_lenet", "target": "cpp_standalone", "steps": steps,
                          "n_samples": args.lenet_samples, "repeats": max(args.repeats, 2), "threads": 2})
            # A/B: the batch as one network of all its samples, as before windows (results 0.2n)
            for th in (1, 2):
                specs.append({"label": f"LeNet cpp_standalone one batch{' 2 threads' if th > 1 else ''} T={steps}",
                              "kind": "brian2", "model": "mnist_lenet", "target": "cpp_standalone", "steps": steps,
                              "n_samples": args.lenet_samples, "repeats": max(args.repeats, 2), "threads": th,
                              "one_batch": True})
    else:
        print(f"LeNet rows skipped: MNIST not found in {MNIST_DIR} (set MNIST_DIR)", file=sys.stderr)
    if args.case:
        wanted = [c.strip() for c in args.case.split(",") if c.strip()]
        specs = [sp for sp in specs if any(w in sp["label"] for w in wanted)]
    if args.settle > 0:
        specs = [{**sp, "settle": args.settle} for sp in specs]
    if args.lenet_encoding != "current":
        specs = [{**sp, "encoding": args.lenet_encoding, "label": sp["label"].replace("LeNet", f"LeNet {args.lenet_encoding}")}
                 if sp["model"] == "mnist_lenet" else sp for sp in specs]

    results = []
    for spec in specs:
        print(f"running {spec['label']} ...", file=sys.stderr, flush=True)
        results.append(spawn(spec))

    by = {r["label"]: r for r in results}
    ratios = {}
    for steps in (32, 128):
        ps, bt = by.get(f"per-sample cython T={steps}", {}), by.get(f"batched cython T={steps}", {})
        if "per_sample_s" in ps and "per_sample_s" in bt:
            ratios[f"batched_vs_per_sample_T{steps}"] = ps["per_sample_s"] / bt["per_sample_s"]
            ratios[f"batched_vs_per_sample_best_of_T{steps}"] = (
                min(ps["wall_s"]) / ps["n_samples"] / (bt["wall_min_s"] / bt["n_samples"])
            )
        psm, btm = by.get(f"per-sample cython spike monitors T={steps}", {}), by.get(f"batched cython spike monitors T={steps}", {})
        if "per_sample_s" in psm and "per_sample_s" in btm:
            ratios[f"spike_monitors_batched_vs_per_sample_T{steps}"] = psm["per_sample_s"] / btm["per_sample_s"]
        sa = by.get(f"batched cpp_standalone T={steps}", {})
        if "per_sample_s" in ps and "wall_s" in sa and len(sa["wall_s"]) > 1:
            # standalone with its binary reused (second and later repeats)
            ratios[f"standalone_reused_vs_per_sample_T{steps}"] = ps["per_sample_s"] / (min(sa["wall_s"][1:]) / sa["n_samples"])
        sj = by.get(f"spikingjelly ann2snn T={steps}", {})
        if "wall_min_s" in sj and "wall_min_s" in bt:
            # best of the repeats on both sides: the shared machine adds seconds of noise to single runs
            ratios[f"brian2_cython_vs_spikingjelly_T{steps}"] = bt["wall_min_s"] / sj["wall_min_s"]
            if "wall_s" in sa and len(sa["wall_s"]) > 1:
                ratios[f"brian2_standalone_reused_vs_spikingjelly_T{steps}"] = min(sa["wall_s"][1:]) / sj["wall_min_s"]

    head = (f"{'configuration':<40} {'samples':>7} {'wall s':>8} {'best s':>8} {'run s':>8} {'ms/sample':>10} "
            f"{'events/s (run)':>15} {'peak MB':>8} {'acc':>6} {'load':>11}")
    print(head)
    print("-" * len(head))
    for r in results:
        if "error" in r:
            print(f"{r['label']:<40} ERROR {r['error'].splitlines()[-1] if r['error'] else ''}")
            continue
        # with worker processes the run times overlap: events per second of wall time is the honest rate
        eps = r.get("events_per_s_wall") if r.get("workers", 1) > 1 else r.get("events_per_s_run")
        eps_text = "-" if eps is None else f"{eps:.3g}"
        peak = r["peak_rss_bytes"] + r.get("workers", 1) * r.get("peak_rss_children_bytes", 0) * (r.get("workers", 1) > 1)
        print(
            f"{r['label']:<40} {r['n_samples']:>7} {r['wall_median_s']:>8.3f} {r.get('wall_min_s', r['wall_median_s']):>8.3f} "
            f"{r['run_median_s']:>8.3f} "
            f"{1e3 * r['per_sample_s']:>10.3f} {eps_text:>15} "
            f"{peak / 1e6:>8.0f} {100 * r['accuracy']:>6.2f} {_load_text(r):>11}"
        )
        if "brian2_profile_s" in r:
            top = ", ".join(f"{name} {1e3 * t:.1f}" for name, t in r["brian2_profile_s"][:6])
            print(f"{'':<40} Brian2 profile (ms, in Network.run): {top}")
        if "events_per_s_network" in r:
            print(f"{'':<40} standalone: {r['events_per_s_network']:.3g} events/s in the binary's Network.run "
                  f"(best {r['events_per_s_network_best']:.3g}, {r['network_run_median_s']:.3f} s), "
                  f"{r['events_per_s_run_reused']:.3g} over the whole binary run (reused)")
    print("worker rows: events/s over wall time; peak MB = parent + workers x largest worker")
    print(f"per-sample rows: one Brian2 network + run() per sample, measured on the first {args.per_sample} samples only")
    print("wall s: median of the repeats (standalone: the first repeat compiles, later ones reuse the binary); "
          "best s: fastest repeat; run s: median time inside Network.run / the binary")
    for k, v in ratios.items():
        print(f"{k}: {v:.1f}x")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"machine": platform.platform(), "cpu_count": os.cpu_count(), "results": results,
                               "ratios": ratios, "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                               "argv": sys.argv[1:]}, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
