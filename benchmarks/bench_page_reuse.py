"""What touching memory costs on this machine: fresh pages, and pages freed a while ago.

On a VM whose balloon driver reports freed guest pages to the host (``virtio_balloon`` with free
page reporting), memory the process freed a few seconds ago costs nearly as much to touch again as
memory never touched: the host has to hand the pages back.  The tensor engine allocates and frees
its potentials, counts and spike blocks per batch, so on such a machine a run's time depends on how
long ago the previous run freed its memory (results.md §0.2o).

One row per case, each the median of ``--repeats`` of ``np.ones`` over ``--mb`` MB, with the
1-minute load beside it:

* ``fresh``: pages this process never touched;
* ``reused at once``: the same size freed just before;
* ``freed N s before``: freed, then ``N`` seconds of sleep (``--waits``).

Run::

    python benchmarks/bench_page_reuse.py                # 800 MB, waits 1, 3, 10 s
    python benchmarks/bench_page_reuse.py --mb 400 --waits 0.5,2,5 --repeats 5
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


def touch_ms_per_mb(mb: int) -> float:
    """Milliseconds per MB to allocate and write ``mb`` MB of float64 ones (then freed)."""
    t = time.perf_counter()
    a = np.ones(mb * (1 << 20) // 8)
    dt = time.perf_counter() - t
    del a
    return dt / mb * 1e3


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--mb", type=int, default=800, help="MB touched per measurement (default 800)")
    p.add_argument("--waits", default="1,3,10", help="seconds between freeing and touching again (comma-separated)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", default=str(HERE / "results" / "page_reuse.json"))
    args = p.parse_args(argv)
    waits = [float(w) for w in args.waits.split(",") if w.strip()]
    balloon = Path("/sys/bus/virtio/drivers/virtio_balloon").exists()
    rows: dict[str, dict] = {}

    def row(label: str, values: list[float]) -> None:
        rows[label] = {"ms_per_mb": statistics.median(values), "runs": values, "load_1min": os.getloadavg()[0]}
        print(f"{label:<24} {statistics.median(values):8.2f} ms/MB   load {os.getloadavg()[0]:.2f}")

    print(f"{args.mb} MB per measurement; virtio_balloon driver: {'yes' if balloon else 'no'}")
    row("fresh", [touch_ms_per_mb(args.mb)])  # only the first touch of the process is fresh
    row("reused at once", [touch_ms_per_mb(args.mb) for _ in range(args.repeats)])
    for w in waits:
        values = []
        for _ in range(args.repeats):
            time.sleep(w)
            values.append(touch_ms_per_mb(args.mb))
        row(f"freed {w:g} s before", values)
    out = {"mb": args.mb, "virtio_balloon": balloon, "rows": rows}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=1))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
