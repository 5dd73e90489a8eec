"""The Brian2 engine: equations, the network builder, ``to_brian2``, STDP synapses, running a batch.

The only package that imports Brian2; it sets Brian2's global state (device, target, clock, seed)
only inside :func:`~spikebridge.engines.brian2.run.brian2_state` and restores it afterwards.
"""
