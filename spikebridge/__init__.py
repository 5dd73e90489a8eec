"""spikebridge: convert trained ANNs into Brian2 spiking networks and measure them.

Importing this package is light: it never imports torch, onnx, sklearn,
tensorflow or matplotlib; Brian2 is imported only when a network is built.
"""

from __future__ import annotations

from importlib import metadata as _metadata
from typing import Any

from .config import ConversionConfig, SimulationConfig
from .errors import (
    BuildError,
    ConversionError,
    MissingDependencyError,
    ModelFormatError,
    SimulationError,
    SpikebridgeError,
    StoreFormatError,
    UnsupportedLayerError,
    ValidationError,
)
from .ir import AnnGraph, evaluate, load_graph, save_graph

try:
    __version__ = _metadata.version("spikebridge")
except _metadata.PackageNotFoundError:  # running from a source tree
    __version__ = "0.3.0"

# Public functions that live in modules with heavier imports are resolved lazily.
_LAZY = {
    "load_model": ("spikebridge.importers.registry", "load_model"),
    "convert": ("spikebridge.run.calibrate", "convert"),
    "SpikingNetwork": ("spikebridge.snn.network", "SpikingNetwork"),
    "load_network": ("spikebridge.snn.network", "load_network"),
    "save_network": ("spikebridge.snn.network", "save_network"),
    "simulate": ("spikebridge.run.simulate", "simulate"),
    "to_brian2": ("spikebridge.engines.brian2.api", "to_brian2"),
    "simulate_to_store": ("spikebridge.run.store", "simulate_to_store"),
    "SpikeRecord": ("spikebridge.store.record", "SpikeRecord"),
    "SpikeStore": ("spikebridge.store.spikes", "SpikeStore"),
    "compare": ("spikebridge.analysis.compare", "compare"),
}

__all__ = [
    "AnnGraph",
    "ConversionConfig",
    "SimulationConfig",
    "evaluate",
    "load_graph",
    "save_graph",
    "SpikebridgeError",
    "ValidationError",
    "UnsupportedLayerError",
    "ModelFormatError",
    "StoreFormatError",
    "ConversionError",
    "BuildError",
    "SimulationError",
    "MissingDependencyError",
    *_LAZY,
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        value = getattr(importlib.import_module(module), attr)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'spikebridge' has no attribute {name!r}")
