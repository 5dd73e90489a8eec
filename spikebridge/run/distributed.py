"""Batches as Dask tasks: ``SimulationConfig(scheduler="local" | "tcp://host:port")``.

The same batch jobs the forked worker pool runs (:func:`spikebridge.run.batches.batch_job`)
become tasks of a Dask-distributed cluster.  The network is scattered to the
workers once; each task gets its batch's input values and returns the batch's
:class:`~spikebridge.store.record.SpikeRecord`.  The client yields the records
strictly in sample order, so whoever consumes them (the streaming store) sees
exactly what a one-process run produces.

A worker that dies mid-batch (killed, out of memory, machine lost) makes the
scheduler run that task again on another worker; the task is a pure function
of its arguments (every seed is derived from the global sample index), so the
retried batch is identical, and since only the client hands batches on, none
is lost or handed on twice.

``cpp_standalone`` on Dask: every worker process builds and compiles its own
project once (a directory per host and process under the standalone cache);
later batches on that worker regenerate the sources and ``make`` recompiles
nothing.  Binaries are not shipped between machines.

``dask[distributed]`` is optional (``pip install "spikebridge[distributed]"``)
and imported only here, inside functions.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..config import SimulationConfig
from ..engines.brian2.run import import_brian2
from ..errors import SimulationError
from ..store.record import SpikeRecord
from ..engines.plan import InputPlan, Plan, draw_poisson

log = logging.getLogger(__name__)

__all__ = ["ShardSpec", "dask_client", "iter_dask", "iter_dask_shards", "register_brian2_import"]

#: batches in flight per worker slot: one running, one queued, so a worker never waits for the client
_IN_FLIGHT_PER_SLOT = 2


def _distributed() -> Any:
    from .._optional import import_optional

    return import_optional("distributed", "Dask-distributed runs (SimulationConfig.scheduler / --scheduler)")


@contextlib.contextmanager
def dask_client(address: str, workers: int = 1) -> Iterator[Any]:
    """A ``distributed.Client`` for ``address``, closed on exit.

    Parameters
    ----------
    address : str
        ``"local"`` starts a ``LocalCluster`` of ``workers`` single-threaded
        processes on 127.0.0.1 (no dashboard) and shuts it down on exit;
        anything else is the address of a running scheduler (``tcp://host:8786``).
    workers : int
        Worker processes of a local cluster (ignored for an address).

    Raises
    ------
    MissingDependencyError
        ``dask[distributed]`` is not installed.
    SimulationError
        The scheduler cannot be reached.
    """
    distributed = _distributed()
    if address == "local":
        cluster = distributed.LocalCluster(
            n_workers=max(1, workers), threads_per_worker=1, processes=True, host="127.0.0.1",
            dashboard_address=None, silence_logs=logging.ERROR,
        )
        try:
            client = distributed.Client(cluster)
            try:
                yield client
            finally:
                client.close()
        finally:
            cluster.close()
        return
    try:
        client = distributed.Client(address, timeout=10)
    except (OSError, TimeoutError) as err:
        raise SimulationError(f"cannot reach the Dask scheduler at {address!r}: {err}") from err
    try:
        yield client
    finally:
        client.close()


def register_brian2_import(client: Any) -> None:
    """Make every worker of ``client``'s cluster (also ones that join or restart later) import Brian2 at start-up."""
    distributed = _distributed()

    class ImportBrian2(distributed.WorkerPlugin):  # type: ignore[misc,name-defined]
        name = "spikebridge-import-brian2"

        def setup(self, worker: Any) -> None:
            import_brian2()  # in the worker's main thread; tasks run in other threads

    client.register_plugin(ImportBrian2())


def _standalone_job(compiled: Plan, sub: InputPlan, cfg: SimulationConfig, target: str, k0: int) -> SpikeRecord:
    """One ``cpp_standalone`` batch on a Dask worker, in that worker's own project directory."""
    from ..engines.brian2.run import iter_standalone, structure_key, standalone_cache_dir

    snn, dt = compiled.snn, compiled.dt
    sub = draw_poisson(sub, cfg.n_steps, dt, cfg.seed, k0)
    root = Path(cfg.build_dir) if cfg.build_dir else standalone_cache_dir()
    # two workers on one machine must never build into the same directory at once
    directory = root / f"{snn.name}_{structure_key(snn, sub.n_samples, cfg, dt)}_{socket.gethostname()}_{os.getpid()}"
    ((_, rec),) = list(iter_standalone(compiled, sub, dataclasses.replace(cfg, build_dir=str(directory)), [0], sub.n_samples))
    return rec


def _tensor_job(compiled: Plan, sub: InputPlan, cfg: SimulationConfig, target: str, k0: int) -> SpikeRecord:
    """One tensor-engine batch on a Dask worker (the compiled program is kept for the worker's next batches)."""
    from ..engines.tensor import TensorProgram
    from ..engines.tensor.arrays import arrays_for

    key = (id(compiled), cfg.device)
    if _TENSOR_PROGRAM.get("key") != key:
        # holding the plan keeps its id valid: the scattered plan lives as long as the run
        _TENSOR_PROGRAM.update(key=key, plan=compiled, program=TensorProgram(compiled, arrays_for(cfg.device)))
    sub = draw_poisson(sub, cfg.n_steps, compiled.dt, cfg.seed, k0)
    record = set(compiled.record)
    rec: SpikeRecord = _TENSOR_PROGRAM["program"].run(sub, cfg.n_steps, seed=cfg.seed + k0, record=record)
    rec.meta["config"] = cfg.to_dict()
    return rec


_TENSOR_PROGRAM: dict[str, Any] = {}


@dataclasses.dataclass(frozen=True)
class ShardSpec:
    """What a worker needs to write its batch as a store shard (sent with every shard task; small).

    Attributes
    ----------
    folder : str
        The run's shard folder (absolute; on a cluster, on a file system every worker sees).
    act_layers : tuple of str
        ANN layers whose activations are stored (empty: none).
    ann : bool
        Store the ANN outputs (the network has an ANN and the run has inputs).
    compression : str or None
        The shards' HDF5 filter (None: the store's default).
    """

    folder: str
    act_layers: tuple[str, ...] = ()
    ann: bool = True
    compression: str | None = None


def _shard_job(
    job: Any, compiled: Plan, sub: InputPlan, cfg: SimulationConfig, target: str, k0: int,
    spec: ShardSpec, xb: Any, yb: Any,
) -> dict[str, Any]:
    """Simulate one batch, compute its ANN outputs, write it as a shard; return the shard's descriptor (small)."""
    from ._shard import ann_rows, write_shard

    rec = job(compiled, sub, cfg, target, k0)
    ann, acts = ann_rows(compiled.snn, xb, spec.act_layers, spec.ann)
    desc = write_shard(spec.folder, k0, rec, ann, acts, yb, compression=spec.compression)
    desc["meta"] = {k: v for k, v in rec.meta.items() if k != "timings"}
    return desc


def iter_dask_shards(
    compiled: Plan, plan: InputPlan, cfg: SimulationConfig, start: int, target: str, engine: str,
    spec: ShardSpec, x: Any, y: Any,
) -> Iterator[tuple[int, dict[str, Any]]]:
    """Run the batches from sample ``start`` on ``cfg.scheduler``, each worker writing its batch as a shard.

    As :func:`iter_dask`, but the workers also compute the ANN outputs and
    activations of their batch (inputs ``x``, labels ``y``, all samples) and
    write the shard (:func:`spikebridge.run._shard.write_shard`); what comes
    back to the client, in sample order, is only each shard's descriptor.
    """
    yield from _iter_dask(compiled, plan, cfg, start, target, engine, (spec, x, y))


def iter_dask(
    compiled: Plan, plan: InputPlan, cfg: SimulationConfig, start: int, target: str, engine: str = "brian2"
) -> Iterator[tuple[int, SpikeRecord]]:
    """Run the batches of ``plan`` from sample ``start`` on the Dask cluster ``cfg.scheduler``.

    Parameters
    ----------
    compiled : Plan
        The run's plan (:func:`~spikebridge.engines.plan.compile`), sent once to every worker.
    plan : InputPlan
        All samples' inputs (from :func:`~spikebridge.engines.plan.prepare_inputs`).
    cfg : SimulationConfig
        ``scheduler`` is set; ``batch_size`` (if given) is kept, else batches
        are sized to ``max_memory`` (shared by the workers of a local cluster,
        per worker on a remote one) and spread over the workers.
    start : int
        First sample to run.
    target : str
        Resolved code-generation target (Brian2).
    engine : {"brian2", "tensor"}
        Resolved engine: which batch job the workers run.

    Yields
    ------
    (first_sample, SpikeRecord)
        In sample order.

    Raises
    ------
    SimulationError
        A batch failed on every worker it was tried on, or the scheduler is unreachable.
    """
    yield from _iter_dask(compiled, plan, cfg, start, target, engine, None)


def _iter_dask(
    compiled: Plan, plan: InputPlan, cfg: SimulationConfig, start: int, target: str, engine: str,
    shards: tuple[ShardSpec, Any, Any] | None,
) -> Iterator[tuple[int, Any]]:
    from .batches import batch_job, n_workers, plan_batches, progress_bar, tensor_batch_size

    distributed = _distributed()
    assert cfg.scheduler is not None
    snn = compiled.snn
    local = cfg.scheduler == "local"
    with dask_client(cfg.scheduler, n_workers(dataclasses.replace(cfg, target="numpy"))) as client:
        client.wait_for_workers(1, timeout=60)
        register_brian2_import(client)
        slots = max(1, sum(client.nthreads().values()))
        # plan as if the cluster's slots were forked workers (cpp_standalone too: one project per worker)
        planning = dataclasses.replace(
            cfg, workers=slots, target="numpy", max_memory=cfg.max_memory * (1 if local else slots)
        )
        if engine == "tensor":
            shared = dataclasses.replace(cfg, max_memory=cfg.max_memory / (slots if local else 1))
            bs = cfg.batch_size or min(tensor_batch_size(compiled, plan.n_samples - start, shared), -(-(plan.n_samples - start) // slots))
        else:
            bs = plan_batches(compiled, plan.n_samples - start, planning)
        queue = list(range(start, plan.n_samples, bs))
        log.info("Dask scheduler %s: %d worker slot(s), %d batch(es) of up to %d samples", cfg.scheduler, slots, len(queue), bs)
        job = _tensor_job if engine == "tensor" else _standalone_job if target == "cpp_standalone" else batch_job
        net = client.scatter(compiled, broadcast=True, hash=False)
        run_id = uuid.uuid4().hex[:12]

        def submit(k0: int) -> Any:
            key = f"spikebridge-batch-{run_id}-{k0}"
            if shards is not None:
                spec, x, y = shards
                xb = None if x is None else x[k0 : k0 + bs]
                yb = None if y is None else y[k0 : k0 + bs]
                return client.submit(_shard_job, job, net, plan.select(k0, k0 + bs), cfg, target, k0, spec, xb, yb, key=key)
            return client.submit(job, net, plan.select(k0, k0 + bs), cfg, target, k0, key=key)

        pending: list[tuple[int, Any]] = []
        progress = progress_bar(cfg, plan.n_samples - start, snn.name)
        try:
            while queue or pending:
                while queue and len(pending) < _IN_FLIGHT_PER_SLOT * slots:
                    k0 = queue.pop(0)
                    pending.append((k0, submit(k0)))
                k0, fut = pending.pop(0)
                try:
                    rec = fut.result()
                except distributed.KilledWorker as err:
                    raise SimulationError(
                        f"network '{snn.name}': the batch at sample {k0} was retried on several Dask workers and every one died: {err}"
                    ) from err
                fut.release()
                if progress is not None:
                    progress.update(rec["stop"] - rec["first"] if isinstance(rec, dict) else rec.n_samples)
                yield k0, rec
        finally:
            for _, fut in pending:
                fut.cancel()
            if progress is not None:
                progress.close()
