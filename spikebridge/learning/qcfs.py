"""QCFS training: quantised, clipped ReLUs whose networks convert at a few time steps.

Bu et al. (2022, "Optimal ANN-SNN conversion for high-accuracy and ultra-low-latency
spiking neural networks", ICLR) replace every ReLU by the *quantisation-clip-floor-shift*
activation

.. math::

    h(x) = \\frac{\\lambda}{L}\\,\\mathrm{clip}\\Big(\\Big\\lfloor \\frac{x L}{\\lambda} + \\frac12 \\Big\\rfloor, 0, L\\Big)

with ``L`` quantisation levels and a trainable clip level ``λ`` per layer; the floor has a
straight-through gradient.  An integrate-and-fire neuron with reset by subtraction,
threshold ``θ = λ`` and initial membrane potential ``θ / 2`` then emits, after ``T`` steps of
a constant drive ``x``, ``clip(floor(x T / λ + 1/2), 0, T)`` spikes: for ``T = L`` exactly the
trained activation, and for any ``T`` an unbiased rounding of ``x / λ`` (their Theorem 2:
the expected conversion error is zero).  So a network trained with ``QCFS`` converts with
little loss at ``T`` around ``L`` instead of hundreds of steps.

In spikebridge the trained ``λ`` reaches the converter as a clipped ReLU,
``spikebridge.ir.ReLU(max_value=λ)``: the PyTorch importer reads a :class:`QCFS` module as one,
ONNX files carry it as ``Clip(0, λ)`` (see :func:`to_clipped`), and data-based normalisation
uses the clip level as the layer's scale, so one spike per step stands for ``λ``
(equivalent to the threshold ``θ = λ`` of the paper, with weights scaled instead).
Convert with ``ConversionConfig(v_init=0.5)`` (the default) to start at half the threshold.

Recipe (as in the paper): every ReLU becomes a ``QCFS`` layer and max pooling becomes
average pooling (:func:`qcfs_model`), because a maximum of spike trains has no exact spiking
form at small ``T``, whereas an average is linear and folds into the next layer's weights.

Needs PyTorch: ``pip install "spikebridge[torch]"``.  ``import spikebridge`` never imports
this module; importing it without torch raises
:class:`~spikebridge.errors.MissingDependencyError` with that command.
"""

from __future__ import annotations

import copy
import math
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from .._optional import import_optional
from ..errors import ValidationError

# without torch, importing this module raises MissingDependencyError naming `pip install "spikebridge[torch]"`
import_optional("torch", "QCFS training (spikebridge.learning.qcfs)")
import torch
from torch import nn

__all__ = ["QCFS", "init_clip_levels", "qcfs_layers", "qcfs_model", "quantised_levels", "to_clipped", "train_qcfs"]


class QCFS(nn.Module):
    """Quantisation-clip-floor-shift activation with a trainable clip level (Bu et al. 2022).

    ``y = λ/L · clip(floor(x L/λ + shift), 0, L)``; the floor passes gradients straight
    through, so ``dy/dx = 1`` for ``0 < x < λ`` (0 outside) and
    ``dy/dλ = y/λ − x/λ`` inside, ``1`` above ``λ`` and ``0`` below 0.

    Parameters
    ----------
    levels : int
        Number of quantisation steps ``L`` (≥ 1); the output takes the ``L + 1`` values
        ``k λ / L``, ``k = 0 … L``.  Converted networks are most exact at ``T ≈ L`` steps.
    threshold : float
        Initial clip level ``λ`` (> 0), in the units of the layer's input
        (:func:`init_clip_levels` sets it from data).
    shift : float
        The shift inside the floor; 0.5 (rounding) makes the conversion error zero in
        expectation when the spiking network starts at half the threshold.
    trainable : bool
        Whether ``λ`` is a trained parameter.

    Attributes
    ----------
    threshold : torch.nn.Parameter, shape (1,)
        The clip level λ.
    """

    def __init__(self, levels: int = 8, threshold: float = 8.0, shift: float = 0.5, trainable: bool = True) -> None:
        super().__init__()
        if isinstance(levels, bool) or not isinstance(levels, (int, np.integer)) or levels < 1:
            raise ValidationError(f"QCFS: levels must be an int >= 1, got {levels!r}", attr="levels")
        if not (isinstance(threshold, (int, float)) and math.isfinite(threshold) and threshold > 0):
            raise ValidationError(f"QCFS: threshold must be a finite number > 0, got {threshold!r}", attr="threshold")
        if not (isinstance(shift, (int, float)) and 0.0 <= shift < 1.0):
            raise ValidationError(f"QCFS: shift must be in [0, 1), got {shift!r}", attr="shift")
        self.levels = int(levels)
        self.shift = float(shift)
        self.threshold = nn.Parameter(torch.tensor([float(threshold)]), requires_grad=bool(trainable))

    @property
    def clip_level(self) -> float:
        """The current clip level λ as a float (what the converter uses)."""
        return float(self.threshold.detach().reshape(-1)[0])

    def forward(self, x: Any) -> Any:
        lam = self.threshold
        z = torch.clamp(x / lam, 0.0, 1.0) * self.levels + self.shift
        # straight-through floor: the forward value is floor(z), the gradient that of z
        q = z + (torch.floor(z) - z).detach()
        return q * (lam / self.levels)

    def extra_repr(self) -> str:
        return f"levels={self.levels}, threshold={self.clip_level:.4g}, shift={self.shift}"


def qcfs_layers(model: Any) -> list[tuple[str, QCFS]]:
    """``(name, module)`` of every :class:`QCFS` layer of ``model``, in module order."""
    return [(name, m) for name, m in model.named_modules() if isinstance(m, QCFS)]


def qcfs_model(model: Any, levels: int = 8, threshold: float = 8.0, *, avgpool: bool = True) -> Any:
    """Swap the ReLUs of a torch model for :class:`QCFS` layers, in place (Bu et al.'s recipe).

    Parameters
    ----------
    model : torch.nn.Module
        Any module; every ``nn.ReLU`` submodule (at any depth) is replaced.  ReLUs called
        as functions in a custom ``forward`` (``F.relu``, ``x.relu()``) cannot be swapped:
        use ``nn.ReLU`` modules.
    levels, threshold : int, float
        Passed to every new :class:`QCFS`.
    avgpool : bool
        Also replace every ``nn.MaxPool2d`` by ``nn.AvgPool2d`` with the same window,
        stride and padding (the paper's recipe; a maximum of spike trains has no exact
        spiking form at small T).

    Returns
    -------
    torch.nn.Module
        ``model`` itself.

    Raises
    ------
    ValidationError
        No ``nn.ReLU`` module was found.
    """
    found = 0
    for parent in list(model.modules()):
        for child_name, child in list(parent.named_children()):
            if type(child) is nn.ReLU:
                setattr(parent, child_name, QCFS(levels, threshold))
                found += 1
            elif avgpool and type(child) is nn.MaxPool2d:
                if child.dilation not in (1, (1, 1)) or child.ceil_mode or child.return_indices:
                    raise ValidationError(
                        f"qcfs_model: MaxPool2d '{child_name}' has dilation/ceil_mode/return_indices, which "
                        "AvgPool2d cannot reproduce; replace it by hand", attr="model")
                setattr(parent, child_name, nn.AvgPool2d(child.kernel_size, child.stride, child.padding))
    if not found:
        raise ValidationError(
            f"qcfs_model: {type(model).__name__} has no nn.ReLU module to replace "
            "(functional F.relu calls cannot be swapped; use nn.ReLU modules)", attr="model")
    return model


def init_clip_levels(model: Any, x: ArrayLike, percentile: float = 99.9, batch_size: int = 1000) -> dict[str, float]:
    """Set every QCFS clip level λ to a percentile of its input on data, layer by layer.

    Each layer's λ is measured with the layers before it already set (so a later layer
    sees the clipped, quantised activations it will see in training); zeros and negative
    inputs are left out, as in data-based normalisation.

    Parameters
    ----------
    model : torch.nn.Module
        With :class:`QCFS` layers.
    x : array_like, shape (n_samples, *input_shape)
        A few hundred to a few thousand training inputs.
    percentile : float
        In (0, 100].

    Returns
    -------
    dict
        λ by QCFS module name.
    """
    if not 0 < percentile <= 100:
        raise ValidationError(f"init_clip_levels: percentile must be in (0, 100], got {percentile}", attr="percentile")
    layers = qcfs_layers(model)
    xt = torch.as_tensor(np.asarray(x), dtype=torch.float32)
    out: dict[str, float] = {}
    was_training = model.training
    model.eval()
    try:
        for name, layer in layers:
            seen: list[Any] = []

            def record(_m: Any, args: tuple[Any, ...], seen: list[Any] = seen) -> None:
                seen.append(args[0].detach().reshape(-1))

            hook = layer.register_forward_pre_hook(record)
            try:
                with torch.no_grad():
                    for start in range(0, xt.shape[0], batch_size):
                        model(xt[start : start + batch_size])
            finally:
                hook.remove()
            a = torch.cat(seen).double().numpy()
            a = a[a > 0]
            lam = float(np.percentile(a, percentile)) if a.size else layer.clip_level
            with torch.no_grad():
                layer.threshold.fill_(max(lam, 1e-6))
            out[name] = lam
    finally:
        model.train(was_training)
    return out


def train_qcfs(
    model: Any,
    x: ArrayLike,
    y: ArrayLike,
    *,
    epochs: int = 3,
    batch_size: int = 64,
    lr: float = 2e-3,
    weight_decay: float = 1e-4,
    seed: int = 0,
    init_percentile: float | None = 99.9,
    init_samples: int = 2000,
    threads: int | None = 1,
    log: Any = None,
) -> list[float]:
    """Train a model with QCFS layers on CPU, seeded and deterministic; cross-entropy, Adam, cosine schedule.

    Parameters
    ----------
    model : torch.nn.Module
        A classifier with :class:`QCFS` layers (:func:`qcfs_model`); trained in place and
        left in ``eval()`` mode.
    x : array_like, shape (n_samples, *input_shape)
        Training inputs (float).
    y : array_like of int, shape (n_samples,)
        Class labels.
    epochs, batch_size, lr, weight_decay : int, int, float, float
        Adam (weight decay on all parameters, the clip levels included, as in the paper's
        code) with a cosine learning-rate schedule over ``epochs``.
    seed : int
        Seeds the parameter-free parts (shuffling); seed the model's initial weights
        yourself (``torch.manual_seed``) before building it.
    init_percentile : float or None
        If not None, first set each λ with :func:`init_clip_levels` on the first
        ``init_samples`` training inputs.
    threads : int or None
        ``torch.set_num_threads`` (None leaves it).  Deterministic algorithms are used.
    log : callable, optional
        Called as ``log(epoch, mean_loss, clip_levels)`` after each epoch.

    Returns
    -------
    list of float
        Mean training loss per epoch.
    """
    for what, v in (("epochs", epochs), ("batch_size", batch_size)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise ValidationError(f"train_qcfs: {what} must be an int >= 1, got {v!r}", attr=what)
    if not qcfs_layers(model):
        raise ValidationError("train_qcfs: the model has no QCFS layer; call qcfs_model(model) first", attr="model")
    if threads is not None:
        torch.set_num_threads(int(threads))
    deterministic = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        xt = torch.as_tensor(np.asarray(x), dtype=torch.float32)
        yt = torch.as_tensor(np.asarray(y), dtype=torch.long)
        if xt.shape[0] != yt.shape[0]:
            raise ValidationError(f"train_qcfs: {xt.shape[0]} inputs but {yt.shape[0]} labels", attr="y")
        if init_percentile is not None:
            init_clip_levels(model, xt[:init_samples], init_percentile)
        gen = torch.Generator().manual_seed(int(seed))
        opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs)
        loss_fn = nn.CrossEntropyLoss()
        losses: list[float] = []
        model.train()
        for epoch in range(epochs):
            perm = torch.randperm(xt.shape[0], generator=gen)
            total = 0.0
            for start in range(0, xt.shape[0], batch_size):
                idx = perm[start : start + batch_size]
                opt.zero_grad()
                loss = loss_fn(model(xt[idx]), yt[idx])
                loss.backward()
                opt.step()
                with torch.no_grad():
                    for _, layer in qcfs_layers(model):
                        layer.threshold.clamp_(min=1e-3)  # λ must stay positive
                total += float(loss.item()) * int(idx.numel())
            sched.step()
            losses.append(total / xt.shape[0])
            if log is not None:
                log(epoch, losses[-1], {n: m.clip_level for n, m in qcfs_layers(model)})
        model.eval()
        return losses
    finally:
        torch.use_deterministic_algorithms(deterministic)


def to_clipped(model: Any) -> Any:
    """A copy of ``model`` with every :class:`QCFS` replaced by ``nn.Hardtanh(0, λ)`` (a clipped ReLU).

    This is the ANN the spiking network approximates for large T (the quantisation is
    done by the spikes); ``torch.onnx.export`` writes each as ``Clip(min=0, max=λ)``,
    which the ONNX importer reads as ``ReLU(max_value=λ)``.  ``model`` is unchanged.
    """
    out = copy.deepcopy(model)
    for parent in list(out.modules()):
        for child_name, child in list(parent.named_children()):
            if isinstance(child, QCFS):
                setattr(parent, child_name, nn.Hardtanh(0.0, child.clip_level))
    return out.eval()


def quantised_levels(model: Any) -> dict[str, tuple[float, int]]:
    """``(λ, L)`` of every QCFS layer by module name (for reports and model metadata)."""
    return {name: (m.clip_level, m.levels) for name, m in qcfs_layers(model)}
