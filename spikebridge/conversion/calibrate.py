"""Post-conversion corrections for deep networks: channel-wise scales and SNN calibration.

Channel-wise normalisation (``ConversionConfig.scales = "channel"``)
--------------------------------------------------------------------
One scale per layer is set by the layer's most active channel, so channels with
small activations fire rarely and are quantised coarsely; on deep networks the
error compounds (SpikingJelly's ResNet-18 ImageNet figure: 12.5 % with one scale
per layer, 65.5 % with local threshold balancing).  With channel scales, every
channel ``c`` of a convolutional population gets its own ``λ_c`` (the same
``percentile`` of its positive calibration activations), i.e. the population's
neuron ``i`` of channel ``c`` represents ``a_i / λ_c`` instead of ``a_i / λ``.
This is done on the converted network with a per-neuron factor
``f_i = λ / λ_c``: incoming weights and the bias of neuron ``i`` are multiplied
by ``f_i`` and outgoing weights divided by it, so the ANN function is unchanged
and only the rates move.  Max-pool populations inherit the factor of their
input channel (their unit weights stay one threshold), the output population
keeps ``f = 1`` so the read-out scale stays a scalar.  A population whose
activation has a known bound (a clipped ReLU, e.g. a QCFS layer, and pools or
max-pool gates of it; ``metadata["clip_levels"]``) keeps its scalar clip level:
every channel's maximum is that bound, and the trained quantisation grid is
defined on it.  The per-channel ``λ_c`` are stored in ``metadata["channel_scales"]``.

SNN calibration (``ConversionConfig.calibrate``)
------------------------------------------------
In the spirit of Li et al. 2021 ("A free lunch from ANN: towards efficient,
accurate spiking neural networks calibration"): layer by layer, from the input
on, the converted network is simulated on calibration samples for
``calibrate_steps`` steps (numpy reference simulator) and the mean error of the
spike rate of each neuron, ``e = E[min(relu(a) f / λ, 1)] - E[N_T / T]`` (spikes
per step; averaged over samples, and over positions for convolutional
channels), is corrected before the next layer is measured:

- ``"bias"``: bias correction, ``b ← b + e θ / dt`` (a constant current; it
  shifts the rate at every ``T``, so it helps near ``calibrate_steps`` and can
  over-shoot for much longer runs);
- ``"potential"``: initial-potential correction, ``v_0 ← v_0 + e T θ``: the
  missing ``e T`` spikes are charged in at the start; its effect on the rate
  falls like ``1/T``, so long runs still converge to the ANN;
- ``"both"``: potential first, then bias on the remaining error.

Non-spiking (integrator) read-outs and populations that are not an ANN layer
(max-pool tree units, E/I relays) are not corrected.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ..errors import ConversionError

if TYPE_CHECKING:
    from ..snn.kernels import SharedKernel
    from ..config import ConversionConfig
    from ..ir.graph import AnnGraph
    from ..snn.network import Population, SpikingNetwork

__all__ = ["apply_channel_scales", "calibrate_network", "neuron_scales"]


def _channel_of(pop: "Population") -> NDArray[np.int64] | None:
    shape = pop.shape or (pop.n,)
    if len(shape) != 3:
        return None
    return np.repeat(np.arange(shape[0]), shape[1] * shape[2])


def _positive_percentile(a: NDArray[np.float64], percentile: float) -> float:
    a = a[a > 0]
    return float(np.percentile(a, percentile)) if a.size else 0.0


def apply_channel_scales(
    snn: "SpikingNetwork", graph: "AnnGraph", calibration: ArrayLike, cfg: "ConversionConfig"
) -> "SpikingNetwork":
    """Give every channel of each convolutional hidden population its own scale λ_c.

    Parameters
    ----------
    snn : SpikingNetwork
        Freshly converted with data-based normalisation (before max-pool trees,
        lateral inhibition or an E/I split).
    graph : AnnGraph
        The source ANN.
    calibration : array_like, shape (n_samples, *input_shape)
        The calibration data used for the layer scales.
    cfg : ConversionConfig
        ``percentile`` is used for λ_c.

    Returns
    -------
    SpikingNetwork
        Same structure; weights, biases rescaled as in the module docstring;
        ``metadata["channel_scales"]`` maps layer names to lists of λ_c.
    """
    from ..ir.evaluate import evaluate

    acts: dict[str, NDArray[np.float64]] = evaluate(graph, calibration, return_all=True)  # type: ignore[assignment]
    factor: dict[str, NDArray[np.float64]] = {}
    channel_scales: dict[str, list[float]] = {}
    gate_src = {p.post: p.pre for p in snn.projections.values() if p.kind == "gate"}
    clipped = snn.metadata.get("clip_levels") or {}
    for pop in snn.populations.values():
        if pop.name == snn.input or pop.name == snn.output or pop.layer is None or pop.layer not in snn.scales:
            continue
        if pop.layer in clipped:
            continue  # a clipped layer keeps its scalar clip level (see the module docstring)
        ch = _channel_of(pop)
        if ch is None:
            continue
        if pop.name in gate_src and gate_src[pop.name] in factor:
            # a max-pool keeps its input's representation channel by channel
            src = snn.populations[gate_src[pop.name]]
            lam_src = np.asarray(channel_scales[str(src.layer)])
            channel_scales[pop.layer] = lam_src.tolist()
            factor[pop.name] = (float(snn.scales[pop.layer]) / lam_src)[ch]
            continue
        a = np.maximum(np.asarray(acts[pop.layer], dtype=np.float64), 0.0)
        if a.ndim != 4 or a.shape[1] != int(ch.max()) + 1:
            continue
        lam = float(snn.scales[pop.layer])
        lam_c = np.array([_positive_percentile(a[:, c].ravel(), cfg.percentile) for c in range(a.shape[1])])
        # a channel that never fires on the calibration data keeps the layer scale
        lam_c = np.where(lam_c > 0, lam_c, lam)
        channel_scales[pop.layer] = lam_c.tolist()
        factor[pop.name] = (lam / lam_c)[ch]
    if not factor:
        return snn
    populations = []
    for pop in snn.populations.values():
        f = factor.get(pop.name)
        if f is not None and np.any(np.asarray(pop.bias)):
            pop = pop.replace(bias=np.broadcast_to(np.asarray(pop.bias, dtype=np.float64), (pop.n,)) * f)
        populations.append(pop)
    projections = []
    for proj in snn.projections.values():
        if proj.operator is not None and (proj.post in factor or proj.pre in factor):
            # a shared kernel stays one: its taps are rescaled channel by channel
            projections.append(proj.replace(operator=_scaled_kernel(proj.operator, factor.get(proj.post), factor.get(proj.pre))))
            continue
        w = proj.weight.copy()
        if proj.post in factor:
            w *= factor[proj.post][proj.post_index]
        if proj.pre in factor:
            w /= factor[proj.pre][proj.pre_index]
        projections.append(proj.replace(weight=w) if (proj.post in factor or proj.pre in factor) else proj)
    metadata = {**snn.metadata, "channel_scales": channel_scales}
    return snn.copy_with(populations=populations, projections=projections, metadata=metadata)


def _scaled_kernel(
    kern: "SharedKernel", f_post: NDArray[np.float64] | None, f_pre: NDArray[np.float64] | None
) -> "SharedKernel":
    """``kern`` with tap (o, i) multiplied by ``f_post[o] / f_pre[i]`` (per-neuron factors, constant per channel)."""
    from ..snn.kernels import SharedKernel

    k = np.array(kern.kernel, dtype=np.float64)
    c_out, c_in_g = k.shape[0], k.shape[1]
    if f_post is not None:
        k *= f_post.reshape(c_out, -1)[:, 0][:, None, None, None]
    if f_pre is not None:
        c_in = int(kern.in_shape[0])
        fpre_c = f_pre.reshape(c_in, -1)[:, 0]
        out_per_group = c_out // kern.groups
        in_ch = (np.arange(c_out)[:, None] // out_per_group) * c_in_g + np.arange(c_in_g)[None, :]
        k /= fpre_c[in_ch][:, :, None, None]
    return SharedKernel(k, kern.in_shape, kern.stride, kern.padding, kern.groups)


def neuron_scales(snn: "SpikingNetwork", name: str) -> NDArray[np.float64] | float:
    """λ of each neuron of population ``name``: its channel's λ_c if channel scales were applied, else the layer's λ."""
    pop = snn.populations[name]
    layer = pop.layer
    lam_c = (snn.metadata.get("channel_scales") or {}).get(layer)
    ch = _channel_of(pop)
    if lam_c is not None and ch is not None:
        return np.asarray(lam_c, dtype=np.float64)[ch]
    return float(snn.scales.get(str(layer), 1.0))


def _channel_mean(err: NDArray[np.float64], pop: "Population") -> NDArray[np.float64]:
    """Average a per-neuron error over each channel's positions (convolutional populations)."""
    ch = _channel_of(pop)
    if ch is None:
        return err
    sums = np.bincount(ch, weights=err)
    return (sums / np.bincount(ch))[ch]


def quantised_activations(graph: "AnnGraph", x: NDArray[np.float64]) -> dict[str, NDArray[np.float64]] | None:
    """Every layer's output of a QCFS network as trained, or None when ``graph`` is not one.

    A QCFS-trained graph (``metadata["qcfs_levels"]``: ``L`` per clipped ReLU) computes
    ``λ/L · clip(floor(x L/λ + 1/2), 0, L)`` at each of those layers (Bu et al. 2022), not the
    clipped ReLU stored in the IR; the SNN at ``T = L`` approximates that quantised network, so
    calibration must aim at its activations (the float clipped ANN's differ by up to half a level
    at every layer, and those differences compound).

    Parameters
    ----------
    graph : AnnGraph
    x : ndarray, shape (n_samples, *graph.input_shape)

    Returns
    -------
    dict of str to ndarray, or None
        Each layer's output keyed by layer name (the Input layer maps to ``x``).
    """
    from ..ir.evaluate import forward_layer, forward_merge
    from ..ir.layers import Input, Merge, ReLU

    levels = {str(k): int(v) for k, v in (graph.metadata.get("qcfs_levels") or {}).items()}
    if not levels:
        return None
    acts: dict[str, NDArray[np.float64]] = {}
    for layer in graph:
        if isinstance(layer, Input):
            acts[layer.name] = np.asarray(x, dtype=np.float64).reshape((len(x), *graph.input_shape))
            continue
        if isinstance(layer, Merge):
            a = forward_merge(layer, [acts[p] for p in graph.predecessors(layer.name)])
        else:
            a = forward_layer(layer, acts[graph.predecessor(layer.name)])  # type: ignore[index]
        if isinstance(layer, ReLU) and layer.max_value is not None and layer.name in levels:
            lam, n = float(layer.max_value), levels[layer.name]
            a = lam / n * np.clip(np.floor(a * n / lam + 0.5), 0, n)
        acts[layer.name] = a
    return acts


def calibrate_network(
    snn: "SpikingNetwork", calibration: ArrayLike, cfg: "ConversionConfig", simulate: "Callable[..., Any]"
) -> tuple["SpikingNetwork", list[dict[str, Any]]]:
    """Correct biases and/or initial potentials layer by layer from simulated rates.

    Parameters
    ----------
    snn : SpikingNetwork
        A converted network (``snn.ann`` is needed for the ANN activations).
    calibration : array_like, shape (n_samples, *input_shape)
        Calibration inputs; the first ``cfg.calibrate_samples`` are simulated.
    cfg : ConversionConfig
        ``calibrate`` (``"bias"``, ``"potential"`` or ``"both"``) and
        ``calibrate_steps`` (T of the calibration runs).
    simulate : callable
        ``simulate(snn, x, n_steps, seed=...)`` returning a record whose ``counts[name]`` are spike
        counts per sample and neuron (the numpy reference simulator,
        :func:`spikebridge.engines.reference.simulate_reference`, as
        :func:`spikebridge.run.calibrate.calibrate_network` passes it).

    Returns
    -------
    (SpikingNetwork, list of dict)
        The corrected network, and per corrected population its name and the
        mean absolute rate error before correction (spikes per step).

    Raises
    ------
    ConversionError
        If the network has no source ANN.
    """
    from ..ir.evaluate import evaluate

    if snn.ann is None:
        raise ConversionError("calibrate: the network has no source ANN to calibrate against")
    x = np.asarray(calibration, dtype=np.float64)[: cfg.calibrate_samples]
    # a QCFS-trained ANN: aim at the quantised network as trained, which the SNN approximates
    acts = quantised_activations(snn.ann, x.reshape((len(x), *snn.ann.input_shape)))
    if acts is None:
        acts = evaluate(snn.ann, x, return_all=True)  # type: ignore[assignment]
    T = int(cfg.calibrate_steps)
    theta_dt = snn.dt
    log: list[dict[str, Any]] = []
    targets = [
        p.name for p in snn.populations.values()
        if p.name != snn.input and p.model in ("if", "lif") and p.reset == "subtract" and p.layer in acts
    ]
    for name in targets:
        rec = simulate(snn, x, T, seed=cfg.seed)
        pop = snn.populations[name]
        lam = neuron_scales(snn, name)
        # at most `burst` spikes per step (one without burst spikes)
        a = np.minimum(np.maximum(acts[str(pop.layer)].reshape(len(x), -1), 0.0) / lam, float(pop.burst))
        want = a.mean(axis=0)
        got = rec.counts[name].mean(axis=0) / T
        theta = np.broadcast_to(np.asarray(pop.threshold, dtype=np.float64), (pop.n,))
        changes: dict[str, Any] = {}
        if cfg.calibrate in ("offset", "offset_mean"):
            # offset spikes (Hao et al. 2023): the count an exact quantiser starting at v_init would
            # give in T steps, against the simulated one; a neuron off by k spikes on average starts
            # k thresholds lower (higher when it fell short)
            v0 = np.broadcast_to(np.asarray(pop.v_init, dtype=np.float64), (pop.n,)) / theta
            ideal = np.clip(np.floor(a * T + v0), 0, T * pop.burst)
            offset = (rec.counts[name] - ideal).mean(axis=0)
            if cfg.calibrate == "offset":
                offset = np.rint(offset)  # whole spikes (Hao et al.); "offset_mean" keeps the fraction
            changes["v_init"] = np.asarray(pop.v_init, dtype=np.float64) - offset * theta
            snn = snn.copy_with(populations=[pop.replace(**changes) if p.name == name else p for p in snn.populations.values()])
            log.append({"population": name, "mean_abs_rate_error": float(np.mean(np.abs(want - got))),
                        "shifted_neurons": int(np.count_nonzero(offset))})
            continue
        err = _channel_mean(want - got, pop)
        if cfg.calibrate in ("potential", "both"):
            changes["v_init"] = np.asarray(pop.v_init, dtype=np.float64) + err * T * theta
        if cfg.calibrate == "bias":
            changes["bias"] = np.asarray(pop.bias, dtype=np.float64) + err * theta / theta_dt
        if cfg.calibrate == "both":
            # the potential takes the error at T; the bias then corrects what remains
            trial = snn.copy_with(populations=[pop.replace(**changes) if p.name == name else p for p in snn.populations.values()])
            rec2 = simulate(trial, x, T, seed=cfg.seed)
            rest = _channel_mean(want - rec2.counts[name].mean(axis=0) / T, pop)
            changes["bias"] = np.asarray(pop.bias, dtype=np.float64) + rest * theta / theta_dt
        snn = snn.copy_with(populations=[pop.replace(**changes) if p.name == name else p for p in snn.populations.values()])
        log.append({"population": name, "mean_abs_rate_error": float(np.mean(np.abs(want - got)))})
    return snn, log
