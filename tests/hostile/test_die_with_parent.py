"""A helper process (the variable-length attribute reader of ``_h5``) dies with its parent."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from ._proc import alive

PARENT = """
import functools, os, signal, subprocess, sys
from spikebridge._process import die_with_parent
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"],
                         preexec_fn=functools.partial(die_with_parent, os.getpid()))
print(child.pid, flush=True)
os.kill(os.getpid(), signal.SIGKILL)  # the parent is killed; nothing cleans up after it
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux-only")
def test_child_is_killed_when_its_parent_is_killed():
    out = subprocess.run([sys.executable, "-c", PARENT], capture_output=True, text=True, timeout=60)
    assert out.returncode == -9  # SIGKILL
    child = int(out.stdout.split()[0])
    deadline = time.monotonic() + 10
    while alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive(child), f"child {child} outlived its killed parent"


def test_heap_reader_is_started_with_the_parent_death_signal(monkeypatch, tmp_path):
    import spikebridge._h5 as h5

    seen = {}

    def fake_run(*args, **kwargs):
        seen.update(kwargs)
        raise subprocess.TimeoutExpired(args[0], 1)

    monkeypatch.setattr(h5.subprocess, "run", fake_run)
    with pytest.raises(Exception, match="did not finish"):
        h5._read_attrs_apart(str(tmp_path / "x.h5"), "file 'x.h5'", ValueError, True, None)
    assert seen["preexec_fn"].func is h5.die_with_parent and seen["timeout"] == h5.HEAP_READ_TIMEOUT_S
