"""The Mesa feeder model and its agents: households (load, PV, battery, flexible load), EVs,
community storage, the DSO (security check, curtailment, network tariff), the TSO (signals,
demand-response calls), a VPP (Shapley split); strategies and forecasts. The model knows
nothing of mosaik: ``twin.cosim.agents_sim`` adapts it."""
