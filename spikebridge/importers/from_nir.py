"""Import a NIR graph (Neuromorphic Intermediate Representation) as a :class:`SpikingNetwork`.

NIR describes neurons as continuous-time ODEs and joins them by linear maps
(Affine, Linear, Scale, Conv, pooling, Flatten) and Delay nodes.  Chains of
linear nodes between two neuron nodes are composed into one sparse matrix per
delay and become one :class:`~spikebridge.snn.network.Projection`;
neuron nodes become populations; the Input node becomes the ``"input"``
population, fed with a spike raster (``encoding = {"kind": "spikes"}``).

How a spike acts on a neuron
----------------------------
A NIR neuron receives a signal :math:`I(t)`.  A spike of the pre-synaptic
neuron reaches the post-synaptic node as :math:`w\\,A\\,\\delta(t - t_s)`,
where ``w`` is the composed weight and ``A`` the *spike area*:

``convention="step"`` (default, :math:`A = dt`)
    A spike is a unit pulse held for one time step, the discrete-time reading
    that snnTorch, Norse, Rockpool and Sinabs use when they write and read NIR
    (snnTorch exports ``r = tau/dt`` and ``w_in = tau_syn/dt`` so that one
    spike through weight ``w`` adds exactly ``w`` to the membrane).
``convention="dirac"`` (:math:`A = 1`)
    A spike is a unit-area Dirac delta.

Integrating the NIR equations across the delta gives the jump per spike:

=================  =====================================  ==========================
NIR node           equation                               jump per spike, target
=================  =====================================  ==========================
IF                 :math:`\\dot v = R I`                  ``v += R w A``
LIF, LI            :math:`\\tau\\dot v = v_{leak} - v + R I`  ``v += R w A / tau``
I (integrator)     :math:`\\dot v = R I`                  ``v += R w A``
CubaLIF, CubaLI    :math:`\\tau_{syn}\\dot I = -I + w_{in} S`  ``I' += R w_in w A / tau_syn``
=================  =====================================  ==========================

For the cuba models we simulate :math:`I' = R I`, so that the population's
``r`` is 1 and per-neuron ``R`` and ``w_in`` fold into the weights.  An
Affine/Conv bias ``b`` is a constant signal, not a spike: it becomes the
population ``bias`` (membrane units per second) ``R b`` (IF, I), ``R b / tau``
(LIF, LI) and, approximately, ``R w_in b / tau_mem`` (cuba: NIR feeds the bias
into ``I``, we feed its steady state into ``v``; a ConversionWarning says so).

Spiking neurons are shifted by their reset potential (``v' = v - v_reset``) so
that reset is to zero and the threshold ``v_threshold - v_reset`` is positive;
``params["v_offset"]`` keeps the shift.  NIR's initial state is ``v = 0``,
i.e. ``v_init = -v_reset``.

Time steps
----------
Every projection takes one time step (spikebridge's discrete-time contract);
a NIR ``Delay`` of ``tau`` seconds adds ``round(tau / dt)`` steps, so a
projection's delay is ``dt * (1 + round(tau / dt))``.  Recurrent loops thus
act one step later, as in snnTorch's ``RLeaky``; feed-forward layers add one
step of latency each (snnTorch: none), recorded in ``readout["latency_steps"]``.
NIR fires when ``v > v_threshold``; spikebridge when ``v >= threshold``.

Graphs written by :func:`spikebridge.export.nir.export_nir`
-----------------------------------------------------------
What NIR cannot express is kept in ``spikebridge_*`` metadata, and read back (validated; a
malformed value raises :class:`~spikebridge.errors.ModelFormatError`): on a neuron node,
``spikebridge_reset`` (``"subtract"`` or ``"none"``), ``spikebridge_v_init`` and the window
floor of a sequence network (``spikebridge_window`` in seconds, ``spikebridge_window_floor``,
``spikebridge_window_wrap``);
on a Linear/Affine node ``spikebridge_delay_steps = 0`` (same-step delivery: the projection
takes no step, and the network gets ``min_delay_steps=0``); on the graph, with ``convention="step"``
and the exported ``dt``, the input encoding and the read-out (``spikebridge_encoding``,
``spikebridge_readout``).  A converted network (a ReLU RNN included) then gives the same spikes
after ``load_nir(export_nir(net), dt=net.dt)``.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import scipy.sparse as sp

from .._optional import import_optional
from ..snn.network import Population, Projection, SpikingNetwork
from ..errors import ConversionWarning, ModelFormatError, UnsupportedLayerError, ValidationError
from ..ir.graph import safe_name

if TYPE_CHECKING:  # pragma: no cover
    import nir

__all__ = ["load_nir", "SUPPORTED_NODES", "CONVENTIONS", "spike_area"]

#: NIR node types the importer understands
SUPPORTED_NODES = (
    "Input",
    "Output",
    "NIRGraph",
    "Affine",
    "Linear",
    "Scale",
    "Conv1d",
    "Conv2d",
    "Flatten",
    "AvgPool2d",
    "SumPool2d",
    "Delay",
    "IF",
    "LIF",
    "LI",
    "CubaLIF",
    "CubaLI",
    "I",
)
CONVENTIONS = ("step", "dirac")
_MAX_GROUPS = 64  # most populations one NIR node may be split into (one per distinct time constants)

_NEURONS = ("IF", "LIF", "LI", "CubaLIF", "CubaLI", "I")
_SPIKING = ("IF", "LIF", "CubaLIF")
_MODEL = {"IF": "if", "LIF": "lif", "LI": "li", "CubaLIF": "cuba_lif", "CubaLI": "cuba_li", "I": "integrator"}

# an operator: delay in steps -> sparse matrix (n_current, n_source)
_Ops = dict[int, sp.csr_matrix]


def spike_area(convention: str, dt: float) -> float:
    """Area of one spike in the NIR signal (seconds for ``"step"``, 1 for ``"dirac"``).

    Examples
    --------
    >>> spike_area("step", 1e-3)
    0.001
    >>> spike_area("dirac", 1e-3)
    1.0
    """
    if convention not in CONVENTIONS:
        raise ValidationError(f"NIR spike convention {convention!r} is not one of {CONVENTIONS}", attr="convention")
    return float(dt) if convention == "step" else 1.0


@dataclass
class _Identity:
    """Stand-in for the Input/Output nodes of a nested NIRGraph (a pass-through)."""

    metadata: dict[str, Any] = field(default_factory=dict)


def _type(node: Any) -> str:
    return "_Identity" if isinstance(node, _Identity) else type(node).__name__


def _flatten_graph(graph: Any, prefix: str = "") -> tuple[dict[str, Any], list[tuple[str, str]]]:
    """Inline nested NIRGraph nodes; their Input/Output nodes become pass-throughs."""
    nodes: dict[str, Any] = {}
    edges: list[tuple[str, str]] = []
    sub_io: dict[str, tuple[list[str], list[str]]] = {}
    for name, node in graph.nodes.items():
        full = prefix + name
        if type(node).__name__ == "NIRGraph":
            inner_nodes, inner_edges = _flatten_graph(node, prefix=full + ".")
            ins = [full + "." + k for k, n in node.nodes.items() if type(n).__name__ == "Input"]
            outs = [full + "." + k for k, n in node.nodes.items() if type(n).__name__ == "Output"]
            for k in ins + outs:
                inner_nodes[k] = _Identity(metadata={"nir_type": type(inner_nodes[k]).__name__})
            nodes.update(inner_nodes)
            edges.extend(inner_edges)
            sub_io[full] = (ins, outs)
        else:
            nodes[full] = node
    for a, b in graph.edges:
        a, b = prefix + str(a), prefix + str(b)
        srcs = sub_io[a][1] if a in sub_io else [a]
        dsts = sub_io[b][0] if b in sub_io else [b]
        edges.extend((s, d) for s in srcs for d in dsts)
    return nodes, edges


def _check_width(shape: tuple[int, ...], where: str) -> None:
    """Refuse a declared shape (a few bytes in the file) whose per-neuron arrays would exceed the array budget."""
    from .._h5 import array_budget

    n = float(np.prod(shape, dtype=np.float64))
    if any(s < 0 for s in shape) or n * 8 > array_budget():
        raise ModelFormatError(
            f"{where} declares shape {shape} ({n:.0f} neurons), more than the {array_budget() / 1e6:.0f} MB array "
            "budget allows (8 bytes per neuron per array; set SPIKEBRIDGE_MAX_ARRAY_BYTES to allow it)"
        )


def _check_nir_file(path: str) -> None:
    """Refuse, before ``nir.read`` reads every dataset, links or storage outside the file and forged sizes."""
    import h5py

    from .._h5 import check_contained, check_declared_size, check_total_size

    where = f"NIR file '{path}'"
    try:
        f = h5py.File(path, "r")
    except OSError as err:
        raise ModelFormatError(f"'{path}' is not a readable NIR file: {str(err).splitlines()[0]}") from err
    with f:
        check_contained(f, where, ModelFormatError)

        def check(name: str, obj: Any) -> None:
            if isinstance(obj, h5py.Dataset):
                check_declared_size(obj, where, ModelFormatError)

        f.visititems(check)
        # nir.read holds every array, then conversion makes a dense float64 matrix, its nonzero indices
        # and a Projection's copies of them (measured: 152 bytes per stored value at the peak, 5e6 weights)
        check_total_size(f, where, ModelFormatError, bytes_per_value=160,
                         what="NIR's arrays, the dense matrix, the synapse indices and their copies")


def _read_graph(source: Any) -> Any:
    nir = import_optional("nir", "NIR import")
    if isinstance(source, nir.NIRGraph):
        return source
    if isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        if not os.path.exists(path):
            raise FileNotFoundError(f"NIR file '{path}' does not exist")
        errors = (OSError, KeyError, ValueError, TypeError, AssertionError, NotImplementedError)
        _check_nir_file(path)
        try:
            return nir.read(path)
        except errors as err:
            # nir's own type inference refuses some valid graphs (no Input node, older files):
            # we check shapes ourselves while composing, so read once more without it
            try:
                return nir.read(path, type_check=False)
            except errors:
                raise ModelFormatError(f"'{path}' is not a readable NIR file: {err}") from err
    raise ValidationError(
        f"load_nir: source must be a path to a .nir file or a nir.NIRGraph, got {type(source).__name__}", attr="source"
    )


def _as_vector(value: Any, n: int, what: str, where: str) -> np.ndarray:
    arr = np.asarray(value, dtype=np.float64).ravel()
    if arr.size == 1:
        return np.full(n, float(arr[0]))
    if arr.size != n:
        raise ModelFormatError(f"{where}: parameter {what} has {arr.size} values for {n} neurons")
    return arr


def _squeeze(arr: np.ndarray) -> float | np.ndarray:
    """A scalar when every neuron has the same value (what the backend handles cheapest)."""
    return float(arr[0]) if arr.size and np.all(arr == arr[0]) else arr


def _tuple(value: Any, nd: int, what: str, where: str) -> tuple[int, ...]:
    arr = np.asarray(value).ravel()
    if arr.size == 1:
        return (int(arr[0]),) * nd
    if arr.size != nd:
        raise ModelFormatError(f"{where}: {what} {arr.tolist()} needs 1 or {nd} values")
    return tuple(int(x) for x in arr)


def _conv_matrix(
    weight: np.ndarray,
    in_shape: tuple[int, ...],
    stride: Any,
    padding: Any,
    dilation: Any,
    groups: int,
    where: str,
) -> tuple[sp.csr_matrix, tuple[int, ...]]:
    """Explicit sparse matrix of an N-d convolution (PyTorch semantics), and the output shape."""
    nd = weight.ndim - 2
    if len(in_shape) != nd + 1:
        raise ModelFormatError(f"{where}: input shape {in_shape} does not fit a {nd}-d convolution (C, *spatial)")
    c_out, c_in_g = weight.shape[:2]
    kernel = weight.shape[2:]
    c_in, spatial = in_shape[0], in_shape[1:]
    groups = int(groups)
    if c_in != c_in_g * groups or c_out % groups:
        raise ModelFormatError(
            f"{where}: weight {weight.shape} with groups={groups} expects {c_in_g * groups} input channels, got {c_in}"
        )
    st = _tuple(stride, nd, "stride", where)
    dil = _tuple(dilation, nd, "dilation", where)
    if isinstance(padding, (str, bytes)):
        mode = padding.decode() if isinstance(padding, bytes) else padding
        if mode == "valid":
            pad_lo = (0,) * nd
            out_sp = tuple((s - d * (k - 1) - 1) // t + 1 for s, d, k, t in zip(spatial, dil, kernel, st))
        elif mode == "same":
            pad_lo = tuple((d * (k - 1)) // 2 for d, k in zip(dil, kernel))
            out_sp = tuple(spatial)
        else:
            raise ModelFormatError(f"{where}: padding {mode!r} is not 'same', 'valid' or an int")
    else:
        pad_lo = _tuple(padding, nd, "padding", where)
        out_sp = tuple(
            (s + 2 * p - d * (k - 1) - 1) // t + 1 for s, p, d, k, t in zip(spatial, pad_lo, dil, kernel, st)
        )
    if min(out_sp) < 1:
        raise ModelFormatError(f"{where}: input {in_shape} is too small for kernel {kernel}; output {out_sp}")
    n_out_sp, n_in_sp = int(np.prod(out_sp)), int(np.prod(spatial))
    out_idx = np.indices(out_sp).reshape(nd, -1)  # (nd, n_out_sp)
    co = np.arange(c_out)
    per_group_out = c_out // groups
    rows, cols, data = [], [], []
    for ci_local in range(c_in_g):
        ci = (co // per_group_out) * c_in_g + ci_local
        for kk in np.ndindex(*kernel):
            pos = [out_idx[i] * st[i] - pad_lo[i] + kk[i] * dil[i] for i in range(nd)]
            valid = np.ones(n_out_sp, dtype=bool)
            for i in range(nd):
                valid &= (pos[i] >= 0) & (pos[i] < spatial[i])
            if not valid.any():
                continue
            o = np.nonzero(valid)[0]
            flat_in = np.ravel_multi_index([p[valid] for p in pos], spatial)
            w = weight[(slice(None), ci_local) + kk]
            keep = w != 0
            rows.append((co[keep, None] * n_out_sp + o[None, :]).ravel())
            cols.append((ci[keep, None] * n_in_sp + flat_in[None, :]).ravel())
            data.append(np.repeat(w[keep], o.size))
    n_rows, n_cols = c_out * n_out_sp, c_in * n_in_sp
    if rows:
        m = sp.csr_matrix((np.concatenate(data), (np.concatenate(rows), np.concatenate(cols))), shape=(n_rows, n_cols))
    else:
        m = sp.csr_matrix((n_rows, n_cols))
    return m, (c_out, *out_sp)


class _Importer:
    def __init__(self, graph: Any, dt: float, convention: str) -> None:
        self.dt = dt
        self.convention = convention
        self.area = spike_area(convention, dt)
        self.nodes, self.edges = _flatten_graph(graph)
        self.succ: dict[str, list[str]] = {k: [] for k in self.nodes}
        self.pred: dict[str, list[str]] = {k: [] for k in self.nodes}
        for a, b in self.edges:
            for end in (a, b):
                if end not in self.nodes:
                    raise ModelFormatError(f"NIR edge ({a!r}, {b!r}) names node {end!r}, which is not in the graph")
            self.succ[a].append(b)
            self.pred[b].append(a)
        self.acc: dict[tuple[str, str], _Ops] = {}
        self.first_hops: dict[tuple[str, str], set[str]] = {}
        self.bias_starts: dict[str, tuple[_Ops, tuple[int, ...]]] = {}
        self.bias_acc: dict[str, np.ndarray] = {}
        self.in_shape: dict[str, tuple[int, ...]] = {}
        self.outputs: dict[str, str] = {}
        self.delay_warned: set[str] = set()
        self._check_types()

    # -- graph checks ---------------------------------------------------------
    def _check_types(self) -> None:
        for name, node in self.nodes.items():
            kind = _type(node)
            if kind not in SUPPORTED_NODES and kind != "_Identity":
                hint = None
                if kind == "Threshold":
                    hint = (
                        "a stateless Heaviside on a continuous signal has no counterpart among spikebridge's "
                        "neuron models; express the neuron as an IF/LIF/CubaLIF node"
                    )
                raise UnsupportedLayerError(name, kind, SUPPORTED_NODES, source="NIR", hint=hint)
        for name in self.nodes:
            if _type(self.nodes[name]) == "Input" and self.pred[name]:
                raise ModelFormatError(f"NIR Input node '{name}' has incoming edges from {self.pred[name]}")
        inputs = [k for k, n in self.nodes.items() if _type(n) == "Input"]
        if len(inputs) > 1:
            raise UnsupportedLayerError(
                inputs[1], "second Input", ["one Input node"], source="NIR",
                hint=f"spikebridge networks have one input population; the graph has Inputs {inputs}",
            )
        self.input_name = inputs[0] if inputs else None

    # -- propagation of linear maps ------------------------------------------
    def _apply(self, name: str, node: Any, ops: _Ops, shape: tuple[int, ...]) -> tuple[_Ops, tuple[int, ...], np.ndarray | None]:
        """Apply linear node ``name`` to ``ops``; return new ops, new shape and its bias (or None)."""
        kind = _type(node)
        n = int(np.prod(shape))
        where = f"NIR {kind} node '{name}'"
        if kind == "_Identity":
            return ops, shape, None
        if kind in ("Affine", "Linear"):
            w = np.asarray(node.weight, dtype=np.float64)
            if w.ndim != 2:
                raise UnsupportedLayerError(name, f"{kind} with weight of {w.ndim} dims", ["2-D weight (n_out, n_in)"], source="NIR")
            if w.shape[1] != n:
                raise ModelFormatError(f"{where}: weight {w.shape} expects {w.shape[1]} inputs, got {n} (shape {shape})")
            m = sp.csr_matrix(w)
            bias = np.asarray(node.bias, dtype=np.float64).ravel() if kind == "Affine" else None
            if bias is not None and bias.size not in (1, w.shape[0]):
                raise ModelFormatError(f"{where}: bias has {bias.size} values for {w.shape[0]} outputs")
            if bias is not None:
                bias = np.broadcast_to(bias, (w.shape[0],)).copy()
            # export_nir's same-step delivery: this projection takes no step (its delay is 0)
            shift = -1 if _same_step(node, where) else 0
            if shift and min(ops, default=0) + shift < -1:
                raise ModelFormatError(f"{where}: spikebridge_delay_steps=0 on two linear nodes of one path")
            return {d + shift: m @ a for d, a in ops.items()}, (w.shape[0],), bias
        if kind == "Scale":
            s = _as_vector(node.scale, n, "scale", where)
            m = sp.diags(s, format="csr")
            return {d: m @ a for d, a in ops.items()}, shape, None
        if kind == "Flatten":
            return ops, (n,), None
        if kind in ("Conv1d", "Conv2d"):
            w = np.asarray(node.weight, dtype=np.float64)
            nd = 1 if kind == "Conv1d" else 2
            if w.ndim != nd + 2:
                raise ModelFormatError(f"{where}: weight of shape {w.shape} is not (C_out, C_in, *kernel{nd}d)")
            in_shape = shape
            if len(in_shape) != nd + 1:
                declared = getattr(node, "input_shape", None)
                if declared is not None and int(np.prod(declared)) * w.shape[1] * int(getattr(node, "groups", 1)) == n:
                    in_shape = (n // int(np.prod(declared)), *[int(x) for x in np.ravel(declared)])
                else:
                    raise ModelFormatError(f"{where}: cannot read input of shape {shape} as (C, *spatial{nd}d)")
            m, out_shape = _conv_matrix(w, in_shape, node.stride, node.padding, node.dilation, int(node.groups), where)
            bias = np.asarray(node.bias, dtype=np.float64).ravel()
            if bias.size == 1:
                bias = np.full(out_shape[0], float(bias[0]))
            if bias.size != out_shape[0]:
                raise ModelFormatError(f"{where}: bias has {bias.size} values for {out_shape[0]} channels")
            full_bias = np.repeat(bias, int(np.prod(out_shape[1:])))
            return {d: m @ a for d, a in ops.items()}, out_shape, full_bias
        if kind in ("AvgPool2d", "SumPool2d"):
            if len(shape) != 3:
                raise ModelFormatError(f"{where}: input shape {shape} is not (C, H, W)")
            k = _tuple(node.kernel_size, 2, "kernel_size", where)
            stride = node.stride if node.stride is not None and np.size(node.stride) else k
            pad = node.padding if node.padding is not None and np.size(node.padding) else 0
            value = 1.0 / (k[0] * k[1]) if kind == "AvgPool2d" else 1.0
            w = np.full((shape[0], 1, *k), value)
            m, out_shape = _conv_matrix(w, shape, stride, pad, 1, shape[0], where)
            return {d: m @ a for d, a in ops.items()}, out_shape, None
        if kind == "Delay":
            tau = _as_vector(node.delay, n, "delay", where)
            if np.any(tau < 0):
                raise ModelFormatError(f"{where}: negative delay {tau.min()} s")
            steps = np.rint(tau / self.dt).astype(np.int64)
            if name not in self.delay_warned and not np.allclose(steps * self.dt, tau, rtol=0, atol=1e-6 * self.dt + 1e-12):
                self.delay_warned.add(name)
                warnings.warn(
                    f"{where}: delays {np.unique(tau).tolist()[:5]} s are not multiples of dt={self.dt} s; "
                    "rounded to whole steps",
                    ConversionWarning,
                    stacklevel=4,
                )
            out: _Ops = {}
            for k_steps in np.unique(steps):
                mask = sp.diags((steps == k_steps).astype(np.float64), format="csr")
                for d, a in ops.items():
                    key = d + int(k_steps)
                    part = mask @ a
                    out[key] = out[key] + part if key in out else part
            return out, shape, None
        raise UnsupportedLayerError(name, kind, SUPPORTED_NODES, source="NIR")  # pragma: no cover

    def _visit(self, name: str, ops: _Ops, shape: tuple[int, ...], src: str | None, via: tuple[str, ...]) -> None:
        node = self.nodes[name]
        kind = _type(node)
        if kind in _NEURONS:
            self._arrive(name, ops, shape, src, via)
            return
        if kind == "Output":
            if src is None:
                return
            if via:
                raise UnsupportedLayerError(
                    name, f"Output fed by {_type(self.nodes[via[-1]])} '{via[-1]}'", ["Output fed by a neuron node or Input"],
                    source="NIR",
                    hint="spikebridge reads spikes or membrane potentials of a population, not a linear signal; "
                    "end the graph with a neuron node (e.g. LI as a read-out)",
                )
            return
        if kind == "Input":  # pragma: no cover - refused in _check_types
            raise ModelFormatError(f"NIR Input node '{name}' has incoming edges")
        if name in via:
            loop = " -> ".join(via[via.index(name):] + (name,))
            raise ModelFormatError(
                f"NIR graph has a loop through linear nodes only ({loop}); every loop needs a neuron node"
            )
        ops2, shape2, bias = self._apply(name, node, ops, shape)
        if src is not None and bias is not None and np.any(bias != 0) and name not in self.bias_starts:
            self.bias_starts[name] = ({0: sp.csr_matrix(bias.reshape(-1, 1))}, shape2)
        # subgraph pass-throughs are not named in paths: they neither name projections nor feed Outputs
        via2 = via if kind == "_Identity" else via + (name,)
        for nxt in self.succ[name]:
            self._visit(nxt, ops2, shape2, src, via2)

    def _arrive(self, tgt: str, ops: _Ops, shape: tuple[int, ...], src: str | None, via: tuple[str, ...]) -> None:
        _check_width(shape, f"NIR node '{tgt}'")
        n = int(np.prod(shape))
        if tgt in self.in_shape and int(np.prod(self.in_shape[tgt])) != n:
            raise ModelFormatError(
                f"NIR node '{tgt}': inputs of different sizes arrive ({self.in_shape[tgt]} and {shape})"
            )
        self.in_shape.setdefault(tgt, shape)
        if src is None:
            vec = sum((a.toarray().ravel() for a in ops.values()), np.zeros(n))
            self.bias_acc[tgt] = self.bias_acc.get(tgt, np.zeros(n)) + vec
            return
        acc = self.acc.setdefault((src, tgt), {})
        for d, a in ops.items():
            acc[d] = acc[d] + a if d in acc else a
        self.first_hops.setdefault((src, tgt), set()).add(self._path_name(via))

    def _path_name(self, via: tuple[str, ...]) -> str:
        """Name for a projection along ``via``: the spikebridge projection it was exported from, else
        its first weighted node, else its first node ("" for a direct edge)."""
        for hop in via:
            meta = getattr(self.nodes[hop], "metadata", None) or {}
            if "spikebridge_projection" in meta:
                return str(meta["spikebridge_projection"])
        weighted = [h for h in via if _type(self.nodes[h]) in ("Affine", "Linear", "Conv1d", "Conv2d")]
        return weighted[0] if weighted else (via[0] if via else "")

    def _source_shape(self, name: str) -> tuple[int, ...]:
        node = self.nodes[name]
        kind = _type(node)
        if kind == "Input":
            shape = node.input_type.get("input") if isinstance(node.input_type, Mapping) else None
            if shape is None:
                raise ModelFormatError(f"NIR Input node '{name}' has no shape")
            shape = tuple(int(s) for s in np.ravel(shape))
            _check_width(shape, f"NIR Input node '{name}'")
            return shape
        return self._neuron_shape(name)

    def _neuron_shape(self, name: str) -> tuple[int, ...]:
        node = self.nodes[name]
        if name in self.in_shape:
            return self.in_shape[name]
        key = {"IF": "v_threshold", "LIF": "v_threshold", "CubaLIF": "v_threshold", "LI": "tau", "CubaLI": "tau_mem", "I": "r"}
        return tuple(int(s) for s in np.shape(getattr(node, key[_type(node)]))) or (1,)

    def run(self) -> None:
        # sources: the Input and every spiking neuron; non-spiking neurons may only feed Outputs
        order = list(self.nodes)
        for name in order:
            kind = _type(self.nodes[name])
            if kind in _NEURONS and kind not in _SPIKING:
                bad = [s for s in self._through_identities(name) if _type(self.nodes[s]) != "Output"]
                if bad:
                    raise UnsupportedLayerError(
                        name, f"{kind} feeding {bad}", ["non-spiking node feeding only Output nodes"], source="NIR",
                        hint=f"{kind} emits a continuous potential, not spikes; spikebridge projections carry spikes only",
                    )
        # sources in order of discovery from the Input, so that a neuron fed by a conv knows its
        # shape before it acts as a source; spiking nodes not reachable from the Input come last
        queue = [k for k in order if _type(self.nodes[k]) == "Input"]
        done: set[str] = set()
        while True:
            while queue:
                src = queue.pop(0)
                if src in done:
                    continue
                done.add(src)
                shape = self._source_shape(src)
                if _type(self.nodes[src]) != "Input":
                    self.in_shape.setdefault(src, shape)
                for nxt in self.succ[src]:
                    self._visit(nxt, {0: sp.identity(int(np.prod(shape)), format="csr")}, shape, src, ())
                queue.extend(t for (s, t) in self.acc if s == src and t not in done and _type(self.nodes[t]) in _SPIKING)
            rest = [k for k in order if _type(self.nodes[k]) in _SPIKING and k not in done]
            if not rest:
                break
            queue.append(rest[0])
        for name in order:
            if _type(self.nodes[name]) == "Output":
                feeders = self._feeders(name)
                if feeders:
                    self.outputs[name] = feeders[0]
        for name, (ops, shape) in self.bias_starts.items():
            for nxt in self.succ[name]:
                self._visit(nxt, ops, shape, None, (name,))

    def _through_identities(self, name: str) -> list[str]:
        """Successors of ``name``, looking through subgraph pass-throughs."""
        out: list[str] = []
        stack, seen = list(self.succ[name]), set()
        while stack:
            s = stack.pop(0)
            if s not in seen:
                seen.add(s)
                if _type(self.nodes[s]) == "_Identity":
                    stack.extend(self.succ[s])
                else:
                    out.append(s)
        return out

    def _feeders(self, name: str) -> list[str]:
        """Neuron or Input nodes feeding ``name`` directly or through subgraph pass-throughs."""
        out: list[str] = []
        stack, seen = list(self.pred[name]), set()
        while stack:
            p = stack.pop(0)
            if p in seen:
                continue
            seen.add(p)
            kind = _type(self.nodes[p])
            if kind == "_Identity":
                stack.extend(self.pred[p])
            elif kind in _NEURONS or kind == "Input":
                out.append(p)
            else:
                raise UnsupportedLayerError(
                    name, f"Output fed by {kind} '{p}'", ["Output fed by a neuron node or Input"], source="NIR",
                    hint="spikebridge reads spikes or membrane potentials of a population, not a linear signal; "
                    "end the graph with a neuron node (e.g. LI as a read-out)",
                )
        return out

    def _order(self) -> list[str]:
        """Node names breadth-first from the Input (then the rest in file order)."""
        order: list[str] = []
        queue = [k for k, n in self.nodes.items() if _type(n) == "Input"]
        seen = set(queue)
        while queue:
            k = queue.pop(0)
            order.append(k)
            for nxt in self.succ[k]:
                if nxt not in seen:
                    seen.add(nxt)
                    queue.append(nxt)
        return order + [k for k in self.nodes if k not in seen]

    # -- building the network ------------------------------------------------
    def build(self, name: str | None) -> SpikingNetwork:
        taken: set[str] = set()
        out_nodes = list(self.outputs.items())
        output_src = out_nodes[0][1] if out_nodes else None
        populations: list[Population] = []
        jump_scale: dict[str, np.ndarray] = {}
        # node -> its populations (one per group of neurons sharing time constants), group label and
        # index within the group of every neuron of the node
        pops_of: dict[str, list[str]] = {}
        group_of: dict[str, np.ndarray] = {}
        local_of: dict[str, np.ndarray] = {}
        for node_name in self._order():
            kind = _type(self.nodes[node_name])
            if kind not in _NEURONS and kind != "Input":
                continue
            base = safe_name(node_name)
            cand, k = base, 1
            while cand in taken:
                cand, k = f"{base}_{k}", k + 1
            role = "input" if node_name == self.input_name else ("output" if node_name == output_src else "hidden")
            groups, scale = self._populations(node_name, cand, role)
            if len(groups) > 1 and node_name == output_src:
                raise UnsupportedLayerError(
                    node_name, f"{kind} output with per-neuron time constants or reset potentials",
                    [f"an output {kind} node whose neurons share them"], source="NIR",
                    hint="spikebridge reads one output population; hidden nodes are split into groups, outputs cannot be",
                )
            labels = np.zeros(scale.size, dtype=np.int64)
            local = np.zeros(scale.size, dtype=np.int64)
            pops_of[node_name] = []
            for g, (pop, idx) in enumerate(groups):
                if pop.name in taken:
                    raise ModelFormatError(f"NIR node '{node_name}': population name '{pop.name}' is taken twice")
                taken.add(pop.name)
                populations.append(pop)
                pops_of[node_name].append(pop.name)
                labels[idx] = g
                local[idx] = np.arange(idx.size)
            group_of[node_name], local_of[node_name] = labels, local
            jump_scale[node_name] = scale
        projections: list[Projection] = []
        proj_names = set(taken)
        for (src, tgt), ops in self.acc.items():
            rows_l, cols_l, data_l, delays_l = [], [], [], []
            for d, a in sorted(ops.items()):
                coo = a.tocoo()
                keep = coo.data != 0
                rows_l.append(coo.row[keep])
                cols_l.append(coo.col[keep])
                data_l.append(coo.data[keep] * jump_scale[tgt][coo.row[keep]])
                delays_l.append(np.full(int(keep.sum()), self.dt * (1 + d)))
            rows, cols, weight, delay_arr = (np.concatenate(x) for x in (rows_l, cols_l, data_l, delays_l))
            if weight.size == 0:
                continue
            hops = self.first_hops.get((src, tgt), set())
            meta_name = safe_name(next(iter(hops))) if len(hops) == 1 and "" not in hops else None
            base = meta_name if meta_name and meta_name not in proj_names else f"{safe_name(src)}_to_{safe_name(tgt)}"
            g_pre, g_post = group_of[src][cols], group_of[tgt][rows]
            pairs = sorted(set(zip(g_pre.tolist(), g_post.tolist())))
            for a, b in pairs:
                m = (g_pre == a) & (g_post == b)
                pname = base if len(pairs) == 1 else f"{base}_{pops_of[src][a]}_{pops_of[tgt][b]}"
                stem, k = pname, 1
                while pname in proj_names:
                    pname, k = f"{stem}_{k}", k + 1
                proj_names.add(pname)
                dl = delay_arr[m]
                projections.append(
                    Projection(
                        name=pname,
                        pre=pops_of[src][a],
                        post=pops_of[tgt][b],
                        pre_index=local_of[src][cols[m]],
                        post_index=local_of[tgt][rows[m]],
                        weight=weight[m],
                        delay=float(dl[0]) if np.all(dl == dl[0]) else dl,
                        target="I" if _type(self.nodes[tgt]) in ("CubaLIF", "CubaLI") else "v",
                        kind="recurrent" if src == tgt else "dense",
                        layer=",".join(sorted(h for h in hops if h)) or None,
                    )
                )
        out_pop = pops_of[output_src][0] if output_src else None
        out_kind = _type(self.nodes[output_src]) if output_src else None
        same_step = any(np.any(np.asarray(p.delay) == 0) for p in projections)
        net = SpikingNetwork(
            populations,
            projections,
            min_delay_steps=0 if same_step else 1,
            input=pops_of[self.input_name][0] if self.input_name else None,
            output=out_pop,
            dt=self.dt,
            readout={
                "mode": "count" if out_kind in _SPIKING or out_kind == "Input" else "potential",
                "task": "classification",
                "scale": 1.0,
                "latency_steps": 0,
                "n_out": populations[[p.name for p in populations].index(out_pop)].n if out_pop else 0,
            },
            encoding={"kind": "spikes"},
            name=name or "nir",
            metadata={
                "source": "nir",
                "nir_convention": self.convention,
                "nir_spike_area": self.area,
                "nir_nodes": {k: _type(v) for k, v in self.nodes.items()},
                "nir_outputs": {k: pops_of[v][0] for k, v in self.outputs.items()},
                "nir_groups": {k: v for k, v in pops_of.items() if len(v) > 1},
            },
        )
        net.readout["latency_steps"] = _latency(net)
        return net

    def _populations(self, node_name: str, pop_name: str, role: str) -> tuple[list[tuple[Population, np.ndarray]], np.ndarray]:
        """The population(s) of one node, with the node indices of each, and the per-neuron jump per unit weight.

        Neurons of one node that differ in time constants or reset potential go to separate
        populations ``<name>_g<k>`` (spikebridge populations share those values).
        """
        node = self.nodes[node_name]
        kind = _type(node)
        if kind == "Input":
            shape = self._source_shape(node_name)
            n = int(np.prod(shape))
            pop = Population(name=pop_name, n=n, shape=shape, model="input", role="input", sign="mixed",
                             layer=node_name, params={"nir_type": "Input"})
            return [(pop, np.arange(n))], np.ones(n)
        shape = self._neuron_shape(node_name)
        n = int(np.prod(shape))
        declared = (getattr(node, "metadata", None) or {}).get("spikebridge_shape")  # written by export_nir
        if declared is not None and int(np.prod(declared)) == n:
            shape = tuple(int(x) for x in np.ravel(declared))
        where = f"NIR {kind} node '{node_name}'"
        vec = lambda attr: _as_vector(getattr(node, attr), n, attr, where)  # noqa: E731
        bias_in = self.bias_acc.get(node_name, np.zeros(n))
        extra = _exported_neuron_meta(node, n, where) if kind in _SPIKING else {}
        keys: dict[str, np.ndarray] = {}
        if kind in ("IF", "I"):
            r = vec("r")
            scale = r * self.area
            bias = r * bias_in
        elif kind in ("LIF", "LI"):
            r, tau = vec("r"), vec("tau")
            if np.any(tau <= 0):
                raise ModelFormatError(f"{where}: tau must be > 0 s, got {tau.min()}")
            scale = r * self.area / tau
            bias = r * bias_in / tau
            keys["tau_mem"] = tau
        else:  # CubaLIF, CubaLI
            r, w_in, tau_syn, tau_mem = vec("r"), vec("w_in"), vec("tau_syn"), vec("tau_mem")
            if np.any(tau_syn <= 0) or np.any(tau_mem <= 0):
                raise ModelFormatError(f"{where}: tau_syn and tau_mem must be > 0 s")
            scale = r * w_in * self.area / tau_syn
            bias = r * w_in * bias_in / tau_mem
            if np.any(bias_in != 0):
                warnings.warn(
                    f"{where}: an Affine/Conv bias feeds the synaptic current I in NIR; spikebridge feeds its "
                    "steady state into v instead (exact after a few tau_syn, not during the first ones)",
                    ConversionWarning,
                    stacklevel=3,
                )
            keys["tau_mem"], keys["tau_syn"] = tau_mem, tau_syn
        spiking = kind in _SPIKING
        offset = vec("v_reset") if spiking else np.zeros(n)
        if spiking:
            keys["v_reset"] = offset
        leak = vec("v_leak") - offset if kind in ("LIF", "LI", "CubaLIF", "CubaLI") else None
        threshold = vec("v_threshold") - offset if spiking else None
        if threshold is not None and np.any(threshold <= 0):
            raise ModelFormatError(f"{where}: v_threshold must exceed v_reset for every neuron")
        if keys:
            uniq, labels = np.unique(np.stack(list(keys.values()), axis=1), axis=0, return_inverse=True)
            labels = labels.ravel()
        else:
            uniq, labels = np.zeros((1, 0)), np.zeros(n, dtype=np.int64)
        if len(uniq) > _MAX_GROUPS:
            raise UnsupportedLayerError(
                node_name, f"{kind} with {len(uniq)} distinct ({', '.join(keys)}) combinations",
                [f"at most {_MAX_GROUPS} groups of neurons sharing {', '.join(keys)}"], source="NIR",
                hint="each group becomes one population; quantise the time constants or split the node",
            )
        out: list[tuple[Population, np.ndarray]] = []
        for g in range(len(uniq)):
            idx = np.nonzero(labels == g)[0]
            single = len(uniq) == 1
            first = idx[0]
            tau_kw: dict[str, float] = {k: float(keys[k][first]) for k in ("tau_mem", "tau_syn") if k in keys}
            b = bias[idx]
            v_rest = 0.0
            if leak is not None:
                lk = leak[idx]
                if np.allclose(lk, lk[0]):
                    v_rest = float(lk[0])
                else:  # per-neuron leak potential: (v_leak - v)/tau = -v/tau + v_leak/tau
                    b = b + lk / tau_kw["tau_mem"]
            params: dict[str, Any] = {"nir_type": kind}
            common: dict[str, Any] = dict(
                name=pop_name if single else f"{pop_name}_g{g}", n=int(idx.size), shape=shape if single else None,
                model=_MODEL[kind], role=role, layer=node_name, bias=_squeeze(b), v_rest=v_rest, r=1.0, **tau_kw,
            )
            if not single:
                params["nir_indices"] = idx.tolist()
            if spiking:
                params["v_offset"] = float(offset[first])
                spk_threshold = cast(np.ndarray, threshold)  # set whenever spiking
                params.update(extra.get("params", {}))
                v0 = extra.get("v_init")
                pop = Population(**common, threshold=_squeeze(spk_threshold[idx]), reset=extra.get("reset", "zero"),
                                 v_init=-float(offset[first]) if v0 is None else _squeeze(v0[idx] - offset[first]),
                                 params=params)
            else:
                pop = Population(**common, threshold=1.0, reset="none", v_init=0.0, params=params)
            out.append((pop, idx))
        return out, scale


def _meta_value(meta: Mapping[str, Any], key: str) -> Any:
    value = meta.get(key)
    if isinstance(value, np.ndarray) and value.ndim == 0:
        value = value.item()
    if isinstance(value, (bytes, np.bytes_)):
        value = bytes(value).decode("utf-8", "replace")
    return value


def _finite_float(value: Any, what: str, where: str) -> float:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)) or not np.isfinite(value):
        raise ModelFormatError(f"{where}: metadata {what} must be a finite number, got {value!r}"[:300])
    return float(value)


def _same_step(node: Any, where: str) -> bool:
    """True when export_nir marked this Linear/Affine as a same-step projection (``spikebridge_delay_steps`` 0)."""
    meta = getattr(node, "metadata", None) or {}
    if "spikebridge_delay_steps" not in meta:
        return False
    steps = _meta_value(meta, "spikebridge_delay_steps")
    if isinstance(steps, (bool, np.bool_)) or not isinstance(steps, (int, np.integer)) or steps < 0:
        raise ModelFormatError(f"{where}: metadata spikebridge_delay_steps must be an integer >= 0, got {steps!r}"[:300])
    return int(steps) == 0


def _exported_neuron_meta(node: Any, n: int, where: str) -> dict[str, Any]:
    """What export_nir kept of a spiking population that NIR cannot express: reset, v_init, window floor.

    Returns a dict with optional keys ``reset`` (str), ``v_init`` (array of n floats, membrane units
    before the reset-potential shift) and ``params`` (``window`` seconds and ``window_floor``).
    """
    meta = getattr(node, "metadata", None) or {}
    out: dict[str, Any] = {}
    if "spikebridge_reset" in meta:
        reset = _meta_value(meta, "spikebridge_reset")
        if reset not in ("subtract", "none"):
            raise ModelFormatError(f"{where}: metadata spikebridge_reset must be 'subtract' or 'none', got {reset!r}"[:300])
        out["reset"] = str(reset)
    if "spikebridge_v_init" in meta:
        try:
            v0 = np.asarray(meta["spikebridge_v_init"], dtype=np.float64)
        except (TypeError, ValueError):
            raise ModelFormatError(f"{where}: metadata spikebridge_v_init is not numeric") from None
        if v0.size not in (1, n) or not np.all(np.isfinite(v0)):
            raise ModelFormatError(f"{where}: metadata spikebridge_v_init needs 1 or {n} finite values, got {v0.size}")
        out["v_init"] = np.broadcast_to(v0.ravel(), (n,)).copy()
    has_w, has_f, has_r = ("spikebridge_window" in meta, "spikebridge_window_floor" in meta,
                           "spikebridge_window_wrap" in meta)
    if has_w != (has_f or has_r):
        raise ModelFormatError(f"{where}: metadata spikebridge_window and spikebridge_window_floor (or "
                               "spikebridge_window_wrap) come together")
    if has_w:
        window = _finite_float(_meta_value(meta, "spikebridge_window"), "spikebridge_window", where)
        if window <= 0:
            raise ModelFormatError(f"{where}: metadata spikebridge_window must be > 0 s, got {window}")
        params: dict[str, Any] = {"window": window}
        if has_f:
            params["window_floor"] = _finite_float(_meta_value(meta, "spikebridge_window_floor"), "spikebridge_window_floor", where)
        if has_r:
            wrap = _meta_value(meta, "spikebridge_window_wrap")
            if not isinstance(wrap, (bool, np.bool_)):
                raise ModelFormatError(f"{where}: metadata spikebridge_window_wrap must be true or false, got {wrap!r}"[:300])
            if wrap:
                params["window_wrap"] = True
        out["params"] = params
    return out


def _latency(net: SpikingNetwork) -> int:
    """Steps from the input to the output along the longest acyclic path (0 if unreachable)."""
    import networkx as nx

    if net.input is None or net.output is None or net.input == net.output:
        return 0
    g = nx.DiGraph()
    for p in net.projections.values():
        if p.pre == p.post:
            continue
        steps = int(round(float(np.min(p.delay)) / net.dt)) if np.size(p.delay) else 1
        w = max(steps, 1)
        if not g.has_edge(p.pre, p.post) or g[p.pre][p.post]["weight"] < w:
            g.add_edge(p.pre, p.post, weight=w)
    if net.input not in g or net.output not in g or not nx.has_path(g, net.input, net.output):
        return 0
    if nx.is_directed_acyclic_graph(g):
        best = {net.input: 0}
        for node in nx.topological_sort(g):
            if node not in best:
                continue
            for nxt in g.successors(node):
                best[nxt] = max(best.get(nxt, 0), best[node] + g[node][nxt]["weight"])
        return int(best.get(net.output, 0))
    return int(nx.shortest_path_length(g, net.input, net.output, weight="weight"))


def load_nir(source: "str | os.PathLike[str] | nir.NIRGraph", *, dt: float, convention: str = "step",
             name: str | None = None) -> SpikingNetwork:
    """Read a NIR graph into a :class:`~spikebridge.snn.network.SpikingNetwork`.

    Parameters
    ----------
    source : str, path-like or nir.NIRGraph
        A ``.nir`` (HDF5) file written by ``nir.write``, or a graph object.
    dt : float
        Time step in seconds the network will be simulated with (NIR itself is
        continuous-time).
    convention : {"step", "dirac"}
        Area of one spike in the NIR signal: ``"step"`` (a pulse of height 1
        for one step, area ``dt``; what snnTorch, Norse and Rockpool write) or
        ``"dirac"`` (unit area).  See the module docstring for each mapping.
    name : str, optional
        Name of the network (default ``"nir"``).

    Returns
    -------
    SpikingNetwork
        Input population model ``"input"`` with ``encoding={"kind": "spikes"}``
        (simulate with a binary raster of shape ``(n_samples, n_steps, n_input)``),
        one population per neuron node, one projection per pair of connected
        neuron nodes (chains of linear nodes composed; delays per synapse).

    Raises
    ------
    UnsupportedLayerError
        A node type spikebridge cannot express (e.g. ``Threshold``), an output
        node with per-neuron time constants (hidden ones are split into one
        population per distinct value), or a non-spiking node feeding other nodes.
    ModelFormatError
        The file is not NIR, shapes do not agree, or linear nodes form a loop.
    MissingDependencyError
        ``nir`` is not installed.

    Examples
    --------
    >>> import nir, numpy as np
    >>> g = nir.NIRGraph.from_list(nir.Linear(weight=np.eye(2)),
    ...     nir.LIF(tau=np.full(2, 0.01), r=np.full(2, 10.0), v_leak=np.zeros(2),
    ...             v_threshold=np.ones(2)))
    >>> net = load_nir(g, dt=1e-3)
    >>> [p.model for p in net]
    ['input', 'lif']
    >>> float(net.projections["linear"].weight[0])  # R * w * dt / tau
    1.0
    """
    if not (isinstance(dt, (int, float)) and not isinstance(dt, bool) and dt > 0 and np.isfinite(dt)):
        raise ValidationError(f"load_nir: dt must be a positive number of seconds, got {dt!r}", attr="dt")
    spike_area(convention, dt)
    graph = _read_graph(source)
    imp = _Importer(graph, float(dt), convention)
    imp.run()
    net = imp.build(name)
    enc = _exported_encoding(graph, float(dt), convention)
    if enc is not None:
        # a spikebridge export of a network driven by data: the same inputs drive the reimport
        net = net.copy_with(encoding=enc, metadata={**net.metadata, "nir_encoding": "restored from spikebridge_encoding"})
        readout = _exported_readout(graph, net)
        if readout is not None:
            net = net.copy_with(readout=readout)
    return net


_READOUT_TYPES = {"mode": str, "task": str, "scale": float, "latency_steps": int, "n_out": int, "threshold": float,
                  "window_steps": int, "windows": int, "per_element": bool}


def _exported_readout(graph: Any, net: SpikingNetwork) -> dict[str, Any] | None:
    """The read-out ``export_nir`` recorded (``spikebridge_readout``), validated against ``net``; None without one.

    Only known keys of plain types are taken (others are dropped); ``mode`` and ``task`` keep the
    values spikebridge knows, ``n_out`` must match the output population.
    """
    import json

    meta = getattr(graph, "metadata", None) or {}
    raw = _meta_value(meta, "spikebridge_readout")
    if raw is None:
        return None
    where = "NIR graph metadata spikebridge_readout"
    try:
        got = json.loads(raw) if isinstance(raw, str) else None
    except ValueError:
        got = None
    if not isinstance(got, dict):
        raise ModelFormatError(f"{where} is not a JSON object")
    out = dict(net.readout)
    for key, typ in _READOUT_TYPES.items():
        if key not in got:
            continue
        value = got[key]
        ok = (isinstance(value, bool) if typ is bool else
              isinstance(value, (int, float)) and not isinstance(value, bool) and np.isfinite(value) if typ is float else
              isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 2**31 if typ is int else
              isinstance(value, str) and len(value) <= 64)
        if not ok:
            raise ModelFormatError(f"{where}: {key} must be a {typ.__name__}, got {value!r}"[:300])
        out[key] = typ(value)
    if out.get("mode") not in ("count", "potential") or out.get("task") not in ("classification", "regression"):
        raise ModelFormatError(f"{where}: unknown mode {out.get('mode')!r} or task {out.get('task')!r}"[:300])
    n_out = net.populations[net.output].n if net.output else 0
    if out.get("n_out") != n_out:
        raise ModelFormatError(f"{where}: n_out {out.get('n_out')} but the output population has {n_out} neurons")
    return out


def _exported_encoding(graph: Any, dt: float, convention: str) -> dict[str, Any] | None:
    """The input encoding ``export_nir`` recorded (``spikebridge_encoding``), when it applies to this import.

    It applies when the file was written by spikebridge for the same ``dt`` in the ``"step"``
    convention and the encoding was not a spike raster; else None (NIR's own spike-raster input).
    """
    import json

    meta = getattr(graph, "metadata", None) or {}
    raw = meta.get("spikebridge_encoding")
    if raw is None or convention != "step":
        return None
    try:
        enc = json.loads(raw if isinstance(raw, str) else bytes(raw).decode())
        exported_dt = float(meta.get("spikebridge_dt", dt))
    except (ValueError, TypeError):
        return None
    if not isinstance(enc, dict) or enc.get("kind") in (None, "spikes") or not np.isclose(exported_dt, dt, rtol=1e-9):
        return None
    return enc


def _detect_nir(source: Any) -> bool:
    """A ``.nir`` file, an HDF5 file laid out by ``nir.write``, or a ``nir.NIRGraph`` (no nir import)."""
    from pathlib import Path

    if isinstance(source, Path):
        if source.suffix.lower() == ".nir":
            return True
        import h5py

        try:
            with h5py.File(source, "r") as f:
                return "node" in f and "version" in f and "type" in f["node"]
        except OSError:
            return False
    return any(f"{c.__module__}.{c.__name__}".startswith("nir.") and c.__name__ == "NIRGraph" for c in type(source).__mro__)


def _load_registered(source: Any, **kwargs: Any) -> SpikingNetwork:
    """``load_model(..., format="nir")``: :func:`load_nir`, with a clear message when ``dt`` is missing."""
    if "dt" not in kwargs:
        raise ValidationError(
            f"NIR graphs are continuous-time: pass the simulation time step, e.g. load_model({str(source)!r}, dt=1e-3) "
            "(seconds); the result is a SpikingNetwork",
            attr="dt",
        )
    return load_nir(source, **kwargs)


def _register() -> None:
    from .registry import register_importer

    register_importer(
        "nir",
        suffixes=(".nir",),
        extra="nir",
        detect=_detect_nir,
        load=_load_registered,  # type: ignore[arg-type]  # a spiking format: returns a SpikingNetwork, needs dt=
        description="NIR graph (.nir, nir.NIRGraph) -> SpikingNetwork (spiking format; pass dt=... seconds)",
        requires=("nir",),
        signature="HDF5 written by nir.write (datasets /version and /node/type)",
        container="hdf5",
        replace=True,
    )


_register()
