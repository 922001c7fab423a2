"""Scenario spec of the local market (matching rule, tariffs, funding, market services) and
of where its ledger runs."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from twin.services.registry import market_services_model
from twin.spec_base import NonNegFloat, PosFloat, SpecModel

__all__ = ["ChainSpec", "MarketServicesSpec", "MarketSpec"]

_Spec = SpecModel


if TYPE_CHECKING:
    class MarketServicesSpec(SpecModel):
        def __getattr__(self, name: str) -> Any: ...
else:
    MarketServicesSpec = market_services_model()


class MarketSpec(_Spec):
    """Local market: interval, tariffs against the DSO/supplier, funding."""

    interval_s: Annotated[int, Field(gt=0, le=86_400)] = 900
    ledger: Literal["chain", "reference"] = "chain"
    #: matching rule (twin/market/mechanisms.py): uniform-price double auction, or
    #: continuous double auction, pay-as-bid (the market table's price is then the
    #: volume-weighted mean trade price). The green-token exchange is a market service
    #: (market.services.green_exchange), not a matching rule.
    mechanism: Literal["uniform", "cda"] = "uniform"
    retail_price_per_mwh: PosFloat = 300.0
    feed_in_price_per_mwh: NonNegFloat = 80.0
    initial_balance: PosFloat = 1000.0  # currency units per participant
    dso_balance: PosFloat = 1_000_000.0
    #: smallest order energy the market accepts (OrderTooSmall below it, contract and
    #: reference alike); 1 Wh = any positive order
    min_order_wh: Annotated[int, Field(ge=1, lt=2**32)] = 1
    #: imbalance collateral per device (twin/market/bond.py), at the retail price:
    #: ``imbalance_collateral_intervals`` intervals at the device's registered rating, at
    #: least ``imbalance_collateral_wh``. Posted from the owner's free balance with the
    #: device's first order, held apart (withdraw cannot take it), drawn on at settlement for
    #: imbalance the free balance does not cover (so withdrawing before settlement leaves no
    #: debt unpaid up to it), topped up from the free balance at each settlement of one of the
    #: owner's devices, returned by releaseBond once every interval up to the device's last
    #: ordered one is final; both 0: no collateral. Default two intervals (the one being
    #: settled and the next, whose gate has closed): 5,500 Wh for an 11 kW charger (1.65
    #: currency units at 300/MWh, 0.17 % of the default initial balance), 1,500 Wh for a
    #: 3 kW heat pump, so no honest order is refused for it.
    imbalance_collateral_intervals: Annotated[int, Field(ge=0, le=96)] = 2
    imbalance_collateral_wh: Annotated[int, Field(ge=0, lt=2**32)] = 0
    #: an estimate settled provisionally (faults.data) and not trued up within this many
    #: intervals after its interval's end becomes final when anyone asks (finalizeEstimate:
    #: the estimate is the settlement, and the device's bond no longer waits for a reading
    #: that never comes); 0: estimates wait for their true-up forever. Default one day of
    #: 15-minute intervals.
    true_up_expiry_intervals: Annotated[int, Field(ge=0, lt=2**32)] = 96
    #: who signs how often (twin/market/signing_daily.py): per_interval, every device signs
    #: each order and each meter reading; daily, each device signs its day's standing orders
    #: once (a new revision only when it changes an order) and its day's readings in one
    #: batch (intervals settle provisionally on the relayed readings, trued up by the batch).
    #: daily: both ledgers (on chain the library DailySchedules keeps each schedule's Merkle
    #: root), interval_s dividing a day, no faults.data
    signing: Literal["per_interval", "daily"] = "per_interval"
    #: market services (twin/services): demand response, certificates, assets, ...
    services: MarketServicesSpec = MarketServicesSpec()

    @field_validator("mechanism", mode="before")
    @classmethod
    def _mechanism(cls, value: Any) -> Any:
        if value == "green_exchange":
            raise ValueError("green_exchange is a market service, not a matching rule: set "
                             "market.services.green_exchange.enabled: true and leave mechanism "
                             "uniform (or cda)")
        return value

    @model_validator(mode="after")
    def _signing(self) -> MarketSpec:
        if self.signing == "daily" and 86_400 % self.interval_s:
            raise ValueError(f"market.signing: daily needs market.interval_s dividing a day "
                             f"(86400 s), got {self.interval_s}")
        return self

    @model_validator(mode="after")
    def _tariffs(self) -> MarketSpec:
        if self.feed_in_price_per_mwh >= self.retail_price_per_mwh:
            raise ValueError(
                f"feed_in_price_per_mwh ({self.feed_in_price_per_mwh}) must be below "
                f"retail_price_per_mwh ({self.retail_price_per_mwh})"
            )
        return self


class ChainSpec(_Spec):
    """Where the ledger runs: a twin-managed Anvil (default) or an external RPC URL."""

    rpc_url: str | None = None
