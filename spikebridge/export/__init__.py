"""Exporters of spikebridge results to community formats (NWB)."""
