"""The converted network in the user's hands: Brian2 objects to run, extend and modify.

:func:`to_brian2` builds the same Brian2 objects :func:`spikebridge.simulate`
builds (one ``NeuronGroup`` per population, one ``Synapses`` per projection,
batched block-diagonally, see :mod:`.builder`), sets the batch's inputs and
returns them in a :class:`Brian2Network` without running anything.  Running
``net.network.run(n_steps * dt, namespace={})`` in your own code then gives
the same spikes as ``simulate`` with the same ``SimulationConfig``.

What the user owns
------------------
``to_brian2`` changes no global Brian2 state: no preference, no device, no
seed, not ``defaultclock`` (every object runs on its own clock,
``net.clock``, with the converted ``dt``).  The run therefore uses *your*
``brian2.prefs.codegen.target`` and device.  Poisson inputs are drawn in
numpy from ``config.seed`` exactly as ``simulate`` draws them and are fed as a
spike raster of ``config.n_steps`` steps (silent after that), so no Brian2
random number is involved; only a Brunel-type population with
``params["poisson_n"]`` draws from Brian2's generator — call
``brian2.seed(config.seed)`` before running to reproduce ``simulate`` then.

Schedule: the network's ``schedule`` is ``builder.SCHEDULE`` (synaptic
delivery before the threshold test, the shared discrete-time contract).
Objects you add get their ``when`` slot from that schedule as usual.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import ArrayLike

from ...config import SimulationConfig
from ...snn.network import SpikingNetwork
from ...errors import ValidationError
from ...store.record import Counts, SpikeRecord
from .builder import BuiltNetwork, build_network
from ..plan import compile, draw_poisson, prepare_inputs

if TYPE_CHECKING:  # pragma: no cover
    import brian2

__all__ = ["Brian2Network", "to_brian2"]


def _report_progress(steps: int, batch: int) -> Any:
    """A Brian2 ``report`` callable printing one progress line to stderr.

    Brian2 calls it with the wall time elapsed (seconds), the fraction of the
    run completed, the run's start time and its duration (simulated seconds).
    """

    def report(elapsed: Any, completed: float, start: Any, duration: Any) -> None:
        wall = float(elapsed)
        left = wall * (1.0 - completed) / completed if completed > 0 else float("nan")
        eta = f", about {left:.0f} s left" if completed > 0 and completed < 1 else ""
        print(
            f"to_brian2: {completed:6.1%} of {steps} steps x {batch} samples, {wall:.0f} s elapsed{eta}",
            file=sys.stderr, flush=True,
        )

    return report


@dataclass
class Brian2Network:
    """A converted network as Brian2 objects, ready to run or extend.

    Attributes
    ----------
    network : brian2.Network
        Holds every object below; schedule already set.  Add your own objects
        with ``network.add(obj)`` before running.
    groups : dict of str to brian2.NeuronGroup
        One per simulated population (the spiking input included), named after it.  ``batch_size × n``
        neurons: sample ``s`` owns neurons ``s*n … s*n + n - 1``.
    synapses : dict of str to brian2.Synapses
        One per simulated projection, named after it (a projection from a
        current-encoded input is folded into the constant current ``I_in``
        of its post population and has no ``Synapses``).
    input : brian2.NeuronGroup or None
        The spiking input population (Poisson or spike-raster inputs), else None.
    spike_monitors : dict of str to brian2.SpikeMonitor
        One per spiking population (named ``<pop>_spikes``).
    potential_monitor : brian2.StateMonitor or None
        The output population's ``v`` at the end of every step.
    output_spikes : brian2.SpikeMonitor or None
        Output spikes with times (for counts over time): the output population's monitor in
        ``spike_monitors``, which keeps spike times whether or not the output is recorded.
    clock : brian2.Clock
        The clock every object runs on (``dt`` seconds).
    dt : float
        Time step in seconds.
    n_steps : int
        Steps of the planned run (``config.n_steps``; Poisson/raster inputs
        last that long).
    n_samples : int
        Samples whose inputs were set (the first ``n_samples`` of the batch).
    batch_size : int
    snn : SpikingNetwork
        The network the objects were built from.
    """

    network: "brian2.Network"
    groups: dict[str, Any]
    synapses: dict[str, Any]
    input: Any
    spike_monitors: dict[str, Any]
    potential_monitor: Any
    output_spikes: Any
    clock: Any
    dt: float
    n_steps: int
    n_samples: int
    batch_size: int
    snn: SpikingNetwork
    _built: BuiltNetwork

    @property
    def duration(self) -> float:
        """Planned run time in seconds (``n_steps * dt``)."""
        return self.n_steps * self.dt

    def run(self, n_steps: int | None = None, progress: bool = False, **kwargs: Any) -> None:
        """Run the network for ``n_steps`` steps (default :attr:`n_steps`) with an empty namespace.

        Equivalent to ``self.network.run(n_steps * dt * second, namespace={}, **kwargs)``.

        Parameters
        ----------
        n_steps : int, optional
            Steps to run (default :attr:`n_steps`).
        progress : bool
            Print to stderr that Brian2 is generating (and, for a compiled
            target, compiling) code, then the share of simulated time done
            with the elapsed and estimated remaining wall time every 5 s,
            so a long first run is not silent.  Ignored when ``report`` is
            passed.
        **kwargs
            Passed to ``brian2.Network.run`` (``report``, ``profile``...).
        """
        import brian2 as b2

        steps = self.n_steps if n_steps is None else int(n_steps)
        if progress and "report" not in kwargs:
            target = b2.prefs.codegen.target
            print(
                f"to_brian2: generating code for {len(self.groups)} groups and {len(self.synapses)} synapses "
                f"(target {target!s}; a first cython build can take minutes, later runs reuse the cache)",
                file=sys.stderr, flush=True,
            )
            kwargs["report"] = _report_progress(steps, self.batch_size)
            kwargs.setdefault("report_period", 5 * b2.second)
        self.network.run(steps * self.dt * b2.second, namespace=kwargs.pop("namespace", {}), **kwargs)

    def spike_record(self) -> SpikeRecord:
        """Read the monitors into a :class:`SpikeRecord` (as ``simulate`` returns), for the first :attr:`n_steps`.

        Returns
        -------
        SpikeRecord
            Counts of every spiking population, spike trains of the recorded
            ones, output counts and potentials over time.
        """
        from .run import collect

        data = collect(self._built, self.snn, self.n_samples, self.n_steps, self.dt)
        return SpikeRecord(
            n_samples=self.n_samples, n_steps=self.n_steps, dt=self.dt,
            output_counts_t=data["output_counts_t"], output_potential_t=data["output_potential_t"],
            counts=Counts(data["counts"]), spikes=data["spikes"], readout=dict(self.snn.readout),
            meta={"source": "to_brian2", "batch_size": self.batch_size},
        )

    def __getitem__(self, name: str) -> Any:
        """The Brian2 object called ``name`` (population, projection or monitor)."""
        return self.network[name]


def to_brian2(
    snn: SpikingNetwork,
    inputs: ArrayLike | None = None,
    batch_size: int | None = None,
    config: SimulationConfig | None = None,
) -> Brian2Network:
    """Build ``snn`` as Brian2 objects with ``inputs`` set, without running it.

    Parameters
    ----------
    snn : SpikingNetwork
    inputs : array_like, shape (n_samples, *input_shape), optional
        ANN-unit inputs encoded as ``snn.encoding`` says (as for
        ``simulate``).  None: networks without an input population, or all
        inputs zero for you to set: ``groups[pop].I_in`` (1/second) of a
        current-encoded network; for a ``"poisson"`` encoding the input
        population then draws its spikes in Brian2 (``rand() < rate*dt``)
        from its ``rate`` variable (hertz), which you set between runs.
    batch_size : int, optional
        Copies of the network in the Brian2 objects (default: the number of
        input samples, 1 without inputs); samples beyond the inputs get zero input.
    config : SimulationConfig, optional
        ``n_steps`` (length of Poisson rasters), ``dt``, ``seed`` (Poisson
        draws) and ``record`` (populations whose spike times are kept) are
        used; ``target`` is not: the run uses your Brian2 preferences.

    Returns
    -------
    Brian2Network
        ``net.run()`` (or ``net.network.run(net.duration * second,
        namespace={})``) then ``net.spike_record()`` gives the record
        ``simulate(snn, inputs, config)`` returns.

    Raises
    ------
    ValidationError
        Bad inputs, more samples than ``batch_size``, unknown recorded populations.
    BuildError
        A model the builder cannot express.

    Examples
    --------
    >>> from spikebridge.snn.network import Population, SpikingNetwork
    >>> snn = SpikingNetwork([Population(name="a", n=1, model="if", bias=370.0, role="output")], output="a")
    >>> net = to_brian2(snn, config=SimulationConfig(n_steps=64))
    >>> net.run()
    >>> int(net.spike_monitors["a"].count[0])
    23
    """
    cfg = config if config is not None else SimulationConfig()
    if not isinstance(cfg, SimulationConfig):
        raise ValidationError(f"to_brian2: config must be a SimulationConfig, got {type(cfg).__name__}", attr="config")
    unknown = set(cfg.record) - set(snn.populations) - {"all"}
    if unknown:
        raise ValidationError(f"to_brian2: unknown population(s) to record {sorted(unknown)}", attr="record")
    compiled = compile(snn, cfg)
    dt = compiled.dt
    brian2_poisson = inputs is None and snn.input is not None and snn.encoding.get("kind") == "poisson"
    if inputs is None and snn.input is not None:
        # zero inputs: the user drives the network (sets I_in, rate or the raster) themselves
        shape = snn.populations[snn.input].shape or (snn.populations[snn.input].n,)
        n = 1 if batch_size is None else int(batch_size)
        if snn.encoding.get("kind") == "spikes":
            inputs = np.zeros((n, cfg.n_steps, *shape))
        else:
            inputs = np.zeros((n, *shape))
    plan = prepare_inputs(snn, inputs, dt)
    b = plan.n_samples if batch_size is None else int(batch_size)
    if b < plan.n_samples or b < 1:
        raise ValidationError(
            f"to_brian2: {plan.n_samples} input samples do not fit batch_size={batch_size}; pass batch_size >= {plan.n_samples}",
            attr="batch_size",
        )
    # the same draws as simulate's first batch (per-sample seeds: independent of the batch size)
    if not brian2_poisson:
        plan = draw_poisson(plan, cfg.n_steps, dt, cfg.seed, 0)
    built = build_network(compiled, b, raster=plan.raster, inputs=plan)
    built.set_inputs(snn, plan)
    synapses: dict[str, Any] = {}
    for name, objs in built.synapses.items():
        for obj in objs:
            synapses[name if len(objs) == 1 else obj.name] = obj
    inp = built.groups.get(snn.input) if snn.input is not None else None
    return Brian2Network(
        network=built.network,
        groups=dict(built.groups),
        synapses=synapses,
        input=inp,
        spike_monitors=built.spike_monitors,
        potential_monitor=built.potential_monitor,
        output_spikes=built.output_spikes,
        clock=next(iter(built.groups.values())).clock if built.groups else None,
        dt=dt,
        n_steps=cfg.n_steps,
        n_samples=plan.n_samples,
        batch_size=b,
        snn=snn,
        _built=built,
    )
