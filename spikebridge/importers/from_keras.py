"""Import Keras models with h5py, json and zipfile only (no TensorFlow, no Keras import).

Two file kinds are read:

* legacy HDF5 (``model.save("m.h5")``): the root attribute ``model_config`` holds the
  architecture as JSON; weights live in ``/model_weights/<layer>/...`` at the paths listed in
  each layer group's ``weight_names`` attribute (Sequential and functional models nest these
  differently, so the attribute is followed rather than a fixed path);
* Keras 3 archives (``model.save("m.keras")``): a zip of ``config.json`` and
  ``model.weights.h5`` whose ``/layers/<snake_class>[_k]/vars/0, 1, ...`` groups hold the
  variables in creation order; the ``vars`` group's ``name`` attribute names the layer.

Supported layers: InputLayer, SimpleRNN with ``activation="relu"`` (``return_sequences`` true
or false; a Dense after a sequence applies to every element), Dense, Conv2D (valid/same padding, strides, groups=1,
dilation 1), MaxPooling2D, AveragePooling2D (no padding), GlobalAveragePooling2D, Flatten,
Dropout (and SpatialDropout2D), BatchNormalization (folded into the preceding Dense/Conv2D),
Activation / ReLU / Softmax layers and ``activation=`` ``"relu"``, ``"relu6"``, ``"softmax"``, ``"linear"``
(``ReLU(max_value=c)`` and ``relu6`` become a clipped ``ReLU(max_value=c)``);
in functional models also the merge layers Add (residual sums) and Concatenate (its ``axis``
mapped to the channels-first layout), so ResNet-style branches import.

Layout: Keras images are channels-last ``(H, W, C)``; the imported graph is channels-first
``(C, H, W)`` like every spikebridge graph, so **transpose inputs** with
``x.transpose(0, 3, 1, 2)`` before :func:`spikebridge.ir.evaluate` or simulation.  The graph's
metadata records ``{"input_layout": "channels_last"}``.  Keras' Flatten flattens in
``(H, W, C)`` order; the columns of the Dense layer after it are permuted so that our
channels-first Flatten gives identical outputs.

Recurrent layers: ``SimpleRNN(activation="relu")`` computes ``h_t = relu(x_t K + h_{t-1} R + b)``
and becomes an :class:`~spikebridge.ir.layers.RNN` with ``W_ih = K^T``, ``W_hh = R^T``; its weights
sit in the layer's cell (``.../simple_rnn_cell/kernel`` in ``.h5``, ``layers/<layer>/cell/vars`` in
``.keras``).  Other SimpleRNN activations, LSTM, GRU, ``go_backwards``, ``stateful`` and
``return_state`` are refused in one line with the reason.
"""

from __future__ import annotations

import functools
import json
import shutil
import tempfile
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from .._h5 import array_budget, check_contained, check_declared_size
from ..errors import ModelFormatError, UnsupportedLayerError, ValidationError
from ..ir.graph import AnnGraph
from ..ir.layers import RNN, Add, AvgPool2d, Concat, Conv2d, Dense, Flatten, GlobalAvgPool2d, MaxPool2d, ReLU, Softmax
from ._common import GraphBuilder, refuse_unsupported

__all__ = ["from_keras", "from_keras_h5", "from_keras_v3", "SUPPORTED_LAYERS"]

SUPPORTED_LAYERS: tuple[str, ...] = (
    "InputLayer", "Dense", "Conv2D", "MaxPooling2D", "AveragePooling2D", "GlobalAveragePooling2D", "Flatten",
    "Dropout", "SpatialDropout2D", "BatchNormalization", "Activation", "ReLU", "Softmax", "Add", "Concatenate",
    "SimpleRNN(activation='relu')",
)
#: recurrent layers that have no spiking form (gates multiply two signals)
_GATED = ("LSTM", "GRU", "ConvLSTM1D", "ConvLSTM2D", "ConvLSTM3D")
_ACTIVATIONS = ("relu", "relu6", "softmax", "linear")
_MERGES = ("Add", "Concatenate")
_WEIGHT_ORDER = {
    "Dense": ("kernel", "bias"),
    "Conv2D": ("kernel", "bias"),
    "BatchNormalization": ("gamma", "beta", "moving_mean", "moving_variance"),
    "SimpleRNN": ("kernel", "recurrent_kernel", "bias"),
}

WeightGetter = Callable[[str, str, dict[str, Any]], dict[str, np.ndarray]]


def _malformed_as_format_error(fn: Callable[..., AnnGraph]) -> Callable[..., AnnGraph]:
    """A config of the wrong shape (a list where a dict belongs, a missing key) is a bad file, not our bug:
    turn the AttributeError/TypeError/KeyError/IndexError it causes into a one-line ModelFormatError."""

    @functools.wraps(fn)
    def wrapper(source: str | Path, **kwargs: Any) -> AnnGraph:
        try:
            return fn(source, **kwargs)
        except (AttributeError, TypeError, KeyError, IndexError) as err:
            raise ModelFormatError(
                f"Keras file '{source}': malformed model config ({type(err).__name__}: {str(err)[:200]})"
            ) from err

    return wrapper


def _unsupported(name: str, type_name: str, hint: str | None = None) -> UnsupportedLayerError:
    return UnsupportedLayerError(name, type_name, SUPPORTED_LAYERS, source="Keras", hint=hint)


def _decode(value: Any) -> Any:
    return value.decode() if isinstance(value, bytes) else value


def _pair(v: Any) -> tuple[int, int]:
    if isinstance(v, (list, tuple)):
        return (int(v[0]), int(v[-1]))
    return (int(v), int(v))


# -- architecture ---------------------------------------------------------------

def _inbound_names(inbound: Any) -> list[str]:
    """Names of the layers feeding a functional-model layer (Keras 2 and Keras 3 serialisations)."""
    names: list[str] = []

    def walk(obj: Any) -> None:
        if isinstance(obj, dict):
            cfg = obj.get("config")
            if obj.get("class_name") == "__keras_tensor__" and isinstance(cfg, dict) and "keras_history" in cfg:
                names.append(str(cfg["keras_history"][0]))
                return
            for key, value in obj.items():
                if key != "kwargs":
                    walk(value)
        elif isinstance(obj, (list, tuple)):
            if len(obj) >= 3 and isinstance(obj[0], str) and isinstance(obj[1], int) and isinstance(obj[2], int):
                names.append(obj[0])  # Keras 2: [layer_name, node_index, tensor_index, kwargs]
                return
            for value in obj:
                walk(value)

    walk(inbound)
    return names


def _chain(
    model_config: dict[str, Any], where: str
) -> tuple[list[dict[str, Any]], list[int] | None, dict[str, list[str]]]:
    """Return the layer dicts in topological order, the batch input shape if declared, and each layer's inputs."""
    cls = model_config.get("class_name")
    cfg = model_config.get("config", {})
    if not isinstance(cfg, dict) or "layers" not in cfg:
        raise ModelFormatError(f"{where}: model config of class {cls!r} has no layer list")
    layers = list(cfg["layers"])
    build = model_config.get("build_config") or {}
    declared = build.get("input_shape") if isinstance(build, dict) else None
    if cls == "Sequential":
        names = [str(layer.get("config", {}).get("name") or layer.get("name")) for layer in layers]
        return layers, declared, {n: names[k - 1 : k] if k else [] for k, n in enumerate(names)}
    if cls not in ("Functional", "Model"):
        raise _unsupported(str(cfg.get("name", "model")), f"model class {cls}",
                           "only Sequential and functional models (keras.Model(inputs, outputs))")
    by_name = {str(layer.get("name", layer.get("config", {}).get("name"))): layer for layer in layers}
    preds: dict[str, list[str]] = {}
    for lname, layer in by_name.items():
        preds[lname] = _inbound_names(layer.get("inbound_nodes", []))
    succ: dict[str, list[str]] = {n: [] for n in by_name}
    for lname, ps in preds.items():
        merge = by_name[lname].get("class_name") in _MERGES
        if (len(ps) > 1 and not merge) or len(_layer_calls(by_name[lname])) > 1:
            raise _unsupported(lname, f"{by_name[lname].get('class_name')} with inputs {ps}",
                               "each layer called once; only Add and Concatenate join several inputs")
        for p in ps:
            if p not in succ:
                raise ModelFormatError(f"{where}: layer '{lname}' takes input from unknown layer '{p}'")
            succ[p].append(lname)
    starts = [n for n, ps in preds.items() if not ps]
    if len(starts) != 1:
        raise _unsupported(",".join(starts), f"model with {len(starts)} inputs", "only models with one input")
    ends = [n for n, nxt in succ.items() if not nxt]
    if len(ends) != 1:
        raise _unsupported(",".join(ends), f"model with {len(ends)} outputs", "only models with one output")
    order: list[str] = []  # topological (Kahn), keeping the config's order among ready layers
    waiting = {n: len(ps) for n, ps in preds.items()}
    ready = [n for n in by_name if not waiting[n]]
    while ready:
        n = ready.pop(0)
        order.append(n)
        for m in succ[n]:
            waiting[m] -= 1
            if not waiting[m]:
                ready.append(m)
    if len(order) != len(by_name):
        left = sorted(set(by_name) - set(order))
        raise ModelFormatError(f"{where}: layers {left} form a cycle")
    return [by_name[n] for n in order], declared, preds


def _layer_calls(layer: dict[str, Any]) -> list[Any]:
    """The list of call nodes of a functional-model layer (a shared layer has several)."""
    nodes = layer.get("inbound_nodes", [])
    return list(nodes) if isinstance(nodes, list) else [nodes]


def _config_dims(value: Any, key: str, where: str) -> list[int]:
    """The dimensions after the batch one of a config's ``key`` (a JSON list of integers or nulls);
    anything else (a string, a fraction, a boolean) is a bad file, refused naming it."""
    if not isinstance(value, list):
        raise ModelFormatError(f"{where}: the model config's {key} is {str(value)[:60]!r}; expected a list of integers")
    dims = value[1:]
    for dim in dims:
        if dim is not None and (isinstance(dim, bool) or not isinstance(dim, int)):
            raise ModelFormatError(
                f"{where}: the model config's {key} has the dimension {str(dim)[:40]!r}; expected an integer (or null)")
    return dims


def _input_shape(chain: list[dict[str, Any]], declared: Any, where: str) -> list[int]:
    for layer in chain[:1]:
        cfg = layer.get("config", {})
        for key in ("batch_shape", "batch_input_shape"):
            if cfg.get(key):
                return _config_dims(cfg[key], key, where)
        build = layer.get("build_config") or {}
        if isinstance(build, dict) and build.get("input_shape"):
            return _config_dims(build["input_shape"], "input_shape", where)
    if declared:
        return list(declared)[1:]
    raise ValidationError(f"{where}: the model config declares no input shape; pass input_shape=", attr="input_shape")


# -- conversion -----------------------------------------------------------------

def _same_padding(name: str, type_name: str, k: tuple[int, int], strides: tuple[int, int],
                  shape: tuple[int, ...]) -> tuple[int, int]:
    pads = []
    for size, kk, s in zip(shape[1:], k, strides):
        out = -(-size // s)  # ceil(size / stride), Keras' 'same' output size
        total = max((out - 1) * s + kk - size, 0)
        if total % 2:
            raise _unsupported(
                name, f"{type_name}(padding='same', kernel {k}, strides {strides})",
                f"'same' padding here needs {total} padding rows/columns, split asymmetrically "
                "(Keras pads one more at the bottom/right, e.g. with an even kernel); use an odd kernel, "
                "stride 1 or padding='valid'",
            )
        pads.append(total // 2)
    return (pads[0], pads[1])


def _build_graph(
    model_config: dict[str, Any],
    get_weights: WeightGetter,
    *,
    where: str,
    src: str,
    fmt: str,
    extra_meta: dict[str, Any],
    name: str | None,
    task: str | None,
    input_shape: Sequence[int] | None,
) -> AnnGraph:
    chain, declared, preds = _chain(model_config, where)
    shape_k = list(input_shape) if input_shape is not None else _input_shape(chain, declared, where)
    if any(s is None for s in shape_k):
        raise ValidationError(f"{where}: input shape {shape_k} has unknown dimensions; pass input_shape=",
                              attr="input_shape")
    formats = {layer.get("config", {}).get("data_format") for layer in chain} - {None}
    channels_first = formats == {"channels_first"}
    builder = GraphBuilder(where)
    meta: dict[str, Any] = {"source": src, "format": fmt, **extra_meta}
    if len(shape_k) == 3 and input_shape is None:
        if channels_first:
            shape = tuple(int(s) for s in shape_k)
            meta["input_layout"] = "channels_first"
        else:
            h, w, c = (int(s) for s in shape_k)
            shape = (c, h, w)
            meta["input_layout"] = "channels_last"
    else:
        shape = tuple(int(s) for s in shape_k)
        if len(shape) == 3:
            meta["input_layout"] = "channels_first"
    builder.input(shape, name=builder.unique("input"))
    kernel: np.ndarray | None  # Dense and Conv2D branches both read it
    perm: np.ndarray | None = None  # column permutation owed to the next Dense (channels-last Flatten)
    perm_from = ""
    layer_of: dict[str, str] = {}  # Keras layer -> our layer holding its output
    uses: dict[str, int] = {}
    for ps in preds.values():
        for p in ps:
            uses[p] = uses.get(p, 0) + 1

    def activation(lname: str, cls: str, act: Any) -> None:
        if isinstance(act, dict):
            act = act.get("config", {}).get("name") or act.get("class_name")
        act = "linear" if act is None else str(act).lower()
        if act in ("relu", "relu6"):
            builder.add(ReLU, f"{lname}_{act}" if cls != "Activation" else lname, max_value=6.0 if act == "relu6" else None)
        elif act == "softmax":
            builder.add(Softmax, f"{lname}_softmax" if cls != "Activation" else lname)
        elif act != "linear":
            raise _unsupported(lname, f"{cls}(activation={act!r})",
                               f"supported activations: {', '.join(_ACTIVATIONS)}")

    def refused_rnn(layer: dict[str, Any]) -> bool:  # gated, or a SimpleRNN that is not ReLU
        cls = str(layer.get("class_name"))
        return cls in _GATED or (cls == "SimpleRNN" and _act_name(layer.get("config", {}).get("activation")) != "relu")

    # two or more unsupported layer types: name them all at once (one is left to the loop, which says more)
    found = [(str(layer.get("config", {}).get("name") or layer.get("name")), str(layer.get("class_name")))
             for layer in chain
             if str(layer.get("class_name")) not in SUPPORTED_LAYERS + ("SimpleRNN",) or refused_rnn(layer)]
    if len(found) > 1:
        refuse_unsupported(found, SUPPORTED_LAYERS, "Keras")
    for layer in chain:
        cls = str(layer.get("class_name"))
        cfg = layer.get("config", {})
        lname = str(cfg.get("name") or layer.get("name"))
        inputs = preds.get(lname, [])
        if inputs and cls not in _MERGES:
            builder.select(layer_of[inputs[0]])  # a branch continues from its input
        layer_of[lname] = builder.layers[builder.cursor].name
        if cls == "InputLayer":
            continue
        if cls in ("Dropout", "SpatialDropout2D", "GaussianDropout", "AlphaDropout"):
            continue
        if cls in _MERGES:
            if perm is not None:
                raise _unsupported(perm_from, "Flatten", "a channels-last Flatten must be followed by a Dense layer")
            srcs = [layer_of[p] for p in inputs]
            if cls == "Add":
                builder.add(Add, lname, inputs=srcs)
            else:
                rank = len(builder.shape_of(srcs[0]))
                axis = int(cfg.get("axis", -1))
                axis = (axis + rank + 1 if axis < 0 else axis) - 1  # per-sample Keras axis
                if rank == 3 and not channels_first:
                    axis = {0: 1, 1: 2, 2: 0}.get(axis, axis)  # (H, W, C) -> our (C, H, W)
                if not 0 <= axis < rank:
                    raise _unsupported(lname, f"Concatenate(axis={cfg.get('axis')})", "only a per-sample axis")
                builder.add(Concat, lname, inputs=srcs, axis=axis)
            layer_of[lname] = builder.layers[builder.cursor].name
            continue
        if perm is not None and cls not in ("Dense", "Activation", "ReLU"):
            raise _unsupported(lname, cls, f"a channels-last Flatten ('{perm_from}') must be followed by a Dense layer")
        if refused_rnn(layer):
            from .from_torch import recurrent_refusal

            shown = cls if cls in _GATED else f"SimpleRNN(activation={_act_name(cfg.get('activation'))!r})"
            raise _unsupported(lname, shown, recurrent_refusal(cls in _GATED))
        if cls == "SimpleRNN":
            for flag in ("go_backwards", "stateful", "return_state"):
                if cfg.get(flag):
                    raise _unsupported(lname, f"SimpleRNN({flag}=True)",
                                       "only a forward, stateless SimpleRNN returning its outputs")
            wts = get_weights(lname, cls, cfg)
            kernel, rec = wts.get("kernel"), wts.get("recurrent_kernel")
            if kernel is None or rec is None or kernel.ndim != 2 or rec.ndim != 2:
                raise ModelFormatError(f"{where}: SimpleRNN '{lname}' lacks 2-D kernel/recurrent_kernel weights "
                                       f"(found {sorted(wts)})")
            # Keras: h_t = relu(x_t K + h_{t-1} R + b), K (n_in, units), R (units, units); ours act on columns
            builder.add(RNN, lname, weight_ih=kernel.T, weight_hh=rec.T, bias=wts.get("bias"),
                        return_sequences=bool(cfg.get("return_sequences", False)))
        elif cls == "Dense":
            wts = get_weights(lname, cls, cfg)
            if "kernel" not in wts:
                raise ModelFormatError(f"{where}: Dense '{lname}' has no kernel weights")
            kernel = wts["kernel"]
            if kernel.ndim != 2:
                raise ModelFormatError(f"{where}: Dense '{lname}': kernel has shape {kernel.shape}; expected 2-D")
            weight = kernel.T  # Keras kernels are (n_in, n_out); ours are (n_out, n_in)
            if perm is not None:
                if weight.shape[1] != perm.size:
                    raise ValidationError(
                        f"{where}: Dense '{lname}': kernel has {weight.shape[1]} inputs but Flatten '{perm_from}' "
                        f"gives {perm.size}", attr="weight")
                weight = weight[:, perm]
                perm = None
            builder.add(Dense, lname, weight=weight, bias=wts.get("bias"))
            activation(lname, cls, cfg.get("activation"))
        elif cls == "Conv2D":
            if _pair(cfg.get("dilation_rate", 1)) != (1, 1):
                raise _unsupported(lname, f"Conv2D(dilation_rate={cfg.get('dilation_rate')})", "only dilation_rate=1")
            if int(cfg.get("groups", 1)) != 1:
                raise _unsupported(lname, f"Conv2D(groups={cfg.get('groups')})", "only groups=1")
            wts = get_weights(lname, cls, cfg)
            kernel = wts.get("kernel")
            if kernel is None or kernel.ndim != 4:
                raise ModelFormatError(f"{where}: Conv2D '{lname}': kernel missing or not 4-D "
                                       f"({None if kernel is None else kernel.shape})")
            weight = kernel.transpose(3, 2, 0, 1)  # (kh, kw, in, out) -> (out, in, kh, kw)
            k = (weight.shape[2], weight.shape[3])
            strides = _pair(cfg.get("strides", 1))
            pad = cfg.get("padding", "valid")
            if pad == "same":
                padding = _same_padding(lname, cls, k, strides, builder.shape)
            elif pad == "valid":
                padding = (0, 0)
            else:
                raise _unsupported(lname, f"Conv2D(padding={pad!r})", "only padding 'valid' or 'same'")
            builder.add(Conv2d, lname, weight=weight, bias=wts.get("bias"), stride=strides, padding=padding)
            activation(lname, cls, cfg.get("activation"))
        elif cls in ("MaxPooling2D", "AveragePooling2D"):
            k = _pair(cfg.get("pool_size", 2))
            strides = _pair(cfg.get("strides") or k)
            pad = cfg.get("padding", "valid")
            padding = (0, 0) if pad == "valid" else _same_padding(lname, cls, k, strides, builder.shape)
            if cls == "AveragePooling2D" and padding != (0, 0):
                raise _unsupported(lname, "AveragePooling2D(padding='same')",
                                   "Keras excludes the padding from border averages, our AvgPool2d counts it; "
                                   "use padding='valid' or an input size divisible by the stride")
            builder.add(MaxPool2d if cls == "MaxPooling2D" else AvgPool2d, lname, kernel_size=k, stride=strides,
                        padding=padding)
        elif cls == "GlobalAveragePooling2D":
            if cfg.get("keepdims"):
                raise _unsupported(lname, "GlobalAveragePooling2D(keepdims=True)")
            builder.add(GlobalAvgPool2d, lname)
        elif cls == "Flatten":
            cur = builder.shape
            if len(cur) == 3 and not channels_first and cur[0] > 1 and cur[1] * cur[2] > 1:
                c, h, w = cur
                # position p of our (C, H, W) flatten holds Keras' (H, W, C) flat index perm[p]
                perm = np.arange(h * w * c).reshape(h, w, c).transpose(2, 0, 1).ravel()
                perm_from = lname
            if len(cur) > 1:
                builder.add(Flatten, lname)
        elif cls == "BatchNormalization":
            axis = cfg.get("axis", -1)
            axis = axis[0] if isinstance(axis, list) and len(axis) == 1 else axis
            rank = len(builder.shape)
            if rank == 3:
                channel_axis: tuple[int, ...] = (1,) if channels_first else (-1, 3)
            else:
                channel_axis = (-1, rank)
            if axis not in channel_axis:
                raise _unsupported(lname, f"BatchNormalization(axis={axis})", "only normalisation over channels")
            wts = get_weights(lname, cls, cfg)
            mean, var = wts.get("moving_mean"), wts.get("moving_variance")
            if mean is None or var is None:
                raise ModelFormatError(f"{where}: BatchNormalization '{lname}' has no moving_mean/moving_variance "
                                       f"weights (found {sorted(wts)})")
            if inputs and uses.get(inputs[0], 0) > 1:
                raise _unsupported(lname, cls, f"batch normalisation is folded into the layer before it, but "
                                               f"'{inputs[0]}' also feeds other layers")
            builder.fold_batchnorm(
                lname, gamma=wts.get("gamma"), beta=wts.get("beta"), mean=mean,
                var=var, eps=float(cfg.get("epsilon", 1e-3)), bn_type=cls,
                supported=SUPPORTED_LAYERS,
            )
        elif cls == "Activation":
            activation(lname, cls, cfg.get("activation"))
        elif cls == "ReLU":
            max_value = cfg.get("max_value")
            if cfg.get("negative_slope") or cfg.get("threshold"):
                raise _unsupported(lname, f"ReLU(max_value={max_value}, negative_slope="
                                          f"{cfg.get('negative_slope')}, threshold={cfg.get('threshold')})",
                                   "only the plain ReLU or a clipped one, ReLU(max_value=c)")
            builder.add(ReLU, lname, max_value=max_value)  # the layer checks max_value (a number > 0)
        elif cls == "Softmax":
            builder.add(Softmax, lname)
        else:
            raise _unsupported(lname, cls)
        layer_of[lname] = builder.layers[builder.cursor].name
    if perm is not None:
        raise _unsupported(perm_from, "Flatten", "a channels-last Flatten must be followed by a Dense layer")
    if chain:
        builder.select(layer_of[str(chain[-1].get("config", {}).get("name") or chain[-1].get("name"))])
    if task is None and isinstance(builder.last, Softmax):
        task = "classification"
    if task is not None:
        meta["task"] = task
    model_name = name or str(model_config.get("config", {}).get("name") or "keras_model")
    return builder.build(model_name, meta)


def _act_name(act: Any) -> str:
    """A layer's ``activation`` config (a string or a serialised object) as a lower-case name."""
    if isinstance(act, dict):
        act = act.get("config", {}).get("name") or act.get("class_name")
    return "linear" if act is None else str(act).lower()


def _by_order(cls: str, cfg: dict[str, Any], arrays: list[np.ndarray], where: str, lname: str) -> dict[str, np.ndarray]:
    names = list(_WEIGHT_ORDER.get(cls, ()))
    if cls in ("Dense", "Conv2D", "SimpleRNN") and not cfg.get("use_bias", True):
        names.remove("bias")
    if cls == "BatchNormalization":
        if not cfg.get("scale", True):
            names.remove("gamma")
        if not cfg.get("center", True):
            names.remove("beta")
    if len(arrays) != len(names):
        raise ModelFormatError(
            f"{where}: layer '{lname}' ({cls}) has {len(arrays)} weight arrays; expected {len(names)} ({names})"
        )
    return dict(zip(names, arrays))


def _read(ds: Any, where: str, what: str) -> np.ndarray:
    check_declared_size(ds, where, ModelFormatError)
    # what converting holds at once (measured: 2.4 float64 copies; 3 counted): this array, the layer's transposed copy ...
    n = int(np.prod(ds.shape, dtype=np.float64)) if ds.shape else 1
    budget = array_budget()
    if 24 * n > budget:
        raise ModelFormatError(
            f"{where}: weights {what} of shape {ds.shape} take up to {24 * n / 1e6:.0f} MB while converted (float64 copies), "
            f"more than the {budget / 1e6:.0f} MB array budget (set SPIKEBRIDGE_MAX_ARRAY_BYTES to allow it)"
        )
    try:
        if not ds.shape:
            return np.asarray(ds[()], dtype=np.float64)
        out = np.empty(ds.shape, dtype=np.float64)
        ds.read_direct(out)  # converted by HDF5 chunk by chunk: no array of the stored dtype beside this one
        return out
    except (OSError, ValueError, TypeError) as err:
        raise ModelFormatError(f"{where}: weights {what} cannot be read (truncated or corrupt file): {err}") from err


# -- legacy HDF5 ----------------------------------------------------------------

def _open(path: Path, where: str) -> h5py.File:
    if not path.exists():
        raise FileNotFoundError(f"model file '{path}' does not exist")
    try:
        f = h5py.File(path, "r")
    except OSError as err:
        raise ModelFormatError(f"{where} is not a readable HDF5 file (truncated or not HDF5): {err}") from err
    try:
        check_contained(f, where, ModelFormatError)
    except BaseException:
        f.close()
        raise
    return f


@_malformed_as_format_error
def from_keras_h5(
    source: str | Path,
    *,
    input_shape: Sequence[int] | None = None,
    name: str | None = None,
    task: str | None = None,
) -> AnnGraph:
    """Import a Keras legacy HDF5 model file (``model.save("m.h5")``) with h5py alone.

    Parameters
    ----------
    source : path
        The ``.h5`` file; it must hold the architecture (root attribute ``model_config``) and the
        weights (``/model_weights``), i.e. be a whole-model file, not ``save_weights`` output.
    input_shape : sequence of int, optional
        Per-sample input shape in **our** channels-first order, to override the file's.
    name : str, optional
        Graph name (default: the Keras model name).
    task : {"classification", "regression"}, optional
        Default: ``"classification"`` if the model ends with softmax.

    Returns
    -------
    AnnGraph
        Channels-first: transpose Keras image inputs ``(N, H, W, C)`` to ``(N, C, H, W)``.

    Raises
    ------
    ModelFormatError
        Truncated file, missing ``model_config`` or ``model_weights``, weights not where
        ``weight_names`` says.
    UnsupportedLayerError
        Layer, activation or option outside the supported set.
    ValidationError
        NaN/Inf weights, inconsistent shapes.
    """
    path = Path(source)
    where = f"Keras file '{path}'"
    with _open(path, where) as f:
        raw = f.attrs.get("model_config")
        if raw is None:
            raise ModelFormatError(
                f"{where} has no 'model_config' attribute: it is not a Keras whole-model HDF5 file "
                "(a save_weights() file holds no architecture)"
            )
        try:
            config = json.loads(_decode(raw))
        except (TypeError, ValueError) as err:
            raise ModelFormatError(f"{where}: attribute 'model_config' is not valid JSON: {err}") from err
        weights_root = f["model_weights"] if "model_weights" in f else None
        if weights_root is None:
            raise ModelFormatError(f"{where} has no 'model_weights' group (architecture only?)")
        extra = {k: _decode(f.attrs[k]) for k in ("keras_version", "backend") if k in f.attrs}

        def get_weights(lname: str, cls: str, cfg: dict[str, Any]) -> dict[str, np.ndarray]:
            if lname not in weights_root:
                raise ModelFormatError(f"{where}: no weights group /model_weights/{lname} for layer '{lname}' ({cls})")
            group = weights_root[lname]
            names = [_decode(n) for n in group.attrs.get("weight_names", [])]
            out: dict[str, np.ndarray] = {}
            arrays = []
            for wn in names:
                ds = group.get(wn)
                if ds is None:  # some writers store paths relative to the file's weight root
                    ds = weights_root.get(wn)
                if not isinstance(ds, h5py.Dataset):
                    raise ModelFormatError(f"{where}: layer '{lname}' lists weight '{wn}' but no such dataset exists")
                arrays.append(_read(ds, where, f"'{wn}' of layer '{lname}'"))
                out[wn.rsplit("/", 1)[-1].split(":")[0]] = arrays[-1]
            expected = set(_WEIGHT_ORDER.get(cls, ()))
            if expected and not set(out) <= expected:  # unusual names: fall back to creation order
                return _by_order(cls, cfg, arrays, where, lname)
            return out

        return _build_graph(config, get_weights, where=where, src=str(path), fmt="keras-h5", extra_meta=extra,
                            name=name, task=task, input_shape=input_shape)


# -- Keras 3 .keras -------------------------------------------------------------

def _snake(name: str) -> str:
    out = []
    for i, ch in enumerate(name):
        if ch.isupper() and i and (not name[i - 1].isupper() or (i + 1 < len(name) and name[i + 1].islower())):
            out.append("_")
        out.append(ch.lower())
    return "".join(out)


@_malformed_as_format_error
def from_keras_v3(
    source: str | Path,
    *,
    input_shape: Sequence[int] | None = None,
    name: str | None = None,
    task: str | None = None,
) -> AnnGraph:
    """Import a Keras 3 ``.keras`` archive with zipfile + h5py alone.

    Parameters and returns as :func:`from_keras_h5`.

    Raises
    ------
    ModelFormatError
        Not a zip file (truncated), missing ``config.json``/``model.weights.h5``, weights missing.
    UnsupportedLayerError, ValidationError
        As :func:`from_keras_h5`.
    """
    path = Path(source)
    where = f"Keras file '{path}'"
    if not path.exists():
        raise FileNotFoundError(f"model file '{path}' does not exist")
    try:
        with zipfile.ZipFile(path) as z:
            names = set(z.namelist())
            missing = {"config.json", "model.weights.h5"} - names
            if missing:
                raise ModelFormatError(f"{where} lacks {sorted(missing)}; not a Keras 3 model archive")
            config = json.loads(z.read("config.json"))
            # the sizes a member declares are checked before anything is decompressed (zip bombs)
            for member in z.infolist():
                if member.filename in ("config.json", "metadata.json", "model.weights.h5") and member.file_size > array_budget():
                    raise ModelFormatError(
                        f"{where}: member '{member.filename}' declares {member.file_size / 1e6:.0f} MB uncompressed, more than "
                        f"the {array_budget() / 1e6:.0f} MB array budget (set SPIKEBRIDGE_MAX_ARRAY_BYTES to allow it)"
                    )
            meta_json = json.loads(z.read("metadata.json")) if "metadata.json" in names else {}
            # to a temporary file chunk by chunk, read from there by h5py: holding the member in memory
            # (z.read) doubled the peak, the member beside the arrays read from it
            tmp = tempfile.TemporaryFile(prefix="spikebridge-keras-")
            with z.open("model.weights.h5") as src:
                shutil.copyfileobj(src, tmp, 1 << 20)
            tmp.seek(0)
    except (zipfile.BadZipFile, EOFError, OSError, zipfile.LargeZipFile) as err:
        raise ModelFormatError(f"{where} is not a readable .keras zip archive (truncated or corrupt): {err}") from err
    except ModelFormatError:
        raise
    except ValueError as err:  # json errors
        raise ModelFormatError(f"{where}: config.json or metadata.json is not valid JSON: {err}") from err
    try:
        wf = h5py.File(tmp, "r")
    except OSError as err:
        tmp.close()
        raise ModelFormatError(f"{where}: model.weights.h5 is not readable HDF5: {err}") from err
    with tmp, wf:
        check_contained(wf, f"{where} (model.weights.h5)", ModelFormatError)
        layers_group = wf.get("layers")
        if layers_group is None:
            layers_group = wf.get("_layer_checkpoint_dependencies")  # Keras 3.0 naming
        if layers_group is None:
            raise ModelFormatError(f"{where}: model.weights.h5 has no 'layers' group")
        by_name: dict[str, h5py.Group] = {}
        for key in layers_group:
            vars_group = layers_group[key].get("vars")
            if isinstance(vars_group, h5py.Group) and "name" in vars_group.attrs:
                by_name[str(_decode(vars_group.attrs["name"]))] = vars_group
        class_counts: dict[str, int] = {}
        _chain(config, where)  # refuses unsupported structures before any weight is read
        # fallback when 'name' attributes are absent: groups are named <snake_class>[_k] in the config's layer order
        fallback: dict[str, str] = {}
        for layer in config.get("config", {}).get("layers", []):
            cls = str(layer.get("class_name"))
            snake = _snake(cls)
            k = class_counts.get(snake, 0)
            class_counts[snake] = k + 1
            fallback[str(layer.get("config", {}).get("name") or layer.get("name"))] = snake if k == 0 else f"{snake}_{k}"

        def get_weights(lname: str, cls: str, cfg: dict[str, Any]) -> dict[str, np.ndarray]:
            group = by_name.get(lname)
            if group is None:
                key = fallback.get(lname)
                candidate = layers_group.get(key) if key else None
                group = candidate.get("vars") if isinstance(candidate, h5py.Group) else None
            if group is None:
                raise ModelFormatError(f"{where}: no weights found for layer '{lname}' ({cls}) in model.weights.h5")
            cell = group.parent.get("cell") if cls == "SimpleRNN" else None
            if isinstance(cell, h5py.Group) and isinstance(cell.get("vars"), h5py.Group) and not len(group):
                group = cell["vars"]  # a recurrent layer keeps its variables in its cell
            keys = sorted(group.keys(), key=lambda s: int(s) if s.isdigit() else 1 << 30)
            arrays = [_read(group[k], where, f"vars/{k} of layer '{lname}'") for k in keys]
            return _by_order(cls, cfg, arrays, where, lname)

        extra = {}
        if isinstance(meta_json, dict):
            extra = {k: meta_json[k] for k in ("keras_version",) if k in meta_json}
        return _build_graph(config, get_weights, where=where, src=str(path), fmt="keras", extra_meta=extra,
                            name=name, task=task, input_shape=input_shape)


def from_keras(source: str | Path, **kwargs: Any) -> AnnGraph:
    """Import a Keras file, choosing by suffix: ``.keras`` archive or legacy ``.h5``.

    See :func:`from_keras_v3` and :func:`from_keras_h5` for the parameters.
    """
    path = Path(source)
    if path.suffix.lower() == ".keras" or zipfile.is_zipfile(path):
        return from_keras_v3(path, **kwargs)
    return from_keras_h5(path, **kwargs)
