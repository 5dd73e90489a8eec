"""The HDF5 spike store: every spike, count and read-out of a simulation, batch by batch.

A :class:`SpikeStore` is an h5py-like context manager (modes ``r``, ``w``,
``a``, ``x``) and a read-only :class:`~collections.abc.Mapping` from
population name to :class:`~spikebridge.store.record.SpikeTrains`.  The
layout is documented in ``docs/formats.md`` ("Spike store files") and is
readable with plain h5py::

    /                      attrs format="spikebridge.spikes", format_version=1,
                           package_versions, seed, network_sha256,
                           network_fingerprint, inputs_sha256, labels_sha256
                           (absent in older stores), n_samples (planned),
                           n_steps, dt (s)
    /run_metadata          uint8 (n_bytes,): UTF-8 JSON object with conversion,
                           simulation, readout, scales, populations, meta,
                           population_order (older stores keep these as JSON
                           root attributes, which are still read)
    /progress              attrs n_done = samples completely written;
                           batch_ends (int64), batch_sha256 (uint8, 32 per batch):
                           each finished batch's end and SHA-256 (see ``_digest``)
    /populations/<pop>/    either events: neuron (int32), step (int32): all spikes
                           concatenated, sorted by (sample, step, neuron); index
                           (int64, one exclusive end per sample);
                           or (format version 2, populations that fire densely)
                           bits: uint8 (n_samples, n_steps, ceil(n_neurons / 8)),
                           the packed spike raster (np.packbits, neuron j is bit
                           7 - j % 8 of byte j // 8);
                           attrs n_neurons, dt
    /counts/<pop>          (n_samples, n_neurons) spike counts, in the smallest
                           unsigned integer that holds n_steps (:func:`count_dtype`),
                           int32 where the first batch counted more (hand-made trains
                           that repeat a spike) and in stores of spikebridge <= 0.3
    /output/counts_t       (n_samples, n_steps, n_out) cumulative output counts,
                           same type as the counts
    /output/potential_t    float32 (n_samples, n_steps, n_out)
    /labels                (n_samples, ...) targets
    /ann/outputs           float64 (n_samples, n_out)
    /ann/activations/<l>   float32 (n_samples, *shape of layer l)

Datasets may hold rows past ``n_done`` after a crash (a batch being written
when the process died); readers always cut at ``n_done`` and writers
overwrite from there.

Run metadata live in a dataset, not in attributes, and the string attributes
are fixed-length (no variable-length strings, so no global heap): a
dataset's size is in its dataspace and a fixed string's in its type, both
checked against the file before anything is read, whereas HDF5 can hang,
deaf to Ctrl-C, reading a corrupted large or variable-length attribute
(reproduced: 1 of 60 stores with 3 random 4-byte corruptions in the first
8 KB, written with variable-length strings, hung ``compare``).
Opening a store checks every root attribute's storage size and the metadata
dataset's shape against the file size first, and reading errors of a damaged
file become :class:`~spikebridge.errors.StoreFormatError`.

A full disk is never met by HDF5 (which does not always report ENOSPC, and
can crash on it): before each batch the writer checks the free space against
a bound of what the batch adds, with margin (:func:`ensure_space`), and
reserves those blocks past the file's end (:func:`reserve_space`).  Every
counted batch carries a checksum; readers refuse a store whose counted
batches do not verify, and mode ``"a"`` cuts it to the verified ones.

Writers hold an exclusive ``flock`` on the file and switch HDF5 to SWMR mode
once the datasets exist, so a killed writer leaves a consistent file (see
:mod:`spikebridge.store._hdf5lock`).
"""

from __future__ import annotations

import datetime as _dt
import errno
import functools
import hashlib
import json
import logging
import os
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar, cast

import h5py
import numpy as np
from numpy.typing import ArrayLike, NDArray

from .._h5 import check_contained, check_format, fixed_text, json_attr, read_json_attr, write_format
from ..errors import SpikebridgeError, StoreFormatError, StoreLockedError, ValidationError
from ._hdf5lock import (
    WriterLock,
    clear_status_flags,
    extend_to_stored_eof,
    held_by_a_writer,
    is_disk_full,
    is_flag_error,
    is_lock_error,
    is_truncation_error,
)
from .record import Counts, SpikeRecord, SpikeTrains, pack_spikes

__all__ = [
    "SpikeStore", "StoreExistsError", "StoreFullError", "FORMAT", "VERSION", "open_store",
    "batch_bytes_bound", "ensure_space", "free_bytes", "verified_samples",
]

log = logging.getLogger(__name__)
_T = TypeVar("_T")

FORMAT = "spikebridge.spikes"
#: 2: populations may be stored as packed rasters (``bits``); version-1 stores are still read and continued
VERSION = 2

_LIBVER = ("v110", "latest")  # the oldest format that supports SWMR
_META_DS = "run_metadata"
_JSON_KEYS = ("conversion", "simulation", "readout", "scales", "populations", "meta", "population_order")
#: no root attribute of ours is larger (the JSON metadata are in /run_metadata)
_MAX_ATTR_BYTES = 1 << 20
# level 1: 1.6x the write throughput of level 4 on spike indices (shuffled int32) for the same
# file size (1.67 vs 1.66 bytes per spike, measured under a load of 4.5; issue 21 §2)
_GZIP = {"compression": "gzip", "compression_opts": 1, "shuffle": True}
#: HDF5 filters per ``compression`` setting; all are built into HDF5/h5py, so plain h5py reads every store
FILTERS: dict[str, dict[str, Any]] = {
    "gzip": _GZIP, "lzf": {"compression": "lzf", "shuffle": True}, "none": {},
    "auto": {"compression": "lzf", "shuffle": True},  # lzf, but rasters and activations unfiltered (BULK_FILTERS)
}
#: filters of the bulky datasets that "auto" leaves unfiltered: packed spike rasters (``bits``) and the
#: ANN activations.  h5py runs a filter holding the GIL, so lzf there kept the engine's threads from
#: overlapping the store's work, and it gains little per CPU second: on the MNIST LeNet (T=128) lzf
#: shrinks the rasters 1.8x and the float32 activations 1.6x for 3.5 s and 1.0 s of CPU per 1,000
#: images, where the counts (then int32) shrank 7x for 0.7 s (issue 21 §2, docs/results.md 0.2g);
#: counts are now uint8 at T <= 255 (count_dtype), whose lzf needs no shuffle and a quarter of the bytes
BULK_FILTERS: dict[str, dict[str, Any]] = {"auto": {}}
#: what new stores use (see docs/formats.md, "Spike store files", for the measured trade-off)
DEFAULT_COMPRESSION = "auto"
#: a population is stored as a packed raster when its first batch has at least this share of
#: (sample, step, neuron) slots spiking: events take 8 bytes per spike (before compression),
#: a raster 1/8 byte per slot, so at 1/64 they are the same size, and a raster needs no decoding
#: when the engine hands its spikes on packed (the tensor engine does)
BITS_DENSITY = 1 / 64
_CHUNK_BYTES = 1 << 20
#: free bytes kept beyond a batch's estimated size: HDF5 metadata (chunk indexes, object headers,
#: superblock) written with the batch and when the file is closed
SPACE_RESERVE = 256 << 10
#: factor on a batch's estimated size (the estimate is already an upper bound without compression)
SPACE_FACTOR = 1.5
#: per-chunk allowance for the filter's framing and the chunk index entry
_CHUNK_OVERHEAD = 512
_SPIKE_CHUNK, _INDEX_CHUNK = 65536, 4096
_M = TypeVar("_M", bound=Callable[..., Any])


class StoreExistsError(SpikebridgeError, FileExistsError):
    """A spike store exists where a new one was to be created."""


class StoreFullError(SpikebridgeError, OSError):
    """The disk (or the file-size limit, or the quota) filled while writing a spike store."""


def count_dtype(n_steps: int) -> np.dtype[Any]:
    """The type of a new store's spike counts for runs of ``n_steps`` steps.

    A neuron spikes at most once per step, so a count never exceeds
    ``n_steps``: uint8 up to 255 steps, uint16 up to 65,535, else uint32.  On
    the MNIST LeNet at T=128 the counts are a quarter of int32's bytes, and lzf
    needs no byte shuffle for them (issue 21 §2).  A store whose first batch
    counts more (hand-made trains that repeat a spike) keeps int32 counts.
    """
    for t in (np.uint8, np.uint16):
        if int(n_steps) <= np.iinfo(t).max:
            return np.dtype(t)
    return np.dtype(np.uint32)


def _count_filters(filters: Mapping[str, Any], dtype: np.dtype[Any]) -> dict[str, Any]:
    """``filters`` for a counts dataset of ``dtype``: no byte shuffle for one-byte items (it would only copy)."""
    return {k: v for k, v in filters.items() if not (k == "shuffle" and dtype.itemsize == 1)}


def _fitting(counts: ArrayLike, ds: h5py.Dataset, name: str) -> NDArray[Any]:
    """``counts`` checked to fit the counts dataset ``ds`` (a cast would wrap a count above its type's maximum)."""
    arr = np.asarray(counts)
    if arr.size and ds.dtype.kind in "iu" and arr.dtype != ds.dtype:
        lo, hi = np.iinfo(ds.dtype).min, np.iinfo(ds.dtype).max
        if ds.dtype.kind == "u" and arr.dtype.kind in "iu":
            # one pass: read as unsigned, a negative count is larger than any unsigned type's maximum
            bad = bool(arr.view(np.dtype(f"u{arr.dtype.itemsize}")).max() > hi)
        else:
            bad = bool(arr.min() < lo or arr.max() > hi)
        if bad:
            raise ValidationError(
                f"SpikeStore.append_batch: spike counts of {name!r} range {arr.min()}..{arr.max()}, outside the store's "
                f"{ds.dtype} ({lo}..{hi}), chosen because its first batch counted at most one spike per neuron and step "
                "(as every simulation does); write trains that repeat a spike into a new store",
                attr="record",
            )
    return arr


def _chunk_span_bytes(lo: int, n: int, chunk_rows: int, row_bytes: int, whole: bool = False) -> int:
    """Upper bound of the bytes HDF5 writes to put rows ``lo..lo+n-1`` into a chunked dataset.

    Every chunk the rows touch is written again whole, at a new place in the
    file (a compressed chunk that grew does not fit its old one): from the
    first touched chunk's first row to the last new row, uncompressed (gzip
    does not grow these arrays by more than its framing, counted per chunk).  ``whole``: the
    dataset is unfiltered, and HDF5 allocates each chunk it touches whole.
    """
    if n <= 0:
        return 0
    c = max(1, int(chunk_rows))
    first, last = lo // c, (lo + n - 1) // c
    if whole:  # an unfiltered chunk takes its whole size in the file from its first row on
        return (last - first + 1) * (c * int(row_bytes) + _CHUNK_OVERHEAD)
    return (lo + n - first * c) * int(row_bytes) + (last - first + 1) * _CHUNK_OVERHEAD


def batch_bytes_bound(
    record: SpikeRecord,
    ann_outputs: ArrayLike | None = None,
    activations: Mapping[str, ArrayLike] | None = None,
    labels: ArrayLike | None = None,
    file: h5py.File | None = None,
    start: int = 0,
    compression: str | None = None,
) -> int:
    """Upper bound, in bytes, of what appending this batch at sample ``start`` adds to a store file.

    ``file`` is the store's open file (None before its first batch: the
    chunk shapes the first batch will create are assumed; ``compression``, the
    store's setting, says whether they will be filtered).  Margins
    (:data:`SPACE_FACTOR`, :data:`SPACE_RESERVE`) are not included.
    """
    n = int(record.n_samples)
    total = 0

    def chunk_of(key: str, default: int) -> int:
        if file is not None and key in file and file[key].chunks:
            return int(file[key].chunks[0])
        return default

    def span(key: str, lo: int, m: int, default_rows: int, row_bytes: int) -> int:
        # a dataset not made yet may be unfiltered (compression "none", or "auto"'s rasters and activations)
        made = file is not None and key in file
        events = key.rsplit("/", 1)[-1] in ("neuron", "step", "index")
        # not made yet: per-sample datasets get chunks no longer than this first batch (_chunk_rows),
        # counted whole; event datasets whole only where unfiltered (compression="none")
        whole = file[key].compression is None if file is not None and made else not events or compression == "none"
        if not made and not events:
            default_rows = max(1, min(default_rows, n))
        return _chunk_span_bytes(lo, m, chunk_of(key, default_rows), row_bytes, whole)

    for name, st in record.spikes.items():
        key = f"populations/{name}"
        raster = int(st.n_samples) * int(record.n_steps) * (-(-int(st.n_neurons) // 8))
        if file is not None and f"{key}/bits" in file:
            total += span(f"{key}/bits", start, n, 1, raster // max(n, 1))
            continue
        if file is None or f"{key}/index" not in file:  # layout not made yet: either encoding
            total += span(f"{key}/bits", start, n, _rows_per_chunk(raster // max(n, 1), 1), raster // max(n, 1))
        base = 0
        if file is not None and start and f"{key}/index" in file and file[f"{key}/index"].shape[0] >= start:
            base = int(file[f"{key}/index"][start - 1])
        m = st.n_spikes  # not .neuron: that would decode packed trains just to count them
        total += 2 * span(f"{key}/neuron", base, m, _SPIKE_CHUNK, 4)
        total += span(f"{key}/index", start, n, _INDEX_CHUNK, 8)
    def count_size(key: str) -> int:  # a store of spikebridge <= 0.3 keeps int32 counts
        return int(file[key].dtype.itemsize) if file is not None and key in file else count_dtype(record.n_steps).itemsize

    for name in record.counts:
        row, size = int(np.prod(np.shape(record.counts.raw(name))[1:])), count_size(f"counts/{name}")
        total += span(f"counts/{name}", start, n, _rows_per_chunk(row, size), size * row)
    row, size = int(np.prod(np.shape(record.output_counts_t)[1:])), count_size("output/counts_t")
    total += span("output/counts_t", start, n, _rows_per_chunk(row, size), size * row)
    total += span("output/potential_t", start, n, _rows_per_chunk(row, 4), 4 * row)
    extra: list[tuple[str, Any, int]] = [("labels", labels if labels is not None else record.labels, 8), ("ann/outputs", ann_outputs, 8)]
    extra += [(f"ann/activations/{k}", v, 4) for k, v in (activations or {}).items()]
    for key, arr, size in extra:
        if arr is None:
            continue
        row = int(np.prod(np.shape(arr)[1:]))
        total += span(key, start, n, _rows_per_chunk(row, size), size * row)
    return total + 2 * _chunk_span_bytes(0, 1, 1, 40)  # the checksum rows


def free_bytes(path: str | os.PathLike[str]) -> tuple[int, str]:
    """Bytes a write to ``path`` may still add, and what limits them ("device" or "file-size limit").

    The free space of the file's device for unprivileged users
    (``statvfs``: ``f_bavail * f_frsize``) and, where set, the room left
    under the process's file-size limit (``RLIMIT_FSIZE``).
    """
    p = Path(path)
    folder = p.parent if not p.is_dir() else p
    try:
        sv = os.statvfs(folder)
        free, what = int(sv.f_bavail) * int(sv.f_frsize), "device"
    except (OSError, AttributeError):  # no statvfs (Windows): nothing to check
        free, what = 1 << 62, "device"
    try:
        import resource

        soft = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
        if soft != resource.RLIM_INFINITY:
            size = p.stat().st_size if p.is_file() else 0
            if soft - size < free:
                free, what = max(0, soft - size), "file-size limit"
    except (ImportError, OSError, ValueError):
        pass
    return free, what


def ensure_space(path: str | os.PathLike[str], estimate: int, what: str = "the next batch") -> None:
    """Raise :class:`StoreFullError` unless ``estimate`` bytes, with margin, fit where ``path`` is written.

    Checked before anything of a batch is written, so that HDF5 never meets
    a full disk (it does not always report one, and can crash when it does).
    """
    need = int(estimate * SPACE_FACTOR) + SPACE_RESERVE
    free, limit = free_bytes(path)
    if limit == "device":
        # blocks reserved past the file's end for the previous batch (see reserve_space) are ours still
        try:
            st = os.stat(path)
            free += max(0, int(getattr(st, "st_blocks", 0)) * 512 - st.st_size)
        except OSError:
            pass
    if free < need:
        where = "the device" if limit == "device" else "the file-size limit"
        raise StoreFullError(
            errno.ENOSPC,
            f"no space left on the device of '{path}': {what} needs up to {need} bytes and {where} leaves {free}",
        )


_FALLOC_FL_KEEP_SIZE = 1


def reserve_space(fd: int, nbytes: int) -> bool:
    """Allocate ``nbytes`` of disk blocks past the end of the open file ``fd``, its size unchanged.

    HDF5 grows the file from its end, so its next writes land on blocks that
    are already the file's: another process filling the disk after the free
    space was checked cannot make them fail.  Linux ``fallocate`` with
    ``FALLOC_FL_KEEP_SIZE``; False where that is unavailable (other systems,
    file systems without it), in which case only the free-space check guards.

    Raises
    ------
    OSError
        ENOSPC (or EFBIG, EDQUOT) when the blocks cannot be had.
    """
    if nbytes <= 0 or not sys.platform.startswith("linux"):
        return False
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    fn = getattr(libc, "fallocate64", None) or getattr(libc, "fallocate", None)
    if fn is None:
        return False
    fn.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]
    size = os.fstat(fd).st_size
    if fn(fd, _FALLOC_FL_KEEP_SIZE, size, int(nbytes)) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
        return False
    raise OSError(err, os.strerror(err))


def release_reserve(path: str | os.PathLike[str]) -> None:
    """Give back blocks reserved past a file's end (truncating it to its own size frees them)."""
    try:
        os.truncate(path, os.stat(path).st_size)
    except OSError:
        pass


def _digest(items: list[tuple[str, NDArray[Any]]]) -> NDArray[np.uint8]:
    """SHA-256 of a batch's rows: every dataset's name and bytes, in the order of the names."""
    h = hashlib.sha256()
    for name, arr in sorted(items, key=lambda t: t[0]):
        h.update(name.encode() + b"\0")
        # the array's own buffer, not a tobytes() copy (a batch's rasters are tens of MB); same bytes
        h.update(np.ascontiguousarray(arr).reshape(-1).view(np.uint8).data)
    return np.frombuffer(h.digest(), dtype=np.uint8)


#: rows of one dataset read at once while verifying (bytes): whole chunks, not one batch's slice at a time
_VERIFY_WINDOW = 32 << 20


def _batch_ranges(f: h5py.File, ends: NDArray[np.int64]) -> dict[str, list[tuple[int, int]]]:
    """Per dataset path, the rows each finished batch wrote to it (what :func:`_digest` hashed)."""
    los = np.concatenate([[0], ends[:-1]]).astype(np.int64)
    per_sample = list(zip(los.tolist(), ends.tolist()))
    ranges: dict[str, list[tuple[int, int]]] = {}
    for name in f.get("populations", {}):
        g = f["populations"][name]
        if "bits" in g:
            ranges[g["bits"].name] = per_sample
            continue
        index = g["index"][: int(ends[-1])] if len(ends) else np.zeros(0, np.int64)
        cut = [0] + [int(index[e - 1]) for e in ends.tolist()]
        spikes = list(zip(cut[:-1], cut[1:]))
        ranges[g["index"].name] = per_sample
        ranges[g["neuron"].name] = ranges[g["step"].name] = spikes
    for group in ("counts", "ann/activations"):
        if group in f:
            for ds in f[group].values():
                ranges[ds.name] = per_sample
    for key in ("output/counts_t", "output/potential_t", "labels", "ann/outputs"):
        if key in f:
            ranges[f[key].name] = per_sample
    return ranges


def _batch_table(f: h5py.File, n_done: int) -> tuple[NDArray[np.int64], NDArray[np.uint8]] | None:
    """The finished batches' ends and checksums (None for a store written before checksums)."""
    if "progress/batch_ends" not in f:
        return None
    ends = f["progress/batch_ends"][:].astype(np.int64)
    k = int(np.searchsorted(ends, n_done, side="right"))
    return ends[:k], f["progress/batch_sha256"][:k]


def verified_samples(f: h5py.File, n_done: int) -> tuple[int, str]:
    """Samples at the start of a store whose batches match their checksums, and why the next one does not.

    Every dataset is read once, in windows of whole batches, and each batch's
    rows are hashed as :func:`_digest` hashed them when they were written.
    Returns ``(n_done, "")`` for a store without checksums (written by an
    older version: nothing to verify).  A sharded store (``/shards``) checks
    each indexed shard instead (see :mod:`spikebridge.store.shards`).
    """
    if "shards" in f:
        from .shards import verified_shards

        return verified_shards(f, Path(f.filename), n_done, _shard_opener)
    table = _batch_table(f, n_done)
    if table is None:
        return n_done, ""
    ends, sums = table
    los = np.concatenate([[0], ends[:-1]]).astype(np.int64)
    bad = np.flatnonzero(ends <= los)
    n_ok = int(bad[0]) if bad.size else len(ends)  # batches with a possible end
    why = {k: f"batch {k} has an impossible end ({int(ends[k])} after {int(los[k])})" for k in bad[:1].tolist()}
    try:
        ranges = _batch_ranges(f, ends[:n_ok])
    except Exception as err:  # the spike index itself unreadable
        return 0, f"the spike index cannot be read ({str(err).splitlines()[0] if str(err) else type(err).__name__})"
    hashers = [hashlib.sha256() for _ in range(n_ok)]
    for name in sorted(ranges):
        ds = f[name]
        row_bytes = max(1, int(np.prod(ds.shape[1:], dtype=np.int64)) * ds.dtype.itemsize)
        spans = ranges[name]
        k = 0
        while k < n_ok:
            j = k + 1  # batches k..j-1 in one read
            while j < n_ok and (spans[j][1] - spans[k][0]) * row_bytes <= _VERIFY_WINDOW:
                j += 1
            a0 = spans[k][0]
            try:
                block = ds[a0 : spans[j - 1][1]]
                parts = [block[a - a0 : z - a0] for a, z in spans[k:j]]
            except Exception:  # unreadable chunks of a damaged file: find the first batch that needs them
                parts = []
                for a, z in spans[k:j]:
                    try:
                        parts.append(ds[a:z])
                    except Exception as err:
                        b = k + len(parts)
                        text = str(err).splitlines()[0] if str(err) else type(err).__name__
                        why[b] = f"samples {int(los[b])}-{int(ends[b]) - 1} cannot be read ({text})"
                        n_ok = b
                        break
            for b, part in enumerate(parts, start=k):
                hashers[b].update(name.encode() + b"\0")
                hashers[b].update(np.ascontiguousarray(part).tobytes())
            k = j
    for k in range(n_ok):
        if hashers[k].digest() != bytes(sums[k]):
            return int(los[k]), f"samples {int(los[k])}-{int(ends[k]) - 1} do not match their checksum"
    if n_ok < len(ends):
        return int(los[n_ok]), why.get(n_ok, f"samples from {int(los[n_ok])} cannot be verified")
    lo = int(ends[-1]) if len(ends) else 0
    if lo != n_done:
        return lo, f"samples {lo}-{n_done - 1} are counted as done but have no checksum"
    return lo, ""


def _finished_rows_within(path: Path, size: int) -> bool:
    """True if every chunk holding a counted sample (rows below ``/progress.n_done``) lies in the first ``size`` bytes."""
    try:
        with h5py.File(path, "r", locking=False, swmr=True) as f:
            n = int(f["progress"].attrs.get("n_done", 0))
            needed: dict[str, int] = {}

            def visit(name: str, obj: Any) -> None:
                if isinstance(obj, h5py.Dataset):
                    needed[name] = n

            f.visititems(visit)
            for pop in f.get("populations", {}).values():
                if "index" not in pop:  # a raster: one row per sample
                    continue
                total = int(pop["index"][n - 1]) if n else 0
                needed[pop["neuron"].name.lstrip("/")] = needed[pop["step"].name.lstrip("/")] = total
            for name, rows in needed.items():
                ds = f[name]
                if ds.chunks is None or rows == 0:
                    continue
                for k in range(ds.id.get_num_chunks()):
                    info = ds.id.get_chunk_info(k)
                    if info.chunk_offset[0] < rows and info.byte_offset + info.size > size:
                        return False
    except Exception:  # metadata in the missing part: not the tail of one failed write
        return False
    return True


def _bounded(check: Callable[[], bool], timeout: float = 5.0) -> bool:
    """``check()`` run in a forked child, False if it fails or takes longer than ``timeout`` seconds.

    HDF5 can loop for ever on metadata it reads from a damaged file, deaf to
    signals; a child can be killed.  Without ``fork`` (Windows) nothing is run
    and the answer is False.
    """
    if not hasattr(os, "fork"):
        return False
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            ok = check()
        except BaseException:
            ok = False
        os._exit(0 if ok else 1)
    deadline = time.monotonic() + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status) == 0
        if time.monotonic() > deadline:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            return False
        time.sleep(0.005)


def _repair_truncated(path: Path, err: OSError) -> bool:
    """Extend a store a full disk left short of its recorded end (see ``extend_to_stored_eof``).

    Only when no live writer holds the file, and only if every counted sample
    lies in the bytes that reached the disk (a file cut short otherwise stays
    an error); True if it was repaired.
    """
    if not is_truncation_error(err):
        return False
    try:
        lock = WriterLock(path)
    except (StoreLockedError, OSError):
        return False
    try:
        size = path.stat().st_size
        if not extend_to_stored_eof(path):
            return False
        if not _bounded(lambda: _finished_rows_within(path, size)):
            os.truncate(path, size)  # leave the file as it was
            return False
    except (StoreFormatError, OSError):
        return False
    finally:
        lock.release()
    log.warning("spike store '%s': extended to its recorded size after a write that ran out of space", path)
    return True


def _json_safe(obj: Any) -> str:
    try:
        return json_attr(obj)
    except TypeError:
        return json.dumps(obj, default=str, sort_keys=True)


def _reading(fn: Callable[..., _T]) -> Callable[..., _T]:
    """Turn the low-level errors of reading a damaged file (h5py's OSError, KeyError "Unable to ...",
    RuntimeError, ValueError) into one StoreFormatError naming the store; our own errors pass."""

    @functools.wraps(fn)
    def wrapper(self: "SpikeStore", *args: Any, **kwargs: Any) -> _T:
        try:
            return fn(self, *args, **kwargs)
        except SpikebridgeError:
            raise
        except KeyError as err:
            if "Unable to" not in str(err):
                raise
            raise self._corrupt(err) from err
        except (OSError, RuntimeError, ValueError, TypeError) as err:
            raise self._corrupt(err) from err

    return wrapper


def _layer_of(ds: h5py.Dataset, default: str) -> str:
    value = ds.attrs.get("layer", default)
    return value.decode() if isinstance(value, bytes) else str(value)


def _rows_per_chunk(row_items: int, itemsize: int) -> int:
    return int(max(1, min(4096, _CHUNK_BYTES // max(1, row_items * itemsize))))


def _chunk_rows(row_items: int, itemsize: int, first_batch: int) -> int:
    """Rows per chunk of a new per-sample dataset: at most 1 MB, and no longer than the first batch.

    HDF5 allocates an unfiltered chunk whole when its first row is written, so a 1 MB chunk
    of a small network's raster took 1 MB of disk for a batch of a few samples.  A filtered
    chunk that a batch fills only partly is read, decompressed, compressed and written again
    by every later batch that adds to it (each time at a new place in the file): on the MNIST
    LeNet (batches of 125 images) lzf chunks of up to 4,096 rows made HDF5 decompress more
    than the whole run wrote.  Batches of the first batch's size fill chunks exactly.
    """
    return max(1, min(_rows_per_chunk(row_items, itemsize), int(first_batch)))


def _divert_on_full(method: _M) -> _M:
    """Wrap a writing method: on a disk-full error, divert the file (see ``SpikeStore._divert``)
    while the method's datasets are still open, then re-raise."""

    @functools.wraps(method)
    def wrapper(self: "SpikeStore", *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except (OSError, RuntimeError) as err:
            if is_disk_full(err):
                self._divert()
            raise

    return cast(_M, wrapper)


class SpikeStore(Mapping[str, SpikeTrains]):
    """An HDF5 file of spike trains and read-outs, written batch by batch.

    Parameters
    ----------
    path : str or path-like
        The ``.h5`` file.
    mode : {"r", "w", "a", "x"}
        ``"r"`` read; ``"w"`` create (an existing file only with
        ``overwrite=True``); ``"x"`` create, never overwrite; ``"a"`` read and
        append, creating the file if missing.
    overwrite : bool
        Allow mode ``"w"`` to replace an existing file.

    Raises
    ------
    FileNotFoundError
        Mode ``"r"`` and no such file.
    StoreExistsError
        Mode ``"w"``/``"x"`` and the file exists (without ``overwrite``).
    StoreFormatError
        Not HDF5, truncated, foreign (another ``format``) or a newer version.
    StoreLockedError
        Another writer (process or handle) has the file open for writing.

    Examples
    --------
    >>> import numpy as np, tempfile, os
    >>> from spikebridge.store.record import SpikeRecord, SpikeTrains
    >>> rec = SpikeRecord(n_samples=1, n_steps=2, dt=1e-3,
    ...     output_counts_t=np.zeros((1, 2, 1), np.int32), output_potential_t=np.zeros((1, 2, 1), np.float32),
    ...     counts={"a": np.array([[1]])},
    ...     spikes={"a": SpikeTrains(n_neurons=1, n_samples=1, dt=1e-3, sample=[0], neuron=[0], step=[1])})
    >>> path = os.path.join(tempfile.mkdtemp(), "s.h5")
    >>> with SpikeStore(path, "w") as st:
    ...     st.append_batch(0, rec)
    1
    >>> with SpikeStore(path) as st:
    ...     st.n_done, list(st), st["a"].step.tolist()
    (1, ['a'], [1])
    """

    #: check the free space before each batch (see :func:`ensure_space`)
    check_space = True
    #: filters of the datasets a new store creates: a key of :data:`FILTERS`
    compression = DEFAULT_COMPRESSION
    #: how a new store keeps each population's spikes: "auto" (a packed raster for populations whose
    #: first batch fires at least :data:`BITS_DENSITY` of their slots, events otherwise), "events", "bits"
    spike_encoding = "auto"

    def __init__(self, path: str | os.PathLike[str], mode: str = "r", *, overwrite: bool = False, verify: bool = True,
                 compression: str | None = None, spike_encoding: str | None = None) -> None:
        if mode not in ("r", "w", "a", "x"):
            raise ValidationError(f"SpikeStore: mode {mode!r} is not one of 'r', 'w', 'a', 'x'", attr="mode")
        if compression is not None:
            if compression not in FILTERS:
                raise ValidationError(f"SpikeStore: compression {compression!r} is not one of {sorted(FILTERS)}", attr="compression")
            self.compression = compression
        if spike_encoding is not None:
            if spike_encoding not in ("auto", "events", "bits"):
                raise ValidationError(f"SpikeStore: spike_encoding {spike_encoding!r} is not 'auto', 'events' or 'bits'", attr="spike_encoding")
            self.spike_encoding = spike_encoding
        self.path = Path(path)
        self.mode = mode
        self._lock: WriterLock | None = None
        self._f: h5py.File | None = None
        self._swmr = False
        self._verify_batches = verify
        if mode == "r":
            self._f = self._open_read()
        else:
            self._f = self._open_write(mode, overwrite)

    # -- opening --------------------------------------------------------------
    def _open_read(self) -> h5py.File:
        if not self.path.exists():
            raise FileNotFoundError(f"spike store '{self.path}' does not exist")
        try:
            try:
                f = h5py.File(self.path, "r", locking=False)
            except OSError as err:
                if not _repair_truncated(self.path, err):
                    raise
                f = h5py.File(self.path, "r", locking=False)
        except OSError as err:
            if not is_flag_error(err):
                raise self._format_error(err) from err
            # A writer is running or was killed: SWMR reading sees the last flush.
            try:
                f = h5py.File(self.path, "r", locking=False, swmr=True)
            except OSError as err2:
                # a writer killed before it switched to SWMR left plain "open for write" flags; once no
                # live process holds the store's lock they are stale, and clearing them loses nothing
                if held_by_a_writer(self.path) or not clear_status_flags(self.path):
                    raise self._format_error(err2) from err2
                try:
                    f = h5py.File(self.path, "r", locking=False)
                except OSError as err3:
                    raise self._format_error(err3) from err3
        try:
            self._verify(f)
            check_format(f, FORMAT, VERSION, path=str(self.path))
            check_contained(f, f"spike store '{self.path}'")
            if self._verify_batches:
                self._check_batches(f)
        except BaseException:
            f.close()
            raise
        return f

    def _check_batches(self, f: h5py.File) -> None:
        """Refuse a store whose counted batches do not all match their checksums."""
        n_done = int(f["progress"].attrs.get("n_done", 0)) if "progress" in f else 0
        good, why = verified_samples(f, n_done)
        if good < n_done:
            raise StoreFormatError(
                f"spike store '{self.path}' is damaged: {why}; only the first {good} of its {n_done} samples verify. "
                "Run the same simulate -o with --resume to cut it to them and continue"
            )

    def _verify(self, f: h5py.File) -> None:
        """Check sizes before reading anything: every root attribute and the metadata dataset must fit in
        the file (a corrupted size field can make HDF5 allocate gigabytes or hang in the attribute code)."""
        size = max(self.path.stat().st_size, 1)
        limit = min(size, _MAX_ATTR_BYTES)
        try:
            for name in list(f.attrs):
                stored = h5py.h5a.open(f.id, name.encode()).get_storage_size()
                if stored > limit:
                    raise StoreFormatError(
                        f"spike store '{self.path}' is corrupt: attribute {name!r} claims {stored} bytes "
                        f"(the file has {size}); refusing to read it"
                    )
            if _META_DS in f:
                ds = f[_META_DS]
                if not isinstance(ds, h5py.Dataset) or ds.ndim != 1 or ds.dtype != np.uint8 or ds.shape[0] > size:
                    raise StoreFormatError(f"spike store '{self.path}' is corrupt: /{_META_DS} is not a byte array that fits in the file")
            for group in ("progress", "populations", "counts", "output", "shards"):
                if group in f and not isinstance(f[group], h5py.Group):
                    raise StoreFormatError(f"spike store '{self.path}' is corrupt: /{group} is not a group")
        except (OSError, KeyError, RuntimeError, ValueError) as err:
            if isinstance(err, SpikebridgeError):
                raise
            raise self._corrupt(err) from err

    def _corrupt(self, err: BaseException) -> StoreFormatError:
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        return StoreFormatError(f"spike store '{self.path}' is corrupt or truncated: {first.strip(chr(39))}")

    def _format_error(self, err: OSError) -> StoreFormatError:
        first = str(err).splitlines()[0] if str(err) else repr(err)
        return StoreFormatError(f"spike store '{self.path}' is not a readable HDF5 file (truncated or not HDF5): {first}")

    def _open_write(self, mode: str, overwrite: bool) -> h5py.File:
        exists = self.path.exists() and self.path.stat().st_size > 0
        if exists and mode == "x":
            raise StoreExistsError(f"spike store '{self.path}' already exists; choose another path, or use --overwrite / --resume")
        if exists and mode == "w" and not overwrite:
            raise StoreExistsError(
                f"spike store '{self.path}' already exists; pass --overwrite to replace it or --resume to continue it"
            )
        if exists and mode == "a":  # opening writes (flags, a cut to the verified batches): never on a full disk
            ensure_space(self.path, 0, "opening the store for writing")
        self._lock = WriterLock(self.path)
        try:
            if exists and mode == "a":
                f = self._open_append()
            else:
                f = self._h5(self.path, "w")
                write_format(f, FORMAT, VERSION, fixed=True)
                f.attrs["created"] = fixed_text(_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"))
                f.create_group("progress").attrs["n_done"] = 0
                f.flush()
            return f
        except BaseException:
            self._lock.release()
            self._lock = None
            raise

    def _h5(self, path: Path, mode: str) -> h5py.File:
        try:
            # Our own flock guards writers, so HDF5's (dropped in SWMR anyway) is off.
            return h5py.File(path, mode, libver=_LIBVER, locking=False)
        except OSError as err:
            if is_lock_error(err):
                raise StoreLockedError(f"spike store '{path}' is locked by another writer: {err}") from err
            raise

    def _open_append(self) -> h5py.File:
        try:
            try:
                f = self._h5(self.path, "r+")
            except OSError as err:
                # our own lock is dropped for the repair and taken again
                assert self._lock is not None
                self._lock.release()
                repaired = _repair_truncated(self.path, err)
                self._lock = WriterLock(self.path)
                if not repaired:
                    raise
                f = self._h5(self.path, "r+")
        except OSError as err:
            if not is_flag_error(err):
                raise self._format_error(err) from err
            # We hold the lock, so the writer that set the flags is dead.
            log.info("spike store '%s': clearing the flags left by an interrupted writer", self.path)
            clear_status_flags(self.path)
            try:
                f = self._h5(self.path, "r+")
            except OSError as err2:
                raise self._format_error(err2) from err2
        try:
            self._verify(f)
            check_format(f, FORMAT, VERSION, path=str(self.path))
            check_contained(f, f"spike store '{self.path}'")
            if "progress" not in f:
                raise StoreFormatError(f"spike store '{self.path}' has no /progress group; it is incomplete")
            n_done = int(f["progress"].attrs.get("n_done", 0))
            # verify=False: the caller wrote and closed this file itself a moment ago (a new store's first batch)
            good, why = verified_samples(f, n_done) if self._verify_batches else (n_done, "")
            if good < n_done:
                # resume rewrites from the last verified batch: nothing unverified is ever kept
                log.warning("spike store '%s': %s; cutting it to the %d verified samples", self.path, why, good)
                f["progress"].attrs["n_done"] = good
                self._f = f
                self._trim()
                f.flush()
        except BaseException:
            self._f = None
            f.close()
            raise
        if "populations" in f or "output" in f or "shards" in f:
            self._enable_swmr(f)
        return f

    #: switch to SWMR once the datasets exist (off for a shard: written once, unseen until renamed into place)
    swmr = True

    def _enable_swmr(self, f: h5py.File) -> None:
        if not self.swmr:
            return
        try:
            f.swmr_mode = True
            self._swmr = True
        except (ValueError, OSError, RuntimeError) as err:  # e.g. a file written with an old superblock
            log.warning("spike store '%s': SWMR unavailable (%s); a crash may damage the batch being written", self.path, err)

    # -- context manager ------------------------------------------------------
    def __enter__(self) -> "SpikeStore":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # interpreter shutdown
            pass

    @_divert_on_full
    def close(self) -> None:
        """Flush and close the file and release the writer lock (idempotent)."""
        if self._shard_set is not None:
            self._shard_set.close()
            self._shard_set = None
        if self._f is not None:
            try:
                if self.mode != "r" and self._f.id.valid:
                    self._trim()
                    self._f.flush()
            finally:
                self._f.close()
                self._f = None
                if getattr(self, "_reserved", False):
                    release_reserve(self.path)
                    self._reserved = False
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def _divert(self) -> None:
        """Send HDF5's further writes to this file to /dev/null (after a disk-full error).

        HDF5 retries its cached writes whenever an object is closed, and an
        object whose close failed crashes the interpreter at exit (inside
        ``H5_term_library``).  Diverted, those writes succeed, the objects
        close, and the file keeps exactly what reached it before the failure.
        """
        if self._f is None or getattr(self, "_diverted", False):
            return
        try:
            fd = self._f.id.get_vfd_handle()
            null = os.open(os.devnull, os.O_WRONLY)
            os.dup2(null, fd)
            os.close(null)
            self._diverted = True
        except Exception:  # another file driver: no descriptor to redirect
            pass

    def abort(self) -> None:
        """Close after a failed write (disk full) without writing more; release the lock.

        HDF5 retries the failed writes while closing and h5py reports each
        failure as an "exception ignored" message; those are silenced, since
        the caller raises one clear error.  What reached the disk before the
        last ``n_done`` update stays readable (see ``extend_to_stored_eof``).
        """
        hook = sys.unraisablehook
        sys.unraisablehook = lambda *a: None
        try:
            if self._f is not None:
                self._divert()
                try:
                    self._f.close()
                except Exception:  # the same disk-full error again
                    pass
                self._f = None
        finally:
            sys.unraisablehook = hook
            if getattr(self, "_reserved", False):
                release_reserve(self.path)
                self._reserved = False
            if self._lock is not None:
                self._lock.release()
                self._lock = None

    def flush(self) -> None:
        """Write everything buffered to disk."""
        self.file.flush()

    @property
    def file(self) -> h5py.File:
        """The open :class:`h5py.File`."""
        if self._f is None or not self._f.id.valid:
            raise ValidationError(f"spike store '{self.path}' is closed")
        return self._f

    @property
    def writable(self) -> bool:
        return self.mode != "r"

    # -- header ---------------------------------------------------------------
    @_divert_on_full
    def write_header(
        self,
        *,
        n_steps: int,
        dt: float,
        n_samples: int | None = None,
        seed: int | None = None,
        conversion: Mapping[str, Any] | None = None,
        simulation: Mapping[str, Any] | None = None,
        network_sha256: str | None = None,
        network_fingerprint: str | None = None,
        inputs_sha256: str | None = None,
        labels_sha256: str | None = None,
        readout: Mapping[str, Any] | None = None,
        scales: Mapping[str, float] | None = None,
        populations: Mapping[str, Mapping[str, Any]] | None = None,
        meta: Mapping[str, Any] | None = None,
    ) -> None:
        """Record how the spikes were made (root attributes).

        Parameters
        ----------
        n_steps : int
            Time steps per sample.
        dt : float
            Time step in seconds.
        n_samples : int, optional
            Samples the run plans to write (``-1`` when unknown).
        seed : int, optional
        conversion, simulation : mapping, optional
            Resolved configuration dicts (stored as JSON).
        network_sha256 : str, optional
            SHA-256 of the network file's bytes.
        network_fingerprint : str, optional
            SHA-256 of the network's content (:func:`spikebridge.store.stream.network_fingerprint`).
        inputs_sha256 : str, optional
            SHA-256 of the input array.
        labels_sha256 : str, optional
            SHA-256 of the label array ("" when there are none).
        readout, scales : mapping, optional
            The network's read-out description and per-layer λ.
        populations : mapping, optional
            Per population: ``n``, ``layer``, ``role``, ``model``, ``shape``, ``latency_steps``.
        meta : mapping, optional
            Anything else (JSON-serialisable; other objects are stored as text).
        """
        self._check_writable("write_header")
        a = self.file.attrs
        a["n_steps"] = int(n_steps)
        a["dt"] = float(dt)
        a["n_samples"] = -1 if n_samples is None else int(n_samples)
        a["seed"] = -1 if seed is None else int(seed)
        a["network_sha256"] = fixed_text(network_sha256 or "")
        a["network_fingerprint"] = fixed_text(network_fingerprint or "")
        a["inputs_sha256"] = fixed_text(inputs_sha256 or "")
        a["labels_sha256"] = fixed_text(labels_sha256 or "")
        doc: dict[str, Any] = {
            "conversion": dict(conversion or {}),
            "simulation": dict(simulation or {}),
            "readout": dict(readout or {}),
            "scales": dict(scales or {}),
            "populations": dict(populations or {}),
            "meta": dict(meta or {}),
            # JSON objects are written with sorted keys; keep the network's order apart.
            "population_order": list(populations or {}),
        }
        raw = np.frombuffer(_json_safe(doc).encode(), dtype=np.uint8)
        if _META_DS in self.file:
            del self.file[_META_DS]
        self.file.create_dataset(_META_DS, data=raw)
        self._meta_cache = None
        self.file.flush()

    @property
    @_reading
    def attrs(self) -> dict[str, Any]:
        """Root attributes, JSON ones decoded, merged with the run metadata (``/run_metadata``)."""
        out: dict[str, Any] = {}
        for key, value in self.file.attrs.items():
            if isinstance(value, bytes):
                value = value.decode()
            if key == "package_versions" or key in _JSON_KEYS:
                value = read_json_attr(self.file, key, {})
            elif isinstance(value, np.generic):
                value = value.item()
            out[key] = value
        out.update(self._metadata() or {})
        return out

    _meta_cache: dict[str, Any] | None = None

    def _metadata(self) -> dict[str, Any] | None:
        """The JSON of ``/run_metadata`` (None in stores written before it existed)."""
        if self._meta_cache is None and _META_DS in self.file:
            try:
                doc = json.loads(self.file[_META_DS][()].tobytes().decode())
            except (ValueError, UnicodeDecodeError) as err:
                raise StoreFormatError(f"spike store '{self.path}': /{_META_DS} is not valid JSON") from err
            if not isinstance(doc, dict):
                raise StoreFormatError(f"spike store '{self.path}': /{_META_DS} is not a JSON object")
            self._meta_cache = doc
        return self._meta_cache

    @_reading
    def _attr_json(self, key: str) -> Any:
        meta = self._metadata()
        if meta is not None:
            return meta.get(key) or {}
        return read_json_attr(self.file, key, {}) or {}

    @property
    @_reading
    def n_done(self) -> int:
        """Samples completely written (the only ones readers see)."""
        return int(self.file["progress"].attrs.get("n_done", 0)) if "progress" in self.file else 0

    @property
    @_reading
    def n_samples(self) -> int | None:
        """Samples the run planned (None when unknown)."""
        value = int(self.file.attrs.get("n_samples", -1))
        return None if value < 0 else value

    @property
    def complete(self) -> bool:
        """True when every planned sample is written."""
        planned = self.n_samples
        return planned is not None and self.n_done >= planned

    @property
    @_reading
    def n_steps(self) -> int:
        if "n_steps" not in self.file.attrs:
            raise StoreFormatError(f"spike store '{self.path}' has no n_steps attribute (nothing written yet)")
        return int(self.file.attrs["n_steps"])

    @property
    @_reading
    def dt(self) -> float:
        """Time step in seconds."""
        return float(self.file.attrs.get("dt", 0.0))

    @property
    @_reading
    def seed(self) -> int | None:
        value = int(self.file.attrs.get("seed", -1))
        return None if value < 0 else value

    @property
    @_reading
    def readout(self) -> dict[str, Any]:
        return self._attr_json("readout")

    @property
    @_reading
    def scales(self) -> dict[str, float]:
        """Per-layer normalisation scales λ (as stored from the network)."""
        return {k: float(v) for k, v in self._attr_json("scales").items()}

    @property
    @_reading
    def population_info(self) -> dict[str, dict[str, Any]]:
        """Per population, in network order: ``n``, ``layer``, ``role``, ``model``, ``shape``, ``latency_steps``."""
        info = self._attr_json("populations")
        order = self._attr_json("population_order") or []
        return {name: info[name] for name in [*order, *sorted(set(info) - set(order))] if name in info}

    # -- mapping of spike trains ------------------------------------------------
    def __getitem__(self, name: str) -> SpikeTrains:
        return self.read_spikes(name)

    @_reading
    def __iter__(self) -> Iterator[str]:
        sh = self._sharded()
        if sh is not None:
            return iter(sh.keys("populations"))
        return iter(self.file["populations"]) if "populations" in self.file else iter(())

    @_reading
    def __len__(self) -> int:
        return len(list(iter(self)))

    @_reading
    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name in list(iter(self))

    # -- shards (see spikebridge.store.shards) ----------------------------------
    _shard_set: Any = None
    _shard_n = -1

    @property
    def sharded(self) -> bool:
        """True for a main store whose batches live in shard files (``<store>.shards/``)."""
        return "shards" in self.file

    def _sharded(self) -> Any:
        """The :class:`~spikebridge.store.shards.ShardSet` of a sharded store (None for a one-file store)."""
        if "shards" not in self.file:
            return None
        from .shards import ShardSet

        n = self.n_done
        if self._shard_set is None or self._shard_n != n:
            if self._shard_set is not None:
                self._shard_set.close()
            self._shard_set, self._shard_n = ShardSet(self.file, self.path, n, _shard_opener), n
        return self._shard_set

    def _has(self, key: str) -> bool:
        """Whether the store holds per-sample data ``key`` (``"output"``, ``"labels"``, ...)."""
        sh = self._sharded()
        return sh.has(key) if sh is not None else key in self.file

    def _data(self, key: str, start: int = 0, stop: int | None = None) -> NDArray[Any]:
        """Rows ``start..stop-1`` (cut at :attr:`n_done`) of the per-sample dataset ``key``."""
        n = self.n_done
        stop = n if stop is None else min(int(stop), n)
        start = max(0, min(int(start), stop))
        sh = self._sharded()
        if sh is not None:
            return cast("NDArray[Any]", sh.data(key, start, stop))
        return cast("NDArray[Any]", self.file[key][start:stop])

    def stored_layout(self, key: str) -> bool | None:
        """Whether batches of this store hold ``key`` (e.g. ``"ann/activations"``); None if no batch says (an empty sharded store)."""
        sh = self._sharded()
        if sh is not None and sh.empty:
            return None
        return self._has(key)

    def init_shards(self, folder: str) -> None:
        """Make this new, empty store the index of shards in ``folder`` (a folder name next to the store)."""
        self._check_writable("init_shards")
        f = self.file
        if "shards" in f or "output" in f or self.n_done:
            raise ValidationError(f"SpikeStore.init_shards: '{self.path}' already holds batches or a shard index")
        g = f.create_group("shards")
        g.attrs["folder"] = fixed_text(folder)
        g.create_dataset("name", shape=(0,), maxshape=(None,), dtype="S32", chunks=(1024,))
        for key in ("first", "stop", "bytes"):
            g.create_dataset(key, shape=(0,), maxshape=(None,), dtype=np.int64, chunks=(1024,))
        g.create_dataset("sha256", shape=(0, 32), maxshape=(None, 32), dtype=np.uint8, chunks=(1024, 32))
        prog = f["progress"]
        prog.create_dataset("batch_ends", shape=(0,), maxshape=(None,), dtype=np.int64, chunks=(1024,))
        prog.create_dataset("batch_sha256", shape=(0, 32), maxshape=(None, 32), dtype=np.uint8, chunks=(1024, 32))
        f.flush()
        self._enable_swmr(f)

    @_divert_on_full
    def append_shard(self, desc: Mapping[str, Any]) -> int:
        """Index one shard written by a worker (see :func:`~spikebridge.store.shards.write_shard`), then count it done.

        The shard is checked first (name inside the shard folder, samples, the
        checksum it stores equal to ``desc["sha256"]``); the index row is
        flushed and fsynced before ``n_done`` moves, as a batch is in a one-file store.

        Returns
        -------
        int
            The new :attr:`n_done`.

        Raises
        ------
        ValidationError
            A shard out of order.
        StoreFormatError
            The shard is missing, damaged or not the one described (one line).
        """
        from .shards import check_shard, folder_of

        self._check_writable("append_shard")
        f = self.file
        start = self.n_done
        first, stop = int(desc["first"]), int(desc["stop"])
        if first != start or stop <= first:
            raise ValidationError(
                f"SpikeStore.append_shard: shard of samples {first}-{stop - 1} but the store holds {start} samples; "
                "shards must be indexed in order", attr="desc",
            )
        why = check_shard(folder_of(f, self.path), desc, f"spike store '{self.path}'")
        if why:
            raise StoreFormatError(f"spike store '{self.path}': {why}")
        if self.check_space:
            ensure_space(self.path, 4096, f"the index row of samples {first}-{stop - 1}")
        g = f["shards"]
        k = int(np.searchsorted(g["stop"][:], start, side="right"))
        for key in ("name", "first", "stop", "bytes", "sha256"):
            g[key].resize(k + 1, axis=0)
        g["name"][k] = str(desc["name"]).encode()
        g["first"][k], g["stop"][k], g["bytes"][k] = first, stop, int(desc.get("bytes", 0))
        digest = np.frombuffer(bytes.fromhex(str(desc["sha256"])), dtype=np.uint8)
        g["sha256"][k] = digest
        ends, sums = f["progress/batch_ends"], f["progress/batch_sha256"]
        ends.resize(k + 1, axis=0)
        sums.resize(k + 1, axis=0)
        ends[k], sums[k] = stop, digest
        return self._commit(stop)

    def __repr__(self) -> str:
        state = "closed" if self._f is None else f"mode {self.mode!r}, {self.n_done} samples"
        return f"SpikeStore('{self.path}', {state})"

    @_reading
    def read_spikes(self, name: str, start: int = 0, stop: int | None = None) -> SpikeTrains:
        """Spike trains of population ``name`` for samples ``start..stop-1`` (renumbered from 0).

        Raises
        ------
        KeyError
            If no spikes of ``name`` were recorded; the message lists those that were.
        """
        if name not in self:
            raise KeyError(f"no spike trains for population {name!r} in '{self.path}'; recorded: {list(self)}")
        n_done = self.n_done
        stop = n_done if stop is None else min(int(stop), n_done)
        start = max(0, int(start))
        n = max(0, stop - start)
        sh = self._sharded()
        if sh is not None:
            return cast(SpikeTrains, sh.spikes(name, start, max(start, stop)))
        g = self.file["populations"][name]
        if "bits" in g:
            return SpikeTrains.from_packed(g["bits"][start : max(start, stop)], int(g.attrs["n_neurons"]), float(g.attrs.get("dt", self.dt)))
        index = g["index"][:stop].astype(np.int64)
        lo = int(index[start - 1]) if start > 0 else 0
        hi = int(index[stop - 1]) if stop > 0 else 0
        ends = index[start:stop] - lo
        per_sample = np.diff(np.concatenate([[0], ends])) if n else np.zeros(0, np.int64)
        return SpikeTrains(
            n_neurons=int(g.attrs["n_neurons"]),
            n_samples=n,
            dt=float(g.attrs.get("dt", self.dt)),
            sample=np.repeat(np.arange(n, dtype=np.int32), per_sample),
            neuron=g["neuron"][lo:hi],
            step=g["step"][lo:hi],
        )

    # -- other arrays -----------------------------------------------------------
    @_reading
    def _rows(self, key: str) -> NDArray[Any] | None:
        if not self._has(key):
            return None
        return self._data(key)

    @property
    @_reading
    def count_populations(self) -> tuple[str, ...]:
        """Populations with stored spike-count matrices."""
        sh = self._sharded()
        if sh is not None:
            return tuple(sh.keys("counts"))
        return tuple(self.file["counts"]) if "counts" in self.file else ()

    @_reading
    def counts(self, name: str) -> NDArray[np.int64]:
        """Spike counts of population ``name``, shape (n_done, n_neurons)."""
        if name not in self.count_populations:
            raise KeyError(f"no spike counts for population {name!r} in '{self.path}'; stored: {list(self.count_populations)}")
        return self._data(f"counts/{name}").astype(np.int64)

    @property
    @_reading
    def labels(self) -> NDArray[Any] | None:
        return self._rows("labels")

    @property
    @_reading
    def ann_outputs(self) -> NDArray[np.float64] | None:
        """ANN outputs, shape (n_done, n_out), or None."""
        return self._rows("ann/outputs")

    @_reading
    def ann_activations(self) -> dict[str, NDArray[np.float32]]:
        """Stored ANN activations per layer, each (n_done, *layer shape)."""
        sh = self._sharded()
        if sh is not None:
            if not sh.has("ann/activations"):
                return {}
            g = sh.shard(0).file["ann/activations"]
            return {_layer_of(g[k], k): self._data(f"ann/activations/{k}") for k in g}
        if "ann/activations" not in self.file:
            return {}
        g = self.file["ann/activations"]
        return {_layer_of(g[k], k): g[k][: self.n_done] for k in g}

    def output_record(self, start: int = 0, stop: int | None = None) -> SpikeRecord:
        """The read-out of samples ``start..stop-1`` only (output counts and potential, labels; no spikes).

        What predictions and accuracies need, in pieces whose memory does not
        grow with the store.
        """
        if not self._has("output"):
            raise StoreFormatError(f"spike store '{self.path}' holds no finished batch yet (n_done = {self.n_done})")
        stop = self.n_done if stop is None else min(int(stop), self.n_done)
        start = max(0, min(int(start), stop))
        return SpikeRecord(
            n_samples=stop - start,
            n_steps=self.n_steps,
            dt=self.dt,
            output_counts_t=self._data("output/counts_t", start, stop).astype(np.int32),  # stored uint8/uint16 (count_dtype): no wrap in arithmetic
            output_potential_t=self._data("output/potential_t", start, stop),
            readout=self.readout,
            labels=self._data("labels", start, stop) if self._has("labels") else None,
        )

    @_reading
    def to_record(self) -> SpikeRecord:
        """Everything written so far as one in-memory :class:`SpikeRecord`."""
        if not self._has("output"):
            raise StoreFormatError(f"spike store '{self.path}' holds no finished batch yet (n_done = {self.n_done})")
        meta = self._attr_json("meta")
        meta.setdefault("seed", self.seed)
        return SpikeRecord(
            n_samples=self.n_done,
            n_steps=self.n_steps,
            dt=self.dt,
            output_counts_t=self._data("output/counts_t").astype(np.int32),
            output_potential_t=self._data("output/potential_t"),
            # as stored (uint8/uint16, count_dtype): widened to int64 when read (Counts)
            counts=Counts({name: self._data(f"counts/{name}") for name in self.count_populations}),
            spikes={name: self.read_spikes(name) for name in self},
            readout=self.readout,
            labels=self.labels,
            meta=meta,
        )

    # -- writing ------------------------------------------------------------------
    def _check_writable(self, what: str) -> None:
        if self.mode == "r":
            raise ValidationError(f"SpikeStore.{what}: '{self.path}' is open read-only; open it with mode 'a' or 'w'")

    def _create_layout(self, record: SpikeRecord, ann_outputs: NDArray[Any] | None, activations: Mapping[str, NDArray[Any]] | None,
                       labels: NDArray[Any] | None, packed: dict[str, NDArray[np.uint8]] | None = None) -> None:
        """Create the datasets for batches shaped like ``record``; ``packed`` receives the rasters made while choosing encodings."""
        f = self.file
        if "n_steps" not in f.attrs:
            self.write_header(n_steps=record.n_steps, dt=record.dt, readout=record.readout, meta=record.meta, seed=record.meta.get("seed"))
        filters = FILTERS[self.compression]
        # a store begun by an older version (format 1) keeps the layout its readers know
        rasters = int(f.attrs.get("format_version", VERSION)) >= 2
        pops = f.create_group("populations")
        for name, st in record.spikes.items():
            g = pops.create_group(name)
            g.attrs["n_neurons"] = int(st.n_neurons)
            g.attrs["dt"] = float(st.dt)
            slots = int(st.n_samples) * int(record.n_steps) * int(st.n_neurons)
            bits = rasters and (self.spike_encoding == "bits" or (self.spike_encoding == "auto" and st.n_spikes >= BITS_DENSITY * slots))
            if bits and self.spike_encoding == "auto" and packed is not None:
                try:  # hand-made trains may hold a spike twice, which a raster cannot: they stay events
                    packed[name] = pack_spikes(st, record.n_steps)
                except ValidationError:
                    bits = False
            if bits:
                row = (int(record.n_steps), -(-int(st.n_neurons) // 8))
                bits_filters = BULK_FILTERS.get(self.compression, {k: v for k, v in filters.items() if k != "shuffle"})  # bytes: nothing to shuffle
                g.create_dataset("bits", shape=(0, *row), maxshape=(None, *row), dtype=np.uint8,
                                 chunks=(_chunk_rows(row[0] * row[1], 1, record.n_samples), *row), **bits_filters)
                continue
            for key in ("neuron", "step"):
                g.create_dataset(key, shape=(0,), maxshape=(None,), dtype=np.int32, chunks=(65536,), **filters)
            g.create_dataset("index", shape=(0,), maxshape=(None,), dtype=np.int64, chunks=(4096,), **filters)
        counted = count_dtype(record.n_steps)
        # the arrays as counted (Counts.raw): no int64 copy of counts that are stored narrower
        arrays = [record.counts.raw(name) for name in record.counts] + [np.asarray(record.output_counts_t)]
        if any(a.size and (a.min() < 0 or a.max() > record.n_steps) for a in arrays):  # hand-made trains that repeat a spike
            counted = np.dtype(np.int32)
        count_filters = _count_filters(filters, counted)
        cg = f.create_group("counts")
        for name in record.counts:
            n = int(np.shape(record.counts.raw(name))[1])
            cg.create_dataset(name, shape=(0, n), maxshape=(None, n), dtype=counted,
                              chunks=(_chunk_rows(n, counted.itemsize, record.n_samples), n), **count_filters)
        og = f.create_group("output")
        n_out = int(record.output_counts_t.shape[2])
        row = (record.n_steps, n_out)
        og.attrs["n_out"] = n_out
        og.create_dataset("counts_t", shape=(0, *row), maxshape=(None, *row), dtype=counted,
                          chunks=(_chunk_rows(record.n_steps * n_out, counted.itemsize, record.n_samples), *row), **count_filters)
        rows = _chunk_rows(record.n_steps * n_out, 4, record.n_samples)
        og.create_dataset("potential_t", shape=(0, *row), maxshape=(None, *row), dtype=np.float32, chunks=(rows, *row), **filters)
        if labels is not None:
            shape = labels.shape[1:]
            dtype = np.int64 if np.issubdtype(labels.dtype, np.integer) else np.float64
            f.create_dataset("labels", shape=(0, *shape), maxshape=(None, *shape), dtype=dtype, chunks=(_chunk_rows(int(np.prod(shape)), 8, record.n_samples), *shape))
        if ann_outputs is not None or activations:
            ag = f.create_group("ann")
            if ann_outputs is not None:
                shape = ann_outputs.shape[1:]
                ag.create_dataset("outputs", shape=(0, *shape), maxshape=(None, *shape), dtype=np.float64, chunks=(_chunk_rows(int(np.prod(shape)), 8, record.n_samples), *shape), **filters)
            if activations:
                actg = ag.create_group("activations")
                act_filters = BULK_FILTERS.get(self.compression, filters)
                for layer, arr in activations.items():
                    shape = tuple(np.shape(arr)[1:])
                    key = layer.replace("/", "_")
                    ds = actg.create_dataset(
                        key, shape=(0, *shape), maxshape=(None, *shape), dtype=np.float32,
                        chunks=(_chunk_rows(int(np.prod(shape)), 4, record.n_samples), *shape), **act_filters,
                    )
                    ds.attrs["layer"] = fixed_text(layer)
        if self.n_done == 0:  # a store continued from an older version keeps going without checksums
            prog = f["progress"]
            prog.create_dataset("batch_ends", shape=(0,), maxshape=(None,), dtype=np.int64, chunks=(1024,))
            prog.create_dataset("batch_sha256", shape=(0, 32), maxshape=(None, 32), dtype=np.uint8, chunks=(1024, 32))
        f.flush()

    @_divert_on_full
    def append_batch(
        self,
        first_sample: int,
        record: SpikeRecord,
        ann_outputs: ArrayLike | None = None,
        activations: Mapping[str, ArrayLike] | None = None,
        labels: ArrayLike | None = None,
    ) -> int:
        """Write one finished batch, flush it, then mark it done.

        The progress counter ``/progress.n_done`` is updated last, after a
        flush, so a crash at any moment leaves either the old or the new
        count, never a half-written batch that counts.

        Parameters
        ----------
        first_sample : int
            Index of the batch's first sample; must equal :attr:`n_done`.
        record : SpikeRecord
            The batch (sample indices local to the batch).
        ann_outputs : array_like, shape (n_batch, n_out), optional
        activations : mapping of str to array_like (n_batch, *shape), optional
            ANN activations per layer.
        labels : array_like, shape (n_batch, ...), optional
            Defaults to ``record.labels``.

        Returns
        -------
        int
            The new :attr:`n_done`.

        Raises
        ------
        ValidationError
            Out-of-order batch, or arrays whose shapes differ from the store's.
        """
        self._check_writable("append_batch")
        f = self.file
        start = self.n_done
        if int(first_sample) != start:
            raise ValidationError(
                f"SpikeStore.append_batch: batch starts at sample {first_sample} but the store holds {start} samples; "
                "batches must be appended in order",
                attr="first_sample",
            )
        n = int(record.n_samples)
        ann = None if ann_outputs is None else np.asarray(ann_outputs, dtype=np.float64).reshape(n, -1)
        acts = {k: np.asarray(v, dtype=np.float32) for k, v in (activations or {}).items()}
        lab = record.labels if labels is None else labels
        lab = None if lab is None else np.asarray(lab)
        if self.check_space:
            bound = batch_bytes_bound(record, ann, acts, lab, f if "output" in f else None, start, self.compression)
            what = f"the batch of samples {start}-{start + n - 1}"
            ensure_space(self.path, bound, what)
            self._reserve(int(bound * SPACE_FACTOR) + SPACE_RESERVE, what)
        packed: dict[str, NDArray[np.uint8]] = {}
        if "output" not in f:
            self._create_layout(record, ann, acts, lab, packed)
            self._enable_swmr(f)
        elif record.n_steps != self.n_steps:
            raise ValidationError(f"SpikeStore.append_batch: batch has {record.n_steps} steps, store has {self.n_steps}", attr="record")
        stop = start + n
        written: list[tuple[str, NDArray[Any]]] = []

        def put(ds: h5py.Dataset, data: NDArray[Any], lo: int) -> None:
            if data.shape[1:] != ds.shape[1:]:
                raise ValidationError(
                    f"SpikeStore.append_batch: {ds.name} rows have shape {data.shape[1:]}, store has {ds.shape[1:]}", attr="record"
                )
            data = np.asarray(data, dtype=ds.dtype)
            written.append((ds.name, data))
            ds.resize(lo + data.shape[0], axis=0)
            if data.shape[0]:
                ds[lo : lo + data.shape[0]] = data

        for name in self:
            if name not in record.spikes:
                raise ValidationError(f"SpikeStore.append_batch: batch lacks the spikes of population {name!r}", attr="record")
            g = f["populations"][name]
            st = record.spikes[name]
            if "bits" in g:
                if st.n_neurons != int(g.attrs["n_neurons"]):
                    raise ValidationError(f"SpikeStore.append_batch: population {name!r} has {st.n_neurons} neurons, store has {int(g.attrs['n_neurons'])}", attr="record")
                put(g["bits"], packed[name] if name in packed else pack_spikes(st, record.n_steps), start)
                continue
            base = int(g["index"][start - 1]) if start else 0
            ends = base + np.cumsum(np.bincount(st.sample, minlength=n)[:n]).astype(np.int64)
            put(g["neuron"], np.asarray(st.neuron, dtype=np.int32), base)
            put(g["step"], np.asarray(st.step, dtype=np.int32), base)
            put(g["index"], ends, start)
        for name in self.count_populations:
            if name not in record.counts:
                raise ValidationError(f"SpikeStore.append_batch: batch lacks the counts of population {name!r}", attr="record")
            put(f["counts"][name], _fitting(record.counts.raw(name), f["counts"][name], name), start)
        put(f["output/counts_t"], _fitting(record.output_counts_t, f["output/counts_t"], "output"), start)
        put(f["output/potential_t"], np.asarray(record.output_potential_t, dtype=np.float32), start)
        if "labels" in f:
            if lab is None:
                raise ValidationError("SpikeStore.append_batch: the store has labels but this batch has none", attr="labels")
            put(f["labels"], lab.astype(f["labels"].dtype), start)
        if "ann/outputs" in f:
            if ann is None:
                raise ValidationError("SpikeStore.append_batch: the store has ANN outputs but this batch has none", attr="ann_outputs")
            put(f["ann/outputs"], ann, start)
        if "ann/activations" in f:
            g = f["ann/activations"]
            for key in g:
                layer = _layer_of(g[key], key)
                if layer not in acts:
                    raise ValidationError(f"SpikeStore.append_batch: batch lacks ANN activations of layer {layer!r}", attr="activations")
                put(g[key], acts[layer], start)
        if "progress/batch_ends" in f:
            ends, sums = f["progress/batch_ends"], f["progress/batch_sha256"]
            k = int(np.searchsorted(ends[:], start, side="right"))
            ends.resize(k + 1, axis=0)
            sums.resize(k + 1, axis=0)
            ends[k] = stop
            sums[k] = _digest(written)
        return self._commit(stop)

    def _commit(self, stop: int) -> int:
        """Count samples up to ``stop`` done, after what was written for them is on disk.

        The data and their checksums are flushed and fsynced before ``n_done`` moves (then that is
        fsynced too): a crash or failed write in between leaves ``n_done`` at its old value, and
        readers verify every counted batch or shard against its checksum.  Returns ``stop``.
        """
        f = self.file
        f.flush()
        self._fsync()
        f["progress"].attrs["n_done"] = stop
        f.flush()
        self._fsync()
        return stop

    def _reserve(self, nbytes: int, what: str) -> None:
        """Take the blocks the next writes need (see :func:`reserve_space`), or raise StoreFullError."""
        try:
            fd = self.file.id.get_vfd_handle()
        except Exception:
            return
        if not isinstance(fd, int):
            return
        try:
            self._reserved = reserve_space(fd, nbytes) or getattr(self, "_reserved", False)
        except OSError as err:
            free, _ = free_bytes(self.path)
            raise StoreFullError(
                errno.ENOSPC, f"no space left on the device of '{self.path}': {what} needs up to {nbytes} bytes "
                f"and {free} are free ({err.strerror})",
            ) from err

    def _fsync(self) -> None:
        """Push what HDF5 wrote to the file down to the disk (a no-op for drivers without a descriptor)."""
        try:
            fd = self.file.id.get_vfd_handle()
        except Exception:
            return
        if isinstance(fd, int):
            os.fsync(fd)

    def _trim(self) -> None:
        """Cut datasets to ``n_done`` rows (leftovers of an interrupted batch)."""
        f = self._f
        if f is None or "progress" not in f:
            return
        n = self.n_done
        for key in ("output/counts_t", "output/potential_t", "labels", "ann/outputs"):
            if key in f and f[key].shape[0] > n:
                f[key].resize(n, axis=0)
        if "progress/batch_ends" in f:
            k = int(np.searchsorted(f["progress/batch_ends"][:], n, side="right"))
            keys = ["progress/batch_ends", "progress/batch_sha256"]
            keys += [f"shards/{key}" for key in ("name", "first", "stop", "bytes", "sha256") if "shards" in f]
            for key in keys:
                if f[key].shape[0] > k:
                    f[key].resize(k, axis=0)
        for group in ("counts", "ann/activations"):
            if group in f:
                for ds in f[group].values():
                    if ds.shape[0] > n:
                        ds.resize(n, axis=0)
        if "populations" in f:
            for g in f["populations"].values():
                if "bits" in g:
                    if g["bits"].shape[0] > n:
                        g["bits"].resize(n, axis=0)
                    continue
                if g["index"].shape[0] > n:
                    g["index"].resize(n, axis=0)
                total = int(g["index"][n - 1]) if n else 0
                for key in ("neuron", "step"):
                    if g[key].shape[0] > total:
                        g[key].resize(total, axis=0)


def _shard_opener(path: Path, verify: bool) -> SpikeStore:
    """How a sharded store opens its shards: as spike stores, read-only, with every check."""
    return SpikeStore(path, "r", verify=verify)


def open_store(path: str | os.PathLike[str], mode: str = "r", **kwargs: Any) -> SpikeStore:
    """Open a :class:`SpikeStore` (same arguments); a verb for readers of the API."""
    return SpikeStore(path, mode, **kwargs)
