"""Max pooling that converges: a tournament of rectified differences (``maxpool="tree"``).

The identity ``max(a, b) = a + relu(b - a)`` turns a maximum into sums and a
ReLU, both of which integrate-and-fire neurons with reset by subtraction
represent exactly in the rate limit.  A window of ``k`` inputs is reduced in
``ceil(log2 k)`` rounds of pairwise matches; every match adds one *difference
unit* ``d = relu(m_y - m_x)`` (an IF neuron with weight ``+θ`` from the spiking
units that make up ``m_y`` and ``-θ`` from those of ``m_x``), and the winner of
the match is represented by the units of ``m_x`` plus ``d``.  The pooled output
neuron sums, with weight ``+θ``, the units of the final winner: one input
neuron of the window and one difference unit per round.  Example, 2x2 window
``(a, b, c, d)``::

    round 1:  d1 = relu(b - a),  d2 = relu(d - c)
    round 2:  d3 = relu((c + d2) - (a + d1))
    output :  a + d1 + d3        = max(a, b, c, d)

Only existing primitives are used (IF populations, static weighted projections
with per-synapse delays), so the Brian2 builder, the numpy reference simulator
and any other engine run it unchanged.

Why it converges.  An IF neuron with reset by subtraction and no lower bound on
``v`` fires ``N_T`` spikes in ``T`` steps with ``v_T = v_0 + S_T - θ N_T < θ``
where ``S_T`` is its summed input, so ``N_T / T → max(0, lim S_T / (θ T))``:
its rate is the ReLU of its mean input, with an error that is bounded in count
and therefore falls like ``1/T``.  Every unit of the tree (and the output) is
such a neuron fed by units whose rates converge, so the output rate converges
to the max of its inputs' rates.  The OR gate (``maxpool="gate"``) instead
converges to the rate of the union of input spikes, which exceeds the max
whenever inputs are not synchronised.

Timing.  A unit of round ``r`` sees the input population through synapses of
delay ``r`` steps and a unit of round ``q < r`` through ``r - q`` steps, so all
terms of one difference refer to input spikes of the same step; the output
(round ``R + 1``) likewise.  The pooled population therefore lags its input by
``R + 1`` steps instead of one; ``readout["latency_steps"]`` grows by ``R``.
With same-step delivery (``delay=0``, ``min_delay_steps=0``) all delays are 0
and the whole tournament settles within the step: no latency is added.
"""

from __future__ import annotations

from collections import defaultdict
from typing import TYPE_CHECKING

import numpy as np

from ..errors import ConversionError

if TYPE_CHECKING:
    from ..config import ConversionConfig
    from ..snn.network import Population, Projection, SpikingNetwork

__all__ = ["expand_max_trees", "tournament"]


def tournament(k: int) -> tuple[list[list[tuple[int, int, float]]], list[tuple[int, int]], int]:
    """The difference units of a max over ``k`` inputs.

    Parameters
    ----------
    k : int
        Inputs of the window (``>= 1``).

    Returns
    -------
    units : list of list of (level, index, sign)
        For each difference unit (in creation order), its inputs: ``level`` 0
        is the window's input ``index``; level ``r >= 1`` is difference unit
        ``index`` (created in round ``r``); ``sign`` is +1 or -1.
    winner : list of (level, index)
        The units whose sum is the maximum.
    rounds : int
        Number of rounds ``ceil(log2 k)``.

    Examples
    --------
    >>> units, winner, rounds = tournament(4)
    >>> units[0], winner, rounds
    ([(0, 1, 1.0), (0, 0, -1.0)], [(0, 0), (1, 0), (2, 2)], 2)
    """
    nodes: list[list[tuple[int, int]]] = [[(0, i)] for i in range(k)]
    units: list[list[tuple[int, int, float]]] = []
    level = 0
    while len(nodes) > 1:
        level += 1
        nxt = []
        for j in range(0, len(nodes) - 1, 2):
            a, b = nodes[j], nodes[j + 1]
            units.append([(lv, ix, 1.0) for lv, ix in b] + [(lv, ix, -1.0) for lv, ix in a])
            nxt.append(a + [(level, len(units) - 1)])
        if len(nodes) % 2:
            nxt.append(nodes[-1])
        nodes = nxt
    return units, nodes[0], level


def _unit_levels(units: list[list[tuple[int, int, float]]], k: int) -> list[int]:
    """Round in which each unit is created (1-based)."""
    levels: list[int] = []
    for inputs in units:
        levels.append(1 + max((levels[ix] if lv > 0 else 0) for lv, ix, _ in inputs))
    return levels


def expand_max_trees(snn: "SpikingNetwork", cfg: "ConversionConfig") -> "SpikingNetwork":
    """Replace every spiking OR gate (projection ``kind="gate"``) by a tournament of difference units.

    Parameters
    ----------
    snn : SpikingNetwork
        A converted network whose max-pool populations are fed by one
        ``kind="gate"`` projection each (unit weights per window, as made by
        :func:`~spikebridge.conversion.convert.convert`).
    cfg : ConversionConfig
        For the neuron model, threshold, ``v_init`` and base delay.

    Returns
    -------
    SpikingNetwork
        New network: for a gate population ``P`` fed by ``S``, populations
        ``P_max1 .. P_maxR`` (role ``"interneuron"``, one difference unit per
        match and window), projections from ``S`` and from earlier rounds into
        them and into ``P``, all with the aligned delays of the module
        docstring; ``P`` resets by subtraction.  ``readout["latency_steps"]``
        grows by ``R`` per gate; ``metadata["maxpool_tree"]`` lists ``{P: R}``.

    Raises
    ------
    ConversionError
        If a gate's windows have different sizes after padding is cut away
        and cannot be grouped (never for PyTorch/ONNX pooling).
    """
    from ..snn.delays import delay_steps
    from ..snn.network import Population, Projection

    gates = [p for p in snn.projections.values() if p.kind == "gate"]
    if not gates:
        return snn
    dt = snn.dt
    # with same-step delivery every round of the tournament happens within the step (no latency)
    base = int(delay_steps(dt if cfg.delay is None else cfg.delay, dt, snn.min_delay_steps))
    pops: dict[str, list[Population]] = defaultdict(list)
    projs: list[Projection] = []
    added: dict[str, int] = {}
    extra_latency = 0
    for gate in gates:
        post_pop = snn.populations[gate.post]
        theta = float(np.max(post_pop.threshold))
        # group the window inputs of each pooled neuron; windows at padded borders can be smaller
        windows: dict[int, list[int]] = defaultdict(list)
        for pre, post in zip(gate.pre_index.tolist(), gate.post_index.tolist()):
            windows[post].append(pre)
        by_size: dict[int, list[int]] = defaultdict(list)
        for post, pres in windows.items():
            by_size[len(pres)].append(post)
        rounds = max(tournament(k)[2] for k in by_size)
        # per round: number of units so far; synapse lists per (source level, target level)
        n_level = [0] * (rounds + 2)
        syn: dict[tuple[int, int], list[tuple[int, int, float]]] = defaultdict(list)
        out_level = rounds + 1
        for k, posts in sorted(by_size.items()):
            units, winner, _ = tournament(k)
            levels = _unit_levels(units, k)
            for post in posts:
                pres = sorted(windows[post])
                ids: list[int] = []
                for inputs, lv_u in zip(units, levels):
                    uid = n_level[lv_u]
                    n_level[lv_u] += 1
                    ids.append(uid)
                    for lv, ix, sign in inputs:
                        src = pres[ix] if lv == 0 else ids[ix]
                        src_level = 0 if lv == 0 else levels[ix]
                        syn[(src_level, lv_u)].append((src, uid, sign * theta))
                for lv, ix in winner:
                    src = pres[ix] if lv == 0 else ids[ix]
                    syn[(0 if lv == 0 else levels[ix], out_level)].append((src, post, theta))
        names = {0: gate.pre, out_level: gate.post}
        for lv in range(1, rounds + 1):
            if n_level[lv] == 0:
                continue
            name = f"{gate.post}_max{lv}"
            if name in snn.populations:
                raise ConversionError(f"max-pool tree: population name '{name}' is taken")
            names[lv] = name
            pops[gate.post].append(
                Population(
                    name=name, n=n_level[lv], model=post_pop.model, threshold=theta, reset="subtract",
                    v_init=cfg.v_init * theta, tau_mem=post_pop.tau_mem, refractory=post_pop.refractory,
                    role="interneuron", layer=None,
                )
            )
        for (src_lv, dst_lv), rows in sorted(syn.items()):
            arr = np.asarray(rows, dtype=np.float64)
            name = gate.name if dst_lv == out_level and src_lv == 0 else f"{names[src_lv]}_{names[dst_lv]}"
            projs.append(
                Projection(
                    name=name, pre=names[src_lv], post=names[dst_lv], pre_index=arr[:, 0].astype(np.int64),
                    post_index=arr[:, 1].astype(np.int64), weight=arr[:, 2], delay=(dst_lv - src_lv) * base * dt,
                    kind="gate" if dst_lv == out_level else "max_tree", layer=gate.layer,
                )
            )
        added[gate.post] = rounds
        extra_latency += rounds * base
    gate_posts = set(added)
    populations = []
    for pop in snn.populations.values():
        if pop.name in gate_posts:
            pop = pop.replace(reset="subtract", v_init=cfg.v_init * float(np.max(pop.threshold)))
        populations.extend(pops.get(pop.name, []))  # the tree's rounds just before the pooled population
        populations.append(pop)
    out_pop = snn.populations[snn.output] if snn.output else None
    if out_pop is not None and out_pop.model == "integrator" and np.any(np.asarray(out_pop.bias)):
        # keep counting the bias for exactly the steps after the (now longer) pipeline latency
        i = [p.name for p in populations].index(out_pop.name)
        populations[i] = out_pop.replace(v_init=np.asarray(out_pop.v_init) - np.asarray(out_pop.bias) * dt * extra_latency)
    kept = [p for p in snn.projections.values() if p.kind != "gate"]
    readout = dict(snn.readout)
    readout["latency_steps"] = int(readout.get("latency_steps", 0)) + extra_latency
    metadata = {**snn.metadata, "maxpool_tree": added}
    return snn.copy_with(populations=populations, projections=kept + projs, readout=readout, metadata=metadata)
