"""Figures for papers: spike rasters, accuracy versus time, rate versus activation, rate histograms.

matplotlib is optional (``pip install "spikebridge[plot]"``) and imported
inside each function.  Figures are drawn on an Agg canvas through the
object-oriented API (no pyplot, no global backend switch), so they work
headless.  Every function takes the data and an output path; the suffix
(``.png``, ``.svg``, ``.pdf``) picks the format, and a PNG is exactly
``figsize × dpi`` pixels.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import ArrayLike

from .._optional import import_optional
from ..errors import ValidationError

if TYPE_CHECKING:
    from ..snn.network import SpikingNetwork
    from ..store.record import SpikeTrains
    from .compare import LayerData

__all__ = [
    "pipeline_order",
    "population_colors",
    "accuracy_zoom",
    "plot_raster",
    "plot_accuracy",
    "plot_rate_vs_activation",
    "plot_rate_histograms",
    "plot_all",
    "plot_report",
    "plot_weight_distribution",
    "plot_receptive_fields",
    "plot_sweep",
]

_MAX_POINTS = 300_000


def _figure(figsize: tuple[float, float], dpi: int) -> Any:
    import_optional("matplotlib", "plots")
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, dpi=dpi)
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Any, path: str | os.PathLike[str], dpi: int) -> Path:
    p = Path(path)
    if p.suffix.lower() not in (".png", ".svg", ".pdf"):
        raise ValidationError(f"plot: output '{p}' must end in .png, .svg or .pdf", attr="path")
    p.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(p, dpi=dpi)
    return p


def pipeline_order(info: Mapping[str, Mapping[str, Any]], names: Sequence[str] | None = None) -> list[str]:
    """Population names in pipeline order: input first, then by latency (network order on ties), output last.

    Parameters
    ----------
    info : mapping of name to dict
        ``SpikeStore.population_info`` (``role``, ``latency_steps``), in network order.
    names : sequence of str, optional
        Keep only these (default: all of ``info``); names ``info`` lacks go last.

    Examples
    --------
    >>> pipeline_order({"out": {"role": "output", "latency_steps": 2}, "h": {"role": "hidden", "latency_steps": 1},
    ...                 "x": {"role": "input", "latency_steps": 0}})
    ['x', 'h', 'out']
    """
    index = {n: k for k, n in enumerate(info)}
    wanted = list(info) if names is None else list(names)

    def key(name: str) -> tuple[int, float, int]:
        meta = info.get(name)
        if meta is None:
            return (3, 0.0, 0)
        role = {"input": 0, "output": 2}.get(str(meta.get("role", "")), 1)
        return (role, float(meta.get("latency_steps") or 0), index[name])

    return sorted(wanted, key=key)


def population_colors(names: Sequence[str]) -> dict[str, Any]:
    """One colour per population, the same in every figure of a store (:func:`plot_all`).

    Examples
    --------
    >>> population_colors(["input", "relu1", "output"])
    {'input': 'C0', 'relu1': 'C1', 'output': 'C2'}
    """
    if len(names) <= 10:
        return {n: f"C{k}" for k, n in enumerate(names)}
    import_optional("matplotlib", "plots")
    from matplotlib import colormaps

    cmap = colormaps["tab20"]
    return {n: cmap(k % 20) for k, n in enumerate(names)}


def plot_raster(
    spikes: "Mapping[str, SpikeTrains]",
    path: str | os.PathLike[str],
    *,
    samples: Sequence[int] = (0,),
    populations: Sequence[str] | None = None,
    n_steps: int | None = None,
    figsize: tuple[float, float] = (8.0, 5.0),
    dpi: int = 100,
    title: str | None = None,
    colors: Mapping[str, Any] | None = None,
    min_band: float = 0.06,
) -> Path:
    """Spike raster of chosen samples, one band per population.

    Parameters
    ----------
    spikes : mapping of population name to SpikeTrains
        E.g. a :class:`~spikebridge.store.spikes.SpikeStore` or ``record.spikes``.
    path : path-like
        Output file (``.png``/``.svg``/``.pdf``).
    samples : sequence of int
        Samples shown one after another on the time axis.
    populations : sequence of str, optional
        Bands from bottom to top (default: all in ``spikes``, in pipeline
        order when ``spikes`` is a store: input at the bottom, output on top).
    n_steps : int, optional
        Steps per sample (default: the latest spike + 1), for the sample boundaries.
    colors : mapping of population name to colour, optional
        Default :func:`population_colors` of the bands.
    min_band : float
        Least fraction of the height a population's band gets, so a 10-neuron
        output next to 10,000 hidden neurons stays visible.

    Returns
    -------
    Path
    """
    if populations is not None:
        names = list(populations)
    else:
        info = getattr(spikes, "population_info", None)
        names = pipeline_order(info, list(spikes)) if isinstance(info, Mapping) else list(spikes)
    if not names:
        raise ValidationError("plot_raster: no population with recorded spikes; simulate with record=('all',)", attr="spikes")
    trains = {name: spikes[name] for name in names}
    first = next(iter(trains.values()))
    dt = first.dt
    if n_steps is None:
        n_steps = max((int(t.step.max()) + 1 if t.n_spikes else 1) for t in trains.values())
    colors = dict(colors) if colors is not None else population_colors(names)
    fig = _figure(figsize, dpi)
    ax = fig.add_subplot(1, 1, 1)
    # band heights in neuron rows: at least min_band of the total, so small populations show
    total = sum(trains[n].n_neurons for n in names)
    floor = min_band * total / max(1.0 - min_band * len(names), min_band)
    heights = {n: max(float(trains[n].n_neurons), floor) for n in names}
    offset = 0.0
    ticks, labels = [], []
    budget = _MAX_POINTS
    for k, name in enumerate(names):
        st = trains[name]
        scale = heights[name] / max(st.n_neurons, 1)
        for j, s in enumerate(samples):
            if not 0 <= s < st.n_samples:
                raise ValidationError(f"plot_raster: sample {s} out of range [0, {st.n_samples})", attr="samples")
            neuron, times = st.for_sample(int(s))
            t_ms = (times + j * n_steps * dt) * 1e3
            if neuron.size > budget:
                keep = np.linspace(0, neuron.size - 1, budget).astype(int)
                neuron, t_ms = neuron[keep], t_ms[keep]
            budget = max(budget - neuron.size, 1000)
            # spread out neurons of a stretched band get taller marks
            ax.scatter(t_ms, offset + (neuron + 0.5) * scale - 0.5, s=2 * min(scale, 20.0), marker="|",
                       color=colors.get(name, f"C{k % 10}"), linewidths=0.6 * min(scale, 4.0) ** 0.5)
        ticks.append(offset + heights[name] / 2)
        labels.append(f"{name} ({st.n_neurons})")
        offset += heights[name]
        ax.axhline(offset - 0.5, color="0.85", linewidth=0.5)
    for j in range(1, len(samples)):
        ax.axvline(j * n_steps * dt * 1e3, color="0.3", linestyle="--", linewidth=0.8)
    ax.set_xlim(0, len(samples) * n_steps * dt * 1e3)
    ax.set_ylim(-0.5, offset - 0.5)
    ax.set_yticks(ticks, labels)
    ax.set_xlabel("time (ms)" + (f"; samples {', '.join(map(str, samples))}" if len(samples) > 1 else ""))
    ax.set_ylabel("population / neuron")
    ax.set_title(title or f"spike raster, sample{'s' if len(samples) > 1 else ''} {', '.join(map(str, samples))}")
    fig.tight_layout()
    return _save(fig, path, dpi)


def plot_accuracy(
    accuracy_t: ArrayLike,
    path: str | os.PathLike[str],
    *,
    dt: float,
    ann_accuracy: float | None = None,
    figsize: tuple[float, float] = (6.0, 4.0),
    dpi: int = 100,
    title: str | None = None,
) -> Path:
    """SNN accuracy after each step, with the ANN's accuracy as a horizontal line.

    Parameters
    ----------
    accuracy_t : array_like, shape (n_steps,)
        Accuracy (fraction) after steps 1..n_steps.
    dt : float
        Time step in seconds (the x axis is in ms).
    ann_accuracy : float, optional
    """
    acc = np.asarray(accuracy_t, dtype=np.float64)
    if acc.ndim != 1 or acc.size == 0:
        raise ValidationError(f"plot_accuracy: accuracy_t must be a non-empty 1-D array, got shape {acc.shape}", attr="accuracy_t")
    fig = _figure(figsize, dpi)
    ax = fig.add_subplot(1, 1, 1)
    t_ms = np.arange(1, acc.size + 1) * dt * 1e3
    ax.plot(t_ms, 100 * acc, color="C0", label="SNN")
    if ann_accuracy is not None:
        ax.axhline(100 * ann_accuracy, color="C3", linestyle="--", label=f"ANN ({100 * ann_accuracy:.2f} %)")
    ax.set_xlabel("simulated time (ms)")
    ax.set_ylabel("accuracy (%)")
    ax.set_ylim(0, 100)
    ax.set_xlim(0, t_ms[-1])
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    ax.set_title(title or "accuracy versus time")
    lo, hi = accuracy_zoom(acc, ann_accuracy)
    if hi - lo < 50.0 and acc.size >= 4:
        # the gap to the ANN is a few points at most: an inset zoomed on the last half shows it
        inset = ax.inset_axes((0.42, 0.3, 0.55, 0.42))
        half = acc.size // 2
        inset.plot(t_ms[half:], 100 * acc[half:], color="C0")
        if ann_accuracy is not None:
            inset.axhline(100 * ann_accuracy, color="C3", linestyle="--")
        inset.set_ylim(lo, hi)
        inset.set_xlim(t_ms[half], t_ms[-1])
        inset.grid(alpha=0.3)
        inset.tick_params(labelsize=7)
        inset.set_title("zoom (%)", fontsize=7)
    fig.tight_layout()
    return _save(fig, path, dpi)


def accuracy_zoom(accuracy_t: ArrayLike, ann_accuracy: float | None = None) -> tuple[float, float]:
    """The y range (percent) of the accuracy plot's zoom: the last half of the curve and the ANN line, plus margins.

    Examples
    --------
    >>> accuracy_zoom([0.1, 0.5, 0.97, 0.975], ann_accuracy=0.98)
    (96.5, 98.5)
    """
    acc = 100 * np.asarray(accuracy_t, dtype=np.float64)
    tail = acc[acc.size // 2:]
    values = [*tail.tolist()] + ([100 * ann_accuracy] if ann_accuracy is not None else [])
    lo, hi = min(values), max(values)
    pad = max(0.5, 0.15 * (hi - lo))
    return float(max(0.0, np.floor(2 * (lo - pad)) / 2)), float(min(100.0, np.ceil(2 * (hi + pad)) / 2))


def plot_rate_vs_activation(
    layers: "Mapping[str, tuple[ArrayLike, ArrayLike]] | Sequence[LayerData]",
    path: str | os.PathLike[str],
    *,
    max_points: int = 20_000,
    figsize: tuple[float, float] | None = None,
    dpi: int = 100,
    seed: int = 0,
    colors: Mapping[str, Any] | None = None,
) -> Path:
    """Scatter of SNN firing rate (spikes/step) against normalised ANN activation, one panel per layer.

    Parameters
    ----------
    layers : mapping of name to (activation, rate), or sequence of LayerData
        Arrays of equal size (any shape; flattened).
    max_points : int
        Points per panel above this are subsampled (seeded).
    figsize : (float, float), optional
        Default: 3.2 inches per panel wide, 3.4 high.
    """
    if isinstance(layers, Mapping):
        pairs = [(str(k), np.asarray(v[0], float).ravel(), np.asarray(v[1], float).ravel()) for k, v in layers.items()]
        pops = [str(k) for k in layers]
    else:
        pairs = [(f"{d.layer} ({d.population})", d.activation.ravel(), d.rate.ravel()) for d in layers]
        pops = [d.population for d in layers]
    colors = colors or {}
    if not pairs:
        raise ValidationError("plot_rate_vs_activation: no layer to draw (store ANN activations with ann_activations=True)", attr="layers")
    n = len(pairs)
    fig = _figure(figsize or (3.2 * n, 3.4), dpi)
    rng = np.random.default_rng(seed)
    for k, (name, x, y) in enumerate(pairs):
        if x.shape != y.shape:
            raise ValidationError(f"plot_rate_vs_activation: layer {name!r}: {x.size} activations but {y.size} rates", attr="layers")
        if x.size > max_points:
            keep = rng.choice(x.size, max_points, replace=False)
            x, y = x[keep], y[keep]
        ax = fig.add_subplot(1, n, k + 1)
        ax.scatter(x, y, s=3, alpha=0.3, color=colors.get(pops[k], f"C{k % 10}"), linewidths=0)
        top = max(1.0, float(np.max(x)) if x.size else 1.0)
        ax.plot([0, 1, top], [0, 1, 1], color="k", linewidth=0.8, linestyle="--")
        ax.set_xlim(0, top * 1.02)
        ax.set_ylim(0, 1.05)
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("activation / λ")
        if k == 0:
            ax.set_ylabel("SNN rate (spikes per step)")
    fig.tight_layout()
    return _save(fig, path, dpi)


def plot_rate_histograms(
    counts: Mapping[str, ArrayLike],
    path: str | os.PathLike[str],
    *,
    n_steps: int,
    dt: float,
    bins: int = 30,
    figsize: tuple[float, float] | None = None,
    dpi: int = 100,
    colors: Mapping[str, Any] | None = None,
) -> Path:
    """Histogram of firing rates (Hz) of every (sample, neuron) pair, one panel per population.

    Parameters
    ----------
    counts : mapping of population name to array_like (n_samples, n_neurons)
        Spike counts over ``n_steps`` steps of ``dt`` seconds.
    """
    if not counts:
        raise ValidationError("plot_rate_histograms: no spike counts given", attr="counts")
    duration = n_steps * dt
    colors = colors or {}
    n = len(counts)
    cols = min(n, 3)
    rows = (n + cols - 1) // cols
    fig = _figure(figsize or (3.2 * cols, 2.8 * rows), dpi)
    for k, (name, c) in enumerate(counts.items()):
        rate = np.asarray(c, dtype=np.float64).ravel() / duration
        ax = fig.add_subplot(rows, cols, k + 1)
        ax.hist(rate, bins=bins, range=(0.0, max(float(rate.max()) if rate.size else 1.0, 1.0 / duration)),
                color=colors.get(name, f"C{k % 10}"))
        ax.set_yscale("log")
        ax.set_title(f"{name} (mean {rate.mean():.1f} Hz)" if rate.size else name, fontsize=9)
        ax.set_xlabel("rate (Hz)")
        if k % cols == 0:
            ax.set_ylabel("neurons × samples")
    fig.tight_layout()
    return _save(fig, path, dpi)


def plot_weight_distribution(
    histories: Mapping[str, Any],
    path: str | os.PathLike[str],
    *,
    bins: int = 40,
    figsize: tuple[float, float] | None = None,
    dpi: int = 100,
) -> Path:
    """Weight histograms before (first snapshot) and after (last) learning, one panel per projection.

    Parameters
    ----------
    histories : mapping of projection name to WeightHistory
        From :func:`spikebridge.store.weights.read_weights`.
    """
    if not histories:
        raise ValidationError("plot_weight_distribution: no weight recordings given", attr="histories")
    n = len(histories)
    fig = _figure(figsize or (3.6 * n, 2.8), dpi)
    for k, (name, h) in enumerate(histories.items()):
        ax = fig.add_subplot(1, n, k + 1)
        first, last = np.asarray(h.w[0], dtype=np.float64), np.asarray(h.w[-1], dtype=np.float64)
        hi = max(float(h.w.max()), 1e-12)
        ax.hist(first, bins=bins, range=(0.0, hi), alpha=0.6, color="C0", label=f"t = {float(h.t[0]):g} s")
        ax.hist(last, bins=bins, range=(0.0, hi), alpha=0.6, color="C3", label=f"t = {float(h.t[-1]):g} s")
        ax.set_yscale("log")
        ax.set_title(f"{name} ({h.pre} -> {h.post})", fontsize=9)
        ax.set_xlabel("weight")
        if k == 0:
            ax.set_ylabel("synapses")
        ax.legend(fontsize=7)
    fig.tight_layout()
    return _save(fig, path, dpi)


def plot_recurrent(
    snn: "SpikingNetwork",
    path: str | os.PathLike[str],
    *,
    figsize: tuple[float, float] | None = None,
    dpi: int = 100,
) -> Path:
    """The recurrent weight matrix and the loop structure of a network with population loops.

    Left: the effective recurrent matrix of the first looping population (direct and relayed
    paths, in units of its threshold; :func:`spikebridge.analysis.graph.effective_recurrent_matrix`),
    with its spectral radius and the ANN's.  Middle: its weight distribution.  Right: the
    population graph of the loops, each edge labelled with its delay in steps.

    Raises
    ------
    ValidationError
        The network has no recurrent loop.
    """
    import networkx as nx

    from ..conversion.latency import _population_edges
    from .graph import analyse

    report = analyse(snn)
    if not report.recurrent:
        raise ValidationError(f"plot_recurrent: network '{snn.name}' has no recurrent loop", attr="snn")
    from .graph import effective_recurrent_matrix

    loop = report.recurrent[0]
    target = next(iter(loop["spectral_radius"]), loop["populations"][0])
    m = effective_recurrent_matrix(snn, target, loop["populations"])
    fig = _figure(figsize or (12.0, 3.8), dpi)
    ax = fig.add_subplot(1, 3, 1)
    nz = np.abs(m[m != 0])
    lim = float(np.percentile(nz, 99)) if nz.size else 1.0  # a few large weights would wash out the rest
    im = ax.imshow(m, cmap="RdBu_r", vmin=-lim, vmax=lim, interpolation="nearest")
    fig.colorbar(im, ax=ax, fraction=0.046)
    sr = loop["spectral_radius"].get(target, {})
    title = f"{target} -> {target} (rates, x threshold)"
    if sr:
        title += f"\nspectral radius SNN {sr['snn']:.3g}" + (f", ANN {sr['ann']:.3g}" if sr.get("ann") is not None else "")
    ax.set_title(title, fontsize=9)
    ax.set_xlabel("pre (sending) neuron")
    ax.set_ylabel("post (receiving) neuron")
    ax = fig.add_subplot(1, 3, 2)
    w = m[m != 0]
    ax.hist(w, bins=40, color="C0")
    ax.set_yscale("log")
    ax.set_title(f"recurrent weights: {int(np.sum(w > 0))} E, {int(np.sum(w < 0))} I", fontsize=9)
    ax.set_xlabel("effective weight")
    ax = fig.add_subplot(1, 3, 3)
    pedges = _population_edges(snn)
    g = nx.DiGraph()
    g.add_nodes_from(snn.populations)
    for (a, b), (lo, hi, _) in pedges.items():
        g.add_edge(a, b, label=f"{lo}" if lo == hi else f"{lo}-{hi}")
    looping = {p for lp in report.loops for p in lp}
    pos = nx.shell_layout(g) if len(g) > 2 else nx.circular_layout(g)
    nx.draw_networkx_nodes(g, pos, ax=ax, node_color=["C3" if n in looping else "C7" for n in g], node_size=500)
    nx.draw_networkx_labels(g, pos, ax=ax, font_size=7)
    nx.draw_networkx_edges(g, pos, ax=ax, arrows=True, connectionstyle="arc3,rad=0.15", node_size=500)
    nx.draw_networkx_edge_labels(g, pos, ax=ax, edge_labels=nx.get_edge_attributes(g, "label"), font_size=7)
    ax.set_title(f"populations (red: in a loop), delays in steps\nloop lengths {loop['loop_steps']} steps", fontsize=9)
    ax.axis("off")
    fig.tight_layout()
    return _save(fig, path, dpi)


def plot_receptive_fields(
    weights: ArrayLike,
    path: str | os.PathLike[str],
    *,
    image_shape: tuple[int, int],
    labels: ArrayLike | None = None,
    cols: int = 10,
    dpi: int = 100,
) -> Path:
    """Input weights of every neuron drawn as an image (e.g. what each STDP neuron learned).

    Parameters
    ----------
    weights : array_like, shape (n_neurons, H * W)
        One row of input weights per neuron (pixels in C order).
    image_shape : (H, W)
    labels : array_like of int, shape (n_neurons,), optional
        Class of each neuron, shown as its title.
    """
    w = np.asarray(weights, dtype=np.float64)
    h, wd = image_shape
    if w.ndim != 2 or w.shape[1] != h * wd:
        raise ValidationError(f"plot_receptive_fields: weights {w.shape} do not hold {h}x{wd} images", attr="weights")
    n = w.shape[0]
    cols = max(1, min(cols, n))
    rows = (n + cols - 1) // cols
    fig = _figure((0.9 * cols, 0.95 * rows), dpi)
    lab = None if labels is None else np.asarray(labels)
    for k in range(n):
        ax = fig.add_subplot(rows, cols, k + 1)
        ax.imshow(w[k].reshape(h, wd), cmap="gray_r", interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([])
        if lab is not None:
            ax.set_title(str(lab[k]), fontsize=7, pad=1)
    fig.tight_layout(pad=0.2)
    return _save(fig, path, dpi)


def plot_all(
    store_path: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    prefix: str = "",
    snn: "SpikingNetwork | None" = None,
    raster_samples: int = 3,
    fmt: str = "png",
    dpi: int = 100,
) -> dict[str, Path]:
    """Draw every figure a spike store supports into ``out_dir``.

    Returns
    -------
    dict of str to Path
        Keys ``"accuracy"`` (when labels and ANN outputs are stored),
        ``"raster"`` (when spikes were recorded), ``"scatter"`` (when ANN
        activations were stored), ``"rates"``, ``"weights"`` (weight
        distributions before/after learning, when weights were recorded).
    """
    from ..store.spikes import SpikeStore
    from .compare import compare, layer_data, load_comparison_inputs

    out = Path(out_dir)
    figures: dict[str, Path] = {}
    with SpikeStore(store_path) as st:
        inputs = load_comparison_inputs(st, snn=snn)
        rec = inputs.record
        report = compare(st, snn=snn)
        if report.accuracy_t:
            figures["accuracy"] = plot_accuracy(
                report.accuracy_t, out / f"{prefix}accuracy.{fmt}", dt=rec.dt, ann_accuracy=report.ann_accuracy, dpi=dpi
            )
        # one colour per population in every figure, in pipeline order
        order = pipeline_order(st.population_info, sorted(set(st.population_info) | set(st) | set(rec.counts)))
        colors = population_colors(order)
        if len(st):
            shown = list(range(min(raster_samples, rec.n_samples)))
            figures["raster"] = plot_raster(st, out / f"{prefix}raster.{fmt}", samples=shown, n_steps=rec.n_steps, dpi=dpi,
                                            populations=[n for n in order if n in st], colors=colors)
        data = layer_data(inputs)
        if data:
            figures["scatter"] = plot_rate_vs_activation(list(data.values()), out / f"{prefix}scatter.{fmt}", dpi=dpi,
                                                         colors=colors)
        if rec.counts:
            counts = {n: rec.counts[n] for n in order if n in rec.counts}
            figures["rates"] = plot_rate_histograms(counts, out / f"{prefix}rates.{fmt}", n_steps=rec.n_steps, dt=rec.dt,
                                                    dpi=dpi, colors=colors)
        from ..store.weights import read_weights

        histories = read_weights(st)
        if histories:
            figures["weights"] = plot_weight_distribution(histories, out / f"{prefix}weights.{fmt}", dpi=dpi)
    if snn is not None and any(p.pre == p.post for p in snn.projections.values()):
        figures["recurrent"] = plot_recurrent(snn, out / f"{prefix}recurrent.{fmt}", dpi=dpi)
    return figures


def plot_report(store_path: str | os.PathLike[str], out_dir: str | os.PathLike[str], *, fmt: str = "png") -> list[Path]:
    """Figures for ``spikebridge compare --plots DIR``: :func:`plot_all` with the store's name as prefix."""
    prefix = Path(store_path).stem + "_"
    return list(plot_all(store_path, out_dir, prefix=prefix, fmt=fmt).values())


def plot_sweep(
    rows: Sequence[Mapping[str, Any]],
    keys: Sequence[str],
    path: str | os.PathLike[str],
    *,
    dpi: int = 100,
) -> Path:
    """SNN accuracy against each swept value (one panel per key).

    Parameters
    ----------
    rows : sequence of mappings
        One per sweep point: the swept ``keys``, ``"snn_accuracy"`` and
        ``"ann_accuracy"`` (fractions).
    keys : sequence of str
        Swept keys (``"conversion.percentile"``...).  In a key's panel, one
        line per combination of the other keys' values.
    path : str or path-like
        ``.png``, ``.svg`` or ``.pdf`` to write.
    """
    if not keys or not rows:
        raise ValidationError("plot_sweep: nothing swept", attr="rows")
    fig = _figure((4.0 * len(keys), 3.5), dpi)
    for i, key in enumerate(keys):
        ax = fig.add_subplot(1, len(keys), i + 1)
        others = [k for k in keys if k != key]
        groups: dict[tuple[Any, ...], list[Mapping[str, Any]]] = {}
        for row in rows:
            groups.setdefault(tuple(row[k] for k in others), []).append(row)
        numeric = all(isinstance(r[key], (int, float)) and not isinstance(r[key], bool) for r in rows)
        for j, (combo, group) in enumerate(groups.items()):
            xs = [r[key] if numeric else str(r[key]) for r in group]
            label = ", ".join(f"{k.split('.', 1)[1]}={v}" for k, v in zip(others, combo)) or "SNN"
            ax.plot(xs, [100 * float(r["snn_accuracy"]) for r in group], marker="o", color=f"C{j % 10}", label=label)
        ann = [float(r["ann_accuracy"]) for r in rows if r.get("ann_accuracy") is not None]
        if ann:
            ax.axhline(100 * float(np.median(ann)), color="0.4", linestyle="--", label="ANN")
        ax.set_xlabel(key)
        ax.set_ylabel("SNN accuracy (%)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small", loc="lower right")
    fig.tight_layout()
    return _save(fig, path, dpi)
