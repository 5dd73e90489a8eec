"""Fixed-point convolutions in the tensor engine: float32 sums (pushed or dense) with the exact path's spikes."""

from __future__ import annotations

import math
import os
import threading

import numpy as np
import pytest

import spikebridge.engines.tensor.arrays as arrays
import spikebridge.engines.tensor.compiled as compiled
import spikebridge.engines.tensor.layered as layered
from spikebridge.config import ConversionConfig, SimulationConfig
from spikebridge.conversion.convert import convert
from spikebridge.conversion.fixedpoint import grid_exponent, kernel_units
from spikebridge.engines.reference import simulate_reference
from spikebridge.engines.tensor.arrays import DenseConv32, DigitConv, PointwiseConv32, SparseConv
from spikebridge.importers.registry import load_model
from spikebridge.models import model_path
from spikebridge.run.simulate import simulate
from spikebridge.snn.kernels import SharedKernel

from .._optional import requires_torch
from .test_tensor import assert_same_spikes

pytest.importorskip("numba")


@pytest.fixture(scope="module")
def lenet():
    graph = load_model(model_path("mnist_lenet"))
    x = np.random.default_rng(3).random((6,) + tuple(graph.input_shape))
    return convert(graph, ConversionConfig(fixed_point=True), calibration=x), x


_DIGITS_PAY_OFF = arrays._digits_pay_off


@pytest.fixture(autouse=True)
def _any_cpu_runs_digits(monkeypatch):
    # DigitConv is chosen only on CPUs with int8 dot products (speed); its sums of 0/1 inputs are
    # exact on any CPU whose torch has oneDNN's int8 convolution, so the tests run it wherever that
    # is there (its paired form, exact only with dot products, still only where the CPU has them)
    monkeypatch.setattr(arrays, "_digits_pay_off", lambda torch: True)


def _has_onednn_int8() -> bool:
    try:
        import torch

        torch.ops.onednn.qconv2d_pointwise  # noqa: B018
    except Exception:  # no torch, or a build without oneDNN's int8 ops (not x86)
        return False
    return True


HAS_INT8 = _has_onednn_int8()
requires_int8 = pytest.mark.skipif(not HAS_INT8, reason="needs torch with oneDNN's int8 convolution (x86 builds)")


def _run(monkeypatch, snn, x, dense_above: float, push32: bool):
    monkeypatch.setattr(layered, "DENSE32_ABOVE", dense_above)
    monkeypatch.setattr(layered, "DIGITS_ABOVE", dense_above)
    monkeypatch.setattr(layered, "FIXED_POINT_PUSH", push32)
    return simulate(snn, x, SimulationConfig(n_steps=24, engine="tensor", device="cpu", record=("all",)))


def _assert_same(want, got):
    assert_same_spikes(want, got, min_spikes=5000)
    assert np.array_equal(want.output_potential_t, got.output_potential_t)


def test_float32_pushed_sums_of_a_fixed_point_lenet_give_the_float64_spikes(monkeypatch, lenet):
    snn, x = lenet
    assert compiled.available()
    seen = []
    real = compiled.conv_if
    monkeypatch.setattr(compiled, "conv_if", lambda links, *a: seen.append(links[0][2].dtype) or real(links, *a))
    want = _run(monkeypatch, snn, x, dense_above=2.0, push32=False)
    assert seen and set(seen) == {np.dtype(np.float64)}
    seen.clear()
    got = _run(monkeypatch, snn, x, dense_above=2.0, push32=True)
    assert seen and set(seen) == {np.dtype(np.float32)}  # the float32 push did run
    assert sum(int(c.sum()) for c in want.counts.values()) > 5000
    _assert_same(want, got)
    ref = simulate_reference(snn, x, 24, record=("all",))
    for k in ref.counts:
        assert np.array_equal(ref.counts[k], got.counts[k]), k


@requires_torch
@pytest.mark.parametrize("digits", [True, False], ids=["int8-digits", "float32-conv2d"])
def test_dense_float32_convolutions_of_a_fixed_point_lenet_give_the_float64_spikes(monkeypatch, lenet, digits):
    snn, x = lenet
    if digits and not HAS_INT8:
        pytest.skip("needs torch with oneDNN's int8 convolution (x86 builds)")
    monkeypatch.setattr(arrays, "INT8_DIGITS", digits)
    forms = set()
    real_join = layered.LayerMajor._dense_join
    monkeypatch.setattr(layered.LayerMajor, "_dense_join",
                        lambda self, links, *a: forms.update(type(lk.prepared.dense32) for _, lk in links if lk.kernel is not None)
                        or real_join(self, links, *a))
    calls = []
    real = layered.LayerMajor._dense_if
    monkeypatch.setattr(layered.LayerMajor, "_dense_if", lambda self, *a: calls.append(a[-1]) or real(self, *a))
    want = _run(monkeypatch, snn, x, dense_above=2.0, push32=False)
    assert not calls
    monkeypatch.setattr(layered, "_DENSE_ROWS", 8)  # chunks of 2 samples (blocks of 4 steps)
    got = _run(monkeypatch, snn, x, dense_above=0.0, push32=True)
    assert len(calls) >= 6  # every block of the 16 -> 32 convolution (24 steps in blocks of 4)
    assert forms == {DigitConv if digits else DenseConv32}
    _assert_same(want, got)


@requires_torch
@pytest.mark.parametrize(("digits", "bits"), [(True, None), (True, 8), (True, 16), (False, None)],
                         ids=["int8-digits", "int8-one-digit", "int8-16-bit", "float32-conv2d"])
def test_dense_residual_joins_of_a_fixed_point_resnet_give_the_float64_spikes(monkeypatch, digits, bits):
    # ResNet-8's joins: a 3x3 convolution plus the identity shortcut (a gather) or a strided 1x1
    # convolution (a second fixed-point kernel); with 8-bit weights each runs as one int8 digit,
    # with 16-bit weights as one convolution of paired inputs (two digits without dot products)
    if digits and not HAS_INT8:
        pytest.skip("needs torch with oneDNN's int8 convolution (x86 builds)")
    monkeypatch.setattr(arrays, "INT8_DIGITS", digits)
    graph = load_model(model_path("mnist_lenet").with_name("fmnist_resnet8.h5"))
    x = np.random.default_rng(4).random((4,) + tuple(graph.input_shape))
    snn = convert(graph, ConversionConfig(fixed_point=True, weight_bits=bits), calibration=x)
    if digits:
        forms = {(d.n_digits, d.paired) for p in snn.projections.values() if p.operator is not None and p.operator.groups == 1
                 for d in [DigitConv.build(p.operator)]}
        paired = _dot_products()
        assert forms == ({(1, False)} if bits == 8 else {(1, True) if paired else (2, False)} if bits == 16 else {(3, False)})
    seconds = []
    real = layered.LayerMajor._dense_if
    monkeypatch.setattr(layered.LayerMajor, "_dense_if", lambda self, *a: seconds.append(a[-1]) or real(self, *a))
    want = _run(monkeypatch, snn, x, dense_above=2.0, push32=False)
    got = _run(monkeypatch, snn, x, dense_above=0.0, push32=True)
    kinds = {None if sec is None else "conv" if sec[1].kernel is not None else sec[1].prepared[0] for sec in seconds}
    assert kinds == {None, "conv", "gather"}
    assert sum(int(c.sum()) for c in want.counts.values()) > 5000
    _assert_same(want, got)


@requires_int8
def test_residual_joins_whose_digit_scan_declines_are_summed_then_scanned(monkeypatch):
    # the fallback of LayerMajor._dense_if: the digit sums, the second link's sums (the gather's
    # too), then the float64 scan; the same spikes as the fused scan gives
    graph = load_model(model_path("mnist_lenet").with_name("fmnist_resnet8.h5"))
    x = np.random.default_rng(4).random((4,) + tuple(graph.input_shape))
    snn = convert(graph, ConversionConfig(fixed_point=True), calibration=x)
    want = _run(monkeypatch, snn, x, dense_above=2.0, push32=False)
    declined = []
    monkeypatch.setattr(DigitConv, "scan_if", lambda self, *a: declined.append(type(a[-1]).__name__) and False)
    got = _run(monkeypatch, snn, x, dense_above=0.0, push32=True)
    assert {"tuple", "ndarray", "NoneType"} <= set(declined)  # the gather, a convolution's sums, none
    _assert_same(want, got)


def _grid(k: np.ndarray) -> np.ndarray:
    e = grid_exponent(float(np.abs(k).reshape(k.shape[0], -1).sum(axis=1).max()))
    return np.ldexp(np.rint(np.ldexp(k, e)), -e)


def test_only_fixed_point_kernels_take_the_float32_paths(rng):
    k = rng.normal(size=(8, 4, 3, 3))
    shape = (4, 9, 9)
    assert SparseConv(SharedKernel(k, shape, padding=(1, 1))).wf32 is None
    fixed = SparseConv(SharedKernel(_grid(k), shape, padding=(1, 1)))
    assert fixed.wf32 is not None and fixed.wf32.dtype == np.float32
    off = _grid(k)
    off[0, 0, 0, 0] += math.ldexp(1.0, -40)  # one weight off the grid
    assert SparseConv(SharedKernel(off, shape, padding=(1, 1))).wf32 is None


def _rounding(cls, monkeypatch):
    real = cls.__call__

    def rounding(self, spikes):
        out = real(self, spikes)
        out[0, 0] = np.nextafter(out[0, 0], np.float32(np.inf))  # one sum one float32 step off
        return out

    monkeypatch.setattr(cls, "__call__", rounding)


@requires_torch
def test_a_dense_convolution_that_rounds_is_refused_by_its_probe(rng, monkeypatch):
    op = SharedKernel(_grid(rng.normal(size=(8, 4, 3, 3))), (4, 9, 9), padding=(1, 1))
    if HAS_INT8:
        assert isinstance(SparseConv(op).dense32, DigitConv)
        _rounding(DigitConv, monkeypatch)
    assert isinstance(SparseConv(op).dense32, DenseConv32)  # the next form whose probe passes
    _rounding(DenseConv32, monkeypatch)
    assert SparseConv(op).dense32 is None
    monkeypatch.setattr(arrays, "INT8_DIGITS", False)
    assert SparseConv(op).dense32 is None


@requires_int8
@pytest.mark.parametrize(("shape", "out_ch", "k", "stride", "padding", "scale"), [
    ((4, 9, 9), 8, 3, 1, 1, 1.0),  # VGG-like, 3 digits
    ((3, 10, 10), 6, 3, 2, 1, 1.0),  # strided (ResNet's downsampling)
    ((5, 7, 7), 4, 1, 2, 0, 1.0),  # strided 1x1 shortcut
    ((2, 8, 8), 3, 5, 1, 0, 1e-3),  # one dominant weight: 4 digits
    ((2, 6, 6), 3, 3, 1, 1, 0.0),  # all zero
])
def test_int8_digit_convolutions_give_the_ordered_float64_sums(rng, shape, out_ch, k, stride, padding, scale):
    kern = rng.normal(size=(out_ch, shape[0], k, k)) * (scale if scale else 0.0)
    if scale and scale < 1:
        kern[0, 0, 0, 0] = 1.0  # the other weights ~1e-3 of it: the largest needs 4 digits
    op = SharedKernel(_grid(kern) if scale else kern, shape, stride=(stride, stride), padding=(padding, padding))
    digits = DigitConv.build(op)
    assert digits is not None
    grid = kernel_units(op.kernel)  # the coarsest grid the kernel is on
    assert grid is not None
    units = np.abs(grid[0])
    assert not digits.paired  # none of these kernels' units fit the paired range
    assert digits.n_digits == (4 if units.max() > 8_355_711 else 3 if units.max() > 32_639 else 2 if units.max() > 127 else 1)
    _assert_digits_exact(digits, op, rng)


def _assert_digits_exact(digits, op, rng):
    """``digits``' sums are the events' sums in pre-index order, and its fused scan is if_scan's over them."""
    sc = SparseConv(op)
    x = rng.random((40, op.n_pre)) < np.linspace(0.0, 1.0, 40)[:, None]  # from no spikes to all
    sc.dense_above = 2.0
    want = sc(x)  # the events in pre-index order
    got = digits(x)
    assert got.dtype == np.float32 and np.array_equal(got.astype(np.float64), want)
    # the fused scan: the same spikes and potentials as if_scan over those arrivals
    tb, n_r = 4, 10
    theta = float(np.abs(want).max()) / 3 or 1.0
    v0 = rng.random((n_r, op.n_post)) * theta
    drive = rng.random(op.n_post) * theta / 4
    v1, s1 = v0.copy(), np.empty((tb, n_r, op.n_post), dtype=bool)
    assert compiled.if_scan(v1, drive, theta, [got.reshape(tb, n_r, -1)], s1, None)
    v2, s2 = v0.copy(), np.empty_like(s1)
    assert digits.scan_if(x, v2, drive, theta, s2)
    assert s1.any() and np.array_equal(s1, s2) and np.array_equal(v1, v2)
    # with a gather as the second link (an identity or pooling shortcut): read by the scan, summed
    # in the numpy gather's order and added to the digits' sums before the scan
    # (two taps from anywhere; one tap from the same index, an identity shortcut, read in order)
    for n_pre, idx in ((50, rng.integers(0, 50, size=(2, op.n_post))), (op.n_post, np.arange(op.n_post)[None])):
        x2 = rng.random((tb, n_r, n_pre)) < 0.4
        w = rng.normal(size=idx.shape) * theta
        sums = sum(x2[:, :, idx[f]] * w[f] for f in range(idx.shape[0]))
        v3, s3 = v0.copy(), np.empty_like(s1)
        assert compiled.if_scan(v3, drive, theta, [got.reshape(tb, n_r, -1).astype(np.float64) + sums], s3, None)
        v4, s4 = v0.copy(), np.empty_like(s1)
        assert digits.scan_if(x, v4, drive, theta, s4, ("gather", x2, idx, w))
        assert s3.any() and not np.array_equal(s3, s1) and np.array_equal(s3, s4) and np.array_equal(v3, v4)


def _dot_products() -> bool:
    import torch

    return arrays._int8_dot_products(torch)


@pytest.mark.skipif(not (HAS_INT8 and _dot_products()), reason="the paired form needs a CPU with int8 dot products")
def test_paired_inputs_give_the_ordered_float64_sums(rng):
    # 16-bit weights: each unit a + 255·b on the spikes and 255 × the spikes; a channel reaching
    # 32767 (past a + 255·b's top, 32512) runs negated, one reaching -32768 as it is
    units = rng.integers(-20_000, 20_001, size=(6, 5, 3, 3))
    units[0, 0, 0, 0], units[1, 0, 0, 0], units[2] = 32_767, -32_768, rng.integers(-127, 128, size=(5, 3, 3))
    op = SharedKernel(np.ldexp(units.astype(np.float64), -22), (5, 8, 8), padding=(1, 1))
    assert np.array_equal(kernel_units(op.kernel)[0], units)
    digits = DigitConv.build(op)
    assert digits.paired and digits.n_digits == 1
    assert np.array_equal(np.sign(digits._scales.numpy()), [-1, 1, 1, 1, 1, 1])
    assert digits._w.shape == (6, 10, 3, 3)
    _assert_digits_exact(digits, op, rng)
    # a channel past the range both ways: base-256 digits (32767 needs three)
    units[0, 1, 0, 0] = -32_768
    op = SharedKernel(np.ldexp(units.astype(np.float64), -22), (5, 8, 8), padding=(1, 1))
    digits = DigitConv.build(op)
    assert not digits.paired and digits.n_digits == 3
    _assert_digits_exact(digits, op, rng)


@requires_int8
def test_a_dense_form_that_fails_to_run_is_skipped(rng, monkeypatch):
    op = SharedKernel(_grid(rng.normal(size=(8, 4, 3, 3))), (4, 9, 9), padding=(1, 1))

    def refuses(self, spikes):
        raise RuntimeError("oneDNN: could not create a primitive")

    monkeypatch.setattr(DigitConv, "__call__", refuses)
    assert isinstance(SparseConv(op).dense32, DenseConv32)


@requires_int8
def test_a_cpu_without_int8_dot_products_keeps_float32_conv2d(rng, monkeypatch):
    op = SharedKernel(_grid(rng.normal(size=(8, 4, 3, 3))), (4, 9, 9), padding=(1, 1))
    monkeypatch.setattr(arrays, "_digits_pay_off", _DIGITS_PAY_OFF)  # the fixture's patch undone: asks the CPU
    monkeypatch.setattr(arrays, "_int8_dot_products", lambda torch: False)
    assert DigitConv.build(op) is None
    assert isinstance(SparseConv(op).dense32, DenseConv32)


@requires_int8
def test_int8_digits_without_the_compiled_kernels_add_in_numpy(rng, monkeypatch):
    op = SharedKernel(_grid(rng.normal(size=(8, 4, 3, 3))), (4, 9, 9), padding=(1, 1))
    digits = DigitConv.build(op)
    x = rng.random((16, op.n_pre)) < 0.3
    with_numba = digits(x)
    monkeypatch.setattr(compiled, "ENABLED", False)
    assert not compiled.available()
    assert np.array_equal(digits(x), with_numba)
    assert not digits.scan_if(x, np.zeros((4, op.n_post)), 0.0, 1.0, np.empty((4, 4, op.n_post), dtype=bool))


@pytest.mark.slow
def test_a_fixed_point_network_compiles_nothing_in_its_run(monkeypatch, lenet, rng):
    # fresh kernels: preparing a fixed-point kernel compiles the float32 forms; with every form
    # compiled, the runs compile nothing more
    monkeypatch.setattr(compiled, "_tried", False)
    monkeypatch.setattr(compiled, "_kernels", None)
    monkeypatch.setattr(compiled, "ENABLED", True)
    assert compiled.available() and not set(compiled.FIXED_POINT_FORMS) & compiled._ready
    SparseConv(SharedKernel(_grid(rng.normal(size=(4, 2, 3, 3))), (2, 6, 6), padding=(1, 1)))
    assert set(compiled.FIXED_POINT_FORMS) <= compiled._ready
    assert compiled.available(*compiled.FORMS)
    warm = {name: list(k.signatures) for name, k in compiled._kernels.items()}
    snn, x = lenet
    for dense_above in (0.1, 2.0):
        rec = _run(monkeypatch, snn, x, dense_above=dense_above, push32=True)
        assert sum(int(c.sum()) for c in rec.counts.values()) > 5000
    # ResNet-8: residual joins with a gather read by the digit scan, a depthwise global pool
    graph = load_model(model_path("mnist_lenet").with_name("fmnist_resnet8.h5"))
    xr = rng.random((3,) + tuple(graph.input_shape))
    rec = _run(monkeypatch, convert(graph, ConversionConfig(weight_bits=8), calibration=xr), xr, dense_above=0.0, push32=True)
    assert sum(int(c.sum()) for c in rec.counts.values()) > 5000
    assert {name: list(k.signatures) for name, k in compiled._kernels.items()} == warm


def test_fixed_point_dense_matrices_are_float32_gemms_with_the_ordered_sums(rng):
    import scipy.sparse as sp

    from spikebridge.engines.tensor.arrays import NumpyArrays, ordered_matmul

    w = rng.normal(size=(40, 300))  # (n_post, n_pre), dense
    e = grid_exponent(float(np.abs(w).sum(axis=1).max()))
    fixed = sp.csr_matrix(np.ldexp(np.rint(np.ldexp(w, e)), -e))
    xp = NumpyArrays()
    assert xp.matrix(sp.csr_matrix(w))[0] == "dense"
    prepared = xp.matrix(fixed)
    assert prepared[0] == "dense32" and prepared[1].dtype == np.float32
    x = rng.random((64, 300)) < 0.4
    got = xp.matmul(prepared, x)
    assert got.dtype == np.float64
    assert np.array_equal(got, ordered_matmul(x.astype(np.float64), fixed.toarray().T))



@requires_torch
def test_dense_float32_convolutions_of_a_fixed_point_cnn_equal_brian2(monkeypatch):
    # the canonical simulator on the same rounded weights: Brian2 adds each weight onto v in turn
    from spikebridge.datasets import load_dataset

    digits, _ = load_dataset("digits:test")
    snn = convert(load_model(model_path("digits_cnn")), ConversionConfig(v_init=0.5, fixed_point=True),
                  calibration=digits[:200])
    x = digits[:3]
    calls = []
    real = layered.LayerMajor._dense_if
    monkeypatch.setattr(layered.LayerMajor, "_dense_if", lambda self, *a: calls.append(1) or real(self, *a))
    monkeypatch.setattr(layered, "DENSE32_ABOVE", 0.0)
    monkeypatch.setattr(layered, "DIGITS_ABOVE", 0.0)
    ten = simulate(snn, x, SimulationConfig(n_steps=48, engine="tensor", device="cpu", record=("all",)))
    assert calls  # the dense path ran
    b2 = simulate(snn, x, SimulationConfig(n_steps=48, target="numpy", record=("all",)))
    assert_same_spikes(ten, b2, min_spikes=2000)


@pytest.mark.parametrize(("shape", "out_ch", "stride"), [((16, 14, 14), 32, 2), ((5, 7, 7), 3, 1), ((4, 9, 8), 6, 3)])
def test_pointwise_convolutions_give_the_ordered_float64_sums(rng, shape, out_ch, stride):
    # ResNet's strided 1x1 shortcuts: one batched float32 matmul, chosen before int8 digits
    op = SharedKernel(_grid(rng.normal(size=(out_ch, shape[0], 1, 1))), shape, stride=(stride, stride))
    sc = SparseConv(op)
    assert isinstance(sc.dense32, PointwiseConv32)
    x = rng.random((30, op.n_pre)) < np.linspace(0.0, 1.0, 30)[:, None]
    sc.dense_above = 2.0
    want = sc(x)  # the events in pre-index order
    got = sc.dense32(x)
    assert got.dtype == np.float32 and np.count_nonzero(got) > got.size // 2
    assert np.array_equal(got.astype(np.float64), want)
    # a padded 1x1 or a 3x3 kernel is not pointwise
    assert PointwiseConv32.build(SharedKernel(op.kernel, shape, padding=(1, 1))) is None
    assert PointwiseConv32.build(SharedKernel(_grid(rng.normal(size=(2, shape[0], 3, 3))), shape)) is None


def test_a_network_of_8_bit_weights_spikes_as_brian2_does():
    # the quantised network is a network like any other: the tensor engine (int8 digits where the
    # CPU has them) and Brian2 give the same spike counts
    graph = load_model(model_path("digits_cnn"))
    x = np.random.default_rng(5).random((3,) + tuple(graph.input_shape))
    snn = convert(graph, ConversionConfig(weight_bits=8), calibration=x)
    tensor = simulate(snn, x, SimulationConfig(n_steps=30, engine="tensor", device="cpu"))
    brian2 = simulate(snn, x, SimulationConfig(n_steps=30, target="numpy"))
    assert sum(int(c.sum()) for c in tensor.counts.values()) > 2000
    for name in brian2.counts:
        assert np.array_equal(tensor.counts[name], brian2.counts[name]), name
    assert np.array_equal(tensor.output_counts_t, brian2.output_counts_t)


@requires_int8
@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="OpenMP starts a thread with one thread per core: one core hides the bug")
def test_batch_parts_run_onednn_on_one_thread_each(monkeypatch, lenet):
    # OpenMP keeps its thread count per thread and starts a new one at one per core, so a batch
    # part's oneDNN convolution ran on every core (two parts: four threads on two cores) while
    # torch.get_num_threads() said 1.  Asked inside each digit convolution of a 2-part run:
    threadpoolctl = pytest.importorskip("threadpoolctl")
    import torch

    torch_dir = os.path.dirname(torch.__file__)
    snn, x = lenet
    seen = []
    real = DigitConv._digits

    def digits(self, spikes):
        if threading.current_thread() is not threading.main_thread():  # a part's (the main thread builds the network)
            seen.extend(i["num_threads"] for i in threadpoolctl.threadpool_info()
                        if i["user_api"] == "openmp" and i["filepath"].startswith(torch_dir))  # not scikit-learn's
        return real(self, spikes)

    monkeypatch.setattr(DigitConv, "_digits", digits)
    monkeypatch.setattr(layered, "DIGITS_ABOVE", 0.0)
    rec = simulate(snn, x, SimulationConfig(n_steps=24, engine="tensor", device="cpu", threads=2))
    assert sum(int(c.sum()) for c in rec.counts.values()) > 5000 and seen
    assert set(seen) == {1}, seen
