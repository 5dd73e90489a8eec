"""Why is the converted accuracy lower?  Plain-language advice backed by the comparison's numbers.

Each rule looks at one symptom and names the usual cause and the knob that
fixes it (Rueckauer et al. 2017, "Conversion of continuous-valued deep
networks to efficient event-driven networks for image classification"):

* **saturation** — neurons that fire at every step, or normalised activations
  above 1: λ (the normalisation percentile) is too low, activations above it
  are clipped → raise ``percentile``.
* **silence** — neurons the ANN drives to at least one expected spike stay
  silent: low rates need more steps → raise ``T`` (``n_steps``); or start
  membranes at half threshold (``v_init = 0.5``).
* **rate shortfall** — rates below the normalised activations: with
  ``reset = "zero"`` the charge above threshold is lost at each spike → use
  ``reset = "subtract"``; otherwise the pipeline latency eats the counting
  window → raise ``T``.
* **accuracy still rising** at the last step → raise ``T``.
* **low correlation** in a layer: errors start there; the layers before it
  are where to look.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

# diagnose reads a comparison through these structural types instead of importing
# analysis/compare.py, so the arrow runs one way only: compare -> diagnose.


class _Fidelity(Protocol):
    """What a rule reads of one layer (a :class:`~spikebridge.analysis.compare.LayerFidelity`)."""

    population: str
    layer: str
    effective_steps: int
    correlation: float | None
    rate_ratio: float | None
    saturated_fraction: float
    above_one_fraction: float
    silent_active_fraction: float | None


class _Comparison(Protocol):
    """What a rule reads of a comparison (a :class:`~spikebridge.analysis.compare.ComparisonReport`)."""

    task: str
    n_steps: int
    ann_accuracy: float | None
    accuracy_t: list[float] | None
    steps_within: dict[str, int | None]

    @property
    def layers(self) -> Sequence[_Fidelity]: ...

__all__ = ["Diagnosis", "LayerDiagnosis", "diagnose", "THRESHOLDS"]

#: when a symptom counts as one (fractions)
THRESHOLDS = {
    "saturated": 0.01,
    "above_one": 0.01,
    "silent": 0.05,
    "rate_ratio": 0.9,
    "correlation": 0.9,
    "accuracy_gap": 0.005,
    "still_rising": 0.005,
}


@dataclass
class LayerDiagnosis:
    """One layer's fidelity numbers and the symptoms found in them."""

    population: str
    layer: str
    rate_shortfall: float | None
    saturated_fraction: float
    above_one_fraction: float
    silent_active_fraction: float | None
    correlation: float | None
    symptoms: list[str] = field(default_factory=list)


@dataclass
class Diagnosis:
    """Per-layer symptoms and plain-language suggestions (most important first)."""

    layers: list[LayerDiagnosis] = field(default_factory=list)
    suggestions: list[str] = field(default_factory=list)
    ok: bool = True

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "suggestions": list(self.suggestions), "layers": [asdict(row) for row in self.layers]}


def _pct(v: float) -> str:
    return f"{100 * v:.1f} %"


def _list(rows: list[Any], describe: Any) -> str:
    return "; ".join(f"'{r.layer}' ({describe(r)})" for r in rows)


def diagnose(report: _Comparison, *, conversion: Mapping[str, Any] | None = None) -> Diagnosis:
    """Turn a comparison into symptoms and suggestions.

    Parameters
    ----------
    report : ComparisonReport
    conversion : mapping, optional
        The conversion config used (``percentile``, ``reset``, ``v_init``),
        so the advice can name the current values.

    Returns
    -------
    Diagnosis
        ``ok`` is True when no symptom was found.
    """
    conv = dict(conversion or {})
    t = THRESHOLDS
    diag = Diagnosis()
    percentile = conv.get("percentile")
    reset = conv.get("reset")
    t_now = report.n_steps
    saturating, silent, short, uncorrelated = [], [], [], []
    for row in report.layers:
        shortfall = None if row.rate_ratio is None else 1.0 - row.rate_ratio
        ld = LayerDiagnosis(
            row.population, row.layer, shortfall, row.saturated_fraction, row.above_one_fraction,
            row.silent_active_fraction, row.correlation,
        )
        if row.saturated_fraction > t["saturated"] or row.above_one_fraction > t["above_one"]:
            ld.symptoms.append("saturated")
            saturating.append(row)
        if row.silent_active_fraction is not None and row.silent_active_fraction > t["silent"]:
            ld.symptoms.append("silent")
            silent.append(row)
        if row.rate_ratio is not None and row.rate_ratio < t["rate_ratio"]:
            ld.symptoms.append("rates too low")
            short.append(row)
        if row.correlation is not None and row.correlation < t["correlation"]:
            ld.symptoms.append("low correlation")
            uncorrelated.append(row)
        diag.layers.append(ld)

    out = diag.suggestions
    if report.task == "classification" and report.ann_accuracy is not None and report.accuracy_t:
        gap = report.ann_accuracy - report.accuracy_t[-1]
        k = max(int(0.75 * len(report.accuracy_t)) - 1, 0)
        rise = report.accuracy_t[-1] - report.accuracy_t[k]
        if gap > t["accuracy_gap"]:
            msg = f"SNN accuracy is {100 * gap:.2f} points below the ANN after T = {t_now} steps"
            if rise > t["still_rising"]:
                msg += (
                    f" and still rising ({_pct(report.accuracy_t[k])} at step {k + 1} → {_pct(report.accuracy_t[-1])} "
                    f"at step {t_now}): raise T (n_steps), e.g. to {2 * t_now}"
                )
            else:
                msg += "; it has levelled off, so more steps alone will not close the gap (see the layer advice)"
            out.append(msg + ".")
    if short and reset == "zero":
        out.append(
            "firing rates fall below the normalised activations in "
            + _list(short, lambda r: f"{_pct(1 - (r.rate_ratio or 0.0))} short")
            + ": reset to zero discards the charge above threshold at every spike; switch to reset = 'subtract'."
        )
    if saturating:
        now = f" (now {percentile})" if percentile is not None else ""
        out.append(
            "saturation in "
            + _list(saturating, lambda r: f"{_pct(r.saturated_fraction)} of pairs fire at every step, "
                    f"{_pct(r.above_one_fraction)} of activations above λ")
            + f": a neuron fires at most once per step, so activations above λ are clipped. Raise the normalisation "
            f"percentile{now}, e.g. to 99.99 or 100 (the maximum)."
        )
    if silent:
        hint = "" if conv.get("v_init", 0) else ", or start membranes at half threshold (v_init = 0.5) to cut the latency"
        out.append(
            "neurons the ANN drives to at least one spike stay silent in "
            + _list(silent, lambda r: f"{_pct(r.silent_active_fraction or 0.0)} of them in {r.effective_steps} steps")
            + f": low rates need time. Raise T (n_steps, now {t_now}){hint}."
        )
    if short and reset != "zero":
        late = [r for r in short if r.effective_steps < t_now]
        msg = "firing rates fall below the normalised activations in " + _list(
            short, lambda r: f"{_pct(1 - (r.rate_ratio or 0.0))} short, {t_now - r.effective_steps} steps of latency"
        )
        if late:
            msg += ": the first steps pass before input reaches deep layers. Raise T (n_steps) so the latency matters less."
        else:
            msg += ": raise T (n_steps), or lower the percentile if the layer is nearly silent."
        out.append(msg)
    if uncorrelated:
        first = uncorrelated[0]
        out.append(
            f"rate/activation correlation first falls below {t['correlation']} in layer '{first.layer}' ({first.population}), "
            f"to {first.correlation:.3f}: the approximation error starts there; check that layer's normalisation and its "
            "max-pooling or bias handling."
        )
    diag.ok = not out
    if not report.layers:
        out.append(
            "per-layer comparison skipped: no ANN activations for the spiking layers "
            "(simulate with ann_activations=True, or pass activations= to compare)."
        )
    elif diag.ok:
        if report.task == "classification" and report.steps_within.get("0.5") is not None:
            out.append(
                f"no problem found: the SNN stays within 0.5 points of the ANN from {report.steps_within['0.5']} of "
                f"{t_now} steps; you could shorten T to save time and energy."
            )
        else:
            out.append("no problem found in the per-layer rates.")
    return diag
