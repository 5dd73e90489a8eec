"""The tensor engine: whole populations as (batch × neurons) arrays, one step at a time.

It implements the discrete-time contract of :mod:`spikebridge.engines.plan`
and :mod:`spikebridge.engines.reference` (same inputs from ``prepare_inputs``
and ``draw_poisson``, same order within a step: state update, arrivals,
threshold, reset) with the arithmetic of the reference simulator, so its
spikes are the same as the reference's and Brian2's:

1. state update (IF/integrator ``v += dt (b + I_in)``, exact LIF and cuba
   integration, refractory neurons held);
2. arrivals from ring buffers (a spike at step ``j`` through delay ``d``
   arrives at ``j + d``), gated by refractoriness for ``target="v"``; external
   Poisson drive (drawn like the reference: ``numpy.random.default_rng(seed)``);
3. threshold (not refractory) and 4. reset;
then the step's spikes are pushed through every outgoing projection into the
ring buffers.

Projections are applied as operators on the whole batch: a shared-kernel
projection (:class:`~spikebridge.snn.kernels.SharedKernel`) as a
convolution, never as per-synapse arrays; an explicit one as a dense or
sparse matrix shared by all samples (per delay), gathering only the inputs
that fired.  A projection whose pre population did not fire in a step costs
nothing.  Work runs on numpy/scipy or on torch (CPU threads, CUDA); see
:mod:`.arrays`.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from collections.abc import Mapping
from typing import Any, cast

import numpy as np
import scipy.sparse as sp
from numpy.typing import NDArray

from ...snn.kernels import SharedKernel
from ...snn.network import Population
from ...store.record import Counts, SpikeRecord
from ..plan import InputPlan, Plan, draw_poisson
from ..reference import _exact_cuba, _exact_lif, spike_trains
from ...errors import ValidationError
from .arrays import Arrays, Float32Arrays

log = logging.getLogger(__name__)

__all__ = ["TensorProgram", "estimate_tensor_memory"]

_THRESHOLDED = ("if", "lif", "cuba_lif")

#: run networks the plan marks ``layer_major`` layer by layer on numpy (:mod:`.layered`); False forces
#: the step-major schedule everywhere (benchmarks compare the two in one run)
LAYER_MAJOR = True


@dataclass
class _Link:
    """One outgoing operator of a population: kernel or matrix, with its delay in steps."""

    post: str
    target: str
    steps: int
    kernel: SharedKernel | None
    prepared: Any


@dataclass
class _PopSpec:
    pop: Population
    ref_steps: int
    theta: Any
    bias: Any  # scalar float or (n,) array on the device
    is_input: bool
    thresholded: bool


@dataclass
class _State:
    v: Any
    current: Any = None
    drive: Any = None  # bias + input current (membrane units per second)
    step_drive: Any = None  # dt * drive, the IF increment per step
    last: Any = None
    free: Any = None
    spikes: Any = None
    counts: Any = None
    rec: list[tuple[NDArray[np.int64], NDArray[np.int64], int]] = field(default_factory=list)


class TensorProgram:
    """A network prepared for the tensor engine on one array library (reused across batches).

    Parameters
    ----------
    plan : Plan
        From :func:`spikebridge.engines.plan.compile`: the network, ``dt`` in seconds, the simulated
        populations and projections and the same-step schedule.
    arrays : Arrays
        The array library (:func:`.arrays.arrays_for`).
    """

    def __init__(self, plan: Plan, arrays: Arrays) -> None:
        snn, dt = plan.snn, plan.dt
        if plan.precision == "float32":
            if arrays.name != "numpy":  # SimulationConfig refuses it; programs built by hand too
                raise ValidationError(f"SimulationConfig.precision: 'float32' runs on numpy only, not {arrays.name}", attr="precision")
            arrays = Float32Arrays()
        self.plan, self.snn, self.dt, self.xp = plan, snn, dt, arrays
        self.names = list(plan.active)
        self.specs: dict[str, _PopSpec] = {}
        for name in self.names:
            pop = snn.populations[name]
            ref = int(round(pop.refractory / dt)) if pop.refractory > 0 else 0
            theta = float(pop.threshold) if np.ndim(pop.threshold) == 0 else arrays.asarray(pop.threshold)
            bias = float(pop.bias) if np.ndim(pop.bias) == 0 else arrays.asarray(pop.bias)
            self.specs[name] = _PopSpec(pop, ref, theta, bias, name == snn.input, pop.model in _THRESHOLDED)
        self.links: dict[str, list[_Link]] = {name: [] for name in self.names}
        self.targets: list[tuple[str, str]] = []
        max_d = 1
        for proj in plan.simulated():
            if (proj.post, proj.target) not in self.targets:
                self.targets.append((proj.post, proj.target))
            steps = snn.projection_steps(proj, dt)
            if proj.operator is not None and steps.ndim == 0:
                d = int(steps)
                self.links[proj.pre].append(_Link(proj.post, proj.target, d, proj.operator, arrays.kernel(proj.operator)))
                max_d = max(max_d, d)
                continue
            steps = np.broadcast_to(steps, proj.weight.shape)
            n_pre, n_post = snn.populations[proj.pre].n, snn.populations[proj.post].n
            for d in np.unique(steps):
                sel = steps == d
                m = sp.csr_matrix((proj.weight[sel], (proj.post_index[sel], proj.pre_index[sel])), shape=(n_post, n_pre))
                m.sum_duplicates()
                self.links[proj.pre].append(_Link(proj.post, proj.target, int(d), None, arrays.matrix(m)))
                max_d = max(max_d, int(d))
        self.ring = max_d + 1
        self.order = [name for name in plan.order if name in self.specs]
        # only targets of zero-delay links receive within the step (none when min_delay_steps=1)
        self.inbound = plan.inbound
        self._layered: Any = None
        if plan.layer_major and arrays.name in ("numpy", "numpy-float32"):
            from .layered import LayerMajor

            self._layered = LayerMajor(self)

    def _arrive(self, pst: "_State", target: str, buf: list[Any], slot: int) -> None:
        """Add ring slot ``slot`` of ``buf`` (None while empty) to ``target`` of ``pst`` and empty it."""
        arrived = buf[slot]
        if arrived is None:
            return
        xp = self.xp
        if target == "v":
            pst.v = pst.v + (arrived if pst.free is None else xp.where(pst.free, arrived, 0.0))
        else:
            pst.current = pst.current + arrived
        buf[slot] = None

    def _next_element(self, plan: InputPlan, state: dict[str, "_State"], k: int) -> None:
        """A sequence's next element (or none after the last) drives the window starting at step ``k``."""
        for name in plan.currents:
            if name in state:
                i_in = cast("NDArray[np.float64]", plan.current_at(name, k))  # name is in plan.currents
                st = state[name]
                st.drive = self.xp.asarray(np.asarray(self.specs[name].pop.bias, dtype=np.float64) + i_in)
                st.step_drive = self.dt * st.drive

    def _update(self, spec: _PopSpec, st: _State, k: int) -> None:
        """Step 1 of step ``k`` for a simulated (non-input) population: state update, refractory neurons held."""
        xp, dt, pop = self.xp, self.dt, spec.pop
        free = None if st.last is None else (k - st.last) >= spec.ref_steps
        st.free = free
        if pop.model in ("if", "integrator") and free is None:
            if not (isinstance(st.step_drive, float) and st.step_drive == 0.0):  # v + 0.0 is v
                st.v += st.step_drive
            return
        if pop.model in ("if", "integrator"):
            new_v = st.v + st.step_drive
        elif pop.model in ("lif", "li"):
            new_v = _exact_lif(st.v, st.drive, pop, dt)  # the reference's own functions: same arithmetic
        else:
            new_v = _exact_cuba(st.v, st.current, st.drive, pop, dt)
            st.current = st.current * math.exp(-dt / float(cast(float, pop.tau_syn)))
        st.v = new_v if free is None else xp.where(free, new_v, st.v)

    def _fire(self, spec: _PopSpec, st: _State, k: int) -> Any:
        """Steps 3-4 of step ``k`` (one spike per neuron at most): threshold (not refractory), reset; the spikes."""
        xp, pop = self.xp, spec.pop
        spk = st.v >= spec.theta
        if st.last is not None:
            spk &= (k - st.last) >= spec.ref_steps
            st.last = xp.where(spk, float(k), st.last)
        if pop.reset == "subtract":
            st.v = xp.subtract_where(st.v, spec.theta, spk)
        elif pop.reset == "zero":
            st.v = xp.assign_where(st.v, 0.0, spk)
        elif pop.reset == "value":
            st.v = xp.assign_where(st.v, float(pop.v_reset), spk)
        return spk

    def _apply(self, link: _Link, spikes: Any) -> Any:
        if link.kernel is not None:
            return self.xp.conv(link.prepared, link.kernel, spikes)
        return self.xp.matmul(link.prepared, spikes)

    def _init_state(self, plan: InputPlan, n_b: int) -> dict[str, _State]:
        """Every simulated population's state at step 0 for a batch of ``n_b`` samples."""
        xp, dt = self.xp, self.dt
        state: dict[str, _State] = {}
        for name in self.names:
            spec = self.specs[name]
            pop = spec.pop
            if spec.is_input:
                st = _State(v=xp.zeros((n_b, pop.n)))
            else:
                v0 = np.broadcast_to(np.asarray(pop.v_init, dtype=np.float64), (n_b, pop.n))
                st = _State(v=xp.asarray(np.array(v0)))
                if pop.model in ("cuba_lif", "cuba_li"):
                    st.current = xp.zeros((n_b, pop.n))
                i_in = plan.current_at(name, 0)
                # the reference's ``pop.bias + i_in`` and the quantities derived from it, computed once
                drive: Any = spec.bias if i_in is None else xp.asarray(np.asarray(pop.bias, dtype=np.float64) + i_in)
                if i_in is not None and pop.model in ("if", "integrator") and isinstance(drive, np.ndarray):
                    # these models read only dt·drive: computed in the drive's own fresh array (same
                    # values; one (batch, n) array less to fault in, results.md §0.2o)
                    st.drive = None
                    st.step_drive = np.multiply(dt, drive, out=drive)
                else:
                    st.drive = drive
                    st.step_drive = dt * drive
                if spec.ref_steps > 0:
                    st.last = xp.asarray(np.full((n_b, pop.n), -(10**9), dtype=np.float64))
            if spec.thresholded or spec.is_input:
                st.counts = xp.zeros((n_b, pop.n), dtype="int64")
            state[name] = st
        return state

    def run(self, plan: InputPlan, n_steps: int, *, seed: int, record: set[str],
            bits_out: Mapping[str, NDArray[np.uint8]] | None = None) -> SpikeRecord:
        """Simulate one batch.

        Parameters
        ----------
        plan : InputPlan
            The batch's inputs, Poisson input already drawn (``draw_poisson``).
        n_steps : int
        seed : int
            Seed of the populations' Poisson drive (``params["poisson_*"]``).
        record : set of str
            Populations whose every spike is returned.
        bits_out : mapping of str to ndarray of uint8 (n_samples, n_steps, ceil(n / 8)), optional
            Where the layer-major schedule packs the spikes of recorded populations (every byte
            is written); the returned trains are these arrays.  Batch parts run by threads write
            into slices of one array, so that joining them copies nothing.  The step-major
            schedule ignores it.
        """
        if self._layered is not None and LAYER_MAJOR and not plan.window_steps and not plan.graded:
            return cast(SpikeRecord, self._layered.run(plan, n_steps, seed=seed, record=record, bits_out=bits_out))
        xp, dt, snn = self.xp, self.dt, self.snn
        t0 = time.perf_counter()
        plan = draw_poisson(plan, n_steps, dt, seed)  # a no-op for plans already drawn (spikebridge.run.batches.iter_plan_tensor)
        n_b = plan.n_samples
        rng = np.random.default_rng(seed)
        state = self._init_state(plan, n_b)
        # ring buffer per (post, target): slot -> summed arrivals of that step, None while empty
        # (the first arrival is stored as is, so a silent step costs nothing)
        buffers: dict[tuple[str, str], list[Any]] = {key: [None] * self.ring for key in self.targets}
        out = snn.output if snn.output in state else None
        n_out = snn.populations[out].n if out else 0
        out_counts_t = xp.zeros((n_steps, n_b, n_out), dtype="int64")
        out_pot_t = xp.zeros((n_steps, n_b, n_out))
        running_out = xp.zeros((n_b, n_out), dtype="int64")
        raster = None if plan.raster is None else xp.asbool(plan.raster)
        rates = None if plan.rates is None else xp.asarray(plan.rates)
        zero_in = None

        floors = {name: wf for name, wf in self.plan.floors.items() if name in state}
        wraps = {name: wt for name, wt in self.plan.wraps.items() if name in state}
        for k in range(n_steps):
            slot = k % self.ring
            if k and plan.window_steps and k % plan.window_steps == 0:
                self._next_element(plan, state, k)
            for name, (w_steps, floor) in floors.items():
                if k % w_steps == 0:  # the window floor of a converted ReLU RNN (plan.window_floors)
                    st = state[name]
                    st.v = xp.where(st.v < floor, floor, st.v)
            for name, (w_steps, theta) in wraps.items():
                if k % w_steps == 0:  # plan.window_wraps: the reference's expression
                    st = state[name]
                    st.v = xp.where(st.v < 0, st.v - theta * xp.lib.floor(st.v / theta), st.v)
            # 1. state update
            for name, st in state.items():
                spec = self.specs[name]
                pop = spec.pop
                if spec.is_input:
                    if plan.kind == "spikes":
                        if raster is not None and k < raster.shape[1]:
                            st.spikes = raster[:, k]
                        else:
                            zero_in = zero_in if zero_in is not None else xp.zeros((n_b, pop.n), dtype="bool")
                            st.spikes = zero_in
                    else:  # "regular"
                        st.v += dt * rates  # type: ignore[operator]  # "regular" plans carry rates
                        st.spikes = st.v >= 1.0
                        st.v -= xp.as_float(st.spikes)
                    continue
                self._update(spec, st, k)
            # 2. arrivals of earlier steps' spikes
            for key, buf in buffers.items():
                self._arrive(state[key[0]], key[1], buf, slot)
            for name, st in state.items():
                p = self.specs[name].pop.params
                if p.get("poisson_n"):
                    lam = float(p["poisson_rate"]) * dt
                    jump = xp.asarray(rng.binomial(int(p["poisson_n"]), min(lam, 1.0), size=tuple(st.v.shape)) * float(p["poisson_weight"]))
                    st.v = st.v + (jump if st.free is None else xp.where(st.free, jump, 0.0))
            # 3. population by population in the update order (the reference's step 3): this step's
            # zero-delay arrivals, threshold, reset, emit
            for name in self.order:
                st = state[name]
                spec = self.specs[name]
                for key in self.inbound[name]:
                    self._arrive(st, key[1], buffers[key], slot)
                if spec.thresholded and not spec.is_input and spec.pop.graded:
                    # burst spikes: n = clip(floor(v/θ), 1, B) where v >= θ (the reference's arithmetic)
                    n_spk = xp.where(st.v >= spec.theta, xp.lib.clip(xp.lib.floor(st.v / spec.theta), 1, spec.pop.burst), 0.0)
                    if spec.pop.rate_cap:
                        # a clipped population's bound: the net count never exceeds the steps so far
                        n_spk = xp.lib.minimum(n_spk, (k + 1 - st.counts).to(n_spk.dtype) if xp.name != "numpy" else k + 1 - st.counts)
                    if spec.pop.signed:
                        # signed neuron with memory: n = -min(ceil(-v/θ), B, count) where v < 0 and the count is positive
                        cnt = st.counts.to(st.v.dtype) if xp.name != "numpy" else st.counts
                        neg = xp.lib.minimum(xp.lib.clip(xp.lib.ceil(-st.v / spec.theta), 1, spec.pop.burst), cnt)
                        n_spk = xp.where((st.v < 0) & (st.counts > 0), -neg, n_spk)
                    st.v = st.v - n_spk * spec.theta
                    st.spikes = n_spk.astype(np.int64) if xp.name == "numpy" else n_spk.to(xp.lib.int64)
                elif spec.thresholded and not spec.is_input:
                    st.spikes = self._fire(spec, st, k)
                if st.spikes is None:
                    continue
                spk = st.spikes
                if not xp.any(spk):
                    continue
                burst = spec.thresholded and not spec.is_input and spec.pop.graded
                st.counts += spk
                if name in record:
                    host = xp.to_numpy(spk)
                    s_idx, n_idx = np.nonzero(host)
                    if burst:  # a burst of n spikes: the step n times
                        s_idx, n_idx = np.nonzero(host > 0)  # a signed neuron's trains keep its positive spikes
                        reps = host[s_idx, n_idx].astype(np.int64)
                        s_idx, n_idx = np.repeat(s_idx, reps), np.repeat(n_idx, reps)
                    st.rec.append((s_idx, n_idx, k))
                # a burst of n spikes is delivered as the binary layers n >= 1, ..., n >= max n (as the reference)
                layers = [spk >= j for j in range(1, int(spk.max()) + 1)] if burst else [spk]
                # a signed neuron's negative spikes: the products with the binary layers n <= -j, subtracted
                negs = [spk <= -j for j in range(1, int(-spk.min()) + 1)] if burst and spec.pop.signed else []
                for link in self.links[name]:
                    d_slot = (k + link.steps) % self.ring
                    buf = buffers[(link.post, link.target)]
                    for layer in layers:
                        # 0 + x is x: the first arrival needs no addition (same sums as the reference's buffers)
                        buf[d_slot] = self._apply(link, layer) if buf[d_slot] is None else buf[d_slot] + self._apply(link, layer)
                    for neg in negs:
                        buf[d_slot] = -self._apply(link, neg) if buf[d_slot] is None else buf[d_slot] - self._apply(link, neg)
            if out:
                st = state[out]
                if st.spikes is not None:
                    running_out += st.spikes
                out_counts_t[k] = running_out
                out_pot_t[k] = st.v
        xp.synchronize()
        t1 = time.perf_counter()

        counts = {name: xp.to_numpy(st.counts).astype(np.int64) for name, st in state.items() if st.counts is not None}
        spikes = {
            name: spike_trains(state[name].rec if name in state else [], snn.populations[name].n, n_b, dt) for name in sorted(record)
        }
        return SpikeRecord(
            n_samples=n_b,
            n_steps=int(n_steps),
            dt=dt,
            output_counts_t=np.ascontiguousarray(np.transpose(xp.to_numpy(out_counts_t), (1, 0, 2))).astype(np.int32),
            output_potential_t=np.ascontiguousarray(np.transpose(xp.to_numpy(out_pot_t), (1, 0, 2))).astype(np.float32),
            counts=Counts(counts),
            spikes=spikes,
            readout=dict(snn.readout),
            meta={
                "seed": seed,
                "target": f"tensor-{xp.name}",
                "engine": "tensor",
                "batch_size": n_b,
                "timings": {"build_s": 0.0, "run_s": t1 - t0, "collect_s": time.perf_counter() - t1},
            },
        )


def estimate_tensor_memory(plan: Plan, batch_size: int) -> int:
    """Bytes one batch of the tensor engine needs (state, ring buffers, convolution workspace, outputs).

    Parameters
    ----------
    plan : Plan
        From :func:`spikebridge.engines.plan.compile`: ``n_steps``, the longest delay in steps (the
        ring buffer's length) and the recorded populations (about one spike per neuron per 4 steps,
        16 bytes each).
    batch_size : int

    Returns
    -------
    int
        Estimated peak bytes, kernels and matrices included.
    """
    snn, folded, names, n_steps = plan.snn, plan.folded, plan.active, plan.n_steps
    per_sample = 0.0
    fixed = 10e6  # arrays of the program and interpreter growth during a run
    ring = 1 + plan.max_delay_steps
    for name in names:
        per_sample += snn.populations[name].n * 8 * 6  # v, new v, current, refractory, counts, temporaries
    posts = {(p.post, p.target) for p in snn.projections.values() if p.name not in folded}
    per_sample += sum(snn.populations[post].n * 8 * ring for post, _ in posts)
    workspace = 0.0
    for p in snn.projections.values():
        if p.name in folded:
            continue
        if p.operator is not None and np.ndim(p.delay) == 0:
            kh, kw = p.operator.kernel_size
            oh, ow = p.operator.out_hw
            cin = p.operator.in_shape[0] if p.operator.groups == 1 else 1
            # im2col columns (numpy) / conv output, one projection at a time
            workspace = max(workspace, 8.0 * (p.operator.in_shape[0] * kh * kw * oh * ow + p.operator.n_post) * (1 if cin else 1))
            fixed += p.operator.kernel.nbytes
        else:
            n_pre, n_post = snn.populations[p.pre].n, snn.populations[p.post].n
            fixed += min(p.n_synapses * 12.0, n_pre * n_post * 8.0) + p.n_synapses * 24.0  # matrix + build temporaries
            workspace = max(workspace, 8.0 * (n_pre + n_post))
    per_sample += workspace
    if snn.input is not None:
        per_sample += snn.populations[snn.input].n * (n_steps + 8 * 2)  # raster (bool) / rates
    for post in {p.post for p in snn.projections.values() if p.name in folded}:
        per_sample += snn.populations[post].n * 8 * 3  # input current: the plan's, the batch's, the step's drive
    if snn.output is not None:
        per_sample += snn.populations[snn.output].n * n_steps * (8 + 8 + 4 + 4)
    for name in plan.record:
        per_sample += snn.populations[name].n * (n_steps // 4 + 1) * 16
    if plan.layer_major:
        from .layered import block_steps

        # layer-major blocks: spike history (bool) of every population, the summed arrivals of one
        # population's block and a product's output (float64)
        tb = block_steps(n_steps, plan.precision)
        per_sample += sum(snn.populations[name].n for name in names) * (tb + plan.max_delay_steps)
        per_sample += max((snn.populations[post].n for post, _ in posts), default=0) * tb * 8 * 2
    return int(fixed + per_sample * int(batch_size))


