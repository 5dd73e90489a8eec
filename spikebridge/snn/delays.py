"""Synaptic delays of converted projections and the read-out latency they add.

Every projection gets a base delay (``ConversionConfig.delay``, default one
time step) and optionally a per-synapse extra delay drawn uniformly from
``[0, delay_jitter]`` with the conversion seed, rounded to whole steps (the
simulator works on a grid of ``dt``).  A delay below one step counts as one
step, unless the base delay is exactly 0: then the network is built with
``min_delay_steps=0`` and a spike reaches the next layer within the step it
was emitted, so the read-out lags the input by no step at all (see the
discrete-time semantics in ``conversion/network.py``).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from numpy.typing import NDArray

__all__ = ["delay_steps", "draw_delays", "pipeline_latency", "align_arrivals"]


def delay_steps(delay: float | NDArray[np.float64], dt: float, minimum: int = 1) -> NDArray[np.int64]:
    """Delays in seconds -> whole time steps, at least ``minimum``.

    ``minimum`` is the network's ``min_delay_steps``: 1 (a spike reaches the
    next population one step later at the earliest) or 0 (a zero delay
    delivers it in the step it was emitted; see ``conversion/network.py``).

    Examples
    --------
    >>> delay_steps(np.array([0.0, 1e-3, 2.4e-3]), 1e-3).tolist()
    [1, 1, 2]
    >>> delay_steps(np.array([0.0, 1e-3]), 1e-3, minimum=0).tolist()
    [0, 1]
    """
    steps = np.rint(np.asarray(delay, dtype=np.float64) / dt).astype(np.int64)
    return np.maximum(steps, int(minimum))


def draw_delays(
    n_synapses: int, *, dt: float, delay: float | None, jitter: float, rng: np.random.Generator
) -> float | NDArray[np.float64]:
    """Delay of one projection in seconds: a scalar, or one value per synapse with jitter.

    Parameters
    ----------
    n_synapses : int
    dt : float
        Time step in seconds.
    delay : float or None
        Base delay in seconds (None = one step; 0 = same-step delivery).
    jitter : float
        Width in seconds of the uniform extra delay (0 = none).
    rng : numpy.random.Generator
        Seeded generator (conversion seed), so delays are reproducible.
    """
    # an explicit zero delay is same-step delivery (the network's min_delay_steps = 0)
    base = 0 if delay == 0 else int(delay_steps(dt if delay is None else delay, dt))
    if jitter <= 0:
        return base * dt
    extra = np.rint(rng.uniform(0.0, jitter, size=n_synapses) / dt)
    return (base + extra) * dt


def pipeline_latency(
    order: list[str], mean_steps: Mapping[str, float], first_is_current: bool
) -> int:
    """Steps from input to output along a chain of projections.

    Parameters
    ----------
    order : list of str
        Projection names from input to output.
    mean_steps : mapping
        Mean delay in steps of each projection.
    first_is_current : bool
        Current-encoded input reaches the first layer without delay.
    """
    names = order[1:] if first_is_current else order
    return int(round(sum(mean_steps[n] for n in names)))


def align_arrivals(arrivals: list[float]) -> tuple[float, list[int]]:
    """Align the paths into one population (the inputs of a residual sum).

    Parameters
    ----------
    arrivals : list of float
        Mean steps from the input to this population along each incoming
        projection (the source's own arrival plus the projection's delay).

    Returns
    -------
    (arrival, pads) : (float, list of int)
        The population's arrival (the latest path) and the extra whole steps
        of delay each projection needs to arrive with it.

    Examples
    --------
    >>> align_arrivals([3.0, 1.0])
    (3.0, [0, 2])
    """
    latest = max(arrivals)
    return latest, [int(round(latest - a)) for a in arrivals]
