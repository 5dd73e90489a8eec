"""ReLU RNNs from PyTorch (modules, fx-traced user modules) and ONNX; gated and saturating RNNs refused."""

from __future__ import annotations

import numpy as np
import pytest

from spikebridge.errors import UnsupportedLayerError, ValidationError
from spikebridge.ir import evaluate

torch = pytest.importorskip("torch")
nn = torch.nn


class Reader(nn.Module):
    """nn.RNN(relu) then Linear, on the last element (out[:, -1] / out[-1] / h_n[-1]) or on every element."""

    def __init__(self, layers: int = 1, batch_first: bool = True, bias: bool = True, read: str = "last") -> None:
        super().__init__()
        self.rnn = nn.RNN(5, 7, num_layers=layers, nonlinearity="relu", batch_first=batch_first, bias=bias)
        self.fc = nn.Linear(7, 3)
        self.read, self.batch_first = read, batch_first

    def forward(self, x):
        out, h = self.rnn(x)
        if self.read == "every":
            return self.fc(out)
        if self.read == "hn":
            return self.fc(h[-1])
        return self.fc(out[:, -1] if self.batch_first else out[-1])


def _torch_out(model, x):
    xt = torch.tensor(x, dtype=torch.float32)
    if not model.batch_first:
        xt = xt.transpose(0, 1)
    out = model(xt).detach().numpy()
    return out.transpose(1, 0, 2) if (out.ndim == 3 and not model.batch_first) else out


CASES = [dict(), dict(batch_first=False), dict(layers=2, bias=False), dict(read="every"),
         dict(batch_first=False, read="every"), dict(layers=2, read="hn")]


@pytest.mark.parametrize("kw", CASES)
def test_torch_rnn_matches_module(kw):
    from spikebridge.importers.from_torch import from_torch

    torch.manual_seed(0)
    model = Reader(**kw).eval()
    g = from_torch(model, input_shape=(6, 5))
    assert [layer.type_name for layer in g].count("RNN") == kw.get("layers", 1)
    x = np.random.default_rng(1).random((4, 6, 5))
    np.testing.assert_allclose(evaluate(g, x), _torch_out(model, x), atol=1e-5)
    assert g.output_shape == ((6, 3) if kw.get("read") == "every" else (3,))


@pytest.mark.parametrize("kw", [dict(), dict(read="every"), dict(batch_first=False)])
def test_onnx_export_of_torch_rnn_matches(tmp_path, kw):
    pytest.importorskip("onnx")
    from spikebridge.importers.from_onnx import from_onnx

    torch.manual_seed(0)
    model = Reader(**kw).eval()
    shape = (1, 6, 5) if model.batch_first else (6, 1, 5)
    path = tmp_path / "rnn.onnx"
    torch.onnx.export(model, (torch.zeros(shape),), str(path), dynamo=False, opset_version=17)
    x = np.random.default_rng(2).random((4, 6, 5))
    if not model.batch_first:  # a time-first module exported as such has a time-first ONNX input: refused
        with pytest.raises(UnsupportedLayerError):
            from_onnx(path, input_shape=(6, 5))
        return
    g = from_onnx(path)
    np.testing.assert_allclose(evaluate(g, x[:1]), _torch_out(model, x[:1]), atol=1e-5)


@pytest.mark.parametrize("layer,why", [(nn.LSTM(5, 4, batch_first=True), "gates multiply"),
                                       (nn.GRU(5, 4, batch_first=True), "gates multiply"),
                                       (nn.RNN(5, 4, batch_first=True), "tanh and sigmoid")])
def test_gated_and_tanh_refused_with_the_reason(layer, why, tmp_path):
    from spikebridge.importers.from_torch import from_torch

    with pytest.raises(UnsupportedLayerError, match=why) as err:
        from_torch(layer, input_shape=(6, 5))
    assert "nn.RNN(nonlinearity='relu')" in str(err.value) and "\n" not in str(err.value)
    pytest.importorskip("onnx")
    from spikebridge.importers.from_onnx import from_onnx

    class Wrap(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.rnn = layer

        def forward(self, x):
            return self.rnn(x)[0]

    path = tmp_path / "gated.onnx"
    torch.onnx.export(Wrap().eval(), (torch.zeros(1, 6, 5),), str(path), dynamo=False, opset_version=17)
    with pytest.raises(UnsupportedLayerError, match=why):
        from_onnx(path)


def test_rnn_needs_input_shape():
    from spikebridge.importers.from_torch import from_torch

    with pytest.raises(ValidationError, match=r"input_shape=\(T, 5\)"):
        from_torch(Reader().eval())


def test_shipped_models_onnx_equals_h5():
    pytest.importorskip("onnx")
    from pathlib import Path

    from spikebridge.importers.from_onnx import from_onnx
    from spikebridge.ir import load_graph

    models = Path(__file__).resolve().parents[2] / "models"
    for name, shape in (("seq_mnist_rnn", (28, 28)), ("sines_rnn", (32, 1))):
        x = np.random.default_rng(0).random((3, *shape))
        a, b = from_onnx(models / f"{name}.onnx"), load_graph(models / f"{name}.h5")
        np.testing.assert_allclose(evaluate(a, x), evaluate(b, x), rtol=1e-5, atol=1e-5)
