"""Loaders of spikebridge.datasets: shipped digits, IDX files, npz/HDF5 arrays, CLI specs."""

from __future__ import annotations

import gzip
import hashlib
import struct

import h5py
import numpy as np
import pytest

from spikebridge.datasets import load_arrays, load_dataset, load_digits, load_idx
from spikebridge.errors import ModelFormatError, ValidationError

# sha256 of the shipped images and labels bytes, as printed by datasets/make_digits.py
DIGITS_SHA256 = "87ff0c9e40dc7e2c0e34e7257799c2e3f3aec1a016363bb11cad869ec428a826"
# samples per class in the whole set (scikit-learn's digits)
DIGITS_CLASS_COUNTS = [178, 182, 177, 183, 181, 182, 181, 179, 174, 180]


# ------------------------------------------------------------------------------------------- digits


def _raw_digits():
    from importlib import resources

    with resources.as_file(resources.files("spikebridge.datasets").joinpath("digits.npz")) as p:
        with np.load(p, allow_pickle=False) as d:
            return {k: d[k] for k in d.files}


def test_digits_shapes_and_sizes():
    for split, n in (("train", 1437), ("test", 360), ("all", 1797)):
        x, y = load_digits(split)
        assert x.shape == (n, 1, 8, 8) and x.dtype == np.float64
        assert y.shape == (n,) and y.dtype == np.int64
        xf, yf = load_digits(split, flatten=True)
        assert xf.shape == (n, 64)
        np.testing.assert_array_equal(xf, x.reshape(n, 64))
        np.testing.assert_array_equal(yf, y)


def test_digits_values_in_unit_range_and_raw_levels():
    x, _ = load_digits("all")
    assert x.min() == 0.0 and x.max() == 1.0
    raw, _ = load_digits("all", normalise=False)
    assert raw.max() == 16.0
    np.testing.assert_array_equal(raw, np.round(raw))
    np.testing.assert_allclose(raw / 16.0, x, rtol=0, atol=0)


def test_digits_file_is_the_documented_one():
    d = _raw_digits()
    assert d["images"].dtype == np.uint8 and d["images"].shape == (1797, 8, 8)
    assert d["labels"].dtype == np.uint8
    assert hashlib.sha256(d["images"].tobytes() + d["labels"].tobytes()).hexdigest() == DIGITS_SHA256
    assert np.bincount(d["labels"]).tolist() == DIGITS_CLASS_COUNTS
    assert int(d["split_seed"]) == 0


def test_digits_split_disjoint_complete_and_stratified():
    d = _raw_digits()
    train, test = d["train_idx"], d["test_idx"]
    assert np.intersect1d(train, test).size == 0
    np.testing.assert_array_equal(np.union1d(train, test), np.arange(1797))
    _, y_tr = load_digits("train")
    _, y_te = load_digits("test")
    np.testing.assert_array_equal(y_te, d["labels"][test])
    n_tr, n_te = np.bincount(y_tr, minlength=10), np.bincount(y_te, minlength=10)
    # stratified 80/20: every class is within one sample of its exact share of the test split
    assert np.all(np.abs(n_te - np.array(DIGITS_CLASS_COUNTS) * 360 / 1797) < 1.0)
    assert (n_tr + n_te).tolist() == DIGITS_CLASS_COUNTS


def test_digits_split_matches_all():
    x_all, y_all = load_digits("all")
    x_te, y_te = load_digits("test")
    idx = _raw_digits()["test_idx"]
    np.testing.assert_array_equal(x_te, x_all[idx])
    np.testing.assert_array_equal(y_te, y_all[idx])


def test_digits_bad_split():
    with pytest.raises(ValidationError, match=r"unknown digits split 'val'.*'train'"):
        load_digits("val")


# ---------------------------------------------------------------------------------------------- IDX


def _idx_bytes(arr: np.ndarray, magic: int) -> bytes:
    header = struct.pack(">I", magic) + b"".join(struct.pack(">I", s) for s in arr.shape)
    return header + arr.astype(np.uint8).tobytes()


@pytest.fixture
def idx_files(tmp_path, rng):
    images = rng.integers(0, 256, size=(5, 4, 3), dtype=np.uint8)
    labels = np.array([3, 0, 9, 1, 7], dtype=np.uint8)
    img_p, lab_p = tmp_path / "images-idx3-ubyte", tmp_path / "labels-idx1-ubyte"
    img_p.write_bytes(_idx_bytes(images, 2051))
    lab_p.write_bytes(_idx_bytes(labels, 2049))
    return images, labels, img_p, lab_p


def test_idx_round_trip(idx_files):
    images, labels, img_p, lab_p = idx_files
    x, y = load_idx(img_p, lab_p)
    assert x.shape == (5, 1, 4, 3) and x.dtype == np.float64
    np.testing.assert_array_equal(np.round(x[:, 0] * 255).astype(np.uint8), images)
    assert y.dtype == np.int64 and y.tolist() == [3, 0, 9, 1, 7]
    x_only, none = load_idx(img_p)
    assert none is None
    np.testing.assert_array_equal(x_only, x)


def test_idx_gzip_round_trip(idx_files, tmp_path):
    images, labels, img_p, lab_p = idx_files
    gz_img, gz_lab = tmp_path / "i.gz", tmp_path / "l.gz"
    gz_img.write_bytes(gzip.compress(img_p.read_bytes()))
    gz_lab.write_bytes(gzip.compress(lab_p.read_bytes()))
    x, y = load_idx(gz_img, gz_lab)
    np.testing.assert_array_equal(np.round(x[:, 0] * 255).astype(np.uint8), images)
    assert y.tolist() == labels.tolist()


def test_idx_bad_magic_names_expected_and_found(idx_files, tmp_path):
    _, _, img_p, lab_p = idx_files
    with pytest.raises(ModelFormatError, match=r"wrong magic number 2049 .*swapped.*expected 2051"):
        load_idx(lab_p)
    junk = tmp_path / "junk"
    junk.write_bytes(b"\x00\x00\x0d\x03" + bytes(20))
    with pytest.raises(ModelFormatError, match=r"wrong magic number 3331 .*expected 2051"):
        load_idx(junk)


def test_idx_truncated(idx_files, tmp_path):
    _, _, img_p, lab_p = idx_files
    short = tmp_path / "short"
    short.write_bytes(img_p.read_bytes()[:-1])
    with pytest.raises(ModelFormatError, match=r"truncated: header shape \(5, 4, 3\) needs 60 data bytes, found 59"):
        load_idx(short)
    head = tmp_path / "head"
    head.write_bytes(img_p.read_bytes()[:10])
    with pytest.raises(ModelFormatError, match=r"truncated: header needs 16 bytes, file has 10"):
        load_idx(head)
    tiny = tmp_path / "tiny"
    tiny.write_bytes(b"\x00\x00")
    with pytest.raises(ModelFormatError, match="truncated"):
        load_idx(tiny)
    long = tmp_path / "long"
    long.write_bytes(lab_p.read_bytes() + b"\x01")
    with pytest.raises(ModelFormatError, match=r"longer than its header says.*needs 5 data bytes, found 6"):
        load_idx(img_p, long)


def test_idx_corrupt_gzip(idx_files, tmp_path):
    _, _, img_p, _ = idx_files
    data = gzip.compress(img_p.read_bytes())
    bad = tmp_path / "bad.gz"
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelFormatError, match="gzip"):
        load_idx(bad)


def test_idx_count_mismatch(idx_files, tmp_path):
    _, labels, img_p, _ = idx_files
    lab4 = tmp_path / "l4"
    lab4.write_bytes(_idx_bytes(labels[:4], 2049))
    with pytest.raises(ValidationError, match=r"holds 5 images but .* holds 4 labels; expected the same count"):
        load_idx(img_p, lab4)


def test_idx_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_idx(tmp_path / "nope")


# ------------------------------------------------------------------------------------------- arrays


@pytest.mark.parametrize(("xk", "yk"), [("x", "y"), ("X", "labels"), ("images", "targets"), ("data", "target")])
def test_npz_key_guessing(tmp_path, rng, xk, yk):
    x = rng.random((6, 2, 3))
    y = np.arange(6) % 3
    p = tmp_path / "a.npz"
    np.savez(p, **{xk: x, yk: y, "other": np.zeros(2)})
    gx, gy = load_arrays(p)
    np.testing.assert_array_equal(gx, x)
    assert gy.dtype == np.int64 and gy.tolist() == y.tolist()


def test_npz_explicit_keys_and_missing_labels(tmp_path, rng):
    p = tmp_path / "b.npz"
    a, b = rng.random((4, 3)), rng.random((4, 3))
    np.savez(p, first=a, second=b, cls=np.array([1, 2, 3, 4]))
    gx, gy = load_arrays(p, x_key="second", y_key="cls")
    np.testing.assert_array_equal(gx, b)
    assert gy.tolist() == [1, 2, 3, 4]
    gx, gy = load_arrays(p, x_key="first")
    np.testing.assert_array_equal(gx, a)
    assert gy is None


def test_npz_errors_list_available_keys(tmp_path):
    p = tmp_path / "c.npz"
    np.savez(p, foo=np.zeros((2, 2)), bar=np.zeros(2))
    with pytest.raises(ValidationError, match=r"cannot tell which array holds the inputs; available keys: foo, bar"):
        load_arrays(p)
    with pytest.raises(ValidationError, match=r"no array 'baz' for y; available keys: foo, bar"):
        load_arrays(p, x_key="foo", y_key="baz")


def test_npz_count_mismatch_and_bad_labels(tmp_path):
    p = tmp_path / "d.npz"
    np.savez(p, x=np.zeros((3, 2)), y=np.array([0, 1]))
    with pytest.raises(ValidationError, match=r"3 inputs in 'x' but 2 labels in 'y'"):
        load_arrays(p)
    q = tmp_path / "e.npz"
    np.savez(q, x=np.zeros((2, 2)), y=np.array([0.5, 1.0]))
    with pytest.raises(ValidationError, match="not integer class indices"):
        load_arrays(q)
    r = tmp_path / "f.npz"
    np.savez(r, x=np.zeros((2, 2)), y=np.array([0.0, 1.0]))
    assert load_arrays(r)[1].tolist() == [0, 1]


def test_npz_refuses_pickles(tmp_path):
    p = tmp_path / "g.npz"
    np.savez(p, x=np.array([{"a": 1}], dtype=object))
    with pytest.raises(ModelFormatError, match="without pickles"):
        load_arrays(p)


def test_single_npy_array_is_refused(tmp_path):
    p = tmp_path / "h.npz"
    with open(p, "wb") as fh:
        np.save(fh, np.zeros(3))
    with pytest.raises(ValidationError, match="single array"):
        load_arrays(p)


def test_h5_arrays_nested_and_guessed(tmp_path, rng):
    p = tmp_path / "a.h5"
    x = rng.random((5, 1, 2, 2))
    with h5py.File(p, "w") as f:
        f["images"] = x
        f["labels"] = np.array([4, 3, 2, 1, 0], dtype=np.uint8)
        grp = f.create_group("extra")
        grp["inputs"] = x[:2]
        grp["cls"] = np.array([1, 1])
    gx, gy = load_arrays(p)
    np.testing.assert_array_equal(gx, x)
    assert gy.tolist() == [4, 3, 2, 1, 0]
    gx, gy = load_arrays(p, x_key="extra/inputs", y_key="extra/cls")
    np.testing.assert_array_equal(gx, x[:2])
    assert gy.tolist() == [1, 1]
    # the guessed top-level labels do not fit the nested inputs, and the message says so
    with pytest.raises(ValidationError, match=r"2 inputs in 'extra/inputs' but 5 labels in 'labels'"):
        load_arrays(p, x_key="extra/inputs")


def test_h5_errors(tmp_path):
    p = tmp_path / "b.hdf5"
    with h5py.File(p, "w") as f:
        f["weights"] = np.zeros((2, 2))
    with pytest.raises(ValidationError, match="available keys: weights"):
        load_arrays(p)
    bad = tmp_path / "bad.h5"
    bad.write_bytes(b"not an hdf5 file at all")
    with pytest.raises(ModelFormatError, match="not a readable HDF5 file"):
        load_arrays(bad)
    with pytest.raises(FileNotFoundError):
        load_arrays(tmp_path / "missing.h5")


# --------------------------------------------------------------------------------------------- specs


def test_load_dataset_specs(tmp_path, idx_files):
    x, y = load_dataset("digits")
    assert x.shape == (360, 1, 8, 8)
    x, y = load_dataset("digits:train")
    assert x.shape == (1437, 1, 8, 8) and y.shape == (1437,)
    with pytest.raises(ValidationError, match="unknown digits split"):
        load_dataset("digits:nope")

    images, labels, img_p, lab_p = idx_files
    x, y = load_dataset(f"idx:{img_p},{lab_p}")
    assert x.shape == (5, 1, 4, 3) and y.tolist() == labels.tolist()
    x, y = load_dataset(f"idx:{img_p}")
    assert y is None

    p = tmp_path / "arr.npz"
    np.savez(p, a=np.ones((2, 3)), b=np.array([1, 0]), x=np.zeros((2, 3)))
    x, y = load_dataset(str(p))
    assert x.sum() == 0 and y is None
    x, y = load_dataset(f"{p}:a,b")
    assert x.sum() == 6 and y.tolist() == [1, 0]
    x, y = load_dataset(p)  # a Path works too
    assert x.shape == (2, 3)


def test_load_dataset_unknown_spec():
    with pytest.raises(ValidationError, match=r"unknown dataset spec 'cifar10'; expected 'digits'.*'mnist"):
        load_dataset("cifar10")
    with pytest.raises(ValidationError, match="expected 'idx:IMAGES'"):
        load_dataset("idx:")
