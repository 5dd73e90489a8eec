"""The tensor engine's opt-in single precision (``SimulationConfig(precision="float32")``).

Not spike-identical to the exact path by design: these tests show where it differs (a hand-computed
threshold crossing), that it stays close on a converted CNN, and that it is refused where it does
not run.
"""

from __future__ import annotations

import numpy as np
import pytest

import spikebridge.engines.tensor.engine as tensor_engine
from spikebridge.config import ConversionConfig, SimulationConfig
from spikebridge.conversion.convert import convert
from spikebridge.errors import ValidationError
from spikebridge.ir.serialize import load_graph
from spikebridge.run.simulate import simulate
from spikebridge.snn.network import Population, Projection, SpikingNetwork


def _cfg(n_steps: int, precision: str, **kw) -> SimulationConfig:
    return SimulationConfig(n_steps=n_steps, engine="tensor", device="cpu", precision=precision, **kw)


def test_float32_moves_a_threshold_crossing_the_exact_path_keeps():
    # an IF neuron driven by 0.1 per step (bias 100/s, dt 1 ms): ten float64 additions of 0.1 give
    # 0.9999999999999999 (< 1, the crossing is at the 11th step); ten float32 ones 1.0000001
    pops = [Population(name="input", n=1, model="input", role="input"),
            Population(name="out", n=1, model="if", bias=100.0, v_init=0.0, role="output")]
    proj = Projection(name="p", pre="input", post="out", pre_index=[0], post_index=[0], weight=[0.0], delay=1e-3)
    net = SpikingNetwork(pops, [proj], input="input", output="out", encoding={"kind": "current", "scale": 1.0})
    assert sum([0.1] * 10) < 1.0 and np.float32(0.1) * 0 + sum([np.float32(0.1)] * 10) >= 1.0
    x = np.zeros((1, 1))
    exact = simulate(net, x, _cfg(12, "float64", record=("all",)))
    single = simulate(net, x, _cfg(12, "float32", record=("all",)))
    assert exact.spikes["out"].step.tolist() == [10]
    assert single.spikes["out"].step.tolist() == [9]
    assert single.meta["target"] == "tensor-numpy-float32" and exact.meta["target"] == "tensor-numpy"


@pytest.fixture(scope="module")
def digits_cnn():
    from spikebridge.datasets import load_dataset

    x, y = load_dataset("digits:test")
    return convert(load_graph("models/digits_cnn.h5"), ConversionConfig(), calibration=x[:100]), x[:120], y[:120]


@pytest.mark.parametrize("layer_major", [True, False])
def test_float32_stays_close_to_the_exact_path_on_the_digits_cnn(digits_cnn, monkeypatch, layer_major):
    snn, x, y = digits_cnn
    import spikebridge.engines.tensor.layered as layered

    monkeypatch.setattr(tensor_engine, "LAYER_MAJOR", layer_major)
    calls = []
    real = layered.LayerMajor.run
    monkeypatch.setattr(layered.LayerMajor, "run", lambda self, *a, **k: calls.append(1) or real(self, *a, **k))
    exact = simulate(snn, x, _cfg(48, "float64"))
    single = simulate(snn, x, _cfg(48, "float32"))
    assert single.meta["target"] == "tensor-numpy-float32"
    assert bool(calls) == layer_major
    # the same class for (almost) every sample, the same accuracy within a sample, spike counts
    # within 0.5 % per population; the potentials show single-precision roundings
    agree = np.mean(exact.predictions() == single.predictions())
    assert agree >= 0.97, agree
    assert abs(np.mean(exact.predictions() == y) - np.mean(single.predictions() == y)) <= 1.5 / len(y)
    for name, c in exact.counts.items():
        total, total32 = int(c.sum()), int(single.counts[name].sum())
        assert abs(total32 - total) <= 0.005 * total + 5, (name, total, total32)
    diff = np.abs(exact.output_potential_t - single.output_potential_t)
    assert 0 < diff.max() < 1e-3, diff.max()


def test_float32_is_refused_where_it_does_not_run():
    with pytest.raises(ValidationError, match="precision"):
        SimulationConfig(precision="float16")
    for kw in ({"engine": "brian2"}, {"engine": "auto"}, {"engine": "tensor", "device": "torch"}):
        with pytest.raises(ValidationError, match="float32"):
            SimulationConfig(precision="float32", **kw)
    assert SimulationConfig().precision == "float64"


def test_cli_precision_option(capsys, tmp_path):
    from spikebridge import cli
    from spikebridge.models import model_path
    from spikebridge.store.spikes import SpikeStore

    net = tmp_path / "cnn.h5"
    assert cli.main(["-q", "convert", str(model_path("digits_cnn")), "-o", str(net)]) == 0
    out = tmp_path / "f32.h5"
    argv = ["-q", "simulate", str(net), "--limit", "4", "--steps", "16", "--engine", "tensor", "--precision", "float32", "-o", str(out)]
    assert cli.main(argv) == 0
    with SpikeStore(out) as s:
        assert sum(int(s.counts(name).sum()) for name in s.count_populations) > 100
    capsys.readouterr()
    code = cli.main(["simulate", str(net), "--limit", "2", "--engine", "brian2", "--precision", "float32"])
    err = capsys.readouterr().err
    assert code == 1 and "float32" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("kind", ["current", "regular", "poisson"])
def test_float32_runs_every_model_of_the_step_major_engine(rng, kind):
    # LIF, cuba LIF onto I, resets to zero and to a value, refractoriness, delays, recurrence
    from ._nets import mixed

    net = mixed(rng, kind=kind)
    x = rng.uniform(0, 1, size=(4, 5))
    exact = simulate(net, x, _cfg(80, "float64", record=("all",)))
    single = simulate(net, x, _cfg(80, "float32", record=("all",)))
    assert single.meta["target"] == "tensor-numpy-float32"
    for name, c in exact.counts.items():
        total, total32 = int(c.sum()), int(single.counts[name].sum())
        assert total > 0 and abs(total32 - total) <= 0.02 * total + 2, (name, total, total32)
