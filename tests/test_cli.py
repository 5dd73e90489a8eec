"""The command-line interface, called in-process with cli.main([...])."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest

from spikebridge import cli
from spikebridge.models import model_path
from tests._optional import requires_matplotlib


def run(capsys, *argv):
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_formats_lists_every_importer(capsys):
    code, out, _ = run(capsys, "formats")
    assert code == 0
    for name in ("torch", "onnx", "keras", "sklearn", "spikebridge"):
        assert name in out.lower()


def test_inspect_shipped_mlp_reports_params_and_macs(capsys):
    code, out, _ = run(capsys, "inspect", str(model_path("digits_mlp")))
    assert code == 0
    # 64-128-64-10 MLP: 64*128+128 + 128*64+64 + 64*10+10 parameters, 17,024 MACs
    assert "17,226 parameters" in out
    assert "17,024 MACs" in out


def test_missing_file_is_one_line_error_without_traceback(capsys, tmp_path):
    code, out, err = run(capsys, "inspect", str(tmp_path / "nope.h5"))
    assert code == 1
    assert err.startswith("spikebridge: error: ")
    assert len(err.strip().splitlines()) == 1
    assert "Traceback" not in err


def test_debug_shows_the_exception(tmp_path):
    with pytest.raises(FileNotFoundError):
        cli.main(["--debug", "inspect", str(tmp_path / "nope.h5")])


def test_usage_error_exits_2(capsys):
    code, _, err = run(capsys, "simulate")
    assert code == 2
    assert "usage" in err


def test_foreign_hdf5_is_refused(capsys, tmp_path):
    path = tmp_path / "foreign.h5"
    with h5py.File(path, "w") as f:
        f["x"] = np.arange(3)
    code, _, err = run(capsys, "inspect", str(path))
    assert code == 1
    assert "format" in err.lower()


def test_convert_then_simulate_reports_accuracies(capsys, tmp_path):
    net = tmp_path / "net.h5"
    code, out, err = run(capsys, "convert", str(model_path("digits_mlp")), "-o", str(net), "--v-init", "0.5")
    assert code == 0, err
    assert net.exists()
    code, _, err = run(capsys, "convert", str(model_path("digits_mlp")), "-o", str(net))
    assert code == 1 and "--overwrite" in err
    code, out, err = run(
        capsys, "-q", "simulate", str(net), "--data", "digits:test", "--limit", "40", "--steps", "48", "--target", "numpy"
    )
    assert code == 0, err
    assert "ANN accuracy" in out and "SNN accuracy" in out
    snn_acc = float(out.split("SNN accuracy")[1].split("%")[0])
    assert snn_acc >= 90.0


def test_run_rejects_unknown_key_naming_it(capsys, tmp_path):
    toml = tmp_path / "exp.toml"
    toml.write_text('[model]\npath = "shipped:digits_mlp"\n[simulation]\nn_step = 32\n')
    code, _, err = run(capsys, "run", str(toml))
    assert code == 1
    assert "n_step" in err and "[simulation]" in err


@requires_matplotlib
def test_demo_quick_writes_report_and_figures(capsys, tmp_path):
    out_dir = tmp_path / "demo"
    code, out, err = run(
        capsys, "demo", "--quick", "--out", str(out_dir), "--limit", "30", "--steps", "32", "--target", "numpy"
    )
    assert code == 0, err
    assert "digits_mlp" in out
    html = (out_dir / "report.html").read_text()
    assert "<img" in html and "digits_mlp" in html
    summary = json.loads((out_dir / "digits_mlp_summary.json").read_text())
    assert summary["summary"]["samples"] == 30
    assert summary["summary"]["snn_accuracy"] >= 0.8
    from PIL import Image

    pngs = sorted(out_dir.glob("*.png"))
    assert len(pngs) >= 3
    for png in pngs:
        img = np.asarray(Image.open(png).convert("L"), dtype=float)
        assert img.shape[0] >= 200 and img.shape[1] >= 200
        assert img.std() > 1.0, f"{png.name} looks blank"


def test_store_compare_graph_and_export_chain(capsys, tmp_path):
    net, store = tmp_path / "net.h5", tmp_path / "spikes.h5"
    assert cli.main(["-q", "convert", "shipped:digits_mlp", "-o", str(net), "--v-init", "0.5", "--percentile", "100"]) == 0
    assert cli.main(["-q", "simulate", str(net), "--limit", "20", "--steps", "32", "--target", "numpy", "-o", str(store)]) == 0
    capsys.readouterr()
    code, out, err = run(capsys, "compare", str(store), "--json")
    assert code == 0, err
    report = json.loads(out)
    assert report["n_samples"] == 20 and report["agreement"] >= 0.9
    code, out, err = run(capsys, "graph", str(net), "--json", "--graphml", str(tmp_path / "g.graphml"))
    assert code == 0, err
    graph = json.loads(out.split("\nwrote ")[0])
    # 64 inputs + 128 + 64 + 10 neurons; 64*128 + 128*64 + 64*10 synapses
    assert graph["counts"]["neurons"] == 266 and graph["counts"]["synapses"] == 17024
    assert (tmp_path / "g.graphml").stat().st_size > 1000
    # a second run into the same store is refused without --overwrite or --resume
    code, _, err = run(capsys, "simulate", str(net), "--limit", "20", "--steps", "32", "--target", "numpy", "-o", str(store))
    assert code == 1 and ("--overwrite" in err or "--resume" in err)
