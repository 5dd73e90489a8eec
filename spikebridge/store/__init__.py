"""spikebridge.store"""
