"""compare() on a sequence network's record: accuracy/error per element and over the last window."""

from __future__ import annotations

import numpy as np

from spikebridge.analysis.compare import compare
from spikebridge.engines.reference import simulate_reference
from spikebridge.ir import evaluate, predict_classes

from .test_sequence import _case


def test_classification_per_element_and_last_window():
    g, snn, x = _case(False, False, k=16)
    rec = simulate_reference(snn, x, 6 * 16)
    ann = evaluate(g, x)
    y = predict_classes(ann)
    r = compare(rec, labels=y, ann_outputs=ann, snn=snn)
    vals = rec.window_values()
    assert len(r.element_accuracy) == 6 and len(r.last_window_t) == 16
    assert r.element_accuracy == [float(np.mean(predict_classes(vals[:, t]) == y)) for t in range(6)]
    assert r.element_accuracy[-1] == r.snn_accuracy == r.last_window_t[-1]
    assert "accuracy per element" in r.to_text()


def test_regression_per_element_against_the_ann():
    g, snn, x = _case(True, False, k=16)
    snn.readout["task"] = "regression"
    rec = simulate_reference(snn, x, 6 * 16)
    ann = evaluate(g, x)  # (n, T, n_out): a read-out at every element
    r = compare(rec, ann_outputs=ann, snn=snn)
    vals = rec.window_values()
    want = [float(np.sqrt(np.mean((vals[:, t] - ann[:, t]) ** 2))) for t in range(6)]
    np.testing.assert_allclose(r.element_rmse, want)
    assert r.element_ann_rmse == r.element_rmse and 0 < max(want) < 0.2 * np.abs(ann).max()
    assert len(r.last_window_t) == 16 and abs(r.last_window_t[-1] - want[-1]) < 1e-12
