"""Import optional heavy dependencies with an install hint on failure."""

from __future__ import annotations

import importlib
from types import ModuleType

from .errors import MissingDependencyError

#: distribution/extra to install for each importable module
EXTRAS: dict[str, str] = {
    "torch": "torch",
    "onnx": "onnx",
    "sklearn": "sklearn",
    "nir": "nir",
    "matplotlib": "plot",
    "pynwb": "nwb",
    "tqdm": "progress",
    "keras": "keras",
    "snntorch": "bench",
    "spikingjelly": "bench",
    "dask": "distributed",
    "distributed": "distributed",
    "numba": "fast",
}


def import_optional(module: str, purpose: str | None = None) -> ModuleType:
    """Import ``module`` or raise :class:`MissingDependencyError`.

    Parameters
    ----------
    module : str
        Dotted module name, e.g. ``"torch"`` or ``"matplotlib.pyplot"``.
    purpose : str, optional
        What the module is needed for, used in the message.

    Returns
    -------
    types.ModuleType
        The imported module.

    Raises
    ------
    MissingDependencyError
        If the import fails; the message ends with the ``pip install`` command.
    """
    try:
        return importlib.import_module(module)
    except ImportError as err:
        top = module.split(".")[0]
        extra = EXTRAS.get(top, top)
        why = f" for {purpose}" if purpose else ""
        raise MissingDependencyError(
            f"the optional package '{top}' is needed{why} but could not be imported ({err}); "
            f'install it with: pip install "spikebridge[{extra}]"'
        ) from err


def has_module(module: str) -> bool:
    """Return True if ``module`` can be imported (without raising)."""
    try:
        importlib.import_module(module)
    except ImportError:
        return False
    return True
