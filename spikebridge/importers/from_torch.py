"""Import PyTorch models: ``nn.Sequential`` and modules whose traced forward uses supported layers.

Supported (``torch.nn``): Linear, Conv2d (groups=1, dilation=1, zero padding, integer or
resolvable ``'same'``/``'valid'`` padding), AvgPool2d, MaxPool2d, AdaptiveAvgPool2d((1, 1))
(as GlobalAvgPool2d), Flatten, ReLU, Softmax (last dim), Dropout*/Identity (dropped) and
BatchNorm1d/2d directly after a Linear/Conv2d (folded with the running statistics, i.e. the
inference behaviour).  Clipped ReLUs become ``ReLU(max_value=c)``: ReLU6, Hardtanh(0, c) and
:class:`spikebridge.learning.qcfs.QCFS` (at its trained clip level λ; the quantisation is left to
the spikes).  In traced ``forward`` methods also ``torch.relu``/``F.relu``/``x.relu()``,
``F.relu6``, ``F.hardtanh(x, 0, c)``, ``torch.clamp(x, 0, c)``/``x.clamp(0, c)``,
``torch.flatten(x, 1)``, ``x.view(x.size(0), -1)``/``x.reshape(...)``, ``F.max_pool2d``,
``F.avg_pool2d``, ``F.dropout`` and ``F.softmax(x, dim=-1)``, and the joins of residual networks:
``a + b`` / ``torch.add(a, b)`` / ``a += b`` (an ``Add`` layer; a ResNet ``BasicBlock`` with a
``downsample`` shortcut of 1×1 convolution + BatchNorm is a branch like any other) and
``torch.cat([a, b], dim=1)`` (a ``Concat`` layer).
"""

from __future__ import annotations

import copy
import operator
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .._optional import import_optional
from ..errors import ConversionWarning, ModelFormatError, UnsupportedLayerError, ValidationError
from ..ir.graph import AnnGraph
from ..ir.layers import RNN, Add, AvgPool2d, Concat, Conv2d, Dense, Flatten, GlobalAvgPool2d, MaxPool2d, ReLU, Softmax
from ._common import GraphBuilder, refuse_unsupported

if TYPE_CHECKING:  # pragma: no cover
    pass

__all__ = ["from_torch", "SUPPORTED_MODULES"]

SUPPORTED_MODULES: tuple[str, ...] = (
    "Linear", "Conv2d", "AvgPool2d", "MaxPool2d", "AdaptiveAvgPool2d((1, 1))", "Flatten", "ReLU", "ReLU6",
    "Hardtanh(0, c)", "QCFS", "Softmax", "Dropout", "Dropout1d", "Dropout2d", "AlphaDropout", "Identity", "BatchNorm1d", "BatchNorm2d",
    "Sequential", "+ / torch.add", "torch.cat", "RNN(nonlinearity='relu')",
)

#: why gated and saturating recurrent layers are refused (shared with the ONNX and Keras importers)
_RELU_RNN = ("convert a ReLU RNN instead: nn.RNN(nonlinearity='relu'), ONNX RNN with Relu or Keras "
             "SimpleRNN(activation='relu') becomes a recurrent spiking network")


def recurrent_refusal(gated: bool) -> str:
    """The reason an LSTM/GRU (``gated``) or a tanh/sigmoid RNN has no spiking form, and what converts."""
    if gated:
        return ("its gates multiply two signals (a sigmoid gate times a state) and rate codes cannot multiply two "
                "spike trains; " + _RELU_RNN)
    return "tanh and sigmoid are signed or saturating and a firing rate is neither; " + _RELU_RNN


_SRC = "PyTorch"


class _Op:
    """One pending IR operation (built once the input shape is known)."""

    def __init__(self, kind: str, name: str, **kwargs: Any) -> None:
        self.kind = kind
        self.name = name
        self.kwargs = kwargs
        #: the op whose output this one reads (None: the op before it in the list)
        self.after: _Op | None = None
        #: the ops whose outputs a join ("add", "concat") reads, in order
        self.joins: list[_Op] = []


#: stands for the graph input in ``_Op.after`` / ``_Op.joins``
_INPUT = _Op("input", "input")


def _np(t: Any) -> np.ndarray:
    return t.detach().cpu().double().numpy().copy()


def _pair(v: Any) -> tuple[int, int]:
    if isinstance(v, (tuple, list)):
        return (int(v[0]), int(v[1])) if len(v) == 2 else (int(v[0]), int(v[0]))
    return (int(v), int(v))


def _unsupported(name: str, type_name: str, hint: str | None = None) -> UnsupportedLayerError:
    return UnsupportedLayerError(name, type_name, SUPPORTED_MODULES, source=_SRC, hint=hint)


def _conv_op(name: str, m: Any) -> _Op:
    if m.groups != 1:
        raise _unsupported(name, f"Conv2d(groups={m.groups})", "only groups=1 (no grouped/depthwise convolution)")
    if _pair(m.dilation) != (1, 1):
        raise _unsupported(name, f"Conv2d(dilation={m.dilation})", "only dilation=1")
    if m.padding_mode != "zeros":
        raise _unsupported(name, f"Conv2d(padding_mode={m.padding_mode!r})", "only zero padding")
    k = _pair(m.kernel_size)
    pad = m.padding
    if isinstance(pad, str):
        if pad == "valid":
            pad = (0, 0)
        else:  # 'same' (PyTorch allows it only with stride 1)
            if k[0] % 2 == 0 or k[1] % 2 == 0:
                raise _unsupported(
                    name, f"Conv2d(kernel_size={k}, padding='same')",
                    "'same' padding with an even kernel pads asymmetrically; use an odd kernel or explicit padding",
                )
            pad = ((k[0] - 1) // 2, (k[1] - 1) // 2)
    bias = None if m.bias is None else _np(m.bias)
    return _Op("conv", name, weight=_np(m.weight), bias=bias, stride=_pair(m.stride), padding=_pair(pad))


def _pool_check(name: str, type_name: str, *, ceil_mode: bool, dilation: Any = 1, return_indices: bool = False,
                count_include_pad: bool = True, padding: Any = 0, divisor_override: Any = None) -> None:
    if ceil_mode:
        raise _unsupported(name, f"{type_name}(ceil_mode=True)", "only ceil_mode=False (floor)")
    if _pair(dilation) != (1, 1):
        raise _unsupported(name, f"{type_name}(dilation={dilation})", "only dilation=1")
    if return_indices:
        raise _unsupported(name, f"{type_name}(return_indices=True)")
    if divisor_override:
        raise _unsupported(name, f"{type_name}(divisor_override={divisor_override})")
    if not count_include_pad and _pair(padding) != (0, 0):
        raise _unsupported(
            name, f"{type_name}(count_include_pad=False, padding={padding})",
            "the average must count the zero padding (count_include_pad=True) or use padding=0",
        )


def _rnn_ops(name: str, m: Any) -> list[_Op]:
    """One ``rnn`` op per layer of an ``nn.RNN(nonlinearity="relu")``; every op returns the whole sequence."""
    if m.nonlinearity != "relu":
        raise _unsupported(name, f"RNN(nonlinearity={m.nonlinearity!r})", recurrent_refusal(False))
    if m.bidirectional:
        raise _unsupported(name, "RNN(bidirectional=True)",
                           "a backward pass needs the whole sequence before the first output; use one direction")
    if getattr(m, "proj_size", 0):
        raise _unsupported(name, f"RNN(proj_size={m.proj_size})")
    ops = []
    for k in range(m.num_layers):
        bias = None
        if m.bias:
            bias = _np(getattr(m, f"bias_ih_l{k}")) + _np(getattr(m, f"bias_hh_l{k}"))
        ops.append(_Op("rnn", name if m.num_layers == 1 else f"{name}.l{k}", weight_ih=_np(getattr(m, f"weight_ih_l{k}")),
                       weight_hh=_np(getattr(m, f"weight_hh_l{k}")), bias=bias, return_sequences=True,
                       batch_first=bool(m.batch_first)))
    return ops


def _module_ops(name: str, m: Any) -> list[_Op]:
    """Translate one leaf module into pending ops (empty for no-ops)."""
    tname = type(m).__name__
    nn = import_optional("torch.nn", "importing PyTorch models")
    if isinstance(m, nn.RNN):
        return _rnn_ops(name or "rnn", m)
    if isinstance(m, (nn.LSTM, nn.GRU, nn.LSTMCell, nn.GRUCell, nn.RNNCell)):
        if isinstance(m, nn.RNNCell) and m.nonlinearity == "relu":
            raise _unsupported(name or tname, "RNNCell", "a cell steps one element per call; use nn.RNN(nonlinearity='relu') "
                               "over the whole sequence")
        raise _unsupported(name or tname, tname, recurrent_refusal(not isinstance(m, nn.RNNCell)))
    if isinstance(m, nn.Sequential):
        ops: list[_Op] = []
        for child_name, child in m.named_children():
            ops.extend(_module_ops(f"{name}.{child_name}" if name else child_name, child))
        return ops
    if isinstance(m, nn.Linear):
        bias = None if m.bias is None else _np(m.bias)
        return [_Op("dense", name, weight=_np(m.weight), bias=bias)]
    if isinstance(m, nn.Conv2d):
        return [_conv_op(name, m)]
    if isinstance(m, nn.MaxPool2d):
        _pool_check(name, tname, ceil_mode=m.ceil_mode, dilation=m.dilation, return_indices=m.return_indices)
        return [_Op("maxpool", name, kernel_size=_pair(m.kernel_size),
                    stride=_pair(m.stride if m.stride is not None else m.kernel_size), padding=_pair(m.padding))]
    if isinstance(m, nn.AvgPool2d):
        _pool_check(name, tname, ceil_mode=m.ceil_mode, count_include_pad=m.count_include_pad, padding=m.padding,
                    divisor_override=m.divisor_override)
        return [_Op("avgpool", name, kernel_size=_pair(m.kernel_size),
                    stride=_pair(m.stride if m.stride is not None else m.kernel_size), padding=_pair(m.padding))]
    if isinstance(m, nn.AdaptiveAvgPool2d):
        if _pair(m.output_size) != (1, 1):
            raise _unsupported(
                name, f"AdaptiveAvgPool2d({m.output_size})",
                "only output size (1, 1) (global average pooling); use AvgPool2d for other sizes",
            )
        return [_Op("gap", name)]
    if isinstance(m, nn.Flatten):
        if m.start_dim != 1 or m.end_dim != -1:
            raise _unsupported(name, f"Flatten(start_dim={m.start_dim}, end_dim={m.end_dim})", "only Flatten(1, -1)")
        return [_Op("flatten", name)]
    if isinstance(m, nn.ReLU):
        return [_Op("relu", name)]
    if isinstance(m, nn.Hardtanh):  # nn.ReLU6 is Hardtanh(0, 6)
        return [_clip_op(name, f"{tname}(min_val={m.min_val}, max_val={m.max_val})", m.min_val, m.max_val)]
    if _is_qcfs(m):
        # the trained clip level; the L-level quantisation is what the spikes do at T steps
        return [_Op("relu", name, max_value=m.clip_level, qcfs_levels=m.levels)]
    if isinstance(m, nn.Softmax):
        if m.dim not in (None, -1, 1):
            raise _unsupported(name, f"Softmax(dim={m.dim})", "only softmax over the feature dimension (dim=-1 or 1)")
        return [_Op("softmax", name)]
    if isinstance(m, (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.AlphaDropout, nn.Identity)):
        return []
    if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
        if m.running_mean is None or m.running_var is None:
            raise _unsupported(name, f"{tname}(track_running_stats=False)", "batch norm needs running statistics to fold")
        return [_Op(
            "bn", name, bn_type=tname,
            gamma=None if m.weight is None else _np(m.weight), beta=None if m.bias is None else _np(m.bias),
            mean=_np(m.running_mean), var=_np(m.running_var), eps=float(m.eps),
        )]
    raise _unsupported(name or type(m).__name__, tname)


def _is_qcfs(m: Any) -> bool:
    """Whether ``m`` is a :class:`spikebridge.learning.qcfs.QCFS` layer.

    Recognised by its class's module and name: importers sit below ``learning/`` and do not import it.
    """
    t = type(m)
    return t.__name__ == "QCFS" and t.__module__ == "spikebridge.learning.qcfs"


def _clip_op(name: str, shown: str, lo: Any, hi: Any) -> _Op:
    """A clipped ReLU ``min(max(x, 0), hi)`` from a clamp to ``[lo, hi]`` (``lo`` must be 0)."""
    if lo is None or float(lo) != 0.0:
        raise _unsupported(name, shown, "only clips with a lower bound of 0 (a clipped ReLU: ReLU6, Hardtanh(0, c), "
                                        "clamp(x, 0, c))")
    if hi is None:
        return _Op("relu", name)
    if not float(hi) > 0:
        raise _unsupported(name, shown, "the upper bound of a clipped ReLU must be > 0")
    return _Op("relu", name, max_value=float(hi))


def _refuse_unsupported_modules(module: Any) -> None:
    """With two or more built-in leaf modules of unsupported types (``nn.LSTM``, ``nn.Tanh``), name them all
    at once, most specific first; a single one is left to :func:`_module_ops`, whose message says more.
    User-defined modules are not judged here: torch.fx traces through them."""
    nn = import_optional("torch.nn", "importing PyTorch models")
    ok = (nn.Linear, nn.Conv2d, nn.AvgPool2d, nn.MaxPool2d, nn.AdaptiveAvgPool2d, nn.Flatten, nn.ReLU, nn.Hardtanh,
          nn.Softmax, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.AlphaDropout, nn.Identity, nn.BatchNorm1d, nn.BatchNorm2d,
          nn.Sequential, nn.RNN)
    found = [(name, type(m).__name__) for name, m in module.named_modules()
             if name and type(m).__module__.startswith("torch.nn.") and not isinstance(m, ok)]
    if len(found) > 1:
        refuse_unsupported(found, SUPPORTED_MODULES, _SRC)


# -- torch.fx tracing of custom modules ---------------------------------------

def _max_pool2d_sig(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=False):  # noqa: ANN001,ANN202
    return locals()


def _avg_pool2d_sig(input, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,  # noqa: ANN001,ANN202
                    divisor_override=None):
    return locals()


def _flatten_sig(input, start_dim=0, end_dim=-1):  # noqa: ANN001,ANN202
    return locals()


def _softmax_sig(input, dim=None, _stacklevel=3, dtype=None):  # noqa: ANN001,ANN202
    return locals()


def _cat_sig(tensors, dim=0, *, out=None):  # noqa: ANN001,ANN202
    return locals()


def _hardtanh_sig(input, min_val=-1.0, max_val=1.0, inplace=False):  # noqa: ANN001,ANN202
    return locals()


def _clamp_sig(input, min=None, max=None, *, out=None):  # noqa: ANN001,ANN202,A002
    return locals()


def _traced_ops(module: Any, root_name: str) -> tuple[list[_Op], _Op]:
    """Pending ops of a traced module, and the op whose output ``forward`` returns."""
    torch = import_optional("torch", "importing PyTorch models")
    fx = import_optional("torch.fx", "importing PyTorch models")
    F = torch.nn.functional
    class _Tracer(fx.Tracer):  # type: ignore[misc,name-defined]
        # a QCFS layer is one activation, not the floor/clamp arithmetic of its forward
        def is_leaf_module(self, m: Any, qualname: str) -> bool:
            return _is_qcfs(m) or bool(super().is_leaf_module(m, qualname))

    try:
        tracer = _Tracer()
        fx_graph = tracer.trace(module)
        traced = fx.GraphModule(tracer.root, fx_graph)
    except Exception as err:  # fx raises many types (TraceError, TypeError, NotImplementedError ...)
        raise UnsupportedLayerError(
            root_name, f"{type(module).__name__} (forward not traceable)", SUPPORTED_MODULES, source=_SRC,
            hint=f"torch.fx could not trace forward ({type(err).__name__}: {err}); wrap the layers in nn.Sequential",
        ) from err
    modules = dict(traced.named_modules())
    ops: list[_Op] = []
    alias: dict[Any, _Op] = {}  # fx tensor node -> the op producing its value (_INPUT for the input)
    result = _INPUT  # the op whose output forward returns
    size_nodes: set[Any] = set()  # nodes that hold x.size()/x.shape values, not tensors
    rnn_calls: dict[Any, tuple[_Op, int]] = {}  # rnn(x) nodes (a tuple) -> (their last rnn op, number of layers)
    final_states: dict[Any, tuple[_Op, int]] = {}  # h_n nodes -> the same

    def last_step(node: Any, op: _Op, via_hn: bool) -> None:
        """``node`` selects the last hidden state of the RNN layer ``op``: it returns that state only."""
        users = [u for u in (node.args[0].users if not via_hn else ()) if u is not node]
        if users or op.kwargs.get("return_sequences") is False:
            raise _unsupported(node.name, "an RNN output used both whole and at its last element",
                               "read either every element or the last one")
        if not (ops and ops[-1] is op):
            raise _unsupported(node.name, "the last element of an RNN output read after other layers")
        op.kwargs["return_sequences"] = False
        alias[node] = op

    def chain_input(node: Any, tensor_args: Sequence[Any]) -> None:
        if len(tensor_args) != 1 or tensor_args[0] not in alias:
            raise UnsupportedLayerError(
                node.name, f"{node.op} {getattr(node.target, '__name__', node.target)}", SUPPORTED_MODULES, source=_SRC,
                hint="only + / torch.add and torch.cat join several tensors; other layers take one input",
            )
        alias[node] = alias[tensor_args[0]]  # a no-op unless ops follow (see emit)

    def emit(node: Any, new: list[_Op]) -> None:
        """Append the ops of ``node`` (after chain_input), reading from its input tensor."""
        if not new:
            return
        if new[0].kind == "bn" and len(node.args[0].users) > 1:
            raise _unsupported(node.name, "BatchNorm of a tensor that is also used elsewhere",
                               "batch norm is folded into the layer before it, which must feed nothing else")
        new[0].after = alias[node]
        ops.extend(new)
        alias[node] = new[-1]

    def join(node: Any, kind: str, tensor_args: Sequence[Any], **kwargs: Any) -> None:
        if len(tensor_args) < 2 or any(t not in alias for t in tensor_args):
            raise _unsupported(node.name, f"{kind} of {len(tensor_args)} tensor(s) and constants",
                               "a residual sum or concatenation joins two or more computed tensors")
        op = _Op(kind, node.name, **kwargs)
        op.joins = [alias[t] for t in tensor_args]
        ops.append(op)
        alias[node] = op

    def tensors(values: Any) -> list[Any]:
        found: list[Any] = []
        for v in (values if isinstance(values, (list, tuple)) else [values]):
            if isinstance(v, fx.Node) and v not in size_nodes:
                found.append(v)
            elif isinstance(v, (list, tuple)):
                found.extend(tensors(v))
        return found

    for node in traced.graph.nodes:
        if node.op == "placeholder":
            if alias:
                raise UnsupportedLayerError(node.name, "second forward() argument", SUPPORTED_MODULES, source=_SRC,
                                            hint="only models with one input tensor are supported")
            alias[node] = _INPUT
            continue
        if node.op == "output":
            out = tensors(node.args[0])
            if len(out) != 1 or out[0] not in alias:
                raise UnsupportedLayerError(node.name, "several outputs", SUPPORTED_MODULES, source=_SRC,
                                            hint="forward must return a single tensor")
            result = alias[out[0]]
            continue
        if node.op == "get_attr":
            raise UnsupportedLayerError(node.name, f"parameter access {node.target}", SUPPORTED_MODULES, source=_SRC,
                                        hint="use parameters only through nn.Linear/nn.Conv2d modules")
        # x.size(...) / x.shape feed views and are not part of the chain
        if (node.op == "call_method" and node.target == "size") or (
            node.op == "call_function" and node.target is getattr and node.args[1:] == ("shape",)
        ) or (node.op == "call_function" and node.target is operator.getitem and node.args[0] in size_nodes):
            size_nodes.add(node)
            continue
        if node.op == "call_function" and node.target is operator.getitem and node.args[0] in rnn_calls:
            # (output, h_n) = rnn(x): the output sequence, or the final hidden states
            if node.args[1] == 0:
                alias[node] = alias[node.args[0]]
            elif node.args[1] == 1:
                final_states[node] = rnn_calls[node.args[0]]
            else:
                raise _unsupported(node.name, f"getitem {node.args[1]} of an RNN's outputs")
            continue
        if node.op == "call_function" and node.target is operator.getitem and node.args[0] in final_states:
            # h_n[-1]: the last hidden state of the last layer
            n_layers = final_states[node.args[0]][1]
            if node.args[1] not in (-1, n_layers - 1):
                raise _unsupported(node.name, f"h_n[{node.args[1]}]",
                                   "only the last layer's final state h_n[-1] (an RNN layer that is not last feeds no read-out)")
            last_step(node, final_states[node.args[0]][0], via_hn=True)
            continue
        if (node.op == "call_method" and node.target == "squeeze" and node.args[0] in final_states
                and tuple(node.args[1:]) in ((0,), ()) and final_states[node.args[0]][1] == 1):
            last_step(node, final_states[node.args[0]][0], via_hn=True)  # h_n.squeeze(0) of a one-layer RNN
            continue
        if node.op == "call_function" and node.target is operator.getitem and node.args[0] in alias \
                and alias[node.args[0]].kind == "rnn":
            op = alias[node.args[0]]
            idx = node.args[1] if isinstance(node.args[1], tuple) else (node.args[1],)
            whole = slice(None, None, None)
            batch_first = bool(op.kwargs.get("batch_first", True))
            wanted = [(whole, -1), (whole, -1, whole)] if batch_first else [(-1,), (-1, whole), (-1, whole, whole)]
            if idx not in wanted:
                raise _unsupported(node.name, f"indexing {node.args[1]} of an RNN output",
                                   "only the last element, out[:, -1] (batch_first) or out[-1] (time first)")
            last_step(node, op, via_hn=False)
            continue
        tensor_args = tensors(list(node.args) + list(node.kwargs.values()))
        if node.op == "call_module":
            chain_input(node, tensor_args)
            emit(node, _module_ops(str(node.target), modules[node.target]))
            if isinstance(modules[node.target], torch.nn.RNN):
                rnn_calls[node] = (alias[node], int(modules[node.target].num_layers))
            continue
        target = node.target
        tname = getattr(target, "__name__", str(target))
        if (node.op == "call_function" and target in (operator.add, operator.iadd, torch.add)) or (
            node.op == "call_method" and target in ("add", "add_")
        ):
            if node.kwargs.get("alpha", 1) != 1 or len(node.args) != 2:
                raise _unsupported(node.name, f"{tname}({', '.join(map(str, node.args))}, alpha=...)",
                                   "only the plain sum of two tensors")
            join(node, "add", tensor_args)
        elif (node.op == "call_function" and target in (torch.cat, torch.concat, getattr(torch, "concatenate", torch.cat))):
            a = _cat_sig(*node.args, **node.kwargs)
            dim = int(a["dim"])
            if dim == 0:
                raise _unsupported(node.name, "cat(dim=0)", "concatenation along the batch dimension")
            join(node, "concat", tensors(list(a["tensors"])), axis=dim - 1 if dim > 0 else dim)
        elif node.op == "call_function" and target in (torch.relu, F.relu, torch.relu_) or (
            node.op == "call_method" and target in ("relu", "relu_")
        ):
            chain_input(node, tensor_args)
            emit(node, [_Op("relu", node.name)])
        elif node.op == "call_function" and target in (F.relu6, F.hardtanh):
            chain_input(node, tensor_args)
            if target is F.relu6:
                emit(node, [_Op("relu", node.name, max_value=6.0)])
            else:
                a = _hardtanh_sig(*node.args, **node.kwargs)
                emit(node, [_clip_op(node.name, f"hardtanh(min_val={a['min_val']}, max_val={a['max_val']})",
                                     a["min_val"], a["max_val"])])
        elif (node.op == "call_function" and target in (torch.clamp, torch.clip)) or (
            node.op == "call_method" and target in ("clamp", "clip", "clamp_", "clip_")
        ):
            chain_input(node, tensor_args)
            a = _clamp_sig(*node.args, **node.kwargs)
            emit(node, [_clip_op(node.name, f"clamp(min={a['min']}, max={a['max']})", a["min"], a["max"])])
        elif node.op == "call_function" and target in (F.dropout, F.dropout1d, F.dropout2d, F.alpha_dropout):
            chain_input(node, tensor_args)
        elif (node.op == "call_function" and target is torch.flatten) or (node.op == "call_method" and target == "flatten"):
            chain_input(node, tensor_args)
            args = _flatten_sig(*node.args, **node.kwargs)
            if args["start_dim"] != 1 or args["end_dim"] != -1:
                raise _unsupported(node.name, f"flatten(start_dim={args['start_dim']}, end_dim={args['end_dim']})",
                                   "only flatten(x, 1) (keep the batch dimension)")
            emit(node, [_Op("flatten", node.name)])
        elif node.op == "call_method" and target in ("view", "reshape") or (
            node.op == "call_function" and target is torch.reshape
        ):
            chain_input(node, tensor_args)
            dims = list(node.args[1:]) + list(node.kwargs.values())
            if len(dims) == 1 and isinstance(dims[0], (list, tuple)):
                dims = list(dims[0])
            first_ok = len(dims) == 2 and (dims[0] in size_nodes or dims[0] == -1 or isinstance(dims[0], int))
            second = dims[1] if len(dims) == 2 else None
            if not first_ok or not isinstance(second, int) or (dims[0] == -1 and second == -1):
                raise _unsupported(node.name, f"{tname}{tuple(str(d) for d in dims)}",
                                   "only flattening views such as x.view(x.size(0), -1)")
            emit(node, [_Op("flatten", node.name, expect=None if second == -1 else second)])
        elif node.op == "call_function" and target is F.max_pool2d:
            chain_input(node, tensor_args)
            a = _max_pool2d_sig(*node.args, **node.kwargs)
            _pool_check(node.name, "max_pool2d", ceil_mode=a["ceil_mode"], dilation=a["dilation"],
                        return_indices=a["return_indices"])
            k = _pair(a["kernel_size"])
            emit(node, [_Op("maxpool", node.name, kernel_size=k, stride=_pair(a["stride"] or k), padding=_pair(a["padding"]))])
        elif node.op == "call_function" and target is F.avg_pool2d:
            chain_input(node, tensor_args)
            a = _avg_pool2d_sig(*node.args, **node.kwargs)
            _pool_check(node.name, "avg_pool2d", ceil_mode=a["ceil_mode"], count_include_pad=a["count_include_pad"],
                        padding=a["padding"], divisor_override=a["divisor_override"])
            k = _pair(a["kernel_size"])
            emit(node, [_Op("avgpool", node.name, kernel_size=k, stride=_pair(a["stride"] or k), padding=_pair(a["padding"]))])
        elif (node.op == "call_function" and target in (F.softmax, torch.softmax)) or (
            node.op == "call_method" and target == "softmax"
        ):
            chain_input(node, tensor_args)
            a = _softmax_sig(*node.args, **node.kwargs)
            if a["dim"] not in (-1, 1):
                raise _unsupported(node.name, f"softmax(dim={a['dim']})", "only softmax over the feature dimension")
            emit(node, [_Op("softmax", node.name)])
        else:
            raise _unsupported(node.name, f"{node.op} {tname}",
                               "in a traced forward only relu, flatten, view/reshape to (N, -1), max/avg pooling, "
                               "dropout, softmax, + / torch.add and torch.cat calls are understood besides "
                               "supported modules")
    return ops, result


def _infer_input_shape(ops: list[_Op], model_name: str) -> tuple[int, ...]:
    for op in ops:
        if op.kind == "rnn":
            raise ValidationError(
                f"PyTorch model '{model_name}': input_shape is required for models that start with an RNN ('{op.name}'); "
                f"pass input_shape=(T, {op.kwargs['weight_ih'].shape[1]}) (sequence length, features; per sample)",
                attr="input_shape",
            )
        if op.kind == "dense":
            return (int(op.kwargs["weight"].shape[1]),)
        if op.kind in ("conv", "maxpool", "avgpool", "gap"):
            need = "Conv2d" if op.kind == "conv" else "pooling"
            channels = f"({op.kwargs['weight'].shape[1]}, H, W)" if op.kind == "conv" else "(C, H, W)"
            raise ValidationError(
                f"PyTorch model '{model_name}': input_shape is required for models that start with {need} layers "
                f"('{op.name}'); pass input_shape={channels} (per sample, channels-first, without the batch dimension)",
                attr="input_shape",
            )
    raise ValidationError(
        f"PyTorch model '{model_name}': cannot infer the input shape (no Linear layer); pass input_shape=",
        attr="input_shape",
    )


_KIND_TO_LAYER = {"dense": Dense, "conv": Conv2d, "maxpool": MaxPool2d, "avgpool": AvgPool2d, "gap": GlobalAvgPool2d,
                  "flatten": Flatten, "relu": ReLU, "softmax": Softmax, "add": Add, "concat": Concat, "rnn": RNN}


def _pickled_classes(path: Path) -> list[str]:
    """Dotted names of the classes a ``torch.save`` zip file's pickle refers to, read without unpickling.

    Only the pickle's opcodes are scanned (:mod:`pickletools`), so no code of the file runs.
    A state dict names ``collections.OrderedDict`` and ``torch._utils`` rebuild helpers; a whole
    saved model names its module classes (``torch.nn.modules...``, ``__main__.Net``).
    """
    import pickletools
    import zipfile

    try:
        with zipfile.ZipFile(path) as z:
            name = next((n for n in z.namelist() if n.endswith("data.pkl")), None)
            if name is None:
                return []
            data = z.read(name)
    except (zipfile.BadZipFile, OSError, KeyError):
        return []
    found: list[str] = []
    strings: list[str] = []
    try:
        for op, arg, _pos in pickletools.genops(data):
            if isinstance(arg, str) and "UNICODE" in op.name or op.name in ("BINSTRING", "SHORT_BINSTRING"):
                strings.append(str(arg))
            elif op.name == "GLOBAL":
                found.append(str(arg).replace(" ", "."))
            elif op.name == "STACK_GLOBAL" and len(strings) >= 2:
                found.append(f"{strings[-2]}.{strings[-1]}")
    except Exception:  # a damaged pickle: torch.load reports it
        return found
    return found


def _model_class(path: Path) -> str | None:
    """The first model class a saved file pickles (None for a state dict)."""
    plain = ("collections.", "torch._utils.", "torch.storage", "torch.serialization", "builtins.", "numpy.", "_codecs.")
    for name in _pickled_classes(path):
        if name.startswith(plain) or (name.startswith("torch.") and name.split(".")[-1].endswith("Storage")):
            continue
        if name in ("torch.device", "torch.Size", "torch.float32", "torch.dtype"):
            continue
        return name
    return None


def _load_state_dict_file(path: Path, architecture: Any) -> Any:
    torch = import_optional("torch", "reading PyTorch state-dict files")
    whole = _model_class(path)
    if whole is not None:
        raise ModelFormatError(
            f"PyTorch file '{path}' holds a whole pickled model ({whole}), not a state dict; spikebridge never unpickles "
            "code: save its weights with torch.save(model.state_dict(), path) and pass architecture=<an instance of "
            "the class>, or pass the nn.Module object itself (with input_shape= for a CNN)"
        )
    if architecture is None:
        raise ValidationError(
            f"PyTorch file '{path}' holds only weights; pass architecture=<an nn.Module instance of the same "
            "class> so they can be loaded into it (and input_shape=(C, H, W) for a CNN)",
            attr="architecture",
        )
    if not isinstance(architecture, torch.nn.Module):
        raise ValidationError(
            f"architecture must be a torch.nn.Module instance, got {type(architecture).__name__}", attr="architecture"
        )
    try:
        # weights_only=True: never unpickle arbitrary objects from a file
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises RuntimeError/UnpicklingError/EOFError/zip errors for bad files
        text = str(err).splitlines()[0] if str(err) else type(err).__name__
        hint = ""
        if "weights_only" in str(err) or "Unsupported global" in str(err):
            hint = (" The file seems to hold a pickled module; spikebridge loads only state dicts "
                    "(torch.save(model.state_dict(), path)) and never unpickles code.")
        raise ModelFormatError(f"PyTorch file '{path}' could not be read as a state dict ({text}).{hint}") from err
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ModelFormatError(f"PyTorch file '{path}' holds a {type(state).__name__}, not a state dict")
    model = copy.deepcopy(architecture)  # do not modify the caller's module
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise ModelFormatError(
            f"PyTorch file '{path}' does not fit architecture {type(architecture).__name__}: {err}"
        ) from err
    return model


def from_torch(
    source: Any,
    *,
    input_shape: Sequence[int] | None = None,
    architecture: Any = None,
    name: str | None = None,
    task: str | None = None,
) -> AnnGraph:
    """Import a PyTorch model.

    Parameters
    ----------
    source : torch.nn.Module or path
        A module (``nn.Sequential`` or a module whose ``forward`` fx-traces to (a DAG of)
        supported layers), or a ``.pt``/``.pth`` file written by ``torch.save(model.state_dict())``.
    input_shape : sequence of int, optional
        Per-sample input shape without the batch dimension, channels-first (``(C, H, W)``).
        Inferred from the first ``Linear`` layer for MLPs; required for CNNs.
    architecture : torch.nn.Module, optional
        Required with a state-dict file: a module of the right class; it is copied, not modified.
    name : str, optional
        Graph name (default: the module's class name).
    task : {"classification", "regression"}, optional
        Recorded in the metadata (default: ``"classification"`` if the model ends with softmax, else unset).

    Returns
    -------
    AnnGraph
        Weights in float64, BatchNorm folded into the preceding layer with its running statistics
        (the behaviour of ``model.eval()``); Dropout/Identity are dropped.

    Raises
    ------
    UnsupportedLayerError
        For any other layer or call (its module path, type and the supported list are named).
    ValidationError
        Missing ``input_shape`` for CNNs, NaN/Inf weights or inconsistent shapes.
    ModelFormatError
        Unreadable state-dict file.
    MissingDependencyError
        torch is not installed.

    Examples
    --------
    >>> import torch
    >>> net = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU(), torch.nn.Linear(3, 2))
    >>> from_torch(net).shapes["2"]
    (2,)
    """
    torch = import_optional("torch", "importing PyTorch models")
    if isinstance(source, (str, Path)):
        path = Path(source)
        module = _load_state_dict_file(path, architecture)
        where = f"PyTorch file '{path}'"
        src = str(path)
    else:
        if not isinstance(source, torch.nn.Module):
            raise ValidationError(f"from_torch: expected a torch.nn.Module or a file path, got {type(source).__name__}",
                                  attr="source")
        module = source
        where = f"PyTorch model '{type(module).__name__}'"
        stochastic = [n for n, m in module.named_modules() if m.training and isinstance(
            m, (torch.nn.modules.batchnorm._BatchNorm, torch.nn.modules.dropout._DropoutNd))]
        if stochastic:
            warnings.warn(
                f"{where} is in training mode; the import uses inference behaviour (BatchNorm running "
                f"statistics, no Dropout) for {stochastic[:3]}{' ...' if len(stochastic) > 3 else ''}. "
                "Call model.eval() before importing to silence this warning",
                ConversionWarning,
                stacklevel=3,
            )
        src = f"{type(module).__module__}.{type(module).__qualname__}"
    model_name = name or type(module).__name__
    result: _Op | None = None  # the op forward returns (None: the last one)
    _refuse_unsupported_modules(module)
    with torch.no_grad():
        if isinstance(module, torch.nn.Sequential):
            ops = _module_ops("", module)
        else:
            leaf = _leaf_ops_or_none(module)
            ops, result = (leaf, None) if leaf is not None else _traced_ops(module, type(module).__name__)
    shape = tuple(int(s) for s in input_shape) if input_shape is not None else _infer_input_shape(ops, model_name)
    builder = GraphBuilder(where)
    builder.input(shape, name=builder.unique("input"))
    built = {id(_INPUT): builder.layers[0].name}  # op -> name of the layer holding its output
    qcfs_levels: dict[str, int] = {}  # QCFS layers: their quantisation levels L, for the record
    layouts: set[str] = set()
    for op in ops:
        if op.after is not None:  # a branch: attach to the op this one reads
            builder.select(built[id(op.after)])
        if op.kind == "bn":
            kw = dict(op.kwargs)
            builder.fold_batchnorm(op.name, bn_type=kw.pop("bn_type"), supported=SUPPORTED_MODULES, **kw)
            built[id(op)] = builder.layers[builder.cursor].name
            continue
        kwargs = dict(op.kwargs)
        expect = kwargs.pop("expect", None)
        levels = kwargs.pop("qcfs_levels", None)
        if "batch_first" in kwargs:
            # the IR's sequences are (batch, time, features): record the module's own layout for users
            layouts.add("batch_first" if kwargs.pop("batch_first") else "time_first")
        if op.joins:
            kwargs["inputs"] = [built[id(o)] for o in op.joins]
        layer = builder.add(_KIND_TO_LAYER[op.kind], op.name, **kwargs)
        built[id(op)] = layer.name
        if levels is not None:
            qcfs_levels[layer.name] = int(levels)
        if expect is not None and builder.shape != (expect,):
            raise ValidationError(
                f"{where}: view '{layer.name}' reshapes to (N, {expect}) but its input has {builder.shape[0]} values "
                f"per sample (shape {builder.shapes[-2]}); check input_shape={shape}",
                attr="input_shape",
            )
    if result is not None:
        builder.select(built[id(result)])
    meta: dict[str, Any] = {"source": src, "format": "torch"}
    if qcfs_levels:
        meta["qcfs_levels"] = qcfs_levels
    if layouts:
        # evaluate/simulate take (n_samples, T, features); a time-first module took (T, n_samples, features)
        meta["torch_sequence_layout"] = sorted(layouts)[0]
    if task is None and isinstance(builder.last, Softmax):
        task = "classification"
    if task is not None:
        meta["task"] = task
    return builder.build(model_name, meta)


def _leaf_ops_or_none(module: Any) -> list[_Op] | None:
    """A single supported leaf module (e.g. a bare nn.Linear) is imported directly, without tracing."""
    nn = import_optional("torch.nn")
    leaf_types = (nn.Linear, nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.Flatten, nn.ReLU,
                  nn.ReLU6, nn.Hardtanh, nn.Softmax, nn.RNN, nn.LSTM, nn.GRU)
    if type(module) in leaf_types or _is_qcfs(module):
        return _module_ops(type(module).__name__.lower(), module)
    return None
