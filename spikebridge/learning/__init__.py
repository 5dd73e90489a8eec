"""Learning: QCFS training of ANNs for low-latency conversion (:mod:`~spikebridge.learning.qcfs`),
the Diehl & Cook STDP digits learner (:mod:`~spikebridge.learning.stdp`) and the analysis of
learned weights (:mod:`~spikebridge.learning.weights`).

The STDP synapses are Brian2 objects: :mod:`spikebridge.engines.brian2.plasticity`.
"""
