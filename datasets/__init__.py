"""Shipped digits data and loaders for input arrays (installed as ``spikebridge.datasets``).

Only numpy, h5py (for ``.h5`` arrays) and :mod:`importlib.resources` are used,
so loading data never imports scikit-learn or a deep-learning framework.

- :func:`load_digits`: the 1,797 8x8 handwritten digits shipped in ``digits.npz``,
  with a fixed, stratified 1,437 / 360 train/test split (see ``DIGITS_LICENSE.md``).
- :func:`load_idx`: MNIST-style IDX files (optionally gzipped).
- :func:`load_arrays`: ``x``/``y`` arrays from ``.npz`` or HDF5 files.
- :func:`load_mnist` / :func:`load_fashion_mnist`: the 28x28 sets from local IDX files;
  :func:`fetch_mnist` / :func:`fetch_fashion_mnist` download them into a checksummed cache
  (``$SPIKEBRIDGE_DATA``); see :mod:`spikebridge.datasets.mnist`.
- :func:`load_dataset`: resolve a command-line dataset spec to ``(x, y)``.
"""

from __future__ import annotations

import gzip
import os
from collections.abc import Iterator, Mapping
import zipfile
import zlib
from importlib import resources
from pathlib import Path
from typing import Any, cast

import numpy as np
from numpy.typing import NDArray

from spikebridge.errors import ModelFormatError, ValidationError

from .mnist import (
    IDX_SETS,
    data_home,
    fetch_fashion_mnist,
    fetch_mnist,
    load_fashion_mnist,
    load_idx_set,
    load_mnist,
)

__all__ = [
    "load_digits",
    "load_idx",
    "load_arrays",
    "load_dataset",
    "DIGITS_SPLITS",
    "load_mnist",
    "load_fashion_mnist",
    "fetch_mnist",
    "fetch_fashion_mnist",
    "data_home",
    "IDX_IMAGES_MAGIC",
    "IDX_LABELS_MAGIC",
]

#: the splits :func:`load_digits` knows, with their sizes
DIGITS_SPLITS: dict[str, int] = {"train": 1437, "test": 360, "all": 1797}
#: magic number of an IDX file of unsigned-byte images (three dimensions)
IDX_IMAGES_MAGIC = 2051
#: magic number of an IDX file of unsigned-byte labels (one dimension)
IDX_LABELS_MAGIC = 2049

_X_KEYS = ("x", "X", "images", "data", "inputs")
_Y_KEYS = ("y", "Y", "labels", "targets", "target")
_HDF5_SUFFIXES = (".h5", ".hdf5", ".hdf")


def _digits_file() -> dict[str, np.ndarray]:
    ref = resources.files(__name__).joinpath("digits.npz")
    with resources.as_file(ref) as path, np.load(path, allow_pickle=False) as data:
        return {key: data[key] for key in data.files}


def load_digits(
    split: str = "test", *, flatten: bool = False, normalise: bool = True
) -> tuple[NDArray[np.float64], NDArray[np.int64]]:
    """Load the shipped 8x8 handwritten digits.

    The split is fixed: stratified by class with seed 0, 80 % / 20 %, i.e.
    1,437 training and 360 test samples.  Its indices are stored in
    ``digits.npz`` (made by ``datasets/make_digits.py``), so it never changes.

    Parameters
    ----------
    split : {"test", "train", "all"}
        Which samples; ``"all"`` keeps the original order of the 1,797 samples.
    flatten : bool
        If True return ``x`` of shape ``(n, 64)`` instead of ``(n, 1, 8, 8)``.
    normalise : bool
        If True (default) scale pixels from 0..16 to [0, 1] (divide by 16);
        otherwise return the raw integer grey levels as float64.

    Returns
    -------
    x : ndarray of float64, shape (n, 1, 8, 8) or (n, 64)
        Images, channels-first.
    y : ndarray of int64, shape (n,)
        Class labels 0..9.

    Raises
    ------
    ValidationError
        If ``split`` is not one of the names above.

    Examples
    --------
    >>> x, y = load_digits("test")
    >>> x.shape, y.shape, float(x.max()) <= 1.0
    ((360, 1, 8, 8), (360,), True)
    >>> load_digits("train", flatten=True)[0].shape
    (1437, 64)
    """
    if split not in DIGITS_SPLITS:
        raise ValidationError(
            f"unknown digits split {split!r}; expected one of {', '.join(map(repr, DIGITS_SPLITS))}", attr="split"
        )
    data = _digits_file()
    images, labels = data["images"], data["labels"]
    if split != "all":
        idx = data[f"{split}_idx"]
        images, labels = images[idx], labels[idx]
    x = images.astype(np.float64)
    if normalise:
        x /= 16.0
    x = x.reshape(x.shape[0], 64) if flatten else x.reshape(x.shape[0], 1, 8, 8)
    return x, labels.astype(np.int64)


# ---------------------------------------------------------------------------------------------- IDX


def _parse_idx(path: Path, expected_magic: int, what: str) -> np.ndarray:
    """Stream an IDX file: the header is checked before the data are read, and no more than the
    header's shape (+1 byte, to detect trailing data) is ever decompressed into memory."""
    from spikebridge._h5 import array_budget

    if not path.exists():
        raise FileNotFoundError(f"IDX file '{path}' does not exist")
    size = path.stat().st_size
    with open(path, "rb") as fh:
        head = fh.read(2)
    # gzip is recognised by content, not suffix, so "train-images-idx3-ubyte" that is secretly gzipped still loads
    gz = head == b"\x1f\x8b"
    opener = gzip.open if gz else open
    try:
        with opener(path, "rb") as fh:
            return _read_idx_stream(fh, path, expected_magic, what, size, gz, array_budget())
    except (OSError, EOFError) as err:
        raise ModelFormatError(f"IDX file '{path}': cannot decompress gzip data ({err}); the file is truncated or corrupt") from err


def _read_idx_stream(fh: Any, path: Path, expected_magic: int, what: str, size: int, gz: bool, budget: int) -> np.ndarray:
    raw = fh.read(4)
    if len(raw) < 4:
        raise ModelFormatError(
            f"IDX {what} file '{path}' is truncated: {len(raw)} bytes, expected at least a 4-byte header"
        )
    magic = int.from_bytes(raw[:4], "big")
    if magic != expected_magic:
        other = {IDX_IMAGES_MAGIC: "an images file", IDX_LABELS_MAGIC: "a labels file"}.get(magic)
        hint = f" (that is {other}; are images and labels swapped?)" if other else " (not an unsigned-byte IDX file)"
        raise ModelFormatError(
            f"IDX {what} file '{path}': wrong magic number {magic}{hint}; expected {expected_magic}"
        )
    ndim = raw[3]
    header = 4 + 4 * ndim
    raw += fh.read(header - 4)
    if len(raw) < header:
        raise ModelFormatError(
            f"IDX {what} file '{path}' is truncated: header needs {header} bytes, file has {len(raw)}"
        )
    dims = tuple(int.from_bytes(raw[4 + 4 * k : 8 + 4 * k], "big") for k in range(ndim))
    n_expected = int(np.prod(dims, dtype=np.float64))
    # deflate expands at most 1032:1, so a gzipped file cannot hold more than that
    limit = min(budget, size * 1032 if gz else size)
    if n_expected > limit:
        why = f"the {budget / 1e6:.0f} MB array budget" if n_expected > budget else f"what its {size} bytes can hold"
        raise ModelFormatError(
            f"IDX {what} file '{path}': header shape {dims} declares {n_expected} data bytes, more than {why}"
        )
    # what load_idx holds at once: the bytes read and their float64/int64 copy (8 bytes per value)
    if n_expected * 9 > budget:
        raise ModelFormatError(
            f"IDX {what} file '{path}': header shape {dims} declares {n_expected} values, {n_expected * 9 / 1e6:.0f} MB "
            f"once read and converted to 8-byte numbers, more than the {budget / 1e6:.0f} MB array budget "
            "(set SPIKEBRIDGE_MAX_ARRAY_BYTES to allow it)"
        )
    # into one preallocated buffer, chunk by chunk: GzipFile.read(n) would hold its pieces and their join at once
    data = bytearray(n_expected)
    view = memoryview(data)
    n_found = 0
    while n_found < n_expected and (n := fh.readinto(view[n_found:n_found + (1 << 22)])):
        n_found += n
    if n_found == n_expected and fh.read(1):  # count the rest in blocks, never holding it
        n_found += 1
        while block := fh.read(1 << 20):
            n_found += len(block)
    if n_found != n_expected:
        state = "truncated" if n_found < n_expected else "longer than its header says"
        raise ModelFormatError(
            f"IDX {what} file '{path}' is {state}: header shape {dims} needs {n_expected} data bytes, "
            f"found {n_found}"
        )
    return np.frombuffer(data, dtype=np.uint8).reshape(dims)


def load_idx(
    images_path: str | os.PathLike[str], labels_path: str | os.PathLike[str] | None = None
) -> tuple[NDArray[np.float64], NDArray[np.int64] | None]:
    """Read MNIST-style IDX files (big-endian, unsigned bytes, optionally gzipped).

    Parameters
    ----------
    images_path : str or path-like
        Images file, magic number 2051, shape ``(n, rows, cols)``, e.g.
        ``t10k-images-idx3-ubyte.gz``.  Gzip is detected from the content.
    labels_path : str or path-like, optional
        Labels file, magic number 2049, shape ``(n,)``.

    Returns
    -------
    x : ndarray of float64, shape (n, 1, rows, cols)
        Pixels scaled from 0..255 to [0, 1].
    y : ndarray of int64, shape (n,), or None
        Labels, or None if ``labels_path`` is not given.

    Raises
    ------
    FileNotFoundError
        If a file does not exist.
    ModelFormatError
        Wrong magic number, truncated or over-long file, corrupt gzip data
        (the message gives expected and found values).
    ValidationError
        If the number of labels differs from the number of images.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (d / "img").write_bytes(bytes([0, 0, 8, 3, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 2, 0, 255, 255, 0]))
    >>> _ = (d / "lab").write_bytes(bytes([0, 0, 8, 1, 0, 0, 0, 1, 7]))
    >>> x, y = load_idx(d / "img", d / "lab")
    >>> x.shape, x[0, 0, 0].tolist(), y.tolist()
    ((1, 1, 2, 2), [0.0, 1.0], [7])
    """
    images = _parse_idx(Path(images_path), IDX_IMAGES_MAGIC, "images")
    if images.size == 0:
        raise ValidationError(f"IDX images '{images_path}' hold no samples (shape {images.shape})", attr="images_path")
    x = np.empty((images.shape[0], 1, *images.shape[1:]), dtype=np.float64)
    np.divide(images[:, None], 255.0, out=x)  # one float64 array, no temporary of the same size
    if labels_path is None:
        return x, None
    labels = _parse_idx(Path(labels_path), IDX_LABELS_MAGIC, "labels")
    if labels.shape[0] != images.shape[0]:
        raise ValidationError(
            f"IDX files do not match: '{images_path}' holds {images.shape[0]} images but '{labels_path}' "
            f"holds {labels.shape[0]} labels; expected the same count",
            attr="labels_path",
        )
    return x, labels.astype(np.int64)


# ---------------------------------------------------------------------------------------------- arrays


def _pick(keys: list[str], wanted: str | None, guesses: tuple[str, ...], role: str, path: Path) -> str | None:
    if wanted is not None:
        if wanted not in keys:
            raise ValidationError(
                f"'{path}' has no array {wanted!r} for {role}; available keys: {', '.join(keys) or '(none)'}",
                attr=f"{role}_key",
            )
        return wanted
    for guess in guesses:
        if guess in keys:
            return guess
    return None


class _NpzArrays(Mapping[str, np.ndarray]):
    """The members of a ``.npz`` by name, each read only when asked for, after its header is checked.

    ``np.load`` of a whole ``.npz`` would read every member, the unused ones too; here a member's
    declared shape and dtype are read from its ``.npy`` header first and refused when they need
    pickles, exceed :func:`spikebridge._h5.array_budget`, or exceed what the zip entry holds.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            with zipfile.ZipFile(path) as z:
                self.infos = {i.filename[:-4]: i for i in z.infolist() if i.filename.endswith(".npy")}
        except (OSError, EOFError, zipfile.BadZipFile, zipfile.LargeZipFile, ValueError) as err:
            raise ModelFormatError(f"'{path}' is not a readable .npz file (truncated or not .npz): {err}") from err

    def __getitem__(self, key: str) -> np.ndarray:
        from spikebridge._h5 import array_budget

        info = self.infos[key]
        where = f"'{self.path}': array {key!r}"
        fmt = np.lib.format
        try:
            with zipfile.ZipFile(self.path) as z, z.open(info) as fh:
                version = fmt.read_magic(fh)
                reader = {(1, 0): fmt.read_array_header_1_0, (2, 0): fmt.read_array_header_2_0}.get(version)
                if reader is None:
                    raise ModelFormatError(f"{where} has .npy format version {version}; expected 1.0 or 2.0")
                shape, fortran, dtype = reader(fh)
                if dtype.hasobject:
                    raise ModelFormatError(f"{where} holds Python objects (dtype {dtype}) and could not be read without "
                                           "pickles; store plain numeric arrays")
                nbytes = int(np.prod(shape, dtype=np.float64) * dtype.itemsize)
                budget = array_budget()
                if nbytes > budget:
                    raise ModelFormatError(
                        f"{where} declares shape {shape} of {dtype}, {nbytes / 1e6:.0f} MB, more than the {budget / 1e6:.0f} MB "
                        "array budget (set SPIKEBRIDGE_MAX_ARRAY_BYTES to allow it)"
                    )
                if nbytes > info.file_size:
                    raise ModelFormatError(
                        f"{where} declares shape {shape} of {dtype}, {nbytes} bytes, but its zip entry holds only "
                        f"{info.file_size} bytes; the file is truncated or forged"
                    )
                # the data follow the header: read into one preallocated array, chunk by chunk
                out = np.empty(int(np.prod(shape)), dtype=dtype)
                view = out.view(np.uint8).reshape(-1).data
                got = 0
                while got < nbytes:
                    n = cast(Any, fh).readinto(view[got:got + (1 << 22)])
                    if not n:
                        raise ModelFormatError(f"{where} is truncated: {got} of {nbytes} bytes")
                    got += n
        except ModelFormatError:
            raise
        except ValueError as err:
            raise ModelFormatError(f"'{self.path}' could not be read without pickles ({err}); store plain numeric arrays") from err
        except (OSError, EOFError, zipfile.BadZipFile, zlib.error) as err:  # a member cut short
            raise ModelFormatError(f"'{self.path}' is not a readable .npz file (truncated or corrupt): {err}") from err
        return out.reshape(shape, order="F" if fortran else "C")

    def __iter__(self) -> Iterator[str]:
        return iter(self.infos)

    def __len__(self) -> int:
        return len(self.infos)


def _npz_arrays(path: Path) -> Mapping[str, np.ndarray]:
    with open(path, "rb") as fh:
        magic = fh.read(6)
    if magic == b"\x93NUMPY":
        raise ValidationError(
            f"'{path}' holds a single array, not named arrays; save with np.savez(path, x=..., y=...)",
            attr="path",
        )
    if not magic.startswith(b"PK"):
        # np.load would take anything else for a pickle and blame pickles
        raise ModelFormatError(f"'{path}' is not a .npz file (no zip signature); save arrays with np.savez(path, x=..., y=...)")
    return _NpzArrays(path)


class _H5Arrays(Mapping[str, np.ndarray]):
    """The datasets of an HDF5 file by path, each read only when asked for (after its size is checked)."""

    def __init__(self, path: Path) -> None:
        import h5py

        self.path = path
        names: list[str] = []
        with self._open() as f:  # open_h5 refuses links and storage outside the file
            f.visititems(lambda name, obj: names.append(name) if isinstance(obj, h5py.Dataset) else None)
        self.names = names

    def _open(self) -> Any:
        from spikebridge._h5 import open_h5
        from spikebridge.errors import StoreFormatError

        try:
            return open_h5(self.path, "r", what="array file")
        except StoreFormatError as err:
            raise ModelFormatError(str(err)) from err

    def __getitem__(self, key: str) -> np.ndarray:
        from spikebridge._h5 import read_dataset

        if key not in self.names:
            raise KeyError(key)
        with self._open() as f:
            return np.asarray(read_dataset(f[key], f"array file '{self.path}'", ModelFormatError))

    def __iter__(self) -> Iterator[str]:
        return iter(self.names)

    def __len__(self) -> int:
        return len(self.names)


def _h5_datasets(path: Path) -> Mapping[str, np.ndarray]:
    return _H5Arrays(path)


def load_arrays(
    path: str | os.PathLike[str], x_key: str | None = None, y_key: str | None = None
) -> tuple[NDArray[np.float64], NDArray[np.int64] | None]:
    """Load inputs (and labels) from a ``.npz`` or HDF5 file.

    Parameters
    ----------
    path : str or path-like
        ``.npz`` (read with ``allow_pickle=False``) or ``.h5``/``.hdf5``
        (datasets anywhere in the file, keyed by their path, e.g. ``"test/x"``).
    x_key : str, optional
        Name of the inputs; guessed from ``x``, ``X``, ``images``, ``data``, ``inputs``.
    y_key : str, optional
        Name of the labels; guessed from ``y``, ``Y``, ``labels``, ``targets``,
        ``target``.  If none is found the labels are None.

    Returns
    -------
    x : ndarray of float64, shape (n, ...)
        Inputs as stored (no scaling).
    y : ndarray of int64, shape (n,), or None

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ValidationError
        No inputs key found or a given key is missing (the message lists the
        available keys), labels that are not integers, or a count mismatch.
    ModelFormatError
        The file cannot be read as ``.npz`` / HDF5 or needs pickles.

    Examples
    --------
    >>> import tempfile, pathlib, numpy as np
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "a.npz"
    >>> np.savez(p, images=np.zeros((3, 4)), labels=np.array([0, 1, 2]))
    >>> x, y = load_arrays(p)
    >>> x.shape, y.tolist()
    ((3, 4), [0, 1, 2])
    """
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"array file '{p}' does not exist")
    arrays = _h5_datasets(p) if p.suffix.lower() in _HDF5_SUFFIXES else _npz_arrays(p)
    keys = list(arrays)
    kx = _pick(keys, x_key, _X_KEYS, "x", p)
    if kx is None:
        raise ValidationError(
            f"'{p}': cannot tell which array holds the inputs; available keys: {', '.join(keys) or '(none)'}; "
            f"name it one of {', '.join(_X_KEYS)} or pass x_key",
            attr="x_key",
        )
    ky = _pick(keys, y_key, _Y_KEYS, "y", p)
    try:
        x = np.asarray(arrays[kx], dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise ValidationError(f"'{p}': array {kx!r} of dtype {arrays[kx].dtype} is not numeric", attr="x_key") from err
    if x.ndim < 1:
        raise ValidationError(f"'{p}': array {kx!r} is a scalar; expected shape (n_samples, ...)", attr="x_key")
    if x.shape[0] == 0 or x.size == 0:
        raise ValidationError(f"'{p}': array {kx!r} holds no samples (shape {x.shape})", attr="x_key")
    if ky is None:
        return x, None
    y_raw = np.asarray(arrays[ky])
    if y_raw.dtype.kind not in "iub" and not (y_raw.dtype.kind == "f" and np.array_equal(y_raw, np.round(y_raw))):
        raise ValidationError(
            f"'{p}': labels {ky!r} of dtype {y_raw.dtype} are not integer class indices", attr="y_key"
        )
    y = y_raw.astype(np.int64).reshape(-1) if y_raw.ndim <= 1 or y_raw.size == y_raw.shape[0] else None
    if y is None:
        raise ValidationError(
            f"'{p}': labels {ky!r} have shape {y_raw.shape}; expected (n_samples,) class indices", attr="y_key"
        )
    if y.shape[0] != x.shape[0]:
        raise ValidationError(
            f"'{p}': {x.shape[0]} inputs in {kx!r} but {y.shape[0]} labels in {ky!r}; expected the same count",
            attr="y_key",
        )
    return x, y


# ---------------------------------------------------------------------------------------------- specs


def load_dataset(
    spec: str | os.PathLike[str], data_dir: str | os.PathLike[str] | None = None
) -> tuple[NDArray[np.float64], NDArray[np.int64] | None]:
    """Resolve a command-line dataset spec to ``(x, y)``.

    Parameters
    ----------
    spec : str or path-like
        One of

        - ``"digits"`` (the test split) or ``"digits:train"`` / ``"digits:test"`` / ``"digits:all"``;
        - ``"idx:IMAGES[,LABELS]"``: MNIST IDX files (see :func:`load_idx`);
        - ``"mnist[:train|test]"`` / ``"fashion-mnist[:train|test]"`` (default test): the
          IDX files in ``data_dir`` (or its ``mnist`` / ``fashion-mnist`` subfolder), else in
          the cache ``$SPIKEBRIDGE_DATA`` (see :func:`load_mnist`; nothing is downloaded);
        - a path to a ``.npz`` / ``.h5`` / ``.hdf5`` file (see :func:`load_arrays`);
          ``PATH:XKEY[,YKEY]`` selects the arrays by name.

    Returns
    -------
    x : ndarray of float64
    y : ndarray of int64 or None

    Raises
    ------
    ValidationError
        An unknown spec (the message lists the accepted forms).
    FileNotFoundError, ModelFormatError
        From the file loaders.

    Examples
    --------
    >>> x, y = load_dataset("digits:train")
    >>> x.shape
    (1437, 1, 8, 8)
    """
    text = os.fspath(spec)
    for set_name in IDX_SETS:
        if text == set_name or text.startswith(set_name + ":"):
            return load_idx_set(set_name, text.partition(":")[2] or "test", data_dir)
    if text == "digits" or text.startswith("digits:"):
        split = text.partition(":")[2] or "test"
        return load_digits(split)
    if text.startswith("idx:"):
        parts = [s for s in text[4:].split(",") if s]
        if not 1 <= len(parts) <= 2:
            raise ValidationError(
                f"dataset spec {text!r}: expected 'idx:IMAGES' or 'idx:IMAGES,LABELS'", attr="spec"
            )
        return load_idx(parts[0], parts[1] if len(parts) == 2 else None)
    path, keys = Path(text), None
    if not path.exists() and ":" in text:
        # "file.npz:x,y" selects keys; only split when the whole string is not itself a file
        head, _, tail = text.rpartition(":")
        if Path(head).exists():
            path, keys = Path(head), tail.split(",")
    if path.suffix.lower() in (".npz", *_HDF5_SUFFIXES):
        x_key = keys[0] if keys and keys[0] else None
        y_key = keys[1] if keys and len(keys) > 1 and keys[1] else None
        return load_arrays(path, x_key, y_key)
    raise ValidationError(
        f"unknown dataset spec {text!r}; expected 'digits', 'digits:train|test|all', 'mnist[:train|test]', "
        "'fashion-mnist[:train|test]', 'idx:IMAGES[,LABELS]' "
        "or a path to a .npz/.h5/.hdf5 file (optionally PATH:XKEY[,YKEY])",
        attr="spec",
    )
