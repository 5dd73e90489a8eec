"""Issue 12, class 3: worker processes die with their parent, a dead run's lock never blocks, Ctrl-C exits 130.

A ``--workers 2`` run is killed (SIGKILL) or interrupted (SIGINT to its
process group) while its workers simulate; no worker may survive, and
``--resume`` must finish the store to exactly the uninterrupted result.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tests.store._fake import make_net
from tests.store.test_stream import _arrays, _assert_same, _n_done
from tests.hostile._proc import alive as _alive, children as _children

ROOT = Path(__file__).resolve().parents[2]
N = 8

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    d = tmp_path_factory.mktemp("workers")
    make_net().save(d / "net.h5")
    np.savez(d / "data.npz", x=np.random.default_rng(1).uniform(0, 1, (N, 6)), y=np.arange(N) % 4)
    return d


def _args(d: Path, out: Path, workers: int, *extra: str) -> list[str]:
    return [sys.executable, "-m", "tests.hostile._worker", "0", "-q", "simulate", str(d / "net.h5"), "--data", str(d / "data.npz"),
            "-o", str(out), "--batch-size", "2", "--steps", "20", "--seed", "7", "--target", "numpy",
            "--workers", str(workers), *extra]


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), "SB_REAL_BACKEND": "1"}





def _start_and_wait(d: Path, out: Path) -> tuple[subprocess.Popen, set[int]]:
    proc = subprocess.Popen(_args(d, out, 2), cwd=ROOT, env={**_env(), "SB_BATCH_SLEEP": "0.3"}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, start_new_session=True)
    deadline = time.monotonic() + 120
    workers: set[int] = set()
    while _n_done(out) < 2 or len(workers) < 2:
        assert proc.poll() is None, proc.stderr.read().decode()
        assert time.monotonic() < deadline, "no progress"
        workers |= _children(proc.pid)
        time.sleep(0.02)
    return proc, workers


def _gone(pids: set[int], timeout: float = 10.0) -> set[int]:
    deadline = time.monotonic() + timeout
    while (left := {p for p in pids if _alive(p)}) and time.monotonic() < deadline:
        time.sleep(0.05)
    return left


@pytest.fixture(scope="module")
def reference(inputs):
    out = inputs / "ref.h5"
    res = subprocess.run(_args(inputs, out, 1), cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    return _arrays(out)


def _resume_and_check(d: Path, out: Path, reference: dict[str, np.ndarray]) -> None:
    res = subprocess.run(_args(d, out, 2, "--resume"), cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr  # the dead run's lock does not block
    _assert_same(_arrays(out), reference)


@pytest.mark.slow  # > 7 s on 2 cores (issue 23): CI runs it
def test_sigkill_leaves_no_orphan_and_resumes(inputs, reference, tmp_path):
    out = tmp_path / "s.h5"
    proc, workers = _start_and_wait(inputs, out)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert _gone(workers) == set()
    assert 2 <= _n_done(out) < N
    _resume_and_check(inputs, out, reference)


def test_ctrl_c_exits_130_with_one_line(inputs, tmp_path):
    out = tmp_path / "s.h5"
    proc, workers = _start_and_wait(inputs, out)
    os.killpg(proc.pid, signal.SIGINT)  # what the terminal does: the whole process group
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130
    assert err.decode() == "spikebridge: interrupted\n"
    assert _gone(workers) == set()
    assert _n_done(out) >= 2  # the store keeps what was finished (resuming it is tested above)


def test_a_forked_child_does_not_keep_the_store_lock(tmp_path):
    """flock belongs to the open file, which a fork shares: without closing it, a worker (or an
    orphan of a killed run) kept the store locked and every later --resume was refused."""
    import multiprocessing

    from spikebridge.store._hdf5lock import WriterLock

    path = tmp_path / "s.h5"
    lock = WriterLock(path)
    child = multiprocessing.get_context("fork").Process(target=time.sleep, args=(30,))
    child.start()
    try:
        lock.release()
        WriterLock(path).release()  # the child still lives, yet the lock is free
    finally:
        child.kill()
        child.join()


@pytest.mark.slow  # a reference run plus a killed run and a resume (~10 s on 2 loaded cores)
def test_a_killed_worker_is_one_line_and_keeps_finished_batches(inputs, reference, tmp_path):
    """Issue 19 §5: a pool worker killed for real (SIGKILL, as the out-of-memory killer does) mid-run was an
    internal error (BrokenProcessPool); now one line naming the signal, exit 1, finished batches kept."""
    out = tmp_path / "s.h5"
    proc, workers = _start_and_wait(inputs, out)
    # a pool worker alive now: children seen earlier may have been short-lived helpers, and
    # multiprocessing's resource tracker is a child too but killing it breaks nothing
    workers |= _children(proc.pid)
    for victim in sorted(_children(proc.pid)):
        try:
            if b"resource_tracker" in Path(f"/proc/{victim}/cmdline").read_bytes() or not _alive(victim):
                continue
            os.kill(victim, signal.SIGKILL)
            break
        except (OSError, ProcessLookupError):
            continue
    else:
        pytest.fail("no live pool worker to kill")
    _, err = proc.communicate(timeout=60)
    err = err.decode()
    assert proc.returncode == 1, err
    assert err.count("\n") == 1 and "Traceback" not in err and "internal error" not in err, err
    # the signal is named when the pool reports the dead worker's exit code before the failed batch
    assert re.match(r"spikebridge: error: a worker process died (\(killed by signal SIGKILL\) )?while simulating "
                    r"samples \d+\.\.\d+", err), err
    assert err.rstrip().endswith("continue it with --resume")
    assert _gone(workers) == set()
    assert 2 <= _n_done(out) < N
    _resume_and_check(inputs, out, reference)


def test_the_death_cause_is_the_worker_that_died_not_those_the_pool_stopped():
    from types import SimpleNamespace

    from spikebridge.run.batches import _death_cause

    term, kill, ok = (SimpleNamespace(exitcode=c) for c in (-signal.SIGTERM, -signal.SIGKILL, 0))
    assert _death_cause([term, kill, ok]) == " (killed by signal SIGKILL)"
    assert _death_cause([term, ok]) == ""  # only the pool's own SIGTERMs: the cause is unknown
    assert _death_cause([ok, SimpleNamespace(exitcode=3)]) == " (exit status 3)"
    assert _death_cause([ok]) == ""
