"""The spike store as the sink of a streamed simulation: a killed run loses nothing finished.

:class:`StoreSink` receives batches in sample order and writes them;
:func:`spikebridge.orchestrate.simulate_to_store` drives the engine and feeds it
(re-exported here for compatibility).

Crash safety
------------
* The first batch is written to ``<path>.partial`` and renamed over ``path``
  (an atomic ``os.replace``), so ``path`` never holds a half-created file.
* Later batches are appended to ``path`` in HDF5 SWMR mode: data are written
  and flushed, and only then is ``/progress.n_done`` raised and flushed.
  HDF5's ordered SWMR flushes keep the file consistent at every instant, so a
  ``SIGKILL`` leaves a file holding every batch finished before it.
* ``resume=True`` reopens the file, checks that the network, inputs and
  configuration match what is stored, and continues from ``n_done``.  The
  backend seeds each batch from ``(seed, first sample)`` and a resumed run
  starts on a batch boundary, so the result equals an uninterrupted run.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .._h5 import json_attr
from ..config import SimulationConfig
from ..errors import ValidationError
from ._hdf5lock import WriterLock
from .record import SpikeRecord
from .spikes import SpikeStore, StoreExistsError

if TYPE_CHECKING:
    from ..conversion.network import SpikingNetwork

__all__ = [
    "StoreSink",
    "store_header",
    "simulate_to_store",
    "network_fingerprint",
    "file_sha256",
    "array_sha256",
    "population_latencies",
    "population_info",
]

log = logging.getLogger(__name__)

#: largest size of ANN activations stored by ``ann_activations="auto"``
AUTO_ACTIVATIONS_BYTES = 256e6

#: simulation-config keys that do not change the spikes, so they may differ on resume
_RESUME_FREE = ("progress", "build_dir", "max_memory", "target", "scheduler")


def file_sha256(path: str | os.PathLike[str]) -> str:
    """SHA-256 of a file's bytes, as hex."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def array_sha256(x: ArrayLike | None) -> str:
    """SHA-256 of an array's dtype, shape and bytes ("" for None).

    Examples
    --------
    >>> array_sha256(np.zeros(3)) == array_sha256(np.zeros(3))
    True
    """
    if x is None:
        return ""
    a = np.ascontiguousarray(np.asarray(x))
    h = hashlib.sha256(f"{a.dtype.str}{a.shape}".encode())
    h.update(a.tobytes())
    return h.hexdigest()


def network_fingerprint(snn: "SpikingNetwork") -> str:
    """SHA-256 of a network's content (populations, projections, read-out), independent of any file.

    Two networks with the same fingerprint produce the same spikes.
    """
    h = hashlib.sha256()
    h.update(json_attr({"dt": snn.dt, "readout": snn.readout, "encoding": snn.encoding, "input": snn.input, "output": snn.output}).encode())
    for pop in snn.populations.values():
        scalars = {k: getattr(pop, k) for k in ("name", "n", "model", "reset", "v_reset", "v_rest", "tau_mem", "tau_syn", "r", "refractory", "role")}
        h.update(json_attr({**scalars, "params": pop.params}).encode())
        for key in ("threshold", "bias", "v_init"):
            h.update(np.asarray(getattr(pop, key), dtype=np.float64).tobytes())
    for proj in snn.projections.values():
        h.update(json_attr({"name": proj.name, "pre": proj.pre, "post": proj.post, "target": proj.target}).encode())
        for arr in (proj.pre_index, proj.post_index, proj.weight, proj.delay):
            h.update(np.asarray(arr).tobytes())
    return h.hexdigest()


def population_latencies(snn: "SpikingNetwork", dt: float | None = None) -> dict[str, int]:
    """Steps from the input to each population along the longest feed-forward path.

    Each projection costs its mean delay in whole steps (at least 1);
    projections out of a current-encoded input cost nothing (the input
    enters the first layer as a current).  Self-connections and projections
    closing a loop (lateral inhibition, recurrence) are ignored.

    Returns
    -------
    dict of str to int
        0 for the input and for populations not reachable from it.
    """
    from ..conversion.delays import delay_steps

    dt = float(snn.dt if dt is None else dt)
    current = snn.encoding.get("kind", "current") == "current"
    edges = []
    for p in snn.projections.values():
        if p.pre == p.post or p.kind in ("lateral", "recurrent"):
            continue
        cost = 0 if (current and p.pre == snn.input) else int(round(float(np.mean(delay_steps(p.delay, dt))))) if p.n_synapses else 1
        edges.append((p.pre, p.post, cost))
    lat = {name: 0 for name in snn.populations}
    reached = {snn.input} if snn.input is not None else set()
    # Bellman-Ford style relaxation, bounded so loops cannot run forever.
    for _ in range(len(snn.populations)):
        changed = False
        for a, b, cost in edges:
            if a in reached and (b not in reached or lat[a] + cost > lat[b]):
                lat[b] = lat[a] + cost
                reached.add(b)
                changed = True
        if not changed:
            break
    return lat


def population_info(snn: "SpikingNetwork", dt: float | None = None) -> dict[str, dict[str, Any]]:
    """Per population the facts analysis needs without the network: n, shape, layer, role, model, latency."""
    lat = population_latencies(snn, dt)
    return {
        p.name: {
            "n": p.n,
            "shape": list(p.shape or (p.n,)),
            "layer": p.layer,
            "role": p.role,
            "model": p.model,
            "latency_steps": lat[p.name],
        }
        for p in snn.populations.values()
    }


def _sim_dict(config: SimulationConfig) -> dict[str, Any]:
    return {k: v for k, v in config.to_dict().items() if k not in _RESUME_FREE}


def _check_resume(store: SpikeStore, expected: Mapping[str, Any]) -> None:
    attrs = store.attrs
    problems = []
    for key, want in expected.items():
        got = attrs.get(key)
        if key == "simulation":
            got = {k: v for k, v in (got or {}).items() if k not in _RESUME_FREE}
        if got != want:
            if isinstance(want, dict) and isinstance(got, dict):
                diff = sorted(k for k in set(want) | set(got) if want.get(k) != got.get(k))
                detail = "; ".join(f"{k}: stored {got.get(k)!r}, now {want.get(k)!r}" for k in diff[:5])
            else:
                detail = f"stored {str(got)[:16]!r}, now {str(want)[:16]!r}"
            problems.append(f"{key} differs ({detail})")
    if problems:
        raise ValidationError(
            f"cannot resume '{store.path}': " + "; ".join(problems)
            + ". Resume with the same network, inputs and settings, or start again with --overwrite",
            attr="resume",
        )


def store_header(
    snn: "SpikingNetwork",
    x: NDArray[Any] | None,
    y: NDArray[Any] | None,
    config: SimulationConfig,
    network_path: str | os.PathLike[str] | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The attributes a spike store of this run gets, and the part a resume must match.

    Parameters
    ----------
    snn : SpikingNetwork
    x : ndarray (n_samples, ...) or None
        ANN-unit inputs (None: a network without input, one sample).
    y : ndarray or None
        Labels.
    config : SimulationConfig
    network_path : str or path-like, optional
        The network file, whose SHA-256 is recorded.

    Returns
    -------
    header : dict
        For :meth:`SpikeStore.write_header` (provenance, read-out, scales, populations).
    checked : dict
        The JSON form of the keys :class:`StoreSink` compares on resume.
    """
    dt = float(config.dt or snn.dt)
    header: dict[str, Any] = {
        "n_steps": config.n_steps,
        "dt": dt,
        "n_samples": 1 if x is None else int(x.shape[0]),
        "seed": config.seed,
        "conversion": dict(snn.conversion),
        "simulation": _sim_dict(config),
        "network_fingerprint": network_fingerprint(snn),
        "inputs_sha256": array_sha256(x),
    }
    # Compare through JSON, the form the store keeps (tuples become lists).
    checked = json.loads(json_attr(header))
    header.update(
        network_sha256=file_sha256(network_path) if network_path else None,
        readout=snn.readout,
        scales=snn.scales,
        populations=population_info(snn, dt),
    )
    return header, checked


class StoreSink:
    """Where a streamed simulation's batches go: one spike store, written batch by batch.

    Whoever drives the simulation (:func:`spikebridge.orchestrate.simulate_to_store`)
    opens a sink, continues from :attr:`start`, hands it every finished batch in
    sample order with :meth:`append`, and reads the result with :meth:`to_record`.
    The sink knows files, never engines.

    Parameters
    ----------
    path : str or path-like
        The spike store.
    header, checked : dict
        From :func:`store_header`.
    resume : bool
        Continue the store at ``path`` if it exists (after checking ``checked``).
    overwrite : bool
        Replace an existing store (without it, or ``resume``, an existing file is an error).

    Attributes
    ----------
    start : int
        First sample still to simulate (0 unless resumed).
    resumed : bool
    batch_size : int or None
        The batch size the resumed run used (batches must start where its did).
    stored_activations : bool or None
        Whether the resumed store holds ANN activations (later batches must match).

    Raises
    ------
    StoreExistsError, StoreLockedError, ValidationError
        As :func:`~spikebridge.orchestrate.simulate_to_store` documents.
    """

    def __init__(self, path: str | os.PathLike[str], header: dict[str, Any], checked: Mapping[str, Any], *,
                 resume: bool = False, overwrite: bool = False) -> None:
        self.path = Path(path)
        self.header = header
        self._store: SpikeStore | None = None
        self.start = 0
        self.resumed = False
        self.batch_size: int | None = None
        self.stored_activations: bool | None = None
        exists = self.path.exists() and self.path.stat().st_size > 0
        if resume and exists:
            store = SpikeStore(self.path, "a")
            try:
                _check_resume(store, checked)
            except BaseException:
                store.close()
                raise
            self._store, self.resumed, self.start = store, True, store.n_done
            stored_bs = (store.attrs.get("meta") or {}).get("batch_size")
            self.batch_size = stored_bs if isinstance(stored_bs, int) and stored_bs > 0 else None
            # The stored layout decides, so every batch has the same datasets.
            self.stored_activations = "ann/activations" in store.file
        elif exists and not overwrite:
            raise StoreExistsError(f"spike store '{self.path}' already exists; pass --overwrite to replace it or --resume to continue it")
        elif exists:
            WriterLock.probe(self.path)

    @property
    def n_done(self) -> int:
        """Samples stored so far."""
        return 0 if self._store is None else self._store.n_done

    def append(self, first: int, rec: SpikeRecord, ann: NDArray[Any] | None, acts: dict[str, NDArray[Any]] | None,
               labels: NDArray[Any] | None = None) -> None:
        """Store batch ``rec`` of samples ``first:first + rec.n_samples`` (the next ones, in order).

        The first batch of a new store goes to ``<path>.partial``, which is then
        renamed over ``path``, so ``path`` never holds a half-created file.
        """
        if self._store is not None:
            self._store.append_batch(first, rec, ann, acts, labels=labels)
            return
        partial = self.path.with_name(self.path.name + ".partial")
        if partial.exists():
            # left by a killed run, unless a live writer holds it
            WriterLock.probe(partial)
            partial.unlink()
        with SpikeStore(partial, "w", overwrite=True) as first_store:
            first_store.write_header(**self.header, meta={k: v for k, v in rec.meta.items() if k != "timings"})
            first_store.append_batch(first, rec, ann, acts, labels=labels)
        if self.path.exists():
            WriterLock.probe(self.path)
        os.replace(partial, self.path)
        self._store = SpikeStore(self.path, "a")

    def to_record(self) -> SpikeRecord:
        """All stored samples as one record.

        Raises
        ------
        ValidationError
            Nothing was stored.
        """
        if self._store is None:
            raise ValidationError(f"simulate_to_store: the backend produced no batch for '{self.path}'")
        return self._store.to_record()

    def close(self) -> None:
        """Close the store (every appended batch is already flushed)."""
        if self._store is not None:
            self._store.close()
            self._store = None

    def __enter__(self) -> "StoreSink":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def __getattr__(name: str) -> Any:
    # simulate_to_store drives the simulation, so it moved above engines and store
    # (spikebridge.orchestrate); this keeps `from spikebridge.store.stream import simulate_to_store` working
    if name == "simulate_to_store":
        from ..orchestrate import simulate_to_store

        return simulate_to_store
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
