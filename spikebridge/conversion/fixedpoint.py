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

``ConversionConfig(weight_bits=k)`` bounds the grid further, as neuromorphic chips store weights:
every weight of a projection is a signed ``k``-bit integer ``u`` (``|u| <= 2**(k-1) - 1``) times
the projection's ``2**-e`` (one exponent per projection, as a chip's per-layer weight exponent).
``e`` is then the smaller of the two bounds' exponents, so sums stay exact in float32, and the
tensor engine's int8 convolutions need ``ceil(k / 8)`` digits instead of three (8 bits: one; 16 bits:
one convolution of paired inputs; :class:`spikebridge.engines.tensor.arrays.DigitConv`).  This moves a weight by
less than ``1 / (2**(k-1) - 1)`` of the projection's largest weight (half a unit of a grid on which
that weight is more than ``(2**(k-1) - 1) / 2`` units): a different network, whose accuracy is
measured, not assumed (``docs/conversion.md``).
"""

from __future__ import annotations

import math

import numpy as np
import scipy.sparse as sp
from numpy.typing import NDArray

from ..config import MAX_WEIGHT_BITS, MIN_WEIGHT_BITS
from ..errors import ValidationError
from ..snn.network import Projection, SpikingNetwork

__all__ = ["EXACT_SUM_UNITS", "grid_exponent", "weight_exponent", "to_fixed_point", "float32_exact", "float32_exact_matrix", "kernel_units"]

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


def weight_exponent(max_abs: float, bits: int) -> int | None:
    """The largest ``e`` with ``max_abs · 2**e <= 2**(bits-1) - 1``; None when ``max_abs`` is 0.

    ``max_abs`` is a projection's largest ``|w|``; on the grid ``2**-e`` every weight rounds to a
    signed ``bits``-bit integer (the bound is an integer, so rounding cannot pass it).
    """
    if not max_abs > 0.0 or not math.isfinite(max_abs):
        return None
    top = 2 ** (bits - 1) - 1
    e = math.floor(math.log2(top / max_abs))
    while math.ldexp(max_abs, e) > top:  # log2 rounding, as in grid_exponent
        e -= 1
    return e


def _max_abs(proj: Projection) -> float:
    """Largest ``|w|`` of a projection (its kernel's for a shared kernel; 0.0 without weights)."""
    w = proj.operator.kernel if proj.operator is not None else proj.weight
    return float(np.abs(w).max()) if w.size else 0.0


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

    ``e`` is the smallest exponent that makes every ``u`` an integer, at most :func:`grid_exponent`
    of the largest per-output-channel Σ|w| (0 for a kernel of zeros), so every sum of ``u`` over
    one output channel's taps is at most ``2**24`` in magnitude.  None when the kernel is not on
    that grid (not what :func:`to_fixed_point` makes).
    """
    k = np.asarray(kernel, dtype=np.float64)
    if not k.size or not float32_exact(k):
        return None
    e = grid_exponent(float(np.abs(k).reshape(k.shape[0], -1).sum(axis=1).max()))
    e = 0 if e is None else e
    u = np.ldexp(k, e).astype(np.int64)
    # the coarsest grid the kernel is on: a kernel of k-bit weights (``weight_bits``) has units
    # that share trailing zero bits on the fan-in grid, and fewer units mean fewer int8 digits
    nz = np.abs(u[u != 0])
    if nz.size:
        common = int(np.bitwise_or.reduce(nz))
        shift = (common & -common).bit_length() - 1
        u, e = u >> shift, e - shift
    return u, e


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


def to_fixed_point(snn: SpikingNetwork, weight_bits: int | None = None) -> SpikingNetwork:
    """``snn`` with every projection's weights rounded to its float32-exact grid (see the module docstring).

    ``weight_bits`` (``MIN_WEIGHT_BITS`` .. ``MAX_WEIGHT_BITS``, or None for no bound) makes every
    weight a signed integer of that many bits times its projection's ``2**-e``.  Returns a new
    network (shared kernels stay shared kernels); ``metadata["fixed_point"]`` maps each projection
    to its exponent ``e`` (weights are multiples of ``2**-e``), and ``metadata["weight_bits"]`` is
    ``weight_bits`` when given.  Projections without weights are kept as they are.
    """
    if weight_bits is not None and (not isinstance(weight_bits, int) or isinstance(weight_bits, bool)
                                    or not MIN_WEIGHT_BITS <= weight_bits <= MAX_WEIGHT_BITS):
        raise ValidationError(f"to_fixed_point: weight_bits must be an integer in {MIN_WEIGHT_BITS}..{MAX_WEIGHT_BITS}, "
                              f"got {weight_bits!r}", attr="weight_bits")
    exps: dict[str, int] = {}
    projections = []
    for proj in snn.projections.values():
        e = grid_exponent(_max_fan_in(proj, snn.populations[proj.post].n))
        if e is not None and weight_bits is not None:
            e = min(e, weight_exponent(_max_abs(proj), weight_bits))  # type: ignore[type-var]  # both set: some |w| > 0
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
    meta = {**snn.metadata, "fixed_point": exps}
    if weight_bits is not None:
        meta["weight_bits"] = weight_bits
    return snn.copy_with(projections=projections, metadata=meta)
