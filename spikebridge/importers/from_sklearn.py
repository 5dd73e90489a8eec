"""Import fitted scikit-learn ``MLPClassifier`` / ``MLPRegressor`` objects through ``coefs_`` and ``intercepts_``.

Only the fitted arrays are read (no pickles, no private API).  Hidden activations must be
``"relu"`` (or ``"identity"``).  The output activation decides the task:

* ``"softmax"`` (multi-class): a Softmax layer is appended, so :func:`~spikebridge.ir.evaluate`
  returns ``predict_proba``; metadata ``{"task": "classification", "classes": [...]}``.
* ``"logistic"`` with one output (binary): the graph ends with the logit (no sigmoid layer
  exists in the IR); ``predict_proba[:, 1] == 1 / (1 + exp(-output))`` and the predicted
  class is ``classes[1]`` where ``output > 0``.  Metadata adds ``"binary_logit": True`` and
  ``"decision": "output > 0"``.  Multi-label logistic outputs are recorded the same way
  (one logit per label, ``"multilabel": True``).
* ``"identity"`` (regressor): metadata ``{"task": "regression"}``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .._optional import import_optional
from ..errors import UnsupportedLayerError, ValidationError
from ..ir.graph import AnnGraph
from ..ir.layers import Dense, ReLU, Softmax
from ._common import GraphBuilder

__all__ = ["from_sklearn"]

_HIDDEN = ("relu", "identity")


def from_sklearn(model: Any, *, name: str | None = None, task: str | None = None) -> AnnGraph:
    """Import a fitted ``MLPClassifier`` or ``MLPRegressor``.

    Parameters
    ----------
    model : sklearn.neural_network.MLPClassifier or MLPRegressor
        A fitted estimator.
    name : str, optional
        Graph name (default: the estimator's class name).
    task : str, optional
        Override the task recorded in the metadata.

    Returns
    -------
    AnnGraph
        ``Input -> fc1 -> relu1 -> ... -> fcK [-> softmax]``; layer ``fc{k}`` holds
        ``coefs_[k-1].T`` and ``intercepts_[k-1]``.

    Raises
    ------
    UnsupportedLayerError
        Hidden activation other than relu/identity (e.g. ``"tanh"``).
    ValidationError
        Estimator not fitted, NaN/Inf weights or inconsistent shapes.
    MissingDependencyError
        scikit-learn is not installed.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.neural_network import MLPRegressor
    >>> X = np.random.default_rng(0).normal(size=(20, 3)); y = X.sum(axis=1)
    >>> reg = MLPRegressor(hidden_layer_sizes=(4,), max_iter=50, random_state=0).fit(X, y)  # doctest: +SKIP
    >>> from_sklearn(reg).metadata["task"]  # doctest: +SKIP
    'regression'
    """
    import_optional("sklearn", "importing scikit-learn MLPs")
    kind = type(model).__name__
    where = f"scikit-learn {kind}"
    if not hasattr(model, "coefs_") or not hasattr(model, "intercepts_"):
        raise ValidationError(f"{where} is not fitted (no coefs_); call fit() first", attr="model")
    hidden = str(getattr(model, "activation", "relu"))
    if hidden not in _HIDDEN:
        raise UnsupportedLayerError(
            "hidden layers", f"{kind}(activation={hidden!r})", _HIDDEN, source="scikit-learn",
            hint="retrain with activation='relu'",
        )
    coefs = list(model.coefs_)
    intercepts = list(model.intercepts_)
    if len(coefs) != len(intercepts) or not coefs:
        raise ValidationError(f"{where}: {len(coefs)} coefs_ but {len(intercepts)} intercepts_", attr="coefs_")
    builder = GraphBuilder(where)
    n_in = int(np.shape(coefs[0])[0])
    builder.input((n_in,), name="input")
    for k, (w, b) in enumerate(zip(coefs, intercepts), start=1):
        w = np.asarray(w, dtype=np.float64)
        if w.ndim != 2:
            raise ValidationError(f"{where}: coefs_[{k - 1}] has shape {w.shape}; expected 2-D (n_in, n_out)",
                                  attr="coefs_")
        # sklearn stores (n_in, n_out); spikebridge stores (n_out, n_in)
        builder.add(Dense, f"fc{k}", weight=w.T, bias=np.asarray(b, dtype=np.float64))
        if k < len(coefs) and hidden == "relu":
            builder.add(ReLU, f"relu{k}")
    out_act = str(getattr(model, "out_activation_", "identity"))
    meta: dict[str, Any] = {"source": f"{type(model).__module__}.{type(model).__qualname__}", "format": "sklearn",
                            "hidden_activation": hidden, "output_activation": out_act}
    if out_act == "softmax":
        builder.add(Softmax, "softmax")
        meta["task"] = "classification"
    elif out_act == "logistic":
        meta["task"] = "classification"
        meta["binary_logit"] = True
        meta["decision"] = "output > 0"
        if builder.shape[0] > 1:
            meta["multilabel"] = True
    elif out_act == "identity":
        meta["task"] = "regression"
    else:
        raise UnsupportedLayerError("output", f"{kind}(out_activation_={out_act!r})",
                                    ("softmax", "logistic", "identity"), source="scikit-learn")
    if hasattr(model, "classes_"):
        meta["classes"] = np.asarray(model.classes_).tolist()
    if task is not None:
        meta["task"] = task
    return builder.build(name or kind, meta)
