"""examples/stdp_digits.py --quick and `spikebridge run examples/stdp_digits.toml` (small settings)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import h5py
import pytest

from spikebridge.cli import main

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"


@pytest.mark.slow  # > 7 s on 2 cores (issue 23): CI runs it
def test_stdp_digits_quick(tmp_path):
    # this checkout's spikebridge, whatever is installed
    env = dict(os.environ, PYTHONPATH=str(ROOT), MPLBACKEND="Agg")
    proc = subprocess.run([sys.executable, str(EXAMPLES / "stdp_digits.py"), "--quick", "--out", "o"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    m = re.search(r"^test accuracy: ([0-9.]+) % on 60 digits \(10 neurons, 100 training digits x 1 epoch", proc.stdout, re.M)
    assert m, proc.stdout
    summary = json.loads((tmp_path / "o" / "stdp_digits_summary.json").read_text())
    assert summary["accuracy"] == pytest.approx(float(m.group(1)) / 100, abs=1e-3)
    assert summary["accuracy"] >= 0.4  # chance is 10 %; 10 neurons and 100 digits learn only a little
    with h5py.File(tmp_path / "o" / "stdp_digits_spikes.h5", "r") as f:
        w = f["weights/in_exc/w"][()]
        assert w.shape[1] == 10 * 64 and w.shape[0] >= 2
        assert abs(w[-1] - w[0]).mean() > 1e-3  # the weights learned something
        assert f["labels"].shape == (60,)


@pytest.mark.slow  # > 4 s on 2 cores (issue 23): CI runs it
def test_stdp_toml_runs_and_checks_keys(tmp_path, capsys):
    text = (EXAMPLES / "stdp_digits.toml").read_text()
    assert "[stdp]" in text and 'target = "auto"' in text
    small = text.replace('target = "auto"', 'target = "numpy"').replace("n_exc = 100", "n_exc = 10").replace("epochs = 4", "epochs = 1")
    small += 'n_train = 40\nn_test = 30\nn_steps_test = 60\nt_present = "60ms"\nt_rest = "20ms"\n'
    small = small.replace('t_present = "150ms"', "").replace('t_rest = "50ms"', "")
    exp = tmp_path / "stdp.toml"
    exp.write_text(small)
    assert main(["-q", "run", str(exp), "--out", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert "test accuracy" in out and "40 x 1" in out
    assert (tmp_path / "out" / "stdp_digits_net.h5").is_file()
    # a second run refuses to replace the results
    assert main(["-q", "run", str(exp), "--out", str(tmp_path / "out")]) == 1
    assert "--overwrite" in capsys.readouterr().err
    exp.write_text(small.replace("\n[stdp]\n", "\n[stdp]\nbogus = 1\n"))
    assert main(["-q", "run", str(exp), "--out", str(tmp_path / "o2")]) == 1
    assert "bogus" in capsys.readouterr().err
