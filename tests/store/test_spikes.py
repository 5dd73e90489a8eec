"""SpikeStore: round trips, layout readable by plain h5py, refusals and clear errors."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import h5py
import numpy as np
import pytest

from spikebridge.errors import SpikebridgeError, StoreFormatError, StoreLockedError, ValidationError
from spikebridge.store.record import SpikeRecord, SpikeTrains, concat_records
from spikebridge.store.spikes import FORMAT, SpikeStore, StoreExistsError
from spikebridge.store._hdf5lock import lookup3


def make_record(n_samples, n_steps=10, sizes=(("a", 3), ("b", 5)), n_spikes=None, rng=None, n_out=2, labels=True):
    """A batch with random spikes (``n_spikes`` per population: an int or a dict)."""
    rng = rng or np.random.default_rng(0)
    spikes, counts = {}, {}
    for name, n in sizes:
        k = n_spikes.get(name, 0) if isinstance(n_spikes, dict) else (n_spikes if n_spikes is not None else 20)
        sample = rng.integers(0, n_samples, k)
        neuron = rng.integers(0, n, k)
        step = rng.integers(0, n_steps, k)
        st = SpikeTrains(n_neurons=n, n_samples=n_samples, dt=1e-3, sample=sample, neuron=neuron, step=step)
        spikes[name] = st
        counts[name] = st.counts()
    out = rng.integers(0, 3, (n_samples, n_steps, n_out)).cumsum(axis=1).astype(np.int32)
    pot = rng.uniform(0, 1, (n_samples, n_steps, n_out)).astype(np.float32)
    return SpikeRecord(
        n_samples=n_samples, n_steps=n_steps, dt=1e-3, output_counts_t=out, output_potential_t=pot,
        counts=counts, spikes=spikes, readout={"mode": "count", "task": "classification"},
        labels=rng.integers(0, n_out, n_samples) if labels else None,
    )


def assert_trains_equal(a: SpikeTrains, b: SpikeTrains) -> None:
    assert (a.n_neurons, a.n_samples, a.dt) == (b.n_neurons, b.n_samples, b.dt)
    for key in ("sample", "neuron", "step"):
        np.testing.assert_array_equal(getattr(a, key), getattr(b, key))


@pytest.mark.parametrize("n_spikes", [0, 1, 200_000], ids=["empty", "single", "large"])
def test_round_trip_empty_single_and_large_trains(tmp_h5, n_spikes):
    rec = make_record(4, n_steps=50, n_spikes=n_spikes, rng=np.random.default_rng(3))
    with SpikeStore(tmp_h5, "w") as st:
        assert st.append_batch(0, rec) == 4
    with SpikeStore(tmp_h5) as st:
        assert sorted(st) == ["a", "b"] and len(st) == 2 and st.n_done == 4
        for name in ("a", "b"):
            assert_trains_equal(st[name], rec.spikes[name])
            np.testing.assert_array_equal(st.counts(name), rec.counts[name])
            assert st[name].n_spikes == n_spikes
        back = st.to_record()
    np.testing.assert_array_equal(back.output_counts_t, rec.output_counts_t)
    np.testing.assert_array_equal(back.output_potential_t, rec.output_potential_t)
    np.testing.assert_array_equal(back.labels, rec.labels)


def test_batches_append_and_read_like_one_record(tmp_h5):
    rng = np.random.default_rng(5)
    batches = [make_record(n, rng=rng, n_spikes={"a": 7 * n, "b": 0}) for n in (3, 1, 4)]
    ann = [rng.normal(size=(b.n_samples, 2)) for b in batches]
    acts = [{"relu1": rng.normal(size=(b.n_samples, 2, 3))} for b in batches]
    with SpikeStore(tmp_h5, "w") as st:
        first = 0
        for b, o, a in zip(batches, ann, acts):
            st.append_batch(first, b, ann_outputs=o, activations=a)
            first += b.n_samples
    whole = concat_records(batches)
    with SpikeStore(tmp_h5) as st:
        assert st.n_done == 8
        assert_trains_equal(st["a"], whole.spikes["a"])
        part = st.read_spikes("a", 3, 4)  # the single-sample middle batch, renumbered from 0
        assert_trains_equal(part, batches[1].spikes["a"])
        np.testing.assert_allclose(st.ann_outputs, np.concatenate(ann))
        np.testing.assert_allclose(st.ann_activations()["relu1"], np.concatenate([a["relu1"] for a in acts]), rtol=1e-6)
        rec = st.to_record()
    np.testing.assert_array_equal(rec.counts["b"], whole.counts["b"])
    np.testing.assert_array_equal(rec.labels, whole.labels)


def test_layout_is_plain_h5py_with_ragged_index(tmp_h5):
    rec = make_record(3, n_spikes={"a": 5, "b": 2}, rng=np.random.default_rng(1))
    with SpikeStore(tmp_h5, "w", spike_encoding="events", compression="gzip") as st:
        st.write_header(n_steps=10, dt=1e-3, n_samples=3, seed=11, simulation={"n_steps": 10}, network_sha256="ab" * 32)
        st.append_batch(0, rec)
    with h5py.File(tmp_h5, "r") as f:
        assert f.attrs["format"] == FORMAT.encode() and f.attrs["format_version"] == 2  # fixed-length: bytes
        assert f.attrs["seed"] == 11 and f.attrs["n_samples"] == 3 and f["progress"].attrs["n_done"] == 3
        g = f["populations/a"]
        assert g["neuron"].dtype == np.int32 and g["step"].dtype == np.int32 and g["index"].dtype == np.int64
        assert g["neuron"].compression == "gzip" and g["neuron"].maxshape == (None,)
        index = g["index"][()]
        st = rec.spikes["a"]
        # exclusive end per sample: sample k's spikes are neuron[index[k-1]:index[k]]
        np.testing.assert_array_equal(index, np.cumsum(np.bincount(st.sample, minlength=3)))
        k = 1
        lo, hi = (index[k - 1], index[k])
        np.testing.assert_array_equal(g["step"][lo:hi], st.step[st.sample == k])
        assert f["counts/b"].shape == (3, 5) and f["output/counts_t"].shape == (3, 10, 2)


def test_missing_population_is_keyerror_naming_what_exists(tmp_h5):
    with SpikeStore(tmp_h5, "w") as st:
        st.append_batch(0, make_record(1))
    with SpikeStore(tmp_h5) as st, pytest.raises(KeyError, match=r"'nope'.*recorded: \['a', 'b'\]"):
        st["nope"]


def test_overwrite_refused_unless_asked(tmp_h5):
    with SpikeStore(tmp_h5, "w") as st:
        st.append_batch(0, make_record(2))
    for mode in ("w", "x"):
        with pytest.raises(StoreExistsError, match="--overwrite") as info:
            SpikeStore(tmp_h5, mode)
        assert isinstance(info.value, FileExistsError) and isinstance(info.value, SpikebridgeError)
    with SpikeStore(tmp_h5, "w", overwrite=True) as st:
        assert st.n_done == 0
    with SpikeStore(tmp_h5) as st:
        assert st.n_done == 0 and len(st) == 0


def test_out_of_order_batch_is_refused(tmp_h5):
    with SpikeStore(tmp_h5, "w") as st:
        st.append_batch(0, make_record(2))
        with pytest.raises(ValidationError, match="starts at sample 5 but the store holds 2"):
            st.append_batch(5, make_record(2))


def test_truncated_file_is_store_format_error(tmp_h5):
    with SpikeStore(tmp_h5, "w") as st:
        st.append_batch(0, make_record(4, n_spikes=5000))
    data = tmp_h5.read_bytes()
    tmp_h5.write_bytes(data[: len(data) // 3])
    with pytest.raises(StoreFormatError, match="truncated or not HDF5"):
        SpikeStore(tmp_h5)
    tmp_h5.write_bytes(b"not an hdf5 file at all")
    with pytest.raises(StoreFormatError, match="not a readable HDF5 file"):
        SpikeStore(tmp_h5)


def test_foreign_and_newer_files_say_what_was_found(tmp_h5):
    with h5py.File(tmp_h5, "w") as f:
        f.attrs["format"] = "spikebridge.snn"
    with pytest.raises(StoreFormatError, match="found format 'spikebridge.snn'"):
        SpikeStore(tmp_h5)
    with h5py.File(tmp_h5, "w") as f:
        f.create_dataset("x", data=[1])
    with pytest.raises(StoreFormatError, match="found no 'format' attribute"):
        SpikeStore(tmp_h5, "a")
    with h5py.File(tmp_h5, "w") as f:
        f.attrs["format"] = FORMAT
        f.attrs["format_version"] = 7
    with pytest.raises(StoreFormatError, match="format_version 7.*upgrade spikebridge"):
        SpikeStore(tmp_h5)


def test_two_handles_in_one_process_cannot_both_write(tmp_h5):
    with SpikeStore(tmp_h5, "w") as st:
        st.append_batch(0, make_record(1))
        with pytest.raises(StoreLockedError, match="being written by another process or handle"):
            SpikeStore(tmp_h5, "a")
        with pytest.raises(StoreLockedError):
            SpikeStore(tmp_h5, "w", overwrite=True)
        # a reader is fine while the writer works, and sees the finished batch
        with SpikeStore(tmp_h5) as reader:
            assert reader.n_done == 1
        st.append_batch(1, make_record(1))
    with SpikeStore(tmp_h5, "a") as st:  # the lock went away with the writer
        assert st.n_done == 2


def test_second_writer_process_gets_a_clear_error(tmp_h5):
    code = textwrap.dedent(
        f"""
        import sys
        from spikebridge.errors import StoreLockedError
        from spikebridge.store.spikes import SpikeStore
        try:
            SpikeStore({str(tmp_h5)!r}, "a")
        except StoreLockedError as err:
            print("LOCKED", err)
            sys.exit(0)
        sys.exit(3)
        """
    )
    with SpikeStore(tmp_h5, "w") as st:
        st.append_batch(0, make_record(2))
        res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
        assert res.returncode == 0, res.stderr
        assert "LOCKED" in res.stdout and "--resume" in res.stdout
        # a plain-h5py writer is kept out too instead of corrupting the file
        plain = subprocess.run(
            [sys.executable, "-c", f"import h5py; h5py.File({str(tmp_h5)!r}, 'a')"], capture_output=True, text=True, timeout=60
        )
        assert plain.returncode != 0 and "lock" in plain.stderr.lower()
        st.append_batch(2, make_record(1))
    with SpikeStore(tmp_h5) as st:
        assert st.n_done == 3


def test_read_only_store_refuses_writes(tmp_h5):
    with SpikeStore(tmp_h5, "w") as st:
        st.append_batch(0, make_record(1))
    with SpikeStore(tmp_h5) as st, pytest.raises(ValidationError, match="read-only"):
        st.append_batch(1, make_record(1))


def test_lookup3_matches_hdf5_superblock_checksum(tmp_h5):
    with SpikeStore(tmp_h5, "w") as st:
        st.append_batch(0, make_record(1))
    head = tmp_h5.read_bytes()[:64]
    n_off = head[9]
    body = 12 + 4 * n_off
    assert head[8] in (2, 3)
    assert lookup3(head[:body]) == int.from_bytes(head[body : body + 4], "little")


def test_store_of_a_writer_killed_before_swmr_reads_back(tmp_h5):
    """A writer SIGKILLed with the file open for plain (non-SWMR) writing leaves stale flags; reading clears them."""
    rec = make_record(3)
    with SpikeStore(tmp_h5, "w") as st:
        st.append_batch(0, rec)
    code = f"import h5py, os, signal; f = h5py.File({str(tmp_h5)!r}, 'a', libver='latest'); os.kill(os.getpid(), signal.SIGKILL)"
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert res.returncode == -9
    with SpikeStore(tmp_h5) as st:
        assert st.n_done == 3
        np.testing.assert_array_equal(st.to_record().counts["a"], rec.counts["a"])


def dense_record(n_samples, n_steps=6, n=13, p=0.3, seed=0):
    """A batch whose population ``d`` fires a share ``p`` of its slots (a raster), ``s`` a few spikes (events)."""
    rng = np.random.default_rng(seed)
    raster = rng.random((n_samples, n_steps, n)) < p
    s, t, k = np.nonzero(raster)  # (sample, step, neuron) order
    rec = make_record(n_samples, n_steps=n_steps, sizes=(("s", 40),), n_spikes=2, rng=rng)
    rec.spikes["d"] = SpikeTrains(n_neurons=n, n_samples=n_samples, dt=1e-3, sample=s, neuron=k, step=t)
    rec.counts["d"] = raster.sum(axis=1)
    return rec, raster


def test_packed_trains_decode_lazily_to_the_same_spikes():
    from spikebridge.store.record import pack_spikes

    rec, raster = dense_record(5)
    st = rec.spikes["d"]
    bits = pack_spikes(st, 6)
    np.testing.assert_array_equal(bits, np.packbits(raster, axis=-1))
    lazy = SpikeTrains.from_packed(bits, 13, 1e-3)
    assert lazy.packed is bits and "sample" not in lazy.__dict__
    assert lazy.n_spikes == int(raster.sum()) == st.n_spikes and "sample" not in lazy.__dict__
    np.testing.assert_array_equal(lazy.counts(), raster.sum(axis=1))  # from the raster, still undecoded
    import pickle

    sent = pickle.loads(pickle.dumps(SpikeTrains.from_packed(bits, 13, 1e-3)))  # to a worker and back: still lazy
    assert sent.packed is not None and "sample" not in sent.__dict__
    assert_trains_equal(sent, st)
    assert_trains_equal(lazy, st)  # decoded on first access
    joined = concat_records([make_record(2, n_steps=6, sizes=()), make_record(3, n_steps=6, sizes=())])
    assert joined.n_samples == 5
    a, b = SpikeTrains.from_packed(bits[:2], 13, 1e-3), SpikeTrains.from_packed(bits[2:], 13, 1e-3)
    r1, r2 = make_record(2, n_steps=6, sizes=()), make_record(3, n_steps=6, sizes=())
    r1.spikes["d"], r2.spikes["d"] = a, b
    both = concat_records([r1, r2]).spikes["d"]
    assert both.packed is not None and "sample" not in both.__dict__  # joined undecoded
    assert_trains_equal(both, st)
    with pytest.raises(ValidationError, match="bits set past neuron 12"):
        SpikeTrains.from_packed(np.full((1, 1, 2), 255, np.uint8), 13, 1e-3)
    with pytest.raises(ValidationError, match="expected \\(n_samples, n_steps, 2\\)"):
        SpikeTrains.from_packed(np.zeros((1, 1, 3), np.uint8), 13, 1e-3)
    twice = SpikeTrains(n_neurons=3, n_samples=1, dt=1e-3, sample=[0, 0], neuron=[1, 1], step=[2, 2])
    with pytest.raises(ValidationError, match="occurs twice"):
        pack_spikes(twice, 4)


@pytest.mark.parametrize("compression", ["auto", "lzf", "gzip", "none"])
def test_dense_population_is_stored_as_a_raster_and_reads_back_identically(tmp_h5, compression):
    rec1, r1 = dense_record(4, seed=1)
    rec2, r2 = dense_record(3, seed=2)
    with SpikeStore(tmp_h5, "w", compression=compression) as st:
        st.append_batch(0, rec1)
        st.append_batch(4, rec2)
    with h5py.File(tmp_h5, "r") as f:
        assert f.attrs["format_version"] == 2
        bits = f["populations/d/bits"]
        assert bits.dtype == np.uint8 and bits.shape == (7, 6, 2)  # ceil(13 / 8) bytes per step
        assert bits.compression == {"auto": None, "lzf": "lzf", "gzip": "gzip", "none": None}[compression]
        assert f["counts/d"].compression == {"auto": "lzf", "none": None}.get(compression, compression)
        np.testing.assert_array_equal(np.unpackbits(bits[()], axis=-1, count=13).astype(bool), np.concatenate([r1, r2]))
        assert "neuron" in f["populations/s"] and "bits" not in f["populations/s"]  # sparse: events
    whole = concat_records([rec1, rec2])
    with SpikeStore(tmp_h5) as st:
        for name in ("d", "s"):
            assert_trains_equal(st[name], whole.spikes[name])
        w = whole.spikes["d"]
        keep = (w.sample >= 2) & (w.sample < 6)
        part = SpikeTrains(n_neurons=13, n_samples=4, dt=1e-3, sample=w.sample[keep] - 2, neuron=w.neuron[keep], step=w.step[keep])
        assert_trains_equal(st.read_spikes("d", 2, 6), part)  # across the two batches
    # a flipped bit in a counted batch is a checksum mismatch, and "a" cuts back to the first batch
    with h5py.File(tmp_h5, "r+") as f:
        f["populations/d/bits"][5, 0, 0] ^= 1
    with pytest.raises(StoreFormatError, match="samples 4-6 do not match their checksum; only the first 4"):
        SpikeStore(tmp_h5)
    with SpikeStore(tmp_h5, "a") as st:
        assert st.n_done == 4
        assert st.append_batch(4, rec2) == 7
    with SpikeStore(tmp_h5) as st:
        assert_trains_equal(st["d"], whole.spikes["d"])


def test_version_1_store_is_read_and_continued_as_events(tmp_h5):
    """A store begun by an older spikebridge (format version 1) keeps the events layout its readers know."""
    rec1, _ = dense_record(4, seed=1)
    rec2, _ = dense_record(3, seed=2)
    with SpikeStore(tmp_h5, "w") as st:
        st.write_header(n_steps=6, dt=1e-3, n_samples=7)
    with h5py.File(tmp_h5, "r+") as f:
        f.attrs["format_version"] = 1
    with SpikeStore(tmp_h5, "a") as st:
        st.append_batch(0, rec1)
    with SpikeStore(tmp_h5, "a") as st:
        st.append_batch(4, rec2)
    with h5py.File(tmp_h5, "r") as f:
        assert f.attrs["format_version"] == 1 and "neuron" in f["populations/d"] and "bits" not in f["populations/d"]
    with SpikeStore(tmp_h5) as st:
        assert_trains_equal(st["d"], concat_records([rec1, rec2]).spikes["d"])


def test_spike_encoding_and_compression_are_checked(tmp_h5):
    with pytest.raises(ValidationError, match="compression 'zstd' is not one of"):
        SpikeStore(tmp_h5, "w", compression="zstd")
    with pytest.raises(ValidationError, match="spike_encoding 'raster'"):
        SpikeStore(tmp_h5, "w", spike_encoding="raster")
    rec, _ = dense_record(2)
    with SpikeStore(tmp_h5, "w", spike_encoding="events") as st:
        st.append_batch(0, rec)
    with h5py.File(tmp_h5, "r") as f:
        assert "bits" not in f["populations/d"]
    with SpikeStore(tmp_h5, "w", overwrite=True, spike_encoding="bits") as st:
        st.append_batch(0, rec)
    with h5py.File(tmp_h5, "r") as f:
        assert "bits" in f["populations/d"] and "bits" in f["populations/s"]
    with SpikeStore(tmp_h5) as st:
        assert_trains_equal(st["s"], rec.spikes["s"])


def simulated_record(n_samples, n_steps, seed=0):
    """A batch like a simulation's: every neuron spikes at most once per step, so no count exceeds ``n_steps``."""
    rec, raster = dense_record(n_samples, n_steps=n_steps, seed=seed)
    rec.output_counts_t = raster[:, :, :2].cumsum(axis=1).astype(np.int32)
    for name in ("s",):
        st = rec.spikes[name]
        keep = np.unique(np.stack([st.sample, st.step, st.neuron]), axis=1)  # (sample, step, neuron) order, once each
        rec.spikes[name] = SpikeTrains(n_neurons=st.n_neurons, n_samples=n_samples, dt=1e-3, sample=keep[0], neuron=keep[2], step=keep[1])
        rec.counts[name] = rec.spikes[name].counts()
    return rec


@pytest.mark.parametrize(("n_steps", "dtype"), [(6, np.uint8), (255, np.uint8), (256, np.uint16)])
def test_counts_are_stored_in_the_smallest_type_that_holds_n_steps(tmp_h5, n_steps, dtype):
    """A count is at most n_steps: uint8 up to 255 steps (a quarter of int32's bytes), read back as int64/int32."""
    rec1, rec2 = simulated_record(4, n_steps, seed=1), simulated_record(3, n_steps, seed=2)
    rec1.counts["d"][0, 0] = n_steps  # the extreme: a neuron firing at every step
    rec2.counts["s"] = rec2.counts["s"].astype(np.uint16)  # as the tensor engine hands them over
    with SpikeStore(tmp_h5, "w") as st:
        st.append_batch(0, rec1)
        st.append_batch(4, rec2)
    with h5py.File(tmp_h5, "r") as f:
        for key in ("counts/d", "counts/s", "output/counts_t"):
            assert f[key].dtype == dtype, key
            assert f[key].shuffle == (dtype != np.uint8)  # shuffling one-byte items would only copy them
    whole = concat_records([rec1, rec2])
    with SpikeStore(tmp_h5) as st:
        for name in ("d", "s"):
            counts = st.counts(name)
            assert counts.dtype == np.int64
            np.testing.assert_array_equal(counts, whole.counts[name])
        assert st.counts("d")[0, 0] == n_steps
        back = st.to_record()
        assert back.counts.raw("d").dtype == dtype  # kept as stored until read
        np.testing.assert_array_equal(back.counts["d"], whole.counts["d"])
        assert back.counts["d"].dtype == np.int64 and back.counts.raw("d") is back.counts["d"]
        assert back.output_counts_t.dtype == np.int32 and st.output_record(2, 6).output_counts_t.dtype == np.int32
        np.testing.assert_array_equal(back.output_counts_t, whole.output_counts_t)


def test_counts_are_widened_to_int64_when_read_and_joined_as_kept():
    """Counts keep an engine's narrow type until read; a read gives int64 and replaces the narrow array (edits are kept)."""
    from spikebridge.store.record import Counts

    a = np.array([[3, 0, 65535]], dtype=np.uint16)
    rec = SpikeRecord(n_samples=1, n_steps=2, dt=1e-3, output_counts_t=np.zeros((1, 2, 1), np.int32),
                      output_potential_t=np.zeros((1, 2, 1), np.float32), counts={"a": a, "b": np.array([[1, 2]], np.uint8)})
    assert isinstance(rec.counts, Counts) and "a" in rec.counts and "c" not in rec.counts
    assert rec.counts.raw("a") is a  # asking for a name widened nothing
    joined = concat_records([rec, rec])
    assert joined.counts.raw("a").dtype == np.uint16 and joined.counts.raw("b").dtype == np.uint8  # joined unwidened
    got = joined.counts["a"]
    assert got.dtype == np.int64 and got.tolist() == [[3, 0, 65535]] * 2
    assert joined.counts.raw("a") is got and joined.counts["a"] is got
    got[0, 0] = 70000  # beyond uint16: kept, the int64 array is what the record holds now
    mixed = concat_records([joined, rec])
    assert mixed.counts.raw("a").dtype == np.int64 and mixed.counts["a"][:, 0].tolist() == [70000, 3, 3]
    assert rec.counts.raw("a") is a  # joining read nothing
    assert sorted(dict(rec.counts)) == ["a", "b"] and len(rec.counts) == 2
    with pytest.raises(ValidationError, match="the counts of 'c' must be integers, got float64"):
        rec.counts["c"] = np.zeros((1, 2))
    del rec.counts["b"]
    assert list(rec.counts) == ["a"]


def test_counts_above_n_steps_keep_int32_and_a_later_overflow_is_refused(tmp_h5):
    """Hand-made trains may repeat a spike: a first batch counting more than n_steps keeps int32 counts;
    a batch that does not fit the type its store chose is refused before anything counts, and the store stays whole."""
    rec = make_record(4, n_steps=5, n_spikes=400, rng=np.random.default_rng(2))  # 400 spikes on 4 x 3 neurons: repeats
    assert rec.counts["a"].max() > 5
    with SpikeStore(tmp_h5, "w") as st:
        st.append_batch(0, rec)
    with h5py.File(tmp_h5, "r") as f:
        assert f["counts/a"].dtype == np.int32 and f["output/counts_t"].dtype == np.int32
    with SpikeStore(tmp_h5) as st:
        np.testing.assert_array_equal(st.counts("a"), rec.counts["a"])

    path = tmp_h5.with_name("later.h5")
    rec1, rec2 = simulated_record(4, 6, seed=1), simulated_record(3, 6, seed=2)
    rec2.counts["d"][1, 2] = 256  # wraps to 0 in uint8 if cast unchecked
    with SpikeStore(path, "w") as st:
        st.append_batch(0, rec1)
        with pytest.raises(ValidationError, match=r"spike counts of 'd' range 0\.\.256, outside the store's uint8 \(0\.\.255\)"):
            st.append_batch(4, rec2)
        rec2.counts["d"][1, 2] = -1  # read as unsigned by the one-pass check: refused too
        with pytest.raises(ValidationError, match=r"spike counts of 'd' range -1\.\."):
            st.append_batch(4, rec2)
    with SpikeStore(path) as st:
        assert st.n_done == 4
        np.testing.assert_array_equal(st.counts("d"), rec1.counts["d"])


@pytest.mark.parametrize("compression", ["auto", "none"])
def test_space_bound_covers_what_unfiltered_chunks_take(tmp_path, compression):
    """HDF5 allocates an unfiltered chunk whole: the free-space bound must count it (a full tmpfs crashed HDF5)."""
    from spikebridge.store.spikes import SPACE_FACTOR, SPACE_RESERVE, batch_bytes_bound

    rec1, _ = dense_record(5, n_steps=40, n=300, seed=1)
    rec2, _ = dense_record(5, n_steps=40, n=300, seed=2)
    path = tmp_path / "s.h5"
    with SpikeStore(path, "w", compression=compression) as st:
        st.write_header(n_steps=40, dt=1e-3)
        before = path.stat().st_size
        bound = batch_bytes_bound(rec1, compression=compression)
        st.append_batch(0, rec1)
        grew = path.stat().st_size - before
        assert grew <= bound * SPACE_FACTOR + SPACE_RESERVE, (grew, bound)  # what ensure_space and the reserve ask for
        with h5py.File(path, "r", locking=False, swmr=True) as f:
            bits = f["populations/d/bits"]
            assert bits.chunks[0] <= 5 if bits.compression is None else True  # chunks fit the first batch
        before = path.stat().st_size
        bound = batch_bytes_bound(rec2, file=st.file, start=5)
        st.append_batch(5, rec2)
        assert path.stat().st_size - before <= bound * SPACE_FACTOR + SPACE_RESERVE
    with SpikeStore(path) as st:
        assert st.n_done == 10


def test_batch_digest_is_sha256_of_names_and_bytes():
    # the format's checksum (stores written by earlier versions verify with it): per dataset, in
    # name order, the name, a NUL and the C-order bytes of its rows, whatever the array's layout
    import hashlib

    from spikebridge.store.spikes import _digest

    items = [
        ("c", np.ones((2, 3, 5), dtype=np.uint8)[:, :, ::2]),  # strided
        ("a", np.arange(12, dtype=np.int32).reshape(3, 4)),
        ("b", np.zeros((2, 0), dtype=np.float32)),  # empty
        ("d", np.array([[True, False]])),
    ]
    h = hashlib.sha256()
    for name, arr in sorted(items, key=lambda t: t[0]):
        h.update(name.encode() + b"\0" + np.ascontiguousarray(arr).tobytes())
    assert _digest(items).tobytes() == h.digest()
