"""spikebridge.conversion"""
