"""``faults:`` of a scenario. This branch holds the data and chain parts
(:mod:`twin.faults.comm_spec`); grid faults and islands add their own fields."""

from __future__ import annotations

from typing import Any

from twin.faults.comm_spec import ChainFaultsSpec, DataFaultsSpec, comm_problems
from twin.spec_base import SpecModel

__all__ = ["FaultsSpec", "faults_problems"]


class FaultsSpec(SpecModel):
    """Faults inside a run (seeded from the scenario's seed)."""

    data: DataFaultsSpec | None = None
    chain: ChainFaultsSpec | None = None


def faults_problems(sc: Any) -> list[tuple[str, str]]:
    """Cross-field rules of ``faults`` (paths from the scenario's root)."""
    f: FaultsSpec | None = sc.faults
    if f is None:
        return []
    return comm_problems(data=f.data, chain=f.chain, interval_s=sc.market.interval_s,
                         duration_s=sc.duration_s, ledger=sc.market.ledger)
