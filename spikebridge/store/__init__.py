"""Simulation results: in-memory records and the HDF5 spike store (a sink: it never simulates).

* :class:`SpikeRecord`, :class:`SpikeTrains` — what a simulation returns.
* :class:`SpikeStore` — the ``spikebridge.spikes`` HDF5 file (modes r/w/a/x).
* Streaming a simulation into a store is :func:`spikebridge.run.store.simulate_to_store`.
"""

from __future__ import annotations

from .record import SpikeRecord, SpikeTrains, concat_records
from .spikes import SpikeStore, StoreExistsError, open_store

__all__ = ["SpikeRecord", "SpikeTrains", "concat_records", "SpikeStore", "StoreExistsError", "open_store"]
