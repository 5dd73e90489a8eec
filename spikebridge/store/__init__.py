"""Simulation results: in-memory records and the HDF5 spike store.

* :class:`SpikeRecord`, :class:`SpikeTrains` — what a simulation returns.
* :class:`SpikeStore` — the ``spikebridge.spikes`` HDF5 file (modes r/w/a/x).
* :func:`simulate_to_store` — stream a simulation into a store, batch by batch, resumable.
"""

from __future__ import annotations

from .record import SpikeRecord, SpikeTrains, concat_records
from .spikes import SpikeStore, StoreExistsError, open_store
from .stream import simulate_to_store

__all__ = ["SpikeRecord", "SpikeTrains", "concat_records", "SpikeStore", "StoreExistsError", "open_store", "simulate_to_store"]
