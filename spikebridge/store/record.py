"""In-memory simulation results: spike trains and per-sample read-outs."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np
from numpy.typing import NDArray

from ..errors import ValidationError

__all__ = ["Counts", "SpikeTrains", "SpikeRecord", "concat_records", "pack_spikes", "unpack_spikes"]


@dataclass(frozen=True, kw_only=True, eq=False)
class SpikeTrains:
    """All spikes of one population over a set of samples.

    Spikes are stored flat and sorted by (sample, step, neuron); ``times`` are
    ``step * dt`` seconds from the start of each sample.

    Parameters
    ----------
    n_neurons : int
        Neurons per sample.
    n_samples : int
    dt : float
        Time step in seconds.
    sample, neuron, step : ndarray of int32, shape (n_spikes,)
    """

    n_neurons: int
    n_samples: int
    dt: float
    sample: NDArray[np.int32]
    neuron: NDArray[np.int32]
    step: NDArray[np.int32]

    def __post_init__(self) -> None:
        arrays = [np.asarray(getattr(self, k), dtype=np.int32) for k in ("sample", "neuron", "step")]
        if not (arrays[0].shape == arrays[1].shape == arrays[2].shape) or arrays[0].ndim != 1:
            raise ValidationError("SpikeTrains: sample, neuron and step must be 1-D arrays of equal length")
        if arrays[0].size:
            if arrays[0].min() < 0 or arrays[0].max() >= self.n_samples:
                raise ValidationError(f"SpikeTrains: sample index out of range [0, {self.n_samples})")
            if arrays[1].min() < 0 or arrays[1].max() >= self.n_neurons:
                raise ValidationError(f"SpikeTrains: neuron index out of range [0, {self.n_neurons})")
        # Stores and the backend hand over spikes already in (sample, step, neuron)
        # order; an O(n) check saves the O(n log n) sort on reads of large stores.
        # One int64 key built in place (the steps' range is not checked: any max works).
        order = None
        if arrays[0].size >= 2:
            t = arrays[2]
            flat = arrays[0].astype(np.int64)
            flat *= int(t.max()) - min(int(t.min()), 0) + 1
            flat += t
            flat *= self.n_neurons
            flat += arrays[1]
            if not bool((flat[1:] >= flat[:-1]).all()):
                order = np.lexsort((arrays[1], arrays[2], arrays[0]))
        for name, arr in zip(("sample", "neuron", "step"), arrays):
            if order is not None:
                arr = arr[order]
            arr.setflags(write=False)
            object.__setattr__(self, name, arr)

    @classmethod
    def _from_sorted(cls, n_neurons: int, n_samples: int, dt: float, sample: NDArray[np.int32],
                     neuron: NDArray[np.int32], step: NDArray[np.int32]) -> "SpikeTrains":
        """Spike trains from int32 arrays the caller built in range and in (sample, step, neuron) order.

        Skips the O(n) checks of the constructor (several passes over every spike): for engines that
        extract spikes in that order, and for joining batches that were checked already.
        """
        obj = cls.__new__(cls)
        for name, value in (("n_neurons", n_neurons), ("n_samples", n_samples), ("dt", dt)):
            object.__setattr__(obj, name, value)
        for name, arr in (("sample", sample), ("neuron", neuron), ("step", step)):
            arr = np.asarray(arr, dtype=np.int32)
            arr.setflags(write=False)
            object.__setattr__(obj, name, arr)
        return obj

    @classmethod
    def from_packed(cls, bits: NDArray[np.uint8], n_neurons: int, dt: float) -> "SpikeTrains":
        """Spike trains from a packed spike raster, decoded to index arrays only when first read.

        A simulation that produces spikes as a raster, and a store that keeps them as one, hand
        them on without building ``sample``/``neuron``/``step`` (12 bytes per spike); those are
        decoded, in (sample, step, neuron) order, on first access.  :attr:`packed` gives the raster.

        Parameters
        ----------
        bits : ndarray of uint8, shape (n_samples, n_steps, ceil(n_neurons / 8))
            ``np.packbits(raster, axis=-1)`` of a boolean raster (n_samples, n_steps, n_neurons):
            neuron ``j`` is bit ``7 - j % 8`` (most significant first) of byte ``j // 8``; the
            padding bits past ``n_neurons`` are zero.
        n_neurons : int
        dt : float
            Time step in seconds.
        """
        bits = np.asarray(bits, dtype=np.uint8)
        nb = -(-int(n_neurons) // 8)
        if bits.ndim != 3 or bits.shape[2] != nb:
            raise ValidationError(f"SpikeTrains.from_packed: bits of shape {bits.shape}, expected (n_samples, n_steps, {nb})")
        if n_neurons % 8 and bits.size and np.any(bits[..., -1] & np.uint8((1 << (8 - n_neurons % 8)) - 1)):
            raise ValidationError(f"SpikeTrains.from_packed: bits set past neuron {n_neurons - 1}")
        obj = cls.__new__(cls)
        for name, value in (("n_neurons", int(n_neurons)), ("n_samples", int(bits.shape[0])), ("dt", float(dt)), ("_packed", bits)):
            object.__setattr__(obj, name, value)
        bits.setflags(write=False)
        return obj

    def __getattr__(self, name: str) -> Any:
        # only called for attributes not set: the index arrays of trains made by from_packed
        packed = self.__dict__.get("_packed")
        if name in ("sample", "neuron", "step") and packed is not None:
            arrays = unpack_spikes(packed, self.n_neurons)
            for key, arr in zip(("sample", "neuron", "step"), arrays):
                arr.setflags(write=False)
                object.__setattr__(self, key, arr)
            return self.__dict__[name]
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    @property
    def packed(self) -> NDArray[np.uint8] | None:
        """The packed raster (n_samples, n_steps, ceil(n_neurons / 8)) these trains were made from, or None."""
        return cast("NDArray[np.uint8] | None", self.__dict__.get("_packed"))

    @property
    def n_spikes(self) -> int:
        if "sample" not in self.__dict__ and self.packed is not None:
            return int(np.bitwise_count(self.packed).sum(dtype=np.int64))
        return int(self.sample.size)

    @property
    def times(self) -> NDArray[np.float64]:
        """Spike times in seconds from each sample's start."""
        return self.step.astype(np.float64) * self.dt

    def for_sample(self, k: int) -> tuple[NDArray[np.int32], NDArray[np.float64]]:
        """Neuron indices and times (s) of sample ``k``."""
        lo, hi = np.searchsorted(self.sample, [k, k + 1])
        return self.neuron[lo:hi], self.step[lo:hi].astype(np.float64) * self.dt

    def counts(self) -> NDArray[np.int64]:
        """Spike counts, shape (n_samples, n_neurons)."""
        packed = self.packed
        if packed is not None and "sample" not in self.__dict__:
            out = np.zeros((self.n_samples, self.n_neurons), dtype=np.int64)
            for k in range(self.n_samples):
                out[k] = np.unpackbits(packed[k], axis=-1, count=self.n_neurons).sum(axis=0)
            return out
        out = np.zeros((self.n_samples, self.n_neurons), dtype=np.int64)
        np.add.at(out, (self.sample, self.neuron), 1)
        return out


class Counts(MutableMapping[str, NDArray[np.int64]]):
    """Spike counts per population: a mapping of population name to int64 arrays (n_samples, n_neurons).

    An engine may hand over counts in a narrower integer type (the tensor engine counts in uint16:
    a neuron fires at most once a step).  A population's array is widened to int64 at its first
    access and replaces the narrow one, so what a reader gets and modifies is what is kept.
    Joining batches (:func:`concat_records`) and writing a store use :meth:`raw`, so counts
    nobody reads are never widened: for the Fashion-MNIST VGG (44,762 neurons), 1,000 images,
    that saves writing and joining 358 MB of int64, about a tenth of the run on 2 cores.

    Parameters
    ----------
    data : mapping of str to integer ndarray, optional

    Raises
    ------
    ValidationError
        Counts that are not integers.
    """

    def __init__(self, data: Mapping[str, Any] | None = None) -> None:
        self._arrays: dict[str, NDArray[Any]] = {}
        for name, arr in (data or {}).items():
            self[name] = arr

    def raw(self, name: str) -> NDArray[Any]:
        """The array as kept, without widening it (its integer type may be narrower than int64)."""
        return self._arrays[name]

    def __getitem__(self, name: str) -> NDArray[np.int64]:
        arr = self._arrays[name]
        if arr.dtype != np.int64:
            arr = self._arrays[name] = arr.astype(np.int64)
        return arr

    def __setitem__(self, name: str, arr: Any) -> None:
        a = np.asarray(arr)
        if a.dtype.kind not in "iu":
            raise ValidationError(f"Counts: the counts of {name!r} must be integers, got {a.dtype}", attr="counts")
        self._arrays[name] = a

    def __delitem__(self, name: str) -> None:
        del self._arrays[name]

    def __contains__(self, name: object) -> bool:  # Mapping's would widen the array to answer
        return name in self._arrays

    def __iter__(self) -> Iterator[str]:
        return iter(self._arrays)

    def __len__(self) -> int:
        return len(self._arrays)

    def __repr__(self) -> str:
        return "Counts(" + ", ".join(f"{k!r}: {a.dtype}{a.shape}" for k, a in self._arrays.items()) + ")"


@dataclass(kw_only=True, eq=False)
class SpikeRecord:
    """What a simulation returns for a batch of samples.

    Parameters
    ----------
    n_samples, n_steps : int
    dt : float
        Time step in seconds.
    output_counts_t : ndarray of int32, shape (n_samples, n_steps, n_out)
        Cumulative spike counts of the output population after each step
        (for a non-spiking read-out: zeros).
    output_potential_t : ndarray of float32, shape (n_samples, n_steps, n_out)
        Output membrane potential after each step (tie-breaking and the
        ``"potential"`` read-out).
    counts : Counts (mapping of str to int64 ndarray (n_samples, n_neurons))
        Total spike count of every neuron of every spiking population.  Any mapping of integer
        arrays is accepted and wrapped in :class:`Counts`.
    spikes : dict of str to SpikeTrains
        Every spike of the populations asked for in ``SimulationConfig.record``.
    readout : dict
        Copy of the network's read-out description (mode, task, scale, latency_steps).
    labels : ndarray or None
        Targets of the samples when known.
    meta : dict
        Seed, target, wall-clock timings, batch size, config.
    """

    n_samples: int
    n_steps: int
    dt: float
    output_counts_t: NDArray[np.int32]
    output_potential_t: NDArray[np.float32]
    counts: Counts = field(default_factory=Counts)
    spikes: dict[str, SpikeTrains] = field(default_factory=dict)
    readout: dict[str, Any] = field(default_factory=dict)
    labels: NDArray[Any] | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.counts, Counts):
            self.counts = Counts(self.counts)

    @property
    def output_counts(self) -> NDArray[np.int32]:
        """Total output spike counts, shape (n_samples, n_out)."""
        return self.output_counts_t[:, -1, :]

    def output_values(self, step: int | None = None) -> NDArray[np.float64]:
        """Decoded output per sample at ``step`` (default: the last), in ANN units.

        For ``mode="count"``: spike rate ``count / (steps after the pipeline
        latency)`` times the output scale, plus ``potential / steps`` (a
        sub-spike remainder that breaks ties, at most one spike's worth).
        For ``mode="potential"``: ``potential / steps`` times the scale.

        Returns
        -------
        ndarray, shape (n_samples, n_out)
        """
        k = self.n_steps - 1 if step is None else int(step)
        if self.readout.get("window_steps"):
            return self._window_value(k)
        latency = int(self.readout.get("latency_steps", 0))
        scale = float(self.readout.get("scale", 1.0))
        steps = max(k + 1 - latency, 1)
        pot = self.output_potential_t[:, k, :].astype(np.float64)
        if self.readout.get("mode", "count") == "potential":
            return pot / steps * scale
        counts = self.output_counts_t[:, k, :].astype(np.float64)
        theta = float(self.readout.get("threshold", 1.0))
        return (counts + np.clip(pot / theta, 0.0, 1.0)) / steps * scale

    def _window_value(self, k: int) -> NDArray[np.float64]:
        """Sequence read-out at step ``k``: the change of the output potential since its window began."""
        w = int(self.readout["window_steps"])
        start = (k // w) * w
        pot = self.output_potential_t[:, k, :].astype(np.float64)
        if start > 0:
            pot = pot - self.output_potential_t[:, start - 1, :].astype(np.float64)
        return pot / (k + 1 - start) * float(self.readout.get("scale", 1.0))

    def window_values(self) -> NDArray[np.float64]:
        """Decoded output of every sequence element, shape (n_samples, T, n_out), in ANN units.

        A sequence network (``readout["window_steps"]`` = K) presents element ``t`` during
        window ``t``; its output for that element is the change of the integrating output
        potential over the window, divided by K, times the output scale.  Windows the run
        did not reach are NaN.

        Raises
        ------
        ValidationError
            The record is not of a sequence network.
        """
        w = int(self.readout.get("window_steps") or 0)
        if not w:
            raise ValidationError("window_values: the record is not of a sequence network (no readout window_steps)")
        n_win = int(self.readout.get("windows") or -(-self.n_steps // w))
        out = np.full((self.n_samples, n_win, self.output_potential_t.shape[2]), np.nan)
        for t in range(min(n_win, self.n_steps // w)):
            out[:, t] = self._window_value((t + 1) * w - 1)
        return out

    def predictions(self, step: int | None = None) -> NDArray[np.int64]:
        """Predicted class per sample at ``step``: argmax of :meth:`output_values`, or with a
        single output (binary logit) class 1 where it is > 0 (see :func:`~spikebridge.ir.evaluate.predict_classes`)."""
        from ..ir.evaluate import predict_classes

        return predict_classes(self.output_values(step))

    def accuracy_over_time(self, labels: Sequence[int] | NDArray[Any] | None = None) -> NDArray[np.float64]:
        """Classification accuracy after each step, shape (n_steps,)."""
        y = np.asarray(self.labels if labels is None else labels)
        if y is None or y.shape != (self.n_samples,):
            raise ValidationError(f"accuracy_over_time: need {self.n_samples} labels")
        return np.array([np.mean(self.predictions(k) == y) for k in range(self.n_steps)])


def unpack_spikes(bits: NDArray[np.uint8], n_neurons: int) -> tuple[NDArray[np.int32], NDArray[np.int32], NDArray[np.int32]]:
    """``(sample, neuron, step)`` int32 index arrays of a packed raster (see :meth:`SpikeTrains.from_packed`),
    in (sample, step, neuron) order."""
    n_b, n_steps = int(bits.shape[0]), int(bits.shape[1])
    n = int(n_neurons)
    total = int(np.bitwise_count(bits).sum(dtype=np.int64))
    sample, neuron, step = (np.empty(total, dtype=np.int32) for _ in range(3))
    chunk = max(1, (1 << 24) // max(1, n_steps * n))  # about 16 MB of unpacked booleans at a time
    at = 0
    for s0 in range(0, n_b, chunk):
        raster = np.unpackbits(bits[s0 : s0 + chunk], axis=-1, count=n).view(bool).reshape(-1, n)
        per_row = np.count_nonzero(raster, axis=1)  # spikes per (sample, step) row
        flat = np.flatnonzero(raster)
        end = at + flat.size
        rows = np.arange(raster.shape[0], dtype=np.int64)
        np.subtract(flat, np.repeat(rows * n, per_row), out=neuron[at:end], casting="unsafe")
        sample[at:end] = np.repeat((rows // n_steps + s0).astype(np.int32), per_row)
        step[at:end] = np.repeat((rows % n_steps).astype(np.int32), per_row)
        at = end
    return sample, neuron, step


def pack_spikes(st: SpikeTrains, n_steps: int) -> NDArray[np.uint8]:
    """The packed raster (n_samples, n_steps, ceil(n_neurons / 8)) of ``st`` (see :meth:`SpikeTrains.from_packed`).

    Raises
    ------
    ValidationError
        A spike at a step outside ``0..n_steps-1``, or the same (sample, step, neuron) twice
        (a raster holds each at most once).
    """
    if st.packed is not None and st.packed.shape[1] == n_steps:
        return st.packed
    n, T, m = int(st.n_neurons), int(n_steps), int(st.n_samples)
    nb = -(-n // 8)
    out = np.empty((m, T, nb), dtype=np.uint8)
    if st.step.size and (int(st.step.min()) < 0 or int(st.step.max()) >= T):
        raise ValidationError(f"pack_spikes: spike steps outside 0..{T - 1}")
    chunk = max(1, (1 << 24) // max(1, T * n))  # samples per pass: about 16 MB of raster
    bounds = np.searchsorted(st.sample, np.arange(0, m + chunk, chunk).clip(max=m))
    raster = np.zeros(min(chunk, max(m, 1)) * T * n, dtype=np.uint8)
    for k, s0 in enumerate(range(0, m, chunk)):
        lo, hi = int(bounds[k]), int(bounds[k + 1])
        rows = min(chunk, m - s0)
        r = raster[: rows * T * n]
        r[:] = 0
        flat = (st.sample[lo:hi].astype(np.int64) - s0) * T + st.step[lo:hi]
        flat *= n
        flat += st.neuron[lo:hi]
        r[flat] = 1
        out[s0 : s0 + rows] = np.packbits(r.reshape(rows, T, n).view(bool), axis=-1)
    if int(np.bitwise_count(out).sum(dtype=np.int64)) != st.n_spikes:
        raise ValidationError("pack_spikes: the same (sample, step, neuron) spike occurs twice; a raster holds it once")
    return out


def concat_records(records: Sequence[SpikeRecord]) -> SpikeRecord:
    """Join records of consecutive sample batches into one (sample indices shifted)."""
    if not records:
        raise ValidationError("concat_records: nothing to join")
    first = records[0]
    offsets = np.cumsum([0] + [r.n_samples for r in records[:-1]])
    spikes: dict[str, SpikeTrains] = {}
    for name, st in first.spikes.items():
        parts = [r.spikes[name] for r in records]
        packed = [p.packed for p in parts]
        if all(b is not None and "sample" not in p.__dict__ for b, p in zip(packed, parts)):
            # rasters join along samples, still undecoded
            spikes[name] = SpikeTrains.from_packed(np.concatenate(cast("list[NDArray[np.uint8]]", packed)), st.n_neurons, st.dt)
            continue
        # each part is checked and sorted, and the sample offsets grow: the join is sorted too
        spikes[name] = SpikeTrains._from_sorted(
            st.n_neurons, sum(p.n_samples for p in parts), st.dt,
            np.concatenate([p.sample + np.int32(o) for p, o in zip(parts, offsets)]),
            np.concatenate([p.neuron for p in parts]),
            np.concatenate([p.step for p in parts]),
        )
    labels = None
    if all(r.labels is not None for r in records):
        labels = np.concatenate([np.asarray(r.labels) for r in records])
    # the stored arrays (uint16 from the tensor engine): a quarter of int64's bytes, widened when read
    counts = Counts({k: np.concatenate([r.counts.raw(k) for r in records]) for k in first.counts})
    return SpikeRecord(
        n_samples=sum(r.n_samples for r in records),
        n_steps=first.n_steps,
        dt=first.dt,
        output_counts_t=np.concatenate([r.output_counts_t for r in records]),
        output_potential_t=np.concatenate([r.output_potential_t for r in records]),
        counts=counts,
        spikes=spikes,
        readout=dict(first.readout),
        labels=labels,
        meta=dict(first.meta),
    )
