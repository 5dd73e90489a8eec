"""Import ONNX models (files or ``onnx.ModelProto``) built of supported operators.

The graph may branch and join (ResNet-style residual connections): Add and Sum of two or more
computed tensors become an ``Add`` layer, Concat of computed tensors (not along the batch axis) a
``Concat`` layer.

Supported operators: Gemm (any alpha/beta, transB; transA=0), MatMul (+ Add of a constant bias),
Conv (group=1, dilations=1, symmetric pads), Add / Sum (residual sums), Concat, Relu, Clip with min 0 (a clipped
ReLU, ``ReLU(max_value=max)``: ReLU6, Hardtanh(0, c) and QCFS layers exported from PyTorch), MaxPool, AveragePool (padding only with
count_include_pad=1), GlobalAveragePool, Flatten (axis=1), Reshape to (N, -1), BatchNormalization
(folded into the preceding Conv/Gemm/MatMul), Dropout, Identity, Constant and Softmax (last axis).
Shape arithmetic that PyTorch emits for ``x.view(x.size(0), -1)`` (Shape, Gather, Unsqueeze,
Squeeze, Concat, Cast on constants) is evaluated at import time.

Recurrent models: ``RNN`` with ``activations=["Relu"]`` (forward, no clip, no sequence_lens, zero
initial state, e.g. a ``ConstantOfShape`` of 0) becomes an ``RNN`` layer; around it the
``Transpose`` (time and batch axes), ``Squeeze`` (the direction axis) and ``Gather`` (the last
element, ``out[:, -1]``) that ``torch.onnx.export`` writes for ``nn.RNN(nonlinearity="relu")``
are understood, and MatMul + Add after it is a Dense applied to every element.  LSTM, GRU and
RNNs with Tanh/Sigmoid are refused with the reason.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

import numpy as np

from .._optional import import_optional
from ..errors import ModelFormatError, UnsupportedLayerError, ValidationError
from ..ir.graph import AnnGraph
from ..ir.layers import RNN, Add, AvgPool2d, Concat, Conv2d, Dense, Flatten, GlobalAvgPool2d, MaxPool2d, ReLU, Softmax
from ._common import GraphBuilder, refuse_unsupported

__all__ = ["from_onnx", "SUPPORTED_OPS"]

SUPPORTED_OPS: tuple[str, ...] = (
    "Gemm", "MatMul", "Add", "Sum", "Concat", "Conv", "Relu", "Clip", "MaxPool", "AveragePool", "GlobalAveragePool", "Flatten", "Reshape",
    "BatchNormalization", "Dropout", "Identity", "Constant", "Softmax", "RNN(Relu)",
)
#: the ops of a recurrent model as torch.onnx.export writes it (checked where handled: only the
#: layout moves around an RNN, its zero initial state and the selection of its last element)
_SEQUENCE_OPS = ("RNN", "Transpose", "Squeeze", "Gather", "ConstantOfShape", "Expand")
_SHAPE_OPS = ("Shape", "Gather", "Unsqueeze", "Squeeze", "Concat", "Cast", "Identity")
#: stands for the (unknown) batch size while evaluating shape arithmetic
_BATCH = -(2**40)


def _attrs(node: Any) -> dict[str, Any]:
    onnx = import_optional("onnx")
    out = {}
    for a in node.attribute:
        value = onnx.helper.get_attribute_value(a)
        if isinstance(value, bytes):
            value = value.decode()
        elif isinstance(value, list) and value and isinstance(value[0], bytes):
            value = [v.decode() for v in value]  # e.g. an RNN's activations
        out[a.name] = value
    return out


def _node_name(node: Any, index: int) -> str:
    return node.name or f"{node.op_type}_{index}"


def _unsupported(name: str, op: str, hint: str | None = None) -> UnsupportedLayerError:
    return UnsupportedLayerError(name, op, SUPPORTED_OPS, source="ONNX", hint=hint)


def _read_model(source: Any) -> tuple[Any, str, str]:
    onnx = import_optional("onnx", "importing ONNX models")
    if isinstance(source, onnx.ModelProto):
        return source, "ONNX model", "onnx.ModelProto"
    path = Path(source)
    where = f"ONNX file '{path}'"
    if not path.exists():
        raise FileNotFoundError(f"model file '{path}' does not exist")
    try:
        model = onnx.load(str(path))
    except Exception as err:  # protobuf DecodeError, onnx's own errors, OSError for truncated files
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise ModelFormatError(f"{where} could not be parsed (truncated or not ONNX): {first}") from err
    if not model.graph.node and not model.graph.input:
        raise ModelFormatError(f"{where} holds no graph (empty, truncated or not ONNX)")
    try:
        onnx.checker.check_model(model)
    except Exception as err:  # onnx.checker.ValidationError and friends
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise ModelFormatError(f"{where} is not a valid ONNX model: {first}") from err
    return model, where, str(path)


def _input_shape(model: Any, consts: dict[str, np.ndarray], where: str,
                 input_shape: Sequence[int] | None) -> tuple[str, tuple[int, ...], int]:
    inputs = [i for i in model.graph.input if i.name not in consts]
    if len(inputs) != 1:
        raise _unsupported(
            ",".join(i.name for i in inputs) or "(none)", f"graph with {len(inputs)} inputs",
            "only models with exactly one input tensor are supported",
        )
    inp = inputs[0]
    dims: list[int | None] = []
    for d in inp.type.tensor_type.shape.dim:
        dims.append(int(d.dim_value) if d.HasField("dim_value") else None)
    batch = dims[0] if dims and dims[0] is not None else _BATCH
    if input_shape is not None:
        return inp.name, tuple(int(s) for s in input_shape), batch
    if len(dims) < 2 or any(d is None or d < 1 for d in dims[1:]):
        raise ValidationError(
            f"{where}: input '{inp.name}' has dims {['?' if d is None else d for d in dims]}; every dimension but "
            "the batch must be static. Export with a fixed input size or pass input_shape=(C, H, W)",
            attr="input_shape",
        )
    return inp.name, tuple(int(cast(int, d)) for d in dims[1:]), batch  # None ruled out above


def _eval_shape_op(node: Any, vals: list[np.ndarray], attrs: dict[str, Any]) -> np.ndarray:
    op = node.op_type
    if op == "Gather":
        return np.take(vals[0], vals[1].astype(np.int64), axis=int(attrs.get("axis", 0)))
    if op == "Unsqueeze":
        axes = attrs.get("axes", vals[1].tolist() if len(vals) > 1 else [0])
        out = vals[0]
        for ax in sorted(int(a) for a in axes):
            out = np.expand_dims(out, ax)
        return out
    if op == "Squeeze":
        axes = attrs.get("axes", vals[1].tolist() if len(vals) > 1 else None)
        return np.squeeze(vals[0], axis=None if axes is None else tuple(int(a) for a in axes))
    if op == "Concat":
        return np.concatenate([np.atleast_1d(v) for v in vals], axis=int(attrs.get("axis", 0)))
    if op in ("Cast", "Identity"):
        return vals[0]
    raise AssertionError(op)  # pragma: no cover - only called for _SHAPE_OPS


def from_onnx(
    source: Any,
    *,
    input_shape: Sequence[int] | None = None,
    name: str | None = None,
    task: str | None = None,
) -> AnnGraph:
    """Import an ONNX model.

    Parameters
    ----------
    source : path or onnx.ModelProto
        An ``.onnx`` file (e.g. from ``torch.onnx.export(..., dynamo=False)``) or a loaded model.
    input_shape : sequence of int, optional
        Per-sample input shape (channels-first, no batch dimension); needed only when the
        graph input has symbolic non-batch dimensions.
    name : str, optional
        Graph name (default: the file's stem, or the ONNX graph name for a ModelProto).
    task : {"classification", "regression"}, optional
        Recorded in the metadata (default: ``"classification"`` if the model ends with Softmax).

    Returns
    -------
    AnnGraph
        Layer names are the ONNX node names.

    Raises
    ------
    ModelFormatError
        Truncated, corrupt or invalid file.
    UnsupportedLayerError
        An operator or attribute outside the supported set (node name and op type named).
    ValidationError
        Non-static input dimensions, NaN/Inf weights or inconsistent shapes.
    MissingDependencyError
        onnx is not installed.
    """
    numpy_helper = import_optional("onnx.numpy_helper", "importing ONNX models")
    model, where, src = _read_model(source)
    graph = model.graph
    consts: dict[str, np.ndarray] = {}
    for init in graph.initializer:
        try:
            consts[init.name] = np.asarray(numpy_helper.to_array(init))
        except Exception as err:  # raw data of the wrong length etc.
            raise ModelFormatError(f"{where}: initializer '{init.name}' cannot be read: {err}") from err
    in_name, shape, batch = _input_shape(model, consts, where, input_shape)
    builder = GraphBuilder(where)
    builder.input(shape, name=builder.unique("input"))
    current = in_name
    produced_by_weighted: str | None = None  # tensor right after a Dense/Conv (for a bias Add or BN to fold into)
    layer_of = {in_name: builder.layers[0].name}  # computed tensor -> the layer producing it
    uses: dict[str, int] = {}  # consumers of each tensor (a fold needs the weighted layer's only one)
    for n in graph.node:
        for i in n.input:
            uses[i] = uses.get(i, 0) + 1

    def chain_in(node: Any, nname: str) -> None:
        nonlocal current
        dynamic = [i for i in node.input if i and i not in consts]
        if len(dynamic) != 1 or dynamic[0] not in layer_of:
            raise _unsupported(nname, f"{node.op_type} with inputs {list(node.input)}",
                               "only Add, Sum and Concat join several computed tensors")
        current = dynamic[0]
        builder.select(layer_of[current])

    # axis order of the sequence tensors around an RNN: "NT" (batch, time, ...: the IR's own),
    # "TN" (time first), "TDN" (an RNN's Y: time, direction, batch, hidden), "DN" (its Y_h)
    layouts: dict[str, str] = {in_name: "NT"} if len(shape) == 2 else {}
    zeros: set[str] = set()  # tensors known to be all zeros (an RNN's initial state)
    _refuse_unsupported_ops(graph, set(consts))
    for index, node in enumerate(graph.node):
        op = node.op_type
        nname = _node_name(node, index)
        attrs = _attrs(node)
        out = node.output[0] if node.output else ""
        if op == "Constant":
            if "value" not in attrs:
                raise _unsupported(nname, f"Constant({', '.join(attrs)})", "only Constant with a tensor 'value'")
            consts[out] = np.asarray(numpy_helper.to_array(attrs["value"]))
            continue
        if op == "Shape":
            if len(node.input) != 1 or node.input[0] not in layer_of:
                raise _unsupported(nname, "Shape of a non-computed tensor")
            consts[out] = np.array([batch, *builder.shape_of(layer_of[node.input[0]])], dtype=np.int64)
            continue
        if op in _SHAPE_OPS and node.input and all((not i) or i in consts for i in node.input):
            try:
                consts[out] = _eval_shape_op(node, [consts[i] for i in node.input if i], attrs)
            except (IndexError, ValueError, TypeError) as err:  # an index or axis out of range: a bad file
                first = (str(err).splitlines() or [type(err).__name__])[0][:200]
                raise ModelFormatError(f"{where}: node '{nname}' ({op}) cannot be computed from its constant inputs: "
                                       f"{first}") from err
            continue
        if op in ("LSTM", "GRU") or (op == "RNN" and [str(a) for a in attrs.get("activations", ["Tanh"])] != ["Relu"]):
            from .from_torch import recurrent_refusal

            shown = op if op != "RNN" else f"RNN(activations={[str(a) for a in attrs.get('activations', ['Tanh'])]})"
            raise _unsupported(nname, shown, recurrent_refusal(op != "RNN"))
        if op in _SEQUENCE_OPS:
            _sequence_op(node, nname, attrs, consts, layer_of, layouts, zeros, builder, uses, where)
            current = out
            continue
        if op not in SUPPORTED_OPS:
            raise _unsupported(nname, op)
        joined = [i for i in node.input if i and i not in consts]
        if op in ("Add", "Sum", "Concat") and len(joined) > 1:
            if len(joined) != len([i for i in node.input if i]) or any(i not in layer_of for i in joined):
                raise _unsupported(nname, f"{op} of computed tensors and constants",
                                   "a residual sum or concatenation joins computed tensors only")
            if op == "Concat":
                axis = int(attrs.get("axis", 1))
                if axis == 0:
                    raise _unsupported(nname, "Concat(axis=0)", "concatenation along the batch axis")
                builder.add(Concat, nname, inputs=[layer_of[i] for i in joined], axis=axis - 1 if axis > 0 else axis)
            else:
                builder.add(Add, nname, inputs=[layer_of[i] for i in joined])
            layer_of[out] = builder.layers[-1].name
            produced_by_weighted = None
            continue
        if op in ("Sum", "Concat") and len([i for i in node.input if i]) != 1:
            raise _unsupported(nname, f"{op} of computed tensors and constants",
                               "a residual sum or concatenation joins computed tensors only")
        chain_in(node, nname)
        if op in ("Dropout", "Identity", "Sum", "Concat"):  # a Sum or Concat of one tensor is that tensor
            if op == "Dropout" and len(node.output) > 1 and node.output[1]:
                used = any(node.output[1] in n.input for n in graph.node)
                if used:
                    raise _unsupported(nname, "Dropout with a used mask output")
            current = out
            layer_of[out] = builder.layers[builder.cursor].name
            continue
        if op == "Gemm":
            if attrs.get("transA", 0):
                raise _unsupported(nname, "Gemm(transA=1)", "the activation must be the untransposed first input")
            if len(node.input) < 2 or node.input[1] not in consts:
                raise _unsupported(nname, "Gemm with a non-constant weight")
            b = consts[node.input[1]].astype(np.float64)
            # Gemm computes alpha * A @ B' with B' = B (n_in, n_out), or B.T when transB; we store (n_out, n_in)
            weight = float(attrs.get("alpha", 1.0)) * (b if attrs.get("transB", 0) else b.T)
            n_out = weight.shape[0] if weight.ndim == 2 else 0
            bias = None
            if len(node.input) > 2 and node.input[2]:
                c = consts.get(node.input[2])
                if c is None:
                    raise _unsupported(nname, "Gemm with a non-constant C input")
                try:
                    bias = float(attrs.get("beta", 1.0)) * np.broadcast_to(c.astype(np.float64).reshape(-1), (n_out,))
                except ValueError:
                    raise ValidationError(f"{where}: Gemm '{nname}': bias of shape {c.shape} does not match "
                                          f"{n_out} outputs; expected ({n_out},)", attr="bias") from None
            builder.add(Dense, nname, weight=weight, bias=bias)
            produced_by_weighted = out
        elif op == "MatMul":
            if node.input[1] not in consts:
                raise _unsupported(nname, "MatMul with a non-constant right operand")
            # MatMul computes x @ W with W (n_in, n_out); transpose to our (n_out, n_in)
            builder.add(Dense, nname, weight=consts[node.input[1]].astype(np.float64).T)
            produced_by_weighted = out
        elif op == "Add":
            other = [i for i in node.input if i in consts]
            if produced_by_weighted != current or len(other) != 1 or uses.get(current, 0) > 1:
                raise _unsupported(nname, "Add", "an Add of a constant is only supported as the bias of the "
                                                 "preceding MatMul/Gemm/Conv (residual sums join two computed tensors)")
            builder.add_bias(consts[other[0]], nname)
            produced_by_weighted = out
        elif op == "Conv":
            _check_conv_attrs(nname, attrs)
            w = consts.get(node.input[1])
            if w is None:
                raise _unsupported(nname, "Conv with a non-constant weight")
            bias = consts.get(node.input[2]) if len(node.input) > 2 and node.input[2] else None
            k = tuple(w.shape[2:])
            padding = _sym_pads(nname, "Conv", attrs, k, builder.shape, attrs.get("strides", [1, 1]))
            builder.add(Conv2d, nname, weight=w.astype(np.float64), bias=bias,
                        stride=tuple(attrs.get("strides", [1, 1])), padding=padding)
            produced_by_weighted = out
        elif op == "BatchNormalization":
            if attrs.get("training_mode", 0):
                raise _unsupported(nname, "BatchNormalization(training_mode=1)", "export the model in eval mode")
            vals = [consts.get(i) for i in node.input[1:5]]
            if any(v is None for v in vals):
                raise _unsupported(nname, "BatchNormalization with non-constant statistics")
            if produced_by_weighted != current or uses.get(current, 0) > 1:
                last = builder.last
                raise _unsupported(nname, "BatchNormalization",
                                   f"batch normalisation is folded into a directly preceding Conv/Gemm/MatMul; here it "
                                   f"follows {type(last).__name__} '{last.name if last else ''}'")
            gamma, beta, mean, var = cast("list[np.ndarray]", vals)  # None ruled out above
            builder.fold_batchnorm(nname, gamma=gamma, beta=beta, mean=mean, var=var,
                                   eps=float(attrs.get("epsilon", 1e-5)), bn_type="BatchNormalization",
                                   supported=SUPPORTED_OPS)
            produced_by_weighted = out
        elif op == "Relu":
            builder.add(ReLU, nname)
        elif op == "Clip":
            builder.add(ReLU, nname, max_value=_clip_max(nname, node, attrs, consts))
        elif op in ("MaxPool", "AveragePool"):
            if attrs.get("ceil_mode", 0):
                raise _unsupported(nname, f"{op}(ceil_mode=1)", "only floor output size (ceil_mode=0)")
            if any(d != 1 for d in attrs.get("dilations", [1, 1])):
                raise _unsupported(nname, f"{op}(dilations={attrs['dilations']})", "only dilations=1")
            if op == "MaxPool" and len(node.output) > 1 and node.output[1]:
                raise _unsupported(nname, "MaxPool with Indices output")
            k = tuple(attrs.get("kernel_shape", ()))
            if len(k) != 2:
                raise _unsupported(nname, f"{op}(kernel_shape={list(k)})", "only 2-D pooling")
            strides = tuple(attrs.get("strides", [1, 1]))  # ONNX default stride is 1, not the kernel
            padding = _sym_pads(nname, op, attrs, k, builder.shape, strides)
            if op == "AveragePool" and padding != (0, 0) and not attrs.get("count_include_pad", 0):
                raise _unsupported(
                    nname, f"AveragePool(count_include_pad=0, pads={attrs.get('pads')})",
                    "the average at borders would exclude the zero padding, which our AvgPool2d counts; "
                    "use count_include_pad=1 (PyTorch's default) or no padding",
                )
            cls = MaxPool2d if op == "MaxPool" else AvgPool2d
            builder.add(cls, nname, kernel_size=k, stride=strides, padding=padding)
        elif op == "GlobalAveragePool":
            builder.add(GlobalAvgPool2d, nname)
        elif op == "Flatten":
            if int(attrs.get("axis", 1)) != 1:
                raise _unsupported(nname, f"Flatten(axis={attrs.get('axis')})", "only Flatten(axis=1)")
            if len(builder.shape) > 1:
                builder.add(Flatten, nname)
        elif op == "Reshape":
            target = consts.get(node.input[1]) if len(node.input) > 1 else None
            if target is None:
                raise _unsupported(nname, "Reshape to a computed shape", "only Reshape to (N, -1) with a constant shape")
            _check_flatten_reshape(nname, target, batch, builder.shape)
            if len(builder.shape) > 1:
                builder.add(Flatten, nname)
        elif op == "Softmax":
            axis = int(attrs.get("axis", -1))
            if axis not in (-1, len(builder.shape)):
                raise _unsupported(nname, f"Softmax(axis={axis})", "only softmax over the last axis")
            builder.add(Softmax, nname)
        current = out
        layer_of[out] = builder.layers[builder.cursor].name
        if op not in ("Gemm", "MatMul", "Add", "Conv", "BatchNormalization"):
            produced_by_weighted = None
    outputs = [o.name for o in graph.output]
    if outputs and layouts.get(outputs[0], "NT") != "NT":
        raise _unsupported(outputs[0], f"sequence output in layout {layouts[outputs[0]]}",
                           "the model must return its sequence batch first, (N, T, ...)")
    if len(outputs) != 1 or outputs[0] not in layer_of:
        raise _unsupported(",".join(outputs), f"graph outputs {outputs}", "the graph must have exactly one output")
    builder.select(layer_of[outputs[0]])
    meta: dict[str, Any] = {"source": src, "format": "onnx",
                            "opset": int(max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")),
                                             default=0))}
    if model.producer_name:
        meta["producer"] = f"{model.producer_name} {model.producer_version}".strip()
    if task is None and isinstance(builder.last, Softmax):
        task = "classification"
    if task is not None:
        meta["task"] = task
    default = Path(src).stem if src != "onnx.ModelProto" else (graph.name or "onnx_model")
    return builder.build(name or default, meta)


def _refuse_unsupported_ops(graph: Any, known: set[str]) -> None:
    """With two or more unsupported operators, name them all at once, most specific first.

    Shape arithmetic on constants (Shape, Gather, Concat, ... of known values) is supported; the same
    operators on the data are not.  A single unsupported operator is left to the import loop, whose
    message can be more specific (e.g. which attribute is the problem).
    """
    found: list[tuple[str, str]] = []
    for index, node in enumerate(graph.node):
        op = node.op_type
        if op in ("Constant", "Shape") or (op in _SHAPE_OPS and all((not i) or i in known for i in node.input)):
            known.update(node.output)
        elif op not in SUPPORTED_OPS and op not in _SEQUENCE_OPS:
            found.append((_node_name(node, index), op))
    if len(found) > 1:
        refuse_unsupported(found, SUPPORTED_OPS, "ONNX")


def _sequence_op(node: Any, nname: str, attrs: dict[str, Any], consts: dict[str, np.ndarray], layer_of: dict[str, str],
                 layouts: dict[str, str], zeros: set[str], builder: GraphBuilder, uses: dict[str, int], where: str) -> None:
    """One op of the RNN pattern (see the module docstring); anything else is refused."""
    op = node.op_type
    out = node.output[0] if node.output else ""
    src = node.input[0] if node.input else ""
    if op == "ConstantOfShape":
        value = attrs.get("value")
        arr = np.zeros(1) if value is None else np.asarray(import_optional("onnx.numpy_helper").to_array(value))
        if np.any(arr != 0):
            raise _unsupported(nname, "ConstantOfShape of a non-zero value", "only a zero initial state of an RNN")
        zeros.add(out)
        return
    if op == "Expand" and src in consts and not np.any(consts[src]):
        zeros.add(out)  # a zero initial state broadcast to the batch (a fixed-batch export)
        return
    if src not in layer_of or src not in layouts:
        raise _unsupported(nname, f"{op} of a tensor that is not a sequence around an RNN")
    builder.select(layer_of[src])
    layout = layouts[src]
    if op == "Transpose":
        perm = list(attrs.get("perm", []))
        if perm[:2] != [1, 0] or perm[2:] != list(range(2, len(perm))) or layout not in ("NT", "TN"):
            raise _unsupported(nname, f"Transpose(perm={perm})", "only swapping the batch and time axes of a sequence")
        layouts[out] = "TN" if layout == "NT" else "NT"
        layer_of[out] = layer_of[src]
        return
    if op == "Squeeze":
        axes = attrs.get("axes")
        if axes is None and len(node.input) > 1 and node.input[1]:
            axes = consts.get(node.input[1])
        axes = [int(a) for a in np.ravel(axes)] if axes is not None else []
        if layout == "TDN" and axes == [1]:
            layouts[out] = "TN"
        elif layout == "DN" and axes == [0]:
            _last_element(nname, builder, layer_of[src], uses, node)
            layouts[out] = "N"
        else:
            raise _unsupported(nname, f"Squeeze(axes={axes}) of a {layout} tensor",
                               "only the direction axis of an RNN's outputs")
        layer_of[out] = builder.layers[builder.cursor].name
        return
    if op == "Gather":
        axis = int(attrs.get("axis", 0))
        idx = consts.get(node.input[1]) if len(node.input) > 1 else None
        t = builder.shape_of(layer_of[src])[0]
        if idx is None or np.ndim(idx) != 0 or int(idx) not in (-1, t - 1) or (layout, axis) not in (("NT", 1), ("TN", 0)):
            raise _unsupported(nname, f"Gather(axis={axis}) of a {layout} sequence",
                               "only the last element of an RNN's output sequence, out[:, -1]")
        _last_element(nname, builder, layer_of[src], uses, node)
        layouts[out] = "N"
        layer_of[out] = builder.layers[builder.cursor].name
        return
    # op == "RNN"
    if attrs.get("direction", "forward") != "forward":
        raise _unsupported(nname, f"RNN(direction={attrs['direction']!r})", "only forward RNNs")
    if "clip" in attrs:
        raise _unsupported(nname, "RNN(clip=...)", "a clipped pre-activation has no rate form")
    if int(attrs.get("layout", 0)) != 0 or layout != "TN":
        raise _unsupported(nname, f"RNN(layout={attrs.get('layout', 0)}) of a {layout} tensor",
                           "the RNN's input must be time first (layout=0), as torch.onnx.export writes it")
    ins = list(node.input) + [""] * (6 - len(node.input))
    w, r = consts.get(ins[1]), consts.get(ins[2])
    if w is None or r is None:
        raise _unsupported(nname, "RNN with non-constant weights")
    if ins[4]:
        raise _unsupported(nname, "RNN with sequence_lens", "every sequence must have the model's full length")
    if ins[5] and ins[5] not in zeros and not (ins[5] in consts and not np.any(consts[ins[5]])):
        raise _unsupported(nname, "RNN with a non-zero initial state", "the initial hidden state must be zero")
    h = int(w.shape[1])
    bias = None
    if ins[3]:
        b = consts.get(ins[3])
        if b is None:
            raise _unsupported(nname, "RNN with a non-constant bias")
        bias = b.astype(np.float64)[0, :h] + b.astype(np.float64)[0, h:]
    builder.add(RNN, nname, weight_ih=w[0].astype(np.float64), weight_hh=r[0].astype(np.float64), bias=bias,
                return_sequences=True)
    name = builder.layers[builder.cursor].name
    for tensor, lay in zip(node.output, ("TDN", "DN")):  # Y (T, 1, N, H) and Y_h (1, N, H)
        if tensor:
            layouts[tensor] = lay
            layer_of[tensor] = name


def _last_element(nname: str, builder: GraphBuilder, layer: str, uses: dict[str, int], node: Any) -> None:
    """The RNN ``layer`` is read at its last element only: it returns that state (return_sequences=False)."""
    current = builder.layers[builder.cursor]
    if not isinstance(current, RNN) or builder.cursor != len(builder.layers) - 1 or not current.return_sequences:
        raise _unsupported(nname, f"{node.op_type} selecting the last element after other layers",
                           "read the last element directly from the RNN's output")
    builder.replace_last(current.replace(return_sequences=False))


def _clip_max(nname: str, node: Any, attrs: dict[str, Any], consts: dict[str, np.ndarray]) -> float | None:
    """Upper bound of a ``Clip`` whose lower bound is 0 (None: no upper bound, a plain ReLU)."""
    bounds: list[float | None] = []
    for k, key in ((1, "min"), (2, "max")):
        if key in attrs:  # opset < 11: attributes
            bounds.append(float(attrs[key]))
        elif len(node.input) > k and node.input[k]:  # opset >= 11: optional inputs, which must be constants
            if node.input[k] not in consts:
                raise _unsupported(nname, f"Clip with a computed {key}", "only constant bounds")
            value = np.asarray(consts[node.input[k]], dtype=np.float64).reshape(-1)
            if value.size != 1:
                raise _unsupported(nname, f"Clip with a {key} of shape {consts[node.input[k]].shape}", "only scalar bounds")
            bounds.append(float(value[0]))
        else:
            bounds.append(None)
    lo, hi = bounds
    if lo != 0.0:
        raise _unsupported(nname, f"Clip(min={lo}, max={hi})", "only Clip(min=0, max=c), a clipped ReLU")
    if hi is None or hi == np.inf:
        return None
    if not hi > 0:
        raise _unsupported(nname, f"Clip(min={lo}, max={hi})", "the upper bound of a clipped ReLU must be > 0")
    return hi


def _check_conv_attrs(nname: str, attrs: dict[str, Any]) -> None:
    if int(attrs.get("group", 1)) != 1:
        raise _unsupported(nname, f"Conv(group={attrs['group']})", "only group=1 (no grouped/depthwise convolution)")
    if any(d != 1 for d in attrs.get("dilations", [1, 1])):
        raise _unsupported(nname, f"Conv(dilations={attrs['dilations']})", "only dilations=1")


def _sym_pads(nname: str, op: str, attrs: dict[str, Any], k: tuple[int, ...], shape: tuple[int, ...],
              strides: Sequence[int]) -> tuple[int, int]:
    auto = attrs.get("auto_pad", "NOTSET")
    if auto in ("NOTSET", ""):
        pads = list(attrs.get("pads", [0, 0, 0, 0]))
        if len(pads) != 4 or pads[0] != pads[2] or pads[1] != pads[3]:
            raise _unsupported(nname, f"{op}(pads={pads})", "only symmetric padding (top=bottom, left=right)")
        return (int(pads[0]), int(pads[1]))
    if auto == "VALID":
        return (0, 0)
    # SAME_UPPER / SAME_LOWER: total padding depends on the input size
    if len(shape) != 3:
        raise _unsupported(nname, f"{op}(auto_pad={auto})", "needs a (C, H, W) input")
    pads = []
    for size, kk, s in zip(shape[1:], k, strides):
        out = -(-size // s)
        total = max((out - 1) * s + kk - size, 0)
        if total % 2:
            raise _unsupported(nname, f"{op}(auto_pad={auto})", "this input size needs asymmetric padding")
        pads.append(total // 2)
    return (pads[0], pads[1])


def _check_flatten_reshape(nname: str, target: np.ndarray, batch: int, shape: tuple[int, ...]) -> None:
    t = [int(v) for v in np.asarray(target).reshape(-1)]
    n = int(np.prod(shape))
    ok = len(t) == 2 and (
        (t[0] in (0, batch, _BATCH) and t[1] in (-1, n)) or (t[0] == -1 and t[1] == n)
    )
    if not ok:
        shown = ["N" if v == _BATCH else v for v in t]
        raise _unsupported(nname, f"Reshape(shape={shown})", f"only Reshape to (N, -1) (here (N, {n}))")
