"""The framework-neutral ANN graph: named layers joined by edges."""

from __future__ import annotations

import keyword
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import ValidationError
from .layers import Input, Layer, Merge

__all__ = ["AnnGraph", "safe_name", "LayerInfo"]

_IDENT = re.compile(r"[^0-9a-zA-Z_]")


def safe_name(name: str) -> str:
    """Turn a user's layer name into a Python/Brian2 identifier.

    Parameters
    ----------
    name : str
        Any string, e.g. ``"features.0"`` or ``"dense/1"``.

    Returns
    -------
    str
        Letters, digits and underscores, not starting with a digit or underscore
        (Brian2 reserves leading underscores), e.g. ``"features_0"``.

    Examples
    --------
    >>> safe_name("features.0")
    'features_0'
    >>> safe_name("0conv")
    'l0conv'
    """
    out = _IDENT.sub("_", str(name)).strip("_") or "layer"
    if out[0].isdigit():
        out = "l" + out
    if keyword.iskeyword(out):
        out += "_"
    return out


@dataclass(frozen=True)
class LayerInfo:
    """Summary row of one layer: name, type, output shape, parameters and MACs per sample."""

    name: str
    type_name: str
    output_shape: tuple[int, ...]
    n_params: int
    macs: int


class AnnGraph:
    """A trained ANN as named layers and directed edges: a directed acyclic graph.

    The single :class:`~spikebridge.ir.layers.Input` has no predecessor, a
    merge layer (:class:`~spikebridge.ir.layers.Add`,
    :class:`~spikebridge.ir.layers.Concat`) two or more (its inputs, in the
    order of ``edges``), every other layer exactly one.  A layer may feed
    several others (a branch); the graph has exactly one output.  Layers are
    kept in topological order.  Shapes are
    inferred and checked on construction, so a graph that exists is valid.

    Parameters
    ----------
    layers : sequence of Layer
        The layers; the first must be an ``Input``.  Names must be unique.
    edges : sequence of (str, str), optional
        ``(source, target)`` pairs.  If omitted the layers form a chain in the
        given order.  The order of the edges into a merge layer is the order
        of its inputs (it matters for ``Concat``).
    name : str
        Model name, shown in summaries and stored in files.
    metadata : mapping, optional
        Free JSON-serialisable information (source file, framework, task).

    Raises
    ------
    ValidationError
        Duplicate names, unknown edge ends, cycles, a layer with the wrong
        number of inputs, or inconsistent shapes (the message names the layer and both shapes).

    Examples
    --------
    >>> import numpy as np
    >>> from spikebridge.ir.layers import Input, Dense, ReLU
    >>> g = AnnGraph([Input(name="x", shape=(2,)), Dense(name="fc", weight=np.eye(2)), ReLU(name="relu")])
    >>> g.shapes["fc"]
    (2,)
    """

    def __init__(
        self,
        layers: Sequence[Layer],
        edges: Sequence[tuple[str, str]] | None = None,
        *,
        name: str = "model",
        metadata: Mapping[str, Any] | None = None,
    ) -> None:
        layers = list(layers)
        if not layers:
            raise ValidationError("AnnGraph: needs at least an Input layer", attr="layers")
        for layer in layers:
            if not isinstance(layer, Layer):
                raise ValidationError(f"AnnGraph: {layer!r} is not a Layer", attr="layers")
        names = [layer.name for layer in layers]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValidationError(f"AnnGraph: duplicate layer names {dupes}", attr="layers")
        inputs = [layer.name for layer in layers if isinstance(layer, Input)]
        if len(inputs) != 1:
            raise ValidationError(f"AnnGraph: needs exactly one Input layer, found {len(inputs)}: {inputs}", attr="layers")
        if edges is None:
            edges = list(zip(names[:-1], names[1:]))
        by_name = {layer.name: layer for layer in layers}
        preds: dict[str, list[str]] = {n: [] for n in names}
        for src, dst in edges:
            for end in (src, dst):
                if end not in by_name:
                    raise ValidationError(f"AnnGraph: edge ({src!r} -> {dst!r}) names unknown layer {end!r}", attr="edges")
            preds[dst].append(src)
        for n in names:
            if isinstance(by_name[n], Merge):
                if len(preds[n]) < 2 or len(set(preds[n])) != len(preds[n]):
                    raise ValidationError(
                        f"AnnGraph: {by_name[n].type_name} layer '{n}' has inputs {preds[n]}; expected two or "
                        "more distinct layers",
                        attr="edges",
                    )
                continue
            want = 0 if isinstance(by_name[n], Input) else 1
            if len(preds[n]) != want:
                raise ValidationError(
                    f"AnnGraph: layer '{n}' has {len(preds[n])} inputs {preds[n]}; expected {want} "
                    "(only Add and Concat layers join several inputs)",
                    attr="edges",
                )
        order = self._toposort(names, preds)
        self._layers: dict[str, Layer] = {n: by_name[n] for n in order}
        self._preds = {n: tuple(preds[n]) for n in order}
        self._edges = tuple((p, n) for n in order for p in self._preds[n])
        self.name = str(name)
        self.metadata: dict[str, Any] = dict(metadata or {})
        self._shapes = self._infer_shapes()
        succ: dict[str, list[str]] = {n: [] for n in order}
        for src, dst in self._edges:
            succ[src].append(dst)
        outputs = [n for n in order if not succ[n]]
        if len(outputs) != 1:
            raise ValidationError(f"AnnGraph: needs exactly one output layer, found {outputs}", attr="edges")
        self._succ = {n: tuple(v) for n, v in succ.items()}
        self._output = outputs[0]

    @staticmethod
    def _toposort(names: list[str], preds: dict[str, list[str]]) -> list[str]:
        done: list[str] = []
        seen: set[str] = set()
        pending = list(names)
        while pending:
            progressed = False
            for n in list(pending):
                if all(p in seen for p in preds[n]):
                    done.append(n)
                    seen.add(n)
                    pending.remove(n)
                    progressed = True
            if not progressed:
                raise ValidationError(f"AnnGraph: the edges form a cycle through {pending}", attr="edges")
        return done

    def _infer_shapes(self) -> dict[str, tuple[int, ...]]:
        shapes: dict[str, tuple[int, ...]] = {}
        for n, layer in self._layers.items():
            if isinstance(layer, Merge):
                shapes[n] = tuple(layer.merge_shape([shapes[p] for p in self._preds[n]]))
                continue
            in_shape = shapes[self._preds[n][0]] if self._preds[n] else ()
            shapes[n] = tuple(layer.output_shape(in_shape))
        return shapes

    # -- mapping-like access ------------------------------------------------
    def __iter__(self) -> Iterator[Layer]:
        return iter(self._layers.values())

    def __len__(self) -> int:
        return len(self._layers)

    def __getitem__(self, name: str) -> Layer:
        try:
            return self._layers[name]
        except KeyError:
            raise KeyError(f"no layer named {name!r}; layers: {list(self._layers)}") from None

    def __contains__(self, name: object) -> bool:
        return name in self._layers

    def __repr__(self) -> str:
        return f"AnnGraph({self.name!r}, {len(self)} layers, input {self.input_shape}, output {self.output_shape})"

    @property
    def layers(self) -> tuple[Layer, ...]:
        """Layers in topological order."""
        return tuple(self._layers.values())

    @property
    def edges(self) -> tuple[tuple[str, str], ...]:
        """``(source, target)`` pairs in topological order."""
        return self._edges

    @property
    def input(self) -> Input:
        """The Input layer."""
        return next(iter(self._layers.values()))  # type: ignore[return-value]

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Per-sample input shape."""
        return self.input.shape

    @property
    def output(self) -> str:
        """Name of the output layer."""
        return self._output

    @property
    def output_shape(self) -> tuple[int, ...]:
        """Per-sample output shape."""
        return self._shapes[self._output]

    @property
    def shapes(self) -> dict[str, tuple[int, ...]]:
        """Per-sample output shape of every layer."""
        return dict(self._shapes)

    def predecessor(self, name: str) -> str | None:
        """Name of the layer feeding ``name`` (None for the Input; the first input of a merge layer)."""
        p = self._preds[name]
        return p[0] if p else None

    def predecessors(self, name: str) -> tuple[str, ...]:
        """Names of all layers feeding ``name``, in input order (empty for the Input)."""
        return self._preds[name]

    @property
    def is_chain(self) -> bool:
        """True when no layer joins several inputs (no Add or Concat): a single chain of layers."""
        return all(len(p) <= 1 for p in self._preds.values())

    def input_shape_of(self, name: str) -> tuple[int, ...]:
        """Per-sample shape entering layer ``name`` (of its first input, for a merge layer)."""
        p = self.predecessor(name)
        return self._shapes[p] if p is not None else ()

    def input_shapes_of(self, name: str) -> tuple[tuple[int, ...], ...]:
        """Per-sample shapes of all inputs of layer ``name``, in input order."""
        return tuple(self._shapes[p] for p in self._preds[name])

    def successors(self, name: str) -> tuple[str, ...]:
        """Names of the layers fed by ``name``."""
        return self._succ[name]

    def replace_layers(self, layers: Sequence[Layer]) -> "AnnGraph":
        """Return a new graph with the same edges and new layer objects (same names)."""
        return AnnGraph(layers, self._edges, name=self.name, metadata=self.metadata)

    def summary(self) -> list[LayerInfo]:
        """One :class:`LayerInfo` per layer: shape, parameter count and MACs per sample."""
        rows = []
        for n, layer in self._layers.items():
            in_shape = self.input_shape_of(n)
            rows.append(
                LayerInfo(
                    name=n,
                    type_name=layer.type_name,
                    output_shape=self._shapes[n],
                    n_params=layer.n_params(),
                    macs=layer.macs(in_shape) if in_shape else 0,
                )
            )
        return rows

    def n_params(self) -> int:
        """Total number of trainable parameters."""
        return sum(layer.n_params() for layer in self)

    def macs(self) -> int:
        """Total multiply-accumulates per sample."""
        return sum(row.macs for row in self.summary())
