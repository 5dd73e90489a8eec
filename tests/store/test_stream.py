"""Streaming to the store: resume equals an uninterrupted run, also after real SIGKILLs."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import spikebridge.run.store as stream
from spikebridge.store.stream import file_sha256
from spikebridge.config import SimulationConfig
from spikebridge.errors import ValidationError
from spikebridge.store.spikes import SpikeStore, StoreExistsError
from tests.store._fake import BS, CFG, N, X, Y, fake_iter, make_net

ROOT = Path(__file__).resolve().parents[2]
@pytest.fixture(scope="module")
def reference_store(tmp_path_factory):
    """An uninterrupted run: the arrays every interrupted run must end with."""
    path = tmp_path_factory.mktemp("ref") / "ref.h5"
    old = stream._backend_iter
    stream._backend_iter = fake_iter
    try:
        stream.simulate_to_store(make_net(), X, path, CFG, labels=Y)
    finally:
        stream._backend_iter = old
    return path


def _arrays(path: Path, n: int | None = None) -> dict[str, np.ndarray]:
    with SpikeStore(path) as st:
        n = st.n_done if n is None else n
        out = {"counts_t": st.file["output/counts_t"][:n], "pot": st.file["output/potential_t"][:n], "labels": st.labels[:n]}
        for name in st:
            sp = st.read_spikes(name, 0, n)
            out[f"{name}/sample"], out[f"{name}/neuron"], out[f"{name}/step"] = sp.sample, sp.neuron, sp.step
        for name in st.count_populations:
            out[f"counts/{name}"] = st.counts(name)[:n]
    return out


def _assert_same(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> None:
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def test_stream_writes_every_sample_with_provenance(fake_backend, tmp_path, reference_store):
    calls = []
    net_file = tmp_path / "net.h5"
    make_net().save(net_file)
    rec = stream.simulate_to_store(make_net(), X, tmp_path / "s.h5", CFG, labels=Y, progress=lambda d, n: calls.append((d, n)), network_path=net_file)
    assert calls == [(k, N) for k in range(BS, N + 1, BS)]
    assert rec.n_samples == N and rec.counts["hidden"].sum() > 100  # the network really spiked
    with SpikeStore(tmp_path / "s.h5") as st:
        a = st.attrs
        assert st.complete and a["seed"] == 7 and a["n_samples"] == N and a["n_steps"] == 40
        assert a["network_sha256"] == file_sha256(net_file) and len(a["network_fingerprint"]) == 64
        assert a["simulation"]["batch_size"] == BS and a["populations"]["out"]["latency_steps"] == 2
    _assert_same(_arrays(tmp_path / "s.h5"), _arrays(reference_store))


def test_existing_store_needs_overwrite_or_resume(fake_backend, tmp_path):
    path = tmp_path / "s.h5"
    stream.simulate_to_store(make_net(), X[:4], path, CFG)
    with pytest.raises(StoreExistsError, match="--overwrite.*--resume"):
        stream.simulate_to_store(make_net(), X[:4], path, CFG)
    stream.simulate_to_store(make_net(), X[:8], path, CFG, overwrite=True)
    with SpikeStore(path) as st:
        assert st.n_done == 8


def test_resume_refuses_other_settings_network_or_inputs(fake_backend, tmp_path):
    path = tmp_path / "s.h5"
    stream.simulate_to_store(make_net(), X, path, CFG, labels=Y)
    with pytest.raises(ValidationError, match=r"simulation differs \(n_steps: stored 40, now 41\)"):
        stream.simulate_to_store(make_net(), X, path, SimulationConfig(n_steps=41, batch_size=BS, seed=7, record=("all",)), resume=True)
    with pytest.raises(ValidationError, match="seed differs"):
        stream.simulate_to_store(make_net(), X, path, SimulationConfig(n_steps=40, batch_size=BS, seed=8, record=("all",)), resume=True)
    with pytest.raises(ValidationError, match="network_fingerprint differs"):
        stream.simulate_to_store(make_net(seed=1), X, path, CFG, resume=True)
    with pytest.raises(ValidationError, match="inputs_sha256 differs.*--overwrite"):
        stream.simulate_to_store(make_net(), X + 0.1, path, CFG, resume=True)


def test_resume_after_partial_run_equals_uninterrupted(fake_backend, tmp_path, reference_store, monkeypatch):
    path = tmp_path / "s.h5"

    def stop_after_two(snn, x, config, start):
        for k, item in enumerate(fake_iter(snn, x, config, start)):
            if k == 2:
                raise KeyboardInterrupt
            yield item

    monkeypatch.setattr(stream, "_backend_iter", stop_after_two)
    with pytest.raises(KeyboardInterrupt):
        stream.simulate_to_store(make_net(), X, path, CFG, labels=Y)
    with SpikeStore(path) as st:
        assert st.n_done == 2 * BS and not st.complete
    starts = []

    def recording(snn, x, config, start):
        starts.append(start)
        return fake_iter(snn, x, config, start)

    monkeypatch.setattr(stream, "_backend_iter", recording)
    rec = stream.simulate_to_store(make_net(), X, path, CFG, labels=Y, resume=True)
    assert starts == [2 * BS] and rec.n_samples == N
    _assert_same(_arrays(path), _arrays(reference_store))
    # resuming a complete store simulates nothing and returns it
    starts.clear()
    stream.simulate_to_store(make_net(), X, path, CFG, labels=Y, resume=True)
    assert starts == []


def _n_done(path: Path) -> int:
    try:
        with SpikeStore(path) as st:
            return st.n_done
    except (FileNotFoundError, OSError, ValueError):
        return -1


def _spawn(path: Path, resume: bool = False, sleep: float = 0.15) -> subprocess.Popen:
    env = {**os.environ, "SB_FAKE_SLEEP": str(sleep), "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, "-m", "tests.store._worker", str(path), str(N), str(BS), "resume" if resume else "fresh"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )


def _kill_and_check(path: Path, reference: Path, *, after_batches: int | None = None, after_seconds: float | None = None) -> int:
    proc = _spawn(path)
    try:
        if after_batches is not None:
            deadline = time.monotonic() + 60
            while _n_done(path) < after_batches * BS:
                assert proc.poll() is None, proc.stderr.read().decode()
                assert time.monotonic() < deadline, "writer made no progress"
                time.sleep(0.01)
        else:
            time.sleep(after_seconds)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    done = _n_done(path)
    if after_batches is not None:
        assert done >= after_batches * BS
    if done > 0:
        # the killed file opens, and every batch finished before the kill is there and right
        assert done % BS == 0
        _assert_same(_arrays(path), _arrays(reference, done))
    # resume in a fresh process (the store must not need the dead writer)
    res = _spawn(path, resume=True, sleep=0.0)
    out, err = res.communicate(timeout=120)
    assert res.returncode == 0, err.decode()
    _assert_same(_arrays(path), _arrays(reference))
    with SpikeStore(path) as st:
        assert st.complete
    return done


@pytest.mark.parametrize("batches", [1, 2, 3])
def test_sigkill_after_n_batches_then_resume(tmp_path, reference_store, batches):
    done = _kill_and_check(tmp_path / "s.h5", reference_store, after_batches=batches)
    assert batches * BS <= done < N


def test_sigkill_at_random_moments_then_resume(tmp_path, reference_store):
    rng = np.random.default_rng(2024)
    for k, t in enumerate(rng.uniform(0.3, 1.6, 2)):
        _kill_and_check(tmp_path / f"r{k}.h5", reference_store, after_seconds=float(t))


@pytest.mark.slow
def test_sigkill_mid_write_many_times_never_corrupts(tmp_path):
    """No sleeps: kills land while batches are being written and flushed."""
    n, bs = 200, 4
    x = np.random.default_rng(1).uniform(0, 1, (n, 6))
    ref = tmp_path / "ref.h5"
    old = stream._backend_iter
    stream._backend_iter = fake_iter
    try:
        stream.simulate_to_store(make_net(), x, ref, CFG, labels=np.arange(n) % 4)
    finally:
        stream._backend_iter = old
    rng = np.random.default_rng(7)
    env = {**os.environ, "SB_FAKE_SLEEP": "0", "PYTHONPATH": str(ROOT)}
    seen = []
    for k in range(10):
        path = tmp_path / f"k{k}.h5"
        # kill once the store holds a drawn number of finished batches (observed, not timed, so the
        # test does not depend on the machine's load); the writer is then in the middle of later ones
        wait_for = int(rng.integers(1, n // bs // 2)) * bs
        proc = subprocess.Popen([sys.executable, "-m", "tests.store._worker", str(path), str(n), str(bs), "fresh"], cwd=ROOT, env=env)
        deadline = time.monotonic() + 120
        while _n_done(path) < wait_for and proc.poll() is None:
            assert time.monotonic() < deadline, "writer made no progress"
            time.sleep(0.005)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        done = _n_done(path)
        seen.append((wait_for, done))
        assert done >= wait_for and done % bs == 0, seen
        _assert_same(_arrays(path), _arrays(ref, done))
        with SpikeStore(path, "a") as st:  # writable again after the crash
            assert st.n_done == done


# -- the real Brian2 backend --------------------------------------------------------------------------------------

REAL_CFG = SimulationConfig(n_steps=40, batch_size=2, seed=7, record=("all",), target="numpy")


def _real_reference(path: Path, n: int) -> Path:
    stream.simulate_to_store(make_net(), X[:n], path, REAL_CFG, labels=Y[:n])
    return path


def test_real_backend_resume_equals_uninterrupted(tmp_path, monkeypatch):
    from spikebridge.run.simulate import iter_simulate

    n = 6
    ref = _real_reference(tmp_path / "ref.h5", n)

    def stop_after_one(snn, x, config, start):
        for k, item in enumerate(iter_simulate(snn, x, config, start=start)):
            if k == 1:
                raise KeyboardInterrupt
            yield item

    monkeypatch.setattr(stream, "_backend_iter", stop_after_one)
    with pytest.raises(KeyboardInterrupt):
        stream.simulate_to_store(make_net(), X[:n], tmp_path / "s.h5", REAL_CFG, labels=Y[:n])
    monkeypatch.undo()
    assert _n_done(tmp_path / "s.h5") == 2
    rec = stream.simulate_to_store(make_net(), X[:n], tmp_path / "s.h5", REAL_CFG, labels=Y[:n], resume=True)
    assert rec.counts["input"].sum() > 50  # Poisson input really fired, so seeding matters
    _assert_same(_arrays(tmp_path / "s.h5"), _arrays(ref))


@pytest.mark.slow
def test_real_backend_sigkill_then_resume(tmp_path):
    n = 8
    ref = _real_reference(tmp_path / "ref.h5", n)
    path = tmp_path / "s.h5"
    env = {**os.environ, "SB_REAL_BACKEND": "1", "PYTHONPATH": str(ROOT)}
    args = [sys.executable, "-m", "tests.store._worker", str(path), str(n), "2"]
    proc = subprocess.Popen(args + ["fresh"], cwd=ROOT, env=env, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while _n_done(path) < 2:
        assert proc.poll() is None, proc.stderr.read().decode()
        assert time.monotonic() < deadline
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    done = _n_done(path)
    assert 2 <= done < n
    _assert_same(_arrays(path), _arrays(ref, done))
    res = subprocess.run(args + ["resume"], cwd=ROOT, env=env, capture_output=True, timeout=300)
    assert res.returncode == 0, res.stderr.decode()
    _assert_same(_arrays(path), _arrays(ref))


def test_resume_keeps_the_first_runs_batch_size(tmp_path, reference_store, monkeypatch):
    """With batch_size unset the memory budget picks it; a resume under another budget must not shift batches."""
    import dataclasses

    seen = []

    def by_memory(snn, x, config, start, stop_after=None):
        bs = config.batch_size or int(config.max_memory // 1e6)
        seen.append((start, bs))
        for k, item in enumerate(fake_iter(snn, x, dataclasses.replace(config, batch_size=bs), start)):
            if k == stop_after:
                raise KeyboardInterrupt
            yield item

    free = dataclasses.replace(CFG, batch_size=None, max_memory=4e6)
    monkeypatch.setattr(stream, "_backend_iter", lambda *a: by_memory(*a, stop_after=2))
    with pytest.raises(KeyboardInterrupt):
        stream.simulate_to_store(make_net(), X, tmp_path / "s.h5", free, labels=Y)
    monkeypatch.setattr(stream, "_backend_iter", by_memory)
    stream.simulate_to_store(make_net(), X, tmp_path / "s.h5", dataclasses.replace(free, max_memory=3e6), labels=Y, resume=True)
    assert seen == [(0, 4), (8, 4)]
    _assert_same(_arrays(tmp_path / "s.h5"), _arrays(reference_store))


# -- per-batch checksums (issue 19 §1) ------------------------------------------------------------------------------

def test_damaged_batch_is_refused_by_readers_and_cut_by_resume(fake_backend, tmp_path, reference_store):
    """A counted batch whose rows differ from what was written (a write the disk lost) is never accepted."""
    import h5py

    from spikebridge.errors import StoreFormatError
    from spikebridge.store.spikes import verified_samples

    path = tmp_path / "s.h5"
    stream.simulate_to_store(make_net(), X, path, CFG, labels=Y)
    with h5py.File(path, "r") as f:
        assert f["progress/batch_ends"][:].tolist() == list(range(BS, N + 1, BS))
        assert verified_samples(f, N) == (N, "")
    with h5py.File(path, "r+") as f:  # samples 9 and 14: batches 2 and 3 lose their rows, as on a failed write
        f["output/counts_t"][9] = 0
        g = f["populations/hidden"]
        if "bits" in g:  # a raster: one more spike (or one less) in sample 13
            g["bits"][13, 0, 0] ^= 1
        else:
            g["step"][int(g["index"][13])] += 1
    with pytest.raises(StoreFormatError, match=r"is damaged: samples 8-11 do not match their checksum; only the first 8 of its 24"):
        SpikeStore(path)
    from spikebridge.cli import main

    assert main(["compare", str(path)]) == 1
    # --resume cuts to the 8 verified samples and rewrites the rest: the uninterrupted result
    stream.simulate_to_store(make_net(), X, path, CFG, labels=Y, resume=True)
    _assert_same(_arrays(path), _arrays(reference_store))


def test_counted_samples_without_checksum_are_not_verified(fake_backend, tmp_path):
    import h5py

    from spikebridge.errors import StoreFormatError

    path = tmp_path / "s.h5"
    stream.simulate_to_store(make_net(), X, path, CFG, labels=Y)
    with h5py.File(path, "r+") as f:  # the counter says more than the checksummed batches
        f["progress/batch_ends"].resize(3, axis=0)
    with pytest.raises(StoreFormatError, match="samples 12-23 are counted as done but have no checksum"):
        SpikeStore(path)
    with SpikeStore(path, "a") as st:
        assert st.n_done == 12


def test_free_space_is_checked_before_a_batch(fake_backend, tmp_path, monkeypatch):
    """Too little room for the next batch: StoreFullError before anything of it is written, the rest resumes."""
    import spikebridge.store.spikes as spikes
    from spikebridge.store.spikes import StoreFullError

    path = tmp_path / "s.h5"
    calls = []

    def free(p):
        calls.append(p)
        return (10 << 20, "device") if len(calls) <= 4 else (1000, "device")  # check, batch 0, reopen, batch 1

    monkeypatch.setattr(spikes, "free_bytes", free)
    with pytest.raises(StoreFullError, match=r"while writing samples from (\d+): \1 of 24 samples are kept in it") as err:
        stream.simulate_to_store(make_net(), X, path, CFG, labels=Y)
    # the blocks reserved past the file's end for earlier batches are the store's own and may hold a
    # few more batches (how many depends on how tight the bound is); the first batch that needs more is refused whole
    kept = int(str(err.value).split("samples from ")[1].split(":")[0])
    assert 8 <= kept < 24 and kept % CFG.batch_size == 0
    assert _n_done(path) == kept


def test_lost_chunk_write_is_refused_and_resume_rewrites_it(fake_backend, tmp_path, reference_store):
    """Zeros where a compressed chunk should be (a write the full disk swallowed): unreadable, so unverified."""
    import h5py

    from spikebridge.errors import StoreFormatError

    path = tmp_path / "s.h5"
    stream.simulate_to_store(make_net(), X, path, CFG, labels=Y)
    with h5py.File(path, "r") as f:
        g = f["populations/hidden"]
        info = g["bits" if "bits" in g else "neuron"].id.get_chunk_info(0)
    with open(path, "r+b") as fh:
        fh.seek(info.byte_offset)
        fh.write(bytes(info.size))
    with pytest.raises(StoreFormatError, match=r"is damaged: samples 0-3 (cannot be read .*|do not match their checksum; )only the first 0 of its 24"):
        SpikeStore(path)
    stream.simulate_to_store(make_net(), X, path, CFG, labels=Y, resume=True)
    _assert_same(_arrays(path), _arrays(reference_store))


@pytest.mark.parametrize("compression", ["gzip", "none"])
def test_compression_choice_gives_the_same_arrays(fake_backend, tmp_path, reference_store, compression):
    import h5py

    path = tmp_path / "s.h5"
    stream.simulate_to_store(make_net(), X, path, CFG, labels=Y, compression=compression, return_record=False)
    with h5py.File(path, "r") as f:
        assert f["output/counts_t"].compression == (None if compression == "none" else compression)
    with h5py.File(reference_store, "r") as f:
        assert f["output/counts_t"].compression == "lzf"  # the default
    _assert_same(_arrays(path), _arrays(reference_store))
    with pytest.raises(ValidationError, match="compression 'zip' is not one of"):
        stream.simulate_to_store(make_net(), X, tmp_path / "t.h5", CFG, compression="zip")


def test_cli_compression_flag(tmp_path):
    import h5py

    from spikebridge import cli

    net, store = tmp_path / "net.h5", tmp_path / "s.h5"
    assert cli.main(["-q", "convert", "shipped:digits_mlp", "-o", str(net)]) == 0
    assert cli.main(["-q", "simulate", str(net), "--limit", "8", "--steps", "16", "--target", "numpy", "-o", str(store),
                     "--compression", "none"]) == 0
    with h5py.File(store, "r") as f:
        assert f.attrs["format_version"] == 2 and f["output/counts_t"].compression is None
        assert f["progress"].attrs["n_done"] == 8


def test_resume_of_a_store_that_predates_the_precision_setting():
    """A store written before SimulationConfig.precision existed ran in float64: resuming it in
    float64 is the same run, in float32 it is not."""
    from types import SimpleNamespace

    from spikebridge.store.stream import _check_resume, _sim_dict

    now = _sim_dict(CFG)
    assert now["precision"] == "float64"
    old = SimpleNamespace(path="old.h5", attrs={"simulation": {k: v for k, v in now.items() if k != "precision"}})
    _check_resume(old, {"simulation": now})  # no error
    f32 = {**now, "precision": "float32"}
    with pytest.raises(ValidationError, match=r"simulation differs \(precision: stored 'float64', now 'float32'\)"):
        _check_resume(old, {"simulation": f32})
