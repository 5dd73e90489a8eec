"""`spikebridge run` with a [sweep] table: one store per point, a summary table and a plot."""

from __future__ import annotations

import json

import numpy as np
import pytest

from spikebridge import cli
from spikebridge.datasets import load_dataset
from spikebridge.errors import ValidationError
from spikebridge.store.spikes import SpikeStore
from spikebridge.run.sweep import load_sweep

TOML = """
[experiment]
name = "tiny sweep"
[model]
path = "shipped:digits_mlp"
[conversion]
delay = "step"  # one step per layer, so 3 steps are too few for the answer to cross the layers
[data]
calibration_samples = 100
limit = {limit}
[simulation]
target = "numpy"
n_steps = 16
{extra}
[report]
graph = false
plots = {plots}
[sweep]
conversion.percentile = [99.0, 100.0]
simulation.n_steps = [3, 24]
"""


def _check_sweep(out, limit: int, plots: bool) -> None:
    summary = json.loads((out / "sweep_summary.json").read_text())
    assert summary["swept"] == ["conversion.percentile", "simulation.n_steps"]
    points = summary["points"]
    assert [(p["conversion.percentile"], p["simulation.n_steps"]) for p in points] == [(99.0, 3), (99.0, 24), (100.0, 3), (100.0, 24)]
    _, y = load_dataset("digits:test")
    y = y[:limit]
    for p in points:
        with SpikeStore(out / p["store"]) as st:
            rec = st.to_record()
            assert st.attrs["n_steps"] == p["simulation.n_steps"]
            assert st.attrs["conversion"]["percentile"] == p["conversion.percentile"]
        # the table's accuracy is the stored run's accuracy
        assert p["snn_accuracy"] == pytest.approx(float(np.mean(rec.predictions() == y)))
    assert len({p["ann_accuracy"] for p in points}) == 1  # the ANN does not depend on the swept keys
    # 3 steps are too few for the answer to cross three layers; 24 are enough
    for pct in (99.0, 100.0):
        short, long = (p["snn_accuracy"] for p in points if p["conversion.percentile"] == pct)
        assert long > short and long > 0.8
    md = (out / "sweep_summary.md").read_text()
    assert md.count("\n| ") == 5 and "digits_mlp-percentile_100.0-n_steps_24_spikes.h5" in md
    if plots:
        assert (out / "sweep_accuracy.png").read_bytes()[:4] == b"\x89PNG"
    else:
        assert not (out / "sweep_accuracy.png").exists()


def test_sweep_runs_every_point_end_to_end(tmp_path, capsys):
    toml = tmp_path / "exp.toml"
    toml.write_text(TOML.format(limit=40, extra="", plots="true"))
    assert cli.main(["-q", "run", str(toml), "--out", str(tmp_path / "out")]) == 0
    _check_sweep(tmp_path / "out", 40, plots=True)
    assert "sweep summary" in capsys.readouterr().out


def test_sweep_points_as_dask_tasks_on_a_local_cluster(tmp_path):
    pytest.importorskip("distributed")
    toml = tmp_path / "exp.toml"
    toml.write_text(TOML.format(limit=20, extra='scheduler = "local"\nworkers = 2', plots="false"))
    assert cli.main(["-q", "run", str(toml), "--out", str(tmp_path / "out")]) == 0
    _check_sweep(tmp_path / "out", 20, plots=False)


@pytest.mark.parametrize(
    "body, match",
    [
        ("[sweep]\nconversion.percentil = [1.0]\n", "not a conversion key"),
        ("[sweep]\nsimulation.scheduler = ['local']\n", "cannot be swept"),
        ("[sweep]\nconversion.percentile = 99.0\n", "non-empty list"),
        ("[sweep]\nmodel.path = ['a']\n", "conversion.KEY or simulation.KEY"),
    ],
)
def test_bad_sweep_tables_are_refused(tmp_path, body, match):
    toml = tmp_path / "exp.toml"
    toml.write_text('[model]\npath = "shipped:digits_mlp"\n' + body)
    with pytest.raises(ValidationError, match=match):
        load_sweep(toml)
