"""The physical grid: feeders (pandapower, SimBench, CIGRE, case33bw) and their load/PV
profiles, the compiled batch power flow and its pandapower wrapper, DER controls, topology
and islands, resilience studies. Imports nothing of the market, chain or services."""
