"""Batching for every engine: batch sizes from the memory budget, worker processes, progress.

:func:`plan_batches` sizes Brian2 batches to ``max_memory``; :func:`iter_parallel` runs them in
forked worker processes that die with their parent; :func:`iter_plan_tensor` sizes and runs the
tensor engine's batches (optionally split across threads); :func:`progress_bar` is the one tqdm bar.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
import time
from collections.abc import Iterator
from typing import Any

import numpy as np

from ..config import SimulationConfig
from ..errors import BuildError, SimulationError
from ..store.record import SpikeRecord
from ..engines.brian2.builder import delay_buffer_bytes, estimate_memory, max_batch_size
from ..engines.brian2.run import import_brian2, resolve_target, run_batch
from ..engines.plan import InputPlan, Plan, draw_poisson
from ..engines.tensor.arrays import arrays_for
from ..engines.tensor.engine import TensorProgram, estimate_tensor_memory

log = logging.getLogger(__name__)

__all__ = ["plan_batches", "n_workers", "progress_bar", "iter_parallel", "iter_plan_tensor", "tensor_batch_size", "batch_job",
           "tune_malloc"]


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


def plan_batches(compiled: Plan, n_samples: int, config: SimulationConfig) -> int:
    """Brian2 batch size to use for ``n_samples`` of ``compiled`` under ``config`` (fits ``max_memory``).

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
    snn, dt = compiled.snn, compiled.dt
    queues = delay_buffer_bytes(compiled)
    if queues and max(queues.values()) > budget:
        name = max(queues, key=lambda k: queues[k])
        delay = float(np.max(np.asarray(snn.projections[name].delay)))
        raise BuildError(
            f"network '{snn.name}': projection '{name}' has a delay of {delay:g} s = {delay / dt:.3g} steps of dt {dt:g} s; "
            f"its spike queue alone needs about {queues[name] / 1e6:.0f} MB, more than max_memory {budget / 1e6:.0f} MB. "
            "Use a shorter delay or a coarser dt"
        )
    fit = max_batch_size(compiled, budget)
    one = estimate_memory(compiled, 1)
    mb = budget / 1e6
    if fit == 0:
        raise BuildError(
            f"network '{snn.name}': one sample needs about {one / 1e6:.1f} MB in Brian2 ({snn.n_synapses:,} explicit "
            f"synapses) but max_memory is {mb:.1f} MB; raise max_memory to at least {np.ceil(one / 1e6):.0f}MB, or "
            f"use engine='tensor' (shared kernels, about {_tensor_mb(compiled):.0f} MB per sample)"
        )
    if config.batch_size is not None:
        need = estimate_memory(compiled, config.batch_size)
        if need > budget:
            raise BuildError(
                f"network '{snn.name}': batch_size {config.batch_size} needs about {need / 1e6:.1f} MB, more than "
                f"max_memory {mb:.1f} MB; batch_size <= {fit} would fit (or leave batch_size unset)"
            )
        return int(config.batch_size)
    return int(max(1, min(fit, n_samples, -(-n_samples // workers))))


def progress_bar(cfg: SimulationConfig, total: int, name: str) -> Any:
    """A tqdm bar over ``total`` samples when ``cfg.progress`` (None otherwise)."""
    if not cfg.progress:
        return None
    from .._optional import import_optional

    return import_optional("tqdm", "a progress bar").tqdm(total=total, unit="sample", desc=f"simulate {name}")


def batch_job(compiled: Plan, sub: InputPlan, cfg: SimulationConfig, target: str, k0: int) -> SpikeRecord:
    """One Brian2 batch starting at sample ``k0``, in a worker process (module-level so a process pool can call it)."""
    sub = draw_poisson(sub, cfg.n_steps, compiled.dt, cfg.seed, k0)
    return run_batch(compiled, sub, cfg, target, seed=cfg.seed + k0)


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


def iter_parallel(
    compiled: Plan, plan: InputPlan, cfg: SimulationConfig, starts: list[int], bs: int, target: str
) -> Iterator[tuple[int, SpikeRecord]]:
    """Run batches in worker processes, at most one per worker in flight, yielded in order.

    Yielding strictly in sample order keeps the streaming store's guarantee: a
    batch is handed on only when it and every batch before it are finished.
    """
    import multiprocessing
    from concurrent.futures import Future, ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    workers = min(n_workers(cfg), len(starts))
    import_brian2()  # once here: the forked workers inherit it instead of each importing it
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
                pending.append((k0, pool.submit(batch_job, compiled, plan.select(k0, k0 + bs), cfg, target, k0)))
            # the worker processes (started by the submits): their exit codes say how one died
            procs = list((getattr(pool, "_processes", None) or {}).values())
            while pending:
                k0, fut = pending.pop(0)
                try:
                    rec = fut.result()
                except BrokenProcessPool as err:
                    raise SimulationError(
                        f"a worker process died{_death_cause(procs)} while simulating samples {k0}..{k0 + bs - 1} "
                        "(out of memory, or killed); batches finished before it are kept in an -o store, "
                        "continue it with --resume"
                    ) from err
                if queue:
                    k1 = queue.pop(0)
                    pending.append((k1, pool.submit(batch_job, compiled, plan.select(k1, k1 + bs), cfg, target, k1)))
                yield k0, rec
            finished = True
        finally:
            for _, fut in pending:
                fut.cancel()
            if not finished:
                # interrupted (Ctrl-C, an error, the consumer stopped): do not wait for running batches
                for proc in list((getattr(pool, "_processes", None) or {}).values()):
                    proc.kill()




def _death_cause(procs: list[Any]) -> str:
    """`` (killed by signal SIGKILL)`` / `` (exit status 1)`` for the dead worker of ``procs``, or ''.

    A broken pool terminates its other workers with SIGTERM, so a SIGTERM says nothing of the cause:
    only another signal or exit status is named, else nothing (the killed worker may already have
    been reaped and replaced in the pool's table, leaving only the terminated ones).
    """
    import signal

    codes: list[int] = []
    for proc in procs:
        code = getattr(proc, "exitcode", None)
        if code is None:
            try:
                proc.join(0.5)  # the pool noticed the death first: give the process table a moment
            except Exception:  # noqa: BLE001 - a process object of another kind: no cause to tell
                continue
            code = getattr(proc, "exitcode", None)
        if code:
            codes.append(int(code))
    code = next((c for c in codes if c != -signal.SIGTERM), 0)
    if not code:
        return ""
    if code < 0:
        try:
            return f" (killed by signal {signal.Signals(-code).name})"
        except ValueError:
            return f" (killed by signal {-code})"
    return f" (exit status {code})"


def tensor_batch_size(compiled: Plan, n_samples: int, cfg: SimulationConfig) -> int:
    """Tensor-engine batch size for ``n_samples`` under ``cfg.max_memory`` (or ``cfg.batch_size``)."""
    snn = compiled.snn
    one = estimate_tensor_memory(compiled, 1)
    per = max(estimate_tensor_memory(compiled, 2) - one, 1)
    if one > cfg.max_memory:
        raise BuildError(
            f"network '{snn.name}': one sample needs about {one / 1e6:.1f} MB in the tensor engine but max_memory is "
            f"{cfg.max_memory / 1e6:.1f} MB; raise max_memory to at least {np.ceil(one / 1e6):.0f}MB"
        )
    fit = int(1 + (cfg.max_memory - one) // per)
    if cfg.batch_size is not None:
        return int(cfg.batch_size)
    return max(1, min(fit, n_samples))



#: numpy's madvise(MADV_HUGEPAGE) of large arrays during tensor runs: False turns it off for the run
#: (restored after), None leaves numpy's setting.  With the kernel's default THP defrag ("madvise")
#: each fault of such an array may compact memory first; on the 2-core VM of the issue-21
#: benchmarks, 1,000 images, 2 threads, alternating runs in one process, off against on: MNIST
#: LeNet T=128 2.72-2.83 against 3.34-3.49 s (system time 0.28-0.30 against 0.89-1.02 s),
#: F-MNIST VGG T=32 (fixed-point) 2.61-2.66 against 2.98-3.27 s, ResNet-8 2.22-2.28 against
#: 2.26-2.35 s (results.md §0.2o)
NUMPY_HUGEPAGES: bool | None = False


def _numpy_hugepages(enable: bool) -> bool | None:
    """Set numpy's hugepage advice for large arrays; the previous setting (None: this numpy has no switch)."""
    for module in ("numpy._core.multiarray", "numpy.core.multiarray"):
        try:
            switch = getattr(importlib.import_module(module), "_set_madvise_hugepage")
        except (ImportError, AttributeError):
            continue
        return bool(switch(enable))
    return None


def _blas_threads(n: int) -> Any:
    """Context limiting BLAS to ``n`` threads: one while batch parts run in threads of their own.

    Two parts each calling a 2-thread OpenBLAS ran the MNIST LeNet 3.5x slower than with one
    BLAS thread per part (issue 21; 100 samples, T=64, load ~4).  Uses threadpoolctl where
    installed; without it, set ``OPENBLAS_NUM_THREADS`` yourself.
    """
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - optional
        import contextlib

        return contextlib.nullcontext()
    return threadpool_limits(limits=max(1, n), user_api="blas")


#: mallopt parameters of glibc (malloc.h)
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD, _M_ARENA_MAX = -1, -3, -8
_MALLOC_ENV = ("MALLOC_ARENA_MAX", "MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_")


def tune_malloc() -> bool:
    """Have glibc keep and reuse freed memory in this process, for tensor runs with batch parts in threads.

    glibc gives each thread an arena of its own, and unmaps a thread arena's heaps as soon as
    they empty; the batch parts' large temporaries (torch's int8 convolutions return a new
    19 MB tensor per call on the F-MNIST VGG) were then mapped fresh on every call: 50-664 k page
    faults and 0.2-1.6 s of system time per 1,000 images on a 2-core VM (results.md §0.2u). This
    puts every thread on the main arena, serves blocks up to 32 MiB from it and never trims it
    (``mallopt``: ``M_ARENA_MAX`` 1, ``M_MMAP_THRESHOLD`` 32 MiB, ``M_TRIM_THRESHOLD`` 2 GiB):
    0 faults there. Freed memory then stays with the process until it exits, so only a process's
    owner should call this: the ``spikebridge`` command does, at its start; a script may, first
    thing. Returns True when applied; False without glibc, or when the environment already sets
    ``MALLOC_ARENA_MAX``, ``MALLOC_TRIM_THRESHOLD_`` or ``MALLOC_MMAP_THRESHOLD_`` (the user's choice stands).
    """
    if not sys.platform.startswith("linux") or any(v in os.environ for v in _MALLOC_ENV):
        return False
    import ctypes

    try:
        libc = ctypes.CDLL(None)
        libc.gnu_get_libc_version  # noqa: B018 - glibc only (musl has no such symbol)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return all([mallopt(_M_ARENA_MAX, 1), mallopt(_M_MMAP_THRESHOLD, 32 << 20), mallopt(_M_TRIM_THRESHOLD, 2**31 - 1)])


def _one_torch_thread(fn: Any, *args: Any, **kwargs: Any) -> Any:
    """``fn(*args, **kwargs)`` with torch (where imported) on one intra-op thread in this thread.

    OpenMP keeps its thread count per thread, and a new thread starts with one per core: a batch
    part's thread would run oneDNN's convolutions on every core although the caller set one
    thread (``torch.get_num_threads()`` still says 1), so two parts ran four threads on two cores
    (MNIST LeNet, fixed point, 600 images, T=128, 2 parts: 3.0 CPU s against 2.7 on one thread).
    """
    torch_mod = sys.modules.get("torch")
    if torch_mod is not None:
        torch_mod.set_num_threads(1)
    return fn(*args, **kwargs)


def _run_parts(program: TensorProgram, plan: InputPlan, k0: int, parts: int, cfg: SimulationConfig, rec: set[str]) -> SpikeRecord:
    """One batch, split into ``parts`` sub-batches run by concurrent threads."""
    n = plan.n_samples
    parts = max(1, min(parts, n))
    if parts == 1:
        # BLAS (fixed-point or float32 GEMMs, ordered products) on the threads the run was given
        with _blas_threads(int(cfg.threads)):
            return program.run(plan, cfg.n_steps, seed=cfg.seed + k0, record=rec)
    from concurrent.futures import ThreadPoolExecutor

    from ..store.record import SpikeTrains, concat_records

    bounds = np.linspace(0, n, parts + 1).astype(int)
    # the parts pack their recorded spikes into slices of one raster per population (layer-major
    # schedule), so joining them copies nothing: 0.5 GB per 1,000 LeNet images at T=128
    bits = {name: np.empty((n, cfg.n_steps, (program.snn.populations[name].n + 7) // 8), dtype=np.uint8)
            for name in rec if name in program.snn.populations}
    t0 = time.perf_counter()
    with _blas_threads(1), ThreadPoolExecutor(max_workers=parts) as pool:
        futures = [
            pool.submit(_one_torch_thread, program.run, plan.select(a, b), cfg.n_steps, seed=cfg.seed + k0 + int(a), record=rec,
                        bits_out={name: arr[a:b] for name, arr in bits.items()})
            for a, b in zip(bounds[:-1], bounds[1:])
        ]
        records = [f.result() for f in futures]
    joined = {}
    for name, arr in bits.items():
        if all(getattr(r.spikes[name].packed, "base", None) is arr for r in records):
            joined[name] = records[0].spikes[name]
            for r in records:  # already joined in ``arr``: concat_records leaves them out
                del r.spikes[name]
    out = concat_records(records)
    if joined:
        for name, st in joined.items():
            out.spikes[name] = SpikeTrains.from_packed(bits[name], st.n_neurons, st.dt)
        out.spikes = dict(sorted(out.spikes.items()))  # the order each part's record has
    out.meta["batch_size"] = n
    out.meta["threads"] = parts
    out.meta["timings"] = {"build_s": 0.0, "run_s": time.perf_counter() - t0, "collect_s": 0.0}
    return out



def iter_plan_tensor(compiled: Plan, plan: InputPlan, cfg: SimulationConfig, start: int) -> Iterator[tuple[int, SpikeRecord]]:
    """Tensor-engine batches of a checked input plan (from :func:`~spikebridge.engines.plan.checked_plan`).

    Batches are sized to ``cfg.max_memory`` (or ``cfg.batch_size``); Poisson inputs are drawn per
    sample with ``(seed, sample index)`` and the Poisson drive of a batch starting at sample ``k0``
    uses ``seed + k0``, as in the Brian2 engine.  On CPU, ``cfg.threads > 1`` splits each batch into
    that many parts simulated by concurrent threads (each part is a batch of its own, so results
    equal a run with that batch size); torch then runs one intra-op thread per part.  On CUDA,
    ``threads`` sets torch's CPU threads.  torch's thread count is restored afterwards, and so is
    numpy's hugepage advice, which :data:`NUMPY_HUGEPAGES` turns off for the run.
    Yields ``(first_sample, SpikeRecord)``.
    """
    snn, dt = compiled.snn, compiled.dt
    rec = set(compiled.record)
    n = plan.n_samples
    bs = tensor_batch_size(compiled, n - start, cfg)
    xp = arrays_for(cfg.device)
    parts = int(cfg.threads) if xp.name in ("numpy", "torch-cpu") else 1
    torch_mod: Any = None
    saved_torch = 0
    saved_hugepages = None
    progress = progress_bar(cfg, n - start, snn.name)
    try:
        if NUMPY_HUGEPAGES is not None:
            saved_hugepages = _numpy_hugepages(NUMPY_HUGEPAGES)
        t0 = time.perf_counter()
        program = TensorProgram(compiled, xp)  # imports torch where it is used (torch arrays, dense float32 convolutions)
        t_build = time.perf_counter() - t0
        torch_mod = xp.lib if xp.name.startswith("torch") else sys.modules.get("torch")
        if torch_mod is not None:
            # the threads the run was given: one per batch part while parts run in threads of
            # their own (intra-op threads of several parts would oversubscribe the cores)
            saved_torch = torch_mod.get_num_threads()
            torch_mod.set_num_threads(1 if parts > 1 else int(cfg.threads))
        for k0 in range(start, n, bs):
            sub = draw_poisson(plan.select(k0, k0 + bs), cfg.n_steps, dt, cfg.seed, k0)
            out = _run_parts(program, sub, k0, parts, cfg, rec)
            out.meta["timings"]["build_s"] = t_build if k0 == start else 0.0
            out.meta["config"] = cfg.to_dict()
            if progress is not None:
                progress.update(sub.n_samples)
            yield k0, out
    finally:
        if torch_mod is not None:
            torch_mod.set_num_threads(saved_torch)
        if saved_hugepages is not None:
            _numpy_hugepages(saved_hugepages)
        if progress is not None:
            progress.close()



def _tensor_mb(compiled: Plan) -> float:
    """Megabytes one sample of ``compiled`` needs in the tensor engine."""
    return estimate_tensor_memory(compiled, 1) / 1e6

