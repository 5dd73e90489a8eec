"""Weight recordings in a spike store: how plastic projections changed during a run.

Layout (an optional group; stores without it stay valid, and readers of
stores written before it return no recordings)::

    /weights/<projection>/   attrs pre, post (population names), n_snapshots, rule (JSON)
        pre_index   int32 (n_synapses,)   per-sample pre-synaptic neuron of each synapse
        post_index  int32 (n_synapses,)   per-sample post-synaptic neuron
        copy        int32 (n_synapses,)   batch copy the synapse belongs to (0 for one network)
        t           float64 (n_snapshots,) network time of each snapshot, seconds
        w           float32 (n_snapshots, n_synapses) weights at those times

Implementation of the "Weight recordings" section of ``docs/formats.md``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .._h5 import json_attr, read_json_attr
from ..errors import StoreFormatError, ValidationError
from .spikes import SpikeStore

__all__ = ["WeightHistory", "write_weights", "read_weights"]

_GZIP = {"compression": "gzip", "compression_opts": 4, "shuffle": True}


@dataclass
class WeightHistory:
    """Recorded weights of one projection.

    Attributes
    ----------
    name, pre, post : str
        Projection and population names.
    pre_index, post_index, copy : ndarray of int32, shape (n_synapses,)
    t : ndarray of float64, shape (n_snapshots,)
        Seconds.
    w : ndarray of float32, shape (n_snapshots, n_synapses)
    rule : dict
        The plasticity rule's parameters.
    """

    name: str
    pre: str
    post: str
    pre_index: NDArray[np.int32]
    post_index: NDArray[np.int32]
    copy: NDArray[np.int32]
    t: NDArray[np.float64]
    w: NDArray[np.float32]
    rule: dict[str, Any]

    def matrix(self, k: int = -1, copy: int = 0, shape: tuple[int, int] | None = None) -> NDArray[np.float64]:
        """Dense (n_post, n_pre) weights of snapshot ``k`` and batch copy ``copy``."""
        sel = self.copy == copy
        n_post = shape[0] if shape else int(self.post_index.max(initial=-1)) + 1
        n_pre = shape[1] if shape else int(self.pre_index.max(initial=-1)) + 1
        m = np.zeros((n_post, n_pre))
        m[self.post_index[sel], self.pre_index[sel]] = self.w[k][sel]
        return m


def write_weights(
    store: SpikeStore,
    name: str,
    *,
    pre: str,
    post: str,
    pre_index: ArrayLike,
    post_index: ArrayLike,
    times: ArrayLike,
    weights: ArrayLike,
    copy: ArrayLike | None = None,
    rule: Mapping[str, Any] | None = None,
) -> None:
    """Write (or replace) the weight recording of projection ``name`` in a writable store.

    Parameters
    ----------
    store : SpikeStore
        Opened with mode ``"w"``, ``"a"`` or ``"x"``.
    name : str
        Projection name.
    pre, post : str
        Population names.
    pre_index, post_index : array_like of int, shape (n_synapses,)
    times : array_like, shape (n_snapshots,)
        Seconds, non-decreasing.
    weights : array_like, shape (n_snapshots, n_synapses)
    copy : array_like of int, optional
        Batch copy per synapse (default all 0).
    rule : mapping, optional
        Plasticity parameters (stored as JSON).

    Raises
    ------
    ValidationError
        Inconsistent shapes, a read-only store or a bad name.
    """
    if not store.writable:
        raise ValidationError(f"spike store '{store.path}' is open read-only; open it with mode 'a' to add weights")
    if not isinstance(name, str) or not name.isidentifier():
        raise ValidationError(f"write_weights: projection name must be an identifier, got {name!r}", attr="name")
    pi = np.asarray(pre_index, dtype=np.int32).ravel()
    po = np.asarray(post_index, dtype=np.int32).ravel()
    cp = np.zeros_like(pi) if copy is None else np.asarray(copy, dtype=np.int32).ravel()
    t = np.asarray(times, dtype=np.float64).ravel()
    w = np.asarray(weights, dtype=np.float32)
    if w.ndim != 2 or w.shape != (t.size, pi.size) or po.shape != pi.shape or cp.shape != pi.shape:
        raise ValidationError(
            f"write_weights: weights {w.shape} must be (n_snapshots={t.size}, n_synapses={pi.size}) with matching index arrays",
            attr="weights",
        )
    if not np.all(np.isfinite(w)) or np.any(np.diff(t) < 0):
        raise ValidationError("write_weights: weights must be finite and times non-decreasing", attr="weights")
    f = store.file
    group = f.require_group("weights")
    if name in group:
        del group[name]
    g = group.create_group(name)
    g.attrs["pre"], g.attrs["post"], g.attrs["n_snapshots"] = pre, post, int(t.size)
    g.attrs["rule"] = json_attr(dict(rule or {}))
    for key, arr in (("pre_index", pi), ("post_index", po), ("copy", cp), ("t", t)):
        g.create_dataset(key, data=arr)
    g.create_dataset("w", data=w, chunks=(1, max(1, pi.size)) if pi.size else None, **(_GZIP if pi.size else {}))
    f.flush()


def read_weights(store: SpikeStore) -> dict[str, WeightHistory]:
    """All weight recordings of ``store`` (empty for stores without ``/weights``).

    Raises
    ------
    StoreFormatError
        A ``/weights`` group that is not laid out as documented.
    """
    f = store.file
    if "weights" not in f:
        return {}
    out: dict[str, WeightHistory] = {}
    for name, g in f["weights"].items():
        try:
            out[name] = WeightHistory(
                name=name, pre=str(g.attrs["pre"]), post=str(g.attrs["post"]),
                pre_index=np.asarray(g["pre_index"][()], dtype=np.int32),
                post_index=np.asarray(g["post_index"][()], dtype=np.int32),
                copy=np.asarray(g["copy"][()], dtype=np.int32),
                t=np.asarray(g["t"][()], dtype=np.float64), w=np.asarray(g["w"][()], dtype=np.float32),
                rule=read_json_attr(g, "rule", {}) or {},
            )
        except (KeyError, TypeError, ValueError) as err:
            raise StoreFormatError(f"spike store '{store.path}': /weights/{name} is malformed ({err})") from err
        h = out[name]
        if h.w.shape != (h.t.size, h.pre_index.size):
            raise StoreFormatError(f"spike store '{store.path}': /weights/{name}/w has shape {h.w.shape}, expected {(h.t.size, h.pre_index.size)}")
    return out
