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
