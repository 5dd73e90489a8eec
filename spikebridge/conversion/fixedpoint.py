"""Fixed-point weights: each projection's weights on a power-of-two grid whose sums are exact in float32.

Spikes are 0/1, so a neuron's synaptic input in one step is a sum of some of its
weights.  In floating point that sum depends on the order of the additions, which
is why the exact engines add weights in the explicit synapses' pre-synaptic order
(Brian2's) and cannot use a dense float32 convolution, whose order is the
library's.  With ``ConversionConfig(fixed_point=True)`` every weight of a
projection is rounded to a multiple of ``2**-e``, with ``e`` the largest
exponent for which the largest summed magnitude onto one post-synaptic neuron,
``max_j Σ_i |w_ij| · 2**e``, is at most ``2**24``.  Every partial sum of a step's
input through that projection is then an integer times ``2**-e`` of magnitude at
most ``2**24 · 2**-e``: exactly representable in float32 and in float64, so no
addition rounds and every summation order gives the same value.  The tensor
engine then may use dense float32 products (:mod:`spikebridge.engines.tensor.layered`)
and still produce the spikes of the ordered float64 sum, which Brian2 and the
reference compute.

Each weight moves by at most ``2**-(e+1)``, i.e. by at most ``2**-25`` of the
projection's largest fan-in sum (the shipped F-MNIST VGG: ``e`` = 19–21, weights
moved by < 1e-6 of the threshold; the same predictions on all 1,000 test images).
"""

from __future__ import annotations

import math

import numpy as np
import scipy.sparse as sp
from numpy.typing import NDArray

from ..snn.network import Projection, SpikingNetwork

__all__ = ["EXACT_SUM_UNITS", "grid_exponent", "to_fixed_point", "float32_exact", "float32_exact_matrix", "kernel_units"]

#: a float32 significand holds every integer up to 2**24: sums of grid units up to this are exact
EXACT_SUM_UNITS = 2**24


def grid_exponent(max_fan_in: float) -> int | None:
    """The largest ``e`` with ``max_fan_in · 2**e <= 2**24``; None when ``max_fan_in`` is 0 (no weights).

    ``max_fan_in`` is the largest sum of absolute weights onto one post-synaptic neuron.
    """
    if not max_fan_in > 0.0 or not math.isfinite(max_fan_in):
        return None
    e = math.floor(math.log2(EXACT_SUM_UNITS / max_fan_in))
    # log2 may round across an integer: step down until the bound holds
    while math.ldexp(max_fan_in, e) > EXACT_SUM_UNITS:
        e -= 1
    return e


def _max_fan_in(proj: Projection, n_post: int) -> float:
    """Largest Σ|w| onto one post-synaptic neuron (for a shared kernel: over one output channel's taps)."""
    if proj.operator is not None:
        k = np.abs(proj.operator.kernel)
        return float(k.reshape(k.shape[0], -1).sum(axis=1).max()) if k.size else 0.0
    if not proj.weight.size:
        return 0.0
    return float(np.bincount(proj.post_index, weights=np.abs(proj.weight), minlength=n_post).max())


def _round_to_grid(w: NDArray[np.float64], e: int) -> NDArray[np.float64]:
    # ldexp is exact (a power of two); rint rounds half to even, as float arithmetic does
    return np.ldexp(np.rint(np.ldexp(w, e)), -e)


def _on_grid(values: NDArray[np.float64], max_fan_in: float) -> bool:
    """Whether ``values`` are multiples of ``2**-e`` for the ``e`` of ``max_fan_in`` (all zero: True)."""
    if not np.all(np.isfinite(values)):
        return False
    e = grid_exponent(max_fan_in)
    if e is None:
        return True
    scaled = np.ldexp(values, e)
    return bool(np.array_equal(scaled, np.rint(scaled)))


def kernel_units(kernel: NDArray[np.float64]) -> tuple[NDArray[np.int64], int] | None:
    """A fixed-point shared kernel as integers: ``(u, e)`` with ``kernel == u · 2**-e``, or None.

    ``e`` is :func:`grid_exponent` of the largest per-output-channel Σ|w| (0 for a kernel of
    zeros), so every sum of ``u`` over one output channel's taps is at most ``2**24`` in
    magnitude.  None when the kernel is not on that grid (not what :func:`to_fixed_point` makes).
    """
    k = np.asarray(kernel, dtype=np.float64)
    if not k.size or not float32_exact(k):
        return None
    e = grid_exponent(float(np.abs(k).reshape(k.shape[0], -1).sum(axis=1).max()))
    e = 0 if e is None else e
    return np.ldexp(k, e).astype(np.int64), e


def float32_exact(kernel: NDArray[np.float64]) -> bool:
    """Whether any sum of a shared kernel's taps onto one output is exact in float32 (and float64).

    True when every weight is an integer multiple of ``2**-e`` for the ``e`` of
    :func:`grid_exponent` of the largest per-output-channel Σ|w| (what
    :func:`to_fixed_point` makes); a kernel of zeros is trivially exact.
    """
    k = np.asarray(kernel, dtype=np.float64)
    if not k.size:
        return False
    return _on_grid(k, float(np.abs(k).reshape(k.shape[0], -1).sum(axis=1).max()))


def float32_exact_matrix(m: sp.csr_matrix) -> bool:
    """Whether any sum of a ``(n_post, n_pre)`` weight matrix's entries along one row is exact in float32.

    The same test as :func:`float32_exact`, with each row (post-synaptic neuron) as the fan-in.
    """
    if not m.nnz:
        return False
    return _on_grid(np.asarray(m.data, dtype=np.float64), float(abs(m).sum(axis=1).max()))


def to_fixed_point(snn: SpikingNetwork) -> SpikingNetwork:
    """``snn`` with every projection's weights rounded to its float32-exact grid (see the module docstring).

    Returns a new network (shared kernels stay shared kernels); ``metadata["fixed_point"]``
    maps each projection to its exponent ``e`` (weights are multiples of ``2**-e``).
    Projections without weights are kept as they are.
    """
    exps: dict[str, int] = {}
    projections = []
    for proj in snn.projections.values():
        e = grid_exponent(_max_fan_in(proj, snn.populations[proj.post].n))
        if e is None:
            projections.append(proj)
            continue
        exps[proj.name] = e
        if proj.operator is not None:
            op = proj.operator
            projections.append(proj.replace(operator=type(op)(_round_to_grid(op.kernel, e), op.in_shape, op.stride,
                                                              op.padding, op.groups)))
        else:
            projections.append(proj.replace(weight=_round_to_grid(proj.weight, e)))
    return snn.copy_with(projections=projections, metadata={**snn.metadata, "fixed_point": exps})
