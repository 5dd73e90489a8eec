"""Array libraries the tensor engine runs on: numpy/scipy (always) and torch (CPU or CUDA).

Each :class:`Arrays` turns the network's static parts (kernels, weight
matrices, per-neuron parameters) into its own arrays once, and offers the few
operations the step loop needs.  All state is float64: the engine promises
the same spikes as Brian2 and the reference simulator, and single precision
would move threshold crossings.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp
from numpy.typing import NDArray

from ...snn.kernels import SharedKernel
from ...errors import ValidationError

__all__ = ["Arrays", "NumpyArrays", "TorchArrays", "arrays_for"]

# a dense matrix beats a sparse one once this fraction of it is filled (as in the reference)
_DENSE_FILL = 0.2
# gather the active inputs of a dense matrix when fewer than this fraction fired in a step
_GATHER_BELOW = 0.5


def window_sum(kernel: Any, x: Any, op: SharedKernel, lib: Any) -> Any:
    """Depthwise kernel (pooling, max-pool gate) as ``kh·kw`` strided slices, summed tap by tap.

    The taps are added in the order of the explicit synapses' pre-synaptic
    indices, so the result equals the sparse-matrix product bit for bit.
    ``x`` is (B, C, H, W) float on any library with numpy-style slicing.
    """
    (kh, kw), (sh, sw), (ph, pw) = op.kernel_size, op.stride, op.padding
    oh, ow = op.out_hw
    if ph or pw:
        b, c, h, w = x.shape
        padded = lib.zeros((b, c, h + 2 * ph, w + 2 * pw), dtype=x.dtype, **({} if lib is np else {"device": x.device}))
        padded[:, :, ph : ph + h, pw : pw + w] = x
        x = padded
    out: Any = None
    for i in range(kh):
        for j in range(kw):
            term = kernel[:, i, j][None, :, None, None] * x[:, :, i : i + sh * (oh - 1) + 1 : sh, j : j + sw * (ow - 1) + 1 : sw]
            out = term if out is None else out + term
    return out.reshape(x.shape[0], -1)


class SparseConv:
    """A full convolution of binary spikes, event-driven: work ∝ spikes × fan-out.

    The spikes are unfolded (im2col, one bool per tap) into the rows of a
    sparse matrix with one row per output position and one entry per fired
    input of its window, which multiplies the shared kernel as a dense
    ``(C·kh·kw, O)`` matrix.  Entries are in the order of the explicit
    synapses' pre-synaptic indices, so every sum equals the one the sparse
    matrix of explicit synapses computes, bit for bit.  Nothing per synapse
    is ever stored.
    """

    def __init__(self, op: SharedKernel) -> None:
        self.op = op
        o = op.kernel.shape[0]
        self.wm = np.ascontiguousarray(op.kernel.reshape(o, -1).T)  # (C*kh*kw, O)
        self._ones = np.ones(0)

    def __call__(self, spikes: NDArray[np.bool_]) -> NDArray[np.float64]:
        op = self.op
        b = spikes.shape[0]
        c, h, w = op.in_shape
        (kh, kw), (sh, sw), (ph, pw) = op.kernel_size, op.stride, op.padding
        oh, ow = op.out_hw
        s = np.asarray(spikes, dtype=bool).reshape(b, c, h, w).transpose(0, 2, 3, 1)  # (B, H, W, C) view
        if ph or pw:
            s = np.pad(s, ((0, 0), (ph, ph), (pw, pw), (0, 0)))
        cols = np.empty((b, oh, ow, c, kh, kw), dtype=bool)  # bool: numpy's fastest nonzero scans
        for i in range(kh):
            for j in range(kw):
                cols[:, :, :, :, i, j] = s[:, i : i + sh * (oh - 1) + 1 : sh, j : j + sw * (ow - 1) + 1 : sw, :]
        flat = cols.reshape(b * oh * ow, c * kh * kw)
        idx = np.flatnonzero(flat)
        indptr = np.zeros(flat.shape[0] + 1, dtype=np.int64)
        np.cumsum(np.count_nonzero(flat, axis=1), out=indptr[1:])
        if self._ones.size < idx.size:
            self._ones = np.ones(max(idx.size, 2 * self._ones.size))
        m = sp.csr_matrix((self._ones[: idx.size], idx % flat.shape[1], indptr), shape=flat.shape)
        out = np.asarray(m @ self.wm)  # (B*OH*OW, O)
        return np.ascontiguousarray(out.reshape(b, oh * ow, -1).transpose(0, 2, 1)).reshape(b, -1)


class Arrays:
    """Operations on one array library; subclasses implement them."""

    name = "abstract"
    lib: Any

    def asarray(self, a: Any) -> Any:
        raise NotImplementedError

    def zeros(self, shape: tuple[int, ...], dtype: str = "float64") -> Any:
        raise NotImplementedError

    def to_numpy(self, x: Any) -> NDArray[Any]:
        raise NotImplementedError

    def asbool(self, a: NDArray[np.bool_]) -> Any:
        raise NotImplementedError

    def where(self, cond: Any, a: Any, b: Any) -> Any:
        raise NotImplementedError

    def as_float(self, spikes: Any) -> Any:
        raise NotImplementedError

    def subtract_where(self, v: Any, theta: Any, cond: Any) -> Any:
        """``v - theta`` where ``cond``, else ``v`` (may reuse ``v``)."""
        return self.where(cond, v - theta, v)

    def assign_where(self, v: Any, value: float, cond: Any) -> Any:
        """``value`` where ``cond``, else ``v`` (may reuse ``v``)."""
        return self.where(cond, value, v)

    def any(self, x: Any) -> bool:
        return bool(x.any())

    def kernel(self, op: SharedKernel) -> Any:
        """Prepare a shared kernel; :meth:`conv` applies the result."""
        raise NotImplementedError

    def conv(self, prepared: Any, op: SharedKernel, x: Any) -> Any:
        """Apply a kernel to flat boolean spikes (B, n_pre) → (B, n_post) summed weights."""
        raise NotImplementedError

    def matrix(self, m: sp.csr_matrix) -> Any:
        """Prepare a ``(n_post, n_pre)`` weight matrix; :meth:`matmul` applies it."""
        raise NotImplementedError

    def matmul(self, prepared: Any, x: Any) -> Any:
        """(B, n_pre) boolean spikes → (B, n_post) summed weights."""
        raise NotImplementedError

    def synchronize(self) -> None:
        """Wait for queued device work (timings)."""


class NumpyArrays(Arrays):
    """numpy + scipy.sparse; convolutions by im2col and BLAS (the kernel is shared, never per synapse)."""

    name = "numpy"

    def __init__(self) -> None:
        self.lib = np

    def asarray(self, a: Any) -> Any:
        return np.asarray(a, dtype=np.float64)

    def zeros(self, shape: tuple[int, ...], dtype: str = "float64") -> Any:
        return np.zeros(shape, dtype=dtype)

    def to_numpy(self, x: Any) -> NDArray[Any]:
        return np.asarray(x)

    def asbool(self, a: NDArray[np.bool_]) -> Any:
        return np.asarray(a, dtype=bool)

    def where(self, cond: Any, a: Any, b: Any) -> Any:
        return np.where(cond, a, b)

    def as_float(self, spikes: Any) -> Any:
        return spikes.astype(np.float64)

    def subtract_where(self, v: Any, theta: Any, cond: Any) -> Any:
        # v - 0.0 is v: the reference's ``v - spikes * theta``, in place
        np.subtract(v, cond * theta, out=v)
        return v

    def assign_where(self, v: Any, value: float, cond: Any) -> Any:
        np.putmask(v, cond, value)
        return v

    def kernel(self, op: SharedKernel) -> Any:
        return SparseConv(op) if op.groups == 1 else np.ascontiguousarray(op.kernel[:, 0])

    def conv(self, prepared: Any, op: SharedKernel, x: Any) -> Any:
        if op.groups == 1:
            return prepared(x)
        return window_sum(prepared, x.reshape((x.shape[0],) + op.in_shape).astype(np.float64), op, np)

    def matrix(self, m: sp.csr_matrix) -> Any:
        n_post, n_pre = m.shape
        if m.nnz > _DENSE_FILL * n_post * n_pre:
            return ("dense", np.ascontiguousarray(m.toarray().T))  # (n_pre, n_post): active rows are contiguous
        return ("sparse", sp.csr_matrix(m.T))

    def matmul(self, prepared: Any, x: Any) -> Any:
        kind, wt = prepared
        if kind == "dense":
            active = np.flatnonzero(x.any(axis=0))
            if active.size < _GATHER_BELOW * x.shape[1]:
                return x[:, active].astype(np.float64) @ wt[active]
            return x.astype(np.float64) @ wt
        return np.asarray((sp.csr_matrix(x, dtype=np.float64) @ wt).toarray())


class TorchArrays(Arrays):
    """torch on CPU threads or CUDA; convolutions with ``torch.nn.functional.conv2d``."""

    def __init__(self, device: str) -> None:
        from ..._optional import import_optional

        torch = import_optional("torch", "the tensor engine on torch")
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise ValidationError(
                f"SimulationConfig.device: {device!r} asked for, but torch sees no CUDA device; use device='cpu'", attr="device"
            )
        self.lib = torch
        self.device = torch.device(device)
        self.name = f"torch-{self.device.type}"
        # event-driven convolutions pay off on CPU cores; a GPU runs dense convolutions faster
        self.event_driven = self.device.type == "cpu"
        self._f = torch.nn.functional

    def asarray(self, a: Any) -> Any:
        arr = np.asarray(a, dtype=np.float64)
        return self.lib.as_tensor(arr if arr.flags.writeable else arr.copy(), device=self.device)

    def zeros(self, shape: tuple[int, ...], dtype: str = "float64") -> Any:
        return self.lib.zeros(shape, dtype=getattr(self.lib, dtype), device=self.device)

    def to_numpy(self, x: Any) -> NDArray[Any]:
        return x.detach().cpu().numpy() if hasattr(x, "detach") else np.asarray(x)

    def asbool(self, a: NDArray[np.bool_]) -> Any:
        return self.lib.as_tensor(np.asarray(a, dtype=bool), device=self.device)

    def synchronize(self) -> None:
        if self.device.type == "cuda":
            self.lib.cuda.synchronize(self.device)

    def where(self, cond: Any, a: Any, b: Any) -> Any:
        torch = self.lib
        a = a if torch.is_tensor(a) else torch.tensor(a, dtype=torch.float64, device=self.device)
        b = b if torch.is_tensor(b) else torch.tensor(b, dtype=torch.float64, device=self.device)
        return torch.where(cond, a, b)

    def as_float(self, spikes: Any) -> Any:
        return spikes.to(self.lib.float64)

    def assign_where(self, v: Any, value: float, cond: Any) -> Any:
        return v.masked_fill_(cond, value)

    def kernel(self, op: SharedKernel) -> Any:
        if op.groups != 1:
            return self.asarray(op.kernel[:, 0])
        # CPU: event-driven (work follows the spikes); GPU: dense convolution
        return SparseConv(op) if self.event_driven else self.asarray(op.kernel)

    def conv(self, prepared: Any, op: SharedKernel, x: Any) -> Any:
        b = x.shape[0]
        if op.groups != 1:
            return window_sum(prepared, x.reshape((b,) + op.in_shape).to(self.lib.float64), op, self.lib)
        if isinstance(prepared, SparseConv):
            return self.lib.from_numpy(prepared(x.numpy()))
        y = self._f.conv2d(x.reshape((b,) + op.in_shape).to(self.lib.float64), prepared, stride=op.stride, padding=op.padding)
        return y.reshape(b, -1)

    def matrix(self, m: sp.csr_matrix) -> Any:
        n_post, n_pre = m.shape
        if m.nnz > _DENSE_FILL * n_post * n_pre:
            return ("dense", self.asarray(np.ascontiguousarray(m.toarray().T)))
        torch = self.lib
        coo = sp.coo_matrix(m)
        idx = torch.as_tensor(np.stack([coo.row, coo.col]).astype(np.int64))
        t = torch.sparse_coo_tensor(idx, torch.as_tensor(coo.data.astype(np.float64)), size=m.shape, check_invariants=True)
        return ("sparse", t.coalesce().to(self.device))

    def matmul(self, prepared: Any, x: Any) -> Any:
        kind, w = prepared
        f64 = self.lib.float64
        if kind == "dense":
            active = self.lib.nonzero(x.any(dim=0)).flatten()
            if active.numel() < _GATHER_BELOW * x.shape[1]:
                return x[:, active].to(f64) @ w[active]
            return x.to(f64) @ w
        return self.lib.sparse.mm(w, x.T.to(f64)).T


def arrays_for(device: str) -> Arrays:
    """The array library for ``SimulationConfig.device``.

    ``"cpu"``: numpy/scipy (the fastest on CPU cores in ``bench_engine.py``);
    ``"torch"``: torch on CPU threads; ``"cuda"``/``"cuda:N"``: torch on that
    GPU (error without one).  A missing torch raises
    :class:`~spikebridge.errors.MissingDependencyError` naming the extra.
    """
    if device == "cpu":
        return NumpyArrays()
    return TorchArrays("cpu" if device == "torch" else device)
