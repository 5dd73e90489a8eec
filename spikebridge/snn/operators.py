"""Linear layers as sparse matrices on flattened per-sample activations.

Conversion composes every run of linear layers between two activation
boundaries (ReLU, pooling populations, the output) into one sparse matrix,
so Dense, Conv2d, AvgPool2d, GlobalAvgPool2d, Flatten and Identity all become
one synaptic projection.  Indices follow the C order of the channels-first
shape, the same order as ``numpy.reshape`` and PyTorch's ``Flatten``.
"""

from __future__ import annotations

from typing import TypeAlias, cast

import numpy as np
import scipy.sparse as sp
from numpy.typing import NDArray

from ..errors import ValidationError
from ..ir.layers import (
    AvgPool2d,
    Conv2d,
    Dense,
    Flatten,
    GlobalAvgPool2d,
    Identity,
    Layer,
    conv_output_hw,
)

__all__ = ["linear_operator", "conv_operator", "pool_operator", "is_linear"]

Sparse: TypeAlias = sp.csr_matrix

LINEAR_TYPES = (Dense, Conv2d, AvgPool2d, GlobalAvgPool2d, Flatten, Identity)


def is_linear(layer: Layer) -> bool:
    """True for layers that conversion folds into a projection."""
    return isinstance(layer, LINEAR_TYPES)


def _window_indices(
    in_shape: tuple[int, int, int],
    kernel: tuple[int, int],
    stride: tuple[int, int],
    padding: tuple[int, int],
) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.int64], NDArray[np.bool_], int, int]:
    """Input row/col of every (kernel i, kernel j, out y, out x) and a validity mask."""
    _, h, w = in_shape
    oh, ow = conv_output_hw((h, w), kernel, stride, padding)
    i, j, y, x = np.meshgrid(
        np.arange(kernel[0]), np.arange(kernel[1]), np.arange(oh), np.arange(ow), indexing="ij"
    )
    row = y * stride[0] - padding[0] + i
    col = x * stride[1] - padding[1] + j
    valid = (row >= 0) & (row < h) & (col >= 0) & (col < w)
    return row, col, y * ow + x, valid, oh, ow


def conv_operator(
    weight: NDArray[np.float64], in_shape: tuple[int, int, int], stride: tuple[int, int], padding: tuple[int, int]
) -> Sparse:
    """Convolution as a sparse matrix.

    Parameters
    ----------
    weight : ndarray, shape (O, C, kh, kw)
    in_shape : (C, H, W)
    stride, padding : (int, int)

    Returns
    -------
    scipy.sparse.csr_matrix, shape (O*OH*OW, C*H*W)
        Zero padding simply drops the synapses that would start outside the image.
    """
    o_n, c_n, kh, kw = weight.shape
    c, h, w = in_shape
    row, col, out_pos, valid, oh, ow = _window_indices(in_shape, (kh, kw), stride, padding)
    # broadcast (O, C, kh, kw, OH, OW)
    o = np.arange(o_n)[:, None, None, None, None, None]
    ci = np.arange(c_n)[None, :, None, None, None, None]
    shape6 = (o_n, c_n, kh, kw, oh, ow)
    mask = np.broadcast_to(valid[None, None], shape6)
    post = np.broadcast_to(o * (oh * ow) + out_pos[None, None], shape6)[mask]
    pre = np.broadcast_to(ci * (h * w) + (row * w + col)[None, None], shape6)[mask]
    wts = np.broadcast_to(weight[:, :, :, :, None, None], shape6)[mask]
    return sp.csr_matrix((wts, (post, pre)), shape=(o_n * oh * ow, c * h * w))


def pool_operator(
    in_shape: tuple[int, int, int], kernel: tuple[int, int], stride: tuple[int, int], padding: tuple[int, int]
) -> Sparse:
    """Average pooling (padding counted in the average) as a sparse matrix, shape (C*OH*OW, C*H*W)."""
    c, h, w = in_shape
    row, col, out_pos, valid, oh, ow = _window_indices(in_shape, kernel, stride, padding)
    ch = np.arange(c)[:, None, None, None, None]
    shape5 = (c,) + valid.shape
    mask = np.broadcast_to(valid[None], shape5)
    post = np.broadcast_to(ch * (oh * ow) + out_pos[None], shape5)[mask]
    pre = np.broadcast_to(ch * (h * w) + (row * w + col)[None], shape5)[mask]
    wts = np.full(post.shape, 1.0 / (kernel[0] * kernel[1]))
    return sp.csr_matrix((wts, (post, pre)), shape=(c * oh * ow, c * h * w))


def linear_operator(layer: Layer, in_shape: tuple[int, ...]) -> tuple[Sparse | None, NDArray[np.float64] | None]:
    """Return ``(matrix, bias)`` of a linear layer on flattened activations.

    ``matrix`` is None for index-preserving layers (Flatten, Identity);
    ``bias`` is None when the layer has none.

    Raises
    ------
    ValidationError
        If ``layer`` is not linear.
    """
    if isinstance(layer, (Flatten, Identity)):
        return None, None
    if isinstance(layer, Dense):
        return sp.csr_matrix(layer.weight), np.asarray(layer.bias, dtype=np.float64)
    if isinstance(layer, Conv2d):
        mat = conv_operator(layer.weight, in_shape, layer.stride, layer.padding)  # type: ignore[arg-type]
        n_pos = mat.shape[0] // layer.weight.shape[0]
        return mat, np.repeat(np.asarray(layer.bias, dtype=np.float64), n_pos)
    if isinstance(layer, AvgPool2d):
        return pool_operator(in_shape, layer.kernel_size, layer.stride, layer.padding), None  # type: ignore[arg-type]
    if isinstance(layer, GlobalAvgPool2d):
        c, h, w = in_shape
        return pool_operator(cast("tuple[int, int, int]", in_shape), (h, w), (h, w), (0, 0)), None
    raise ValidationError(f"layer '{layer.name}' of type {layer.type_name} is not linear", attr="layer")
