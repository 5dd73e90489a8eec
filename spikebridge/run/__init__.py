"""Running things: ``simulate``, batching and worker processes, Dask, streaming into a store,
experiments, sweeps, the STDP experiment and calibration by simulation.

The top of the pipeline below the CLI: it may import every other layer, and none imports it.
"""
