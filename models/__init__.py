"""Shipped trained ANNs (installed as ``spikebridge.models``)."""
