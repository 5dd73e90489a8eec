"""Data-based normalisation: per-layer activation scales from calibration data.

For every population the converter keeps a scale :math:`\\lambda_l`, the
``percentile`` of the (positive) activations that population represents on
calibration data.  A weight from population ``l-1`` to ``l`` and a bias of
layer ``l`` then become

.. math::

    W_l \\leftarrow W_l \\frac{\\lambda_{l-1}}{\\lambda_l},\\qquad
    b_l \\leftarrow \\frac{b_l}{\\lambda_l},

so that one spike per time step stands for an activation of :math:`\\lambda_l`
(Rueckauer et al. 2017).  Rescaling the bias with the *same* layer's scale is
what keeps networks with biases exact.
"""

from __future__ import annotations

import warnings

import numpy as np
from numpy.typing import ArrayLike

from ..errors import ConversionWarning, ValidationError

__all__ = ["activation_scale"]


def activation_scale(activations: ArrayLike, percentile: float, *, name: str, signed: bool = False) -> float:
    """Scale λ of one population: a percentile of its positive activations.

    Parameters
    ----------
    activations : array_like
        Activations of the layer on calibration data (any shape).
    percentile : float
        In (0, 100]; 100 is the maximum.
    name : str
        Layer name, for the warning.
    signed : bool
        Use ``|activations|`` (regression outputs, whose sign matters).

    Returns
    -------
    float
        λ > 0.  If no activation is positive, 1.0 and a
        :class:`~spikebridge.errors.ConversionWarning`.

    Examples
    --------
    >>> activation_scale([0.0, 1.0, 2.0, 4.0], 100, name="fc1")
    4.0
    >>> activation_scale([-3.0, 1.0], 100, name="out", signed=True)
    3.0
    """
    if not 0 < percentile <= 100:
        raise ValidationError(f"percentile must be in (0, 100], got {percentile}", attr="percentile")
    a = np.asarray(activations, dtype=np.float64).ravel()
    if signed:
        a = np.abs(a)
    # zeros are the silent ReLU units; counting them would push the percentile towards zero
    a = a[a > 0]
    if a.size == 0:
        warnings.warn(
            f"layer '{name}' is never active on the calibration data; using scale 1.0 "
            "(check the calibration data or the model)",
            ConversionWarning,
            stacklevel=3,
        )
        return 1.0
    lam = float(np.percentile(a, percentile))
    return lam if lam > 0 else float(a.max())
