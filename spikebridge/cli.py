"""Command-line interface: one subcommand per arrow of the pipeline.

Each handler parses its arguments, calls one public function and reports.
Errors of ours and OS errors print one line to stderr and exit 1 (2 for usage
errors, 3 for unexpected internal errors; see ``EXIT_CODES``); ``--debug``
shows the traceback instead.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import sys
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from . import __version__
from .config import MAX_SEED, PRESETS, ConversionConfig, SimulationConfig, load_toml, parse_memory, parse_time
from .errors import SpikebridgeError, ValidationError

log = logging.getLogger("spikebridge")

__all__ = ["main", "build_parser"]


# -- helpers -------------------------------------------------------------------


def _out(text: str = "") -> None:
    print(text, flush=True)


def _table(rows: Sequence[Sequence[Any]], header: Sequence[str]) -> str:
    cells = [[str(c) for c in header]] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = []
    for k, r in enumerate(cells):
        lines.append("  ".join(c.rjust(w) if k and c.replace(".", "").replace("-", "").isdigit() else c.ljust(w) for c, w in zip(r, widths)).rstrip())
        if k == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _int_arg(minimum: int, maximum: int | None = None) -> Any:
    """An argparse ``type`` for integers in ``[minimum, maximum]``: out of range is a usage error (exit 2)
    that names the option, never a silent reinterpretation (``--limit -355``, ``--limit 0``)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < minimum or (maximum is not None and value > maximum):
            bound = f">= {minimum}" if maximum is None else f"in {minimum}..{maximum}"
            raise argparse.ArgumentTypeError(f"must be an integer {bound}, got {value}")
        return value

    return parse


_COUNT = _int_arg(1)
_SEED = _int_arg(0, MAX_SEED)


def _is_network_file(path: str) -> bool:
    p = Path(path)
    if p.suffix.lower() not in (".h5", ".hdf5") or not p.is_file():
        return False
    from ._h5 import root_attr

    try:
        # read as the loaders do: a damaged attribute gives one error, never a hang
        fmt = root_attr(p, "format")
    except OSError:
        return False
    return fmt == "spikebridge.snn"


def _conversion_config(args: argparse.Namespace) -> ConversionConfig:
    data: dict[str, Any] = {}
    if getattr(args, "config", None):
        raw = load_toml(args.config)
        # a file with tables takes [conversion]; a flat file is the conversion table itself
        has_tables = any(isinstance(v, dict) for v in raw.values())
        data.update(raw.get("conversion", {}) if has_tables else raw)
    if getattr(args, "preset", None):
        base = PRESETS[args.preset].to_dict()
        data = {**base, **data}  # a config file's keys win over the preset, flags over both
    overrides = {
        "maxpool": args.maxpool,
        "avgpool": getattr(args, "avgpool", None),
        "scales": args.scales,
        "calibrate": args.calibrate,
        "calibrate_steps": args.calibrate_steps,
        "percentile": args.percentile,
        "neuron": args.neuron,
        "reset": args.reset,
        "v_init": args.v_init,
        "dale": args.dale,
        "input_encoding": args.encoding,
        "output": args.output_mode,
        "lateral_inhibition": args.lateral_inhibition,
        "seed": args.seed,
        "steps_per_element": getattr(args, "steps_per_element", None),
        "neurons_per_unit": getattr(args, "neurons_per_unit", None),
        "fixed_point": True if getattr(args, "fixed_point", False) else None,
        "weight_bits": getattr(args, "weight_bits", None),
    }
    if args.normalisation:
        overrides["normalisation"] = args.normalisation
    for key in ("tau_mem", "refractory", "delay", "delay_jitter", "dt"):
        value = getattr(args, key)
        if key == "delay" and isinstance(value, str) and value.strip().lower() == "step":
            overrides[key] = "step"  # one time step per projection (ConversionConfig.from_dict)
        elif value is not None:
            overrides[key] = parse_time(value, f"--{key.replace('_', '-')}")
    data.update({k: v for k, v in overrides.items() if v is not None})
    return ConversionConfig.from_dict(data)


def _engine_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """``--engine``/``--device``/``--precision`` values that were given."""
    return {k: getattr(args, k) for k in ("engine", "device", "precision") if getattr(args, k, None) is not None}


def _add_engine_args(p: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    p.add_argument("--engine", choices=["brian2", "tensor", "auto"],
                   help="auto (default: tensor for conv/pool networks, else brian2; the choice is said in one line), "
                   "brian2 or tensor (batched arrays, shared conv kernels, same spikes)")
    p.add_argument("--device", help="tensor engine device: cpu (numpy/scipy, default), torch (torch on CPU), cuda, cuda:N")
    p.add_argument("--precision", choices=["float64", "float32"],
                   help="tensor engine arithmetic on cpu: float64 (default, the same spikes as Brian2) or float32 "
                   "(opt-in, faster, spikes may differ; needs --engine tensor)")


def _simulation_config(args: argparse.Namespace, **extra: Any) -> SimulationConfig:
    data: dict[str, Any] = {}
    if getattr(args, "config", None):
        raw = load_toml(args.config)
        data.update(raw.get("simulation", {}))
    if args.steps is not None:
        data["n_steps"] = args.steps
    if args.dt is not None:
        data["dt"] = parse_time(args.dt, "--dt")
    if args.batch_size is not None:
        data["batch_size"] = args.batch_size
    if args.target is not None:
        data["target"] = args.target
    if args.seed is not None:
        data["seed"] = args.seed
    if args.max_memory is not None:
        data["max_memory"] = parse_memory(args.max_memory, "--max-memory")
    if args.workers is not None:
        data["workers"] = args.workers
    if getattr(args, "scheduler", None) is not None:
        data["scheduler"] = args.scheduler
    if getattr(args, "record", None):
        data["record"] = tuple(args.record.split(","))
    data.update(_engine_overrides(args))
    data.update(extra)
    return SimulationConfig.from_dict(data)


# -- handlers ------------------------------------------------------------------


def _print_network(snn: Any) -> None:
    import numpy as np

    _out(f"spiking network '{snn.name}': {snn.n_neurons} neurons, {snn.n_synapses} synapses per sample, dt={snn.dt * 1e3:g} ms")
    rows: list[tuple[Any, ...]] = [(p.name, p.model, "x".join(map(str, p.shape or ())), p.n, p.role, p.sign, p.layer or "") for p in snn]
    _out(_table(rows, ["population", "model", "shape", "neurons", "role", "sign", "layer"]))
    _out()
    rows = []
    for p in snn.projections.values():
        d = np.asarray(p.delay) * 1e3
        delay = f"{d.min():g}-{d.max():g}" if d.size > 1 else f"{float(d):g}"
        rows.append((p.name, f"{p.pre}->{p.post}", p.kind, p.n_synapses, p.sign, delay))
    _out(_table(rows, ["projection", "pre->post", "kind", "synapses", "sign", "delay (ms)"]))


def _load_any(path: str, fmt: str | None, **kwargs: Any) -> Any:
    """An AnnGraph for ANN formats, a SpikingNetwork for network files and NIR graphs."""
    if path.startswith("shipped:"):
        from .models import model_path

        path = str(model_path(path.split(":", 1)[1]))
    if _is_network_file(path):
        from .snn.network import load_network

        return load_network(path)
    from .importers.registry import load_model

    if (fmt == "nir" or Path(path).suffix.lower() == ".nir") and "dt" not in kwargs:
        kwargs["dt"] = 1e-3
    return load_model(path, format=fmt, **kwargs)


def cmd_inspect(args: argparse.Namespace) -> int:
    from .snn.network import SpikingNetwork

    kwargs: dict[str, Any] = {}
    if args.input_shape:
        try:
            shape = tuple(int(s) for s in args.input_shape.split(","))
        except ValueError:
            shape = ()
        if not shape or min(shape) < 1:
            raise ValidationError(f"--input-shape: expected positive integers like 1,28,28, got {args.input_shape!r}", attr="input_shape")
        kwargs["input_shape"] = shape
    model = _load_any(args.model, args.format, **kwargs)
    if isinstance(model, SpikingNetwork):
        _print_network(model)
        return 0
    graph = model
    _out(f"model '{graph.name}': input {graph.input_shape}, output {graph.output_shape}")
    def kind(name: str, type_name: str) -> str:
        clip = getattr(graph[name], "max_value", None)
        return type_name if clip is None else f"{type_name}(max {clip:.4g})"

    rows: list[tuple[Any, ...]] = [(r.name, kind(r.name, r.type_name), "x".join(map(str, r.output_shape)), f"{r.n_params:,}",
                                    f"{r.macs:,}") for r in graph.summary()]
    if not graph.is_chain:  # a DAG: say what feeds each layer, and where the graph branches
        rows = [row + (", ".join(graph.predecessors(row[0])),) for row in rows]
        _out(_table(rows, ["layer", "type", "output shape", "params", "MACs", "inputs"]))
        for layer in graph.layers:
            if len(graph.successors(layer.name)) > 1:
                _out(f"branch: '{layer.name}' feeds {', '.join(graph.successors(layer.name))}")
    else:
        _out(_table(rows, ["layer", "type", "output shape", "params", "MACs"]))
    _out(f"total: {graph.n_params():,} parameters, {graph.macs():,} MACs per sample")
    return 0


def cmd_formats(args: argparse.Namespace) -> int:
    from .importers.registry import list_formats

    rows = [
        (f["name"], " ".join(f["suffixes"]) or "(object)", "available" if f["available"] else f'missing: pip install "spikebridge[{f["extra"]}]"', f["description"])
        for f in list_formats()
    ]
    _out(_table(rows, ["format", "suffixes", "status", "description"]))
    return 0


_DATA_DIR_HELP = "folder with the MNIST / Fashion-MNIST IDX files (raw or .gz), or their parent (default: $SPIKEBRIDGE_DATA)"


def cmd_convert(args: argparse.Namespace) -> int:
    from .run.calibrate import convert
    from .snn.network import SpikingNetwork
    from .datasets import load_dataset

    out = Path(args.output)
    if out.exists() and not args.overwrite:
        raise ValidationError(f"output '{out}' exists; pass --overwrite to replace it", attr="output")
    config = _conversion_config(args)
    model = _load_any(args.model, args.format, **({"dt": config.dt} if (args.format == "nir" or args.model.endswith(".nir")) else {}))
    if isinstance(model, SpikingNetwork):  # NIR graphs are already spiking: only re-save them
        model.save(out, overwrite=True)
        _out(f"imported spiking network '{model.name}' -> {out}: {model.n_neurons} neurons, {model.n_synapses} synapses")
        return 0
    graph = model
    calib = None
    if config.normalisation == "data":
        x, _ = load_dataset(args.calibration, args.data_dir)
        calib = x[: args.calibration_samples] if args.calibration_samples is not None else x
        if args.calibration_samples is not None:  # an explicit sample size overrides the default cap
            import dataclasses

            config = dataclasses.replace(config, normalisation_samples=args.calibration_samples)
    t0 = time.perf_counter()
    snn = convert(graph, config, calibration=calib)
    snn.save(out, overwrite=True)
    _out(f"converted '{graph.name}' -> {out}: {snn.n_neurons} neurons, {snn.n_synapses} synapses per sample ({time.perf_counter() - t0:.2f} s)")
    if snn.scales:
        _out("scales: " + ", ".join(f"{k}={v:.4g}" for k, v in snn.scales.items()))
    return 0


def _sequence_steps(snn: Any, args: argparse.Namespace) -> dict[str, Any]:
    """``n_steps`` for a sequence network run without ``--steps``: every element, T x K steps.

    ``--steps-per-element`` must match the network's K (its recurrent delay is K steps; another
    K would need a new conversion)."""
    k = int(snn.readout.get("window_steps") or 0)
    given = getattr(args, "steps_per_element", None)
    if given is not None and not k:
        raise ValidationError(f"--steps-per-element: network '{args.network}' is not a sequence (recurrent) network",
                              attr="steps_per_element")
    if given is not None and given != k:
        raise ValidationError(f"--steps-per-element {given}: network '{args.network}' was converted with {k} steps per "
                              f"element (its recurrent delay); convert again with --steps-per-element {given}",
                              attr="steps_per_element")
    if k and args.steps is None:
        return {"n_steps": int(snn.readout.get("windows") or 1) * k}
    return {}


def cmd_simulate(args: argparse.Namespace) -> int:
    import numpy as np

    from .snn.network import load_network
    from .datasets import load_dataset
    from .ir import evaluate, predict_classes

    _check_simulate_args(args)
    snn = load_network(args.network)
    x, y = load_dataset(args.data, args.data_dir)
    if args.limit is not None:
        x, y = x[: args.limit], (None if y is None else y[: args.limit])
    extra: dict[str, Any] = {"progress": not args.quiet}
    extra.update(_sequence_steps(snn, args))
    if args.output and not args.record:
        extra["record"] = ("all",)  # a spike store keeps every spike unless told otherwise
    config = _simulation_config(args, **extra)
    from .run.experiment import check_labels, warn_dt

    check_labels(y, snn, f"labels of --data {args.data}")
    warn_dt(snn, config.dt, "--dt")
    ann_acc = None
    if snn.ann is not None and y is not None and snn.readout.get("task", "classification") == "classification":
        ann_acc = float(np.mean(predict_classes(evaluate(snn.ann, x)) == y))
    t0 = time.perf_counter()
    record: Any
    if args.output:
        from .run.store import simulate_to_store
        from .store.stream import StoreReadout

        # nothing is read back whole: memory stays flat in the number of samples
        simulate_to_store(
            snn, x, args.output, config, labels=y, resume=args.resume, overwrite=args.overwrite, network_path=args.network,
            return_record=False, compression=getattr(args, "compression", None),
        )
        record = StoreReadout(args.output)
    else:
        from .run.simulate import simulate

        record = simulate(snn, x, config, labels=y)
    elapsed = time.perf_counter() - t0
    rows: list[tuple[str, str]] = [("samples", str(len(x))), ("time steps", str(record.n_steps)), ("dt", f"{record.dt * 1e3:g} ms")]
    if y is not None and snn.readout.get("task", "classification") == "classification":
        snn_acc = float(np.mean(record.predictions() == y))
        if ann_acc is not None:
            rows.append(("ANN accuracy", f"{100 * ann_acc:.2f} %"))
        rows.append(("SNN accuracy", f"{100 * snn_acc:.2f} %"))
    elif snn.ann is not None:
        ann_out = evaluate(snn.ann, x).reshape(len(x), -1)
        if snn.readout.get("task", "classification") == "classification":
            # no labels: how often the SNN picks the ANN's class (an RMSE of class scores means little)
            agree = float(np.mean(record.predictions() == predict_classes(ann_out)))
            rows.append(("agreement with ANN", f"{100 * agree:.2f} %"))
        else:
            err = record.output_values() - ann_out
            rows.append(("RMSE vs ANN", f"{float(np.sqrt(np.mean(err**2))):.4g}"))
    rows.append(("wall time", f"{elapsed:.2f} s"))
    if args.output:
        rows.append(("spike store", str(args.output)))
    _out(_table(rows, ["", "value"]))
    return 0


def _check_simulate_args(args: argparse.Namespace) -> None:
    """Refuse, before any work, settings that would be ignored or files that would be replaced."""
    if args.resume and not args.output:
        raise ValidationError("--resume continues the spike store named by -o/--output; give -o FILE (or drop --resume)", attr="resume")
    if getattr(args, "device", None) is not None:
        engine = args.engine
        if engine is None and getattr(args, "config", None):
            engine = load_toml(args.config).get("simulation", {}).get("engine")
        if engine in (None, "brian2"):
            raise ValidationError(
                f"--device {args.device} is a setting of the tensor engine and the Brian2 engine would ignore it; "
                "add --engine tensor (or --engine auto), or drop --device",
                attr="device",
            )
    if args.output and not args.resume and not args.overwrite and Path(args.output).exists():
        # an existing file, even an empty one, is the user's: never replaced without --overwrite
        raise ValidationError(f"output '{args.output}' exists; pass --overwrite to replace it or --resume to continue it", attr="output")


def _plot_names(spikes: str, out_dir: str) -> list[Path]:
    stem = Path(spikes).stem
    return [Path(out_dir) / f"{stem}_{kind}.png" for kind in ("accuracy", "raster", "scatter", "rates", "weights")]


def cmd_compare(args: argparse.Namespace) -> int:
    from .analysis.compare import compare

    if args.plots and not args.overwrite:
        taken = [p for p in _plot_names(args.spikes, args.plots) if p.exists()]
        if taken:
            raise ValidationError(f"output '{taken[0]}' exists; pass --overwrite to replace the figures in '{args.plots}'", attr="plots")
    # progress for a person at a terminal; a script reading stderr gets only the one error line
    chatty = not args.quiet and sys.stderr.isatty()
    say = (lambda msg: print(msg, file=sys.stderr, flush=True)) if chatty else (lambda msg: None)
    t0 = time.perf_counter()
    say(f"comparing '{args.spikes}': reading its spikes and ANN outputs ...")
    report = compare(args.spikes)
    say(f"compared {report.n_samples} samples in {time.perf_counter() - t0:.1f} s")
    if args.json:
        _out(json.dumps(report.to_dict(), indent=2, default=float))
    else:
        _out(report.to_text() if hasattr(report, "to_text") else str(report))
    if args.plots:
        from .analysis.plot import plot_report

        say(f"drawing figures into '{args.plots}' ...")
        for path in plot_report(args.spikes, args.plots):
            _out(f"wrote {path}")
    return 0


def _is_spike_store(path: str) -> bool:
    from ._h5 import root_attr
    from .store.spikes import FORMAT, SpikeStore

    try:
        # the format first, read as the loaders do (a damaged attribute: one error, never a hang)
        if root_attr(path, "format") != FORMAT:
            return False
    except OSError:
        return False
    try:
        with SpikeStore(path):
            return True
    except (OSError, SpikebridgeError):
        return False


def cmd_graph(args: argparse.Namespace) -> int:
    from .analysis.graph import analyse, write_graphml
    from .snn.network import load_network

    if _is_spike_store(args.network):
        # a spike store: how its recorded (plastic) projections changed
        from .learning.weights import weight_changes

        learning = weight_changes(args.network)
        _out(json.dumps(learning.to_dict(), indent=2, default=float) if args.json else learning.to_text())
        return 0

    if args.graphml and Path(args.graphml).exists() and not args.overwrite:
        raise ValidationError(f"output '{args.graphml}' exists; pass --overwrite to replace it", attr="graphml")
    snn = load_network(args.network)
    report = analyse(snn, sample_size=args.sample)
    if args.graphml:
        write_graphml(snn, args.graphml, level=args.level)
    if getattr(args, "plot", None):
        from .analysis.plot import plot_recurrent

        if Path(args.plot).exists() and not args.overwrite:
            raise ValidationError(f"output '{args.plot}' exists; pass --overwrite to replace it", attr="plot")
        plot_recurrent(snn, args.plot)
    if args.json:
        _out(json.dumps(report.to_dict(), indent=2, default=float))
    else:
        _out(report.to_text() if hasattr(report, "to_text") else str(report))
    if args.graphml:
        _out(f"wrote {args.graphml}")
    if getattr(args, "plot", None):
        _out(f"wrote {args.plot}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    if not (args.nwb or args.nir or args.brian2):
        raise ValidationError(
            "export: give --nwb OUT.nwb (for a spike store), --nir OUT.nir or --brian2 OUT_DIR (for a network file)"
        )
    if args.brian2:
        _export_brian2(args)
    if args.nwb:
        from .export.nwb import export_nwb

        export_nwb(args.source, args.nwb, overwrite=args.overwrite)
        _out(f"wrote {args.nwb}")
    if args.nir:
        from .snn.network import load_network
        from .export.nir import export_nir

        if Path(args.nir).exists() and not args.overwrite:
            raise ValidationError(f"output '{args.nir}' exists; pass --overwrite to replace it", attr="output")
        export_nir(load_network(args.source), args.nir)
        _out(f"wrote {args.nir}")
    return 0


def _export_brian2(args: argparse.Namespace) -> None:
    from .export.brian2_script import export_brian2_script
    from .snn.network import load_network
    from .datasets import load_dataset

    snn = load_network(args.source)
    x = None
    if snn.input is not None:
        x, _ = load_dataset(args.data, args.data_dir)
        x = x[: args.limit]
    script, arrays = export_brian2_script(snn, args.brian2, x, n_steps=args.steps, seed=args.seed, overwrite=args.overwrite)
    _out(f"wrote {script} and {arrays} (run: python {script})")


def _print_summary(results: list[Any]) -> None:
    from .analysis.report import SUMMARY_HEADER, summary_rows

    _out(_table(summary_rows(results), SUMMARY_HEADER))


def cmd_demo(args: argparse.Namespace) -> int:
    from .analysis.report import write_report
    from .run.experiment import demo_spec, run_experiment

    out = Path(args.out)
    # (model, Dale mode): the plain MLP and CNN, and the MLP with excitatory/inhibitory populations
    runs = [("digits_mlp", "none")] if args.quick else [("digits_mlp", "none"), ("digits_cnn", "none"), ("digits_mlp", "relay")]
    say = (lambda msg: None) if args.quiet else (lambda msg: print(msg, file=sys.stderr, flush=True))
    engine = getattr(args, "engine", None) or "brian2"
    say(f"spikebridge demo: shipped digits models -> {out}/ (engine {engine}; "
        + ("--engine tensor gives the same spikes with shared conv kernels)" if engine == "brian2" else "same spikes as brian2)"))
    if engine != "tensor" and not args.target:
        say("simulating with Brian2's numpy target: nothing to compile (--target cython compiles once, minutes, then runs large networks faster)")
    results = []
    for name, dale in runs:
        spec = demo_spec(name, quick=args.quick, target=args.target or "numpy", dale=dale, workers=args.workers)
        if args.limit is not None:
            spec.limit = args.limit
        if args.steps is not None:
            spec.simulation = spec.simulation.__class__.from_dict({**spec.simulation.to_dict(), "n_steps": args.steps})
        if _engine_overrides(args):
            spec.simulation = spec.simulation.__class__.from_dict({**spec.simulation.to_dict(), **_engine_overrides(args)})
        results.append(run_experiment(spec, out, resume=args.resume, overwrite=not args.resume, say=say))
    md, html_path = write_report(results, out, title="spikebridge demo: digits ANN vs SNN")
    _print_summary(results)
    _out(f"report: {html_path} (and {md.name}); network files and spike stores in {out}/")
    return 0


def _run_stdp(args: argparse.Namespace, raw: dict[str, Any]) -> int:
    from .run.stdp import load_stdp_experiment, run_stdp_digits

    if args.resume:
        raise ValidationError("run: an [stdp] experiment cannot --resume; run it again with --overwrite")
    cfg, exp = load_stdp_experiment(raw)
    out = Path(args.out or exp.get("out") or "spikebridge_stdp")
    say = (lambda msg: None) if args.quiet else (lambda msg: print(msg, file=sys.stderr, flush=True))
    s = run_stdp_digits(cfg, out, overwrite=args.overwrite, say=say, progress=not args.quiet)
    rows = [("test accuracy", f"{100 * s['accuracy']:.2f} %"), ("training-set vote", f"{100 * s['train_accuracy']:.2f} %"),
            ("excitatory neurons", str(s["n_exc"])), ("training digits x epochs", f"{s['n_train']} x {s['epochs']}"),
            ("s per epoch", " ".join(f"{t:.1f}" for t in s["epoch_s"])), ("spike store", s["store"])]
    _out(_table(rows, [str(exp.get("name", "stdp")), "value"]))
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from .analysis.report import write_report
    from .run.experiment import load_experiment, run_experiment

    raw = load_toml(args.experiment)
    if "stdp" in raw:  # an STDP learning experiment (examples/stdp_digits.toml)
        return _run_stdp(args, raw)
    spec, out_cfg, title = load_experiment(args.experiment)
    if args.data_dir is not None:
        spec.data_dir = args.data_dir  # the flag wins over [data] data_dir
    if _engine_overrides(args):
        spec.simulation = spec.simulation.__class__.from_dict({**spec.simulation.to_dict(), **_engine_overrides(args)})
    out = Path(args.out or out_cfg or "spikebridge_out")
    if not (args.overwrite or args.resume):
        from .run.experiment import existing_outputs

        existing_outputs([out / "report.md", out / "report.html"])
    say = (lambda msg: None) if args.quiet else (lambda msg: print(msg, file=sys.stderr, flush=True))
    from .run.sweep import load_sweep, run_sweep

    sweep = load_sweep(args.experiment)
    if sweep:
        results, files = run_sweep(spec, sweep, out, resume=args.resume, overwrite=args.overwrite, say=say,
                                   max_points=args.max_points)
        write_report(results, out, title=title)
        _print_summary(results)
        _out("sweep summary: " + ", ".join(str(p) for p in files.values()))
        return 0
    result = run_experiment(spec, out, resume=args.resume, overwrite=args.overwrite, say=say)
    md, html_path = write_report([result], out, title=title)
    _print_summary([result])
    _out(f"report: {html_path}")
    return 0


# -- parser --------------------------------------------------------------------


def _add_conversion_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("conversion (override the config file)")
    g.add_argument("--config", help="TOML file with a [conversion] table (and [simulation] for simulate)")
    g.add_argument("--normalisation", choices=["data", "none"])
    g.add_argument("--preset", choices=sorted(PRESETS), help="named conversion settings (docs/conversion.md#defaults-and-presets); 'classic' = the earlier defaults")
    g.add_argument("--percentile", type=float, help="activation percentile for the layer scales (default 99.9; 100 = max)")
    g.add_argument("--maxpool", choices=["tree", "gate", "avg", "refuse"], help="max-pool conversion (default tree)")
    g.add_argument("--avgpool", choices=["population", "fold"],
                   help="average pooling of spikes: its own population (default) or folded into the next layer")
    g.add_argument("--scales", choices=["layer", "channel"], help="one normalisation scale per conv channel (default) or per layer")
    g.add_argument("--calibrate", choices=["none", "bias", "potential", "both", "offset", "offset_mean"], help="post-conversion calibration on the calibration data")
    g.add_argument("--calibrate-steps", dest="calibrate_steps", type=_COUNT, help="T the calibration tunes for (default 64)")
    g.add_argument("--neuron", choices=["if", "lif"])
    g.add_argument("--tau-mem", dest="tau_mem", help="membrane time constant for lif, e.g. 20ms")
    g.add_argument("--reset", choices=["subtract", "zero"])
    g.add_argument("--refractory", help="refractory period, e.g. 1ms")
    g.add_argument("--v-init", dest="v_init", type=float, help="initial potential as a fraction of threshold")
    g.add_argument("--delay", help="synaptic delay per projection, e.g. 1ms (default 0: same-step delivery, no "
                   "pipeline latency; 'step' = one time step per projection)")
    g.add_argument("--delay-jitter", dest="delay_jitter", help="extra random per-synapse delay up to this, e.g. 3ms")
    g.add_argument("--conversion-dt", dest="dt", help="time step the network is converted for, e.g. 1ms")
    g.add_argument("--encoding", choices=["current", "poisson", "regular"])
    g.add_argument("--output-mode", dest="output_mode", choices=["count", "potential"])
    g.add_argument("--dale", choices=["none", "relay", "pooled"])
    g.add_argument("--lateral-inhibition", dest="lateral_inhibition", type=float)
    g.add_argument("--steps-per-element", dest="steps_per_element", type=_COUNT,
                   help="recurrent (RNN) models: time steps K each sequence element is presented for; the recurrent "
                   "delay is one window of K steps (default 32)")
    g.add_argument("--neurons-per-unit", dest="neurons_per_unit", type=_COUNT,
                   help="recurrent (RNN) models: IF neurons per hidden unit with staggered initial potentials "
                   "(finer rounding at M times the spikes, M^2 the recurrent synapses; default 1)")
    g.add_argument("--fixed-point", dest="fixed_point", action="store_true",
                   help="round weights to a power-of-two grid whose sums are exact in float32 (moves a weight by at "
                   "most 2^-25 of the largest fan-in sum): the tensor engine may then use dense float32 "
                   "convolutions with the exact path's spikes")
    g.add_argument("--weight-bits", dest="weight_bits", type=_COUNT, metavar="K",
                   help="weights as signed K-bit integers (2-24) times a power of two per projection, as neuromorphic "
                   "chips store them (implies --fixed-point; 8 runs the tensor engine's int8 convolutions in one digit "
                   "instead of three; a different network: compare its accuracy)")


def _add_simulation_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("simulation")
    g.add_argument("--steps", type=_COUNT, help="time steps per sample (default 128)")
    g.add_argument("--dt", help="time step, e.g. 1ms (default: the network's)")
    g.add_argument("--batch-size", dest="batch_size", type=_COUNT, help="samples per Brian2 network (default: fit --max-memory)")
    g.add_argument("--target", choices=["auto", "numpy", "cython", "cpp_standalone"], help="Brian2 code generation target")
    g.add_argument("--max-memory", dest="max_memory", help="memory budget, e.g. 500MB (shared by the workers)")
    g.add_argument("--workers", type=_int_arg(0), help="processes simulating batches in parallel (runtime targets); 0 = one per core")
    _add_engine_args(g)
    g.add_argument("--scheduler", help="run batches as Dask tasks: 'local' (a local cluster of --workers processes) or tcp://HOST:PORT")


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser (exposed for documentation and tests)."""
    parser = argparse.ArgumentParser(
        prog="spikebridge",
        description="Convert trained ANNs into Brian2 spiking networks and measure how faithful, fast and costly they are.",
    )
    parser.add_argument("--version", action="version", version=f"spikebridge {__version__}")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output")
    parser.add_argument("-q", "--quiet", action="store_true", help="only errors and results")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("inspect", help="print layers, shapes, parameters and MACs of a model (or a network file)")
    p.add_argument("model", help="model file (.h5, .keras, .onnx, .pt + --architecture not supported here) or network file")
    p.add_argument("--format", help="force a format (see `spikebridge formats`)")
    p.add_argument("--input-shape", dest="input_shape", help="per-sample input shape, e.g. 1,28,28, when the file does not say")
    p.set_defaults(func=cmd_inspect)

    p = sub.add_parser("formats", help="list model formats and whether their optional package is installed")
    p.set_defaults(func=cmd_formats)

    p = sub.add_parser("convert", help="convert a model into a spiking network file")
    p.add_argument("model")
    p.add_argument("-o", "--output", required=True, help="network file to write (.h5)")
    p.add_argument("--format", help="force a model format")
    p.add_argument("--calibration", default="digits:train", help="calibration data: digits[:train|test], mnist[:train|test], fashion-mnist[:train|test], a .npz/.h5 file, or idx:IMAGES[,LABELS]")
    p.add_argument("--calibration-samples", dest="calibration_samples", type=_COUNT, default=None,
                   help="use the first N calibration samples (default: up to 5,000, ConversionConfig.normalisation_samples)")
    p.add_argument("--data-dir", dest="data_dir", help=_DATA_DIR_HELP)
    p.add_argument("--seed", type=_SEED)
    p.add_argument("--overwrite", action="store_true")
    _add_conversion_args(p)
    p.set_defaults(func=cmd_convert)

    p = sub.add_parser("simulate", help="simulate a network file on a data set and report accuracy and time")
    p.add_argument("network")
    p.add_argument("--data", default="digits:test", help="digits[:train|test], mnist[:train|test], fashion-mnist[:train|test], a .npz/.h5 file, or idx:IMAGES[,LABELS]")
    p.add_argument("--data-dir", dest="data_dir", help=_DATA_DIR_HELP)
    p.add_argument("--limit", type=_COUNT, help="use only the first N samples")
    p.add_argument("-o", "--output", help="spike store to write (.h5), streamed batch by batch")
    p.add_argument("--resume", action="store_true", help="continue an interrupted run into --output")
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("--compression", choices=["auto", "lzf", "gzip", "none"], default=None,
                   help="filter of a new --output store's datasets: auto (default: lzf, spike rasters and ANN activations unfiltered), "
                   "lzf (smaller, slower), gzip (smallest, slowest), none (largest)")
    p.add_argument("--record", help="populations whose every spike is kept (comma-separated, or 'all'; default all with --output, none without)")
    p.add_argument("--seed", type=_SEED)
    p.add_argument("--config", help="TOML file with a [simulation] table")
    p.add_argument("--steps-per-element", dest="steps_per_element", type=_COUNT,
                   help="sequence networks: K, which must be the K the network was converted with (its recurrent delay); "
                   "without --steps the run covers every element, sequence length x K steps (the default for them)")
    _add_simulation_args(p)
    p.set_defaults(func=cmd_simulate)

    p = sub.add_parser("compare", help="compare a spike store's SNN output with the ANN")
    p.add_argument("spikes")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--plots", help="directory to write figures to")
    p.add_argument("--overwrite", action="store_true", help="replace existing figures")
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser("graph", help="analyse the connectivity of a network file (or the weight changes in a spike store)")
    p.add_argument("network", help="network file, or a spike store with weight recordings")
    p.add_argument("--json", action="store_true")
    p.add_argument("--graphml", help="write the graph as GraphML")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --graphml or --plot file")
    p.add_argument("--level", choices=["population", "neuron"], default="population")
    p.add_argument("--sample", type=_int_arg(3), help="run non-scaling measures on a sampled subgraph of this many neurons")
    p.add_argument("--plot", help="figure of the recurrent weight matrix and loop structure (networks with loops)")
    p.set_defaults(func=cmd_graph)

    p = sub.add_parser("export", help="export a spike store to NWB, a network to NIR or to a Brian2 script")
    p.add_argument("source", help="spike store (for --nwb) or network file (for --nir)")
    p.add_argument("--nwb", help="NWB file to write")
    p.add_argument("--nir", help="NIR file to write")
    p.add_argument("--brian2", metavar="OUT_DIR", help="write a standalone Brian2 script (+ .npz of arrays) of a network file")
    p.add_argument("--data", default="digits:test", help="inputs the Brian2 script simulates (default digits:test)")
    p.add_argument("--data-dir", dest="data_dir", help=_DATA_DIR_HELP)
    p.add_argument("--limit", type=_COUNT, default=10, help="samples the Brian2 script simulates (default 10)")
    p.add_argument("--steps", type=_COUNT, default=128, help="time steps the Brian2 script runs (default 128)")
    p.add_argument("--seed", type=_SEED, default=0, help="seed of Poisson inputs (as simulate --seed)")
    p.add_argument("--overwrite", action="store_true", help="replace existing files")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("demo", help="convert, simulate, compare and report on the shipped digits models")
    p.add_argument("--out", default="spikebridge_demo", help="output directory (default ./spikebridge_demo)")
    p.add_argument("--quick", action="store_true", help="MLP only, fewer time steps")
    p.add_argument("--steps", type=_COUNT, help="time steps per sample (default 128, 64 with --quick)")
    p.add_argument("--target", choices=["auto", "numpy", "cython", "cpp_standalone"],
                   help="Brian2 target (default numpy: nothing to compile, so the first demo takes seconds, not minutes)")
    p.add_argument("--workers", type=_int_arg(0), default=0, help="parallel simulation processes (default 0 = one per core)")
    p.add_argument("--limit", type=_COUNT, help="use only the first N test samples")
    p.add_argument("--resume", action="store_true", help="continue an interrupted demo in --out")
    _add_engine_args(p)
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("run", help="run convert -> simulate -> compare -> graph -> report from a TOML file")
    p.add_argument("experiment", help="experiment TOML file (see docs/cli.md)")
    p.add_argument("--max-points", type=int, default=1000, metavar="N",
                   help="refuse a [sweep] of more than N points (default 1000)")
    p.add_argument("--data-dir", dest="data_dir", help=_DATA_DIR_HELP + "; overrides [data] data_dir")
    p.add_argument("--out", help="output directory (overrides [experiment] out)")
    p.add_argument("--resume", action="store_true")
    p.add_argument("--overwrite", action="store_true")
    _add_engine_args(p)
    p.set_defaults(func=cmd_run)

    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI.

    Parameters
    ----------
    argv : sequence of str, optional
        Arguments without the program name (default ``sys.argv[1:]``).

    Returns
    -------
    int
        Exit status (see ``EXIT_CODES`` and docs/cli.md): 0 success, 1 error (bad
        input, files, OS errors: one line on stderr), 2 usage error, 3 internal
        error (an unexpected exception: one line naming it; ``--debug`` shows
        the traceback), 130 interrupted, 141 output pipe closed (``| head``).
    """
    if argv is None:
        # the program itself (not main([...]) called in someone's process): its memory is ours to tune
        from .run.batches import tune_malloc

        tune_malloc()
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits on --help and usage errors
        return int(exc.code or 0)
    level = logging.WARNING - 10 * args.verbose if not args.quiet else logging.ERROR
    logging.basicConfig(level=max(level, logging.DEBUG), format="%(levelname)s %(name)s: %(message)s")
    if args.verbose < 2:
        # Dask's INFO lines (worker start/stop, scheduler addresses) would bury a sweep's progress; -vv shows them
        os.environ.setdefault("DASK_LOGGING__DISTRIBUTED", "warning")
    # what was chosen for the user (engine, target) and what compiles: one line each, shown unless --quiet
    notice = logging.getLogger("spikebridge.notice")
    for old in [h for h in notice.handlers if getattr(h, "spikebridge_cli", False)]:
        notice.removeHandler(old)  # an earlier main() in this process (tests) wrote to another stderr
    if not args.quiet:
        notice.setLevel(min(logging.INFO, level))
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("spikebridge: %(message)s"))
        handler.spikebridge_cli = True  # type: ignore[attr-defined]
        notice.addHandler(handler)
        notice.propagate = False
    else:
        notice.setLevel(logging.ERROR)
        notice.propagate = True
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    if not args.debug:
        # one line per warning, without the source line Python would show
        warnings.showwarning = lambda message, category, *rest, **kw: print(
            f"spikebridge: {category.__name__}: {message}", file=sys.stderr
        )
    # Ctrl-C raised while Python runs a destructor or weakref callback is "ignored" (printed
    # as a traceback, and the run goes on): count it, and exit as interrupted at the end
    swallowed: list[BaseException] = []
    previous_hook = sys.unraisablehook

    def note_interrupt(unraisable: Any) -> None:
        if isinstance(unraisable.exc_value, KeyboardInterrupt):
            swallowed.append(unraisable.exc_value)
        else:
            previous_hook(unraisable)

    sys.unraisablehook = note_interrupt
    try:
        status = int(args.func(args) or 0)
        if swallowed:
            raise KeyboardInterrupt
        return status
    except KeyboardInterrupt:
        print("spikebridge: interrupted", file=sys.stderr)
        return EXIT_CODES["interrupted"]
    except BrokenPipeError:
        # the reader went away (`spikebridge ... | head`): stop quietly, like a program killed by SIGPIPE;
        # stdout is pointed at /dev/null so the interpreter's final flush cannot complain either
        _silence_stdout()
        return EXIT_CODES["broken pipe"]
    except (SpikebridgeError, OSError) as err:  # OSError: missing/existing/unreadable files, permissions, disk
        if args.debug:
            raise
        msg = _error_line(err)
        print(f"spikebridge: error: {msg}", file=sys.stderr)
        if type(err).__name__ == "StoreFullError":
            # HDF5 still holds the objects whose writes failed and would crash the interpreter
            # while shutting down (inside H5_term_library); what reached the disk is complete
            sys.stderr.flush()
            sys.stdout.flush()
            os._exit(EXIT_CODES["error"])
        return EXIT_CODES["error"]
    except Exception as err:  # noqa: BLE001 - the promise is one line, whatever went wrong
        if args.debug:
            raise
        text = _error_line(err, "")[:300]
        print(f"spikebridge: internal error: {type(err).__name__}{': ' + text if text else ''}; "
              "rerun with --debug for the traceback", file=sys.stderr)
        return EXIT_CODES["internal error"]
    finally:
        sys.unraisablehook = previous_hook
        for h in [h for h in notice.handlers if getattr(h, "spikebridge_cli", False)]:
            notice.removeHandler(h)  # the stderr it wrote to may be gone after main() returns
        notice.propagate = True
        notice.setLevel(logging.NOTSET)


#: exit statuses of :func:`main` (documented in docs/cli.md)
def _error_line(err: BaseException, empty: str | None = None) -> str:
    """The first line of ``err``'s message for the one-line error, without Python's raw ``[Errno N]``
    prefix (an OSError says "No such file or directory: 'x'", the words alone); ``empty`` (default: the
    exception's type name) when there is no message."""
    text = str(err).splitlines()[0] if str(err) else ""
    text = re.sub(r"\[Errno -?\d+\]\s*", "", text).strip()
    return text or (type(err).__name__ if empty is None else empty)


EXIT_CODES = {"ok": 0, "error": 1, "usage": 2, "internal error": 3, "interrupted": 130, "broken pipe": 141}


def _silence_stdout() -> None:
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # stdout without a file descriptor (captured): nothing to silence
        pass

