"""Compiled event kernels for the tensor engine (numba; optional: ``pip install "spikebridge[fast]"``).

The numpy/scipy path turns each block's spikes into event lists (unfolded
windows, ``flatnonzero``, a CSR matrix) before scipy adds the weights; most of
its time on convolutional networks goes to building those lists.  These
kernels walk the fired inputs directly and push each one's weights onto its
outputs, so they touch each synapse of a fired input once and build nothing.

Both kernels visit fired inputs in pre-synaptic index order and add one weight
per fired synapse into an accumulator that starts at ``0.0``: every output is
the same ordered sum, one rounding per addition, that scipy's CSR product and
Brian2's synapse loop compute, bit for bit (tests/test_compiled_kernels.py
compares them on random and shipped networks).  No ``fastmath``: reassociation
would break that.

The kernels release the GIL (``nogil``), so the engine's concurrent batch
parts (``SimulationConfig.threads``) run them on separate cores.  numba compiles
each kernel once per process and argument types, about 1-2 s in all on first
use; nothing is cached on disk.

Without numba (or with :data:`ENABLED` False) :func:`available` is False and
the engine keeps its numpy/scipy products.
"""

from __future__ import annotations

import importlib
import threading
from typing import Any

import numpy as np
from numpy.typing import NDArray

__all__ = ["ENABLED", "available", "conv_events", "csr_events", "gather_add_int", "if_scan"]

#: use the compiled kernels when numba is importable; False keeps the numpy/scipy products
#: (benchmarks compare the two in one run; tests check both give the same sums)
ENABLED = True

_kernels: dict[str, Any] | None = None
_tried = False
_lock = threading.Lock()  # concurrent batch parts may ask first at the same time


def _build() -> dict[str, Any] | None:
    try:
        numba = importlib.import_module("numba")
    except ImportError:
        return None
    jit = numba.njit(nogil=True, cache=False, boundscheck=False, fastmath=False)

    @jit  # type: ignore[misc]
    def conv_push(s: Any, wt: Any, sh: int, sw: int, ph: int, pw: int, acc: Any, out: Any) -> None:  # pragma: no cover - compiled
        # s (B, C, H, W) uint8 spikes; wt (C, kh, kw, O); acc (OH, OW, O) scratch; out (B, O*OH*OW).
        # Inputs in pre-index order (c, y, x); the O weights of one tap are contiguous, so the
        # innermost loop is a vector add into one sample's accumulator (kept in cache), which is
        # then written out in the population's (o, y, x) order
        n_b, n_c, n_h, n_w = s.shape
        kh, kw, n_o = wt.shape[1], wt.shape[2], wt.shape[3]
        oh, ow = acc.shape[0], acc.shape[1]
        for b in range(n_b):
            acc[:] = 0.0
            for c in range(n_c):
                for yy in range(n_h):
                    for xx in range(n_w):
                        if s[b, c, yy, xx]:
                            for i in range(kh):
                                ty = yy + ph - i
                                if ty < 0:
                                    break
                                if ty % sh:
                                    continue
                                y = ty // sh
                                if y >= oh:
                                    continue
                                for j in range(kw):
                                    tx = xx + pw - j
                                    if tx < 0:
                                        break
                                    if tx % sw:
                                        continue
                                    x = tx // sw
                                    if x >= ow:
                                        continue
                                    for o in range(n_o):
                                        acc[y, x, o] += wt[c, i, j, o]
            for o in range(n_o):
                for y in range(oh):
                    for x in range(ow):
                        out[b, (o * oh + y) * ow + x] = acc[y, x, o]

    @jit  # type: ignore[misc]
    def if_scan_k(v: Any, drive: Any, add_drive: bool, theta: float, a1: Any, a2: Any, n_arr: int, spikes: Any,
                  pot: Any, keep_pot: bool) -> None:  # pragma: no cover - compiled
        # v (R, n); drive (R, n), usually a broadcast view (row stride 0: no copy per block);
        # a1, a2 (tb, R, n) arrivals; spikes (tb, R, n) uint8; pot (tb, R, n).  Neurons in tiles
        # of 256 so that a tile's potentials stay in L1 while its steps run.  Each step's loop is
        # over 1-D slices with no flags inside: the form LLVM vectorises (3x faster than one loop
        # testing add_drive / n_arr per neuron)
        tb = spikes.shape[0]
        n_r, n = v.shape
        for r in range(n_r):
            for e0 in range(0, n, 256):
                m = min(n, e0 + 256) - e0
                vv = v[r, e0:e0 + m]
                dd = drive[r, e0:e0 + m]
                for i in range(tb):
                    sp = spikes[i, r, e0:e0 + m]
                    if n_arr == 0 and add_drive:
                        for e in range(m):
                            x = vv[e] + dd[e]
                            f = x >= theta
                            sp[e] = f
                            vv[e] = x - (theta if f else 0.0)  # numpy's v - spikes·θ: x - 0.0 is x (also -0.0)
                    elif n_arr == 1 and add_drive:
                        aa = a1[i, r, e0:e0 + m]
                        for e in range(m):
                            x = vv[e] + dd[e] + aa[e]
                            f = x >= theta
                            sp[e] = f
                            vv[e] = x - (theta if f else 0.0)
                    elif n_arr == 1:
                        aa = a1[i, r, e0:e0 + m]
                        for e in range(m):
                            x = vv[e] + aa[e]
                            f = x >= theta
                            sp[e] = f
                            vv[e] = x - (theta if f else 0.0)
                    else:  # the rare forms: no input at all, or two arrival groups
                        for e in range(m):
                            x = vv[e]
                            if add_drive:
                                x += dd[e]
                            if n_arr > 0:
                                x += a1[i, r, e0 + e]
                            if n_arr > 1:
                                x += a2[i, r, e0 + e]
                            f = x >= theta
                            sp[e] = f
                            vv[e] = x - (theta if f else 0.0)
                    if keep_pot:
                        pp = pot[i, r, e0:e0 + m]
                        for e in range(m):
                            pp[e] = vv[e]

    @jit  # type: ignore[misc]
    def csr_push(s: Any, indptr: Any, indices: Any, data: Any, out: Any) -> None:  # pragma: no cover - compiled
        # s (B, n_pre) uint8; (indptr, indices, data) one row per pre neuron; out (B, n_post) zeroed
        n_b, n_pre = s.shape
        for b in range(n_b):
            for p in range(n_pre):
                if s[b, p]:
                    for k in range(indptr[p], indptr[p + 1]):
                        out[b, indices[k]] += data[k]

    @jit  # type: ignore[misc]
    def gather_add(x: Any, idx: Any, w: Any, acc: Any) -> None:  # pragma: no cover - compiled
        # acc[r, k] += Σ_f x[r, idx[f, k]]·w[f, k]; integers (max-pool gates), so any order is exact
        n_r = x.shape[0]
        n_f, n = idx.shape
        for r in range(n_r):
            for f in range(n_f):
                for k in range(n):
                    acc[r, k] += x[r, idx[f, k]] * w[f, k]

    return {"conv": conv_push, "csr": csr_push, "if_scan": if_scan_k, "gather": gather_add}


def available() -> bool:
    """True when the compiled kernels can run: :data:`ENABLED` and numba importable."""
    global _kernels, _tried
    if not ENABLED:
        return False
    if not _tried:
        with _lock:
            if not _tried:
                _kernels = _build()
                _tried = True
    return _kernels is not None


def _as_u8(spikes: NDArray[Any]) -> NDArray[np.uint8]:
    s = np.ascontiguousarray(spikes)
    return s.view(np.uint8) if s.dtype == np.bool_ else s.astype(np.uint8)


def conv_events(spikes: NDArray[Any], wt: NDArray[Any], in_shape: tuple[int, int, int], stride: tuple[int, int],
                padding: tuple[int, int], out_hw: tuple[int, int]) -> NDArray[Any]:
    """A full convolution of 0/1 spikes, pushed event by event.

    Parameters
    ----------
    spikes : ndarray, shape (B, C·H·W), bool
        One row per sample (and step); inputs in the population's (c, y, x) order.
    wt : ndarray, shape (C, kh, kw, O), float64 or float32
        The shared kernel with the output channel last (``kernel.transpose(1, 2, 3, 0)``).
    in_shape : (C, H, W)
    stride, padding : (int, int)
    out_hw : (OH, OW)

    Returns
    -------
    ndarray, shape (B, O·OH·OW), ``wt``'s dtype
        Each output the ordered sum (pre-synaptic index order, from 0.0) of the weights of its
        fired inputs, in the population's (o, y, x) order.
    """
    assert _kernels is not None, "compiled.conv_events called without available()"
    b = spikes.shape[0]
    oh, ow = out_hw
    o = wt.shape[3]
    out = np.empty((b, o * oh * ow), dtype=wt.dtype)
    acc = np.empty((oh, ow, o), dtype=wt.dtype)
    _kernels["conv"](_as_u8(spikes).reshape((b,) + tuple(in_shape)), wt, stride[0], stride[1], padding[0], padding[1], acc, out)
    return out


def csr_events(spikes: NDArray[Any], indptr: NDArray[np.int64], indices: NDArray[np.int64], data: NDArray[Any],
               n_post: int) -> NDArray[Any]:
    """``spikes @ M`` for a sparse ``M`` (pre × post, CSR), pushed event by event.

    Parameters
    ----------
    spikes : ndarray, shape (B, n_pre), bool
    indptr, indices, data : ndarray
        ``M`` in CSR form, one row per pre-synaptic neuron, columns (post indices) in any order.
    n_post : int

    Returns
    -------
    ndarray, shape (B, n_post), ``data``'s dtype
        Each output the ordered sum (pre-synaptic index order, from 0.0) of its fired synapses' weights.
    """
    assert _kernels is not None, "compiled.csr_events called without available()"
    out = np.zeros((spikes.shape[0], n_post), dtype=data.dtype)
    _kernels["csr"](_as_u8(spikes), indptr, indices, data, out)
    return out


def if_scan(v: NDArray[Any], step_drive: Any, theta: float, arrivals: list[NDArray[Any]], spikes: NDArray[np.bool_],
            pot: NDArray[Any] | None) -> bool:
    """A block of a plain IF population (reset by subtraction), in place; False if it cannot run here.

    Parameters
    ----------
    v : ndarray, float64, C-contiguous
        Membrane potentials (volts; any shape, N values), updated in place.
    step_drive : float or ndarray
        ``dt·drive`` added every step, broadcastable to ``v``; the float ``0.0`` adds nothing (as in
        the numpy scan: ``-0.0 + 0.0`` would be ``0.0``).
    theta : float
        Finite threshold >= 0 (volts).
    arrivals : list of ndarray, each (tb, ...) with ``v``'s shape per step
        Summed synaptic arrivals per link group, added in list order after the drive (at most 2).
    spikes : ndarray, (tb, ...) bool, C-contiguous
        Written: ``v >= theta`` per step, after the arrivals.
    pot : ndarray (tb, ...) or None
        Written when given: ``v`` after each step's reset.

    Returns
    -------
    bool
        True when the block ran here; False (nothing touched) when it has more than 2 arrival
        arrays, is not float64 throughout or has a layout the kernel does not take: the caller's
        numpy scan must run it.
    """
    assert _kernels is not None, "compiled.if_scan called without available()"
    # float64 only: in float32 numpy adds a float64 drive in float64 and rounds once, which a
    # float32 kernel would not reproduce
    tb = spikes.shape[0]
    if (len(arrivals) > 2 or v.dtype != np.float64 or not v.flags.c_contiguous or not spikes.flags.c_contiguous
            or any(a.dtype != np.float64 or a.shape != (tb,) + v.shape for a in arrivals)
            or np.asarray(step_drive).dtype != np.float64
            or (pot is not None and (pot.dtype != np.float64 or not pot.flags.c_contiguous))):
        return False
    n = v.shape[-1] if v.ndim else 1
    rows = v.size // n if n else 0
    shape3 = (tb, rows, n)
    dummy = np.zeros((1, 1, 1))
    flat = [np.ascontiguousarray(a).reshape(shape3) for a in arrivals]
    a1 = flat[0] if flat else dummy
    a2 = flat[1] if len(flat) > 1 else dummy
    add_drive = not (isinstance(step_drive, float) and step_drive == 0.0)
    # a view, not a copy: a per-neuron drive broadcast over the batch has row stride 0
    drive = np.broadcast_to(np.asarray(step_drive, dtype=np.float64), v.shape).reshape(rows, n)
    _kernels["if_scan"](v.reshape(rows, n), drive, add_drive, float(theta), a1, a2, len(flat),
                        spikes.reshape(shape3).view(np.uint8), pot.reshape(shape3) if pot is not None else dummy,
                        pot is not None)
    return True


def gather_add_int(x: NDArray[np.bool_], idx: NDArray[np.intp], w: NDArray[Any], acc: NDArray[Any]) -> None:
    """``acc += Σ_f x[:, idx[f]]·w[f]`` in integers, in place (the integer max-pool gates).

    Parameters
    ----------
    x : ndarray, shape (R, n_pre), bool
    idx : ndarray, shape (F, n), intp
        Pre-synaptic index of each post neuron's f-th synapse.
    w : ndarray, shape (F, n), integer
        Their weights, in ``acc``'s integer type (the caller has checked every sum fits).
    acc : ndarray, shape (R, n), integer, C-contiguous
    """
    assert _kernels is not None, "compiled.gather_add_int called without available()"
    _kernels["gather"](_as_u8(x), np.ascontiguousarray(idx), np.ascontiguousarray(w, dtype=acc.dtype), acc)
