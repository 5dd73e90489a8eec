"""spikebridge.learning.qcfs: the QCFS activation, its swap/initialisation/training helpers and its export path."""

from __future__ import annotations

import io
import subprocess
import sys
import warnings

import numpy as np
import pytest

import spikebridge
from spikebridge.engines.reference import simulate_reference
from spikebridge.config import ConversionConfig
from spikebridge.conversion.convert import convert
from spikebridge.errors import ValidationError
from spikebridge.ir import ReLU, evaluate, load_graph, save_graph

from ._optional import has_onnx, requires_torch


def test_training_without_torch_says_how_to_install_it():
    code = (
        "import sys; sys.modules['torch'] = None\n"
        "import spikebridge\n"
        "try:\n"
        "    import spikebridge.learning.qcfs\n"
        "except ImportError as err:\n"
        "    print(type(err).__name__, err)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.startswith("MissingDependencyError the optional package 'torch' is needed for QCFS training")
    assert 'pip install "spikebridge[torch]"' in out


@requires_torch
def test_qcfs_forward_on_hand_computed_inputs():
    import torch

    from spikebridge.learning.qcfs import QCFS

    q = QCFS(levels=4, threshold=2.0)
    x = torch.tensor([-1.0, 0.0, 0.2, 0.25, 0.3, 0.74, 0.76, 1.9, 2.0, 3.0])
    # λ/L · clip(floor(x L/λ + 1/2), 0, L) with λ = 2, L = 4: steps of 0.5, rounding at the quarter points
    assert q(x).tolist() == [0.0, 0.0, 0.0, 0.5, 0.5, 0.5, 1.0, 2.0, 2.0, 2.0]
    assert QCFS(levels=1, threshold=1.0, shift=0.0)(torch.tensor([0.99, 1.0, 5.0])).tolist() == [0.0, 1.0, 1.0]
    assert q.clip_level == 2.0 and "levels=4" in repr(q)
    for kwargs, match in (({"levels": 0}, "levels must be an int >= 1"), ({"threshold": 0.0}, "threshold must be"),
                          ({"shift": 1.0}, r"shift must be in \[0, 1\)")):
        with pytest.raises(ValidationError, match=match):
            QCFS(**kwargs)


@requires_torch
def test_qcfs_straight_through_gradients():
    import torch

    from spikebridge.learning.qcfs import QCFS

    q = QCFS(levels=4, threshold=2.0)
    x = torch.tensor([-1.0, 0.3, 0.76, 3.0], requires_grad=True)
    q(x).sum().backward()
    # the floor passes the gradient through: dy/dx = 1 inside (0, λ), 0 where the clip is active
    assert x.grad.tolist() == [0.0, 1.0, 1.0, 0.0]
    # dy/dλ = y/λ − x/λ inside, 1 above λ, 0 below 0: 0 + (0.25 − 0.15) + (0.5 − 0.38) + 1
    assert q.threshold.grad.item() == pytest.approx(1.22, abs=1e-6)


@requires_torch
def test_qcfs_model_swaps_relus_and_max_pools_and_init_sets_percentiles(rng):
    import torch
    from torch import nn

    from spikebridge.learning.qcfs import QCFS, init_clip_levels, qcfs_layers, qcfs_model

    net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                        nn.Sequential(nn.Linear(2 * 3 * 3, 4), nn.ReLU()), nn.Linear(4, 2))
    assert qcfs_model(net, levels=4) is net
    assert [type(m).__name__ for m in net.modules()].count("QCFS") == 2
    assert isinstance(net[2], nn.AvgPool2d) and net[2].kernel_size == 2
    assert [n for n, _ in qcfs_layers(net)] == ["1", "4.1"]
    with pytest.raises(ValidationError, match="has no nn.ReLU module"):
        qcfs_model(nn.Sequential(nn.Linear(2, 2)))
    # init: λ of the first layer is the 99th percentile of its positive input
    ident = nn.Linear(3, 3, bias=False)
    ident.weight.data = torch.eye(3)
    model = nn.Sequential(ident, QCFS(4))
    x = rng.normal(size=(400, 3))
    lam = init_clip_levels(model, x, percentile=99.0)
    want = np.percentile(x[x > 0].astype(np.float32), 99.0)
    assert lam["1"] == pytest.approx(want, rel=1e-6) and model[1].clip_level == pytest.approx(want, rel=1e-6)


def _digits_qcfs_mlp(levels: int = 4, epochs: int = 8):
    import torch
    from torch import nn

    from spikebridge.datasets import load_digits
    from spikebridge.learning.qcfs import QCFS, train_qcfs

    x, y = load_digits("train")
    x = x.reshape(len(x), -1)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 48), QCFS(levels), nn.Linear(48, 32), QCFS(levels), nn.Linear(32, 10))
    losses = train_qcfs(model, x, y, epochs=epochs, batch_size=32, lr=5e-3, seed=0)
    return model, losses


@requires_torch
def test_trained_qcfs_net_exports_converts_and_matches_its_quantised_ann(tmp_path):
    import torch

    from spikebridge.datasets import load_digits
    from spikebridge.learning.qcfs import qcfs_layers, to_clipped

    model, losses = _digits_qcfs_mlp()
    assert losses[-1] < 0.5 * losses[0]
    x_tr, _ = load_digits("train")
    x, y = load_digits("test")
    x_tr, x = x_tr.reshape(len(x_tr), -1), x.reshape(len(x), -1)
    xt = torch.tensor(x, dtype=torch.float32)
    with torch.no_grad():
        quantised = model(xt).numpy()
        clipped = to_clipped(model)(xt).numpy()
    levels = [m.clip_level for _, m in qcfs_layers(model)]
    # the import: each QCFS is a ReLU clipped at its trained λ, and the IR oracle is the clipped-ReLU ANN
    g = spikebridge.load_model(model)
    assert [layer.max_value for layer in g if isinstance(layer, ReLU)] == levels
    assert g.metadata["qcfs_levels"] == {"1": 4, "3": 4}
    np.testing.assert_allclose(evaluate(g, x), clipped, atol=1e-5)
    # the clip levels survive our HDF5 format and ONNX (Clip(0, λ))
    save_graph(g, tmp_path / "q.h5")
    assert [layer.max_value for layer in load_graph(tmp_path / "q.h5") if isinstance(layer, ReLU)] == levels
    if has_onnx:
        import onnx

        buf = io.BytesIO()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(to_clipped(model), (torch.zeros(1, 64),), buf, dynamo=False, opset_version=17)
        from_onnx = spikebridge.load_model(onnx.load_from_string(buf.getvalue()))
        assert [n.op_type for n in onnx.load_from_string(buf.getvalue()).graph.node].count("Clip") == 2
        clips = [layer.max_value for layer in from_onnx if isinstance(layer, ReLU)]
        np.testing.assert_allclose(clips, levels, rtol=1e-7)
        np.testing.assert_allclose(evaluate(from_onnx, x), evaluate(g, x), atol=1e-5)
    # conversion: λ is the scale of each clipped layer; at T = 8 the SNN agrees with the quantised ANN
    snn = convert(g, ConversionConfig(v_init=0.5, output="potential"), calibration=x_tr[:300])
    assert [snn.scales[layer.name] for layer in g if isinstance(layer, ReLU)] == levels
    rec = simulate_reference(snn, x, 8)
    agree = np.mean(rec.predictions(7) == quantised.argmax(1))
    acc_snn, acc_q = np.mean(rec.predictions(7) == y), np.mean(quantised.argmax(1) == y)
    assert acc_q > 0.9 and agree >= 0.97 and acc_snn >= acc_q - 0.02, (agree, acc_snn, acc_q)


@requires_torch
def test_torch_importer_reads_clipped_relus():
    import torch
    from torch import nn

    from spikebridge.errors import UnsupportedLayerError
    from spikebridge.learning.qcfs import QCFS

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.q, self.b = nn.Linear(3, 4), QCFS(2, 1.25), nn.Linear(4, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = torch.nn.functional.relu6(torch.clamp(self.a(x), 0.0, 3.0))
            return self.b(self.q(torch.nn.functional.hardtanh(x, 0.0, 2.5)))

    g = spikebridge.load_model(Net())  # traced: the QCFS module is one layer, not its floor arithmetic
    assert [(layer.name, layer.max_value) for layer in g if isinstance(layer, ReLU)] == [
        ("clamp", 3.0), ("relu6", 6.0), ("hardtanh", 2.5), ("q", 1.25)]
    seq = spikebridge.load_model(nn.Sequential(nn.Linear(2, 2), nn.ReLU6(), nn.Linear(2, 2), nn.Hardtanh(0.0, 0.5)))
    assert [layer.max_value for layer in seq if isinstance(layer, ReLU)] == [6.0, 0.5]
    with pytest.raises(UnsupportedLayerError, match=r"Hardtanh\(min_val=-1.0, max_val=1.0\).*lower bound of 0"):
        spikebridge.load_model(nn.Sequential(nn.Linear(2, 2), nn.Hardtanh()))


@requires_torch
def test_train_qcfs_is_seeded_and_checks_its_arguments():
    from torch import nn

    from spikebridge.learning.qcfs import train_qcfs

    a, _ = _digits_qcfs_mlp(epochs=1)
    b, _ = _digits_qcfs_mlp(epochs=1)
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert bool((pa == pb).all())
    with pytest.raises(ValidationError, match="no QCFS layer"):
        train_qcfs(nn.Sequential(nn.Linear(2, 2)), np.zeros((2, 2)), np.zeros(2))
    with pytest.raises(ValidationError, match="epochs must be an int >= 1"):
        train_qcfs(a, np.zeros((2, 64)), np.zeros(2), epochs=0)
