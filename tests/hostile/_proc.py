"""Process-tree helpers (Linux ``/proc``) shared by the worker tests and ``benchmarks/bench_faults.py``."""

from __future__ import annotations

from pathlib import Path


def children(pid: int) -> set[int]:
    """PIDs of the direct children of ``pid`` (empty if it is gone)."""
    out: set[int] = set()
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            out |= {int(c) for c in (task / "children").read_text().split()}
        except OSError:
            pass
    return out


def alive(pid: int) -> bool:
    """Whether ``pid`` exists and is not a zombie."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"
