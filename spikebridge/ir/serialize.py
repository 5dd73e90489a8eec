"""Our own HDF5 file format for :class:`~spikebridge.ir.graph.AnnGraph` (``spikebridge.ann``).

Layout (documented in ``docs/formats.md``)::

    /                       attrs: format="spikebridge.ann", format_version=3, name,
                                   metadata (JSON), edges (JSON list of [src, dst]),
                                   package_versions (JSON)
    /layers/<k>             one group per layer, k = 0, 1, ... in topological order
        attrs: name, type (a key of LAYER_TYPES), params (JSON of the non-array fields)
        datasets: one float64 dataset per array field (weight, bias)

Version 2 (graphs with Add / Concat joins) has the same layout as version 1:
``edges`` then lists two or more sources for a merge layer, in input order.
Version 3 stores every text attribute as a fixed-length UTF-8 string (versions 1
and 2 as variable-length strings, read in a separate process, see
``spikebridge._h5.read_attrs``).  Version 4 adds the optional ``max_value`` of a
ReLU (a clipped ReLU) to its ``params``; it is written only by graphs that have
a clipped ReLU, so every other graph is still written as version 3.  Version 5 adds the
recurrent layer ``RNN`` (datasets ``weight_ih``, ``weight_hh``, ``bias``; params
``return_sequences``), written only by graphs that have one.  Files of
versions 1 to 3 load unchanged (a ReLU without ``max_value`` is unbounded).
Fields whose value is None are not written.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import h5py
import numpy as np

from .._h5 import (AttrView, check_format, create_checked_dataset, json_attr, open_h5, read_array, read_attrs, seal_attrs,
                   refuse_mismatches, text_attr, verify_attrs, write_format)
from ..errors import ModelFormatError, SpikebridgeError, StoreFormatError, ValidationError
from .graph import AnnGraph
from .layers import LAYER_TYPES, Layer

__all__ = ["save_graph", "load_graph", "graph_to_dict", "graph_from_dict", "write_graph_group", "read_graph_group", "FORMAT", "VERSION",
           "format_version"]

FORMAT = "spikebridge.ann"
#: newest version; readers accept 1..VERSION.  2 added the merge layers Add and Concat; 3 writes
#: fixed-length string attributes (older versions: variable-length ones, still read); 4 ReLU.max_value
#: (written only when a graph has a clipped ReLU, see :func:`format_version`).
VERSION = 5


def format_version(graph: AnnGraph) -> int:
    """The lowest format version that holds ``graph``: 5 with a recurrent layer, 4 with a clipped ReLU, else 3."""
    from .layers import RNN, ReLU

    if any(isinstance(layer, RNN) for layer in graph):
        return 5
    return 4 if any(isinstance(layer, ReLU) and layer.max_value is not None for layer in graph) else 3


def _layer_fields(layer: Layer) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    params: dict[str, Any] = {}
    arrays: dict[str, np.ndarray] = {}
    for f in dataclasses.fields(layer):
        if f.name == "name":
            continue
        value = getattr(layer, f.name)
        if value is None:
            continue  # the default (e.g. an unbounded ReLU): older readers do not know every optional field
        if isinstance(value, np.ndarray):
            arrays[f.name] = value
        else:
            params[f.name] = list(value) if isinstance(value, tuple) else value
    return params, arrays


def graph_to_dict(graph: AnnGraph) -> dict[str, Any]:
    """Plain-dict form of a graph (arrays kept as numpy arrays).

    Returns
    -------
    dict
        ``{"name", "metadata", "edges", "layers": [{"type", "name", **fields}]}``.
    """
    layers = []
    for layer in graph:
        params, arrays = _layer_fields(layer)
        layers.append({"type": layer.type_name, "name": layer.name, **params, **arrays})
    return {"name": graph.name, "metadata": dict(graph.metadata), "edges": [list(e) for e in graph.edges], "layers": layers}


def _make_layer(spec: dict[str, Any], where: str) -> Layer:
    spec = dict(spec)
    type_name = spec.pop("type", None)
    cls = LAYER_TYPES.get(str(type_name))
    if cls is None:
        raise ModelFormatError(
            f"{where}: unknown layer type {type_name!r}; known types: {', '.join(sorted(LAYER_TYPES))}"
        )
    field_names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(spec) - field_names
    if unknown:
        raise ModelFormatError(f"{where}: layer type {type_name} has no field(s) {sorted(unknown)}")
    for key, value in spec.items():
        if isinstance(value, list):
            spec[key] = tuple(value)
    try:
        return cls(**spec)
    except (TypeError, ValidationError) as err:
        raise ModelFormatError(f"{where}: invalid {type_name} layer: {err}") from err


def graph_from_dict(data: dict[str, Any]) -> AnnGraph:
    """Inverse of :func:`graph_to_dict`."""
    layers = [_make_layer(spec, f"layer {i}") for i, spec in enumerate(data["layers"])]
    edges = [tuple(e) for e in data.get("edges", [])] or None
    return AnnGraph(layers, edges, name=data.get("name", "model"), metadata=data.get("metadata"))  # type: ignore[arg-type]


def write_graph_group(group: h5py.Group, graph: AnnGraph) -> None:
    """Write ``graph`` into an open HDF5 group (without the root format attributes)."""
    group.attrs["name"] = text_attr(graph.name)
    group.attrs["metadata"] = text_attr(json_attr(graph.metadata))
    group.attrs["edges"] = text_attr(json_attr([list(e) for e in graph.edges]))
    layers = group.create_group("layers")
    for k, layer in enumerate(graph):
        g = layers.create_group(str(k))
        params, arrays = _layer_fields(layer)
        g.attrs["name"] = text_attr(layer.name)
        g.attrs["type"] = text_attr(layer.type_name)
        g.attrs["params"] = text_attr(json_attr(params))
        for key, arr in arrays.items():
            create_checked_dataset(g, key, np.asarray(arr, dtype=np.float64))


def read_graph_group(
    group: h5py.Group, *, where: str = "file", attrs: dict[str, dict[str, Any]] | None = None,
    mismatches: list[str] | None = None,
) -> AnnGraph:
    """Read a graph written by :func:`write_graph_group`.

    ``attrs``: the file's attributes as :func:`spikebridge._h5.read_attrs` gave them
    (read from ``group`` when None).  Attribute types and dataset dtypes, ranks and
    declared sizes are checked before reading.  Datasets whose values do not match their checksum are
    appended to ``mismatches`` when given (see :func:`spikebridge._h5.read_array`), refused at once otherwise.

    Raises
    ------
    ModelFormatError
        Missing, damaged or inconsistent parts (one line naming the part).
    """
    try:
        return _read_graph_group(group, where, read_attrs(group, where, ModelFormatError) if attrs is None else attrs,
                                 mismatches)
    except ModelFormatError:
        raise
    except SpikebridgeError as err:
        raise ModelFormatError(f"{where}: {err}") from err
    except Exception as err:  # h5py's low-level errors of a damaged file, whatever their type
        text = str(err).splitlines()[0] if str(err) else ""
        raise ModelFormatError(f"{where}: damaged or inconsistent graph: {type(err).__name__}: {text}") from err


def _read_graph_group(group: h5py.Group, where: str, attrs: dict[str, dict[str, Any]],
                      mismatches: list[str] | None = None) -> AnnGraph:
    E = ModelFormatError
    if "layers" not in group or not isinstance(group.get("layers"), h5py.Group):
        raise E(f"{where}: no 'layers' group")
    layers_group = group["layers"]
    names = list(layers_group.keys())
    if not all(k.isdigit() for k in names) or sorted(map(int, names)) != list(range(len(names))):
        raise E(f"{where}: layer groups must be named 0, 1, ...; found {names[:20]}")
    specs = []
    for k in sorted(names, key=int):
        g = layers_group[k]
        if not isinstance(g, h5py.Group):
            raise E(f"{where}: layer {k} ('{g.name}') is not a group")
        a = AttrView(attrs, g.name, where, E)
        try:
            spec = {"type": a.text("type"), "name": a.text("name"), **a.json("params", {}, dict, "a JSON object")}
        except ModelFormatError as err:
            raise E(f"{where}: layer group {k} is incomplete or unreadable: {str(err).removeprefix(where + ': ')}") from None
        for key in g.keys():
            spec[key] = read_array(g, key, where, E, ndims=tuple(range(7)), attrs=attrs, mismatches=mismatches)
        specs.append(spec)
    root = AttrView(attrs, group.name, where, E)
    data = {
        "name": root.text("name", "model"),
        "metadata": root.json("metadata", {}, dict, "a JSON object"),
        "edges": root.json("edges", [], list, "a JSON list of [source, destination]"),
        "layers": specs,
    }
    try:
        return graph_from_dict(data)
    except ValidationError as err:
        raise E(f"{where}: {err}") from err


def save_graph(graph: AnnGraph, path: str | os.PathLike[str], *, overwrite: bool = True) -> None:
    """Save a graph in the ``spikebridge.ann`` HDF5 format.

    Parameters
    ----------
    graph : AnnGraph
    path : str or path-like
        Destination, conventionally ``*.h5``.
    overwrite : bool
        If False and ``path`` exists, raise ``FileExistsError``.
    """
    with open_h5(path, "w" if overwrite else "x", what="model file") as f:
        write_format(f, FORMAT, format_version(graph), fixed=True)
        write_graph_group(f, graph)
        seal_attrs(f, f"model file '{path}'")


def load_graph(path: str | os.PathLike[str]) -> AnnGraph:
    """Load a graph saved by :func:`save_graph`.

    Raises
    ------
    ModelFormatError
        The file is HDF5 but not a (readable) ``spikebridge.ann`` file.
    StoreFormatError
        The file is from a newer format version.
    """
    try:
        f = open_h5(path, "r", what="model file")
    except StoreFormatError as err:
        raise ModelFormatError(str(err)) from err
    where = f"model file '{path}'"
    with f:
        attrs = read_attrs(f, where, ModelFormatError)
        try:
            check_format(f, FORMAT, VERSION, path=str(path), attrs=attrs["/"])
        except StoreFormatError as err:
            if "format_version" in str(err) and "upgrade spikebridge" in str(err):
                raise
            raise ModelFormatError(str(err)) from err
        damaged: list[str] = []
        graph = read_graph_group(f, where=where, attrs=attrs, mismatches=damaged)
        # checksums after the typed checks, whose messages name the part
        refuse_mismatches(damaged, where, ModelFormatError)
        verify_attrs(attrs, where, ModelFormatError)
        return graph
