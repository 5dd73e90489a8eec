"""Simulate spiking networks: the ``simulate`` entry point, engine choice, batch iteration.

:func:`simulate` returns one :class:`~spikebridge.store.record.SpikeRecord` for all samples;
:func:`iter_simulate` yields one per batch (each batch is built, run and read before the next is
built, so memory stays bounded and a long run can be resumed with ``start``).
"""

from __future__ import annotations

import logging
import os
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from numpy.typing import ArrayLike

from ..config import SimulationConfig
from ..errors import SpikebridgeWarning, ValidationError
from ..snn.network import SpikingNetwork
from ..store.record import SpikeRecord, concat_records
from ..engines.brian2.builder import estimate_memory
from ..engines.brian2.run import explain_target, iter_standalone, notice, run_batch
from ..engines.plan import Plan, checked_plan, compile, draw_poisson
from .batches import iter_parallel, iter_plan_tensor, n_workers, plan_batches, progress_bar

log = logging.getLogger(__name__)

__all__ = ["simulate", "iter_simulate", "resolve_engine", "simulate_tensor", "iter_simulate_tensor"]



def resolve_engine(snn: SpikingNetwork, config: SimulationConfig, compiled: Plan | None = None) -> str:
    """The engine ``config.engine`` means for ``snn``; ``"auto"`` logs its choice and reason in one line.

    ``"auto"`` (the default) picks ``"brian2"`` when a Brian2 ``target`` other
    than ``"auto"`` was asked for and ``"tensor"`` for a ``device`` other than
    ``"cpu"``; else ``"tensor"`` when a projection carries a shared kernel
    (convolution/pooling: Brian2 would replicate every synapse per sample) or
    when one sample does not fit ``max_memory`` in Brian2; else ``"brian2"``
    (the canonical simulator, extensible by users).  ``compiled`` is the run's plan
    (:func:`spikebridge.engines.plan.compile`; compiled here when not given).
    """
    if config.engine != "auto":
        return config.engine
    kernels = [p.name for p in snn.projections.values() if p.operator is not None]
    one = estimate_memory(compiled if compiled is not None else compile(snn, config), 1)
    if config.target != "auto":
        reason = f"target {config.target!r} was asked for, a Brian2 target"
        engine = "brian2"
    elif config.device != "cpu":
        reason = f"device {config.device!r} was asked for, a tensor-engine device"
        engine = "tensor"
    elif kernels:
        reason = f"{len(kernels)} shared-kernel (conv/pool) projection(s), {snn.n_synapses:,} synapses per sample in Brian2"
        engine = "tensor"
    elif one > config.max_memory / max(n_workers(config), 1):
        reason = f"one sample needs {one / 1e6:.0f} MB in Brian2, over max_memory {config.max_memory / 1e6:.0f} MB"
        engine = "tensor"
    else:
        reason = f"dense/sparse synapses only, {one / 1e6:.0f} MB per sample in Brian2 fits max_memory"
        engine = "brian2"
    notice.info("engine auto -> %s for network '%s': %s (same spikes either way)", engine, snn.name, reason)
    return engine



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
    # decided once for the whole run: every batch, engine and estimate reads this plan
    compiled = compile(snn, cfg)
    dt = compiled.dt
    plan = checked_plan(snn, inputs, tuple(cfg.record), start, dt)
    if plan is None:
        return
    warn_unusual_settings(compiled, cfg)
    engine = resolve_engine(snn, cfg, compiled)
    if engine == "tensor" and cfg.scheduler is None:
        yield from iter_plan_tensor(compiled, plan, cfg, start)
        return
    n = plan.n_samples
    target = explain_target(cfg.target, snn)
    if cfg.scheduler is not None:
        from .distributed import iter_dask  # Dask plans its own batches for the cluster's size, for either engine

        yield from iter_dask(compiled, plan, cfg, start, target, engine)
        return
    cores = os.cpu_count() or 1
    if cfg.workers > cores and target != "cpp_standalone":
        warnings.warn(
            f"SimulationConfig.workers={cfg.workers} is more than this machine's {cores} cores: the extra worker "
            "processes only share the cores and each holds its own copy of the network; workers=0 runs one per core",
            SpikebridgeWarning, stacklevel=2,
        )
    bs = plan_batches(compiled, n - start, cfg)
    starts = list(range(start, n, bs))
    progress = progress_bar(cfg, n - start, snn.name)
    try:
        if target == "cpp_standalone":
            for k0, rec in iter_standalone(compiled, plan, cfg, starts, bs):
                if progress is not None:
                    progress.update(rec.n_samples)
                yield k0, rec
        elif n_workers(cfg) > 1 and len(starts) > 1:
            for k0, rec in iter_parallel(compiled, plan, cfg, starts, bs, target):
                if progress is not None:
                    progress.update(rec.n_samples)
                yield k0, rec
        else:
            for k0 in starts:
                sub = draw_poisson(plan.select(k0, k0 + bs), cfg.n_steps, dt, cfg.seed, k0)
                rec = run_batch(compiled, sub, cfg, target, seed=cfg.seed + k0)
                if progress is not None:
                    progress.update(sub.n_samples)
                yield k0, rec
    finally:
        if progress is not None:
            progress.close()



def warn_unusual_settings(compiled: Plan, cfg: SimulationConfig) -> None:
    """One warning line each, before a run, for settings that run but cannot mean what was meant.

    - a synaptic delay at least as long as the run (``n_steps * dt``): no spike across it arrives;
    - a refractory period at least as long as the run: each neuron spikes at most once;
    - a ``build_dir`` outside the working directory: Brian2 writes (and on a rebuild rewrites) a
      C++ project there, a place the user may not have meant to hand over.
    """
    snn, run = compiled.snn, compiled.n_steps * compiled.dt
    delays = [(float(np.max(p.delay)), p.name) for p in snn.projections.values() if np.size(p.delay)]
    if delays:
        delay, name = max(delays)
        if delay >= run:
            warnings.warn(
                f"projection '{name}' has a delay of {delay:.3g} s, at least the whole run ({compiled.n_steps} steps "
                f"of {compiled.dt:.3g} s = {run:.3g} s): no spike across it arrives; check the delay's unit (seconds)",
                SpikebridgeWarning, stacklevel=3,
            )
    refractory = [(float(np.max(p.refractory)), p.name) for p in snn.populations.values() if p.is_spiking]
    if refractory:
        period, name = max(refractory)
        if period >= run:
            warnings.warn(
                f"population '{name}' has a refractory period of {period:.3g} s, at least the whole run ({run:.3g} s): "
                "each of its neurons spikes at most once; check the period's unit (seconds)",
                SpikebridgeWarning, stacklevel=3,
            )
    if cfg.build_dir is not None and cfg.target == "cpp_standalone":
        where = Path(cfg.build_dir).expanduser().resolve()
        here = Path.cwd().resolve()
        if where != here and here not in where.parents:
            warnings.warn(
                f"build_dir '{cfg.build_dir}' is outside the working directory '{here}': a cpp_standalone run writes "
                "(and on a rebuild rewrites) its C++ project there",
                SpikebridgeWarning, stacklevel=3,
            )


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
    >>> from spikebridge.snn.network import Population, SpikingNetwork
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
        # cpp_standalone windows (engines.brian2.run.window_batch): samples per window, windows per batch
        **{k: parts[0].meta[k] for k in ("window_batch", "windows") if k in parts[0].meta},
        "timings": {
            "build_s": float(sum(t.get("build_s", 0.0) for t in timings)),
            "run_s": float(sum(t.get("run_s", 0.0) for t in timings)),
            "collect_s": float(sum(t.get("collect_s", 0.0) for t in timings)),
            "total_s": time.perf_counter() - t0,
        },
        "config": cfg.to_dict(),
    }
    if all("network_run_s" in t for t in timings):  # cpp_standalone: time inside the binary's Network.run
        out.meta["timings"]["network_run_s"] = float(sum(t["network_run_s"] for t in timings))
    return out



def iter_simulate_tensor(
    snn: SpikingNetwork, inputs: ArrayLike | None, config: SimulationConfig, *, start: int = 0
) -> Iterator[tuple[int, SpikeRecord]]:
    """Batch-by-batch simulation with the tensor engine (same contract as :func:`iter_simulate`).

    Batches are sized to ``config.max_memory`` (or ``config.batch_size``);
    Poisson inputs are drawn per sample with ``(seed, sample index)`` and the
    Poisson drive of a batch starting at sample ``k0`` uses ``seed + k0``, as
    in the Brian2 engine.  On CPU, ``config.threads > 1`` splits each batch
    into that many parts simulated by concurrent threads (numpy, scipy and
    torch release the GIL in their kernels; each part is a batch of its own,
    so results equal a run with that batch size); torch then runs one intra-op
    thread per part.  On CUDA, ``threads`` sets torch's CPU threads.  torch's
    thread count is restored afterwards.

    Yields
    ------
    (first_sample, SpikeRecord)
    """
    cfg = config
    compiled = compile(snn, cfg)
    plan = checked_plan(snn, inputs, tuple(cfg.record), start, compiled.dt)
    if plan is not None:
        yield from iter_plan_tensor(compiled, plan, cfg, start)



def simulate_tensor(snn: SpikingNetwork, inputs: ArrayLike | None, config: SimulationConfig | None = None) -> SpikeRecord:
    """All samples with the tensor engine in one record (:func:`simulate` with ``engine="tensor"``)."""
    from ...store.record import concat_records

    cfg = config if config is not None else SimulationConfig()
    parts = [r for _, r in iter_simulate_tensor(snn, inputs, cfg)]
    return concat_records(parts)

