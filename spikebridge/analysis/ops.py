"""Operations and energy: ANN multiply-accumulates versus SNN synaptic operations.

Counting rules
--------------
* **ANN**: multiply-accumulates (MACs) per inference of every layer, from
  :meth:`~spikebridge.ir.graph.AnnGraph.summary` (dense: ``n_in × n_out``;
  conv: ``C_out·H_out·W_out·C_in·kh·kw``; pooling counted as the ANN layer defines it).
* **SNN synaptic operations** (SynOps): every spike of a neuron triggers one
  accumulate on each of its outgoing synapses, so per projection and sample

  .. math:: \\mathrm{SynOps} = \\sum_i c_i \\, d_i

  with :math:`c_i` the spike count of pre-synaptic neuron *i* (from the
  stored counts) and :math:`d_i` its out-degree in that projection.
* **Current-encoded input**: the first layer receives the analogue input as
  a constant current ``W x``, computed once per inference; those synapses
  count as MACs (``n_synapses`` per inference), not SynOps.
* Membrane updates (one add per neuron per step) are not counted, as in most
  of the conversion literature; spikes per neuron are reported instead.

Energy
------
Energy per operation from Horowitz, M. (2014), "Computing's energy problem
(and what we can do about it)", IEEE ISSCC, pp. 10–14, for 45 nm CMOS at 0.9 V:
a 32-bit float multiply costs 3.7 pJ and a 32-bit float add 0.9 pJ, so one MAC
costs 4.6 pJ and one accumulate (a SynOp) 0.9 pJ.  Memory access, which
often dominates, is not included.  Change the constants with :class:`EnergyModel`.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import ValidationError
from ..store.record import SpikeRecord

if TYPE_CHECKING:
    from ..snn.network import SpikingNetwork
    from ..ir.graph import AnnGraph
    from ..store.spikes import SpikeStore

__all__ = ["EnergyModel", "LayerOps", "OpsReport", "operations", "HOROWITZ_2014"]


@dataclass(frozen=True, kw_only=True)
class EnergyModel:
    """Energy per operation in joules.

    Parameters
    ----------
    e_mac : float
        One 32-bit float multiply-accumulate (default 4.6 pJ = 3.7 pJ multiply + 0.9 pJ add).
    e_ac : float
        One 32-bit float accumulate (default 0.9 pJ).
    source : str
        Where the numbers come from (reported with the estimate).
    """

    e_mac: float = 4.6e-12
    e_ac: float = 0.9e-12
    source: str = "Horowitz 2014, ISSCC, 'Computing's energy problem': 45 nm CMOS, 32-bit float"

    def __post_init__(self) -> None:
        for name in ("e_mac", "e_ac"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and value >= 0 and np.isfinite(value)):
                raise ValidationError(f"EnergyModel.{name}: must be a finite number of joules >= 0, got {value!r}", attr=name)


HOROWITZ_2014 = EnergyModel()


@dataclass
class LayerOps:
    """Per-inference operations of one ANN layer and the projections that implement it.

    Attributes
    ----------
    name : str
        ANN layer name (or projection name for projections without an ANN layer).
    ann_macs : int
    snn_synops : float
        Mean SynOps per inference.
    snn_macs : float
        MACs per inference on the SNN side (current-encoded input only).
    projections : list of str
    """

    name: str
    ann_macs: int
    snn_synops: float
    snn_macs: float
    projections: list[str] = field(default_factory=list)


@dataclass
class OpsReport:
    """ANN versus SNN operation counts and energy per inference (means over samples)."""

    n_samples: int
    n_steps: int
    ann_macs: int
    snn_synops: float
    snn_macs: float
    synops_per_mac: float | None
    spikes_per_inference: float
    mean_spikes_per_neuron: float
    ann_energy_j: float
    snn_energy_j: float
    energy_ratio: float | None
    e_mac_j: float
    e_ac_j: float
    energy_source: str
    spikes_per_neuron: dict[str, float] = field(default_factory=dict)
    layers: list[LayerOps] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (scalars first; ``spikes_per_neuron`` and ``layers`` nested)."""
        out = asdict(self)
        out["layers"] = [asdict(r) for r in self.layers]
        return out


def _counts_of(source: "SpikeRecord | SpikeStore | str | os.PathLike[str]") -> tuple[dict[str, np.ndarray], int, int]:
    from ..store.spikes import SpikeStore

    if isinstance(source, (str, os.PathLike, Path)):
        with SpikeStore(source) as st:
            return {k: st.counts(k) for k in st.count_populations}, st.n_done, st.n_steps
    if isinstance(source, SpikeStore):
        return {k: source.counts(k) for k in source.count_populations}, source.n_done, source.n_steps
    if isinstance(source, SpikeRecord):
        return {k: np.asarray(v) for k, v in source.counts.items()}, source.n_samples, source.n_steps
    raise ValidationError(f"operations: expected a SpikeRecord, SpikeStore or store path, got {type(source).__name__}", attr="source")


def _mac_layer(graph: "AnnGraph | None", layer: str | None) -> str | None:
    """The ANN layer whose MACs a projection replaces.

    Populations represent activations (e.g. ``relu1``), so a projection's
    ``layer`` may name a MAC-free layer; walk back to the layer that does the
    multiply-accumulates (``fc1``).
    """
    if layer is None or graph is None or layer not in graph:
        return layer
    name: str | None = layer
    macs = {row.name: row.macs for row in graph.summary()}
    while name is not None and not macs.get(name):
        name = graph.predecessor(name)
    return name if name is not None else layer


def operations(
    snn: "SpikingNetwork",
    source: "SpikeRecord | SpikeStore | str | os.PathLike[str]",
    *,
    graph: "AnnGraph | None" = None,
    energy: EnergyModel | None = None,
) -> OpsReport:
    """Count ANN MACs and SNN synaptic operations per inference and estimate energy.

    Parameters
    ----------
    snn : SpikingNetwork
        Supplies the projections (out-degrees) and, as ``snn.ann``, the ANN.
    source : SpikeRecord, SpikeStore or path
        Stored spike counts per population, shape (n_samples, n_neurons).
    graph : AnnGraph, optional
        The ANN (default ``snn.ann``); without one, ANN MACs are taken as the
        number of synapses of each projection (a dense equivalent).
    energy : EnergyModel, optional
        Energy per operation (default :data:`HOROWITZ_2014`).

    Returns
    -------
    OpsReport

    Raises
    ------
    ValidationError
        No spike counts for a population that has outgoing projections.

    Examples
    --------
    >>> import numpy as np
    >>> from spikebridge.snn.network import Population, Projection, SpikingNetwork
    >>> net = SpikingNetwork([Population(name="a", n=2, model="if"), Population(name="b", n=1, model="if")],
    ...     [Projection(name="ab", pre="a", post="b", pre_index=[0, 1], post_index=[0, 0], weight=[1.0, 1.0])])
    >>> rec = SpikeRecord(n_samples=1, n_steps=4, dt=1e-3, output_counts_t=np.zeros((1, 4, 1), np.int32),
    ...     output_potential_t=np.zeros((1, 4, 1), np.float32), counts={"a": np.array([[3, 1]]), "b": np.array([[2]])})
    >>> operations(net, rec).snn_synops   # 3 spikes x 1 synapse + 1 x 1
    4.0
    """
    model = energy or HOROWITZ_2014
    counts, n_samples, n_steps = _counts_of(source)
    if n_samples < 1:
        raise ValidationError("operations: the spike record holds no samples", attr="source")
    graph = graph if graph is not None else snn.ann
    current_input = snn.input is not None and snn.encoding.get("kind", "current") == "current"

    rows: dict[str, LayerOps] = {}
    if graph is not None:
        for info in graph.summary():
            if info.macs:
                rows[info.name] = LayerOps(info.name, int(info.macs), 0.0, 0.0)
    for proj in snn.projections.values():
        key = _mac_layer(graph, proj.layer) or proj.name
        row = rows.setdefault(key, LayerOps(key, 0 if graph is not None else proj.n_synapses, 0.0, 0.0))
        row.projections.append(proj.name)
        if current_input and proj.pre == snn.input:
            row.snn_macs += float(proj.n_synapses)
            continue
        if proj.pre not in counts:
            raise ValidationError(
                f"operations: projection '{proj.name}' leaves population '{proj.pre}', which has no stored spike counts; "
                f"counts exist for {sorted(counts)}",
                attr="source",
            )
        pre_n = snn.populations[proj.pre].n
        if proj.operator is not None:  # a shared kernel: fan-out without making its synapses
            out_degree = proj.operator.fan_out()
        else:
            out_degree = np.bincount(proj.pre_index, minlength=pre_n).astype(np.float64)
        c = np.asarray(counts[proj.pre], dtype=np.float64)
        if c.shape[1] != pre_n:
            raise ValidationError(
                f"operations: counts of '{proj.pre}' have {c.shape[1]} neurons, the network has {pre_n}", attr="source"
            )
        row.snn_synops += float(np.mean(c @ out_degree))

    spiking = [p for p in snn.populations.values() if p.name in counts]
    per_neuron = {p.name: float(np.mean(counts[p.name])) for p in spiking}
    total_spikes = sum(float(np.sum(counts[p.name])) for p in spiking) / n_samples
    total_neurons = sum(p.n for p in spiking)
    ann_macs = int(sum(r.ann_macs for r in rows.values()))
    synops = float(sum(r.snn_synops for r in rows.values()))
    snn_macs = float(sum(r.snn_macs for r in rows.values()))
    ann_e = ann_macs * model.e_mac
    snn_e = synops * model.e_ac + snn_macs * model.e_mac
    return OpsReport(
        n_samples=int(n_samples),
        n_steps=int(n_steps),
        ann_macs=ann_macs,
        snn_synops=synops,
        snn_macs=snn_macs,
        synops_per_mac=synops / ann_macs if ann_macs else None,
        spikes_per_inference=total_spikes,
        mean_spikes_per_neuron=total_spikes / total_neurons if total_neurons else 0.0,
        ann_energy_j=float(ann_e),
        snn_energy_j=float(snn_e),
        energy_ratio=float(snn_e / ann_e) if ann_e else None,
        e_mac_j=model.e_mac,
        e_ac_j=model.e_ac,
        energy_source=model.source,
        spikes_per_neuron=per_neuron,
        layers=list(rows.values()),
    )
