"""Hostile inputs that used to give silently wrong results (issue 12, items 5-8)."""

from __future__ import annotations

import numpy as np
import pytest

from spikebridge.config import ConversionConfig, SimulationConfig
from tests._optional import requires_sklearn


# -- 5: binary (single-logit) scikit-learn classifiers ------------------------------------------


@requires_sklearn
def test_binary_sklearn_classifier_is_decoded_by_its_sign(tmp_path):
    from sklearn.datasets import make_classification
    from sklearn.neural_network import MLPClassifier

    from spikebridge.analysis.compare import compare
    from spikebridge.backend.runner import simulate
    from spikebridge.conversion.convert import convert
    from spikebridge.importers.from_sklearn import from_sklearn
    from spikebridge.ir import evaluate, predict_classes

    x, y = make_classification(n_samples=400, n_features=6, n_informative=4, n_redundant=0, class_sep=1.5, random_state=3)
    x = (x - x.min()) / (x.max() - x.min())
    clf = MLPClassifier(hidden_layer_sizes=(16,), max_iter=2000, random_state=0).fit(x[:300], y[:300])
    xt, yt = x[300:360], y[300:360]
    sk_acc = float(np.mean(clf.predict(xt) == yt))
    assert sk_acc > 0.85  # a real two-class problem, not a coin toss

    graph = from_sklearn(clf)
    ann = evaluate(graph, xt)
    assert ann.shape == (60, 1)
    # the ANN side decodes exactly like sklearn (this said 0 for every sample before)
    np.testing.assert_array_equal(predict_classes(ann), clf.predict(xt))

    snn = convert(graph, ConversionConfig(percentile=100.0), calibration=x[:300])
    assert snn.readout["mode"] == "potential"  # a logit is signed: counts cannot carry its sign
    rec = simulate(snn, xt, SimulationConfig(n_steps=100, target="numpy"), labels=yt)
    snn_pred = rec.predictions()
    assert set(np.unique(snn_pred)) == {0, 1}
    report = compare(rec, ann_outputs=ann, labels=yt)
    assert report.ann_accuracy == pytest.approx(sk_acc)
    assert report.agreement >= 0.95
    print(f"sklearn {sk_acc:.3f} ANN {report.ann_accuracy:.3f} SNN {report.snn_accuracy:.3f} agreement {report.agreement:.3f}")
    assert abs(report.snn_accuracy - sk_acc) <= 0.05
