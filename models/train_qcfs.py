"""Train the MNIST LeNet-style CNN with QCFS activations (Bu et al. 2022) for low-latency conversion.

Run from the repository root (CPU, one thread, a few minutes)::

    python models/train_qcfs.py --data-dir /tmp/package/data            # train, export, update the card
    python models/train_qcfs.py --data-dir /tmp/package/data --levels 4 --arch swap -o /tmp/qcfs   # variants
    python models/train_qcfs.py --card                                   # only rewrite the model-card section

Architecture (``--arch``):

- ``poolfirst`` (shipped): Conv5(1→6, pad 2) → AvgPool2 → QCFS → Conv5(6→16) → AvgPool2 → QCFS →
  Linear 400-120 → QCFS → 120-84 → QCFS → 84-10.  Pooling before the activation folds into the
  convolution's synapses, so every spiking population is a QCFS layer (5 populations, latency 4
  steps with one-step delays);
- ``swap``: :func:`spikebridge.learning.qcfs.qcfs_model` applied to ``models/train_real.py``'s LeNet
  (Conv-ReLU-MaxPool x2, Linear 400-120-84-10): ReLU → QCFS, MaxPool → AvgPool (the paper's
  recipe unchanged), so each pooling becomes a population of its own (7 populations, latency 6).

Writes into ``models/`` (or ``-o``): ``mnist_lenet_qcfs.h5`` (the clip levels as
``ReLU(max_value=λ)``), ``mnist_lenet_qcfs.onnx`` (``Clip(0, λ)``), its ``metrics.json`` entry and the
QCFS section of ``MODEL_CARD.md``.  Training is seeded and deterministic (one thread).
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import sys
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

if not __package__:  # run as a script: use the checkout's spikebridge, not an installed one
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import spikebridge
from spikebridge.datasets import load_idx_set
from spikebridge.importers.from_torch import from_torch
from spikebridge.ir import AnnGraph, evaluate
from spikebridge.models.train_digits import _wilson, export_onnx
from spikebridge.models.train_real import make_lenet, replace_card_section
from spikebridge.learning.qcfs import QCFS, qcfs_layers, qcfs_model, to_clipped, train_qcfs

log = logging.getLogger("train_qcfs")

HERE = Path(__file__).resolve().parent
NAME = "mnist_lenet_qcfs"
INPUT_SHAPE = (1, 28, 28)
RECIPE: dict[str, Any] = {"seed": 0, "epochs": 4, "batch_size": 64, "lr": 2e-3, "weight_decay": 1e-4,
                          "levels": 8, "arch": "poolfirst", "init_percentile": 99.9, "dataset": "mnist"}


def make_lenet_qcfs(levels: int, arch: str = "poolfirst") -> nn.Module:
    """The LeNet-style CNN with QCFS activations (see the module docstring for ``arch``)."""
    if arch == "swap":
        return qcfs_model(make_lenet(), levels=levels)
    return nn.Sequential(
        OrderedDict(
            conv1=nn.Conv2d(1, 6, 5, padding=2),
            pool1=nn.AvgPool2d(2),
            act1=QCFS(levels),
            conv2=nn.Conv2d(6, 16, 5),
            pool2=nn.AvgPool2d(2),
            act2=QCFS(levels),
            flatten=nn.Flatten(),
            fc1=nn.Linear(400, 120),
            act3=QCFS(levels),
            fc2=nn.Linear(120, 84),
            act4=QCFS(levels),
            fc3=nn.Linear(84, 10),
        )
    )


def _eval(model: nn.Module, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return np.concatenate([model(torch.tensor(x[i : i + 1000], dtype=torch.float32)).numpy()
                               for i in range(0, len(x), 1000)])


def run(out_dir: Path, recipe: dict[str, Any], data_dir: str | None) -> dict[str, Any]:
    """Train, export and measure the model; returns its metrics entry."""
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    x_tr, y_tr = load_idx_set("mnist", "train", data_dir)
    x_te, y_te = load_idx_set("mnist", "test", data_dir)
    torch.manual_seed(recipe["seed"])
    model = make_lenet_qcfs(recipe["levels"], recipe["arch"])
    t0 = time.perf_counter()
    losses = train_qcfs(
        model, x_tr, y_tr, epochs=recipe["epochs"], batch_size=recipe["batch_size"], lr=recipe["lr"],
        weight_decay=recipe["weight_decay"], seed=recipe["seed"], init_percentile=recipe["init_percentile"],
        log=lambda e, loss, lam: log.info("epoch %d: loss %.4f, clip levels %s", e + 1, loss,
                                          {k: round(v, 3) for k, v in lam.items()}),
    )
    seconds = time.perf_counter() - t0
    quantised = _eval(model, x_te)  # the QCFS network itself (L-level activations)
    clipped_model = to_clipped(model)
    onnx_path = out_dir / f"{NAME}.onnx"
    export_onnx(clipped_model, INPUT_SHAPE, onnx_path)
    meta = {
        "task": "classification",
        "classes": list(range(10)),
        "dataset": "mnist",
        "input_range": [0, 1],
        "training": {**recipe, "optimiser": "Adam", "schedule": "cosine", "split": "mnist:train",
                     "activation": "QCFS (Bu et al. 2022)"},
    }
    graph = from_torch(model, input_shape=INPUT_SHAPE, name=NAME)
    graph = AnnGraph(graph.layers, graph.edges, name=NAME, metadata={**graph.metadata, **meta})
    h5_path = out_dir / f"{NAME}.h5"
    spikebridge.save_graph(graph, h5_path)
    shipped = spikebridge.load_graph(h5_path)
    logits = evaluate(shipped, x_te)
    summ = shipped.summary()
    entry = {
        "recipe": recipe,
        "final_train_loss": losses[-1],
        "train_losses": losses,
        "train_seconds": round(seconds, 1),
        "input_shape": list(INPUT_SHAPE),
        "n_test": len(y_te),
        "n_train": len(y_tr),
        "clip_levels": {n: m.clip_level for n, m in qcfs_layers(model)},
        "quantised_test_accuracy": float(np.mean(quantised.argmax(1) == y_te)),
        "test_accuracy": float(np.mean(logits.argmax(1) == y_te)),
        "test_errors": int(np.sum(logits.argmax(1) != y_te)),
        "max_abs_diff_torch_clipped_float32_vs_ir_float64": float(np.max(np.abs(logits - _eval(clipped_model, x_te)))),
        "n_params": int(sum(i.n_params for i in summ)),
        "macs": int(sum(i.macs for i in summ)),
        "h5_bytes": h5_path.stat().st_size,
        "onnx_bytes": onnx_path.stat().st_size,
    }
    log.info("%s: QCFS (L=%d) test accuracy %.4f, clipped-ReLU ANN %.4f, %.0f s", NAME, recipe["levels"],
             entry["quantised_test_accuracy"], entry["test_accuracy"], seconds)
    return entry


START, END = "<!-- qcfs-models:start -->", "<!-- qcfs-models:end -->"


def _layer_table(graph: AnnGraph) -> str:
    rows = ["| layer | type | output shape | parameters | MACs |", "|---|---|---|---:|---:|"]
    for info in graph.summary():
        clip = getattr(graph[info.name], "max_value", None)
        kind = info.type_name if clip is None else f"{info.type_name}, max {clip:.4f} (QCFS λ)"
        rows.append(f"| {info.name} | {kind} | {tuple(info.output_shape)} | {info.n_params} | {info.macs} |")
    return "\n".join(rows)


def card_section(m: dict[str, Any], out_dir: Path) -> str:
    """The QCFS section of MODEL_CARD.md, from the metrics entry and the shipped file."""
    r = m["recipe"]
    n_ok = m["n_test"] - m["test_errors"]
    lo, hi = _wilson(n_ok, m["n_test"])
    levels = ", ".join(f"{k} {v:.3f}" for k, v in m["clip_levels"].items())
    return "\n".join([
        START,
        f"## {NAME}",
        "",
        "<!-- Generated by models/train_qcfs.py from metrics.json; edit the template there. -->",
        "",
        "LeNet-style CNN trained with QCFS activations (quantisation-clip-floor-shift, Bu et al. 2022;",
        f"`spikebridge.learning.qcfs`, L = {r['levels']} levels, architecture `{r['arch']}`) for conversion at a few time",
        f"steps. Files: `{NAME}.h5` ({m['h5_bytes']} bytes; each QCFS layer stored as `ReLU(max_value=λ)`),",
        f"`{NAME}.onnx` ({m['onnx_bytes']} bytes; `Clip(0, λ)`). Trained by `models/train_qcfs.py` on the full",
        f"MNIST training split (grey levels / 255), {r['epochs']} epochs, batch {r['batch_size']}, Adam lr {r['lr']},",
        f"weight decay {r['weight_decay']} (clip levels included), cosine schedule, clip levels initialised to the",
        f"{r['init_percentile']}th percentile of each layer's input, seed {r['seed']}, one thread,",
        f"deterministic; final training loss {m['final_train_loss']:.4f}, {m['train_seconds']} s.",
        "",
        _layer_table(spikebridge.load_graph(out_dir / f"{NAME}.h5")),
        "",
        f"Total: {m['n_params']} parameters, {m['macs']} MACs per sample. Trained clip levels λ: {levels}.",
        f"Test accuracy of the QCFS network (quantised activations, torch float32): **{m['quantised_test_accuracy']:.4f}**;",
        "of the shipped clipped-ReLU ANN (`spikebridge.evaluate`,",
        f"float64; what the SNN approaches for large T): **{m['test_accuracy']:.4f}** ({n_ok}/{m['n_test']}; 95 % Wilson",
        f"interval {lo:.4f}-{hi:.4f}). Conversion accuracy per T: `benchmarks/bench_qcfs.py`.",
        END,
    ])


def write_card_section(metrics: dict[str, Any], out_dir: Path) -> Path:
    """Replace (or append) the marked QCFS section of MODEL_CARD.md; the rest is untouched."""
    return replace_card_section(out_dir / "MODEL_CARD.md", START, END, card_section(metrics[NAME], out_dir))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Train and export the MNIST LeNet with QCFS activations.")
    ap.add_argument("-o", "--out-dir", type=Path, default=HERE)
    ap.add_argument("--data-dir", default=None, help="folder with the MNIST IDX files (default: the cache)")
    ap.add_argument("--levels", type=int, default=RECIPE["levels"], help="quantisation levels L")
    ap.add_argument("--epochs", type=int, default=RECIPE["epochs"])
    ap.add_argument("--arch", choices=("poolfirst", "swap"), default=RECIPE["arch"])
    ap.add_argument("--card", action="store_true", help="only rewrite the model card section")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    metrics_path = args.out_dir / "metrics.json"
    metrics = json.loads(metrics_path.read_text()) if metrics_path.exists() else {}
    if not args.card:
        recipe = {**RECIPE, "levels": args.levels, "epochs": args.epochs, "arch": args.arch}
        metrics[NAME] = run(args.out_dir, recipe, args.data_dir)
        metrics["_env_qcfs"] = {"torch": torch.__version__, "numpy": np.__version__, "python": platform.python_version()}
        metrics_path.write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n")
    write_card_section(metrics, args.out_dir)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
