"""Exception and warning types raised by spikebridge.

Every exception derives from :class:`SpikebridgeError` *and* from the matching
built-in, so ``except ValueError`` keeps working for users who do not know our
types (the nengo / scikit-learn convention).
"""

from __future__ import annotations

__all__ = [
    "SpikebridgeError",
    "ValidationError",
    "UnsupportedLayerError",
    "ModelFormatError",
    "StoreFormatError",
    "ConversionError",
    "BuildError",
    "SimulationError",
    "DownloadError",
    "MissingDependencyError",
    "StoreLockedError",
    "SpikebridgeWarning",
    "ConversionWarning",
    "AccuracyWarning",
    "ExportWarning",
]


class SpikebridgeError(Exception):
    """Root of every error raised on purpose by spikebridge."""


class ValidationError(SpikebridgeError, ValueError):
    """A bad argument, array or configuration field.

    Parameters
    ----------
    msg : str
        What is wrong, where, and what was expected.
    attr : str, optional
        Name of the offending field or argument.
    obj : object, optional
        The object that holds it.
    """

    def __init__(self, msg: str, attr: str | None = None, obj: object = None) -> None:
        super().__init__(msg)
        self.attr = attr
        self.obj = obj


class UnsupportedLayerError(SpikebridgeError, NotImplementedError):
    """A layer, operator or activation that spikebridge cannot represent.

    Parameters
    ----------
    layer : str
        The user's name for the layer or node.
    layer_type : str
        Its type in the source framework (e.g. ``"LSTM"``, ``"Sigmoid"``).
    supported : iterable of str
        What is supported instead; listed in the message.
    source : str, optional
        The framework or format, e.g. ``"ONNX"``.
    hint : str, optional
        Extra advice appended to the message.
    others : sequence of (layer, layer_type), optional
        Further unsupported layers of the same model, listed after the first
        (``layers`` holds all of them).
    """

    def __init__(
        self,
        layer: str,
        layer_type: str,
        supported: "list[str] | tuple[str, ...] | set[str]" = (),
        source: str | None = None,
        hint: str | None = None,
        others: "list[tuple[str, str]] | tuple[tuple[str, str], ...]" = (),
    ) -> None:
        where = f"{source} " if source else ""
        self.layers = ((layer, layer_type), *others)
        if others:
            listed = ", ".join(f"'{n}' of type {t}" for n, t in self.layers)
            msg = f"{len(self.layers)} unsupported {where}layers: {listed}"
        else:
            msg = f"unsupported {where}layer '{layer}' of type {layer_type}"
        if supported:
            msg += "; supported: " + ", ".join(sorted(supported))
        if hint:
            msg += f". {hint}"
        super().__init__(msg)
        self.layer = layer
        self.layer_type = layer_type
        self.supported = tuple(sorted(supported))


class ModelFormatError(SpikebridgeError, ValueError):
    """A model file is not what its format claims (truncated, foreign, inconsistent)."""


class StoreFormatError(SpikebridgeError, ValueError):
    """An HDF5 store or network file is foreign, corrupt or from a newer version."""


class StoreLockedError(SpikebridgeError, RuntimeError):
    """Another writer holds the store."""


class ConversionError(SpikebridgeError, ValueError):
    """The ANN cannot be converted with the given configuration."""


class BuildError(SpikebridgeError, ValueError):
    """The spiking network cannot be built in Brian2 (e.g. memory limit)."""


class DownloadError(SpikebridgeError, OSError):
    """A data-set file could not be downloaded, or its checksum did not match."""


class SimulationError(SpikebridgeError, RuntimeError):
    """A simulation failed while running."""


class MissingDependencyError(SpikebridgeError, ImportError):
    """An optional package is needed; the message names the ``pip install`` that fixes it."""


class SpikebridgeWarning(UserWarning):
    """Root of spikebridge's warnings."""


class ConversionWarning(SpikebridgeWarning):
    """Something was approximated or dropped during conversion."""


class AccuracyWarning(SpikebridgeWarning):
    """The spiking network is measurably less faithful than it could be."""


class ExportWarning(SpikebridgeWarning):
    """A feature cannot be expressed in the export format."""
