"""``run.batches.tune_malloc``: freed memory kept for reuse by threads (docs/results.md §0.2u)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")

# two threads allocate and free blocks as a batch part's convolutions do (19.3 MB, the F-MNIST
# VGG's int8 output, and smaller ones), twice; the second pass's page faults are counted
CHILD = """
import resource, sys, threading
import numpy as np
from spikebridge.run.batches import tune_malloc
applied = tune_malloc() if sys.argv[1] == "tuned" else None
def work():
    for i in range(30):
        a = np.ones(19_300_000 // 8); b = np.ones(375_000 * (1 + i % 3)); c = np.ones(1_500_000)
        del a, b, c
def run():
    ts = [threading.Thread(target=work) for _ in range(2)]
    [t.start() for t in ts]; [t.join() for t in ts]
run()
f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
run()
print(applied, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0)
"""


def _child(mode: str, **env: str) -> tuple[str, int]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    out = subprocess.run([sys.executable, "-c", CHILD, mode], capture_output=True, text=True, timeout=120,
                         env={**clean, **env}, check=True).stdout.split()
    return out[0], int(out[1])


def test_threads_reuse_freed_blocks_instead_of_mapping_fresh_pages():
    applied, tuned = _child("tuned")
    assert applied == "True"
    _, default = _child("default")
    # 0.43 GB allocated per pass: about 105 k fresh pages if every block were mapped anew
    assert tuned < 1_000, tuned
    assert default > 10 * (tuned + 100), (default, tuned)


def test_a_malloc_setting_in_the_environment_is_left_alone():
    applied, _ = _child("tuned", MALLOC_ARENA_MAX="4")
    assert applied == "False"
