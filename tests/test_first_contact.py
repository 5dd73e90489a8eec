"""What a new user meets on a first run (issue 23): fast defaults that say what they chose, capped calibration."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from spikebridge.config import ConversionConfig, SimulationConfig
from spikebridge.conversion.convert import convert, normalisation_memory
from spikebridge.datasets import load_dataset
from spikebridge.errors import ConversionError
from spikebridge.importers.registry import load_model
from spikebridge.models import model_path
from spikebridge.run.simulate import resolve_engine


@pytest.fixture(scope="module")
def digits():
    x, y = load_dataset("digits:test")
    return x, y


@pytest.fixture(scope="module")
def cnn(digits):
    return convert(load_model(model_path("digits_cnn")), calibration=digits[0][:100])


def test_default_engine_is_auto_and_picks_tensor_for_a_cnn(cnn, caplog):
    assert SimulationConfig().engine == "auto"
    with caplog.at_level(logging.INFO, logger="spikebridge.notice"):
        assert resolve_engine(cnn, SimulationConfig()) == "tensor"
        # a Brian2 target asked for: Brian2, as before engine="auto" became the default
        assert resolve_engine(cnn, SimulationConfig(target="numpy")) == "brian2"
    lines = [r.getMessage() for r in caplog.records if "engine auto" in r.getMessage()]
    assert len(lines) == 2
    assert "-> tensor" in lines[0] and "shared-kernel" in lines[0]
    assert "-> brian2" in lines[1] and "target 'numpy'" in lines[1]


def test_target_auto_is_numpy_until_a_cython_cache_exists(tmp_path, caplog):
    import brian2

    from spikebridge.engines.brian2 import run

    saved = brian2.prefs["codegen.runtime.cython.cache_dir"]
    brian2.prefs["codegen.runtime.cython.cache_dir"] = str(tmp_path)
    try:
        assert run.cython_cache_dir() == tmp_path
        with caplog.at_level(logging.INFO, logger="spikebridge.notice"):
            assert run.explain_target("auto") == "numpy"
        assert any("target auto -> numpy" in r.getMessage() for r in caplog.records)
        (tmp_path / "_cython_magic_0.cpython-311-x86_64-linux-gnu.so").write_bytes(b"")
        assert run.cython_cache_exists()
        assert run.resolve_target("auto") == ("cython" if run._cython_works() else "numpy")
    finally:
        brian2.prefs["codegen.runtime.cython.cache_dir"] = saved


def test_cli_simulate_says_which_engine_it_chose(tmp_path, cnn, capsys):
    from spikebridge.cli import main

    net = tmp_path / "cnn.h5"
    cnn.save(net)
    assert main(["-q", "simulate", str(net), "--data", "digits:test", "--limit", "20", "--steps", "16"]) == 0
    assert "engine auto" not in capsys.readouterr().err  # --quiet: results only
    assert main(["simulate", str(net), "--data", "digits:test", "--limit", "20", "--steps", "16"]) == 0
    err = capsys.readouterr().err
    assert "spikebridge: engine auto -> tensor for network" in err


def test_delay_step_is_accepted_in_python_as_in_toml():
    assert ConversionConfig(delay="step").delay is None
    assert ConversionConfig.from_dict({"delay": "step"}).delay is None


def test_calibration_sample_is_capped_by_default(digits):
    graph = load_model(model_path("digits_mlp"))
    x = digits[0]
    assert ConversionConfig().normalisation_samples == 5_000
    capped = convert(graph, ConversionConfig(normalisation_samples=50), calibration=x[:300])
    first = convert(graph, ConversionConfig(normalisation_samples=None), calibration=x[:50])
    assert capped.scales == first.scales  # the cap takes the first samples
    every = convert(graph, ConversionConfig(normalisation_samples=None), calibration=x[:300])
    assert every.scales != capped.scales
    with pytest.raises(Exception, match="normalisation_samples"):
        ConversionConfig(normalisation_samples=0)


def test_calibration_memory_is_estimated_before_starting(digits, monkeypatch):
    from spikebridge.conversion import convert as convert_module

    graph = load_model(model_path("digits_mlp"))
    per_sample = normalisation_memory(graph, 1)
    assert per_sample == 8.0 * sum(int(np.prod(s)) for s in graph.shapes.values())
    # a machine with room for 100 samples' activations: 300 are refused in one line that says what fits
    monkeypatch.setattr(convert_module, "_available_memory", lambda: 100 * per_sample / 0.8)
    with pytest.raises(ConversionError, match=r"300 samples needs about .* pass at most 100 samples"):
        convert(graph, ConversionConfig(normalisation_samples=None), calibration=digits[0][:300])
    convert(graph, ConversionConfig(normalisation_samples=None), calibration=digits[0][:100])


def test_a_whole_saved_torch_model_is_named_as_such(tmp_path):
    torch = pytest.importorskip("torch")
    from spikebridge.errors import ModelFormatError

    m = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU())
    torch.save(m, tmp_path / "whole.pt")
    with pytest.raises(ModelFormatError, match=r"whole pickled model \(torch\.nn\.modules\.container\.Sequential\)"):
        load_model(tmp_path / "whole.pt")
    torch.save(m.state_dict(), tmp_path / "weights.pt")
    with pytest.raises(Exception, match="holds only weights"):
        load_model(tmp_path / "weights.pt")
