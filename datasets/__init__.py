"""Shipped digits data and loaders (installed as ``spikebridge.datasets``)."""
