"""Scenario spec of the resilience study (``twin resilience``, twin/grid/resilience.py)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from twin.spec_base import Share, SpecModel

__all__ = ["ResilienceSpec", "UpstreamOutageSpec"]

_Spec = SpecModel


class UpstreamOutageSpec(_Spec):
    """A loss of the upstream grid, seconds from the scenario start."""

    start_s: Annotated[int, Field(ge=0)]
    duration_s: Annotated[int, Field(gt=0)]


class ResilienceSpec(_Spec):
    """The study ``twin resilience`` runs (``twin run`` ignores it); see twin.grid.resilience.

    Shedding priorities: lower is shed first.
    """

    n_minus_1: bool = True
    n_minus_k: Annotated[int, Field(ge=2)] = 2
    n_minus_k_samples: Annotated[int, Field(ge=0)] = 0
    upstream_outages: list[UpstreamOutageSpec] = Field(default_factory=list)
    #: which storage forms islands: the community batteries, or none
    grid_forming: Literal["community_storage", "none"] = "community_storage"
    soc_initial: Share = 0.9
    soc_min: Share = 0.1
    efficiency: Annotated[float, Field(gt=0, le=1)] = 0.95
    priority_ev: int = 0
    priority_household: int = 1
    priority_other: int = 2
