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
from spikebridge.models.train_real import CLASSES, make_lenet, replace_card_section
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


# Fashion-MNIST VGG and ResNet-8 with QCFS activations, fine-tuned from the shipped ANNs
# (models/fmnist_vgg.h5, models/fmnist_resnet8.h5; BatchNorm already folded into the convolutions)
# instead of trained from scratch: a few epochs on one thread instead of tens.
FINE_TUNE: dict[str, dict[str, Any]] = {
    "fmnist_vgg_qcfs": {"seed": 0, "epochs": 3, "batch_size": 64, "lr": 5e-4, "weight_decay": 1e-4, "levels": 4,
                        "arch": "vgg_poolfirst", "init_percentile": 99.9, "dataset": "fashion-mnist",
                        "init_from": "fmnist_vgg.h5"},
    "fmnist_resnet8_qcfs": {"seed": 0, "epochs": 3, "batch_size": 64, "lr": 5e-4, "weight_decay": 1e-4, "levels": 4,
                            "arch": "resnet8", "init_percentile": 99.9, "dataset": "fashion-mnist",
                            "init_from": "fmnist_resnet8.h5"},
}


def make_vgg_qcfs(levels: int) -> nn.Module:
    """``models/train_real.py``'s VGG without BatchNorm (folded), QCFS for ReLU, average pooling first.

    Each max pooling after a ReLU becomes an average pooling before the activation, so it
    folds into the convolution's synapses and every spiking population is a QCFS layer
    (4 populations).
    """
    return nn.Sequential(
        OrderedDict(
            conv1=nn.Conv2d(1, 16, 3, padding=1),
            pool1=nn.AvgPool2d(2),
            relu1=QCFS(levels),
            conv2=nn.Conv2d(16, 32, 3, padding=1),
            relu2=QCFS(levels),
            conv3=nn.Conv2d(32, 32, 3, padding=1),
            pool2=nn.AvgPool2d(2),
            relu3=QCFS(levels),
            flatten=nn.Flatten(),
            fc1=nn.Linear(32 * 7 * 7, 64),
            relu4=QCFS(levels),
            fc2=nn.Linear(64, 10),
        )
    )


class _QBlock(nn.Module):
    """``train_real.Block`` with BatchNorm folded away and QCFS activations (same parameter names)."""

    def __init__(self, c_in: int, c_out: int, stride: int, levels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1)
        self.relu1 = QCFS(levels)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1)
        self.short: nn.Module = (
            nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride=stride)) if stride != 1 or c_in != c_out else nn.Identity()
        )
        self.relu2 = QCFS(levels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu2(self.conv2(self.relu1(self.conv1(x))) + self.short(x))


class ResNet8QCFS(nn.Module):
    """``train_real.ResNet8`` with BatchNorm folded away and QCFS activations (same layer names as the IR)."""

    def __init__(self, levels: int) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, 16, 3, stride=2, padding=1), QCFS(levels))
        self.block1 = _QBlock(16, 16, 1, levels)
        self.block2 = _QBlock(16, 32, 2, levels)
        self.block3 = _QBlock(32, 64, 2, levels)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.block3(self.block2(self.block1(self.stem(x))))
        return self.fc(self.flatten(self.pool(x)))


def load_ann_weights(model: nn.Module, graph: AnnGraph) -> list[str]:
    """Copy each Conv2d / Linear's weights from the IR layer of the same name; returns the names copied."""
    done = []
    with torch.no_grad():
        for name, m in model.named_modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                layer: Any = graph[name]  # a Dense or Conv2d of the IR
                m.weight.copy_(torch.as_tensor(np.asarray(layer.weight), dtype=torch.float32).reshape(m.weight.shape))
                assert m.bias is not None  # the training models all have biases
                m.bias.copy_(torch.as_tensor(np.asarray(layer.bias), dtype=torch.float32))
                done.append(name)
    return done


def _eval(model: nn.Module, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return np.concatenate([model(torch.tensor(x[i : i + 1000], dtype=torch.float32)).numpy()
                               for i in range(0, len(x), 1000)])


def run(out_dir: Path, recipe: dict[str, Any], data_dir: str | None, name: str = NAME) -> dict[str, Any]:
    """Train (or fine-tune), export and measure the model; returns its metrics entry."""
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    dataset = recipe.get("dataset", "mnist")
    x_tr, y_tr = load_idx_set(dataset, "train", data_dir)
    x_te, y_te = load_idx_set(dataset, "test", data_dir)
    torch.manual_seed(recipe["seed"])
    if recipe["arch"] == "vgg_poolfirst":
        model = make_vgg_qcfs(recipe["levels"])
    elif recipe["arch"] == "resnet8":
        model = ResNet8QCFS(recipe["levels"])
    else:
        model = make_lenet_qcfs(recipe["levels"], recipe["arch"])
    if recipe.get("init_from"):
        ann = spikebridge.load_graph(HERE / recipe["init_from"])
        load_ann_weights(model, ann)
        log.info("%s: weights from %s; ANN with QCFS before fine-tuning: %.4f", name, recipe["init_from"],
                 float(np.mean(_eval(model.eval(), x_te[:2000]).argmax(1) == y_te[:2000])))
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
    onnx_path = out_dir / f"{name}.onnx"
    export_onnx(clipped_model, INPUT_SHAPE, onnx_path)
    meta = {
        "task": "classification",
        "classes": CLASSES[dataset],
        "dataset": dataset,
        "input_range": [0, 1],
        "training": {**recipe, "optimiser": "Adam", "schedule": "cosine", "split": f"{dataset}:train",
                     "activation": "QCFS (Bu et al. 2022)"},
    }
    graph = from_torch(model, input_shape=INPUT_SHAPE, name=name)
    graph = AnnGraph(graph.layers, graph.edges, name=name, metadata={**graph.metadata, **meta})
    h5_path = out_dir / f"{name}.h5"
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
    log.info("%s: QCFS (L=%d) test accuracy %.4f, clipped-ReLU ANN %.4f, %.0f s", name, recipe["levels"],
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
    ap.add_argument("--model", choices=(NAME, *FINE_TUNE), default=NAME,
                    help="which model: the MNIST LeNet (trained from scratch) or a Fashion-MNIST one fine-tuned "
                         "from the shipped ANN (--data-dir then names the Fashion-MNIST folder)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    metrics_path = args.out_dir / "metrics.json"
    metrics = json.loads(metrics_path.read_text()) if metrics_path.exists() else {}
    if not args.card and args.model != NAME:
        recipe = dict(FINE_TUNE[args.model])
        metrics[args.model] = run(args.out_dir, recipe, args.data_dir, args.model)
        metrics["_env_qcfs"] = {"torch": torch.__version__, "numpy": np.__version__, "python": platform.python_version()}
        metrics_path.write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n")
        return 0
    elif not args.card:
        recipe = {**RECIPE, "levels": args.levels, "epochs": args.epochs, "arch": args.arch}
        metrics[NAME] = run(args.out_dir, recipe, args.data_dir)
        metrics["_env_qcfs"] = {"torch": torch.__version__, "numpy": np.__version__, "python": platform.python_version()}
        metrics_path.write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n")
    write_card_section(metrics, args.out_dir)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
