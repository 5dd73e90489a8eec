"""Connectivity analysis of a :class:`~spikebridge.snn.network.SpikingNetwork`.

Two views of the same network:

* the **population graph**: one node per population, one edge per
  ``(pre, post)`` population pair that a projection connects (small: used for
  recurrent loops, feedback edges and input-to-output latency);
* the **neuron graph**: one node per neuron, one edge ``i → j`` per synapse
  from pre-synaptic neuron ``i`` to post-synaptic neuron ``j``.

Orientation: projections store weights by ``(post_index, pre_index)`` (the
``(n_out, n_in)`` layout of PyTorch/NIR), whereas networkx and
``scipy.sparse.csgraph`` read ``A[i, j]`` as an edge ``i → j``.  Every
adjacency matrix built here is therefore indexed ``A[pre, post]``.

Measures that scale (counts, degrees, strengths, E/I balance, strongly
connected components, reciprocity, latency) run on the whole neuron graph with
``scipy.sparse``/``numpy.bincount`` (1e5 neurons and 1e7 synapses in seconds,
see ``benchmarks/bench_graph.py``).  Measures that do not scale (clustering,
3-node motif census, both networkx) run on the whole graph only when it is
small, otherwise on a random induced subgraph of ``sample_size`` neurons when
asked; the report's ``notes`` say which.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from ..conversion.latency import (  # noqa: F401  (population_latency: public name kept here)
    _current_input,
    _delay_steps,
    _population_edges,
    _source_populations,
    population_latency,
)
from ..errors import ValidationError

if TYPE_CHECKING:
    import networkx as nx

    from ..snn.network import SpikingNetwork

__all__ = [
    "GraphReport",
    "analyse",
    "to_networkx",
    "write_graphml",
    "population_latency",
    "neuron_signs",
    "recurrent_loops",
    "effective_recurrent_matrix",
    "EXACT_LIMIT_NEURONS",
    "EXACT_LIMIT_SYNAPSES",
]

logger = logging.getLogger(__name__)

#: largest graph on which clustering and the motif census run without sampling
EXACT_LIMIT_NEURONS = 2000
EXACT_LIMIT_SYNAPSES = 5_000  # clustering + triad census on a dense 17k-synapse MLP took 8.5 s

_EI = {"excitatory": "E", "inhibitory": "I", "mixed": "mixed"}


# -- helpers -----------------------------------------------------------------


def _offsets(snn: "SpikingNetwork") -> dict[str, int]:
    out, k = {}, 0
    for name, pop in snn.populations.items():
        out[name] = k
        k += pop.n
    return out


def _stats(x: NDArray[Any]) -> dict[str, float]:
    if x.size == 0:
        return {"mean": float("nan"), "std": float("nan"), "min": float("nan"), "max": float("nan")}
    return {"mean": float(np.mean(x)), "std": float(np.std(x)), "min": float(np.min(x)), "max": float(np.max(x))}


@dataclass
class _Flat:
    """All synapses of a network as global-index COO arrays (int32/float32 where safe)."""

    n: int
    offsets: dict[str, int]
    pre: NDArray[np.signedinteger[Any]]  # int32, or int64 for >= 2**31 - 1 neurons
    post: NDArray[np.signedinteger[Any]]
    weight: NDArray[np.float64]
    steps: NDArray[np.int32]
    owner: NDArray[np.int32]  # index of the population of each neuron


def _flatten(snn: "SpikingNetwork", *, with_steps: bool = True) -> _Flat:
    offsets = _offsets(snn)
    n = snn.n_neurons
    itype: type[np.signedinteger[Any]] = np.int32 if n < 2**31 - 1 else np.int64
    projs = list(snn.projections.values())
    total = sum(p.n_synapses for p in projs)
    pre = np.empty(total, dtype=itype)
    post = np.empty(total, dtype=itype)
    weight = np.empty(total, dtype=np.float64)
    steps = np.empty(total if with_steps else 0, dtype=np.int32)
    k = 0
    for p in projs:
        m = p.n_synapses
        np.add(p.pre_index, offsets[p.pre], out=pre[k : k + m], casting="unsafe")
        np.add(p.post_index, offsets[p.post], out=post[k : k + m], casting="unsafe")
        weight[k : k + m] = p.weight
        if with_steps:
            steps[k : k + m] = _delay_steps(p.delay, snn.dt, m, snn.min_delay_steps)
        k += m
    owner = np.repeat(np.arange(len(snn.populations), dtype=np.int32), [p.n for p in snn.populations.values()])
    return _Flat(n=n, offsets=offsets, pre=pre, post=post, weight=weight, steps=steps, owner=owner)


def neuron_signs(snn: "SpikingNetwork") -> dict[str, NDArray[np.str_]]:
    """Sign of every neuron's outgoing synapses, per population.

    Returns
    -------
    dict of str to ndarray of str, shape (n,)
        ``"E"`` (all outgoing weights >= 0), ``"I"`` (all <= 0 with at least
        one < 0) or ``"mixed"``; a neuron without outgoing synapses takes its
        population's ``sign`` tag (``"mixed"`` tags count as ``"E"`` there,
        since such a neuron excites nothing and inhibits nothing).

    Examples
    --------
    >>> import numpy as np
    >>> from spikebridge.snn.network import Population, Projection, SpikingNetwork
    >>> a = Population(name="a", n=2, model="if"); b = Population(name="b", n=1, model="if")
    >>> p = Projection(name="ab", pre="a", post="b", pre_index=[0, 1], post_index=[0, 0], weight=[1.0, -1.0])
    >>> neuron_signs(SpikingNetwork([a, b], [p]))["a"].tolist()
    ['E', 'I']
    """
    out = {}
    for name, pop in snn.populations.items():
        pos = np.zeros(pop.n, dtype=bool)
        neg = np.zeros(pop.n, dtype=bool)
        for proj in snn.outgoing(name):
            pos[proj.pre_index[proj.weight > 0]] = True
            neg[proj.pre_index[proj.weight < 0]] = True
        default = "I" if pop.sign == "inhibitory" else "E"
        sign = np.full(pop.n, default, dtype="<U5")
        sign[pos & ~neg] = "E"
        sign[neg & ~pos] = "I"
        sign[pos & neg] = "mixed"
        out[name] = sign
    return out


def _population_ei(signs: NDArray[np.str_]) -> str:
    kinds = set(np.unique(signs).tolist())
    if kinds == {"E"}:
        return "E"
    if kinds == {"I"}:
        return "I"
    return "mixed"


# -- networkx views ----------------------------------------------------------


def to_networkx(snn: "SpikingNetwork", level: str = "population") -> "nx.DiGraph":
    """The network as a directed networkx graph, edges from pre to post.

    Parameters
    ----------
    snn : SpikingNetwork
    level : {"population", "neuron"}
        One node per population, or one node per neuron (global integer ids in
        population order; use it on small networks only).

    Returns
    -------
    networkx.DiGraph
        Population level: node attributes ``population``, ``layer``, ``ei``
        (``"E"``/``"I"``/``"mixed"``), ``index`` (position), ``n``, ``model``,
        ``role``; edge attributes ``weight`` (sum of weights), ``sign``,
        ``delay`` (smallest delay, s), ``delay_max`` (s), ``n_synapses``,
        ``projections`` (comma-separated names).  Neuron level: node attributes
        ``population``, ``layer``, ``ei``, ``index`` (index within the
        population); edge attributes ``weight`` (summed over parallel
        synapses), ``sign``, ``delay`` (smallest, s), ``projection``.

    Raises
    ------
    ValidationError
        For an unknown ``level``.

    Examples
    --------
    >>> from spikebridge.snn.network import Population, Projection, SpikingNetwork
    >>> a = Population(name="a", n=2, model="if"); b = Population(name="b", n=1, model="if")
    >>> p = Projection(name="ab", pre="a", post="b", pre_index=[0, 1], post_index=[0, 0], weight=[0.5, -1.0])
    >>> g = to_networkx(SpikingNetwork([a, b], [p]), level="neuron")
    >>> sorted(g.edges(data="weight"))
    [(0, 2, 0.5), (1, 2, -1.0)]
    """
    import networkx as nx

    signs = neuron_signs(snn)
    g = nx.DiGraph(name=snn.name, level=level)
    if level == "population":
        for k, (name, pop) in enumerate(snn.populations.items()):
            g.add_node(
                name, population=name, layer=pop.layer or "", ei=_population_ei(signs[name]), index=k, n=pop.n,
                model=pop.model, role=pop.role,
            )
        for proj in snn.projections.values():
            steps_d = np.asarray(proj.delay, dtype=np.float64)
            dmin = float(steps_d.min()) if steps_d.size else 0.0
            dmax = float(steps_d.max()) if steps_d.size else 0.0
            if g.has_edge(proj.pre, proj.post):
                e = g.edges[proj.pre, proj.post]
                e["weight"] += float(proj.weight.sum())
                e["n_synapses"] += proj.n_synapses
                e["delay"] = min(e["delay"], dmin)
                e["delay_max"] = max(e["delay_max"], dmax)
                e["projections"] += "," + proj.name
                if e["sign"] != proj.sign and proj.n_synapses:
                    e["sign"] = "mixed"
            else:
                g.add_edge(
                    proj.pre, proj.post, weight=float(proj.weight.sum()), sign=proj.sign, delay=dmin, delay_max=dmax,
                    n_synapses=proj.n_synapses, projections=proj.name,
                )
        return g
    if level != "neuron":
        raise ValidationError(f"to_networkx: level {level!r} is not 'population' or 'neuron'", attr="level")
    offsets = _offsets(snn)
    for name, pop in snn.populations.items():
        base = offsets[name]
        layer = pop.layer or ""
        g.add_nodes_from(
            (base + i, {"population": name, "layer": layer, "ei": str(signs[name][i]), "index": i}) for i in range(pop.n)
        )
    for proj in snn.projections.values():
        delay = np.broadcast_to(np.asarray(proj.delay, dtype=np.float64), (proj.n_synapses,))
        pre = proj.pre_index + offsets[proj.pre]
        post = proj.post_index + offsets[proj.post]
        for i, j, w, d in zip(pre.tolist(), post.tolist(), proj.weight.tolist(), delay.tolist()):
            if g.has_edge(i, j):
                e = g.edges[i, j]
                e["weight"] += w
                e["delay"] = min(e["delay"], d)
                e["sign"] = "excitatory" if e["weight"] >= 0 else "inhibitory"
            else:
                g.add_edge(i, j, weight=w, sign="excitatory" if w >= 0 else "inhibitory", delay=d, projection=proj.name)
    return g


def write_graphml(snn: "SpikingNetwork", path: str | Path, level: str = "population") -> Path:
    """Write :func:`to_networkx` ``(snn, level)`` as GraphML (readable by Gephi, Cytoscape, igraph).

    Parameters
    ----------
    snn : SpikingNetwork
    path : str or path-like
    level : {"population", "neuron"}

    Returns
    -------
    pathlib.Path
        The written file.
    """
    import networkx as nx

    g = to_networkx(snn, level=level)
    g.graph = {"name": snn.name, "level": level}  # GraphML only stores scalar graph attributes
    out = Path(path)
    nx.write_graphml(g, out)
    return out


# -- population-level latency and loops --------------------------------------


def _feedback_edges(snn: "SpikingNetwork", edges: Mapping[tuple[str, str], Any]) -> list[tuple[str, str]]:
    """Back edges of a depth-first search from the input (then in population order); self-loops included."""
    succ: dict[str, list[str]] = {name: [] for name in snn.populations}
    for a, b in edges:
        succ[a].append(b)
    order = ([snn.input] if snn.input else []) + [n for n in snn.populations if n != snn.input]
    state: dict[str, int] = {}  # 1 = on stack, 2 = done
    back: list[tuple[str, str]] = []
    for root in order:
        if root in state:
            continue
        state[root] = 1
        stack = [(root, iter(succ[root]))]
        while stack:
            node, it = stack[-1]
            nxt = next(it, None)
            if nxt is None:
                state[node] = 2
                stack.pop()
            elif state.get(nxt) == 1:
                back.append((node, nxt))
            elif nxt not in state:
                state[nxt] = 1
                stack.append((nxt, iter(succ[nxt])))
    return back


# -- the report ----------------------------------------------------------------


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


@dataclass
class GraphReport:
    """What :func:`analyse` measured.

    Attributes
    ----------
    name : str
    counts : dict
        ``populations``, ``projections``, ``neurons``, ``synapses``, ``exc``,
        ``inh``, ``mixed`` (neurons by the sign of their outgoing synapses),
        ``current_input`` (neurons of a current-encoded input population,
        which emit no spikes and count as none of the three),
        ``exc_synapses``, ``inh_synapses``.
    populations : dict of str to dict
        Per population: ``n``, ``ei`` (``"E"``, ``"I"``, ``"mixed"``, or
        ``"current"`` for a current-encoded input), ``role``, ``layer``, and ``in_degree``,
        ``out_degree``, ``in_strength``, ``out_strength``, ``exc_input``,
        ``inh_input`` (``mean``/``std``/``min``/``max`` over its neurons;
        degrees count distinct partner neurons, strengths sum signed weights,
        ``exc_input``/``inh_input`` sum the positive / absolute negative
        incoming weights), ``balance`` (mean over neurons with input of
        ``(exc - inh) / (exc + inh)``), ``inh_dominated`` (fraction of neurons
        whose inhibitory input exceeds their excitatory input).
    components : dict
        Neuron-level strongly connected components: ``n_components``,
        ``largest``, ``n_recurrent`` (components that contain a cycle) and
        ``neurons_in_loops``.
    loops : list of list of str
        Population-level recurrent loops (strongly connected sets of
        populations, a self-projection counting as a loop).
    feedback_edges : list of dict
        Population edges that close a loop (back edges of a depth-first search
        from the input): ``pre``, ``post``, ``projections``.
    reciprocity : float
        Fraction of neuron-level edges ``i → j`` whose reverse ``j → i`` exists
        (networkx's ``reciprocity`` definition; self-loops count as edges but
        never as reciprocated).
    latency : dict
        ``shortest_steps`` / ``longest_steps`` from input to output population
        (see :func:`population_latency`), the same in seconds, and
        ``neuron_first_arrival_steps`` (``min``/``max`` over reachable output
        neurons of the shortest input-to-neuron delay on the neuron graph),
        ``unreachable_outputs``.
    clustering : float or None
        Average clustering coefficient of the directed neuron graph (networkx),
        None when skipped.
    motifs : dict of str to int or None
        Directed 3-node triad census (networkx ``triadic_census`` codes, e.g.
        ``"030T"`` feed-forward loop, ``"030C"`` 3-cycle), None when skipped.
    sampled : int or None
        Number of neurons of the random subgraph clustering and motifs ran on,
        None when they ran on the whole graph or were skipped.
    recurrent : list of dict
        One entry per population loop (see :func:`recurrent_loops`): its populations,
        ``loop_steps`` (the length in time steps of every simple cycle through the delays),
        neurons, synapses, reciprocity, E/I balance, degree and weight distributions of the
        loop's synapses, and the spectral radius of its effective recurrent matrix next to
        the source ANN's ``weight_hh`` (a converted ReLU RNN).
    notes : list of str
        Skipped measures, approximations.
    timings : dict of str to float
        Seconds spent per measure.
    """

    name: str
    counts: dict[str, int]
    populations: dict[str, dict[str, Any]]
    components: dict[str, int]
    loops: list[list[str]]
    feedback_edges: list[dict[str, Any]]
    reciprocity: float
    latency: dict[str, Any]
    clustering: float | None = None
    motifs: dict[str, int] | None = None
    sampled: int | None = None
    notes: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    recurrent: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (NaN becomes None)."""
        return _jsonable(dataclasses.asdict(self))

    def to_text(self) -> str:
        """A human-readable multi-line summary (what ``spikebridge graph`` prints)."""
        c = self.counts
        lines = [
            f"network '{self.name}': {c['populations']} populations, {c['projections']} projections, "
            f"{c['neurons']} neurons, {c['synapses']} synapses",
            f"neurons by outgoing sign: {c['exc']} E, {c['inh']} I, {c['mixed']} mixed"
            + (f" ({c['current_input']} current-encoded input neurons)" if c.get("current_input") else "") + "; "
            f"synapses: {c['exc_synapses']} excitatory, {c['inh_synapses']} inhibitory",
            f"strongly connected components: {self.components['n_components']} "
            f"(largest {self.components['largest']}, {self.components['n_recurrent']} recurrent, "
            f"{self.components['neurons_in_loops']} neurons in loops)",
            "recurrent population loops: " + ("; ".join("{" + ", ".join(loop) + "}" for loop in self.loops) or "none"),
            "feedback edges: " + (", ".join(f"{e['pre']}->{e['post']}" for e in self.feedback_edges) or "none"),
            f"reciprocity: {self.reciprocity:.4g}",
        ]
        lat = self.latency
        if lat.get("shortest_steps") is not None:
            lines.append(
                f"input->output latency: shortest {lat['shortest_steps']} steps ({lat['shortest_s'] * 1e3:.3g} ms), "
                f"longest {lat['longest_steps']} steps ({lat['longest_s'] * 1e3:.3g} ms)"
            )
        if self.clustering is not None:
            where = f" (sample of {self.sampled} neurons)" if self.sampled else ""
            lines.append(f"average clustering{where}: {self.clustering:.4g}")
        if self.motifs is not None:
            connected = {k: v for k, v in self.motifs.items() if k not in ("003", "012", "102") and v}
            lines.append("3-node motifs (connected triads): " + (", ".join(f"{k}={v}" for k, v in connected.items()) or "none"))
        for loop in self.recurrent:
            lines.append(
                f"recurrent loop {{{', '.join(loop['populations'])}}}: {loop['neurons']} neurons, {loop['synapses']} synapses, "
                f"loop lengths {loop['loop_steps']} steps, reciprocity {loop['reciprocity']:.3g}, "
                f"E/I synapses {loop['exc_synapses']}/{loop['inh_synapses']} (weight balance {loop['weight_balance']:.3g})"
            )
            for pop, sr in loop["spectral_radius"].items():
                ann = sr.get("ann")
                lines.append(f"  spectral radius of {pop}'s recurrent weights: SNN {sr['snn']:.4g}"
                             + (f", ANN {ann:.4g} (layer {sr['layer']})" if ann is not None else ""))
        header = f"{'population':<16} {'n':>7} {'E/I':>5} {'in-deg':>8} {'out-deg':>8} {'exc in':>9} {'inh in':>9} {'balance':>8}"
        lines += ["", header, "-" * len(header)]
        for name, p in self.populations.items():
            lines.append(
                f"{name:<16} {p['n']:>7} {p['ei']:>5} {p['in_degree']['mean']:>8.3g} {p['out_degree']['mean']:>8.3g} "
                f"{p['exc_input']['mean']:>9.3g} {p['inh_input']['mean']:>9.3g} {p['balance']:>8.3g}"
            )
        if self.notes:
            lines += [""] + [f"note: {n}" for n in self.notes]
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.to_text()


def analyse(
    snn: "SpikingNetwork",
    *,
    sample_size: int | None = None,
    seed: int = 0,
    exact_limit: tuple[int, int] = (EXACT_LIMIT_NEURONS, EXACT_LIMIT_SYNAPSES),
) -> GraphReport:
    """Measure the connectivity of a spiking network.

    Parameters
    ----------
    snn : SpikingNetwork
    sample_size : int, optional
        Run clustering and the motif census on a random induced subgraph of
        this many neurons when the network exceeds ``exact_limit``.  Without
        it those two measures are skipped on large networks (a note says so).
    seed : int
        Seed of the neuron sample.
    exact_limit : (int, int)
        Largest ``(neurons, synapses)`` on which clustering and motifs run on
        the whole graph.

    Returns
    -------
    GraphReport

    Examples
    --------
    >>> from spikebridge.snn.network import Population, Projection, SpikingNetwork
    >>> pop = Population(name="ring", n=3, model="if")
    >>> ring = Projection(name="r", pre="ring", post="ring", pre_index=[0, 1, 2], post_index=[1, 2, 0], weight=[1.0] * 3)
    >>> rep = analyse(SpikingNetwork([pop], [ring]))
    >>> rep.components["largest"], rep.loops, rep.motifs["030C"]
    (3, [['ring']], 1)
    """
    from scipy import sparse
    from scipy.sparse import csgraph

    timings: dict[str, float] = {}
    notes: list[str] = []
    t0 = time.perf_counter()
    flat = _flatten(snn)
    n = flat.n
    names = list(snn.populations)
    timings["flatten"] = time.perf_counter() - t0

    # adjacency A[pre, post]: one entry per connected neuron pair (parallel synapses summed)
    t = time.perf_counter()
    ones = np.ones(flat.pre.size, dtype=np.float32)
    adj = sparse.csr_matrix((ones, (flat.pre, flat.post)), shape=(n, n))
    adj.sum_duplicates()
    n_edges = int(adj.nnz)
    if n_edges < flat.pre.size:
        notes.append(f"{flat.pre.size - n_edges} synapses run parallel to another between the same two neurons; "
                     "degrees and graph measures count each neuron pair once")
    timings["adjacency"] = time.perf_counter() - t

    # signs, degrees, strengths and E/I balance: bincounts over the synapse list
    t = time.perf_counter()
    w = flat.weight
    pos_w = np.where(w > 0, w, 0.0)
    neg_w = np.where(w < 0, -w, 0.0)
    exc_in = np.bincount(flat.post, weights=pos_w, minlength=n)
    inh_in = np.bincount(flat.post, weights=neg_w, minlength=n)
    out_strength = np.bincount(flat.pre, weights=w, minlength=n)
    has_pos = np.bincount(flat.pre, weights=(w > 0), minlength=n) > 0
    has_neg = np.bincount(flat.pre, weights=(w < 0), minlength=n) > 0
    in_deg = np.bincount(adj.indices, minlength=n)
    out_deg = np.diff(adj.indptr)
    tags = np.array([1 if p.sign == "inhibitory" else 0 for p in snn.populations.values()], dtype=np.int8)[flat.owner]
    is_mixed = has_pos & has_neg
    is_inh = (has_neg & ~has_pos) | (~has_pos & ~has_neg & (tags == 1))
    is_exc = ~is_mixed & ~is_inh
    n_current = 0
    if _current_input(snn):
        # a current-encoded input emits no spikes (its values enter the first layer as a current): neither E nor I
        lo = flat.offsets[snn.input]  # type: ignore[index]
        n_current = snn.populations[snn.input].n  # type: ignore[index]
        for arr in (is_mixed, is_inh, is_exc):
            arr[lo : lo + n_current] = False
    counts = {
        "populations": len(names),
        "projections": len(snn.projections),
        "neurons": n,
        "synapses": int(w.size),
        "exc": int(is_exc.sum()),
        "inh": int(is_inh.sum()),
        "mixed": int(is_mixed.sum()),
        "current_input": n_current,
        "exc_synapses": int(np.count_nonzero(w > 0)),
        "inh_synapses": int(np.count_nonzero(w < 0)),
    }
    pops: dict[str, dict[str, Any]] = {}
    for name, pop in snn.populations.items():
        lo = flat.offsets[name]
        sl = slice(lo, lo + pop.n)
        e, i = exc_in[sl], inh_in[sl]
        tot = e + i
        fed = tot > 0
        kinds = {k for k, m in (("E", is_exc), ("I", is_inh), ("mixed", is_mixed)) if m[sl].any()} or {"current"}
        pops[name] = {
            "n": pop.n,
            "ei": kinds.pop() if len(kinds) == 1 else "mixed",
            "role": pop.role,
            "layer": pop.layer,
            "model": pop.model,
            "in_degree": _stats(in_deg[sl]),
            "out_degree": _stats(out_deg[sl]),
            "in_strength": _stats(e - i),
            "out_strength": _stats(out_strength[sl]),
            "exc_input": _stats(e),
            "inh_input": _stats(i),
            "balance": float(np.mean((e[fed] - i[fed]) / tot[fed])) if fed.any() else float("nan"),
            "inh_dominated": float(np.mean(i > e)) if pop.n else float("nan"),
        }
    timings["degrees_balance"] = time.perf_counter() - t

    # strongly connected components (Pearce's algorithm in scipy)
    t = time.perf_counter()
    n_comp, labels = csgraph.connected_components(adj, directed=True, connection="strong")
    sizes = np.bincount(labels, minlength=n_comp)
    self_loop = np.zeros(n, dtype=bool)
    diag = adj.diagonal()
    self_loop[diag != 0] = True
    recurrent = sizes > 1
    recurrent[labels[self_loop]] = True
    components = {
        "n_components": int(n_comp),
        "largest": int(sizes.max()) if sizes.size else 0,
        "n_recurrent": int(recurrent.sum()),
        "neurons_in_loops": int(sizes[recurrent].sum()),
    }
    timings["components"] = time.perf_counter() - t

    # reciprocity: edges whose reverse exists, self-loops excluded from the numerator
    t = time.perf_counter()
    both = adj.multiply(adj.T.tocsr())
    mutual = int(both.nnz) - int(self_loop.sum())
    reciprocity = mutual / n_edges if n_edges else float("nan")
    timings["reciprocity"] = time.perf_counter() - t

    # population graph: loops and feedback edges
    t = time.perf_counter()
    import networkx as nx

    pedges = _population_edges(snn)
    pg = nx.DiGraph()
    pg.add_nodes_from(names)
    pg.add_edges_from(pedges)
    loops = [
        sorted(c, key=names.index)
        for c in nx.strongly_connected_components(pg)
        if len(c) > 1 or any(pg.has_edge(x, x) for x in c)
    ]
    loops.sort(key=lambda c: names.index(c[0]))
    feedback = [{"pre": a, "post": b, "projections": pedges[(a, b)][2]} for a, b in _feedback_edges(snn, pedges)]
    timings["loops"] = time.perf_counter() - t

    # latency: population DAG (longest) / Dijkstra (shortest), and first arrival per output neuron
    t = time.perf_counter()
    shortest, longest = population_latency(snn)
    latency: dict[str, Any] = {
        "shortest_steps": shortest,
        "longest_steps": longest,
        "shortest_s": None if shortest is None else shortest * snn.dt,
        "longest_s": None if longest is None else longest * snn.dt,
        "neuron_first_arrival_steps": None,
        "unreachable_outputs": None,
    }
    if not _source_populations(snn) or snn.output is None:
        notes.append("latency not measured: the network has no input (or feed-forward first layer) or no output population")
    else:
        if loops:
            notes.append("longest latency ignores delays inside recurrent loops (longest path of the condensed population graph)")
        latency.update(_neuron_latency(snn, flat, adj, pedges, csgraph, notes))
    timings["latency"] = time.perf_counter() - t

    # clustering and motifs: networkx, small graphs or a sample only
    t = time.perf_counter()
    clustering: float | None = None
    motifs: dict[str, int] | None = None
    sampled: int | None = None
    small = n <= exact_limit[0] and n_edges <= exact_limit[1]
    if small or sample_size:
        if small:
            nodes = np.arange(n)
        else:
            if sample_size is None or sample_size < 3:
                raise ValidationError(f"analyse: sample_size must be >= 3, got {sample_size!r}", attr="sample_size")
            k = min(int(sample_size), n)
            nodes = np.sort(np.random.default_rng(seed).choice(n, size=k, replace=False))
            sampled = k
            notes.append(
                f"clustering and motifs measured on a random induced subgraph of {k} of {n} neurons (seed {seed}); "
                "sampling thins edges, so compare samples of equal size only"
            )
        sub = adj[nodes][:, nodes].tocoo()
        gx = nx.DiGraph()
        gx.add_nodes_from(range(nodes.size))
        gx.add_edges_from(zip(sub.row.tolist(), sub.col.tolist()))
        # self-loops are recurrent connections, not triangles: networkx's clustering ignores them anyway
        gx.remove_edges_from(nx.selfloop_edges(gx))
        clustering = float(nx.average_clustering(gx))
        motifs = {k2: int(v) for k2, v in nx.triadic_census(gx).items()}
    else:
        notes.append(
            f"clustering and 3-node motifs skipped: {n} neurons / {n_edges} edges exceed the exact limit "
            f"{exact_limit[0]} / {exact_limit[1]} (they do not scale); pass sample_size to run them on a sampled subgraph"
        )
    timings["clustering_motifs"] = time.perf_counter() - t
    t = time.perf_counter()
    rec_loops = recurrent_loops(snn, loops, pedges, flat)
    timings["recurrent"] = time.perf_counter() - t
    timings["total"] = time.perf_counter() - t0
    return GraphReport(
        name=snn.name,
        counts=counts,
        populations=pops,
        components=components,
        loops=loops,
        feedback_edges=feedback,
        reciprocity=float(reciprocity),
        latency=latency,
        clustering=clustering,
        motifs=motifs,
        sampled=sampled,
        notes=notes,
        timings=timings,
        recurrent=rec_loops,
    )


def effective_recurrent_matrix(snn: "SpikingNetwork", population: str, loop: list[str]) -> NDArray[np.float64]:
    """The rate map of ``population`` onto itself around its loop, in units of its threshold.

    Direct self-projections plus two-hop paths through relay populations of the loop
    (``P -> R -> P``, e.g. the inhibitory relays of ``dale="relay"``), each relay scaled
    by ``1 / threshold`` (one relay spike per ``threshold`` of input).  For a converted ReLU
    RNN this is ``D^-1 W_hh D`` with ``D`` the diagonal of per-unit scales, whose
    eigenvalues are those of ``W_hh``.

    Returns
    -------
    ndarray, shape (n, n)
        Indexed ``[post, pre]``.
    """
    pop = snn.populations[population]
    n = pop.n
    m = np.zeros((n, n))
    for proj in snn.projections.values():
        if proj.pre == population and proj.post == population:
            m += proj.to_dense(n, n)
    for relay in loop:
        if relay == population:
            continue
        r = snn.populations[relay]
        into = sum((p.to_dense(r.n, n) for p in snn.projections.values() if p.pre == population and p.post == relay),
                   np.zeros((r.n, n)))
        back = sum((p.to_dense(n, r.n) for p in snn.projections.values() if p.pre == relay and p.post == population),
                   np.zeros((n, r.n)))
        m += back @ (into / np.broadcast_to(np.asarray(r.threshold, dtype=np.float64), (r.n,))[:, None])
    return m / np.broadcast_to(np.asarray(pop.threshold, dtype=np.float64), (n,))[:, None]


def recurrent_loops(snn: "SpikingNetwork", loops: list[list[str]], pedges: Mapping[tuple[str, str], Any],
                    flat: _Flat | None = None) -> list[dict[str, Any]]:
    """Per population loop: cycle lengths through the delays, and the loop's connectivity statistics.

    Parameters
    ----------
    snn : SpikingNetwork
    loops : list of list of str
        Population loops (strongly connected sets, :attr:`GraphReport.loops`).
    pedges : mapping
        ``(pre, post) -> (min steps, max steps, projection names)`` of the population graph.

    Returns
    -------
    list of dict
        ``populations``, ``loop_steps`` (sorted distinct lengths in steps of the simple
        cycles, with each edge's shortest and longest delay), ``neurons``, ``synapses``,
        ``exc_synapses``, ``inh_synapses``, ``weight_balance`` (``(Σw⁺ - Σ|w⁻|) / (Σw⁺ + Σ|w⁻|)``),
        ``reciprocity`` (of the neuron pairs inside the loop), ``in_degree`` / ``out_degree`` /
        ``weight`` (``mean``/``std``/``min``/``max``), ``weight_histogram`` (``edges``,
        ``counts``), and ``spectral_radius`` per population of the loop that has an ANN layer:
        ``snn`` (of :func:`effective_recurrent_matrix`), ``ann`` (of the layer's ``weight_hh``,
        when the network keeps its ANN), ``layer``.
    """
    import networkx as nx

    flat = flat if flat is not None else _flatten(snn)
    out: list[dict[str, Any]] = []
    for loop in loops:
        members = set(loop)
        g = nx.DiGraph()
        g.add_nodes_from(loop)
        for (a, b), (lo, hi, _) in pedges.items():
            if a in members and b in members:
                g.add_edge(a, b, lo=lo, hi=hi)
        lengths: set[int] = set()
        for k, cycle in enumerate(nx.simple_cycles(g)):
            if k >= 1000:
                break  # a dense population graph: the first thousand cycles say enough
            hops = list(zip(cycle, cycle[1:] + cycle[:1]))
            lengths.add(sum(g.edges[e]["lo"] for e in hops))
            lengths.add(sum(g.edges[e]["hi"] for e in hops))
        in_loop = np.isin(flat.owner, [list(snn.populations).index(p) for p in loop])
        sel = in_loop[flat.pre] & in_loop[flat.post]
        pre, post, w = flat.pre[sel], flat.post[sel], flat.weight[sel]
        idx = np.flatnonzero(in_loop)
        local = np.full(flat.n, -1, dtype=np.int64)
        local[idx] = np.arange(idx.size)
        lp, lq = local[pre], local[post]
        pairs = set(zip(lp.tolist(), lq.tolist()))
        edges = [e for e in pairs if e[0] != e[1]]
        recip = (sum(1 for a, b in edges if (b, a) in pairs) / len(pairs)) if pairs else float("nan")
        pos, neg = float(w[w > 0].sum()), float(-w[w < 0].sum())
        hist_counts, hist_edges = np.histogram(w, bins=20) if w.size else (np.zeros(0), np.zeros(0))
        spectral: dict[str, dict[str, Any]] = {}
        for name in loop:
            pop = snn.populations[name]
            if pop.role == "interneuron" or not any(p.pre == name and p.post in members for p in snn.projections.values()):
                continue
            m = effective_recurrent_matrix(snn, name, loop)
            entry: dict[str, Any] = {"snn": float(np.max(np.abs(np.linalg.eigvals(m)))) if m.size else 0.0, "layer": pop.layer}
            ann = getattr(snn, "ann", None)
            if ann is not None and pop.layer in ann and hasattr(ann[pop.layer], "weight_hh"):
                entry["ann"] = float(np.max(np.abs(np.linalg.eigvals(ann[pop.layer].weight_hh))))
            spectral[name] = entry
        out.append({
            "populations": list(loop),
            "loop_steps": sorted(lengths),
            "neurons": int(idx.size),
            "synapses": int(w.size),
            "exc_synapses": int(np.count_nonzero(w > 0)),
            "inh_synapses": int(np.count_nonzero(w < 0)),
            "weight_balance": (pos - neg) / (pos + neg) if pos + neg else float("nan"),
            "reciprocity": float(recip),
            "in_degree": _stats(np.bincount(lq, minlength=idx.size)),
            "out_degree": _stats(np.bincount(lp, minlength=idx.size)),
            "weight": _stats(w),
            "weight_histogram": {"edges": hist_edges.tolist(), "counts": np.asarray(hist_counts).tolist()},
            "spectral_radius": spectral,
        })
    return out


def _neuron_latency(
    snn: "SpikingNetwork", flat: _Flat, adj: Any, pedges: Mapping[tuple[str, str], Any], csgraph: Any, notes: list[str]
) -> dict[str, Any]:
    """Shortest source-to-neuron delay (steps) of each output neuron, Dijkstra on the neuron graph.

    ``adj`` is the canonical adjacency (parallel synapses summed, data = their
    number); a matrix of summed delays built from the same COO arrays has the
    same structure, so ``delay.data / adj.data`` is the delay of each pair
    (exact unless parallel synapses of one pair have different delays).
    """
    from scipy import sparse

    n = flat.n
    steps = flat.steps.astype(np.float64)
    if snn.input is None:
        sources = np.concatenate(
            [np.arange(flat.offsets[s], flat.offsets[s] + snn.populations[s].n) for s in _source_populations(snn)]
        )
    else:
        in_lo = flat.offsets[snn.input]
        sources = np.arange(in_lo, in_lo + snn.populations[snn.input].n)
        if _current_input(snn):
            # the input enters as a current: a zero-cost edge (csgraph keeps explicit zeros as edges)
            steps[(flat.pre >= in_lo) & (flat.pre < in_lo + sources.size)] = 0.0
    delay = sparse.csr_matrix((steps, (flat.pre, flat.post)), shape=(n, n))
    delay.sum_duplicates()
    if adj.nnz < flat.pre.size:
        if any(lo != hi for lo, hi, _ in pedges.values()):
            notes.append("neuron pairs joined by parallel synapses may have different delays: their mean delay was used for latency")
        delay.data /= adj.data
    dist = csgraph.dijkstra(delay, directed=True, indices=sources, min_only=True)
    out_lo = flat.offsets[snn.output]  # type: ignore[index]
    d_out = dist[out_lo : out_lo + snn.populations[snn.output].n]  # type: ignore[index]
    finite = d_out[np.isfinite(d_out)]
    return {
        "neuron_first_arrival_steps": _stats(finite) if finite.size else None,
        "unreachable_outputs": int(d_out.size - finite.size),
    }
