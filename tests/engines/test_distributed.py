"""Batches as Dask tasks on a 2-process LocalCluster: identical results, a killed worker, a killed client."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from spikebridge.run.simulate import iter_simulate, simulate
from spikebridge.config import SimulationConfig
from spikebridge.errors import MissingDependencyError, ValidationError
from tests.store._fake import make_net

ROOT = Path(__file__).resolve().parents[2]
X = np.random.default_rng(3).uniform(0, 1, (24, 6))
Y = np.arange(24) % 4
CFG = SimulationConfig(n_steps=60, batch_size=3, seed=5, record=("all",), target="numpy")


@pytest.fixture(scope="module")
def cluster():
    """One LocalCluster of two single-threaded worker processes on loopback for the whole module."""
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None, silence_logs=40
    ) as cl:
        yield cl


@pytest.fixture(scope="module")
def reference():
    """The one-process run every Dask run must equal."""
    return simulate(make_net(), X, CFG)


def _assert_same_record(a, b) -> None:
    np.testing.assert_array_equal(a.output_counts_t, b.output_counts_t)
    np.testing.assert_array_equal(a.output_potential_t, b.output_potential_t)
    assert a.counts.keys() == b.counts.keys()
    for name in a.counts:
        np.testing.assert_array_equal(a.counts[name], b.counts[name], err_msg=name)
    for name in a.spikes:
        for field in ("sample", "neuron", "step"):
            np.testing.assert_array_equal(getattr(a.spikes[name], field), getattr(b.spikes[name], field), err_msg=name)


def test_dask_run_equals_one_process(cluster, reference):
    assert reference.counts["input"].sum() > 100  # Poisson input really fired, so per-sample seeds matter
    rec = simulate(make_net(), X, CFG.__class__(**{**CFG.to_dict(), "record": ("all",), "scheduler": cluster.scheduler_address}))
    assert rec.meta["n_batches"] == 8
    _assert_same_record(rec, reference)


def test_tensor_engine_runs_on_dask_workers(cluster, reference):
    """Both engines run on the workers: the tensor engine's Dask run equals its own one-process run and Brian2's."""
    import dataclasses

    cfg = dataclasses.replace(CFG, engine="tensor", device="cpu")
    alone = simulate(make_net(), X, cfg)
    rec = simulate(make_net(), X, dataclasses.replace(cfg, scheduler=cluster.scheduler_address))
    _assert_same_record(rec, alone)
    _assert_same_record(rec, reference)


def test_killed_worker_run_completes_identically(cluster, reference):
    distributed = pytest.importorskip("distributed")
    import dataclasses

    cfg = dataclasses.replace(CFG, scheduler=cluster.scheduler_address)
    with distributed.Client(cluster.scheduler_address) as spy:
        pids = spy.run(os.getpid)
        assert len(pids) == 2
        parts = []
        for k, (k0, rec) in enumerate(iter_simulate(make_net(), X, cfg)):
            if k == 0:
                # both workers hold a running and a queued batch now: kill one of them outright
                os.kill(next(iter(pids.values())), signal.SIGKILL)
            parts.append((k0, rec))
        spy.wait_for_workers(2, timeout=60)
        assert set(spy.run(os.getpid).values()) != set(pids.values())  # the nanny really started a new worker
    assert [k0 for k0, _ in parts] == list(range(0, 24, 3))  # every batch once, in order
    from spikebridge.store.record import concat_records

    _assert_same_record(concat_records([r for _, r in parts]), reference)


def test_resume_after_client_killed(cluster, reference, tmp_path):
    """A `spikebridge simulate --scheduler` client killed mid-run; resuming (also via Dask) completes it identically."""
    from spikebridge.store.spikes import SpikeStore
    from spikebridge.run.store import simulate_to_store

    net, data, store = tmp_path / "net.h5", tmp_path / "data.npz", tmp_path / "s.h5"
    make_net().save(net)
    np.savez(data, x=X, y=Y)
    args = [sys.executable, "-m", "spikebridge", "-q", "simulate", str(net), "--data", str(data), "-o", str(store),
            "--steps", "60", "--batch-size", "3", "--seed", "5", "--target", "numpy", "--scheduler", cluster.scheduler_address]
    proc = subprocess.Popen(args, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while not store.exists():  # the store appears once the first batch is written
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
            assert time.monotonic() < deadline
            time.sleep(0.01)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    with SpikeStore(store) as st:
        done = st.n_done
        assert st.sharded  # a Dask run writes shards: the workers wrote the batches, the client the index
    assert 3 <= done < 24 and done % 3 == 0
    import dataclasses

    rec = simulate_to_store(make_net(), X, store, dataclasses.replace(CFG, scheduler=cluster.scheduler_address), labels=Y, resume=True)
    _assert_same_record(rec, reference)


def _store_record(path):
    from spikebridge.store.spikes import SpikeStore

    with SpikeStore(path) as st:
        return st.to_record(), st.labels, st.sharded


def test_sharded_dask_store_equals_one_file_store(cluster, reference, tmp_path):
    """Workers write the shards, the client only the index; the store reads back as the one-process run, bit for bit."""
    import dataclasses

    from spikebridge.run.store import simulate_to_store
    from spikebridge.store.shards import shard_folder

    cfg = dataclasses.replace(CFG, scheduler=cluster.scheduler_address)
    simulate_to_store(make_net(), X, tmp_path / "s.h5", cfg, labels=Y, return_record=False)
    simulate_to_store(make_net(), X, tmp_path / "one.h5", cfg, labels=Y, shards=False, return_record=False)
    assert sorted(os.listdir(shard_folder(tmp_path / "s.h5"))) == [f"b{k:010d}-{k + 3:010d}.h5" for k in range(0, 24, 3)]
    assert not shard_folder(tmp_path / "one.h5").exists()
    (rec, labels, sharded), (one, labels1, sharded1) = _store_record(tmp_path / "s.h5"), _store_record(tmp_path / "one.h5")
    assert sharded and not sharded1
    _assert_same_record(rec, reference)
    _assert_same_record(rec, one)
    np.testing.assert_array_equal(labels, labels1)


def test_sharded_dask_store_with_ann_activations(cluster, tmp_path):
    """Workers compute the ANN outputs and activations of their batch: the shards hold what the client would have written."""
    import dataclasses

    from spikebridge.conversion.convert import convert
    from spikebridge.run.store import simulate_to_store
    from spikebridge.store.spikes import SpikeStore
    from tests.conftest import make_tiny_mlp

    snn = convert(make_tiny_mlp(), calibration=X[:8])
    cfg = dataclasses.replace(CFG, scheduler=cluster.scheduler_address)
    for name, shards in (("s.h5", True), ("one.h5", False)):
        simulate_to_store(snn, X, tmp_path / name, cfg, labels=Y, ann_activations=True, shards=shards, return_record=False)
    with SpikeStore(tmp_path / "s.h5") as a, SpikeStore(tmp_path / "one.h5") as b:
        assert a.sharded and not b.sharded
        acts_a, acts_b = a.ann_activations(), b.ann_activations()
        assert acts_a.keys() == acts_b.keys() and len(acts_a) >= 2
        for k in acts_a:
            np.testing.assert_array_equal(acts_a[k], acts_b[k], err_msg=k)
        np.testing.assert_array_equal(a.ann_outputs, b.ann_outputs)
        _assert_same_record(a.to_record(), b.to_record())


@pytest.mark.slow
def test_killed_worker_sharded_store_completes_identically(cluster, reference, tmp_path):
    """SIGKILL a worker process while workers write shards: its batches are rerun elsewhere, the store is exact."""
    distributed = pytest.importorskip("distributed")
    import dataclasses

    from spikebridge.run.store import simulate_to_store

    cfg = dataclasses.replace(CFG, scheduler=cluster.scheduler_address)
    with distributed.Client(cluster.scheduler_address) as spy:
        pids = spy.run(os.getpid)
        killed = []

        def kill_one(done, n):
            if not killed:
                killed.append(next(iter(pids.values())))
                os.kill(killed[0], signal.SIGKILL)

        simulate_to_store(make_net(), X, tmp_path / "s.h5", cfg, labels=Y, progress=kill_one, return_record=False)
        spy.wait_for_workers(2, timeout=60)
        assert killed and set(spy.run(os.getpid).values()) != set(pids.values())
    rec, labels, sharded = _store_record(tmp_path / "s.h5")
    assert sharded
    _assert_same_record(rec, reference)
    np.testing.assert_array_equal(labels, Y)


def test_scheduler_is_validated_and_needs_dask(monkeypatch):
    with pytest.raises(ValidationError, match="scheduler"):
        SimulationConfig(scheduler="somewhere")
    monkeypatch.setitem(sys.modules, "distributed", None)  # as if dask[distributed] were not installed
    with pytest.raises(MissingDependencyError, match=r'pip install "spikebridge\[distributed\]"'):
        simulate(make_net(), X[:2], SimulationConfig(n_steps=5, target="numpy", scheduler="local"))
