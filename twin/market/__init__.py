"""The pure, integer-exact reference market: types, units and rounding, errors (mirrored by
the contracts' custom errors), the ledger protocol and its reference ledger, order book,
clearing mechanisms (uniform, CDA), signing, audit, the network tariff, and the market step
protocol with its result rows. Imports nothing of chain, grid, agents, services or the
scenario (``tests/test_architecture.py``); the cooperative game (``game.py``,
``game_security.py``) sits here until it moves to its own package."""
