"""Studies over a scenario's feeder that are not a market run: ``twin resilience`` (outages,
islands, N-k) and ``twin hosting`` (hosting capacity). Each CLI module loads the scenario and
calls the pure study in :mod:`twin.grid`; the grid itself never imports the scenario spec."""
