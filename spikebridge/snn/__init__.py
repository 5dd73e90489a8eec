"""The spiking-network description: populations, projections, shared kernels, delays, its file format.

Plain numpy and no simulator: :class:`~spikebridge.snn.network.SpikingNetwork` is what conversion
produces, what every engine runs and what ``.snn`` / network ``.h5`` files hold.
"""
