"""Brunel's sparsely connected excitatory/inhibitory network of LIF neurons (model A).

Reference
---------
N. Brunel (2000), "Dynamics of sparsely connected networks of excitatory and
inhibitory spiking neurons", *Journal of Computational Neuroscience* 8:183-208,
doi:10.1023/A:1008925309027.

The model
---------
``N_E`` excitatory and ``N_I = N_E / 4`` inhibitory leaky integrate-and-fire
neurons (paper: ``N_E = 10000``, ``N_I = 2500``).  Every neuron receives
exactly ``C_E = ε N_E`` synapses from randomly chosen excitatory neurons and
``C_I = ε N_I`` from inhibitory ones (``ε = 0.1``; no self-connections), plus
``C_E`` external excitatory synapses, each an independent Poisson process of
rate ``ν_ext = η ν_thr`` with :math:`\\nu_{thr} = \\theta / (J C_E \\tau)`, the
external rate that brings the mean input exactly to threshold.  Synapses are
delta currents: a spike makes the post-synaptic potential jump by ``J``
(excitatory) or ``-g J`` (inhibitory) after a delay ``D``:

.. math:: \\tau \\frac{dV_i}{dt} = -V_i + R I_i(t),\\qquad
          R I_i(t) = \\tau \\sum_j J_{ij} \\sum_k \\delta(t - t_j^k - D)

with threshold ``θ = 20 mV``, reset to ``V_r = 10 mV``, refractory period
``τ_rp = 2 ms``, ``τ = 20 ms``, ``D = 1.5 ms``, ``J = 0.1 mV``.  Here the
membrane is in units of the threshold (``v = V / θ``): threshold 1, reset
0.5, ``J / θ = 0.005``.

The regime is set by ``g`` (relative inhibition) and ``η`` (external drive).
``g = 5, η = 2`` is the asynchronous irregular (AI) state of the paper's
Fig. 8C: neurons fire irregularly (CV of inter-spike intervals near or above
0.8, in the paper ~1) at a few tens of hertz while the population activity
stays nearly constant.  ``g = 3, η = 2`` is synchronous regular (SR, Fig. 8A),
``g = 6, η = 4`` synchronous irregular with fast oscillations (Fig. 8B),
``g = 4.5, η = 0.9`` synchronous irregular with slow oscillations (Fig. 8D).

Scaling down
------------
The default ``scale=0.2`` builds ``N_E = 2000``, ``N_I = 500`` (``C_E =
200``, ``C_I = 50``, 625 000 synapses): 1 s of network time takes ~10-20 s
with Brian2's cython target or the numpy reference simulator on 2 cores.  With
``scale_J=True`` the synaptic efficacy is multiplied by ``1000 / C_E`` so that
``J C_E`` (the mean recurrent and external input, hence ``ν_thr`` and the
mean-field balance) equals the paper's; the input fluctuations grow by
``sqrt(1000 / C_E)``, which keeps the network irregular (more so, if anything).
Rates then stay in the AI range of the full model and close to the
mean-field prediction (:func:`mean_field_rate`: 38 Hz for the paper's
network, 49 Hz at ``scale=0.2``, 60 Hz at ``scale=0.1``);
:func:`firing_statistics` measures them.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, cast

import numpy as np
from numpy.typing import NDArray

from spikebridge.errors import ValidationError

if TYPE_CHECKING:
    from spikebridge.snn.network import SpikingNetwork
    from spikebridge.store.record import SpikeRecord

__all__ = ["brunel_network", "firing_statistics", "mean_field_rate", "REFERENCE", "PAPER_C_E"]

REFERENCE = (
    "N. Brunel (2000), Dynamics of sparsely connected networks of excitatory and inhibitory spiking neurons, "
    "J. Comput. Neurosci. 8:183-208, doi:10.1023/A:1008925309027"
)
#: excitatory in-degree of the paper's network (ε N_E = 0.1 × 10000)
PAPER_C_E = 1000


def _fixed_indegree(
    rng: np.random.Generator, n_pre: int, n_post: int, indegree: int, *, same: bool
) -> tuple[NDArray[np.int32], NDArray[np.int32]]:
    """``indegree`` distinct random pre neurons for every post neuron (no autapse when ``same``)."""
    pool = n_pre - 1 if same else n_pre
    if indegree > pool:
        raise ValidationError(
            f"brunel_network: in-degree {indegree} exceeds the {pool} possible pre-synaptic neurons; lower epsilon",
            attr="epsilon",
        )
    pre = np.empty((n_post, indegree), dtype=np.int32)
    for i in range(n_post):
        pick = rng.choice(pool, size=indegree, replace=False)
        if same:
            pick[pick >= i] += 1  # skip neuron i itself
        pre[i] = pick
    post = np.repeat(np.arange(n_post, dtype=np.int32), indegree)
    return pre.ravel(), post


def brunel_network(
    *,
    scale: float = 0.2,
    n_exc: int | None = None,
    n_inh: int | None = None,
    g: float = 5.0,
    eta: float = 2.0,
    J: float = 0.1e-3,
    theta: float = 20e-3,
    V_r: float = 10e-3,
    epsilon: float = 0.1,
    D: float = 1.5e-3,
    tau_m: float = 20e-3,
    t_ref: float = 2e-3,
    scale_J: bool = True,
    dt: float = 1e-4,
    seed: int = 0,
    name: str = "brunel",
) -> "SpikingNetwork":
    """Build Brunel's (2000) sparse random E/I network (model A) as a SpikingNetwork.

    Parameters
    ----------
    scale : float
        Size relative to the paper's ``N_E = 10000``, ``N_I = 2500``.
    n_exc, n_inh : int, optional
        Explicit population sizes (override ``scale``; ``n_inh`` defaults to ``n_exc // 4``).
    g : float
        Relative strength of inhibition (inhibitory weight is ``-g J``).
    eta : float
        External rate relative to the threshold rate, ``ν_ext = η ν_thr``.
    J : float
        Excitatory PSP amplitude in volts (paper: 0.1 mV for ``C_E = 1000``).
    theta, V_r : float
        Threshold and reset potential in volts (the membrane is stored in units of ``theta``).
    epsilon : float
        Connection probability; each neuron has ``C_E = ε N_E``, ``C_I = ε N_I`` inputs.
    D : float
        Synaptic delay in seconds.
    tau_m, t_ref : float
        Membrane time constant and refractory period in seconds.
    scale_J : bool
        Multiply ``J`` by ``1000 / C_E`` so that ``J C_E`` equals the paper's
        (see the module docstring); False uses ``J`` as given.
    dt : float
        Time step in seconds the network is meant for (the paper's 0.1 ms).
    seed : int
        Seed of the connectivity and of the random initial potentials.
    name : str

    Returns
    -------
    SpikingNetwork
        Populations ``E`` (sign ``"excitatory"``) and ``I`` (``"inhibitory"``),
        model ``"lif"`` with external Poisson drive in ``params``
        (``poisson_n``, ``poisson_rate`` Hz, ``poisson_weight``), projections
        ``E_E``, ``E_I``, ``I_E``, ``I_I`` (kind ``"recurrent"``; ``X_Y`` is
        X → Y), no input or output population; ``metadata["brunel"]`` holds the
        parameters, ``nu_thr`` and ``nu_ext`` (Hz) and the reference.

    Raises
    ------
    ValidationError
        Non-positive sizes or time constants, ``epsilon`` outside (0, 1].

    Examples
    --------
    >>> net = brunel_network(scale=0.05, seed=1)
    >>> net.populations["E"].n, net.populations["I"].n, net.projections["E_E"].n_synapses
    (500, 125, 25000)
    >>> round(net.metadata["brunel"]["nu_ext"], 6)
    20.0
    """
    from spikebridge.snn.network import Population, Projection, SpikingNetwork

    for what, value in (("scale", scale), ("theta", theta), ("tau_m", tau_m), ("D", D), ("dt", dt), ("J", J)):
        if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
            raise ValidationError(f"brunel_network: {what} must be a positive number, got {value!r}", attr=what)
    if not (0 < epsilon <= 1):
        raise ValidationError(f"brunel_network: epsilon must be in (0, 1], got {epsilon!r}", attr="epsilon")
    if g < 0 or eta < 0 or t_ref < 0:
        raise ValidationError(f"brunel_network: g, eta and t_ref must be >= 0, got {g}, {eta}, {t_ref}", attr="g")
    if not (0 <= V_r < theta):
        raise ValidationError(f"brunel_network: V_r must be in [0, theta), got {V_r}", attr="V_r")
    n_e = int(round(10000 * scale)) if n_exc is None else int(n_exc)
    n_i = (n_e // 4 if n_exc is not None else int(round(2500 * scale))) if n_inh is None else int(n_inh)
    if n_e < 2 or n_i < 2:
        raise ValidationError(f"brunel_network: need at least 2 neurons per population, got N_E={n_e}, N_I={n_i}", attr="scale")
    c_e = max(int(round(epsilon * n_e)), 1)
    c_i = max(int(round(epsilon * n_i)), 1)
    j_eff = J * (PAPER_C_E / c_e if scale_J else 1.0)
    w = j_eff / theta  # PSP in threshold units
    nu_thr = theta / (j_eff * c_e * tau_m)
    nu_ext = eta * nu_thr
    rng = np.random.default_rng(seed)
    common: dict[str, Any] = dict(
        model="lif", threshold=1.0, reset="value", v_reset=V_r / theta, v_rest=0.0, tau_mem=tau_m, refractory=t_ref,
        params={"poisson_n": c_e, "poisson_rate": nu_ext, "poisson_weight": w},
    )
    # random initial potentials below threshold, so the network does not start in lock-step
    pops = [
        Population(name="E", n=n_e, sign="excitatory", v_init=rng.uniform(0.0, 1.0, n_e), **common),
        Population(name="I", n=n_i, sign="inhibitory", v_init=rng.uniform(0.0, 1.0, n_i), **common),
    ]
    projs = []
    for pre, n_pre, c, weight in (("E", n_e, c_e, w), ("I", n_i, c_i, -g * w)):
        for post, n_post in (("E", n_e), ("I", n_i)):
            pre_i, post_i = _fixed_indegree(rng, n_pre, n_post, c, same=pre == post)
            projs.append(
                Projection(
                    name=f"{pre}_{post}", pre=pre, post=post,
                    # Projection converts the int32 indices to int64
                    pre_index=cast("NDArray[np.int64]", pre_i), post_index=cast("NDArray[np.int64]", post_i),
                    weight=np.full(pre_i.size, weight), delay=D, kind="recurrent",
                )
            )
    meta = {
        "model": "brunel2000_A",
        "reference": REFERENCE,
        "N_E": n_e, "N_I": n_i, "C_E": c_e, "C_I": c_i, "g": g, "eta": eta, "J": j_eff, "J_paper": J,
        "theta": theta, "V_r": V_r, "epsilon": epsilon, "D": D, "tau_m": tau_m, "t_ref": t_ref,
        "scale_J": scale_J, "nu_thr": nu_thr, "nu_ext": nu_ext, "seed": seed,
    }
    return SpikingNetwork(pops, projs, dt=dt, name=name, metadata={"brunel": meta})


def mean_field_rate(snn: "SpikingNetwork") -> float:
    r"""Stationary rate (Hz) of a :func:`brunel_network` from Brunel's mean-field theory.

    Solves the self-consistency of the paper's eqs. (4)-(6) and (21)
    (Amit & Brunel 1997): with :math:`\gamma = C_I / C_E`,

    .. math:: \mu = C_E J \tau (\nu_{ext} + \nu (1 - g\gamma)),\quad
              \sigma^2 = C_E J^2 \tau (\nu_{ext} + \nu (1 + g^2\gamma)),

    .. math:: \frac{1}{\nu} = \tau_{rp} + \tau\sqrt{\pi}
              \int_{(V_r-\mu)/\sigma}^{(\theta-\mu)/\sigma} e^{u^2}(1 + \mathrm{erf}\,u)\,du .

    It describes the asynchronous state; a simulation in the AI regime should
    come close, synchronous regimes need not.

    Parameters
    ----------
    snn : SpikingNetwork
        Built by :func:`brunel_network` (its ``metadata["brunel"]`` is read).

    Returns
    -------
    float
        Rate in hertz.

    Examples
    --------
    >>> round(mean_field_rate(brunel_network(scale=0.1, seed=0)), 1)
    60.4
    """
    from scipy import integrate, optimize, special

    try:
        m = snn.metadata["brunel"]
    except KeyError:
        raise ValidationError("mean_field_rate: the network was not built by brunel_network (no metadata['brunel'])") from None
    J, ce, tau, th, vr = m["J"], m["C_E"], m["tau_m"], m["theta"], m["V_r"]
    gamma = m["C_I"] / ce
    g, nu_ext, t_ref = m["g"], m["nu_ext"], m["t_ref"]

    def siegert(nu: float) -> float:
        mu = ce * J * tau * (nu_ext + nu * (1 - g * gamma))
        sigma = math.sqrt(ce * J * J * tau * (nu_ext + nu * (1 + g * g * gamma)))
        # erfcx(-u) = exp(u^2) (1 + erf u), without overflow
        integral, _ = integrate.quad(lambda u: special.erfcx(-u), (vr - mu) / sigma, (th - mu) / sigma)
        return 1.0 / (t_ref + tau * math.sqrt(math.pi) * integral)

    upper = 1.0 / t_ref if t_ref > 0 else 1e4
    return float(optimize.brentq(lambda nu: siegert(nu) - nu, 1e-6, upper - 1e-9))


def firing_statistics(
    record: "SpikeRecord",
    snn: "SpikingNetwork | None" = None,
    *,
    t_start: float = 0.0,
    sample: int = 0,
    bin_size: float = 1e-3,
    min_spikes: int = 3,
) -> dict[str, dict[str, float]]:
    """Rates, ISI irregularity and population synchrony of every recorded population.

    Parameters
    ----------
    record : SpikeRecord
        From :func:`spikebridge.run.simulate.simulate` with
        ``SimulationConfig(record=("all",))`` (or the populations wanted).
    snn : SpikingNetwork, optional
        Restrict to its spiking populations (others in the record are ignored).
    t_start : float
        Discard spikes before this time (s), e.g. the initial transient.
    sample : int
        Which sample of the record.
    bin_size : float
        Bin (s) of the population spike count used for ``pop_fano``.
    min_spikes : int
        Neurons with fewer spikes are left out of the CV mean.

    Returns
    -------
    dict of str to dict
        Per population: ``rate`` (mean rate, Hz), ``cv_isi`` (mean over
        neurons with at least ``min_spikes`` spikes of std/mean of their
        inter-spike intervals; NaN if none), ``n_cv`` (neurons in that mean),
        ``active`` (fraction of neurons that spiked), ``fano`` (mean over
        neurons of the Fano factor of their spike counts in 50 ms windows) and
        ``pop_fano`` (variance / mean of the population spike count per
        ``bin_size`` bin: ~1 for independent Poisson neurons, much larger when
        neurons fire in synchrony; it grows with ``n`` for a fixed degree of
        synchrony) and ``synchrony`` (Golomb's χ: standard deviation of the
        population-mean activity over the mean single-neuron standard
        deviation, both from counts per ``bin_size`` bin; about
        ``1/sqrt(n)`` for independent neurons, 1 for full synchrony).

    Raises
    ------
    ValidationError
        The record holds no spikes for a population of ``snn``, or the window is empty.
    """
    duration = record.n_steps * record.dt - t_start
    if duration <= 0:
        raise ValidationError(
            f"firing_statistics: t_start={t_start} s leaves no time of the {record.n_steps * record.dt} s simulated",
            attr="t_start",
        )
    names = list(record.spikes)
    if snn is not None:
        wanted = [n for n, p in snn.populations.items() if p.is_spiking and p.model != "input"]
        missing = [n for n in wanted if n not in record.spikes]
        if missing:
            raise ValidationError(
                f"firing_statistics: the record has no spike trains for {missing}; simulate with "
                "SimulationConfig(record=('all',))",
                attr="record",
            )
        names = wanted
    k0 = int(round(t_start / record.dt))
    n_bins = max(int(round(duration / bin_size)), 1)
    win = max(int(round(0.05 / record.dt)), 1)
    out: dict[str, dict[str, float]] = {}
    for name in names:
        st = record.spikes[name]
        neuron_k, t_k = st.for_sample(sample)
        neuron, t_step = np.asarray(neuron_k), np.asarray(t_k)
        step = np.rint(t_step / record.dt).astype(np.int64)
        keep = step >= k0
        neuron, step = neuron[keep], step[keep] - k0
        n = st.n_neurons
        counts = np.bincount(neuron, minlength=n)
        # ISIs per neuron: spikes are sorted by (step, neuron); reorder by neuron, then time
        order = np.lexsort((step, neuron))
        nn, ss = neuron[order], step[order]
        same = nn[1:] == nn[:-1]
        isi = (ss[1:] - ss[:-1])[same].astype(np.float64)
        owner = nn[1:][same]
        m1 = np.bincount(owner, weights=isi, minlength=n)
        m2 = np.bincount(owner, weights=isi**2, minlength=n)
        k = np.bincount(owner, minlength=n).astype(np.float64)
        ok = counts >= max(min_spikes, 2)
        mean = np.divide(m1, k, out=np.zeros(n), where=k > 0)
        var = np.divide(m2, k, out=np.zeros(n), where=k > 0) - mean**2
        cv = np.sqrt(np.maximum(var[ok], 0.0)) / mean[ok]
        # spike counts in 50 ms windows per neuron
        n_win = max(int((record.n_steps - k0) // win), 1)
        wc = np.zeros((n, n_win))
        w_idx = np.minimum(step // win, n_win - 1)
        np.add.at(wc, (neuron, w_idx), 1.0)
        wmean = wc.mean(axis=1)
        fano_n = np.divide(wc.var(axis=1), wmean, out=np.full(n, np.nan), where=wmean > 0)
        b_idx = np.minimum((step * record.dt / bin_size).astype(np.int64), n_bins - 1)
        pop = np.bincount(b_idx, minlength=n_bins)
        # Golomb's synchrony chi: std of the population-mean activity over the mean single-neuron std,
        # from per-(neuron, bin) counts without a dense (n, n_bins) matrix
        keys, c_nb = np.unique(neuron.astype(np.int64) * n_bins + b_idx, return_counts=True)
        nb_owner = keys // n_bins
        sq = np.bincount(nb_owner, weights=c_nb.astype(np.float64) ** 2, minlength=n)
        var_i = sq / n_bins - (counts / n_bins) ** 2
        var_pop = float(np.var(pop / n))
        chi = math.sqrt(var_pop / float(np.mean(var_i))) if np.mean(var_i) > 0 else float("nan")
        out[name] = {
            "rate": float(counts.sum() / (n * duration)),
            "cv_isi": float(np.mean(cv)) if cv.size else float("nan"),
            "n_cv": int(cv.size),
            "active": float(np.mean(counts > 0)),
            "fano": float(np.nanmean(fano_n)) if np.any(np.isfinite(fano_n)) else float("nan"),
            "pop_fano": float(pop.var() / pop.mean()) if pop.mean() > 0 else float("nan"),
            "synchrony": chi,
        }
    return out
