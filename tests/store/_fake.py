"""A small network and a deterministic stand-in for ``spikebridge.run.simulate.iter_simulate``.

The stand-in runs the numpy reference simulator per batch with the seed
``(seed, first sample)``, which is what makes a resumed run reproduce an
uninterrupted one; ``SB_FAKE_SLEEP`` seconds are spent per batch so a test can
kill the writer between batches.
"""

from __future__ import annotations

import os
import time

import numpy as np

from spikebridge.config import SimulationConfig
from spikebridge.snn.network import Population, Projection, SpikingNetwork

# the run every store test interrupts, resumes or shards: N samples in batches of BS
N, BS = 24, 4
X = np.random.default_rng(1).uniform(0, 1, (N, 6))
Y = np.arange(N) % 4
CFG = SimulationConfig(n_steps=40, batch_size=BS, seed=7, record=("all",), target="numpy")


def make_net(seed: int = 0, n_in: int = 6, n_hid: int = 12, n_out: int = 4) -> SpikingNetwork:
    r = np.random.default_rng(seed)
    pops = [
        Population(name="input", n=n_in, model="input", role="input"),
        Population(name="hidden", n=n_hid, model="if", role="hidden", layer="relu1"),
        Population(name="out", n=n_out, model="if", role="output", layer="fc2"),
    ]
    projs = [
        Projection.from_dense(r.uniform(0.0, 0.6, (n_hid, n_in)), name="p1", pre="input", post="hidden", delay=1e-3),
        Projection.from_dense(r.uniform(-0.2, 0.6, (n_out, n_hid)), name="p2", pre="hidden", post="out", delay=1e-3),
    ]
    return SpikingNetwork(
        pops, projs, input="input", output="out", dt=1e-3,
        readout={"mode": "count", "task": "classification", "scale": 1.0, "latency_steps": 2, "n_out": n_out},
        encoding={"kind": "poisson", "max_rate": 400.0, "scale": 1.0},
        scales={"relu1": 1.0, "fc2": 1.0},
    )


def fake_iter(snn, inputs, config, start=0):
    from spikebridge.engines.reference import simulate_reference

    n = 1 if inputs is None else len(inputs)
    bs = config.batch_size or n
    sleep = float(os.environ.get("SB_FAKE_SLEEP", "0"))
    for first in range(0, n, bs):
        if first + bs <= start:
            continue
        xb = None if inputs is None else inputs[first : first + bs]
        rec = simulate_reference(snn, xb, config.n_steps, seed=config.seed * 1_000_003 + first, record=config.record)
        if sleep:
            time.sleep(sleep)
        yield first, rec
