"""Pair-based STDP on projections of a :func:`~spikebridge.engines.brian2.api.to_brian2` network.

The rule is the classic trace form (Song, Miller & Abbott 2000; Brian2's own
STDP example), with hard weight bounds:

.. math::
    \\frac{da_{pre}}{dt} = -\\frac{a_{pre}}{\\tau_{pre}},\\quad
    \\frac{da_{post}}{dt} = -\\frac{a_{post}}{\\tau_{post}}

    \\text{pre spike:}\\; a_{pre} \\mathrel{+}= A_+,\\;
        w \\leftarrow \\mathrm{clip}(w + a_{post}, w_{min}, w_{max})

    \\text{post spike:}\\; a_{post} \\mathrel{+}= A_-,\\;
        w \\leftarrow \\mathrm{clip}(w + a_{pre}, w_{min}, w_{max})

with :math:`A_- < 0` (post-before-pre depresses).  Traces are event-driven
(updated only at spikes, exactly).  Only excitatory projections (every weight
``>= 0``) may be made plastic and ``w_min >= 0``, so no synapse changes sign
and Dale's law holds; a mixed-sign projection is refused (convert with
``dale="relay"`` to split it).

A plastic projection replaces the projection's ``Synapses`` object in the
network by a new one with the same name, connections, weights, delays and
post-synaptic effect; weights are copied when :func:`add_stdp` is called, so
change them before that or on the returned object.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ...errors import ValidationError
from .api import Brian2Network

__all__ = ["STDPRule", "PlasticProjection", "add_stdp", "present_samples"]


@dataclass(frozen=True)
class STDPRule:
    """Parameters of pair-based STDP (plain SI floats; weights in the projection's units).

    Parameters
    ----------
    tau_pre, tau_post : float
        Trace time constants in seconds.
    a_plus : float
        Potentiation step (pre-before-post), > 0.
    a_minus : float
        Depression step (post-before-pre), < 0.
    w_min, w_max : float
        Hard weight bounds, ``0 <= w_min < w_max``.
    """

    tau_pre: float = 0.02
    tau_post: float = 0.02
    a_plus: float = 0.01
    a_minus: float = -0.0105
    w_min: float = 0.0
    w_max: float = 1.0

    def __post_init__(self) -> None:
        for name in ("tau_pre", "tau_post", "a_plus", "a_minus", "w_min", "w_max"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValidationError(f"STDPRule.{name}: expected a finite number, got {value!r}", attr=name)
        if self.tau_pre <= 0 or self.tau_post <= 0:
            raise ValidationError("STDPRule: tau_pre and tau_post must be > 0 s", attr="tau_pre")
        if self.a_plus <= 0 or self.a_minus >= 0:
            raise ValidationError("STDPRule: need a_plus > 0 (potentiation) and a_minus < 0 (depression)", attr="a_plus")
        if not 0 <= self.w_min < self.w_max:
            raise ValidationError(
                f"STDPRule: need 0 <= w_min < w_max (excitatory weights keep their sign), got [{self.w_min}, {self.w_max}]",
                attr="w_min",
            )


@dataclass
class PlasticProjection:
    """A projection made plastic by :func:`add_stdp`, and its recorded weight history.

    Attributes
    ----------
    name : str
        The projection (and Brian2 object) name.
    synapses : brian2.Synapses
        The plastic object (``w``, ``apre``, ``apost`` per synapse).
    rule : STDPRule
    pre, post : ndarray of int32
        Per-sample neuron indices of every synapse (Brian2 order).
    copy : ndarray of int32
        Which batch copy each synapse belongs to.
    times : list of float
        Network times (s) of the snapshots taken by :meth:`snapshot`.
    history : list of ndarray
        Weights at those times.
    """

    name: str
    synapses: Any
    rule: STDPRule
    pre: NDArray[np.int32]
    post: NDArray[np.int32]
    copy: NDArray[np.int32]
    times: list[float] = field(default_factory=list)
    history: list[NDArray[np.float32]] = field(default_factory=list)

    @property
    def weights(self) -> NDArray[np.float64]:
        """Current weights, shape (n_synapses,)."""
        return np.asarray(self.synapses.w[:], dtype=np.float64)

    def set_weights(self, w: NDArray[np.float64]) -> None:
        """Replace the weights (clipped to the rule's bounds)."""
        self.synapses.w[:] = np.clip(np.asarray(w, dtype=np.float64), self.rule.w_min, self.rule.w_max)

    def snapshot(self, t: float | None = None) -> None:
        """Append the current weights to :attr:`history` at network time ``t`` (s; default: now)."""
        now = float(self.synapses.clock.t_[:]) if t is None else float(t)
        self.times.append(now)
        self.history.append(self.weights.astype(np.float32))

    def weight_matrix(self, k: int = -1, copy: int = 0) -> NDArray[np.float64]:
        """Dense (n_post, n_pre) weights of batch copy ``copy`` at snapshot ``k`` (default: the last)."""
        w = self.history[k] if self.history else self.weights.astype(np.float32)
        sel = self.copy == copy
        n_pre = int(self.pre.max()) + 1 if self.pre.size else 0
        n_post = int(self.post.max()) + 1 if self.post.size else 0
        m = np.zeros((n_post, n_pre))
        m[self.post[sel], self.pre[sel]] = w[sel]
        return m


def add_stdp(net: Brian2Network, projection: str, rule: STDPRule | None = None) -> PlasticProjection:
    """Make ``projection`` of ``net`` plastic with pair-based STDP.

    Parameters
    ----------
    net : Brian2Network
        From :func:`~spikebridge.engines.brian2.api.to_brian2`, not yet run.
    projection : str
        Name of a projection with a ``Synapses`` object (``net.synapses``)
        whose weights are all ``>= 0``.
    rule : STDPRule, optional

    Returns
    -------
    PlasticProjection
        The new ``Synapses`` (also in ``net.synapses[projection]`` and the
        network) and its weight history (empty; call ``snapshot()``).

    Raises
    ------
    ValidationError
        Unknown projection, a mixed-sign or inhibitory one, weights outside
        the rule's bounds, or a network that has already run.
    """
    import brian2 as b2

    rule = rule if rule is not None else STDPRule()
    if projection not in net.synapses:
        raise ValidationError(
            f"add_stdp: no Synapses named '{projection}'; plastic candidates: {sorted(net.synapses)}", attr="projection"
        )
    if float(net.network.t_) > 0:
        raise ValidationError("add_stdp: the network has already run; make projections plastic before the first run")
    old = net.synapses[projection]
    proj = net.snn.projections[projection]
    w = np.asarray(old.w[:], dtype=np.float64)
    if np.any(w < 0):
        raise ValidationError(
            f"add_stdp: projection '{projection}' has inhibitory (negative) weights; STDP here acts on excitatory "
            f"synapses only (Dale's law) -- convert with dale='relay' and choose an excitatory projection",
            attr="projection",
        )
    if np.any(w > rule.w_max):
        raise ValidationError(
            f"add_stdp: projection '{projection}' has weights up to {w.max():.4g} > w_max={rule.w_max}; raise w_max",
            attr="w_max",
        )
    i = np.asarray(old.i[:], dtype=np.int64)
    j = np.asarray(old.j[:], dtype=np.int64)
    # a scalar for a homogeneous delay, one value per synapse otherwise
    delay = np.atleast_1d(np.asarray(old.delay_[:], dtype=np.float64))
    hetero = delay.size > 1 and bool(np.any(delay != delay[0]))
    # the post-synaptic effect the builder chose (e.g. "v_post += w * int(not_refractory_post)")
    effect = old.pre.code.strip()
    model = "\n".join([
        "w : 1",
        "dapre/dt = -apre/tau_pre : 1 (event-driven)",
        "dapost/dt = -apost/tau_post : 1 (event-driven)",
    ])
    ns = {
        "tau_pre": rule.tau_pre * b2.second, "tau_post": rule.tau_post * b2.second,
        "a_plus": rule.a_plus, "a_minus": rule.a_minus, "w_min": rule.w_min, "w_max": rule.w_max,
    }
    new = b2.Synapses(
        old.source, old.target, model=model,
        on_pre=f"{effect}\napre += a_plus\nw = clip(w + apost, w_min, w_max)",
        on_post="apost += a_minus\nw = clip(w + apre, w_min, w_max)",
        clock=old.clock, name=old.name, namespace=ns, method="exact",
        **({} if hetero else {"delay": float(delay[0]) * b2.second}),
    )
    # keep the builder's schedule slot: a same-step pathway runs between its source's and its
    # target's threshold test (builder module docstring)
    new.pre.when, new.pre.order = old.pre.when, old.pre.order
    net.network.remove(old)
    # the builder's object is replaced before any run: mark it as handled, or Brian2 warns on
    # deletion that it was "never included in a network"
    old._network = net.network.id
    new.connect(i=i, j=j)
    new.w = w
    if hetero:
        new.delay = delay * b2.second
    net.network.add(new)
    net.synapses[projection] = new
    n_pre = net.snn.populations[proj.pre].n
    n_post = net.snn.populations[proj.post].n
    return PlasticProjection(
        name=projection, synapses=new, rule=rule,
        pre=(i % n_pre).astype(np.int32), post=(j % n_post).astype(np.int32), copy=(i // n_pre).astype(np.int32),
    )


def present_samples(
    net: Brian2Network,
    rates: NDArray[np.float64],
    *,
    t_present: float,
    t_rest: float,
    population: str,
    plastic: PlasticProjection | None = None,
    normalise: float | None = None,
    on_sample: Callable[[int, NDArray[np.int64]], None] | None = None,
    snapshot_every: int = 0,
    reset: Mapping[str, Mapping[str, float]] | None = None,
) -> NDArray[np.int64]:
    """Present input rate patterns one after another in a single Brian2 run.

    Every sample is shown for ``t_present`` seconds (the Brian2-drawn Poisson
    input population of ``net`` fires at ``rates[k]``), then the input is
    silent for ``t_rest`` seconds so membranes and traces decay.  The input
    switch, weight normalisation and ``on_sample`` run in a
    ``network_operation`` at sample boundaries, so the whole sequence is one
    ``Network.run`` (one run per sample costs ~1 s of Brian2 overhead here,
    the whole presentation ~0.04 s).  Needs a runtime target (numpy or cython).

    Parameters
    ----------
    net : Brian2Network
        From ``to_brian2(snn)`` without inputs and a ``"poisson"`` encoding.
    rates : ndarray, shape (n_samples, n_input)
        Input rates in hertz.
    t_present, t_rest : float
        Seconds; whole multiples of ``net.dt``.
    population : str
        Population whose spikes during each presentation are counted.
    plastic : PlasticProjection, optional
        Weights snapshotted every ``snapshot_every`` samples (and at the end).
    normalise : float, optional
        Before each sample, scale the plastic weights onto each post neuron
        to sum to this (Diehl & Cook 2015), within the rule's bounds.
    on_sample : callable(k, counts), optional
        Called after sample ``k``'s presentation with its spike counts
        (shape (n,)); may change group variables (e.g. thresholds).
    reset : mapping of population to {variable: value}, optional
        Set before every presentation (e.g. ``{"exc": {"v": 0.0}}``), so each
        sample starts from the state a fresh :func:`spikebridge.simulate` run has.

    Returns
    -------
    ndarray of int64, shape (n_samples, n)
        Spike counts of ``population`` per presentation.
    """
    import brian2 as b2

    if net.input is None or "rate" not in net.input.variables:
        raise ValidationError("present_samples: build the network with to_brian2(snn) (no inputs) and a 'poisson' encoding")
    x = np.asarray(rates, dtype=np.float64)
    n_in = net.input.N // net.batch_size
    if x.ndim != 2 or x.shape[1] != n_in or net.batch_size != 1:
        raise ValidationError(f"present_samples: rates must have shape (n_samples, {n_in}) and the network batch_size 1")
    s_on, s_off = int(round(t_present / net.dt)), int(round(t_rest / net.dt))
    if s_on < 1 or s_off < 0 or abs(s_on * net.dt - t_present) > 1e-9 or abs(s_off * net.dt - t_rest) > 1e-9:
        raise ValidationError("present_samples: t_present and t_rest must be whole multiples of dt (t_present > 0)")
    period = math.gcd(s_on, s_off) if s_off else s_on
    mon = net.spike_monitors[population]
    n_samples = x.shape[0]
    counts = np.zeros((n_samples, net.groups[population].N), dtype=np.int64)
    seen = {"before": np.zeros(net.groups[population].N, dtype=np.int64)}
    t_start = int(round(float(net.network.t_) / net.dt))
    per_sample = s_on + s_off

    def _normalise() -> None:
        assert plastic is not None and normalise is not None
        w = plastic.weights
        total = np.bincount(plastic.post + plastic.copy * (plastic.post.max() + 1), weights=w)
        factor = normalise / np.maximum(total, 1e-12)
        plastic.set_weights(w * factor[plastic.post + plastic.copy * (plastic.post.max() + 1)])

    def _boundary(t: Any) -> None:
        step = int(round(float(t / b2.second) / net.dt)) - t_start
        k, phase = divmod(step, per_sample)
        if phase == 0 and k < n_samples:
            if plastic is not None and normalise is not None:
                _normalise()
            if plastic is not None and snapshot_every and k % snapshot_every == 0:
                plastic.snapshot(float(t / b2.second))
            for pop_name, values in (reset or {}).items():
                for var, value in values.items():
                    setattr(net.groups[pop_name], var, value)
            seen["before"] = np.asarray(mon.count[:], dtype=np.int64).copy()
            net.input.rate = x[k] * b2.Hz
        if phase == s_on or (phase == 0 and k > 0 and s_off == 0):
            done = k if phase == s_on else k - 1
            if done < n_samples:
                now = np.asarray(mon.count[:], dtype=np.int64)
                counts[done] = now - seen["before"]
                net.input.rate = 0 * b2.Hz
                if on_sample is not None:
                    on_sample(done, counts[done])

    op = b2.NetworkOperation(_boundary, dt=period * net.dt * b2.second, when="start", name="spikebridge_present")
    net.network.add(op)
    try:
        # one extra period at the end so the last sample's boundary callback runs
        net.network.run((n_samples * per_sample + (period if s_off == 0 else 0)) * net.dt * b2.second, namespace={})
    finally:
        net.network.remove(op)
    if plastic is not None:
        plastic.snapshot(float(net.network.t_))
    return counts
