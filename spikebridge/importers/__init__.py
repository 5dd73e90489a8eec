"""spikebridge.importers"""
