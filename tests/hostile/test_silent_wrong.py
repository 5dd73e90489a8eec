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
    from spikebridge.run.simulate import simulate
    from spikebridge.conversion.convert import convert
    from spikebridge.importers.from_sklearn import from_sklearn
    from spikebridge.ir import evaluate, predict_classes
    from spikebridge.run.store import simulate_to_store

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
    cfg = SimulationConfig(n_steps=100, target="numpy")
    rec = simulate(snn, xt, cfg, labels=yt)
    snn_pred = rec.predictions()
    assert set(np.unique(snn_pred)) == {0, 1}
    report = compare(rec, ann_outputs=ann, labels=yt)
    # the same through a spike store, whose ANN outputs are the stored (n, 1) logits
    simulate_to_store(snn, xt, tmp_path / "s.h5", cfg, labels=yt)
    stored = compare(tmp_path / "s.h5")
    assert (stored.ann_accuracy, stored.snn_accuracy, stored.agreement) == (report.ann_accuracy, report.snn_accuracy, report.agreement)
    assert report.ann_accuracy == pytest.approx(sk_acc)
    assert report.agreement >= 0.95
    print(f"sklearn {sk_acc:.3f} ANN {report.ann_accuracy:.3f} SNN {report.snn_accuracy:.3f} agreement {report.agreement:.3f}")
    assert abs(report.snn_accuracy - sk_acc) <= 0.05


# -- 6: NIR networks driven by analog input --------------------------------------------------------


def _nir_two_layer(rng, n_in, n_hid, n_out, dt, w_scale, tau=5e-3, gain=1.0):
    import nir


    def lif(n):  # r dt / tau = w_scale: one unit of input moves v by w_scale * w (not w)
        return nir.LIF(tau=np.full(n, tau), r=np.full(n, w_scale * tau / dt), v_leak=np.zeros(n),
                       v_threshold=np.ones(n), v_reset=np.zeros(n))

    return nir.NIRGraph(
        nodes={"input": nir.Input(np.array([n_in])),
               "fc1": nir.Affine(weight=gain * rng.normal(0.3, 0.5, (n_hid, n_in)), bias=np.zeros(n_hid)), "lif1": lif(n_hid),
               "fc2": nir.Linear(weight=gain * rng.normal(0.2, 0.6, (n_out, n_hid))), "lif2": lif(n_out),
               "output": nir.Output(np.array([n_out]))},
        edges=[("input", "fc1"), ("fc1", "lif1"), ("lif1", "fc2"), ("fc2", "lif2"), ("lif2", "output")],
    )


@pytest.mark.filterwarnings("ignore")
def test_nir_analog_input_is_a_current_like_snntorch(tmp_path, capsys):
    pytest.importorskip("snntorch")
    torch = pytest.importorskip("torch")
    import nir
    from snntorch.import_nir import import_from_nir

    from spikebridge.engines.reference import simulate_reference
    from spikebridge.run.simulate import simulate
    from spikebridge.importers.from_nir import load_nir

    dt, n_in, n_out, n_steps, n_samples = 1e-4, 8, 5, 200, 40  # snnTorch's NIR import assumes dt = 1e-4
    rng = np.random.default_rng(11)
    path = tmp_path / "analog.nir"
    nir.write(path, _nir_two_layer(rng, n_in, 16, n_out, dt, w_scale=0.5))
    # analog data, the usual snnTorch drive: the sample's intensities every step, plus noise
    x = np.clip(rng.uniform(0, 1, (n_samples, 1, n_in)) + rng.normal(0, 0.1, (n_samples, n_steps, n_in)), 0, None)

    net_t = import_from_nir(nir.read(path))
    theirs = np.zeros((n_samples, n_out))
    with torch.no_grad():
        for k in range(n_steps):
            theirs += net_t(torch.tensor(x[:, k], dtype=torch.float32))[0].numpy()
    capsys.readouterr()  # snnTorch prints while importing

    net = load_nir(path, dt=dt)
    pad = np.zeros((n_samples, net.readout["latency_steps"], n_in))  # our layers take one step each
    xs = np.concatenate([x, pad], axis=1)
    rec = simulate(net, xs, SimulationConfig(n_steps=xs.shape[1], target="numpy"))
    ours = rec.counts[net.output]
    assert theirs.sum() > 20 * n_samples  # enough output spikes to compare
    argmax_agree = float(np.mean(np.argmax(ours, axis=1) == np.argmax(theirs, axis=1)))
    count_err = float(np.abs(ours - theirs).sum() / theirs.sum())
    # the old reading (x != 0 as spikes) for contrast: far off
    old = simulate_reference(net, (xs != 0).astype(float), xs.shape[1]).counts[net.output]
    old_agree = float(np.mean(np.argmax(old, axis=1) == np.argmax(theirs, axis=1)))
    print(f"analog: argmax agreement {argmax_agree:.3f}, count error {count_err:.4f}; binarised: {old_agree:.3f}, "
          f"spikes {old.sum()} vs {theirs.sum():.0f}")
    assert argmax_agree >= 0.95
    assert count_err <= 0.03
    assert old_agree < 0.8 or abs(old.sum() - theirs.sum()) > 0.3 * theirs.sum()


def test_nir_spike_raster_unchanged_and_analog_brian2_equals_reference():
    """0/1 rasters are spikes exactly as before; analog rasters agree between Brian2 and the reference."""
    pytest.importorskip("nir")
    from spikebridge.engines.plan import prepare_inputs
    from spikebridge.engines.reference import simulate_reference
    from spikebridge.run.simulate import simulate
    from spikebridge.importers.from_nir import load_nir

    rng = np.random.default_rng(5)
    net = load_nir(_nir_two_layer(rng, 4, 6, 3, 1e-3, w_scale=0.5, tau=50e-3, gain=3.0), dt=1e-3)
    spikes = (rng.random((2, 80, 4)) < 0.4).astype(float)
    plan = prepare_inputs(net, spikes, 1e-3)
    assert plan.raster is not None and plan.raster.dtype == np.bool_ and not plan.graded
    analog = spikes * rng.uniform(0.2, 3.0, spikes.shape)
    assert prepare_inputs(net, analog, 1e-3).graded
    for raster in (spikes, analog):
        rec = simulate(net, raster, SimulationConfig(n_steps=90, target="numpy", record=("all",)))
        ref = simulate_reference(net, raster, 90, record=("all",))
        for pop in ("input", "lif1", "lif2"):
            np.testing.assert_array_equal(rec.counts[pop], ref.counts[pop])
        assert ref.counts["input"].sum() == int(np.count_nonzero(raster))
    # a 0/1 raster through the analog path would give the same: w * 1 == w
    assert simulate_reference(net, spikes, 90).counts["lif2"].sum() > 10


# -- 7: --resume with other data ------------------------------------------------------------------


def _npz(path, x, y):
    np.savez(path, x=x, y=y)
    return str(path)


def test_resume_refuses_other_labels_but_allows_other_workers(tmp_path, capsys):
    import h5py

    from spikebridge.cli import main
    from spikebridge.conversion.convert import convert
    from spikebridge.datasets import load_dataset
    from spikebridge.store.spikes import SpikeStore
    from tests.conftest import make_tiny_mlp

    x = np.random.default_rng(2).uniform(0, 1, (6, 6))
    y = np.array([0, 1, 2, 3, 0, 1])
    snn = convert(make_tiny_mlp(), ConversionConfig(percentile=100.0), calibration=x)
    net = tmp_path / "net.h5"
    snn.save(net)
    store = str(tmp_path / "s.h5")
    base = ["-q", "simulate", str(net), "--steps", "12", "--target", "numpy", "-o", store, "--batch-size", "3"]
    assert main([*base, "--data", _npz(tmp_path / "a.npz", x, y), "--workers", "1"]) == 0
    capsys.readouterr()
    # same inputs, other labels: refused, naming the labels; the store is untouched
    assert main([*base, "--data", _npz(tmp_path / "b.npz", x, (y + 1) % 4), "--resume"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("spikebridge: error: cannot resume") and "labels_sha256 differs (the labels are not those" in err
    assert err.count("\n") == 0
    # without labels at all: refused too
    np.savez(tmp_path / "c.npz", x=x)
    assert main([*base, "--data", str(tmp_path / "c.npz"), "--resume"]) == 1
    assert "labels_sha256 differs" in capsys.readouterr().err
    # same data, another worker count: allowed (documented to give identical spikes)
    assert main([*base, "--data", str(tmp_path / "a.npz"), "--resume", "--workers", "2"]) == 0
    with SpikeStore(store) as st:
        np.testing.assert_array_equal(st.labels, y)
    # a store of an older version (no labels_sha256): the finished samples' labels decide
    with h5py.File(store, "r+") as f:
        del f.attrs["labels_sha256"]
    capsys.readouterr()
    assert main([*base, "--data", str(tmp_path / "b.npz"), "--resume"]) == 1
    assert "labels differ from the 6 stored ones (the store predates labels_sha256" in capsys.readouterr().err
    assert main([*base, "--data", str(tmp_path / "a.npz"), "--resume"]) == 0
    assert "predates labels_sha256: checked the labels of its 6 finished samples only" in capsys.readouterr().err
    assert load_dataset(str(tmp_path / "a.npz"))[1].tolist() == y.tolist()


# -- 8: numeric options are refused or warned about, never reinterpreted ------------------------------


@pytest.mark.parametrize(
    "argv, message",
    [
        (["simulate", "net.h5", "--limit", "-355"], "argument --limit: must be an integer >= 1, got -355"),
        (["simulate", "net.h5", "--limit", "0"], "argument --limit: must be an integer >= 1, got 0"),
        (["simulate", "net.h5", "--steps", "0"], "argument --steps: must be an integer >= 1, got 0"),
        (["simulate", "net.h5", "--batch-size", "-1"], "argument --batch-size: must be an integer >= 1, got -1"),
        (["simulate", "net.h5", "--workers", "-2"], "argument --workers: must be an integer >= 0, got -2"),
        (["simulate", "net.h5", "--seed", str(2**70)], f"argument --seed: must be an integer in 0..2147483647, got {2**70}"),
        (["simulate", "net.h5", "--seed", "-1"], "argument --seed: must be an integer in 0..2147483647, got -1"),
        (["convert", "m.onnx", "-o", "n.h5", "--calibration-samples", "0"], "argument --calibration-samples: must be an integer >= 1, got 0"),
        (["demo", "--steps", "0"], "argument --steps: must be an integer >= 1, got 0"),
        (["demo", "--limit", "-3"], "argument --limit: must be an integer >= 1, got -3"),
        (["graph", "net.h5", "--sample", "1"], "argument --sample: must be an integer >= 3, got 1"),
        (["simulate", "net.h5", "--limit", "five"], "argument --limit: expected an integer, got 'five'"),
    ],
)
def test_numeric_cli_options_are_usage_errors(argv, message, capsys):
    from spikebridge.cli import main

    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.strip().splitlines()[-1].endswith(message)


@pytest.mark.parametrize(
    "toml, message",
    [
        ("[data]\ncalibration_samples = -1436\n", "[data] calibration_samples: must be an integer >= 1, got -1436"),
        ("[data]\nlimit = 0\n", "[data] limit: must be an integer >= 1, got 0"),
        ("[data]\nlimit = \"5\"\n", "[data] limit: must be an integer >= 1, got '5'"),
        ("[report]\nplots = \"no\"\n", "[report] plots: expected true or false, got 'no'"),
        ("[report]\nraster_samples = -1\n", "[report] raster_samples: must be an integer >= 0, got -1"),
        ("[simulation]\nseed = -1\n", "SimulationConfig.seed: must be an integer in 0..2147483647, got -1"),
        ("[conversion]\nseed = 1180591620717411303424\n", "ConversionConfig.seed: must be an integer in 0..2147483647"),
    ],
)
def test_numeric_toml_values_are_refused(toml, message, tmp_path, capsys):
    from spikebridge.cli import main

    path = tmp_path / "exp.toml"
    path.write_text('[model]\npath = "shipped:digits_mlp"\n' + toml)
    assert main(["run", str(path), "--out", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("spikebridge: error: ") and message in err
    assert not (tmp_path / "out").exists()  # refused before any work


@pytest.fixture(scope="module")
def tiny_net(tmp_path_factory):
    from spikebridge.conversion.convert import convert
    from tests.conftest import make_tiny_mlp

    path = tmp_path_factory.mktemp("net") / "net.h5"
    x = np.random.default_rng(2).uniform(0, 1, (20, 6))
    convert(make_tiny_mlp(), ConversionConfig(percentile=100.0), calibration=x).save(path)
    return str(path), x


def test_labels_outside_the_output_range_are_refused(tiny_net, tmp_path, capsys):
    from spikebridge.cli import main

    net, x = tiny_net
    np.savez(tmp_path / "d.npz", x=x[:5], y=np.array([0, 1, 2, 7, 9]))
    assert main(["simulate", net, "--data", str(tmp_path / "d.npz"), "--steps", "8", "--target", "numpy"]) == 1
    err = capsys.readouterr().err
    assert err.strip() == (
        f"spikebridge: error: labels of --data {tmp_path / 'd.npz'}: 2 of 5 labels lie outside the 4 classes (0..3) "
        "of network 'tiny_mlp' (found 7..9)"
    )


def test_far_dt_warns_and_unlabelled_classifier_reports_agreement(tiny_net, tmp_path, capsys):
    from spikebridge.cli import main

    net, x = tiny_net
    np.savez(tmp_path / "d.npz", x=x[:4])
    assert main(["simulate", net, "--data", str(tmp_path / "d.npz"), "--steps", "8", "--target", "numpy", "--dt", "1e6s"]) == 0
    out, err = capsys.readouterr()
    assert "spikebridge: AccuracyWarning: --dt 1e+06 s is 1e+09 times the time step of network 'tiny_mlp' (1 ms)" in err
    assert "RMSE" not in out and "agreement with ANN" in out
    assert main(["simulate", net, "--data", str(tmp_path / "d.npz"), "--steps", "8", "--target", "numpy", "--dt", "2ms"]) == 0
    assert "AccuracyWarning" not in capsys.readouterr().err
