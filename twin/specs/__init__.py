"""Scenario spec sections by concern (grid, agents, TSO, market, game, HIL, resilience).

Pydantic models of the YAML scenario; :mod:`twin.scenario` assembles them into
:class:`twin.scenario.Scenario`, runs the cross-field checks and loads files, and re-exports
every spec class (``from twin.scenario import GridSpec`` stays the public import path).
"""
