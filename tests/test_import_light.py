"""`import spikebridge` must not pull in heavy optional frameworks."""

import subprocess
import sys

HEAVY = ["torch", "onnx", "sklearn", "tensorflow", "matplotlib", "keras"]


def test_import_does_not_load_heavy_frameworks():
    code = (
        "import sys, spikebridge, spikebridge.cli; "
        f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
