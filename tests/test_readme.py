"""The README's Python example runs and prints what the README says it prints."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_readme_python_example_reaches_the_stated_accuracy():
    text = (ROOT / "README.md").read_text()
    code = re.search(r"```python\n(.*?)```", text, re.S).group(1)
    assert "# 0.978, equal to the ANN" in code
    # numpy target: no compiler needed in the test, same spikes as cython
    code = code.replace("sb.SimulationConfig(n_steps=64)", 'sb.SimulationConfig(n_steps=64, target="numpy")')
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert abs(float(out.stdout.strip()) - 352 / 360) < 1e-9
