"""Issue 12, class 4: nothing is replaced without --overwrite, and a model name is a file name, not a path."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import spikebridge.run.store as stream
from spikebridge.cli import main
from spikebridge.config import SimulationConfig
from spikebridge.errors import ValidationError
from tests.store._fake import fake_iter, make_net


def _experiment(tmp_path: Path, name: str | None = None) -> Path:
    toml = tmp_path / "exp.toml"
    lines = ["[model]", 'path = "shipped:digits_mlp"']
    if name is not None:
        lines.append(f"name = {name!r}".replace("'", '"'))
    toml.write_text("\n".join(lines) + "\n")
    return toml


@pytest.mark.parametrize("name", ["../../x", "/tmp/abs", "a/b", "..", "."])
def test_model_name_must_be_a_file_name(tmp_path, capsys, name):
    toml = _experiment(tmp_path, name)
    assert main(["run", str(toml), "--out", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert err == (
        f"spikebridge: error: experiment file '{toml}': [model] name {name!r} is not a plain file name; it names output "
        "files inside the output directory, so it may not contain '/', '\\' or be '.' or '..'\n"
    )
    assert not (tmp_path / "out").exists()


def test_run_experiment_api_refuses_a_path_name(tmp_path):
    from spikebridge.run.experiment import ExperimentSpec, run_experiment

    with pytest.raises(ValidationError, match="is not a plain file name"):
        run_experiment(ExperimentSpec(model="shipped:digits_mlp", name="../escape"), tmp_path / "out")
    assert not (tmp_path / "out").exists() and not (tmp_path / "escape_net.h5").exists()


@pytest.mark.parametrize("existing", ["report.md", "report.html", "digits_mlp_net.h5", "digits_mlp_summary.json"])
def test_run_does_not_overwrite_without_flag(tmp_path, capsys, existing):
    out = tmp_path / "out"
    out.mkdir()
    (out / existing).write_text("mine")
    assert main(["run", str(_experiment(tmp_path)), "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert err == (f"spikebridge: error: output '{out / existing}' exists; pass --overwrite to replace it "
                   "(or --resume to continue that run)\n")
    assert (out / existing).read_text() == "mine"
    assert sorted(p.name for p in out.iterdir()) == [existing]


def test_simulate_keeps_an_unrelated_partial_file(tmp_path, monkeypatch):
    monkeypatch.setattr(stream, "_backend_iter", fake_iter)
    out = tmp_path / "x.h5"
    mine = tmp_path / "x.h5.partial"
    mine.write_bytes(b"a file of the user's")
    x = np.random.default_rng(1).uniform(0, 1, (8, 6))
    cfg = SimulationConfig(n_steps=20, batch_size=4, seed=7, target="numpy")
    stream.simulate_to_store(make_net(), x, out, cfg, return_record=False)
    assert mine.read_bytes() == b"a file of the user's"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.h5", "x.h5.partial"]  # no leftover of ours


def test_export_nir_needs_overwrite(tmp_path, capsys):
    pytest.importorskip("nir")
    net = tmp_path / "net.h5"
    make_net().save(net)
    target = tmp_path / "g.nir"
    target.write_bytes(b"mine")
    assert main(["export", str(net), "--nir", str(target)]) == 1
    assert capsys.readouterr().err == f"spikebridge: error: output '{target}' exists; pass --overwrite to replace it\n"
    assert target.read_bytes() == b"mine"
    assert main(["export", str(net), "--nir", str(target), "--overwrite"]) == 0
    assert target.read_bytes() != b"mine"


# -- issue 19 §5: nothing overwritten without --overwrite; settings that would be ignored are refused -------------

def _net(tmp_path: Path) -> Path:
    net = tmp_path / "net.h5"
    make_net().save(net)
    return net


def test_graphml_is_not_replaced_without_overwrite(tmp_path, capsys):
    net, out = _net(tmp_path), tmp_path / "g.graphml"
    out.write_text("mine")
    assert main(["graph", str(net), "--graphml", str(out)]) == 1
    assert capsys.readouterr().err == f"spikebridge: error: output '{out}' exists; pass --overwrite to replace it\n"
    assert out.read_text() == "mine"
    assert main(["graph", str(net), "--graphml", str(out), "--overwrite"]) == 0
    assert "<graphml" in out.read_text()


def test_compare_plots_are_not_replaced_without_overwrite(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(stream, "_backend_iter", fake_iter)
    store = tmp_path / "s.h5"
    stream.simulate_to_store(make_net(), np.random.default_rng(1).uniform(0, 1, (4, 6)), store,
                             SimulationConfig(n_steps=20, batch_size=4, seed=1, record=("all",)), labels=np.arange(4) % 4)
    plots = tmp_path / "plots"
    plots.mkdir()
    mine = plots / "s_accuracy.png"
    mine.write_bytes(b"mine")
    assert main(["compare", str(store), "--plots", str(plots)]) == 1
    err = capsys.readouterr().err
    assert err == f"spikebridge: error: output '{mine}' exists; pass --overwrite to replace the figures in '{plots}'\n"
    assert mine.read_bytes() == b"mine"


def test_simulate_onto_an_existing_empty_file_needs_overwrite(tmp_path, capsys):
    net, out = _net(tmp_path), tmp_path / "s.h5"
    out.touch()
    assert main(["simulate", str(net), "--data", "digits:test", "-o", str(out)]) == 1
    err = capsys.readouterr().err
    assert err == f"spikebridge: error: output '{out}' exists; pass --overwrite to replace it or --resume to continue it\n"
    assert out.stat().st_size == 0
    # the API too
    from spikebridge.store.spikes import StoreExistsError

    with pytest.raises(StoreExistsError, match="an empty file"):
        stream.simulate_to_store(make_net(), np.zeros((1, 6)), out, SimulationConfig(n_steps=4))


def test_resume_without_output_is_refused(tmp_path, capsys):
    assert main(["simulate", str(_net(tmp_path)), "--resume"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("spikebridge: error: --resume continues the spike store named by -o/--output") and err.count("\n") == 1


def test_device_with_the_brian2_engine_is_refused(tmp_path, capsys):
    net = _net(tmp_path)
    for extra in ([], ["--engine", "brian2"]):
        assert main(["simulate", str(net), "--device", "torch", *extra]) == 1
        err = capsys.readouterr().err
        assert err.startswith("spikebridge: error: --device torch is a setting of the tensor engine") and err.count("\n") == 1
