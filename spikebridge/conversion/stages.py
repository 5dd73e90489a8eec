"""Stages of a conversion: which ANN layers become which spiking populations, and their kernels.

A :class:`Stage` is one spiking population to be (a linear map, its activation, pooling around
it); :func:`plan_stages` walks a chain of layers into stages, :func:`spikebridge.conversion.dag.plan_dag`
walks a branching graph into the same list, and :func:`spikebridge.conversion.convert.convert` turns
the stages into a network.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp
from numpy.typing import NDArray

from ..config import ConversionConfig
from ..errors import ConversionError, ConversionWarning, UnsupportedLayerError
from ..ir.graph import AnnGraph, safe_name
from ..ir.layers import AvgPool2d, Conv2d, GlobalAvgPool2d, Input, MaxPool2d, ReLU, Softmax
from ..snn.kernels import SharedKernel
from ..snn.operators import is_linear, linear_operator

__all__ = ["Stage", "plan_stages", "stage_bound", "clip_level", "unique_name", "SUPPORTED"]


SUPPORTED = ("Input", "Dense", "Conv2d", "AvgPool2d", "GlobalAvgPool2d", "MaxPool2d", "Flatten", "ReLU", "Identity", "Softmax",
              "Add", "Concat")



@dataclass
class Stage:
    """One population to be made, with the linear map that feeds it.

    Attributes
    ----------
    name : str
        Population name.
    kind : {"relu", "pool", "gate", "output"}
    layer : str
        ANN layer whose activation the population represents.
    source : str
        Population (or ``"input"``) that feeds it.
    matrix : scipy.sparse.csr_matrix, shape (n, n_source), or None
        Composed linear map in ANN units (None when ``operator`` holds it).
    bias : ndarray (n,) or None
    shape : tuple of int
        Logical shape of the population.
    rectify : bool
        Whether its calibration activation must be rectified first (a
        population before a MaxPool that precedes the ReLU).
    extra : list of (str, scipy.sparse.csr_matrix)
        Further ``(source, matrix)`` inputs summed into the population (a
        residual sum of a branching graph, see :mod:`spikebridge.conversion.dag`).
    operator : SharedKernel or None
        The map as a shared kernel, when it is one convolution or pooling
        (see :mod:`spikebridge.snn.kernels`); ``matrix`` is then None.
    extra_operators : dict of str to SharedKernel
        Further inputs (sources of ``extra``) whose matrix is one shared
        kernel, e.g. both convolutions of a residual sum; ``extra`` still
        holds their matrices.
    """

    name: str
    kind: str
    layer: str
    source: str
    matrix: sp.csr_matrix
    bias: NDArray[np.float64] | None
    shape: tuple[int, ...]
    rectify: bool = False
    extra: list[tuple[str, sp.csr_matrix]] = field(default_factory=list)
    operator: SharedKernel | None = None
    extra_operators: dict[str, SharedKernel] = field(default_factory=dict)

    def csr(self) -> sp.csr_matrix:
        """The map as a sparse matrix (made from the kernel if need be)."""
        return self.operator.csr() if self.operator is not None else self.matrix

    def inputs(self) -> list[tuple[str, sp.csr_matrix | None]]:
        """All ``(source, matrix)`` pairs feeding the population (the first one's matrix is None when it is a kernel)."""
        return [(self.source, self.matrix), *self.extra]

    def kernel_of(self, index: int) -> SharedKernel | None:
        """The shared kernel of input ``index`` (as ordered by :meth:`inputs`), or None when it is a plain matrix."""
        if index == 0:
            return self.operator
        return self.extra_operators.get(self.extra[index - 1][0])



def _gate_kernel(layer: MaxPool2d, in_shape: tuple[int, ...]) -> SharedKernel:
    """One unit-weight synapse from every input of a max-pool window to its output."""
    c = int(in_shape[0])
    return SharedKernel(np.ones((c, 1) + tuple(layer.kernel_size)), in_shape, layer.stride, layer.padding, groups=c)  # type: ignore[arg-type]



def _pool_kernel(layer: AvgPool2d | GlobalAvgPool2d, in_shape: tuple[int, ...]) -> SharedKernel:
    """Average pooling of a population: weight ``1/(kh kw)`` per window input (padding counted)."""
    c, h, w = (int(s) for s in in_shape)
    if isinstance(layer, GlobalAvgPool2d):
        kernel, stride, padding = (h, w), (h, w), (0, 0)
    else:
        kernel, stride, padding = layer.kernel_size, layer.stride, layer.padding  # type: ignore[assignment]
    return SharedKernel(np.full((c, 1) + tuple(kernel), 1.0 / (kernel[0] * kernel[1])), (c, h, w), stride, padding, groups=c)



def clip_level(graph: AnnGraph, layer_name: str) -> float | None:
    """``max_value`` of layer ``layer_name`` if it is a clipped ReLU, else None."""
    layer = graph[layer_name] if layer_name in graph else None
    return layer.max_value if isinstance(layer, ReLU) else None



def stage_bound(graph: AnnGraph, stages: list[Stage], name: str) -> float | None:
    """Known upper bound (ANN units) of the activation that population ``name`` represents.

    The clip level of a clipped ReLU (``ReLU(max_value=c)``); an average pool or
    max-pool gate of a single such population keeps its bound (a mean or maximum of
    values in ``[0, c]`` stays in ``[0, c]``).  None when the activation is unbounded.
    """
    by_name = {s.name: s for s in stages}
    st = by_name.get(name)
    while st is not None and st.kind in ("pool", "gate") and not st.extra:
        st = by_name.get(st.source)
    if st is None or st.kind not in ("relu", "output") or st.rectify:
        return None
    return clip_level(graph, st.layer)



def unique_name(base: str, used: set[str]) -> str:
    """``base`` as an identifier, with ``_2``, ``_3`` ... appended until it is not in ``used`` (which it joins)."""
    name = safe_name(base)
    out, k = name, 1
    while out in used:
        k += 1
        out = f"{name}_{k}"
    used.add(out)
    return out



def plan_stages(graph: AnnGraph, config: ConversionConfig) -> list[Stage]:
    """Split the ANN into populations and the composed linear maps between them.

    Raises
    ------
    UnsupportedLayerError
        A layer type conversion cannot represent, or a Softmax that is not last.
    ConversionError
        A MaxPool2d with ``maxpool="refuse"``.
    """
    stages: list[Stage] = []
    source = "input"
    mat: sp.csr_matrix | None = None
    kern: SharedKernel | None = None  # the pending run as a shared kernel, while it is one conv/pool
    bias: NDArray[np.float64] | None = None
    named: str | None = None  # last weighted layer of the pending run: names the population
    used: set[str] = {"input"}
    layers = list(graph.layers)

    def unique(base: str) -> str:
        return unique_name(base, used)

    def close(kind: str, layer_name: str, shape: tuple[int, ...], rectify: bool = False) -> None:
        nonlocal source, mat, bias, named, kern
        n_src = int(np.prod(stages[-1].shape)) if stages else int(np.prod(graph.input_shape))
        m = None if kern is not None else sp.csr_matrix(mat if mat is not None else sp.identity(n_src, format="csr"))
        stage = Stage(unique(named or layer_name), kind, layer_name, source, m, bias, tuple(shape), rectify, operator=kern)
        stages.append(stage)
        source, mat, bias, named, kern = stage.name, None, None, None, None

    for idx, layer in enumerate(layers):
        if isinstance(layer, Input):
            continue
        in_shape = graph.input_shape_of(layer.name)
        out_shape = graph.shapes[layer.name]
        if isinstance(layer, MaxPool2d) and config.maxpool == "avg":
            warnings.warn(
                f"MaxPool2d '{layer.name}' replaced by average pooling (maxpool='avg'); "
                "the SNN now approximates a slightly different ANN",
                ConversionWarning,
                stacklevel=3,
            )
            layer = AvgPool2d(name=layer.name, kernel_size=layer.kernel_size, stride=layer.stride, padding=layer.padding)
        if isinstance(layer, (AvgPool2d, GlobalAvgPool2d)) and mat is None and kern is None and source != "input":
            # pooling of spiking activity: its own population (see the module docstring), or the
            # start of the next layer's linear map (avgpool="fold": it composes with what follows)
            kern, bias, named = _pool_kernel(layer, in_shape), None, layer.name
            if config.avgpool == "population" or idx == len(layers) - 1:
                close("pool", layer.name, out_shape)
        elif isinstance(layer, Conv2d) and mat is None and kern is None and bias is None:
            # a convolution keeps its kernel until another linear layer composes with it
            kern = SharedKernel(layer.weight, in_shape, layer.stride, layer.padding)  # type: ignore[arg-type]
            bias = np.repeat(np.asarray(layer.bias, dtype=np.float64), kern.out_hw[0] * kern.out_hw[1])
            named = layer.name
        elif is_linear(layer):
            m, b = linear_operator(layer, in_shape)
            if m is not None and kern is not None:
                mat, kern = kern.csr(), None
            if m is not None:
                mat = m if mat is None else sp.csr_matrix(m @ mat)
                if bias is not None:
                    bias = m @ bias
            if b is not None:
                bias = b if bias is None else bias + b
            if layer.has_weights or isinstance(layer, (AvgPool2d, GlobalAvgPool2d)):
                named = layer.name
        elif isinstance(layer, ReLU):
            if mat is None and bias is None and kern is None:
                if layer.max_value is None or not stages:
                    if layer.max_value is not None:
                        close("relu", layer.name, out_shape)  # a clipped ReLU of the input: relay neurons that clip
                    continue  # rates are already non-negative
                last_stage = stages[-1]
                bound = stage_bound(graph, stages, last_stage.name)
                if bound is not None and bound <= layer.max_value:
                    continue  # already within the clip level
                if last_stage.kind == "relu" and not last_stage.rectify:
                    # ReLU then Clip (an ONNX Relu + Clip pair): the population represents the clipped value
                    last_stage.layer = layer.name
                    continue
                close("relu", layer.name, out_shape)  # e.g. a clip after pooling: relay neurons that clip
                continue
            close("relu", layer.name, out_shape)
        elif isinstance(layer, MaxPool2d):
            if config.maxpool == "refuse":
                raise ConversionError(
                    f"MaxPool2d '{layer.name}' has no exact spiking form; convert with maxpool='gate' "
                    "(spiking OR gate, approximate) or maxpool='avg' (replace it by average pooling), or "
                    "retrain the model with AvgPool2d"
                )
            if source == "input" and mat is None and kern is None:
                raise ConversionError(
                    f"MaxPool2d '{layer.name}' acts directly on the input, which is a current, not spikes; "
                    "use maxpool='avg' or apply the pooling to the data before conversion"
                )
            if mat is not None or bias is not None or kern is not None:
                prev = graph.predecessor(layer.name)
                # max(relu(x)) == relu(max(x)): the population before the gate represents relu(x)
                close("relu", prev or layer.name, in_shape, rectify=True)
            kern, bias, named = _gate_kernel(layer, in_shape), None, layer.name
            close("gate", layer.name, out_shape)
        elif isinstance(layer, Softmax):
            if idx != len(layers) - 1:
                raise UnsupportedLayerError(
                    layer.name, "Softmax", SUPPORTED, hint="Softmax is only supported as the last layer (it is dropped)"
                )
        else:
            raise UnsupportedLayerError(layer.name, layer.type_name, SUPPORTED)
    last = layers[-1].name if not isinstance(layers[-1], Softmax) else graph.predecessor(layers[-1].name)
    if mat is not None or bias is not None or kern is not None:
        close("output", last or layers[-1].name, graph.shapes[last] if last else graph.output_shape)
    elif stages:
        stages[-1].kind = "output"
    else:
        raise ConversionError(f"model '{graph.name}' has no layer to convert (only {[l.type_name for l in layers]})")
    return stages

