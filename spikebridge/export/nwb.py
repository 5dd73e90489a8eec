"""Export a spike store to Neurodata Without Borders (NWB) with pynwb.

Mapping
-------
* One NWB **unit** per (population, neuron) of every population whose spikes
  were recorded, all in the file's ``units`` table, with columns
  ``population`` (name), ``neuron_index`` (index within the population) and
  ``layer`` (the ANN layer it represents, or "").
* Samples are laid end to end on one clock: sample *k* starts at
  ``k × n_steps × dt`` seconds, so a spike at step *s* of sample *k* has
  ``spike_time = (k × n_steps + s) × dt`` seconds.
* Each sample is one NWB **trial** (``start_time``, ``stop_time``), with a
  ``label`` column when the store holds integer labels.
* The session start time is the store's creation time; the store's provenance
  (format version, seed, configuration) goes into ``notes`` as JSON.

pynwb is optional: ``pip install "spikebridge[nwb]"``.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import uuid
from pathlib import Path

import numpy as np

from .._optional import import_optional
from ..errors import ValidationError
from ..store.spikes import SpikeStore, StoreExistsError

__all__ = ["export_nwb"]


def export_nwb(
    store_path: str | os.PathLike[str],
    nwb_path: str | os.PathLike[str],
    *,
    populations: list[str] | None = None,
    overwrite: bool = False,
    session_description: str | None = None,
) -> Path:
    """Write the recorded spikes of a spike store as an NWB file.

    Parameters
    ----------
    store_path : path-like
        A spike store (``spikebridge.spikes`` HDF5 file).
    nwb_path : path-like
        The ``.nwb`` file to write.
    populations : list of str, optional
        Populations to export (default: every one with recorded spikes).
    overwrite : bool
        Replace an existing ``nwb_path``.
    session_description : str, optional

    Returns
    -------
    Path
        ``nwb_path``.

    Raises
    ------
    MissingDependencyError
        pynwb is not installed.
    ValidationError
        The store recorded no spikes, or an unknown population was asked for.
    StoreExistsError
        ``nwb_path`` exists and ``overwrite`` is False.
    """
    pynwb = import_optional("pynwb", "NWB export")
    out = Path(nwb_path)
    if out.exists() and not overwrite:
        raise StoreExistsError(f"NWB file '{out}' already exists; choose another path or pass overwrite=True")
    with SpikeStore(store_path) as st:
        names = list(st) if populations is None else list(populations)
        if not names:
            raise ValidationError(
                f"spike store '{store_path}' recorded no spike trains (only counts); simulate with --record all to export spikes",
                attr="populations",
            )
        missing = [n for n in names if n not in st]
        if missing:
            raise ValidationError(f"export_nwb: no spikes of {missing} in '{store_path}'; recorded: {list(st)}", attr="populations")
        attrs = st.attrs
        n_steps, dt, n_done = st.n_steps, st.dt, st.n_done
        info = st.population_info
        labels = st.labels
        created = attrs.get("created")
        try:
            start = _dt.datetime.fromisoformat(str(created))
        except (TypeError, ValueError):
            start = _dt.datetime.now(_dt.timezone.utc)
        if start.tzinfo is None:
            start = start.replace(tzinfo=_dt.timezone.utc)
        notes = {k: attrs.get(k) for k in ("format", "format_version", "seed", "n_steps", "dt", "simulation", "conversion", "network_sha256")}
        nwb = pynwb.NWBFile(
            session_description=session_description or f"spikebridge simulation of {n_done} samples ({Path(store_path).name})",
            identifier=str(uuid.uuid4()),
            session_start_time=start,
            notes=json.dumps(notes, default=str),
            source_script="spikebridge.export.nwb.export_nwb",
            source_script_file_name="spikebridge/export/nwb.py",
        )
        period = n_steps * dt
        if n_done:
            if labels is not None and labels.ndim == 1 and np.issubdtype(labels.dtype, np.integer):
                nwb.add_trial_column(name="label", description="target class of the sample")
                for k in range(n_done):
                    nwb.add_trial(start_time=k * period, stop_time=(k + 1) * period, label=int(labels[k]))
            else:
                for k in range(n_done):
                    nwb.add_trial(start_time=k * period, stop_time=(k + 1) * period)
        nwb.add_unit_column(name="population", description="spikebridge population name")
        nwb.add_unit_column(name="neuron_index", description="index of the neuron within its population")
        nwb.add_unit_column(name="layer", description="ANN layer the population represents ('' if none)")
        for name in names:
            trains = st[name]
            t = (trains.sample.astype(np.int64) * n_steps + trains.step) * dt
            order = np.lexsort((t, trains.neuron))
            neuron, t = trains.neuron[order], t[order]
            bounds = np.searchsorted(neuron, np.arange(trains.n_neurons + 1))
            layer = (info.get(name) or {}).get("layer") or ""
            for i in range(trains.n_neurons):
                nwb.add_unit(
                    spike_times=t[bounds[i] : bounds[i + 1]],
                    obs_intervals=[[0.0, n_done * period]] if n_done else None,
                    population=name,
                    neuron_index=i,
                    layer=layer,
                )
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.exists():
        out.unlink()
    with pynwb.NWBHDF5IO(str(out), "w") as io:
        io.write(nwb)
    return out
