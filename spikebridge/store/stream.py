"""Stream a simulation into a spike store, batch by batch, so that a killed run loses nothing finished.

Crash safety
------------
* The first batch is written to ``<path>.partial`` and renamed over ``path``
  (an atomic ``os.replace``), so ``path`` never holds a half-created file.
* Later batches are appended to ``path`` in HDF5 SWMR mode: data are written
  and flushed, and only then is ``/progress.n_done`` raised and flushed.
  HDF5's ordered SWMR flushes keep the file consistent at every instant, so a
  ``SIGKILL`` leaves a file holding every batch finished before it.
* ``resume=True`` reopens the file, checks that the network, inputs, labels
  and configuration match what is stored, and continues from ``n_done``.
  Inputs and labels are compared by SHA-256 (``inputs_sha256``,
  ``labels_sha256``).  A store written before labels were hashed has no
  ``labels_sha256``: its finished samples' stored labels are compared with
  the new ones instead (a mismatch is refused, a match logs a warning), so
  resuming such a store still cannot mix two label sets.  Settings that do
  not change the spikes (``workers``, ``target``, ``max_memory``, progress,
  build directory) may differ.  The
  backend seeds each batch from ``(seed, first sample)`` and a resumed run
  starts on a batch boundary, so the result equals an uninterrupted run.
"""

from __future__ import annotations

import hashlib
import logging
import os
import sys
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .._h5 import json_attr
from ..config import SimulationConfig
from ..errors import SpikebridgeWarning, ValidationError
from ._hdf5lock import is_disk_full
from .record import SpikeRecord
from .spikes import SpikeStore

if TYPE_CHECKING:
    from ..snn.network import SpikingNetwork

__all__ = [
    "StoreReadout",
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
_RESUME_FREE = ("progress", "build_dir", "max_memory", "target", "workers", "scheduler")
# SimulationConfig fields added after stores were first written: a store that predates one ran
# with its default, so resuming it with that default is the same run
_ADDED_LATER = {"precision": "float64"}


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
    dt = float(snn.dt if dt is None else dt)
    current = snn.encoding.get("kind", "current") == "current"
    edges = []
    for p in snn.projections.values():
        if p.pre == p.post or p.kind in ("lateral", "recurrent"):
            continue
        cost = 0 if (current and p.pre == snn.input) else int(round(float(np.mean(snn.projection_steps(p, dt))))) if p.n_synapses else 1
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
    info = {
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
    # channel-wise normalisation (ConversionConfig.scales="channel"): per-channel λ of conv populations
    per_channel = snn.metadata.get("channel_scales") or {}
    for p in snn.populations.values():
        if p.layer in per_channel and len(p.shape or ()) == 3:
            info[p.name]["channel_scales"] = list(per_channel[p.layer])
    return info


def _sim_dict(config: SimulationConfig) -> dict[str, Any]:
    return {k: v for k, v in config.to_dict().items() if k not in _RESUME_FREE}


_HASHED = {"inputs_sha256": "inputs", "labels_sha256": "labels"}


def _check_resume(store: SpikeStore, expected: Mapping[str, Any], labels: NDArray[Any] | None = None) -> None:
    attrs = store.attrs
    problems = []
    for key, want in expected.items():
        got = attrs.get(key)
        if key == "labels_sha256" and key not in attrs:
            problems += _check_old_labels(store, labels)
            continue
        if key in _HASHED and got != want:
            what = _HASHED[key]
            state = "none now" if not want else "none stored" if not got else f"SHA-256 {str(got)[:12]}... stored, {str(want)[:12]}... now"
            problems.append(f"{key} differs (the {what} are not those of the stored run: {state})")
            continue
        if key == "simulation":
            got = {**_ADDED_LATER, **(got or {})}
            got = {k: v for k, v in got.items() if k not in _RESUME_FREE and (k in want or k not in _ADDED_LATER)}
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
            + ". Resume with the same network, inputs, labels and settings, or start again with --overwrite",
            attr="resume",
        )


def _check_old_labels(store: SpikeStore, labels: NDArray[Any] | None) -> list[str]:
    """A store without ``labels_sha256`` (older spikebridge): compare the finished samples' labels."""
    stored = store.labels
    n = store.n_done
    if stored is None and labels is None:
        return []
    if stored is None or labels is None or stored.shape[1:] != labels.shape[1:] or not np.array_equal(stored, labels[:n]):
        return [f"labels differ from the {n} stored ones (the store predates labels_sha256; its finished samples' labels were compared)"]
    warnings.warn(
        f"spike store '{store.path}' predates labels_sha256: checked the labels of its {n} finished samples only",
        SpikebridgeWarning,
        stacklevel=3,
    )
    return []


class _QuietWhenFull:
    """Hooks that drop h5py's own reports of writes that failed for lack of space.

    h5py reports the failed flushes of objects freed while a disk-full error
    unwinds through both ``sys.excepthook`` (the traceback) and
    ``sys.unraisablehook`` ("Exception ignored"); the ``StoreFullError`` raised
    instead says it once.  Every other report passes through.
    """

    def __init__(self) -> None:
        self.keep = False
        self.saved: tuple[Any, Any] | None = None

    def _unraisable(self, u: Any) -> None:
        if u.exc_value is None or not is_disk_full(u.exc_value):
            (self.saved or (sys.__unraisablehook__, None))[0](u)

    def _except(self, kind: Any, value: Any, tb: Any) -> None:
        if value is None or not is_disk_full(value):
            (self.saved or (None, sys.__excepthook__))[1](kind, value, tb)

    def install(self) -> None:
        """Put the filters in front of the current hooks (once; again if someone replaced them)."""
        if sys.excepthook == self._except and sys.unraisablehook == self._unraisable:
            return
        if self.saved is None:
            self.saved = (sys.unraisablehook, sys.excepthook)
        else:  # another hook (Brian2's) was installed meanwhile: keep it behind ours
            self.saved = (
                self.saved[0] if sys.unraisablehook == self._unraisable else sys.unraisablehook,
                self.saved[1] if sys.excepthook == self._except else sys.excepthook,
            )
        sys.unraisablehook, sys.excepthook = self._unraisable, self._except

    def restore(self) -> None:
        """Put the saved hooks back, unless a disk-full error asked to keep the filters."""
        if self.saved is not None and not self.keep:
            sys.unraisablehook, sys.excepthook = self.saved
            self.saved = None


class StoreReadout:
    """Predictions and decoded outputs of every sample of a spike store, read in chunks.

    Offers the read-out methods of :class:`SpikeRecord` (``predictions``,
    ``output_values``, ``n_steps``, ``dt``) without loading the spikes or the
    per-step traces of all samples at once.
    """

    def __init__(self, path: str | os.PathLike[str], chunk: int = 1024) -> None:
        self.path = Path(path)
        self.chunk = int(chunk)
        with SpikeStore(self.path) as st:
            self.n_samples, self.n_steps, self.dt = st.n_done, st.n_steps, st.dt

    def _gather(self, fn: Callable[[SpikeRecord], NDArray[Any]]) -> NDArray[Any]:
        with SpikeStore(self.path) as st:
            parts = [fn(st.output_record(lo, lo + self.chunk)) for lo in range(0, self.n_samples, self.chunk)]
        return np.concatenate(parts)

    def predictions(self, step: int | None = None) -> NDArray[np.int64]:
        """As :meth:`SpikeRecord.predictions`."""
        return self._gather(lambda r: r.predictions(step))

    def output_values(self, step: int | None = None) -> NDArray[np.float64]:
        """As :meth:`SpikeRecord.output_values`."""
        return self._gather(lambda r: r.output_values(step))


def _abandon(store: SpikeStore | None) -> None:
    """Close a store whose write failed for lack of space (its readers repair the file, see SpikeStore)."""
    if store is not None:
        store.abort()

