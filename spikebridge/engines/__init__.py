"""Engines that run a :class:`~spikebridge.snn.network.SpikingNetwork`, spike for spike alike.

* :mod:`~spikebridge.engines.plan` — inputs, Poisson draws, same-step order and folded projections
  decided once per run;
* :mod:`~spikebridge.engines.reference` — the numpy reference simulator (the oracle in the tests);
* :mod:`~spikebridge.engines.brian2` — Brian2 equations, builder, ``to_brian2``, STDP synapses and
  the runner of a batch (the only place that imports Brian2);
* :mod:`~spikebridge.engines.tensor` — batched arrays and shared convolution kernels (numpy or torch).

Batching, worker processes and progress are above the engines, in :mod:`spikebridge.run`.
"""
