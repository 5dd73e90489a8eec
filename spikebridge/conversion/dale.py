"""Excitatory/inhibitory split of a converted network (Dale's principle).

A biological neuron's outgoing synapses are all excitatory or all inhibitory.
ANN weights have both signs, so a plain conversion has *mixed* neurons.
:func:`apply_dale` rewrites a :class:`~spikebridge.snn.network.SpikingNetwork`
so that every neuron is excitatory or inhibitory, in one of two ways.

``"relay"`` (exact in rate)
    Every converted neuron is excitatory.  Each neuron ``j`` of a population
    ``P`` that has a negative outgoing weight gets one inhibitory interneuron
    ``P_inh[j']`` that relays its spikes one for one: the relay synapse has
    weight 1, the interneuron threshold 1, reset to zero and no bias, so under
    the discrete-time contract a spike of ``j`` at step ``k`` makes ``j'``
    spike at step ``k + 1`` and at no other time.  The negative weights
    ``W⁻`` leave from the interneurons with the original delay ``d``; the
    positive weights ``W⁺`` keep leaving ``P`` directly with delay ``d + 1``
    step.  Excitation and inhibition therefore arrive together, exactly as the
    mixed synapse did, one step later:

    .. math:: W = W^+ + W^-,\\quad
              \\text{exc: } P \\xrightarrow{W^+,\\ d+1} Q,\\quad
              \\text{inh: } P \\xrightarrow{I,\\ 1} P_{inh} \\xrightarrow{W^-,\\ d} Q

    Every relayed population's output is thus delayed by one step; the
    read-out ``latency_steps`` is recomputed.  In a network with same-step
    delivery (``min_delay_steps=0``) the hop takes no step: the relay synapse
    has delay 0, ``W⁺`` keeps delay ``d``, and nothing is delayed.  Rates are unchanged; spike
    times shift by one step per relayed layer, and because biases are not
    delayed, counts over a finite window can differ by a spike or so.

``"pooled"`` (approximate, fewer neurons)
    Each population ``P`` (``n`` neurons) gets ``k = ceil(n / dale_ratio)``
    inhibitory neurons (4:1 excitatory:inhibitory by default, as in cortex).
    The magnitude of the negative part, ``N = max(-W, 0)`` (all outgoing
    projections of ``P`` stacked by rows, shape ``(n_post_total, n)``), is
    factorised into non-negative matrices by multiplicative-update NMF
    (Lee & Seung 2001, seeded by ``ConversionConfig.seed``):

    .. math:: N \\approx A B,\\quad A \\in \\mathbb{R}_{\\ge 0}^{n_{post} \\times k},
              \\ B \\in \\mathbb{R}_{\\ge 0}^{k \\times n}

    ``B`` (rows scaled to sum 1, ``A``'s columns scaled inversely) is the
    excitatory input of the inhibitory neurons and ``-A`` their output.  An
    inhibitory IF neuron with subtractive reset then fires at the rate
    :math:`r_I = B r_P` (a weighted mean of its inputs' rates, never above one
    spike per step), so the post-synaptic inhibition is :math:`A B r_P \\approx
    N r_P` *in rate*: a linear rate code, with the quantisation noise of one
    more spiking stage and without the spike-for-spike timing of the relay.
    The relative Frobenius error :math:`\\|N - AB\\|_F / \\|N\\|_F` of each
    projection is stored in ``snn.metadata["dale"]`` and a
    :class:`~spikebridge.errors.ConversionWarning` names the projections whose
    error exceeds :data:`POOLED_ERROR_WARN`.  When ``k`` is at least the number
    of neurons that need inhibition, the split is exact (a relay).

Populations already tagged ``"excitatory"`` (``"inhibitory"``) whose outgoing
weights are all ``>= 0`` (``<= 0``) are kept as they are, so the split is
idempotent and leaves hand-built E/I networks (e.g. Brunel's) alone.  A
current-encoded input population emits no spikes (its values enter the first
layer as a current), so its projections are left mixed and
:func:`check_dale` ignores it; spike-encoded inputs are split like any layer.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from ..errors import ConversionError, ConversionWarning, ValidationError

if TYPE_CHECKING:
    from ..config import ConversionConfig
    from ..snn.network import Population, Projection, SpikingNetwork

__all__ = ["apply_dale", "check_dale", "is_dale", "DaleViolation", "nmf", "POOLED_ERROR_WARN"]

#: relative NMF error above which ``"pooled"`` warns
POOLED_ERROR_WARN = 0.25


# -- checking ------------------------------------------------------------------


@dataclass(frozen=True)
class DaleViolation:
    """Neurons of one population whose outgoing synapses break Dale's principle.

    Attributes
    ----------
    population : str
    neurons : ndarray of int
        Indices (within the population) of the offending neurons.
    reason : str
        ``"mixed"`` (both signs leave the neuron) or ``"tag"`` (the signs
        contradict the population's ``sign`` tag).
    message : str
        What is wrong, where, and an example (neuron and projections).
    """

    population: str
    neurons: NDArray[np.int64]
    reason: str
    message: str

    def __str__(self) -> str:
        return self.message


def _skips_check(snn: "SpikingNetwork", pop: "Population") -> bool:
    current_input = pop.name == snn.input and str(snn.encoding.get("kind", "current")) == "current"
    return current_input or not pop.is_spiking


def check_dale(snn: "SpikingNetwork") -> list[DaleViolation]:
    """List every breach of Dale's principle, checked per neuron across all its outgoing projections.

    A neuron violates it when it has at least one positive and one negative
    outgoing synapse (in the same projection or in different ones), or when a
    population tagged ``"excitatory"`` has a negative outgoing synapse (or
    ``"inhibitory"`` a positive one).  Non-spiking populations and a
    current-encoded input population are not checked: they emit no spikes.

    Parameters
    ----------
    snn : SpikingNetwork

    Returns
    -------
    list of DaleViolation
        Empty when the network obeys Dale's principle.

    Examples
    --------
    >>> from spikebridge.snn.network import Population, Projection, SpikingNetwork
    >>> a = Population(name="a", n=2, model="if"); b = Population(name="b", n=2, model="if")
    >>> p = Projection(name="ab", pre="a", post="b", pre_index=[0, 0, 1], post_index=[0, 1, 1], weight=[1.0, -1.0, 2.0])
    >>> [str(v) for v in check_dale(SpikingNetwork([a, b], [p]))]
    ["population 'a': 1 of 2 neurons have outgoing synapses of both signs, e.g. neuron 0 (positive via 'ab', negative via 'ab')"]
    """
    out: list[DaleViolation] = []
    for name, pop in snn.populations.items():
        if _skips_check(snn, pop):
            continue
        pos = np.zeros(pop.n, dtype=bool)
        neg = np.zeros(pop.n, dtype=bool)
        first_pos: dict[int, str] = {}
        first_neg: dict[int, str] = {}
        projs = snn.outgoing(name)
        for proj in projs:
            p_idx = np.unique(proj.pre_index[proj.weight > 0])
            n_idx = np.unique(proj.pre_index[proj.weight < 0])
            pos[p_idx] = True
            neg[n_idx] = True
        mixed = np.flatnonzero(pos & neg)
        if mixed.size:
            j = int(mixed[0])
            for proj in projs:
                sel = proj.pre_index == j
                if j not in first_pos and np.any(proj.weight[sel] > 0):
                    first_pos[j] = proj.name
                if j not in first_neg and np.any(proj.weight[sel] < 0):
                    first_neg[j] = proj.name
            out.append(
                DaleViolation(
                    name, mixed, "mixed",
                    f"population '{name}': {mixed.size} of {pop.n} neurons have outgoing synapses of both signs, "
                    f"e.g. neuron {j} (positive via '{first_pos[j]}', negative via '{first_neg[j]}')",
                )
            )
        bad: NDArray[np.int64] | None = None
        if pop.sign == "excitatory":
            bad, what = np.flatnonzero(neg & ~pos), "negative"
        elif pop.sign == "inhibitory":
            bad, what = np.flatnonzero(pos & ~neg), "positive"
        if bad is not None and bad.size:
            out.append(
                DaleViolation(
                    name, bad, "tag",
                    f"population '{name}' is tagged {pop.sign!r} but {bad.size} of its neurons have only {what} "
                    f"outgoing synapses, e.g. neuron {int(bad[0])}",
                )
            )
    return out


def is_dale(snn: "SpikingNetwork") -> bool:
    """True when :func:`check_dale` finds nothing.

    Examples
    --------
    >>> from spikebridge.snn.network import Population, SpikingNetwork
    >>> is_dale(SpikingNetwork([Population(name="a", n=1, model="if")]))
    True
    """
    return not check_dale(snn)


# -- non-negative matrix factorisation -------------------------------------------


def nmf(
    matrix: Any, k: int, *, seed: int = 0, max_iter: int = 500, tol: float = 1e-5
) -> tuple[NDArray[np.float64], NDArray[np.float64], float]:
    """Factorise a non-negative matrix ``N ≈ A @ B`` by multiplicative updates (Lee & Seung 2001).

    Works on a dense array or a ``scipy.sparse`` matrix without densifying
    ``N``: each iteration costs ``O(nnz(N) k + (rows + cols) k²)``.

    .. math:: B \\leftarrow B \\odot \\frac{A^T N}{A^T A B},\\qquad
              A \\leftarrow A \\odot \\frac{N B^T}{A B B^T}

    Parameters
    ----------
    matrix : ndarray or scipy.sparse matrix, shape (m, n)
        Non-negative.
    k : int
        Inner dimension (number of factors), >= 1.
    seed : int
        Seed of the random initialisation.
    max_iter : int
        Iteration limit.
    tol : float
        Stop when the relative error improves by less than this over 10 iterations.

    Returns
    -------
    A : ndarray, shape (m, k)
    B : ndarray, shape (k, n)
    rel_error : float
        :math:`\\|N - AB\\|_F / \\|N\\|_F` (0 for an all-zero ``N``).

    Raises
    ------
    ValidationError
        Negative entries or ``k < 1``.

    Examples
    --------
    >>> import numpy as np
    >>> n = np.outer([1.0, 2.0, 3.0], [1.0, 0.5])   # rank one
    >>> a, b, err = nmf(n, 1)
    >>> bool(err < 1e-3), bool(np.allclose(a @ b, n, atol=1e-2))
    (True, True)
    """
    from scipy import sparse

    if not isinstance(k, (int, np.integer)) or k < 1:
        raise ValidationError(f"nmf: k must be an int >= 1, got {k!r}", attr="k")
    N = sparse.csr_matrix(matrix, dtype=np.float64)
    if N.nnz and N.data.min() < 0:
        raise ValidationError("nmf: the matrix has negative entries; NMF needs a non-negative matrix", attr="matrix")
    m, n = N.shape
    norm2 = float(N.multiply(N).sum())
    rng = np.random.default_rng(seed)
    if norm2 == 0.0:
        return np.zeros((m, k)), np.zeros((k, n)), 0.0
    avg = math.sqrt(float(N.sum()) / (m * n) / k)
    A = avg * rng.random((m, k)) + 1e-12
    B = avg * rng.random((k, n)) + 1e-12
    NT = N.T.tocsr()
    eps = 1e-12

    def rel_err() -> float:
        cross = float(np.sum((N @ B.T) * A))
        approx2 = float(np.sum((A.T @ A) * (B @ B.T)))
        return math.sqrt(max(norm2 - 2 * cross + approx2, 0.0) / norm2)

    last = rel_err()
    for it in range(1, max_iter + 1):
        B *= np.asarray(NT @ A).T / (A.T @ A @ B + eps)
        A *= np.asarray(N @ B.T) / (A @ (B @ B.T) + eps)
        if it % 10 == 0:
            err = rel_err()
            if last - err < tol * max(last, 1e-12):
                last = err
                break
            last = err
    return A, B, rel_err()


# -- the split -------------------------------------------------------------------


def _unique(name: str, taken: set[str]) -> str:
    out, k = name, 2
    while out in taken:
        out, k = f"{name}_{k}", k + 1
    taken.add(out)
    return out


def _delay_seconds(steps: NDArray[np.int64], dt: float) -> float | NDArray[np.float64]:
    """Scalar delay when all synapses share one, else per-synapse (seconds)."""
    if steps.size and np.all(steps == steps[0]):
        return float(steps[0]) * dt
    return steps.astype(np.float64) * dt


def _needs_split(snn: "SpikingNetwork", pop: "Population") -> bool:
    if _skips_check(snn, pop):
        return False
    projs = snn.outgoing(pop.name)
    has_neg = any(np.any(p.weight < 0) for p in projs)
    has_pos = any(np.any(p.weight > 0) for p in projs)
    if pop.sign == "inhibitory" and not has_pos:
        return False
    return has_neg


def apply_dale(snn: "SpikingNetwork", config: "ConversionConfig") -> "SpikingNetwork":
    """Rewrite ``snn`` so that no neuron has outgoing synapses of both signs.

    Parameters
    ----------
    snn : SpikingNetwork
        A converted network, feed-forward or with recurrent projections
        (e.g. lateral inhibition from
        :func:`~spikebridge.conversion.recurrent.add_lateral_inhibition`).
    config : ConversionConfig
        ``dale`` (``"none"``, ``"relay"``, ``"pooled"``), ``dale_ratio``
        (excitatory:inhibitory, ``"pooled"``) and ``seed`` are used.

    Returns
    -------
    SpikingNetwork
        A new network (``snn`` itself for ``dale="none"`` or when nothing
        needs splitting): populations tagged ``"excitatory"`` /
        ``"inhibitory"``, interneuron populations ``<pop>_inh`` (role
        ``"interneuron"``), relay projections ``<pop>_to_inh`` (kind
        ``"relay"`` or ``"pool"``), inhibitory projections ``<proj>_inh``;
        ``readout["latency_steps"]`` recomputed; ``metadata["dale"]`` holds
        the mode, neuron and synapse counts before/after, and per projection
        the number of interneurons and (``"pooled"``) the relative
        approximation error.

    Raises
    ------
    ConversionError
        For an unknown ``config.dale``.

    Warns
    -----
    ConversionWarning
        ``"pooled"``: a projection's relative approximation error exceeds
        :data:`POOLED_ERROR_WARN`.

    Examples
    --------
    >>> from spikebridge.config import ConversionConfig
    >>> from spikebridge.snn.network import Population, Projection, SpikingNetwork
    >>> a = Population(name="a", n=2, model="if"); b = Population(name="b", n=2, model="if", role="output")
    >>> p = Projection(name="ab", pre="a", post="b", pre_index=[0, 0, 1], post_index=[0, 1, 1], weight=[1.0, -1.0, 2.0],
    ...                delay=1e-3)
    >>> net = apply_dale(SpikingNetwork([a, b], [p], output="b"), ConversionConfig(dale="relay"))
    >>> sorted(net.populations), is_dale(net), net.projections["ab_inh"].weight.tolist()
    (['a', 'a_inh', 'b'], True, [-1.0])
    """
    mode = getattr(config, "dale", "none")
    if mode == "none":
        return snn
    if mode not in ("relay", "pooled"):
        raise ConversionError(f"apply_dale: dale={mode!r} is not 'none', 'relay' or 'pooled'")
    from .latency import population_latency
    from ..snn.network import Population, Projection

    dt = snn.dt
    taken = set(snn.populations) | set(snn.projections)
    new_pops: list[Population] = []
    new_projs: dict[str, Projection] = {}  # original projection name -> replacement (excitatory part)
    extra_projs: list[Projection] = []
    info: dict[str, Any] = {"mode": mode, "populations": {}, "projections": {}}
    if mode == "pooled":
        info["ratio"] = float(config.dale_ratio)
    warn_lines: list[str] = []

    for name, pop in snn.populations.items():
        if not _needs_split(snn, pop):
            if pop.is_spiking and not _skips_check(snn, pop) and pop.sign == "mixed":
                # nothing negative leaves it (or nothing leaves it at all): a converted neuron is excitatory
                pop = pop.replace(sign="excitatory")
            elif not pop.is_spiking and pop.sign == "mixed" and pop.name != snn.input:
                pop = pop.replace(sign="excitatory")
            new_pops.append(pop)
            continue
        new_pops.append(pop.replace(sign="excitatory"))
        projs = snn.outgoing(name)
        needs = np.unique(np.concatenate([p.pre_index[p.weight < 0] for p in projs]))
        inh_name = _unique(f"{name}_inh", taken)
        relay_name = _unique(f"{name}_to_inh", taken)
        if mode == "pooled":
            k = max(1, math.ceil(pop.n / float(config.dale_ratio)))
            if k >= needs.size:
                k = int(needs.size)
                A_blocks, B, errors = _exact_factors(projs, needs)
                how = "exact (k >= neurons needing inhibition)"
            else:
                A_blocks, B, errors = _pooled_factors(projs, needs, k, seed=int(config.seed))
                how = "nmf"
        else:
            k = int(needs.size)
            A_blocks, B, errors = _exact_factors(projs, needs)
            how = "relay"
        # the relay hop takes one step, or none with same-step delivery (min_delay_steps=0)
        hop = 1 if snn.min_delay_steps else 0
        # interneurons: IF, threshold 1, no bias; a relay resets to zero (one spike per input spike),
        # a pooled neuron subtracts (its rate codes a weighted mean of its inputs' rates)
        new_pops.append(
            Population(
                name=inh_name, n=k, model="if", threshold=1.0, reset="zero" if how != "nmf" else "subtract",
                bias=0.0, v_init=0.0, refractory=0.0, role="interneuron", sign="inhibitory", layer=pop.layer,
                params={"dale": mode, "inhibits_for": name},
            )
        )
        rows, cols = np.nonzero(B)
        extra_projs.append(
            Projection(
                name=relay_name, pre=name, post=inh_name, pre_index=needs[cols], post_index=rows, weight=B[rows, cols],
                delay=hop * dt, kind="relay" if how != "nmf" else "pool", layer=pop.layer,
            )
        )
        info["populations"][name] = {"interneurons": inh_name, "n_inh": k, "n_exc": pop.n, "method": how}
        for proj, A in zip(projs, A_blocks):
            steps = np.broadcast_to(snn.projection_steps(proj, dt), (proj.n_synapses,))
            keep = proj.weight >= 0
            if keep.any():
                # the direct path waits as long as the relay hop takes
                new_projs[proj.name] = proj.replace(
                    pre_index=proj.pre_index[keep], post_index=proj.post_index[keep], weight=proj.weight[keep],
                    delay=_delay_seconds(steps[keep] + hop, dt),
                )
            else:
                new_projs[proj.name] = None  # type: ignore[assignment]
            neg = proj.weight < 0
            if not neg.any():
                continue
            inh_proj_name = _unique(f"{proj.name}_inh", taken)
            d: float | NDArray[np.float64]
            if how == "nmf":
                post_i, inh_i = np.nonzero(A)
                w = -A[post_i, inh_i]
                # a pooled interneuron merges synapses of several delays: use the most common one
                d = float(np.bincount(steps[neg]).argmax()) * dt
            else:
                pos_in_needs = np.searchsorted(needs, proj.pre_index[neg])
                post_i, inh_i, w = proj.post_index[neg], pos_in_needs, proj.weight[neg]
                d = _delay_seconds(steps[neg], dt)
            extra_projs.append(
                Projection(
                    name=inh_proj_name, pre=inh_name, post=proj.post, pre_index=inh_i, post_index=post_i, weight=w,
                    delay=d, target=proj.target, kind=proj.kind, layer=proj.layer,
                )
            )
            entry: dict[str, Any] = {
                "inhibitory_projection": inh_proj_name,
                "interneurons": inh_name,
                "n_inh": k,
                "synapses_before": proj.n_synapses,
                "synapses_after": int(keep.sum()) + int(w.size),
                "rel_error": float(errors.get(proj.name, 0.0)),
            }
            info["projections"][proj.name] = entry
            if how == "nmf" and entry["rel_error"] > POOLED_ERROR_WARN:
                warn_lines.append(f"'{proj.name}' ({name} -> {proj.post}): {entry['rel_error']:.3f} with {k} inhibitory neurons")

    projections: list[Projection] = []
    for proj in snn.projections.values():
        if proj.name in new_projs:
            if new_projs[proj.name] is not None:
                projections.append(new_projs[proj.name])
        else:
            projections.append(proj)
    projections += extra_projs
    out = snn.copy_with(populations=new_pops, projections=projections)
    info["neurons_before"], info["neurons_after"] = snn.n_neurons, out.n_neurons
    info["synapses_before"], info["synapses_after"] = snn.n_synapses, out.n_synapses
    readout = dict(snn.readout)
    _, before = population_latency(snn)
    _, after = population_latency(out)
    if before is not None and after is not None:
        old = int(readout.get("latency_steps", before))
        readout["latency_steps"] = old + (after - before)
        info["extra_latency_steps"] = after - before
    out.metadata["dale"] = info
    out.readout = readout
    if warn_lines:
        warnings.warn(
            "pooled Dale split approximates negative weights with a large relative error: " + "; ".join(warn_lines)
            + f". Lower dale_ratio (more inhibitory neurons; now {config.dale_ratio}) or use dale='relay' for an exact split",
            ConversionWarning,
            stacklevel=2,
        )
    return out


def _negative_blocks(projs: Sequence["Projection"], needs: NDArray[np.int64]) -> list[Any]:
    """Per projection, ``max(-W, 0)`` restricted to the needed pre neurons, sparse (n_post_max + 1, len(needs))."""
    from scipy import sparse

    blocks = []
    for proj in projs:
        neg = proj.weight < 0
        n_post = int(proj.post_index.max()) + 1 if proj.n_synapses else 0
        cols = np.searchsorted(needs, proj.pre_index[neg])
        blocks.append(
            sparse.csr_matrix((-proj.weight[neg], (proj.post_index[neg], cols)), shape=(max(n_post, 1), needs.size))
        )
    return blocks


def _exact_factors(
    projs: Sequence["Projection"], needs: NDArray[np.int64]
) -> tuple[list[NDArray[np.float64]], NDArray[np.float64], dict[str, float]]:
    # relay: B = identity on the needed neurons; the A blocks are not used (synapses copied as they are)
    return [np.zeros((0, 0)) for _ in projs], np.eye(needs.size), {}


def _pooled_factors(
    projs: Sequence["Projection"], needs: NDArray[np.int64], k: int, *, seed: int
) -> tuple[list[NDArray[np.float64]], NDArray[np.float64], dict[str, float]]:
    from scipy import sparse

    blocks = _negative_blocks(projs, needs)
    stacked = sparse.vstack(blocks).tocsr()
    A, B, _ = nmf(stacked, k, seed=seed)
    # rows of B sum to one: the pooled neuron's rate is a weighted mean of its inputs' rates (<= 1 per step)
    s = B.sum(axis=1)
    s[s <= 0] = 1.0
    B = B / s[:, None]
    A = A * s[None, :]
    # drop negligible factors: fewer synapses, no measurable change
    B[B < 1e-6 * max(B.max(), 1e-300)] = 0.0
    A[A < 1e-6 * max(A.max(), 1e-300)] = 0.0
    errors: dict[str, float] = {}
    A_blocks: list[NDArray[np.float64]] = []
    start = 0
    for proj, blk in zip(projs, blocks):
        a = A[start : start + blk.shape[0]]
        start += blk.shape[0]
        A_blocks.append(a)
        norm2 = float(blk.multiply(blk).sum())
        if norm2 > 0:
            cross = float(np.sum((blk @ B.T) * a))
            approx2 = float(np.sum((a.T @ a) * (B @ B.T)))
            errors[proj.name] = math.sqrt(max(norm2 - 2 * cross + approx2, 0.0) / norm2)
    return A_blocks, B, errors
