"""How faithful is the spiking network?  ANN versus SNN, from a spike store or a record.

Definitions (all per sample unless said otherwise)
--------------------------------------------------
* **Accuracy at step k**: classification accuracy of
  :meth:`~spikebridge.store.record.SpikeRecord.predictions` after ``k + 1``
  steps.  ``steps_within["0.5"]`` is the number of steps ``T`` from which on
  SNN accuracy stays at most 0.5 percentage points below the ANN's, at every
  later step too (``None`` if it is not within at the last step); likewise ``"0.1"``.
* **Agreement**: share of samples whose SNN prediction (after all steps)
  equals the ANN's argmax (a single output, a binary logit, is decoded by its sign).
* **Firing rate** of a neuron: ``count / T_eff`` spikes per step, with
  ``T_eff = n_steps - latency`` the steps after the first spike can reach the
  population through the pipeline.
* **Normalised activation**: ``max(a, 0) / λ_layer`` with ``λ`` the layer's
  normalisation scale (``snn.scales``).  A perfect conversion gives
  rate = normalised activation (capped at 1 spike per step).
* Regression tasks are judged by error (RMSE and MAE of the decoded output
  against the labels, or against the ANN when there are no labels), not by argmax.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ..errors import ValidationError
from ..ir.evaluate import predict_classes
from ..store.record import SpikeRecord
from .diagnose import Diagnosis, diagnose

if TYPE_CHECKING:
    from ..snn.network import SpikingNetwork
    from ..store.spikes import SpikeStore

__all__ = ["ComparisonReport", "LayerFidelity", "LayerData", "compare", "layer_data", "load_comparison_inputs", "ComparisonInputs"]

#: tolerances (fraction, i.e. percentage points / 100) for ``steps_within``
WITHIN = {"0.5": 0.005, "0.1": 0.001}


@dataclass
class LayerData:
    """Rates and normalised activations of one population, shape (n_samples, n_neurons)."""

    population: str
    layer: str
    counts: NDArray[np.int64]
    effective_steps: int
    activation: NDArray[np.float64]
    scale: float

    @property
    def rate(self) -> NDArray[np.float64]:
        """Spikes per step."""
        return self.counts / float(self.effective_steps)


@dataclass
class LayerFidelity:
    """How well one population's rates follow its ANN layer.

    Attributes
    ----------
    population, layer : str
    n_neurons : int
    effective_steps : int
        Steps after the pipeline latency of this population.
    correlation : float or None
        Pearson correlation of rate and normalised activation over all
        (sample, neuron) pairs (None when either is constant).
    slope, intercept : float or None
        Least-squares fit ``rate ≈ slope × activation + intercept``.
    rmse : float
        Root-mean-square of ``rate - min(activation, 1)`` in spikes per step.
    rate_ratio : float or None
        ``Σ rate / Σ min(activation, 1)``: 1 is perfect, 0.8 means rates fall 20 % short.
    mean_rate, mean_activation : float
    saturated_fraction : float
        Share of (sample, neuron) pairs that fire at every effective step.
    above_one_fraction : float
        Share of normalised activations above 1 (more than a neuron can express).
    silent_active_fraction : float or None
        Among pairs whose activation asks for at least one spike
        (``activation × T_eff ≥ 1``), the share that never fired.
    """

    population: str
    layer: str
    n_neurons: int
    effective_steps: int
    correlation: float | None
    slope: float | None
    intercept: float | None
    rmse: float
    rate_ratio: float | None
    mean_rate: float
    mean_activation: float
    saturated_fraction: float
    above_one_fraction: float
    silent_active_fraction: float | None


@dataclass
class ComparisonReport:
    """ANN versus SNN numbers; ``to_dict()`` is what ``spikebridge compare --json`` prints."""

    task: str
    n_samples: int
    n_steps: int
    dt: float
    ann_accuracy: float | None = None
    snn_accuracy: float | None = None
    accuracy_t: list[float] | None = None
    steps_within: dict[str, int | None] = field(default_factory=dict)
    agreement: float | None = None
    ann_rmse: float | None = None
    ann_mae: float | None = None
    snn_rmse: float | None = None
    snn_mae: float | None = None
    snn_ann_rmse: float | None = None
    error_t: list[float] | None = None
    #: sequence networks (``readout["window_steps"]``): classification accuracy of each window's
    #: read-out (element t), the RMSE of each element's output against the target (or the ANN),
    #: and the accuracy / RMSE at every step of the last window
    element_accuracy: list[float] | None = None
    element_rmse: list[float] | None = None
    element_ann_rmse: list[float] | None = None
    last_window_t: list[float] | None = None
    layers: list[LayerFidelity] = field(default_factory=list)
    diagnosis: "Diagnosis | None" = None

    def layer(self, name: str) -> LayerFidelity:
        """The entry of population or layer ``name``."""
        for row in self.layers:
            if name in (row.population, row.layer):
                return row
        raise KeyError(f"no layer or population {name!r} in the comparison; have {[r.population for r in self.layers]}")

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict (floats, ints, lists, None)."""
        out = {k: v for k, v in asdict(self).items() if k not in ("layers", "diagnosis")}
        out["layers"] = [asdict(row) for row in self.layers]
        out["diagnosis"] = self.diagnosis.to_dict() if self.diagnosis is not None else None
        return out

    def to_text(self) -> str:
        """A short human-readable summary."""
        pct = lambda v: "–" if v is None else f"{100 * v:.2f} %"  # noqa: E731
        lines = [f"{self.n_samples} samples, T = {self.n_steps} steps of {self.dt * 1e3:g} ms ({self.task})"]
        if self.task == "classification":
            lines.append(f"ANN accuracy {pct(self.ann_accuracy)}, SNN accuracy {pct(self.snn_accuracy)}, agreement {pct(self.agreement)}")
            for key, steps in self.steps_within.items():
                lines.append(f"SNN stays within {key} points of the ANN from " + ("no step" if steps is None else f"{steps} steps on"))
        else:
            g = lambda v: "–" if v is None else f"{v:.4g}"  # noqa: E731
            lines.append(f"RMSE: ANN {g(self.ann_rmse)}, SNN {g(self.snn_rmse)}; SNN vs ANN {g(self.snn_ann_rmse)}")
        for label, vals, scale in (("accuracy per element (%)", self.element_accuracy, 100.0),
                                   ("RMSE per element", self.element_rmse, 1.0),
                                   ("RMSE against the ANN per element", self.element_ann_rmse, 1.0)):
            if vals:
                lines.append(f"{label}: " + " ".join(f"{scale * v:.4g}" for v in vals))
        if self.layers:
            lines.append("layer            corr    slope   rate/act  saturated  silent-active")
            for r in self.layers:
                f = lambda v, fmt: "–" if v is None else format(v, fmt)  # noqa: E731
                lines.append(
                    f"{r.population:<16} {f(r.correlation, '.3f'):>6}  {f(r.slope, '.3f'):>6}  {f(r.rate_ratio, '.3f'):>8}"
                    f"  {pct(r.saturated_fraction):>9}  {pct(r.silent_active_fraction):>9}"
                )
        if self.diagnosis is not None:
            lines += ["diagnosis:"] + [f"  - {s}" for s in self.diagnosis.suggestions]
        return "\n".join(lines)


@dataclass
class ComparisonInputs:
    """Everything :func:`compare` reads, gathered from a store or from arguments."""

    record: SpikeRecord
    ann_outputs: NDArray[np.float64] | None
    labels: NDArray[Any] | None
    activations: dict[str, NDArray[Any]]
    populations: dict[str, dict[str, Any]]
    scales: dict[str, float]
    conversion: dict[str, Any]
    task: str


def _task(readout: Mapping[str, Any], labels: NDArray[Any] | None) -> str:
    task = readout.get("task")
    if task in ("classification", "regression"):
        return str(task)
    if labels is not None and (
        labels.ndim > 1 or (not np.issubdtype(labels.dtype, np.integer) and not np.allclose(labels, np.round(labels)))
    ):
        return "regression"
    return "classification"


def load_comparison_inputs(
    source: "str | os.PathLike[str] | SpikeStore | SpikeRecord",
    *,
    ann_outputs: ArrayLike | None = None,
    labels: ArrayLike | None = None,
    activations: Mapping[str, ArrayLike] | None = None,
    snn: "SpikingNetwork | None" = None,
) -> ComparisonInputs:
    """Gather record, ANN outputs, labels, activations and network facts (arguments win over the store)."""
    from ..store.spikes import SpikeStore

    info: dict[str, dict[str, Any]] = {}
    scales: dict[str, float] = {}
    conversion: dict[str, Any] = {}
    acts: dict[str, NDArray[Any]] = {}
    ann = None
    lab = None
    if isinstance(source, (str, os.PathLike, Path)):
        with SpikeStore(source) as st:
            return load_comparison_inputs(st, ann_outputs=ann_outputs, labels=labels, activations=activations, snn=snn)
    if isinstance(source, SpikeStore):
        record = source.to_record()
        ann = source.ann_outputs
        lab = source.labels
        acts = source.ann_activations()
        info = source.population_info
        scales = source.scales
        conversion = dict(source.attrs.get("conversion") or {})
    elif isinstance(source, SpikeRecord):
        record = source
        lab = source.labels
    else:
        raise ValidationError(f"compare: expected a spike store path, SpikeStore or SpikeRecord, got {type(source).__name__}", attr="source")
    if snn is not None:
        from ..store.stream import population_info

        info = population_info(snn, record.dt)
        scales = dict(snn.scales)
        conversion = dict(snn.conversion) or conversion
    if ann_outputs is not None:
        ann = np.asarray(ann_outputs, dtype=np.float64)
    if labels is not None:
        lab = np.asarray(labels)
    if activations is not None:
        acts = {k: np.asarray(v) for k, v in activations.items()}
    if ann is not None:
        ann = ann.reshape(record.n_samples, -1)
    if lab is not None and lab.shape[0] != record.n_samples:
        raise ValidationError(f"compare: {lab.shape[0]} labels for {record.n_samples} samples", attr="labels")
    return ComparisonInputs(record, ann, lab, acts, info, scales, conversion, _task(record.readout, lab))


def layer_data(inputs: ComparisonInputs) -> dict[str, LayerData]:
    """Per population that represents an ANN layer: counts, effective steps, normalised activations.

    Populations are skipped when their layer's activations or counts are not
    available, or when the sizes disagree.
    """
    rec = inputs.record
    out: dict[str, LayerData] = {}
    for pop, meta in inputs.populations.items():
        layer = meta.get("layer")
        if not layer or meta.get("role") == "input" or pop not in rec.counts or layer not in inputs.activations:
            continue
        counts = np.asarray(rec.counts[pop], dtype=np.int64)
        act = np.asarray(inputs.activations[layer], dtype=np.float64).reshape(rec.n_samples, -1)
        if act.shape != counts.shape:
            continue
        scale = float(inputs.scales.get(layer, 1.0))
        per_neuron: float | NDArray[np.float64] = scale
        lam_c, shape = meta.get("channel_scales"), meta.get("shape") or []
        if lam_c is not None and len(shape) == 3:
            # channel-wise normalisation: neuron i of channel c represents a_i / λ_c
            per_neuron = np.repeat(np.asarray(lam_c, dtype=np.float64), int(shape[1]) * int(shape[2]))
        eff = max(int(rec.n_steps) - int(meta.get("latency_steps", 0)), 1)
        out[pop] = LayerData(pop, str(layer), counts, eff, np.clip(act, 0.0, None) / per_neuron, scale)
    return out


def _fidelity(d: LayerData) -> LayerFidelity:
    x = d.activation.ravel()
    y = d.rate.ravel()
    target = np.minimum(x, 1.0)
    corr = slope = intercept = None
    if x.size > 1 and np.ptp(x) > 0 and np.ptp(y) > 0:
        corr = float(np.corrcoef(x, y)[0, 1])
    if x.size > 1 and np.ptp(x) > 0:
        xc = x - x.mean()
        slope = float(np.dot(xc, y - y.mean()) / np.dot(xc, xc))
        intercept = float(y.mean() - slope * x.mean())
    demand = d.activation * d.effective_steps >= 1.0
    silent = float(np.mean(d.counts[demand] == 0)) if demand.any() else None
    return LayerFidelity(
        population=d.population,
        layer=d.layer,
        n_neurons=int(d.counts.shape[1]),
        effective_steps=int(d.effective_steps),
        correlation=corr,
        slope=slope,
        intercept=intercept,
        rmse=float(np.sqrt(np.mean((y - target) ** 2))) if y.size else 0.0,
        rate_ratio=float(y.sum() / target.sum()) if target.sum() > 0 else None,
        mean_rate=float(y.mean()) if y.size else 0.0,
        mean_activation=float(x.mean()) if x.size else 0.0,
        saturated_fraction=float(np.mean(d.counts >= d.effective_steps)) if y.size else 0.0,
        above_one_fraction=float(np.mean(x > 1.0)) if x.size else 0.0,
        silent_active_fraction=silent,
    )


def _first_within(curve: NDArray[np.float64], target: float, tol: float) -> int | None:
    """Steps ``T`` from which ``curve`` stays within ``tol`` of ``target`` to the end (None if the last step is outside).

    A curve that touches the band and drops out again does not count until it
    stays: the number answers "from which T on can I trust the SNN".

    Examples
    --------
    >>> import numpy as np
    >>> _first_within(np.array([0.5, 0.96, 0.90, 0.97, 0.98]), 0.98, 0.02)
    4
    >>> _first_within(np.array([0.5, 0.99, 0.90]), 0.98, 0.02) is None
    True
    """
    bad = np.nonzero(curve < target - tol - 1e-12)[0]
    if bad.size == 0:
        return 1 if curve.size else None
    last_bad = int(bad[-1])
    return last_bad + 2 if last_bad + 1 < curve.size else None


def compare(
    store_or_record: "str | os.PathLike[str] | SpikeStore | SpikeRecord",
    *,
    ann_outputs: ArrayLike | None = None,
    labels: ArrayLike | None = None,
    activations: Mapping[str, ArrayLike] | None = None,
    snn: "SpikingNetwork | None" = None,
) -> ComparisonReport:
    """Compare the SNN in a spike store (or record) with its ANN.

    Parameters
    ----------
    store_or_record : path, SpikeStore or SpikeRecord
        A store brings its own ANN outputs, labels, activations and network
        facts (population layers, latencies, scales); arguments override them.
    ann_outputs : array_like, shape (n_samples, n_out), optional
    labels : array_like, shape (n_samples,) or (n_samples, n_out), optional
    activations : mapping of layer name to array_like (n_samples, ...), optional
        ANN activations (un-normalised) for the per-layer comparison.
    snn : SpikingNetwork, optional
        Supplies population layers, latencies and scales for a bare record.

    Returns
    -------
    ComparisonReport
        With a :class:`~spikebridge.analysis.diagnose.Diagnosis` attached.

    Examples
    --------
    >>> import numpy as np
    >>> from spikebridge.store.record import SpikeRecord
    >>> counts = np.array([[[1, 0], [2, 0]], [[0, 1], [0, 1]]], np.int32)   # 2 samples, 2 steps, 2 outputs
    >>> rec = SpikeRecord(n_samples=2, n_steps=2, dt=1e-3, output_counts_t=counts,
    ...                   output_potential_t=np.zeros((2, 2, 2), np.float32), readout={"task": "classification"})
    >>> r = compare(rec, labels=[0, 0], ann_outputs=[[1.0, 0.0], [1.0, 0.0]])
    >>> r.ann_accuracy, r.snn_accuracy, r.agreement, r.steps_within
    (1.0, 0.5, 0.5, {'0.5': None, '0.1': None})
    """
    inp = load_comparison_inputs(store_or_record, ann_outputs=ann_outputs, labels=labels, activations=activations, snn=snn)
    rec = inp.record
    report = ComparisonReport(task=inp.task, n_samples=rec.n_samples, n_steps=rec.n_steps, dt=rec.dt)
    ann, y = inp.ann_outputs, inp.labels
    if inp.task == "classification":
        snn_pred = rec.predictions()
        if ann is not None:
            ann_pred = predict_classes(ann)
            report.agreement = float(np.mean(snn_pred == ann_pred))
        if y is not None:
            y = y.reshape(-1).astype(np.int64)
            curve = rec.accuracy_over_time(y)
            report.accuracy_t = [float(v) for v in curve]
            report.snn_accuracy = float(curve[-1])
            if ann is not None:
                report.ann_accuracy = float(np.mean(predict_classes(ann) == y))
                report.steps_within = {k: _first_within(curve, report.ann_accuracy, tol) for k, tol in WITHIN.items()}
    else:
        target = None if y is None else y.reshape(rec.n_samples, -1).astype(np.float64)
        # a sequence network read at every element: its output is every window's value (its error
        # over time is the per-element and last-window numbers below)
        every = bool(rec.readout.get("window_steps")) and bool(rec.readout.get("per_element"))
        if every and ann is not None:
            ann = ann.reshape(rec.n_samples, -1)
        ref = target if target is not None else ann
        out = rec.window_values().reshape(rec.n_samples, -1) if every else rec.output_values()
        if ref is not None:
            err = out - ref
            report.snn_rmse = float(np.sqrt(np.mean(err**2)))
            report.snn_mae = float(np.mean(np.abs(err)))
            if not every:
                report.error_t = [float(np.sqrt(np.mean((rec.output_values(k) - ref) ** 2))) for k in range(rec.n_steps)]
        if ann is not None:
            report.snn_ann_rmse = float(np.sqrt(np.mean((out - ann) ** 2)))
            if target is not None:
                report.ann_rmse = float(np.sqrt(np.mean((ann - target) ** 2)))
                report.ann_mae = float(np.mean(np.abs(ann - target)))
    if rec.readout.get("window_steps"):
        _sequence_metrics(report, rec, ann, inp.labels, inp.task)
    report.layers = [_fidelity(d) for d in layer_data(inp).values()]
    report.diagnosis = diagnose(report, conversion=inp.conversion)
    return report


def _sequence_metrics(report: ComparisonReport, rec: SpikeRecord, ann: NDArray[np.float64] | None,
                      labels: NDArray[Any] | None, task: str) -> None:
    """Per-element and last-window numbers of a sequence network's record (see :class:`ComparisonReport`)."""
    k = int(rec.readout["window_steps"])
    values = rec.window_values()  # (n, T, n_out), NaN for windows the run did not reach
    n, n_win = values.shape[0], values.shape[1]
    last = min(n_win, rec.n_steps // k) - 1
    if last < 0:
        return
    steps = range(last * k, (last + 1) * k)
    if task == "classification" and labels is not None:
        y = labels.reshape(-1).astype(np.int64)
        report.element_accuracy = [float(np.mean(predict_classes(values[:, t]) == y)) for t in range(last + 1)]
        report.last_window_t = [float(np.mean(predict_classes(rec.output_values(j)) == y)) for j in steps]
        return
    if task != "regression":
        return
    per_element = bool(rec.readout.get("per_element"))

    def shaped(a: NDArray[Any] | None) -> NDArray[np.float64] | None:
        if a is None:
            return None
        a = np.asarray(a, dtype=np.float64)
        return a.reshape(n, n_win, -1) if per_element else a.reshape(n, 1, -1)

    target, ref_ann = shaped(labels), shaped(ann)
    ref = target if target is not None else ref_ann
    if ref is None:
        return
    if per_element:
        report.element_rmse = [float(np.sqrt(np.mean((values[:, t] - ref[:, t]) ** 2))) for t in range(last + 1)]
        if ref_ann is not None:
            report.element_ann_rmse = [float(np.sqrt(np.mean((values[:, t] - ref_ann[:, t]) ** 2))) for t in range(last + 1)]
    ref_last = ref[:, last if per_element else 0]
    report.last_window_t = [float(np.sqrt(np.mean((rec.output_values(j) - ref_last) ** 2))) for j in steps]
