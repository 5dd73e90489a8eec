"""Markdown and HTML reports of experiment results (figures linked, numbers in tables)."""

from __future__ import annotations

import html
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["write_report", "summary_rows", "SUMMARY_HEADER"]

#: readable labels (with units) of the operations-and-energy table's rows (``OpsReport`` fields)
OPS_LABELS = {
    "n_samples": "samples",
    "n_steps": "time steps T",
    "ann_macs": "ANN multiply-accumulates (MACs) per inference",
    "snn_synops": "SNN synaptic operations (SynOps) per inference",
    "snn_macs": "SNN MACs per inference (analog input layer)",
    "synops_per_mac": "SNN SynOps / ANN MACs",
    "spikes_per_inference": "spikes per inference",
    "mean_spikes_per_neuron": "mean spikes per neuron per inference",
    "ann_energy_j": "ANN energy per inference (J)",
    "snn_energy_j": "SNN energy per inference (J)",
    "energy_ratio": "energy SNN / ANN",
    "e_mac_j": "energy of one MAC (J)",
    "e_ac_j": "energy of one accumulate, AC (J)",
    "energy_source": "energy figures from",
}

SUMMARY_HEADER = ("model", "samples", "T", "ANN acc", "SNN acc", "agreement", "T within 0.5 pt", "SynOps/MACs", "energy SNN/ANN", "sim time")


def _pct(v: Any) -> str:
    return "–" if v is None else f"{100 * float(v):.2f} %"


def _get(d: dict[str, Any] | None, *keys: str, default: Any = None) -> Any:
    cur: Any = d or {}
    for k in keys:
        if not isinstance(cur, dict) or k not in cur:
            return default
        cur = cur[k]
    return cur


def summary_rows(results: Sequence[Any]) -> list[list[str]]:
    """One row of headline numbers per :class:`~spikebridge.run.experiment.ModelResult`."""
    rows = []
    for r in results:
        s, c, o = r.summary, r.comparison, r.ops or {}
        within = _get(c, "steps_within", "0.5")
        ratio = _get(o, "synops_per_mac")
        energy = _get(o, "energy_ratio")
        rows.append(
            [
                r.name,
                str(s.get("samples")),
                str(s.get("n_steps")),
                _pct(s.get("ann_accuracy")),
                _pct(s.get("snn_accuracy")),
                _pct(c.get("agreement")),
                "never" if within is None else str(within),
                "–" if ratio is None else f"{ratio:.3f}",
                "–" if energy is None else f"{energy:.3f}",
                f"{s.get('simulate_s', 0.0):.1f} s",
            ]
        )
    return rows


def _md_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(map(str, r)) + " |" for r in rows]
    return "\n".join(out)


def _layer_rows(result: Any) -> list[list[str]]:
    rows = []
    for layer in _get(result.comparison, "layers", default=[]) or []:
        pop, name = layer.get("population"), str(layer.get("layer"))
        rows.append(
            [
                f"{pop} ({name})" if pop and pop != name else name,
                "–" if layer.get("correlation") is None else f"{layer['correlation']:.3f}",
                "–" if layer.get("slope") is None else f"{layer['slope']:.3f}",
                _pct(layer.get("saturated_fraction")),
                _pct(layer.get("silent_active_fraction")),
            ]
        )
    return rows


def _graph_rows(result: Any) -> list[list[str]]:
    g = result.graph or {}
    counts = g.get("counts", {})
    lat = g.get("latency", {})
    comps = g.get("components", {})
    rows = [
        ["neurons / synapses", f"{counts.get('neurons', '–')} / {counts.get('synapses', '–')}"],
        ["excitatory / inhibitory / mixed-sign neurons", f"{counts.get('exc', 0)} / {counts.get('inh', 0)} / {counts.get('mixed', 0)}"],
        ["excitatory / inhibitory synapses", f"{counts.get('exc_synapses', 0)} / {counts.get('inh_synapses', 0)}"],
        ["neurons in recurrent loops", str(comps.get("neurons_in_loops", 0))],
        ["population loops", ", ".join("→".join(loop) for loop in g.get("loops", [])) or "none (feed-forward)"],
        ["reciprocity", f"{g.get('reciprocity', 0.0):.3g}"],
    ]
    if lat:
        rows.append(["input→output latency (shortest / longest)", f"{lat.get('shortest_s', 0) * 1e3:g} ms / {lat.get('longest_s', 0) * 1e3:g} ms"])
    return rows


def _population_rows(result: Any) -> list[list[str]]:
    rows = []
    for name, p in ((result.graph or {}).get("populations") or {}).items():
        if p.get("role") == "input":
            continue
        exc, inh = p.get("exc_input", {}).get("mean"), p.get("inh_input", {}).get("mean")
        rows.append(
            [
                name,
                str(p.get("ei", "")),
                str(p.get("n", "")),
                f"{p.get('in_degree', {}).get('mean', 0):.1f}",
                "–" if exc is None else f"{exc:.3g}",
                "–" if inh is None else f"{inh:.3g}",
                "–" if p.get("balance") is None else f"{p['balance']:+.3f}",
            ]
        )
    return rows


def write_report(results: Sequence[Any], out_dir: str | os.PathLike[str], *, title: str = "spikebridge report") -> tuple[Path, Path]:
    """Write ``report.md`` and ``report.html`` for a list of model results.

    Parameters
    ----------
    results : sequence of ModelResult
    out_dir : path-like
        Directory holding the figures; the reports go there too.
    title : str

    Returns
    -------
    (Path, Path)
        Paths of the Markdown and HTML reports.
    """
    out = Path(out_dir)
    md: list[str] = [f"# {title}", ""]
    md += ["## Summary", "", _md_table(SUMMARY_HEADER, summary_rows(results)), ""]
    for r in results:
        md += [f"## {r.name}", ""]
        md += [f"Network file: `{r.network_path.name}`; spike store: `{r.store_path.name}`.", ""]
        diag = _get(r.comparison, "diagnosis", "suggestions", default=[]) or []
        for fig_key, caption in (
            ("accuracy", "Accuracy versus time, with the ANN's accuracy as a line"),
            ("raster", "Spike raster"),
            ("scatter", "SNN firing rate versus normalised ANN activation, per layer"),
            ("rates", "Firing-rate histograms per population"),
            ("recurrent", "Recurrent weight matrix, its weights and the loop structure (delays in steps)"),
        ):
            if fig_key in r.figures:
                md += [f"![{caption}]({Path(r.figures[fig_key]).name})", "", f"*{caption}.*", ""]
        layer_rows = _layer_rows(r)
        if layer_rows:
            md += ["### Per-layer fidelity", "", _md_table(["population (ANN layer)", "rate/activation corr.", "slope", "saturated", "silent where ANN active"], layer_rows), ""]
        if diag:
            md += ["### Diagnosis", ""] + [f"- {s}" for s in diag] + [""]
        ops = r.ops or {}
        if ops:
            rows = [[OPS_LABELS.get(k, k.replace("_", " ")), f"{v:.4g}" if isinstance(v, float) else str(v)]
                    for k, v in ops.items() if not isinstance(v, (dict, list))]
            md += ["### Operations and energy", "", _md_table(["quantity", "value"], rows), ""]
        if r.graph:
            md += ["### Connectivity (E/I and graph summary)", "", _md_table(["measure", "value"], _graph_rows(r)), ""]
            pop_rows = _population_rows(r)
            if pop_rows:
                header = ["population", "outgoing sign", "neurons", "mean in-degree", "mean exc. input", "mean inh. input", "E/I balance"]
                md += [_md_table(header, pop_rows), ""]
            md += [f"*{note}*" for note in r.graph.get("notes", [])] + [""]
    md_path = out / "report.md"
    md_path.write_text("\n".join(md) + "\n", encoding="utf-8")
    html_path = out / "report.html"
    html_path.write_text(_to_html(md, title), encoding="utf-8")
    return md_path, html_path


def _to_html(md_lines: Sequence[str], title: str) -> str:
    """Render the small Markdown subset we write (headings, tables, images, lists, text)."""
    body: list[str] = []
    table: list[str] = []

    def flush_table() -> None:
        if not table:
            return
        rows = [r.strip().strip("|").split("|") for r in table if not set(r.replace("|", "").strip()) <= {"-"}]
        body.append("<table>")
        for k, cells in enumerate(rows):
            tag = "th" if k == 0 else "td"
            body.append("<tr>" + "".join(f"<{tag}>{html.escape(c.strip())}</{tag}>" for c in cells) + "</tr>")
        body.append("</table>")
        table.clear()

    for block in md_lines:
        for line in block.split("\n"):
            if line.startswith("|"):
                table.append(line)
                continue
            flush_table()
            if line.startswith("#"):
                level = len(line) - len(line.lstrip("#"))
                body.append(f"<h{level}>{html.escape(line[level:].strip())}</h{level}>")
            elif line.startswith("![") and "](" in line:
                alt = line[2 : line.index("]")]
                src = line[line.index("](") + 2 : -1]
                body.append(f'<figure><img src="{html.escape(src)}" alt="{html.escape(alt)}" style="max-width:100%"></figure>')
            elif line.startswith("- "):
                body.append(f"<ul><li>{html.escape(line[2:])}</li></ul>")
            elif line.startswith("*") and line.endswith("*"):
                body.append(f"<p><em>{html.escape(line.strip('*'))}</em></p>")
            elif line.strip():
                body.append(f"<p>{html.escape(line).replace('`', '')}</p>")
    flush_table()
    style = "body{font-family:sans-serif;max-width:60em;margin:2em auto}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 8px}"
    return f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title><style>{style}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n"
