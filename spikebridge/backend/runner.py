"""Run spiking networks in Brian2: batching, devices, seeds, progress.

:func:`simulate` returns one :class:`~spikebridge.store.record.SpikeRecord`
for all samples; :func:`iter_simulate` yields one per batch (each batch is
built, run and read before the next is built, so memory stays bounded and a
long run can be resumed with ``start``).

Brian2's global state (code-generation target, device, ``defaultclock.dt``,
numpy's global random state that ``brian2.seed`` touches) is changed only
inside :func:`brian2_state` and restored when it exits.

Targets: ``"numpy"`` (no compiler; tests), ``"cython"``, ``"auto"`` (cython
where Cython and a C compiler are found, else numpy) and ``"cpp_standalone"``
(the network is compiled once for a batch size and the binary is re-run for
every batch with the batch's input values passed as ``run_args``; the last
batch is padded with zero inputs).
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
from numpy.typing import ArrayLike, NDArray

from ..config import SimulationConfig
from ..conversion.network import SpikingNetwork
from ..errors import BuildError, SimulationError, ValidationError
from ..store.record import SpikeRecord, SpikeTrains, concat_records
from .builder import BuiltNetwork, build_network, delay_buffer_bytes, estimate_memory, max_batch_size
from .plan import InputPlan, checked_plan, draw_poisson

log = logging.getLogger(__name__)

__all__ = ["simulate", "iter_simulate", "brian2_state", "resolve_target", "resolve_engine", "plan_batches", "n_workers"]


@functools.lru_cache(maxsize=1)
def _cython_works() -> bool:
    try:
        import Cython  # noqa: F401
    except ImportError:
        return False
    import sysconfig

    cc = (sysconfig.get_config_var("CC") or "cc").split()[0]
    return shutil.which(cc) is not None or shutil.which("cc") is not None


def resolve_target(target: str) -> str:
    """The code-generation target that ``target`` means on this machine.

    Examples
    --------
    >>> resolve_target("numpy")
    'numpy'
    """
    if target == "auto":
        return "cython" if _cython_works() else "numpy"
    return target


def _structure_key(snn: SpikingNetwork, batch_size: int, cfg: SimulationConfig, dt: float, graded: bool = False) -> str:
    """Hash of everything that changes the generated standalone code (not the input values)."""
    h = hashlib.sha1()
    h.update(repr((snn.name, batch_size, cfg.n_steps, dt, cfg.seed, cfg.threads, tuple(cfg.record))).encode())
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
    try:
        if resolved == "cpp_standalone":
            b2.prefs["devices.cpp_standalone.openmp_threads"] = 0 if threads <= 1 else int(threads)
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
        b2.defaultclock.dt = saved_dt * b2.second
        np.random.set_state(saved_rng)


def n_workers(config: SimulationConfig) -> int:
    """Worker processes ``config`` asks for (1 for cpp_standalone, which runs one binary)."""
    if resolve_target(config.target) == "cpp_standalone":
        return 1
    return config.workers if config.workers >= 1 else (os.cpu_count() or 1)


def _usable_budget(max_memory: float) -> float:
    """``max_memory``, lowered to the machine's physical memory (with a warning) when it asks for more."""
    try:
        physical = float(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):  # not POSIX: trust the budget
        return max_memory
    if max_memory > physical:
        import warnings

        from ..errors import SpikebridgeWarning

        warnings.warn(
            f"max_memory {max_memory / 1e9:.3g} GB is more than this machine's {physical / 1e9:.3g} GB of memory; "
            f"sizing batches for {0.8 * physical / 1e9:.3g} GB instead",
            SpikebridgeWarning,
            stacklevel=3,
        )
        return 0.8 * physical
    return max_memory


def plan_batches(snn: SpikingNetwork, n_samples: int, config: SimulationConfig) -> int:
    """Batch size to use for ``n_samples`` under ``config`` (fits ``max_memory``).

    With several workers the memory budget is shared among them, and the
    samples are spread so that every worker gets a batch.

    Raises
    ------
    BuildError
        If not even one sample fits, or an explicit ``batch_size`` does not;
        the message says what would fit.
    """
    workers = n_workers(config)
    budget = _usable_budget(config.max_memory) / workers
    dt = float(config.dt or snn.dt)
    queues = delay_buffer_bytes(snn, dt)
    if queues and max(queues.values()) > budget:
        name = max(queues, key=lambda k: queues[k])
        delay = float(np.max(np.asarray(snn.projections[name].delay)))
        raise BuildError(
            f"network '{snn.name}': projection '{name}' has a delay of {delay:g} s = {delay / dt:.3g} steps of dt {dt:g} s; "
            f"its spike queue alone needs about {queues[name] / 1e6:.0f} MB, more than max_memory {budget / 1e6:.0f} MB. "
            "Use a shorter delay or a coarser dt"
        )
    fit = max_batch_size(snn, budget, config.n_steps, config.record, dt)
    one = estimate_memory(snn, 1, config.n_steps, config.record, dt)
    mb = budget / 1e6
    if fit == 0:
        raise BuildError(
            f"network '{snn.name}': one sample needs about {one / 1e6:.1f} MB in Brian2 ({snn.n_synapses:,} explicit "
            f"synapses) but max_memory is {mb:.1f} MB; raise max_memory to at least {np.ceil(one / 1e6):.0f}MB, or "
            f"use engine='tensor' (shared kernels, about {_tensor_mb(snn, config):.0f} MB per sample)"
        )
    if config.batch_size is not None:
        need = estimate_memory(snn, config.batch_size, config.n_steps, config.record, dt)
        if need > budget:
            raise BuildError(
                f"network '{snn.name}': batch_size {config.batch_size} needs about {need / 1e6:.1f} MB, more than "
                f"max_memory {mb:.1f} MB; batch_size <= {fit} would fit (or leave batch_size unset)"
            )
        return int(config.batch_size)
    return int(max(1, min(fit, n_samples, -(-n_samples // workers))))


def _tensor_mb(snn: SpikingNetwork, config: SimulationConfig) -> float:
    from .tensor import estimate_tensor_memory

    dt = float(config.dt if config.dt is not None else snn.dt)
    return estimate_tensor_memory(snn, 1, config.n_steps, dt, config.record) / 1e6


def resolve_engine(snn: SpikingNetwork, config: SimulationConfig) -> str:
    """The engine ``config.engine`` means for ``snn``; ``"auto"`` logs its choice and reason in one line.

    ``"auto"`` picks ``"tensor"`` when a projection carries a shared kernel
    (convolution/pooling: Brian2 would replicate every synapse per sample) or
    when one sample does not fit ``max_memory`` in Brian2; else ``"brian2"``
    (the canonical simulator, extensible by users).
    """
    if config.engine != "auto":
        return config.engine
    kernels = [p.name for p in snn.projections.values() if p.operator is not None]
    one = estimate_memory(snn, 1, config.n_steps, config.record)
    if kernels:
        reason = f"{len(kernels)} shared-kernel (conv/pool) projection(s), {snn.n_synapses:,} synapses per sample in Brian2"
        engine = "tensor"
    elif one > config.max_memory / max(n_workers(config), 1):
        reason = f"one sample needs {one / 1e6:.0f} MB in Brian2, over max_memory {config.max_memory / 1e6:.0f} MB"
        engine = "tensor"
    else:
        reason = f"dense/sparse synapses only, {one / 1e6:.0f} MB per sample in Brian2 fits max_memory"
        engine = "brian2"
    log.info("engine auto -> %s for network '%s': %s", engine, snn.name, reason)
    return engine


def _collect(built: BuiltNetwork, snn: SpikingNetwork, n_valid: int, n_steps: int, dt: float) -> dict[str, Any]:
    """Read monitors into numpy arrays for the first ``n_valid`` samples."""
    b = built.batch_size
    counts: dict[str, np.ndarray] = {}
    spikes: dict[str, SpikeTrains] = {}
    for name, mon in built.spike_monitors.items():
        n = snn.populations[name].n
        counts[name] = np.asarray(mon.count[:], dtype=np.int64).reshape(b, n)[:n_valid]
        if name in built.recorded:
            i = np.asarray(mon.i[:], dtype=np.int64)
            step = np.rint(np.asarray(mon.t_[:]) / dt).astype(np.int64)
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
    if built.output_spikes is not None:
        i = np.asarray(built.output_spikes.i[:], dtype=np.int64)
        step = np.rint(np.asarray(built.output_spikes.t_[:]) / dt).astype(np.int64)
        keep = (i < n_valid * n_out) & (step < n_steps)
        np.add.at(out_counts, (i[keep] // n_out, step[keep], i[keep] % n_out), 1)
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


def iter_simulate(
    snn: SpikingNetwork, inputs: ArrayLike | None, config: SimulationConfig | None = None, *, start: int = 0
) -> Iterator[tuple[int, SpikeRecord]]:
    """Simulate batch by batch.

    Parameters
    ----------
    snn : SpikingNetwork
    inputs : array_like, shape (n_samples, *input_shape), or None
        ANN-unit inputs; None for networks without an input population
        (one sample).
    config : SimulationConfig, optional
    start : int
        Skip samples before this index (to resume an interrupted run).

    Yields
    ------
    first_sample : int
        Index of the batch's first sample.
    record : SpikeRecord
        The batch's results (sample indices local to the batch).

    Raises
    ------
    ValidationError
        Bad inputs or ``start``.
    BuildError
        The batch does not fit ``config.max_memory`` (message says what fits).
    SimulationError
        Brian2 failed while running.
    """
    cfg = config if config is not None else SimulationConfig()
    if not isinstance(cfg, SimulationConfig):
        raise ValidationError(f"simulate: config must be a SimulationConfig, got {type(cfg).__name__}", attr="config")
    dt = float(cfg.dt if cfg.dt is not None else snn.dt)
    plan = checked_plan(snn, inputs, tuple(cfg.record), start, dt)
    if plan is None:
        return
    engine = resolve_engine(snn, cfg)
    if engine == "tensor" and cfg.scheduler is None:
        from .tensor.engine import iter_plan_tensor

        yield from iter_plan_tensor(snn, plan, cfg, start, dt)
        return
    n = plan.n_samples
    target = resolve_target(cfg.target)
    if cfg.scheduler is not None:
        from .distributed import iter_dask  # Dask plans its own batches for the cluster's size, for either engine

        yield from iter_dask(snn, plan, cfg, start, dt, target, engine)
        return
    bs = plan_batches(snn, n - start, cfg)
    starts = list(range(start, n, bs))
    progress = progress_bar(cfg, n - start, snn.name)
    try:
        if target == "cpp_standalone":
            yield from _iter_standalone(snn, plan, cfg, starts, bs, dt, progress)
        elif n_workers(cfg) > 1 and len(starts) > 1:
            for k0, rec in _iter_parallel(snn, plan, cfg, starts, bs, dt, target):
                if progress is not None:
                    progress.update(rec.n_samples)
                yield k0, rec
        else:
            for k0 in starts:
                sub = draw_poisson(plan.select(k0, k0 + bs), cfg.n_steps, dt, cfg.seed, k0)
                rec = _run_runtime_batch(snn, sub, cfg, dt, target, seed=cfg.seed + k0)
                if progress is not None:
                    progress.update(sub.n_samples)
                yield k0, rec
    finally:
        if progress is not None:
            progress.close()


def progress_bar(cfg: SimulationConfig, total: int, name: str) -> Any:
    """A tqdm bar over ``total`` samples when ``cfg.progress`` (None otherwise)."""
    if not cfg.progress:
        return None
    from .._optional import import_optional

    return import_optional("tqdm", "a progress bar").tqdm(total=total, unit="sample", desc=f"simulate {name}")


def _record(snn: SpikingNetwork, data: dict[str, Any], n_valid: int, cfg: SimulationConfig, dt: float, meta: dict[str, Any]) -> SpikeRecord:
    return SpikeRecord(
        n_samples=n_valid,
        n_steps=cfg.n_steps,
        dt=dt,
        output_counts_t=data["output_counts_t"],
        output_potential_t=data["output_potential_t"],
        counts=data["counts"],
        spikes=data["spikes"],
        readout=dict(snn.readout),
        meta=meta,
    )


def _batch_job(
    snn: SpikingNetwork, sub: InputPlan, cfg: SimulationConfig, dt: float, target: str, k0: int
) -> SpikeRecord:
    """One batch in a worker process (module-level so the process pool can call it)."""
    sub = draw_poisson(sub, cfg.n_steps, dt, cfg.seed, k0)
    return _run_runtime_batch(snn, sub, cfg, dt, target, seed=cfg.seed + k0)


def _worker_init(parent: int) -> None:
    """Tie a worker process to its parent: it dies with it and leaves Ctrl-C to it.

    On Linux the kernel sends SIGKILL to the worker when the parent dies
    (``PR_SET_PDEATHSIG``), so killing a run (SIGKILL, SIGTERM) leaves no
    orphans behind.  A worker ignores SIGINT: Ctrl-C reaches the whole
    process group, and the parent alone reports it and stops the workers.
    """
    import signal

    from .._process import die_with_parent

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # blocked as well: Brian2 installs its own SIGINT handler during a run
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    die_with_parent(parent)


def _iter_parallel(
    snn: SpikingNetwork, plan: InputPlan, cfg: SimulationConfig, starts: list[int], bs: int, dt: float, target: str
) -> Iterator[tuple[int, SpikeRecord]]:
    """Run batches in worker processes, at most one per worker in flight, yielded in order.

    Yielding strictly in sample order keeps the streaming store's guarantee: a
    batch is handed on only when it and every batch before it are finished.
    """
    import multiprocessing
    from concurrent.futures import Future, ProcessPoolExecutor

    workers = min(n_workers(cfg), len(starts))
    import brian2  # noqa: F401  # imported once here: the forked workers inherit it instead of each importing it
    # fork: the workers inherit the imported modules and Brian2's compiled-code cache state,
    # so a batch starts in milliseconds; each worker sets and restores Brian2 state itself
    ctx = multiprocessing.get_context("fork")
    with ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_worker_init, initargs=(os.getpid(),)) as pool:
        pending: list[tuple[int, Future[SpikeRecord]]] = []
        queue = list(starts)
        finished = False
        try:
            while queue and len(pending) < workers:
                k0 = queue.pop(0)
                pending.append((k0, pool.submit(_batch_job, snn, plan.select(k0, k0 + bs), cfg, dt, target, k0)))
            while pending:
                k0, fut = pending.pop(0)
                rec = fut.result()
                if queue:
                    k1 = queue.pop(0)
                    pending.append((k1, pool.submit(_batch_job, snn, plan.select(k1, k1 + bs), cfg, dt, target, k1)))
                yield k0, rec
            finished = True
        finally:
            for _, fut in pending:
                fut.cancel()
            if not finished:
                # interrupted (Ctrl-C, an error, the consumer stopped): do not wait for running batches
                for proc in list((getattr(pool, "_processes", None) or {}).values()):
                    proc.kill()


def _run_runtime_batch(snn: SpikingNetwork, sub: InputPlan, cfg: SimulationConfig, dt: float, target: str, seed: int) -> SpikeRecord:
    import brian2 as b2

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
                built = build_network(snn, sub.n_samples, dt=dt, record=cfg.record, n_steps=cfg.n_steps, raster=sub.raster,
                                      plan=sub)
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
            data = _collect(built, snn, sub.n_samples, cfg.n_steps, dt)
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


def _iter_standalone(
    snn: SpikingNetwork, plan: InputPlan, cfg: SimulationConfig, starts: list[int], bs: int, dt: float, progress: Any
) -> Iterator[tuple[int, SpikeRecord]]:
    import brian2 as b2
    from brian2.devices.device import get_device

    bs = min(bs, plan.n_samples - starts[0])
    if cfg.build_dir is not None:
        directory = str(cfg.build_dir)
    else:
        # one project per network structure: Brian2 rewrites only changed sources and make
        # recompiles only those, so a second simulate() of the same network skips compilation
        directory = str(standalone_cache_dir() / f"{snn.name}_{_structure_key(snn, bs, cfg, dt, plan.graded)}")
    os.makedirs(directory, exist_ok=True)
    # Brian2 objects of an earlier build that are still alive would make the new code objects
    # take suffixed names, i.e. new source files and a full recompilation
    gc.collect()
    with brian2_state("cpp_standalone", cfg.seed, build_dir=directory, threads=cfg.threads):
        t0 = time.perf_counter()
        first = draw_poisson(plan.select(starts[0], starts[0] + bs), cfg.n_steps, dt, cfg.seed, starts[0])
        built = build_network(snn, bs, dt=dt, record=cfg.record, n_steps=cfg.n_steps, raster=first.raster, plan=first)
        # placeholder values; every run overrides them through run_args
        built.set_inputs(snn, first)
        built.network.run(cfg.n_steps * dt * b2.second, namespace={})
        device = get_device()
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
            t2 = time.perf_counter()
            data = _collect(built, snn, sub.n_samples, cfg.n_steps, dt)
            meta = {
                "seed": cfg.seed,
                "target": "cpp_standalone",
                "batch_size": bs,
                "timings": {"build_s": t_build if k0 == starts[0] else 0.0, "run_s": t2 - t1,
                            "collect_s": time.perf_counter() - t2},
                "config": cfg.to_dict(),
                "build_dir": directory,
            }
            if progress is not None:
                progress.update(sub.n_samples)
            yield k0, _record(snn, data, sub.n_samples, cfg, dt, meta)


def simulate(
    snn: SpikingNetwork,
    inputs: ArrayLike | None,
    config: SimulationConfig | None = None,
    *,
    labels: ArrayLike | None = None,
) -> SpikeRecord:
    """Simulate a spiking network on many samples in batched Brian2 runs.

    Parameters
    ----------
    snn : SpikingNetwork
        A converted (or hand-built) network.
    inputs : array_like, shape (n_samples, *input_shape), or None
        Inputs in ANN units (encoded as ``snn.encoding`` says); None for
        networks without an input population (one sample).
    config : SimulationConfig, optional
        Steps, dt, batch size, target, seed, memory budget, recorded populations.
    labels : array_like, shape (n_samples,), optional
        Stored in the record (``record.accuracy_over_time()`` then needs no argument).

    Returns
    -------
    SpikeRecord
        ``output_counts_t``, ``output_potential_t``, ``counts`` of every
        spiking population (a current-encoded input has no neurons and no
        entry), ``spikes`` of the recorded ones, ``readout`` and ``meta``
        (seed, target, timings, batch size).  Synaptic input to ``v`` that
        arrives during a refractory period is dropped (Brian2's
        ``unless refractory``), in the reference simulator as well.

    Examples
    --------
    >>> from spikebridge.config import SimulationConfig
    >>> from spikebridge.conversion.network import Population, SpikingNetwork
    >>> net = SpikingNetwork([Population(name="a", n=1, model="if", bias=370.0, role="output")], output="a")
    >>> rec = simulate(net, None, SimulationConfig(n_steps=64, target="numpy"))
    >>> int(rec.output_counts[0, 0])
    23
    """
    cfg = config if config is not None else SimulationConfig()
    t0 = time.perf_counter()
    parts = [rec for _, rec in iter_simulate(snn, inputs, cfg)]
    if not parts:
        raise ValidationError("simulate: no samples to simulate", attr="inputs")
    out = concat_records(parts)
    if labels is not None:
        y = np.asarray(labels)
        if y.shape[0] != out.n_samples:
            raise ValidationError(f"simulate: {y.shape[0]} labels for {out.n_samples} samples", attr="labels")
        out.labels = y
    timings = [r.meta.get("timings", {}) for r in parts]
    out.meta = {
        "seed": cfg.seed,
        "target": parts[0].meta.get("target"),
        "engine": parts[0].meta.get("engine", "brian2"),
        "batch_size": parts[0].meta.get("batch_size"),
        "n_batches": len(parts),
        "timings": {
            "build_s": float(sum(t.get("build_s", 0.0) for t in timings)),
            "run_s": float(sum(t.get("run_s", 0.0) for t in timings)),
            "collect_s": float(sum(t.get("collect_s", 0.0) for t in timings)),
            "total_s": time.perf_counter() - t0,
        },
        "config": cfg.to_dict(),
    }
    return out
