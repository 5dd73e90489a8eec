"""Shared helpers for our HDF5 formats: open with clear errors, check format name and version."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from .errors import StoreFormatError

__all__ = ["open_h5", "check_format", "write_format", "fixed_text", "json_attr", "read_json_attr", "package_versions"]


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
    if mode in ("r", "r+") and not p.exists():
        raise FileNotFoundError(f"{what} '{p}' does not exist")
    if mode in ("x", "w-") and p.exists():
        raise FileExistsError(f"{what} '{p}' already exists; choose another path or allow overwriting")
    try:
        return h5py.File(p, mode, **kwargs)
    except OSError as err:
        text = str(err)
        # file-locking failures stay OSError; "sblock" (superblock) in truncation messages must not match
        if re.search(r"\block", text, re.IGNORECASE):
            raise
        raise StoreFormatError(
            f"{what} '{p}' is not a readable HDF5 file (truncated or not HDF5): {text.splitlines()[0] if text else err}"
        ) from err


def fixed_text(text: str) -> np.ndarray:
    """``text`` as a fixed-length UTF-8 byte string for an HDF5 attribute (h5py reads it back as bytes).

    Python ``str`` attributes are variable-length: their bytes live in the file's global heap, whose
    corruption can make HDF5 hang while reading them; a fixed-length string is stored in the
    attribute itself, its size known (and checkable) before it is read.
    """
    raw = text.encode("utf-8")
    return np.array(raw, dtype=f"S{max(1, len(raw))}")


def write_format(f: h5py.File | h5py.Group, name: str, version: int, *, fixed: bool = False) -> None:
    """Write the ``format`` and ``format_version`` root attributes and package versions
    (as fixed-length strings with ``fixed``, see :func:`fixed_text`)."""
    text = fixed_text if fixed else str
    f.attrs["format"] = text(name)
    f.attrs["format_version"] = int(version)
    f.attrs["package_versions"] = text(json.dumps(package_versions()))


def check_format(f: h5py.File | h5py.Group, name: str, max_version: int, *, path: str | None = None) -> int:
    """Check the ``format`` attribute equals ``name`` and the version is one we read.

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
    found = f.attrs.get("format")
    if isinstance(found, bytes):
        found = found.decode()
    if found != name:
        what = f"format {found!r}" if found is not None else "no 'format' attribute"
        raise StoreFormatError(
            f"file{where} is not a {name} file: expected format {name!r}, found {what}"
        )
    version = int(f.attrs.get("format_version", -1))
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
    from importlib import metadata

    out = {}
    for dist in ("spikebridge", "numpy", "h5py", "brian2", "networkx"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = "unknown"
    return out
