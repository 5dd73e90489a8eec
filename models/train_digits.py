"""Train the shipped digits models and write them as spikebridge HDF5 and ONNX files.

Run from the repository root (CPU, one thread, about a minute on an idle core)::

    python models/train_digits.py              # train, export, measure, write metrics + card
    python models/train_digits.py --validate   # accuracy of the recipes on a held-out fifth of train
    python models/train_digits.py --card       # only rewrite MODEL_CARD.md from metrics.json

Writes into ``models/``:

- ``digits_mlp.h5`` / ``digits_mlp.onnx``: ReLU MLP 64-128-64-10;
- ``digits_cnn.h5`` / ``digits_cnn.onnx``: Conv(1->16)-ReLU-AvgPool-Conv(16->32)-ReLU-AvgPool-Linear(128->10);
- ``metrics.json``: test accuracies measured by :func:`spikebridge.evaluate` on the written ``.h5`` files;
- ``MODEL_CARD.md``: filled in from the same measurements.

Training is seeded and deterministic (``torch.use_deterministic_algorithms``,
one thread), on the fixed training split of :func:`spikebridge.datasets.load_digits`.
The test split is only used for the final report.
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import time
import warnings
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

import spikebridge
from spikebridge.datasets import load_digits
from spikebridge.ir import AnnGraph, evaluate

log = logging.getLogger("train_digits")

HERE = Path(__file__).resolve().parent

#: hyper-parameters, one entry per model; recorded in metrics.json and the model card
RECIPES: dict[str, dict[str, Any]] = {
    # chosen on a validation fifth of the training split (see ``--validate``), never on the test split
    "digits_mlp": {"seed": 0, "epochs": 100, "batch_size": 16, "lr": 1e-2, "weight_decay": 1e-3},
    "digits_cnn": {"seed": 0, "epochs": 150, "batch_size": 16, "lr": 2e-2, "weight_decay": 1e-4},
}

METADATA_BASE: dict[str, Any] = {
    "task": "classification",
    "classes": list(range(10)),
    "dataset": "digits",
    "input_range": [0, 1],
}


def make_mlp() -> nn.Sequential:
    """ReLU MLP 64-128-64-10 with biases; input is the flattened 8x8 image."""
    return nn.Sequential(
        OrderedDict(
            fc1=nn.Linear(64, 128),
            relu1=nn.ReLU(),
            fc2=nn.Linear(128, 64),
            relu2=nn.ReLU(),
            fc3=nn.Linear(64, 10),
        )
    )


def make_cnn() -> nn.Sequential:
    """Small CNN on (1, 8, 8): average pooling only, because it converts exactly to spikes."""
    return nn.Sequential(
        OrderedDict(
            conv1=nn.Conv2d(1, 16, 3, padding=1),
            relu1=nn.ReLU(),
            pool1=nn.AvgPool2d(2),
            conv2=nn.Conv2d(16, 32, 3, padding=1),
            relu2=nn.ReLU(),
            pool2=nn.AvgPool2d(2),
            flatten=nn.Flatten(),
            fc=nn.Linear(128, 10),
        )
    )


def to_graph(model: nn.Sequential, input_shape: tuple[int, ...], name: str, metadata: dict[str, Any]) -> AnnGraph:
    """Import the trained module with spikebridge's torch importer and attach our metadata."""
    graph = spikebridge.load_model(model, input_shape=input_shape)
    meta = {**graph.metadata, **metadata}
    return AnnGraph(list(graph.layers), list(graph.edges), name=name, metadata=meta)


def train(model: nn.Module, x: torch.Tensor, y: torch.Tensor, recipe: dict[str, Any]) -> list[float]:
    """Adam with weight decay, cross-entropy, shuffled mini-batches; returns the loss per epoch."""
    gen = torch.Generator().manual_seed(recipe["seed"])
    opt = torch.optim.Adam(model.parameters(), lr=recipe["lr"], weight_decay=recipe["weight_decay"])
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=recipe["epochs"])
    loss_fn = nn.CrossEntropyLoss()
    losses = []
    model.train()
    for _ in range(recipe["epochs"]):
        perm = torch.randperm(x.shape[0], generator=gen)
        total = 0.0
        for start in range(0, x.shape[0], recipe["batch_size"]):
            idx = perm[start : start + recipe["batch_size"]]
            opt.zero_grad()
            loss = loss_fn(model(x[idx]), y[idx])
            loss.backward()
            opt.step()
            total += loss.item() * idx.numel()
        sched.step()
        losses.append(total / x.shape[0])
    model.eval()
    return losses


def export_onnx(model: nn.Module, input_shape: tuple[int, ...], path: Path) -> None:
    # The legacy TorchScript exporter needs no onnxscript; torch >= 2.9 defaults to the dynamo one.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            model,
            (torch.zeros((1, *input_shape)),),
            str(path),
            dynamo=False,
            input_names=["input"],
            output_names=["logits"],
            dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
            opset_version=17,
        )


def accuracy(graph: AnnGraph, x: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean(np.argmax(evaluate(graph, x), axis=1) == y))


BUILDERS = {"digits_mlp": (make_mlp, (64,)), "digits_cnn": (make_cnn, (1, 8, 8))}


def validation_split(y: np.ndarray, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Hold out a stratified fifth of the training split for choosing hyper-parameters."""
    r = np.random.default_rng(seed)
    val = np.sort(np.concatenate([r.choice(np.flatnonzero(y == c), size=int(np.sum(y == c)) // 5, replace=False)
                                  for c in range(10)]))
    return np.setdiff1d(np.arange(y.size), val), val


def validate(names: list[str], seeds: tuple[int, ...] = (0, 1)) -> dict[str, list[float]]:
    """Validation accuracy of each recipe (trained on 4/5 of digits:train) for a few seeds."""
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    x, y = load_digits("train")
    tr, val = validation_split(y)
    out: dict[str, list[float]] = {}
    for name in names:
        make, in_shape = BUILDERS[name]
        xt = torch.tensor(x.reshape((-1, *in_shape)), dtype=torch.float32)
        yt = torch.tensor(y)
        out[name] = []
        for seed in seeds:
            torch.manual_seed(seed)
            model = make()
            train(model, xt[tr], yt[tr], {**RECIPES[name], "seed": seed})
            with torch.no_grad():
                out[name].append(float((model(xt[val]).argmax(1) == yt[val]).double().mean()))
    return out


def run(out_dir: Path, names: list[str]) -> dict[str, Any]:
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    x_train, y_train = load_digits("train")
    x_test, y_test = load_digits("test")
    results: dict[str, Any] = {}
    for name in names:
        make, in_shape = BUILDERS[name]
        recipe = RECIPES[name]
        torch.manual_seed(recipe["seed"])
        model = make()
        xt = torch.tensor(x_train.reshape((-1, *in_shape)), dtype=torch.float32)
        yt = torch.tensor(y_train)
        t0 = time.perf_counter()
        losses = train(model, xt, yt, recipe)
        seconds = time.perf_counter() - t0
        with torch.no_grad():
            logits_torch = model(torch.tensor(x_test.reshape((-1, *in_shape)), dtype=torch.float32)).numpy()
        meta = {**METADATA_BASE, "training": {**recipe, "optimiser": "Adam", "schedule": "cosine",
                                              "split": "digits:train (1437 samples)"}}
        graph = to_graph(model, in_shape, name, meta)
        h5_path, onnx_path = out_dir / f"{name}.h5", out_dir / f"{name}.onnx"
        spikebridge.save_graph(graph, h5_path)
        export_onnx(model, in_shape, onnx_path)
        shipped = spikebridge.load_graph(h5_path)
        logits = evaluate(shipped, x_test)
        results[name] = {
            "test_accuracy": accuracy(shipped, x_test, y_test),
            "test_errors": int(np.sum(np.argmax(logits, axis=1) != y_test)),
            "per_class_test_accuracy": [float(np.mean(np.argmax(logits[y_test == c], axis=1) == c)) for c in range(10)],
            "train_accuracy": accuracy(shipped, x_train, y_train),
            "n_test": int(y_test.size),
            "n_train": int(y_train.size),
            "n_params": shipped.n_params(),
            "macs": shipped.macs(),
            "input_shape": list(shipped.input_shape),
            "final_train_loss": losses[-1],
            "train_seconds": round(seconds, 2),
            "max_abs_diff_torch_float32_vs_ir_float64": float(np.max(np.abs(logits - logits_torch))),
            "recipe": recipe,
        }
        log.info("%s: test accuracy %.4f, train %.4f (%.1f s)", name, results[name]["test_accuracy"],
                 results[name]["train_accuracy"], seconds)
    return results


def _wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95 % Wilson score interval of a proportion k/n."""
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre - half, centre + half


def _layer_table(graph: AnnGraph) -> str:
    rows = ["| layer | type | output shape | parameters | MACs |", "|---|---|---|---:|---:|"]
    for info in graph.summary():
        rows.append(f"| {info.name} | {info.type_name} | {tuple(info.output_shape)} | {info.n_params} | {info.macs} |")
    return "\n".join(rows)


def write_model_card(metrics: dict[str, Any], out_dir: Path) -> Path:
    """Write ``MODEL_CARD.md`` from ``metrics.json`` and the shipped ``.h5`` files (no hand-copied numbers)."""
    sections = []
    for name in RECIPES:
        if name not in metrics:
            continue
        m = metrics[name]
        graph = spikebridge.load_graph(out_dir / f"{name}.h5")
        r = m["recipe"]
        n_ok = m["n_test"] - m["test_errors"]
        lo, hi = _wilson(n_ok, m["n_test"])
        val = m.get("validation_accuracy_per_seed")
        val_text = (f"validation accuracy of this recipe (trained on 4/5 of digits:train, seeds 0 and 1): "
                    f"{', '.join(f'{v:.4f}' for v in val)}" if val else "validation accuracy: run `--validate`")
        per_class = ", ".join(f"{c}: {a:.3f}" for c, a in enumerate(m["per_class_test_accuracy"]))
        sections.append(f"""## {name}

Files: `{name}.h5` (spikebridge ANN format, `spikebridge.load_graph`), `{name}.onnx` (opset 17,
`spikebridge.load_model`). Input shape {tuple(m["input_shape"])}, values in [0, 1]{
" (the 8x8 image flattened row by row;" + chr(10) + "`spikebridge.evaluate` also accepts (n, 1, 8, 8))" if len(m["input_shape"]) == 1 else ""};
output: 10 logits (no softmax), class = argmax.

{_layer_table(graph)}

Total: {m["n_params"]} parameters, {m["macs"]} MACs per sample.

Training: {r["epochs"]} epochs, batch size {r["batch_size"]}, Adam (lr {r["lr"]}, weight decay {r["weight_decay"]}),
cosine learning-rate schedule, cross-entropy loss, seed {r["seed"]}, no augmentation, no dropout, float32 on CPU
with one thread and `torch.use_deterministic_algorithms(True)` (re-running gives bit-identical weights).
Final training loss {m["final_train_loss"]:.4f}; {val_text}.

| measured on the shipped `.h5` with `spikebridge.evaluate` (float64) | value |
|---|---|
| test accuracy (digits:test, {m["n_test"]} samples) | **{m["test_accuracy"]:.4f}** ({n_ok}/{m["n_test"]}; 95 % Wilson interval {lo:.3f}-{hi:.3f}) |
| train accuracy (digits:train, {m["n_train"]} samples) | {m["train_accuracy"]:.4f} |
| max abs difference of logits, torch float32 vs IR float64 | {m["max_abs_diff_torch_float32_vs_ir_float64"]:.2e} |

Per-class test accuracy: {per_class}.
""")
    env = metrics.get("_env", {})
    text = f"""# Model card: shipped digits classifiers

<!-- Generated by models/train_digits.py from metrics.json; edit the template there, not this file. -->

Two small ReLU networks that classify 8x8 handwritten digits. They ship with spikebridge as
ready-made inputs for ANN-to-SNN conversion, tests, examples and benchmarks
(`spikebridge.models.load_shipped("digits_mlp")`).

## Intended use

- Demonstrating and testing the conversion pipeline (`load_model` -> `convert` -> `simulate` -> `compare`)
  and measuring how closely a spiking network follows its ANN.
- Not intended for recognising real handwriting: the images are 8x8 grey levels 0..16 produced by
  the UCI preprocessing, and accuracy on other digit data (e.g. MNIST downsampled) is unmeasured.

## Data

The 1,797-sample 8x8 digits (`spikebridge.datasets.load_digits`; source and licence in
`datasets/DIGITS_LICENSE.md`). Inputs are grey levels divided by 16, so in [0, 1]. Fixed split,
stratified by class, seed 0: 1,437 training / 360 test samples (indices stored in `digits.npz`).
Hyper-parameters were chosen on a stratified fifth of the training split (`--validate`, seed 1);
the test split was used only for the numbers below.

## Conversion-relevant properties

- ReLU activations only, average pooling only (no max pooling), no batch normalisation, no softmax
  layer: every layer has an exact rate-coded spiking counterpart.
- All layers have biases, so normalisation must rescale biases together with weights
  (b_l / lambda_l), otherwise accuracy collapses.
- Graph metadata: `task="classification"`, `classes=[0..9]`, `dataset="digits"`, `input_range=[0, 1]`
  and the training recipe.

{chr(10).join(sections)}
## Limitations

- The test split has only 360 samples: one sample is 0.28 percentage points, and the 95 % interval
  above spans about 3 points. Differences smaller than that between models or SNN settings are noise.
- scikit-learn's copy of the digits is the UCI test set, written by 13 people; the random split puts
  samples of the same writers in both training and test sets, so these accuracies overstate
  accuracy on unseen writers.
- No calibration, robustness or fairness evaluation was done. Both models reach 100 % training
  accuracy; they are small but still over-parameterised for 1,437 samples.

## Reproduce

```
python datasets/make_digits.py     # only to rebuild digits.npz (needs scikit-learn)
python models/train_digits.py --validate
python models/train_digits.py
```

Environment of the shipped files: torch {env.get("torch", "?")}, numpy {env.get("numpy", "?")},
Python {env.get("python", "?")}.
"""
    path = out_dir / "MODEL_CARD.md"
    # keep the real-data models' section, which models/train_real.py maintains
    old = path.read_text() if path.exists() else ""
    marker = "<!-- real-models:start -->"
    if marker in old:
        text = text.rstrip("\n") + "\n\n" + old[old.index(marker):]
    path.write_text(text)
    return path


def _read_metrics(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text()) if path.exists() else {}


def _write_metrics(path: Path, metrics: dict[str, Any]) -> None:
    path.write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Train and export the shipped digits models.")
    parser.add_argument("-o", "--out-dir", type=Path, default=HERE)
    parser.add_argument("--only", choices=sorted(RECIPES), action="append", help="train only this model")
    parser.add_argument("--validate", action="store_true",
                        help="only report validation accuracy (4/5 of digits:train for training, 1/5 held out)")
    parser.add_argument("--card", action="store_true", help="only rewrite MODEL_CARD.md from metrics.json")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    names = args.only or list(RECIPES)
    metrics_path = args.out_dir / "metrics.json"
    metrics = _read_metrics(metrics_path)
    if args.card:
        write_model_card(metrics, args.out_dir)
        return 0
    if args.validate:
        for name, accs in validate(names).items():
            print(f"{name}: validation accuracy per seed {[round(a, 4) for a in accs]}, mean {np.mean(accs):.4f}")
            if name in metrics and metrics[name].get("recipe") == RECIPES[name]:
                metrics[name]["validation_accuracy_per_seed"] = accs
        _write_metrics(metrics_path, metrics)
        write_model_card(metrics, args.out_dir)
        return 0
    results = run(args.out_dir, names)
    for name, r in results.items():
        old = metrics.get(name, {})
        if "validation_accuracy_per_seed" in old and old.get("recipe") == r["recipe"]:
            r["validation_accuracy_per_seed"] = old["validation_accuracy_per_seed"]
        metrics[name] = r
    metrics["_env"] = {"torch": torch.__version__, "numpy": np.__version__, "python": platform.python_version(),
                       "evaluated_with": "spikebridge.evaluate (float64) on the saved .h5 files, digits:test"}
    _write_metrics(metrics_path, metrics)
    write_model_card(metrics, args.out_dir)
    for name, r in results.items():
        print(f"{name}: test accuracy {r['test_accuracy']:.4f} ({r['n_test']} samples), "
              f"train {r['train_accuracy']:.4f}, params {r['n_params']}, MACs {r['macs']}, {r['train_seconds']} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
