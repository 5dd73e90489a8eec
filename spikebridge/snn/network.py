"""The spiking network description: populations and projections, plain numpy.

A :class:`SpikingNetwork` is what conversion produces and what the Brian2
backend builds.  It holds no Brian2 object and is saved to / loaded from HDF5
(format ``spikebridge.snn``), so a converted network can be simulated later
without the original model.

Neuron models (equations per sample and neuron; all SI, ``v`` dimensionless)
----------------------------------------------------------------------------
``"input"``
    A source of input spikes or currents; its encoding is chosen at simulate time.
``"if"``
    .. math:: \\frac{dv}{dt} = b + r\\,I_{ext}
    spike when :math:`v \\ge \\theta`, then reset (subtract θ, or set to ``v_reset``).
``"lif"``
    .. math:: \\frac{dv}{dt} = \\frac{v_{rest} - v}{\\tau_{mem}} + b
``"cuba_lif"``
    .. math:: \\frac{dI}{dt} = -\\frac{I}{\\tau_{syn}},\\quad
              \\frac{dv}{dt} = \\frac{v_{rest} - v + r I}{\\tau_{mem}} + b
``"li"`` / ``"cuba_li"``
    As ``"lif"`` / ``"cuba_lif"`` without threshold (non-spiking).
``"integrator"``
    .. math:: \\frac{dv}{dt} = b
    non-spiking (a read-out that integrates its input).

``b`` (``bias``) is in threshold units per second.  A spike arriving through a
projection adds ``weight`` to the post-synaptic variable named by the
projection's ``target`` (``"v"`` or ``"I"``) after the projection's ``delay``.

Discrete time.  Delays are rounded to whole steps of ``dt``, at least the
network's ``min_delay_steps``.  Each step is: (1) state update of every
population; (2) arrival of the spikes of earlier steps (delay ``d >= 1``:
emitted at step ``j``, added at step ``j + d``) and of the Poisson drive;
(3) population by population in :meth:`SpikingNetwork.update_order`: add the
zero-delay spikes emitted earlier in this step, threshold, reset, emit.  With
``min_delay_steps=1`` (the default) step 3 sees no zero-delay spikes and the
order does not matter; with ``min_delay_steps=0`` a zero delay hands a spike
to the next population within the step it was emitted (the synchronous,
layer-by-layer update of ANN-to-SNN conversion papers), so a chain of
layers has no pipeline latency.  Zero-delay projections must then form no
cycle (a recurrent or lateral projection needs a delay of at least one step).
Optional per-population Poisson drive (Brunel-type networks) is described by
``params`` keys ``poisson_n`` (inputs per neuron), ``poisson_rate`` (Hz per
input) and ``poisson_weight`` (jump of ``v`` per input spike).
Burst spikes (Li & Zeng 2022): ``params["burst"] = B`` (an int >= 2; ``"if"``/``"lif"``
with reset by subtraction, no refractory period) lets a neuron emit up to ``B`` spikes in one
step: where ``v >= θ`` it emits ``n = clip(floor(v / θ), 1, B)``, resets ``v -= n θ``, and each
outgoing synapse delivers ``n w``.  Every engine computes the delivery as the sum over
``j = 1 … B`` of the products with the binary layers ``n >= j`` (so the sums agree bit for bit);
its spike counts and recorded trains count each of the ``n`` spikes (a step appears ``n`` times).
Its outgoing projections must deliver within the step (delay 0): Brian2 reads ``n`` from the
pre-synaptic potential when the spike is delivered.
Signed neurons with memory (Wang et al. 2022): ``params["signed"] = True`` (same neuron
and delivery conditions as bursts) lets a neuron that has emitted more positive than negative spikes emit a
negative spike where, after its positive threshold test, ``v < 0``: ``n = -1``, ``v += θ``, and
each outgoing synapse delivers ``-w`` (the engines subtract the products with the binary layers
``n <= -j``); with ``params["burst"] = B`` negative spikes burst too,
``n = -min(ceil(-v/θ), B, count)``.  Its spike counts are net counts (positive minus negative
spikes), its recorded trains hold the positive spikes only.  ``params["rate_cap"] = True`` (burst
populations) caps a burst so that the net count after step ``k`` never exceeds ``k + 1`` (a clipped
ReLU's bound: one spike per step on average).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .kernels import SharedKernel
from .._h5 import (AttrView, array_budget, check_format, check_total_size, create_checked_dataset, json_attr, open_h5, read_array, read_attrs,
                   refuse_mismatches, seal_attrs, text_attr, verify_attrs, write_format)
from ..errors import SpikebridgeError, StoreFormatError, ValidationError

__all__ = [
    "Population",
    "Projection",
    "SpikingNetwork",
    "NEURON_MODELS",
    "SPIKING_MODELS",
    "save_network",
    "load_network",
    "FORMAT",
    "VERSION",
]

FORMAT = "spikebridge.snn"
#: written version; readers accept 1..VERSION.  2: shared-kernel projections; 3: fixed-length string
#: attributes (older versions stored variable-length ones, still read, see ``spikebridge._h5.read_attrs``);
#: 4: same-step delivery (``min_delay_steps=0``), written only by such networks
#: 5: burst populations (``params["burst"]``), written only by such networks
#: 6: signed populations (``params["signed"]``), written only by such networks
VERSION = 6

NEURON_MODELS = ("input", "if", "lif", "cuba_lif", "li", "cuba_li", "integrator")
SPIKING_MODELS = ("input", "if", "lif", "cuba_lif")
RESETS = ("subtract", "zero", "value", "none")
SIGNS = ("excitatory", "inhibitory", "mixed")
ROLES = ("input", "hidden", "output", "interneuron")

_ARRAY_FIELDS_POP = ("threshold", "bias", "v_init")


def _check_name(name: Any, where: str) -> None:
    """Population and projection names become Brian2 object names and Python variables of an exported script."""
    if not isinstance(name, str) or not (name.isascii() and name.isidentifier()) or name.startswith("_"):
        raise ValidationError(
            f"{where}: name must be an ASCII identifier (letters, digits, '_') not starting with '_', got {name!r}", attr="name"
        )


def _scalar_or_vector(value: Any, n: int, what: str, where: str) -> float | NDArray[np.float64]:
    arr = np.asarray(value, dtype=np.float64)
    if not np.all(np.isfinite(arr)):
        raise ValidationError(f"{where}: {what} contains NaN or Inf", attr=what)
    if arr.ndim == 0:
        return float(arr)
    if arr.shape != (n,):
        raise ValidationError(f"{where}: {what} has shape {arr.shape}; expected a scalar or ({n},)", attr=what)
    arr = arr.copy()
    arr.setflags(write=False)
    return arr


@dataclass(frozen=True, kw_only=True, eq=False)
class Population:
    """A group of identical-model neurons (per sample).

    Parameters
    ----------
    name : str
        Identifier (used as the Brian2 object name).
    n : int
        Neurons per sample.
    model : str
        One of :data:`NEURON_MODELS`.
    shape : tuple of int, optional
        Logical shape (e.g. ``(C, H, W)``) whose product is ``n``; default ``(n,)``.
    threshold : float or ndarray (n,)
        Firing threshold θ (membrane units).
    reset : {"subtract", "zero", "value", "none"}
        After a spike: ``v -= θ``, ``v = 0``, ``v = v_reset``, or nothing.
    v_reset : float
        Reset value for ``reset="value"``.
    v_rest : float
        Resting (leak) potential of leaky models.
    v_init : float or ndarray (n,)
        Initial membrane potential (absolute, membrane units).
    tau_mem, tau_syn : float or None
        Time constants in seconds.
    r : float
        Input resistance of cuba models (scales ``I`` into ``v``).
    bias : float or ndarray (n,)
        Constant drive in membrane units per second.
    refractory : float
        Refractory period in seconds.
    role : {"input", "hidden", "output", "interneuron"}
    sign : {"excitatory", "inhibitory", "mixed"}
        Sign of this population's *outgoing* synapses (Dale's law tag).
    layer : str or None
        The ANN layer this population comes from.
    params : mapping
        Extra model parameters (see the module docstring).
    """

    name: str
    n: int
    model: str
    shape: tuple[int, ...] | None = None
    threshold: float | NDArray[np.float64] = 1.0
    reset: str = "subtract"
    v_reset: float = 0.0
    v_rest: float = 0.0
    v_init: float | NDArray[np.float64] = 0.0
    tau_mem: float | None = None
    tau_syn: float | None = None
    r: float = 1.0
    bias: float | NDArray[np.float64] = 0.0
    refractory: float = 0.0
    role: str = "hidden"
    sign: str = "mixed"
    layer: str | None = None
    params: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        where = f"population {self.name!r}"
        _check_name(self.name, where)
        if not isinstance(self.n, (int, np.integer)) or self.n < 1:
            raise ValidationError(f"{where}: n must be a positive int, got {self.n!r}", attr="n")
        object.__setattr__(self, "n", int(self.n))
        if self.model not in NEURON_MODELS:
            raise ValidationError(f"{where}: model {self.model!r} is not one of {NEURON_MODELS}", attr="model")
        shape = (self.n,) if self.shape is None else tuple(int(s) for s in self.shape)
        if int(np.prod(shape)) != self.n:
            raise ValidationError(f"{where}: shape {shape} does not hold n={self.n} neurons", attr="shape")
        object.__setattr__(self, "shape", shape)
        if self.reset not in RESETS:
            raise ValidationError(f"{where}: reset {self.reset!r} is not one of {RESETS}", attr="reset")
        if self.role not in ROLES:
            raise ValidationError(f"{where}: role {self.role!r} is not one of {ROLES}", attr="role")
        if self.sign not in SIGNS:
            raise ValidationError(f"{where}: sign {self.sign!r} is not one of {SIGNS}", attr="sign")
        for attr in _ARRAY_FIELDS_POP:
            object.__setattr__(self, attr, _scalar_or_vector(getattr(self, attr), self.n, attr, where))
        if self.model in ("lif", "li", "cuba_lif", "cuba_li") and not (self.tau_mem and self.tau_mem > 0):
            raise ValidationError(f"{where}: model {self.model!r} needs tau_mem > 0 (seconds)", attr="tau_mem")
        if self.model in ("cuba_lif", "cuba_li") and not (self.tau_syn and self.tau_syn > 0):
            raise ValidationError(f"{where}: model {self.model!r} needs tau_syn > 0 (seconds)", attr="tau_syn")
        if np.any(np.asarray(self.threshold) <= 0) and self.model in ("if", "lif", "cuba_lif"):
            raise ValidationError(f"{where}: threshold must be > 0", attr="threshold")
        if self.refractory < 0:
            raise ValidationError(f"{where}: refractory must be >= 0 s, got {self.refractory}", attr="refractory")
        object.__setattr__(self, "params", dict(self.params))
        if "burst" in self.params:
            b = self.params["burst"]
            if isinstance(b, bool) or not isinstance(b, (int, np.integer)) or b < 1:
                raise ValidationError(f"{where}: params['burst'] must be an int >= 1, got {b!r}", attr="params")
            if b > 1 and (self.model not in ("if", "lif") or self.reset != "subtract" or self.refractory > 0):
                raise ValidationError(
                    f"{where}: burst spikes need model 'if' or 'lif' with reset 'subtract' and no refractory period "
                    f"(got model {self.model!r}, reset {self.reset!r}, refractory {self.refractory})", attr="params")
            object.__setattr__(self, "params", {**self.params, "burst": int(b)})
        if "signed" in self.params:
            sg = self.params["signed"]
            if not isinstance(sg, (bool, np.bool_)):
                raise ValidationError(f"{where}: params['signed'] must be a bool, got {sg!r}", attr="params")
            if sg and (self.model not in ("if", "lif") or self.reset != "subtract" or self.refractory > 0):
                raise ValidationError(
                    f"{where}: signed spikes need model 'if' or 'lif' with reset 'subtract' and no refractory period "
                    f"(got model {self.model!r}, reset {self.reset!r}, refractory {self.refractory})", attr="params")
            object.__setattr__(self, "params", {**self.params, "signed": bool(sg)})
        if "rate_cap" in self.params:
            rc = self.params["rate_cap"]
            if not isinstance(rc, (bool, np.bool_)):
                raise ValidationError(f"{where}: params['rate_cap'] must be a bool, got {rc!r}", attr="params")
            if rc and int(self.params.get("burst", 1)) < 2:
                raise ValidationError(f"{where}: params['rate_cap'] needs burst spikes (params['burst'] >= 2)", attr="params")
            object.__setattr__(self, "params", {**self.params, "rate_cap": bool(rc)})

    @property
    def burst(self) -> int:
        """Most spikes one neuron emits in one step (``params["burst"]``, default 1)."""
        return int(self.params.get("burst", 1))

    @property
    def signed(self) -> bool:
        """True when the neuron also emits negative spikes (``params["signed"]``, signed neurons with memory)."""
        return bool(self.params.get("signed", False))

    @property
    def rate_cap(self) -> bool:
        """True when the net count may never exceed the steps so far (``params["rate_cap"]``, capped bursts)."""
        return bool(self.params.get("rate_cap", False))

    @property
    def graded(self) -> bool:
        """True when a step's output of a neuron is an integer other than 0/1 (bursts or negative spikes)."""
        return self.burst > 1 or self.signed

    @property
    def is_spiking(self) -> bool:
        """True for models that emit spikes."""
        return self.model in SPIKING_MODELS

    def replace(self, **changes: Any) -> "Population":
        """Return a copy with ``changes`` applied."""
        return replace(self, **changes)


@dataclass(frozen=True, kw_only=True, eq=False)
class Projection:
    """Synapses from one population onto another (or itself), in COO form.

    Parameters
    ----------
    name : str
        Identifier.
    pre, post : str
        Population names.
    pre_index, post_index : ndarray of int, shape (n_synapses,)
        Per-sample neuron indices of each synapse.
    weight : ndarray, shape (n_synapses,)
        Jump of the post-synaptic ``target`` variable per pre-synaptic spike.
    delay : float or ndarray (n_synapses,)
        Transmission delay in seconds.
    target : {"v", "I"}
        Post-synaptic variable the spike acts on.
    kind : str
        What the projection implements: ``"dense"``, ``"conv"``, ``"pool"``,
        ``"relay"``, ``"lateral"``, ``"recurrent"``, ``"identity"``, ``"gate"`` ...
    layer : str or None
        ANN layer it comes from.
    operator : SharedKernel, optional
        A convolution/pooling projection given by its shared kernel instead
        of explicit synapses (leave ``pre_index``/``post_index``/``weight``
        unset).  The tensor engine applies the kernel; ``pre_index``,
        ``post_index`` and ``weight`` are made from it on first access (see
        :mod:`spikebridge.snn.kernels`).
    """

    name: str
    pre: str
    post: str
    pre_index: NDArray[np.int64] = field(default=None, repr=False)  # type: ignore[arg-type]
    post_index: NDArray[np.int64] = field(default=None, repr=False)  # type: ignore[arg-type]
    weight: NDArray[np.float64] = field(default=None, repr=False)  # type: ignore[arg-type]
    delay: float | NDArray[np.float64] = 0.0
    target: str = "v"
    kind: str = "dense"
    layer: str | None = None
    operator: SharedKernel | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        where = f"projection {self.name!r} ({self.pre!r} -> {self.post!r})"
        _check_name(self.name, where)
        if self.operator is not None:
            self._init_operator(where)
            return
        pre = np.asarray(self.pre_index).astype(np.int64, copy=True)
        post = np.asarray(self.post_index).astype(np.int64, copy=True)
        w = np.asarray(self.weight, dtype=np.float64).copy()
        if not (pre.ndim == post.ndim == w.ndim == 1) or not (pre.shape == post.shape == w.shape):
            raise ValidationError(
                f"{where}: pre_index {pre.shape}, post_index {post.shape} and weight {w.shape} must be 1-D of equal length",
                attr="weight",
            )
        if not np.all(np.isfinite(w)):
            raise ValidationError(f"{where}: weight contains NaN or Inf", attr="weight")
        if pre.size and (pre.min() < 0 or post.min() < 0):
            raise ValidationError(f"{where}: negative neuron index", attr="pre_index")
        delay = _scalar_or_vector(self.delay, w.size, "delay", where)
        if np.any(np.asarray(delay) < 0):
            raise ValidationError(f"{where}: delay must be >= 0 seconds", attr="delay")
        if self.target not in ("v", "I"):
            raise ValidationError(f"{where}: target {self.target!r} is not 'v' or 'I'", attr="target")
        for arr in (pre, post, w):
            arr.setflags(write=False)
        object.__setattr__(self, "pre_index", pre)
        object.__setattr__(self, "post_index", post)
        object.__setattr__(self, "weight", w)
        object.__setattr__(self, "delay", delay)

    def _init_operator(self, where: str) -> None:
        from .kernels import SharedKernel

        if not isinstance(self.operator, SharedKernel):
            raise ValidationError(f"{where}: operator must be a SharedKernel, got {type(self.operator).__name__}", attr="operator")
        if any(getattr(self, key) is not None for key in _COO):
            raise ValidationError(f"{where}: give either operator or pre_index/post_index/weight, not both", attr="operator")
        if self.target not in ("v", "I"):
            raise ValidationError(f"{where}: target {self.target!r} is not 'v' or 'I'", attr="target")
        delay = np.asarray(self.delay, dtype=np.float64)
        if delay.ndim:
            delay = np.asarray(_scalar_or_vector(delay, self.operator.n_synapses, "delay", where))
        elif not np.isfinite(delay):
            raise ValidationError(f"{where}: delay contains NaN or Inf", attr="delay")
        if np.any(delay < 0):
            raise ValidationError(f"{where}: delay must be >= 0 seconds", attr="delay")
        object.__setattr__(self, "delay", float(delay) if delay.ndim == 0 else delay)
        # the explicit synapses are made on first access (see _LazyCOO below)
        for key in _COO:
            self.__dict__.pop(key, None)

    def _materialise(self) -> None:
        assert self.operator is not None
        pre, post, w = self.operator.coo()
        for key, arr in zip(_COO, (pre, post, w)):
            arr.setflags(write=False)
            self.__dict__[key] = arr

    @classmethod
    def from_dense(cls, matrix: ArrayLike, *, keep_zeros: bool = False, **kwargs: Any) -> "Projection":
        """Build from a dense ``(n_post, n_pre)`` weight matrix (zeros dropped unless ``keep_zeros``)."""
        m = np.asarray(matrix, dtype=np.float64)
        if m.ndim != 2:
            raise ValidationError(f"from_dense: matrix must be 2-D (n_post, n_pre), got shape {m.shape}", attr="matrix")
        post, pre = np.nonzero(np.ones_like(m, dtype=bool) if keep_zeros else m)
        return cls(pre_index=pre, post_index=post, weight=m[post, pre], **kwargs)

    @property
    def n_synapses(self) -> int:
        if self.operator is not None and "weight" not in self.__dict__:
            return self.operator.n_synapses
        return int(self.weight.size)

    @property
    def sign(self) -> str:
        """``"excitatory"`` if no weight is negative, ``"inhibitory"`` if none is positive, else ``"mixed"``."""
        if self.operator is not None and "weight" not in self.__dict__:
            op = self.operator
            w = op.kernel[(op.kernel != 0) & (op._valid_taps() > 0)[None, None]]
        else:
            w = self.weight
        if w.size == 0 or np.all(w >= 0):
            return "excitatory"
        if np.all(w <= 0):
            return "inhibitory"
        return "mixed"

    def to_dense(self, n_post: int, n_pre: int) -> NDArray[np.float64]:
        """Dense ``(n_post, n_pre)`` matrix (duplicate synapses summed)."""
        m = np.zeros((n_post, n_pre))
        np.add.at(m, (self.post_index, self.pre_index), self.weight)
        return m

    def replace(self, **changes: Any) -> "Projection":
        """Return a copy with ``changes`` applied.

        A shared-kernel projection stays one unless ``pre_index``,
        ``post_index`` or ``weight`` change (the copy then has explicit synapses).
        """
        if self.operator is not None:
            if any(key in changes for key in _COO):
                changes.setdefault("operator", None)
                for key in _COO:
                    changes.setdefault(key, getattr(self, key))
            elif changes.get("operator", self.operator) is not None:
                for key in _COO:
                    changes[key] = None
        return replace(self, **changes)


_COO = ("pre_index", "post_index", "weight")


class _LazyCOO:
    """Class-level fallback for a shared-kernel projection's explicit synapses: made on first access."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __get__(self, obj: Any, owner: Any = None) -> Any:
        if obj is None:
            return None  # the dataclass default
        if obj.__dict__.get("operator") is None:
            raise AttributeError(self.name)
        obj._materialise()
        return obj.__dict__[self.name]


for _key in _COO:
    setattr(Projection, _key, _LazyCOO(_key))


class SpikingNetwork:
    """Populations and projections, plus what is needed to read the output.

    Parameters
    ----------
    populations : iterable of Population
    projections : iterable of Projection
    input : str or None
        Name of the input population (None for networks driven only by biases
        or Poisson drive, e.g. a Brunel network).
    output : str or None
        Name of the read-out population.
    dt : float
        Time step in seconds the network was designed for.
    readout : mapping
        How to decode the output: ``mode`` (``"count"`` or ``"potential"``),
        ``task`` (``"classification"``/``"regression"``), ``scale`` (λ of the
        output layer, to turn rates back into ANN units), ``latency_steps``
        (pipeline delay in steps from input to output).
    encoding : mapping
        Default input encoding: ``kind`` (``"current"``, ``"poisson"``,
        ``"regular"``), ``max_rate`` (Hz), ``scale`` (input divided by this).
    conversion : mapping
        The resolved :class:`~spikebridge.config.ConversionConfig` as a dict.
    scales : mapping of str to float
        Per-layer normalisation scales λ_l.
    ann : AnnGraph or None
        The source ANN, kept so ANN/SNN comparisons need no original model.
    name : str
    metadata : mapping
    min_delay_steps : {1, 0}
        Shortest delay in steps: 1 (a delay below one step counts as one) or 0
        (a zero delay delivers within the step; see the module docstring).

    Raises
    ------
    ValidationError
        Duplicate names, projections naming unknown populations, indices out
        of range (the message names the projection and both sizes), a cycle
        of zero-delay projections.
    """

    def __init__(
        self,
        populations: Iterable[Population],
        projections: Iterable[Projection] = (),
        *,
        input: str | None = None,
        output: str | None = None,
        dt: float = 1e-3,
        readout: Mapping[str, Any] | None = None,
        encoding: Mapping[str, Any] | None = None,
        conversion: Mapping[str, Any] | None = None,
        scales: Mapping[str, float] | None = None,
        ann: Any = None,
        name: str = "snn",
        metadata: Mapping[str, Any] | None = None,
        min_delay_steps: int = 1,
    ) -> None:
        self.populations: dict[str, Population] = {}
        for pop in populations:
            if pop.name in self.populations:
                raise ValidationError(f"SpikingNetwork: duplicate population name '{pop.name}'", attr="populations")
            self.populations[pop.name] = pop
        self.projections: dict[str, Projection] = {}
        for proj in projections:
            if proj.name in self.projections or proj.name in self.populations:
                raise ValidationError(f"SpikingNetwork: duplicate name '{proj.name}'", attr="projections")
            self._check_projection(proj)
            self.projections[proj.name] = proj
        for what, value in (("input", input), ("output", output)):
            if value is not None and value not in self.populations:
                raise ValidationError(f"SpikingNetwork: {what} population '{value}' does not exist", attr=what)
        if not (dt > 0):
            raise ValidationError(f"SpikingNetwork: dt must be > 0 seconds, got {dt}", attr="dt")
        self.input = input
        self.output = output
        self.dt = float(dt)
        self.readout = dict(readout or {})
        self.encoding = dict(encoding or {"kind": "current"})
        self.conversion = dict(conversion or {})
        self.scales = {k: float(v) for k, v in (scales or {}).items()}
        self.ann = ann
        self.name = name
        self.metadata = dict(metadata or {})
        if isinstance(min_delay_steps, bool) or min_delay_steps not in (0, 1):
            raise ValidationError(f"SpikingNetwork: min_delay_steps must be 0 or 1, got {min_delay_steps!r}", attr="min_delay_steps")
        self.min_delay_steps = int(min_delay_steps)
        if self.min_delay_steps == 0:
            self.update_order()  # rejects zero-delay cycles now rather than at simulation time
        self.check_burst()

    def check_burst(self, dt: float | None = None) -> None:
        """Raise ``ValidationError`` if a burst or signed population has an outgoing projection that is not same-step.

        Brian2 evaluates a delivered spike's multiplicity from the pre-synaptic potential when
        it is delivered, which is the emitting step's only for zero-delay projections.
        """
        for proj in self.projections.values():
            if self.populations[proj.pre].graded and proj.n_synapses:
                if int(np.max(self.projection_steps(proj, dt))) != 0:
                    raise ValidationError(
                        f"SpikingNetwork: projection '{proj.name}' leaves "
                        f"{'burst' if self.populations[proj.pre].burst > 1 else 'signed'} population '{proj.pre}' with a delay; "
                        "burst and signed spikes need same-step delivery (delay 0, min_delay_steps=0)", attr="projections")

    def projection_steps(self, proj: Projection, dt: float | None = None) -> NDArray[np.int64]:
        """Delay of ``proj`` in whole steps of ``dt`` (default ``self.dt``): a scalar or one per synapse.

        At least :attr:`min_delay_steps`; see :func:`~spikebridge.snn.delays.delay_steps`.
        """
        from .delays import delay_steps

        return delay_steps(proj.delay, float(self.dt if dt is None else dt), self.min_delay_steps)

    def update_order(self, dt: float | None = None) -> list[str]:
        """The order in which populations threshold within a step (step 3 of the module docstring).

        A topological order of the zero-delay projections (those with a
        synapse of 0 steps at time step ``dt``, default ``self.dt``); ties
        keep the order of :attr:`populations`.  With ``min_delay_steps=1``
        there are none and this is the populations' order.

        Raises
        ------
        ValidationError
            The zero-delay projections form a cycle (named).
        """
        names = list(self.populations)
        if self.min_delay_steps:
            return names
        succ: dict[str, list[str]] = {n: [] for n in names}
        indeg = dict.fromkeys(names, 0)
        for proj in self.projections.values():
            if proj.n_synapses and int(np.min(self.projection_steps(proj, dt))) == 0:
                succ[proj.pre].append(proj.post)
                indeg[proj.post] += 1
        rank = {n: i for i, n in enumerate(names)}
        ready = sorted((n for n in names if indeg[n] == 0), key=rank.__getitem__)
        order: list[str] = []
        while ready:
            name = ready.pop(0)
            order.append(name)
            for nxt in succ[name]:
                indeg[nxt] -= 1
                if indeg[nxt] == 0:
                    ready.append(nxt)
                    ready.sort(key=rank.__getitem__)
        if len(order) < len(names):
            stuck = [n for n in names if n not in set(order)]
            cyc = sorted(p.name for p in self.projections.values() if p.pre in stuck and p.post in stuck
                         and p.n_synapses and int(np.min(self.projection_steps(p, dt))) == 0)
            raise ValidationError(
                f"SpikingNetwork '{self.name}': zero-delay projections {cyc} form a cycle through populations {stuck}; "
                "a spike cannot arrive within the step it was emitted around a loop: give one projection of the cycle "
                "a delay of at least one time step",
                attr="min_delay_steps",
            )
        return order

    def _check_projection(self, proj: Projection) -> None:
        for end in (proj.pre, proj.post):
            if end not in self.populations:
                raise ValidationError(
                    f"projection '{proj.name}': population '{end}' does not exist; populations: {list(self.populations)}",
                    attr="projections",
                )
        if proj.operator is not None:
            op = proj.operator
            for size, end in ((op.n_pre, proj.pre), (op.n_post, proj.post)):
                if size != self.populations[end].n:
                    raise ValidationError(
                        f"projection '{proj.name}': its kernel needs {size} neurons in population '{end}', which has "
                        f"{self.populations[end].n}",
                        attr="projections",
                    )
        for idx, end in (() if proj.operator is not None else ((proj.pre_index, proj.pre), (proj.post_index, proj.post))):
            n = self.populations[end].n
            if idx.size and idx.max() >= n:
                raise ValidationError(
                    f"projection '{proj.name}': index {int(idx.max())} out of range for population '{end}' of {n} neurons",
                    attr="projections",
                )
        if proj.target == "I" and self.populations[proj.post].model not in ("cuba_lif", "cuba_li"):
            raise ValidationError(
                f"projection '{proj.name}': target 'I' needs a cuba post population, '{proj.post}' is "
                f"{self.populations[proj.post].model!r}",
                attr="target",
            )

    def __repr__(self) -> str:
        return (
            f"SpikingNetwork({self.name!r}, {len(self.populations)} populations, {self.n_neurons} neurons, "
            f"{len(self.projections)} projections, {self.n_synapses} synapses)"
        )

    def __iter__(self) -> Iterator[Population]:
        return iter(self.populations.values())

    @property
    def n_neurons(self) -> int:
        """Neurons per sample, input population included."""
        return sum(p.n for p in self.populations.values())

    @property
    def n_synapses(self) -> int:
        """Synapses per sample."""
        return sum(p.n_synapses for p in self.projections.values())

    def incoming(self, population: str) -> list[Projection]:
        """Projections whose post population is ``population``."""
        return [p for p in self.projections.values() if p.post == population]

    def outgoing(self, population: str) -> list[Projection]:
        """Projections whose pre population is ``population``."""
        return [p for p in self.projections.values() if p.pre == population]

    def max_delay(self) -> float:
        """Largest synaptic delay in seconds (0 without projections)."""
        return max((float(np.max(p.delay)) if np.size(p.delay) else 0.0 for p in self.projections.values()), default=0.0)

    def copy_with(self, **changes: Any) -> "SpikingNetwork":
        """Return a new network with some constructor arguments changed."""
        kwargs = dict(
            populations=list(self.populations.values()),
            projections=list(self.projections.values()),
            input=self.input,
            output=self.output,
            dt=self.dt,
            readout=self.readout,
            encoding=self.encoding,
            conversion=self.conversion,
            scales=self.scales,
            ann=self.ann,
            name=self.name,
            metadata=self.metadata,
            min_delay_steps=self.min_delay_steps,
        )
        kwargs.update(changes)
        return SpikingNetwork(**kwargs)  # type: ignore[arg-type]

    def save(self, path: str | os.PathLike[str], *, overwrite: bool = True) -> None:
        """Save to HDF5; see :func:`save_network`."""
        save_network(self, path, overwrite=overwrite)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> "SpikingNetwork":
        """Load from HDF5; see :func:`load_network`."""
        return load_network(path)


# -- HDF5 ------------------------------------------------------------------

_POP_SCALARS = ("n", "model", "reset", "v_reset", "v_rest", "tau_mem", "tau_syn", "r", "refractory", "role", "sign", "layer")


def save_network(net: SpikingNetwork, path: str | os.PathLike[str], *, overwrite: bool = True) -> None:
    """Write ``net`` to an HDF5 file in the ``spikebridge.snn`` format.

    Layout::

        /  attrs: format="spikebridge.snn", format_version=3 (4 with same-step delivery), name, input,
                  output, dt (s), min_delay_steps (0 or 1; absent = 1), readout, encoding, conversion,
                  scales, metadata (JSON)
           every text attribute a fixed-length UTF-8 string (variable-length over 60 000 bytes)
        /populations/<name>   attrs: scalar fields + shape + params (JSON);
                              datasets threshold, bias, v_init when per-neuron
        /projections/<name>   attrs: pre, post, target, kind, layer;
                              datasets pre_index (int32), post_index (int32),
                              weight (float64), delay (float64 s, scalar or per synapse);
                              a shared-kernel projection (version 2) has instead
                              attr operator (JSON: in_shape, stride, padding, groups),
                              datasets kernel (float64 (O, C/groups, kh, kw)) and delay
        /ann                  the source ANN in the spikebridge.ann layout (optional)

    Parameters
    ----------
    net : SpikingNetwork
    path : str or path-like
    overwrite : bool
        If False and the file exists, raise ``FileExistsError``.
    """
    from ..ir.serialize import write_graph_group

    with open_h5(path, "w" if overwrite else "x", what="network file") as f:
        # version 4 only for same-step delivery: older readers refuse it rather than run it a step late;
        # 5 only with burst populations (an older reader would run them as single spikes)
        burst = any(p.burst > 1 for p in net.populations.values())
        # 6 only with signed populations (an older reader would drop their negative spikes)
        signed = any(p.signed for p in net.populations.values())
        write_format(f, FORMAT, 6 if signed else 5 if burst else 4 if net.min_delay_steps == 0 else 3, fixed=True)
        f.attrs["name"] = text_attr(net.name)
        f.attrs["input"] = text_attr(net.input or "")
        f.attrs["output"] = text_attr(net.output or "")
        f.attrs["dt"] = net.dt
        f.attrs["min_delay_steps"] = np.int64(net.min_delay_steps)
        for key in ("readout", "encoding", "conversion", "scales", "metadata"):
            f.attrs[key] = text_attr(json_attr(getattr(net, key)))
        pops = f.create_group("populations")
        pops.attrs["order"] = text_attr(json_attr(list(net.populations)))
        for pop in net.populations.values():
            g = pops.create_group(pop.name)
            for key in _POP_SCALARS:
                g.attrs[key] = text_attr(json_attr(getattr(pop, key)))
            g.attrs["shape"] = text_attr(json_attr(list(pop.shape or ())))
            g.attrs["params"] = text_attr(json_attr(pop.params))
            for key in _ARRAY_FIELDS_POP:
                create_checked_dataset(g, key, np.asarray(getattr(pop, key), dtype=np.float64))
        projs = f.create_group("projections")
        projs.attrs["order"] = text_attr(json_attr(list(net.projections)))
        for proj in net.projections.values():
            g = projs.create_group(proj.name)
            for key in ("pre", "post", "target", "kind", "layer"):
                g.attrs[key] = text_attr(json_attr(getattr(proj, key)))
            big = proj.n_synapses > 4096
            opts: dict[str, Any] = {"compression": "gzip", "shuffle": True} if big else {}
            if proj.operator is not None:
                g.attrs["operator"] = text_attr(json_attr(proj.operator.to_attrs()))
                create_checked_dataset(g, "kernel", proj.operator.kernel)
                delay = np.asarray(proj.delay, dtype=np.float64)
                create_checked_dataset(g, "delay", delay, **(opts if delay.ndim else {}))
                continue
            create_checked_dataset(g, "pre_index", proj.pre_index.astype(np.int32), **opts)
            create_checked_dataset(g, "post_index", proj.post_index.astype(np.int32), **opts)
            create_checked_dataset(g, "weight", proj.weight, **opts)
            delay = np.asarray(proj.delay, dtype=np.float64)
            create_checked_dataset(g, "delay", delay, **(opts if delay.ndim else {}))
        if net.ann is not None:
            write_graph_group(f.create_group("ann"), net.ann)
        seal_attrs(f, f"network file '{path}'")


def load_network(path: str | os.PathLike[str]) -> SpikingNetwork:
    """Read a network written by :func:`save_network` (any format version 1..VERSION).

    Every attribute's type and size and every dataset's dtype, rank and declared
    size are checked before reading (see :func:`spikebridge._h5.read_attrs` and
    :func:`spikebridge._h5.read_array`); a damaged file gives one error, never
    h5py's low-level exceptions.

    Raises
    ------
    FileNotFoundError
    StoreFormatError
        Not HDF5, not a ``spikebridge.snn`` file, a newer version, or missing,
        damaged or inconsistent parts (the message names the file and the part).
    """
    where = f"network file '{path}'"
    with open_h5(path, "r", what="network file") as f:
        try:
            return _read_network(f, str(path), where)
        except SpikebridgeError as err:
            if isinstance(err, StoreFormatError):
                raise
            raise StoreFormatError(f"{where} is incomplete or inconsistent: {err}" if where not in str(err) else str(err)) from err
        except Exception as err:  # h5py's low-level errors of a damaged file, whatever their type
            text = str(err).splitlines()[0] if str(err) else ""
            raise StoreFormatError(f"{where} is incomplete or inconsistent: {type(err).__name__}: {text}") from err


#: JSON type of each population attribute (None: null allowed)
_POP_TYPES: dict[str, tuple[type, ...]] = {
    "n": (int,), "model": (str,), "reset": (str,), "v_reset": (int, float), "v_rest": (int, float),
    "tau_mem": (int, float, type(None)), "tau_syn": (int, float, type(None)), "r": (int, float),
    "refractory": (int, float), "role": (str,), "sign": (str,), "layer": (str, type(None)),
}


def _json_field(a: AttrView, key: str, kinds: tuple[type, ...]) -> Any:
    value = a.json(key, kind=kinds, what=" or ".join("null" if k is type(None) else k.__name__ for k in kinds))
    if isinstance(value, bool) or (isinstance(value, float) and not np.isfinite(value)):
        raise a.error(f"{a.where}: attribute {key!r} of '{a.path}' is {value!r}; expected {'/'.join(k.__name__ for k in kinds)}")
    return value


def _group(parent: Any, key: str, where: str) -> Any:
    import h5py

    name = f"{parent.name.rstrip('/')}/{key}"
    if key not in parent:
        raise StoreFormatError(f"{where}: missing group '{name}'")
    g = parent.get(key)
    if not isinstance(g, h5py.Group):
        raise StoreFormatError(f"{where}: '{name}' is not a group")
    return g


def _names(a: AttrView, group: Any) -> list[str]:
    """Member names in the order the ``order`` attribute gives (files without it: HDF5's order)."""
    order = a.json("order", None, (list, type(None)), "a JSON list of names")
    if order is None:
        return list(group)
    if not all(isinstance(n, str) for n in order) or len(set(order)) != len(order):
        raise StoreFormatError(f"{a.where}: attribute 'order' of '{a.path}' is not a list of distinct names")
    return order


def _read_network(f: Any, path: str, where: str) -> SpikingNetwork:
    from ..ir.serialize import read_graph_group

    E = StoreFormatError
    attrs = read_attrs(f, where, E)
    root = AttrView(attrs, "/", where, E)
    check_format(f, FORMAT, VERSION, path=path, attrs=root.values)
    # checksums are verified once the typed checks passed (their messages name the part): any mismatch
    # of an attribute or of a dataset's values then refuses the file
    damaged: list[str] = []
    # every array is held twice at the peak (as stored, and as the float64/int64 copy a Projection keeps)
    check_total_size(f, where, E)
    budget = array_budget()
    populations = []
    pops = _group(f, "populations", where)
    for name in _names(AttrView(attrs, pops.name, where, E), pops):
        g = _group(pops, name, where)
        a = AttrView(attrs, g.name, where, E)
        kwargs: dict[str, Any] = {key: _json_field(a, key, kinds) for key, kinds in _POP_TYPES.items()}
        if kwargs["n"] * 8 > budget:
            raise E(f"{where}: population '{name}' declares {kwargs['n']} neurons, more than the {budget / 1e6:.0f} MB "
                    "array budget allows (8 bytes per neuron; set SPIKEBRIDGE_MAX_ARRAY_BYTES to allow it)")
        shape = a.json("shape", kind=list, what="a JSON list of sizes")
        if not all(isinstance(s, int) and not isinstance(s, bool) for s in shape):
            raise E(f"{where}: attribute 'shape' of '{g.name}' is {shape!r}; expected a list of integers")
        kwargs["shape"] = tuple(shape)
        kwargs["params"] = a.json("params", {}, dict, "a JSON object")
        for key in _ARRAY_FIELDS_POP:
            kwargs[key] = read_array(g, key, where, E, attrs=attrs, mismatches=damaged)
        populations.append(Population(name=name, **kwargs))
    projections = []
    projs = _group(f, "projections", where)
    for name in _names(AttrView(attrs, projs.name, where, E), projs):
        g = _group(projs, name, where)
        a = AttrView(attrs, g.name, where, E)
        kwargs = {key: _json_field(a, key, (str,)) for key in ("pre", "post", "target", "kind")}
        kwargs["layer"] = _json_field(a, "layer", (str, type(None)))
        op_attrs = a.json("operator", None, (dict, type(None)), "a JSON object")
        if op_attrs is not None:
            kwargs["operator"] = SharedKernel.from_attrs(read_array(g, "kernel", where, E, ndims=(4,), attrs=attrs, mismatches=damaged), op_attrs)
        for key in ("pre_index", "post_index", "weight", "delay") if op_attrs is None else ("delay",):
            kwargs[key] = read_array(g, key, where, E, ndims=(0, 1) if key == "delay" else (1,),
                                     kinds="iu" if key.endswith("_index") else "iuf", attrs=attrs, mismatches=damaged)
        projections.append(Projection(name=name, **kwargs))
    ann = read_graph_group(_group(f, "ann", where), where=where, attrs=attrs, mismatches=damaged) if "ann" in f else None
    kinds = (dict,)
    net = SpikingNetwork(
        populations,
        projections,
        input=root.text("input", "") or None,
        output=root.text("output", "") or None,
        dt=root.number("dt"),
        # files written before same-step delivery existed: every delay was at least one step
        min_delay_steps=root.number("min_delay_steps", 1),
        ann=ann,
        name=root.text("name", "snn"),
        **{key: root.json(key, {}, kinds, "a JSON object") for key in ("readout", "encoding", "conversion", "scales", "metadata")},
    )
    refuse_mismatches(damaged, where, E)
    verify_attrs(attrs, where, E)
    return net
