"""Export a :class:`SpikingNetwork` as a NIR graph (Neuromorphic Intermediate Representation).

Mapping (the inverse of :mod:`spikebridge.importers.from_nir` with the ``"step"``
spike convention, so export then import gives the same network)
-----------------------------------------------------------------------------
================  =========================================================
spikebridge       NIR
================  =========================================================
``input``         ``Input(shape)``
``if``            ``IF(r = 1/dt, v_threshold, v_reset)``
``lif``           ``LIF(tau = tau_mem, r = tau_mem/dt, v_leak = v_rest, ...)``
``cuba_lif``      ``CubaLIF(tau_syn, tau_mem, r, v_leak, ..., w_in = tau_syn/dt)``
``li``/``cuba_li``  ``LI`` / ``CubaLI`` with the same scalings
``integrator``    ``I(r = 1/dt)``
projection        ``Linear(W)`` (``Affine`` when it carries the post population's
                  bias), followed by ``Delay((d - 1) dt)`` for a delay of ``d``
                  steps (no Delay node when ``d = 1``); synapses with different
                  delays get one Linear/Delay pair per delay
output            ``Output``
================  =========================================================

With these scalings a spike through weight ``w`` moves the NIR membrane by
exactly ``w`` when a spike is read as a unit pulse held for one step
(snnTorch's reading), and a bias ``b`` (membrane units per second) becomes the
Affine bias ``b * dt``.

What NIR cannot express is reported with one
:class:`~spikebridge.errors.ExportWarning` per feature and kept in the node's
``metadata`` (keys ``spikebridge_*``): reset by subtraction (exported as reset
to zero), no reset, refractory periods, excitatory/inhibitory tags, non-zero
initial potentials, Poisson drive, and the transient of a cuba population's
bias (NIR feeds a bias into ``I``, we into ``v``); the window floor of a sequence
network; same-step delivery (``spikebridge_delay_steps`` 0 on the Linear node).
The graph's metadata keeps the input encoding and the read-out (JSON).
:func:`spikebridge.importers.from_nir.load_nir` reads back reset by subtraction, no
reset, ``v_init``, the window floor, same-step delivery, the encoding and the
read-out, so a converted network (a ReLU RNN included) round-trips with identical spikes.
"""

from __future__ import annotations

import json
import os
import warnings
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from .._optional import import_optional
from ..snn.network import Population, SpikingNetwork
from ..errors import ExportWarning, UnsupportedLayerError, ValidationError

if TYPE_CHECKING:  # pragma: no cover
    import nir

__all__ = ["export_nir"]


def _full(value: Any, pop: Population) -> np.ndarray:
    return np.broadcast_to(np.asarray(value, dtype=np.float64), (pop.n,)).copy()


def _neuron_node(nir: Any, pop: Population, dt: float) -> Any:
    # flat (n,) parameters, so that the (n_out,) output of the Linear nodes type-checks in nir.read;
    # the logical shape is kept in the metadata
    ones = np.ones(pop.n)
    meta: dict[str, Any] = {"spikebridge_population": pop.name, "spikebridge_model": pop.model,
                            "spikebridge_shape": np.array(pop.shape or (pop.n,), dtype=np.int64)}
    thr = _full(pop.threshold, pop)
    v_reset = ones * (pop.v_reset if pop.reset == "value" else 0.0)
    if pop.model == "if":
        return nir.IF(r=ones / dt, v_threshold=thr, v_reset=v_reset, metadata=meta)
    # Population validates tau_mem (and tau_syn for cuba) > 0 for the leaky models
    tau_mem, tau_syn = cast(float, pop.tau_mem), cast(float, pop.tau_syn)
    if pop.model == "lif":
        tau = ones * tau_mem
        return nir.LIF(tau=tau, r=tau / dt, v_leak=ones * pop.v_rest, v_threshold=thr, v_reset=v_reset, metadata=meta)
    if pop.model == "li":
        tau = ones * tau_mem
        return nir.LI(tau=tau, r=tau / dt, v_leak=ones * pop.v_rest, metadata=meta)
    if pop.model in ("cuba_lif", "cuba_li"):
        tau_syn_n, tau_mem_n = ones * tau_syn, ones * tau_mem
        common = dict(tau_syn=tau_syn_n, tau_mem=tau_mem_n, r=ones * pop.r, v_leak=ones * pop.v_rest, w_in=tau_syn_n / dt)
        if pop.model == "cuba_li":
            return nir.CubaLI(**common, metadata=meta)
        return nir.CubaLIF(**common, v_threshold=thr, v_reset=v_reset, metadata=meta)
    if pop.model == "integrator":
        return nir.I(r=ones / dt, metadata=meta)
    raise UnsupportedLayerError(pop.name, pop.model, ("if", "lif", "cuba_lif", "li", "cuba_li", "integrator"),
                                source="NIR export")  # pragma: no cover - every model is handled


def _unsupported_features(pop: Population) -> dict[str, Any]:
    """Features of ``pop`` that NIR cannot express, as metadata entries."""
    found: dict[str, Any] = {}
    if pop.is_spiking and pop.model != "input":
        if pop.reset == "subtract":
            found["reset by subtraction"] = {"spikebridge_reset": "subtract"}
        elif pop.reset == "none":
            found["no reset after a spike"] = {"spikebridge_reset": "none"}
    if pop.refractory > 0:
        found["refractory period"] = {"spikebridge_refractory": float(pop.refractory)}
    if pop.sign != "mixed":
        found["excitatory/inhibitory tags"] = {"spikebridge_sign": pop.sign}
    if pop.model != "input" and np.any(np.asarray(pop.v_init) != 0):
        v0 = np.asarray(pop.v_init, dtype=np.float64)
        found["initial membrane potential"] = {"spikebridge_v_init": v0 if v0.ndim else float(v0)}
    if pop.params.get("poisson_n"):
        found["Poisson drive"] = {
            f"spikebridge_{k}": float(pop.params[k]) for k in ("poisson_n", "poisson_rate", "poisson_weight") if k in pop.params
        }
    if "window" in pop.params:  # a sequence network's hidden population (conversion/sequence.py)
        window: dict[str, Any] = {"spikebridge_window": float(pop.params["window"])}
        if pop.params.get("window_wrap"):
            window["spikebridge_window_wrap"] = True
        if pop.params.get("window_floor") is not None or not pop.params.get("window_wrap"):
            window["spikebridge_window_floor"] = float(pop.params.get("window_floor") or 0.0)
        found["window floor of a sequence network (v = max(v, floor) at every window start)"] = window
    if pop.model in ("cuba_lif", "cuba_li") and np.any(np.asarray(pop.bias) != 0):
        found["bias of a cuba population (NIR feeds it into I, not v)"] = {"spikebridge_bias_on_v": True}
    return found


def _readout_meta(snn: SpikingNetwork) -> dict[str, str]:
    """The read-out (decoding of the output, e.g. a sequence network's windows) as JSON, when it is plain data."""
    try:
        return {"spikebridge_readout": json.dumps(dict(snn.readout), allow_nan=False)}
    except (TypeError, ValueError):  # a read-out holding arrays is not restored by load_nir
        return {}


def export_nir(snn: SpikingNetwork, path: "str | os.PathLike[str] | None" = None, *, dt: float | None = None) -> "nir.NIRGraph":
    """Describe ``snn`` as a NIR graph, and optionally write it with ``nir.write``.

    Parameters
    ----------
    snn : SpikingNetwork
    path : str or path-like, optional
        Where to write the ``.nir`` (HDF5) file.
    dt : float, optional
        Time step in seconds the exported scalings refer to (default ``snn.dt``);
        import with the same ``dt`` to get the same network back.

    Returns
    -------
    nir.NIRGraph
        Node names are the population and projection names (``<proj>`` for the
        Linear/Affine node, ``<proj>_delay`` for its Delay node, ``<proj>_d<k>``
        for synapses of a projection with a different delay of ``k`` steps).

    Warns
    -----
    ExportWarning
        Once per feature NIR cannot express (see the module docstring), naming
        the populations that use it.

    Raises
    ------
    UnsupportedLayerError
        A projection onto ``v`` of a cuba population (NIR's CubaLIF takes all
        input through its synaptic current).

    Examples
    --------
    >>> import numpy as np
    >>> from spikebridge.snn.network import Population, Projection, SpikingNetwork
    >>> net = SpikingNetwork([Population(name="x", n=2, model="input", role="input"),
    ...                       Population(name="h", n=2, model="if", reset="zero", role="output")],
    ...                      [Projection.from_dense(np.eye(2), name="fc", pre="x", post="h", delay=1e-3)],
    ...                      input="x", output="h", dt=1e-3)
    >>> g = export_nir(net)
    >>> sorted(type(n).__name__ for n in g.nodes.values())
    ['IF', 'Input', 'Linear', 'Output']
    """
    nir = import_optional("nir", "NIR export")
    if not isinstance(snn, SpikingNetwork):
        raise ValidationError(f"export_nir: expected a SpikingNetwork, got {type(snn).__name__}", attr="snn")
    dt = float(snn.dt if dt is None else dt)
    if not dt > 0:
        raise ValidationError(f"export_nir: dt must be > 0 seconds, got {dt}", attr="dt")
    nodes: dict[str, Any] = {}
    edges: list[tuple[str, str]] = []
    features: dict[str, list[str]] = {}

    biased = {p.name for p in snn if p.model != "input" and np.any(np.asarray(p.bias) != 0)}
    bias_done: set[str] = set()
    source_of: dict[str, str] = {}  # population -> node that carries its spikes as a flat (n,) signal
    for pop in snn:
        source_of[pop.name] = pop.name
        if pop.model == "input":
            shape = tuple(pop.shape or (pop.n,))
            nodes[pop.name] = nir.Input(input_type=np.array(shape))
            if len(shape) > 1:  # Linear nodes take flat inputs
                flat = f"{pop.name}_flatten"
                nodes[flat] = nir.Flatten(input_type={"input": np.array(shape)}, start_dim=0, end_dim=-1)
                edges.append((pop.name, flat))
                source_of[pop.name] = flat
            continue
        node = _neuron_node(nir, pop, dt)
        for feature, meta in _unsupported_features(pop).items():
            features.setdefault(feature, []).append(pop.name)
            node.metadata.update(meta)
        nodes[pop.name] = node

    def bias_for(post: Population) -> np.ndarray | None:
        if post.name not in biased or post.name in bias_done:
            return None
        bias_done.add(post.name)
        b = np.broadcast_to(np.asarray(post.bias, dtype=np.float64), (post.n,))
        if post.model in ("lif", "li", "if", "integrator"):
            return b * dt  # R b_nir / tau = b with R = tau/dt (lif) or R b_nir = b with R = 1/dt (if)
        # cuba: steady state R w_in b_nir / tau_mem = b
        return b * cast(float, post.tau_mem) / (post.r * cast(float, post.tau_syn) / dt)  # validated for cuba

    for proj in snn.projections.values():
        pre, post = snn.populations[proj.pre], snn.populations[proj.post]
        if post.model in ("cuba_lif", "cuba_li") and proj.target == "v":
            raise UnsupportedLayerError(
                proj.name, f"projection onto v of {post.model} population '{post.name}'",
                ["target 'I' for cuba populations", "target 'v' for if/lif/li/integrator"], source="NIR export",
                hint="NIR's CubaLIF/CubaLI receive every input through the synaptic current",
            )
        # the delay in steps as spikebridge simulates it (0: same-step delivery, exported as one step
        # and kept as spikebridge_delay_steps, which load_nir reads back)
        raw = np.rint(np.broadcast_to(np.asarray(proj.delay, dtype=np.float64), proj.weight.shape) / dt).astype(np.int64)
        if snn.min_delay_steps:
            raw = np.maximum(raw, 1)
        if snn.min_delay_steps == 0 and np.any(raw == 0):
            features.setdefault("same-step delivery (min_delay_steps=0; exported with one-step delays)", []).append(proj.post)
        groups = np.unique(raw) if raw.size else np.array([1])
        for i, r in enumerate(groups):
            sel = raw == r
            d = max(int(r), 1)
            w = np.zeros((post.n, pre.n))
            np.add.at(w, (proj.post_index[sel], proj.pre_index[sel]), proj.weight[sel])
            lin_name = proj.name if i == 0 else f"{proj.name}_d{int(r)}"
            meta = {"spikebridge_projection": proj.name, "spikebridge_kind": proj.kind, "spikebridge_target": proj.target,
                    "spikebridge_delay_steps": int(r)}
            b = bias_for(post)
            lin = nir.Affine(weight=w, bias=b, metadata=meta) if b is not None else nir.Linear(weight=w, metadata=meta)
            nodes[lin_name] = lin
            edges.append((source_of[proj.pre], lin_name))
            if d > 1:
                delay_name = f"{lin_name}_delay"
                nodes[delay_name] = nir.Delay(delay=np.full(post.n, (int(d) - 1) * dt), metadata=dict(meta))
                edges.append((lin_name, delay_name))
                edges.append((delay_name, proj.post))
            else:
                edges.append((lin_name, proj.post))
    for name in sorted(biased - bias_done):
        pop = snn.populations[name]
        if snn.input is not None:  # a zero-weight Affine from the input carries the bias
            n_in = snn.populations[snn.input].n
            b = bias_for(pop)
            node_name = f"{name}_bias"
            nodes[node_name] = nir.Affine(weight=np.zeros((pop.n, n_in)), bias=b, metadata={"spikebridge_bias_of": name})
            edges += [(source_of[snn.input], node_name), (node_name, name)]
        else:
            features.setdefault("bias without any incoming connection", []).append(name)
            nodes[name].metadata["spikebridge_bias"] = np.broadcast_to(np.asarray(pop.bias, dtype=np.float64), (pop.n,)).copy()
    if snn.output is not None:
        out = snn.populations[snn.output]
        out_name = "output" if "output" not in nodes else f"{snn.output}_output"
        nodes[out_name] = nir.Output(output_type=np.array([out.n]) if out.model != "input" else nodes[snn.output].input_type["input"])
        edges.append((snn.output, out_name))
    for feature, pops in features.items():
        warnings.warn(
            f"NIR cannot express {feature} (populations {', '.join(pops)}); "
            "exported without it and kept in the node metadata (keys 'spikebridge_*')",
            ExportWarning,
            stacklevel=2,
        )
    graph = nir.NIRGraph(
        nodes=nodes,
        edges=edges,
        metadata={
            "spikebridge_dt": dt,
            "spikebridge_name": snn.name,
            "spikebridge_convention": "step",
            "spikebridge_encoding": json.dumps(snn.encoding),
            **_readout_meta(snn),
        },
        type_check=False,
    )
    if path is not None:
        nir.write(os.fspath(path), graph)
    return graph
