"""Market services: value-layer add-ons that ride on the local market of a scenario run
(demand response, green certificates, tokenized assets, the green-token exchange, shared
charger tariffs, green currency, the network fee).

One folder per service holds its scenario spec and cross-field checks, its pure reference
rules, its chain client, its run hooks, its results tables and KPIs; :mod:`.registry` lists
them; :mod:`.base` holds what they share (hooks, context, money rail, backend switch).
"""
