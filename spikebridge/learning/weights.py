"""How plastic projections changed: strength and reciprocity before and after learning.

Reads the weight recordings of a spike store (``/weights``, see
``docs/formats.md``) and reports, per recorded projection, the first and the
last snapshot side by side.  For excitatory → excitatory projections (both
populations tagged ``sign="excitatory"`` in the store, or the rule's
``w_min >= 0``) it is the "E→E strength"; for recurrent ones (pre and post
population the same) it adds reciprocity:

* ``reciprocity``: fraction of strong synapses ``i → j`` (``w >= strong``,
  default half the largest recorded weight) whose reverse ``j → i`` is strong too
  (networkx's definition on the graph of strong synapses);
* ``weighted_reciprocity``: ``Σ min(w_ij, w_ji) / Σ w_ij`` (Squartini et al. 2013),
  1 for a symmetric weight matrix, 0 when no pair is bidirectional.

Batch copy 0 is analysed (every copy of a batched network learns separately).
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

__all__ = ["ProjectionChange", "LearningReport", "weight_changes", "reciprocity"]


def reciprocity(w: NDArray[np.float64], strong: float) -> tuple[float | None, float | None]:
    """(reciprocity of the strong-synapse graph, weighted reciprocity) of a square (n_post, n_pre) matrix.

    Self-connections are ignored.  None where there is nothing to measure.

    Examples
    --------
    >>> reciprocity(np.array([[0, 1.0], [1.0, 0]]), 0.5)
    (1.0, 1.0)
    >>> reciprocity(np.array([[0, 1.0], [0.0, 0]]), 0.5)
    (0.0, 0.0)
    """
    m = np.array(w, dtype=np.float64)
    np.fill_diagonal(m, 0.0)
    a = m >= strong
    n_edges = int(a.sum())
    rec = float((a & a.T).sum() / n_edges) if n_edges else None
    total = float(m.sum())
    wrec = float(np.minimum(m, m.T).sum() / total) if total > 0 else None
    return rec, wrec


@dataclass
class ProjectionChange:
    """Change of one recorded projection between its first and last snapshot.

    Weights are in the projection's units; times in seconds.
    """

    name: str
    pre: str
    post: str
    n_synapses: int
    n_snapshots: int
    t_first: float
    t_last: float
    mean_before: float
    mean_after: float
    total_before: float
    total_after: float
    mean_abs_change: float
    strong: float
    strong_before: float
    strong_after: float
    excitatory: bool
    recurrent: bool
    reciprocity_before: float | None = None
    reciprocity_after: float | None = None
    weighted_reciprocity_before: float | None = None
    weighted_reciprocity_after: float | None = None


@dataclass
class LearningReport:
    """Weight changes of every recorded projection of a store."""

    path: str
    projections: list[ProjectionChange] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "projections": [asdict(p) for p in self.projections]}

    def to_text(self) -> str:
        if not self.projections:
            return f"{self.path}: no weight recordings"
        lines = [f"weight recordings in {self.path}:"]
        for p in self.projections:
            kind = ("E->E " if p.excitatory else "") + ("recurrent" if p.recurrent else "feed-forward")
            lines.append(
                f"  {p.name} ({p.pre} -> {p.post}, {kind}, {p.n_synapses} synapses, {p.n_snapshots} snapshots "
                f"over {p.t_last - p.t_first:g} s)"
            )
            lines.append(f"    mean weight      {p.mean_before:.4g} -> {p.mean_after:.4g}")
            lines.append(f"    total strength   {p.total_before:.4g} -> {p.total_after:.4g}")
            rel = f" ({100 * p.mean_abs_change / p.mean_before:.0f} % of the mean weight before)" if p.mean_before > 0 else ""
            lines.append(f"    mean |change|    {p.mean_abs_change:.4g}{rel}")
            lines.append(f"    strong (w >= {p.strong:.3g})  {100 * p.strong_before:.1f} % -> {100 * p.strong_after:.1f} %")
            if p.recurrent:
                def fmt(v: float | None) -> str:
                    return "n/a" if v is None else f"{v:.3f}"

                lines.append(f"    reciprocity      {fmt(p.reciprocity_before)} -> {fmt(p.reciprocity_after)}")
                lines.append(f"    weighted recip.  {fmt(p.weighted_reciprocity_before)} -> {fmt(p.weighted_reciprocity_after)}")
        return "\n".join(lines)


def weight_changes(store_path: str | os.PathLike[str], *, strong: float | None = None) -> LearningReport:
    """Report how every recorded projection of a spike store changed.

    Parameters
    ----------
    store_path : str or path-like
        A spike store (stores without weight recordings give an empty report).
    strong : float, optional
        Weight from which a synapse counts as strong (default: half the
        largest weight in any snapshot).

    Returns
    -------
    LearningReport
    """
    from ..store.spikes import SpikeStore
    from ..store.weights import read_weights

    report = LearningReport(path=str(store_path))
    with SpikeStore(store_path) as st:
        histories = read_weights(st)
        info = st.population_info
    for name, h in histories.items():
        first, last = h.w[0].astype(np.float64), h.w[-1].astype(np.float64)
        # half the largest weight ever recorded: the rule's w_max may be far above what the weights reach
        cut = strong if strong is not None else 0.5 * max(float(h.w.max()) if h.w.size else 0.0, 1e-12)
        signs = {info.get(p, {}).get("sign") for p in (h.pre, h.post)}
        excitatory = signs == {"excitatory"} or float(h.rule.get("w_min", -1.0)) >= 0.0
        sel = h.copy == 0
        ch = ProjectionChange(
            name=name, pre=h.pre, post=h.post, n_synapses=int(h.pre_index.size), n_snapshots=int(h.t.size),
            t_first=float(h.t[0]), t_last=float(h.t[-1]),
            mean_before=float(first[sel].mean()) if sel.any() else 0.0, mean_after=float(last[sel].mean()) if sel.any() else 0.0,
            total_before=float(first[sel].sum()), total_after=float(last[sel].sum()),
            mean_abs_change=float(np.abs(last - first)[sel].mean()) if sel.any() else 0.0,
            strong=cut, strong_before=float((first[sel] >= cut).mean()) if sel.any() else 0.0,
            strong_after=float((last[sel] >= cut).mean()) if sel.any() else 0.0,
            excitatory=bool(excitatory), recurrent=h.pre == h.post,
        )
        if ch.recurrent and sel.any():
            n = int(max(h.pre_index.max(), h.post_index.max())) + 1
            ch.reciprocity_before, ch.weighted_reciprocity_before = reciprocity(h.matrix(0, shape=(n, n)), cut)
            ch.reciprocity_after, ch.weighted_reciprocity_after = reciprocity(h.matrix(-1, shape=(n, n)), cut)
        report.projections.append(ch)
    return report
