"""Frozen configuration dataclasses for conversion and simulation.

All values are plain SI floats (seconds, hertz).  Vary a configuration with
:func:`dataclasses.replace`; read one from TOML with :func:`load_toml`.  A bad
field raises :class:`~spikebridge.errors.ValidationError` naming the field.
"""

from __future__ import annotations

import dataclasses
import math
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from .errors import ValidationError

__all__ = ["ConversionConfig", "SimulationConfig", "PRESETS", "preset", "load_toml", "parse_time", "parse_memory", "check_int"]

T = TypeVar("T", bound="_Config")

_TIME_UNITS = {"s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}
_MEM_UNITS = {"b": 1, "kb": 1e3, "mb": 1e6, "gb": 1e9, "kib": 2**10, "mib": 2**20, "gib": 2**30}


def parse_time(value: str | float | int, what: str = "time") -> float:
    """Parse ``"1ms"``, ``"0.5 s"``, ``"200us"`` or a number of seconds into seconds.

    Examples
    --------
    >>> parse_time("1ms")
    0.001
    >>> parse_time(0.002)
    0.002
    """
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    text = str(value).strip().replace(" ", "")
    for unit in sorted(_TIME_UNITS, key=len, reverse=True):
        if text.endswith(unit):
            number = text[: -len(unit)]
            try:
                return float(number) * _TIME_UNITS[unit]
            except ValueError:
                break
    try:
        return float(text)
    except ValueError:
        raise ValidationError(
            f"{what}: cannot read {value!r} as a time; use e.g. '1ms', '0.5s' or a number of seconds", attr=what
        ) from None


def parse_memory(value: str | float | int, what: str = "max_memory") -> float:
    """Parse ``"500MB"``, ``"2GiB"`` or a number of bytes into bytes.

    Examples
    --------
    >>> parse_memory("500MB")
    500000000.0
    """
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    text = str(value).strip().replace(" ", "").lower()
    for unit in sorted(_MEM_UNITS, key=len, reverse=True):
        if text.endswith(unit):
            try:
                return float(text[: -len(unit)]) * _MEM_UNITS[unit]
            except ValueError:
                break
    try:
        return float(text)
    except ValueError:
        raise ValidationError(f"{what}: cannot read {value!r} as a size; use e.g. '500MB' or '2GiB'", attr=what) from None


def _check_choice(obj: Any, attr: str, choices: tuple[str, ...]) -> None:
    value = getattr(obj, attr)
    if value not in choices:
        raise ValidationError(
            f"{type(obj).__name__}.{attr}: {value!r} is not one of {', '.join(map(repr, choices))}", attr=attr, obj=obj
        )


def _check_range(obj: Any, attr: str, lo: float | None = None, hi: float | None = None, *, lo_open: bool = False, allow_none: bool = False) -> None:
    value = getattr(obj, attr)
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValidationError(f"{type(obj).__name__}.{attr}: expected a finite number, got {value!r}", attr=attr, obj=obj)
    if lo is not None and (value < lo or (lo_open and value == lo)):
        op = ">" if lo_open else ">="
        raise ValidationError(f"{type(obj).__name__}.{attr}: must be {op} {lo}, got {value!r}", attr=attr, obj=obj)
    if hi is not None and value > hi:
        raise ValidationError(f"{type(obj).__name__}.{attr}: must be <= {hi}, got {value!r}", attr=attr, obj=obj)


#: largest seed: Brian2 seeds numpy's legacy generator (< 2**32) with ``seed + first sample``
MAX_SEED = 2**31 - 1


def check_int(value: Any, what: str, minimum: int = 1, maximum: int | None = None) -> int:
    """Return ``value`` if it is an int in ``[minimum, maximum]``, else raise ``ValidationError`` naming ``what``.

    Examples
    --------
    >>> check_int(5, "limit")
    5
    >>> check_int(-355, "--limit")
    Traceback (most recent call last):
    ...
    spikebridge.errors.ValidationError: --limit: must be an integer >= 1, got -355
    """
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum or (maximum is not None and value > maximum):
        bound = f">= {minimum}" if maximum is None else f"in {minimum}..{maximum}"
        raise ValidationError(f"{what}: must be an integer {bound}, got {value!r}", attr=what)
    return value


class _Config:
    def to_dict(self) -> dict[str, Any]:
        """Plain dict of all fields (tuples become lists), JSON/TOML friendly."""
        out = {}
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            out[f.name] = list(value) if isinstance(value, tuple) else value
        return out

    @classmethod
    def from_dict(cls: type[T], data: Mapping[str, Any]) -> T:
        """Build from a mapping; unknown keys raise ``ValidationError`` naming the key.

        Time-valued fields (names ending in ``dt``, ``delay``, ``tau_*``,
        ``refractory``, ``duration``, ``jitter``) accept ``"1ms"``-style strings;
        ``delay = "step"`` means one time step per projection (None, which TOML
        cannot write).
        """
        names = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        unknown = sorted(set(data) - set(names))
        if unknown:
            raise ValidationError(
                f"{cls.__name__}: unknown key(s) {unknown}; known keys: {', '.join(sorted(names))}", attr=unknown[0]
            )
        kwargs: dict[str, Any] = {}
        for key, value in data.items():
            if key == "delay" and isinstance(value, str) and value.strip().lower() == "step":
                kwargs[key] = None
                continue
            if key in cls._time_fields and isinstance(value, str):
                value = parse_time(value, f"{cls.__name__}.{key}")
            if key == "max_memory" and isinstance(value, str):
                value = parse_memory(value)
            if isinstance(value, list):
                value = tuple(value)
            kwargs[key] = value
        return cls(**kwargs)

    _time_fields: frozenset[str] = frozenset()


@dataclass(frozen=True, kw_only=True)
class ConversionConfig(_Config):
    """How an ANN becomes a spiking network.

    Parameters
    ----------
    normalisation : {"data", "none"}
        ``"data"``: per-layer scale λ_l from the ``percentile`` of activations on
        calibration data, ``W_l ← W_l λ_{l-1}/λ_l``, ``b_l ← b_l/λ_l``.
    percentile : float
        Percentile in (0, 100] used for λ_l (100 = max).
    neuron : {"if", "lif"}
        Non-leaky integrate-and-fire or leaky IF.
    tau_mem : float
        Membrane time constant in seconds (``"lif"`` only).
    threshold : float
        Firing threshold in normalised membrane units.
    reset : {"subtract", "zero"}
        Reset by subtraction of the threshold, or to zero.
    refractory : float
        Refractory period in seconds (0 = none).
    v_init : float
        Initial membrane potential as a fraction of the threshold (0.5, the
        default, rounds rates to the nearest spike and cuts latency; was 0).
    dt : float
        Time step in seconds the network is converted for; one step at the
        maximal rate carries one unit of activation.
    delay : float, "step" or None
        Synaptic delay per projection in seconds (``"step"`` is stored as None).  0 (the default) =
        same-step delivery: a spike reaches the next layer within the step
        it was emitted (populations update in topological order, the network
        gets ``min_delay_steps=0``), so the read-out has no pipeline latency;
        recurrent and lateral projections keep one step.  None = one time
        step per projection (a pipeline: layer ``l`` starts ``l - 1`` steps
        late; the default before the same-step measurements).
    delay_jitter : float
        Extra per-synapse delay drawn uniformly from [0, delay_jitter] seconds
        (rounded to whole steps) with ``seed``; 0 = homogeneous.
    input_encoding : {"current", "poisson", "regular"}
        Constant current proportional to the input, Poisson trains, or regular trains.
    max_rate : float
        Maximal input rate in hertz for spike encodings (at most 1/dt).
    output : {"count", "potential"}
        Decode by spike counts (ties broken by membrane potential) or by a
        non-spiking integrating output layer.
    maxpool : {"gate", "tree", "avg", "refuse"}
        How max pooling is converted (see ``docs/conversion.md``): spiking OR
        gate, tournament of rectified differences (converges to the max),
        average pooling, or refuse.
    avgpool : {"population", "fold"}
        Average pooling of spiking activity as a population of its own
        (a shared pooling kernel, one more layer of spiking neurons), or
        folded into the next linear layer's synapses (one quantising layer
        fewer, so more accurate at small T; more synapses per spike, and
        the pooled activity is not observable as spikes).
    scales : {"channel", "layer"}
        One normalisation scale per channel of convolutional populations
        (default; ``conversion/calibrate.py``), or one per layer.
    calibrate : {"none", "bias", "potential", "both", "offset"}
        Post-conversion calibration on the calibration data (Li et al. 2021):
        correct biases and/or initial potentials layer by layer from the rate
        error of a simulated run.  ``"offset"``: offset-spike calibration (after
        Hao et al. 2023): layer by layer, each neuron's mean offset (its spike
        count minus the count of an exact quantiser of its ANN activation,
        ``clip(floor(T a/λ + v_init/θ), 0, T·burst)``) over the calibration runs,
        rounded to whole spikes, is removed by shifting its initial potential by
        that many thresholds.  ``"offset_mean"``: the same with the mean offset
        not rounded (a fractional shift of the initial potential, so a neuron
        whose offset varies between inputs is corrected on average).
    calibrate_steps : int
        Time steps of the calibration runs (the T the network is tuned for).
    calibrate_samples : int
        Calibration samples simulated by ``calibrate``.
    normalisation_samples : int or None
        Calibration samples whose activations set the scales of
        ``normalisation="data"`` (the first ones given; default 5,000, which
        fixes a 99.9th percentile well).  None = every sample given; memory
        grows with it (all layers' activations are held: 60,000 MNIST images
        through a small CNN need ~19 GB), and ``convert`` refuses a sample
        whose activations would not fit the machine's available memory.
    task : {"auto", "classification", "regression"}
        ``"auto"`` reads the model's metadata, else assumes classification.
    dale : {"none", "relay", "pooled"}
        Excitatory/inhibitory split (Dale's law).
    dale_ratio : float
        Excitatory:inhibitory ratio of the ``"pooled"`` split.
    lateral_inhibition : float
        Strength of winner-take-all inhibition among output neurons (0 = off).
    seed : int
        Seed for the random parts of conversion (delays, pooled factorisation), 0 .. 2**31 - 1.
    bias_onset : {"arrival", "start"}
        When a hidden IF population's bias starts to count: when its first input
        can arrive (default; its initial potential is lowered by ``bias · onset``,
        ``conversion/onset.py``), or from step 0 (before the ResNet-8
        measurements; deep networks then fire on their biases alone early on).
    burst : int
        Most spikes a hidden neuron may emit in one step (burst spikes, Li & Zeng
        2022; 1 = off): where ``v >= θ`` it emits ``n = min(floor(v/θ), burst)``
        spikes and subtracts ``n θ``, so activity above one spike per step is not
        lost, and the scale ``λ_l`` may be a lower percentile. Needs same-step
        delivery (``delay=0``, no jitter), reset by subtraction, no refractory
        period and ``dale="none"``.
    signed : bool
        Signed neurons with memory (Wang et al. 2022; False = off): a hidden neuron that has
        emitted more positive than negative spikes emits one negative spike (``v += θ``, each
        synapse delivers ``-w``) in a step where its potential is below 0 after the threshold
        test, so a neuron that fired early on input that later turned net-negative takes the
        spike back; its net count then tracks ``floor(v_init/θ + Σ input/θ)``, the count of an
        exact quantiser of its total input.  Negative spikes come in bursts too:
        ``n = -min(ceil(-v/θ), burst, count)``.  With ``burst > 1`` the populations of
        clipped ReLUs (QCFS layers) burst as well, capped so that a neuron's net count never
        exceeds the steps so far (its clip level; ``params["rate_cap"]``): they catch up on
        input that arrived late and take back what fired too early, so at ``T = L`` a QCFS
        network's SNN computes its quantised ANN exactly.  Same conditions as ``burst``
        (same-step delivery, reset by subtraction, no refractory period, ``dale="none"``).
    steps_per_element : int
        Recurrent (sequence) models only: time steps ``K`` per sequence element.  Element
        ``t`` is presented during window ``t`` (steps ``tK .. tK + K - 1``) and the recurrent
        projection carries a delay of ``K dt``, so the spikes of window ``t - 1`` drive window
        ``t`` (:mod:`spikebridge.conversion.sequence`).
    neurons_per_unit : int
        Recurrent (sequence) models only: IF neurons per hidden ANN unit (1 = one each).  The ``M``
        copies of a unit get the same input and staggered initial potentials ``(m + v_init)/M θ``;
        their summed count resolves ``λ/(M K)`` instead of ``λ/K`` per window, at ``M`` times the
        neurons and spikes and ``M²`` times the recurrent synapses.
    fixed_point : bool
        Round each projection's weights to a multiple of ``2**-e``, ``e`` per projection the
        largest for which the largest summed ``|w|`` onto one neuron stays within ``2**24`` grid
        units (False = off; :mod:`spikebridge.conversion.fixedpoint`).  Every sum of a step's
        input is then exact in float32, so its order cannot change a spike, and the tensor
        engine may run dense float32 convolutions with the exact path's spikes.  A weight moves
        by at most ``2**-25`` of the largest fan-in sum.
    weight_bits : int or None
        Weights as signed integers of this many bits (2–24) times a power of two per projection,
        as neuromorphic chips store them (8: Loihi's synapses); implies ``fixed_point``, whose
        exactness it keeps.  With 8 bits the tensor engine's int8 convolutions run one digit
        instead of three.  None = no bound beyond ``fixed_point``'s.  A weight moves by less than
        ``1 / (2**(weight_bits-1) - 1)`` of its projection's largest weight (8 bits: 0.8 %): a
        different network, so measure its accuracy (docs/conversion.md#k-bit-weights has the
        shipped models').
    """

    normalisation: str = "data"
    percentile: float = 99.9
    neuron: str = "if"
    tau_mem: float = 0.02
    threshold: float = 1.0
    reset: str = "subtract"
    refractory: float = 0.0
    v_init: float = 0.5
    dt: float = 1e-3
    delay: float | None = 0.0
    delay_jitter: float = 0.0
    input_encoding: str = "current"
    max_rate: float = 1000.0
    output: str = "count"
    maxpool: str = "tree"
    avgpool: str = "population"
    scales: str = "channel"
    calibrate: str = "none"
    calibrate_steps: int = 64
    calibrate_samples: int = 256
    normalisation_samples: int | None = 5_000
    task: str = "auto"
    dale: str = "none"
    dale_ratio: float = 4.0
    lateral_inhibition: float = 0.0
    seed: int = 0
    bias_onset: str = "arrival"
    burst: int = 1
    signed: bool = False
    steps_per_element: int = 32
    neurons_per_unit: int = 1
    fixed_point: bool = False
    weight_bits: int | None = None

    _time_fields = frozenset({"tau_mem", "refractory", "dt", "delay", "delay_jitter"})

    def __post_init__(self) -> None:
        if isinstance(self.delay, str) and self.delay.strip().lower() == "step":
            # as in the CLI and TOML: one time step per projection
            object.__setattr__(self, "delay", None)
        _check_choice(self, "normalisation", ("data", "none"))
        _check_range(self, "percentile", 0.0, 100.0, lo_open=True)
        _check_choice(self, "neuron", ("if", "lif"))
        _check_range(self, "tau_mem", 0.0, lo_open=True)
        _check_range(self, "threshold", 0.0, lo_open=True)
        _check_choice(self, "reset", ("subtract", "zero"))
        _check_range(self, "refractory", 0.0)
        _check_range(self, "v_init", 0.0, 1.0)
        _check_range(self, "dt", 0.0, lo_open=True)
        _check_range(self, "delay", 0.0, allow_none=True)
        _check_range(self, "delay_jitter", 0.0)
        _check_choice(self, "input_encoding", ("current", "poisson", "regular"))
        _check_range(self, "max_rate", 0.0, 1.0 / self.dt + 1e-9, lo_open=True)
        _check_choice(self, "output", ("count", "potential"))
        _check_choice(self, "maxpool", ("gate", "tree", "avg", "refuse"))
        _check_choice(self, "avgpool", ("population", "fold"))
        _check_choice(self, "scales", ("layer", "channel"))
        _check_choice(self, "calibrate", ("none", "bias", "potential", "both", "offset", "offset_mean"))
        for attr in ("calibrate_steps", "calibrate_samples", "steps_per_element", "neurons_per_unit"):
            value = getattr(self, attr)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValidationError(f"ConversionConfig.{attr}: must be an int >= 1, got {value!r}", attr=attr, obj=self)
        ns = self.normalisation_samples
        if ns is not None and (not isinstance(ns, int) or isinstance(ns, bool) or ns < 1):
            raise ValidationError(
                f"ConversionConfig.normalisation_samples: must be an int >= 1 or None (all), got {ns!r}",
                attr="normalisation_samples", obj=self,
            )
        _check_choice(self, "task", ("auto", "classification", "regression"))
        _check_choice(self, "dale", ("none", "relay", "pooled"))
        _check_range(self, "dale_ratio", 0.0, lo_open=True)
        _check_range(self, "lateral_inhibition", 0.0)
        check_int(self.seed, "ConversionConfig.seed", 0, MAX_SEED)
        _check_choice(self, "bias_onset", ("arrival", "start"))
        check_int(self.burst, "ConversionConfig.burst", 1, 64)
        if self.burst > 1:
            for bad, why in ((self.delay != 0, f"delay={self.delay!r} (needs 0, same-step delivery)"),
                             (self.delay_jitter > 0, f"delay_jitter={self.delay_jitter!r} (needs 0)"),
                             (self.reset != "subtract", f"reset={self.reset!r} (needs 'subtract')"),
                             (self.refractory > 0, f"refractory={self.refractory!r} (needs 0)"),
                             (self.dale != "none", f"dale={self.dale!r} (needs 'none')")):
                if bad:
                    raise ValidationError(f"ConversionConfig.burst: burst spikes cannot be used with {why}",
                                          attr="burst", obj=self)
        if not isinstance(self.fixed_point, bool):
            raise ValidationError(f"ConversionConfig.fixed_point: must be a bool, got {self.fixed_point!r}",
                                  attr="fixed_point", obj=self)
        if self.weight_bits is not None:
            check_int(self.weight_bits, "ConversionConfig.weight_bits", MIN_WEIGHT_BITS, MAX_WEIGHT_BITS)
        if not isinstance(self.signed, bool):
            raise ValidationError(f"ConversionConfig.signed: must be a bool, got {self.signed!r}", attr="signed", obj=self)
        if self.signed:
            for bad, why in ((self.delay != 0, f"delay={self.delay!r} (needs 0, same-step delivery)"),
                             (self.delay_jitter > 0, f"delay_jitter={self.delay_jitter!r} (needs 0)"),
                             (self.reset != "subtract", f"reset={self.reset!r} (needs 'subtract')"),
                             (self.refractory > 0, f"refractory={self.refractory!r} (needs 0)"),
                             (self.neuron not in ("if", "lif"), f"neuron={self.neuron!r} (needs 'if' or 'lif')"),
                             (self.dale != "none", f"dale={self.dale!r} (needs 'none')")):
                if bad:
                    raise ValidationError(f"ConversionConfig.signed: signed neurons cannot be used with {why}",
                                          attr="signed", obj=self)


#: the range of ``ConversionConfig.weight_bits``: two bits is the least that holds a sign and a
#: magnitude; beyond 24 bits the fixed-point grid's fan-in bound always binds first
MIN_WEIGHT_BITS, MAX_WEIGHT_BITS = 2, 24


#: named conversion settings (``preset(name)``, CLI ``--preset``); see docs/conversion.md for the measurements
PRESETS: dict[str, ConversionConfig] = {
    # the defaults before the real-data measurements (issue 11): textbook values, one step per layer,
    # biases from step 0
    "classic": ConversionConfig(percentile=99.9, v_init=0.0, maxpool="gate", scales="layer", calibrate="none", delay=None,
                                bias_onset="start"),
    # half-threshold start and max scaling, with the OR-gate max-pool, one step per layer
    "tuned_gate": ConversionConfig(percentile=100.0, v_init=0.5, maxpool="gate", scales="layer", calibrate="none",
                                   delay=None),
    # the defaults chosen from the measurements (docs/conversion.md#defaults-and-presets)
    "default": ConversionConfig(percentile=99.9, v_init=0.5, maxpool="tree", scales="channel", calibrate="none",
                                delay=0.0),
    # the defaults with one step per projection (a pipeline; the defaults before same-step delivery)
    "pipelined": ConversionConfig(percentile=99.9, v_init=0.5, maxpool="tree", scales="channel", calibrate="none",
                                  delay=None),
    # max scaling and one scale per layer: a little better on the regressor, slower at small T
    "tree_max": ConversionConfig(percentile=100.0, v_init=0.5, maxpool="tree", scales="layer", calibrate="none",
                                 delay=0.0),
    # the defaults with average pooling folded into the next layer: the most accurate at T <= 8
    # on average-pooling CNNs (docs/conversion.md#latency-same-step-delivery-and-folded-pooling)
    "low_latency": ConversionConfig(percentile=99.9, v_init=0.5, maxpool="tree", scales="channel", calibrate="none",
                                    delay=0.0, avgpool="fold"),
    # T <= 8 on deep ReLU networks without retraining: burst spikes (up to 4 per step) with the 90th
    # percentile as scale (chosen on a validation split of the F-MNIST training set: 95 -> 90 gave
    # +1 to +1.5 points on the ResNet-8 at T=4-8), and offset-spike calibration at T=4
    # (docs/conversion.md#low-latency-on-deep-networks)
    "low_latency_burst": ConversionConfig(percentile=90.0, v_init=0.5, maxpool="tree", scales="channel", delay=0.0,
                                          avgpool="fold", burst=4, calibrate="offset", calibrate_steps=4,
                                          calibrate_samples=128),
    # QCFS-trained networks (L = 4) at T <= 8: signed neurons with capped bursts (exact at T = L), a
    # non-spiking read-out, unrounded offset calibration; set calibrate_steps to the T you will run
    # (docs/conversion.md#low-latency-on-deep-networks)
    "low_latency_qcfs": ConversionConfig(v_init=0.5, maxpool="tree", scales="channel", delay=0.0, avgpool="fold",
                                         output="potential", burst=4, signed=True, calibrate="offset_mean",
                                         calibrate_steps=4, calibrate_samples=128),
}


def preset(name: str, **changes: Any) -> ConversionConfig:
    """A named conversion preset, optionally with some fields changed.

    Examples
    --------
    >>> preset("classic").v_init, preset("default", v_init=0.25).maxpool
    (0.0, 'tree')
    """
    if name not in PRESETS:
        raise ValidationError(f"unknown conversion preset {name!r}; expected one of {', '.join(map(repr, PRESETS))}", attr="preset")
    return dataclasses.replace(PRESETS[name], **changes)


#: schemes of Dask scheduler addresses that reach another process (inproc:// is a scheduler inside this process)
_SCHEDULER_SCHEMES = ("tcp", "tls", "ws", "wss", "ucx")


def _scheduler_problem(address: object) -> str:
    """Why ``address`` is not a usable ``scheme://host:port`` Dask scheduler address ("" if it is)."""
    if not isinstance(address, str):
        return "not a string"
    scheme, sep, rest = address.partition("://")
    if not sep:
        return "no scheme (tcp://, tls://, ws://, wss://, ucx://)"
    if scheme not in _SCHEDULER_SCHEMES:
        return f"scheme {scheme!r} is not one of {', '.join(_SCHEDULER_SCHEMES)} (use 'local' for a cluster on this machine)"
    host, colon, port = rest.rpartition(":")
    if not colon or not host.strip("[]"):
        return "no host:port after the scheme"
    if not port.isdigit() or not 0 < int(port) < 65536:
        return f"port {port!r} is not a number from 1 to 65535"
    return ""


@dataclass(frozen=True, kw_only=True)
class SimulationConfig(_Config):
    """How a spiking network is simulated in Brian2.

    Parameters
    ----------
    n_steps : int
        Number of time steps per sample.
    dt : float or None
        Time step in seconds; None = the network's own ``dt``.
    batch_size : int or None
        Samples simulated together in one Brian2 network; None = as many as
        ``max_memory`` allows.
    target : {"auto", "numpy", "cython", "cpp_standalone"}
        Brian2 code-generation target; ``"auto"`` = cython where a compiler works and
        Brian2's Cython cache already holds compiled code, else numpy (a first run compiles
        nothing).  Any other value makes ``engine="auto"`` pick Brian2.
    seed : int
        Seed for Brian2 and numpy (Poisson inputs, random initial states), 0 .. 2**31 - 1.
    max_memory : float
        Memory budget in bytes for one batch's Brian2 objects.
    record : tuple of str
        Populations whose every spike is returned (``("all",)`` for all).
    progress : bool
        Show a progress bar over batches (tqdm, on stderr).
    build_dir : str or None
        Directory for ``cpp_standalone`` builds (None = a cache directory).
    threads : int
        OpenMP threads of ``cpp_standalone`` runs (1 = no OpenMP); with the
        tensor engine on CPU, threads that share each batch.
    workers : int
        Processes that simulate batches in parallel with the runtime targets
        (numpy, cython); Brian2's runtime is single-threaded, so this is how
        more than one core is used. 0 = one per CPU core. ``max_memory`` is
        shared among them.
    engine : {"brian2", "tensor", "auto"}
        ``"brian2"``: explicit synapses in Brian2 (``target`` applies).
        ``"tensor"``: batched arrays with shared convolution kernels (numpy or
        torch; same spikes).  ``"auto"`` (the default): brian2 when a ``target``
        other than ``"auto"`` is given, tensor for a ``device`` other than
        ``"cpu"``, for networks with shared-kernel (convolution/pooling)
        projections or when one sample does not fit ``max_memory`` in Brian2,
        else brian2; the choice and its reason are logged in one line (logger
        ``spikebridge.notice``, shown by the CLI).
    device : str
        Where the tensor engine runs: ``"cpu"`` (numpy/scipy, always
        available), ``"torch"`` (torch on CPU threads), ``"cuda"`` or
        ``"cuda:N"`` (torch on a GPU).  Brian2 ignores it.
    scheduler : str or None
        Run batches as Dask tasks (``pip install "spikebridge[distributed]"``):
        ``"local"`` starts a ``LocalCluster`` of ``workers`` processes on
        loopback, ``"tcp://host:port"`` uses a running Dask scheduler; None =
        no Dask. Results are identical; see ``docs/distributed.md``.
    precision : {"float64", "float32"}
        Arithmetic of the tensor engine on ``device="cpu"``. ``"float64"`` (the
        default): the same spikes as Brian2 and the reference simulator, bit for
        bit. ``"float32"`` (opt-in, needs ``engine="tensor"``): single precision
        and unordered BLAS/torch sums, as SpikingJelly runs; faster, but a
        threshold crossing may move, so spikes differ from the exact path's
        (accuracy compared in ``docs/engines.md``).
    """

    n_steps: int = 128
    dt: float | None = None
    batch_size: int | None = None
    target: str = "auto"
    seed: int = 0
    max_memory: float = 500e6
    record: tuple[str, ...] = ()
    progress: bool = False
    build_dir: str | None = None
    threads: int = 1
    workers: int = 1
    engine: str = "auto"
    device: str = "cpu"
    scheduler: str | None = None
    precision: str = "float64"

    _time_fields = frozenset({"dt"})

    def __post_init__(self) -> None:
        if not isinstance(self.n_steps, int) or isinstance(self.n_steps, bool) or self.n_steps < 1:
            raise ValidationError(f"SimulationConfig.n_steps: must be an int >= 1, got {self.n_steps!r}", attr="n_steps", obj=self)
        _check_range(self, "dt", 0.0, lo_open=True, allow_none=True)
        if self.batch_size is not None and (not isinstance(self.batch_size, int) or self.batch_size < 1):
            raise ValidationError(
                f"SimulationConfig.batch_size: must be an int >= 1 or None, got {self.batch_size!r}", attr="batch_size", obj=self
            )
        _check_choice(self, "target", ("auto", "numpy", "cython", "cpp_standalone"))
        _check_choice(self, "engine", ("brian2", "tensor", "auto"))
        if not isinstance(self.device, str) or not (
            self.device in ("cpu", "torch", "cuda") or (self.device.startswith("cuda:") and self.device[5:].isdigit())
        ):
            raise ValidationError(
                f"SimulationConfig.device: {self.device!r} is not 'cpu', 'torch', 'cuda' or 'cuda:N'", attr="device", obj=self
            )
        check_int(self.seed, "SimulationConfig.seed", 0, MAX_SEED)
        _check_choice(self, "precision", ("float64", "float32"))
        if self.precision == "float32" and (self.engine != "tensor" or self.device != "cpu"):
            raise ValidationError(
                f"SimulationConfig.precision: 'float32' runs on engine='tensor', device='cpu' only "
                f"(got engine={self.engine!r}, device={self.device!r})", attr="precision", obj=self,
            )
        _check_range(self, "max_memory", 1.0)
        if not isinstance(self.threads, int) or isinstance(self.threads, bool) or self.threads < 1:
            raise ValidationError(f"SimulationConfig.threads: must be an int >= 1, got {self.threads!r}", attr="threads", obj=self)
        if not isinstance(self.workers, int) or isinstance(self.workers, bool) or self.workers < 0:
            raise ValidationError(f"SimulationConfig.workers: must be an int >= 0, got {self.workers!r}", attr="workers", obj=self)
        if self.scheduler is not None and self.scheduler != "local":
            problem = _scheduler_problem(self.scheduler)
            if problem:
                raise ValidationError(
                    f"SimulationConfig.scheduler: {problem}; expected None, 'local' or a Dask scheduler address like "
                    f"'tcp://host:8786', got {self.scheduler!r}",
                    attr="scheduler", obj=self,
                )
        if isinstance(self.record, str):
            object.__setattr__(self, "record", (self.record,))
        elif isinstance(self.record, (list, tuple)) and all(isinstance(r, str) for r in self.record):
            object.__setattr__(self, "record", tuple(self.record))
        else:
            raise ValidationError(
                f"SimulationConfig.record: expected population names (a string or a list of strings), got {self.record!r}",
                attr="record", obj=self,
            )


def load_toml(path: str | Path) -> dict[str, Any]:
    """Read a TOML file into a dict, with a one-line error for bad syntax.

    Raises
    ------
    FileNotFoundError
    ValidationError
        If the file is not valid TOML (the message has line and column).
    """
    p = Path(path)
    try:
        with p.open("rb") as fh:
            return tomllib.load(fh)
    except tomllib.TOMLDecodeError as err:
        raise ValidationError(f"config file '{p}': {err}") from err
