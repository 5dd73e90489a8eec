"""Input-to-output latency of a spiking network, on its population graph.

Latency is a property of the network (its projections' delays), so it lives
with the network: conversion uses it (``conversion/dale.py`` recomputes the
read-out latency after inserting relay populations) and
:mod:`spikebridge.analysis.graph` re-exports :func:`population_latency`.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

if TYPE_CHECKING:
    from ..snn.network import SpikingNetwork

__all__ = ["population_latency"]


def _delay_steps(delay: float | NDArray[np.float64], dt: float, n: int, minimum: int = 1) -> NDArray[np.int32]:
    """Per-synapse delay in whole steps, at least ``minimum`` (the network's ``min_delay_steps``)."""
    from ..snn.delays import delay_steps

    steps = delay_steps(delay, dt, minimum).astype(np.int32)
    return np.broadcast_to(steps, (n,)) if steps.ndim == 0 else steps


def _current_input(snn: "SpikingNetwork") -> bool:
    """True when the input population feeds the first layer as a current (no synaptic hop)."""
    return snn.input is not None and str(snn.encoding.get("kind", "current")) == "current"


def _population_edges(snn: "SpikingNetwork") -> dict[tuple[str, str], tuple[int, int, list[str]]]:
    """(pre, post) -> (min steps, max steps, projection names)."""
    edges: dict[tuple[str, str], tuple[int, int, list[str]]] = {}
    for proj in snn.projections.values():
        if proj.n_synapses == 0:
            continue
        steps = _delay_steps(proj.delay, snn.dt, proj.n_synapses, snn.min_delay_steps)
        lo, hi = int(steps.min()), int(steps.max())
        key = (proj.pre, proj.post)
        if key in edges:
            a, b, names = edges[key]
            edges[key] = (min(a, lo), max(b, hi), names + [proj.name])
        else:
            edges[key] = (lo, hi, [proj.name])
    return edges


def _source_populations(snn: "SpikingNetwork") -> list[str]:
    """The input population, or else every population no other population projects onto (bias-driven first layers)."""
    if snn.input is not None:
        return [snn.input]
    fed = {p.post for p in snn.projections.values() if p.pre != p.post and p.n_synapses}
    return [name for name in snn.populations if name not in fed]


def population_latency(snn: "SpikingNetwork") -> tuple[int | None, int | None]:
    """Shortest and longest input-to-output latency in time steps, on the population graph.

    Paths start at the input population or, in a network without one, at
    every population that no other population projects onto (a first layer
    driven by its bias).  Each projection costs its delay in whole steps (at
    least one); projections out of a current-encoded input population cost nothing (the input enters
    the first layer as a current).  The longest path is taken on the
    condensation of the population graph, so delays inside a recurrent loop
    (e.g. lateral inhibition) are not counted; the shortest path is Dijkstra's.

    Returns
    -------
    (shortest, longest) : tuple of int or None
        None when the network has no source (see above) or no output
        population, or the output cannot be reached.

    Examples
    --------
    >>> from spikebridge.snn.network import Population, Projection, SpikingNetwork
    >>> pops = [Population(name=n, n=1, model="if") for n in "abc"]
    >>> projs = [Projection(name="ab", pre="a", post="b", pre_index=[0], post_index=[0], weight=[1.0], delay=2e-3),
    ...          Projection(name="bc", pre="b", post="c", pre_index=[0], post_index=[0], weight=[1.0], delay=1e-3),
    ...          Projection(name="ac", pre="a", post="c", pre_index=[0], post_index=[0], weight=[1.0], delay=1e-3)]
    >>> net = SpikingNetwork(pops, projs, input="a", output="c", encoding={"kind": "poisson"})
    >>> population_latency(net)
    (1, 3)
    """
    import networkx as nx

    sources = _source_populations(snn)
    if not sources or snn.output is None:
        return None, None
    free_input = _current_input(snn)
    g = nx.DiGraph()
    g.add_nodes_from(snn.populations)
    for (a, b), (lo, hi, _names) in _population_edges(snn).items():
        cost_lo, cost_hi = (0, 0) if (free_input and a == snn.input) else (lo, hi)
        g.add_edge(a, b, lo=cost_lo, hi=cost_hi)
    dist = nx.multi_source_dijkstra_path_length(g, set(sources), weight="lo")
    if snn.output not in dist:
        return None, None
    shortest = int(dist[snn.output])
    cond = nx.condensation(g)
    member = cond.graph["mapping"]
    best: dict[int, float] = {member[s]: 0.0 for s in sources}
    for c in nx.topological_sort(cond):
        if c not in best:
            continue
        for a in cond.nodes[c]["members"]:
            for _, b, hi in g.out_edges(a, data="hi"):
                cb = member[b]
                if cb != c:
                    best[cb] = max(best.get(cb, -math.inf), best[c] + hi)
    longest = best.get(member[snn.output])
    return shortest, (None if longest is None else int(longest))
