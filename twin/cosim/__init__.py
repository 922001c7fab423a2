"""Thin mosaik adapters, one per core (agents, market step, grid, HIL devices): they decode
inputs, call the pure core and encode its outputs (``codec.py``), nothing else. The world is
wired in :mod:`twin.run`."""
