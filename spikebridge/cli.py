"""Command-line interface: one subcommand per arrow of the pipeline.

Each handler parses its arguments, calls one public function and reports.
Errors of ours print one line to stderr and exit 1 (2 for usage errors);
``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from . import __version__
from .config import ConversionConfig, SimulationConfig, load_toml, parse_memory, parse_time
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


def _is_network_file(path: str) -> bool:
    p = Path(path)
    if p.suffix.lower() not in (".h5", ".hdf5") or not p.is_file():
        return False
    import h5py

    try:
        with h5py.File(p, "r") as f:
            fmt = f.attrs.get("format")
    except OSError:
        return False
    if isinstance(fmt, bytes):
        fmt = fmt.decode()
    return fmt == "spikebridge.snn"


def _conversion_config(args: argparse.Namespace) -> ConversionConfig:
    data: dict[str, Any] = {}
    if getattr(args, "config", None):
        raw = load_toml(args.config)
        # a file with tables takes [conversion]; a flat file is the conversion table itself
        has_tables = any(isinstance(v, dict) for v in raw.values())
        data.update(raw.get("conversion", {}) if has_tables else raw)
    overrides = {
        "percentile": args.percentile,
        "neuron": args.neuron,
        "reset": args.reset,
        "v_init": args.v_init,
        "dale": args.dale,
        "input_encoding": args.encoding,
        "output": args.output_mode,
        "lateral_inhibition": args.lateral_inhibition,
        "seed": args.seed,
    }
    if args.normalisation:
        overrides["normalisation"] = args.normalisation
    for key in ("tau_mem", "refractory", "delay", "delay_jitter", "dt"):
        value = getattr(args, key)
        if value is not None:
            overrides[key] = parse_time(value, f"--{key.replace('_', '-')}")
    data.update({k: v for k, v in overrides.items() if v is not None})
    return ConversionConfig.from_dict(data)


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
        from .conversion.network import load_network

        return load_network(path)
    from .importers.registry import load_model

    if (fmt == "nir" or Path(path).suffix.lower() == ".nir") and "dt" not in kwargs:
        kwargs["dt"] = 1e-3
    return load_model(path, format=fmt, **kwargs)


def cmd_inspect(args: argparse.Namespace) -> int:
    from .conversion.network import SpikingNetwork

    kwargs: dict[str, Any] = {}
    if args.input_shape:
        kwargs["input_shape"] = tuple(int(s) for s in args.input_shape.split(","))
    model = _load_any(args.model, args.format, **kwargs)
    if isinstance(model, SpikingNetwork):
        _print_network(model)
        return 0
    graph = model
    _out(f"model '{graph.name}': input {graph.input_shape}, output {graph.output_shape}")
    rows = [(r.name, r.type_name, "x".join(map(str, r.output_shape)), f"{r.n_params:,}", f"{r.macs:,}") for r in graph.summary()]
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


def cmd_convert(args: argparse.Namespace) -> int:
    from .conversion.convert import convert
    from .conversion.network import SpikingNetwork
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
        x, _ = load_dataset(args.calibration)
        calib = x[: args.calibration_samples] if args.calibration_samples else x
    t0 = time.perf_counter()
    snn = convert(graph, config, calibration=calib)
    snn.save(out, overwrite=True)
    _out(f"converted '{graph.name}' -> {out}: {snn.n_neurons} neurons, {snn.n_synapses} synapses per sample ({time.perf_counter() - t0:.2f} s)")
    if snn.scales:
        _out("scales: " + ", ".join(f"{k}={v:.4g}" for k, v in snn.scales.items()))
    return 0


def cmd_simulate(args: argparse.Namespace) -> int:
    import numpy as np

    from .conversion.network import load_network
    from .datasets import load_dataset
    from .ir import evaluate

    snn = load_network(args.network)
    x, y = load_dataset(args.data)
    if args.limit:
        x, y = x[: args.limit], (None if y is None else y[: args.limit])
    extra: dict[str, Any] = {"progress": not args.quiet}
    if args.output and not args.record:
        extra["record"] = ("all",)  # a spike store keeps every spike unless told otherwise
    config = _simulation_config(args, **extra)
    ann_acc = None
    if snn.ann is not None and y is not None and snn.readout.get("task", "classification") == "classification":
        ann_acc = float(np.mean(np.argmax(evaluate(snn.ann, x).reshape(len(x), -1), axis=1) == y))
    t0 = time.perf_counter()
    if args.output:
        from .orchestrate import simulate_to_store

        record = simulate_to_store(
            snn, x, args.output, config, labels=y, resume=args.resume, overwrite=args.overwrite, network_path=args.network
        )
    else:
        from .backend.runner import simulate

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
        err = record.output_values() - ann_out
        rows.append(("RMSE vs ANN", f"{float(np.sqrt(np.mean(err**2))):.4g}"))
    rows.append(("wall time", f"{elapsed:.2f} s"))
    if args.output:
        rows.append(("spike store", str(args.output)))
    _out(_table(rows, ["", "value"]))
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from .analysis.compare import compare

    report = compare(args.spikes)
    if args.json:
        _out(json.dumps(report.to_dict(), indent=2, default=float))
    else:
        _out(report.to_text() if hasattr(report, "to_text") else str(report))
    if args.plots:
        from .analysis.plot import plot_report

        for path in plot_report(args.spikes, args.plots):
            _out(f"wrote {path}")
    return 0


def cmd_graph(args: argparse.Namespace) -> int:
    from .analysis.graph import analyse, write_graphml
    from .conversion.network import load_network

    snn = load_network(args.network)
    report = analyse(snn, sample_size=args.sample)
    if args.graphml:
        write_graphml(snn, args.graphml, level=args.level)
    if args.json:
        _out(json.dumps(report.to_dict(), indent=2, default=float))
    else:
        _out(report.to_text() if hasattr(report, "to_text") else str(report))
    if args.graphml:
        _out(f"wrote {args.graphml}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    if not (args.nwb or args.nir):
        raise ValidationError("export: give --nwb OUT.nwb (for a spike store) or --nir OUT.nir (for a network file)")
    if args.nwb:
        from .export.nwb import export_nwb

        export_nwb(args.source, args.nwb)
        _out(f"wrote {args.nwb}")
    if args.nir:
        from .conversion.network import load_network
        from .importers.to_nir import export_nir

        export_nir(load_network(args.source), args.nir)
        _out(f"wrote {args.nir}")
    return 0


def _print_summary(results: list[Any]) -> None:
    from .analysis.report import SUMMARY_HEADER, summary_rows

    _out(_table(summary_rows(results), SUMMARY_HEADER))


def cmd_demo(args: argparse.Namespace) -> int:
    from .analysis.report import write_report
    from .pipeline import demo_spec, run_experiment

    out = Path(args.out)
    # (model, Dale mode): the plain MLP and CNN, and the MLP with excitatory/inhibitory populations
    runs = [("digits_mlp", "none")] if args.quick else [("digits_mlp", "none"), ("digits_cnn", "none"), ("digits_mlp", "relay")]
    say = (lambda msg: None) if args.quiet else (lambda msg: print(msg, file=sys.stderr, flush=True))
    say(f"spikebridge demo: shipped digits models -> {out}/")
    if not args.target:
        say("simulating with Brian2's numpy target: nothing to compile (--target cython compiles once, minutes, then runs large networks faster)")
    results = []
    for name, dale in runs:
        spec = demo_spec(name, quick=args.quick, target=args.target or "numpy", dale=dale, workers=args.workers)
        if args.limit:
            spec.limit = args.limit
        if args.steps:
            spec.simulation = spec.simulation.__class__.from_dict({**spec.simulation.to_dict(), "n_steps": args.steps})
        results.append(run_experiment(spec, out, resume=args.resume, overwrite=not args.resume, say=say))
    md, html_path = write_report(results, out, title="spikebridge demo: digits ANN vs SNN")
    _print_summary(results)
    _out(f"report: {html_path} (and {md.name}); network files and spike stores in {out}/")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from .analysis.report import write_report
    from .pipeline import load_experiment, run_experiment

    spec, out_cfg, title = load_experiment(args.experiment)
    out = Path(args.out or out_cfg or "spikebridge_out")
    say = (lambda msg: None) if args.quiet else (lambda msg: print(msg, file=sys.stderr, flush=True))
    from .sweep import load_sweep, run_sweep

    sweep = load_sweep(args.experiment)
    if sweep:
        results, files = run_sweep(spec, sweep, out, resume=args.resume, overwrite=args.overwrite, say=say)
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
    g.add_argument("--percentile", type=float, help="activation percentile for the layer scales (default 99.9; 100 = max)")
    g.add_argument("--neuron", choices=["if", "lif"])
    g.add_argument("--tau-mem", dest="tau_mem", help="membrane time constant for lif, e.g. 20ms")
    g.add_argument("--reset", choices=["subtract", "zero"])
    g.add_argument("--refractory", help="refractory period, e.g. 1ms")
    g.add_argument("--v-init", dest="v_init", type=float, help="initial potential as a fraction of threshold")
    g.add_argument("--delay", help="synaptic delay per projection, e.g. 1ms (default one time step)")
    g.add_argument("--delay-jitter", dest="delay_jitter", help="extra random per-synapse delay up to this, e.g. 3ms")
    g.add_argument("--conversion-dt", dest="dt", help="time step the network is converted for, e.g. 1ms")
    g.add_argument("--encoding", choices=["current", "poisson", "regular"])
    g.add_argument("--output-mode", dest="output_mode", choices=["count", "potential"])
    g.add_argument("--dale", choices=["none", "relay", "pooled"])
    g.add_argument("--lateral-inhibition", dest="lateral_inhibition", type=float)


def _add_simulation_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("simulation")
    g.add_argument("--steps", type=int, help="time steps per sample (default 128)")
    g.add_argument("--dt", help="time step, e.g. 1ms (default: the network's)")
    g.add_argument("--batch-size", dest="batch_size", type=int, help="samples per Brian2 network (default: fit --max-memory)")
    g.add_argument("--target", choices=["auto", "numpy", "cython", "cpp_standalone"], help="Brian2 code generation target")
    g.add_argument("--max-memory", dest="max_memory", help="memory budget, e.g. 500MB (shared by the workers)")
    g.add_argument("--workers", type=int, help="processes simulating batches in parallel (runtime targets); 0 = one per core")
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
    p.add_argument("--calibration", default="digits:train", help="calibration data: digits[:train|test], a .npz/.h5 file, or idx:IMAGES[,LABELS]")
    p.add_argument("--calibration-samples", dest="calibration_samples", type=int, default=None)
    p.add_argument("--seed", type=int)
    p.add_argument("--overwrite", action="store_true")
    _add_conversion_args(p)
    p.set_defaults(func=cmd_convert)

    p = sub.add_parser("simulate", help="simulate a network file on a data set and report accuracy and time")
    p.add_argument("network")
    p.add_argument("--data", default="digits:test", help="digits[:train|test], a .npz/.h5 file, or idx:IMAGES[,LABELS]")
    p.add_argument("--limit", type=int, help="use only the first N samples")
    p.add_argument("-o", "--output", help="spike store to write (.h5), streamed batch by batch")
    p.add_argument("--resume", action="store_true", help="continue an interrupted run into --output")
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("--record", help="populations whose every spike is kept (comma-separated, or 'all'; default all with --output, none without)")
    p.add_argument("--seed", type=int)
    p.add_argument("--config", help="TOML file with a [simulation] table")
    _add_simulation_args(p)
    p.set_defaults(func=cmd_simulate)

    p = sub.add_parser("compare", help="compare a spike store's SNN output with the ANN")
    p.add_argument("spikes")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--plots", help="directory to write figures to")
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser("graph", help="analyse the connectivity of a network file")
    p.add_argument("network")
    p.add_argument("--json", action="store_true")
    p.add_argument("--graphml", help="write the graph as GraphML")
    p.add_argument("--level", choices=["population", "neuron"], default="population")
    p.add_argument("--sample", type=int, help="run non-scaling measures on a sampled subgraph of this many neurons")
    p.set_defaults(func=cmd_graph)

    p = sub.add_parser("export", help="export a spike store to NWB or a network to NIR")
    p.add_argument("source", help="spike store (for --nwb) or network file (for --nir)")
    p.add_argument("--nwb", help="NWB file to write")
    p.add_argument("--nir", help="NIR file to write")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("demo", help="convert, simulate, compare and report on the shipped digits models")
    p.add_argument("--out", default="spikebridge_demo", help="output directory (default ./spikebridge_demo)")
    p.add_argument("--quick", action="store_true", help="MLP only, fewer time steps")
    p.add_argument("--steps", type=int, help="time steps per sample (default 128, 64 with --quick)")
    p.add_argument("--target", choices=["auto", "numpy", "cython", "cpp_standalone"],
                   help="Brian2 target (default numpy: nothing to compile, so the first demo takes seconds, not minutes)")
    p.add_argument("--workers", type=int, default=0, help="parallel simulation processes (default 0 = one per core)")
    p.add_argument("--limit", type=int, help="use only the first N test samples")
    p.add_argument("--resume", action="store_true", help="continue an interrupted demo in --out")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("run", help="run convert -> simulate -> compare -> graph -> report from a TOML file")
    p.add_argument("experiment", help="experiment TOML file (see docs/cli.md)")
    p.add_argument("--out", help="output directory (overrides [experiment] out)")
    p.add_argument("--resume", action="store_true")
    p.add_argument("--overwrite", action="store_true")
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
        Exit status: 0 success, 1 error, 2 usage error, 130 interrupted.
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits on --help and usage errors
        return int(exc.code or 0)
    level = logging.WARNING - 10 * args.verbose if not args.quiet else logging.ERROR
    logging.basicConfig(level=max(level, logging.DEBUG), format="%(levelname)s %(name)s: %(message)s")
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    if not args.debug:
        # one line per warning, without the source line Python would show
        warnings.showwarning = lambda message, category, *rest, **kw: print(
            f"spikebridge: {category.__name__}: {message}", file=sys.stderr
        )
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("spikebridge: interrupted", file=sys.stderr)
        return 130
    except (SpikebridgeError, FileNotFoundError, FileExistsError) as err:
        if args.debug:
            raise
        msg = str(err).splitlines()[0] if str(err) else type(err).__name__
        print(f"spikebridge: error: {msg}", file=sys.stderr)
        return 1

