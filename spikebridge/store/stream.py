"""Stream a simulation into a spike store, batch by batch, so that a killed run loses nothing finished.

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

import dataclasses
import hashlib
import json
import logging
import os
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

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


def _backend_iter(snn: "SpikingNetwork", inputs: Any, config: SimulationConfig, start: int) -> Iterator[tuple[int, SpikeRecord]]:
    """The backend's batch iterator (a seam the tests replace with a fake)."""
    from ..backend.runner import iter_simulate

    return iter_simulate(snn, inputs, config, start=start)


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


def simulate_to_store(
    snn: "SpikingNetwork",
    inputs: ArrayLike | None,
    path: str | os.PathLike[str],
    config: SimulationConfig | None = None,
    *,
    labels: ArrayLike | None = None,
    resume: bool = False,
    overwrite: bool = False,
    ann_activations: bool | str = "auto",
    progress: Callable[[int, int], None] | None = None,
    network_path: str | os.PathLike[str] | None = None,
) -> SpikeRecord:
    """Simulate ``snn`` and stream every finished batch into a spike store.

    Parameters
    ----------
    snn : SpikingNetwork
    inputs : array_like, shape (n_samples, *ann_input_shape), or None
        ANN-unit inputs (None for a network without input: one sample).
    path : str or path-like
        The spike store to write.
    config : SimulationConfig, optional
    labels : array_like, shape (n_samples, ...), optional
        Targets, stored in ``/labels``.
    resume : bool
        Continue an interrupted run in ``path`` (starts afresh if ``path`` is missing).
    overwrite : bool
        Replace an existing ``path`` (without it, an existing file is an error).
    ann_activations : bool or "auto"
        Also store the ANN activations of every layer a population represents
        (what the per-layer comparison needs).  ``"auto"`` stores them when
        they take at most :data:`AUTO_ACTIVATIONS_BYTES` (float32).
    progress : callable, optional
        Called as ``progress(n_done, n_samples)`` after each batch.
    network_path : str or path-like, optional
        The network file, whose SHA-256 is recorded.

    Returns
    -------
    SpikeRecord
        All samples (read back from the store).

    Raises
    ------
    StoreExistsError
        ``path`` exists and neither ``overwrite`` nor ``resume`` is set.
    StoreLockedError
        Another process is writing ``path``.
    ValidationError
        ``resume`` with a network, inputs or settings that differ from the stored ones.
    """
    config = config or SimulationConfig()
    path = Path(path)
    x = None if inputs is None else np.asarray(inputs)
    n_samples = 1 if x is None else int(x.shape[0])
    if n_samples < 1:
        raise ValidationError("simulate_to_store: no input samples", attr="inputs")
    y = None if labels is None else np.asarray(labels)
    if y is not None and y.shape[0] != n_samples:
        raise ValidationError(f"simulate_to_store: {y.shape[0]} labels for {n_samples} samples", attr="labels")
    dt = float(config.dt or snn.dt)
    pops = population_info(snn, dt)
    header: dict[str, Any] = {
        "n_steps": config.n_steps,
        "dt": dt,
        "n_samples": n_samples,
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
        populations=pops,
    )
    act_layers = sorted({p["layer"] for p in pops.values() if p.get("layer") and p["role"] != "input"})
    if ann_activations == "auto":
        size = 4 * n_samples * sum(int(np.prod(snn.ann.shapes[k])) for k in act_layers if k in snn.ann.shapes) if snn.ann else 0
        ann_activations = size <= AUTO_ACTIVATIONS_BYTES
        if not ann_activations:
            log.warning(
                "not storing ANN activations (%.0f MB); pass ann_activations=True for the per-layer comparison", size / 1e6
            )
    elif not isinstance(ann_activations, bool):
        raise ValidationError(f"simulate_to_store: ann_activations must be True, False or 'auto', got {ann_activations!r}", attr="ann_activations")

    def ann_for(first: int, n: int) -> tuple[NDArray[Any] | None, dict[str, NDArray[Any]] | None]:
        if snn.ann is None or x is None:
            return None, None
        from ..ir.evaluate import evaluate

        xb = x[first : first + n]
        if not ann_activations:
            return evaluate(snn.ann, xb).reshape(n, -1), None
        acts = cast("dict[str, NDArray[Any]]", evaluate(snn.ann, xb, return_all=True))
        out = acts[snn.ann.output].reshape(n, -1)
        return out, {k: acts[k] for k in act_layers if k in acts}

    store: SpikeStore | None = None
    start = 0
    exists = path.exists() and path.stat().st_size > 0
    if resume and exists:
        store = SpikeStore(path, "a")
        try:
            _check_resume(store, checked)
        except BaseException:
            store.close()
            raise
        start = store.n_done
        stored_bs = (store.attrs.get("meta") or {}).get("batch_size")
        if config.batch_size is None and isinstance(stored_bs, int) and stored_bs > 0:
            # Batches must start where the first run's did (per-batch seeds), even
            # if the memory budget that chose the batch size has changed.
            config = dataclasses.replace(config, batch_size=stored_bs)
        # The stored layout decides, so every batch has the same datasets.
        ann_activations = "ann/activations" in store.file
        log.info("resuming '%s' at sample %d of %d", path, start, n_samples)
    elif exists and not overwrite:
        raise StoreExistsError(f"spike store '{path}' already exists; pass --overwrite to replace it or --resume to continue it")
    elif exists:
        WriterLock.probe(path)

    partial = path.with_name(path.name + ".partial")
    try:
        if start < n_samples:
            for first, rec in _backend_iter(snn, x, config, start):
                ann, acts = ann_for(first, rec.n_samples)
                yb = None if y is None else y[first : first + rec.n_samples]
                if store is None:
                    if partial.exists():
                        # left by a killed run, unless a live writer holds it
                        WriterLock.probe(partial)
                        partial.unlink()
                    with SpikeStore(partial, "w", overwrite=True) as first_store:
                        first_store.write_header(**header, meta={k: v for k, v in rec.meta.items() if k != "timings"})
                        first_store.append_batch(first, rec, ann, acts, labels=yb)
                    if path.exists():
                        WriterLock.probe(path)
                    os.replace(partial, path)
                    store = SpikeStore(path, "a")
                else:
                    store.append_batch(first, rec, ann, acts, labels=yb)
                if progress is not None:
                    progress(store.n_done, n_samples)
        if store is None:
            raise ValidationError(f"simulate_to_store: the backend produced no batch for '{path}'")
        return store.to_record()
    finally:
        if store is not None:
            store.close()
