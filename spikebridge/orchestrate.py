"""Orchestration: run a simulation and stream it into a spike store.

This sits above the engines (:mod:`spikebridge.backend`: Brian2, worker
processes, Dask) and the store (:mod:`spikebridge.store`): it asks an engine
for batches, computes the ANN's outputs for the same samples, and hands both
to a :class:`~spikebridge.store.stream.StoreSink`.  Engines know nothing of
files; the store knows nothing of engines.  Crash safety and resume are
described in :mod:`spikebridge.store.stream`.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .config import SimulationConfig
from .errors import ValidationError
from .store.record import SpikeRecord
from .store.stream import AUTO_ACTIVATIONS_BYTES, StoreSink, store_header

if TYPE_CHECKING:
    from .conversion.network import SpikingNetwork

__all__ = ["simulate_to_store"]

log = logging.getLogger(__name__)


def _backend_iter(snn: "SpikingNetwork", inputs: Any, config: SimulationConfig, start: int) -> Iterator[tuple[int, SpikeRecord]]:
    """The backend's batch iterator (a seam the tests replace with a fake)."""
    from .backend.runner import iter_simulate

    return iter_simulate(snn, inputs, config, start=start)


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
        Also chooses where batches run (worker processes, ``scheduler`` for Dask);
        whatever runs them, batches reach the store in sample order.
    labels : array_like, shape (n_samples, ...), optional
        Targets, stored in ``/labels``.
    resume : bool
        Continue an interrupted run in ``path`` (starts afresh if ``path`` is missing).
    overwrite : bool
        Replace an existing ``path`` (without it, an existing file is an error).
    ann_activations : bool or "auto"
        Also store the ANN activations of every layer a population represents
        (what the per-layer comparison needs).  ``"auto"`` stores them when
        they take at most :data:`~spikebridge.store.stream.AUTO_ACTIVATIONS_BYTES` (float32).
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
    header, checked = store_header(snn, x, y, config, network_path)
    pops = header["populations"]
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
        from .ir.evaluate import evaluate

        xb = x[first : first + n]
        if not ann_activations:
            return evaluate(snn.ann, xb).reshape(n, -1), None
        acts = cast("dict[str, NDArray[Any]]", evaluate(snn.ann, xb, return_all=True))
        out = acts[snn.ann.output].reshape(n, -1)
        return out, {k: acts[k] for k in act_layers if k in acts}

    with StoreSink(path, header, checked, resume=resume, overwrite=overwrite) as sink:
        if sink.resumed:
            if config.batch_size is None and sink.batch_size is not None:
                # Batches must start where the first run's did (per-batch seeds), even
                # if the memory budget that chose the batch size has changed.
                config = dataclasses.replace(config, batch_size=sink.batch_size)
            ann_activations = bool(sink.stored_activations)
            log.info("resuming '%s' at sample %d of %d", path, sink.start, n_samples)
        if sink.start < n_samples:
            for first, rec in _backend_iter(snn, x, config, sink.start):
                ann, acts = ann_for(first, rec.n_samples)
                sink.append(first, rec, ann, acts, labels=None if y is None else y[first : first + rec.n_samples])
                if progress is not None:
                    progress(sink.n_done, n_samples)
        return sink.to_record()
