"""Parameter sweeps: one experiment per point of a grid, a summary table and plot.

An experiment TOML file (see :mod:`spikebridge.run.experiment`) may carry a
``[sweep]`` table of lists of values for conversion and simulation keys::

    [sweep]
    conversion.percentile = [99.0, 99.9, 100.0]
    simulation.n_steps = [32, 64, 128]

Every combination (the Cartesian product, here 9 points) is one experiment
with its own network file and spike store (``<name>-percentile_99.9-n_steps_32_spikes.h5``).
``sweep_summary.json`` / ``sweep_summary.md`` tabulate the swept values with
the ANN and SNN accuracy and simulation time of every point, and
``sweep_accuracy.png`` plots SNN accuracy against each swept value.

With ``[simulation] scheduler`` set, every point is a Dask task (on a remote
cluster the output directory must be on a file system the workers share);
inside a task the point simulates in that one worker process.  Without it the
points run one after another here, each with the configured ``workers``.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import logging
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ..config import ConversionConfig, SimulationConfig, load_toml
from ..errors import ValidationError
from .experiment import ExperimentSpec, ModelResult, run_experiment

log = logging.getLogger(__name__)

__all__ = ["SweepPoint", "load_sweep", "sweep_points", "run_sweep"]

_TABLES: dict[str, type[ConversionConfig] | type[SimulationConfig]] = {"conversion": ConversionConfig, "simulation": SimulationConfig}
#: keys a sweep cannot vary: they decide where and how the sweep itself runs, not what it measures
_FIXED = {"scheduler", "workers", "progress", "build_dir"}


@dataclasses.dataclass(frozen=True)
class SweepPoint:
    """One point: the swept values (``"conversion.percentile"`` → value) and its experiment."""

    values: dict[str, Any]
    spec: ExperimentSpec


def load_sweep(path: str | Path) -> dict[str, list[Any]]:
    """The ``[sweep]`` table of an experiment file as ``{"table.key": [values]}`` ({} when absent).

    Raises
    ------
    ValidationError
        A key outside [conversion]/[simulation], an unknown or unsweepable key,
        or a value that is not a non-empty list.
    """
    raw = load_toml(path).get("sweep", {})
    if not isinstance(raw, Mapping):
        raise ValidationError(f"experiment file '{path}': [sweep] must be a table", attr="sweep")
    out: dict[str, list[Any]] = {}
    for table, keys in raw.items():
        if table not in _TABLES or not isinstance(keys, Mapping):
            raise ValidationError(
                f"experiment file '{path}': [sweep] key '{table}' must be a table of conversion.KEY or simulation.KEY lists",
                attr=f"sweep.{table}",
            )
        known = {f.name for f in dataclasses.fields(_TABLES[table])}
        for key, values in keys.items():
            if key not in known or key in _FIXED:
                why = "cannot be swept" if key in _FIXED else f"is not a {table} key; known keys: {', '.join(sorted(known - _FIXED))}"
                raise ValidationError(f"experiment file '{path}': [sweep] {table}.{key} {why}", attr=f"sweep.{table}.{key}")
            if not isinstance(values, list) or not values:
                raise ValidationError(
                    f"experiment file '{path}': [sweep] {table}.{key} must be a non-empty list of values, got {values!r}",
                    attr=f"sweep.{table}.{key}",
                )
            out[f"{table}.{key}"] = values
    return out


def _label(value: Any) -> str:
    """A value as a plain file-name part: ``99.9`` → ``99.9``, ``["all"]`` → ``all``."""
    text = "_".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)
    return re.sub(r"[^A-Za-z0-9.+-]+", "_", text).strip("_") or "none"


def sweep_points(base: ExperimentSpec, sweep: Mapping[str, Sequence[Any]]) -> list[SweepPoint]:
    """Every combination of the swept values, as experiments derived from ``base``.

    Each point's configurations are rebuilt through ``from_dict``, so a bad
    value fails here (naming the key) before anything runs.
    """
    keys = list(sweep)
    points = []
    for combo in itertools.product(*(sweep[k] for k in keys)):
        values = dict(zip(keys, combo))
        tables = {"conversion": base.conversion.to_dict(), "simulation": base.simulation.to_dict()}
        for key, value in values.items():
            table, name = key.split(".", 1)
            tables[table][name] = value
        name = "-".join([base.name] + [f"{k.split('.', 1)[1]}_{_label(v)}" for k, v in values.items()])
        spec = dataclasses.replace(
            base,
            name=name,
            conversion=ConversionConfig.from_dict(tables["conversion"]),
            simulation=SimulationConfig.from_dict(tables["simulation"]),
        )
        points.append(SweepPoint(values=values, spec=spec))
    if len({p.spec.name for p in points}) < len(points):
        # two values with the same file-name form (e.g. "a b" and "a_b"): number the points instead
        points = [dataclasses.replace(p, spec=dataclasses.replace(p.spec, name=f"{base.name}-point{k}")) for k, p in enumerate(points)]
    return points


def _run_point(spec: ExperimentSpec, out_dir: str, resume: bool, overwrite: bool) -> ModelResult:
    """One point inside a Dask task: simulated in this worker process alone."""
    local = dataclasses.replace(spec, simulation=dataclasses.replace(spec.simulation, scheduler=None, workers=1, progress=False))
    return run_experiment(local, out_dir, resume=resume, overwrite=overwrite)


def run_sweep(
    base: ExperimentSpec,
    sweep: Mapping[str, Sequence[Any]],
    out_dir: str | Path,
    *,
    resume: bool = False,
    overwrite: bool = False,
    say: Callable[[str], None] | None = None,
) -> tuple[list[ModelResult], dict[str, Path]]:
    """Run every point of ``sweep`` over ``base``; write the summary table and plot.

    Parameters
    ----------
    base : ExperimentSpec
        The experiment every point starts from.
    sweep : mapping of "table.key" to a list of values
        From :func:`load_sweep`.
    out_dir : str or path-like
        Receives every point's files and ``sweep_summary.json``,
        ``sweep_summary.md`` and ``sweep_accuracy.png`` (when ``base.plots``).
    resume, overwrite, say
        As in :func:`~spikebridge.run.experiment.run_experiment`.

    Returns
    -------
    results : list of ModelResult
        In grid order.
    files : dict of str to Path
        ``"json"``, ``"markdown"`` and (with plots) ``"plot"``.
    """
    say = say or (lambda msg: log.info(msg))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    points = sweep_points(base, sweep)
    say(f"sweep: {len(points)} point(s) over {', '.join(sweep)}")
    scheduler = base.simulation.scheduler
    if scheduler is None:
        results = []
        for k, p in enumerate(points):
            say(f"sweep point {k + 1}/{len(points)}: " + ", ".join(f"{key}={v}" for key, v in p.values.items()))
            results.append(run_experiment(p.spec, out, resume=resume, overwrite=overwrite, say=say))
    else:
        from .distributed import dask_client, register_brian2_import

        with dask_client(scheduler, base.simulation.workers if base.simulation.workers >= 1 else 0) as client:
            register_brian2_import(client)
            futures = [client.submit(_run_point, p.spec, str(out.resolve()), resume, overwrite, pure=False) for p in points]
            results = []
            for k, fut in enumerate(futures):
                results.append(fut.result())
                say(f"sweep point {k + 1}/{len(points)} done: {results[-1].name}")
    return results, write_sweep_summary(points, results, out, plots=base.plots)


def write_sweep_summary(points: Sequence[SweepPoint], results: Sequence[ModelResult], out: Path, *, plots: bool = True) -> dict[str, Path]:
    """Write ``sweep_summary.json``/``.md`` (and ``sweep_accuracy.png``) for finished points."""
    keys = list(points[0].values) if points else []
    rows = []
    for p, r in zip(points, results):
        s = r.summary
        rows.append({**p.values, "name": r.name, "ann_accuracy": s.get("ann_accuracy"), "snn_accuracy": s.get("snn_accuracy"),
                     "agreement": r.comparison.get("agreement"), "simulate_s": s.get("simulate_s"),
                     "store": r.store_path.name})
    files = {"json": out / "sweep_summary.json", "markdown": out / "sweep_summary.md"}
    files["json"].write_text(json.dumps({"swept": keys, "points": rows}, indent=2, default=float))

    def pct(v: Any) -> str:
        return "–" if v is None else f"{100 * float(v):.2f} %"

    header = keys + ["ANN acc", "SNN acc", "agreement", "sim time", "spike store"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        cells = [str(row[k]) for k in keys] + [pct(row["ann_accuracy"]), pct(row["snn_accuracy"]), pct(row["agreement"]),
                                               f"{row['simulate_s']:.1f} s", row["store"]]
        lines.append("| " + " | ".join(cells) + " |")
    files["markdown"].write_text("# Sweep\n\n" + "\n".join(lines) + "\n")
    if plots and rows and all(r["snn_accuracy"] is not None for r in rows):
        from ..analysis.plot import plot_sweep

        files["plot"] = plot_sweep(rows, keys, out / "sweep_accuracy.png")
    return files
