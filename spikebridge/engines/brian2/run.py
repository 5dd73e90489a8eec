"""Running a built Brian2 network: global state, one runtime batch, cpp_standalone batches.

Brian2's global state (code-generation target, device, ``defaultclock.dt``, numpy's global
random state that ``brian2.seed`` touches) is changed only inside :func:`brian2_state` and restored
when it exits.

Targets: ``"numpy"`` (no compiler; tests), ``"cython"``, ``"auto"`` (cython where Cython and a C
compiler are found and Brian2's Cython cache holds compiled code, else numpy: a first run never
compiles for minutes unasked) and ``"cpp_standalone"`` (the network is compiled once for a batch
size and the binary is re-run for every batch with the batch's input values passed as
``run_args``; the last batch is padded with zero inputs).
"""

from __future__ import annotations

import contextlib
import functools
import gc
import hashlib
import logging
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import numpy as np
from numpy.typing import NDArray

from ...config import SimulationConfig
from ...errors import BuildError, SimulationError
from ...snn.network import SpikingNetwork
from ...store.record import Counts, SpikeRecord, SpikeTrains
from ..plan import InputPlan, Plan, draw_poisson
from .builder import BuiltNetwork, build_network

__all__ = ["import_brian2", "brian2_state", "resolve_target", "explain_target", "cython_cache_dir", "standalone_cache_dir", "run_batch", "iter_standalone", "collect", "window_batch", "WINDOW_SYNAPSE_BYTES", "MIN_WINDOWS"]



@functools.lru_cache(maxsize=1)
def _cython_works() -> bool:
    try:
        import Cython  # noqa: F401
    except ImportError:
        return False
    import sysconfig

    cc = (sysconfig.get_config_var("CC") or "cc").split()[0]
    return shutil.which(cc) is not None or shutil.which("cc") is not None



#: One line per choice made for the user (engine, target) and per compilation, with why and how long;
#: the CLI shows its INFO lines unless --quiet, Python shows its warnings (compilations) by default.
notice = logging.getLogger("spikebridge.notice")

#: Seconds one Brian2 code object takes to compile with Cython on a 2-core machine (4-8 s measured;
#: issue 23: a CNN's first cython run compiled 258 s).
CYTHON_S_PER_OBJECT = 6.0


def cython_cache_dir() -> Path:
    """Where Brian2 keeps compiled Cython code objects (``codegen.runtime.cython.cache_dir`` or ``~/.cython``)."""
    try:
        from brian2.codegen.runtime.cython_rt.extension_manager import get_cython_cache_dir

        return Path(get_cython_cache_dir())
    except Exception:  # another Brian2 layout: its documented default
        return Path(os.path.expanduser("~")) / ".cython" / "brian_extensions"


def cython_cache_exists() -> bool:
    """Whether Brian2's Cython cache holds compiled code objects (a run has compiled there before)."""
    try:
        return any(f.suffix in (".so", ".pyd") for f in cython_cache_dir().iterdir())
    except OSError:
        return False


def resolve_target(target: str) -> str:
    """The code-generation target that ``target`` means on this machine.

    ``"auto"`` is ``"cython"`` where Cython and a C compiler work **and**
    Brian2's Cython cache already holds compiled code (a run with
    ``target="cython"`` has compiled once); else ``"numpy"``, which compiles
    nothing, so a first run starts at once instead of compiling for minutes.

    Examples
    --------
    >>> resolve_target("numpy")
    'numpy'
    """
    if target == "auto":
        return "cython" if _cython_works() and cython_cache_exists() else "numpy"
    return target


_said: set[str] = set()


def say_once(key: str, message: str, level: int = logging.INFO) -> None:
    """Log ``message`` on :data:`notice` once per process and ``key``."""
    if key not in _said:
        _said.add(key)
        notice.log(level, message)


def explain_target(target: str, snn: SpikingNetwork | None = None) -> str:
    """Resolve ``target`` and say in one line what was chosen and why (and what compiles, for how long)."""
    resolved = resolve_target(target)
    if target == "auto":
        if resolved == "numpy":
            why = "no compiler/Cython found" if not _cython_works() else f"no compiled Cython cache yet in {cython_cache_dir()}"
            notice.info(f"target auto -> numpy: {why}; nothing to compile (target='cython' compiles "
                     "each code object once, seconds each, then runs large networks faster)")
        else:
            notice.info(f"target auto -> cython: compiled code cached in {cython_cache_dir()}")
    if resolved == "cython" and snn is not None and not cython_cache_exists():
        n_obj = 3 * len(snn.populations) + 2 * len(snn.projections)
        say_once(f"compile-{snn.name}",
                 f"compiling Cython code for network '{snn.name}' (about {n_obj} code objects, expected "
                 f"~{n_obj * CYTHON_S_PER_OBJECT / 60:.0f}-{2 * n_obj * CYTHON_S_PER_OBJECT / 60:.0f} min on 2 cores, "
                 f"once: cached in {cython_cache_dir()}); target='numpy' compiles nothing", logging.WARNING)
    return resolved



def structure_key(snn: SpikingNetwork, batch_size: int, cfg: SimulationConfig, dt: float, graded: bool = False,
                  windows: int = 0) -> str:
    """Hash of everything that changes the generated standalone code (not the input values)."""
    h = hashlib.sha1()
    h.update(repr((snn.name, batch_size, cfg.n_steps, dt, cfg.seed, cfg.threads, tuple(cfg.record))).encode())
    if windows:
        h.update(f"windows={windows}".encode())
    if graded:  # analog rasters generate other threshold and synapse code
        h.update(b"graded")
    h.update(repr(sorted(snn.encoding.items())).encode())
    for pop in snn.populations.values():
        h.update(repr((pop.name, pop.n, pop.model, pop.reset, pop.refractory, pop.tau_mem, pop.tau_syn, sorted(pop.params.items()))).encode())
        for key in ("threshold", "bias", "v_init"):
            h.update(np.ascontiguousarray(np.asarray(getattr(pop, key), dtype=np.float64)).tobytes())
    for proj in snn.projections.values():
        h.update(repr((proj.name, proj.pre, proj.post, proj.target)).encode())
        for arr in (proj.pre_index, proj.post_index, proj.weight, np.asarray(proj.delay)):
            h.update(np.ascontiguousarray(arr).tobytes())
    return h.hexdigest()[:16]



def standalone_cache_dir() -> Path:
    """Where ``cpp_standalone`` projects are kept between runs (``$SPIKEBRIDGE_CACHE`` or ``~/.cache/spikebridge``)."""
    root = os.environ.get("SPIKEBRIDGE_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "spikebridge"
    )
    return Path(root) / "standalone"



@contextlib.contextmanager
def brian2_state(target: str, seed: int, *, build_dir: str | None = None, threads: int = 1) -> Iterator[str]:
    """Set Brian2's target/device and seed; restore all of it on exit.

    Parameters
    ----------
    target : {"numpy", "cython", "auto", "cpp_standalone"}
    seed : int
    build_dir : str, optional
        Project directory for ``cpp_standalone``.

    Yields
    ------
    str
        The resolved target.
    """
    import brian2 as b2
    from brian2.devices.device import get_device, set_device

    resolved = resolve_target(target)
    saved_target = b2.prefs["codegen.target"]
    saved_dt = b2.defaultclock.dt_
    saved_device = get_device()
    saved_rng = np.random.get_state()
    saved_threads = b2.prefs["devices.cpp_standalone.openmp_threads"]
    saved_make = b2.prefs["devices.cpp_standalone.extra_make_args_unix"]
    try:
        if resolved == "cpp_standalone":
            b2.prefs["devices.cpp_standalone.openmp_threads"] = 0 if threads <= 1 else int(threads)
            # Brian2's default ``make -j`` starts one compiler per source file at once (about 100
            # for the LeNet: a load of 50-100 and a GB of memory for a minute); one per core
            # builds as fast and leaves the machine usable
            b2.prefs["devices.cpp_standalone.extra_make_args_unix"] = [f"-j{os.cpu_count() or 1}"]
            set_device("cpp_standalone", build_on_run=False, directory=build_dir)
        else:
            b2.prefs["codegen.target"] = resolved
        b2.seed(seed)
        yield resolved
    finally:
        if resolved == "cpp_standalone":
            get_device().reinit()
            set_device(saved_device)
        b2.prefs["codegen.target"] = saved_target
        b2.prefs["devices.cpp_standalone.openmp_threads"] = saved_threads
        b2.prefs["devices.cpp_standalone.extra_make_args_unix"] = saved_make
        b2.defaultclock.dt = saved_dt * b2.second
        np.random.set_state(saved_rng)



def collect(built: BuiltNetwork, snn: SpikingNetwork, n_valid: int, n_steps: int, dt: float) -> dict[str, Any]:
    """Read monitors into numpy arrays for the first ``n_valid`` samples."""
    if built.windows:
        return _collect_windows(built, snn, n_valid, n_steps)
    b = built.batch_size
    counts: dict[str, np.ndarray] = {}
    spikes: dict[str, SpikeTrains] = {}
    for name in built.spike_counters:  # counted by the reset (build_network(counters=True))
        c = np.asarray(built.groups[name].n_spikes_[:], dtype=np.int64)
        counts[name] = c.reshape(b, snn.populations[name].n)[:n_valid]
    for name, mon in built.spike_monitors.items():
        n = snn.populations[name].n
        burst = snn.populations[name].graded
        # a burst population counts every spike of a burst (n_emitted), its monitor one event per burst;
        # a signed one's n_emitted is its net count
        c = built.groups[name].n_emitted_[:] if burst else mon.count[:]
        counts[name] = np.rint(np.asarray(c)).astype(np.int64).reshape(b, n)[:n_valid]
        if name in built.recorded:
            i = np.asarray(mon.i[:], dtype=np.int64)
            step = np.rint(np.asarray(mon.t_[:]) / dt).astype(np.int64)
            if burst:  # the step once per spike of the burst, as the other engines record it
                # a negative spike (n_burst = -1) is not in the trains (the other engines keep positive ones)
                reps = np.maximum(np.rint(np.asarray(mon.n_burst_[:])).astype(np.int64), 0)
                i, step = np.repeat(i, reps), np.repeat(step, reps)
            keep = i < n_valid * n
            spikes[name] = SpikeTrains(
                n_neurons=n, n_samples=n_valid, dt=dt,
                # SpikeTrains converts the indices to int32
                sample=cast("NDArray[np.int32]", i[keep] // n), neuron=cast("NDArray[np.int32]", i[keep] % n),
                step=cast("NDArray[np.int32]", step[keep]),
            )
    out = snn.output
    n_out = snn.populations[out].n if out else 0
    out_counts = np.zeros((n_valid, n_steps, n_out), dtype=np.int32)
    out_pot = np.zeros((n_valid, n_steps, n_out), dtype=np.float32)
    if built.output_counter and built.potential_monitor is not None:
        # the cumulative count after every step (recorded at the end of the step, beside v)
        c = np.asarray(built.potential_monitor.n_spikes_[:])  # (b * n_out, recorded steps)
        m = min(c.shape[1], n_steps)
        c = c.reshape(b, n_out, c.shape[1])[:n_valid, :, :m]
        out_counts[:, :m] = np.transpose(c, (0, 2, 1))
        if m < n_steps and m:
            out_counts[:, m:] = out_counts[:, m - 1 : m]
    elif built.output_spikes is not None:
        i = np.asarray(built.output_spikes.i[:], dtype=np.int64)
        step = np.rint(np.asarray(built.output_spikes.t_[:]) / dt).astype(np.int64)
        keep = (i < n_valid * n_out) & (step < n_steps)
        mult: Any = 1
        if out is not None and snn.populations[out].burst > 1:
            mult = np.rint(np.asarray(built.output_spikes.n_burst_[:])).astype(np.int64)[keep]
        np.add.at(out_counts, (i[keep] // n_out, step[keep], i[keep] % n_out), mult)
        out_counts = np.cumsum(out_counts, axis=1, dtype=np.int32)
    if built.potential_monitor is not None:
        v = np.asarray(built.potential_monitor.v_[:])  # (b * n_out, recorded steps)
        m = min(v.shape[1], n_steps)
        v = v.reshape(b, n_out, v.shape[1])[:n_valid, :, :m]
        out_pot[:, :m] = np.transpose(v, (0, 2, 1))
    for name in built.recorded - set(spikes):
        spikes[name] = SpikeTrains(
            n_neurons=snn.populations[name].n, n_samples=n_valid, dt=dt,
            sample=np.zeros(0, np.int64), neuron=np.zeros(0, np.int64), step=np.zeros(0, np.int64),
        )
    return {"counts": counts, "spikes": spikes, "output_counts_t": out_counts, "output_potential_t": out_pot}



def _collect_windows(built: BuiltNetwork, snn: SpikingNetwork, n_valid: int, n_steps: int) -> dict[str, Any]:
    """:func:`collect` for a windowed build: window ``k``'s block ``j`` is sample ``k * batch_size + j``."""
    b, k_win, T = built.batch_size, built.windows, int(n_steps)

    def per_sample(a: np.ndarray, n: int) -> np.ndarray:
        # (b * n, K * T) recorded every step -> (K * b, T, n)
        return np.asarray(a).reshape(b, n, k_win, T).transpose(2, 0, 3, 1).reshape(k_win * b, T, n)[:n_valid]

    counts: dict[str, np.ndarray] = {}
    for name in built.spike_counters:
        n = snn.populations[name].n
        starts = np.asarray(built.window_counts[name].n_spikes_[:], dtype=np.int64)  # (b * n, K)
        if starts.shape[1] != k_win:
            raise SimulationError(f"population '{name}': {starts.shape[1]} window counts recorded, expected {k_win}")
        final = np.asarray(built.groups[name].n_spikes_[:], dtype=np.int64)[:, None]
        per = np.diff(np.concatenate([starts, final], axis=1), axis=1)  # (b * n, K): each window's own
        counts[name] = per.reshape(b, n, k_win).transpose(2, 0, 1).reshape(k_win * b, n)[:n_valid]
    out = snn.output
    n_out = snn.populations[out].n if out else 0
    out_counts = np.zeros((n_valid, T, n_out), dtype=np.int32)
    out_pot = np.zeros((n_valid, T, n_out), dtype=np.float32)
    pot = built.potential_monitor
    if pot is not None:
        out_pot[:] = per_sample(pot.v_[:], n_out)
        if built.output_counter:
            c = np.asarray(pot.n_spikes_[:], dtype=np.int64).reshape(b, n_out, k_win, T)
            # counts since the window began: minus the count at the end of the window before
            before = np.concatenate([np.zeros((b, n_out, 1), np.int64), c[:, :, :-1, -1]], axis=2)
            out_counts[:] = per_sample(c - before[..., None], n_out)
    return {"counts": counts, "spikes": {}, "output_counts_t": out_counts, "output_potential_t": out_pot}


def _record(snn: SpikingNetwork, data: dict[str, Any], n_valid: int, cfg: SimulationConfig, dt: float, meta: dict[str, Any]) -> SpikeRecord:
    return SpikeRecord(
        n_samples=n_valid,
        n_steps=cfg.n_steps,
        dt=dt,
        output_counts_t=data["output_counts_t"],
        output_potential_t=data["output_potential_t"],
        counts=Counts(data["counts"]),
        spikes=data["spikes"],
        readout=dict(snn.readout),
        meta=meta,
    )



def run_batch(compiled: Plan, sub: InputPlan, cfg: SimulationConfig, target: str, seed: int) -> SpikeRecord:
    """Build, run and read one batch of ``compiled`` in Brian2's runtime mode (numpy or cython target).

    Parameters
    ----------
    compiled : Plan
        From :func:`spikebridge.engines.plan.compile` (network, ``dt`` in seconds, recorded populations).
    sub : InputPlan
        The batch's inputs, Poisson spikes already drawn.
    cfg : SimulationConfig
        ``n_steps``, ``max_memory`` (for the message when building runs out of memory).
    target : str
        Code-generation target (``resolve_target``'s result).
    seed : int
        Brian2's seed for this batch.

    Returns
    -------
    SpikeRecord
    """
    import brian2 as b2

    snn, dt = compiled.snn, compiled.dt

    t0 = time.perf_counter()
    # Network.run starts with a full gc.collect() that only serves to warn about objects left out
    # of a network (we always build an explicit Network); with torch or keras imported it scans
    # millions of objects, ~50 ms per batch. With the heap frozen first, it scans only this
    # batch's objects, and so does the collection after the batch, which frees the reference
    # cycles of its Brian2 objects at once (left to the interpreter they piled up, ~15 MB per
    # batch, until some later full collection: memory grew with the number of samples).
    gc.freeze()
    try:
        with brian2_state(target, seed) as resolved:
            try:
                # counters: spike counts kept by the resets, not by a SpikeMonitor per population
                built = build_network(compiled, sub.n_samples, raster=sub.raster, inputs=sub, counters=True)
            except MemoryError as err:
                raise BuildError(
                    f"network '{snn.name}': out of memory building a batch of {sub.n_samples} samples "
                    f"(max_memory {cfg.max_memory / 1e6:.0f} MB); lower max_memory or batch_size"
                ) from err
            built.set_inputs(snn, sub)
            t1 = time.perf_counter()
            try:
                built.network.run(cfg.n_steps * dt * b2.second, namespace={})
            except Exception as err:  # Brian2 raises many types (BrianObjectException, KeyError...)
                raise SimulationError(f"network '{snn.name}': Brian2 run failed with target {resolved!r}: {err}") from err
            t2 = time.perf_counter()
            data = collect(built, snn, sub.n_samples, cfg.n_steps, dt)
            del built
        gc.collect()
    finally:
        gc.unfreeze()
    meta = {
        "seed": seed,
        "target": resolved,
        "batch_size": sub.n_samples,
        "timings": {"build_s": t1 - t0, "run_s": t2 - t1, "collect_s": time.perf_counter() - t2},
        "config": cfg.to_dict(),
    }
    return _record(snn, data, sub.n_samples, cfg, dt, meta)



def _drop_synapse_results(device: Any, built: BuiltNetwork) -> int:
    """Have the standalone binary empty its synapse arrays before it writes its results; returns their number.

    A standalone binary writes every array to ``results/`` when it ends, the replicated synapse
    arrays included (``_synaptic_pre``/``_post``, ``w``, ``N_incoming``...: 24+ bytes per synapse
    and sample, ~0.6 GB for a LeNet batch of 82), and nothing here reads them back: only monitors
    and neuron groups are collected.  Emptied in the ``before_end`` slot, after the network ran.
    """
    from brian2.core.variables import DynamicArrayVariable

    lines = []
    for objs in built.synapses.values():
        for syn in objs:
            for var in syn.variables.values():
                if isinstance(var, DynamicArrayVariable) and var.ndim == 1 and getattr(var.owner, "name", None) == syn.name:
                    name = device.get_array_name(var, access_data=False)
                    lines.append(f"brian::{name}.clear(); brian::{name}.shrink_to_fit();")
    if lines:
        device.insert_code("before_end", "\n".join(sorted(set(lines))))
    return len(lines)


def _forget_run_args(device: Any) -> None:
    """Delete the input files one ``device.run`` wrote into the project (one per batch, never reused)."""
    static = Path(device.project_dir) / "static_arrays"
    for fname in list(getattr(device, "run_args_arrays", [])):
        for path in (static / fname, static / (fname + ".lock")):
            with contextlib.suppress(OSError):
                path.unlink()


#: bytes of synapse arrays (int32 pre and post index, float64 weight: 16 per synapse) a window's
#: samples may hold, so that they stay in the cache from one step to the next (see window_batch);
#: 0 runs every batch as one network of all its samples
WINDOW_SYNAPSE_BYTES = 32e6
#: fewest windows a batch is split into: the digits MLP's 360 samples in 2 windows gained nothing
#: (Network.run 0.095 against 0.090 s at T=128), the LeNet's 82 in 14 halved the run (results 0.2n)
MIN_WINDOWS = 4


def window_batch(compiled: Plan, plan: InputPlan, bs: int) -> int:
    """Samples per window for a ``cpp_standalone`` batch of ``bs`` samples, or 0 to run it as one batch.

    A standalone binary pays a set-up per run that grows with its batch (fresh arrays, synapses
    made from tables, queues sorted), and a step of a large batch reads more synapse data than the
    cache holds.  A windowed build (:func:`~.builder.build_network` with ``windows``) simulates
    the batch as consecutive windows of a few samples in one run.  It applies where a window can
    start as a fresh run by resetting ``v``: constant input currents or a 0/1 spike raster (Poisson
    inputs drawn beforehand, :func:`~..plan.draw_poisson`: pass the drawn plan), no recorded spike
    trains, every population plain IF without refractoriness, bursts, floors or Poisson drive, and
    every projection delivered in the step of its spike (no spike left in a queue at a window's
    end), and only for a batch of at least :data:`MIN_WINDOWS` windows.
    """
    snn = compiled.snn
    if WINDOW_SYNAPSE_BYTES <= 0:
        return 0
    if plan.kind not in ("current", "spikes") or plan.rates is not None or plan.window_steps or plan.graded:
        return 0
    if (plan.kind == "spikes") != (plan.raster is not None):
        return 0
    if compiled.record or compiled.floors or compiled.wraps:
        return 0
    for name in compiled.active:
        pop = snn.populations[name]
        if name == snn.input:
            if plan.raster is None:
                return 0  # an input population that is not a raster (regular or Brian2-drawn rates)
            continue
        if pop.model not in ("if", "integrator") or pop.refractory > 0 or pop.graded or pop.params.get("poisson_n"):
            return 0
    per_sample = 0
    for proj in snn.projections.values():
        if proj.name in compiled.folded:
            continue
        if proj.name not in compiled.same_step or np.any(snn.projection_steps(proj, compiled.dt) != 0):
            return 0
        per_sample += 16 * proj.n_synapses
    w = max(1, int(WINDOW_SYNAPSE_BYTES // max(per_sample, 1)))
    return w if -(-bs // w) >= MIN_WINDOWS else 0


def iter_standalone(
    compiled: Plan, plan: InputPlan, cfg: SimulationConfig, starts: list[int], bs: int
) -> Iterator[tuple[int, SpikeRecord]]:
    """Compile the network once for batches of ``bs`` samples, then run the binary for each batch start.

    The project lives in ``cfg.build_dir`` or in a cache folder keyed by the network's structure, so a
    second run of the same structure skips compilation.  Where :func:`window_batch` allows, the
    network holds a few samples and each run simulates the batch as consecutive windows of them
    (``meta["window_batch"]``, ``meta["windows"]``).  Yields ``(first_sample, SpikeRecord)``.
    """
    import brian2 as b2
    from brian2.devices.device import get_device

    snn, dt = compiled.snn, compiled.dt
    bs = min(bs, plan.n_samples - starts[0])
    first = draw_poisson(plan.select(starts[0], starts[0] + bs), cfg.n_steps, dt, cfg.seed, starts[0])
    # a batch of bs samples as n_win windows of per_win samples each, in one run of the binary
    per_win = window_batch(compiled, first, bs)
    n_win = -(-bs // per_win) if per_win else 0
    if cfg.build_dir is not None:
        directory = str(cfg.build_dir)
    else:
        # one project per network structure: Brian2 rewrites only changed sources and make
        # recompiles only those, so a second simulate() of the same network skips compilation
        key = structure_key(snn, per_win or bs, cfg, dt, plan.graded, windows=n_win)
        directory = str(standalone_cache_dir() / f"{snn.name}_{key}")
    if not (Path(directory) / "main").exists():
        say_once(f"standalone-{directory}",
                 f"compiling a C++ standalone project for network '{snn.name}' (expected 1-3 min on 2 cores, once: "
                 f"kept in {directory})", logging.WARNING)
    os.makedirs(directory, exist_ok=True)
    # Brian2 objects of an earlier build that are still alive would make the new code objects
    # take suffixed names, i.e. new source files and a full recompilation
    gc.collect()
    with brian2_state("cpp_standalone", cfg.seed, build_dir=directory, threads=cfg.threads):
        t0 = time.perf_counter()
        built = build_network(compiled, per_win or bs, raster=first.raster, inputs=first, windows=n_win)
        # placeholder values; every run overrides them through run_args
        built.set_inputs(snn, first)
        built.network.run(max(n_win, 1) * cfg.n_steps * dt * b2.second, namespace={})
        device = get_device()
        _drop_synapse_results(device, built)
        try:
            device.build(directory=directory, compile=True, run=False, with_output=False)
        except Exception as err:
            raise SimulationError(f"network '{snn.name}': cpp_standalone build failed in '{directory}': {err}") from err
        t_build = time.perf_counter() - t0
        for k0 in starts:
            sub = draw_poisson(plan.select(k0, k0 + bs), cfg.n_steps, dt, cfg.seed, k0)
            t1 = time.perf_counter()
            run_args = built.input_values(snn, sub)
            try:
                device.run(run_args=run_args, with_output=False)
            except Exception as err:
                raise SimulationError(f"network '{snn.name}': standalone run failed: {err}") from err
            finally:
                _forget_run_args(device)
            t2 = time.perf_counter()
            # seconds inside the binary's Network.run (its counterpart of the runtime targets' run_s)
            net_run = float(getattr(device, "_last_run_time", float("nan")))
            data = collect(built, snn, sub.n_samples, cfg.n_steps, dt)
            meta = {
                "seed": cfg.seed,
                "target": "cpp_standalone",
                "batch_size": bs,
                **({"window_batch": per_win, "windows": n_win} if n_win else {}),
                "timings": {"build_s": t_build if k0 == starts[0] else 0.0, "run_s": t2 - t1,
                            "network_run_s": net_run, "collect_s": time.perf_counter() - t2},
                "config": cfg.to_dict(),
                "build_dir": directory,
            }
            yield k0, _record(snn, data, sub.n_samples, cfg, dt, meta)


def import_brian2() -> None:
    """Import Brian2 now (it takes about a second), e.g. in a process before it forks workers.

    Brian2's import installs a SIGINT handler, which Python allows only in the main thread: a Dask
    worker imports it at start-up through this function, not in a task thread.
    """
    import brian2  # noqa: F401
