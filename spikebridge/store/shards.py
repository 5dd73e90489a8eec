"""Store shards: batches written by the workers that simulated them, indexed by one main store.

A sharded spike store is two things next to each other::

    spikes.h5            the main store: header, /run_metadata, /progress and /shards (the index)
    spikes.h5.shards/    one ordinary spike store per batch, b<first>-<stop>.h5 (samples first..stop-1)

Each shard is written by the process that simulated its batch (a Dask
worker, or the client itself; :func:`spikebridge.run._shard.write_shard`), with the same guarantees as a one-file store:
free space checked and reserved before writing, the batch's SHA-256 stored,
data fsynced before the file is renamed into place.  The worker hands the
client a small *descriptor* (name, sample range, checksum, size); the client
checks the shard's stored checksum against it and appends one index row to
the main store (``/shards`` and ``/progress``, flushed and fsynced before
``n_done`` moves, as a one-file store does for a batch).

The index keeps plain relative file names, never HDF5 external links: a
reader checks each name (``b<digits>-<digits>.h5``), resolves it inside the
shard folder (a symbolic link out of the folder is refused), opens it with
the same checks as any store (no external links or storage) and verifies
its data against the checksum in the index.  :class:`~spikebridge.store.spikes.SpikeStore`
uses :class:`ShardSet` to read a sharded store as if it were one file.

Layout of the index in the main store (``docs/formats.md``)::

    /shards          attrs folder = "<store name>.shards"
      name           S32 (n,)      shard file names, relative to the folder
      first, stop    int64 (n,)    the samples each shard holds
      sha256         uint8 (n, 32) the shard's batch checksum (as in its /progress)
      bytes          int64 (n,)    its size when indexed
"""

from __future__ import annotations

import collections
import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import h5py
import numpy as np
from numpy.typing import NDArray

from ..errors import StoreFormatError
from .record import SpikeTrains

__all__ = ["SHARD_SUFFIX", "ShardSet", "check_shard", "clear_shards", "fsync_dir", "shard_folder", "shard_name"]

SHARD_SUFFIX = ".shards"
_NAME = re.compile(r"^b(\d{10})-(\d{10})\.h5$")
_PARTIAL = re.compile(r"^\.b\d{10}-\d{10}\.h5\.[0-9a-f]+-[0-9a-f]+\.partial$")
#: shards kept open at once while reading (each holds a file descriptor)
_OPEN_SHARDS = 64


def shard_folder(path: str | os.PathLike[str]) -> Path:
    """The shard folder of the main store ``path`` (``<path>.shards``, next to it)."""
    p = Path(path)
    return p.with_name(p.name + SHARD_SUFFIX)


def shard_name(first: int, stop: int) -> str:
    """File name of the shard holding samples ``first..stop-1``."""
    return f"b{int(first):010d}-{int(stop):010d}.h5"


def shard_path(folder: Path, name: str, where: str) -> Path:
    """``folder / name`` after checking that ``name`` is a shard name and the file stays inside ``folder``.

    Raises
    ------
    StoreFormatError
        A name that is not ``b<10 digits>-<10 digits>.h5`` (a path, ``..``),
        or a file that resolves outside the folder (a symbolic link).
    """
    if not _NAME.match(name):
        raise StoreFormatError(f"{where}: shard name {name[:80]!r} is not a shard file name; refusing to open it")
    p = folder / name
    try:
        inside = p.resolve().parent == folder.resolve()
    except OSError:
        inside = False
    if not inside:
        raise StoreFormatError(f"{where}: shard '{name}' resolves outside the shard folder '{folder}'; refusing to open it")
    return p


def fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


#: opens a shard for reading: ``opener(path, verify)`` (SpikeStore, passed in by spike stores: no import cycle)
Opener = Callable[[Path, bool], Any]


def _stored_checksums(p: Path) -> tuple[int, NDArray[np.uint8]]:
    """A shard's ``n_done`` and batch checksums, read without touching anything else of it.

    What the client checks before indexing a shard (a few milliseconds; every
    reader verifies the data against these later): the two objects must be
    stored in the file itself (hard links, no external or virtual storage).
    """
    with h5py.File(p, "r", locking=False) as f:
        for key in ("progress", "progress/batch_sha256"):
            if not isinstance(f.get(key, getlink=True), h5py.HardLink):
                raise StoreFormatError(f"/{key} is missing or a link to elsewhere")
        ds = f["progress/batch_sha256"]
        if ds.external or ds.is_virtual or ds.ndim != 2 or ds.shape[1] != 32 or ds.shape[0] > 1 << 20 or ds.dtype != np.uint8:
            raise StoreFormatError("/progress/batch_sha256 is not a table of checksums stored in the file")
        return int(f["progress"].attrs.get("n_done", 0)), ds[:]


def check_shard(folder: Path, desc: Mapping[str, Any], where: str, opener: Opener | None = None) -> str:
    """Why the shard described by ``desc`` cannot be indexed or read ("" when it can).

    Checks the name and that the file stays in ``folder``, that it opens as a
    spike store of exactly ``first..stop-1`` and that its stored checksum is
    ``desc["sha256"]``; with ``opener`` (a spike store class) also that its data
    match that checksum (reads every byte of it).
    """
    try:
        p = shard_path(folder, str(desc["name"]), where)
    except StoreFormatError as err:
        return str(err)
    if not p.is_file():
        return f"shard '{p.name}' (samples {desc['first']}-{int(desc['stop']) - 1}) is missing"
    try:
        if opener is not None:
            with opener(p, True) as sh:
                n = sh.n_done
                sums = sh.file["progress/batch_sha256"][:] if "progress/batch_sha256" in sh.file else np.zeros((0, 32), np.uint8)
        else:
            n, sums = _stored_checksums(p)
    except Exception as err:  # damaged, foreign, unverifiable: one line
        text = str(err).splitlines()[0] if str(err) else type(err).__name__
        return f"shard '{p.name}' cannot be used: {text}"
    span = int(desc["stop"]) - int(desc["first"])
    if n != span or len(sums) != 1:
        return f"shard '{p.name}' holds {n} samples in {len(sums)} batch(es), the index expects {span} in one"
    if bytes(sums[0]).hex() != str(desc["sha256"]):
        return f"shard '{p.name}' is not the one indexed (its checksum differs)"
    return ""


def clear_shards(folder: Path) -> int:
    """Delete the shard files (and leftover partial files) of ours in ``folder``; other files stay. Returns how many."""
    n = 0
    if not folder.is_dir():
        return 0
    for p in folder.iterdir():
        if (_NAME.match(p.name) or _PARTIAL.match(p.name)) and (p.is_file() or p.is_symlink()):
            p.unlink()
            n += 1
    return n


def tidy_shards(folder: Path, keep: set[str]) -> None:
    """Remove partial files and shard files not in ``keep`` (batches re-simulated or never indexed)."""
    if not folder.is_dir():
        return
    for p in folder.iterdir():
        if _PARTIAL.match(p.name) or (_NAME.match(p.name) and p.name not in keep):
            try:
                p.unlink()
            except OSError:
                pass


def index_rows(f: h5py.File, n_done: int) -> list[dict[str, Any]]:
    """The indexed shards holding samples below ``n_done``, in order (descriptors)."""
    g = f["shards"]
    stops = g["stop"][:].astype(np.int64)
    k = int(np.searchsorted(stops, n_done, side="right"))
    names, firsts, sums = g["name"][:k], g["first"][:k], g["sha256"][:k]
    return [
        {"name": (nm.decode() if isinstance(nm, bytes) else str(nm)), "first": int(a), "stop": int(z), "sha256": bytes(s).hex()}
        for nm, a, z, s in zip(names, firsts, stops[:k], sums)
    ]


def folder_of(f: h5py.File, path: Path) -> Path:
    """The shard folder a main store names (its attribute is a plain folder name next to the store)."""
    raw = f["shards"].attrs.get("folder", b"")
    name = raw.decode() if isinstance(raw, bytes) else str(raw)
    if not name or "/" in name or "\\" in name or name in (".", ".."):
        raise StoreFormatError(f"spike store '{path}': shard folder {name[:80]!r} is not a folder name next to the store")
    return path.parent / name


def verified_shards(f: h5py.File, path: Path, n_done: int, opener: Opener) -> tuple[int, str]:
    """Samples at the start of a sharded store whose shards are present, intact and the ones indexed."""
    folder = folder_of(f, path)
    done = 0
    for desc in index_rows(f, n_done):
        if desc["first"] != done:
            return done, f"the shard index skips samples {done}-{desc['first'] - 1}"
        why = check_shard(folder, desc, f"spike store '{path}'", opener)
        if why:
            return done, why
        done = desc["stop"]
    if done < n_done:
        return done, f"samples {done}-{n_done - 1} are counted as done but no shard holds them"
    return n_done, ""


class ShardSet:
    """The shards of a main store read as one: rows and spikes of samples ``start..stop-1`` across files.

    Shards are opened on demand (at most :data:`_OPEN_SHARDS` at once), each
    with every check of :class:`~spikebridge.store.spikes.SpikeStore`.
    """

    def __init__(self, f: h5py.File, path: Path, n_done: int, opener: Opener) -> None:
        self.path = path
        self.opener = opener
        self.folder = folder_of(f, path)
        self.rows = index_rows(f, n_done)
        self.firsts = np.array([d["first"] for d in self.rows], dtype=np.int64)
        self._open: collections.OrderedDict[int, Any] = collections.OrderedDict()

    def close(self) -> None:
        while self._open:
            self._open.popitem()[1].close()

    def shard(self, k: int) -> Any:
        st = self._open.get(k)
        if st is not None:
            self._open.move_to_end(k)
            return st
        desc = self.rows[k]
        p = shard_path(self.folder, desc["name"], f"spike store '{self.path}'")
        if not p.is_file():
            raise StoreFormatError(f"spike store '{self.path}': shard '{p.name}' is missing")
        st = self.opener(p, False)  # its data were verified against the index when the store was opened
        self._open[k] = st
        if len(self._open) > _OPEN_SHARDS:
            self._open.popitem(last=False)[1].close()
        return st

    @property
    def empty(self) -> bool:
        return not self.rows

    def has(self, key: str) -> bool:
        return bool(self.rows) and key in self.shard(0).file

    def keys(self, group: str) -> list[str]:
        if not self.rows or group not in self.shard(0).file:
            return []
        return list(self.shard(0).file[group])

    def _spans(self, start: int, stop: int) -> list[tuple[int, int, int]]:
        """(shard, local start, local stop) of every shard overlapping samples ``start..stop-1``."""
        out: list[tuple[int, int, int]] = []
        if stop <= start:
            return out
        k = max(0, int(np.searchsorted(self.firsts, start, side="right")) - 1)
        while k < len(self.rows) and self.rows[k]["first"] < stop:
            a, z = self.rows[k]["first"], self.rows[k]["stop"]
            lo, hi = max(start, a), min(stop, z)
            if hi > lo:
                out.append((k, lo - a, hi - a))
            k += 1
        return out

    def data(self, key: str, start: int, stop: int) -> NDArray[Any]:
        """Rows ``start..stop-1`` of the per-sample dataset ``key`` (e.g. ``"output/counts_t"``)."""
        parts = [self.shard(k).file[key][a:z] for k, a, z in self._spans(start, stop)]
        if parts:
            return np.concatenate(parts)
        ds = self.shard(0).file[key]
        return np.zeros((0, *ds.shape[1:]), dtype=ds.dtype)

    def attrs_of(self, key: str) -> dict[str, Any]:
        return dict(self.shard(0).file[key].attrs)

    def spikes(self, name: str, start: int, stop: int) -> SpikeTrains:
        """Spike trains of ``name`` for samples ``start..stop-1``, renumbered from 0."""
        samples, neurons, steps = [], [], []
        g = self.shard(0).file["populations"][name]
        n_neurons, dt = int(g.attrs["n_neurons"]), float(g.attrs.get("dt", self.shard(0).dt))
        for k, a, z in self._spans(start, stop):
            st = self.shard(k).read_spikes(name, a, z)
            samples.append(st.sample.astype(np.int32) + np.int32(self.rows[k]["first"] + a - start))
            neurons.append(st.neuron)
            steps.append(st.step)
        def cat(xs: list[NDArray[Any]]) -> NDArray[np.int32]:
            return np.concatenate(xs).astype(np.int32, copy=False) if xs else np.zeros(0, np.int32)

        return SpikeTrains(
            n_neurons=n_neurons, n_samples=max(0, stop - start), dt=dt,
            sample=cat(samples), neuron=cat(neurons), step=cat(steps),
        )
