"""Scenario spec of faults inside a run (``faults:``; twin/faults).

Every class is a strict pydantic section (unknown keys are errors, field paths in every
message). :class:`FaultsSpec` is the section: grid faults (``lines``, ``transformers``), loss
of the upstream grid (``upstream``), device failures (``devices``), protection and switching
(``reconfiguration``), islanded operation (``islands``), meter-data faults (``data``) and a
flaky chain (``chain``; both in :mod:`twin.faults.comm_spec`), each defaulting to "none".

Times are seconds since the scenario start; a repair time is drawn per fault from
:class:`RepairSpec`. A fault is either at fixed times (``at_s``) or random with a failure rate
(``rate_per_day``, exponential times between failures, drawn from the run's seeded generator).
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from twin.faults.comm_spec import ChainFaultsSpec, DataFaultsSpec, comm_problems
from twin.spec_base import PosFloat, Share, SpecModel

__all__ = [
    "BranchFaultSpec",
    "DeviceFaultSpec",
    "FaultsSpec",
    "IslandSpec",
    "ReconfigurationSpec",
    "RepairSpec",
    "TieSpec",
    "UpstreamLossSpec",
    "fault_problems",
    "grid_forming_rows",
]

_Spec = SpecModel
NonNegInt = Annotated[int, Field(ge=0)]
#: agent names a device fault or grid-forming unit may name
_AGENT = re.compile(r"^(household|ev|storage)_(\d+)$")


class RepairSpec(_Spec):
    """Time to repair one fault, seconds: ``fixed`` (``mean_s``), ``exponential`` (mean
    ``mean_s``) or ``lognormal`` (median ``mean_s``, log-standard deviation ``sigma``)."""

    distribution: Literal["fixed", "exponential", "lognormal"] = "fixed"
    mean_s: Annotated[float, Field(gt=0)] = 3600.0
    sigma: Annotated[float, Field(ge=0)] = 0.5


class _Timing(_Spec):
    #: fixed fault times (seconds since the start); with ``rate_per_day`` also random ones
    at_s: list[NonNegInt] = Field(default_factory=list)
    #: failure rate, faults per day of operation (0: only the fixed times)
    rate_per_day: Annotated[float, Field(ge=0)] = 0.0
    repair: RepairSpec = RepairSpec()

    @model_validator(mode="after")
    def _some_fault(self) -> _Timing:
        if not self.at_s and self.rate_per_day == 0:
            raise ValueError("give fixed times (at_s) or a failure rate (rate_per_day > 0)")
        return self


class BranchFaultSpec(_Timing):
    """Faults of one line or transformer (its index label in the feeder's net)."""

    element: NonNegInt


class UpstreamLossSpec(_Spec):
    """The upstream grid is lost over ``[start_s, start_s + duration_s)``."""

    start_s: NonNegInt
    duration_s: Annotated[int, Field(gt=0)]


class DeviceFaultSpec(_Timing):
    """An inverter trip (a household's PV inverter) or a charger outage (an EV's charger):
    the device produces / charges nothing until repaired. ``target``: agent name
    (``household_3``, ``ev_0``) or ``all`` (each eligible device its own process)."""

    kind: Literal["inverter_trip", "charger_outage"]
    target: str


class TieSpec(_Spec):
    """A normally-open tie line between two buses (index labels), built like ``like_line``."""

    from_bus: NonNegInt
    to_bus: NonNegInt
    like_line: NonNegInt
    length_km: PosFloat = 0.05


class ReconfigurationSpec(_Spec):
    """Protection and switching: a faulted branch is isolated at once; with ``allowed`` a
    normally-open tie that re-energizes a de-energized part closes after ``switching_s``
    and opens again when the fault is repaired."""

    allowed: bool = False
    switching_s: Annotated[int, Field(ge=0)] = 300
    ties: list[TieSpec] = Field(default_factory=list)


class IslandSpec(_Spec):
    """Islanded operation: which units form islands, load shedding, the island market.

    ``grid_forming``: ``community_storage`` (every community battery) or the agent names of
    the community batteries that form islands (``storage_0``). ``market``: ``per_island``
    clears one book per electrical island while islanded (needs a grid-forming unit; on chain
    the library IslandBooks clears the books); ``none`` lets nobody trade in an island. Shedding: lower priority
    is shed first.
    """

    grid_forming: list[str] = Field(default_factory=lambda: ["community_storage"])
    market: Literal["per_island", "none"] = "per_island"
    soc_min: Share = 0.1
    priority_ev: int = 0
    priority_household: int = 1
    priority_other: int = 2


class FaultsSpec(_Spec):
    """Faults and repairs inside ``twin run`` (SimPy processes, coupled through mosaik)."""

    lines: list[BranchFaultSpec] = Field(default_factory=list)
    transformers: list[BranchFaultSpec] = Field(default_factory=list)
    upstream: list[UpstreamLossSpec] = Field(default_factory=list)
    devices: list[DeviceFaultSpec] = Field(default_factory=list)
    reconfiguration: ReconfigurationSpec = ReconfigurationSpec()
    islands: IslandSpec = IslandSpec()
    #: meter-data faults (lost, late, duplicated readings) and the twin's answer (twin/faults/meter_data.py)
    data: DataFaultsSpec | None = None
    #: a flaky chain: RPC outages, dropped and delayed transactions, restarts, gas spikes
    chain: ChainFaultsSpec | None = None

    @property
    def grid_faults(self) -> bool:
        """True when anything can change the feeder's topology."""
        return bool(self.lines or self.transformers or self.upstream)


def fault_problems(sc: Any) -> list[tuple[str, str]]:
    """Cross-field rules of ``sc.faults`` that need only the scenario (targets in the net are
    checked by :func:`twin.faults.plan.net_problems` once the feeder is built)."""
    f = sc.faults
    if f is None:
        return []
    out: list[tuple[str, str]] = comm_problems(data=f.data, chain=f.chain, interval_s=sc.market.interval_s,
                                               duration_s=sc.duration_s, ledger=sc.market.ledger)
    a = sc.agents
    counts = {"household": a.households.count, "ev": a.evs.count, "storage": a.community_storage.count}
    for i, d in enumerate(f.devices):
        where = f"faults.devices[{i}].target"
        want = "household" if d.kind == "inverter_trip" else "ev"
        if d.target == "all":
            continue
        m = _AGENT.match(d.target)
        if m is None or m.group(1) != want:
            out.append((where, f"{d.target!r}: a {d.kind} needs {want}_<i> or 'all'"))
        elif int(m.group(2)) >= counts[want]:
            out.append((where, f"{d.target!r} does not exist ({counts[want]} {want} agents)"))
    for j, u in enumerate(f.upstream):
        if u.start_s >= sc.duration_s:
            out.append((f"faults.upstream[{j}].start_s", f"({u.start_s}) is past the run's end "
                        f"({sc.duration_s} s)"))
    gf_ok = False
    for j, name in enumerate(f.islands.grid_forming):
        where = f"faults.islands.grid_forming[{j}]"
        if name == "community_storage":
            gf_ok |= counts["storage"] > 0
            continue
        m = _AGENT.match(name)
        if m is None or m.group(1) != "storage":
            out.append((where, f"{name!r}: name 'community_storage' or storage_<j>"))
        elif int(m.group(2)) >= counts["storage"]:
            out.append((where, f"{name!r} does not exist ({counts['storage']} community batteries)"))
        else:
            gf_ok = True
    if f.grid_faults and getattr(sc.grid, "phases", 1) == 3:
        out.append(("faults", "line, transformer and upstream faults need grid.phases: 1 (a faulted "
                    "topology is solved by the balanced engine)"))
    if f.islands.market == "per_island" and f.grid_faults:
        if not gf_ok:
            out.append(("faults.islands.grid_forming", "island trading (faults.islands.market: "
                        "per_island) needs a grid-forming unit: no community battery "
                        "(agents.community_storage.count is 0) and no battery named"))
    return out


def grid_forming_rows(scenario: Any) -> list[int]:
    """Community battery indices that form islands (``faults.islands.grid_forming``, or
    ``agents.community_storage.grid_forming``)."""
    n = scenario.agents.community_storage.count
    names = scenario.faults.islands.grid_forming if scenario.faults is not None else []
    if "community_storage" in names or scenario.agents.community_storage.grid_forming:
        return list(range(n))
    return sorted({int(s.split("_")[1]) for s in names if s.startswith("storage_")})
