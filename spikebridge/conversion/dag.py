"""Populations of a branching ANN (residual sums, concatenations).

:func:`~spikebridge.conversion.stages.plan_stages` walks a chain of layers;
this module plans a directed acyclic graph (an :class:`~spikebridge.ir.graph.AnnGraph`
with ``Add`` / ``Concat`` layers) into the same :class:`~spikebridge.conversion.stages.Stage`
list, so the rest of :func:`~spikebridge.conversion.convert.convert` (scales,
neurons, projections, delays) is shared.

Every layer's output is kept as a *linear form* over the populations made so
far: ``value = Σ_p M_p · a_p + b`` with ``a_p`` the activation population ``p``
represents (ANN units), ``M_p`` a sparse matrix and ``b`` a bias.  Linear
layers compose into the matrices, exactly as in a chain; at an activation
boundary (ReLU, pooling of spikes, max-pool gate, the output) the form becomes
**one** population with one projection per source ``p``:

* an ``Add`` sums the forms of its inputs, so a residual sum
  ``relu(conv(x') + x)`` is one population fed by the last convolution of the
  main path and by the shortcut's source (through the identity, or a 1×1
  projection convolution with its BatchNorm folded); conversion scales each
  projection by its own source scale, ``λ_p / λ_add``, and the summed biases
  by ``1 / λ_add``;
* a ``Concat`` stacks the forms of its inputs: an index map, no population
  (like ``Flatten``);
* a ReLU of a form that is non-negative by construction (populations, index
  maps and sums of them) needs no population; a clipped ReLU of one needs none
  when the population is already bounded by its clip level, or when it directly
  follows the population's own plain ReLU (the population then represents the
  clipped value), and otherwise a population of relay neurons.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeAlias

import numpy as np
import scipy.sparse as sp
from numpy.typing import NDArray

from ..config import ConversionConfig
from ..errors import ConversionError, ConversionWarning, UnsupportedLayerError
from ..ir.graph import AnnGraph
from ..ir.layers import Add, AvgPool2d, Concat, Conv2d, GlobalAvgPool2d, Input, Layer, MaxPool2d, ReLU, Softmax
from .stages import SUPPORTED, Stage, _gate_kernel, _pool_kernel, stage_bound, unique_name
from ..snn.kernels import SharedKernel
from ..snn.operators import is_linear, linear_operator

__all__ = ["plan_dag", "concat_operators"]

#: Keep one convolution / pooling of one population as a shared kernel (False: explicit synapse
#: matrices, as before session 20; for A/B benchmarks only, the maps are the same)
SHARED_KERNELS = True

Matrix: TypeAlias = sp.csr_matrix


@dataclass
class _Form:
    """``Σ_p terms[p] · a_p + bias``; a term of None is the identity."""

    terms: dict[str, Matrix | None]
    bias: NDArray[np.float64] | None
    n: int
    named: str | None = None  # last weighted layer: names the population this form becomes
    nonneg: bool = False  # populations, index maps and sums of them: a ReLU changes nothing
    sizes: dict[str, int] = field(default_factory=dict)
    # terms that are one convolution / pooling of their source: the population keeps the shared
    # kernel (the engines' event convolution) instead of an explicit synapse matrix
    kernels: dict[str, SharedKernel] = field(default_factory=dict)

    def matrix(self, src: str) -> Matrix:
        m = self.terms[src]
        return sp.identity(self.sizes[src], format="csr") if m is None else m

    @property
    def pure(self) -> str | None:
        """The population this form is, unchanged (one identity term, no bias), else None."""
        if len(self.terms) == 1 and self.bias is None:
            (src, m), = self.terms.items()
            return src if m is None else None
        return None


def concat_operators(shapes: list[tuple[int, ...]], axis: int) -> list[Matrix]:
    """Index maps of a concatenation: one 0/1 matrix ``(n_out, n_k)`` per input, C order.

    Examples
    --------
    >>> [m.toarray().tolist() for m in concat_operators([(1,), (2,)], 0)]
    [[[1.0], [0.0], [0.0]], [[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]]]
    """
    sizes = [int(np.prod(s)) for s in shapes]
    out_shape = list(shapes[0])
    out_shape[axis] = sum(s[axis] for s in shapes)
    n_out = int(np.prod(out_shape))
    pos = np.arange(n_out).reshape(out_shape)
    cuts = np.cumsum([s[axis] for s in shapes])[:-1]
    mats = []
    for part, n_k in zip(np.split(pos, cuts, axis=axis), sizes):
        mats.append(sp.csr_matrix((np.ones(n_k), (part.ravel(), np.arange(n_k))), shape=(n_out, n_k)))
    return mats


def _sum_kernels(forms: list[_Form]) -> dict[str, SharedKernel]:
    """Kernels that survive a sum of ``forms``: those of sources that appear in one form only."""
    count: dict[str, int] = {}
    for f in forms:
        for src in f.terms:
            count[src] = count.get(src, 0) + 1
    return {s: k for f in forms for s, k in f.kernels.items() if count[s] == 1}


def _sum_terms(parts: list[tuple[Matrix | None, _Form]], n_out: int) -> dict[str, Matrix | None]:
    """Terms of ``Σ_k S_k · form_k`` (S_k None = identity), adding the matrices of shared sources."""
    terms: dict[str, Matrix | None] = {}
    for sel, form in parts:
        for src, m in form.terms.items():
            if sel is None:
                new = m
            else:
                new = sel if m is None else sp.csr_matrix(sel @ m)
            if src in terms:
                old = terms[src] if terms[src] is not None else sp.identity(n_out, format="csr")
                terms[src] = sp.csr_matrix(old + (new if new is not None else sp.identity(n_out, format="csr")))
            else:
                terms[src] = new
    return terms


def _clip_nonneg(graph: AnnGraph, stages: list[Stage], src: _Form, max_value: float, name: str, pred: str,
                 shape: tuple[int, ...], close: Callable[..., _Form]) -> _Form:
    """The form of a clipped ReLU of a non-negative form (populations, index maps, sums of them)."""
    pure = src.pure
    prev = next((s for s in stages if s.name == pure), None)
    if prev is not None:
        bound = stage_bound(graph, stages, prev.name)
        if bound is not None and bound <= max_value:
            return src  # already within the clip level
        if prev.kind == "relu" and not prev.rectify and prev.layer == pred and graph.successors(pred) == (name,):
            # ReLU then Clip, and nothing else reads the ReLU: the population represents the clipped value
            prev.layer = name
            return src
    return close(src, "relu", name, shape)  # relay neurons that clip


def plan_dag(graph: AnnGraph, config: ConversionConfig) -> list[Stage]:
    """Split a branching ANN into populations and the linear maps between them.

    Parameters
    ----------
    graph : AnnGraph
        Any graph (chains too; :func:`~spikebridge.conversion.convert.convert`
        uses this planner for graphs with ``Add`` or ``Concat``).
    config : ConversionConfig
        ``maxpool`` decides MaxPool2d layers, as for chains.

    Returns
    -------
    list of Stage
        In topological order; a stage with several sources lists the further
        ``(source, matrix)`` pairs in ``Stage.extra``.

    Raises
    ------
    UnsupportedLayerError
        A layer without a spiking form, or a Softmax that is not the output.
    ConversionError
        A refused or input-level MaxPool2d, or nothing to convert.
    """
    stages: list[Stage] = []
    sizes: dict[str, int] = {"input": int(np.prod(graph.input_shape))}
    used: set[str] = {"input"}
    forms: dict[str, _Form] = {}

    def unique(base: str) -> str:
        return unique_name(base, used)

    def close(form: _Form, kind: str, layer_name: str, shape: tuple[int, ...], rectify: bool = False) -> _Form:
        srcs = list(form.terms)
        op = form.kernels.get(srcs[0])
        stage = Stage(unique(form.named or layer_name), kind, layer_name, srcs[0], None if op is not None else form.matrix(srcs[0]),
                      form.bias, tuple(shape), rectify, operator=op)
        stage.extra = [(s, form.matrix(s)) for s in srcs[1:]]
        stage.extra_operators = {s: form.kernels[s] for s in srcs[1:] if s in form.kernels}
        stages.append(stage)
        sizes[stage.name] = int(np.prod(shape))
        return _Form({stage.name: None}, None, sizes[stage.name], nonneg=True, sizes=sizes)

    def linear(form: _Form, layer: Layer, in_shape: tuple[int, ...], n_out: int) -> _Form:
        m, b = linear_operator(layer, in_shape)
        kernels: dict[str, SharedKernel] = {}
        if m is None:
            terms, bias, kernels = dict(form.terms), form.bias, dict(form.kernels)
        else:
            terms = {s: (m if t is None else sp.csr_matrix(m @ t)) for s, t in form.terms.items()}
            bias = None if form.bias is None else m @ form.bias
        if b is not None:
            bias = b if bias is None else bias + b
        pure = form.pure if SHARED_KERNELS else None
        if pure is not None and pure != "input" or pure == "input" and isinstance(layer, Conv2d):
            # one convolution or pooling of one population (or a convolution of the input): a shared kernel
            if isinstance(layer, Conv2d):
                kernels = {pure: SharedKernel(layer.weight, in_shape, layer.stride, layer.padding)}  # type: ignore[arg-type]
            elif isinstance(layer, (AvgPool2d, GlobalAvgPool2d)):
                kernels = {pure: _pool_kernel(layer, in_shape)}
        named = layer.name if (layer.has_weights or isinstance(layer, (AvgPool2d, GlobalAvgPool2d))) else form.named
        return _Form(terms, bias, n_out, named, nonneg=form.nonneg and m is None and b is None, sizes=sizes,
                     kernels=kernels)

    out_name = graph.output
    if isinstance(graph[out_name], Softmax):
        out_name = graph.predecessor(out_name) or out_name
    for layer in graph.layers:
        name = layer.name
        shape = graph.shapes[name]
        n = int(np.prod(shape))
        if isinstance(layer, Input):
            forms[name] = _Form({"input": None}, None, n, sizes=sizes)
            continue
        preds = graph.predecessors(name)
        src = forms[preds[0]]
        in_shape = graph.input_shape_of(name)
        if isinstance(layer, MaxPool2d) and config.maxpool == "avg":
            warnings.warn(
                f"MaxPool2d '{name}' replaced by average pooling (maxpool='avg'); "
                "the SNN now approximates a slightly different ANN",
                ConversionWarning,
                stacklevel=3,
            )
            layer = AvgPool2d(name=name, kernel_size=layer.kernel_size, stride=layer.stride, padding=layer.padding)
        if isinstance(layer, Add):
            parts = [(None, forms[p]) for p in preds]
            bias_parts = [f.bias for _, f in parts if f.bias is not None]
            forms[name] = _Form(_sum_terms(parts, n), np.sum(bias_parts, axis=0) if bias_parts else None, n, name,
                                nonneg=all(f.nonneg for _, f in parts), sizes=sizes,
                                kernels=_sum_kernels([f for _, f in parts]))
        elif isinstance(layer, Concat):
            shapes = list(graph.input_shapes_of(name))
            sels = concat_operators(shapes, layer.resolved_axis(len(shapes[0])))
            ins = [forms[p] for p in preds]
            bias = None
            if any(f.bias is not None for f in ins):
                bias = sum((sel @ f.bias for sel, f in zip(sels, ins) if f.bias is not None), np.zeros(n))
            named = next((f.named for f in reversed(ins) if f.named), None)
            forms[name] = _Form(_sum_terms(list(zip(sels, ins)), n), bias, n, named,
                                nonneg=all(f.nonneg for f in ins), sizes=sizes)
        elif isinstance(layer, (AvgPool2d, GlobalAvgPool2d)) and src.nonneg:
            # pooling of spiking activity: a population of its own (see the convert module docstring),
            # or (avgpool="fold") the start of the linear map of whatever consumes it
            pooled = linear(src, layer, in_shape, n)
            forms[name] = pooled if config.avgpool == "fold" and name != out_name else close(pooled, "pool", name, shape)
        elif is_linear(layer):
            forms[name] = linear(src, layer, in_shape, n)
        elif isinstance(layer, ReLU):
            if not src.nonneg:
                forms[name] = close(src, "relu", name, shape)
            elif layer.max_value is None:
                forms[name] = src
            else:
                forms[name] = _clip_nonneg(graph, stages, src, layer.max_value, name, preds[0], shape, close)
        elif isinstance(layer, MaxPool2d):
            if config.maxpool == "refuse":
                raise ConversionError(
                    f"MaxPool2d '{name}' has no exact spiking form; convert with maxpool='gate' or maxpool='avg', "
                    "or retrain the model with AvgPool2d"
                )
            if src.pure == "input" or set(src.terms) == {"input"}:
                raise ConversionError(
                    f"MaxPool2d '{name}' acts directly on the input, which is a current, not spikes; "
                    "use maxpool='avg' or apply the pooling to the data before conversion"
                )
            if src.pure is None:
                # max(relu(x)) == relu(max(x)): the population before the gate represents relu(x)
                src = close(src, "relu", preds[0], in_shape, rectify=True)
            gate = _Form(src.terms, None, n, name, sizes=sizes)
            gate_kernel = _gate_kernel(layer, in_shape)
            gate.terms = {next(iter(src.terms)): gate_kernel.csr()}
            gate.kernels = {next(iter(src.terms)): gate_kernel} if SHARED_KERNELS else {}
            forms[name] = close(gate, "gate", name, shape)
        elif isinstance(layer, Softmax):
            if name != graph.output:
                raise UnsupportedLayerError(
                    name, "Softmax", SUPPORTED, hint="Softmax is only supported as the last layer (it is dropped)"
                )
        else:
            raise UnsupportedLayerError(name, layer.type_name, SUPPORTED)
    final = forms[out_name]
    pure = final.pure
    if pure == "input" or not stages and pure is not None:
        raise ConversionError(f"model '{graph.name}' has no layer to convert (only {[l.type_name for l in graph]})")
    if pure is not None and pure == stages[-1].name:
        stages[-1].kind = "output"
    else:
        close(final, "output", out_name, graph.shapes[out_name])
    return stages
