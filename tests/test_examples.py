"""Every script in examples/ runs in its --quick mode and prints real, plausible numbers.

Each example runs in a fresh interpreter (``sys.executable``) with ``cwd=tmp_path``,
as a user would run it; the checks parse the printed result table.
"""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from ._optional import requires_keras, requires_onnx, requires_torch

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
SCRIPTS = sorted(p.name for p in EXAMPLES.glob("*.py"))


def _run(args: list[str], cwd: Path, timeout: float = 120.0) -> str:
    env = dict(os.environ, MPLBACKEND="Agg", KERAS_BACKEND="torch")
    proc = subprocess.run(
        [sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env
    )
    assert proc.returncode == 0, (
        f"{args} exited {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr[-3000:]}"
    )
    return proc.stdout


def _percent(label: str, text: str) -> float:
    m = re.search(rf"^{re.escape(label)}\s+([0-9.]+)%", text, flags=re.MULTILINE)
    assert m, f"no '{label}' line in:\n{text}"
    return float(m.group(1))


def _number(label: str, text: str) -> float:
    m = re.search(rf"^{re.escape(label)}\s+([-+0-9.eE]+)", text, flags=re.MULTILINE)
    assert m, f"no '{label}' line in:\n{text}"
    return float(m.group(1))


def test_examples_are_documented_and_have_a_quick_mode():
    expected = {"convert_pytorch.py", "convert_onnx.py", "convert_keras.py", "recurrent_ei.py", "sweep_latency.py"}
    assert expected <= set(SCRIPTS)
    for name in SCRIPTS:
        tree = ast.parse((EXAMPLES / name).read_text())
        doc = ast.get_docstring(tree)
        assert doc and "What it shows" in doc and "Run it" in doc, name
        assert f"python examples/{name} --quick" in doc, name
        src = (EXAMPLES / name).read_text()
        assert '"--quick"' in src and "argparse" in src and 'if __name__ == "__main__":' in src, name


@requires_torch
@pytest.mark.slow  # > 7 s on 2 cores (issue 23): CI runs it
def test_convert_pytorch_quick(tmp_path):
    out = _run([str(EXAMPLES / "convert_pytorch.py"), "--quick"], tmp_path)
    ann, snn = _percent("ANN accuracy", out), _percent("SNN accuracy", out)
    assert ann >= 85.0
    assert snn >= 85.0 and abs(ann - snn) <= 5.0


@requires_onnx
@pytest.mark.slow  # > 7 s on 2 cores (issue 23): CI runs it
def test_convert_onnx_quick(tmp_path):
    out = _run([str(EXAMPLES / "convert_onnx.py"), "--quick"], tmp_path)
    # the imported CNN reproduces onnx's own reference evaluator (float32 rounding only)
    assert _number("max |spikebridge - onnx|", out) < 1e-4
    assert _percent("ANN accuracy", out) >= 90.0
    assert _percent("SNN accuracy", out) >= 85.0


@requires_keras
@pytest.mark.slow  # > 7 s on 2 cores (issue 23): CI runs it
def test_convert_keras_quick(tmp_path):
    out = _run([str(EXAMPLES / "convert_keras.py"), "--quick"], tmp_path)
    assert (tmp_path / "keras_example" / "digits_keras.keras").is_file()
    assert (tmp_path / "keras_example" / "digits_keras.h5").is_file()
    assert _number(".keras import vs .h5 import", out) < 1e-9
    assert _number("spikebridge evaluate vs keras predict", out) < 1e-4
    assert "TensorFlow imported: False" in out
    assert _percent("SNN accuracy", out) >= 85.0


@pytest.mark.slow  # > 4 s on 2 cores (issue 23): CI runs it
def test_recurrent_ei_quick(tmp_path):
    out = _run([str(EXAMPLES / "recurrent_ei.py"), "--quick"], tmp_path)
    number = r"\s+([0-9.]+)"
    rows = re.findall(r"^AI g=5 eta=2\s+([EI])" + number * 5, out, re.MULTILINE)
    assert [r[0] for r in rows] == ["E", "I"], out
    for _, rate, theory, cv, chi, active in rows:
        # asynchronous irregular regime: tens of Hz near the mean field, irregular, not synchronous
        assert 20.0 < float(rate) < 150.0 and float(theory) == pytest.approx(60.4, abs=0.1)
        assert float(cv) > 0.6 and float(chi) < 0.3 and float(active) > 0.8
    assert "neurons by outgoing sign: 1000 E, 250 I, 0 mixed" in out
    loops = re.search(r"^recurrent population loops: (.*)$", out, re.MULTILINE)
    assert loops and "E" in loops.group(1) and "I" in loops.group(1) and "none" not in loops.group(1), out


@pytest.mark.slow  # > 4 s on 2 cores (issue 23): CI runs it
def test_sweep_latency_quick(tmp_path):
    out = _run([str(EXAMPLES / "sweep_latency.py"), "--quick"], tmp_path)
    rows = re.findall(r"^\s+([0-9.]+)\s+0\.5((?:\s+[0-9.]+){4})$", out, re.MULTILINE)
    assert [float(r[0]) for r in rows] == [99.0, 99.9, 99.99, 100.0], out
    for _, accs in rows:
        acc = [float(a) for a in accs.split()]
        assert acc[-1] >= 90.0  # T = 64
    assert re.search(r"^chosen: percentile [0-9.]+, v_init 0\.5, T = \d+ steps", out, re.MULTILINE)
    # the Brian2 check follows the reference simulator exactly
    assert "100.0 % same predictions, output spike counts identical: True" in out
    assert _percent("Brian2 (numpy)", out) >= 85.0


@pytest.mark.slow  # > 4 s on 2 cores (issue 23): CI runs it
def test_experiment_toml_runs(tmp_path):
    # the shipped example file, with the numpy target (no compiler) and without the graph measures
    # (clustering/motifs take seconds; they are tested in tests/analysis)
    text = (EXAMPLES / "experiment.toml").read_text()
    assert 'target = "auto"' in text and "graph = true " in text
    text = text.replace('target = "auto"', 'target = "numpy"').replace("graph = true ", "graph = false ")
    exp = tmp_path / "experiment.toml"
    exp.write_text(text)
    _run(["-m", "spikebridge", "-q", "run", str(exp), "--out", str(tmp_path / "out")], tmp_path)
    summary = json.loads((tmp_path / "out" / "digits_mlp_summary.json").read_text())["summary"]
    assert summary["samples"] == 60 and summary["n_steps"] == 64
    assert summary["snn_accuracy"] >= 0.9 and abs(summary["snn_accuracy"] - summary["ann_accuracy"]) <= 0.05
    assert (tmp_path / "out" / "digits_mlp_spikes.h5").is_file()
    assert any((tmp_path / "out" / name).is_file() for name in ("report.html", "report.md"))
