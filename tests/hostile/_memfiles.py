"""Small files that expand hugely when read (issue 19, part 3), and a peak-RSS probe for reading them."""

from __future__ import annotations

import gzip
import io
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import h5py
import numpy as np

ROOT = Path(__file__).resolve().parents[2]

_PROBE = r"""
import resource, sys, json
import numpy as np
import spikebridge.datasets, spikebridge.importers.registry, spikebridge.errors
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
outcome = "ok"
try:
    exec(sys.argv[1])
except spikebridge.errors.SpikebridgeError as err:
    outcome = "refused: " + str(err).splitlines()[0]
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps({"base": base, "peak": peak, "outcome": outcome}))
"""


def peak_rss(code: str, budget: float) -> dict:
    """Run ``code`` (``path`` bound by the caller's text) in a fresh interpreter with the array budget
    ``budget`` bytes; return its RSS after imports (``base``), its peak RSS and the outcome."""
    env = dict(os.environ, SPIKEBRIDGE_MAX_ARRAY_BYTES=str(int(budget)), PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-c", _PROBE, code], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def npz_with_unused_member(path: Path, declared_bytes: int) -> Path:
    """``x`` (3 x 2) and ``y`` used; ``junk`` an unused member of ``declared_bytes`` zeros (deflated to ~1/1000)."""
    n = declared_bytes // 8
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as z:
        for name, arr in (("x", np.ones((3, 2))), ("y", np.arange(3))):
            buf = io.BytesIO()
            np.lib.format.write_array(buf, arr)
            z.writestr(name + ".npy", buf.getvalue())
        with z.open("junk.npy", "w", force_zip64=True) as fh:
            np.lib.format.write_array_header_2_0(fh, {"descr": "<f8", "fortran_order": False, "shape": (n,)})
            block = bytes(1 << 22)
            left = n * 8
            while left:
                fh.write(block[: min(left, len(block))])
                left -= min(left, len(block))
    return path


def npz_declaring(path: Path, shape: tuple[int, ...]) -> Path:
    """An ``x`` whose header declares ``shape`` (terabytes) over a few bytes of data."""
    with zipfile.ZipFile(path, "w") as z:
        buf = io.BytesIO()
        np.lib.format.write_array_header_2_0(buf, {"descr": "<f8", "fortran_order": False, "shape": shape})
        z.writestr("x.npy", buf.getvalue() + bytes(64))
    return path


def gz_idx(path: Path, n_values: int) -> Path:
    """A gzipped IDX images file of ``n_values`` zero pixels (n, 100, 100)."""
    n = n_values // 10_000
    head = (2051).to_bytes(4, "big") + n.to_bytes(4, "big") + (100).to_bytes(4, "big") + (100).to_bytes(4, "big")
    with gzip.open(path, "wb", compresslevel=1) as fh:
        fh.write(head)
        block = bytes(10_000 * 100)
        for _ in range(n // 100):
            fh.write(block)
        fh.write(bytes(10_000 * (n % 100)))
    return path


def _fill(ds: h5py.Dataset) -> None:
    """Write zeros chunk by chunk (stored, so not a forged size; ~1000:1 compressed); a broadcast scalar is very slow."""
    step = ds.chunks[0]
    block = np.zeros((step, *ds.shape[1:]), dtype=ds.dtype)
    for start in range(0, ds.shape[0], step):
        stop = min(start + step, ds.shape[0])
        ds[start:stop] = block[: stop - start]


def keras_v3_dense(path: Path, n_in: int, units: int = 3) -> Path:
    """A ``.keras`` archive of one Dense layer whose kernel (n_in x units float32 zeros) is gzip-compressed."""
    config = {"class_name": "Sequential", "config": {"name": "seq", "layers": [
        {"class_name": "InputLayer", "config": {"batch_shape": [None, n_in], "name": "input"}},
        {"class_name": "Dense", "config": {"name": "dense", "units": units, "activation": "linear", "use_bias": True}},
    ]}}
    h5 = path.with_suffix(".weights.tmp")
    with h5py.File(h5, "w") as f:
        g = f.create_group("layers/dense/vars")
        g.create_dataset("0", shape=(n_in, units), dtype="<f4", chunks=(min(n_in, 1 << 18), units), compression="gzip")
        g.create_dataset("1", data=np.zeros(units, dtype="<f4"))
        _fill(g["0"])
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr("config.json", json.dumps(config))
        z.write(h5, "model.weights.h5")
    h5.unlink()
    return path


def keras_h5_dense(path: Path, n_in: int, units: int = 3) -> Path:
    """A legacy Keras ``.h5`` of one Dense layer whose kernel (float32 zeros) is gzip-compressed."""
    config = {"class_name": "Sequential", "config": {"name": "seq", "layers": [
        {"class_name": "InputLayer", "config": {"batch_shape": [None, n_in], "name": "input"}},
        {"class_name": "Dense", "config": {"name": "dense", "units": units, "activation": "linear", "use_bias": True}},
    ]}}
    with h5py.File(path, "w") as f:
        f.attrs["model_config"] = json.dumps(config).encode()
        g = f.create_group("model_weights/dense")
        g.attrs["weight_names"] = [b"dense/kernel:0", b"dense/bias:0"]
        ds = g.create_dataset("dense/kernel:0", shape=(n_in, units), dtype="<f4", chunks=(min(n_in, 1 << 18), units),
                              compression="gzip")
        _fill(ds)
        g["dense/bias:0"] = np.zeros(units, dtype="<f4")
    return path


def network_h5_big_projection(path: Path, n: int) -> Path:
    """A network file (no checksums, as older versions wrote) whose projection 'fc1_fc2' declares ``n``
    synapses of gzip-compressed zeros: int32 indices and float64 weights, stored (not a forged size)."""
    from spikebridge.config import ConversionConfig
    from spikebridge.conversion.convert import convert
    from tests.conftest import make_tiny_mlp, strip_checksums

    x = np.random.default_rng(3).uniform(0, 1, (6, 6))
    convert(make_tiny_mlp(), ConversionConfig(percentile=100.0), calibration=x).save(path)
    with h5py.File(path, "a") as f:
        strip_checksums(f)
        g = f["projections/fc1_fc2"]
        for key, dtype in (("pre_index", "<i4"), ("post_index", "<i4"), ("weight", "<f8")):
            del g[key]
            _fill(g.create_dataset(key, shape=(n,), dtype=dtype, chunks=(min(n, 1 << 20),), compression="gzip"))
    return path


def nir_dense(path: Path, n_in: int, n_out: int) -> Path:
    """A NIR graph Input -> Affine (n_out x n_in ones, float32) -> IF -> Output, as ``nir.write`` writes it."""
    import nir

    g = nir.NIRGraph(
        nodes={"in": nir.Input(input_type=np.array([n_in])),
               "fc": nir.Affine(weight=np.ones((n_out, n_in), np.float32), bias=np.zeros(n_out, np.float32)),
               "lif": nir.IF(r=np.ones(n_out), v_threshold=np.ones(n_out)),
               "out": nir.Output(output_type=np.array([n_out]))},
        edges=[("in", "fc"), ("fc", "lif"), ("lif", "out")])
    nir.write(str(path), g)
    return path
