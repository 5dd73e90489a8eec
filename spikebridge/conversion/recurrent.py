"""Recurrent additions to a converted network: winner-take-all lateral inhibition.

A converted feed-forward network decodes its output by spike counts.  Lateral
inhibition among the output neurons (every output spike pushes every *other*
output neuron's membrane down) makes the read-out a soft winner-take-all: the
leading class suppresses the others, which sharpens early decisions at the cost
of the exact rate code of the losing classes.

.. math:: v_j \\leftarrow v_j - s\\,\\theta_j \\quad\\text{for every } j \\ne i
          \\text{ one step after output neuron } i \\text{ spikes}

Under Dale's law (``ConversionConfig.dale != "none"``) the negative lateral
weights are routed through an inhibitory population by
:func:`spikebridge.conversion.dale.apply_dale`, which is applied after this.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ..errors import ConversionError, ValidationError

if TYPE_CHECKING:
    from ..snn.network import SpikingNetwork

__all__ = ["add_lateral_inhibition"]


def add_lateral_inhibition(snn: "SpikingNetwork", strength: float) -> "SpikingNetwork":
    """Add winner-take-all inhibition among the output neurons.

    Parameters
    ----------
    snn : SpikingNetwork
        A network with a spiking output population.
    strength : float
        Inhibition per output spike, as a fraction of the post neuron's
        threshold (``1.0`` cancels one spike's worth of charge); 0 returns
        ``snn`` unchanged.

    Returns
    -------
    SpikingNetwork
        A new network with a projection ``<output>_lateral`` (``kind="lateral"``,
        output → output, weight ``-strength * threshold`` off the diagonal,
        delay one time step); ``metadata["lateral_inhibition"]`` records the
        strength.

    Raises
    ------
    ValidationError
        ``strength`` negative or not finite, or the network already has the
        lateral projection.
    ConversionError
        No output population, or a non-spiking read-out (``output="potential"``
        integrates its input and emits no spike that could inhibit).

    Examples
    --------
    >>> from spikebridge.snn.network import Population, SpikingNetwork
    >>> out = Population(name="out", n=3, model="if", role="output")
    >>> net = add_lateral_inhibition(SpikingNetwork([out], output="out"), 0.5)
    >>> p = net.projections["out_lateral"]
    >>> p.to_dense(3, 3)
    array([[ 0. , -0.5, -0.5],
           [-0.5,  0. , -0.5],
           [-0.5, -0.5,  0. ]])
    """
    from ..snn.network import Projection

    if isinstance(strength, bool) or not isinstance(strength, (int, float, np.floating)) or not np.isfinite(strength):
        raise ValidationError(f"add_lateral_inhibition: strength must be a finite number, got {strength!r}", attr="strength")
    if strength < 0:
        raise ValidationError(
            f"add_lateral_inhibition: strength must be >= 0 (a fraction of the threshold), got {strength}", attr="strength"
        )
    if strength == 0:
        return snn
    if snn.output is None:
        raise ConversionError("add_lateral_inhibition: the network has no output population to inhibit")
    out = snn.populations[snn.output]
    if not out.is_spiking:
        raise ConversionError(
            f"add_lateral_inhibition: output population '{out.name}' is {out.model!r} (non-spiking) and cannot inhibit "
            "its neighbours; convert with output='count' to use lateral inhibition"
        )
    name = f"{out.name}_lateral"
    if name in snn.projections or name in snn.populations:
        raise ValidationError(f"add_lateral_inhibition: network '{snn.name}' already has '{name}'", attr="strength")
    n = out.n
    pre, post = np.nonzero(~np.eye(n, dtype=bool))
    theta = np.broadcast_to(np.asarray(out.threshold, dtype=np.float64), (n,))
    weight = -float(strength) * theta[post]
    target = "I" if out.model == "cuba_lif" else "v"
    proj = Projection(
        name=name, pre=out.name, post=out.name, pre_index=pre, post_index=post, weight=weight,
        delay=snn.dt, target=target, kind="lateral", layer=out.layer,
    )
    metadata = dict(snn.metadata)
    metadata["lateral_inhibition"] = float(strength)
    return snn.copy_with(projections=[*snn.projections.values(), proj], metadata=metadata)
