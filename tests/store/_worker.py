"""Subprocess: stream a small simulation into a store (killed by the tests)."""

import os
import sys

import numpy as np

import spikebridge.run.store as stream
from spikebridge.config import SimulationConfig
from tests.store._fake import fake_iter, make_net

if os.environ.get("SB_REAL_BACKEND") != "1":
    stream._backend_iter = lambda snn, x, config, start: fake_iter(snn, x, config, start)
path, n, bs, resume = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4] == "resume"
x = np.random.default_rng(1).uniform(0, 1, (n, 6))
y = np.arange(n) % 4
cfg = SimulationConfig(n_steps=40, batch_size=bs, seed=7, record=("all",), target="numpy")
if os.environ.get("SB_ENGINE") == "tensor":  # the tensor engine: its next batch runs ahead in a thread
    cfg = SimulationConfig(n_steps=40, batch_size=bs, seed=7, record=("all",), engine="tensor", threads=1)
extra = {}
if os.environ.get("SB_SHARDS") == "1":  # batches written as shard files (tests/store/test_shards.py)
    extra["shards"] = True
net = make_net()
if os.environ.get("SB_ANN_NET") == "1":  # a converted MLP: ANN outputs and activations stored as well
    from spikebridge.conversion.convert import convert
    from tests.conftest import make_tiny_mlp

    net = convert(make_tiny_mlp(), calibration=x[:8])
    extra["ann_activations"] = True
stream.simulate_to_store(net, x, path, cfg, labels=y, resume=resume, overwrite=not resume, **extra)
