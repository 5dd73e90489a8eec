"""The tensor engine's next batch runs while the store writes the current one (issue 21 §2)."""

from __future__ import annotations

import threading
import time

import h5py
import numpy as np
import pytest

import spikebridge.run.store as stream
from spikebridge.config import SimulationConfig
from spikebridge.run.simulate import iter_simulate, simulate
from spikebridge.store.spikes import SpikeStore
from tests.store._fake import X, Y, make_net

TENSOR_CFG = SimulationConfig(n_steps=40, batch_size=4, seed=7, record=("all",), engine="tensor", threads=1)


class _Batches:
    """A fake engine: records which thread made each batch and how many batches were alive at once."""

    def __init__(self, n: int, engine: str = "tensor", fail_at: int | None = None) -> None:
        self.n, self.engine, self.fail_at = n, engine, fail_at
        self.threads: list[int] = []
        self.alive = 0
        self.most_alive = 0
        self.lock = threading.Lock()

    def __iter__(self):
        for k in range(self.n):
            if k == self.fail_at:
                raise RuntimeError(f"engine failed at batch {k}")
            time.sleep(0.02)
            with self.lock:
                self.alive += 1
                self.most_alive = max(self.most_alive, self.alive)
            self.threads.append(threading.get_ident())
            rec = type("Rec", (), {"meta": {"engine": self.engine}})()
            yield k, rec

    def written(self) -> None:
        with self.lock:
            self.alive -= 1


def test_next_batch_runs_in_another_thread_with_at_most_two_alive():
    fake = _Batches(6)
    seen = []
    for k, _ in stream._ahead(iter(fake)):
        seen.append(k)
        time.sleep(0.05)  # the store's work: the engine runs the next batch meanwhile
        fake.written()
    assert seen == list(range(6))
    me = threading.get_ident()
    assert fake.threads[0] == me and all(t != me for t in fake.threads[1:])
    assert fake.most_alive == 2  # overlapped, and never more than the one being written and the next


def test_engine_error_is_raised_in_the_caller_after_the_batches_before_it():
    fake = _Batches(5, fail_at=3)
    seen = []
    with pytest.raises(RuntimeError, match="engine failed at batch 3"):
        for k, _ in stream._ahead(iter(fake)):
            seen.append(k)
    assert seen == [0, 1, 2]


@pytest.mark.parametrize("engine", ["brian2", "tensor-off"])
def test_other_engines_and_the_switch_stay_in_the_calling_thread(engine, monkeypatch):
    if engine == "tensor-off":
        monkeypatch.setattr(stream, "ENGINE_AHEAD", False)
    fake = _Batches(4, engine="brian2" if engine == "brian2" else "tensor")
    assert [k for k, _ in stream._ahead(iter(fake))] == [0, 1, 2, 3]
    assert set(fake.threads) == {threading.get_ident()}


def _spikes(path) -> dict[str, np.ndarray]:
    out = {}
    with SpikeStore(path) as st:
        for name in st:
            sp = st.read_spikes(name)
            out[name] = np.stack([sp.sample, sp.step, sp.neuron])
            out[f"counts/{name}"] = st.counts(name)
        out["counts_t"] = st.file["output/counts_t"][()]
        out["n_done"] = np.array(st.n_done)
    return out


def test_tensor_store_run_ahead_equals_the_run_without_it_and_simulate(tmp_path, monkeypatch):
    n = 12
    stream.simulate_to_store(make_net(), X[:n], tmp_path / "ahead.h5", TENSOR_CFG, labels=Y[:n], return_record=False)
    monkeypatch.setattr(stream, "ENGINE_AHEAD", False)
    stream.simulate_to_store(make_net(), X[:n], tmp_path / "plain.h5", TENSOR_CFG, labels=Y[:n], return_record=False)
    a, b = _spikes(tmp_path / "ahead.h5"), _spikes(tmp_path / "plain.h5")
    assert a.keys() == b.keys() and int(a["n_done"]) == n
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    rec = simulate(make_net(), X[:n], TENSOR_CFG)
    assert a["input"].shape[1] > 50  # the Poisson input really fired: seeding per batch matters
    np.testing.assert_array_equal(a["counts/hidden"], rec.counts["hidden"])
    np.testing.assert_array_equal(a["counts_t"], rec.output_counts_t)


def test_tensor_store_interrupted_in_the_engine_thread_resumes_to_the_same_store(tmp_path, monkeypatch):
    n = 12
    stream.simulate_to_store(make_net(), X[:n], tmp_path / "ref.h5", TENSOR_CFG, labels=Y[:n], return_record=False)

    def stop_at_two(snn, x, config, start):
        for k, item in enumerate(iter_simulate(snn, x, config, start=start)):
            if k == 2:  # raised in the engine's thread, while batch 1 is written
                raise KeyboardInterrupt
            yield item

    monkeypatch.setattr(stream, "_backend_iter", stop_at_two)
    with pytest.raises(KeyboardInterrupt):
        stream.simulate_to_store(make_net(), X[:n], tmp_path / "s.h5", TENSOR_CFG, labels=Y[:n], return_record=False)
    monkeypatch.undo()
    with SpikeStore(tmp_path / "s.h5") as st:
        assert st.n_done == 8  # batches 0 and 1 written and counted, nothing after
    stream.simulate_to_store(make_net(), X[:n], tmp_path / "s.h5", TENSOR_CFG, labels=Y[:n], resume=True, return_record=False)
    a, b = _spikes(tmp_path / "s.h5"), _spikes(tmp_path / "ref.h5")
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def test_default_compression_leaves_rasters_and_activations_unfiltered_and_the_rest_lzf(tmp_path):
    from spikebridge.conversion.convert import convert
    from tests.conftest import make_tiny_mlp

    n = 8
    net = convert(make_tiny_mlp(), calibration=X[:8])
    cfg = SimulationConfig(n_steps=40, batch_size=4, seed=7, record=("all",), engine="tensor", threads=1)
    stream.simulate_to_store(net, X[:n], tmp_path / "s.h5", cfg, labels=Y[:n], return_record=False, ann_activations=True)
    with h5py.File(tmp_path / "s.h5", "r") as f:
        rasters = [g["bits"] for g in f["populations"].values() if "bits" in g]
        assert rasters  # the input fires densely enough for a raster
        assert all(ds.compression is None for ds in rasters)
        acts = list(f["ann/activations"].values())
        assert acts and all(ds.compression is None for ds in acts)
        assert f["output/counts_t"].compression == "lzf" and f["ann/outputs"].compression == "lzf"
        assert all(ds.compression == "lzf" for ds in f["counts"].values())
    with SpikeStore(tmp_path / "s.h5") as st:  # and it reads back as any store
        assert st.n_done == n and st.ann_activations() and st.counts(next(iter(st))).shape[0] == n


@pytest.mark.slow
def test_sigkill_while_the_engine_runs_ahead_then_resume(tmp_path):
    """A real SIGKILL of a tensor-engine run (engine thread and store writing at once) loses no counted batch."""
    import os
    import signal
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    n, bs = 40, 2
    x = np.random.default_rng(1).uniform(0, 1, (n, 6))  # what the worker simulates
    ref = tmp_path / "ref.h5"
    cfg = SimulationConfig(n_steps=40, batch_size=bs, seed=7, record=("all",), engine="tensor", threads=1)
    stream.simulate_to_store(make_net(), x, ref, cfg, labels=np.arange(n) % 4, return_record=False)
    path = tmp_path / "s.h5"
    env = {**os.environ, "SB_REAL_BACKEND": "1", "SB_ENGINE": "tensor", "PYTHONPATH": str(root)}
    args = [sys.executable, "-m", "tests.store._worker", str(path), str(n), str(bs)]
    proc = subprocess.Popen(args + ["fresh"], cwd=root, env=env, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120

    def n_done() -> int:
        try:
            with SpikeStore(path) as st:
                return st.n_done
        except (FileNotFoundError, OSError, ValueError):
            return -1

    while n_done() < 4:
        assert proc.poll() is None, proc.stderr.read().decode()
        assert time.monotonic() < deadline
        time.sleep(0.005)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    done = n_done()
    assert 4 <= done < n and done % bs == 0  # killed mid-run (4-6 of 40 seen), at a batch boundary
    res = subprocess.run(args + ["resume"], cwd=root, env=env, capture_output=True, timeout=300)
    assert res.returncode == 0, res.stderr.decode()
    a, b = _spikes(path), _spikes(ref)
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)
