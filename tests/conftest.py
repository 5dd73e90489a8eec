"""Shared fixtures: seeded rng, temporary HDF5 paths, tiny fixed-weight models, Brian2 isolation."""

from __future__ import annotations

import os
import sys

import numpy as np
import pytest

os.environ.setdefault("KERAS_BACKEND", "torch")
os.environ.setdefault("MPLBACKEND", "Agg")

# scripts run in subprocesses by the tests; importing them (doctest collection) would run them
collect_ignore_glob = ["*/_worker.py"]

from spikebridge.ir import AnnGraph, Conv2d, Dense, Flatten, Input, AvgPool2d, ReLU  # noqa: E402


@pytest.fixture
def rng() -> np.random.Generator:
    """A seeded generator, so every test's randomness is reproducible."""
    return np.random.default_rng(12345)


@pytest.fixture
def tmp_h5(tmp_path):
    """Path of a not-yet-existing HDF5 file in a temporary directory."""
    return tmp_path / "file.h5"


def make_tiny_mlp(seed: int = 0, sizes=(6, 8, 4)) -> AnnGraph:
    """A ReLU MLP with fixed seeded weights (biases included)."""
    r = np.random.default_rng(seed)
    layers = [Input(name="input", shape=(sizes[0],))]
    for k, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(Dense(name=f"fc{k + 1}", weight=r.normal(0, 1 / np.sqrt(a), size=(b, a)), bias=r.normal(0, 0.1, size=b)))
        if k < len(sizes) - 2:
            layers.append(ReLU(name=f"relu{k + 1}"))
    return AnnGraph(layers, name="tiny_mlp")


def make_tiny_cnn(seed: int = 0) -> AnnGraph:
    """A small CNN on (1, 6, 6) inputs with fixed seeded weights."""
    r = np.random.default_rng(seed)
    layers = [
        Input(name="input", shape=(1, 6, 6)),
        Conv2d(name="conv1", weight=r.normal(0, 0.5, size=(3, 1, 3, 3)), bias=r.normal(0, 0.1, size=3), padding=1),
        ReLU(name="relu1"),
        AvgPool2d(name="pool1", kernel_size=2),
        Flatten(name="flatten"),
        Dense(name="fc", weight=r.normal(0, 0.3, size=(4, 27)), bias=r.normal(0, 0.1, size=4)),
    ]
    return AnnGraph(layers, name="tiny_cnn")


@pytest.fixture
def tiny_mlp():
    return make_tiny_mlp


@pytest.fixture
def tiny_cnn():
    return make_tiny_cnn


@pytest.fixture(scope="session")
def digits_train_test():
    """The shipped digits: ((x_train, y_train), (x_test, y_test)), loaded once per session."""
    from spikebridge.datasets import load_dataset

    return load_dataset("digits:train"), load_dataset("digits:test")


@pytest.fixture(autouse=True)
def _isolate_brian2():
    """Reset Brian2's device and preferences after each test that touched Brian2."""
    yield
    if "brian2" in sys.modules:
        import brian2

        brian2.device.reinit()
        brian2.set_device("runtime")
        brian2.prefs.reset_to_defaults()


# docstring Examples that take long (a doctest cannot carry a marker): slow, as the tests marked so
_SLOW_DOCTESTS = ("spikebridge.engines.brian2.api.to_brian2",)


def pytest_collection_modifyitems(config, items):
    import pytest

    for item in items:
        if type(item).__name__ == "DoctestItem" and item.name in _SLOW_DOCTESTS:
            item.add_marker(pytest.mark.slow)


def strip_checksums(f) -> None:
    """Remove the SHA-256 checksums from an open network/ANN file (as files written before they existed):
    for tests that edit a saved file to stand for an older one."""
    if "attrs_sha256" in f.attrs:
        del f.attrs["attrs_sha256"]
    f.visititems(lambda name, obj: obj.attrs.__delitem__("sha256") if "sha256" in obj.attrs else None)
