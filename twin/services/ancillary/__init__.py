"""Frequency regulation for VPPs (ancillary services): the TSO procures symmetric regulation
capacity per market interval, the VPP's resources follow a regulation signal, the TSO pays
for capacity and performance.

This folder so far holds only ``rules`` (the pure reference: signal, headroom, procurement,
dispatch, performance score, exact payment split; tests/market/test_ancillary.py). It is not
yet a registered service (no ``SERVICE``, not in :mod:`twin.services.registry`): the spec
under ``market.services``, the run hooks (the TSO's request per interval, the headroom from
the agents' plans, the batteries' SOC moved by the regulation energy, settlement on both
ledgers), tables and KPIs remain to be written. ``bench/rwa_regulation.py`` applies the rules
offline to a finished ``rwa_vpp`` run.
"""
