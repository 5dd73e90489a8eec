"""One entry point for every model source: :func:`load_model`.

The registry is a table of :class:`Importer` entries.  Each entry says which
file suffixes it reads, which pip extra it needs, how to recognise its files or
objects (``detect``) and how to load them (``load``).  Built-in entries import
their framework lazily, inside ``load``, so the registry itself is light.

Plugins (e.g. the NIR importer) register themselves with
:func:`register_importer` when their module is imported; the modules listed in
:data:`PLUGIN_MODULES` are imported the first time the registry is used.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import zipfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from ..errors import ModelFormatError, StoreFormatError, ValidationError
from ..ir.graph import AnnGraph

__all__ = ["Importer", "ImporterFunction", "load_model", "list_formats", "register_importer", "get_importer", "PLUGIN_MODULES"]


class ImporterFunction(Protocol):
    """Signature of an importer's ``load``: ``load(source, **kwargs) -> AnnGraph``."""

    def __call__(self, source: Any, **kwargs: Any) -> AnnGraph: ...


@dataclass(frozen=True)
class Importer:
    """One registered model source.

    Parameters
    ----------
    name : str
        Format name users pass as ``format=`` (e.g. ``"onnx"``).
    suffixes : tuple of str
        File suffixes, lower case with the dot (``(".onnx",)``); empty for object-only sources.
    extra : str or None
        The pip extra that provides the needed packages (``pip install "spikebridge[<extra>]"``);
        None when only core dependencies are needed.
    detect : callable
        ``detect(source) -> bool`` for a :class:`pathlib.Path` or an in-memory object. It must be
        cheap, must not import the framework and must not raise.
    load : callable
        ``load(source, **kwargs) -> AnnGraph``; ``source`` is a Path or the object.
    description : str
        One line for ``spikebridge formats``.
    requires : tuple of str
        Importable module names needed by ``load`` (checked without importing them by :func:`list_formats`).
    signature : str
        How a file of this format is recognised, for "cannot tell the format" messages.
    """

    name: str
    suffixes: tuple[str, ...]
    extra: str | None
    detect: Callable[[Any], bool]
    load: ImporterFunction
    description: str = ""
    requires: tuple[str, ...] = ()
    signature: str = ""
    container: str | None = field(default=None, compare=False)

    def is_available(self) -> bool:
        """True if every module in :attr:`requires` can be found (without importing it)."""
        for module in self.requires:
            try:
                if importlib.util.find_spec(module) is None:
                    return False
            except (ImportError, ValueError):
                return False
        return True


_REGISTRY: dict[str, Importer] = {}

# ---------------------------------------------------------------------------
# PLUGIN MODULES: importers that live in their own module and register themselves
# with register_importer(...) at import time.  Add one dotted module name per line.
# Each module must stay light to import (framework imports inside functions).
PLUGIN_MODULES: list[str] = [
    "spikebridge.importers.from_nir",
]
# ---------------------------------------------------------------------------
_plugins_loaded = False


def register_importer(
    name: str,
    *,
    suffixes: Iterable[str] = (),
    extra: str | None = None,
    detect: Callable[[Any], bool],
    load: ImporterFunction,
    description: str = "",
    requires: Iterable[str] = (),
    signature: str = "",
    container: str | None = None,
    replace: bool = False,
) -> Importer:
    """Add a model source to the registry.

    Parameters
    ----------
    name : str
        Format name for ``load_model(..., format=name)``.
    suffixes : iterable of str
        File suffixes such as ``".nir"`` (case-insensitive).
    extra : str, optional
        pip extra that provides the needed packages.
    detect : callable
        ``detect(source) -> bool``; cheap, never raises, never imports the framework.
    load : callable
        ``load(source, **kwargs) -> AnnGraph``.
    description, signature : str
        Texts for ``spikebridge formats`` and for error messages.
    requires : iterable of str
        Module names ``load`` imports.
    container : {"hdf5", "zip", None}
        Container type of the files, used to explain unreadable files.
    replace : bool
        Allow replacing an existing entry of the same name.

    Returns
    -------
    Importer

    Raises
    ------
    ValidationError
        If ``name`` is taken and ``replace`` is False.

    Examples
    --------
    >>> from spikebridge.importers.registry import register_importer, list_formats
    >>> imp = register_importer("demo", suffixes=[".demo"], detect=lambda s: False,
    ...                         load=lambda s, **kw: None, replace=True)
    >>> "demo" in [f["name"] for f in list_formats()]
    True
    >>> _ = unregister_importer("demo")
    """
    key = name.lower()
    if key in _REGISTRY and not replace:
        raise ValidationError(f"register_importer: a format named {name!r} is already registered", attr="name")
    sfx = tuple(s.lower() if s.startswith(".") else "." + s.lower() for s in suffixes)
    imp = Importer(
        name=key,
        suffixes=sfx,
        extra=extra,
        detect=detect,
        load=load,
        description=description,
        requires=tuple(requires),
        signature=signature,
        container=container,
    )
    _REGISTRY[key] = imp
    return imp


def unregister_importer(name: str) -> Importer:
    """Remove and return a registered importer (``KeyError`` if unknown)."""
    return _REGISTRY.pop(name.lower())


def _ensure_plugins() -> None:
    global _plugins_loaded
    if _plugins_loaded:
        return
    _plugins_loaded = True
    for module in PLUGIN_MODULES:
        importlib.import_module(module)


def _importers() -> list[Importer]:
    _ensure_plugins()
    return list(_REGISTRY.values())


def get_importer(name: str) -> Importer:
    """Return the importer registered as ``name``.

    Raises
    ------
    ModelFormatError
        Unknown name; the message lists the known formats.
    """
    _ensure_plugins()
    try:
        return _REGISTRY[str(name).lower()]
    except KeyError:
        raise ModelFormatError(f"unknown model format {name!r}; {_known()}") from None


def _known() -> str:
    parts = []
    for imp in _importers():
        sfx = "/".join(imp.suffixes) if imp.suffixes else "object"
        parts.append(f"{imp.name} ({sfx})")
    return "known formats: " + ", ".join(parts)


def list_formats() -> list[dict[str, Any]]:
    """Describe every registered format.

    Returns
    -------
    list of dict
        One dict per format with keys ``name``, ``suffixes`` (list of str), ``extra``
        (pip extra or None), ``available`` (bool: the needed packages can be imported)
        and ``description``.

    Examples
    --------
    >>> names = [f["name"] for f in list_formats()]
    >>> "onnx" in names and "spikebridge" in names
    True
    """
    return [
        {
            "name": imp.name,
            "suffixes": list(imp.suffixes),
            "extra": imp.extra,
            "available": imp.is_available(),
            "description": imp.description,
        }
        for imp in _importers()
    ]


def _safe_detect(imp: Importer, source: Any) -> bool:
    try:
        return bool(imp.detect(source))
    except Exception:  # a detector must never decide the outcome by crashing
        return False


def _container_problem(path: Path, container: str | None) -> str:
    if container == "hdf5":
        import h5py

        try:
            with h5py.File(path, "r"):
                pass
        except OSError as err:
            first = str(err).splitlines()[0] if str(err) else type(err).__name__
            return f" It is not a readable HDF5 file (truncated or not HDF5): {first}."
        return ""
    if container == "zip" and not zipfile.is_zipfile(path):
        return " It is not a readable zip archive (truncated or not a zip file)."
    return ""


def _pick_for_path(path: Path) -> Importer:
    suffix = path.suffix.lower()
    importers = _importers()
    candidates = [imp for imp in importers if suffix in imp.suffixes]
    if len(candidates) == 1:
        return candidates[0]
    if candidates:
        hits = [imp for imp in candidates if _safe_detect(imp, path)]
        if hits:
            return hits[0]
        containers = {imp.container for imp in candidates}
        problem = _container_problem(path, containers.pop()) if len(containers) == 1 else ""
        expected = "; ".join(f"{imp.name}: {imp.signature or imp.description}" for imp in candidates)
        raise ModelFormatError(
            f"cannot tell the format of model file '{path}': it matches none of the '{suffix}' formats "
            f"({expected}).{problem} Pass format=... if you know it; {_known()}"
        )
    hits = [imp for imp in importers if imp.suffixes and _safe_detect(imp, path)]
    if hits:
        return hits[0]
    raise ModelFormatError(
        f"unknown model file suffix {suffix or '(none)'!r} of '{path}'; pass format=... or use one of the {_known()}"
    )


def _pick_for_object(obj: Any) -> Importer:
    hits = [imp for imp in _importers() if _safe_detect(imp, obj)]
    if hits:
        return hits[0]
    raise ModelFormatError(
        f"cannot import an object of type {type(obj).__module__}.{type(obj).__qualname__}: no registered importer "
        f"recognises it; {_known()}"
    )


def load_model(source: Any, format: str | None = None, **kwargs: Any) -> AnnGraph:
    """Load a trained ANN from a file or a live object into an :class:`AnnGraph`.

    Parameters
    ----------
    source : str, path-like or object
        A model file (``.pt``/``.pth`` state dict, ``.onnx``, Keras ``.h5``/``.keras``,
        our own ``.h5``, ...) or an in-memory model (``torch.nn.Module``,
        ``onnx.ModelProto``, fitted scikit-learn ``MLPClassifier``/``MLPRegressor``).
    format : str, optional
        Force a format by name (see :func:`list_formats`) instead of guessing from the
        suffix or the object type.
    **kwargs
        Passed to the importer, e.g. ``input_shape=(1, 28, 28)`` (channels-first, per sample)
        or ``architecture=module`` for PyTorch state-dict files.

    Returns
    -------
    AnnGraph
        With ``metadata`` keys ``source``, ``format`` and, when known, ``task``.  (Plugin formats
        that describe spiking networks, such as ``nir``, return a ``SpikingNetwork`` instead.)

    Raises
    ------
    FileNotFoundError
        The file does not exist.
    ModelFormatError
        Unknown suffix, object or format name (the message lists the known formats), or a
        truncated/foreign/inconsistent file.
    UnsupportedLayerError
        The model uses a layer spikebridge cannot represent (named in the message).
    MissingDependencyError
        The framework needed for this format is not installed (message ends with the pip command).
    ValidationError
        NaN/Inf weights or inconsistent shapes (the message names the file and the layer).

    Examples
    --------
    >>> import numpy as np, tempfile, os
    >>> from spikebridge.ir import AnnGraph, Input, Dense, save_graph
    >>> g = AnnGraph([Input(name="x", shape=(2,)), Dense(name="fc", weight=np.eye(2))])
    >>> path = os.path.join(tempfile.mkdtemp(), "m.h5")
    >>> save_graph(g, path)
    >>> load_model(path).metadata["format"]
    'spikebridge'
    """
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.exists():
            raise FileNotFoundError(f"model file '{path}' does not exist")
        if path.is_dir():
            raise ModelFormatError(f"'{path}' is a directory; pass a model file (SavedModel directories are not supported)")
        imp = get_importer(format) if format is not None else _pick_for_path(path)
        return imp.load(path, **kwargs)
    imp = get_importer(format) if format is not None else _pick_for_object(source)
    return imp.load(source, **kwargs)


# -- built-in entries --------------------------------------------------------


def _lazy(module: str, function: str) -> ImporterFunction:
    def load(source: Any, **kwargs: Any) -> AnnGraph:
        return getattr(importlib.import_module(module), function)(source, **kwargs)

    load.__name__ = function
    load.__doc__ = f"Load with :func:`{module}.{function}` (imported on first use)."
    return load


def _type_names(obj: Any) -> set[str]:
    """``module.Class`` names of ``type(obj)`` and its bases, without importing any framework."""
    try:
        return {f"{c.__module__}.{c.__name__}" for c in type(obj).__mro__}
    except AttributeError:
        return set()


def _h5_root_attr(path: Path, key: str) -> Any:
    from .._h5 import root_attr

    # type- and size-checked, a variable-length string read in a separate process (see _h5.read_attrs)
    return root_attr(path, key, ModelFormatError)


def _h5_has_root_attr(path: Path, key: str) -> bool:
    import h5py

    with h5py.File(path, "r") as f:
        return key in f.attrs  # the object header only; the value is not read


def _detect_torch(source: Any) -> bool:
    if isinstance(source, Path):
        return source.suffix.lower() in (".pt", ".pth")
    return "torch.nn.modules.module.Module" in _type_names(source)


def _detect_onnx(source: Any) -> bool:
    if isinstance(source, Path):
        return source.suffix.lower() == ".onnx"
    return any(n.startswith("onnx.") and n.endswith(".ModelProto") for n in _type_names(source))


def _detect_keras_h5(source: Any) -> bool:
    return isinstance(source, Path) and _h5_has_root_attr(source, "model_config")


def _detect_keras_zip(source: Any) -> bool:
    if not isinstance(source, Path) or not zipfile.is_zipfile(source):
        return False
    with zipfile.ZipFile(source) as z:
        names = set(z.namelist())
    return "config.json" in names and "model.weights.h5" in names


def _detect_sklearn(source: Any) -> bool:
    names = _type_names(source)
    return any(
        n.startswith("sklearn.") and n.rsplit(".", 1)[1] in ("MLPClassifier", "MLPRegressor") for n in names
    )


def _detect_spikebridge(source: Any) -> bool:
    if isinstance(source, Path):
        return _h5_root_attr(source, "format") == "spikebridge.ann"
    return isinstance(source, AnnGraph)


def _load_spikebridge(source: Any, **kwargs: Any) -> AnnGraph:
    """Load our own ``spikebridge.ann`` HDF5 file (or pass an AnnGraph through)."""
    from ..ir.serialize import load_graph

    if kwargs:
        raise ValidationError(
            f"spikebridge model files take no import options, got {sorted(kwargs)}", attr=sorted(kwargs)[0]
        )
    if isinstance(source, AnnGraph):
        return source
    try:
        graph = load_graph(source)
    except StoreFormatError as err:
        raise ModelFormatError(str(err)) from err
    meta = dict(graph.metadata)
    # the original source/format are kept under their own keys when the file was itself an import
    if "source" in meta and meta.get("source") != str(source):
        meta.setdefault("original_source", meta["source"])
        meta.setdefault("original_format", meta.get("format"))
    meta["source"] = str(source)
    meta["format"] = "spikebridge"
    return AnnGraph(graph.layers, graph.edges, name=graph.name, metadata=meta)


register_importer(
    "torch",
    suffixes=(".pt", ".pth"),
    extra="torch",
    detect=_detect_torch,
    load=_lazy("spikebridge.importers.from_torch", "from_torch"),
    description="PyTorch nn.Module, or a state-dict file (.pt/.pth) with architecture=<nn.Module>",
    requires=("torch",),
    signature="torch.save(model.state_dict(), path)",
)
register_importer(
    "onnx",
    suffixes=(".onnx",),
    extra="onnx",
    detect=_detect_onnx,
    load=_lazy("spikebridge.importers.from_onnx", "from_onnx"),
    description="ONNX model file or onnx.ModelProto (e.g. torch.onnx.export(..., dynamo=False))",
    requires=("onnx",),
    signature="ONNX protobuf",
)
register_importer(
    "spikebridge",
    suffixes=(".h5", ".hdf5"),
    extra=None,
    detect=_detect_spikebridge,
    load=_load_spikebridge,
    description="spikebridge's own ANN HDF5 format (format='spikebridge.ann'), see docs/formats.md",
    signature="root attribute format='spikebridge.ann'",
    container="hdf5",
)
register_importer(
    "keras-h5",
    suffixes=(".h5", ".hdf5"),
    extra=None,
    detect=_detect_keras_h5,
    load=_lazy("spikebridge.importers.from_keras", "from_keras_h5"),
    description="Keras legacy HDF5 model (model.save('m.h5')), read with h5py alone",
    signature="root attribute 'model_config' (Keras legacy HDF5)",
    container="hdf5",
)
register_importer(
    "keras",
    suffixes=(".keras",),
    extra=None,
    detect=_detect_keras_zip,
    load=_lazy("spikebridge.importers.from_keras", "from_keras_v3"),
    description="Keras 3 .keras archive (config.json + model.weights.h5), read with h5py alone",
    signature="zip with config.json and model.weights.h5",
    container="zip",
)
register_importer(
    "sklearn",
    suffixes=(),
    extra="sklearn",
    detect=_detect_sklearn,
    load=_lazy("spikebridge.importers.from_sklearn", "from_sklearn"),
    description="fitted scikit-learn MLPClassifier / MLPRegressor object",
    requires=("sklearn",),
)
