"""The compiled (numba) event kernels give the numpy/scipy path's floats, bit for bit.

Each kernel is compared with the product it replaces, on weights chosen so that any other
summation order changes the last bits (a weight of 1 among weights of 2**-53); then whole shipped
networks run with the kernels on and off must give the same spike counts and potentials.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

import spikebridge.engines.tensor.compiled as compiled
from spikebridge.config import SimulationConfig
from spikebridge.conversion.convert import convert
from spikebridge.engines.tensor.arrays import NumpyArrays, SparseConv
from spikebridge.engines.tensor.layered import LayerMajor
from spikebridge.importers.registry import load_model
from spikebridge.models import model_path
from spikebridge.run.simulate import simulate
from spikebridge.snn.kernels import SharedKernel

from .test_tensor import assert_same_spikes

pytest.importorskip("numba")


def order_sensitive(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Weights whose sums change with the order of addition: normals, ones and multiples of 2**-53."""
    w = rng.normal(size=shape)
    pick = rng.random(shape)
    w[pick < 0.3] = np.ldexp(rng.integers(1, 4, size=int((pick < 0.3).sum())).astype(np.float64), -53)
    w[(pick >= 0.3) & (pick < 0.4)] = 1.0
    w[(pick >= 0.4) & (pick < 0.45)] = -0.0
    return w


@pytest.fixture
def kernels_on(monkeypatch):
    monkeypatch.setattr(compiled, "ENABLED", True)
    assert compiled.available()


def _numpy(fn, *a):
    saved = compiled.ENABLED
    compiled.ENABLED = False
    try:
        return fn(*a)
    finally:
        compiled.ENABLED = saved


def test_order_sensitive_weights_do_see_the_order(rng):
    # the premise of every comparison below: these weights tell summation orders apart
    w = order_sensitive(rng, (400,))
    assert not np.array_equal(np.cumsum(w)[-1], np.cumsum(w[::-1])[-1])


@pytest.mark.parametrize("o,c,hw,k,stride,pad,density", [
    (32, 16, (12, 12), (5, 5), (1, 1), (0, 0), 0.14),   # the MNIST LeNet's second convolution
    (8, 3, (9, 7), (3, 3), (1, 1), (1, 1), 0.5),        # padded, not square
    (6, 4, (11, 10), (3, 2), (2, 3), (1, 0), 0.3),      # strides and uneven kernels
    (5, 2, (6, 6), (1, 1), (2, 2), (0, 0), 0.9),        # 1×1 projection, dense input
    (4, 3, (5, 5), (3, 3), (1, 1), (2, 2), 0.0),        # silent input: all outputs +0.0
])
def test_conv_events_equal_the_scipy_product(rng, kernels_on, o, c, hw, k, stride, pad, density):
    op = SharedKernel(order_sensitive(rng, (o, c) + k), (c,) + hw, stride=stride, padding=pad)
    s = rng.random((37, op.n_pre)) < density
    conv = SparseConv(op)
    conv.dense_above = 2.0  # the numpy path's events, not its dense GEMM
    want = _numpy(conv, s)
    got = conv(s)
    assert got.shape == want.shape == (37, op.n_post)
    assert np.array_equal(got, want)
    assert np.array_equal(np.signbit(got), np.signbit(want))  # no -0.0 where scipy gives +0.0


@pytest.mark.parametrize("c,hw,k,stride,pad,density", [
    (64, (4, 4), (4, 4), (4, 4), (0, 0), 0.2),   # ResNet-8's global average pool
    (6, (9, 7), (3, 3), (2, 2), (1, 1), 0.5),    # padded, strided, not square
    (3, (8, 8), (2, 3), (1, 2), (0, 1), 0.9),    # uneven kernel
    (4, (5, 5), (3, 3), (1, 1), (1, 1), 0.0),    # silent input
])
def test_depthwise_equals_window_sum(rng, kernels_on, c, hw, k, stride, pad, density):
    op = SharedKernel(order_sensitive(rng, (c, 1) + k), (c,) + hw, stride=stride, padding=pad, groups=c)
    s = rng.random((29, op.n_pre)) < density
    xp = NumpyArrays()
    prepared = xp.kernel(op)
    want = _numpy(xp.conv, prepared, op, s)  # window_sum
    got = compiled.depthwise(s, prepared, op)
    assert got.shape == want.shape == (29, op.n_post)
    assert np.array_equal(got, want) and (density == 0.0 or np.count_nonzero(got) > got.size // 4)
    assert np.array_equal(xp.conv(prepared, op, s), want)  # the engine's product takes it
    assert compiled.depthwise(s, prepared.astype(np.float32), op) is None  # float32: window_sum's own


@pytest.mark.parametrize("kind,density", [("sparse", 0.02), ("sparse", 0.2), ("sparse", 0.7),
                                          ("dense", 0.0), ("dense", 0.05), ("dense", 0.4), ("dense", 1.0)])
def test_matrix_events_equal_the_numpy_products(rng, kernels_on, kind, density):
    # sparse: both scipy products; dense: the ordered GEMM over the active rows (or all of them).
    # The kernels add each fired row in pre-index order: the same floats, signed zeros included
    if kind == "sparse":
        m = sp.random(50, 300, density=0.15, random_state=1, format="csr")
        m.data = order_sensitive(rng, m.data.shape)
    else:
        m = sp.csr_matrix(order_sensitive(rng, (40, 300)))
    arrays = NumpyArrays()
    prepared = arrays.matrix(m)
    assert prepared[0] == kind
    x = rng.random((23, 300)) < density
    want = _numpy(arrays.matmul, prepared, x)
    got = arrays.matmul(prepared, x)
    assert np.array_equal(got, want)
    assert np.array_equal(np.signbit(got), np.signbit(want))
    # and equal to the definition: per post neuron, the fired weights summed in pre-index order
    dense = m.toarray()
    for b in (0, 7):
        for post in (0, 13, 39):
            acc = 0.0
            for pre in np.flatnonzero(x[b]):
                if dense[post, pre] != 0.0 or m[post, pre] != 0:
                    acc += dense[post, pre]
            assert got[b, post] == acc


@pytest.mark.parametrize("dtype,theta", [(np.float64, 0.75), (np.float32, 0.7), (np.float32, np.float64(0.7))],
                         ids=["float64", "float32", "float32-numpy-theta"])
@pytest.mark.parametrize("n_arr,drive,keep_pot", [(0, "array", False), (1, 0.0, True), (2, "scalar", False), (1, "array", True),
                                                   (1, "array_v", False), (1, "per_sample", False)])
def test_if_scan_equals_the_numpy_scan(rng, kernels_on, n_arr, drive, keep_pot, dtype, theta):
    # float32 (precision="float32"): numpy adds a float64 drive in float64 and rounds, compares with a
    # Python float threshold in float32 but with a numpy float64 one in float64 (0.7 is not a float32)
    tb, shape = 9, (6, 50)
    v0 = rng.normal(0.3, 0.6, size=shape).astype(dtype)
    v0[0, :5] = -0.0  # -0.0 + 0.0 is +0.0: a zero drive given as the float 0.0 must not be added
    if drive in ("array", "array_v"):  # a float64 drive, or one in the potentials' type
        sd = rng.normal(0.05, 0.1, size=shape[1:]).astype(dtype if drive == "array_v" else np.float64)
    elif drive == "per_sample":  # one drive per sample and neuron (a current-encoded input)
        sd = rng.normal(0.05, 0.1, size=shape)
    elif drive == "scalar":
        sd = 0.0625
    else:
        sd = 0.0
    arrivals = [(order_sensitive(rng, (tb,) + shape) * 0.4).astype(dtype) for _ in range(n_arr)]
    if dtype == np.float32:  # potentials that land on the threshold, where the comparison's type decides
        v0[1, :10] = np.float32(theta)
        v0[2, :10] = np.nextafter(np.float32(theta), np.float32(0))

    def scan(enabled):
        compiled.ENABLED = enabled
        try:
            v = v0.copy()
            spikes = np.empty((tb,) + shape, dtype=bool)
            pot = np.empty((tb,) + shape) if keep_pot else None
            LayerMajor._if_scan(v, sd, theta, arrivals, spikes, pot)
            return v, spikes, pot
        finally:
            compiled.ENABLED = True

    ran = []
    real = compiled.if_scan
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(compiled, "if_scan", lambda *a: ran.append(real(*a)) or ran[-1])
        (v1, s1, p1), (v2, s2, p2) = scan(False), scan(True)
    assert ran == [True]  # the compiled kernel ran the second scan
    assert v2.dtype == dtype
    assert s1.any() and not s1.all()
    assert np.array_equal(s1, s2)
    assert np.array_equal(v1, v2) and np.array_equal(np.signbit(v1), np.signbit(v2))
    if keep_pot:
        assert np.array_equal(p1, p2)


@pytest.mark.parametrize("o,c,hw,k,stride,pad,density,drive,second", [
    (32, 16, (12, 12), (5, 5), (1, 1), (0, 0), 0.14, 0.0, None),      # the MNIST LeNet's second convolution
    (8, 3, (9, 7), (3, 3), (1, 1), (1, 1), 0.5, "array", "gather"),   # padded; a residual identity (gather)
    (6, 4, (11, 10), (3, 2), (2, 3), (1, 0), 0.3, "scalar", "conv"),  # strides, uneven kernels; a 1×1 projection
])
@pytest.mark.parametrize("dtype,theta", [(np.float64, 0.75), (np.float32, 0.7)], ids=["float64", "float32"])
def test_conv_if_equals_the_products_then_the_numpy_scan(rng, kernels_on, o, c, hw, k, stride, pad, density, drive, second, dtype, theta):
    # the fused block (push and scan per sample and step) against conv_events over the block,
    # plus the second link's product, followed by the numpy scan: same spikes, same potentials.
    # float32 (precision="float32"): float32 weights and sums, the numpy float32 scan's rounding
    op = SharedKernel(order_sensitive(rng, (o, c) + k), (c,) + hw, stride=stride, padding=pad)
    tb, n_b = 5, 7
    x = rng.random((tb, n_b, op.n_pre)) < density
    x[:, 3] = False  # a sample whose inputs are silent the whole block
    sd = {"array": rng.normal(0.05, 0.1, size=op.n_post), "scalar": 0.0625, 0.0: 0.0}[drive]
    v0 = rng.normal(0.3, 0.6, size=(n_b, op.n_post)).astype(dtype)

    def events(op, x):  # conv_events in the test's type: the compiled push's order (held to scipy's ordered product above)
        wf = compiled.flipped_kernel(op.kernel).astype(dtype)
        return wf, compiled.conv_events(x.reshape(-1, op.n_pre), wf, op.in_shape, op.stride, op.padding, op.out_hw).reshape(tb, n_b, -1)

    wf1, arrivals = events(op, x)
    links = [("conv", x, wf1, op.in_shape, op.stride, op.padding, op.out_hw)]
    if second == "conv":  # a 1×1 projection of a 2-channel input of twice the output's size onto the same outputs
        oh, ow = op.out_hw
        op2 = SharedKernel(order_sensitive(rng, (o, 2, 1, 1)), (2, 2 * oh, 2 * ow), stride=(2, 2))
        assert op2.out_hw == op.out_hw
        x2 = rng.random((tb, n_b, op2.n_pre)) < 0.4
        wf2, arrivals2 = events(op2, x2)
        arrivals += arrivals2
        links.append(("conv", x2, wf2, op2.in_shape, op2.stride, op2.padding, op2.out_hw))
    elif second == "gather":  # two slots per post neuron (fan-in 2), as NumpyArrays.matrix lays them out
        n_pre2 = 50
        idx = rng.integers(0, n_pre2, size=(2, op.n_post))
        w = order_sensitive(rng, (2, op.n_post)).astype(dtype)
        x2 = rng.random((tb, n_b, n_pre2)) < 0.4
        flat = x2.reshape(tb * n_b, -1)
        arrivals += (flat[:, idx[0]] * w[0] + flat[:, idx[1]] * w[1]).reshape(tb, n_b, -1)
        links.append(("gather", x2, idx, w))
    assert arrivals.dtype == dtype
    v1, s1 = v0.copy(), np.empty((tb, n_b, op.n_post), dtype=bool)
    _numpy(LayerMajor._if_scan, v1, sd, theta, [arrivals], s1, None)
    v2, s2 = v0.copy(), np.empty_like(s1)
    assert compiled.conv_if(links, v2, sd, theta, s2)
    assert s1.any() and not s1.all()
    assert np.array_equal(s1, s2)
    assert np.array_equal(v1, v2)


def test_if_scan_declines_what_it_cannot_reproduce(kernels_on):
    v = np.zeros((2, 3), dtype=np.float32)
    spikes = np.empty((4, 2, 3), dtype=bool)
    assert not compiled.if_scan(v, np.zeros(3), 1.0, [np.zeros((4, 2, 3))], spikes, None)  # float64 arrivals onto float32
    assert not compiled.if_scan(v.astype(np.float16), np.zeros(3), 1.0, [], spikes, None)  # float16
    v64 = np.zeros((2, 3))
    three = [np.zeros((4, 2, 3))] * 3
    assert not compiled.if_scan(v64, 0.5, 1.0, three, spikes, None)  # more than 2 arrival groups
    assert not v64.any()  # declined before touching anything


def test_without_numba_the_engine_runs_its_numpy_products(monkeypatch, rng):
    def refuse(*a, **k):
        raise AssertionError("a compiled kernel ran although numba is off")

    monkeypatch.setattr(compiled, "ENABLED", False)
    for name in ("conv_events", "csr_events", "if_scan"):
        monkeypatch.setattr(compiled, name, refuse)
    assert not compiled.available()
    graph = load_model(model_path("mnist_lenet"))
    x = rng.random((2,) + tuple(graph.input_shape))
    rec = simulate(convert(graph, calibration=x), x, SimulationConfig(n_steps=16, engine="tensor", device="cpu"))
    assert rec.counts and sum(int(c.sum()) for c in rec.counts.values()) > 100


@pytest.mark.parametrize("name,n_steps", [("mnist_lenet", 24), ("fmnist_vgg", 12), ("fmnist_resnet8", 12)])
def test_shipped_networks_spike_the_same_with_and_without_kernels(rng, name, n_steps):
    # the residual ResNet-8 ships beside the others without a model_path name
    graph = load_model(model_path("mnist_lenet").with_name(f"{name}.h5"))
    x = rng.random((6,) + tuple(graph.input_shape))
    snn = convert(graph, calibration=x)
    cfg = SimulationConfig(n_steps=n_steps, engine="tensor", device="cpu", record=("all",))
    compiled.ENABLED = False
    try:
        want = simulate(snn, x, cfg)
    finally:
        compiled.ENABLED = True
    got = simulate(snn, x, cfg)
    assert_same_spikes(want, got, min_spikes=1000)
    assert np.array_equal(want.output_potential_t, got.output_potential_t)


def test_if_scan_hand_computed_threshold_is_inclusive(kernels_on):
    # v climbs 0.25 per step from 0 and reaches θ = 0.75 exactly at steps 2 and 5: a spike (v >= θ), reset to 0
    v = np.zeros((2, 2))
    spikes = np.empty((6, 2, 2), dtype=bool)
    pot = np.empty((6, 2, 2))
    assert compiled.if_scan(v, 0.25, 0.75, [], spikes, pot)
    assert spikes[:, 0, 0].tolist() == [False, False, True, False, False, True]
    assert spikes.all(axis=(1, 2)).tolist() == spikes.any(axis=(1, 2)).tolist()
    assert pot[:, 1, 1].tolist() == [0.25, 0.5, 0.0, 0.25, 0.5, 0.0]


def test_gather_add_int_hand_computed(kernels_on):
    # two post neurons, fan-in 2: post 0 = x0 - x2, post 1 = 2·x1 + x2; added onto what acc holds
    x = np.array([[1, 0, 1], [0, 1, 1], [1, 1, 0]], dtype=bool)
    idx = np.array([[0, 1], [2, 2]], dtype=np.intp)
    w = np.array([[1, 2], [-1, 1]], dtype=np.int64)
    acc = np.full((3, 2), 5, dtype=np.int8)
    compiled.gather_add_int(x, idx, w, acc)
    assert acc.tolist() == [[5, 6], [4, 8], [6, 7]]


@pytest.mark.parametrize("vt,at,reset,theta", [
    (np.int16, np.int8, "zero", 2),                  # a max-pool gate: reset to zero
    (np.int32, np.int32, "subtract", "per neuron"),  # reset by subtraction, one threshold each
    (np.int16, None, "value", 3),                    # no input this block, reset to a value
])
def test_int_scan_equals_the_numpy_integer_loop(rng, kernels_on, vt, at, reset, theta):
    tb, n_b, n = 6, 5, 40
    th = rng.integers(1, 5, size=n) if theta == "per neuron" else theta
    v0 = rng.integers(-6, 6, size=(n_b, n)).astype(vt)
    acc = None if at is None else rng.integers(-3, 4, size=(tb, n_b, n)).astype(at)
    drive, v_reset = 1, (-1 if reset == "value" else 0)
    v1, s1 = v0.copy(), np.empty((tb, n_b, n), dtype=bool)
    for i in range(tb):  # the loop of LayerMajor.run
        v1 += vt(drive)
        if acc is not None:
            v1 += acc[i]
        np.greater_equal(v1, th, out=s1[i])
        if reset == "subtract":
            v1 -= s1[i] * np.asarray(th).astype(vt)
        else:
            np.putmask(v1, s1[i], v_reset)
    v2, s2 = v0.copy(), np.empty_like(s1)
    assert compiled.int_scan(v2, acc, drive, th, reset, v_reset, s2)
    assert s1.any() and not s1.all()
    assert np.array_equal(s1, s2) and np.array_equal(v1, v2) and v2.dtype == vt


@pytest.mark.parametrize("n", [16, 13])
def test_count_pack_equals_numpy_sum_and_packbits(rng, kernels_on, n):
    tb, n_b, n_steps, t0 = 4, 5, 12, 8
    block = rng.random((tb, n_b, n)) < 0.4
    counts0 = rng.integers(0, 100, size=(n_b, n)).astype(np.uint16)
    bits0 = rng.integers(0, 256, size=(n_b, n_steps, (n + 7) // 8)).astype(np.uint8)
    want_c = counts0 + block.sum(axis=0).astype(np.uint16)
    want_b = bits0.copy()
    want_b[:, t0 : t0 + tb] = np.packbits(block, axis=-1).transpose(1, 0, 2)
    c, b = counts0.copy(), bits0.copy()
    assert compiled.count_pack(block, c, b, t0)
    assert np.array_equal(c, want_c) and np.array_equal(b, want_b)
    c = counts0.copy()
    assert compiled.count_pack(block, c, None, t0)  # counts only
    assert np.array_equal(c, want_c)
    assert not compiled.count_pack(block, counts0.astype(np.int64), None, t0)  # not uint16: the caller's numpy path


def test_gather_plan_finds_strided_rows_and_refuses_the_rest():
    # a 2×2 pool's top-left picks over a (2, 5, 6) map: runs of 3 at stride 2, rows 12 apart, channels 30
    pick = np.arange(2 * 5 * 6).reshape(2, 5, 6)[:, ::2, ::2].reshape(-1)
    assert compiled._affine_dims(pick) == (0, (3, 2), (3, 12), (2, 30), (1, 0))
    assert compiled._affine_dims(np.arange(2 * 4 * 6)[::2]) == (0, (24, 2), (1, 0), (1, 0), (1, 0))
    shifted = np.arange(0, 200, 1) + 7
    assert compiled._affine_dims(shifted) == (7, (200, 1), (1, 0), (1, 0), (1, 0))
    assert compiled._affine_dims(np.array([0, 1, 3, 4, 5])) is None  # runs of unequal length
    assert compiled._affine_dims(np.array([4])) == (4, (1, 0), (1, 0), (1, 0), (1, 0))
    rows = np.stack([np.arange(64) * 2, np.arange(64) * 2 + 1, np.arange(64), np.arange(64)[::-1]])
    w = np.ones_like(rows)
    w[2, 5] = 3  # not one weight: read by index
    plan = compiled.gather_plan(rows, w, n_pre=128)
    assert plan[0].tolist() == [0, 64, 2, 1, 0, 1, 0, 1, 0, 1]
    assert plan[1].tolist() == [1, 64, 2, 1, 0, 1, 0, 1, 0, 1]
    assert plan[2, 1] == 0 and plan[3, 1] == 0  # mixed weights; stride -1
    assert compiled.gather_plan(rows[:2], w[:2], n_pre=129)[:, 1].tolist() == [0, 0]  # odd n_pre: no uint16 view
    assert compiled.gather_plan(rows[:1] // 4, w[:1], n_pre=128, min_run=65)[0, 1] == 0  # runs too short


@pytest.mark.parametrize("n_pre", [128, 127])
def test_gather_add_int_strided_rows_equal_the_gather(rng, kernels_on, n_pre):
    # stride-1 and stride-2 rows (both byte offsets of the uint16 view), a 2-D pattern and an
    # irregular row, on the same x: the planned kernel and the by-index one give the same sums
    n = 40
    idx = np.stack([np.arange(n) + 3, np.arange(n) * 2, np.arange(n) * 2 + 1,
                    (np.arange(4)[:, None] * 30 + np.arange(10) * 2 + 1).reshape(-1), rng.integers(0, n_pre, n)])
    w = np.stack([np.full(n, -2), np.full(n, 2), np.full(n, 1), np.full(n, -1), rng.integers(-3, 4, n)])
    x = rng.random((33, n_pre)) < 0.4
    plan = compiled.gather_plan(idx, w, n_pre, min_run=8)
    affine = plan[:, 1] > 0
    assert affine[:4].tolist() == [True, n_pre % 2 == 0, n_pre % 2 == 0, n_pre % 2 == 0] and not affine[4]
    want = np.zeros((33, n), dtype=np.int16)
    compiled.gather_add_int(x, idx, w, want)
    got = np.zeros((33, n), dtype=np.int16)
    compiled.gather_add_int(x, idx, w, got, plan)
    assert np.array_equal(got, want)
    assert np.array_equal(want, sum(x[:, idx[f]].astype(np.int16) * w[f] for f in range(5)))


def test_a_numba_that_cannot_compile_leaves_the_numpy_path_and_one_warning(monkeypatch, rng):
    # a numba whose compiler fails (as a broken LLVM or a numpy it was not built for does): the
    # kernels fail on their first call, which available() makes during its warm-up
    import sys
    import types

    class LoweringError(Exception):
        pass

    def njit(**_):
        def wrap(fn):
            def compiled_fn(*a):
                raise LoweringError("Failed in nopython mode pipeline (step: native lowering)\nlong details")
            return compiled_fn
        return wrap

    monkeypatch.setitem(sys.modules, "numba", types.SimpleNamespace(njit=njit))
    monkeypatch.setattr(compiled, "_tried", False)
    monkeypatch.setattr(compiled, "_kernels", None)
    monkeypatch.setattr(compiled, "ENABLED", True)
    with pytest.warns(RuntimeWarning, match=r"numba could not compile the event kernels \(LoweringError: Failed in "
                                            r"nopython mode pipeline \(step: native lowering\)\); the tensor engine uses"):
        assert not compiled.available()
    assert not compiled.available()  # decided once per process
    assert not compiled.available("conv_if")
    graph = load_model(model_path("mnist_lenet"))
    x = rng.random((2,) + tuple(graph.input_shape))
    snn = convert(graph, calibration=x)
    rec = simulate(snn, x, SimulationConfig(n_steps=16, engine="tensor", device="cpu"))
    assert sum(int(c.sum()) for c in rec.counts.values()) > 100



def _fresh_kernels(monkeypatch):
    monkeypatch.setattr(compiled, "_tried", False)
    monkeypatch.setattr(compiled, "_kernels", None)
    monkeypatch.setattr(compiled, "ENABLED", True)
    monkeypatch.setattr(compiled, "_ready", set())
    monkeypatch.setattr(compiled, "_failed", set())


def test_a_network_compiles_only_the_kernels_it_runs(monkeypatch, rng):
    # each kernel compiles when first asked for (up to 2.3 s each): a dense network never pays for
    # the convolution and max-pool kernels
    _fresh_kernels(monkeypatch)
    graph = load_model(model_path("digits_mlp"))
    x = rng.random((4,) + tuple(graph.input_shape))
    rec = simulate(convert(graph, calibration=x), x, SimulationConfig(n_steps=16, engine="tensor", device="cpu"))
    assert sum(int(c.sum()) for c in rec.counts.values()) > 50
    assert {"if_scan", "count_pack"} <= compiled._ready and compiled._ready & {"dense", "csr"}
    assert not compiled._ready & {"conv", "conv_if", "depthwise", "channels_last", "pool4_if", "int_scan", "gather",
                                  *compiled.FIXED_POINT_FORMS}
    for name, k in compiled._kernels.items():  # and nothing it did not ask for compiled on the side
        assert bool(k.signatures) == (name in compiled._ready), name


def test_a_kernel_that_cannot_compile_leaves_the_others_and_the_same_spikes(monkeypatch, rng):
    # one kernel's compilation failing (its warm-up raises, as numba does for a form LLVM cannot
    # lower): one warning naming it, the numpy path for its work, the other kernels still compiled
    class LoweringError(Exception):
        pass

    def fails(k):
        raise LoweringError("Failed in nopython mode pipeline (step: native lowering)\nlong details")

    graph = load_model(model_path("mnist_lenet"))
    x = rng.random((2,) + tuple(graph.input_shape))
    snn = convert(graph, calibration=x)
    cfg = SimulationConfig(n_steps=16, engine="tensor", device="cpu")
    monkeypatch.setattr(compiled, "ENABLED", False)
    ref = simulate(snn, x, cfg)
    _fresh_kernels(monkeypatch)
    monkeypatch.setitem(compiled._WARM, "conv_if", fails)
    with pytest.warns(RuntimeWarning, match=r"numba could not compile its 'conv_if' kernel \(LoweringError: Failed in nopython "
                                            r"mode pipeline \(step: native lowering\)\); the tensor engine uses its numpy") as caught:
        rec = simulate(snn, x, cfg)
    assert len([w for w in caught if "numba" in str(w.message)]) == 1
    assert "conv_if" in compiled._failed and {"conv", "pool4_if", "if_scan"} <= compiled._ready
    assert not compiled._kernels["conv_if"].signatures
    assert_same_spikes(rec, ref)
    assert sum(int(c.sum()) for c in rec.counts.values()) > 100

@pytest.mark.slow
def test_the_warm_up_compiles_every_form_the_shipped_networks_call(monkeypatch, rng):
    # a kernel form the warm-ups (compiled._WARM) miss compiles at the first call of every run
    # (about 0.4 s per kernel, in every process): e.g. a drive broadcast over the batch has numba
    # layout "A", a one-row broadcast "C".  Fresh kernels, every warm-up, then the shipped CNNs
    # for a long run (integer gates in their widest type): nothing new may compile
    monkeypatch.setattr(compiled, "_tried", False)
    monkeypatch.setattr(compiled, "_kernels", None)
    monkeypatch.setattr(compiled, "ENABLED", True)
    assert compiled.available(*compiled.FORMS)
    warm = {name: list(k.signatures) for name, k in compiled._kernels.items()}
    for name in ("mnist_lenet", "fmnist_vgg", "digits_cnn"):
        graph = load_model(model_path(name))
        x = rng.random((3,) + tuple(graph.input_shape))
        rec = simulate(convert(graph, calibration=x), x, SimulationConfig(n_steps=300, engine="tensor", device="cpu"))
        assert sum(int(c.sum()) for c in rec.counts.values()) > 1000
    graph = load_model(model_path("mnist_lenet").parent / "fmnist_resnet8.h5")
    x = rng.random((3,) + tuple(graph.input_shape))
    simulate(convert(graph, calibration=x), x, SimulationConfig(n_steps=40, engine="tensor", device="cpu"))
    assert {name: list(k.signatures) for name, k in compiled._kernels.items()} == warm
    # every array contiguous: numba's layout "A" (a broadcast drive was one) keeps LLVM from vectorising
    assert not [(name, str(t)) for name, sigs in warm.items() for sig in sigs for t in sig if str(t).endswith(", A)")]


def test_drives_reach_the_scans_as_one_contiguous_row_or_one_per_sample():
    # a drive broadcast over the rows has numba layout "A", which the scans do not vectorise
    per_neuron = compiled._drive_rows(np.arange(4.0), (3, 4))
    assert per_neuron.shape == (1, 4) and per_neuron.flags.c_contiguous and not per_neuron.flags.writeable
    assert np.array_equal(per_neuron[0], np.arange(4.0))
    assert np.array_equal(compiled._drive_rows(0.5, (3, 4)), np.full((1, 4), 0.5))
    per_sample = np.arange(12.0).reshape(3, 4)
    rows = compiled._drive_rows(per_sample, (3, 4))
    assert rows.shape == (3, 4) and np.array_equal(rows, per_sample) and not rows.flags.writeable
    assert compiled._drive_rows(per_sample.reshape(3, 1, 4), (3, 1, 4)).shape == (3, 4)


@pytest.mark.parametrize("c,p", [(16, 196), (3, 7), (64, 16)])
def test_channels_last_equals_the_numpy_transpose(rng, kernels_on, c, p):
    spikes = rng.random((5, c * p)) < 0.3
    got = compiled.channels_last(spikes, c)
    want = spikes.reshape(5, c, p).transpose(0, 2, 1)
    assert got.dtype == np.uint8 and got.shape == (5, p, c)
    assert np.array_equal(got, want)
    paired = compiled.channels_last(spikes, c, paired=True)  # DigitConv's paired input: then 255 × the spikes
    assert paired.dtype == np.uint8 and paired.shape == (5, p, 2 * c)
    assert np.array_equal(paired[..., 0::2], want) and np.array_equal(paired[..., 1::2], 255 * want.astype(np.uint8))
