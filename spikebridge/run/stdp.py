"""The unsupervised STDP digits experiment: train, label, test, store and plot (Diehl & Cook style).

The learner itself (network, training loop, labels) is :mod:`spikebridge.learning.stdp`; this module
adds what a run needs around it: the shipped digits, simulation of the labelled network, the spike
store and the receptive-field figure.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import logging
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ..config import SimulationConfig
from ..errors import ValidationError
from ..learning.stdp import DiehlCookConfig, assign_labels, labelled_network, train_diehl_cook, write_weight_history

log = logging.getLogger(__name__)

__all__ = ["run_stdp_digits", "load_stdp_experiment"]


def run_stdp_digits(
    cfg: DiehlCookConfig, out_dir: str | Path, *, overwrite: bool = False, workers: int = 0, plots: bool = True,
    say: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Train on the shipped digits, label, test; write a spike store with the weight history.

    Parameters
    ----------
    cfg : DiehlCookConfig
    out_dir : str or path-like
        Receives ``stdp_digits_net.h5`` (the labelled network),
        ``stdp_digits_spikes.h5`` (test spikes + ``/weights/in_exc``),
        ``stdp_digits_summary.json`` and the receptive-field figure.
    overwrite : bool
        Replace existing output files.
    workers : int
        Processes for the batched labelling and test simulations (0 = one per core).
    plots : bool
        Also draw every neuron's learned input weights, sorted by label, to
        ``stdp_digits_receptive_fields.png`` (when matplotlib is installed).

    Returns
    -------
    dict
        ``accuracy`` (test), ``train_accuracy`` (labelling samples),
        ``epoch_s``, ``label_s``, ``test_s``, ``neurons_per_class``, sizes and paths.
    """
    from .simulate import simulate
    from ..datasets import load_digits
    from .store import simulate_to_store

    say = say or (lambda msg: log.info(msg))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    net_path, store_path = out / "stdp_digits_net.h5", out / "stdp_digits_spikes.h5"
    for p in (net_path, store_path):
        if p.exists() and not overwrite:
            raise ValidationError(f"output '{p}' exists; pass --overwrite to replace it", attr="out")
    x_tr, y_tr = load_digits("train")
    x_te, y_te = load_digits("test")
    x_tr, y_tr = x_tr[: cfg.n_train], y_tr[: cfg.n_train]
    x_te, y_te = x_te[: cfg.n_test], y_te[: cfg.n_test]
    x_tr, x_te = x_tr.reshape(len(x_tr), -1), x_te.reshape(len(x_te), -1)
    say(f"training {cfg.n_exc} excitatory neurons on {len(x_tr)} digits x {cfg.epochs} epoch(s) (STDP, Brian2 {cfg.target})")
    learner, plastic, info = train_diehl_cook(x_tr, cfg, say=say)
    sim = SimulationConfig(n_steps=cfg.n_steps_test, dt=cfg.dt, target=cfg.target, seed=cfg.seed + 1, workers=workers)
    t0 = time.perf_counter()
    rec = simulate(learner, x_tr, sim)
    labels = assign_labels(rec.counts["exc"], y_tr, 10)
    label_s = time.perf_counter() - t0
    snn = labelled_network(learner, labels, 10)
    train_acc = float(np.mean(np.argmax(_class_means(rec.counts["exc"], labels, 10), axis=1) == y_tr))
    snn.save(net_path, overwrite=True)
    say(f"labelled {cfg.n_exc} neurons on {len(x_tr)} training digits ({label_s:.1f} s); testing on {len(x_te)}")
    t1 = time.perf_counter()
    test = simulate_to_store(snn, x_te, store_path, dataclasses.replace(sim, seed=cfg.seed + 2, record=("exc", "inh", "input")),
                             labels=y_te, overwrite=True, network_path=net_path)
    test_s = time.perf_counter() - t1
    write_weight_history(store_path, plastic, pre="input", post="exc")
    acc = float(np.mean(test.predictions() == y_te))
    figure = None
    if plots and importlib.util.find_spec("matplotlib") is not None:
        from ..analysis.plot import plot_receptive_fields

        order = np.argsort(labels, kind="stable")
        figure = str(plot_receptive_fields(plastic.weight_matrix()[order], out / "stdp_digits_receptive_fields.png",
                                           image_shape=(8, 8), labels=labels[order]))
    summary = {
        "accuracy": acc, "train_accuracy": train_acc, "n_exc": cfg.n_exc, "n_train": len(x_tr), "n_test": len(x_te),
        "neurons_per_class": np.bincount(labels, minlength=10).tolist(), "figure": figure,
        "epochs": cfg.epochs, "epoch_s": info["epoch_s"], "build_s": info["build_s"],
        "spikes_per_sample": info["spikes_per_sample"], "label_s": label_s, "test_s": test_s,
        "classes_covered": int(np.unique(labels).size), "config": cfg.to_dict(),
        "network": str(net_path), "store": str(store_path),
    }
    (out / "stdp_digits_summary.json").write_text(json.dumps(summary, indent=2, default=float))
    say(f"test accuracy {100 * acc:.1f} % ({len(x_te)} digits), training-set vote {100 * train_acc:.1f} %")
    return summary



def _class_means(counts: NDArray[Any], labels: NDArray[np.int64], n_classes: int) -> NDArray[np.float64]:
    c = np.asarray(counts, dtype=np.float64)
    n_per = np.maximum(np.bincount(labels, minlength=n_classes), 1)
    out = np.zeros((c.shape[0], n_classes))
    np.add.at(out.T, labels, c.T)
    return out / n_per



def load_stdp_experiment(raw: Mapping[str, Any]) -> tuple[DiehlCookConfig, dict[str, Any]]:
    """Read the ``[stdp]`` and ``[experiment]`` tables of an experiment file (``spikebridge run``)."""
    unknown = sorted(set(raw) - {"stdp", "experiment"})
    if unknown:
        raise ValidationError(f"STDP experiment file: unknown table [{unknown[0]}]; known tables: stdp, experiment", attr=unknown[0])
    exp = dict(raw.get("experiment", {}))
    bad = sorted(set(exp) - {"name", "out"})
    if bad:
        raise ValidationError(f"STDP experiment file: unknown key '{bad[0]}' in [experiment]; known keys: name, out", attr=bad[0])
    return DiehlCookConfig.from_dict(raw.get("stdp", {})), exp

