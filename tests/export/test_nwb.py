"""NWB export: valid under pynwb's validator, spike times offset per sample."""

from __future__ import annotations

import numpy as np
import pytest

from spikebridge.errors import ValidationError
from spikebridge.store.spikes import SpikeStore, StoreExistsError
from tests._optional import requires_pynwb
from tests.store.test_spikes import make_record

pytestmark = requires_pynwb


def _store(path, n_spikes=30):
    rec = make_record(3, n_steps=10, n_spikes=n_spikes, rng=np.random.default_rng(4))
    with SpikeStore(path, "w") as st:
        st.write_header(n_steps=10, dt=1e-3, n_samples=3, seed=5, populations={"a": {"layer": "relu1"}, "b": {"layer": None}})
        st.append_batch(0, rec)
    return rec


def test_export_is_valid_and_times_are_offset_per_sample(tmp_path):
    import pynwb

    from spikebridge.export.nwb import export_nwb

    rec = _store(tmp_path / "s.h5")
    out = export_nwb(tmp_path / "s.h5", tmp_path / "s.nwb")
    errors = pynwb.validate(path=str(out))
    assert list(errors) == []
    with pynwb.NWBHDF5IO(str(out), "r") as io:
        nwb = io.read()
        units = nwb.units.to_dataframe()
        assert len(units) == 3 + 5
        assert list(units["population"]) == ["a"] * 3 + ["b"] * 5
        assert list(units["layer"][:3]) == ["relu1"] * 3 and units["layer"].iloc[3] == ""
        trials = nwb.trials.to_dataframe()
        np.testing.assert_allclose(trials["start_time"], [0.0, 0.01, 0.02])
        np.testing.assert_array_equal(trials["label"], rec.labels)
        st = rec.spikes["b"]
        for i in range(5):
            row = units[(units["population"] == "b") & (units["neuron_index"] == i)].iloc[0]
            mask = st.neuron == i
            expected = np.sort((st.sample[mask] * 10 + st.step[mask]) * 1e-3)
            np.testing.assert_allclose(row["spike_times"], expected)
        assert sum(len(x) for x in units["spike_times"]) == 60


def test_export_refusals(tmp_path):
    from spikebridge.export.nwb import export_nwb

    _store(tmp_path / "s.h5")
    export_nwb(tmp_path / "s.h5", tmp_path / "s.nwb")
    with pytest.raises(StoreExistsError, match="already exists"):
        export_nwb(tmp_path / "s.h5", tmp_path / "s.nwb")
    with pytest.raises(ValidationError, match=r"no spikes of \['zz'\]"):
        export_nwb(tmp_path / "s.h5", tmp_path / "t.nwb", populations=["zz"])
    rec = make_record(1)
    rec.spikes.clear()
    with SpikeStore(tmp_path / "c.h5", "w") as st:
        st.append_batch(0, rec)
    with pytest.raises(ValidationError, match="--record all"):
        export_nwb(tmp_path / "c.h5", tmp_path / "c.nwb")
