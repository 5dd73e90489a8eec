"""spikebridge.backend"""
