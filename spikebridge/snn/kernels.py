"""Shared-kernel form of convolution and pooling projections.

A convolution of a (C, H, W) population has ``O·C·kh·kw·OH·OW`` synapses per
sample but only ``O·C·kh·kw`` distinct weights.  A :class:`SharedKernel` keeps
the kernel and the geometry, so the tensor engine applies it as a convolution
and never holds one entry per synapse; the explicit synapses (COO indices) are
made only when Brian2, the reference simulator or an analysis asks for them
(:meth:`SharedKernel.coo`), in exactly the order and with exactly the weights
the sparse-matrix path of conversion produced before (zeros dropped, rows
sorted), so both forms are the same network.

Two layouts are supported: a full convolution (``groups=1``, kernel
``(O, C, kh, kw)``) and a depthwise one (``groups=C``, kernel ``(C, 1, kh,
kw)``), which is what average pooling (every weight ``1/(kh·kw)``, padding
counted in the average) and the max-pool OR gate (every weight θ) become.
Zero padding simply has no synapse.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp
from numpy.typing import NDArray

from ..errors import ValidationError
from ..ir.layers import conv_output_hw
from .operators import _window_indices, conv_operator

__all__ = ["SharedKernel"]


def _pair(value: Any, what: str) -> tuple[int, int]:
    arr = np.broadcast_to(np.asarray(value, dtype=np.int64), (2,))
    return int(arr[0]), int(arr[1])


@dataclass(frozen=True, eq=False)
class SharedKernel:
    """A convolution operator with one kernel shared by every output position.

    Parameters
    ----------
    kernel : ndarray, shape (O, C // groups, kh, kw)
        Weights (already in spiking units: the jump of the post variable per spike).
    in_shape : (C, H, W)
        Shape of the pre-synaptic population.
    stride, padding : (int, int)
    groups : int
        1 (full convolution) or C (depthwise: one kernel per channel, O = C).

    Raises
    ------
    ValidationError
        Inconsistent shapes, non-finite weights, or a grouping other than 1 or C.
    """

    kernel: NDArray[np.float64]
    in_shape: tuple[int, int, int]
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)
    groups: int = 1

    def __post_init__(self) -> None:
        k = np.array(self.kernel, dtype=np.float64)
        shape = tuple(int(s) for s in self.in_shape)
        if k.ndim != 4 or len(shape) != 3:
            raise ValidationError(f"SharedKernel: kernel must be 4-D and in_shape (C, H, W), got {k.shape} and {shape}", attr="kernel")
        if not np.all(np.isfinite(k)):
            raise ValidationError("SharedKernel: kernel contains NaN or Inf", attr="kernel")
        c = shape[0]
        g = int(self.groups)
        if g == 1:
            ok = k.shape[1] == c
        else:
            ok = g == c and k.shape[0] == c and k.shape[1] == 1
        if not ok:
            raise ValidationError(
                f"SharedKernel: kernel {k.shape} does not fit input {shape} with groups={g} (1, or C with kernel (C, 1, kh, kw))",
                attr="kernel",
            )
        stride, padding = _pair(self.stride, "stride"), _pair(self.padding, "padding")
        if min(stride) < 1 or min(padding) < 0:
            raise ValidationError(f"SharedKernel: stride {stride} must be >= 1 and padding {padding} >= 0", attr="stride")
        k.setflags(write=False)
        object.__setattr__(self, "kernel", k)
        object.__setattr__(self, "in_shape", shape)
        object.__setattr__(self, "stride", stride)
        object.__setattr__(self, "padding", padding)
        object.__setattr__(self, "groups", g)
        oh, ow = self.out_hw
        if oh < 1 or ow < 1:
            raise ValidationError(f"SharedKernel: kernel {k.shape[2:]} does not fit input {shape} with padding {padding}", attr="kernel")

    # -- geometry ---------------------------------------------------------------
    @property
    def kernel_size(self) -> tuple[int, int]:
        return int(self.kernel.shape[2]), int(self.kernel.shape[3])

    @property
    def out_hw(self) -> tuple[int, int]:
        return conv_output_hw(self.in_shape[1:], self.kernel_size, self.stride, self.padding)  # type: ignore[arg-type]

    @property
    def out_shape(self) -> tuple[int, int, int]:
        """(O, OH, OW) of the post-synaptic population."""
        oh, ow = self.out_hw
        return int(self.kernel.shape[0]), oh, ow

    @property
    def n_pre(self) -> int:
        return int(np.prod(self.in_shape))

    @property
    def n_post(self) -> int:
        return int(np.prod(self.out_shape))

    def _valid_taps(self) -> NDArray[np.int64]:
        """Number of in-image output positions of every kernel tap, shape (kh, kw)."""
        _, h, w = self.in_shape
        (kh, kw), (sh, sw), (ph, pw) = self.kernel_size, self.stride, self.padding
        oh, ow = self.out_hw

        def count(k: int, s: int, p: int, n_out: int, n_in: int) -> NDArray[np.int64]:
            pos = np.arange(n_out)[None, :] * s - p + np.arange(k)[:, None]
            return np.sum((pos >= 0) & (pos < n_in), axis=1)

        return count(kh, sh, ph, oh, h)[:, None] * count(kw, sw, pw, ow, w)[None, :]

    @property
    def n_synapses(self) -> int:
        """Explicit synapses per sample (non-zero weights at in-image taps), without making them."""
        return int(np.sum((self.kernel != 0) * self._valid_taps()[None, None]))

    def fan_out(self) -> NDArray[np.float64]:
        """Synapses leaving each pre-synaptic neuron, shape (n_pre,), without making them."""
        _, h, w = self.in_shape
        (kh, kw), (sh, sw), (ph, pw) = self.kernel_size, self.stride, self.padding
        oh, ow = self.out_hw

        def valid(k: int, s: int, p: int, n_in: int, n_out: int) -> NDArray[np.float64]:
            rel = np.arange(n_in)[None, :] + p - np.arange(k)[:, None]  # (tap, input position)
            return ((rel % s == 0) & (rel >= 0) & (rel // s < n_out)).astype(np.float64)

        nz = (self.kernel != 0).sum(axis=0) if self.groups == 1 else (self.kernel[:, 0] != 0)  # (C, kh, kw)
        fan = np.einsum("cij,iy,jx->cyx", nz.astype(np.float64), valid(kh, sh, ph, h, oh), valid(kw, sw, pw, w, ow))
        return fan.ravel()

    # -- explicit form ------------------------------------------------------------
    def csr(self) -> sp.csr_matrix:
        """The operator as a sparse ``(n_post, n_pre)`` matrix (zero padding has no entry)."""
        if self.groups == 1:
            return conv_operator(self.kernel, self.in_shape, self.stride, self.padding)
        c, h, w = self.in_shape
        row, col, out_pos, valid, oh, ow = _window_indices(self.in_shape, self.kernel_size, self.stride, self.padding)
        ch = np.arange(c)[:, None, None, None, None]
        shape5 = (c,) + valid.shape
        mask = np.broadcast_to(valid[None], shape5)
        post = np.broadcast_to(ch * (oh * ow) + out_pos[None], shape5)[mask]
        pre = np.broadcast_to(ch * (h * w) + (row * w + col)[None], shape5)[mask]
        wts = np.broadcast_to(self.kernel[:, 0, :, :, None, None], shape5)[mask]
        return sp.csr_matrix((wts, (post, pre)), shape=(c * oh * ow, c * h * w))

    def coo(self) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.float64]]:
        """``(pre_index, post_index, weight)`` of every non-zero synapse, row-major (post, then pre)."""
        m = self.csr().tocoo()
        keep = m.data != 0
        return m.col[keep].astype(np.int64), m.row[keep].astype(np.int64), np.asarray(m.data[keep], dtype=np.float64)

    def scaled(self, factor: float) -> "SharedKernel":
        """The same operator with every weight multiplied by ``factor``."""
        return SharedKernel(self.kernel * factor, self.in_shape, self.stride, self.padding, self.groups)

    # -- numpy application ------------------------------------------------------
    def apply(self, x: NDArray[np.float64]) -> NDArray[np.float64]:
        """Apply to a batch of flat pre-synaptic values.

        Parameters
        ----------
        x : ndarray, shape (n_samples, n_pre)

        Returns
        -------
        ndarray, shape (n_samples, n_post)
        """
        from ..ir.evaluate import im2col

        b = x.shape[0]
        cols = im2col(np.asarray(x, dtype=np.float64).reshape((b,) + self.in_shape), self.kernel_size, self.stride, self.padding)
        if self.groups == 1:
            out = np.tensordot(self.kernel, cols, axes=([1, 2, 3], [1, 2, 3]))  # (O, B, OH, OW)
            return np.ascontiguousarray(np.moveaxis(out, 0, 1)).reshape(b, -1)
        out = np.einsum("bcijhw,cij->bchw", cols, self.kernel[:, 0])
        return out.reshape(b, -1)

    # -- storage -------------------------------------------------------------------
    def to_attrs(self) -> dict[str, Any]:
        """Geometry as plain values (the kernel is stored separately)."""
        return {"in_shape": list(self.in_shape), "stride": list(self.stride), "padding": list(self.padding), "groups": self.groups}

    @classmethod
    def from_attrs(cls, kernel: NDArray[np.float64], attrs: dict[str, Any]) -> "SharedKernel":
        """Inverse of :meth:`to_attrs`."""
        return cls(kernel, tuple(attrs["in_shape"]), tuple(attrs["stride"]), tuple(attrs["padding"]), int(attrs["groups"]))  # type: ignore[arg-type]
