"""ANN → spiking network conversion (pure numpy, no Brian2).

How layers map
--------------
* Every run of linear layers between two activation boundaries (Dense,
  Conv2d, AvgPool2d after a linear layer, GlobalAvgPool2d, Flatten, Identity
  / Dropout) is composed into **one** sparse projection with one bias.
  Flatten is an index mapping and needs no population.
* A ReLU ends a run: the neurons of the new population fire at a rate
  proportional to the rectified activation.  ReLU, Identity and Dropout never
  need neurons of their own.  A clipped ReLU (``ReLU(max_value=c)``, e.g. a
  QCFS layer) does the same with the scale ``λ = c`` (see :func:`stage_bound`);
  a clip of a population that is not implied by its own bound becomes relay
  neurons.
* An AvgPool2d / GlobalAvgPool2d directly after a population becomes a
  population of its own (weights ``1/k²``): folding it into the next
  convolution would multiply that convolution's synapses by the window size.
* MaxPool2d (``ConversionConfig.maxpool``):

  - ``"gate"`` (default): a spiking OR gate per window — an IF neuron with
    reset to zero whose every input synapse weighs one threshold, so it fires
    in each step in which at least one input fired.  Its rate lies between
    the largest input rate and their sum; it equals the max for inputs that
    fire in the same steps, and over-estimates for desynchronised ones.
  - ``"tree"``: a tournament of rectified differences that converges to the
    max (``conversion/maxpool.py``).
  - ``"avg"``: replaced by average pooling (a ``ConversionWarning`` says so).
  - ``"refuse"``: raise :class:`~spikebridge.errors.ConversionError`.

* The last linear run is the output population.  Softmax at the end is dropped
  (argmax is unchanged).  Its activations may be negative, so:

  - ``output="count"`` (classification default): IF neurons; negative outputs
    stay silent and ties (also all-silent) are broken by the membrane
    potential, which after reset by subtraction is the sub-threshold remainder.
  - ``output="potential"``: a non-spiking ``"integrator"`` whose potential is
    the exact sum of its (signed) input; the decoded value is
    ``v / steps × scale``.  Regression always uses this mode, and so does a
    classifier with a single output (a binary logit, e.g. scikit-learn's
    logistic ``MLPClassifier``): its class is the sign of the decoded value
    (:func:`~spikebridge.ir.evaluate.predict_classes`).

Normalisation and neurons
-------------------------
See :mod:`spikebridge.conversion.normalise`.  With threshold θ, weights and
biases are multiplied by θ so that rates do not depend on θ.  Biases become
constant currents ``bias = θ b_l / (λ_l dt)`` (threshold units per second).

Input encodings: ``"current"`` — the first layer receives the constant current
``W_1 x / λ_0 / dt`` (no input spikes, no delay); ``"poisson"`` /
``"regular"`` — the input population fires with rate
``clip(x / λ_0, 0, 1) × max_rate`` and the first projection's weights are
divided by ``max_rate dt`` so the expected drive is the same.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import Any, cast

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ..config import ConversionConfig
from ..errors import ConversionError, ValidationError
from ..ir.evaluate import evaluate
from ..ir.graph import AnnGraph, safe_name
from ..snn.delays import align_arrivals, delay_steps, draw_delays
from ..snn.network import Population, Projection, SpikingNetwork
from .normalise import activation_scale
from .stages import plan_stages, stage_bound, unique_name

log = logging.getLogger(__name__)

__all__ = ["convert"]

def _resolve_task(graph: AnnGraph, config: ConversionConfig) -> str:
    if config.task != "auto":
        return config.task
    task = str(graph.metadata.get("task", "classification")).lower()
    return "regression" if task.startswith("regress") else "classification"


def _available_memory() -> float | None:
    """Bytes of memory available now (``MemAvailable``; None where it cannot be read)."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return float(line.split()[1]) * 1024.0
    except OSError:
        pass
    try:
        return float(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return None


def normalisation_memory(graph: AnnGraph, n_samples: int) -> float:
    """Bytes that the activations of all layers of ``n_samples`` take during data normalisation (float64).

    Examples
    --------
    >>> from spikebridge.ir import AnnGraph
    >>> from spikebridge.ir.layers import Input, Dense
    >>> import numpy as np
    >>> g = AnnGraph([Input(name="x", shape=(4,)), Dense(name="d", weight=np.ones((3, 4)))])
    >>> normalisation_memory(g, 10)  # (4 + 3) values x 10 samples x 8 bytes
    560.0
    """
    per_sample = sum(int(np.prod(shape)) for shape in graph.shapes.values())
    return float(per_sample) * float(n_samples) * 8.0


def normalisation_sample(graph: AnnGraph, calibration: ArrayLike, cap: int | None) -> NDArray[np.float64]:
    """The first ``cap`` calibration samples (all for None), refused when their activations would not fit memory.

    Raises
    ------
    ConversionError
        If holding every layer's activations for the sample needs more than
        the memory available now (the message says how many samples fit).
    """
    x = calibration if isinstance(calibration, np.ndarray) else np.asarray(calibration)
    n = len(x) if x.ndim > 0 else 1
    if cap is not None and n > cap:
        log.info("model '%s': data normalisation on the first %d of %d calibration samples (normalisation_samples)",
                 graph.name, cap, n)
        x, n = x[:cap], cap
    need = normalisation_memory(graph, n)
    avail = _available_memory()
    if avail is not None and need > 0.8 * avail:
        fit = int(0.8 * avail / max(normalisation_memory(graph, 1), 1.0))
        raise ConversionError(
            f"model '{graph.name}': data normalisation on {n:,} samples needs about {need / 1e9:.1f} GB for the "
            f"activations of all layers, more than the {avail / 1e9:.1f} GB available; pass at most {fit:,} samples "
            "(ConversionConfig.normalisation_samples, or --calibration-samples)"
        )
    return x


def convert(
    graph: AnnGraph,
    config: ConversionConfig | None = None,
    calibration: ArrayLike | None = None,
    *,
    simulate: "Callable[..., Any] | None" = None,
) -> SpikingNetwork:
    """Convert a trained ANN into a rate-coded spiking network.

    Parameters
    ----------
    graph : AnnGraph
        The trained model.
    config : ConversionConfig, optional
        Neuron model, normalisation, delays, encodings (defaults if None).
    calibration : array_like, shape (n_samples, *graph.input_shape), optional
        Data for the per-layer activation scales; required when
        ``config.normalisation == "data"``.  A few hundred training samples suffice.
    simulate : callable, optional
        ``simulate(snn, x, n_steps, seed=...) -> record with .counts``, needed only when
        ``config.calibrate != "none"`` (calibration simulates the converted network).
        :func:`spikebridge.convert` (:func:`spikebridge.run.calibrate.convert`) passes the numpy
        reference simulator; conversion itself never imports an engine.

    Returns
    -------
    SpikingNetwork
        With ``ann=graph``, ``scales`` (λ per ANN layer named in
        ``Population.layer``, plus the input layer), ``readout`` (``mode``,
        ``task``, ``scale``, ``latency_steps``, ``n_out``), ``encoding``
        (``kind``, ``max_rate``, ``scale``) and ``conversion`` (the config).

    Raises
    ------
    ConversionError
        Missing calibration data, or a MaxPool refused.
    UnsupportedLayerError
        A layer type without a spiking form.

    Examples
    --------
    >>> import numpy as np
    >>> from spikebridge.ir import AnnGraph, Input, Dense, ReLU
    >>> g = AnnGraph([Input(name="x", shape=(2,)), Dense(name="fc1", weight=[[1.0, 0.5]]), ReLU(name="r1"),
    ...               Dense(name="out", weight=[[2.0]])])
    >>> snn = convert(g, ConversionConfig(percentile=100.0), calibration=np.array([[1.0, 2.0], [0.5, 0.0]]))
    >>> sorted(snn.populations), snn.scales["r1"], snn.readout["latency_steps"]  # same-step delivery: no latency
    (['fc1', 'input', 'out'], 2.0, 0)
    """
    cfg = config if config is not None else ConversionConfig()
    if not isinstance(cfg, ConversionConfig):
        raise ValidationError(f"convert: config must be a ConversionConfig, got {type(cfg).__name__}", attr="config")
    if not isinstance(graph, AnnGraph):
        raise ValidationError(f"convert: graph must be an AnnGraph, got {type(graph).__name__}", attr="graph")
    task = _resolve_task(graph, cfg)
    from .sequence import convert_sequence, is_sequence_model

    if is_sequence_model(graph):
        return _fixed_point(convert_sequence(graph, cfg, calibration, task), cfg)
    if cfg.neurons_per_unit != 1:
        raise ConversionError(f"model '{graph.name}': neurons_per_unit applies to recurrent (RNN) models only")
    seq_dense = [n for n, s in graph.shapes.items() if len(graph.input_shape_of(n)) == 2 and n != graph.input.name
                 and graph[n].type_name == "Dense"]
    if seq_dense:
        raise ConversionError(
            f"model '{graph.name}': Dense layer '{seq_dense[0]}' is applied to every element of a sequence, "
            "which only a recurrent model (with an RNN layer) converts; flatten the input first"
        )
    if graph.is_chain:
        stages = plan_stages(graph, cfg)
    else:
        from .dag import plan_dag

        stages = plan_dag(graph, cfg)
    # a classifier with one output ends in a binary logit: its sign is the class, so it is signed like a regression
    binary = task == "classification" and int(np.prod(stages[-1].shape)) == 1
    dt, theta = cfg.dt, cfg.threshold

    # -- scales ------------------------------------------------------------
    in_name = graph.input.name
    scales: dict[str, float] = {}
    # populations with a known upper bound (clipped ReLUs, pools and gates of them), by ANN layer
    clip_levels: dict[str, float] = {}
    if cfg.normalisation == "data":
        for st in stages:
            bound = stage_bound(graph, stages, st.name)
            if bound is not None:
                clip_levels[st.layer] = bound
    if cfg.normalisation == "data":
        if calibration is None:
            raise ConversionError(
                f"model '{graph.name}': data-based normalisation needs calibration data; pass "
                "calibration=x_train[:500] (or --calibration on the CLI), or use normalisation='none'"
            )
        calibration = normalisation_sample(graph, calibration, cfg.normalisation_samples)
        acts = cast("dict[str, NDArray[np.float64]]", evaluate(graph, calibration, return_all=True))
        scales[in_name] = activation_scale(acts[in_name], cfg.percentile, name=in_name, signed=True)
        for st in stages:
            a = acts[st.layer]
            if st.rectify:
                a = np.maximum(a, 0.0)
            if st.kind == "gate":
                scales[st.layer] = scales[stages[[s.name for s in stages].index(st.source)].layer]
            elif st.layer in clip_levels:
                # a clipped ReLU's maximum is its clip level: one spike per step stands for it (QCFS: θ = λ)
                scales[st.layer] = clip_levels[st.layer]
            else:
                signed = st.kind == "output" and (task == "regression" or binary)
                scales[st.layer] = activation_scale(a, cfg.percentile, name=st.layer, signed=signed)
    else:
        scales[in_name] = 1.0
        for st in stages:
            scales[st.layer] = 1.0

    # -- readout -----------------------------------------------------------
    mode = cfg.output
    if (task == "regression" or binary) and mode != "potential":
        log.info("%s model '%s': using the integrating potential read-out (counts cannot be negative)",
                 "binary" if binary else "regression", graph.name)
        mode = "potential"

    enc_kind = cfg.input_encoding
    rng = np.random.default_rng(cfg.seed)
    # delay=0: same-step delivery, so a spike crosses every layer within the step it was emitted
    min_steps = 0 if cfg.delay == 0 else 1
    pop_of_layer = {"input": in_name}
    populations = [
        Population(name="input", n=int(np.prod(graph.input_shape)), model="input", shape=graph.input_shape,
                   role="input", layer=in_name)
    ]
    projections: list[Projection] = []
    mean_steps: dict[str, float] = {}
    used = {"input"} | {st.name for st in stages}
    arrival: dict[str, float] = {"input": 0.0}  # mean steps from the input to each population
    for st in stages:
        lam = scales[st.layer]
        pop_of_layer[st.name] = st.layer
        is_out = st.kind == "output"
        n = int(np.prod(st.shape))
        bias = np.zeros(n) if st.bias is None else np.asarray(st.bias, dtype=np.float64)
        bias_rate = theta * bias / lam / dt
        if is_out and mode == "potential":
            model, v_init = "integrator", 0.0
        else:
            model, v_init = cfg.neuron, cfg.v_init * theta
        populations.append(
            Population(
                name=st.name,
                n=n,
                model=model,
                shape=st.shape,
                threshold=theta,
                reset="zero" if st.kind == "gate" else cfg.reset,
                v_init=v_init,
                tau_mem=cfg.tau_mem if model == "lif" else None,
                bias=bias_rate if np.any(bias_rate) else 0.0,
                refractory=cfg.refractory,
                role="output" if is_out else "hidden",
                layer=st.layer,
            )
        )
        incoming: list[tuple[Projection, float]] = []
        for i, (source, matrix) in enumerate(st.inputs()):
            lam_src = scales[in_name] if source == "input" else scales[pop_of_layer[source]]
            if st.kind == "gate":
                w_scale = theta  # one input spike always crosses the threshold
            else:
                # each source in its own scale: a residual sum gets lambda_src / lambda_sum per path
                w_scale = theta * lam_src / lam
            if source == "input" and enc_kind != "current":
                w_scale /= cfg.max_rate * dt
            # a shared kernel stays one (no per-synapse arrays) unless per-synapse delays need them
            op = st.kernel_of(i)
            kern = op.scaled(w_scale) if op is not None and cfg.delay_jitter <= 0 else None
            if kern is None:
                coo = (st.csr() if i == 0 or matrix is None else matrix).tocoo()
                keep = coo.data != 0
                pre, post, w = coo.col[keep], coo.row[keep], coo.data[keep] * w_scale
                syn: dict[str, object] = {"pre_index": pre, "post_index": post, "weight": w}
            else:
                syn = {"operator": kern}
            pname = unique_name(f"{source}_{st.name}", used)
            delay = draw_delays(len(w) if kern is None else kern.n_synapses, dt=dt, delay=cfg.delay, jitter=cfg.delay_jitter, rng=rng)
            mean_steps[pname] = float(np.mean(delay_steps(delay, dt, min_steps))) if np.size(delay) else float(min_steps)
            folded = source == "input" and enc_kind == "current"  # a constant current: no hop
            incoming.append((
                Projection(
                    name=pname,
                    pre=source,
                    post=st.name,
                    delay=delay,
                    kind=st.kind if st.kind in ("pool", "gate") else ("conv" if len(st.shape) == 3 else "dense"),
                    layer=st.layer,
                    **syn,  # type: ignore[arg-type]
                ),
                arrival[source] + (0.0 if folded else mean_steps[pname]),
            ))
        arrival[st.name], pads = align_arrivals([a for _, a in incoming])
        for (proj, _), pad in zip(incoming, pads):
            # paths of a residual sum arrive aligned: the shorter one waits `pad` more steps
            projections.append(proj if pad == 0 else proj.replace(delay=proj.delay + pad * dt))
    out_stage = stages[-1]
    latency = int(round(arrival[out_stage.name]))
    out_pop = populations[-1]
    if out_pop.model == "integrator" and latency > 0 and np.any(np.asarray(out_pop.bias)):
        # the read-out divides by the steps after the pipeline latency; start the integrator that
        # much bias below zero so the bias is counted for exactly those steps too
        populations[-1] = out_pop.replace(v_init=-np.asarray(out_pop.bias) * dt * latency)
    readout = {
        "mode": mode,
        "task": task,
        "scale": scales[out_stage.layer] / (theta if mode == "potential" else 1.0),
        "latency_steps": latency,
        "n_out": int(np.prod(out_stage.shape)),
        "threshold": theta,
    }
    encoding = {"kind": enc_kind, "max_rate": float(cfg.max_rate), "scale": scales[in_name]}
    snn = SpikingNetwork(
        populations,
        projections,
        input="input",
        output=out_stage.name,
        dt=dt,
        readout=readout,
        encoding=encoding,
        conversion=cfg.to_dict(),
        scales=scales,
        ann=graph,
        name=safe_name(graph.name),
        metadata={"source_model": graph.name, "task": task, "classes": graph.metadata.get("classes"),
                  **({"clip_levels": clip_levels} if clip_levels else {})},
        min_delay_steps=min_steps,
    )
    if cfg.scales == "channel" and cfg.normalisation == "data":
        from .calibrate import apply_channel_scales

        snn = apply_channel_scales(snn, graph, cast("ArrayLike", calibration), cfg)
    if cfg.maxpool == "tree":
        from .maxpool import expand_max_trees

        snn = expand_max_trees(snn, cfg)
    if cfg.bias_onset == "arrival":
        from .onset import delay_bias_onset

        # after the max-pool trees (they lengthen the paths), before calibration (which measures the result)
        snn = delay_bias_onset(snn)
    if cfg.burst > 1:
        # hidden IF populations only: the read-out keeps single spikes (its counts are the answer), and a
        # clipped ReLU's population keeps them too (one spike per step is its clip level; more would exceed it)
        snn = snn.copy_with(populations=[
            p.replace(params={**p.params, "burst": cfg.burst})
            if p.role == "hidden" and p.model in ("if", "lif") and p.reset == "subtract" and p.layer not in clip_levels
            else p
            for p in snn.populations.values()])
    if cfg.signed:
        # signed neurons with memory (Wang et al. 2022): every hidden IF/LIF population, clipped (QCFS) ones
        # included (a negative spike only takes back an earlier one, so the count stays in 0 .. T·burst)
        # with burst spikes, a clipped population bursts too, capped so that its net count never exceeds the
        # steps so far (its clip level): a burst lets it catch up on input that arrived late, a negative
        # spike takes back what it fired too early
        def signed_params(p: Population) -> dict[str, Any]:
            extra = {"burst": cfg.burst, "rate_cap": True} if cfg.burst > 1 and p.layer in clip_levels else {}
            return {**p.params, "signed": True, **extra}

        snn = snn.copy_with(populations=[
            p.replace(params=signed_params(p))
            if p.role == "hidden" and p.model in ("if", "lif") and p.reset == "subtract" and p.refractory == 0
            else p
            for p in snn.populations.values()])
    if cfg.calibrate != "none":
        from .calibrate import calibrate_network

        if calibration is None:
            raise ConversionError(f"model '{graph.name}': calibrate={cfg.calibrate!r} needs calibration data")
        if simulate is None:
            raise ConversionError(
                f"model '{graph.name}': calibrate={cfg.calibrate!r} simulates the converted network; use "
                "spikebridge.convert (spikebridge.run.calibrate.convert), which supplies the reference simulator"
            )
        snn, _ = calibrate_network(snn, calibration, cfg, simulate)
    if cfg.lateral_inhibition > 0:
        from .recurrent import add_lateral_inhibition

        snn = add_lateral_inhibition(snn, cfg.lateral_inhibition)
    if cfg.dale != "none":
        from .dale import apply_dale

        snn = apply_dale(snn, cfg)
    return _fixed_point(snn, cfg)


def _fixed_point(snn: SpikingNetwork, cfg: ConversionConfig) -> SpikingNetwork:
    """``snn`` with fixed-point weights when ``cfg.fixed_point`` or ``cfg.weight_bits`` (the last step: after
    calibration and Dale's split)."""
    if not cfg.fixed_point and cfg.weight_bits is None:
        return snn
    from .fixedpoint import to_fixed_point

    return to_fixed_point(snn, cfg.weight_bits)
