"""A seeded fuzzer for spikebridge's own network (``spikebridge.snn``) and ANN (``spikebridge.ann``) files.

Each case takes a small valid file written here (new-style, or rewritten the
way the previous version wrote it: variable-length string attributes), damages
it one way (bytes flipped or overwritten, truncated, the global heap's lengths
forged, an attribute's type flipped, a dataset's dtype/shape/size forged, a
member removed, NaN weights ...) and loads it in a forked child with a time
limit and a memory limit.  The outcome of a case is

``ok``      it loaded (the damage hit nothing that matters, or raw data only)
``clean``   a ``spikebridge.errors`` exception (what every damaged file must give)
``bad``     any other exception (its type and first line are kept)
``hang``    the child ran past the time limit and was killed
``crash``   the child died by a signal (segfault, abort)

Run ``python3 -m tests.hostile._fuzz --cases 500`` for a table of outcomes per
mutation kind; ``run_cases`` is what the tests call.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import resource
import shutil
import signal
import struct
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

#: per-case limits of the forked child
TIMEOUT_S = 10.0
MEMORY_BYTES = 3 << 30


# -- base files -----------------------------------------------------------------------------------

def _tiny_mlp() -> Any:
    from spikebridge.ir.graph import AnnGraph
    from spikebridge.ir.layers import Dense, Input, ReLU

    r = np.random.default_rng(0)
    return AnnGraph(
        [Input(name="input", shape=(6,)), Dense(name="fc1", weight=r.normal(0, 0.5, (8, 6)), bias=r.normal(0, 0.1, 8)),
         ReLU(name="relu1"), Dense(name="fc2", weight=r.normal(0, 0.5, (4, 8)), bias=r.normal(0, 0.1, 4))],
        name="tiny_mlp", metadata={"classes": [0, 1, 2, 3]},
    )


def _network() -> Any:
    """A small network touching every part of the format: per-neuron arrays, a vector delay, a shared kernel, the ANN."""
    from spikebridge.snn.kernels import SharedKernel
    from spikebridge.snn.network import Population, Projection, SpikingNetwork

    r = np.random.default_rng(1)
    pops = [
        Population(name="inp", n=16, model="input", shape=(1, 4, 4), role="input"),
        Population(name="conv", n=8, model="if", shape=(2, 2, 2), threshold=np.linspace(0.5, 1.5, 8)),
        Population(name="out", n=3, model="lif", tau_mem=0.02, bias=np.array([0.1, 0.0, -0.1]), role="output",
                   params={"poisson_n": 2, "poisson_rate": 5.0, "poisson_weight": 0.1}),
    ]
    kern = SharedKernel(r.normal(0, 0.5, (2, 1, 3, 3)), (1, 4, 4), 1, 0)
    projs = [
        Projection(name="p_conv", pre="inp", post="conv", operator=kern, kind="conv"),
        Projection.from_dense(r.normal(0, 0.5, (3, 8)), name="p_out", pre="conv", post="out",
                              delay=np.full(24, 2e-3), kind="dense", layer="fc"),
    ]
    return SpikingNetwork(pops, projs, input="inp", output="out", dt=1e-3, readout={"mode": "count", "scale": 1.0},
                          scales={"fc": 1.5}, ann=_tiny_mlp(), name="fuzz_net", metadata={"seed": 1})


def legacy(path: Path) -> None:
    """Rewrite every fixed-length string attribute as a variable-length one (how files were written before)."""
    with h5py.File(path, "a") as f:
        nodes: list[Any] = [f]
        f.visititems(lambda name, obj: nodes.append(obj))
        for node in nodes:
            for key in list(node.attrs):
                value = node.attrs[key]
                if isinstance(value, bytes):
                    node.attrs[key] = value.decode()


#: the same network and ANN written by the previous version (8499b13: variable-length strings, format_version 2)
PREVIOUS = {"snn_previous": Path(__file__).parent / "data" / "previous_version.snn.h5",
            "ann_previous": Path(__file__).parent / "data" / "previous_version.ann.h5"}


def write_bases(directory: Path) -> dict[str, Path]:
    """The valid files cases start from: ``snn``, ``ann``, their ``legacy`` twins (variable-length strings)
    and the files the previous version wrote (``PREVIOUS``)."""
    from spikebridge.snn.network import save_network
    from spikebridge.ir.serialize import save_graph

    directory.mkdir(parents=True, exist_ok=True)
    out = {"snn": directory / "base.snn.h5", "ann": directory / "base.ann.h5"}
    save_network(_network(), out["snn"])
    save_graph(_tiny_mlp(), out["ann"])
    for kind in ("snn", "ann"):
        out[f"{kind}_legacy"] = directory / f"base.{kind}.legacy.h5"
        shutil.copy(out[kind], out[f"{kind}_legacy"])
        legacy(out[f"{kind}_legacy"])
    out.update(PREVIOUS)
    return out


# -- mutations ------------------------------------------------------------------------------------

def _nodes(f: h5py.File) -> list[Any]:
    nodes: list[Any] = [f]
    f.visititems(lambda name, obj: nodes.append(obj))
    return nodes


def _datasets(f: h5py.File) -> list[h5py.Dataset]:
    return [n for n in _nodes(f) if isinstance(n, h5py.Dataset)]


_ATTR_VALUES: list[Any] = [
    7, -1, 2**40, 1.5, float("nan"), float("inf"), np.arange(3), np.zeros((2, 2)), np.array([], dtype=np.float64),
    True, 1 + 2j, b"", b"\xff\xfe not utf-8", b"{not json", "{not json", "", "[]", "{}", "1", "null", '"text"',
    "[1, 2]", '{"in_shape": "x"}', '["a", "a"]', '["nope"]', "[[1, 2], [3, 4]]", "-5", "1e999", "NaN",
    np.array([b"a", b"b"]), np.array(["a", "b"], dtype=h5py.string_dtype()), "x" * 100_000,
]


def _flip_attr(f: h5py.File, rng: np.random.Generator) -> str:
    candidates = [(n, k) for n in _nodes(f) for k in n.attrs]
    node, key = candidates[rng.integers(len(candidates))]
    value = _ATTR_VALUES[rng.integers(len(_ATTR_VALUES))]
    del node.attrs[key]
    node.attrs[key] = value
    return f"attr {node.name}@{key} = {str(value)[:30]!r}"


def _drop(f: h5py.File, rng: np.random.Generator) -> str:
    nodes = _nodes(f)
    if rng.random() < 0.5:
        candidates = [(n, k) for n in nodes for k in n.attrs]
        node, key = candidates[rng.integers(len(candidates))]
        del node.attrs[key]
        return f"drop attr {node.name}@{key}"
    node = nodes[1 + rng.integers(len(nodes) - 1)]
    name = node.name
    del f[name]
    return f"drop {name}"


def _replace_dataset(f: h5py.File, rng: np.random.Generator) -> str:
    ds = _datasets(f)[rng.integers(len(_datasets(f)))]
    name, shape = ds.name, ds.shape
    n = max(1, int(np.prod(shape or ())))
    choice = int(rng.integers(12))
    del f[name]
    if choice == 0:  # a huge declared shape of fill values in a few bytes
        f.create_dataset(name, shape=(2**31,), dtype="<f8", chunks=(1 << 16,))
    elif choice == 1:
        f.create_dataset(name, shape=(2**20, 2**20), dtype="<f8", chunks=(64, 64), compression="gzip")
    elif choice == 2:
        f[name] = np.arange(n, dtype=np.int8)
    elif choice == 3:
        f[name] = np.array([b"abc"] * n)
    elif choice == 4:
        f.create_dataset(name, data=np.array(["abc"] * n, dtype=h5py.string_dtype()))
    elif choice == 5:
        f[name] = np.zeros(n, dtype=[("a", "<f8"), ("b", "<i4")])
    elif choice == 6:
        f[name] = np.zeros((n, 2))
    elif choice == 7:
        f[name] = np.zeros(0)
    elif choice == 8:
        f[name] = np.full(shape, np.nan) if shape else np.nan
    elif choice == 9:
        f[name] = np.full(shape, -np.inf) if shape else np.inf
    elif choice == 10:
        f.create_group(name)
    else:
        f[name] = np.full(shape, 2**31 - 1, dtype=np.int64) if shape else 2**31 - 1
    return f"dataset {name} -> #{choice}"


def _group_to_dataset(f: h5py.File, rng: np.random.Generator) -> str:
    groups = [n for n in _nodes(f)[1:] if isinstance(n, h5py.Group)]
    g = groups[rng.integers(len(groups))]
    name = g.name
    del f[name]
    f[name] = np.zeros(3)
    return f"group {name} -> dataset"


def _rename_member(f: h5py.File, rng: np.random.Generator) -> str:
    nodes = _nodes(f)[1:]
    node = nodes[rng.integers(len(nodes))]
    new = node.name.rsplit("/", 1)[0] + "/" + ["x", "-1", "1e3", "0x", "__init__", "a b", "999"][rng.integers(7)]
    if new in f:
        return "rename (no-op)"
    f.move(node.name, new)
    return f"rename {node.name} -> {new}"


def _structural(kind: Callable[[h5py.File, np.random.Generator], str]) -> Callable[[Path, np.random.Generator], str]:
    def mutate(path: Path, rng: np.random.Generator) -> str:
        with h5py.File(path, "a") as f:
            return kind(f, rng)

    return mutate


def _flip_bytes(path: Path, rng: np.random.Generator) -> str:
    raw = bytearray(path.read_bytes())
    k = int(rng.integers(1, 9))
    for _ in range(k):
        i = int(rng.integers(len(raw)))
        raw[i] ^= 1 << int(rng.integers(8))
    path.write_bytes(bytes(raw))
    return f"flip {k} bits"


def _overwrite_run(path: Path, rng: np.random.Generator) -> str:
    raw = bytearray(path.read_bytes())
    n = int(rng.integers(1, 65))
    i = int(rng.integers(len(raw) - n))
    fill = [bytes(rng.integers(0, 256, n, dtype=np.uint8)), b"\x00" * n, b"\xff" * n][rng.integers(3)]
    raw[i : i + n] = fill
    path.write_bytes(bytes(raw))
    return f"overwrite {n} bytes at {i}"


def _truncate(path: Path, rng: np.random.Generator) -> str:
    size = path.stat().st_size
    cut = int(rng.integers(0, size))
    os.truncate(path, cut)
    return f"truncate to {cut}"


def _forge_heap(path: Path, rng: np.random.Generator) -> str:
    """Forge the global heap (where variable-length strings live): a collection's size, an object's size or index,
    or a heap id's length (the 4 bytes before each reference to the collection)."""
    raw = bytearray(path.read_bytes())
    starts = [i for i in range(len(raw) - 4) if raw[i : i + 4] == b"GCOL"]
    if not starts:
        return _flip_bytes(path, rng)
    at = starts[rng.integers(len(starts))]
    choice = int(rng.integers(5))
    absurd = [0, 1, 7, 2**31 - 1, 2**32 - 1, 2**63, len(raw) * 2][rng.integers(7)]
    if choice == 0:  # the collection's size
        raw[at + 8 : at + 16] = struct.pack("<Q", absurd % 2**64)
        what = "collection size"
    elif choice in (1, 2):  # an object's header (index, refs, size) inside the collection
        objs = []
        p = at + 16
        size = struct.unpack("<Q", raw[at + 8 : at + 16])[0]
        while p + 16 <= min(at + size, len(raw)) and len(objs) < 64:
            idx, obj_size = struct.unpack("<H", raw[p : p + 2])[0], struct.unpack("<Q", raw[p + 8 : p + 16])[0]
            objs.append(p)
            if idx == 0:
                break
            p += 16 + ((obj_size + 7) & ~7)
        p = objs[rng.integers(len(objs))] if objs else at + 16
        if choice == 1:
            raw[p + 8 : p + 16] = struct.pack("<Q", absurd % 2**64)
            what = "object size"
        else:
            raw[p : p + 2] = struct.pack("<H", int(rng.choice([0, 1, 2**16 - 1])))
            what = "object index"
    else:  # heap ids referring to this collection: length (4 bytes) + address (8) + index (4)
        needle = struct.pack("<Q", at)
        refs = [i for i in range(4, len(raw) - 12) if raw[i : i + 8] == needle]
        if not refs:
            return _flip_bytes(path, rng)
        i = refs[rng.integers(len(refs))]
        if choice == 3:
            raw[i - 4 : i] = struct.pack("<I", absurd % 2**32)
            what = "heap id length"
        else:
            raw[i + 8 : i + 12] = struct.pack("<I", int(rng.choice([0, 999, 2**32 - 1])))
            what = "heap id index"
    path.write_bytes(bytes(raw))
    return f"heap {what} = {absurd}"


MUTATIONS: dict[str, Callable[[Path, np.random.Generator], str]] = {
    "flip_bits": _flip_bytes,
    "overwrite": _overwrite_run,
    "truncate": _truncate,
    "forge_heap": _forge_heap,
    "attr_type": _structural(_flip_attr),
    "dataset": _structural(_replace_dataset),
    "drop": _structural(_drop),
    "group_to_dataset": _structural(_group_to_dataset),
    "rename": _structural(_rename_member),
}


# -- loading in a forked child --------------------------------------------------------------------

def _load(path: Path, loader: str) -> str:
    """Run one loader on ``path``; returns a short description of what it gave."""
    if loader == "load_network":
        from spikebridge.snn.network import load_network

        return repr(load_network(path))
    if loader == "load_graph":
        from spikebridge.ir.serialize import load_graph

        return repr(load_graph(path))
    if loader == "load_model":
        from spikebridge.importers.registry import load_model

        return repr(load_model(path))
    if loader == "cli":
        from spikebridge.cli import main

        err = io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            status = main(["inspect", str(path)])
        text = err.getvalue()
        if status == 0:
            return "exit 0"
        if status != 1 or text.count("\n") != 1 or not text.startswith("spikebridge: error: "):
            raise AssertionError(f"CLI exit {status}: {text.strip()[:300]!r}")
        raise _CliError(text.strip())
    raise ValueError(loader)


class _CliError(Exception):
    pass


@dataclass
class Outcome:
    seed: int
    base: str
    mutation: str
    what: str
    loader: str
    result: str  # ok, clean, bad, hang, crash
    detail: str = ""


def _child(path: Path, loader: str, wfd: int) -> None:  # pragma: no cover - runs in the child
    from spikebridge.errors import SpikebridgeError

    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_BYTES, MEMORY_BYTES))
    try:
        detail = _load(path, loader)
        result = "ok"
    except (SpikebridgeError, _CliError) as err:
        result, detail = "clean", f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
    except BaseException as err:  # noqa: BLE001 - everything else is what we look for
        result, detail = "bad", f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
    os.write(wfd, json.dumps({"result": result, "detail": detail[:400]}).encode())
    os._exit(0)


def run_one(path: Path, loader: str, timeout: float = TIMEOUT_S) -> tuple[str, str]:
    """Load ``path`` with ``loader`` in a forked child; ``(result, detail)``."""
    rfd, wfd = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        os.close(rfd)
        try:
            _child(path, loader, wfd)
        finally:
            os._exit(99)
    os.close(wfd)
    deadline = time.monotonic() + timeout
    status = None
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        time.sleep(0.002)
    else:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        os.close(rfd)
        return "hang", f"killed after {timeout:g} s"
    with os.fdopen(rfd, "rb") as r:
        raw = r.read()
    if os.WIFSIGNALED(status):
        return "crash", f"signal {os.WTERMSIG(status)}"
    if not raw:
        return "crash", f"exit status {os.waitstatus_to_exitcode(status)} without a result"
    doc = json.loads(raw)
    return doc["result"], doc["detail"]


LOADERS = {"snn": ("load_network", "cli"), "ann": ("load_graph", "load_model", "cli")}


def make_case(bases: dict[str, Path], seed: int, directory: Path) -> tuple[Path, str, str, str]:
    """The damaged file of case ``seed``: ``(path, base, mutation, what was done)``."""
    rng = np.random.default_rng(seed)
    base = sorted(bases)[rng.integers(len(bases))]
    mutation = sorted(MUTATIONS)[rng.integers(len(MUTATIONS))]
    path = directory / f"case{seed}.h5"
    shutil.copy(bases[base], path)
    try:
        what = MUTATIONS[mutation](path, rng)
    except Exception as err:  # noqa: BLE001 - h5py refusing to damage an already odd file: try bytes instead
        shutil.copy(bases[base], path)
        mutation, what = "flip_bits", f"{_flip_bytes(path, rng)} (after {type(err).__name__})"
    return path, base, mutation, what


def run_cases(
    seeds: range | list[int], directory: Path, *, timeout: float = TIMEOUT_S, all_loaders: bool = False,
    kinds: tuple[str, ...] | None = None,
) -> list[Outcome]:
    """Make and load one damaged file per seed (with one of its base kind's loaders, or all of them),
    from the bases named in ``kinds`` (default all, see :func:`write_bases`)."""
    import spikebridge.cli  # imported once here, not in every forked child
    import spikebridge.importers.registry  # noqa: F401

    directory.mkdir(parents=True, exist_ok=True)
    bases = write_bases(directory / "bases")
    if kinds is not None:
        bases = {k: v for k, v in bases.items() if k in kinds}
    outcomes = []
    for seed in seeds:
        path, base, mutation, what = make_case(bases, seed, directory)
        loaders = LOADERS[base.split("_")[0]]
        for loader in loaders if all_loaders else loaders[seed % len(loaders) : seed % len(loaders) + 1]:
            result, detail = run_one(path, loader, timeout)
            outcomes.append(Outcome(seed, base, mutation, what, loader, result, detail))
        path.unlink()
    return outcomes


def main(argv: list[str] | None = None) -> int:
    import argparse
    import tempfile

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=300)
    parser.add_argument("--first", type=int, default=0)
    parser.add_argument("--timeout", type=float, default=TIMEOUT_S)
    parser.add_argument("--all-loaders", action="store_true")
    parser.add_argument("--json", help="write every outcome here")
    parser.add_argument("--kinds", help="comma-separated bases (snn, ann, snn_legacy, ann_legacy, snn_previous, ann_previous)")
    args = parser.parse_args(argv)
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory() as d:
        outcomes = run_cases(range(args.first, args.first + args.cases), Path(d), timeout=args.timeout,
                             all_loaders=args.all_loaders, kinds=tuple(args.kinds.split(",")) if args.kinds else None)
    elapsed = time.monotonic() - t0
    kinds = sorted({o.mutation for o in outcomes})
    results = ("ok", "clean", "bad", "hang", "crash")
    print(f"{'mutation':18s}" + "".join(f"{r:>7s}" for r in results))
    for k in kinds:
        print(f"{k:18s}" + "".join(f"{sum(o.mutation == k and o.result == r for o in outcomes):7d}" for r in results))
    print(f"{'total':18s}" + "".join(f"{sum(o.result == r for o in outcomes):7d}" for r in results))
    print(f"{len(outcomes)} loads of {args.cases} cases in {elapsed:.1f} s")
    for o in outcomes:
        if o.result in ("bad", "hang", "crash"):
            print(f"  seed {o.seed} {o.base} {o.mutation} [{o.what}] {o.loader}: {o.result} {o.detail}")
    if args.json:
        Path(args.json).write_text(json.dumps([o.__dict__ for o in outcomes], indent=1))
    return 0 if all(o.result in ("ok", "clean") for o in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
