"""Orchestration: run a simulation and stream it into a spike store.

This sits above the engines (:mod:`spikebridge.engines`: Brian2, the tensor
engine, worker processes, Dask) and the store (:mod:`spikebridge.store`): it
asks an engine for batches, computes the ANN's outputs for the same samples,
and writes both into a :class:`~spikebridge.store.spikes.SpikeStore`.  Engines
know nothing of files; the store knows nothing of engines.  Crash safety and
resume are described in :mod:`spikebridge.store.stream`.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import queue
import secrets
import threading
from collections.abc import Callable, Generator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, cast, overload

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .._h5 import json_attr
from ..config import SimulationConfig
from ..errors import ValidationError
from ..store._hdf5lock import WriterLock, is_disk_full
from ..store.record import SpikeRecord
from ..store.spikes import FILTERS, SpikeStore, StoreExistsError, StoreFullError, batch_bytes_bound, ensure_space
from ._shard import ann_rows, write_shard
from ..store.shards import clear_shards, index_rows, shard_folder, tidy_shards
from ..store.stream import (
    AUTO_ACTIVATIONS_BYTES,
    file_sha256,
    array_sha256,
    network_fingerprint,
    population_info,
    _sim_dict,
    _check_resume,
    _QuietWhenFull,
    _abandon,
)

if TYPE_CHECKING:
    from ..snn.network import SpikingNetwork

__all__ = ["simulate_to_store"]

log = logging.getLogger(__name__)


def _backend_iter(snn: "SpikingNetwork", inputs: Any, config: SimulationConfig, start: int) -> Iterator[tuple[int, SpikeRecord]]:
    """The backend's batch iterator (a seam the tests replace with a fake)."""
    from .simulate import iter_simulate

    return iter_simulate(snn, inputs, config, start=start)


#: run the tensor engine's next batch in a background thread while the store writes the current one
ENGINE_AHEAD = True


def _ahead(batches: Iterator[tuple[int, SpikeRecord]]) -> Generator[tuple[int, SpikeRecord], None, None]:
    """``batches``, with the next batch simulated in a background thread while the caller writes this one.

    The store's own work for a batch (the ANN forward pass, hashing, HDF5 writes and the fsync
    waits) is single-threaded and left the engine's cores idle while it ran (issue 21 §2): with
    this, it overlaps the engine's next batch.  Only the tensor engine's batches are run ahead
    (it is pure numpy/torch; Brian2 and worker processes stay in the calling thread).  At most
    two batches are alive at a time: the one being written and the one being simulated.  The
    caller alone touches the store, so the store's order (data fsynced, then ``n_done``) and
    every error path are unchanged; an engine error is raised in the caller when it asks for that
    batch.  The first batch is simulated in the calling thread.
    """
    first = next(batches, None)
    if first is None:
        return
    if not ENGINE_AHEAD or first[1].meta.get("engine") != "tensor":
        yield first
        yield from batches
        return
    ready: queue.Queue[tuple[str, Any]] = queue.Queue()
    # a batch may be simulated only once the batch two before it was written (two alive at a time)
    slots = threading.Semaphore(1)
    stop = threading.Event()

    def produce() -> None:
        try:
            while True:
                slots.acquire()
                if stop.is_set():
                    return
                item = next(batches, None)
                if item is None:
                    ready.put(("end", None))
                    return
                ready.put(("batch", item))
        except BaseException as err:  # handed to the caller, raised there
            ready.put(("error", err))

    # joined when the caller stops early (below); a daemon only so that a second Ctrl-C during that
    # wait is not held up by it
    worker = threading.Thread(target=produce, name="spikebridge-engine-ahead", daemon=True)
    worker.start()
    try:
        yield first
        while True:
            slots.release()  # the batch before was written: simulate the next one (overlaps the write of this one)
            kind, value = ready.get()
            if kind == "end":
                return
            if kind == "error":
                raise value
            yield value
    finally:
        stop.set()
        slots.release()
        # wait for a batch still being simulated (at most one): a daemon thread still inside numpy
        # while the interpreter shuts down (an error or Ctrl-C that ends the program) is not safe
        worker.join()


def _shard_iter(
    snn: "SpikingNetwork", x: NDArray[Any] | None, y: NDArray[Any] | None, config: SimulationConfig, start: int,
    folder: Path, act_layers: list[str], activations: bool, compression: str | None = None,
) -> Iterator[tuple[int, dict[str, Any]]]:
    """Batches written as shards into ``folder``: by the Dask workers, or here batch by batch without a scheduler."""
    if config.scheduler is not None:
        from .distributed import ShardSpec, iter_dask_shards

        from ..engines.brian2.run import explain_target
        from ..engines.plan import checked_plan, compile
        from .simulate import resolve_engine

        compiled = compile(snn, config)
        plan = checked_plan(snn, x, tuple(config.record), start, compiled.dt)
        if plan is None:
            return
        engine, target = resolve_engine(snn, config, compiled), explain_target(config.target, snn)
        spec = ShardSpec(str(folder.resolve()), tuple(act_layers) if activations else (), True, compression)
        yield from iter_dask_shards(compiled, plan, config, start, target, engine, spec, x, y)
        return
    for first, rec in _backend_iter(snn, x, config, start):
        ann, acts = ann_rows(snn, None if x is None else x[first : first + rec.n_samples], act_layers, activations)
        yb = None if y is None else y[first : first + rec.n_samples]
        desc = write_shard(folder, first, rec, ann, acts, yb, compression=compression)
        desc["meta"] = {k: v for k, v in rec.meta.items() if k != "timings"}
        yield first, desc


def _create_store(partial: Path, path: Path, fill: Callable[[SpikeStore], None], compression: str | None = None) -> SpikeStore:
    """Write a new store as ``partial`` with ``fill``, then move it to ``path`` and reopen it.

    The store only appears under the user's name once its header and first batch (or shard
    index row) are complete, so an interrupted first write leaves no half-made store behind.
    """
    first_store = SpikeStore(partial, "x", compression=compression)
    try:
        fill(first_store)
        first_store.close()
    except BaseException:
        first_store.abort()
        partial.unlink(missing_ok=True)
        raise
    if path.exists():
        WriterLock.probe(path)
    os.replace(partial, path)
    # verify=False: its one batch was hashed as it was written, fsynced, and nobody wrote since
    # (re-reading and re-hashing it cost 0.9 s of CPU for 136 LeNet samples at T=128)
    return SpikeStore(path, "a", verify=False)


@overload
def simulate_to_store(
    snn: "SpikingNetwork", inputs: ArrayLike | None, path: str | os.PathLike[str], config: SimulationConfig | None = ...,
    *, labels: ArrayLike | None = ..., resume: bool = ..., overwrite: bool = ..., ann_activations: bool | str = ...,
    progress: Callable[[int, int], None] | None = ..., network_path: str | os.PathLike[str] | None = ...,
    return_record: Literal[True] = ..., shards: bool | str = ..., compression: str | None = ...,
) -> SpikeRecord: ...


@overload
def simulate_to_store(
    snn: "SpikingNetwork", inputs: ArrayLike | None, path: str | os.PathLike[str], config: SimulationConfig | None = ...,
    *, labels: ArrayLike | None = ..., resume: bool = ..., overwrite: bool = ..., ann_activations: bool | str = ...,
    progress: Callable[[int, int], None] | None = ..., network_path: str | os.PathLike[str] | None = ...,
    return_record: Literal[False], shards: bool | str = ..., compression: str | None = ...,
) -> None: ...


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
    return_record: bool = True,
    shards: bool | str = "auto",
    compression: str | None = None,
) -> SpikeRecord | None:
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
    return_record : bool
        Read every sample back from the store at the end.  With False nothing
        is returned and the memory used stays flat in the number of samples
        (read what you need from the store).
    shards : bool or "auto"
        Write each batch as a shard file in ``<path>.shards/``, by the process
        that simulated it, and only an index of the shards into ``path``
        (:mod:`spikebridge.store.shards`; readers see one store).  ``"auto"``:
        for Dask runs (``config.scheduler``).  A resumed store keeps its layout.
    compression : {"auto", "lzf", "gzip", "none"}, optional
        HDF5 filter of a new store's datasets (default :data:`~spikebridge.store.spikes.DEFAULT_COMPRESSION`,
        "auto": lzf, but spike rasters and ANN activations unfiltered); a resumed store keeps its
        datasets' filters.  On the MNIST LeNet (1,000 images, T=128, every spike stored) "auto"
        made ``simulate -o`` 1.06x ``simulate`` with a 451 MB file, "lzf" on every dataset 1.26x
        with 288 MB, "none" 1.09x with 528 MB (docs/results.md, 0.2g).

    Returns
    -------
    SpikeRecord or None
        All samples (read back from the store), or None with ``return_record=False``.

    Raises
    ------
    StoreExistsError
        ``path`` exists and neither ``overwrite`` nor ``resume`` is set.
    StoreLockedError
        Another process is writing ``path``.
    StoreFullError
        The disk filled (or a file-size limit was reached): every batch
        finished before is kept and readable, and ``resume=True`` continues.
    ValidationError
        ``resume`` with a network, inputs, labels or settings that differ from the stored ones
        (``workers``, ``target`` and ``max_memory`` may differ: they do not change the spikes).
    """
    config = config or SimulationConfig()
    path = Path(path)
    if compression is not None and compression not in FILTERS:
        raise ValidationError(f"simulate_to_store: compression {compression!r} is not one of {sorted(FILTERS)}", attr="compression")
    if not path.parent.is_dir():  # said before simulating, not after the run when the first batch is written
        raise ValidationError(f"output folder '{path.parent}' of spike store '{path}' does not exist; create it first", attr="output")
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
        "labels_sha256": array_sha256(y),
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
        return ann_rows(snn, None if x is None else x[first : first + n], act_layers, bool(ann_activations))

    if shards == "auto":
        sharded = config.scheduler is not None
    elif isinstance(shards, bool):
        sharded = shards
    else:
        raise ValidationError(f"simulate_to_store: shards must be True, False or 'auto', got {shards!r}", attr="shards")
    folder = shard_folder(path)

    store: SpikeStore | None = None
    start = 0
    exists = path.exists() and path.stat().st_size > 0
    if resume and exists:
        store = SpikeStore(path, "a")
        try:
            _check_resume(store, checked, y)
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
        sharded = store.sharded
        stored = store.stored_layout("ann/activations")
        ann_activations = bool(ann_activations) if stored is None else stored
        log.info("resuming '%s' at sample %d of %d", path, start, n_samples)
    elif exists and not overwrite:
        raise StoreExistsError(f"spike store '{path}' already exists; pass --overwrite to replace it or --resume to continue it")
    elif path.exists() and not (overwrite or resume):  # an empty file is still the user's
        raise StoreExistsError(f"'{path}' already exists (an empty file); pass --overwrite to replace it")
    elif exists:
        WriterLock.probe(path)
    if not (resume and exists) and folder.exists():
        # a fresh run: shard files of ours left by an earlier run (or by a client killed before
        # its first index row) go; anything else there is the user's and stops the run
        if overwrite or resume:
            clear_shards(folder)
        if sharded and folder.is_dir() and any(folder.iterdir()):
            raise StoreExistsError(f"shard folder '{folder}' exists and is not empty; pass --overwrite to replace the run or choose another -o")
        if not sharded and folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()
    if sharded:
        try:
            folder.mkdir(exist_ok=True)
        except FileExistsError as err:
            raise StoreExistsError(f"'{folder}' exists and is not a folder; the shards of '{path}' go there") from err

    # a name of our own, so that no file of the user's (say "x.h5.partial") is ever replaced or deleted
    partial = path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}.partial")
    first = done = start
    quiet = _QuietWhenFull()
    batches: Generator[tuple[int, SpikeRecord], None, None] | None = None
    try:
        if start < n_samples and sharded:
            for first, desc in _shard_iter(snn, x, y, config, start, folder, act_layers, bool(ann_activations), compression):
                quiet.install()
                if store is None:
                    def first_shard(st: SpikeStore, desc: dict[str, Any] = desc) -> None:
                        st.write_header(**header, meta=desc.get("meta") or {})
                        st.init_shards(folder.name)
                        st.append_shard(desc)

                    store = _create_store(partial, path, first_shard, compression)
                else:
                    store.append_shard(desc)
                done = desc["stop"]
                if progress is not None:
                    progress(store.n_done, n_samples)
            if store is not None and store.n_done >= n_samples:
                tidy_shards(folder, {d["name"] for d in index_rows(store.file, store.n_done)})
        elif start < n_samples:
            batches = _ahead(iter(_backend_iter(snn, x, config, start)))
            for first, rec in batches:
                ann, acts = ann_for(first, rec.n_samples)
                yb = None if y is None else y[first : first + rec.n_samples]
                quiet.install()  # again: importing Brian2 replaces sys.excepthook
                if store is None:
                    # before the file exists: header, layout and first batch must fit, with margin
                    ensure_space(partial, batch_bytes_bound(rec, ann, acts, yb, compression=compression or SpikeStore.compression) + len(str(header)),
                                 f"the first batch (samples {first}-{first + rec.n_samples - 1})")
                    def first_batch(st: SpikeStore, first: int = first, rec: Any = rec, ann: Any = ann,
                                    acts: Any = acts, yb: Any = yb) -> None:
                        st.write_header(**header, meta={k: v for k, v in rec.meta.items() if k != "timings"})
                        st.append_batch(first, rec, ann, acts, labels=yb)

                    store = _create_store(partial, path, first_batch, compression)
                    done = first + rec.n_samples
                else:
                    done = store.append_batch(first, rec, ann, acts, labels=yb)
                if progress is not None:
                    progress(store.n_done, n_samples)
        if store is None:
            raise ValidationError(f"simulate_to_store: the backend produced no batch for '{path}'")
        if not return_record:
            return None
        return store.to_record()
    except (OSError, RuntimeError) as err:
        if not is_disk_full(err):
            raise
        _abandon(store)
        quiet.keep = True  # objects of the failed file are freed later still (with the traceback)
        kept = done  # batches are appended in order
        store = None
        what = f"{kept} of {n_samples} samples are kept in it; free space and continue with --resume" if kept else "nothing was written"
        raise StoreFullError(
            f"no space left on the device of '{path}' while writing samples from {kept}: {what}"
        ) from err
    finally:
        if batches is not None:
            batches.close()  # joins the engine's thread (see _ahead)
        if store is not None:
            store.close()
        quiet.restore()
