"""What a simulation needs, decided once in numpy before any engine object exists.

:func:`compile` turns a network and a :class:`~spikebridge.config.SimulationConfig` into one frozen
:class:`Plan`: which populations are simulated, which projections are folded into input currents,
which deliver within the step, the update order, the longest delay in steps and the recorded
populations.  Every engine (reference, Brian2 builder, tensor engine, exported script) and every
memory estimate reads these from the plan instead of re-deriving them from the network.

:class:`InputPlan` is the per-sample side: inputs and encodings, read the same way by every engine:

* ``"current"`` encoding: projections out of the input population are folded
  into a constant per-neuron current of their post population,
  ``I_in = W x / scale / snn.dt`` (threshold units per second); the input
  population then has no neurons in the simulation.
* ``"poisson"`` / ``"regular"``: the input population fires with
  ``rate = clip(x / scale, 0, 1) × max_rate`` hertz (negative inputs cannot be
  rates and are clipped to 0).
* ``"spikes"``: the inputs *are* rasters, shape
  ``(n_samples, n_raster_steps, *input_shape)``, one row per time step (no
  input after the raster ends).  The value ``x[s, k, i]`` is the area of a
  pulse of input neuron ``i`` in step ``k``, in units of one spike:

  - a raster of only 0 and 1 is a spike raster: neuron ``i`` fires in step
    ``k`` where ``x[s, k, i] == 1`` (``InputPlan.raster`` is bool);
  - any other real-valued raster is an *input current* held for one step
    (area ``x dt`` in the NIR "step" convention, i.e. ``x`` spikes' worth):
    where ``x[s, k, i] != 0`` the input neuron emits an event and every
    synapse adds ``w * x[s, k, i]`` instead of ``w`` (``InputPlan.raster`` is
    float64, ``InputPlan.graded`` True).  This is how snnTorch drives a first
    layer with analog data (``mem = beta mem + W x``); delays and the
    one-step latency are those of spikes.  A 0/1 raster gives the same result
    either way.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ..snn.network import SpikingNetwork
from ..errors import ValidationError

if TYPE_CHECKING:
    from ..config import SimulationConfig

__all__ = ["Plan", "compile", "InputPlan", "InputCurrents", "prepare_inputs", "sequence_window_steps", "window_floors", "window_wraps", "checked_plan", "draw_poisson", "folded_projections", "active_populations", "max_delay_steps",
           "same_step_projections", "same_step_targets", "layer_major_blocker"]


def folded_projections(snn: SpikingNetwork) -> set[str]:
    """Names of projections replaced by a constant current (current-encoded input)."""
    if snn.input is None or snn.encoding.get("kind", "current") != "current":
        return set()
    return {p.name for p in snn.outgoing(snn.input)}


def active_populations(snn: SpikingNetwork) -> list[str]:
    """Populations that exist in the simulation (a current-encoded input has no neurons)."""
    skip = snn.input if (snn.input is not None and snn.encoding.get("kind", "current") == "current") else None
    return [name for name in snn.populations if name != skip]


def same_step_projections(snn: SpikingNetwork, dt: float) -> set[str]:
    """Simulated projections with a synapse of zero delay at time step ``dt`` (seconds): they deliver
    within the step (only in networks with ``min_delay_steps=0``)."""
    if snn.min_delay_steps:
        return set()
    folded = folded_projections(snn)
    return {
        p.name for p in snn.projections.values()
        if p.name not in folded and p.n_synapses and int(np.min(snn.projection_steps(p, dt))) == 0
    }


def same_step_targets(snn: SpikingNetwork, dt: float) -> dict[str, list[tuple[str, str]]]:
    """Per population, the ``(population, target variable)`` pairs that same-step projections write
    to (what an engine must add before that population's threshold test; empty lists when
    ``min_delay_steps=1``)."""
    same = same_step_projections(snn, dt)
    keys = {(p.post, p.target) for p in snn.projections.values() if p.name in same}
    return {name: sorted(k for k in keys if k[0] == name) for name in snn.populations}


def sequence_window_steps(snn: SpikingNetwork, dt: float) -> int:
    """Steps per sequence element of a sequence network (``encoding["window"]`` seconds at ``dt``), else 0."""
    window = snn.encoding.get("window")
    if not snn.encoding.get("sequence_length") or window is None:
        return 0
    return max(1, int(round(float(window) / dt)))


def window_floors(snn: SpikingNetwork, dt: float) -> dict[str, tuple[int, float]]:
    """Populations whose membrane is floored at the start of every window: name -> (window steps, floor).

    A converted ReLU RNN sets ``params["window"]`` (seconds) and ``params["window_floor"]``
    (membrane units) on its hidden populations: at the start of every step ``k`` with
    ``k % window_steps == 0`` (step 0 included), before the state update,
    ``v = max(v, floor)``.  A ReLU forgets a negative drive at the end of its element; the
    floor is how the membrane forgets it (see :mod:`spikebridge.conversion.sequence`).
    """
    out: dict[str, tuple[int, float]] = {}
    for name, pop in snn.populations.items():
        p = pop.params
        if p.get("window") is not None and p.get("window_floor") is not None:
            out[name] = (max(1, int(round(float(p["window"]) / dt))), float(p["window_floor"]))
    return out


def window_wraps(snn: SpikingNetwork, dt: float) -> dict[str, tuple[int, float]]:
    """Populations whose negative membrane wraps into ``[0, θ)`` at every window start: name -> (window steps, θ).

    A converted ReLU RNN with several neurons per unit (``ConversionConfig.neurons_per_unit``) sets
    ``params["window"]`` (seconds) and ``params["window_wrap"] = True`` on its hidden populations:
    at the start of every step ``k`` with ``k % window_steps == 0``, before the state update, a
    negative ``v`` becomes ``v - θ ⌊v/θ⌋`` (the debt in whole spikes is dropped, the fraction of a
    spike kept, so the staggered residues of a unit's neurons stay staggered; see
    :mod:`spikebridge.conversion.sequence`).  Every engine computes exactly this expression.

    Raises
    ------
    ValidationError
        A wrapping population whose threshold is not one positive number.
    """
    out: dict[str, tuple[int, float]] = {}
    for name, pop in snn.populations.items():
        p = pop.params
        if p.get("window") is not None and p.get("window_wrap"):
            theta = np.asarray(pop.threshold, dtype=np.float64)
            if theta.ndim or not float(theta) > 0:
                raise ValidationError(f"population '{name}': window_wrap needs one positive threshold", attr="params")
            out[name] = (max(1, int(round(float(p["window"]) / dt))), float(theta))
    return out


def max_delay_steps(snn: SpikingNetwork, dt: float) -> int:
    """Largest delay in steps over the simulated projections (1 without any)."""
    folded = folded_projections(snn)
    steps = [int(np.max(snn.projection_steps(p, dt))) for p in snn.projections.values() if p.name not in folded and p.n_synapses]
    return max(steps, default=1)


def layer_major_blocker(snn: SpikingNetwork, dt: float) -> str | None:
    """Why ``snn`` cannot run layer by layer at time step ``dt`` (seconds); None when it can.

    The tensor engine may simulate a population for a block of steps before the next one (the
    synaptic input of the whole block as one batched product, then a scan of the neuron updates)
    when doing so changes no arithmetic: the simulated projections form no cycle (any delay), no
    population draws Poisson drive (its random stream is drawn step by step across populations),
    emits bursts or negative spikes, or is floored at window starts, and the network is not a sequence network.
    """
    if sequence_window_steps(snn, dt) or window_floors(snn, dt) or window_wraps(snn, dt):
        return "a sequence network (inputs and floors change per window)"
    active = set(active_populations(snn))
    for name in active:
        pop = snn.populations[name]
        if pop.params.get("poisson_n"):
            return f"population '{name}' has Poisson drive"
        if pop.burst > 1:
            return f"population '{name}' emits bursts"
        if pop.signed:
            return f"population '{name}' emits negative spikes"
    import networkx as nx

    folded = folded_projections(snn)
    graph = nx.DiGraph()
    graph.add_nodes_from(sorted(active))
    graph.add_edges_from(
        (p.pre, p.post) for p in snn.projections.values()
        if p.name not in folded and p.n_synapses and p.pre in active and p.post in active
    )
    # a cycle of any delay (recurrent or lagged projections): step by step only
    try:
        cycle = nx.find_cycle(graph)
    except nx.NetworkXNoCycle:
        return None
    return f"projections form a cycle through '{cycle[0][0]}'"


@dataclass(frozen=True, eq=False)
class Plan:
    """How a network runs: decided once per run by :func:`compile`, read by every engine and estimate.

    Attributes
    ----------
    snn : SpikingNetwork
    dt : float
        Time step in seconds.
    n_steps : int
        Steps per sample.
    record : frozenset of str
        Populations whose spike trains are recorded (``"all"`` resolved to :attr:`active`).
    active : tuple of str
        Populations with neurons in the simulation, in the network's order (a current-encoded input
        has none: its projections are folded into currents).
    folded : frozenset of str
        Projections replaced by a constant input current.
    same_step : frozenset of str
        Simulated projections with a synapse of zero steps: delivered within the step.
    order : tuple of str
        Update order of all populations (:meth:`~spikebridge.snn.network.SpikingNetwork.update_order`:
        a topological order of the same-step projections); engines skip the inactive ones.
    inbound : mapping of str to tuple of (str, str)
        Per population, the ``(population, target variable)`` pairs same-step projections write to
        (what an engine adds before that population's threshold test); read-only by convention.
    max_delay_steps : int
        Longest delay in steps over the simulated projections (1 without any).
    floors : mapping of str to (int, float)
        Populations floored at the start of every window of a sequence network:
        name -> (window steps, floor) (:func:`window_floors`; empty for other networks).
    wraps : mapping of str to (int, float)
        Populations whose negative membrane wraps into ``[0, θ)`` at every window start:
        name -> (window steps, θ) (:func:`window_wraps`; applied after the floors).
    layer_major : bool
        The network may run layer by layer (:func:`layer_major_blocker` found nothing): the tensor
        engine on numpy then simulates each population for a block of steps at a time.
    precision : str
        ``SimulationConfig.precision``: ``"float64"`` (exact) or ``"float32"`` (the tensor engine's
        opt-in single-precision arithmetic).
    """

    snn: SpikingNetwork
    dt: float
    n_steps: int
    record: frozenset[str]
    active: tuple[str, ...]
    folded: frozenset[str]
    same_step: frozenset[str]
    order: tuple[str, ...]
    inbound: Mapping[str, tuple[tuple[str, str], ...]]
    max_delay_steps: int
    floors: Mapping[str, tuple[int, float]]
    layer_major: bool = False
    wraps: Mapping[str, tuple[int, float]] = field(default_factory=dict)
    precision: str = "float64"

    def simulated(self) -> list[Any]:
        """The projections that exist in the simulation (not folded, at least one synapse), in order."""
        return [p for p in self.snn.projections.values() if p.name not in self.folded and p.n_synapses]


def compile(snn: SpikingNetwork, config: "SimulationConfig | None" = None, *, dt: float | None = None,
            n_steps: int | None = None, record: tuple[str, ...] | None = None) -> Plan:
    """Decide once how ``snn`` runs under ``config``.

    Parameters
    ----------
    snn : SpikingNetwork
    config : SimulationConfig, optional
        ``dt`` (default ``snn.dt``), ``n_steps`` and ``record`` come from it.
    dt, n_steps, record : optional
        Override the config's (engines called without a config: the reference simulator, scripts).

    Returns
    -------
    Plan

    Raises
    ------
    ValidationError
        Unknown recorded populations, or a zero-delay cycle (named).

    Examples
    --------
    >>> from spikebridge.snn.network import Population, Projection, SpikingNetwork
    >>> net = SpikingNetwork([Population(name="x", n=2, model="input", role="input"),
    ...                       Population(name="h", n=1, model="if", role="output")],
    ...                      [Projection(name="p", pre="x", post="h", pre_index=[0, 1], post_index=[0, 0],
    ...                                  weight=[1.0, 1.0], delay=0.0)],
    ...                      input="x", output="h", min_delay_steps=0)
    >>> plan = compile(net, n_steps=8)
    >>> plan.active, sorted(plan.folded), plan.max_delay_steps
    (('h',), ['p'], 1)
    """
    dt = float(dt if dt is not None else (config.dt if config is not None and config.dt is not None else snn.dt))
    steps = int(n_steps if n_steps is not None else (config.n_steps if config is not None else 128))
    rec = tuple(record if record is not None else (config.record if config is not None else ()))
    unknown = set(rec) - set(snn.populations) - {"all"}
    if unknown:
        raise ValidationError(
            f"SimulationConfig.record: unknown population(s) {sorted(unknown)}; populations: {list(snn.populations)}",
            attr="record",
        )
    active = tuple(active_populations(snn))
    folded = frozenset(folded_projections(snn))
    same = frozenset(same_step_projections(snn, dt))
    keys = {(p.post, p.target) for p in snn.projections.values() if p.name in same}
    inbound = {name: tuple(sorted(k for k in keys if k[0] == name)) for name in snn.populations}
    order = tuple(snn.update_order(dt))
    return Plan(
        snn=snn, dt=dt, n_steps=steps, record=frozenset(active if "all" in rec else rec), active=active, folded=folded,
        same_step=same, order=order, inbound=inbound, max_delay_steps=max_delay_steps(snn, dt),
        floors=window_floors(snn, dt), layer_major=layer_major_blocker(snn, dt) is None, wraps=window_wraps(snn, dt),
        precision=getattr(config, "precision", "float64"),
    )


#: samples per chunk in which :class:`InputCurrents` applies an input's first projections.  Chunks
#: start at multiples of it (absolute sample indices), so every engine, batch size, batch part and
#: resume point computes a sample's current in the same chunk, with the same values; and a chunk's
#: temporaries (a convolution's unfolded windows) are small enough for the allocator to reuse,
#: where the whole input's (MNIST LeNet, 1,000 images: 115 + 2 × 74 MB) were fresh pages every run
CURRENT_CHUNK = 64


class InputCurrents(Mapping[str, NDArray[np.float64]]):
    """The constant input currents of current-encoded samples ``lo:hi``, computed when first read.

    A population's currents are ``Σ_links (x @ Wᵀ) / dt`` over the input's projections onto it (a
    convolution applied with its kernel), in threshold units per second, shape
    ``(hi - lo, n_post)``; computed in chunks of :data:`CURRENT_CHUNK` samples aligned to absolute
    sample indices, once per population and selection.  A batch reads only its own samples' chunks.

    Parameters
    ----------
    xs : ndarray, shape (n_rows, n_in), float64
        Samples ``base .. base + n_rows - 1`` of the input, divided by the encoding's scale
        (every chunk that meets ``lo:hi``).
    links : list of (str, operator or None, ndarray or None, int)
        Per projection of the input population, in order: its post population, its shared
        kernel (``SharedKernel``) or None, else its dense ``(n_post, n_in)`` weights, and ``n_post``.
    dt : float
        The network's time step in seconds.
    lo, hi : int
        The samples this mapping holds, absolute indices (default all of ``xs``).
    base : int
        Absolute index of ``xs``'s first row.
    n_all : int or None
        Samples of the whole input (default ``base + len(xs)``): where the last chunk ends.
    """

    def __init__(self, xs: NDArray[np.float64], links: list[tuple[str, Any, NDArray[np.float64] | None, int]], dt: float,
                 lo: int = 0, hi: int | None = None, base: int = 0, n_all: int | None = None) -> None:
        self._xs, self._links, self._dt = xs, links, float(dt)
        self._base = int(base)
        self._n_all = int(base + xs.shape[0] if n_all is None else n_all)
        self._lo = int(lo)
        self._hi = int(base + xs.shape[0] if hi is None else hi)
        self._names = list(dict.fromkeys(post for post, _, _, _ in links))
        self._done: dict[str, NDArray[np.float64]] = {}

    def __getitem__(self, name: str) -> NDArray[np.float64]:
        if name not in self._done:
            if name not in self._names:
                raise KeyError(name)
            self._done[name] = self._compute(name)
        return self._done[name]

    def __iter__(self) -> Any:
        return iter(self._names)

    def __len__(self) -> int:
        return len(self._names)

    def __contains__(self, name: object) -> bool:
        return name in self._names

    def select(self, start: int, stop: int) -> "InputCurrents":
        """Samples ``start:stop`` of this selection (clipped to it); currents already computed are sliced.

        The selection keeps only the input rows of its own chunks, so a batch sent to a worker
        carries its samples, not the whole input.
        """
        lo = min(self._lo + max(0, int(start)), self._hi)
        hi = max(lo, min(self._lo + int(stop), self._hi))
        c = CURRENT_CHUNK
        c_lo = (lo // c) * c
        c_hi = c_lo if hi == lo else min(-(-hi // c) * c, self._n_all)
        sub = InputCurrents(self._xs[c_lo - self._base : c_hi - self._base], self._links, self._dt, lo, hi, c_lo, self._n_all)
        for name, cur in self._done.items():
            sub._done[name] = cur[lo - self._lo : hi - self._lo]
        return sub

    def _compute(self, name: str) -> NDArray[np.float64]:
        n_post = next(n for post, _, _, n in self._links if post == name)
        out = np.empty((self._hi - self._lo, n_post))
        c = CURRENT_CHUNK
        for c0 in range((self._lo // c) * c, self._hi, c):
            c1 = min(c0 + c, self._n_all)
            x = self._xs[c0 - self._base : c1 - self._base]
            block: NDArray[np.float64] | None = None
            for post, op, w, _ in self._links:
                if post != name:
                    continue
                drive = op.apply(x) if op is not None else x @ w.T  # type: ignore[union-attr]
                # per second of the network's own dt: with a finer simulation step the drive per
                # step shrinks like the biases do, so rates in hertz do not depend on the step.  In
                # place, with the values of ``0.0 + drive / dt`` (x + 0.0 turns -0.0 into 0.0 as
                # 0.0 + x does)
                cur = np.divide(drive, self._dt, out=drive)
                block = np.add(cur, 0.0, out=cur) if block is None else np.add(block, cur, out=block)
            a, b = max(c0, self._lo), min(c1, self._hi)
            out[a - self._lo : b - self._lo] = block[a - c0 : b - c0]  # type: ignore[index]
        return out


@dataclass
class InputPlan:
    """Per-sample input values of a batch.

    Attributes
    ----------
    n_samples : int
    currents : mapping of str to ndarray (n_samples, n_post)
        Constant input current of populations fed by a current-encoded input,
        in threshold units per second (an :class:`InputCurrents`, computed when read, for
        current-encoded samples).  For a sequence network (``window_steps > 0``)
        shape (n_samples, T, n_post): element ``t`` drives steps ``t*window_steps``
        to ``(t+1)*window_steps - 1``, and no current flows after the last element.
    rates : ndarray (n_samples, n_in) or None
        Input firing rates in hertz for spike encodings.
    raster : ndarray (n_samples, n_raster_steps, n_in) or None
        Input spikes per step (``"spikes"`` encoding): bool for spike rasters,
        float64 pulse areas (in spikes) for analog input.
    kind : str
        The encoding.
    """

    n_samples: int
    currents: Mapping[str, NDArray[np.float64]]
    rates: NDArray[np.float64] | None
    kind: str
    raster: NDArray[Any] | None = None
    window_steps: int = 0

    def current_at(self, name: str, k: int) -> NDArray[np.float64] | None:
        """Input current of population ``name`` in step ``k`` (None without one; zeros after a sequence ends)."""
        cur = self.currents.get(name)
        if cur is None or not self.window_steps:
            return cur
        e = k // self.window_steps
        return cur[:, e] if e < cur.shape[1] else np.zeros((cur.shape[0], cur.shape[2]))

    @property
    def graded(self) -> bool:
        """True when the raster carries real-valued pulse areas (analog input), not 0/1 spikes."""
        return self.raster is not None and self.raster.dtype != np.bool_

    def select(self, start: int, stop: int) -> "InputPlan":
        """The plan of samples ``start:stop``."""
        return InputPlan(
            n_samples=max(0, min(stop, self.n_samples) - start),
            currents=(self.currents.select(start, stop) if isinstance(self.currents, InputCurrents)
                      else {k: v[start:stop] for k, v in self.currents.items()}),
            rates=None if self.rates is None else self.rates[start:stop],
            kind=self.kind,
            raster=None if self.raster is None else self.raster[start:stop],
            window_steps=self.window_steps,
        )


#: inputs above this many times the calibrated input scale (``encoding["scale"]``) are warned about:
#: the calibration saw nothing like them, the first layers saturate and the accuracy means little
INPUT_WARN_FACTOR = 100.0
#: inputs above this many times the input scale (1 when none was calibrated) are refused: a neuron
#: spikes at most once (or ``burst`` times) per step, so such a drive only saturates every neuron
INPUT_REFUSE_FACTOR = 1e6


def check_input_magnitude(snn: SpikingNetwork, x: NDArray[np.float64]) -> None:
    """Refuse or warn about finite inputs far outside the range the network was calibrated for.

    The rule: ``m = max |x| / scale`` with ``scale = encoding["scale"]`` (the calibration's input
    percentile; 1 for a network built without calibration).  ``m > INPUT_REFUSE_FACTOR`` (10^6) is
    refused; ``m > INPUT_WARN_FACTOR`` (100) warns once, for calibrated networks only.

    Raises
    ------
    ValidationError
        ``m`` above :data:`INPUT_REFUSE_FACTOR`.
    """
    if x.size == 0:
        return
    calibrated = "scale" in snn.encoding
    scale = abs(float(snn.encoding.get("scale", 1.0))) or 1.0
    peak = float(np.max(np.abs(x)))
    ratio = peak / scale
    if not np.isfinite(ratio) or ratio > INPUT_REFUSE_FACTOR:
        raise ValidationError(
            f"inputs reach {peak:.3g}, {ratio:.3g} times the network's input scale {scale:.3g}"
            f"{' (its calibration)' if calibrated else ''}: more than {INPUT_REFUSE_FACTOR:.0e} times would only "
            "saturate every neuron; check the data's units and scaling",
            attr="inputs",
        )
    if calibrated and ratio > INPUT_WARN_FACTOR:
        import warnings

        from ..errors import AccuracyWarning

        warnings.warn(
            f"inputs reach {peak:.3g}, {ratio:.3g} times the input scale {scale:.3g} the network '{snn.name}' was "
            f"calibrated on (over {INPUT_WARN_FACTOR:.0f} times): its first layers saturate and the accuracy means "
            "little; check the data's units and scaling (e.g. pixels 0-255 for a network calibrated on 0-1)",
            AccuracyWarning, stacklevel=3,
        )


def prepare_inputs(snn: SpikingNetwork, inputs: ArrayLike | None, dt: float) -> InputPlan:
    """Turn ANN-unit inputs into currents or rates for the simulators.

    Parameters
    ----------
    snn : SpikingNetwork
    inputs : array_like, shape (n_samples, *input_shape), or None
        None only for networks without an input population (one sample).
    dt : float
        Simulation time step in seconds.

    Raises
    ------
    ValidationError
        Inputs that do not match the input population, contain NaN, or are
        missing/extra.
    """
    kind = str(snn.encoding.get("kind", "current"))
    if snn.input is None:
        if inputs is not None:
            raise ValidationError(
                f"network '{snn.name}' has no input population; call simulate with inputs=None", attr="inputs"
            )
        return InputPlan(n_samples=1, currents={}, rates=None, kind=kind)
    if inputs is None:
        raise ValidationError(
            f"network '{snn.name}' has input population '{snn.input}'; pass inputs of shape (n_samples, "
            f"{', '.join(map(str, snn.populations[snn.input].shape or ()))})",
            attr="inputs",
        )
    n_in = snn.populations[snn.input].n
    x = np.asarray(inputs, dtype=np.float64)
    if kind == "spikes":
        shape = tuple(snn.populations[snn.input].shape or (n_in,))
        hint = ("; to drive it with data as a constant current (as before an export to NIR): "
                "net.copy_with(encoding={'kind': 'current'})")
        if x.ndim >= 2 and x.shape[1:] == shape:
            # samples of the input population's shape, e.g. images (n, 1, 28, 28): read as a raster they would
            # be one-step analog drive and the network would silently score chance (issue 23)
            raise ValidationError(
                f"network '{snn.name}' takes spike rasters (n_samples, n_steps, {n_in}) (encoding 'spikes'), but the "
                f"inputs of shape {x.shape} are samples of its input shape {shape}" + hint,
                attr="inputs",
            )
        if x.ndim < 3 or int(np.prod(x.shape[2:])) != n_in:
            raise ValidationError(
                f"spike-raster inputs of shape {x.shape} do not match input population '{snn.input}' of {n_in} "
                f"neurons; expected (n_samples, n_steps, {n_in})" + (hint if x.ndim == 2 and x.shape[1] == n_in else ""),
                attr="inputs",
            )
        values = x.reshape(x.shape[0], x.shape[1], n_in)
        if not np.all(np.isfinite(values)):
            raise ValidationError("inputs contain NaN or Inf", attr="inputs")
        binary = bool(np.all((values == 0) | (values == 1)))
        raster = values == 1 if binary else values
        return InputPlan(n_samples=x.shape[0], currents={}, rates=None, kind=kind, raster=raster)
    seq_len = int(snn.encoding.get("sequence_length") or 0)
    if seq_len:
        return _prepare_sequence(snn, x, kind, n_in, seq_len, dt)
    if x.ndim >= 1 and x.size == n_in and x.shape == tuple(snn.populations[snn.input].shape or (n_in,)):
        x = x[None]
    if x.ndim < 2 or int(np.prod(x.shape[1:])) != n_in:
        raise ValidationError(
            f"inputs of shape {x.shape} do not match input population '{snn.input}' of {n_in} neurons "
            f"(shape {snn.populations[snn.input].shape}); expected (n_samples, ...) with {n_in} values per sample",
            attr="inputs",
        )
    x = x.reshape(x.shape[0], n_in)
    if not np.all(np.isfinite(x)):
        raise ValidationError("inputs contain NaN or Inf", attr="inputs")
    check_input_magnitude(snn, x)
    scale = float(snn.encoding.get("scale", 1.0)) or 1.0
    xs = x / scale
    if kind == "current":
        links: list[tuple[str, Any, NDArray[np.float64] | None, int]] = []
        for proj in snn.outgoing(snn.input):
            n_post = snn.populations[proj.post].n
            if proj.operator is not None:
                # a first convolution is applied with its kernel (a dense matrix of a CIFAR conv is GBs)
                links.append((proj.post, proj.operator, None, n_post))
            else:
                w = np.zeros((n_post, n_in))
                np.add.at(w, (proj.post_index, proj.pre_index), proj.weight)
                links.append((proj.post, None, w, n_post))
        # computed per batch when read: on a VM whose freed pages go back to the host, each fresh
        # 100 MB (VGG, 1,000 images) cost 0.1-0.25 s (results.md §0.2o, §0.2q)
        return InputPlan(n_samples=x.shape[0], currents=InputCurrents(xs, links, snn.dt), rates=None, kind=kind)
    if kind in ("poisson", "regular"):
        max_rate = float(snn.encoding.get("max_rate", 1.0 / dt))
        rates = np.clip(xs, 0.0, 1.0) * max_rate
        return InputPlan(n_samples=x.shape[0], currents={}, rates=rates, kind=kind)
    raise ValidationError(f"network '{snn.name}': unknown input encoding {kind!r}", attr="encoding")


def _prepare_sequence(snn: SpikingNetwork, x: NDArray[np.float64], kind: str, n_in: int, seq_len: int, dt: float) -> InputPlan:
    """Per-element input currents of a sequence network: x of shape (n_samples, T, n_in)."""
    if kind != "current":
        raise ValidationError(f"network '{snn.name}': a sequence network takes its input as a current, not {kind!r}",
                              attr="encoding")
    if x.shape == (seq_len, n_in):
        x = x[None]
    if x.ndim != 3 or x.shape[1:] != (seq_len, n_in):
        raise ValidationError(
            f"inputs of shape {x.shape} do not match sequence network '{snn.name}': expected (n_samples, {seq_len}, {n_in}) "
            f"(sequence length, features per element)",
            attr="inputs",
        )
    if not np.all(np.isfinite(x)):
        raise ValidationError("inputs contain NaN or Inf", attr="inputs")
    check_input_magnitude(snn, x)
    xs = x / (float(snn.encoding.get("scale", 1.0)) or 1.0)
    currents: dict[str, NDArray[np.float64]] = {}
    for proj in snn.outgoing(snn.input):  # type: ignore[arg-type]
        n_post = snn.populations[proj.post].n
        w = np.zeros((n_post, n_in))
        np.add.at(w, (proj.post_index, proj.pre_index), proj.weight)
        cur = (xs @ w.T) / snn.dt  # (n, T, n_post), per second of the network's dt as for constant currents
        currents[proj.post] = currents.get(proj.post, 0.0) + cur
    return InputPlan(n_samples=x.shape[0], currents=currents, rates=None, kind=kind,
                     window_steps=sequence_window_steps(snn, dt))


def draw_poisson(plan: InputPlan, n_steps: int, dt: float, seed: int, first_sample: int = 0) -> InputPlan:
    """Draw the spikes of a ``"poisson"`` plan in numpy; other plans are returned unchanged.

    Each sample gets its own generator, seeded by ``(seed, global sample index)``,
    so a sample's input spikes do not depend on the batch size, on where a
    resumed run restarts, or on the code-generation target (cpp_standalone
    would otherwise reuse one compiled random stream for every batch), and the
    Brian2 and reference simulators see identical inputs.

    Parameters
    ----------
    plan : InputPlan
        A batch's plan (from :func:`prepare_inputs` and ``select``).
    n_steps : int
        Steps to draw.
    dt : float
        Time step in seconds (spike probability per step is ``rate * dt``).
    seed : int
    first_sample : int
        Global index of the plan's first sample.

    Returns
    -------
    InputPlan
        A ``"spikes"`` plan whose raster has shape (n_samples, n_steps, n_in).
    """
    if plan.kind != "poisson" or plan.rates is None:
        return plan
    p = np.clip(plan.rates * dt, 0.0, 1.0)
    raster = np.empty((plan.n_samples, n_steps, p.shape[1]), dtype=bool)
    for k in range(plan.n_samples):
        rng = np.random.default_rng(np.random.SeedSequence([int(seed), int(first_sample + k)]))
        raster[k] = rng.random((n_steps, p.shape[1])) < p[k]
    return InputPlan(n_samples=plan.n_samples, currents=plan.currents, rates=None, kind="spikes", raster=raster,
                     window_steps=plan.window_steps)


def checked_plan(snn: SpikingNetwork, inputs: ArrayLike | None, record: tuple[str, ...], start: int, dt: float) -> InputPlan | None:
    """The checks every engine makes before simulating, and the inputs' plan.

    Parameters
    ----------
    snn : SpikingNetwork
    inputs : array_like or None
        As for :func:`prepare_inputs`.
    record : tuple of str
        ``SimulationConfig.record``: population names or ``"all"``.
    start : int
        First sample to simulate (resume).
    dt : float
        Time step in seconds.

    Returns
    -------
    InputPlan or None
        The plan of all samples; None when ``start`` is already the end (nothing to do).

    Raises
    ------
    ValidationError
        Unknown recorded populations, bad inputs, or ``start`` outside ``[0, n_samples]``.
    """
    unknown = set(record) - set(snn.populations) - {"all"}
    if unknown:
        raise ValidationError(
            f"SimulationConfig.record: unknown population(s) {sorted(unknown)}; populations: {list(snn.populations)}",
            attr="record",
        )
    plan = prepare_inputs(snn, inputs, dt)
    if not (0 <= start <= plan.n_samples):
        raise ValidationError(f"iter_simulate: start must be in [0, {plan.n_samples}], got {start}", attr="start")
    return None if start == plan.n_samples else plan
