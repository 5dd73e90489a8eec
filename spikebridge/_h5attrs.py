"""Read the attributes of an HDF5 file into plain JSON values, checking each one's type and size first.

Imports nothing of spikebridge: :func:`spikebridge._h5.read_attrs` runs this file as a
script in a separate interpreter (``python -c "runpy.run_path(...)" FILE [--root]``,
printing the JSON) for files holding variable-length strings.  Those live in the
file's global heap, and HDF5 can loop for ever (deaf to signals) or allocate
gigabytes on a corrupted one; a separate process can be killed.  Every other
attribute is stored in its object's header, its size known before it is read,
and is read in-process.

Values: ``str`` (fixed- or variable-length strings, UTF-8), ``int``, ``float``,
lists of these for array attributes, ``None`` for an empty attribute, and
``{UNSUPPORTED: description}`` for any other type (compound, enum, reference,
variable-length sequences, undecodable bytes), which is never read.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import h5py
import numpy as np

UNSUPPORTED = "__unsupported__"

#: no attribute of ours is larger; a larger one (or one larger than its file) is refused unread
MAX_ATTR_BYTES = 1 << 20
#: address-space limit of the separate process (Linux)
_CHILD_MEMORY = 3 << 30


class NeedsHeap(Exception):
    """An attribute is a variable-length string: read the file in a separate process."""


class Unreadable(Exception):
    """An attribute's declared size or type cannot be right; the message says which."""


def _plain(value: Any) -> Any:
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            return {UNSUPPORTED: "bytes that are not UTF-8"}
    if isinstance(value, np.ndarray):
        return [_plain(v) for v in value.tolist()] if value.ndim else _plain(value[()])
    if isinstance(value, np.generic):
        return _plain(value.item())
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, (str, int, float)) or value is None:
        return value
    return {UNSUPPORTED: type(value).__name__}


def attribute(node: Any, name: str, limit: int, allow_heap: bool) -> Any:
    """One attribute of ``node`` as a plain value (see the module docstring)."""
    aid = h5py.h5a.open(node.id, name.encode("utf-8"))
    tid = aid.get_type()
    cls = tid.get_class()
    if aid.get_space().get_simple_extent_type() == h5py.h5s.NULL:
        return None
    if cls == h5py.h5t.STRING and tid.is_variable_str():
        if not allow_heap:
            raise NeedsHeap(name)
    elif cls in (h5py.h5t.STRING, h5py.h5t.INTEGER, h5py.h5t.FLOAT):
        stored = int(aid.get_storage_size())
        if stored > limit:
            raise Unreadable(f"attribute {name!r} of '{node.name}' claims {stored} bytes (more than {limit}); refusing to read it")
    else:
        # compound, enum (h5py's bool), references, opaque, arrays and variable-length sequences:
        # none of our formats writes them, and a sequence would be read from the global heap
        return {UNSUPPORTED: f"HDF5 type class {cls}"}
    return _plain(node.attrs[name])


def snapshot(
    f: h5py.File | h5py.Group, *, root_only: bool = False, allow_heap: bool = False, limit: int | None = None,
    names: tuple[str, ...] | None = None,
) -> dict[str, dict[str, Any]]:
    """The attributes of every group and dataset under ``f`` (or of ``f`` alone), by object path.

    ``names``: read only these attributes (of ``f`` alone); the others are not touched.

    Raises
    ------
    NeedsHeap
        Without ``allow_heap``, at the first variable-length string attribute.
    Unreadable
        An attribute larger than ``limit`` bytes (default the file's size, at most 1 MB).
    """
    if limit is None:
        limit = min(MAX_ATTR_BYTES, max(1, int(f.file.id.get_filesize())))
    if names is not None:
        return {f.name: {n: attribute(f, n, limit, allow_heap) for n in names if n in f.attrs}}
    nodes: list[Any] = [f]
    if not root_only:
        f.visititems(lambda name, obj: nodes.append(obj) if isinstance(obj, (h5py.Group, h5py.Dataset)) else None)
    return {node.name: {n: attribute(node, n, limit, allow_heap) for n in list(node.attrs)} for node in nodes}


def main(argv: list[str]) -> int:  # pragma: no cover - runs in the separate process
    """Print ``{"attrs": snapshot}`` or ``{"error": message}`` for the file ``argv[0]``
    (``--root``: root only; ``--names=a,b``: only these root attributes)."""
    try:
        import resource

        # an absurd string length makes HDF5 allocate it: fail here rather than swap
        resource.setrlimit(resource.RLIMIT_AS, (_CHILD_MEMORY, _CHILD_MEMORY))
    except (ImportError, ValueError, OSError):
        pass
    try:
        with h5py.File(argv[0], "r") as f:
            only = [a.split("=", 1)[1].split(",") for a in argv if a.startswith("--names=")]
            doc: dict[str, Any] = {
                "attrs": snapshot(f, root_only="--root" in argv, allow_heap=True, names=tuple(only[0]) if only else None)
            }
    except Exception as err:  # noqa: BLE001 - the parent turns it into one error line
        text = str(err).splitlines()[0] if str(err) else ""
        doc = {"error": f"{type(err).__name__}: {text}" if text else type(err).__name__}
    sys.stdout.write(json.dumps(doc))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main(sys.argv[1:]))
