"""Helpers shared by the importers: incremental graph building, BatchNorm folding, error wrapping."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from ..errors import UnsupportedLayerError, ValidationError
from ..ir.graph import AnnGraph
from ..ir.layers import Conv2d, Dense, Input, Layer, Merge

__all__ = ["GraphBuilder", "fold_batchnorm", "refuse_unsupported"]

#: operators that only move or reshape data; when a model has several unsupported operators, these
#: are listed after the ones that compute something (an exporter's Transpose around an LSTM is not
#: the problem, the LSTM is)
LAYOUT_OPS = frozenset({
    "Transpose", "Reshape", "Squeeze", "Unsqueeze", "Flatten", "Concat", "Split", "Slice", "Gather", "Cast",
    "Shape", "Pad", "Expand", "Tile", "Identity", "ConstantOfShape", "Range", "Where", "Permute", "Unflatten",
    "ZeroPadding2D", "Cropping2D", "RepeatVector", "Lambda", "Size",
})


def refuse_unsupported(
    found: "list[tuple[str, str]]", supported: "tuple[str, ...]", source: str, hint: str | None = None
) -> None:
    """Raise one :class:`UnsupportedLayerError` listing every unsupported layer of a model (no-op if none).

    Parameters
    ----------
    found : list of (name, type)
        Unsupported layers in model order.
    supported : tuple of str
    source : str
        ``"ONNX"``, ``"PyTorch"``, ``"Keras"``.
    hint : str, optional

    The most specific come first: layers that compute (``LSTM``) before those
    that only move data (``Transpose``, see :data:`LAYOUT_OPS`), model order
    otherwise.
    """
    if not found:
        return
    ranked = sorted(found, key=lambda item: item[1].split("(")[0] in LAYOUT_OPS)  # stable: model order kept
    (name, kind), *others = ranked
    raise UnsupportedLayerError(name, kind, supported, source=source, hint=hint, others=others)


def fold_batchnorm(
    layer: Dense | Conv2d,
    *,
    gamma: ArrayLike | None,
    beta: ArrayLike | None,
    mean: ArrayLike,
    var: ArrayLike,
    eps: float,
    bn_name: str,
) -> Dense | Conv2d:
    """Fold inference-time batch normalisation into the preceding weighted layer.

    .. math:: y = \\gamma \\frac{W x + b - \\mu}{\\sqrt{\\sigma^2 + \\epsilon}} + \\beta
              = (s W) x + s (b - \\mu) + \\beta, \\quad s = \\gamma / \\sqrt{\\sigma^2 + \\epsilon}

    Parameters
    ----------
    layer : Dense or Conv2d
        The layer whose outputs the batch norm normalises (one statistic per output unit/channel).
    gamma, beta : array_like, shape (n_out,), optional
        Scale and shift (1 and 0 when the batch norm is not affine).
    mean, var : array_like, shape (n_out,)
        Running (inference) mean and variance.
    eps : float
        Variance epsilon.
    bn_name : str
        Name of the batch-norm layer, for messages.

    Returns
    -------
    Dense or Conv2d
        A copy of ``layer`` with folded weight and bias (same name).
    """
    n_out = layer.weight.shape[0]
    arrays = {}
    for key, value, default in (("gamma", gamma, 1.0), ("beta", beta, 0.0), ("mean", mean, None), ("var", var, None)):
        arr = np.full(n_out, default) if value is None else np.asarray(value, dtype=np.float64).reshape(-1)
        if arr.shape != (n_out,):
            raise ValidationError(
                f"BatchNorm '{bn_name}': {key} has shape {arr.shape} but the preceding layer '{layer.name}' "
                f"has {n_out} outputs; expected ({n_out},)",
                attr=key,
            )
        if not np.all(np.isfinite(arr)):
            raise ValidationError(f"BatchNorm '{bn_name}': {key} contains NaN or Inf; fix or retrain the model", attr=key)
        arrays[key] = arr
    if np.any(arrays["var"] + eps <= 0):
        raise ValidationError(f"BatchNorm '{bn_name}': running variance + eps must be > 0", attr="var")
    scale = arrays["gamma"] / np.sqrt(arrays["var"] + eps)
    weight = layer.weight * scale.reshape((-1,) + (1,) * (layer.weight.ndim - 1))
    bias = (layer.bias - arrays["mean"]) * scale + arrays["beta"]  # type: ignore[operator]
    return layer.replace(weight=weight, bias=bias)  # type: ignore[return-value]


class GraphBuilder:
    """Build an :class:`AnnGraph` one layer at a time, checking shapes as it goes.

    Layers attach to the *current* layer (the last one added, or the one
    chosen with :meth:`select`), so a chain needs no bookkeeping; a branching
    model selects a branch's source before adding to it and joins branches
    with ``add(Add | Concat, name, inputs=[...])``.

    Every error raised while building names the source (file or object) and the layer,
    so a user can tell which file and which layer is at fault.

    Parameters
    ----------
    source : str
        Description of the model for messages (``"ONNX file 'm.onnx'"``).
    """

    def __init__(self, source: str) -> None:
        self.source = source
        self.layers: list[Layer] = []
        self.shapes: list[tuple[int, ...]] = []
        #: names of each layer's inputs (parallel to ``layers``)
        self.inputs: list[tuple[str, ...]] = []
        #: index of the current layer (what the next ``add`` attaches to)
        self.cursor = -1
        #: names of batch-norm layers folded into the preceding layer (bn name -> layer name)
        self.folded: dict[str, str] = {}

    # -- helpers ----------------------------------------------------------------
    def _wrap(self, err: ValidationError) -> ValidationError:
        return ValidationError(f"{self.source}: {err}", attr=err.attr, obj=err.obj)

    def unique(self, name: str) -> str:
        """Return ``name``, suffixed if already taken."""
        taken = {layer.name for layer in self.layers}
        name = str(name) or "layer"
        if name not in taken:
            return name
        k = 1
        while f"{name}_{k}" in taken:
            k += 1
        return f"{name}_{k}"

    @property
    def shape(self) -> tuple[int, ...]:
        """Per-sample shape of the current tensor (the current layer's output)."""
        if not self.shapes:
            raise ValidationError(f"{self.source}: no input layer yet", attr="input_shape")
        return self.shapes[self.cursor]

    @property
    def last(self) -> Layer | None:
        """The current layer (the most recently added one, unless :meth:`select` chose another)."""
        return self.layers[self.cursor] if self.layers else None

    def _index(self, name: str) -> int:
        for k, layer in enumerate(self.layers):
            if layer.name == name:
                return k
        raise ValidationError(f"{self.source}: no layer named '{name}' yet", attr="inputs")

    def select(self, name: str) -> None:
        """Make layer ``name`` the current one: the next :meth:`add` attaches to it."""
        self.cursor = self._index(name)

    def shape_of(self, name: str) -> tuple[int, ...]:
        """Per-sample output shape of layer ``name``."""
        return self.shapes[self._index(name)]

    # -- building ---------------------------------------------------------------
    def input(self, shape: tuple[int, ...], name: str = "input") -> Input:
        """Add the Input layer (must be first)."""
        try:
            layer = Input(name=name, shape=tuple(shape))
        except ValidationError as err:
            raise self._wrap(err) from err
        self._append(layer, layer.shape, ())
        return layer

    def _append(self, layer: Layer, shape: tuple[int, ...], inputs: tuple[str, ...]) -> None:
        self.layers.append(layer)
        self.shapes.append(tuple(shape))
        self.inputs.append(inputs)
        self.cursor = len(self.layers) - 1

    def add(self, cls: type[Layer], name: str, *, inputs: Sequence[str] | None = None, **kwargs: Any) -> Layer:
        """Create ``cls(name=..., **kwargs)``, check it against its input shape(s) and append it.

        ``inputs`` names the layers feeding it (default: the current layer);
        a merge layer (Add, Concat) needs two or more.  The new layer becomes
        the current one.
        """
        srcs = tuple(inputs) if inputs is not None else (self.layers[self.cursor].name,)
        try:
            layer = cls(name=self.unique(name), **kwargs)
            shapes = [self.shape_of(s) for s in srcs]
            out = layer.merge_shape(shapes) if isinstance(layer, Merge) else layer.output_shape(shapes[0])
        except ValidationError as err:
            raise self._wrap(err) from err
        self._append(layer, out, srcs)
        return layer

    def add_bias(self, value: ArrayLike, node: str) -> None:
        """Add a constant to the bias of the last (Dense/Conv2d) layer, e.g. ONNX ``MatMul`` + ``Add``."""
        last = self.last
        if not isinstance(last, (Dense, Conv2d)):
            raise UnsupportedLayerError(
                node, "Add", ("Add of a constant bias directly after MatMul/Gemm/Conv",), source=self.source,
                hint="an Add is only supported as the bias of the preceding Dense/Conv layer",
            )
        arr = np.asarray(value, dtype=np.float64)
        n_out = last.weight.shape[0]
        try:
            vec = np.broadcast_to(arr.reshape(-1) if arr.size == n_out else arr, (n_out,)) if arr.size in (1, n_out) else None
        except ValueError:
            vec = None
        if vec is None:
            raise ValidationError(
                f"{self.source}: Add '{node}': constant of shape {arr.shape} cannot be the bias of layer "
                f"'{last.name}' with {n_out} outputs; expected ({n_out},) or a scalar",
                attr="bias",
            )
        self.replace_last(last.replace(bias=last.bias + vec))  # type: ignore[operator]

    def replace_last(self, layer: Layer) -> None:
        """Replace the current layer (same inputs), re-checking its shape."""
        k = self.cursor if self.cursor >= 0 else len(self.layers) + self.cursor
        try:
            out = layer.output_shape(self.shape_of(self.inputs[k][0]))
        except ValidationError as err:
            raise self._wrap(err) from err
        self.layers[k] = layer
        self.shapes[k] = tuple(out)

    def fold_batchnorm(
        self,
        bn_name: str,
        *,
        gamma: ArrayLike | None,
        beta: ArrayLike | None,
        mean: ArrayLike,
        var: ArrayLike,
        eps: float,
        bn_type: str = "BatchNorm",
        supported: tuple[str, ...] = ("BatchNorm directly after a Linear/Dense or Conv2d layer",),
    ) -> None:
        """Fold a batch norm into the last layer, which must be a Dense or Conv2d."""
        last = self.last
        if not isinstance(last, (Dense, Conv2d)):
            raise UnsupportedLayerError(
                bn_name, bn_type, supported, source=self.source,
                hint=(
                    "batch normalisation is folded into the weights of the layer directly before it; here it "
                    f"follows {type(last).__name__ if last else 'nothing'} '{last.name if last else ''}'. "
                    "Move it directly after a Linear/Dense/Conv layer (before the activation)"
                ),
            )
        try:
            folded = fold_batchnorm(last, gamma=gamma, beta=beta, mean=mean, var=var, eps=eps, bn_name=bn_name)
        except ValidationError as err:
            raise self._wrap(err) from err
        self.replace_last(folded)
        self.folded[bn_name] = last.name

    def build(self, name: str, metadata: Mapping[str, Any]) -> AnnGraph:
        """Return the finished graph."""
        meta = dict(metadata)
        if self.folded:
            meta["folded_batchnorm"] = dict(self.folded)
        try:
            edges = [(src, layer.name) for layer, srcs in zip(self.layers, self.inputs) for src in srcs]
            return AnnGraph(self.layers, edges, name=name, metadata=meta)
        except ValidationError as err:
            raise self._wrap(err) from err

