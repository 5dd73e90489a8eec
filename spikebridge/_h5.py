"""Shared helpers for our HDF5 formats: open with clear errors, check format name and version."""

from __future__ import annotations

import functools
import json
import os
import re
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from . import _h5attrs
from ._process import die_with_parent
from .errors import StoreFormatError

__all__ = [
    "open_h5",
    "check_format",
    "write_format",
    "json_attr",
    "read_json_attr",
    "package_versions",
    "fixed_text",
    "check_contained",
    "check_declared_size",
    "read_dataset",
    "check_total_size",
    "array_budget",
    "text_attr",
    "read_attrs",
    "AttrView",
    "read_array",
    "root_attr",
    "HEAP_READ_TIMEOUT_S",
    "array_sha256",
    "create_checked_dataset",
    "seal_attrs",
    "verify_attrs",
    "refuse_mismatches",
]

#: HDF5 filter ids whose largest possible expansion on reading is known (decoded bytes
#: per stored byte): deflate's longest match (258 bytes) costs at least two bits, so at most
#: 1032:1; LZF stores at most 264 bytes per 2-byte back-reference; shuffle and fletcher32
#: never expand.  A dataset under any other filter is bounded by the memory budget alone.
_MAX_EXPANSION = {1: 1032.0, 32000: 132.0, 2: 1.0, 3: 1.0}

#: arrays this small are read without the stored-size check (fill values, tiny attributes-like data)
_SMALL_BYTES = 1 << 20


def open_h5(path: str | os.PathLike[str], mode: str = "r", *, what: str = "file", **kwargs: Any) -> h5py.File:
    """Open an HDF5 file, turning h5py's low-level errors into one clear message.

    Parameters
    ----------
    path : str or path-like
    mode : {"r", "r+", "w", "w-", "x", "a"}
    what : str
        What the file should be, for messages ("network file", "spike store").

    Raises
    ------
    FileNotFoundError
        If reading a file that does not exist.
    FileExistsError
        If mode ``"x"``/``"w-"`` and the file exists.
    StoreFormatError
        If the file exists but is not a readable HDF5 file (truncated, foreign).
    """
    p = Path(path)
    reading = mode in ("r", "r+") or (mode == "a" and p.exists())
    if mode in ("r", "r+") and not p.exists():
        raise FileNotFoundError(f"{what} '{p}' does not exist")
    if mode in ("x", "w-") and p.exists():
        raise FileExistsError(f"{what} '{p}' already exists; choose another path or allow overwriting")
    if not reading and not p.parent.is_dir():
        raise FileNotFoundError(f"output folder '{p.parent}' of {what} '{p}' does not exist; create it first")
    try:
        f = h5py.File(p, mode, **kwargs)
    except OSError as err:
        text = str(err)
        # file-locking failures stay OSError; "sblock" (superblock) in truncation messages must not match
        if re.search(r"\block", text, re.IGNORECASE):
            raise
        raise StoreFormatError(
            f"{what} '{p}' is not a readable HDF5 file (truncated or not HDF5): {text.splitlines()[0] if text else err}"
        ) from err
    if reading:
        try:
            check_contained(f, f"{what} '{p}'")
        except BaseException:
            f.close()
            raise
    return f


def check_contained(f: h5py.File | h5py.Group, where: str, error: type[Exception] = StoreFormatError) -> None:
    """Refuse an HDF5 file whose data may come from outside it.

    HDF5 lets a dataset keep its bytes in other files (*external raw storage*),
    assemble them from other files (*virtual datasets*), and lets a link point
    into another file (*external link*) or elsewhere by name (*soft link*).
    Reading any of them would copy bytes of a file the user never named (e.g.
    ``/etc/passwd``) into our networks and reports, so every reader of ours
    calls this right after opening: only hard links and datasets stored inside
    the file pass.

    Parameters
    ----------
    f : h5py.File or h5py.Group
        The open file (the whole tree under it is checked; no dataset is read).
    where : str
        The file, for the message (e.g. ``"model file 'x.h5'"``).
    error : exception type
        What to raise (``ModelFormatError`` for model readers).

    Raises
    ------
    error
        One line naming the object and where it points.
    """
    tail = "; spikebridge reads only data stored inside the file"
    base = f.name.rstrip("/")

    # h5py's visitors stop at the first callback that returns a value (raising inside them is unsafe)
    def check_link(name: str, link: Any) -> str | None:
        name = f"{base}/{name}"
        if isinstance(link, h5py.ExternalLink):
            return f"'{name}' is an external link to '{link.filename}:{link.path}'"
        if isinstance(link, h5py.SoftLink):
            return f"'{name}' is a soft link to '{link.path}'"
        return None

    def check_object(name: str, obj: Any) -> str | None:
        name = f"{base}/{name}"
        if isinstance(obj, h5py.Dataset):
            if obj.is_virtual:
                sources = sorted({vs.file_name for vs in obj.virtual_sources()})
                return f"dataset '{name}' is a virtual dataset reading {', '.join(map(repr, sources))}"
            if obj.external:
                files = sorted({str(e[0]) for e in obj.external})
                return f"dataset '{name}' has external raw storage in {', '.join(map(repr, files))}"
        return None

    try:
        problem = f.visititems_links(check_link) or f.visititems(check_object)
    except (OSError, RuntimeError, KeyError, ValueError, TypeError, SystemError) as err:
        # a damaged B-tree, local heap or object header: h5py's low-level error, as one line
        raise error(f"{where} is corrupt: {_first_line(err)}") from err
    if problem:
        raise error(f"{where}: {problem}{tail}")


def array_budget() -> int:
    """Largest array, in bytes, that a reader of ours allocates from a file's declared shape.

    Default 2 GB (a weight matrix that large converts to more synapses than a
    Brian2 network of ``max_memory`` can hold); ``$SPIKEBRIDGE_MAX_ARRAY_BYTES``
    raises or lowers it.
    """
    raw = os.environ.get("SPIKEBRIDGE_MAX_ARRAY_BYTES")
    try:
        return int(float(raw)) if raw else 2_000_000_000
    except ValueError:
        return 2_000_000_000


def check_declared_size(ds: h5py.Dataset, where: str, error: type[Exception] = StoreFormatError) -> int:
    """Check that a dataset's declared shape is backed by the file, before reading it.

    A tiny file can declare a dataset of any shape: unwritten chunks read as
    the fill value, and a compressed chunk can claim to expand a lot.  The
    bytes a read would allocate must be at most what the stored bytes can
    decode to (stored size × the filters' largest expansion, see
    ``_MAX_EXPANSION``) and at most :func:`array_budget`.

    Returns
    -------
    int
        The bytes the read will allocate.

    Raises
    ------
    error
        The declared size is not backed by stored data, or exceeds the budget.
    """
    nbytes = int(np.prod(ds.shape, dtype=np.float64) * ds.dtype.itemsize) if ds.shape is not None else 0
    if nbytes <= _SMALL_BYTES:
        return nbytes
    shape = "x".join(map(str, ds.shape))
    budget = array_budget()
    if nbytes > budget:
        raise error(
            f"{where}: dataset '{ds.name}' declares shape ({shape}), {nbytes / 1e6:.0f} MB, more than the "
            f"{budget / 1e6:.0f} MB array budget (set SPIKEBRIDGE_MAX_ARRAY_BYTES to allow it)"
        )
    stored = min(int(ds.id.get_storage_size()), int(ds.file.id.get_filesize()))
    dcpl = ds.id.get_create_plist()
    expansion = 1.0
    for k in range(dcpl.get_nfilters()):
        expansion *= _MAX_EXPANSION.get(int(dcpl.get_filter(k)[0]), float("inf"))
    if nbytes > stored * expansion:
        raise error(
            f"{where}: dataset '{ds.name}' declares shape ({shape}), {nbytes / 1e6:.1f} MB, but the file stores "
            f"only {stored} bytes of it; the file is truncated or forged"
        )
    return nbytes


def check_total_size(
    f: h5py.File | h5py.Group, where: str, error: type[Exception] = StoreFormatError, *, bytes_per_value: int = 16,
    what: str = "its stored array and its float64/int64 copy",
) -> int:
    """Refuse a file whose datasets together, once read and converted, exceed :func:`array_budget`.

    Every dataset of ``f`` is counted by its declared shape (nothing is read):
    ``bytes_per_value`` bytes per value covers what a reader holds at its peak,
    e.g. an int32 index read (4 bytes) beside its int64 copy (8).  Each
    dataset is still checked alone by :func:`check_declared_size`.

    Returns
    -------
    int
        The bytes counted.

    Raises
    ------
    error
        The total exceeds the budget.
    """
    total = 0.0

    def count(name: str, obj: Any) -> None:
        nonlocal total
        if isinstance(obj, h5py.Dataset) and obj.shape is not None:
            total += float(np.prod(obj.shape, dtype=np.float64))

    f.visititems(count)
    need = total * bytes_per_value
    budget = array_budget()
    if need > budget:
        raise error(
            f"{where}: its datasets hold {total:.0f} values, {need / 1e6:.0f} MB once read and converted "
            f"({bytes_per_value} bytes per value: {what}), more than the {budget / 1e6:.0f} MB array budget "
            "(set SPIKEBRIDGE_MAX_ARRAY_BYTES to allow it)"
        )
    return int(need)


def read_dataset(ds: h5py.Dataset, where: str, error: type[Exception] = StoreFormatError) -> Any:
    """``ds[()]`` after :func:`check_declared_size`."""
    check_declared_size(ds, where, error)
    return ds[()]


def fixed_text(text: str) -> np.ndarray:
    """``text`` as a fixed-length UTF-8 byte string for an HDF5 attribute (h5py reads it back as bytes).

    Python ``str`` attributes are variable-length: their bytes live in the file's global heap, whose
    corruption can make HDF5 hang while reading them; a fixed-length string is stored in the
    attribute itself, its size known (and checkable) before it is read.
    """
    raw = text.encode("utf-8")
    return np.array(raw, dtype=f"S{max(1, len(raw))}")


def text_attr(text: str) -> np.ndarray | str:
    """``text`` for an HDF5 attribute: :func:`fixed_text`, or ``text`` itself (variable-length) when
    longer than 60 000 UTF-8 bytes (an attribute lives in its object's header, at most 64 KiB);
    :func:`read_attrs` reads those in a separate process."""
    return fixed_text(text) if len(text.encode("utf-8")) <= 60_000 else text


def write_format(f: h5py.File | h5py.Group, name: str, version: int, *, fixed: bool = False) -> None:
    """Write the ``format`` and ``format_version`` root attributes and package versions
    (as fixed-length strings with ``fixed``, see :func:`fixed_text`)."""
    text = fixed_text if fixed else str
    f.attrs["format"] = text(name)
    f.attrs["format_version"] = int(version)
    f.attrs["package_versions"] = text(json.dumps(package_versions()))


def check_format(
    f: h5py.File | h5py.Group, name: str, max_version: int, *, path: str | None = None, attrs: Mapping[str, Any] | None = None
) -> int:
    """Check the ``format`` attribute equals ``name`` and the version is one we read.

    ``attrs``: the root attributes as :func:`read_attrs` gave them (read from ``f`` when None).

    Returns
    -------
    int
        The file's format version.

    Raises
    ------
    StoreFormatError
        Foreign file (no or other ``format`` attribute) or newer version.
    """
    where = f" '{path}'" if path else ""
    found = (f.attrs if attrs is None else attrs).get("format")
    if isinstance(found, bytes):
        found = found.decode(errors="replace")
    if found != name:
        what = f"format {str(found)[:80]!r}" if found is not None else "no 'format' attribute"
        raise StoreFormatError(
            f"file{where} is not a {name} file: expected format {name!r}, found {what}"
        )
    raw = (f.attrs if attrs is None else attrs).get("format_version", -1)
    if isinstance(raw, np.generic):
        raw = raw.item()
    if not isinstance(raw, int) or isinstance(raw, bool):
        raise StoreFormatError(f"file{where} has {name} format_version {str(raw)[:40]!r}, not an integer")
    version = raw
    if version < 1 or version > max_version:
        raise StoreFormatError(
            f"file{where} has {name} format_version {version}; this spikebridge reads versions 1..{max_version}"
            + ("; upgrade spikebridge to read it" if version > max_version else "")
        )
    return version


def json_attr(obj: Any) -> str:
    """Serialise ``obj`` to JSON for an HDF5 attribute (numpy scalars/arrays become lists)."""

    def default(o: Any) -> Any:
        if isinstance(o, np.ndarray):
            return o.tolist()
        if isinstance(o, np.generic):
            return o.item()
        if isinstance(o, (set, tuple)):
            return list(o)
        raise TypeError(f"cannot store {type(o).__name__} in JSON")

    return json.dumps(obj, default=default, sort_keys=True)


def read_json_attr(node: h5py.File | h5py.Group | h5py.Dataset, key: str, default: Any = None) -> Any:
    """Read a JSON attribute written by :func:`json_attr` (``default`` if absent)."""
    if key not in node.attrs:
        return default
    raw = node.attrs[key]
    if isinstance(raw, bytes):
        raw = raw.decode()
    try:
        return json.loads(raw)
    except (TypeError, ValueError) as err:
        raise StoreFormatError(f"attribute {key!r} of {node.name} is not valid JSON") from err


def package_versions() -> dict[str, str]:
    """Versions of spikebridge and the core packages, for provenance."""
    return dict(_package_versions())


@functools.lru_cache(maxsize=1)
def _package_versions() -> dict[str, str]:
    # once per process: importlib.metadata scans sys.path, about 50 ms per call, and every
    # store shard (one per batch) records these versions
    from importlib import metadata

    out = {}
    for dist in ("spikebridge", "numpy", "h5py", "brian2", "networkx"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = "unknown"
    return out


def _first_line(err: BaseException) -> str:
    text = str(err).splitlines()[0] if str(err) else ""
    return text.strip() or type(err).__name__


#: seconds the separate process may take to read a file's variable-length string attributes
HEAP_READ_TIMEOUT_S = 10.0


def read_attrs(
    node: h5py.File | h5py.Group, where: str, error: type[Exception] = StoreFormatError, *, root_only: bool = False,
    names: tuple[str, ...] | None = None,
) -> dict[str, dict[str, Any]]:
    """Every attribute of ``node`` and the groups and datasets under it, as plain values, by object path.

    Each attribute's type and stored size are checked before it is read (see
    :mod:`spikebridge._h5attrs` for the values).  Attributes in object headers
    are read here; if any is a variable-length string (files written before
    fixed-length strings, or a text over 60 000 bytes), the file's attributes are
    read instead by a separate Python process that is killed after
    :data:`HEAP_READ_TIMEOUT_S` seconds: such strings live in the global heap,
    whose corruption can make HDF5 loop for ever or allocate gigabytes.

    Parameters
    ----------
    node : h5py.File or h5py.Group
    where : str
        The file, for messages (e.g. ``"network file 'n.h5'"``).
    error : exception type
        What to raise.
    root_only : bool
        Only ``node``'s own attributes.
    names : tuple of str, optional
        Only these attributes of ``node`` (the others are not read).

    Returns
    -------
    dict
        ``{object path: {attribute name: value}}``; ``node`` itself under its own path.

    Raises
    ------
    error
        An attribute that is larger than the file (or 1 MB), unreadable, or whose reading
        did not finish in time; one line naming it.
    """
    try:
        return _h5attrs.snapshot(node, root_only=root_only, limit=_attr_limit(node), names=names)
    except _h5attrs.NeedsHeap:
        pass
    except _h5attrs.Unreadable as err:
        raise error(f"{where}: {err}") from None
    except (OSError, RuntimeError, KeyError, ValueError, TypeError, SystemError) as err:
        raise error(f"{where}: unreadable attributes (the file is corrupt): {_first_line(err)}") from err
    path = node.file.filename
    if not sys.executable or not os.path.isfile(path):  # no interpreter to run it in: read here
        try:
            return _h5attrs.snapshot(node, root_only=root_only, allow_heap=True, limit=_attr_limit(node), names=names)
        except Exception as err:  # h5py's low-level errors, whatever their type
            raise error(f"{where}: unreadable attributes (the file is corrupt): {_first_line(err)}") from err
    root = (root_only or names is not None) and node.name == "/"
    if names is not None and node.name != "/":
        names = None  # the separate process reads a group's attributes only as part of the whole file
    key = _content_key(path, root, names)
    attrs = _HEAP_CACHE.get(key) if key else None
    if attrs is None:
        attrs = _read_attrs_apart(path, where, error, root, names)
        if key:
            _HEAP_CACHE[key] = attrs
            while len(_HEAP_CACHE) > 16:
                del _HEAP_CACHE[next(iter(_HEAP_CACHE))]
    base = node.name.rstrip("/")
    if root_only or names is not None:
        return {node.name: {k: v for k, v in attrs.get(node.name, {}).items() if names is None or k in names}}
    return {k: v for k, v in attrs.items() if k == node.name or k.startswith(base + "/")}


#: attributes read by the separate process, by file content (the shipped models, loaded again and again)
_HEAP_CACHE: dict[tuple[str, bool, tuple[str, ...] | None], dict[str, dict[str, Any]]] = {}


def _content_key(path: str, root: bool, names: tuple[str, ...] | None) -> tuple[str, bool, tuple[str, ...] | None] | None:
    """SHA-256 of the file's bytes with what was read; None for files over 64 MB (hashing them costs
    about as much as the separate process)."""
    import hashlib

    try:
        if os.path.getsize(path) > 64 << 20:
            return None
        with open(path, "rb") as fh:
            return hashlib.sha256(fh.read()).hexdigest(), root, names
    except OSError:
        return None


def _read_attrs_apart(
    path: str, where: str, error: type[Exception], root: bool, names: tuple[str, ...] | None
) -> dict[str, dict[str, Any]]:
    """:func:`spikebridge._h5attrs.main` run on ``path`` by a separate interpreter, with a time limit."""
    code = f"import runpy; runpy.run_path({_h5attrs.__file__!r}, run_name='__main__')"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    try:
        proc = subprocess.run(
            [sys.executable, "-c", code, path, *(["--root"] if root else []),
             *([f"--names={','.join(names)}"] if root and names else [])],
            check=False, capture_output=True, timeout=HEAP_READ_TIMEOUT_S, stdin=subprocess.DEVNULL, env=env,
            # a reader hung on a corrupt heap must not outlive a killed parent
            preexec_fn=functools.partial(die_with_parent, os.getpid()),
        )
    except subprocess.TimeoutExpired:
        raise error(
            f"{where}: reading its variable-length string attributes did not finish in {HEAP_READ_TIMEOUT_S:g} s "
            "(a corrupt global heap); the file is damaged"
        ) from None
    try:
        doc = json.loads(proc.stdout)
    except ValueError:
        doc = None
    if proc.returncode != 0 or not isinstance(doc, dict):
        status = f"signal {-proc.returncode}" if proc.returncode < 0 else f"exit status {proc.returncode}"
        raise error(f"{where}: reading its variable-length string attributes failed ({status}); the file is damaged")
    if "error" in doc:
        raise error(f"{where}: unreadable attributes (the file is corrupt): {doc['error']}")
    attrs: dict[str, dict[str, Any]] = doc["attrs"]
    return attrs


def root_attr(path: str | os.PathLike[str], key: str, error: type[Exception] = StoreFormatError) -> Any:
    """Root attribute ``key`` of the HDF5 file ``path`` (None if absent), read as :func:`read_attrs` does,
    without touching the other attributes; for telling formats apart.

    Raises
    ------
    OSError
        Not a readable HDF5 file (h5py's error).
    error
        The attribute is damaged (see :func:`read_attrs`).
    """
    with h5py.File(path, "r") as f:
        return read_attrs(f, f"file '{path}'", error, names=(key,))["/"].get(key)


def _attr_limit(node: h5py.File | h5py.Group) -> int:
    return min(_h5attrs.MAX_ATTR_BYTES, max(1, int(node.file.id.get_filesize())))


class AttrView:
    """Typed access to one object's attributes (one entry of :func:`read_attrs`).

    Every getter raises ``error`` naming the attribute, the object and the
    file when the attribute is missing (and no default is given) or of the
    wrong type.
    """

    _MISSING: Any = object()

    def __init__(self, attrs: Mapping[str, dict[str, Any]], path: str, where: str, error: type[Exception]) -> None:
        if path not in attrs:
            raise error(f"{where}: no object '{path}' (or it is a second link to another object)")
        self.values = attrs[path]
        self.path = path
        self.where = where
        self.error = error

    def __contains__(self, key: str) -> bool:
        return key in self.values

    def _get(self, key: str, default: Any) -> Any:
        if key in self.values:
            return self.values[key]
        if default is AttrView._MISSING:
            raise self.error(f"{self.where}: '{self.path}' has no attribute {key!r}")
        return default

    def _wrong(self, key: str, value: Any, expected: str) -> Exception:
        shown = repr(value) if not isinstance(value, (str, list, dict)) or len(repr(value)) < 60 else repr(value)[:57] + "..."
        return self.error(f"{self.where}: attribute {key!r} of '{self.path}' is {shown}; expected {expected}")

    def text(self, key: str, default: Any = _MISSING) -> Any:
        """A string attribute (``default`` if absent)."""
        value = self._get(key, default)
        if key in self.values and not isinstance(value, str):
            raise self._wrong(key, value, "text")
        return value

    def json(self, key: str, default: Any = _MISSING, kind: type | tuple[type, ...] = object, what: str = "JSON") -> Any:
        """A JSON text attribute decoded (``default`` if absent), checked to be an instance of ``kind``."""
        if key not in self.values:
            return self._get(key, default)
        raw = self.text(key)
        try:
            value = json.loads(raw)
        except ValueError:
            raise self._wrong(key, raw, "JSON text") from None
        if not isinstance(value, kind):
            raise self._wrong(key, value, what)
        return value

    def number(self, key: str, default: Any = _MISSING) -> Any:
        """A finite int or float attribute (``default`` if absent)."""
        value = self._get(key, default)
        if key in self.values and (
            isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value)
        ):
            raise self._wrong(key, value, "a finite number")
        return value


# -- checksums of our own files --------------------------------------------

#: attribute of a dataset: SHA-256 (hex) of its contents, see :func:`array_sha256`
SHA_ATTR = "sha256"
#: root attribute: SHA-256 (hex) of every other attribute in the file, see :func:`attrs_sha256`
ATTRS_SHA_ATTR = "attrs_sha256"


def array_sha256(arr: Any) -> str:
    """SHA-256 (hex) of an array's dtype kind and size, shape and little-endian bytes.

    The same for the array written and the array read back, whatever byte
    order the file stores it in.
    """
    import hashlib

    a = np.asarray(arr)
    le = np.ascontiguousarray(a, dtype=a.dtype.newbyteorder("<"))  # no copy for native little-endian
    h = hashlib.sha256(f"{a.dtype.kind}{a.dtype.itemsize}:{tuple(a.shape)}:".encode())
    h.update(le.data.cast("B") if le.size else b"")
    return h.hexdigest()


def create_checked_dataset(group: h5py.Group, key: str, data: Any, **kwargs: Any) -> h5py.Dataset:
    """``group.create_dataset(key, data=data, **kwargs)`` with attribute ``sha256``: the
    :func:`array_sha256` of the values as stored (verified by :func:`read_array` given the file's attributes)."""
    ds = group.create_dataset(key, data=data, **kwargs)
    ds.attrs[SHA_ATTR] = fixed_text(array_sha256(np.asarray(data, dtype=ds.dtype)))
    return ds


def attrs_sha256(attrs: Mapping[str, Mapping[str, Any]]) -> str:
    """SHA-256 (hex) of every attribute of every object (as :func:`read_attrs` gives them), the
    root's ``attrs_sha256`` left out: object paths, attribute names and values in a canonical JSON."""
    import hashlib

    canon = {path: {k: v for k, v in sorted(values.items()) if not (path == "/" and k == ATTRS_SHA_ATTR)}
             for path, values in sorted(attrs.items())}
    return hashlib.sha256(json.dumps(canon, sort_keys=True, default=repr).encode()).hexdigest()


def seal_attrs(f: h5py.File, where: str = "file") -> None:
    """Write the root attribute ``attrs_sha256`` over every attribute now in ``f`` (call last, once
    everything is written); the per-dataset checksums are attributes, so this covers the whole content."""
    # read here with heap strings allowed: the file is our own, open for writing (and locked against
    # the separate process read_attrs would start for a variable-length string)
    f.attrs[ATTRS_SHA_ATTR] = fixed_text(attrs_sha256(_h5attrs.snapshot(f, allow_heap=True, limit=_attr_limit(f))))


def verify_attrs(attrs: Mapping[str, Mapping[str, Any]], where: str, error: type[Exception] = StoreFormatError) -> bool:
    """Check the root ``attrs_sha256`` against the file's attributes (all of them, from :func:`read_attrs`).

    Files written before checksums existed have none and pass unchecked (returns False).  A file
    with dataset checksums but no root one lost it to damage and is refused.

    Raises
    ------
    error
        The attributes (text, numbers, names or dataset checksums) differ from what was written.
    """
    expected = attrs.get("/", {}).get(ATTRS_SHA_ATTR)
    if expected is None:
        if any(SHA_ATTR in v for v in attrs.values()):
            raise error(f"{where} is damaged: its datasets carry checksums but the root attribute "
                        f"'{ATTRS_SHA_ATTR}' is missing")
        return False
    if not isinstance(expected, str) or attrs_sha256(attrs) != expected:
        raise error(f"{where} is damaged: its attributes do not match the checksum written with them "
                    "(SHA-256); the file was changed or corrupted after it was saved")
    return True


def read_array(
    group: h5py.Group, key: str, where: str, error: type[Exception] = StoreFormatError, *, ndims: tuple[int, ...] = (0, 1),
    kinds: str = "iuf", attrs: Mapping[str, Mapping[str, Any]] | None = None, mismatches: list[str] | None = None,
) -> np.ndarray:
    """Dataset ``key`` of ``group`` after checking it is a numeric dataset (numpy kinds ``kinds``) of an
    allowed rank that its file backs.

    Nothing is read from a dataset of another type (a variable-length string
    dataset would be read from the global heap) or of an unbacked size (see
    :func:`check_declared_size`).

    ``attrs``: the file's attributes from :func:`read_attrs`; when given and the dataset has a
    ``sha256`` attribute (see :func:`create_checked_dataset`), the values read are verified against it;
    with ``mismatches`` a dataset that does not match is appended to it (the caller refuses the file once
    its typed checks are done, see :func:`refuse_mismatches`) instead of raised at once.

    Raises
    ------
    error
        Missing, not a dataset, not integers or floats, of another rank, too large, or (with ``attrs``)
        not matching its checksum.
    """
    name = f"{group.name.rstrip('/')}/{key}"
    if key not in group:
        raise error(f"{where}: missing dataset '{name}'")
    ds = group.get(key, getlink=False)
    if not isinstance(ds, h5py.Dataset):
        raise error(f"{where}: '{name}' is not a dataset")
    dt = ds.dtype
    if dt.kind not in kinds or dt.names is not None or dt.subdtype is not None:
        raise error(f"{where}: dataset '{name}' holds {dt}; expected {'integers' if kinds == 'iu' else 'integers or floats'}")
    if ds.shape is None or ds.ndim not in ndims:
        raise error(f"{where}: dataset '{name}' has shape {ds.shape}; expected {' or '.join(f'{n}-D' for n in ndims)}")
    arr = np.asarray(read_dataset(ds, where, error))
    expected = attrs.get(ds.name, {}).get(SHA_ATTR) if attrs is not None else None
    if expected is not None and array_sha256(arr) != expected:
        if mismatches is None:
            refuse_mismatches([name], where, error)
        else:
            mismatches.append(name)
    return arr


def refuse_mismatches(names: list[str], where: str, error: type[Exception] = StoreFormatError) -> None:
    """Raise ``error`` naming the datasets of ``names`` (none: nothing to refuse)."""
    if names:
        more = f" (and {len(names) - 1} more)" if len(names) > 1 else ""
        raise error(f"{where} is damaged: dataset '{names[0]}'{more} does not match the checksum written with it (SHA-256)")
