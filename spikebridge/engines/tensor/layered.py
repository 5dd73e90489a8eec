"""Layer-major schedule of the tensor engine: one population for a block of steps, then the next.

For a network whose projections form no cycle (any delay; see
:func:`spikebridge.engines.plan.layer_major_blocker`) the spikes of a
population in steps ``t0 .. t0+b-1`` depend only on populations earlier in a
topological order.  So each population is simulated for a whole block of
``b`` steps before the next one (SpikingJelly's multi-step mode):

1. the synaptic input of all ``b`` steps is one batched product over the
   ``b × batch`` spike rows of each pre population (im2col + ordered GEMM for
   convolutions, gathers for pooling gates, CSR for sparse matrices): the same
   operators as the step-major engine, row by row the same sums;
2. the per-step arrivals are added in the step-major engine's order (by emission
   step, then the update order of the pre populations, then the link);
3. the neuron dynamics run as a scan over the ``b`` steps with the step-major
   engine's own update and threshold code (:meth:`TensorProgram._update`,
   :meth:`TensorProgram._fire`).

Adding an all-zero arrival where the step-major engine adds nothing can only
turn a ``-0.0`` into ``0.0``, so spikes, counts and potentials are the same as
the step-major engine's, the reference's and Brian2's.  Recorded spikes are
extracted once per block and population (one ``flatnonzero`` over the
``(b, batch, n)`` block) instead of once per step.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ...errors import ValidationError
from ...store.record import Counts, SpikeRecord, SpikeTrains, unpack_spikes
from ..plan import InputPlan, draw_poisson
from . import compiled
from .arrays import DigitConv, SparseConv

# the engine imports this module (lazily) and hands itself over: importing it back, even for
# types, would make an import cycle, which tests/test_layering.py refuses
_Program = Any
_Link = Any

__all__ = ["LayerMajor", "block_steps", "BLOCK_STEPS", "PHASES"]

#: per-phase seconds of the layer-major runs, keyed ``(population, phase)`` with phase one of
#: ``"products"`` (the block's synaptic input; a convolution fused with its IF scan counts all
#: here), ``"scan"`` (neuron update, arrivals, threshold,
#: reset) and ``"bookkeeping"`` (counts, output counts, recorded bits); None (the default)
#: measures nothing.  ``benchmarks/bench_engine.py --phases`` sets it to a dict and prints it.
PHASES: dict[tuple[str, str], float] | None = None

#: run populations whose values are all dyadic (max-pool gates: weights ±1, threshold 1, start
#: 0.5) in 16- or 32-bit integers, exactly (:class:`_IntPop`); False keeps them in float64
#: (benchmarks compare the two in one run)
INTEGER_GATES = True

#: run plain IF populations with the fused scan :meth:`LayerMajor._if_scan` (same operations, fewer
#: temporaries); False uses the generic per-step code (benchmarks compare the two)
FUSED_IF = True

#: run a plain IF population fed by one convolution, or by a convolution and a second convolution
#: or gather, as one compiled pass per block (:func:`.compiled.conv_if`: push and scan per sample
#: and step); False computes the block's arrivals, then scans them (benchmarks compare the two)
FUSED_CONV = True

#: fixed-point convolutions (:mod:`spikebridge.conversion.fixedpoint`: every sum exact in float32)
#: feeding a plain IF population run as a dense float32 convolution in torch (exact, so the same
#: spikes) when at least this fraction of a block's inputs fired, else pushed as float32 events;
#: > 1 never dense.  One thread, fired fraction 0.15, µs per row, torch's dense float32 against the
#: float64 push: F-MNIST VGG conv3 58 / 71, conv2 19 / 38, MNIST LeNet conv2 14.5 / 30; at 0.05
#: 56 / 34, 27 / 20, 15 / 12.5 (im2col and a numpy GEMM, without torch: 181, 91, 70).  Whole runs
#: (results.md §0.2o): 3-11 % faster than the float32 push alone on 1 thread, 0-14 % on 2
DENSE32_ABOVE = 0.1
#: the same for a kernel whose dense form is int8 digits (:class:`.arrays.DigitConv`, the default
#: where torch's oneDNN has them); DENSE32_ABOVE > 1 still turns every dense form off.  One
#: thread, 64 rows, µs per row, digits against the float32 push at fired fractions 0.02 / 0.05 /
#: 0.08: F-MNIST VGG conv2 15.1 / 11.2, 14.7 / 14.4, 15.8 / 18.3; conv3 19.0 / 19.6, 18.7 / 26.4,
#: 18.1 / 35.0; ResNet-8's convolutions cross between 0.02 and 0.05 (results.md §0.2p)
DIGITS_ABOVE = 0.05
#: push fixed-point convolutions with float32 weights and sums (False: float64, the same sums)
FIXED_POINT_PUSH = True
# rows (samples × steps) of one dense convolution call.  Fewer, larger oneDNN calls win over
# keeping a chunk's arrivals in L2: 2 threads, 1,000 images, medians of 5 (3 for VGG and LeNet),
# 64 against 256 rows: ResNet-8 T=32 1.84 / 1.47 s (8-bit weights 1.46 / 1.07), LeNet T=128
# 1.85 / 1.73 s, VGG T=32 1.52 / 1.51 s; one thread, 300 images: ResNet-8 0.87 / 0.73 s, VGG
# 0.86 / 0.91 s (results.md §0.2r)
_DENSE_ROWS = 256

#: run the three integer populations of each 2x2 max-pool tournament (same-step delivery) as one
#: compiled pass per block (:func:`.compiled.pool4_if`: per sample and window, the potentials in
#: registers over the block's steps) instead of three gathers and scans; False keeps those
#: (benchmarks compare the two in one run)
FUSED_POOL = True

#: sum an integer population's arrivals in int8 where they fit (False: in the potential's type)
INT8_ARRIVALS = True

#: scan only the neurons of a constantly driven plain IF population that can fire (see
#: ``packed`` in :meth:`LayerMajor.run`), when they are fewer than _PACK_BELOW of it.  Only the
#: numpy scan packs: the compiled scan runs the whole population in about 0.3 ns per neuron-step,
#: less than numpy's scatter of the packed spikes back (MNIST LeNet conv1, half live, 100 samples ×
#: 4 steps: 1.3 ms unpacked against 0.5 ms packed plus 2.8 ms to scatter its spikes back)
SKIP_SILENT = True

#: hand recorded spikes on as packed rasters (:meth:`SpikeTrains.from_packed`, decoded on first
#: read); False decodes them into index arrays at the end of each batch (benchmarks compare the two)
PACKED_TRAINS = True
_PACK_BELOW = 0.8

#: steps per block (all steps of a population's block form one batched product); the memory
#: estimate (:func:`~spikebridge.engines.tensor.engine.estimate_tensor_memory`) counts them.
#: None: 4 with the compiled kernels (float64), 8 without them and in float32.  The numpy
#: products (and float32's dense convolutions) pay a per-call cost that longer blocks spread; the
#: compiled ones do not, and shorter blocks keep a block's arrivals nearer the cache (2 threads,
#: load 1.2-1.5, 500 images at T=32 / 300 at T=128, blocks of 8 / 4 / 2 steps: ResNet-8 2.26 /
#: 1.59 / 1.51 s; VGG 2.64 / 2.04 / 2.28 s; the shipped LeNet 1.14 / 1.15 / 1.41 s)
BLOCK_STEPS: int | None = None
# bytes of unfolded convolution windows per product call (a block is applied in row chunks)
_CONV_WORKSPACE = 1 << 25
# bytes of one gather product's output per call (kept in the core's cache)
_GATHER_CHUNK = 1 << 19


def block_steps(n_steps: int, precision: str = "float64") -> int:
    """Steps per block for a run of ``n_steps`` (at most 255: spike counts of a block are summed in uint8)."""
    block = BLOCK_STEPS if BLOCK_STEPS is not None else 4 if precision == "float64" and compiled.available() else 8
    return max(1, min(block, 255, int(n_steps)))


# scales 2**e tried for integer populations; bytes of one integer gather chunk (kept in cache)
_MAX_SCALE_EXP = 16
_INT_CHUNK = 1 << 18


def _dyadic_scale(values: list[Any]) -> int | None:
    """Smallest ``s = 2**e`` (e <= 16) making every value times ``s`` an integer, None if there is none.

    Multiplying by a power of two is exact in binary floating point, so the test is exact.
    """
    arrs = [np.asarray(v, dtype=np.float64) for v in values]
    if not all(np.all(np.isfinite(a)) for a in arrs):
        return None
    for e in range(_MAX_SCALE_EXP + 1):
        s = float(2**e)
        if all(np.array_equal(np.floor(a * s), a * s) for a in arrs):
            return 2**e
    return None


@dataclass
class _IntPop:
    """An IF population whose every value is an integer multiple of ``1 / scale`` (max-pool gates).

    Its potential, threshold, reset value, step drive and every incoming weight times ``scale``
    are integers (``_dyadic_scale``), and its inputs are gathers (fan-in <= 8, explicit synapses),
    so float64 arithmetic on it is exact (no sum or difference of two such numbers below 2**53
    rounds) and the same run in integers, ``v_int = scale * v``, gives the same potentials and
    spikes in any summation order, with 2-byte integers in place of 8-byte floats.
    """

    scale: int
    theta: Any  # int or (n,) int64
    v0: Any
    drive: int  # scale * dt * bias, the step's increment (scalar bias only)
    reset: str
    v_reset: int
    links: list[tuple[str, int, NDArray[np.intp], NDArray[np.int64]]]  # (pre, delay, idx (F, n), w (F, n))
    per_step: int  # bound of |change of v_int| per step: max over neurons of Σ|w| + |drive|
    fan_in_sum: int  # max over neurons of Σ|w| (bound of a step's summed arrivals)
    static: int  # max |v0|, |theta|, |v_reset|
    plans: list[NDArray[np.int64]]  # per link: how the compiled gather reads it (compiled.gather_plan)


@dataclass
class _Pool4:
    """The three integer populations of one 2x2 max-pool tournament, run by :func:`.compiled.pool4_if`."""

    src: str  # the pooled (source) population
    names: tuple[str, str, str]  # first round, second round, pooled output
    w2: int  # windows per band: half the source image's width (see compiled.pool4_if)
    w: NDArray[np.int32]  # (11,) weights, see compiled.pool4_if
    th: NDArray[np.int32]  # (3,) thresholds


class LayerMajor:
    """The layer-major schedule of one :class:`~.engine.TensorProgram` (numpy arrays, float64 or float32)."""

    def __init__(self, program: _Program) -> None:
        self.p = program
        names = program.names
        pos = {n: i for i, n in enumerate(program.order)}
        # topological order over every simulated link (any delay); ties in the update order
        indeg = dict.fromkeys(names, 0)
        for pre in names:
            for link in program.links[pre]:
                indeg[link.post] += 1
        ready = sorted((n for n in names if indeg[n] == 0), key=pos.__getitem__)
        self.topo: list[str] = []
        while ready:
            name = ready.pop(0)
            self.topo.append(name)
            for link in program.links[name]:
                indeg[link.post] -= 1
                if indeg[link.post] == 0:
                    ready.append(link.post)
                    ready.sort(key=pos.__getitem__)
        if len(self.topo) != len(names):  # the plan said acyclic; never reached
            raise RuntimeError("layer-major schedule: projections form a cycle")
        # per post population and target: delayed links (step 2 of a step) and same-step links
        # (step 3), each in the order the step-major engine adds them to its ring buffer slot:
        # by emission step (longer delays emitted earlier), then update order, then link
        self.delayed: dict[str, list[tuple[str, list[tuple[str, _Link]]]]] = {n: [] for n in names}
        self.same: dict[str, list[tuple[str, list[tuple[str, _Link]]]]] = {n: [] for n in names}
        for post, target in program.targets:
            entries = [(pre, i, link) for pre in names for i, link in enumerate(program.links[pre])
                       if link.post == post and link.target == target]
            late = sorted((e for e in entries if e[2].steps > 0), key=lambda e: (-e[2].steps, pos[e[0]], e[1]))
            now = sorted((e for e in entries if e[2].steps == 0), key=lambda e: (pos[e[0]], e[1]))
            if late:
                self.delayed[post].append((target, [(e[0], e[2]) for e in late]))
            if now:
                self.same[post].append((target, [(e[0], e[2]) for e in now]))
        # steps of spike history a population keeps before its block (its longest outgoing delay)
        self.depth = {n: max((link.steps for link in program.links[n]), default=0) for n in names}
        # plain IF populations (every input onto v, reset by subtraction of a finite scalar threshold
        # >= 0, no refractoriness): their blocks run in _if_scan
        self.plain_if = {
            n for n in names
            if (sp := program.specs[n]).thresholded and not sp.is_input and sp.pop.model == "if" and sp.pop.reset == "subtract"
            and not sp.ref_steps and sp.pop.burst <= 1 and isinstance(sp.theta, float) and math.isfinite(sp.theta) and sp.theta >= 0.0
            and n not in program.plan.floors and not sp.pop.params.get("poisson_n")
            and all(t == "v" for post, t in program.targets if post == n)
        }
        # populations run in integers (exact; see _IntPop); INTEGER_GATES = False turns this off
        self.ints: dict[str, _IntPop] = {}
        folded_posts = {program.snn.projections[f].post for f in program.plan.folded}
        for name in names:
            ip = self._int_pop(name, folded_posts)
            if ip is not None:
                self.ints[name] = ip
        # 2x2 max-pool tournaments among them, keyed by their first population (first in topo order)
        self.pools: dict[str, _Pool4] = {}
        for name in self.ints:
            pool = self._pool4(name)
            if pool is not None:
                self.pools[pool.names[0]] = pool

    def _pool4(self, out: str) -> _Pool4 | None:
        """The 2x2 tournament whose pooled output is integer population ``out``, or None.

        Everything :func:`.compiled.pool4_if` assumes is checked on the populations' own gathers:
        ``out`` reads one tap each from a source ``S``, a first-round population ``P1`` and a
        second-round population ``P2``; ``P2`` two taps each from ``S`` and ``P1``; ``P1`` two taps
        from ``S``; all within the step, no drive, reset by subtraction, scalar thresholds; each
        tap role one weight for all windows, and every neuron of the three in exactly one window.
        """
        ints = self.ints
        ip3 = ints[out]
        pres = {pre: (steps, idx, w) for pre, steps, idx, w in ip3.links}
        if len(pres) != 3 or len(ip3.links) != 3:
            return None
        p2 = [n for n in pres if n in ints and len(ints[n].links) == 2]
        p1 = [n for n in pres if n in ints and len(ints[n].links) == 1]
        if len(p2) != 1 or len(p1) != 1:
            return None
        n1, n2 = p1[0], p2[0]
        src = next(n for n in pres if n not in (n1, n2))
        links2 = {pre: (steps, idx, w) for pre, steps, idx, w in ints[n2].links}
        links1 = {pre: (steps, idx, w) for pre, steps, idx, w in ints[n1].links}
        members = (ints[n1], ints[n2], ip3)
        if (set(links2) != {src, n1} or set(links1) != {src}
                or any(steps for lk in (pres, links2, links1) for steps, _, _ in lk.values())
                or [lk[pre][1].shape[0] for lk, pre in ((pres, src), (pres, n1), (pres, n2), (links2, src), (links2, n1), (links1, src))]
                != [1, 1, 1, 2, 2, 2]
                or any(ip.drive or ip.reset != "subtract" or not isinstance(ip.theta, int) for ip in members)):
            return None
        size = [self.p.specs[n].pop.n for n in (n1, n2, out)]
        a, u0, u2 = pres[src][1][0], pres[n1][1][0], pres[n2][1][0]
        if size[0] != 2 * size[2] or size[1] != size[2] or not np.array_equal(np.sort(u2), np.arange(size[1])):
            return None

        def roles(idx: NDArray[np.intp], w: NDArray[np.int64], cols: NDArray[np.intp], first: NDArray[np.intp]) -> Any:
            # the tap of each column that reads ``first`` and the other one, with their (uniform) weights
            ii, ww = idx[:, cols], w[:, cols]
            f = np.where(ii[0] == first, 0, 1)
            if not np.array_equal(ii[f, np.arange(cols.size)], first):
                return None
            other, w_first, w_other = ii[1 - f, np.arange(cols.size)], ww[f, np.arange(cols.size)], ww[1 - f, np.arange(cols.size)]
            if np.any(other == first) or np.any(w_first != w_first[0]) or np.any(w_other != w_other[0]):
                return None
            return other, int(w_first[0]), int(w_other[0])

        r2s = roles(links2[src][1], links2[src][2], u2, a)  # a and c onto u2
        r2u = roles(links2[n1][1], links2[n1][2], u2, u0)  # u0 and u1 onto u2
        if r2s is None or r2u is None:
            return None
        c, u1 = r2s[0], r2u[0]
        if not np.array_equal(np.sort(np.concatenate([u0, u1])), np.arange(size[0])):
            return None
        r1a = roles(links1[src][1], links1[src][2], u0, a)  # a and b onto u0
        r1c = roles(links1[src][1], links1[src][2], u1, c)  # c and d onto u1
        w3 = [pres[n][2][0] for n in (src, n1, n2)]
        if r1a is None or r1c is None or any(np.any(wk != wk[0]) for wk in w3):
            return None
        # the layout the kernel reads: an image of even height and width 2·w2 whose every input is
        # in one window (a, b one byte pair, c, d the pair below), windows in (channel, row,
        # column) order, units 2k, 2k + 1, k, k
        k = np.arange(size[2])
        w2 = int(c[0] - a[0]) // 2 if size[2] else 0
        if (w2 < 1 or self.p.specs[src].pop.n != 4 * size[2] or size[2] % w2
                or not np.array_equal(a, 4 * w2 * (k // w2) + 2 * (k % w2)) or not np.array_equal(r1a[0], a + 1)
                or not np.array_equal(c, a + 2 * w2) or not np.array_equal(r1c[0], c + 1)
                or not np.array_equal(u0, 2 * k) or not np.array_equal(u1, 2 * k + 1) or not np.array_equal(u2, k)):
            return None
        return _Pool4(
            src=src, names=(n1, n2, out), w2=w2,
            w=np.array([r1a[1], r1a[2], r1c[1], r1c[2], r2s[1], r2s[2], r2u[1], r2u[2]] + [int(wk[0]) for wk in w3], dtype=np.int32),
            th=np.array([ip.theta for ip in members], dtype=np.int32),
        )

    def _int_pop(self, name: str, folded_posts: set[str]) -> _IntPop | None:
        """The integer form of population ``name``, or None when its values are not all dyadic."""
        p = self.p
        spec = p.specs[name]
        pop = spec.pop
        if (spec.is_input or not spec.thresholded or pop.model != "if" or spec.ref_steps or pop.burst > 1
                or pop.reset not in ("subtract", "zero", "value") or name in folded_posts or np.ndim(pop.bias)
                or name in p.plan.floors or pop.params.get("poisson_n")):
            return None
        links = [(pre, link) for pre in p.names for link in p.links[pre] if link.post == name]
        if not links or any(link.target != "v" or link.kernel is not None or link.prepared[0] != "gather" for _, link in links):
            return None
        drive = p.dt * float(pop.bias)  # the step-major engine's step_drive (dt * drive), as it computes it
        v_reset = float(pop.v_reset) if pop.reset == "value" else 0.0
        values = [pop.threshold, pop.v_init, drive, v_reset] + [link.prepared[1][1] for _, link in links]
        scale = _dyadic_scale(values)
        if scale is None:
            return None
        theta = np.asarray(pop.threshold, dtype=np.float64) * scale
        v0 = np.broadcast_to(np.asarray(pop.v_init, dtype=np.float64) * scale, (pop.n,))
        ilinks = [(pre, link.steps, link.prepared[1][0], (link.prepared[1][1] * scale).astype(np.int64)) for pre, link in links]
        fan = sum((np.abs(w).sum(axis=0) for _, _, _, w in ilinks), np.zeros(pop.n, dtype=np.int64))
        return _IntPop(
            scale=scale, theta=int(theta) if theta.ndim == 0 else theta.astype(np.int64), v0=v0.astype(np.int64),
            drive=int(drive * scale), reset=pop.reset, v_reset=int(v_reset * scale), links=ilinks,
            per_step=int(fan.max()) + abs(int(drive * scale)),
            fan_in_sum=int(fan.max()),
            static=int(max(np.abs(theta).max(), np.abs(v0).max(), abs(v_reset * scale))),
            plans=[compiled.gather_plan(idx, w, p.specs[pre].pop.n) for pre, _, idx, w in ilinks],
        )

    @staticmethod
    def _int_dtype(ip: _IntPop, n_steps: int) -> Any:
        """int16 or int32 when ``|v_int|`` provably stays in range for ``n_steps`` steps, else None.

        Thresholds are > 0 (``Population`` checks it), so a reset by subtraction only lowers a
        potential at or above threshold, to >= 0: ``|v_int|`` stays within ``max|v0, θ, v_reset|``
        plus ``n_steps`` steps of at most ``per_step`` each.
        """
        bound = 2 * ip.static + n_steps * ip.per_step
        return np.int16 if bound < 2**15 - 1 else np.int32 if bound < 2**31 - 1 else None

    def _int_arrivals(self, ip: _IntPop, hist: dict[str, NDArray[np.bool_]], tb: int, n_b: int, dtype: Any) -> Any:
        """Summed integer arrivals of one block, (tb, n_b, n), or None when every pre block is silent.

        Sums of integers are exact: links and slots are added in any order.
        """
        acc: Any = None
        for (pre, steps, idx, w), plan in zip(ip.links, ip.plans):
            d0 = self.depth[pre] - steps
            x = hist[pre][d0 : d0 + tb].reshape(tb * n_b, -1)
            if not x.any():
                continue
            n = idx.shape[1]
            if acc is None:
                acc = np.zeros((tb * n_b, n), dtype=dtype)
            if compiled.available("gather"):
                compiled.gather_add_int(x, idx, w, acc, plan)
                continue
            wd = [dtype(w[f, 0]) if np.all(w[f] == w[f, 0]) else w[f].astype(dtype) for f in range(idx.shape[0])]  # scalars where uniform
            rows = max(8, _INT_CHUNK // (2 * n))
            tmp = np.empty((min(rows, x.shape[0]), n), dtype=bool)
            for r0 in range(0, x.shape[0], rows):
                xs, a = x[r0 : r0 + rows], acc[r0 : r0 + rows]
                t = tmp[: xs.shape[0]]
                for f in range(idx.shape[0]):
                    np.take(xs, idx[f], axis=1, out=t)
                    a += t * wd[f]
        return None if acc is None else acc.reshape(tb, n_b, -1)

    def _apply_rows(self, link: _Link, x: NDArray[np.bool_]) -> NDArray[np.float64]:
        """``link`` applied to every row of ``x`` (rows × n_pre), convolutions in row chunks."""
        op = link.kernel
        if op is None and link.prepared[0] == "gather":
            # F passes of gather-multiply-add per output: in row chunks that stay in cache
            n_post = link.prepared[1][0].shape[1]
            rows = max(8, _GATHER_CHUNK // (8 * n_post))
            if x.shape[0] > rows:
                return self._in_chunks(link, x, rows, n_post)
        if op is None or op.groups != 1:
            return np.asarray(self.p._apply(link, x))
        oh, ow = op.out_hw
        kh, kw = op.kernel_size
        per_row = 8 * oh * ow * op.in_shape[0] * kh * kw
        rows = max(1, _CONV_WORKSPACE // max(per_row, 1))
        if x.shape[0] <= rows:
            return np.asarray(self.p._apply(link, x))
        return self._in_chunks(link, x, rows, op.n_post)

    def _in_chunks(self, link: _Link, x: NDArray[np.bool_], rows: int, n_post: int) -> NDArray[np.float64]:
        """``link`` applied to ``x`` in chunks of ``rows`` rows (the output in the arrays' float type)."""
        first = np.asarray(self.p._apply(link, x[:rows]))
        out = np.empty((x.shape[0], n_post), dtype=first.dtype)
        out[:rows] = first
        for r0 in range(rows, x.shape[0], rows):
            out[r0 : r0 + rows] = self.p._apply(link, x[r0 : r0 + rows])
        return out

    def _arrivals(self, groups: list[tuple[str, list[tuple[str, _Link]]]], hist: dict[str, NDArray[np.bool_]],
                  tb: int, n_b: int) -> list[tuple[str, NDArray[np.float64]]]:
        """Summed arrivals per target of one block, (tb, n_b, n_post) each; silent pre blocks add nothing."""
        out = []
        for target, links in groups:
            acc: NDArray[np.float64] | None = None
            for pre, link in links:
                d0 = self.depth[pre] - link.steps  # history index of the block's first emission step
                x = hist[pre][d0 : d0 + tb]
                if not x.any():
                    continue
                c = self._apply_rows(link, x.reshape(tb * n_b, -1)).reshape(tb, n_b, -1)
                if acc is None:
                    acc = c
                else:
                    acc += c
            if acc is not None:
                out.append((target, acc))
        return out

    def run(self, plan: InputPlan, n_steps: int, *, seed: int, record: set[str],
            bits_out: Mapping[str, NDArray[np.uint8]] | None = None) -> SpikeRecord:
        """Simulate one batch layer by layer (same arguments and result as :meth:`TensorProgram.run`)."""
        p = self.p
        snn, dt = p.snn, p.dt
        t_start = time.perf_counter()
        plan = draw_poisson(plan, n_steps, dt, seed)  # a no-op for plans already drawn
        n_b = plan.n_samples
        state = p._init_state(plan, n_b)
        if n_steps < 2**16:
            # a population here fires at most once a step (no bursts), so its counts fit uint16:
            # an eighth of int64's bytes in the per-block addition (VGG, 1,000 images, T=32: the
            # counts took 1.2 of 8.6 CPU s); int64 again at the end
            for st in state.values():
                if st.counts is not None:
                    st.counts = np.zeros(st.counts.shape, dtype=np.uint16)
        b_steps = block_steps(n_steps, p.plan.precision)
        hist = {name: np.zeros((self.depth[name] + b_steps, n_b, p.specs[name].pop.n), dtype=bool) for name in self.topo}
        out = snn.output if snn.output in state else None
        n_out = snn.populations[out].n if out else 0
        out_counts_t = np.zeros((n_steps, n_b, n_out), dtype=np.int64)
        out_pot_t = np.zeros((n_steps, n_b, n_out))
        running_out = np.zeros((n_b, n_out), dtype=np.int64)
        # recorded spikes as bits, (sample, step, neuron bytes): extracted once at the end, already in
        # the (sample, step, neuron) order of SpikeTrains
        rec = {}
        for name in record:
            if name in state:
                shape = (n_b, n_steps, (p.specs[name].pop.n + 7) // 8)
                given = None if bits_out is None else bits_out.get(name)
                if given is not None and (given.shape != shape or given.dtype != np.uint8):
                    raise ValidationError(f"TensorProgram.run: bits_out[{name!r}] has shape {given.shape} and type {given.dtype}, "
                                          f"expected {shape} uint8", attr="bits_out")
                # every byte is written below (each block packs all its steps of every sample)
                rec[name] = given if given is not None else np.zeros(shape, dtype=np.uint8)
        raster = plan.raster
        rates = None if plan.rates is None else np.asarray(plan.rates, dtype=np.float64)
        # integer populations of this run (an input current or too long a run keeps the float path)
        ints: dict[str, tuple[_IntPop, Any, Any]] = {}
        if INTEGER_GATES:
            for name, ip in self.ints.items():
                dtype = self._int_dtype(ip, n_steps)
                if dtype is not None and name not in plan.currents:
                    ints[name] = (ip, dtype, np.repeat(ip.v0[None].astype(dtype), n_b, axis=0))
        # max-pool tournaments run as one pass (their three populations integer alike, none the read-out)
        pools: dict[str, _Pool4] = {}
        if FUSED_POOL and self.pools and compiled.available("pool4_if"):
            for first, pool in self.pools.items():
                if all(m in ints and ints[m][1] == ints[first][1] and m != out for m in pool.names):
                    pools[first] = pool
        pooled = {m for pool in pools.values() for m in pool.names[1:]}
        # plain IF populations driven only by a constant drive (no simulated input): neurons whose
        # step drive is <= 0 and start below threshold never fire (v never grows), so the scan runs
        # on the others only, packed: (live flat indices, packed v, packed drive)
        packed: dict[str, tuple[NDArray[np.intp], Any, Any]] = {}
        if FUSED_IF and SKIP_SILENT and not compiled.available():
            for name in self.plain_if:
                st = state[name]
                if self.delayed[name] or self.same[name] or name == out or not isinstance(st.v, np.ndarray):
                    continue
                sd = np.broadcast_to(np.asarray(st.step_drive, dtype=st.v.dtype), st.v.shape)
                live = np.flatnonzero(~((sd <= 0.0) & (st.v < p.specs[name].theta)))
                if live.size < _PACK_BELOW * st.v.size:
                    packed[name] = (live, st.v.ravel()[live], np.ascontiguousarray(sd.ravel()[live]))
        phases = PHASES
        clock = time.thread_time  # CPU time of this thread: phases of concurrent batch parts add up
        for t0 in range(0, n_steps, b_steps):
            tb = min(b_steps, n_steps - t0)
            for name in self.topo:
                st, spec, depth = state[name], p.specs[name], self.depth[name]
                h = hist[name]
                c0 = c1 = clock() if phases is not None else 0.0
                fused = False
                if spec.is_input:
                    if plan.kind == "spikes":
                        h[depth : depth + tb] = False
                        if raster is not None and t0 < raster.shape[1]:
                            hi = min(tb, raster.shape[1] - t0)
                            h[depth : depth + hi] = np.moveaxis(raster[:, t0 : t0 + hi], 1, 0)
                    else:  # "regular": the step-major engine's arithmetic, step by step
                        for i in range(tb):
                            st.v += dt * rates  # type: ignore[operator]  # "regular" plans carry rates
                            spk = st.v >= 1.0
                            st.v -= spk.astype(np.float64)
                            h[depth + i] = spk
                elif name in pooled:
                    pass  # run with its tournament's first population
                elif name in pools:
                    pool = pools[name]
                    if not compiled.pool4_if(hist[pool.src][self.depth[pool.src] : self.depth[pool.src] + tb], pool.w2,
                                             pool.w, pool.th, tuple(ints[m][2] for m in pool.names),
                                             tuple(hist[m][self.depth[m] : self.depth[m] + tb] for m in pool.names)):
                        # its potentials (one integer type, checked above) and blocks are C-contiguous
                        raise RuntimeError("layer-major schedule: a max-pool tournament's arrays do not fit its kernel")
                    fused = True  # the three populations' blocks, products and scans
                elif name in ints:
                    ip, dtype, v = ints[name]
                    # a step's arrivals fit in int8 when Σ|w·s| does: half the traffic of int16
                    acc = self._int_arrivals(ip, hist, tb, n_b, np.int8 if INT8_ARRIVALS and ip.fan_in_sum <= 127 else dtype)
                    if phases is not None:
                        c1 = clock()
                    # the compiled scan (not for the read-out, whose potential is kept per step)
                    if name == out or not compiled.available() or not compiled.int_scan(
                            v, acc, ip.drive, ip.theta, ip.reset, ip.v_reset, h[depth : depth + tb]):
                        reset_by = dtype(ip.theta) if isinstance(ip.theta, int) else ip.theta.astype(dtype)
                        for i in range(tb):
                            if ip.drive:
                                v += dtype(ip.drive)
                            if acc is not None:
                                v += acc[i]
                            spk = h[depth + i]
                            np.greater_equal(v, ip.theta, out=spk)
                            if ip.reset == "subtract":
                                v -= spk * reset_by  # bool times an integer: that integer's type
                            else:
                                np.putmask(v, spk, ip.v_reset)
                            if name == out:
                                out_pot_t[t0 + i] = v * (1.0 / ip.scale)  # exact: a power of two
                elif name in packed:
                    live, v_live, sd_live = packed[name]
                    if phases is not None:
                        c1 = clock()
                    spk_live = np.empty((tb, live.size), dtype=bool)
                    self._if_scan(v_live, sd_live, spec.theta, [], spk_live, None)
                    block = h[depth : depth + tb].reshape(tb, -1)
                    block[...] = False
                    block[:, live] = spk_live
                elif FUSED_IF and name in self.plain_if and name != out and (fused := self._conv_if(name, st, hist, h[depth : depth + tb])):
                    pass  # the block's products and scan ran in one pass
                elif FUSED_IF and name in self.plain_if and isinstance(st.v, np.ndarray) and st.v.dtype in (np.float64, np.float32):
                    arrivals = [arr for _, arr in self._arrivals(self.delayed[name], hist, tb, n_b)]
                    arrivals += [arr for _, arr in self._arrivals(self.same[name], hist, tb, n_b)]
                    if phases is not None:
                        c1 = clock()
                    self._if_scan(st.v, st.step_drive, spec.theta, arrivals, h[depth : depth + tb],
                                  out_pot_t[t0 : t0 + tb] if name == out else None)
                else:
                    late = self._arrivals(self.delayed[name], hist, tb, n_b)
                    now = self._arrivals(self.same[name], hist, tb, n_b)
                    if phases is not None:
                        c1 = clock()
                    for i in range(tb):
                        k = t0 + i
                        p._update(spec, st, k)
                        for target, arr in late:
                            self._add(st, target, arr[i])
                        for target, arr in now:
                            self._add(st, target, arr[i])
                        if spec.thresholded:
                            h[depth + i] = p._fire(spec, st, k)
                        if name == out:
                            out_pot_t[k] = st.v
                    if not spec.thresholded:
                        h[depth : depth + tb] = False
                c2 = clock() if phases is not None else 0.0
                if fused:  # its time counts as products
                    c1 = c2
                block = h[depth : depth + tb]
                # counts and recorded bits in one compiled pass, else numpy's
                packed_here = st.counts is not None and compiled.available() and compiled.count_pack(block, st.counts, rec.get(name), t0)
                if st.counts is not None and not packed_here:
                    # bool as uint8 summed in uint8 (a block is at most 255 steps): 4x faster than int64
                    st.counts += block.view(np.uint8).sum(axis=0, dtype=np.uint8)
                if name == out and spec.thresholded:
                    np.cumsum(block, axis=0, out=out_counts_t[t0 : t0 + tb])
                    out_counts_t[t0 : t0 + tb] += running_out
                    running_out = out_counts_t[t0 + tb - 1].copy()
                if name in rec and not packed_here:
                    rec[name][:, t0 : t0 + tb] = np.packbits(block, axis=-1).transpose(1, 0, 2)
                if phases is not None:
                    c3 = clock()
                    for phase, sec in (("products", c1 - c0), ("scan", c2 - c1), ("bookkeeping", c3 - c2)):
                        phases[name, phase] = phases.get((name, phase), 0.0) + sec
            for name in self.topo:  # keep the last ``depth`` steps of history for delayed links
                d = self.depth[name]
                if d and tb == b_steps:
                    hist[name][:d] = hist[name][tb : tb + d].copy()
        t1 = time.perf_counter()
        # as counted (uint16 up to 65,535 steps): Counts widens a population to int64 when it is read
        counts = Counts({name: st.counts for name, st in state.items() if st.counts is not None})
        spikes = {name: self._trains(rec.get(name), snn.populations[name].n, n_b, dt, int(counts.raw(name).sum(dtype=np.int64)) if name in counts else 0)
                  for name in sorted(record)}
        return SpikeRecord(
            n_samples=n_b,
            n_steps=int(n_steps),
            dt=dt,
            output_counts_t=np.ascontiguousarray(np.transpose(out_counts_t, (1, 0, 2))).astype(np.int32),
            output_potential_t=np.ascontiguousarray(np.transpose(out_pot_t, (1, 0, 2))).astype(np.float32),
            counts=counts,
            spikes=spikes,
            readout=dict(snn.readout),
            meta={
                "seed": seed,
                "target": f"tensor-{p.xp.name}",
                "engine": "tensor",
                "schedule": "layer-major",
                "batch_size": n_b,
                "timings": {"build_s": 0.0, "run_s": t1 - t_start, "collect_s": time.perf_counter() - t1},
            },
        )

    def _conv_if(self, name: str, st: Any, hist: dict[str, NDArray[np.bool_]], spikes: NDArray[np.bool_]) -> bool:
        """A block of plain IF population ``name`` fed by one convolution, or two links of which one
        is a convolution and the other a convolution or a gather (residual joins), fused
        (:func:`.compiled.conv_if`); False (nothing done) when it has another form or the kernels are off."""
        groups = self.delayed[name] + self.same[name]
        if len(groups) != 1 or not 1 <= len(groups[0][1]) <= 2 or not isinstance(st.v, np.ndarray):
            return False
        tb = spikes.shape[0]
        theta = self.p.specs[name].theta
        if DENSE32_ABOVE <= 1.0 and st.v.dtype == np.float64 and self._dense_join(groups[0][1], hist, st, theta, spikes):
            return True
        if not FUSED_CONV or not compiled.available():
            return False
        # fixed-point kernels (all of this population's): float32 weights and sums, exact
        fixed = FIXED_POINT_PUSH and st.v.dtype == np.float64 and all(
            getattr(link.prepared, "wf32", None) is not None for _, link in groups[0][1] if link.kernel is not None)
        links = []
        for pre, link in groups[0][1]:
            d0 = self.depth[pre] - link.steps  # history index of the block's first emission step
            x = hist[pre][d0 : d0 + tb]
            op = link.kernel
            if op is not None and op.groups == 1 and getattr(link.prepared, "wf", None) is not None:
                wf = link.prepared.wf32 if fixed else link.prepared.wf
                links.append(("conv", x, wf, op.in_shape, op.stride, op.padding, op.out_hw))
            elif op is None and link.prepared[0] == "gather":
                links.append(("gather", x, *link.prepared[1]))
            else:
                return False
        links.sort(key=lambda lk: lk[0] != "conv")  # a convolution first (two sums' addition commutes)
        return compiled.conv_if(links, st.v, st.step_drive, theta, spikes)

    def _dense_join(self, links: list[tuple[str, _Link]], hist: dict[str, NDArray[np.bool_]], st: Any, theta: float,
                    spikes: NDArray[np.bool_]) -> bool:
        """The block of :meth:`_conv_if` with a fixed-point convolution as a dense float32 product, if it applies.

        Applies when one link is a full convolution whose kernel is fixed-point with a dense
        torch form (``SparseConv.dense32``), at least ``DIGITS_ABOVE`` (int8 digits) or
        ``DENSE32_ABOVE`` (float32) of its block's inputs fired,
        and the other link, if any (residual joins), is a full convolution or a gather.  False:
        nothing done.
        """
        parts = []
        for pre, link in links:
            d0 = self.depth[pre] - link.steps
            x = hist[pre][d0 : d0 + spikes.shape[0]]
            op = link.kernel
            if op is not None and op.groups == 1 and isinstance(link.prepared, SparseConv):
                parts.append(("conv", x, link))
            elif op is None and link.prepared[0] == "gather":
                parts.append(("gather", x, link))
            else:
                return False
        # a convolution first, as conv_if adds them (the two sums' addition commutes); of two, the one
        # with int8 digits, whose scan is fused (ResNet's strided 1x1 shortcut is a float32 matmul)
        parts.sort(key=lambda pt: (pt[0] != "conv", not isinstance(getattr(pt[2].prepared, "dense32", None), DigitConv)))
        kind, x, link = parts[0]
        dense = link.prepared.dense32 if kind == "conv" else None
        above = DIGITS_ABOVE if isinstance(dense, DigitConv) else DENSE32_ABOVE
        if dense is None or np.count_nonzero(x) < above * x.size:
            return False
        self._dense_if(dense, x, st, theta, spikes, parts[1][1:] if len(parts) > 1 else None)
        return True

    def _dense_if(self, dense: Any, x: NDArray[np.bool_], st: Any, theta: float, spikes: NDArray[np.bool_],
                  second: tuple[Any, ...] | None = None) -> None:
        """A block of a plain IF population fed by a fixed-point convolution, dense in float32.

        ``x`` (tb, B, n_pre) are the input spikes of the block, ``spikes`` (tb, B, n) is written.
        Samples go in chunks of about ``_DENSE_ROWS`` rows: a chunk's float32 arrivals (torch's
        convolution, exact for a fixed-point kernel: every partial sum is representable) are
        scanned right after it, with the float64 scan of :meth:`_if_scan`.  ``second``,
        ``(x2, link)``, a convolution or a gather, is a second link: its products (the engine's
        own, ordered as the fused kernel's) are added to the first's in float64 before the scan,
        as :func:`.compiled.conv_if` adds them.
        """
        tb, n_b = x.shape[0], x.shape[1]
        n = spikes.shape[2]
        per = max(1, _DENSE_ROWS // tb)
        sd = st.step_drive
        sd_rows = isinstance(sd, np.ndarray) and sd.ndim == 2 and sd.shape[0] == n_b
        for b0 in range(0, n_b, per):
            b1 = min(n_b, b0 + per)
            rows = tb * (b1 - b0)
            xs = x[:, b0:b1].reshape(rows, -1)
            a2: Any = None
            if second is not None:
                x2, link2 = second
                if isinstance(dense, DigitConv) and link2.kernel is None and link2.prepared[0] == "gather":
                    # a gather (an identity shortcut) read by the digit scan itself: no block of its sums
                    a2 = ("gather", x2[:, b0:b1], *link2.prepared[1])
                else:
                    a2 = self._second_sums(link2, x2[:, b0:b1].reshape(rows, -1)).reshape(tb, b1 - b0, n)
            if isinstance(dense, DigitConv):
                sp = np.empty((tb, b1 - b0, n), dtype=bool)
                if dense.scan_if(xs, st.v[b0:b1], sd[b0:b1] if sd_rows else sd, theta, sp, a2):
                    spikes[:, b0:b1] = sp
                    continue
            if isinstance(a2, tuple):  # the scan could not take it: the gather's sums after all
                a2 = self._second_sums(link2, x2[:, b0:b1].reshape(rows, -1)).reshape(tb, b1 - b0, n)
            arr = np.asarray(dense(xs)).reshape(tb, b1 - b0, n)
            if a2 is not None:
                arr = arr.astype(np.float64)
                arr += a2
            sp = np.empty((tb, b1 - b0, n), dtype=bool)
            self._if_scan(st.v[b0:b1], sd[b0:b1] if sd_rows else sd, theta, [arr], sp, None)
            spikes[:, b0:b1] = sp

    def _second_sums(self, link: _Link, xs: NDArray[np.bool_]) -> NDArray[Any]:
        """A residual join's second link's exact sums of ``xs`` (rows, n_pre): its own dense form where it
        has one (a fixed-point convolution: the values of its ordered float64 sums), else the engine's product."""
        dense = getattr(link.prepared, "dense32", None) if link.kernel is not None else None
        return np.asarray(dense(xs) if dense is not None else self.p._apply(link, xs))

    @staticmethod
    def _if_scan(v: NDArray[Any], step_drive: Any, theta: float, arrivals: list[NDArray[np.float64]],
                 spikes: NDArray[np.bool_], pot: NDArray[np.float64] | None) -> None:
        """A block of a plain IF population (reset by subtraction, no refractoriness), in place.

        The operations of :meth:`TensorProgram._update`, :meth:`_add` and :meth:`TensorProgram._fire`
        in their order (``v += dt·drive``; ``v += arrival`` per link group; ``v >= θ``;
        ``v -= spikes·θ``) with preallocated outputs: the same floats, fewer temporaries; with
        numba, one compiled loop (:func:`.compiled.if_scan`, the same operations per neuron).
        """
        if compiled.available() and compiled.if_scan(v, step_drive, theta, arrivals, spikes, pot):
            return
        add_drive = not (isinstance(step_drive, float) and step_drive == 0.0)  # v + 0.0 is v: skipped
        tmp = np.empty_like(v)
        for i in range(spikes.shape[0]):
            if add_drive:
                v += step_drive
            for arr in arrivals:
                v += arr[i]
            spk = spikes[i]
            np.greater_equal(v, theta, out=spk)
            v -= np.multiply(spk, theta, out=tmp)
            if pot is not None:
                pot[i] = v

    @staticmethod
    def _add(st: Any, target: str, arrived: NDArray[np.float64]) -> None:
        """The step-major engine's ``_arrive`` for one step's summed arrivals (in place)."""
        if target == "v":
            if st.free is None:
                st.v += arrived
            else:
                st.v = st.v + np.where(st.free, arrived, 0.0)
        else:
            st.current = st.current + arrived

    @staticmethod
    def _trains(bits: NDArray[np.uint8] | None, n: int, n_b: int, dt: float, total: int) -> SpikeTrains:
        """Spike trains from recorded bits (n_b, n_steps, ceil(n / 8)), in (sample, step, neuron) order.

        ``total`` is the number of spikes (from the counts), checked when the raster is decoded here.
        """
        z = np.zeros(0, np.int32)
        if bits is None:
            return SpikeTrains._from_sorted(n, n_b, dt, z, z, z)
        if PACKED_TRAINS:
            # handed on as the raster: the store keeps dense populations packed, and the index
            # arrays are built only if someone reads them
            return SpikeTrains.from_packed(bits, n, dt)
        sample, neuron, step = unpack_spikes(bits, n)
        if sample.size != total:  # never: counts and recorded bits come from the same spikes
            raise RuntimeError(f"layer-major recording: {sample.size} spikes recorded, {total} counted")
        # in range and in (sample, step, neuron) order by construction
        return SpikeTrains._from_sorted(n, n_b, dt, sample, neuron, step)
