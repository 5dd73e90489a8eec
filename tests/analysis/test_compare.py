"""compare() and diagnose() against hand-built stores whose answers are worked out by hand."""

from __future__ import annotations

import json

import numpy as np
import pytest

from spikebridge.analysis.compare import compare
from spikebridge.store.record import SpikeRecord, SpikeTrains
from spikebridge.store.spikes import SpikeStore

N = 1000
# SNN correct on the first c_k samples after k+1 steps; every label is 0
CORRECT_T = [500, 745, 750, 760]


def _classification_store(path):
    """1000 samples, 4 steps, 3 outputs; ANN right on samples 0..749.

    Hand-computed answers: ANN accuracy 0.75; SNN accuracy curve
    [0.5, 0.745, 0.75, 0.76]; within 0.5 points (>= 0.745) after 2 steps,
    within 0.1 points (>= 0.749) after 3; agreement: samples 750..759 differ,
    990 / 1000 = 0.99.
    """
    counts_t = np.zeros((N, 4, 3), np.int32)
    for k, c in enumerate(CORRECT_T):
        counts_t[:c, k, 0] = k + 1
        counts_t[c:, k, 1] = k + 1
    ann = np.zeros((N, 3))
    ann[:750, 0] = 1.0
    ann[750:, 1] = 1.0
    # hidden layer "relu1", lambda = 2, latency 1 -> 3 effective steps; samples 4.. are zero everywhere
    act = np.zeros((N, 2))
    act[:4] = [[2, 0], [4, 1], [6, -2], [1, 3]]
    hcounts = np.zeros((N, 2), np.int64)
    hcounts[:4] = [[3, 0], [3, 0], [3, 0], [1, 3]]
    rec = SpikeRecord(
        n_samples=N, n_steps=4, dt=1e-3, output_counts_t=counts_t, output_potential_t=np.zeros((N, 4, 3), np.float32),
        counts={"h": hcounts, "out": counts_t[:, -1, :].astype(np.int64)},
        spikes={"h": SpikeTrains(n_neurons=2, n_samples=N, dt=1e-3, sample=[0], neuron=[0], step=[1])},
        readout={"mode": "count", "task": "classification", "scale": 1.0, "latency_steps": 0},
        labels=np.zeros(N, np.int64),
    )
    with SpikeStore(path, "w") as st:
        st.write_header(
            n_steps=4, dt=1e-3, n_samples=N, seed=0, readout=rec.readout, scales={"relu1": 2.0},
            conversion={"percentile": 99.9, "reset": "zero", "v_init": 0.0},
            populations={
                "h": {"n": 2, "layer": "relu1", "role": "hidden", "latency_steps": 1},
                "out": {"n": 3, "layer": "fc2", "role": "output", "latency_steps": 2},
            },
        )
        st.append_batch(0, rec, ann_outputs=ann, activations={"relu1": act})
    return path


@pytest.fixture
def report(tmp_h5):
    return compare(_classification_store(tmp_h5))


def test_accuracies_curve_and_agreement_match_hand_values(report):
    assert report.task == "classification" and report.n_samples == N
    assert report.ann_accuracy == pytest.approx(0.75)
    np.testing.assert_allclose(report.accuracy_t, [0.5, 0.745, 0.75, 0.76])
    assert report.snn_accuracy == pytest.approx(0.76)
    assert report.steps_within == {"0.5": 2, "0.1": 3}
    assert report.agreement == pytest.approx(0.99)


def test_layer_fidelity_matches_hand_values(report):
    row = report.layer("relu1")
    assert row.population == "h" and row.effective_steps == 3 and row.n_neurons == 2
    # the 996 all-zero samples add (0, 0) pairs; the first four samples carry the numbers
    x = np.zeros((N, 2))
    x[:4] = [[1, 0], [2, 0.5], [3, 0], [0.5, 1.5]]  # clip(act, 0) / 2
    y = np.zeros((N, 2))
    y[:4] = [[1, 0], [1, 0], [1, 0], [1 / 3, 1]]  # counts / 3
    assert row.saturated_fraction == pytest.approx(4 / (2 * N))  # count >= 3 in four pairs
    assert row.above_one_fraction == pytest.approx(3 / (2 * N))  # 2, 3 and 1.5
    assert row.silent_active_fraction == pytest.approx(1 / 6)  # six pairs need >= 1 spike; (1, 1) is silent
    assert row.rate_ratio == pytest.approx((4 + 1 / 3) / 5.0)  # sum rate / sum min(x, 1)
    assert row.rmse == pytest.approx(np.sqrt((0.25 + (1 / 6) ** 2) / (2 * N)))
    slope, intercept = np.polyfit(x.ravel(), y.ravel(), 1)
    assert row.slope == pytest.approx(slope) and row.intercept == pytest.approx(intercept)
    assert row.correlation == pytest.approx(np.corrcoef(x.ravel(), y.ravel())[0, 1])
    assert 0.5 < row.correlation < 1.0
    # the output population has no stored activations for "fc2": not compared
    assert [r.population for r in report.layers] == ["h"]


def test_diagnosis_names_causes_with_numbers(report):
    d = report.diagnosis
    assert not d.ok
    text = "\n".join(d.suggestions)
    assert "SNN accuracy" not in text  # the SNN beats the ANN at the end: no accuracy complaint
    assert "stay silent in 'relu1' (16.7 % of them in 3 steps)" in text and "Raise T (n_steps, now 4)" in text
    assert "'relu1' (13.3 % short)" in text and "switch to reset = 'subtract'" in text
    # the most effective fix (reset mode) comes first
    assert d.suggestions[0].startswith("firing rates fall below")
    assert d.layers[0].symptoms == ["silent", "rates too low"]


def test_json_round_trip(report):
    data = json.loads(json.dumps(report.to_dict()))
    assert data["steps_within"] == {"0.5": 2, "0.1": 3}
    assert data["layers"][0]["layer"] == "relu1"
    assert data["diagnosis"]["suggestions"] == report.diagnosis.suggestions
    assert "ANN accuracy 75.00 %" in report.to_text()


def test_saturation_and_accuracy_gap_advice():
    # 2 samples, 8 steps: accuracy 0 until the last quarter, then 0.5; ANN 1.0
    counts_t = np.zeros((2, 8, 2), np.int32)
    counts_t[:, :, 1] = 1
    counts_t[0, 6:, 0] = 5
    rec = SpikeRecord(
        n_samples=2, n_steps=8, dt=1e-3, output_counts_t=counts_t, output_potential_t=np.zeros((2, 8, 2), np.float32),
        counts={"h": np.array([[8, 8], [8, 0]])}, readout={"task": "classification"},
    )
    from spikebridge.snn.network import Population, SpikingNetwork

    snn = SpikingNetwork(
        [Population(name="h", n=2, model="if", layer="relu1"), Population(name="o", n=2, model="if", role="output")],
        output="o", scales={"relu1": 1.0}, conversion={"percentile": 99.0, "reset": "subtract"},
    )
    r = compare(rec, labels=[0, 0], ann_outputs=[[1, 0], [1, 0]], activations={"relu1": [[1.5, 2.0], [1.0, 0.0]]}, snn=snn)
    assert r.accuracy_t == [0.0] * 6 + [0.5, 0.5] and r.steps_within == {"0.5": None, "0.1": None}
    assert r.layer("h").saturated_fraction == pytest.approx(0.75)
    text = "\n".join(r.diagnosis.suggestions)
    assert "50.00 points below the ANN after T = 8 steps and still rising (0.0 % at step 6 → 50.0 % at step 8)" in text
    assert "saturation in 'relu1' (75.0 % of pairs fire at every step, 50.0 % of activations above λ)" in text
    assert "percentile (now 99.0)" in text


def test_regression_is_judged_by_error():
    # decoded value = potential / steps (mode "potential", scale 1)
    pot = np.array([[[1.0], [2.0]], [[1.0], [3.0]]], np.float32)
    rec = SpikeRecord(
        n_samples=2, n_steps=2, dt=1e-3, output_counts_t=np.zeros((2, 2, 1), np.int32), output_potential_t=pot,
        readout={"mode": "potential", "task": "regression", "scale": 1.0},
    )
    r = compare(rec, labels=[[1.0], [2.0]], ann_outputs=[[1.2], [2.0]])
    assert r.task == "regression" and r.snn_accuracy is None and r.agreement is None
    assert r.snn_rmse == pytest.approx(np.sqrt(0.125)) and r.snn_mae == pytest.approx(0.25)
    assert r.error_t == pytest.approx([np.sqrt(0.5), np.sqrt(0.125)])
    assert r.ann_rmse == pytest.approx(np.sqrt(0.02)) and r.ann_mae == pytest.approx(0.1)
    assert r.snn_ann_rmse == pytest.approx(np.sqrt(0.145))
