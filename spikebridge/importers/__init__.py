"""Model importers: every source becomes an :class:`~spikebridge.ir.AnnGraph` through :func:`load_model`.

Framework modules (``from_torch``, ``from_onnx``, ``from_keras``, ``from_sklearn``, ``from_nir``)
import their framework inside functions, so importing this package stays light.
"""

from .registry import Importer, list_formats, load_model, register_importer

__all__ = ["load_model", "list_formats", "register_importer", "Importer"]
