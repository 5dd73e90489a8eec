"""Simulation results: in-memory records and the HDF5 spike store.

* :class:`SpikeRecord`, :class:`SpikeTrains` — what a simulation returns.
* :class:`SpikeStore` — the ``spikebridge.spikes`` HDF5 file (modes r/w/a/x).
* ``simulate_to_store`` lives in :mod:`spikebridge.orchestrate` (above engines and store) and is
  re-exported here for compatibility.
"""

from __future__ import annotations

from typing import Any

from .record import SpikeRecord, SpikeTrains, concat_records
from .spikes import SpikeStore, StoreExistsError, open_store

__all__ = ["SpikeRecord", "SpikeTrains", "concat_records", "SpikeStore", "StoreExistsError", "open_store", "simulate_to_store"]


def __getattr__(name: str) -> Any:
    if name == "simulate_to_store":  # lives in spikebridge.orchestrate, above engines and store
        from ..orchestrate import simulate_to_store

        return simulate_to_store
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
