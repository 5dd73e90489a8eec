"""Start each converted population's bias when its input arrives.

A converted neuron's bias is a constant current that flows from step 0, but
its synaptic input reaches it only after the delays of every projection on
the way from the input (``onset`` steps: 0 for the first layer of a
current-encoded input, 1 for the next layer, ``R`` more behind an ``R``-round
max-pool tree, ...).  During those steps the bias alone charges (or drains) the
membrane: a positive bias makes neurons fire before any input has arrived,
and those spikes travel on to the next layers; a negative one leaves a
deficit.  Either way the count after ``T`` steps is off by ``bias · onset``,
which grows with depth (``onset`` up to 8 steps in the Fashion-MNIST ResNet-8,
whose folded BatchNorm biases reach 0.7 θ per step).

For an integrate-and-fire neuron this is undone exactly by its initial
potential: starting at ``v_init − b · onset`` (``b`` the bias per step), the
bias brings the membrane to ``v_init`` exactly when the first input can arrive,
without a spike before (the potential only moves towards ``v_init < θ``), and
from then on everything is as if the bias had started at ``onset``.  A
negative bias would start the membrane above ``v_init``; the start is capped
just below ``θ − b`` so that no neuron fires on the bias alone (only a bias
with ``|b| · (onset − 1) ≥ θ − v_init`` is left partly uncompensated).  The
integrating read-out (``output="potential"``) gets the same treatment in
:func:`~spikebridge.conversion.convert.convert`; leaky neurons are left alone
(their leak makes the shift inexact).
"""

from __future__ import annotations

import heapq
from typing import TYPE_CHECKING

import numpy as np


if TYPE_CHECKING:
    from ..snn.network import SpikingNetwork

__all__ = ["delay_bias_onset", "input_onset_steps"]

#: the capped start stays this fraction of θ below the threshold (float32 engines round near θ)
_MARGIN = 1e-6


def input_onset_steps(snn: SpikingNetwork) -> dict[str, int]:
    """First step at which synaptic input can reach each population.

    Parameters
    ----------
    snn : SpikingNetwork

    Returns
    -------
    dict of str to int
        Shortest path from the input population in whole steps (each
        projection costs its smallest delay, rounded by
        :meth:`SpikingNetwork.projection_steps`; a current-encoded
        input costs nothing).  Populations no path reaches are
        left out; a network without an input population gives ``{}``.
    """
    if snn.input is None:
        return {}
    free = str(snn.encoding.get("kind", "current")) == "current"
    out_edges: dict[str, list[tuple[str, int]]] = {}
    for proj in snn.projections.values():
        if proj.pre == proj.post or proj.n_synapses == 0:
            continue
        # the simulators' own rounding of delays to steps (conversion/delays.py), shortest synapse
        steps = 0 if (free and proj.pre == snn.input) else int(np.min(snn.projection_steps(proj)))
        out_edges.setdefault(proj.pre, []).append((proj.post, steps))
    onset = {snn.input: 0}
    heap = [(0, snn.input)]
    while heap:
        d, name = heapq.heappop(heap)
        if d > onset.get(name, d):
            continue
        for post, steps in out_edges.get(name, []):
            if d + steps < onset.get(post, d + steps + 1):
                onset[post] = d + steps
                heapq.heappush(heap, (d + steps, post))
    return onset


def delay_bias_onset(snn: SpikingNetwork) -> SpikingNetwork:
    """Shift the initial potential of every biased IF population so its bias counts from its input's onset.

    Parameters
    ----------
    snn : SpikingNetwork
        A converted network (biases in membrane units per second, ``v_init``
        absolute).

    Returns
    -------
    SpikingNetwork
        A copy in which each population of model ``"if"`` with a non-zero bias
        and an onset ``L > 0`` (:func:`input_onset_steps`) starts at
        ``min(v_init − b·L, θ·(1 − 1e-6) − b)`` per neuron (``b = bias · dt``);
        ``metadata["bias_onset"]`` maps those populations to ``L``.
    """
    onset = input_onset_steps(snn)
    shifted: dict[str, int] = {}
    populations = []
    for pop in snn.populations.values():
        steps = onset.get(pop.name, 0)
        if pop.model == "if" and steps > 0 and np.any(np.asarray(pop.bias)):
            b = np.broadcast_to(np.asarray(pop.bias, dtype=np.float64) * snn.dt, (pop.n,))
            theta = np.broadcast_to(np.asarray(pop.threshold, dtype=np.float64), (pop.n,))
            v0 = np.broadcast_to(np.asarray(pop.v_init, dtype=np.float64), (pop.n,))
            pop = pop.replace(v_init=np.minimum(v0 - b * steps, theta * (1.0 - _MARGIN) - b))
            shifted[pop.name] = steps
        populations.append(pop)
    if not shifted:
        return snn
    return snn.copy_with(populations=populations, metadata={**snn.metadata, "bias_onset": shifted})
