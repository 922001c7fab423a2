"""Faults inside a run (``faults:`` in the scenario): meter-data and communication faults
(:mod:`twin.faults.meter_data`), a flaky chain (:mod:`twin.faults.rpc_proxy`) and their KPIs
(:mod:`twin.kpis.reliability`). Specs: :mod:`twin.faults.spec` (``FaultsSpec``) and
:mod:`twin.faults.comm_spec` (``DataFaultsSpec``, ``ChainFaultsSpec``)."""
