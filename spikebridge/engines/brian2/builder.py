"""Batched Brian2 build: many samples in one network.

Every population becomes one ``NeuronGroup`` of ``batch_size × n`` neurons
(sample ``s`` owns neurons ``s*n … s*n + n - 1``) and every projection one
``Synapses`` object whose connections are replicated block-diagonally, so a
whole batch runs in one ``Network.run`` (one run per sample costs ~0.18 s of
fixed overhead each).  A projection with weights of both signs is built as two
objects, ``<proj>_exc`` and ``<proj>_inh``; a single-sign projection is one
object named after it.

Timing.  Brian2's default schedule delivers synaptic events *after* the
threshold test of a step.  The network is built with the schedule
``start, groups, synapses, thresholds, resets, end`` instead, and a projection
of ``d`` steps gets a Brian2 delay of ``(d - 1) dt``: a spike emitted in step
``j`` is queued by the pathway in step ``j + 1`` (when the synapses slot first
sees it) and delivered ``d - 1`` steps later, i.e. in step ``j + d`` after the
state update and before the threshold, as the shared semantics require.  In a
network with ``min_delay_steps=0`` a projection with zero-delay synapses runs
in the thresholds slot instead, right after its source's thresholder and before
its target's (thresholders are ordered by ``snn.update_order()``), with a Brian2
delay of ``d dt``: a zero-delay spike reaches the target before it is tested.

Memory.  :func:`estimate_memory` counts the bytes of every per-neuron and
per-synapse array Brian2 allocates (plus the builder's temporary index
arrays), so batches can be sized to ``SimulationConfig.max_memory`` before
anything is allocated.
"""

from __future__ import annotations

import functools
import logging
import zlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from ...snn.network import SpikingNetwork
from ...errors import BuildError
from .equations import input_spec, neuron_spec
from ..plan import InputPlan, Plan

if TYPE_CHECKING:  # pragma: no cover
    import brian2

log = logging.getLogger(__name__)

__all__ = ["BuiltNetwork", "build_network", "estimate_memory", "max_batch_size", "delay_buffer_bytes", "clock_for", "SCHEDULE"]

#: Brian2 schedule that puts synaptic delivery before the threshold test
SCHEDULE = ["start", "groups", "synapses", "thresholds", "resets", "end"]

# Measured bytes per synapse of a runtime Brian2 Synapses object: i, j,
# _synaptic_pre/_post, N_incoming/N_outgoing (int32), w (float64), the spike
# queue's per-source index lists, plus the builder's int64 temporaries.
_BYTES_PER_SYNAPSE = 72
_BYTES_PER_DELAY = 8 + 4  # heterogeneous delays: float64 value + int32 step in the queue
# per neuron: v, lastspike, not_refractory, i, spike space, monitors' counters, parameters
_BYTES_PER_NEURON = 64
_BYTES_FIXED = 40e6  # Brian2 objects, code objects, interpreter growth during a run
# Brian2's spike queue keeps one event vector per delay step (a 24-byte vector header in the
# compiled queue, before any spike); a 1e6 s delay at 1 ms, or 1 ms at 1e-12 s, is 1e9 of them
_BYTES_PER_QUEUE_STEP = 24
# standalone weight lookup (_connect_from_tables): a dense (pre, post) table up to 32 MB of float64
_DENSE_TABLE_ENTRIES = 4_000_000


def delay_buffer_bytes(plan: Plan) -> dict[str, int]:
    """Bytes of the spike queues of each simulated projection, which grow with the longest delay in steps.

    Parameters
    ----------
    plan : Plan
        From :func:`spikebridge.engines.plan.compile` (its ``dt`` in seconds sets the steps).

    Returns
    -------
    dict of str to int
        Per projection name; independent of the batch size.
    """
    dt = plan.dt
    out: dict[str, int] = {}
    for proj in plan.simulated():
        steps = float(np.max(np.asarray(proj.delay, dtype=np.float64))) / dt + 1
        w = np.asarray(proj.weight)
        parts = 2 if (np.any(w > 0) and np.any(w < 0)) else 1  # split into _exc and _inh objects
        out[proj.name] = int(min(steps, 1e18) * _BYTES_PER_QUEUE_STEP * parts)
    return out


def _pop_bytes(snn: SpikingNetwork, name: str) -> int:
    pop = snn.populations[name]
    extra = sum(8 for key in ("bias", "threshold") if np.ndim(getattr(pop, key)))
    extra += 8 if pop.model in ("cuba_lif", "cuba_li") else 0
    return pop.n * (_BYTES_PER_NEURON + extra)


def estimate_memory(plan: Plan, batch_size: int) -> int:
    """Bytes a batch of ``batch_size`` samples needs in Brian2, before building.

    Parameters
    ----------
    plan : Plan
        From :func:`spikebridge.engines.plan.compile`: its ``n_steps`` (the output potential is
        recorded every step), ``record`` (a rough allowance of one spike per neuron per 4 steps,
        12 bytes each) and ``dt`` in seconds (the spike queues grow with the longest delay in
        steps, :func:`delay_buffer_bytes`).
    batch_size : int
        Samples simulated together.

    Returns
    -------
    int
        Estimated peak bytes of the Brian2 objects and monitors.

    Examples
    --------
    >>> from spikebridge.engines.plan import compile
    >>> from spikebridge.snn.network import Population, SpikingNetwork
    >>> plan = compile(SpikingNetwork([Population(name="a", n=10, model="if")]))
    >>> estimate_memory(plan, 2) > estimate_memory(plan, 1)
    True
    """
    snn, folded, n_steps = plan.snn, plan.folded, plan.n_steps
    per_sample = 0
    for name in plan.active:
        per_sample += _pop_bytes(snn, name)
    for proj in snn.projections.values():
        if proj.name in folded:
            continue
        per_syn = _BYTES_PER_SYNAPSE + (_BYTES_PER_DELAY if np.ndim(proj.delay) else 0)
        per_sample += proj.n_synapses * per_syn
    if snn.output is not None:
        # output potential every step (float64 in the monitor, float32 copy) and output spike times
        per_sample += snn.populations[snn.output].n * n_steps * (8 + 4 + 4)
    for name in plan.record:
        per_sample += snn.populations[name].n * (n_steps // 4 + 1) * 12
    return int(_BYTES_FIXED + sum(delay_buffer_bytes(plan).values()) + per_sample * int(batch_size))


def max_batch_size(plan: Plan, max_memory: float) -> int:
    """Largest batch of ``plan`` that fits ``max_memory`` bytes (0 if not even one sample fits)."""
    one = estimate_memory(plan, 1)
    if one > max_memory:
        return 0
    per = max(estimate_memory(plan, 2) - one, 1)
    return int(1 + (max_memory - one) // per)


@dataclass
class BuiltNetwork:
    """The Brian2 objects of one batched build.

    Attributes
    ----------
    network : brian2.Network
    batch_size : int
    groups : dict of str to NeuronGroup
        One per simulated population.
    synapses : dict of str to list of Synapses
        Brian2 objects of each projection (one, or ``_exc`` and ``_inh``).
    spike_monitors : dict of str to SpikeMonitor
        Every spiking population (counting; recording ``i``/``t`` where asked).
    potential_monitor : StateMonitor or None
        Output ``v`` after every step.
    output_spikes : SpikeMonitor or None
        Output spikes with times (for counts over time).
    dt : float
    """

    network: "brian2.Network"
    batch_size: int
    groups: dict[str, Any]
    synapses: dict[str, list[Any]]
    spike_monitors: dict[str, Any]
    potential_monitor: Any
    output_spikes: Any
    dt: float
    recorded: set[str] = field(default_factory=set)
    input_kind: str = "current"
    raster_array: Any = None
    #: sequence networks: the per-window input current of each population (TimedArray)
    sequence_arrays: dict[str, Any] = field(default_factory=dict)
    #: populations counted by their reset (``n_spikes``, ``counters=True``) instead of a SpikeMonitor
    spike_counters: set[str] = field(default_factory=set)
    #: the output's cumulative count is recorded by ``potential_monitor`` (``n_spikes`` beside ``v``)
    output_counter: bool = False
    #: windowed build (``build_network(windows=K)``): K consecutive runs of ``batch_size`` samples
    windows: int = 0
    #: windowed build: each counted population's cumulative ``n_spikes`` at every window start (StateMonitor)
    window_counts: dict[str, Any] = field(default_factory=dict)
    #: windowed build: steps per window (the run's ``n_steps``)
    window_steps: int = 0

    def input_values(self, snn: SpikingNetwork, plan: InputPlan) -> dict[Any, np.ndarray]:
        """Map ``group.variable`` views to the batch's input values (padded to the batch size)."""
        import brian2

        out: dict[Any, np.ndarray] = {}
        for name, ta in self.sequence_arrays.items():
            out[ta] = _current_rows(plan.currents[name], self.batch_size, self.windows) * (1 / brian2.second)
        for name, cur in plan.currents.items():
            if plan.window_steps or self.windows:
                continue  # a sequence's (or a windowed build's) currents are the TimedArrays above
            values = np.zeros((self.batch_size, snn.populations[name].n))
            values[: cur.shape[0]] = cur
            out[self.groups[name].I_in] = values.ravel() * (1 / brian2.second)
        if plan.rates is not None and snn.input is not None:
            values = np.zeros((self.batch_size, snn.populations[snn.input].n))
            values[: plan.rates.shape[0]] = plan.rates
            out[self.groups[snn.input].rate] = values.ravel() * brian2.Hz
        if plan.raster is not None and self.raster_array is not None:
            out[self.raster_array] = _raster_rows(plan.raster, self.batch_size, self.windows, self.window_steps)
        return out

    def set_inputs(self, snn: SpikingNetwork, plan: InputPlan) -> None:
        """Write the batch's input values into the (runtime) groups (rasters are set at build time)."""
        seq = set(map(id, self.sequence_arrays.values()))
        for view, value in self.input_values(snn, plan).items():
            if view is not self.raster_array and id(view) not in seq:
                view[:] = value


def _time_rows(per_sample: np.ndarray, batch: int) -> np.ndarray:
    """TimedArray values (steps + 1, batch * k) of per-sample values (n_samples <= batch, steps, k): a
    row per step (or sequence element), the samples' blocks side by side, missing samples and a last
    row silent (a TimedArray holds its last value after the end)."""
    n, steps, k = per_sample.shape
    values = np.zeros((steps + 1, batch, k))
    values[:steps, :n] = np.transpose(per_sample, (1, 0, 2))
    return values.reshape(steps + 1, batch * k)


def _by_window(per_sample: np.ndarray, batch: int, windows: int) -> np.ndarray:
    """Per-sample values (n_samples, ...) of a windowed build as (batch, windows, ...): sample ``s`` is
    block ``s % batch`` of window ``s // batch``; missing samples are zeros."""
    m = per_sample.shape[0]
    if m > batch * windows:  # run.iter_standalone sizes the windows to hold the batch
        raise BuildError(f"{m} samples do not fit {windows} windows of {batch}")
    padded = np.zeros((windows * batch, *per_sample.shape[1:]))
    padded[:m] = per_sample
    return np.swapaxes(padded.reshape(windows, batch, *per_sample.shape[1:]), 0, 1)


def _current_rows(cur: np.ndarray, batch: int, windows: int) -> np.ndarray:
    """TimedArray values of the input current of a sequence (n_samples, T, n: a row per element) or
    of a windowed build (n_samples, n: a row per window)."""
    return _time_rows(_by_window(cur, batch, windows) if windows else cur, batch)


def _raster_rows(raster: np.ndarray, batch: int, windows: int = 0, steps: int = 0) -> np.ndarray:
    """TimedArray values (a row per step) of an input raster (n_samples, n_raster_steps, n_in); in a
    windowed build each sample is cut or zero-padded to ``steps`` and the windows follow each other."""
    if not windows:
        return _time_rows(raster, batch)
    t = min(raster.shape[1], steps)
    cut = np.zeros((raster.shape[0], steps, raster.shape[2]))
    cut[:, :t] = raster[:, :t]
    return _time_rows(_by_window(cut, batch, windows).reshape(batch, windows * steps, raster.shape[2]), batch)


def _block_indices(local: np.ndarray, n: int, batch: int) -> np.ndarray:
    """Indices of ``local`` replicated for every sample, sample-major (int32 if it fits)."""
    dtype: type[np.signedinteger[Any]] = np.int32 if n * batch < 2**31 else np.int64
    base = (np.arange(batch, dtype=dtype) * dtype(n))[:, None]
    return (base + local.astype(dtype)[None, :]).ravel()


def _csr(pre: np.ndarray, post: np.ndarray, n_pre: int) -> tuple[np.ndarray, np.ndarray] | None:
    """Row pointers and columns of synapses already sorted by (pre, post); None with repeated pairs."""
    if pre.size > 1 and np.any((pre[1:] == pre[:-1]) & (post[1:] == post[:-1])):
        return None  # a weight lookup by (pre, post) would be ambiguous
    rowptr = np.zeros(n_pre + 1, dtype=np.int32)
    np.cumsum(np.bincount(pre, minlength=n_pre), out=rowptr[1:])
    return rowptr, post.astype(np.int32)


def _connect_from_tables(b2: Any, syn: Any, tag: str, pre: np.ndarray, post: np.ndarray, weight: np.ndarray,
                         n_pre: int, n_post: int) -> bool:
    """Connect ``syn`` block-diagonally and set ``w`` from one sample's tables (cpp_standalone only).

    ``connect(i=..., j=...)`` in standalone stores the replicated index arrays (and ``w``) as
    files that the binary reads, and writes back, on every run: for a LeNet batch of 82 that was
    ~1 GB of file traffic and ~1.4 s of a 2.1 s run whose network ran 0.3-0.7 s.  A generator
    expression over one sample's CSR tables (C++ functions with the tables in their namespace)
    creates the same synapses in the same order (sample, pre, post) inside the binary, and ``w``
    is looked up in a dense (pre, post) table (up to ``_DENSE_TABLE_ENTRIES``), else by binary
    search of ``post`` in the row of ``pre``.  Returns False (caller falls back to arrays) when a
    (pre, post) pair repeats.
    """
    csr = _csr(pre, post, n_pre)
    if csr is None:
        return False
    rowptr, cols = csr
    row_f = b2.Function(lambda k: rowptr[np.asarray(k, dtype=np.int64)], arg_units=[1], return_unit=1,
                        arg_types=["integer"], return_type="integer")
    row_f.implementations.add_implementation(
        "cpp", {"support_code": f"static inline int32_t sbrow_{tag}(const int32_t k) {{ return _namespacesbrow_{tag}_t[k]; }}"},
        namespace={f"sbrow_{tag}_t": rowptr}, name=f"sbrow_{tag}")
    col_f = b2.Function(lambda k: cols[np.asarray(k, dtype=np.int64)], arg_units=[1], return_unit=1,
                        arg_types=["integer"], return_type="integer")
    col_f.implementations.add_implementation(
        "cpp", {"support_code": f"static inline int32_t sbcol_{tag}(const int32_t k) {{ return _namespacesbcol_{tag}_t[k]; }}"},
        namespace={f"sbcol_{tag}_t": cols}, name=f"sbcol_{tag}")
    if n_pre * n_post <= _DENSE_TABLE_ENTRIES:
        # a dense (pre, post) table: O(1) per synapse (a binary search in the row cost ~30 ns per
        # synapse, 0.7 s of a LeNet batch's start-up)
        dense = np.zeros(n_pre * n_post, dtype=np.float64)
        dense[pre.astype(np.int64) * n_post + post] = weight
        w_code = (f"static inline double sbw_{tag}(const int32_t ip, const int32_t jp) {{\n"
                  f"    return _namespacesbw_{tag}_v[(int64_t)ip * {n_post} + jp];\n}}")
        w_ns: dict[str, np.ndarray] = {f"sbw_{tag}_v": dense}
    else:
        w_code = (
            f"static inline double sbw_{tag}(const int32_t ip, const int32_t jp) {{\n"
            f"    int32_t lo = _namespacesbrow_{tag}_r[ip], hi = _namespacesbrow_{tag}_r[ip + 1];\n"
            f"    while (hi - lo > 1) {{ const int32_t mid = (lo + hi) / 2;\n"
            f"        if (_namespacesbcol_{tag}_c[mid] <= jp) lo = mid; else hi = mid; }}\n"
            f"    return _namespacesbw_{tag}_v[lo];\n}}"
        )
        w_ns = {f"sbrow_{tag}_r": rowptr, f"sbcol_{tag}_c": cols,
                f"sbw_{tag}_v": np.ascontiguousarray(weight, dtype=np.float64)}
    w_f = b2.Function(lambda ip, jp: np.zeros(np.shape(ip)), arg_units=[1, 1], return_unit=1,
                      arg_types=["integer", "integer"], return_type="float")
    w_f.implementations.add_implementation("cpp", {"support_code": w_code}, namespace=w_ns, name=f"sbw_{tag}")
    ns = {f"sbrow_{tag}": row_f, f"sbcol_{tag}": col_f, f"sbw_{tag}": w_f, "sb_npre": n_pre, "sb_npost": n_post}
    syn.namespace.update(ns)
    syn.connect(j=f"sbcol_{tag}(k) + sb_npost * (i // sb_npre) "
                  f"for k in range(sbrow_{tag}(i % sb_npre), sbrow_{tag}(i % sb_npre + 1))")
    syn.w = f"sbw_{tag}(i % sb_npre, j % sb_npost)"
    return True


def _connect_runtime(syn: Any, pre: np.ndarray, post: np.ndarray, n_pre: int, n_post: int, b: int) -> bool:
    """Write one sample's synapses, replicated ``b`` times, straight into a runtime ``Synapses`` object.

    ``connect(i=, j=)`` copies the index arrays three times (int32 cast, ``repeat``, a generated
    copy loop), checks their ranges and counts ``N_incoming``/``N_outgoing`` with ``bincount``
    over all replicas: ~60 ms of a 360-sample MLP batch, a cost that grows with the batch.  Here
    the same arrays, in the same order, are written once and the counts are one sample's, tiled.
    Uses Brian2's internal ``_resize``; returns False (caller uses ``connect``) where the object
    does not look as expected, e.g. another Brian2 version.
    """
    v = syn.variables
    needed = ("_synaptic_pre", "_synaptic_post", "N_incoming", "N_outgoing")
    if (not all(k in v for k in needed) or not hasattr(syn, "_resize") or syn.multisynaptic_index is not None
            or "_offset" in syn.source.variables or "_offset" in syn.target.variables or len(syn) != 0):
        return False
    n = pre.size * b
    syn._resize(n)
    v["_synaptic_pre"].resize(n)
    v["_synaptic_post"].resize(n)
    v["_synaptic_pre"].get_value()[:] = _block_indices(pre, n_pre, b)
    v["_synaptic_post"].get_value()[:] = _block_indices(post, n_post, b)
    v["N_outgoing"].resize(n_pre * b)
    v["N_incoming"].resize(n_post * b)
    v["N_outgoing"].get_value()[:] = np.tile(np.bincount(pre, minlength=n_pre), b)
    v["N_incoming"].get_value()[:] = np.tile(np.bincount(post, minlength=n_post), b)
    syn._connect_called = True
    return True


@functools.lru_cache(maxsize=1)
def _clock_class(b2: Any) -> Any:
    """``brian2.Clock`` with a cheap ``repr``.

    Every Brian2 object formats ``repr(clock)`` into a debug log message when
    it is created, whether or not the message is shown, and a ``Clock``'s repr
    picks the best unit for ``dt`` (milliseconds of unit arithmetic each); a
    batched network has dozens of objects, so this was a tenth of the build.
    """

    def __repr__(self: Any) -> str:
        return f"Clock(dt={float(self.dt_)!r} s, name={self.name!r})"

    def __hash__(self: Any) -> int:
        # cpp_standalone writes main.cpp from a set of clocks: with two (a windowed build) an
        # identity hash puts them in a different order in each build, and the changed source
        # recompiles the binary (7 s for the LeNet) at every run.  A constant of the class (one
        # class per clock name, see clock_for): Brian2 hashes the object before its __init__
        # names it.  Equality stays identity.
        return int(type(self).name_hash)

    # Brian2 lets an attribute bypass its variable system only if the object's own class
    # defines it, so the subclass re-declares the parent's properties (dt, ...)
    namespace = {k: v for k, v in vars(b2.Clock).items() if isinstance(v, property)}
    return type("Clock", (b2.Clock,), {**namespace, "__repr__": __repr__, "__hash__": __hash__, "name_hash": 0})


@functools.lru_cache(maxsize=8)
def _named_clock_class(b2: Any, name: str) -> Any:
    base = _clock_class(b2)
    # the properties again: Brian2 looks for them in the object's own class (see _clock_class)
    namespace = {k: v for k, v in vars(base).items() if isinstance(v, property)}
    return type("Clock", (base,), {**namespace, "name_hash": zlib.crc32(name.encode())})


def clock_for(b2: Any, dt: Any, name: str) -> Any:
    """A Brian2 clock of step ``dt`` (a Brian2 quantity) named ``name``, hashed by its name (see :func:`_clock_class`)."""
    return _named_clock_class(b2, name)(dt=dt, name=name)


def build_network(
    plan: Plan,
    batch_size: int,
    *,
    split_signs: bool = False,
    raster: np.ndarray | None = None,
    inputs: InputPlan | None = None,
    counters: bool = False,
    windows: int = 0,
) -> BuiltNetwork:
    """Create the Brian2 objects of ``batch_size`` copies of ``plan.snn``.

    Must be called inside :func:`spikebridge.engines.brian2.run.brian2_state`
    (device, target and seed set there).  Input values are set afterwards
    with :meth:`BuiltNetwork.set_inputs` (runtime) or passed as ``run_args``
    (standalone).

    Parameters
    ----------
    plan : Plan
        From :func:`spikebridge.engines.plan.compile`: the network, ``dt`` (seconds), the recorded
        populations (spikes with times), the simulated populations and projections and the
        same-step schedule.
    batch_size : int
    split_signs : bool
        Build a mixed-sign projection as two objects ``<proj>_exc`` and
        ``<proj>_inh`` (same synapses, one more pathway per spike).
    raster : ndarray, shape (n_samples <= batch_size, n_raster_steps, n_in), optional
        Input spikes of the batch for the ``"spikes"`` encoding (zero-padded to the batch):
        bool for spikes, float64 for analog input (pulse areas, see :mod:`.plan`).
    inputs : InputPlan, optional
        The batch's inputs; needed at build time only by sequence networks
        (``inputs.window_steps > 0``), whose per-element input currents become one
        ``TimedArray`` per population (``<population>_seq``, a row per window) and whose
        window floors (:func:`~.plan.window_floors`) become ``run_regularly`` operations
        (``<population>_floor``, every window, slot ``start``: before the state update).
    counters : bool
        Count the spikes of every population whose spike times are not kept with an
        ``n_spikes`` variable that its reset increments, instead of a ``SpikeMonitor``, and
        record the output's cumulative count beside its ``v`` in one ``StateMonitor``
        (``potential_monitor.n_spikes``): one code object per population less in every step
        and no spike-time arrays to bin afterwards (the engine's batched runs). Populations
        with no reset of their own (spike-raster and Poisson inputs) get one that only counts; burst
        populations and recorded ones keep their monitor.
    windows : int
        Run ``windows`` consecutive groups of ``batch_size`` samples in one run of
        ``windows * plan.n_steps`` steps (a cpp_standalone binary pays its set-up once, and a
        small batch's synapses stay in the cache; see :func:`.run.window_batch` for the networks
        it applies to).  Input currents become ``TimedArray`` objects with a row per window
        (``<population>_seq``, values from :meth:`BuiltNetwork.input_values`), every population's
        ``v`` returns to its initial value at each window start (``<population>_window``,
        ``run_regularly`` in the ``start`` slot), spikes are counted by the resets (``counters``)
        and each count is recorded at every window start (``<population>_window_counts``).

    Raises
    ------
    BuildError
        A population model or projection the builder cannot express.
    """
    import brian2 as b2

    snn, dt = plan.snn, plan.dt
    b = int(batch_size)
    raster_array = None
    clock = clock_for(b2, dt * b2.second, "spikebridge_clock")
    folded = plan.folded
    names = list(plan.active)
    # Poisson inputs arrive pre-drawn as a raster (plan.draw_poisson), like the "spikes" encoding
    kind = "spikes" if raster is not None else str(snn.encoding.get("kind", "current"))
    # analog input (plan.py): a real-valued raster's events carry their value as a factor on w
    graded = raster is not None and raster.dtype != np.bool_
    has_current = {p.post for p in snn.projections.values() if p.name in folded}
    rec = set(plan.record) & set(names)
    groups: dict[str, Any] = {}
    objects: list[Any] = []
    window = inputs.window_steps if inputs is not None else 0
    if windows:
        if window or graded or kind not in ("current", "spikes"):
            raise BuildError(f"network '{snn.name}': a windowed build takes constant input currents or spike rasters only")
        window = plan.n_steps  # one row of the current TimedArrays per window
        counters = True
        # named (and hashed by its name, clock_for): an auto-named clock ("clock_7") would change
        # the generated sources of every build, and with them recompile the standalone binary
        window_clock = clock_for(b2, window * dt * b2.second, "spikebridge_window_clock")
    sequence_arrays: dict[str, Any] = {}
    floors = plan.floors
    spike_counters: set[str] = set()
    for name in names:
        pop = snn.populations[name]
        seq = bool(window) and name in has_current
        try:
            spec = (input_spec(kind, graded=graded) if name == snn.input
                    else neuron_spec(pop, has_current=name in has_current, sequence=seq))
        except ValueError as err:
            raise BuildError(str(err)) from err
        units = {"second": b2.second, "1/second": b2.Hz, "1": 1.0}
        ns: dict[str, Any] = {k: v * units[u] for k, (v, u) in spec.namespace.items()}
        if seq:
            assert inputs is not None
            ta = b2.TimedArray(_current_rows(inputs.currents[name], b, windows) / b2.second, dt=window * dt * b2.second, name=f"{name}_seq")
            ns["I_seq"] = ta
            sequence_arrays[name] = ta
        if name == snn.input and kind == "spikes":
            if raster is None:
                raise BuildError(f"network '{snn.name}': the 'spikes' encoding needs a raster of input spikes")
            raster_array = b2.TimedArray(_raster_rows(raster, b, windows, plan.n_steps), dt=dt * b2.second, name=f"{name}_raster")
            ns["spike_raster"] = raster_array
        kwargs: dict[str, Any] = dict(method=spec.method, clock=clock, name=name, namespace=ns)
        if spec.threshold:
            kwargs["threshold"] = spec.threshold
        counted = bool(counters and spec.threshold and not pop.graded and name not in rec)
        if counted:
            # the reset runs once for every neuron the thresholder let spike: the count a
            # SpikeMonitor keeps, without a monitor code object in every step
            spec.equations += "\nn_spikes : integer"
            spec.reset = f"{spec.reset}\nn_spikes += 1" if spec.reset else "n_spikes += 1"
            spike_counters.add(name)
        if spec.reset:
            kwargs["reset"] = spec.reset
        elif spec.threshold:
            kwargs["reset"] = ""  # deliberate (Poisson/raster inputs, reset "none"): silences Brian2's warning
        if spec.refractory > 0:
            kwargs["refractory"] = spec.refractory * b2.second
        v_start = np.asarray(pop.v_init, dtype=np.float64)
        if windows and name != snn.input and v_start.ndim:
            spec.equations += "\nv_start : 1 (constant)"
        group = b2.NeuronGroup(b * pop.n, spec.equations, **kwargs)
        for key, arr in spec.per_neuron.items():
            unit = 1 / b2.second if key == "bias" else 1.0
            setattr(group, key, np.tile(arr, b) * unit)
        if name != snn.input:
            v0 = np.asarray(pop.v_init, dtype=np.float64)
            if v0.ndim:
                group.v = np.tile(v0, b)
            elif float(v0) != 0.0:
                group.v = float(v0)
            if windows:
                # every window starts as a fresh run (counts are cumulative and recorded per window)
                if v0.ndim:
                    group.v_start = np.tile(v0, b)
                group.run_regularly("v = v_start" if v0.ndim else f"v = {float(v0)!r}", clock=window_clock,
                                    when="start", name=f"{name}_window")
        p = pop.params
        if p.get("poisson_n"):
            objects.append(
                b2.PoissonInput(
                    group,
                    "v",
                    N=int(p["poisson_n"]),
                    rate=float(p["poisson_rate"]) * b2.Hz,
                    # refractory neurons ignore input (Brunel 2000; the reference simulator does the same)
                    weight=repr(float(p["poisson_weight"])) + (" * int(not_refractory)" if pop.refractory > 0 else ""),
                )
            )
        if name in floors:
            w_steps, floor = floors[name]
            # before the state update of every window's first step, as in the reference
            group.run_regularly(f"v = clip(v, {floor!r}, inf)", dt=w_steps * dt * b2.second, when="start",
                                name=f"{name}_floor")
        if name in plan.wraps:
            w_steps, theta = plan.wraps[name]
            # plan.window_wraps: int(v < 0) selects, the product is exact, so v >= 0 stays bit for bit
            group.run_regularly(f"v = v - {theta!r} * floor(v / {theta!r}) * int(v < 0)", dt=w_steps * dt * b2.second,
                                when="start", name=f"{name}_wrap")
        groups[name] = group
        objects.append(group)

    # same-step delivery (min_delay_steps=0): thresholders run in the network's update order
    # within the thresholds slot, and a zero-delay pathway runs there too, between its source's
    # thresholder and its target's (orders 4r + 1 and 4r for the population of rank r; a spike
    # monitor takes its thresholder's order + 1)
    rank = {name: r for r, name in enumerate(plan.order)}
    same_step = plan.same_step
    if same_step:
        for name, group in groups.items():
            if "spike" in group.events:
                group.thresholder["spike"].order = 4 * rank[name] + 1

    synapses: dict[str, list[Any]] = {}
    from brian2.devices.device import get_device

    # standalone: synapses made inside the binary from one sample's tables (_connect_from_tables)
    tables = type(get_device()).__name__ == "CPPStandaloneDevice"
    for proj in snn.projections.values():
        if proj.name in folded:
            continue
        pre_n, post_n = snn.populations[proj.pre].n, snn.populations[proj.post].n
        steps = snn.projection_steps(proj, dt)
        hetero = np.ndim(steps) > 0 and steps.size > 0 and np.any(steps != steps.flat[0])
        parts = []
        if proj.sign == "mixed" and split_signs:
            parts = [(f"{proj.name}_exc", proj.weight > 0), (f"{proj.name}_inh", proj.weight < 0)]
        else:
            parts = [(proj.name, np.ones(proj.n_synapses, dtype=bool))]
        objs = []
        # synapses of one pre-synaptic neuron next to each other: a spike then reads w and
        # writes v_post in order (2-4x faster propagation than post-major COO order)
        order = np.lexsort((proj.post_index, proj.pre_index))
        for sname, sel in parts:
            sel = order[sel[order]]
            if not sel.size:
                continue
            # Brian2's "unless refractory" stops only the ODE; synaptic writes to v must be
            # gated explicitly so refractory neurons ignore input, as in the reference simulator
            gate = " * int(not_refractory_post)" if proj.target == "v" and snn.populations[proj.post].refractory > 0 else ""
            # a burst population's spike carries its multiplicity n_burst (read before the reset)
            mult = " * n_burst_pre" if snn.populations[proj.pre].graded else ""  # n = -1: a negative spike
            kw: dict[str, Any] = dict(model="w : 1", on_pre=f"{proj.target}_post += w{mult}{gate}", clock=clock, name=sname,
                                      namespace={}, method="exact")
            d = int(np.ravel(steps)[0]) if np.size(steps) else 1
            analog = graded and proj.pre == snn.input
            if analog:
                # on_pre runs when the event arrives, d steps after it left (delivery precedes the
                # threshold, see SCHEDULE): read the pulse area of the emitting step from the raster
                kw["model"] = "w : 1\nlag : second (constant)"
                kw["on_pre"] = f"{proj.target}_post += w * spike_raster(t - lag, i_pre){gate}"
                kw["namespace"] = {"spike_raster": raster_array}
            # a pathway in the synapses slot first sees a spike one step after it was emitted;
            # one in the thresholds slot (same-step projections) sees it in the step itself
            lag = 0 if proj.name in same_step else 1
            if not hetero:
                kw["delay"] = (d - lag) * dt * b2.second
            syn = b2.Synapses(groups[proj.pre], groups[proj.post], **kw)
            if lag == 0:
                syn.pre.when = "thresholds"
                syn.pre.order = 4 * rank[proj.post]
            if tables:
                made = not hetero and not analog and _connect_from_tables(
                    b2, syn, f"{len(objects)}", proj.pre_index[sel], proj.post_index[sel], proj.weight[sel], pre_n, post_n)
            else:
                made = _connect_runtime(syn, proj.pre_index[sel], proj.post_index[sel], pre_n, post_n, b)
                if made:
                    syn.w = np.tile(proj.weight[sel], b)
            if not made:
                pre = _block_indices(proj.pre_index[sel], pre_n, b)
                post = _block_indices(proj.post_index[sel], post_n, b)
                syn.connect(i=pre, j=post)
                del pre, post
                syn.w = np.tile(proj.weight[sel], b)
            if hetero:
                syn.delay = np.tile((np.broadcast_to(steps, proj.weight.shape)[sel] - lag) * dt, b) * b2.second
            if analog:
                syn.lag = np.tile(np.broadcast_to(steps, proj.weight.shape)[sel] * dt, b) * b2.second
            objs.append(syn)
            objects.append(syn)
        synapses[proj.name] = objs

    spike_monitors: dict[str, Any] = {}
    for name in names:
        if "spike" not in groups[name].events or name in spike_counters:
            continue
        # the output's monitor keeps spike times in any case (counts over time): one monitor, not a
        # counting one beside a recording one (one code object less per step)
        keep = name in rec or name == snn.output
        burst = snn.populations[name].graded and keep  # record each event's multiplicity (or sign)
        mon = b2.SpikeMonitor(groups[name], variables=["n_burst"] if burst else None, record=keep, name=f"{name}_spikes")
        spike_monitors[name] = mon
        objects.append(mon)
    if windows and spike_monitors:
        # a monitor's counts run on across windows; run.window_batch admits only counted populations
        raise BuildError(f"network '{snn.name}': a windowed build cannot count {sorted(spike_monitors)} per window")
    out_spikes = pot = None
    output_counter = False
    if snn.output is not None and snn.output in groups:
        out_group = groups[snn.output]
        if snn.output in spike_monitors:
            out_spikes = spike_monitors[snn.output]
        # a counted output: its cumulative count after every step, in the potential's monitor
        output_counter = snn.output in spike_counters
        pot = b2.StateMonitor(out_group, ["v", "n_spikes"] if output_counter else "v", record=True, when="end",
                              name=f"{snn.output}_potential")
        objects.append(pot)
    window_counts: dict[str, Any] = {}
    for name in sorted(spike_counters) if windows else ():
        # in the start slot of each window's first step: the count of all earlier windows
        mon = b2.StateMonitor(groups[name], "n_spikes", record=True, clock=window_clock, when="start",
                              name=f"{name}_window_counts")
        window_counts[name] = mon
        objects.append(mon)
    net = b2.Network(*objects, name="spikebridge_network")
    net.schedule = list(SCHEDULE)
    return BuiltNetwork(
        network=net,
        batch_size=b,
        groups=groups,
        synapses=synapses,
        spike_monitors=spike_monitors,
        potential_monitor=pot,
        output_spikes=out_spikes,
        dt=dt,
        recorded=rec,
        input_kind=kind,
        raster_array=raster_array,
        sequence_arrays=sequence_arrays,
        spike_counters=spike_counters,
        output_counter=output_counter,
        windows=int(windows),
        window_counts=window_counts,
        window_steps=int(plan.n_steps) if windows else 0,
    )
