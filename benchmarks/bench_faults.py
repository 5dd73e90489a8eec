"""Fault injection: random SIGKILLs of ``simulate -o`` (1 and 2 worker processes) and a full disk.

Each kill trial starts ``spikebridge simulate`` on the shipped digits MLP
(converted once), waits a random time, kills the parent with SIGKILL, then
checks that

* no worker process survives its parent (orphans),
* the store, if the run got that far, opens and holds every finished batch
  exactly as an uninterrupted run wrote it (otherwise it is *lost*),
* ``--resume`` (with the trial's worker count) finishes it to exactly the
  uninterrupted result (*resumes identical*).

Each disk-full trial runs under ``RLIMIT_FSIZE`` (SIGXFSZ ignored, so writes
fail with EFBIG as on a full disk) at a fraction of the finished store's
size, and checks exit status 1, a one-line message, the store and the resume.

Each tmpfs trial (root only; skipped otherwise) mounts a real small tmpfs,
pre-fills it with a filler file so that the run meets a full disk (ENOSPC
from the kernel) at one fill point -- during the first batch, mid-run, or
while finishing (free space a drawn fraction of the finished store's size)
-- and checks exit status 1 with one line, a store whose every counted batch
verifies and equals the uninterrupted run, and, after the filler is deleted,
a ``--resume`` identical to the uninterrupted run.

Usage::

    python benchmarks/bench_faults.py [--trials 4] [--disk-full 2] [--tmpfs 2] [--samples 120] [--steps 32]

Needs nothing but the package (shipped model and data).  Prints a table and
writes benchmarks/results/faults.json.  Linux only (reads /proc for orphans).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # this checkout's spikebridge, like the subprocesses (PYTHONPATH)

from spikebridge.store.spikes import SpikeStore  # noqa: E402
from tests.hostile._proc import alive as _alive, children as _children  # noqa: E402


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT)}


def _cmd(d: Path, out: Path, args: argparse.Namespace, workers: int, *extra: str) -> list[str]:
    return [sys.executable, "-m", "spikebridge", "-q", "simulate", str(d / "net.h5"), "--data", "digits:test",
            "--limit", str(args.samples), "-o", str(out), "--batch-size", str(args.batch), "--steps", str(args.steps),
            "--seed", "3", "--target", args.target, "--workers", str(workers), *extra]





def _arrays(path: Path) -> dict[str, np.ndarray]:
    with SpikeStore(path) as st:
        out = {"counts_t": st.file["output/counts_t"][: st.n_done], "pot": st.file["output/potential_t"][: st.n_done]}
        for name in st:
            sp = st.read_spikes(name)
            out[f"{name}/neuron"], out[f"{name}/step"] = sp.neuron, sp.step
        for name in st.count_populations:
            out[f"counts/{name}"] = st.counts(name)
    return out


def _prefix_equal(got: dict[str, np.ndarray], ref: dict[str, np.ndarray]) -> bool:
    return got.keys() == ref.keys() and all(np.array_equal(got[k], ref[k][: len(got[k])]) for k in got)


def _equal(got: dict[str, np.ndarray], ref: dict[str, np.ndarray]) -> bool:
    return got.keys() == ref.keys() and all(np.array_equal(got[k], ref[k]) for k in got)


def _check_store(out: Path, ref: dict[str, np.ndarray]) -> tuple[int, bool, str]:
    """(samples kept, lost?, why) of a store left by a failed run."""
    if not out.exists():
        return 0, False, ""  # killed before the first batch finished: nothing to lose
    try:
        got = _arrays(out)
    except Exception as err:
        return 0, True, f"{type(err).__name__}: {err}"
    kept = len(got["counts_t"])
    same = _prefix_equal(got, ref)
    return kept, not same, "" if same else "finished rows differ from the uninterrupted run"


def _resume(d: Path, out: Path, args: argparse.Namespace, workers: int, ref: dict[str, np.ndarray]) -> bool:
    res = subprocess.run(_cmd(d, out, args, workers, "--resume"), cwd=ROOT, env=_env(), capture_output=True, text=True)
    return res.returncode == 0 and _equal(_arrays(out), ref)


def kill_trial(d: Path, k: int, workers: int, delay: float, args: argparse.Namespace, ref: dict[str, np.ndarray]) -> dict:
    out = d / f"kill_w{workers}_{k}.h5"
    proc = subprocess.Popen(_cmd(d, out, args, workers), cwd=ROOT, env=_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    seen: set[int] = set()
    # start-up (imports, compiled-code cache) takes most of a short run: the clock for the
    # random kill time starts when the first batch is in the store
    while not out.exists() and proc.poll() is None:
        seen |= _children(proc.pid)
        time.sleep(0.01)
    t0 = time.monotonic()
    while time.monotonic() - t0 < delay and proc.poll() is None:
        seen |= _children(proc.pid)
        time.sleep(0.01)
    finished_first = proc.poll() is not None
    if not finished_first:
        os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    time.sleep(1.0)  # the kernel delivers the parent-death signal at once; allow for scheduling
    orphans = sorted(p for p in seen if _alive(p))
    for p in orphans:  # leave the machine clean
        os.kill(p, signal.SIGKILL)
    kept, lost, why = _check_store(out, ref)
    identical = _resume(d, out, args, workers, ref)
    return {"kind": "sigkill", "workers": workers, "delay_s": round(delay, 2), "finished_before_kill": finished_first,
            "kept": kept, "lost": lost, "why": why, "resume_identical": identical, "orphans": len(orphans),
            "children_seen": len(seen)}


def disk_full_trial(d: Path, k: int, fraction: float, args: argparse.Namespace, ref: dict[str, np.ndarray], ref_size: int) -> dict:
    out = d / f"full_{k}.h5"
    limit = int(ref_size * fraction)

    def limited() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    res = subprocess.run(_cmd(d, out, args, 1), cwd=ROOT, env=_env(), capture_output=True, text=True, preexec_fn=limited)
    lines = res.stderr.strip().splitlines()
    kept, lost, why = _check_store(out, ref)
    identical = _resume(d, out, args, 1, ref)
    return {"kind": "disk_full", "workers": 1, "limit_bytes": limit, "exit": res.returncode,
            "one_line": len(lines) == 1 and lines[0].startswith("spikebridge: error: no space left"),
            "stderr": lines[-3:], "kept": kept, "lost": lost, "why": why, "resume_identical": identical, "orphans": 0}


#: free space left on the tmpfs, as a fraction of the uninterrupted store's size, per fill point
FILL_POINTS = {"first batch": (0.02, 0.15), "mid-run": (0.5, 1.0), "finishing": (1.4, 1.9)}


def tmpfs_trial(d: Path, k: int, point: str, fraction: float, args: argparse.Namespace, ref: dict[str, np.ndarray],
                ref_size: int) -> dict:
    mnt = d / f"tmpfs_{k}_{point.replace(' ', '_')}"
    mnt.mkdir()
    size = 4 * ref_size + (1 << 20)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mnt)], check=True, capture_output=True)
    try:
        sv = os.statvfs(mnt)
        free = int(fraction * ref_size)
        filler = mnt / "filler"
        filler.write_bytes(b"\1" * max(0, sv.f_bavail * sv.f_frsize - free))
        out = mnt / "s.h5"
        res = subprocess.run(_cmd(d, out, args, 1), cwd=ROOT, env=_env(), capture_output=True, text=True)
        lines = res.stderr.strip().splitlines()
        kept, lost, why = _check_store(out, ref)
        filler.unlink()
        identical = _resume(d, out, args, 1, ref)
        return {"kind": f"tmpfs:{point}", "workers": 1, "free_bytes": free, "exit": res.returncode,
                "one_line": len(lines) == 1 and lines[0].startswith("spikebridge: error: no space left"),
                "stderr": lines[-3:], "kept": kept, "lost": lost, "why": why, "resume_identical": identical, "orphans": 0}
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=4, help="SIGKILL trials per worker count (1 and 2)")
    ap.add_argument("--disk-full", dest="disk_full", type=int, default=2, help="disk-full trials")
    ap.add_argument("--tmpfs", type=int, default=2, help="real tmpfs trials per fill point (root only)")
    ap.add_argument("--samples", type=int, default=120)
    ap.add_argument("--batch", type=int, default=12)
    ap.add_argument("--steps", type=int, default=32)
    ap.add_argument("--target", default="auto")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    if not sys.platform.startswith("linux"):
        sys.exit("bench_faults needs Linux (/proc, RLIMIT_FSIZE)")
    rng = np.random.default_rng(args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        subprocess.run([sys.executable, "-m", "spikebridge", "-q", "convert", "shipped:digits_mlp", "-o", str(d / "net.h5")],
                       cwd=ROOT, env=_env(), check=True, capture_output=True)
        ref_path = d / "ref.h5"
        t_ref: dict[int, float] = {}  # seconds from the first batch in the store to the end
        for workers in (2, 1):  # the reference is the 1-worker run; the 2-worker one must equal it
            path = d / f"ref{workers}.h5"
            proc = subprocess.Popen(_cmd(d, path, args, workers), cwd=ROOT, env=_env(), stdout=subprocess.DEVNULL)
            while not path.exists() and proc.poll() is None:
                time.sleep(0.01)
            t0 = time.perf_counter()
            if proc.wait() != 0:
                sys.exit(f"the uninterrupted run with {workers} worker(s) failed")
            t_ref[workers] = time.perf_counter() - t0
        (d / "ref1.h5").rename(ref_path)
        ref = _arrays(ref_path)
        workers_identical = _equal(_arrays(d / "ref2.h5"), ref)
        rows = []
        for workers in (1, 2):
            for k in range(args.trials):
                # kill somewhere between the first batch and the end of an uninterrupted run of this worker count
                rows.append(kill_trial(d, k, workers, float(rng.uniform(0.0, 1.0) * t_ref[workers]), args, ref))
                print(rows[-1], flush=True)
        for k in range(args.disk_full):
            rows.append(disk_full_trial(d, k, float(rng.uniform(0.2, 0.8)), args, ref, ref_path.stat().st_size))
            print(rows[-1], flush=True)
        if args.tmpfs and (not hasattr(os, "geteuid") or os.geteuid() != 0):
            print("tmpfs trials skipped: mounting a tmpfs needs root", flush=True)
        elif args.tmpfs:
            for point, (lo, hi) in FILL_POINTS.items():
                for k in range(args.tmpfs):
                    rows.append(tmpfs_trial(d, k, point, float(rng.uniform(lo, hi)), args, ref, ref_path.stat().st_size))
                    print(rows[-1], flush=True)
    summary = []
    kinds = [("sigkill", 1), ("sigkill", 2), ("disk_full", 1)] + [(f"tmpfs:{p}", 1) for p in FILL_POINTS]
    for kind, workers in kinds:
        sel = [r for r in rows if r["kind"] == kind and r["workers"] == workers]
        if sel:
            summary.append({
                "kind": kind, "workers": workers, "trials": len(sel),
                "stores_lost": sum(r["lost"] for r in sel),
                "resumes_identical": sum(r["resume_identical"] for r in sel),
                "orphans_left": sum(r["orphans"] for r in sel),
                "median_kept": float(np.median([r["kept"] for r in sel])),
                **({"clean_exit_1_one_line": sum(r["exit"] == 1 and r["one_line"] for r in sel),
                    "finished_anyway": sum(r["exit"] == 0 for r in sel)} if kind != "sigkill" else {}),
            })
    header = ["kind", "workers", "trials", "stores lost", "resumes identical", "orphans left", "median kept"]
    print()
    print("  ".join(f"{h:>20}" for h in header))
    for s in summary:
        print("  ".join(f"{v:>20}" for v in (s["kind"], s["workers"], s["trials"], s["stores_lost"], s["resumes_identical"],
                                             s["orphans_left"], s["median_kept"])))
    print(f"uninterrupted runs after the first batch: {t_ref[1]:.1f} s (1 worker), {t_ref[2]:.1f} s (2 workers); "
          f"identical: {workers_identical}")
    for s in summary:
        if "clean_exit_1_one_line" in s:
            print(f"{s['kind']}: {s['clean_exit_1_one_line']}/{s['trials']} exited 1 with one line, "
                  f"{s['finished_anyway']} finished (the space sufficed)")
    result = {
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "note": "shared, busy development machine",
                    "load_1min": os.getloadavg()[0]},
        "config": vars(args), "reference_run_s": t_ref, "workers_2_equals_1": workers_identical,
        "summary": summary, "trials": rows,
    }
    out = ROOT / "benchmarks" / "results" / "faults.json"
    out.write_text(json.dumps(result, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
