"""Sharded stores: batches in shard files, one index; readers see one store, bit for bit the one-file result."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

import spikebridge.run.store as stream
from spikebridge.conversion.convert import convert
from spikebridge.errors import StoreFormatError
from spikebridge.store.shards import shard_folder
from spikebridge.store.spikes import SpikeStore, StoreExistsError
from tests.conftest import make_tiny_mlp
from tests.store._fake import BS, CFG, N, X, Y, fake_iter, make_net

ROOT = Path(__file__).resolve().parents[2]
@pytest.fixture(scope="module")
def ann_net():
    """A converted MLP: the store then holds ANN outputs and activations too."""
    return convert(make_tiny_mlp(), calibration=X[:8])


@pytest.fixture(scope="module")
def reference_store(tmp_path_factory, ann_net):
    path = tmp_path_factory.mktemp("ref") / "ref.h5"
    old = stream._backend_iter
    stream._backend_iter = fake_iter
    try:
        stream.simulate_to_store(ann_net, X, path, CFG, labels=Y, ann_activations=True, shards=False)
    finally:
        stream._backend_iter = old
    return path


def _everything(path: Path) -> dict[str, np.ndarray]:
    """Every array a reader gets through the store API (whole and in slices that cross shard ends)."""
    with SpikeStore(path) as st:
        rec = st.to_record()
        out = {"counts_t": rec.output_counts_t, "pot": rec.output_potential_t, "labels": st.labels, "ann": st.ann_outputs}
        for layer, a in st.ann_activations().items():
            out[f"act/{layer}"] = a
        for name in st:
            for lo, hi in ((0, None), (3, 11), (8, 12), (23, 24)):
                sp = st.read_spikes(name, lo, hi)
                for field in ("sample", "neuron", "step"):
                    out[f"{name}/{lo}/{field}"] = getattr(sp, field)
        for name in st.count_populations:
            out[f"counts/{name}"] = st.counts(name)
        part = st.output_record(5, 13)
        out["part_counts_t"], out["part_labels"] = part.output_counts_t, part.labels
        out["order"] = np.array(list(st)), np.array(st.count_populations)
        out["n_done"] = np.array(st.n_done)
    return out


def _assert_same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        if isinstance(a[key], tuple):
            for x, y in zip(a[key], b[key]):
                np.testing.assert_array_equal(x, y, err_msg=key)
        elif a[key] is None:
            assert b[key] is None, key
        else:
            assert a[key].dtype == b[key].dtype, key
            np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def test_sharded_store_reads_as_the_one_file_store(fake_backend, tmp_path, reference_store, ann_net):
    path = tmp_path / "s.h5"
    rec = stream.simulate_to_store(ann_net, X, path, CFG, labels=Y, ann_activations=True, shards=True)
    names = sorted(os.listdir(shard_folder(path)))
    assert names == [f"b{k:010d}-{k + BS:010d}.h5" for k in range(0, N, BS)]  # one shard per batch, nothing else left
    with h5py.File(path, "r") as f:  # the main store holds the index only
        assert "populations" not in f and "output" not in f
        assert [n.decode() for n in f["shards/name"][:]] == names and f["progress"].attrs["n_done"] == N
    ref = _everything(reference_store)
    assert ref["counts/fc1"].sum() > 100 and len([k for k in ref if k.startswith("act/")]) >= 2
    _assert_same(_everything(path), ref)
    np.testing.assert_array_equal(rec.output_counts_t, ref["counts_t"])
    # compare and NWB export read it as one store
    from spikebridge.analysis.compare import load_comparison_inputs

    a, b = load_comparison_inputs(path), load_comparison_inputs(reference_store)
    np.testing.assert_array_equal(a.ann_outputs, b.ann_outputs)
    np.testing.assert_array_equal(a.record.predictions(), b.record.predictions())
    pytest.importorskip("pynwb")
    from spikebridge.export.nwb import export_nwb

    export_nwb(path, tmp_path / "s.nwb")
    export_nwb(reference_store, tmp_path / "r.nwb")
    import pynwb

    with pynwb.NWBHDF5IO(str(tmp_path / "s.nwb"), "r") as io1, pynwb.NWBHDF5IO(str(tmp_path / "r.nwb"), "r") as io2:
        u1, u2 = io1.read().units.to_dataframe(), io2.read().units.to_dataframe()
        assert len(u1) == len(u2) and sum(len(t) for t in u1["spike_times"]) > 100
        for t1, t2 in zip(u1["spike_times"], u2["spike_times"]):
            np.testing.assert_array_equal(t1, t2)


def test_resume_after_interrupted_sharded_run(fake_backend, tmp_path, reference_store, ann_net, monkeypatch):
    path = tmp_path / "s.h5"

    def stop_after_three(snn, x, config, start):
        for k, item in enumerate(fake_iter(snn, x, config, start)):
            if k == 3:
                raise KeyboardInterrupt
            yield item

    monkeypatch.setattr(stream, "_backend_iter", stop_after_three)
    with pytest.raises(KeyboardInterrupt):
        stream.simulate_to_store(ann_net, X, path, CFG, labels=Y, ann_activations=True, shards=True)
    with SpikeStore(path) as st:
        assert st.n_done == 3 * BS and st.sharded
    monkeypatch.setattr(stream, "_backend_iter", fake_iter)
    # the stored layout decides: resumed without asking for shards, it stays sharded
    stream.simulate_to_store(ann_net, X, path, CFG, labels=Y, resume=True, return_record=False)
    _assert_same(_everything(path), _everything(reference_store))


def _damage(p: Path) -> None:
    """Flip bytes in the middle of a shard's data (past its HDF5 metadata)."""
    with h5py.File(p, "r") as f:
        g = f["populations/fc1"]
        off = g["bits" if "bits" in g else "neuron"].id.get_chunk_info(0).byte_offset
    raw = bytearray(p.read_bytes())
    for k in range(off + 8, off + 40):
        raw[k] ^= 0x5A
    p.write_bytes(bytes(raw))


@pytest.mark.parametrize("harm", ["damage", "missing", "swap"])
def test_bad_shard_refused_then_resimulated_on_resume(fake_backend, tmp_path, reference_store, ann_net, harm):
    path = tmp_path / "s.h5"
    stream.simulate_to_store(ann_net, X, path, CFG, labels=Y, ann_activations=True, shards=True, return_record=False)
    folder = shard_folder(path)
    victim = folder / f"b{8:010d}-{12:010d}.h5"
    if harm == "damage":
        _damage(victim)
    elif harm == "missing":
        victim.unlink()
    else:  # another shard's (intact) file under this name: its checksum is not the indexed one
        victim.unlink()
        os.link(folder / f"b{12:010d}-{16:010d}.h5", victim)
    with pytest.raises(StoreFormatError) as err:
        SpikeStore(path)
    msg = str(err.value)
    assert "\n" not in msg and victim.name in msg and "only the first 8 of its 24 samples verify" in msg and "--resume" in msg
    starts = []

    def recording(snn, x, config, start):
        starts.append(start)
        return fake_iter(snn, x, config, start)

    stream._backend_iter = recording
    stream.simulate_to_store(ann_net, X, path, CFG, labels=Y, resume=True, return_record=False)
    assert starts == [8]  # re-simulated from the bad shard on
    _assert_same(_everything(path), _everything(reference_store))


def test_index_cannot_point_outside_the_shard_folder(fake_backend, tmp_path):
    path = tmp_path / "s.h5"
    stream.simulate_to_store(make_net(), X[:8], path, CFG, labels=Y[:8], shards=True, return_record=False)
    folder = shard_folder(path)
    outside = tmp_path / "elsewhere.h5"
    os.replace(folder / f"b{4:010d}-{8:010d}.h5", outside)
    # a symbolic link in the folder that leads out of it
    (folder / f"b{4:010d}-{8:010d}.h5").symlink_to(outside)
    with pytest.raises(StoreFormatError, match=r"resolves outside the shard folder"):
        SpikeStore(path)
    (folder / f"b{4:010d}-{8:010d}.h5").unlink()
    os.replace(outside, folder / f"b{4:010d}-{8:010d}.h5")
    with SpikeStore(path) as st:
        assert st.n_done == 8
    # names in the index that are paths, and a folder attribute that leaves the store's directory
    for bad in (b"../elsewhere.h5", b"/etc/passwd", b"sub/b0000000004-0000000008.h5"):
        with h5py.File(path, "r+") as f:
            f["shards/name"][1] = bad
        with pytest.raises(StoreFormatError, match="is not a shard file name") as err:
            SpikeStore(path)
        assert "\n" not in str(err.value)
    with h5py.File(path, "r+") as f:
        f["shards/name"][1] = f"b{4:010d}-{8:010d}.h5".encode()
        f["shards"].attrs["folder"] = np.bytes_("../x")
    with pytest.raises(StoreFormatError, match="is not a folder name next to the store"):
        SpikeStore(path)


def test_no_overwrite_of_the_shard_folder(fake_backend, tmp_path):
    path = tmp_path / "s.h5"
    folder = shard_folder(path)
    folder.mkdir()
    (folder / "notes.txt").write_text("mine")
    with pytest.raises(StoreExistsError, match="shard folder .* is not empty; pass --overwrite"):
        stream.simulate_to_store(make_net(), X[:8], path, CFG, shards=True)
    assert not path.exists()
    (folder / "notes.txt").unlink()
    stream.simulate_to_store(make_net(), X[:8], path, CFG, shards=True, return_record=False)
    (folder / "notes.txt").write_text("mine")
    with pytest.raises(StoreExistsError, match="already exists"):
        stream.simulate_to_store(make_net(), X[:8], path, CFG, shards=True)
    # --overwrite replaces our shard files but never the user's file beside them
    with pytest.raises(StoreExistsError, match="not empty"):
        stream.simulate_to_store(make_net(), X[:8], path, CFG, shards=True, overwrite=True)
    assert (folder / "notes.txt").read_text() == "mine"
    (folder / "notes.txt").unlink()
    stream.simulate_to_store(make_net(), X[:12], path, CFG, shards=True, overwrite=True, return_record=False)
    with SpikeStore(path) as st:
        assert st.n_done == 12 and len(os.listdir(folder)) == 3


def _n_done(path: Path) -> int:
    try:
        with SpikeStore(path, verify=False) as st:
            return st.n_done
    except (FileNotFoundError, OSError, ValueError, StoreFormatError):
        return -1


@pytest.mark.slow
def test_sigkilled_sharded_writer_resumes_identically(tmp_path, reference_store):
    """A real process writing shards, SIGKILLed mid-run; --resume completes it to the uninterrupted result."""
    path = tmp_path / "s.h5"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "SB_FAKE_SLEEP": "0.5", "SB_SHARDS": "1", "SB_ANN_NET": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "tests.store._worker", str(path), str(N), str(BS), "new"], cwd=ROOT, env=env)
    try:
        deadline = time.monotonic() + 60
        while _n_done(path) < 2 * BS:
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert 2 * BS <= _n_done(path) < N
    env["SB_FAKE_SLEEP"] = "0"
    subprocess.run([sys.executable, "-m", "tests.store._worker", str(path), str(N), str(BS), "resume"], cwd=ROOT, env=env, check=True)
    _assert_same(_everything(path), _everything(reference_store))
    assert not [p for p in os.listdir(shard_folder(path)) if p.endswith(".partial")]


def test_client_indexes_only_the_shard_described(tmp_path):
    """append_shard checks a worker's descriptor against the file: another checksum, a link out, a missing file."""
    from spikebridge.run._shard import write_shard
    from tests.store._fake import fake_iter

    folder = tmp_path / "s.h5.shards"
    folder.mkdir()
    (first, rec), (second, rec2) = list(fake_iter(make_net(), X[:8], CFG))[:2]
    desc = write_shard(folder, first, rec)
    desc2 = write_shard(folder, second, rec2)
    assert desc["name"] == f"b{0:010d}-{4:010d}.h5" and len(desc["sha256"]) == 64 and desc["bytes"] > 0
    with SpikeStore(tmp_path / "s.h5", "x") as st:
        st.write_header(n_steps=40, dt=1e-3)
        st.init_shards(folder.name)
        with pytest.raises(StoreFormatError, match="not the one indexed"):
            st.append_shard({**desc, "sha256": desc2["sha256"]})
        with pytest.raises(StoreFormatError, match="is missing"):
            st.append_shard({**desc, "name": f"b{0:010d}-{5:010d}.h5"})
        assert st.n_done == 0
        assert st.append_shard(desc) == 4 and st.append_shard(desc2) == 8
    # a shard whose /progress is an external link is refused before anything of it is read
    bad = folder / f"b{8:010d}-{12:010d}.h5"
    with h5py.File(bad, "w") as f:
        f["progress"] = h5py.ExternalLink(str(folder / desc["name"]), "/progress")
    with SpikeStore(tmp_path / "s.h5", "a") as st:
        with pytest.raises(StoreFormatError, match="missing or a link to elsewhere"):
            st.append_shard({**desc2, "name": bad.name, "first": 8, "stop": 12})
    with SpikeStore(tmp_path / "s.h5") as st:
        assert st.n_done == 8 and st.read_spikes("hidden").n_samples == 8
