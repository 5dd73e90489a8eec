"""Our own HDF5 file format for :class:`~spikebridge.ir.graph.AnnGraph` (``spikebridge.ann``).

Layout (documented in ``docs/formats.md``)::

    /                       attrs: format="spikebridge.ann", format_version=2, name,
                                   metadata (JSON), edges (JSON list of [src, dst]),
                                   package_versions (JSON)
    /layers/<k>             one group per layer, k = 0, 1, ... in topological order
        attrs: name, type (a key of LAYER_TYPES), params (JSON of the non-array fields)
        datasets: one float64 dataset per array field (weight, bias)

Version 2 (graphs with Add / Concat joins) has the same layout as version 1:
``edges`` then lists two or more sources for a merge layer, in input order.
Version 3 adds the optional ``max_value`` of a ReLU (a clipped ReLU) to its
``params``; it is written only by graphs that have a clipped ReLU, so every
other graph is still written as version 2 and stays readable by older
releases.  Version 1 and 2 files load unchanged (a ReLU without ``max_value``
is unbounded).  Fields whose value is None are not written.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import h5py
import numpy as np

from .._h5 import check_format, json_attr, open_h5, read_dataset, read_json_attr, write_format
from ..errors import ModelFormatError, StoreFormatError, ValidationError
from .graph import AnnGraph
from .layers import LAYER_TYPES, Layer

__all__ = ["save_graph", "load_graph", "graph_to_dict", "graph_from_dict", "write_graph_group", "read_graph_group", "FORMAT", "VERSION",
           "format_version"]

FORMAT = "spikebridge.ann"
#: newest version; readers accept 1..VERSION.  2 added the merge layers Add and Concat, 3 ReLU.max_value
#: (written only when a graph has a clipped ReLU, see :func:`format_version`).
VERSION = 3


def format_version(graph: AnnGraph) -> int:
    """The lowest format version that holds ``graph``: 3 with a clipped ReLU, else 2."""
    from .layers import ReLU

    return 3 if any(isinstance(layer, ReLU) and layer.max_value is not None for layer in graph) else 2


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
    group.attrs["name"] = graph.name
    group.attrs["metadata"] = json_attr(graph.metadata)
    group.attrs["edges"] = json_attr([list(e) for e in graph.edges])
    layers = group.create_group("layers")
    for k, layer in enumerate(graph):
        g = layers.create_group(str(k))
        params, arrays = _layer_fields(layer)
        g.attrs["name"] = layer.name
        g.attrs["type"] = layer.type_name
        g.attrs["params"] = json_attr(params)
        for key, arr in arrays.items():
            g.create_dataset(key, data=np.asarray(arr, dtype=np.float64))


def read_graph_group(group: h5py.Group, *, where: str = "file") -> AnnGraph:
    """Read a graph written by :func:`write_graph_group`."""
    if "layers" not in group:
        raise ModelFormatError(f"{where}: no 'layers' group")
    layers_group = group["layers"]
    try:
        keys = sorted(layers_group.keys(), key=int)
    except ValueError as err:
        raise ModelFormatError(f"{where}: layer groups must be named 0, 1, ...; found {list(layers_group)}") from err
    specs = []
    for k in keys:
        g = layers_group[k]
        try:
            spec = {"type": g.attrs["type"], "name": g.attrs["name"], **read_json_attr(g, "params", {})}
            for key in g.keys():
                spec[key] = read_dataset(g[key], where, ModelFormatError)
        except (KeyError, OSError) as err:
            raise ModelFormatError(f"{where}: layer group {k} is incomplete or unreadable: {err}") from err
        specs.append(spec)
    data = {
        "name": group.attrs.get("name", "model"),
        "metadata": read_json_attr(group, "metadata", {}),
        "edges": read_json_attr(group, "edges", []),
        "layers": specs,
    }
    try:
        return graph_from_dict(data)
    except ValidationError as err:
        raise ModelFormatError(f"{where}: {err}") from err


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
        write_format(f, FORMAT, format_version(graph))
        write_graph_group(f, graph)


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
    with f:
        try:
            check_format(f, FORMAT, VERSION, path=str(path))
        except StoreFormatError as err:
            if "format_version" in str(err):
                raise
            raise ModelFormatError(str(err)) from err
        return read_graph_group(f, where=f"model file '{path}'")
