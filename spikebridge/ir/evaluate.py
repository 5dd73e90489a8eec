"""Reference numpy forward pass of an :class:`~spikebridge.ir.graph.AnnGraph`.

This is the oracle for every importer test and every ANN/SNN comparison, so
it is written for clarity and exactness (float64), not speed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal, cast, overload

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ..errors import ValidationError
from .graph import AnnGraph
from .layers import (
    Add,
    AvgPool2d,
    Concat,
    Conv2d,
    Dense,
    Flatten,
    GlobalAvgPool2d,
    Identity,
    Input,
    Layer,
    MaxPool2d,
    Merge,
    ReLU,
    RNN,
    Softmax,
    conv_output_hw,
)

__all__ = ["evaluate", "forward_layer", "forward_merge", "im2col", "predict_classes"]

Array = NDArray[np.float64]


def im2col(
    x: Array, kernel: tuple[int, int], stride: tuple[int, int], padding: tuple[int, int], pad_value: float = 0.0
) -> Array:
    """Extract sliding windows.

    Parameters
    ----------
    x : ndarray, shape (n_samples, C, H, W)
    kernel, stride, padding : (int, int)
    pad_value : float
        Value used for padding (0 for convolution/average, -inf for max).

    Returns
    -------
    ndarray, shape (n_samples, C, kh, kw, OH, OW)
    """
    n, c, h, w = x.shape
    ph, pw = padding
    if ph or pw:
        x = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)), constant_values=pad_value)
    oh, ow = conv_output_hw((h, w), kernel, stride, padding)
    kh, kw = kernel
    sh, sw = stride
    cols = np.empty((n, c, kh, kw, oh, ow), dtype=x.dtype)
    for i in range(kh):
        for j in range(kw):
            cols[:, :, i, j] = x[:, :, i : i + sh * oh : sh, j : j + sw * ow : sw]
    return cols


def _dense(layer: Dense, x: Array) -> Array:
    return x @ layer.weight.T + cast(Array, layer.bias)  # never None after Dense.__post_init__


def _conv(layer: Conv2d, x: Array) -> Array:
    cols = im2col(x, layer.kernel_size, layer.stride, layer.padding)
    out = np.einsum("ncijhw,ocij->nohw", cols, layer.weight, optimize=True)
    return out + layer.bias[None, :, None, None]  # type: ignore[index]


def _avgpool(layer: AvgPool2d, x: Array) -> Array:
    cols = im2col(x, layer.kernel_size, layer.stride, layer.padding)  # type: ignore[arg-type]
    return cols.mean(axis=(2, 3))


def _maxpool(layer: MaxPool2d, x: Array) -> Array:
    cols = im2col(x, layer.kernel_size, layer.stride, layer.padding, pad_value=-np.inf)  # type: ignore[arg-type]
    return cols.max(axis=(2, 3))


def _rnn(layer: RNN, x: Array) -> Array:
    """``h_t = relu(W_ih x_t + W_hh h_{t-1} + b)`` from ``h_0 = 0``; ``x`` of shape (n, T, n_in)."""
    drive = x @ layer.weight_ih.T + cast(Array, layer.bias)  # (n, T, hidden), all elements at once
    h = np.zeros((x.shape[0], layer.hidden))
    out = np.empty_like(drive)
    for t in range(x.shape[1]):
        h = np.maximum(drive[:, t] + h @ layer.weight_hh.T, 0.0)
        out[:, t] = h
    return out if layer.return_sequences else out[:, -1]


def _softmax(layer: Softmax, x: Array) -> Array:
    z = x - x.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


_FORWARD: dict[type[Layer], Callable[..., Array]] = {
    Dense: _dense,
    Conv2d: _conv,
    AvgPool2d: _avgpool,
    MaxPool2d: _maxpool,
    GlobalAvgPool2d: lambda layer, x: x.mean(axis=(2, 3)),
    Flatten: lambda layer, x: x.reshape(x.shape[0], -1),
    ReLU: lambda layer, x: np.maximum(x, 0.0) if layer.max_value is None else np.clip(x, 0.0, layer.max_value),
    Identity: lambda layer, x: x,
    Softmax: _softmax,
    RNN: _rnn,
}


def forward_merge(layer: Merge, xs: list[Array]) -> Array:
    """Apply a merge layer to its inputs (batches, in input order)."""
    if isinstance(layer, Add):
        out = xs[0].copy()
        for x in xs[1:]:
            out += x
        return out
    if isinstance(layer, Concat):
        return np.concatenate(xs, axis=1 + layer.resolved_axis(xs[0].ndim - 1))
    raise ValidationError(f"no forward pass for layer '{layer.name}' of type {type(layer).__name__}")


def forward_layer(layer: Layer, x: Array) -> Array:
    """Apply one layer to a batch ``x`` of shape ``(n_samples, *input_shape)``."""
    try:
        fn = _FORWARD[type(layer)]
    except KeyError:
        raise ValidationError(f"no forward pass for layer '{layer.name}' of type {type(layer).__name__}") from None
    return fn(layer, x)


@overload
def evaluate(
    graph: AnnGraph, x: ArrayLike, *, return_all: Literal[False] = False, batch_size: int = 1024
) -> Array: ...
@overload
def evaluate(graph: AnnGraph, x: ArrayLike, *, return_all: Literal[True], batch_size: int = 1024) -> dict[str, Array]: ...
@overload
def evaluate(
    graph: AnnGraph, x: ArrayLike, *, return_all: bool, batch_size: int = 1024
) -> Array | dict[str, Array]: ...


def evaluate(
    graph: AnnGraph, x: ArrayLike, *, return_all: bool = False, batch_size: int = 1024
) -> Array | dict[str, Array]:
    """Run the ANN on a batch of inputs in float64.

    Parameters
    ----------
    graph : AnnGraph
    x : array_like, shape (n_samples, *graph.input_shape)
        A single sample of shape ``graph.input_shape`` is accepted too and
        treated as a batch of one.
    return_all : bool
        If True return every layer's output, keyed by layer name (the Input
        layer maps to ``x`` itself).
    batch_size : int
        Samples per chunk, to bound memory of im2col on large inputs.

    Returns
    -------
    ndarray or dict of str to ndarray
        Output of shape ``(n_samples, *graph.output_shape)``, or all layers' outputs.

    Raises
    ------
    ValidationError
        If ``x`` does not have the graph's input shape or contains NaN/Inf.

    Examples
    --------
    >>> import numpy as np
    >>> from spikebridge.ir.layers import Input, Dense, ReLU
    >>> g = AnnGraph([Input(name="x", shape=(2,)), Dense(name="fc", weight=[[1., -1.], [0., 2.]]), ReLU(name="r")])
    >>> evaluate(g, np.array([[1.0, 2.0]]))
    array([[0., 4.]])
    """
    arr = np.asarray(x, dtype=np.float64)
    shape = graph.input_shape
    if arr.shape == shape:
        arr = arr[None]
    if arr.shape[1:] != shape:
        if arr.ndim >= 1 and arr.shape[1:] and int(np.prod(arr.shape[1:])) == int(np.prod(shape)):
            arr = arr.reshape((arr.shape[0],) + shape)
        else:
            raise ValidationError(
                f"input of shape {arr.shape} does not match model '{graph.name}' input shape {shape}; "
                f"expected (n_samples, {', '.join(map(str, shape))})",
                attr="x",
            )
    if not np.isfinite(arr).all():
        raise ValidationError("input contains NaN or Inf values", attr="x")
    chunks: list[dict[str, Array]] = []
    for start in range(0, max(arr.shape[0], 1), batch_size):
        xb = arr[start : start + batch_size]
        acts: dict[str, Array] = {}
        for layer in graph:
            if isinstance(layer, Input):
                acts[layer.name] = xb
                continue
            if isinstance(layer, Merge):
                acts[layer.name] = forward_merge(layer, [acts[p] for p in graph.predecessors(layer.name)])
                continue
            prev = graph.predecessor(layer.name)
            acts[layer.name] = forward_layer(layer, acts[prev])  # type: ignore[index]
        if not return_all:
            acts = {graph.output: acts[graph.output]}
        chunks.append(acts)
    merged = {k: np.concatenate([c[k] for c in chunks], axis=0) for k in chunks[0]}
    return merged if return_all else merged[graph.output]


def predict_classes(outputs: ArrayLike) -> NDArray[np.int64]:
    """Class index per sample from classifier outputs.

    Parameters
    ----------
    outputs : array_like, shape (n_samples, n_out) or (n_samples, *shape)
        ANN outputs or decoded SNN outputs.

    Returns
    -------
    ndarray of int64, shape (n_samples,)
        ``argmax`` over the outputs; with a single output (a binary classifier
        ending in its logit, e.g. scikit-learn's logistic ``MLPClassifier``)
        class 1 where the output is > 0 (sigmoid > 0.5), else class 0.

    Examples
    --------
    >>> predict_classes([[0.2, 0.9], [1.0, -1.0]]).tolist(), predict_classes([[-0.3], [0.4]]).tolist()
    ([1, 0], [0, 1])
    """
    out = np.asarray(outputs, dtype=np.float64)
    out = out.reshape(out.shape[0], -1)
    if out.shape[1] == 1:
        return (out[:, 0] > 0).astype(np.int64)
    return np.argmax(out, axis=1).astype(np.int64)
