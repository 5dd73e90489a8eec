"""Layer types of the framework-neutral ANN description.

Every layer is a frozen, keyword-only dataclass checked in ``__post_init__``.
Arrays use the PyTorch layout: dense weights ``(n_out, n_in)``, convolution
kernels ``(out_channels, in_channels, kh, kw)``, activations channels-first
``(C, H, W)`` per sample.  Layers only *describe* a computation; the numpy
forward pass lives in :mod:`spikebridge.ir.evaluate`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
from numpy.typing import NDArray

from ..errors import ValidationError

__all__ = [
    "Layer",
    "Input",
    "Dense",
    "Conv2d",
    "AvgPool2d",
    "MaxPool2d",
    "GlobalAvgPool2d",
    "Flatten",
    "ReLU",
    "Identity",
    "Softmax",
    "Merge",
    "Add",
    "Concat",
    "RNN",
    "LAYER_TYPES",
    "SUPPORTED_LAYERS",
]


def _pair(value: Any, what: str, layer: str, minimum: int) -> tuple[int, int]:
    pair: tuple[int, ...]
    if isinstance(value, (int, np.integer)):
        pair = (int(value), int(value))
    else:
        try:
            pair = tuple(int(v) for v in value)
        except TypeError as err:
            raise ValidationError(
                f"layer '{layer}': {what} must be an int or a pair of ints, got {value!r}", attr=what
            ) from err
    if len(pair) != 2 or min(pair) < minimum:
        raise ValidationError(
            f"layer '{layer}': {what} must be a pair of ints >= {minimum}, got {value!r}", attr=what
        )
    return pair  # type: ignore[return-value]


def _array(value: Any, what: str, layer: str, ndim: int) -> NDArray[np.float64]:
    arr = np.array(value, dtype=np.float64, copy=True)
    if arr.ndim != ndim:
        raise ValidationError(
            f"layer '{layer}': {what} must have {ndim} dimensions, got shape {arr.shape}", attr=what
        )
    bad = ~np.isfinite(arr)
    if bad.any():
        first = tuple(int(i) for i in np.argwhere(bad)[0])
        raise ValidationError(
            f"layer '{layer}': {what} contains {int(bad.sum())} non-finite value(s) (NaN or Inf), "
            f"first at index {first}; fix or retrain the model",
            attr=what,
        )
    arr.setflags(write=False)
    return arr


@dataclass(frozen=True, kw_only=True, eq=False)
class Layer:
    """Base class of all layers.

    Parameters
    ----------
    name : str
        Unique name within the graph (the user's layer name).
    """

    name: str
    #: short type name used in files and messages
    type_name: ClassVar[str] = "Layer"
    #: whether the layer has trainable parameters that conversion turns into synapses
    has_weights: ClassVar[bool] = False

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValidationError(f"{self.type_name}: name must be a non-empty string, got {self.name!r}", attr="name")

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        """Return the per-sample output shape for a per-sample ``input_shape``."""
        return tuple(input_shape)

    def n_params(self) -> int:
        """Number of trainable parameters."""
        return 0

    def macs(self, input_shape: tuple[int, ...]) -> int:
        """Multiply-accumulate operations for one sample."""
        return 0

    def replace(self, **changes: Any) -> "Layer":
        """Return a copy with ``changes`` applied (``dataclasses.replace``)."""
        return dataclasses.replace(self, **changes)

    def params(self) -> dict[str, Any]:
        """Return the layer's fields except ``name`` (arrays included)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "name"}

    def __repr__(self) -> str:
        parts = []
        for key, value in self.params().items():
            if value is None:
                continue  # an unset option (e.g. an unbounded ReLU) is the default
            if isinstance(value, np.ndarray):
                parts.append(f"{key}=<array {value.shape}>")
            else:
                parts.append(f"{key}={value!r}")
        return f"{type(self).__name__}({self.name!r}{', ' if parts else ''}{', '.join(parts)})"


@dataclass(frozen=True, kw_only=True, eq=False, repr=False)
class Input(Layer):
    """Graph input.

    Parameters
    ----------
    shape : tuple of int
        Per-sample shape, channels-first for images, e.g. ``(1, 8, 8)`` or ``(64,)``.
    """

    shape: tuple[int, ...]
    type_name: ClassVar[str] = "Input"

    def __post_init__(self) -> None:
        super().__post_init__()
        try:
            shape = tuple(int(s) for s in self.shape)
        except TypeError as err:
            raise ValidationError(f"Input '{self.name}': shape must be a tuple of ints, got {self.shape!r}", attr="shape") from err
        if not shape or min(shape) < 1:
            raise ValidationError(f"Input '{self.name}': shape must be non-empty and positive, got {self.shape!r}", attr="shape")
        object.__setattr__(self, "shape", shape)

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        return self.shape


@dataclass(frozen=True, kw_only=True, eq=False, repr=False)
class Dense(Layer):
    """Fully connected layer ``y = W x + b``.

    Parameters
    ----------
    weight : ndarray, shape (n_out, n_in)
    bias : ndarray, shape (n_out,), optional
        Zeros if omitted.
    """

    weight: NDArray[np.float64]
    bias: NDArray[np.float64] | None = None
    type_name: ClassVar[str] = "Dense"
    has_weights: ClassVar[bool] = True

    def __post_init__(self) -> None:
        super().__post_init__()
        w = _array(self.weight, "weight", self.name, 2)
        b = np.zeros(w.shape[0]) if self.bias is None else _array(self.bias, "bias", self.name, 1)
        if b.shape != (w.shape[0],):
            raise ValidationError(
                f"Dense '{self.name}': bias shape {b.shape} does not match weight shape {w.shape}; "
                f"expected ({w.shape[0]},)",
                attr="bias",
            )
        b.setflags(write=False)
        object.__setattr__(self, "weight", w)
        object.__setattr__(self, "bias", b)

    @property
    def n_in(self) -> int:
        return int(self.weight.shape[1])

    @property
    def n_out(self) -> int:
        return int(self.weight.shape[0])

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        if len(input_shape) == 2 and int(input_shape[1]) == self.n_in:
            # a sequence (T, n_in), e.g. the hidden states of an RNN: applied to every element,
            # as torch's Linear and Keras' Dense do on their last axis
            return (int(input_shape[0]), self.n_out)
        if tuple(input_shape) != (self.n_in,):
            raise ValidationError(
                f"Dense '{self.name}': weight shape {self.weight.shape} does not match input shape "
                f"{tuple(input_shape)}; expected input ({self.n_in},)"
                + ("; add a Flatten layer before it" if len(input_shape) > 1 else ""),
                attr="weight",
            )
        return (self.n_out,)

    def n_params(self) -> int:
        return int(self.weight.size + self.bias.size)  # type: ignore[union-attr]

    def macs(self, input_shape: tuple[int, ...]) -> int:
        return int(self.weight.size) * (int(input_shape[0]) if len(input_shape) == 2 else 1)


def conv_output_hw(
    hw: tuple[int, int], kernel: tuple[int, int], stride: tuple[int, int], padding: tuple[int, int]
) -> tuple[int, int]:
    """Output height and width of a convolution or pooling window (floor mode)."""
    return (
        (hw[0] + 2 * padding[0] - kernel[0]) // stride[0] + 1,
        (hw[1] + 2 * padding[1] - kernel[1]) // stride[1] + 1,
    )


def _check_chw(layer: Layer, input_shape: tuple[int, ...]) -> tuple[int, int, int]:
    if len(input_shape) != 3:
        raise ValidationError(
            f"{layer.type_name} '{layer.name}': expects a (channels, height, width) input, got shape {tuple(input_shape)}",
            attr="input_shape",
        )
    return tuple(int(s) for s in input_shape)  # type: ignore[return-value]


@dataclass(frozen=True, kw_only=True, eq=False, repr=False)
class Conv2d(Layer):
    """2-D convolution (cross-correlation, as in PyTorch), zero padding.

    Parameters
    ----------
    weight : ndarray, shape (out_channels, in_channels, kh, kw)
    bias : ndarray, shape (out_channels,), optional
    stride : int or (int, int)
    padding : int or (int, int)
        Zero padding added on both sides of each spatial dimension.
    """

    weight: NDArray[np.float64]
    bias: NDArray[np.float64] | None = None
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)
    type_name: ClassVar[str] = "Conv2d"
    has_weights: ClassVar[bool] = True

    def __post_init__(self) -> None:
        super().__post_init__()
        w = _array(self.weight, "weight", self.name, 4)
        b = np.zeros(w.shape[0]) if self.bias is None else _array(self.bias, "bias", self.name, 1)
        if b.shape != (w.shape[0],):
            raise ValidationError(
                f"Conv2d '{self.name}': bias shape {b.shape} does not match {w.shape[0]} output channels",
                attr="bias",
            )
        b.setflags(write=False)
        object.__setattr__(self, "weight", w)
        object.__setattr__(self, "bias", b)
        object.__setattr__(self, "stride", _pair(self.stride, "stride", self.name, 1))
        object.__setattr__(self, "padding", _pair(self.padding, "padding", self.name, 0))

    @property
    def kernel_size(self) -> tuple[int, int]:
        return (int(self.weight.shape[2]), int(self.weight.shape[3]))

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        c, h, w = _check_chw(self, input_shape)
        if c != self.weight.shape[1]:
            raise ValidationError(
                f"Conv2d '{self.name}': weight shape {self.weight.shape} expects {self.weight.shape[1]} input "
                f"channels, got input shape {tuple(input_shape)}",
                attr="weight",
            )
        oh, ow = conv_output_hw((h, w), self.kernel_size, self.stride, self.padding)
        if oh < 1 or ow < 1:
            raise ValidationError(
                f"Conv2d '{self.name}': kernel {self.kernel_size} does not fit input {tuple(input_shape)} "
                f"with padding {self.padding}",
                attr="weight",
            )
        return (int(self.weight.shape[0]), oh, ow)

    def n_params(self) -> int:
        return int(self.weight.size + self.bias.size)  # type: ignore[union-attr]

    def macs(self, input_shape: tuple[int, ...]) -> int:
        _, oh, ow = self.output_shape(input_shape)
        return int(self.weight.size * oh * ow)


@dataclass(frozen=True, kw_only=True, eq=False, repr=False)
class _Pool2d(Layer):
    kernel_size: tuple[int, int]
    stride: tuple[int, int] | None = None
    padding: tuple[int, int] = (0, 0)

    def __post_init__(self) -> None:
        super().__post_init__()
        k = _pair(self.kernel_size, "kernel_size", self.name, 1)
        object.__setattr__(self, "kernel_size", k)
        s = k if self.stride is None else _pair(self.stride, "stride", self.name, 1)
        object.__setattr__(self, "stride", s)
        object.__setattr__(self, "padding", _pair(self.padding, "padding", self.name, 0))

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        c, h, w = _check_chw(self, input_shape)
        oh, ow = conv_output_hw((h, w), self.kernel_size, self.stride, self.padding)  # type: ignore[arg-type]
        if oh < 1 or ow < 1:
            raise ValidationError(
                f"{self.type_name} '{self.name}': window {self.kernel_size} does not fit input {tuple(input_shape)}",
                attr="kernel_size",
            )
        return (c, oh, ow)


@dataclass(frozen=True, kw_only=True, eq=False, repr=False)
class AvgPool2d(_Pool2d):
    """Average pooling; zero padding counts in the average (PyTorch ``count_include_pad=True``).

    Parameters
    ----------
    kernel_size : int or (int, int)
    stride : int or (int, int), optional
        Defaults to ``kernel_size``.
    padding : int or (int, int)
    """

    type_name: ClassVar[str] = "AvgPool2d"

    def macs(self, input_shape: tuple[int, ...]) -> int:
        c, oh, ow = self.output_shape(input_shape)
        return int(c * oh * ow * self.kernel_size[0] * self.kernel_size[1])


@dataclass(frozen=True, kw_only=True, eq=False, repr=False)
class MaxPool2d(_Pool2d):
    """Max pooling (padding with -inf, as in PyTorch).

    Parameters
    ----------
    kernel_size : int or (int, int)
    stride : int or (int, int), optional
        Defaults to ``kernel_size``.
    padding : int or (int, int)
    """

    type_name: ClassVar[str] = "MaxPool2d"


@dataclass(frozen=True, kw_only=True, eq=False, repr=False)
class GlobalAvgPool2d(Layer):
    """Mean over the spatial dimensions: ``(C, H, W) -> (C,)``."""

    type_name: ClassVar[str] = "GlobalAvgPool2d"

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        c, _, _ = _check_chw(self, input_shape)
        return (c,)

    def macs(self, input_shape: tuple[int, ...]) -> int:
        return int(np.prod(input_shape))


@dataclass(frozen=True, kw_only=True, eq=False, repr=False)
class Flatten(Layer):
    """Flatten to 1-D in C order of the channels-first shape (PyTorch's ``nn.Flatten``)."""

    type_name: ClassVar[str] = "Flatten"

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        return (int(np.prod(input_shape)),)


@dataclass(frozen=True, kw_only=True, eq=False, repr=False)
class ReLU(Layer):
    """Rectified linear unit ``max(x, 0)``, optionally clipped: ``min(max(x, 0), max_value)``.

    Parameters
    ----------
    max_value : float, optional
        Upper bound of the output (ReLU6 is ``max_value=6``; a QCFS activation
        trained by :mod:`spikebridge.learning.qcfs` imports with its clip level λ).
        None (default) means no bound.  Conversion uses it as the layer's scale:
        one spike per time step stands for ``max_value``.
    """

    max_value: float | None = None
    type_name: ClassVar[str] = "ReLU"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.max_value is None:
            return
        if isinstance(self.max_value, bool):
            raise ValidationError(f"ReLU '{self.name}': max_value must be a number, got {self.max_value!r}", attr="max_value")
        try:
            value = float(self.max_value)
        except (TypeError, ValueError) as err:
            raise ValidationError(
                f"ReLU '{self.name}': max_value must be a number, got {self.max_value!r}", attr="max_value"
            ) from err
        if not (np.isfinite(value) and value > 0):
            raise ValidationError(
                f"ReLU '{self.name}': max_value must be finite and > 0 (None for no bound), got {self.max_value!r}",
                attr="max_value",
            )
        object.__setattr__(self, "max_value", value)


@dataclass(frozen=True, kw_only=True, eq=False, repr=False)
class Identity(Layer):
    """No-op (Dropout at inference, ``Identity``, linear activation)."""

    type_name: ClassVar[str] = "Identity"


@dataclass(frozen=True, kw_only=True, eq=False, repr=False)
class Softmax(Layer):
    """Softmax over the last axis; argmax-preserving, so conversion drops it."""

    type_name: ClassVar[str] = "Softmax"


@dataclass(frozen=True, kw_only=True, eq=False, repr=False)
class Merge(Layer):
    """Base class of layers with two or more inputs (the graph's joins).

    A merge layer's inputs are its predecessors in the order of the graph's
    edges; :meth:`merge_shape` replaces :meth:`Layer.output_shape`.
    """

    type_name: ClassVar[str] = "Merge"

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        return self.merge_shape([tuple(input_shape)])

    def merge_shape(self, input_shapes: "list[tuple[int, ...]]") -> tuple[int, ...]:
        """Per-sample output shape for the per-sample shapes of all inputs, in edge order."""
        raise NotImplementedError


@dataclass(frozen=True, kw_only=True, eq=False, repr=False)
class Add(Merge):
    """Element-wise sum of two or more inputs of equal shape (a residual connection).

    A projection shortcut (1×1 convolution + BatchNorm) is an ordinary
    ``Conv2d`` on one of the input paths, with the BatchNorm folded into it.
    """

    type_name: ClassVar[str] = "Add"

    def merge_shape(self, input_shapes: "list[tuple[int, ...]]") -> tuple[int, ...]:
        shapes = [tuple(int(v) for v in s) for s in input_shapes]
        if len(shapes) < 2:
            raise ValidationError(f"Add '{self.name}': needs at least two inputs, got {len(shapes)}", attr="inputs")
        if any(s != shapes[0] for s in shapes):
            raise ValidationError(
                f"Add '{self.name}': inputs have different shapes {shapes}; a residual sum needs equal shapes "
                "(a projection shortcut must match the main path's channels and stride)",
                attr="inputs",
            )
        return shapes[0]


@dataclass(frozen=True, kw_only=True, eq=False, repr=False)
class Concat(Merge):
    """Concatenation of two or more inputs along a per-sample axis.

    Parameters
    ----------
    axis : int
        Axis of the per-sample shape (no batch axis): 0 is the channel axis of a
        ``(C, H, W)`` activation and the feature axis of a vector.  Negative
        values count from the end.
    """

    axis: int = 0
    type_name: ClassVar[str] = "Concat"

    def __post_init__(self) -> None:
        super().__post_init__()
        if isinstance(self.axis, bool) or not isinstance(self.axis, (int, np.integer)):
            raise ValidationError(f"Concat '{self.name}': axis must be an int, got {self.axis!r}", attr="axis")
        object.__setattr__(self, "axis", int(self.axis))

    def resolved_axis(self, ndim: int) -> int:
        """``axis`` as a non-negative index into a per-sample shape of ``ndim`` dimensions."""
        ax = self.axis + ndim if self.axis < 0 else self.axis
        if not 0 <= ax < ndim:
            raise ValidationError(
                f"Concat '{self.name}': axis {self.axis} is out of range for inputs with {ndim} dimension(s)",
                attr="axis",
            )
        return ax

    def merge_shape(self, input_shapes: "list[tuple[int, ...]]") -> tuple[int, ...]:
        shapes = [tuple(int(v) for v in s) for s in input_shapes]
        if len(shapes) < 2:
            raise ValidationError(f"Concat '{self.name}': needs at least two inputs, got {len(shapes)}", attr="inputs")
        ndim = len(shapes[0])
        ax = self.resolved_axis(ndim)
        rest = [s[:ax] + s[ax + 1 :] for s in shapes]
        if any(len(s) != ndim for s in shapes) or any(r != rest[0] for r in rest):
            raise ValidationError(
                f"Concat '{self.name}': inputs {shapes} differ outside the concatenation axis {self.axis}",
                attr="inputs",
            )
        return shapes[0][:ax] + (sum(s[ax] for s in shapes),) + shapes[0][ax + 1 :]


@dataclass(frozen=True, kw_only=True, eq=False, repr=False)
class RNN(Layer):
    """Elman recurrent layer with ReLU: ``h_t = max(W_ih x_t + W_hh h_{t-1} + b, 0)``, ``h_0 = 0``.

    The input is a sequence of ``T`` elements of ``n_in`` values, shape ``(T, n_in)``
    (time first, per sample); PyTorch's ``nn.RNN(nonlinearity="relu")`` (one layer of
    it, ``b = b_ih + b_hh``), ONNX ``RNN`` with ``Relu`` and Keras ``SimpleRNN(activation="relu")``
    import as this.  Only the ReLU form exists: a tanh or sigmoid RNN, an LSTM or a GRU has
    no rate-coded spiking form (see :mod:`spikebridge.conversion.sequence`).

    Parameters
    ----------
    weight_ih : ndarray, shape (hidden, n_in)
        Input weights ``W_ih``.
    weight_hh : ndarray, shape (hidden, hidden)
        Recurrent weights ``W_hh`` (row: receiving unit, column: sending unit).
    bias : ndarray, shape (hidden,), optional
        Zeros if omitted.
    return_sequences : bool
        True: the output is every hidden state, shape ``(T, hidden)``; False: the last
        one, shape ``(hidden,)`` (Keras' flag; PyTorch's ``output[:, -1]``).
    """

    weight_ih: NDArray[np.float64]
    weight_hh: NDArray[np.float64]
    bias: NDArray[np.float64] | None = None
    return_sequences: bool = True
    type_name: ClassVar[str] = "RNN"
    has_weights: ClassVar[bool] = True

    def __post_init__(self) -> None:
        super().__post_init__()
        w_ih = _array(self.weight_ih, "weight_ih", self.name, 2)
        w_hh = _array(self.weight_hh, "weight_hh", self.name, 2)
        h = w_ih.shape[0]
        if w_hh.shape != (h, h):
            raise ValidationError(
                f"RNN '{self.name}': weight_hh has shape {w_hh.shape}; expected ({h}, {h}) for {h} hidden units "
                f"(weight_ih {w_ih.shape})",
                attr="weight_hh",
            )
        b = np.zeros(h) if self.bias is None else _array(self.bias, "bias", self.name, 1)
        if b.shape != (h,):
            raise ValidationError(f"RNN '{self.name}': bias shape {b.shape} does not match {h} hidden units", attr="bias")
        b.setflags(write=False)
        if not isinstance(self.return_sequences, (bool, np.bool_)):
            raise ValidationError(
                f"RNN '{self.name}': return_sequences must be True or False, got {self.return_sequences!r}",
                attr="return_sequences",
            )
        object.__setattr__(self, "weight_ih", w_ih)
        object.__setattr__(self, "weight_hh", w_hh)
        object.__setattr__(self, "bias", b)
        object.__setattr__(self, "return_sequences", bool(self.return_sequences))

    @property
    def n_in(self) -> int:
        return int(self.weight_ih.shape[1])

    @property
    def hidden(self) -> int:
        return int(self.weight_ih.shape[0])

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        if len(input_shape) != 2 or int(input_shape[1]) != self.n_in:
            raise ValidationError(
                f"RNN '{self.name}': expects a sequence of shape (T, {self.n_in}) (time first, per sample), "
                f"got input shape {tuple(input_shape)}",
                attr="input_shape",
            )
        return (int(input_shape[0]), self.hidden) if self.return_sequences else (self.hidden,)

    def n_params(self) -> int:
        return int(self.weight_ih.size + self.weight_hh.size + self.bias.size)  # type: ignore[union-attr]

    def macs(self, input_shape: tuple[int, ...]) -> int:
        return int(input_shape[0]) * int(self.weight_ih.size + self.weight_hh.size) if len(input_shape) == 2 else 0


#: registry of layer classes by type name (used by file readers)
LAYER_TYPES: dict[str, type[Layer]] = {
    cls.type_name: cls
    for cls in (Input, Dense, Conv2d, AvgPool2d, MaxPool2d, GlobalAvgPool2d, Flatten, ReLU, Identity, Softmax, Add, Concat, RNN)
}

#: human-readable list for error messages
SUPPORTED_LAYERS: tuple[str, ...] = tuple(sorted(LAYER_TYPES))

