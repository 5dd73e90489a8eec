"""Array libraries the tensor engine runs on: numpy/scipy (always) and torch (CPU or CUDA).

Each :class:`Arrays` turns the network's static parts (kernels, weight
matrices, per-neuron parameters) into its own arrays once, and offers the few
operations the step loop needs.  State is float64 by default: the engine
promises the same spikes as Brian2 and the reference simulator, and single
precision can move threshold crossings.  :class:`Float32Arrays` is the opt-in
single-precision variant (``SimulationConfig.precision="float32"``).
"""

from __future__ import annotations

import math
import threading
from typing import Any

import numpy as np
import scipy.sparse as sp
from numpy.typing import NDArray

from ...conversion.fixedpoint import EXACT_SUM_UNITS, float32_exact, float32_exact_matrix, kernel_units
from ...snn.kernels import SharedKernel
from ...errors import ValidationError
from . import compiled

__all__ = ["Arrays", "NumpyArrays", "Float32Arrays", "TorchArrays", "arrays_for", "ordered_matmul", "sequential_k"]

# a dense matrix beats a sparse one once this fraction of it is filled (as in the reference)
_DENSE_FILL = 0.2
# gather the active inputs of a dense matrix when fewer than this fraction fired in a step
_GATHER_BELOW = 0.5
# a matrix whose every post neuron has at most this many synapses (pooling, max-pool gates) is
# applied as that many gathers over the batch, in the order of the pre-synaptic indices
_GATHER_FAN_IN = 8
# a convolution runs as one dense GEMM over the unfolded windows (float64, ordered sums) once this
# fraction of its input fired in a step, event-driven below.  Crossover measured with
# /benchmarks/bench_engine.py --case crossover (1 thread, load 3.8, noisy): on the LeNet's 16→32 5×5
# convolution (batch 100) events win up to ~20 % and dense from ~40 %; on a 64→64 3×3 one (16×16,
# batch 32) events win at every density up to 40 %
DENSE_CONV_ABOVE = 0.35


# -- sums in a fixed order ------------------------------------------------------------------------
# Every arrival is a sum of weights in the order of the pre-synaptic indices, one rounding per
# addition (what scipy's CSR products, the reference simulator and a loop compute).  A BLAS GEMM
# keeps that order only while its blocking leaves the reduction dimension K whole: OpenBLAS's
# kernels run one accumulator per output over k = 0..K-1 for K up to its block size (384 on
# Haswell) and add block partial sums beyond it.  ``sequential_k`` finds, on this machine, the
# largest K for which a GEMM equals the ordered sum (a probe whose weights make any other order
# visible), and :func:`ordered_matmul` uses GEMMs of at most that K, carrying each block's partial
# sums into the next block through an identity matrix (1.0 × s is s, 0.0 × s adds nothing), so the
# result equals the ordered sum bit for bit for any K.
_SEQ_CANDIDATES = (384, 256, 192, 128, 64, 32, 16)
# GEMM, never GEMV (whose reductions are vectorised across k), and no edge kernels for a number of
# outputs that is not a multiple of 8 (OpenBLAS's N-remainder kernels regroup the sum): pad
_MIN_ROWS = 8
_N_MULTIPLE = 8
_seq_k: int | None = None


def _loop_matmul(a: NDArray[np.float64], w: NDArray[np.float64]) -> NDArray[np.float64]:
    """The ordered sum as a loop over k (the definition; slow)."""
    acc = np.zeros((a.shape[0], w.shape[1]))
    for k in range(a.shape[1]):
        acc = acc + a[:, k : k + 1] * w[k]
    return acc


def _gemm_is_sequential(k: int) -> bool:
    rng = np.random.default_rng(k)
    for m, n in ((8, 8), (9, 16), (67, 40), (1031, 136), (203, 24)):
        a = (rng.random((m, k)) < 0.6).astype(np.float64)
        # a large weight among tiny ones: any regrouping of the sum changes the last bits
        w = np.ldexp(rng.integers(1, 4, size=(k, n)).astype(np.float64), -53)
        w[(np.arange(n) * 7) % k, np.arange(n)] = 1.0 + np.arange(n) * 2.0**-50
        w[:, ::5] = rng.normal(size=(k, len(range(0, n, 5))))
        if not np.array_equal(a @ w, _loop_matmul(a, w)):
            return False
    return True


def sequential_k() -> int:
    """Largest reduction length for which this machine's BLAS GEMM sums each output in order (0: none).

    Probed once per process (about 0.2 s) with weights chosen so that any other
    summation order changes the result.
    """
    global _seq_k
    if _seq_k is None:
        _seq_k = next((k for k in _SEQ_CANDIDATES if _gemm_is_sequential(k)), 0)
    return _seq_k


def ordered_matmul(a: NDArray[np.float64], w: NDArray[np.float64]) -> NDArray[np.float64]:
    """``a @ w`` with every output summed over k in order, one rounding per addition.

    Parameters
    ----------
    a : ndarray, shape (M, K), float64
        Usually 0/1 spikes (or unfolded spike windows).
    w : ndarray, shape (K, N), float64

    Returns
    -------
    ndarray, shape (M, N)
        Equal bit for bit to ``_loop_matmul(a, w)`` (and to scipy's CSR product
        of the same operands): BLAS GEMMs of at most :func:`sequential_k`
        columns, each block continuing the previous one's partial sums.
    """
    m, k = a.shape
    n = w.shape[1]
    q = sequential_k()
    if q == 0:
        return _loop_matmul(a, w)
    if m < _MIN_ROWS:
        pad = np.zeros((_MIN_ROWS, k))
        pad[:m] = a
        return ordered_matmul(pad, w)[:m]
    if n % _N_MULTIPLE:
        wp = np.zeros((k, n + _N_MULTIPLE - n % _N_MULTIPLE))
        wp[:, :n] = w
        return ordered_matmul(a, wp)[:, :n]
    a = np.ascontiguousarray(a, dtype=np.float64)
    w = np.ascontiguousarray(w, dtype=np.float64)
    if k <= q:
        return a @ w
    # outputs in chunks of c columns: a later block carries its c partial sums as c extra inputs
    c = min(n, q // 2 // _N_MULTIPLE * _N_MULTIPLE)
    out = np.empty((m, n))
    for c0 in range(0, n, c):
        c1 = min(n, c0 + c)  # n and c are multiples of _N_MULTIPLE, so is every chunk
        width = c1 - c0
        s = a[:, :q] @ w[:q, c0:c1]
        step = q - width
        eye = np.eye(width)
        work = np.empty((m, q))
        for k0 in range(q, k, step):
            k1 = min(k, k0 + step)
            blk = work[:, : width + k1 - k0]
            blk[:, :width] = s
            blk[:, width:] = a[:, k0:k1]
            s = blk @ np.concatenate([eye, w[k0:k1, c0:c1]])
        out[:, c0:c1] = s
    return out


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



def _spike_csr(x: NDArray[Any], dtype: Any) -> Any:
    """0/1 spikes (batch, n) as a CSR matrix of ones, built directly (no COO round trip): the
    event-driven product's left operand."""
    b, n = x.shape
    indptr = np.zeros(b + 1, dtype=np.int64)
    np.cumsum(np.count_nonzero(x, axis=1), out=indptr[1:])
    cols = np.flatnonzero(x) % n
    return sp.csr_matrix((np.ones(cols.size, dtype=dtype), cols, indptr), shape=(b, n))

class SparseConv:
    """A full convolution of binary spikes, event-driven: work ∝ spikes × fan-out.

    The spikes are unfolded (im2col, one bool per tap) into the rows of a
    sparse matrix with one row per output position and one entry per fired
    input of its window, which multiplies the shared kernel as a dense
    ``(C·kh·kw, O)`` matrix.  Entries are in the order of the explicit
    synapses' pre-synaptic indices, so every sum equals the one the sparse
    matrix of explicit synapses computes, bit for bit.  Nothing per synapse
    is ever stored.  With numba installed the fired inputs are pushed by a
    compiled kernel instead (:func:`.compiled.conv_events`: the same sums,
    nothing unfolded).
    """

    def __init__(self, op: SharedKernel) -> None:
        self.op = op
        o = op.kernel.shape[0]
        self.wm = np.ascontiguousarray(op.kernel.reshape(o, -1).T)  # (C*kh*kw, O)
        self._ones = np.ones(0)
        self.dense_above = DENSE_CONV_ABOVE  # fraction of fired inputs; > 1 forces events
        self.wf = compiled.flipped_kernel(op.kernel)  # (C, kh, kw, O), columns reversed: the compiled kernel's layout
        # fixed-point kernels (conversion.fixedpoint): every sum onto one output is exact in float32,
        # so the layer-major schedule may sum in float32 (pushed, or dense above a spike density)
        # and get the ordered float64 sums bit for bit
        self.wf32 = self.wf.astype(np.float32) if float32_exact(op.kernel) else None
        if self.wf32 is not None:
            compiled.available(*compiled.FIXED_POINT_FORMS)  # compiled now, not in the first block
        # unfolded windows as float64, reused across steps; one buffer per thread (batch parts
        # run concurrently on the same program)
        self._local = threading.local()
        self.dense32 = self._dense32_checked()

    def _dense32_checked(self) -> "PointwiseConv32 | DigitConv | DenseConv32 | None":
        """A dense convolution of this fixed-point kernel with float32 results, or None.

        A 1×1 kernel without padding as one batched float32 matmul (:class:`PointwiseConv32`);
        otherwise int8 digits (:class:`DigitConv`, with :data:`INT8_DIGITS`) where oneDNN has them, else
        torch's float32 ``conv2d`` (:class:`DenseConv32`).  None without torch, for a kernel that
        is not fixed-point (``wf32`` None), or when a probe (32 rows of random spikes) does not
        give the ordered float64 sums bit for bit: a library that transforms the weights
        (Winograd, FFT), computes in reduced precision (TF32 or bf16 settings) or rounds its
        int8 outputs is not used.
        """
        if self.wf32 is None:
            return None
        candidates: list[Any] = []
        if (pointwise := PointwiseConv32.build(self.op)) is not None:
            candidates.append(pointwise)
        if INT8_DIGITS and (digits := DigitConv.build(self.op)) is not None:
            candidates.append(digits)
        dense = DenseConv32(self.op)
        if dense.uses_torch:
            candidates.append(dense)
        if not candidates:
            return None
        probe = np.random.default_rng(0).random((32, self.op.n_pre)) < 0.5
        self.dense_above = 2.0  # the reference: events, in pre-index order
        try:
            ordered = self(probe)
        finally:
            self.dense_above = DENSE_CONV_ABOVE
        for c in candidates:
            try:
                sums = np.asarray(c(probe), dtype=np.float64)
            except RuntimeError:  # a library that cannot run this kernel here: the next form
                continue
            if np.array_equal(sums, ordered):
                return c
        return None

    def _dense(self, s: NDArray[np.bool_], b: int) -> NDArray[np.float64]:
        """Unfold ``s`` (B, H+2p, W+2p, C) into float windows and multiply them in pre-index order."""
        op = self.op
        c = op.in_shape[0]
        (kh, kw), (sh, sw) = op.kernel_size, op.stride
        oh, ow = op.out_hw
        hp, wp = s.shape[1], s.shape[2]
        # the spikes as contiguous float (B, H, W, C) once, then one copy of all windows
        size = b * hp * wp * c
        buf = getattr(self._local, "x", None)
        if buf is None or buf.size < size:
            buf = self._local.x = np.empty(size)
        xf = buf[:size].reshape(b, hp, wp, c)
        xf[...] = s
        win = np.lib.stride_tricks.sliding_window_view(xf, (kh, kw), axis=(1, 2))[:, ::sh, ::sw]  # type: ignore[call-overload]  # (B, OH, OW, C, kh, kw)
        cols = np.ascontiguousarray(win[:, :oh, :ow]).reshape(b * oh * ow, c * kh * kw)
        out = ordered_matmul(cols, self.wm)  # (B*OH*OW, O)
        return np.ascontiguousarray(out.reshape(b, oh * ow, -1).transpose(0, 2, 1)).reshape(b, -1)

    def __call__(self, spikes: NDArray[np.bool_]) -> NDArray[np.float64]:
        op = self.op
        if compiled.available("conv"):
            return compiled.conv_events(spikes, self.wf, op.in_shape, op.stride, op.padding, op.out_hw)
        b = spikes.shape[0]
        c, h, w = op.in_shape
        (kh, kw), (sh, sw), (ph, pw) = op.kernel_size, op.stride, op.padding
        oh, ow = op.out_hw
        s = np.asarray(spikes, dtype=bool).reshape(b, c, h, w).transpose(0, 2, 3, 1)  # (B, H, W, C) view
        if ph or pw:
            s = np.pad(s, ((0, 0), (ph, ph), (pw, pw), (0, 0)))
        if self.dense_above <= 1.0 and np.count_nonzero(spikes) > self.dense_above * spikes.size:
            return self._dense(s, b)
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
        # v - 0.0 is v: the reference's ``v - spikes * theta``.  For a finite scalar threshold as
        # that product (1.8x faster than numpy's masked subtract); else in place where cond only
        # (0 * inf would be NaN)
        if isinstance(theta, float) and math.isfinite(theta) and theta >= 0.0:
            np.subtract(v, np.multiply(cond, theta), out=v)
        else:
            np.subtract(v, theta, out=v, where=cond)
        return v

    def assign_where(self, v: Any, value: float, cond: Any) -> Any:
        np.putmask(v, cond, value)
        return v

    def kernel(self, op: SharedKernel) -> Any:
        return SparseConv(op) if op.groups == 1 else np.ascontiguousarray(op.kernel[:, 0])

    def conv(self, prepared: Any, op: SharedKernel, x: Any) -> Any:
        if op.groups == 1:
            return prepared(x)
        if compiled.available() and x.dtype == np.bool_ and (out := compiled.depthwise(x, prepared, op)) is not None:
            return out  # the same sums from the spikes' bytes (ResNet-8's global pool: 6 µs a row in numpy)
        return window_sum(prepared, x.reshape((x.shape[0],) + op.in_shape).astype(np.float64), op, np)

    def matrix(self, m: sp.csr_matrix) -> Any:
        n_post, n_pre = m.shape
        if m.nnz > _DENSE_FILL * n_post * n_pre:
            if float32_exact_matrix(m):
                # fixed-point weights (conversion.fixedpoint): a float32 GEMM's sums are exact, in any order
                return ("dense32", np.ascontiguousarray(m.toarray().T, dtype=np.float32))
            return ("dense", np.ascontiguousarray(m.toarray().T))  # (n_pre, n_post): active rows are contiguous
        fan_in = np.diff(m.indptr)
        if m.nnz and int(fan_in.max()) <= _GATHER_FAN_IN:
            # (F, n_post) pre indices and weights, slot f holding each post's f-th synapse in
            # pre-index order (csr rows are sorted); empty slots read input 0 with weight 0.0
            f_max = int(fan_in.max())
            idx = np.zeros((f_max, n_post), dtype=np.intp)
            w = np.zeros((f_max, n_post))
            rows = np.repeat(np.arange(n_post), fan_in)
            slot = np.arange(m.nnz) - np.repeat(m.indptr[:-1], fan_in)
            idx[slot, rows] = m.indices
            w[slot, rows] = m.data
            return ("gather", (idx, w))
        return ("sparse", (sp.csr_matrix(m.T), m))

    #: fraction of fired inputs above which a sparse matrix pulls (``m @ spikesᵀ``) instead of
    #: pushing events (``spikes @ mᵀ``, a sparse-sparse product); measured on ResNet-8's 3×3 16→16
    #: explicit convolution (fan-in 144, 800 rows, 1 thread, load 8): events 0.029 s at 2 %, 0.078 s
    #: at 12 %, 0.118 s at 20 %; pull 0.072-0.076 s at any density
    pull_above = 0.12

    def _pull(self, m: sp.csr_matrix, x: NDArray[np.bool_], dtype: Any) -> NDArray[Any]:
        """``m @ xᵀ`` in row chunks: scipy's csr_matvecs sums each output over the row's entries in
        pre-index order (``0.0 + w·1`` is ``w``; ``s + w·0`` is ``s``), the events' sums exactly."""
        out = np.empty((x.shape[0], m.shape[0]), dtype=dtype)
        rows = 64  # spikesᵀ of a chunk stays in cache
        for r0 in range(0, x.shape[0], rows):
            xt = np.ascontiguousarray(x[r0 : r0 + rows].T, dtype=dtype)
            out[r0 : r0 + rows] = (m @ xt).T
        return out

    def matmul(self, prepared: Any, x: Any) -> Any:
        kind, wt = prepared
        if kind == "gather":
            # the ordered sum as F vectorised additions (adding 0.0 for a silent input changes nothing)
            idx, w = wt
            out = x[:, idx[0]] * w[0]
            for f in range(1, idx.shape[0]):
                out += x[:, idx[f]] * w[f]
            return out
        if kind == "dense32":
            # exact: every partial sum is representable in float32 (float64 for the scans)
            return np.matmul(x.astype(np.float32), wt).astype(np.float64)
        if kind == "dense":
            if compiled.available("dense"):
                return compiled.dense_events(x, wt)
            active = np.flatnonzero(x.any(axis=0))
            if active.size < _GATHER_BELOW * x.shape[1]:
                return ordered_matmul(x[:, active].astype(np.float64), wt[active])
            return ordered_matmul(x.astype(np.float64), wt)
        wt, m = wt
        if compiled.available("csr"):
            return compiled.csr_events(x, wt.indptr, wt.indices, wt.data, wt.shape[1])
        if np.count_nonzero(x) > self.pull_above * x.size:
            return self._pull(m, x, np.float64)
        return np.asarray((_spike_csr(x, np.float64) @ wt).toarray())


class PointwiseConv32:
    """A 1×1 fixed-point convolution of binary spikes without padding (ResNet's strided shortcuts), dense in float32.

    The kernel's (O, C) matrix times each row's (C, OH·OW) inputs (the stride's subsample) in one
    batched float32 matmul, the outputs already in the population's (o, y, x) order.  Exact for a
    fixed-point kernel: every partial sum is representable in float32.  oneDNN's int8 digits
    spend most of such a call on overhead: ResNet-8's 16→32 stride-2 shortcut, 256 rows of 12 %
    spikes, one thread, 1.03 ms as digits, 0.35 ms here.  Construct with :meth:`build`.
    """

    def __init__(self, op: SharedKernel) -> None:
        self.op = op
        self._w = np.ascontiguousarray(op.kernel[:, :, 0, 0], dtype=np.float32)  # (O, C)

    @classmethod
    def build(cls, op: SharedKernel) -> "PointwiseConv32 | None":
        """The form for ``op``, or None unless it is a full 1×1 convolution without padding."""
        if op.groups != 1 or tuple(op.kernel_size) != (1, 1) or tuple(op.padding) != (0, 0):
            return None
        return cls(op)

    def __call__(self, spikes: NDArray[np.bool_]) -> NDArray[np.float32]:
        """``spikes`` (B, C·H·W) bool: (B, O·OH·OW) float32 sums."""
        op = self.op
        b = spikes.shape[0]
        c, h, w = op.in_shape
        (sh, sw), (oh, ow) = op.stride, op.out_hw
        x = np.asarray(spikes).reshape(b, c, h, w)[:, :, : sh * (oh - 1) + 1 : sh, : sw * (ow - 1) + 1 : sw]
        return np.matmul(self._w, x.astype(np.float32).reshape(b, c, oh * ow)).reshape(b, -1)


class DenseConv32:
    """A full convolution of binary spikes in float32, dense (``precision="float32"`` only).

    torch's ``conv2d`` (oneDNN) when torch is installed, else im2col and one float32 BLAS GEMM.
    Sums are in whatever order those libraries choose: not the exact path's.
    """

    def __init__(self, op: SharedKernel) -> None:
        self.op = op
        self.wm = np.ascontiguousarray(op.kernel.reshape(op.kernel.shape[0], -1).T.astype(np.float32))  # (C*kh*kw, O)
        # for the compiled fused push and scan (layered.LayerMajor._conv_if, float32 events), which
        # the layer-major schedule prefers where it applies
        self.wf = compiled.flipped_kernel(op.kernel).astype(np.float32)
        try:
            import torch
        except ImportError:  # numpy fallback below
            self._torch: Any = None
        else:
            self._torch = torch
            self._k = torch.from_numpy(np.ascontiguousarray(op.kernel, dtype=np.float32))

    @property
    def uses_torch(self) -> bool:
        """Whether products run in torch's ``conv2d`` (else im2col and a numpy GEMM, 3-5x slower)."""
        return self._torch is not None

    def __call__(self, spikes: NDArray[np.bool_]) -> NDArray[np.float32]:
        op = self.op
        b = spikes.shape[0]
        c, h, w = op.in_shape
        if self._torch is not None:
            torch = self._torch
            x = torch.from_numpy(np.ascontiguousarray(spikes).reshape(b, c, h, w)).to(torch.float32)
            y = torch.nn.functional.conv2d(x, self._k, stride=op.stride, padding=op.padding)
            return np.asarray(y.reshape(b, -1).numpy())
        (kh, kw), (sh, sw), (ph, pw) = op.kernel_size, op.stride, op.padding
        oh, ow = op.out_hw
        s = np.asarray(spikes).reshape(b, c, h, w).transpose(0, 2, 3, 1).astype(np.float32)
        if ph or pw:
            s = np.pad(s, ((0, 0), (ph, ph), (pw, pw), (0, 0)))
        win = np.lib.stride_tricks.sliding_window_view(s, (kh, kw), axis=(1, 2))[:, ::sh, ::sw]  # type: ignore[call-overload]
        cols = np.ascontiguousarray(win[:, :oh, :ow]).reshape(b * oh * ow, c * kh * kw)
        out = cols @ self.wm
        return np.ascontiguousarray(out.reshape(b, oh * ow, -1).transpose(0, 2, 1)).reshape(b, -1)


#: run a fixed-point convolution's dense products as int8 digit convolutions in oneDNN
#: (:class:`DigitConv`, exact); False: torch's float32 ``conv2d`` (:class:`DenseConv32`, exact too).
#: One thread (AMX), 64 rows of 12 % spikes, µs per row with the scan, float32 ``conv2d`` / digits:
#: F-MNIST VGG conv2 24.3 / 15.5, conv3 38.5 / 18.7 (results.md §0.2p)
INT8_DIGITS = True
# a digit sum is at most 128 × the taps in magnitude and must stay exact in float32 (2**24)
_MAX_DIGIT_TAPS = 2**24 // 128


def _onednn_int8() -> Any:
    """torch when its oneDNN int8 convolution (``torch.ops.onednn.qconv2d_pointwise``) is there and the
    CPU has int8 dot products (VNNI or AMX), else None.

    Without them oneDNN's int8 runs at about float32's rate per multiply-add, and ``L`` digits are
    ``L`` times the work of one float32 convolution, so :class:`DenseConv32` is the faster form.
    The test uses torch's own (private) CPU queries; a torch without them counts as without.
    """
    try:
        import torch

        torch.ops.onednn.qconv_prepack  # noqa: B018 - raises where the build has no oneDNN int8 ops
        torch.ops.onednn.qconv2d_pointwise  # noqa: B018
    except (ImportError, AttributeError, RuntimeError):
        return None
    return torch if _digits_pay_off(torch) else None


def _digits_pay_off(torch: Any) -> bool:
    """Whether :class:`DigitConv` is the faster dense form here: where the CPU has int8 dot products.

    (The tests patch this to run the digits on any CPU: with 0/1 inputs their sums are exact on
    every CPU; the paired form's are not without dot products, so it asks :func:`_int8_dot_products`.)
    """
    return _int8_dot_products(torch)


def _int8_dot_products(torch: Any) -> bool:
    """Whether the CPU has int8 dot-product instructions (AVX-512 VNNI, AVX-VNNI or AMX), as torch reports them."""
    try:
        return bool(torch.cpu._is_vnni_supported() or torch.cpu._is_amx_tile_supported())
    except (AttributeError, RuntimeError):
        return False


class DigitConv:
    """A fixed-point convolution of binary spikes, dense, as int8 digit convolutions (exact).

    A fixed-point kernel is integers ``u`` times ``2**-e`` with every output channel's
    ``Σ|u| <= 2**24`` (:func:`~spikebridge.conversion.fixedpoint.kernel_units`).  Each ``u`` is
    written in ``L`` signed base-256 digits, ``u = Σ_j d_j · 256**j`` with ``d_j`` in
    [-128, 127] (``L`` <= 4), and the ``L`` digit kernels run as one oneDNN int8 convolution with
    ``L·O`` output channels: the spikes are its uint8 input (scale 1, zero point 0), the digits
    its int8 weights, and channel ``j·O + c`` gets the scale ``256**j · 2**-e`` (a power of two).
    Its int32 sums are at most ``128·C·kh·kw`` in magnitude, so their scaled float32 outputs are
    exact; :func:`.compiled.digit_sum` adds the ``L`` digits of each output in float32 from the
    highest down, which is exact too (every partial sum is a multiple of its lowest digit's
    weight and at most ``2**24`` such multiples; the total at most ``2**24`` units).  The result
    is the ordered float64 sum bit for bit, as :class:`DenseConv32`'s is for such a kernel, with
    int8 arithmetic (VNNI or AMX where the CPU has them) in place of float32's.

    **Paired inputs.**  Where the units need more than one digit and every output channel's units
    (or their negatives) lie in [-32768, 32512] (16-bit weights), each is ``a + 255·b`` with ``a``, ``b``
    in [-128, 127], and the kernel runs as one convolution with ``O`` outputs of ``2·C`` inputs:
    each channel's spikes and ``255 ×`` them (uint8), with the digits ``a`` and ``b`` as their weights,
    and the channel's sign in its scale ``±2**-e``.  Its int32 sum is ``Σ u · s`` itself (at most
    ``2**24`` in magnitude, so exact in float32): the same products as two digits on ``O``
    outputs each, with half the outputs to write and add (``n_digits`` is 1, ``paired`` True).
    int8 dot products (VNNI, AMX) add the products in int32 without saturating, which the
    paired input's 255 needs (oneDNN's int8 without them adds pairs of products in int16, which
    0/1 inputs never overflow): ``pairs=False``, and :meth:`build` where the CPU has none, keep
    the base-256 digits.  On one core of an AMD EPYC (VNNI), 256 rows of 12 % spikes, µs per row,
    two digits / paired: the shipped MNIST LeNet's conv2 4.6 / 3.7, F-MNIST VGG conv2 10.3 / 9.8,
    ResNet-8's 3×3 convolutions 3.0–6.7 / 2.8–5.9; whole 16-bit runs on two threads, paired over
    two digits: ResNet-8 0.89, VGG 0.99, the benchmark's LeNet 1.01 (results.md §0.2v).

    Construct with :meth:`build`, which returns None where it does not apply (no torch or no
    oneDNN int8 ops, a kernel not on its grid, grouped convolutions, too many taps).
    """

    #: units ``a + 255·b`` (``a``, ``b`` in [-128, 127]) reach; a channel whose units pass the top
    #: but not the bottom of the negated range runs negated
    PAIRED_RANGE = (-128 - 255 * 128, 127 + 255 * 127)

    def __init__(self, op: SharedKernel, torch: Any, units: NDArray[np.int64], e: int, pairs: bool = True) -> None:
        self.op = op
        self._torch = torch
        o = op.kernel.shape[0]
        sign = self._paired_signs(units) if pairs else None
        self.paired = sign is not None
        if sign is not None:
            u = units * sign[:, None, None, None]
            b = np.clip((u + 128) // 255, -128, 127)
            a = u - 255 * b
            w = np.stack([a, b], axis=2).reshape(o, -1, *units.shape[2:])  # input channel 2c: spikes of c, 2c + 1: 255 ×
            self.n_digits = 1
            scales = [math.ldexp(float(sg), -e) for sg in sign]
        else:
            digits: list[NDArray[np.int64]] = []
            rest = units.copy()
            while not digits or rest.any():
                d = (rest + 128) % 256 - 128
                digits.append(d)
                rest = (rest - d) // 256
            self.n_digits = len(digits)
            # digit-major channels: j·O + c, so each digit's O sums are contiguous for digit_sum
            w = np.concatenate(digits)
            scales = [math.ldexp(1.0, 8 * j - e) for j in range(self.n_digits) for _ in range(o)]
        if w.min(initial=0) < -128 or w.max(initial=0) > 127:  # pragma: no cover - the digits above are in range
            raise RuntimeError("int8 digits out of range")
        self._w = torch.from_numpy(w.astype(np.int8))
        self._scales = torch.tensor(scales, dtype=torch.float32)
        self._zeros = torch.zeros(len(scales), dtype=torch.int64)
        self._args = ([int(s) for s in op.stride], [int(p) for p in op.padding], [1, 1])
        self._packed = torch.ops.onednn.qconv_prepack(self._w, self._scales, 1.0, 0, *self._args, 1, None)

    @classmethod
    def _paired_signs(cls, units: NDArray[np.int64]) -> NDArray[np.int64] | None:
        """Per output channel, +1 or -1 so that its units times it lie in :data:`PAIRED_RANGE`; None where
        a kernel needs one digit (the single digit is as fast, with no second input) or a channel fits neither way."""
        lo, hi = cls.PAIRED_RANGE
        flat = units.reshape(units.shape[0], -1)
        top, bottom = flat.max(axis=1, initial=0), flat.min(axis=1, initial=0)
        if top.max(initial=0) <= 127 and bottom.min(initial=0) >= -128:
            return None
        plus = (top <= hi) & (bottom >= lo)
        minus = (-bottom <= hi) & (-top >= lo)
        if not np.all(plus | minus):
            return None
        return np.where(plus, 1, -1).astype(np.int64)

    @classmethod
    def build(cls, op: SharedKernel) -> "DigitConv | None":
        """The digit form of ``op``'s kernel, or None where it does not apply (see the class docstring)."""
        if op.groups != 1 or op.kernel[0].size > _MAX_DIGIT_TAPS:
            return None
        grid = kernel_units(op.kernel)
        torch = _onednn_int8() if grid is not None else None
        if grid is None or torch is None:
            return None
        units, e = grid
        # digits <= 4; every scaled digit sum a normal float32 (|sum| <= 2**17 units of 2**(8j - e))
        if np.abs(units).max(initial=0) > EXACT_SUM_UNITS or not -60 <= e <= 100:
            return None
        try:
            return cls(op, torch, units, e, pairs=_int8_dot_products(torch))
        except RuntimeError:  # oneDNN refusing the weights on this CPU: the other forms
            return None

    def _digits(self, spikes: NDArray[np.bool_]) -> NDArray[np.float32]:
        """The digit convolutions of ``spikes`` (B, n_pre) bool: (B, OH·OW, L·O) float32, channels last."""
        torch, op = self._torch, self.op
        b = spikes.shape[0]
        c, h, w = op.in_shape
        oh, ow = op.out_hw
        c_in = 2 * c if self.paired else c
        if compiled.available("channels_last"):  # NHWC bytes, seen as NCHW in channels_last memory (what oneDNN reads)
            x = torch.from_numpy(compiled.channels_last(spikes, c, self.paired).reshape(b, h, w, c_in)).permute(0, 3, 1, 2)
        else:
            s = np.ascontiguousarray(spikes).view(np.uint8).reshape(b, c, h, w)
            if self.paired:
                s = np.stack([s, s * np.uint8(255)], axis=2).reshape(b, c_in, h, w)
            x = torch.from_numpy(s).contiguous(memory_format=torch.channels_last)
        y = torch.ops.onednn.qconv2d_pointwise(x, 1.0, 0, self._packed, self._scales, self._zeros, None, *self._args, 1,
                                               1.0, 0, torch.float32, "none", [], "")
        return np.asarray(y.permute(0, 2, 3, 1).numpy()).reshape(b, oh * ow, -1)  # channels last: a view

    def __call__(self, spikes: NDArray[np.bool_]) -> NDArray[np.float32]:
        """``spikes`` (B, n_pre) bool through the kernel: (B, n_post) float32, the exact sums."""
        o = self._digits(spikes)
        b, n_p = o.shape[0], o.shape[1]
        n_o = self.op.kernel.shape[0]
        if compiled.available("digit_sum"):
            out = np.empty((b, n_o * n_p), dtype=np.float32)
            compiled.digit_sum(np.ascontiguousarray(o), self.n_digits, out)
            return out
        total = o.reshape(b, n_p, self.n_digits, n_o).sum(axis=2, dtype=np.float64)  # exact in float64
        return np.ascontiguousarray(total.astype(np.float32).transpose(0, 2, 1)).reshape(b, -1)

    def scan_if(self, spikes: NDArray[np.bool_], v: NDArray[np.float64], step_drive: Any, theta: float,
                out: NDArray[np.bool_], second: NDArray[Any] | tuple[Any, ...] | None = None) -> bool:
        """A block of a plain IF population fed by this convolution, in one pass; False if it cannot.

        ``spikes`` (tb·R, n_pre) bool, row ``i·R + r`` the input of step ``i`` of sample ``r``;
        ``v`` (R, n) float64 potentials (volts), ``out`` (tb, R, n) spikes and ``second`` (a
        residual join's other link: (tb, R, n) sums, or a gather) as :func:`.compiled.digit_if` takes them: the
        arrivals of :meth:`__call__` scanned as :func:`.compiled.if_scan` scans them, without a
        block of arrivals in memory.  False (nothing touched) without the compiled kernels or for
        a layout they do not take.
        """
        if not compiled.available() or spikes.shape[0] != out.shape[0] * v.shape[0]:
            return False
        return compiled.digit_if(self._digits(spikes), self.n_digits, v, step_drive, theta, out, second)


class Float32Arrays(NumpyArrays):
    """numpy in single precision (``SimulationConfig.precision="float32"``, opt-in).

    State, weights and arrivals are float32; convolutions are dense float32 products
    (:class:`DenseConv32`), dense matrices plain float32 GEMMs, in the libraries' own summation
    order; with numba, the layer-major schedule pushes a convolution that feeds a plain IF
    population as float32 events and scans it in the same pass (:func:`.compiled.conv_if`).  Max-pool gates whose values are all dyadic still run exactly in integers
    (:mod:`.layered`).  Spikes may differ from the exact float64 path's: a threshold crossing moves
    when a rounding does.
    """

    name = "numpy-float32"

    def asarray(self, a: Any) -> Any:
        return np.asarray(a, dtype=np.float32)

    def zeros(self, shape: tuple[int, ...], dtype: str = "float64") -> Any:
        return np.zeros(shape, dtype=np.float32 if dtype == "float64" else dtype)

    def as_float(self, spikes: Any) -> Any:
        return spikes.astype(np.float32)

    def subtract_where(self, v: Any, theta: Any, cond: Any) -> Any:
        if isinstance(theta, float) and math.isfinite(theta) and theta >= 0.0:
            np.subtract(v, np.multiply(cond, theta, dtype=v.dtype), out=v)
        else:
            np.subtract(v, theta, out=v, where=cond, casting="same_kind")
        return v

    def kernel(self, op: SharedKernel) -> Any:
        return DenseConv32(op) if op.groups == 1 else np.ascontiguousarray(op.kernel[:, 0], dtype=np.float32)

    def conv(self, prepared: Any, op: SharedKernel, x: Any) -> Any:
        if op.groups == 1:
            return prepared(x)
        return window_sum(prepared, x.reshape((x.shape[0],) + op.in_shape).astype(np.float32), op, np)

    def matrix(self, m: sp.csr_matrix) -> Any:
        kind, wt = super().matrix(m)
        if kind == "gather":
            return kind, (wt[0], wt[1].astype(np.float32))
        if kind in ("dense", "dense32"):
            return "dense", np.ascontiguousarray(wt, dtype=np.float32)
        return kind, (wt[0].astype(np.float32), wt[1].astype(np.float32))

    # float32 pulls run at about 0.6x the float64 ones (same ResNet-8 convolution): from 5 %
    pull_above = 0.05

    def matmul(self, prepared: Any, x: Any) -> Any:
        kind, wt = prepared
        if kind == "dense":
            active = np.flatnonzero(x.any(axis=0))
            if active.size < _GATHER_BELOW * x.shape[1]:
                return x[:, active].astype(np.float32) @ wt[active]
            return x.astype(np.float32) @ wt
        if kind == "sparse":
            wt, m = wt
            if np.count_nonzero(x) > self.pull_above * x.size:
                return self._pull(m, x, np.float32)
            return np.asarray((_spike_csr(x, np.float32) @ wt).toarray())
        return super().matmul(prepared, x)  # gathers: float32 weights give float32 sums


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
        if kind == "dense" and self.device.type == "cpu":
            # the same ordered sums as the numpy engine and the reference (torch's GEMM regroups them)
            xn = x.numpy()
            active = np.flatnonzero(xn.any(axis=0))
            wn = w.numpy()
            return self.lib.from_numpy(ordered_matmul(xn[:, active].astype(np.float64), wn[active]))
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
