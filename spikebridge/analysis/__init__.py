"""spikebridge.analysis"""
