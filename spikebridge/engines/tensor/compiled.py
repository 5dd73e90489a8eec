"""Compiled event kernels for the tensor engine (numba; optional: ``pip install "spikebridge[fast]"``).

The numpy/scipy path turns each block's spikes into event lists (unfolded
windows, ``flatnonzero``, a CSR matrix) before scipy adds the weights; most of
its time on convolutional networks goes to building those lists.  These
kernels walk the fired inputs directly and push each one's weights onto its
outputs, so they touch each synapse of a fired input once and build nothing.

The float kernels (convolution, CSR, dense) visit fired inputs in pre-synaptic
index order and add one weight per fired synapse into an accumulator that starts
at ``0.0``: every output is the same ordered sum, one rounding per addition,
that scipy's CSR product and Brian2's synapse loop compute, bit for bit; the
fused kernels (``conv_if``, ``int_scan``) then run the numpy scan's operations
in its order, and the max-pool gates' sums are integers, exact in any order
(tests/engines/test_compiled.py compares each with the numpy path on random and
shipped networks).  No ``fastmath``: reassociation would break that.

The kernels release the GIL (``nogil``), so the engine's concurrent batch
parts (``SimulationConfig.threads``) run them on separate cores.  numba compiles
each kernel, for the argument types the engine passes (:data:`_WARM`), the first
time :func:`available` is asked for it by name (0.1-2.3 s a kernel, 6.6 s for
all but the fixed-point forms on one core of the 2026 AMD EPYC), so a network
compiles only the kernels it runs: a dense network's ``simulate`` starts about
4 s sooner than when every kernel compiled at the first ask.  Nothing is cached
on disk: numba's cache index is a pickle, and spikebridge never loads one.  A
numba that cannot load or compile them gives one ``RuntimeWarning`` and the
numpy path (the same spikes, slower), not a traceback.

Without numba (or with :data:`ENABLED` False) :func:`available` is False and
the engine keeps its numpy/scipy products.
"""

from __future__ import annotations

import importlib
import sys
import threading
import warnings
from typing import Any

import numpy as np
from numpy.typing import NDArray

__all__ = ["ENABLED", "FIXED_POINT_FORMS", "FORMS", "available", "channels_last", "conv_events", "conv_if", "depthwise", "count_pack", "csr_events", "digit_if", "digit_sum", "dense_events", "flipped_kernel", "gather_add_int", "gather_plan", "if_scan", "int_scan", "pool4_if"]

#: use the compiled kernels when numba is importable; False keeps the numpy/scipy products
#: (benchmarks compare the two in one run; tests check both give the same sums)
ENABLED = True

_kernels: dict[str, Any] | None = None
_tried = False
# the names of _WARM whose forms have compiled (the probe, "dense", in _build) and those that failed
_ready: set[str] = set()
_failed: set[str] = set()
_lock = threading.Lock()  # concurrent batch parts may ask first at the same time


def _build() -> dict[str, Any] | None:
    try:
        numba = importlib.import_module("numba")
    except ImportError:
        return None
    except Exception as e:  # a numba that cannot load (e.g. built for another numpy): the numpy path
        _give_up("import numba", e)
        return None
    jit = numba.njit(nogil=True, cache=False, boundscheck=False, fastmath=False)
    inline = numba.njit(nogil=True, cache=False, boundscheck=False, fastmath=False, inline="always")

    @inline  # type: ignore[misc]
    def taps(t: int, n_out: int, k: int, st: int) -> tuple[int, int]:  # pragma: no cover - compiled
        # kernel indices i0, i0 + st, .. i1 of an input at padded coordinate t: those with
        # (t - i) % st == 0 and 0 <= (t - i) // st < n_out (i0 > i1: none)
        lo = max(0, t - (n_out - 1) * st)
        return lo + (t - lo) % st, min(k - 1, t)

    @inline  # type: ignore[misc]
    def unfold(acc: Any, dst: Any, add: bool) -> None:  # pragma: no cover - compiled
        # an accumulator (OH, OW, O) into a row in the population's (o, y, x) order: written, or
        # added (a second link's sums: one addition per output, as the unfused path adds them)
        oh, ow, n_o = acc.shape
        for o in range(n_o):
            for y in range(oh):
                for x in range(ow):
                    if add:
                        dst[(o * oh + y) * ow + x] += acc[y, x, o]
                    else:
                        dst[(o * oh + y) * ow + x] = acc[y, x, o]

    @inline  # type: ignore[misc]
    def scan_step(vv: Any, dd: Any, aa: Any, add_drive: bool, theta: float, theta_sub: float,
                  sp: Any) -> None:  # pragma: no cover - compiled
        # one step of plain IF neurons vv with one arrival group aa (and the drive dd): the scan of
        # if_scan_k and conv_if_k.  One flag-free loop per form (LLVM vectorises it); each sum is
        # stored to vv and read back, so vv's type rounds it where numpy's in-place additions do
        if add_drive:
            for e in range(vv.shape[0]):
                vv[e] = vv[e] + dd[e]
                x = vv[e] + aa[e]
                f = x >= theta
                sp[e] = f
                vv[e] = x - (theta_sub if f else 0.0)  # numpy's v - spikes·θ: x - 0.0 is x (also -0.0)
        else:
            for e in range(vv.shape[0]):
                x = vv[e] + aa[e]
                f = x >= theta
                sp[e] = f
                vv[e] = x - (theta_sub if f else 0.0)

    @jit  # type: ignore[misc]
    def push_row(sb: Any, wf: Any, sh: int, sw: int, ph: int, pw: int, acc: Any) -> None:  # pragma: no cover - compiled
        # one row's (sample and step's) fired inputs sb (C, H, W) pushed onto acc (OH, OW, O), zeroed
        # here.  Inputs in pre-index order (c, y, x); any order of one input's taps keeps every
        # output's order of inputs.  The valid kernel rows / columns of an input are ranges (one
        # modulo per input, none per tap); at stride 1 a row's valid columns land on consecutive
        # outputs, and with the reversed kernel wf (C, kh, kw, O) their O weights are consecutive
        # too: one vector add of (columns × O)
        n_c, n_h, n_w = sb.shape
        kh, kw, n_o = wf.shape[1], wf.shape[2], wf.shape[3]
        oh, ow = acc.shape[0], acc.shape[1]
        arow = acc.reshape(oh, ow * n_o)
        wrow = wf.reshape(n_c, kh, kw * n_o)
        acc[:] = 0.0
        for c in range(n_c):
            for yy in range(n_h):
                ty = yy + ph
                i0, i1 = taps(ty, oh, kh, sh)
                if i0 > i1:
                    continue
                for xx in range(n_w):
                    if sb[c, yy, xx]:
                        tx = xx + pw
                        j0, j1 = taps(tx, ow, kw, sw)
                        if j0 > j1:
                            continue
                        if sw == 1:
                            # outputs x = tx - j1 .. tx - j0 ascending; reversed columns kw-1-j1 ..
                            m = (j1 - j0 + 1) * n_o
                            a0 = (tx - j1) * n_o
                            w0 = (kw - 1 - j1) * n_o
                            for i in range(i0, i1 + 1, sh):
                                dst = arow[(ty - i) // sh, a0:a0 + m]
                                src = wrow[c, i, w0:w0 + m]
                                for k in range(m):
                                    dst[k] += src[k]
                        else:
                            for i in range(i0, i1 + 1, sh):
                                y = (ty - i) // sh
                                x = (tx - j0) // sw
                                for j in range(j0, j1 + 1, sw):
                                    dst = acc[y, x]
                                    src = wf[c, i, kw - 1 - j]
                                    for o in range(n_o):
                                        dst[o] += src[o]
                                    x -= 1

    @jit  # type: ignore[misc]
    def conv_push(s: Any, wf: Any, sh: int, sw: int, ph: int, pw: int, acc: Any, out: Any) -> None:  # pragma: no cover - compiled
        # s (B, C, H, W) uint8 spikes; acc (OH, OW, O) scratch; out (B, O*OH*OW): each row pushed
        # onto the accumulator (kept in cache), written out in the population's (o, y, x) order
        for b in range(s.shape[0]):
            push_row(s[b], wf, sh, sw, ph, pw, acc)
            unfold(acc, out[b], False)

    @jit  # type: ignore[misc]
    def conv_if_k(s: Any, wf: Any, geo: Any, acc: Any, kind2: int, s2: Any, wf2: Any, acc2: Any, gidx: Any, gw: Any,
                  a: Any, v: Any, drive: Any, add_drive: bool, theta: float, theta_sub: float,
                  spikes: Any) -> None:  # pragma: no cover - compiled
        # a plain IF population fed by a convolution (and by kind2 = 1: a second convolution, 2: a
        # gather, 0: nothing else), fused: s (tb, B, C, H, W) uint8 input spikes of a block; geo
        # the strides and paddings (sh, sw, ph, pw, then the second convolution's); v (B, n)
        # potentials in (o, y, x) order, n = O*OH*OW; drive (B, n) or (1, n) (_drive_rows); spikes
        # (tb, B, n) uint8, written; acc, acc2 (OH, OW, O) and a (n,) scratch.  The gather: s2
        # (tb, B, 1, 1, n_pre) uint8, gidx / gw (F, n) as the numpy gather takes them.  Per sample, step
        # by step: push the step's inputs, then the scan of if_scan_k on that step's arrivals while
        # they are in L1, not a (tb, B, n) block through memory.  Two links' sums are added as the
        # unfused path adds them (one addition, which commutes).  Weights, sums and potentials in
        # v's type (float64, or float32 for precision="float32"), rounded as in if_scan_k
        tb, n_b = s.shape[0], s.shape[1]
        n = v.shape[1]
        n_f = gidx.shape[0]
        for b in range(n_b):
            vv = v[b]
            dd = drive[b if drive.shape[0] > 1 else 0]
            for i in range(tb):
                push_row(s[i, b], wf, geo[0], geo[1], geo[2], geo[3], acc)
                unfold(acc, a, False)
                if kind2 == 1:
                    push_row(s2[i, b], wf2, geo[4], geo[5], geo[6], geo[7], acc2)
                    unfold(acc2, a, True)
                elif kind2 == 2:
                    xr = s2[i, b, 0, 0]
                    for e in range(n):
                        g = xr[gidx[0, e]] * gw[0, e]
                        for f in range(1, n_f):
                            g += xr[gidx[f, e]] * gw[f, e]
                        a[e] += g
                scan_step(vv, dd, a, add_drive, theta, theta_sub, spikes[i, b])

    @jit  # type: ignore[misc]
    def if_scan_k(v: Any, drive: Any, add_drive: bool, theta: float, theta_sub: float, a1: Any, a2: Any, n_arr: int,
                  spikes: Any, pot: Any, keep_pot: bool) -> None:  # pragma: no cover - compiled
        # v (R, n); drive (R, n) or (1, n) float64, C-contiguous (_drive_rows);
        # a1, a2 (tb, R, n) arrivals in v's type; spikes (tb, R, n) uint8; pot (tb, R, n).  Neurons
        # in tiles of 256 so that a tile's potentials stay in L1 while its steps run.  Each step's
        # loop is over 1-D slices with no flags inside: the form LLVM vectorises (3x faster than one
        # loop testing add_drive / n_arr per neuron).  Each sum is stored to v and read back before
        # the next operation: v's type rounds it there, as numpy's in-place additions do (float32
        # v: float32(v + drive) in float64, then float32 additions); for float64 the compiler drops
        # the reload.  theta is compared with, theta_sub subtracted (see if_scan)
        tb = spikes.shape[0]
        n_r, n = v.shape
        for r in range(n_r):
            for e0 in range(0, n, 256):
                m = min(n, e0 + 256) - e0
                vv = v[r, e0:e0 + m]
                dd = drive[r if drive.shape[0] > 1 else 0, e0:e0 + m]
                for i in range(tb):
                    sp = spikes[i, r, e0:e0 + m]
                    if n_arr == 0 and add_drive:
                        for e in range(m):
                            vv[e] = vv[e] + dd[e]
                            x = vv[e]
                            f = x >= theta
                            sp[e] = f
                            vv[e] = x - (theta_sub if f else 0.0)  # numpy's v - spikes·θ: x - 0.0 is x (also -0.0)
                    elif n_arr == 1:
                        scan_step(vv, dd, a1[i, r, e0:e0 + m], add_drive, theta, theta_sub, sp)
                    else:  # the rare forms: no input at all, or two arrival groups
                        for e in range(m):
                            if add_drive:
                                vv[e] = vv[e] + dd[e]
                            if n_arr > 0:
                                vv[e] = vv[e] + a1[i, r, e0 + e]
                            if n_arr > 1:
                                vv[e] = vv[e] + a2[i, r, e0 + e]
                            x = vv[e]
                            f = x >= theta
                            sp[e] = f
                            vv[e] = x - (theta_sub if f else 0.0)
                    if keep_pot:
                        pp = pot[i, r, e0:e0 + m]
                        for e in range(m):
                            pp[e] = vv[e]

    @jit  # type: ignore[misc]
    def int_scan_k(v: Any, acc: Any, has_acc: bool, drive: int, theta: Any, subtract: bool, v_reset: int,
                   spikes: Any) -> None:  # pragma: no cover - compiled
        # an integer population's block (max-pool gates; see layered._IntPop): v (R, n) int16/32;
        # acc (tb, R, n) summed integer arrivals; theta (n,) int64; spikes (tb, R, n) uint8.  Every
        # value provably fits v's type (layered._int_dtype), so the int64 arithmetic here gives
        # numpy's in-place results exactly
        tb = spikes.shape[0]
        n_r, n = v.shape
        for r in range(n_r):
            vv = v[r]
            for i in range(tb):
                sp = spikes[i, r]
                if has_acc:
                    aa = acc[i, r]
                    if subtract:
                        for e in range(n):
                            x = vv[e] + drive + aa[e]
                            f = x >= theta[e]
                            sp[e] = f
                            vv[e] = x - (theta[e] if f else 0)
                    else:
                        for e in range(n):
                            x = vv[e] + drive + aa[e]
                            f = x >= theta[e]
                            sp[e] = f
                            vv[e] = v_reset if f else x
                else:
                    for e in range(n):
                        x = vv[e] + drive
                        f = x >= theta[e]
                        sp[e] = f
                        vv[e] = (x - theta[e] if subtract else v_reset) if f else x

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
    def count_pack(block: Any, counts: Any, bits: Any, t0: int, pack: bool) -> None:  # pragma: no cover - compiled
        # block (tb, B, n) uint8 0/1 spikes; counts (B, n) uint16, += spikes; bits (B, T, ceil(n/8))
        # uint8, rows t0 .. t0+tb-1 written as np.packbits does (neuron j: bit 7 - j % 8 of byte j // 8).
        # One pass over the block where numpy makes two and a transposed copy
        tb, n_b, n = block.shape
        full = n // 8
        for b in range(n_b):
            cb = counts[b]
            for i in range(tb):
                row = block[i, b]
                for e in range(n):
                    cb[e] += row[e]
                if pack:
                    out = bits[b, t0 + i]
                    for k in range(full):
                        j = 8 * k
                        out[k] = ((row[j] << 7) | (row[j + 1] << 6) | (row[j + 2] << 5) | (row[j + 3] << 4)
                                  | (row[j + 4] << 3) | (row[j + 5] << 2) | (row[j + 6] << 1) | row[j + 7])
                    if 8 * full < n:
                        last = 0
                        for j in range(8 * full, n):
                            last |= row[j] << (7 - (j - 8 * full))
                        out[full] = last

    @jit  # type: ignore[misc]
    def dense_push(s: Any, wt: Any, out: Any) -> None:  # pragma: no cover - compiled
        # s (B, n_pre) uint8; wt (n_pre, n_post) C-contiguous; out (B, n_post) zeroed: each fired
        # pre neuron's row added in pre-index order, one contiguous vector add
        n_b, n_pre = s.shape
        n_post = wt.shape[1]
        for b in range(n_b):
            ob = out[b]
            for p in range(n_pre):
                if s[b, p]:
                    row = wt[p]
                    for k in range(n_post):
                        ob[k] += row[k]

    @jit  # type: ignore[misc]
    def gather_add(x: Any, x16: Any, idx: Any, w: Any, plan: Any, acc: Any) -> None:  # pragma: no cover - compiled
        # acc[r, k] += Σ_f x[r, idx[f, k]]·w[f, k]; integers (max-pool gates), so any order is exact.
        # A row f with plan[f, 1] > 0 is affine (see gather_plan): its weight is plan[f, 9] and its
        # innermost run reads x at stride 1, or at stride 2 as one byte of each uint16 of x16 (0/1
        # values: the low or the high byte), contiguous loads that LLVM vectorises where a gather
        # is one scalar load per synapse (6x on MNIST LeNet's 2×2 pool gates)
        n_r = x.shape[0]
        n_f, n = idx.shape
        for r in range(n_r):
            xr = x[r]
            ar = acc[r]
            for f in range(n_f):
                n0 = plan[f, 1]
                if n0 <= 0:
                    for k in range(n):
                        ar[k] += xr[idx[f, k]] * w[f, k]
                    continue
                off, s0, n1, s1, n2, s2, n3, s3, wf = (plan[f, 0], plan[f, 2], plan[f, 3], plan[f, 4], plan[f, 5],
                                                       plan[f, 6], plan[f, 7], plan[f, 8], plan[f, 9])
                k = 0
                for k3 in range(n3):
                    for k2 in range(n2):
                        for k1 in range(n1):
                            base = off + k1 * s1 + k2 * s2 + k3 * s3
                            dst = ar[k:k + n0]
                            if s0 == 1:
                                src = xr[base:base + n0]
                                for k0 in range(n0):
                                    dst[k0] += src[k0] * wf
                            else:
                                sh = (base & 1) * 8
                                src16 = x16[r, base >> 1:(base >> 1) + n0]
                                for k0 in range(n0):
                                    dst[k0] += ((src16[k0] >> sh) & 1) * wf
                            k += n0

    @inline  # type: ignore[misc]
    def digit_row(row: Any, n_digits: int, tmp: Any) -> None:  # pragma: no cover - compiled
        # row (P, L·O) float32, channel j·O + c: output channel c's digit-j sum, scaled by
        # 256**j·2**-e; tmp (P, O) float32 written with Σ_j, added from the highest digit down.
        # Exact in float32: after the digits L-1 .. j the partial sum is a multiple of 256**j
        # units at most 2**24 + 129·K·256**(j-1) in magnitude (K taps, K < 2**17), i.e. at most
        # 2**24 multiples: representable, so no addition rounds
        # one loop per digit count (a loop over the digits inside is 6x slower: not vectorised)
        n_p = row.shape[0]
        n = tmp.shape[1]
        if n_digits == 1:
            for p in range(n_p):
                for c in range(n):
                    tmp[p, c] = row[p, c]
        elif n_digits == 2:
            for p in range(n_p):
                for c in range(n):
                    tmp[p, c] = row[p, n + c] + row[p, c]
        elif n_digits == 3:
            for p in range(n_p):
                for c in range(n):
                    tmp[p, c] = (row[p, 2 * n + c] + row[p, n + c]) + row[p, c]
        else:
            for p in range(n_p):
                for c in range(n):
                    tmp[p, c] = ((row[p, 3 * n + c] + row[p, 2 * n + c]) + row[p, n + c]) + row[p, c]

    @jit  # type: ignore[misc]
    def digit_sum_k(o: Any, n_digits: int, out: Any, tmp: Any) -> None:  # pragma: no cover - compiled
        # o (B, P, L·O) float32 (channels last, as oneDNN writes them); out (B, O·P) float32 in the
        # population's (c, p) order; tmp (P, O)
        n_p, n_o = tmp.shape
        for b in range(o.shape[0]):
            digit_row(o[b], n_digits, tmp)
            dst = out[b]
            for c in range(n_o):
                for p in range(n_p):
                    dst[c * n_p + p] = tmp[p, c]

    @jit  # type: ignore[misc]
    def digit_if_k(o: Any, n_digits: int, kind2: int, a2: Any, s2: Any, gidx: Any, gw: Any, v: Any, drive: Any,
                   add_drive: bool, theta: float, theta_sub: float, spikes: Any, tmp: Any,
                   arow: Any) -> None:  # pragma: no cover - compiled
        # digit_sum_k and if_scan_k's one-group scan in one pass: o (tb·R, P, L·O) float32, row
        # i·R + r step i of sample r; a second link's sums added to the digits' in float64, as
        # conv_if_k adds two links: kind2 = 1, a2 (tb, R, n) computed sums; kind2 = 2, a gather
        # from s2 (tb, R, n_pre) uint8 spikes with gidx / gw (F, n) (conv_if_k's, the numpy
        # gather's order), read here instead of through a block of sums; kind2 = 3, the same
        # with one tap from the same index (an identity). v (R, n), drive (R, n) or (1, n)
        # (_drive_rows); spikes (tb, R, n) uint8; a row's sums go through tmp (P, O) and arow
        # (n,) float64 (cache-resident) instead of a block of arrivals
        tb = spikes.shape[0]
        n_r = v.shape[0]
        n_p, n_o = tmp.shape
        n_f = gidx.shape[0]
        for r in range(n_r):
            vv = v[r]
            dd = drive[r if drive.shape[0] > 1 else 0]
            for i in range(tb):
                src = o[i * n_r + r]
                if n_digits > 1:  # one digit (or a paired sum) is read as it is: no copy through tmp
                    digit_row(src, n_digits, tmp)
                    src = tmp
                for c in range(n_o):
                    for p in range(n_p):
                        arow[c * n_p + p] = src[p, c]
                if kind2 == 1:
                    ar2 = a2[i, r]
                    for e in range(arow.shape[0]):
                        arow[e] += ar2[e]
                elif kind2 == 2:
                    xr = s2[i, r]
                    for e in range(arow.shape[0]):
                        g = xr[gidx[0, e]] * gw[0, e]
                        for f in range(1, n_f):
                            g += xr[gidx[f, e]] * gw[f, e]
                        arow[e] += g
                elif kind2 == 3:  # a one-tap gather from the same index (an identity shortcut): loads in a row
                    xr = s2[i, r]
                    w0 = gw[0]
                    for e in range(arow.shape[0]):
                        arow[e] += xr[e] * w0[e]
                scan_step(vv, dd, arow, add_drive, theta, theta_sub, spikes[i, r])

    @jit  # type: ignore[misc]
    def channels_last_k(x: Any, out: Any, pairs: Any) -> None:  # pragma: no cover - compiled
        # x (R, C, P) 0/1 bytes to out (R, P, C): channel by channel, each read in a row (2.4x
        # torch's .contiguous(channels_last) on ResNet-8's 16x14x14 spikes).  pairs (R, P, C)
        # uint16 (a (R, P, 2C) byte array's view), when it has rows: written instead, each x as the
        # bytes x, 255·x (DigitConv's paired input), one store per input as for out.  Two loops, not
        # one with a multiplier: a multiply in the byte loop made it 1.5x slower (16x196, 0.91 vs 0.62 µs per row)
        n_r, n_c, n_p = x.shape
        if pairs.shape[0]:
            for r in range(n_r):
                for c in range(n_c):
                    xc = x[r, c]
                    prow = pairs[r]
                    for p in range(n_p):
                        prow[p, c] = xc[p] * np.uint16(0xFF01)  # little-endian: low byte x, high byte 255·x
            return
        for r in range(n_r):
            for c in range(n_c):
                xc = x[r, c]
                orow = out[r]
                for p in range(n_p):
                    orow[p, c] = xc[p]

    @jit  # type: ignore[misc]
    def depthwise_k(x: Any, k: Any, sh: int, sw: int, ph: int, pw: int, out: Any) -> None:  # pragma: no cover - compiled
        # a depthwise convolution of 0/1 spikes (pooling): x (R, C, H, W) uint8, k (C, kh, kw),
        # out (R, C, OH, OW) written.  Each output adds its fired taps in row-major tap order,
        # window_sum's order: a silent or padded tap adds 0·w = ±0 there, which leaves every
        # partial sum as it is, so skipping it gives the same floats
        n_r, n_c, n_h, n_w = x.shape
        kh, kw = k.shape[1], k.shape[2]
        oh, ow = out.shape[2], out.shape[3]
        for r in range(n_r):
            for c in range(n_c):
                xc = x[r, c]
                kc = k[c]
                for oy in range(oh):
                    for ox in range(ow):
                        acc = 0.0
                        for i in range(kh):
                            y = oy * sh + i - ph
                            if 0 <= y < n_h:
                                for j in range(kw):
                                    xx = ox * sw + j - pw
                                    if 0 <= xx < n_w and xc[y, xx]:
                                        acc += kc[i, j]
                        out[r, c, oy, ox] = acc

    @jit  # type: ignore[misc]
    def pool4_if_k(x16: Any, n_bands: int, w2: int, w: Any, th: Any, v1: Any, v2: Any, v3: Any, s1: Any, s2: Any,
                   s3: Any) -> None:  # pragma: no cover - compiled
        # a block of the three integer populations of 2x2 max-pool tournaments (see pool4_if), per
        # sample, step and window; x16 (tb, R, n_src / 2) is the source's 0/1 bytes read in pairs
        # (a window's a, b in one uint16 of its band's top row, c, d in the bottom row).  int32
        # arithmetic: every value fits the potentials' int16 or int32 type (layered._int_dtype),
        # so the results are the integer scans', exactly (sums of integers, any order).  Each
        # row's top and bottom pairs are first copied into two contiguous arrays, window order,
        # so the windows run as one loop that LLVM vectorises: per band, a loop as short as a
        # pooled row (5-14 windows) ran scalar.  One thread, 256 rows of 12 % spikes, ns per
        # window-step, bands against one loop: 9.1 / 2.6 (32x14x14), 4.8 / 2.0 (16x28x28),
        # 9.7 / 2.5 (16x10x10) on an AMD EPYC (results.md §0.2s)
        tb, n_r = x16.shape[0], x16.shape[1]
        wa1, wb1, wc1, wd1, wa2, wc2, w02, w12, wa3, w03, w23 = (w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7],
                                                                  w[8], w[9], w[10])
        t1, t2, t3 = th[0], th[1], th[2]
        n_w = n_bands * w2
        tops = np.empty(n_w, dtype=np.uint16)
        bots = np.empty(n_w, dtype=np.uint16)
        for r in range(n_r):
            for i in range(tb):
                xr = x16[i, r]
                p1 = v1[r]
                p2 = v2[r]
                p3 = v3[r]
                o1 = s1[i, r]
                o2 = s2[i, r]
                o3 = s3[i, r]
                for band in range(n_bands):
                    top = 2 * band * w2
                    k0 = band * w2
                    for j in range(w2):
                        tops[k0 + j] = xr[top + j]
                        bots[k0 + j] = xr[top + w2 + j]
                for k in range(n_w):
                    up = np.int32(tops[k])
                    dn = np.int32(bots[k])
                    a = up & 255
                    b = up >> 8
                    c = dn & 255
                    d = dn >> 8
                    y = np.int32(p1[2 * k]) + wa1 * a + wb1 * b
                    f0 = y >= t1
                    p1[2 * k] = y - t1 * f0
                    y = np.int32(p1[2 * k + 1]) + wc1 * c + wd1 * d
                    f1 = y >= t1
                    p1[2 * k + 1] = y - t1 * f1
                    y = np.int32(p2[k]) + wa2 * a + wc2 * c + w02 * f0 + w12 * f1
                    f2 = y >= t2
                    p2[k] = y - t2 * f2
                    y = np.int32(p3[k]) + wa3 * a + w03 * f0 + w23 * f2
                    f3 = y >= t3
                    p3[k] = y - t3 * f3
                    o1[2 * k] = f0
                    o1[2 * k + 1] = f1
                    o2[k] = f2
                    o3[k] = f3

    kernels = {"channels_last": channels_last_k, "depthwise": depthwise_k, "pool4_if": pool4_if_k, "digit_sum": digit_sum_k, "digit_if": digit_if_k, "conv": conv_push, "conv_if": conv_if_k, "csr": csr_push, "dense": dense_push, "if_scan": if_scan_k,
               "gather": gather_add, "int_scan": int_scan_k, "count_pack": count_pack}
    # numba compiles at a kernel's first call: the smallest kernel, compiled here, tells whether it
    # can at all while available() may still answer False; the others compile when asked for
    _ready.clear()
    _failed.clear()
    try:
        _WARM["dense"](kernels)
    except Exception as e:  # numba or LLVM failing to compile: one warning, then the numpy path
        _give_up("compile the event kernels", e)
        return None
    _ready.add("dense")
    return kernels


def _warm_conv(k: dict[str, Any]) -> None:
    k["conv"](np.zeros((1, 1, 2, 2), dtype=np.uint8), np.zeros((1, 1, 2, 1)), 1, 1, 0, 0, np.zeros((1, 2, 1)), np.zeros((1, 2)))


def _warm_conv_if(k: dict[str, Any], wt: Any = np.float64) -> None:
    # drives as the engine passes them (_drive_rows): one read-only C-contiguous form, (1, n) for a
    # drive per neuron and (R, n) for one per sample alike
    drive = _drive_rows(np.zeros(2), (2, 2))
    s5 = np.zeros((1, 2, 1, 2, 2), dtype=np.uint8)
    wf, acc = np.zeros((1, 1, 2, 1), dtype=wt), np.zeros((1, 2, 1), dtype=wt)
    # one compilation serves every kind of second link (kind2 is a runtime argument)
    k["conv_if"](s5, wf, np.array([1, 1, 0, 0, 1, 1, 0, 0]), acc, 0, s5, wf, acc.copy(), np.zeros((1, 2), dtype=np.intp),
                 np.zeros((1, 2)), np.zeros(2), np.zeros((2, 2)), drive, True, 1.0, 1.0, np.zeros((1, 2, 2), dtype=np.uint8))


def _warm_if_scan(k: dict[str, Any], at: Any = np.float64) -> None:
    drive = _drive_rows(np.zeros(2), (2, 2))
    a1, a8 = np.zeros((1, 2, 2), dtype=at), np.zeros((1, 2, 2))
    k["if_scan"](np.zeros((2, 2)), drive, True, 1.0, 1.0, a1, a8, 1, np.zeros((1, 2, 2), dtype=np.uint8), a8, False)


def _warm_csr(k: dict[str, Any]) -> None:
    k["csr"](np.zeros((1, 4), dtype=np.uint8), np.zeros(5, dtype=np.int32), np.zeros(0, dtype=np.int32), np.zeros(0), np.zeros((1, 1)))


def _warm_dense(k: dict[str, Any]) -> None:
    k["dense"](np.zeros((1, 4), dtype=np.uint8), np.zeros((4, 2)), np.zeros((1, 2)))


def _warm_channels_last(k: dict[str, Any]) -> None:
    x = np.zeros((1, 2, 3), dtype=np.uint8)
    k["channels_last"](x, np.zeros((1, 3, 2), dtype=np.uint8), _NO_PAIRS)
    k["channels_last"](x, _NO_BYTES, np.zeros((1, 3, 2), dtype=np.uint16))


def _warm_depthwise(k: dict[str, Any]) -> None:
    k1 = np.zeros((1, 1, 1))
    k1.flags.writeable = False  # as depthwise passes every kernel
    k["depthwise"](np.zeros((1, 1, 2, 2), dtype=np.uint8), k1, 1, 1, 0, 0, np.zeros((1, 1, 2, 2)))


def _warm_count_pack(k: dict[str, Any]) -> None:
    k["count_pack"](np.zeros((1, 1, 9), dtype=np.uint8), np.zeros((1, 9), dtype=np.uint16), np.zeros((1, 1, 2), dtype=np.uint8), 0, True)


def _warm_gather(k: dict[str, Any]) -> None:
    x = np.zeros((1, 2), dtype=np.uint8)
    i8 = np.zeros((1, 1), dtype=np.int8)
    k["gather"](x, x.view(np.uint16), np.zeros((1, 1), dtype=np.intp), i8, np.zeros((1, 10), dtype=np.int64), i8)


def _warm_int_scan(k: dict[str, Any]) -> None:
    # potentials in int16 or int32, arrivals in int8 (gates of fan-in sum <= 127) or the potentials'
    # type (what layered.LayerMajor.run passes)
    th = np.ones(2, dtype=np.int64)
    for vt, at in ((np.int16, np.int8), (np.int16, np.int16), (np.int32, np.int8), (np.int32, np.int32)):
        k["int_scan"](np.zeros((2, 2), dtype=vt), np.zeros((1, 2, 2), dtype=at), True, 0, th, True, 0, np.zeros((1, 2, 2), dtype=np.uint8))


def _warm_pool4_if(k: dict[str, Any]) -> None:
    s3 = np.zeros((1, 1, 2), dtype=np.uint8)
    for vt in (np.int16, np.int32):  # the max-pool tournaments' potentials (layered._int_dtype)
        v = np.zeros((1, 2), dtype=vt)
        k["pool4_if"](np.zeros((1, 1, 2), dtype=np.uint16), 1, 1, np.zeros(11, dtype=np.int32),
                      np.ones(3, dtype=np.int32), v, v[:, :1].copy(), v[:, :1].copy(), s3, s3[:, :, :1].copy(), s3[:, :, :1].copy())


def _warm_digit_sum(k: dict[str, Any]) -> None:
    k["digit_sum"](np.zeros((1, 2, 2), dtype=np.float32), 2, np.zeros((1, 2), dtype=np.float32), np.zeros((2, 1), dtype=np.float32))


def _warm_digit_if(k: dict[str, Any]) -> None:
    drive = _drive_rows(np.zeros(2), (2, 2))
    # DigitConv's fused scan, with a second link's float32 or float64 sums (kind2 is a runtime argument)
    for a2 in (np.zeros((1, 2, 2), dtype=np.float32), np.zeros((1, 2, 2))):
        k["digit_if"](np.zeros((2, 2, 2), dtype=np.float32), 2, 1, a2, np.zeros((1, 2, 2), dtype=np.uint8),
                      np.zeros((1, 2), dtype=np.intp), np.zeros((1, 2)), np.zeros((2, 2)), drive, True, 1.0, 1.0,
                      np.zeros((1, 2, 2), dtype=np.uint8), np.zeros((2, 1), dtype=np.float32), np.zeros(2))


#: what :func:`available` compiles for each name: a kernel's forms for the arguments the engine
#: passes (a form missed here would compile at its first call in every process, about 0.4 s);
#: ``"conv_if32"`` and ``"if_scan32"`` are the float32 sums of fixed-point kernels onto float64 potentials
_WARM: dict[str, Any] = {
    "channels_last": _warm_channels_last, "conv": _warm_conv, "conv_if": _warm_conv_if,
    "conv_if32": lambda k: _warm_conv_if(k, np.float32), "count_pack": _warm_count_pack, "csr": _warm_csr,
    "dense": _warm_dense, "depthwise": _warm_depthwise, "digit_if": _warm_digit_if, "digit_sum": _warm_digit_sum,
    "gather": _warm_gather, "if_scan": _warm_if_scan, "if_scan32": lambda k: _warm_if_scan(k, np.float32),
    "int_scan": _warm_int_scan, "pool4_if": _warm_pool4_if,
}
#: the forms a fixed-point convolution calls: compiled when the engine prepares one
#: (:class:`~.arrays.SparseConv`), so that its first block compiles nothing
FIXED_POINT_FORMS = ("conv_if32", "digit_sum", "digit_if", "if_scan32")
#: every name :func:`available` takes: ``available(*FORMS)`` compiles everything (benchmarks do,
#: so that no timed run compiles the form its first dense block needs)
FORMS = tuple(_WARM)


def _give_up(what: str, e: BaseException) -> None:
    first = (str(e).strip().splitlines() or [""])[0][:200]
    warnings.warn(f"spikebridge: numba could not {what} ({type(e).__name__}: {first}); the tensor engine uses its "
                  "numpy products (same spikes, slower)", RuntimeWarning, stacklevel=4)


def available(*names: str) -> bool:
    """True when the compiled kernels can run, and each kernel form named (keys of :data:`_WARM`) is compiled.

    :data:`ENABLED`, numba importable and able to compile (decided at the first call, once per
    process).  A name not compiled yet compiles here (0.1-2.3 s), once per process; one that
    fails gives one ``RuntimeWarning`` and False from then on for it, while the other kernels
    keep running (the numpy path gives the same spikes).
    """
    global _kernels, _tried
    if not ENABLED:
        return False
    if not _tried:
        with _lock:
            if not _tried:
                _kernels = _build()
                _tried = True
    if _kernels is None:
        return False
    for name in names:
        if name not in _ready and not _compile(name):
            return False
    return True


def _compile(name: str) -> bool:
    with _lock:
        if name in _ready:
            return True
        if name in _failed:
            return False
        try:
            _WARM[name](_kernels)
        except Exception as e:
            _give_up(f"compile its {name!r} kernel", e)
            _failed.add(name)
            return False
        _ready.add(name)
        return True


def _kernel(name: str, form: str | None = None) -> Any:
    """The compiled kernel ``name`` with its form ``form`` (default: ``name``) compiled, or None where it cannot run."""
    return _kernels[name] if available(form or name) and _kernels is not None else None


def _required(name: str) -> Any:
    """:func:`_kernel` for the wrappers that return arrays: their callers ask :func:`available` first."""
    kern = _kernel(name)
    if kern is None:
        raise RuntimeError(f"compiled.{name} called without available({name!r})")
    return kern


def _as_u8(spikes: NDArray[Any]) -> NDArray[np.uint8]:
    s = np.ascontiguousarray(spikes)
    return s.view(np.uint8) if s.dtype == np.bool_ else s.astype(np.uint8)


def channels_last(spikes: NDArray[Any], c: int, paired: bool = False) -> NDArray[np.uint8]:
    """``spikes`` (R, C·P) bool or 0/1 uint8, each row C channels of P positions, as (R, P, C) uint8.

    The input layout oneDNN's int8 convolution reads (NHWC), for :class:`.arrays.DigitConv`.
    ``paired``: (R, P, 2·C), channel ``2·c`` the spikes of channel ``c`` and ``2·c + 1`` 255 times
    them (its paired form).
    """
    x = _as_u8(spikes).reshape(spikes.shape[0], c, -1)
    if paired:
        if sys.byteorder != "little":  # pragma: no cover - x86 and ARM run little-endian
            raise NotImplementedError("channels_last(paired=True) writes byte pairs as little-endian uint16")
        out = np.empty((x.shape[0], x.shape[2], 2 * c), dtype=np.uint8)
        _required("channels_last")(x, _NO_BYTES, out.view(np.uint16))
        return out
    out = np.empty((x.shape[0], x.shape[2], c), dtype=np.uint8)
    _required("channels_last")(x, out, _NO_PAIRS)
    return out


_NO_BYTES = np.zeros((0, 0, 0), dtype=np.uint8)
_NO_PAIRS = np.zeros((0, 0, 0), dtype=np.uint16)


def depthwise(spikes: NDArray[Any], kernel: NDArray[np.float64], op: Any) -> NDArray[np.float64] | None:
    """A depthwise convolution (one input channel per output channel: pooling) of 0/1 spikes; None if it cannot run.

    ``spikes`` (R, C·H·W) bool or 0/1 uint8; ``kernel`` (C, kh, kw) float64, ``op`` the
    :class:`~spikebridge.snn.kernels.SharedKernel` it belongs to.  Returns (R, C·OH·OW) float64:
    :func:`.arrays.window_sum`'s sums bit for bit (the fired taps in its order), reading the
    spikes as bytes where it converts them to float64 and sums ``kh·kw`` strided slices.  An
    output with no fired tap is +0.0, where ``window_sum`` adds ``0·w`` and may give -0.0: equal
    numbers, so no threshold comparison tells them apart.
    """
    kern = _kernel("depthwise")
    if kern is None:
        return None
    c, h, w = op.in_shape
    if (kernel.dtype != np.float64 or kernel.ndim != 3 or kernel.shape[0] != c or tuple(kernel.shape[1:]) != tuple(op.kernel_size)
            or spikes.ndim != 2 or spikes.shape[1] != c * h * w):
        return None
    oh, ow = op.out_hw
    out = np.empty((spikes.shape[0], c, oh, ow))
    k = np.ascontiguousarray(kernel).view()
    k.flags.writeable = False  # one compiled form: a network's kernels are read-only, a fresh one is not
    kern(_as_u8(spikes).reshape(-1, c, h, w), k, int(op.stride[0]), int(op.stride[1]),
         int(op.padding[0]), int(op.padding[1]), out)
    return out.reshape(spikes.shape[0], -1)


def flipped_kernel(kernel: NDArray[Any]) -> NDArray[Any]:
    """The (O, C, kh, kw) kernel as :func:`conv_events` takes it: (C, kh, kw, O), columns reversed."""
    return np.ascontiguousarray(kernel.transpose(1, 2, 3, 0)[:, :, ::-1])


def conv_events(spikes: NDArray[Any], wf: NDArray[Any], in_shape: tuple[int, int, int], stride: tuple[int, int],
                padding: tuple[int, int], out_hw: tuple[int, int]) -> NDArray[Any]:
    """A full convolution of 0/1 spikes, pushed event by event.

    Parameters
    ----------
    spikes : ndarray, shape (B, C·H·W), bool
        One row per sample (and step); inputs in the population's (c, y, x) order.
    wf : ndarray, shape (C, kh, kw, O), float64 or float32, C-contiguous
        The shared kernel with the output channel last and the kernel's columns reversed
        (:func:`flipped_kernel`).
    in_shape : (C, H, W)
    stride, padding : (int, int)
    out_hw : (OH, OW)

    Returns
    -------
    ndarray, shape (B, O·OH·OW), ``wf``'s dtype
        Each output the ordered sum (pre-synaptic index order, from 0.0) of the weights of its
        fired inputs, in the population's (o, y, x) order.
    """
    b = spikes.shape[0]
    oh, ow = out_hw
    o = wf.shape[3]
    out = np.empty((b, o * oh * ow), dtype=wf.dtype)
    acc = np.empty((oh, ow, o), dtype=wf.dtype)
    _required("conv")(_as_u8(spikes).reshape((b,) + tuple(in_shape)), wf, stride[0], stride[1], padding[0], padding[1], acc, out)
    return out


def conv_if(links: list[tuple[Any, ...]], v: NDArray[Any], step_drive: Any, theta: float, out: NDArray[np.bool_]) -> bool:
    """A block of a plain IF population fed by convolutions, pushed and scanned in one pass; False if it cannot run here.

    The same operations as :func:`conv_events` (per link; two links' sums added) followed by
    :func:`if_scan` with that one arrival group (``v += dt·drive``; ``v += arrival``; ``v >= θ``;
    ``v -= θ`` where fired), per sample and step, so the spikes are the same; a step's arrivals
    stay in L1 instead of going through memory as a ``(tb, B, n)`` block.  An input block that is
    all silent adds ``0.0`` where the unfused path adds nothing, which can only turn a ``-0.0``
    potential into ``0.0``.

    Parameters
    ----------
    links : list of tuple
        One or two links onto ``v``, the first a convolution: ``("conv", spikes, wf, in_shape,
        stride, padding, out_hw)`` with ``spikes`` (tb, B, C·H·W) bool and the rest as for
        :func:`conv_events`; the second may also be ``("gather", spikes, idx, w)`` with ``spikes``
        (tb, B, n_pre) bool and ``idx``, ``w`` (F, n) the numpy gather's slots (pre index, weight).
    v : ndarray, shape (B, O·OH·OW), float64 or float32, C-contiguous
        Potentials (volts), updated in place.  Weights (``wf``, ``w``) must have its type; float32
        (``precision="float32"``) sums in float32 and scans as :func:`if_scan` does.  Convolution
        weights may also be float32 onto float64 potentials: a fixed-point kernel
        (:mod:`spikebridge.conversion.fixedpoint`), summed in float32 exactly.
    step_drive : float or ndarray
        ``dt·drive`` added every step, broadcastable to ``v``; the float ``0.0`` adds nothing.
    theta : float
        Finite threshold >= 0 (volts).
    out : ndarray, shape (tb, B, O·OH·OW), bool, C-contiguous
        Written: the spikes of each step.

    Returns
    -------
    bool
        True when the block ran here; False (nothing touched) for a layout, type or link it does not take.
    """
    tb, n_b = out.shape[0], out.shape[1]
    if not 1 <= len(links) <= 2 or links[0][0] != "conv":
        return False
    _, s1, wf, in_shape, stride, padding, (oh, ow) = links[0]
    n = wf.shape[3] * oh * ow
    # float32 weights onto float64 potentials: a fixed-point kernel, whose float32 sums are exact
    if (v.dtype not in (np.float64, np.float32) or wf.dtype not in (v.dtype, np.float32) or v.shape != (n_b, n) or not v.flags.c_contiguous
            or not out.flags.c_contiguous or out.shape != (tb, n_b, n) or np.asarray(step_drive).dtype not in (np.float64, v.dtype)):
        return False
    geo = np.zeros(8, dtype=np.int64)
    geo[:4] = (*stride, *padding)
    acc = np.empty((oh, ow, wf.shape[3]), dtype=wf.dtype)
    s2: NDArray[np.uint8] = np.zeros((1, 1, 1, 1, 1), dtype=np.uint8)
    kind2, wf2, acc2 = 0, wf, acc
    gidx, gw = np.zeros((1, 1), dtype=np.intp), np.zeros((1, 1), dtype=v.dtype)
    if len(links) == 2:
        second = links[1]
        if second[0] == "conv":
            _, x2, wf2, in2, stride2, pad2, hw2 = second
            if wf2.dtype != wf.dtype or tuple(hw2) != (oh, ow) or wf2.shape[3] != wf.shape[3]:
                return False
            kind2, s2, acc2 = 1, _as_u8(x2).reshape((tb, n_b) + tuple(in2)), np.empty_like(acc)
            geo[4:] = (*stride2, *pad2)
        elif second[0] == "gather":
            _, x2, idx, w = second
            if w.dtype != v.dtype or idx.shape != w.shape or idx.shape[1] != n or idx.shape[0] < 1:
                return False
            kind2, s2 = 2, _as_u8(x2).reshape(tb, n_b, 1, 1, -1)
            gidx, gw = np.ascontiguousarray(idx, dtype=np.intp), np.ascontiguousarray(w)
        else:
            return False
    drive = _drive_rows(step_drive, v.shape)
    add_drive = not (isinstance(step_drive, float) and step_drive == 0.0)
    kern = _kernel("conv_if", "conv_if32" if wf.dtype == np.float32 and v.dtype == np.float64 else "conv_if")
    if kern is None:
        return False
    theta, theta_sub = _thresholds(v, theta)
    kern(_as_u8(s1).reshape((tb, n_b) + tuple(in_shape)), wf, geo, acc, kind2, s2, wf2, acc2, gidx, gw,
         np.empty(n, dtype=v.dtype), v, drive, add_drive, theta, theta_sub, out.view(np.uint8))
    return True


def _one_to_one(idx: NDArray[np.intp], n_pre: int) -> bool:
    """Whether a gather's ``idx`` (F, n) has one tap per output, output ``e`` reading input ``e`` (an identity link)."""
    return idx.shape[0] == 1 and idx.shape[1] == n_pre and bool(np.array_equal(idx[0], np.arange(n_pre)))


def _drive_rows(step_drive: Any, shape: tuple[int, ...]) -> NDArray[np.float64]:
    """``dt·drive`` as the scans read it: float64, C-contiguous, read-only; (1, n) when every row
    shares it (a scalar, or one drive per neuron), else (R, n) (one per sample).

    A drive broadcast over the rows (row stride 0) has numba's layout "A", whose loops LLVM does
    not vectorise: the per-neuron scans ran at about 0.6x the per-sample ones (3.2 against 1.9 µs
    per 3,136-neuron row).  One shared row, copied once per call, is "C" like the others.
    """
    d = np.broadcast_to(np.asarray(step_drive, dtype=np.float64), shape)
    rows = d.reshape(-1, shape[-1]) if d.ndim != 2 else d
    out = np.ascontiguousarray(rows[:1] if rows.strides[0] == 0 else rows)
    out = out.view()
    out.flags.writeable = False  # one compiled form, whether the caller's array was writable or not
    return out


def _thresholds(v: NDArray[Any], theta: float) -> tuple[float, float]:
    """The threshold the scan compares ``v`` with and the one it subtracts, as numpy's scan of ``v``'s type.

    float32 (``precision="float32"``): numpy compares with a Python float threshold in float32
    (NEP 50), with a numpy float64 one in float64; ``spikes·θ`` is float32(θ) either way.
    """
    if v.dtype != np.float32:
        return float(theta), float(theta)
    sub = float(np.float32(theta))
    return (sub if type(theta) is float else float(theta)), sub


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
    out = np.zeros((spikes.shape[0], n_post), dtype=data.dtype)
    _required("csr")(_as_u8(spikes), indptr, indices, data, out)
    return out


def dense_events(spikes: NDArray[Any], wt: NDArray[Any]) -> NDArray[Any]:
    """``spikes @ wt`` for a dense ``wt`` (n_pre × n_post), pushed row by row.

    Parameters
    ----------
    spikes : ndarray, shape (B, n_pre), bool
    wt : ndarray, shape (n_pre, n_post), float64, C-contiguous

    Returns
    -------
    ndarray, shape (B, n_post), ``wt``'s dtype
        Each output the ordered sum (pre-synaptic index order, from 0.0) of its fired rows'
        weights: what :func:`~spikebridge.engines.tensor.arrays.ordered_matmul` gives for 0/1
        spikes, bit for bit.
    """
    out = np.zeros((spikes.shape[0], wt.shape[1]), dtype=wt.dtype)
    _required("dense")(_as_u8(spikes), np.ascontiguousarray(wt), out)
    return out


def digit_sum(o: NDArray[np.float32], n_digits: int, out: NDArray[np.float32]) -> None:
    """Add the digit convolutions of :class:`~.arrays.DigitConv` into a population's arrivals.

    Parameters
    ----------
    o : ndarray, shape (B, P, L·O), float32, C-contiguous
        Channel ``j·O + c`` at position ``p``: output channel ``c``'s digit-``j`` sum, scaled
        (channels last, as oneDNN writes them).
    n_digits : int
        ``L``.
    out : ndarray, shape (B, O·P), float32, C-contiguous
        Written: ``Σ_j`` in float32 from the highest digit down (exact: see ``digit_row``), in
        (channel, position) order.
    """
    n_p, n_o = o.shape[1], o.shape[2] // n_digits
    _required("digit_sum")(o, int(n_digits), out, np.empty((n_p, n_o), dtype=np.float32))


def digit_if(o: NDArray[np.float32], n_digits: int, v: NDArray[np.float64], step_drive: Any, theta: float,
             spikes: NDArray[np.bool_], second: NDArray[Any] | tuple[Any, ...] | None = None) -> bool:
    """:func:`digit_sum` and :func:`if_scan` with that one arrival group, in one pass; False if it cannot run here.

    Parameters
    ----------
    o : ndarray, shape (tb·R, P, L·O), float32, C-contiguous
        :func:`digit_sum`'s digit sums; row ``i·R + r`` is step ``i`` of sample ``r``.
    n_digits : int
    v : ndarray, shape (R, O·P), float64, C-contiguous
        Potentials (volts), updated in place.
    step_drive, theta
        As :func:`if_scan`.
    spikes : ndarray, shape (tb, R, O·P), bool, C-contiguous
        Written.
    second : ndarray, shape (tb, R, O·P), float32 or float64; or ``("gather", x2, idx, w)``; or None
        A second link (a residual join), added to the digits' sums in float64 before the scan,
        as :func:`conv_if` adds two links: its sums, or a gather as :func:`conv_if` takes it
        (``x2`` (tb, R, n_pre) spikes, ``idx`` / ``w`` (F, O·P) float64), summed in the numpy
        gather's order while the row is in cache instead of through a block of sums.

    Returns
    -------
    bool
        True when it ran; the spikes and potentials are :func:`if_scan`'s with the arrivals of
        :func:`digit_sum` (plus ``second``), bit for bit.  False (nothing touched) for another
        type or layout.
    """
    kern = _kernel("digit_if")
    if kern is None:
        return False
    tb = spikes.shape[0]
    n_r, n = v.shape
    n_p, n_l = o.shape[1], o.shape[2]
    if (v.dtype != np.float64 or not v.flags.c_contiguous or not spikes.flags.c_contiguous or o.dtype != np.float32
            or o.shape[0] != tb * n_r or n_l % n_digits or n != n_p * (n_l // n_digits) or spikes.shape != (tb, n_r, n)
            or np.asarray(step_drive).dtype != np.float64):
        return False
    kind2, a2 = 0, np.zeros((1, 1, 1), dtype=np.float32)
    s2, gidx, gw = np.zeros((1, 1, 1), dtype=np.uint8), np.zeros((1, 1), dtype=np.intp), np.zeros((1, 1))
    if isinstance(second, tuple):
        if len(second) != 4 or second[0] != "gather":
            return False
        _, x2, idx, w = second
        if (w.dtype != np.float64 or idx.shape != w.shape or idx.ndim != 2 or idx.shape[0] < 1 or idx.shape[1] != n
                or x2.ndim != 3 or x2.shape[:2] != (tb, n_r)):
            return False
        kind2, s2 = 2, _as_u8(x2)
        gidx, gw = np.ascontiguousarray(idx, dtype=np.intp), np.ascontiguousarray(w)
        if _one_to_one(gidx, s2.shape[2]):
            kind2 = 3  # the same sums (one tap each), read in order: vectorised where the gather is not
    elif second is not None:
        if second.shape != spikes.shape or second.dtype not in (np.float32, np.float64):
            return False
        kind2, a2 = 1, np.ascontiguousarray(second)
    theta, theta_sub = _thresholds(v, theta)
    add_drive = not (isinstance(step_drive, float) and step_drive == 0.0)
    drive = _drive_rows(step_drive, v.shape)
    kern(np.ascontiguousarray(o), int(n_digits), kind2, a2, s2, gidx, gw, v, drive, add_drive, theta, theta_sub,
         spikes.view(np.uint8), np.empty((n_p, n_l // n_digits), dtype=np.float32), np.empty(n))
    return True


def count_pack(block: NDArray[np.bool_], counts: NDArray[np.uint16], bits: NDArray[np.uint8] | None, t0: int) -> bool:
    """Add a block's spikes to ``counts`` and, given ``bits``, pack them into steps ``t0 ..`` of it; False if it cannot.

    Parameters
    ----------
    block : ndarray, shape (tb, B, n), bool, C-contiguous
        Spikes of the block's steps.
    counts : ndarray, shape (B, n), uint16, C-contiguous
        Spike counts, updated in place (the caller has checked they cannot pass 65535).
    bits : ndarray, shape (B, T, ceil(n / 8)), uint8, or None
        Recorded spikes, ``np.packbits`` order along the last axis; rows ``t0 .. t0 + tb - 1`` written.
    t0 : int

    Returns
    -------
    bool
        False (nothing touched) for a type or layout it does not take.
    """
    kern = _kernel("count_pack")
    if kern is None:
        return False
    tb, n_b, n = block.shape
    if (counts.dtype != np.uint16 or counts.shape != (n_b, n) or not counts.flags.c_contiguous or not block.flags.c_contiguous
            or (bits is not None and (bits.dtype != np.uint8 or bits.shape[0] != n_b or bits.shape[2] != (n + 7) // 8
                                      or bits.shape[1] < t0 + tb or not bits.flags.c_contiguous))):
        return False
    kern(block.view(np.uint8), counts, bits if bits is not None else np.zeros((1, 1, 1), dtype=np.uint8),
         int(t0), bits is not None)
    return True


def if_scan(v: NDArray[Any], step_drive: Any, theta: float, arrivals: list[NDArray[Any]], spikes: NDArray[np.bool_],
            pot: NDArray[Any] | None) -> bool:
    """A block of a plain IF population (reset by subtraction), in place; False if it cannot run here.

    Parameters
    ----------
    v : ndarray, float64 or float32, C-contiguous
        Membrane potentials (volts; any shape, N values), updated in place.  float32 (the opt-in
        ``precision="float32"``) gives the numpy scan's float32 results exactly: ``v + drive``
        rounded to float32, float32 additions and subtraction.
    step_drive : float or ndarray
        ``dt·drive`` added every step, broadcastable to ``v``, float64 or ``v``'s type; the float
        ``0.0`` adds nothing (as in the numpy scan: ``-0.0 + 0.0`` would be ``0.0``).
    theta : float
        Finite threshold >= 0 (volts).
    arrivals : list of ndarray, each (tb, ...) with ``v``'s shape per step
        Summed synaptic arrivals per link group, added in list order after the drive (at most 2);
        ``v``'s type, or float32 (a fixed-point convolution's exact sums, widened exactly).
    spikes : ndarray, (tb, ...) bool, C-contiguous
        Written: ``v >= theta`` per step, after the arrivals.
    pot : ndarray (tb, ...) or None
        Written when given: ``v`` after each step's reset.

    Returns
    -------
    bool
        True when the block ran here; False (nothing touched) when it has more than 2 arrival
        arrays, other types or a layout the kernel does not take: the caller's
        numpy scan must run it.
    """
    tb = spikes.shape[0]
    if (len(arrivals) > 2 or v.dtype not in (np.float64, np.float32) or not v.flags.c_contiguous or not spikes.flags.c_contiguous
            or any(a.dtype not in (v.dtype, np.float32) or a.shape != (tb,) + v.shape for a in arrivals)
            or np.asarray(step_drive).dtype not in (np.float64, v.dtype)
            or (pot is not None and (pot.dtype != np.float64 or not pot.flags.c_contiguous))):
        return False
    theta, theta_sub = _thresholds(v, theta)
    n = v.shape[-1] if v.ndim else 1
    rows = v.size // n if n else 0
    shape3 = (tb, rows, n)
    dummy = np.zeros((1, 1, 1), dtype=v.dtype)
    flat = [np.ascontiguousarray(a).reshape(shape3) for a in arrivals]
    a1 = flat[0] if flat else dummy
    a2 = flat[1] if len(flat) > 1 else dummy
    add_drive = not (isinstance(step_drive, float) and step_drive == 0.0)
    drive = _drive_rows(step_drive, v.shape)  # (1, n) or (rows, n)
    kern = _kernel("if_scan", "if_scan32" if v.dtype == np.float64 and any(a.dtype == np.float32 for a in arrivals) else "if_scan")
    if kern is None:
        return False
    kern(v.reshape(rows, n), drive, add_drive, theta, theta_sub, a1, a2, len(flat),
         spikes.reshape(shape3).view(np.uint8), pot.reshape(shape3) if pot is not None else dummy,
         pot is not None)
    return True


def pool4_if(x: NDArray[np.bool_], w2: int, w: NDArray[np.int32], th: NDArray[np.int32],
             v: tuple[NDArray[Any], ...], spikes: tuple[NDArray[Any], ...]) -> bool:
    """A block of a 2x2 max-pool tournament's three integer populations, in place; False if it cannot run here.

    The tournament of :mod:`spikebridge.conversion.maxpool` for a window ``(a, b, c, d)`` of the
    source: first-round units ``u0 = relu(b - a)`` and ``u1 = relu(d - c)`` (population 1,
    neurons ``2k`` and ``2k + 1`` of window ``k``), the second-round unit
    ``u2 = relu((c + u1) - (a + u0))`` (population 2, neuron ``k``) and the pooled output
    ``o = a + u0 + u2`` (population 3, neuron ``k``), all fed within the step.  Per sample, step
    and window the three populations run :func:`int_scan`'s operations (no drive, reset by
    subtraction) in their topological order, on the sums of the same integer weights that their
    gathers add: the same potentials and spikes, without the block's arrival arrays (the caller,
    ``layered.LayerMajor``, has checked the links' structure and that nothing overflows).

    The source is an image (channels × rows × columns) of even height and width ``2·w2``, every
    byte in one window: window ``k = band·w2 + j`` (``band`` one pooled row of one channel) reads
    ``a, b`` from source bytes ``4·band·w2 + 2j`` and ``+ 1``, and ``c, d`` from the next row,
    ``2·w2`` bytes later.

    Parameters
    ----------
    x : ndarray, shape (tb, R, 4·W), bool, C-contiguous
        The source population's spikes in the block's steps.
    w2 : int
        Windows per band (half the source's width).
    w : ndarray, shape (11,), int32
        Weights (times the scale): ``a, b`` onto ``u0``; ``c, d`` onto ``u1``; ``a, c, u0, u1`` onto
        ``u2``; ``a, u0, u2`` onto ``o``.
    th : ndarray, shape (3,), int32
        The populations' thresholds (times the scale).
    v : three ndarrays, shapes (R, 2W), (R, W), (R, W), int16 or int32 (one type), C-contiguous
        Potentials times the scale, updated in place.
    spikes : three ndarrays, shapes (tb,) + the potentials', bool, C-contiguous
        Written.

    Returns
    -------
    bool
        False (nothing touched) for a type or layout it does not take.
    """
    kern = _kernel("pool4_if")
    if kern is None:
        return False
    tb, n_r = x.shape[0], x.shape[1]
    n_win = x.shape[2] // 4
    if (v[0].dtype not in (np.int16, np.int32) or any(a.dtype != v[0].dtype or not a.flags.c_contiguous for a in v)
            or [a.shape for a in v] != [(n_r, 2 * n_win), (n_r, n_win), (n_r, n_win)]
            or not x.flags.c_contiguous or x.shape[2] % (4 * int(w2))
            or any(s.shape != (tb,) + a.shape or not s.flags.c_contiguous for s, a in zip(spikes, v))):
        return False
    kern(_as_u8(x).view(np.uint16), n_win // int(w2), int(w2), w, th, v[0], v[1], v[2], spikes[0].view(np.uint8),
         spikes[1].view(np.uint8), spikes[2].view(np.uint8))
    return True


def int_scan(v: NDArray[Any], acc: NDArray[Any] | None, drive: int, theta: Any, reset: str, v_reset: int,
             spikes: NDArray[np.bool_]) -> bool:
    """A block of an integer population (``layered._IntPop``), in place; False if it cannot run here.

    Per step: ``v += drive``; ``v += acc[i]``; ``spikes[i] = v >= theta``; then ``v -= theta``
    (reset ``"subtract"``) or ``v = v_reset`` (``"zero"``, ``"value"``) where fired: the integer
    operations of the numpy loop in ``LayerMajor.run``, which the caller has checked cannot
    overflow ``v``'s type.

    Parameters
    ----------
    v : ndarray, shape (R, n), int16 or int32, C-contiguous
        Potentials times the population's scale, updated in place.
    acc : ndarray, shape (tb, R, n), int8, int16 or int32, or None
        Summed integer arrivals of each step (None: no input this block).
    drive : int
        Added every step.
    theta : int or ndarray (n,)
        Threshold(s), integers.
    reset : {"subtract", "zero", "value"}
    v_reset : int
    spikes : ndarray, shape (tb, R, n), bool, C-contiguous
        Written.

    Returns
    -------
    bool
        False (nothing touched) for a type or layout it does not take.
    """
    kern = _kernel("int_scan")
    if kern is None:
        return False
    tb = spikes.shape[0]
    if (v.ndim != 2 or v.dtype not in (np.int16, np.int32) or not v.flags.c_contiguous or not spikes.flags.c_contiguous
            or spikes.shape != (tb,) + v.shape
            or (acc is not None and (acc.shape != spikes.shape or acc.dtype not in (np.int8, np.int16, np.int32)
                                     or not acc.flags.c_contiguous))):
        return False
    th = np.ascontiguousarray(np.broadcast_to(np.asarray(theta, dtype=np.int64), (v.shape[1],)))
    a = acc if acc is not None else np.zeros((1, 1, 1), dtype=np.int8)
    kern(v, a, acc is not None, int(drive), th, reset == "subtract", int(v_reset), spikes.view(np.uint8))
    return True


def gather_plan(idx: NDArray[np.integer], w: NDArray[np.integer], n_pre: int, min_run: int = 16) -> NDArray[np.int64]:
    """How :func:`gather_add_int` reads each row of a gather: affine where it can, else by index.

    Row ``f`` is affine when ``idx[f, (k3·n2 + k2)·n1·n0 + k1·n0 + k0] == off + k0·s0 + k1·s1 +
    k2·s2 + k3·s3`` for all k (at most 4 such dimensions), its innermost runs are at least
    ``min_run`` long at stride 1 or 2 (stride 2 only with ``n_pre`` even: read through a uint16
    view) and ``w[f]`` is one value: then it is read as strided runs, with no index array.

    Parameters
    ----------
    idx : ndarray, shape (F, n), integer
        Pre-synaptic index of each post neuron's f-th synapse, all in ``[0, n_pre)``.
    w : ndarray, shape (F, n), integer
    n_pre : int

    Returns
    -------
    ndarray, shape (F, 10), int64
        Per row ``[off, n0, s0, n1, s1, n2, s2, n3, s3, weight]``; ``n0 = 0`` where the row is read
        by index.
    """
    idx = np.asarray(idx, dtype=np.int64)
    plan = np.zeros((idx.shape[0], 10), dtype=np.int64)
    for f in range(idx.shape[0]):
        dims = _affine_dims(idx[f])
        if (dims is None or not np.all(w[f] == w[f, 0]) or dims[1][0] < min_run or dims[1][1] not in (1, 2)
                or (dims[1][1] == 2 and n_pre % 2)):
            continue
        off, (n0, s0), *rest = dims
        plan[f] = [off, n0, s0, *(v for d in rest for v in d), int(w[f, 0])]
    return plan


def _affine_dims(a: NDArray[np.int64], max_dims: int = 4) -> tuple[Any, ...] | None:
    """``(off, (n0, s0), (n1, s1), (n2, s2), (n3, s3))``, innermost first, or None (see :func:`gather_plan`)."""
    if a.size == 0:
        return None
    off = int(a[0])
    cur = a - off
    dims: list[tuple[int, int]] = []
    while cur.size > 1:
        if len(dims) == max_dims:
            return None
        step = int(cur[1] - cur[0])
        bad = np.flatnonzero(np.diff(cur) != step)
        run = int(bad[0]) + 1 if bad.size else cur.size
        if cur.size % run:
            return None
        m = cur.reshape(-1, run)
        if not np.array_equal(m - m[:, :1], np.broadcast_to(step * np.arange(run), m.shape)):
            return None
        dims.append((run, step))
        cur = m[:, 0]
    dims += [(1, 0)] * (max_dims - len(dims))
    return (off, *dims)


def gather_add_int(x: NDArray[np.bool_], idx: NDArray[np.intp], w: NDArray[Any], acc: NDArray[Any],
                   plan: NDArray[np.int64] | None = None) -> None:
    """``acc += Σ_f x[:, idx[f]]·w[f]`` in integers, in place (the integer max-pool gates).

    Parameters
    ----------
    x : ndarray, shape (R, n_pre), bool, C-contiguous
    idx : ndarray, shape (F, n), intp
        Pre-synaptic index of each post neuron's f-th synapse.
    w : ndarray, shape (F, n), integer
        Their weights, in ``acc``'s integer type (the caller has checked every sum fits).
    acc : ndarray, shape (R, n), integer, C-contiguous
    plan : ndarray (F, 10) or None
        :func:`gather_plan` of ``(idx, w, n_pre)``, computed once per link; None reads every row by index.
    """
    xu = _as_u8(x)
    if plan is None:
        plan = np.zeros((idx.shape[0], 10), dtype=np.int64)
    x16 = xu.view(np.uint16) if xu.shape[1] % 2 == 0 else np.zeros((1, 1), dtype=np.uint16)
    _required("gather")(xu, x16, np.ascontiguousarray(idx), np.ascontiguousarray(w, dtype=acc.dtype), plan, acc)
