"""The first minute: wall time of a first ``spikebridge demo`` with empty caches.

Every row runs ``python -m spikebridge demo`` in its own subprocess with fresh
cache directories, as on a machine that has never run spikebridge:

* ``CYTHON_CACHE_DIR`` (Brian2 keeps its compiled cython code objects under
  it, in ``brian_extensions``), ``SPIKEBRIDGE_CACHE`` (cpp_standalone
  projects), ``XDG_CACHE_HOME`` and ``MPLCONFIGDIR`` (matplotlib's font cache)
  all point into a new temporary directory;
* ``cold <target>``: the first demo there; ``warm <target>``: a second demo
  with the same (now filled) caches.

Wall time moves with the machine's load; the CPU seconds of the demo and
all its processes (``RUSAGE_CHILDREN``) are reported beside it, since on a
quiet 2-core machine the wall time is at most about that and at least half.

Rows: the demo as shipped (default target) cold and warm, and with
``--with-cython`` also ``--target cython`` cold (Brian2 compiles every code
object of every population once: minutes) and warm.  Each row is repeated
``--repeats`` times (fresh caches every time for the cold rows); medians are
quoted.  ``--cores 2`` pins the subprocesses to two cores (``taskset``) to
stand for a 2-core machine.

Usage::

    python benchmarks/bench_cold_start.py [--repeats 1] [--with-cython] [--cores 2]

Prints a table and writes benchmarks/results/cold_start.json.  The figures
depend on the load of the machine: on a shared machine, repeat them.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def demo(cache: Path, out: Path, extra: list[str], cores: int | None) -> dict[str, Any]:
    """One ``spikebridge demo`` in a subprocess with its caches under ``cache``; wall time and per-model sim times."""
    env = {
        **os.environ,
        "CYTHON_CACHE_DIR": str(cache / "cython"),
        "SPIKEBRIDGE_CACHE": str(cache / "spikebridge"),
        "XDG_CACHE_HOME": str(cache / "xdg"),
        "MPLCONFIGDIR": str(cache / "matplotlib"),
        "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
    }
    cmd = [sys.executable, "-m", "spikebridge", "demo", "--out", str(out), *extra]
    if cores and shutil.which("taskset"):
        cmd = ["taskset", "-c", ",".join(str(c) for c in range(cores))] + cmd
    import resource

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    # CPU seconds of the demo and every process it waited for: what a quiet machine would need, load aside
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if proc.returncode != 0:
        return {"error": proc.stderr[-2000:], "wall_s": wall, "cpu_s": cpu}
    # the summary table's last column: "<model> ... <sim time> s"
    sim = {m.group(1): float(m.group(2)) for m in re.finditer(r"^(\S+)\s.*?([\d.]+) s$", proc.stdout, re.M)}
    return {"wall_s": wall, "cpu_s": cpu, "sim_s": sim, "stderr_lines": proc.stderr.strip().splitlines()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--with-cython", action="store_true", help="also the compiled cython target (minutes when cold)")
    ap.add_argument("--cores", type=int, default=None, help="pin the demo to this many cores (taskset)")
    ap.add_argument("--out", default=str(HERE / "results" / "cold_start.json"))
    args = ap.parse_args()
    variants: list[tuple[str, list[str]]] = [("default", [])]
    if args.with_cython:
        variants.append(("cython", ["--target", "cython"]))
    rows: list[dict[str, Any]] = []
    for label, extra in variants:
        cold, warm = [], []
        for _ in range(args.repeats):
            with tempfile.TemporaryDirectory(prefix="spikebridge_cold_") as tmp:
                cache = Path(tmp)
                print(f"running cold {label} ...", file=sys.stderr, flush=True)
                cold.append(demo(cache, cache / "out1", extra, args.cores))
                print(f"running warm {label} ...", file=sys.stderr, flush=True)
                warm.append(demo(cache, cache / "out2", extra, args.cores))
        for kind, runs in (("cold", cold), ("warm", warm)):
            ok = [r for r in runs if "error" not in r]
            rows.append({
                "label": f"{kind} demo, target {label}",
                "wall_s": [r["wall_s"] for r in runs],
                "wall_median_s": statistics.median(r["wall_s"] for r in ok) if ok else None,
                "cpu_s": [r["cpu_s"] for r in runs],
                "cpu_median_s": statistics.median(r["cpu_s"] for r in ok) if ok else None,
                "sim_s": ok[-1]["sim_s"] if ok else None,
                "errors": [r["error"] for r in runs if "error" in r],
                "progress_lines": ok[-1]["stderr_lines"] if ok else [],
            })
    print(f"\nfirst `spikebridge demo` with empty caches; medians of {args.repeats}; "
          f"{args.cores or os.cpu_count()} cores (machine shared with other jobs: load moves these)")
    print(f"{'run':<32}{'wall s':>9}{'CPU s':>8}  per-model simulate s")
    for r in rows:
        wall = "error" if r["wall_median_s"] is None else f"{r['wall_median_s']:.1f}"
        cpu = "" if r["cpu_median_s"] is None else f"{r['cpu_median_s']:.1f}"
        sims = ", ".join(f"{k} {v:.1f}" for k, v in (r["sim_s"] or {}).items())
        print(f"{r['label']:<32}{wall:>9}{cpu:>8}  {sims}")
        for err in r["errors"]:
            print("   error: " + err.strip().splitlines()[-1])
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"machine": platform.platform(), "cpu_count": os.cpu_count(), "cores": args.cores,
                               "load_avg_after": os.getloadavg(), "results": rows}, indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
