"""Framework-neutral ANN description: layers, graph, numpy forward pass, HDF5 format."""

from .evaluate import evaluate, predict_classes
from .graph import AnnGraph, LayerInfo, safe_name
from .layers import (
    LAYER_TYPES,
    SUPPORTED_LAYERS,
    Add,
    AvgPool2d,
    Concat,
    Conv2d,
    Dense,
    Flatten,
    GlobalAvgPool2d,
    Identity,
    Input,
    Layer,
    MaxPool2d,
    Merge,
    ReLU,
    RNN,
    Softmax,
)
from .serialize import load_graph, save_graph

__all__ = [
    "AnnGraph", "LayerInfo", "safe_name", "evaluate", "predict_classes", "load_graph", "save_graph", "Layer", "Input", "Dense",
    "Conv2d", "AvgPool2d", "MaxPool2d", "GlobalAvgPool2d", "Flatten", "ReLU", "Identity", "Softmax",
    "Add", "Concat", "Merge", "RNN", "LAYER_TYPES", "SUPPORTED_LAYERS",
]
