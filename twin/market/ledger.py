"""The ``Ledger`` protocol: what the simulation needs from a market, on chain or off.

:class:`twin.market.reference.ReferenceLedger` (pure Python) and
:class:`twin.chain.ledger.ChainLedger` (web3 over the Solidity contracts) both satisfy it,
with identical results (ids, prices, balances, errors). ``sender`` options exist so tests
can act as the wrong account; callers normally leave them at their defaults (the DSO for
device registry and curtailment, the operator for clearing and settlement, each device's
owner for orders).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal, Protocol, runtime_checkable

from twin.market.bond import BondTerms
from twin.market.types import Balance, Clearing, Device, Order, OrderIntent, SettlementRow, Trade

__all__ = ["IntervalStatus", "Ledger", "MarketParameters"]

#: "clearing": a chunked on-chain clearing is under way (closed to orders, not cleared yet).
#: "settling": a chunked on-chain settlement is under way (cleared, no curtailment, not
#: settled yet). The reference ledger settles in one call and never reports these two.
IntervalStatus = Literal["open", "cleared", "settled", "clearing", "settling", "void"]


@runtime_checkable
class Ledger(Protocol):
    """A local energy market ledger (see the market rules in ``twin/market/__init__.py``)."""

    @property
    def interval_s(self) -> int: ...
    @property
    def retail_price_per_mwh(self) -> int: ...
    @property
    def feed_in_price_per_mwh(self) -> int: ...

    def register_device(self, device: Device, *, sender: int | None = None) -> None: ...
    def revoke_device(self, device_id: int, *, sender: int | None = None) -> None: ...
    def device(self, device_id: int) -> Device: ...
    def is_revoked(self, device_id: int) -> bool: ...

    def deposit(self, account: int, amount: int) -> None: ...
    def withdraw(self, account: int, amount: int) -> None: ...

    def place_orders(
        self, intents: Sequence[OrderIntent], *, sender: int | None = None
    ) -> list[Order]: ...
    def clear(self, interval: int, *, sender: int | None = None) -> Clearing: ...
    def curtail(self, trade_id: int, energy_wh: int, *, sender: int | None = None) -> Trade: ...
    def curtail_batch(self, curtailments: Sequence[tuple[int, int]], *,
                      sender: int | None = None) -> list[Trade]: ...
    def settle(
        self, interval: int, metered_wh: Mapping[int, int], *, sender: int | None = None
    ) -> list[SettlementRow]: ...

    def balance(self, account: int) -> Balance: ...
    def wallet(self, account: int) -> int: ...
    def orders(self, interval: int) -> list[Order]: ...
    def trades(self, interval: int) -> list[Trade]: ...
    def interval_status(self, interval: int) -> IntervalStatus: ...
    def total_supply(self) -> int: ...
    def market_holdings(self) -> int: ...


class MarketParameters:
    """The market's fixed parameters as the :class:`Ledger` protocol reads them, shared by
    both ledgers (each sets ``_interval_s``, ``_retail``, ``_feed_in`` and ``_gate_lead_s``)."""

    _interval_s: int
    _retail: int
    _feed_in: int
    _gate_lead_s: int
    _min_order_wh: int = 1
    _bond_terms: BondTerms = BondTerms()

    @property
    def interval_s(self) -> int:
        return self._interval_s

    @property
    def retail_price_per_mwh(self) -> int:
        return self._retail

    @property
    def feed_in_price_per_mwh(self) -> int:
        return self._feed_in

    @property
    def gate_lead_s(self) -> int:
        return self._gate_lead_s

    @property
    def min_order_wh(self) -> int:
        """Smallest order energy (``OrderTooSmall`` below it)."""
        return self._min_order_wh

    @property
    def imbalance_bond(self) -> int:
        """The imbalance bond's floor (money): every device posts at least this with its
        first order (:attr:`bond_terms`)."""
        return self._bond_terms.floor

    @property
    def bond_terms(self) -> BondTerms:
        """The imbalance bond's terms (:mod:`twin.market.bond`)."""
        return self._bond_terms

    def bond_of(self, device: Device) -> int:
        """The imbalance bond ``device`` posts with its first order (its rating's terms)."""
        return self._bond_terms.bond_of(cap_wh=device.capacity_w * self._interval_s // 3600,
                                        retail_price_per_mwh=self._retail)
