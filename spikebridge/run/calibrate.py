"""Conversion that needs a simulation: SNN calibration with the numpy reference simulator.

:func:`spikebridge.conversion.convert.convert` is pure numpy and never imports an engine; when
``ConversionConfig.calibrate`` asks for calibration (Li et al. 2021: biases or initial potentials
corrected layer by layer from simulated rates), the converted network has to be simulated, so the
entry point that supplies the simulator lives here, above the engines.  ``spikebridge.convert`` is
:func:`convert` below.
"""

from __future__ import annotations

from typing import Any

from numpy.typing import ArrayLike

from ..config import ConversionConfig
from ..conversion import calibrate as _calibrate
from ..conversion import convert as _convert
from ..engines.reference import simulate_reference
from ..ir.graph import AnnGraph
from ..snn.network import SpikingNetwork

__all__ = ["convert", "calibrate_network"]


def convert(graph: AnnGraph, config: ConversionConfig | None = None, calibration: ArrayLike | None = None) -> SpikingNetwork:
    """Convert a trained ANN into a spiking network, calibrating it by simulation when the config asks.

    Same parameters, result and errors as :func:`spikebridge.conversion.convert.convert`, with the
    numpy reference simulator supplied for ``config.calibrate`` (``"bias"``, ``"potential"``,
    ``"both"``).

    Examples
    --------
    >>> import numpy as np
    >>> from spikebridge.ir import AnnGraph, Input, Dense, ReLU
    >>> g = AnnGraph([Input(name="x", shape=(2,)), Dense(name="fc1", weight=[[1.0, 0.5]]), ReLU(name="r1"),
    ...               Dense(name="out", weight=[[2.0]])])
    >>> cfg = ConversionConfig(percentile=100.0, calibrate="potential", calibrate_steps=16)
    >>> snn = convert(g, cfg, calibration=np.array([[1.0, 2.0], [0.5, 0.0]]))
    >>> sorted(snn.populations)
    ['fc1', 'out', 'x']
    """
    return _convert.convert(graph, config, calibration, simulate=simulate_reference)


def calibrate_network(
    snn: SpikingNetwork, calibration: ArrayLike, cfg: ConversionConfig
) -> tuple[SpikingNetwork, list[dict[str, Any]]]:
    """:func:`spikebridge.conversion.calibrate.calibrate_network` with the numpy reference simulator.

    Returns the corrected network and, per corrected population, the mean absolute rate error
    before correction (spikes per step).
    """
    return _calibrate.calibrate_network(snn, calibration, cfg, simulate_reference)
