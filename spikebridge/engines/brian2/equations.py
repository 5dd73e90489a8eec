"""Brian2 model descriptions of the neuron models of :mod:`spikebridge.snn.network`.

All membrane variables are dimensionless (threshold units); biases and input
currents are in threshold units per second.

``"if"`` (and the non-spiking ``"integrator"``)
    .. math:: \\frac{dv}{dt} = b + I_{in}

``"lif"`` (and the non-spiking ``"li"``), integrated exactly
    .. math:: \\frac{dv}{dt} = \\frac{v_{rest} - v}{\\tau_{mem}} + b + I_{in}

``"cuba_lif"`` (and the non-spiking ``"cuba_li"``)
    .. math:: \\frac{dI}{dt} = -\\frac{I}{\\tau_{syn}},\\qquad
              \\frac{dv}{dt} = \\frac{v_{rest} - v + r I}{\\tau_{mem}} + b + I_{in}

Spiking models fire when :math:`v \\ge \\theta` and are not refractory (a burst
population, ``params["burst"] = B``, emits ``n_burst`` spikes at once); during
the refractory period ``v`` is held (``unless refractory``).  Input
populations: ``"regular"`` neurons integrate :math:`dv/dt = \\text{rate}` and
fire at :math:`v \\ge 1` (reset by subtraction); ``"poisson"`` neurons fire with
probability ``rate dt`` per step.

This module builds strings and namespaces only; :mod:`.builder` creates the
Brian2 objects.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ...snn.network import Population

__all__ = ["NeuronSpec", "neuron_spec", "input_spec"]

_SPIKING = ("if", "lif", "cuba_lif")


@dataclass
class NeuronSpec:
    """Everything a ``NeuronGroup`` needs, except its size and clock.

    Attributes
    ----------
    equations : str
    threshold, reset : str or None
    refractory : float
        Seconds (0 = none).
    method : str
    namespace : dict
        Scalar parameters (plain floats; units are attached by the builder).
    per_neuron : dict of str to ndarray (n,)
        Parameters that differ between neurons; tiled over the batch.
    """

    equations: str
    threshold: str | None
    reset: str | None
    refractory: float
    method: str
    namespace: dict[str, Any] = field(default_factory=dict)
    per_neuron: dict[str, np.ndarray] = field(default_factory=dict)


def _param(spec: NeuronSpec, name: str, value: Any, unit: str, lines: list[str]) -> None:
    arr = np.asarray(value, dtype=np.float64)
    if arr.ndim == 0:
        spec.namespace[name] = (float(arr), unit)
    else:
        spec.per_neuron[name] = arr
        lines.append(f"{name} : {unit} (constant)")


def neuron_spec(pop: Population, *, has_current: bool, sequence: bool = False) -> NeuronSpec:
    """Brian2 description of population ``pop``.

    Parameters
    ----------
    pop : Population
        Any model except ``"input"`` (see :func:`input_spec`).
    has_current : bool
        Whether the population receives a constant input current ``I_in``
        (from a current-encoded input).
    sequence : bool
        The input current changes with the sequence element: it is read from a
        2-D ``TimedArray`` ``I_seq(t, i)`` (one row per window) that the builder puts
        in the namespace, instead of the constant ``I_in``.
    """
    spiking = pop.model in _SPIKING
    refractory = float(pop.refractory) if spiking else 0.0
    flag = " (unless refractory)" if refractory > 0 else ""
    spec = NeuronSpec(equations="", threshold=None, reset=None, refractory=refractory, method="exact")
    extra: list[str] = []
    drive = []
    bias = np.asarray(pop.bias, dtype=np.float64)
    if bias.ndim or float(bias) != 0.0:
        _param(spec, "bias", bias, "1/second", extra)
        drive.append("bias")
    if has_current and sequence:
        drive.append("I_seq(t, i)")
    elif has_current:
        extra.append("I_in : 1/second (constant)")
        drive.append("I_in")
    if pop.model in ("if", "integrator"):
        rhs = " + ".join(drive)
        lines = [f"dv/dt = {rhs} : 1{flag}"] if rhs else ["v : 1"]
        # the right-hand side does not depend on v: forward Euler is exact (and Brian2's
        # "exact" integrator refuses equations without a linear term)
        spec.method = "euler"
    elif pop.model in ("lif", "li"):
        spec.namespace["tau_mem"] = (float(pop.tau_mem), "second")  # type: ignore[arg-type]
        spec.namespace["v_rest"] = (float(pop.v_rest), "1")
        lines = [f"dv/dt = (v_rest - v)/tau_mem{''.join(' + ' + d for d in drive)} : 1{flag}"]
    elif pop.model in ("cuba_lif", "cuba_li"):
        spec.namespace["tau_mem"] = (float(pop.tau_mem), "second")  # type: ignore[arg-type]
        spec.namespace["tau_syn"] = (float(pop.tau_syn), "second")  # type: ignore[arg-type]
        spec.namespace["v_rest"] = (float(pop.v_rest), "1")
        spec.namespace["r_in"] = (float(pop.r), "1")
        lines = [
            f"dv/dt = (v_rest - v + r_in*I)/tau_mem{''.join(' + ' + d for d in drive)} : 1{flag}",
            "dI/dt = -I/tau_syn : 1",
        ]
    else:
        raise ValueError(f"population '{pop.name}': model {pop.model!r} has no Brian2 equations here")
    if spiking:
        # a burst population's θ is a per-neuron variable: synapses evaluate n_burst_pre, which
        # cannot see the group's namespace
        theta = np.broadcast_to(np.asarray(pop.threshold, dtype=np.float64), (pop.n,)) if pop.graded else pop.threshold
        _param(spec, "theta", theta, "1", extra)
        spec.threshold = "v >= theta"
        if pop.graded:
            # burst spikes: n_burst = clip(floor(v/θ), 1, B) where v >= θ; synapses deliver w·n_burst_pre
            # (same-step pathways run before the reset, so they read the emitting potential), n_emitted
            # counts every spike of the burst; the reset reads n_burst before v changes
            n_burst = f"int(v >= theta) * clip(floor(v / theta), 1, {pop.burst})"
            if pop.rate_cap:
                # a clipped population's bound: the net count never exceeds the steps so far (step k = t/dt)
                n_burst = f"int(v >= theta) * clip(clip(floor(v / theta), 1, {pop.burst}), 0, int(t / dt + 0.5) + 1 - n_emitted)"
                spec.threshold = "v >= theta and n_emitted < int(t / dt + 0.5) + 0.5"
            if pop.signed:
                # signed neuron with memory: an event with n_burst = -min(ceil(-v/θ), B, count) where v < 0
                # and the net count n_emitted (before this step) is positive; the reset then adds |n| θ
                n_burst += f" - int(v < 0) * clip(clip(ceil(-v / theta), 1, {pop.burst}), 0, n_emitted)"
                spec.threshold = f"({spec.threshold}) or (v < 0 and n_emitted > 0.5)"
            extra.append(f"n_burst = {n_burst} : 1")
            extra.append("n_emitted : 1")
            # n_burst depends on v and n_emitted: read it once before either changes
            spec.reset = "n_now = n_burst\nn_emitted += n_now\nv -= theta * n_now"
        elif pop.reset == "subtract":
            spec.reset = "v -= theta"
        elif pop.reset == "zero":
            spec.reset = "v = 0"
        elif pop.reset == "value":
            spec.namespace["v_reset"] = (float(pop.v_reset), "1")
            spec.reset = "v = v_reset"
    spec.equations = "\n".join(lines + extra)
    return spec


def input_spec(kind: str, *, graded: bool = False) -> NeuronSpec:
    """Brian2 description of a spike-encoded input population (``"poisson"``, ``"regular"``, ``"spikes"``).

    ``"spikes"`` reads a 2-D ``TimedArray`` named ``spike_raster`` (time × neuron)
    that the builder puts in the group's namespace; with ``graded`` (an analog
    raster) every non-zero value is an event whose synapses scale by it.
    """
    if kind == "spikes":
        threshold = "spike_raster(t, i) != 0" if graded else "spike_raster(t, i) > 0.5"
        return NeuronSpec(equations="", threshold=threshold, reset=None, refractory=0.0, method="euler")
    if kind == "poisson":
        return NeuronSpec(equations="rate : Hz (constant)", threshold="rand() < rate*dt", reset=None, refractory=0.0, method="exact")
    if kind == "regular":
        return NeuronSpec(
            equations="dv/dt = rate : 1\nrate : Hz (constant)", threshold="v >= 1", reset="v -= 1", refractory=0.0, method="euler"
        )
    raise ValueError(f"input encoding {kind!r} has no spiking input population")
