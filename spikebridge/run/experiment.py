"""The whole job in one call: convert → simulate → compare → graph → report.

Used by ``spikebridge demo`` (on the shipped digits models) and
``spikebridge run experiment.toml`` (any model and data).  Every stage writes
its result into the output directory as it finishes, so an interrupted run
keeps what it finished and ``resume=True`` continues the simulation.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import warnings

import numpy as np
from numpy.typing import NDArray

from ..config import ConversionConfig, SimulationConfig, check_int, load_toml
from ..errors import AccuracyWarning, ValidationError

log = logging.getLogger(__name__)

__all__ = [
    "ExperimentSpec", "ModelResult", "run_experiment", "load_experiment", "demo_spec", "EXPERIMENT_KEYS",
    "check_labels", "warn_dt",
]

#: documented keys of an experiment TOML file, per table
EXPERIMENT_KEYS: dict[str, dict[str, str]] = {
    "experiment": {
        "name": "title of the report",
        "out": "output directory (created); CLI --out overrides it",
    },
    "model": {
        "path": "model file, or shipped:NAME for a shipped model (digits_mlp, digits_cnn)",
        "format": "force a model format (see `spikebridge formats`)",
        "name": "label used in file names and the report (default: the file's stem)",
    },
    "data": {
        "calibration": "calibration data spec (digits:train, a .npz/.h5 file, idx:IMAGES,LABELS)",
        "test": "test data spec (default digits:test)",
        "calibration_samples": "use only the first N calibration samples",
        "limit": "use only the first N test samples",
    },
    "conversion": {k: "see ConversionConfig" for k in ConversionConfig.__dataclass_fields__},
    "simulation": {k: "see SimulationConfig" for k in SimulationConfig.__dataclass_fields__},
    "sweep": {
        "conversion": "conversion.KEY = [values]: one experiment per value (see spikebridge.run.sweep)",
        "simulation": "simulation.KEY = [values]: one experiment per value (see spikebridge.run.sweep)",
    },
    "report": {
        "plots": "write figures (needs matplotlib)",
        "graph": "run the connectivity analysis",
        "raster_samples": "number of samples shown in the spike raster",
    },
}


@dataclass
class ExperimentSpec:
    """One experiment: a model, data, configs and report options.

    Parameters
    ----------
    model : str
        Path of a model file, or ``"shipped:NAME"``.
    name : str
        Label for file names and the report.
    conversion, simulation : ConversionConfig, SimulationConfig
    calibration, test : str
        Data specs understood by :func:`spikebridge.datasets.load_dataset`.
    calibration_samples, limit : int or None
    model_format : str or None
    plots, graph : bool
    raster_samples : int
    """

    model: str
    name: str
    conversion: ConversionConfig = field(default_factory=ConversionConfig)
    simulation: SimulationConfig = field(default_factory=SimulationConfig)
    calibration: str = "digits:train"
    test: str = "digits:test"
    calibration_samples: int | None = None
    limit: int | None = None
    model_format: str | None = None
    plots: bool = True
    graph: bool = True
    raster_samples: int = 3

    def __post_init__(self) -> None:
        # refuse what would otherwise be reinterpreted silently (limit 0 = all, -5 = all but 5, "no" = True)
        for key in ("calibration_samples", "limit"):
            if getattr(self, key) is not None:
                check_int(getattr(self, key), f"[data] {key}")
        for key in ("plots", "graph"):
            if not isinstance(getattr(self, key), bool):
                raise ValidationError(f"[report] {key}: expected true or false, got {getattr(self, key)!r}", attr=key)
        check_int(self.raster_samples, "[report] raster_samples", 0)


@dataclass
class ModelResult:
    """What one experiment produced (paths and headline numbers)."""

    name: str
    network_path: Path
    store_path: Path
    summary: dict[str, Any]
    comparison: dict[str, Any]
    graph: dict[str, Any] | None
    ops: dict[str, Any] | None
    figures: dict[str, Path]
    timings: dict[str, float]


def load_experiment(path: str | Path) -> tuple[ExperimentSpec, str | None, str]:
    """Read an experiment TOML file.

    Returns
    -------
    spec : ExperimentSpec
    out : str or None
        The ``[experiment] out`` directory, if given.
    title : str
        The ``[experiment] name``.

    Raises
    ------
    ValidationError
        Unknown table or key (the message names it and lists the known ones),
        or a bad value.
    """
    raw = load_toml(path)
    unknown = sorted(set(raw) - set(EXPERIMENT_KEYS))
    if unknown:
        raise ValidationError(
            f"experiment file '{path}': unknown table [{unknown[0]}]; known tables: {', '.join(EXPERIMENT_KEYS)}", attr=unknown[0]
        )
    for table, keys in EXPERIMENT_KEYS.items():
        section = raw.get(table, {})
        if not isinstance(section, Mapping):
            raise ValidationError(f"experiment file '{path}': [{table}] must be a table", attr=table)
        bad = sorted(set(section) - set(keys))
        if bad:
            raise ValidationError(
                f"experiment file '{path}': unknown key '{bad[0]}' in [{table}]; known keys: {', '.join(sorted(keys))}",
                attr=f"{table}.{bad[0]}",
            )
    model = raw.get("model", {})
    if "path" not in model:
        raise ValidationError(f"experiment file '{path}': [model] needs 'path'", attr="model.path")
    data = raw.get("data", {})
    rep = raw.get("report", {})
    exp = raw.get("experiment", {})
    model_path = str(model["path"])
    if not model_path.startswith("shipped:") and not Path(model_path).is_absolute():
        model_path = str((Path(path).parent / model_path).resolve())
    spec = ExperimentSpec(
        model=model_path,
        name=check_name(str(model.get("name") or Path(model_path.replace("shipped:", "")).stem), f"experiment file '{path}': [model] name"),
        model_format=model.get("format"),
        conversion=ConversionConfig.from_dict(raw.get("conversion", {})),
        simulation=SimulationConfig.from_dict(raw.get("simulation", {})),
        calibration=str(data.get("calibration", "digits:train")),
        test=str(data.get("test", "digits:test")),
        calibration_samples=data.get("calibration_samples"),
        limit=data.get("limit"),
        plots=rep.get("plots", True),
        graph=rep.get("graph", True),
        raster_samples=rep.get("raster_samples", 3),
    )
    out = exp.get("out")
    if out is not None and not isinstance(out, str):
        raise ValidationError(f"experiment file '{path}': [experiment] out must be a directory name (a string), got {out!r}", attr="experiment.out")
    return spec, out, str(exp.get("name", spec.name))


def check_labels(y: NDArray[Any] | None, snn: Any, what: str) -> None:
    """Refuse classification labels that are not class indices of ``snn``'s output.

    Parameters
    ----------
    y : ndarray or None
        Labels of the data (None: nothing to check).
    snn : SpikingNetwork
    what : str
        Where the labels come from, for the message (e.g. ``"--data"``).

    Raises
    ------
    ValidationError
        Non-integer labels, or labels outside ``0 .. n_classes - 1`` (a single
        output, a binary logit, has the 2 classes 0 and 1): every such sample
        would count as wrong, silently.
    """
    if y is None or snn.readout.get("task", "classification") != "classification":
        return
    n_out = int(snn.readout.get("n_out") or (snn.populations[snn.output].n if snn.output else 0))
    n_classes = max(n_out, 2)
    lab = np.asarray(y)
    if lab.ndim != 1 or not np.issubdtype(lab.dtype, np.number) or not np.all(lab == np.round(lab)):
        raise ValidationError(f"{what}: labels must be one class index per sample for classifier '{snn.name}'", attr=what)
    bad = (lab < 0) | (lab >= n_classes)
    if bad.any():
        raise ValidationError(
            f"{what}: {int(bad.sum())} of {lab.size} labels lie outside the {n_classes} classes (0..{n_classes - 1}) "
            f"of network '{snn.name}' (found {lab[bad].min():g}..{lab[bad].max():g})",
            attr=what,
        )


#: a simulation step this many times the network's own (or 1/this) draws a warning
DT_RATIO_WARN = 10.0


def warn_dt(snn: Any, dt: float | None, what: str) -> None:
    """Warn (AccuracyWarning) when the simulation step ``dt`` (s) is far from the one ``snn`` was converted for."""
    if dt is None or not snn.dt:
        return
    ratio = float(dt) / float(snn.dt)
    if ratio > DT_RATIO_WARN or ratio < 1 / DT_RATIO_WARN:
        warnings.warn(
            f"{what} {dt:g} s is {ratio:.3g} times the time step of network '{snn.name}' ({snn.dt * 1e3:g} ms); "
            "rates and delays are off by that much, results may be meaningless (convert with --conversion-dt instead)",
            AccuracyWarning,
            stacklevel=2,
        )


def check_name(name: str, what: str = "model name") -> str:
    """``name`` if it is a plain file name (output files are ``<name>_net.h5`` etc. inside the output directory).

    Raises
    ------
    ValidationError
        A path (``"../x"``, ``"/abs"``, ``"a/b"``), ``"."``, ``".."``, an empty name or a NUL byte.
    """
    text = str(name)
    if not text or text in (".", "..") or "/" in text or "\\" in text or "\0" in text or Path(text).is_absolute():
        raise ValidationError(
            f"{what} {text!r} is not a plain file name; it names output files inside the output directory, "
            "so it may not contain '/', '\\' or be '.' or '..'",
            attr="name",
        )
    return text


def existing_outputs(paths: "list[Path]") -> None:
    """Raise if any of ``paths`` exists (nothing is replaced without ``overwrite``)."""
    found = [p for p in paths if p.exists()]
    if found:
        raise ValidationError(
            f"output '{found[0]}' exists" + (f" (and {len(found) - 1} more)" if len(found) > 1 else "")
            + "; pass --overwrite to replace it (or --resume to continue that run)",
            attr="overwrite",
        )


def demo_spec(name: str, *, quick: bool = False, target: str = "auto", dale: str = "none", workers: int = 0) -> ExperimentSpec:
    """The demo's experiment for shipped model ``name`` ("digits_mlp" or "digits_cnn").

    ``dale="relay"`` converts with separate excitatory and inhibitory
    populations; the result is labelled ``<name>_<dale>``.  ``workers``
    simulation processes run in parallel (0 = one per core).
    """
    steps = 64 if quick else 128
    conversion = ConversionConfig(v_init=0.5, percentile=100.0, dale=dale)
    simulation = SimulationConfig(n_steps=steps, target=target, seed=0, record=("all",), workers=workers)
    label = name if dale == "none" else f"{name}_{dale}"
    return ExperimentSpec(model=f"shipped:{name}", name=label, conversion=conversion, simulation=simulation)


def _load_model(spec: ExperimentSpec) -> Any:
    if spec.model.startswith("shipped:"):
        from ..models import load_shipped

        return load_shipped(spec.model.split(":", 1)[1])
    from ..importers.registry import load_model

    return load_model(spec.model, format=spec.model_format)


def run_experiment(
    spec: ExperimentSpec,
    out_dir: str | Path,
    *,
    resume: bool = False,
    overwrite: bool = False,
    say: Callable[[str], None] | None = None,
) -> ModelResult:
    """Convert, simulate, compare, analyse and plot one model; write everything to ``out_dir``.

    Parameters
    ----------
    spec : ExperimentSpec
    out_dir : str or path-like
        Receives ``<name>_net.h5``, ``<name>_spikes.h5``, ``<name>_summary.json``
        and figures ``<name>_*.png``.
    resume : bool
        Continue an interrupted simulation in the existing spike store.
    overwrite : bool
        Replace existing output files.
    say : callable, optional
        Receives one-line progress messages (the CLI prints them).

    Returns
    -------
    ModelResult
    """
    from ..analysis.compare import compare
    from .calibrate import convert
    from ..datasets import load_dataset
    from ..ir import evaluate, predict_classes
    from .store import simulate_to_store

    say = say or (lambda msg: log.info(msg))
    check_name(spec.name)
    out = Path(out_dir)
    if not (overwrite or resume) and out.is_dir():
        existing_outputs([out / f"{spec.name}_net.h5", out / f"{spec.name}_summary.json", *sorted(out.glob(f"{spec.name}_*.png"))])
    out.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    graph = _load_model(spec)
    x_cal, _ = load_dataset(spec.calibration)
    if spec.calibration_samples is not None:
        x_cal = x_cal[: spec.calibration_samples]
    x, y = load_dataset(spec.test)
    if spec.limit is not None:
        x, y = x[: spec.limit], (None if y is None else y[: spec.limit])
    say(f"[{spec.name}] converting ({graph.n_params():,} parameters, {len(x_cal)} calibration samples)")
    snn = convert(graph, spec.conversion, calibration=x_cal)
    check_labels(y, snn, f"test data '{spec.test}'")
    warn_dt(snn, spec.simulation.dt, "[simulation] dt")
    net_path = out / f"{spec.name}_net.h5"
    snn.save(net_path, overwrite=True)
    timings["convert_s"] = time.perf_counter() - t0

    store_path = out / f"{spec.name}_spikes.h5"
    t1 = time.perf_counter()
    say(
        f"[{spec.name}] simulating {len(x)} samples x {spec.simulation.n_steps} steps "
        f"({snn.n_neurons} neurons, {snn.n_synapses} synapses per sample; "
        + (f"engine {spec.simulation.engine}, device {spec.simulation.device}" if spec.simulation.engine != "brian2"
           else f"target {spec.simulation.target}"
           + (", compiling on first use" if spec.simulation.target in ("auto", "cython", "cpp_standalone") else ""))
        + ")"
    )
    record = simulate_to_store(
        snn, x, store_path, spec.simulation, labels=y, resume=resume, overwrite=overwrite, ann_activations=True
    )
    timings["simulate_s"] = time.perf_counter() - t1

    t2 = time.perf_counter()
    report = compare(store_path)
    comparison = report.to_dict()
    timings["compare_s"] = time.perf_counter() - t2

    from ..analysis.ops import operations

    ops_dict = operations(snn, record).to_dict()

    graph_dict = None
    if spec.graph:
        from ..analysis.graph import analyse

        graph_dict = analyse(snn).to_dict()

    figures: dict[str, Path] = {}
    if spec.plots:
        say(f"[{spec.name}] drawing figures")
        from ..analysis.plot import plot_all

        figures = plot_all(store_path, out, prefix=f"{spec.name}_", snn=snn, raster_samples=spec.raster_samples)

    ann_out = evaluate(graph, x).reshape(len(x), -1)
    summary: dict[str, Any] = {
        "model": spec.name,
        "samples": int(len(x)),
        "n_steps": int(record.n_steps),
        "dt_ms": record.dt * 1e3,
        "neurons": snn.n_neurons,
        "synapses": snn.n_synapses,
        "simulate_s": timings["simulate_s"],
    }
    if y is not None and snn.readout.get("task", "classification") == "classification":
        summary["ann_accuracy"] = float(np.mean(predict_classes(ann_out) == y))
        summary["snn_accuracy"] = float(np.mean(record.predictions() == y))
    timings["total_s"] = time.perf_counter() - t0
    (out / f"{spec.name}_summary.json").write_text(
        json.dumps({"summary": summary, "comparison": comparison, "graph": graph_dict, "ops": ops_dict, "timings": timings}, indent=2, default=float)
    )
    return ModelResult(
        name=spec.name,
        network_path=net_path,
        store_path=store_path,
        summary=summary,
        comparison=comparison,
        graph=graph_dict,
        ops=ops_dict,
        figures=figures,
        timings=timings,
    )

