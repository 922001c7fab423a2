"""``market.services.assets``:
the spec and its checks against the rest of the scenario."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

from pydantic import Field, model_validator

from twin.spec_base import SpecModel

if TYPE_CHECKING:
    from twin.scenario import Scenario

__all__ = ["AssetAgent", "AssetServiceSpec", "problems"]


#: agents that can be tokenized: ``storage_<j>`` (alias ``community_storage_<j>``),
#: ``household_<i>`` (its meter: PV sales), ``ev_<e>`` (V2G sales)
AssetAgent = Annotated[str, Field(pattern=r"^(household|ev|storage|community_storage)_[0-9]+$")]


class AssetServiceSpec(SpecModel):
    """AssetToken over one agent's market device: ``shares`` split among ``investors`` new
    accounts; the device's market revenue of each interval distributed pro rata; holders
    claim at the end of the run."""

    asset: AssetAgent
    investors: Annotated[int, Field(gt=0, le=1000)] = 4
    shares: Annotated[int, Field(gt=0, le=10**12)] = 1000

    @model_validator(mode="after")
    def _split(self) -> AssetServiceSpec:
        if self.shares < self.investors:
            raise ValueError(f"shares ({self.shares}) must be at least investors ({self.investors})")
        return self

    @property
    def agent(self) -> str:
        """The model's agent name (``community_storage_<j>`` -> ``storage_<j>``)."""
        return self.asset.removeprefix("community_")


def check_distinct(assets: list[AssetServiceSpec]) -> None:
    """An agent is tokenized at most once."""
    names = [a.agent for a in assets]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ValueError(f"tokenized more than once: {dup}")


def problems(sc: Scenario) -> list[tuple[str, str]]:
    """Assets over agents the scenario does not have, as (field path, message)."""
    ag = sc.agents
    counts = {"household": ag.households.count, "ev": ag.evs.count,
              "storage": ag.community_storage.count}
    out: list[tuple[str, str]] = []
    for i, a in enumerate(sc.market.services.assets):
        kind, index = a.agent.rsplit("_", 1)
        if int(index) >= counts[kind]:
            out.append((f"market.services.assets.{i}.asset",
                        f"the scenario has no agent {a.asset!r} ({counts[kind]} {kind} agent(s))"))
    return out
