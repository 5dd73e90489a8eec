"""Train the recurrent models (IRNN-style ReLU RNNs) and write them as spikebridge HDF5 and ONNX files.

Run from the repository root (CPU, one thread, a few minutes per model)::

    python models/train_rnn.py --data-dir /tmp/package/data --fashion-dir /usr/share/datasets/fashion-mnist
    python models/train_rnn.py --only seq_mnist_rnn ...
    python models/train_rnn.py --export-only   # rebuild .h5/.onnx from the checkpoints, no training

Models (written into ``models/``):

- ``seq_mnist_rnn``: row-sequential MNIST (28 elements of 28 pixels), ``nn.RNN(28, 128, relu)``
  then ``nn.Linear(128, 10)`` on the last element;
- ``seq_fmnist_rnn``: the same on row-sequential Fashion-MNIST;
- ``sines_rnn``: next value of a noisy sum of three sines (1 input, 32 elements),
  ``nn.RNN(1, 64, relu)`` then ``nn.Linear(64, 1)`` on *every* element.

IRNN (Le, Jaitly & Hinton 2015): the recurrent weights start as the identity and the biases as
zero, so that the untrained network carries its state unchanged; Adam with gradient-norm clipping.

Conversion-aware training: the spiking network carries each hidden state as a spike count of
``K`` steps, i.e. with an error of about one spike, ``λ_j / K`` for a unit whose largest
activation is ``λ_j``.  During training the recurrence is unrolled by hand (the same
arithmetic as ``nn.RNN``) and uniform noise of that size, ``U(-1, 1) λ_j / K_train``
(``λ_j`` the unit's largest activation in the batch, not differentiated), is added to every
hidden state before it feeds the next element and the read-out, so the trained RNN tolerates
the quantisation of its own state.  Evaluation and export use the plain ``nn.RNN``.
Training is seeded and deterministic (one thread). Checkpoints are ``.npz`` arrays (never pickles),
loaded with ``allow_pickle=False``; the shipped files are the spikebridge HDF5 (``.h5``) written
through the torch importer and the ONNX export (``.onnx``).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

log = logging.getLogger("train_rnn")

HERE = Path(__file__).resolve().parent

RECIPES: dict[str, dict[str, Any]] = {
    "seq_mnist_rnn": {"seed": 0, "epochs": 10, "batch_size": 128, "lr": 1e-3, "hidden": 128, "clip": 1.0,
                      "dataset": "mnist", "time_budget_s": 420, "noise_k": 24},
    "seq_fmnist_rnn": {"seed": 0, "epochs": 10, "batch_size": 128, "lr": 1e-3, "hidden": 128, "clip": 1.0,
                       "dataset": "fashion-mnist", "time_budget_s": 420, "noise_k": 24},
    "sines_rnn": {"seed": 0, "epochs": 40, "batch_size": 64, "lr": 2e-3, "hidden": 64, "clip": 1.0,
                  "dataset": "sines", "time_budget_s": 240, "noise_k": 24},
}

SINES_LENGTH = 32


class SeqRNN(nn.Module):
    """ReLU RNN over a sequence with a linear read-out of the last hidden state (classifier) or of
    every hidden state (``every_element=True``: next-value prediction)."""

    def __init__(self, n_in: int, hidden: int, n_out: int, every_element: bool = False) -> None:
        super().__init__()
        self.every_element = every_element
        self.rnn = nn.RNN(n_in, hidden, nonlinearity="relu", batch_first=True)
        self.fc = nn.Linear(hidden, n_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, _ = self.rnn(x)
        return self.fc(h if self.every_element else h[:, -1, :])


def noisy_forward(model: Any, x: torch.Tensor, noise_k: int) -> torch.Tensor:
    """The model's forward pass with quantisation-sized noise on every hidden state (training only)."""
    rnn: Any = model.rnn
    w_ih, w_hh = rnn.weight_ih_l0, rnn.weight_hh_l0
    drive = x @ w_ih.T + (rnn.bias_ih_l0 + rnn.bias_hh_l0)
    h = torch.zeros(x.shape[0], w_hh.shape[0])
    states = []
    for t in range(x.shape[1]):
        h = torch.relu(drive[:, t] + h @ w_hh.T)
        states.append(h)
    hs = torch.stack(states, dim=1)
    lam = hs.detach().amax(dim=(0, 1)).clamp_min(1e-3)  # per unit: the largest activation in the batch
    noise = (torch.rand_like(hs) * 2 - 1) * lam / noise_k
    # the noisy state feeds the next element: unroll again with it
    h = torch.zeros_like(h)
    states = []
    for t in range(x.shape[1]):
        h = torch.relu(drive[:, t] + h @ w_hh.T) + noise[:, t]
        states.append(h)
    hs = torch.stack(states, dim=1)
    return model.fc(hs) if model.every_element else model.fc(hs[:, -1])


def irnn_init(rnn: nn.RNN, seed: int) -> None:
    """Identity recurrent weights, zero biases, small Gaussian input weights (IRNN)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in rnn.named_parameters():
            if name.startswith("weight_hh"):
                p.copy_(torch.eye(p.shape[0]))
            elif name.startswith("bias"):
                p.zero_()
            else:
                p.copy_(torch.randn(p.shape, generator=g) * 0.001 ** 0.5 * 3)


def make_sines(n: int, seed: int, length: int = SINES_LENGTH) -> tuple[np.ndarray, np.ndarray]:
    """Noisy sums of three sines, scaled into [0, 1]; the target is the clean next value.

    Returns ``x`` of shape (n, length, 1) (noisy signal) and ``y`` of shape (n, length, 1)
    (the noise-free signal one element later).
    """
    r = np.random.default_rng(seed)
    t = np.arange(length + 1, dtype=np.float64)
    freq = r.uniform(0.05, 0.35, size=(n, 3, 1))
    phase = r.uniform(0, 2 * np.pi, size=(n, 3, 1))
    amp = r.uniform(0.3, 1.0, size=(n, 3, 1))
    clean = np.sum(amp * np.sin(freq * t + phase), axis=1) / 3.0  # within [-1, 1]
    clean = 0.5 + 0.45 * clean  # within [0.05, 0.95]
    noisy = clean + r.normal(0.0, 0.02, size=clean.shape)
    return noisy[:, :-1, None], clean[:, 1:, None]


def load_data(dataset: str, dirs: dict[str, str | None]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Train and test arrays: images as (n, 28, 28) row sequences, or the sines task."""
    if dataset == "sines":
        x_tr, y_tr = make_sines(8000, seed=1)
        x_te, y_te = make_sines(1000, seed=2)
        return x_tr, y_tr, x_te, y_te
    from spikebridge.datasets import load_idx_set

    x_tr, y_tr = load_idx_set(dataset, "train", dirs.get(dataset))
    x_te, y_te = load_idx_set(dataset, "test", dirs.get(dataset))
    return x_tr.reshape(-1, 28, 28), y_tr, x_te.reshape(-1, 28, 28), y_te


def build(name: str) -> nn.Module:
    rec = RECIPES[name]
    if rec["dataset"] == "sines":
        return SeqRNN(1, rec["hidden"], 1, every_element=True)
    return SeqRNN(28, rec["hidden"], 10)


def torch_eval(model: nn.Module, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return np.concatenate(
            [model(torch.tensor(x[i : i + 1000], dtype=torch.float32)).numpy() for i in range(0, len(x), 1000)]
        )


def score(name: str, out: np.ndarray, y: np.ndarray) -> dict[str, float]:
    if RECIPES[name]["dataset"] == "sines":
        rmse = float(np.sqrt(np.mean((out - y) ** 2)))
        rng = float(np.max(y) - np.min(y))
        return {"rmse": rmse, "rmse_pct_range": 100 * rmse / rng, "mae_pct_range": 100 * float(np.mean(np.abs(out - y))) / rng}
    return {"accuracy": float(np.mean(np.argmax(out, axis=1) == y))}


def train(name: str, dirs: dict[str, str | None]) -> tuple[nn.Module, dict[str, Any]]:
    rec = RECIPES[name]
    torch.manual_seed(rec["seed"])
    np.random.seed(rec["seed"])
    model: Any = build(name)
    irnn_init(model.rnn, rec["seed"])
    x_tr, y_tr, x_te, y_te = load_data(rec["dataset"], dirs)
    regression = rec["dataset"] == "sines"
    xt = torch.tensor(x_tr, dtype=torch.float32)
    yt = torch.tensor(y_tr, dtype=torch.float32 if regression else torch.long)
    opt = torch.optim.Adam(model.parameters(), lr=rec["lr"])
    loss_fn: nn.Module = nn.MSELoss() if regression else nn.CrossEntropyLoss()
    gen = torch.Generator().manual_seed(rec["seed"])
    t0 = time.time()
    epochs_done = 0
    for epoch in range(rec["epochs"]):
        if epoch == (3 * rec["epochs"]) // 4:  # one step decay for the last quarter
            for group in opt.param_groups:
                group["lr"] = rec["lr"] * 0.2
        model.train()
        perm = torch.randperm(len(xt), generator=gen)
        total = 0.0
        for i in range(0, len(xt), rec["batch_size"]):
            idx = perm[i : i + rec["batch_size"]]
            opt.zero_grad()
            out = noisy_forward(model, xt[idx], rec["noise_k"]) if rec.get("noise_k") else model(xt[idx])
            loss = loss_fn(out, yt[idx])
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), rec["clip"])
            opt.step()
            total += float(loss.detach()) * len(idx)
        epochs_done += 1
        model.eval()
        s = score(name, torch_eval(model, x_te), y_te)
        log.info("%s epoch %d loss %.4f test %s (%.0f s)", name, epoch + 1, total / len(xt), s, time.time() - t0)
        sys.stdout.flush()
        if time.time() - t0 > rec["time_budget_s"]:
            log.info("%s: time budget reached after %d epochs", name, epochs_done)
            break
    model.eval()
    info = {"recipe": rec, "epochs_done": epochs_done, "train_s": round(time.time() - t0, 1),
            "test": score(name, torch_eval(model, x_te), y_te), "torch": torch.__version__}
    return model, info


def save_checkpoint(model: nn.Module, path: Path) -> None:
    np.savez(path, **{k: v.detach().numpy() for k, v in model.state_dict().items()})


def load_checkpoint(name: str, path: Path) -> nn.Module:
    model = build(name)
    with np.load(path, allow_pickle=False) as z:
        model.load_state_dict({k: torch.tensor(z[k]) for k in z.files})
    model.eval()
    return model


def export(name: str, model: nn.Module, out_dir: Path) -> dict[str, Any]:
    """Write ``<name>.onnx`` and (when the IR supports recurrent layers) ``<name>.h5``."""
    n_in = 1 if RECIPES[name]["dataset"] == "sines" else 28
    length = SINES_LENGTH if RECIPES[name]["dataset"] == "sines" else 28
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model, (torch.zeros((1, length, n_in)),), str(out_dir / f"{name}.onnx"), dynamo=False,
            input_names=["input"], output_names=["output"],
            dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}}, opset_version=17,
        )
    files = {"onnx": f"{name}.onnx"}
    try:
        from spikebridge.importers.from_torch import from_torch
        from spikebridge.ir import save_graph
    except ImportError:  # pragma: no cover - older trees without the recurrent IR
        return files
    try:
        graph = from_torch(model, input_shape=(length, n_in))
        save_graph(graph, out_dir / f"{name}.h5", overwrite=True)
    except Exception as exc:  # the importer may not know RNNs yet: keep the checkpoint, export later
        log.warning("%s: no .h5 written (%s); rerun with --export-only", name, exc)
        return files
    files["h5"] = f"{name}.h5"
    return files


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Train and export the recurrent (ReLU RNN) models.")
    ap.add_argument("-o", "--out-dir", type=Path, default=HERE)
    ap.add_argument("--ckpt-dir", type=Path, default=HERE, help="where the .npz checkpoints go")
    ap.add_argument("--only", choices=sorted(RECIPES), action="append")
    ap.add_argument("--data-dir", default=None, help="folder with the MNIST IDX files (default: the cache)")
    ap.add_argument("--fashion-dir", default=None, help="folder with the Fashion-MNIST IDX files (default: the cache)")
    ap.add_argument("--export-only", action="store_true", help="rebuild .h5/.onnx from the .npz checkpoints")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    dirs = {"mnist": args.data_dir, "fashion-mnist": args.fashion_dir}
    metrics_path = args.out_dir / "metrics_rnn.json"
    metrics = json.loads(metrics_path.read_text()) if metrics_path.exists() else {}
    for name in args.only or list(RECIPES):
        ckpt = args.ckpt_dir / f"{name}.npz"
        if args.export_only:
            model = load_checkpoint(name, ckpt)
        else:
            model, info = train(name, dirs)
            save_checkpoint(model, ckpt)
            metrics[name] = info
        metrics.setdefault(name, {})["files"] = export(name, model, args.out_dir)
        metrics_path.write_text(json.dumps(metrics, indent=1, sort_keys=True) + "\n")
        log.info("%s: %s", name, metrics[name])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
