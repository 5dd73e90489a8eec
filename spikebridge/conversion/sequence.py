"""Conversion of recurrent (sequence) models: a trained ReLU RNN becomes a recurrent spiking network.

Semantics (``docs/conversion.md#recurrent-networks``)
-----------------------------------------------------
The ANN steps through a sequence ``x_1 .. x_T``,

.. math:: h_t = \\max(W_{ih} x_t + W_{hh} h_{t-1} + b, 0),\\qquad h_0 = 0.

The spiking network runs ``K = ConversionConfig.steps_per_element`` steps per element:

* **windows** — element ``t`` is presented during window ``t`` (steps ``tK .. tK + K - 1``) as a
  constant input current ``W_ih x_t / λ_in`` (the current-encoded input, element by element);
* **the delay is the memory** — the recurrent projection ``h -> h`` carries ``W_hh`` with a
  synaptic delay of exactly one window, ``K dt``: a spike emitted at step ``j`` of window
  ``t - 1`` arrives at step ``j + K``, the same place in window ``t``.  The spike count of
  window ``t - 1`` (``≈ K h_{t-1}/λ``) thus drives window ``t`` and nothing else does.
  Brian2 carries it with its own synaptic delays;
* **reset by subtraction** keeps each window's sub-threshold residue, so the quantisation
  error of one window is paid back in the next (the spike count tracks the summed drive);
* **the window floor** — a ReLU forgets a negative pre-activation at the end of its element;
  a membrane would carry it into the next window as a debt.  At the start of every window the
  membrane of a hidden population is floored, ``v = max(v, floor)`` (``Population.params``
  ``window`` and ``window_floor``; every engine applies it before the state update of the
  window's first step).  The floor is 0: a positive residue (the rounding offset ``v_init θ``
  included) is kept, only the debt is dropped.  Flooring at ``v_init θ`` instead was measured
  worse (row-sequential MNIST, K = 32, 500 test images: 92.2 % against 97.6 % with 0; it
  lifts every small positive residue to the offset, a bias of up to half a spike per window);
* **scales** — λ of each population is the ``percentile`` of its positive activations over
  *all elements* of the calibration sequences, so one spike per step stands for λ;
  ``W_ih ← θ W_ih λ_src/λ``, ``W_hh ← θ W_hh`` (same population on both ends), ``b ← θ b/λ``;
* **several neurons per unit** (``ConversionConfig.neurons_per_unit`` M > 1, off by default) —
  each hidden unit becomes M IF neurons (neuron ``m n + j`` is copy ``m`` of unit ``j``) that
  receive the unit's input and whose spikes each carry ``1/M`` of it; their initial potentials
  are staggered, ``(m + v_init) θ / M``, so the M counts sum to a rounding of the window's drive
  with M times the resolution (``λ/(MK)`` instead of ``λ/K``).  A floor at 0 would collapse
  the stagger whenever a drive is negative; these populations *wrap* instead
  (``params["window_wrap"]``): at every window start a negative membrane drops its debt in whole
  spikes, ``v <- v - θ ⌊v/θ⌋``, and keeps the fraction, which all copies share, so they stay
  staggered.  (With M = 1 the wrap is worse than the floor: it turns a small debt into a nearly
  full membrane.)  Cost: M times the neurons and spikes, M² times the recurrent synapses.
  Row-sequential Fashion-MNIST at K = 32 needs M = 4 to come within 1 point of its ANN
  (docs/results.md);
* **feed-forward links** between populations (a stacked RNN, a Dense read-out) deliver within
  the step (same-step delivery, ``delay=0``), so every population's windows line up;
* **read-out** — the output population (the last ``Dense``) is a non-spiking integrator; its
  value for element ``t`` is the change of its potential over window ``t``, divided by ``K``
  and times the output scale (:meth:`spikebridge.store.record.SpikeRecord.window_values`).
  A model that reads the last hidden state (``return_sequences=False``) is decoded from the
  last window; one with a read-out at every element from every window.

Supported: ``Input(T, n)`` → one or more ``RNN`` → ``Dense`` / ``ReLU`` layers (applied to every
element or the last) → optional final ``Softmax`` (dropped); ``Identity`` layers are skipped.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import cast

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ..config import ConversionConfig
from ..errors import ConversionError, UnsupportedLayerError
from ..ir.evaluate import evaluate
from ..ir.graph import AnnGraph, safe_name
from ..ir.layers import RNN, Dense, Identity, Input, ReLU, Softmax
from ..snn.network import Population, Projection, SpikingNetwork
from .normalise import activation_scale

log = logging.getLogger(__name__)

__all__ = ["convert_sequence", "is_sequence_model"]

_SUPPORTED = ("Input", "RNN", "Dense", "ReLU", "Identity", "Softmax")


def is_sequence_model(graph: AnnGraph) -> bool:
    """True when ``graph`` has a recurrent layer (it is then converted by :func:`convert_sequence`)."""
    return any(isinstance(layer, RNN) for layer in graph)


@dataclass
class _Stage:
    name: str
    layer: str  # the ANN layer whose activation the population represents
    kind: str  # "rnn", "relu" (Dense + ReLU) or "output"
    source: str  # population feeding it ("input" for the first)
    w_in: NDArray[np.float64]
    bias: NDArray[np.float64]
    w_rec: NDArray[np.float64] | None = None


def _stages(graph: AnnGraph) -> tuple[list[_Stage], bool]:
    """Populations of a sequence model, and whether its output is read at every element."""
    if not graph.is_chain:
        raise ConversionError(f"model '{graph.name}': a recurrent model must be a chain of layers (no Add/Concat)")
    stages: list[_Stage] = []
    used = {"input"}
    source = "input"
    mat: NDArray[np.float64] | None = None
    bias: NDArray[np.float64] | None = None
    named: str | None = None
    per_element = True
    layers = list(graph.layers)

    def unique(base: str) -> str:
        name, k = safe_name(base), 1
        out = name
        while out in used:
            k += 1
            out = f"{name}_{k}"
        used.add(out)
        return out

    for idx, layer in enumerate(layers):
        if isinstance(layer, (Input, Identity)):
            continue
        if isinstance(layer, RNN):
            w_in = layer.weight_ih
            b = np.asarray(layer.bias, dtype=np.float64)
            if mat is not None:  # a linear map before the RNN composes with its input weights
                b = b + w_in @ bias  # type: ignore[operator]
                w_in = w_in @ mat
            stages.append(_Stage(unique(layer.name), layer.name, "rnn", source, np.array(w_in), b,
                                 np.array(layer.weight_hh)))
            source, mat, bias, named = stages[-1].name, None, None, None
            per_element = per_element and layer.return_sequences
        elif isinstance(layer, Dense):
            if not stages:
                raise UnsupportedLayerError(layer.name, "Dense before the first RNN", _SUPPORTED,
                                            hint="a sequence model starts with its recurrent layer")
            w = np.array(layer.weight)
            b = np.asarray(layer.bias, dtype=np.float64)
            mat, bias = (w, b) if mat is None else (w @ mat, w @ bias + b)  # type: ignore[operator]
            named = layer.name
        elif isinstance(layer, ReLU):
            if layer.max_value is not None:
                raise UnsupportedLayerError(layer.name, "clipped ReLU in a sequence model", _SUPPORTED)
            if mat is None:
                continue  # the RNN's output is already rectified
            stages.append(_Stage(unique(named or layer.name), layer.name, "relu", source, mat, cast(NDArray[np.float64], bias)))
            source, mat, bias, named = stages[-1].name, None, None, None
        elif isinstance(layer, Softmax) and idx == len(layers) - 1:
            continue
        else:
            raise UnsupportedLayerError(layer.name, layer.type_name, _SUPPORTED,
                                        hint="a sequence model is RNN layers followed by Dense/ReLU layers")
    if mat is not None:
        last = layers[-1].name if not isinstance(layers[-1], Softmax) else graph.predecessor(layers[-1].name)
        stages.append(_Stage(unique(named or "output"), str(last), "output", source, mat, cast(NDArray[np.float64], bias)))
    else:
        stages[-1].kind = "output"
    return stages, per_element


def _calibration_activations(graph: AnnGraph, calibration: ArrayLike) -> dict[str, NDArray[np.float64]]:
    """Every layer's activation at every element: the graph with all RNNs returning sequences."""
    seq = AnnGraph([layer.replace(return_sequences=True) if isinstance(layer, RNN) else layer for layer in graph],
                   graph.edges, name=graph.name)
    return cast("dict[str, NDArray[np.float64]]", evaluate(seq, calibration, return_all=True))


def _unit_scales(acts: NDArray[np.float64], percentile: float, layer_scale: float) -> NDArray[np.float64]:
    """Per-unit λ over samples and elements: a unit never active keeps the layer's scale, and no unit
    gets less than 1 % of it (a nearly silent unit would otherwise need huge weights)."""
    a = acts.reshape(-1, acts.shape[-1])
    out = np.full(a.shape[1], layer_scale)
    for j in range(a.shape[1]):
        pos = a[:, j][a[:, j] > 0]
        if pos.size:
            out[j] = max(float(np.percentile(pos, percentile)), 0.01 * layer_scale)
    return out


def convert_sequence(graph: AnnGraph, cfg: ConversionConfig, calibration: ArrayLike | None, task: str) -> SpikingNetwork:
    """Convert a ReLU RNN model (see the module docstring).

    Parameters
    ----------
    graph : AnnGraph
        A model with :class:`~spikebridge.ir.layers.RNN` layers and input shape ``(T, n_in)``.
    cfg : ConversionConfig
        ``steps_per_element`` (K), ``threshold``, ``v_init``, ``percentile``, ``dt``, ``dale``.
    calibration : array_like, shape (n_samples, T, n_in)
        Sequences for the activation scales (required with ``normalisation="data"``).
    task : {"classification", "regression"}

    Returns
    -------
    SpikingNetwork
        ``encoding`` has ``sequence_length`` (T) and ``window`` (``K dt`` seconds);
        ``readout`` has ``window_steps`` (K), ``windows`` (T) and ``per_element``.

    Raises
    ------
    ConversionError
        Options that have no meaning for sequences (pipelined delays, spike-encoded inputs,
        calibration passes, lateral inhibition), or missing calibration data.
    UnsupportedLayerError
        Layers other than RNN / Dense / ReLU / Identity / final Softmax.
    """
    where = f"model '{graph.name}'"
    if cfg.delay != 0 or cfg.delay_jitter > 0:
        raise ConversionError(f"{where}: a recurrent model needs same-step delivery between layers (delay=0, no jitter); "
                              "its recurrent delay is one window, steps_per_element time steps")
    if cfg.input_encoding != "current":
        raise ConversionError(f"{where}: a sequence is presented as a current, element by element; use input_encoding='current'")
    if cfg.calibrate != "none" or cfg.lateral_inhibition > 0:
        raise ConversionError(f"{where}: calibrate and lateral_inhibition are not available for recurrent models")
    if cfg.neuron != "if":
        raise ConversionError(f"{where}: recurrent models convert to IF neurons (neuron='if')")
    shape = graph.input_shape
    if len(shape) != 2:
        raise ConversionError(f"{where}: a recurrent model takes sequences of shape (T, features), not {shape}")
    seq_len, n_in = int(shape[0]), int(shape[1])
    stages, per_element = _stages(graph)
    K, dt, theta = int(cfg.steps_per_element), float(cfg.dt), float(cfg.threshold)
    window = K * dt
    in_name = graph.input.name

    scales: dict[str, float] = {}
    # per hidden unit (scales="channel"): a unit's own percentile, so a unit with a small range
    # keeps its resolution; the read-out integrator does not quantise and keeps one scale
    unit_scales: dict[str, NDArray[np.float64]] = {}
    if cfg.normalisation == "data":
        if calibration is None:
            raise ConversionError(f"{where}: data-based normalisation needs calibration sequences; pass "
                                  "calibration=x_train[:500] (or --calibration on the CLI), or use normalisation='none'")
        acts = _calibration_activations(graph, calibration)
        scales[in_name] = activation_scale(acts[in_name], cfg.percentile, name=in_name, signed=True)
        for st in stages:
            signed = st.kind == "output" and task == "regression"
            scales[st.layer] = activation_scale(acts[st.layer], cfg.percentile, name=st.layer, signed=signed)
            if cfg.scales == "channel" and st.kind != "output":
                unit_scales[st.name] = _unit_scales(acts[st.layer], cfg.percentile, scales[st.layer])
    else:
        scales[in_name] = 1.0
        scales.update({st.layer: 1.0 for st in stages})

    floor = 0.0  # see the module docstring: only a negative membrane is reset at a window start
    m_per = int(cfg.neurons_per_unit)
    populations = [Population(name="input", n=n_in, model="input", shape=(n_in,), role="input", layer=in_name)]
    projections: list[Projection] = []
    lam_of: dict[str, float | NDArray[np.float64]] = {"input": scales[in_name]}
    copies: dict[str, int] = {"input": 1}  # neurons per ANN unit of each population

    def spread(w: NDArray[np.float64], post: str, pre: str) -> NDArray[np.float64]:
        # neuron m * n + j is copy m of unit j: every copy receives the unit's input, and each of the
        # pre-synaptic unit's copies carries 1/M of it (a copy's spike stands for λ/M)
        return np.tile(w, (copies[post], copies[pre])) / copies[pre]

    for st in stages:
        lam = unit_scales.get(st.name, scales[st.layer])
        lam_of[st.name] = lam
        lam_col = np.asarray(lam, dtype=np.float64).reshape(-1, 1) if np.ndim(lam) else lam  # per receiving unit
        is_out = st.kind == "output"
        m = copies[st.name] = 1 if is_out else m_per
        n_units = int(st.w_in.shape[0])
        bias_rate = np.tile(np.broadcast_to(theta * st.bias / lam / dt, (n_units,)), m)
        if is_out:
            v0: float | NDArray[np.float64] = 0.0
            params: dict[str, object] = {}
        elif m == 1:
            v0, params = float(cfg.v_init) * theta, {"window": window, "window_floor": floor}
        else:
            # staggered rounding offsets (m + v_init)/M θ: the M copies' counts sum to a rounding with M
            # times the resolution; a wrap (not a floor) keeps them staggered after a negative drive
            v0 = np.repeat((np.arange(m) + float(cfg.v_init)) / m * theta, n_units)
            params = {"window": window, "window_wrap": True}
        populations.append(Population(
            name=st.name, n=n_units * m, model="integrator" if is_out else "if", threshold=theta,
            reset=cfg.reset, v_init=v0, bias=bias_rate if np.any(bias_rate) else 0.0,
            role="output" if is_out else "hidden", layer=st.layer, params=params,
        ))
        src = lam_of[st.source]
        w_in = st.w_in * theta * (np.asarray(src).reshape(1, -1) if np.ndim(src) else src) / lam_col
        projections.append(Projection.from_dense(spread(w_in, st.name, st.source), name=f"{st.source}_{st.name}",
                                                 pre=st.source, post=st.name, delay=0.0, kind="dense", layer=st.layer))
        if st.w_rec is not None:
            # one window of delay: the spikes of window t-1 drive window t
            # (W_hh λ_src / λ with the same population on both ends: with one scale per layer it cancels)
            w_rec = st.w_rec * theta * (np.asarray(lam).reshape(1, -1) if np.ndim(lam) else lam) / lam_col
            projections.append(Projection.from_dense(spread(w_rec, st.name, st.name), name=f"{st.name}_recurrent",
                                                     pre=st.name, post=st.name, delay=window, kind="recurrent",
                                                     layer=st.layer))
    out_stage = stages[-1]
    readout = {
        "mode": "potential",
        "task": task,
        "scale": scales[out_stage.layer] / theta,
        "latency_steps": 0,
        "n_out": int(out_stage.w_in.shape[0]),
        "threshold": theta,
        "window_steps": K,
        "windows": seq_len,
        "per_element": bool(per_element),
    }
    encoding = {"kind": "current", "max_rate": float(cfg.max_rate), "scale": scales[in_name],
                "sequence_length": seq_len, "window": window}
    snn = SpikingNetwork(
        populations, projections, input="input", output=out_stage.name, dt=dt, readout=readout, encoding=encoding,
        conversion=cfg.to_dict(), scales=scales, ann=graph, name=safe_name(graph.name),
        metadata={"source_model": graph.name, "task": task, "classes": graph.metadata.get("classes"),
                  "unit_scales": {name: v.tolist() for name, v in unit_scales.items()},
                  "neurons_per_unit": m_per,
                  "recurrent": {st.name: {"layer": st.layer, "delay_steps": K} for st in stages if st.w_rec is not None}},
        min_delay_steps=0,
    )
    if cfg.dale != "none":
        from .dale import apply_dale

        snn = apply_dale(snn, cfg)
    return snn
