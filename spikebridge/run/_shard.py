"""What a batch adds to its store besides spikes (the ANN's outputs and activations), and a batch as a shard.

Run by the client of a one-file store, or by the worker that writes a batch's
shard (:mod:`spikebridge.run.distributed`, :mod:`spikebridge.store.shards`).
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from numpy.typing import NDArray

from ..errors import StoreFormatError
from ..store.record import SpikeRecord
from ..store.shards import fsync_dir, shard_name
from ..store.spikes import SpikeStore

if TYPE_CHECKING:
    from ..snn.network import SpikingNetwork

__all__ = ["ann_rows", "write_shard"]


def ann_rows(
    snn: "SpikingNetwork", xb: NDArray[Any] | None, act_layers: "tuple[str, ...] | list[str]", activations: bool = True
) -> tuple[NDArray[Any] | None, dict[str, NDArray[Any]] | None]:
    """ANN outputs (n, n_out) of the inputs ``xb`` and, with ``activations``, the activations of ``act_layers``.

    (None, None) for a network without an ANN or a run without inputs.  Run
    by the client, or by the worker that writes the batch's shard.
    """
    if snn.ann is None or xb is None:
        return None, None
    from ..ir.evaluate import evaluate

    n = int(xb.shape[0])
    if not activations:
        return evaluate(snn.ann, xb).reshape(n, -1), None
    acts = cast("dict[str, NDArray[Any]]", evaluate(snn.ann, xb, return_all=True))
    out = acts[snn.ann.output].reshape(n, -1)
    return out, {k: acts[k] for k in act_layers if k in acts}


def write_shard(
    folder: str | os.PathLike[str],
    first: int,
    record: SpikeRecord,
    ann_outputs: NDArray[Any] | None = None,
    activations: Mapping[str, NDArray[Any]] | None = None,
    labels: NDArray[Any] | None = None,
    *,
    compression: str | None = None,
) -> dict[str, Any]:
    """Write one batch as a shard file in ``folder`` and describe it.

    The batch goes into a new spike store under a name of this process's own
    (free space checked and reserved, checksum stored, fsynced), which is
    then renamed to :func:`shard_name` (replacing a shard of the same samples
    left by an earlier attempt: same samples, same spikes).

    Parameters
    ----------
    folder : path
        The run's shard folder (must exist).
    first : int
        Global index of the batch's first sample.
    record : SpikeRecord
        The batch (sample indices local to it).
    ann_outputs, activations, labels : optional
        As :meth:`SpikeStore.append_batch`.
    compression : str, optional
        The shard's HDF5 filter (a key of :data:`~spikebridge.store.spikes.FILTERS`; None: the default).

    Returns
    -------
    dict
        ``name``, ``first``, ``stop``, ``sha256`` (hex), ``bytes``: what the
        client indexes.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise StoreFormatError(f"shard folder '{folder}' does not exist (on a cluster it must be on a file system every worker sees)")
    first, stop = int(first), int(first) + int(record.n_samples)
    name = shard_name(first, stop)
    tmp = folder / f".{name}.{os.getpid():x}-{secrets.token_hex(4)}.partial"
    st = SpikeStore(tmp, "x", compression=compression)
    # no SWMR: nobody reads the file before it is renamed, and a Dask worker's pending h5py objects
    # can make HDF5 refuse to start it ("named datatypes and/or attributes opened in the file")
    st.swmr = False
    try:
        st.append_batch(0, record, ann_outputs, activations, labels)  # fsyncs data, checksum and counter
        digest = bytes(st.file["progress/batch_sha256"][0])
        st.close()
    except BaseException:
        st.abort()
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, folder / name)
    fsync_dir(folder)
    return {"name": name, "first": first, "stop": stop, "sha256": digest.hex(), "bytes": (folder / name).stat().st_size}
