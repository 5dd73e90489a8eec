"""Unsupervised learning on spikebridge networks: the Diehl & Cook digits learner.

The pair-based STDP synapses themselves (:class:`~spikebridge.engines.brian2.plasticity.STDPRule`,
:func:`~spikebridge.engines.brian2.plasticity.add_stdp`, ``present_samples``) are Brian2 objects and
live with the Brian2 engine (:mod:`spikebridge.engines.brian2.plasticity`); the whole experiment
(data, store, figure) is :func:`spikebridge.run.stdp.run_stdp_digits`.  Here (Brian2 is imported only
when a network is built):

* :func:`write_weight_history` -- a plastic projection's recorded weights
  into a spike store (layout: ``docs/formats.md``, "Weight recordings");
* :class:`DiehlCookConfig`, :func:`diehl_cook_network`, :func:`train_diehl_cook`,
  :func:`labelled_network` -- unsupervised learning
  of the shipped 8×8 digits in the style of Diehl & Cook (2015, Front.
  Comput. Neurosci. 9:99): Poisson input → excitatory layer with STDP and
  adaptive thresholds → inhibitory population giving lateral inhibition;
  every excitatory neuron is labelled with the class it responds to most on
  training data, and the labelled network classifies by the mean response
  of each class's neurons.

Differences from the paper, all for speed on CPUs: current-based LIF neurons
(not conductance-based), the pair-based rule above (not the paper's
pre-and-post variant with a target trace), dt = 1 ms, and the threshold
adaptation applied once per presentation (the paper's θ decays with a time
constant of 10^4 s, so within one presentation only its growth differs).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from ..config import SimulationConfig, _Config, _check_range
from ..snn.network import Population, Projection, SpikingNetwork
from ..errors import ValidationError

if TYPE_CHECKING:  # pragma: no cover
    from ..engines.brian2.plasticity import PlasticProjection, STDPRule

log = logging.getLogger(__name__)

__all__ = [
    "write_weight_history",
    "DiehlCookConfig",
    "diehl_cook_network",
    "train_diehl_cook",
    "assign_labels",
    "labelled_network",
]


def write_weight_history(store_path: str | Path, plastic: "PlasticProjection", *, pre: str, post: str) -> None:
    """Append ``plastic``'s weight snapshots to the spike store at ``store_path``.

    Parameters
    ----------
    store_path : str or path-like
        An existing spike store (opened for appending).
    plastic : PlasticProjection
        With at least one snapshot.
    pre, post : str
        Names of the projection's pre- and post-synaptic populations.
    """
    from ..store.spikes import SpikeStore
    from ..store.weights import write_weights

    if not plastic.history:
        raise ValidationError(f"write_weight_history: projection '{plastic.name}' has no snapshots; call snapshot() first")
    with SpikeStore(store_path, "a") as st:
        write_weights(
            st, plastic.name, pre=pre, post=post, pre_index=plastic.pre, post_index=plastic.post, copy=plastic.copy,
            times=np.asarray(plastic.times), weights=np.stack(plastic.history), rule=dataclasses.asdict(plastic.rule),
        )


@dataclass(frozen=True, kw_only=True)
class DiehlCookConfig(_Config):
    """Parameters of the Diehl & Cook style digit learner (SI units).

    Parameters
    ----------
    n_exc : int
        Excitatory (and inhibitory) neurons.
    epochs : int
        Passes over the training samples.
    n_train, n_test : int or None
        Use only the first N training / test samples (None = all).
    max_rate : float
        Input rate in hertz of a pixel of intensity 1.
    t_present, t_rest : float
        Seconds each sample is shown, and of silence after it.
    dt : float
        Time step in seconds.
    tau_exc, tau_inh : float
        Membrane time constants in seconds.
    refractory_exc, refractory_inh : float
        Refractory periods in seconds.
    w_exc_inh, w_inh_exc : float
        Jump of ``v`` (threshold units) from an excitatory spike onto its
        inhibitory partner, and (negative) from an inhibitory spike onto every
        other excitatory neuron.
    w_init : float
        Initial input weights are uniform in ``[0, w_init]``, then scaled to sum to ``w_total``.
    w_total : float
        Sum of the input weights onto each excitatory neuron (normalised before
        every presentation).
    w_max, tau_pre, tau_post, a_plus, a_minus : float
        The STDP rule (:class:`STDPRule`).
    theta_plus : float
        Threshold increase per spike (threshold units).
    n_steps_test : int
        Steps of each test (and labelling) presentation.
    seed : int
    target : str
        Brian2 code-generation target for training ("numpy" or "cython"/"auto").
    snapshot_every : int
        Record the weights every this many training samples.
    """

    n_exc: int = 100
    epochs: int = 4
    n_train: int | None = None
    n_test: int | None = None
    max_rate: float = 250.0
    t_present: float = 0.15
    t_rest: float = 0.05
    dt: float = 1e-3
    tau_exc: float = 0.05
    tau_inh: float = 0.01
    refractory_exc: float = 5e-3
    refractory_inh: float = 2e-3
    w_exc_inh: float = 2.0
    w_inh_exc: float = -5.0
    w_init: float = 0.3
    w_total: float = 0.6
    w_max: float = 1.0
    tau_pre: float = 0.02
    tau_post: float = 0.02
    a_plus: float = 1e-4
    a_minus: float = -2e-5
    theta_plus: float = 0.005
    n_steps_test: int = 150
    seed: int = 0
    target: str = "auto"
    snapshot_every: int = 100

    _time_fields = frozenset({"t_present", "t_rest", "dt", "tau_exc", "tau_inh", "refractory_exc", "refractory_inh",
                              "tau_pre", "tau_post"})

    def __post_init__(self) -> None:
        for name in ("n_exc", "epochs", "n_steps_test"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValidationError(f"DiehlCookConfig.{name}: must be an int >= 1, got {value!r}", attr=name, obj=self)
        for name in ("max_rate", "t_present", "dt", "tau_exc", "tau_inh", "w_init", "w_total", "w_max", "theta_plus"):
            _check_range(self, name, 0.0, lo_open=True)
        for name in ("t_rest", "refractory_exc", "refractory_inh", "snapshot_every"):
            _check_range(self, name, 0.0)
        if self.w_inh_exc > 0:
            raise ValidationError("DiehlCookConfig.w_inh_exc: inhibition must be <= 0", attr="w_inh_exc", obj=self)
        if self.target not in ("auto", "numpy", "cython"):
            raise ValidationError(
                f"DiehlCookConfig.target: {self.target!r} is not one of 'auto', 'numpy', 'cython' (training runs a "
                "network_operation, which needs a runtime target)", attr="target", obj=self,
            )

    @classmethod
    def quick(cls) -> "DiehlCookConfig":
        """A seconds-long smoke configuration for CI: 10 neurons, 100 training and 60 test digits, numpy target.

        With ten digits per neuron, homeostasis and learning are made faster so every neuron gets to win.
        """
        return cls(n_exc=10, n_train=100, n_test=60, epochs=1, target="numpy", t_present=0.1, t_rest=0.02,
                   n_steps_test=100, theta_plus=0.05, a_plus=1e-3, a_minus=-2e-4)

    def rule(self) -> "STDPRule":
        """The STDP rule of this configuration."""
        from ..engines.brian2.plasticity import STDPRule

        return STDPRule(tau_pre=self.tau_pre, tau_post=self.tau_post, a_plus=self.a_plus, a_minus=self.a_minus,
                        w_min=0.0, w_max=self.w_max)


def diehl_cook_network(
    cfg: DiehlCookConfig, n_input: int, *, weights: NDArray[np.float64] | None = None, theta: NDArray[np.float64] | None = None
) -> SpikingNetwork:
    """The learner as a :class:`SpikingNetwork` (Poisson input → ``exc`` ⇄ ``inh``).

    Parameters
    ----------
    cfg : DiehlCookConfig
    n_input : int
        Input neurons (pixels).
    weights : ndarray (n_exc, n_input), optional
        Input → excitatory weights (default: uniform in ``[0, w_init]`` from ``cfg.seed``).
    theta : ndarray (n_exc,), optional
        Excitatory thresholds (default 1).

    Returns
    -------
    SpikingNetwork
        Populations ``input`` (poisson), ``exc`` (LIF, excitatory, per-neuron
        thresholds), ``inh`` (LIF, inhibitory); projections ``in_exc``
        (plastic candidate), ``exc_inh`` (one-to-one), ``inh_exc`` (all but self).
    """
    n = cfg.n_exc
    rng = np.random.default_rng(cfg.seed)
    if weights is None:
        w = rng.uniform(0.0, cfg.w_init, size=(n, n_input))
        w *= cfg.w_total / w.sum(axis=1, keepdims=True)  # as normalised before every presentation
    else:
        w = np.asarray(weights, dtype=np.float64)
    th = np.ones(n) if theta is None else np.asarray(theta, dtype=np.float64)
    pops = [
        Population(name="input", n=n_input, model="input", role="input", sign="excitatory"),
        Population(name="exc", n=n, model="lif", tau_mem=cfg.tau_exc, threshold=th, reset="value", v_reset=0.0,
                   refractory=cfg.refractory_exc, role="hidden", sign="excitatory"),
        Population(name="inh", n=n, model="lif", tau_mem=cfg.tau_inh, threshold=1.0, reset="value", v_reset=0.0,
                   refractory=cfg.refractory_inh, role="interneuron", sign="inhibitory"),
    ]
    idx = np.arange(n)
    pre, post = np.repeat(idx, n), np.tile(idx, n)
    other = pre != post
    projs = [
        Projection.from_dense(w, keep_zeros=True, name="in_exc", pre="input", post="exc", delay=cfg.dt, kind="dense"),
        Projection(name="exc_inh", pre="exc", post="inh", pre_index=idx, post_index=idx, weight=np.full(n, cfg.w_exc_inh),
                   delay=cfg.dt, kind="relay"),
        Projection(name="inh_exc", pre="inh", post="exc", pre_index=pre[other], post_index=post[other],
                   weight=np.full(int(other.sum()), cfg.w_inh_exc), delay=cfg.dt, kind="lateral"),
    ]
    return SpikingNetwork(pops, projs, input="input", output=None, dt=cfg.dt, name="diehl_cook",
                          encoding={"kind": "poisson", "scale": 1.0, "max_rate": cfg.max_rate})


def train_diehl_cook(
    x: NDArray[np.float64], cfg: DiehlCookConfig, *, say: Callable[[str], None] | None = None
) -> tuple[SpikingNetwork, "PlasticProjection", dict[str, Any]]:
    """Learn input weights and thresholds from ``x`` without labels.

    Parameters
    ----------
    x : ndarray, shape (n_samples, n_input)
        Pixel intensities in [0, 1].
    cfg : DiehlCookConfig
    say : callable, optional
        One-line progress messages.

    Returns
    -------
    network : SpikingNetwork
        The learner with the learned ``in_exc`` weights and ``exc`` thresholds.
    plastic : PlasticProjection
        The plastic projection with its weight snapshots.
    info : dict
        ``epoch_s`` (wall seconds per epoch), ``build_s``, ``spikes_per_sample``.
    """
    from ..engines.brian2.api import to_brian2
    from ..engines.brian2.plasticity import add_stdp, present_samples
    from ..engines.brian2.run import brian2_state

    say = say or (lambda msg: log.info(msg))
    x = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
    snn = diehl_cook_network(cfg, x.shape[1])
    info: dict[str, Any] = {"epoch_s": [], "spikes_per_sample": []}
    # training is one long Brian2 run; brian2_state sets the target and seed and restores them
    with brian2_state(cfg.target, cfg.seed):
        t0 = time.perf_counter()
        net = to_brian2(snn, config=SimulationConfig(n_steps=1, dt=cfg.dt))
        plastic = add_stdp(net, "in_exc", cfg.rule())
        exc = net.groups["exc"]
        theta = np.ones(cfg.n_exc)

        def adapt(k: int, counts: NDArray[np.int64]) -> None:
            theta[:] += cfg.theta_plus * counts
            exc.theta = theta

        info["build_s"] = time.perf_counter() - t0
        rng = np.random.default_rng(cfg.seed)
        for epoch in range(cfg.epochs):
            order = rng.permutation(len(x))
            t1 = time.perf_counter()
            counts = present_samples(
                net, x[order] * cfg.max_rate, t_present=cfg.t_present, t_rest=cfg.t_rest, population="exc",
                plastic=plastic, normalise=cfg.w_total, on_sample=adapt, snapshot_every=cfg.snapshot_every,
                reset={"exc": {"v": 0.0}, "inh": {"v": 0.0}},  # every sample starts as a test presentation does
            )
            info["epoch_s"].append(time.perf_counter() - t1)
            info["spikes_per_sample"].append(float(counts.sum(axis=1).mean()))
            say(f"epoch {epoch + 1}/{cfg.epochs}: {info['epoch_s'][-1]:.1f} s, "
                f"{info['spikes_per_sample'][-1]:.1f} excitatory spikes per sample")
        weights = plastic.weight_matrix()
        del net
    return diehl_cook_network(cfg, x.shape[1], weights=weights, theta=theta.copy()), plastic, info


def assign_labels(counts: NDArray[Any], y: NDArray[Any], n_classes: int) -> NDArray[np.int64]:
    """Label every neuron with the class of its highest mean response.

    Parameters
    ----------
    counts : ndarray (n_samples, n_neurons)
        Spike counts per sample.
    y : ndarray (n_samples,)
        Class of each sample, in ``0 … n_classes - 1``.

    Returns
    -------
    ndarray of int64, shape (n_neurons,)

    Examples
    --------
    >>> assign_labels(np.array([[3, 0], [0, 2], [1, 0]]), np.array([0, 1, 0]), 2).tolist()
    [0, 1]
    """
    c = np.asarray(counts, dtype=np.float64)
    yy = np.asarray(y, dtype=np.int64)
    mean = np.stack([c[yy == k].mean(axis=0) if np.any(yy == k) else np.zeros(c.shape[1]) for k in range(n_classes)])
    return np.argmax(mean, axis=0).astype(np.int64)


def labelled_network(learner: SpikingNetwork, labels: NDArray[np.int64], n_classes: int) -> SpikingNetwork:
    """Add a read-out of ``n_classes`` integrators fed by the labelled excitatory neurons.

    Read-out neuron ``c`` integrates ``1 / n_c`` per spike of each of the
    ``n_c`` neurons labelled ``c``: its potential is the mean response of the
    class, and ``SpikeRecord.predictions()`` is Diehl & Cook's vote.
    """
    labels = np.asarray(labels, dtype=np.int64)
    n_per = np.bincount(labels, minlength=n_classes).astype(np.float64)
    pre = np.arange(labels.size)
    readout = Projection(name="exc_readout", pre="exc", post="readout", pre_index=pre, post_index=labels,
                         weight=1.0 / n_per[labels], delay=learner.dt, kind="readout")
    pops = [*learner.populations.values(), Population(name="readout", n=n_classes, model="integrator", role="output")]
    return SpikingNetwork(
        pops, [*learner.projections.values(), readout], input=learner.input, output="readout", dt=learner.dt,
        name="diehl_cook_labelled", encoding=dict(learner.encoding),
        readout={"mode": "potential", "task": "classification", "scale": 1.0, "latency_steps": 0},
    )


