"""Shipped trained ANNs (installed as ``spikebridge.models``).

Two small classifiers of the 8x8 digits (:func:`spikebridge.datasets.load_digits`),
trained by ``models/train_digits.py`` and described in ``MODEL_CARD.md``:

- ``digits_mlp``: ReLU MLP 64-128-64-10, input shape ``(64,)`` (a ``(1, 8, 8)``
  image is reshaped by :func:`spikebridge.evaluate`);
- ``digits_cnn``: Conv-ReLU-AvgPool x2 then Linear, input shape ``(1, 8, 8)``.

Each ships as our HDF5 format (``.h5``) and as ONNX (``.onnx``).  Their test
accuracies, measured on the shipped files, are in ``metrics.json``.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from spikebridge.errors import ValidationError

if TYPE_CHECKING:
    from spikebridge.ir import AnnGraph

__all__ = ["list_models", "model_path", "load_shipped", "load_metrics", "MODEL_NAMES", "REAL_MODEL_NAMES", "FORMATS"]

#: names of the shipped models
MODEL_NAMES: tuple[str, ...] = ("digits_mlp", "digits_cnn")
#: 28x28 models trained by models/train_real.py (MNIST LeNet with MaxPool, Fashion-MNIST VGG) and
#: models/train_qcfs.py (MNIST LeNet with QCFS activations, stored as clipped ReLUs, for small T);
#: loadable by name like the digits models, their data is not shipped (spikebridge.datasets.fetch_mnist)
REAL_MODEL_NAMES: tuple[str, ...] = ("mnist_lenet", "fmnist_vgg", "mnist_lenet_qcfs")
#: file formats each model ships in, with their suffixes
FORMATS: dict[str, str] = {"h5": ".h5", "onnx": ".onnx"}


def list_models() -> list[str]:
    """Return the names of the shipped models.

    Examples
    --------
    >>> list_models()
    ['digits_mlp', 'digits_cnn']
    """
    return list(MODEL_NAMES)


def _resource(filename: str) -> Path:
    # The package is installed as plain files (zip-safe is not needed), so the traversable is a real path.
    return Path(str(resources.files(__name__).joinpath(filename)))


def model_path(name: str, fmt: str = "h5") -> Path:
    """Return the path of a shipped model file.

    Parameters
    ----------
    name : str
        One of :func:`list_models`, e.g. ``"digits_mlp"``.
    fmt : {"h5", "onnx"}
        ``"h5"`` for our HDF5 format (:func:`spikebridge.load_graph`),
        ``"onnx"`` for the ONNX export (:func:`spikebridge.load_model`).

    Returns
    -------
    pathlib.Path

    Raises
    ------
    ValidationError
        Unknown name or format (the message lists the known ones).
    FileNotFoundError
        If the file is missing from the installation.

    Examples
    --------
    >>> model_path("digits_cnn", fmt="onnx").name
    'digits_cnn.onnx'
    """
    if name not in MODEL_NAMES + REAL_MODEL_NAMES:
        raise ValidationError(
            f"unknown shipped model {name!r}; available: {', '.join(MODEL_NAMES + REAL_MODEL_NAMES)}", attr="name"
        )
    if fmt not in FORMATS:
        raise ValidationError(f"unknown model format {fmt!r}; expected one of {', '.join(FORMATS)}", attr="fmt")
    path = _resource(name + FORMATS[fmt])
    if not path.is_file():
        raise FileNotFoundError(
            f"shipped model file '{path}' is missing; reinstall spikebridge or run models/train_digits.py"
        )
    return path


def load_shipped(name: str) -> "AnnGraph":
    """Load a shipped model as an :class:`~spikebridge.ir.AnnGraph`.

    Parameters
    ----------
    name : str
        One of :func:`list_models`.

    Returns
    -------
    AnnGraph
        With metadata ``task``, ``classes``, ``dataset`` and ``input_range``.

    Examples
    --------
    >>> g = load_shipped("digits_mlp")
    >>> g.input_shape, g.output_shape, g.metadata["dataset"]
    ((64,), (10,), 'digits')
    """
    from spikebridge.ir import load_graph

    return load_graph(model_path(name))


def load_metrics() -> dict[str, Any]:
    """Return ``metrics.json``: per model the measured test accuracy, size and training recipe.

    Examples
    --------
    >>> load_metrics()["digits_cnn"]["n_test"]
    360
    """
    return json.loads(_resource("metrics.json").read_text())
